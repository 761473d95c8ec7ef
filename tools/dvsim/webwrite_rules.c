/* webwrite_rules: what every write to an org must pass, and what the service adds to the record
 * (webapi_int.h). The home of Dataverse's write rules in dvsim:
 *   - the body: members must be columns of the table, of their type (strings, whole numbers in
 *     range, options that exist, booleans, ISO dates); lookups are set with <nav>@odata.bind to
 *     an existing record of the right table (or a $n Content-ID of the batch), never directly
 *     (a null clears); the primary key, when given, is a GUID; read-only columns are ignored,
 *     as the service ignores them; fullname follows firstname and lastname;
 *   - defaults of a new record: every column present (null when not given), state active,
 *     status 1, owned by the application user; a note's filesize and isdocument;
 *   - every write: modifiedon (and createdon), versionnumber and the etag from the org's
 *     version (srec_stamp); an audit row per create, update and delete when the write context
 *     asks for one (dvsim_audit_write).
 * A refused write is answered in the service's error shape (code and message) here.
 * Threading: called inside the caller's write session (d->write_lock held); GUIDs for audit
 * rows come from d->rng under d->lock. */
#include "tools/dvsim/webapi_int.h"

#include "backend/base/json.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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


/* A reference "/contacts(<guid>)", "contacts(<guid>)" or an absolute URL -> table and id.
 * -ENOENT for an unresolved "$n" Content-ID, -EINVAL otherwise. */
int webwrite_resolve_ref(const char *s, const struct table_def **t, char id[37])
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
int webwrite_set_lookup(struct req *r, sqlite3 *db, struct rec *rec, const struct col_def *c,
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
int webwrite_apply_body(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec, bool create,
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
                rc = webwrite_set_lookup(r, db, rec, c, NULL, NULL);
                continue;
            }
            const struct table_def *tt = NULL;
            char id[37];
            int rr = m->type == JSON_STRING ? webwrite_resolve_ref(m->str, &tt, id) : -EINVAL;
            if (rr == -ENOENT) {
                sreply_error(r, 400, "0x80060888", "Content-ID Reference: '%.20s' does not exist in the batch context.", m->str);
                rc = -EINVAL;
            } else if (rr || strcmp(tt->logical, c->target) != 0) {
                sreply_error(r, 400, "0x80060888", "The value of '%.*s@odata.bind' is not a valid reference to a %s record.",
                             (int)(nl > 80 ? 80 : nl), k, c->target);
                rc = -EINVAL;
            } else {
                rc = webwrite_set_lookup(r, db, rec, c, tt, id);
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
                rc = webwrite_set_lookup(r, db, rec, c, NULL, NULL);
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
int webwrite_create_defaults(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec)
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
            int rc = webwrite_set_lookup(r, db, rec, c, &dvschema_tables[T_SYSTEMUSER], DVSIM_APP_USER_ID);
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

