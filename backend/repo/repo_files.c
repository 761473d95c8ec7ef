/* repo_files: a capture's file lists (repo.h, repo_capture_files_*; format in filelist.h): the
 * previous point's files read back a table at a time from the chunks that hold it (which tables
 * each chunk holds: read once at begin, or kept from the capture before in this process, struct
 * repo.files_memo), and the new point's list written as it is produced, chunk by chunk
 * (filelist_writer), a table whose chunks did not change naming them by id without reading them.
 * Memory: one chunk's files per reader and one for the writer, plus a few ids and names a chunk;
 * never a whole list.
 * Limits: a chunk is carried by id only where the list being written stands at its start (the
 * same bytes before it as in the previous list, from the last common cut), never the previous
 * list's last chunk, and never with object_lock (each file's blob is locked as it passes).
 * Threading: readers of different tables run on the capture's worker threads at once (they read
 * the capture's previous point and chunk tables, set at begin and not changed after); the writer
 * belongs to the capture's thread. */
#include "backend/repo/repo_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "backend/repo/filelist.h"
#include "backend/repo/manifest.h"

void chunk_tables_release(struct chunk_tables *t)
{
    for (size_t k = 0; k < t->n_chunks; k++) {
        strv_free(t->tables[k], t->n[k]);
        free(t->first[k]);
        free(t->last[k]);
    }
    free(t->tables);
    free(t->first);
    free(t->last);
    free(t->n);
    *t = (struct chunk_tables){0};
}

/* Room for one more chunk in t (its entry zeroed, counted). */
static int chunk_tables_grow(struct chunk_tables *t)
{
    if (t->n_chunks == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 64;
        char ***v = realloc(t->tables, cap * sizeof *v);
        if (v)
            t->tables = v;
        size_t *c = v ? realloc(t->n, cap * sizeof *c) : NULL;
        if (c)
            t->n = c;
        char **f = c ? realloc(t->first, cap * sizeof *f) : NULL;
        if (f)
            t->first = f;
        char **l = f ? realloc(t->last, cap * sizeof *l) : NULL;
        if (l)
            t->last = l;
        if (!l)
            return -ENOMEM;
        t->cap = cap;
    }
    size_t k = t->n_chunks++;
    t->tables[k] = NULL;
    t->first[k] = t->last[k] = NULL;
    t->n[k] = 0;
    return 0;
}

/* Append a copy of chunk k of src to t. */
static int chunk_tables_copy(struct chunk_tables *t, const struct chunk_tables *src, size_t k)
{
    if (chunk_tables_grow(t))
        return -ENOMEM;
    size_t d = t->n_chunks - 1;
    if (!(t->tables[d] = calloc(src->n[k] ? src->n[k] : 1, sizeof *t->tables[d])))
        return -ENOMEM;
    for (size_t i = 0; i < src->n[k]; i++, t->n[d]++)
        if (!(t->tables[d][i] = strdup(src->tables[k][i])))
            return -ENOMEM;
    t->first[d] = strdup(src->first[k]);
    t->last[d] = strdup(src->last[k]);
    return t->first[d] && t->last[d] ? 0 : -ENOMEM;
}

/* Append a chunk holding files[0..n) (n > 0, in list order) to t. */
static int chunk_tables_add(struct chunk_tables *t, const struct point_file *files, size_t n)
{
    if (chunk_tables_grow(t))
        return -ENOMEM;
    size_t k = t->n_chunks - 1;
    if (!(t->first[k] = strdup(files[0].record_id)) ||
        !(t->last[k] = strdup(files[n - 1].record_id)))
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *name = files[i].table ? files[i].table : "";
        if (t->n[k] && strcmp(t->tables[k][t->n[k] - 1], name) == 0)
            continue;
        char **v = realloc(t->tables[k], (t->n[k] + 1) * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->tables[k] = v;
        if (!(v[t->n[k]] = strdup(name)))
            return -ENOMEM;
        t->n[k]++;
    }
    return 0;
}

/* The tables each chunk of the previous point's list holds (the list is in table order, so a
 * table's files are in the run of chunks that name it): a reader of one table loads only those.
 * From the memo when this process wrote that list, else read once from every chunk. */
int repo_chunk_tables_read(struct repo_capture *c, struct dverr *err)
{
    const struct point *p = c->prev;
    struct repo *r = c->r;
    if (!p->files_chunked || !p->n_files_chunks)
        return 0;
    pthread_mutex_lock(&r->shared_mu);
    if (strcmp(r->files_memo.index, p->files_object) == 0 &&
        r->files_memo.n_chunks == p->n_files_chunks) {
        c->prev_tables = r->files_memo;
        r->files_memo = (struct chunk_tables){0};
    }
    pthread_mutex_unlock(&r->shared_mu);
    if (c->prev_tables.n_chunks)
        return 0;
    int rc = 0;
    for (size_t k = 0; k < p->n_files_chunks && !rc; k++) {
        struct point *chunk = NULL;
        if ((rc = repo_files_chunk_load(r, p, k, c->prev->files_chunk_counts[k], &chunk, err)))
            break;
        if (chunk_tables_add(&c->prev_tables, chunk->files, chunk->n_files))
            rc = dverr_set(err, -ENOMEM, "out of memory");
        point_free(chunk);
    }
    return rc;
}

/* ---------- the previous point's files of one table ---------- */

struct repo_files_reader {
    struct repo_capture *c;
    char *table;
    size_t next_chunk;               /* format 3: the next chunk to look in */
    struct point *chunk;             /* format 3: the chunk being read */
    size_t at;
    const struct point_file **mem;   /* formats 1 and 2: the table's files, by record id */
    size_t n_mem, mem_at;
};

static int cmp_mem_file(const void *a, const void *b)
{
    const struct point_file *x = *(const struct point_file *const *)a,
                            *y = *(const struct point_file *const *)b;
    int c = strcmp(x->record_id, y->record_id);
    return c ? c : (x > y) - (x < y); /* the list's order within a record */
}

int repo_prev_files_open(struct repo_capture *c, const char *table, struct repo_files_reader **out,
                         struct dverr *err)
{
    struct repo_files_reader *rd = calloc(1, sizeof *rd);
    *out = NULL;
    if (!rd || !(rd->table = strdup(table))) {
        free(rd);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    rd->c = c;
    const struct point *p = c->prev;
    size_t n = 0;
    for (size_t i = 0; p && i < p->n_files; i++)
        n += p->files[i].table && strcmp(p->files[i].table, table) == 0;
    if (n && !(rd->mem = malloc(n * sizeof *rd->mem))) {
        repo_files_reader_free(rd);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; n && i < p->n_files; i++)
        if (p->files[i].table && strcmp(p->files[i].table, table) == 0)
            rd->mem[rd->n_mem++] = &p->files[i];
    if (n)
        qsort(rd->mem, rd->n_mem, sizeof *rd->mem, cmp_mem_file);
    *out = rd;
    return 0;
}

/* true when chunk k of the previous list holds files of table. */
static bool chunk_has_table(const struct repo_capture *c, size_t k, const char *table)
{
    for (size_t i = 0; i < c->prev_tables.n[k]; i++)
        if (strcmp(c->prev_tables.tables[k][i], table) == 0)
            return true;
    return false;
}

int repo_files_reader_next(struct repo_files_reader *rd, const struct point_file **f,
                           struct dverr *err)
{
    *f = NULL;
    if (rd->mem || !rd->c->prev_tables.n_chunks) {
        if (rd->mem_at >= rd->n_mem)
            return 0;
        *f = rd->mem[rd->mem_at++];
        return 1;
    }
    const struct point *p = rd->c->prev;
    for (;;) {
        if (rd->chunk && rd->at < rd->chunk->n_files) {
            const struct point_file *x = &rd->chunk->files[rd->at++];
            int cmp = strcmp(x->table, rd->table);
            if (cmp == 0) {
                *f = x;
                return 1;
            }
            if (cmp > 0) /* past the table: the list is in table order */
                rd->next_chunk = p->n_files_chunks;
            else
                continue;
        }
        point_free(rd->chunk);
        rd->chunk = NULL;
        rd->at = 0;
        while (rd->next_chunk < p->n_files_chunks &&
               !chunk_has_table(rd->c, rd->next_chunk, rd->table))
            rd->next_chunk++;
        if (rd->next_chunk >= p->n_files_chunks)
            return 0;
        size_t k = rd->next_chunk++;
        int rc = repo_files_chunk_load(rd->c->r, p, k, rd->c->prev->files_chunk_counts[k], &rd->chunk, err);
        if (rc)
            return rc;
        /* the table's chunks follow each other: the first without it ends the search */
        if (rd->next_chunk < p->n_files_chunks &&
            !chunk_has_table(rd->c, rd->next_chunk, rd->table))
            rd->next_chunk = p->n_files_chunks;
    }
}

void repo_files_reader_free(struct repo_files_reader *rd)
{
    if (!rd)
        return;
    point_free(rd->chunk);
    free(rd->mem);
    free(rd->table);
    free(rd);
}

/* true when base names the chunk id (it is stored: base's point exists). */
static bool base_has_chunk(const struct point *base, size_t at, const char *id)
{
    if (!base)
        return false;
    if (at < base->n_files_chunks && strcmp(base->files_chunks[at], id) == 0)
        return true; /* the common case: the same chunk at the same place */
    for (size_t k = 0; k < base->n_files_chunks; k++)
        if (strcmp(base->files_chunks[k], id) == 0)
            return true;
    return false;
}

/* A file list being written chunk by chunk (filelist_writer): each chunk rendered, stored unless
 * base names it, its id and count kept for the index; with object_lock, each file's blob locked
 * until lock_until as it passes (the point's other objects: repo_point_lock at commit). */
struct files_out {
    struct repo *r;
    const struct point *base;
    time_t lock_until;
    struct filelist_writer *w;
    char (*ids)[65];
    size_t *counts, n, cap, total;
    size_t carried;             /* chunks of base carried by id, not read (carry_chunks) */
    struct buf doc;
    struct chunk_tables tables; /* what each chunk holds (the memo of the next capture) */
    struct dverr err;
};

/* Room for one more chunk id. */
static int files_out_room(struct files_out *o)
{
    size_t cap = o->cap ? 2 * o->cap : 64;
    char(*v)[65] = realloc(o->ids, cap * sizeof *o->ids);
    if (v)
        o->ids = v;
    size_t *c = v ? realloc(o->counts, cap * sizeof *o->counts) : NULL;
    if (c)
        o->counts = c;
    if (!v || !c)
        return dverr_set(&o->err, -ENOMEM, "out of memory");
    o->cap = cap;
    return 0;
}

static int files_out_emit(void *ctx, const struct point_file *files, size_t n)
{
    struct files_out *o = ctx;
    int rc = o->n == o->cap ? files_out_room(o) : 0;
    if (rc)
        return rc;
    buf_reset(&o->doc);
    rc = filelist_render_chunk(files, n, &o->doc);
    if (rc)
        return dverr_set(&o->err, rc, "out of memory");
    repo_blob_id(o->r, o->doc.data, o->doc.len, o->ids[o->n]);
    if (!base_has_chunk(o->base, o->n, o->ids[o->n]) &&
        (rc = repo_blob_put(o->r, o->doc.data, o->doc.len, o->ids[o->n], &o->err)))
        return rc;
    for (size_t i = 0; i < n && !rc; i++)
        rc = files[i].blob ? repo_object_lock(o->r, files[i].blob, o->lock_until, &o->err) : 0;
    if (!rc && chunk_tables_add(&o->tables, files, n))
        rc = dverr_set(&o->err, -ENOMEM, "out of memory");
    o->counts[o->n++] = n;
    o->total += n;
    return rc;
}

static int files_out_new(struct repo *r, const struct point *base, time_t lock_until,
                         struct files_out **out, struct dverr *err)
{
    struct files_out *o = calloc(1, sizeof *o);
    *out = NULL;
    if (!o)
        return dverr_set(err, -ENOMEM, "out of memory");
    *o = (struct files_out){.r = r, .base = base, .lock_until = lock_until, .doc = BUF_INIT};
    if (filelist_writer_new(files_out_emit, o, &o->w)) {
        free(o);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    *out = o;
    return 0;
}

void repo_files_out_free(struct files_out *o)
{
    if (!o)
        return;
    filelist_writer_free(o->w);
    chunk_tables_release(&o->tables);
    free(o->ids);
    free(o->counts);
    buf_release(&o->doc);
    free(o);
}

/* The writer's error (its message in o->err) as the caller's. */
static int files_out_failed(struct files_out *o, int rc, struct dverr *err)
{
    return dverr_set(err, rc, "%s", o->err.msg[0] ? dverr_msg(&o->err) : strerror(-rc));
}

static int files_out_add(struct files_out *o, const struct point_file *f, struct dverr *err)
{
    int rc = filelist_writer_add(o->w, f);
    return rc ? files_out_failed(o, rc, err) : 0;
}

/* The last chunk, then the index: its id into files_id, the chunks' into *chunks. */
static int files_out_finish(struct files_out *o, char files_id[65], char ***chunks,
                            size_t *n_chunks, struct dverr *err)
{
    *chunks = NULL;
    *n_chunks = 0;
    int rc = filelist_writer_finish(o->w);
    if (rc)
        return files_out_failed(o, rc, err);
    buf_reset(&o->doc);
    if ((rc = filelist_render_index(o->ids, o->counts, o->n, &o->doc)))
        return dverr_set(err, rc, "out of memory");
    if ((rc = repo_blob_put(o->r, o->doc.data, o->doc.len, files_id, err)))
        return rc;
    char **v = calloc(o->n ? o->n : 1, sizeof *v);
    if (!v)
        return dverr_set(err, -ENOMEM, "out of memory");
    for (size_t k = 0; k < o->n; k++)
        if (!(v[k] = strdup(o->ids[k]))) {
            strv_free(v, k);
            return dverr_set(err, -ENOMEM, "out of memory");
        }
    *chunks = v;
    *n_chunks = o->n;
    return 0;
}

int repo_point_shared_put(struct repo *r, const struct point *p, const struct point *base,
                          char tables_id[65], char files_id[65], char ***chunks, size_t *n_chunks,
                          struct dverr *err)
{
    struct buf doc = BUF_INIT;
    struct files_out *o = NULL;
    *chunks = NULL;
    *n_chunks = 0;
    int rc = manifest_render_tables(p, &doc, err);
    if (!rc)
        rc = repo_blob_put(r, doc.data, doc.len, tables_id, err);
    buf_release(&doc);
    if (!rc)
        rc = files_out_new(r, base, 0, &o, err);
    for (size_t i = 0; !rc && i < p->n_files; i++)
        rc = files_out_add(o, &p->files[i], err);
    if (!rc)
        rc = files_out_finish(o, files_id, chunks, n_chunks, err);
    repo_files_out_free(o);
    return rc;
}

int repo_capture_files_begin(struct repo_capture *c, time_t lock_until, struct dverr *err)
{
    repo_files_out_free(c->files);
    c->files = NULL;
    c->files_named = false;
    return files_out_new(c->r, c->prev, lock_until, &c->files, err);
}

int repo_capture_files_add(struct repo_capture *c, const struct point_file *f, struct dverr *err)
{
    return files_out_add(c->files, f, err);
}

int repo_capture_files_finish(struct repo_capture *c, struct point *p, size_t *n_files,
                              struct dverr *err)
{
    char fid[65], **chunks;
    size_t n_chunks;
    int rc = files_out_finish(c->files, fid, &chunks, &n_chunks, err);
    if (rc)
        return rc;
    *n_files = c->files->total;
    log_debug("%s: file list of %zu files in %zu chunks, %zu of them carried by id unread",
              c->env, c->files->total, n_chunks, c->files->carried);
    chunk_tables_release(&c->new_tables);
    c->new_tables = c->files->tables;
    c->files->tables = (struct chunk_tables){0};
    snprintf(c->new_tables.index, sizeof c->new_tables.index, "%s", fid);
    repo_files_out_free(c->files);
    c->files = NULL;
    free(p->files_object);
    strv_free(p->files_chunks, p->n_files_chunks);
    p->files_chunks = chunks;
    p->n_files_chunks = n_chunks;
    p->files_chunked = true;
    if (!(p->files_object = strdup(fid)))
        return dverr_set(err, -ENOMEM, "out of memory");
    c->files_named = true;
    return 0;
}

/* ---------- carrying a table's unchanged chunks by id ---------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* true when a record id in the sorted v[0..n) lies in [lo, hi]. */
static bool any_in_range(char *const *v, size_t n, const char *lo, const char *hi)
{
    size_t a = 0, b = n; /* the first >= lo */
    while (a < b) {
        size_t m = a + (b - a) / 2;
        if (strcmp(v[m], lo) < 0)
            a = m + 1;
        else
            b = m;
    }
    return a < n && strcmp(v[a], hi) <= 0;
}

/* true when the list being written stands where chunk k of the previous list starts: nothing
 * pending and the last chunk written is chunk k - 1 (or nothing written and k is 0); or the files
 * pending are chunk k - 1 itself (the same bytes) after chunk k - 2, and then they are cut into
 * that chunk here (the previous list was cut there, before chunk k's first file, which comes next
 * in this one too). */
static int at_chunk_start(struct files_out *o, size_t k, bool *at)
{
    const struct point *base = o->base;
    const struct point_file *pending;
    size_t n = filelist_writer_pending(o->w, &pending);
    *at = false;
    if (n == 0) {
        *at = o->n ? k > 0 && strcmp(o->ids[o->n - 1], base->files_chunks[k - 1]) == 0 : k == 0;
        return 0;
    }
    if (k == 0 || (o->n ? k < 2 || strcmp(o->ids[o->n - 1], base->files_chunks[k - 2]) != 0
                        : k != 1))
        return 0;
    char id[65];
    buf_reset(&o->doc);
    if (filelist_render_chunk(pending, n, &o->doc))
        return dverr_set(&o->err, -ENOMEM, "out of memory");
    repo_blob_id(o->r, o->doc.data, o->doc.len, id);
    if (strcmp(id, base->files_chunks[k - 1]) != 0)
        return 0;
    int rc = filelist_writer_cut(o->w);
    *at = rc == 0;
    return rc;
}

/* Before the reader loads the next chunk of its table: the chunks from there that hold only the
 * table and none of what changed (no touched record in their range, the next added file after
 * them), while the list stands at their start, go into the list by id without being read. The
 * previous list's last chunk is never carried so (it ends with the list, not at a cut); nor any
 * with object_lock on (each file's blob is locked as it passes). */
static int carry_chunks(struct repo_capture *c, struct repo_files_reader *rd,
                        const struct point_file *next_added, char *const *touched,
                        size_t n_touched)
{
    struct files_out *o = c->files;
    const struct chunk_tables *t = &c->prev_tables;
    const struct point *base = c->prev;
    if (!t->n_chunks || (c->r->object_lock && o->lock_until > 0) ||
        (rd->chunk && rd->at < rd->chunk->n_files))
        return 0;
    size_t k = rd->next_chunk;
    while (k < base->n_files_chunks && !chunk_has_table(c, k, rd->table))
        k++;
    int rc = 0;
    for (; k + 1 < base->n_files_chunks && !rc; k++) {
        bool at;
        if (t->n[k] != 1 || strcmp(t->tables[k][0], rd->table) != 0 ||
            any_in_range(touched, n_touched, t->first[k], t->last[k]) ||
            (next_added && strcmp(next_added->record_id, t->last[k]) <= 0) ||
            (rc = at_chunk_start(o, k, &at)) || !at)
            break;
        if (o->n == o->cap && (rc = files_out_room(o)))
            break;
        snprintf(o->ids[o->n], sizeof o->ids[o->n], "%s", base->files_chunks[k]);
        o->counts[o->n++] = c->prev->files_chunk_counts[k];
        o->total += c->prev->files_chunk_counts[k];
        o->carried++;
        if (chunk_tables_copy(&o->tables, t, k))
            rc = dverr_set(&o->err, -ENOMEM, "out of memory");
        point_free(rd->chunk);
        rd->chunk = NULL;
        rd->at = 0;
        rd->next_chunk = k + 1;
    }
    return rc;
}

int repo_capture_files_carry(struct repo_capture *c, const char *table,
                             const struct point_file *added, size_t n_added,
                             char *const *touched, size_t n_touched, struct dverr *err)
{
    struct repo_files_reader *rd = NULL;
    const struct point_file *pf = NULL;
    bool more = true;
    size_t i = 0;
    int rc = repo_prev_files_open(c, table, &rd, err);
    while (!rc) {
        if (!pf && more) {
            if ((rc = carry_chunks(c, rd, i < n_added ? &added[i] : NULL, touched, n_touched)))
                break;
            int r = repo_files_reader_next(rd, &pf, err);
            if (r < 0) {
                rc = r;
                break;
            }
            more = r == 1;
        }
        if (pf && n_touched &&
            bsearch(&pf->record_id, touched, n_touched, sizeof *touched, cmp_str)) {
            pf = NULL; /* the pass changed or deleted its record */
            continue;
        }
        if (!pf && i >= n_added)
            break;
        if (pf && (i >= n_added || filelist_cmp(pf, &added[i]) <= 0)) {
            rc = files_out_add(c->files, pf, err);
            pf = NULL;
        } else {
            rc = files_out_add(c->files, &added[i++], err);
        }
    }
    if (rc && c->files->err.msg[0])
        rc = files_out_failed(c->files, rc, err);
    repo_files_reader_free(rd);
    return rc;
}
