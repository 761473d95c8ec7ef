/* dataverse: the client object, the one request path every call goes through (URL policy, bearer,
 * retry, 401 refresh), error mapping, and the Power Platform admin API (environments,
 * administration mode, tenant capacity). Web API reads and writes are in dataverse_webapi.c,
 * $batch in dataverse_batch.c.
 *
 * Admin routes (BAP): GET/PATCH {admin_url}/providers/Microsoft.BusinessAppPlatform/scopes/admin/
 * environments[/{id}] and GET .../tenants/{tenantId}/capacity; lists follow "nextLink" within
 * admin_url. Environments without Dataverse (no linkedEnvironmentMetadata.instanceApiUrl) are not
 * listed: there is nothing to back up.
 * Threading: the client is immutable after dv_client_new except for atomics; auth and the
 * transport pool have their own locks. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/base/log.h"

#define BAP_ENVS "/providers/Microsoft.BusinessAppPlatform/scopes/admin/environments"
#define BAP_API_VERSION "api-version=2021-04-01"
#define ADMIN_RESPONSE_MAX (64ull << 20)

int dv_client_new_with_transport(const struct config *cfg, struct http_transport *transport,
                                 struct dv_client **out, struct dverr *err)
{
    struct buf secret = BUF_INIT;
    struct dv_client *c = NULL;
    int rc;
    *out = NULL;
    if (!transport)
        return dverr_set(err, -ENOMEM, "no HTTP transport");
    if (!cfg->admin_url || !cfg->token_url || !cfg->client_id) {
        rc = dverr_set(err, -EINVAL, "%s is not configured (see dvsnap help config)",
                       !cfg->admin_url ? "admin_url" : !cfg->token_url ? "token_url" : "client_id");
        goto fail;
    }
    if ((rc = config_read_secret_file(cfg->client_secret_file, &secret, err)))
        goto fail;
    c = calloc(1, sizeof(*c));
    if (!c) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    c->max_concurrency = 0; /* marks the locks as not yet initialised for dv_client_free */
    if (!(c->admin_url = strdup(cfg->admin_url))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    size_t l = strlen(c->admin_url);
    while (l > 8 && c->admin_url[l - 1] == '/')
        c->admin_url[--l] = '\0';
    /* The BAP admin API accepts tokens for the PowerApps service, not for its own host name. */
    const char *scope = cfg->admin_resource;
    if (!scope && (http_same_origin(c->admin_url, "https://api.bap.microsoft.com") ||
                   http_same_origin(c->admin_url, "https://preview.api.bap.microsoft.com")))
        scope = "https://service.powerapps.com";
    if (!(c->admin_scope = strdup(scope ? scope : c->admin_url))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    l = strlen(c->admin_scope);
    while (l > 8 && c->admin_scope[l - 1] == '/')
        c->admin_scope[--l] = '\0';
    c->transport = transport;
    transport = NULL;
    c->max_concurrency = cfg->max_concurrency > 0 ? cfg->max_concurrency : 4;
    pthread_mutex_init(&c->slots_lock, NULL);
    pthread_cond_init(&c->slots_free, NULL);
    atomic_init(&c->hold_until, 0);
    atomic_init(&c->cancel, 0);
    c->retry = (struct http_retry){
        .max_attempts = cfg->http_retries > 0 ? cfg->http_retries : 8,
        .base_delay_ms = 500,
        .max_delay_ms = 60000,
        .max_total_ms = 600000,
        .cancel = &c->cancel,
        .hold_until_ms = &c->hold_until,
    };
    struct auth_options ao = {
        .token_url = cfg->token_url,
        .client_id = cfg->client_id,
        .secret = secret.data,
        .secret_len = secret.len,
        .transport = c->transport,
        .retry = &c->retry,
        .counters = &c->counters,
    };
    if ((rc = auth_new(&ao, &c->auth, err)))
        goto fail;
    explicit_bzero(secret.data, secret.len);
    buf_release(&secret);
    *out = c;
    return 0;
fail:
    if (secret.data)
        explicit_bzero(secret.data, secret.len);
    buf_release(&secret);
    http_transport_free(transport);
    dv_client_free(c);
    return rc;
}

int dv_client_new(const struct config *cfg, struct dv_client **out, struct dverr *err)
{
    struct http_options o = {
        .connect_timeout_s = 10,
        .timeout_s = cfg->http_timeout > 0 ? cfg->http_timeout : 300,
        .low_speed_time_s = 30,
        .ca_file = cfg->ca_file,
    };
    struct http_transport *t = http_transport_curl_new(&o);
    if (!t)
        return dverr_set(err, -ENOMEM, "cannot create the HTTP transport");
    return dv_client_new_with_transport(cfg, t, out, err);
}

void dv_client_free(struct dv_client *c)
{
    if (!c)
        return;
    auth_free(c->auth);
    http_transport_free(c->transport);
    free(c->admin_url);
    free(c->admin_scope);
    if (c->max_concurrency) {
        for (struct dv_slot *s = c->slots, *n; s; s = n) {
            n = s->next;
            free(s->resource);
            free(s);
        }
        pthread_cond_destroy(&c->slots_free);
        pthread_mutex_destroy(&c->slots_lock);
    }
    free(c);
}

static struct dv_slot *slot_acquire(struct dv_client *c, const char *resource)
{
    pthread_mutex_lock(&c->slots_lock);
    struct dv_slot *s = c->slots;
    while (s && strcmp(s->resource, resource) != 0)
        s = s->next;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s || !(s->resource = strdup(resource))) {
            free(s);
            pthread_mutex_unlock(&c->slots_lock);
            return NULL;
        }
        s->next = c->slots;
        c->slots = s;
    }
    while (s->in_flight >= c->max_concurrency)
        pthread_cond_wait(&c->slots_free, &c->slots_lock);
    s->in_flight++;
    if (s->in_flight > s->peak)
        s->peak = s->in_flight;
    pthread_mutex_unlock(&c->slots_lock);
    return s;
}

static void slot_release(struct dv_client *c, struct dv_slot *s)
{
    pthread_mutex_lock(&c->slots_lock);
    s->in_flight--;
    pthread_cond_broadcast(&c->slots_free);
    pthread_mutex_unlock(&c->slots_lock);
}

int dv_client_peak_concurrency(struct dv_client *c, const char *resource)
{
    int peak = 0;
    pthread_mutex_lock(&c->slots_lock);
    for (struct dv_slot *s = c->slots; s; s = s->next)
        if (strcmp(s->resource, resource) == 0)
            peak = s->peak;
    pthread_mutex_unlock(&c->slots_lock);
    return peak;
}

void dv_client_cancel(struct dv_client *c)
{
    atomic_store(&c->cancel, 1);
}

void dv_client_stats(struct dv_client *c, struct dv_stats *out)
{
    out->requests = atomic_load(&c->counters.requests);
    out->retries = atomic_load(&c->counters.retries);
    out->throttled = atomic_load(&c->counters.throttled);
    out->bytes_in = atomic_load(&c->counters.bytes_in);
}

/* ---- the request path ---- */

struct bearer_ctx {
    struct dv_client *c;
    const char *audience;
    struct buf *last;  /* the bearer most recently handed out (for auth_invalidate) */
};

/* A fresh look in the token cache before every attempt. */
static int current_bearer(void *ctx, struct buf *out, struct dverr *err)
{
    struct bearer_ctx *bc = ctx;
    int rc = auth_token(bc->c->auth, bc->audience, out, err);
    if (rc == 0) {
        if (bc->last->data)
            explicit_bzero(bc->last->data, bc->last->len);
        buf_reset(bc->last);
        rc = buf_add(bc->last, out->data, out->len);
    }
    return rc;
}

static int dv_call_once(struct dv_client *c, const struct dv_call *call,
                        struct http_response *resp, struct dverr *err)
{
    struct buf token = BUF_INIT;
    int rc;
    if (!http_url_within(call->url, call->resource)) {
        char host[160];
        log_escape(call->url, host, sizeof(host));
        return dverr_set(err, -EPERM,
                         "refused to follow %s: it is outside the service the token is for", host);
    }
    const char *audience = call->token_resource ? call->token_resource : call->resource;
    struct bearer_ctx bc = {c, audience, &token};
    for (int attempt = 0;; attempt++) {
        struct http_request req = {
            .method = call->method,
            .url = call->url,
            .headers = call->headers,
            .body = call->body,
            .body_len = call->body_len,
            .max_response = call->max_response,
            .retry_unsafe = call->retry_unsafe,
            .bearer_cb = current_bearer,
            .bearer_ctx = &bc,
        };
        struct dv_slot *slot = slot_acquire(c, call->resource);
        if (!slot) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            break;
        }
        rc = http_perform_retry(c->transport, &req, &c->retry, &c->counters, resp, err);
        slot_release(c, slot);
        if (rc || resp->status != 401 || attempt > 0)
            break;
        auth_invalidate(c->auth, audience, token.data);
        log_info("dataverse: 401 from the service; fetching a new token");
    }
    if (token.data)
        explicit_bzero(token.data, token.len);
    buf_release(&token);
    return rc;
}

/* Parse a JSON body with json.h; -EPROTO with detail when malformed. */
static int parse_body(const struct http_response *resp, const char *what, struct json_doc **doc,
                      struct dverr *err)
{
    struct dverr jerr = {0};
    *doc = NULL;
    if (!resp->body.len)
        return dverr_set(err, -EPROTO, "%s: empty response body", what);
    int rc = json_parse(resp->body.data, resp->body.len, NULL, doc, &jerr);
    if (rc) {
        json_doc_free(*doc);
        *doc = NULL;
        return dverr_set(err, rc == -ENOMEM ? -ENOMEM : -EPROTO, "%s: malformed JSON: %s", what,
                         dverr_msg(&jerr));
    }
    return 0;
}

int dv_call(struct dv_client *c, const struct dv_call *call, struct http_response *resp,
            struct dverr *err)
{
    if (!call->json)
        return dv_call_once(c, call, resp, err);
    *call->json = NULL;
    for (int bad = 0;; bad++) {
        int rc = dv_call_once(c, call, resp, err);
        if (rc || resp->status != 200)
            return rc;
        struct dverr perr = {0};
        rc = parse_body(resp, call->what ? call->what : "response", call->json, &perr);
        if (rc != -EPROTO || bad == DV_BAD_BODY_RETRIES || strcmp(call->method, "GET")) {
            if (rc)
                dverr_set(err, rc, "%s", dverr_msg(&perr));
            return rc;
        }
        log_warn("%s; asking again (%d of %d)", dverr_msg(&perr), bad + 1, DV_BAD_BODY_RETRIES);
        struct timespec pause = {(250 << bad) / 1000, (long)((250 << bad) % 1000) * 1000000L};
        nanosleep(&pause, NULL);
        http_response_release(resp);
        http_response_init(resp);
    }
}

void dv_error_message(const struct http_response *resp, char *out, size_t n)
{
    out[0] = '\0';
    if (!resp->body.len)
        return;
    struct json_doc *doc = NULL;
    struct json_limits lim = {32, 64 << 10, 100000};
    if (json_parse(resp->body.data, resp->body.len, &lim, &doc, NULL) == 0) {
        const struct json_node *e = json_get(json_root(doc), "error");
        const char *code = e && e->type == JSON_OBJECT ? json_get_str(e, "code") : NULL;
        const char *msg = e && e->type == JSON_OBJECT ? json_get_str(e, "message") : NULL;
        if (!msg && e && e->type == JSON_STRING)
            msg = e->str;
        char c1[64] = "", m1[320] = "";
        if (code)
            log_escape(code, c1, sizeof(c1));
        if (msg)
            log_escape(msg, m1, sizeof(m1));
        snprintf(out, n, "%s%s%s", c1, c1[0] && m1[0] ? " " : "", m1);
    }
    json_doc_free(doc);
}

int dv_status_error(const struct http_response *resp, const char *what, struct dverr *err)
{
    char msg[400];
    dv_error_message(resp, msg, sizeof(msg));
    int rc = http_status_to_errno(resp->status);
    if (rc == -EBUSY || rc == -EAGAIN)
        rc = -EIO; /* throttling that outlasted the retry policy */
    else if (rc == -EINVAL || rc == -EOPNOTSUPP || rc == -EEXIST || rc == -EFBIG)
        rc = -EIO;
    if (resp->status == 401 || resp->status == 403)
        rc = -EACCES;
    else if (resp->status == 404)
        rc = -ENOENT;
    else if (resp->status == 408 || resp->status == 504)
        rc = -ETIMEDOUT;
    return dverr_set(err, rc, "%s: HTTP %ld%s%s", what, resp->status, msg[0] ? ": " : "", msg);
}

const char **dv_headers_join(const char *const *base, const char *const *extra)
{
    size_t n = 0, k = 0;
    for (const char *const *p = base; *p; p++)
        n++;
    for (const char *const *p = extra; p && *p; p++)
        n++;
    const char **all = calloc(n + 1, sizeof(*all));
    if (!all)
        return NULL;
    for (const char *const *p = base; *p; p++)
        all[k++] = *p;
    for (const char *const *p = extra; p && *p; p++)
        all[k++] = *p;
    return all;
}

bool dv_name_safe(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || ch == '_' || ch == '-' || ch == '.'))
            return false;
    }
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

bool dv_guid_valid(const char *s)
{
    if (!s || strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

int dv_api_url(const struct dv_env *env, const char *path, struct buf *out, struct dverr *err)
{
    buf_reset(out);
    if (!env || !env->api_url || !*env->api_url)
        return dverr_set(err, -EINVAL, "the environment has no Web API URL");
    if (buf_addstr(out, env->api_url) || buf_addstr(out, DV_API_PATH) || buf_addstr(out, path))
        return dverr_set(err, -ENOMEM, "out of memory");
    return 0;
}

char *dv_dup_str(const struct json_node *obj, const char *key, int *rc)
{
    const char *s = obj ? json_get_str(obj, key) : NULL;
    if (!s)
        return NULL;
    char *d = strdup(s);
    if (!d)
        *rc = -ENOMEM;
    return d;
}

bool dv_get_flag(const struct json_node *obj, const char *key, bool dflt)
{
    const struct json_node *n = obj ? json_get(obj, key) : NULL;
    if (!n)
        return dflt;
    if (n->type == JSON_OBJECT)
        n = json_get(n, "Value");
    if (!n)
        return dflt;
    if (n->type == JSON_TRUE)
        return true;
    if (n->type == JSON_FALSE)
        return false;
    return dflt;
}

/* ---- admin API ---- */

void dv_env_release(struct dv_env *e)
{
    if (!e)
        return;
    free(e->id);
    free(e->unique_name);
    free(e->display_name);
    free(e->sku);
    free(e->geo);
    free(e->region);
    free(e->api_url);
    free(e->tenant_id);
    free(e->runtime_state);
    free(e->raw_json);
    memset(e, 0, sizeof(*e));
}

void dv_env_list_free(struct dv_env *envs, size_t n)
{
    if (!envs)
        return;
    for (size_t i = 0; i < n; i++)
        dv_env_release(&envs[i]);
    free(envs);
}

/* "P28D" -> 28 (also "P4W"); 0 when absent or another shape. */
static int parse_retention(const char *s)
{
    if (!s || s[0] != 'P')
        return 0;
    char *end;
    long n = strtol(s + 1, &end, 10);
    if (end == s + 1 || n <= 0 || n > 3650)
        return 0;
    if (strcmp(end, "D") == 0)
        return (int)n;
    if (strcmp(end, "W") == 0)
        return (int)n * 7;
    return 0;
}

static const struct json_node *path_get(const struct json_node *n, const char *a, const char *b,
                                        const char *c)
{
    const char *keys[] = {a, b, c};
    for (int i = 0; i < 3 && keys[i] && n; i++)
        n = n->type == JSON_OBJECT ? json_get(n, keys[i]) : NULL;
    return n;
}

/* Fill env from one BAP environment object. 1 when it has no Dataverse (skip), 0, or -errno. */
static int env_from_json(const struct json_node *o, struct dv_env *env)
{
    int rc = 0;
    memset(env, 0, sizeof(*env));
    if (!o || o->type != JSON_OBJECT)
        return -EPROTO;
    const struct json_node *props = json_get(o, "properties");
    if (!props || props->type != JSON_OBJECT)
        return -EPROTO;
    const struct json_node *lem = json_get(props, "linkedEnvironmentMetadata");
    if (!lem || lem->type != JSON_OBJECT || !json_get_str(lem, "instanceApiUrl") ||
        !json_get_str(lem, "uniqueName"))
        return 1;
    env->id = dv_dup_str(o, "name", &rc);
    env->unique_name = dv_dup_str(lem, "uniqueName", &rc);
    env->display_name = dv_dup_str(props, "displayName", &rc);
    env->sku = dv_dup_str(props, "environmentSku", &rc);
    env->geo = dv_dup_str(o, "location", &rc);
    env->region = dv_dup_str(props, "azureRegion", &rc);
    env->api_url = dv_dup_str(lem, "instanceApiUrl", &rc);
    env->tenant_id = dv_dup_str(props, "tenantId", &rc);
    const struct json_node *rs = path_get(props, "states", "runtime", "id");
    if (rs && rs->type == JSON_STRING && !(env->runtime_state = strdup(rs->str)))
        rc = -ENOMEM;
    const struct json_node *ret = path_get(props, "retentionDetails", "retentionPeriod", NULL);
    if (!ret || ret->type != JSON_STRING)
        ret = json_get(props, "retentionPeriod");
    env->retention_days = ret && ret->type == JSON_STRING ? parse_retention(ret->str) : 0;
    env->is_default = json_get_bool(props, "isDefault", false) ||
                      json_get_bool(o, "isDefault", false) ||
                      (env->sku && strcasecmp(env->sku, "Default") == 0);
    const struct json_node *tpl = json_get(lem, "templates");
    if (tpl && tpl->type == JSON_ARRAY)
        for (const struct json_node *t = tpl->child; t; t = t->next)
            if (t->type == JSON_STRING && strncmp(t->str, "D365_", 5) == 0)
                env->has_d365_apps = true;
    if (!(env->raw_json = mem_to_str(o->raw, o->raw_len)))
        rc = -ENOMEM;
    if (env->api_url) {
        size_t l = strlen(env->api_url);
        while (l > 8 && env->api_url[l - 1] == '/')
            env->api_url[--l] = '\0';
    }
    if (!rc && (!env->id || !dv_name_safe(env->id)))
        rc = -EPROTO;
    if (rc)
        dv_env_release(env);
    return rc;
}

int dv_env_from_json(const char *json, size_t len, struct dv_env *env)
{
    struct json_doc *doc = NULL;
    memset(env, 0, sizeof(*env));
    int rc = json_parse(json, len, NULL, &doc, NULL);
    if (rc)
        return rc;
    rc = env_from_json(json_root(doc), env);
    json_doc_free(doc);
    return rc;
}

static int admin_get(struct dv_client *c, const char *url, const char *what,
                     struct http_response *resp, struct json_doc **doc, struct dverr *err)
{
    static const char *const headers[] = {"Accept: application/json", NULL};
    struct dv_call call = {.method = "GET", .url = url, .resource = c->admin_url,
                           .token_resource = c->admin_scope, .headers = headers,
                           .max_response = ADMIN_RESPONSE_MAX, .json = doc, .what = what};
    int rc = dv_call(c, &call, resp, err);
    if (rc)
        return rc;
    if (resp->status != 200)
        return dv_status_error(resp, what, err);
    return 0;
}

int dv_env_list(struct dv_client *c, struct dv_env **envs, size_t *n, struct dverr *err)
{
    struct buf url = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    struct dv_env *list = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    *envs = NULL;
    *n = 0;
    http_response_init(&resp);
    if (buf_printf(&url, "%s" BAP_ENVS "?" BAP_API_VERSION, c->admin_url)) {
        rc = -ENOMEM;
        goto out;
    }
    for (int page = 0;; page++) {
        if (page > 1000) {
            rc = dverr_set(err, -EPROTO, "environment list: too many pages");
            goto out;
        }
        if ((rc = admin_get(c, url.data, "environment list", &resp, &doc, err)))
            goto out;
        const struct json_node *value = json_get(json_root(doc), "value");
        if (!value || value->type != JSON_ARRAY) {
            rc = dverr_set(err, -EPROTO, "environment list: no \"value\" array");
            goto out;
        }
        for (const struct json_node *o = value->child; o; o = o->next) {
            if (count == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                struct dv_env *nl = realloc(list, ncap * sizeof(*nl));
                if (!nl) {
                    rc = -ENOMEM;
                    goto out;
                }
                list = nl;
                cap = ncap;
            }
            int erc = env_from_json(o, &list[count]);
            if (erc == 1)
                continue;
            if (erc == -EPROTO) {
                log_warn("environment list: skipped an environment object without a usable "
                         "name");
                continue;
            }
            if (erc) {
                rc = erc;
                goto out;
            }
            count++;
        }
        const char *next = json_get_str(json_root(doc), "nextLink");
        if (!next)
            next = json_get_str(json_root(doc), "@odata.nextLink");
        if (!next || !*next)
            break;
        buf_reset(&url);
        if (buf_addstr(&url, next)) {
            rc = -ENOMEM;
            goto out;
        }
        json_doc_free(doc);
        doc = NULL;
    }
    *envs = list;
    *n = count;
    list = NULL;
    count = 0;
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    dv_env_list_free(list, count);
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&url);
    return rc;
}

int dv_env_get(struct dv_client *c, const char *unique_name, struct dv_env *env,
               struct dverr *err)
{
    struct dv_env *envs = NULL;
    size_t n = 0;
    memset(env, 0, sizeof(*env));
    int rc = dv_env_list(c, &envs, &n, err);
    if (rc)
        return rc;
    rc = -ENOENT;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(envs[i].unique_name, unique_name) == 0) {
            *env = envs[i];
            memset(&envs[i], 0, sizeof(envs[i]));
            rc = 0;
            break;
        }
    dv_env_list_free(envs, n);
    if (rc) {
        char esc[160];
        log_escape(unique_name, esc, sizeof(esc));
        dverr_set(err, rc, "no environment named %s", esc);
    }
    return rc;
}

int dv_env_set_runtime_state(struct dv_client *c, const struct dv_env *env, const char *state,
                             struct dverr *err)
{
    struct buf url = BUF_INIT, body = BUF_INIT;
    struct http_response resp;
    int rc;
    http_response_init(&resp);
    if (!state || (strcmp(state, "AdminMode") != 0 && strcmp(state, "Enabled") != 0)) {
        rc = dverr_set(err, -EINVAL, "runtime state must be AdminMode or Enabled");
        goto out;
    }
    if (!env->id || !dv_name_safe(env->id)) {
        rc = dverr_set(err, -EINVAL, "the environment has no usable id");
        goto out;
    }
    if (buf_printf(&url, "%s" BAP_ENVS "/%s?" BAP_API_VERSION, c->admin_url, env->id) ||
        buf_printf(&body, "{\"properties\":{\"states\":{\"runtime\":{\"id\":\"%s\"}}}}", state)) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    static const char *const headers[] = {"Accept: application/json",
                                          "Content-Type: application/json", NULL};
    struct dv_call call = {.method = "PATCH", .url = url.data, .resource = c->admin_url,
                           .token_resource = c->admin_scope,
                           .headers = headers, .body = body.data, .body_len = body.len,
                           .retry_unsafe = true /* setting a state is idempotent */,
                           .max_response = ADMIN_RESPONSE_MAX};
    if ((rc = dv_call(c, &call, &resp, err)))
        goto out;
    if (resp.status < 200 || resp.status >= 300)
        rc = dv_status_error(&resp, "set administration mode", err);
out:
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&body);
    return rc;
}

int dv_tenant_free_capacity_mb(struct dv_client *c, const char *tenant_id, int64_t *free_mb,
                               struct dverr *err)
{
    struct buf url = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    http_response_init(&resp);
    if (!tenant_id || !dv_name_safe(tenant_id)) {
        rc = dverr_set(err, -EINVAL, "no usable tenant id");
        goto out;
    }
    if (buf_printf(&url, "%s/providers/Microsoft.BusinessAppPlatform/tenants/%s/capacity?"
                         BAP_API_VERSION, c->admin_url, tenant_id)) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = admin_get(c, url.data, "tenant capacity", &resp, &doc, err)))
        goto out;
    const struct json_node *caps = json_get(json_root(doc), "tenantCapacities");
    bool found = false;
    if (caps && caps->type == JSON_ARRAY)
        for (const struct json_node *e = caps->child; e; e = e->next) {
            const char *type = e->type == JSON_OBJECT ? json_get_str(e, "capacityType") : NULL;
            if (!type || strcmp(type, "Database") != 0)
                continue;
            const struct json_node *max = json_get(e, "maxCapacity");
            const struct json_node *used = json_get(e, "ratedConsumption");
            if (!used)
                used = json_get(e, "actualConsumption");
            if (!max || max->type != JSON_NUMBER || !used || used->type != JSON_NUMBER)
                break;
            double m = strtod(max->str, NULL), u = strtod(used->str, NULL);
            double f = m - u;
            *free_mb = f >= 0 ? (int64_t)f : -(int64_t)(-f + 0.999999);
            found = true;
            break;
        }
    if (!found)
        rc = dverr_set(err, -EPROTO, "tenant capacity: no usable Database entry");
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    json_doc_free(doc);
    http_response_release(&resp);
    buf_release(&url);
    return rc;
}
