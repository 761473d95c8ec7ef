/* cli: what every dvsnap subcommand shares: global options, the configuration, the repository and
 * the Dataverse client, opened on demand; terminal progress; exit codes.
 * Exit codes: 0 ok, 1 failure, 2 usage, 3 refused by a rule (EPERM), 4 repository damaged,
 * 6 a capture flagged a mass delete, 11 lock held by another writer (as restic does). */
#ifndef DVSNAP_CLI_H
#define DVSNAP_CLI_H

#include <stdbool.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3, EXIT_DAMAGED = 4,
       EXIT_LOCKED = 11 };
enum { EXIT_ANOMALY = 6 }; /* a capture flagged a mass delete (backend/engine/anomaly.h) */

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
 * forget check), cmd_mount.c (mount umount), cmd_restore.c (restore), cmd_hold.c (hold
 * release), cmd_erase.c (erase). */
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
/* Resolve POINT (a name, `latest`, a label or an RFC 3339 time) to a point name of env
 * (cmd_repo.c). */
int cli_point_resolve(struct repo *repo, const char *env, const char *arg, char out[32],
                      struct dverr *err);
/* cmd_erase.c: erase records from every point of an environment */
int cmd_erase(struct cli *, int, char **);
#define CMD_ERASE_USAGE                                                                          \
    "usage: dvsnap erase ENV [--table T --id KEY[,KEY]]... [--where FIELD=VALUE]...\n"           \
    "                    [--no-related] [--override-hold] [--yes]\n"                            \
    "       dvsnap erase ENV --log\n"                                                            \
    "  Remove every version of the records from every point of ENV: by table and primary key,\n" \
    "  or by a field's value in any table (e.g. --where emailaddress1=jane@example.com), with\n" \
    "  the notes, audit records and activities regarding them (--no-related: not those).\n"      \
    "  Without --yes: a dry run that says what would go. A held point refuses it unless\n"      \
    "  --override-hold. Unmount first. --log: the erasure log (no values, no record keys).\n"
/* cmd_hold.c: hold, release, and what `points` shows of holds */
int cmd_hold(struct cli *, int, char **);
int cmd_release(struct cli *, int, char **);
#define CMD_HOLD_USAGE                                                                           \
    "usage: dvsnap hold ENV POINT [--reason TEXT] [--for DURATION]\n"                           \
    "  Keep the point whatever the retention rules say (prune and forget leave it) until it\n"   \
    "  is released, or for DURATION (e.g. 90d). Stored in the repository: every machine that\n" \
    "  shares it sees the hold. `dvsnap points ENV` shows holds.\n"
#define CMD_RELEASE_USAGE                                                                        \
    "usage: dvsnap release ENV POINT\n  End the point's hold; its retention applies again.\n"
/* backup.json of p with its hold; the HELD column of `points` for point ("-", "forever" or the
 * RFC 3339 end). */
int cmd_hold_render_backup_json(struct repo *repo, const struct point *p, struct buf *out);
/* The active holds of env as a JSON array of hold documents (environment.json in the mount). */
int cmd_hold_list_json(struct repo *repo, const char *env, struct buf *out);
void cmd_hold_column(const struct point_hold *holds, size_t n, const char *point, char out[32]);

#endif
