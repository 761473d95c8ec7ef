/* catalog: SQLite index of points, delta segments and capture state (see catalog.h): the
 * connection pool, opening (schema and format), points, environments and the state point. The
 * capture state is in catalog_capture.c; what both share is in catalog_int.h.
 * Every SQLite error is translated in one place (sqlite_to_errno); damage names the file and the
 * way out. Threading: the pool is guarded by c->mu; a connection is used by one thread at a
 * time. */
#include "backend/repo/catalog.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/repo/catalog_int.h"

#define CATALOG_FORMAT "6" /* 5: points.anomaly; 6: the capture state in chunks */

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('format','" CATALOG_FORMAT "');"
    "CREATE TABLE IF NOT EXISTS points(env TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,"
    " label TEXT, taken_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,"
    " anomaly INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(env, name)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS segments(env TEXT NOT NULL, point TEXT NOT NULL, tbl TEXT NOT NULL,"
    " id TEXT NOT NULL, PRIMARY KEY(env, point, tbl),"
    " FOREIGN KEY(env, point) REFERENCES points(env, name) ON DELETE CASCADE) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS segments_id ON segments(id);"
    "CREATE TABLE IF NOT EXISTS state_point(env TEXT PRIMARY KEY, point TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS state_tables(tid INTEGER PRIMARY KEY, env TEXT NOT NULL,"
    " tbl TEXT NOT NULL, UNIQUE(env, tbl));"
    /* the largest part: a table's records' state in chunks of about 128 keys, each packed and
     * zstd-compressed (catalog_chunk.c), about 21 bytes a GUID-keyed record (29 with a hash) */
    "CREATE TABLE IF NOT EXISTS state_chunks(cid INTEGER PRIMARY KEY, tid INTEGER NOT NULL,"
    " lo BLOB NOT NULL, n INTEGER NOT NULL, data BLOB NOT NULL, UNIQUE(tid, lo));";

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

int catalog_fail(const struct catalog *c, sqlite3 *db, int code, const char *what,
                 struct dverr *err)
{
    int base = code & 0xff;
    if (base == SQLITE_CORRUPT || base == SQLITE_NOTADB)
        return dverr_set(err, -EIO, "the catalog %s is damaged (%s: %s); rebuild it from the "
                         "repository with `dvsnap check --rebuild-catalog`", c->path, what,
                         db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
    return dverr_set(err, sqlite_to_errno(code), "catalog %s: %s: %s", c->path, what,
                     db ? sqlite3_errmsg(db) : sqlite3_errstr(code));
}

/* The catalog's files are 0600: SQLite creates the database 0644 (less the umask) and its -wal
 * and -shm take the database file's mode when they are made, so the database is made private
 * right after the open, before the first write creates the others (an empty file is all that was
 * ever open to others). Only SQLite opens these files (rel_hygiene): chmod, not open. */
static void catalog_files_private(const char *path)
{
    char p[PATH_MAX];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        struct stat st;
        if (snprintf(p, sizeof p, "%s%s", path, suffix[i]) < (int)sizeof p && lstat(p, &st) == 0 &&
            S_ISREG(st.st_mode) && st.st_uid == geteuid() && (st.st_mode & 077))
            chmod(p, 0600);
    }
}

static int conn_open(struct catalog *c, sqlite3 **out, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(c->path, &db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        rc = catalog_fail(c, db, rc, "open", err);
        sqlite3_close(db);
        return rc;
    }
    catalog_files_private(c->path);
    sqlite3_busy_timeout(db, 30000);
    /* page_size and auto_vacuum take effect on a new file only (an older catalog gets them with
     * the VACUUM of its format upgrade): 16 KiB pages hold a dozen state chunks with little slack,
     * and the pages a commit frees are given back instead of leaving the file to grow */
    rc = sqlite3_exec(db, "PRAGMA page_size=16384; PRAGMA auto_vacuum=INCREMENTAL; "
                          "PRAGMA journal_mode=WAL; "
                          "PRAGMA synchronous=FULL; "
                          "PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=16777216;", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        rc = catalog_fail(c, db, rc, "setup", err);
        sqlite3_close(db);
        return rc;
    }
    *out = db;
    return 0;
}

int catalog_conn_acquire(struct catalog *c, sqlite3 **db, struct dverr *err)
{
    pthread_mutex_lock(&c->mu);
    *db = c->n_pool ? c->pool[--c->n_pool] : NULL;
    pthread_mutex_unlock(&c->mu);
    return *db ? 0 : conn_open(c, db, err);
}

void catalog_conn_release(struct catalog *c, sqlite3 *db)
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
    int rc = catalog_conn_acquire(c, &db, err);
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
    catalog_conn_release(c, db);
    return 0;
fail:
    rc = catalog_fail(c, db, rc, "settings", err);
    catalog_conn_release(c, db);
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
                                       "DROP TABLE IF EXISTS state;"
                                       "DROP TABLE IF EXISTS state_data;"
                                       "DROP TABLE IF EXISTS state_chunks;"
                                       "DROP TABLE IF EXISTS state_point;"
                                       "DROP TABLE IF EXISTS state_tables; DROP TABLE meta;",
                                   NULL, NULL, NULL)
                    : SQLITE_OK;
        /* the new page size needs the VACUUM outside WAL mode: best effort (another process may
         * hold the file open; the catalog then keeps its page size) */
        if (old && s == SQLITE_OK &&
            sqlite3_exec(db, "PRAGMA journal_mode=DELETE; PRAGMA page_size=16384;"
                             "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL, NULL, NULL) != SQLITE_OK)
            sqlite3_exec(db, "PRAGMA auto_vacuum=INCREMENTAL; VACUUM;", NULL, NULL, NULL);
        if (old && s == SQLITE_OK)
            s = sqlite3_exec(db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
        if (s == SQLITE_OK)
            s = sqlite3_exec(db, SCHEMA, NULL, NULL, NULL);
        if (s != SQLITE_OK)
            rc = catalog_fail(c, db, s, "schema", err);
    }
    if (rc) {
        sqlite3_close(db);
        catalog_free(c);
        return rc;
    }
    catalog_conn_release(c, db);
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

int catalog_exec(struct catalog *c, sqlite3 *db, const char *sql, struct dverr *err)
{
    int s = sqlite3_exec(db, sql, NULL, NULL, NULL);
    return s == SQLITE_OK ? 0 : catalog_fail(c, db, s, sql, err);
}

int catalog_prepare(struct catalog *c, sqlite3 *db, const char *sql, sqlite3_stmt **st,
                    struct dverr *err)
{
    int s = sqlite3_prepare_v2(db, sql, -1, st, NULL);
    return s == SQLITE_OK ? 0 : catalog_fail(c, db, s, "prepare", err);
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
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if ((rc = catalog_prepare(c, db, "SELECT name, kind, label, taken_at, expires_at, anomaly "
                                     "FROM points WHERE env = ?1 ORDER BY name", &st, err)))
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
        p->anomaly = sqlite3_column_int(st, 5) != 0;
    }
    if (s != SQLITE_DONE)
        rc = catalog_fail(c, db, s, "listing points", err);
out:
    sqlite3_finalize(st);
    catalog_conn_release(c, db);
    if (rc) {
        point_summaries_free(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int catalog_point_add_db(struct catalog *c, sqlite3 *db, const struct point *p,
                         struct dverr *err)
{
    sqlite3_stmt *st = NULL;
    int rc = catalog_prepare(c, db,
                             "INSERT OR REPLACE INTO points VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                             &st, err);
    if (rc)
        return rc;
    sqlite3_bind_text(st, 1, p->env, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, p->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, p->kind ? p->kind : "system", -1, SQLITE_STATIC);
    if (p->label)
        sqlite3_bind_text(st, 4, p->label, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, (sqlite3_int64)p->taken_at);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)p->expires_at);
    sqlite3_bind_int(st, 7, p->anomaly_json != NULL);
    int s = sqlite3_step(st);
    sqlite3_finalize(st);
    if (s != SQLITE_DONE)
        return catalog_fail(c, db, s, "adding a point", err);
    if ((rc = catalog_prepare(c, db, "INSERT OR REPLACE INTO segments VALUES(?1, ?2, ?3, ?4)", &st,
                              err)))
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
            rc = catalog_fail(c, db, s, "adding a segment", err);
            break;
        }
    }
    sqlite3_finalize(st);
    return rc;
}

int catalog_point_add(struct catalog *c, const struct point *p, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = catalog_exec(c, db, "BEGIN IMMEDIATE", err))) {
        rc = catalog_point_add_db(c, db, p, err);
        if (!rc)
            rc = catalog_exec(c, db, "COMMIT", err);
        if (rc)
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    catalog_conn_release(c, db);
    return rc;
}

int catalog_point_del(struct catalog *c, const char *env, const char *name, struct dverr *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = catalog_prepare(c, db, "DELETE FROM points WHERE env = ?1 AND name = ?2", &st,
                               err))) {
        sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE)
            rc = catalog_fail(c, db, s, "deleting a point", err);
    }
    sqlite3_finalize(st);
    catalog_conn_release(c, db);
    return rc;
}

int catalog_state_point(struct catalog *c, const char *env, char out[32], struct dverr *err)
{
    out[0] = '\0';
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = catalog_prepare(c, db, "SELECT point FROM state_point WHERE env = ?1", &st, err))) {
        sqlite3_bind_text(st, 1, env, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            snprintf(out, 32, "%s", (const char *)sqlite3_column_text(st, 0));
        else if (s != SQLITE_DONE)
            rc = catalog_fail(c, db, s, "reading the state point", err);
    }
    sqlite3_finalize(st);
    catalog_conn_release(c, db);
    return rc;
}

int catalog_meta_get(struct catalog *c, const char *key, char *out, size_t n, struct dverr *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    out[0] = '\0';
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = catalog_prepare(c, db, "SELECT value FROM meta WHERE key = ?1", &st, err))) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW)
            snprintf(out, n, "%s", (const char *)sqlite3_column_text(st, 0));
        else if (s != SQLITE_DONE)
            rc = catalog_fail(c, db, s, "reading the catalog's meta table", err);
    }
    sqlite3_finalize(st);
    catalog_conn_release(c, db);
    return rc;
}

int catalog_meta_put(struct catalog *c, const char *key, const char *value, struct dverr *err)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    if (!(rc = catalog_prepare(c, db, "INSERT OR REPLACE INTO meta VALUES(?1, ?2)", &st, err))) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        int s = sqlite3_step(st);
        if (s != SQLITE_DONE)
            rc = catalog_fail(c, db, s, "writing the catalog's meta table", err);
    }
    sqlite3_finalize(st);
    catalog_conn_release(c, db);
    return rc;
}

int catalog_vacuum(struct catalog *c, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    rc = catalog_exec(c, db, "PRAGMA wal_checkpoint(TRUNCATE); VACUUM; "
                             "PRAGMA wal_checkpoint(TRUNCATE)", err);
    catalog_conn_release(c, db);
    return rc;
}

int catalog_clear(struct catalog *c, struct dverr *err)
{
    sqlite3 *db = NULL;
    int rc = catalog_conn_acquire(c, &db, err);
    if (rc)
        return rc;
    rc = catalog_exec(c, db, "BEGIN IMMEDIATE; DELETE FROM segments; DELETE FROM points; "
                             "DELETE FROM state_chunks; DELETE FROM state_tables; "
                             "DELETE FROM state_point; COMMIT", err);
    if (rc)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    catalog_conn_release(c, db);
    return rc;
}
