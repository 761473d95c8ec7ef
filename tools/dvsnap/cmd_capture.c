/* cmd_capture: `dvsnap capture` (one pass, N passes, or one every DURATION) and `dvsnap backup`
 * (a labelled manual backup), over backend/engine/capture.h. Each environment's outcome is
 * printed (a line, or its part of the pass's JSON document), recorded in its state file and, after
 * the pass, in the metrics file (health.h).
 *
 * Progress: per environment, the fraction done is the larger of the tables read and the records
 * read against the previous point's records (a full read of a table reads about as many records
 * as the point holds; a delta read finishes its tables quickly), never 100% before the last table.
 * Exit: 0 all complete, 5 a point was committed without some tables, else the first failure's.
 * Threading: capture runs table reads on its own threads; the progress callback is serialised by
 * capture; the cancel flag is set from signal handlers. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/engine/capture.h"
#include "backend/engine/policy.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/health.h"
#include "tools/dvsnap/progress.h"

static atomic_int cancel_flag;

static void on_signal(int sig)
{
    (void)sig;
    atomic_store(&cancel_flag, 1);
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* ---------------------------------------------------------------- progress */

struct cap_progress {
    struct progress pr;
    struct repo *repo;
    char env[256];              /* the environment being captured */
    uint64_t prev_records;      /* records of its previous point (0: none) */
};

static uint64_t previous_records(struct repo *repo, const char *env)
{
    char name[32];
    struct point *p = NULL;
    uint64_t n = 0;
    if (cli_resolve_point(repo, env, "latest", name, NULL) == 0 &&
        repo_point_load(repo, env, name, &p, NULL) == 0)
        for (size_t i = 0; i < p->n_tables; i++)
            n += p->tables[i].records;
    point_free(p);
    return n;
}

static void on_progress(void *ctx, const struct capture_progress *p)
{
    struct cap_progress *cp = ctx;
    if (cp->pr.mode == PROGRESS_NONE)
        return;
    bool fresh = strcmp(cp->env, p->env) != 0;
    if (fresh) {
        snprintf(cp->env, sizeof cp->env, "%s", p->env);
        cp->prev_records = previous_records(cp->repo, p->env);
        progress_restart(&cp->pr);
    }
    double f = p->tables_total ? (double)p->tables_done / (double)p->tables_total : 0;
    if (cp->prev_records) {
        double r = (double)p->records / (double)cp->prev_records;
        if (r > f)
            f = r;
    }
    if (f > 0.99 && p->tables_done < p->tables_total)
        f = 0.99;
    char detail[64], extra[160];
    snprintf(detail, sizeof detail, "%" PRIu64 "/%" PRIu64 " tables", p->tables_done,
             p->tables_total);
    snprintf(extra, sizeof extra,
             "\"tables_done\":%" PRIu64 ",\"tables_total\":%" PRIu64
             ",\"records_previous_point\":%" PRIu64,
             p->tables_done, p->tables_total, cp->prev_records);
    struct progress_item it = {p->env, NULL, p->table, f, p->records, "records", 0, detail, extra};
    progress_update(&cp->pr, &it, fresh || p->tables_done == p->tables_total);
}

/* ---------------------------------------------------------------- one environment's outcome */

static const char *env_status(const struct health_env *e)
{
    if (e->rc == -EPERM)
        return "skipped";
    if (e->rc)
        return "failed";
    return health_env_partial(e) ? "partial" : "done";
}

/* Its element of the "environments" array (docs/json.md). */
static void env_json(struct buf *b, const struct health_env *e, const char *label)
{
    buf_addstr(b, "{\"env\":");
    json_str(b, e->env);
    buf_addstr(b, ",\"status\":");
    json_str(b, env_status(e));
    if (label) {
        buf_addstr(b, ",\"label\":");
        json_str(b, label);
    }
    buf_addstr(b, ",\"point\":");
    json_str(b, e->rc == 0 ? e->res.point : NULL);
    buf_printf(b,
               ",\"tables\":%" PRIu64 ",\"delta_reads\":%" PRIu64 ",\"full_reads\":%" PRIu64
               ",\"records_read\":%" PRIu64 ",\"records_changed\":%" PRIu64 ",\"files\":%" PRIu64,
               e->res.tables, e->res.delta_reads, e->res.full_reads, e->res.records_read,
               e->res.records_changed, e->res.files);
    buf_addstr(b, ",\"tables_not_captured\":");
    health_not_captured_json(b, e->not_captured, e->not_captured_reasons, e->n_not_captured,
                             false);
    buf_printf(b,
               ",\"requests\":%" PRIu64 ",\"throttled\":%" PRIu64 ",\"bytes_stored\":%" PRIu64
               ",\"duration_seconds\":%.3f,\"error\":",
               e->requests, e->throttled, e->bytes_stored, e->duration_s);
    json_str(b, e->rc ? e->error : NULL);
    buf_addstr(b, ",\"anomaly\":"); /* a mass delete flagged the point (anomaly.h) */
    json_str(b, e->rc == 0 && e->res.anomaly ? e->res.anomaly_note : NULL);
    buf_addch(b, '}');
}

/* The line a person reads. */
static void env_line(const struct health_env *e)
{
    if (e->rc == -EPERM) {
        printf("%s: not backed up: %s\n", e->env, e->error ? e->error : "");
    } else if (e->rc) {
        fprintf(stderr, "%s: capture failed: %s\n", e->env, e->error ? e->error : "");
    } else {
        const struct capture_result *r = &e->res;
        printf("%s: point %s: %" PRIu64 " tables (%" PRIu64 " delta, %" PRIu64 " full reads%s), "
               "%" PRIu64 " records read, %" PRIu64 " changed, %" PRIu64 " files, %" PRIu64
               " requests\n",
               e->env, r->point, r->tables, r->delta_reads, r->full_reads,
               r->tables_failed ? ", some not read: see backup.json" : "", r->records_read,
               r->records_changed, r->files, r->requests);
        for (size_t i = 0; i < e->n_not_captured; i++)
            printf("%s: table %s not captured (shown as of the point before): %s\n", e->env,
                   e->not_captured[i], e->not_captured_reasons[i] ? e->not_captured_reasons[i]
                                                                  : "");
        if (r->anomaly)
            printf("%s: ANOMALY: point %s is flagged: %s (backup.json \"anomaly\"); the point "
                   "before it is held\n", e->env, r->point, r->anomaly_note);
    }
    fflush(stdout);
}

/* ---------------------------------------------------------------- capture */

struct pass_state {
    struct cli *cli;
    struct cap_progress *cp;
    struct health *health;
    struct buf envs;            /* --json: the "environments" elements so far */
    int failures, partial, first_fail_rc;
    int anomalies;              /* points flagged by the mass-delete check (anomaly.h) this pass */
};

static void env_done(void *ctx, const struct dv_env *env, int rc, const struct capture_result *res,
                     const struct dverr *err)
{
    struct pass_state *ps = ctx;
    struct health_env e;
    progress_clear(&ps->cp->pr);
    ps->cp->env[0] = '\0';
    health_env_done(ps->health, env, rc, res, err, &e);
    if (rc && rc != -EPERM) {
        ps->failures++;
        if (!ps->first_fail_rc)
            ps->first_fail_rc = rc;
    } else if (health_env_partial(&e)) {
        ps->partial++;
    }
    if (rc == 0 && res->anomaly)
        ps->anomalies++;
    if (ps->cli->json) {
        if (ps->envs.len)
            buf_addch(&ps->envs, ',');
        env_json(&ps->envs, &e, NULL);
    }
    if (rc && rc != -EPERM) /* failures go to stderr in every mode */
        env_line(&e);
    else if (!ps->cli->json && !ps->cli->quiet)
        env_line(&e);
    health_env_release(&e);
}

static int pass_exit_code(const struct pass_state *ps, int rc)
{
    if (ps->failures)
        return ps->first_fail_rc == -EBUSY ? EXIT_LOCKED
               : ps->first_fail_rc == -EPERM ? EXIT_REFUSED
                                              : EXIT_FAIL;
    if (rc)
        return rc == -EBUSY ? EXIT_LOCKED : EXIT_FAIL;
    return ps->anomalies ? EXIT_ANOMALY : ps->partial ? EXIT_PARTIAL : EXIT_OK;
}

/* The passes of `dvsnap capture`, with its options parsed; only: NULL-terminated environment
 * names, or NULL for the configured ones. The exit code of the last pass. */
static int capture_passes(struct cli *cli, const char *const *only, int64_t every,
                          int concurrency, long passes)
{
    struct dverr err = {0};
    struct health *health = NULL;
    int code = EXIT_OK;
    struct capture_opts opts = {0};
    if (cli_pinned_time(cli, &opts.now))
        return cli_usage_error(cli, "--now (or DVSNAP_NOW) must be an RFC 3339 time");
    struct dv_client *dv = cli_dv(cli);
    struct repo *repo = dv ? cli_repo(cli) : NULL;
    if (!repo || health_new(cli->cfg, repo, cli->meter, dv, &health))
        return EXIT_FAIL;
    catch_signals();
    struct cap_progress cp = {.repo = repo};
    progress_init(&cp.pr, cli, "capture", false);
    struct pass_state ps = {.cli = cli, .cp = &cp, .health = health};
    opts.concurrency = concurrency;
    opts.progress = on_progress;
    opts.progress_ctx = &cp;
    opts.cancel = &cancel_flag;
    opts.only_envs = only;
    opts.env_done = env_done;
    opts.env_done_ctx = &ps;
    bool interrupted = false;
    for (long pass = 1;; pass++) {
        int64_t start = now_ms();
        time_t started_at = time(NULL);
        dverr_clear(&err);
        ps.failures = ps.partial = ps.first_fail_rc = ps.anomalies = 0;
        buf_reset(&ps.envs);
        health_pass_begin(health);
        int rc = capture_all(dv, repo, cli->cfg, &opts, &err);
        progress_clear(&cp.pr);
        struct dverr merr = {0};
        if (health_pass_end(health, &merr))
            fprintf(stderr, "dvsnap capture: %s\n", dverr_msg(&merr));
        interrupted = rc == -ECANCELED;
        if (rc && rc != -ECANCELED && !ps.failures) /* not one environment's (the admin API) */
            fprintf(stderr, "dvsnap capture: %s\n", dverr_msg(&err));
        code = interrupted ? EXIT_FAIL : pass_exit_code(&ps, rc);
        if (cli->json) {
            struct buf doc = BUF_INIT;
            buf_printf(&doc, "{\"pass\":%ld,\"started_at\":", pass);
            json_time(&doc, started_at);
            buf_printf(&doc, ",\"duration_seconds\":%.3f,\"environments\":[",
                       (double)(now_ms() - start) / 1000.0);
            buf_add(&doc, ps.envs.data ? ps.envs.data : "", ps.envs.len);
            buf_addstr(&doc, "],\"error\":");
            json_str(&doc, rc && rc != -ECANCELED && !ps.failures ? dverr_msg(&err)
                           : interrupted                         ? "interrupted"
                                                                 : NULL);
            buf_printf(&doc, ",\"exit_code\":%d}", code);
            if (json_print(&doc) != EXIT_OK)
                code = EXIT_FAIL;
            buf_release(&doc);
        }
        if (interrupted || atomic_load(&cancel_flag))
            break;
        if (pass < passes)
            continue;
        if (!every)
            break;
        /* wait for the next pass; a signal ends the loop between passes */
        while (!atomic_load(&cancel_flag) && now_ms() - start < every * 1000) {
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&cancel_flag))
            break; /* stopped between passes: nothing was cut short */
    }
    buf_release(&ps.envs);
    health_free(health);
    if (interrupted)
        fprintf(stderr, "dvsnap capture: interrupted; no half point was written\n");
    return code;
}

int cmd_capture(struct cli *cli, const struct cli_args *a)
{
    const char **only = calloc(a->n_opts + 1, sizeof *only);
    size_t n_only = 0;
    int64_t every = 0;
    long passes = 1;
    int concurrency = 0, code = EXIT_OK;
    if (!only)
        return EXIT_FAIL;
    for (size_t i = 0; i < a->n_opts; i++) {
        const char *v = a->opts[i].arg;
        char *end = NULL;
        switch (a->opts[i].val) {
        case O_ENV: only[n_only++] = v; break;
        case O_EVERY:
            if (parse_duration(v, &every) || every <= 0) {
                code = cli_usage_error(cli, "--every takes a duration like 15m, not '%s'", v);
                goto out;
            }
            break;
        case O_CONCURRENCY:
            concurrency = (int)strtol(v, &end, 10);
            if (*end || concurrency < 1 || concurrency > 52) {
                code = cli_usage_error(cli, "--concurrency takes a number from 1 to 52");
                goto out;
            }
            break;
        case O_PASSES: /* N passes back to back in one process (benchmarks: one token) */
            passes = strtol(v, &end, 10);
            if (*end || passes < 1) {
                code = cli_usage_error(cli, "--passes takes a positive count");
                goto out;
            }
            break;
        }
    }
    if (a->n_pos) {
        code = cli_usage_error(cli, "takes no arguments (environments go with --env)");
        goto out;
    }
    code = capture_passes(cli, n_only ? only : NULL, every, concurrency, passes);
out:
    free(only);
    return code;
}

/* ---------------------------------------------------------------- backup */

int cmd_backup(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    const char *label = NULL;
    for (size_t i = 0; i < a->n_opts; i++)
        if (a->opts[i].val == O_LABEL)
            label = a->opts[i].arg;
    /* O_WAIT: the command always waits */
    if (a->n_pos != 1 || !label)
        return cli_usage_error(cli, "needs ENV and --label TEXT");
    const char *env_name = a->pos[0];
    if (!*label || strlen(label) > 200 || strchr(label, '\n'))
        return cli_usage_error(cli, "the label must be one line of 1 to 200 bytes");
    struct capture_opts opts = {0};
    if (cli_pinned_time(cli, &opts.now))
        return cli_usage_error(cli, "--now (or DVSNAP_NOW) must be an RFC 3339 time");
    struct dv_client *dv = cli_dv(cli);
    struct repo *repo = dv ? cli_repo(cli) : NULL;
    struct health *health = NULL;
    if (!repo || health_new(cli->cfg, repo, cli->meter, dv, &health))
        return EXIT_FAIL;
    struct dv_env env;
    memset(&env, 0, sizeof env);
    int rc = dv_env_get(dv, env_name, &env, &err), code;
    if (rc) {
        health_free(health);
        return cli_fail(cli, rc, &err);
    }
    if ((rc = policy_manual_backup_allowed(&env, &err))) {
        fprintf(stderr, "dvsnap backup: %s\n", dverr_msg(&err));
        dv_env_release(&env);
        health_free(health);
        return EXIT_REFUSED;
    }
    catch_signals();
    struct cap_progress cp = {.repo = repo};
    progress_init(&cp.pr, cli, "backup", false);
    struct capture_result res;
    struct health_env e;
    memset(&res, 0, sizeof res);
    opts.label = label;
    opts.progress = on_progress;
    opts.progress_ctx = &cp;
    opts.cancel = &cancel_flag;
    health_pass_begin(health);
    rc = capture_env(dv, repo, cli->cfg, &env, &opts, &res, &err);
    progress_clear(&cp.pr);
    health_env_done(health, &env, rc, &res, &err, &e);
    struct dverr merr = {0};
    if (health_pass_end(health, &merr))
        fprintf(stderr, "dvsnap backup: %s\n", dverr_msg(&merr));
    if (rc)
        code = cli_fail(cli, rc, &err);
    else
        code = res.anomaly ? EXIT_ANOMALY : health_env_partial(&e) ? EXIT_PARTIAL : EXIT_OK;
    if (cli->json) {
        struct buf doc = BUF_INIT;
        env_json(&doc, &e, label);
        if (json_print(&doc) != EXIT_OK && code == EXIT_OK)
            code = EXIT_FAIL;
        buf_release(&doc);
    } else if (rc == 0 && !cli->quiet) {
        printf("%s: manual backup \"%s\" is point %s\n", env_name, label, res.point);
        env_line(&e);
    }
    health_env_release(&e);
    dv_env_release(&env);
    health_free(health);
    return code;
}
