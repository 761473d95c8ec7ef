/* server: dvsim's HTTP front end on libmicrohttpd. One thread per connection (so added latency and
 * the concurrency limit behave like a real server with many workers), bodies up to 160 MiB.
 * Routing: /_sim/ (loopback only, no token, no faults), /<tenant>/oauth2/v2.0/token, the admin API
 * under /providers/Microsoft.BusinessAppPlatform/, and each org's Web API under
 * /org/<uniqueName>/api/data/v9.2/. Every route but /_sim/ and the token endpoint needs a bearer
 * for its own resource (401 otherwise). Web API requests pass service protection (per-token
 * sliding window and concurrency; 429 + Retry-After) and then the fault injector (500/503 rate,
 * latency, dropped connections, truncated JSON). Every answered request goes to the request log
 * with its business-logic headers (and each $batch part, marked as one).
 * Threading: connection threads share struct dvsim; d->lock guards faults, the PRNG, the log and
 * the throttle slots, and is never held across SQLite work or sleeps. */
#include "tools/dvsim/dvsim.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"

double dvsim_rand(struct dvsim *d)
{
    pthread_mutex_lock(&d->lock);
    uint64_t x = dvsim_splitmix64(&d->rng);
    pthread_mutex_unlock(&d->lock);
    return (double)(x >> 11) / 9007199254740992.0;
}

const char *sreq_header(struct req *r, const char *name)
{
    if (r->inner) {
        for (int i = 0; i < r->n_inner_hdrs; i++)
            if (strcasecmp(r->inner_hdrs[i].key, name) == 0)
                return r->inner_hdrs[i].val;
        return strcasecmp(name, "Host") == 0 && r->outer ? sreq_header(r->outer, name) : NULL;
    }
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

struct hdr_join {
    const char *name;
    struct buf *out;
};

static enum MHD_Result join_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct hdr_join *j = cls;
    if (key && value && strcasecmp(key, j->name) == 0) {
        if (j->out->len)
            buf_addstr(j->out, ", ");
        buf_addstr(j->out, value);
    }
    return MHD_YES;
}

void sreq_header_all(struct req *r, const char *name, struct buf *out)
{
    struct hdr_join j = {name, out};
    if (r->inner) {
        for (int i = 0; i < r->n_inner_hdrs; i++)
            join_header(&j, MHD_HEADER_KIND, r->inner_hdrs[i].key, r->inner_hdrs[i].val);
        return;
    }
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, join_header, &j);
}

const char *sreq_arg(struct req *r, const char *key)
{
    for (int i = 0; i < r->n_args; i++)
        if (strcmp(r->args[i].key, key) == 0)
            return r->args[i].val;
    return NULL;
}

int sreq_add_header(struct req *r, const char *name, const char *value)
{
    return buf_printf(&r->headers, "%s: %s\n", name, value);
}

void sreply_json(struct req *r, int status)
{
    r->status = status;
    r->content_type = "application/json; odata.metadata=minimal";
}

void sreply_error(struct req *r, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"error\":{\"code\":");
    buf_add_json_string(&r->out, code, strlen(code));
    buf_addstr(&r->out, ",\"message\":");
    buf_add_json_string(&r->out, msg, strlen(msg));
    buf_addstr(&r->out, "}}");
    r->status = status;
    r->content_type = "application/json; odata.metadata=minimal";
}

void sreq_base(struct req *r, struct buf *out)
{
    const char *host = r->d->public_url ? NULL : sreq_header(r, "Host");
    if (host && *host && strlen(host) < 200 && !strpbrk(host, "/\"\\ \r\n"))
        buf_printf(out, "http://%s", host);
    else
        buf_addstr(out, r->d->base_url);
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    struct req *r = cls;
    if (!key || r->n_args >= 32)
        return MHD_YES;
    r->args[r->n_args].key = strdup(key);
    r->args[r->n_args].val = strdup(value ? value : "");
    r->n_args++;
    return MHD_YES;
}

static bool is_loopback(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return false;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    return false;
}

/* ---- auth ---- */

static void unauthorized(struct req *r, const char *resource, const char *why)
{
    char hdr[900];
    snprintf(hdr, sizeof hdr, "Bearer authorization_uri=%s/%s/oauth2/authorize, resource_id=%s%s",
             r->d->base_url, DVSIM_TENANT, r->d->base_url, resource);
    sreq_add_header(r, "WWW-Authenticate", hdr);
    sreply_error(r, 401, "0x80072560", "%s", why);
}

/* 0 when the request carries a valid bearer for resource; else replies 401. */
static int authorize(struct req *r, const char *resource)
{
    const char *h = sreq_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) {
        unauthorized(r, resource, "The user is not authenticated (no bearer token).");
        return -EACCES;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    dvsim_token_fingerprint(tok, r->token);
    char res[256];
    int rc = dvsim_token_check(r->d, tok, res, sizeof res);
    if (rc == -ETIMEDOUT) {
        unauthorized(r, resource, "ExpiredAuthTicket: the access token has expired.");
        return rc;
    }
    if (rc) {
        unauthorized(r, resource, "InvalidAuthTicket: the access token is not valid.");
        return rc;
    }
    if (strcmp(res, resource) != 0) {
        unauthorized(r, resource, "InvalidAuthTicket: the access token was issued for another resource.");
        return -EACCES;
    }
    return 0;
}

/* ---- service protection ---- */

static struct throttle_slot *slot_for(struct dvsim *d, const char *token)
{
    struct throttle_slot *free_slot = NULL;
    for (int i = 0; i < THROTTLE_SLOTS; i++) {
        if (strcmp(d->slots[i].token, token) == 0 && d->slots[i].token[0])
            return &d->slots[i];
        if (!d->slots[i].token[0] && !free_slot)
            free_slot = &d->slots[i];
    }
    if (!free_slot) { /* reuse the first idle slot */
        for (int i = 0; i < THROTTLE_SLOTS && !free_slot; i++)
            if (!d->slots[i].inflight)
                free_slot = &d->slots[i];
        if (!free_slot)
            return NULL;
    }
    snprintf(free_slot->token, sizeof free_slot->token, "%s", token);
    free_slot->head = free_slot->count = 0;
    free_slot->blocked_until_ms = free_slot->extra_ms = 0;
    return free_slot;
}

/* 0 when admitted (inflight counted), else a 429 reply. */
static int throttle_enter(struct req *r)
{
    struct dvsim *d = r->d;
    int64_t now = now_ms();
    const char *code = NULL, *fmt = NULL;
    int64_t retry_ms = 0;
    int limit = 0, window = 0;
    pthread_mutex_lock(&d->lock);
    struct throttle_slot *s = slot_for(d, r->token);
    if (!s)
        goto admit;
    limit = d->faults.max_requests;
    window = d->faults.window_s;
    if (d->faults.max_concurrency > 0 && s->inflight >= d->faults.max_concurrency) {
        code = "0x80072326";
        fmt = "conc";
        retry_ms = 1000;
        goto out;
    }
    if (limit > 0 && window > 0) {
        if (s->cap != limit) {
            free(s->stamps);
            s->stamps = calloc((size_t)limit, sizeof *s->stamps);
            s->cap = s->stamps ? limit : 0;
            s->head = s->count = 0;
        }
        if (now < s->blocked_until_ms) {
            /* still pushing while blocked: the wait grows, up to one more window */
            s->extra_ms += 1000;
            if (s->extra_ms > (int64_t)window * 1000)
                s->extra_ms = (int64_t)window * 1000;
            s->blocked_until_ms += 1000;
            code = "0x80072322";
            retry_ms = s->blocked_until_ms - now;
            goto out;
        }
        while (s->count > 0 && s->stamps[s->head] <= now - (int64_t)window * 1000) {
            s->head = (s->head + 1) % s->cap;
            s->count--;
        }
        if (s->cap && s->count >= s->cap) {
            s->blocked_until_ms = s->stamps[s->head] + (int64_t)window * 1000 + s->extra_ms;
            code = "0x80072322";
            retry_ms = s->blocked_until_ms - now;
            goto out;
        }
        s->extra_ms = 0;
        if (s->cap) {
            s->stamps[(s->head + s->count) % s->cap] = now;
            s->count++;
        }
    }
admit:
    if (s)
        s->inflight++;
out:
    pthread_mutex_unlock(&d->lock);
    if (!code)
        return 0;
    char ra[32];
    snprintf(ra, sizeof ra, "%lld", (long long)((retry_ms + 999) / 1000 < 1 ? 1 : (retry_ms + 999) / 1000));
    sreq_add_header(r, "Retry-After", ra);
    if (fmt)
        sreply_error(r, 429, code, "Number of concurrent requests exceeded the limit of %d.",
                    d->faults.max_concurrency);
    else
        sreply_error(r, 429, code, "Number of requests exceeded the limit of %d over time window of %d seconds.",
                    limit, window);
    return -EBUSY;
}

static void throttle_leave(struct req *r)
{
    pthread_mutex_lock(&r->d->lock);
    for (int i = 0; i < THROTTLE_SLOTS; i++)
        if (r->d->slots[i].token[0] && strcmp(r->d->slots[i].token, r->token) == 0) {
            if (r->d->slots[i].inflight > 0)
                r->d->slots[i].inflight--;
            break;
        }
    pthread_mutex_unlock(&r->d->lock);
}

/* ---- faults ---- */
enum fault { F_NONE, F_DROP, F_TRUNCATE };

/* Before the handler: latency and 500/503 answers. Returns true when it replied. */
static bool fault_before(struct req *r)
{
    struct dvsim *d = r->d;
    pthread_mutex_lock(&d->lock);
    int latency = d->faults.latency_ms;
    double fail = d->faults.fail_rate;
    pthread_mutex_unlock(&d->lock);
    if (latency > 0) {
        struct timespec ts = {latency / 1000, (long)(latency % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (fail > 0 && dvsim_rand(d) < fail) {
        if (dvsim_rand(d) < 0.5)
            sreply_error(r, 503, "0x80040216", "Service Unavailable (injected by dvsim).");
        else
            sreply_error(r, 500, "0x80040216", "An unexpected error occurred (injected by dvsim).");
        return true;
    }
    return false;
}

static enum fault fault_after(struct req *r)
{
    struct dvsim *d = r->d;
    pthread_mutex_lock(&d->lock);
    double drop = d->faults.drop_rate, trunc = d->faults.truncate_rate;
    pthread_mutex_unlock(&d->lock);
    if (r->out.len < 2)
        return F_NONE;
    if (drop > 0 && dvsim_rand(d) < drop)
        return F_DROP;
    if (trunc > 0 && r->status == 200 && dvsim_rand(d) < trunc)
        return F_TRUNCATE;
    return F_NONE;
}

struct drop_ctx {
    char *data;
    size_t len, send;
};

static ssize_t drop_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct drop_ctx *c = cls;
    if (pos >= c->send)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = c->send - (size_t)pos < max ? c->send - (size_t)pos : max;
    memcpy(buf, c->data + pos, n);
    return (ssize_t)n;
}

static void drop_free(void *cls)
{
    struct drop_ctx *c = cls;
    free(c->data);
    free(c);
}

/* ---- request log ---- */
void dvsim_reqlog_add(struct dvsim *d, const char *method, const char *path, int status, int64_t start_ms,
                      const char *token, uint64_t bytes, const struct bypass *b, bool batch_part)
{
    pthread_mutex_lock(&d->lock);
    uint64_t seq = ++d->log_seq;
    struct reqlog_entry *e = &d->log[seq % REQLOG_CAP]; /* where /_sim/requests looks for it */
    e->seq = seq;
    snprintf(e->method, sizeof e->method, "%s", method);
    snprintf(e->path, sizeof e->path, "%s", path);
    e->status = status;
    e->time_ms = (double)(now_ms() - start_ms);
    snprintf(e->token, sizeof e->token, "%s", token);
    e->bytes = bytes;
    if (b)
        e->bypass = *b;
    else
        memset(&e->bypass, 0, sizeof e->bypass);
    e->batch_part = batch_part;
    pthread_mutex_unlock(&d->lock);
}

static void log_request(struct req *r, const char *url, size_t bytes)
{
    struct bypass b;
    dvsim_bypass_of(r, &b);
    dvsim_reqlog_add(r->d, r->method, url, r->status, r->start_ms, r->token, bytes, &b, false);
}

/* ---- dispatch ---- */
static void dispatch(struct req *r)
{
    struct dvsim *d = r->d;
    const char *p = r->path;
    if (strncmp(p, "/_sim/", 6) == 0) {
        r->no_faults = true;
        if (!is_loopback(r->conn)) {
            sreply_error(r, 403, "Forbidden", "/_sim/ is only served to loopback clients.");
            return;
        }
        dvsim_sim_route(r, p + 5);
        return;
    }
    if (r->body_too_big) {
        sreply_error(r, 413, "0x80044a02", "Request body too large.");
        return;
    }
    char tenant[64];
    if (sscanf(p, "/%63[^/]/oauth2/v2.0/token", tenant) == 1 && strstr(p, "/oauth2/v2.0/token") &&
        strcmp(strstr(p, "/oauth2/v2.0/token"), "/oauth2/v2.0/token") == 0) {
        r->no_faults = true;
        dvadmin_token(r, tenant);
        return;
    }
    static const char bap[] = "/providers/Microsoft.BusinessAppPlatform/";
    if (strncmp(p, bap, sizeof bap - 2) == 0) {
        if (authorize(r, ""))
            return;
        if (fault_before(r))
            return;
        dvadmin_route(r, p + sizeof bap - 2);
        return;
    }
    if (strncmp(p, "/org/", 5) == 0) {
        const char *name = p + 5;
        const char *slash = strchr(name, '/');
        size_t nl = slash ? (size_t)(slash - name) : strlen(name);
        int env = dvschema_env_index(name, nl);
        if (env < 0) {
            sreply_error(r, 404, "0x80040217", "No organization named '%.*s'.", (int)(nl > 64 ? 64 : nl), name);
            return;
        }
        r->env = env;
        const char *rest = name + nl;
        static const char prefix[] = DVSIM_API_PREFIX;
        if (strncmp(rest, prefix, sizeof prefix - 1) != 0 ||
            (rest[sizeof prefix - 1] != '/' && rest[sizeof prefix - 1] != '\0')) {
            sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.*s'.", 64, rest);
            return;
        }
        char resource[128];
        snprintf(resource, sizeof resource, "/org/%.*s", (int)nl, name);
        if (authorize(r, resource))
            return;
        if (throttle_enter(r))
            return;
        if (!fault_before(r))
            webapi_route(r, rest + sizeof prefix - 1);
        throttle_leave(r);
        return;
    }
    (void)d;
    sreply_error(r, 404, "NotFound", "No route for %.200s", p);
}

static enum MHD_Result respond(struct req *r, struct MHD_Connection *conn, const char *url)
{
    enum fault f = r->no_faults ? F_NONE : fault_after(r);
    struct MHD_Response *resp;
    size_t len = r->out.len;
    char *data = buf_detach(&r->out);
    if (f == F_DROP) {
        struct drop_ctx *c = malloc(sizeof *c);
        if (!c) {
            free(data);
            return MHD_NO;
        }
        c->data = data;
        c->len = len;
        c->send = len / 2;
        resp = MHD_create_response_from_callback(len, 4096, drop_reader, c, drop_free);
    } else {
        if (f == F_TRUNCATE)
            len = len / 2;
        resp = MHD_create_response_from_buffer_with_free_callback(len, data, free);
    }
    if (!resp) {
        free(data);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "OData-Version", "4.0");
    if (r->content_type && r->status != 204 && r->status != 304)
        MHD_add_response_header(resp, "Content-Type", r->content_type);
    char *h = r->headers.data;
    while (h && *h) {
        char *nl = strchr(h, '\n');
        if (!nl)
            break;
        *nl = '\0';
        char *colon = strchr(h, ':');
        if (colon) {
            *colon = '\0';
            MHD_add_response_header(resp, h, colon + 2);
        }
        h = nl + 1;
    }
    char rid[40];
    dvsim_guid((uint64_t)now_ms() * 2654435761u, (uint64_t)(uintptr_t)r ^ (uint64_t)r->start_ms, rid);
    MHD_add_response_header(resp, "REQ_ID", rid);
    if (!r->no_faults || strncmp(url, "/_sim/", 6) != 0)
        log_request(r, url, len); /* the log is for the client's traffic, not the test's */
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    struct dvsim *d = cls;
    struct req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->d = d;
        r->conn = conn;
        r->method = method;
        r->start_ms = now_ms();
        r->env = -1;
        r->status = 500;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_size) {
        if (r->body.len + *upload_size > DVSIM_MAX_BODY)
            r->body_too_big = true;
        else if (buf_add(&r->body, upload_data, *upload_size))
            r->body_too_big = true;
        *upload_size = 0;
        return MHD_YES;
    }
    r->path = strdup(url);
    if (!r->path)
        return MHD_NO;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, r);
    dispatch(r);
    return respond(r, conn, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct req *r = *con_cls;
    if (!r)
        return;
    for (int i = 0; i < r->n_args; i++) {
        free(r->args[i].key);
        free(r->args[i].val);
    }
    free(r->path);
    buf_release(&r->body);
    buf_release(&r->headers);
    buf_release(&r->out);
    free(r);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n'))
        msg[--n] = '\0';
    log_debug("dvsim: microhttpd: %s", msg);
}

int dvsim_server_start(struct dvsim *d, const char *host, int port, struct dverr *err)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return dverr_set(err, -EINVAL, "--listen: %s is not an IPv4 address", host);
    struct MHD_Daemon *mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, (uint16_t)port,
        NULL, NULL, on_request, d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, d, MHD_OPTION_CONNECTION_LIMIT, 2000u, MHD_OPTION_CONNECTION_TIMEOUT, 300u,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_log, d, MHD_OPTION_END);
    if (!mhd)
        return dverr_set(err, -EADDRINUSE, "cannot listen on %s:%d", host, port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_BIND_PORT);
    d->port = info ? info->port : port;
    if (!d->public_url)
        snprintf(d->base_url, sizeof d->base_url, "http://%s:%d", host, d->port);
    d->mhd = mhd;
    return 0;
}

void dvsim_server_stop(struct dvsim *d)
{
    if (d->mhd)
        MHD_stop_daemon(d->mhd);
    d->mhd = NULL;
}
