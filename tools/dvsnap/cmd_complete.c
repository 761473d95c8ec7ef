/* cmd_complete: `dvsnap complete`, the names shell completion offers (contrib/completion/), one
 * per line, read from the repository only: no request to the service, so completing is quick
 * and works offline.
 *
 *   dvsnap complete envs                  environments that have points
 *   dvsnap complete points ENV            `latest`, every point name and every label of ENV
 *   dvsnap complete tables ENV POINT      the tables of that point (POINT: name, label, latest)
 *
 * POINT is resolved as every command resolves it (cli_resolve_point).
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

int cmd_complete(struct cli *cli, const struct cli_args *a)
{
    struct dverr err = {0};
    if (a->n_pos < 1)
        return complete_usage();
    const char *what = a->pos[0];
    bool envs = strcmp(what, "envs") == 0 && a->n_pos == 1;
    bool points = strcmp(what, "points") == 0 && a->n_pos == 2;
    bool tables = strcmp(what, "tables") == 0 && a->n_pos == 3;
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
    const char *env = a->pos[1];
    if (points) {
        struct point_summary *ps = NULL;
        size_t n = 0;
        if (repo_points(repo, env, &ps, &n, &err))
            return complete_fail(&err);
        if (n > 0)
            puts("latest");
        for (size_t i = 0; i < n; i++)
            puts(ps[i].name);
        for (size_t i = 0; i < n; i++)
            if (ps[i].label)
                puts(ps[i].label);
        point_summaries_free(ps, n);
        return EXIT_OK;
    }
    char name[32];
    if (cli_resolve_point(repo, env, a->pos[2], name, &err))
        return EXIT_OK; /* nothing to complete after a point that does not resolve */
    struct point *p = NULL;
    if (repo_point_load(repo, env, name, &p, &err))
        return complete_fail(&err);
    for (size_t i = 0; i < p->n_tables; i++)
        puts(p->tables[i].name);
    point_free(p);
    return EXIT_OK;
}
