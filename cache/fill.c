/* cache fill: filling a cache file from its source in the background.
 * Two threads per fill, a pipeline: the fill thread reads the source into a shared slot (the
 * plain frame) and publishes it at once (e->n_plain), so readers are served from memory; the
 * writer thread compresses each published frame, writes it, and only then lets its slot go
 * (e->n_frames). At most FILL_QUEUE frames wait for the writer, so memory stays bounded and the
 * slot of every frame in [n_frames, n_plain) is held, which is what readers rely on. The file is
 * written as <name>.tmp, fsynced, renamed and then indexed; a fill that fails unlinks it and
 * fails its entry (readers and waiters get -EIO).
 *
 * Limits: a source that gives more or fewer bytes than the expected size fails the fill; each
 * frame is counted against the budget before it is written (evicting), and a writer waits up to
 * 500 ms for another unread fill to end rather than go over the budget.
 * Threading: cache_fill_main runs on a detached thread holding a reference on its entry and
 * counted in c->fills_running; it stops at the next frame when c->stopping is set. Both threads
 * take c->mu for the queue, the slots and the entry's fields, never across zstd work, file I/O
 * or SQLite (c->db_mu, taken after c->mu is released). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "backend/base/log.h"
#include "cache/cache_int.h"

static void fill_fail(struct cache *c, struct entry *e, int rc, const char *msg)
{
    char path[PATH_MAX];
    cache_entry_path(c, e, true, path, sizeof path);
    unlink(path);
    pthread_mutex_lock(&c->mu);
    e->state = ENTRY_FAILED;
    e->error = rc < 0 ? rc : -EIO;
    snprintf(e->errmsg, sizeof e->errmsg, "%s", msg);
    cache_table_remove(c, e);
    cache_lru_unlink(c, e);
    c->bytes -= e->disk_bytes + e->reserved;
    e->reserved = 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    cache_waiters_kick(c, e, true);
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
    struct entry *victims = cache_evict_locked(c);
    if (c->bytes > c->budget && finishing_locked(c, e)) {
        /* a fill that nobody reads any more (its reader went ahead of the writer) becomes
         * evictable when it ends: wait for that (bounded) rather than go over the budget */
        struct timespec dl = timespec_in_ms(CLOCK_REALTIME, 500);
        while (c->bytes > c->budget && finishing_locked(c, e) &&
               pthread_cond_timedwait(&c->cond, &c->mu, &dl) != ETIMEDOUT) {
            struct entry *more = cache_evict_locked(c);
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
    cache_delete_victims(c, victims);
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
            rc = cache_entry_add_frame(e, (uint32_t)w);
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

/* The fill thread: runs the source into the pipeline, then commits or fails the entry. */
void *cache_fill_main(void *arg)
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
            cache_waiters_kick(c, e, false);
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
        cache_entry_path(c, e, true, tmp, sizeof tmp);
        cache_entry_path(c, e, false, final, sizeof final);
        if (rename(tmp, final) < 0) {
            rc = dverr_set(&err, -errno, "rename cache file: %s", strerror(errno));
        } else {
            fsync_dir(c->files_dir);
            sha256_stream_finish(job->sha, e->sha);
            job->sha = NULL;
            if (cache_index_insert(c, e, e->frame_len, e->n_frames) != 0)
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
            cache_plain_start_locked(c, e, &victims);
    }
    struct entry *dead = cache_unref_locked(c, e);
    victims = cache_victims_join(cache_evict_locked(c), victims);
    c->fills_running--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    cache_entry_free(dead);
    cache_delete_victims(c, victims);
    free(job);
    return NULL;
}
