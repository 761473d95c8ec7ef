/* dataverse_metachanges: what changed in an environment's table definitions since an earlier
 * answer, by the RetrieveMetadataChanges function (dataverse.h, dv_metadata_changes):
 *   GET RetrieveMetadataChanges(Query=@p1[,DeletedMetadataFilters=@p2,ClientVersionStamp=@p3])
 *       ?@p1=<EntityQueryExpression, URL-encoded JSON>
 *       [&@p2=Microsoft.Dynamics.CRM.DeletedMetadataFilters'All'&@p3='<stamp>']
 * The query names the same properties dv_tables_list selects (dataverse_int.h), the columns and
 * relationships among them, so a change to any of them lists the table in EntityMetadata; no
 * criteria: every table. The answer's ServerVersionStamp is the next call's ClientVersionStamp;
 * DeletedMetadata holds the MetadataIds of what was deleted ("All": tables, columns and
 * relationships; they are not filtered by the query, so most are of no interest). An expired stamp
 * (ExpiredVersionStamp, 0x80044352, after Organization.ExpireSubscriptionsInDays or a change on
 * the service that loses track of deletions) is -ESTALE: the caller reads every definition again.
 * Threading: as dataverse.h. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHANGES_MAX (1024ull << 20)
#define EXPIRED_STAMP_CODE "0x80044352"
#define EXPIRED_STAMP_NAME "ExpiredVersionStamp"

/* The comma-separated names of list as JSON strings into out ("a","b",...). */
static int add_names(struct buf *out, const char *list)
{
    int rc = 0;
    for (const char *p = list; *p && !rc;) {
        size_t n = strcspn(p, ",");
        rc = buf_printf(out, "%s\"%.*s\"", p == list ? "" : ",", (int)n, p);
        p += n + (p[n] == ',');
    }
    return rc;
}

/* The EntityQueryExpression: dv_tables_list's properties, no criteria. */
static int build_query(struct buf *q)
{
    int rc = buf_addstr(q, "{\"Properties\":{\"AllProperties\":false,\"PropertyNames\":[");
    if (!rc)
        rc = add_names(q, ENTITY_PROPS ",Attributes,ManyToOneRelationships,"
                                       "ManyToManyRelationships");
    if (!rc)
        rc = buf_addstr(q, "]},\"AttributeQuery\":{\"Properties\":{\"AllProperties\":false,"
                           "\"PropertyNames\":[");
    if (!rc)
        rc = add_names(q, ATTR_PROPS);
    if (!rc)
        rc = buf_addstr(q, "]}},\"RelationshipQuery\":{\"Properties\":{\"AllProperties\":false,"
                           "\"PropertyNames\":[");
    if (!rc)
        rc = add_names(q, M2O_PROPS "," N2N_OWN_PROPS);
    if (!rc)
        rc = buf_addstr(q, "]}}}");
    return rc;
}

static int strv_push(char ***v, size_t *n, const char *s, size_t len)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(**v));
    if (!nv)
        return -ENOMEM;
    *v = nv;
    if (!(nv[*n] = strndup(s, len)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

/* The GUIDs of DeletedMetadata's Values (each a list of GUIDs, or a GUID). */
static int parse_deleted(const struct json_node *dm, struct dv_metadata_changes *out)
{
    const struct json_node *values = dm && dm->type == JSON_OBJECT ? json_get(dm, "Values") : NULL;
    int rc = 0;
    for (const struct json_node *v = values && values->type == JSON_ARRAY ? values->child : NULL;
         v && !rc; v = v->next) {
        const struct json_node *one = v->type == JSON_ARRAY ? v->child : v;
        for (; one && !rc; one = v->type == JSON_ARRAY ? one->next : NULL) {
            if (one->type != JSON_STRING || !dv_guid_valid(one->str))
                continue;
            if (!(rc = strv_push(&out->deleted_ids, &out->n_deleted_ids, one->str, 36)))
                for (char *c = out->deleted_ids[out->n_deleted_ids - 1]; *c; c++)
                    *c = (char)tolower((unsigned char)*c);
        }
    }
    return rc;
}

static bool is_expired_stamp(const struct http_response *resp)
{
    if (resp->status < 400 || resp->status >= 500 || !resp->body.data)
        return false;
    return strstr(resp->body.data, EXPIRED_STAMP_CODE) ||
           strstr(resp->body.data, EXPIRED_STAMP_NAME);
}

int dv_metadata_changes(struct dv_client *c, const struct dv_env *env, const char *client_stamp,
                        struct dv_metadata_changes *out, struct dverr *err)
{
    struct buf query = BUF_INIT, path = BUF_INIT, url = BUF_INIT, lit = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    memset(out, 0, sizeof(*out));
    http_response_init(&resp);
    if ((rc = build_query(&query)))
        goto out;
    rc = buf_printf(&path, "RetrieveMetadataChanges(Query=@p1%s)?@p1=",
                    client_stamp ? ",DeletedMetadataFilters=@p2,ClientVersionStamp=@p3" : "");
    if (!rc)
        rc = buf_urlencode(&path, query.data, false);
    if (!rc && client_stamp) {
        /* the stamp as an OData string literal: quotes doubled, then percent-encoded */
        rc = buf_addch(&lit, '\'');
        for (const char *p = client_stamp; *p && !rc; p++)
            rc = *p == '\'' ? buf_addstr(&lit, "''") : buf_addch(&lit, *p);
        if (!rc)
            rc = buf_addch(&lit, '\'');
        if (!rc)
            rc = buf_addstr(&path, "&@p2=Microsoft.Dynamics.CRM.DeletedMetadataFilters'All'&@p3=");
        if (!rc)
            rc = buf_urlencode(&path, lit.data, false);
    }
    if (rc)
        goto out;
    if ((rc = dv_api_url(env, path.data, &url, err)) ||
        (rc = dv_webapi_get(c, env, url.data, NULL, CHANGES_MAX, &doc, "RetrieveMetadataChanges",
                            &resp, err)))
        goto out;
    if (resp.status != 200) {
        if (client_stamp && is_expired_stamp(&resp))
            rc = dverr_set(err, -ESTALE, "the table definitions' version stamp has expired; "
                                         "every definition is read again");
        else
            rc = dv_status_error(&resp, "RetrieveMetadataChanges", err);
        goto out;
    }
    const struct json_node *root = json_root(doc);
    const char *stamp = root->type == JSON_OBJECT ? json_get_str(root, "ServerVersionStamp") : NULL;
    const struct json_node *em = stamp ? json_get(root, "EntityMetadata") : NULL;
    if (!stamp || !*stamp || (em && em->type != JSON_ARRAY && em->type != JSON_NULL)) {
        rc = dverr_set(err, -EPROTO, "RetrieveMetadataChanges: no ServerVersionStamp or a bad "
                                     "EntityMetadata");
        goto out;
    }
    if (!(out->stamp = strdup(stamp))) {
        rc = -ENOMEM;
        goto out;
    }
    for (const struct json_node *e = em && em->type == JSON_ARRAY ? em->child : NULL; e && !rc;
         e = e->next) {
        const char *name = e->type == JSON_OBJECT ? json_get_str(e, "LogicalName") : NULL;
        if (!name) {
            rc = dverr_set(err, -EPROTO, "RetrieveMetadataChanges: a table without LogicalName");
            goto out;
        }
        rc = strv_push(&out->changed, &out->n_changed, name, strlen(name));
    }
    if (!rc)
        rc = parse_deleted(json_get(root, "DeletedMetadata"), out);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    if (rc)
        dv_metadata_changes_release(out);
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&query);
    buf_release(&path);
    buf_release(&url);
    buf_release(&lit);
    return rc;
}

void dv_metadata_changes_release(struct dv_metadata_changes *m)
{
    if (!m)
        return;
    free(m->stamp);
    strv_free(m->changed, m->n_changed);
    strv_free(m->deleted_ids, m->n_deleted_ids);
    memset(m, 0, sizeof(*m));
}
