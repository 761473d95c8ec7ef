/* catalog: SQLite index of points, delta segments and capture state (see catalog.h).
 * Every SQLite error is translated in one place (sqlite_to_errno); damage names the file and the
 * way out. Threading: the pool is guarded by c->mu; a connection is used by one thread at a time. */
#include "backend/catalog.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 8
#define ITER_CHUNK 4096

struct catalog {
    char *path;
    pthread_mutex_t mu;
    sqlite3 *pool[POOL_MAX]; /* guarded by mu */
    int n_pool;              /* guarded by mu */
};

#define CATALOG_FORMAT "2"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('format','" CATALOG_FORMAT "');"
    "CREATE TABLE IF NOT EXISTS points(env TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " label TEXT, taken_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " PRIMARY KEY(env, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS segments(env TEXT NOT NULL, point TEXT NOT NULL, tbl TEXT NOT NULL,"
    " id TEXT NOT NULL, PRIMARY KEY(env, point, tbl),"
    " FOREIGN KEY(env, point) REFERENCES points(env, name) ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS segments_id ON segments(id);"
    "CREATE TABLE IF NOT EXISTS state_point(env TEXT PRIMARY KEY, point TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS state_tables(tid INTEGER PRIMARY KEY, env TEXT NOT NULL,"
    " tbl TEXT NOT NULL, UNIQUE(env, tbl));"
    /* the largest table: one row per record, kept small (GUID keys packed to 16 bytes) */
    "CREATE TABLE IF NOT EXISTS state(tid INTEGER NOT NULL, key BLOB NOT NULL,"
    " hash INTEGER NOT NULL, len INTEGER NOT NULL, PRIMARY KEY(tid, key)) WITHOUT ROWID;";

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

static int sqlite_to_errno(int code)
{
    switch (code & 0xff) {
    case SQLITE_OK: case SQLITE_ROW: case SQLITE_DONE: return 0;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_READONLY: case SQLITE_PERM: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CANTOPEN: return -ENOENT;
    default: return -EIO; /* CORRUPT, NOTADB, IOERR, ... */
    }
}

static int db_fail(const struct catalog *c, sqlite3 *db, int code, const char *what, struct dverr *err)
{
    int base = code & 0xff;
    if (base == SQLITE_CORRUPT || base == SQLITE_NOTADB)
        return dverr_set(err, -EIO, "the catalog %s is damaged (%s: %s); rebuild it from the "
                         "repository with `dvsnap check --rebuild-catalog`", c->path, what,
                         db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
    return dverr_set(err, sqlite_to_errno(code), "catalog %s: %s: %s", c->path, what,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
}

static int conn_open(struct catalog *c, sqlite3 **out, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(c->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(c, db, rc, "open", err);
        sqlite3_close(db);
        return rc;
    }
    sqlite3_busy_timeout(db, 30000);
    rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
                          "PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=16777216;", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = db_fail(c, db, rc, "setup", err);
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

static int acquire(struct catalog *c, sqlite3 **db, struct dverr *err)
{
    pthread_mutex_lock(&c->mu);
    *db = c->n_pool ? c->pool[--c->n_pool] : NULL;
    pthread_mutex_unlock(&c->mu);
    return *db ? 0 : conn_open(c, db, err);
}

static void release(struct catalog *c, sqlite3 *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->n_pool < POOL_MAX) {
        c->pool[c->n_pool++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    sqlite3_close(db);
}

static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t n)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *t = sqlite3_column_text(st, 0);
        snprintf(out, n, "%s", t ? (const char *)t : "");
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_settings(struct catalog *c, char journal_mode[16], int *synchronous,
                     int *foreign_keys, struct dverr *err)
{
    sqlite3 *db = NULL;
    char v[16] = "";
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if ((rc = pragma_text(db, "PRAGMA journal_mode", journal_mode, 16)) != SQLITE_OK)
        goto fail;
    if ((rc = pragma_text(db, "PRAGMA synchronous", v, sizeof v)) != SQLITE_OK)
        goto fail;
    *synchronous = (int)strtol(v, NULL, 10);
    if ((rc = pragma_text(db, "PRAGMA foreign_keys", v, sizeof v)) != SQLITE_OK)
        goto fail;
    *foreign_keys = (int)strtol(v, NULL, 10);
    release(c, db);
    return 0;
fail:
    rc = db_fail(c, db, rc, "settings", err);
    release(c, db);
    return rc;
}

const char *catalog_path(const struct catalog *c)
{
    return c->path;
}

int catalog_open(const char *path, struct catalog **out, struct dverr *err)
{
    *out = NULL;
    struct catalog *c = calloc(1, sizeof *c);
    if (!c || !(c->path = strdup(path))) {
        free(c);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    sqlite3 *db = NULL;
    int rc = conn_open(c, &db, err);
    if (!rc) {
        /* an older format is dropped: the catalog is a cache of the repository */
        sqlite3_stmt *st = NULL;
        bool old = false;
        if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'format'", -1, &st, NULL) ==
                SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW)
            old = strcmp((const char *)sqlite3_column_text(st, 0), CATALOG_FORMAT) != 0;
        sqlite3_finalize(st);
        int s = old ? sqlite3_exec(db, "DROP TABLE IF EXISTS segments; DROP TABLE IF EXISTS points;"
                                       "DROP TABLE IF EXISTS state; DROP TABLE IF EXISTS state_point;"
                                       "DROP TABLE IF EXISTS state_tables; DROP TABLE meta;",
                                   NULL, NULL, NULL)
                    : SQLITE_OK;
        if (s == SQLITE_OK)
            s = sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
        if (s != SQLITE_OK)
            rc = db_fail(c, db, s, "schema", err);
    }
    if (rc) {
        sqlite3_close(db);
        catalog_free(c);
        return rc;
    }
    release(c, db);
    *out = c;
    return 0;
}

void catalog_free(struct catalog *c)
{
    if (!c)
        return;
    for (int i = 0; i < c->n_pool; i++)
        sqlite3_close(c->pool[i]);
    pthread_mutex_destroy(&c->mu);
    free(c->path);
    free(c);
}

static int exec(struct catalog *c, sqlite3 *db, const char *sql, struct dverr *err)
{
    int s = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return s == SQLITE_OK ? 0 : db_fail(c, db, s, sql, err);
}

static int prepare(struct catalog *c, sqlite3 *db, const char *sql, sqlite3_stmt **st,
                   struct dverr *err)
{
    int s = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    return s == SQLITE_OK ? 0 : db_fail(c, db, s, "prepare", err);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? strdup((const char *)t) : NULL;
}

int catalog_points(struct catalog *c, const char *env, struct point_summary **out, size_t *n,
                   struct dverr *err)
{
    *out = NULL;
    *n = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct point_summary *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if ((rc = prepare(c, db, "SELECT name, kind, label, taken_at, expires_at FROM points "
                             "WHERE env = ?1 ORDER BY name", &st, err)))
        goto out;
    sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 64;
            struct point_summary *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = dverr_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            v = nv;
        }
        struct point_summary *p = &v[cnt++];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(p->kind, sizeof p->kind, "%s", (const char *)sqlite3_column_text(st, 1));
        p->label = col_dup(st, 2);
        p->taken_at = (time_t)sqlite3_column_int64(st, 3);
        p->expires_at = (time_t)sqlite3_column_int64(st, 4);
    }
    if (s != SQLITE_DONE)
        rc = db_fail(c, db, s, "listing points", err);
out:
    sqlite3_finalize(st);
    release(c, db);
    if (rc) {
        repo_point_summaries_free(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

static int point_add_db(struct catalog *c, sqlite3 *db, const struct point *p, struct dverr *err)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare(c, db, "INSERT OR REPLACE INTO points VALUES(?1, ?2, ?3, ?4, ?5, ?6)", &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, p->env, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->kind ? p->kind : "system", -1, SQLITE_STATIC);
    if (p->label)
        sqlite3_bind_text(st, 4, p->label, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)p->taken_at);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)p->expires_at);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return db_fail(c, db, s, "adding a point", err);
    if ((rc = prepare(c, db, "INSERT OR REPLACE INTO segments VALUES(?1, ?2, ?3, ?4)", &st, err)))
        return rc;
    for (size_t i = 0; i < p->n_tables; i++) {
        if (!p->tables[i].delta)
            continue;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, p->env, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, p->tables[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, p->tables[i].delta, -1, SQLITE_STATIC);
        if ((s = sqlite3_step(st)) != SQLITE_DONE) {
            rc = db_fail(c, db, s, "adding a segment", err);
            break;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_point_add(struct catalog *c, const struct point *p, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = exec(c, db, "BEGIN IMMEDIATE", err))) {
        rc = point_add_db(c, db, p, err);
        if (!rc)
            rc = exec(c, db, "COMMIT", err);
        if (rc)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    release(c, db);
    return rc;
}

int catalog_point_del(struct catalog *c, const char *env, const char *name, struct dverr *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = prepare(c, db, "DELETE FROM points WHERE env = ?1 AND name = ?2", &st, err))) {
        sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE)
            rc = db_fail(c, db, s, "deleting a point", err);
    }
    sqlite3_finalize(st);
    release(c, db);
    return rc;
}

int catalog_envs(struct catalog *c, char ***names, size_t *n, struct dverr *err)
{
    *names = NULL;
    *n = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char **v = NULL;
    size_t cnt = 0, cap = 0;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if ((rc = prepare(c, db, "SELECT DISTINCT env FROM points ORDER BY env", &st, err)))
        goto out;
    int s;
    while ((s = sqlite3_step(st)) == SQLITE_ROW) {
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                rc = dverr_set(err, -ENOMEM, "out of memory");
                goto out;
            }
            v = nv;
        }
        if (!(v[cnt] = col_dup(st, 0))) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        cnt++;
    }
    if (s != SQLITE_DONE)
        rc = db_fail(c, db, s, "listing environments", err);
out:
    sqlite3_finalize(st);
    release(c, db);
    if (rc) {
        repo_names_free(v, cnt);
        return rc;
    }
    *names = v;
    *n = cnt;
    return 0;
}

int catalog_state_point(struct catalog *c, const char *env, char out[32], struct dverr *err)
{
    out[0] = '\0';
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = prepare(c, db, "SELECT point FROM state_point WHERE env = ?1", &st, err))) {
        sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            snprintf(out, 32, "%s", (const char *)sqlite3_column_text(st, 0));
        else if (s != SQLITE_DONE)
            rc = db_fail(c, db, s, "reading the state point", err);
    }
    sqlite3_finalize(st);
    release(c, db);
    return rc;
}

int catalog_clear(struct catalog *c, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = acquire(c, &db, err);
    if (rc)
        return rc;
    rc = exec(c, db, "BEGIN IMMEDIATE; DELETE FROM segments; DELETE FROM points; "
                     "DELETE FROM state; DELETE FROM state_tables; DELETE FROM state_point; COMMIT", err);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    release(c, db);
    return rc;
}

/* ---- capture ---- */

struct tid_cache {
    char *tbl;
    sqlite3_int64 tid;       /* 0: the table has no state yet */
};

struct catalog_capture {
    struct catalog *cat;
    sqlite3 *db;
    char *env;
    bool replace;
    pthread_mutex_t mu;      /* serialises every use of db and the fields below */
    sqlite3_stmt *get_pending, *get_main, *put, *find_tid;
    struct tid_cache *tids;
    size_t n_tids;
    struct dverr err;        /* first error of get/put (they have no err parameter) */
};

static int capture_stmts(struct catalog_capture *cc, struct dverr *err)
{
    struct catalog *c = cc->cat;
    int rc;
    if ((rc = prepare(c, cc->db, "SELECT hash, len, deleted FROM temp.pending WHERE tbl = ?1 AND "
                                 "key = ?2", &cc->get_pending, err)) ||
        (rc = prepare(c, cc->db, "SELECT hash, len FROM main.state WHERE tid = ?1 AND key = ?2",
                      &cc->get_main, err)) ||
        (rc = prepare(c, cc->db, "INSERT OR REPLACE INTO temp.pending VALUES(?1, ?2, ?3, ?4, ?5)",
                      &cc->put, err)) ||
        (rc = prepare(c, cc->db, "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2",
                      &cc->find_tid, err)))
        return rc;
    return 0;
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
    int rc = acquire(c, &cc->db, err);
    if (rc)
        goto fail;
    if ((rc = exec(c, cc->db, "DROP TABLE IF EXISTS temp.pending; "
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

/* The table's id in the state (0 when it has none); cc->mu held. */
static int tid_of(struct catalog_capture *cc, const char *table, sqlite3_int64 *tid)
{
    for (size_t i = 0; i < cc->n_tids; i++)
        if (strcmp(cc->tids[i].tbl, table) == 0) {
            *tid = cc->tids[i].tid;
            return 0;
        }
    *tid = 0;
    if (!cc->replace) {
        sqlite3_stmt *st = cc->find_tid;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, cc->env, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            *tid = sqlite3_column_int64(st, 0);
        sqlite3_reset(st);
        if (s != SQLITE_ROW && s != SQLITE_DONE)
            return db_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
    }
    struct tid_cache *v = realloc(cc->tids, (cc->n_tids + 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    cc->tids = v;
    if (!(v[cc->n_tids].tbl = strdup(table)))
        return -ENOMEM;
    v[cc->n_tids++].tid = *tid;
    return 0;
}

int catalog_capture_get(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t *hash, uint64_t *len, bool *found)
{
    int rc = 0;
    *found = false;
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
        rc = db_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
        goto out;
    }
    sqlite3_reset(st);
    sqlite3_int64 tid;
    if ((rc = tid_of(cc, table, &tid)) || tid == 0)
        goto out;
    st = cc->get_main;
    sqlite3_reset(st);
    sqlite3_bind_int64(st, 1, tid);
    sqlite3_bind_blob(st, 2, pk, (int)pn, SQLITE_STATIC);
    s = sqlite3_step(st);
    if (s == SQLITE_ROW) {
        *hash = (uint64_t)sqlite3_column_int64(st, 0);
        *len = (uint64_t)sqlite3_column_int64(st, 1);
        *found = true;
    } else if (s != SQLITE_DONE) {
        rc = db_fail(cc->cat, cc->db, s, "reading the capture state", &cc->err);
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
        rc = db_fail(cc->cat, cc->db, s, "writing the capture state", &cc->err);
    sqlite3_reset(st);
    pthread_mutex_unlock(&cc->mu);
    free(pk);
    return rc;
}

struct iter_row {
    char *key;
    uint64_t hash, len;
};

int catalog_capture_iterate(struct catalog_capture *cc, const char *table,
                            int (*fn)(void *ctx, const char *key, uint64_t hash, uint64_t len),
                            void *ctx)
{
    const char *sql =
        "SELECT key, hash, len FROM main.state s WHERE tid = ?1 AND key > ?3 AND "
        " NOT EXISTS (SELECT 1 FROM temp.pending p WHERE p.tbl = ?2 AND p.key = s.key) "
        "UNION ALL SELECT key, hash, len FROM temp.pending WHERE tbl = ?2 AND key > ?3 AND "
        " deleted = 0 ORDER BY 1 LIMIT ?4";
    struct iter_row *rows = calloc(ITER_CHUNK, sizeof *rows);
    struct buf last = BUF_INIT;
    sqlite3_stmt *st = NULL;
    sqlite3_int64 tid = 0;
    int rc = 0;
    if (!rows)
        return -ENOMEM;
    pthread_mutex_lock(&cc->mu);
    rc = tid_of(cc, table, &tid);
    if (!rc)
        rc = prepare(cc->cat, cc->db, sql, &st, &cc->err);
    pthread_mutex_unlock(&cc->mu);
    for (bool more = !rc; more;) {
        size_t n = 0;
        pthread_mutex_lock(&cc->mu);
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, tid);
        sqlite3_bind_text(st, 2, table, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, last.data ? last.data : "", (int)last.len, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, ITER_CHUNK);
        int s;
        while ((s = sqlite3_step(st)) == SQLITE_ROW) {
            const unsigned char *k = sqlite3_column_blob(st, 0);
            size_t kl = (size_t)sqlite3_column_bytes(st, 0);
            rows[n].key = malloc(kl + 37);
            if (!rows[n].key) {
                rc = -ENOMEM;
                break;
            }
            key_unpack(k ? k : (const unsigned char *)"", kl, rows[n].key);
            rows[n].hash = (uint64_t)sqlite3_column_int64(st, 1);
            rows[n].len = (uint64_t)sqlite3_column_int64(st, 2);
            n++;
            if (n == ITER_CHUNK) { /* remember the packed key for the next page */
                buf_reset(&last);
                buf_add(&last, k, kl);
            }
        }
        if (!rc && s != SQLITE_ROW && s != SQLITE_DONE)
            rc = db_fail(cc->cat, cc->db, s, "iterating the capture state", &cc->err);
        sqlite3_reset(st);
        pthread_mutex_unlock(&cc->mu);
        more = !rc && n == ITER_CHUNK;
        for (size_t i = 0; i < n; i++) {
            if (!rc)
                rc = fn(ctx, rows[i].key, rows[i].hash, rows[i].len);
            free(rows[i].key);
        }
        if (rc)
            more = false;
    }
    sqlite3_finalize(st);
    buf_release(&last);
    free(rows);
    return rc;
}

static int step_done(struct catalog *c, sqlite3 *db, sqlite3_stmt *st, const char *what,
                     struct dverr *err)
{
    int s = sqlite3_step(st);
    sqlite3_reset(st);
    return s == SQLITE_DONE || s == SQLITE_ROW ? 0 : db_fail(c, db, s, what, err);
}

/* Apply temp.pending to main.state inside the open transaction. */
static int apply_pending(struct catalog_capture *cc, struct dverr *err)
{
    struct catalog *c = cc->cat;
    sqlite3 *db = cc->db;
    sqlite3_stmt *rows = NULL, *mk = NULL, *find = NULL, *del = NULL, *ins = NULL, *clr = NULL;
    int rc;
    if ((rc = prepare(c, db, "SELECT tbl, key, hash, len, deleted FROM temp.pending "
                             "ORDER BY tbl, key", &rows, err)) ||
        (rc = prepare(c, db, "INSERT OR IGNORE INTO main.state_tables(env, tbl) VALUES(?1, ?2)",
                      &mk, err)) ||
        (rc = prepare(c, db, "SELECT tid FROM main.state_tables WHERE env = ?1 AND tbl = ?2",
                      &find, err)) ||
        (rc = prepare(c, db, "DELETE FROM main.state WHERE tid = ?1 AND key = ?2", &del, err)) ||
        (rc = prepare(c, db, "INSERT OR REPLACE INTO main.state VALUES(?1, ?2, ?3, ?4)", &ins,
                      err)) ||
        (rc = prepare(c, db, "DELETE FROM main.state WHERE tid IN (SELECT tid FROM "
                             "main.state_tables WHERE env = ?1)", &clr, err)))
        goto out;
    if (cc->replace) {
        sqlite3_bind_text(clr, 1, cc->env, -1, SQLITE_STATIC);
        if ((rc = step_done(c, db, clr, "clearing the capture state", err)))
            goto out;
    }
    char cur[1024] = "";
    sqlite3_int64 tid = 0;
    int s;
    while ((s = sqlite3_step(rows)) == SQLITE_ROW) {
        const char *tbl = (const char *)sqlite3_column_text(rows, 0);
        if (!tid || strcmp(tbl, cur) != 0) {
            snprintf(cur, sizeof cur, "%s", tbl);
            sqlite3_bind_text(mk, 1, cc->env, -1, SQLITE_STATIC);
            sqlite3_bind_text(mk, 2, cur, -1, SQLITE_STATIC);
            if ((rc = step_done(c, db, mk, "adding a state table", err)))
                goto out;
            sqlite3_bind_text(find, 1, cc->env, -1, SQLITE_STATIC);
            sqlite3_bind_text(find, 2, cur, -1, SQLITE_STATIC);
            if (sqlite3_step(find) != SQLITE_ROW) {
                sqlite3_reset(find);
                rc = db_fail(c, db, sqlite3_errcode(db), "finding a state table", err);
                goto out;
            }
            tid = sqlite3_column_int64(find, 0);
            sqlite3_reset(find);
        }
        sqlite3_stmt *st = sqlite3_column_int(rows, 4) ? del : ins;
        sqlite3_bind_int64(st, 1, tid);
        sqlite3_bind_value(st, 2, sqlite3_column_value(rows, 1));
        if (st == ins) {
            sqlite3_bind_int64(st, 3, sqlite3_column_int64(rows, 2));
            sqlite3_bind_int64(st, 4, sqlite3_column_int64(rows, 3));
        }
        if ((rc = step_done(c, db, st, "applying the capture state", err)))
            goto out;
    }
    if (s != SQLITE_DONE)
        rc = db_fail(c, db, s, "reading the pending state", err);
out:
    sqlite3_finalize(rows);
    sqlite3_finalize(mk);
    sqlite3_finalize(find);
    sqlite3_finalize(del);
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
    sqlite3_finalize(cc->get_pending);
    sqlite3_finalize(cc->get_main);
    sqlite3_finalize(cc->put);
    sqlite3_finalize(cc->find_tid);
    cc->get_pending = cc->get_main = cc->put = cc->find_tid = NULL;
    if ((rc = exec(c, db, "BEGIN IMMEDIATE", err)))
        goto out;
    rc = apply_pending(cc, err);
    if (!rc) {
        const char *sql = p ? "INSERT OR REPLACE INTO state_point VALUES(?1, ?2)"
                            : "DELETE FROM state_point WHERE env = ?1";
        if (!(rc = prepare(c, db, sql, &st, err))) {
            sqlite3_bind_text(st, 1, cc->env, -1, SQLITE_STATIC);
            if (p)
                sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
            rc = step_done(c, db, st, "recording the state point", err);
            sqlite3_finalize(st);
        }
    }
    if (!rc && p)
        rc = point_add_db(c, db, p, err);
    if (!rc)
        rc = exec(c, db, "COMMIT", err);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
    catalog_capture_abort(cc);
    return rc;
}

void catalog_capture_abort(struct catalog_capture *cc)
{
    if (!cc)
        return;
    sqlite3_finalize(cc->get_pending);
    sqlite3_finalize(cc->get_main);
    sqlite3_finalize(cc->put);
    sqlite3_finalize(cc->find_tid);
    if (cc->db) {
        sqlite3_exec(cc->db, "DROP TABLE IF EXISTS temp.pending", NULL, NULL, NULL);
        release(cc->cat, cc->db);
    }
    for (size_t i = 0; i < cc->n_tids; i++)
        free(cc->tids[i].tbl);
    free(cc->tids);
    pthread_mutex_destroy(&cc->mu);
    free(cc->env);
    free(cc);
}
