/* filelist: cutting a point's file list into content-addressed chunks, and the index that names
 * them (format and limits in filelist.h). Chunks are rendered by hand (no JSON tree: a list of
 * 200,000 files is rendered a chunk at a time in a few hundred kilobytes); the index, small, is
 * parsed with cJSON. The streaming writer holds one chunk's files (at most 2 * FILELIST_CHUNK_MAX)
 * and cuts where filelist_chunk_end would (one function decides both).
 * Thread-safe: no shared state; a writer belongs to one thread at a time. */
#include "backend/repo/filelist.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/segment.h"

static uint64_t fnv1a(uint64_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The content-defined cut: after this record's last file. */
static bool record_cuts(const struct point_file *f)
{
    uint64_t h = fnv1a(14695981039346656037ull, f->table, strlen(f->table) + 1);
    h = fnv1a(h, f->record_id, strlen(f->record_id));
    return h % FILELIST_CHUNK_AVG == 0;
}

static bool same_record(const struct point_file *a, const struct point_file *b)
{
    return strcmp(a->table, b->table) == 0 && strcmp(a->record_id, b->record_id) == 0;
}

/* The cut between a, the len-th file of its chunk, and b, the file after it: what both the
 * whole-list cut (filelist_chunk_end) and the streaming writer decide by, so they cut alike. */
static bool cut_between(const struct point_file *a, const struct point_file *b, size_t len)
{
    if (len >= 2 * FILELIST_CHUNK_MAX)
        return true; /* one record with that many files: cut inside it */
    if (same_record(a, b))
        return false;
    return record_cuts(a) || len >= FILELIST_CHUNK_MAX;
}

size_t filelist_chunk_end(const struct point_file *files, size_t n, size_t from)
{
    for (size_t i = from; i + 1 < n; i++)
        if (cut_between(&files[i], &files[i + 1], i + 1 - from))
            return i + 1;
    return n;
}

struct filelist_writer {
    int (*emit)(void *ctx, const struct point_file *files, size_t n);
    void *ctx;
    struct point_file *pending; /* the chunk being gathered; strings in the arena */
    size_t n, cap;
    struct arena strings;
};

int filelist_writer_new(int (*emit)(void *ctx, const struct point_file *files, size_t n),
                        void *ctx, struct filelist_writer **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out)
        return -ENOMEM;
    (*out)->emit = emit;
    (*out)->ctx = ctx;
    return 0;
}

static int writer_flush(struct filelist_writer *w)
{
    int rc = w->n ? w->emit(w->ctx, w->pending, w->n) : 0;
    w->n = 0;
    arena_release(&w->strings);
    return rc;
}

static char *arena_str(struct arena *a, const char *s)
{
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

int filelist_writer_add(struct filelist_writer *w, const struct point_file *f)
{
    int rc;
    if (w->n && cut_between(&w->pending[w->n - 1], f, w->n) && (rc = writer_flush(w)))
        return rc;
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 2 * FILELIST_CHUNK_AVG;
        struct point_file *v = realloc(w->pending, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        w->pending = v;
        w->cap = cap;
    }
    struct point_file *c = &w->pending[w->n];
    *c = (struct point_file){arena_str(&w->strings, f->table),
                             arena_str(&w->strings, f->record_id),
                             arena_str(&w->strings, f->column),
                             arena_str(&w->strings, f->file_name),
                             arena_str(&w->strings, f->blob), f->size};
    if ((f->table && !c->table) || (f->record_id && !c->record_id) || (f->column && !c->column) ||
        (f->file_name && !c->file_name) || (f->blob && !c->blob))
        return -ENOMEM;
    w->n++;
    return 0;
}

int filelist_writer_finish(struct filelist_writer *w)
{
    return writer_flush(w);
}

size_t filelist_writer_pending(const struct filelist_writer *w, const struct point_file **files)
{
    *files = w->pending;
    return w->n;
}

int filelist_writer_cut(struct filelist_writer *w)
{
    return writer_flush(w);
}

int filelist_cmp(const struct point_file *x, const struct point_file *y)
{
    int c = strcmp(x->table, y->table);
    if (!c)
        c = strcmp(x->record_id, y->record_id);
    if (!c)
        c = strcmp(x->column ? x->column : "", y->column ? y->column : "");
    if (!c)
        c = strcmp(x->file_name, y->file_name);
    return c ? c : strcmp(x->blob, y->blob);
}

void filelist_writer_free(struct filelist_writer *w)
{
    if (!w)
        return;
    arena_release(&w->strings);
    free(w->pending);
    free(w);
}

static int add_member(struct buf *out, const char *key, const char *v)
{
    int rc = buf_printf(out, ",\"%s\":", key);
    if (!rc)
        rc = v ? buf_add_json_string(out, v, strlen(v)) : buf_addstr(out, "null");
    return rc;
}

int filelist_render_chunk(const struct point_file *files, size_t n, struct buf *out)
{
    int rc = buf_addch(out, '[');
    for (size_t i = 0; i < n && !rc; i++) {
        const struct point_file *f = &files[i];
        rc = buf_addstr(out, i ? ",{\"table\":" : "{\"table\":");
        if (!rc)
            rc = buf_add_json_string(out, f->table, strlen(f->table));
        if (!rc)
            rc = add_member(out, "record_id", f->record_id);
        if (!rc)
            rc = add_member(out, "column", f->column);
        if (!rc)
            rc = add_member(out, "file_name", f->file_name);
        if (!rc)
            rc = add_member(out, "blob", f->blob);
        if (!rc)
            rc = buf_printf(out, ",\"size\":%llu}", (unsigned long long)f->size);
    }
    return rc ? rc : buf_addstr(out, "]\n");
}

int filelist_render_index(char (*ids)[65], const size_t *counts, size_t n, struct buf *out)
{
    size_t total = 0;
    for (size_t k = 0; k < n; k++)
        total += counts[k];
    int rc = buf_printf(out, "{\"files\":%zu,\"chunks\":[", total);
    for (size_t k = 0; k < n && !rc; k++)
        rc = buf_printf(out, "%s{\"id\":\"%s\",\"files\":%zu}", k ? "," : "", ids[k], counts[k]);
    return rc ? rc : buf_addstr(out, "]}\n");
}

static bool count_of(const cJSON *o, const char *key, size_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < 0 || d > 9007199254740992.0 || floor(d) != d)
        return false;
    *out = (size_t)d;
    return true;
}

int filelist_parse_index(const char *json, size_t len, char ***ids, size_t **counts, size_t *n,
                         size_t *total, struct dverr *err)
{
    *ids = NULL;
    *counts = NULL;
    *n = *total = 0;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    const cJSON *chunks = cJSON_GetObjectItemCaseSensitive(root, "chunks"), *c;
    size_t want = 0, sum = 0;
    int rc = 0;
    if (!cJSON_IsObject(root) || !cJSON_IsArray(chunks) || !count_of(root, "files", &want)) {
        rc = dverr_set(err, -EIO, "the file list's index is not one");
        goto out;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(chunks);
    *ids = calloc(cnt ? cnt : 1, sizeof **ids);
    *counts = calloc(cnt ? cnt : 1, sizeof **counts);
    if (!*ids || !*counts) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    cJSON_ArrayForEach(c, chunks)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(c, "id");
        size_t k = *n;
        if (!cJSON_IsString(id) || !segment_id_ok(id->valuestring) ||
            !count_of(c, "files", &(*counts)[k]) || (*counts)[k] == 0) {
            rc = dverr_set(err, -EIO, "a chunk of the file list's index is damaged");
            goto out;
        }
        if (!((*ids)[k] = strdup(id->valuestring))) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        sum += (*counts)[k];
        (*n)++;
    }
    if (sum != want)
        rc = dverr_set(err, -EIO, "the file list's index does not add up (%zu files, %zu named)",
                       sum, want);
    *total = sum;
out:
    cJSON_Delete(root);
    if (rc) {
        strv_free(*ids, *n);
        free(*counts);
        *ids = NULL;
        *counts = NULL;
        *n = *total = 0;
    }
    return rc;
}
