/* dataverse_batch: OData $batch (multipart/mixed) requests and responses (see dataverse.h).
 *
 * Request: one application/http part per item (no change sets), boundary "batch_<32 hex>",
 * absolute inner URLs, each part with "Content-ID: <n>" (1-based item number) so answers can be
 * matched by id where the service echoes it, else by order, and the item's own extra headers;
 * the caller's extra headers go on the outer request (a restore sends its business-logic bypass
 * on both). A header that would split a line, or has no colon, is refused before sending.
 * Response: the multipart body is split by its boundary (from Content-Type); a part that is itself
 * multipart/mixed (a change-set response) is parsed recursively; each application/http part gives
 * a status line, headers and a body. Parts map to items by Content-ID when present, else in
 * order. Line ends may be CRLF or LF. Limits: at most 1000 items, parts nested 4 deep, 512 MiB.
 * The parser is declared in dataverse_batch.h for the unit tests and fuzzing.
 * Threading: no shared state. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/dataverse/dataverse_batch.h"
#include "backend/base/log.h"

#define BATCH_MAX_ITEMS 1000
#define BATCH_MAX_DEPTH 4

/* ---- response parsing ---- */

struct part_sink {
    struct dv_batch_part *parts;
    size_t n, cap;
};

static const char *find_mem(const char *h, size_t hl, const char *n, size_t nl)
{
    return memmem(h, hl, n, nl);
}

/* Next line of [p, end): returns its length without the line end, advances *p past it. */
static size_t next_line(const char **p, const char *end, const char **line)
{
    const char *s = *p;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    const char *e = nl ? nl : end;
    *line = s;
    *p = nl ? nl + 1 : end;
    size_t len = (size_t)(e - s);
    if (len && s[len - 1] == '\r')
        len--;
    return len;
}

/* Value of header `name` within a header block [h, he) into out (NUL-terminated, truncated). */
static bool header_value(const char *h, const char *he, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = h;
    while (p < he) {
        const char *line;
        size_t len = next_line(&p, he, &line);
        if (len > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            const char *ve = line + len;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            size_t vl = (size_t)(ve - v);
            if (vl >= n)
                vl = n - 1;
            memcpy(out, v, vl);
            out[vl] = '\0';
            return true;
        }
    }
    return false;
}

int dv_batch_boundary(const char *content_type, char *out, size_t n)
{
    if (!content_type)
        return -EPROTO;
    const char *p = content_type;
    while (*p == ' ')
        p++;
    if (strncasecmp(p, "multipart/mixed", 15) != 0)
        return -EPROTO;
    for (p = content_type; (p = strchr(p, ';'));) {
        p++;
        while (*p == ' ' || *p == '\t')
            p++;
        if (strncasecmp(p, "boundary=", 9) != 0)
            continue;
        p += 9;
        size_t len;
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            if (!q)
                return -EPROTO;
            p++;
            len = (size_t)(q - p);
        } else {
            len = strcspn(p, "; \t");
        }
        if (len == 0 || len > 70 || len >= n)
            return -EPROTO;
        memcpy(out, p, len);
        out[len] = '\0';
        return 0;
    }
    return -EPROTO;
}

static int sink_add(struct part_sink *s, const struct dv_batch_part *p)
{
    if (s->n >= BATCH_MAX_ITEMS * 2)
        return -E2BIG;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 16;
        struct dv_batch_part *np = realloc(s->parts, nc * sizeof(*np));
        if (!np)
            return -ENOMEM;
        s->parts = np;
        s->cap = nc;
    }
    s->parts[s->n++] = *p;
    return 0;
}

/* One application/http part body [p, end): "HTTP/1.1 204 No Content", headers, blank, body. */
static int parse_http_part(const char *p, const char *end, int content_id,
                           struct part_sink *sink)
{
    const char *line;
    size_t len;
    do { /* tolerate blank lines before the status line */
        if (p >= end)
            return -EPROTO;
        len = next_line(&p, end, &line);
    } while (len == 0);
    if (len < 12 || strncmp(line, "HTTP/", 5) != 0)
        return -EPROTO;
    const char *sp = memchr(line, ' ', len);
    if (!sp || (size_t)(line + len - sp) < 4 || !isdigit((unsigned char)sp[1]) ||
        !isdigit((unsigned char)sp[2]) || !isdigit((unsigned char)sp[3]))
        return -EPROTO;
    int status = (sp[1] - '0') * 100 + (sp[2] - '0') * 10 + (sp[3] - '0');
    if (status < 100 || status > 599)
        return -EPROTO;
    const char *hs = p;
    while (p < end) {
        len = next_line(&p, end, &line);
        if (len == 0)
            break;
    }
    char cid[16];
    if (content_id < 0 && header_value(hs, p, "Content-ID", cid, sizeof(cid)))
        content_id = (int)strtol(cid, NULL, 10);
    const char *be = end;
    while (be > p && (be[-1] == '\n' || be[-1] == '\r'))
        be--;
    struct dv_batch_part part = {.status = status, .content_id = content_id > 0 ? content_id : 0};
    if (be > p && !(part.body = mem_to_str(p, (size_t)(be - p))))
        return -ENOMEM;
    int rc = sink_add(sink, &part);
    if (rc)
        free(part.body);
    return rc;
}

static int parse_multipart(const char *body, size_t body_len, const char *boundary, int depth,
                           struct part_sink *sink)
{
    if (depth > BATCH_MAX_DEPTH)
        return -EPROTO;
    char delim[80];
    int dl = snprintf(delim, sizeof(delim), "--%s", boundary);
    if (dl < 0 || (size_t)dl >= sizeof(delim))
        return -EPROTO;
    const char *end = body + body_len;
    const char *p = find_mem(body, body_len, delim, (size_t)dl);
    if (!p)
        return -EPROTO;
    for (;;) {
        p += dl;
        if (end - p >= 2 && p[0] == '-' && p[1] == '-')
            return 0; /* closing delimiter */
        /* rest of the delimiter line */
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return -EPROTO;
        p = nl + 1;
        const char *next = find_mem(p, (size_t)(end - p), delim, (size_t)dl);
        if (!next)
            return -EPROTO; /* no closing delimiter: truncated */
        /* The part is [p, next), minus the line end before the delimiter. */
        const char *pe = next;
        if (pe > p && pe[-1] == '\n')
            pe--;
        if (pe > p && pe[-1] == '\r')
            pe--;
        /* MIME headers of the part */
        const char *hs = p, *line;
        const char *q = p;
        bool blank = false;
        while (q < pe) {
            size_t len = next_line(&q, pe, &line);
            if (len == 0) {
                blank = true;
                break;
            }
        }
        if (!blank)
            return -EPROTO;
        char ctype[160] = "", cid[16] = "";
        header_value(hs, q, "Content-Type", ctype, sizeof(ctype));
        int content_id = header_value(hs, q, "Content-ID", cid, sizeof(cid))
                             ? (int)strtol(cid, NULL, 10)
                             : -1;
        int rc;
        char inner[80];
        if (strncasecmp(ctype, "multipart/mixed", 15) == 0) {
            if ((rc = dv_batch_boundary(ctype, inner, sizeof(inner))))
                return rc;
            rc = parse_multipart(q, (size_t)(pe - q), inner, depth + 1, sink);
        } else if (strncasecmp(ctype, "application/http", 16) == 0 || !ctype[0]) {
            rc = parse_http_part(q, pe, content_id, sink);
        } else {
            rc = -EPROTO;
        }
        if (rc)
            return rc;
        p = next;
    }
}

void dv_batch_parts_free(struct dv_batch_part *parts, size_t n)
{
    if (!parts)
        return;
    for (size_t i = 0; i < n; i++)
        free(parts[i].body);
    free(parts);
}

int dv_batch_parse_response(const char *content_type, const char *body, size_t len,
                            struct dv_batch_part **parts, size_t *n)
{
    char boundary[80];
    struct part_sink sink = {0};
    *parts = NULL;
    *n = 0;
    int rc = dv_batch_boundary(content_type, boundary, sizeof(boundary));
    if (rc)
        return rc;
    if (!body)
        return -EPROTO;
    if ((rc = parse_multipart(body, len, boundary, 0, &sink))) {
        dv_batch_parts_free(sink.parts, sink.n);
        return rc;
    }
    *parts = sink.parts;
    *n = sink.n;
    return 0;
}

/* ---- request ---- */

static bool line_safe(const char *s)
{
    for (; s && *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

static int build_body(const struct dv_env *env, const struct dv_batch_item *items, size_t n,
                      const char *boundary, struct buf *b, struct dverr *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const struct dv_batch_item *it = &items[i];
        bool headers_safe = true;
        for (const char *const *h = it->headers; h && *h; h++)
            headers_safe &= line_safe(*h) && strchr(*h, ':') != NULL;
        if (!it->method || !it->path || it->path[0] == '/' || strstr(it->path, "://") || strstr(it->path, "..") ||
            strchr(it->path, ' ') || !line_safe(it->path) || !line_safe(it->method) ||
            !line_safe(it->if_match) || !line_safe(it->if_none_match) || !headers_safe)
            return dverr_set(err, -EINVAL, "batch item %zu: bad method, path or header", i + 1);
        rc = buf_printf(b, "--%s\r\nContent-Type: application/http\r\n"
                           "Content-Transfer-Encoding: binary\r\nContent-ID: %zu\r\n\r\n"
                           "%s %s" DV_API_PATH "%s HTTP/1.1\r\n",
                        boundary, i + 1, it->method, env->api_url, it->path);
        if (!rc && it->body)
            rc = buf_addstr(b, "Content-Type: application/json; type=entry\r\n");
        if (!rc && it->if_match)
            rc = buf_printf(b, "If-Match: %s\r\n", it->if_match);
        if (!rc && it->if_none_match)
            rc = buf_printf(b, "If-None-Match: %s\r\n", it->if_none_match);
        for (const char *const *h = it->headers; !rc && h && *h; h++)
            rc = buf_printf(b, "%s\r\n", *h);
        if (!rc)
            rc = buf_addstr(b, "\r\n");
        if (!rc && it->body)
            rc = buf_addstr(b, it->body);
        if (!rc)
            rc = buf_addstr(b, "\r\n");
    }
    if (!rc)
        rc = buf_printf(b, "--%s--\r\n", boundary);
    return rc;
}

void dv_batch_items_release(struct dv_batch_item *items, size_t n)
{
    for (size_t i = 0; items && i < n; i++) {
        free(items[i].response);
        items[i].response = NULL;
    }
}

int dv_batch(struct dv_client *c, const struct dv_env *env, struct dv_batch_item *items, size_t n,
             bool continue_on_error, const char *const *extra, struct dverr *err)
{
    struct buf url = BUF_INIT, body = BUF_INIT, ctype = BUF_INIT, rct = BUF_INIT;
    struct http_response resp;
    const char **headers = NULL;
    struct dv_batch_part *parts = NULL;
    size_t n_parts = 0;
    char boundary[48];
    int rc;
    http_response_init(&resp);
    for (size_t i = 0; i < n; i++) {
        items[i].status = 0;
        items[i].response = NULL;
    }
    if (n == 0)
        return 0;
    if (n > BATCH_MAX_ITEMS)
        return dverr_set(err, -E2BIG, "a batch holds at most %d requests", BATCH_MAX_ITEMS);
    char hex[33];
    {
        char seed[64];
        snprintf(seed, sizeof(seed), "%lld-%p-%zu", (long long)now_ms(), (void *)items, n);
        char h[65];
        sha256_hex(seed, strlen(seed), h);
        memcpy(hex, h, 32);
        hex[32] = '\0';
    }
    snprintf(boundary, sizeof(boundary), "batch_%s", hex);
    for (size_t i = 0; i < n; i++)
        if (items[i].body && strstr(items[i].body, boundary))
            return dverr_set(err, -EINVAL, "batch item %zu contains the batch boundary", i + 1);
    bool safe = true;
    for (size_t i = 0; i < n; i++)
        if (!items[i].method || strcmp(items[i].method, "POST") == 0)
            safe = false; /* a POST may create twice when its answer is lost */
    if ((rc = dv_api_url(env, "$batch", &url, err)) ||
        (rc = build_body(env, items, n, boundary, &body, err)) ||
        (rc = buf_printf(&ctype, "Content-Type: multipart/mixed; boundary=%s", boundary)))
        goto out;
    const char *base[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                          "OData-Version: 4.0", ctype.data,
                          continue_on_error ? "Prefer: odata.continue-on-error" : NULL, NULL};
    if (!(headers = dv_headers_join(base, extra))) {
        rc = -ENOMEM;
        goto out;
    }
    struct dv_call call = {.method = "POST", .url = url.data, .resource = env->api_url,
                           .headers = headers, .body = body.data, .body_len = body.len,
                           .retry_unsafe = safe, .max_response = 512ull << 20};
    if ((rc = dv_call(c, &call, &resp, err)))
        goto out;
    bool multipart = http_response_header(&resp, "Content-Type", &rct) &&
                     strncasecmp(rct.data, "multipart/mixed", 15) == 0;
    if (!multipart) {
        if (resp.status >= 200 && resp.status < 300)
            rc = dverr_set(err, -EPROTO, "$batch: HTTP %ld without a multipart body",
                           resp.status);
        else
            rc = dv_status_error(&resp, "$batch", err);
        goto out;
    }
    if ((rc = dv_batch_parse_response(rct.data, resp.body.data, resp.body.len, &parts,
                                      &n_parts))) {
        rc = dverr_set(err, rc == -ENOMEM ? rc : -EPROTO, "$batch: malformed multipart answer");
        goto out;
    }
    size_t order = 0;
    for (size_t i = 0; i < n_parts; i++) {
        size_t idx;
        if (parts[i].content_id > 0 && (size_t)parts[i].content_id <= n)
            idx = (size_t)parts[i].content_id - 1;
        else
            idx = order;
        order = idx + 1;
        if (idx >= n || items[idx].status != 0)
            continue; /* more answers than items, or a duplicate: ignore */
        items[idx].status = parts[i].status;
        items[idx].response = parts[i].body;
        parts[i].body = NULL;
    }
    rc = 0;
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    free(headers);
    dv_batch_parts_free(parts, n_parts);
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&body);
    buf_release(&ctype);
    buf_release(&rct);
    return rc;
}
