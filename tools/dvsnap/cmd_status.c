/* cmd_status: `dvsnap status [ENV]...`: the health of each environment's backups, for people
 * (a table) and for monitoring (--json, and the exit code, so a Nagios-style check is one line).
 *
 * Per environment: the newest point and its age (from the repository: points taken on any
 * machine count), the capture lag (how far the newest point is past capture_every), the tables
 * the newest point could not capture (its not_captured), and from the state file this machine
 * keeps (health.h) the last capture's result, the last failure and its reason. Without ENV it
 * covers every environment the repository or the state files know, less those the `environments`
 * setting does not select and those policy does not back up (trials; known from the repository's
 * environment document). It needs no Dataverse client.
 * Exit: 7 when an environment is stale (newest point older than stale_after, or no point), else
 * 5 when a newest point lacks tables, else 0 (a failed capture alone is not an error while the
 * newest point is fresh: the next pass may succeed; the metrics show it at once).
 * Single-threaded. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/engine/policy.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/health.h"

struct env_status {
    const char *env;
    bool backed_up;            /* false: policy does not back it up (trial) */
    char newest[32];           /* "" when no point */
    time_t newest_at;
    size_t points;
    int64_t age, lag;          /* seconds; -1 without a point */
    bool stale, partial, failing;
    char **nc, **nc_reasons;   /* tables the newest point lacks */
    size_t n_nc;
    struct health_state st;    /* zeroed when there is no state file */
    bool have_state;
};

static void env_status_release(struct env_status *s)
{
    strv_free(s->nc, s->n_nc);
    strv_free(s->nc_reasons, s->n_nc);
    health_state_release(&s->st);
}

/* Is env backed up by policy, judged from its document in the repository (true when unknown)? */
static bool backed_up(struct repo *repo, const char *env)
{
    struct buf doc = BUF_INIT;
    struct dv_env e;
    bool yes = true;
    if (repo_env_doc(repo, env, &doc, NULL) == 0 && doc.len &&
        dv_env_from_json(doc.data, doc.len, &e) == 0) {
        yes = policy_backup_allowed(&e, NULL) == 0;
        dv_env_release(&e);
    }
    buf_release(&doc);
    return yes;
}

static int assess(struct cli *cli, struct repo *repo, struct env_status *s, time_t now,
                  struct dverr *err)
{
    const struct config *cfg = cli->cfg;
    struct point_summary *ps = NULL;
    size_t n = 0;
    s->backed_up = backed_up(repo, s->env);
    int rc = repo_points(repo, s->env, &ps, &n, err);
    if (rc)
        return rc;
    s->points = n;
    s->age = s->lag = -1;
    if (n) {
        snprintf(s->newest, sizeof s->newest, "%s", ps[n - 1].name);
        s->newest_at = ps[n - 1].taken_at;
        s->age = now > s->newest_at ? (int64_t)(now - s->newest_at) : 0;
        s->lag = s->age > cfg->capture_every ? s->age - cfg->capture_every : 0;
        health_point_not_captured(repo, s->env, s->newest, &s->nc, &s->nc_reasons, &s->n_nc);
    }
    point_summaries_free(ps, n);
    s->have_state = health_state_read(cfg, s->env, &s->st) == 0;
    s->stale = s->backed_up && (!n || s->age > cfg->stale_after);
    s->partial = s->n_nc > 0;
    s->failing = s->have_state && s->st.last_result && strcmp(s->st.last_result, "failed") == 0;
    return 0;
}

static const char *state_word(const struct env_status *s)
{
    if (!s->backed_up)
        return "not-backed-up";
    if (!s->points)
        return "never";
    if (s->stale)
        return "stale";
    if (s->failing)
        return "failing";
    if (s->partial)
        return "partial";
    return "ok";
}

/* 93784 -> "1d2h", 3725 -> "1h2m", 125 -> "2m5s", 7 -> "7s" */
static void fmt_age(int64_t s, char out[24])
{
    if (s < 0)
        snprintf(out, 24, "-");
    else if (s >= 86400)
        snprintf(out, 24, "%" PRId64 "d%" PRId64 "h", s / 86400, s / 3600 % 24);
    else if (s >= 3600)
        snprintf(out, 24, "%" PRId64 "h%" PRId64 "m", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(out, 24, "%" PRId64 "m%" PRId64 "s", s / 60, s % 60);
    else
        snprintf(out, 24, "%" PRId64 "s", s);
}

static void status_json(struct buf *b, const struct env_status *s)
{
    buf_addstr(b, "{\"env\":");
    json_str(b, s->env);
    buf_addstr(b, ",\"state\":");
    json_str(b, state_word(s));
    buf_printf(b, ",\"backed_up\":%s,\"stale\":%s,\"partial\":%s,\"failing\":%s,\"points\":%zu",
               s->backed_up ? "true" : "false", s->stale ? "true" : "false",
               s->partial ? "true" : "false", s->failing ? "true" : "false", s->points);
    buf_addstr(b, ",\"newest_point\":");
    json_str(b, s->points ? s->newest : NULL);
    buf_addstr(b, ",\"newest_point_at\":");
    json_time(b, s->points ? s->newest_at : 0);
    if (s->age >= 0)
        buf_printf(b, ",\"age_seconds\":%" PRId64 ",\"lag_seconds\":%" PRId64, s->age, s->lag);
    else
        buf_addstr(b, ",\"age_seconds\":null,\"lag_seconds\":null");
    buf_addstr(b, ",\"tables_not_captured\":");
    health_not_captured_json(b, s->nc, s->nc_reasons, s->n_nc, false);
    buf_addstr(b, ",\"last_attempt_at\":");
    json_time(b, s->st.last_attempt_at);
    buf_addstr(b, ",\"last_result\":");
    json_str(b, s->st.last_result);
    buf_addstr(b, ",\"last_success_at\":");
    json_time(b, s->st.last_success_at);
    buf_addstr(b, ",\"last_failure_at\":");
    json_time(b, s->st.last_failure_at);
    buf_addstr(b, ",\"last_error\":");
    json_str(b, s->st.last_error);
    buf_addch(b, '}');
}

static void status_line(const struct env_status *s)
{
    char age[24], lag[24];
    fmt_age(s->age, age);
    fmt_age(s->lag, lag);
    printf("%-24s %-13s %-20s %-8s %-8s %-8s %zu\n", s->env, state_word(s),
           s->points ? s->newest : "-", age, lag,
           s->st.last_result ? s->st.last_result : "-", s->n_nc);
}

static void status_notes(const struct env_status *s)
{
    char when[32];
    if (s->have_state && s->st.last_failure_at && s->st.last_error) {
        rfc3339_from_time(s->st.last_failure_at, when);
        printf("  %s: last failure %s%s: %s\n", s->env, when,
               s->failing ? "" : " (since recovered)", s->st.last_error);
    }
    for (size_t i = 0; i < s->n_nc; i++)
        printf("  %s: table %s not captured: %s\n", s->env, s->nc[i],
               s->nc_reasons[i] ? s->nc_reasons[i] : "");
}

/* names: the arguments, or what the repository and the state files know (sorted, unique). */
static int environments(struct cli *cli, struct repo *repo, const struct cli_args *a,
                        char ***out, size_t *n, struct dverr *err)
{
    char **v = calloc(a->n_pos + 1, sizeof *v), **r = NULL, **h = NULL;
    size_t k = 0, nr = 0, nh = 0;
    int rc = 0;
    if (!v)
        return -ENOMEM;
    if (a->n_pos) {
        for (; k < a->n_pos; k++)
            if (!(v[k] = strdup(a->pos[k])))
                rc = -ENOMEM;
        goto out;
    }
    if ((rc = repo_envs(repo, &r, &nr, err)) || (rc = health_state_envs(cli->cfg, &h, &nh)))
        goto out;
    char **all = realloc(v, (nr + nh + 1) * sizeof *v);
    if (!all) {
        rc = -ENOMEM;
        goto out;
    }
    v = all;
    /* both lists are sorted: merge them, dropping duplicates and environments not selected */
    for (size_t i = 0, j = 0; i < nr || j < nh;) {
        int c = i == nr ? 1 : j == nh ? -1 : strcmp(r[i], h[j]);
        const char *name = c <= 0 ? r[i] : h[j];
        if (config_env_selected(cli->cfg, name) && !(v[k++] = strdup(name))) {
            rc = -ENOMEM;
            break;
        }
        if (c <= 0)
            i++;
        if (c >= 0)
            j++;
    }
out:
    strv_free(r, nr);
    strv_free(h, nh);
    if (rc) {
        strv_free(v, k);
        return rc;
    }
    *out = v;
    *n = k;
    return 0;
}

int cmd_status(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    time_t now;
    if (cli_now(cli, &now))
        return cli_usage_error(cli, "--now (or DVSNAP_NOW) takes an RFC 3339 time");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    char **names = NULL;
    size_t n = 0;
    int rc = environments(cli, repo, a, &names, &n, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    struct env_status *st = calloc(n ? n : 1, sizeof *st);
    if (!st) {
        strv_free(names, n);
        return EXIT_FAIL;
    }
    bool any_stale = false, any_partial = false;
    size_t shown = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        st[i].env = names[i];
        if ((rc = assess(cli, repo, &st[i], now, &err)))
            break;
        if (!st[i].backed_up && !a->n_pos)
            continue; /* trials and the like: nothing to watch */
        any_stale |= st[i].stale;
        any_partial |= st[i].partial;
        shown++;
    }
    int code = rc ? cli_fail(cli, rc, &err)
               : any_stale ? EXIT_STALE
               : any_partial ? EXIT_PARTIAL
                             : EXIT_OK;
    if (!rc && cli->json) {
        struct buf doc = BUF_INIT;
        buf_addstr(&doc, "{\"now\":");
        json_time(&doc, now);
        buf_printf(&doc,
                   ",\"stale_after_seconds\":%" PRId64 ",\"capture_every_seconds\":%" PRId64
                   ",\"environments\":[",
                   cli->cfg->stale_after, cli->cfg->capture_every);
        for (size_t i = 0, k = 0; i < n; i++) {
            if (!st[i].backed_up && !a->n_pos)
                continue;
            if (k++)
                buf_addch(&doc, ',');
            status_json(&doc, &st[i]);
        }
        buf_printf(&doc, "],\"exit_code\":%d}", code);
        if (json_print(&doc) != EXIT_OK)
            code = EXIT_FAIL;
        buf_release(&doc);
    } else if (!rc) {
        printf("%-24s %-13s %-20s %-8s %-8s %-8s %s\n", "ENV", "STATE", "NEWEST POINT", "AGE",
               "LAG", "LAST", "NOT CAPTURED");
        for (size_t i = 0; i < n; i++)
            if (st[i].backed_up || a->n_pos)
                status_line(&st[i]);
        for (size_t i = 0; i < n; i++)
            if (st[i].backed_up || a->n_pos)
                status_notes(&st[i]);
        if (!shown)
            printf("(no environment has been captured yet)\n");
    }
    for (size_t i = 0; i < n; i++)
        env_status_release(&st[i]);
    free(st);
    strv_free(names, n);
    return code;
}
