/* cache plain: plain copies for FUSE passthrough (cache_file_plain_fd). A plain copy is an
 * unlinked file (O_TMPFILE) in the files directory holding the decoded bytes of a READY entry,
 * built on its own thread; the kernel then reads it as it reads local files.
 *
 * Limits: a copy's bytes are reserved in the budget before it is built; a copy bigger than half
 * the budget, beyond CACHE_PLAIN_MAX, or that the open files leave no room for is refused
 * (-ENOSPC). Copies of unreferenced entries are the first thing eviction drops. A copy does not
 * survive the process (the file is unlinked).
 * Threading: the build runs on a detached thread holding a reference on its entry and counted in
 * c->fills_running; it reads the entry's frame index without the lock (fixed once READY) and
 * takes c->mu only to publish its result. The *_locked functions are called with c->mu held. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "backend/base/log.h"
#include "cache/cache_int.h"

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

void cache_plain_drop_locked(struct cache *c, struct entry *e)
{
    if (e->plain_fd < 0)
        return;
    close(e->plain_fd); /* unlinked: its blocks go with the last descriptor */
    e->plain_fd = -1;
    plain_unreserve_locked(c, e);
}

struct plain_job {
    struct cache *c;
    struct entry *e;
};

/* Decode every frame of a READY entry into an unlinked file next to the cache files. */
static int plain_build(struct cache *c, struct entry *e, int *out_fd, struct dverr *err)
{
    char path[PATH_MAX];
    cache_entry_path(c, e, false, path, sizeof path);
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
    struct entry *dead = cache_unref_locked(c, e);
    c->fills_running--;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
    cache_entry_free(dead);
    return NULL;
}

/* Start building e's plain copy (c->mu held): -EAGAIN when started (or the cache stops),
 * -ENOSPC when it does not fit, -errno when no thread could start. Victims of the room made go
 * to *victims for the caller to delete without the lock. */
int cache_plain_start_locked(struct cache *c, struct entry *e, struct entry **victims)
{
    if (e->size > c->budget / 2 || c->n_plain >= CACHE_PLAIN_MAX)
        return -ENOSPC;
    /* reserve the bytes, make room, and give up when the open files leave none */
    e->plain_bytes = e->size;
    c->bytes += e->size;
    c->n_plain++;
    *victims = cache_victims_join(cache_evict_locked(c), *victims);
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
        rc = cache_plain_start_locked(c, e, &victims);
    pthread_mutex_unlock(&c->mu);
    cache_delete_victims(c, victims);
    return rc;
}
