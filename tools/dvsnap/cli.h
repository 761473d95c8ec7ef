/* cli: what every dvsnap subcommand shares: global options, the configuration, the repository and
 * the Dataverse client, opened on demand; terminal progress; exit codes.
 * Exit codes: 0 ok, 1 failure, 2 usage, 3 refused by a rule (EPERM), 4 repository damaged,
 * 11 lock held by another writer (as restic does). */
#ifndef DVSNAP_CLI_H
#define DVSNAP_CLI_H

#include <stdbool.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3, EXIT_DAMAGED = 4,
       EXIT_LOCKED = 11 };

struct cli {
    const char *config_path;   /* --config, or NULL */
    int verbose;               /* -v count */
    struct config *cfg;        /* loaded by cli_config */
    struct repo *repo;         /* opened by cli_repo */
    struct dv_client *dv;      /* opened by cli_dv */
};

/* Load the configuration once (prints the error and returns NULL on failure). */
struct config *cli_config(struct cli *cli);
struct repo *cli_repo(struct cli *cli);
struct dv_client *cli_dv(struct cli *cli);
void cli_release(struct cli *cli);
/* Map a negative errno to an exit code. */
int cli_exit_code(int rc);
/* true when stderr is a terminal (progress lines are shown only then). */
bool cli_tty(void);

struct command {
    const char *name;
    int (*run)(struct cli *cli, int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
    const char *usage;         /* `dvsnap help CMD` text */
};

/* Commands, one file each group: cmd_repo.c (init env capture backup points cat changes prune
 * forget check), cmd_mount.c (mount umount), cmd_restore.c (restore). */
int cmd_init(struct cli *, int, char **);
int cmd_env(struct cli *, int, char **);
int cmd_capture(struct cli *, int, char **);
int cmd_backup(struct cli *, int, char **);
int cmd_points(struct cli *, int, char **);
int cmd_cat(struct cli *, int, char **);
int cmd_changes(struct cli *, int, char **);
int cmd_prune(struct cli *, int, char **);
int cmd_forget(struct cli *, int, char **);
int cmd_check(struct cli *, int, char **);
int cmd_mount(struct cli *, int, char **);
int cmd_umount(struct cli *, int, char **);
int cmd_restore(struct cli *, int, char **);
/* cmd_key.c: key list | add | remove | passwd */
int cmd_key(struct cli *, int, char **);
#define CMD_KEY_USAGE                                                                          \
    "usage: dvsnap key list\n"                                                                 \
    "       dvsnap key add [--new-password-file FILE]\n"                                       \
    "       dvsnap key remove ID\n"                                                            \
    "       dvsnap key passwd [--new-password-file FILE]\n"                                    \
    "  The repository opens with the configured password; add writes a key for another one,\n" \
    "  passwd replaces the key in use (the new key is durable before the old one goes). The\n" \
    "  new password comes from FILE (mode 0600) or is asked twice on the terminal.\n"

#endif
