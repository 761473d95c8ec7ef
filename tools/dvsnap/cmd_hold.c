/* cmd_hold: `dvsnap hold ENV POINT [--reason TEXT] [--for DURATION]` and `dvsnap release ENV
 * POINT` (issue 17), and what `points` shows of holds. A hold is an object in the repository
 * (repo.h), so every machine that shares it sees it; a held point is never pruned nor forgotten.
 * The clock is DVSNAP_NOW when set (tests). Single-threaded. */
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tools/dvsnap/cli.h"

static int hold_usage(const char *cmd, const char *msg)
{
    fprintf(stderr, "dvsnap %s: %s (see `dvsnap help %s`)\n", cmd, msg, cmd);
    return EXIT_USAGE;
}

static int hold_fail(const char *cmd, int rc, const struct dverr *err)
{
    fprintf(stderr, "dvsnap %s: %s\n", cmd, *dverr_msg(err) ? dverr_msg(err) : strerror(-rc));
    return rc == -ENOENT ? EXIT_FAIL : rc == -EIO ? EXIT_DAMAGED : cli_exit_code(rc);
}

static time_t clock_now(void)
{
    const char *s = getenv("DVSNAP_NOW");
    time_t t;
    if (s && *s && rfc3339_to_time(s, &t) == 0)
        return t;
    return time(NULL);
}

/* user@host of whoever runs this. */
static void who(char *out, size_t n)
{
    char host[256] = "localhost";
    const struct passwd *pw = getpwuid(geteuid());
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(out, n, "%s@%s", pw && pw->pw_name ? pw->pw_name : "?", host);
}

int cmd_hold(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    const char *env = NULL, *point = NULL, *reason = NULL;
    int64_t span = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            reason = argv[++i];
        else if (strcmp(argv[i], "--for") == 0 && i + 1 < argc) {
            if (parse_duration(argv[++i], &span) || span <= 0)
                return hold_usage("hold", "--for takes a duration like 30d");
        } else if (argv[i][0] != '-' && !env)
            env = argv[i];
        else if (argv[i][0] != '-' && !point)
            point = argv[i];
        else
            return hold_usage("hold", "unknown argument");
    }
    if (!env || !point)
        return hold_usage("hold", "needs ENV POINT");
    if (reason && (strlen(reason) > 1000 || strchr(reason, '\n')))
        return hold_usage("hold", "the reason must be one line of at most 1000 bytes");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    char by[300];
    struct point_hold h = {0};
    int rc = cli_point_resolve(repo, env, point, h.point, &err);
    if (rc)
        return hold_fail("hold", rc, &err);
    who(by, sizeof by);
    h.reason = (char *)reason;
    h.by = by;
    h.placed_at = clock_now();
    h.until = span ? h.placed_at + (time_t)span : 0;
    if ((rc = repo_hold_put(repo, env, &h, &err)))
        return hold_fail("hold", rc, &err);
    char until[32] = "it is released";
    if (h.until)
        rfc3339_from_time(h.until, until);
    printf("held %s/%s until %s: it is not pruned nor forgotten meanwhile\n", env, h.point,
           until);
    return EXIT_OK;
}

int cmd_release(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    char name[32];
    if (argc != 3)
        return hold_usage("release", "needs ENV POINT");
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    int rc = cli_point_resolve(repo, argv[1], argv[2], name, &err);
    if (!rc)
        rc = repo_hold_del(repo, argv[1], name, &err);
    if (rc)
        return hold_fail("release", rc, &err);
    printf("released %s/%s: retention applies to it again\n", argv[1], name);
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
    for (size_t i = 0; i < n && !rc; i++) {
        if (!point_hold_active(&holds[i], clock_now()))
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
    for (size_t i = 0; i < n; i++) {
        if (strcmp(holds[i].point, point) != 0 || !point_hold_active(&holds[i], clock_now()))
            continue;
        if (holds[i].until)
            rfc3339_from_time(holds[i].until, out);
        else
            snprintf(out, 32, "forever");
    }
}
