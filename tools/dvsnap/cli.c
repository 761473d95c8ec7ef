/* cli: shared state of a dvsnap run (see cli.h). Opens the configuration, repository and client
 * lazily so `dvsnap help` and `dvsnap init` need nothing they do not use. */
#include "tools/dvsnap/cli.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "backend/base/log.h"

struct config *cli_config(struct cli *cli)
{
    struct dverr err = {0};
    if (cli->cfg)
        return cli->cfg;
    int rc = config_load(cli->config_path, &cli->cfg, &err);
    if (rc) {
        fprintf(stderr, "dvsnap: configuration: %s\n", dverr_msg(&err));
        return NULL;
    }
    if (!cli->verbose)
        log_set_level((enum log_level)cli->cfg->log_level);
    return cli->cfg;
}

struct repo *cli_repo(struct cli *cli)
{
    struct dverr err = {0};
    if (cli->repo)
        return cli->repo;
    if (!cli_config(cli))
        return NULL;
    if (repo_open(cli->cfg, &cli->repo, &err)) {
        fprintf(stderr, "dvsnap: repository: %s\n", dverr_msg(&err));
        return NULL;
    }
    return cli->repo;
}

struct dv_client *cli_dv(struct cli *cli)
{
    struct dverr err = {0};
    if (cli->dv)
        return cli->dv;
    if (!cli_config(cli))
        return NULL;
    if (dv_client_new(cli->cfg, &cli->dv, &err)) {
        fprintf(stderr, "dvsnap: %s\n", dverr_msg(&err));
        return NULL;
    }
    return cli->dv;
}

void cli_release(struct cli *cli)
{
    dv_client_free(cli->dv);
    repo_free(cli->repo);
    config_free(cli->cfg);
    cli->dv = NULL;
    cli->repo = NULL;
    cli->cfg = NULL;
}

int cli_exit_code(int rc)
{
    switch (rc) {
    case 0: return EXIT_OK;
    case -EPERM: case -EACCES: return EXIT_REFUSED;
    case -EBUSY: return EXIT_LOCKED;
    case -EINVAL: return EXIT_USAGE;
    default: return EXIT_FAIL;
    }
}

bool cli_tty(void)
{
    return isatty(2);
}
