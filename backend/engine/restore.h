/* restore: put a restore point (or some of its tables) back into a sandbox, writing only what
 * differs (docs/architecture.md section 6). One engine behind both the .restore control file and
 * `dvsnap restore`.
 *
 * Steps: parse and validate the request against policy and the caller's privileges (nothing is
 * written before every rule passes); take a safety backup of the target labelled
 * pre-restore-<operation id>; map the point's principals and reference data (users, teams,
 * business units, currencies) to the target's; read the target's current records of the data
 * tables; compare with the point by primary key and mapped, normalised content; write upserts
 * (PATCH by key), state changes and deletes in $batch requests of up to 1000 with
 * continue-on-error and business logic bypassed, creating referenced records before setting
 * lookups; restore N:N associations, notes' attachments, file and image columns; set
 * administration mode; record the outcome. Re-running a killed restore converges to the same
 * state. */
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
    char *map_file;        /* map=FILE: principal pairs to add or override (absolute path) */
    char *fallback_owner;  /* fallback_owner=systemuser:<id>|team:<id>; NULL: the caller (WhoAmI) */
    bool run_business_logic; /* business-logic=run: plug-ins and flows fire (no bypass) */
};
/* Parse a control-file line: "target=ENV [tables=a,b] [audit=include|skip] [confirm=ENV]
 * [map=/abs/file] [fallback_owner=systemuser:<id>|team:<id>] [business-logic=run|bypass]
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
    bool excluded;         /* left out by the rule of which tables are data; note says why */
    uint64_t states_set;   /* state changes written (PATCH statecode, Close/Win/LoseOpportunity) */
    uint64_t reopened;     /* closed records reopened to update them (then closed again) */
    uint64_t fallback_owners; /* rows of the point whose owner has no match: the fallback owns them */
    uint64_t parties_unmapped; /* activity parties without a match: written with addressused only */
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
    /* principals and business logic (issue 14): */
    bool business_logic_ran;   /* no bypass: plug-ins and flows fired on every write */
    char fallback_owner[64];   /* "systemuser:<id>" or "team:<id>", "" before mapping */
    char *mapping_json;        /* per principal table: matches by rule, unmapped, decisions */
    char *unmapped_json;       /* the point's principals without a match, named, with their rows */
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
