/* test_dataverse: the Dataverse clients against a scripted fake transport. Each test scripts the
 * exchanges it expects in order (method + URL) and the fake answers token requests itself, so the
 * tests see exactly what was sent (URLs, Prefer headers, bearer tokens, bodies) and when.
 * Covers: environments (paging, fields, skipping non-Dataverse ones, one read back from its stored
 * document), table definitions (expanded
 * and fallback routes), paged reads with nextLink/deltaLink, deleted rows, exact numbers, 429 with
 * Retry-After timing, 503 without it, expired delta token -> -ESTALE, links to other origins and
 * other orgs refused with no request sent, malformed pages, 401 refresh, token errors without the
 * secret, $batch requests and multipart answers (nested change sets, a 200 holding a failure),
 * ranged file downloads, capacity and administration mode; the shapes restore decides by
 * (ownership, activities, lookup Targets and the abstract owner table, image columns), bypass
 * headers on $batch and uploads, full-size images, WhoAmI, RetrieveUserPrivileges, $select reads.
 * Size: one scripted conversation per behaviour of the three clients, each short; splitting them
 * would only spread the fake transport they share. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/dataverse/dataverse_batch.h"
#include "backend/dataverse/dataverse_int.h"
#include "backend/net/http.h"

/* Scripts list only the fields an exchange needs. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define ADMIN "https://admin.test"
#define TOKEN_URL "https://login.test/contoso/oauth2/v2.0/token"
#define ORG "https://prod.test/org/contoso-prod"
#define API ORG "/api/data/v9.2/"
#define SECRET "very-secret-value-42"

struct exch {
    const char *method;
    const char *url;     /* exact, or a prefix when it ends with '*' */
    long status;
    const char *headers; /* response header block */
    const char *body;
    int rc;              /* transport failure instead of a response */
};

struct seen {
    char method[8];
    char url[4096];
    char bearer[64];
    char headers[1024];
    char *body;
    int64_t at;
};

struct fake {
    const struct exch *script;
    int n, next;
    struct seen seen[64];
    int n_seen;
    int tokens;
    char token_body[1024];
    long token_status;     /* 0: 200 with a token */
    int token_life;        /* expires_in; 0: 3599 */
    const char *token_error;
};

static struct fake F;

static int fake_perform(void *impl, const struct http_request *req, struct http_response *resp,
                        struct dverr *err)
{
    struct fake *f = impl;
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    resp->status = 0;
    if (strcmp(req->url, TOKEN_URL) == 0) {
        f->tokens++;
        assert_null(req->bearer);
        snprintf(f->token_body, sizeof(f->token_body), "%.*s", (int)req->body_len,
                 (const char *)req->body);
        if (f->token_status) {
            resp->status = f->token_status;
            buf_addstr(&resp->body, f->token_error);
            return 0;
        }
        resp->status = 200;
        buf_printf(&resp->body,
                   "{\"token_type\":\"Bearer\",\"expires_in\":%d,\"access_token\":\"tok-%d\"}",
                   f->token_life ? f->token_life : 3599, f->tokens);
        return 0;
    }
    assert_true(f->n_seen < 64);
    struct seen *s = &f->seen[f->n_seen++];
    memset(s, 0, sizeof(*s));
    snprintf(s->method, sizeof(s->method), "%s", req->method ? req->method : "GET");
    snprintf(s->url, sizeof(s->url), "%s", req->url);
    snprintf(s->bearer, sizeof(s->bearer), "%s", req->bearer ? req->bearer : "");
    for (const char *const *h = req->headers; h && *h; h++) {
        size_t l = strlen(s->headers);
        snprintf(s->headers + l, sizeof(s->headers) - l, "%s\n", *h);
    }
    if (req->body)
        s->body = strndup(req->body, req->body_len);
    s->at = now_ms();
    if (f->next >= f->n)
        fail_msg("unexpected request %s %s", s->method, s->url);
    const struct exch *e = &f->script[f->next++];
    size_t ul = strlen(e->url);
    bool match = e->url[ul - 1] == '*' ? strncmp(req->url, e->url, ul - 1) == 0
                                       : strcmp(req->url, e->url) == 0;
    if (!match || strcmp(s->method, e->method) != 0)
        fail_msg("request %d: expected %s %s, got %s %s", f->next, e->method, e->url, s->method,
                 s->url);
    if (e->rc)
        return dverr_set(err, e->rc, "scripted transport failure");
    resp->status = e->status;
    buf_addstr(&resp->headers, e->headers ? e->headers : "HTTP/1.1 200 OK\r\n\r\n");
    if (e->body)
        buf_addstr(&resp->body, e->body);
    return 0;
}

static void fake_free(void *impl) { (void)impl; }
static const struct http_transport_ops fake_ops = {fake_perform, fake_free};

static char dir[64], secret_path[128];
static struct config cfg;

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/dvsnap-dv.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(secret_path, sizeof(secret_path), "%s/secret", dir);
    int fd = open(secret_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, SECRET "\n", strlen(SECRET) + 1), (ssize_t)strlen(SECRET) + 1);
    close(fd);
    cfg.admin_url = (char *)ADMIN;
    cfg.token_url = (char *)TOKEN_URL;
    cfg.client_id = (char *)"app-1";
    cfg.client_secret_file = secret_path;
    cfg.http_retries = 4;
    return 0;
}

static int teardown(void **state)
{
    unlink(secret_path);
    rmdir(dir);
    return 0;
}

static void release_seen(void)
{
    for (int i = 0; i < F.n_seen; i++)
        free(F.seen[i].body);
}

static struct dv_client *client(const struct exch *script, int n)
{
    release_seen();
    memset(&F, 0, sizeof(F));
    F.script = script;
    F.n = n;
    struct http_transport *t = calloc(1, sizeof(*t));
    t->ops = &fake_ops;
    t->impl = &F;
    struct dv_client *c = NULL;
    struct dverr err = {0};
    assert_int_equal(dv_client_new_with_transport(&cfg, t, &c, &err), 0);
    return c;
}

static void script_done(void)
{
    if (F.next != F.n)
        fail_msg("only %d of %d scripted requests were made", F.next, F.n);
}

static struct dv_env org_env(void)
{
    struct dv_env e = {0};
    e.unique_name = (char *)"contoso-prod";
    e.api_url = (char *)ORG;
    e.id = (char *)"00000000-0000-0000-0000-000000000001";
    return e;
}

/* ---- environments ---- */

static const char envs_page1[] =
    "{\"value\":[{\"id\":\"/providers/x/e1\",\"name\":\"e1\",\"location\":\"unitedstates\","
    "\"properties\":{\"displayName\":\"Contoso Prod\",\"tenantId\":\"t-1\",\"azureRegion\":\"westus\","
    "\"environmentSku\":\"Production\",\"isDefault\":false,\"states\":{\"runtime\":{\"id\":\"Enabled\"}},"
    "\"retentionDetails\":{\"retentionPeriod\":\"P28D\"},"
    "\"linkedEnvironmentMetadata\":{\"uniqueName\":\"contoso-prod\",\"instanceApiUrl\":\"https://prod.test/org/contoso-prod/\","
    "\"templates\":[\"D365_Sales\"]}}},"
    "{\"name\":\"nodv\",\"location\":\"europe\",\"properties\":{\"displayName\":\"No Dataverse\"}}],"
    "\"nextLink\":\"https://admin.test/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?page=2\"}";
static const char envs_page2[] =
    "{\"value\":[{\"name\":\"e2\",\"location\":\"unitedstates\",\"properties\":{\"displayName\":\"Default\","
    "\"environmentSku\":\"Default\",\"isDefault\":true,\"linkedEnvironmentMetadata\":{\"uniqueName\":\"contoso-default\","
    "\"instanceApiUrl\":\"https://def.test\"}}}]}";

/* An environment document as the repository keeps it: the fields the list gives, the retention
 * in weeks too, the top-level retentionPeriod when retentionDetails has none; no Dataverse: 1. */
static void test_env_from_json(void **state)
{
    (void)state;
    static const char doc[] =
        "{\"name\":\"e3\",\"location\":\"europe\",\"properties\":{\"environmentSku\":\"default\","
        "\"retentionDetails\":{\"retentionPeriod\":\"P4W\"},"
        "\"linkedEnvironmentMetadata\":{\"uniqueName\":\"contoso-eu\",\"instanceApiUrl\":\"https://eu.test/\","
        "\"templates\":[\"D365_Sales\"]}}}";
    struct dv_env e;
    assert_int_equal(dv_env_from_json(doc, strlen(doc), &e), 0);
    assert_string_equal(e.unique_name, "contoso-eu");
    assert_string_equal(e.geo, "europe");
    assert_string_equal(e.api_url, "https://eu.test");
    assert_int_equal(e.retention_days, 28);
    assert_true(e.is_default); /* the sku, whatever its case */
    assert_true(e.has_d365_apps);
    assert_string_equal(e.raw_json, doc);
    dv_env_release(&e);
    static const char top[] =
        "{\"name\":\"e4\",\"properties\":{\"retentionPeriod\":\"P14D\",\"linkedEnvironmentMetadata\":"
        "{\"uniqueName\":\"contoso-top\",\"instanceApiUrl\":\"https://top.test\"}}}";
    assert_int_equal(dv_env_from_json(top, strlen(top), &e), 0);
    assert_int_equal(e.retention_days, 14);
    assert_false(e.is_default);
    dv_env_release(&e);
    static const char nodv[] = "{\"name\":\"nodv\",\"properties\":{}}";
    assert_int_equal(dv_env_from_json(nodv, strlen(nodv), &e), 1);
    assert_int_not_equal(dv_env_from_json("{", 1, &e), 0);
}

static void test_env_list(void **state)
{
    const struct exch s[] = {
        {"GET", ADMIN "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?*", 200,
         NULL, envs_page1},
        {"GET", ADMIN "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments?page=2",
         200, NULL, envs_page2},
    };
    struct dv_client *c = client(s, 2);
    struct dv_env *envs = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_env_list(c, &envs, &n, &err), 0);
    script_done();
    assert_int_equal(n, 2);
    assert_string_equal(envs[0].id, "e1");
    assert_string_equal(envs[0].unique_name, "contoso-prod");
    assert_string_equal(envs[0].display_name, "Contoso Prod");
    assert_string_equal(envs[0].sku, "Production");
    assert_string_equal(envs[0].geo, "unitedstates");
    assert_string_equal(envs[0].region, "westus");
    assert_string_equal(envs[0].api_url, "https://prod.test/org/contoso-prod");
    assert_string_equal(envs[0].tenant_id, "t-1");
    assert_string_equal(envs[0].runtime_state, "Enabled");
    assert_int_equal(envs[0].retention_days, 28);
    assert_true(envs[0].has_d365_apps);
    assert_false(envs[0].is_default);
    assert_true(strncmp(envs[0].raw_json, "{\"id\":\"/providers/x/e1\"", 22) == 0);
    assert_string_equal(envs[1].unique_name, "contoso-default");
    assert_true(envs[1].is_default);
    assert_false(envs[1].has_d365_apps);
    assert_int_equal(envs[1].retention_days, 0);
    /* One token, for the admin resource, attached to both requests. */
    assert_int_equal(F.tokens, 1);
    assert_non_null(strstr(F.token_body, "scope=https%3A%2F%2Fadmin.test%2F.default"));
    assert_non_null(strstr(F.token_body, "grant_type=client_credentials"));
    assert_non_null(strstr(F.token_body, "client_id=app-1"));
    assert_string_equal(F.seen[0].bearer, "tok-1");
    assert_string_equal(F.seen[1].bearer, "tok-1");
    dv_env_list_free(envs, n);

    /* dv_env_get by unique name, and a missing one. */
    const struct exch s2[] = {
        {"GET", ADMIN "/providers/*", 200, NULL, envs_page2},
        {"GET", ADMIN "/providers/*", 200, NULL, envs_page2},
    };
    dv_client_free(c);
    c = client(s2, 2);
    struct dv_env e;
    assert_int_equal(dv_env_get(c, "CONTOSO-default", &e, &err), 0);
    assert_string_equal(e.id, "e2");
    dv_env_release(&e);
    assert_int_equal(dv_env_get(c, "nope", &e, &err), -ENOENT);
    dv_client_free(c);
}

static void test_admin_resource(void **state)
{
    const struct exch s[] = {
        {"GET", ADMIN "/providers/*", 200, NULL, envs_page2},
    };
    cfg.admin_resource = (char *)"https://service.test";
    struct dv_client *c = client(s, 1);
    cfg.admin_resource = NULL;
    struct dv_env *envs = NULL;
    size_t n = 0;
    assert_int_equal(dv_env_list(c, &envs, &n, NULL), 0);
    /* the token is for the configured audience, and it is still only sent to admin_url */
    assert_non_null(strstr(F.token_body, "scope=https%3A%2F%2Fservice.test%2F.default"));
    assert_string_equal(F.seen[0].bearer, "tok-1");
    script_done();
    dv_env_list_free(envs, n);
    dv_client_free(c);
}

static void test_env_nextlink_elsewhere(void **state)
{
    const struct exch s[] = {
        {"GET", ADMIN "/providers/*", 200, NULL,
         "{\"value\":[],\"nextLink\":\"https://evil.test/providers/x\"}"},
    };
    struct dv_client *c = client(s, 1);
    struct dv_env *envs = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_env_list(c, &envs, &n, &err), -EPERM);
    script_done(); /* and nothing was sent to evil.test */
    assert_int_equal(F.n_seen, 1);
    dv_client_free(c);
}

/* ---- tables ---- */

static const char defs_expanded[] =
    "{\"value\":["
    "{\"LogicalName\":\"contact\",\"EntitySetName\":\"contacts\",\"PrimaryIdAttribute\":\"contactid\","
    "\"PrimaryNameAttribute\":\"fullname\",\"ChangeTrackingEnabled\":true,\"IsIntersect\":false,"
    "\"Attributes\":[{\"LogicalName\":\"contactid\",\"AttributeType\":\"Uniqueidentifier\",\"IsPrimaryId\":true,"
    "\"IsValidForCreate\":true,\"IsValidForUpdate\":false,\"IsValidForRead\":true},"
    "{\"LogicalName\":\"parentcustomerid\",\"AttributeType\":\"Customer\",\"IsValidForCreate\":true,"
    "\"IsValidForUpdate\":true,\"IsValidForRead\":true}],"
    "\"ManyToOneRelationships\":[{\"SchemaName\":\"contact_customer_accounts\",\"ReferencingEntity\":\"contact\","
    "\"ReferencingAttribute\":\"parentcustomerid\",\"ReferencingEntityNavigationPropertyName\":\"parentcustomerid_account\","
    "\"ReferencedEntity\":\"account\"}],\"ManyToManyRelationships\":[]},"
    "{\"LogicalName\":\"account\",\"EntitySetName\":\"accounts\",\"PrimaryIdAttribute\":\"accountid\","
    "\"ChangeTrackingEnabled\":{\"Value\":false},\"Attributes\":[],"
    "\"ManyToOneRelationships\":[],\"ManyToManyRelationships\":[{\"SchemaName\":\"accountleads\","
    "\"IntersectEntityName\":\"accountleads\",\"Entity1LogicalName\":\"account\",\"Entity1IntersectAttribute\":\"accountid\","
    "\"Entity1NavigationPropertyName\":\"accountleads_association\",\"Entity2LogicalName\":\"lead\","
    "\"Entity2IntersectAttribute\":\"leadid\",\"Entity2NavigationPropertyName\":\"accountleads_association\"}]},"
    "{\"LogicalName\":\"nosetname\"}"
    "]}";

static void test_tables_expanded(void **state)
{
    const struct exch s[] = {{"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL, 200, NULL,
                              defs_expanded}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table *t = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_tables_list(c, &env, &t, &n, &err), 0);
    script_done();
    assert_int_equal(n, 2); /* sorted; the one without an entity set is left out */
    assert_string_equal(t[0].logical_name, "account");
    assert_false(t[0].change_tracking); /* managed-property form */
    assert_int_equal(t[0].n_many_to_many, 1);
    assert_string_equal(t[0].many_to_many[0].intersect_table, "accountleads");
    assert_string_equal(t[0].many_to_many[0].entity2_attr, "leadid");
    assert_string_equal(t[1].logical_name, "contact");
    assert_string_equal(t[1].entity_set, "contacts");
    assert_string_equal(t[1].primary_id, "contactid");
    assert_string_equal(t[1].primary_name, "fullname");
    assert_true(t[1].change_tracking);
    assert_int_equal(t[1].n_attrs, 2);
    assert_true(t[1].attrs[0].is_primary_id);
    assert_false(t[1].attrs[0].valid_for_update);
    assert_string_equal(t[1].attrs[1].type, "Customer");
    assert_int_equal(t[1].n_lookups, 1);
    assert_string_equal(t[1].lookups[0].attribute, "parentcustomerid");
    assert_string_equal(t[1].lookups[0].nav_property, "parentcustomerid_account");
    assert_string_equal(t[1].lookups[0].target_table, "account");
    assert_string_equal(t[1].lookups[0].target_set, "accounts");
    /* canonical: keys sorted */
    assert_true(strncmp(t[1].schema_json, "{\"Attributes\":[", 15) == 0);
    assert_string_equal(F.seen[0].bearer, "tok-1");
    assert_non_null(strstr(F.token_body, "scope=https%3A%2F%2Fprod.test%2Forg%2Fcontoso-prod%2F.default"));
    dv_tables_free(t, n);
    dv_client_free(c);
}

/* A schema document parsed back gives the table dv_tables_list made (the capture's cache). */
static void test_table_from_schema(void **state)
{
    const struct exch s[] = {{"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL,
                              200, NULL, defs_expanded}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table *t = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_tables_list(c, &env, &t, &n, &err), 0);
    script_done();
    struct dv_table again[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(dv_table_from_schema(t[i].schema_json, strlen(t[i].schema_json), &again[i], &err), 0);
    assert_int_equal(dv_tables_link(again, 2), 0);
    for (int i = 0; i < 2; i++) {
        assert_string_equal(again[i].logical_name, t[i].logical_name);
        assert_string_equal(again[i].entity_set, t[i].entity_set);
        assert_int_equal(again[i].change_tracking, t[i].change_tracking);
        assert_int_equal(again[i].n_attrs, t[i].n_attrs);
        assert_int_equal(again[i].n_lookups, t[i].n_lookups);
        assert_int_equal(again[i].n_many_to_many, t[i].n_many_to_many);
        assert_string_equal(again[i].schema_json, t[i].schema_json);
    }
    assert_string_equal(again[1].lookups[0].target_set, "accounts");
    for (int i = 0; i < 2; i++)
        dv_table_release(&again[i]);
    const char *no_set = "{\"LogicalName\":\"x\"}";
    assert_int_equal(dv_table_from_schema(no_set, strlen(no_set), &again[0], &err), -EPROTO);
    dv_tables_free(t, n);
    dv_client_free(c);
}

/* An Owner column without Targets (not selectable on the Attributes collection) points at users
 * and teams; the primary image comes from the table's PrimaryImageAttribute. */
static void test_table_get_owner_image(void **state)
{
    const struct exch s[] = {
        {"GET", API "EntityDefinitions(LogicalName='new_thing')?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL,
         200, NULL,
         "{\"@odata.context\":\"x\",\"MetadataId\":\"6a1f0a6b-8f2c-4d8e-9c1e-0b4c1c2d3e4f\","
         "\"LogicalName\":\"new_thing\",\"EntitySetName\":\"new_things\",\"PrimaryIdAttribute\":\"new_thingid\","
         "\"PrimaryImageAttribute\":\"entityimage\",\"Attributes\":[{\"LogicalName\":\"ownerid\","
         "\"AttributeType\":\"Owner\"},{\"LogicalName\":\"entityimage\",\"AttributeType\":\"Virtual\","
         "\"AttributeTypeName\":{\"Value\":\"ImageType\"}}],\"ManyToOneRelationships\":[{\"ReferencingEntity\":"
         "\"new_thing\",\"ReferencingAttribute\":\"ownerid\",\"ReferencingEntityNavigationPropertyName\":\"ownerid\","
         "\"ReferencedEntity\":\"owner\"}],\"ManyToManyRelationships\":[]}"},
        {"GET", API "EntityDefinitions(LogicalName='gone')?*", 404, NULL,
         "{\"error\":{\"code\":\"0x80040217\",\"message\":\"not found\"}}"},
    };
    struct dv_client *c = client(s, 2);
    struct dv_env env = org_env();
    struct dv_table t;
    struct dverr err = {0};
    assert_int_equal(dv_table_get(c, &env, "new_thing", &t, &err), 0);
    assert_string_equal(t.metadata_id, "6a1f0a6b-8f2c-4d8e-9c1e-0b4c1c2d3e4f");
    assert_int_equal(t.attrs[0].n_targets, 2);
    assert_string_equal(t.attrs[0].targets[0], "systemuser");
    assert_true(t.attrs[1].is_primary_image);
    assert_string_equal(t.attrs[1].type, "Image");
    assert_null(strstr(t.schema_json, "@odata.context"));
    assert_int_equal(dv_tables_link(&t, 1), 0);
    assert_int_equal(t.n_lookups, 3); /* owner, then one per target */
    dv_table_release(&t);
    assert_int_equal(dv_table_get(c, &env, "gone", &t, &err), -ENOENT);
    assert_int_equal(dv_table_get(c, &env, "../x", &t, &err), -EINVAL);
    script_done();
    dv_client_free(c);
}

/* RetrieveMetadataChanges: the request's shape, the changed tables and deleted ids, and the
 * expired stamp. */
static void test_metadata_changes(void **state)
{
    const struct exch s[] = {
        {"GET", API "RetrieveMetadataChanges(Query=@p1)?@p1=%7B%22Properties%22*", 200, NULL,
         "{\"ServerVersionStamp\":\"100!12/07/2026 10:00:00\",\"EntityMetadata\":[{\"LogicalName\":\"account\"},"
         "{\"LogicalName\":\"contact\"}],\"DeletedMetadata\":{\"Count\":0,\"Keys\":[],\"Values\":[]}}"},
        {"GET", API "RetrieveMetadataChanges(Query=@p1,DeletedMetadataFilters=@p2,ClientVersionStamp=@p3)?@p1=*", 200,
         NULL,
         "{\"ServerVersionStamp\":\"101!12/07/2026 10:05:00\",\"EntityMetadata\":[{\"HasChanged\":false,"
         "\"LogicalName\":\"contact\"}],\"DeletedMetadata\":{\"Count\":1,\"Keys\":[\"Default\"],"
         "\"Values\":[[\"6A1F0A6B-8F2C-4D8E-9C1E-0B4C1C2D3E4F\",\"not-a-guid\"]]}}"},
        {"GET", API "RetrieveMetadataChanges(*", 400, NULL,
         "{\"error\":{\"code\":\"0x80044352\",\"message\":\"Version stamp associated with the client has "
         "expired. Please perform a full sync.\"}}"},
    };
    struct dv_client *c = client(s, 3);
    struct dv_env env = org_env();
    struct dv_metadata_changes m;
    struct dverr err = {0};
    assert_int_equal(dv_metadata_changes(c, &env, NULL, &m, &err), 0);
    assert_string_equal(m.stamp, "100!12/07/2026 10:00:00");
    assert_int_equal(m.n_changed, 2);
    assert_int_equal(m.n_deleted_ids, 0);
    dv_metadata_changes_release(&m);
    assert_int_equal(dv_metadata_changes(c, &env, "100!12/07/2026 10:00:00", &m, &err), 0);
    assert_int_equal(m.n_changed, 1);
    assert_string_equal(m.changed[0], "contact");
    assert_int_equal(m.n_deleted_ids, 1);
    assert_string_equal(m.deleted_ids[0], "6a1f0a6b-8f2c-4d8e-9c1e-0b4c1c2d3e4f");
    dv_metadata_changes_release(&m);
    /* the stamp travels as a quoted literal, percent-encoded; the filter is All */
    assert_non_null(strstr(F.seen[1].url, "&@p2=Microsoft.Dynamics.CRM.DeletedMetadataFilters'All'"
                                          "&@p3=%27100%2112%2F07%2F2026%2010%3A00%3A00%27"));
    assert_non_null(strstr(F.seen[0].url, "%22AttributeQuery%22"));
    assert_int_equal(dv_metadata_changes(c, &env, "old", &m, &err), -ESTALE);
    assert_null(m.stamp);
    script_done();
    dv_client_free(c);
}


/* The real shapes restore decides by: ownership, custom and activity tables, lookup Targets, an
 * owner relationship to the abstract "owner" table (one bindable lookup per target), image and
 * file columns described as Virtual. */
#define NOREL ",\"ManyToOneRelationships\":[],\"ManyToManyRelationships\":[]"
static const char defs_real[] =
    "{\"value\":["
    "{\"LogicalName\":\"email\",\"EntitySetName\":\"emails\",\"PrimaryIdAttribute\":\"activityid\","
    "\"OwnershipType\":\"UserOwned\",\"IsActivity\":true,\"TableType\":\"Activity\",\"IsCustomEntity\":false,"
    "\"Attributes\":[{\"LogicalName\":\"activityid\",\"AttributeType\":\"Uniqueidentifier\",\"IsPrimaryId\":true},"
    "{\"LogicalName\":\"ownerid\",\"AttributeType\":\"Owner\",\"IsValidForCreate\":true,\"IsValidForUpdate\":true,"
    "\"Targets\":[\"systemuser\",\"team\"]},"
    "{\"LogicalName\":\"regardingobjectid\",\"AttributeType\":\"Lookup\",\"IsValidForCreate\":true,"
    "\"IsValidForUpdate\":true,\"Targets\":[\"account\",\"contact\"]}],"
    "\"ManyToOneRelationships\":["
    "{\"ReferencingEntity\":\"email\",\"ReferencingAttribute\":\"ownerid\",\"ReferencedEntity\":\"owner\","
    "\"ReferencingEntityNavigationPropertyName\":\"ownerid\"},"
    "{\"ReferencingEntity\":\"email\",\"ReferencingAttribute\":\"regardingobjectid\",\"ReferencedEntity\":\"account\","
    "\"ReferencingEntityNavigationPropertyName\":\"regardingobjectid_account_email\"},"
    "{\"ReferencingEntity\":\"email\",\"ReferencingAttribute\":\"regardingobjectid\",\"ReferencedEntity\":\"contact\","
    "\"ReferencingEntityNavigationPropertyName\":\"regardingobjectid_contact_email\"}],"
    "\"ManyToManyRelationships\":[]},"
    "{\"LogicalName\":\"contact\",\"EntitySetName\":\"contacts\",\"PrimaryIdAttribute\":\"contactid\","
    "\"OwnershipType\":\"UserOwned\",\"Attributes\":[{\"LogicalName\":\"entityimage\",\"AttributeType\":\"Virtual\","
    "\"AttributeTypeName\":{\"Value\":\"ImageType\"},\"IsPrimaryImage\":true,\"IsValidForCreate\":true},"
    "{\"LogicalName\":\"new_cv\",\"AttributeType\":\"Virtual\",\"AttributeTypeName\":{\"Value\":\"FileType\"}}],"
    "\"ManyToOneRelationships\":[],\"ManyToManyRelationships\":[]},"
    "{\"LogicalName\":\"account\",\"EntitySetName\":\"accounts\",\"PrimaryIdAttribute\":\"accountid\"" NOREL "},"
    "{\"LogicalName\":\"owner\",\"EntitySetName\":\"owners\",\"PrimaryIdAttribute\":\"ownerid\",\"OwnershipType\":\"None\"" NOREL "},"
    "{\"LogicalName\":\"systemuser\",\"EntitySetName\":\"systemusers\",\"PrimaryIdAttribute\":\"systemuserid\","
    "\"OwnershipType\":\"BusinessOwned\"" NOREL "},"
    "{\"LogicalName\":\"team\",\"EntitySetName\":\"teams\",\"PrimaryIdAttribute\":\"teamid\",\"OwnershipType\":\"BusinessOwned\"" NOREL "},"
    "{\"LogicalName\":\"transactioncurrency\",\"EntitySetName\":\"transactioncurrencies\","
    "\"PrimaryIdAttribute\":\"transactioncurrencyid\",\"OwnershipType\":\"OrganizationOwned\"" NOREL "},"
    "{\"LogicalName\":\"new_thing\",\"EntitySetName\":\"new_things\",\"PrimaryIdAttribute\":\"new_thingid\","
    "\"OwnershipType\":\"OrganizationOwned\",\"IsCustomEntity\":true" NOREL "}"
    "]}";

static const struct dv_lookup *find_lookup(const struct dv_table *t, const char *attr,
                                           const char *target)
{
    for (size_t i = 0; i < t->n_lookups; i++)
        if (!strcmp(t->lookups[i].attribute, attr) && !strcmp(t->lookups[i].target_table, target))
            return &t->lookups[i];
    return NULL;
}

static void test_tables_real_shapes(void **state)
{
    const struct exch s[] = {{"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL, 200, NULL,
                              defs_real}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table *t = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_tables_list(c, &env, &t, &n, &err), 0);
    script_done();
    assert_int_equal(n, 8);
    const struct dv_table *account = &t[0], *contact = &t[1], *email = &t[2], *thing = &t[3],
                          *owner = &t[4], *user = &t[5], *team = &t[6], *cur = &t[7];
    assert_string_equal(email->logical_name, "email");
    assert_string_equal(cur->logical_name, "transactioncurrency");
    assert_int_equal(account->ownership, DV_OWNERSHIP_UNKNOWN);
    assert_int_equal(email->ownership, DV_OWNERSHIP_USER);
    assert_true(email->is_activity);
    assert_false(email->is_custom);
    assert_int_equal(owner->ownership, DV_OWNERSHIP_NONE);
    assert_int_equal(user->ownership, DV_OWNERSHIP_BUSINESS);
    assert_int_equal(team->ownership, DV_OWNERSHIP_BUSINESS);
    assert_int_equal(cur->ownership, DV_OWNERSHIP_ORGANIZATION);
    assert_true(thing->is_custom);
    assert_false(thing->is_activity);
    /* Targets, and ownerid's "owner" relationship made bindable per target */
    assert_int_equal(email->attrs[1].n_targets, 2);
    assert_string_equal(email->attrs[1].targets[1], "team");
    const struct dv_lookup *lu = find_lookup(email, "ownerid", "systemuser");
    const struct dv_lookup *lt = find_lookup(email, "ownerid", "team");
    assert_non_null(lu);
    assert_non_null(lt);
    assert_string_equal(lu->nav_property, "ownerid");
    assert_string_equal(lu->target_set, "systemusers");
    assert_string_equal(lt->nav_property, "ownerid");
    assert_string_equal(lt->target_set, "teams");
    /* a polymorphic lookup whose relationships name each target keeps them as they are */
    assert_int_equal(email->n_lookups, 5); /* owner, account, contact, + systemuser, team */
    assert_string_equal(find_lookup(email, "regardingobjectid", "contact")->nav_property,
                        "regardingobjectid_contact_email");
    /* Virtual columns with FileType / ImageType */
    assert_string_equal(contact->attrs[0].type, "Image");
    assert_true(contact->attrs[0].is_primary_image);
    assert_string_equal(contact->attrs[1].type, "File");
    assert_false(contact->attrs[1].is_primary_image);
    dv_tables_free(t, n);
    dv_client_free(c);
}

/* Which tables a backup reads is decided from TableType: Virtual (external data, never read),
 * Elastic (rows in partitions); without TableType a DataProviderId marks a virtual table. */
static const char defs_types[] =
    "{\"value\":["
    "{\"LogicalName\":\"new_erporder\",\"EntitySetName\":\"new_erporders\",\"PrimaryIdAttribute\":\"new_erporderid\","
    "\"TableType\":\"Virtual\",\"DataProviderId\":\"c1919979-0021-4f11-a587-a8f904bdfdf9\"" NOREL "},"
    "{\"LogicalName\":\"new_reading\",\"EntitySetName\":\"new_readings\",\"PrimaryIdAttribute\":\"new_readingid\","
    "\"TableType\":\"Elastic\",\"DataProviderId\":null" NOREL "},"
    "{\"LogicalName\":\"old_virtual\",\"EntitySetName\":\"old_virtuals\",\"PrimaryIdAttribute\":\"old_virtualid\","
    "\"DataProviderId\":\"0a2c3e4f-1111-4222-8333-944455556666\"" NOREL "},"
    "{\"LogicalName\":\"account\",\"EntitySetName\":\"accounts\",\"PrimaryIdAttribute\":\"accountid\","
    "\"TableType\":\"Standard\",\"DataProviderId\":null" NOREL "}"
    "]}";

static void test_tables_types(void **state)
{
    const struct exch s[] = {{"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL, 200, NULL,
                              defs_types}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table *t = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_tables_list(c, &env, &t, &n, &err), 0);
    script_done();
    assert_int_equal(n, 4);
    const struct dv_table *account = &t[0], *erp = &t[1], *reading = &t[2], *old = &t[3];
    assert_string_equal(erp->logical_name, "new_erporder");
    assert_true(erp->is_virtual);
    assert_false(erp->is_elastic);
    assert_string_equal(erp->data_provider_id, "c1919979-0021-4f11-a587-a8f904bdfdf9");
    assert_true(reading->is_elastic);
    assert_false(reading->is_virtual);
    assert_null(reading->data_provider_id);
    assert_true(old->is_virtual);
    assert_false(account->is_virtual);
    assert_false(account->is_elastic);
    dv_tables_free(t, n);
    dv_client_free(c);
}

static void test_tables_fallback(void **state)
{
    const struct exch s[] = {
        {"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ALL, 400, NULL,
         "{\"error\":{\"code\":\"0x0\",\"message\":\"bad expand\"}}"},
        {"GET", API "EntityDefinitions?$select=" ENTITY_PROPS "&$expand=" DEFS_EXPAND_ATTRS, 200, NULL,
         "{\"value\":[{\"LogicalName\":\"contact\",\"EntitySetName\":\"contacts\","
         "\"PrimaryIdAttribute\":\"contactid\",\"Attributes\":[]}]}"},
        {"GET", API "EntityDefinitions(LogicalName='contact')/ManyToOneRelationships?$select=" M2O_PROPS, 200, NULL,
         "{\"value\":[{\"ReferencingAttribute\":\"parentcustomerid\",\"ReferencedEntity\":\"account\","
         "\"ReferencingEntityNavigationPropertyName\":\"parentcustomerid_account\"}]}"},
        {"GET", API "EntityDefinitions(LogicalName='contact')/ManyToManyRelationships?$select=" N2N_PROPS, 404, NULL,
         "{}"},
    };
    struct dv_client *c = client(s, 4);
    struct dv_env env = org_env();
    struct dv_table *t = NULL;
    size_t n = 0;
    struct dverr err = {0};
    assert_int_equal(dv_tables_list(c, &env, &t, &n, &err), 0);
    script_done();
    assert_int_equal(n, 1);
    assert_int_equal(t[0].n_lookups, 1);
    assert_null(t[0].lookups[0].target_set); /* account not in this list */
    assert_int_equal(t[0].n_many_to_many, 0);
    assert_non_null(strstr(t[0].schema_json, "\"ManyToOneRelationships\":[{"));
    dv_tables_free(t, n);
    dv_client_free(c);
}

/* ---- reads ---- */

struct collect {
    struct buf ids;
    struct buf deleted;
    struct buf revenue;
    int stop_after;
    int n;
};

static int on_record(void *ctx, const struct json_node *r)
{
    struct collect *c = ctx;
    const char *id = json_get_str(r, "accountid");
    buf_printf(&c->ids, "%s,", id ? id : "?");
    const struct json_node *rev = json_get(r, "revenue");
    if (rev && rev->type == JSON_NUMBER)
        buf_printf(&c->revenue, "%s,", rev->str);
    if (c->stop_after && ++c->n >= c->stop_after)
        return -EINTR;
    return 0;
}

static int on_deleted(void *ctx, const char *id)
{
    buf_printf(&((struct collect *)ctx)->deleted, "%s,", id);
    return 0;
}

static struct dv_table accounts(bool tracked)
{
    struct dv_table t = {0};
    t.logical_name = (char *)"account";
    t.entity_set = (char *)"accounts";
    t.primary_id = (char *)"accountid";
    t.change_tracking = tracked;
    return t;
}

static void collect_release(struct collect *c)
{
    buf_release(&c->ids);
    buf_release(&c->deleted);
    buf_release(&c->revenue);
}

static void test_read_full_tracked(void **state)
{
    const struct exch s[] = {
        {"GET", API "accounts", 200, NULL,
         "{\"@odata.context\":\"x\",\"value\":[{\"@odata.etag\":\"W/\\\"1\\\"\",\"accountid\":\"a1\","
         "\"revenue\":12345678901234.1234567890,\"big\":9007199254740993}],"
         "\"@odata.nextLink\":\"" API "accounts?$skiptoken=2\"}"},
        {"GET", API "accounts?$skiptoken=2", 429, "HTTP/1.1 429 x\r\nRetry-After: 1\r\n\r\n",
         "{\"error\":{\"code\":\"0x80072322\",\"message\":\"Number of requests exceeded\"}}"},
        {"GET", API "accounts?$skiptoken=2", 200, NULL,
         "{\"value\":[{\"accountid\":\"a2\",\"revenue\":1e400},{\"accountid\":\"a3\"}],"
         "\"@odata.nextLink\":\"" API "accounts?$skiptoken=3\"}"},
        {"GET", API "accounts?$skiptoken=3", 503, "HTTP/1.1 503 x\r\n\r\n", ""},
        {"GET", API "accounts?$skiptoken=3", 200, NULL,
         "{\"value\":[],\"@odata.deltaLink\":\"" API "accounts?$deltatoken=919042%2108%2f22\"}"},
    };
    struct dv_client *c = client(s, 5);
    struct dv_env env = org_env();
    struct dv_table t = accounts(true);
    struct collect col = {0};
    struct dv_read_cb cb = {on_record, on_deleted, &col};
    char *delta = NULL;
    struct dv_read_stats st;
    struct dverr err = {0};
    assert_int_equal(dv_read_table(c, &env, &t, NULL, &cb, &delta, &st, &err), 0);
    script_done();
    assert_string_equal(col.ids.data, "a1,a2,a3,");
    /* exact numbers, never through a double */
    assert_string_equal(col.revenue.data, "12345678901234.1234567890,1e400,");
    assert_string_equal(delta, API "accounts?$deltatoken=919042%2108%2f22");
    assert_int_equal(st.pages, 3);
    assert_int_equal(st.records, 3);
    assert_int_equal(st.deleted, 0);
    /* the Prefer header of a tracked full read, on every page */
    for (int i = 0; i < 5; i++) {
        assert_non_null(strstr(F.seen[i].headers, "odata.track-changes"));
        assert_non_null(strstr(F.seen[i].headers, "odata.maxpagesize=5000"));
        assert_non_null(strstr(F.seen[i].headers,
                               "odata.include-annotations=\"OData.Community.Display.V1.FormattedValue,"
                               "Microsoft.Dynamics.CRM.lookuplogicalname\""));
        assert_non_null(strstr(F.seen[i].headers, "OData-Version: 4.0"));
    }
    /* 429: not before Retry-After; 503 without it: a jittered wait of at most base (500 ms) */
    assert_true(F.seen[2].at - F.seen[1].at >= 1000);
    assert_true(F.seen[4].at - F.seen[3].at <= 700);
    struct dv_stats ds;
    dv_client_stats(c, &ds);
    assert_int_equal(ds.throttled, 1);
    assert_int_equal(ds.retries, 2);
    assert_int_equal(ds.requests, 6); /* 5 + the token request */
    free(delta);
    collect_release(&col);
    dv_client_free(c);
}

static void test_read_delta_and_untracked(void **state)
{
    const struct exch s[] = {
        {"GET", API "accounts?$deltatoken=1", 200, NULL,
         "{\"value\":[{\"accountid\":\"a9\",\"name\":\"x\"},"
         "{\"@odata.context\":\"" API "$metadata#accounts/$deletedEntity\",\"id\":\"d1\",\"reason\":\"deleted\"},"
         "{\"id\":\"d2\",\"reason\":\"deleted\"}],"
         "\"@odata.deltaLink\":\"" API "accounts?$deltatoken=2\"}"},
        {"GET", API "accounts", 200, NULL,
         "{\"value\":[{\"accountid\":\"u1\"}],\"@odata.nextLink\":\"" API "accounts?p=2\"}"},
        {"GET", API "accounts?p=2", 200, NULL, "{\"value\":[{\"accountid\":\"u2\"}]}"},
    };
    struct dv_client *c = client(s, 3);
    struct dv_env env = org_env();
    struct dv_table t = accounts(true);
    struct collect col = {0};
    struct dv_read_cb cb = {on_record, on_deleted, &col};
    char *delta = NULL;
    struct dv_read_stats st;
    struct dverr err = {0};
    assert_int_equal(dv_read_table(c, &env, &t, API "accounts?$deltatoken=1", &cb, &delta, &st,
                                   &err), 0);
    assert_string_equal(col.ids.data, "a9,");
    assert_string_equal(col.deleted.data, "d1,d2,");
    assert_int_equal(st.deleted, 2);
    assert_string_equal(delta, API "accounts?$deltatoken=2");
    assert_null(strstr(F.seen[0].headers, "odata.track-changes"));
    assert_non_null(strstr(F.seen[0].headers, "odata.maxpagesize=5000"));
    free(delta);

    /* untracked: no track-changes, read to the last page, no delta link */
    struct dv_table u = accounts(false);
    assert_int_equal(dv_read_table(c, &env, &u, NULL, &cb, &delta, &st, &err), 0);
    script_done();
    assert_null(delta);
    assert_string_equal(col.ids.data, "a9,u1,u2,");
    assert_null(strstr(F.seen[1].headers, "odata.track-changes"));
    collect_release(&col);
    dv_client_free(c);
}

static void test_retry_gets_fresh_token(void **state)
{
    /* A 2 s token and a 2 s Retry-After: the retry must not reuse the old token. */
    const struct exch s[] = {
        {"GET", API "accounts", 429, "HTTP/1.1 429 x\r\nRetry-After: 2\r\n\r\n", "{}"},
        {"GET", API "accounts", 200, NULL, "{\"value\":[]}"},
    };
    struct dv_client *c = client(s, 2);
    F.token_life = 2;
    struct dv_env env = org_env();
    struct dv_table t = accounts(false);
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, NULL, NULL, NULL), 0);
    script_done();
    assert_string_equal(F.seen[0].bearer, "tok-1");
    assert_string_equal(F.seen[1].bearer, "tok-2");
    dv_client_free(c);
}

static void test_read_expired_token(void **state)
{
    const struct exch s[] = {
        {"GET", API "accounts?$deltatoken=old", 400, NULL,
         "{\"error\":{\"code\":\"0x80044352\",\"message\":\"Version stamp associated with the client "
         "has expired. Please perform a full sync.\"}}"},
    };
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table t = accounts(true);
    struct collect col = {0};
    struct dv_read_cb cb = {on_record, on_deleted, &col};
    char *delta = (char *)"unchanged";
    struct dverr err = {0};
    assert_int_equal(dv_read_table(c, &env, &t, API "accounts?$deltatoken=old", &cb, &delta, NULL,
                                   &err), -ESTALE);
    script_done();
    assert_null(delta);
    assert_non_null(strstr(dverr_msg(&err), "full read"));
    dv_client_free(c);
}

static void test_read_refuses_foreign_links(void **state)
{
    const char *bad[] = {
        "https://evil.test/org/contoso-prod/api/data/v9.2/accounts?p=2",  /* other host */
        "http://prod.test/org/contoso-prod/api/data/v9.2/accounts?p=2",   /* other scheme */
        "https://prod.test:8443/org/contoso-prod/api/data/v9.2/accounts", /* other port */
        "https://prod.test/org/contoso-dev/api/data/v9.2/accounts?p=2",   /* other org */
        "https://prod.test/org/contoso-prod/../contoso-dev/api/data/v9.2/x",
        "file:///etc/passwd",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{\"value\":[{\"accountid\":\"a1\"}],\"@odata.nextLink\":\"%s\"}",
                 bad[i]);
        const struct exch s[] = {{"GET", API "accounts", 200, NULL, body}};
        struct dv_client *c = client(s, 1);
        struct dv_env env = org_env();
        struct dv_table t = accounts(false);
        struct collect col = {0};
        struct dv_read_cb cb = {on_record, on_deleted, &col};
        struct dverr err = {0};
        assert_int_equal(dv_read_table(c, &env, &t, NULL, &cb, NULL, NULL, &err), -EPERM);
        assert_int_equal(F.n_seen, 1); /* the bearer never went to the foreign link */
        collect_release(&col);
        dv_client_free(c);
    }
    /* a foreign deltaLink on the last page, and a stored delta link elsewhere */
    const struct exch s[] = {{"GET", API "accounts", 200, NULL,
                              "{\"value\":[],\"@odata.deltaLink\":\"https://evil.test/x\"}"}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table t = accounts(true);
    char *delta = NULL;
    struct dverr err = {0};
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, &delta, NULL, &err), -EPERM);
    assert_null(delta);
    assert_int_equal(dv_read_table(c, &env, &t, "https://evil.test/x?$deltatoken=1", NULL, &delta,
                                   NULL, &err), -EPERM);
    assert_int_equal(F.n_seen, 1);
    /* a table whose entity set is not a plain name is not read at all */
    struct dv_table hostile = accounts(false);
    hostile.entity_set = (char *)"../contoso-dev/api/data/v9.2/accounts";
    assert_int_equal(dv_read_table(c, &env, &hostile, NULL, NULL, NULL, NULL, &err), -EINVAL);
    assert_int_equal(F.n_seen, 1);
    dv_client_free(c);
}

static void test_read_malformed(void **state)
{
    const char *pages[] = {
        "{\"value\":[{\"accountid\":\"a1\"}",          /* truncated */
        "{\"values\":[]}",                              /* no value array */
        "{\"value\":[1,2]}",                            /* rows that are not objects */
        "{\"value\":[{\"@odata.context\":\"#accounts/$deletedEntity\"}]}", /* deleted, no id */
        "",                                             /* empty */
        "{\"value\":[],\"@odata.nextLink\":\"" API "accounts\"}", /* loops onto itself */
    };
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        /* a body that does not parse is asked for again DV_BAD_BODY_RETRIES times */
        bool unparsable = i == 0 || i == 4;
        struct exch s[1 + DV_BAD_BODY_RETRIES];
        for (size_t k = 0; k < 1 + DV_BAD_BODY_RETRIES; k++)
            s[k] = (struct exch){"GET", API "accounts", 200, NULL, pages[i]};
        struct dv_client *c = client(s, unparsable ? 1 + DV_BAD_BODY_RETRIES : 1);
        struct dv_env env = org_env();
        struct dv_table t = accounts(false);
        struct collect col = {0};
        struct dv_read_cb cb = {on_record, on_deleted, &col};
        struct dverr err = {0};
        int rc = dv_read_table(c, &env, &t, NULL, &cb, NULL, NULL, &err);
        if (rc != -EPROTO)
            fail_msg("page %zu: rc %d (%s)", i, rc, dverr_msg(&err));
        collect_release(&col);
        dv_client_free(c);
    }
    /* a truncated answer, then the whole page: the read completes with the page's record */
    {
        const struct exch s[] = {{"GET", API "accounts", 200, NULL, pages[0]},
                                 {"GET", API "accounts", 200, NULL,
                                  "{\"value\":[{\"accountid\":\"a1\"}]}"}};
        struct dv_client *c = client(s, 2);
        struct dv_env env = org_env();
        struct dv_table t = accounts(false);
        struct collect col = {0};
        struct dv_read_cb cb = {on_record, on_deleted, &col};
        struct dverr err = {0};
        assert_int_equal(dv_read_table(c, &env, &t, NULL, &cb, NULL, NULL, &err), 0);
        assert_string_equal(col.ids.data, "a1,");
        collect_release(&col);
        dv_client_free(c);
    }
    /* the callback's own error stops the read and comes back as is */
    const struct exch s[] = {{"GET", API "accounts", 200, NULL,
                              "{\"value\":[{\"accountid\":\"a\"},{\"accountid\":\"b\"}],"
                              "\"@odata.nextLink\":\"" API "accounts?p=2\"}"}};
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table t = accounts(false);
    struct collect col = {.stop_after = 1};
    struct dv_read_cb cb = {on_record, on_deleted, &col};
    assert_int_equal(dv_read_table(c, &env, &t, NULL, &cb, NULL, NULL, NULL), -EINTR);
    assert_string_equal(col.ids.data, "a,");
    collect_release(&col);
    dv_client_free(c);
}

static void test_401_refresh_and_token_errors(void **state)
{
    const struct exch s[] = {
        {"GET", API "accounts", 401, NULL, "{\"error\":{\"code\":\"ExpiredAuthTicket\"}}"},
        {"GET", API "accounts", 200, NULL, "{\"value\":[]}"},
        {"GET", API "accounts", 403, NULL,
         "{\"error\":{\"code\":\"0x80040220\",\"message\":\"Principal user is missing prvReadAccount\"}}"},
    };
    struct dv_client *c = client(s, 3);
    struct dv_env env = org_env();
    struct dv_table t = accounts(false);
    struct dverr err = {0};
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, NULL, NULL, &err), 0);
    assert_int_equal(F.tokens, 2);
    assert_string_equal(F.seen[0].bearer, "tok-1");
    assert_string_equal(F.seen[1].bearer, "tok-2");
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, NULL, NULL, &err), -EACCES);
    assert_non_null(strstr(dverr_msg(&err), "prvReadAccount"));
    script_done();
    dv_client_free(c);

    /* The identity provider refuses: -EACCES, its code in the message, never the secret. */
    c = client(NULL, 0);
    F.token_status = 401;
    F.token_error = "{\"error\":\"invalid_client\",\"error_description\":\"AADSTS7000215: Invalid "
                    "client secret provided.\"}";
    dverr_clear(&err);
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, NULL, NULL, &err), -EACCES);
    assert_non_null(strstr(dverr_msg(&err), "invalid_client"));
    assert_non_null(strstr(dverr_msg(&err), "AADSTS7000215"));
    assert_null(strstr(dverr_msg(&err), SECRET));
    assert_non_null(strstr(F.token_body, "client_secret=" SECRET));
    assert_int_equal(F.n_seen, 0);
    dv_client_free(c);

    /* A secret file others can read is refused before anything is sent. */
    chmod(secret_path, 0644);
    struct http_transport *tr = calloc(1, sizeof(*tr));
    tr->ops = &fake_ops;
    tr->impl = &F;
    dverr_clear(&err);
    assert_int_equal(dv_client_new_with_transport(&cfg, tr, &c, &err), -EPERM);
    assert_null(c);
    chmod(secret_path, 0600);
}

/* ---- $batch ---- */

static void test_batch_parser(void **state)
{
    const char *ct = "multipart/mixed; boundary=batchresponse_1";
    const char body[] =
        "--batchresponse_1\r\n"
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        "HTTP/1.1 204 No Content\r\nOData-Version: 4.0\r\n\r\n\r\n"
        "--batchresponse_1\r\n"
        "Content-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-ID: 2\r\n\r\n"
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"a\":1}\r\n"
        "--changesetresponse_2\r\nContent-Type: application/http\r\nContent-ID: 3\r\n\r\n"
        "HTTP/1.1 400 Bad Request\r\n\r\n{\"error\":{\"message\":\"no\"}}\r\n"
        "--changesetresponse_2--\r\n"
        "--batchresponse_1--\r\n";
    struct dv_batch_part *p = NULL;
    size_t n = 0;
    assert_int_equal(dv_batch_parse_response(ct, body, strlen(body), &p, &n), 0);
    assert_int_equal(n, 3);
    assert_int_equal(p[0].status, 204);
    assert_null(p[0].body);
    assert_int_equal(p[1].status, 201);
    assert_int_equal(p[1].content_id, 2);
    assert_string_equal(p[1].body, "{\"a\":1}");
    assert_int_equal(p[2].status, 400);
    assert_string_equal(p[2].body, "{\"error\":{\"message\":\"no\"}}");
    dv_batch_parts_free(p, n);

    /* LF-only line ends and a quoted boundary */
    const char lf[] = "--b\nContent-Type: application/http\n\nHTTP/1.1 200 OK\n\n{}\n--b--\n";
    assert_int_equal(dv_batch_parse_response("multipart/mixed; boundary=\"b\"", lf, strlen(lf), &p,
                                             &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].body, "{}");
    dv_batch_parts_free(p, n);

    /* malformed: truncated, no boundary, not multipart, bad status line, nested too deep */
    const char trunc[] = "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}";
    assert_int_equal(dv_batch_parse_response("multipart/mixed; boundary=b", trunc, strlen(trunc), &p,
                                             &n), -EPROTO);
    assert_int_equal(dv_batch_parse_response("multipart/mixed", lf, strlen(lf), &p, &n), -EPROTO);
    assert_int_equal(dv_batch_parse_response("application/json", lf, strlen(lf), &p, &n), -EPROTO);
    const char bad[] = "--b\nContent-Type: application/http\n\nHTTP/1.1 xx OK\n\n--b--\n";
    assert_int_equal(dv_batch_parse_response("multipart/mixed; boundary=b", bad, strlen(bad), &p,
                                             &n), -EPROTO);
    const char bad2[] = "--b\nContent-Type: application/http\n\nHTTP/1.1 042 OK\n\n--b--\n";
    assert_int_equal(dv_batch_parse_response("multipart/mixed; boundary=b", bad2, strlen(bad2),
                                             &p, &n), -EPROTO); /* found by fuzz_batch */
    struct buf deep = BUF_INIT;
    for (int i = 0; i < 6; i++)
        buf_printf(&deep, "--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n", i, i + 1);
    assert_int_equal(dv_batch_parse_response("multipart/mixed; boundary=b0", deep.data, deep.len,
                                             &p, &n), -EPROTO);
    buf_release(&deep);
}

static void test_batch_roundtrip(void **state)
{
    /* A 200 batch whose second item failed; continue-on-error was asked for. */
    const struct exch s[] = {
        {"POST", API "$batch", 200,
         "HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=batchresponse_9\r\n\r\n",
         "--batchresponse_9\r\nContent-Type: application/http\r\n\r\n"
         "HTTP/1.1 204 No Content\r\n\r\n\r\n"
         "--batchresponse_9\r\nContent-Type: application/http\r\n\r\n"
         "HTTP/1.1 412 Precondition Failed\r\nContent-Type: application/json\r\n\r\n"
         "{\"error\":{\"code\":\"0x80040237\",\"message\":\"A record with matching key values already exists.\"}}\r\n"
         "--batchresponse_9\r\nContent-Type: application/http\r\n\r\n"
         "HTTP/1.1 204 No Content\r\n\r\n\r\n"
         "--batchresponse_9--\r\n"},
        /* stop at the first error: the service answered two of three */
        {"POST", API "$batch", 400,
         "HTTP/1.1 400 Bad\r\nContent-Type: multipart/mixed; boundary=r\r\n\r\n",
         "--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n"
         "--r\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\n{}\r\n--r--\r\n"},
        /* an error that is not multipart */
        {"POST", API "$batch", 413, NULL, "{\"error\":{\"code\":\"\",\"message\":\"too large\"}}"},
    };
    struct dv_client *c = client(s, 3);
    struct dv_env env = org_env();
    struct dv_batch_item items[3] = {
        {.method = "PATCH", .path = "accounts(00000000-0000-0000-0000-00000000000a)",
         .body = "{\"name\":\"A\"}"},
        {.method = "PATCH", .path = "accounts(00000000-0000-0000-0000-00000000000b)",
         .body = "{\"name\":\"B\"}", .if_none_match = "*"},
        {.method = "DELETE", .path = "accounts(00000000-0000-0000-0000-00000000000c)",
         .if_match = "*"},
    };
    struct dverr err = {0};
    assert_int_equal(dv_batch(c, &env, items, 3, true, NULL, &err), 0);
    assert_int_equal(items[0].status, 204);
    assert_int_equal(items[1].status, 412);
    assert_non_null(strstr(items[1].response, "0x80040237"));
    assert_int_equal(items[2].status, 204);
    /* the request */
    const struct seen *r = &F.seen[0];
    assert_non_null(strstr(r->headers, "Prefer: odata.continue-on-error"));
    const char *ct = strstr(r->headers, "Content-Type: multipart/mixed; boundary=batch_");
    assert_non_null(ct);
    char boundary[64];
    assert_int_equal(sscanf(ct, "Content-Type: multipart/mixed; boundary=%63s", boundary), 1);
    char delim[80];
    snprintf(delim, sizeof(delim), "--%s\r\n", boundary);
    int parts = 0;
    for (const char *p = r->body; (p = strstr(p, delim)); p++)
        parts++;
    assert_int_equal(parts, 3);
    snprintf(delim, sizeof(delim), "--%s--\r\n", boundary);
    assert_non_null(strstr(r->body, delim));
    assert_non_null(strstr(r->body, "PATCH " API "accounts(00000000-0000-0000-0000-00000000000a) "
                                    "HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n"
                                    "{\"name\":\"A\"}\r\n"));
    assert_non_null(strstr(r->body, "If-None-Match: *\r\n"));
    assert_non_null(strstr(r->body, "DELETE " API "accounts(00000000-0000-0000-0000-00000000000c) "
                                    "HTTP/1.1\r\nIf-Match: *\r\n\r\n"));
    assert_non_null(strstr(r->body, "Content-ID: 3\r\n"));
    dv_batch_items_release(items, 3);

    assert_int_equal(dv_batch(c, &env, items, 3, false, NULL, &err), 0);
    assert_null(strstr(F.seen[1].headers, "continue-on-error"));
    assert_int_equal(items[0].status, 204);
    assert_int_equal(items[1].status, 404);
    assert_int_equal(items[2].status, 0); /* not executed */
    dv_batch_items_release(items, 3);

    assert_int_equal(dv_batch(c, &env, items, 3, false, NULL, &err), -EIO);
    assert_non_null(strstr(dverr_msg(&err), "too large"));
    assert_int_equal(items[0].status, 0);
    script_done();

    /* limits and bad items, refused before sending */
    static struct dv_batch_item many[1001];
    for (int i = 0; i < 1001; i++)
        many[i] = (struct dv_batch_item){.method = "GET", .path = "accounts"};
    assert_int_equal(dv_batch(c, &env, many, 1001, false, NULL, NULL), -E2BIG);
    struct dv_batch_item evil = {.method = "GET", .path = "accounts HTTP/1.1\r\nX: y"};
    assert_int_equal(dv_batch(c, &env, &evil, 1, false, NULL, NULL), -EINVAL);
    assert_int_equal(F.n_seen, 3);
    dv_client_free(c);
}


/* Bypass headers: on the outer $batch request and on each part; refused when they would split
 * a line. */
static void test_batch_headers(void **state)
{
    const struct exch s[] = {
        {"POST", API "$batch", 200,
         "HTTP/1.1 200 OK\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n",
         "--b\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n\r\n--b--\r\n"},
    };
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    const char *bypass[] = {"MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync",
                            "MSCRM.SuppressCallbackRegistrationExpanderJob: true", NULL};
    struct dv_batch_item item = {.method = "PATCH",
                                 .path = "accounts(00000000-0000-0000-0000-00000000000a)",
                                 .body = "{}", .headers = bypass};
    struct dverr err = {0};
    assert_int_equal(dv_batch(c, &env, &item, 1, true, bypass, &err), 0);
    assert_int_equal(item.status, 204);
    assert_non_null(strstr(F.seen[0].headers,
                           "MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync\n"));
    assert_non_null(strstr(F.seen[0].headers, "MSCRM.SuppressCallbackRegistrationExpanderJob: true\n"));
    assert_non_null(strstr(F.seen[0].body,
                           "HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n"
                           "MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync\r\n"
                           "MSCRM.SuppressCallbackRegistrationExpanderJob: true\r\n\r\n{}\r\n"));
    dv_batch_items_release(&item, 1);
    const char *evil[] = {"X: a\r\nY: b", NULL};
    item.headers = evil;
    assert_int_equal(dv_batch(c, &env, &item, 1, true, NULL, NULL), -EINVAL);
    const char *nocolon[] = {"no colon", NULL};
    item.headers = nocolon;
    assert_int_equal(dv_batch(c, &env, &item, 1, true, NULL, NULL), -EINVAL);
    script_done();
    dv_client_free(c);
}

/* ---- files, capacity, admin mode, single requests ---- */

struct sink {
    struct buf data;
};

static int on_data(void *ctx, const void *d, size_t len)
{
    return buf_add(&((struct sink *)ctx)->data, d, len);
}

static void test_file_download(void **state)
{
    static char chunk1[4 << 20];
    memset(chunk1, 'A', sizeof(chunk1) - 1);
    chunk1[sizeof(chunk1) - 1] = '\0'; /* 4 MiB - 1 bytes of A: the fake sends it as a string */
    const struct exch s[] = {
        {"GET", API "new_projects(00000000-0000-0000-0000-000000000001)/new_document/$value", 206,
         "HTTP/1.1 206 Partial\r\nx-ms-file-size: 4194309\r\nx-ms-file-name: plan v2 é.pdf\r\n\r\n",
         chunk1},
        {"GET", API "new_projects(00000000-0000-0000-0000-000000000001)/new_document/$value", 206,
         "HTTP/1.1 206 Partial\r\nx-ms-file-size: 4194309\r\n\r\n", "BBBBBB"},
        {"GET", API "new_projects(00000000-0000-0000-0000-000000000002)/new_document/$value", 404,
         NULL, "{}"},
    };
    struct dv_client *c = client(s, 3);
    struct dv_env env = org_env();
    struct sink k = {BUF_INIT};
    char *name = NULL;
    struct dverr err = {0};
    assert_int_equal(dv_file_download(c, &env, "new_projects",
                                      "00000000-0000-0000-0000-000000000001", "new_document",
                                      false, on_data, &k, &name, &err), 0);
    assert_int_equal(k.data.len, 4194309);
    assert_int_equal(k.data.data[4194302], 'A');
    assert_int_equal(k.data.data[4194303], 'B');
    assert_string_equal(name, "plan v2 é.pdf");
    assert_non_null(strstr(F.seen[0].headers, "Range: bytes=0-4194303"));
    assert_non_null(strstr(F.seen[1].headers, "Range: bytes=4194303-8388606"));
    free(name);
    assert_int_equal(dv_file_download(c, &env, "new_projects",
                                      "00000000-0000-0000-0000-000000000002", "new_document",
                                      false, on_data, &k, &name, &err), -ENOENT);
    assert_null(name);
    /* ids and names are checked before anything is sent */
    assert_int_equal(dv_file_download(c, &env, "new_projects", "../x", "new_document", false,
                                      on_data, &k, NULL, NULL), -EINVAL);
    script_done();
    buf_release(&k.data);
    dv_client_free(c);
}


/* Images: full size asked for; an upload carries the caller's extra headers. */
static void test_image_full_size_and_upload_headers(void **state)
{
    const struct exch s[] = {
        {"GET", API "contacts(00000000-0000-0000-0000-000000000001)/entityimage/$value?size=full",
         200, "HTTP/1.1 200 OK\r\n\r\n", "FULLIMAGE"},
        {"PATCH", API "contacts(00000000-0000-0000-0000-000000000001)/entityimage", 204, NULL,
         NULL},
    };
    struct dv_client *c = client(s, 2);
    struct dv_env env = org_env();
    struct sink k = {BUF_INIT};
    struct dverr err = {0};
    assert_int_equal(dv_file_download(c, &env, "contacts", "00000000-0000-0000-0000-000000000001",
                                      "entityimage", true, on_data, &k, NULL, &err), 0);
    assert_int_equal(k.data.len, 9);
    const char *bypass[] = {"MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync", NULL};
    assert_int_equal(dv_file_upload(c, &env, "contacts", "00000000-0000-0000-0000-000000000001",
                                    "entityimage", "entityimage", "FULLIMAGE", 9, bypass, &err), 0);
    assert_non_null(strstr(F.seen[1].headers, "x-ms-file-name: entityimage\n"));
    assert_non_null(strstr(F.seen[1].headers,
                           "MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync\n"));
    script_done();
    buf_release(&k.data);
    dv_client_free(c);
}

/* WhoAmI, RetrieveUserPrivileges, and a read of some columns. */
static int count_rows(void *ctx, const struct json_node *rec)
{
    (*(int *)ctx)++;
    return json_get_str(rec, "isocurrencycode") ? 0 : -EPROTO;
}

static void test_whoami_privileges_select(void **state)
{
    const struct exch s[] = {
        {"GET", API "WhoAmI", 200, NULL,
         "{\"@odata.context\":\"x\",\"BusinessUnitId\":\"00000000-0000-0000-0000-0000000000b1\","
         "\"UserId\":\"00000000-0000-0000-0000-0000000000a1\","
         "\"OrganizationId\":\"00000000-0000-0000-0000-0000000000c1\"}"},
        {"GET", API "systemusers(00000000-0000-0000-0000-0000000000a1)/"
                "Microsoft.Dynamics.CRM.RetrieveUserPrivileges()", 200, NULL,
         "{\"RolePrivileges\":[{\"Depth\":\"Global\",\"PrivilegeName\":\"prvReadAccount\"},"
         "{\"Depth\":\"Global\",\"PrivilegeName\":\"prvBypassCustomBusinessLogic\"}]}"},
        {"GET", API "systemusers(00000000-0000-0000-0000-0000000000a1)/"
                "Microsoft.Dynamics.CRM.RetrieveUserPrivileges()", 200, NULL,
         "{\"RolePrivileges\":[{\"Depth\":\"Global\",\"PrivilegeName\":\"prvReadAccount\"}]}"},
        {"GET", API "transactioncurrencies?$select=transactioncurrencyid,isocurrencycode", 200,
         NULL,
         "{\"value\":[{\"transactioncurrencyid\":\"1\",\"isocurrencycode\":\"USD\"}],"
         "\"@odata.nextLink\":\"" API "transactioncurrencies?$select=transactioncurrencyid,isocurrencycode&$skiptoken=2\"}"},
        {"GET", API "transactioncurrencies?$select=transactioncurrencyid,isocurrencycode&$skiptoken=2",
         200, NULL, "{\"value\":[{\"transactioncurrencyid\":\"2\",\"isocurrencycode\":\"EUR\"}]}"},
    };
    struct dv_client *c = client(s, 5);
    struct dv_env env = org_env();
    struct dverr err = {0};
    struct dv_whoami me;
    assert_int_equal(dv_whoami(c, &env, &me, &err), 0);
    assert_string_equal(me.user_id, "00000000-0000-0000-0000-0000000000a1");
    assert_string_equal(me.business_unit_id, "00000000-0000-0000-0000-0000000000b1");
    bool has = false;
    assert_int_equal(dv_user_has_privilege(c, &env, me.user_id, "prvBypassCustomBusinessLogic",
                                           &has, &err), 0);
    assert_true(has);
    assert_int_equal(dv_user_has_privilege(c, &env, me.user_id, "prvBypassCustomBusinessLogic",
                                           &has, &err), 0);
    assert_false(has);
    assert_int_equal(dv_user_has_privilege(c, &env, "../x", "p", &has, NULL), -EINVAL);
    int rows = 0;
    struct dv_read_cb cb = {count_rows, NULL, &rows};
    assert_int_equal(dv_read_select(c, &env, "transactioncurrencies",
                                    "transactioncurrencyid,isocurrencycode", &cb, &err), 0);
    assert_int_equal(rows, 2);
    assert_null(strstr(F.seen[3].headers, "track-changes"));
    assert_int_equal(dv_read_select(c, &env, "transactioncurrencies", "a b", &cb, NULL), -EINVAL);
    script_done();
    dv_client_free(c);
}

static void test_admin_writes_and_requests(void **state)
{
    const struct exch s[] = {
        {"GET", ADMIN "/providers/Microsoft.BusinessAppPlatform/tenants/t-1/capacity?*", 200, NULL,
         "{\"tenantId\":\"t-1\",\"tenantCapacities\":[{\"capacityType\":\"File\",\"maxCapacity\":1},"
         "{\"capacityType\":\"Database\",\"actualConsumption\":900.5,\"ratedConsumption\":1000.25,"
         "\"maxCapacity\":5120,\"capacityUnits\":\"MB\",\"status\":\"Within\"}]}"},
        {"PATCH", ADMIN "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/"
                  "00000000-0000-0000-0000-000000000001?*", 200, NULL, "{}"},
        {"PATCH", API "accounts(00000000-0000-0000-0000-00000000000a)", 204, NULL, NULL},
        {"POST", API "accounts", 412, NULL, "{\"error\":{\"code\":\"0x80040237\"}}"},
        {"PATCH", API "new_projects(00000000-0000-0000-0000-000000000001)/new_document", 204,
         NULL, NULL},
    };
    struct dv_client *c = client(s, 5);
    struct dv_env env = org_env();
    struct dverr err = {0};
    int64_t free_mb = 0;
    assert_int_equal(dv_tenant_free_capacity_mb(c, "t-1", &free_mb, &err), 0);
    assert_int_equal(free_mb, 4119);
    assert_int_equal(dv_env_set_runtime_state(c, &env, "AdminMode", &err), 0);
    assert_string_equal(F.seen[1].body, "{\"properties\":{\"states\":{\"runtime\":{\"id\":\"AdminMode\"}}}}");
    assert_int_equal(dv_env_set_runtime_state(c, &env, "Sideways", NULL), -EINVAL);

    struct dv_response r;
    const char *extra[] = {"If-Match: *", NULL};
    assert_int_equal(dv_request(c, &env, "PATCH", "accounts(00000000-0000-0000-0000-00000000000a)",
                                "{\"name\":\"x\"}", extra, &r, &err), 0);
    assert_int_equal(r.status, 204);
    assert_non_null(strstr(F.seen[2].headers, "If-Match: *"));
    assert_non_null(strstr(F.seen[2].headers, "Content-Type: application/json"));
    buf_release(&r.body);
    assert_int_equal(dv_request(c, &env, "POST", "accounts", "{}", NULL, &r, &err), 0);
    assert_int_equal(r.status, 412); /* an HTTP error is an answer here */
    assert_non_null(strstr(r.body.data, "0x80040237"));
    buf_release(&r.body);
    assert_int_equal(dv_request(c, &env, "GET", "https://evil.test/x", NULL, NULL, &r, NULL),
                     -EINVAL);
    assert_int_equal(dv_request(c, &env, "GET", "../../contoso-dev/api/data/v9.2/accounts", NULL,
                                NULL, &r, NULL), -EINVAL);
    assert_int_equal(dv_file_upload(c, &env, "new_projects", "00000000-0000-0000-0000-000000000001",
                                    "new_document", "a.txt", "hello", 5, NULL, &err), 0);
    assert_non_null(strstr(F.seen[4].headers, "x-ms-file-name: a.txt"));
    assert_string_equal(F.seen[4].body, "hello");
    assert_int_equal(dv_file_upload(c, &env, "new_projects", "00000000-0000-0000-0000-000000000001",
                                    "new_document", "a\r\nb", "x", 1, NULL, NULL), -EINVAL);
    script_done();
    dv_client_free(c);
}

static void *cancel_later(void *p)
{
    usleep(200000);
    dv_client_cancel(p);
    return NULL;
}

static void test_cancel(void **state)
{
    const struct exch s[] = {
        {"GET", API "accounts", 429, "HTTP/1.1 429 x\r\nRetry-After: 30\r\n\r\n", "{}"},
    };
    struct dv_client *c = client(s, 1);
    struct dv_env env = org_env();
    struct dv_table t = accounts(false);
    struct dverr err = {0};
    pthread_t th;
    pthread_create(&th, NULL, cancel_later, c);
    int64_t t0 = now_ms();
    assert_int_equal(dv_read_table(c, &env, &t, NULL, NULL, NULL, NULL, &err), -ECANCELED);
    assert_true(now_ms() - t0 < 1000);
    pthread_join(th, NULL);
    script_done();
    dv_client_free(c);
}

/* ---- concurrency cap ---- */

static atomic_int conc_now, conc_peak, conc_total;

static int conc_perform(void *impl, const struct http_request *req, struct http_response *resp,
                        struct dverr *err)
{
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    if (strcmp(req->url, TOKEN_URL) == 0) {
        resp->status = 200;
        buf_addstr(&resp->body, "{\"access_token\":\"t\",\"expires_in\":3600}");
        return 0;
    }
    int now = atomic_fetch_add(&conc_now, 1) + 1;
    int peak = atomic_load(&conc_peak);
    while (now > peak && !atomic_compare_exchange_weak(&conc_peak, &peak, now))
        ;
    usleep(20000);
    atomic_fetch_sub(&conc_now, 1);
    atomic_fetch_add(&conc_total, 1);
    resp->status = 204;
    return 0;
}

static const struct http_transport_ops conc_ops = {conc_perform, fake_free};

struct conc_arg {
    struct dv_client *c;
    struct dv_env env;
    int ok;
};

static void *conc_worker(void *p)
{
    struct conc_arg *a = p;
    for (int i = 0; i < 5; i++) {
        struct dv_response r;
        if (dv_request(a->c, &a->env, "GET", "accounts", NULL, NULL, &r, NULL) == 0 &&
            r.status == 204)
            a->ok++;
        buf_release(&r.body);
    }
    return NULL;
}

static void test_concurrency_cap(void **state)
{
    struct config cc = cfg;
    cc.max_concurrency = 2;
    struct http_transport *t = calloc(1, sizeof(*t));
    t->ops = &conc_ops;
    struct dv_client *c = NULL;
    assert_int_equal(dv_client_new_with_transport(&cc, t, &c, NULL), 0);
    pthread_t th[8];
    struct conc_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (struct conc_arg){c, org_env(), 0};
        pthread_create(&th[i], NULL, conc_worker, &a[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].ok, 5);
    }
    assert_int_equal(atomic_load(&conc_total), 40);
    assert_int_equal(atomic_load(&conc_peak), 2); /* reached, never exceeded */
    dv_client_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_list),
        cmocka_unit_test(test_env_from_json),
        cmocka_unit_test(test_env_nextlink_elsewhere),
        cmocka_unit_test(test_admin_resource),
        cmocka_unit_test(test_tables_expanded),
        cmocka_unit_test(test_tables_fallback),
        cmocka_unit_test(test_table_from_schema),
        cmocka_unit_test(test_table_get_owner_image),
        cmocka_unit_test(test_metadata_changes),
        cmocka_unit_test(test_tables_real_shapes),
        cmocka_unit_test(test_tables_types),
        cmocka_unit_test(test_read_full_tracked),
        cmocka_unit_test(test_read_delta_and_untracked),
        cmocka_unit_test(test_read_expired_token),
        cmocka_unit_test(test_retry_gets_fresh_token),
        cmocka_unit_test(test_read_refuses_foreign_links),
        cmocka_unit_test(test_read_malformed),
        cmocka_unit_test(test_401_refresh_and_token_errors),
        cmocka_unit_test(test_batch_parser),
        cmocka_unit_test(test_batch_roundtrip),
        cmocka_unit_test(test_batch_headers),
        cmocka_unit_test(test_file_download),
        cmocka_unit_test(test_image_full_size_and_upload_headers),
        cmocka_unit_test(test_whoami_privileges_select),
        cmocka_unit_test(test_admin_writes_and_requests),
        cmocka_unit_test(test_concurrency_cap),
        cmocka_unit_test(test_cancel),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    release_seen();
    return rc;
}
