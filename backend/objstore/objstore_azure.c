/* objstore_azure: the Azure Blob Storage driver (struct objstore_ops over backend/http.h).
 *
 * Location azure://ACCOUNT/CONTAINER/PREFIX. Endpoint: cfg->azure_endpoint (Azurite:
 * http://127.0.0.1:PORT/devstoreaccount1) or https://ACCOUNT.blob.core.windows.net. Credentials,
 * by cfg->azure_auth:
 *   - key (default): cfg->azure_key_file (mode 0600) holding either the account's Shared Key
 *     (base64) or a SAS token ("sv=...&sig=..." with or without a leading '?'); else
 *     $AZURE_STORAGE_KEY or $AZURE_STORAGE_SAS_TOKEN. Shared Key requests are signed here
 *     (HMAC-SHA256 over the canonical string, x-ms-version 2021-12-02);
 *   - managed-identity: a bearer token for https://storage.azure.com from the instance metadata
 *     service (azure_identity_endpoint, default
 *     http://169.254.169.254/metadata/identity/oauth2/token; azure_client_id or $AZURE_CLIENT_ID
 *     picks a user-assigned identity);
 *   - workload-identity: a bearer token from Entra ID for the federated token in
 *     azure_federated_token_file (default $AZURE_FEDERATED_TOKEN_FILE), app azure_client_id
 *     (default $AZURE_CLIENT_ID), at azure_identity_endpoint (default
 *     $AZURE_AUTHORITY_HOST$AZURE_TENANT_ID/oauth2/v2.0/token, the authority host defaulting to
 *     https://login.microsoftonline.com/).
 * Tokens are cached and refreshed by backend/net/auth.c and fetched again before every attempt of
 * a request (http.h bearer_cb). Neither a key, a SAS signature nor a token is ever logged.
 *
 * Operations: Put Blob (below the block size; atomic), Put Block + Put Block List above it (the
 * blob appears whole at the commit), Get Blob with x-ms-range, Get Blob Properties (stat), List
 * Blobs with prefix and marker continuation, Delete Blob, and put_if_absent as Put Blob with
 * If-None-Match: * (409 BlobAlreadyExists -> -EEXIST), put / put_file / get / stat through
 * objstore_remote.c's shared operations. The container is created on first write.
 * Object lock (issue 16; cfg->object_lock): retain reads the blob's immutability policy (Get Blob
 * Properties, x-ms-immutability-policy-until-date) and, when it ends earlier, sets one (Set Blob
 * Immutability Policy, PUT ?comp=immutabilityPolicies) in mode Locked (object_lock = compliance:
 * it can be extended, never shortened nor removed) or Unlocked (governance: an administrator may
 * change it). The container must have version-level immutability support enabled.
 * Limits: blocks are uploaded one after another (8 MiB each, 50,000 blocks at most: 390 GiB);
 * whole-object reads are held in memory. Thread-safe: the struct is read-only after open, the
 * transport is thread-safe. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/net/auth.h"
#include "backend/objstore/objstore.h"
#include "backend/objstore/objstore_remote.h"

#define AZURE_VERSION "2021-12-02"
#define AZURE_STORAGE_RESOURCE "https://storage.azure.com"
#define AZURE_IMDS_TOKEN_URL "http://169.254.169.254/metadata/identity/oauth2/token"

struct azure {
    struct remote r;  /* first: impl is also a struct remote * (objstore_remote.h) */
    char *account;
    char *container;
    char *prefix;     /* "" or "p/q/" */
    char *endpoint;   /* no trailing '/' */
    char *path_base;  /* URL path of the endpoint ("" or "/devstoreaccount1") */
    struct buf key;   /* decoded Shared Key, or empty with sas or identity set */
    char *sas;        /* SAS query without '?', or NULL */
    struct auth *identity; /* managed or workload identity (bearer tokens), or NULL */
    const char *lock_mode; /* "Locked", "Unlocked", or NULL (object_lock off) */
};

/* http.h bearer_cb: a valid token before every attempt (auth.h caches and refreshes it). */
static int az_bearer(void *ctx, struct buf *out, struct dverr *err)
{
    struct azure *az = ctx;
    return auth_token(az->identity, AZURE_STORAGE_RESOURCE, out, err);
}

struct az_query {
    const char *name;  /* lower case */
    const char *value; /* unencoded */
};

struct az_req {
    const char *method;
    const char *blob;               /* object name without prefix, NULL for container requests */
    const struct az_query *query;   /* sorted by name, NULL-name terminated, or NULL */
    const char *const *xms;         /* extra "x-ms-name:value" (lower-case names), NULL-terminated */
    const char *content_type;
    const char *if_none_match;
    const void *body;
    size_t body_len;
    uint64_t max_response;
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Build the URL and headers and sign; perform with retries. */
static int az_do(struct azure *az, const struct az_req *q, struct http_response *resp,
                 struct dverr *err)
{
    struct buf url = BUF_INIT, path = BUF_INIT, sts = BUF_INIT, auth = BUF_INIT, sig = BUF_INIT;
    char date[40];
    char *hdr_store[16];
    const char *headers[20];
    size_t nh = 0, ns = 0;
    const char *xms_sorted[12];
    size_t nx = 0;
    int rc = 0;

    /* Path: /CONTAINER[/PREFIX+BLOB] */
    if ((rc = buf_addch(&path, '/')) || (rc = buf_urlencode(&path, az->container, false)))
        goto out;
    if (q->blob) {
        if ((rc = buf_addch(&path, '/')) || (rc = buf_urlencode(&path, az->prefix, true)) ||
            (rc = buf_urlencode(&path, q->blob, true)))
            goto out;
    }
    if ((rc = buf_addstr(&url, az->endpoint)) || (rc = buf_add(&url, path.data, path.len)))
        goto out;
    char sep = '?';
    for (const struct az_query *p = q->query; p && p->name; p++) {
        if ((rc = buf_addch(&url, sep)) || (rc = buf_addstr(&url, p->name)) ||
            (rc = buf_addch(&url, '=')) || (rc = buf_urlencode(&url, p->value, false)))
            goto out;
        sep = '&';
    }
    if (az->sas) {
        if ((rc = buf_addch(&url, sep)) || (rc = buf_addstr(&url, az->sas)))
            goto out;
    }

    remote_http_date(time(NULL), date);
    char xdate[64];
    snprintf(xdate, sizeof xdate, "x-ms-date:%s", date);
    xms_sorted[nx++] = xdate;
    xms_sorted[nx++] = "x-ms-version:" AZURE_VERSION;
    for (const char *const *p = q->xms; p && *p && nx < 12; p++)
        xms_sorted[nx++] = *p;
    qsort(xms_sorted, nx, sizeof *xms_sorted, cmp_str);

    bool has_body = strcmp(q->method, "PUT") == 0 || strcmp(q->method, "POST") == 0;
    /* Always name the type of a body: a transport may otherwise add one that is not signed. */
    const char *ctype = q->content_type ? q->content_type
                        : has_body      ? "application/octet-stream"
                                        : NULL;
    char clen[32] = "";
    if (has_body && q->body_len)
        snprintf(clen, sizeof clen, "%zu", q->body_len);

    for (size_t i = 0; i < nx; i++) {
        /* "x-ms-name:value" -> header line "x-ms-name: value" */
        const char *colon = strchr(xms_sorted[i], ':');
        struct buf h = BUF_INIT;
        if ((rc = buf_add(&h, xms_sorted[i], (size_t)(colon - xms_sorted[i]) + 1)) ||
            (rc = buf_printf(&h, " %s", colon + 1))) {
            buf_release(&h);
            goto out;
        }
        hdr_store[ns++] = buf_detach(&h);
        headers[nh++] = hdr_store[ns - 1];
    }
    char ct[128], inm[64];
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        headers[nh++] = ct;
    }
    else if (!has_body)
        headers[nh++] = "Content-Type:"; /* a transport's default type would break the signature */
    if (q->if_none_match) {
        snprintf(inm, sizeof inm, "If-None-Match: %s", q->if_none_match);
        headers[nh++] = inm;
    }
    headers[nh++] = "Expect:"; /* no 100-continue round trip */

    if (!az->sas && !az->identity) {
        if ((rc = buf_printf(&sts, "%s\n\n\n%s\n\n%s\n\n\n\n%s\n\n\n", q->method, clen,
                             ctype ? ctype : "",
                             q->if_none_match ? q->if_none_match : "")))
            goto out;
        for (size_t i = 0; i < nx; i++)
            if ((rc = buf_printf(&sts, "%s\n", xms_sorted[i])))
                goto out;
        if ((rc = buf_printf(&sts, "/%s%s", az->account, az->path_base)) ||
            (rc = buf_add(&sts, path.data, path.len)))
            goto out;
        for (const struct az_query *p = q->query; p && p->name; p++)
            if ((rc = buf_printf(&sts, "\n%s:%s", p->name, p->value)))
                goto out;
        unsigned char mac[32];
        remote_hmac_sha256(az->key.data, az->key.len, sts.data, sts.len, mac);
        if ((rc = buf_printf(&auth, "Authorization: SharedKey %s:", az->account)) ||
            (rc = base64_encode(mac, sizeof mac, &auth)))
            goto out;
        headers[nh++] = auth.data;
    }
    headers[nh] = NULL;

    struct http_request req = {
        .method = q->method,
        .url = url.data,
        .headers = headers,
        .body = has_body ? (q->body ? q->body : "") : NULL,
        .body_len = has_body ? q->body_len : 0,
        .max_response = q->max_response,
        .timeout_s = remote_request_timeout_s(&az->r, has_body ? q->body_len : 0,
                                              q->max_response),
        .retry_unsafe = true, /* every Blob operation used here is idempotent */
        .bearer_cb = az->identity ? az_bearer : NULL,
        .bearer_ctx = az,
    };
    rc = remote_perform(&az->r, &req, resp, err);
out:
    for (size_t i = 0; i < ns; i++)
        free(hdr_store[i]);
    if (rc == -ENOMEM)
        dverr_set(err, rc, "azure: out of memory");
    buf_release(&url);
    buf_release(&path);
    buf_release(&sts);
    buf_release(&auth);
    buf_release(&sig);
    return rc;
}

static int az_create_container(struct azure *az, struct dverr *err)
{
    static const struct az_query q[] = {{"restype", "container"}, {NULL, NULL}};
    struct http_response resp;
    http_response_init(&resp);
    struct az_req r = {.method = "PUT", .query = q};
    int rc = az_do(az, &r, &resp, err);
    if (rc == 0 && resp.status != 409)
        rc = remote_status(&az->r, &resp, "create container", az->container, err);
    http_response_release(&resp);
    return rc;
}

/* A write request; creates the container once when it is missing. */
static int az_write(struct azure *az, const struct az_req *r, const char *op, struct dverr *err)
{
    struct http_response resp;
    http_response_init(&resp);
    int rc = az_do(az, r, &resp, err);
    if (rc == 0 && resp.status == 404 && remote_body_has_code(&resp, "ContainerNotFound")) {
        rc = az_create_container(az, err);
        if (rc == 0)
            rc = az_do(az, r, &resp, err);
    }
    if (rc == 0)
        rc = remote_status(&az->r, &resp, op, r->blob, err);
    http_response_release(&resp);
    return rc;
}

static void block_id(unsigned n, char out[32])
{
    char raw[24];
    snprintf(raw, sizeof raw, "dvsnap-block-%06u", n); /* 19 bytes, fixed length */
    struct buf b = BUF_INIT;
    base64_encode(raw, strlen(raw), &b);
    snprintf(out, 32, "%s", b.data ? b.data : "");
    buf_release(&b);
}

/* Upload in blocks: blocks come from the callback (into blk), then the list is committed. */
static int az_put_blocks(void *drv, const char *name, uint64_t total, remote_fill_fn fill,
                         void *ctx, struct dverr *err)
{
    struct azure *az = drv;
    struct buf blk = BUF_INIT, list = BUF_INIT;
    unsigned n = 0;
    int rc = buf_addstr(&list, "<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>");
    for (uint64_t off = 0; rc == 0 && off < total; off += az->r.block_size, n++) {
        size_t len = (size_t)(total - off < az->r.block_size ? total - off : az->r.block_size);
        char id[32];
        block_id(n, id);
        buf_reset(&blk);
        if ((rc = fill(ctx, off, len, &blk)))
            break;
        struct az_query q[] = {{"blockid", id}, {"comp", "block"}, {NULL, NULL}};
        struct az_req r = {.method = "PUT", .blob = name, .query = q,
                           .body = blk.data, .body_len = blk.len};
        if ((rc = az_write(az, &r, "put block", err)))
            break;
        rc = buf_printf(&list, "<Latest>%s</Latest>", id);
    }
    if (rc == 0)
        rc = buf_addstr(&list, "</BlockList>");
    if (rc == 0) {
        static const struct az_query q[] = {{"comp", "blocklist"}, {NULL, NULL}};
        static const char *const x[] = {"x-ms-blob-content-type:application/octet-stream", NULL};
        struct az_req r = {.method = "PUT", .blob = name, .query = q, .xms = x,
                           .content_type = "application/xml", .body = list.data,
                           .body_len = list.len};
        rc = az_write(az, &r, "put block list", err);
    }
    if (rc == -ENOMEM)
        dverr_set(err, rc, "azure: out of memory");
    buf_release(&blk);
    buf_release(&list);
    return rc;
}

static int az_put_object(void *drv, const char *name, const void *data, size_t len,
                         bool if_absent, struct dverr *err)
{
    static const char *const x[] = {"x-ms-blob-type:BlockBlob", NULL};
    struct az_req r = {.method = "PUT", .blob = name, .xms = x,
                       .content_type = "application/octet-stream",
                       .if_none_match = if_absent ? "*" : NULL, .body = data, .body_len = len};
    return az_write(drv, &r, if_absent ? "put if absent" : "put", err);
}

static int az_fetch(void *drv, const char *method, const char *name, const char *range,
                    uint64_t max_response, struct http_response *resp, struct dverr *err)
{
    char xr[80];
    const char *x[] = {xr, NULL};
    snprintf(xr, sizeof xr, "x-ms-range:%s", range ? range : "");
    struct az_req r = {.method = method, .blob = name, .xms = range ? x : NULL,
                       .max_response = max_response};
    return az_do(drv, &r, resp, err);
}

static const struct remote_ops az_remote_ops = {
    .put_object = az_put_object,
    .put_blocks = az_put_blocks,
    .fetch = az_fetch,
};

static int az_list(void *impl, const char *prefix,
                   int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                   struct dverr *err)
{
    struct azure *az = impl;
    if (!remote_name_ok(prefix, true))
        return dverr_set(err, -EINVAL, "azure: invalid list prefix");
    struct buf full = BUF_INIT, marker = BUF_INIT;
    struct http_response resp;
    http_response_init(&resp);
    char page[16];
    snprintf(page, sizeof page, "%d", az->r.list_page);
    int rc = buf_printf(&full, "%s%s", az->prefix, prefix);
    if (rc)
        goto out;
    for (;;) {
        /* sorted by name, as the canonical resource wants */
        struct az_query q[6];
        size_t nq = 0;
        q[nq++] = (struct az_query){"comp", "list"};
        if (marker.len)
            q[nq++] = (struct az_query){"marker", marker.data};
        q[nq++] = (struct az_query){"maxresults", page};
        if (full.len)
            q[nq++] = (struct az_query){"prefix", full.data};
        q[nq++] = (struct az_query){"restype", "container"};
        q[nq] = (struct az_query){NULL, NULL};
        struct az_req r = {.method = "GET", .query = q, .max_response = 16u << 20};
        if ((rc = az_do(az, &r, &resp, err)))
            goto out;
        if (resp.status == 404 && remote_body_has_code(&resp, "ContainerNotFound"))
            goto out; /* no container yet: nothing stored */
        if ((rc = remote_status(&az->r, &resp, "list", prefix, err)))
            goto out;
        const char *x = resp.body.data ? resp.body.data : "";
        size_t xl = resp.body.len, pos = 0;
        if ((rc = remote_list_entries(&az->r, &resp, "Blob", "Name", "Content-Length",
                                      az->prefix, fn, ctx, err)))
            goto out;
        buf_reset(&marker);
        if (!remote_xml_next(x, xl, &pos, "NextMarker", &marker) || marker.len == 0)
            break;
        char *copy = strdup(marker.data);
        if (!copy) {
            rc = dverr_set(err, -ENOMEM, "azure: out of memory");
            goto out;
        }
        buf_reset(&marker);
        buf_addstr(&marker, copy);
        free(copy);
    }
out:
    http_response_release(&resp);
    buf_release(&full);
    buf_release(&marker);
    return rc;
}

static int az_del(void *impl, const char *name, struct dverr *err)
{
    struct azure *az = impl;
    int rc = remote_check_name(&az->r, name, err);
    if (rc)
        return rc;
    struct http_response resp;
    http_response_init(&resp);
    struct az_req r = {.method = "DELETE", .blob = name};
    if ((rc = az_do(az, &r, &resp, err)) == 0)
        rc = remote_status(&az->r, &resp, "delete", name, err);
    http_response_release(&resp);
    return rc;
}

static int az_retain(void *impl, const char *name, time_t until, struct dverr *err)
{
    struct azure *az = impl;
    if (!az->lock_mode)
        return dverr_set(err, -ENOTSUP, "azure: object_lock is off");
    int rc = remote_check_name(&az->r, name, err);
    if (rc)
        return rc;
    struct http_response resp;
    struct buf have = BUF_INIT;
    http_response_init(&resp);
    if ((rc = az_fetch(az, "HEAD", name, NULL, 0, &resp, err)) == 0)
        rc = remote_status(&az->r, &resp, "stat", name, err);
    if (rc)
        goto out;
    if (http_response_header(&resp, "x-ms-immutability-policy-until-date", &have) && have.data &&
        http_date_parse(have.data) >= until)
        goto out; /* kept long enough already */
    {
        char date[40], xd[80], xm[64];
        remote_http_date(until, date);
        snprintf(xd, sizeof xd, "x-ms-immutability-policy-until-date:%s", date);
        snprintf(xm, sizeof xm, "x-ms-immutability-policy-mode:%s", az->lock_mode);
        const char *x[] = {xd, xm, NULL};
        static const struct az_query q[] = {{"comp", "immutabilityPolicies"}, {NULL, NULL}};
        struct az_req r = {.method = "PUT", .blob = name, .query = q, .xms = x};
        rc = az_write(az, &r, "set immutability policy", err);
    }
out:
    http_response_release(&resp);
    buf_release(&have);
    return rc;
}

static void az_free(void *impl)
{
    struct azure *az = impl;
    if (!az)
        return;
    auth_free(az->identity); /* before the transport it borrows */
    remote_release(&az->r);
    free(az->account);
    free(az->container);
    free(az->prefix);
    free(az->endpoint);
    free(az->path_base);
    if (az->key.data)
        memset(az->key.data, 0, az->key.cap);
    buf_release(&az->key);
    if (az->sas)
        memset(az->sas, 0, strlen(az->sas));
    free(az->sas);
    free(az);
}

static const struct objstore_ops azure_ops = {
    .put = remote_put,
    .put_file = remote_put_file,
    .put_if_absent = remote_put_if_absent,
    .get = remote_get,
    .stat = remote_stat,
    .list = az_list,
    .del = az_del,
    .free = az_free,
    .retain = az_retain,
};

static bool container_name_ok(const char *c)
{
    size_t n = strlen(c);
    if (n < 3 || n > 63 || c[0] == '-' || c[n - 1] == '-')
        return false;
    for (const char *p = c; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) ||
              (*p == '-' && p[1] != '-')))
            return false;
    return true;
}

/* Load the credential: a SAS token (contains "sig=") or a base64 Shared Key. */
static int az_load_credential(struct azure *az, const struct config *cfg, const char *location,
                              struct dverr *err)
{
    struct buf secret = BUF_INIT;
    int rc = 0;
    if (cfg && cfg->azure_key_file) {
        if ((rc = config_read_secret_file(cfg->azure_key_file, &secret, err)))
            goto out;
    } else if (getenv("AZURE_STORAGE_SAS_TOKEN") && *getenv("AZURE_STORAGE_SAS_TOKEN")) {
        rc = buf_addstr(&secret, getenv("AZURE_STORAGE_SAS_TOKEN"));
    } else if (getenv("AZURE_STORAGE_KEY") && *getenv("AZURE_STORAGE_KEY")) {
        rc = buf_addstr(&secret, getenv("AZURE_STORAGE_KEY"));
    } else {
        rc = dverr_set(err, -EINVAL,
                       "%s: no credential: set azure_key_file (a file of mode 0600 with the "
                       "account key or a SAS token) or AZURE_STORAGE_KEY",
                       location);
        goto out;
    }
    if (rc)
        goto out;
    /* trim whitespace */
    size_t a = 0, b = secret.len;
    while (a < b && isspace((unsigned char)secret.data[a]))
        a++;
    while (b > a && isspace((unsigned char)secret.data[b - 1]))
        b--;
    const char *s = secret.data ? secret.data + a : "";
    size_t n = b - a;
    if (memmem(s, n, "sig=", 4)) {
        if (n && s[0] == '?') {
            s++;
            n--;
        }
        az->sas = strndup(s, n);
        if (!az->sas)
            rc = dverr_set(err, -ENOMEM, "out of memory");
    } else if (remote_base64_decode(s, n, &az->key) || az->key.len == 0) {
        rc = dverr_set(err, -EINVAL,
                       "%s: the Azure credential is neither a base64 account key nor a SAS token",
                       location);
    }
out:
    if (secret.data)
        memset(secret.data, 0, secret.cap);
    buf_release(&secret);
    return rc;
}

/* azure_auth = managed-identity | workload-identity: the token source (after remote_init: it
 * borrows the driver's transport). */
static int az_identity(struct azure *az, const struct config *cfg, const char *location,
                       struct dverr *err)
{
    const char *client_id = cfg->azure_client_id ? cfg->azure_client_id : getenv("AZURE_CLIENT_ID");
    struct auth_options ao = {
        .transport = az->r.http,
        .retry = &az->r.retry,
        .client_id = client_id,
    };
    struct buf url = BUF_INIT;
    int rc = 0;
    if (strcmp(cfg->azure_auth, "managed-identity") == 0) {
        ao.grant = AUTH_MANAGED_IDENTITY;
        ao.token_url = cfg->azure_identity_endpoint ? cfg->azure_identity_endpoint
                                                    : AZURE_IMDS_TOKEN_URL;
    } else {
        ao.grant = AUTH_CLIENT_ASSERTION;
        ao.assertion_file = cfg->azure_federated_token_file ? cfg->azure_federated_token_file
                                                            : getenv("AZURE_FEDERATED_TOKEN_FILE");
        if (!ao.assertion_file || !*ao.assertion_file || !client_id || !*client_id)
            return dverr_set(err, -EINVAL,
                             "%s: workload identity needs azure_federated_token_file (or "
                             "AZURE_FEDERATED_TOKEN_FILE) and azure_client_id (or "
                             "AZURE_CLIENT_ID)",
                             location);
        if (cfg->azure_identity_endpoint) {
            ao.token_url = cfg->azure_identity_endpoint;
        } else {
            const char *host = getenv("AZURE_AUTHORITY_HOST"), *tenant = getenv("AZURE_TENANT_ID");
            if (!tenant || !*tenant)
                return dverr_set(err, -EINVAL,
                                 "%s: workload identity needs azure_identity_endpoint or "
                                 "AZURE_TENANT_ID",
                                 location);
            if (!host || !*host)
                host = "https://login.microsoftonline.com/";
            if (buf_printf(&url, "%s%s%s/oauth2/v2.0/token", host,
                           host[strlen(host) - 1] == '/' ? "" : "/", tenant))
                return dverr_set(err, -ENOMEM, "out of memory");
            ao.token_url = url.data;
        }
    }
    rc = auth_new(&ao, &az->identity, err);
    buf_release(&url);
    if (rc)
        return dverr_set(err, rc, "%s: %s", location, "cannot set up the Azure identity");
    return 0;
}

int objstore_azure_open(const char *location, const struct config *cfg, struct objstore **out,
                        struct dverr *err)
{
    *out = NULL;
    struct azure *az = calloc(1, sizeof *az);
    struct objstore *s = calloc(1, sizeof *s);
    char *rest = NULL;
    int rc = 0;
    if (!az || !s) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = remote_split_location(location, "azure", &az->account, &rest, err)))
        goto fail;
    /* rest = CONTAINER[/PREFIX] */
    char *slash = strchr(rest, '/');
    az->container = slash ? strndup(rest, (size_t)(slash - rest)) : strdup(rest);
    const char *pfx = slash ? slash + 1 : "";
    az->prefix = malloc(strlen(pfx) + 2);
    if (!az->container || !az->prefix) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(az->prefix, strlen(pfx) + 2, "%s%s", pfx, *pfx ? "/" : "");
    if (!container_name_ok(az->container)) {
        rc = dverr_set(err, -EINVAL,
                       "%s: expected azure://ACCOUNT/CONTAINER[/PREFIX] with a container name "
                       "of 3-63 lower-case letters, digits and single hyphens",
                       location);
        goto fail;
    }
    if (!remote_name_ok(pfx, true)) {
        rc = dverr_set(err, -EINVAL, "%s: the prefix may hold only [A-Za-z0-9._/-]", location);
        goto fail;
    }
    for (const char *p = az->account; *p; p++)
        if (!isalnum((unsigned char)*p)) {
            rc = dverr_set(err, -EINVAL, "%s: invalid storage account name", location);
            goto fail;
        }
    struct buf ep = BUF_INIT;
    if (cfg && cfg->azure_endpoint && *cfg->azure_endpoint)
        rc = buf_addstr(&ep, cfg->azure_endpoint);
    else
        rc = buf_printf(&ep, "https://%s.blob.core.windows.net", az->account);
    if (rc) {
        buf_release(&ep);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    while (ep.len && ep.data[ep.len - 1] == '/')
        ep.data[--ep.len] = '\0';
    az->endpoint = buf_detach(&ep);
    const char *hs = strstr(az->endpoint, "://");
    const char *pp = hs ? strchr(hs + 3, '/') : NULL;
    az->path_base = strdup(pp ? pp : "");
    if (!az->path_base || !hs) {
        rc = dverr_set(err, hs ? -ENOMEM : -EINVAL, "%s: bad azure_endpoint", location);
        goto fail;
    }
    bool identity = cfg && cfg->azure_auth && strcmp(cfg->azure_auth, "key") != 0;
    if (identity && cfg->azure_key_file) {
        rc = dverr_set(err, -EINVAL, "%s: azure_auth = %s and azure_key_file are both set; "
                                     "choose one", location, cfg->azure_auth);
        goto fail;
    }
    if (!identity && (rc = az_load_credential(az, cfg, location, err)))
        goto fail;
    if ((rc = remote_init(&az->r, "azure", &az_remote_ops, az, cfg, err)))
        goto fail;
    if (identity && (rc = az_identity(az, cfg, location, err)))
        goto fail;
    int lock = config_object_lock(cfg);
    az->lock_mode = lock == CONFIG_LOCK_COMPLIANCE   ? "Locked"
                    : lock == CONFIG_LOCK_GOVERNANCE ? "Unlocked"
                                                     : NULL;
    az->r.sizes = s->sizes = objstore_sizes_new();
    az->r.cred_hint = identity ? " (check the identity's role on the storage account)"
                      : cfg && cfg->azure_key_file
                          ? " (check the key or SAS token in azure_key_file and the clock)"
                          : " (check AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN and the clock)";
    if (!getenv("DVSNAP_OBJSTORE_LIST_PAGE"))
        az->r.list_page = 5000; /* List Blobs allows 5000 per page (S3: 1000) */
    s->ops = &azure_ops;
    s->impl = az;
    s->location = strdup(location);
    if (!s->location) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    free(rest);
    *out = s;
    return 0;
fail:
    free(rest);
    az_free(az);
    if (s) {
        free(s->location);
        objstore_sizes_free(s->sizes);
    }
    free(s);
    return rc;
}
