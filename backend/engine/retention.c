/* retention: the owner's retention rules over the platform's (contract and rules in retention.h).
 *
 * retention_decide walks one environment's system points newest first, as restic's forget does:
 * each keep_<period> rule has a count and the last period it kept a point of; a point whose
 * period differs from that one is the newest of a new period, and is kept while the count lasts.
 * Periods are UTC: the day, the ISO 8601 week (%G-W%V), the month, the year. keep_within counts
 * from the environment's newest system point, not from now, so a capture that stops does not make
 * the rules let everything go. Each point's reason lists every rule that keeps it, or, when none
 * does, when the platform's retention ended.
 * No I/O but retention_prune's (the repository's prune); no shared state: thread-safe. */
#include "backend/engine/retention.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { R_DAILY, R_WEEKLY, R_MONTHLY, R_YEARLY, N_PERIODS };

static const char *const period_rule[N_PERIODS] = {"keep_daily", "keep_weekly", "keep_monthly",
                                                   "keep_yearly"};

/* The period of t for rule k, as a number (for comparing) and as text (for reasons). */
static long period_of(int k, time_t t, char *text, size_t n)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    switch (k) {
    case R_DAILY:
        strftime(text, n, "%Y-%m-%d", &tm);
        return (tm.tm_year + 1900L) * 10000 + (tm.tm_mon + 1) * 100 + tm.tm_mday;
    case R_WEEKLY: {
        char g[8], v[4];
        strftime(g, sizeof g, "%G", &tm);
        strftime(v, sizeof v, "%V", &tm);
        snprintf(text, n, "%s-W%s", g, v);
        return strtol(g, NULL, 10) * 100 + strtol(v, NULL, 10);
    }
    case R_MONTHLY:
        strftime(text, n, "%Y-%m", &tm);
        return (tm.tm_year + 1900L) * 100 + tm.tm_mon + 1;
    default:
        strftime(text, n, "%Y", &tm);
        return tm.tm_year + 1900L;
    }
}

static void add_reason(struct retention_point *p, const char *fmt_rule, const char *detail)
{
    size_t len = strlen(p->why);
    snprintf(p->why + len, sizeof p->why - len, "%s%s%s%s", len ? ", " : "", fmt_rule,
             detail ? " " : "", detail ? detail : "");
}

static void span_text(int64_t s, char *out, size_t n)
{
    if (s % 86400 == 0)
        snprintf(out, n, "%lldd", (long long)(s / 86400));
    else if (s % 3600 == 0)
        snprintf(out, n, "%lldh", (long long)(s / 3600));
    else
        snprintf(out, n, "%llds", (long long)s);
}

static int cmp_newest_first(const void *a, const void *b)
{
    const struct retention_point *x = *(const struct retention_point *const *)a;
    const struct retention_point *y = *(const struct retention_point *const *)b;
    if (x->taken_at != y->taken_at)
        return x->taken_at > y->taken_at ? -1 : 1;
    return strcmp(y->name ? y->name : "", x->name ? x->name : "");
}

/* The platform's rule for one point: true (and the reason) while it keeps it. */
static bool platform_keeps(struct retention_point *p, time_t now)
{
    char ts[32];
    if (p->platform_expires <= 0) {
        add_reason(p, "platform retention", "(no expiry)");
        return true;
    }
    if (p->platform_expires > now) {
        rfc3339_from_time(p->platform_expires, ts);
        char d[48];
        snprintf(d, sizeof d, "until %s", ts);
        add_reason(p, "platform retention", d);
        return true;
    }
    return false;
}

int retention_decide(const struct config_retention *rules, struct retention_point *pts,
                     size_t n, time_t now)
{
    struct retention_point **sys = calloc(n ? n : 1, sizeof *sys);
    size_t n_sys = 0;
    if (!sys) /* without the system points' order no rule can keep one: decide nothing */
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        pts[i].keep = false;
        pts[i].why[0] = '\0';
        if (pts[i].held)
            snprintf(pts[i].why, sizeof pts[i].why, "held%s%s", *pts[i].held ? ": " : "",
                     pts[i].held);
        if (!pts[i].manual)
            sys[n_sys++] = &pts[i];
    }
    /* system points: the platform's rule, then the owner's rules over them, newest first */
    qsort(sys, n_sys, sizeof *sys, cmp_newest_first);
    int left[N_PERIODS] = {rules->keep_daily, rules->keep_weekly, rules->keep_monthly,
                           rules->keep_yearly};
    long last[N_PERIODS];
    bool any[N_PERIODS] = {false};
    time_t newest = n_sys ? sys[0]->taken_at : 0;
    for (size_t i = 0; i < n_sys; i++) {
        struct retention_point *p = sys[i];
        bool keep = platform_keeps(p, now);
        for (int k = 0; k < N_PERIODS; k++) {
            char text[16];
            long v = period_of(k, p->taken_at, text, sizeof text);
            if (left[k] <= 0 || (any[k] && v == last[k]))
                continue;
            last[k] = v;
            any[k] = true;
            if (left[k] != CONFIG_KEEP_ALL)
                left[k]--;
            add_reason(p, period_rule[k], text);
            keep = true;
        }
        if (rules->keep_within > 0 && p->taken_at > newest - rules->keep_within) {
            char d[24];
            span_text(rules->keep_within, d, sizeof d);
            add_reason(p, "keep_within", d);
            keep = true;
        }
        p->keep = keep || p->held;
        if (!p->keep) {
            char ts[32];
            rfc3339_from_time(p->platform_expires, ts);
            snprintf(p->why, sizeof p->why, "platform retention ended %s and no retention "
                     "rule keeps it", ts);
        }
    }
    free(sys);
    /* manual backups: keep_manual alone */
    for (size_t i = 0; i < n; i++) {
        struct retention_point *p = &pts[i];
        if (!p->manual)
            continue;
        char ts[32], d[80];
        if (rules->keep_manual == CONFIG_KEEP_MANUAL_ALL) {
            add_reason(p, "keep_manual all", "(manual backups stay until forgotten)");
            p->keep = true;
        } else if (rules->keep_manual == CONFIG_KEEP_MANUAL_PLATFORM) {
            p->keep = platform_keeps(p, now) || p->held;
            if (!p->keep) {
                rfc3339_from_time(p->platform_expires, ts);
                snprintf(p->why, sizeof p->why, "keep_manual platform: platform retention "
                         "ended %s", ts);
            }
        } else {
            char span[24];
            time_t until = p->taken_at + (time_t)rules->keep_manual;
            span_text(rules->keep_manual, span, sizeof span);
            rfc3339_from_time(until, ts);
            if (until > now) {
                snprintf(d, sizeof d, "%s (until %s)", span, ts);
                add_reason(p, "keep_manual", d);
                p->keep = true;
            } else {
                p->keep = p->held != NULL;
                if (!p->keep)
                    snprintf(p->why, sizeof p->why, "keep_manual %s ended %s", span, ts);
            }
        }
    }
    return 0;
}

time_t retention_expires_at(const struct config *cfg, const char *env, bool manual,
                            time_t platform_expires, time_t taken_at)
{
    if (!manual || !cfg)
        return platform_expires;
    struct config_retention rules;
    config_retention_for(cfg, env, &rules);
    if (rules.keep_manual == CONFIG_KEEP_MANUAL_ALL)
        return 0;
    if (rules.keep_manual == CONFIG_KEEP_MANUAL_PLATFORM)
        return platform_expires;
    return taken_at + (time_t)rules.keep_manual;
}

struct prune_ctx {
    const struct config *cfg;
    time_t (*platform_expiry)(void *ctx, const char *env, const struct point_summary *p);
    void *ctx;
};

static int decide_env(void *arg, const char *env, struct prune_point *pts, size_t n, time_t now)
{
    struct prune_ctx *c = arg;
    struct config_retention rules;
    config_retention_for(c->cfg, env, &rules);
    struct retention_point *rp = calloc(n ? n : 1, sizeof *rp);
    if (!rp)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        rp[i].name = pts[i].s.name;
        rp[i].taken_at = pts[i].s.taken_at;
        rp[i].manual = strcmp(pts[i].s.kind, "manual") == 0;
        rp[i].platform_expires = c->platform_expiry ? c->platform_expiry(c->ctx, env, &pts[i].s)
                                                    : pts[i].s.expires_at;
        rp[i].held = pts[i].hold ? (pts[i].hold->reason ? pts[i].hold->reason : "") : NULL;
    }
    int rc = retention_decide(&rules, rp, n, now);
    for (size_t i = 0; i < n && !rc; i++) {
        pts[i].keep = rp[i].keep;
        snprintf(pts[i].why, sizeof pts[i].why, "%s", rp[i].why);
    }
    free(rp);
    return rc;
}

int retention_prune(struct repo *repo, const struct config *cfg, time_t now, bool dry_run,
                    time_t (*platform_expiry)(void *ctx, const char *env,
                                              const struct point_summary *p),
                    void *ctx, struct prune_report *rep, struct dverr *err)
{
    struct config none = {0};
    struct prune_ctx c = {cfg ? cfg : &none, platform_expiry, ctx};
    if (!cfg)
        none.retention.keep_manual = CONFIG_KEEP_MANUAL_ALL;
    return repo_prune(repo, now, dry_run, decide_env, &c, rep, err);
}
