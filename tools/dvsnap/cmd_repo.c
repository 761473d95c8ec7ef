/* cmd_repo: the repository commands (init, env list, points, cat, changes, prune, forget, check).
 * Thin: each reads its parsed arguments (cli.h), opens what it needs and calls repo.h / policy.h.
 * Output for people on stdout (tables for lists), or one JSON document with --json
 * (docs/json.md); errors on stderr; progress on stderr (progress.h) for check and prune, measured
 * through the store's meter (meter.h): manifests read of those listed, with the bytes check
 * reads (--read-data) or the objects it looks at, and the objects prune removes.
 * Single-threaded. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "backend/engine/policy.h"
#include "backend/engine/retention.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/meter.h"
#include "tools/dvsnap/progress.h"

static void fmt_time(time_t t, char out[32])
{
    if (t <= 0)
        snprintf(out, 32, "-");
    else
        rfc3339_from_time(t, out);
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

int cmd_init(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    bool encrypt = true;
    for (size_t i = 0; i < a->n_opts; i++)
        if (a->opts[i].val == O_INSECURE_NO_ENCRYPTION)
            encrypt = false;
    if (a->n_pos)
        return cli_usage_error(cli, "takes no arguments");
    struct config *cfg = cli_config(cli);
    if (!cfg)
        return EXIT_FAIL;
    int rc = repo_init(cfg, encrypt, &err);
    if (rc == -EEXIST) {
        fprintf(stderr, "dvsnap init: %s\n",
                *dverr_msg(&err) ? dverr_msg(&err) : "a repository exists there");
        return EXIT_FAIL;
    }
    if (rc)
        return cli_fail(cli, rc, &err);
    if (!cli->quiet)
        printf("created %s repository %s\n", encrypt ? "an encrypted" : "an UNENCRYPTED",
               cfg->repository);
    return EXIT_OK;
}

int cmd_env(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    if (a->n_pos != 1 || strcmp(a->pos[0], "list") != 0)
        return cli_usage_error(cli, "usage: dvsnap env list");
    struct dv_client *dv = cli_dv(cli);
    if (!dv)
        return EXIT_FAIL;
    struct dv_env *envs = NULL;
    size_t n = 0;
    int rc = dv_env_list(dv, &envs, &n, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    struct buf doc = BUF_INIT;
    if (cli->json)
        buf_addstr(&doc, "{\"environments\":[");
    else
        printf("%-24s %-11s %-14s %-12s %-9s %-10s %s\n", "NAME", "TYPE", "GEO", "REGION",
               "RETENTION", "STATE", "BACKUPS");
    for (size_t i = 0; i < n; i++) {
        const struct dv_env *e = &envs[i];
        struct dverr why = {0}, mwhy = {0};
        char ret[16] = "-", backups[300];
        int days = policy_retention_days(e);
        bool selected = config_env_selected(cli->cfg, e->unique_name ? e->unique_name : "");
        bool system = policy_backup_allowed(e, &why) == 0;
        bool manual = system && policy_manual_backup_allowed(e, &mwhy) == 0;
        if (days)
            snprintf(ret, sizeof ret, "%dd", days);
        if (!selected)
            snprintf(backups, sizeof backups, "not selected (environments =)");
        else if (!system)
            snprintf(backups, sizeof backups, "none: %s", dverr_msg(&why));
        else if (!manual)
            snprintf(backups, sizeof backups, "system (no manual backups)");
        else
            snprintf(backups, sizeof backups, "system + manual");
        if (!cli->json) {
            printf("%-24s %-11s %-14s %-12s %-9s %-10s %s\n",
                   e->unique_name ? e->unique_name : "?", e->sku ? e->sku : "?",
                   e->geo ? e->geo : "-", e->region ? e->region : "-", ret,
                   e->runtime_state ? e->runtime_state : "-", backups);
            continue;
        }
        buf_addstr(&doc, i ? ",{\"name\":" : "{\"name\":");
        json_str(&doc, e->unique_name);
        buf_addstr(&doc, ",\"type\":");
        json_str(&doc, e->sku);
        buf_addstr(&doc, ",\"geo\":");
        json_str(&doc, e->geo);
        buf_addstr(&doc, ",\"region\":");
        json_str(&doc, e->region);
        if (days)
            buf_printf(&doc, ",\"retention_days\":%d", days);
        else
            buf_addstr(&doc, ",\"retention_days\":null");
        buf_addstr(&doc, ",\"state\":");
        json_str(&doc, e->runtime_state);
        buf_printf(&doc, ",\"selected\":%s,\"system_backups\":%s,\"manual_backups\":%s",
                   selected ? "true" : "false", selected && system ? "true" : "false",
                   selected && manual ? "true" : "false");
        buf_addstr(&doc, ",\"reason\":");
        json_str(&doc, !selected  ? "not selected by the environments setting"
                       : !system  ? dverr_msg(&why)
                       : !manual  ? dverr_msg(&mwhy)
                                  : NULL);
        buf_addch(&doc, '}');
    }
    dv_env_list_free(envs, n);
    if (!cli->json)
        return EXIT_OK;
    buf_addstr(&doc, "]}");
    rc = json_print(&doc);
    buf_release(&doc);
    return rc;
}

/* ---------------------------------------------------------------- points, cat, changes */

int cmd_points(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    if (a->n_pos != 1 && a->n_pos != 2)
        return cli_usage_error(cli, "needs ENV [POINT]");
    const char *env = a->pos[0];
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc;
    if (a->n_pos == 2) { /* one point: its backup.json, as the mount shows it */
        char name[32];
        struct point *p = NULL;
        struct buf doc = BUF_INIT;
        if (!(rc = cli_resolve_point(repo, env, a->pos[1], name, &err)) &&
            !(rc = repo_point_load(repo, env, name, &p, &err)) &&
            !(rc = cmd_hold_render_backup_json(repo, p, &doc)))
            rc = json_print(&doc) == EXIT_OK ? 0 : -EIO;
        buf_release(&doc);
        point_free(p);
        return rc ? cli_fail(cli, rc, &err) : EXIT_OK;
    }
    struct point_summary *ps = NULL;
    size_t n = 0;
    rc = repo_points(repo, env, &ps, &n, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    struct point_hold *holds = NULL;
    size_t n_holds = 0;
    if ((rc = repo_holds(repo, env, &holds, &n_holds, &err))) {
        point_summaries_free(ps, n);
        return cli_fail(cli, rc, &err);
    }
    struct buf doc = BUF_INIT;
    if (cli->json) {
        buf_addstr(&doc, "{\"env\":");
        json_str(&doc, env);
        buf_addstr(&doc, ",\"points\":[");
    } else {
        printf("%-20s %-7s %-21s %-21s %-21s %-11s %s\n", "POINT", "KIND", "TAKEN", "EXPIRES",
               "HELD", "ANOMALY", "LABEL");
    }
    for (size_t i = 0; i < n; i++) {
        if (cli->json) {
            buf_addstr(&doc, i ? ",{\"point\":" : "{\"point\":");
            json_str(&doc, ps[i].name);
            buf_addstr(&doc, ",\"kind\":");
            json_str(&doc, ps[i].kind);
            buf_addstr(&doc, ",\"label\":");
            json_str(&doc, ps[i].label);
            buf_addstr(&doc, ",\"taken_at\":");
            json_time(&doc, ps[i].taken_at);
            buf_addstr(&doc, ",\"expires_at\":");
            json_time(&doc, ps[i].expires_at);
            char held[32];
            cmd_hold_column(holds, n_holds, ps[i].name, held);
            buf_addstr(&doc, ",\"held_until\":");
            json_str(&doc, strcmp(held, "-") == 0 ? NULL : held); /* "forever" or the end */
            buf_printf(&doc, ",\"anomaly\":%s}", ps[i].anomaly ? "true" : "false");
            continue;
        }
        char taken[32], expires[32], held[32];
        fmt_time(ps[i].taken_at, taken);
        fmt_time(ps[i].expires_at, expires);
        cmd_hold_column(holds, n_holds, ps[i].name, held);
        printf("%-20s %-7s %-21s %-21s %-21s %-11s %s\n", ps[i].name, ps[i].kind, taken, expires,
               held, ps[i].anomaly ? "mass-delete" : "-", ps[i].label ? ps[i].label : "");
    }
    point_holds_free(holds, n_holds);
    point_summaries_free(ps, n);
    if (!cli->json)
        return EXIT_OK;
    buf_addstr(&doc, "]}");
    rc = json_print(&doc);
    buf_release(&doc);
    return rc;
}

static int stream_table(struct cli *cli, const struct cli_args *a, bool changes)
{
    struct dverr err = {0};
    struct point *p = NULL;
    struct table_reader *tr = NULL;
    char name[32];
    char *buf = NULL;
    int rc;
    if (a->n_pos != 3)
        return cli_usage_error(cli, "needs ENV POINT TABLE");
    const char *env = a->pos[0], *point = a->pos[1], *tname = a->pos[2];
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if ((rc = cli_resolve_point(repo, env, point, name, &err)) ||
        (rc = repo_point_load(repo, env, name, &p, &err)))
        goto out;
    if (!find_table(p, tname)) {
        rc = dverr_set(&err, -ENOENT, "%s/%s has no table %s", env, name, tname);
        goto out;
    }
    const char *table = find_table(p, tname)->name;
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
    return rc ? cli_fail(cli, rc, &err) : EXIT_OK;
}

int cmd_cat(struct cli *cli, const struct cli_args *a)
{
    return stream_table(cli, a, false);
}

int cmd_changes(struct cli *cli, const struct cli_args *a)
{
    return stream_table(cli, a, true);
}

/* ---------------------------------------------------------------- store progress */

/* check and prune: progress from the store's traffic (meter.h). Both read every point's manifest
 * in turn: the fraction is manifests read of those listed. check shows the object bytes it read
 * (--read-data) or the objects it looked at; prune, once it removes, the objects removed. */
struct store_progress {
    struct progress pr;
    struct meter *meter;
    struct meter_counts base;   /* the counters when the work started */
    bool read_data;             /* check --read-data */
    bool prune;
    uint64_t manifests;         /* points/ objects listed */
};

static int count_manifest(void *ctx, const char *name, uint64_t size)
{
    ((struct store_progress *)ctx)->manifests++;
    return 0;
}

static void store_progress_tick(void *ctx)
{
    struct store_progress *sp = ctx;
    struct meter_counts c;
    meter_read(sp->meter, &c);
    uint64_t points = c.point_gets - sp->base.point_gets;
    struct progress_item it = {0};
    char detail[96];
    it.fraction = sp->manifests ? (double)points / (double)sp->manifests : -1;
    if (it.fraction > 0.99)
        it.fraction = 0.99; /* what follows the last manifest: 100% comes at the end */
    snprintf(detail, sizeof detail, "%" PRIu64 "/%" PRIu64 " points", points, sp->manifests);
    it.detail = detail;
    if (sp->prune && c.dels > sp->base.dels) {
        it.phase = "removing";
        it.fraction = -1;
        it.detail = NULL;
        it.done = c.dels - sp->base.dels;
        it.unit = "objects";
    } else if (sp->prune) {
        it.phase = "reading points";
        it.done = points;
        it.unit = "points";
        it.detail = NULL;
        it.total = sp->manifests;
    } else if (sp->read_data) {
        it.done = c.object_get_bytes - sp->base.object_get_bytes;
        it.unit = "bytes";
    } else {
        it.done = c.stats - sp->base.stats;
        it.unit = "objects";
    }
    progress_update(&sp->pr, &it, false);
}

/* Count the manifests (one listing) and start reporting. */
static void store_progress_start(struct store_progress *sp, const struct cli *cli,
                                 const char *command, struct repo *repo)
{
    progress_init(&sp->pr, cli, command, false);
    sp->meter = cli->meter;
    if (sp->pr.mode == PROGRESS_NONE)
        return;
    struct objstore *s = repo_store(repo);
    struct dverr ignore = {0};
    s->ops->list(s->impl, "points/", count_manifest, sp, &ignore);
    meter_read(sp->meter, &sp->base);
    meter_on_io(sp->meter, store_progress_tick, sp);
}

static void store_progress_stop(struct store_progress *sp)
{
    meter_on_io(sp->meter, NULL, NULL);
    progress_clear(&sp->pr);
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
                 dv_env_from_json(doc.data, doc.len, &x->docs[i]) == 0;
    x->n++;
    buf_release(&doc);
    return x->have[i] ? &x->docs[i] : NULL;
}

/* The platform's expiry by the environment as the repository last saw it (prune refreshed it
 * first). */
static time_t expiry_of(void *ctx, const char *env_name, const struct point_summary *p)
{
    const struct dv_env *env = expiry_env(ctx, env_name);
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

int cmd_prune(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    bool dry_run = false, refresh = true;
    for (size_t i = 0; i < a->n_opts; i++) {
        if (a->opts[i].val == O_DRY_RUN)
            dry_run = true;
        else if (a->opts[i].val == O_OFFLINE)
            refresh = false;
    }
    if (a->n_pos)
        return cli_usage_error(cli, "takes no arguments");
    time_t now;
    if (cli_now(cli, &now))
        return cli_usage_error(cli, "--now (or DVSNAP_NOW) takes an RFC 3339 time");
    /* a dry run deletes nothing: the capture credentials do */
    struct repo *repo = dry_run ? cli_repo(cli) : cli_repo_prune(cli);
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
    struct store_progress sp = {.prune = true};
    store_progress_start(&sp, cli, "prune", repo);
    int rc = retention_prune(repo, cli->cfg, now, dry_run, expiry_of, &x, &rep, &err);
    store_progress_stop(&sp);
    expiry_release(&x);
    if (rc) {
        prune_report_release(&rep);
        return cli_fail(cli, rc, &err);
    }
    if (cli->json) {
        struct buf doc = BUF_INIT;
        buf_printf(&doc, "{\"dry_run\":%s,\"now\":", dry_run ? "true" : "false");
        json_time(&doc, now);
        buf_addstr(&doc, ",\"removed\":[");
        for (size_t i = 0, k = 0; i < rep.n_lines; i++) {
            if (!rep.lines[i].removed)
                continue;
            if (k++)
                buf_addch(&doc, ',');
            json_str(&doc, rep.lines[i].point);
        }
        buf_addstr(&doc, "],\"points\":["); /* every point: kept or removed, and why */
        for (size_t i = 0; i < rep.n_lines; i++) {
            buf_addstr(&doc, i ? ",{\"point\":" : "{\"point\":");
            json_str(&doc, rep.lines[i].point);
            buf_printf(&doc, ",\"removed\":%s,\"why\":", rep.lines[i].removed ? "true" : "false");
            json_str(&doc, rep.lines[i].why);
            buf_addch(&doc, '}');
        }
        buf_printf(&doc,
                   "],\"points_removed\":%" PRIu64 ",\"objects_removed\":%" PRIu64
                   ",\"bytes_removed\":%" PRIu64 ",\"holds_removed\":%" PRIu64
                   ",\"points_locked\":%" PRIu64 ",\"objects_locked\":%" PRIu64 "}",
                   rep.points_removed, rep.objects_removed, rep.bytes_removed,
                   rep.holds_removed, rep.points_locked, rep.objects_locked);
        rc = json_print(&doc);
        buf_release(&doc);
        prune_report_release(&rep);
        return rc;
    }
    if (!cli->quiet) {
        for (size_t i = 0; i < rep.n_lines; i++) /* --dry-run: every point and why */
            if (rep.lines[i].removed || rep.lines[i].locked || dry_run)
                printf("%s %s: %s\n", !rep.lines[i].removed ? "keep" : dry_run ? "would remove"
                                                                                : "removed",
                       rep.lines[i].point, rep.lines[i].why);
        if (rep.holds_removed)
            printf("%s %" PRIu64 " expired hold%s\n", dry_run ? "would drop" : "dropped",
                   rep.holds_removed, rep.holds_removed == 1 ? "" : "s");
        printf("%s%" PRIu64 " points, %" PRIu64 " objects, %" PRIu64 " bytes\n",
               dry_run ? "would remove " : "removed ", rep.points_removed, rep.objects_removed,
               rep.bytes_removed);
        if (rep.points_locked || rep.objects_locked)
            printf("locked by the store until their retention ends (kept; a later prune "
                   "removes them): %" PRIu64 " points, %" PRIu64 " objects\n", rep.points_locked,
                   rep.objects_locked);
    }
    prune_report_release(&rep);
    return EXIT_OK;
}

int cmd_forget(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    char name[32];
    if (a->n_pos != 2)
        return cli_usage_error(cli, "needs ENV POINT");
    const char *env = a->pos[0];
    struct repo *repo = cli_repo_prune(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc = cli_resolve_point(repo, env, a->pos[1], name, &err);
    if (!rc)
        rc = repo_forget(repo, env, name, &err);
    if (rc == -EPERM) {
        fprintf(stderr, "dvsnap forget: %s/%s is a system backup: system backups cannot be "
                        "deleted (platform rule); they go when they expire (dvsnap prune)\n",
                env, name);
        return EXIT_REFUSED;
    }
    if (rc)
        return cli_fail(cli, rc, &err);
    if (!cli->quiet)
        printf("forgot %s/%s (its objects go at the next prune)\n", env, name);
    return EXIT_OK;
}

int cmd_check(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    bool read_data = false, rebuild = false;
    for (size_t i = 0; i < a->n_opts; i++) {
        if (a->opts[i].val == O_READ_DATA)
            read_data = true;
        else if (a->opts[i].val == O_REBUILD_CATALOG)
            rebuild = true;
    }
    if (a->n_pos)
        return cli_usage_error(cli, "takes no arguments");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc;
    if (rebuild) {
        if ((rc = repo_rebuild_catalog(repo, &err)))
            return cli_fail(cli, rc, &err);
        if (!cli->json && !cli->quiet)
            printf("catalog rebuilt from the repository\n");
    }
    struct check_report rep = {0};
    struct store_progress sp = {.read_data = read_data};
    store_progress_start(&sp, cli, "check", repo);
    rc = repo_check(repo, read_data, &rep, &err);
    store_progress_stop(&sp);
    bool damaged = rc == -EIO || rep.n_damaged;
    char kind[200];
    repo_describe(repo, kind, sizeof kind);
    const char *verdict = rc == 0 ? "no errors" : rep.n_damaged ? "DAMAGED" : "failed";
    int code = damaged ? EXIT_DAMAGED : rc ? -1 : EXIT_OK;
    if (cli->json) {
        struct buf doc = BUF_INIT;
        buf_printf(&doc,
                   "{\"status\":\"%s\",\"read_data\":%s,\"catalog_rebuilt\":%s,\"points\":%" PRIu64
                   ",\"objects_checked\":%" PRIu64 ",\"bytes_checked\":%" PRIu64
                   ",\"encrypted\":%s,\"damaged\":[",
                   damaged ? "damaged" : rc ? "failed" : "ok", read_data ? "true" : "false",
                   rebuild ? "true" : "false", rep.points, rep.objects_checked, rep.bytes_checked,
                   repo_encrypted(repo) ? "true" : "false");
        for (size_t i = 0; i < rep.n_damaged; i++) {
            if (i)
                buf_addch(&doc, ',');
            json_str(&doc, rep.damaged[i]);
        }
        buf_addstr(&doc, "],\"error\":");
        json_str(&doc, rc && *dverr_msg(&err) ? dverr_msg(&err) : NULL);
        buf_addch(&doc, '}');
        if (json_print(&doc) != EXIT_OK && code == EXIT_OK)
            code = EXIT_FAIL;
        buf_release(&doc);
    } else {
        if (!cli->quiet)
            printf("repository: %s\n", kind);
        for (size_t i = 0; i < rep.n_damaged; i++)
            printf("damaged: %s\n", rep.damaged[i]);
        if (!cli->quiet || rc)
            printf("%" PRIu64 " points, %" PRIu64 " objects checked (%" PRIu64 " bytes%s): %s\n",
                   rep.points, rep.objects_checked, rep.bytes_checked,
                   read_data ? " read" : ", existence only", verdict);
    }
    check_report_release(&rep);
    if (damaged) {
        if (*dverr_msg(&err))
            fprintf(stderr, "dvsnap check: %s\n", dverr_msg(&err));
        return EXIT_DAMAGED;
    }
    return code < 0 ? cli_fail(cli, rc, &err) : code;
}
