/* repo_capture: writing to the repository (repo.h): the segment writer over the repository's temp
 * directory, the line hash, compaction (a new base segment for a long chain) and a capture of one
 * environment from begin to commit: the environment's writer lock (and, on a remote store, its
 * lease), the prune lock held shared, the capture state in the catalog, and the manifest written
 * after every object it names. Locks and commit order: repo_int.h.
 * File lists: the previous point is loaded without its file entries (a format-3 list stays in the
 * store) and read back a table at a time; the new list is written as it is produced (both in
 * repo_files.c), so a capture's memory does not grow with the org's files.
 * Limits: a manifest name is retried at most 1000 seconds later when taken (-EEXIST).
 * Threading: a repo_capture belongs to one thread at a time (its capture state is serialised by the
 * catalog); captures of different environments run in parallel. */
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
#include "backend/repo/filelist.h"
#include "backend/repo/manifest.h"
#include "backend/repo/segment.h"

/* ---------- writing ---------- */

int segment_writer_new(struct repo *r, struct segment_writer **out, struct dverr *err)
{
    return segment_writer_new_in(r->store, r->crypt, r->tmp_dir, out, err);
}

int repo_sorter_new(struct repo *r, size_t budget, struct segment_sorter **out, struct dverr *err)
{
    return segment_sorter_new(r->tmp_dir, budget, out, err);
}

uint64_t repo_line_hash(struct repo *r, const char *line, size_t len)
{
    return crypt_line_hash(r->crypt, line, len);
}

/* The size of segment k of pt without a request: the manifest's record, else what this process
 * learnt (the size memo: manifests loaded, objects written or stat-ed), else a stat where that is
 * a local call. false when unknown (a remote store never pays a request for it). */
static bool segment_size(struct repo *r, const struct point_table *pt, size_t k, uint64_t *size)
{
    if (pt->segment_sizes && pt->segment_sizes[k]) {
        *size = pt->segment_sizes[k];
        return true;
    }
    char name[80];
    segment_object_name(pt->segments[k], name);
    if (objstore_sizes_get(r->store->sizes, name, size))
        return true;
    struct dverr ignore = {0};
    if (!r->store->local_dir || r->store->ops->stat(r->store->impl, name, size, &ignore))
        return false;
    objstore_sizes_note(r->store->sizes, name, *size);
    return true;
}

bool repo_table_should_compact(struct repo *r, const struct point_table *pt)
{
    if (pt->n_segments > REPO_MAX_CHAIN)
        return true;
    /* the size rule, once the chain is long enough for it to matter: the deltas together larger
     * than the base. Sizes come from manifests and what this process wrote, so it costs no request
     * on any store; a chain with a size unknown is left alone (the length cap still applies). */
    if (pt->n_segments < 4)
        return false;
    uint64_t base = 0, deltas = 0, size;
    for (size_t i = 0; i < pt->n_segments; i++) {
        if (!segment_size(r, pt, i, &size))
            return false;
        if (i == 0)
            base = size;
        else
            deltas += size;
    }
    return deltas > base;
}

/* Record the size of every segment of p's tables that is known without a request (manifest
 * format: "segment_bytes"). A table with a size unknown keeps none. */
static int record_segment_sizes(struct repo *r, struct point *p, struct dverr *err)
{
    for (size_t i = 0; i < p->n_tables; i++) {
        struct point_table *pt = &p->tables[i];
        if (!pt->n_segments)
            continue;
        uint64_t *v = calloc(pt->n_segments, sizeof *v);
        if (!v)
            return dverr_set(err, -ENOMEM, "out of memory");
        bool all = true;
        for (size_t k = 0; all && k < pt->n_segments; k++)
            all = segment_size(r, pt, k, &v[k]) && v[k] > 0;
        free(pt->segment_sizes);
        pt->segment_sizes = NULL;
        if (all)
            pt->segment_sizes = v;
        else
            free(v);
    }
    return 0;
}

struct base_ctx {
    struct segment_writer *w;
    struct dverr *err;
};

static int base_add(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct base_ctx *c = ctx;
    return segment_writer_add(c->w, SEG_BASE, key, key_len, line, line_len, c->err);
}

int repo_write_base(struct repo *r, const struct point_table *pt, char id[65], uint64_t *records,
                    uint64_t *bytes, struct dverr *err)
{
    struct segment_writer *w = NULL;
    int rc = segment_writer_new(r, &w, err);
    if (rc)
        return rc;
    /* notes' attachments are the point's files (capture.c): keep them once in the base too */
    segment_writer_set_attachments(w, strcmp(pt->name, "annotation") == 0);
    segment_writer_set_ordered(w); /* the merge gives the keys in order: frames as they come */
    char fake_env[] = "(capture)", fake_name[] = "(new)";
    struct point fake = {.env = fake_env, .name = fake_name, .tables = (struct point_table *)pt,
                         .n_tables = 1};
    struct base_ctx c = {w, err};
    if ((rc = table_iterate(r, &fake, pt->name, base_add, &c, err))) {
        segment_writer_abort(w);
        return rc;
    }
    struct segment_stats st;
    if ((rc = segment_writer_finish_stats(w, id, &st, err)))
        return rc;
    if (records)
        *records = st.entries;
    if (bytes)
        *bytes = st.entries ? st.table_bytes : 4;
    return 0;
}

/* Merge the deltas of pt's chain (segments 1..n) into one delta segment, deletes kept (the base
 * may hold the keys they drop): what a long chain of small deltas needs, at the deltas' cost. */
static int write_merged_deltas(struct repo *r, const struct point_table *pt, char id[65],
                               struct dverr *err)
{
    struct segment_writer *w = NULL;
    struct segment_merge *m = NULL;
    int rc = segment_writer_new(r, &w, err);
    if (rc)
        return rc;
    segment_writer_set_attachments(w, strcmp(pt->name, "annotation") == 0);
    segment_writer_set_ordered(w);
    if (!(rc = segment_merge_open(r->store, r->crypt, pt->segments + 1, pt->n_segments - 1, true, &m,
                                 err))) {
        struct segment_entry e;
        int more;
        while (!rc && (more = segment_merge_next(m, &e, err)) == 1)
            rc = segment_writer_add(w, (enum segment_op)e.op, e.key, e.key_len, e.line,
                                    e.line_len, err);
        if (!rc && more < 0)
            rc = more;
    }
    segment_merge_free(m);
    if (rc) {
        segment_writer_abort(w);
        return rc;
    }
    return segment_writer_finish(w, id, err);
}

/* The deltas together at most half the base (every size known): merging them is enough. */
static bool deltas_small(struct repo *r, const struct point_table *pt)
{
    uint64_t base = 0, deltas = 0, size;
    for (size_t i = 0; i < pt->n_segments; i++) {
        if (!segment_size(r, pt, i, &size))
            return false;
        *(i ? &deltas : &base) += size;
    }
    return deltas <= base / 2;
}

int repo_table_compact(struct repo *r, struct point_table *pt, struct dverr *err)
{
    bool long_chain = pt->n_segments > REPO_MAX_CHAIN;
    bool merge = long_chain && deltas_small(r, pt);
    /* the size rule only for chains whose deltas update or delete: every entry of a create-only
     * chain (audit) is output, so a new base would cost storage and save no reading */
    if (!merge && !long_chain && !((pt->updated || pt->deleted) && repo_table_should_compact(r, pt)))
        return 0;
    char id[65];
    int rc;
    if (merge) { /* many small deltas: one merged delta after the base */
        if ((rc = write_merged_deltas(r, pt, id, err)))
            return rc;
        for (size_t k = 1; k < pt->n_segments; k++)
            free(pt->segments[k]);
        pt->n_segments = 1;
        if (id[0] && !(pt->segments[pt->n_segments++] = strdup(id)))
            return dverr_set(err, -ENOMEM, "out of memory");
    } else {
        uint64_t records = 0, bytes = 0;
        if ((rc = repo_write_base(r, pt, id, &records, &bytes, err)))
            return rc;
        if (records != pt->records || bytes != pt->bytes)
            return dverr_set(err, -EIO,
                             "%s: compaction gave %llu records / %llu bytes, the capture counted "
                             "%llu / %llu (capture state damaged?); the chain is kept", pt->name,
                             (unsigned long long)records, (unsigned long long)bytes,
                             (unsigned long long)pt->records, (unsigned long long)pt->bytes);
        for (size_t k = 0; k < pt->n_segments; k++)
            free(pt->segments[k]);
        pt->n_segments = 0;
        if (id[0] && !(pt->segments[pt->n_segments++] = strdup(id)))
            return dverr_set(err, -ENOMEM, "out of memory");
    }
    free(pt->segment_sizes); /* recorded afresh at commit */
    pt->segment_sizes = NULL;
    return 0;
}

/* ---------- capture ---------- */



void repo_capture_abort(struct repo_capture *c)
{
    if (!c)
        return;
    catalog_capture_abort(c->cc);
    objstore_lease_release(c->lease);
    chunk_tables_release(&c->prev_tables);
    chunk_tables_release(&c->new_tables);
    repo_files_out_free(c->files);
    point_free(c->prev);
    if (c->prune_fd >= 0)
        close(c->prune_fd);
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    free(c->env);
    free(c);
}

struct rebuild_ctx {
    struct repo *r;
    struct catalog_state_builder *b;
    bool hashes;             /* the capture keeps hashes for this table (no delta link) */
};

static int rebuild_add(void *ctx, const char *key, size_t key_len, const char *line,
                       size_t line_len)
{
    struct rebuild_ctx *c = ctx;
    return catalog_state_builder_add(c->b, key, key_len,
                                     c->hashes ? repo_line_hash(c->r, line, line_len) : 0,
                                     line_len);
}

/* Replace env's capture state with the records of p (NULL: empty), each table streamed from its
 * segments into a builder in key order. */
int repo_env_state_rebuild(struct repo *r, struct catalog *cat, const char *env,
                           const struct point *p, struct dverr *err)
{
    struct catalog_capture *cc = NULL;
    int rc = catalog_capture_begin(cat, env, true, &cc, err);
    if (rc)
        return rc;
    for (size_t i = 0; p && i < p->n_tables && !rc; i++) {
        struct rebuild_ctx c = {r, NULL, !p->tables[i].delta_link};
        if ((rc = catalog_capture_replace_begin(cc, p->tables[i].name, &c.b))) {
            dverr_set(err, rc, "rebuilding the capture state of %s", p->tables[i].name);
            break;
        }
        rc = table_iterate(r, p, p->tables[i].name, rebuild_add, &c, err);
        if (rc) {
            catalog_state_builder_abort(c.b);
        } else if ((rc = catalog_state_builder_finish(c.b))) {
            dverr_set(err, rc, "rebuilding the capture state of %s", p->tables[i].name);
        }
    }
    if (rc) {
        catalog_capture_abort(cc);
        return rc;
    }
    return catalog_capture_commit(cc, p, err);
}

int repo_capture_begin(struct repo *r, const char *env, struct repo_capture **out,
                       struct dverr *err)
{
    *out = NULL;
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -EINVAL, "environment name \"%.80s\" cannot be stored", env);
    struct catalog *cat = repo_catalog_get(r, err);
    if (!cat)
        return -EIO;
    struct repo_capture *c = calloc(1, sizeof *c);
    if (!c || !(c->env = strdup(env))) {
        free(c);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    c->r = r;
    c->lock_fd = c->prune_fd = -1;
    char lname[300];
    snprintf(lname, sizeof lname, "%s.lock", env);
    int rc = repo_lock_open(r, lname, &c->lock_fd, err);
    if (rc)
        goto fail;
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB)) {
        rc = errno == EWOULDBLOCK ? dverr_set(err, -EBUSY, "another capture of %s is running", env)
                                  : dverr_set(err, -errno, "locking %s: %s", env, strerror(errno));
        goto fail;
    }
    if (!r->store->local_dir) {
        /* Other machines may share a remote store: one writer per environment across all of
         * them, through a lease object that expires when its holder dies. */
        char lname2[300], purpose[300];
        snprintf(lname2, sizeof lname2, "locks/%s.lease", env);
        snprintf(purpose, sizeof purpose, "the capture of %s", env);
        if ((rc = objstore_lease_take(r->store, lname2, purpose, 0, &c->lease, err)) ||
            (rc = objstore_lease_wait_free(r->store, "locks/prune.lease", LOCK_WAIT_MS, err)))
            goto fail;
    }
    if ((rc = repo_lock_open(r, "prune.lock", &c->prune_fd, err)))
        goto fail;
    if ((rc = repo_lock_wait(c->prune_fd, LOCK_SH, LOCK_WAIT_MS))) {
        dverr_set(err, rc, "waiting for a prune of the repository to finish: %s", strerror(-rc));
        goto fail;
    }
    struct point_summary *pts = NULL;
    size_t n = 0;
    if ((rc = repo_points(r, env, &pts, &n, err)))
        goto fail;
    char latest[32] = "";
    if (n)
        snprintf(latest, sizeof latest, "%s", pts[n - 1].name);
    point_summaries_free(pts, n);
    if (latest[0] && ((rc = repo_point_load_flags(r, env, latest, REPO_LOAD_FILES_LATER, &c->prev,
                                                  err)) ||
                      (rc = repo_chunk_tables_read(c, err))))
        goto fail;
    char state_point[32], marker[400], known[400], mkey[300];
    if ((rc = catalog_state_point(cat, env, state_point, err)))
        goto fail;
    /* an erasure (here, elsewhere, or killed) rewrote points without a new name: see it */
    repo_erasure_marker_key(env, mkey, sizeof mkey);
    if ((rc = repo_erasure_marker(r, env, marker, sizeof marker, err)) ||
        (rc = catalog_meta_get(cat, mkey, known, sizeof known, err)))
        goto fail;
    if (strcmp(state_point, latest) != 0 || strcmp(marker, known) != 0) {
        log_info("%s: the capture state is at \"%s\", the latest point is \"%s\"%s: rebuilding it",
                 env, state_point, latest,
                 strcmp(marker, known) != 0 ? " (an erasure rewrote the points)" : "");
        if ((rc = repo_env_state_rebuild(r, cat, env, c->prev, err)) ||
            (rc = catalog_meta_put(cat, mkey, marker, err)))
            goto fail;
    }
    if ((rc = catalog_capture_begin(cat, env, false, &c->cc, err)))
        goto fail;
    *out = c;
    return 0;
fail:
    repo_capture_abort(c);
    return rc;
}

const struct point *repo_capture_previous(struct repo_capture *c)
{
    return c->prev;
}

int repo_capture_state_get(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t *hash, uint64_t *len, bool *found)
{
    return catalog_capture_get(c->cc, table, key, key_len, hash, len, found);
}

int repo_capture_state_put(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t hash, uint64_t len, bool deleted)
{
    return catalog_capture_put(c->cc, table, key, key_len, hash, len, deleted);
}

int repo_capture_state_forget(struct repo_capture *c, const char *table)
{
    return catalog_capture_forget(c->cc, table);
}

int repo_capture_state_iterate(struct repo_capture *c, const char *table,
                               int (*fn)(void *ctx, const char *key, uint64_t hash, uint64_t len),
                               void *ctx)
{
    struct catalog_cursor *cur = NULL;
    int rc = catalog_capture_cursor_open(c->cc, table, &cur);
    while (!rc) {
        const char *k;
        size_t kn;
        uint64_t h, l;
        int r = catalog_cursor_next(cur, &k, &kn, &h, &l);
        if (r <= 0) {
            rc = r;
            break;
        }
        rc = fn(ctx, k, h, l); /* k is NUL-terminated (keys hold no NUL) */
    }
    catalog_cursor_free(cur);
    return rc;
}

int repo_capture_state_cursor(struct repo_capture *c, const char *table,
                              struct catalog_cursor **out)
{
    return catalog_capture_cursor_open(c->cc, table, out);
}

int repo_state_cursor_next(struct catalog_cursor *cur, const char **key, size_t *key_len,
                           uint64_t *hash, uint64_t *len)
{
    return catalog_cursor_next(cur, key, key_len, hash, len);
}

void repo_state_cursor_free(struct catalog_cursor *cur)
{
    catalog_cursor_free(cur);
}

int repo_capture_state_replace(struct repo_capture *c, const char *table,
                               struct catalog_state_builder **out)
{
    return catalog_capture_replace_begin(c->cc, table, out);
}

int repo_state_builder_add(struct catalog_state_builder *b, const char *key, size_t key_len,
                           uint64_t hash, uint64_t len)
{
    return catalog_state_builder_add(b, key, key_len, hash, len);
}

int repo_state_builder_finish(struct catalog_state_builder *b)
{
    return catalog_state_builder_finish(b);
}

void repo_state_builder_abort(struct catalog_state_builder *b)
{
    catalog_state_builder_abort(b);
}

/* Shorten long chains before the manifest names them (repo_table_compact; the capture need not
 * know). A base that does not reproduce the manifest's counts is not used (logged: the capture's
 * counts are then wrong, and readers will say so). */
static int compact_point(struct repo *r, struct point *p, struct dverr *err)
{
    for (size_t i = 0; i < p->n_tables; i++) {
        struct point_table *pt = &p->tables[i];
        size_t before = pt->n_segments;
        struct dverr e = {0};
        int rc = repo_table_compact(r, pt, &e);
        if (rc == -EIO) {
            log_error("%s: %s", p->env, dverr_msg(&e));
            continue;
        }
        if (rc)
            return dverr_set(err, rc, "%s", dverr_msg(&e));
        if (pt->n_segments != before)
            log_info("%s: compacted the chain of %s from %zu segments to %zu", p->env, pt->name,
                     before, pt->n_segments);
    }
    return 0;
}

/* Store p's shared tables document and file list (manifest.h, format 3) as blobs and name them in
 * p: a point that changed nothing names its parent's, which are already there (base: the parent,
 * NULL for a first point). A list the capture streamed (files_named) is named already. */
static int put_shared(struct repo *r, struct point *p, const struct point *base, bool files_named,
                      struct dverr *err)
{
    char tid[65], fid[65], **chunks;
    size_t n_chunks;
    if (files_named) {
        struct buf doc = BUF_INIT;
        int rc = manifest_render_tables(p, &doc, err);
        if (!rc)
            rc = repo_blob_put(r, doc.data, doc.len, tid, err);
        buf_release(&doc);
        if (rc)
            return rc;
        free(p->tables_object);
        p->tables_object = strdup(tid);
        return p->tables_object ? 0 : dverr_set(err, -ENOMEM, "out of memory");
    }
    int rc = repo_point_shared_put(r, p, base, tid, fid, &chunks, &n_chunks, err);
    if (rc)
        return rc;
    free(p->tables_object);
    free(p->files_object);
    strv_free(p->files_chunks, p->n_files_chunks);
    p->files_chunks = chunks;
    p->n_files_chunks = n_chunks;
    p->files_chunked = true;
    p->tables_object = strdup(tid);
    p->files_object = strdup(fid);
    return p->tables_object && p->files_object ? 0 : dverr_set(err, -ENOMEM, "out of memory");
}

int repo_capture_commit(struct repo_capture *c, struct point *p, struct dverr *err)
{
    struct repo *r = c->r;
    struct buf doc = BUF_INIT, sealed = BUF_INIT;
    int rc = 0;
    if (!p->env && !(p->env = strdup(c->env))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (strcmp(p->env, c->env) != 0) {
        rc = dverr_set(err, -EINVAL, "point of %s committed by a capture of %s", p->env, c->env);
        goto out;
    }
    if (!p->kind && !(p->kind = strdup("system"))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = compact_point(r, p, err)) || (rc = record_segment_sizes(r, p, err)))
        goto out;
    if ((rc = objstore_lease_check(c->lease, err))) /* never publish after losing the lease */
        goto out;
    if ((rc = put_shared(r, p, c->prev, c->files_named, err)))
        goto out;
    /* object_lock: everything the point names is locked until it expires before the manifest
     * exists (objects an earlier point named get their retention extended) */
    if ((rc = repo_point_lock(r, p, p->expires_at, err)))
        goto out;
    time_t t = p->taken_at;
    if (c->prev && t <= c->prev->taken_at)
        t = c->prev->taken_at + 1;
    for (int attempt = 0;; attempt++) {
        char name[32], obj[400];
        point_name_from_time(t, name);
        free(p->name);
        if (!(p->name = strdup(name))) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        p->taken_at = t;
        buf_reset(&doc);
        if ((rc = manifest_render(p, &doc, err)))
            goto out;
        if ((rc = manifest_object_name(p->env, p->name, obj, sizeof obj))) {
            rc = dverr_set(err, rc, "bad point name");
            goto out;
        }
        struct dverr e2 = {0};
        buf_reset(&sealed);
        if ((rc = repo_doc_seal(r, "manifest", obj, doc.data, doc.len, &sealed, err)))
            goto out;
        rc = r->store->ops->put_if_absent(r->store->impl, obj, sealed.data, sealed.len, &e2);
        if (rc == -EEXIST && attempt < 1000) {
            t++;
            continue;
        }
        if (rc) {
            dverr_set(err, rc, "writing the manifest: %s", dverr_msg(&e2));
            goto out;
        }
        if (r->object_lock && p->expires_at > 0 &&
            (rc = r->store->ops->retain(r->store->impl, obj, p->expires_at, &e2))) {
            /* the point exists; its objects are locked, its manifest is not */
            log_warn("%s/%s is saved but its manifest could not be locked: %s", p->env, p->name,
                     dverr_msg(&e2));
            rc = 0;
        }
        break;
    }
    if (c->files_named && c->new_tables.index[0]) { /* the next capture's previous list */
        pthread_mutex_lock(&r->shared_mu);
        chunk_tables_release(&r->files_memo);
        r->files_memo = c->new_tables;
        c->new_tables = (struct chunk_tables){0};
        pthread_mutex_unlock(&r->shared_mu);
    }
    struct dverr ce = {0};
    int crc = catalog_capture_commit(c->cc, p, &ce);
    c->cc = NULL;
    if (crc)
        log_warn("%s/%s is saved but the catalog was not updated (%s); the next capture repairs "
                 "it", p->env, p->name, dverr_msg(&ce));
out:
    buf_release(&doc);
    buf_release(&sealed);
    repo_capture_abort(c);
    return rc;
}
