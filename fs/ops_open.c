/* ops_open: open, release and flush. An open builds a handle: a generated document or a
 * control file's status in memory, or a cached file (tables, changes, audit, schemas, files)
 * opened in the cache (cache/cache.h) with a source that streams it from the point view (its
 * first open starts the background fill). The kernel then serves a cached file through the FUSE
 * page cache, or by passthrough from the cache's plain copy (fs/passthrough.h), per inode as it
 * requires (struct open_count). Handles are tracked so that those whose RELEASE never came are
 * freed when the session ends.
 *
 * Limits: only control files open for writing (else EROFS), and only for root or the mount's
 * owner (else EACCES); a failed open answers ENOENT, ENOMEM or EIO.
 * Threading: FUSE worker threads; the sources' functions run on the cache's fill threads.
 * fsd->mu guards the open counts and the handle list (and is held across registering a backing
 * file); vmu is taken briefly for a schema's size. */
#include "fs/fs_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "fs/passthrough.h"

/* cache sources */
struct table_src {
    struct fsd *f;
    struct pview *v;
    char *table;
    bool changes;
    void *stream; /* the source's stream while open */
};

static int table_src_open(void *arg, void **stream, struct dverr *err)
{
    struct table_src *s = arg;
    int rc = s->f->src->ops->stream_open(s->f->src->impl, s->v->p, s->table, s->changes,
                                         &s->stream, err);
    *stream = s;
    return rc;
}

static ssize_t table_src_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct table_src *s = stream;
    return s->f->src->ops->stream_read(s->stream, buf, n, err);
}

static void table_src_close(void *stream)
{
    struct table_src *s = stream;
    s->f->src->ops->stream_close(s->stream);
    s->stream = NULL;
}

static void table_src_free(void *arg)
{
    struct table_src *s = arg;
    pview_put(s->f, s->v);
    free(s->table);
    free(s);
}

struct blob_src {
    struct fsd *f;
    char *id;
    struct buf b;
    size_t pos;
};

static int blob_src_open(void *arg, void **stream, struct dverr *err)
{
    struct blob_src *s = arg;
    *stream = s;
    return s->f->src->ops->blob_get(s->f->src->impl, s->id, &s->b, err);
}

static ssize_t blob_src_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct blob_src *s = stream;
    if (n > s->b.len - s->pos)
        n = s->b.len - s->pos;
    memcpy(buf, s->b.data + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

static void blob_src_close(void *stream) {}

static void blob_src_free(void *arg)
{
    struct blob_src *s = arg;
    buf_release(&s->b);
    free(s->id);
    free(s);
}

static int open_cached(struct fsd *f, const struct node *n, struct handle *h, struct dverr *err)
{
    struct pview *v;
    int rc = pview_get(f, n->env, n->point, n->kind == N_FILE, &v);
    if (rc)
        return rc;
    char *key = NULL;
    uint64_t size = 0;
    struct cache_source cs = {0};
    const struct point *p = v->p;
    if (n->kind == N_TABLE || n->kind == N_CHANGE_FILE || n->kind == N_AUDIT) {
        int ti = n->kind == N_AUDIT ? (p->audit_table ? fs_table_index(p, p->audit_table) : -1)
                                    : n->idx;
        if (ti < 0 || (size_t)ti >= p->n_tables) {
            pview_put(f, v);
            return -ENOENT;
        }
        bool changes = n->kind == N_CHANGE_FILE;
        size = changes ? p->tables[ti].changes_bytes : p->tables[ti].bytes;
        struct table_src *s = calloc(1, sizeof *s);
        if (!s || asprintf(&key, "%s/%s/%s/%s/%s", f->o->cache_key_prefix, n->env, n->point,
                           changes ? "changes" : "tables", p->tables[ti].name) < 0) {
            free(s);
            pview_put(f, v);
            return -ENOMEM;
        }
        s->f = f;
        s->v = v; /* the source keeps the reference */
        s->table = strdup(p->tables[ti].name);
        s->changes = changes;
        cs = (struct cache_source){table_src_open, table_src_read, table_src_close,
                                   table_src_free, s};
        if (!s->table) {
            table_src_free(s);
            free(key);
            return -ENOMEM;
        }
    } else if (!pview_index_ok(v, n->kind, n->idx)) {
        pview_put(f, v);
        return -ENOENT;
    } else {
        const char *blob;
        if (n->kind == N_SCHEMA_FILE) {
            blob = p->tables[n->idx].schema;
            int64_t sz;
            pthread_mutex_lock(&f->vmu);
            sz = v->schema_size[n->idx];
            pthread_mutex_unlock(&f->vmu);
            if (sz < 0) {
                struct attr a;
                rc = attr_of(f, n->kind, n->env, n->point, n->arg, n->idx, &a);
                if (rc) {
                    pview_put(f, v);
                    return rc;
                }
                sz = a.st.st_size;
            }
            size = (uint64_t)sz;
        } else {
            const struct point_file *pf = &p->files[v->files[n->idx].idx];
            blob = pf->blob;
            size = pf->size;
        }
        struct blob_src *s = calloc(1, sizeof *s);
        if (!s || !blob || asprintf(&key, "%s/blob/%s", f->o->cache_key_prefix, blob) < 0) {
            free(s);
            pview_put(f, v);
            return !blob ? -ENOENT : -ENOMEM;
        }
        s->f = f;
        s->id = strdup(blob);
        pview_put(f, v);
        cs = (struct cache_source){blob_src_open, blob_src_read, blob_src_close, blob_src_free,
                                   s};
        if (!s->id) {
            blob_src_free(s);
            free(key);
            return -ENOMEM;
        }
    }
    rc = cache_file_open(f->o->cache, key, size, &cs, &h->cf, err);
    free(key);
    if (rc)
        return rc;
    h->type = H_CACHE;
    return 0;
}

/* ---- open modes and handles ---- */
/* f->mu held */
static struct open_count *open_count_get(struct fsd *f, fuse_ino_t ino, bool create)
{
    for (struct open_count *c = f->open_counts; c; c = c->next)
        if (c->ino == ino)
            return c;
    struct open_count *c = create ? calloc(1, sizeof *c) : NULL;
    if (c) {
        c->ino = ino;
        c->next = f->open_counts;
        f->open_counts = c;
    }
    return c;
}

/* How the kernel serves this open of a cached file: by passthrough from the cache's plain copy
 * when there is one and the inode is not open through the FUSE page cache (and always while it
 * is open by passthrough), else through the page cache. The backing id for the reply (0: the
 * page cache), or -ENOMEM. */
static int open_mode_pick(struct fsd *f, fuse_ino_t ino, struct handle *h)
{
    int plain = passthrough_on(f->pt) ? cache_file_plain_fd(h->cf) : -1;
    int id = 0;
    pthread_mutex_lock(&f->mu);
    struct open_count *c = open_count_get(f, ino, true);
    if (!c) {
        pthread_mutex_unlock(&f->mu);
        return -ENOMEM;
    }
    if (c->passthrough == 0 && c->cached == 0 && plain >= 0) {
        int r = passthrough_backing_open(f->pt, plain);
        c->backing_id = r > 0 ? r : 0;
    }
    if (c->backing_id > 0) {
        c->passthrough++;
        h->mode = OPEN_PASSTHROUGH;
        id = c->backing_id;
    } else {
        c->cached++;
        h->mode = OPEN_CACHED;
    }
    pthread_mutex_unlock(&f->mu);
    return id;
}

static void open_mode_release(struct fsd *f, fuse_ino_t ino, struct handle *h)
{
    int close_id = 0;
    if (h->mode == OPEN_UNCOUNTED)
        return;
    pthread_mutex_lock(&f->mu);
    struct open_count *c = open_count_get(f, ino, false);
    if (c) {
        if (h->mode == OPEN_PASSTHROUGH && --c->passthrough == 0) {
            close_id = c->backing_id;
            c->backing_id = 0;
        } else if (h->mode == OPEN_CACHED) {
            c->cached--;
        }
        if (c->passthrough == 0 && c->cached == 0) {
            struct open_count **pp = &f->open_counts;
            while (*pp != c)
                pp = &(*pp)->next;
            *pp = c->next;
            free(c);
        }
    }
    pthread_mutex_unlock(&f->mu);
    h->mode = OPEN_UNCOUNTED;
    if (close_id > 0)
        passthrough_backing_close(f->pt, close_id);
}

static void handle_track(struct fsd *f, struct handle *h)
{
    pthread_mutex_lock(&f->mu);
    h->prev = NULL;
    h->next = f->handles;
    if (f->handles)
        f->handles->prev = h;
    f->handles = h;
    pthread_mutex_unlock(&f->mu);
}

static void handle_untrack(struct fsd *f, struct handle *h)
{
    pthread_mutex_lock(&f->mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        f->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&f->mu);
}

void handle_free(struct handle *h)
{
    cache_file_close(h->cf);
    buf_release(&h->mem);
    free(h);
}

/* ---- open, release, flush ---- */
void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *n = node_find(f, ino, &copy);
    struct dverr err = {0};
    int rc = 0, backing_id = 0;
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (fs_is_dir(n->kind)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
    if (wr && !fs_is_ctl(n->kind)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (wr && !fs_owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    switch (n->kind) {
    case N_README:
        h->type = H_MEM;
        rc = buf_add(&h->mem, docs_readme_text, docs_readme_len);
        fi->keep_cache = 1;
        break;
    case N_BACKUP_JSON: {
        struct pview *v;
        rc = pview_get(f, n->env, n->point, false, &v);
        if (!rc) {
            rc = buf_add(&h->mem, v->backup_json.data, v->backup_json.len);
            pview_put(f, v);
        }
        h->type = H_MEM;
        fi->keep_cache = 1;
        break;
    }
    case N_ENV_JSON:
        h->type = H_MEM;
        rc = docs_env_json(f, n->env, &h->mem);
        fi->direct_io = 1;
        break;
    case N_OP_FILE:
        h->type = H_MEM;
        rc = f->o->control ? f->o->control->ops->ops_json(f->o->control->ctx, n->arg, &h->mem)
                           : -ENOENT;
        fi->direct_io = 1;
        break;
    case N_BACKUP_CTL:
    case N_RESTORE_CTL:
        h->type = H_CTL;
        h->write = wr;
        if (!wr)
            rc = docs_status(f, n, &h->mem);
        fi->direct_io = 1;
        break;
    case N_TABLE: case N_CHANGE_FILE: case N_AUDIT: case N_SCHEMA_FILE: case N_FILE:
        rc = open_cached(f, n, h, &err);
        if (rc) {
            char what[400];
            log_warn("mount: open %s: %s", node_describe(n, what, sizeof what), dverr_msg(&err));
        }
        if (!rc)
            backing_id = open_mode_pick(f, ino, h);
        if (backing_id < 0)
            rc = backing_id;
        fi->keep_cache = 1;
        break;
    default:
        rc = -EINVAL;
    }
    if (rc) {
        handle_free(h);
        fuse_reply_err(req, rc == -ENOENT ? ENOENT : rc == -ENOMEM ? ENOMEM : EIO);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    /* a passthrough open needs no FLUSH: its close never waits for the daemon. Other opens keep
     * it: their last read's reply may still be in its writev when the reader closes, and the
     * FLUSH round trip keeps the RELEASE (which frees the handle) behind it (without it,
     * AddressSanitizer saw the handle freed while the writev of its reply returned). */
    fi->noflush = backing_id > 0;
    passthrough_next_open(backing_id);
    handle_track(f, h);
    if (fuse_reply_open(req, fi) != 0) {
        handle_untrack(f, h);
        open_mode_release(f, ino, h);
        handle_free(h);
    }
}

void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (h) {
        handle_untrack(fs_of_req(req), h);
        open_mode_release(fs_of_req(req), ino, h);
        handle_free(h);
    }
    fuse_reply_err(req, 0);
}

void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}
