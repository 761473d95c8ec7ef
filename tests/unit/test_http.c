/* test_http: the retry policy against a scripted fake transport (Retry-After in seconds and as an
 * HTTP date, jittered backoff, attempt and time budgets, idempotency, the shared hold gate,
 * cancel), URL policy helpers, and the curl transport against two local libmicrohttpd servers
 * (redirect policy, bearer only to its origin, body caps, time-outs, keep-alive reuse, streaming
 * and uploads). Every wait in here is bounded by the policy under test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/net/http.h"

/* ---- scripted fake transport ---- */

struct step {
    int rc;              /* transport result; 0: a response */
    long status;
    const char *headers; /* raw header block */
    const char *body;
};

struct fake {
    const struct step *steps;
    int n_steps, next;
    int64_t at[32];      /* now_ms() of each attempt */
    char methods[32][8];
};

static int fake_perform(void *impl, const struct http_request *req, struct http_response *resp,
                        struct dverr *err)
{
    struct fake *f = impl;
    assert_true(f->next < f->n_steps);
    const struct step *s = &f->steps[f->next];
    f->at[f->next] = now_ms();
    snprintf(f->methods[f->next], sizeof(f->methods[0]), "%s", req->method ? req->method : "GET");
    f->next++;
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    resp->status = 0;
    if (s->rc)
        return dverr_set(err, s->rc, "scripted failure %d", s->rc);
    resp->status = s->status;
    if (s->headers)
        buf_addstr(&resp->headers, s->headers);
    if (s->body)
        buf_addstr(&resp->body, s->body);
    return 0;
}

static void fake_free(void *impl) { (void)impl; }
static const struct http_transport_ops fake_ops = {fake_perform, fake_free};

static int run(struct fake *f, const struct step *steps, int n, const char *method, bool unsafe,
               const struct http_retry *retry, struct http_counters *ctr,
               struct http_response *resp, struct dverr *err)
{
    memset(f, 0, sizeof(*f));
    f->steps = steps;
    f->n_steps = n;
    struct http_transport t = {&fake_ops, f};
    struct http_request req = {.method = method, .url = "https://example.test/x",
                               .retry_unsafe = unsafe};
    return http_perform_retry(&t, &req, retry, ctr, resp, err);
}

static void test_retry_after_parse(void **state)
{
    time_t now = 784111777; /* Sun, 06 Nov 1994 08:49:37 GMT */
    assert_int_equal(http_retry_after_seconds("120", now), 120);
    assert_int_equal(http_retry_after_seconds(" 0", now), 0);
    assert_int_equal(http_retry_after_seconds("Sun, 06 Nov 1994 08:49:40 GMT", now), 3);
    assert_int_equal(http_retry_after_seconds("Sunday, 06-Nov-94 08:50:37 GMT", now), 60);
    assert_int_equal(http_retry_after_seconds("Sun Nov  6 08:49:47 1994", now), 10);
    assert_int_equal(http_retry_after_seconds("Sun, 06 Nov 1994 08:00:00 GMT", now), 0); /* past */
    assert_int_equal(http_retry_after_seconds("soon", now), -1);
    assert_int_equal(http_retry_after_seconds("12abc", now), -1);
    assert_int_equal(http_retry_after_seconds("-5", now), -1);
    assert_int_equal(http_retry_after_seconds("Sun, 06 Foo 1994 08:49:40 GMT", now), -1);
    assert_int_equal(http_retry_after_seconds("99999999999999999999", now), -1);
}

static void test_url_helpers(void **state)
{
    assert_true(http_same_origin("https://a.example/x", "https://A.example:443/y"));
    assert_false(http_same_origin("https://a.example/x", "http://a.example/x"));
    assert_false(http_same_origin("https://a.example/x", "https://a.example:8443/x"));
    assert_false(http_same_origin("https://a.example/x", "https://b.example/x"));
    assert_false(http_same_origin("https://a.example.evil/x", "https://a.example/x"));

    const char *org = "http://127.0.0.1:9/org/contoso-prod";
    assert_true(http_url_within("http://127.0.0.1:9/org/contoso-prod/api/data/v9.2/accounts", org));
    assert_true(http_url_within("http://127.0.0.1:9/org/contoso-prod", org));
    assert_false(http_url_within("http://127.0.0.1:9/org/contoso-prodx/api", org));
    assert_false(http_url_within("http://127.0.0.1:9/org/contoso-dev/api/data/v9.2/x", org));
    assert_false(http_url_within("http://127.0.0.1:9/org/contoso-prod/../contoso-dev/api", org));
    assert_false(http_url_within("http://127.0.0.1:9/org/contoso-prod/%2e%2e/contoso-dev", org));
    assert_false(http_url_within("http://127.0.0.1:9/org/contoso-prod/a%2Fb", org));
    assert_false(http_url_within("http://127.0.0.1:10/org/contoso-prod/api", org));
    assert_false(http_url_within("https://127.0.0.1:9/org/contoso-prod/api", org));
    assert_false(http_url_within("file:///org/contoso-prod/api", org));
    assert_false(http_url_within("/org/contoso-prod/api", org));
    assert_true(http_url_within("https://api.example/anything?x=1", "https://api.example"));
    assert_true(http_url_within("https://api.example/anything", "https://api.example/"));

    assert_int_equal(http_status_to_errno(200), 0);
    assert_int_equal(http_status_to_errno(404), -ENOENT);
    assert_int_equal(http_status_to_errno(401), -EACCES);
    assert_int_equal(http_status_to_errno(429), -EBUSY);
}

static void test_retry_after_honoured(void **state)
{
    static const struct step steps[] = {
        {0, 429, "HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\n\r\n", "{}"},
        {0, 200, "HTTP/1.1 200 OK\r\n\r\n", "done"},
    };
    struct fake f;
    struct http_counters ctr = {0};
    struct http_response resp;
    http_response_init(&resp);
    struct dverr err = {0};
    struct http_retry pol = {.max_attempts = 5, .base_delay_ms = 10};
    assert_int_equal(run(&f, steps, 2, "GET", false, &pol, &ctr, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "done");
    assert_int_equal(f.next, 2);
    assert_true(f.at[1] - f.at[0] >= 1000); /* never before Retry-After */
    assert_true(f.at[1] - f.at[0] < 1500);
    assert_int_equal(atomic_load(&ctr.requests), 2);
    assert_int_equal(atomic_load(&ctr.retries), 1);
    assert_int_equal(atomic_load(&ctr.throttled), 1);
    assert_int_equal(atomic_load(&ctr.bytes_in), 6);
    http_response_release(&resp);
}

static void test_retry_after_http_date(void **state)
{
    char hdr[128], date[64];
    time_t t = time(NULL) + 2;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    snprintf(hdr, sizeof(hdr), "HTTP/1.1 503 Busy\r\nRetry-After: %s\r\n\r\n", date);
    const struct step steps[] = {{0, 503, hdr, NULL}, {0, 204, "", NULL}};
    struct fake f;
    struct http_response resp;
    http_response_init(&resp);
    struct http_retry pol = {.max_attempts = 3, .base_delay_ms = 10};
    assert_int_equal(run(&f, steps, 2, "GET", false, &pol, NULL, &resp, NULL), 0);
    assert_int_equal(resp.status, 204);
    /* The date has one-second resolution: at least 1 s, and not before the date itself. */
    assert_true(f.at[1] - f.at[0] >= 1000);
    assert_true(time(NULL) >= t);
    http_response_release(&resp);
}

static void test_backoff_bounded_and_jittered(void **state)
{
    static const struct step steps[] = {
        {0, 503, "", NULL}, {0, 502, "", NULL}, {0, 500, "", NULL}, {0, 200, "", NULL}};
    struct fake f;
    struct http_response resp;
    http_response_init(&resp);
    struct http_counters ctr = {0};
    /* max 3 attempts: the third 500 is returned as is */
    struct http_retry pol = {.max_attempts = 3, .base_delay_ms = 20, .max_delay_ms = 40};
    int64_t t0 = now_ms();
    assert_int_equal(run(&f, steps, 4, "GET", false, &pol, &ctr, &resp, NULL), 0);
    assert_int_equal(resp.status, 500);
    assert_int_equal(f.next, 3);
    assert_int_equal(atomic_load(&ctr.retries), 2);
    assert_true(now_ms() - t0 < 200); /* waits capped: 20 + 40 ms at most, plus scheduling */

    /* Full jitter: first-retry delays over several runs are not all alike. */
    static const struct step two[] = {{0, 503, "", NULL}, {0, 200, "", NULL}};
    int64_t lo = INT64_MAX, hi = 0;
    struct http_retry pj = {.max_attempts = 2, .base_delay_ms = 60};
    for (int i = 0; i < 12; i++) {
        assert_int_equal(run(&f, two, 2, "GET", false, &pj, NULL, &resp, NULL), 0);
        int64_t d = f.at[1] - f.at[0];
        assert_true(d <= 60 + 40);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(hi - lo >= 10);
    http_response_release(&resp);
}

static void test_idempotency(void **state)
{
    struct fake f;
    struct http_response resp;
    http_response_init(&resp);
    struct dverr err = {0};
    struct http_retry pol = {.max_attempts = 4, .base_delay_ms = 1};
    /* A POST that got a 500 may have been applied: returned, not repeated. */
    static const struct step s500[] = {{0, 500, "", NULL}, {0, 200, "", NULL}};
    assert_int_equal(run(&f, s500, 2, "POST", false, &pol, NULL, &resp, &err), 0);
    assert_int_equal(resp.status, 500);
    assert_int_equal(f.next, 1);
    /* ... unless the caller says it is safe (upserts). */
    assert_int_equal(run(&f, s500, 2, "PATCH", true, &pol, NULL, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(f.next, 2);
    /* A 429 was not processed: even a POST is repeated. */
    static const struct step s429[] = {{0, 429, "Retry-After: 0\r\n", NULL}, {0, 201, "", NULL}};
    assert_int_equal(run(&f, s429, 2, "POST", false, &pol, NULL, &resp, &err), 0);
    assert_int_equal(resp.status, 201);
    /* A reset connection: GET repeated, POST not. */
    static const struct step reset[] = {{-ECONNRESET, 0, NULL, NULL}, {0, 200, "", NULL}};
    assert_int_equal(run(&f, reset, 2, "GET", false, &pol, NULL, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_int_equal(run(&f, reset, 2, "POST", false, &pol, NULL, &resp, &err), -ECONNRESET);
    assert_int_equal(f.next, 1);
    assert_non_null(strstr(dverr_msg(&err), "scripted failure"));
    /* Not transient: no retry. */
    static const struct step perm[] = {{-EPERM, 0, NULL, NULL}, {0, 200, "", NULL}};
    dverr_clear(&err);
    assert_int_equal(run(&f, perm, 2, "GET", false, &pol, NULL, &resp, &err), -EPERM);
    assert_int_equal(f.next, 1);
    /* 4xx other than 408/429 are answers, not failures. */
    static const struct step s404[] = {{0, 404, "", NULL}, {0, 200, "", NULL}};
    assert_int_equal(run(&f, s404, 2, "GET", false, &pol, NULL, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    assert_int_equal(f.next, 1);
    /* Every attempt failing: the last error comes back after max_attempts. */
    static const struct step down[] = {{-ECONNREFUSED, 0, NULL, NULL},
                                       {-ECONNREFUSED, 0, NULL, NULL},
                                       {-ECONNREFUSED, 0, NULL, NULL},
                                       {-ECONNREFUSED, 0, NULL, NULL}};
    assert_int_equal(run(&f, down, 4, "GET", false, &pol, NULL, &resp, &err), -ECONNREFUSED);
    assert_int_equal(f.next, 4);
    http_response_release(&resp);
}

static void test_total_budget_and_gate(void **state)
{
    struct fake f;
    struct http_response resp;
    http_response_init(&resp);
    /* Retry-After beyond the time budget: give up at once and return the 429. */
    static const struct step far[] = {{0, 429, "Retry-After: 30\r\n", NULL}, {0, 200, "", NULL}};
    struct http_retry pol = {.max_attempts = 5, .base_delay_ms = 1, .max_total_ms = 1000};
    int64_t t0 = now_ms();
    assert_int_equal(run(&f, far, 2, "GET", false, &pol, NULL, &resp, NULL), 0);
    assert_int_equal(resp.status, 429);
    assert_true(now_ms() - t0 < 300);

    /* The shared gate: a Retry-After seen by one request holds the next one. */
    atomic_int_fast64_t hold;
    atomic_init(&hold, 0);
    static const struct step once[] = {{0, 429, "Retry-After: 1\r\n", NULL}};
    static const struct step ok[] = {{0, 200, "", NULL}};
    /* (a budget below the Retry-After: the 429 comes back at once, the gate stays set) */
    struct http_retry gate = {.max_attempts = 1, .base_delay_ms = 1, .max_total_ms = 500,
                              .hold_until_ms = &hold};
    assert_int_equal(run(&f, once, 1, "GET", false, &gate, NULL, &resp, NULL), 0);
    int64_t first = f.at[0];
    assert_int_equal(resp.status, 429);
    struct http_retry gate2 = {.max_attempts = 1, .base_delay_ms = 1, .hold_until_ms = &hold};
    assert_int_equal(run(&f, ok, 1, "GET", false, &gate2, NULL, &resp, NULL), 0);
    assert_true(f.at[0] - first >= 1000);

    /* Server-named waits are bounded by time, not by max_attempts. */
    static const struct step storm[] = {{0, 429, "Retry-After: 0\r\n", NULL},
                                        {0, 429, "Retry-After: 0\r\n", NULL},
                                        {0, 503, "Retry-After: 0\r\n", NULL},
                                        {0, 200, "", NULL}};
    struct http_retry two = {.max_attempts = 2, .base_delay_ms = 1};
    assert_int_equal(run(&f, storm, 4, "GET", false, &two, NULL, &resp, NULL), 0);
    assert_int_equal(resp.status, 200);
    static const struct step errs[] = {{0, 503, "", NULL}, {0, 503, "", NULL}, {0, 200, "", NULL}};
    assert_int_equal(run(&f, errs, 3, "GET", false, &two, NULL, &resp, NULL), 0);
    assert_int_equal(resp.status, 503); /* without Retry-After they count */

    /* Cancel stops a wait. */
    atomic_int cancel;
    atomic_init(&cancel, 1);
    static const struct step slow[] = {{0, 503, "", NULL}, {0, 200, "", NULL}};
    struct http_retry pc = {.max_attempts = 3, .base_delay_ms = 5000, .cancel = &cancel};
    struct dverr err = {0};
    t0 = now_ms();
    int rc = run(&f, slow, 2, "GET", false, &pc, NULL, &resp, &err);
    /* Either the jitter picked 0 ms (then the retry ran) or the wait was cancelled. */
    assert_true(rc == -ECANCELED || (rc == 0 && resp.status == 200));
    assert_true(now_ms() - t0 < 500);
    http_response_release(&resp);
}

/* ---- curl transport against local servers ---- */

static struct MHD_Daemon *srv, *other;
static int srv_port, other_port;
static atomic_int connections, other_requests;
static char last_auth[256];
static pthread_mutex_t auth_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_conn(void *cls, struct MHD_Connection *c, void **socket_context,
                    enum MHD_ConnectionNotificationCode code)
{
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&connections, 1);
}

static ssize_t big_chunks(void *cls, uint64_t pos, char *buf, size_t max)
{
    if (pos >= 100000)
        return MHD_CONTENT_READER_END_OF_STREAM;
    size_t n = max < 1000 ? max : 1000;
    memset(buf, 'x', n);
    return (ssize_t)n;
}

static ssize_t stall(void *cls, uint64_t pos, char *buf, size_t max)
{
    usleep(100000);
    if (pos > 0 && ++*(int *)cls > 40)
        return MHD_CONTENT_READER_END_OF_STREAM;
    buf[0] = 'y';
    return pos == 0 ? 1 : 0;
}

static int stall_state;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
                             const char *location)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), (void *)body,
                                                             MHD_RESPMEM_MUST_COPY);
    if (location)
        MHD_add_response_header(r, "Location", location);
    MHD_add_response_header(r, "X-Test", "yes");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    bool is_other = cls != NULL;
    if (!*con_cls) {
        static int marker;
        size_t *n = calloc(1, sizeof(size_t));
        *con_cls = n ? (void *)n : (void *)&marker;
        return MHD_YES;
    }
    if (*upload_size) {
        *(size_t *)*con_cls += *upload_size;
        *upload_size = 0;
        return MHD_YES;
    }
    const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (is_other) {
        atomic_fetch_add(&other_requests, 1);
        pthread_mutex_lock(&auth_lock);
        snprintf(last_auth, sizeof(last_auth), "other:%s", a ? a : "(none)");
        pthread_mutex_unlock(&auth_lock);
        return reply(c, 200, "other", NULL);
    }
    pthread_mutex_lock(&auth_lock);
    snprintf(last_auth, sizeof(last_auth), "%s", a ? a : "(none)");
    pthread_mutex_unlock(&auth_lock);
    char loc[128];
    if (strcmp(url, "/ok") == 0)
        return reply(c, 200, "hello", NULL);
    if (strcmp(url, "/redir-same") == 0)
        return reply(c, 302, "", "/ok");
    if (strcmp(url, "/redir-other") == 0) {
        snprintf(loc, sizeof(loc), "http://127.0.0.1:%d/ok", other_port);
        return reply(c, 302, "", loc);
    }
    if (strcmp(url, "/redir-file") == 0)
        return reply(c, 302, "", "file:///etc/passwd");
    if (strcmp(url, "/redir-https") == 0) {
        snprintf(loc, sizeof(loc), "https://127.0.0.1:%d/ok", srv_port);
        return reply(c, 307, "", loc);
    }
    if (strcmp(url, "/loop") == 0)
        return reply(c, 302, "", "/loop");
    if (strcmp(url, "/big") == 0) {
        static char big[5000];
        memset(big, 'b', sizeof(big) - 1);
        return reply(c, 200, big, NULL);
    }
    if (strcmp(url, "/chunked") == 0) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
                                                                   big_chunks, NULL, NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/stall") == 0) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16, stall,
                                                                   &stall_state, NULL);
        enum MHD_Result ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/upload") == 0) {
        char n[64];
        snprintf(n, sizeof(n), "%s %zu", method, *(size_t *)*con_cls);
        return reply(c, 200, n, NULL);
    }
    return reply(c, 404, "no", NULL);
}

static void free_con(void *cls, struct MHD_Connection *c, void **con_cls,
                     enum MHD_RequestTerminationCode toe)
{
    static int marker;
    if (*con_cls && *con_cls != &marker)
        free(*con_cls);
    *con_cls = NULL;
}

static struct MHD_Daemon *start_server(void *cls, int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0, NULL, NULL, handler,
        cls, MHD_OPTION_NOTIFY_CONNECTION, on_conn, NULL, MHD_OPTION_NOTIFY_COMPLETED, free_con,
        NULL, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
    assert_non_null(d);
    const union MHD_DaemonInfo *i = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    *port = i->port;
    return d;
}

static int servers_up(void **state)
{
    srv = start_server(NULL, &srv_port);
    other = start_server((void *)1, &other_port);
    return 0;
}

static int servers_down(void **state)
{
    MHD_stop_daemon(srv);
    MHD_stop_daemon(other);
    return 0;
}

static int get(struct http_transport *t, const char *path, const char *bearer, uint64_t cap,
               struct http_response *resp, struct dverr *err)
{
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv_port, path);
    struct http_request req = {.method = "GET", .url = url, .bearer = bearer, .max_response = cap};
    return t->ops->perform(t->impl, &req, resp, err);
}

static void test_curl_basics_and_reuse(void **state)
{
    struct http_transport *t = http_transport_curl_new(NULL);
    struct http_response resp;
    http_response_init(&resp);
    struct dverr err = {0};
    int before = atomic_load(&connections);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(get(t, "/ok", "tok-123", 0, &resp, &err), 0);
        assert_int_equal(resp.status, 200);
        assert_string_equal(resp.body.data, "hello");
    }
    /* keep-alive: ten requests over one connection */
    assert_int_equal(atomic_load(&connections) - before, 1);
    struct buf v = BUF_INIT;
    assert_true(http_response_header(&resp, "x-test", &v));
    assert_string_equal(v.data, "yes");
    assert_false(http_response_header(&resp, "X-Nope", &v));
    buf_release(&v);
    pthread_mutex_lock(&auth_lock);
    assert_string_equal(last_auth, "Bearer tok-123");
    pthread_mutex_unlock(&auth_lock);
    assert_int_equal(get(t, "/missing", NULL, 0, &resp, &err), 0);
    assert_int_equal(resp.status, 404);
    http_response_release(&resp);
    http_transport_free(t);
}

static void test_curl_redirects(void **state)
{
    struct http_transport *t = http_transport_curl_new(NULL);
    struct http_response resp;
    http_response_init(&resp);
    struct dverr err = {0};
    assert_int_equal(get(t, "/redir-same", "tok", 0, &resp, &err), 0);
    assert_int_equal(resp.status, 200);
    assert_string_equal(resp.body.data, "hello");
    pthread_mutex_lock(&auth_lock);
    assert_string_equal(last_auth, "Bearer tok");
    pthread_mutex_unlock(&auth_lock);

    int seen = atomic_load(&other_requests);
    assert_int_equal(get(t, "/redir-other", "tok", 0, &resp, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "another origin"));
    assert_int_equal(atomic_load(&other_requests), seen); /* never contacted, bearer never sent */
    dverr_clear(&err);
    assert_int_equal(get(t, "/redir-file", "tok", 0, &resp, &err), -EPERM);
    dverr_clear(&err);
    assert_int_equal(get(t, "/redir-https", "tok", 0, &resp, &err), -EPERM); /* scheme change */
    dverr_clear(&err);
    assert_int_equal(get(t, "/loop", "tok", 0, &resp, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "redirects"));
    assert_int_equal(resp.status, 0);

    /* Cleartext to a non-loopback host is refused before any connection. */
    struct http_request req = {.method = "GET", .url = "http://192.0.2.1/x", .bearer = "tok"};
    dverr_clear(&err);
    int64_t t0 = now_ms();
    assert_int_equal(t->ops->perform(t->impl, &req, &resp, &err), -EPERM);
    assert_true(now_ms() - t0 < 100);
    struct http_request ftp = {.method = "GET", .url = "ftp://127.0.0.1/x"};
    assert_int_equal(t->ops->perform(t->impl, &ftp, &resp, &err), -EPERM);
    http_response_release(&resp);
    http_transport_free(t);
}

static int count_body(void *ctx, const void *data, size_t len)
{
    *(size_t *)ctx += len;
    return 0;
}

static void test_curl_caps_timeouts_streaming(void **state)
{
    struct http_options o = {.timeout_s = 1, .low_speed_time_s = 1};
    struct http_transport *t = http_transport_curl_new(&o);
    struct http_response resp;
    http_response_init(&resp);
    struct dverr err = {0};
    assert_int_equal(get(t, "/big", NULL, 1000, &resp, &err), -EFBIG);
    dverr_clear(&err);
    assert_int_equal(get(t, "/chunked", NULL, 50000, &resp, &err), -EFBIG); /* no length */
    assert_int_equal(get(t, "/chunked", NULL, 0, &resp, &err), 0);
    assert_int_equal(resp.body.len, 100000);
    dverr_clear(&err);
    int64_t t0 = now_ms();
    assert_int_equal(get(t, "/stall", NULL, 0, &resp, &err), -ETIMEDOUT);
    int64_t took = now_ms() - t0;
    assert_true(took >= 900 && took < 3000);

    /* Streaming: the body goes to on_body, not the buffer. */
    size_t got = 0;
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/chunked", srv_port);
    struct http_request req = {.method = "GET", .url = url, .on_body = count_body,
                               .on_body_ctx = &got};
    assert_int_equal(t->ops->perform(t->impl, &req, &resp, &err), 0);
    assert_int_equal(got, 100000);
    assert_int_equal(resp.streamed, 100000);
    assert_int_equal(resp.body.len, 0);

    /* Upload from memory and from a file, with a custom method. */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/upload", srv_port);
    struct http_request put = {.method = "PATCH", .url = url, .body = "abcdef", .body_len = 6};
    assert_int_equal(t->ops->perform(t->impl, &put, &resp, &err), 0);
    assert_string_equal(resp.body.data, "PATCH 6");
    char tmp[] = "/tmp/dvsnap-up.XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    char block[3000];
    memset(block, 'u', sizeof(block));
    assert_int_equal(write(fd, block, sizeof(block)), (ssize_t)sizeof(block));
    close(fd);
    struct http_request upf = {.method = "PUT", .url = url, .upload_file = tmp};
    assert_int_equal(t->ops->perform(t->impl, &upf, &resp, &err), 0);
    assert_string_equal(resp.body.data, "PUT 3000");
    unlink(tmp);

    /* Nothing listening: connection refused, mapped. */
    struct http_request dead = {.method = "GET", .url = "http://127.0.0.1:1/x"};
    assert_int_equal(t->ops->perform(t->impl, &dead, &resp, &err), -ECONNREFUSED);
    http_response_release(&resp);
    http_transport_free(t);
}

struct par {
    struct http_transport *t;
    int ok;
};

static void *par_worker(void *arg)
{
    struct par *p = arg;
    struct http_response resp;
    http_response_init(&resp);
    for (int i = 0; i < 50; i++) {
        if (get(p->t, "/ok", "tok", 0, &resp, NULL) == 0 && resp.status == 200 &&
            strcmp(resp.body.data, "hello") == 0)
            p->ok++;
    }
    http_response_release(&resp);
    return NULL;
}

static void test_curl_threads(void **state)
{
    struct http_transport *t = http_transport_curl_new(NULL);
    pthread_t th[8];
    struct par p[8];
    for (int i = 0; i < 8; i++) {
        p[i] = (struct par){t, 0};
        pthread_create(&th[i], NULL, par_worker, &p[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(p[i].ok, 50);
    }
    http_transport_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_after_parse),
        cmocka_unit_test(test_url_helpers),
        cmocka_unit_test(test_retry_after_honoured),
        cmocka_unit_test(test_retry_after_http_date),
        cmocka_unit_test(test_backoff_bounded_and_jittered),
        cmocka_unit_test(test_idempotency),
        cmocka_unit_test(test_total_budget_and_gate),
        cmocka_unit_test(test_curl_basics_and_reuse),
        cmocka_unit_test(test_curl_redirects),
        cmocka_unit_test(test_curl_caps_timeouts_streaming),
        cmocka_unit_test(test_curl_threads),
    };
    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
