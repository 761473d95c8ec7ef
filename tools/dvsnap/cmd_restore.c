/* cmd_restore: `dvsnap restore ENV POINT --target ENV2 [--tables a,b] [--include-audit]
 * [--map FILE] [--fallback-owner systemuser:ID|team:ID] [--allow-business-logic] [--dry-run]
 * [--yes | --confirm ENV2] [--wait]`, the command-line face of backend/engine/restore (the same
 * engine as the mount's .restore file; --map's FILE is made absolute for it). POINT takes every
 * form cli_resolve_point knows.
 * Without --yes the target's name is asked for on the terminal (as the admin center does) and
 * the command refuses when stdin is not a terminal; a dry run needs no confirmation. The restore
 * runs in this process with progress on stderr (progress.h; --wait shows it even when stderr is
 * not a terminal). The outcome is a per-table summary on stdout, or with --json the outcome
 * document (restore_outcome_json, docs/json.md). Single-threaded. */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/engine/restore.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/progress.h"

/* Progress: while comparing, tables compared of those to restore; while writing, records written
 * of those the comparison found to write. A change of state is always shown. */
struct restore_progress {
    struct progress pr;
    char state[16];             /* the state last shown */
};

static void on_progress(void *ctx, const struct restore_outcome *o)
{
    struct restore_progress *rp = ctx;
    bool changed = strcmp(rp->state, o->state) != 0;
    snprintf(rp->state, sizeof rp->state, "%s", o->state);
    uint64_t to_write = 0, compared = 0;
    for (size_t i = 0; i < o->n_tables; i++) {
        const struct restore_table_outcome *t = &o->tables[i];
        to_write += t->created + t->updated + t->deleted;
        if (t->created + t->updated + t->deleted + t->unchanged + t->skipped + t->failed ||
            t->note)
            compared++;
    }
    struct progress_item it = {0};
    char detail[64], extra[200];
    it.env = o->target;
    it.phase = o->state;
    it.fraction = -1;
    if (strcmp(o->state, "comparing") == 0 && o->n_tables) {
        it.fraction = (double)compared / (double)o->n_tables;
        snprintf(detail, sizeof detail, "%" PRIu64 "/%zu tables", compared, o->n_tables);
        it.detail = detail;
    } else if (strcmp(o->state, "writing") == 0 && to_write) {
        it.fraction = (double)o->records_written / (double)to_write;
        it.total = to_write;
    } else if (strcmp(o->state, "done") == 0) {
        it.fraction = 1;
    }
    it.done = o->records_written;
    it.unit = "records";
    snprintf(extra, sizeof extra,
             "\"operation\":\"%s\",\"requests\":%" PRIu64 ",\"records_to_write\":%" PRIu64,
             o->operation_id, o->requests, to_write);
    it.json_extra = extra;
    progress_update(&rp->pr, &it, changed);
}

/* The outcome for a person: a line, a table per table, totals, and what went wrong. */
static void print_summary(const struct restore_outcome *o)
{
    double secs = o->finished_ms && o->started_ms ? (double)(o->finished_ms - o->started_ms) / 1e3
                                                  : 0;
    printf("restore %s/%s into %s%s: %s in %.1f s", o->source_env ? o->source_env : "?",
           o->point ? o->point : "?", o->target ? o->target : "?", o->dry_run ? " (dry run)" : "",
           o->state, secs);
    if (o->safety_point[0])
        printf(", safety backup %s/%s", o->target ? o->target : "?", o->safety_point);
    printf("\n");
    printf("%-28s %9s %9s %9s %10s %8s %7s  %s\n", "TABLE", "CREATED", "UPDATED", "DELETED",
           "UNCHANGED", "SKIPPED", "FAILED", "NOTE");
    uint64_t c = 0, u = 0, d = 0, un = 0, s = 0, f = 0, fb = 0;
    for (size_t i = 0; i < o->n_tables; i++) {
        const struct restore_table_outcome *t = &o->tables[i];
        const char *note = t->note ? t->note : t->lookup_note ? t->lookup_note : "";
        printf("%-28s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %10" PRIu64 " %8" PRIu64
               " %7" PRIu64 "  %s\n",
               t->table ? t->table : "?", t->created, t->updated, t->deleted, t->unchanged,
               t->skipped, t->failed, note);
        c += t->created;
        u += t->updated;
        d += t->deleted;
        un += t->unchanged;
        s += t->skipped;
        f += t->failed;
        fb += t->fallback_owners;
    }
    printf("%-28s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %10" PRIu64 " %8" PRIu64 " %7" PRIu64
           "\n",
           "total", c, u, d, un, s, f);
    printf("%" PRIu64 " records written, %" PRIu64 " requests (%" PRIu64 " that write, %" PRIu64
           " $batch)\n",
           o->records_written, o->requests, o->write_requests, o->batches);
    printf("business logic %s; %" PRIu64 " rows given the fallback owner %s (--json names the "
           "unmapped principals and the mapping)\n",
           o->business_logic_ran ? "ran" : "bypassed", fb,
           o->fallback_owner[0] ? o->fallback_owner : "(none)");
    if (o->error[0])
        printf("error: %s\n", o->error);
}

int cmd_restore(struct cli *cli, const struct cli_args *a)
{
    const char *target = NULL, *tables = NULL, *confirm_arg = NULL, *map = NULL, *fallback = NULL;
    bool audit = false, dry = false, yes = false, wait = false, logic = false;
    char map_abs[4096];
    for (size_t i = 0; i < a->n_opts; i++) {
        const char *v = a->opts[i].arg;
        switch (a->opts[i].val) {
        case O_MAP: map = v; break;
        case O_FALLBACK_OWNER: fallback = v; break;
        case O_ALLOW_BUSINESS_LOGIC: logic = true; break;
        case O_CONFIRM: confirm_arg = v; break;
        case O_TARGET: target = v; break;
        case O_TABLES: tables = v; break;
        case O_INCLUDE_AUDIT: audit = true; break;
        case O_DRY_RUN: dry = true; break;
        case O_YES: yes = true; break;
        case O_WAIT: wait = true; break;
        }
    }
    if (a->n_pos != 2 || !target)
        return cli_usage_error(cli, "needs ENV POINT --target ENV2");
    const char *env = a->pos[0], *point_arg = a->pos[1];
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
    rc = cli_resolve_point(repo, env, point_arg, point, &err);
    if (rc == -ENOENT) /* a POINT that names nothing is the caller's mistake */
        rc = -EINVAL;
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
    struct restore_progress rp = {.state = ""};
    progress_init(&rp.pr, cli, "restore", wait);
    rc = restore_run(dv, repo, cli->cfg, &req, NULL, on_progress, &rp, NULL, &out, &err);
    progress_clear(&rp.pr);
    if (out.state[0]) {
        if (cli->json) {
            restore_outcome_json(&out, &json);
            if (json_print(&json) != EXIT_OK && !rc)
                rc = -EIO;
        } else if (!cli->quiet || rc) {
            print_summary(&out);
        }
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
