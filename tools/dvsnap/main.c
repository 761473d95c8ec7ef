/* dvsnap: the one command-line program. Parses the global options (--config FILE, -v), then runs
 * a subcommand from the table below; `dvsnap help CMD` prints that command's usage. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "backend/base/log.h"
#include "tools/dvsnap/cli.h"

static const struct command commands[] = {
    {"init", cmd_init, "create a new repository",
     "usage: dvsnap init [--insecure-no-encryption]\n  Create the repository named by the "
     "configuration's `repository`, encrypted with the\n  password from password_file, "
     "password_command or the terminal (or unencrypted,\n  only when asked for and no password "
     "is configured).\n"},
    {"key", cmd_key, "manage the passwords of an encrypted repository", CMD_KEY_USAGE},
    {"env", cmd_env, "list environments and what dvsnap does with them",
     "usage: dvsnap env list\n  Environments from the admin API with type, region, retention\n"
     "  and whether they are backed up.\n"},
    {"capture", cmd_capture, "take restore points (continuous system backups)",
     "usage: dvsnap capture [--env ENV]... [--every DURATION] [--concurrency N] [--passes N]\n"
     "  One pass over every selected environment (trials are never backed up), or one pass every\n"
     "  DURATION (e.g. 15m) until interrupted. --concurrency: tables read in parallel per\n"
     "  environment (default max_concurrency); --passes: N passes back to back (benchmarks).\n"
     "  DVSNAP_NOW=<RFC 3339> pins the clock of the points taken (tests only).\n"},
    {"backup", cmd_backup, "take a labelled manual backup",
     "usage: dvsnap backup ENV --label TEXT\n"
     "  Refused for the default environment and for trials.\n"},
    {"points", cmd_points, "list restore points",
     "usage: dvsnap points ENV [POINT]\n  With POINT (name, `latest`, label or RFC 3339 time): that "
     "point's backup.json.\n"},
    {"cat", cmd_cat, "write a table at a point, exactly as the mount shows it",
     "usage: dvsnap cat ENV POINT TABLE\n  POINT is a point name, `latest`, or a label.\n"},
    {"changes", cmd_changes, "write what changed in a table at a point",
     "usage: dvsnap changes ENV POINT TABLE\n"},
    {"prune", cmd_prune, "remove expired points and unreferenced objects",
     "usage: dvsnap prune [--dry-run] [--offline] [--now TIME]\n"
     "  Expiry follows each environment as the admin API describes it now (switching to sandbox\n"
     "  shortens it at once); --offline uses the environments as last captured. --now (or\n"
     "  DVSNAP_NOW) prunes as of another RFC 3339 time.\n"},
    {"forget", cmd_forget, "delete a manual backup", "usage: dvsnap forget ENV POINT\n"},
    {"check", cmd_check, "verify the repository",
     "usage: dvsnap check [--read-data] [--rebuild-catalog]\n"
     "  Exit 4 naming the damaged points and tables when something is wrong.\n"},
    {"mount", cmd_mount, "show the backups as a filesystem",
     "usage: dvsnap mount [--foreground] [--capture-every DURATION] [--cache-size SIZE]\n"
     "                    [--allow-other] [--no-passthrough] MOUNTPOINT\n"
     "  As root, a file read again is served by FUSE passthrough from a plain copy in the\n"
     "  cache (local-disk speed); --no-passthrough serves every read through the daemon.\n"},
    {"umount", cmd_umount, "unmount", "usage: dvsnap umount MOUNTPOINT\n"},
    {"restore", cmd_restore, "restore a point into a sandbox, writing only what differs",
     "usage: dvsnap restore ENV POINT --target ENV2 [--tables a,b] [--include-audit]\n"
     "                      [--dry-run] [--yes | --confirm ENV2] [--wait]\n"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: dvsnap [--config FILE] [-v] COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`dvsnap help COMMAND` for details. Configuration: --config FILE, else "
               "$DVSNAP_CONFIG, else ~/.config/dvsnap/config.\n");
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    struct cli cli = {0};
    int i = 1;
    /* Secrets live in this process's memory: no core dumps, no ptrace by other users. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            cli.config_path = argv[++i];
        } else if (strcmp(argv[i], "-v") == 0 || strcmp(argv[i], "--verbose") == 0) {
            cli.verbose++;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        } else {
            fprintf(stderr, "dvsnap: unknown option %s\n", argv[i]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (cli.verbose)
        log_set_level(cli.verbose >= 2 ? LOG_DEBUG : LOG_INFO);
    if (strcmp(argv[i], "help") == 0) {
        const struct command *c = i + 1 < argc ? find(argv[i + 1]) : NULL;
        if (!c) {
            usage(i + 1 < argc ? stderr : stdout);
            return i + 1 < argc ? EXIT_USAGE : EXIT_OK;
        }
        fputs(c->usage, stdout);
        return EXIT_OK;
    }
    const struct command *c = find(argv[i]);
    if (!c) {
        fprintf(stderr, "dvsnap: unknown command '%s'\n", argv[i]);
        usage(stderr);
        return EXIT_USAGE;
    }
    int rc = c->run(&cli, argc - i, argv + i);
    cli_release(&cli);
    return rc;
}
