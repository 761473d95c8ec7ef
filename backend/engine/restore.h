/* restore: put a restore point (or some of its tables) back into a sandbox, writing only what
 * differs (docs/architecture.md section 6). One engine behind both the .restore control file and
 * `dvsnap restore`.
 *
 * Steps: parse and validate the request against policy (nothing is written before every rule
 * passes); take a safety backup of the target labelled pre-restore-<operation id>; read the
 * target's current records of the affected tables; compare with the point by primary key and
 * normalised content; write upserts (PATCH by key) and deletes in $batch requests of up to 1000
 * with continue-on-error, creating referenced records before setting lookups; restore N:N
 * associations, notes' attachments and file columns; set administration mode; record the outcome.
 * Re-running a killed restore converges to the same state. */
#ifndef DVSNAP_RESTORE_H
#define DVSNAP_RESTORE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"
#include "backend/base/util.h"

struct restore_request {
    char *source_env;      /* the point's environment */
    char *point;           /* point name */
    char *target;          /* target environment unique name */
    char **tables;         /* NULL-terminated, or NULL for every table */
    bool include_audit;    /* audit=include */
    char *confirm;         /* must equal target */
    bool dry_run;
};
/* Parse a control-file line: "target=ENV [tables=a,b] [audit=include|skip] [confirm=ENV]
 * [dry-run]". source_env and point are given by the caller. -EINVAL with the reason. */
int restore_request_parse(const char *line, const char *source_env, const char *point,
                          struct restore_request *req, struct dverr *err);
void restore_request_release(struct restore_request *req);

struct restore_table_outcome {
    char *table;
    uint64_t created, updated, deleted, unchanged, skipped, failed;
    char *first_keys_json; /* dry-run: {"create":[..],"update":[..],"delete":[..]} first few keys */
    /* added by the restore helper: */
    uint64_t associated, disassociated; /* N:N pairs ($ref) */
    uint64_t files;        /* file columns uploaded or cleared */
    char *note;            /* why the table was skipped, or its first failure; NULL when none */
    uint64_t lookups_dropped; /* records written without a lookup whose target the target lacks */
    char *lookup_note;     /* the first such lookup, for the outcome; NULL when none */
};
struct restore_outcome {
    char state[16];        /* "validating", "backing-up", "comparing", "writing", "done", "failed" */
    char safety_point[32]; /* the pre-restore backup of the target, "" when none */
    struct restore_table_outcome *tables; size_t n_tables;
    uint64_t requests, records_written;
    char *skipped_fields_json; /* fields the service does not let us set, per table */
    int64_t started_ms, finished_ms; /* wall clock (ms since the epoch); finished 0 while running */
    char error[512];
    /* added by the restore helper: */
    char operation_id[32];
    char *source_env, *point, *target; /* owned copies of the request's names */
    bool dry_run;
    uint64_t write_requests;   /* requests that change the target ($batch, file uploads, admin mode) */
    uint64_t batches;          /* $batch requests */
    uint64_t retried;          /* batch parts sent again after failing */
    int code;                  /* 0, or the -errno the restore failed with */
};
void restore_outcome_release(struct restore_outcome *o);
/* Render the outcome (and progress while running) as JSON for .restore and .operations/. */
int restore_outcome_json(const struct restore_outcome *o, struct buf *out);

/* Check every rule without writing anything (admin API reads only). */
int restore_validate(struct dv_client *dv, struct repo *repo, const struct restore_request *req,
                     struct dverr *err);
/* Validate, then run. progress (may be NULL) is called with the outcome as it advances. */
int restore_run(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct restore_request *req, const char *operation_id,
                void (*progress)(void *ctx, const struct restore_outcome *o), void *ctx,
                atomic_int *cancel, struct restore_outcome *out, struct dverr *err);

#endif
