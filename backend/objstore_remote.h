/* objstore_remote: what the Azure Blob and S3 drivers share (internal to backend/objstore_*.c).
 *
 * - Location parsing ("scheme://A/B/PREFIX"), object-name validation ([A-Za-z0-9._/-], no "..").
 * - One HTTP transport (backend/http.h) with the drivers' retry policy: 3 attempts, waits
 *   between them bounded to 20 s in all, so a dead store turns into -ETIMEDOUT/-ECONNREFUSED/-EIO
 *   quickly enough for a mount read to fail in bounded time.
 * - Status mapping (404 -> -ENOENT, 409/412 -> -EEXIST, else -EIO with the server's code and
 *   message taken from its XML error body, escaped), and a tiny XML scanner for the flat list
 *   responses both services return.
 * - Percent-encoding, base64, HMAC-SHA256 (libcrypto), RFC 1123 dates.
 * - Request counters (requests, bytes in) for tests and benchmarks.
 * Thread-safe: no shared mutable state besides the atomic counters. */
#ifndef DVSNAP_OBJSTORE_REMOTE_H
#define DVSNAP_OBJSTORE_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/http.h"
#include "backend/objstore.h"
#include "backend/util.h"

/* Objects at or above this size are uploaded in blocks/parts of this size. */
#define REMOTE_BLOCK_SIZE (8u << 20)
/* Default entries per list page (the services' maximum is 5000 / 1000). */
#define REMOTE_LIST_PAGE 1000

struct remote {
    struct http_transport *http; /* owned */
    struct http_retry retry;
    struct http_counters counters;
    int list_page;               /* entries per list request ($DVSNAP_OBJSTORE_LIST_PAGE for tests) */
    uint64_t block_size;         /* upload block size ($DVSNAP_OBJSTORE_BLOCK_SIZE for tests) */
    const char *what;            /* "azure" or "s3", for messages */
};

/* Transport + retry defaults. 0 or -ENOMEM. */
int remote_init(struct remote *r, const char *what, struct dverr *err);
void remote_release(struct remote *r);

/* Split "scheme://FIRST/SECOND..." after the scheme into its first path component and the rest
 * (no leading or trailing '/'). *first and *rest are malloc'd. 0 or -EINVAL. */
int remote_split_location(const char *location, const char *scheme, char **first, char **rest,
                          struct dverr *err);
/* true for a valid object name or prefix ([A-Za-z0-9._/-], no "..", no leading '/'); an empty
 * string is valid only when allow_empty. */
bool remote_name_ok(const char *name, bool allow_empty);

/* Whole-request time-out in seconds for a request sending `up` bytes and receiving at most `down`
 * (0: a small answer): 10 s plus 1 s per MiB, at most 600 s, so a stalled store turns into
 * -ETIMEDOUT in bounded time. */
int remote_timeout_s(uint64_t up, uint64_t down);
/* Perform req with the driver retry policy. On 0 the response holds the final status. */
int remote_perform(struct remote *r, const struct http_request *req, struct http_response *resp,
                   struct dverr *err);
/* Map a final HTTP status to 0 (2xx) or -errno, with "<op> <name>: HTTP n Code: Message" in err. */
int remote_status(struct remote *r, const struct http_response *resp, const char *op,
                  const char *name, struct dverr *err);

/* Finish a GET of [off, off+len) (len OBJSTORE_TO_END: to the end; ranged: a Range header was
 * sent): append the bytes to out with the directory driver's semantics: a read starting past the
 * end, or a bounded read that comes back short, is -EIO; reading to the end from exactly the end
 * gives nothing. A server that ignored the Range header is handled by cutting here. */
int remote_get_finish(struct remote *r, const struct http_response *resp, const char *name,
                      uint64_t off, uint64_t len, bool ranged, struct buf *out, struct dverr *err);
/* Append s percent-encoded (RFC 3986 unreserved kept; '/' kept when keep_slash). */
int remote_urlencode(struct buf *out, const char *s, bool keep_slash);
/* First <tag>...</tag> at or after *pos in xml[0..len): the decoded text into out; *pos moves past
 * the closing tag. false when absent. */
bool remote_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, struct buf *out);
/* Like remote_xml_next but returns the raw element span [*start, *end) of the contents. */
bool remote_xml_span(const char *xml, size_t len, size_t *pos, const char *tag, size_t *start,
                     size_t *end);

int remote_base64(const void *data, size_t len, struct buf *out);
/* Decode base64 into out. 0 or -EINVAL. */
int remote_base64_decode(const char *s, size_t len, struct buf *out);
void remote_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                        unsigned char out[32]);
/* "Sun, 22 Nov 2026 01:02:03 GMT" */
void remote_http_date(time_t t, char out[40]);

/* Read a whole local file in [off, off+len) into out (pread). 0 or -errno. */
int remote_read_range(int fd, uint64_t off, size_t len, struct buf *out);

#endif
