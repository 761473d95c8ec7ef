/* cmd_restore: `dvsnap restore ENV POINT --target ENV2 [--tables a,b] [--include-audit]
 * [--map FILE] [--fallback-owner systemuser:ID|team:ID] [--allow-business-logic] [--dry-run]
 * [--yes | --confirm ENV2] [--wait]`, the command-line face of backend/restore (the same engine
 * as the mount's .restore file; --map's FILE is made absolute for it). POINT is a point name, "latest", or a manual backup's label.
 * Without --yes the target's name is asked for on the terminal (as the admin center does) and
 * the command refuses when stdin is not a terminal; a dry run needs no confirmation. The restore
 * runs in this process; --wait (or a terminal on stderr) shows progress lines on stderr. The
 * outcome is printed as JSON on stdout. Single-threaded. */
#include <errno.h>
#include <getopt.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/engine/restore.h"
#include "tools/dvsnap/cli.h"

struct progress_ctx {
    bool show;
    char last_state[16];
};

static void on_progress(void *ctx, const struct restore_outcome *o)
{
    struct progress_ctx *p = ctx;
    if (!p->show)
        return;
    uint64_t failed = 0;
    for (size_t i = 0; i < o->n_tables; i++)
        failed += o->tables[i].failed;
    fprintf(stderr, "restore %s: %-10s %llu records written, %llu requests%s%s\n",
            o->operation_id, o->state, (unsigned long long)o->records_written,
            (unsigned long long)o->requests, failed ? ", failures: " : "",
            failed ? "yes" : "");
    snprintf(p->last_state, sizeof(p->last_state), "%s", o->state);
}

/* POINT may be a name, "latest", or a label. */
static int resolve_point(struct repo *repo, const char *env, const char *arg, char out[32],
                         struct dverr *err)
{
    struct point_summary *ps = NULL;
    size_t n = 0;
    int rc = repo_points(repo, env, &ps, &n, err);
    if (rc)
        return rc;
    rc = -ENOENT;
    if (!strcmp(arg, "latest") && n) {
        snprintf(out, 32, "%s", ps[n - 1].name);
        rc = 0;
    }
    for (size_t i = 0; i < n && rc; i++)
        if (!strcmp(ps[i].name, arg)) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    for (size_t i = n; i-- > 0 && rc;)
        if (ps[i].label && !strcmp(ps[i].label, arg)) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    point_summaries_free(ps, n);
    if (rc)
        rc = dverr_set(err, -EINVAL, "%s has no restore point or label '%s' (see dvsnap points %s)",
                       env, arg, env);
    return rc;
}

int cmd_restore(struct cli *cli, int argc, char **argv)
{
    static const struct option opts[] = {
        {"target", required_argument, NULL, 't'}, {"tables", required_argument, NULL, 'T'},
        {"include-audit", no_argument, NULL, 'a'}, {"dry-run", no_argument, NULL, 'n'},
        {"yes", no_argument, NULL, 'y'},           {"wait", no_argument, NULL, 'w'},
        {"confirm", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'},
        {"map", required_argument, NULL, 'm'},     {"fallback-owner", required_argument, NULL, 'f'},
        {"allow-business-logic", no_argument, NULL, 'B'}, {NULL, 0, NULL, 0}};
    const char *target = NULL, *tables = NULL, *confirm_arg = NULL, *map = NULL, *fallback = NULL;
    bool audit = false, dry = false, yes = false, wait = false, logic = false;
    char map_abs[4096];
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "t:T:anywc:hm:f:B", opts, NULL)) != -1) {
        switch (ch) {
        case 'm': map = optarg; break;
        case 'f': fallback = optarg; break;
        case 'B': logic = true; break;
        case 'c': confirm_arg = optarg; break;
        case 't': target = optarg; break;
        case 'T': tables = optarg; break;
        case 'a': audit = true; break;
        case 'n': dry = true; break;
        case 'y': yes = true; break;
        case 'w': wait = true; break;
        case 'h':
            printf("usage: dvsnap restore ENV POINT --target ENV2 [--tables a,b] "
                   "[--include-audit] [--map FILE]\n"
                   "       [--fallback-owner systemuser:ID|team:ID] [--allow-business-logic] "
                   "[--dry-run] [--yes | --confirm ENV2] [--wait]\n"
                   "Restores the point (or some of its tables) into the sandbox ENV2, writing "
                   "only what differs.\nPOINT: a point name, latest, or a manual backup's "
                   "label. Without --yes the target's name is asked for on the terminal.\n"
                   "Users, teams, business units and currencies are matched to ENV2's; --map "
                   "FILE adds or overrides\npairs ('<table> <source id> <target id>' a line). "
                   "Rows whose owner has no match get the\n--fallback-owner (default: the "
                   "application user dvsnap runs as). Plug-ins and flows are bypassed\n"
                   "unless --allow-business-logic.\n");
            return EXIT_OK;
        default: return EXIT_USAGE;
        }
    }
    if (argc - optind != 2 || !target) {
        fprintf(stderr, "usage: dvsnap restore ENV POINT --target ENV2 [--tables a,b] "
                        "[--include-audit] [--dry-run] [--yes] [--wait]\n");
        return EXIT_USAGE;
    }
    const char *env = argv[optind], *point_arg = argv[optind + 1];
    struct dverr err = {0};
    struct restore_request req;
    memset(&req, 0, sizeof(req));
    struct restore_outcome out;
    memset(&out, 0, sizeof(out));
    struct buf line = BUF_INIT, json = BUF_INIT;
    int rc, code = EXIT_FAIL;
    char confirm[256] = "";

    if (confirm_arg) {
        /* as the control file's confirm=: checked by the engine like any other rule */
        snprintf(confirm, sizeof(confirm), "%s", confirm_arg);
    } else if (!dry && !yes) {
        if (!isatty(0)) {
            fprintf(stderr, "dvsnap restore: refusing: stdin is not a terminal, so the target "
                            "cannot be confirmed; pass --yes to confirm %s\n", target);
            return EXIT_REFUSED;
        }
        fprintf(stderr,
                "This overwrites the data of %s with %s/%s (a backup of %s is taken first).\n"
                "Type the target environment's name to confirm: ",
                target, env, point_arg, target);
        if (!fgets(confirm, sizeof(confirm), stdin))
            confirm[0] = '\0';
        confirm[strcspn(confirm, "\r\n")] = '\0';
        if (strcmp(confirm, target) != 0) {
            fprintf(stderr, "dvsnap restore: not confirmed (typed '%s', expected '%s')\n",
                    confirm, target);
            return EXIT_REFUSED;
        }
    } else if (yes) {
        snprintf(confirm, sizeof(confirm), "%s", target);
    }

    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    struct dv_client *dv = cli_dv(cli);
    if (!dv)
        return EXIT_FAIL;
    char point[32];
    rc = resolve_point(repo, env, point_arg, point, &err);
    if (rc)
        goto out;

    buf_printf(&line, "target=%s", target);
    if (tables)
        buf_printf(&line, " tables=%s", tables);
    if (audit)
        buf_addstr(&line, " audit=include");
    if (confirm[0])
        buf_printf(&line, " confirm=%s", confirm);
    if (dry)
        buf_addstr(&line, " dry-run");
    if (map) {
        if (!realpath(map, map_abs)) {
            rc = dverr_set(&err, -EINVAL, "--map %s: %s", map, strerror(errno));
            goto out;
        }
        if (strpbrk(map_abs, " \t\r\n")) {
            rc = dverr_set(&err, -EINVAL, "--map %s: a path without white space is needed", map);
            goto out;
        }
        buf_printf(&line, " map=%s", map_abs);
    }
    if (fallback)
        buf_printf(&line, " fallback_owner=%s", fallback);
    if (logic)
        buf_addstr(&line, " business-logic=run");
    rc = restore_request_parse(line.data, env, point, &req, &err);
    if (rc)
        goto out;
    struct progress_ctx pc = {wait || cli_tty(), ""};
    rc = restore_run(dv, repo, cli->cfg, &req, NULL, on_progress, &pc, NULL, &out, &err);
    if (out.state[0]) {
        restore_outcome_json(&out, &json);
        fputs(json.data ? json.data : "", stdout);
        fflush(stdout);
    }
out:
    if (rc) {
        fprintf(stderr, "dvsnap restore: %s\n", dverr_msg(&err)[0] ? dverr_msg(&err)
                                                                   : strerror(-rc));
        code = cli_exit_code(rc);
    } else {
        code = EXIT_OK;
    }
    restore_outcome_release(&out);
    restore_request_release(&req);
    buf_release(&line);
    buf_release(&json);
    return code;
}
