/* cache read: serving reads from cached files (cache_file_pread, cache_file_read_in_place).
 * A read at any offset needs one frame: it is found in, or decoded into, one of the CACHE_SLOTS
 * shared slots (a frame still being filled is already in the slot the fill published it in), and
 * copied out or handed to the caller in place. Each thread keeps its own zstd context and
 * compressed-frame buffer (freed when the thread exits). An in-place read that ends at a frame's
 * end decodes the next frame right after its reply (PREFETCH_AHEAD).
 *
 * Limits: a read waits for a frame the fill has not reached while the fill makes progress, at
 * most wait_ms without progress; a frame of the wrong size is never served.
 * Threading: any thread. Takes c->mu to find or claim a slot and drops it while reading the
 * file and decoding (the slot is marked busy meanwhile; others wait on c->cond). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "cache/cache_int.h"

/* Per-thread decoding state: a zstd context and a buffer for one compressed frame. */
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
    size_t seen = cache_avail_frames(e);
    struct timespec dl = timespec_in_ms(CLOCK_REALTIME, c->wait_ms);
    while (cache_avail_frames(e) <= fi && e->state == ENTRY_FILLING) {
        int w = pthread_cond_timedwait(&c->cond, &c->mu, &dl);
        if (cache_avail_frames(e) != seen) {
            seen = cache_avail_frames(e);
            dl = timespec_in_ms(CLOCK_REALTIME, c->wait_ms);
        } else if (w == ETIMEDOUT) {
            break;
        }
    }
    if (cache_avail_frames(e) <= fi) {
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
    struct entry *dead = cache_unref_locked(c, e);
    struct entry *victims = cache_evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    cache_entry_free(dead);
    cache_delete_victims(c, victims);
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
