/* objstore_remote: shared plumbing of the Azure Blob and S3 drivers (see objstore_remote.h).
 * Limits: the XML scanner handles the flat, attribute-free elements of list and error responses
 * only (no CDATA, no namespaces prefixes); entity decoding covers the five predefined entities and
 * numeric references below 128. Thread-safe. */
#include "backend/objstore/objstore_remote.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/log.h"

static int env_int(const char *name, int def, int lo, int hi)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return def;
    char *end;
    long n = strtol(v, &end, 10);
    if (*end || n < lo || n > hi)
        return def;
    return (int)n;
}

int remote_init(struct remote *r, const char *what, const struct remote_ops *ops, void *drv,
                const struct config *cfg, struct dverr *err)
{
    memset(r, 0, sizeof *r);
    r->ops = ops;
    r->drv = drv;
    bool timeout_set = cfg && config_key_set(cfg, "http_timeout");
    bool retries_set = cfg && config_key_set(cfg, "http_retries");
    r->timeout_s = timeout_set ? cfg->http_timeout : 0;
    struct http_options opts = {
        .connect_timeout_s = 5,
        .timeout_s = timeout_set ? cfg->http_timeout : 300,
        .low_speed_time_s = 20,
        .ca_file = cfg ? cfg->ca_file : NULL,
    };
    r->http = http_transport_curl_new(&opts);
    if (!r->http)
        return dverr_set(err, -ENOMEM, "%s: cannot create the HTTP transport", what);
    /* Bounded: a refused connection fails within ~2 s; a stalled store within 3 time-outs of
     * 10 s (small requests) plus the waits between them. http_retries, when set, is what the
     * user asked for: its attempts, within the transport's usual 10 minutes of waits. */
    r->retry.max_attempts = env_int("DVSNAP_OBJSTORE_ATTEMPTS", retries_set ? cfg->http_retries : 3,
                                    1, 100);
    r->retry.base_delay_ms = 200;
    r->retry.max_delay_ms = 5000;
    r->retry.max_total_ms = retries_set ? 600000 : 20000;
    r->retry.cancel = NULL;
    r->list_page = env_int("DVSNAP_OBJSTORE_LIST_PAGE", REMOTE_LIST_PAGE, 1, 5000);
    r->block_size = (uint64_t)env_int("DVSNAP_OBJSTORE_BLOCK_SIZE", REMOTE_BLOCK_SIZE, 5 << 20,
                                      256 << 20);
    r->what = what;
    return 0;
}

void remote_release(struct remote *r)
{
    if (!r)
        return;
    if (log_get_level() >= LOG_DEBUG)
        log_debug("%s: %llu requests, %llu retries, %llu bytes in", r->what,
                  (unsigned long long)atomic_load(&r->counters.requests),
                  (unsigned long long)atomic_load(&r->counters.retries),
                  (unsigned long long)atomic_load(&r->counters.bytes_in));
    http_transport_free(r->http);
    r->http = NULL;
}

bool remote_name_ok(const char *name, bool allow_empty)
{
    if (!name)
        return false;
    if (!*name)
        return allow_empty;
    if (!allow_empty)
        return objstore_name_ok(name);
    /* a list prefix may end in '/' or part-way through a name */
    char tmp[1100];
    size_t n = strlen(name);
    if (n >= sizeof tmp)
        return false;
    memcpy(tmp, name, n + 1);
    if (tmp[n - 1] == '/')
        tmp[n - 1] = '\0';
    return objstore_name_ok(tmp);
}

int remote_split_location(const char *location, const char *scheme, char **first, char **rest,
                          struct dverr *err)
{
    *first = *rest = NULL;
    size_t sl = strlen(scheme);
    if (strncmp(location, scheme, sl) != 0 || strncmp(location + sl, "://", 3) != 0)
        return dverr_set(err, -EINVAL, "%s: not a %s:// location", location, scheme);
    const char *p = location + sl + 3;
    const char *slash = strchr(p, '/');
    size_t fl = slash ? (size_t)(slash - p) : strlen(p);
    if (fl == 0)
        return dverr_set(err, -EINVAL, "%s: the location names no %s", location,
                         strcmp(scheme, "s3") == 0 ? "bucket" : "account");
    const char *r = slash ? slash + 1 : "";
    size_t rl = strlen(r);
    while (rl && r[rl - 1] == '/')
        rl--;
    *first = strndup(p, fl);
    *rest = strndup(r, rl);
    if (!*first || !*rest) {
        free(*first);
        free(*rest);
        *first = *rest = NULL;
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}

int remote_timeout_s(uint64_t up, uint64_t down)
{
    uint64_t mib = (up + (down > ((uint64_t)1 << 33) ? ((uint64_t)1 << 33) : down)) >> 20;
    uint64_t t = 10 + mib;
    return (int)(t > 600 ? 600 : t);
}

int remote_request_timeout_s(const struct remote *r, uint64_t up, uint64_t down)
{
    return r->timeout_s > 0 ? r->timeout_s : remote_timeout_s(up, down);
}

int remote_perform(struct remote *r, const struct http_request *req, struct http_response *resp,
                   struct dverr *err)
{
    int64_t t0 = now_ms();
    int rc = http_perform_retry(r->http, req, &r->retry, &r->counters, resp, err);
    if (log_get_level() >= LOG_DEBUG) {
        /* URLs carry no credential for Shared Key / SigV4; a SAS query is cut off here. */
        char url[300];
        const char *q = strstr(req->url, "sig=");
        size_t n = q ? (size_t)(q - req->url) : strlen(req->url);
        if (n >= sizeof url)
            n = sizeof url - 1;
        memcpy(url, req->url, n);
        url[n] = '\0';
        char esc[300];
        log_debug("%s %s %s -> %ld (%zu bytes, %lld ms)%s", r->what, req->method,
                  log_escape(url, esc, sizeof esc), resp->status, resp->body.len,
                  (long long)(now_ms() - t0), rc ? " failed" : "");
    }
    return rc;
}

int remote_status(struct remote *r, const struct http_response *resp, const char *op,
                  const char *name, struct dverr *err)
{
    long st = resp->status;
    if (st >= 200 && st < 300)
        return 0;
    /* Azure's refusal of a locked blob: a conflict that is not "it exists" */
    bool immutable = (st == 409 || st == 412) &&
                     remote_body_has_code(resp, "BlobImmutableDueToPolicy");
    int code;
    if (st == 404)
        code = -ENOENT;
    else if ((st == 409 || st == 412) && !immutable)
        code = -EEXIST;
    else if (st == 408 || st == 504)
        code = -ETIMEDOUT;
    else if ((st == 403 || (st == 409 && immutable)) && strcmp(op, "delete") == 0)
        code = -EACCES; /* a delete the store forbids: object lock, or credentials without it */
    else
        code = -EIO;
    struct buf c = BUF_INIT, m = BUF_INIT;
    size_t pos = 0;
    const char *body = resp->body.data ? resp->body.data : "";
    remote_xml_next(body, resp->body.len, &pos, "Code", &c);
    pos = 0;
    remote_xml_next(body, resp->body.len, &pos, "Message", &m);
    /* Messages can span lines (Azure adds RequestId/Time): keep the first. */
    char *nl = m.data ? strchr(m.data, '\n') : NULL;
    if (nl)
        *nl = '\0';
    char ec[120], em[240], en[200];
    log_escape(c.data ? c.data : "", ec, sizeof ec);
    log_escape(m.data ? m.data : "", em, sizeof em);
    log_escape(name ? name : "", en, sizeof en);
    /* A refused signature or key: say where the credential comes from (never what it is). */
    /* (not on a refused delete: that is object lock or a policy, the credential itself worked) */
    const char *hint = st == 403 && r->cred_hint && strcmp(op, "delete") != 0 ? r->cred_hint : "";
    dverr_set(err, code, "%s %s %s: HTTP %ld%s%s%s%s%s", r->what, op, en, st, *ec ? " " : "", ec,
              *em ? ": " : "", em, hint);
    buf_release(&c);
    buf_release(&m);
    return code;
}

int remote_get_finish(struct remote *r, const struct http_response *resp, const char *name,
                      uint64_t off, uint64_t len, bool ranged, struct buf *out, struct dverr *err)
{
    if (resp->status == 416) {
        /* "Content-Range: bytes * /TOTAL" tells whether off is exactly the end */
        struct buf v = BUF_INIT;
        uint64_t total = UINT64_MAX;
        if (http_response_header(resp, "Content-Range", &v) && v.data) {
            const char *slash = strchr(v.data, '/');
            if (slash && slash[1] >= '0' && slash[1] <= '9')
                total = strtoull(slash + 1, NULL, 10);
        }
        size_t pos = 0; /* S3 names the size in its error body instead */
        if (total == UINT64_MAX && resp->body.data &&
            remote_xml_next(resp->body.data, resp->body.len, &pos, "ActualObjectSize", &v) &&
            v.data && v.data[0] >= '0' && v.data[0] <= '9')
            total = strtoull(v.data, NULL, 10);
        buf_release(&v);
        if (len == OBJSTORE_TO_END && total == off)
            return 0;
        return dverr_set(err, -EIO, "%s get %s: read at %llu beyond its end", r->what, name,
                         (unsigned long long)off);
    }
    int rc = remote_status(r, resp, "get", name, err);
    if (rc)
        return rc;
    const char *p = resp->body.data ? resp->body.data : "";
    size_t n = resp->body.len;
    if (resp->status == 200 && ranged) { /* the server ignored the range: cut it here */
        if (off > n)
            return dverr_set(err, -EIO, "%s get %s: read at %llu beyond its end", r->what, name,
                             (unsigned long long)off);
        p += off;
        n -= (size_t)off;
    }
    if (len != OBJSTORE_TO_END) {
        if (n < len)
            return dverr_set(err, -EIO, "%s get %s: short object (%zu bytes at %llu, wanted %llu)",
                             r->what, name, n, (unsigned long long)off, (unsigned long long)len);
        n = (size_t)len;
    }
    if ((rc = buf_add(out, p, n)))
        return dverr_set(err, rc, "%s: out of memory", r->what);
    return 0;
}

static void xml_decode(const char *s, size_t n, struct buf *out)
{
    buf_reset(out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '&') {
            buf_addch(out, s[i]);
            continue;
        }
        const char *semi = memchr(s + i, ';', n - i);
        if (!semi || semi - (s + i) > 8) {
            buf_addch(out, s[i]);
            continue;
        }
        size_t el = (size_t)(semi - (s + i)) + 1;
        const char *e = s + i;
        char ch = 0;
        if (el == 5 && !memcmp(e, "&amp;", 5))
            ch = '&';
        else if (el == 4 && !memcmp(e, "&lt;", 4))
            ch = '<';
        else if (el == 4 && !memcmp(e, "&gt;", 4))
            ch = '>';
        else if (el == 6 && !memcmp(e, "&quot;", 6))
            ch = '"';
        else if (el == 6 && !memcmp(e, "&apos;", 6))
            ch = '\'';
        else if (el > 3 && e[1] == '#') {
            long v = e[2] == 'x' ? strtol(e + 3, NULL, 16) : strtol(e + 2, NULL, 10);
            if (v > 0 && v < 128)
                ch = (char)v;
        }
        if (ch) {
            buf_addch(out, ch);
            i += el - 1;
        } else {
            buf_addch(out, s[i]);
        }
    }
}

bool remote_xml_span(const char *xml, size_t len, size_t *pos, const char *tag, size_t *start,
                     size_t *end)
{
    char open[64], close[64];
    int on = snprintf(open, sizeof open, "<%s>", tag);
    int cn = snprintf(close, sizeof close, "</%s>", tag);
    if (on <= 0 || cn <= 0 || (size_t)on >= sizeof open || (size_t)cn >= sizeof close)
        return false;
    if (*pos > len)
        return false;
    const char *s = memmem(xml + *pos, len - *pos, open, (size_t)on);
    if (!s)
        return false;
    size_t a = (size_t)(s - xml) + (size_t)on;
    const char *e = memmem(xml + a, len - a, close, (size_t)cn);
    if (!e)
        return false;
    *start = a;
    *end = (size_t)(e - xml);
    *pos = *end + (size_t)cn;
    return true;
}

bool remote_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, struct buf *out)
{
    size_t a, b;
    if (!xml || !remote_xml_span(xml, len, pos, tag, &a, &b))
        return false;
    xml_decode(xml + a, b - a, out);
    if (!out->data)
        buf_addstr(out, ""); /* a present but empty element still yields "" */
    return true;
}

int remote_base64_decode(const char *s, size_t len, struct buf *out)
{
    while (len && isspace((unsigned char)s[len - 1]))
        len--;
    if (len % 4)
        return -EINVAL;
    int rc = buf_reserve(out, len / 4 * 3 + 1);
    if (rc)
        return rc;
    int n = EVP_DecodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s,
                            (int)len);
    if (n < 0)
        return -EINVAL;
    /* EVP_DecodeBlock keeps the padding bytes as zeros: drop them. */
    if (len >= 1 && s[len - 1] == '=')
        n--;
    if (len >= 2 && s[len - 2] == '=')
        n--;
    out->len += (size_t)n;
    out->data[out->len] = '\0';
    return 0;
}

void remote_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                        unsigned char out[32])
{
    unsigned int n = 32;
    HMAC(EVP_sha256(), key, (int)key_len, msg, msg_len, out, &n);
}

void remote_http_date(time_t t, char out[40])
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, 40, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
             months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int remote_read_range(int fd, uint64_t off, size_t len, struct buf *out)
{
    int rc = buf_reserve(out, len);
    if (rc)
        return rc;
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, out->data + out->len + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO; /* the file shrank under us */
        got += (size_t)n;
    }
    out->len += got;
    out->data[out->len] = '\0';
    return 0;
}

/* ---- the operations both drivers share ---- */

int remote_check_name(struct remote *r, const char *name, struct dverr *err)
{
    if (!remote_name_ok(name, false))
        return dverr_set(err, -EINVAL, "%s: invalid object name", r->what);
    return 0;
}

bool remote_body_has_code(const struct http_response *resp, const char *code)
{
    return resp->body.data && strstr(resp->body.data, code);
}

static int fill_mem(void *ctx, uint64_t off, size_t len, struct buf *blk)
{
    return buf_add(blk, (const char *)ctx + off, len);
}

static int fill_fd(void *ctx, uint64_t off, size_t len, struct buf *blk)
{
    return remote_read_range(*(int *)ctx, off, len, blk);
}

int remote_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    struct remote *r = impl;
    int rc = remote_check_name(r, name, err);
    if (rc)
        return rc;
    if (len >= r->block_size)
        rc = r->ops->put_blocks(r->drv, name, len, fill_mem, (void *)data, err);
    else
        rc = r->ops->put_object(r->drv, name, data, len, false, err);
    if (rc == 0)
        objstore_sizes_note(r->sizes, name, len);
    return rc;
}

int remote_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                         struct dverr *err)
{
    struct remote *r = impl;
    int rc = remote_check_name(r, name, err);
    if (rc)
        return rc;
    return r->ops->put_object(r->drv, name, data, len, true, err);
}

int remote_put_file(void *impl, const char *name, const char *local_path, struct dverr *err)
{
    struct remote *r = impl;
    int rc = remote_check_name(r, name, err);
    if (rc)
        return rc;
    int fd = open(local_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dverr_set(err, -errno, "%s: %s", local_path, strerror(errno));
    struct stat st;
    struct buf b = BUF_INIT;
    if (fstat(fd, &st) < 0) {
        rc = dverr_set(err, -errno, "%s: %s", local_path, strerror(errno));
        goto out;
    }
    if ((uint64_t)st.st_size >= r->block_size) {
        rc = r->ops->put_blocks(r->drv, name, (uint64_t)st.st_size, fill_fd, &fd, err);
    } else if ((rc = remote_read_range(fd, 0, (size_t)st.st_size, &b))) {
        dverr_set(err, rc, "%s: %s", local_path, strerror(-rc));
    } else {
        rc = r->ops->put_object(r->drv, name, b.data, b.len, false, err);
    }
    if (rc == 0)
        objstore_sizes_note(r->sizes, name, (uint64_t)st.st_size);
out:
    buf_release(&b);
    close(fd);
    return rc;
}

int remote_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct remote *r = impl;
    int rc = remote_check_name(r, name, err);
    if (rc)
        return rc;
    struct http_response resp;
    struct buf v = BUF_INIT;
    http_response_init(&resp);
    if ((rc = r->ops->fetch(r->drv, "HEAD", name, NULL, 0, &resp, err)) ||
        (rc = remote_status(r, &resp, "stat", name, err)))
        goto out;
    if (!http_response_header(&resp, "Content-Length", &v) || !v.data) {
        rc = dverr_set(err, -EIO, "%s stat %s: no Content-Length", r->what, name);
        goto out;
    }
    *size = strtoull(v.data, NULL, 10);
    objstore_sizes_note(r->sizes, name, *size);
out:
    buf_release(&v);
    http_response_release(&resp);
    return rc;
}

int remote_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
               struct dverr *err)
{
    struct remote *r = impl;
    int rc = remote_check_name(r, name, err);
    if (rc)
        return rc;
    if (len == 0) { /* nothing to read; the object must exist and be long enough */
        uint64_t size;
        if ((rc = remote_stat(r, name, &size, err)))
            return rc;
        return off > size ? dverr_set(err, -EIO, "%s get %s: read beyond its end", r->what, name)
                          : 0;
    }
    bool ranged = !(off == 0 && len == OBJSTORE_TO_END);
    char range[64];
    if (len == OBJSTORE_TO_END || off + len < off)
        snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)off);
    else
        snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
    struct http_response resp;
    http_response_init(&resp);
    /* (room for an error document in place of a short range) */
    uint64_t max = len == OBJSTORE_TO_END ? (uint64_t)1 << 34 : len + 65536;
    if ((rc = r->ops->fetch(r->drv, "GET", name, ranged ? range : NULL, max, &resp, err)) == 0)
        rc = remote_get_finish(r, &resp, name, off, len, ranged, out, err);
    http_response_release(&resp);
    return rc;
}

int remote_list_entries(struct remote *r, const struct http_response *resp, const char *entry,
                        const char *name_tag, const char *size_tag, const char *prefix,
                        int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                        struct dverr *err)
{
    const char *x = resp->body.data ? resp->body.data : "";
    size_t xl = resp->body.len, pos = 0, a, b, plen = strlen(prefix);
    struct buf name = BUF_INIT, size = BUF_INIT;
    int rc = 0;
    while (remote_xml_span(x, xl, &pos, entry, &a, &b)) {
        size_t ip = a;
        if (!remote_xml_next(x, b, &ip, name_tag, &name)) {
            rc = dverr_set(err, -EIO, "%s list: an entry without a %s", r->what, name_tag);
            break;
        }
        ip = a;
        uint64_t sz = 0;
        if (remote_xml_next(x, b, &ip, size_tag, &size))
            sz = strtoull(size.data, NULL, 10);
        if (name.len < plen || memcmp(name.data, prefix, plen) != 0)
            continue;
        if ((rc = fn(ctx, name.data + plen, sz)))
            break;
    }
    buf_release(&name);
    buf_release(&size);
    return rc;
}
