/* util: small shared pieces every module uses.
 *
 * - struct buf: a growable byte buffer (always NUL-terminated after its data).
 * - struct dverr: the caller-owned error buffer; the first error written wins (git's strbuf err).
 * - SHA-256 in hex (libcrypto), atomic file writes (write, fsync, rename, fsync dir),
 *   UTC time <-> restore point names, and the one name sanitiser for remote names.
 * Thread-safe: no shared state. */
#ifndef DVSNAP_UTIL_H
#define DVSNAP_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct buf {
    char *data; /* owned; NUL-terminated after len bytes; NULL while empty and never grown */
    size_t len;
    size_t cap;
};
#define BUF_INIT {NULL, 0, 0}

void buf_init(struct buf *b);
void buf_release(struct buf *b);                  /* frees data, leaves an empty buf */
void buf_release_secret(struct buf *b);           /* wipes all of data (cap), then buf_release */
int buf_reserve(struct buf *b, size_t extra);     /* 0 or -ENOMEM */
int buf_add(struct buf *b, const void *p, size_t n);
int buf_addstr(struct buf *b, const char *s);
int buf_addch(struct buf *b, char c);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_reset(struct buf *b);                    /* len = 0, keeps memory */
char *buf_detach(struct buf *b);                  /* returns data (caller frees), buf empty; never NULL */
/* Append s as a JSON string literal (quotes included), escaping as RFC 8259 requires. */
int buf_add_json_string(struct buf *b, const char *s, size_t n);
/* s percent-encoded for a URL (RFC 3986 unreserved bytes kept, and '/' when keep_slash). */
int buf_urlencode(struct buf *out, const char *s, bool keep_slash);

/* true when host (as a URL parser gives it: "localhost", "::1", "[::1]" or dotted 127.x.y.z) is a
 * loopback address. */
bool host_is_loopback(const char *host);
/* true when the http(s) URL's host is a loopback address. Strict and conservative: a URL with
 * userinfo ('@'), a backslash or anything unusual in its authority is not loopback. */
bool url_is_loopback(const char *url);
/* true when host is the cloud instance-metadata address (169.254.169.254, fd00:ec2::254): the
 * link-local, unroutable address where Azure's and AWS's instance metadata services answer, in
 * cleartext http only. */
bool host_is_metadata_service(const char *host);
/* true when url is http:// to that address (same strict authority rules as url_is_loopback). */
bool url_is_metadata_service(const char *url);
/* Wipe the string s (a secret), then free it (accepts NULL). */
void free_secret(char *s);
/* Free an array of n strings and the array (accepts NULL). */
void strv_free(char **v, size_t n);
/* Copy n bytes of p into a new NUL-terminated string (caller frees), or NULL when out of memory.
 * Unlike strndup it never looks past p + n, so it is safe on spans of unterminated input. */
char *mem_to_str(const void *p, size_t n);

/* Error buffer: human-readable detail for the caller. The first dverr_set wins. */
struct dverr {
    int code;        /* -errno of the first error, 0 when none */
    char msg[512];
};
void dverr_clear(struct dverr *e);
/* Records the message (if e != NULL and no earlier error) and returns code (a negative errno). */
int dverr_set(struct dverr *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
const char *dverr_msg(const struct dverr *e); /* "" when none */

/* n bytes of data as 2n lowercase hex chars + NUL into out. */
void hex_encode(const void *data, size_t n, char *out);
/* SHA-256 of data as 64 lowercase hex chars + NUL. */
void sha256_hex(const void *data, size_t len, char out[65]);
struct sha256_stream; /* incremental hashing; opaque */
struct sha256_stream *sha256_stream_new(void);
void sha256_stream_update(struct sha256_stream *s, const void *data, size_t len);
void sha256_stream_finish(struct sha256_stream *s, char out[65]); /* also frees s */

/* Write data to path atomically: path.tmp.<pid>.<n>, fsync, rename, fsync the directory.
 * mode is applied to the new file. 0 or -errno. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Read a whole file (at most max bytes, else -EFBIG) into out. */
int read_file(const char *path, size_t max, struct buf *out);
/* mkdir -p with mode for each created directory; each one created is made durable (its parent
 * fsynced) before the next. */
int mkdir_p(const char *path, mode_t mode);
/* The parent directory of path ("/" for "/x", "." for "x") into out. */
void parent_of(const char *path, char *out, size_t n);
/* fsync a directory by path. */
int fsync_dir(const char *path);

/* Restore point names: UTC "YYYY-MM-DDTHHMMSSZ" (sortable, no colons). */
void point_name_from_time(time_t t, char out[32]);
int point_name_to_time(const char *name, time_t *out); /* 0 or -EINVAL */
/* RFC 3339 "YYYY-MM-DDTHH:MM:SSZ" (also accepts offsets +hh:mm and fractional seconds). */
void rfc3339_from_time(time_t t, char out[32]);
int rfc3339_to_time(const char *s, time_t *out); /* 0 or -EINVAL */
/* Durations like "15m", "2h", "30s", "1d"; bare numbers are seconds. 0 or -EINVAL. */
int parse_duration(const char *s, int64_t *seconds);
/* Sizes like "2G", "512M", "100k"; bare numbers are bytes. 0 or -EINVAL. */
int parse_size(const char *s, uint64_t *bytes);

/* The one sanitiser for names that come from remote data and become path components:
 * result has no '/', no NUL, no control characters, is not "." or "..", is not empty, and is at
 * most 255 bytes (long names keep a prefix and end in "~" + 8 hex chars of their SHA-256 so they
 * stay unique and stable). '/' becomes U+2215 (∕) and control characters become '_'. Valid UTF-8 is
 * kept. Uniqueness within a directory is the caller's job (name_unique_suffix). */
void name_sanitize(const char *in, size_t len, char out[256]);
/* Make name unique by appending "~2", "~3"... decided by the caller's exists() predicate. */
void name_unique_suffix(char name[256], int n);

/* Monotonic clock in milliseconds. */
int64_t now_ms(void);
/* clock's time ms milliseconds from now: the deadline of a pthread_cond_timedwait on that clock. */
struct timespec timespec_in_ms(clockid_t clock, long ms);
/* pthread_create with every signal blocked in the new thread (SIGINT and SIGTERM must reach the
 * thread that unmounts or stops the work), detached when th is NULL: 0 or the pthread error. */
int thread_start(pthread_t *th, void *(*fn)(void *), void *arg);

/* An arena: pieces of memory handed out from large blocks and freed together (the nodes of a
 * parsed document, the strings of a listing, a sort buffer). block is the size of a block (0:
 * ARENA_BLOCK); a piece larger than that gets a block of its own. bytes counts what the blocks
 * take. Not thread-safe: one owner. */
#define ARENA_BLOCK 65536
struct arena_block;
struct arena {
    struct arena_block *blocks;
    size_t block;
    size_t bytes;
};
/* n bytes aligned for any object (16), or NULL when out of memory. */
void *arena_alloc(struct arena *a, size_t n);
/* n bytes with no alignment (byte strings packed tight), or NULL. */
char *arena_bytes(struct arena *a, size_t n);
/* A NUL-terminated copy of s[0..n), or NULL. */
char *arena_strndup(struct arena *a, const char *s, size_t n);
/* Frees every block; the arena is empty again and keeps its block size. */
void arena_release(struct arena *a);

/* Standard padded base64 of data[0..len) appended to out. */
int base64_encode(const void *data, size_t len, struct buf *out);
/* Decode base64 (standard or url alphabet, whitespace skipped, padding optional) appended to out
 * (NUL-terminated); -EINVAL on any other byte or a dangling partial byte. */
int base64_decode(const char *s, size_t len, struct buf *out);

#endif
