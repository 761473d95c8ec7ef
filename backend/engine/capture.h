/* capture: take restore points (docs/architecture.md, section 5). One pass over an environment reads every
 * table (a full read the first time, change tracking after; tables without change tracking are
 * re-read and diffed by record hash; an expired delta token falls back to a full read, recorded in
 * the point), writes one delta segment per changed table, attachment and file-column bytes as
 * blobs, schema documents as blobs, and commits one restore point atomically. A pass that dies
 * leaves no half point; the next resumes from the last committed delta links.
 *
 * Threading: capture_env runs up to opts->concurrency table reads in parallel on its own threads;
 * callers may run capture_env for different environments at the same time. */
#ifndef DVSNAP_CAPTURE_H
#define DVSNAP_CAPTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"
#include "backend/base/util.h"

struct capture_progress {
    const char *env;
    const char *table;          /* current table or NULL */
    uint64_t tables_done, tables_total;
    uint64_t records;           /* records read so far in this pass */
};

struct capture_result;

struct capture_opts {
    const char *label;          /* NULL: a system point; else a manual backup with this label */
    int concurrency;            /* table reads in parallel; 0: cfg->max_concurrency */
    /* Called from capture threads (serialised by capture) as work advances; may be NULL. */
    void (*progress)(void *ctx, const struct capture_progress *p);
    void *progress_ctx;
    atomic_int *cancel;         /* when set non-zero, stop at the next page (-ECANCELED) */
    time_t now;                 /* the point's taken_at; 0: the clock (tests pin it: DVSNAP_NOW) */
    /* capture_all only (both may be NULL/zero): */
    const char *const *only_envs; /* NULL-terminated unique names; NULL: cfg->environments */
    /* Called after each environment capture_all looks at: rc 0 (res filled), the policy's
     * -EPERM for environments it skips (err says why), or the capture's error. */
    void (*env_done)(void *ctx, const struct dv_env *env, int rc,
                     const struct capture_result *res, const struct dverr *err);
    void *env_done_ctx;
};

struct capture_result {
    char point[32];             /* the new point's name */
    uint64_t tables, records_read, records_changed, requests, blobs_written;
    uint64_t full_reads, delta_reads;
    uint64_t tables_failed;     /* tables listed in not_captured (kept as of the previous point) */
    uint64_t files;             /* files (attachments, file columns) in the point */
    bool anomaly;               /* the point is flagged: a mass delete (anomaly.h) */
    char anomaly_note[240];     /* its first table: "contact: 200 of 2000 records deleted" */
};

/* Capture env once. Refuses (-EPERM) environments policy does not back up, and manual backups
 * where policy_manual_backup_allowed says no. */
int capture_env(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct dv_env *env, const struct capture_opts *opts,
                struct capture_result *res, struct dverr *err);
/* Capture every selected environment that policy backs up (trials are skipped). Returns 0 when
 * all succeeded, else the first error; every environment is attempted. */
int capture_all(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct capture_opts *opts, struct dverr *err);

#endif
