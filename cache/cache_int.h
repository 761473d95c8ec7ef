/* cache_int: the internal structs and the functions shared by the files of cache/ (not part of
 * the contract, which is cache.h; only the files of cache/ include it). The files:
 *   cache.c    lifecycle: cache_open (directory checks, lock, slots), cache_free, stopping and
 *              waiting for fills, stats, the mountpoint check
 *   index.c    the SQLite index (<dir>/index.db): open, load and reconcile with the files at
 *              open, insert and delete rows
 *   entries.c  the entry table, the LRU list, the byte budget and eviction (c->mu held)
 *   handles.c  cache_file_open (a hit, checked once per process, or a new fill) and close
 *   fill.c     the two-thread fill pipeline (source -> shared slots -> zstd -> disk)
 *   read.c     reads: decoded frames in the shared slots, per-thread zstd contexts, prefetch
 *   waiters.c  asynchronous waiters and the watchdog that times them out
 *   plain.c    plain copies for FUSE passthrough
 *   purge.c    dropping files whose content changed under their key (an erasure)
 *
 * Locks: c->mu guards the entry table, the LRU list, every entry's mutable fields, the slots and
 * the counters; c->db_mu guards the SQLite connection. Never hold c->mu across file I/O that can
 * be large, zstd or SQLite work; c->db_mu is never taken while c->mu is held. Functions named
 * *_locked are called with c->mu held. Each fill, and each build of a plain copy, runs on its own
 * detached thread holding a reference on its entry; cache_free asks them to stop and waits for
 * them (c->fills_running). */
#ifndef DVSNAP_CACHE_INT_H
#define DVSNAP_CACHE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"
#include "cache/cache.h"

struct sqlite3; /* only index.c includes sqlite3.h */

enum entry_state { ENTRY_FILLING, ENTRY_READY, ENTRY_FAILED };

/* One cached file. key, name, id and size are immutable once the entry is in the table (or
 * handed to a fill); every other field is guarded by c->mu unless it says otherwise. */
struct entry {
    char *key;
    char name[65];          /* SHA-256 of key: the file is files/<name>.zst */
    uint64_t id;            /* unique per entry object (per-thread frame cache tag) */
    uint64_t size;          /* plain size */
    uint64_t disk_bytes;    /* bytes of the cache file so far; c->mu, changed only by the fill's
                             * writer thread, which reads it without the lock */
    uint64_t reserved;      /* bytes counted in c->bytes but not yet written (fill) */
    /* The frame index: c->mu while FILLING (the writer appends); fixed once the fill has ended,
     * so the fill thread (after the writer has stopped) and a holder of a reference on a READY
     * entry read it without the lock. */
    uint32_t *frame_len;    /* compressed length of each frame written so far */
    uint64_t *frame_off;    /* offset of each frame in the file */
    size_t n_frames, cap_frames;
    size_t n_plain;         /* frames published so far (in a slot until written; FILLING) */
    /* state, error and errmsg: c->mu; FAILED is final and errmsg is set before it, so a holder
     * of a FAILED entry reads errmsg without the lock. */
    enum entry_state state;
    int error;              /* -errno when FAILED */
    char errmsg[256];
    char sha[65];           /* SHA-256 of the file (READY): set at load, or by the fill thread
                             * before READY; fixed afterwards (read without the lock) */
    bool verified;          /* sha checked since this process opened the cache */
    int fd;                 /* open while refs > 0; -1 otherwise. c->mu; a holder of a reference
                             * uses an open fd without the lock */
    int plain_fd;           /* the plain copy (an unlinked file) when ready; else -1 */
    uint64_t plain_bytes;   /* counted in c->bytes: the plain copy, or its reservation */
    bool plain_wanted;      /* asked for while FILLING: build it once READY */
    int refs;               /* handles + the fill thread (+ a plain build, a prefetch) */
    uint64_t last_use;
    bool in_table;
    struct entry *hnext;    /* the table's chain; out of the table, a victims list (the
                             * caller's, no lock) */
    struct entry *lprev, *lnext; /* LRU: head = least recent */
};

#define CACHE_SLOTS 16
/* A decoded frame shared by every reader (c->mu): the kernel spreads one sequential read over
 * several worker threads, so a per-thread cache would decode each frame several times.
 * buf's bytes are written without the lock by whoever set busy, and read without the lock by
 * holders of a reference (refs) while busy is false. */
struct slot {
    uint64_t entry_id;      /* 0: empty */
    size_t frame;
    size_t len;
    char *buf;              /* CACHE_FRAME bytes of cache.slab; immutable after open */
    int refs;               /* readers copying out of buf (and the fill pipeline) */
    bool busy;              /* being decoded or published; wait on c->cond */
    uint64_t use;
};

struct cache {
    /* immutable after cache_open */
    char *dir;
    char *files_dir;
    int lock_fd;
    uint64_t budget;
    int wait_ms;
    int level;
    char *slab;                   /* the slots' buffers: CACHE_SLOTS frames, 2 MiB aligned */

    pthread_mutex_t mu;
    pthread_cond_t cond;     /* fill progress (all entries), slots and fill thread exit */
    /* guarded by mu */
    struct entry **buckets;
    size_t n_buckets, n_entries;
    struct entry *lru_head, *lru_tail;
    uint64_t bytes, max_bytes, use_clock, next_id;
    uint64_t open_files, fills, hits, evictions;
    size_t n_plain;               /* plain copies held or being built */
    int fills_running;            /* fill and plain-copy threads */
    struct slot slots[CACHE_SLOTS];
    struct cache_waiter *waiters; /* asynchronous readers */
    pthread_t watchdog;           /* fails waiters whose fill made no progress for wait_ms */
    bool watchdog_started, wd_stop;
    pthread_cond_t wd_cond;       /* wakes the watchdog (with mu) */

    /* atomic */
    atomic_int stopping;          /* fills and plain builds stop at their next frame */
    atomic_ullong frames_decoded;

    pthread_mutex_t db_mu;
    struct sqlite3 *db;           /* db_mu; cache_open and cache_free use it alone */
};

/* A handle: c, e and started_fill are immutable after cache_file_open. */
struct cache_file {
    struct cache *c;
    struct entry *e;
    bool started_fill;      /* this open started the fill (a first read, not a read again) */
};

/* One fill (fill.c): c, e and src are set before its thread starts and never change. */
#define FILL_QUEUE 4
struct fill_job {
    struct cache *c;
    struct entry *e;
    struct cache_source src;
    /* the queue of published frames waiting for the writer (c->mu) */
    struct slot *q[FILL_QUEUE];
    size_t q_head, q_len;
    bool q_end;              /* the fill thread has published its last frame */
    bool abort;              /* either side failed or the cache closes: stop */
    int wrc;                 /* the writer's result (c->mu; read by the fill after the join) */
    struct dverr werr;       /* the writer's; the fill thread reads it after the join */
    struct sha256_stream *sha; /* the writer's while it runs; the fill thread's before and after */
};

/* index.c: the SQLite index (takes c->db_mu, never with c->mu held; open and load run alone
 * inside cache_open). */
int cache_index_open(struct cache *c, struct dverr *err);
int cache_index_load(struct cache *c, struct dverr *err);
int cache_index_insert(struct cache *c, const struct entry *e, const uint32_t *frames, size_t n);
void cache_index_delete(struct cache *c, const char *name);
void cache_index_close(struct cache *c); /* accepts c->db == NULL */

/* entries.c: the table, the LRU and the budget (c->mu held unless said otherwise). */
struct entry *cache_table_find(struct cache *c, const char *name);
void cache_table_add(struct cache *c, struct entry *e);
void cache_table_remove(struct cache *c, struct entry *e);
void cache_lru_unlink(struct cache *c, struct entry *e);
void cache_lru_touch(struct cache *c, struct entry *e);
struct entry *cache_entry_new(struct cache *c, const char *key, const char *name);
void cache_entry_free(struct entry *e); /* accepts NULL; no lock */
int cache_entry_add_frame(struct entry *e, uint32_t len);
void cache_entry_path(const struct cache *c, const struct entry *e, bool tmp, char *out,
                      size_t n); /* no lock */
size_t cache_avail_frames(const struct entry *e);
/* Take e out of the table and the LRU and drop its plain copy and its bytes from the total; its
 * file is the caller's to delete. */
void cache_entry_drop_locked(struct cache *c, struct entry *e);
struct entry *cache_evict_locked(struct cache *c);
struct entry *cache_victims_join(struct entry *a, struct entry *b); /* no lock */
void cache_delete_victims(struct cache *c, struct entry *victims); /* without c->mu */
struct entry *cache_unref_locked(struct cache *c, struct entry *e);

/* fill.c: the fill thread's body (a struct fill_job, which it frees). */
void *cache_fill_main(void *arg);

/* waiters.c: answer the waiters of e that can be answered now (takes c->mu). */
void cache_waiters_kick(struct cache *c, struct entry *e, bool fail);

/* plain.c: plain copies (c->mu held). */
void cache_plain_drop_locked(struct cache *c, struct entry *e);
int cache_plain_start_locked(struct cache *c, struct entry *e, struct entry **victims);

#endif
