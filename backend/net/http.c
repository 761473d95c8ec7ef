/* http: the libcurl transport and the shared retry policy (see http.h).
 *
 * Transport: a small pool of CURL easy handles behind a mutex. A request takes a handle out of
 * the pool (or makes one), uses it alone, resets it and puts it back, so keep-alive connections,
 * TLS sessions and DNS entries are reused while no handle is ever used by two threads at once.
 * Redirects are followed here, not by curl: at most 5, only to the same origin (scheme, host,
 * port), so headers (the bearer) can never leave the origin. Allowed schemes: https, and http to
 * loopback hosts and to the instance-metadata address (169.254.169.254, fd00:ec2::254: Azure
 * managed identity and AWS instance profiles answer there in cleartext only); curl is also
 * restricted to http/https, so file:// and friends never run.
 * Bodies are capped in the write callback (curl's MAXFILESIZE only sees Content-Length).
 *
 * Retry (http_perform_retry): see http.h. Waits sleep in slices of 50 ms so a cancel flag stops
 * them quickly; a shared hold_until gate makes every thread of a client respect a Retry-After.
 * Threading: the transport and http_perform_retry are thread-safe. */
#include "backend/net/http.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "backend/base/log.h"

#define HTTP_POOL_MAX 16
#define HTTP_MAX_REDIRECTS 5
#define HTTP_DEFAULT_MAX_RESPONSE (256ull << 20)
#define HTTP_MAX_HEADER_BYTES (256u << 10)

void http_response_init(struct http_response *r)
{
    r->status = 0;
    r->streamed = 0;
    buf_init(&r->body);
    buf_init(&r->headers);
}

void http_response_release(struct http_response *r)
{
    buf_release(&r->body);
    buf_release(&r->headers);
    r->status = 0;
}

bool http_response_header(const struct http_response *r, const char *name, struct buf *out)
{
    size_t nlen = strlen(name);
    const char *p = r->headers.data;
    if (!p)
        return false;
    const char *end = p + r->headers.len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            eol = end;
        if ((size_t)(eol - p) > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            buf_reset(out);
            if (buf_add(out, v, (size_t)(ve - v)))
                return false;
            if (!out->data && buf_addstr(out, ""))
                return false;
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* ---- URL helpers ---- */

struct url_parts {
    char *scheme, *host, *port, *path;
};

static void url_parts_release(struct url_parts *u)
{
    curl_free(u->scheme);
    curl_free(u->host);
    curl_free(u->port);
    curl_free(u->path);
    memset(u, 0, sizeof(*u));
}

/* Parse an absolute URL (lower-cased scheme and host, default port filled in, dot segments
 * removed). -EINVAL when it is not an absolute URL with a host. */
static int url_parse(const char *url, struct url_parts *u)
{
    memset(u, 0, sizeof(*u));
    CURLU *h = curl_url();
    if (!h)
        return -ENOMEM;
    int rc = -EINVAL;
    if (curl_url_set(h, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto out;
    if (curl_url_get(h, CURLUPART_SCHEME, &u->scheme, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_HOST, &u->host, 0) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PORT, &u->port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(h, CURLUPART_PATH, &u->path, 0) != CURLUE_OK) {
        url_parts_release(u);
        goto out;
    }
    for (char *p = u->scheme; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    for (char *p = u->host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    rc = 0;
out:
    curl_url_cleanup(h);
    return rc;
}

bool http_same_origin(const char *a, const char *b)
{
    struct url_parts ua, ub;
    if (url_parse(a, &ua))
        return false;
    if (url_parse(b, &ub)) {
        url_parts_release(&ua);
        return false;
    }
    bool r = strcmp(ua.scheme, ub.scheme) == 0 && strcmp(ua.host, ub.host) == 0 &&
             strcmp(ua.port, ub.port) == 0;
    url_parts_release(&ua);
    url_parts_release(&ub);
    return r;
}

bool http_url_within(const char *url, const char *base)
{
    if (!http_same_origin(url, base))
        return false;
    struct url_parts uu, ub;
    if (url_parse(url, &uu))
        return false;
    if (url_parse(base, &ub)) {
        url_parts_release(&uu);
        return false;
    }
    bool r = false;
    /* Encoded dots or slashes could be decoded by the server into another path: refuse. */
    for (const char *p = uu.path; *p; p++)
        if (*p == '%' && (strncasecmp(p, "%2e", 3) == 0 || strncasecmp(p, "%2f", 3) == 0 ||
                          strncasecmp(p, "%5c", 3) == 0))
            goto out;
    if (strchr(uu.path, '\\'))
        goto out;
    size_t bl = strlen(ub.path);
    while (bl && ub.path[bl - 1] == '/')
        bl--;
    if (bl == 0) {
        r = true;
        goto out;
    }
    r = strncmp(uu.path, ub.path, bl) == 0 && (uu.path[bl] == '/' || uu.path[bl] == '\0');
out:
    url_parts_release(&uu);
    url_parts_release(&ub);
    return r;
}

/* https anywhere; http only to loopback and to the cloud instance-metadata address (util.h). */
static int url_scheme_allowed(const char *url, struct dverr *err)
{
    struct url_parts u;
    if (url_parse(url, &u))
        return dverr_set(err, -EPERM, "refused a URL that is not absolute http(s)");
    int rc = 0;
    if (strcmp(u.scheme, "https") == 0)
        rc = 0;
    else if (strcmp(u.scheme, "http") == 0 &&
             (host_is_loopback(u.host) || host_is_metadata_service(u.host)))
        rc = 0;
    else if (strcmp(u.scheme, "http") == 0)
        rc = dverr_set(err, -EPERM, "refused cleartext http:// to %.200s (https is required "
                                    "except on loopback and the instance-metadata address)",
                       u.host);
    else
        rc = dverr_set(err, -EPERM, "refused URL scheme %.20s", u.scheme);
    url_parts_release(&u);
    return rc;
}

/* ---- errno mapping ---- */

int http_status_to_errno(long status)
{
    if (status >= 200 && status < 300)
        return 0;
    switch (status) {
    case 0: return -EIO;
    case 400: return -EINVAL;
    case 401: case 403: return -EACCES;
    case 404: case 410: return -ENOENT;
    case 405: case 501: return -EOPNOTSUPP;
    case 408: case 504: return -ETIMEDOUT;
    case 409: case 412: return -EEXIST;
    case 413: return -EFBIG;
    case 429: return -EBUSY;
    case 503: return -EAGAIN;
    default: return -EIO;
    }
}

static int curl_to_errno(CURLcode c)
{
    switch (c) {
    case CURLE_OK: return 0;
    case CURLE_COULDNT_CONNECT: return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return -EHOSTUNREACH;
    case CURLE_OPERATION_TIMEDOUT: return -ETIMEDOUT;
    case CURLE_SEND_ERROR: case CURLE_RECV_ERROR: case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
        return -ECONNRESET;
    case CURLE_FILESIZE_EXCEEDED: return -EFBIG;
    case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_ISSUER_ERROR: case CURLE_SSL_INVALIDCERTSTATUS:
        return -EPERM;
    case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT: return -EPERM;
    case CURLE_OUT_OF_MEMORY: return -ENOMEM;
    case CURLE_BAD_CONTENT_ENCODING: case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_SSL_CONNECT_ERROR: case CURLE_SSL_SHUTDOWN_FAILED:
        return -EPROTO;
    case CURLE_READ_ERROR: return -EIO;
    default: return -EIO;
    }
}

/* ---- the curl transport ---- */

struct curl_transport {
    pthread_mutex_t lock;          /* guards pool, n_pool */
    CURL *pool[HTTP_POOL_MAX];
    int n_pool;
    struct http_options opts;
    char *ca_file;
};

struct xfer {
    const struct http_request *req;
    struct http_response *resp;
    CURL *h;
    uint64_t cap;
    uint64_t received;
    bool too_big;
    bool aborted;                  /* on_body asked to stop */
    int abort_rc;
    bool headers_too_big;
    bool streaming_decided, streaming;
    FILE *upload;
};

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    struct xfer *x = ctx;
    size_t len = size * n;
    /* A new status line starts a new header block (100 Continue, then the final one). */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
        buf_reset(&x->resp->headers);
    if (x->resp->headers.len + len > HTTP_MAX_HEADER_BYTES) {
        x->headers_too_big = true;
        return 0;
    }
    if (buf_add(&x->resp->headers, data, len))
        return 0;
    return len;
}

static size_t on_write(char *data, size_t size, size_t n, void *ctx)
{
    struct xfer *x = ctx;
    size_t len = size * n;
    if (x->received + len > x->cap) {
        x->too_big = true;
        return 0;
    }
    x->received += len;
    if (!x->streaming_decided) {
        long status = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
        x->streaming = x->req->on_body && status >= 200 && status < 300;
        x->streaming_decided = true;
    }
    if (x->streaming) {
        x->resp->streamed += len;
        int rc = x->req->on_body(x->req->on_body_ctx, data, len);
        if (rc) {
            x->aborted = true;
            x->abort_rc = rc;
            return 0;
        }
        return len;
    }
    if (buf_add(&x->resp->body, data, len))
        return 0;
    return len;
}

static size_t on_read(char *buffer, size_t size, size_t n, void *ctx)
{
    struct xfer *x = ctx;
    size_t r = fread(buffer, size, n, x->upload);
    if (r == 0 && ferror(x->upload))
        return CURL_READFUNC_ABORT;
    return r;
}

static CURL *pool_get(struct curl_transport *ct)
{
    CURL *h = NULL;
    pthread_mutex_lock(&ct->lock);
    if (ct->n_pool > 0)
        h = ct->pool[--ct->n_pool];
    pthread_mutex_unlock(&ct->lock);
    return h ? h : curl_easy_init();
}

static void pool_put(struct curl_transport *ct, CURL *h)
{
    curl_easy_reset(h); /* keeps live connections, TLS sessions and the DNS cache */
    pthread_mutex_lock(&ct->lock);
    if (ct->n_pool < HTTP_POOL_MAX) {
        ct->pool[ct->n_pool++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&ct->lock);
    if (h)
        curl_easy_cleanup(h);
}

static bool method_is(const char *m, const char *x) { return strcmp(m, x) == 0; }

/* One HTTP exchange (no redirect handling) on handle h. */
static int curl_once(struct curl_transport *ct, CURL *h, const struct http_request *req,
                     const char *url, const char *method, bool send_body,
                     struct http_response *resp, struct dverr *err)
{
    struct curl_slist *hdrs = NULL, *tmp;
    struct buf auth = BUF_INIT;
    char errbuf[CURL_ERROR_SIZE] = "";
    struct xfer x = {.req = req, .resp = resp, .h = h,
                     .cap = req->max_response ? req->max_response : HTTP_DEFAULT_MAX_RESPONSE};
    int rc = 0;

    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    resp->status = 0;
    resp->streamed = 0;

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (ct->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, ct->ca_file);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, (long)ct->opts.connect_timeout_s);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, (long)(req->timeout_s > 0 ? req->timeout_s
                                                                    : ct->opts.timeout_s));
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)ct->opts.low_speed_time_s);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x.cap);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "dvsnap/0.1");

    if (method_is(method, "GET")) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (method_is(method, "HEAD")) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (send_body && req->upload_file) {
        struct stat st;
        if (!(x.upload = fopen(req->upload_file, "rbe")) || fstat(fileno(x.upload), &st)) {
            rc = dverr_set(err, -errno, "%s: %s", req->upload_file, strerror(errno));
            goto out;
        }
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &x);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)st.st_size);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    } else {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)(send_body && req->body ? req->body_len : 0));
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, send_body && req->body ? req->body : "");
        if (!method_is(method, "POST"))
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }

    /* No "Expect: 100-continue" round trip. Not with SigV4: libcurl before 8.3 signs a removal
     * header ("Expect:") as if it were sent, which AWS refuses (curl issue 11664); libcurl adds its
     * own Expect after signing, unsigned, as AWS wants. */
    if (!req->aws_sigv4) {
        if (!(tmp = curl_slist_append(hdrs, "Expect:")))
            goto nomem;
        hdrs = tmp;
    }
    for (const char *const *p = req->headers; p && *p; p++) {
        if (strpbrk(*p, "\r\n")) {
            rc = dverr_set(err, -EINVAL, "refused a request header with a line break");
            goto out;
        }
        if (!(tmp = curl_slist_append(hdrs, *p)))
            goto nomem;
        hdrs = tmp;
    }
    if (req->bearer) {
        if (strpbrk(req->bearer, "\r\n")) {
            rc = dverr_set(err, -EINVAL, "refused a bearer token with a line break");
            goto out;
        }
        if (buf_addstr(&auth, "Authorization: Bearer ") || buf_addstr(&auth, req->bearer))
            goto nomem;
        if (!(tmp = curl_slist_append(hdrs, auth.data)))
            goto nomem;
        hdrs = tmp;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (req->aws_sigv4) {
        curl_easy_setopt(h, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        if (req->userpwd)
            curl_easy_setopt(h, CURLOPT_USERPWD, req->userpwd);
    }

    CURLcode cc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (cc != CURLE_OK) {
        if (x.aborted) {
            rc = x.abort_rc < 0 ? x.abort_rc : -ECANCELED;
            dverr_set(err, rc, "the response consumer stopped the transfer");
        } else if (x.too_big || cc == CURLE_FILESIZE_EXCEEDED) {
            rc = dverr_set(err, -EFBIG, "response body larger than the cap of %llu bytes",
                           (unsigned long long)x.cap);
        } else if (x.headers_too_big) {
            rc = dverr_set(err, -EFBIG, "response headers larger than %u bytes",
                           HTTP_MAX_HEADER_BYTES);
        } else {
            rc = curl_to_errno(cc);
            char host[128] = "";
            struct url_parts u;
            if (url_parse(url, &u) == 0) {
                log_escape(u.host, host, sizeof(host));
                url_parts_release(&u);
            }
            /* curl's messages name hosts and reasons, never headers or bodies. */
            dverr_set(err, rc, "%s %s: %s", method, host,
                      errbuf[0] ? errbuf : curl_easy_strerror(cc));
        }
        resp->status = 0;
    }
    goto out;
nomem:
    rc = dverr_set(err, -ENOMEM, "out of memory building a request");
out:
    if (auth.data)
        explicit_bzero(auth.data, auth.len);
    buf_release(&auth);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(hdrs); /* the bearer copy inside is freed with it */
    if (x.upload)
        fclose(x.upload);
    return rc;
}

/* Resolve a Location value against base; NULL on failure. Caller frees with curl_free. */
static char *resolve_location(const char *base, const char *loc)
{
    CURLU *h = curl_url();
    char *out = NULL;
    if (!h)
        return NULL;
    if (curl_url_set(h, CURLUPART_URL, base, 0) == CURLUE_OK &&
        curl_url_set(h, CURLUPART_URL, loc, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK)
        curl_url_get(h, CURLUPART_URL, &out, 0);
    curl_url_cleanup(h);
    return out;
}

static int curl_perform(void *impl, const struct http_request *req, struct http_response *resp,
                        struct dverr *err)
{
    struct curl_transport *ct = impl;
    char *url = NULL; /* the current URL when it differs from req->url (curl_free) */
    const char *method = req->method ? req->method : "GET";
    bool send_body = true;
    struct buf loc = BUF_INIT;
    int rc = url_scheme_allowed(req->url, err);
    if (rc)
        return rc;
    CURL *h = pool_get(ct);
    if (!h)
        return dverr_set(err, -ENOMEM, "cannot create a curl handle");
    for (int hop = 0;; hop++) {
        const char *cur = url ? url : req->url;
        rc = curl_once(ct, h, req, cur, method, send_body, resp, err);
        if (rc)
            break;
        long s = resp->status;
        if (!(s == 301 || s == 302 || s == 303 || s == 307 || s == 308) ||
            !http_response_header(resp, "Location", &loc))
            break;
        if (hop >= HTTP_MAX_REDIRECTS) {
            rc = dverr_set(err, -EPERM, "more than %d redirects", HTTP_MAX_REDIRECTS);
            break;
        }
        char *next = resolve_location(cur, loc.data);
        if (!next) {
            rc = dverr_set(err, -EPROTO, "unusable redirect Location");
            break;
        }
        if (!http_same_origin(next, cur)) {
            curl_free(next);
            rc = dverr_set(err, -EPERM, "refused a redirect to another origin, scheme or port");
            break;
        }
        curl_free(url);
        url = next;
        if (s == 303 || ((s == 301 || s == 302) && method_is(method, "POST"))) {
            method = "GET";
            send_body = false;
        }
    }
    if (rc)
        resp->status = 0;
    curl_free(url);
    buf_release(&loc);
    pool_put(ct, h);
    return rc;
}

static void curl_transport_free(void *impl)
{
    struct curl_transport *ct = impl;
    if (!ct)
        return;
    for (int i = 0; i < ct->n_pool; i++)
        curl_easy_cleanup(ct->pool[i]);
    pthread_mutex_destroy(&ct->lock);
    free(ct->ca_file);
    free(ct);
}

static const struct http_transport_ops curl_ops = {curl_perform, curl_transport_free};

static pthread_once_t curl_once_init = PTHREAD_ONCE_INIT;
static void curl_global(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

struct http_transport *http_transport_curl_new(const struct http_options *opts)
{
    pthread_once(&curl_once_init, curl_global);
    struct http_transport *t = calloc(1, sizeof(*t));
    struct curl_transport *ct = calloc(1, sizeof(*ct));
    if (!t || !ct)
        goto fail;
    pthread_mutex_init(&ct->lock, NULL);
    ct->opts.connect_timeout_s = 10;
    ct->opts.timeout_s = 300;
    ct->opts.low_speed_time_s = 30;
    if (opts) {
        if (opts->connect_timeout_s > 0)
            ct->opts.connect_timeout_s = opts->connect_timeout_s;
        if (opts->timeout_s > 0)
            ct->opts.timeout_s = opts->timeout_s;
        if (opts->low_speed_time_s > 0)
            ct->opts.low_speed_time_s = opts->low_speed_time_s;
        if (opts->ca_file && !(ct->ca_file = strdup(opts->ca_file)))
            goto fail;
    }
    t->ops = &curl_ops;
    t->impl = ct;
    return t;
fail:
    if (ct)
        curl_transport_free(ct);
    free(t);
    return NULL;
}

void http_transport_free(struct http_transport *t)
{
    if (!t)
        return;
    if (t->ops && t->ops->free)
        t->ops->free(t->impl);
    free(t);
}

/* ---- retry policy ---- */

static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static int month_index(const char *s)
{
    for (int i = 0; i < 12; i++)
        if (strncasecmp(s, months[i], 3) == 0)
            return i;
    return -1;
}

time_t http_date_parse(const char *v)
{
    struct tm tm = {0};
    char mon[4] = "", tz[4] = "";
    int day, year, hh, mm, ss;
    const char *comma = strchr(v, ',');
    if (comma) {
        const char *p = comma + 1;
        while (*p == ' ')
            p++;
        if (sscanf(p, "%2d %3s %4d %2d:%2d:%2d %3s", &day, mon, &year, &hh, &mm, &ss, tz) == 7) {
            /* IMF-fixdate */
        } else if (sscanf(p, "%2d-%3s-%2d %2d:%2d:%2d %3s", &day, mon, &year, &hh, &mm, &ss, tz) ==
                   7) {
            year += year < 70 ? 2000 : 1900;
        } else {
            return -1;
        }
        if (strcmp(tz, "GMT") != 0 && strcmp(tz, "UTC") != 0)
            return -1;
    } else {
        char wd[4];
        if (sscanf(v, "%3s %3s %d %2d:%2d:%2d %4d", wd, mon, &day, &hh, &mm, &ss, &year) != 7)
            return -1;
    }
    int m = month_index(mon);
    if (m < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60 || year < 1970)
        return -1;
    tm.tm_year = year - 1900;
    tm.tm_mon = m;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    return timegm(&tm);
}

int64_t http_retry_after_seconds(const char *value, time_t now)
{
    if (!value)
        return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    if (isdigit((unsigned char)*value)) {
        int64_t n = 0;
        const char *p = value;
        for (; isdigit((unsigned char)*p); p++) {
            if (n > 100000000)
                return -1;
            n = n * 10 + (*p - '0');
        }
        while (*p == ' ' || *p == '\t')
            p++;
        return *p ? -1 : n;
    }
    time_t t = http_date_parse(value);
    if (t == (time_t)-1)
        return -1;
    return t > now ? (int64_t)(t - now) : 0;
}

static bool method_idempotent(const char *m)
{
    return !m || method_is(m, "GET") || method_is(m, "HEAD") || method_is(m, "PUT") ||
           method_is(m, "DELETE") || method_is(m, "OPTIONS");
}

static bool status_transient(long s)
{
    return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504;
}

static bool errno_transient(int rc)
{
    return rc == -ETIMEDOUT || rc == -ECONNRESET || rc == -ECONNREFUSED || rc == -EHOSTUNREACH ||
           rc == -EPROTO || rc == -EIO;
}

/* Uniform random in [0, n) from a per-thread xorshift seeded by time and thread. */
static uint64_t rand_below(uint64_t n)
{
    static _Thread_local uint64_t s;
    if (!s) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        s = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&s ^
            ((uint64_t)getpid() << 40);
        if (!s)
            s = 0x9e3779b97f4a7c15ull;
    }
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return n ? s % n : 0;
}

/* A random extra wait after a server-named delay: up to a tenth of it plus 100 ms, at most 1 s. */
static int64_t stagger_ms(int64_t delay)
{
    int64_t span = delay / 10 + 100;
    return (int64_t)rand_below((uint64_t)(span < 1000 ? span : 1000));
}

/* Sleep until the monotonic time `until` (ms); -ECANCELED when cancel is set meanwhile. */
static int sleep_until(int64_t until, atomic_int *cancel)
{
    for (;;) {
        if (cancel && atomic_load(cancel))
            return -ECANCELED;
        int64_t left = until - now_ms();
        if (left <= 0)
            return 0;
        if (left > 50)
            left = 50;
        struct timespec ts = {left / 1000, (left % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int http_perform_retry(struct http_transport *t, const struct http_request *req,
                       const struct http_retry *retry, struct http_counters *counters,
                       struct http_response *resp, struct dverr *err)
{
    struct http_retry pol = {8, 500, 60000, 600000, NULL, NULL};
    if (retry) {
        if (retry->max_attempts > 0)
            pol.max_attempts = retry->max_attempts;
        if (retry->base_delay_ms > 0)
            pol.base_delay_ms = retry->base_delay_ms;
        if (retry->max_delay_ms > 0)
            pol.max_delay_ms = retry->max_delay_ms;
        if (retry->max_total_ms > 0)
            pol.max_total_ms = retry->max_total_ms;
        pol.cancel = retry->cancel;
        pol.hold_until_ms = retry->hold_until_ms;
    }
    bool may_retry_any = req->retry_unsafe || method_idempotent(req->method);
    int64_t waited = 0;
    int backoff_n = 0, throttled_attempts = 0;
    struct buf ra = BUF_INIT, bearer = BUF_INIT;
    int rc = 0;
    for (int attempt = 1;; attempt++) {
        /* A Retry-After seen by any thread of this client holds every request. */
        if (pol.hold_until_ms) {
            int64_t hold = atomic_load(pol.hold_until_ms);
            int64_t now = now_ms();
            if (hold > now) {
                if (waited + (hold - now) > pol.max_total_ms) {
                    rc = dverr_set(err, -EBUSY, "throttled by the service for longer than the "
                                               "retry budget allows");
                    break;
                }
                /* Threads released by the same hold would all fire at once and all but one be
                 * throttled again: each adds its own small random stagger. */
                int64_t until = hold + stagger_ms(hold - now);
                if ((rc = sleep_until(until, pol.cancel)))
                    break;
                waited += until - now;
            }
        }
        struct dverr attempt_err = {0};
        struct http_request this_req = *req;
        if (req->bearer_cb) {
            if ((rc = req->bearer_cb(req->bearer_ctx, &bearer, err)))
                break;
            this_req.bearer = bearer.data;
        }
        if (counters)
            atomic_fetch_add(&counters->requests, 1);
        rc = t->ops->perform(t->impl, &this_req, resp, &attempt_err);
        if (counters && rc == 0)
            atomic_fetch_add(&counters->bytes_in, resp->body.len);
        int64_t delay = -1;
        if (rc == 0) {
            long s = resp->status;
            if (s == 429 && counters)
                atomic_fetch_add(&counters->throttled, 1);
            if (!status_transient(s) || !(may_retry_any || s == 429))
                break;
            int64_t secs = -1;
            if ((s == 429 || s == 503) && http_response_header(resp, "Retry-After", &ra))
                secs = http_retry_after_seconds(ra.data, time(NULL));
            if (secs >= 0) {
                delay = secs * 1000;
                /* Never before Retry-After: a one-second value can end up to 1 s later than
                 * the server's clock second, so round up by a little. */
                if (delay > 0)
                    delay += 50;
                /* Waits named by the server are bounded by time, not by the attempt count (up
                 * to ten times as many throttled attempts as other failures). */
                if (throttled_attempts++ < 10 * pol.max_attempts)
                    attempt--;
                if (pol.hold_until_ms) {
                    int64_t until = now_ms() + delay;
                    int64_t cur = atomic_load(pol.hold_until_ms);
                        while (cur < until &&
                           !atomic_compare_exchange_weak(pol.hold_until_ms, &cur, until))
                        ;
                }
                delay += stagger_ms(delay);
            }
            if (attempt >= pol.max_attempts) {
                break; /* the last response is returned as is */
            }
        } else {
            /* Bytes that already reached on_body cannot be taken back: no retry then. */
            if (!(may_retry_any && errno_transient(rc)) || attempt >= pol.max_attempts ||
                resp->streamed > 0) {
                dverr_set(err, rc, "%s", dverr_msg(&attempt_err));
                break;
            }
        }
        if (delay < 0) {
            int64_t cap = (int64_t)pol.base_delay_ms << (backoff_n < 20 ? backoff_n : 20);
            if (cap > pol.max_delay_ms)
                cap = pol.max_delay_ms;
            delay = (int64_t)rand_below((uint64_t)cap + 1); /* full jitter */
            backoff_n++;
        }
        if (waited + delay > pol.max_total_ms) {
            if (rc)
                dverr_set(err, rc, "%s (gave up: retry time budget spent)",
                          dverr_msg(&attempt_err));
            break;
        }
        if (counters)
            atomic_fetch_add(&counters->retries, 1);
        log_debug("http: retrying %s after %lld ms (attempt %d, status %ld)",
                  req->method ? req->method : "GET", (long long)delay, attempt, resp->status);
        int64_t start = now_ms();
        int src = sleep_until(start + delay, pol.cancel);
        waited += now_ms() - start;
        if (src) {
            rc = dverr_set(err, src, "cancelled while waiting to retry");
            break;
        }
        rc = 0;
    }
    buf_release(&ra);
    if (bearer.data)
        explicit_bzero(bearer.data, bearer.len);
    buf_release(&bearer);
    return rc;
}
