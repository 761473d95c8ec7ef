/* catalog: the repository's local SQLite index (docs/architecture.md section 3): restore points,
 * the delta segment of every point's tables, and the capture state (env, table, key -> length of
 * the record's current line, and its hash where the capture keeps one) with the point it
 * corresponds to. The state is kept in chunks of about 128 keys (one zstd row each; about 21
 * bytes a GUID-keyed record with the rows' overhead, 29 with a hash, 23 once heavy churn has left
 * pages partly filled), cut where the keys say (the same chunks for the same keys whatever the
 * history), so a pass that changes a few keys reads and rewrites a few chunks. It is a cache:
 * every row can be rebuilt from the repository's objects (repo_rebuild_catalog).
 *
 * SQLite in WAL mode, synchronous=FULL, foreign_keys=ON, busy_timeout 30 s. Connections come from
 * a small pool, so each is used by one thread at a time. A capture keeps its pending state in a
 * TEMP table of its own connection (no write lock is held while it runs), applied in one short
 * transaction by catalog_capture_commit. Damage (SQLITE_CORRUPT, SQLITE_NOTADB) gives -EIO with a
 * message that says how to rebuild. No code but SQLite opens the catalog file.
 * Threading: struct catalog is thread-safe; a catalog_capture is serialised by its own mutex. */
#ifndef DVSNAP_CATALOG_H
#define DVSNAP_CATALOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/repo/point.h"
#include "backend/base/util.h"

struct catalog;
int catalog_open(const char *path, struct catalog **out, struct dverr *err);
void catalog_free(struct catalog *c); /* accepts NULL; closes every pooled connection */
const char *catalog_path(const struct catalog *c);

/* Points of env, oldest first (names sort by time). */
int catalog_points(struct catalog *c, const char *env, struct point_summary **out, size_t *n,
                   struct dverr *err);
/* Insert or replace p's row and its delta-segment rows. */
int catalog_point_add(struct catalog *c, const struct point *p, struct dverr *err);
int catalog_point_del(struct catalog *c, const char *env, const char *name, struct dverr *err);
/* The point the capture state of env corresponds to ("" when none). */
int catalog_state_point(struct catalog *c, const char *env, char out[32], struct dverr *err);
/* The settings a catalog connection really runs with (read back with PRAGMA, for tests and
 * `dvsnap check`): journal_mode ("wal"), synchronous (2 = FULL), foreign_keys (1 = on). */
int catalog_settings(struct catalog *c, char journal_mode[16], int *synchronous,
                     int *foreign_keys, struct dverr *err);
/* Rewrite the database without its free pages, and empty the WAL: after an erasure, so no
 * deleted row's bytes stay in the file. */
int catalog_vacuum(struct catalog *c, struct dverr *err);
/* A small value of the catalog's own (the meta table), "" when absent; and setting it. */
int catalog_meta_get(struct catalog *c, const char *key, char *out, size_t n, struct dverr *err);
int catalog_meta_put(struct catalog *c, const char *key, const char *value, struct dverr *err);
/* Forget every row (before a rebuild). */
int catalog_clear(struct catalog *c, struct dverr *err);

struct catalog_capture;
/* replace: the commit replaces env's whole state with what was put or built (a rebuild); else it
 * applies them over the current state. */
int catalog_capture_begin(struct catalog *c, const char *env, bool replace,
                          struct catalog_capture **out, struct dverr *err);
/* hash 0 means none is kept for the key (found may still be true). Reads one chunk. */
int catalog_capture_get(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t *hash, uint64_t *len, bool *found);
/* A key's new state, applied at commit (deleted: the key goes). Keys hold no NUL. */
int catalog_capture_put(struct catalog_capture *cc, const char *table, const char *key,
                        size_t key_len, uint64_t hash, uint64_t len, bool deleted);
/* Keys of table in the state as it would be after commit, in key order (bytes, then shorter
 * first: the segments' order), one chunk in memory at a time: next gives 1 with the next key
 * (valid until the next call), 0 at the end, -errno. Puts made while it runs are seen when their
 * key is still ahead. */
struct catalog_cursor;
int catalog_capture_cursor_open(struct catalog_capture *cc, const char *table,
                                struct catalog_cursor **out);
int catalog_cursor_next(struct catalog_cursor *cur, const char **key, size_t *key_len,
                        uint64_t *hash, uint64_t *len);
void catalog_cursor_free(struct catalog_cursor *cur); /* accepts NULL */
/* A table's whole new state, given in strictly increasing key order (a full read, a rebuild):
 * chunked as it comes into the capture's TEMP tables, so memory does not grow with the table. It
 * replaces the table's state at commit (and any put made before finish); reads see it once
 * finished. abort leaves the state as it was. One builder per table at a time. */
struct catalog_state_builder;
int catalog_capture_replace_begin(struct catalog_capture *cc, const char *table,
                                  struct catalog_state_builder **out);
int catalog_state_builder_add(struct catalog_state_builder *b, const char *key, size_t key_len,
                              uint64_t hash, uint64_t len);
int catalog_state_builder_finish(struct catalog_state_builder *b); /* frees b */
void catalog_state_builder_abort(struct catalog_state_builder *b); /* accepts NULL; frees b */
/* Forget what this capture put or built for table (a table whose read failed keeps its state). */
int catalog_capture_forget(struct catalog_capture *cc, const char *table);
/* Apply the state, add p (may be NULL: state only) and record it as env's state point. Frees cc.
 * Its cost is the chunks the puts fall in, plus the staged tables. */
int catalog_capture_commit(struct catalog_capture *cc, const struct point *p, struct dverr *err);
void catalog_capture_abort(struct catalog_capture *cc); /* accepts NULL */

#endif
