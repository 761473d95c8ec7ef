/* dataverse_webapi: one environment's Web API: table definitions, paged and change-tracked reads,
 * file columns and single requests (see dataverse.h).
 *
 * Reads send one Prefer header: "[odata.track-changes,]odata.maxpagesize=N,
 * odata.include-annotations=..." (track-changes on full reads of tracked tables; RFC 7240 allows
 * the comma form, and one header survives servers that read only the first). N is 5000, or 10 for
 * tables whose rows carry files inline (annotation, attachments), so a page stays far below the
 * 256 MiB page cap. Each page is parsed with json.h (exact
 * numbers) and handed to the caller record by record; a nextLink or deltaLink outside the
 * environment's Web API is refused (-EPERM) before anything is sent; a nextLink that repeats the
 * current URL is a protocol error (no endless loop). The expired-token answer is -ESTALE.
 * A read may be narrowed (dv_read_table_query): to the primary keys (a tracked keys-only read,
 * whose delta link, without its $select, is the table's) or to a key range ($filter ge/lt,
 * untracked).
 * Definitions: EntityDefinitions with Attributes (and relationships when the service expands
 * them, else the per-table relationship routes). Table, column and id values put into URLs must be
 * plain names or GUIDs, else -EINVAL: nothing from the server is pasted into a path unchecked.
 * Threading: as dataverse.h; no shared state beyond the client. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "backend/base/record.h"

#define ANNOTATIONS                                                                        \
    "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,"               \
    "Microsoft.Dynamics.CRM.lookuplogicalname\""
#define PAGE_SIZE 5000
#define PAGE_SIZE_ATTACHMENTS 10 /* rows carry whole files as base64 (5 MB each by default) */
#define PAGE_MAX (256ull << 20)
#define DEFS_MAX (1024ull << 20)
#define FILE_CHUNK (4u << 20)
#define EXPIRED_TEXT "Version stamp associated with the client has expired"
#define EXPIRED_CODE "0x80044352"

static const char *const odata_get_headers[] = {
    "Accept: application/json", "OData-MaxVersion: 4.0", "OData-Version: 4.0",
    "If-None-Match: null", NULL};

/* ---- table definitions ---- */

static void attr_release(struct dv_attribute *a)
{
    free(a->logical_name);
    free(a->type);
}

static void table_release(struct dv_table *t)
{
    free(t->logical_name);
    free(t->entity_set);
    free(t->primary_id);
    free(t->primary_name);
    for (size_t i = 0; i < t->n_attrs; i++)
        attr_release(&t->attrs[i]);
    free(t->attrs);
    for (size_t i = 0; i < t->n_lookups; i++) {
        free(t->lookups[i].attribute);
        free(t->lookups[i].nav_property);
        free(t->lookups[i].target_table);
        free(t->lookups[i].target_set);
    }
    free(t->lookups);
    for (size_t i = 0; i < t->n_many_to_many; i++) {
        struct dv_many_to_many *m = &t->many_to_many[i];
        free(m->schema_name);
        free(m->intersect_table);
        free(m->entity1);
        free(m->entity1_attr);
        free(m->entity1_nav);
        free(m->entity2);
        free(m->entity2_attr);
        free(m->entity2_nav);
    }
    free(t->many_to_many);
    free(t->schema_json);
    free(t->definition_error);
}

void dv_tables_free(struct dv_table *tables, size_t n)
{
    if (!tables)
        return;
    for (size_t i = 0; i < n; i++)
        table_release(&tables[i]);
    free(tables);
}

static int parse_attrs(const struct json_node *arr, struct dv_table *t)
{
    int rc = 0;
    if (!arr || arr->type != JSON_ARRAY || !arr->n_children)
        return 0;
    if (!(t->attrs = calloc(arr->n_children, sizeof(*t->attrs))))
        return -ENOMEM;
    for (const struct json_node *a = arr->child; a; a = a->next) {
        if (a->type != JSON_OBJECT || !json_get_str(a, "LogicalName"))
            continue;
        struct dv_attribute *x = &t->attrs[t->n_attrs++];
        x->logical_name = dv_dup_str(a, "LogicalName", &rc);
        x->type = dv_dup_str(a, "AttributeType", &rc);
        x->valid_for_create = dv_get_flag(a, "IsValidForCreate", false);
        x->valid_for_update = dv_get_flag(a, "IsValidForUpdate", false);
        x->valid_for_read = dv_get_flag(a, "IsValidForRead", true);
        x->is_primary_id = dv_get_flag(a, "IsPrimaryId", false);
        if (!x->is_primary_id && t->primary_id && x->logical_name &&
            strcmp(x->logical_name, t->primary_id) == 0)
            x->is_primary_id = true;
    }
    return rc;
}

static int parse_many_to_one(const struct json_node *arr, struct dv_table *t)
{
    int rc = 0;
    if (!arr || arr->type != JSON_ARRAY || !arr->n_children)
        return 0;
    if (!(t->lookups = calloc(arr->n_children, sizeof(*t->lookups))))
        return -ENOMEM;
    for (const struct json_node *r = arr->child; r; r = r->next) {
        if (r->type != JSON_OBJECT || !json_get_str(r, "ReferencingAttribute"))
            continue;
        /* A many-to-one of this table: it is the referencing side. */
        const char *ref_entity = json_get_str(r, "ReferencingEntity");
        if (ref_entity && t->logical_name && strcmp(ref_entity, t->logical_name) != 0)
            continue;
        struct dv_lookup *l = &t->lookups[t->n_lookups++];
        l->attribute = dv_dup_str(r, "ReferencingAttribute", &rc);
        l->nav_property = dv_dup_str(r, "ReferencingEntityNavigationPropertyName", &rc);
        l->target_table = dv_dup_str(r, "ReferencedEntity", &rc);
    }
    return rc;
}

static int parse_many_to_many(const struct json_node *arr, struct dv_table *t)
{
    int rc = 0;
    if (!arr || arr->type != JSON_ARRAY || !arr->n_children)
        return 0;
    if (!(t->many_to_many = calloc(arr->n_children, sizeof(*t->many_to_many))))
        return -ENOMEM;
    for (const struct json_node *r = arr->child; r; r = r->next) {
        if (r->type != JSON_OBJECT || !json_get_str(r, "IntersectEntityName"))
            continue;
        struct dv_many_to_many *m = &t->many_to_many[t->n_many_to_many++];
        m->schema_name = dv_dup_str(r, "SchemaName", &rc);
        m->intersect_table = dv_dup_str(r, "IntersectEntityName", &rc);
        m->entity1 = dv_dup_str(r, "Entity1LogicalName", &rc);
        m->entity1_attr = dv_dup_str(r, "Entity1IntersectAttribute", &rc);
        m->entity1_nav = dv_dup_str(r, "Entity1NavigationPropertyName", &rc);
        m->entity2 = dv_dup_str(r, "Entity2LogicalName", &rc);
        m->entity2_attr = dv_dup_str(r, "Entity2IntersectAttribute", &rc);
        m->entity2_nav = dv_dup_str(r, "Entity2NavigationPropertyName", &rc);
    }
    return rc;
}

/* GET url; with json set, a 200 body is parsed into *json (see struct dv_call). */
static int webapi_get(struct dv_client *c, const struct dv_env *env, const char *url,
                      const char *const *headers, uint64_t max, struct json_doc **json,
                      const char *what, struct http_response *resp, struct dverr *err)
{
    struct dv_call call = {.method = "GET", .url = url, .resource = env->api_url,
                           .headers = headers ? headers : odata_get_headers, .max_response = max,
                           .json = json, .what = what};
    return dv_call(c, &call, resp, err);
}

/* GET <api>/EntityDefinitions(LogicalName='x')/<route>; *raw (caller frees) = the "value" array
 * text, or NULL when the service has no such route. */
static int fetch_relationships(struct dv_client *c, const struct dv_env *env, const char *table,
                               const char *route, struct dv_table *t,
                               int (*parse)(const struct json_node *, struct dv_table *),
                               char **raw, struct dverr *err)
{
    struct buf path = BUF_INIT, url = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    *raw = NULL;
    http_response_init(&resp);
    if (buf_printf(&path, "EntityDefinitions(LogicalName='%s')/%s", table, route)) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = dv_api_url(env, path.data, &url, err)) ||
        (rc = webapi_get(c, env, url.data, NULL, DEFS_MAX, &doc, route, &resp, err)))
        goto out;
    if (resp.status == 404 || resp.status == 400 || resp.status == 501) {
        rc = 0; /* not supported: no relationships of that kind */
        goto out;
    }
    if (resp.status != 200) {
        rc = dv_status_error(&resp, route, err);
        goto out;
    }
    const struct json_node *v = json_get(json_root(doc), "value");
    if (!v || v->type != JSON_ARRAY) {
        rc = dverr_set(err, -EPROTO, "%s: no \"value\" array", route);
        goto out;
    }
    if ((rc = parse(v, t)))
        goto out;
    if (!(*raw = mem_to_str(v->raw, v->raw_len)))
        rc = -ENOMEM;
out:
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&path);
    buf_release(&url);
    return rc;
}

static int table_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dv_table *)a)->logical_name,
                  ((const struct dv_table *)b)->logical_name);
}

int dv_tables_list(struct dv_client *c, const struct dv_env *env, struct dv_table **tables,
                   size_t *n, struct dverr *err)
{
    static const char *const queries[] = {
        "EntityDefinitions?$expand=Attributes,ManyToOneRelationships,ManyToManyRelationships",
        "EntityDefinitions?$expand=Attributes",
    };
    struct buf url = BUF_INIT, schema = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    struct dv_table *list = NULL;
    size_t count = 0;
    int rc = 0;
    *tables = NULL;
    *n = 0;
    http_response_init(&resp);
    for (size_t q = 0; q < sizeof(queries) / sizeof(queries[0]); q++) {
        if ((rc = dv_api_url(env, queries[q], &url, err)) ||
            (rc = webapi_get(c, env, url.data, NULL, DEFS_MAX, &doc, "table definitions", &resp,
                             err)))
            goto out;
        if (resp.status != 400 && resp.status != 501)
            break;
    }
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "table definitions", err);
        goto out;
    }
    const struct json_node *value = json_get(json_root(doc), "value");
    if (!value || value->type != JSON_ARRAY) {
        rc = dverr_set(err, -EPROTO, "table definitions: no \"value\" array");
        goto out;
    }
    if (value->n_children && !(list = calloc(value->n_children, sizeof(*list)))) {
        rc = -ENOMEM;
        goto out;
    }
    for (const struct json_node *o = value->child; o; o = o->next) {
        if (o->type != JSON_OBJECT || !json_get_str(o, "LogicalName") ||
            !json_get_str(o, "EntitySetName"))
            continue;
        struct dv_table *t = &list[count++];
        t->logical_name = dv_dup_str(o, "LogicalName", &rc);
        t->entity_set = dv_dup_str(o, "EntitySetName", &rc);
        t->primary_id = dv_dup_str(o, "PrimaryIdAttribute", &rc);
        t->primary_name = dv_dup_str(o, "PrimaryNameAttribute", &rc);
        t->change_tracking = dv_get_flag(o, "ChangeTrackingEnabled", false);
        t->is_intersect = dv_get_flag(o, "IsIntersect", false);
        t->read_only = (t->logical_name && strcmp(t->logical_name, "audit") == 0) ||
                       (t->entity_set && strcmp(t->entity_set, "audits") == 0);
        if (rc || (rc = parse_attrs(json_get(o, "Attributes"), t)))
            goto out;
        const struct json_node *m1 = json_get(o, "ManyToOneRelationships");
        const struct json_node *mm = json_get(o, "ManyToManyRelationships");
        char *m1_raw = NULL, *mm_raw = NULL;
        if (m1) {
            rc = parse_many_to_one(m1, t);
        } else if (dv_name_safe(t->logical_name)) {
            rc = fetch_relationships(c, env, t->logical_name, "ManyToOneRelationships", t,
                                     parse_many_to_one, &m1_raw, err);
        }
        if (!rc && mm) {
            rc = parse_many_to_many(mm, t);
        } else if (!rc && dv_name_safe(t->logical_name)) {
            rc = fetch_relationships(c, env, t->logical_name, "ManyToManyRelationships", t,
                                     parse_many_to_many, &mm_raw, err);
        }
        /* schema/<table>.json: the definition as the service gave it, relationships fetched
         * separately merged in, rendered canonically. */
        buf_reset(&schema);
        if (!rc) {
            rc = buf_add(&schema, o->raw, o->raw_len - 1); /* without the closing brace */
            if (!rc && m1_raw)
                rc = buf_printf(&schema, ",\"ManyToOneRelationships\":%s", m1_raw);
            if (!rc && mm_raw)
                rc = buf_printf(&schema, ",\"ManyToManyRelationships\":%s", mm_raw);
            if (!rc)
                rc = buf_addch(&schema, '}');
        }
        free(m1_raw);
        free(mm_raw);
        if (rc && rc != -ENOMEM && rc != -ECANCELED) {
            /* this table's relationships could not be read: the table is listed with why (the
             * capture does not read it), the others go on */
            char why[600];
            snprintf(why, sizeof why, "its relationship definitions could not be read: %s",
                     dverr_msg(err));
            dverr_clear(err);
            rc = (t->definition_error = strdup(why)) ? 0 : -ENOMEM;
            if (rc)
                goto out;
            continue;
        }
        if (rc)
            goto out;
        struct buf canon = BUF_INIT;
        struct dverr cerr = {0};
        if ((rc = record_canonicalize(schema.data, schema.len, NULL, &canon, &cerr))) {
            buf_release(&canon);
            rc = dverr_set(err, -EPROTO, "definition of %s: %s", t->logical_name,
                           dverr_msg(&cerr));
            goto out;
        }
        t->schema_json = buf_detach(&canon);
    }
    /* Lookup targets' entity sets, for @odata.bind. */
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < list[i].n_lookups; j++) {
            struct dv_lookup *l = &list[i].lookups[j];
            for (size_t k = 0; l->target_table && k < count; k++)
                if (strcmp(list[k].logical_name, l->target_table) == 0) {
                    if (!(l->target_set = strdup(list[k].entity_set)))
                        rc = -ENOMEM;
                    break;
                }
        }
    if (rc)
        goto out;
    if (count)
        qsort(list, count, sizeof(*list), table_cmp);
    *tables = list;
    *n = count;
    list = NULL;
    count = 0;
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    dv_tables_free(list, count);
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&schema);
    return rc;
}

/* ---- reads ---- */

static bool is_expired_token(const struct http_response *resp)
{
    if (resp->status == 410)
        return true;
    if (resp->status < 400 || resp->status >= 500 || !resp->body.data)
        return false;
    return strstr(resp->body.data, EXPIRED_TEXT) || strstr(resp->body.data, EXPIRED_CODE);
}

/* Tables whose rows hold file bytes inline get small pages, so one page stays well below
 * PAGE_MAX and memory stays bounded. */
static int page_size_for(const struct dv_table *t)
{
    if (strcmp(t->logical_name, "annotation") == 0 ||
        strcmp(t->logical_name, "activitymimeattachment") == 0 ||
        strcmp(t->logical_name, "attachment") == 0)
        return PAGE_SIZE_ATTACHMENTS;
    for (size_t i = 0; i < t->n_attrs; i++)
        if (t->attrs[i].logical_name && strcmp(t->attrs[i].logical_name, "documentbody") == 0)
            return PAGE_SIZE_ATTACHMENTS;
    return PAGE_SIZE;
}

static bool is_deleted_row(const struct json_node *o)
{
    const char *ctx = json_get_str(o, "@odata.context");
    if (ctx && strstr(ctx, "$deletedEntity"))
        return true;
    const char *reason = json_get_str(o, "reason");
    return reason && strcmp(reason, "deleted") == 0 && json_get_str(o, "id") &&
           o->n_children <= 3;
}

/* The query string of a narrowed full read (dv_read_query) into url: "?$select=...&$filter=..". */
static int query_string(const struct dv_table *table, const struct dv_read_query *q,
                        struct buf *url, struct dverr *err)
{
    const char *pk = table->primary_id;
    if ((q->key_from || q->key_to || q->keys_only) && !dv_name_safe(pk))
        return dverr_set(err, -EINVAL, "%s: primary key name is not a plain name",
                         table->logical_name);
    if ((q->key_from && !dv_guid_valid(q->key_from)) || (q->key_to && !dv_guid_valid(q->key_to)))
        return dverr_set(err, -EINVAL, "%s: a key range bound is not a GUID", table->logical_name);
    char sep = '?';
    int rc = 0;
    if (q->keys_only) {
        rc = buf_printf(url, "%c$select=%s", sep, pk);
        sep = '&';
    }
    if (!rc && (q->key_from || q->key_to))
        rc = buf_printf(url, "%c$filter=", sep);
    if (!rc && q->key_from)
        rc = buf_printf(url, "%s%%20ge%%20%s", pk, q->key_from);
    if (!rc && q->key_from && q->key_to)
        rc = buf_addstr(url, "%20and%20");
    if (!rc && q->key_to)
        rc = buf_printf(url, "%s%%20lt%%20%s", pk, q->key_to);
    return rc;
}

/* A keys-only read's delta link without its $select: the link of the table's whole rows (the
 * token is the table's position; $select only narrows the columns the rows come with). */
static void drop_select(char *link)
{
    char *q = strchr(link, '?');
    char *p = q ? strstr(q, "$select=") : NULL;
    if (!p || (p[-1] != '?' && p[-1] != '&'))
        return;
    char *end = strchr(p, '&');
    if (end)
        memmove(p, end + 1, strlen(end + 1) + 1);
    else
        p[-1] = '\0';
}

int dv_read_table(struct dv_client *c, const struct dv_env *env, const struct dv_table *table,
                  const char *delta_link, const struct dv_read_cb *cb, char **new_delta_link,
                  struct dv_read_stats *stats, struct dverr *err)
{
    return dv_read_table_query(c, env, table, delta_link, NULL, cb, new_delta_link, stats, err);
}

int dv_read_table_query(struct dv_client *c, const struct dv_env *env,
                        const struct dv_table *table, const char *delta_link,
                        const struct dv_read_query *q, const struct dv_read_cb *cb,
                        char **new_delta_link, struct dv_read_stats *stats, struct dverr *err)
{
    struct buf url = BUF_INIT, base = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    char *final_delta = NULL;
    struct dv_read_stats st = {0};
    int rc = 0;
    http_response_init(&resp);
    if (new_delta_link)
        *new_delta_link = NULL;
    if (!table || !dv_name_safe(table->entity_set)) {
        char esc[96];
        log_escape(table && table->entity_set ? table->entity_set : "(none)", esc, sizeof(esc));
        rc = dverr_set(err, -EINVAL, "table entity set name %s is not a plain name; not read", esc);
        goto out;
    }
    if ((rc = dv_api_url(env, "", &base, err)))
        goto out;
    if (delta_link) {
        if (!http_url_within(delta_link, base.data)) {
            rc = dverr_set(err, -EPERM, "%s: the stored delta link is outside the environment's "
                                        "Web API; refused", table->logical_name);
            goto out;
        }
        rc = buf_addstr(&url, delta_link);
    } else {
        rc = buf_printf(&url, "%s%s", base.data, table->entity_set);
        if (!rc && q)
            rc = query_string(table, q, &url, err);
    }
    if (rc)
        goto out;
    bool track = !delta_link && table->change_tracking && !(q && (q->key_from || q->key_to));
    char prefer[256];
    snprintf(prefer, sizeof(prefer), "Prefer: %sodata.maxpagesize=%d,%s",
             track ? "odata.track-changes," : "",
             q && q->keys_only                                      ? PAGE_SIZE
             : q && q->page_size > 0 && q->page_size < page_size_for(table) ? q->page_size
                                                                          : page_size_for(table),
             ANNOTATIONS);
    const char *headers[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                             "OData-Version: 4.0", "If-None-Match: null", prefer, NULL};
    for (;;) {
        if (!http_url_within(url.data, base.data)) {
            char esc[160];
            log_escape(url.data, esc, sizeof(esc));
            rc = dverr_set(err, -EPERM, "%s: refused to follow a link outside the environment's "
                                        "Web API (%s)", table->logical_name, esc);
            goto out;
        }
        json_doc_free(doc);
        doc = NULL;
        if ((rc = webapi_get(c, env, url.data, headers, PAGE_MAX, &doc, table->logical_name, &resp,
                             err)))
            goto out;
        if (resp.status != 200) {
            if (delta_link && is_expired_token(&resp)) {
                rc = dverr_set(err, -ESTALE, "%s: the change-tracking token has expired; a full "
                                             "read is needed", table->logical_name);
                goto out;
            }
            char what[160];
            snprintf(what, sizeof(what), "reading %s", table->logical_name);
            rc = dv_status_error(&resp, what, err);
            goto out;
        }
        const struct json_node *root = json_root(doc);
        const struct json_node *value = root->type == JSON_OBJECT ? json_get(root, "value") : NULL;
        if (!value || value->type != JSON_ARRAY) {
            rc = dverr_set(err, -EPROTO, "%s: page without a \"value\" array",
                           table->logical_name);
            goto out;
        }
        st.pages++;
        for (const struct json_node *o = value->child; o; o = o->next) {
            if (o->type != JSON_OBJECT) {
                rc = dverr_set(err, -EPROTO, "%s: a row that is not an object",
                               table->logical_name);
                goto out;
            }
            if (is_deleted_row(o)) {
                const char *id = json_get_str(o, "id");
                if (!id) {
                    rc = dverr_set(err, -EPROTO, "%s: a deleted row without an id",
                                   table->logical_name);
                    goto out;
                }
                st.deleted++;
                if (cb && cb->deleted && (rc = cb->deleted(cb->ctx, id)))
                    goto out;
            } else {
                st.records++;
                if (cb && cb->record && (rc = cb->record(cb->ctx, o)))
                    goto out;
            }
        }
        const char *next = json_get_str(root, "@odata.nextLink");
        const char *delta = json_get_str(root, "@odata.deltaLink");
        if (delta) {
            free(final_delta);
            if (!http_url_within(delta, base.data)) {
                rc = dverr_set(err, -EPERM, "%s: refused a delta link outside the environment's "
                                            "Web API", table->logical_name);
                goto out;
            }
            if (!(final_delta = strdup(delta))) {
                rc = -ENOMEM;
                goto out;
            }
        }
        if (!next || !*next || delta)
            break;
        if (strcmp(next, url.data) == 0) {
            rc = dverr_set(err, -EPROTO, "%s: the next page link repeats the current one",
                           table->logical_name);
            goto out;
        }
        buf_reset(&url);
        if ((rc = buf_addstr(&url, next)))
            goto out;
    }
    if (final_delta && q && q->keys_only)
        drop_select(final_delta);
    if (new_delta_link) {
        *new_delta_link = final_delta;
        final_delta = NULL;
    }
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    if (stats)
        *stats = st;
    free(final_delta);
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&base);
    return rc;
}

/* ---- files ---- */

static int file_path(const struct dv_env *env, const char *entity_set, const char *id,
                     const char *column, const char *suffix, struct buf *url, struct dverr *err)
{
    if (!dv_name_safe(entity_set) || !dv_guid_valid(id) || !dv_name_safe(column))
        return dverr_set(err, -EINVAL, "file column: table, record id or column is not a plain "
                                       "name/GUID");
    struct buf path = BUF_INIT;
    int rc = buf_printf(&path, "%s(%s)/%s%s", entity_set, id, column, suffix);
    if (!rc)
        rc = dv_api_url(env, path.data, url, err);
    buf_release(&path);
    return rc;
}

/* "bytes a-b/total" -> total; -1 when absent. */
static int64_t content_range_total(const struct http_response *r, struct buf *tmp)
{
    if (!http_response_header(r, "Content-Range", tmp))
        return -1;
    const char *slash = strrchr(tmp->data, '/');
    if (!slash || !isdigit((unsigned char)slash[1]))
        return -1;
    return strtoll(slash + 1, NULL, 10);
}

int dv_file_download(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                     const char *id, const char *column,
                     int (*on_data)(void *ctx, const void *data, size_t len), void *ctx,
                     char **file_name, struct dverr *err)
{
    struct buf url = BUF_INIT, hv = BUF_INIT, range = BUF_INIT;
    struct http_response resp;
    int rc;
    int64_t total = -1;
    uint64_t off = 0;
    if (file_name)
        *file_name = NULL;
    http_response_init(&resp);
    if ((rc = file_path(env, entity_set, id, column, "/$value", &url, err)))
        goto out;
    for (;;) {
        buf_reset(&range);
        if ((rc = buf_printf(&range, "Range: bytes=%llu-%llu", (unsigned long long)off,
                             (unsigned long long)(off + FILE_CHUNK - 1))))
            goto out;
        const char *headers[] = {"Accept: */*", "OData-MaxVersion: 4.0", "OData-Version: 4.0",
                                 range.data, NULL};
        if ((rc = webapi_get(c, env, url.data, headers, FILE_CHUNK + 65536, NULL, NULL, &resp,
                             err)))
            goto out;
        if (resp.status == 204 && off == 0)
            break; /* no file */
        if (resp.status != 200 && resp.status != 206) {
            if (resp.status == 416 && off > 0 && total < 0)
                break; /* past the end of a file whose size was not announced */
            rc = dv_status_error(&resp, "file download", err);
            goto out;
        }
        if (file_name && !*file_name && http_response_header(&resp, "x-ms-file-name", &hv) &&
            !(*file_name = strdup(hv.data))) {
            rc = -ENOMEM;
            goto out;
        }
        if (resp.status == 200 && off > 0) {
            rc = dverr_set(err, -EPROTO, "file download: the service ignored the range");
            goto out;
        }
        if (resp.body.len && on_data && (rc = on_data(ctx, resp.body.data, resp.body.len)))
            goto out;
        off += resp.body.len;
        if (resp.status == 200)
            break; /* the whole file in one answer */
        if (total < 0) {
            if (http_response_header(&resp, "x-ms-file-size", &hv) && isdigit((unsigned char)hv.data[0]))
                total = strtoll(hv.data, NULL, 10);
            else
                total = content_range_total(&resp, &hv);
        }
        if (total >= 0 && off >= (uint64_t)total)
            break;
        if (resp.body.len == 0) {
            rc = dverr_set(err, -EPROTO, "file download: an empty partial answer");
            goto out;
        }
        if (total < 0 && resp.body.len < FILE_CHUNK)
            break;
    }
    if (total >= 0 && off != (uint64_t)total) {
        rc = dverr_set(err, -EPROTO, "file download: got %llu bytes of %lld",
                       (unsigned long long)off, (long long)total);
        goto out;
    }
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    if (rc && file_name) {
        free(*file_name);
        *file_name = NULL;
    }
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&hv);
    buf_release(&range);
    return rc;
}

/* A file larger than one chunk: PATCH ...?x-ms-file-name=<name> with x-ms-transfer-mode: chunked
 * opens a session (200, Location, x-ms-chunk-size); each chunk is a PATCH to that Location with
 * Content-Range a-b/total (206 until the last, then 204). dv_call keeps the bearer on the
 * environment's host, so a Location elsewhere is refused. */
static int file_upload_chunked(struct dv_client *c, const struct dv_env *env, const char *url,
                               const char *file_name, const unsigned char *data, size_t len,
                               struct dverr *err)
{
    struct buf open_url = BUF_INIT, loc = BUF_INIT, range = BUF_INIT, hv = BUF_INIT;
    struct http_response resp;
    http_response_init(&resp);
    int rc = buf_printf(&open_url, "%s?x-ms-file-name=", url);
    if (!rc)
        rc = buf_urlencode(&open_url, file_name, false);
    if (rc)
        goto out;
    const char *open_headers[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                                  "OData-Version: 4.0", "x-ms-transfer-mode: chunked", NULL};
    struct dv_call open = {.method = "PATCH", .url = open_url.data, .resource = env->api_url,
                           .headers = open_headers, .body = "", .body_len = 0,
                           .retry_unsafe = true /* an unused session is harmless */,
                           .max_response = 1 << 20};
    if ((rc = dv_call(c, &open, &resp, err)))
        goto out;
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "file upload (chunked)", err);
        goto out;
    }
    if (!http_response_header(&resp, "Location", &loc) || !loc.len) {
        rc = dverr_set(err, -EPROTO, "file upload (chunked): no Location for the session");
        goto out;
    }
    uint64_t chunk = FILE_CHUNK;
    if (http_response_header(&resp, "x-ms-chunk-size", &hv) && isdigit((unsigned char)hv.data[0])) {
        unsigned long long v = strtoull(hv.data, NULL, 10);
        if (v >= 64u << 10 && v <= 64u << 20)
            chunk = v;
    }
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : (size_t)chunk;
        buf_reset(&range);
        if ((rc = buf_printf(&range, "Content-Range: bytes %zu-%zu/%zu", off, off + n - 1, len)))
            goto out;
        const char *headers[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                                 "OData-Version: 4.0", "Content-Type: application/octet-stream",
                                 range.data, NULL};
        struct dv_call part = {.method = "PATCH", .url = loc.data, .resource = env->api_url,
                               .headers = headers, .body = (const char *)data + off, .body_len = n,
                               .retry_unsafe = true /* the same bytes at the same offset */,
                               .max_response = 1 << 20};
        if ((rc = dv_call(c, &part, &resp, err)))
            goto out;
        bool last = off + n == len;
        if (last ? resp.status < 200 || resp.status >= 300 : resp.status != 206) {
            rc = dv_status_error(&resp, "file upload (chunk)", err);
            if (!rc)
                rc = dverr_set(err, -EPROTO, "file upload: HTTP %ld for a chunk", resp.status);
            goto out;
        }
        off += n;
    }
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    http_response_release(&resp);
    buf_release(&open_url);
    buf_release(&loc);
    buf_release(&range);
    buf_release(&hv);
    return rc;
}

int dv_file_upload(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                   const char *id, const char *column, const char *file_name, const void *data,
                   size_t len, struct dverr *err)
{
    struct buf url = BUF_INIT, name_h = BUF_INIT;
    struct http_response resp;
    int rc;
    http_response_init(&resp);
    if ((rc = file_path(env, entity_set, id, column, "", &url, err)))
        goto out;
    if (!file_name || !*file_name) {
        rc = dverr_set(err, -EINVAL, "file upload: no file name");
        goto out;
    }
    for (const unsigned char *p = (const unsigned char *)file_name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            rc = dverr_set(err, -EINVAL, "file upload: the file name has control characters");
            goto out;
        }
    if (len > FILE_CHUNK) {
        rc = file_upload_chunked(c, env, url.data, file_name, data, len, err);
        goto out;
    }
    if ((rc = buf_printf(&name_h, "x-ms-file-name: %s", file_name)))
        goto out;
    const char *headers[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                             "OData-Version: 4.0", "Content-Type: application/octet-stream",
                             name_h.data, NULL};
    struct dv_call call = {.method = "PATCH", .url = url.data, .resource = env->api_url,
                           .headers = headers, .body = data, .body_len = len,
                           .retry_unsafe = true /* same bytes to the same column */,
                           .max_response = 1 << 20};
    if ((rc = dv_call(c, &call, &resp, err)))
        goto out;
    if (resp.status < 200 || resp.status >= 300)
        rc = dv_status_error(&resp, "file upload", err);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&name_h);
    return rc;
}

/* ---- single requests ---- */

int dv_request(struct dv_client *c, const struct dv_env *env, const char *method, const char *path,
               const char *body, const char *const *headers, struct dv_response *resp,
               struct dverr *err)
{
    struct buf url = BUF_INIT;
    struct http_response hr;
    const char **hdrs = NULL;
    int rc;
    http_response_init(&hr);
    resp->status = 0;
    buf_init(&resp->body);
    if (!method || !path || path[0] == '/' || strstr(path, "://") || strstr(path, "..") ||
        strpbrk(path, " \r\n")) {
        rc = dverr_set(err, -EINVAL, "dv_request: path must be relative to the Web API");
        goto out;
    }
    if ((rc = dv_api_url(env, path, &url, err)))
        goto out;
    size_t n_extra = 0;
    for (const char *const *p = headers; p && *p; p++)
        n_extra++;
    if (!(hdrs = calloc(n_extra + 6, sizeof(*hdrs)))) {
        rc = -ENOMEM;
        goto out;
    }
    size_t k = 0;
    hdrs[k++] = "Accept: application/json";
    hdrs[k++] = "OData-MaxVersion: 4.0";
    hdrs[k++] = "OData-Version: 4.0";
    if (body)
        hdrs[k++] = "Content-Type: application/json; charset=utf-8";
    for (size_t i = 0; i < n_extra; i++)
        hdrs[k++] = headers[i];
    hdrs[k] = NULL;
    bool idempotent_write = strcmp(method, "PATCH") == 0; /* PATCH by key is an upsert */
    struct dv_call call = {.method = method, .url = url.data, .resource = env->api_url,
                           .headers = hdrs, .body = body, .body_len = body ? strlen(body) : 0,
                           .retry_unsafe = idempotent_write, .max_response = PAGE_MAX};
    if ((rc = dv_call(c, &call, &hr, err)))
        goto out;
    resp->status = hr.status;
    resp->body = hr.body;
    buf_init(&hr.body);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    free(hdrs);
    http_response_release(&hr);
    buf_release(&url);
    return rc;
}
