/* http: the one HTTP transport (libcurl) and the retry policy every caller shares.
 *
 * The transport is a function-pointer table so unit tests can script a fake. The curl transport:
 * one easy handle per request slot, reused for keep-alive (never two threads on one handle),
 * CURLOPT_NOSIGNAL, connect/low-speed/total timeouts, TLS verified (peer and host), https only
 * except loopback hosts (127.0.0.0/8, ::1, localhost) and the instance-metadata address
 * (util.h), at most 5 redirects and never to another origin or scheme, response bodies capped.
 * The bearer token is attached by the caller per request and is never logged.
 *
 * Retry policy (http_perform_retry): 429 and 503 wait Retry-After (integer seconds or HTTP date)
 * when given, never less, plus a small random stagger (so threads released together do not
 * stampede); such server-named waits are bounded by the total time and by ten times
 * max_attempts. Other transient failures (connection errors, time-outs, 408/500/502/503/504) back
 * off exponentially with full jitter and count against max_attempts. Only idempotent requests
 * are retried unless req->retry_unsafe is set (PATCH upserts by key and $batch of upserts are
 * idempotent by design and set it). Thread-safe. */
#ifndef DVSNAP_HTTP_H
#define DVSNAP_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

struct http_request {
    const char *method;            /* GET HEAD POST PUT PATCH DELETE */
    const char *url;
    const char *const *headers;    /* NULL-terminated "Name: value" lines, or NULL */
    const void *body;              /* may be NULL */
    size_t body_len;
    const char *upload_file;       /* stream the body from this file instead of body */
    const char *bearer;            /* sent as Authorization: Bearer; never logged */
    const char *aws_sigv4;         /* CURLOPT_AWS_SIGV4 provider, e.g. "aws:amz:us-east-1:s3" */
    const char *userpwd;           /* with aws_sigv4: "ACCESS_KEY:SECRET_KEY"; never logged */
    uint64_t max_response;         /* body cap in bytes (-EFBIG beyond); 0: 256 MiB */
    int timeout_s;                 /* whole request; 0: the transport's default */
    /* Stream the response body here instead of buffering it (non-zero return aborts). */
    int (*on_body)(void *ctx, const void *data, size_t len);
    void *on_body_ctx;
    bool retry_unsafe;             /* retry even though the method is not idempotent */
    /* Optional: called by http_perform_retry before every attempt for the bearer to send (a
     * token cache refreshes it, so a retry after a long Retry-After wait never goes out with an
     * expired token). Overrides bearer. 0 or -errno (then no attempt is made). */
    int (*bearer_cb)(void *ctx, struct buf *out, struct dverr *err);
    void *bearer_ctx;
};

struct http_response {
    long status;                   /* 0 when no response arrived */
    struct buf body;               /* buffered body (unless on_body) */
    struct buf headers;            /* raw response header block of the final response */
    uint64_t streamed;             /* body bytes handed to req->on_body (a failed streamed
                                      request is retried only while this is 0) */
};
void http_response_init(struct http_response *r);
void http_response_release(struct http_response *r);
/* Value of a response header (case-insensitive name), copied into out; false when absent. */
bool http_response_header(const struct http_response *r, const char *name, struct buf *out);

struct http_transport_ops {
    /* One attempt. 0 when a response arrived (any status), else -errno (-ETIMEDOUT,
     * -ECONNRESET, -ECONNREFUSED, -EFBIG, -EPROTO, -EPERM for URL policy, -EIO). */
    int (*perform)(void *impl, const struct http_request *req, struct http_response *resp,
                   struct dverr *err);
    void (*free)(void *impl);
};
struct http_transport {
    const struct http_transport_ops *ops;
    void *impl;
};

struct http_options {
    int connect_timeout_s;         /* default 10 */
    int timeout_s;                 /* default 300 */
    int low_speed_time_s;          /* abort below 1 KiB/s for this long; default 30 */
    const char *ca_file;           /* extra CA bundle (tests with a local CA), or NULL */
};
/* The libcurl transport. opts may be NULL for the defaults. */
struct http_transport *http_transport_curl_new(const struct http_options *opts);
void http_transport_free(struct http_transport *t); /* accepts NULL */

struct http_retry {
    int max_attempts;              /* default 8 */
    int base_delay_ms;             /* default 500 */
    int max_delay_ms;              /* cap on one wait; default 60000 */
    int64_t max_total_ms;          /* cap on all waits; default 600000 */
    atomic_int *cancel;            /* stop waiting when set */
    /* Optional, shared by every thread of one client: no attempt starts before this monotonic
     * time in ms (now_ms()); a 429/503 Retry-After moves it forward, so one throttled thread
     * holds them all. NULL: per-request waits only. */
    atomic_int_fast64_t *hold_until_ms;
};
struct http_counters {             /* updated atomically */
    atomic_uint_fast64_t requests, retries, throttled, bytes_in;
};
/* Perform with the retry policy. The final response is returned as is (a 4xx is not an error
 * here); -errno only when no usable response came back within the policy. retry may be NULL for
 * the defaults; counters may be NULL. */
int http_perform_retry(struct http_transport *t, const struct http_request *req,
                       const struct http_retry *retry, struct http_counters *counters,
                       struct http_response *resp, struct dverr *err);
/* An HTTP date: IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94
 * 08:49:37 GMT" or asctime "Sun Nov  6 08:49:37 1994". Locale-independent. -1 when unparsable. */
time_t http_date_parse(const char *v);
/* Seconds to wait from a Retry-After value (integer or HTTP date), -1 when unparsable. */
int64_t http_retry_after_seconds(const char *value, time_t now);
int http_status_to_errno(long status);
/* true when a and b have the same scheme, host and port. */
bool http_same_origin(const char *a, const char *b);
/* true when url has base's origin and its path lies under base's path (segment boundary; dot
 * segments resolved; percent-encoded dots, slashes and backslashes refused). The rule for
 * attaching a bearer token and for following nextLink/deltaLink. */
bool http_url_within(const char *url, const char *base);

#endif
