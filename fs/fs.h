/* fs: the FUSE view of the repository (docs/architecture.md section 4), on libfuse3's low-level API
 * with an explicit multi-threaded session loop.
 *
 * The view reads its data through struct fs_source (the repository in dvsnap; an in-memory fake
 * in tests) and serves table, changes, audit, schema and attachment files from the cache
 * (cache/cache.h): the first open of a file starts a background fill and reads follow it.
 * Control files (.backup, .restore), .operations/ and rmdir go to struct fs_control (the
 * operations registry in dvsnap, backend/engine/ops.h), which may be NULL (then they are EROFS/absent).
 *
 * Limits: sizes come from the manifests (exact before the first read); schema documents and
 * backup.json are rendered (small) to know their size. Directories are opened without a request
 * (no OPENDIR) and the kernel caches their listings; each readdir request lists the directory.
 * Parsed manifests are kept in memory within FS_POINT_BYTES. Entries under a point have encoded
 * inode numbers and no state in the daemon (fs/node.c); the other entries the kernel knows are
 * kept to about opts.max_nodes (dvsnap mount --max-nodes; FS_MAX_NODES_DEFAULT, 200,000, when 0):
 * past it the least recently looked-up are dropped from the kernel's cache and the daemon's
 * memory, and looked up again when next used. Files read again are served by FUSE
 * passthrough from the cache's plain copies (fs/passthrough.h) when the daemon may.
 * Threading: FUSE worker threads (max_threads), one refresher thread that invalidates the
 * directories whose listings change (the root, environments, labels/, .operations/; inside a
 * point only backup.json, when a hold is placed or released), and the cache's fill threads.
 * Source and control calls are made without the view's locks held. */
#ifndef DVSNAP_FS_H
#define DVSNAP_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/repo/repo.h"
#include "backend/base/util.h"
#include "cache/cache.h"

/* Point views (a parsed manifest and its file names) kept in memory: at most FS_POINT_BYTES of
 * them (estimated), and at most FS_POINT_CACHE. 256 views did not hold one listing of an
 * environment of 1000 points, so every `ls -lR` parsed every manifest again. */
#define FS_POINT_CACHE 8192
#define FS_POINT_BYTES (32u << 20)

/* Where the data comes from. Every function may be called from any thread at the same time. */
struct fs_source_ops {
    int (*envs)(void *impl, char ***names, size_t *n, struct dverr *err); /* sorted, owned */
    int (*points)(void *impl, const char *env, struct point_summary **out, size_t *n,
                  struct dverr *err);                                       /* oldest first */
    void (*points_free)(struct point_summary *p, size_t n);
    /* A point; without with_files its file list may be left unread (point.h, files_later). */
    int (*point_load)(void *impl, const char *env, const char *name, bool with_files,
                      struct point **out, struct dverr *err);
    void (*point_free)(struct point *p);
    int (*env_doc)(void *impl, const char *env, struct buf *out, struct dverr *err);
    int (*backup_json)(void *impl, const struct point *p, struct buf *out);
    /* Stream tables/<table>.json (changes=false) or changes/<table>.json (changes=true). */
    int (*stream_open)(void *impl, const struct point *p, const char *table, bool changes,
                       void **stream, struct dverr *err);
    ssize_t (*stream_read)(void *stream, void *buf, size_t n, struct dverr *err);
    void (*stream_close)(void *stream);
    int (*blob_get)(void *impl, const char *id, struct buf *out, struct dverr *err);
    /* Delete a manual point (-EPERM for a system point). */
    int (*forget)(void *impl, const char *env, const char *name, struct dverr *err);
    /* The active holds of env as a JSON array of hold documents (point.h), appended to out (NULL:
     * the source has no holds; environment.json then shows []). backup_json shows a point's. */
    int (*holds_json)(void *impl, const char *env, struct buf *out);
};
struct fs_source {
    const struct fs_source_ops *ops;
    void *impl;
};

/* Control files and operations. Each function may block briefly (validation); work runs in the
 * background. All may be called from any thread. */
struct fs_control_ops {
    /* `echo LABEL > ENV/.backup`: 0 when started, else -errno (EPERM, EINVAL...) with the reason,
     * which status() then shows. */
    int (*backup)(void *ctx, const char *env, const char *label, struct dverr *err);
    /* `echo 'target=...' > ENV/POINT/.restore`: validated synchronously. */
    int (*restore)(void *ctx, const char *env, const char *point, const char *line,
                   struct dverr *err);
    /* What reading the control file shows (point NULL: ENV/.backup). */
    int (*status)(void *ctx, const char *env, const char *point, struct buf *out);
    /* .operations/: the ids (sorted, owned by the caller) and each one's JSON document. */
    int (*ops_list)(void *ctx, char ***ids, size_t *n);
    int (*ops_json)(void *ctx, const char *id, struct buf *out); /* -ENOENT when unknown */
    /* Seconds between captures when the mount runs the capture loop, else 0 (environment.json). */
    int64_t (*capture_every)(void *ctx);
};
struct fs_control {
    const struct fs_control_ops *ops;
    void *ctx;
};

struct fs_opts {
    const char *mountpoint;       /* absolute */
    bool allow_other;
    bool debug;
    int max_threads;              /* 0: 16 */
    size_t max_nodes;             /* kernel-known entries outside the points kept (1000 or
                                     more); 0: the default */
    bool no_passthrough;          /* never serve cached files by FUSE passthrough */
    int refresh_ms;               /* how often environments are checked for new points; 0: 1000 */
    const char *cache_key_prefix; /* names the repository in cache keys */
    struct cache *cache;          /* borrowed */
    struct fs_control *control;   /* borrowed, may be NULL */
    /* Called once the filesystem is mounted, e.g. to start threads. */
    void (*on_mounted)(void *ctx);
    void *on_mounted_ctx;
};

/* Mount and serve until unmounted or SIGINT/SIGTERM/SIGHUP; then unmount. 0 or -errno with the
 * reason in err (a stale mount at the mountpoint is -ENOTCONN with a hint). */
int fs_run(const struct fs_opts *opts, const struct fs_source *src, struct dverr *err);

/* true when path is a stale FUSE mount (stat gives ENOTCONN). */
bool fs_mount_is_stale(const char *path);

/* Parse a time for at/: RFC 3339 (any offset, fractional seconds) or a point name. */
int fs_parse_at_time(const char *s, time_t *out);

#endif
