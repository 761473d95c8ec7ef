/* webwrite_batch: POST $batch of each org's Web API (webapi_int.h).
 * The body is multipart/mixed: each part an application/http request, or a change set (a nested
 * multipart/mixed) whose requests succeed or fail together. At most BATCH_MAX requests; GET is
 * refused inside a change set, and a $batch inside a $batch. Each request runs as a request of
 * its own (same org, same token) through webapi_route; "$n" references to a Content-ID created
 * earlier in the batch are replaced in URLs and in JSON strings. Without Prefer:
 * odata.continue-on-error the batch stops at the first failure, answered with that part's status.
 * The response is multipart/mixed in the same shape (changesetresponse_ for change sets). The
 * $batch's own headers that a part may inherit (the business-logic headers) apply to every part
 * that has none of its own. Each part goes to the request log as a part (with the headers that
 * applied to it).
 * Threading: a change set holds d->write_lock for its whole transaction; top-level parts take
 * their own write sessions. */
#include "tools/dvsim/webapi_int.h"

#include "backend/base/json.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BATCH_MAX 1000

struct bpart {
    const char *h, *he;    /* MIME headers */
    const char *b, *be;    /* content */
};

/* Split [p, end) by "--boundary" lines. Returns the part count or -EINVAL. */
static int split_multipart(const char *p, const char *end, const char *boundary, struct bpart *parts, int max)
{
    char delim[128];
    int dl = snprintf(delim, sizeof delim, "--%s", boundary);
    if (dl <= 2 || (size_t)dl >= sizeof delim)
        return -EINVAL;
    const char *s = memmem(p, (size_t)(end - p), delim, (size_t)dl);
    int n = 0;
    while (s) {
        const char *after = s + dl;
        if (after + 2 <= end && after[0] == '-' && after[1] == '-')
            return n; /* closing delimiter */
        const char *line_end = memchr(after, '\n', (size_t)(end - after));
        if (!line_end)
            return -EINVAL;
        const char *start = line_end + 1;
        const char *next = start;
        const char *found = NULL;
        while (next < end && (found = memmem(next, (size_t)(end - next), delim, (size_t)dl)) != NULL) {
            if (found == start || found[-1] == '\n')
                break;
            next = found + 1;
            found = NULL;
        }
        if (!found)
            return -EINVAL;
        if (n >= max)
            return -E2BIG;
        const char *cend = found;
        if (cend > start && cend[-1] == '\n')
            cend--;
        if (cend > start && cend[-1] == '\r')
            cend--;
        /* headers end at the first blank line */
        const char *hb = start, *q = start;
        const char *body = NULL;
        while (q < cend) {
            const char *nl = memchr(q, '\n', (size_t)(cend - q));
            const char *le = nl ? nl : cend;
            size_t ll = (size_t)(le - q);
            if (ll && q[ll - 1] == '\r')
                ll--;
            if (ll == 0) {
                body = nl ? nl + 1 : cend;
                break;
            }
            q = nl ? nl + 1 : cend;
        }
        parts[n].h = hb;
        parts[n].he = body ? body : cend;
        parts[n].b = body ? body : cend;
        parts[n].be = cend;
        n++;
        s = found;
    }
    return -EINVAL;
}

static bool header_in(const char *h, const char *he, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    while (h < he) {
        const char *e = memchr(h, '\n', (size_t)(he - h));
        const char *le = e ? e : he;
        if ((size_t)(le - h) > nl && !strncasecmp(h, name, nl) && h[nl] == ':') {
            const char *v = h + nl + 1;
            while (v < le && *v == ' ')
                v++;
            size_t vl = (size_t)(le - v);
            while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                vl--;
            snprintf(out, n, "%.*s", (int)(vl < n ? vl : n - 1), v);
            return true;
        }
        h = e ? e + 1 : he;
    }
    return false;
}

static int boundary_of(const char *ct, char *out, size_t n)
{
    const char *p = ct ? strcasestr(ct, "boundary=") : NULL;
    if (!p || strncasecmp(ct, "multipart/mixed", 15) != 0)
        return -EINVAL;
    p += 9;
    bool q = *p == '"';
    if (q)
        p++;
    size_t l = strcspn(p, q ? "\"" : "; \t");
    if (!l || l >= n)
        return -EINVAL;
    memcpy(out, p, l);
    out[l] = '\0';
    return 0;
}

struct bitem {
    int changeset;          /* -1: top level */
    char content_id[32];
    char method[10];
    char *url;
    struct qarg hdrs[24];
    int nh;
    char *body;
    size_t blen;
    int status;             /* result */
    struct buf resp;        /* the part's HTTP response text */
};

static int parse_http_part(const struct bpart *p, int cs, struct bitem *it)
{
    memset(it, 0, sizeof *it);
    it->changeset = cs;
    char ct[128];
    if (!header_in(p->h, p->he, "Content-Type", ct, sizeof ct) || strncasecmp(ct, "application/http", 16) != 0)
        return -EINVAL;
    header_in(p->h, p->he, "Content-ID", it->content_id, sizeof it->content_id);
    const char *s = p->b, *end = p->be;
    const char *nl = memchr(s, '\n', (size_t)(end - s));
    if (!nl)
        nl = end;
    char line[4096];
    size_t ll = (size_t)(nl - s);
    if (ll && s[ll - 1] == '\r')
        ll--;
    if (ll >= sizeof line)
        return -E2BIG;
    memcpy(line, s, ll);
    line[ll] = '\0';
    char url[4096];
    if (sscanf(line, "%9s %4095s", it->method, url) != 2)
        return -EINVAL;
    it->url = strdup(url);
    const char *q = nl < end ? nl + 1 : end;
    while (q < end) {
        const char *e = memchr(q, '\n', (size_t)(end - q));
        const char *le = e ? e : end;
        size_t l = (size_t)(le - q);
        if (l && q[l - 1] == '\r')
            l--;
        if (l == 0) {
            q = e ? e + 1 : end;
            break;
        }
        const char *colon = memchr(q, ':', l);
        if (colon && it->nh < 24) {
            const char *v = colon + 1;
            while (v < q + l && *v == ' ')
                v++;
            it->hdrs[it->nh].key = strndup(q, (size_t)(colon - q));
            it->hdrs[it->nh].val = strndup(v, (size_t)(q + l - v));
            if (!strcasecmp(it->hdrs[it->nh].key, "Content-ID") && !it->content_id[0])
                snprintf(it->content_id, sizeof it->content_id, "%s", it->hdrs[it->nh].val);
            it->nh++;
        }
        q = e ? e + 1 : end;
    }
    it->blen = (size_t)(end - q);
    it->body = malloc(it->blen + 1);
    if (!it->url || !it->body)
        return -ENOMEM;
    memcpy(it->body, q, it->blen);
    it->body[it->blen] = '\0';
    return 0;
}

static void bitem_release(struct bitem *it)
{
    free(it->url);
    free(it->body);
    for (int i = 0; i < it->nh; i++) {
        free(it->hdrs[i].key);
        free(it->hdrs[i].val);
    }
    buf_release(&it->resp);
}

static const char *reason(int st)
{
    switch (st) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return st >= 500 ? "Internal Server Error" : "Error";
    }
}

struct cid_map {
    char id[32];
    char path[160];         /* "<set>(<guid>)" */
};

/* Replace "$n" references (URL start, JSON strings) with the created records. */
static void substitute(char **s, size_t *len, const struct cid_map *map, int n_map, bool url)
{
    for (int i = 0; i < n_map; i++) {
        char pat[40], rep[200];
        if (url) {
            snprintf(pat, sizeof pat, "$%s", map[i].id);
            size_t pl = strlen(pat);
            if (!strncmp(*s, pat, pl) && ((*s)[pl] == '\0' || (*s)[pl] == '/' || (*s)[pl] == '?')) {
                struct buf b = BUF_INIT;
                buf_printf(&b, "%s%s", map[i].path, *s + pl);
                free(*s);
                *len = b.len;
                *s = buf_detach(&b);
            }
            continue;
        }
        snprintf(pat, sizeof pat, "\"$%s\"", map[i].id);
        snprintf(rep, sizeof rep, "\"/%s\"", map[i].path);
        char *hit;
        while ((hit = strstr(*s, pat)) != NULL) {
            struct buf b = BUF_INIT;
            buf_add(&b, *s, (size_t)(hit - *s));
            buf_addstr(&b, rep);
            buf_addstr(&b, hit + strlen(pat));
            free(*s);
            *len = b.len;
            *s = buf_detach(&b);
        }
    }
}

/* Run one part as a request of its own (same org, same token, the batch's transaction). */
static void exec_item(struct req *r, struct bitem *it, sqlite3 *txn, const struct cid_map *map, int n_map)
{
    struct req *sub = calloc(1, sizeof *sub);
    if (!sub) {
        it->status = 500;
        return;
    }
    substitute(&it->url, &it->blen /* unused for url */, map, n_map, true);
    size_t blen = it->blen;
    substitute(&it->body, &blen, map, n_map, false);
    it->blen = strlen(it->body);
    sub->d = r->d;
    sub->method = it->method;
    sub->env = r->env;
    sub->inner = true;
    sub->outer = r;
    sub->txn_db = txn;
    sub->status = 500;
    sub->start_ms = now_ms();
    memcpy(sub->token, r->token, sizeof sub->token);
    for (int i = 0; i < it->nh; i++)
        sub->inner_hdrs[i] = it->hdrs[i];
    sub->n_inner_hdrs = it->nh;
    buf_add(&sub->body, it->body, it->blen);
    /* path: absolute URL, /org/<env>/api/data/v9.2/..., /api/data/v9.2/... or relative */
    const char *u = it->url;
    const char *sep = strstr(u, "://");
    if (sep)
        u = strchr(sep + 3, '/') ? strchr(sep + 3, '/') : "";
    char prefix[160];
    snprintf(prefix, sizeof prefix, "/org/%s%s", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX);
    struct buf path = BUF_INIT;
    if (!strncmp(u, prefix, strlen(prefix)))
        u += strlen(prefix);
    else if (!strncmp(u, DVSIM_API_PREFIX, sizeof DVSIM_API_PREFIX - 1))
        u += sizeof DVSIM_API_PREFIX - 1;
    else if (u[0] == '/' && it->url[0] == '/') {
        sreply_error(sub, 400, "0x80060888", "The URL %.200s is not in this organization.", it->url);
        goto done;
    }
    if (*u != '/')
        buf_addch(&path, '/');
    const char *qm = strchr(u, '?');
    buf_add(&path, u, qm ? (size_t)(qm - u) : strlen(u));
    sub->path = buf_detach(&path);
    dvsim_url_decode(sub->path);
    if (qm) {
        char *qs = strdup(qm + 1);
        char *save = NULL;
        for (char *kv = qs ? strtok_r(qs, "&", &save) : NULL; kv && sub->n_args < 32; kv = strtok_r(NULL, "&", &save)) {
            char *eq = strchr(kv, '=');
            if (eq)
                *eq = '\0';
            sub->args[sub->n_args].key = strdup(kv);
            sub->args[sub->n_args].val = strdup(eq ? eq + 1 : "");
            dvsim_url_decode(sub->args[sub->n_args].key);
            dvsim_url_decode(sub->args[sub->n_args].val);
            sub->n_args++;
        }
        free(qs);
    }
    if (!strcmp(sub->path, "/$batch"))
        sreply_error(sub, 400, "0x80060888", "A $batch cannot contain another $batch.");
    else
        webapi_route(sub, sub->path);
done:
    it->status = sub->status;
    {
        struct bypass b;
        struct buf logged = BUF_INIT;
        dvsim_bypass_of(sub, &b);
        buf_printf(&logged, "/org/%s%s%s", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX,
                   sub->path ? sub->path : "");
        dvsim_reqlog_add(r->d, it->method, logged.data, sub->status, sub->start_ms, r->token, sub->out.len, &b, true);
        buf_release(&logged);
    }
    buf_printf(&it->resp, "HTTP/1.1 %d %s\r\nOData-Version: 4.0\r\n", sub->status, reason(sub->status));
    for (char *h = sub->headers.data; h && *h;) {
        char *nl = strchr(h, '\n');
        if (!nl)
            break;
        buf_add(&it->resp, h, (size_t)(nl - h));
        buf_addstr(&it->resp, "\r\n");
        if (!strncmp(h, "OData-EntityId: ", 16))
            buf_printf(&it->resp, "Location: %.*s\r\n", (int)(nl - h - 16), h + 16);
        h = nl + 1;
    }
    if (sub->out.len && sub->status != 204) {
        buf_printf(&it->resp, "Content-Type: %s%s\r\n", sub->content_type ? sub->content_type : "application/json",
                   sub->status == 200 && !strcmp(it->method, "GET") ? "; odata.streaming=true" : "");
        buf_addstr(&it->resp, "\r\n");
        buf_add(&it->resp, sub->out.data, sub->out.len);
        buf_addstr(&it->resp, "\r\n");
    } else {
        buf_addstr(&it->resp, "\r\n");
    }
    for (int i = 0; i < sub->n_args; i++) {
        free(sub->args[i].key);
        free(sub->args[i].val);
    }
    free(sub->path);
    buf_release(&sub->body);
    buf_release(&sub->headers);
    buf_release(&sub->out);
    free(sub);
}

static void remember_cid(struct bitem *it, struct cid_map *map, int *n_map)
{
    if (!it->content_id[0] || *n_map >= BATCH_MAX || (it->status != 201 && it->status != 204))
        return;
    const char *e = strstr(it->resp.data ? it->resp.data : "", "OData-EntityId: ");
    if (!e)
        return;
    const char *p = strstr(e, DVSIM_API_PREFIX "/");
    if (!p)
        return;
    p += sizeof DVSIM_API_PREFIX;
    size_t l = strcspn(p, "\r\n");
    snprintf(map[*n_map].id, sizeof map[0].id, "%s", it->content_id);
    snprintf(map[*n_map].path, sizeof map[0].path, "%.*s", (int)(l < 159 ? l : 159), p);
    (*n_map)++;
}

static void emit_part(struct buf *o, const char *boundary, const struct bitem *it)
{
    buf_printf(o, "--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n", boundary);
    if (it->content_id[0])
        buf_printf(o, "Content-ID: %s\r\n", it->content_id);
    buf_addstr(o, "\r\n");
    buf_add(o, it->resp.data, it->resp.len);
}

void webwrite_batch(struct req *r)
{
    struct bpart top[BATCH_MAX + 2], inner[BATCH_MAX + 2];
    struct bitem *items = NULL;
    struct cid_map *map = NULL;
    int n_items = 0, n_map = 0;
    char boundary[128], cb[128];
    if (strcmp(r->method, "POST") != 0) {
        sreply_error(r, 405, "0x80060888", "$batch accepts POST only.");
        return;
    }
    if (boundary_of(sreq_header(r, "Content-Type"), boundary, sizeof boundary)) {
        sreply_error(r, 400, "0x80060888", "The $batch request must have Content-Type multipart/mixed with a boundary.");
        return;
    }
    const char *body = r->body.data ? r->body.data : "";
    int nt = split_multipart(body, body + r->body.len, boundary, top, BATCH_MAX + 1);
    if (nt == -E2BIG || nt > BATCH_MAX) {
        sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
        return;
    }
    if (nt < 0) {
        sreply_error(r, 400, "0x80060888", "The $batch body is not a valid multipart/mixed message.");
        return;
    }
    items = calloc(BATCH_MAX + 1, sizeof *items);
    map = calloc(BATCH_MAX + 1, sizeof *map);
    if (!items || !map) {
        sreply_error(r, 500, "0x80040216", "out of memory");
        goto out;
    }
    int n_changesets = 0;
    for (int i = 0; i < nt; i++) {
        char ct[256];
        if (!header_in(top[i].h, top[i].he, "Content-Type", ct, sizeof ct)) {
            sreply_error(r, 400, "0x80060888", "Batch part %d has no Content-Type.", i + 1);
            goto out;
        }
        if (!strncasecmp(ct, "multipart/mixed", 15)) {
            int cs = n_changesets++;
            int ni = boundary_of(ct, cb, sizeof cb) ? -EINVAL
                                                     : split_multipart(top[i].b, top[i].be, cb, inner, BATCH_MAX + 1);
            if (ni == -E2BIG || n_items + (ni > 0 ? ni : 0) > BATCH_MAX) {
                sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
                goto out;
            }
            if (ni < 0) {
                sreply_error(r, 400, "0x80060888", "Change set %d is not a valid multipart/mixed message.", cs + 1);
                goto out;
            }
            for (int k = 0; k < ni; k++) {
                if (parse_http_part(&inner[k], cs, &items[n_items])) {
                    n_items++;
                    sreply_error(r, 400, "0x80060888", "Change set %d, part %d is not an HTTP request.", cs + 1, k + 1);
                    goto out;
                }
                if (!strcmp(items[n_items].method, "GET")) {
                    n_items++;
                    sreply_error(r, 400, "0x80060888", "GET requests are not allowed in a change set.");
                    goto out;
                }
                n_items++;
            }
        } else {
            if (n_items + 1 > BATCH_MAX) {
                sreply_error(r, 400, "0x80060888", "Number of requests in a batch exceeded the limit of %d.", BATCH_MAX);
                goto out;
            }
            if (parse_http_part(&top[i], -1, &items[n_items])) {
                n_items++;
                sreply_error(r, 400, "0x80060888", "Batch part %d is not an HTTP request.", i + 1);
                goto out;
            }
            n_items++;
        }
    }
    struct buf pf = BUF_INIT;
    sreq_header_all(r, "Prefer", &pf);
    bool cont = pf.data && strstr(pf.data, "odata.continue-on-error");
    buf_release(&pf);

    char rb[64], rcs[64], g[37];
    webwrite_random_guid(r->d, g);
    snprintf(rb, sizeof rb, "batchresponse_%s", g);
    struct buf o = BUF_INIT;
    int outer_status = 200;
    for (int i = 0; i < n_items;) {
        struct bitem *it = &items[i];
        if (it->changeset < 0) {
            exec_item(r, it, NULL, map, n_map);
            remember_cid(it, map, &n_map);
            emit_part(&o, rb, it);
            i++;
            if (it->status >= 400 && !cont) {
                outer_status = it->status;
                break;
            }
            continue;
        }
        /* a change set: all or nothing in one transaction */
        int cs = it->changeset, j = i;
        pthread_mutex_lock(&r->d->write_lock);
        sqlite3 *db = dvstore_get(r->d->store);
        bool failed = !db || dvstore_begin(db) != 0;
        int fail_at = -1;
        int map_before = n_map;
        for (j = i; j < n_items && items[j].changeset == cs; j++) {
            if (failed)
                continue;
            exec_item(r, &items[j], db, map, n_map);
            remember_cid(&items[j], map, &n_map);
            if (items[j].status >= 400) {
                failed = true;
                fail_at = j;
            }
        }
        if (db) {
            if (failed)
                dvstore_rollback(db);
            else if (dvstore_commit(db) != 0) {
                dvstore_rollback(db);
                failed = true;
            }
        }
        dvstore_put(r->d->store, db);
        pthread_mutex_unlock(&r->d->write_lock);
        webwrite_random_guid(r->d, g);
        snprintf(rcs, sizeof rcs, "changesetresponse_%s", g);
        buf_printf(&o, "--%s\r\nContent-Type: multipart/mixed; boundary=%s\r\n\r\n", rb, rcs);
        if (failed) {
            n_map = map_before; /* nothing in the change set exists */
            if (fail_at >= 0)
                emit_part(&o, rcs, &items[fail_at]);
            else {
                buf_reset(&items[i].resp);
                buf_addstr(&items[i].resp, "HTTP/1.1 503 Service Unavailable\r\nOData-Version: 4.0\r\n\r\n");
                items[i].status = 503;
                fail_at = i;
                emit_part(&o, rcs, &items[i]);
            }
        } else {
            for (int k = i; k < j; k++)
                emit_part(&o, rcs, &items[k]);
        }
        buf_printf(&o, "--%s--\r\n", rcs);
        i = j;
        if (failed && !cont) {
            outer_status = items[fail_at].status;
            break;
        }
    }
    buf_printf(&o, "--%s--\r\n", rb);
    buf_release(&r->out);
    r->out = o;
    r->status = outer_status;
    {
        char ct[128];
        snprintf(ct, sizeof ct, "multipart/mixed; boundary=%s", rb);
        /* content_type must be static: pass it as a header instead */
        r->content_type = NULL;
        sreq_add_header(r, "Content-Type", ct);
    }
out:
    for (int i = 0; items && i < n_items; i++)
        bitem_release(&items[i]);
    free(items);
    free(map);
}
