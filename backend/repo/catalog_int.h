/* catalog_int: internals of the catalog (catalog.h) shared by catalog.c (connection pool, schema,
 * points) and catalog_capture.c (the capture state): struct catalog, the pool's connections, the
 * SQLite helpers that name the catalog in their errors, and adding a point inside an open
 * transaction. Not part of the contract; only these two files include it.
 * Threading: struct catalog is thread-safe (the pool under c->mu); a connection taken from the
 * pool belongs to the taker until it gives it back. */
#ifndef DVSNAP_CATALOG_INT_H
#define DVSNAP_CATALOG_INT_H

#include <pthread.h>
#include <sqlite3.h>

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

#endif
