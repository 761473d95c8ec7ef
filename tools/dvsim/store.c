/* store: dvsim's SQLite database. One file holds every org's records as canonical lines:
 *   rec(rid, tid, id, ver, del, line)  tid = env*16 + table; unique (tid, id); index (tid, ver);
 *                                 id is the row's id, or for an elastic row in a partition the
 *                                 id and a hash of its partition (dvstore_row_id);
 *                                 del=1 rows are tombstones (line NULL). A rowid table: lines of
 *                                 1-2 KB would spill to overflow pages in a WITHOUT ROWID table.
 *   orgver(env, ver)              the per-org change-tracking version counter
 *   files(tid, id, col, name, mimetype, data)  file column contents
 *   envstate(env, runtime, sku)   runtime state and SKU changed through the admin API
 *   meta(k, v)                    "seeded" marker and seed parameters
 *   party_index(env, activityid, partyid)  which activityparty rows belong to each activity (so a
 *                                 write that replaces an activity's parties finds them)
 *   effects(env, plugin_runs, flow_runs)   the simulated business logic's counts (written in the
 *                                 transaction of the write that ran it, so a rolled-back change set
 *                                 counts nothing)
 * WAL mode; readers run concurrently, writers are serialised by dvsim's write_lock (and SQLite's
 * busy timeout). Connections come from a small pool (mutex-guarded stack); each is used by one
 * thread at a time. */
#include "tools/dvsim/dvsim.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POOL_MAX 64

struct store {
    char *path;
    pthread_mutex_t lock;      /* guards pool, n_pool */
    sqlite3 *pool[POOL_MAX];
    int n_pool;
};

static const char dvschema_sql[] =
    "CREATE TABLE IF NOT EXISTS rec(rid INTEGER PRIMARY KEY, tid INTEGER NOT NULL, id TEXT NOT NULL,"
    " ver INTEGER NOT NULL, del INTEGER NOT NULL DEFAULT 0, line BLOB);"
    "CREATE UNIQUE INDEX IF NOT EXISTS rec_key ON rec(tid, id);"
    "CREATE INDEX IF NOT EXISTS rec_ver ON rec(tid, ver);"
    "CREATE TABLE IF NOT EXISTS orgver(env INTEGER PRIMARY KEY, ver INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files(tid INTEGER, id TEXT, col TEXT, name TEXT, mimetype TEXT,"
    " data BLOB, PRIMARY KEY(tid, id, col));"
    "CREATE TABLE IF NOT EXISTS uploads(token TEXT PRIMARY KEY, tid INTEGER, id TEXT, col TEXT,"
    " name TEXT, received INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS upload_parts(token TEXT, off INTEGER, data BLOB NOT NULL,"
    " PRIMARY KEY(token, off));"
    "CREATE TABLE IF NOT EXISTS envstate(env INTEGER PRIMARY KEY, runtime TEXT, sku TEXT);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);"
    "CREATE TABLE IF NOT EXISTS party_index(env INTEGER NOT NULL, activityid TEXT NOT NULL,"
    " partyid TEXT NOT NULL, PRIMARY KEY(env, activityid, partyid)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS effects(env INTEGER PRIMARY KEY, plugin_runs INTEGER NOT NULL,"
    " flow_runs INTEGER NOT NULL);";

int dvstore_recreate(sqlite3 *db)
{
    int rc = sqlite3_exec(db, "DROP TABLE IF EXISTS rec; DROP TABLE IF EXISTS orgver; DROP TABLE IF EXISTS files;"
                              "DROP TABLE IF EXISTS envstate; DROP TABLE IF EXISTS meta;"
                              "DROP TABLE IF EXISTS party_index; DROP TABLE IF EXISTS effects;", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, dvschema_sql, NULL, NULL, NULL);
    return dvstore_errno(rc);
}

int dvstore_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_ROW: case SQLITE_DONE: return 0;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOTFOUND: return -ENOENT;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_CANTOPEN: return -EACCES;
    case SQLITE_CONSTRAINT: return -EEXIST;
    case SQLITE_TOOBIG: return -EFBIG;
    default: return -EIO;
    }
}

static sqlite3 *open_conn(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 30000);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;"
                     "PRAGMA temp_store=MEMORY;", NULL, NULL, NULL);
    return db;
}

int dvstore_open(const char *path, struct store **out, struct dverr *err)
{
    struct store *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->path = strdup(path);
    pthread_mutex_init(&s->lock, NULL);
    sqlite3 *db = open_conn(path);
    if (!db) {
        dvstore_free(s);
        return dverr_set(err, -EACCES, "cannot open database %s", path);
    }
    char *msg = NULL;
    sqlite3_exec(db, "PRAGMA page_size=8192", NULL, NULL, NULL); /* only takes effect on a new file */
    int rc = sqlite3_exec(db, dvschema_sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        dverr_set(err, dvstore_errno(rc), "database %s: %s", path, msg ? msg : "?");
        sqlite3_free(msg);
        sqlite3_close(db);
        dvstore_free(s);
        return -EIO;
    }
    s->pool[s->n_pool++] = db;
    *out = s;
    return 0;
}

void dvstore_free(struct store *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n_pool; i++)
        sqlite3_close(s->pool[i]);
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

sqlite3 *dvstore_get(struct store *s)
{
    pthread_mutex_lock(&s->lock);
    sqlite3 *db = s->n_pool ? s->pool[--s->n_pool] : NULL;
    pthread_mutex_unlock(&s->lock);
    return db ? db : open_conn(s->path);
}

void dvstore_put(struct store *s, sqlite3 *db)
{
    if (!db)
        return;
    pthread_mutex_lock(&s->lock);
    if (s->n_pool < POOL_MAX) {
        s->pool[s->n_pool++] = db;
        db = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (db)
        sqlite3_close(db);
}

int dvstore_is_seeded(struct store *s, bool *seeded)
{
    sqlite3 *db = dvstore_get(s);
    sqlite3_stmt *st = NULL;
    *seeded = false;
    int rc = sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k='seeded'", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        *seeded = true;
    sqlite3_finalize(st);
    dvstore_put(s, db);
    return rc == SQLITE_OK ? 0 : dvstore_errno(rc);
}

int dvstore_begin(sqlite3 *db)
{
    return dvstore_errno(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL));
}

int dvstore_commit(sqlite3 *db)
{
    return dvstore_errno(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL));
}

void dvstore_rollback(sqlite3 *db)
{
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

int dvstore_next_version(sqlite3 *db, int env, int64_t *ver)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "UPDATE orgver SET ver = ver + 1 WHERE env = ?1 RETURNING ver", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, env);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *ver = sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        } else {
            rc = SQLITE_NOTFOUND;
        }
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

void dvstore_row_id(const char *id, const char *partition, char out[DVSTORE_ID_MAX])
{
    if (!partition || !*partition) {
        snprintf(out, DVSTORE_ID_MAX, "%s", id);
        return;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)partition; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    snprintf(out, DVSTORE_ID_MAX, "%.40s:%016llx", id, (unsigned long long)h);
}

size_t dvstore_id_len(const char *stored_id)
{
    return strcspn(stored_id, ":");
}

int dvstore_put_record(sqlite3 *db, int tid, const char *id, int64_t ver, const char *line, size_t len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO rec(tid,id,ver,del,line) VALUES(?1,?2,?3,0,?4)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, ver);
        sqlite3_bind_blob(st, 4, line, (int)len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

int dvstore_delete_record(sqlite3 *db, int tid, const char *id, int64_t ver)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "UPDATE rec SET del=1, line=NULL, ver=?3 WHERE tid=?1 AND id=?2 AND del=0",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, ver);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        if (rc == SQLITE_OK && sqlite3_changes(db) == 0)
            rc = SQLITE_NOTFOUND;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_OK) {
        sqlite3_stmt *f = NULL;
        if (sqlite3_prepare_v2(db, "DELETE FROM files WHERE tid=?1 AND id=?2", -1, &f, NULL) == SQLITE_OK) {
            sqlite3_bind_int(f, 1, tid);
            sqlite3_bind_text(f, 2, id, -1, SQLITE_STATIC);
            sqlite3_step(f);
        }
        sqlite3_finalize(f);
    }
    return dvstore_errno(rc);
}

int dvstore_get_record(sqlite3 *db, int tid, const char *id, char **line, size_t *len)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT line FROM rec WHERE tid=?1 AND id=?2 AND del=0", -1, &st, NULL);
    *line = NULL;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            int n = sqlite3_column_bytes(st, 0);
            *line = malloc((size_t)n + 1);
            if (*line) {
                memcpy(*line, sqlite3_column_blob(st, 0), (size_t)n);
                (*line)[n] = '\0';
                *len = (size_t)n;
                rc = SQLITE_OK;
            } else {
                rc = SQLITE_NOMEM;
            }
        } else if (rc == SQLITE_DONE) {
            rc = SQLITE_NOTFOUND;
        }
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

int dvstore_meta_equals(sqlite3 *db, const char *k, const char *v)
{
    sqlite3_stmt *st = NULL;
    int eq = 0;
    if (db && sqlite3_prepare_v2(db, "SELECT v FROM meta WHERE k=?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, k, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            eq = strcmp((const char *)sqlite3_column_text(st, 0), v) == 0;
    }
    sqlite3_finalize(st);
    return eq;
}

int dvstore_effects_add(sqlite3 *db, int env, int plugin_runs, int flow_runs)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "INSERT INTO effects(env, plugin_runs, flow_runs) VALUES(?1, ?2, ?3)"
                                    " ON CONFLICT(env) DO UPDATE SET plugin_runs = plugin_runs + ?2,"
                                    " flow_runs = flow_runs + ?3", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, env);
        sqlite3_bind_int(st, 2, plugin_runs);
        sqlite3_bind_int(st, 3, flow_runs);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

int dvstore_effects_get(sqlite3 *db, int env, int64_t *plugin_runs, int64_t *flow_runs)
{
    sqlite3_stmt *st = NULL;
    *plugin_runs = *flow_runs = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT plugin_runs, flow_runs FROM effects WHERE env = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, env);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *plugin_runs = sqlite3_column_int64(st, 0);
            *flow_runs = sqlite3_column_int64(st, 1);
        }
        rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

int dvstore_party_link(sqlite3 *db, int env, const char *activity_id, const char *party_id, bool add)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, add ? "INSERT OR IGNORE INTO party_index VALUES(?1, ?2, ?3)"
                                        : "DELETE FROM party_index WHERE env = ?1 AND activityid = ?2"
                                          " AND partyid = ?3", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, env);
        sqlite3_bind_text(st, 2, activity_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, party_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

int dvstore_party_ids(sqlite3 *db, int env, const char *activity_id, char ***ids, size_t *n)
{
    sqlite3_stmt *st = NULL;
    *ids = NULL;
    *n = 0;
    int rc = sqlite3_prepare_v2(db, "SELECT partyid FROM party_index WHERE env = ?1 AND activityid = ?2"
                                    " ORDER BY partyid", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dvstore_errno(rc);
    sqlite3_bind_int(st, 1, env);
    sqlite3_bind_text(st, 2, activity_id, -1, SQLITE_STATIC);
    int err = 0;
    while (!err && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        char **grown = realloc(*ids, (*n + 1) * sizeof **ids);
        char *id = strdup((const char *)sqlite3_column_text(st, 0));
        if (!grown || !id) {
            free(id);
            if (grown)
                *ids = grown;
            err = -ENOMEM;
            break;
        }
        *ids = grown;
        (*ids)[(*n)++] = id;
    }
    sqlite3_finalize(st);
    if (!err && rc != SQLITE_DONE)
        err = dvstore_errno(rc);
    if (err) {
        for (size_t i = 0; i < *n; i++)
            free((*ids)[i]);
        free(*ids);
        *ids = NULL;
        *n = 0;
    }
    return err;
}
