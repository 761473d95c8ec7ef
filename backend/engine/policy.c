/* policy: the platform's backup, retention and restore rules (README, "Capture and retention" and "Restore"), as data.
 *
 * One table maps an environment type (environmentSku) to what the platform does with it: whether
 * system backups are taken, whether manual backups are allowed, and the default retention. The
 * environment's own retention setting (retentionDetails.retentionPeriod, 7/14/21/28 days) is a
 * production setting: it wins for production environments; other types keep at most their type's
 * retention (7 days), so an environment switched to sandbox drops to 7 days at once even while the
 * admin API still reports the retention it had as production.
 * Unknown types are treated like sandboxes (backed up, 7 days, manual backups allowed), the
 * conservative choice that keeps data without claiming longer retention than the platform gives.
 * No I/O, no state: thread-safe. */
#include "backend/engine/policy.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

struct env_rule {
    const char *sku;        /* environmentSku, compared case-insensitively */
    bool backed_up;         /* system backups */
    bool manual;            /* manual backups allowed */
    int retention_days;     /* default retention; production with D365 apps: see d365_days */
    int d365_days;          /* retention when Dynamics 365 apps are installed (0: same) */
    const char *why_not;    /* reason shown when something is refused */
};

static const struct env_rule rules[] = {
    {"Production", true, true, 7, 28, NULL},
    {"Sandbox", true, true, 7, 0, NULL},
    {"Developer", true, true, 7, 0, NULL},
    {"Default", true, false, 7, 0,
     "the default environment cannot have manual backups (platform rule); its system backups "
     "are taken continuously"},
    {"Teams", true, false, 7, 0,
     "manual backups are for production and sandbox environments (platform rule)"},
    {"Trial", false, false, 0, 0, "trial environments are not backed up (platform rule)"},
    {"SubscriptionBasedTrial", false, false, 0, 0,
     "trial environments are not backed up (platform rule)"},
};
static const struct env_rule unknown_rule = {NULL, true, true, 7, 0, NULL};

static const struct env_rule *rule_for(const struct dv_env *env)
{
    if (env->is_default)
        return &rules[3];
    if (env->sku)
        for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
            if (strcasecmp(rules[i].sku, env->sku) == 0)
                return &rules[i];
    return &unknown_rule;
}

static const char *env_name(const struct dv_env *env)
{
    return env->unique_name ? env->unique_name : "(unnamed environment)";
}

int policy_retention_days(const struct dv_env *env)
{
    const struct env_rule *r = rule_for(env);
    if (!r->backed_up)
        return 0;
    bool production = r->d365_days != 0;
    if (env->retention_days > 0 && (production || env->retention_days < r->retention_days))
        return env->retention_days;
    if (production && env->has_d365_apps)
        return r->d365_days;
    return r->retention_days;
}

time_t policy_expires_at(const struct dv_env *env, time_t taken_at)
{
    return taken_at + (time_t)policy_retention_days(env) * 86400;
}

int policy_backup_allowed(const struct dv_env *env, struct dverr *err)
{
    const struct env_rule *r = rule_for(env);
    if (!r->backed_up)
        return dverr_set(err, -EPERM, "%s: %s", env_name(env), r->why_not);
    return 0;
}

int policy_manual_backup_allowed(const struct dv_env *env, struct dverr *err)
{
    const struct env_rule *r = rule_for(env);
    if (!r->manual)
        return dverr_set(err, -EPERM, "%s: manual backup refused: %s", env_name(env),
                         r->why_not ? r->why_not : "not allowed for this environment type");
    return 0;
}

static bool same_text(const char *a, const char *b)
{
    return a && b && strcasecmp(a, b) == 0;
}

int policy_restore_allowed(const struct dv_env *source, const struct dv_env *target,
                           int64_t free_capacity_mb, const char *confirm, bool include_audit,
                           struct dverr *err)
{
    if (!target->sku || strcasecmp(target->sku, "Sandbox") != 0 || target->is_default)
        return dverr_set(err, -EPERM,
                         "%s is a %s environment: a restore can only go into a sandbox (switch "
                         "it to sandbox in the admin center first)",
                         env_name(target), target->sku ? target->sku : "typeless");
    /* Same geography (location) is the platform's rule; when both sides also name an Azure
     * region and no geography, compare those. */
    if (source->geo || target->geo) {
        if (!same_text(source->geo, target->geo))
            return dverr_set(err, -EPERM,
                             "%s is in %s but %s is in %s: a restore must stay in the same "
                             "region",
                             env_name(source), source->geo ? source->geo : "an unknown geography",
                             env_name(target), target->geo ? target->geo : "an unknown geography");
    } else if ((source->region || target->region) && !same_text(source->region, target->region)) {
        return dverr_set(err, -EPERM,
                         "%s and %s are in different regions: a restore must stay in the same "
                         "region",
                         env_name(source), env_name(target));
    }
    if (free_capacity_mb < 1024)
        return dverr_set(err, -ENOSPC,
                         "the tenant has %lld MB of free database capacity; a restore needs at "
                         "least 1 GB (1024 MB)",
                         (long long)free_capacity_mb);
    if (!confirm || !target->unique_name || strcmp(confirm, target->unique_name) != 0)
        return dverr_set(err, -EINVAL,
                         "confirm the target by its name: confirm=%s (the restore overwrites its "
                         "data)",
                         env_name(target));
    if (include_audit)
        return dverr_set(err, -EOPNOTSUPP,
                         "audit records cannot be restored into %s: the Web API's audits set is "
                         "read-only (restore without audit=include)",
                         env_name(target));
    return 0;
}
