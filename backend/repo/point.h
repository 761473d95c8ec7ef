/* point: a restore point in memory (struct point and its tables and files), shared by every module
 * of the repository layer. manifest.c turns it into its stored JSON and back; repo.h loads and
 * commits it. This header is the bottom of the repository layer: it includes only the base layer.
 * Everything in it is plain data; nothing here is thread-safe beyond that. */
#ifndef DVSNAP_POINT_H
#define DVSNAP_POINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/base/util.h"

enum segment_op { SEG_BASE = 'b', SEG_CREATE = 'c', SEG_UPDATE = 'u', SEG_DELETE = 'd' };

struct point_table {
    char *name;              /* logical name; the file is tables/<sanitised name>.json */
    char *entity_set;
    char *primary_key;
    uint64_t records;        /* lines in the table file at this point */
    uint64_t bytes;          /* exact size of the table file at this point */
    char **segments;         /* merge chain, oldest first (segment ids) */
    size_t n_segments;
    uint64_t *segment_sizes; /* NULL, or n_segments object sizes in bytes (0: unknown); manifests
                                record them so compaction needs no request per segment */
    char *delta;             /* this point's change segment (NULL: unchanged since the last point) */
    uint64_t created, updated, deleted; /* counts in delta */
    uint64_t changes_bytes;  /* exact size of changes/<table>.json */
    char *schema;            /* blob id of the table definition document */
    char *delta_link;        /* change-tracking position after this point; NULL when untracked */
    char *full_read_reason;  /* NULL, or why this point re-read the whole table (e.g. token expired) */
};
struct point_file {          /* files/<table>/<record id>/<file name> */
    char *table, *record_id, *column, *file_name; /* file_name as the service gave it */
    char *blob;              /* blob id */
    uint64_t size;
};
struct point {
    char *env;               /* environment unique name */
    char *name;              /* YYYY-MM-DDTHHMMSSZ */
    char *kind;              /* "system" or "manual" */
    char *label;             /* manual backups; NULL otherwise */
    time_t taken_at;
    time_t expires_at;       /* 0: never (set by policy at capture; prune recomputes) */
    struct point_table *tables; size_t n_tables;
    struct point_file *files; size_t n_files;
    bool files_later;        /* loaded with REPO_LOAD_FILES_LATER: files is empty, the list is in
                                files_chunks, files_listed long (its index's count) */
    size_t files_listed;
    size_t *files_chunk_counts; /* files_later: each chunk's count, as the index gives it */
    char *not_captured_json; /* JSON array of {"what":..,"reason":..}: apps, flows, failures */
    char *env_json;          /* the environment as the admin API described it at capture */
    char *audit_table;       /* the table shown as audit.json, or NULL */
    char *anomaly_json;      /* NULL, or the capture's anomaly (a mass delete; engine/anomaly.h)
                                as a JSON object: the point is flagged */
    char *definitions;       /* blob id of the table definitions index (capture_meta.c) with
                                metadata_stamp, the service's version of them; both NULL in points
                                of older versions (the next capture reads every definition) */
    char *metadata_stamp;
    char *tables_object;     /* formats 2 and 3: the blob ids of the shared tables document and */
    char *files_object;      /* of the files document (format 2) or the file list's index (format
                                3, files_chunked) the manifest names (NULL: format 1, inline) */
    bool files_chunked;      /* format 3: the file list is in chunks (filelist.h) */
    char **files_chunks;     /* their blob ids, in order, as the index names them (format 3) */
    size_t n_files_chunks;
    struct arena files_strings; /* a point loaded from chunks: its files' strings live in this
                                   arena, not each in its own allocation (point_free frees it;
                                   empty otherwise) */
};
void point_free(struct point *p); /* accepts NULL */

struct point_summary {
    char name[32];
    char kind[8];
    char *label;             /* NULL when none */
    time_t taken_at, expires_at;
    bool anomaly;            /* the capture flagged it (point.anomaly_json) */
    bool held;               /* a hold object names it (holds/<env>/<name>.json; it may have
                                expired: point_hold_active says); set by
                                repo_points_mark_held only */
};

/* A hold (issue 17): the point is never pruned nor forgotten while it is active. Stored as
 * holds/<env>/<point>.json, so every machine sharing the repository sees it (hold.c has the
 * document, repo_holds.c the objects). */
struct point_hold {
    char point[32];
    char *reason;            /* NULL when none was given */
    char *by;                /* who placed it: user@host, or "dvsnap" for automatic holds */
    time_t placed_at;
    time_t until;            /* 0: until released */
    bool automatic;          /* placed by dvsnap (the anomaly check), not a person */
};
void point_hold_release(struct point_hold *h); /* frees the strings; accepts NULL */
void point_holds_free(struct point_hold *v, size_t n);
bool point_hold_active(const struct point_hold *h, time_t now);
/* The hold as a compact JSON object (what the store keeps, and backup.json shows):
 * {"point":N,"reason":S|null,"by":S,"placed_at":T,"until":T|null,"automatic":B}, times RFC 3339. */
int point_hold_render(const struct point_hold *h, struct buf *out);
/* Parse that document (-EIO with a message when it is not one). */
int point_hold_parse(const char *json, size_t len, struct point_hold *out, struct dverr *err);
void point_summaries_free(struct point_summary *p, size_t n); /* accepts NULL */
/* A deep copy of p (NULL on out of memory). */
struct point *point_dup(const struct point *p);
/* The rendered backup.json of a point (docs/architecture.md section 4), exactly what the mount
 * shows; hold is the point's hold (NULL: none), shown as "hold". */
int point_render_backup_json(const struct point *p, const struct point_hold *hold,
                             struct buf *out);

#endif
