/* catalog_int: internals of the catalog (catalog.h) shared by catalog.c (connection pool, schema,
 * points), catalog_capture.c (the capture state) and catalog_chunk.c (the state's chunk format):
 * struct catalog, the pool's connections, the SQLite helpers that name the catalog in their
 * errors, adding a point inside an open transaction, and the chunk format. Not part of the
 * contract; only these three files (and tests) include it.
 * Threading: struct catalog is thread-safe (the pool under c->mu); a connection taken from the
 * pool belongs to the taker until it gives it back. */
#ifndef DVSNAP_CATALOG_INT_H
#define DVSNAP_CATALOG_INT_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <zstd.h>

#include "backend/repo/catalog.h"

#define POOL_MAX 8

struct catalog {
    char *path;              /* immutable after open */
    pthread_mutex_t mu;      /* guards pool and n_pool */
    sqlite3 *pool[POOL_MAX]; /* guarded by mu */
    int n_pool;              /* guarded by mu */
};

/* A connection of c's pool (a new one when the pool is empty); give it back with
 * catalog_conn_release. */
int catalog_conn_acquire(struct catalog *c, sqlite3 **db, struct dverr *err);
/* Back into the pool, or closed when the pool is full. Accepts NULL. */
void catalog_conn_release(struct catalog *c, sqlite3 *db);
/* The -errno of a SQLite result code, with what failed and the way out of damage in err. db may be
 * NULL (the message then comes from the code alone). */
int catalog_fail(const struct catalog *c, sqlite3 *db, int code, const char *what,
                 struct dverr *err);
int catalog_exec(struct catalog *c, sqlite3 *db, const char *sql, struct dverr *err);
int catalog_prepare(struct catalog *c, sqlite3 *db, const char *sql, sqlite3_stmt **st,
                    struct dverr *err);
/* Insert or replace p's row and its delta-segment rows, inside the caller's transaction. */
int catalog_point_add_db(struct catalog *c, sqlite3 *db, const struct point *p,
                         struct dverr *err);

/* ---- the capture state's chunks (catalog_chunk.c) ----
 *
 * A state_chunks row (tid, lo, n, data): lo is the lowest key the chunk may hold (its first key,
 * or the empty key for the table's first chunk); it holds the keys from lo up to the next row's
 * lo. A key k starts a chunk when state_chunk_starts(k); the first chunk holds the keys below the
 * first such key. data is n entries zstd-compressed as columns:
 *   n                   LEB128 (the row's n again: a cross-check)
 *   n entries' keys     LEB128 (bytes shared with the previous packed key) * 2 + 1 when the
 *                       packed key is not 16 bytes long (not a GUID), then for those a LEB128
 *                       suffix length (a GUID's is 16 - shared), then the suffix (packed keys:
 *                       key_pack)
 *   n line lengths      LEB128 each
 *   1 byte              1 when line hashes follow, 0 when no entry has one
 *   n line hashes       8 bytes each, little-endian, 0 = none (only with the byte above = 1)
 * in key order. Columns compress better than rows: the lengths and prefix counts shrink to almost
 * nothing and only the keys' random bytes remain. A hash is kept only where the capture asks
 * (tables without change tracking, diffed by hash on every read); a table read through change
 * tracking has none, and a full read of it takes the hashes from the previous point's segments
 * (capture.c). Everything read back is bounds-checked: a damaged row gives -EIO (rebuild the
 * catalog), never a crash. */
#define STATE_CHUNK_KEYS 128 /* mean keys per chunk (a power of two) */
#define STATE_MAX_RAW (64ull << 20)
#define STATE_CHUNK_LEVEL 1  /* zstd level: the keys' random bytes do not compress at any level */
#define SEGMENT_KEY_CAP (64u << 10) /* a record key is at most this long (segment.h) */

/* The key order of the state, the same as segments': bytes, then shorter first (SQLite's BLOB
 * order, so ORDER BY on temp.pending's and the chunks' BLOB keys merges with it). */
int state_key_order(const char *a, size_t an, const char *b, size_t bn);
/* Whether key starts a chunk: FNV-1a of its bytes, mixed (splitmix64's finaliser), low bits zero.
 * Part of the catalog format: changing it changes every chunk (bump CATALOG_FORMAT). */
bool state_chunk_starts(const char *key, size_t n);

/* A decoded chunk: keys NUL-terminated back to back. */
struct state_chunk {
    size_t n;
    char *keys;
    size_t *koff;            /* n + 1 offsets into keys (key i is koff[i+1] - koff[i] - 1 long) */
    uint64_t *len;
    uint64_t *hash;          /* NULL when no entry has one */
};

void state_chunk_release(struct state_chunk *c);
/* Key i of c and its length. */
const char *state_chunk_key(const struct state_chunk *c, size_t i, size_t *n);
/* Decode a chunk's data of n entries (-EIO when damaged, -ENOMEM). */
int state_chunk_decode(ZSTD_DCtx *dctx, const void *data, size_t size, uint64_t n,
                       struct state_chunk *t);
/* Index of key in t, or where it would go (*found false). */
size_t state_chunk_find(const struct state_chunk *t, const char *k, size_t kn, bool *found);

/* Encodes one chunk, entry by entry (keys in increasing order). */
struct state_chunk_enc {
    struct buf keys, lens, hashes, prev, lo;
    bool any_hash;
    size_t n;
    unsigned char *pk;       /* key_pack scratch */
    ZSTD_CCtx *cctx;         /* made on first use */
};

void state_chunk_enc_reset(struct state_chunk_enc *b); /* empty again (lo kept) */
void state_chunk_enc_release(struct state_chunk_enc *b);
/* Add an entry (keys in increasing order; hash 0: none). */
int state_chunk_enc_add(struct state_chunk_enc *b, const char *key, size_t kn, uint64_t len,
                        uint64_t hash);
/* The compressed data of b into out. */
int state_chunk_enc_finish(struct state_chunk_enc *b, struct buf *out);

#endif
