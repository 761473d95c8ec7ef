/* filelist: cutting a point's file list into content-addressed chunks, and the index that names
 * them (format and limits in filelist.h). Chunks are rendered by hand (no JSON tree: a list of
 * 200,000 files is rendered a chunk at a time in a few hundred kilobytes); the index, small, is
 * parsed with cJSON. Thread-safe: no shared state. */
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

size_t filelist_chunk_end(const struct point_file *files, size_t n, size_t from)
{
    for (size_t i = from; i + 1 < n; i++) {
        size_t len = i + 1 - from;
        if (len >= 2 * FILELIST_CHUNK_MAX)
            return i + 1; /* one record with that many files: cut inside it */
        if (same_record(&files[i], &files[i + 1]))
            continue;
        if (record_cuts(&files[i]) || len >= FILELIST_CHUNK_MAX)
            return i + 1;
    }
    return n;
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
