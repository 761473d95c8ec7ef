/* repo: the backup repository (docs/architecture.md section 3): record-level segments, restore-point
 * manifests, content-addressed blobs, and the local SQLite catalog.
 *
 * Object layout in the store (objstore.h):
 *   config                                 repository id, format version, encryption
 *   keys/<id>                              key objects (encrypted repositories; keys.h)
 *   objects/<2 hex>/<id>                   segments and blobs; the id is the SHA-256 of the bytes,
 *                                          or in an encrypted repository their HMAC-SHA-256
 *   points/<env>/<YYYY-MM-DDTHHMMSSZ>.json restore-point manifests; a point exists iff this exists
 *   envs/<env>.json                        the environment as the admin API last described it
 *   envs/<env>/<time>-<tag>.json           the same as versions, in an append-only repository
 * Objects are immutable and written (durably) before the manifest that names them.
 *
 * Append-only and object lock (issue 16; config append_only, object_lock): repo_open wraps the
 * store so that a capture only creates objects (objstore_append_only), repo_open_prune opens it
 * with the prune credentials for the commands that delete, a commit locks what its point names
 * until its expires_at (objstore retain), and prune keeps what the store refuses to delete.
 *
 * Encryption (issue 16; crypt.h): a repository created by repo_init with encrypt set (format 2)
 * stores every segment, blob, manifest and environment document sealed with AES-256-GCM under its
 * master key, which key objects hold wrapped by passphrases; object names are keyed. repo_open
 * asks keys.h for the passphrase and refuses a wrong one at once. An unencrypted repository
 * (format 1) is opened as before, but not when a passphrase is configured: a store whose config
 * was swapped for an unencrypted one must not be believed. The config, the key objects and the
 * leases stay in clear (they hold no data of the tenant).
 *
 * A segment holds entries (op, key, line) sorted by key bytes, in independent zstd frames of about
 * 1 MiB with an index, so a table at a point is a k-way merge of its segment chain (newest wins,
 * deletes drop the record) streamed straight into the table-file format (record.h).
 *
 * The catalog (SQLite, WAL, synchronous=FULL) indexes points and segments and holds the capture
 * state: for every environment, table and record key, the length of the record's current line,
 * and its hash for tables without a delta link (a full read of any other table takes the hashes
 * from the previous point's segments), in chunks of about 128 keys, so a pass reads and writes
 * what it changes. It is a cache of the repository: repo_rebuild_catalog recreates it from the
 * objects.
 *
 * Threading: struct repo is thread-safe (each thread gets its own SQLite connection and zstd
 * contexts); readers and writers may run in parallel. One capture writer per environment
 * (repo_capture_begin takes a lock; -EBUSY when another writer holds it). */
#ifndef DVSNAP_REPO_H
#define DVSNAP_REPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/repo/crypt.h"
#include "backend/repo/keys.h"
#include "backend/repo/point.h"
#include "backend/repo/segment.h"
#include "backend/objstore/objstore.h"
#include "backend/base/util.h"

struct repo;

/* Create a new repository at cfg->repository (-EEXIST when one exists): encrypted with a new
 * master key and one key object for the configured passphrase (keys.h), or, with encrypt false,
 * unencrypted (refused with -EINVAL while a passphrase is configured). */
int repo_init(const struct config *cfg, bool encrypt, struct dverr *err);
/* Open an existing repository (-ENOENT with a hint to run `dvsnap init` when there is none).
 * The catalog is <repository>/catalog.db for a directory repository, else under cfg->cache_dir. */
int repo_open(const struct config *cfg, struct repo **out, struct dverr *err);
/* Open for prune, forget, erase and key removal: the store with the prune credentials
 * (objstore_open_prune: refused, -EPERM with the key to set, for an append-only remote repository
 * without them) and without the append-only guard. */
int repo_open_prune(const struct config *cfg, struct repo **out, struct dverr *err);
/* Same over a given store (tests, fault injection), encrypted with crypt or unencrypted (NULL).
 * Takes ownership of store and crypt. */
int repo_open_store(struct objstore *store, struct crypt *crypt, const char *catalog_path,
                    struct repo **out, struct dverr *err);
void repo_free(struct repo *r); /* accepts NULL */
struct objstore *repo_store(struct repo *r);

/* ---- restore points (the types are in point.h) ---- */
/* Environments that have points or an envs/ document, sorted. */
int repo_envs(struct repo *r, char ***names, size_t *n, struct dverr *err);
/* The points of env, oldest first. Cheap (catalog, refreshed from the store's listing); held is
 * left false: repo_points_mark_held sets it, for the callers that show it. */
int repo_points(struct repo *r, const char *env, struct point_summary **out, size_t *n,
                struct dverr *err);
/* Set held in the n points v of env (sorted by name, as repo_points gives them) from one listing
 * of holds/<env>/. 0 or -errno. */
int repo_points_mark_held(struct repo *r, const char *env, struct point_summary *v, size_t n,
                          struct dverr *err);
/* Load a point's manifest (-ENOENT when absent, -EIO when damaged). */
int repo_point_load(struct repo *r, const char *env, const char *name, struct point **out,
                    struct dverr *err);
/* The same; with REPO_LOAD_FILES_LATER, a point whose file list is in chunks (format 3) is loaded
 * without reading them: files_later set, files empty (what the mount does for everything but
 * files/: opening a table of a 200,000-file point reads 3 objects, not 400). */
#define REPO_LOAD_FILES_LATER 1u
int repo_point_load_flags(struct repo *r, const char *env, const char *name, unsigned flags,
                          struct point **out, struct dverr *err);
/* Chunk k of a point loaded with REPO_LOAD_FILES_LATER (count files: files_chunk_counts[k]) as a
 * point of its own whose files are the chunk's (point_free frees it); -EIO when damaged. */
int repo_files_chunk_load(struct repo *r, const struct point *p, size_t k, size_t count,
                          struct point **out, struct dverr *err);
/* The environment document (envs/<env>.json), -ENOENT when none. */
int repo_env_doc(struct repo *r, const char *env, struct buf *out, struct dverr *err);
int repo_env_doc_put(struct repo *r, const char *env, const char *json, struct dverr *err);

/* ---- holds (point.h: struct point_hold; issue 17) ---- */
/* Place (or replace) a hold on an existing point (-ENOENT when there is no such point). */
int repo_hold_put(struct repo *r, const char *env, const struct point_hold *h, struct dverr *err);
/* The hold on point (-ENOENT when none, -EIO when its document is damaged). */
int repo_hold_get(struct repo *r, const char *env, const char *point, struct point_hold *out,
                  struct dverr *err);
/* Release (-ENOENT when the point is not held). */
int repo_hold_del(struct repo *r, const char *env, const char *point, struct dverr *err);
/* Every hold of env, active or expired, sorted by point (a damaged document is a hold with no
 * end whose reason says so). */
int repo_holds(struct repo *r, const char *env, struct point_hold **out, size_t *n,
               struct dverr *err);

/* ---- reading tables ---- */
struct table_reader;
/* Stream the table file (tables/<t>.json) of table at point p; exactly pt->bytes bytes. */
int table_reader_open(struct repo *r, const struct point *p, const char *table,
                      struct table_reader **out, struct dverr *err);
/* Stream changes/<t>.json: one line per entry of the point's delta, sorted by key:
 *   {"op":"create","id":"<key>","record":<line>}  {"op":"update",...}  {"op":"delete","id":"<key>"}
 * framed like a table file; exactly pt->changes_bytes bytes. */
int changes_reader_open(struct repo *r, const struct point *p, const char *table,
                        struct table_reader **out, struct dverr *err);
/* Next bytes (0 at the end, -EIO on a damaged object with detail in err). */
ssize_t table_reader_read(struct table_reader *tr, void *buf, size_t n, struct dverr *err);
void table_reader_free(struct table_reader *tr);
/* The merge of pt's chain (segment.h), records in key order, pulled one at a time (a capture's
 * full read walks it beside its own records). */
int repo_table_merge_open(struct repo *r, const struct point_table *pt, struct segment_merge **out,
                          struct dverr *err);
/* Every record of table at p in key order (for restore and comparisons). fn's non-zero return
 * stops and is returned. */
int table_iterate(struct repo *r, const struct point *p, const char *table,
                  int (*fn)(void *ctx, const char *key, size_t key_len, const char *line,
                            size_t line_len),
                  void *ctx, struct dverr *err);

/* What the repository is, for people: "encrypted (...), opened with key ID" or "not encrypted". */
void repo_describe(struct repo *r, char *out, size_t n);
bool repo_encrypted(struct repo *r);

/* ---- keys of an encrypted repository (repo_keys.c; keys.h has the format) ---- */
/* The key objects, sorted by creation; current: the index of the one that opened r, or n. */
int repo_key_list(struct repo *r, struct key_info **out, size_t *n, size_t *current,
                  struct dverr *err);
/* Add a key object for pass; id receives its id. */
int repo_key_add(struct repo *r, const void *pass, size_t pass_len, char id[KEYS_ID_HEX + 1],
                 struct dverr *err);
/* Remove key id: refused (-EPERM) for the key that opened r and for the last key. */
int repo_key_remove(struct repo *r, const char *id, struct dverr *err);
/* Replace the key that opened r by one for pass: the new key object is written and opened again
 * before the old one is removed, so a crash at any point leaves a key that opens the repository
 * (the old passphrase's, the new one's, or both). id receives the new key's id. */
int repo_key_passwd(struct repo *r, const void *pass, size_t pass_len, char id[KEYS_ID_HEX + 1],
                    struct dverr *err);

/* ---- blobs (attachments, file columns, schema documents) ---- */
/* The id a blob of these bytes has in r (keyed in an encrypted repository): what a restore
 * compares a target's file with. The stream form returns NULL on out of memory. */
void repo_blob_id(struct repo *r, const void *data, size_t len, char id[65]);
struct crypt_hash *repo_blob_id_stream(struct repo *r); /* crypt.h: update, then finish */
int repo_blob_put(struct repo *r, const void *data, size_t len, char id[65], struct dverr *err);
/* The largest blob repo_blob_get reads (into memory): a capture keeps no larger file. */
#define REPO_BLOB_MAX ((uint64_t)2 << 30)
/* The blob's bytes, hash verified (-EIO when they do not match). */
int repo_blob_get(struct repo *r, const char *id, struct buf *out, struct dverr *err);

/* ---- writing (capture) ---- */
/* A segment writer whose temp files go under the repository's own temporary directory (the rest
 * of the writer's API is in segment.h). */
int segment_writer_new(struct repo *r, struct segment_writer **out, struct dverr *err);
/* An external sort (segment.h) whose runs go under the same directory. */
int repo_sorter_new(struct repo *r, size_t budget, struct segment_sorter **out, struct dverr *err);

/* Compaction: true when table's chain at p should be replaced by a new base (more than
 * REPO_MAX_CHAIN segments, or, with at least 4 segments, the deltas together larger than the base).
 * Segment sizes come from pt->segment_sizes, the store's size memo (manifests loaded, objects this
 * process wrote) or a local stat, never a remote request; with a size unknown only the length cap
 * applies. repo_capture_commit does this by itself for every table of the point;
 * these are for callers that want to do it earlier. */
#define REPO_MAX_CHAIN 32
bool repo_table_should_compact(struct repo *r, const struct point_table *pt);
/* Shorten pt's chain when it calls for it, in place (pt need not be committed: a capture passes
 * its new chain): more than REPO_MAX_CHAIN segments whose deltas are at most half the base: the
 * deltas merged into one (a cost that follows the deltas, not the table); the size rule
 * (repo_table_should_compact) for a chain whose point updates or deletes, or a long chain of large
 * deltas: a new base, which must reproduce pt->records and pt->bytes (-EIO otherwise, pt
 * unchanged). 0 when nothing was needed. */
int repo_table_compact(struct repo *r, struct point_table *pt, struct dverr *err);
/* Write a base segment holding the table as pt's chain merges (pt need not be committed: a capture
 * passes its new chain). The caller then sets pt->segments to {id}. records/bytes: what the table
 * file has (they must equal pt->records/pt->bytes). */
int repo_write_base(struct repo *r, const struct point_table *pt, char id[65], uint64_t *records,
                    uint64_t *bytes, struct dverr *err);

/* A capture of one environment in progress: holds the environment's writer lock and a catalog
 * transaction for the capture state. Nothing is visible until repo_capture_commit. */
struct repo_capture;
int repo_capture_begin(struct repo *r, const char *env, struct repo_capture **out,
                       struct dverr *err);
/* The latest committed point of env (NULL when none); owned by the capture. A format-3 point
 * comes without its file entries (n_files 0): repo_prev_files_open reads them. */
const struct point *repo_capture_previous(struct repo_capture *c);
/* The previous point's files of one table, in list order (by record id), whatever its format: a
 * format-3 list is read from the chunks that hold the table, one chunk in memory at a time.
 * next gives 1 and *f (valid until the next call), 0 at the end, or -errno. Readers of different
 * tables may run on different threads at once; each belongs to one thread. */
struct repo_files_reader;
int repo_prev_files_open(struct repo_capture *c, const char *table, struct repo_files_reader **out,
                         struct dverr *err);
int repo_files_reader_next(struct repo_files_reader *rd, const struct point_file **f,
                           struct dverr *err);
void repo_files_reader_free(struct repo_files_reader *rd); /* accepts NULL */
/* The new point's file list, streamed: begin, then every file in list order (table, record id,
 * column, file name, blob), then finish, which stores the last chunk and the index and names them
 * in p (*n_files: how many); commit then keeps that list and ignores p->files. Chunks the previous
 * point names are not stored again; with object_lock, each file's blob is locked until lock_until
 * as it is added. Memory: one chunk's files. */
int repo_capture_files_begin(struct repo_capture *c, time_t lock_until, struct dverr *err);
int repo_capture_files_add(struct repo_capture *c, const struct point_file *f, struct dverr *err);
int repo_capture_files_finish(struct repo_capture *c, struct point *p, size_t *n_files,
                              struct dverr *err);
/* Add one table's files to that list: the previous point's files of the table, except those of
 * the records in touched (sorted record ids), merged with added (sorted in list order). Where the
 * list stands at the start of one of the previous list's chunks that holds only this table and
 * nothing that changed, that chunk is named by id and not read (so an unchanged table costs no
 * read of its files; never with object_lock, whose blobs are locked one by one). */
int repo_capture_files_carry(struct repo_capture *c, const char *table,
                             const struct point_file *added, size_t n_added,
                             char *const *touched, size_t n_touched, struct dverr *err);
/* Capture state of one record: found=false when the key is not in the table's current state.
 * Reads one chunk of the state, whatever the table's size. */
int repo_capture_state_get(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t *hash, uint64_t *len, bool *found);
/* Record the new state of a key (len 0 with deleted=true removes it); hash 0 keeps none (tables
 * read through change tracking: the capture keeps hashes only for tables it diffs on every read). */
int repo_capture_state_put(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t hash, uint64_t len, bool deleted);
/* Forget what this capture put or built for table: its state stays as committed (a table whose
 * read failed, kept as of the previous point). */
int repo_capture_state_forget(struct repo_capture *c, const char *table);
/* Every key of the table's current state, in key order (one chunk in memory at a time). */
int repo_capture_state_iterate(struct repo_capture *c, const char *table,
                               int (*fn)(void *ctx, const char *key, uint64_t hash, uint64_t len),
                               void *ctx);
/* The same as a cursor (catalog.h): a full read merges it with what it read, in key order. */
struct catalog_cursor;
int repo_capture_state_cursor(struct repo_capture *c, const char *table,
                              struct catalog_cursor **out);
int repo_state_cursor_next(struct catalog_cursor *cur, const char **key, size_t *key_len,
                           uint64_t *hash, uint64_t *len);
void repo_state_cursor_free(struct catalog_cursor *cur); /* accepts NULL */
/* A table's whole new state in increasing key order (a full read): replaces its state at commit
 * (catalog.h, catalog_state_builder). finish frees b; abort (accepts NULL) drops what was added. */
struct catalog_state_builder;
int repo_capture_state_replace(struct repo_capture *c, const char *table,
                               struct catalog_state_builder **out);
int repo_state_builder_add(struct catalog_state_builder *b, const char *key, size_t key_len,
                           uint64_t hash, uint64_t len);
int repo_state_builder_finish(struct catalog_state_builder *b);
void repo_state_builder_abort(struct catalog_state_builder *b);
/* 64-bit hash a full read compares records by: the first 8 bytes of the line's id (crypt_id: its
 * SHA-256, keyed in an encrypted repository, so the catalog holds no plain hash of a record). */
uint64_t repo_line_hash(struct repo *r, const char *line, size_t len);
/* Write p's manifest (after every object it names is durable), then commit the capture state.
 * p->name is set from p->taken_at (moved forward to be later than the previous point and unique
 * within the environment; taken_at follows the name); p->env is set when NULL; kind defaults to
 * "system". Tables whose chain calls for it are compacted first (repo_table_compact; pt->segments
 * is replaced). Frees c. When the manifest is written but the catalog commit fails, the point exists
 * and 0 is returned (the next capture_begin repairs the catalog from the manifest). */
int repo_capture_commit(struct repo_capture *c, struct point *p, struct dverr *err);
void repo_capture_abort(struct repo_capture *c); /* accepts NULL; nothing is kept */

/* ---- maintenance ---- */
/* Delete a manual point (-EPERM for a system point or a point under an active hold, -ENOENT when
 * absent). */
int repo_forget(struct repo *r, const char *env, const char *name, struct dverr *err);
/* One point as prune decides about it. */
struct prune_point {
    struct point_summary s;        /* borrowed from prune: name, kind, label, times */
    const struct point_hold *hold; /* its active hold, or NULL (kept whatever decide says) */
    bool keep;                     /* decide's answer */
    char why[200];                 /* decide's reason: what keeps it, or why it goes */
};
/* Called once per environment with its points, oldest first. */
typedef int (*prune_decide_fn)(void *ctx, const char *env, struct prune_point *pts, size_t n,
                               time_t now);
struct prune_line {
    char *point;                   /* "env/name" */
    bool removed;
    bool locked;                   /* kept because the store refused the delete (object lock) */
    char *why;
};
struct prune_report {
    uint64_t points_removed, points_kept, objects_removed, bytes_removed, holds_removed;
    /* refused by the store (object lock until their retention ends, issue 16): kept, whole */
    uint64_t points_locked, objects_locked;
    struct prune_line *lines; size_t n_lines; /* every point, by environment and name */
};
/* Remove the points decide does not keep (decide NULL: those whose recorded expires_at is at or
 * before now), never a point under an active hold, then every object no remaining point names,
 * and hold documents that expired or whose point is gone. dry_run reports without deleting.
 * A delete the store refuses (-EACCES: object lock) keeps that point (manifest and everything it
 * names) or object, counted in points_locked / objects_locked; a later prune removes them. In an
 * append-only repository it also removes older lease generations and environment document
 * versions, which writers leave. */
int repo_prune(struct repo *r, time_t now, bool dry_run, prune_decide_fn decide, void *ctx,
               struct prune_report *rep, struct dverr *err);
void prune_report_release(struct prune_report *rep);
struct check_report {
    uint64_t points, objects_checked, bytes_checked;
    char **damaged; size_t n_damaged; /* "env/point: table (what)" lines */
};
/* Every manifest parses and every object it names exists; with read_data, every object's hash
 * matches and every segment decodes. 0 when clean, -EIO when something is damaged (listed). */
int repo_check(struct repo *r, bool read_data, struct check_report *rep, struct dverr *err);
void check_report_release(struct check_report *rep);
/* Recreate the catalog from the repository's objects. */
int repo_rebuild_catalog(struct repo *r, struct dverr *err);

/* ---- erasure (repo_erase.c; the engine's erase.h drives them) ---- */
/* Hold the repository for a rewrite: no capture nor prune runs, on this machine (prune.lock) nor
 * on others (locks/prune.lease), until repo_exclusive_end. Waits up to 5 minutes for captures. */
struct repo_exclusive;
int repo_exclusive_begin(struct repo *r, struct repo_exclusive **out, struct dverr *err);
void repo_exclusive_end(struct repo_exclusive *x); /* accepts NULL */
/* Every entry of one segment (deletes included), lines as readers see them. fn's non-zero return
 * stops and is returned. */
int repo_segment_iterate(struct repo *r, const char *id,
                         int (*fn)(void *ctx, const struct segment_entry *e), void *ctx,
                         struct dverr *err);
/* Write a copy of segment id without the entries drop says to drop (each one is told to
 * removed, when given). new_id is "" when nothing is left (nothing is written); st and size
 * (may be NULL) describe the new object. attachments: keep notes' attachments once (the
 * annotation table, as a capture writes it). */
int repo_segment_rewrite(struct repo *r, const char *id, bool attachments,
                         bool (*drop)(void *ctx, const struct segment_entry *e),
                         void (*removed)(void *ctx, const struct segment_entry *e), void *ctx,
                         char new_id[65], struct segment_stats *st, uint64_t *size,
                         struct dverr *err);
/* Replace an existing point's manifest with p (same env and name; every object it names is
 * durable), and its catalog row. The put is atomic: readers see the old or the new manifest. */
int repo_point_replace(struct repo *r, const struct point *p, struct dverr *err);
/* Delete those of ids (objects/) that no manifest of any environment names. */
int repo_objects_drop_unreferenced(struct repo *r, char *const *ids, size_t n,
                                   uint64_t *removed, uint64_t *bytes, struct dverr *err);
/* After env's points were rewritten: every point's catalog row again, the capture state rebuilt
 * from the newest point (so a capture never counts a record that is gone), and the catalog
 * vacuumed (no deleted row's bytes left in its file). */
int repo_env_catalog_refresh(struct repo *r, const char *env, struct dverr *err);
/* After an erasure of env finished: the catalog notes it, so this machine's next capture does not
 * rebuild its state again (other machines' captures do, once). */
int repo_erasure_noted(struct repo *r, const char *env, struct dverr *err);
/* Small documents of the erasure: erase/<env>.journal.json (the work in progress) and
 * erasures/<env>/<name>.json (the log). name is checked (objstore_name_ok, under those two). */
int repo_erase_doc_put(struct repo *r, const char *name, const char *text, struct dverr *err);
int repo_erase_doc_get(struct repo *r, const char *name, struct buf *out, struct dverr *err);
int repo_erase_doc_del(struct repo *r, const char *name, struct dverr *err);
/* The names under prefix (sorted). */
int repo_doc_list(struct repo *r, const char *prefix, char ***names, size_t *n,
                  struct dverr *err);

#endif
