/* cmd_hold: `dvsnap hold ENV POINT [--reason TEXT] [--for DURATION]` and `dvsnap release ENV
 * POINT` (issue 17), and what `points` shows of holds. A hold is an object in the repository
 * (repo.h), so every machine that shares it sees it; a held point is never pruned nor forgotten.
 * The clock is DVSNAP_NOW when set (tests). Single-threaded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tools/dvsnap/cli.h"

/* --now, else DVSNAP_NOW (tests), else the clock; a time that does not parse is the clock. */
static time_t clock_now(const struct cli *cli)
{
    time_t t;
    if (cli_now(cli, &t))
        t = time(NULL);
    return t;
}

/* The same for what has no struct cli (the mount's environment.json, the HELD column): only
 * DVSNAP_NOW. */
static time_t env_now(void)
{
    static const struct cli no_options;
    return clock_now(&no_options);
}

int cmd_hold(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    const char *reason = NULL;
    int64_t span = 0;
    for (size_t i = 0; i < a->n_opts; i++) {
        if (a->opts[i].val == O_REASON)
            reason = a->opts[i].arg;
        else if (a->opts[i].val == O_FOR &&
                 (parse_duration(a->opts[i].arg, &span) || span <= 0))
            return cli_usage_error(cli, "--for takes a duration like 30d");
    }
    if (a->n_pos != 2)
        return cli_usage_error(cli, "needs ENV POINT");
    const char *env = a->pos[0], *point = a->pos[1];
    if (reason && (strlen(reason) > 1000 || strchr(reason, '\n')))
        return cli_usage_error(cli, "the reason must be one line of at most 1000 bytes");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    char by[300];
    struct point_hold h = {0};
    int rc = cli_resolve_point(repo, env, point, h.point, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    cli_user_at_host(by, sizeof by);
    h.reason = (char *)reason;
    h.by = by;
    h.placed_at = clock_now(cli);
    h.until = span ? h.placed_at + (time_t)span : 0;
    if ((rc = repo_hold_put(repo, env, &h, &err)))
        return cli_fail(cli, rc, &err);
    char until[32] = "it is released";
    if (h.until)
        rfc3339_from_time(h.until, until);
    if (!cli->quiet)
        printf("held %s/%s until %s: it is not pruned nor forgotten meanwhile\n", env, h.point,
               until);
    return EXIT_OK;
}

int cmd_release(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    char name[32];
    if (a->n_pos != 2)
        return cli_usage_error(cli, "needs ENV POINT");
    struct repo *repo = cli_repo_prune(cli); /* releasing deletes the hold document */
    if (!repo)
        return EXIT_FAIL;
    int rc = cli_resolve_point(repo, a->pos[0], a->pos[1], name, &err);
    if (!rc)
        rc = repo_hold_del(repo, a->pos[0], name, &err);
    if (rc)
        return cli_fail(cli, rc, &err);
    if (!cli->quiet)
        printf("released %s/%s: retention applies to it again\n", a->pos[0], name);
    return EXIT_OK;
}

int cmd_hold_render_backup_json(struct repo *repo, const struct point *p, struct buf *out)
{
    struct point_hold h;
    struct dverr ignore = {0};
    bool held = repo_hold_get(repo, p->env, p->name, &h, &ignore) == 0;
    int rc = point_render_backup_json(p, held ? &h : NULL, out);
    if (held)
        point_hold_release(&h);
    return rc;
}

int cmd_hold_list_json(struct repo *repo, const char *env, struct buf *out)
{
    struct point_hold *holds = NULL;
    size_t n = 0;
    struct dverr ignore = {0};
    int rc = repo_holds(repo, env, &holds, &n, &ignore);
    if (rc)
        return rc;
    rc = buf_addch(out, '[');
    bool first = true;
    time_t now = env_now();
    for (size_t i = 0; i < n && !rc; i++) {
        if (!point_hold_active(&holds[i], now))
            continue;
        rc = first ? 0 : buf_addch(out, ',');
        rc = rc ? rc : point_hold_render(&holds[i], out);
        first = false;
    }
    rc = rc ? rc : buf_addch(out, ']');
    point_holds_free(holds, n);
    return rc;
}

void cmd_hold_column(const struct point_hold *holds, size_t n, const char *point, char out[32])
{
    snprintf(out, 32, "-");
    time_t now = env_now();
    for (size_t i = 0; i < n; i++) {
        if (strcmp(holds[i].point, point) != 0 || !point_hold_active(&holds[i], now))
            continue;
        if (holds[i].until)
            rfc3339_from_time(holds[i].until, out);
        else
            snprintf(out, 32, "forever");
    }
}
