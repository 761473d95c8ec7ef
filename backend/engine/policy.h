/* policy: the platform's rules (see the README's "Capture and retention" and "Restore") in one place, table-driven, no I/O.
 * Retention, which environments are backed up, manual backups, and the restore rules.
 * Every refusal returns a negative errno and a message a Dataverse administrator understands. */
#ifndef DVSNAP_POLICY_H
#define DVSNAP_POLICY_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "backend/dataverse/dataverse.h"
#include "backend/base/util.h"

/* Retention in days for points of env: production: its own setting when the admin API gives one,
 * else 28 with Dynamics 365 apps and 7 without; sandbox, developer, default: 7 (a retention setting
 * left over from production is not kept: switching to sandbox shortens retention at once). 0 for
 * environments that are not backed up. */
int policy_retention_days(const struct dv_env *env);
/* Expiry of a point taken at taken_at, by the environment as it is now (so switching to sandbox
 * shortens retention at once). Manual points follow the same retention. */
time_t policy_expires_at(const struct dv_env *env, time_t taken_at);
/* System backups: every environment except trials (-EPERM with the reason otherwise). */
int policy_backup_allowed(const struct dv_env *env, struct dverr *err);
/* Manual backups: production and sandbox (and developer); never the default environment or a
 * trial (-EPERM with the reason). */
int policy_manual_backup_allowed(const struct dv_env *env, struct dverr *err);
/* Restore rules, checked before anything is written:
 *   target not a sandbox -> -EPERM (say: switch it to sandbox first)
 *   different geo/region -> -EPERM
 *   free capacity < 1024 MB -> -ENOSPC
 *   confirm missing or not the target's unique name -> -EINVAL
 *   include_audit where the target cannot take audit records -> -EOPNOTSUPP */
int policy_restore_allowed(const struct dv_env *source, const struct dv_env *target,
                           int64_t free_capacity_mb, const char *confirm, bool include_audit,
                           struct dverr *err);

#endif
