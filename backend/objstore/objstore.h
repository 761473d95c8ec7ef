/* objstore: where the repository keeps its objects. A function-pointer table (the seam for tests
 * and for the object-storage drivers of issue 6) with a local-directory driver.
 *
 * Names are relative paths of [A-Za-z0-9._/-] without "..", e.g. "objects/ab/ab12...",
 * "points/contoso-prod/2026-11-21T090000Z.json". put is atomic and durable when it returns (the
 * directory driver writes a temp file, fsyncs, renames, fsyncs the directory): a reader sees the
 * whole object or nothing. Drivers are thread-safe. Errors: -ENOENT (no such object), -EIO,
 * -ETIMEDOUT, -ENOSPC, -EEXIST (put_if_absent), with detail in err. */
#ifndef DVSNAP_OBJSTORE_H
#define DVSNAP_OBJSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/base/util.h"

#define OBJSTORE_TO_END UINT64_MAX

struct objstore_ops {
    int (*put)(void *impl, const char *name, const void *data, size_t len, struct dverr *err);
    /* Upload a local file (streams; for large segments). */
    int (*put_file)(void *impl, const char *name, const char *local_path, struct dverr *err);
    /* Create only when absent (-EEXIST otherwise): leases and locks. */
    int (*put_if_absent)(void *impl, const char *name, const void *data, size_t len,
                         struct dverr *err);
    /* Read len bytes at off (OBJSTORE_TO_END: to the end), appended to out. */
    int (*get)(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
               struct dverr *err);
    int (*stat)(void *impl, const char *name, uint64_t *size, struct dverr *err);
    /* Every object whose name starts with prefix, in no particular order. fn's non-zero return
     * stops the listing and is returned. */
    int (*list)(void *impl, const char *prefix,
                int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                struct dverr *err);
    int (*del)(void *impl, const char *name, struct dverr *err); /* -ENOENT when absent */
    void (*free)(void *impl);
    /* Keep name from deletion and overwrite until `until` (S3 Object Lock retention, Azure blob
     * immutability policy; the mode is the driver's, from the configuration's object_lock).
     * Never shortens: an object already kept until then or later is left alone. -ENOTSUP when
     * the store cannot (the directory store; NULL here means the same). Last, so that tables
     * written in order without it still compile. */
    int (*retain)(void *impl, const char *name, time_t until, struct dverr *err);
};

/* Object sizes this process learnt without asking for them: what a remote driver saw when it wrote
 * or stat-ed an object, and what manifests record for their segments (repo.c). The compaction
 * rule reads them instead of sending a request per segment. Only names under "objects/" are kept,
 * at most OBJSTORE_SIZES_MAX (then it starts over). NULL-safe: with no memo nothing is kept and
 * nothing is known. Thread-safe (its own mutex). */
#define OBJSTORE_SIZES_MAX 65536
struct objstore_sizes;
struct objstore_sizes *objstore_sizes_new(void); /* NULL on out of memory */
void objstore_sizes_free(struct objstore_sizes *m);
void objstore_sizes_note(struct objstore_sizes *m, const char *name, uint64_t size);
bool objstore_sizes_get(struct objstore_sizes *m, const char *name, uint64_t *size);

struct objstore {
    const struct objstore_ops *ops;
    void *impl;
    char *location; /* as configured, for messages */
    char *local_dir; /* directory driver: its root (owned); NULL for remote stores. The repository
                        uses it for flock writer locks and temp files next to the objects. */
    struct objstore_sizes *sizes; /* owned, may be NULL (see above); remote drivers note into it */
    bool append_only;  /* set by objstore_append_only: writers create, never delete or overwrite
                          (objstore_lease.h follows it); immutable after that */
};

/* Open by location: a path (or file://path) -> directory driver; azure:// and s3:// -> the
 * object-storage drivers when built (issue 6), else -ENOTSUP. */
int objstore_open(const char *location, const struct config *cfg, struct objstore **out,
                  struct dverr *err);
int objstore_dir_open(const char *path, struct objstore **out, struct dverr *err);
/* Open with the prune credentials (s3_prune_credentials_file, azure_prune_key_file) in place of
 * the capture ones: what prune, forget and erase use. With append_only set, a remote location
 * without them is refused (-EPERM, saying which key to set); without append_only, or when they
 * are unset, the same as objstore_open. */
int objstore_open_prune(const char *location, const struct config *cfg, struct objstore **out,
                        struct dverr *err);
/* Make s append-only (issue 16, ransomware protection): del is refused (-EPERM: a writer in an
 * append-only repository deleting something is a bug), put becomes put_if_absent (-EEXIST when
 * the object exists) and put_file is refused over an existing object; s->append_only is set so
 * leases renew and release by creating objects. A guard on the client's side: the store's own
 * refusal (credentials without delete, object lock) is what holds against a thief. 0 or
 * -ENOMEM. */
int objstore_append_only(struct objstore *s);
void objstore_free(struct objstore *s); /* accepts NULL; calls ops->free, frees location,
                                            local_dir and sizes */
/* true when name is a valid object name (see above). */
bool objstore_name_ok(const char *name);
/* Object-storage drivers (issue 6): azure://ACCOUNT/CONTAINER/PREFIX and s3://BUCKET/PREFIX, with
 * endpoints and credential files from cfg. -ENOTSUP until built. */
int objstore_azure_open(const char *location, const struct config *cfg, struct objstore **out,
                        struct dverr *err);
int objstore_s3_open(const char *location, const struct config *cfg, struct objstore **out,
                     struct dverr *err);

#endif
