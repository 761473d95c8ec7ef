/* webapi_metachanges: changes to the table definitions and the function that reports them.
 *   GET RetrieveMetadataChanges(Query=@p1[,DeletedMetadataFilters=@p2][,ClientVersionStamp=@p3])
 *       ?@p1=<EntityQueryExpression JSON>&@p2=Microsoft.Dynamics.CRM.DeletedMetadataFilters'X'
 *       &@p3='<stamp>'
 *     {"ServerVersionStamp","EntityMetadata":[definitions],"DeletedMetadata":{"Count","IsReadOnly",
 *      "Keys":["Default"],"Values":[[MetadataIds]]}}. Without a stamp every table is listed; with
 *     one, the tables changed since (a column added: the table with HasChanged false, the new
 *     column with HasChanged true), and, when DeletedMetadataFilters is given too, the ids of the
 *     tables deleted since. The query's Properties, AttributeQuery and RelationshipQuery
 *     PropertyNames narrow the answer as $select does (AllProperties: everything); a Criteria
 *     with conditions is refused (400: dvsim lists every table). A stamp of an earlier epoch, one
 *     older than metadata_stamp_lifetime_s (/_sim/faults, --metadata-stamp-lifetime; 90 days by
 *     default) or one that does not parse is refused with the service's ExpiredVersionStamp
 *     error (400, 0x80044352).
 *   POST /_sim/metadata {"env":E,"table":T,"add_column":C} | {"env":E,"table":T,"delete":true} |
 *        {"expire_stamps":true} | {"fail_changes":bool}: add a String column C to table T
 *        (logical name), delete T (its definition disappears; its rows stay readable), expire
 *        every stamp issued so far, or have RetrieveMetadataChanges answer 500 (or no longer).
 *        The definitions are the same for every org (so env is only checked); answers
 *        {"version":N}. /_sim/reset forgets every change.
 * Stamps are "<version>!<epoch>!<issued, unix seconds>".
 * Thread-safe: the changes, version and epoch are under d->lock. */
#include "tools/dvsim/webapi_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXPIRED_CODE "0x80044352"
#define EXPIRED_MSG "Version stamp associated with the client has expired. Please perform a full sync."

bool dvmeta_table_deleted(struct dvsim *d, const struct table_def *t)
{
    bool deleted = false;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_meta_changes; i++)
        deleted |= d->meta_changes[i].table == t && d->meta_changes[i].deleted;
    pthread_mutex_unlock(&d->lock);
    return deleted;
}

size_t dvmeta_columns(struct dvsim *d, const struct table_def *t, char out[][64], size_t max)
{
    size_t n = 0;
    pthread_mutex_lock(&d->lock);
    for (size_t i = 0; i < d->n_meta_changes && n < max; i++)
        if (d->meta_changes[i].table == t && !d->meta_changes[i].deleted)
            snprintf(out[n++], 64, "%s", d->meta_changes[i].column);
    pthread_mutex_unlock(&d->lock);
    return n;
}

void dvmeta_reset(struct dvsim *d)
{
    pthread_mutex_lock(&d->lock);
    free(d->meta_changes);
    d->meta_changes = NULL;
    d->n_meta_changes = 0;
    d->meta_version = 1;
    d->meta_epoch++;
    d->meta_fail = false;
    pthread_mutex_unlock(&d->lock);
}

static const struct table_def *by_name(struct dvsim *d, const char *name)
{
    for (int i = 0;; i++) {
        const struct table_def *t = webapi_listed_table(d, i);
        if (!t || !strcmp(t->logical, name))
            return t;
    }
}

/* The names of a MetadataPropertiesExpression ({"AllProperties":b,"PropertyNames":[...]}) as a
 * comma-separated list into out; false when every property is wanted (or none is named). */
static bool property_list(const cJSON *props, struct buf *out)
{
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(props, "AllProperties");
    const cJSON *names = cJSON_GetObjectItemCaseSensitive(props, "PropertyNames");
    if (!props || cJSON_IsTrue(all) || !cJSON_IsArray(names))
        return false;
    const cJSON *n;
    cJSON_ArrayForEach(n, names)
        if (cJSON_IsString(n))
            buf_printf(out, "%s%s", out->len ? "," : "", n->valuestring);
    buf_addch(out, '\0');
    out->len--;
    return true;
}

static bool names_has(const char *list, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ",");
        if (n == len && !strncmp(p, name, n))
            return true;
        p += n + (p[n] == ',');
    }
    return false;
}

/* The value of the function parameter named name in the path's "(A=@p1,B=@p2)": the alias's
 * query argument, or NULL. */
static const char *param(struct req *r, const char *rest, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = strchr(rest, '('); p && *p && *p != ')';) {
        p++;
        size_t n = strcspn(p, ",)");
        if (n > nl + 1 && !strncmp(p, name, nl) && p[nl] == '=') {
            char alias[32];
            snprintf(alias, sizeof alias, "%.*s", (int)(n - nl - 1), p + nl + 1);
            return alias[0] == '@' ? sreq_arg(r, alias) : NULL;
        }
        p += n;
    }
    return NULL;
}

static void stamp_of(uint64_t version, uint64_t epoch, char out[80])
{
    snprintf(out, 80, "%" PRIu64 "!%" PRIu64 "!%lld", version, epoch, (long long)time(NULL));
}

/* The version a client stamp ('...' literal) stands for; -ESTALE when it has expired. */
static int stamp_parse(struct dvsim *d, const char *lit, uint64_t *version)
{
    unsigned long long v, e;
    long long issued;
    char tail;
    if (!lit || sscanf(lit, "'%llu!%llu!%lld%c", &v, &e, &issued, &tail) != 4 || tail != '\'')
        return -ESTALE;
    pthread_mutex_lock(&d->lock);
    bool ok = e == d->meta_epoch && v <= d->meta_version &&
              (long long)time(NULL) - issued <= d->faults.metadata_stamp_lifetime_s;
    pthread_mutex_unlock(&d->lock);
    *version = v;
    return ok ? 0 : -ESTALE;
}

void webapi_metadata_changes(struct req *r, const char *rest)
{
    struct dvsim *d = r->d;
    const char *q = param(r, rest, "Query"), *stamp = param(r, rest, "ClientVersionStamp");
    const char *filters = param(r, rest, "DeletedMetadataFilters");
    cJSON *query = q ? cJSON_Parse(q) : NULL;
    struct buf ent = BUF_INIT, att = BUF_INIT, rel = BUF_INIT, ctx = BUF_INIT;
    cJSON *o = NULL;
    pthread_mutex_lock(&d->lock);
    bool fail = d->meta_fail;
    pthread_mutex_unlock(&d->lock);
    if (fail) {
        sreply_error(r, 500, "0x80040216", "An unexpected error occurred.");
        goto out;
    }
    if (!query || !cJSON_IsObject(query)) {
        sreply_error(r, 400, QUERY_ERR, "RetrieveMetadataChanges: the Query parameter is missing "
                                        "or not an EntityQueryExpression.");
        goto out;
    }
    const cJSON *crit = cJSON_GetObjectItemCaseSensitive(query, "Criteria");
    const cJSON *conds = crit ? cJSON_GetObjectItemCaseSensitive(crit, "Conditions") : NULL;
    if (cJSON_GetArraySize(conds) > 0) {
        sreply_error(r, 400, QUERY_ERR, "dvsim: RetrieveMetadataChanges with Criteria conditions "
                                        "is not supported.");
        goto out;
    }
    uint64_t since = 0;
    if (stamp && stamp_parse(d, stamp, &since)) {
        sreply_error(r, 400, EXPIRED_CODE, EXPIRED_MSG);
        goto out;
    }
    struct meta_select sel = {0};
    const cJSON *aq = cJSON_GetObjectItemCaseSensitive(query, "AttributeQuery");
    const cJSON *rq = cJSON_GetObjectItemCaseSensitive(query, "RelationshipQuery");
    bool narrow = property_list(cJSON_GetObjectItemCaseSensitive(query, "Properties"), &ent);
    if (narrow)
        sel.entity = ent.data;
    if (property_list(aq ? cJSON_GetObjectItemCaseSensitive(aq, "Properties") : NULL, &att))
        sel.sub[0] = att.data;
    if (property_list(rq ? cJSON_GetObjectItemCaseSensitive(rq, "Properties") : NULL, &rel))
        sel.sub[1] = sel.sub[2] = sel.sub[3] = rel.data;
    int expand = EX_ATTR | EX_M2O | EX_O2M | EX_N2N;
    if (narrow)
        expand = (names_has(ent.data, "Attributes") ? EX_ATTR : 0) |
                 (names_has(ent.data, "ManyToOneRelationships") ? EX_M2O : 0) |
                 (names_has(ent.data, "OneToManyRelationships") ? EX_O2M : 0) |
                 (names_has(ent.data, "ManyToManyRelationships") ? EX_N2N : 0);

    o = cJSON_CreateObject();
    webapi_base(r, &ctx);
    buf_addstr(&ctx, "/$metadata#Microsoft.Dynamics.CRM.RetrieveMetadataChangesResponse");
    cJSON_AddStringToObject(o, "@odata.context", ctx.data);
    cJSON *em = cJSON_AddArrayToObject(o, "EntityMetadata");
    cJSON *deleted_ids = cJSON_CreateArray();
    char now[80];
    pthread_mutex_lock(&d->lock);
    uint64_t version = d->meta_version;
    stamp_of(version, d->meta_epoch, now);
    pthread_mutex_unlock(&d->lock);
    for (int i = 0; webapi_listed_table(d, i); i++) {
        const struct table_def *t = webapi_listed_table(d, i);
        bool deleted = false, changed = false, table_changed = false;
        char added[16][64];
        size_t n_added = 0;
        pthread_mutex_lock(&d->lock);
        for (size_t k = 0; k < d->n_meta_changes; k++) {
            const struct meta_change *c = &d->meta_changes[k];
            if (c->table != t)
                continue;
            deleted |= c->deleted;
            if (c->version > since && c->deleted)
                table_changed = true;
            if (c->version > since && !c->deleted && n_added < 16) {
                changed = true;
                snprintf(added[n_added++], 64, "%s", c->column);
            }
        }
        pthread_mutex_unlock(&d->lock);
        if (deleted) {
            if (stamp && table_changed) {
                char id[37];
                webapi_metadata_id(t->logical, NULL, id);
                cJSON_AddItemToArray(deleted_ids, cJSON_CreateString(id));
            }
            continue;
        }
        if (stamp && !changed)
            continue;
        cJSON *e = webapi_entity_json(d, t, expand, &sel);
        cJSON_AddBoolToObject(e, "HasChanged", !stamp);
        cJSON *attrs = cJSON_GetObjectItemCaseSensitive(e, "Attributes");
        for (cJSON *a = attrs ? attrs->child : NULL; a; a = a->next) {
            const cJSON *ln = cJSON_GetObjectItemCaseSensitive(a, "LogicalName");
            bool is_new = false;
            for (size_t k = 0; stamp && cJSON_IsString(ln) && k < n_added; k++)
                is_new |= !strcmp(ln->valuestring, added[k]);
            if (is_new)
                cJSON_AddBoolToObject(a, "HasChanged", true);
            else
                cJSON_AddNullToObject(a, "HasChanged");
        }
        cJSON_AddItemToArray(em, e);
    }
    cJSON *dm = cJSON_AddObjectToObject(o, "DeletedMetadata");
    int n_del = cJSON_GetArraySize(deleted_ids);
    bool report = stamp && filters && n_del > 0;
    cJSON_AddNumberToObject(dm, "Count", report ? 1 : 0);
    cJSON_AddBoolToObject(dm, "IsReadOnly", false);
    cJSON *keys = cJSON_AddArrayToObject(dm, "Keys");
    cJSON *values = cJSON_AddArrayToObject(dm, "Values");
    if (report) {
        cJSON_AddItemToArray(keys, cJSON_CreateString("Default"));
        cJSON_AddItemToArray(values, deleted_ids);
    } else {
        cJSON_Delete(deleted_ids);
    }
    cJSON_AddStringToObject(o, "ServerVersionStamp", now);
    char *s = cJSON_PrintUnformatted(o);
    buf_reset(&r->out);
    if (s)
        buf_addstr(&r->out, s);
    free(s);
    sreply_json(r, 200);
out:
    cJSON_Delete(o);
    cJSON_Delete(query);
    buf_release(&ent);
    buf_release(&att);
    buf_release(&rel);
    buf_release(&ctx);
}

void dvmeta_sim_route(struct req *r)
{
    struct dvsim *d = r->d;
    cJSON *b = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    const cJSON *env = cJSON_GetObjectItemCaseSensitive(b, "env");
    const cJSON *table = cJSON_GetObjectItemCaseSensitive(b, "table");
    const cJSON *column = cJSON_GetObjectItemCaseSensitive(b, "add_column");
    bool del = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "delete"));
    bool expire = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "expire_stamps"));
    const cJSON *fail = cJSON_GetObjectItemCaseSensitive(b, "fail_changes");
    const struct table_def *t = cJSON_IsString(table) ? by_name(d, table->valuestring) : NULL;
    bool env_ok = cJSON_IsString(env) &&
                  dvschema_env_index(env->valuestring, strlen(env->valuestring)) >= 0;
    bool col_ok = cJSON_IsString(column) && column->valuestring[0] &&
                  strlen(column->valuestring) < 64 &&
                  strspn(column->valuestring, "abcdefghijklmnopqrstuvwxyz0123456789_") ==
                      strlen(column->valuestring);
    if (!expire && !cJSON_IsBool(fail) && (!env_ok || !t || (del == col_ok))) {
        cJSON_Delete(b);
        sreply_error(r, 400, "dvsim", "body must be {\"env\":E,\"table\":T,\"add_column\":C}, "
                                      "{\"env\":E,\"table\":T,\"delete\":true} or "
                                      "{\"expire_stamps\":true} or {\"fail_changes\":bool}");
        return;
    }
    pthread_mutex_lock(&d->lock);
    if (expire) {
        d->meta_epoch++;
    } else if (cJSON_IsBool(fail)) {
        d->meta_fail = cJSON_IsTrue(fail);
    } else {
        struct meta_change *v = realloc(d->meta_changes,
                                        (d->n_meta_changes + 1) * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&d->lock);
            cJSON_Delete(b);
            sreply_error(r, 500, "dvsim", "out of memory: the change was not made");
            return;
        }
        d->meta_changes = v;
        struct meta_change *c = &v[d->n_meta_changes++];
        memset(c, 0, sizeof *c);
        c->table = t;
        c->deleted = del;
        if (!del)
            snprintf(c->column, sizeof c->column, "%s", column->valuestring);
        c->version = ++d->meta_version;
    }
    uint64_t version = d->meta_version;
    pthread_mutex_unlock(&d->lock);
    cJSON_Delete(b);
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"version\":%" PRIu64 "}", version);
    r->status = 200;
    r->content_type = "application/json";
}
