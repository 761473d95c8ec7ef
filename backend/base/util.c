/* util: growable buffers, error buffers, SHA-256, atomic files, time names, name sanitising.
 * See util.h for the contracts. No shared state; every function is thread-safe. */
#include "backend/base/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void buf_init(struct buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void buf_release(struct buf *b)
{
    free(b->data);
    buf_init(b);
}

void buf_release_secret(struct buf *b)
{
    if (b->data)
        explicit_bzero(b->data, b->cap);
    buf_release(b);
}

void free_secret(char *s)
{
    if (s)
        explicit_bzero(s, strlen(s));
    free(s);
}

int buf_reserve(struct buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    p[b->len] = '\0'; /* keep the promise of util.h: NUL-terminated once grown */
    b->data = p;
    b->cap = cap;
    return 0;
}

int buf_add(struct buf *b, const void *p, size_t n)
{
    int rc = buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_addstr(struct buf *b, const char *s)
{
    return buf_add(b, s, strlen(s));
}

int buf_addch(struct buf *b, char c)
{
    return buf_add(b, &c, 1);
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

char *buf_detach(struct buf *b)
{
    char *p = b->data;
    if (!p) {
        p = malloc(1);
        if (!p)
            abort();
        p[0] = '\0';
    }
    buf_init(b);
    return p;
}

int buf_urlencode(struct buf *out, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int rc;
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~' ||
            (keep_slash && *p == '/')) {
            rc = buf_addch(out, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            rc = buf_add(out, e, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int buf_add_json_string(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = buf_reserve(b, n + 2);
    if (rc)
        return rc;
    b->data[b->len++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (esc) {
            rc = buf_add(b, esc, 2);
        } else if (c < 0x20) {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc = buf_add(b, u, 6);
        } else {
            rc = buf_addch(b, (char)c);
        }
        if (rc)
            return rc;
    }
    return buf_addch(b, '"');
}

char *mem_to_str(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

void dverr_clear(struct dverr *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}

int dverr_set(struct dverr *e, int code, const char *fmt, ...)
{
    if (e && e->code == 0) {
        e->code = code ? code : -EIO;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *dverr_msg(const struct dverr *e)
{
    return e ? e->msg : "";
}

void hex_encode(const void *data, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * n] = '\0';
}

void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_Digest(data, len, md, &n, EVP_sha256(), NULL) || n != 32)
        abort();
    hex_encode(md, 32, out);
}

struct sha256_stream {
    EVP_MD_CTX *ctx;
};

struct sha256_stream *sha256_stream_new(void)
{
    struct sha256_stream *s = malloc(sizeof *s);
    if (!s)
        abort();
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx || !EVP_DigestInit_ex(s->ctx, EVP_sha256(), NULL))
        abort();
    return s;
}

void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len)
{
    if (!EVP_DigestUpdate(s->ctx, data, len))
        abort();
}

void sha256_stream_finish(struct sha256_stream *s, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (!EVP_DigestFinal_ex(s->ctx, md, &n) || n != 32)
        abort();
    hex_encode(md, 32, out);
    EVP_MD_CTX_free(s->ctx);
    free(s);
}

static int dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return snprintf(out, n, ".") >= (int)n ? -ENAMETOOLONG : 0;
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    if (len >= n)
        return -ENAMETOOLONG;
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) ? -errno : 0;
    close(fd);
    return rc;
}

int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    static atomic_uint counter;
    char tmp[PATH_MAX], dir[PATH_MAX];
    int rc = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d.%u", path, (int)getpid(),
                 atomic_fetch_add(&counter, 1)) >= (int)sizeof tmp)
        return -ENAMETOOLONG;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0)
        return -errno;
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto fail;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fchmod(fd, mode) || fsync(fd)) {
        rc = -errno;
        goto fail;
    }
    if (close(fd)) {
        fd = -1;
        rc = -errno;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path)) {
        rc = -errno;
        goto fail;
    }
    if ((rc = dir_of(path, dir, sizeof dir)) == 0)
        rc = fsync_dir(dir);
    return rc;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return rc;
}

int read_file(const char *path, size_t max, struct buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    char chunk[65536];
    for (;;) {
        ssize_t r = read(fd, chunk, sizeof chunk);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > max) {
            rc = -EFBIG;
            break;
        }
        if ((rc = buf_add(out, chunk, (size_t)r)))
            break;
    }
    close(fd);
    return rc;
}

void parent_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash && slash != path ? (size_t)(slash - path) : 1;
    if (len >= n)
        len = n - 1;
    memcpy(out, slash ? path : ".", len);
    out[len] = '\0';
}

int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX], parent[PATH_MAX];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return -ENAMETOOLONG;
    memcpy(tmp, path, n + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p && *p != '/')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(tmp, mode) == 0) {
            /* a new directory is durable once its parent's entry is */
            parent_of(tmp, parent, sizeof parent);
            int rc = fsync_dir(parent);
            if (rc)
                return rc;
        } else if (errno != EEXIST) {
            return -errno;
        }
        if (!(*p = c))
            return 0;
    }
}

void point_name_from_time(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H%M%SZ", &tm);
}

int point_name_to_time(const char *name, time_t *out)
{
    struct tm tm = {0};
    const char *end = strptime(name, "%Y-%m-%dT%H%M%SZ", &tm);
    if (!end || *end)
        return -EINVAL;
    *out = timegm(&tm);
    return 0;
}

void rfc3339_from_time(time_t t, char out[32])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int rfc3339_to_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return -EINVAL;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    long offset = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1;
        if (!(p[1] >= '0' && p[1] <= '9' && p[2] >= '0' && p[2] <= '9' && p[3] == ':' &&
              p[4] >= '0' && p[4] <= '9' && p[5] >= '0' && p[5] <= '9'))
            return -EINVAL;
        offset = sign * (((p[1] - '0') * 10 + (p[2] - '0')) * 3600L +
                         ((p[4] - '0') * 10 + (p[5] - '0')) * 60L);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    *out = timegm(&tm) - offset;
    return 0;
}

static int parse_scaled(const char *s, const char *units, const int64_t *scale, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0)
        return -EINVAL;
    int64_t mul = 1;
    if (*end) {
        const char *u = strchr(units, *end);
        if (!u || end[1])
            return -EINVAL;
        mul = scale[u - units];
    }
    if (v > INT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int parse_duration(const char *s, int64_t *seconds)
{
    static const int64_t scale[] = {1, 60, 3600, 86400, 604800};
    return parse_scaled(s, "smhdw", scale, seconds);
}

int parse_size(const char *s, uint64_t *bytes)
{
    static const int64_t scale[] = {1024, 1024, 1048576, 1048576, 1073741824LL, 1073741824LL,
                                    1099511627776LL, 1099511627776LL};
    int64_t v;
    int rc = parse_scaled(s, "kKmMgGtT", scale, &v);
    if (rc == 0)
        *bytes = (uint64_t)v;
    return rc;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0 when invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    size_t len;
    uint32_t cp;
    if (p[0] < 0x80)
        return 1;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; cp = p[0] & 0x1f; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; cp = p[0] & 0x0f; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; cp = p[0] & 0x07; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void name_sanitize(const char *in, size_t len, char out[256])
{
    struct buf b = BUF_INIT;
    const unsigned char *p = (const unsigned char *)in;
    for (size_t i = 0; i < len;) {
        size_t l = utf8_len(p + i, len - i);
        if (p[i] == '/') {
            buf_add(&b, "\xe2\x88\x95", 3); /* U+2215 DIVISION SLASH */
            i++;
        } else if (l == 0 || p[i] < 0x20 || p[i] == 0x7f) {
            buf_addch(&b, '_');
            i++;
        } else {
            buf_add(&b, p + i, l);
            i += l;
        }
    }
    if (b.len == 0 || (b.len == 1 && b.data[0] == '.') ||
        (b.len == 2 && b.data[0] == '.' && b.data[1] == '.')) {
        buf_reset(&b);
        buf_addch(&b, '_');
        buf_add(&b, in, len == 0 ? 0 : (len > 2 ? 2 : len)); /* "", ".", ".." -> "_", "_.", "_.." */
    }
    if (b.len > 255) {
        char hash[65];
        sha256_hex(in, len, hash);
        size_t keep = 255 - 9;
        /* do not cut a UTF-8 sequence in half */
        while (keep > 0 && ((unsigned char)b.data[keep] & 0xc0) == 0x80)
            keep--;
        memcpy(out, b.data, keep);
        out[keep] = '~';
        memcpy(out + keep + 1, hash, 8);
        out[keep + 9] = '\0';
    } else {
        memcpy(out, b.data, b.len);
        out[b.len] = '\0';
    }
    buf_release(&b);
}

void name_unique_suffix(char name[256], int n)
{
    char suffix[16];
    int sl = snprintf(suffix, sizeof suffix, "~%d", n);
    size_t len = strlen(name);
    if (len + (size_t)sl > 255) {
        len = 255 - (size_t)sl;
        while (len > 0 && ((unsigned char)name[len] & 0xc0) == 0x80)
            len--;
    }
    memcpy(name + len, suffix, (size_t)sl + 1);
}

int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec timespec_in_ms(clockid_t clock, long ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

int thread_start(pthread_t *th, void *(*fn)(void *), void *arg)
{
    pthread_t own;
    pthread_attr_t attr;
    sigset_t all, old;
    pthread_attr_init(&attr);
    if (!th)
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(th ? th : &own, &attr, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return rc;
}

/* ---------------------------------------------------------------- base64 */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_encode(const void *data, size_t len, struct buf *out)
{
    const unsigned char *p = data;
    int rc = buf_reserve(out, (len + 2) / 3 * 4);
    if (rc)
        return rc;
    /* written straight into the reserved space: this renders attachments on every read */
    char *o = out->data + out->len;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        *o++ = b64[(v >> 18) & 63];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *o++ = i + 2 < len ? b64[v & 63] : '=';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-') /* '-' and '_': base64url, seen in some payloads */
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

int base64_decode(const char *in, size_t n, struct buf *out)
{
    int rc = buf_reserve(out, n / 4 * 3 + 3);
    if (rc)
        return rc;
    uint32_t acc = 0;
    int bits = 0;
    bool pad = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
            continue;
        if (c == '=') {
            pad = true;
            continue;
        }
        int v = base64_value(c);
        if (pad || v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->len++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (bits >= 6)
        return -EINVAL;
    out->data[out->len] = '\0';
    return 0;
}

bool host_is_loopback(const char *host)
{
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0 || strcmp(host, "::1") == 0)
        return true;
    if (strncmp(host, "127.", 4) != 0)
        return false;
    int dots = 0;
    for (const char *p = host; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isdigit((unsigned char)*p))
            return false;
    }
    return dots == 3;
}

bool host_is_metadata_service(const char *host)
{
    return strcmp(host, "169.254.169.254") == 0 || strcmp(host, "[fd00:ec2::254]") == 0 ||
           strcmp(host, "fd00:ec2::254") == 0;
}

/* The host of an http(s) URL into host[n] (port removed; an IPv6 literal keeps its brackets).
 * false when the authority has userinfo ('@'), a backslash or anything unusual. */
static bool url_host(const char *url, char *host, size_t size)
{
    const char *a;
    if (strncasecmp(url, "http://", 7) == 0)
        a = url + 7;
    else if (strncasecmp(url, "https://", 8) == 0)
        a = url + 8;
    else
        return false;
    size_t n = strcspn(a, "/?#");
    if (n == 0 || n >= size || memchr(a, '@', n) || memchr(a, '\\', n))
        return false;
    memcpy(host, a, n);
    host[n] = '\0';
    /* the port: after "]" for an IPv6 literal, else after the first ':' */
    char *rest = host;
    if (host[0] == '[') {
        if (!(rest = strchr(host, ']')))
            return false;
        rest++;
        if (*rest && *rest != ':')
            return false;
    }
    char *colon = strchr(rest, ':');
    if (colon) {
        for (const char *d = colon + 1; *d; d++)
            if (!isdigit((unsigned char)*d))
                return false;
        *colon = '\0';
    }
    return true;
}

bool url_is_loopback(const char *url)
{
    char host[256];
    return url_host(url, host, sizeof host) && host_is_loopback(host);
}

bool url_is_metadata_service(const char *url)
{
    char host[256];
    return strncasecmp(url, "http://", 7) == 0 && url_host(url, host, sizeof host) &&
           host_is_metadata_service(host);
}

void strv_free(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

static void *arena_take(struct arena *a, size_t n, size_t align)
{
    struct arena_block *b = a->blocks;
    size_t at = b ? (b->used + align - 1) & ~(align - 1) : 0;
    if (!b || at > b->cap || b->cap - at < n) {
        size_t block = a->block ? a->block : ARENA_BLOCK;
        size_t cap = n > block ? n : block;
        b = malloc(sizeof *b + cap);
        if (!b)
            return NULL;
        b->next = a->blocks;
        b->cap = cap;
        a->blocks = b;
        a->bytes += sizeof *b + cap;
        at = 0;
    }
    b->used = at + n;
    return b->data + at;
}

void *arena_alloc(struct arena *a, size_t n)
{
    return arena_take(a, n, 16);
}

char *arena_bytes(struct arena *a, size_t n)
{
    return arena_take(a, n, 1);
}

char *arena_strndup(struct arena *a, const char *s, size_t n)
{
    char *p = arena_take(a, n + 1, 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

void arena_release(struct arena *a)
{
    for (struct arena_block *b = a->blocks, *next; b; b = next) {
        next = b->next;
        free(b);
    }
    a->blocks = NULL;
    a->bytes = 0;
}
