/* cmd_complete: `dvsnap complete`, the names shell completion offers (contrib/completion/), one
 * per line, read from the repository only: no request to the service, so completing is quick
 * and works offline.
 *
 *   dvsnap complete envs                  environments that have points
 *   dvsnap complete points ENV            `latest`, every point name and every label of ENV
 *   dvsnap complete tables ENV POINT      the tables of that point (POINT: name, label, latest)
 *
 * Limits: an RFC 3339 time as POINT is not resolved (nothing to complete after it).
 * Threading: none. */
#include <stdio.h>
#include <string.h>

#include "tools/dvsnap/cli.h"

static int complete_usage(void)
{
    fprintf(stderr, "usage: dvsnap complete envs | points ENV | tables ENV POINT\n");
    return EXIT_USAGE;
}

static int complete_fail(struct dverr *err)
{
    fprintf(stderr, "dvsnap complete: %s\n", dverr_msg(err));
    return EXIT_FAIL;
}

int cmd_complete(struct cli *cli, int argc, char **argv)
{
    struct dverr err = {0};
    if (argc < 2)
        return complete_usage();
    const char *what = argv[1];
    bool envs = strcmp(what, "envs") == 0 && argc == 2;
    bool points = strcmp(what, "points") == 0 && argc == 3;
    bool tables = strcmp(what, "tables") == 0 && argc == 4;
    if (!envs && !points && !tables)
        return complete_usage();
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    if (envs) {
        char **names = NULL;
        size_t n = 0;
        if (repo_envs(repo, &names, &n, &err))
            return complete_fail(&err);
        for (size_t i = 0; i < n; i++)
            puts(names[i]);
        strv_free(names, n);
        return EXIT_OK;
    }
    struct point_summary *ps = NULL;
    size_t n = 0;
    if (repo_points(repo, argv[2], &ps, &n, &err))
        return complete_fail(&err);
    int rc = EXIT_OK;
    if (points) {
        if (n > 0)
            puts("latest");
        for (size_t i = 0; i < n; i++)
            puts(ps[i].name);
        for (size_t i = 0; i < n; i++)
            if (ps[i].label)
                puts(ps[i].label);
        goto out;
    }
    const char *name = NULL; /* argv[3] as a point name: a name, a label, or latest (the newest) */
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, argv[3]) == 0 || (ps[i].label && strcmp(ps[i].label, argv[3]) == 0))
            name = ps[i].name;
    if (!name && n > 0 && strcmp(argv[3], "latest") == 0)
        name = ps[n - 1].name;
    if (name) {
        struct point *p = NULL;
        if (repo_point_load(repo, argv[2], name, &p, &err)) {
            rc = complete_fail(&err);
            goto out;
        }
        for (size_t i = 0; i < p->n_tables; i++)
            puts(p->tables[i].name);
        point_free(p);
    }
out:
    point_summaries_free(ps, n);
    return rc;
}
