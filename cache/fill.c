/* cache: seekable zstd cache files with a SQLite frame index, a byte budget with LRU eviction,
 * background fills that readers can follow, and crash-safe commits. Contract in cache.h.
 *
 * Locks: c->mu guards the entry table, the LRU list, every entry's mutable fields and the
 * counters; c->db_mu guards the SQLite connection. Never hold c->mu across file I/O that can be
 * large, zstd or SQLite work; c->db_mu is never taken while c->mu is held.
 * Each fill, and each build of a plain copy, runs on its own detached thread holding a reference
 * on its entry; cache_free asks them to stop and waits for them (c->fills_running). */
#include "cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "backend/base/log.h"

enum entry_state { ENTRY_FILLING, ENTRY_READY, ENTRY_FAILED };

struct entry {
    char *key;
    char name[65];          /* SHA-256 of key: the file is files/<name>.zst */
    uint64_t id;            /* unique per entry object (per-thread frame cache tag) */
    uint64_t size;          /* plain size */
    uint64_t disk_bytes;    /* bytes of the cache file so far */
    uint64_t reserved;      /* bytes counted in c->bytes but not yet written (fill) */
    uint32_t *frame_len;    /* compressed length of each frame written so far */
    uint64_t *frame_off;    /* offset of each frame in the file */
    size_t n_frames, cap_frames;
    size_t n_plain;         /* frames published so far (in a slot until written; FILLING) */
    enum entry_state state;
    int error;              /* -errno when FAILED */
    char errmsg[256];
    char sha[65];           /* SHA-256 of the file (READY) */
    bool verified;          /* sha checked since this process opened the cache */
    int fd;                 /* open while refs > 0; -1 otherwise */
    int plain_fd;           /* the plain copy (an unlinked file) when ready; else -1 */
    uint64_t plain_bytes;   /* counted in c->bytes: the plain copy, or its reservation */
    bool plain_wanted;      /* asked for while FILLING: build it once READY */
    int refs;               /* handles + the fill thread */
    uint64_t last_use;
    bool in_table;
    struct entry *hnext;
    struct entry *lprev, *lnext; /* LRU: head = least recent */
};

#define CACHE_SLOTS 16
/* A decoded frame shared by every reader (c->mu): the kernel spreads one sequential read over
 * several worker threads, so a per-thread cache would decode each frame several times. */
struct slot {
    uint64_t entry_id;      /* 0: empty */
    size_t frame;
    size_t len;
    char *buf;              /* CACHE_FRAME bytes of cache.slab */
    int refs;               /* readers copying out of buf */
    bool busy;              /* being decoded or published; wait on c->cond */
    uint64_t use;
};

struct cache {
    char *dir;
    char *files_dir;
    int lock_fd;
    uint64_t budget;
    int wait_ms;
    int level;

    pthread_mutex_t mu;
    pthread_cond_t cond;     /* fill progress (all entries) and fill thread exit */
    struct entry **buckets;
    size_t n_buckets, n_entries;
    struct entry *lru_head, *lru_tail;
    uint64_t bytes, max_bytes, use_clock, next_id;
    uint64_t open_files, fills, hits, evictions;
    size_t n_plain;               /* plain copies held or being built */
    int fills_running;
    atomic_int stopping;
    atomic_ullong frames_decoded;
    struct slot slots[CACHE_SLOTS];
    char *slab;                   /* the slots' buffers: CACHE_SLOTS frames, 2 MiB aligned */
    struct cache_waiter *waiters; /* asynchronous readers (c->mu) */
    pthread_t watchdog;           /* fails waiters whose fill made no progress for wait_ms */
    bool watchdog_started, wd_stop;
    pthread_cond_t wd_cond;

    pthread_mutex_t db_mu;
    sqlite3 *db;
};

struct cache_file {
    struct cache *c;
    struct entry *e;
    bool started_fill;      /* this open started the fill (a first read, not a read again) */
};

/* ---- per-thread frame cache ---- */
struct frame_tls {
    char *comp;
    size_t comp_cap;
    ZSTD_DCtx *dctx;
};
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_destroy(void *p)
{
    struct frame_tls *t = p;
    if (!t)
        return;
    free(t->comp);
    ZSTD_freeDCtx(t->dctx);
    free(t);
}

static void tls_init(void)
{
    pthread_key_create(&tls_key, tls_destroy);
}

static struct frame_tls *tls_get(void)
{
    pthread_once(&tls_once, tls_init);
    struct frame_tls *t = pthread_getspecific(tls_key);
    if (t)
        return t;
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->dctx = ZSTD_createDCtx();
    if (!t->dctx) {
        tls_destroy(t);
        return NULL;
    }
    /* a frame of 1 MiB never needs a bigger window; refuse anything claiming more */
    ZSTD_DCtx_setParameter(t->dctx, ZSTD_d_windowLogMax, 21);
    pthread_setspecific(tls_key, t);
    return t;
}

/* ---- SQLite ---- */
static int sqlite_to_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_PERM: case SQLITE_READONLY: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CANTOPEN: return -ENOENT;
    default: return -EIO;
    }
}

static int db_exec(struct cache *c, const char *sql, struct dverr *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        dverr_set(err, sqlite_to_errno(rc), "cache index: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return sqlite_to_errno(rc) ? sqlite_to_errno(rc) : -EIO;
    }
    return 0;
}

static int db_insert(struct cache *c, const struct entry *e, const uint32_t *frames, size_t n)
{
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&c->db_mu);
    int rc = sqlite3_prepare_v2(c->db,
                                "INSERT OR REPLACE INTO files(name,key,size,disk_bytes,sha256,"
                                "last_use,frames) VALUES(?,?,?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, e->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)e->size);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)e->disk_bytes);
        sqlite3_bind_text(st, 5, e->sha, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
        sqlite3_bind_blob(st, 7, frames, (int)(n * sizeof *frames), SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->db_mu);
    return sqlite_to_errno(rc);
}

static void db_delete(struct cache *c, const char *name)
{
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&c->db_mu);
    if (sqlite3_prepare_v2(c->db, "DELETE FROM files WHERE name=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->db_mu);
}

/* ---- entries (c->mu held) ---- */
static size_t key_hash(const char *name)
{
    size_t h = 0;
    for (int i = 0; i < 16; i++)
        h = h * 16 + (size_t)(name[i] <= '9' ? name[i] - '0' : name[i] - 'a' + 10);
    return h;
}

static struct entry *table_find(struct cache *c, const char *name)
{
    for (struct entry *e = c->buckets[key_hash(name) % c->n_buckets]; e; e = e->hnext)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void table_grow(struct cache *c)
{
    size_t nb = c->n_buckets * 2;
    struct entry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* stay with longer chains */
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct entry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            size_t h = key_hash(e->name) % nb;
            e->hnext = b[h];
            b[h] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
}

static void table_add(struct cache *c, struct entry *e)
{
    if (c->n_entries + 1 > c->n_buckets * 2)
        table_grow(c);
    size_t h = key_hash(e->name) % c->n_buckets;
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    e->in_table = true;
    c->n_entries++;
}

static void table_remove(struct cache *c, struct entry *e)
{
    if (!e->in_table)
        return;
    struct entry **pp = &c->buckets[key_hash(e->name) % c->n_buckets];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    e->in_table = false;
    c->n_entries--;
}

static void lru_unlink(struct cache *c, struct entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else if (c->lru_head == e)
        c->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else if (c->lru_tail == e)
        c->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_touch(struct cache *c, struct entry *e)
{
    lru_unlink(c, e);
    e->lprev = c->lru_tail;
    if (c->lru_tail)
        c->lru_tail->lnext = e;
    else
        c->lru_head = e;
    c->lru_tail = e;
    e->last_use = ++c->use_clock;
}

static struct entry *entry_new(struct cache *c, const char *key, const char *name)
{
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->key = strdup(key);
    if (!e->key) {
        free(e);
        return NULL;
    }
    memcpy(e->name, name, 65);
    e->id = ++c->next_id;
    e->fd = -1;
    e->plain_fd = -1;
    return e;
}

static void entry_free(struct entry *e)
{
    if (!e)
        return;
    if (e->fd >= 0)
        close(e->fd);
    if (e->plain_fd >= 0)
        close(e->plain_fd);
    free(e->key);
    free(e->frame_len);
    free(e->frame_off);
    free(e);
}

static int entry_add_frame(struct entry *e, uint32_t len)
{
    if (e->n_frames == e->cap_frames) {
        size_t cap = e->cap_frames ? e->cap_frames * 2 : 16;
        uint32_t *fl = realloc(e->frame_len, cap * sizeof *fl);
        if (!fl)
            return -ENOMEM;
        e->frame_len = fl;
        uint64_t *fo = realloc(e->frame_off, cap * sizeof *fo);
        if (!fo)
            return -ENOMEM;
        e->frame_off = fo;
        e->cap_frames = cap;
    }
    e->frame_off[e->n_frames] = e->disk_bytes;
    e->frame_len[e->n_frames] = len;
    e->n_frames++;
    e->disk_bytes += len;
    return 0;
}

static void path_of(const struct cache *c, const struct entry *e, bool tmp, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.%s", c->files_dir, e->name, tmp ? "tmp" : "zst");
}

/* A plain copy's bytes leave the budget (c->mu held): the copy was dropped, or its build did not
 * start or failed. */
static void plain_unreserve_locked(struct cache *c, struct entry *e)
{
    c->bytes -= e->plain_bytes;
    e->plain_bytes = 0;
    c->n_plain--;
}

/* Being built: its bytes are reserved, its descriptor is not there yet. */
static bool plain_building(const struct entry *e)
{
    return e->plain_bytes > 0 && e->plain_fd < 0;
}

static void plain_drop_locked(struct cache *c, struct entry *e)
{
    if (e->plain_fd < 0)
        return;
    close(e->plain_fd); /* unlinked: its blocks go with the last descriptor */
    e->plain_fd = -1;
    plain_unreserve_locked(c, e);
}

/* Pick victims until bytes fit the budget (c->mu held). Victims leave the table and the LRU and
 * are returned as a list (linked through hnext) for the caller to delete without the lock. */
static struct entry *evict_locked(struct cache *c)
{
    struct entry *victims = NULL;
    /* plain copies first: they are the biggest and can be made again from the frames */
    for (struct entry *e = c->lru_head; e && c->bytes > c->budget; e = e->lnext)
        if (e->refs == 0)
            plain_drop_locked(c, e);
    struct entry *e = c->lru_head;
    while (c->bytes > c->budget && e) {
        struct entry *next = e->lnext;
        if (e->refs == 0 && e->state == ENTRY_READY) {
            lru_unlink(c, e);
            table_remove(c, e);
            plain_drop_locked(c, e);
            c->bytes -= e->disk_bytes;
            c->evictions++;
            e->hnext = victims;
            victims = e;
        }
        e = next;
    }
    return victims;
}

/* One list of two victim lists. */
static struct entry *victims_join(struct entry *a, struct entry *b)
{
    if (!a)
        return b;
    struct entry *last = a;
    while (last->hnext)
        last = last->hnext;
    last->hnext = b;
    return a;
}

static void delete_victims(struct cache *c, struct entry *victims)
{
    char path[PATH_MAX];
    while (victims) {
        struct entry *next = victims->hnext;
        db_delete(c, victims->name);
        path_of(c, victims, false, path, sizeof path);
        unlink(path);
        entry_free(victims);
        victims = next;
    }
}

/* Drop a reference (c->mu held). An unreferenced FAILED entry (already out of the table) is
 * returned for freeing; READY ones close their fd. */
static struct entry *unref_locked(struct cache *c, struct entry *e)
{
    if (--e->refs > 0)
        return NULL;
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
    }
    if (e->state == ENTRY_FAILED || !e->in_table)
        return e;
    return NULL;
}

/* ---- asynchronous waiters ---- */

static size_t avail_frames(const struct entry *e);

struct fired {
    struct cache_waiter *list;
};

/* Move waiters of e (every entry when e is NULL) that can be answered to *out (c->mu held):
 * those whose frame is available (rc 0), and, when fail is set, all the others (-EIO). Each
 * fired waiter's outcome is kept in its seen_ field: see fire_run. */
static void waiters_take_locked(struct cache *c, const struct entry *e, bool fail,
                                struct fired *out, int64_t now_ms_)
{
    struct cache_waiter **pp = &c->waiters;
    while (*pp) {
        struct cache_waiter *w = *pp;
        const struct entry *we = w->entry_;
        bool ready = w->frame_ < avail_frames(we);
        bool expired = false;
        if (!ready && now_ms_ > 0) {
            if (avail_frames(we) != w->seen_) {
                w->seen_ = avail_frames(we);
                w->deadline_ = now_ms_ + (int64_t)c->wait_ms;
            } else if (now_ms_ >= w->deadline_) {
                expired = true;
            }
        }
        bool mine = !e || we == e;
        bool failed = !ready && (expired || (mine && fail) || we->state == ENTRY_FAILED);
        if ((mine && ready) || failed) {
            *pp = w->next_;
            w->queued_ = false;
            /* seen_ now carries the outcome: 0 ready, 1 failed, 2 timed out */
            w->seen_ = ready ? 0 : expired ? 2 : 1;
            w->next_ = out->list;
            out->list = w;
        } else {
            pp = &w->next_;
        }
    }
}

/* Run the callbacks of fired waiters (no lock held). */
static void fire_run(struct cache *c, struct fired *fl)
{
    struct cache_waiter *w = fl->list;
    while (w) {
        struct cache_waiter *next = w->next_;
        const struct entry *e = w->entry_;
        char msg[300];
        if (w->seen_ == 0)
            msg[0] = '\0';
        else if (w->seen_ == 2)
            snprintf(msg, sizeof msg, "no progress for %d ms", c->wait_ms);
        else
            snprintf(msg, sizeof msg, "%s", e->state == ENTRY_FAILED ? e->errmsg : "fill stopped");
        w->ready(w, w->seen_ == 0 ? 0 : -EIO, msg);
        w = next;
    }
    fl->list = NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watchdog_main(void *arg)
{
    struct cache *c = arg;
    pthread_setname_np(pthread_self(), "cache-watch");
    pthread_mutex_lock(&c->mu);
    while (!c->wd_stop || c->waiters) {
        struct fired fl = {0};
        waiters_take_locked(c, NULL, c->wd_stop, &fl, mono_ms());
        if (fl.list) {
            pthread_mutex_unlock(&c->mu);
            fire_run(c, &fl);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (c->wd_stop)
            break;
        struct timespec ts = timespec_in_ms(CLOCK_REALTIME, 100);
        pthread_cond_timedwait(&c->wd_cond, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Answer the waiters of e that can be answered now (takes c->mu). */
static void waiters_kick(struct cache *c, struct entry *e, bool fail)
{
    struct fired fl = {0};
    pthread_mutex_lock(&c->mu);
    if (c->waiters)
        waiters_take_locked(c, e, fail, &fl, 0);
    pthread_mutex_unlock(&c->mu);
    fire_run(c, &fl);
}

/* ---- fill ----
 * Two threads per fill, a pipeline: the fill thread reads the source into a shared slot (the
 * plain frame) and publishes it at once (e->n_plain), so readers are served from memory; the
 * writer thread compresses each published frame, writes it, and only then lets its slot go
 * (e->n_frames). At most FILL_QUEUE frames wait for the writer, so memory stays bounded and the
 * slot of every frame in [n_frames, n_plain) is held, which is what readers rely on. */
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
    int wrc;                 /* the writer's result */
    struct dverr werr;
    struct sha256_stream *sha;
};

static void fill_fail(struct cache *c, struct entry *e, int rc, const char *msg)
{
    char path[PATH_MAX];
    path_of(c, e, true, path, sizeof path);
    unlink(path);
    pthread_mutex_lock(&c->mu);
    e->state = ENTRY_FAILED;
    e->error = rc < 0 ? rc : -EIO;
    snprintf(e->errmsg, sizeof e->errmsg, "%s", msg);
    table_remove(c, e);
    lru_unlink(c, e);
    c->bytes -= e->disk_bytes + e->reserved;
    e->reserved = 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    waiters_kick(c, e, true);
    log_warn("cache: filling %s failed: %s", e->key, msg);
}

/* Release a slot the pipeline holds (c->mu held); keep must be false for a frame that is not
 * valid (nothing may find it). */
static void slot_release_locked(struct cache *c, struct slot *s, bool keep)
{
    s->refs--;
    if (!keep)
        s->entry_id = 0;
    pthread_cond_broadcast(&c->cond);
}

/* Whether another fill that no handle holds is running (c->mu held): its file becomes
 * evictable when the fill ends. */
static bool finishing_locked(const struct cache *c, const struct entry *self)
{
    for (const struct entry *x = c->lru_head; x; x = x->lnext)
        if (x != self && x->state == ENTRY_FILLING && x->refs == 1)
            return true;
    return false;
}

/* Compress, count, write and index one frame (no lock held on entry). */
static int write_frame(struct fill_job *job, ZSTD_CCtx *cctx, char *comp, size_t cap,
                       const struct slot *s)
{
    struct cache *c = job->c;
    struct entry *e = job->e;
    struct dverr *err = &job->werr;
    size_t clen = ZSTD_compress2(cctx, comp, cap, s->buf, s->len);
    if (ZSTD_isError(clen))
        return dverr_set(err, -EIO, "zstd: %s", ZSTD_getErrorName(clen));
    /* count the frame against the budget (evicting) before it reaches the disk */
    pthread_mutex_lock(&c->mu);
    c->bytes += clen;
    e->reserved += clen;
    struct entry *victims = evict_locked(c);
    if (c->bytes > c->budget && finishing_locked(c, e)) {
        /* a fill that nobody reads any more (its reader went ahead of the writer) becomes
         * evictable when it ends: wait for that (bounded) rather than go over the budget */
        struct timespec dl = timespec_in_ms(CLOCK_REALTIME, 500);
        while (c->bytes > c->budget && finishing_locked(c, e) &&
               pthread_cond_timedwait(&c->cond, &c->mu, &dl) != ETIMEDOUT) {
            struct entry *more = evict_locked(c);
            while (more) {
                struct entry *next = more->hnext;
                more->hnext = victims;
                victims = more;
                more = next;
            }
        }
    }
    if (c->bytes > c->max_bytes)
        c->max_bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
    delete_victims(c, victims);
    uint64_t off = e->disk_bytes; /* only this thread changes disk_bytes */
    for (size_t done = 0; done < clen;) {
        ssize_t w = pwrite(e->fd, comp + done, clen - done, (off_t)(off + done));
        if (w < 0)
            return dverr_set(err, -errno, "write cache file: %s", strerror(errno));
        done += (size_t)w;
    }
    sha256_stream_update(job->sha, comp, clen);
    return (int)clen;
}

static void *writer_main(void *arg)
{
    struct fill_job *job = arg;
    struct cache *c = job->c;
    struct entry *e = job->e;
    size_t cap = ZSTD_compressBound(CACHE_FRAME);
    char *comp = malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    int rc = 0;
    if (!comp || !cctx) {
        rc = dverr_set(&job->werr, -ENOMEM, "out of memory");
    } else {
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, c->level);
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    }
    pthread_setname_np(pthread_self(), "cache-write");
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (job->q_len == 0 && !job->q_end && !job->abort)
            pthread_cond_wait(&c->cond, &c->mu);
        if (job->q_len == 0)
            break;
        struct slot *s = job->q[job->q_head];
        job->q_head = (job->q_head + 1) % FILL_QUEUE;
        job->q_len--;
        pthread_cond_broadcast(&c->cond); /* room in the queue */
        if (rc || job->abort || atomic_load(&c->stopping)) {
            if (!rc)
                rc = dverr_set(&job->werr, -ECANCELED, "cache closing");
            slot_release_locked(c, s, false);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        int w = write_frame(job, cctx, comp, cap, s);
        pthread_mutex_lock(&c->mu);
        if (w >= 0) {
            rc = entry_add_frame(e, (uint32_t)w);
            if (rc == 0)
                e->reserved -= (uint64_t)w;
            else
                dverr_set(&job->werr, rc, "out of memory");
        } else {
            rc = w;
        }
        slot_release_locked(c, s, rc == 0);
        if (rc)
            job->abort = true;
    }
    job->wrc = rc;
    pthread_mutex_unlock(&c->mu);
    free(comp);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

/* Take a free slot for frame k of e, marked busy and held (c->mu held); waits while the writer's
 * queue is full or every slot is in use. NULL when the pipeline aborts. */
static struct slot *fill_slot_locked(struct fill_job *job, size_t k)
{
    struct cache *c = job->c;
    for (;;) {
        if (job->abort || atomic_load(&c->stopping))
            return NULL;
        struct slot *v = NULL;
        if (job->q_len < FILL_QUEUE)
            for (int i = 0; i < CACHE_SLOTS; i++) {
                struct slot *s = &c->slots[i];
                if (s->refs == 0 && !s->busy && (!v || s->use < v->use))
                    v = s;
            }
        if (v) {
            v->busy = true;
            v->entry_id = job->e->id;
            v->frame = k;
            v->refs = 1;
            v->len = 0;
            return v;
        }
        struct timespec ts = timespec_in_ms(CLOCK_REALTIME, 1000); /* recheck stopping now and then */
        pthread_cond_timedwait(&c->cond, &c->mu, &ts);
    }
}

static int plain_start_locked(struct cache *c, struct entry *e, struct entry **victims);

static void *fill_main(void *arg)
{
    struct fill_job *job = arg;
    struct cache *c = job->c;
    struct entry *e = job->e;
    struct dverr err = {0};
    void *stream = NULL;
    char probe[1];
    uint64_t total = 0;
    int rc = 0;
    bool opened = false, writer = false;
    pthread_t wth;

    pthread_setname_np(pthread_self(), "cache-fill");
    job->sha = sha256_stream_new();
    if (!job->sha) {
        rc = dverr_set(&err, -ENOMEM, "out of memory");
        goto out;
    }
    rc = job->src.open(job->src.arg, &stream, &err);
    if (rc) {
        dverr_set(&err, rc, "cannot open source");
        goto out;
    }
    opened = true;
    rc = pthread_create(&wth, NULL, writer_main, job);
    if (rc) {
        rc = dverr_set(&err, -rc, "cannot start a cache writer thread");
        goto out;
    }
    writer = true;
    for (size_t k = 0;; k++) {
        pthread_mutex_lock(&c->mu);
        struct slot *s = fill_slot_locked(job, k);
        pthread_mutex_unlock(&c->mu);
        if (!s) {
            rc = dverr_set(&err, -ECANCELED, "cache closing");
            goto out;
        }
        size_t fill = 0;
        bool end = false;
        while (!rc && fill < CACHE_FRAME) {
            if (atomic_load(&c->stopping)) {
                rc = dverr_set(&err, -ECANCELED, "cache closing");
                break;
            }
            ssize_t n = job->src.read(stream, s->buf + fill, CACHE_FRAME - fill, &err);
            if (n < 0) {
                rc = dverr_set(&err, (int)n, "read failed");
            } else if (n == 0) {
                end = true;
                break;
            } else {
                fill += (size_t)n;
            }
        }
        total += fill;
        if (!rc && total > e->size)
            rc = dverr_set(&err, -EIO, "source gave more than the expected %llu bytes",
                           (unsigned long long)e->size);
        if (!rc && !end && fill < CACHE_FRAME) /* cannot happen; never publish it */
            rc = dverr_set(&err, -EIO, "short read from the source");
        pthread_mutex_lock(&c->mu);
        s->busy = false;
        if (rc || fill == 0) {
            slot_release_locked(c, s, false);
        } else {
            /* publish: readers may copy from it now; the writer holds it until it is on disk */
            s->len = fill;
            s->use = ++c->use_clock;
            job->q[(job->q_head + job->q_len) % FILL_QUEUE] = s;
            job->q_len++;
            e->n_plain = k + 1;
            pthread_cond_broadcast(&c->cond);
        }
        bool kick = c->waiters != NULL;
        pthread_mutex_unlock(&c->mu);
        if (rc)
            goto out;
        if (kick)
            waiters_kick(c, e, false);
        if (end || fill < CACHE_FRAME) {
            if (!end) {
                ssize_t n = job->src.read(stream, probe, 1, &err);
                if (n != 0) {
                    rc = dverr_set(&err, n < 0 ? (int)n : -EIO, "source did not end");
                    goto out;
                }
            }
            break;
        }
    }
    if (total != e->size)
        rc = dverr_set(&err, -EIO, "source gave %llu bytes, expected %llu",
                       (unsigned long long)total, (unsigned long long)e->size);
out:
    if (writer) {
        pthread_mutex_lock(&c->mu);
        job->q_end = true;
        if (rc)
            job->abort = true;
        pthread_cond_broadcast(&c->cond);
        pthread_mutex_unlock(&c->mu);
        pthread_join(wth, NULL);
        if (!rc && job->wrc) {
            rc = job->wrc;
            dverr_set(&err, rc, "%s", dverr_msg(&job->werr));
        }
    }
    if (opened)
        job->src.close(stream);
    if (job->src.free_arg)
        job->src.free_arg(job->src.arg);
    if (!rc && fsync(e->fd) < 0)
        rc = dverr_set(&err, -errno, "fsync cache file: %s", strerror(errno));
    if (!rc) {
        char tmp[PATH_MAX], final[PATH_MAX];
        path_of(c, e, true, tmp, sizeof tmp);
        path_of(c, e, false, final, sizeof final);
        if (rename(tmp, final) < 0) {
            rc = dverr_set(&err, -errno, "rename cache file: %s", strerror(errno));
        } else {
            fsync_dir(c->files_dir);
            sha256_stream_finish(job->sha, e->sha);
            job->sha = NULL;
            if (db_insert(c, e, e->frame_len, e->n_frames) != 0)
                log_warn("cache: cannot index %s (it will be filled again after a restart)",
                         e->key);
        }
    }
    if (job->sha) {
        char dummy[65];
        sha256_stream_finish(job->sha, dummy);
    }
    if (rc)
        fill_fail(c, e, rc, dverr_msg(&err));
    pthread_mutex_lock(&c->mu);
    struct entry *victims = NULL;
    if (!rc) {
        e->state = ENTRY_READY;
        e->verified = true;
        pthread_cond_broadcast(&c->cond);
        if (e->plain_wanted && !atomic_load(&c->stopping))
            plain_start_locked(c, e, &victims);
    }
    struct entry *dead = unref_locked(c, e);
    victims = victims_join(evict_locked(c), victims);
    c->fills_running--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    entry_free(dead);
    delete_victims(c, victims);
    free(job);
    return NULL;
}

/* ---- open / load ---- */
static int cleanup_and_load(struct cache *c, struct dverr *err)
{
    char path[PATH_MAX];
    sqlite3_stmt *st = NULL;
    int rc = 0;

    /* remove temp files of an earlier process */
    DIR *d = opendir(c->files_dir);
    if (!d)
        return dverr_set(err, -errno, "cache: %s: %s", c->files_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);

    rc = sqlite3_prepare_v2(c->db,
                            "SELECT name,key,size,disk_bytes,sha256,frames FROM files "
                            "ORDER BY last_use",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dverr_set(err, sqlite_to_errno(rc), "cache index: %s", sqlite3_errmsg(c->db));
    char **stale = NULL;
    size_t n_stale = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *key = (const char *)sqlite3_column_text(st, 1);
        uint64_t size = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t disk = (uint64_t)sqlite3_column_int64(st, 3);
        const char *sha = (const char *)sqlite3_column_text(st, 4);
        const uint32_t *frames = sqlite3_column_blob(st, 5);
        size_t nf = (size_t)sqlite3_column_bytes(st, 5) / sizeof(uint32_t);
        struct stat sb;
        bool ok = name && key && sha && strlen(name) == 64 && strlen(sha) == 64;
        uint64_t sum = 0;
        for (size_t i = 0; ok && i < nf; i++)
            sum += frames[i];
        ok = ok && sum == disk && nf == (size + CACHE_FRAME - 1) / CACHE_FRAME;
        if (ok) {
            snprintf(path, sizeof path, "%s/%s.zst", c->files_dir, name);
            ok = stat(path, &sb) == 0 && (uint64_t)sb.st_size == disk;
        }
        if (ok && !table_find(c, name)) {
            struct entry *e = entry_new(c, key, name);
            if (!e) {
                rc = -ENOMEM;
                break;
            }
            e->size = size;
            for (size_t i = 0; i < nf; i++)
                entry_add_frame(e, frames[i]);
            if (e->n_frames != nf) {
                entry_free(e);
                rc = -ENOMEM;
                break;
            }
            memcpy(e->sha, sha, 65);
            e->state = ENTRY_READY;
            table_add(c, e);
            lru_touch(c, e);
            c->bytes += e->disk_bytes;
        } else if (name) {
            char **ns = realloc(stale, (n_stale + 1) * sizeof *ns);
            if (ns) {
                stale = ns;
                stale[n_stale] = strdup(name);
                if (stale[n_stale])
                    n_stale++;
            }
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n_stale; i++) {
        db_delete(c, stale[i]);
        snprintf(path, sizeof path, "%s/%s.zst", c->files_dir, stale[i]);
        unlink(path);
        free(stale[i]);
    }
    free(stale);
    if (rc == -ENOMEM)
        return dverr_set(err, -ENOMEM, "out of memory");

    /* files without a row */
    d = opendir(c->files_dir);
    if (d) {
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l != 68 || strcmp(de->d_name + 64, ".zst") != 0) {
                if (de->d_name[0] != '.') {
                    snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
                    unlink(path);
                }
                continue;
            }
            char name[65];
            memcpy(name, de->d_name, 64);
            name[64] = '\0';
            if (!table_find(c, name)) {
                snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return 0;
}

/* The cache holds plaintext customer data: refuse a directory that is a symlink, is not ours, or
 * that others can write, and a parent that is a symlink or that others can write without the
 * sticky bit (they could swap the directory). A directory that does not exist yet passes (it is
 * created 0700 and checked again). */
static int cache_dir_safe(const char *dir, struct dverr *err)
{
    struct stat sb;
    char parent[PATH_MAX];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n >= sizeof parent)
        return dverr_set(err, -ENAMETOOLONG, "cache directory %s: name too long", dir);
    memcpy(parent, dir, n);
    parent[n] = 0;
    if (lstat(parent, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return dverr_set(err, -ELOOP, "cache directory %s is a symlink: refused", dir);
        if (!S_ISDIR(sb.st_mode))
            return dverr_set(err, -ENOTDIR, "cache directory %s is not a directory", dir);
        if (sb.st_uid != geteuid())
            return dverr_set(err, -EPERM, "cache directory %s belongs to uid %u: refused", dir,
                             (unsigned)sb.st_uid);
        if (sb.st_mode & 022)
            return dverr_set(err, -EPERM,
                             "cache directory %s is writable by others (mode %03o): refused", dir,
                             (unsigned)(sb.st_mode & 0777));
    } else if (errno != ENOENT) {
        return dverr_set(err, -errno, "cache directory %s: %s", dir, strerror(errno));
    }
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (lstat(parent, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return dverr_set(err, -ELOOP, "cache directory %s: its parent is a symlink: refused",
                             dir);
        if ((sb.st_mode & 022) && !(sb.st_mode & S_ISVTX))
            return dverr_set(err, -EPERM,
                             "cache directory %s: its parent %s is writable by others (mode %03o)"
                             ": refused",
                             dir, parent, (unsigned)(sb.st_mode & 0777));
    }
    return 0;
}

int cache_open(const char *dir, const struct cache_opts *opts, struct cache **out,
               struct dverr *err)
{
    struct cache *c = NULL;
    char path[PATH_MAX];
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return dverr_set(err, -ENOMEM, "out of memory");
    c->lock_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->wd_cond, NULL);
    pthread_mutex_init(&c->db_mu, NULL);
    c->budget = opts && opts->budget ? opts->budget : (2ULL << 30);
    c->wait_ms = opts && opts->wait_ms ? opts->wait_ms : 30000;
    c->level = opts && opts->level ? opts->level : CACHE_LEVEL;
    c->n_buckets = 256;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    c->dir = strdup(dir);
    /* One block for every slot, in transparent huge pages where the system allows them (only
     * touched pages count): a reply's 1 MiB is then pinned by the kernel as one huge page instead
     * of 256 small ones. */
    c->slab = aligned_alloc(2u << 20, (size_t)CACHE_SLOTS * CACHE_FRAME);
    if (c->slab) {
        madvise(c->slab, (size_t)CACHE_SLOTS * CACHE_FRAME, MADV_HUGEPAGE);
        for (int i = 0; i < CACHE_SLOTS; i++)
            c->slots[i].buf = c->slab + (size_t)i * CACHE_FRAME;
    }
    if (!c->buckets || !c->dir || !c->slab) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = cache_dir_safe(dir, err);
    if (rc)
        goto fail;
    rc = mkdir_p(dir, 0700);
    if (rc) {
        dverr_set(err, rc, "cache directory %s: %s", dir, strerror(-rc));
        goto fail;
    }
    rc = cache_dir_safe(dir, err); /* again: it may have been created (or swapped) meanwhile */
    if (rc)
        goto fail;
    {
        /* absolute: the mount daemon changes directory to / */
        char *abs = realpath(dir, NULL);
        if (!abs) {
            rc = dverr_set(err, -errno, "cache directory %s: %s", dir, strerror(errno));
            goto fail;
        }
        free(c->dir);
        c->dir = abs;
        dir = c->dir;
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && (sb.st_mode & 077) && chmod(dir, 0700) < 0) {
        rc = dverr_set(err, -errno, "cache directory %s: chmod: %s", dir, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/lock", dir);
    c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->lock_fd < 0) {
        rc = dverr_set(err, -errno, "cache lock %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        dverr_set(err, rc, "the cache %s is in use by another dvsnap process", dir);
        goto fail;
    }
    if (asprintf(&c->files_dir, "%s/files", dir) < 0) {
        c->files_dir = NULL;
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = mkdir_p(c->files_dir, 0700);
    if (rc) {
        dverr_set(err, rc, "cache directory %s: %s", c->files_dir, strerror(-rc));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/index.db", dir);
    if (lstat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid()) {
            rc = dverr_set(err, -EPERM, "cache index %s is not a file of ours: refused", path);
            goto fail;
        }
        if ((sb.st_mode & 077) && chmod(path, 0600) < 0) {
            rc = dverr_set(err, -errno, "cache index %s: chmod: %s", path, strerror(errno));
            goto fail;
        }
    }
    int old_umask = umask(077);
    rc = sqlite3_open_v2(path, &c->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
                             SQLITE_OPEN_NOFOLLOW,
                         NULL);
    umask((mode_t)old_umask);
    if (rc != SQLITE_OK) {
        rc = dverr_set(err, sqlite_to_errno(rc) ? sqlite_to_errno(rc) : -EIO,
                       "cache index %s: %s", path, sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_busy_timeout(c->db, 5000);
    rc = db_exec(c,
                 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                 "CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, key TEXT NOT NULL,"
                 " size INTEGER NOT NULL, disk_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                 " last_use INTEGER NOT NULL, frames BLOB NOT NULL);",
                 err);
    if (rc)
        goto fail;
    rc = cleanup_and_load(c, err);
    if (rc)
        goto fail;
    /* bounded by the disk too: what we hold plus 95% of what is free */
    struct statvfs vfs;
    if (statvfs(c->files_dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        uint64_t limit = c->bytes + avail / 20 * 19;
        if (limit < c->budget) {
            log_warn("cache: budget lowered to %llu bytes by free disk space",
                     (unsigned long long)limit);
            c->budget = limit;
        }
    }
    struct entry *victims = evict_locked(c);
    delete_victims(c, victims);
    log_info("cache: %s, budget %llu bytes, %zu files, %llu bytes", dir,
             (unsigned long long)c->budget, c->n_entries, (unsigned long long)c->bytes);
    *out = c;
    return 0;
fail:
    cache_free(c);
    return rc;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, 1);
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0)
        pthread_cond_wait(&c->cond, &c->mu);
    c->wd_stop = true;
    pthread_cond_broadcast(&c->wd_cond);
    pthread_mutex_unlock(&c->mu);
    if (c->watchdog_started)
        pthread_join(c->watchdog, NULL); /* it fails every waiter left */
    if (c->buckets) {
        for (size_t i = 0; i < c->n_buckets; i++) {
            struct entry *e = c->buckets[i], *next;
            for (; e; e = next) {
                next = e->hnext;
                entry_free(e);
            }
        }
        free(c->buckets);
    }
    free(c->slab);
    if (c->db)
        sqlite3_close(c->db);
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->wd_cond);
    pthread_mutex_destroy(&c->db_mu);
    free(c->files_dir);
    free(c->dir);
    free(c);
}

/* Check a loaded file's SHA-256 once per process. */
static int verify_file(struct cache *c, struct entry *e, int fd)
{
    char buf[1 << 16];
    struct sha256_stream *s = sha256_stream_new();
    if (!s)
        return -ENOMEM;
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0) {
            char d[65];
            sha256_stream_finish(s, d);
            return -errno;
        }
        if (n == 0)
            break;
        sha256_stream_update(s, buf, (size_t)n);
        off += n;
    }
    char got[65];
    sha256_stream_finish(s, got);
    return strcmp(got, e->sha) == 0 && (uint64_t)off == e->disk_bytes ? 0 : -EIO;
}

int cache_file_open(struct cache *c, const char *key, uint64_t size,
                    const struct cache_source *src, struct cache_file **out, struct dverr *err)
{
    char name[65], path[PATH_MAX];
    struct cache_source s = *src;
    struct cache_file *f = NULL;
    struct entry *e = NULL;
    int rc = 0;

    *out = NULL;
    sha256_hex(key, strlen(key), name);
    f = calloc(1, sizeof *f);
    if (!f) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    f->c = c;
again:
    pthread_mutex_lock(&c->mu);
    e = table_find(c, name);
    if (e && e->size != size) {
        /* the same key must always name the same content: a changed size is a caller bug or a
         * damaged index; never serve it */
        pthread_mutex_unlock(&c->mu);
        rc = dverr_set(err, -EIO, "cache: %s: size %llu, expected %llu", key,
                       (unsigned long long)e->size, (unsigned long long)size);
        goto out;
    }
    if (e) {
        e->refs++;
        lru_touch(c, e);
        c->hits++;
        bool need_fd = e->fd < 0;
        bool need_verify = e->state == ENTRY_READY && !e->verified;
        pthread_mutex_unlock(&c->mu);
        if (need_fd || need_verify) {
            path_of(c, e, false, path, sizeof path);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) /* most reads are sequential: a larger readahead of the frames */
                posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
            int vrc = fd < 0 ? -errno : (need_verify ? verify_file(c, e, fd) : 0);
            pthread_mutex_lock(&c->mu);
            if (vrc) {
                /* damaged or gone: forget it and fill again */
                log_warn("cache: %s failed its check (%s); filling it again", key,
                         strerror(-vrc));
                if (fd >= 0)
                    close(fd);
                table_remove(c, e);
                lru_unlink(c, e);
                plain_drop_locked(c, e);
                c->bytes -= e->disk_bytes;
                struct entry *dead = unref_locked(c, e);
                pthread_mutex_unlock(&c->mu);
                db_delete(c, name);
                unlink(path);
                entry_free(dead);
                goto again;
            }
            e->verified = true;
            if (e->fd < 0)
                e->fd = fd;
            else if (fd >= 0)
                close(fd);
            pthread_mutex_unlock(&c->mu);
        }
        if (s.free_arg)
            s.free_arg(s.arg);
        pthread_mutex_lock(&c->mu);
        c->open_files++;
        pthread_mutex_unlock(&c->mu);
        f->e = e;
        *out = f;
        return 0;
    }
    /* not cached: start a fill */
    e = entry_new(c, key, name);
    struct fill_job *job = calloc(1, sizeof *job);
    if (!e || !job) {
        pthread_mutex_unlock(&c->mu);
        entry_free(e);
        free(job);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    e->size = size;
    e->state = ENTRY_FILLING;
    path_of(c, e, true, path, sizeof path);
    /* never through a planted symlink or into a pre-created file (its mode would stay) */
    unlink(path);
    e->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (e->fd < 0) {
        rc = dverr_set(err, -errno, "cache file %s: %s", path, strerror(errno));
        pthread_mutex_unlock(&c->mu);
        entry_free(e);
        free(job);
        goto out;
    }
    e->refs = 2; /* this handle and the fill */
    table_add(c, e);
    lru_touch(c, e);
    c->fills++;
    c->fills_running++;
    job->c = c;
    job->e = e;
    job->src = s;
    int prc = thread_start(NULL, fill_main, job); /* SIGINT must reach the thread that unmounts */
    if (prc) {
        e->refs = 0;
        table_remove(c, e);
        lru_unlink(c, e);
        c->fills_running--;
        pthread_mutex_unlock(&c->mu);
        unlink(path);
        entry_free(e);
        free(job);
        rc = dverr_set(err, -prc, "cannot start a fill thread");
        goto out;
    }
    c->open_files++;
    pthread_mutex_unlock(&c->mu);
    f->e = e;
    f->started_fill = true;
    *out = f;
    return 0;
out:
    if (s.free_arg)
        s.free_arg(s.arg);
    free(f);
    return rc;
}


void cache_stop_fills(struct cache *c)
{
    atomic_store(&c->stopping, 1);
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0)
        pthread_cond_wait(&c->cond, &c->mu);
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->stopping, 0);
}

int cache_wait_fills(struct cache *c, int timeout_ms)
{
    struct timespec dl = timespec_in_ms(CLOCK_REALTIME, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cond, &c->mu, &dl);
    rc = c->fills_running > 0 ? -ETIMEDOUT : 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

uint64_t cache_file_size(const struct cache_file *f)
{
    return f->e->size;
}

/* ---- plain copies (for FUSE passthrough) ---- */
struct plain_job {
    struct cache *c;
    struct entry *e;
};

/* Decode every frame of a READY entry into an unlinked file next to the cache files. */
static int plain_build(struct cache *c, struct entry *e, int *out_fd, struct dverr *err)
{
    char path[PATH_MAX];
    path_of(c, e, false, path, sizeof path);
    int zfd = open(path, O_RDONLY | O_CLOEXEC);
    if (zfd < 0)
        return dverr_set(err, -errno, "%s: %s", path, strerror(errno));
    int pfd = open(c->files_dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (pfd < 0) {
        int rc = dverr_set(err, -errno, "a plain copy in %s: %s", c->files_dir, strerror(errno));
        close(zfd);
        return rc;
    }
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    char *comp = malloc(ZSTD_compressBound(CACHE_FRAME)), *plain = malloc(CACHE_FRAME);
    int rc = dctx && comp && plain ? 0 : dverr_set(err, -ENOMEM, "out of memory");
    uint64_t done = 0;
    for (size_t fi = 0; !rc && fi < e->n_frames; fi++) {
        if (atomic_load(&c->stopping)) {
            rc = dverr_set(err, -ECANCELED, "the cache is stopping");
            break;
        }
        uint32_t flen = e->frame_len[fi]; /* a READY entry's frame index never changes */
        if (pread(zfd, comp, flen, (off_t)e->frame_off[fi]) != (ssize_t)flen) {
            rc = dverr_set(err, -EIO, "%s: short read", path);
            break;
        }
        size_t n = ZSTD_decompressDCtx(dctx, plain, CACHE_FRAME, comp, flen);
        if (ZSTD_isError(n)) {
            rc = dverr_set(err, -EIO, "frame %zu of %s is damaged", fi, e->key);
            break;
        }
        for (size_t w = 0; w < n;) {
            ssize_t r = pwrite(pfd, plain + w, n - w, (off_t)(done + w));
            if (r < 0) {
                rc = dverr_set(err, -errno, "writing a plain copy: %s", strerror(errno));
                break;
            }
            w += (size_t)r;
        }
        done += n;
    }
    if (!rc && done != e->size)
        rc = dverr_set(err, -EIO, "the plain copy of %s has %llu bytes, expected %llu", e->key,
                       (unsigned long long)done, (unsigned long long)e->size);
    ZSTD_freeDCtx(dctx);
    free(comp);
    free(plain);
    close(zfd);
    if (rc) {
        close(pfd);
        return rc;
    }
    *out_fd = pfd;
    return 0;
}

static void *plain_main(void *arg)
{
    struct plain_job *job = arg;
    struct cache *c = job->c;
    struct entry *e = job->e;
    free(job);
    struct dverr err = {0};
    int fd = -1;
    int rc = plain_build(c, e, &fd, &err);
    if (rc && rc != -ECANCELED)
        log_warn("cache: %s", dverr_msg(&err));
    pthread_mutex_lock(&c->mu);
    if (rc)
        plain_unreserve_locked(c, e);
    else
        e->plain_fd = fd;
    struct entry *dead = unref_locked(c, e);
    c->fills_running--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    entry_free(dead);
    return NULL;
}

/* Start building e's plain copy (c->mu held): -EAGAIN when started (or the cache stops),
 * -ENOSPC when it does not fit, -errno when no thread could start. Victims of the room made go
 * to *victims for the caller to delete without the lock. */
static int plain_start_locked(struct cache *c, struct entry *e, struct entry **victims)
{
    if (e->size > c->budget / 2 || c->n_plain >= CACHE_PLAIN_MAX)
        return -ENOSPC;
    /* reserve the bytes, make room, and give up when the open files leave none */
    e->plain_bytes = e->size;
    c->bytes += e->size;
    c->n_plain++;
    *victims = victims_join(evict_locked(c), *victims);
    if (c->bytes > c->budget) {
        plain_unreserve_locked(c, e);
        return -ENOSPC;
    }
    if (c->bytes > c->max_bytes)
        c->max_bytes = c->bytes;
    struct plain_job *job = malloc(sizeof *job);
    int prc = ENOMEM;
    if (job) {
        *job = (struct plain_job){c, e};
        e->refs++;
        c->fills_running++;
        prc = thread_start(NULL, plain_main, job);
        if (prc) {
            e->refs--;
            c->fills_running--;
            free(job);
        }
    }
    if (prc) {
        plain_unreserve_locked(c, e);
        return -prc;
    }
    return -EAGAIN;
}

int cache_file_plain_fd(struct cache_file *f)
{
    struct cache *c = f->c;
    struct entry *e = f->e;
    struct entry *victims = NULL;
    int rc = -EAGAIN;
    pthread_mutex_lock(&c->mu);
    if (e->plain_fd >= 0)
        rc = e->plain_fd;
    else if (e->size < CACHE_PLAIN_MIN)
        rc = -EINVAL;
    else if (e->state == ENTRY_FILLING && !f->started_fill)
        e->plain_wanted = true; /* read again while filling: the fill starts it when done */
    else if (e->state == ENTRY_READY && !plain_building(e) && !atomic_load(&c->stopping))
        rc = plain_start_locked(c, e, &victims);
    pthread_mutex_unlock(&c->mu);
    delete_victims(c, victims);
    return rc;
}

/* Frames a reader may ask for (c->mu held): written ones, and published ones while filling. */
static size_t avail_frames(const struct entry *e)
{
    return e->n_plain > e->n_frames ? e->n_plain : e->n_frames;
}

/* Find or decode frame fi of e into a shared slot and take a reference (c->mu held; may drop and
 * retake it). NULL with the error in err when the frame cannot be decoded. */
static struct slot *slot_get_locked(struct cache *c, struct entry *e, size_t fi, size_t plain_len,
                                    struct frame_tls *t, struct dverr *err)
{
    for (;;) {
        struct slot *victim = NULL;
        for (int i = 0; i < CACHE_SLOTS; i++) {
            struct slot *s = &c->slots[i];
            if (s->entry_id == e->id && s->frame == fi) {
                if (s->busy) {
                    victim = s;
                    break;
                }
                s->refs++;
                return s;
            }
        }
        if (victim) { /* someone is decoding it: wait */
            pthread_cond_wait(&c->cond, &c->mu);
            continue;
        }
        if (fi >= e->n_frames) {
            /* published but dropped unwritten: the fill failed */
            dverr_set(err, -EIO, "%s", e->state == ENTRY_FAILED ? e->errmsg : "frame lost");
            return NULL;
        }
        for (int i = 0; i < CACHE_SLOTS; i++) {
            struct slot *s = &c->slots[i];
            if (s->refs == 0 && !s->busy && (!victim || s->use < victim->use))
                victim = s;
        }
        if (!victim) { /* every slot in use by a reader: wait for one */
            pthread_cond_wait(&c->cond, &c->mu);
            continue;
        }
        victim->busy = true;
        victim->entry_id = e->id;
        victim->frame = fi;
        victim->refs = 1;
        uint64_t foff = e->frame_off[fi];
        uint32_t flen = e->frame_len[fi];
        int fd = e->fd;
        pthread_mutex_unlock(&c->mu);
        int rc = 0;
        size_t got = 0, dl = 0;
        if (flen > t->comp_cap) {
            char *p = realloc(t->comp, flen);
            if (p) {
                t->comp = p;
                t->comp_cap = flen;
            } else {
                rc = dverr_set(err, -ENOMEM, "out of memory");
            }
        }
        while (!rc && got < flen) {
            ssize_t r = pread(fd, t->comp + got, flen - got, (off_t)(foff + got));
            if (r <= 0)
                rc = dverr_set(err, -EIO, "cache file read: %s", r < 0 ? strerror(errno) : "short");
            else
                got += (size_t)r;
        }
        if (!rc) {
            dl = ZSTD_decompressDCtx(t->dctx, victim->buf, CACHE_FRAME, t->comp, flen);
            if (ZSTD_isError(dl) || dl != plain_len)
                rc = dverr_set(err, -EIO, "cache frame %zu of %s is damaged", fi, e->key);
            else
                atomic_fetch_add(&c->frames_decoded, 1);
        }
        pthread_mutex_lock(&c->mu);
        victim->busy = false;
        pthread_cond_broadcast(&c->cond);
        if (rc) {
            victim->entry_id = 0;
            victim->refs = 0;
            return NULL;
        }
        victim->len = dl;
        return victim;
    }
}

/* Wait for frame fi of e (bounded) and take a reference on the slot holding it, decoded; NULL
 * with the error in err. */
static struct slot *frame_acquire(struct cache *c, struct entry *e, size_t fi,
                                  struct frame_tls *t, struct dverr *err)
{
    size_t plain_len = (size_t)((uint64_t)(fi + 1) * CACHE_FRAME > e->size
                                    ? e->size - (uint64_t)fi * CACHE_FRAME
                                    : CACHE_FRAME);
    pthread_mutex_lock(&c->mu);
    size_t seen = avail_frames(e);
    struct timespec dl = timespec_in_ms(CLOCK_REALTIME, c->wait_ms);
    while (avail_frames(e) <= fi && e->state == ENTRY_FILLING) {
        int w = pthread_cond_timedwait(&c->cond, &c->mu, &dl);
        if (avail_frames(e) != seen) {
            seen = avail_frames(e);
            dl = timespec_in_ms(CLOCK_REALTIME, c->wait_ms);
        } else if (w == ETIMEDOUT) {
            break;
        }
    }
    if (avail_frames(e) <= fi) {
        if (e->state == ENTRY_FAILED)
            dverr_set(err, -EIO, "%s", e->errmsg);
        else if (e->state == ENTRY_FILLING)
            dverr_set(err, -EIO, "no progress for %d ms", c->wait_ms);
        else
            dverr_set(err, -EIO, "cache index damaged");
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    struct slot *s = slot_get_locked(c, e, fi, plain_len, t, err);
    if (s && s->len != plain_len) {
        /* a frame of the wrong size (a source that ended early): never serve it */
        s->refs--;
        s->entry_id = 0;
        pthread_cond_broadcast(&c->cond);
        dverr_set(err, -EIO, "frame %zu of %s has the wrong size", fi, e->key);
        s = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    return s;
}

static void frame_release(struct cache *c, struct slot *s)
{
    pthread_mutex_lock(&c->mu);
    s->refs--;
    s->use = ++c->use_clock;
    if (s->refs == 0)
        pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

ssize_t cache_file_pread(struct cache_file *f, void *buf, size_t n, uint64_t off,
                         struct dverr *err)
{
    struct cache *c = f->c;
    struct entry *e = f->e;
    size_t done = 0;

    if (off >= e->size)
        return 0;
    if (n > e->size - off)
        n = (size_t)(e->size - off);
    struct frame_tls *t = tls_get();
    if (!t)
        return dverr_set(err, -ENOMEM, "out of memory");
    while (done < n) {
        uint64_t pos = off + done;
        size_t in_frame = (size_t)(pos % CACHE_FRAME);
        struct slot *s = frame_acquire(c, e, (size_t)(pos / CACHE_FRAME), t, err);
        if (!s)
            return done > 0 ? (ssize_t)done : -EIO;
        size_t take = s->len - in_frame;
        if (take > n - done)
            take = n - done;
        memcpy((char *)buf + done, s->buf + in_frame, take);
        done += take;
        frame_release(c, s);
    }
    return (ssize_t)done;
}

/* Sequential reads: when a read ends at the end of frame fi, the next read will want frame
 * fi + 1. prefetch_take (before the reply) takes a reference on the entry when no slot holds that
 * frame yet; prefetch_run (after the reply, while the reader copies its bytes) decodes it into a
 * shared slot and drops the reference. The kernel sends the next read only after the
 * reply, so without this its frame is decoded while the reader waits: a read from the cache,
 * page cache dropped, was 1.6x the in-memory FUSE file. */
#define PREFETCH_AHEAD 1 /* frames decoded ahead of a sequential reader (2 was no faster) */
static size_t prefetch_take(struct cache *c, struct entry *e, uint64_t end)
{
    if (end % CACHE_FRAME != 0 || end >= e->size)
        return 0;
    size_t first = (size_t)(end / CACHE_FRAME), fi = 0;
    pthread_mutex_lock(&c->mu);
    /* the first of the next frames that no slot holds (nor is decoding) */
    for (size_t k = first; !fi && k < first + PREFETCH_AHEAD && k < e->n_frames; k++) {
        bool held = false;
        for (int i = 0; !held && i < CACHE_SLOTS; i++)
            held = c->slots[i].entry_id == e->id && c->slots[i].frame == k;
        if (!held)
            fi = k;
    }
    if (fi && (e->state == ENTRY_FAILED || e->fd < 0))
        fi = 0;
    if (fi)
        e->refs++;
    pthread_mutex_unlock(&c->mu);
    return fi;
}

static void prefetch_run(struct cache *c, struct entry *e, size_t fi, struct frame_tls *t)
{
    size_t plain_len = (size_t)((uint64_t)(fi + 1) * CACHE_FRAME > e->size
                                    ? e->size - (uint64_t)fi * CACHE_FRAME
                                    : CACHE_FRAME);
    struct dverr err = {0};
    pthread_mutex_lock(&c->mu);
    struct slot *s = slot_get_locked(c, e, fi, plain_len, t, &err);
    if (s) {
        s->refs--;
        s->use = ++c->use_clock;
        if (s->len != plain_len) /* never keep a frame of the wrong size */
            s->entry_id = 0;
        pthread_cond_broadcast(&c->cond);
    }
    /* as cache_file_close: the last reference may be this one */
    struct entry *dead = unref_locked(c, e);
    struct entry *victims = evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    entry_free(dead);
    delete_victims(c, victims);
}

int cache_file_read_in_place(struct cache_file *f, size_t n, uint64_t off,
                             int (*fn)(void *ctx, const void *p, size_t len), void *ctx,
                             struct dverr *err)
{
    struct cache *c = f->c;
    struct entry *e = f->e;
    if (off >= e->size)
        return fn(ctx, NULL, 0);
    if (n > e->size - off)
        n = (size_t)(e->size - off);
    if (off / CACHE_FRAME != (off + n - 1) / CACHE_FRAME)
        return -ERANGE;
    struct frame_tls *t = tls_get();
    if (!t)
        return dverr_set(err, -ENOMEM, "out of memory");
    struct slot *s = frame_acquire(c, e, (size_t)(off / CACHE_FRAME), t, err);
    if (!s)
        return -EIO;
    /* f may be closed once fn has replied: e stays alive by the reference prefetch_take took */
    size_t pre = prefetch_take(c, e, off + n); /* a frame index > 0, or 0: none */
    int rc = fn(ctx, s->buf + off % CACHE_FRAME, n);
    frame_release(c, s);
    if (pre)
        prefetch_run(c, e, pre, t);
    return rc;
}

int cache_file_wait_async(struct cache_file *f, uint64_t off, size_t n, struct cache_waiter *w)
{
    struct cache *c = f->c;
    struct entry *e = f->e;
    if (off >= e->size || n == 0)
        return 0;
    uint64_t last = off + n > e->size ? e->size - 1 : off + n - 1;
    size_t fi = (size_t)(last / CACHE_FRAME);
    pthread_mutex_lock(&c->mu);
    if (fi < avail_frames(e) || e->state != ENTRY_FILLING) {
        /* readable now, or failed: cache_file_pread answers at once either way */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    if (!c->watchdog_started) {
        c->watchdog_started = thread_start(&c->watchdog, watchdog_main, c) == 0;
        if (!c->watchdog_started) {
            pthread_mutex_unlock(&c->mu);
            return 0; /* no timer: the caller waits in cache_file_pread instead */
        }
    }
    w->entry_ = e;
    w->frame_ = fi;
    w->seen_ = avail_frames(e);
    w->deadline_ = mono_ms() + c->wait_ms;
    w->queued_ = true;
    w->next_ = c->waiters;
    c->waiters = w;
    pthread_mutex_unlock(&c->mu);
    return -EINPROGRESS;
}

bool cache_waiter_cancel(struct cache_file *f, struct cache_waiter *w)
{
    struct cache *c = f->c;
    bool found = false;
    pthread_mutex_lock(&c->mu);
    if (w->queued_) {
        for (struct cache_waiter **pp = &c->waiters; *pp; pp = &(*pp)->next_)
            if (*pp == w) {
                *pp = w->next_;
                found = true;
                break;
            }
        w->queued_ = false;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}

void cache_file_close(struct cache_file *f)
{
    if (!f)
        return;
    struct cache *c = f->c;
    pthread_mutex_lock(&c->mu);
    c->open_files--;
    struct entry *dead = unref_locked(c, f->e);
    struct entry *victims = evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    entry_free(dead);
    delete_victims(c, victims);
    free(f);
}

void cache_stats(struct cache *c, struct cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    out->budget = c->budget;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    out->files = c->n_entries;
    out->open_files = c->open_files;
    out->fills = c->fills;
    out->hits = c->hits;
    out->evictions = c->evictions;
    out->plain_copies = 0;
    out->plain_bytes = 0;
    for (struct entry *e = c->lru_head; e; e = e->lnext)
        if (e->plain_fd >= 0) {
            out->plain_copies++;
            out->plain_bytes += e->plain_bytes;
        }
    pthread_mutex_unlock(&c->mu);
    out->frames_decoded = atomic_load(&c->frames_decoded);
}

static bool path_within(const char *inner, const char *outer)
{
    size_t l = strlen(outer);
    if (strcmp(outer, "/") == 0)
        return true;
    return strncmp(inner, outer, l) == 0 && (inner[l] == '\0' || inner[l] == '/');
}

int cache_check_mountpoint(const char *cache_dir, const char *mountpoint, struct dverr *err)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(cache_dir, a))
        return dverr_set(err, -errno, "cache directory %s: %s", cache_dir, strerror(errno));
    if (!realpath(mountpoint, b))
        return dverr_set(err, -errno, "mountpoint %s: %s", mountpoint, strerror(errno));
    if (path_within(b, a))
        return dverr_set(err, -EINVAL, "the mountpoint %s is inside the cache directory %s", b, a);
    if (path_within(a, b))
        return dverr_set(err, -EINVAL, "the cache directory %s is inside the mountpoint %s", a, b);
    return 0;
}
