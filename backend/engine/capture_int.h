/* capture_int: what the capture engine's files share. capture.c reads one table (full or delta)
 * against the capture state; capture_files.c handles a table's attachments and file columns;
 * capture_ranges.c reads a table in full (in key ranges side by side when it is large);
 * capture_meta.c gets the table definitions (from the repository and what changed since);
 * capture_env.c drives one environment (the table list, the worker threads, the point). Not part
 * of the contract: only these five files include it.
 *
 * Threading: struct cap is one capture_env call. Its dv, repo, env, opts, prev and jobs are set
 * before the workers start and only read while they run; the fields marked "cap->lock" are read
 * and written under cap->lock only; blobs_written is atomic. A struct table_job belongs to the
 * one worker that took it (cap->next, under cap->lock) until the workers are joined; capture_env
 * then reads it on its own thread; while a full read runs as key ranges, its range threads add to
 * sorters of their own and count records_read under cap->lock. Every progress callback
 * is made under cap->lock; the state calls on cap->rc are thread-safe (the catalog serialises
 * them). */
#ifndef DVSNAP_CAPTURE_INT_H
#define DVSNAP_CAPTURE_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/base/keymap.h"
#include "backend/engine/capture.h"

/* Memory a full read's sort holds before it spills a run to disk (per table being read). */
#define CAPTURE_SORT_BUDGET ((size_t)24 << 20)
/* A full read's files (the table's part of the point's file list) are sorted in a sorter of this
 * budget; one that holds more than CAPTURE_FILES_PARK once the read is done is parked on disk
 * until the point's list is written (segment_sorter_park), so the list never sits in memory. */
#define CAPTURE_FILES_SORT_BUDGET ((size_t)4 << 20)
#define CAPTURE_FILES_PARK ((size_t)256 << 10)

/* ---------------------------------------------------------------- key map */

enum { KM_OLD = 1, KM_SEEN = 2, KM_HASHED = 4, KM_HASH_KEPT = 8 };
enum km_op { KM_NONE = 0, KM_CREATE, KM_UPDATE, KM_DELETE };

struct km_entry {
    const char *key;         /* in the map's arena; NULL for an empty slot */
    uint32_t key_len;
    uint8_t flags;           /* KM_OLD: in the capture state (old_len); KM_SEEN: read this pass;
                              * KM_HASHED: old_hash is the previous line's; KM_HASH_KEPT: the
                              * catalog holds that hash */
    uint8_t op;              /* enum km_op, decided as the read goes */
    uint64_t old_hash, old_len, new_hash, new_len;
    char *line;              /* delta reads: the new line (malloc), NULL otherwise */
    size_t line_len;
};

static inline void km_init(struct keymap *m)
{
    keymap_init(m, sizeof(struct km_entry), offsetof(struct km_entry, key),
                offsetof(struct km_entry, key_len));
}

/* Frees the entries' lines, then the map. */
static inline void km_release(struct keymap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(((struct km_entry *)keymap_slot(m, i))->line);
    keymap_release(m);
}

/* The entry for key, or NULL when absent (add=false) or out of memory (add=true). The pointer is
 * valid until the next insertion. */
static inline struct km_entry *km_get(struct keymap *m, const char *key, size_t n, bool add,
                                      bool *added)
{
    if (!add) {
        if (added)
            *added = false;
        return keymap_get(m, key, n);
    }
    return keymap_put(m, key, n, added);
}

/* ---------------------------------------------------------------- keys */

/* Records are keyed by their primary id; an elastic table's by id and partitionid
 * (record_row_key: <id>:<partitionid>, the id alone for a row without a partition). */
static inline const char *capture_partition_column(const struct dv_table *t)
{
    return t->is_elastic ? DV_PARTITION_COLUMN : NULL;
}

/* Whether a table is read through its delta link: a tracked table that is not elastic. The
 * service's documentation does not say that a delta's deleted rows name the partition of an
 * elastic row (they carry an id), so an elastic table is read in full every pass and compared by
 * record hash, which finds each (id, partition) row's change. */
static inline bool capture_reads_delta(const struct dv_table *t)
{
    return t->change_tracking && !t->is_elastic;
}

/* ---------------------------------------------------------------- the pass */

struct file_todo {
    char *key;
    const char *column; /* owned by the job's file_cols */
    bool retry;         /* failed in the previous point: fetched again though the record did not
                         * change (else it would stay missing until it does) */
};

struct cap;

/* One table of the pass; owned by the worker that runs it (see the note above). */
struct table_job {
    struct cap *cap;
    const struct dv_table *t;
    const struct point_table *prev; /* the table in the previous point, or NULL */
    /* results */
    struct point_table out;
    bool ok;                        /* out is filled */
    char *fail_reason;              /* set when the table could not be read */
    int rc;
    /* the table's files in the new point: a full read's in file_sorter (key: record id, column,
     * file name, blob, a sequence number; capture_files.c), a delta read's new files in files
     * (what the pass changed) with carry_prev_files: the previous point's files of the table,
     * except those of the records in touched (sorted), are the rest; capture_job_files_put
     * streams them into the point's list */
    struct point_file *files;
    size_t n_files, cap_files;
    struct segment_sorter *file_sorter;
    uint64_t file_seq;
    bool carry_prev_files;
    char **touched;
    size_t n_touched;
    struct buf problems;            /* not_captured entries for this table (JSON objects + ',') */
    /* read state */
    struct keymap map;
    bool delta_mode;
    bool first;                     /* no previous point for this table */
    bool keep_hashes;               /* the catalog keeps this table's hashes (no delta link) */
    struct segment_sorter *sorter;  /* full read: every record read, sorted by key (the job's
                                     * thread only) */
    struct segment_sorter **range_sorters; /* full read in key ranges whose keys follow each
                                            * other: each range's sorter, drained in turn
                                            * instead of sorter (capture_ranges.c) */
    size_t n_range_sorters;
    _Atomic bool ranges_failed;     /* a range read failed: the others stop */
    struct repo_files_reader *prev_reader; /* full read: the previous point's files of the
                                            * table, by record id (capture_full_files_*) */
    const struct point_file *prev_file;     /* the reader's current file (NULL: no more) */
    struct json_doc *nc_doc;        /* full read: the previous point's not_captured, parsed */
    const struct json_node **fails; /* its files of this table, by record id */
    size_t n_fails, fail_at;
    bool is_annotation;
    char **file_cols;               /* File and Image columns (owned) */
    size_t n_file_cols;
    struct segment_writer *sw;
    struct buf line;
    struct buf row_key;             /* an elastic row's key (record_row_key) */
    struct file_todo *todo;
    size_t n_todo, cap_todo;
    uint64_t records_read;
    struct dverr err;
};

struct cap {
    struct dv_client *dv;
    struct repo *repo;
    const struct dv_env *env;
    const struct capture_opts *opts;
    struct repo_capture *rc;
    const struct point *prev;
    int concurrency;                /* the most tables (and ranges of one table) read at once */
    time_t now;                     /* the point's time (opts->now, else the clock at start) */
    pthread_mutex_t lock;           /* guards next, tables_done, records, progress */
    size_t next;
    uint64_t tables_done, records;
    struct table_job *jobs;
    size_t n_jobs;
    _Atomic uint64_t blobs_written;
    char *metadata_stamp;           /* the definitions' version this pass read (capture_meta.c),
                                     * or NULL; set before the workers start */
};

static inline bool cancelled(const struct cap *cap)
{
    return cap->opts && cap->opts->cancel && atomic_load(cap->opts->cancel);
}

static inline char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- capture_env.c ---- */
/* The progress callback with the pass's counts; the caller holds cap->lock. */
void capture_progress_locked(struct cap *cap, const char *table);
/* The start of a not_captured entry, {"what":what,"reason":reason, onto b; the caller adds any
 * further member, then "},". 0 or -ENOMEM. */
int capture_not_captured_open(struct buf *b, const char *what, const char *reason);

/* ---- capture_meta.c: the table definitions ---- */
/* The environment's tables for this pass (dv_tables_list's list, linked), from the previous
 * point's definitions and what changed since; sets cap->metadata_stamp. */
int capture_definitions(struct cap *cap, const struct config *cfg, struct dv_table **tables,
                        size_t *n, struct dverr *err);
/* Once the jobs have run (before their results move into p): p->definitions (the index of
 * tables, with the schema documents of the jobs that read well, the definitions of the other
 * captured tables inline) and p->metadata_stamp; nothing when the pass has no stamp, or when
 * the index cannot be stored (logged: the next pass reads every definition). */
int capture_definitions_index(struct cap *cap, const struct config *cfg,
                              const struct dv_table *tables, size_t n, struct point *p,
                              struct dverr *err);

/* ---- capture_ranges.c: a full read ---- */
/* Every record of the table into j->sorter or the range sorters (one stream, or key ranges side
 * by side); *new_link the table's new delta link (NULL when untracked). new_link NULL: a table
 * whose link is not wanted (elastic), read in one untracked stream. */
int capture_read_full(struct table_job *j, char **new_link);
/* Every entry of the full read in key order to fn: the range sorters in turn, else j->sorter. */
int capture_full_drain(struct table_job *j,
                       int (*fn)(void *ctx, const struct segment_entry *e, struct dverr *err),
                       void *ctx);
/* Frees the sorters of the full read (j->sorter and the range sorters). */
void capture_full_sorters_free(struct table_job *j);

/* ---- capture.c: one table ---- */
/* Read the table (delta from the previous point's link, else in full) into j->out. */
int capture_run_job(struct table_job *j);
/* Drops what a read left behind (segment writer, key map, queued and new files). */
void capture_job_reset_read(struct table_job *j);
/* The table as of the previous point (a table that could not be read this time). */
int capture_carry_previous(struct table_job *j);
void capture_point_table_release(struct point_table *t);

/* ---- capture_files.c: attachments and file columns ---- */
/* File and Image columns of the table, from its attributes and its definition document. */
int capture_find_file_columns(struct table_job *j);
/* Files named in one record: documentbody of a note (decoded now), file columns (queued). */
int capture_record_files(struct table_job *j, const struct json_node *rec, const char *key);
/* Delta reads: files of this table in the new point, once the map holds every key's final op
 * (downloads included). */
int capture_finish_files(struct table_job *j);
/* Full reads: before the merge, the previous point's files and failed files of the table, sorted
 * by record id; then each key of the merge in key order with its final op (and its new line for a
 * create or update): its files are taken from the line, carried, dropped or queued again. */
int capture_full_files_begin(struct table_job *j);
int capture_full_files_key(struct table_job *j, const char *key, size_t key_len, enum km_op op,
                           const char *line, size_t line_len);
void capture_full_files_release(struct table_job *j);
/* Download the queued file columns into blobs (after capture_finish_files' or the merge's
 * decisions). */
int capture_download_files(struct table_job *j);
int capture_add_file(struct table_job *j, const char *key, const char *column,
                     const char *file_name, const char *blob, uint64_t size);
void capture_files_free(struct point_file *f, size_t n);
/* Delta reads, once the map holds every key's final op: the records the pass touched (their
 * previous files are not carried). */
int capture_files_note_touched(struct table_job *j);
/* A finished job's files set aside until the point's list is written (a big file sorter parked
 * on disk). */
int capture_job_files_park(struct table_job *j);
/* Stream the job's files, in list order, into the point's list (repo_capture_files_add). */
int capture_job_files_put(struct table_job *j, struct dverr *err);
/* Drops the job's files (new, sorted, touched). */
void capture_job_files_release(struct table_job *j);

#endif
