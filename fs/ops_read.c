/* ops_read: read. A file in memory answers at once. Reads of cached files never hold a FUSE
 * worker while a fill renders: a read whose bytes are not there yet is left with the cache as a
 * waiter and answered by the completer thread when the fill publishes them (or fails, or stalls
 * past the cache's bound: EIO); an interrupt (the reader got a signal) withdraws it with EINTR.
 * Bytes within one frame are replied straight from the cache's frame, others are copied into the
 * thread's read buffer.
 *
 * Limits: without the completer (no cache, or it did not start) reads wait for fills on the FUSE
 * workers; a thread's read buffer grows to its largest read (at most max_read, 1 MiB) and is
 * freed when the thread ends.
 * Threading: FUSE worker threads, the cache's threads (aread_ready) and the completer thread.
 * fsd->cq_mu guards the completer's queue. */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/base/log.h"

static _Thread_local char *tl_readbuf;

static _Thread_local size_t tl_readcap;

/* libfuse starts and ends worker threads as load changes: the key's destructor frees a thread's
 * read buffer when it ends (a bare _Thread_local pointer leaked it every time). */
static pthread_key_t readbuf_key;

static pthread_once_t readbuf_once = PTHREAD_ONCE_INIT;

static void readbuf_key_make(void)
{
    pthread_key_create(&readbuf_key, free);
}

static void read_failed(struct fsd *f, fuse_req_t req, fuse_ino_t ino, const char *msg)
{
    struct node copy, *nd = node_find(f, ino, &copy);
    char what[400];
    log_warn("mount: read %s: %s", nd ? node_describe(nd, what, sizeof what) : "?", msg);
    fuse_reply_err(req, EIO);
}

/* Read size bytes at off of a cached file and reply (the bytes are there, or it fails). */
static int reply_in_place(void *ctx, const void *p, size_t len)
{
    fuse_reply_buf(ctx, p, len);
    return 0;
}

static void read_serve(struct fsd *f, fuse_req_t req, fuse_ino_t ino, struct handle *h,
                       size_t size, off_t off)
{
    struct dverr err = {0};
    /* within one frame (most reads): straight from the cache's frame, no copy */
    int rc = cache_file_read_in_place(h->cf, size, (uint64_t)off, reply_in_place, req, &err);
    if (rc != -ERANGE) {
        if (rc < 0)
            read_failed(f, req, ino, dverr_msg(&err));
        return;
    }
    if (size > tl_readcap) {
        char *p = realloc(tl_readbuf, size);
        if (!p) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        tl_readbuf = p;
        tl_readcap = size;
        pthread_once(&readbuf_once, readbuf_key_make);
        pthread_setspecific(readbuf_key, p);
    }
    ssize_t n = cache_file_pread(h->cf, tl_readbuf, size, (uint64_t)off, &err);
    if (n < 0) {
        read_failed(f, req, ino, dverr_msg(&err));
        return;
    }
    fuse_reply_buf(req, tl_readbuf, (size_t)n);
}

/* A read waiting for a fill: no FUSE worker waits with it. The cache calls aread_ready when the
 * bytes are there (or the fill failed, or made no progress within the bound); the completer
 * thread then answers it. A signal to the reader (fuse interrupt) withdraws it with EINTR. */
struct aread {
    struct cache_waiter w;
    struct fsd *f;
    fuse_req_t req;
    fuse_ino_t ino;
    struct handle *h;
    size_t size;
    off_t off;
    int rc;
    char msg[300];
    struct aread *next;
};

static void aread_ready(struct cache_waiter *w, int rc, const char *msg)
{
    struct aread *a = (struct aread *)w;
    struct fsd *f = a->f;
    a->rc = rc;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
    a->next = NULL;
    pthread_mutex_lock(&f->cq_mu);
    if (f->cq_tail)
        f->cq_tail->next = a;
    else
        f->cq_head = a;
    f->cq_tail = a;
    pthread_cond_signal(&f->cq_cond);
    pthread_mutex_unlock(&f->cq_mu);
}

/* Runs under the request's lock: a completer clearing the callback waits for it, so a stays
 * valid here; it is freed here only when the withdrawal won. */
static void aread_interrupted(fuse_req_t req, void *data)
{
    struct aread *a = data;
    if (cache_waiter_cancel(a->h->cf, &a->w)) {
        fuse_reply_err(req, EINTR);
        free(a);
    }
}

void *completer_main(void *arg)
{
    struct fsd *f = arg;
    pthread_setname_np(pthread_self(), "fs-complete");
    pthread_mutex_lock(&f->cq_mu);
    for (;;) {
        while (!f->cq_head && !f->cq_stop)
            pthread_cond_wait(&f->cq_cond, &f->cq_mu);
        struct aread *a = f->cq_head;
        if (!a)
            break;
        f->cq_head = a->next;
        if (!f->cq_head)
            f->cq_tail = NULL;
        pthread_mutex_unlock(&f->cq_mu);
        fuse_req_interrupt_func(a->req, NULL, NULL); /* waits out a running interrupt */
        if (a->rc)
            read_failed(f, a->req, a->ino, a->msg);
        else
            read_serve(f, a->req, a->ino, a->h, a->size, a->off);
        free(a);
        pthread_mutex_lock(&f->cq_mu);
    }
    pthread_mutex_unlock(&f->cq_mu);
    return NULL;
}

void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
             struct fuse_file_info *fi)
{
    struct fsd *f = fs_of_req(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (h->type == H_MEM || h->type == H_CTL) {
        if ((uint64_t)off >= h->mem.len) {
            fuse_reply_buf(req, NULL, 0);
            return;
        }
        size_t n = h->mem.len - (size_t)off;
        fuse_reply_buf(req, h->mem.data + off, n < size ? n : size);
        return;
    }
    struct aread *a = f->completer_started ? calloc(1, sizeof *a) : NULL;
    if (a) {
        a->w.ready = aread_ready;
        a->f = f;
        a->req = req;
        a->ino = ino;
        a->h = h;
        a->size = size;
        a->off = off;
        /* before the waiter exists: once it does, a may be answered and freed at any time */
        fuse_req_interrupt_func(req, aread_interrupted, a);
        if (cache_file_wait_async(h->cf, (uint64_t)off, size, &a->w) == -EINPROGRESS)
            return;
        fuse_req_interrupt_func(req, NULL, NULL);
        free(a);
    }
    read_serve(f, req, ino, h, size, off); /* the bytes are there (or it fails at once) */
}
