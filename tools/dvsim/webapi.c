/* webapi: the read side of each org's Web API (<instanceApiUrl>/api/data/v9.2/): the routing of
 * every request under it, and the reads.
 *
 *   GET /                          service document
 *   GET /EntityDefinitions...      metadata (webapi_meta.c)
 *   GET /RetrieveMetadataChanges(...)  what changed in it (webapi_metachanges.c)
 *   GET /<set>?$select&$filter&$orderby&$top   Prefer: odata.maxpagesize (<= 5000),
 *       odata.include-annotations, odata.track-changes; $skiptoken in @odata.nextLink;
 *       $deltatoken in @odata.deltaLink (upserts by version, then $deletedEntity rows)
 *   GET /<set>/$count, GET /<set>(<guid>); an elastic table's row in a partition:
 *       /<set>(<guid>)?partitionId=<p> or the alternate key /<set>(<pk>=<guid>,partitionid='<p>')
 *       (elastic_alternate_key; the same for writes)
 *   GET /WhoAmI, GET /systemusers(<guid>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges(),
 *   POST /CloseIncident | /WinOpportunity | /LoseOpportunity   (webwrite_actions.c)
 * Writes, $batch and file columns are routed to webwrite*.c; the query options ($filter,
 * $orderby, the $skiptoken cookie) are parsed in webapi_query.c, $deltatoken pages come from
 * webapi_delta.c (webapi_int.h lists the files).
 *
 * A virtual table's rows live in an external system: every read of one answers 500 as a data
 * provider whose source does not answer makes the service answer (virtual_read_fails).
 * Paging order is the primary key's bytes (or $orderby, then the key; an elastic table's rows of
 * one id by their stored id, store.c). Thread-safe: each request
 * uses its own SQLite connection from the pool. */
#include "tools/dvsim/webapi_int.h"

#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FV_NAME "OData.Community.Display.V1.FormattedValue"
#define LLN_NAME "Microsoft.Dynamics.CRM.lookuplogicalname"

/* ---- Prefer ---- */
struct prefer {
    int maxpagesize;
    bool track;
    bool have_annot;
    char annot[512];
    bool return_repr;
    bool continue_on_error;
};

void webapi_prefer_parse(struct req *r, struct prefer *p);
void webapi_prefer_parse(struct req *r, struct prefer *p)
{
    memset(p, 0, sizeof *p);
    struct buf all = BUF_INIT;
    sreq_header_all(r, "Prefer", &all);
    const char *s = all.data ? all.data : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        const char *start = s;
        bool q = false;
        while (*s && (q || *s != ',')) {
            if (*s == '"')
                q = !q;
            s++;
        }
        size_t n = (size_t)(s - start);
        while (n && start[n - 1] == ' ')
            n--;
        if (n > 18 && strncasecmp(start, "odata.maxpagesize=", 18) == 0)
            p->maxpagesize = (int)strtol(start + 18, NULL, 10);
        else if (n == 19 && strncasecmp(start, "odata.track-changes", 19) == 0)
            p->track = true;
        else if (n == 21 && strncasecmp(start, "return=representation", 21) == 0)
            p->return_repr = true;
        else if (n == 23 && strncasecmp(start, "odata.continue-on-error", 23) == 0)
            p->continue_on_error = true;
        else if (n > 26 && strncasecmp(start, "odata.include-annotations=", 26) == 0) {
            p->have_annot = true;
            snprintf(p->annot, sizeof p->annot, "%.*s", (int)(n - 26), start + 26);
        }
    }
    buf_release(&all);
}

/* ---- helpers ---- */

void webapi_base(struct req *r, struct buf *out)
{
    sreq_base(r, out);
    buf_printf(out, "/org/%s%s", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX);
}

/* The request URL with its query rebuilt, without the given options. */
static void self_link(struct req *r, const char *set, const char *const *drop, struct buf *out)
{
    webapi_base(r, out);
    buf_printf(out, "/%s", set);
    char sep = '?';
    for (int i = 0; i < r->n_args; i++) {
        bool skip = false;
        for (const char *const *d = drop; *d && !skip; d++)
            skip = strcmp(r->args[i].key, *d) == 0;
        if (skip)
            continue;
        buf_addch(out, sep);
        sep = '&';
        buf_addstr(out, r->args[i].key);
        buf_addch(out, '=');
        dvsim_url_encode(out, r->args[i].val, strlen(r->args[i].val));
    }
    if (sep == '&')
        buf_addch(out, '&');
    else
        buf_addch(out, '?');
}

static bool is_known_option(const char *k)
{
    static const char *const ok[] = {"$select", "$filter", "$orderby", "$top", "$skiptoken", "$deltatoken",
                                     "$expand", "$count", NULL};
    for (const char *const *p = ok; *p; p++)
        if (strcmp(k, *p) == 0)
            return true;
    return false;
}

/* Build the projection from $select and Prefer. 0 or a 400 reply. */
int webapi_projection_init(struct req *r, const struct table_def *t, const struct prefer *pf, struct projection *p,
                    char *ctx_sel, size_t ctx_n);
int webapi_projection_init(struct req *r, const struct table_def *t, const struct prefer *pf, struct projection *p,
                    char *ctx_sel, size_t ctx_n)
{
    memset(p, 0, sizeof *p);
    p->t = t;
    p->n_select = -1;
    if (pf->have_annot)
        dvline_annot_parse(&p->annot, pf->annot);
    p->all_annotations = dvline_annot_match(&p->annot, FV_NAME, strlen(FV_NAME)) &&
                         dvline_annot_match(&p->annot, LLN_NAME, strlen(LLN_NAME));
    if (ctx_n)
        ctx_sel[0] = '\0';
    const char *sel = sreq_arg(r, "$select");
    if (!sel)
        return 0;
    p->n_select = 0;
    const char *s = sel;
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        size_t l = (size_t)(e - s);
        while (l && s[l - 1] == ' ')
            l--;
        if (!dvschema_col_by_member(t, s, l)) {
            sreply_error(r, 400, QUERY_ERR, "Could not find a property named '%.*s' on type 'Microsoft.Dynamics.CRM.%s'.",
                        (int)(l > 80 ? 80 : l), s, t->logical);
            return -EINVAL;
        }
        if (p->n_select >= 64) {
            sreply_error(r, 400, QUERY_ERR, "Too many columns in $select.");
            return -EINVAL;
        }
        p->select[p->n_select] = s;
        p->select_len[p->n_select] = l;
        p->n_select++;
        s = e;
    }
    if (ctx_n)
        snprintf(ctx_sel, ctx_n, "(%s)", sel);
    return 0;
}

/* ---- collection GET ---- */

static void virtual_read_fails(struct req *r, const struct table_def *t)
{
    sreply_error(r, 500, "0x80040216",
                 "The data provider of virtual table '%s' failed: the external source "
                 "https://erp.contoso.invalid/odata/Orders did not answer within 30 seconds.", t->logical);
}

static void collection_get(struct req *r, const struct table_def *t)
{
    if (t->virtual_table) {
        virtual_read_fails(r, t);
        return;
    }
    struct dvsim *d = r->d;
    struct prefer pf;
    struct projection proj;
    struct fnode *filter = NULL;
    struct order order = {.n = 0};
    struct sorted_row *rows = NULL;
    size_t n_rows = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct buf tmp = BUF_INIT, link = BUF_INIT;
    char ctx_sel[600], err[400];
    int tid = table_id(r->env, dvschema_table_index(t));

    webapi_prefer_parse(r, &pf);
    for (int i = 0; i < r->n_args; i++) {
        if (r->args[i].key[0] == '$' && !is_known_option(r->args[i].key)) {
            sreply_error(r, 400, QUERY_ERR, "The query parameter %.40s is not supported", r->args[i].key);
            return;
        }
    }
    const char *deltatoken = sreq_arg(r, "$deltatoken");
    const char *skiptoken = sreq_arg(r, "$skiptoken");
    bool track = t->change_tracking && (pf.track || deltatoken);
    if (track) {
        static const char *const bad[] = {"$filter", "$orderby", "$expand", "$top"};
        for (int i = 0; i < 4; i++)
            if (sreq_arg(r, bad[i])) {
                sreply_error(r, 400, QUERY_ERR,
                            "The \"%s\" query parameter isn't supported when Change Tracking is enabled.", bad[i]);
                return;
            }
    }
    if (sreq_arg(r, "$expand")) {
        sreply_error(r, 400, "0x80060888", "$expand is not supported by dvsim on collections.");
        return;
    }
    if (webapi_projection_init(r, t, &pf, &proj, ctx_sel, sizeof ctx_sel))
        return;
    const char *fs = sreq_arg(r, "$filter");
    if (fs) {
        filter = webapi_filter_parse(t, fs, err, sizeof err);
        if (!filter) {
            sreply_error(r, 400, QUERY_ERR, "%s", err);
            return;
        }
    }
    const char *os = sreq_arg(r, "$orderby");
    if (os && webapi_orderby_parse(t, os, &order, err, sizeof err)) {
        sreply_error(r, 400, QUERY_ERR, "%s", err);
        goto out;
    }
    long top = -1;
    const char *ts = sreq_arg(r, "$top");
    if (ts) {
        char *end;
        top = strtol(ts, &end, 10);
        if (*end || top < 0) {
            sreply_error(r, 400, QUERY_ERR, "Invalid value '%.40s' for $top.", ts);
            goto out;
        }
        if (top > DVSIM_MAX_PAGE)
            top = DVSIM_MAX_PAGE;
    }
    int page = pf.maxpagesize > 0 && pf.maxpagesize <= DVSIM_MAX_PAGE ? pf.maxpagesize : DVSIM_MAX_PAGE;
    struct cookie ck;
    memset(&ck, 0, sizeof ck);
    ck.page = 1;
    if (skiptoken && (webapi_cookie_parse(skiptoken, &ck) || (ck.tracking != track && deltatoken == NULL && track))) {
        sreply_error(r, 400, QUERY_ERR, "The $skiptoken is not valid.");
        goto out;
    }
    int64_t since = 0;
    if (deltatoken) {
        int rc = webapi_delta_token_parse(d, deltatoken, &since);
        if (rc == -ESTALE) {
            sreply_error(r, 400, "0x80044352",
                        "Version stamp associated with the client has expired. Please perform a full sync.");
            goto out;
        }
        if (rc) {
            sreply_error(r, 400, QUERY_ERR, "The $deltatoken is not valid.");
            goto out;
        }
    }
    db = dvstore_get(d->store);
    if (!db) {
        sreply_error(r, 500, "0x80040216", "database unavailable");
        goto out;
    }
    int64_t snapshot = ck.ver ? ck.ver : webapi_org_version(db, r->env);

    struct buf *o = &r->out;
    buf_reset(o);
    buf_addstr(o, "{\"@odata.context\":\"");
    webapi_base(r, o);
    buf_printf(o, "/$metadata#%s%s%s\",\"value\":[", t->set, ctx_sel, deltatoken ? "/$delta" : "");
    int emitted = 0;
    bool more = false;
    struct lmember m[128];
    struct cookie next = ck;
    next.page = ck.page + 1;
    next.tracking = track;
    next.ver = track ? snapshot : 0;

    if (deltatoken) {
        webapi_delta_page(r, t, db, tid, &proj, &ck, since, snapshot, page, o, &emitted, &more,
                          &next);
    } else if (order.n > 0) {
        /* $orderby: sort every match in memory, page by offset */
        sqlite3_prepare_v2(db, "SELECT id, line FROM rec WHERE tid=?1 AND del=0 ORDER BY id", -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        size_t cap = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *line = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            int nm = dvline_scan(line, len, m, 128);
            if (nm < 0 || (filter && !webapi_filter_eval(filter, m, nm, &tmp)))
                continue;
            if (n_rows == cap) {
                cap = cap ? cap * 2 : 1024;
                struct sorted_row *nr = realloc(rows, cap * sizeof *rows);
                if (!nr)
                    break;
                rows = nr;
            }
            struct sorted_row *sr = &rows[n_rows++];
            sr->id = strdup((const char *)sqlite3_column_text(st, 0));
            sr->line = malloc(len + 1);
            memcpy(sr->line, line, len);
            sr->line[len] = '\0';
            sr->len = len;
            int nm2 = dvline_scan(sr->line, len, m, 128);
            for (int k = 0; k < order.n; k++) {
                const struct lmember *v = dvline_member(m, nm2, order.k[k].member);
                sr->val[k] = v ? v->val : NULL;
                sr->vlen[k] = v ? v->val_len : 0;
                if (v && v->val[0] == '"') {
                    sr->val[k]++;
                    sr->vlen[k] -= 2;
                }
            }
        }
        sqlite3_finalize(st);
        st = NULL;
        qsort_r(rows, n_rows, sizeof *rows, webapi_row_cmp, &order);
        size_t start = (size_t)ck.off, limit = top >= 0 ? (size_t)top : (size_t)page;
        for (size_t i = start; i < n_rows; i++) {
            if ((size_t)emitted == limit) {
                more = top < 0;
                break;
            }
            if (emitted)
                buf_addch(o, ',');
            dvline_project(&proj, rows[i].line, rows[i].len, o);
            emitted++;
        }
        next.off = (int64_t)start + emitted;
    } else {
        /* the page starts after the last key given, or at the filter's lower bound on the key
         * when that is further; it ends at the filter's upper bound (an index seek: a key
         * range's pages cost what they return, as on the service) */
        char lo[37] = "", hi[38] = "";
        bool lo_incl = false, hi_incl = false;
        webapi_filter_key_bounds(filter, t->pk, lo, &lo_incl, hi, &hi_incl);
        /* an inclusive upper bound takes an elastic row's stored ids of that id too (<id>:<hash>,
         * store.c): below "<id>;" (';' follows ':') */
        if (hi[0] && hi_incl) {
            size_t hl = strlen(hi); /* at most 36 */
            hi[hl] = ';';
            hi[hl + 1] = '\0';
            hi_incl = false;
        }
        bool from_lo = lo[0] && strcmp(lo, ck.last) > 0;
        /* the primary key alone (no filter): from the key and version columns, the stored line
         * (whose etag is W/"<ver>") not read, as the service answers it from an index */
        bool keys_only = !filter && proj.n_select == 1 && strlen(t->pk) == proj.select_len[0] &&
                         memcmp(proj.select[0], t->pk, proj.select_len[0]) == 0;
        char sql[160];
        snprintf(sql, sizeof sql, "SELECT id, %s FROM rec WHERE tid=?1 AND del=0 AND id%s?2%s ORDER BY id",
                 keys_only ? "ver" : "line", from_lo && lo_incl ? ">=" : ">",
                 hi[0] ? hi_incl ? " AND id<=?3" : " AND id<?3" : "");
        sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, from_lo ? lo : ck.last, -1, SQLITE_STATIC);
        if (hi[0])
            sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
        int limit = top >= 0 ? (int)top : page;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *line = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            if (filter) {
                int nm = dvline_scan(line, len, m, 128);
                if (nm < 0 || !webapi_filter_eval(filter, m, nm, &tmp))
                    continue;
            }
            if (emitted == limit) {
                more = top < 0;
                break;
            }
            if (emitted)
                buf_addch(o, ',');
            if (keys_only) {
                const char *sid = (const char *)sqlite3_column_text(st, 0); /* an elastic row: id:partition */
                buf_printf(o, "{\"%s\":\"%.*s\",\"@odata.etag\":\"W/\\\"%lld\\\"\"}", t->pk,
                           (int)dvstore_id_len(sid), sid, (long long)sqlite3_column_int64(st, 1));
            }
            else
                dvline_project(&proj, line, len, o);
            snprintf(next.last, sizeof next.last, "%s", (const char *)sqlite3_column_text(st, 0));
            emitted++;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    buf_addch(o, ']');
    if (more) {
        static const char *const drop[] = {"$skiptoken", NULL};
        buf_addstr(o, ",\"@odata.nextLink\":");
        buf_reset(&link);
        self_link(r, t->set, drop, &link);
        buf_addstr(&link, "$skiptoken=");
        buf_reset(&tmp);
        webapi_cookie_render(&next, &tmp);
        dvsim_url_encode(&link, tmp.data, tmp.len);
        buf_add_json_string(o, link.data, link.len);
    } else if (track) {
        static const char *const drop[] = {"$skiptoken", "$deltatoken", NULL};
        buf_addstr(o, ",\"@odata.deltaLink\":");
        buf_reset(&link);
        self_link(r, t->set, drop, &link);
        buf_addstr(&link, "$deltatoken=");
        webapi_delta_token_render(snapshot, &link);
        buf_add_json_string(o, link.data, link.len);
    }
    buf_addch(o, '}');
    sreply_json(r, 200);
    {
        char pa[700] = "";
        size_t pl = 0;
        if (pf.maxpagesize > 0)
            pl += (size_t)snprintf(pa + pl, sizeof pa - pl, "odata.maxpagesize=%d", page);
        if (track && pf.track)
            pl += (size_t)snprintf(pa + pl, sizeof pa - pl, "%sodata.track-changes", pl ? "," : "");
        if (pf.have_annot)
            snprintf(pa + pl, sizeof pa - pl, "%sodata.include-annotations=%s", pl ? "," : "",
                     pf.annot[0] ? pf.annot : "\"*\"");
        if (pa[0])
            sreq_add_header(r, "Preference-Applied", pa);
    }
out:
    sqlite3_finalize(st);
    dvstore_put(d->store, db);
    webapi_filter_free(filter);
    for (size_t i = 0; i < n_rows; i++) {
        free(rows[i].id);
        free(rows[i].line);
    }
    free(rows);
    buf_release(&tmp);
    buf_release(&link);
}

static void count_get(struct req *r, const struct table_def *t)
{
    if (t->virtual_table) {
        virtual_read_fails(r, t);
        return;
    }
    sqlite3 *db = dvstore_get(r->d->store);
    sqlite3_stmt *st = NULL;
    long long n = 0;
    if (db && sqlite3_prepare_v2(db, "SELECT count(*) FROM rec WHERE tid=?1 AND del=0", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, table_id(r->env, dvschema_table_index(t)));
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    dvstore_put(r->d->store, db);
    buf_reset(&r->out);
    buf_printf(&r->out, "%lld", n > 5000 ? 5000 : n);
    r->status = 200;
    r->content_type = "text/plain";
}

const char *webapi_partition_arg(struct req *r)
{
    const char *arg = sreq_arg(r, "partitionId");
    return arg ? arg : sreq_arg(r, "partitionid");
}

void webapi_row_not_found(struct req *r, const struct table_def *t, const char *key,
                          const char *partition)
{
    if (t->elastic)
        sreply_error(r, 404, "0x80040217", "%s With Id = %s and partitionid = %s Does Not Exist",
                     t->logical, key, partition ? partition : "null");
    else
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, key);
}

void webapi_record_get(struct req *r, const struct table_def *t, const char *key);
void webapi_record_get(struct req *r, const struct table_def *t, const char *key)
{
    if (t->virtual_table) {
        virtual_read_fails(r, t);
        return;
    }
    struct prefer pf;
    struct projection proj;
    char ctx_sel[600];
    webapi_prefer_parse(r, &pf);
    if (webapi_projection_init(r, t, &pf, &proj, ctx_sel, sizeof ctx_sel))
        return;
    sqlite3 *db = dvstore_get(r->d->store);
    char *line = NULL, row[DVSTORE_ID_MAX];
    size_t len = 0;
    /* an elastic row in a partition is read with it named (?partitionId=, or the alternate key) */
    const char *part = t->elastic ? webapi_partition_arg(r) : NULL;
    dvstore_row_id(key, part, row);
    int rc = db ? dvstore_get_record(db, table_id(r->env, dvschema_table_index(t)), row, &line, &len) : -EIO;
    dvstore_put(r->d->store, db);
    if (rc == -ENOENT) {
        webapi_row_not_found(r, t, key, part);
        return;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        return;
    }
    const char *inm = sreq_header(r, "If-None-Match");
    if (inm && strcmp(inm, "null") != 0 && !pf.have_annot) {
        struct lmember m[128];
        int nm = dvline_scan(line, len, m, 128);
        const struct lmember *e = nm > 0 ? dvline_member(m, nm, "@odata.etag") : NULL;
        struct buf et = BUF_INIT;
        if (e)
            dvline_unquote(e->val, e->val_len, &et);
        bool same = et.data && strcmp(et.data, inm) == 0;
        buf_release(&et);
        if (same) {
            free(line);
            buf_reset(&r->out);
            r->status = 304;
            return;
        }
    }
    struct buf body = BUF_INIT;
    dvline_project(&proj, line, len, &body);
    free(line);
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"@odata.context\":\"");
    webapi_base(r, &r->out);
    buf_printf(&r->out, "/$metadata#%s%s/$entity\"", t->set, ctx_sel);
    if (body.len > 2)
        buf_addch(&r->out, ',');
    buf_add(&r->out, body.data + 1, body.len - 1);
    buf_release(&body);
    sreply_json(r, 200);
}

static void service_document(struct req *r)
{
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"@odata.context\":\"");
    webapi_base(r, &r->out);
    buf_addstr(&r->out, "/$metadata\",\"value\":[");
    for (int i = 0; i < N_TABLES + (int)dvschema_n_extra; i++)
        buf_printf(&r->out, "%s{\"name\":\"%s\",\"kind\":\"EntitySet\",\"url\":\"%s\"}", i ? "," : "",
                   dvschema_table_at(i)->set, dvschema_table_at(i)->set);
    buf_addstr(&r->out, "]}");
    sreply_json(r, 200);
}

/* An elastic table's alternate key segment, <pk>=<id>,partitionid='<partition>' (either order,
 * partitionid or partitionId, '' for a quote): key gets the id (lower case) and the partition joins
 * the request's arguments as partitionId (one given there too must be the same). 0, or -EINVAL
 * after a 400 reply. */
static int elastic_alternate_key(struct req *r, const struct table_def *t, const char *k, size_t kl, char key[64])
{
    const char *id = NULL;
    size_t id_len = 0;
    struct buf part = BUF_INIT;
    bool have_part = false;
    const char *p = k, *end = k + kl;
    int rc = 0;
    while (p < end && !rc) {
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq) {
            rc = -EINVAL;
            break;
        }
        size_t nl = (size_t)(eq - p);
        const char *v = eq + 1;
        const char *next;
        if (nl == strlen(t->pk) && !strncmp(p, t->pk, nl)) {
            id = v;
            id_len = strcspn(v, ",)");
            if (v + id_len > end)
                id_len = (size_t)(end - v);
            next = v + id_len;
        } else if (nl == 11 && !strncasecmp(p, "partitionid", 11) && v < end && *v == '\'') {
            const char *q = v + 1;
            for (; q < end; q++) {
                if (*q == '\'' && q + 1 < end && q[1] == '\'')
                    buf_addch(&part, *q++);
                else if (*q == '\'')
                    break;
                else
                    buf_addch(&part, *q);
            }
            if (q >= end) {
                rc = -EINVAL;
                break;
            }
            have_part = true;
            next = q + 1;
        } else {
            rc = -EINVAL;
            break;
        }
        if (next < end && *next != ',')
            rc = -EINVAL;
        p = next < end ? next + 1 : end;
    }
    if (rc || !id || !have_part || !dvsim_guid_valid(id, id_len)) {
        sreply_error(r, 400, "0x80060888", "Invalid key '%.*s': dvsim takes a primary key GUID or %s=<GUID>,partitionid='<partition>'.",
                     (int)(kl > 80 ? 80 : kl), k, t->pk);
        buf_release(&part);
        return -EINVAL;
    }
    for (size_t i = 0; i < id_len; i++)
        key[i] = (char)tolower((unsigned char)id[i]);
    key[id_len] = '\0';
    const char *given = sreq_arg(r, "partitionId");
    if (given && strcmp(given, part.data ? part.data : "") != 0) {
        sreply_error(r, 400, "0x80060888", "The key's partitionid and ?partitionId= differ.");
        rc = -EINVAL;
    } else if (!given && r->n_args < 32) {
        r->args[r->n_args].key = strdup("partitionId");
        r->args[r->n_args].val = strdup(part.data ? part.data : "");
        if (r->args[r->n_args].key && r->args[r->n_args].val) {
            r->n_args++;
        } else {
            free(r->args[r->n_args].key);
            free(r->args[r->n_args].val);
            sreply_error(r, 500, "0x80040216", "out of memory");
            rc = -ENOMEM;
        }
    } else if (!given) {
        sreply_error(r, 400, "0x80060888", "Too many query parameters.");
        rc = -EINVAL;
    }
    buf_release(&part);
    return rc;
}

void webapi_route(struct req *r, const char *rest)
{
    if (*rest == '/')
        rest++;
    bool get = strcmp(r->method, "GET") == 0;
    if (*rest == '\0') {
        if (get)
            service_document(r);
        else
            sreply_error(r, 405, "0x80060888", "Method %s is not allowed here.", r->method);
        return;
    }
    if (strncmp(rest, "EntityDefinitions", 17) == 0) {
        if (!get) {
            sreply_error(r, 405, "0x80060888", "dvsim does not change metadata.");
            return;
        }
        webapi_entity_definitions(r, rest + 17);
        return;
    }
    if (strcmp(rest, "$batch") == 0) {
        webwrite_batch(r);
        return;
    }
    const char *message = strncmp(rest, "Microsoft.Dynamics.CRM.", 23) == 0 ? rest + 23 : rest;
    if (strncmp(message, "RetrieveMetadataChanges(", 24) == 0 && get) {
        webapi_metadata_changes(r, message + 23);
        return;
    }
    if (!strcmp(message, "WhoAmI") || !strcmp(message, "WhoAmI()")) {
        webwrite_whoami(r);
        return;
    }
    if (!strcmp(message, "CloseIncident") || !strcmp(message, "WinOpportunity") || !strcmp(message, "LoseOpportunity")) {
        webwrite_action(r, message);
        return;
    }
    size_t sl = strcspn(rest, "(/");
    const struct table_def *t = dvschema_table_by_set(rest, sl);
    if (!t) {
        sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.*s'.", (int)(sl > 80 ? 80 : sl), rest);
        return;
    }
    const char *p = rest + sl;
    if (*p == '\0') {
        if (get)
            collection_get(r, t);
        else
            webwrite_route(r, t, NULL, NULL);
        return;
    }
    if (strcmp(p, "/$count") == 0 && get) {
        count_get(r, t);
        return;
    }
    if (*p == '(') {
        const char *k = p + 1;
        size_t kl = strcspn(k, ")");
        if (k[kl] != ')') {
            sreply_error(r, 400, QUERY_ERR, "Bad key segment.");
            return;
        }
        char key[64];
        if (t->elastic && !dvsim_guid_valid(k, kl)) {
            /* the alternate key (<pk>=<id>,partitionid='<partition>'): its partition is taken as
             * ?partitionId= */
            if (elastic_alternate_key(r, t, k, kl, key))
                return;
            const char *sub = k + kl + 1;
            if (*sub == '\0' && get)
                webapi_record_get(r, t, key);
            else
                webwrite_route(r, t, key, *sub ? sub : NULL);
            return;
        }
        if (!dvsim_guid_valid(k, kl)) {
            sreply_error(r, 400, "0x80060888", "Invalid key '%.*s': dvsim supports primary key GUIDs only.",
                        (int)(kl > 80 ? 80 : kl), k);
            return;
        }
        for (size_t i = 0; i < kl; i++)
            key[i] = (char)tolower((unsigned char)k[i]);
        key[kl] = '\0';
        const char *sub = k + kl + 1;
        if (*sub == '\0' && get) {
            webapi_record_get(r, t, key);
            return;
        }
        if (t == &dvschema_tables[T_SYSTEMUSER] && (!strcmp(sub, "/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()") ||
                                                    !strcmp(sub, "/Microsoft.Dynamics.CRM.RetrieveUserPrivileges"))) {
            webwrite_user_privileges(r, key);
            return;
        }
        webwrite_route(r, t, key, *sub ? sub : NULL);
        return;
    }
    sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.80s'.", rest);
}

int webapi_projection_for(struct req *r, const struct table_def *t, struct projection *p, char *ctx_sel, size_t ctx_n)
{
    struct prefer pf;
    webapi_prefer_parse(r, &pf);
    return webapi_projection_init(r, t, &pf, p, ctx_sel, ctx_n);
}
