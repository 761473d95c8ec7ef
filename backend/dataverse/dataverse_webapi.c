/* dataverse_webapi: one environment's Web API: table definitions, paged and change-tracked reads,
 * reads of some columns, the caller and its privileges (WhoAmI, RetrieveUserPrivileges) and
 * single requests (see dataverse.h; file columns: dataverse_files.c).
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
 * Definitions: EntityDefinitions narrowed with $select to what dvsnap uses (dataverse_int.h),
 * with Attributes (and relationships when the service expands them, else the per-table
 * relationship routes); one table by EntityDefinitions(LogicalName='x'); a schema document
 * parsed back (dv_table_from_schema) the same way. Table, column and id values put into URLs must be
 * plain names or GUIDs, else -EINVAL: nothing from the server is pasted into a path unchecked.
 * Threading: as dataverse.h; no shared state beyond the client. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/base/log.h"
#include "backend/base/record.h"

#define ANNOTATIONS                                                                        \
    "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,"               \
    "Microsoft.Dynamics.CRM.lookuplogicalname\""
#define PAGE_SIZE 5000
#define PAGE_SIZE_ATTACHMENTS 10 /* rows carry whole files as base64 (5 MB each by default) */
#define PAGE_MAX (256ull << 20)
#define DEFS_MAX (1024ull << 20)
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
    strv_free(a->targets, a->n_targets);
}

static void table_release(struct dv_table *t)
{
    free(t->logical_name);
    free(t->metadata_id);
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
    free(t->data_provider_id);
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
        /* file and image columns: AttributeType Virtual, told apart by AttributeTypeName */
        const struct json_node *tn = json_get(a, "AttributeTypeName");
        const char *type_name = tn ? json_get_str(tn, "Value") : NULL;
        if (type_name && strcmp(type_name, "FileType") == 0)
            x->type = strdup("File");
        else if (type_name && strcmp(type_name, "ImageType") == 0)
            x->type = strdup("Image");
        else
            x->type = dv_dup_str(a, "AttributeType", &rc);
        if (!x->type && json_get_str(a, "AttributeType"))
            rc = -ENOMEM;
        x->valid_for_create = dv_get_flag(a, "IsValidForCreate", false);
        x->valid_for_update = dv_get_flag(a, "IsValidForUpdate", false);
        x->valid_for_read = dv_get_flag(a, "IsValidForRead", true);
        x->is_primary_id = dv_get_flag(a, "IsPrimaryId", false);
        x->is_primary_image = dv_get_flag(a, "IsPrimaryImage", false);
        const struct json_node *tg = json_get(a, "Targets");
        if (tg && tg->type == JSON_ARRAY && tg->n_children) {
            if (!(x->targets = calloc(tg->n_children, sizeof(char *))))
                return -ENOMEM;
            for (const struct json_node *e = tg->child; e; e = e->next)
                if (e->type == JSON_STRING && !(x->targets[x->n_targets++] = strdup(e->str)))
                    return -ENOMEM;
        }
        /* Targets is not among the selected properties (dataverse_int.h): an Owner column
         * points at a user or a team */
        if (!x->n_targets && x->type && strcmp(x->type, "Owner") == 0) {
            if (!(x->targets = calloc(2, sizeof(char *))) ||
                !(x->targets[0] = strdup("systemuser")) || !(x->targets[1] = strdup("team")))
                return -ENOMEM;
            x->n_targets = 2;
        }
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

int dv_webapi_get(struct dv_client *c, const struct dv_env *env, const char *url,
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
    const char *props = strcmp(route, "ManyToOneRelationships") == 0 ? M2O_PROPS : N2N_PROPS;
    if (buf_printf(&path, "EntityDefinitions(LogicalName='%s')/%s?$select=%s", table, route,
                   props)) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = dv_api_url(env, path.data, &url, err)) ||
        (rc = dv_webapi_get(c, env, url.data, NULL, DEFS_MAX, &doc, route, &resp, err)))
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

static enum dv_ownership ownership_of(const char *s)
{
    if (!s)
        return DV_OWNERSHIP_UNKNOWN;
    if (strcmp(s, "UserOwned") == 0)
        return DV_OWNERSHIP_USER;
    if (strcmp(s, "BusinessOwned") == 0)
        return DV_OWNERSHIP_BUSINESS;
    if (strcmp(s, "OrganizationOwned") == 0)
        return DV_OWNERSHIP_ORGANIZATION;
    if (strcmp(s, "None") == 0)
        return DV_OWNERSHIP_NONE;
    return DV_OWNERSHIP_UNKNOWN;
}

static bool is_target(const struct dv_attribute *a, const char *table)
{
    for (size_t i = 0; table && i < a->n_targets; i++)
        if (strcmp(a->targets[i], table) == 0)
            return true;
    return false;
}

static const struct dv_attribute *attr_of(const struct dv_table *t, const char *name)
{
    for (size_t i = 0; name && i < t->n_attrs; i++)
        if (t->attrs[i].logical_name && strcmp(t->attrs[i].logical_name, name) == 0)
            return &t->attrs[i];
    return NULL;
}

/* A relationship whose referenced table is not among its attribute's Targets (ownerid's
 * "owner": the service does not bind its set) becomes one lookup per target with the same
 * navigation property, unless a relationship for that target exists already. */
static int expand_abstract_lookups(struct dv_table *t)
{
    size_t extra = 0;
    for (size_t j = 0; j < t->n_lookups; j++) {
        const struct dv_attribute *a = attr_of(t, t->lookups[j].attribute);
        if (a && a->n_targets && !is_target(a, t->lookups[j].target_table))
            extra += a->n_targets;
    }
    if (!extra)
        return 0;
    struct dv_lookup *l = realloc(t->lookups, (t->n_lookups + extra) * sizeof(*l));
    if (!l)
        return -ENOMEM;
    t->lookups = l;
    size_t n = t->n_lookups;
    for (size_t j = 0; j < n; j++) {
        const struct dv_attribute *a = attr_of(t, t->lookups[j].attribute);
        if (!a || !a->n_targets || is_target(a, t->lookups[j].target_table))
            continue;
        for (size_t x = 0; x < a->n_targets; x++) {
            bool have = false;
            for (size_t k = 0; k < t->n_lookups && !have; k++)
                have = t->lookups[k].attribute && t->lookups[k].target_table &&
                       strcmp(t->lookups[k].attribute, a->logical_name) == 0 &&
                       strcmp(t->lookups[k].target_table, a->targets[x]) == 0;
            if (have || !t->lookups[j].nav_property)
                continue;
            struct dv_lookup *nl = &t->lookups[t->n_lookups];
            memset(nl, 0, sizeof(*nl));
            t->n_lookups++;
            if (!(nl->attribute = strdup(a->logical_name)) ||
                !(nl->nav_property = strdup(t->lookups[j].nav_property)) ||
                !(nl->target_table = strdup(a->targets[x])))
                return -ENOMEM;
        }
    }
    return 0;
}

static int table_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dv_table *)a)->logical_name,
                  ((const struct dv_table *)b)->logical_name);
}

/* The table-level fields and the attributes of definition o. */
static int table_fields(const struct json_node *o, struct dv_table *t)
{
    int rc = 0;
    t->logical_name = dv_dup_str(o, "LogicalName", &rc);
    t->metadata_id = dv_dup_str(o, "MetadataId", &rc);
    t->entity_set = dv_dup_str(o, "EntitySetName", &rc);
    t->primary_id = dv_dup_str(o, "PrimaryIdAttribute", &rc);
    t->primary_name = dv_dup_str(o, "PrimaryNameAttribute", &rc);
    t->change_tracking = dv_get_flag(o, "ChangeTrackingEnabled", false);
    t->is_intersect = dv_get_flag(o, "IsIntersect", false);
    t->read_only = (t->logical_name && strcmp(t->logical_name, "audit") == 0) ||
                   (t->entity_set && strcmp(t->entity_set, "audits") == 0);
    t->is_custom = dv_get_flag(o, "IsCustomEntity", false);
    const char *table_type = json_get_str(o, "TableType");
    t->is_activity = dv_get_flag(o, "IsActivity", false) ||
                     (table_type && strcmp(table_type, "Activity") == 0);
    t->data_provider_id = dv_dup_str(o, "DataProviderId", &rc);
    t->is_virtual = table_type ? strcmp(table_type, "Virtual") == 0 : t->data_provider_id != NULL;
    t->is_elastic = table_type && strcmp(table_type, "Elastic") == 0;
    t->ownership = ownership_of(json_get_str(o, "OwnershipType"));
    if (rc || (rc = parse_attrs(json_get(o, "Attributes"), t)))
        return rc;
    const char *image = json_get_str(o, "PrimaryImageAttribute");
    for (size_t i = 0; image && i < t->n_attrs; i++)
        if (t->attrs[i].logical_name && strcmp(t->attrs[i].logical_name, image) == 0)
            t->attrs[i].is_primary_image = true;
    return 0;
}

/* Definition o (an EntityDefinitions entry, or a schema document when c is NULL) as t. The
 * relationships come from o, else (c non-NULL) from the per-table routes; when those cannot be
 * read, t->definition_error says so and 0 is returned. t->schema_json: o without its @odata
 * annotations, the relationships read separately merged in, rendered canonically. */
static int table_from_definition(struct dv_client *c, const struct dv_env *env,
                                 const struct json_node *o, struct dv_table *t, struct dverr *err)
{
    struct buf schema = BUF_INIT;
    char *m1_raw = NULL, *mm_raw = NULL;
    int rc = table_fields(o, t);
    if (rc)
        goto out;
    const struct json_node *m1 = json_get(o, "ManyToOneRelationships");
    const struct json_node *mm = json_get(o, "ManyToManyRelationships");
    if (m1)
        rc = parse_many_to_one(m1, t);
    else if (c && dv_name_safe(t->logical_name))
        rc = fetch_relationships(c, env, t->logical_name, "ManyToOneRelationships", t,
                                 parse_many_to_one, &m1_raw, err);
    if (!rc && mm)
        rc = parse_many_to_many(mm, t);
    else if (!rc && c && dv_name_safe(t->logical_name))
        rc = fetch_relationships(c, env, t->logical_name, "ManyToManyRelationships", t,
                                 parse_many_to_many, &mm_raw, err);
    if (rc && rc != -ENOMEM && rc != -ECANCELED) {
        /* this table's relationships could not be read: the table is listed with why (the
         * capture does not read it), the others go on */
        char why[600];
        snprintf(why, sizeof why, "its relationship definitions could not be read: %s",
                 dverr_msg(err));
        dverr_clear(err);
        rc = (t->definition_error = strdup(why)) ? 0 : -ENOMEM;
        goto out;
    }
    if (rc)
        goto out;
    rc = buf_addch(&schema, '{');
    bool first = true;
    for (const struct json_node *m = o->child; m && !rc; m = m->next) {
        if (!m->key || strncmp(m->key, "@odata.", 7) == 0)
            continue;
        if (!first)
            rc = buf_addch(&schema, ',');
        first = false;
        if (!rc)
            rc = buf_add_json_string(&schema, m->key, m->key_len);
        if (!rc)
            rc = buf_addch(&schema, ':');
        if (!rc)
            rc = buf_add(&schema, m->raw, m->raw_len);
    }
    if (!rc && m1_raw)
        rc = buf_printf(&schema, "%s\"ManyToOneRelationships\":%s", first ? "" : ",", m1_raw);
    first = first && !m1_raw;
    if (!rc && mm_raw)
        rc = buf_printf(&schema, "%s\"ManyToManyRelationships\":%s", first ? "" : ",", mm_raw);
    if (!rc)
        rc = buf_addch(&schema, '}');
    if (rc)
        goto out;
    struct buf canon = BUF_INIT;
    struct dverr cerr = {0};
    if ((rc = record_canonicalize(schema.data, schema.len, NULL, &canon, &cerr))) {
        buf_release(&canon);
        rc = dverr_set(err, -EPROTO, "definition of %s: %s", t->logical_name, dverr_msg(&cerr));
        goto out;
    }
    t->schema_json = buf_detach(&canon);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    free(m1_raw);
    free(mm_raw);
    buf_release(&schema);
    return rc;
}

int dv_tables_link(struct dv_table *tables, size_t n)
{
    int rc = 0;
    /* Lookups to an abstract table: one per concrete target. */
    for (size_t i = 0; i < n && !rc; i++)
        rc = expand_abstract_lookups(&tables[i]);
    /* Lookup targets' entity sets, for @odata.bind. */
    for (size_t i = 0; i < n && !rc; i++)
        for (size_t j = 0; j < tables[i].n_lookups && !rc; j++) {
            struct dv_lookup *l = &tables[i].lookups[j];
            for (size_t k = 0; !l->target_set && l->target_table && k < n; k++)
                if (tables[k].logical_name && tables[k].entity_set &&
                    strcmp(tables[k].logical_name, l->target_table) == 0) {
                    if (!(l->target_set = strdup(tables[k].entity_set)))
                        rc = -ENOMEM;
                    break;
                }
        }
    if (!rc && n)
        qsort(tables, n, sizeof(*tables), table_cmp);
    return rc;
}

/* GET the definitions at path + the narrowed query (with every relationship expanded, or, when
 * the service refuses that, Attributes only). */
static int get_definitions(struct dv_client *c, const struct dv_env *env, const char *path,
                           struct json_doc **doc, struct http_response *resp, struct dverr *err)
{
    static const char *const expands[] = {DEFS_EXPAND_ALL, DEFS_EXPAND_ATTRS};
    struct buf url = BUF_INIT, rel = BUF_INIT;
    int rc = 0;
    for (size_t q = 0; q < sizeof(expands) / sizeof(expands[0]) && !rc; q++) {
        json_doc_free(*doc);
        *doc = NULL;
        buf_reset(&rel);
        if ((rc = buf_printf(&rel, "%s?$select=" ENTITY_PROPS "&$expand=%s", path, expands[q])) ||
            (rc = dv_api_url(env, rel.data, &url, err)) ||
            (rc = dv_webapi_get(c, env, url.data, NULL, DEFS_MAX, doc, "table definitions", resp,
                                err)))
            break;
        if (resp->status != 400 && resp->status != 501)
            break;
    }
    buf_release(&url);
    buf_release(&rel);
    return rc;
}

int dv_tables_list(struct dv_client *c, const struct dv_env *env, struct dv_table **tables,
                   size_t *n, struct dverr *err)
{
    struct http_response resp;
    struct json_doc *doc = NULL;
    struct dv_table *list = NULL;
    size_t count = 0;
    int rc = 0;
    *tables = NULL;
    *n = 0;
    http_response_init(&resp);
    if ((rc = get_definitions(c, env, "EntityDefinitions", &doc, &resp, err)))
        goto out;
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
    for (const struct json_node *o = value->child; o && !rc; o = o->next) {
        if (o->type != JSON_OBJECT || !json_get_str(o, "LogicalName") ||
            !json_get_str(o, "EntitySetName"))
            continue;
        rc = table_from_definition(c, env, o, &list[count++], err);
    }
    if (rc || (rc = dv_tables_link(list, count)))
        goto out;
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
    return rc;
}

int dv_table_get(struct dv_client *c, const struct dv_env *env, const char *logical_name,
                 struct dv_table *out, struct dverr *err)
{
    struct buf path = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    http_response_init(&resp);
    if (!dv_name_safe(logical_name))
        return dverr_set(err, -EINVAL, "a table name that is not a plain name; not read");
    if ((rc = buf_printf(&path, "EntityDefinitions(LogicalName='%s')", logical_name)) ||
        (rc = get_definitions(c, env, path.data, &doc, &resp, err)))
        goto out;
    if (resp.status == 404) {
        rc = dverr_set(err, -ENOENT, "table %s: no longer defined", logical_name);
        goto out;
    }
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "table definition", err);
        goto out;
    }
    const struct json_node *o = json_root(doc);
    if (o->type != JSON_OBJECT || !json_get_str(o, "LogicalName") ||
        !json_get_str(o, "EntitySetName")) {
        rc = dverr_set(err, -EPROTO, "definition of %s: no LogicalName or EntitySetName",
                       logical_name);
        goto out;
    }
    rc = table_from_definition(c, env, o, out, err);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    if (rc)
        table_release(out), memset(out, 0, sizeof(*out));
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&path);
    return rc;
}

int dv_table_from_schema(const char *schema_json, size_t len, struct dv_table *out,
                         struct dverr *err)
{
    struct json_doc *doc = NULL;
    memset(out, 0, sizeof(*out));
    int rc = json_parse(schema_json, len, NULL, &doc, err);
    if (rc)
        return rc;
    const struct json_node *o = json_root(doc);
    if (o->type != JSON_OBJECT || !json_get_str(o, "LogicalName") ||
        !json_get_str(o, "EntitySetName"))
        rc = dverr_set(err, -EPROTO, "a schema document without LogicalName or EntitySetName");
    else
        rc = table_from_definition(NULL, NULL, o, out, err);
    if (rc)
        table_release(out), memset(out, 0, sizeof(*out));
    json_doc_free(doc);
    return rc;
}

void dv_table_release(struct dv_table *t)
{
    if (t)
        table_release(t);
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

/* A full read, a delta read (delta_link), a read of some columns (select: no change tracking) or
 * a narrowed full read (q: dataverse.h), pages followed. A full read asks for change tracking
 * only when the caller takes the link (new_delta_link). */
static int read_rows(struct dv_client *c, const struct dv_env *env, const struct dv_table *table,
                     const char *delta_link, const char *select, const struct dv_read_query *q,
                     const struct dv_read_cb *cb, char **new_delta_link,
                     struct dv_read_stats *stats, struct dverr *err)
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
    } else if (select) {
        for (const char *p = select; *p; p++)
            if (!isalnum((unsigned char)*p) && *p != '_' && *p != ',') {
                rc = dverr_set(err, -EINVAL, "$select of %s: not a list of plain names",
                               table->logical_name);
                goto out;
            }
        rc = buf_printf(&url, "%s%s?$select=%s", base.data, table->entity_set, select);
    } else {
        rc = buf_printf(&url, "%s%s", base.data, table->entity_set);
        if (!rc && q)
            rc = query_string(table, q, &url, err);
    }
    if (rc)
        goto out;
    bool track = new_delta_link && !delta_link && !select && table->change_tracking &&
                 !(q && (q->key_from || q->key_to));
    int page = page_size_for(table);
    if (q && q->keys_only)
        page = PAGE_SIZE;
    else if (q && q->page_size > 0 && q->page_size < page)
        page = q->page_size;
    char prefer[256];
    snprintf(prefer, sizeof(prefer), "Prefer: %sodata.maxpagesize=%d,%s",
             track ? "odata.track-changes," : "", page, ANNOTATIONS);
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
        if ((rc = dv_webapi_get(c, env, url.data, headers, PAGE_MAX, &doc, table->logical_name, &resp,
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

int dv_read_table(struct dv_client *c, const struct dv_env *env, const struct dv_table *table,
                  const char *delta_link, const struct dv_read_cb *cb, char **new_delta_link,
                  struct dv_read_stats *stats, struct dverr *err)
{
    return read_rows(c, env, table, delta_link, NULL, NULL, cb, new_delta_link, stats, err);
}

int dv_read_table_query(struct dv_client *c, const struct dv_env *env,
                        const struct dv_table *table, const char *delta_link,
                        const struct dv_read_query *q, const struct dv_read_cb *cb,
                        char **new_delta_link, struct dv_read_stats *stats, struct dverr *err)
{
    return read_rows(c, env, table, delta_link, NULL, q, cb, new_delta_link, stats, err);
}

int dv_read_select(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                   const char *select, const struct dv_read_cb *cb, struct dverr *err)
{
    struct dv_table t = {.logical_name = (char *)entity_set, .entity_set = (char *)entity_set};
    if (!select || !*select)
        return dverr_set(err, -EINVAL, "dv_read_select: no columns");
    return read_rows(c, env, &t, NULL, select, NULL, cb, NULL, NULL, err);
}

/* ---- the caller and its privileges ---- */

int dv_whoami(struct dv_client *c, const struct dv_env *env, struct dv_whoami *out,
              struct dverr *err)
{
    struct buf url = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    http_response_init(&resp);
    if ((rc = dv_api_url(env, "WhoAmI", &url, err)) ||
        (rc = dv_webapi_get(c, env, url.data, NULL, 1 << 20, &doc, "WhoAmI", &resp, err)))
        goto out;
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "WhoAmI", err);
        goto out;
    }
    const struct json_node *r = json_root(doc);
    const char *user = json_get_str(r, "UserId"), *bu = json_get_str(r, "BusinessUnitId");
    if (!user || !dv_guid_valid(user)) {
        rc = dverr_set(err, -EPROTO, "WhoAmI: no UserId in the answer");
        goto out;
    }
    snprintf(out->user_id, sizeof(out->user_id), "%s", user);
    if (bu && dv_guid_valid(bu))
        snprintf(out->business_unit_id, sizeof(out->business_unit_id), "%s", bu);
out:
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&url);
    return rc;
}

int dv_user_has_privilege(struct dv_client *c, const struct dv_env *env, const char *user_id,
                          const char *privilege, bool *has, struct dverr *err)
{
    struct buf path = BUF_INIT, url = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    *has = false;
    http_response_init(&resp);
    if (!user_id || !dv_guid_valid(user_id))
        return dverr_set(err, -EINVAL, "RetrieveUserPrivileges: the user id is not a GUID");
    if ((rc = buf_printf(&path, "systemusers(%s)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()",
                         user_id)) ||
        (rc = dv_api_url(env, path.data, &url, err)) ||
        (rc = dv_webapi_get(c, env, url.data, NULL, 64 << 20, &doc, "RetrieveUserPrivileges", &resp,
                         err)))
        goto out;
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "RetrieveUserPrivileges", err);
        goto out;
    }
    const struct json_node *list = json_get(json_root(doc), "RolePrivileges");
    if (!list || list->type != JSON_ARRAY) {
        rc = dverr_set(err, -EPROTO, "RetrieveUserPrivileges: no RolePrivileges array");
        goto out;
    }
    for (const struct json_node *p = list->child; p && !*has; p = p->next) {
        const char *name = json_get_str(p, "PrivilegeName");
        *has = name && strcasecmp(name, privilege) == 0;
    }
out:
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&path);
    buf_release(&url);
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
    const char *base[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                          "OData-Version: 4.0",
                          body ? "Content-Type: application/json; charset=utf-8" : NULL, NULL};
    if (!(hdrs = dv_headers_join(base, headers))) {
        rc = -ENOMEM;
        goto out;
    }
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
