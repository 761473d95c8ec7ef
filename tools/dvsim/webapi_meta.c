/* webapi_meta: EntityDefinitions of each org's Web API (webapi_int.h), built from the static
 * table definitions (schema.c) in the shapes the service answers: OwnershipType, IsCustomEntity,
 * IsActivity, TableType, PrimaryImageAttribute per table; AttributeType, IsValidForCreate/Update/
 * Read, IsPrimaryId, Targets per attribute (image columns: AttributeType Virtual, AttributeTypeName
 * ImageType, IsPrimaryImage); one ManyToOneRelationship per lookup target, except ownerid, which
 * the service lists once as owner_<set> with ReferencedEntity "owner" (an entity without an entity
 * set); and each activity's <activity>_activity_parties among its OneToManyRelationships.
 *   GET /EntityDefinitions[?$expand=Attributes,ManyToOneRelationships,OneToManyRelationships,
 *                          ManyToManyRelationships]
 *   GET /EntityDefinitions(LogicalName='x') | (<MetadataId>)   same $expand
 *   GET /EntityDefinitions(LogicalName='x')/Attributes | /ManyToOneRelationships |
 *       /OneToManyRelationships | /ManyToManyRelationships
 * $select is honoured on the definitions and inside each $expand (Attributes($select=a,b));
 * MetadataId always comes. MetadataIds are derived from the names (SHA-256), so they are stable
 * across runs. Labels are English (1033). --shape real adds dvschema_extra (schema_real.c:
 * TableType Virtual with a DataProviderId, Elastic; their OneToManyRelationships are left out),
 * --hostile-tables dvschema_hostile to the list.
 * Definitions change only by POST /_sim/metadata (webapi_metachanges.c): an added String column
 * is listed among the table's Attributes, a deleted table is not listed and its definition is
 * 404; its rows stay readable by their entity set (dvsim's tables are static).
 * Thread-safe: the changes are read under d->lock (webapi_metachanges.c). */
#include "tools/dvsim/webapi_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void webapi_metadata_id(const char *a, const char *b, char out[37])
{
    char hex[65];
    struct buf s = BUF_INIT;
    buf_printf(&s, "%s|%s", a, b ? b : "");
    sha256_hex(s.data, s.len, hex);
    buf_release(&s);
    uint64_t x = strtoull((char[17]){hex[0], hex[1], hex[2], hex[3], hex[4], hex[5], hex[6], hex[7], hex[8],
                                     hex[9], hex[10], hex[11], hex[12], hex[13], hex[14], hex[15], 0},
                          NULL, 16);
    uint64_t y = strtoull((char[17]){hex[16], hex[17], hex[18], hex[19], hex[20], hex[21], hex[22], hex[23],
                                     hex[24], hex[25], hex[26], hex[27], hex[28], hex[29], hex[30], hex[31], 0},
                          NULL, 16);
    dvsim_guid(x, y, out);
}

const struct table_def *webapi_listed_table(struct dvsim *d, int i)
{
    if (i < N_TABLES + (int)dvschema_n_extra)
        return dvschema_table_at(i);
    i -= N_TABLES + (int)dvschema_n_extra;
    return d->hostile_tables && i < N_HOSTILE ? &dvschema_hostile[i] : NULL;
}

static void label(cJSON *o, const char *key, const char *text)
{
    cJSON *l = cJSON_AddObjectToObject(o, key);
    cJSON *arr = cJSON_AddArrayToObject(l, "LocalizedLabels");
    cJSON *one = cJSON_CreateObject();
    cJSON_AddStringToObject(one, "Label", text);
    cJSON_AddNumberToObject(one, "LanguageCode", 1033);
    cJSON_AddItemToArray(arr, one);
    cJSON *u = cJSON_AddObjectToObject(l, "UserLocalizedLabel");
    cJSON_AddStringToObject(u, "Label", text);
    cJSON_AddNumberToObject(u, "LanguageCode", 1033);
}

static void managed(cJSON *o, const char *key, bool v, const char *logical)
{
    cJSON *m = cJSON_AddObjectToObject(o, key);
    cJSON_AddBoolToObject(m, "Value", v);
    cJSON_AddBoolToObject(m, "CanBeChanged", true);
    cJSON_AddStringToObject(m, "ManagedPropertyLogicalName", logical);
}

static void type_names(enum col_type ty, const char **at, const char **atn, const char **odt)
{
    switch (ty) {
    case COL_PK: *at = "Uniqueidentifier"; *atn = "UniqueidentifierType"; *odt = "AttributeMetadata"; break;
    case COL_STRING: case COL_FILENAME: *at = "String"; *atn = "StringType"; *odt = "StringAttributeMetadata"; break;
    case COL_MEMO: *at = "Memo"; *atn = "MemoType"; *odt = "MemoAttributeMetadata"; break;
    case COL_INTEGER: *at = "Integer"; *atn = "IntegerType"; *odt = "IntegerAttributeMetadata"; break;
    case COL_BIGINT: case COL_VERSION: *at = "BigInt"; *atn = "BigIntType"; *odt = "BigIntAttributeMetadata"; break;
    case COL_MONEY: *at = "Money"; *atn = "MoneyType"; *odt = "MoneyAttributeMetadata"; break;
    case COL_DECIMAL: *at = "Decimal"; *atn = "DecimalType"; *odt = "DecimalAttributeMetadata"; break;
    case COL_DATETIME: case COL_DATEONLY: *at = "DateTime"; *atn = "DateTimeType"; *odt = "DateTimeAttributeMetadata"; break;
    case COL_PICKLIST: *at = "Picklist"; *atn = "PicklistType"; *odt = "PicklistAttributeMetadata"; break;
    case COL_STATE: *at = "State"; *atn = "StateType"; *odt = "StateAttributeMetadata"; break;
    case COL_STATUS: *at = "Status"; *atn = "StatusType"; *odt = "StatusAttributeMetadata"; break;
    case COL_GUID: *at = "Uniqueidentifier"; *atn = "UniqueidentifierType"; *odt = "UniqueIdentifierAttributeMetadata"; break;
    case COL_IMAGE: *at = "Virtual"; *atn = "ImageType"; *odt = "ImageAttributeMetadata"; break;
    case COL_BOOLEAN: *at = "Boolean"; *atn = "BooleanType"; *odt = "BooleanAttributeMetadata"; break;
    case COL_LOOKUP: *at = "Lookup"; *atn = "LookupType"; *odt = "LookupAttributeMetadata"; break;
    case COL_OWNER: *at = "Owner"; *atn = "OwnerType"; *odt = "LookupAttributeMetadata"; break;
    case COL_CUSTOMER: *at = "Customer"; *atn = "CustomerType"; *odt = "LookupAttributeMetadata"; break;
    case COL_FILE: *at = "Virtual"; *atn = "FileType"; *odt = "FileAttributeMetadata"; break;
    }
}

static cJSON *attr_json(const struct table_def *t, const struct col_def *c)
{
    const char *at = "", *atn = "", *odt = "";
    type_names(c->type, &at, &atn, &odt);
    cJSON *o = cJSON_CreateObject();
    char s[160], id[37];
    snprintf(s, sizeof s, "#Microsoft.Dynamics.CRM.%s", odt);
    cJSON_AddStringToObject(o, "@odata.type", s);
    webapi_metadata_id(t->logical, c->name, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "LogicalName", c->name);
    cJSON_AddStringToObject(o, "SchemaName", c->name);
    cJSON_AddStringToObject(o, "EntityLogicalName", t->logical);
    cJSON_AddStringToObject(o, "AttributeType", at);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "AttributeTypeName"), "Value", atn);
    cJSON_AddBoolToObject(o, "IsPrimaryId", c->type == COL_PK);
    cJSON_AddBoolToObject(o, "IsPrimaryName", t->primary_name && strcmp(t->primary_name, c->name) == 0);
    bool writable = !t->intersect;
    cJSON_AddBoolToObject(o, "IsValidForCreate", writable && (c->flags & COLF_CREATE));
    cJSON_AddBoolToObject(o, "IsValidForUpdate", writable && (c->flags & COLF_UPDATE));
    cJSON_AddBoolToObject(o, "IsValidForRead", true);
    cJSON_AddBoolToObject(o, "IsCustomAttribute", strncmp(c->name, "new_", 4) == 0);
    cJSON *rl = cJSON_AddObjectToObject(o, "RequiredLevel");
    cJSON_AddStringToObject(rl, "Value", c->type == COL_PK ? "SystemRequired" : "None");
    cJSON_AddBoolToObject(rl, "CanBeChanged", c->type != COL_PK);
    cJSON_AddStringToObject(rl, "ManagedPropertyLogicalName", "canmodifyrequirementlevelsettings");
    if (c->type == COL_FILENAME)
        cJSON_AddStringToObject(o, "AttributeOf", "new_document");
    else if (c->type == COL_MONEY && strstr(c->name, "_base"))
        cJSON_AddStringToObject(o, "AttributeOf", "transactioncurrencyid");
    else
        cJSON_AddNullToObject(o, "AttributeOf");
    if (c->type == COL_DATEONLY)
        cJSON_AddStringToObject(o, "Format", "DateOnly");
    else if (c->type == COL_DATETIME)
        cJSON_AddStringToObject(o, "Format", "DateAndTime");
    if (dvschema_is_lookup(c)) {
        cJSON *tg = cJSON_AddArrayToObject(o, "Targets");
        for (const struct lookup_target *g = c->targets; g && g->table; g++)
            cJSON_AddItemToArray(tg, cJSON_CreateString(g->table));
    }
    if (c->type == COL_IMAGE) {
        cJSON_AddBoolToObject(o, "IsPrimaryImage", true);
        cJSON_AddBoolToObject(o, "CanStoreFullImage", true);
        cJSON_AddNumberToObject(o, "MaxSizeInKB", 30720);
        cJSON_AddNumberToObject(o, "MaxHeight", 144);
        cJSON_AddNumberToObject(o, "MaxWidth", 144);
    }
    if (c->type == COL_FILE)
        cJSON_AddNumberToObject(o, "MaxSizeInKB", 131072);
    if (c->type == COL_MONEY)
        cJSON_AddNumberToObject(o, "Precision", 2);
    if (c->type == COL_DECIMAL)
        cJSON_AddNumberToObject(o, "Precision", 10);
    if (c->options) {
        cJSON *os = cJSON_AddObjectToObject(o, "OptionSet");
        cJSON *arr = cJSON_AddArrayToObject(os, "Options");
        for (const struct option_def *op = c->options; op->label; op++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "Value", op->value);
            label(x, "Label", op->label);
            if (c->type == COL_STATUS)
                cJSON_AddNumberToObject(x, "State", op->state);
            const struct col_def *status = c->type == COL_STATE ? dvschema_col_by_member(t, "statuscode", 10) : NULL;
            if (status)
                cJSON_AddNumberToObject(x, "DefaultStatus", dvschema_status_default(status, op->value));
            cJSON_AddItemToArray(arr, x);
        }
    }
    return o;
}

/* The many-to-one relationship of lookup column c of table t to target g (g NULL: ownerid's single
 * relationship to "owner"). */
static cJSON *rel_json(const struct table_def *t, const struct col_def *c, const struct lookup_target *g)
{
    const char *referenced = g ? g->table : "owner";
    const struct table_def *target = g ? dvschema_table_by_logical(g->table, strlen(g->table)) : NULL;
    cJSON *o = cJSON_CreateObject();
    char s[200], id[37];
    if (!g)
        snprintf(s, sizeof s, "owner_%s", t->set);
    else if (g->rel)
        snprintf(s, sizeof s, "%s", g->rel);
    else
        snprintf(s, sizeof s, "%s_%s_%s", g->table, t->logical, c->name);
    webapi_metadata_id("rel", s, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "SchemaName", s);
    cJSON_AddStringToObject(o, "RelationshipType", "OneToManyRelationship");
    cJSON_AddStringToObject(o, "ReferencedEntity", referenced);
    cJSON_AddStringToObject(o, "ReferencedAttribute", target ? target->pk : "ownerid");
    cJSON_AddStringToObject(o, "ReferencingEntity", t->logical);
    cJSON_AddStringToObject(o, "ReferencingAttribute", c->name);
    cJSON_AddStringToObject(o, "ReferencedEntityNavigationPropertyName", s);
    cJSON_AddStringToObject(o, "ReferencingEntityNavigationPropertyName", g ? g->nav : "ownerid");
    cJSON_AddBoolToObject(o, "IsHierarchical", strcmp(referenced, t->logical) == 0);
    cJSON_AddBoolToObject(o, "IsCustomRelationship", strncmp(c->name, "new_", 4) == 0);
    return o;
}

static cJSON *n2n_json(const struct n2n_def *n)
{
    cJSON *o = cJSON_CreateObject();
    char id[37];
    webapi_metadata_id("n2n", n->dvschema_name, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "SchemaName", n->dvschema_name);
    cJSON_AddStringToObject(o, "RelationshipType", "ManyToManyRelationship");
    cJSON_AddStringToObject(o, "IntersectEntityName", n->intersect);
    cJSON_AddStringToObject(o, "Entity1LogicalName", n->entity1);
    cJSON_AddStringToObject(o, "Entity1IntersectAttribute", n->entity1_attr);
    cJSON_AddStringToObject(o, "Entity1NavigationPropertyName", n->entity1_nav);
    cJSON_AddStringToObject(o, "Entity2LogicalName", n->entity2);
    cJSON_AddStringToObject(o, "Entity2IntersectAttribute", n->entity2_attr);
    cJSON_AddStringToObject(o, "Entity2NavigationPropertyName", n->entity2_nav);
    cJSON_AddBoolToObject(o, "IsCustomRelationship", true);
    return o;
}


static cJSON *sub_array(struct dvsim *d, const struct table_def *t, int which)
{
    cJSON *a = cJSON_CreateArray();
    if (which == EX_ATTR) {
        for (size_t i = 0; i < t->n_cols; i++)
            cJSON_AddItemToArray(a, attr_json(t, &t->cols[i]));
        char added[16][64];
        size_t n = dvmeta_columns(d, t, added, 16);
        for (size_t i = 0; i < n; i++) {
            struct col_def c = {.name = added[i], .type = COL_STRING,
                                .flags = COLF_CREATE | COLF_UPDATE};
            cJSON_AddItemToArray(a, attr_json(t, &c));
        }
    }
    if (which == EX_M2O)
        for (size_t i = 0; i < t->n_cols; i++) {
            const struct col_def *c = &t->cols[i];
            if (c->type == COL_OWNER) {
                cJSON_AddItemToArray(a, rel_json(t, c, NULL));
                continue;
            }
            for (const struct lookup_target *g = c->targets; g && g->table; g++)
                cJSON_AddItemToArray(a, rel_json(t, c, g));
        }
    if (which == EX_O2M)
        for (int k = 0; k < N_TABLES; k++)
            for (size_t i = 0; i < dvschema_tables[k].n_cols; i++) {
                const struct col_def *c = &dvschema_tables[k].cols[i];
                const struct lookup_target *g = c->type == COL_OWNER ? NULL : dvschema_lookup_target(c, t->logical, NULL);
                if (g)
                    cJSON_AddItemToArray(a, rel_json(&dvschema_tables[k], c, g));
            }
    if (which == EX_N2N)
        for (size_t i = 0; i < dvschema_n_n2n; i++) {
            const struct n2n_def *n = &dvschema_n2n[i];
            if (strcmp(n->entity1, t->logical) == 0 || strcmp(n->entity2, t->logical) == 0 ||
                strcmp(n->intersect, t->logical) == 0)
                cJSON_AddItemToArray(a, n2n_json(n));
        }
    return a;
}

static cJSON *entity_json(struct dvsim *d, const struct table_def *t, int expand);

/* Drop o's members that names (a comma-separated list; NULL: keep all) does not list, but
 * MetadataId, annotations and the expanded collections in keep (EX_* bits). */
static void select_members(cJSON *o, const char *names, int keep)
{
    static const char *const expanded[] = {"Attributes", "ManyToOneRelationships",
                                           "OneToManyRelationships", "ManyToManyRelationships"};
    if (!names)
        return;
    cJSON *m = o->child;
    while (m) {
        cJSON *next = m->next;
        bool wanted = !strcmp(m->string, "MetadataId") || !strncmp(m->string, "@odata.", 7);
        for (int k = 0; k < 4 && !wanted; k++)
            wanted = (keep & (1 << k)) && !strcmp(m->string, expanded[k]);
        size_t len = strlen(m->string);
        for (const char *p = names; *p && !wanted;) {
            size_t n = strcspn(p, ",");
            wanted = n == len && !strncmp(p, m->string, n);
            p += n + (p[n] == ',');
        }
        if (!wanted)
            cJSON_Delete(cJSON_DetachItemViaPointer(o, m));
        m = next;
    }
}

cJSON *webapi_entity_json(struct dvsim *d, const struct table_def *t, int expand,
                          const struct meta_select *sel)
{
    cJSON *o = entity_json(d, t, expand);
    if (!sel)
        return o;
    select_members(o, sel->entity, expand);
    static const char *const expanded[] = {"Attributes", "ManyToOneRelationships",
                                           "OneToManyRelationships", "ManyToManyRelationships"};
    for (int k = 0; k < 4; k++) {
        cJSON *arr = (expand & (1 << k)) ? cJSON_GetObjectItemCaseSensitive(o, expanded[k]) : NULL;
        for (cJSON *e = arr ? arr->child : NULL; e; e = e->next)
            select_members(e, sel->sub[k], 0);
    }
    return o;
}

static cJSON *entity_json(struct dvsim *d, const struct table_def *t, int expand)
{
    cJSON *o = cJSON_CreateObject();
    char id[37];
    webapi_metadata_id(t->logical, NULL, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "LogicalName", t->logical);
    cJSON_AddStringToObject(o, "SchemaName", t->schema);
    cJSON_AddStringToObject(o, "EntitySetName", t->set);
    cJSON_AddStringToObject(o, "LogicalCollectionName", t->set);
    cJSON_AddStringToObject(o, "PrimaryIdAttribute", t->pk);
    if (t->primary_name)
        cJSON_AddStringToObject(o, "PrimaryNameAttribute", t->primary_name);
    else
        cJSON_AddNullToObject(o, "PrimaryNameAttribute");
    const char *image = NULL;
    for (size_t i = 0; i < t->n_cols; i++)
        if (t->cols[i].type == COL_IMAGE)
            image = t->cols[i].name;
    if (image)
        cJSON_AddStringToObject(o, "PrimaryImageAttribute", image);
    else
        cJSON_AddNullToObject(o, "PrimaryImageAttribute");
    cJSON_AddNumberToObject(o, "ObjectTypeCode", t->object_type_code);
    cJSON_AddBoolToObject(o, "ChangeTrackingEnabled", t->change_tracking);
    managed(o, "CanChangeTrackingBeEnabled", t->writes != TW_NONE, "canchangetrackingbeenabled");
    cJSON_AddBoolToObject(o, "IsCustomEntity", !strncmp(t->logical, "new_", 4) || !strncmp(t->logical, "cr8a3_", 6));
    cJSON_AddBoolToObject(o, "IsActivity", t->activity);
    cJSON_AddStringToObject(o, "TableType", t->virtual_table ? "Virtual" : t->elastic ? "Elastic"
                                            : t->activity      ? "Activity" : "Standard");
    /* a virtual table names its data provider (here the OData v4 one); other tables have none */
    if (t->virtual_table)
        cJSON_AddStringToObject(o, "DataProviderId", "c1919979-0021-4f11-a587-a8f904bdfdf9");
    else
        cJSON_AddNullToObject(o, "DataProviderId");
    cJSON_AddBoolToObject(o, "IsIntersect", t->intersect);
    cJSON_AddBoolToObject(o, "IsValidForAdvancedFind", !t->intersect);
    cJSON_AddBoolToObject(o, "IsOptimisticConcurrencyEnabled", t->writes != TW_NONE && !t->intersect);
    static const char *const ownership[] = {[OWN_NONE] = "None", [OWN_USER] = "UserOwned",
                                            [OWN_BUSINESS] = "BusinessOwned", [OWN_ORG] = "OrganizationOwned"};
    cJSON_AddStringToObject(o, "OwnershipType", ownership[t->ownership]);
    managed(o, "IsAuditEnabled", t->writes != TW_NONE, "canmodifyauditsettings");
    label(o, "DisplayName", t->logical);
    if (expand & EX_ATTR)
        cJSON_AddItemToObject(o, "Attributes", sub_array(d, t, EX_ATTR));
    if (expand & EX_M2O)
        cJSON_AddItemToObject(o, "ManyToOneRelationships", sub_array(d, t, EX_M2O));
    if (expand & EX_O2M)
        cJSON_AddItemToObject(o, "OneToManyRelationships", sub_array(d, t, EX_O2M));
    if (expand & EX_N2N)
        cJSON_AddItemToObject(o, "ManyToManyRelationships", sub_array(d, t, EX_N2N));
    return o;
}

/* $expand=Attributes[($select=a,b)],ManyToOneRelationships[(...)],...: the EX_* bits into *out and
 * each one's $select into sel->sub (copies in bufs, NULL when none). */
static int parse_expand(const char *s, int *out, struct meta_select *sel, char bufs[4][1024])
{
    *out = 0;
    if (!s)
        return 0;
    int depth = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if ((*p == ',' && depth == 0) || !*p) {
            const char *e = start;
            while (e < p && *e != '(')
                e++;
            while (start < e && *start == ' ')
                start++;
            size_t n = (size_t)(e - start);
            int bit = 0;
            if (n == 10 && !strncmp(start, "Attributes", n)) bit = EX_ATTR;
            else if (n == 22 && !strncmp(start, "ManyToOneRelationships", n)) bit = EX_M2O;
            else if (n == 22 && !strncmp(start, "OneToManyRelationships", n)) bit = EX_O2M;
            else if (n == 23 && !strncmp(start, "ManyToManyRelationships", n)) bit = EX_N2N;
            else if (n)
                return -EINVAL;
            *out |= bit;
            if (bit && e < p) { /* (options): only $select */
                int k = bit == EX_ATTR ? 0 : bit == EX_M2O ? 1 : bit == EX_O2M ? 2 : 3;
                size_t on = (size_t)(p - e);
                if (on < 10 || strncmp(e, "($select=", 9) != 0 || e[on - 1] != ')' || on - 10 >= 1024)
                    return -EINVAL;
                snprintf(bufs[k], 1024, "%.*s", (int)(on - 10), e + 9);
                sel->sub[k] = bufs[k];
            }
            if (!*p)
                break;
            start = p + 1;
        }
    }
    return 0;
}

static void send_cjson_odata(struct req *r, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    buf_reset(&r->out);
    if (s)
        buf_addstr(&r->out, s);
    free(s);
    sreply_json(r, 200);
}

void webapi_entity_definitions(struct req *r, const char *rest)
{
    int expand;
    char bufs[4][1024];
    struct meta_select sel = {.entity = sreq_arg(r, "$select")};
    if (parse_expand(sreq_arg(r, "$expand"), &expand, &sel, bufs)) {
        sreply_error(r, 400, QUERY_ERR, "Could not find a property named '%.80s' on type "
                    "'Microsoft.Dynamics.CRM.EntityMetadata'.", sreq_arg(r, "$expand"));
        return;
    }
    struct buf ctx = BUF_INIT;
    webapi_base(r, &ctx);
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        cJSON *o = cJSON_CreateObject();
        buf_addstr(&ctx, "/$metadata#EntityDefinitions");
        cJSON_AddStringToObject(o, "@odata.context", ctx.data);
        cJSON *a = cJSON_AddArrayToObject(o, "value");
        const struct table_def *t;
        for (int i = 0; (t = webapi_listed_table(r->d, i)) != NULL; i++)
            if (!dvmeta_table_deleted(r->d, t))
                cJSON_AddItemToArray(a, webapi_entity_json(r->d, t, expand, &sel));
        buf_release(&ctx);
        send_cjson_odata(r, o);
        return;
    }
    const struct table_def *t = NULL;
    const char *p = rest;
    if (strncmp(p, "(LogicalName='", 14) == 0) {
        p += 14;
        size_t n = strcspn(p, "'");
        t = dvschema_table_by_logical(p, n);
        p += n;
        if (strncmp(p, "')", 2) != 0)
            t = NULL;
        p += 2;
    } else if (*p == '(' && strlen(p) >= 38 && p[37] == ')') {
        for (int i = 0; i < N_TABLES + (int)dvschema_n_extra && !t; i++) {
            char id[37];
            webapi_metadata_id(dvschema_table_at(i)->logical, NULL, id);
            if (strncasecmp(id, p + 1, 36) == 0)
                t = dvschema_table_at(i);
        }
        p += 38;
    }
    if (!t || dvmeta_table_deleted(r->d, t)) {
        buf_release(&ctx);
        sreply_error(r, 404, "0x80040217", "Could not find an entity definition for '%.80s'.", rest);
        return;
    }
    cJSON *o;
    if (*p == '\0') {
        o = webapi_entity_json(r->d, t, expand, &sel);
        buf_addstr(&ctx, "/$metadata#EntityDefinitions/$entity");
        cJSON_AddItemToObject(o, "@odata.context", cJSON_CreateString(ctx.data));
    } else {
        int which = !strcmp(p, "/Attributes") ? EX_ATTR : !strcmp(p, "/ManyToOneRelationships") ? EX_M2O
                    : !strcmp(p, "/OneToManyRelationships") ? EX_O2M : !strcmp(p, "/ManyToManyRelationships") ? EX_N2N : 0;
        if (!which) {
            buf_release(&ctx);
            sreply_error(r, 404, QUERY_ERR, "Resource not found for the segment '%.80s'.", p);
            return;
        }
        o = cJSON_CreateObject();
        buf_printf(&ctx, "/$metadata#EntityDefinitions('%s')%s", t->logical, p);
        cJSON_AddStringToObject(o, "@odata.context", ctx.data);
        cJSON *arr = sub_array(r->d, t, which);
        const char *only = sreq_arg(r, "$select");
        for (cJSON *e = arr->child; only && e; e = e->next)
            select_members(e, only, 0);
        cJSON_AddItemToObject(o, "value", arr);
    }
    buf_release(&ctx);
    send_cjson_odata(r, o);
}

