/* objstore_remote: what the Azure Blob and S3 drivers share (internal to backend/objstore_*.c).
 *
 * - Location parsing ("scheme://A/B/PREFIX"), object-name validation ([A-Za-z0-9._/-], no "..").
 * - One HTTP transport (backend/http.h) with the drivers' retry policy: 3 attempts, waits
 *   between them bounded to 20 s in all, so a dead store turns into -ETIMEDOUT/-ECONNREFUSED/-EIO
 *   quickly enough for a mount read to fail in bounded time. The configuration's ca_file is
 *   trusted; http_retries, when set, replaces the 3 attempts (and lifts the 20 s bound to the
 *   transport's 10 minutes); http_timeout, when set, replaces the per-request time-out that
 *   otherwise grows with the request's size (remote_timeout_s).
 * - Status mapping (404 -> -ENOENT, 409/412 -> -EEXIST, a delete refused with 403 or Azure's
 *   409 BlobImmutableDueToPolicy -> -EACCES (object lock, no delete right), else -EIO with the
 *   server's code and message taken from its XML error body, escaped), and a tiny XML scanner
 *   for the flat list responses both services return.
 * - Percent-encoding, base64 decoding, HMAC-SHA256 (libcrypto), RFC 1123 dates.
 * - The operations whose logic is the same on both services (put / put_file choosing one request
 *   or blocks, ranged get, stat), over three driver callbacks (struct remote_ops).
 * - Request counters (requests, bytes in) for tests and benchmarks.
 * Thread-safe: no shared mutable state besides the atomic counters. */
#ifndef DVSNAP_OBJSTORE_REMOTE_H
#define DVSNAP_OBJSTORE_REMOTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/net/http.h"
#include "backend/objstore/objstore.h"
#include "backend/base/util.h"

/* Objects at or above this size are uploaded in blocks/parts of this size. */
#define REMOTE_BLOCK_SIZE (8u << 20)
/* Default entries per list page (the services' maximum is 5000 / 1000). */
#define REMOTE_LIST_PAGE 1000

/* Bytes [off, off+len) of the object being uploaded, appended to blk. 0 or -errno. */
typedef int (*remote_fill_fn)(void *ctx, uint64_t off, size_t len, struct buf *blk);

/* What a driver supplies to the shared operations below (drv: the driver's struct). */
struct remote_ops {
    /* One request for a whole object below the block size; if_absent: create only when absent
     * (-EEXIST otherwise). 0 or -errno (remote_status). */
    int (*put_object)(void *drv, const char *name, const void *data, size_t len, bool if_absent,
                      struct dverr *err);
    /* Upload total bytes in blocks/parts of block_size taken from fill; the object appears whole
     * at the end. 0 or -errno. */
    int (*put_blocks)(void *drv, const char *name, uint64_t total, remote_fill_fn fill, void *ctx,
                      struct dverr *err);
    /* Send GET or HEAD of name (range: "bytes=A-" or "bytes=A-B", or NULL); resp holds the
     * answer whatever its status. 0 or -errno of the transport. */
    int (*fetch)(void *drv, const char *method, const char *name, const char *range,
                 uint64_t max_response, struct http_response *resp, struct dverr *err);
};

/* The first member of each driver's struct, so that the shared operations below can serve as its
 * objstore_ops entries (impl points at the driver's struct, hence at this). */
struct remote {
    const struct remote_ops *ops;
    void *drv;                   /* the driver's struct (== this struct's address) */
    struct objstore_sizes *sizes; /* the store's size memo (not owned; may be NULL) */
    struct http_transport *http; /* owned */
    struct http_retry retry;
    struct http_counters counters;
    int list_page;               /* entries per list request ($DVSNAP_OBJSTORE_LIST_PAGE for tests) */
    uint64_t block_size;         /* upload block size ($DVSNAP_OBJSTORE_BLOCK_SIZE for tests) */
    const char *what;            /* "azure" or "s3", for messages */
    const char *cred_hint;       /* appended to a 403's message: where the credential is set */
    int timeout_s;               /* http_timeout when set, else 0: remote_timeout_s per request */
};

/* Transport + retry policy from cfg (may be NULL: the defaults); ops and drv as above. 0 or
 * -ENOMEM. */
int remote_init(struct remote *r, const char *what, const struct remote_ops *ops, void *drv,
                const struct config *cfg, struct dverr *err);
/* The whole-request time-out for a request sending `up` bytes and receiving at most `down`:
 * http_timeout when the configuration set it, else remote_timeout_s. */
int remote_request_timeout_s(const struct remote *r, uint64_t up, uint64_t down);

/* The objstore_ops operations both drivers share (impl: the driver's struct, starting with a
 * struct remote). put and put_file choose one request or blocks by size; get with len 0 is a stat
 * plus the end check; put, put_file and stat note the size in r->sizes. */
int remote_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err);
int remote_put_file(void *impl, const char *name, const char *local_path, struct dverr *err);
int remote_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                         struct dverr *err);
int remote_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
               struct dverr *err);
int remote_stat(void *impl, const char *name, uint64_t *size, struct dverr *err);
/* -EINVAL with "<what>: invalid object name" unless name is valid. */
int remote_check_name(struct remote *r, const char *name, struct dverr *err);
/* true when the response body holds the error code (e.g. "ContainerNotFound"). */
bool remote_body_has_code(const struct http_response *resp, const char *code);
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
/* Call fn(ctx, name without prefix, size) for every <entry> of a list answer (its name in
 * <name_tag>, its size in <size_tag>) whose name starts with prefix. fn's non-zero return stops
 * and is returned; an entry without a name is -EIO. */
int remote_list_entries(struct remote *r, const struct http_response *resp, const char *entry,
                        const char *name_tag, const char *size_tag, const char *prefix,
                        int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                        struct dverr *err);
/* First <tag>...</tag> at or after *pos in xml[0..len): the decoded text into out; *pos moves past
 * the closing tag. false when absent. */
bool remote_xml_next(const char *xml, size_t len, size_t *pos, const char *tag, struct buf *out);
/* Like remote_xml_next but returns the raw element span [*start, *end) of the contents. */
bool remote_xml_span(const char *xml, size_t len, size_t *pos, const char *tag, size_t *start,
                     size_t *end);

/* Decode base64 into out (standard alphabet, padded to a multiple of 4 once trailing whitespace
 * is dropped; encoding is util.h's base64_encode). 0 or -EINVAL. */
int remote_base64_decode(const char *s, size_t len, struct buf *out);
void remote_hmac_sha256(const void *key, size_t key_len, const void *msg, size_t msg_len,
                        unsigned char out[32]);
/* "Sun, 22 Nov 2026 01:02:03 GMT" */
void remote_http_date(time_t t, char out[40]);

/* Read a whole local file in [off, off+len) into out (pread). 0 or -errno. */
int remote_read_range(int fd, uint64_t off, size_t len, struct buf *out);

#endif
