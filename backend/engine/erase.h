/* erase: remove chosen records from every restore point of an environment (issue 17: the right
 * to erasure). The records are named by table and primary key, or found by a field's value
 * (FIELD = VALUE, e.g. emailaddress1 = an address) in any version of any table at any point; with
 * `related`, the notes, audit records and activities whose _objectid_value or
 * _regardingobjectid_value is one of them go too (their attachments with them).
 *
 * What happens:
 *   1. plan (read only): every segment that holds a version of one of the records, every point
 *      whose manifest names such a segment or one of their files, the files and blobs that are
 *      theirs; records of other tables that still refer to them (a lookup) are reported, not
 *      erased. A point under an active hold refuses the erasure (-EPERM naming it) unless
 *      override_hold. A dry run stops here.
 *   2. the journal (erase/<env>.journal.json: the record keys and the objects to drop; no field
 *      values) is written; then each such segment is copied without those records (a new object),
 *      each such point's manifest is put again naming the copies (one atomic put per point:
 *      every other record's line, and so its table file, stays byte for byte what it was), the
 *      old segments and the records' blobs are deleted once no manifest names them, and the
 *      catalog's rows and capture state are rebuilt;
 *   3. the log (erasures/<env>/<time>-<fingerprint>.json: when, by whom, the criterion without
 *      its value, counts per table, a SHA-256 fingerprint of the erased keys, what was rewritten)
 *      is written and the journal deleted.
 * A run killed at any moment leaves each point either as it was or erased, every manifest naming
 * objects that exist; the next erase_run of the environment finds the journal and finishes that
 * erasure first. The caller purges its local cache (cache/ is above this layer).
 * Threading: one call at a time per repository (repo_exclusive excludes captures and prunes). */
#ifndef DVSNAP_ERASE_H
#define DVSNAP_ERASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/repo/repo.h"

struct erase_id {          /* a record by table (logical name) and primary key */
    const char *table, *key;
};
struct erase_match {       /* records whose field holds value (a string, or a number's text) */
    const char *field, *value;
};

struct erase_request {
    const char *env;
    const struct erase_id *ids;
    size_t n_ids;
    const struct erase_match *where;
    size_t n_where;
    bool related;          /* notes, audits and activities regarding an erased record */
    bool dry_run;
    bool override_hold;    /* erase from held points too (the log says so) */
    const char *by;        /* who asks: user@host (the log) */
    const char *criterion; /* the request in words without the values it searched for (the log) */
    time_t now;            /* the log's times; 0: the clock */
};

struct erase_count {
    char *table;
    uint64_t records;
};

struct erase_report {
    bool resumed;                       /* an unfinished erasure was finished first */
    bool unfinished;                    /* dry run: there is one, the real run finishes it */
    struct erase_count *tables;         /* records found, per table */
    size_t n_tables;
    uint64_t records;                   /* distinct records found */
    uint64_t ids_not_found;             /* ids asked for that no point holds */
    uint64_t points;                    /* points that hold some of them */
    char **held; size_t n_held;         /* held points among them: "point (reason)" */
    char **refs; size_t n_refs;         /* "table.field: N records refer to erased records" */
    uint64_t segments, segment_bytes;   /* segments rewritten, and their size before */
    uint64_t files;                     /* file entries dropped (all points) */
    uint64_t objects_written, bytes_written;
    uint64_t objects_removed, bytes_removed;
    char **blobs_removed; size_t n_blobs_removed; /* object ids deleted (the cache drops blobs) */
    char log_name[200];                 /* erasures/<env>/... ("" for a dry run) */
};

/* Plan, and unless dry_run erase (see above). 0; -EPERM for a held point; -ENOENT when nothing
 * matches; -EBUSY when captures do not finish within 5 minutes. */
int erase_run(struct repo *repo, const struct erase_request *req, struct erase_report *rep,
              struct dverr *err);
void erase_report_release(struct erase_report *rep);

#endif
