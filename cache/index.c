/* cache index: the SQLite index of the cache files (<dir>/index.db, WAL): one row per READY file
 * with its key, plain size, file size, SHA-256, last use and frame index (the compressed length
 * of every frame). A row is inserted only after its file is fsynced and renamed into place, so at
 * open cache_index_load trusts a row only when its file exists with the recorded size, and
 * removes temp files, files without a row and rows without a matching file.
 *
 * Limits: last_use orders the LRU at load; it is written with the row and not updated on reads.
 * A row that cannot be inserted only means the file is filled again after a restart.
 * Threading: cache_index_insert and cache_index_delete take c->db_mu (never with c->mu held);
 * cache_index_open, cache_index_load and cache_index_close run alone, inside cache_open and
 * cache_free. The only file of cache/ that includes sqlite3.h. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache_int.h"

static int sqlite_to_errno(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK: case SQLITE_DONE: case SQLITE_ROW: return 0;
    case SQLITE_BUSY: case SQLITE_LOCKED: return -EBUSY;
    case SQLITE_NOMEM: return -ENOMEM;
    case SQLITE_FULL: return -ENOSPC;
    case SQLITE_PERM: case SQLITE_READONLY: case SQLITE_AUTH: return -EACCES;
    case SQLITE_CANTOPEN: return -ENOENT;
    default: return -EIO;
    }
}

static int db_exec(struct cache *c, const char *sql, struct dverr *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        dverr_set(err, sqlite_to_errno(rc), "cache index: %s", msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return sqlite_to_errno(rc) ? sqlite_to_errno(rc) : -EIO;
    }
    return 0;
}

/* Open (creating 0600) and set up <dir>/index.db. A file there that is not a regular file of
 * ours is refused. On failure c->db may be set: cache_index_close closes it. */
int cache_index_open(struct cache *c, struct dverr *err)
{
    char path[PATH_MAX];
    struct stat sb;
    snprintf(path, sizeof path, "%s/index.db", c->dir);
    if (lstat(path, &sb) == 0) {
        if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid())
            return dverr_set(err, -EPERM, "cache index %s is not a file of ours: refused", path);
        if ((sb.st_mode & 077) && chmod(path, 0600) < 0)
            return dverr_set(err, -errno, "cache index %s: chmod: %s", path, strerror(errno));
    }
    int old_umask = umask(077);
    int rc = sqlite3_open_v2(path, &c->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX |
                                 SQLITE_OPEN_NOFOLLOW,
                             NULL);
    umask((mode_t)old_umask);
    if (rc != SQLITE_OK)
        return dverr_set(err, sqlite_to_errno(rc) ? sqlite_to_errno(rc) : -EIO,
                         "cache index %s: %s", path, sqlite3_errstr(rc));
    sqlite3_busy_timeout(c->db, 5000);
    return db_exec(c,
                   "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                   "CREATE TABLE IF NOT EXISTS files(name TEXT PRIMARY KEY, key TEXT NOT NULL,"
                   " size INTEGER NOT NULL, disk_bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,"
                   " last_use INTEGER NOT NULL, frames BLOB NOT NULL);",
                   err);
}

void cache_index_close(struct cache *c)
{
    if (c->db)
        sqlite3_close(c->db);
}

int cache_index_insert(struct cache *c, const struct entry *e, const uint32_t *frames, size_t n)
{
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&c->db_mu);
    int rc = sqlite3_prepare_v2(c->db,
                                "INSERT OR REPLACE INTO files(name,key,size,disk_bytes,sha256,"
                                "last_use,frames) VALUES(?,?,?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, e->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)e->size);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)e->disk_bytes);
        sqlite3_bind_text(st, 5, e->sha, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL));
        sqlite3_bind_blob(st, 7, frames, (int)(n * sizeof *frames), SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->db_mu);
    return sqlite_to_errno(rc);
}

void cache_index_delete(struct cache *c, const char *name)
{
    sqlite3_stmt *st = NULL;
    pthread_mutex_lock(&c->db_mu);
    if (sqlite3_prepare_v2(c->db, "DELETE FROM files WHERE name=?", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        sqlite3_step(st);
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&c->db_mu);
}

/* At open: remove temp files of an earlier process, load every row whose file is there with the
 * recorded size (the LRU in last_use order), drop the other rows and their files, and remove files
 * without a row. */
int cache_index_load(struct cache *c, struct dverr *err)
{
    char path[PATH_MAX];
    sqlite3_stmt *st = NULL;
    int rc = 0;

    /* remove temp files of an earlier process */
    DIR *d = opendir(c->files_dir);
    if (!d)
        return dverr_set(err, -errno, "cache: %s: %s", c->files_dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
            snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
            unlink(path);
        }
    }
    closedir(d);

    rc = sqlite3_prepare_v2(c->db,
                            "SELECT name,key,size,disk_bytes,sha256,frames FROM files "
                            "ORDER BY last_use",
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        return dverr_set(err, sqlite_to_errno(rc), "cache index: %s", sqlite3_errmsg(c->db));
    char **stale = NULL;
    size_t n_stale = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        const char *key = (const char *)sqlite3_column_text(st, 1);
        uint64_t size = (uint64_t)sqlite3_column_int64(st, 2);
        uint64_t disk = (uint64_t)sqlite3_column_int64(st, 3);
        const char *sha = (const char *)sqlite3_column_text(st, 4);
        const uint32_t *frames = sqlite3_column_blob(st, 5);
        size_t nf = (size_t)sqlite3_column_bytes(st, 5) / sizeof(uint32_t);
        struct stat sb;
        bool ok = name && key && sha && strlen(name) == 64 && strlen(sha) == 64;
        uint64_t sum = 0;
        for (size_t i = 0; ok && i < nf; i++)
            sum += frames[i];
        ok = ok && sum == disk && nf == (size + CACHE_FRAME - 1) / CACHE_FRAME;
        if (ok) {
            snprintf(path, sizeof path, "%s/%s.zst", c->files_dir, name);
            ok = stat(path, &sb) == 0 && (uint64_t)sb.st_size == disk;
        }
        if (ok && !cache_table_find(c, name)) {
            struct entry *e = cache_entry_new(c, key, name);
            if (!e) {
                rc = -ENOMEM;
                break;
            }
            e->size = size;
            for (size_t i = 0; i < nf; i++)
                cache_entry_add_frame(e, frames[i]);
            if (e->n_frames != nf) {
                cache_entry_free(e);
                rc = -ENOMEM;
                break;
            }
            memcpy(e->sha, sha, 65);
            e->state = ENTRY_READY;
            cache_table_add(c, e);
            cache_lru_touch(c, e);
            c->bytes += e->disk_bytes;
        } else if (name) {
            char **ns = realloc(stale, (n_stale + 1) * sizeof *ns);
            if (ns) {
                stale = ns;
                stale[n_stale] = strdup(name);
                if (stale[n_stale])
                    n_stale++;
            }
        }
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n_stale; i++) {
        cache_index_delete(c, stale[i]);
        snprintf(path, sizeof path, "%s/%s.zst", c->files_dir, stale[i]);
        unlink(path);
        free(stale[i]);
    }
    free(stale);
    if (rc == -ENOMEM)
        return dverr_set(err, -ENOMEM, "out of memory");

    /* files without a row */
    d = opendir(c->files_dir);
    if (d) {
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l != 68 || strcmp(de->d_name + 64, ".zst") != 0) {
                if (de->d_name[0] != '.') {
                    snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
                    unlink(path);
                }
                continue;
            }
            char name[65];
            memcpy(name, de->d_name, 64);
            name[64] = '\0';
            if (!cache_table_find(c, name)) {
                snprintf(path, sizeof path, "%s/%s", c->files_dir, de->d_name);
                unlink(path);
            }
        }
        closedir(d);
    }
    return 0;
}
