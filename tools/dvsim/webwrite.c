/* webwrite: the write side of each org's Web API: POST/PATCH (upsert)/DELETE by key, If-Match and
 * If-None-Match, @odata.bind, N:N $ref, $batch, file columns ($value with Range, PATCH upload),
 * and the audit rows dvsim writes for every create, update and delete it serves.
 * Writers hold d->write_lock for the whole SQLite transaction (versions are per org and must
 * not interleave). */
#include "tools/dvsim/dvsim.h"

#include <errno.h>
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

void webwrite_route(struct req *r, const struct table_def *t, const char *key, const char *sub)
{
    sreply_error(r, 501, "0x80040216", "Not implemented yet in dvsim: %s", r->method);
}

void webwrite_batch(struct req *r)
{
    sreply_error(r, 501, "0x80040216", "$batch is not implemented yet in dvsim.");
}
