/* repo_erase: the repository's side of an erasure (repo.h; the engine's erase.c decides what to
 * erase and drives these). Everything an erasure writes goes through the same paths a capture's
 * objects do (the segment writer, the store's atomic put), so a store that encrypts or stores
 * differently does it here too:
 *   - repo_exclusive_begin takes what prune takes (prune.lock exclusively; locks/prune.lease on
 *     remote stores), so no capture or prune runs while segments and manifests are rewritten;
 *   - repo_segment_rewrite copies a segment without some entries into a new segment (a new id:
 *     segments are named by their bytes), repo_point_replace puts a point's new manifest over the
 *     old one (one atomic put: a reader sees the old or the new point, each complete, since its
 *     new segments were durable before), and repo_objects_drop_unreferenced deletes the old
 *     objects once no manifest names them;
 *   - the journal and the log are small documents under erase/ and erasures/.
 * Limits: repo_objects_drop_unreferenced reads every manifest of the repository (as prune does).
 * Threading: no state of its own; callers hold repo_exclusive. */
#include "backend/repo/repo_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "backend/objstore/objstore_lease.h"
#include "backend/repo/catalog.h"
#include "backend/repo/manifest.h"

struct repo_exclusive {
    int lock_fd;
    struct objstore_lease *lease;
};

int repo_exclusive_begin(struct repo *r, struct repo_exclusive **out, struct dverr *err)
{
    *out = NULL;
    struct repo_exclusive *x = calloc(1, sizeof *x);
    if (!x)
        return dverr_set(err, -ENOMEM, "out of memory");
    x->lock_fd = -1;
    int rc = repo_lock_open(r, "prune.lock", &x->lock_fd, err);
    if (!rc && (rc = repo_lock_wait(x->lock_fd, LOCK_EX, LOCK_WAIT_MS)))
        dverr_set(err, rc, "waiting for running captures and prunes to finish: %s",
                  strerror(-rc));
    if (!rc && !r->store->local_dir)
        rc = repo_prune_lease_take(r, &x->lease, err);
    if (rc) {
        repo_exclusive_end(x);
        return rc;
    }
    *out = x;
    return 0;
}

void repo_exclusive_end(struct repo_exclusive *x)
{
    if (!x)
        return;
    objstore_lease_release(x->lease);
    if (x->lock_fd >= 0)
        close(x->lock_fd);
    free(x);
}

int repo_segment_iterate(struct repo *r, const char *id,
                         int (*fn)(void *ctx, const struct segment_entry *e), void *ctx,
                         struct dverr *err)
{
    struct segment_merge *m = NULL;
    char *ids[1] = {(char *)id};
    int rc = segment_merge_open(r->store, r->crypt, ids, 1, true, &m, err);
    struct segment_entry e;
    while (!rc && (rc = segment_merge_next(m, &e, err)) == 1)
        rc = fn(ctx, &e);
    segment_merge_free(m);
    return rc;
}

struct rewrite_ctx {
    struct segment_writer *w;
    bool (*drop)(void *ctx, const struct segment_entry *e);
    void (*removed)(void *ctx, const struct segment_entry *e);
    void *ctx;
    struct dverr *err;
};

static int rewrite_entry(void *arg, const struct segment_entry *e)
{
    struct rewrite_ctx *c = arg;
    if (c->drop(c->ctx, e)) {
        if (c->removed)
            c->removed(c->ctx, e);
        return 0;
    }
    return segment_writer_add(c->w, (enum segment_op)e->op, e->key, e->key_len, e->line,
                              e->line_len, c->err);
}

int repo_segment_rewrite(struct repo *r, const char *id, bool attachments,
                         bool (*drop)(void *ctx, const struct segment_entry *e),
                         void (*removed)(void *ctx, const struct segment_entry *e), void *ctx,
                         char new_id[65], struct segment_stats *st, uint64_t *size,
                         struct dverr *err)
{
    struct rewrite_ctx c = {NULL, drop, removed, ctx, err};
    new_id[0] = '\0';
    if (st)
        memset(st, 0, sizeof *st);
    if (size)
        *size = 0;
    int rc = segment_writer_new(r, &c.w, err);
    if (rc)
        return rc;
    segment_writer_set_attachments(c.w, attachments);
    if ((rc = repo_segment_iterate(r, id, rewrite_entry, &c, err))) {
        segment_writer_abort(c.w);
        return rc;
    }
    if ((rc = segment_writer_finish_stats(c.w, new_id, st, err)))
        return rc;
    if (new_id[0] && size) {
        char name[80];
        segment_object_name(new_id, name);
        if ((rc = r->store->ops->stat(r->store->impl, name, size, err)))
            return rc;
        objstore_sizes_note(r->store->sizes, name, *size);
    }
    return 0;
}

int repo_point_replace(struct repo *r, const struct point *p, struct dverr *err)
{
    char obj[400];
    uint64_t size;
    if (!p->env || !p->name || manifest_object_name(p->env, p->name, obj, sizeof obj))
        return dverr_set(err, -EINVAL, "cannot replace a point without a valid name");
    int rc = r->store->ops->stat(r->store->impl, obj, &size, err);
    if (rc)
        return rc == -ENOENT ? dverr_set(err, rc, "no point %s/%s to replace", p->env, p->name)
                             : rc;
    struct buf doc = BUF_INIT;
    /* a format-2 or 3 point names its tables document and file list: stored again from p (format
     * 3), which may differ from the ones it named (the old ones go with
     * repo_objects_drop_unreferenced) */
    struct point q = *p;
    char tid[65], fid[65], **chunks = NULL;
    size_t n_chunks = 0;
    if (p->tables_object) {
        if ((rc = repo_point_shared_put(r, p, NULL, tid, fid, &chunks, &n_chunks, err)))
            return rc;
        q.tables_object = tid;
        q.files_object = fid;
        q.files_chunked = true;
    }
    if (!(rc = manifest_render(&q, &doc, err)))
        rc = repo_doc_put(r, "manifest", obj, doc.data, doc.len, err);
    buf_release(&doc);
    strv_free(chunks, n_chunks);
    if (rc)
        return rc;
    struct dverr ce = {0};
    struct catalog *cat = repo_catalog_get(r, &ce);
    if (cat && catalog_point_add(cat, p, &ce))
        log_warn("%s", dverr_msg(&ce)); /* a cache: repo_env_catalog_refresh redoes it */
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids of want (sorted) that a point names are marked in used. */
struct used_ctx {
    const struct name_list *want;
    bool *used;
};

static int mark_used(void *ctx, const char *id)
{
    struct used_ctx *u = ctx;
    char **hit = bsearch(&id, u->want->v, u->want->n, sizeof *u->want->v, cmp_id);
    if (hit)
        u->used[hit - u->want->v] = true;
    return 0;
}

int repo_objects_drop_unreferenced(struct repo *r, char *const *ids, size_t n,
                                   uint64_t *removed, uint64_t *bytes, struct dverr *err)
{
    struct name_list manifests = {0}, want = {0};
    *removed = *bytes = 0;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        if (segment_id_ok(ids[i]))
            rc = name_list_add(&want, ids[i], strlen(ids[i]));
    name_list_sort_unique(&want);
    bool *used = calloc(want.n ? want.n : 1, sizeof *used);
    if (rc || !used) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (!want.n)
        goto out;
    if ((rc = r->store->ops->list(r->store->impl, "points/", name_list_collect, &manifests, err)))
        goto out;
    for (size_t i = 0; i < manifests.n && !rc; i++) {
        char env[256], name[64];
        if (!repo_manifest_name_parse(manifests.v[i], env, sizeof env, name, sizeof name))
            continue;
        struct point *p = NULL;
        if ((rc = repo_point_load(r, env, name, &p, err))) {
            if (rc == -ENOENT) { /* gone meanwhile (a forget) */
                rc = 0;
                continue;
            }
            dverr_set(err, rc, "cannot tell which objects %s/%s needs: deleting none", env, name);
            goto out;
        }
        struct used_ctx u = {&want, used};
        repo_point_each_id(p, mark_used, &u);
        point_free(p);
    }
    for (size_t i = 0; i < want.n && !rc; i++) {
        if (used[i])
            continue;
        char name[80];
        uint64_t size = 0;
        struct dverr ignore = {0};
        segment_object_name(want.v[i], name);
        if (r->store->ops->stat(r->store->impl, name, &size, &ignore) == -ENOENT)
            continue; /* deleted by an earlier run */
        if ((rc = r->store->ops->del(r->store->impl, name, err)) == -ENOENT)
            rc = 0;
        else if (!rc) {
            (*removed)++;
            *bytes += size;
        }
    }
out:
    free(used);
    strv_free(manifests.v, manifests.n);
    strv_free(want.v, want.n);
    return rc;
}

int repo_env_catalog_refresh(struct repo *r, const char *env, struct dverr *err)
{
    struct catalog *cat = repo_catalog_get(r, err);
    if (!cat)
        return -EIO;
    struct name_list names = {0};
    int rc = repo_point_names(r, env, &names, err);
    struct point *latest = NULL;
    for (size_t i = 0; !rc && i < names.n; i++) {
        struct point *p = NULL;
        if ((rc = repo_point_load(r, env, names.v[i], &p, err)))
            break;
        rc = catalog_point_add(cat, p, err);
        if (i + 1 == names.n)
            latest = p;
        else
            point_free(p);
    }
    if (!rc)
        rc = repo_env_state_rebuild(r, cat, env, latest, err);
    if (!rc) /* the old state's pages held the erased keys */
        rc = catalog_vacuum(cat, err);
    point_free(latest);
    strv_free(names.v, names.n);
    return rc;
}

void repo_erasure_marker_key(const char *env, char *out, size_t n)
{
    snprintf(out, n, "erasures:%s", env);
}

int repo_erasure_marker(struct repo *r, const char *env, char *out, size_t n, struct dverr *err)
{
    char prefix[300], journal[300];
    char **names = NULL;
    size_t k = 0;
    uint64_t size;
    out[0] = '\0';
    snprintf(prefix, sizeof prefix, "erasures/%s/", env);
    snprintf(journal, sizeof journal, "erase/%s.journal.json", env);
    int rc = repo_doc_list(r, prefix, &names, &k, err);
    if (rc)
        return rc;
    struct dverr e2 = {0};
    int jrc = r->store->ops->stat(r->store->impl, journal, &size, &e2);
    if (jrc && jrc != -ENOENT) {
        strv_free(names, k);
        return dverr_set(err, jrc, "%s", dverr_msg(&e2));
    }
    snprintf(out, n, "%s%s", k ? names[k - 1] : "", jrc == 0 ? "+journal" : "");
    strv_free(names, k);
    return 0;
}

int repo_erasure_noted(struct repo *r, const char *env, struct dverr *err)
{
    char marker[400], key[300];
    struct catalog *cat = repo_catalog_get(r, err);
    if (!cat)
        return -EIO;
    int rc = repo_erasure_marker(r, env, marker, sizeof marker, err);
    repo_erasure_marker_key(env, key, sizeof key);
    return rc ? rc : catalog_meta_put(cat, key, marker, err);
}

static bool doc_name_ok(const char *name)
{
    return name && (strncmp(name, "erase/", 6) == 0 || strncmp(name, "erasures/", 9) == 0) &&
           objstore_name_ok(name);
}

int repo_erase_doc_put(struct repo *r, const char *name, const char *text, struct dverr *err)
{
    if (!doc_name_ok(name))
        return dverr_set(err, -EINVAL, "\"%.80s\" is not a document name", name ? name : "");
    return repo_doc_put(r, "erasedoc", name, text, strlen(text), err);
}

int repo_erase_doc_get(struct repo *r, const char *name, struct buf *out, struct dverr *err)
{
    if (!doc_name_ok(name))
        return dverr_set(err, -EINVAL, "\"%.80s\" is not a document name", name ? name : "");
    return repo_doc_get(r, "erasedoc", name, 64u << 20, out, err);
}

int repo_erase_doc_del(struct repo *r, const char *name, struct dverr *err)
{
    if (!doc_name_ok(name))
        return dverr_set(err, -EINVAL, "\"%.80s\" is not a document name", name ? name : "");
    return r->store->ops->del(r->store->impl, name, err);
}

int repo_doc_list(struct repo *r, const char *prefix, char ***names, size_t *n,
                  struct dverr *err)
{
    struct name_list l = {0};
    *names = NULL;
    *n = 0;
    char dir[400];
    snprintf(dir, sizeof dir, "%s", prefix);
    while (strlen(dir) > 1 && dir[strlen(dir) - 1] == '/')
        dir[strlen(dir) - 1] = '\0';
    if (!doc_name_ok(dir))
        return dverr_set(err, -EINVAL, "\"%.80s\" is not a document prefix", prefix);
    int rc = r->store->ops->list(r->store->impl, prefix, name_list_collect, &l, err);
    if (rc == -ENOENT)
        rc = 0;
    if (rc) {
        strv_free(l.v, l.n);
        return rc;
    }
    name_list_sort_unique(&l);
    *names = l.v;
    *n = l.n;
    return 0;
}
