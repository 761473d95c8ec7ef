/* auth: the token cache (client secret, managed identity, workload identity) and AWS
 * instance-profile credentials (see auth.h).
 *
 * A singly linked list of entries, one per resource, guarded by one mutex; a condition variable
 * lets threads wait while another thread fetches the same resource. Expiry uses the monotonic
 * clock. Token and metadata responses are parsed with json.h and capped at 64 KiB; the federated
 * token file is read whole (at most 16 KiB, TOKEN_MAX_LEN, like a token) at every request and
 * wiped after it. */
#include "backend/net/auth.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/base/log.h"

#define TOKEN_RESPONSE_MAX (64u << 10)
#define TOKEN_BAD_BODY_RETRIES 4 /* 200 answers with malformed JSON asked for again */
#define TOKEN_MAX_LEN (16u << 10)

struct auth_entry {
    struct auth_entry *next;
    char *resource;
    char *token;            /* NULL until fetched */
    int64_t refresh_at_ms;  /* now_ms() after which the token is fetched again */
    int64_t expires_at_ms;  /* after which it is not used at all */
    bool fetching;
};

struct auth {
    pthread_mutex_t lock;        /* guards entries and every field of every entry */
    pthread_cond_t changed;      /* signalled when a fetch ends */
    struct auth_entry *entries;
    enum auth_grant grant;
    char *token_url, *client_id; /* client_id may be NULL for a managed identity */
    char *assertion_file;
    char *secret;
    size_t secret_len;
    struct http_transport *transport;
    struct http_retry retry;
    struct http_counters *counters;
    atomic_ulong fetches;
};

int auth_new(const struct auth_options *o, struct auth **out, struct dverr *err)
{
    *out = NULL;
    if (!o->token_url || !*o->token_url)
        return dverr_set(err, -EINVAL, "token_url is not configured");
    if (o->grant != AUTH_MANAGED_IDENTITY && (!o->client_id || !*o->client_id))
        return dverr_set(err, -EINVAL, "client_id is not configured");
    if (o->grant == AUTH_CLIENT_SECRET && (!o->secret || !o->secret_len))
        return dverr_set(err, -EINVAL, "the client secret is empty");
    if (o->grant == AUTH_CLIENT_ASSERTION && (!o->assertion_file || !*o->assertion_file))
        return dverr_set(err, -EINVAL, "no federated token file is configured");
    struct auth *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->changed, NULL);
    a->grant = o->grant;
    a->token_url = strdup(o->token_url);
    a->client_id = o->client_id && *o->client_id ? strdup(o->client_id) : NULL;
    a->assertion_file = o->assertion_file ? strdup(o->assertion_file) : NULL;
    a->secret = malloc(o->secret_len + 1);
    if (!a->token_url || (o->client_id && *o->client_id && !a->client_id) ||
        (o->assertion_file && !a->assertion_file) || !a->secret) {
        auth_free(a);
        return -ENOMEM;
    }
    if (o->secret_len)
        memcpy(a->secret, o->secret, o->secret_len);
    a->secret[o->secret_len] = '\0';
    a->secret_len = o->secret_len;
    a->transport = o->transport;
    if (o->retry)
        a->retry = *o->retry;
    a->counters = o->counters;
    *out = a;
    return 0;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    struct auth_entry *e = a->entries;
    while (e) {
        struct auth_entry *n = e->next;
        free(e->resource);
        free_secret(e->token);
        free(e);
        e = n;
    }
    if (a->secret) {
        explicit_bzero(a->secret, a->secret_len);
        free(a->secret);
    }
    free(a->token_url);
    free(a->client_id);
    free(a->assertion_file);
    pthread_cond_destroy(&a->changed);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

unsigned long auth_fetch_count(struct auth *a) { return atomic_load(&a->fetches); }

/* application/x-www-form-urlencoded value. */
static int form_add(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~')
            rc = buf_addch(b, (char)c);
        else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_add(b, e, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

/* Copy a short printable excerpt of s for an error message. */
static void excerpt(const char *s, char *out, unsigned n) { log_escape(s ? s : "", out, n); }

/* One token request; on success *token (caller frees) and *lifetime_s. */
static int fetch_token(struct auth *a, const char *resource, char **token, int64_t *lifetime_s,
                       struct dverr *err)
{
    struct buf body = BUF_INIT;
    struct http_response resp;
    struct json_doc *doc = NULL;
    int rc;
    struct buf url = BUF_INIT, assertion = BUF_INIT;
    http_response_init(&resp);
    static const char *const form_headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                               "Accept: application/json", NULL};
    static const char *const imds_headers[] = {"Metadata: true", "Accept: application/json",
                                               NULL};
    struct http_request req = {
        .method = "POST",
        .url = a->token_url,
        .headers = form_headers,
        .max_response = TOKEN_RESPONSE_MAX,
        .retry_unsafe = true, /* a token request has no side effect */
    };
    if (a->grant == AUTH_MANAGED_IDENTITY) {
        /* GET <endpoint>?api-version=2018-02-01&resource=R[&client_id=C] */
        if ((rc = buf_printf(&url, "%s%capi-version=2018-02-01&resource=", a->token_url,
                             strchr(a->token_url, '?') ? '&' : '?')) ||
            (rc = form_add(&url, resource, strlen(resource))))
            goto out;
        if (a->client_id && ((rc = buf_addstr(&url, "&client_id=")) ||
                             (rc = form_add(&url, a->client_id, strlen(a->client_id)))))
            goto out;
        req.method = "GET";
        req.url = url.data;
        req.headers = imds_headers;
    } else {
        const char *cred = a->secret;
        size_t cred_len = a->secret_len;
        if (a->grant == AUTH_CLIENT_ASSERTION) {
            /* the platform rotates the federated token: read it at every request */
            if ((rc = read_file(a->assertion_file, TOKEN_MAX_LEN, &assertion))) {
                rc = dverr_set(err, rc, "the federated token file %s: %s", a->assertion_file,
                               strerror(-rc));
                goto out;
            }
            while (assertion.len && (assertion.data[assertion.len - 1] == '\n' ||
                                     assertion.data[assertion.len - 1] == '\r'))
                assertion.data[--assertion.len] = '\0';
            if (!assertion.len) {
                rc = dverr_set(err, -EACCES, "the federated token file %s is empty",
                               a->assertion_file);
                goto out;
            }
            cred = assertion.data;
            cred_len = assertion.len;
        }
        /* The body is sized up front so no realloc leaves a copy of the secret behind. */
        if ((rc = buf_reserve(&body, 3 * (cred_len + strlen(a->client_id) + strlen(resource)) +
                                         256)))
            goto out;
        if ((rc = buf_addstr(&body, "grant_type=client_credentials&client_id=")) ||
            (rc = form_add(&body, a->client_id, strlen(a->client_id))) ||
            (rc = buf_addstr(&body, "&scope=")) ||
            (rc = form_add(&body, resource, strlen(resource))) ||
            (rc = form_add(&body, "/.default", 9)))
            goto out;
        if (a->grant == AUTH_CLIENT_ASSERTION)
            rc = buf_addstr(&body, "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3A"
                                   "client-assertion-type%3Ajwt-bearer&client_assertion=");
        else
            rc = buf_addstr(&body, "&client_secret=");
        if (rc || (rc = form_add(&body, cred, cred_len)))
            goto out;
        req.body = body.data;
        req.body_len = body.len;
    }
    int jrc;
    /* a 200 whose JSON is cut short is asked for again (a token request has no side effect) */
    for (int bad = 0;; bad++) {
        atomic_fetch_add(&a->fetches, 1);
        struct dverr herr = {0};
        rc = http_perform_retry(a->transport, &req, &a->retry, a->counters, &resp, &herr);
        if (rc) {
            rc = dverr_set(err, rc, "token request failed: %s", dverr_msg(&herr));
            goto out;
        }
        struct dverr jerr = {0};
        jrc = resp.body.len ? json_parse(resp.body.data, resp.body.len, NULL, &doc, &jerr)
                            : -EINVAL;
        if (jrc == 0 || resp.status != 200 || bad == TOKEN_BAD_BODY_RETRIES)
            break;
        log_warn("the token endpoint answered malformed JSON (%s); asking again", dverr_msg(&jerr));
        json_doc_free(doc);
        doc = NULL;
        explicit_bzero(resp.body.data, resp.body.len);
        http_response_release(&resp);
        http_response_init(&resp);
    }
    const struct json_node *root = jrc == 0 ? json_root(doc) : NULL;
    if (resp.status != 200) {
        char code[96], desc[256];
        excerpt(root ? json_get_str(root, "error") : NULL, code, sizeof(code));
        excerpt(root ? json_get_str(root, "error_description") : NULL, desc, sizeof(desc));
        rc = http_status_to_errno(resp.status);
        if (resp.status == 400 || resp.status == 401 || resp.status == 403)
            rc = -EACCES;
        rc = dverr_set(err, rc, "the identity provider refused a token for %.200s (HTTP %ld%s%s%s%s)",
                       resource, resp.status, code[0] ? ": " : "", code, desc[0] ? ": " : "",
                       desc);
        goto out;
    }
    const char *tok = root ? json_get_str(root, "access_token") : NULL;
    if (!tok || !*tok || strlen(tok) > TOKEN_MAX_LEN || strpbrk(tok, "\r\n \t")) {
        rc = dverr_set(err, -EPROTO, "the token endpoint answered without a usable access_token");
        goto out;
    }
    const struct json_node *exp = json_get(root, "expires_in");
    int64_t life = 3600;
    if (exp && (exp->type == JSON_NUMBER || exp->type == JSON_STRING)) {
        char *end;
        long long v = strtoll(exp->str, &end, 10);
        if (end != exp->str && v > 0)
            life = v;
    }
    if (!(*token = strdup(tok))) {
        rc = -ENOMEM;
        goto out;
    }
    *lifetime_s = life;
    rc = 0;
out:
    if (doc) {
        /* The parsed document holds a copy of the token; the arena is freed below. */
        json_doc_free(doc);
    }
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    http_response_release(&resp);
    buf_release_secret(&body);
    buf_release_secret(&assertion);
    buf_release(&url);
    return rc;
}

static struct auth_entry *find_entry(struct auth *a, const char *resource)
{
    for (struct auth_entry *e = a->entries; e; e = e->next)
        if (strcmp(e->resource, resource) == 0)
            return e;
    return NULL;
}

int auth_token(struct auth *a, const char *resource, struct buf *out, struct dverr *err)
{
    int rc = 0;
    buf_reset(out);
    pthread_mutex_lock(&a->lock);
    struct auth_entry *e = find_entry(a, resource);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->resource = strdup(resource))) {
            free(e);
            pthread_mutex_unlock(&a->lock);
            return dverr_set(err, -ENOMEM, "out of memory");
        }
        e->next = a->entries;
        a->entries = e;
    }
    for (;;) {
        int64_t now = now_ms();
        if (e->token && now < e->refresh_at_ms) {
            rc = buf_addstr(out, e->token);
            break;
        }
        if (e->fetching) {
            /* Someone else is fetching; a still-valid token may be used meanwhile. */
            if (e->token && now < e->expires_at_ms) {
                rc = buf_addstr(out, e->token);
                break;
            }
            pthread_cond_wait(&a->changed, &a->lock);
            continue;
        }
        e->fetching = true;
        pthread_mutex_unlock(&a->lock);
        char *tok = NULL;
        int64_t life = 0;
        struct dverr ferr = {0};
        int frc = fetch_token(a, resource, &tok, &life, &ferr);
        pthread_mutex_lock(&a->lock);
        e->fetching = false;
        pthread_cond_broadcast(&a->changed);
        if (frc) {
            rc = dverr_set(err, frc, "%s", dverr_msg(&ferr));
            break;
        }
        int64_t margin = life / 4 < 300 ? life / 4 : 300;
        now = now_ms();
        free_secret(e->token);
        e->token = tok;
        e->expires_at_ms = now + life * 1000 - 1000;
        e->refresh_at_ms = now + (life - margin) * 1000;
        log_debug("auth: new token for %s, valid %lld s", resource, (long long)life);
        rc = buf_addstr(out, e->token);
        break;
    }
    pthread_mutex_unlock(&a->lock);
    return rc;
}

void auth_invalidate(struct auth *a, const char *resource, const char *token)
{
    pthread_mutex_lock(&a->lock);
    struct auth_entry *e = find_entry(a, resource);
    if (e && e->token && token && strcmp(e->token, token) == 0) {
        free_secret(e->token);
        e->token = NULL;
    }
    pthread_mutex_unlock(&a->lock);
}

/* ---------------------------------------------------------------- AWS instance profile */

void aws_credentials_release(struct aws_credentials *c)
{
    free_secret(c->access_key_id);
    free_secret(c->secret_access_key);
    free_secret(c->session_token);
    memset(c, 0, sizeof *c);
}

/* One IMDS request; the body (trimmed) into out. */
static int imds_request(struct http_transport *t, const struct http_retry *retry,
                        const char *method, const char *url, const char *header, struct buf *out,
                        struct dverr *err)
{
    const char *headers[] = {header, NULL};
    struct http_request req = {
        .method = method,
        .url = url,
        .headers = headers,
        .max_response = TOKEN_RESPONSE_MAX,
        .retry_unsafe = true, /* the session-token PUT has no side effect */
    };
    struct http_response resp;
    http_response_init(&resp);
    struct dverr herr = {0};
    int rc = http_perform_retry(t, &req, retry, NULL, &resp, &herr);
    if (rc) {
        rc = dverr_set(err, rc, "instance metadata: %s", dverr_msg(&herr));
    } else if (resp.status != 200) {
        rc = http_status_to_errno(resp.status);
        if (resp.status == 401 || resp.status == 403 || resp.status == 404)
            rc = -EACCES;
        rc = dverr_set(err, rc, "instance metadata: %s %s answered HTTP %ld%s", method,
                       strstr(url, "/latest/") ? strstr(url, "/latest/") : "", resp.status,
                       resp.status == 404 ? " (no instance profile attached?)" : "");
    } else {
        size_t n = resp.body.len;
        while (n && (resp.body.data[n - 1] == '\n' || resp.body.data[n - 1] == '\r' ||
                     resp.body.data[n - 1] == ' '))
            n--;
        rc = buf_add(out, resp.body.data ? resp.body.data : "", n);
    }
    if (resp.body.data)
        explicit_bzero(resp.body.data, resp.body.len);
    http_response_release(&resp);
    return rc;
}

static bool printable_token(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] >= 127)
            return false;
    return true;
}

int auth_aws_instance_credentials(struct http_transport *t, const struct http_retry *retry,
                                  const char *endpoint, struct aws_credentials *out,
                                  struct dverr *err)
{
    struct buf url = BUF_INIT, token = BUF_INIT, hdr = BUF_INIT, role = BUF_INIT;
    struct buf doc_text = BUF_INIT;
    struct json_doc *doc = NULL;
    memset(out, 0, sizeof *out);
    int rc;
    /* 1. a session token (IMDSv2) */
    if ((rc = buf_printf(&url, "%s/latest/api/token", endpoint)) ||
        (rc = imds_request(t, retry, "PUT", url.data,
                           "X-aws-ec2-metadata-token-ttl-seconds: 21600", &token, err)))
        goto out;
    if (!printable_token(token.data, token.len)) {
        rc = dverr_set(err, -EPROTO, "instance metadata: a malformed session token");
        goto out;
    }
    if ((rc = buf_printf(&hdr, "X-aws-ec2-metadata-token: %s", token.data)))
        goto out;
    /* 2. the role's name */
    buf_reset(&url);
    if ((rc = buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/", endpoint)) ||
        (rc = imds_request(t, retry, "GET", url.data, hdr.data, &role, err)))
        goto out;
    if (role.data && strchr(role.data, '\n'))
        role.len = (size_t)(strchr(role.data, '\n') - role.data);
    for (size_t i = 0; i < role.len; i++) {
        char c = role.data[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("+=,.@_-", c)))
            role.len = 0;
    }
    if (!role.len || role.len > 128) {
        rc = dverr_set(err, -EACCES, "instance metadata: no instance profile role");
        goto out;
    }
    /* 3. its credentials */
    buf_reset(&url);
    if ((rc = buf_printf(&url, "%s/latest/meta-data/iam/security-credentials/%.*s", endpoint,
                         (int)role.len, role.data)) ||
        (rc = imds_request(t, retry, "GET", url.data, hdr.data, &doc_text, err)))
        goto out;
    if (json_parse(doc_text.data ? doc_text.data : "", doc_text.len, NULL, &doc, NULL)) {
        rc = dverr_set(err, -EPROTO, "instance metadata: the credentials are not JSON");
        goto out;
    }
    const struct json_node *r = json_root(doc);
    const char *code = json_get_str(r, "Code");
    const char *ak = json_get_str(r, "AccessKeyId"), *sk = json_get_str(r, "SecretAccessKey");
    const char *st = json_get_str(r, "Token"), *exp = json_get_str(r, "Expiration");
    if (code && strcmp(code, "Success") != 0) {
        char esc[96];
        rc = dverr_set(err, -EACCES, "instance metadata: the credentials' Code is %s",
                       log_escape(code, esc, sizeof esc));
        goto out;
    }
    if (!ak || !sk || !printable_token(ak, strlen(ak)) || !printable_token(sk, strlen(sk)) ||
        strchr(ak, ':') || (st && !printable_token(st, strlen(st)))) {
        rc = dverr_set(err, -EPROTO, "instance metadata: the credentials lack AccessKeyId or "
                                     "SecretAccessKey");
        goto out;
    }
    out->access_key_id = strdup(ak);
    out->secret_access_key = strdup(sk);
    out->session_token = st && *st ? strdup(st) : NULL;
    if (exp && rfc3339_to_time(exp, &out->expires_at))
        out->expires_at = 0;
    if (!out->access_key_id || !out->secret_access_key || (st && *st && !out->session_token))
        rc = dverr_set(err, -ENOMEM, "out of memory");
out:
    if (rc)
        aws_credentials_release(out);
    json_doc_free(doc);
    buf_release_secret(&doc_text);
    buf_release_secret(&token);
    buf_release_secret(&hdr);
    buf_release(&role);
    buf_release(&url);
    return rc;
}
