/* restore_plan: the pure half of restore (no I/O): request parsing, record normalisation and
 * comparison digests, PATCH bodies with @odata.bind lookups, the key map, and the outcome JSON.
 * See restore_int.h for the normalisation rules. Limits: a record member name is at most 255
 * bytes for lookup matching; everything else is sized by the input. No shared state. */
#include "backend/engine/restore_int.h"

#include "backend/base/record.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- request */

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static char *dup_n(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort(); /* small internal allocation */
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int restore_request_parse(const char *line, const char *source_env, const char *point,
                          struct restore_request *req, struct dverr *err)
{
    memset(req, 0, sizeof(*req));
    int rc = 0;
    bool have_audit = false;
    size_t n_tables = 0;
    if (!line)
        return dverr_set(err, -EINVAL, "empty restore request");
    if (strlen(line) > 65536)
        return dverr_set(err, -EINVAL, "restore request too long");
    req->source_env = source_env ? dup_n(source_env, strlen(source_env)) : NULL;
    req->point = point ? dup_n(point, strlen(point)) : NULL;
    const char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            break;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        size_t wl = (size_t)(p - w);
        const char *eq = memchr(w, '=', wl);
        size_t kl = eq ? (size_t)(eq - w) : wl;
        const char *v = eq ? eq + 1 : NULL;
        size_t vl = eq ? wl - kl - 1 : 0;
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(w, s, kl) == 0)
        if (KEY("dry-run") || KEY("dry_run") || KEY("dryrun")) {
            if (v && !(vl == 4 && memcmp(v, "true", 4) == 0) && !(vl == 1 && v[0] == '1')) {
                rc = dverr_set(err, -EINVAL, "dry-run takes no value");
                goto out;
            }
            req->dry_run = true;
        } else if (!v) {
            rc = dverr_set(err, -EINVAL,
                           "unknown word '%.*s' (expected target=ENV [tables=a,b] "
                           "[audit=include|skip] [map=FILE] [fallback_owner=TYPE:ID] "
                           "[business-logic=run|bypass] confirm=ENV [dry-run])",
                           (int)(wl > 64 ? 64 : wl), w);
            goto out;
        } else if (KEY("map")) {
            if (req->map_file) {
                rc = dverr_set(err, -EINVAL, "map given twice");
                goto out;
            }
            if (vl == 0 || v[0] != '/' || vl > 4096) {
                rc = dverr_set(err, -EINVAL, "map=FILE needs an absolute path");
                goto out;
            }
            req->map_file = dup_n(v, vl);
        } else if (KEY("fallback_owner")) {
            char ft[16], fid[40];
            char *tmp = dup_n(v, vl);
            int frc = restore_fallback_parse(tmp, ft, fid);
            if (req->fallback_owner || frc) {
                free(tmp);
                rc = dverr_set(err, -EINVAL, req->fallback_owner
                                                 ? "fallback_owner given twice"
                                                 : "fallback_owner must be systemuser:<id> or "
                                                   "team:<id> (a GUID)");
                goto out;
            }
            req->fallback_owner = tmp;
        } else if (KEY("business-logic")) {
            if (vl == 3 && memcmp(v, "run", 3) == 0)
                req->run_business_logic = true;
            else if (vl == 6 && memcmp(v, "bypass", 6) == 0)
                req->run_business_logic = false;
            else {
                rc = dverr_set(err, -EINVAL, "business-logic must be run or bypass");
                goto out;
            }
        } else if (KEY("target")) {
            if (req->target) {
                rc = dverr_set(err, -EINVAL, "target given twice");
                goto out;
            }
            if (!valid_name(v, vl)) {
                rc = dverr_set(err, -EINVAL, "target: not an environment name");
                goto out;
            }
            req->target = dup_n(v, vl);
        } else if (KEY("confirm")) {
            if (req->confirm) {
                rc = dverr_set(err, -EINVAL, "confirm given twice");
                goto out;
            }
            req->confirm = dup_n(v, vl);
        } else if (KEY("audit")) {
            if (have_audit) {
                rc = dverr_set(err, -EINVAL, "audit given twice");
                goto out;
            }
            have_audit = true;
            if (vl == 7 && memcmp(v, "include", 7) == 0)
                req->include_audit = true;
            else if (vl == 4 && memcmp(v, "skip", 4) == 0)
                req->include_audit = false;
            else {
                rc = dverr_set(err, -EINVAL, "audit must be include or skip");
                goto out;
            }
        } else if (KEY("tables")) {
            if (req->tables) {
                rc = dverr_set(err, -EINVAL, "tables given twice");
                goto out;
            }
            size_t cnt = 1;
            for (size_t i = 0; i < vl; i++)
                cnt += v[i] == ',';
            req->tables = calloc(cnt + 1, sizeof(char *));
            if (!req->tables)
                abort();
            const char *s = v, *end = v + vl;
            while (s <= end) {
                const char *c = memchr(s, ',', (size_t)(end - s));
                if (!c)
                    c = end;
                if (!valid_name(s, (size_t)(c - s))) {
                    rc = dverr_set(err, -EINVAL, "tables: '%.*s' is not a table name",
                                   (int)((c - s) > 64 ? 64 : (c - s)), s);
                    goto out;
                }
                bool dup = false;
                for (size_t i = 0; i < n_tables; i++)
                    if (strlen(req->tables[i]) == (size_t)(c - s) &&
                        memcmp(req->tables[i], s, (size_t)(c - s)) == 0)
                        dup = true;
                if (!dup)
                    req->tables[n_tables++] = dup_n(s, (size_t)(c - s));
                s = c + 1;
            }
        } else {
            rc = dverr_set(err, -EINVAL,
                           "unknown key '%.*s' (expected target, tables, audit, map, "
                           "fallback_owner, business-logic, confirm, dry-run)",
                           (int)(kl > 64 ? 64 : kl), w);
            goto out;
        }
#undef KEY
    }
    if (!req->target) {
        rc = dverr_set(err, -EINVAL,
                       "target=ENV is required (e.g. target=contoso-dev confirm=contoso-dev)");
        goto out;
    }
out:
    if (rc)
        restore_request_release(req);
    return rc;
}

void restore_request_release(struct restore_request *req)
{
    if (!req)
        return;
    free(req->source_env);
    free(req->point);
    free(req->target);
    free(req->confirm);
    free(req->map_file);
    free(req->fallback_owner);
    if (req->tables)
        for (char **t = req->tables; *t; t++)
            free(*t);
    free(req->tables);
    memset(req, 0, sizeof(*req));
}

/* ---------------------------------------------------------------- outcome */

void restore_outcome_release(struct restore_outcome *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n_tables; i++) {
        free(o->tables[i].table);
        free(o->tables[i].first_keys_json);
        free(o->tables[i].note);
        free(o->tables[i].lookup_note);
    }
    free(o->tables);
    free(o->skipped_fields_json);
    free(o->mapping_json);
    free(o->unmapped_json);
    free(o->source_env);
    free(o->point);
    free(o->target);
    memset(o, 0, sizeof(*o));
}

static void add_time(struct buf *out, const char *name, int64_t ms)
{
    if (!ms) {
        buf_printf(out, ",\"%s\":null", name);
        return;
    }
    char t[32];
    rfc3339_from_time((time_t)(ms / 1000), t);
    buf_printf(out, ",\"%s\":\"%s\"", name, t);
}

static void add_str(struct buf *out, const char *name, const char *v)
{
    buf_printf(out, ",\"%s\":", name);
    if (v)
        buf_add_json_string(out, v, strlen(v));
    else
        buf_addstr(out, "null");
}

int restore_outcome_json(const struct restore_outcome *o, struct buf *out)
{
    size_t start = out->len;
    buf_addstr(out, "{\"state\":");
    buf_add_json_string(out, o->state, strlen(o->state));
    add_str(out, "operation", o->operation_id[0] ? o->operation_id : NULL);
    add_str(out, "source", o->source_env);
    add_str(out, "point", o->point);
    add_str(out, "target", o->target);
    buf_printf(out, ",\"dry_run\":%s", o->dry_run ? "true" : "false");
    add_str(out, "safety_point", o->safety_point[0] ? o->safety_point : NULL);
    uint64_t c = 0, u = 0, d = 0, un = 0, s = 0, f = 0, ld = 0;
    for (size_t i = 0; i < o->n_tables; i++) {
        ld += o->tables[i].lookups_dropped;
        c += o->tables[i].created;
        u += o->tables[i].updated;
        d += o->tables[i].deleted;
        un += o->tables[i].unchanged;
        s += o->tables[i].skipped;
        f += o->tables[i].failed;
    }
    buf_printf(out,
               ",\"created\":%llu,\"updated\":%llu,\"deleted\":%llu,\"unchanged\":%llu,"
               "\"skipped\":%llu,\"failed\":%llu,\"lookups_dropped\":%llu",
               (unsigned long long)c, (unsigned long long)u, (unsigned long long)d,
               (unsigned long long)un, (unsigned long long)s, (unsigned long long)f,
               (unsigned long long)ld);
    buf_printf(out,
               ",\"records_written\":%llu,\"requests\":%llu,\"write_requests\":%llu,"
               "\"batches\":%llu,\"retried\":%llu",
               (unsigned long long)o->records_written, (unsigned long long)o->requests,
               (unsigned long long)o->write_requests, (unsigned long long)o->batches,
               (unsigned long long)o->retried);
    uint64_t fb = 0, pu = 0, ss = 0;
    for (size_t i = 0; i < o->n_tables; i++) {
        fb += o->tables[i].fallback_owners;
        pu += o->tables[i].parties_unmapped;
        ss += o->tables[i].states_set;
    }
    buf_printf(out, ",\"states_set\":%llu,\"parties_unmapped\":%llu",
               (unsigned long long)ss, (unsigned long long)pu);
    add_str(out, "business_logic", o->business_logic_ran ? "ran" : "bypassed");
    add_str(out, "fallback_owner", o->fallback_owner[0] ? o->fallback_owner : NULL);
    buf_printf(out, ",\"fallback_owner_rows\":%llu", (unsigned long long)fb);
    buf_printf(out, ",\"mapping\":%s,\"unmapped_principals\":%s",
               o->mapping_json ? o->mapping_json : "{}",
               o->unmapped_json ? o->unmapped_json : "[]");
    buf_addstr(out, ",\"excluded_tables\":[");
    bool first_ex = true;
    for (size_t i = 0; i < o->n_tables; i++) {
        const struct restore_table_outcome *t = &o->tables[i];
        if (!t->excluded)
            continue;
        buf_addstr(out, first_ex ? "{\"table\":" : ",{\"table\":");
        first_ex = false;
        buf_add_json_string(out, t->table ? t->table : "", t->table ? strlen(t->table) : 0);
        add_str(out, "reason", t->note);
        buf_addch(out, '}');
    }
    buf_addch(out, ']');
    add_time(out, "started_at", o->started_ms);
    add_time(out, "finished_at", o->finished_ms);
    if (o->started_ms && o->finished_ms)
        buf_printf(out, ",\"elapsed_ms\":%lld", (long long)(o->finished_ms - o->started_ms));
    add_str(out, "error", o->error[0] ? o->error : NULL);
    buf_addstr(out, ",\"tables\":[");
    for (size_t i = 0; i < o->n_tables; i++) {
        const struct restore_table_outcome *t = &o->tables[i];
        buf_addstr(out, i ? ",{\"table\":" : "{\"table\":");
        buf_add_json_string(out, t->table ? t->table : "", t->table ? strlen(t->table) : 0);
        buf_printf(out,
                   ",\"created\":%llu,\"updated\":%llu,\"deleted\":%llu,\"unchanged\":%llu,"
                   "\"skipped\":%llu,\"failed\":%llu,\"associated\":%llu,"
                   "\"disassociated\":%llu,\"files\":%llu",
                   (unsigned long long)t->created, (unsigned long long)t->updated,
                   (unsigned long long)t->deleted, (unsigned long long)t->unchanged,
                   (unsigned long long)t->skipped, (unsigned long long)t->failed,
                   (unsigned long long)t->associated, (unsigned long long)t->disassociated,
                   (unsigned long long)t->files);
        if (t->first_keys_json)
            buf_printf(out, ",\"first_keys\":%s", t->first_keys_json);
        if (t->note)
            add_str(out, "note", t->note);
        if (t->lookups_dropped) {
            buf_printf(out, ",\"lookups_dropped\":%llu", (unsigned long long)t->lookups_dropped);
            add_str(out, "lookup_note", t->lookup_note);
        }
        if (t->excluded)
            buf_addstr(out, ",\"excluded\":true");
        if (t->states_set || t->reopened)
            buf_printf(out, ",\"states_set\":%llu,\"reopened\":%llu",
                       (unsigned long long)t->states_set, (unsigned long long)t->reopened);
        if (t->fallback_owners)
            buf_printf(out, ",\"fallback_owners\":%llu",
                       (unsigned long long)t->fallback_owners);
        if (t->parties_unmapped)
            buf_printf(out, ",\"parties_unmapped\":%llu",
                       (unsigned long long)t->parties_unmapped);
        buf_addch(out, '}');
    }
    buf_addstr(out, "]");
    buf_printf(out, ",\"skipped_fields\":%s}\n",
               o->skipped_fields_json ? o->skipped_fields_json : "{}");
    /* buf_* keep going after -ENOMEM only by failing; detect it once here */
    if (!out->data || out->len <= start)
        return -ENOMEM;
    return 0;
}

/* ---------------------------------------------------------------- key map */

/* rmap is keymap (backend/keymap.c) with a typed view of its slots, kept in step here. */
static void rmap_sync(struct rmap *m)
{
    m->slots = m->km.slots;
    m->cap = m->km.cap;
    m->n = m->km.n;
}

void rmap_init(struct rmap *m)
{
    keymap_init(&m->km, sizeof(struct rmap_entry), offsetof(struct rmap_entry, key),
                offsetof(struct rmap_entry, key_len));
    rmap_sync(m);
}

void rmap_release(struct rmap *m)
{
    keymap_release(&m->km);
    rmap_sync(m);
}

struct rmap_entry *rmap_get(const struct rmap *m, const char *key, size_t len)
{
    return keymap_get(&m->km, key, len);
}

struct rmap_entry *rmap_put(struct rmap *m, const char *key, size_t len, bool *fresh)
{
    struct rmap_entry *e = keymap_put(&m->km, key, len, fresh);
    rmap_sync(m);
    return e;
}

/* ---------------------------------------------------------------- string set */

bool strset_has(const struct strset *s, const char *str, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->items[i]) == len && memcmp(s->items[i], str, len) == 0)
            return true;
    return false;
}

int strset_add(struct strset *s, const char *str, size_t len)
{
    if (strset_has(s, str, len))
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        char **p = realloc(s->items, cap * sizeof(char *));
        if (!p)
            return -ENOMEM;
        s->items = p;
        s->cap = cap;
    }
    s->items[s->n++] = dup_n(str, len);
    return 0;
}

void strset_release(struct strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->items[i]);
    free(s->items);
    memset(s, 0, sizeof(*s));
}

/* ---------------------------------------------------------------- definitions */

const struct dv_attribute *restore_attr(const struct dv_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->n_attrs; i++) {
        const char *ln = t->attrs[i].logical_name;
        if (ln && strlen(ln) == len && memcmp(ln, name, len) == 0)
            return &t->attrs[i];
    }
    return NULL;
}

const struct dv_lookup *restore_lookup(const struct dv_table *t, const char *attr, size_t len,
                                       const char *target_table)
{
    const struct dv_lookup *first = NULL;
    for (size_t i = 0; i < t->n_lookups; i++) {
        const struct dv_lookup *lk = &t->lookups[i];
        if (!lk->attribute || strlen(lk->attribute) != len || memcmp(lk->attribute, attr, len))
            continue;
        if (!lk->nav_property || !lk->target_set)
            continue;
        if (!first)
            first = lk;
        if (target_table && lk->target_table && strcmp(lk->target_table, target_table) == 0)
            return lk;
    }
    return target_table && first && first->target_table &&
                   strcmp(first->target_table, target_table) != 0
               ? NULL
               : first;
}

bool restore_attr_is_file(const struct dv_table *t, const struct dv_attribute *a)
{
    if (!a || !a->type)
        return false;
    if (!strcmp(a->type, "File") || !strcmp(a->type, "Image"))
        return true;
    return t->logical_name && !strcmp(t->logical_name, "annotation") && a->logical_name &&
           !strcmp(a->logical_name, "documentbody");
}

/* A member "_x_value" names lookup attribute x; returns x's length or 0. */
static size_t lookup_attr_name(const char *key, size_t kl, const char **attr)
{
    if (kl > 8 && key[0] == '_' && memcmp(key + kl - 6, "_value", 6) == 0) {
        *attr = key + 1;
        return kl - 7;
    }
    return 0;
}

static bool is_annotation_key(const char *key, size_t kl)
{
    return memchr(key, '@', kl) != NULL;
}

/* The lookuplogicalname annotation of member key in rec, or NULL. */
static const char *lookup_target_of(const struct json_node *rec, const char *key, size_t kl)
{
    static const char suffix[] = "@Microsoft.Dynamics.CRM.lookuplogicalname";
    size_t sl = sizeof(suffix) - 1;
    for (const struct json_node *m = rec->child; m; m = m->next) {
        if (m->key_len == kl + sl && memcmp(m->key, key, kl) == 0 &&
            memcmp(m->key + kl, suffix, sl) == 0 && m->type == JSON_STRING)
            return m->str;
    }
    return NULL;
}

/* ---------------------------------------------------------------- canonical values */

static int cmp_members(const void *a, const void *b)
{
    const struct json_node *x = *(const struct json_node *const *)a;
    const struct json_node *y = *(const struct json_node *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

/* The members of obj sorted by key (caller frees the array), or NULL when out of memory. */
static const struct json_node **sorted_members(const struct json_node *obj, size_t *n_out)
{
    size_t n = 0;
    for (const struct json_node *c = obj->child; c; c = c->next)
        n++;
    const struct json_node **m = calloc(n ? n : 1, sizeof(*m));
    if (!m)
        return NULL;
    n = 0;
    for (const struct json_node *c = obj->child; c; c = c->next)
        m[n++] = c;
    qsort(m, n, sizeof(*m), cmp_members);
    *n_out = n;
    return m;
}

int restore_canon_value(const struct json_node *v, struct buf *out)
{
    int rc = 0;
    switch (v->type) {
    case JSON_NULL: return buf_addstr(out, "null");
    case JSON_TRUE: return buf_addstr(out, "true");
    case JSON_FALSE: return buf_addstr(out, "false");
    case JSON_NUMBER: return buf_add(out, v->str, v->str_len);
    case JSON_STRING: return buf_add_json_string(out, v->str, v->str_len);
    case JSON_ARRAY:
        buf_addch(out, '[');
        for (const struct json_node *c = v->child; c; c = c->next) {
            if (c != v->child)
                buf_addch(out, ',');
            if ((rc = restore_canon_value(c, out)))
                return rc;
        }
        return buf_addch(out, ']');
    case JSON_OBJECT: {
        size_t n;
        const struct json_node **m = sorted_members(v, &n);
        if (!m)
            return -ENOMEM;
        buf_addch(out, '{');
        for (size_t i = 0; i < n && !rc; i++) {
            if (i)
                buf_addch(out, ',');
            buf_add_json_string(out, m[i]->key, m[i]->key_len);
            buf_addch(out, ':');
            rc = restore_canon_value(m[i], out);
        }
        free(m);
        return rc ? rc : buf_addch(out, '}');
    }
    }
    return -EINVAL;
}

void restore_digest(const void *data, size_t len, uint8_t out[16])
{
    char hex[65];
    sha256_hex(data, len, hex);
    for (int i = 0; i < 16; i++) {
        int hi = hex[2 * i] <= '9' ? hex[2 * i] - '0' : hex[2 * i] - 'a' + 10;
        int lo = hex[2 * i + 1] <= '9' ? hex[2 * i + 1] - '0' : hex[2 * i + 1] - 'a' + 10;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

void restore_digest_add(uint8_t sum[16], const uint8_t add[16])
{
    unsigned carry = 0;
    for (int i = 0; i < 16; i++) {
        unsigned x = (unsigned)sum[i] + add[i] + carry;
        sum[i] = (uint8_t)x;
        carry = x >> 8;
    }
}

/* ---------------------------------------------------------------- normalise */

/* The "," before an object's member, none before its first. */
static void member_sep(struct buf *out, bool *first)
{
    if (!*first)
        buf_addch(out, ',');
    *first = false;
}

int restore_record_key(const struct dv_table *t, const struct json_node *rec, struct buf *scratch,
                       const char **key, size_t *key_len)
{
    if (!t->is_elastic)
        return 0;
    size_t len;
    const char *made = record_row_key(rec, t->primary_id, DV_PARTITION_COLUMN, scratch, &len);
    if (!made) /* no id, or an id and a partition that did not fit in scratch */
        return record_key(rec, t->primary_id, NULL) ? -ENOMEM : -ENOENT;
    *key = made;
    *key_len = len;
    return 0;
}

static bool is_primary(const struct dv_table *t, const char *key, size_t kl)
{
    return t->primary_id && strlen(t->primary_id) == kl && memcmp(t->primary_id, key, kl) == 0;
}

static bool is_state_column(const char *key, size_t kl)
{
    return (kl == 9 && memcmp(key, "statecode", 9) == 0) ||
           (kl == 10 && memcmp(key, "statuscode", 10) == 0);
}

static int32_t int_member(const struct json_node *rec, const char *name)
{
    const struct json_node *v = json_get(rec, name);
    if (!v || v->type != JSON_NUMBER)
        return -1;
    long x = strtol(v->str, NULL, 10);
    return x < 0 || x > INT32_MAX ? -1 : (int32_t)x;
}

void restore_state_of(const struct json_node *rec, int32_t *state, int32_t *status)
{
    *state = int_member(rec, "statecode");
    *status = int_member(rec, "statuscode");
}

/* A lookup member's value as the target is to hold it: *id and *id_len (into buf when mapped) and
 * *table; false when it is left out. */
static bool lookup_value(const struct dv_table *t, const struct restore_hooks *h, const char *an,
                         size_t al, const char **table, const char **id, size_t *id_len,
                         char buf[40])
{
    if (!h || !h->map)
        return true;
    const char *mt = NULL;
    int r = h->map(h->ctx, t, an, al, *table, *id, *id_len, &mt, buf);
    if (r == RL_DROP)
        return false;
    if (r == RL_MAPPED) {
        *id = buf;
        *id_len = strlen(buf);
        if (mt)
            *table = mt;
    }
    return true;
}

int restore_normalize(const struct dv_table *t, const struct json_node *rec,
                      const struct restore_hooks *h, struct buf *out, struct strset *skipped)
{
    if (!rec || rec->type != JSON_OBJECT)
        return -EINVAL;
    size_t n;
    const struct json_node **m = sorted_members(rec, &n);
    if (!m)
        return -ENOMEM;
    int rc = 0;
    bool first = true;
    buf_addch(out, '{');
    for (size_t i = 0; i < n && !rc; i++) {
        const struct json_node *v = m[i];
        const char *key = v->key;
        size_t kl = v->key_len;
        if (is_primary(t, key, kl) || is_annotation_key(key, kl) || is_state_column(key, kl))
            continue;
        const char *an;
        size_t al = lookup_attr_name(key, kl, &an);
        const struct dv_attribute *a = restore_attr(t, key, kl);
        if (!a && al) {
            const struct dv_attribute *la = restore_attr(t, an, al);
            const struct dv_lookup *lk = restore_lookup(t, an, al, NULL);
            bool writable = lk && (!la || la->valid_for_update || la->valid_for_create);
            if (!writable || (la && !la->valid_for_update)) {
                if (skipped)
                    strset_add(skipped, key, kl);
                continue;
            }
            if (v->type == JSON_NULL)
                continue;
            const char *id = v->str, *table = lookup_target_of(rec, key, kl);
            size_t id_len = v->str_len;
            char mapped[40];
            if (v->type == JSON_STRING &&
                !lookup_value(t, h, an, al, &table, &id, &id_len, mapped))
                continue;
            member_sep(out, &first);
            buf_add_json_string(out, key, kl);
            buf_addch(out, ':');
            /* ids compare case-insensitively */
            if (v->type == JSON_STRING) {
                char *low = dup_n(id, id_len);
                for (size_t j = 0; j < id_len; j++)
                    low[j] = (char)tolower((unsigned char)low[j]);
                buf_add_json_string(out, low, id_len);
                free(low);
            } else {
                rc = restore_canon_value(v, out);
            }
            continue;
        }
        if (!a || !a->valid_for_update) {
            if (skipped && !(a && restore_attr_is_file(t, a)))
                strset_add(skipped, key, kl);
            if (!(a && restore_attr_is_file(t, a)))
                continue;
        }
        if (restore_attr_is_file(t, a)) {
            continue; /* handled below */
        }
        if (v->type == JSON_NULL)
            continue;
        member_sep(out, &first);
        buf_add_json_string(out, key, kl);
        buf_addch(out, ':');
        rc = restore_canon_value(v, out);
    }
    /* file and image columns and documentbody: by the hash of their bytes */
    for (size_t i = 0; i < t->n_attrs && !rc; i++) {
        const struct dv_attribute *a = &t->attrs[i];
        if (!restore_attr_is_file(t, a) || !a->logical_name)
            continue;
        const struct json_node *v = json_get(rec, a->logical_name);
        char hex[65];
        int frc = h && h->file_digest ? h->file_digest(h->ctx, a->logical_name, v, hex) : 1;
        if (frc < 0) {
            rc = frc;
            break;
        }
        if (frc == 1)
            continue;
        member_sep(out, &first);
        buf_add_json_string(out, a->logical_name, strlen(a->logical_name));
        buf_printf(out, ":\"sha256:%s\"", hex);
    }
    buf_addch(out, '}');
    free(m);
    if (!rc && !out->data)
        rc = -ENOMEM;
    return rc;
}

/* ---------------------------------------------------------------- bodies */

/* "<nav>@odata.bind":"/<set>(<id>)" into dst (an object being built). */
static void add_bind(struct buf *dst, bool *first, const struct dv_lookup *lk, const char *id,
                     size_t id_len)
{
    member_sep(dst, first);
    buf_printf(dst, "\"%s@odata.bind\":\"/%s(", lk->nav_property, lk->target_set);
    struct buf esc = BUF_INIT; /* ids are GUIDs; escape anyway */
    buf_add_json_string(&esc, id, id_len);
    if (esc.data)
        buf_add(dst, esc.data + 1, esc.len - 2);
    buf_release(&esc);
    buf_addstr(dst, ")\"");
}

int restore_body(const struct dv_table *t, const struct json_node *rec, bool create,
                 bool state_in_body, const struct restore_hooks *h, struct buf *out,
                 struct buf *deferred)
{
    if (!rec || rec->type != JSON_OBJECT)
        return -EINVAL;
    int rc = 0;
    bool first = true, dfirst = true;
    int32_t state, status;
    restore_state_of(rec, &state, &status);
    const struct dv_attribute *oco = restore_attr(t, "overriddencreatedon", 19);
    bool created_on = create && oco && oco->valid_for_create;
    buf_addch(out, '{');
    for (const struct json_node *v = rec->child; v && !rc; v = v->next) {
        const char *key = v->key;
        size_t kl = v->key_len;
        if (is_primary(t, key, kl) || is_annotation_key(key, kl))
            continue;
        if (is_state_column(key, kl)) {
            /* a create is active: statuscode only when it belongs to state 0; an update carries
             * the state only when told to (closing takes its own request) */
            bool want = create ? kl == 10 && state <= 0 : state_in_body;
            const struct dv_attribute *a = restore_attr(t, key, kl);
            if (!want || !a || !(create ? a->valid_for_create : a->valid_for_update) ||
                v->type == JSON_NULL)
                continue;
            member_sep(out, &first);
            buf_add_json_string(out, key, kl);
            buf_addch(out, ':');
            rc = restore_canon_value(v, out);
            continue;
        }
        if (kl == 19 && memcmp(key, "overriddencreatedon", 19) == 0)
            continue; /* the point's own: when it was migrated there, not when it was created */
        const char *an;
        size_t al = lookup_attr_name(key, kl, &an);
        const struct dv_attribute *a = restore_attr(t, key, kl);
        if (!a && al) {
            const struct dv_attribute *la = restore_attr(t, an, al);
            if (la && !(create ? la->valid_for_create : la->valid_for_update))
                continue;
            if (v->type == JSON_NULL) {
                const struct dv_lookup *lk = restore_lookup(t, an, al, NULL);
                if (create || !lk)
                    continue;
                member_sep(out, &first);
                buf_printf(out, "\"%s@odata.bind\":null", lk->nav_property);
                continue;
            }
            if (v->type != JSON_STRING)
                continue;
            const char *id = v->str, *tt = lookup_target_of(rec, key, kl);
            size_t id_len = v->str_len;
            char mapped[40];
            if (!lookup_value(t, h, an, al, &tt, &id, &id_len, mapped))
                continue;
            const struct dv_lookup *lk = restore_lookup(t, an, al, tt);
            if (!lk && tt)
                continue; /* a target type the target's relationships do not know */
            if (!lk && !(lk = restore_lookup(t, an, al, NULL)))
                continue;
            if (h && h->bind && h->bind(h->ctx, lk, id, id_len) == RB_DEFER) {
                if (!deferred)
                    continue;
                if (dfirst)
                    buf_addch(deferred, '{');
                add_bind(deferred, &dfirst, lk, id, id_len);
            } else {
                add_bind(out, &first, lk, id, id_len);
            }
            continue;
        }
        if (!a || !(create ? a->valid_for_create : a->valid_for_update))
            continue;
        if (restore_attr_is_file(t, a)) {
            if (strcmp(a->type ? a->type : "", "File") == 0 ||
                strcmp(a->type ? a->type : "", "Image") == 0)
                continue;
            /* documentbody: from the blob when the point holds it as one */
            struct buf b = BUF_INIT;
            int brc = h && h->body_blob ? h->body_blob(h->ctx, a->logical_name, &b) : 0;
            if (brc < 0) {
                rc = brc;
                buf_release(&b);
                break;
            }
            if (brc == 1) {
                member_sep(out, &first);
                buf_add_json_string(out, key, kl);
                buf_addch(out, ':');
                buf_add_json_string(out, b.data ? b.data : "", b.len);
                buf_release(&b);
                continue;
            }
            buf_release(&b);
        }
        if (v->type == JSON_NULL && create)
            continue;
        member_sep(out, &first);
        buf_add_json_string(out, key, kl);
        buf_addch(out, ':');
        rc = restore_canon_value(v, out);
    }
    /* createdon is the service's; a create may set it through overriddencreatedon */
    const struct json_node *co = created_on ? json_get(rec, "createdon") : NULL;
    if (!rc && co && co->type == JSON_STRING) {
        member_sep(out, &first);
        buf_addstr(out, "\"overriddencreatedon\":");
        buf_add_json_string(out, co->str, co->str_len);
    }
    /* documentbody held only as a blob (no member in the line) */
    for (size_t i = 0; i < t->n_attrs && !rc && h && h->body_blob; i++) {
        const struct dv_attribute *a = &t->attrs[i];
        if (!restore_attr_is_file(t, a) || !a->logical_name || !a->type ||
            !strcmp(a->type, "File") || !strcmp(a->type, "Image"))
            continue;
        if (json_get(rec, a->logical_name))
            continue;
        if (!(create ? a->valid_for_create : a->valid_for_update))
            continue;
        struct buf b = BUF_INIT;
        int brc = h->body_blob(h->ctx, a->logical_name, &b);
        if (brc == 1) {
            member_sep(out, &first);
            buf_add_json_string(out, a->logical_name, strlen(a->logical_name));
            buf_addch(out, ':');
            buf_add_json_string(out, b.data ? b.data : "", b.len);
        } else if (brc < 0) {
            rc = brc;
        }
        buf_release(&b);
    }
    buf_addch(out, '}');
    if (deferred && !dfirst)
        buf_addch(deferred, '}');
    if (!rc && !out->data)
        rc = -ENOMEM;
    return rc;
}

/* ---------------------------------------------------------------- ids */

void restore_operation_id(char out[32])
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    unsigned r = (unsigned)((uint64_t)now_ms() * 2654435761u ^ (unsigned)getpid());
    char ts[32];
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, 32, "r%.16s-%04x", ts, r & 0xffff);
}
