/* cmd_erase: `dvsnap erase` (issue 17), the right to erasure inside the backups.
 *
 *   dvsnap erase ENV [--table T --id KEY[,KEY]]... [--where FIELD=VALUE]... [--no-related]
 *                    [--override-hold] [--yes]
 *   dvsnap erase ENV --log
 *
 * Without --yes it is a dry run: what would be erased, from how many points, what else refers to
 * those records, and which held points stand in the way. With --yes the records go from every
 * point (backend/engine/erase.h), then the local cache's files of ENV and of the blobs removed
 * are purged. A mount running on this machine holds the cache: erase refuses until it is
 * unmounted (it would keep showing what was erased). --log lists the erasure log. Values given
 * to --where are never printed nor stored. Single-threaded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "backend/engine/erase.h"
#include "cache/cache.h"
#include "tools/dvsnap/cli.h"

static int show_log(struct repo *repo, const char *env)
{
    struct dverr err = {0};
    char prefix[300], **names = NULL;
    size_t n = 0;
    snprintf(prefix, sizeof prefix, "erasures/%s/", env);
    int rc = repo_doc_list(repo, prefix, &names, &n, &err);
    for (size_t i = 0; !rc && i < n; i++) {
        struct buf doc = BUF_INIT;
        if ((rc = repo_erase_doc_get(repo, names[i], &doc, &err)) == 0)
            fwrite(doc.data, 1, doc.len, stdout);
        buf_release(&doc);
    }
    strv_free(names, n);
    if (rc) {
        fprintf(stderr, "dvsnap erase: %s\n", dverr_msg(&err));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

/* The local cache, when there is one (NULL otherwise); -EBUSY when a mount holds it. */
static int open_cache(const struct config *cfg, struct cache **out, struct dverr *err)
{
    struct stat st;
    *out = NULL;
    if (!cfg->cache_dir || stat(cfg->cache_dir, &st) != 0)
        return 0;
    struct cache_opts co = {0};
    co.budget = cfg->cache_size;
    return cache_open(cfg->cache_dir, &co, out, err);
}

static void print_plan(const char *env, const struct erase_report *rep, bool dry_run)
{
    if (rep->resumed)
        printf("%s: an erasure that was interrupted is finished\n", env);
    if (rep->unfinished)
        printf("%s: an erasure that was interrupted will be finished first\n", env);
    printf("%s: %llu record%s%s:", env, (unsigned long long)rep->records,
           rep->records == 1 ? "" : "s", dry_run ? " would be erased" : " erased");
    for (size_t i = 0; i < rep->n_tables; i++)
        printf(" %s %llu", rep->tables[i].table, (unsigned long long)rep->tables[i].records);
    printf("\n");
    if (rep->ids_not_found)
        printf("%s: %llu id%s given are in no point\n", env, (unsigned long long)rep->ids_not_found,
               rep->ids_not_found == 1 ? "" : "s");
    printf("%s: %llu point%s, %llu segment%s (%llu bytes) %s, %llu file%s\n", env,
           (unsigned long long)rep->points, rep->points == 1 ? "" : "s",
           (unsigned long long)rep->segments, rep->segments == 1 ? "" : "s",
           (unsigned long long)rep->segment_bytes, dry_run ? "to rewrite" : "rewritten",
           (unsigned long long)rep->files, rep->files == 1 ? "" : "s");
    for (size_t i = 0; i < rep->n_refs; i++)
        printf("%s: still referring (not erased): %s\n", env, rep->refs[i]);
    for (size_t i = 0; i < rep->n_held; i++)
        printf("%s: held: %s\n", env, rep->held[i]);
}

int cmd_erase(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    const char *env = NULL, *table = NULL;
    bool yes = false, related = true, override = false, log = false;
    size_t cap = 1; /* one per key of every --id list */
    for (size_t i = 0; i < a->n_opts; i++)
        for (const char *p = a->opts[i].val == O_ID ? a->opts[i].arg : ""; *p; p++)
            cap += *p == ',';
    cap += a->n_opts;
    struct erase_id *ids = calloc(cap, sizeof *ids);
    struct erase_match *where = calloc(a->n_opts + 1, sizeof *where);
    char **owned = calloc(a->n_opts + 1, sizeof *owned);
    size_t n_ids = 0, n_where = 0, n_owned = 0;
    int ret = EXIT_FAIL;
    if (!ids || !where || !owned)
        goto out;
    for (size_t i = 0; i < a->n_opts; i++) {
        const char *arg = a->opts[i].arg;
        switch (a->opts[i].val) {
        case O_TABLE:
            table = arg;
            break;
        case O_ID: {
            if (!table) {
                ret = cli_usage_error(cli, "--id follows a --table");
                goto out;
            }
            char *list = strdup(arg), *save = NULL;
            if (!list)
                goto out;
            owned[n_owned++] = list;
            for (char *k = strtok_r(list, ",", &save); k && n_ids < cap;
                 k = strtok_r(NULL, ",", &save))
                ids[n_ids++] = (struct erase_id){table, k};
            break;
        }
        case O_WHERE: {
            char *f = strdup(arg);
            char *eq = f ? strchr(f, '=') : NULL;
            if (!f || !eq || eq == f || !eq[1]) {
                free(f);
                ret = cli_usage_error(cli, "--where takes FIELD=VALUE");
                goto out;
            }
            owned[n_owned++] = f;
            *eq = '\0';
            where[n_where++] = (struct erase_match){f, eq + 1};
            break;
        }
        case O_NO_RELATED: related = false; break;
        case O_OVERRIDE_HOLD: override = true; break;
        case O_YES: yes = true; break;
        case O_LOG: log = true; break;
        default: break;
        }
    }
    if (a->n_pos != 1) {
        ret = cli_usage_error(cli, "needs ENV");
        goto out;
    }
    env = a->pos[0];
    time_t now; /* 0 when neither --now nor DVSNAP_NOW pins it: the engine reads the clock */
    if (cli_pinned_time(cli, &now)) {
        ret = cli_usage_error(cli, "--now (or DVSNAP_NOW) must be an RFC 3339 time");
        goto out;
    }
    struct repo *repo = log ? cli_repo(cli) : cli_repo_prune(cli); /* erasing deletes */
    if (!repo)
        goto out;
    if (log) {
        ret = show_log(repo, env);
        goto out;
    }
    if (!n_ids && !n_where) {
        ret = cli_usage_error(cli, "needs --table T --id KEY or --where FIELD=VALUE");
        goto out;
    }
    struct cache *cache = NULL;
    int rc = yes ? open_cache(cli->cfg, &cache, &err) : 0;
    if (rc) {
        fprintf(stderr, "dvsnap erase: the cache %s: %s%s\n", cli->cfg->cache_dir,
                dverr_msg(&err), rc == -EBUSY ? " (unmount the dvsnap mount that uses it first: "
                                                "it would keep showing what is erased)" : "");
        ret = rc == -EBUSY ? EXIT_LOCKED : EXIT_FAIL;
        goto out;
    }
    char by[300], crit[1000];
    cli_user_at_host(by, sizeof by);
    struct buf c = BUF_INIT;
    for (size_t i = 0; i < n_where; i++)
        buf_printf(&c, "%s%s = (a value, not kept)", c.len ? "; " : "", where[i].field);
    if (n_ids)
        buf_printf(&c, "%s%zu record id%s", c.len ? "; " : "", n_ids, n_ids == 1 ? "" : "s");
    buf_printf(&c, "%s", related ? "; with the notes, audits and activities regarding them" : "");
    snprintf(crit, sizeof crit, "%s", c.data ? c.data : "");
    buf_release(&c);
    struct erase_request req = {env, ids, n_ids, where, n_where, related, !yes, override, by,
                                crit, now};
    struct erase_report rep = {0};
    rc = erase_run(repo, &req, &rep, &err);
    if ((rc == 0 || rc == -EPERM) && !cli->quiet)
        print_plan(env, &rep, !yes);
    if (rc == 0 && cache) { /* what the cache holds of ENV and of the blobs that went */
        char prefix[4200];
        uint64_t n = 0, total = 0;
        snprintf(prefix, sizeof prefix, "%s/%s/", cli->cfg->repository, env);
        int prc = cache_purge(cache, prefix, &n, &err);
        total += n;
        for (size_t i = 0; !prc && i < rep.n_blobs_removed; i++) {
            snprintf(prefix, sizeof prefix, "%s/blob/%s", cli->cfg->repository,
                     rep.blobs_removed[i]);
            prc = cache_purge(cache, prefix, &n, &err);
            total += n;
        }
        if (prc)
            fprintf(stderr, "dvsnap erase: purging the cache: %s\n", dverr_msg(&err));
        else
            printf("%s: %llu cached file%s purged\n", env, (unsigned long long)total,
                   total == 1 ? "" : "s");
        if (prc)
            rc = prc;
    }
    cache_free(cache);
    if (rc == 0 && !yes)
        printf("dry run: nothing was changed; run again with --yes to erase\n");
    else if (rc == 0)
        printf("%s: %llu objects written (%llu bytes), %llu removed (%llu bytes); logged as %s\n",
               env, (unsigned long long)rep.objects_written,
               (unsigned long long)rep.bytes_written, (unsigned long long)rep.objects_removed,
               (unsigned long long)rep.bytes_removed, rep.log_name);
    erase_report_release(&rep);
    if (rc) {
        fprintf(stderr, "dvsnap erase: %s\n", dverr_msg(&err));
        ret = rc == -EPERM ? EXIT_REFUSED : rc == -EBUSY ? EXIT_LOCKED : rc == -EIO ? EXIT_DAMAGED
                                                                                  : EXIT_FAIL;
        goto out;
    }
    ret = EXIT_OK;
out:
    for (size_t i = 0; i < n_owned; i++)
        free(owned[i]);
    free(owned);
    free(ids);
    free(where);
    return ret;
}
