/* retention: which restore points prune keeps, and why (issue 17). The platform's rule
 * (policy.h: 7 or 28 days, by the environment as it is now) is the floor for system points; the
 * owner's rules (config.h: keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within, for
 * all environments or one) keep more, restic-style; manual backups follow keep_manual; a held
 * point is kept whatever the rules say (the repository enforces that too).
 *
 * The rules, over one environment's system points, newest first:
 *   keep_daily N    the newest point of each of the last N days that have points (UTC days)
 *   keep_weekly N   ... of each of the last N ISO weeks that have points
 *   keep_monthly N  ... of each of the last N calendar months that have points
 *   keep_yearly N   ... of each of the last N years that have points
 *   keep_within D   every point taken within D of the environment's newest point
 * ("all" for a count keeps the newest point of every such period.) A system point no rule keeps
 * goes once the platform's retention has passed. Manual backups are outside those counts:
 *   keep_manual all       kept until forgotten (the default: a label like keep-forever means it)
 *   keep_manual platform  like a system point under the platform's rule (no other rule)
 *   keep_manual D         kept for D after it was taken
 * Pure functions and a prune driver; no shared state, thread-safe. */
#ifndef DVSNAP_RETENTION_H
#define DVSNAP_RETENTION_H

#include <stdbool.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/repo/repo.h"

/* One point as the rules see it. */
struct retention_point {
    const char *name;          /* the point's name (for messages) */
    time_t taken_at;
    bool manual;
    time_t platform_expires;   /* the platform's expiry by the environment now (0: never) */
    const char *held;          /* NULL, or the reason of an active hold */
    /* the answer */
    bool keep;
    char why[200];             /* the rules that keep it, or why it goes */
};

/* Decide for the points of one environment (any order; pts is not reordered) as of now. 0, or
 * -ENOMEM with no decision made (the caller must not prune on it). */
int retention_decide(const struct config_retention *rules, struct retention_point *pts,
                     size_t n, time_t now);

/* The expiry a new point records (backup.json's expires_at, the `points` list): the platform's
 * for a system point (the rules may keep it longer; prune --dry-run says which), and keep_manual's
 * for a manual one (0: never). */
time_t retention_expires_at(const struct config *cfg, const char *env, bool manual,
                            time_t platform_expires, time_t taken_at);

/* Prune the repository by these rules: platform_expiry gives a point's platform expiry by its
 * environment as it is now (NULL: the expiry the point recorded). The report lists every point
 * with the decision and its reason. */
int retention_prune(struct repo *repo, const struct config *cfg, time_t now, bool dry_run,
                    time_t (*platform_expiry)(void *ctx, const char *env,
                                              const struct point_summary *p),
                    void *ctx, struct prune_report *rep, struct dverr *err);

#endif
