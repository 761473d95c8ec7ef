/* sim: the /_sim/ control routes (loopback only, no token, never faulted).
 *   POST /_sim/churn {"env":E,"fraction":F,"seed":N}  update/create/delete about F of each user
 *        table's records (70% updates, 15% creates, 15% deletes), audited like API writes;
 *        answers {"env","updated","created","deleted","version"}. With "table":T (logical name
 *        or entity set) only that table; with "delete_fraction":D (0..1, instead of "fraction")
 *        exactly D of each table is deleted and nothing else changes (a mass delete).
 *   GET  /_sim/dump?env=E&table=T    the table in the table-file format (record.h, an elastic
 *        table's rows in the order of their id and partitionid), T = logical name or entity set
 *   GET  /_sim/requests[?since=SEQ][&parts=1]  {"requests":[{"seq","method","path","status",
 *        "time_ms","token","bytes","bypass_business_logic","bypass_custom_plugins",
 *        "suppress_flows"}],"last":SEQ}; token is a fingerprint, never the token; bypass_* are the
 *        business-logic headers that applied (null/false when absent); with parts=1 the requests
 *        inside each $batch too, marked "batch_part":true
 *   GET|POST /_sim/faults            fail_rate, latency_ms, drop_rate, truncate_rate,
 *        max_requests "N/SECONDS", max_concurrency, delta_token_lifetime_s, metadata_stamp_lifetime_s, capacity_free_mb
 *   GET|POST /_sim/config            {"bypass_privilege":bool}: whether the application user
 *        holds prvBypassCustomBusinessLogic and prvBypassCustomPlugins
 *   GET  /_sim/effects?env=E         {"env","plugin_runs","flow_runs"}: the simulated business
 *        logic's runs in that org (webwrite_activity.c)
 *   POST /_sim/metadata              change a table definition or expire the definitions' version
 *        stamps (webapi_metachanges.c)
 *   POST /_sim/reset                 reseed the tenant, restore start-up faults and config, clear
 *        the log, forget the definition changes
 * Churn is deterministic for a given database state and seed; it is the simulator's own hand,
 * not a client's: it runs no plug-in and follows no write rule but the derived columns.
 * Thread-safe: writers hold d->write_lock, control state is under d->lock. */
#include "tools/dvsim/webapi_int.h"
#include "backend/base/json.h"
#include "backend/base/record.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void sim_error(struct req *r, int status, const char *msg)
{
    sreply_error(r, status, "dvsim", "%s", msg);
}

/* ---- churn ---- */

static int churn_update(struct write_ctx *w, const struct table_def *t, int tb, const char *id, uint64_t *rng)
{
    char *line = NULL;
    size_t len = 0;
    int tid = table_id(w->env, tb);
    int rc = dvstore_get_record(w->db, tid, id, &line, &len);
    if (rc)
        return rc;
    struct rec rec;
    srec_init(&rec);
    struct buf out = BUF_INIT;
    int64_t ver = 0;
    rc = srec_from_line(&rec, line, len);
    if (!rc)
        rc = dvstore_next_version(w->db, w->env, &ver);
    if (rc)
        goto out;
    if (t->primary_name) {
        const char *cur = srec_get(&rec, t->primary_name);
        char base[200] = "";
        if (cur && cur[0] == '"') {
            size_t l = strlen(cur) - 2;
            const char *mark = strstr(cur, " \xc2\xb7 r"); /* " · r" */
            if (mark)
                l = (size_t)(mark - cur - 1);
            if (l >= sizeof base)
                l = 0;
            memcpy(base, cur + 1, l);
            base[l] = '\0';
        }
        char nv[260];
        snprintf(nv, sizeof nv, "%s \xc2\xb7 r%lld", base, (long long)ver);
        /* keep JSON escapes of the old value intact: base is raw JSON text without quotes */
        struct buf q = BUF_INIT;
        buf_printf(&q, "\"%s\"", nv);
        rc = srec_set(&rec, t->primary_name, q.data, q.len);
        buf_release(&q);
    }
    static const char *const money_cols[] = {"revenue", "annualincome", "estimatedvalue", NULL};
    for (const char *const *m = money_cols; *m && !rc; m++) {
        const struct col_def *c = dvschema_col_by_member(t, *m, strlen(*m));
        if (!c)
            continue;
        char v[64], f[96], key[160];
        uint64_t x = dvsim_splitmix64(rng);
        snprintf(v, sizeof v, "%llu.%02llu", (unsigned long long)(x % 900000000ull),
                 (unsigned long long)((x >> 40) % 100));
        rc = srec_set(&rec, *m, v, strlen(v));
        dvsim_fmt_money(v, f, sizeof f);
        snprintf(key, sizeof key, "%s@OData.Community.Display.V1.FormattedValue", *m);
        if (!rc)
            rc = srec_set_str(&rec, key, f);
    }
    if (!rc)
        rc = webwrite_derive(w->db, w->env, t, &rec);
    if (rc)
        goto out;
    srec_stamp(&rec, t, ver, (int64_t)time(NULL), false);
    rc = srec_render(&rec, t->pk, &out);
    if (!rc)
        rc = dvstore_put_record(w->db, tid, id, ver, out.data, out.len);
    if (!rc)
        rc = dvsim_audit_write(w, t, id, 2);
out:
    free(line);
    srec_release(&rec);
    buf_release(&out);
    return rc;
}

static int churn_create(struct write_ctx *w, const struct table_def *t, int tb, uint64_t *rng)
{
    struct buf line = BUF_INIT, out = BUF_INIT;
    struct rec rec;
    srec_init(&rec);
    char id[37];
    int64_t ver = 0;
    int rc = dvstore_next_version(w->db, w->env, &ver);
    if (!rc)
        rc = dvseed_create_record(w->d, w->db, w->env, tb, 1000000000ull + (uint64_t)ver, &line, id);
    if (!rc)
        rc = srec_from_line(&rec, line.data, line.len);
    if (!rc) {
        srec_stamp(&rec, t, ver, (int64_t)time(NULL), true);
        rc = srec_render(&rec, t->pk, &out);
    }
    if (!rc)
        rc = dvstore_put_record(w->db, table_id(w->env, tb), id, ver, out.data, out.len);
    if (!rc)
        rc = dvsim_audit_write(w, t, id, 1);
    (void)rng;
    srec_release(&rec);
    buf_release(&line);
    buf_release(&out);
    return rc;
}

static int churn_delete(struct write_ctx *w, const struct table_def *t, int tb, const char *id)
{
    int64_t ver = 0;
    int rc = dvstore_next_version(w->db, w->env, &ver);
    if (!rc)
        rc = dvstore_delete_record(w->db, table_id(w->env, tb), id, ver);
    if (!rc)
        rc = dvsim_audit_write(w, t, id, 3);
    return rc;
}

int dvsim_churn(struct dvsim *d, int env, double fraction, uint64_t seed, int only_table,
                double delete_fraction, struct buf *report, struct dverr *err)
{
    static const int tables[] = {T_ACCOUNT, T_CONTACT, T_OPPORTUNITY, T_INCIDENT, T_ANNOTATION, T_PROJECT};
    long long upd = 0, cre = 0, del = 0;
    char **ids = NULL;
    size_t n_ids = 0, cap = 0;
    pthread_mutex_lock(&d->write_lock);
    sqlite3 *db = dvstore_get(d->store);
    struct write_ctx w = {d, db, env, true};
    int rc = db ? dvstore_begin(db) : -EIO;
    const int *churned = only_table >= 0 ? &only_table : tables;
    size_t n_churned = only_table >= 0 ? 1 : sizeof tables / sizeof tables[0];
    for (size_t k = 0; k < n_churned && !rc; k++) {
        int tb = churned[k];
        const struct table_def *t = &dvschema_tables[tb];
        uint64_t rng = seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)env << 32) ^ (uint64_t)tb;
        sqlite3_stmt *st = NULL;
        n_ids = 0;
        rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT id FROM rec WHERE tid=?1 AND del=0 ORDER BY id", -1, &st, NULL));
        if (!rc) {
            sqlite3_bind_int(st, 1, table_id(env, tb));
            while (sqlite3_step(st) == SQLITE_ROW) {
                if (n_ids == cap) {
                    cap = cap ? cap * 2 : 4096;
                    char **nn = realloc(ids, cap * sizeof *ids);
                    if (!nn) {
                        rc = -ENOMEM;
                        break;
                    }
                    ids = nn;
                }
                ids[n_ids++] = strdup((const char *)sqlite3_column_text(st, 0));
            }
        }
        sqlite3_finalize(st);
        if (rc)
            break;
        size_t n = (size_t)llround(fraction * (double)n_ids);
        if (fraction > 0 && n == 0 && n_ids > 0)
            n = 1;
        if (n > n_ids)
            n = n_ids;
        size_t n_del = n * 15 / 100, n_upd = n - n_del - n * 15 / 100, n_new = n - n_upd - n_del;
        if (delete_fraction >= 0) {
            n_del = (size_t)llround(delete_fraction * (double)n_ids);
            n_upd = n_new = 0;
        }
        /* partial Fisher-Yates: the first n_upd + n_del slots are the victims */
        for (size_t i = 0; i < n_upd + n_del && i < n_ids; i++) {
            size_t j = i + (size_t)(dvsim_splitmix64(&rng) % (n_ids - i));
            char *tmp = ids[i];
            ids[i] = ids[j];
            ids[j] = tmp;
        }
        for (size_t i = 0; i < n_upd && !rc; i++, upd++)
            rc = churn_update(&w, t, tb, ids[i], &rng);
        for (size_t i = n_upd; i < n_upd + n_del && !rc; i++, del++)
            rc = churn_delete(&w, t, tb, ids[i]);
        for (size_t i = 0; i < n_new && !rc; i++, cre++)
            rc = churn_create(&w, t, tb, &rng);
        for (size_t i = 0; i < n_ids; i++)
            free(ids[i]);
    }
    free(ids);
    int64_t ver = 0;
    if (!rc) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(db, "SELECT ver FROM orgver WHERE env=?1", -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_int(st, 1, env);
            if (sqlite3_step(st) == SQLITE_ROW)
                ver = sqlite3_column_int64(st, 0);
        }
        sqlite3_finalize(st);
        rc = dvstore_commit(db);
    } else if (db) {
        dvstore_rollback(db);
    }
    dvstore_put(d->store, db);
    pthread_mutex_unlock(&d->write_lock);
    if (rc)
        return dverr_set(err, rc, "churn failed (%d)", rc);
    buf_printf(report, "{\"env\":\"%s\",\"updated\":%lld,\"created\":%lld,\"deleted\":%lld,\"version\":%lld}",
               dvschema_envs[env].unique_name, upd, cre, del, (long long)ver);
    return 0;
}

static void route_churn(struct req *r)
{
    cJSON *b = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "env");
    cJSON *fr = cJSON_GetObjectItemCaseSensitive(b, "fraction");
    cJSON *seed = cJSON_GetObjectItemCaseSensitive(b, "seed");
    cJSON *tab = cJSON_GetObjectItemCaseSensitive(b, "table");
    cJSON *del = cJSON_GetObjectItemCaseSensitive(b, "delete_fraction");
    int e = cJSON_IsString(env) ? dvschema_env_index(env->valuestring, strlen(env->valuestring)) : -1;
    const struct table_def *t = NULL;
    if (cJSON_IsString(tab) && !(t = dvschema_table_by_logical(tab->valuestring, strlen(tab->valuestring))))
        t = dvschema_table_by_set(tab->valuestring, strlen(tab->valuestring));
    bool del_ok = cJSON_IsNumber(del) && del->valuedouble >= 0 && del->valuedouble <= 1;
    if (t && dvschema_table_index(t) >= N_TABLES) {
        cJSON_Delete(b);
        sim_error(r, 400, "churn changes the eighteen tables of the small shape; write to the generated "
                          "tables of --shape real through the Web API");
        return;
    }
    if (!b || e < 0 || (tab && !t) || (del && !del_ok) ||
        (!del && (!cJSON_IsNumber(fr) || fr->valuedouble < 0 || fr->valuedouble > 1))) {
        cJSON_Delete(b);
        sim_error(r, 400, "body must be {\"env\":<uniqueName>,\"fraction\":0..1,\"seed\":N} "
                          "(optionally \"table\":T, and \"delete_fraction\":0..1 instead of fraction)");
        return;
    }
    struct dverr err;
    dverr_clear(&err);
    buf_reset(&r->out);
    uint64_t s = cJSON_IsNumber(seed) ? (uint64_t)seed->valuedouble : 1;
    int rc = dvsim_churn(r->d, e, del ? 0 : fr->valuedouble, s, t ? dvschema_table_index(t) : -1,
                         del ? del->valuedouble : -1, &r->out, &err);
    cJSON_Delete(b);
    if (rc) {
        sim_error(r, 500, dverr_msg(&err));
        return;
    }
    r->status = 200;
    r->content_type = "application/json";
}

/* An elastic table's rows come in the order of their keys (record.h: id, then partitionid), as
 * a table file holds them; the stored ids order the partitions of one id by a hash. */
struct dump_row {
    char *key, *line;
    size_t key_len, len;
};

static int dump_row_add(struct dump_row **rows, size_t *n, size_t *cap, const struct table_def *t,
                        const char *line, size_t len)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 256;
        struct dump_row *nr = realloc(*rows, nc * sizeof *nr);
        if (!nr)
            return -ENOMEM;
        *rows = nr;
        *cap = nc;
    }
    struct json_doc *doc = NULL;
    struct dverr err = {0};
    struct buf scratch = BUF_INIT;
    int rc = json_parse(line, len, NULL, &doc, &err);
    size_t kl = 0;
    const char *k = rc ? NULL : record_row_key(json_root(doc), t->pk, "partitionid", &scratch, &kl);
    struct dump_row *d = &(*rows)[*n];
    d->key = malloc(kl + 1);
    d->line = malloc(len ? len : 1);
    if (d->key && d->line) {
        if (k)
            memcpy(d->key, k, kl);
        d->key[kl] = '\0';
        d->key_len = kl;
        memcpy(d->line, line, len);
        d->len = len;
        (*n)++;
        rc = 0;
    } else {
        free(d->key);
        free(d->line);
        rc = -ENOMEM;
    }
    json_doc_free(doc);
    buf_release(&scratch);
    return rc;
}

static int dump_row_cmp(const void *a, const void *b)
{
    const struct dump_row *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->key_len < y->key_len ? x->key_len : y->key_len);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static void route_dump(struct req *r)
{
    const char *env = sreq_arg(r, "env"), *table = sreq_arg(r, "table");
    int e = env ? dvschema_env_index(env, strlen(env)) : -1;
    const struct table_def *t = table ? dvschema_table_by_logical(table, strlen(table)) : NULL;
    if (!t && table)
        t = dvschema_table_by_set(table, strlen(table));
    if (e < 0 || !t) {
        sim_error(r, 404, "unknown env or table (use ?env=<uniqueName>&table=<logical name or entity set>)");
        return;
    }
    sqlite3 *db = dvstore_get(r->d->store);
    sqlite3_stmt *st = NULL;
    buf_reset(&r->out);
    buf_addstr(&r->out, TABLE_FILE_HEAD);
    int n = 0;
    struct dump_row *rows = NULL;
    size_t n_rows = 0, cap_rows = 0;
    bool failed = false;
    if (db && sqlite3_prepare_v2(db, "SELECT line FROM rec WHERE tid=?1 AND del=0 ORDER BY id", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, table_id(e, dvschema_table_index(t)));
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *line = sqlite3_column_blob(st, 0);
            size_t len = (size_t)sqlite3_column_bytes(st, 0);
            if (t->elastic) { /* sorted below, by record_row_key */
                if (dump_row_add(&rows, &n_rows, &cap_rows, t, line, len))
                    failed = true;
                continue;
            }
            if (n++)
                buf_addstr(&r->out, ",\n");
            buf_add(&r->out, line, len);
        }
    }
    sqlite3_finalize(st);
    dvstore_put(r->d->store, db);
    if (n_rows)
        qsort(rows, n_rows, sizeof *rows, dump_row_cmp);
    for (size_t i = 0; i < n_rows; i++) {
        if (n++)
            buf_addstr(&r->out, ",\n");
        buf_add(&r->out, rows[i].line, rows[i].len);
        free(rows[i].key);
        free(rows[i].line);
    }
    free(rows);
    if (failed) {
        sim_error(r, 500, "out of memory");
        return;
    }
    if (n)
        buf_addstr(&r->out, "\n]\n");
    else
        buf_addstr(&r->out, "]\n");
    r->status = 200;
    r->content_type = "application/json";
}

static void route_requests(struct req *r)
{
    const char *s = sreq_arg(r, "since"), *p = sreq_arg(r, "parts");
    uint64_t since = s ? strtoull(s, NULL, 10) : 0;
    bool parts = p && !strcmp(p, "1");
    struct dvsim *d = r->d;
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"requests\":[");
    pthread_mutex_lock(&d->lock);
    uint64_t last = d->log_seq;
    uint64_t first = last > REQLOG_CAP ? last - REQLOG_CAP + 1 : 1;
    if (since + 1 > first)
        first = since + 1;
    bool any = false;
    for (uint64_t q = first; q <= last; q++) {
        const struct reqlog_entry *e = &d->log[q % REQLOG_CAP];
        if (e->batch_part && !parts)
            continue;
        buf_printf(&r->out, "%s{\"seq\":%llu,\"method\":\"%s\",\"path\":", any ? "," : "",
                   (unsigned long long)e->seq, e->method);
        any = true;
        buf_add_json_string(&r->out, e->path, strlen(e->path));
        buf_printf(&r->out, ",\"status\":%d,\"time_ms\":%.1f,\"token\":\"%s\",\"bytes\":%llu,"
                            "\"bypass_business_logic\":", e->status, e->time_ms, e->token, (unsigned long long)e->bytes);
        if (e->bypass.business_logic[0])
            buf_add_json_string(&r->out, e->bypass.business_logic, strlen(e->bypass.business_logic));
        else
            buf_addstr(&r->out, "null");
        buf_printf(&r->out, ",\"bypass_custom_plugins\":%s,\"suppress_flows\":%s%s}",
                   e->bypass.custom_plugins ? "true" : "false", e->bypass.suppress_flows ? "true" : "false",
                   e->batch_part ? ",\"batch_part\":true" : "");
    }
    pthread_mutex_unlock(&d->lock);
    buf_printf(&r->out, "],\"last\":%llu}", (unsigned long long)last);
    r->status = 200;
    r->content_type = "application/json";
}

static void route_config(struct req *r)
{
    struct dvsim *d = r->d;
    if (!strcmp(r->method, "POST")) {
        cJSON *b = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
        cJSON *it, *settings = cJSON_IsObject(b) ? b : NULL;
        const char *bad = settings ? NULL : "body must be a JSON object";
        cJSON_ArrayForEach(it, settings) {
            if (!strcmp(it->string, "bypass_privilege") && cJSON_IsBool(it)) {
                pthread_mutex_lock(&d->lock);
                d->bypass_privilege = cJSON_IsTrue(it);
                pthread_mutex_unlock(&d->lock);
            } else {
                bad = "unknown setting or wrong type (bypass_privilege: true|false)";
            }
        }
        cJSON_Delete(b);
        if (bad) {
            sim_error(r, 400, bad);
            return;
        }
    } else if (strcmp(r->method, "GET") != 0) {
        sim_error(r, 405, "use GET or POST");
        return;
    }
    pthread_mutex_lock(&d->lock);
    bool bypass = d->bypass_privilege;
    pthread_mutex_unlock(&d->lock);
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"bypass_privilege\":%s}", bypass ? "true" : "false");
    r->status = 200;
    r->content_type = "application/json";
}

static void route_effects(struct req *r)
{
    const char *env = sreq_arg(r, "env");
    int e = env ? dvschema_env_index(env, strlen(env)) : -1;
    if (e < 0) {
        sim_error(r, 404, "unknown env (use ?env=<uniqueName>)");
        return;
    }
    sqlite3 *db = dvstore_get(r->d->store);
    int64_t plugin = 0, flow = 0;
    int rc = db ? dvstore_effects_get(db, e, &plugin, &flow) : -EIO;
    dvstore_put(r->d->store, db);
    if (rc) {
        sim_error(r, 500, "database error");
        return;
    }
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"env\":\"%s\",\"plugin_runs\":%lld,\"flow_runs\":%lld}", dvschema_envs[e].unique_name,
               (long long)plugin, (long long)flow);
    r->status = 200;
    r->content_type = "application/json";
}

static void faults_json(struct dvsim *d, struct buf *out)
{
    pthread_mutex_lock(&d->lock);
    struct faults f = d->faults;
    pthread_mutex_unlock(&d->lock);
    buf_printf(out, "{\"fail_rate\":%g,\"latency_ms\":%d,\"drop_rate\":%g,\"truncate_rate\":%g,"
                    "\"max_requests\":\"%d/%d\",\"max_concurrency\":%d,\"delta_token_lifetime_s\":%lld,"
                    "\"metadata_stamp_lifetime_s\":%lld,\"capacity_free_mb\":%lld}",
               f.fail_rate, f.latency_ms, f.drop_rate, f.truncate_rate, f.max_requests, f.window_s,
               f.max_concurrency, (long long)f.delta_token_lifetime_s,
               (long long)f.metadata_stamp_lifetime_s, (long long)f.capacity_free_mb);
}

int dvsim_parse_rate(const char *s, int *n, int *secs);
int dvsim_parse_rate(const char *s, int *n, int *secs)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || a < 0)
        return -EINVAL;
    long b = 300;
    if (*end == '/') {
        char *e2;
        b = strtol(end + 1, &e2, 10);
        if (e2 == end + 1 || *e2 || b <= 0)
            return -EINVAL;
    } else if (*end) {
        return -EINVAL;
    }
    *n = (int)a;
    *secs = (int)b;
    return 0;
}

static void route_faults(struct req *r)
{
    struct dvsim *d = r->d;
    if (strcmp(r->method, "POST") == 0) {
        cJSON *b = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
        if (!cJSON_IsObject(b)) {
            cJSON_Delete(b);
            sim_error(r, 400, "body must be a JSON object");
            return;
        }
        struct faults f;
        pthread_mutex_lock(&d->lock);
        f = d->faults;
        pthread_mutex_unlock(&d->lock);
        const char *bad = NULL;
        cJSON *it;
        cJSON_ArrayForEach(it, b) {
            const char *k = it->string;
            double v = it->valuedouble;
            bool num = cJSON_IsNumber(it);
            if (!strcmp(k, "fail_rate") && num && v >= 0 && v <= 1) f.fail_rate = v;
            else if (!strcmp(k, "drop_rate") && num && v >= 0 && v <= 1) f.drop_rate = v;
            else if (!strcmp(k, "truncate_rate") && num && v >= 0 && v <= 1) f.truncate_rate = v;
            else if (!strcmp(k, "latency_ms") && num && v >= 0) f.latency_ms = (int)v;
            else if (!strcmp(k, "max_concurrency") && num && v >= 0) f.max_concurrency = (int)v;
            else if (!strcmp(k, "delta_token_lifetime_s") && num && v >= 0) f.delta_token_lifetime_s = (int64_t)v;
            else if (!strcmp(k, "metadata_stamp_lifetime_s") && num && v >= 0) f.metadata_stamp_lifetime_s = (int64_t)v;
            else if (!strcmp(k, "capacity_free_mb") && num) f.capacity_free_mb = (int64_t)v;
            else if (!strcmp(k, "max_requests") && cJSON_IsString(it) &&
                     !dvsim_parse_rate(it->valuestring, &f.max_requests, &f.window_s)) ;
            else if (!strcmp(k, "max_requests") && num && v >= 0) f.max_requests = (int)v;
            else {
                bad = k;
                break;
            }
        }
        if (bad) {
            char msg[200];
            snprintf(msg, sizeof msg, "bad or unknown fault setting '%.60s'", bad);
            cJSON_Delete(b);
            sim_error(r, 400, msg);
            return;
        }
        cJSON_Delete(b);
        pthread_mutex_lock(&d->lock);
        d->faults = f;
        for (int i = 0; i < THROTTLE_SLOTS; i++) {
            d->slots[i].count = d->slots[i].head = 0;
            d->slots[i].blocked_until_ms = d->slots[i].extra_ms = 0;
        }
        pthread_mutex_unlock(&d->lock);
    } else if (strcmp(r->method, "GET") != 0) {
        sim_error(r, 405, "use GET or POST");
        return;
    }
    buf_reset(&r->out);
    faults_json(d, &r->out);
    r->status = 200;
    r->content_type = "application/json";
}

static void route_reset(struct req *r)
{
    struct dvsim *d = r->d;
    struct dverr err;
    dverr_clear(&err);
    pthread_mutex_lock(&d->write_lock);
    int rc = dvseed_tenant(d, &err);
    pthread_mutex_unlock(&d->write_lock);
    pthread_mutex_lock(&d->lock);
    d->faults = d->faults_initial;
    d->bypass_privilege = d->bypass_privilege_initial;
    for (int i = 0; i < THROTTLE_SLOTS; i++) {
        d->slots[i].count = d->slots[i].head = 0;
        d->slots[i].blocked_until_ms = d->slots[i].extra_ms = 0;
    }
    d->log_seq = 0;
    pthread_mutex_unlock(&d->lock);
    dvmeta_reset(d);
    if (rc) {
        sim_error(r, 500, dverr_msg(&err));
        return;
    }
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"reset\":true}");
    r->status = 200;
    r->content_type = "application/json";
}

void dvsim_sim_route(struct req *r, const char *rest)
{
    bool post = strcmp(r->method, "POST") == 0, get = strcmp(r->method, "GET") == 0;
    if (!strcmp(rest, "/churn") && post)
        route_churn(r);
    else if (!strcmp(rest, "/dump") && get)
        route_dump(r);
    else if (!strcmp(rest, "/requests") && get)
        route_requests(r);
    else if (!strcmp(rest, "/faults"))
        route_faults(r);
    else if (!strcmp(rest, "/config"))
        route_config(r);
    else if (!strcmp(rest, "/effects") && get)
        route_effects(r);
    else if (!strcmp(rest, "/reset") && post)
        route_reset(r);
    else if (!strcmp(rest, "/metadata") && post)
        dvmeta_sim_route(r);
    else
        sim_error(r, 404, "unknown /_sim/ route (churn, dump, requests, faults, config, effects, "
                          "reset, metadata)");
}
