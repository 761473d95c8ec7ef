/* cmd_repo: the repository commands (init, env list, capture, backup, points, cat, changes, prune,
 * forget, check). Thin: each parses its arguments, opens what it needs through cli.h and calls
 * capture.h / repo.h / policy.h. Output for people on stdout, errors on stderr, progress only on
 * a terminal. POINT arguments accept a point name (YYYY-MM-DDTHHMMSSZ), `latest`, a manual
 * backup's label, or an RFC 3339 time (the newest point at or before it).
 * Single-threaded apart from what capture runs; the cancel flag is set from signal handlers. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/engine/capture.h"
#include "backend/base/json.h"
#include "backend/base/log.h"
#include "backend/engine/policy.h"
#include "tools/dvsnap/cli.h"

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

static int fail_rc(const char *cmd, int rc, const struct dverr *err)
{
    const char *m = dverr_msg(err);
    fprintf(stderr, "dvsnap %s: %s\n", cmd, *m ? m : strerror(rc < 0 ? -rc : rc));
    if (rc == -EIO)
        return EXIT_DAMAGED;
    if (rc == -ENOENT || rc == -ECANCELED || rc == -ESTALE)
        return EXIT_FAIL;
    return cli_exit_code(rc);
}

static int usage_error(const char *cmd, const char *msg)
{
    fprintf(stderr, "dvsnap %s: %s (see `dvsnap help %s`)\n", cmd, msg, cmd);
    return EXIT_USAGE;
}

static void fmt_time(time_t t, char out[32])
{
    if (t <= 0)
        snprintf(out, 32, "-");
    else
        rfc3339_from_time(t, out);
}

/* "now" for prune and tests: --now TIME, else $DVSNAP_NOW (RFC 3339), else the clock. */
static int parse_now(const char *s, time_t *out)
{
    if (!s)
        s = getenv("DVSNAP_NOW");
    if (!s || !*s) {
        *out = time(NULL);
        return 0;
    }
    return rfc3339_to_time(s, out);
}

/* ---------------------------------------------------------------- environment documents */

/* The parts of an admin API environment object policy needs (BAP shape, dataverse-api.md 10a),
 * for environments known only from the repository's envs/<env>.json. */
static int env_from_doc(const char *json, size_t len, struct dv_env *env)
{
    struct json_doc *doc = NULL;
    memset(env, 0, sizeof *env);
    int rc = json_parse(json, len, NULL, &doc, NULL);
    if (rc)
        return rc;
    const struct json_node *root = json_root(doc);
    const struct json_node *props = json_get(root, "properties");
    const struct json_node *lem = props ? json_get(props, "linkedEnvironmentMetadata") : NULL;
    const struct json_node *ret = props ? json_get(props, "retentionDetails") : NULL;
    const char *period = ret ? json_get_str(ret, "retentionPeriod") : NULL;
    if (!period && props)
        period = json_get_str(props, "retentionPeriod");
    const char *s;
    if (lem && (s = json_get_str(lem, "uniqueName")))
        env->unique_name = strdup(s);
    if (props && (s = json_get_str(props, "environmentSku")))
        env->sku = strdup(s);
    if ((s = json_get_str(root, "location")))
        env->geo = strdup(s);
    env->is_default = (props && json_get_bool(props, "isDefault", false)) ||
                      json_get_bool(root, "isDefault", false) ||
                      (env->sku && strcmp(env->sku, "Default") == 0);
    if (period && period[0] == 'P') {
        int days = 0;
        const char *p = period + 1;
        while (*p >= '0' && *p <= '9' && days < 100000)
            days = days * 10 + (*p++ - '0');
        if (*p == 'D' && p[1] == '\0')
            env->retention_days = days;
    }
    const struct json_node *tpl = lem ? json_get(lem, "templates") : NULL;
    for (const struct json_node *t = tpl && tpl->type == JSON_ARRAY ? tpl->child : NULL; t;
         t = t->next)
        if (t->type == JSON_STRING && strncmp(t->str, "D365_", 5) == 0)
            env->has_d365_apps = true;
    json_doc_free(doc);
    return 0;
}

/* ---------------------------------------------------------------- point names */

/* Resolve POINT (name, latest, label, RFC 3339 time) to a point name of env. */
static int resolve_point(struct repo *repo, const char *env, const char *arg, char out[32],
                         struct dverr *err)
{
    struct point_summary *ps = NULL;
    size_t n = 0;
    int rc = repo_points(repo, env, &ps, &n, err);
    if (rc)
        return rc;
    rc = -ENOENT;
    time_t t;
    if (n && strcmp(arg, "latest") == 0) {
        snprintf(out, 32, "%s", ps[n - 1].name);
        rc = 0;
    }
    for (size_t i = 0; rc && i < n; i++)
        if (strcmp(ps[i].name, arg) == 0) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    for (size_t i = n; rc && i-- > 0;) /* newest manual backup with that label */
        if (ps[i].label && strcmp(ps[i].label, arg) == 0) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    if (rc && rfc3339_to_time(arg, &t) == 0)
        for (size_t i = n; rc && i-- > 0;)
            if (ps[i].taken_at <= t) {
                snprintf(out, 32, "%s", ps[i].name);
                rc = 0;
            }
    point_summaries_free(ps, n);
    if (rc)
        return dverr_set(err, -ENOENT, "%s has no point %s%s", env, arg,
                         n ? "" : " (it has no points at all)");
    return 0;
}

static const struct point_table *find_table(const struct point *p, const char *name)
{
    size_t n = strlen(name);
    if (n > 5 && strcmp(name + n - 5, ".json") == 0)
        n -= 5;
    for (size_t i = 0; i < p->n_tables; i++)
        if (strlen(p->tables[i].name) == n && memcmp(p->tables[i].name, name, n) == 0)
            return &p->tables[i];
    return NULL;
}

/* ---------------------------------------------------------------- init, env */

int cmd_init(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    bool encrypt = true;
    if (argc == 2 && strcmp(argv[1], "--insecure-no-encryption") == 0)
        encrypt = false;
    else if (argc != 1)
        return usage_error("init", "takes no arguments but --insecure-no-encryption");
    struct config *cfg = cli_config(cli);
    if (!cfg)
        return EXIT_FAIL;
    int rc = repo_init(cfg, encrypt, &err);
    if (rc == -EEXIST) {
        fprintf(stderr, "dvsnap init: %s\n", *dverr_msg(&err) ? dverr_msg(&err)
                                                              : "a repository exists there");
        return EXIT_FAIL;
    }
    if (rc)
        return fail_rc("init", rc, &err);
    printf("created %s repository %s\n", encrypt ? "encrypted" : "UNENCRYPTED", cfg->repository);
    return EXIT_OK;
}

int cmd_env(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    if (argc < 2 || strcmp(argv[1], "list") != 0 || argc > 2)
        return usage_error("env", "usage: dvsnap env list");
    struct dv_client *dv = cli_dv(cli);
    if (!dv)
        return EXIT_FAIL;
    struct dv_env *envs = NULL;
    size_t n = 0;
    int rc = dv_env_list(dv, &envs, &n, &err);
    if (rc)
        return fail_rc("env", rc, &err);
    printf("%-24s %-11s %-14s %-12s %-9s %-10s %s\n", "NAME", "TYPE", "GEO", "REGION",
           "RETENTION", "STATE", "BACKUPS");
    for (size_t i = 0; i < n; i++) {
        const struct dv_env *e = &envs[i];
        struct dverr why = {0};
        char ret[16] = "-", backups[160];
        int days = policy_retention_days(e);
        if (days)
            snprintf(ret, sizeof ret, "%dd", days);
        if (!config_env_selected(cli->cfg, e->unique_name ? e->unique_name : ""))
            snprintf(backups, sizeof backups, "not selected (environments =)");
        else if (policy_backup_allowed(e, &why))
            snprintf(backups, sizeof backups, "none: %s", dverr_msg(&why));
        else if (policy_manual_backup_allowed(e, &why))
            snprintf(backups, sizeof backups, "system (no manual backups)");
        else
            snprintf(backups, sizeof backups, "system + manual");
        printf("%-24s %-11s %-14s %-12s %-9s %-10s %s\n", e->unique_name ? e->unique_name : "?",
               e->sku ? e->sku : "?", e->geo ? e->geo : "-", e->region ? e->region : "-", ret,
               e->runtime_state ? e->runtime_state : "-", backups);
    }
    dv_env_list_free(envs, n);
    return EXIT_OK;
}

/* ---------------------------------------------------------------- capture, backup */

struct progress_state {
    bool tty;
    bool shown;
};

static void show_progress(void *ctx, const struct capture_progress *p)
{
    struct progress_state *ps = ctx;
    if (!ps->tty)
        return;
    fprintf(stderr, "\r\033[K%s: %llu/%llu tables, %llu records%s%s", p->env,
            (unsigned long long)p->tables_done, (unsigned long long)p->tables_total,
            (unsigned long long)p->records, p->table ? ", reading " : "",
            p->table ? p->table : "");
    ps->shown = true;
}

static void clear_progress(struct progress_state *ps)
{
    if (ps->shown)
        fprintf(stderr, "\r\033[K");
    ps->shown = false;
}

static void print_result(const char *env, const struct capture_result *r)
{
    printf("%s: point %s: %llu tables (%llu delta, %llu full reads%s), %llu records read, "
           "%llu changed, %llu files, %llu requests\n",
           env, r->point, (unsigned long long)r->tables, (unsigned long long)r->delta_reads,
           (unsigned long long)r->full_reads, r->tables_failed ? ", some not read: see backup.json"
                                                               : "",
           (unsigned long long)r->records_read, (unsigned long long)r->records_changed,
           (unsigned long long)r->files, (unsigned long long)r->requests);
    fflush(stdout);
}

struct pass_state {
    struct progress_state progress;
    int failures;
};

static void env_done(void *ctx, const struct dv_env *env, int rc, const struct capture_result *res,
                     const struct dverr *err)
{
    struct pass_state *ps = ctx;
    clear_progress(&ps->progress);
    if (rc == 0)
        print_result(env->unique_name, res);
    else if (rc == -EPERM)
        printf("%s: not backed up: %s\n", env->unique_name, dverr_msg(err));
    else {
        fprintf(stderr, "%s: capture failed: %s\n", env->unique_name, dverr_msg(err));
        ps->failures++;
    }
    fflush(stdout);
}

int cmd_capture(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    const char **only = calloc((size_t)argc + 1, sizeof *only);
    size_t n_only = 0;
    int64_t every = 0;
    long passes = 1;
    int concurrency = 0, rc = 0;
    if (!only)
        return EXIT_FAIL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--env") == 0 && i + 1 < argc) {
            only[n_only++] = argv[++i];
        } else if (strcmp(argv[i], "--every") == 0 && i + 1 < argc) {
            if (parse_duration(argv[++i], &every) || every <= 0) {
                free(only);
                return usage_error("capture", "--every takes a duration like 15m");
            }
        } else if (strcmp(argv[i], "--concurrency") == 0 && i + 1 < argc) {
            concurrency = (int)strtol(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--passes") == 0 && i + 1 < argc) {
            /* N passes back to back in one process (benchmarks: one token, one window) */
            passes = strtol(argv[++i], NULL, 10);
            if (passes < 1) {
                free(only);
                return usage_error("capture", "--passes takes a positive count");
            }
        } else {
            free(only);
            return usage_error("capture", "unknown argument");
        }
    }
    struct dv_client *dv = cli_dv(cli);
    struct repo *repo = dv ? cli_repo(cli) : NULL;
    if (!repo) {
        free(only);
        return EXIT_FAIL;
    }
    catch_signals();
    struct pass_state ps = {{cli_tty(), false}, 0};
    struct capture_opts opts = {0};
    opts.concurrency = concurrency;
    if (parse_now(NULL, &opts.now)) {
        free(only);
        return usage_error("capture", "DVSNAP_NOW must be an RFC 3339 time");
    }
    if (!getenv("DVSNAP_NOW"))
        opts.now = 0;
    opts.progress = show_progress;
    opts.progress_ctx = &ps.progress;
    opts.cancel = &cancel_flag;
    opts.only_envs = n_only ? only : NULL;
    opts.env_done = env_done;
    opts.env_done_ctx = &ps;
    for (long pass = 1;; pass++) {
        int64_t start = now_ms();
        dverr_clear(&err);
        ps.failures = 0;
        rc = capture_all(dv, repo, cli->cfg, &opts, &err);
        clear_progress(&ps.progress);
        if (rc == -ECANCELED || atomic_load(&cancel_flag))
            break;
        if (rc && !ps.failures) /* not reported per environment (e.g. the admin API failed) */
            fprintf(stderr, "dvsnap capture: %s\n", dverr_msg(&err));
        if (pass < passes)
            continue;
        if (!every)
            break;
        /* wait for the next pass; a signal ends the loop between passes */
        while (!atomic_load(&cancel_flag) && now_ms() - start < every * 1000) {
            struct timespec ts = {0, 200 * 1000000L};
            nanosleep(&ts, NULL);
        }
        if (atomic_load(&cancel_flag)) {
            rc = 0;
            break;
        }
    }
    free(only);
    if (rc == -ECANCELED || (rc == 0 && atomic_load(&cancel_flag) && !every)) {
        fprintf(stderr, "dvsnap capture: interrupted; no half point was written\n");
        return EXIT_FAIL;
    }
    if (rc == 0)
        return EXIT_OK;
    return cli_exit_code(rc) == EXIT_USAGE ? EXIT_FAIL : cli_exit_code(rc);
}

int cmd_backup(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    const char *env_name = NULL, *label = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--label") == 0 && i + 1 < argc)
            label = argv[++i];
        else if (strcmp(argv[i], "--wait") == 0)
            ; /* the command always waits */
        else if (argv[i][0] != '-' && !env_name)
            env_name = argv[i];
        else
            return usage_error("backup", "unknown argument");
    }
    if (!env_name || !label)
        return usage_error("backup", "needs ENV and --label TEXT");
    if (!*label || strlen(label) > 200 || strchr(label, '\n'))
        return usage_error("backup", "the label must be one line of 1 to 200 bytes");
    time_t pinned = 0;
    if (getenv("DVSNAP_NOW") && parse_now(NULL, &pinned))
        return usage_error("backup", "DVSNAP_NOW must be an RFC 3339 time");
    struct dv_client *dv = cli_dv(cli);
    struct repo *repo = dv ? cli_repo(cli) : NULL;
    if (!repo)
        return EXIT_FAIL;
    struct dv_env env;
    memset(&env, 0, sizeof env);
    int rc = dv_env_get(dv, env_name, &env, &err);
    if (rc)
        return fail_rc("backup", rc, &err);
    if ((rc = policy_manual_backup_allowed(&env, &err))) {
        fprintf(stderr, "dvsnap backup: %s\n", dverr_msg(&err));
        dv_env_release(&env);
        return EXIT_REFUSED;
    }
    catch_signals();
    struct progress_state prog = {cli_tty(), false};
    struct capture_opts opts = {0};
    struct capture_result res;
    opts.label = label;
    opts.now = pinned;
    opts.progress = show_progress;
    opts.progress_ctx = &prog;
    opts.cancel = &cancel_flag;
    rc = capture_env(dv, repo, cli->cfg, &env, &opts, &res, &err);
    clear_progress(&prog);
    if (rc == 0) {
        printf("%s: manual backup \"%s\" is point %s\n", env_name, label, res.point);
        print_result(env_name, &res);
    }
    dv_env_release(&env);
    return rc ? fail_rc("backup", rc, &err) : EXIT_OK;
}

/* ---------------------------------------------------------------- points, cat, changes */

int cmd_points(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    if (argc != 2 && argc != 3)
        return usage_error("points", "needs ENV [POINT]");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc;
    if (argc == 3) { /* one point: its backup.json, as the mount shows it */
        char name[32];
        struct point *p = NULL;
        struct buf doc = BUF_INIT;
        if (!(rc = resolve_point(repo, argv[1], argv[2], name, &err)) &&
            !(rc = repo_point_load(repo, argv[1], name, &p, &err)) &&
            !(rc = point_render_backup_json(p, &doc)))
            fwrite(doc.data, 1, doc.len, stdout);
        buf_release(&doc);
        point_free(p);
        return rc ? fail_rc("points", rc, &err) : EXIT_OK;
    }
    struct point_summary *ps = NULL;
    size_t n = 0;
    rc = repo_points(repo, argv[1], &ps, &n, &err);
    if (rc)
        return fail_rc("points", rc, &err);
    printf("%-20s %-7s %-21s %-21s %s\n", "POINT", "KIND", "TAKEN", "EXPIRES", "LABEL");
    for (size_t i = 0; i < n; i++) {
        char taken[32], expires[32];
        fmt_time(ps[i].taken_at, taken);
        fmt_time(ps[i].expires_at, expires);
        printf("%-20s %-7s %-21s %-21s %s\n", ps[i].name, ps[i].kind, taken, expires,
               ps[i].label ? ps[i].label : "");
    }
    point_summaries_free(ps, n);
    return EXIT_OK;
}

static int stream_table(struct cli *cli, int argc, char **argv, bool changes)
{
    const char *cmd = changes ? "changes" : "cat";
    struct dverr err = {0};
    struct point *p = NULL;
    struct table_reader *tr = NULL;
    char name[32];
    char *buf = NULL;
    int rc;
    if (argc != 4)
        return usage_error(cmd, "needs ENV POINT TABLE");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if ((rc = resolve_point(repo, argv[1], argv[2], name, &err)) ||
        (rc = repo_point_load(repo, argv[1], name, &p, &err)))
        goto out;
    if (!find_table(p, argv[3])) {
        rc = dverr_set(&err, -ENOENT, "%s/%s has no table %s", argv[1], name, argv[3]);
        goto out;
    }
    const char *table = find_table(p, argv[3])->name;
    rc = changes ? changes_reader_open(repo, p, table, &tr, &err)
                 : table_reader_open(repo, p, table, &tr, &err);
    if (rc)
        goto out;
    size_t cap = 1 << 20;
    if (!(buf = malloc(cap))) {
        rc = -ENOMEM;
        goto out;
    }
    for (;;) {
        ssize_t n = table_reader_read(tr, buf, cap, &err);
        if (n < 0) {
            rc = (int)n;
            goto out;
        }
        if (n == 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0) {
                rc = dverr_set(&err, -errno, "writing: %s", strerror(errno));
                goto out;
            }
            off += w;
        }
    }
out:
    free(buf);
    table_reader_free(tr);
    point_free(p);
    if (rc == -EPIPE)
        return EXIT_OK;
    return rc ? fail_rc(cmd, rc, &err) : EXIT_OK;
}

int cmd_cat(struct cli *cli, int argc, char **argv)
{
    return stream_table(cli, argc, argv, false);
}

int cmd_changes(struct cli *cli, int argc, char **argv)
{
    return stream_table(cli, argc, argv, true);
}

/* ---------------------------------------------------------------- prune, forget, check */

struct expiry_ctx {
    struct repo *repo;
    char **envs;       /* environment names seen, with their parsed documents */
    struct dv_env *docs;
    bool *have;
    size_t n, cap;
};

static const struct dv_env *expiry_env(struct expiry_ctx *x, const char *env)
{
    for (size_t i = 0; i < x->n; i++)
        if (strcmp(x->envs[i], env) == 0)
            return x->have[i] ? &x->docs[i] : NULL;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        char **e = realloc(x->envs, cap * sizeof *e);
        if (e)
            x->envs = e;
        struct dv_env *d = realloc(x->docs, cap * sizeof *d);
        if (d)
            x->docs = d;
        bool *h = realloc(x->have, cap * sizeof *h);
        if (h)
            x->have = h;
        if (!e || !d || !h)
            return NULL;
        x->cap = cap;
    }
    struct buf doc = BUF_INIT;
    size_t i = x->n;
    x->envs[i] = strdup(env);
    if (!x->envs[i])
        return NULL;
    x->have[i] = repo_env_doc(x->repo, env, &doc, NULL) == 0 && doc.len &&
                 env_from_doc(doc.data, doc.len, &x->docs[i]) == 0;
    x->n++;
    buf_release(&doc);
    return x->have[i] ? &x->docs[i] : NULL;
}

/* Expiry by the environment as the repository last saw it (prune refreshed it first). */
static time_t expiry_of(void *ctx, const struct point *p)
{
    const struct dv_env *env = expiry_env(ctx, p->env);
    if (!env)
        return p->expires_at;
    return policy_expires_at(env, p->taken_at);
}

static void expiry_release(struct expiry_ctx *x)
{
    for (size_t i = 0; i < x->n; i++) {
        free(x->envs[i]);
        if (x->have[i])
            dv_env_release(&x->docs[i]);
    }
    free(x->envs);
    free(x->docs);
    free(x->have);
}

int cmd_prune(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    bool dry_run = false, refresh = true;
    const char *now_arg = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dry-run") == 0 || strcmp(argv[i], "-n") == 0)
            dry_run = true;
        else if (strcmp(argv[i], "--offline") == 0)
            refresh = false;
        else if (strcmp(argv[i], "--now") == 0 && i + 1 < argc)
            now_arg = argv[++i];
        else
            return usage_error("prune", "unknown argument");
    }
    time_t now;
    if (parse_now(now_arg, &now))
        return usage_error("prune", "--now (or DVSNAP_NOW) takes an RFC 3339 time");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if (refresh) {
        /* Retention follows the environment as it is now (switching to sandbox shortens it at
         * once): refresh the documents from the admin API when it answers. */
        struct dv_client *dv = cli_dv(cli);
        struct dv_env *envs = NULL;
        size_t n = 0;
        struct dverr e2 = {0};
        if (dv && dv_env_list(dv, &envs, &n, &e2) == 0) {
            for (size_t i = 0; i < n; i++)
                if (envs[i].unique_name && envs[i].raw_json)
                    repo_env_doc_put(repo, envs[i].unique_name, envs[i].raw_json, NULL);
            dv_env_list_free(envs, n);
        } else {
            fprintf(stderr, "dvsnap prune: warning: the admin API did not answer (%s); using the "
                            "environments as last captured\n",
                    dv ? dverr_msg(&e2) : "no client");
        }
    }
    struct expiry_ctx x = {0};
    x.repo = repo;
    struct prune_report rep = {0};
    int rc = repo_prune(repo, now, dry_run, expiry_of, &x, &rep, &err);
    expiry_release(&x);
    if (rc) {
        prune_report_release(&rep);
        return fail_rc("prune", rc, &err);
    }
    for (size_t i = 0; i < rep.n_removed; i++)
        printf("%s %s\n", dry_run ? "would remove" : "removed", rep.removed[i]);
    printf("%s%llu points, %llu objects, %llu bytes\n", dry_run ? "would remove " : "removed ",
           (unsigned long long)rep.points_removed, (unsigned long long)rep.objects_removed,
           (unsigned long long)rep.bytes_removed);
    prune_report_release(&rep);
    return EXIT_OK;
}

int cmd_forget(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    char name[32];
    if (argc != 3)
        return usage_error("forget", "needs ENV POINT");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc = resolve_point(repo, argv[1], argv[2], name, &err);
    if (!rc)
        rc = repo_forget(repo, argv[1], name, &err);
    if (rc == -EPERM) {
        fprintf(stderr, "dvsnap forget: %s/%s is a system backup: system backups cannot be "
                        "deleted (platform rule); they go when they expire (dvsnap prune)\n",
                argv[1], name);
        return EXIT_REFUSED;
    }
    if (rc)
        return fail_rc("forget", rc, &err);
    printf("forgot %s/%s (its objects go at the next prune)\n", argv[1], name);
    return EXIT_OK;
}

int cmd_check(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    bool read_data = false, rebuild = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--read-data") == 0)
            read_data = true;
        else if (strcmp(argv[i], "--rebuild-catalog") == 0)
            rebuild = true;
        else
            return usage_error("check", "unknown argument");
    }
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc;
    if (rebuild) {
        if ((rc = repo_rebuild_catalog(repo, &err)))
            return fail_rc("check", rc, &err);
        printf("catalog rebuilt from the repository\n");
    }
    char kind[200];
    repo_describe(repo, kind, sizeof kind);
    printf("repository: %s\n", kind);
    struct check_report rep = {0};
    rc = repo_check(repo, read_data, &rep, &err);
    for (size_t i = 0; i < rep.n_damaged; i++)
        printf("damaged: %s\n", rep.damaged[i]);
    printf("%llu points, %llu objects checked (%llu bytes%s): %s\n",
           (unsigned long long)rep.points, (unsigned long long)rep.objects_checked,
           (unsigned long long)rep.bytes_checked, read_data ? " read" : ", existence only",
           rc == 0 ? "no errors" : rep.n_damaged ? "DAMAGED" : "failed");
    size_t damaged = rep.n_damaged;
    check_report_release(&rep);
    if (rc == -EIO || damaged) {
        if (*dverr_msg(&err))
            fprintf(stderr, "dvsnap check: %s\n", dverr_msg(&err));
        return EXIT_DAMAGED;
    }
    return rc ? fail_rc("check", rc, &err) : EXIT_OK;
}
