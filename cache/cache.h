/* cache: the local cache of materialised files (table files, changes files, blobs) that the mount
 * serves (docs/architecture.md, sections 3, 4 and 7).
 *
 * A cached file is a sequence of independent zstd frames, each holding CACHE_FRAME bytes of the
 * plain file (the last one fewer), with the zstd content checksum on; the frame index (compressed
 * length of every frame) lives in SQLite (<dir>/index.db), so a read at any offset decodes one
 * frame (random reads and mmap work). A file is filled from a caller-given source the first time
 * it is opened, by a two-thread pipeline: one thread reads the source into shared plain frames
 * that readers are served from at once (the first reader of a big table does not wait for the
 * whole table, nor for compression), the other compresses and writes them behind it, at most a
 * few frames behind. Decoded frames are kept in a few shared slots (in huge pages where allowed),
 * so sequential reads decode each frame once; an in-place read that ends at a frame's end
 * decodes the next frame right after its reply, while the reader consumes the bytes.
 *
 * Budget: the bytes of all cache files are kept at or under the budget (the --cache-size, also
 * bounded by the free disk space at open: 95% of what the cache may grow into) by evicting the
 * least recently used files that nobody has open. An open (or filling) file is never evicted, so
 * a single open file bigger than the whole budget can exceed it while it is open.
 *
 * Crash safety: a file is filled into <name>.tmp, fsynced and renamed, then its index row is
 * inserted; at open, temp files, files without a row and rows without a matching file are
 * removed, and a file's SHA-256 (stored in its row) is checked the first time it is opened after
 * a restart (a mismatch drops it and the file is filled again).
 * The directory is 0700 and files 0600 (it holds plaintext customer data). One process per cache
 * directory: cache_open takes an exclusive lock (-EBUSY when another process holds it).
 *
 * Threading: everything is thread-safe. One mutex guards the entry table and LRU; the SQLite
 * connection has its own mutex and is never used under the entry mutex; zstd work runs without
 * either. */
#ifndef DVSNAP_CACHE_H
#define DVSNAP_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/base/util.h"

#define CACHE_FRAME (1u << 20) /* plain bytes per zstd frame */
/* The default zstd level: a fast level, because a first read waits on compression (on a 1M-record
 * table, level 1 cost the writer 1.7x the CPU of level -1 for a 1.6x smaller file). */
#define CACHE_LEVEL (-1)

struct cache;
struct cache_file;

/* Where a file's bytes come from. Called on the fill thread only: open once, read until it
 * returns 0 (end) or a negative errno, close once. free_arg (may be NULL) is called with arg when
 * the cache no longer needs it (also when the file was already cached and open is never called).
 * The cache copies this struct; arg is owned by the cache from cache_file_open on. */
struct cache_source {
    int (*open)(void *arg, void **stream, struct dverr *err);
    ssize_t (*read)(void *stream, void *buf, size_t n, struct dverr *err);
    void (*close)(void *stream);
    void (*free_arg)(void *arg);
    void *arg;
};

struct cache_opts {
    uint64_t budget;       /* bytes; 0 means 2 GiB */
    int wait_ms;           /* a reader waits at most this long without fill progress; 0: 30000 */
    int level;             /* zstd level; 0 means CACHE_LEVEL */
};

/* Open (creating with mode 0700) the cache at dir and take its lock. -EBUSY when another process
 * uses it. */
int cache_open(const char *dir, const struct cache_opts *opts, struct cache **out,
               struct dverr *err);
/* Wait for fill threads to stop (they are asked to stop at the next frame), then free. */
void cache_free(struct cache *c); /* accepts NULL */

/* Open the cached file for key (any string that names the content for ever; the content must
 * never change under the same key), whose exact plain size is size. When it is not cached, a fill
 * from src starts in the background. src is consumed in every case. A source that produces a
 * different number of bytes than size makes the file fail (-EIO) rather than serve wrong bytes. */
int cache_file_open(struct cache *c, const char *key, uint64_t size,
                    const struct cache_source *src, struct cache_file **out, struct dverr *err);
/* Read up to n bytes at off (fewer only at the end of the file). Waits for the fill while it
 * makes progress; -EIO when the fill failed or made no progress for wait_ms (detail in err). */
ssize_t cache_file_pread(struct cache_file *f, void *buf, size_t n, uint64_t off,
                         struct dverr *err);
/* Like cache_file_pread without the copy: fn gets the bytes where the cache holds them, valid
 * only during the call, and its result is returned. -ERANGE (fn not called) when the range
 * crosses a frame boundary (use cache_file_pread); -EIO as cache_file_pread. */
int cache_file_read_in_place(struct cache_file *f, size_t n, uint64_t off,
                             int (*fn)(void *ctx, const void *p, size_t len), void *ctx,
                             struct dverr *err);

/* Asynchronous reads, so a FUSE worker never waits for a fill. A waiter is the caller's memory;
 * fields ending in _ belong to the cache. */
struct cache_waiter {
    /* Called once, on a cache thread, with no cache lock held: rc 0 when the bytes asked for can
     * be read without waiting (cache_file_pread), -EIO when the fill failed or made no progress
     * for wait_ms (the reason in msg). It may free the waiter. */
    void (*ready)(struct cache_waiter *w, int rc, const char *msg);
    struct cache_waiter *next_;
    const void *entry_;
    size_t frame_, seen_;
    int64_t deadline_;
    bool queued_;
};
/* 0 when [off, off+n) of f can be read now without waiting (w is not used). Otherwise registers
 * w (w->ready set by the caller) and returns -EINPROGRESS: w->ready runs exactly once unless
 * cache_waiter_cancel withdraws it first. */
int cache_file_wait_async(struct cache_file *f, uint64_t off, size_t n, struct cache_waiter *w);
/* Withdraw a registered waiter: true when it was still waiting (ready will never run); false
 * when ready has run or is about to (or w was never registered). */
bool cache_waiter_cancel(struct cache_file *f, struct cache_waiter *w);

/* Ask every fill to stop at its next frame and wait until none runs (their sources are freed);
 * the cache stays usable (a later open starts a new fill). For shutting a view down before the
 * objects its sources reference are freed. */
void cache_stop_fills(struct cache *c);
/* Wait until no fill is running (at most timeout_ms); 0, or -ETIMEDOUT. */
int cache_wait_fills(struct cache *c, int timeout_ms);
uint64_t cache_file_size(const struct cache_file *f);

/* FUSE passthrough serves a file from a plain file on disk (the kernel then reads it as it reads
 * local files: no daemon, no FUSE page cache). A plain copy is an unlinked file in the cache
 * directory holding the decoded bytes, counted in the budget and dropped first when room is
 * needed (never while the file is open). A call on a file that is READY starts building the copy
 * in the background (-EAGAIN); a call while the file fills, through an open other than the one
 * that started the fill (a read again), has the fill start it when it is done; a call through the
 * open that started the fill asks for nothing (a first read). Once the copy is there: its
 * descriptor (the cache's: do not close it; valid while f is open). -EAGAIN while filling or
 * building, -EINVAL below CACHE_PLAIN_MIN
 * bytes, -ENOSPC when it does not fit (more than half the budget, CACHE_PLAIN_MAX copies, or the
 * open files leave no room). */
#define CACHE_PLAIN_MIN CACHE_FRAME /* smaller files gain nothing worth a descriptor */
#define CACHE_PLAIN_MAX 64          /* descriptors held */
int cache_file_plain_fd(struct cache_file *f);
void cache_file_close(struct cache_file *f); /* accepts NULL */

struct cache_stats {
    uint64_t budget;        /* effective budget */
    uint64_t bytes;         /* bytes of cache files on disk (filling included) */
    uint64_t max_bytes;     /* the most bytes ever held since open */
    uint64_t files, open_files, fills, hits, evictions, frames_decoded;
    uint64_t plain_copies, plain_bytes; /* plain copies ready (see cache_file_plain_fd) */
};
void cache_stats(struct cache *c, struct cache_stats *out);

/* Drop every cached file whose key starts with key_prefix (rows, files, plain copies): for
 * content that changed under its key after all (an erasure). -EBUSY when one is in use (then
 * nothing is dropped). *purged (may be NULL) gets the count. */
int cache_purge(struct cache *c, const char *key_prefix, uint64_t *purged, struct dverr *err);

/* -EINVAL (with the reason) when mountpoint is inside the cache directory or the cache directory
 * is inside mountpoint (a mount reading its own cache would deadlock). Both paths must exist. */
int cache_check_mountpoint(const char *cache_dir, const char *mountpoint, struct dverr *err);

#endif
