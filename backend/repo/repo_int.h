/* repo_int: internals of the repository (repo.h) shared by its files: repo.c (open, init, lock
 * files, points, environment and sealed documents, blobs), repo_read.c (table and changes
 * readers), repo_capture.c (segment writer glue, captures, compaction), repo_files.c (a
 * capture's file lists: the previous point's read back, the new one streamed), repo_maint.c (forget,
 * prune, check, catalog rebuild), repo_holds.c (holds), repo_keys.c (key objects) and
 * repo_erase.c (erasures). Not part of the contract; only these files include it, and two test
 * programs that look inside (test_repo.c, tests/tools/objtool.c).
 *
 * Locks (directory repositories: files under ROOT/locks; other stores: under the catalog's
 * directory for the writers of this machine, plus the lease object locks/<env>.lease.<gen> in the
 * store (objstore_lease.h) for writers on other machines, checked again before the manifest):
 *   <env>.lock   flock LOCK_EX for the whole capture of env (-EBUSY when held)
 *   prune.lock   captures hold LOCK_SH from begin to commit/abort; prune takes LOCK_EX, so prune
 *                never deletes an object that a capture in progress has written or reuses.
 * Commit order: segments and blobs are durable when written; the manifest is written with
 * put_if_absent; then the catalog transaction commits. A crash between the two leaves the catalog
 * behind the manifests; capture_begin notices (the state's point differs from the latest
 * manifest) and rebuilds that environment's state from the latest point.
 * Threading: struct repo is thread-safe; each field below says what guards it. */
#ifndef DVSNAP_REPO_INT_H
#define DVSNAP_REPO_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/repo/repo.h"

/* The longest a capture waits for a prune to finish, and a prune for captures (lock or lease). */
#define LOCK_WAIT_MS (300 * 1000)

struct catalog;
struct crypt;

#define REPO_CHUNK_MEMO 8 /* file list chunks kept by the load memo (struct repo.shared) */

/* The tables each chunk of a format-3 file list holds, in list order (named by its index id):
 * a reader of one table's files loads only the chunks that hold it, and a table's unchanged
 * chunks are carried by id without being read (repo_capture.c). */
struct chunk_tables {
    char index[65];          /* the list's index id ("" when unknown) */
    char ***tables;          /* n_chunks arrays of n[k] table names */
    char **first, **last;    /* each chunk's first and last file's record id */
    size_t *n, n_chunks, cap;
};
void chunk_tables_release(struct chunk_tables *t);

struct repo {
    struct objstore *store;  /* immutable after open (the store is thread-safe) */
    struct crypt *crypt;     /* immutable after open: the master key of an encrypted repository,
                                NULL for an unencrypted one (crypt.h; thread-safe) */
    char repo_id[40];        /* immutable after open: the config's id ("" when opened by store) */
    char key_id[40];         /* the key object that opened it, or "": set at open, changed only by
                                repo_key_passwd (a command's one thread, nothing else running) */
    char *catalog_path;      /* immutable after open */
    char *tmp_dir;           /* immutable after open: segment writers' temp files */
    char *lock_dir;          /* immutable after open: the lock files above */
    bool append_only;        /* immutable after open: config append_only (repo_open wrapped the
                                store: objstore_append_only; repo_open_prune did not) */
    bool object_lock;        /* immutable after open: config object_lock is set (remote stores):
                                a capture locks what its point names until its expires_at */
    struct objstore_sizes *locked; /* objects/ names -> the retain-until date this process set
                                (objstore.h's memo, thread-safe): a service's next capture does not
                                ask again for what is locked long enough; NULL: no memo */
    pthread_mutex_t mu;      /* guards cat and cat_err */
    struct catalog *cat;     /* guarded by mu; NULL when the catalog could not be opened */
    struct dverr cat_err;    /* why (guarded by mu) */
    pthread_mutex_t shared_mu; /* guards shared */
    struct {                 /* the last tables document, files document or index, and first
                              * REPO_CHUNK_MEMO file list chunks read (manifest.h): the points
                              * that share them (the idle points of an org of up to a few
                              * thousand files, whole) are loaded without reading them again */
        char id[65];
        struct buf doc;
    } shared[2 + REPO_CHUNK_MEMO]; /* guarded by shared_mu */
    struct chunk_tables files_memo; /* guarded by shared_mu: the tables in each chunk of the last
                                     * file list a capture of this process wrote, so its next
                                     * capture finds a table's chunks without reading them all */
};

/* The catalog, or NULL with why in err (damaged, or being rebuilt). */
struct catalog *repo_catalog_get(struct repo *r, struct dverr *err);

/* ---- lock files (repo.c) ---- */
/* Open (creating) the lock file name under r->lock_dir; *fd is the caller's to close. */
int repo_lock_open(struct repo *r, const char *name, int *fd, struct dverr *err);
/* flock(fd, op) with a bounded wait (polls: flock cannot time out); -EBUSY after wait_ms. */
int repo_lock_wait(int fd, int op, int64_t wait_ms);

/* ---- names (repo.c) ---- */
/* A growable list of strings (owned; free with strv_free(v, n)). */
struct name_list {
    char **v;
    size_t n, cap;
};
int name_list_add(struct name_list *l, const char *s, size_t len); /* 0 or -ENOMEM */
void name_list_sort_unique(struct name_list *l);
/* An objstore list callback adding every name to the name_list ctx. */
int name_list_collect(void *ctx, const char *obj, uint64_t size);
/* "points/<env>/<name>.json" -> env and name; false for anything else. */
bool repo_manifest_name_parse(const char *obj, char *env, size_t en, char *name, size_t nn);
/* The versions of env's environment document (envs/<env>/..., append-only repositories), oldest
 * first. */
int repo_env_doc_versions(struct repo *r, const char *env, struct name_list *out,
                          struct dverr *err);
/* The point names of env in the store (sorted, from its listing; no catalog). */
int repo_point_names(struct repo *r, const char *env, struct name_list *out, struct dverr *err);

/* ---- maintenance (repo_maint.c) ---- */
struct objstore_lease;
/* Remote stores: take locks/prune.lease once no capture lease is live (waiting up to
 * LOCK_WAIT_MS): what keeps prune and erase apart from captures on other machines. */
int repo_prune_lease_take(struct repo *r, struct objstore_lease **out, struct dverr *err);

/* Every object id p names (segments, deltas, schemas, file blobs, the table definitions index,
 * the shared tables document, files document or index and chunks), each given to fn; fn's non-zero return stops and is returned. */
int repo_point_each_id(const struct point *p, int (*fn)(void *ctx, const char *id), void *ctx);

/* object_lock (repo_maint.c): keep every object p names (segments, blobs, shared documents)
 * from deletion until `until` (objstore retain: extended, never shortened). 0 when object_lock is
 * off or until is 0 (a point that never expires is not locked). */
int repo_point_lock(struct repo *r, const struct point *p, time_t until, struct dverr *err);
/* The same for one object (blob or segment id): what repo_point_lock does for each, and what a
 * capture does for each file of the list it streams (repo_capture_files_add). */
int repo_object_lock(struct repo *r, const char *id, time_t until, struct dverr *err);

/* ---- holds (repo_holds.c) ---- */
/* The points of env that have a hold document (sorted; active or not). */
int repo_hold_names(struct repo *r, const char *env, struct name_list *out, struct dverr *err);

/* ---- erasures (repo_erase.c) ---- */
/* What says whether env's points were rewritten by an erasure since the catalog's capture state
 * was built: the newest erasure log's name, and "+journal" while one is unfinished. A capture
 * whose catalog knows another marker rebuilds the state from the latest point first (the
 * erasure may have run on another machine, or been killed). */
int repo_erasure_marker(struct repo *r, const char *env, char *out, size_t n, struct dverr *err);
/* The catalog's key that remembers it. */
void repo_erasure_marker_key(const char *env, char *out, size_t n);
/* ---- sealed documents (repo.c) ----
 * Manifests and environment documents of an encrypted repository are sealed whole (crypt.h) with
 * their object name as identity ("manifest:points/<env>/<name>.json", "envdoc:envs/<env>.json"),
 * so an older manifest stored under a newer point's name, or one environment's document under
 * another's, does not open. Unencrypted: the bytes as they are. */
int repo_doc_seal(struct repo *r, const char *kind, const char *obj, const void *data, size_t len,
                  struct buf *out, struct dverr *err);
/* Opened (or copied) into out; -EIO naming the object when it does not open. */
int repo_doc_open(struct repo *r, const char *kind, const char *obj, const struct buf *stored,
                  struct buf *out, struct dverr *err);
/* Sealed and put (replacing what obj held). */
int repo_doc_put(struct repo *r, const char *kind, const char *obj, const void *data, size_t len,
                 struct dverr *err);
/* Got and opened into out; -EIO when obj's stored size is over max_stored. */
int repo_doc_get(struct repo *r, const char *kind, const char *obj, uint64_t max_stored,
                 struct buf *out, struct dverr *err);

/* ---- a capture in progress (repo_capture.c; its file lists: repo_files.c) ---- */
struct files_out;
struct repo_capture {
    struct repo *r;
    char *env;
    int lock_fd, prune_fd;
    struct objstore_lease *lease; /* remote stores: the writer lease (objstore_lease.h) */
    struct point *prev;              /* format 3: loaded without its file entries (files_later) */
    struct chunk_tables prev_tables; /* format 3: the tables of each chunk of prev's list (from
                                      * the memo, else read once at begin) */
    struct files_out *files;         /* the new point's list, streamed (repo_capture_files_*) */
    bool files_named;                /* files_finish named the list in the point: commit keeps it */
    struct chunk_tables new_tables;  /* the tables of each chunk of that list (to the memo) */
    struct catalog_capture *cc;
};
/* The tables of each chunk of c->prev's list into c->prev_tables (from the memo, else read). */
int repo_chunk_tables_read(struct repo_capture *c, struct dverr *err);
void repo_files_out_free(struct files_out *o); /* accepts NULL */

/* ---- shared documents of a point (repo_files.c; manifest.h, format 3) ---- */
/* Store p's tables document, its file list's chunks and their index (filelist.h) as blobs: their
 * ids into tables_id, files_id (the index) and *chunks (n_chunks malloc'd ids, the array malloc'd;
 * the caller frees them). Chunks that base (NULL: none) names are there already and are not
 * written nor looked at again, so an idle pass costs no request per chunk. */
int repo_point_shared_put(struct repo *r, const struct point *p, const struct point *base,
                          char tables_id[65], char files_id[65], char ***chunks, size_t *n_chunks,
                          struct dverr *err);

/* ---- capture state (repo_capture.c) ---- */
/* Replace env's capture state in cat with the records of p (NULL: empty). */
int repo_env_state_rebuild(struct repo *r, struct catalog *cat, const char *env,
                           const struct point *p, struct dverr *err);

#endif
