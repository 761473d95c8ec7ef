/* manifest: restore-point manifests and backup.json (formats in manifest.h and docs/architecture.md section 4).
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

int manifest_render(const struct point *p, struct buf *out, struct dverr *err)
{
    cJSON *root = cJSON_CreateObject(), *tables = NULL, *files = NULL;
    bool ok = root && add_num(root, "format", 1) && add_str(root, "env", p->env) &&
              add_str(root, "name", p->name) && add_str(root, "kind", p->kind ? p->kind : "system") &&
              add_str(root, "label", p->label) && add_num(root, "taken_at", (uint64_t)p->taken_at) &&
              add_num(root, "expires_at", (uint64_t)(p->expires_at > 0 ? p->expires_at : 0)) &&
              add(root, "tables", tables = cJSON_CreateArray());
    for (size_t i = 0; ok && i < p->n_tables; i++) {
        const struct point_table *t = &p->tables[i];
        cJSON *o = cJSON_CreateObject(), *segs = NULL;
        ok = o && cJSON_AddItemToArray(tables, o);
        if (!ok) {
            cJSON_Delete(o);
            break;
        }
        ok = add_str(o, "name", t->name) && add_str(o, "entity_set", t->entity_set) &&
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
        cJSON *sz = NULL;
        if (ok && sizes)
            ok = add(o, "segment_bytes", sz = cJSON_CreateArray());
        for (size_t k = 0; ok && sizes && k < t->n_segments; k++) {
            cJSON *n = cJSON_CreateNumber((double)t->segment_sizes[k]);
            ok = n && cJSON_AddItemToArray(sz, n);
            if (!ok)
                cJSON_Delete(n);
        }
        ok = ok && add_str(o, "delta", t->delta) && add_num(o, "created", t->created) &&
             add_num(o, "updated", t->updated) && add_num(o, "deleted", t->deleted) &&
             add_num(o, "changes_bytes", t->changes_bytes) && add_str(o, "schema", t->schema) &&
             add_str(o, "delta_link", t->delta_link) &&
             add_str(o, "full_read_reason", t->full_read_reason);
    }
    ok = ok && add(root, "files", files = cJSON_CreateArray());
    for (size_t i = 0; ok && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToArray(files, o);
        if (!ok) {
            cJSON_Delete(o);
            break;
        }
        ok = add_str(o, "table", f->table) && add_str(o, "record_id", f->record_id) &&
             add_str(o, "column", f->column) && add_str(o, "file_name", f->file_name) &&
             add_str(o, "blob", f->blob) && add_num(o, "size", f->size);
    }
    ok = ok && add_json_text(root, "not_captured", p->not_captured_json) &&
         add_json_text(root, "environment", p->env_json) &&
         add_str(root, "audit_table", p->audit_table);
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
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

/* ---- parsing ---- */

struct pctx {
    struct dverr *err;
    int rc;
    const char *where;
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
    char *s = strdup(v->valuestring);
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

int manifest_parse(const char *json, size_t len, struct point **out, struct dverr *err)
{
    *out = NULL;
    struct pctx c = {err, 0, "(point)"};
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
    if (get_num(&c, root, "format") != 1)
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
    const cJSON *tables = cJSON_GetObjectItemCaseSensitive(root, "tables");
    if (!cJSON_IsArray(tables)) {
        bad(&c, "\"tables\" is not an array");
    } else {
        size_t n = (size_t)cJSON_GetArraySize(tables);
        p->tables = calloc(n ? n : 1, sizeof *p->tables);
        if (!p->tables && !c.rc)
            c.rc = dverr_set(err, -ENOMEM, "out of memory");
        const cJSON *o;
        cJSON_ArrayForEach(o, tables)
        {
            if (c.rc || !p->tables)
                break;
            if (!cJSON_IsObject(o)) {
                bad(&c, "a table is not an object");
                break;
            }
            struct point_table *pt = &p->tables[p->n_tables++];
            pt->name = get_str(&c, o, "name", true);
            pt->entity_set = get_str(&c, o, "entity_set", false);
            pt->primary_key = get_str(&c, o, "primary_key", false);
            pt->records = get_num(&c, o, "records");
            pt->bytes = get_num(&c, o, "bytes");
            const cJSON *segs = cJSON_GetObjectItemCaseSensitive(o, "segments");
            if (!cJSON_IsArray(segs)) {
                bad(&c, "\"segments\" is not an array");
                break;
            }
            size_t ns = (size_t)cJSON_GetArraySize(segs);
            pt->segments = calloc(ns ? ns : 1, sizeof *pt->segments);
            if (!pt->segments) {
                c.rc = dverr_set(err, -ENOMEM, "out of memory");
                break;
            }
            const cJSON *s;
            cJSON_ArrayForEach(s, segs)
            {
                if (!cJSON_IsString(s) || !segment_id_ok(s->valuestring)) {
                    bad(&c, "a segment id is not an object id");
                    break;
                }
                if (!(pt->segments[pt->n_segments] = strdup(s->valuestring))) {
                    c.rc = dverr_set(err, -ENOMEM, "out of memory");
                    break;
                }
                pt->n_segments++;
            }
            if (c.rc)
                break;
            const cJSON *sizes = cJSON_GetObjectItemCaseSensitive(o, "segment_bytes");
            if (sizes && !cJSON_IsNull(sizes)) {
                if (!cJSON_IsArray(sizes) || (size_t)cJSON_GetArraySize(sizes) != pt->n_segments) {
                    bad(&c, "\"segment_bytes\" does not match \"segments\"");
                    break;
                }
                pt->segment_sizes = calloc(pt->n_segments ? pt->n_segments : 1,
                                           sizeof *pt->segment_sizes);
                if (!pt->segment_sizes) {
                    c.rc = dverr_set(err, -ENOMEM, "out of memory");
                    break;
                }
                size_t k = 0;
                const cJSON *v;
                cJSON_ArrayForEach(v, sizes)
                {
                    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
                    if (d < 1 || d > 9007199254740992.0 || floor(d) != d) {
                        bad(&c, "a segment size is not a count");
                        break;
                    }
                    pt->segment_sizes[k++] = (uint64_t)d;
                }
            }
            pt->delta = get_id(&c, o, "delta");
            pt->created = get_num(&c, o, "created");
            pt->updated = get_num(&c, o, "updated");
            pt->deleted = get_num(&c, o, "deleted");
            pt->changes_bytes = get_num(&c, o, "changes_bytes");
            pt->schema = get_id(&c, o, "schema");
            pt->delta_link = get_str(&c, o, "delta_link", false);
            pt->full_read_reason = get_str(&c, o, "full_read_reason", false);
        }
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(root, "files");
    if (!c.rc && files && !cJSON_IsArray(files))
        bad(&c, "\"files\" is not an array");
    if (!c.rc && cJSON_IsArray(files)) {
        size_t n = (size_t)cJSON_GetArraySize(files);
        p->files = calloc(n ? n : 1, sizeof *p->files);
        if (!p->files)
            c.rc = dverr_set(err, -ENOMEM, "out of memory");
        const cJSON *o;
        cJSON_ArrayForEach(o, files)
        {
            if (c.rc)
                break;
            if (!cJSON_IsObject(o)) {
                bad(&c, "a file is not an object");
                break;
            }
            struct point_file *f = &p->files[p->n_files++];
            f->table = get_str(&c, o, "table", true);
            f->record_id = get_str(&c, o, "record_id", true);
            f->column = get_str(&c, o, "column", false);
            f->file_name = get_str(&c, o, "file_name", true);
            f->blob = get_id(&c, o, "blob");
            if (!f->blob && !c.rc)
                bad(&c, "a file has no blob");
            f->size = get_num(&c, o, "size");
        }
    }
    if (!c.rc) {
        p->not_captured_json = get_json_text(&c, root, "not_captured");
        p->env_json = get_json_text(&c, root, "environment");
        p->audit_table = get_str(&c, root, "audit_table", false);
    }
    cJSON_Delete(root);
    if (c.rc) {
        point_free(p);
        return c.rc;
    }
    *out = p;
    return 0;
}

void point_free(struct point *p)
{
    if (!p)
        return;
    free(p->env);
    free(p->name);
    free(p->kind);
    free(p->label);
    for (size_t i = 0; i < p->n_tables; i++) {
        struct point_table *t = &p->tables[i];
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
    free(p->tables);
    for (size_t i = 0; i < p->n_files; i++) {
        struct point_file *f = &p->files[i];
        free(f->table);
        free(f->record_id);
        free(f->column);
        free(f->file_name);
        free(f->blob);
    }
    free(p->files);
    free(p->not_captured_json);
    free(p->env_json);
    free(p->audit_table);
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
    if (manifest_render(&tmp, &b, NULL) == 0 && manifest_parse(b.data, b.len, &copy, NULL) == 0 &&
        !p->name) {
        free(copy->name);
        copy->name = NULL;
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

int point_render_backup_json(const struct point *p, struct buf *out)
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
    rc = rc ? rc : buf_printf(out, "  \"files\": %zu,\n", p->n_files);
    rc = rc ? rc : add_kv_str(out, "  ", "audit", p->audit_table ? "captured" : "not captured", true);
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
