/* catalog_capture: the capture state of the catalog (catalog.h). A table's state is cut into
 * chunks of about STATE_CHUNK_KEYS keys, each one row of state_chunks (format below) found by the
 * lowest key it may hold, so a pass that touches a few keys reads and rewrites a few chunks
 * whatever the table's size. Where a chunk starts depends only on the keys (content-defined: a
 * key starts a chunk when a hash of it has its low bits zero), so the chunks of a set of keys are
 * the same however the state got there: `check --rebuild-catalog` gives the same rows byte for
 * byte.
 *
 * A capture keeps what it changes in TEMP tables of its own connection (no write lock while it
 * runs): temp.pending (a put per key: a delta read's changes), and temp.staged (a table's whole
 * new state, chunked as it is built in key order by a full read: catalog_state_builder).
 * The chunks' format is catalog_chunk.c (catalog_int.h).
 * catalog_capture_commit applies both in one transaction: a replaced table's chunks are swapped for
 * the staged ones, then each pending key is merged into the one chunk that holds it (which is
 * re-cut if its keys now start chunks, or merged into the chunk before it when its first key
 * went). Reads (get, cursors) see the state as it would be after the commit.
 * Limits: a chunk holds any number of keys in principle (the rule is a hash: one of 2^-k chance to
 * be k times the mean); keys are record keys (no NUL, at most SEGMENT_KEY_CAP bytes).
 * Threading: a catalog_capture is serialised by its own mutex (cc->mu); it holds one pooled
 * connection from begin to commit or abort. A cursor or a builder belongs to one thread and takes
 * cc->mu for each row it reads or writes. */
#include "backend/repo/catalog_int.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

/* ---- the capture ---- */

struct catalog_capture {
    struct catalog *cat;
    sqlite3 *db;
    char *env;
    bool replace;
    pthread_mutex_t mu;      /* serialises every use of db and the fields below */
    sqlite3_stmt *get_pending, *put, *find_tid, *chunk_at_main, *chunk_at_staged, *next_main,
        *next_staged, *is_replaced, *staged_put, *pending_after;
    struct dverr err;        /* first error of get/put (they have no err parameter) */
    ZSTD_DCtx *dctx;         /* chunks are decoded under mu */
};

static const struct {
    size_t off;
    const char *sql;
} STMTS[] = {
    {offsetof(struct catalog_capture, get_pending),
     "SELECT hash, len, deleted FROM temp.pending WHERE tbl = ?1 AND key = ?2"},
    {offsetof(struct catalog_capture, put),
     "INSERT OR REPLACE INTO temp.pending VALUES(?1, ?2, ?3, ?4, ?5)"},
    {offsetof(struct catalog_capture, find_tid),
     "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2"},
    /* the chunk that holds key ?2: the greatest lo at or below it */
    {offsetof(struct catalog_capture, chunk_at_main),
     "SELECT lo, n, data FROM main.state_chunks WHERE tid = ?1 AND lo <= ?2 ORDER BY lo DESC "
     "LIMIT 1"},
    {offsetof(struct catalog_capture, chunk_at_staged),
     "SELECT lo, n, data FROM temp.staged WHERE tbl = ?1 AND lo <= ?2 ORDER BY lo DESC LIMIT 1"},
    /* the chunk after lo ?2 */
    {offsetof(struct catalog_capture, next_main),
     "SELECT lo, n, data FROM main.state_chunks WHERE tid = ?1 AND lo > ?2 ORDER BY lo LIMIT 1"},
    {offsetof(struct catalog_capture, next_staged),
     "SELECT lo, n, data FROM temp.staged WHERE tbl = ?1 AND lo > ?2 ORDER BY lo LIMIT 1"},
    {offsetof(struct catalog_capture, is_replaced),
     "SELECT 1 FROM temp.replaced WHERE tbl = ?1"},
    {offsetof(struct catalog_capture, staged_put),
     "INSERT INTO temp.staged(tbl, lo, n, data) VALUES(?1, ?2, ?3, ?4)"},
    {offsetof(struct catalog_capture, pending_after),
     "SELECT key, hash, len, deleted FROM temp.pending WHERE tbl = ?1 AND key > ?2 ORDER BY key "
     "LIMIT 256"},
};
#define N_STMTS (sizeof STMTS / sizeof STMTS[0])

static sqlite3_stmt **stmt_at(struct catalog_capture *cc, size_t i)
{
    return (sqlite3_stmt **)((char *)cc + STMTS[i].off);
}

static void capture_finalize(struct catalog_capture *cc)
{
    for (size_t i = 0; i < N_STMTS; i++) {
        sqlite3_finalize(*stmt_at(cc, i));
        *stmt_at(cc, i) = NULL;
    }
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
    if (!(cc->dctx = ZSTD_createDCtx())) {
        catalog_capture_abort(cc);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    int rc = catalog_conn_acquire(c, &cc->db, err);
    if (rc)
        goto fail;
    if ((rc = catalog_exec(c, cc->db,
                           "DROP TABLE IF EXISTS temp.pending; DROP TABLE IF EXISTS temp.staged;"
                           "DROP TABLE IF EXISTS temp.replaced;"
                           "CREATE TEMP TABLE pending(tbl TEXT NOT NULL, key BLOB NOT NULL, "
                           "hash INTEGER NOT NULL, len INTEGER NOT NULL, deleted INTEGER NOT NULL,"
                           " PRIMARY KEY(tbl, key)) WITHOUT ROWID;"
                           "CREATE TEMP TABLE staged(tbl TEXT NOT NULL, lo BLOB NOT NULL, "
                           "n INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE(tbl, lo));"
                           "CREATE TEMP TABLE replaced(tbl TEXT PRIMARY KEY) WITHOUT ROWID",
                           err)))
        goto fail;
    for (size_t i = 0; i < N_STMTS && !rc; i++)
        rc = catalog_prepare(c, cc->db, STMTS[i].sql, stmt_at(cc, i), err);
    if (rc)
        goto fail;
    *out = cc;
    return 0;
fail:
    catalog_capture_abort(cc);
    return rc;
}

static void bind_key(sqlite3_stmt *st, int i, const char *key, size_t n)
{
    sqlite3_bind_blob(st, i, n ? key : "", (int)n, SQLITE_STATIC);
}

/* Where table's committed state is read from (cc->mu held): the staged chunks of a table a builder
 * replaced, the main chunks of its tid, or nothing (*tid 0, not staged). */
static int state_source(struct catalog_capture *cc, const char *table, bool *staged,
                        sqlite3_int64 *tid)
{
    *staged = false;
    *tid = 0;
    sqlite3_stmt *st = cc->is_replaced;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    if (s == SQLITE_ROW) {
        *staged = true;
        return 0;
    }
    if (s != SQLITE_DONE)
        return catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
    if (cc->replace)
        return 0; /* a rebuild: what it did not replace is empty */
    st = cc->find_tid;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, cc->env, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
    s = sqlite3_step(st);
    if (s == SQLITE_ROW)
        *tid = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    if (s != SQLITE_ROW && s != SQLITE_DONE)
        return catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
    return 0;
}

/* Decode the chunk row st is on into c, with its lo into lo (cc->mu held). */
static int chunk_from_row(struct catalog_capture *cc, sqlite3_stmt *st, struct buf *lo,
                          struct state_chunk *c)
{
    const void *l = sqlite3_column_blob(st, 0);
    int ln = sqlite3_column_bytes(st, 0);
    sqlite3_int64 n = sqlite3_column_int64(st, 1);
    const void *d = sqlite3_column_blob(st, 2);
    int dn = sqlite3_column_bytes(st, 2);
    buf_reset(lo);
    int rc = buf_add(lo, l ? l : "", (size_t)ln);
    if (rc)
        return rc;
    rc = n < 0 || !d ? -EIO : state_chunk_decode(cc->dctx, d, (size_t)dn, (uint64_t)n, c);
    if (!rc && c->n) { /* a chunk's keys are at or above its lo */
        size_t kn;
        const char *k = state_chunk_key(c, 0, &kn);
        if (state_key_order(k, kn, lo->data ? lo->data : "", lo->len) < 0)
            rc = -EIO;
    }
    if (rc == -EIO)
        rc = catalog_fail(cc->cat, NULL, SQLITE_CORRUPT, "a table's capture state is unreadable",
                          &cc->err);
    if (rc)
        state_chunk_release(c);
    return rc;
}

/* The chunk of table's state that holds key (at_or_after false) or the first chunk after lo key
 * (at_or_after true); *have false when there is none. cc->mu held. */
static int chunk_fetch(struct catalog_capture *cc, const char *table, const char *key, size_t kn,
                       bool after, struct buf *lo, struct state_chunk *c, bool *have)
{
    bool staged;
    sqlite3_int64 tid;
    *have = false;
    int rc = state_source(cc, table, &staged, &tid);
    if (rc || (!staged && !tid))
        return rc;
    sqlite3_stmt *st = staged ? (after ? cc->next_staged : cc->chunk_at_staged)
                              : (after ? cc->next_main : cc->chunk_at_main);
    sqlite3_reset(st);
    if (staged)
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, tid);
    bind_key(st, 2, key, kn);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        rc = chunk_from_row(cc, st, lo, c);
        *have = rc == 0;
    } else if (s != SQLITE_DONE) {
        rc = catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
    }
    sqlite3_reset(st);
    return rc;
}

int catalog_capture_get(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t *hash, uint64_t *len, bool *found)
{
    int rc = 0;
    *found = false;
    *hash = 0;
    pthread_mutex_lock(&cc->mu);
    sqlite3_stmt *st = cc->get_pending;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, key, key_len);
    int s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        if (!sqlite3_column_int(st, 2)) {
            *hash = (uint64_t)sqlite3_column_int64(st, 0);
            *len = (uint64_t)sqlite3_column_int64(st, 1);
            *found = true;
        }
        sqlite3_reset(st);
        goto out;
    }
    sqlite3_reset(st);
    if (s != SQLITE_DONE) {
        rc = catalog_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
        goto out;
    }
    struct buf lo = BUF_INIT;
    struct state_chunk c;
    bool have;
    rc = chunk_fetch(cc, table, key, key_len, false, &lo, &c, &have);
    if (!rc && have) {
        size_t i = state_chunk_find(&c, key, key_len, found);
        if (*found) {
            *hash = c.hash ? c.hash[i] : 0;
            *len = c.len[i];
        }
        state_chunk_release(&c);
    }
    buf_release(&lo);
out:
    pthread_mutex_unlock(&cc->mu);
    return rc;
}

int catalog_capture_put(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t hash, uint64_t len, bool deleted)
{
    int rc = 0;
    if (key_len == 0 || key_len > SEGMENT_KEY_CAP || memchr(key, '\0', key_len))
        return -EINVAL;
    pthread_mutex_lock(&cc->mu);
    sqlite3_stmt *st = cc->put;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    bind_key(st, 2, key, key_len);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)(deleted ? 0 : hash));
    sqlite3_bind_int64(st, 4, (sqlite3_int64)(deleted ? 0 : len));
    sqlite3_bind_int(st, 5, deleted ? 1 : 0);
    int s = sqlite3_step(st);
    if (s != SQLITE_DONE)
        rc = catalog_fail(cc->cat, cc->db, s, "writing the capture state", &cc->err);
    sqlite3_reset(st);
    pthread_mutex_unlock(&cc->mu);
    return rc;
}

/* ---- cursors: a table's state after commit, in key order ---- */

struct pend_row {
    char *key;
    size_t key_len;
    uint64_t hash, len;
    bool deleted;
};

struct catalog_cursor {
    struct catalog_capture *cc;
    char *table;
    struct state_chunk c;          /* the chunk being read (c.n == 0: fetch the next) */
    size_t ci;
    struct buf lo;           /* c's lo */
    bool chunks_done;
    struct pend_row *pend;   /* a batch of pending rows, in key order */
    size_t pn, pi;
    struct buf pend_last;    /* the last pending key fetched */
    bool pend_done;
    struct buf key;          /* what next returned */
};

int catalog_capture_cursor_open(struct catalog_capture *cc, const char *table,
                                struct catalog_cursor **out)
{
    struct catalog_cursor *cur = calloc(1, sizeof *cur);
    if (!cur || !(cur->table = strdup(table))) {
        free(cur);
        return -ENOMEM;
    }
    cur->cc = cc;
    *out = cur;
    return 0;
}

static void pend_free(struct catalog_cursor *cur)
{
    for (size_t i = 0; i < cur->pn; i++)
        free(cur->pend[i].key);
    free(cur->pend);
    cur->pend = NULL;
    cur->pn = cur->pi = 0;
}

void catalog_cursor_free(struct catalog_cursor *cur)
{
    if (!cur)
        return;
    state_chunk_release(&cur->c);
    pend_free(cur);
    buf_release(&cur->lo);
    buf_release(&cur->pend_last);
    buf_release(&cur->key);
    free(cur->table);
    free(cur);
}

/* Refill the batch of pending rows (cc->mu held). */
static int pend_fill(struct catalog_cursor *cur)
{
    struct catalog_capture *cc = cur->cc;
    pend_free(cur);
    sqlite3_stmt *st = cc->pending_after;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, cur->table, -1, SQLITE_STATIC);
    bind_key(st, 2, cur->pend_last.data, cur->pend_last.len);
    int s, rc = 0;
    size_t cap = 0;
    /* the first batch starts at the empty key: "key > ''" holds for every key (none is empty) */
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (cur->pn == cap) {
            cap = cap ? cap * 2 : 64;
            struct pend_row *v = realloc(cur->pend, cap * sizeof *v);
            if (!v) {
                rc = -ENOMEM;
                break;
            }
            cur->pend = v;
        }
        const void *k = sqlite3_column_blob(st, 0);
        size_t kn = (size_t)sqlite3_column_bytes(st, 0);
        struct pend_row *p = &cur->pend[cur->pn];
        if (!(p->key = malloc(kn + 1))) {
            rc = -ENOMEM;
            break;
        }
        memcpy(p->key, k ? k : "", kn);
        p->key[kn] = '\0';
        p->key_len = kn;
        p->hash = (uint64_t)sqlite3_column_int64(st, 1);
        p->len = (uint64_t)sqlite3_column_int64(st, 2);
        p->deleted = sqlite3_column_int(st, 3) != 0;
        cur->pn++;
    }
    if (!rc && s != SQLITE_DONE)
        rc = catalog_fail(cc->cat, cc->db, s, "reading the pending state", &cc->err);
    sqlite3_reset(st);
    if (!rc && cur->pn) {
        buf_reset(&cur->pend_last);
        rc = buf_add(&cur->pend_last, cur->pend[cur->pn - 1].key, cur->pend[cur->pn - 1].key_len);
    }
    if (!rc && cur->pn == 0)
        cur->pend_done = true;
    return rc;
}

int catalog_cursor_next(struct catalog_cursor *cur, const char **key, size_t *key_len,
                        uint64_t *hash, uint64_t *len)
{
    struct catalog_capture *cc = cur->cc;
    int rc = 0;
    for (;;) {
        if (!cur->chunks_done && cur->ci >= cur->c.n) {
            bool have = false;
            state_chunk_release(&cur->c);
            cur->ci = 0;
            pthread_mutex_lock(&cc->mu);
            if (!cur->lo.data) { /* the first chunk: the one at the empty key, else the first */
                rc = chunk_fetch(cc, cur->table, "", 0, false, &cur->lo, &cur->c, &have);
                if (!rc && !have)
                    rc = chunk_fetch(cc, cur->table, "", 0, true, &cur->lo, &cur->c, &have);
                if (!rc && !cur->lo.data)
                    rc = buf_add(&cur->lo, "", 0);
            } else {
                struct buf prev = cur->lo;
                cur->lo = (struct buf)BUF_INIT;
                rc = chunk_fetch(cc, cur->table, prev.data, prev.len, true, &cur->lo, &cur->c,
                                 &have);
                buf_release(&prev);
            }
            pthread_mutex_unlock(&cc->mu);
            if (rc)
                return rc;
            if (!have)
                cur->chunks_done = true;
            continue; /* an empty chunk is skipped */
        }
        if (!cur->pend_done && cur->pi >= cur->pn) {
            pthread_mutex_lock(&cc->mu);
            rc = pend_fill(cur);
            pthread_mutex_unlock(&cc->mu);
            if (rc)
                return rc;
            continue;
        }
        bool have_c = !cur->chunks_done && cur->ci < cur->c.n;
        bool have_p = !cur->pend_done && cur->pi < cur->pn;
        if (!have_c && !have_p)
            return 0;
        size_t cn = 0;
        const char *ck = have_c ? state_chunk_key(&cur->c, cur->ci, &cn) : NULL;
        const struct pend_row *p = have_p ? &cur->pend[cur->pi] : NULL;
        int cmp = !have_p ? -1 : !have_c ? 1 : state_key_order(ck, cn, p->key, p->key_len);
        buf_reset(&cur->key);
        if (cmp < 0) {
            rc = buf_add(&cur->key, ck, cn);
            *hash = cur->c.hash ? cur->c.hash[cur->ci] : 0;
            *len = cur->c.len[cur->ci];
            cur->ci++;
        } else {
            if (cmp == 0)
                cur->ci++; /* the pending row wins */
            cur->pi++;
            if (p->deleted)
                continue;
            rc = buf_add(&cur->key, p->key, p->key_len);
            *hash = p->hash;
            *len = p->len;
        }
        if (rc)
            return rc;
        *key = cur->key.data;
        *key_len = cur->key.len;
        return 1;
    }
}

/* ---- writing chunks: cutting a run of keys in order into rows ---- */

/* Where finished chunks go: temp.staged for a table (builders), or main.state_chunks for a tid
 * (commit). */
struct chunk_sink {
    struct catalog_capture *cc;
    const char *table;       /* staged */
    sqlite3_int64 tid;       /* main, when table is NULL */
    sqlite3_stmt *ins_main;  /* INSERT (or update) INTO main.state_chunks(tid, lo, n, data) */
    bool locked;             /* the caller holds cc->mu (commit) */
    const struct buf *watch; /* commit: the lo of the region's chunk (NULL: none)... */
    bool watch_written;      /* ...and whether a chunk was written at it (else it goes) */
    struct state_chunk_enc enc;    /* the chunk being filled; enc.lo its lo */
    bool started;
    struct buf packed;
};

static int sink_write(struct chunk_sink *k)
{
    struct catalog_capture *cc = k->cc;
    if (!k->enc.n)
        return 0;
    int rc = state_chunk_enc_finish(&k->enc, &k->packed);
    if (rc)
        return rc;
    if (!k->locked)
        pthread_mutex_lock(&cc->mu);
    sqlite3_stmt *st = k->table ? cc->staged_put : k->ins_main;
    sqlite3_reset(st);
    if (k->table)
        sqlite3_bind_text(st, 1, k->table, -1, SQLITE_STATIC);
    else
        sqlite3_bind_int64(st, 1, k->tid);
    bind_key(st, 2, k->enc.lo.data, k->enc.lo.len);
    if (k->watch && k->watch->len == k->enc.lo.len &&
        memcmp(k->watch->data, k->enc.lo.data, k->enc.lo.len) == 0)
        k->watch_written = true;
    sqlite3_bind_int64(st, 3, (sqlite3_int64)k->enc.n);
    sqlite3_bind_blob(st, 4, k->packed.data ? k->packed.data : "", (int)k->packed.len,
                      SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    if (s != SQLITE_DONE)
        rc = catalog_fail(cc->cat, cc->db, s, "writing the capture state", &cc->err);
    if (!k->locked)
        pthread_mutex_unlock(&cc->mu);
    state_chunk_enc_reset(&k->enc);
    return rc;
}

/* Start cutting at lo (the empty key, or a key that starts a chunk). */
static int sink_start(struct chunk_sink *k, const char *lo, size_t lo_len)
{
    buf_reset(&k->enc.lo);
    k->started = true;
    return buf_add(&k->enc.lo, lo, lo_len);
}

static int sink_add(struct chunk_sink *k, const char *key, size_t kn, uint64_t len, uint64_t hash)
{
    int rc;
    if (!k->started && (rc = sink_start(k, "", 0)))
        return rc;
    if (state_chunk_starts(key, kn) && state_key_order(key, kn, k->enc.lo.data, k->enc.lo.len) != 0) {
        if ((rc = sink_write(k)))
            return rc;
        buf_reset(&k->enc.lo);
        if ((rc = buf_add(&k->enc.lo, key, kn)))
            return rc;
    }
    return state_chunk_enc_add(&k->enc, key, kn, len, hash);
}

static void sink_release(struct chunk_sink *k)
{
    state_chunk_enc_release(&k->enc);
    buf_release(&k->packed);
}

/* ---- builders: a table's whole new state, in key order ---- */

struct catalog_state_builder {
    struct chunk_sink sink;
    char *table;
    struct buf last;
    bool any;
};

/* Run one statement with table bound as ?1 (cc->mu held). */
static int exec_tbl(struct catalog_capture *cc, const char *sql, const char *table)
{
    sqlite3_stmt *st = NULL;
    int rc = catalog_prepare(cc->cat, cc->db, sql, &st, &cc->err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    return s == SQLITE_DONE ? 0 : catalog_fail(cc->cat, cc->db, s, sql, &cc->err);
}

int catalog_capture_replace_begin(struct catalog_capture *cc, const char *table,
                                  struct catalog_state_builder **out)
{
    *out = NULL;
    struct catalog_state_builder *b = calloc(1, sizeof *b);
    if (!b || !(b->table = strdup(table))) {
        free(b);
        return -ENOMEM;
    }
    b->sink.cc = cc;
    b->sink.table = b->table;
    pthread_mutex_lock(&cc->mu);
    /* a builder of this table that was given up left its rows: drop them */
    int rc = exec_tbl(cc, "DELETE FROM temp.staged WHERE tbl = ?1", table);
    pthread_mutex_unlock(&cc->mu);
    if (rc) {
        free(b->table);
        free(b);
        return rc;
    }
    *out = b;
    return 0;
}

static void builder_free(struct catalog_state_builder *b)
{
    sink_release(&b->sink);
    buf_release(&b->last);
    free(b->table);
    free(b);
}

int catalog_state_builder_add(struct catalog_state_builder *b, const char *key, size_t key_len,
                              uint64_t hash, uint64_t len)
{
    if (key_len == 0 || key_len > SEGMENT_KEY_CAP || memchr(key, '\0', key_len) ||
        (b->any && state_key_order(b->last.data, b->last.len, key, key_len) >= 0))
        return -EINVAL;
    buf_reset(&b->last);
    int rc = buf_add(&b->last, key, key_len);
    b->any = true;
    return rc ? rc : sink_add(&b->sink, key, key_len, len, hash);
}

int catalog_state_builder_finish(struct catalog_state_builder *b)
{
    struct catalog_capture *cc = b->sink.cc;
    int rc = sink_write(&b->sink);
    if (!rc) {
        pthread_mutex_lock(&cc->mu);
        rc = exec_tbl(cc, "INSERT OR IGNORE INTO temp.replaced VALUES(?1)", b->table);
        if (!rc) /* the new state replaces what was put before it */
            rc = exec_tbl(cc, "DELETE FROM temp.pending WHERE tbl = ?1", b->table);
        pthread_mutex_unlock(&cc->mu);
    }
    if (rc)
        catalog_state_builder_abort(b);
    else
        builder_free(b);
    return rc;
}

void catalog_state_builder_abort(struct catalog_state_builder *b)
{
    if (!b)
        return;
    struct catalog_capture *cc = b->sink.cc;
    pthread_mutex_lock(&cc->mu);
    exec_tbl(cc, "DELETE FROM temp.staged WHERE tbl = ?1", b->table);
    pthread_mutex_unlock(&cc->mu);
    builder_free(b);
}

int catalog_capture_forget(struct catalog_capture *cc, const char *table)
{
    pthread_mutex_lock(&cc->mu);
    int rc = exec_tbl(cc, "DELETE FROM temp.pending WHERE tbl = ?1", table);
    if (!rc)
        rc = exec_tbl(cc, "DELETE FROM temp.staged WHERE tbl = ?1", table);
    if (!rc)
        rc = exec_tbl(cc, "DELETE FROM temp.replaced WHERE tbl = ?1", table);
    pthread_mutex_unlock(&cc->mu);
    return rc;
}

/* ---- commit ---- */

static int step_done(struct catalog *c, sqlite3 *db, sqlite3_stmt *st, const char *what,
                     struct dverr *err)
{
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    return s == SQLITE_DONE || s == SQLITE_ROW ? 0 : catalog_fail(c, db, s, what, err);
}

/* The commit's statements (inside its transaction, cc->mu held). */
struct apply {
    struct catalog_capture *cc;
    struct dverr *err;
    sqlite3_stmt *mk, *find, *clear_tid, *copy_staged, *chunk_at, *chunk_prev, *next_lo, *del,
        *ins, *pend;
};

static int tid_of(struct apply *a, const char *tbl, sqlite3_int64 *tid)
{
    struct catalog_capture *cc = a->cc;
    sqlite3_bind_text(a->mk, 1, cc->env, -1, SQLITE_STATIC);
    sqlite3_bind_text(a->mk, 2, tbl, -1, SQLITE_STATIC);
    int rc = step_done(cc->cat, cc->db, a->mk, "adding a state table", a->err);
    if (rc)
        return rc;
    sqlite3_bind_text(a->find, 1, cc->env, -1, SQLITE_STATIC);
    sqlite3_bind_text(a->find, 2, tbl, -1, SQLITE_STATIC);
    *tid = 0;
    int s = sqlite3_step(a->find);
    if (s == SQLITE_ROW)
        *tid = sqlite3_column_int64(a->find, 0);
    sqlite3_reset(a->find);
    return *tid ? 0 : catalog_fail(cc->cat, cc->db, s, "finding a state table", a->err);
}

/* A region of one table's chunks being rewritten: the rows it covers are deleted and its entries,
 * merged with the pending keys that fall in it, are cut again. */
static int delete_chunk(struct apply *a, sqlite3_int64 tid, const struct buf *lo)
{
    sqlite3_bind_int64(a->del, 1, tid);
    bind_key(a->del, 2, lo->data, lo->len);
    return step_done(a->cc->cat, a->cc->db, a->del, "rewriting the capture state", a->err);
}

/* Load the row st is on (bound, stepped by the caller): 1 with it, 0 when none. */
static int load_row(struct apply *a, sqlite3_stmt *st, int s, struct buf *lo, struct state_chunk *c)
{
    int rc = 0;
    if (s == SQLITE_ROW)
        rc = chunk_from_row(a->cc, st, lo, c);
    else if (s != SQLITE_DONE)
        rc = catalog_fail(a->cc->cat, a->cc->db, s, "reading the capture state", &a->cc->err);
    sqlite3_reset(st);
    if (rc) {
        dverr_set(a->err, rc, "%s", a->cc->err.code ? a->cc->err.msg : "capture state");
        return rc;
    }
    return s == SQLITE_ROW;
}

/* Apply table tbl's pending rows (temp.pending, in key order) to its chunks: each run of pending
 * keys that falls in one chunk (a region: the chunk's lo up to the next chunk's) rewrites that
 * chunk alone, cut again where its keys start chunks. When the chunk's first key went, lo no
 * longer starts a chunk and its keys belong to the chunk before it: that one joins the region. */
static int patch_table(struct apply *a, const char *tbl, sqlite3_int64 tid)
{
    struct catalog_capture *cc = a->cc;
    struct chunk_sink k = {.cc = cc, .tid = tid, .ins_main = a->ins, .locked = true};
    struct state_chunk c = {0}, prev = {0};
    struct buf lo = BUF_INIT, hi = BUF_INIT, plo = BUF_INIT;
    int rc = 0, s;
    sqlite3_reset(a->pend);
    sqlite3_bind_text(a->pend, 1, tbl, -1, SQLITE_STATIC);
    s = sqlite3_step(a->pend);
    while (!rc && s == SQLITE_ROW) {
        const char *pk = sqlite3_column_blob(a->pend, 0);
        size_t pkn = (size_t)sqlite3_column_bytes(a->pend, 0);
        /* the region: the chunk that holds the pending key (none: the table's first chunk, not
         * there yet), up to the next chunk's lo */
        sqlite3_bind_int64(a->chunk_at, 1, tid);
        bind_key(a->chunk_at, 2, pk ? pk : "", pkn);
        int have = load_row(a, a->chunk_at, sqlite3_step(a->chunk_at), &lo, &c);
        if (have < 0) {
            rc = have;
            break;
        }
        if (!have) {
            buf_reset(&lo);
            if ((rc = buf_add(&lo, "", 0)))
                break;
        }
        sqlite3_bind_int64(a->next_lo, 1, tid);
        bind_key(a->next_lo, 2, lo.data, lo.len);
        int ns = sqlite3_step(a->next_lo);
        bool bounded = ns == SQLITE_ROW;
        buf_reset(&hi);
        if (bounded) {
            const void *h = sqlite3_column_blob(a->next_lo, 0);
            rc = buf_add(&hi, h ? h : "", (size_t)sqlite3_column_bytes(a->next_lo, 0));
        }
        sqlite3_reset(a->next_lo);
        if (!rc && ns != SQLITE_ROW && ns != SQLITE_DONE)
            rc = catalog_fail(cc->cat, cc->db, ns, "reading the capture state", a->err);
        if (rc)
            break;
        k.watch = have ? &lo : NULL; /* the chunk's row is rewritten in place, or deleted below */
        k.watch_written = false;
        bool started = false;
        size_t ci = 0;
        for (;;) { /* the chunk's entries and the pending rows below hi, the pending row winning */
            bool have_p = s == SQLITE_ROW;
            const char *p = NULL;
            size_t pn = 0;
            if (have_p) {
                p = sqlite3_column_blob(a->pend, 0);
                pn = (size_t)sqlite3_column_bytes(a->pend, 0);
                p = p ? p : "";
                have_p = !bounded || state_key_order(p, pn, hi.data, hi.len) < 0;
            }
            bool have_c = ci < c.n;
            if (!have_p && !have_c)
                break;
            size_t kn = 0;
            const char *ck = have_c ? state_chunk_key(&c, ci, &kn) : NULL;
            int cmp = !have_p ? -1 : !have_c ? 1 : state_key_order(ck, kn, p, pn);
            const char *key = p;
            size_t key_n = pn;
            uint64_t len, hash;
            bool live = true;
            if (cmp < 0) {
                key = ck, key_n = kn, len = c.len[ci];
                hash = c.hash ? c.hash[ci] : 0;
                ci++;
            } else {
                ci += cmp == 0;
                hash = (uint64_t)sqlite3_column_int64(a->pend, 1);
                len = (uint64_t)sqlite3_column_int64(a->pend, 2);
                live = !sqlite3_column_int(a->pend, 3);
            }
            if (live && !started) {
                started = true;
                if (lo.len == 0 || state_key_order(key, key_n, lo.data, lo.len) == 0) {
                    rc = sink_start(&k, lo.data, lo.len);
                } else { /* lo's key went: the chunk before joins the region */
                    sqlite3_bind_int64(a->chunk_prev, 1, tid);
                    bind_key(a->chunk_prev, 2, lo.data, lo.len);
                    int hp = load_row(a, a->chunk_prev, sqlite3_step(a->chunk_prev), &plo, &prev);
                    if (hp < 0)
                        rc = hp;
                    else if (hp == 0)
                        rc = sink_start(&k, "", 0);
                    else if (!(rc = sink_start(&k, plo.data, plo.len))) /* rewritten in place */
                        for (size_t i = 0; i < prev.n && !rc; i++) {
                            size_t qn;
                            const char *q = state_chunk_key(&prev, i, &qn);
                            rc = sink_add(&k, q, qn, prev.len[i], prev.hash ? prev.hash[i] : 0);
                        }
                    state_chunk_release(&prev);
                }
            }
            if (!rc && live)
                rc = sink_add(&k, key, key_n, len, hash);
            if (!rc && cmp >= 0) {
                s = sqlite3_step(a->pend);
                if (s != SQLITE_ROW && s != SQLITE_DONE)
                    rc = catalog_fail(cc->cat, cc->db, s, "reading the pending state", a->err);
            }
            if (rc)
                break;
        }
        if (!rc)
            rc = sink_write(&k);
        if (!rc && have && !k.watch_written) /* lo starts no chunk now */
            rc = delete_chunk(a, tid, &lo);
        k.started = false;
        state_chunk_release(&c);
    }
    if (!rc && s != SQLITE_ROW && s != SQLITE_DONE)
        rc = catalog_fail(cc->cat, cc->db, s, "reading the pending state", a->err);
    sqlite3_reset(a->pend);
    if (rc && !a->err->code)
        dverr_set(a->err, rc, "%s", cc->err.code ? cc->err.msg : "writing the capture state");
    state_chunk_release(&c);
    state_chunk_release(&prev);
    sink_release(&k);
    buf_release(&lo);
    buf_release(&hi);
    buf_release(&plo);
    return rc;
}

/* Apply what the capture staged and put, inside the open transaction: a rebuild first drops env's
 * whole state; a replaced table's chunks become the staged ones; pending keys are merged into
 * their chunks. */
static int apply_state(struct catalog_capture *cc, struct dverr *err)
{
    struct catalog *c = cc->cat;
    sqlite3 *db = cc->db;
    struct apply a = {.cc = cc, .err = err};
    sqlite3_stmt *repl = NULL, *tbls = NULL, *clr_env = NULL;
    const struct {
        sqlite3_stmt **st;
        const char *sql;
    } stmts[] = {
        {&a.mk, "INSERT OR IGNORE INTO main.state_tables(env, tbl) VALUES(?1, ?2)"},
        {&a.find, "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2"},
        {&a.clear_tid, "DELETE FROM main.state_chunks WHERE tid = ?1"},
        {&a.copy_staged, "INSERT INTO main.state_chunks(tid, lo, n, data) SELECT ?1, lo, n, data "
                         "FROM temp.staged WHERE tbl = ?2 ORDER BY lo"},
        {&a.chunk_at, "SELECT lo, n, data FROM main.state_chunks WHERE tid = ?1 AND lo <= ?2 "
                      "ORDER BY lo DESC LIMIT 1"},
        {&a.chunk_prev, "SELECT lo, n, data FROM main.state_chunks WHERE tid = ?1 AND lo < ?2 "
                        "ORDER BY lo DESC LIMIT 1"},
        {&a.next_lo, "SELECT lo FROM main.state_chunks WHERE tid = ?1 AND lo > ?2 ORDER BY lo "
                     "LIMIT 1"},
        {&a.del, "DELETE FROM main.state_chunks WHERE tid = ?1 AND lo = ?2"},
        /* a chunk written again at its lo is updated in place: its row keeps its page */
        {&a.ins, "INSERT INTO main.state_chunks(tid, lo, n, data) VALUES(?1, ?2, ?3, ?4) "
                 "ON CONFLICT(tid, lo) DO UPDATE SET n = excluded.n, data = excluded.data"},
        {&a.pend, "SELECT key, hash, len, deleted FROM temp.pending WHERE tbl = ?1 ORDER BY key"},
        {&repl, "SELECT tbl FROM temp.replaced ORDER BY tbl"},
        {&tbls, "SELECT DISTINCT tbl FROM temp.pending ORDER BY tbl"},
        {&clr_env, "DELETE FROM main.state_chunks WHERE tid IN (SELECT tid FROM "
                   "main.state_tables WHERE env = ?1)"},
    };
    int rc = 0;
    for (size_t i = 0; i < sizeof stmts / sizeof *stmts && !rc; i++)
        rc = catalog_prepare(c, db, stmts[i].sql, stmts[i].st, err);
    if (rc)
        goto out;
    if (cc->replace) {
        sqlite3_bind_text(clr_env, 1, cc->env, -1, SQLITE_STATIC);
        if ((rc = step_done(c, db, clr_env, "clearing the capture state", err)))
            goto out;
    }
    int s;
    while (!rc && (s = sqlite3_step(repl)) == SQLITE_ROW) {
        const char *tbl = (const char *)sqlite3_column_text(repl, 0);
        sqlite3_int64 tid;
        if ((rc = tid_of(&a, tbl, &tid)))
            break;
        sqlite3_bind_int64(a.clear_tid, 1, tid);
        if ((rc = step_done(c, db, a.clear_tid, "replacing the capture state", err)))
            break;
        sqlite3_bind_int64(a.copy_staged, 1, tid);
        sqlite3_bind_text(a.copy_staged, 2, tbl, -1, SQLITE_STATIC);
        rc = step_done(c, db, a.copy_staged, "replacing the capture state", err);
    }
    if (!rc && s != SQLITE_DONE)
        rc = catalog_fail(c, db, s, "reading the staged state", err);
    while (!rc && (s = sqlite3_step(tbls)) == SQLITE_ROW) {
        char *tbl = strdup((const char *)sqlite3_column_text(tbls, 0));
        sqlite3_int64 tid;
        if (!tbl) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            break;
        }
        if (!(rc = tid_of(&a, tbl, &tid)))
            rc = patch_table(&a, tbl, tid);
        free(tbl);
    }
    if (!rc && s != SQLITE_DONE)
        rc = catalog_fail(c, db, s, "reading the pending state", err);
out:
    for (size_t i = 0; i < sizeof stmts / sizeof *stmts; i++)
        sqlite3_finalize(*stmts[i].st);
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
    pthread_mutex_lock(&cc->mu);
    capture_finalize(cc);
    if ((rc = catalog_exec(c, db, "BEGIN IMMEDIATE", err))) {
        pthread_mutex_unlock(&cc->mu);
        goto out;
    }
    rc = apply_state(cc, err);
    pthread_mutex_unlock(&cc->mu);
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
    else /* give the replaced chunks' pages back (best effort: the commit stands either way) */
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
        sqlite3_exec(cc->db,
                     "DROP TABLE IF EXISTS temp.pending; DROP TABLE IF EXISTS temp.staged; "
                     "DROP TABLE IF EXISTS temp.replaced",
                     NULL, NULL, NULL);
        catalog_conn_release(cc->cat, cc->db);
    }
    pthread_mutex_destroy(&cc->mu);
    ZSTD_freeDCtx(cc->dctx);
    free(cc->env);
    free(cc);
}
