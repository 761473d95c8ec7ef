/* webwrite: the write side of each org's Web API: POST/PATCH (upsert)/DELETE by key, If-Match and
 * If-None-Match, @odata.bind, N:N $ref, $batch, file columns ($value with Range, PATCH upload),
 * and the audit rows dvsim writes for every create, update and delete it serves.
 * Writers hold d->write_lock for the whole SQLite transaction (versions are per org and must
 * not interleave). */
#include "tools/dvsim/dvsim.h"

#include "backend/base/json.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FV "@OData.Community.Display.V1.FormattedValue"
#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"

void srec_stamp(struct rec *rec, const struct table_def *t, int64_t ver, int64_t when, bool create)
{
    char iso[32], q[40], f[64], num[32], etag[40];
    dvsim_iso_time(when, iso);
    snprintf(q, sizeof q, "\"%s\"", iso);
    dvsim_fmt_datetime(iso, f, sizeof f);
    if (dvschema_col_by_member(t, "modifiedon", 10)) {
        srec_set(rec, "modifiedon", q, strlen(q));
        srec_set_str(rec, "modifiedon" FV, f);
    }
    if (create && dvschema_col_by_member(t, "createdon", 9)) {
        srec_set(rec, "createdon", q, strlen(q));
        srec_set_str(rec, "createdon" FV, f);
    }
    if (dvschema_col_by_member(t, "versionnumber", 13)) {
        snprintf(num, sizeof num, "%lld", (long long)ver);
        srec_set(rec, "versionnumber", num, strlen(num));
    }
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    srec_set_str(rec, "@odata.etag", etag);
}

int dvsim_audit_write(struct write_ctx *w, const struct table_def *t, const char *id, int operation)
{
    if (!w->audit || dvschema_table_index(t) == T_AUDIT)
        return 0;
    const struct table_def *at = &dvschema_tables[T_AUDIT];
    struct rec rec;
    struct buf out = BUF_INIT;
    srec_init(&rec);
    int64_t ver = 0;
    int rc = dvstore_next_version(w->db, w->env, &ver);
    if (rc)
        return rc;
    pthread_mutex_lock(&w->d->lock);
    uint64_t a = dvsim_splitmix64(&w->d->rng), b = dvsim_splitmix64(&w->d->rng), c = dvsim_splitmix64(&w->d->rng),
             e = dvsim_splitmix64(&w->d->rng);
    pthread_mutex_unlock(&w->d->lock);
    char aid[37], tx[37], iso[32], q[40], f[64], op[8];
    dvsim_guid(a, b, aid);
    dvsim_guid(c, e, tx);
    dvsim_iso_time((int64_t)time(NULL), iso);
    snprintf(q, sizeof q, "\"%s\"", iso);
    dvsim_fmt_datetime(iso, f, sizeof f);
    static const char *const labels[] = {"", "Create", "Update", "Delete", "Access"};
    snprintf(op, sizeof op, "%d", operation);
    rc = srec_set_str(&rec, "auditid", aid);
    rc = rc ? rc : srec_set(&rec, "createdon", q, strlen(q));
    rc = rc ? rc : srec_set_str(&rec, "createdon" FV, f);
    rc = rc ? rc : srec_set(&rec, "operation", op, strlen(op));
    rc = rc ? rc : srec_set_str(&rec, "operation" FV, labels[operation]);
    rc = rc ? rc : srec_set(&rec, "action", op, strlen(op));
    rc = rc ? rc : srec_set_str(&rec, "action" FV, labels[operation]);
    rc = rc ? rc : srec_set_str(&rec, "objecttypecode", t->logical);
    rc = rc ? rc : srec_set_str(&rec, "_objectid_value", id);
    rc = rc ? rc : srec_set_str(&rec, "_objectid_value" LLN, t->logical);
    rc = rc ? rc : srec_set_str(&rec, "_userid_value", DVSIM_APP_USER_ID);
    rc = rc ? rc : srec_set_str(&rec, "_userid_value" LLN, "systemuser");
    rc = rc ? rc : srec_set_str(&rec, "_userid_value" FV, "# dvsnap");
    rc = rc ? rc : srec_set(&rec, "attributemask", "null", 4);
    rc = rc ? rc : srec_set_str(&rec, "transactionid", tx);
    if (!rc) {
        char etag[40];
        snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
        rc = srec_set_str(&rec, "@odata.etag", etag);
    }
    rc = rc ? rc : srec_render(&rec, at->pk, &out);
    rc = rc ? rc : dvstore_put_record(w->db, table_id(w->env, T_AUDIT), aid, ver, out.data, out.len);
    srec_release(&rec);
    buf_release(&out);
    return rc;
}


/* ---- write sessions: a transaction under d->write_lock, or the $batch's open one ---- */
struct wsess {
    sqlite3 *db;
    bool own;
};

static int wsess_begin(struct req *r, struct wsess *s)
{
    if (r->txn_db) {
        s->db = r->txn_db;
        s->own = false;
        return 0;
    }
    pthread_mutex_lock(&r->d->write_lock);
    s->db = dvstore_get(r->d->store);
    s->own = true;
    int rc = s->db ? dvstore_begin(s->db) : -EIO;
    if (rc) {
        dvstore_put(r->d->store, s->db);
        s->db = NULL;
        pthread_mutex_unlock(&r->d->write_lock);
    }
    return rc;
}

static int wsess_end(struct req *r, struct wsess *s, bool commit)
{
    if (!s->own || !s->db)
        return 0;
    int rc = 0;
    if (commit && (rc = dvstore_commit(s->db)) != 0)
        dvstore_rollback(s->db);
    else if (!commit)
        dvstore_rollback(s->db);
    dvstore_put(r->d->store, s->db);
    s->db = NULL;
    pthread_mutex_unlock(&r->d->write_lock);
    return rc;
}

/* End the write session (commit when ok); a failed commit answers 503. Whether it succeeded. */
static bool wsess_finish(struct req *r, struct wsess *s, bool ok)
{
    if (wsess_end(r, s, ok) && ok) {
        sreply_error(r, 503, "0x80040216", "commit failed");
        return false;
    }
    return ok;
}

static void reply_no_content(struct req *r)
{
    buf_reset(&r->out);
    r->status = 204;
}

static void entity_url(struct req *r, const struct table_def *t, const char *id, struct buf *out)
{
    sreq_base(r, out);
    buf_printf(out, "/org/%s%s/%s(%s)", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX, t->set, id);
}

static void random_guid(struct dvsim *d, char out[37])
{
    pthread_mutex_lock(&d->lock);
    uint64_t a = dvsim_splitmix64(&d->rng), b = dvsim_splitmix64(&d->rng);
    pthread_mutex_unlock(&d->lock);
    dvsim_guid(a, b, out);
}

/* The decoded etag of a line ("W/\"123\""), into out. */
static void line_etag(const char *line, size_t len, char *out, size_t n)
{
    struct lmember m[128];
    int nm = dvline_scan(line, len, m, 128);
    out[0] = '\0';
    for (int i = 0; i < nm; i++) {
        if (m[i].key_len == 11 && memcmp(m[i].key, "@odata.etag", 11) == 0) {
            size_t o = 0;
            for (size_t k = 1; k + 1 < m[i].val_len && o + 1 < n; k++) {
                if (m[i].val[k] == '\\')
                    k++;
                out[o++] = m[i].val[k];
            }
            out[o] = '\0';
        }
    }
}

/* A reference "/contacts(<guid>)", "contacts(<guid>)" or an absolute URL -> table and id.
 * -ENOENT for an unresolved "$n" Content-ID, -EINVAL otherwise. */
static int resolve_ref(const char *s, const struct table_def **t, char id[37])
{
    if (s[0] == '$')
        return -ENOENT;
    const char *p = strstr(s, DVSIM_API_PREFIX "/");
    p = p ? p + sizeof DVSIM_API_PREFIX : s;
    while (*p == '/')
        p++;
    size_t sl = strcspn(p, "(");
    if (p[sl] != '(')
        return -EINVAL;
    *t = dvschema_table_by_set(p, sl);
    const char *g = p + sl + 1;
    if (!*t || !dvsim_guid_valid(g, 36) || g[36] != ')' || g[37])
        return -EINVAL;
    for (int i = 0; i < 36; i++)
        id[i] = (char)tolower((unsigned char)g[i]);
    id[36] = '\0';
    return 0;
}

static void set_col(struct rec *rec, const struct col_def *c, const char *member, const char *raw, size_t len)
{
    char f[200], key[200];
    srec_set(rec, member, raw, len);
    snprintf(key, sizeof key, "%s" FV, member);
    if (dvsim_format_value(c, raw, len, f, sizeof f))
        srec_set_str(rec, key, f);
    else
        srec_set(rec, key, NULL, 0);
}

/* Point lookup column c at target record id (NULL clears). */
static int set_lookup(struct req *r, sqlite3 *db, struct rec *rec, const struct col_def *c,
                      const struct table_def *target, const char *id)
{
    char member[128], k1[200], k2[200];
    dvschema_member_name(c, member, sizeof member);
    snprintf(k1, sizeof k1, "%s" LLN, member);
    snprintf(k2, sizeof k2, "%s" FV, member);
    if (!id) {
        srec_set(rec, member, "null", 4);
        srec_set(rec, k1, NULL, 0);
        srec_set(rec, k2, NULL, 0);
        return 0;
    }
    char *line = NULL;
    size_t len = 0;
    int rc = dvstore_get_record(db, table_id(r->env, dvschema_table_index(target)), id, &line, &len);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", target->logical, id);
        return -ENOENT;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        return rc;
    }
    struct rec tr;
    srec_init(&tr);
    srec_from_line(&tr, line, len);
    free(line);
    const char *name = target->primary_name ? srec_get(&tr, target->primary_name) : NULL;
    srec_set_str(rec, member, id);
    srec_set_str(rec, k1, target->logical);
    if (name && name[0] == '"')
        srec_set(rec, k2, name, strlen(name));
    else
        srec_set(rec, k2, NULL, 0);
    srec_release(&tr);
    return 0;
}

static bool is_lookup(const struct col_def *c)
{
    return c->type == COL_LOOKUP || c->type == COL_OWNER || c->type == COL_CUSTOMER;
}

/* Canonical raw JSON for a client value of column c, or a 400 reply. */
static int col_value(struct req *r, const struct table_def *t, const struct col_def *c,
                     const struct json_node *v, struct buf *raw)
{
    buf_reset(raw);
    if (v->type == JSON_NULL)
        return buf_addstr(raw, "null");
    if (v->type == JSON_ARRAY || v->type == JSON_OBJECT)
        goto bad;
    switch (c->type) {
    case COL_STRING: case COL_MEMO: case COL_FILENAME:
        if (v->type != JSON_STRING)
            goto bad;
        return buf_add_json_string(raw, v->str, v->str_len);
    case COL_INTEGER: case COL_BIGINT: case COL_MONEY: case COL_DECIMAL: case COL_PICKLIST: case COL_STATE: {
        if (v->type != JSON_NUMBER)
            goto bad;
        bool integral = !strpbrk(v->str, ".eE");
        if ((c->type == COL_INTEGER || c->type == COL_PICKLIST || c->type == COL_STATE) &&
            (!integral || strlen(v->str) > 11))
            goto bad;
        if (c->options) {
            long x = strtol(v->str, NULL, 10);
            if (!dvschema_option_label(c, (int)x)) {
                sreply_error(r, 400, "0x8004431a",
                             "A validation error occurred. The value %ld of '%s' on record of type '%s' is outside the valid range.",
                             x, c->name, t->logical);
                return -EINVAL;
            }
        }
        return buf_addstr(raw, v->str);
    }
    case COL_BOOLEAN:
        if (v->type != JSON_TRUE && v->type != JSON_FALSE)
            goto bad;
        return buf_addstr(raw, v->type == JSON_TRUE ? "true" : "false");
    case COL_DATETIME: {
        time_t tt;
        if (v->type != JSON_STRING || rfc3339_to_time(v->str, &tt))
            goto bad;
        char iso[32];
        dvsim_iso_time((int64_t)tt, iso);
        return buf_add_json_string(raw, iso, strlen(iso));
    }
    case COL_DATEONLY: {
        int y, m, dd;
        char extra;
        if (v->type != JSON_STRING || sscanf(v->str, "%4d-%2d-%2d%c", &y, &m, &dd, &extra) != 3 || v->str_len != 10)
            goto bad;
        return buf_add_json_string(raw, v->str, v->str_len);
    }
    default:
        goto bad;
    }
bad:
    sreply_error(r, 400, "0x80048d19",
                 "Error identified in Payload provided by the user for Entity :'%s', For more information on this "
                 "error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
                 "InnerException : Microsoft.OData.ODataException: Cannot convert the literal '%.60s' to the "
                 "expected type for property '%s'.", t->set, v->raw_len < 60 ? v->raw : "(long value)", c->name);
    return -EINVAL;
}

/* Apply the JSON body of r to rec. create: a new record (IsValidForCreate applies). body_id gets
 * the primary key when the body names one. 0, or a reply and -errno. */
static int apply_body(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec, bool create,
                      char body_id[37])
{
    struct json_doc *doc = NULL;
    struct dverr err;
    struct buf raw = BUF_INIT;
    dverr_clear(&err);
    body_id[0] = '\0';
    int rc = json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, &doc, &err);
    const struct json_node *root = rc ? NULL : json_root(doc);
    if (!root || root->type != JSON_OBJECT) {
        sreply_error(r, 400, "0x80048d19",
                     "Error identified in Payload provided by the user for Entity :'%s', For more information on "
                     "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
                     "InnerException : Microsoft.OData.ODataException: %s", t->set,
                     rc ? dverr_msg(&err) : "The payload must be a JSON object.");
        rc = -EINVAL;
        goto out;
    }
    bool names = false;
    for (const struct json_node *m = root->child; m && !rc; m = m->next) {
        const char *k = m->key;
        size_t kl = m->key_len;
        static const char bind[] = "@odata.bind";
        if (kl > sizeof bind - 1 && memcmp(k + kl - (sizeof bind - 1), bind, sizeof bind - 1) == 0) {
            size_t nl = kl - (sizeof bind - 1);
            const struct col_def *c = dvschema_col_by_nav(t, k, nl);
            if (!c) {
                sreply_error(r, 400, "0x80060888",
                             "An undeclared property '%.*s' which only has property annotations in the payload but no "
                             "property value was found in the payload. In OData, only declared navigation properties "
                             "and declared named streams can be represented as properties without values.",
                             (int)(nl > 80 ? 80 : nl), k);
                rc = -EINVAL;
                break;
            }
            if (m->type == JSON_NULL) {
                rc = set_lookup(r, db, rec, c, NULL, NULL);
                continue;
            }
            const struct table_def *tt = NULL;
            char id[37];
            int rr = m->type == JSON_STRING ? resolve_ref(m->str, &tt, id) : -EINVAL;
            if (rr == -ENOENT) {
                sreply_error(r, 400, "0x80060888", "Content-ID Reference: '%.20s' does not exist in the batch context.", m->str);
                rc = -EINVAL;
            } else if (rr || strcmp(tt->logical, c->target) != 0) {
                sreply_error(r, 400, "0x80060888", "The value of '%.*s@odata.bind' is not a valid reference to a %s record.",
                             (int)(nl > 80 ? 80 : nl), k, c->target);
                rc = -EINVAL;
            } else {
                rc = set_lookup(r, db, rec, c, tt, id);
            }
            continue;
        }
        if (memchr(k, '@', kl))
            continue; /* instance annotations (@odata.type, @odata.etag, x@...) are ignored */
        if (kl == strlen(t->pk) && memcmp(k, t->pk, kl) == 0) {
            if (m->type != JSON_STRING || !dvsim_guid_valid(m->str, m->str_len)) {
                sreply_error(r, 400, "0x80048d19", "The primary key %s must be a GUID string.", t->pk);
                rc = -EINVAL;
                break;
            }
            for (int i = 0; i < 36; i++)
                body_id[i] = (char)tolower((unsigned char)m->str[i]);
            body_id[36] = '\0';
            continue;
        }
        const struct col_def *c = NULL;
        for (size_t i = 0; i < t->n_cols && !c; i++)
            if (strlen(t->cols[i].name) == kl && memcmp(t->cols[i].name, k, kl) == 0)
                c = &t->cols[i];
        if (c && is_lookup(c)) {
            if (m->type != JSON_NULL) {
                sreply_error(r, 400, "0x80048d19", "Set the lookup '%s' with %s@odata.bind.", c->name, c->nav);
                rc = -EINVAL;
            } else {
                rc = set_lookup(r, db, rec, c, NULL, NULL);
            }
            continue;
        }
        if (!c || c->type == COL_PK) {
            sreply_error(r, 400, "0x80060888", "Invalid property '%.*s' was found in entity 'Microsoft.Dynamics.CRM.%s'.",
                         (int)(kl > 80 ? 80 : kl), k, t->logical);
            rc = -EINVAL;
            break;
        }
        if (!(c->flags & (create ? COLF_CREATE : COLF_UPDATE)))
            continue; /* read-only columns are ignored, as the service ignores them */
        if ((rc = col_value(r, t, c, m, &raw)) != 0)
            break;
        set_col(rec, c, c->name, raw.data, raw.len);
        if (!strcmp(c->name, "firstname") || !strcmp(c->name, "lastname"))
            names = true;
    }
    if (!rc && names && dvschema_col_by_member(t, "fullname", 8)) {
        /* fullname is computed from the parts, as the service does */
        struct buf full = BUF_INIT;
        const char *parts[2] = {srec_get(rec, "firstname"), srec_get(rec, "lastname")};
        for (int i = 0; i < 2; i++) {
            struct json_doc *pd = NULL;
            if (parts[i] && parts[i][0] == '"' && json_parse(parts[i], strlen(parts[i]), NULL, &pd, NULL) == 0) {
                if (full.len)
                    buf_addch(&full, ' ');
                buf_add(&full, json_root(pd)->str, json_root(pd)->str_len);
            }
            json_doc_free(pd);
        }
        srec_set_str(rec, "fullname", full.data ? full.data : "");
        buf_release(&full);
    }
out:
    json_doc_free(doc);
    buf_release(&raw);
    return rc;
}

/* Members every new record has: every column (null when not given), state, owner. */
static int create_defaults(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec)
{
    char member[128];
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct col_def *c = &t->cols[i];
        dvschema_member_name(c, member, sizeof member);
        if (c->type == COL_PK || srec_get(rec, member))
            continue;
        if (c->type == COL_STATE)
            set_col(rec, c, member, "0", 1);
        else if (!strcmp(c->name, "statuscode"))
            set_col(rec, c, member, "1", 1);
        else if (c->type == COL_OWNER) {
            int rc = set_lookup(r, db, rec, c, &dvschema_tables[T_SYSTEMUSER], DVSIM_APP_USER_ID);
            if (rc)
                return rc;
        } else if (c->type == COL_BOOLEAN)
            set_col(rec, c, member, "false", 5);
        else
            srec_set(rec, member, "null", 4);
    }
    if (dvschema_table_index(t) == T_ANNOTATION) {
        const char *body = srec_get(rec, "documentbody");
        size_t n = body && body[0] == '"' ? strlen(body) - 2 : 0;
        size_t bytes = n / 4 * 3;
        if (n >= 2 && body[n] == '=')
            bytes -= body[n - 1] == '=' ? 2 : 1;
        char num[32];
        snprintf(num, sizeof num, "%zu", bytes);
        set_col(rec, dvschema_col_by_member(t, "filesize", 8), "filesize", num, strlen(num));
        set_col(rec, dvschema_col_by_member(t, "isdocument", 10), "isdocument", n ? "true" : "false", n ? 4 : 5);
    }
    return 0;
}

static void represent(struct req *r, const struct table_def *t, const char *line, size_t len, int status)
{
    char ctx_sel[600];
    struct projection proj;
    if (webapi_projection_for(r, t, &proj, ctx_sel, sizeof ctx_sel))
        return;
    struct buf body = BUF_INIT;
    dvline_project(&proj, line, len, &body);
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"@odata.context\":\"");
    sreq_base(r, &r->out);
    buf_printf(&r->out, "/org/%s%s/$metadata#%s%s/$entity\",", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX,
               t->set, ctx_sel);
    buf_add(&r->out, body.data + 1, body.len - 1);
    buf_release(&body);
    sreply_json(r, status);
}

static bool want_representation(struct req *r)
{
    struct buf p = BUF_INIT;
    sreq_header_all(r, "Prefer", &p);
    bool yes = p.data && strstr(p.data, "return=representation");
    buf_release(&p);
    return yes;
}

/* POST (key NULL) or PATCH upsert (key given). */
static void write_record(struct req *r, const struct table_def *t, const char *key)
{
    struct wsess ws = {NULL, false};
    struct rec rec;
    struct buf out = BUF_INIT, url = BUF_INIT;
    char *old = NULL;
    size_t old_len = 0;
    char body_id[37], id[37];
    bool ok = false, create = false;
    srec_init(&rec);
    if (wsess_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    if (key) {
        int rc = dvstore_get_record(ws.db, tid, key, &old, &old_len);
        if (rc && rc != -ENOENT) {
            sreply_error(r, 500, "0x80040216", "database error");
            goto out;
        }
    }
    const char *if_match = sreq_header(r, "If-Match");
    const char *if_none = sreq_header(r, "If-None-Match");
    if (if_none && !strcmp(if_none, "null"))
        if_none = NULL;
    if (key && if_match && !old) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, key);
        goto out;
    }
    if (key && old && if_match && strcmp(if_match, "*") != 0) {
        char etag[64];
        line_etag(old, old_len, etag, sizeof etag);
        if (strcmp(etag, if_match) != 0) {
            sreply_error(r, 412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.");
            goto out;
        }
    }
    if (key && old && if_none && !strcmp(if_none, "*")) {
        sreply_error(r, 412, "0x80040237", "A record with matching key values already exists.");
        goto out;
    }
    if (old && srec_from_line(&rec, old, old_len)) {
        sreply_error(r, 500, "0x80040216", "stored record is damaged");
        goto out;
    }
    create = !old;
    if (apply_body(r, ws.db, t, &rec, create, body_id))
        goto out;
    if (key && body_id[0] && strcmp(key, body_id) != 0) {
        sreply_error(r, 400, "0x80048d19", "The primary key in the body does not match the key in the URL.");
        goto out;
    }
    if (key)
        snprintf(id, sizeof id, "%s", key);
    else if (body_id[0])
        snprintf(id, sizeof id, "%s", body_id);
    else
        random_guid(r->d, id);
    if (!key && body_id[0]) {
        char *x = NULL;
        size_t xl;
        if (dvstore_get_record(ws.db, tid, id, &x, &xl) == 0) {
            free(x);
            sreply_error(r, 412, "0x80040237", "A record with matching key values already exists.");
            goto out;
        }
    }
    srec_set_str(&rec, t->pk, id);
    if (create && create_defaults(r, ws.db, t, &rec))
        goto out;
    int64_t ver = 0;
    if (dvstore_next_version(ws.db, r->env, &ver)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    srec_stamp(&rec, t, ver, (int64_t)time(NULL), create);
    const char *ov = srec_get(&rec, "overriddencreatedon");
    if (create && ov && ov[0] == '"') {
        char f[64], iso[32];
        snprintf(iso, sizeof iso, "%.*s", (int)(strlen(ov) - 2 < 31 ? strlen(ov) - 2 : 31), ov + 1);
        srec_set(&rec, "createdon", ov, strlen(ov));
        dvsim_fmt_datetime(iso, f, sizeof f);
        srec_set_str(&rec, "createdon" FV, f);
    }
    struct write_ctx w = {r->d, ws.db, r->env, true};
    if (srec_render(&rec, t->pk, &out) || dvstore_put_record(ws.db, tid, id, ver, out.data, out.len) ||
        dvsim_audit_write(&w, t, id, create ? 1 : 2)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = wsess_finish(r, &ws, ok);
    if (ok) {
        entity_url(r, t, id, &url);
        sreq_add_header(r, "OData-EntityId", url.data);
        if (want_representation(r)) {
            represent(r, t, out.data, out.len, create && !key ? 201 : create ? 201 : 200);
        } else {
            reply_no_content(r);
        }
    }
    free(old);
    srec_release(&rec);
    buf_release(&out);
    buf_release(&url);
}

/* Remove the N:N rows that point at a deleted record. */
static int drop_intersect_rows(struct req *r, sqlite3 *db, const struct table_def *t, const char *id)
{
    const char *col = NULL;
    for (size_t i = 0; i < dvschema_n_n2n; i++) {
        if (!strcmp(dvschema_n2n[i].entity1, t->logical))
            col = dvschema_n2n[i].entity1_attr;
        else if (!strcmp(dvschema_n2n[i].entity2, t->logical))
            col = dvschema_n2n[i].entity2_attr;
    }
    if (!col)
        return 0;
    int tid = table_id(r->env, T_PROJECT_CONTACT);
    sqlite3_stmt *st = NULL;
    char **victims = NULL;
    size_t n = 0;
    int rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT id, line FROM rec WHERE tid=?1 AND del=0", -1, &st, NULL));
    if (!rc) {
        sqlite3_bind_int(st, 1, tid);
        char want[40];
        snprintf(want, sizeof want, "\"%s\"", id);
        while (sqlite3_step(st) == SQLITE_ROW) {
            struct lmember m[16];
            int nm = dvline_scan(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), m, 16);
            for (int i = 0; i < nm; i++)
                if (m[i].key_len == strlen(col) && !memcmp(m[i].key, col, m[i].key_len) && m[i].val_len == 38 &&
                    !memcmp(m[i].val, want, 38)) {
                    char **nv = realloc(victims, (n + 1) * sizeof *nv);
                    if (nv) {
                        victims = nv;
                        victims[n++] = strdup((const char *)sqlite3_column_text(st, 0));
                    }
                }
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        int64_t ver;
        if (!rc)
            rc = dvstore_next_version(db, r->env, &ver);
        if (!rc)
            rc = dvstore_delete_record(db, tid, victims[i], ver);
        free(victims[i]);
    }
    free(victims);
    return rc;
}

static void delete_record(struct req *r, const struct table_def *t, const char *key)
{
    struct wsess ws = {NULL, false};
    bool ok = false;
    char *old = NULL;
    size_t old_len = 0;
    if (wsess_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = dvstore_get_record(ws.db, tid, key, &old, &old_len);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, key);
        goto out;
    }
    const char *if_match = sreq_header(r, "If-Match");
    if (!rc && if_match && strcmp(if_match, "*") != 0) {
        char etag[64];
        line_etag(old, old_len, etag, sizeof etag);
        if (strcmp(etag, if_match) != 0) {
            sreply_error(r, 412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.");
            goto out;
        }
    }
    int64_t ver = 0;
    struct write_ctx w = {r->d, ws.db, r->env, true};
    if (rc || dvstore_next_version(ws.db, r->env, &ver) || dvstore_delete_record(ws.db, tid, key, ver) ||
        drop_intersect_rows(r, ws.db, t, key) || dvsim_audit_write(&w, t, key, 3)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = wsess_finish(r, &ws, ok);
    if (ok)
        reply_no_content(r);
    free(old);
}

/* ---- file columns and note bodies ---- */

static void file_get(struct req *r, const struct table_def *t, const char *id, const struct col_def *c)
{
    sqlite3 *db = dvstore_get(r->d->store);
    char *line = NULL;
    size_t len = 0;
    sqlite3_stmt *st = NULL;
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = db ? dvstore_get_record(db, tid, id, &line, &len) : -EIO;
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
        goto out;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    if (c->type != COL_FILE) { /* a Base64 text column such as annotation.documentbody */
        struct lmember m[128];
        int nm = dvline_scan(line, len, m, 128);
        buf_reset(&r->out);
        for (int i = 0; i < nm; i++)
            if (m[i].key_len == strlen(c->name) && !memcmp(m[i].key, c->name, m[i].key_len) && m[i].val[0] == '"')
                buf_add(&r->out, m[i].val + 1, m[i].val_len - 2); /* Base64 needs no unescaping */
        if (!r->out.data)
            buf_addstr(&r->out, "");
        r->status = 200;
        r->content_type = "text/plain";
        goto out;
    }
    rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT name, mimetype, length(data) FROM files WHERE tid=?1 AND id=?2 AND col=?3",
                                          -1, &st, NULL));
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    sqlite3_bind_int(st, 1, tid);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sreply_error(r, 404, "0x80060891", "No file attachment found for attribute: %s EntityId: %s.", c->name, id);
        goto out;
    }
    char name[512], mime[128], num[32];
    snprintf(name, sizeof name, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(mime, sizeof mime, "%s", sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "application/octet-stream");
    int64_t size = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    st = NULL;
    int64_t from = 0, to = size - 1;
    const char *range = sreq_header(r, "Range");
    bool ranged = false;
    if (range) {
        long long a = -1, b = -1;
        if (sscanf(range, "bytes=%lld-%lld", &a, &b) >= 1 && a >= 0) {
            ranged = true;
            from = a;
            if (b >= a && b < size)
                to = b;
        }
        if (!ranged || from >= size) {
            snprintf(num, sizeof num, "bytes */%lld", (long long)size);
            sreq_add_header(r, "Content-Range", num);
            sreply_error(r, 416, "0x80060891", "Requested range not satisfiable.");
            goto out;
        }
    }
    rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT substr(data, ?4, ?5) FROM files WHERE tid=?1 AND id=?2 AND col=?3",
                                          -1, &st, NULL));
    if (!rc) {
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, from + 1);
        sqlite3_bind_int64(st, 5, to - from + 1);
    }
    if (rc || sqlite3_step(st) != SQLITE_ROW) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    buf_reset(&r->out);
    buf_add(&r->out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    snprintf(num, sizeof num, "%lld", (long long)size);
    sreq_add_header(r, "x-ms-file-size", num);
    sreq_add_header(r, "x-ms-file-name", name);
    sreq_add_header(r, "mimetype", mime);
    sreq_add_header(r, "Accept-Ranges", "bytes");
    if (ranged) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)from, (long long)to, (long long)size);
        sreq_add_header(r, "Content-Range", cr);
        sreq_add_header(r, "x-ms-chunk-size", "4194304");
        r->status = 206;
    } else {
        r->status = 200;
    }
    r->content_type = "application/octet-stream";
out:
    sqlite3_finalize(st);
    free(line);
    dvstore_put(r->d->store, db);
}

#define FILE_MAX_BYTES (131072u * 1024u) /* the file columns' MaxSizeInKB */
#define UPLOAD_CHUNK (4u << 20)          /* x-ms-chunk-size of a chunked upload */

static void file_store(struct req *r, const struct table_def *t, const char *id, const struct col_def *c,
                       bool del, const char *fname, const void *data, size_t len);

/* Chunked upload (the service's x-ms-transfer-mode: chunked): the first PATCH opens a session
 * and answers 200 with its Location; each chunk is a PATCH there with Content-Range a-b/total, in
 * order: 206 until the last, which stores the file (204). Sessions live in the uploads table, their
 * parts in upload_parts. */
static void file_upload_chunked(struct req *r, const struct table_def *t, const char *id, const struct col_def *c)
{
    const char *token = sreq_arg(r, "sessiontoken");
    int tid = table_id(r->env, dvschema_table_index(t));
    sqlite3 *db = dvstore_get(r->d->store);
    sqlite3_stmt *st = NULL;
    if (!token) { /* open a session */
        const char *fname = sreq_arg(r, "x-ms-file-name");
        if (!fname || !*fname) {
            sreply_error(r, 400, "0x80060891", "The x-ms-file-name parameter is required to upload a file.");
            goto out;
        }
        char tok[37];
        random_guid(r->d, tok);
        if (sqlite3_prepare_v2(db, "INSERT INTO uploads VALUES(?1, ?2, ?3, ?4, ?5, 0)", -1, &st, NULL) != SQLITE_OK)
            goto fail;
        sqlite3_bind_text(st, 1, tok, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, tid);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, fname, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto fail;
        struct buf loc = BUF_INIT;
        sreq_base(r, &loc);
        buf_addstr(&loc, r->path);
        buf_addstr(&loc, "?x-ms-file-name=");
        dvsim_url_encode(&loc, fname, strlen(fname));
        buf_printf(&loc, "&sessiontoken=%s", tok);
        sreq_add_header(r, "Location", loc.data);
        buf_release(&loc);
        char cs[32];
        snprintf(cs, sizeof cs, "%u", UPLOAD_CHUNK);
        sreq_add_header(r, "x-ms-chunk-size", cs);
        sreq_add_header(r, "Accept-Ranges", "bytes");
        r->status = 200;
        goto out;
    }
    /* a chunk: Content-Range bytes a-b/total, a = the bytes received so far */
    const char *cr = sreq_header(r, "Content-Range");
    unsigned long long a, b, total;
    if (!cr || sscanf(cr, "bytes %llu-%llu/%llu", &a, &b, &total) != 3 || b < a || b >= total ||
        b - a + 1 != r->body.len || total > FILE_MAX_BYTES) {
        sreply_error(r, 400, "0x80060891", "A chunk needs Content-Range: bytes a-b/total matching its body (total at most %u).",
                     FILE_MAX_BYTES);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "SELECT received, name FROM uploads WHERE token = ?1 AND tid = ?2 AND id = ?3 AND col = ?4",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, tid);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sreply_error(r, 404, "0x80060891", "No upload session %s for this column.", token);
        goto out;
    }
    unsigned long long have = (unsigned long long)sqlite3_column_int64(st, 0);
    char fname[1024];
    snprintf(fname, sizeof fname, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    st = NULL;
    if (a != have) {
        sreply_error(r, 400, "0x80060891", "Chunks must come in order: expected offset %llu, got %llu.", have, a);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO upload_parts VALUES(?1, ?2, ?3)", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a);
    sqlite3_bind_blob64(st, 3, r->body.data ? r->body.data : "", r->body.len, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE uploads SET received = ?2 WHERE token = ?1", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(b + 1));
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (b + 1 < total) {
        r->status = 206;
        goto out;
    }
    /* the last chunk: store the file as a single upload would, then drop the session */
    if (sqlite3_prepare_v2(db, "SELECT data FROM upload_parts WHERE token = ?1 ORDER BY off", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    struct buf data = BUF_INIT;
    while (sqlite3_step(st) == SQLITE_ROW)
        buf_add(&data, sqlite3_column_blob(st, 0) ? sqlite3_column_blob(st, 0) : "", (size_t)sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    st = NULL;
    if (data.len != total) {
        buf_release(&data);
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        if (sqlite3_prepare_v2(db, k ? "DELETE FROM upload_parts WHERE token = ?1" : "DELETE FROM uploads WHERE token = ?1", -1,
                               &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    dvstore_put(r->d->store, db);
    db = NULL;
    file_store(r, t, id, c, false, fname, data.data ? data.data : "", data.len);
    buf_release(&data);
    goto out;
fail:
    sreply_error(r, 500, "0x80040216", "database error");
out:
    sqlite3_finalize(st);
    if (db)
        dvstore_put(r->d->store, db);
}

/* PATCH <set>(<id>)/<filecol> with the bytes (upload; chunked when asked) or DELETE it. */
static void file_put(struct req *r, const struct table_def *t, const char *id, const struct col_def *c, bool del)
{
    const char *mode = sreq_header(r, "x-ms-transfer-mode");
    if (!del && ((mode && !strcasecmp(mode, "chunked")) || sreq_arg(r, "sessiontoken"))) {
        file_upload_chunked(r, t, id, c);
        return;
    }
    const char *fname = sreq_header(r, "x-ms-file-name");
    if (!del && (!fname || !*fname)) {
        sreply_error(r, 400, "0x80060891", "The x-ms-file-name header is required to upload a file.");
        return;
    }
    if (!del && r->body.len > FILE_MAX_BYTES) {
        sreply_error(r, 400, "0x80090001", "The file is larger than MaxSizeInKB (131072).");
        return;
    }
    file_store(r, t, id, c, del, fname, r->body.data ? r->body.data : "", r->body.len);
}

/* Store (or delete) the column's file and stamp the record, as one write session; 204. */
static void file_store(struct req *r, const struct table_def *t, const char *id, const struct col_def *c,
                       bool del, const char *fname, const void *data, size_t len)
{
    struct wsess ws = {NULL, false};
    struct rec rec;
    struct buf out = BUF_INIT;
    char *old = NULL;
    size_t old_len;
    bool ok = false;
    srec_init(&rec);
    if (wsess_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = dvstore_get_record(ws.db, tid, id, &old, &old_len);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
        goto out;
    }
    sqlite3_stmt *st = NULL;
    char fid[37], name_col[140];
    snprintf(name_col, sizeof name_col, "%s_name", c->name);
    random_guid(r->d, fid);
    if (!rc)
        rc = srec_from_line(&rec, old, old_len);
    if (!rc)
        rc = dvstore_errno(sqlite3_prepare_v2(ws.db, del ? "DELETE FROM files WHERE tid=?1 AND id=?2 AND col=?3"
                                                         : "INSERT OR REPLACE INTO files(tid,id,col,name,mimetype,data) "
                                                           "VALUES(?1,?2,?3,?4,?5,?6)", -1, &st, NULL));
    if (!rc) {
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
        if (!del) {
            const char *ct = sreq_header(r, "Content-Type");
            sqlite3_bind_text(st, 4, fname, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 5, ct && strncmp(ct, "application/octet-stream", 24) ? ct : "application/octet-stream", -1,
                              SQLITE_TRANSIENT);
            sqlite3_bind_blob64(st, 6, data, len, SQLITE_STATIC);
        }
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_finalize(st);
    int64_t ver = 0;
    if (!rc)
        rc = dvstore_next_version(ws.db, r->env, &ver);
    if (!rc) {
        srec_set_str(&rec, c->name, del ? NULL : fid);
        srec_set_str(&rec, name_col, del ? NULL : fname);
        srec_stamp(&rec, t, ver, (int64_t)time(NULL), false);
        struct write_ctx w = {r->d, ws.db, r->env, true};
        rc = srec_render(&rec, t->pk, &out);
        rc = rc ? rc : dvstore_put_record(ws.db, tid, id, ver, out.data, out.len);
        rc = rc ? rc : dvsim_audit_write(&w, t, id, 2);
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = wsess_finish(r, &ws, ok);
    if (ok)
        reply_no_content(r);
    free(old);
    srec_release(&rec);
    buf_release(&out);
}

/* ---- $ref: N:N associations and single-valued navigation ---- */

static const struct n2n_def *n2n_for(const struct table_def *t, const char *nav, size_t nl, bool *first)
{
    for (size_t i = 0; i < dvschema_n_n2n; i++) {
        const struct n2n_def *n = &dvschema_n2n[i];
        if (!strcmp(n->entity1, t->logical) && strlen(n->entity1_nav) == nl && !memcmp(n->entity1_nav, nav, nl)) {
            *first = true;
            return n;
        }
        if (!strcmp(n->entity2, t->logical) && strlen(n->entity2_nav) == nl && !memcmp(n->entity2_nav, nav, nl)) {
            *first = false;
            return n;
        }
    }
    return NULL;
}

/* Find the intersect row linking a and b; id_out empty when none. */
static int find_link(struct req *r, sqlite3 *db, const struct n2n_def *n, const char *id1, const char *id2, char id_out[37])
{
    sqlite3_stmt *st = NULL;
    id_out[0] = '\0';
    int rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT id, line FROM rec WHERE tid=?1 AND del=0", -1, &st, NULL));
    if (rc)
        return rc;
    sqlite3_bind_int(st, 1, table_id(r->env, T_PROJECT_CONTACT));
    char w1[40], w2[40];
    snprintf(w1, sizeof w1, "\"%s\"", id1);
    snprintf(w2, sizeof w2, "\"%s\"", id2);
    while (!id_out[0] && sqlite3_step(st) == SQLITE_ROW) {
        struct lmember m[16];
        int nm = dvline_scan(sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), m, 16);
        bool a = false, b = false;
        for (int i = 0; i < nm; i++) {
            if (m[i].val_len != 38)
                continue;
            if (m[i].key_len == strlen(n->entity1_attr) && !memcmp(m[i].key, n->entity1_attr, m[i].key_len))
                a = !memcmp(m[i].val, w1, 38);
            if (m[i].key_len == strlen(n->entity2_attr) && !memcmp(m[i].key, n->entity2_attr, m[i].key_len))
                b = !memcmp(m[i].val, w2, 38);
        }
        if (a && b)
            snprintf(id_out, 37, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    return 0;
}

static void ref_route(struct req *r, const struct table_def *t, const char *key, const char *nav, size_t nl,
                      const char *other_id_in_url)
{
    bool first = false;
    const struct n2n_def *n = n2n_for(t, nav, nl, &first);
    const struct col_def *single = n ? NULL : dvschema_col_by_nav(t, nav, nl);
    if (!n && !single) {
        sreply_error(r, 400, "0x80060888", "'%.*s' is not a navigation property of %s.", (int)(nl > 80 ? 80 : nl), nav, t->logical);
        return;
    }
    const struct table_def *ot = NULL;
    char oid[37] = "";
    bool post = !strcmp(r->method, "POST"), put = !strcmp(r->method, "PUT"), del = !strcmp(r->method, "DELETE");
    if (post || put) {
        struct json_doc *doc = NULL;
        const char *ref = NULL;
        if (json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, &doc, NULL) == 0)
            ref = json_get_str(json_root(doc), "@odata.id");
        int rr = ref ? resolve_ref(ref, &ot, oid) : -EINVAL;
        json_doc_free(doc);
        if (rr) {
            sreply_error(r, 400, "0x80048d19", rr == -ENOENT ? "Content-ID Reference does not exist in the batch context."
                                                           : "The body must be {\"@odata.id\":\"<entity set>(<id>)\"}.");
            return;
        }
    } else if (del && n) {
        const char *q = other_id_in_url ? NULL : sreq_arg(r, "$id");
        if (other_id_in_url)
            snprintf(oid, sizeof oid, "%s", other_id_in_url);
        else if (!q || resolve_ref(q, &ot, oid)) {
            sreply_error(r, 400, "0x80060888", "Give the record to disassociate as $id=<url> or <nav>(<id>)/$ref.");
            return;
        }
    } else if (!del) {
        sreply_error(r, 405, "0x80060888", "Use POST, PUT or DELETE with $ref.");
        return;
    }
    const char *other_logical = n ? (first ? n->entity2 : n->entity1) : single->target;
    if (ot && strcmp(ot->logical, other_logical) != 0) {
        sreply_error(r, 400, "0x80060888", "The reference must point at a %s record.", other_logical);
        return;
    }
    struct wsess ws = {NULL, false};
    bool ok = false;
    struct rec rec;
    struct buf out = BUF_INIT;
    char *line = NULL;
    size_t len;
    srec_init(&rec);
    if (wsess_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = dvstore_get_record(ws.db, tid, key, &line, &len);
    if (rc) {
        sreply_error(r, rc == -ENOENT ? 404 : 500, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, key);
        goto out;
    }
    int64_t ver = 0;
    if (single) {
        /* PUT/DELETE <set>(<id>)/<nav>/$ref: set or clear a lookup */
        srec_from_line(&rec, line, len);
        if (set_lookup(r, ws.db, &rec, single, del ? NULL : ot, del ? NULL : oid))
            goto out;
        struct write_ctx w = {r->d, ws.db, r->env, true};
        rc = dvstore_next_version(ws.db, r->env, &ver);
        if (!rc) {
            srec_stamp(&rec, t, ver, (int64_t)time(NULL), false);
            rc = srec_render(&rec, t->pk, &out);
        }
        rc = rc ? rc : dvstore_put_record(ws.db, tid, key, ver, out.data, out.len);
        rc = rc ? rc : dvsim_audit_write(&w, t, key, 2);
    } else {
        const char *id1 = first ? key : oid, *id2 = first ? oid : key;
        char link[37];
        if (post) {
            const struct table_def *o = dvschema_table_by_logical(other_logical, strlen(other_logical));
            char *x = NULL;
            size_t xl;
            if (dvstore_get_record(ws.db, table_id(r->env, dvschema_table_index(o)), oid, &x, &xl)) {
                sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", other_logical, oid);
                goto out;
            }
            free(x);
        }
        rc = find_link(r, ws.db, n, id1, id2, link);
        if (!rc && post && !link[0]) {
            const struct table_def *it = &dvschema_tables[T_PROJECT_CONTACT];
            char lid[37], num[32], etag[40];
            random_guid(r->d, lid);
            rc = dvstore_next_version(ws.db, r->env, &ver);
            snprintf(num, sizeof num, "%lld", (long long)ver);
            snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
            srec_set_str(&rec, it->pk, lid);
            srec_set_str(&rec, n->entity1_attr, id1);
            srec_set_str(&rec, n->entity2_attr, id2);
            srec_set(&rec, "versionnumber", num, strlen(num));
            srec_set_str(&rec, "@odata.etag", etag);
            rc = rc ? rc : srec_render(&rec, it->pk, &out);
            rc = rc ? rc : dvstore_put_record(ws.db, table_id(r->env, T_PROJECT_CONTACT), lid, ver, out.data, out.len);
        } else if (!rc && del && link[0]) {
            rc = dvstore_next_version(ws.db, r->env, &ver);
            rc = rc ? rc : dvstore_delete_record(ws.db, table_id(r->env, T_PROJECT_CONTACT), link, ver);
        }
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = wsess_finish(r, &ws, ok);
    if (ok)
        reply_no_content(r);
    free(line);
    srec_release(&rec);
    buf_release(&out);
}

void webwrite_route(struct req *r, const struct table_def *t, const char *key, const char *sub)
{
    const char *m = r->method;
    if (t->read_only || (t->intersect && !sub)) {
        sreply_error(r, 405, "0x80040800", "The '%s' method does not support entities of type '%s'%s.", m, t->logical,
                     t->intersect ? " (associate records with $ref)" : "");
        return;
    }
    if (!sub) {
        if (!key && !strcmp(m, "POST"))
            write_record(r, t, NULL);
        else if (key && !strcmp(m, "PATCH"))
            write_record(r, t, key);
        else if (key && !strcmp(m, "DELETE"))
            delete_record(r, t, key);
        else
            sreply_error(r, 405, "0x80060888", "Method %s is not allowed on %s.", m, key ? "a record" : "a collection");
        return;
    }
    /* sub: /<name>[/$value] | /<nav>/$ref | /<nav>(<id>)/$ref */
    const char *name = sub + 1;
    size_t nl = strcspn(name, "/(");
    const char *rest = name + nl;
    if (!strcmp(rest, "/$ref")) {
        ref_route(r, t, key, name, nl, NULL);
        return;
    }
    if (*rest == '(' && dvsim_guid_valid(rest + 1, 36) && !strcmp(rest + 37, ")/$ref")) {
        char oid[37];
        for (int i = 0; i < 36; i++)
            oid[i] = (char)tolower((unsigned char)rest[1 + i]);
        oid[36] = '\0';
        if (strcmp(m, "DELETE")) {
            sreply_error(r, 405, "0x80060888", "Use DELETE with <nav>(<id>)/$ref.");
            return;
        }
        ref_route(r, t, key, name, nl, oid);
        return;
    }
    const struct col_def *c = NULL;
    for (size_t i = 0; i < t->n_cols && !c; i++)
        if (strlen(t->cols[i].name) == nl && !memcmp(t->cols[i].name, name, nl))
            c = &t->cols[i];
    if (!c) {
        sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.*s'.", (int)(nl > 80 ? 80 : nl), name);
        return;
    }
    if (!strcmp(rest, "/$value") && !strcmp(m, "GET") && (c->type == COL_FILE || c->type == COL_MEMO)) {
        file_get(r, t, key, c);
        return;
    }
    if (*rest == '\0' && c->type == COL_FILE && (!strcmp(m, "PATCH") || !strcmp(m, "PUT") || !strcmp(m, "DELETE"))) {
        file_put(r, t, key, c, !strcmp(m, "DELETE"));
        return;
    }
    sreply_error(r, 501, "0x80060888", "dvsim does not support %s on %s/%.*s%s.", m, t->set, (int)nl, name, rest);
}

/* ---- $batch ---- */
#define BATCH_MAX 1000

struct bpart {
    const char *h, *he;    /* MIME headers */
    const char *b, *be;    /* content */
};

/* Split [p, end) by "--boundary" lines. Returns the part count or -EINVAL. */
static int split_multipart(const char *p, const char *end, const char *boundary, struct bpart *parts, int max)
{
    char delim[128];
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    if (dl <= 2 || (size_t)dl >= sizeof delim)
        return -EINVAL;
    const char *s = memmem(p, (size_t)(end - p), delim, (size_t)dl);
    int n = 0;
    while (s) {
        const char *after = s + dl;
        if (after + 2 <= end && after[0] == '-' && after[1] == '-')
            return n; /* closing delimiter */
        const char *line_end = memchr(after, '\n', (size_t)(end - after));
        if (!line_end)
            return -EINVAL;
        const char *start = line_end + 1;
        const char *next = start;
        const char *found = NULL;
        while (next < end && (found = memmem(next, (size_t)(end - next), delim, (size_t)dl)) != NULL) {
            if (found == start || found[-1] == '\n')
                break;
            next = found + 1;
            found = NULL;
        }
        if (!found)
            return -EINVAL;
        if (n >= max)
            return -E2BIG;
        const char *cend = found;
        if (cend > start && cend[-1] == '\n')
            cend--;
        if (cend > start && cend[-1] == '\r')
            cend--;
        /* headers end at the first blank line */
        const char *hb = start, *q = start;
        const char *body = NULL;
        while (q < cend) {
            const char *nl = memchr(q, '\n', (size_t)(cend - q));
            const char *le = nl ? nl : cend;
            size_t ll = (size_t)(le - q);
            if (ll && q[ll - 1] == '\r')
                ll--;
            if (ll == 0) {
                body = nl ? nl + 1 : cend;
                break;
            }
            q = nl ? nl + 1 : cend;
        }
        parts[n].h = hb;
        parts[n].he = body ? body : cend;
        parts[n].b = body ? body : cend;
        parts[n].be = cend;
        n++;
        s = found;
    }
    return -EINVAL;
}

static bool header_in(const char *h, const char *he, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    while (h < he) {
        const char *e = memchr(h, '\n', (size_t)(he - h));
        const char *le = e ? e : he;
        if ((size_t)(le - h) > nl && !strncasecmp(h, name, nl) && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (v < le && *v == ' ')
                v++;
            size_t vl = (size_t)(le - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            snprintf(out, n, "%.*s", (int)(vl < n ? vl : n - 1), v);
            return true;
        }
        h = e ? e + 1 : he;
    }
    return false;
}

static int boundary_of(const char *ct, char *out, size_t n)
{
    const char *p = ct ? strcasestr(ct, "boundary=") : NULL;
    if (!p || strncasecmp(ct, "multipart/mixed", 15) != 0)
        return -EINVAL;
    p += 9;
    bool q = *p == '"';
    if (q)
        p++;
    size_t l = strcspn(p, q ? "\"" : "; \t");
    if (!l || l >= n)
        return -EINVAL;
    memcpy(out, p, l);
    out[l] = '\0';
    return 0;
}

struct bitem {
    int changeset;          /* -1: top level */
    char content_id[32];
    char method[10];
    char *url;
    struct qarg hdrs[24];
    int nh;
    char *body;
    size_t blen;
    int status;             /* result */
    struct buf resp;        /* the part's HTTP response text */
};

static int parse_http_part(const struct bpart *p, int cs, struct bitem *it)
{
    memset(it, 0, sizeof *it);
    it->changeset = cs;
    char ct[128];
    if (!header_in(p->h, p->he, "Content-Type", ct, sizeof ct) || strncasecmp(ct, "application/http", 16) != 0)
        return -EINVAL;
    header_in(p->h, p->he, "Content-ID", it->content_id, sizeof it->content_id);
    const char *s = p->b, *end = p->be;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl)
        nl = end;
    char line[4096];
    size_t ll = (size_t)(nl - s);
    if (ll && s[ll - 1] == '\r')
        ll--;
    if (ll >= sizeof line)
        return -E2BIG;
    memcpy(line, s, ll);
    line[ll] = '\0';
    char url[4096];
    if (sscanf(line, "%9s %4095s", it->method, url) != 2)
        return -EINVAL;
    it->url = strdup(url);
    const char *q = nl < end ? nl + 1 : end;
    while (q < end) {
        const char *e = memchr(q, '\n', (size_t)(end - q));
        const char *le = e ? e : end;
        size_t l = (size_t)(le - q);
        if (l && q[l - 1] == '\r')
            l--;
        if (l == 0) {
            q = e ? e + 1 : end;
            break;
        }
        const char *colon = memchr(q, ':', l);
        if (colon && it->nh < 24) {
            const char *v = colon + 1;
            while (v < q + l && *v == ' ')
                v++;
            it->hdrs[it->nh].key = strndup(q, (size_t)(colon - q));
            it->hdrs[it->nh].val = strndup(v, (size_t)(q + l - v));
            if (!strcasecmp(it->hdrs[it->nh].key, "Content-ID") && !it->content_id[0])
                snprintf(it->content_id, sizeof it->content_id, "%s", it->hdrs[it->nh].val);
            it->nh++;
        }
        q = e ? e + 1 : end;
    }
    it->blen = (size_t)(end - q);
    it->body = malloc(it->blen + 1);
    if (!it->url || !it->body)
        return -ENOMEM;
    memcpy(it->body, q, it->blen);
    it->body[it->blen] = '\0';
    return 0;
}

static void bitem_release(struct bitem *it)
{
    free(it->url);
    free(it->body);
    for (int i = 0; i < it->nh; i++) {
        free(it->hdrs[i].key);
        free(it->hdrs[i].val);
    }
    buf_release(&it->resp);
}

static const char *reason(int st)
{
    switch (st) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return st >= 500 ? "Internal Server Error" : "Error";
    }
}

struct cid_map {
    char id[32];
    char path[160];         /* "<set>(<guid>)" */
};

/* Replace "$n" references (URL start, JSON strings) with the created records. */
static void substitute(char **s, size_t *len, const struct cid_map *map, int n_map, bool url)
{
    for (int i = 0; i < n_map; i++) {
        char pat[40], rep[200];
        if (url) {
            snprintf(pat, sizeof pat, "$%s", map[i].id);
            size_t pl = strlen(pat);
            if (!strncmp(*s, pat, pl) && ((*s)[pl] == '\0' || (*s)[pl] == '/' || (*s)[pl] == '?')) {
                struct buf b = BUF_INIT;
                buf_printf(&b, "%s%s", map[i].path, *s + pl);
                free(*s);
                *len = b.len;
                *s = buf_detach(&b);
            }
            continue;
        }
        snprintf(pat, sizeof pat, "\"$%s\"", map[i].id);
        snprintf(rep, sizeof rep, "\"/%s\"", map[i].path);
        char *hit;
        while ((hit = strstr(*s, pat)) != NULL) {
            struct buf b = BUF_INIT;
            buf_add(&b, *s, (size_t)(hit - *s));
            buf_addstr(&b, rep);
            buf_addstr(&b, hit + strlen(pat));
            free(*s);
            *len = b.len;
            *s = buf_detach(&b);
        }
    }
}

/* Run one part as a request of its own (same org, same token, the batch's transaction). */
static void exec_item(struct req *r, struct bitem *it, sqlite3 *txn, const struct cid_map *map, int n_map)
{
    struct req *sub = calloc(1, sizeof *sub);
    if (!sub) {
        it->status = 500;
        return;
    }
    substitute(&it->url, &it->blen /* unused for url */, map, n_map, true);
    size_t blen = it->blen;
    substitute(&it->body, &blen, map, n_map, false);
    it->blen = strlen(it->body);
    sub->d = r->d;
    sub->method = it->method;
    sub->env = r->env;
    sub->inner = true;
    sub->outer = r;
    sub->txn_db = txn;
    sub->status = 500;
    sub->start_ms = now_ms();
    memcpy(sub->token, r->token, sizeof sub->token);
    for (int i = 0; i < it->nh; i++)
        sub->inner_hdrs[i] = it->hdrs[i];
    sub->n_inner_hdrs = it->nh;
    buf_add(&sub->body, it->body, it->blen);
    /* path: absolute URL, /org/<env>/api/data/v9.2/..., /api/data/v9.2/... or relative */
    const char *u = it->url;
    const char *sep = strstr(u, "://");
    if (sep)
        u = strchr(sep + 3, '/') ? strchr(sep + 3, '/') : "";
    char prefix[160];
    snprintf(prefix, sizeof prefix, "/org/%s%s", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX);
    struct buf path = BUF_INIT;
    if (!strncmp(u, prefix, strlen(prefix)))
        u += strlen(prefix);
    else if (!strncmp(u, DVSIM_API_PREFIX, sizeof DVSIM_API_PREFIX - 1))
        u += sizeof DVSIM_API_PREFIX - 1;
    else if (u[0] == '/' && it->url[0] == '/') {
        sreply_error(sub, 400, "0x80060888", "The URL %.200s is not in this organization.", it->url);
        goto done;
    }
    if (*u != '/')
        buf_addch(&path, '/');
    const char *qm = strchr(u, '?');
    buf_add(&path, u, qm ? (size_t)(qm - u) : strlen(u));
    sub->path = buf_detach(&path);
    dvsim_url_decode(sub->path);
    if (qm) {
        char *qs = strdup(qm + 1);
        char *save = NULL;
        for (char *kv = qs ? strtok_r(qs, "&", &save) : NULL; kv && sub->n_args < 32; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq)
                *eq = '\0';
            sub->args[sub->n_args].key = strdup(kv);
            sub->args[sub->n_args].val = strdup(eq ? eq + 1 : "");
            dvsim_url_decode(sub->args[sub->n_args].key);
            dvsim_url_decode(sub->args[sub->n_args].val);
            sub->n_args++;
        }
        free(qs);
    }
    if (!strcmp(sub->path, "/$batch"))
        sreply_error(sub, 400, "0x80060888", "A $batch cannot contain another $batch.");
    else
        webapi_route(sub, sub->path);
done:
    it->status = sub->status;
    buf_printf(&it->resp, "HTTP/1.1 %d %s\r\nOData-Version: 4.0\r\n", sub->status, reason(sub->status));
    for (char *h = sub->headers.data; h && *h;) {
        char *nl = strchr(h, '\n');
        if (!nl)
            break;
        buf_add(&it->resp, h, (size_t)(nl - h));
        buf_addstr(&it->resp, "\r\n");
        if (!strncmp(h, "OData-EntityId: ", 16))
            buf_printf(&it->resp, "Location: %.*s\r\n", (int)(nl - h - 16), h + 16);
        h = nl + 1;
    }
    if (sub->out.len && sub->status != 204) {
        buf_printf(&it->resp, "Content-Type: %s%s\r\n", sub->content_type ? sub->content_type : "application/json",
                   sub->status == 200 && !strcmp(it->method, "GET") ? "; odata.streaming=true" : "");
        buf_addstr(&it->resp, "\r\n");
        buf_add(&it->resp, sub->out.data, sub->out.len);
        buf_addstr(&it->resp, "\r\n");
    } else {
        buf_addstr(&it->resp, "\r\n");
    }
    for (int i = 0; i < sub->n_args; i++) {
        free(sub->args[i].key);
        free(sub->args[i].val);
    }
    free(sub->path);
    buf_release(&sub->body);
    buf_release(&sub->headers);
    buf_release(&sub->out);
    free(sub);
}

static void remember_cid(struct bitem *it, struct cid_map *map, int *n_map)
{
    if (!it->content_id[0] || *n_map >= BATCH_MAX || (it->status != 201 && it->status != 204))
        return;
    const char *e = strstr(it->resp.data ? it->resp.data : "", "OData-EntityId: ");
    if (!e)
        return;
    const char *p = strstr(e, DVSIM_API_PREFIX "/");
    if (!p)
        return;
    p += sizeof DVSIM_API_PREFIX;
    size_t l = strcspn(p, "\r\n");
    snprintf(map[*n_map].id, sizeof map[0].id, "%s", it->content_id);
    snprintf(map[*n_map].path, sizeof map[0].path, "%.*s", (int)(l < 159 ? l : 159), p);
    (*n_map)++;
}

static void emit_part(struct buf *o, const char *boundary, const struct bitem *it)
{
    buf_printf(o, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n", boundary);
    if (it->content_id[0])
        buf_printf(o, "Content-ID: %s\r\n", it->content_id);
    buf_addstr(o, "\r\n");
    buf_add(o, it->resp.data, it->resp.len);
}

void webwrite_batch(struct req *r)
{
    struct bpart top[BATCH_MAX + 2], inner[BATCH_MAX + 2];
    struct bitem *items = NULL;
    struct cid_map *map = NULL;
    int n_items = 0, n_map = 0;
    char boundary[128], cb[128];
    if (strcmp(r->method, "POST") != 0) {
        sreply_error(r, 405, "0x80060888", "$batch accepts POST only.");
        return;
    }
    if (boundary_of(sreq_header(r, "Content-Type"), boundary, sizeof boundary)) {
        sreply_error(r, 400, "0x80060888", "The $batch request must have Content-Type multipart/mixed with a boundary.");
        return;
    }
    const char *body = r->body.data ? r->body.data : "";
    int nt = split_multipart(body, body + r->body.len, boundary, top, BATCH_MAX + 1);
    if (nt == -E2BIG || nt > BATCH_MAX) {
        sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
        return;
    }
    if (nt < 0) {
        sreply_error(r, 400, "0x80060888", "The $batch body is not a valid multipart/mixed message.");
        return;
    }
    items = calloc(BATCH_MAX + 1, sizeof *items);
    map = calloc(BATCH_MAX + 1, sizeof *map);
    if (!items || !map) {
        sreply_error(r, 500, "0x80040216", "out of memory");
        goto out;
    }
    int n_changesets = 0;
    for (int i = 0; i < nt; i++) {
        char ct[256];
        if (!header_in(top[i].h, top[i].he, "Content-Type", ct, sizeof ct)) {
            sreply_error(r, 400, "0x80060888", "Batch part %d has no Content-Type.", i + 1);
            goto out;
        }
        if (!strncasecmp(ct, "multipart/mixed", 15)) {
            int cs = n_changesets++;
            int ni = boundary_of(ct, cb, sizeof cb) ? -EINVAL
                                                     : split_multipart(top[i].b, top[i].be, cb, inner, BATCH_MAX + 1);
            if (ni == -E2BIG || n_items + (ni > 0 ? ni : 0) > BATCH_MAX) {
                sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
                goto out;
            }
            if (ni < 0) {
                sreply_error(r, 400, "0x80060888", "Change set %d is not a valid multipart/mixed message.", cs + 1);
                goto out;
            }
            for (int k = 0; k < ni; k++) {
                if (parse_http_part(&inner[k], cs, &items[n_items])) {
                    n_items++;
                    sreply_error(r, 400, "0x80060888", "Change set %d, part %d is not an HTTP request.", cs + 1, k + 1);
                    goto out;
                }
                if (!strcmp(items[n_items].method, "GET")) {
                    n_items++;
                    sreply_error(r, 400, "0x80060888", "GET requests are not allowed in a change set.");
                    goto out;
                }
                n_items++;
            }
        } else {
            if (n_items + 1 > BATCH_MAX) {
                sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
                goto out;
            }
            if (parse_http_part(&top[i], -1, &items[n_items])) {
                n_items++;
                sreply_error(r, 400, "0x80060888", "Batch part %d is not an HTTP request.", i + 1);
                goto out;
            }
            n_items++;
        }
    }
    struct buf pf = BUF_INIT;
    sreq_header_all(r, "Prefer", &pf);
    bool cont = pf.data && strstr(pf.data, "odata.continue-on-error");
    buf_release(&pf);

    char rb[64], rcs[64], g[37];
    random_guid(r->d, g);
    snprintf(rb, sizeof rb, "batchresponse_%s", g);
    struct buf o = BUF_INIT;
    int outer_status = 200;
    for (int i = 0; i < n_items;) {
        struct bitem *it = &items[i];
        if (it->changeset < 0) {
            exec_item(r, it, NULL, map, n_map);
            remember_cid(it, map, &n_map);
            emit_part(&o, rb, it);
            i++;
            if (it->status >= 400 && !cont) {
                outer_status = it->status;
                break;
            }
            continue;
        }
        /* a change set: all or nothing in one transaction */
        int cs = it->changeset, j = i;
        pthread_mutex_lock(&r->d->write_lock);
        sqlite3 *db = dvstore_get(r->d->store);
        bool failed = !db || dvstore_begin(db) != 0;
        int fail_at = -1;
        int map_before = n_map;
        for (j = i; j < n_items && items[j].changeset == cs; j++) {
            if (failed)
                continue;
            exec_item(r, &items[j], db, map, n_map);
            remember_cid(&items[j], map, &n_map);
            if (items[j].status >= 400) {
                failed = true;
                fail_at = j;
            }
        }
        if (db) {
            if (failed)
                dvstore_rollback(db);
            else if (dvstore_commit(db) != 0) {
                dvstore_rollback(db);
                failed = true;
            }
        }
        dvstore_put(r->d->store, db);
        pthread_mutex_unlock(&r->d->write_lock);
        random_guid(r->d, g);
        snprintf(rcs, sizeof rcs, "changesetresponse_%s", g);
        buf_printf(&o, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n", rb, rcs);
        if (failed) {
            n_map = map_before; /* nothing in the change set exists */
            if (fail_at >= 0)
                emit_part(&o, rcs, &items[fail_at]);
            else {
                buf_reset(&items[i].resp);
                buf_addstr(&items[i].resp, "HTTP/1.1 503 Service Unavailable\r\nOData-Version: 4.0\r\n\r\n");
                items[i].status = 503;
                fail_at = i;
                emit_part(&o, rcs, &items[i]);
            }
        } else {
            for (int k = i; k < j; k++)
                emit_part(&o, rcs, &items[k]);
        }
        buf_printf(&o, "--%s--\r\n", rcs);
        i = j;
        if (failed && !cont) {
            outer_status = items[fail_at].status;
            break;
        }
    }
    buf_printf(&o, "--%s--\r\n", rb);
    buf_release(&r->out);
    r->out = o;
    r->status = outer_status;
    {
        char ct[128];
        snprintf(ct, sizeof ct, "multipart/mixed; boundary=%s", rb);
        /* content_type must be static: pass it as a header instead */
        r->content_type = NULL;
        sreq_add_header(r, "Content-Type", ct);
    }
out:
    for (int i = 0; items && i < n_items; i++)
        bitem_release(&items[i]);
    free(items);
    free(map);
}
