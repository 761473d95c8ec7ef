/* admin: the identity and admin surfaces of dvsim.
 *
 * Token endpoint POST /<tenant>/oauth2/v2.0/token (client credentials, form body): answers in the
 * Entra ID shapes ({"token_type","expires_in","access_token"} or {"error","error_description",
 * "error_codes",...}). Tokens are stateless: "dvs1.<hex resource>.<expiry>.<mac>" where mac is
 * SHA-256 over a per-process key and the claims, so a token names its resource ("" = admin API,
 * "/org/<uniqueName>" = one org) and cannot be forged or moved to another resource.
 *
 * BAP routes (api-version accepted, not checked):
 *   GET   /providers/Microsoft.BusinessAppPlatform/scopes/admin/environments
 *   GET   /providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/{id|uniqueName}
 *   PATCH same, {"properties":{"states":{"runtime":{"id":..}},"environmentSku":..}}
 *   GET   /providers/Microsoft.BusinessAppPlatform/tenants/{tenantId}/capacity
 * Environment state changes persist in the store (envstate). Thread-safe (state in SQLite). */
#include "tools/dvsim/dvsim.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void dvsim_token_fingerprint(const char *token, char out[17])
{
    char hex[65];
    sha256_hex(token, strlen(token), hex);
    memcpy(out, hex, 16);
    out[16] = '\0';
}

static void token_mac(struct dvsim *d, const char *res_hex, long long exp, char out[33])
{
    struct buf b = BUF_INIT;
    char hex[65];
    buf_printf(&b, "%s|%s|%lld", d->token_key, res_hex, exp);
    sha256_hex(b.data, b.len, hex);
    buf_release(&b);
    memcpy(out, hex, 32);
    out[32] = '\0';
}

int dvsim_token_issue(struct dvsim *d, const char *resource, int64_t expires_at, struct buf *out)
{
    struct buf hx = BUF_INIT;
    for (const char *p = resource; *p; p++)
        buf_printf(&hx, "%02x", (unsigned char)*p);
    char mac[33];
    token_mac(d, hx.data ? hx.data : "", (long long)expires_at, mac);
    int rc = buf_printf(out, "dvs1.%s.%lld.%s", hx.data ? hx.data : "", (long long)expires_at, mac);
    buf_release(&hx);
    return rc;
}

int dvsim_token_check(struct dvsim *d, const char *token, char *resource, size_t n)
{
    if (strncmp(token, "dvs1.", 5) != 0)
        return -EINVAL;
    const char *h = token + 5;
    const char *dot = strchr(h, '.');
    if (!dot || (size_t)(dot - h) / 2 >= n || (dot - h) % 2)
        return -EINVAL;
    char hexres[512];
    if ((size_t)(dot - h) >= sizeof hexres)
        return -EINVAL;
    memcpy(hexres, h, (size_t)(dot - h));
    hexres[dot - h] = '\0';
    char *end;
    long long exp = strtoll(dot + 1, &end, 10);
    if (*end != '.' || strlen(end + 1) != 32)
        return -EINVAL;
    char mac[33];
    token_mac(d, hexres, exp, mac);
    if (strcmp(mac, end + 1) != 0)
        return -EINVAL;
    size_t o = 0;
    for (size_t i = 0; hexres[i] && hexres[i + 1]; i += 2) {
        unsigned v;
        if (sscanf(hexres + i, "%2x", &v) != 1)
            return -EINVAL;
        resource[o++] = (char)v;
    }
    resource[o] = '\0';
    if ((long long)time(NULL) >= exp)
        return -ETIMEDOUT;
    return 0;
}

/* ---- token endpoint ---- */

static void aad_error(struct req *r, int status, const char *error, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void aad_error(struct req *r, int status, const char *error, int code, const char *fmt, ...)
{
    char desc[768], ts[32], trace[37], corr[37];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(desc, sizeof desc, fmt, ap);
    va_end(ap);
    dvsim_iso_time((int64_t)time(NULL), ts);
    ts[19] = '\0'; /* AAD format: 2024-01-01 00:00:00Z */
    ts[10] = ' ';
    uint64_t s = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)r;
    dvsim_guid(dvsim_splitmix64(&s), dvsim_splitmix64(&s), trace);
    dvsim_guid(dvsim_splitmix64(&s), dvsim_splitmix64(&s), corr);
    char full[1024];
    snprintf(full, sizeof full, "AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %sZ", code, desc,
             trace, corr, ts);
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"error\":");
    buf_add_json_string(&r->out, error, strlen(error));
    buf_addstr(&r->out, ",\"error_description\":");
    buf_add_json_string(&r->out, full, strlen(full));
    buf_printf(&r->out, ",\"error_codes\":[%d],\"timestamp\":\"%sZ\",\"trace_id\":\"%s\",\"correlation_id\":\"%s\"",
               code, ts, trace, corr);
    buf_printf(&r->out, ",\"error_uri\":\"https://login.microsoftonline.com/error?code=%d\"}", code);
    r->status = status;
    r->content_type = "application/json; charset=utf-8";
}

/* Find key in a form body; returns a malloc'd decoded value or NULL. */
static char *form_get(const struct buf *body, const char *key)
{
    if (!body->data)
        return NULL;
    size_t kl = strlen(key);
    const char *p = body->data, *end = body->data + body->len;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            char *v = strndup(p + kl + 1, (size_t)(e - p - (ptrdiff_t)kl - 1));
            if (v)
                dvsim_url_decode(v);
            return v;
        }
        p = e + 1;
    }
    return NULL;
}

void dvadmin_token(struct req *r, const char *tenant)
{
    struct dvsim *d = r->d;
    char *client_id = NULL, *secret = NULL, *grant = NULL, *scope = NULL;
    if (strcmp(r->method, "POST") != 0) {
        aad_error(r, 405, "invalid_request", 900561,
                  "The endpoint only accepts POST requests. Received a %s request.", r->method);
        return;
    }
    if (strcmp(tenant, DVSIM_TENANT) != 0 && strcmp(tenant, DVSIM_TENANT_ID) != 0 &&
        strcmp(tenant, DVSIM_TENANT ".onmicrosoft.com") != 0) {
        aad_error(r, 400, "invalid_tenant", 90002,
                  "Tenant '%.64s' not found. Check to make sure you have the correct tenant ID and are "
                  "signing into the correct cloud.", tenant);
        return;
    }
    client_id = form_get(&r->body, "client_id");
    secret = form_get(&r->body, "client_secret");
    grant = form_get(&r->body, "grant_type");
    scope = form_get(&r->body, "scope");
    if (!grant) {
        aad_error(r, 400, "invalid_request", 900144,
                  "The request body must contain the following parameter: 'grant_type'.");
        goto out;
    }
    if (strcmp(grant, "client_credentials") != 0) {
        aad_error(r, 400, "unsupported_grant_type", 70003,
                  "The app requested an unsupported grant type '%.64s'.", grant);
        goto out;
    }
    if (!client_id) {
        aad_error(r, 400, "invalid_request", 900144,
                  "The request body must contain the following parameter: 'client_id'.");
        goto out;
    }
    if (d->client_id && strcmp(client_id, d->client_id) != 0) {
        aad_error(r, 400, "unauthorized_client", 700016,
                  "Application with identifier '%.64s' was not found in the directory '%s'. This can "
                  "happen if the application has not been installed by the administrator of the tenant.",
                  client_id, DVSIM_TENANT);
        goto out;
    }
    if (!secret) {
        aad_error(r, 401, "invalid_client", 7000218,
                  "The request body must contain the following parameter: 'client_assertion' or "
                  "'client_secret'.");
        goto out;
    }
    /* a secret read from a file with its newline (curl --data-urlencode name@file) still matches */
    size_t sn = strlen(secret);
    while (sn && (secret[sn - 1] == '\n' || secret[sn - 1] == '\r'))
        secret[--sn] = '\0';
    if (d->client_secret && strcmp(secret, d->client_secret) != 0) {
        aad_error(r, 401, "invalid_client", 7000215,
                  "Invalid client secret provided. Ensure the secret being sent in the request is the "
                  "client secret value, not the client secret ID, for a secret added to app '%.64s'.",
                  client_id);
        goto out;
    }
    if (!scope) {
        aad_error(r, 400, "invalid_request", 900144,
                  "The request body must contain the following parameter: 'scope'.");
        goto out;
    }
    size_t sl = strlen(scope);
    static const char dflt[] = "/.default";
    if (sl < sizeof dflt || strcmp(scope + sl - (sizeof dflt - 1), dflt) != 0) {
        aad_error(r, 400, "invalid_scope", 1002012,
                  "The provided value for scope %.200s is not valid. Client credential flows must have "
                  "a scope value with /.default suffixed to the resource identifier (application ID URI).",
                  scope);
        goto out;
    }
    scope[sl - (sizeof dflt - 1)] = '\0';
    /* resource: http(s)://host[:port][path]; only the path selects the resource */
    const char *res = scope;
    const char *sep = strstr(res, "://");
    const char *path = sep ? strchr(sep + 3, '/') : NULL;
    char resource[160] = "";
    if (!sep) {
        path = "x"; /* not a URL: unknown resource */
    }
    if (path) {
        size_t pl = strlen(path);
        while (pl && path[pl - 1] == '/')
            pl--;
        if (pl == 0) {
            resource[0] = '\0';
        } else if (pl > 5 && strncmp(path, "/org/", 5) == 0 && dvschema_env_index(path + 5, pl - 5) >= 0) {
            snprintf(resource, sizeof resource, "%.*s", (int)pl, path);
        } else {
            aad_error(r, 400, "invalid_resource", 500011,
                      "The resource principal named %.200s was not found in the tenant named %s. This can "
                      "happen if the application has not been installed by the administrator of the tenant "
                      "or consented to by any user in the tenant.", scope, DVSIM_TENANT);
            goto out;
        }
    }
    struct buf tok = BUF_INIT;
    int64_t exp = (int64_t)time(NULL) + d->token_lifetime_s;
    dvsim_token_issue(d, resource, exp, &tok);
    buf_reset(&r->out);
    buf_printf(&r->out, "{\"token_type\":\"Bearer\",\"expires_in\":%d,\"ext_expires_in\":%d,\"access_token\":\"%s\"}",
               d->token_lifetime_s, d->token_lifetime_s, tok.data);
    buf_release(&tok);
    r->status = 200;
    r->content_type = "application/json; charset=utf-8";
    sreq_add_header(r, "Cache-Control", "no-store, no-cache");
out:
    free(client_id);
    free(secret);
    free(grant);
    free(scope);
}

/* ---- environments ---- */

struct env_state {
    char runtime[32];
    char sku[32];
};

static void env_state_load(struct dvsim *d, int env, struct env_state *st)
{
    snprintf(st->runtime, sizeof st->runtime, "Enabled");
    snprintf(st->sku, sizeof st->sku, "%s", dvschema_envs[env].sku);
    sqlite3 *db = dvstore_get(d->store);
    sqlite3_stmt *q = NULL;
    if (db && sqlite3_prepare_v2(db, "SELECT runtime, sku FROM envstate WHERE env=?1", -1, &q, NULL) == SQLITE_OK) {
        sqlite3_bind_int(q, 1, env);
        if (sqlite3_step(q) == SQLITE_ROW) {
            const unsigned char *a = sqlite3_column_text(q, 0), *b = sqlite3_column_text(q, 1);
            if (a)
                snprintf(st->runtime, sizeof st->runtime, "%s", a);
            if (b)
                snprintf(st->sku, sizeof st->sku, "%s", b);
        }
    }
    sqlite3_finalize(q);
    dvstore_put(d->store, db);
}

static int env_state_save(struct dvsim *d, int env, const struct env_state *st)
{
    sqlite3 *db = dvstore_get(d->store);
    sqlite3_stmt *q = NULL;
    int rc = db ? sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO envstate(env, runtime, sku) VALUES(?1,?2,?3)",
                                     -1, &q, NULL)
                : SQLITE_CANTOPEN;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(q, 1, env);
        sqlite3_bind_text(q, 2, st->runtime, -1, SQLITE_STATIC);
        sqlite3_bind_text(q, 3, st->sku, -1, SQLITE_STATIC);
        rc = sqlite3_step(q) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(q);
    dvstore_put(d->store, db);
    return dvstore_errno(rc);
}

static cJSON *env_json(struct req *r, int env)
{
    const struct env_def *e = &dvschema_envs[env];
    struct env_state st;
    env_state_load(r->d, env, &st);
    char id[64], path[160], url[200];
    dvschema_env_guid(env, id);
    cJSON *o = cJSON_CreateObject();
    snprintf(path, sizeof path, "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments/%s", id);
    cJSON_AddStringToObject(o, "id", path);
    cJSON_AddStringToObject(o, "type", "Microsoft.BusinessAppPlatform/scopes/environments");
    cJSON_AddStringToObject(o, "location", e->geo);
    cJSON_AddStringToObject(o, "name", id);
    cJSON *p = cJSON_AddObjectToObject(o, "properties");
    cJSON_AddStringToObject(p, "tenantId", DVSIM_TENANT_ID);
    cJSON_AddStringToObject(p, "azureRegion", e->region);
    cJSON_AddStringToObject(p, "displayName", e->display_name);
    cJSON_AddStringToObject(p, "description", "");
    cJSON_AddStringToObject(p, "createdTime", "2022-03-14T09:26:53.1234567Z");
    cJSON *cb = cJSON_AddObjectToObject(p, "createdBy");
    cJSON_AddStringToObject(cb, "id", "SYSTEM");
    cJSON_AddStringToObject(cb, "displayName", "SYSTEM");
    cJSON_AddStringToObject(cb, "type", "NotSpecified");
    cJSON_AddStringToObject(p, "lastModifiedTime", "2023-11-02T16:40:11.7654321Z");
    cJSON_AddStringToObject(p, "provisioningState", "Succeeded");
    cJSON_AddStringToObject(p, "creationType", e->is_default ? "DefaultTenant" : "User");
    cJSON_AddStringToObject(p, "environmentSku", st.sku);
    cJSON_AddBoolToObject(p, "isDefault", e->is_default);
    cJSON_AddStringToObject(p, "databaseType", "CommonDataService");
    cJSON *states = cJSON_AddObjectToObject(p, "states");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(states, "management"), "id", "Ready");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(states, "runtime"), "id", st.runtime);
    cJSON *l = cJSON_AddObjectToObject(p, "linkedEnvironmentMetadata");
    cJSON_AddStringToObject(l, "resourceId", id);
    cJSON_AddStringToObject(l, "friendlyName", e->display_name);
    cJSON_AddStringToObject(l, "uniqueName", e->unique_name);
    cJSON_AddStringToObject(l, "domainName", e->unique_name);
    cJSON_AddStringToObject(l, "version", "9.2.24101.00195");
    /* from the request's Host (or --public-url), like nextLinks: a proxy in front stays in front */
    struct buf base = BUF_INIT;
    sreq_base(r, &base);
    snprintf(url, sizeof url, "%s/org/%s/", base.data ? base.data : r->d->base_url, e->unique_name);
    cJSON_AddStringToObject(l, "instanceUrl", url);
    snprintf(url, sizeof url, "%s/org/%s", base.data ? base.data : r->d->base_url, e->unique_name);
    buf_release(&base);
    cJSON_AddStringToObject(l, "instanceApiUrl", url);
    cJSON_AddNumberToObject(l, "baseLanguage", 1033);
    cJSON_AddStringToObject(l, "instanceState", "Ready");
    cJSON_AddStringToObject(l, "backgroundOperationsState", "Enabled");
    cJSON_AddStringToObject(l, "platformSku", "Standard");
    cJSON_AddStringToObject(l, "schemaType", "Standard");
    cJSON *tpl = cJSON_AddArrayToObject(l, "templates");
    if (e->d365) {
        cJSON_AddItemToArray(tpl, cJSON_CreateString("D365_Sales"));
        cJSON_AddItemToArray(tpl, cJSON_CreateString("D365_CustomerService"));
    }
    if (e->retention) {
        cJSON_AddStringToObject(p, "retentionPeriod", e->retention);
        cJSON *rd = cJSON_AddObjectToObject(p, "retentionDetails");
        cJSON_AddStringToObject(rd, "retentionPeriod", e->retention);
        cJSON_AddStringToObject(rd, "backupsAvailableFromDateTime", "2023-10-05T00:00:00Z");
    }
    cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "governanceConfiguration"), "protectionLevel", "Basic");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "updateCadence"), "id", "Moderate");
    return o;
}

static void send_cjson(struct req *r, int status, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    buf_reset(&r->out);
    if (s)
        buf_addstr(&r->out, s);
    free(s);
    r->status = status;
    r->content_type = "application/json; charset=utf-8";
}

static int env_by_id(const char *id, size_t len)
{
    for (int i = 0; i < N_ENVS; i++) {
        char g[64];
        dvschema_env_guid(i, g);
        if (strlen(g) == len && strncasecmp(g, id, len) == 0)
            return i;
    }
    return dvschema_env_index(id, len);
}

static void bap_error(struct req *r, int status, const char *code, const char *msg)
{
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"error\":{\"code\":");
    buf_add_json_string(&r->out, code, strlen(code));
    buf_addstr(&r->out, ",\"message\":");
    buf_add_json_string(&r->out, msg, strlen(msg));
    buf_addstr(&r->out, "}}");
    r->status = status;
    r->content_type = "application/json; charset=utf-8";
}

static void env_patch(struct req *r, int env)
{
    cJSON *body = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
    if (!body || !cJSON_IsObject(body)) {
        cJSON_Delete(body);
        bap_error(r, 400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.");
        return;
    }
    struct env_state st;
    env_state_load(r->d, env, &st);
    cJSON *props = cJSON_GetObjectItemCaseSensitive(body, "properties");
    cJSON *rt = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(props, "states"), "runtime"), "id");
    cJSON *sku = cJSON_GetObjectItemCaseSensitive(props, "environmentSku");
    if (!sku)
        sku = cJSON_GetObjectItemCaseSensitive(body, "environmentSku");
    if (rt) {
        static const char *const ok[] = {"Enabled", "AdminMode", "Disabled", "Warning"};
        bool valid = false;
        for (size_t i = 0; i < 4 && cJSON_IsString(rt); i++)
            valid |= strcmp(rt->valuestring, ok[i]) == 0;
        if (!valid) {
            cJSON_Delete(body);
            bap_error(r, 400, "InvalidRuntimeState",
                      "The runtime state must be one of Enabled, AdminMode, Disabled, Warning.");
            return;
        }
        snprintf(st.runtime, sizeof st.runtime, "%s", rt->valuestring);
    }
    if (sku) {
        static const char *const ok[] = {"Production", "Sandbox", "Trial", "Developer"};
        bool valid = false;
        for (size_t i = 0; i < 4 && cJSON_IsString(sku); i++)
            valid |= strcmp(sku->valuestring, ok[i]) == 0;
        if (!valid || dvschema_envs[env].is_default) {
            cJSON_Delete(body);
            bap_error(r, 400, "InvalidEnvironmentSku", "The environment SKU cannot be changed to that value.");
            return;
        }
        snprintf(st.sku, sizeof st.sku, "%s", sku->valuestring);
    }
    cJSON_Delete(body);
    if (!rt && !sku) {
        bap_error(r, 400, "InvalidRequestContent", "Nothing to change: give properties.states.runtime.id or environmentSku.");
        return;
    }
    if (env_state_save(r->d, env, &st)) {
        bap_error(r, 500, "InternalServerError", "Could not save the environment state.");
        return;
    }
    send_cjson(r, 200, env_json(r, env));
}

static void capacity(struct req *r)
{
    pthread_mutex_lock(&r->d->lock);
    int64_t free_mb = r->d->faults.capacity_free_mb;
    pthread_mutex_unlock(&r->d->lock);
    double max = 20480, rated = free_mb >= 0 ? max - (double)free_mb : 4211.37;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "tenantId", DVSIM_TENANT_ID);
    cJSON_AddStringToObject(o, "licenseModelType", "StorageDriven");
    cJSON *a = cJSON_AddArrayToObject(o, "tenantCapacities");
    static const char *const types[] = {"Database", "File", "Log"};
    static const double maxes[] = {20480, 102400, 2048}, used[] = {0, 8123.5, 311.25};
    for (int i = 0; i < 3; i++) {
        cJSON *c = cJSON_CreateObject();
        double cons = i == 0 ? rated : used[i];
        cJSON_AddStringToObject(c, "capacityType", types[i]);
        cJSON_AddStringToObject(c, "capacityUnits", "MB");
        cJSON_AddNumberToObject(c, "totalCapacity", maxes[i]);
        cJSON_AddNumberToObject(c, "maxCapacity", maxes[i]);
        cJSON_AddNumberToObject(c, "actualConsumption", cons);
        cJSON_AddNumberToObject(c, "ratedConsumption", cons);
        cJSON_AddStringToObject(c, "status", cons > maxes[i] ? "Overflow" : "Within");
        cJSON_AddItemToArray(a, c);
    }
    (void)max;
    send_cjson(r, 200, o);
}

void dvadmin_route(struct req *r, const char *rest)
{
    static const char envs[] = "/scopes/admin/environments";
    if (strncmp(rest, envs, sizeof envs - 1) == 0) {
        const char *p = rest + sizeof envs - 1;
        if (*p == '\0' || strcmp(p, "/") == 0) {
            if (strcmp(r->method, "GET") != 0) {
                bap_error(r, 405, "MethodNotAllowed", "The requested resource does not support this method.");
                return;
            }
            cJSON *o = cJSON_CreateObject();
            cJSON *a = cJSON_AddArrayToObject(o, "value");
            for (int i = 0; i < N_ENVS; i++)
                cJSON_AddItemToArray(a, env_json(r, i));
            send_cjson(r, 200, o);
            return;
        }
        if (*p == '/') {
            p++;
            size_t n = strcspn(p, "/");
            int env = env_by_id(p, n);
            if (env < 0 || p[n]) {
                bap_error(r, 404, "EnvironmentNotFound", "The environment could not be found.");
                return;
            }
            if (strcmp(r->method, "GET") == 0)
                send_cjson(r, 200, env_json(r, env));
            else if (strcmp(r->method, "PATCH") == 0)
                env_patch(r, env);
            else
                bap_error(r, 405, "MethodNotAllowed", "The requested resource does not support this method.");
            return;
        }
    }
    char tid[64];
    if (sscanf(rest, "/tenants/%63[^/]/capacity", tid) == 1 && strcmp(r->method, "GET") == 0) {
        if (strcmp(tid, DVSIM_TENANT_ID) != 0 && strcmp(tid, DVSIM_TENANT) != 0) {
            bap_error(r, 404, "TenantNotFound", "The tenant could not be found.");
            return;
        }
        capacity(r);
        return;
    }
    bap_error(r, 404, "NotFound", "The requested resource was not found.");
}
