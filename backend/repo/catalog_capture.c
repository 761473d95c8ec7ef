/* catalog_capture: the capture state of the catalog (catalog.h): one packed, zstd-compressed row
 * per table (format below), loaded into memory on first use, and a capture's pending puts in a
 * TEMP table of its own connection, merged with the committed state when read and applied in one
 * transaction by catalog_capture_commit.
 * Limits: a packed row expands to at most STATE_MAX_RAW bytes; a table's committed state is held
 * in memory while the capture uses it (catalog_capture_done drops it).
 * Threading: a catalog_capture is serialised by its own mutex (cc->mu); it holds one pooled
 * connection from begin to commit or abort. */
#include "backend/repo/catalog_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

/* Record keys in the state: a canonical lowercase GUID (8-4-4-4-12 hex) is stored as its 16 bytes;
 * any other key as its bytes, with a 0 byte in front when it is 16 bytes long (keys hold no NUL).
 * out needs n + 1 bytes; returns the packed length. */
static size_t key_pack(const char *key, size_t n, unsigned char *out)
{
    bool guid = n == 36;
    for (size_t i = 0; guid && i < 36; i++) {
        char c = key[i];
        bool is_dash = i == 8 || i == 13 || i == 18 || i == 23;
        guid = is_dash ? c == '-' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (guid) {
        size_t o = 0;
        for (size_t i = 0; i < 36; i += 2) {
            if (key[i] == '-')
                i++;
            unsigned hi = (unsigned)(key[i] <= '9' ? key[i] - '0' : key[i] - 'a' + 10);
            unsigned lo = (unsigned)(key[i + 1] <= '9' ? key[i + 1] - '0' : key[i + 1] - 'a' + 10);
            out[o++] = (unsigned char)(hi << 4 | lo);
        }
        return o;
    }
    if (n == 16) {
        out[0] = 0;
        memcpy(out + 1, key, n);
        return n + 1;
    }
    memcpy(out, key, n);
    return n;
}

/* Inverse of key_pack into a NUL-terminated string (out needs max(37, n + 1) bytes). */
static void key_unpack(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 16) {
        size_t o = 0;
        for (size_t i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                out[o++] = '-';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
        }
        out[o] = '\0';
        return;
    }
    if (n == 17 && p[0] == 0) {
        p++;
        n--;
    }
    memcpy(out, p, n);
    out[n] = '\0';
}

/* ---- packed capture state ----
 *
 * A table's state is one state_data row: n and the zstd-compressed bytes of
 *   n entries' keys     LEB128 bytes shared with the previous key, LEB128 suffix length, suffix
 *   n line lengths      LEB128 each
 *   1 byte              1 when line hashes follow, 0 when no entry has one
 *   n line hashes       8 bytes each, little-endian, 0 = none (only with the byte above = 1)
 * in key order (packed keys, memcmp then shorter first: SQLite's BLOB order, so temp.pending's
 * ORDER BY key merges with it). Columns compress better than rows: the lengths and prefix counts
 * shrink to almost nothing and only the keys' random bytes remain. A hash is kept only where the
 * capture asks (tables without change tracking, diffed by hash on every read); a table read
 * through change tracking has none, and a full read of it takes the hashes from the previous
 * point's segments (capture.c). Everything read back is bounds-checked: a damaged row gives -EIO
 * (rebuild the catalog), never a crash. */

#define STATE_MAX_RAW (1ull << 32)
#define SEGMENT_KEY_CAP (64u << 10) /* a record key is at most this long (segment.h) */

struct state_tab {
    size_t n;
    unsigned char *keys;     /* packed keys back to back */
    size_t *koff;            /* n + 1 offsets into keys */
    uint64_t *len;
    uint64_t *hash;          /* NULL when no entry has one */
};

static void state_tab_release(struct state_tab *t)
{
    free(t->keys);
    free(t->koff);
    free(t->len);
    free(t->hash);
    memset(t, 0, sizeof *t);
}

static int packed_cmp(const unsigned char *a, size_t an, const unsigned char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

static int st_varint(struct buf *b, uint64_t v)
{
    unsigned char p[10];
    size_t n = 0;
    do {
        p[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return buf_add(b, p, n);
}

static int st_get_varint(const unsigned char *p, size_t end, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= end)
            return -EIO;
        unsigned char c = p[(*pos)++];
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -EIO;
}

/* Builds a state table entry by entry (keys in increasing order). */
struct state_build {
    struct buf keys, lens, hashes;
    bool any_hash;
    struct buf prev;
    size_t n;
};

static int state_build_add(struct state_build *b, const unsigned char *k, size_t kn, uint64_t len,
                           uint64_t hash)
{
    size_t shared = 0;
    while (shared < kn && shared < b->prev.len && (unsigned char)b->prev.data[shared] == k[shared])
        shared++;
    unsigned char h[8];
    for (int i = 0; i < 8; i++)
        h[i] = (unsigned char)(hash >> (8 * i));
    b->any_hash |= hash != 0;
    int rc = st_varint(&b->keys, shared);
    if (!rc)
        rc = st_varint(&b->keys, kn - shared);
    if (!rc)
        rc = buf_add(&b->keys, k + shared, kn - shared);
    if (!rc)
        rc = st_varint(&b->lens, len);
    if (!rc)
        rc = buf_add(&b->hashes, h, 8);
    if (!rc) {
        buf_reset(&b->prev);
        rc = buf_add(&b->prev, k, kn);
    }
    if (!rc)
        b->n++;
    return rc;
}

/* The compressed bytes of b into out. */
static int state_build_finish(struct state_build *b, struct buf *out)
{
    struct buf raw = BUF_INIT;
    int rc = st_varint(&raw, b->n);
    if (!rc)
        rc = buf_add(&raw, b->keys.data ? b->keys.data : "", b->keys.len);
    if (!rc)
        rc = buf_add(&raw, b->lens.data ? b->lens.data : "", b->lens.len);
    if (!rc)
        rc = buf_add(&raw, b->any_hash ? "\1" : "", 1);
    if (!rc && b->any_hash)
        rc = buf_add(&raw, b->hashes.data, b->hashes.len);
    if (!rc) {
        size_t bound = ZSTD_compressBound(raw.len);
        buf_reset(out);
        if (!(rc = buf_reserve(out, bound))) {
            size_t z = ZSTD_compress(out->data, bound, raw.data, raw.len, 3);
            if (ZSTD_isError(z))
                rc = -EIO;
            else
                out->len = z;
        }
    }
    buf_release(&raw);
    return rc;
}

static void state_build_release(struct state_build *b)
{
    buf_release(&b->keys);
    buf_release(&b->lens);
    buf_release(&b->hashes);
    buf_release(&b->prev);
}

/* Decode a state_data row of n entries. */
static int state_unpack(const void *data, size_t size, uint64_t n, struct state_tab *t)
{
    memset(t, 0, sizeof *t);
    unsigned long long raw_n = ZSTD_getFrameContentSize(data, size);
    if (raw_n == ZSTD_CONTENTSIZE_ERROR || raw_n == ZSTD_CONTENTSIZE_UNKNOWN ||
        raw_n > STATE_MAX_RAW || n > raw_n / 3)
        return -EIO;
    unsigned char *raw = malloc(raw_n ? raw_n : 1);
    int rc = 0;
    if (!raw)
        return -ENOMEM;
    size_t z = ZSTD_decompress(raw, raw_n, data, size);
    if (ZSTD_isError(z) || z != raw_n) {
        rc = -EIO;
        goto out;
    }
    size_t pos = 0;
    uint64_t count;
    if (st_get_varint(raw, raw_n, &pos, &count) || count != n) {
        rc = -EIO;
        goto out;
    }
    t->n = n;
    t->koff = malloc((n + 1) * sizeof *t->koff);
    t->len = malloc((n ? n : 1) * sizeof *t->len);
    t->keys = malloc(raw_n + 1); /* the keys expand at most to the whole row... */
    if (!t->koff || !t->len || !t->keys) {
        rc = -ENOMEM;
        goto out;
    }
    size_t kcap = raw_n + 1, kused = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t shared, suffix;
        size_t prev_len = i ? kused - t->koff[i - 1] : 0;
        if (st_get_varint(raw, raw_n, &pos, &shared) || st_get_varint(raw, raw_n, &pos, &suffix) ||
            shared > prev_len || suffix > raw_n - pos || shared + suffix > SEGMENT_KEY_CAP) {
            rc = -EIO;
            goto out;
        }
        if (kused + shared + suffix > kcap) { /* ...unless prefixes repeat: grow */
            size_t nc = (kused + shared + suffix) * 2;
            unsigned char *k = realloc(t->keys, nc);
            if (!k) {
                rc = -ENOMEM;
                goto out;
            }
            t->keys = k;
            kcap = nc;
        }
        t->koff[i] = kused;
        if (i)
            memmove(t->keys + kused, t->keys + t->koff[i - 1], shared);
        memcpy(t->keys + kused + shared, raw + pos, suffix);
        kused += shared + suffix;
        pos += suffix;
        if (i && packed_cmp(t->keys + t->koff[i - 1], prev_len, t->keys + t->koff[i],
                            kused - t->koff[i]) >= 0) {
            rc = -EIO; /* keys must increase */
            goto out;
        }
    }
    t->koff[n] = kused;
    for (size_t i = 0; i < n; i++)
        if (st_get_varint(raw, raw_n, &pos, &t->len[i])) {
            rc = -EIO;
            goto out;
        }
    if (pos >= raw_n || raw[pos] > 1) {
        rc = -EIO;
        goto out;
    }
    if (raw[pos++] == 1) {
        if (raw_n - pos != n * 8 || !(t->hash = malloc((n ? n : 1) * sizeof *t->hash))) {
            rc = raw_n - pos != n * 8 ? -EIO : -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++, pos += 8) {
            uint64_t h = 0;
            for (int b = 7; b >= 0; b--)
                h = h << 8 | raw[pos + (size_t)b];
            t->hash[i] = h;
        }
    }
    if (pos != raw_n)
        rc = -EIO; /* trailing bytes */
out:
    free(raw);
    if (rc)
        state_tab_release(t);
    return rc;
}

/* Index of packed key k in t, or -1. */
static ptrdiff_t state_find(const struct state_tab *t, const unsigned char *k, size_t kn)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = packed_cmp(t->keys + t->koff[mid], t->koff[mid + 1] - t->koff[mid], k, kn);
        if (c == 0)
            return (ptrdiff_t)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

/* ---- capture ---- */

struct tid_cache {
    char *tbl;
    sqlite3_int64 tid;       /* 0: the table has no state yet */
    bool loaded;             /* tab holds the committed state (catalog_capture_done drops it) */
    struct state_tab tab;
};

struct catalog_capture {
    struct catalog *cat;
    sqlite3 *db;
    char *env;
    bool replace;
    pthread_mutex_t mu;      /* serialises every use of db and the fields below */
    sqlite3_stmt *get_pending, *put, *find_tid, *load;
    struct tid_cache *tids;
    size_t n_tids;
    struct dverr err;        /* first error of get/put (they have no err parameter) */
};

static int capture_stmts(struct catalog_capture *cc, struct dverr *err)
{
    struct catalog *c = cc->cat;
    int rc;
    if ((rc = catalog_prepare(c, cc->db, "SELECT hash, len, deleted FROM temp.pending WHERE "
                                         "tbl = ?1 AND key = ?2", &cc->get_pending, err)) ||
        (rc = catalog_prepare(c, cc->db,
                              "INSERT OR REPLACE INTO temp.pending VALUES(?1, ?2, ?3, ?4, ?5)",
                              &cc->put, err)) ||
        (rc = catalog_prepare(c, cc->db,
                              "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2",
                              &cc->find_tid, err)) ||
        (rc = catalog_prepare(c, cc->db, "SELECT n, data FROM main.state_data WHERE tid = ?1",
                              &cc->load, err)))
        return rc;
    return 0;
}

static void capture_finalize(struct catalog_capture *cc)
{
    sqlite3_finalize(cc->get_pending);
    sqlite3_finalize(cc->put);
    sqlite3_finalize(cc->find_tid);
    sqlite3_finalize(cc->load);
    cc->get_pending = cc->put = cc->find_tid = cc->load = NULL;
}

int catalog_capture_begin(struct catalog *c, const char *env, bool replace,
                          struct catalog_capture **out, struct dverr *err)
{
    *out = NULL;
    struct catalog_capture *cc = calloc(1, sizeof *cc);
    if (!cc || !(cc->env = strdup(env))) {
        free(cc);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    cc->cat = c;
    cc->replace = replace;
    pthread_mutex_init(&cc->mu, NULL);
    int rc = catalog_conn_acquire(c, &cc->db, err);
    if (rc)
        goto fail;
    if ((rc = catalog_exec(c, cc->db,
                           "DROP TABLE IF EXISTS temp.pending; "
                           "CREATE TEMP TABLE pending(tbl TEXT NOT NULL, key BLOB NOT NULL, "
                           "hash INTEGER NOT NULL, len INTEGER NOT NULL, deleted INTEGER NOT NULL,"
                           " PRIMARY KEY(tbl, key)) WITHOUT ROWID", err)))
        goto fail;
    if ((rc = capture_stmts(cc, err)))
        goto fail;
    *out = cc;
    return 0;
fail:
    catalog_capture_abort(cc);
    return rc;
}

/* The table's committed state (loaded on first use; empty when it has none); cc->mu held. */
static int table_of(struct catalog_capture *cc, const char *table, struct tid_cache **out)
{
    struct tid_cache *have = NULL;
    for (size_t i = 0; i < cc->n_tids && !have; i++)
        if (strcmp(cc->tids[i].tbl, table) == 0)
            have = &cc->tids[i];
    if (have && have->loaded) {
        *out = have;
        return 0;
    }
    sqlite3_int64 tid = 0;
    struct state_tab tab = {0};
    int rc = 0;
    if (!cc->replace) {
        sqlite3_stmt *st = cc->find_tid;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, cc->env, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            tid = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (s != SQLITE_ROW && s != SQLITE_DONE)
            return catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
    }
    if (tid) {
        sqlite3_stmt *st = cc->load;
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, tid);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            sqlite3_int64 n = sqlite3_column_int64(st, 0);
            const void *d = sqlite3_column_blob(st, 1);
            int dn = sqlite3_column_bytes(st, 1);
            rc = n < 0 || !d ? -EIO : state_unpack(d, (size_t)dn, (uint64_t)n, &tab);
            if (rc == -EIO)
                rc = catalog_fail(cc->cat, NULL, SQLITE_CORRUPT,
                                  "a table's capture state is unreadable", &cc->err);
        } else if (s != SQLITE_DONE) {
            rc = catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
        }
        sqlite3_reset(st);
        if (rc)
            return rc;
    }
    if (have) { /* loaded again after catalog_capture_done */
        have->tid = tid;
        have->tab = tab;
        have->loaded = true;
        *out = have;
        return 0;
    }
    struct tid_cache *v = realloc(cc->tids, (cc->n_tids + 1) * sizeof *v);
    if (!v) {
        state_tab_release(&tab);
        return -ENOMEM;
    }
    cc->tids = v;
    if (!(v[cc->n_tids].tbl = strdup(table))) {
        state_tab_release(&tab);
        return -ENOMEM;
    }
    v[cc->n_tids].tid = tid;
    v[cc->n_tids].loaded = true;
    v[cc->n_tids].tab = tab;
    *out = &v[cc->n_tids++];
    return 0;
}

void catalog_capture_done(struct catalog_capture *cc, const char *table)
{
    pthread_mutex_lock(&cc->mu);
    for (size_t i = 0; i < cc->n_tids; i++)
        if (strcmp(cc->tids[i].tbl, table) == 0 && cc->tids[i].loaded) {
            state_tab_release(&cc->tids[i].tab);
            cc->tids[i].loaded = false;
        }
    pthread_mutex_unlock(&cc->mu);
}

int catalog_capture_get(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t *hash, uint64_t *len, bool *found)
{
    int rc = 0;
    *found = false;
    *hash = 0;
    unsigned char *pk = malloc(key_len + 1);
    if (!pk)
        return -ENOMEM;
    size_t pn = key_pack(key, key_len, pk);
    pthread_mutex_lock(&cc->mu);
    sqlite3_stmt *st = cc->get_pending;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, pk, (int)pn, SQLITE_STATIC);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        if (!sqlite3_column_int(st, 2)) {
            *hash = (uint64_t)sqlite3_column_int64(st, 0);
            *len = (uint64_t)sqlite3_column_int64(st, 1);
            *found = true;
        }
        goto out;
    }
    if (s != SQLITE_DONE) {
        rc = catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
        goto out;
    }
    sqlite3_reset(st);
    struct tid_cache *tc;
    if ((rc = table_of(cc, table, &tc)))
        goto out;
    ptrdiff_t i = state_find(&tc->tab, pk, pn);
    if (i >= 0) {
        *hash = tc->tab.hash ? tc->tab.hash[i] : 0;
        *len = tc->tab.len[i];
        *found = true;
    }
out:
    sqlite3_reset(st);
    pthread_mutex_unlock(&cc->mu);
    free(pk);
    return rc;
}

int catalog_capture_put(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t hash, uint64_t len, bool deleted)
{
    int rc = 0;
    unsigned char *pk = malloc(key_len + 1);
    if (!pk)
        return -ENOMEM;
    size_t pn = key_pack(key, key_len, pk);
    pthread_mutex_lock(&cc->mu);
    sqlite3_stmt *st = cc->put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, pk, (int)pn, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(deleted ? 0 : hash));
    sqlite3_bind_int64(st, 4, (sqlite3_int64)(deleted ? 0 : len));
    sqlite3_bind_int(st, 5, deleted ? 1 : 0);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = catalog_fail(cc->cat, cc->db, s, "writing the capture state", &cc->err);
    sqlite3_reset(st);
    pthread_mutex_unlock(&cc->mu);
    free(pk);
    return rc;
}

/* One row of a table's state after commit: the committed state merged with temp.pending. */
struct state_merge {
    const struct state_tab *tab;
    size_t i;
    sqlite3_stmt *pend;      /* SELECT key, hash, len, deleted FROM temp.pending WHERE tbl = ? */
    bool pend_row;           /* pend is on a row */
};

static int merge_step_pending(struct state_merge *m, struct catalog_capture *cc)
{
    int s = sqlite3_step(m->pend);
    m->pend_row = s == SQLITE_ROW;
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        return catalog_fail(cc->cat, cc->db, s, "reading the pending state", &cc->err);
    return 0;
}

/* 1 with the next live row, 0 at the end, -errno. */
static int merge_next(struct state_merge *m, struct catalog_capture *cc, const unsigned char **k,
                      size_t *kn, uint64_t *hash, uint64_t *len)
{
    for (;;) {
        bool have_t = m->i < m->tab->n;
        const unsigned char *tk = have_t ? m->tab->keys + m->tab->koff[m->i] : NULL;
        size_t tkn = have_t ? m->tab->koff[m->i + 1] - m->tab->koff[m->i] : 0;
        if (!have_t && !m->pend_row)
            return 0;
        int c = 0;
        const unsigned char *pk = NULL;
        size_t pkn = 0;
        if (m->pend_row) {
            pk = sqlite3_column_blob(m->pend, 0);
            pkn = (size_t)sqlite3_column_bytes(m->pend, 0);
            if (!pk)
                pk = (const unsigned char *)"";
            c = have_t ? packed_cmp(tk, tkn, pk, pkn) : 1;
        } else {
            c = -1;
        }
        if (c < 0) {
            *k = tk, *kn = tkn, *len = m->tab->len[m->i];
            *hash = m->tab->hash ? m->tab->hash[m->i] : 0;
            m->i++;
            return 1;
        }
        if (c == 0)
            m->i++; /* pending wins */
        /* the pending row: its key is copied by the caller before the next step */
        bool deleted = sqlite3_column_int(m->pend, 3);
        if (!deleted) {
            *k = pk, *kn = pkn;
            *hash = (uint64_t)sqlite3_column_int64(m->pend, 1);
            *len = (uint64_t)sqlite3_column_int64(m->pend, 2);
            m->pend_row = false; /* stepped on the next call */
            return 2;
        }
        int rc = merge_step_pending(m, cc);
        if (rc)
            return rc;
    }
}

int catalog_capture_iterate(struct catalog_capture *cc, const char *table,
                            int (*fn)(void *ctx, const char *key, uint64_t hash, uint64_t len),
                            void *ctx)
{
    /* Rows are collected under the lock, then handed to fn without it (fn may call put). */
    struct iter_out {
        char *key;
        uint64_t hash, len;
    } *rows = NULL;
    size_t n = 0, cap = 0;
    sqlite3_stmt *pend = NULL;
    int rc;
    pthread_mutex_lock(&cc->mu);
    struct tid_cache *tc;
    rc = table_of(cc, table, &tc);
    if (!rc)
        rc = catalog_prepare(cc->cat, cc->db, "SELECT key, hash, len, deleted FROM temp.pending "
                                              "WHERE tbl = ?1 ORDER BY key", &pend, &cc->err);
    if (!rc) {
        sqlite3_bind_text(pend, 1, table, -1, SQLITE_STATIC);
        struct state_merge m = {&tc->tab, 0, pend, false};
        if (!rc)
            rc = merge_step_pending(&m, cc);
        while (!rc) {
            const unsigned char *k;
            size_t kn;
            uint64_t h, l;
            int r = merge_next(&m, cc, &k, &kn, &h, &l);
            if (r <= 0) {
                rc = r;
                break;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 1024;
                struct iter_out *v = realloc(rows, nc * sizeof *v);
                if (!v) {
                    rc = -ENOMEM;
                    break;
                }
                rows = v;
                cap = nc;
            }
            if (!(rows[n].key = malloc(kn + 37))) {
                rc = -ENOMEM;
                break;
            }
            key_unpack(k, kn, rows[n].key);
            rows[n].hash = h;
            rows[n].len = l;
            n++;
            if (r == 2)
                rc = merge_step_pending(&m, cc);
        }
    }
    sqlite3_finalize(pend);
    pthread_mutex_unlock(&cc->mu);
    for (size_t i = 0; i < n; i++) {
        if (!rc)
            rc = fn(ctx, rows[i].key, rows[i].hash, rows[i].len);
        free(rows[i].key);
    }
    free(rows);
    return rc;
}

static int step_done(struct catalog *c, sqlite3 *db, sqlite3_stmt *st, const char *what,
                     struct dverr *err)
{
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    return s == SQLITE_DONE || s == SQLITE_ROW ? 0 : catalog_fail(c, db, s, what, err);
}

/* Write the state of every table with pending rows (merged with its committed state) inside the
 * open transaction; a replace drops env's other tables' state first. */
static int apply_pending(struct catalog_capture *cc, struct dverr *err)
{
    struct catalog *c = cc->cat;
    sqlite3 *db = cc->db;
    sqlite3_stmt *tbls = NULL, *pend = NULL, *mk = NULL, *find = NULL, *ins = NULL, *clr = NULL;
    struct buf packed = BUF_INIT;
    int rc;
    if ((rc = catalog_prepare(c, db, "SELECT DISTINCT tbl FROM temp.pending ORDER BY tbl", &tbls,
                              err)) ||
        (rc = catalog_prepare(c, db, "SELECT key, hash, len, deleted FROM temp.pending WHERE "
                                     "tbl = ?1 ORDER BY key", &pend, err)) ||
        (rc = catalog_prepare(c, db,
                              "INSERT OR IGNORE INTO main.state_tables(env, tbl) VALUES(?1, ?2)",
                              &mk, err)) ||
        (rc = catalog_prepare(c, db,
                              "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2",
                              &find, err)) ||
        (rc = catalog_prepare(c, db, "INSERT OR REPLACE INTO main.state_data VALUES(?1, ?2, ?3)",
                              &ins, err)) ||
        (rc = catalog_prepare(c, db, "DELETE FROM main.state_data WHERE tid IN (SELECT tid FROM "
                                     "main.state_tables WHERE env = ?1)", &clr, err)))
        goto out;
    if (cc->replace) {
        sqlite3_bind_text(clr, 1, cc->env, -1, SQLITE_STATIC);
        if ((rc = step_done(c, db, clr, "clearing the capture state", err)))
            goto out;
    }
    int s;
    while (!rc && (s = sqlite3_step(tbls)) == SQLITE_ROW) {
        char *tbl = strdup((const char *)sqlite3_column_text(tbls, 0));
        struct tid_cache *tc = NULL;
        struct state_build b = {BUF_INIT, BUF_INIT, BUF_INIT, false, BUF_INIT, 0};
        if (!tbl) {
            rc = -ENOMEM;
            break;
        }
        pthread_mutex_lock(&cc->mu);
        rc = table_of(cc, tbl, &tc);
        pthread_mutex_unlock(&cc->mu);
        if (rc) {
            dverr_set(err, rc, "%s", cc->err.code ? cc->err.msg : "reading the capture state");
            free(tbl);
            break;
        }
        sqlite3_bind_text(mk, 1, cc->env, -1, SQLITE_STATIC);
        sqlite3_bind_text(mk, 2, tbl, -1, SQLITE_STATIC);
        if ((rc = step_done(c, db, mk, "adding a state table", err))) {
            free(tbl);
            break;
        }
        sqlite3_bind_text(find, 1, cc->env, -1, SQLITE_STATIC);
        sqlite3_bind_text(find, 2, tbl, -1, SQLITE_STATIC);
        sqlite3_int64 tid = 0;
        if (sqlite3_step(find) == SQLITE_ROW)
            tid = sqlite3_column_int64(find, 0);
        sqlite3_reset(find);
        if (!tid) {
            rc = catalog_fail(c, db, sqlite3_errcode(db), "finding a state table", err);
            free(tbl);
            break;
        }
        sqlite3_reset(pend);
        sqlite3_bind_text(pend, 1, tbl, -1, SQLITE_STATIC);
        struct state_merge m = {&tc->tab, 0, pend, false};
        if ((rc = merge_step_pending(&m, cc)))
            dverr_set(err, rc, "%s", cc->err.msg);
        while (!rc) {
            const unsigned char *k;
            size_t kn;
            uint64_t h, l;
            int r = merge_next(&m, cc, &k, &kn, &h, &l);
            if (r < 0)
                dverr_set(err, r, "%s", cc->err.msg);
            if (r <= 0) {
                rc = r;
                break;
            }
            if ((rc = state_build_add(&b, k, kn, l, h)))
                dverr_set(err, rc, "out of memory packing the capture state");
            else if (r == 2 && (rc = merge_step_pending(&m, cc)))
                dverr_set(err, rc, "%s", cc->err.msg);
        }
        sqlite3_reset(pend);
        if (!rc && (rc = state_build_finish(&b, &packed)))
            dverr_set(err, rc, "packing the capture state of %s", tbl);
        if (!rc) {
            sqlite3_bind_int64(ins, 1, tid);
            sqlite3_bind_int64(ins, 2, (sqlite3_int64)b.n);
            sqlite3_bind_blob(ins, 3, packed.data ? packed.data : "", (int)packed.len,
                              SQLITE_STATIC);
            rc = step_done(c, db, ins, "writing the capture state", err);
        }
        state_build_release(&b);
        free(tbl);
    }
    if (!rc && s != SQLITE_DONE)
        rc = catalog_fail(c, db, s, "reading the pending state", err);
out:
    buf_release(&packed);
    sqlite3_finalize(tbls);
    sqlite3_finalize(pend);
    sqlite3_finalize(mk);
    sqlite3_finalize(find);
    sqlite3_finalize(ins);
    sqlite3_finalize(clr);
    return rc;
}

int catalog_capture_commit(struct catalog_capture *cc, const struct point *p, struct dverr *err)
{
    struct catalog *c = cc->cat;
    sqlite3 *db = cc->db;
    sqlite3_stmt *st = NULL;
    int rc = cc->err.code;
    if (rc) {
        dverr_set(err, rc, "%s", cc->err.msg);
        goto out;
    }
    if ((rc = catalog_exec(c, db, "BEGIN IMMEDIATE", err)))
        goto out;
    rc = apply_pending(cc, err);
    capture_finalize(cc);
    if (!rc) {
        const char *sql = p ? "INSERT OR REPLACE INTO state_point VALUES(?1, ?2)"
                            : "DELETE FROM state_point WHERE env = ?1";
        if (!(rc = catalog_prepare(c, db, sql, &st, err))) {
            sqlite3_bind_text(st, 1, cc->env, -1, SQLITE_STATIC);
            if (p)
                sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
            rc = step_done(c, db, st, "recording the state point", err);
            sqlite3_finalize(st);
        }
    }
    if (!rc && p)
        rc = catalog_point_add_db(c, db, p, err);
    if (!rc)
        rc = catalog_exec(c, db, "COMMIT", err);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    else /* give the replaced state's pages back (best effort: the commit stands either way) */
        sqlite3_exec(db, "PRAGMA incremental_vacuum", NULL, NULL, NULL);
out:
    catalog_capture_abort(cc);
    return rc;
}

void catalog_capture_abort(struct catalog_capture *cc)
{
    if (!cc)
        return;
    capture_finalize(cc);
    if (cc->db) {
        sqlite3_exec(cc->db, "DROP TABLE IF EXISTS temp.pending", NULL, NULL, NULL);
        catalog_conn_release(cc->cat, cc->db);
    }
    for (size_t i = 0; i < cc->n_tids; i++) {
        free(cc->tids[i].tbl);
        state_tab_release(&cc->tids[i].tab);
    }
    free(cc->tids);
    pthread_mutex_destroy(&cc->mu);
    free(cc->env);
    free(cc);
}
