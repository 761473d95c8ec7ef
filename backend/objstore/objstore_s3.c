/* objstore_s3: the S3 driver (struct objstore_ops over backend/http.h).
 *
 * Location s3://BUCKET/PREFIX. Endpoint: cfg->s3_endpoint, path style (ENDPOINT/BUCKET/KEY), else
 * https://s3.REGION.amazonaws.com. Region cfg->s3_region (default us-east-1). Credentials:
 * cfg->s3_credentials_file (mode 0600, "ACCESS_KEY_ID SECRET_ACCESS_KEY" on one line, or the
 * aws_access_key_id = / aws_secret_access_key = lines of an AWS credentials file), else
 * $AWS_ACCESS_KEY_ID / $AWS_SECRET_ACCESS_KEY (+ $AWS_SESSION_TOKEN); or, with s3_auth =
 * instance-profile, the instance profile's temporary credentials from the instance metadata
 * service (IMDSv2 at aws_metadata_endpoint, default http://169.254.169.254; backend/net/auth.h),
 * fetched at open and again 5 minutes before they expire. Requests are signed with
 * Signature V4 by the transport (libcurl's CURLOPT_AWS_SIGV4); the driver sends
 * x-amz-content-sha256 with the real SHA-256 of every body (S3 checks it on arrival), builds query
 * strings already in canonical form (sorted, RFC 3986 encoded) so the signature does not depend on
 * the libcurl version's query handling. Credentials are never logged.
 *
 * Operations: PUT (below the part size), multipart upload above it (the object appears whole at
 * CompleteMultipartUpload; aborted on failure), GET with Range, HEAD (stat), ListObjectsV2 with
 * continuation-token, DELETE (after a HEAD, since S3 answers 204 for a missing key and the contract
 * wants -ENOENT). put_if_absent is a HEAD followed by PUT with If-None-Match: * (AWS S3 and MinIO
 * enforce it, as does the test server, s3rver behind tests/node/s3front.js: 412 -> -EEXIST;
 * servers that ignore the header, such as s3rver alone, leave a race window between the HEAD and
 * the PUT). No "Expect:" header: libcurl before 8.3 would sign it (see http.c). The shared
 * operations (put, put_file, get, stat) are objstore_remote.c's. The bucket is created on first
 * write when missing.
 * Object lock (issue 16; cfg->object_lock governance or compliance): retain sets an object's
 * retention with PutObjectRetention (PUT ?retention, with the Content-MD5 S3 requires for it)
 * after GetObjectRetention showed it shorter, so it only ever extends; a bucket the driver creates
 * is created with Object Lock enabled (x-amz-bucket-object-lock-enabled, which turns versioning
 * on). Objects are written without lock headers: the point they belong to, hence their date, is
 * known only when it is committed (repo_capture.c locks everything it names then).
 * Limits: parts are uploaded one after another (8 MiB, 10,000 parts: 78 GiB). Thread-safe: the
 * struct is read-only after open. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <pthread.h>

#include "backend/net/auth.h"
#include "backend/objstore/objstore.h"
#include "backend/objstore/objstore_remote.h"

#define S3_CRED_MARGIN_S 300 /* instance-profile credentials are renewed this long before expiry */

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct s3 {
    struct remote r;  /* first: impl is also a struct remote * (objstore_remote.h) */
    char *bucket;
    char *prefix;     /* "" or "p/q/" */
    char *endpoint;   /* no trailing '/' */
    char *sigv4;      /* "aws:amz:REGION:s3" */
    pthread_mutex_t cred_lock; /* guards userpwd, session and cred_expires (instance profile) */
    char *userpwd;    /* "AK:SK"; never logged */
    char *session;    /* "x-amz-security-token: ..." or NULL */
    char *imds;       /* instance profile: the metadata endpoint; NULL: fixed credentials */
    time_t cred_expires; /* instance profile: when userpwd and session expire (0: never said) */
    const char *lock_mode; /* "GOVERNANCE", "COMPLIANCE", or NULL (object_lock off) */
};

/* Instance profile: fetch credentials (cred_lock held). */
static int s3_refresh_credentials(struct s3 *s, struct dverr *err)
{
    struct aws_credentials c;
    int rc = auth_aws_instance_credentials(s->r.http, &s->r.retry, s->imds, &c, err);
    if (rc)
        return rc;
    struct buf up = BUF_INIT, tok = BUF_INIT;
    if (buf_printf(&up, "%s:%s", c.access_key_id, c.secret_access_key) ||
        (c.session_token && buf_printf(&tok, "x-amz-security-token: %s", c.session_token))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
    } else {
        free_secret(s->userpwd);
        free_secret(s->session);
        s->userpwd = buf_detach(&up);
        s->session = c.session_token ? buf_detach(&tok) : NULL;
        s->cred_expires = c.expires_at;
    }
    buf_release_secret(&up);
    buf_release_secret(&tok);
    aws_credentials_release(&c);
    return rc;
}

/* Copies of the credentials for one request (renewed first when they are about to expire). */
static int s3_credentials(struct s3 *s, char **userpwd, char **session, struct dverr *err)
{
    int rc = 0;
    *userpwd = *session = NULL;
    pthread_mutex_lock(&s->cred_lock);
    if (s->imds && s->cred_expires && time(NULL) + S3_CRED_MARGIN_S >= s->cred_expires)
        rc = s3_refresh_credentials(s, err);
    if (rc == 0 && ((s->userpwd && !(*userpwd = strdup(s->userpwd))) ||
                    (s->session && !(*session = strdup(s->session)))))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    pthread_mutex_unlock(&s->cred_lock);
    return rc;
}

struct s3_query {
    const char *name;
    const char *value; /* unencoded; "" for a bare flag */
};

struct s3_req {
    const char *method;
    const char *key;                /* object name without prefix; NULL for bucket requests */
    const struct s3_query *query;   /* sorted by name, NULL-name terminated, or NULL */
    const char *const *headers;     /* extra header lines, NULL-terminated */
    const void *body;
    size_t body_len;
    uint64_t max_response;
    bool unsafe;                    /* POST: retry anyway (idempotent by construction) */
};

static int s3_do(struct s3 *s, const struct s3_req *q, struct http_response *resp,
                 struct dverr *err)
{
    struct buf url = BUF_INIT;
    const char *headers[16];
    size_t nh = 0;
    char sha[65], shahdr[100];
    char *userpwd = NULL, *session = NULL;
    int rc;
    if ((rc = s3_credentials(s, &userpwd, &session, err)))
        return rc;
    if ((rc = buf_addstr(&url, s->endpoint)) || (rc = buf_addch(&url, '/')) ||
        (rc = buf_urlencode(&url, s->bucket, false)))
        goto out;
    if (q->key) {
        if ((rc = buf_addch(&url, '/')) || (rc = buf_urlencode(&url, s->prefix, true)) ||
            (rc = buf_urlencode(&url, q->key, true)))
            goto out;
    } else if ((rc = buf_addch(&url, '/'))) {
        goto out;
    }
    char sep = '?';
    for (const struct s3_query *p = q->query; p && p->name; p++) {
        if ((rc = buf_addch(&url, sep)) || (rc = buf_urlencode(&url, p->name, false)) ||
            (rc = buf_addch(&url, '=')) || (rc = buf_urlencode(&url, p->value, false)))
            goto out;
        sep = '&';
    }
    bool has_body = strcmp(q->method, "PUT") == 0 || strcmp(q->method, "POST") == 0;
    if (has_body && q->body_len)
        sha256_hex(q->body, q->body_len, sha);
    else
        snprintf(sha, sizeof sha, "%s", EMPTY_SHA256);
    snprintf(shahdr, sizeof shahdr, "x-amz-content-sha256: %s", sha);
    headers[nh++] = shahdr;
    if (session)
        headers[nh++] = session;
    for (const char *const *h = q->headers; h && *h && nh < 15; h++)
        headers[nh++] = *h;
    headers[nh] = NULL;
    struct http_request req = {
        .method = q->method,
        .url = url.data,
        .headers = headers,
        .body = has_body ? (q->body ? q->body : "") : NULL,
        .body_len = has_body ? q->body_len : 0,
        .aws_sigv4 = userpwd ? s->sigv4 : NULL,
        .userpwd = userpwd,
        .max_response = q->max_response,
        .timeout_s = remote_request_timeout_s(&s->r, has_body ? q->body_len : 0,
                                              q->max_response),
        .retry_unsafe = q->unsafe,
    };
    rc = remote_perform(&s->r, &req, resp, err);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "s3: out of memory");
    free_secret(userpwd);
    free_secret(session);
    buf_release(&url);
    return rc;
}

static int s3_create_bucket(struct s3 *s, struct dverr *err)
{
    struct http_response resp;
    http_response_init(&resp);
    static const char *const lock[] = {"x-amz-bucket-object-lock-enabled: true", NULL};
    struct s3_req r = {.method = "PUT", .headers = s->lock_mode ? lock : NULL};
    int rc = s3_do(s, &r, &resp, err);
    if (rc == 0 && resp.status != 409) /* BucketAlreadyOwnedByYou */
        rc = remote_status(&s->r, &resp, "create bucket", s->bucket, err);
    http_response_release(&resp);
    return rc;
}

/* A write; creates the bucket once when it is missing. resp may be NULL. */
static int s3_write(struct s3 *s, const struct s3_req *r, const char *op,
                    struct http_response *keep, struct dverr *err)
{
    struct http_response local;
    struct http_response *resp = keep ? keep : &local;
    if (!keep)
        http_response_init(&local);
    int rc = s3_do(s, r, resp, err);
    if (rc == 0 && resp->status == 404 && remote_body_has_code(resp, "NoSuchBucket")) {
        rc = s3_create_bucket(s, err);
        if (rc == 0)
            rc = s3_do(s, r, resp, err);
    }
    if (rc == 0)
        rc = remote_status(&s->r, resp, op, r->key, err);
    if (!keep)
        http_response_release(&local);
    return rc;
}

static int s3_multipart(void *drv, const char *name, uint64_t total, remote_fill_fn fill,
                        void *ctx, struct dverr *err)
{
    struct s3 *s = drv;
    struct http_response resp;
    struct buf id = BUF_INIT, blk = BUF_INIT, list = BUF_INIT, etag = BUF_INIT;
    http_response_init(&resp);
    static const struct s3_query init_q[] = {{"uploads", ""}, {NULL, NULL}};
    static const char *const ct[] = {"Content-Type: application/octet-stream", NULL};
    struct s3_req init = {.method = "POST", .key = name, .query = init_q, .headers = ct,
                          .unsafe = true};
    int rc = s3_write(s, &init, "start multipart upload", &resp, err);
    if (rc)
        goto out;
    size_t pos = 0;
    if (!remote_xml_next(resp.body.data, resp.body.len, &pos, "UploadId", &id) || !id.len) {
        rc = dverr_set(err, -EIO, "s3 multipart %s: no UploadId in the answer", name);
        goto out;
    }
    if ((rc = buf_addstr(&list, "<CompleteMultipartUpload>")))
        goto out;
    unsigned part = 1;
    for (uint64_t off = 0; off < total; off += s->r.block_size, part++) {
        size_t len = (size_t)(total - off < s->r.block_size ? total - off : s->r.block_size);
        buf_reset(&blk);
        if ((rc = fill(ctx, off, len, &blk))) {
            dverr_set(err, rc, "s3 multipart %s: reading the data: %s", name, strerror(-rc));
            goto abort;
        }
        char pn[16];
        snprintf(pn, sizeof pn, "%u", part);
        struct s3_query q[] = {{"partNumber", pn}, {"uploadId", id.data}, {NULL, NULL}};
        struct s3_req r = {.method = "PUT", .key = name, .query = q, .body = blk.data,
                           .body_len = blk.len};
        if ((rc = s3_write(s, &r, "upload part", &resp, err)))
            goto abort;
        if (!http_response_header(&resp, "ETag", &etag) || !etag.len) {
            rc = dverr_set(err, -EIO, "s3 multipart %s: no ETag for part %u", name, part);
            goto abort;
        }
        /* ETags are hex in quotes: safe inside XML as is, but escape '&' and '<' anyway */
        if ((rc = buf_printf(&list, "<Part><PartNumber>%u</PartNumber><ETag>", part)))
            goto abort;
        for (size_t i = 0; i < etag.len && rc == 0; i++)
            rc = etag.data[i] == '&'   ? buf_addstr(&list, "&amp;")
                 : etag.data[i] == '<' ? buf_addstr(&list, "&lt;")
                                       : buf_addch(&list, etag.data[i]);
        if (rc || (rc = buf_addstr(&list, "</ETag></Part>")))
            goto abort;
    }
    if ((rc = buf_addstr(&list, "</CompleteMultipartUpload>")))
        goto abort;
    {
        struct s3_query q[] = {{"uploadId", id.data}, {NULL, NULL}};
        static const char *const xml[] = {"Content-Type: application/xml", NULL};
        struct s3_req r = {.method = "POST", .key = name, .query = q, .headers = xml,
                           .body = list.data, .body_len = list.len, .unsafe = true};
        if ((rc = s3_write(s, &r, "complete multipart upload", &resp, err)))
            goto abort;
        /* S3 can answer 200 with an <Error> body here */
        if (resp.body.data && strstr(resp.body.data, "<Error>")) {
            resp.status = 500;
            rc = remote_status(&s->r, &resp, "complete multipart upload", name, err);
            goto abort;
        }
    }
    goto out;
abort: {
    struct s3_query q[] = {{"uploadId", id.data}, {NULL, NULL}};
    struct s3_req r = {.method = "DELETE", .key = name, .query = q};
    struct dverr ignore = {0};
    s3_do(s, &r, &resp, &ignore);
}
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "s3: out of memory");
    http_response_release(&resp);
    buf_release(&id);
    buf_release(&blk);
    buf_release(&list);
    buf_release(&etag);
    return rc;
}

/* put_if_absent: a HEAD first (a server that ignores If-None-Match then only leaves the window
 * between the two requests), then PUT with If-None-Match: * (412 -> -EEXIST). */
static int s3_put_object(void *drv, const char *name, const void *data, size_t len,
                         bool if_absent, struct dverr *err)
{
    struct s3 *s = drv;
    if (if_absent) {
        uint64_t sz;
        struct dverr e2 = {0};
        int rc = remote_stat(&s->r, name, &sz, &e2);
        if (rc == 0)
            return dverr_set(err, -EEXIST, "s3 put if absent %s: the object exists", name);
        if (rc != -ENOENT)
            return dverr_set(err, rc, "%s", e2.msg);
    }
    const char *h[] = {"Content-Type: application/octet-stream",
                       if_absent ? "If-None-Match: *" : NULL, NULL};
    struct s3_req r = {.method = "PUT", .key = name, .headers = h, .body = data, .body_len = len};
    return s3_write(s, &r, if_absent ? "put if absent" : "put", NULL, err);
}

static int s3_fetch(void *drv, const char *method, const char *name, const char *range,
                    uint64_t max_response, struct http_response *resp, struct dverr *err)
{
    char hr[80];
    const char *h[] = {hr, NULL};
    snprintf(hr, sizeof hr, "Range: %s", range ? range : "");
    struct s3_req r = {.method = method, .key = name, .headers = range ? h : NULL,
                       .max_response = max_response};
    return s3_do(drv, &r, resp, err);
}

static const struct remote_ops s3_remote_ops = {
    .put_object = s3_put_object,
    .put_blocks = s3_multipart,
    .fetch = s3_fetch,
};

static int s3_list(void *impl, const char *prefix,
                   int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                   struct dverr *err)
{
    struct s3 *s = impl;
    if (!remote_name_ok(prefix, true))
        return dverr_set(err, -EINVAL, "s3: invalid list prefix");
    struct buf full = BUF_INIT, token = BUF_INIT, tr = BUF_INIT;
    struct http_response resp;
    http_response_init(&resp);
    char page[16];
    snprintf(page, sizeof page, "%d", s->r.list_page);
    int rc = buf_printf(&full, "%s%s", s->prefix, prefix);
    if (rc)
        goto out;
    for (;;) {
        struct s3_query q[5];
        size_t nq = 0;
        char *tok = token.len ? strdup(token.data) : NULL;
        if (token.len && !tok) {
            rc = dverr_set(err, -ENOMEM, "s3: out of memory");
            goto out;
        }
        if (tok)
            q[nq++] = (struct s3_query){"continuation-token", tok};
        q[nq++] = (struct s3_query){"list-type", "2"};
        q[nq++] = (struct s3_query){"max-keys", page};
        q[nq++] = (struct s3_query){"prefix", full.data};
        q[nq] = (struct s3_query){NULL, NULL};
        struct s3_req r = {.method = "GET", .query = q, .max_response = 16u << 20};
        rc = s3_do(s, &r, &resp, err);
        free(tok);
        if (rc)
            goto out;
        if (resp.status == 404 && remote_body_has_code(&resp, "NoSuchBucket"))
            goto out; /* no bucket yet: nothing stored */
        if ((rc = remote_status(&s->r, &resp, "list", prefix, err)))
            goto out;
        const char *x = resp.body.data ? resp.body.data : "";
        size_t xl = resp.body.len, pos = 0;
        if ((rc = remote_list_entries(&s->r, &resp, "Contents", "Key", "Size", s->prefix, fn,
                                      ctx, err)))
            goto out;
        bool truncated = remote_xml_next(x, xl, &pos, "IsTruncated", &tr) &&
                         strcmp(tr.data, "true") == 0;
        buf_reset(&token);
        pos = 0;
        if (!truncated || !remote_xml_next(x, xl, &pos, "NextContinuationToken", &token) ||
            !token.len)
            break;
    }
out:
    http_response_release(&resp);
    buf_release(&full);
    buf_release(&token);
    buf_release(&tr);
    return rc;
}

static int s3_del(void *impl, const char *name, struct dverr *err)
{
    struct s3 *s = impl;
    uint64_t sz;
    int rc = remote_stat(&s->r, name, &sz, err);
    if (rc)
        return rc;
    struct http_response resp;
    http_response_init(&resp);
    struct s3_req r = {.method = "DELETE", .key = name};
    if ((rc = s3_do(s, &r, &resp, err)) == 0)
        rc = remote_status(&s->r, &resp, "delete", name, err);
    http_response_release(&resp);
    return rc;
}

/* GetObjectRetention: the object's retain-until date into *until (0 when it has none). */
static int s3_retention_get(struct s3 *s, const char *name, time_t *until, struct dverr *err)
{
    *until = 0;
    static const struct s3_query q[] = {{"retention", ""}, {NULL, NULL}};
    struct s3_req r = {.method = "GET", .key = name, .query = q, .max_response = 64 << 10};
    struct http_response resp;
    struct buf d = BUF_INIT;
    http_response_init(&resp);
    int rc = s3_do(s, &r, &resp, err);
    if (rc == 0 && resp.status == 404 &&
        remote_body_has_code(&resp, "NoSuchObjectLockConfiguration"))
        goto out; /* none yet */
    if (rc == 0)
        rc = remote_status(&s->r, &resp, "get retention", name, err);
    size_t pos = 0;
    if (rc == 0 && resp.body.data &&
        remote_xml_next(resp.body.data, resp.body.len, &pos, "RetainUntilDate", &d) &&
        d.data && rfc3339_to_time(d.data, until)) /* "2026-12-07T15:30:00.000Z" */
        *until = 0;
out:
    http_response_release(&resp);
    buf_release(&d);
    return rc;
}

static int s3_retain(void *impl, const char *name, time_t until, struct dverr *err)
{
    struct s3 *s = impl;
    if (!s->lock_mode)
        return dverr_set(err, -ENOTSUP, "s3: object_lock is off");
    time_t have;
    int rc = s3_retention_get(s, name, &have, err);
    if (rc)
        return rc;
    if (have >= until)
        return 0;
    char date[32];
    rfc3339_from_time(until, date);
    struct buf body = BUF_INIT, md5 = BUF_INIT, hdr = BUF_INIT;
    unsigned char digest[16];
    unsigned int dl = 0;
    if (buf_printf(&body, "<Retention xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                          "<Mode>%s</Mode><RetainUntilDate>%s</RetainUntilDate></Retention>",
                   s->lock_mode, date) ||
        !EVP_Digest(body.data, body.len, digest, &dl, EVP_md5(), NULL) ||
        base64_encode(digest, dl, &md5) || buf_printf(&hdr, "Content-MD5: %s", md5.data)) {
        rc = dverr_set(err, -ENOMEM, "s3: out of memory");
        goto out;
    }
    {
        static const struct s3_query q[] = {{"retention", ""}, {NULL, NULL}};
        const char *h[] = {"Content-Type: application/xml", hdr.data, NULL};
        struct s3_req r = {.method = "PUT", .key = name, .query = q, .headers = h,
                           .body = body.data, .body_len = body.len};
        rc = s3_write(s, &r, "put retention", NULL, err);
    }
out:
    buf_release(&body);
    buf_release(&md5);
    buf_release(&hdr);
    return rc;
}

static void s3_free(void *impl)
{
    struct s3 *s = impl;
    if (!s)
        return;
    remote_release(&s->r);
    free(s->bucket);
    free(s->prefix);
    free(s->endpoint);
    free(s->sigv4);
    free(s->imds);
    free_secret(s->userpwd);
    free_secret(s->session);
    pthread_mutex_destroy(&s->cred_lock);
    free(s);
}

static const struct objstore_ops s3_ops = {
    .put = remote_put,
    .put_file = remote_put_file,
    .put_if_absent = remote_put_if_absent,
    .get = remote_get,
    .stat = remote_stat,
    .list = s3_list,
    .del = s3_del,
    .free = s3_free,
    .retain = s3_retain,
};

static bool token_ok(const char *t)
{
    for (; *t; t++)
        if (!isgraph((unsigned char)*t) || *t == ':')
            return false;
    return true;
}

/* "AK SK" on one line, or AWS credentials-file lines. */
static int s3_parse_credentials(const char *text, char **ak, char **sk)
{
    *ak = *sk = NULL;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[512];
        if (n < sizeof line) {
            memcpy(line, p, n);
            line[n] = '\0';
            char *l = line;
            while (isspace((unsigned char)*l))
                l++;
            char *end = l + strlen(l);
            while (end > l && isspace((unsigned char)end[-1]))
                *--end = '\0';
            char *eq = strchr(l, '=');
            if (eq) {
                char *k = l, *v = eq + 1;
                char *ke = eq;
                while (ke > k && isspace((unsigned char)ke[-1]))
                    ke--;
                *ke = '\0';
                while (isspace((unsigned char)*v))
                    v++;
                if (strcmp(k, "aws_access_key_id") == 0 && !*ak)
                    *ak = strdup(v);
                else if (strcmp(k, "aws_secret_access_key") == 0 && !*sk)
                    *sk = strdup(v);
            } else if (*l && *l != '#' && *l != '[' && !*ak) {
                char *sp = l;
                while (*sp && !isspace((unsigned char)*sp))
                    sp++;
                if (*sp) {
                    *sp++ = '\0';
                    while (isspace((unsigned char)*sp))
                        sp++;
                    *ak = strdup(l);
                    *sk = strdup(sp);
                }
            }
            memset(line, 0, sizeof line);
        }
        if (!e)
            break;
        p = e + 1;
    }
    if (!*ak || !*sk || !**ak || !**sk || !token_ok(*ak) || !token_ok(*sk)) {
        free_secret(*ak);
        free_secret(*sk);
        *ak = *sk = NULL;
        return -EINVAL;
    }
    return 0;
}

static int s3_load_credentials(struct s3 *s, const struct config *cfg, const char *location,
                               struct dverr *err)
{
    char *ak = NULL, *sk = NULL;
    int rc = 0;
    if (cfg && cfg->s3_credentials_file) {
        struct buf secret = BUF_INIT;
        if ((rc = config_read_secret_file(cfg->s3_credentials_file, &secret, err)))
            return rc;
        rc = s3_parse_credentials(secret.data ? secret.data : "", &ak, &sk);
        if (secret.data)
            memset(secret.data, 0, secret.cap);
        buf_release(&secret);
        if (rc)
            return dverr_set(err, -EINVAL,
                             "%s: s3_credentials_file holds no \"ACCESS_KEY_ID SECRET_KEY\" line",
                             location);
    } else {
        const char *a = getenv("AWS_ACCESS_KEY_ID"), *k = getenv("AWS_SECRET_ACCESS_KEY");
        if (!a || !*a || !k || !*k)
            return dverr_set(err, -EINVAL,
                             "%s: no credentials: set s3_credentials_file (mode 0600) or "
                             "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                             location);
        if (!token_ok(a) || !token_ok(k))
            return dverr_set(err, -EINVAL, "%s: malformed AWS credentials", location);
        ak = strdup(a);
        sk = strdup(k);
        const char *t = getenv("AWS_SESSION_TOKEN");
        if (t && *t && token_ok(t)) {
            size_t n = strlen(t) + 32;
            s->session = malloc(n);
            if (s->session)
                snprintf(s->session, n, "x-amz-security-token: %s", t);
        }
    }
    if (!ak || !sk) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t n = strlen(ak) + strlen(sk) + 2;
    s->userpwd = malloc(n);
    if (!s->userpwd) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    snprintf(s->userpwd, n, "%s:%s", ak, sk);
out:
    free_secret(ak);
    free_secret(sk);
    return rc;
}

static bool bucket_name_ok(const char *b)
{
    size_t n = strlen(b);
    if (n < 3 || n > 63 || !isalnum((unsigned char)b[0]) || !isalnum((unsigned char)b[n - 1]))
        return false;
    for (const char *p = b; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.'))
            return false;
    return true;
}

int objstore_s3_open(const char *location, const struct config *cfg, struct objstore **out,
                     struct dverr *err)
{
    *out = NULL;
    struct s3 *s = calloc(1, sizeof *s);
    struct objstore *o = calloc(1, sizeof *o);
    char *rest = NULL;
    int rc = 0;
    if (s)
        pthread_mutex_init(&s->cred_lock, NULL);
    if (!s || !o) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = remote_split_location(location, "s3", &s->bucket, &rest, err)))
        goto fail;
    if (!bucket_name_ok(s->bucket)) {
        rc = dverr_set(err, -EINVAL,
                       "%s: expected s3://BUCKET[/PREFIX] with a bucket name of 3-63 lower-case "
                       "letters, digits, '-' and '.'",
                       location);
        goto fail;
    }
    if (!remote_name_ok(rest, true)) {
        rc = dverr_set(err, -EINVAL, "%s: the prefix may hold only [A-Za-z0-9._/-]", location);
        goto fail;
    }
    size_t pl = strlen(rest) + 2;
    s->prefix = malloc(pl);
    const char *region = cfg && cfg->s3_region && *cfg->s3_region ? cfg->s3_region : "us-east-1";
    for (const char *p = region; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-')) {
            rc = dverr_set(err, -EINVAL, "%s: invalid s3_region", location);
            goto fail;
        }
    struct buf ep = BUF_INIT, sv = BUF_INIT;
    if (cfg && cfg->s3_endpoint && *cfg->s3_endpoint)
        rc = buf_addstr(&ep, cfg->s3_endpoint);
    else
        rc = buf_printf(&ep, "https://s3.%s.amazonaws.com", region);
    if (!rc)
        rc = buf_printf(&sv, "aws:amz:%s:s3", region);
    if (rc || !s->prefix) {
        buf_release(&ep);
        buf_release(&sv);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    snprintf(s->prefix, pl, "%s%s", rest, *rest ? "/" : "");
    while (ep.len && ep.data[ep.len - 1] == '/')
        ep.data[--ep.len] = '\0';
    s->endpoint = buf_detach(&ep);
    s->sigv4 = buf_detach(&sv);
    if (!strstr(s->endpoint, "://")) {
        rc = dverr_set(err, -EINVAL, "%s: bad s3_endpoint", location);
        goto fail;
    }
    bool profile = cfg && cfg->s3_auth && strcmp(cfg->s3_auth, "instance-profile") == 0;
    if (profile && cfg->s3_credentials_file) {
        rc = dverr_set(err, -EINVAL, "%s: s3_auth = instance-profile and s3_credentials_file are "
                                     "both set; choose one", location);
        goto fail;
    }
    if (!profile && (rc = s3_load_credentials(s, cfg, location, err)))
        goto fail;
    if ((rc = remote_init(&s->r, "s3", &s3_remote_ops, s, cfg, err)))
        goto fail;
    if (profile) {
        const char *imds = cfg->aws_metadata_endpoint ? cfg->aws_metadata_endpoint
                                                      : "http://169.254.169.254";
        if (!(s->imds = strdup(imds))) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            goto fail;
        }
        pthread_mutex_lock(&s->cred_lock);
        rc = s3_refresh_credentials(s, err);
        pthread_mutex_unlock(&s->cred_lock);
        if (rc)
            goto fail;
    }
    int lock = config_object_lock(cfg);
    s->lock_mode = lock == CONFIG_LOCK_COMPLIANCE   ? "COMPLIANCE"
                   : lock == CONFIG_LOCK_GOVERNANCE ? "GOVERNANCE"
                                                    : NULL;
    s->r.sizes = o->sizes = objstore_sizes_new();
    s->r.cred_hint = profile ? " (check the instance profile's role, s3_region and the clock)"
                     : cfg && cfg->s3_credentials_file
                         ? " (check the keys in s3_credentials_file, s3_region and the clock)"
                         : " (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, s3_region and the "
                           "clock)";
    o->ops = &s3_ops;
    o->impl = s;
    o->location = strdup(location);
    if (!o->location) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    free(rest);
    *out = o;
    return 0;
fail:
    free(rest);
    s3_free(s);
    if (o) {
        free(o->location);
        objstore_sizes_free(o->sizes);
    }
    free(o);
    return rc;
}
