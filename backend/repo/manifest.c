/* manifest: restore-point manifests, the shared tables and files documents of format 2, and
 * backup.json (formats in manifest.h and docs/architecture.md sections 3 and 4).
 * cJSON for our own small documents; every add is checked (cJSON adds that fail do not take
 * ownership, so the item is freed here). Thread-safe: no shared state (no cJSON_GetErrorPtr). */
#include "backend/repo/manifest.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/segment.h"

bool manifest_env_name_ok(const char *env)
{
    if (!env || !*env || env[0] == '.' || strlen(env) > 200)
        return false;
    for (const char *p = env; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int manifest_object_name(const char *env, const char *name, char *out, size_t n)
{
    time_t t;
    if (!manifest_env_name_ok(env) || !name || point_name_to_time(name, &t) != 0)
        return -EINVAL;
    if (snprintf(out, n, "points/%s/%s.json", env, name) >= (int)n)
        return -ENAMETOOLONG;
    return 0;
}

/* ---- rendering ---- */

static bool add(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return false;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return false;
    }
    return true;
}
static bool add_str(cJSON *obj, const char *key, const char *s)
{
    return add(obj, key, s ? cJSON_CreateString(s) : cJSON_CreateNull());
}
static bool add_num(cJSON *obj, const char *key, uint64_t v)
{
    return add(obj, key, cJSON_CreateNumber((double)v));
}
/* Embedded JSON documents are kept as their exact text (a JSON string member), so numbers the
 * service sent survive byte for byte; they must parse. */
static bool add_json_text(cJSON *obj, const char *key, const char *json)
{
    if (!json)
        return add(obj, key, cJSON_CreateNull());
    cJSON *v = cJSON_ParseWithLengthOpts(json, strlen(json) + 1, NULL, 1);
    if (!v)
        return false;
    cJSON_Delete(v);
    return add(obj, key, cJSON_CreateString(json));
}

/* The fields of a table that stay the same while the table does not change: format 2 keeps
 * them in the shared tables document. */
static bool add_table_stable(cJSON *o, const struct point_table *t)
{
    cJSON *segs = NULL, *sz = NULL;
    bool ok = add_str(o, "name", t->name) && add_str(o, "entity_set", t->entity_set) &&
              add_str(o, "primary_key", t->primary_key) && add_num(o, "records", t->records) &&
              add_num(o, "bytes", t->bytes) && add(o, "segments", segs = cJSON_CreateArray());
    for (size_t k = 0; ok && k < t->n_segments; k++) {
        cJSON *s = cJSON_CreateString(t->segments[k]);
        ok = s && cJSON_AddItemToArray(segs, s);
        if (!ok)
            cJSON_Delete(s);
    }
    bool sizes = t->segment_sizes && t->n_segments;
    for (size_t k = 0; sizes && k < t->n_segments; k++)
        sizes = t->segment_sizes[k] > 0;
    if (ok && sizes)
        ok = add(o, "segment_bytes", sz = cJSON_CreateArray());
    for (size_t k = 0; ok && sizes && k < t->n_segments; k++) {
        cJSON *n = cJSON_CreateNumber((double)t->segment_sizes[k]);
        ok = n && cJSON_AddItemToArray(sz, n);
        if (!ok)
            cJSON_Delete(n);
    }
    return ok && add_str(o, "schema", t->schema) && add_str(o, "delta_link", t->delta_link) &&
           add_str(o, "full_read_reason", t->full_read_reason);
}

/* What this point did to the table (format 2: in the manifest, for changed tables only). */
static bool add_table_change(cJSON *o, const struct point_table *t)
{
    return add_str(o, "delta", t->delta) && add_num(o, "created", t->created) &&
           add_num(o, "updated", t->updated) && add_num(o, "deleted", t->deleted) &&
           add_num(o, "changes_bytes", t->changes_bytes);
}

/* A table this point changed: anything but the defaults of an untouched table. */
static bool table_changed(const struct point_table *t)
{
    return t->delta || t->created || t->updated || t->deleted ||
           t->changes_bytes != MANIFEST_EMPTY_CHANGES;
}

/* Append an object to arr; NULL when out of memory. */
static cJSON *add_object(cJSON *arr)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool add_files(cJSON *arr, const struct point *p)
{
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        cJSON *o = add_object(arr);
        ok = o && add_str(o, "table", f->table) && add_str(o, "record_id", f->record_id) &&
             add_str(o, "column", f->column) && add_str(o, "file_name", f->file_name) &&
             add_str(o, "blob", f->blob) && add_num(o, "size", f->size);
    }
    return ok;
}

/* root (or NULL when rendering failed) as one line into out; frees root. */
static int print_doc(cJSON *root, bool ok, const struct point *p, struct buf *out,
                     struct dverr *err)
{
    char *text = ok && root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return dverr_set(err, ok ? -ENOMEM : -EINVAL,
                         "cannot render the manifest of %s/%s (bad embedded JSON or no memory)",
                         p->env ? p->env : "?", p->name ? p->name : "?");
    int rc = buf_addstr(out, text);
    if (!rc)
        rc = buf_addch(out, '\n');
    free(text);
    return rc ? dverr_set(err, rc, "out of memory") : 0;
}

int manifest_render(const struct point *p, struct buf *out, struct dverr *err)
{
    bool shared = p->tables_object && p->files_object;
    cJSON *root = cJSON_CreateObject(), *tables = NULL, *files = NULL;
    bool ok = root && add_num(root, "format", !shared ? 1 : p->files_chunked ? 3 : 2) && add_str(root, "env", p->env) &&
              add_str(root, "name", p->name) && add_str(root, "kind", p->kind ? p->kind : "system") &&
              add_str(root, "label", p->label) && add_num(root, "taken_at", (uint64_t)p->taken_at) &&
              add_num(root, "expires_at", (uint64_t)(p->expires_at > 0 ? p->expires_at : 0));
    if (shared) {
        ok = ok && add_str(root, "tables_object", p->tables_object) &&
             add_str(root, p->files_chunked ? "files_index" : "files_object", p->files_object) &&
             add(root, "changes", tables = cJSON_CreateArray());
        for (size_t i = 0; ok && i < p->n_tables; i++) {
            if (!table_changed(&p->tables[i]))
                continue;
            cJSON *o = add_object(tables);
            ok = o && add_str(o, "name", p->tables[i].name) && add_table_change(o, &p->tables[i]);
        }
    } else {
        ok = ok && add(root, "tables", tables = cJSON_CreateArray());
        for (size_t i = 0; ok && i < p->n_tables; i++) {
            cJSON *o = add_object(tables);
            ok = o && add_table_stable(o, &p->tables[i]) && add_table_change(o, &p->tables[i]);
        }
        ok = ok && add(root, "files", files = cJSON_CreateArray()) && add_files(files, p);
    }
    ok = ok && add_json_text(root, "not_captured", p->not_captured_json) &&
         add_json_text(root, "environment", p->env_json) &&
         add_str(root, "audit_table", p->audit_table) &&
         (!p->anomaly_json || add_json_text(root, "anomaly", p->anomaly_json)) &&
         (!p->definitions || (add_str(root, "definitions", p->definitions) &&
                              add_str(root, "metadata_stamp", p->metadata_stamp)));
    return print_doc(root, ok, p, out, err);
}

int manifest_render_tables(const struct point *p, struct buf *tables, struct dverr *err)
{
    cJSON *t = cJSON_CreateArray();
    bool ok = t != NULL;
    for (size_t i = 0; ok && i < p->n_tables; i++) {
        cJSON *o = add_object(t);
        ok = o && add_table_stable(o, &p->tables[i]);
    }
    return print_doc(t, ok, p, tables, err);
}

/* ---- parsing ---- */

struct pctx {
    struct dverr *err;
    int rc;
    const char *where;
    struct point *pool; /* non-NULL: strings go to pool->files_strings (format-3 chunks) */
};

static int bad(struct pctx *c, const char *what)
{
    if (!c->rc)
        c->rc = dverr_set(c->err, -EIO, "damaged manifest %s: %s", c->where, what);
    return c->rc;
}

/* Optional string member: NULL when null/absent; required ones complain. */
static char *get_str(struct pctx *c, const cJSON *o, const char *key, bool required)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) {
            char m[96];
            snprintf(m, sizeof m, "\"%s\" missing", key);
            bad(c, m);
        }
        return NULL;
    }
    if (!cJSON_IsString(v) || !v->valuestring) {
        char m[96];
        snprintf(m, sizeof m, "\"%s\" is not a string", key);
        bad(c, m);
        return NULL;
    }
    char *s = c->pool ? arena_strndup(&c->pool->files_strings, v->valuestring, strlen(v->valuestring))
                      : strdup(v->valuestring);
    if (!s && !c->rc)
        c->rc = dverr_set(c->err, -ENOMEM, "out of memory");
    return s;
}

static uint64_t get_num(struct pctx *c, const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return 0;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (d < 0 || d > 9007199254740992.0 || floor(d) != d) {
        char m[96];
        snprintf(m, sizeof m, "\"%s\" is not a count", key);
        bad(c, m);
        return 0;
    }
    return (uint64_t)d;
}

/* An embedded document (stored as its text): it must itself be valid JSON, since backup.json
 * embeds it verbatim and render re-checks it (a manifest that parses must render). */
static char *get_json_text(struct pctx *c, const cJSON *o, const char *key)
{
    char *s = get_str(c, o, key, false);
    if (s) {
        cJSON *v = cJSON_ParseWithLengthOpts(s, strlen(s) + 1, NULL, 1);
        if (!v)
            bad(c, "an embedded document is not valid JSON");
        cJSON_Delete(v);
    }
    return s;
}

static char *get_id(struct pctx *c, const cJSON *o, const char *key)
{
    char *s = get_str(c, o, key, false);
    if (s && !segment_id_ok(s)) {
        char m[96];
        snprintf(m, sizeof m, "\"%s\" is not an object id", key);
        bad(c, m);
    }
    return s;
}

/* The stable fields of a table entry (both formats). */
static void parse_table_stable(struct pctx *c, const cJSON *o, struct point_table *pt)
{
    pt->name = get_str(c, o, "name", true);
    pt->entity_set = get_str(c, o, "entity_set", false);
    pt->primary_key = get_str(c, o, "primary_key", false);
    pt->records = get_num(c, o, "records");
    pt->bytes = get_num(c, o, "bytes");
    pt->schema = get_id(c, o, "schema");
    pt->delta_link = get_str(c, o, "delta_link", false);
    pt->full_read_reason = get_str(c, o, "full_read_reason", false);
    const cJSON *segs = cJSON_GetObjectItemCaseSensitive(o, "segments");
    if (!cJSON_IsArray(segs)) {
        bad(c, "\"segments\" is not an array");
        return;
    }
    size_t ns = (size_t)cJSON_GetArraySize(segs);
    if (!(pt->segments = calloc(ns ? ns : 1, sizeof *pt->segments))) {
        c->rc = c->rc ? c->rc : dverr_set(c->err, -ENOMEM, "out of memory");
        return;
    }
    const cJSON *s;
    cJSON_ArrayForEach(s, segs)
    {
        if (!cJSON_IsString(s) || !segment_id_ok(s->valuestring)) {
            bad(c, "a segment id is not an object id");
            return;
        }
        if (!(pt->segments[pt->n_segments] = strdup(s->valuestring))) {
            c->rc = c->rc ? c->rc : dverr_set(c->err, -ENOMEM, "out of memory");
            return;
        }
        pt->n_segments++;
    }
    const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(o, "segment_bytes");
    if (!sizes || cJSON_IsNull(sizes))
        return;
    if (!cJSON_IsArray(sizes) || (size_t)cJSON_GetArraySize(sizes) != pt->n_segments) {
        bad(c, "\"segment_bytes\" does not match \"segments\"");
        return;
    }
    if (!(pt->segment_sizes = calloc(pt->n_segments ? pt->n_segments : 1,
                                     sizeof *pt->segment_sizes))) {
        c->rc = c->rc ? c->rc : dverr_set(c->err, -ENOMEM, "out of memory");
        return;
    }
    size_t k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, sizes)
    {
        double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
        if (d < 1 || d > 9007199254740992.0 || floor(d) != d) {
            bad(c, "a segment size is not a count");
            return;
        }
        pt->segment_sizes[k++] = (uint64_t)d;
    }
}

/* What the point did to a table (both formats). */
static void parse_table_change(struct pctx *c, const cJSON *o, struct point_table *pt)
{
    pt->delta = get_id(c, o, "delta");
    pt->created = get_num(c, o, "created");
    pt->updated = get_num(c, o, "updated");
    pt->deleted = get_num(c, o, "deleted");
    pt->changes_bytes = get_num(c, o, "changes_bytes");
}

/* An array member of objects: each parsed by fn into a new element of *v (elem bytes each). */
static void parse_array(struct pctx *c, const cJSON *root, const char *key, bool required,
                        void **v, size_t *n, size_t elem,
                        void (*fn)(struct pctx *c, const cJSON *o, void *out))
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, key);
    char m[96];
    if (c->rc || (!arr && !required))
        return;
    if (!cJSON_IsArray(arr)) {
        snprintf(m, sizeof m, "\"%s\" is not an array", key);
        bad(c, m);
        return;
    }
    size_t cnt = (size_t)cJSON_GetArraySize(arr);
    if (!(*v = calloc(cnt ? cnt : 1, elem))) {
        c->rc = dverr_set(c->err, -ENOMEM, "out of memory");
        return;
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        if (c->rc)
            return;
        if (!cJSON_IsObject(o)) {
            snprintf(m, sizeof m, "an element of \"%s\" is not an object", key);
            bad(c, m);
            return;
        }
        fn(c, o, (char *)*v + elem * (*n)++);
    }
}

static void parse_table_v1(struct pctx *c, const cJSON *o, void *out)
{
    parse_table_stable(c, o, out);
    parse_table_change(c, o, out);
}

static void parse_table_shared(struct pctx *c, const cJSON *o, void *out)
{
    parse_table_stable(c, o, out);
}

static void parse_change(struct pctx *c, const cJSON *o, void *out)
{
    struct point_table *pt = out;
    pt->name = get_str(c, o, "name", true);
    parse_table_change(c, o, pt);
}

/* A pooled point's table and column names repeat file after file: kept once (the previous
 * file's string when they are the same). */
static char *get_repeated(struct pctx *c, const cJSON *o, const char *key, bool required,
                          const char *last)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (last && cJSON_IsString(v) && v->valuestring && strcmp(v->valuestring, last) == 0)
        return (char *)last;
    return get_str(c, o, key, required);
}

static void parse_file(struct pctx *c, const cJSON *o, void *out)
{
    struct point_file *f = out;
    const struct point_file *last = c->pool && f != c->pool->files ? f - 1 : NULL;
    f->table = get_repeated(c, o, "table", true, last ? last->table : NULL);
    f->record_id = get_str(c, o, "record_id", true);
    f->column = get_repeated(c, o, "column", false, last ? last->column : NULL);
    f->file_name = get_str(c, o, "file_name", true);
    f->blob = get_id(c, o, "blob");
    if (!f->blob && !c->rc)
        bad(c, "a file has no blob");
    f->size = get_num(c, o, "size");
}

int manifest_parse(const char *json, size_t len, struct point **out, struct dverr *err)
{
    *out = NULL;
    struct pctx c = {err, 0, "(point)", NULL};
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return dverr_set(err, -EIO, "damaged manifest: not a JSON object");
    }
    struct point *p = calloc(1, sizeof *p);
    if (!p) {
        cJSON_Delete(root);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    uint64_t format = get_num(&c, root, "format");
    if (format < 1 || format > 3)
        bad(&c, "unknown format");
    p->env = get_str(&c, root, "env", true);
    p->name = get_str(&c, root, "name", true);
    char where[300];
    snprintf(where, sizeof where, "%s/%s", p->env ? p->env : "?", p->name ? p->name : "?");
    c.where = where;
    time_t t;
    if (!c.rc && (!manifest_env_name_ok(p->env) || point_name_to_time(p->name, &t) != 0))
        bad(&c, "bad environment or point name");
    p->kind = get_str(&c, root, "kind", true);
    if (p->kind && strcmp(p->kind, "system") != 0 && strcmp(p->kind, "manual") != 0)
        bad(&c, "bad kind");
    p->label = get_str(&c, root, "label", false);
    p->taken_at = (time_t)get_num(&c, root, "taken_at");
    p->expires_at = (time_t)get_num(&c, root, "expires_at");
    if (format >= 2) { /* the tables and files are in shared objects: manifest_parse_shared */
        p->files_chunked = format == 3;
        p->tables_object = get_id(&c, root, "tables_object");
        p->files_object = get_id(&c, root, p->files_chunked ? "files_index" : "files_object");
        if (!c.rc && (!p->tables_object || !p->files_object))
            bad(&c, "a shared object is missing");
        parse_array(&c, root, "changes", true, (void **)&p->tables, &p->n_tables,
                    sizeof *p->tables, parse_change);
    } else {
        parse_array(&c, root, "tables", true, (void **)&p->tables, &p->n_tables,
                    sizeof *p->tables, parse_table_v1);
        parse_array(&c, root, "files", false, (void **)&p->files, &p->n_files, sizeof *p->files,
                    parse_file);
    }
    if (!c.rc) {
        p->not_captured_json = get_json_text(&c, root, "not_captured");
        p->env_json = get_json_text(&c, root, "environment");
        p->audit_table = get_str(&c, root, "audit_table", false);
        p->anomaly_json = get_json_text(&c, root, "anomaly");
        p->definitions = get_id(&c, root, "definitions");
        p->metadata_stamp = get_str(&c, root, "metadata_stamp", false);
    }
    cJSON_Delete(root);
    if (c.rc) {
        point_free(p);
        return c.rc;
    }
    *out = p;
    return 0;
}

static void table_entry_free(struct point_table *t)
{
    free(t->name);
    free(t->entity_set);
    free(t->primary_key);
    for (size_t k = 0; k < t->n_segments; k++)
        free(t->segments[k]);
    free(t->segments);
    free(t->segment_sizes);
    free(t->delta);
    free(t->schema);
    free(t->delta_link);
    free(t->full_read_reason);
}

/* Wraps a shared document (a JSON array) as {"v": ...} for parse_array. */
static cJSON *shared_doc(struct pctx *c, const char *json, size_t len, const char *what)
{
    cJSON *arr = cJSON_ParseWithLengthOpts(json, len, NULL, 0), *root = NULL;
    if (!cJSON_IsArray(arr) || !(root = cJSON_CreateObject()) ||
        !cJSON_AddItemToObject(root, "v", arr)) {
        char m[96];
        snprintf(m, sizeof m, "its %s object is not a JSON array", what);
        bad(c, m);
        cJSON_Delete(arr);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

int manifest_parse_shared(struct point *p, const char *tables, size_t tables_len,
                          const char *files, size_t files_len, struct dverr *err)
{
    char where[300];
    snprintf(where, sizeof where, "%s/%s", p->env ? p->env : "?", p->name ? p->name : "?");
    struct pctx c = {err, 0, where, NULL};
    struct point_table *all = NULL;
    size_t n_all = 0;
    cJSON *td = shared_doc(&c, tables, tables_len, "tables");
    if (td)
        parse_array(&c, td, "v", true, (void **)&all, &n_all, sizeof *all, parse_table_shared);
    cJSON_Delete(td);
    /* each change goes to its table; the others are untouched at this point */
    size_t matched = 0;
    for (size_t i = 0; i < n_all && !c.rc; i++) {
        all[i].changes_bytes = MANIFEST_EMPTY_CHANGES;
        for (size_t k = 0; k < p->n_tables; k++) {
            struct point_table *ch = &p->tables[k];
            if (!ch->name || !all[i].name || strcmp(ch->name, all[i].name) != 0)
                continue;
            all[i].delta = ch->delta;
            ch->delta = NULL;
            all[i].created = ch->created;
            all[i].updated = ch->updated;
            all[i].deleted = ch->deleted;
            all[i].changes_bytes = ch->changes_bytes;
            matched++;
            break;
        }
    }
    if (!c.rc && matched != p->n_tables)
        bad(&c, "a change names a table the point does not have");
    cJSON *fd = c.rc || p->files_chunked ? NULL : shared_doc(&c, files, files_len, "files");
    if (fd)
        parse_array(&c, fd, "v", true, (void **)&p->files, &p->n_files, sizeof *p->files,
                    parse_file);
    cJSON_Delete(fd);
    for (size_t k = 0; k < p->n_tables; k++)
        table_entry_free(&p->tables[k]);
    free(p->tables);
    p->tables = all;
    p->n_tables = n_all;
    return c.rc;
}

int manifest_parse_files_chunk(struct point *p, size_t room, const char *json, size_t len,
                               struct dverr *err)
{
    char where[300];
    snprintf(where, sizeof where, "%s/%s", p->env ? p->env : "?", p->name ? p->name : "?");
    struct pctx c = {err, 0, where, p};
    cJSON *arr = cJSON_ParseWithLengthOpts(json, len, NULL, 0);
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != room) {
        cJSON_Delete(arr);
        return bad(&c, "a chunk of its file list does not match its index");
    }
    const cJSON *o;
    cJSON_ArrayForEach(o, arr)
    {
        if (!cJSON_IsObject(o)) {
            bad(&c, "an element of a file list chunk is not an object");
            break;
        }
        parse_file(&c, o, &p->files[p->n_files++]);
        if (c.rc)
            break;
    }
    cJSON_Delete(arr);
    return c.rc;
}

void point_free(struct point *p)
{
    if (!p)
        return;
    free(p->env);
    free(p->name);
    free(p->kind);
    free(p->label);
    for (size_t i = 0; i < p->n_tables; i++)
        table_entry_free(&p->tables[i]);
    free(p->tables);
    for (size_t i = 0; !p->files_strings.blocks && i < p->n_files; i++) {
        struct point_file *f = &p->files[i];
        free(f->table);
        free(f->record_id);
        free(f->column);
        free(f->file_name);
        free(f->blob);
    }
    free(p->files);
    arena_release(&p->files_strings);
    free(p->not_captured_json);
    free(p->env_json);
    free(p->audit_table);
    free(p->tables_object);
    free(p->files_object);
    strv_free(p->files_chunks, p->n_files_chunks);
    free(p->files_chunk_counts);
    free(p->anomaly_json);
    free(p->definitions);
    free(p->metadata_stamp);
    free(p);
}

struct point *point_dup(const struct point *p)
{
    struct buf b = BUF_INIT;
    struct point *copy = NULL;
    struct point tmp = *p;
    char name[32] = "1970-01-01T000000Z";
    if (!tmp.name)
        tmp.name = name; /* render needs a name; restored below */
    tmp.tables_object = tmp.files_object = NULL; /* rendered whole (format 1) */
    tmp.files_chunked = false;
    if (manifest_render(&tmp, &b, NULL) == 0 && manifest_parse(b.data, b.len, &copy, NULL) == 0) {
        if (!p->name) {
            free(copy->name);
            copy->name = NULL;
        }
        if ((p->tables_object && !(copy->tables_object = strdup(p->tables_object))) ||
            (p->files_object && !(copy->files_object = strdup(p->files_object))) ||
            (p->n_files_chunks &&
             !(copy->files_chunks = calloc(p->n_files_chunks, sizeof *copy->files_chunks)))) {
            point_free(copy);
            copy = NULL;
        }
        for (size_t k = 0; copy && k < p->n_files_chunks; k++)
            if (!(copy->files_chunks[copy->n_files_chunks++] = strdup(p->files_chunks[k]))) {
                point_free(copy);
                copy = NULL;
            }
        if (copy) {
            copy->files_chunked = p->files_chunked;
            copy->files_later = p->files_later;
            copy->files_listed = p->files_listed;
        }
        if (copy && p->files_chunk_counts) {
            size_t n = p->n_files_chunks ? p->n_files_chunks : 1;
            if ((copy->files_chunk_counts = malloc(n * sizeof *copy->files_chunk_counts)))
                memcpy(copy->files_chunk_counts, p->files_chunk_counts,
                       p->n_files_chunks * sizeof *copy->files_chunk_counts);
            else {
                point_free(copy);
                copy = NULL;
            }
        }
    }
    buf_release(&b);
    return copy;
}

/* ---- backup.json ---- */

static int add_kv_str(struct buf *out, const char *indent, const char *key, const char *v, bool comma)
{
    int rc = buf_printf(out, "%s\"%s\": ", indent, key);
    if (!rc)
        rc = v ? buf_add_json_string(out, v, strlen(v)) : buf_addstr(out, "null");
    if (!rc)
        rc = buf_addstr(out, comma ? ",\n" : "\n");
    return rc;
}

int point_render_backup_json(const struct point *p, const struct point_hold *hold,
                             struct buf *out)
{
    char taken[32], expires[32];
    rfc3339_from_time(p->taken_at, taken);
    if (p->expires_at > 0)
        rfc3339_from_time(p->expires_at, expires);
    uint64_t records = 0, bytes = 0;
    for (size_t i = 0; i < p->n_tables; i++) {
        records += p->tables[i].records;
        bytes += p->tables[i].bytes;
    }
    int rc = buf_addstr(out, "{\n");
    rc = rc ? rc : add_kv_str(out, "  ", "environment", p->env, true);
    rc = rc ? rc : add_kv_str(out, "  ", "point", p->name, true);
    rc = rc ? rc : add_kv_str(out, "  ", "kind", p->kind ? p->kind : "system", true);
    rc = rc ? rc : add_kv_str(out, "  ", "label", p->label, true);
    rc = rc ? rc : add_kv_str(out, "  ", "taken_at", taken, true);
    rc = rc ? rc : add_kv_str(out, "  ", "expires_at", p->expires_at > 0 ? expires : NULL, true);
    rc = rc ? rc : buf_addstr(out, "  \"hold\": ");
    rc = rc ? rc : hold ? point_hold_render(hold, out) : buf_addstr(out, "null");
    rc = rc ? rc : buf_addstr(out, ",\n");
    rc = rc ? rc : buf_printf(out, "  \"records\": %llu,\n  \"bytes\": %llu,\n  \"tables\": [",
                              (unsigned long long)records, (unsigned long long)bytes);
    for (size_t i = 0; !rc && i < p->n_tables; i++) {
        const struct point_table *t = &p->tables[i];
        rc = buf_addstr(out, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        rc = rc ? rc : buf_add_json_string(out, t->name, strlen(t->name));
        rc = rc ? rc : buf_printf(out, ", \"records\": %llu, \"bytes\": %llu, \"created\": %llu, "
                                       "\"updated\": %llu, \"deleted\": %llu",
                                  (unsigned long long)t->records, (unsigned long long)t->bytes,
                                  (unsigned long long)t->created, (unsigned long long)t->updated,
                                  (unsigned long long)t->deleted);
        if (!rc && t->full_read_reason) {
            rc = buf_addstr(out, ", \"full_read_reason\": ");
            rc = rc ? rc : buf_add_json_string(out, t->full_read_reason, strlen(t->full_read_reason));
        }
        rc = rc ? rc : buf_addch(out, '}');
    }
    rc = rc ? rc : buf_addstr(out, p->n_tables ? "\n  ],\n" : "],\n");
    rc = rc ? rc : buf_printf(out, "  \"files\": %zu,\n",
                              p->files_later ? p->files_listed : p->n_files);
    rc = rc ? rc : add_kv_str(out, "  ", "audit", p->audit_table ? "captured" : "not captured", true);
    rc = rc ? rc : buf_addstr(out, "  \"anomaly\": ");
    rc = rc ? rc : buf_addstr(out, p->anomaly_json ? p->anomaly_json : "null");
    rc = rc ? rc : buf_addstr(out, ",\n");
    rc = rc ? rc : buf_addstr(out, "  \"not_captured\": ");
    rc = rc ? rc : buf_addstr(out, p->not_captured_json ? p->not_captured_json : "[]");
    rc = rc ? rc : buf_addstr(out, "\n}\n");
    return rc;
}

void point_summaries_free(struct point_summary *p, size_t n)
{
    for (size_t i = 0; p && i < n; i++)
        free(p[i].label);
    free(p);
}
