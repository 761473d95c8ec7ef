/* webwrite_rules: what every write to an org must pass, and what the service adds to the record
 * (webapi_int.h). The home of Dataverse's write rules in dvsim:
 *   - the body: members must be columns of the table, of their type (strings, whole numbers in
 *     range, options that exist, booleans, ISO dates, GUIDs); lookups are set with
 *     <nav>@odata.bind to an existing record of a table that navigation property may point at (or
 *     a $n Content-ID of the batch), never directly (a null clears); ownerid binds /systemusers(..)
 *     or /teams(..), never /owners(..), which is no entity set (400 "Resource not found for the
 *     segment 'owners'", as for any unknown set); the primary key, when given, is a GUID; columns
 *     not valid for the operation are ignored, as the service ignores them (statecode on create,
 *     overriddencreatedon on update, createdon, modifiedon, versionnumber, exchangerate, *_base);
 *     fullname follows firstname and lastname; an image column takes Base64 (the full image); an
 *     activity takes <activity>_activity_parties (replacing its parties);
 *   - state: a record is created in its table's first state (0); a statuscode of another state is
 *     refused (0x80048408 "N is not a valid status code for state code <Table>State.<State> on
 *     <table> with Id X."); an update sets statecode and statuscode together (a statecode alone
 *     takes its state's default status); a case is resolved only by CloseIncident and an
 *     opportunity won or lost only by WinOpportunity/LoseOpportunity (the service's messages and
 *     codes); a resolved or cancelled case and a closed opportunity refuse every other change
 *     until an update sets statecode 0;
 *   - defaults of a new record: every column present (null when not given), state and status,
 *     owned by the environment's application user, priced in the base currency; a note's
 *     filesize and isdocument;
 *   - derived columns: owninguser/owningteam/owningbusinessunit follow ownerid, exchangerate comes
 *     from the record's currency and each <money>_base is <money> / exchangerate;
 *   - every write: modifiedon (and createdon, or overriddencreatedon's value), versionnumber and
 *     the etag from the org's version (srec_stamp); an audit row per create, update and delete
 *     when the write context asks for one (dvsim_audit_write).
 * Which tables a client may write at all, and the business-logic headers, are
 * webwrite_privileges.c. A refused write is answered in the service's error shape (code and
 * message) here.
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
    const char *ov = create ? srec_get(rec, "overriddencreatedon") : NULL;
    if (ov && ov[0] == '"') {
        snprintf(iso, sizeof iso, "%.*s", (int)(strlen(ov) - 2 < 31 ? strlen(ov) - 2 : 31), ov + 1);
        srec_set(rec, "createdon", ov, strlen(ov));
        dvsim_fmt_datetime(iso, f, sizeof f);
        srec_set_str(rec, "createdon" FV, f);
    }
    if (dvschema_col_by_member(t, "versionnumber", 13)) {
        snprintf(num, sizeof num, "%lld", (long long)ver);
        srec_set(rec, "versionnumber", num, strlen(num));
    }
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    srec_set_str(rec, "@odata.etag", etag);
}

void webwrite_row_id(const struct table_def *t, const char *id, const struct rec *rec, char out[DVSTORE_ID_MAX])
{
    const char *p = t->elastic ? srec_get(rec, "partitionid") : NULL;
    struct buf part = BUF_INIT;
    if (p && p[0] == '"')
        dvline_unquote(p, strlen(p), &part);
    dvstore_row_id(id, part.data, out);
    buf_release(&part);
}

int webwrite_store(struct write_ctx *w, const struct table_def *t, const char *id, struct rec *rec, bool create,
                   struct buf *out)
{
    int64_t ver = 0;
    int rc = dvstore_next_version(w->db, w->env, &ver);
    if (rc)
        return rc;
    srec_stamp(rec, t, ver, (int64_t)time(NULL), create);
    char row[DVSTORE_ID_MAX];
    webwrite_row_id(t, id, rec, row);
    rc = srec_render(rec, t->pk, out);
    rc = rc ? rc : dvstore_put_record(w->db, table_id(w->env, dvschema_table_index(t)), row, ver, out->data, out->len);
    rc = rc ? rc : dvsim_audit_write(w, t, id, create ? 1 : 2);
    if (!rc && t->activity)
        rc = webwrite_pointer_put(w->db, w->env, id, rec, ver);
    return rc;
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
    char app[37];
    dvschema_app_user_id(w->env, app);
    rc = rc ? rc : srec_set_str(&rec, "_userid_value", app);
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


int webwrite_resolve_ref(const char *s, const struct table_def **t, char id[37], char *set, size_t set_n)
{
    if (set_n)
        set[0] = '\0';
    if (s[0] == '$')
        return -ENOENT;
    const char *p = strstr(s, DVSIM_API_PREFIX "/");
    p = p ? p + sizeof DVSIM_API_PREFIX : s;
    while (*p == '/')
        p++;
    size_t sl = strcspn(p, "(");
    if (p[sl] != '(')
        return -EINVAL;
    if (set_n)
        snprintf(set, set_n, "%.*s", (int)(sl < set_n ? sl : set_n - 1), p);
    *t = dvschema_table_by_set(p, sl);
    if (!*t)
        return -ENXIO;
    const char *g = p + sl + 1;
    if (!dvsim_guid_valid(g, 36) || g[36] != ')' || g[37])
        return -EINVAL;
    for (int i = 0; i < 36; i++)
        id[i] = (char)tolower((unsigned char)g[i]);
    id[36] = '\0';
    return 0;
}

void webwrite_set_col(struct rec *rec, const struct col_def *c, const char *member, const char *raw, size_t len)
{
    char f[200], key[200];
    srec_set(rec, member, raw, len);
    snprintf(key, sizeof key, "%s" FV, member);
    if (dvsim_format_value(c, raw, len, f, sizeof f))
        srec_set_str(rec, key, f);
    else
        srec_set(rec, key, NULL, 0);
}

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
    case COL_INTEGER: case COL_BIGINT: case COL_MONEY: case COL_DECIMAL: case COL_PICKLIST: case COL_STATE:
    case COL_STATUS: {
        if (v->type != JSON_NUMBER)
            goto bad;
        bool integral = !strpbrk(v->str, ".eE");
        if ((c->type == COL_INTEGER || c->type == COL_PICKLIST || c->type == COL_STATE || c->type == COL_STATUS) &&
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
    case COL_GUID:
        if (v->type != JSON_STRING || !dvsim_guid_valid(v->str, v->str_len))
            goto bad;
        return buf_add_json_string(raw, v->str, v->str_len);
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

int webwrite_int_member(const struct rec *rec, const char *member)
{
    const char *v = srec_get(rec, member);
    if (!v || !isdigit((unsigned char)v[0]))
        return -1;
    return (int)strtol(v, NULL, 10);
}

void webwrite_body_release(struct write_body *b)
{
    for (size_t i = 0; i < b->n_parties; i++)
        free(b->parties[i].addressused);
    free(b->parties);
    buf_release(&b->image);
    memset(b, 0, sizeof *b);
}

static void payload_error(struct req *r, const struct table_def *t, const char *what)
{
    sreply_error(r, 400, "0x80048d19",
                 "Error identified in Payload provided by the user for Entity :'%s', For more information on "
                 "this error please follow this help link https://go.microsoft.com/fwlink/?linkid=2195293  ----> "
                 "InnerException : Microsoft.OData.ODataException: %s", t->set, what);
}

/* A bind (<nav>@odata.bind: "<set>(<id>)") to a table lookup column c may point at through nav:
 * *target and id, or a reply. Whether that record exists is webwrite_set_lookup's to find (it
 * reads the record for its name), or record_exists's when the lookup is set later. */
static int resolve_bind(struct req *r, const struct col_def *c, const char *nav, size_t nl,
                        const struct json_node *m, const struct table_def **target, char id[37])
{
    char set[96];
    int rr = m->type == JSON_STRING ? webwrite_resolve_ref(m->str, target, id, set, sizeof set) : -EINVAL;
    char navz[128];
    snprintf(navz, sizeof navz, "%.*s", (int)(nl < sizeof navz ? nl : sizeof navz - 1), nav);
    if (rr == -ENOENT) {
        sreply_error(r, 400, "0x80060888", "Content-ID Reference: '%.20s' does not exist in the batch context.", m->str);
        return -EINVAL;
    }
    if (rr == -ENXIO) {
        sreply_error(r, 400, "0x8006088a", "Resource not found for the segment '%s'.", set);
        return -EINVAL;
    }
    if (rr || !dvschema_lookup_target(c, (*target)->logical, navz)) {
        const char *want = c->targets[0].table;
        for (const struct lookup_target *g = c->targets; g->table; g++)
            if (strcmp(g->nav, navz) == 0) {
                want = g->table;
                break;
            }
        sreply_error(r, 400, "0x80060888", "The value of '%s@odata.bind' is not a valid reference to a %s record.", navz,
                     want);
        return -EINVAL;
    }
    return 0;
}

/* 0 when record id of t exists, else the service's 404 (or a 500). */
static int record_exists(struct req *r, sqlite3 *db, const struct table_def *t, const char *id)
{
    char *line = NULL;
    size_t len;
    int rc = dvstore_get_record(db, table_id(r->env, dvschema_table_index(t)), id, &line, &len);
    free(line);
    if (rc == -ENOENT)
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
    else if (rc)
        sreply_error(r, 500, "0x80040216", "database error");
    return rc;
}

/* <activity>_activity_parties: [{participationtypemask, partyid_<table>@odata.bind, addressused}] */
static int parse_parties(struct req *r, sqlite3 *db, const struct table_def *t, const struct json_node *arr,
                         struct write_body *b)
{
    const struct table_def *pt = &dvschema_tables[T_ACTIVITYPARTY];
    const struct col_def *mask_col = dvschema_col_by_member(pt, "participationtypemask", 21);
    const struct col_def *party_col = dvschema_col_by_member(pt, "_partyid_value", 14);
    if (arr->type != JSON_ARRAY) {
        payload_error(r, t, "A collection-valued navigation property takes an array of entities.");
        return -EINVAL;
    }
    b->parties_set = true;
    b->fields = true;
    b->parties = calloc(arr->n_children ? arr->n_children : 1, sizeof *b->parties);
    if (!b->parties)
        return -ENOMEM;
    for (const struct json_node *e = arr->child; e; e = e->next) {
        struct party_write *p = &b->parties[b->n_parties++];
        if (e->type != JSON_OBJECT) {
            payload_error(r, pt, "Each party must be an entity (a JSON object).");
            return -EINVAL;
        }
        for (const struct json_node *m = e->child; m; m = m->next) {
            static const char bind[] = "@odata.bind";
            size_t kl = m->key_len;
            if (kl > sizeof bind - 1 && memcmp(m->key + kl - (sizeof bind - 1), bind, sizeof bind - 1) == 0) {
                size_t nl = kl - (sizeof bind - 1);
                const struct lookup_target *g = NULL;
                if (dvschema_col_by_nav(pt, m->key, nl, &g) != party_col) {
                    sreply_error(r, 400, "0x80060888",
                                 "An undeclared property '%.*s' which only has property annotations in the payload "
                                 "but no property value was found in the payload.", (int)(nl > 80 ? 80 : nl), m->key);
                    return -EINVAL;
                }
                if (m->type == JSON_NULL)
                    continue;
                int rc = resolve_bind(r, party_col, m->key, nl, m, &p->target, p->id);
                rc = rc ? rc : record_exists(r, db, p->target, p->id);
                if (rc)
                    return rc;
            } else if (kl == 21 && !memcmp(m->key, "participationtypemask", 21)) {
                long x = m->type == JSON_NUMBER && !strpbrk(m->str, ".eE") ? strtol(m->str, NULL, 10) : -1;
                if (!dvschema_option_label(mask_col, (int)x)) {
                    sreply_error(r, 400, "0x8004431a",
                                 "A validation error occurred. The value %ld of 'participationtypemask' on record of "
                                 "type 'activityparty' is outside the valid range.", x);
                    return -EINVAL;
                }
                p->mask = (int)x;
            } else if (kl == 11 && !memcmp(m->key, "addressused", 11)) {
                if (m->type != JSON_STRING && m->type != JSON_NULL) {
                    payload_error(r, pt, "Cannot convert the literal to the expected type for property 'addressused'.");
                    return -EINVAL;
                }
                if (m->type == JSON_STRING) {
                    struct buf q = BUF_INIT;
                    buf_add_json_string(&q, m->str, m->str_len);
                    p->addressused = buf_detach(&q);
                    if (!p->addressused)
                        return -ENOMEM;
                }
            } else if (!memchr(m->key, '@', kl)) {
                sreply_error(r, 400, "0x80060888", "Invalid property '%.*s' was found in entity 'Microsoft.Dynamics.CRM.activityparty'.",
                             (int)(kl > 80 ? 80 : kl), m->key);
                return -EINVAL;
            }
        }
        if (!p->mask) {
            sreply_error(r, 400, "0x80040203", "Required field 'participationtypemask' is missing for an activity party.");
            return -EINVAL;
        }
    }
    return 0;
}

int webwrite_apply_body(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec, bool create,
                        char body_id[37], struct write_body *b)
{
    struct json_doc *doc = NULL;
    struct dverr err;
    struct buf raw = BUF_INIT;
    dverr_clear(&err);
    body_id[0] = '\0';
    memset(b, 0, sizeof *b);
    int rc = json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, &doc, &err);
    const struct json_node *root = rc ? NULL : json_root(doc);
    if (!root || root->type != JSON_OBJECT) {
        payload_error(r, t, rc ? dverr_msg(&err) : "The payload must be a JSON object.");
        rc = -EINVAL;
        goto out;
    }
    char parties_nav[96];
    snprintf(parties_nav, sizeof parties_nav, "%s_activity_parties", t->logical);
    bool names = false;
    for (const struct json_node *m = root->child; m && !rc; m = m->next) {
        const char *k = m->key;
        size_t kl = m->key_len;
        static const char bind[] = "@odata.bind";
        if (kl > sizeof bind - 1 && memcmp(k + kl - (sizeof bind - 1), bind, sizeof bind - 1) == 0) {
            size_t nl = kl - (sizeof bind - 1);
            const struct lookup_target *g = NULL;
            const struct col_def *c = dvschema_col_by_nav(t, k, nl, &g);
            if (!c) {
                sreply_error(r, 400, "0x80060888",
                             "An undeclared property '%.*s' which only has property annotations in the payload but no "
                             "property value was found in the payload. In OData, only declared navigation properties "
                             "and declared named streams can be represented as properties without values.",
                             (int)(nl > 80 ? 80 : nl), k);
                rc = -EINVAL;
                break;
            }
            if (!(c->flags & (create ? COLF_CREATE : COLF_UPDATE)))
                continue; /* a read-only lookup, ignored as the service ignores it */
            b->fields = true;
            if (m->type == JSON_NULL) {
                rc = webwrite_set_lookup(r, db, rec, c, NULL, NULL);
                continue;
            }
            const struct table_def *tt = NULL;
            char id[37];
            rc = resolve_bind(r, c, k, nl, m, &tt, id);
            if (!rc)
                rc = webwrite_set_lookup(r, db, rec, c, tt, id);
            continue;
        }
        if (memchr(k, '@', kl))
            continue; /* instance annotations (@odata.type, @odata.etag, x@...) are ignored */
        if (t->activity && kl == strlen(parties_nav) && memcmp(k, parties_nav, kl) == 0) {
            rc = parse_parties(r, db, t, m, b);
            continue;
        }
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
        if (c && dvschema_is_lookup(c)) {
            if (m->type != JSON_NULL) {
                sreply_error(r, 400, "0x80048d19", "Set the lookup '%s' with %s@odata.bind.", c->name, c->targets[0].nav);
                rc = -EINVAL;
            } else if (c->flags & (create ? COLF_CREATE : COLF_UPDATE)) {
                b->fields = true;
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
            continue; /* not valid for this operation: ignored, as the service ignores it */
        if (c->type == COL_IMAGE) {
            b->fields = b->image_set = true;
            b->image_null = m->type == JSON_NULL;
            if (!b->image_null && (m->type != JSON_STRING || base64_decode(m->str, m->str_len, &b->image))) {
                payload_error(r, t, "Cannot convert the literal to the expected type 'Edm.Binary' for property 'entityimage'.");
                rc = -EINVAL;
            }
            continue;
        }
        if ((rc = col_value(r, t, c, m, &raw)) != 0)
            break;
        webwrite_set_col(rec, c, c->name, raw.data, raw.len);
        if (c->type == COL_STATE)
            b->statecode = true;
        else if (c->type == COL_STATUS)
            b->statuscode = true;
        else
            b->fields = true;
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

/* ---- state ---- */

/* "<Table>State.<State label>" */
static void state_name(const struct table_def *t, int state, char *out, size_t n)
{
    const struct col_def *sc = dvschema_col_by_member(t, "statecode", 9);
    const char *label = sc ? dvschema_option_label(sc, state) : NULL;
    snprintf(out, n, "%sState.%s", t->schema, label ? label : "Unknown");
}

static void invalid_status(struct req *r, const struct table_def *t, int status, int state, const char *id)
{
    char name[96];
    state_name(t, state, name, sizeof name);
    sreply_error(r, 400, "0x80048408", "%d is not a valid status code for state code %s on %s with Id %s.", status, name,
                 t->logical, id);
}

int webwrite_set_state(struct rec *rec, const struct table_def *t, int statecode, int statuscode)
{
    const struct col_def *sc = dvschema_col_by_member(t, "statecode", 9);
    const struct col_def *st = dvschema_col_by_member(t, "statuscode", 10);
    char v[16];
    if (!sc || !st)
        return -EINVAL;
    snprintf(v, sizeof v, "%d", statecode);
    webwrite_set_col(rec, sc, "statecode", v, strlen(v));
    snprintf(v, sizeof v, "%d", statuscode);
    webwrite_set_col(rec, st, "statuscode", v, strlen(v));
    return 0;
}

bool webwrite_closed(const struct table_def *t, int state)
{
    int ti = dvschema_table_index(t);
    return (ti == T_INCIDENT || ti == T_OPPORTUNITY) && (state == 1 || state == 2);
}

void webwrite_reply_closed(struct req *r, const struct table_def *t, int state)
{
    if (dvschema_table_index(t) == T_INCIDENT && state == 1)
        sreply_error(r, 400, "0x800404cf",
                     "This case has already been resolved. Close and reopen the case record to see the updates.");
    else
        sreply_error(r, 400, "0x8004022e", "The object cannot be updated because it is read-only.");
}

int webwrite_check_update(struct req *r, const struct table_def *t, int old_state, struct rec *rec,
                          const struct write_body *b, const char *id)
{
    const struct col_def *st = dvschema_col_by_member(t, "statuscode", 10);
    int ti = dvschema_table_index(t);
    if (!st || old_state < 0)
        return 0;
    bool closed = webwrite_closed(t, old_state);
    int state = b->statecode ? webwrite_int_member(rec, "statecode") : old_state;
    if (closed && (b->fields || (b->statecode && state != 0) || (!b->statecode && b->statuscode))) {
        webwrite_reply_closed(r, t, old_state);
        return -EPERM;
    }
    if (b->statecode && ti == T_INCIDENT && state == 1) {
        sreply_error(r, 400, "0x80040203",
                     "This message can not be used to set the state of incident to Resolved. In order to set state of "
                     "incident to Resolved, use the CloseIncidentRequest message instead.");
        return -EPERM;
    }
    if (b->statecode && ti == T_OPPORTUNITY && (state == 1 || state == 2)) {
        const char *to = state == 1 ? "won" : "lost";
        sreply_error(r, 400, "0x80100005",
                     "This message can not be used to set the state of opportunity to %s. In order to set state of "
                     "opportunity to %s, use the %s message instead.", to, to, to);
        return -EPERM;
    }
    if (b->statuscode) {
        int status = webwrite_int_member(rec, "statuscode");
        if (dvschema_status_state(st, status) != state) {
            invalid_status(r, t, status, state, id);
            return -EINVAL;
        }
    } else if (b->statecode) {
        /* a statecode alone takes its state's first status, as the service does */
        webwrite_set_state(rec, t, state, dvschema_status_default(st, state));
    }
    return 0;
}

/* ---- defaults of a new record ---- */

int webwrite_create_defaults(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec, const char *id)
{
    char member[128], app[37];
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct col_def *c = &t->cols[i];
        dvschema_member_name(c, member, sizeof member);
        if (c->type == COL_PK || srec_get(rec, member))
            continue;
        if (c->type == COL_STATE)
            webwrite_set_col(rec, c, member, "0", 1);
        else if (c->type == COL_STATUS) {
            char v[16];
            snprintf(v, sizeof v, "%d", dvschema_status_default(c, 0));
            webwrite_set_col(rec, c, member, v, strlen(v));
        } else if (c->type == COL_OWNER) {
            dvschema_app_user_id(r->env, app);
            int rc = webwrite_set_lookup(r, db, rec, c, &dvschema_tables[T_SYSTEMUSER], app);
            if (rc)
                return rc;
        } else if (!strcmp(c->name, "transactioncurrencyid")) {
            char usd[37];
            dvseed_principal_id(r->d, r->env, T_CURRENCY, 0, usd);
            int rc = webwrite_set_lookup(r, db, rec, c, &dvschema_tables[T_CURRENCY], usd);
            if (rc)
                return rc;
        } else if (t->activity && !strcmp(c->name, "activitytypecode")) {
            srec_set_str(rec, member, t->logical);
        } else if (c->type == COL_BOOLEAN)
            webwrite_set_col(rec, c, member, "false", 5);
        else
            srec_set(rec, member, "null", 4);
    }
    const struct col_def *st = dvschema_col_by_member(t, "statuscode", 10);
    int status = st ? webwrite_int_member(rec, "statuscode") : -1;
    if (st && dvschema_status_state(st, status) != 0) {
        invalid_status(r, t, status, 0, id);
        return -EINVAL;
    }
    if (dvschema_table_index(t) == T_ANNOTATION) {
        const char *body = srec_get(rec, "documentbody");
        size_t n = body && body[0] == '"' ? strlen(body) - 2 : 0;
        size_t bytes = n / 4 * 3;
        if (n >= 2 && body[n] == '=')
            bytes -= body[n - 1] == '=' ? 2 : 1;
        char num[32];
        snprintf(num, sizeof num, "%zu", bytes);
        webwrite_set_col(rec, dvschema_col_by_member(t, "filesize", 8), "filesize", num, strlen(num));
        webwrite_set_col(rec, dvschema_col_by_member(t, "isdocument", 10), "isdocument", n ? "true" : "false", n ? 4 : 5);
    }
    return 0;
}

/* ---- derived columns ---- */

/* The raw JSON values of members[0..n) of record id of table, read once, into out[0..n) (caller
 * frees each); NULL for a member that is null or absent, or when there is no such record. */
static void members_of(sqlite3 *db, int env, int table, const char *id, const char *const *members, char **out,
                       size_t n)
{
    char *line = NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    if (!id || dvstore_get_record(db, table_id(env, table), id, &line, &len))
        return;
    struct lmember m[128];
    int nm = dvline_scan(line, len, m, 128);
    for (size_t i = 0; i < n && nm > 0; i++) {
        const struct lmember *v = dvline_member(m, nm, members[i]);
        if (v && !(v->val_len == 4 && !memcmp(v->val, "null", 4)))
            out[i] = strndup(v->val, v->val_len);
    }
    free(line);
}

/* The decoded JSON string value raw (caller frees), or NULL. */
static char *unquote(const char *raw)
{
    if (!raw || raw[0] != '"')
        return NULL;
    struct buf b = BUF_INIT;
    dvline_unquote(raw, strlen(raw), &b);
    return buf_detach(&b);
}

/* Lookup member `to` takes the value, target and name of lookup member `from`. */
static void copy_lookup(struct rec *rec, const char *from, const char *to, const char *target)
{
    char k_from[160], k_to[160];
    const char *id = srec_get(rec, from);
    srec_set(rec, to, id, strlen(id));
    snprintf(k_to, sizeof k_to, "%s" LLN, to);
    srec_set_str(rec, k_to, target);
    snprintf(k_from, sizeof k_from, "%s" FV, from);
    snprintf(k_to, sizeof k_to, "%s" FV, to);
    const char *name = srec_get(rec, k_from);
    srec_set(rec, k_to, name, name ? strlen(name) : 0);
}

static void clear_lookup(struct rec *rec, const char *member)
{
    char k[160];
    srec_set(rec, member, "null", 4);
    snprintf(k, sizeof k, "%s" LLN, member);
    srec_set(rec, k, NULL, 0);
    snprintf(k, sizeof k, "%s" FV, member);
    srec_set(rec, k, NULL, 0);
}

static int derive_owner(sqlite3 *db, int env, struct rec *rec)
{
    const char *owner = srec_get(rec, "_ownerid_value");
    const char *type = srec_get(rec, "_ownerid_value" LLN);
    if (!owner || !strcmp(owner, "null") || !type) {
        clear_lookup(rec, "_owninguser_value");
        clear_lookup(rec, "_owningteam_value");
        clear_lookup(rec, "_owningbusinessunit_value");
        return 0;
    }
    bool team = !strcmp(type, "\"team\"");
    copy_lookup(rec, "_ownerid_value", team ? "_owningteam_value" : "_owninguser_value", team ? "team" : "systemuser");
    clear_lookup(rec, team ? "_owninguser_value" : "_owningteam_value");
    static const char *const bu_members[] = {"_businessunitid_value", "_businessunitid_value" FV};
    char *id = unquote(owner), *found[2];
    members_of(db, env, team ? T_TEAM : T_SYSTEMUSER, id, bu_members, found, 2);
    char *bu = found[0], *bu_name = found[1];
    free(id);
    if (bu) {
        srec_set(rec, "_owningbusinessunit_value", bu, strlen(bu));
        srec_set_str(rec, "_owningbusinessunit_value" LLN, "businessunit");
        srec_set(rec, "_owningbusinessunit_value" FV, bu_name, bu_name ? strlen(bu_name) : 0);
    } else {
        clear_lookup(rec, "_owningbusinessunit_value");
    }
    free(bu);
    free(bu_name);
    return 0;
}

static int derive_currency(sqlite3 *db, int env, const struct table_def *t, struct rec *rec)
{
    const struct col_def *xr = dvschema_col_by_member(t, "exchangerate", 12);
    char *cur = unquote(srec_get(rec, "_transactioncurrencyid_value"));
    static const char *const rate_member[] = {"exchangerate"};
    char *rate;
    members_of(db, env, T_CURRENCY, cur, rate_member, &rate, 1);
    free(cur);
    if (rate)
        webwrite_set_col(rec, xr, "exchangerate", rate, strlen(rate));
    else
        webwrite_set_col(rec, xr, "exchangerate", "null", 4);
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct col_def *c = &t->cols[i];
        size_t l = strlen(c->name);
        if (c->type != COL_MONEY || l < 6 || strcmp(c->name + l - 5, "_base") != 0)
            continue;
        char source[96], base[64];
        snprintf(source, sizeof source, "%.*s", (int)(l - 5), c->name);
        const char *money = srec_get(rec, source);
        if (rate && money && strcmp(money, "null") && !dvsim_money_base(money, rate, base, sizeof base))
            webwrite_set_col(rec, c, c->name, base, strlen(base));
        else
            webwrite_set_col(rec, c, c->name, "null", 4);
    }
    free(rate);
    return 0;
}

int webwrite_derive(sqlite3 *db, int env, const struct table_def *t, struct rec *rec)
{
    int rc = 0;
    if (dvschema_col_by_member(t, "_owninguser_value", 17))
        rc = derive_owner(db, env, rec);
    if (!rc && dvschema_col_by_member(t, "exchangerate", 12) && dvschema_col_by_member(t, "_transactioncurrencyid_value", 28))
        rc = derive_currency(db, env, t, rec);
    return rc;
}
