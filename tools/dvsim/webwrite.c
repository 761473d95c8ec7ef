/* webwrite: the write side of each org's Web API: POST/PATCH (upsert)/DELETE by key with If-Match
 * and If-None-Match and Prefer: return=representation, N:N and single-valued $ref, and the
 * routing of writes, file and image columns included. Before any write: whether a client may
 * write the table at all and the business-logic headers (webwrite_privileges.c). What a write
 * must pass and what it adds to the record (validation, state rules, defaults, derived columns,
 * stamps, audit rows) is webwrite_rules.c; what comes with it (activitypointer rows, parties,
 * the plug-in's task, flow runs) is webwrite_activity.c; file and image columns are
 * webwrite_files.c; $batch is webwrite_batch.c (webapi_int.h lists them). A row of an elastic
 * table is addressed by its id and partition (addressed_row): two rows may share an id in two
 * partitions, and a request that names no partition addresses the row created without one (the
 * service's documentation: a row given a partitionid must be named with it in every operation).
 * Writers hold d->write_lock for the whole SQLite transaction (versions are per org and must
 * not interleave): a write session (struct wsess) takes it, or joins the transaction of the
 * $batch change set the request is part of. */
#include "tools/dvsim/webapi_int.h"

#include "backend/base/json.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- write sessions: a transaction under d->write_lock, or the $batch's open one ---- */

int webwrite_session_begin(struct req *r, struct wsess *s)
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
bool webwrite_session_finish(struct req *r, struct wsess *s, bool ok)
{
    if (wsess_end(r, s, ok) && ok) {
        sreply_error(r, 503, "0x80040216", "commit failed");
        return false;
    }
    return ok;
}

void webwrite_reply_no_content(struct req *r)
{
    buf_reset(&r->out);
    r->status = 204;
}

static void entity_url(struct req *r, const struct table_def *t, const char *id, struct buf *out)
{
    sreq_base(r, out);
    buf_printf(out, "/org/%s%s/%s(%s)", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX, t->set, id);
}

void webwrite_random_guid(struct dvsim *d, char out[37])
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

/* The stored id of the row a request addresses: key, and for an elastic table the partition the
 * request names (?partitionId=, else for a PATCH the body's partitionid; none: the row created
 * without a partition). part gets that partition. */
static void addressed_row(struct req *r, const struct table_def *t, const char *key, struct buf *part,
                          char row[DVSTORE_ID_MAX])
{
    buf_reset(part);
    const char *arg = t->elastic ? webapi_partition_arg(r) : NULL;
    if (arg) {
        buf_addstr(part, arg);
    } else if (t->elastic && !strcmp(r->method, "PATCH") && r->body.len) {
        struct json_doc *doc = NULL;
        struct dverr err = {0};
        if (!json_parse(r->body.data, r->body.len, NULL, &doc, &err)) {
            const char *p = json_get_str(json_root(doc), "partitionid");
            if (p)
                buf_addstr(part, p);
        }
        json_doc_free(doc);
    }
    dvstore_row_id(key, part->data, row);
}

/* A create in an elastic table takes ?partitionId= as its partitionid unless the body set it; a
 * body that names another partition is refused, and so is a partitionid holding a character an
 * alternate key cannot (/ < > * % & : \ ?). */
static int elastic_partition_take(struct req *r, const struct table_def *t, struct rec *rec)
{
    if (!t->elastic)
        return 0;
    const char *arg = webapi_partition_arg(r);
    const char *body = srec_get(rec, "partitionid");
    if (arg && (!body || !strcmp(body, "null"))) {
        if (srec_set_str(rec, "partitionid", arg))
            return -ENOMEM;
        body = srec_get(rec, "partitionid");
    } else if (arg) {
        size_t bl = strlen(body);
        if (!(bl == strlen(arg) + 2 && !strncmp(body + 1, arg, bl - 2))) {
            sreply_error(r, 400, "0x80040203", "partitionid in the body does not match the partitionId of the request.");
            return -EINVAL;
        }
    }
    if (body && strpbrk(body, "/<>*%&:\\?")) {
        sreply_error(r, 400, "0x80040203", "partitionid holds a character an alternate key cannot: / < > * %% & : \\ ?");
        return -EINVAL;
    }
    return 0;
}

/* POST (key NULL) or PATCH upsert (key given), with the business-logic headers bl. */
static void write_record(struct req *r, const struct table_def *t, const char *key, const struct bypass *bl)
{
    struct wsess ws = {NULL, false};
    struct rec rec;
    struct write_body wb;
    struct buf out = BUF_INIT, url = BUF_INIT;
    char *old = NULL;
    size_t old_len = 0;
    char body_id[37], id[37], row[DVSTORE_ID_MAX];
    struct buf part = BUF_INIT;
    bool ok = false, create = false;
    srec_init(&rec);
    memset(&wb, 0, sizeof wb);
    if (webwrite_session_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    if (key) {
        addressed_row(r, t, key, &part, row);
        int rc = dvstore_get_record(ws.db, tid, row, &old, &old_len);
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
        webapi_row_not_found(r, t, key, part.data);
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
    int old_state = create ? -1 : webwrite_int_member(&rec, "statecode");
    if (webwrite_apply_body(r, ws.db, t, &rec, create, body_id, &wb))
        goto out;
    if (create && elastic_partition_take(r, t, &rec))
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
        webwrite_random_guid(r->d, id);
    if (!key && body_id[0]) {
        char *x = NULL;
        size_t xl;
        webwrite_row_id(t, id, &rec, row);
        if (dvstore_get_record(ws.db, tid, row, &x, &xl) == 0) {
            free(x);
            sreply_error(r, 412, "0x80040237", "A record with matching key values already exists.");
            goto out;
        }
    }
    srec_set_str(&rec, t->pk, id);
    if (create ? webwrite_create_defaults(r, ws.db, t, &rec, id) : webwrite_check_update(r, t, old_state, &rec, &wb, id))
        goto out;
    if (webwrite_derive(ws.db, r->env, t, &rec)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    if (wb.image_set) {
        const struct col_def *image = NULL;
        for (size_t i = 0; i < t->n_cols && !image; i++)
            if (t->cols[i].type == COL_IMAGE)
                image = &t->cols[i];
        if (webwrite_image_set(r, ws.db, t, id, &rec, image, wb.image_null ? NULL : (wb.image.data ? wb.image.data : ""),
                               wb.image.len, NULL))
            goto out;
    }
    struct write_ctx w = {r->d, ws.db, r->env, true};
    if (webwrite_store(&w, t, id, &rec, create, &out)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    if (t->activity && wb.parties_set && webwrite_parties_replace(r, ws.db, t, id, &rec, &wb)) {
        if (r->status < 400)
            sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    if (webwrite_business_effects(r, ws.db, t, id, &rec, bl)) {
        if (r->status < 400)
            sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = webwrite_session_finish(r, &ws, ok);
    if (ok) {
        entity_url(r, t, id, &url);
        sreq_add_header(r, "OData-EntityId", url.data);
        if (want_representation(r)) {
            represent(r, t, out.data, out.len, create && !key ? 201 : create ? 201 : 200);
        } else {
            webwrite_reply_no_content(r);
        }
    }
    free(old);
    webwrite_body_release(&wb);
    srec_release(&rec);
    buf_release(&out);
    buf_release(&url);
    buf_release(&part);
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
    char *old = NULL, row[DVSTORE_ID_MAX];
    size_t old_len = 0;
    struct buf part = BUF_INIT;
    if (webwrite_session_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    addressed_row(r, t, key, &part, row);
    int rc = dvstore_get_record(ws.db, tid, row, &old, &old_len);
    if (rc == -ENOENT) {
        webapi_row_not_found(r, t, key, part.data);
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
    if (rc || dvstore_next_version(ws.db, r->env, &ver) || dvstore_delete_record(ws.db, tid, row, ver) ||
        drop_intersect_rows(r, ws.db, t, key) || dvsim_audit_write(&w, t, key, 3) ||
        (t->activity && webwrite_activity_deleted(ws.db, r->env, key))) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = webwrite_session_finish(r, &ws, ok);
    if (ok)
        webwrite_reply_no_content(r);
    free(old);
    buf_release(&part);
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
    const struct col_def *single = n ? NULL : dvschema_col_by_nav(t, nav, nl, NULL);
    char navz[128];
    snprintf(navz, sizeof navz, "%.*s", (int)(nl < sizeof navz ? nl : sizeof navz - 1), nav);
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
        char set[96];
        int rr = ref ? webwrite_resolve_ref(ref, &ot, oid, set, sizeof set) : -EINVAL;
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
        else if (!q || webwrite_resolve_ref(q, &ot, oid, NULL, 0)) {
            sreply_error(r, 400, "0x80060888", "Give the record to disassociate as $id=<url> or <nav>(<id>)/$ref.");
            return;
        }
    } else if (!del) {
        sreply_error(r, 405, "0x80060888", "Use POST, PUT or DELETE with $ref.");
        return;
    }
    const char *other_logical = n ? (first ? n->entity2 : n->entity1) : NULL;
    if (ot && (n ? strcmp(ot->logical, other_logical) != 0 : !dvschema_lookup_target(single, ot->logical, navz))) {
        sreply_error(r, 400, "0x80060888", "The reference must point at a %s record.",
                     n ? other_logical : single->targets[0].table);
        return;
    }
    struct wsess ws = {NULL, false};
    bool ok = false;
    struct rec rec;
    struct buf out = BUF_INIT;
    char *line = NULL;
    size_t len;
    srec_init(&rec);
    if (webwrite_session_begin(r, &ws)) {
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
        if (webwrite_closed(t, webwrite_int_member(&rec, "statecode"))) {
            webwrite_reply_closed(r, t, webwrite_int_member(&rec, "statecode"));
            goto out;
        }
        if (!(single->flags & COLF_UPDATE)) {
            sreply_error(r, 400, "0x80060888", "The lookup '%s' of %s cannot be set.", single->name, t->logical);
            goto out;
        }
        if (webwrite_set_lookup(r, ws.db, &rec, single, del ? NULL : ot, del ? NULL : oid))
            goto out;
        struct write_ctx w = {r->d, ws.db, r->env, true};
        rc = webwrite_derive(ws.db, r->env, t, &rec);
        rc = rc ? rc : webwrite_store(&w, t, key, &rec, false, &out);
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
            webwrite_random_guid(r->d, lid);
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
    ok = webwrite_session_finish(r, &ws, ok);
    if (ok)
        webwrite_reply_no_content(r);
    free(line);
    srec_release(&rec);
    buf_release(&out);
}

void webwrite_route(struct req *r, const struct table_def *t, const char *key, const char *sub)
{
    const char *m = r->method;
    bool get = !strcmp(m, "GET");
    struct bypass bl;
    if (!get) {
        if (t->intersect && !sub) {
            sreply_error(r, 405, "0x80040800", "The '%s' method does not support entities of type '%s' (associate records with $ref).",
                         m, t->logical);
            return;
        }
        if (webwrite_refuse_table(r, t) || webwrite_business_logic(r, t, &bl))
            return;
    }
    if (!sub) {
        if (!key && !strcmp(m, "POST"))
            write_record(r, t, NULL, &bl);
        else if (key && !strcmp(m, "PATCH"))
            write_record(r, t, key, &bl);
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
    if (!get && !strcmp(rest, "/$ref")) {
        ref_route(r, t, key, name, nl, NULL);
        return;
    }
    if (!get && *rest == '(' && dvsim_guid_valid(rest + 1, 36) && !strcmp(rest + 37, ")/$ref")) {
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
    if (!strcmp(rest, "/$value") && get && (c->type == COL_FILE || c->type == COL_IMAGE || c->type == COL_MEMO)) {
        webwrite_file_get(r, t, key, c);
        return;
    }
    if (*rest == '\0' && (c->type == COL_FILE || c->type == COL_IMAGE) &&
        (!strcmp(m, "PATCH") || !strcmp(m, "PUT") || !strcmp(m, "DELETE"))) {
        webwrite_file_put(r, t, key, c, !strcmp(m, "DELETE"));
        return;
    }
    sreply_error(r, 501, "0x80060888", "dvsim does not support %s on %s/%.*s%s.", m, t->set, (int)nl, name, rest);
}
