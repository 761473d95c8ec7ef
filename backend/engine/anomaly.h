/* anomaly: mass-delete alerts (issue 17). Each capture compares, per table, what the pass deleted
 * with the table as the previous point had it: a pass that deletes more than
 * anomaly_delete_percent (default 5) of a table that had at least anomaly_min_rows (default
 * 1000) records is an anomaly. The point is flagged (its manifest's "anomaly": backup.json,
 * environment.json, `dvsnap points`), the point before it is held for anomaly_hold (default 30
 * days; a longer hold already there is kept), and notify_command, when set, runs once with the
 * summary on stdin. `dvsnap capture` then exits with EXIT_ANOMALY (6).
 *
 * The summary (the manifest keeps the same object without "env", "point" and "held"):
 *   {"kind":"mass_delete","env":E,"point":P,"previous_point":Q,"threshold_percent":5,
 *    "min_rows":1000,"held":{hold document}|null,
 *    "tables":[{"table":T,"rows_before":N,"deleted":N,"percent":X,"created":N,"updated":N,
 *               "deleted_previous_pass":N}]}
 * ("deleted_previous_pass": what the pass before deleted in that table, for comparison.)
 * Threading: no shared state; anomaly_notify blocks the calling thread until the command ends
 * (at most ANOMALY_NOTIFY_WAIT_S, then it is killed). */
#ifndef DVSNAP_ANOMALY_H
#define DVSNAP_ANOMALY_H

#include <stdbool.h>

#include "backend/base/config.h"
#include "backend/repo/repo.h"

#define ANOMALY_NOTIFY_WAIT_S 60

/* Compare p (not yet committed) with prev (NULL: the first point, never an anomaly). Sets
 * p->anomaly_json when p is an anomaly. 0 or -ENOMEM. */
int anomaly_check(const struct config *cfg, const struct point *prev, struct point *p);

/* After p (flagged by anomaly_check) is committed: hold the point before it (prev_name; NULL:
 * none) for cfg->anomaly_hold from now and run cfg->notify_command with the summary. A failure
 * is logged and never undoes the point. */
void anomaly_report(struct repo *repo, const struct config *cfg, const char *prev_name,
                    const struct point *p, time_t now);

/* One line about the first flagged table of an anomaly document, e.g. "contact: 200 of 2000
 * records deleted (10.00%)". */
void anomaly_note(const char *anomaly_json, char *out, size_t n);

#endif
