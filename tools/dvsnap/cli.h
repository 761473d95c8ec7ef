/* cli: what every dvsnap subcommand shares: the command table entry, the parsed command line
 * (global options, the command's own options, its arguments), the configuration, the repository
 * and the Dataverse client (opened on demand), POINT resolution, JSON output helpers and exit
 * codes.
 *
 * Command lines: options may come anywhere (before or after the command and its arguments), as
 * --opt=value or --opt value (short ones as -o value or -ovalue); `--` ends the options. main.c
 * parses them with getopt_long over the global options plus the command's own, and hands the
 * command its options in order (struct cli_args) and its arguments.
 *
 * Exit codes (cli_exit_code and the commands): 0 ok, 1 failure, 2 usage, 3 refused by a platform
 * rule (EPERM), 4 repository damaged, 5 a point was committed but some tables were not captured,
 * 6 a capture flagged a mass delete (backend/engine/anomaly.h), 7 stale (`dvsnap status`:
 * an environment's newest point is older than stale_after, or it has none), 11 lock held by
 * another writer (as restic does).
 * Single-threaded: the struct is the main thread's; commands may hand parts of it to threads. */
#ifndef DVSNAP_CLI_H
#define DVSNAP_CLI_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"
#include "tools/dvsnap/version.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2, EXIT_REFUSED = 3, EXIT_DAMAGED = 4,
       EXIT_PARTIAL = 5, EXIT_ANOMALY = 6, EXIT_STALE = 7, EXIT_LOCKED = 11 };

struct meter;

struct cli {
    const char *command;       /* the command's name, for messages (NULL before one is known) */
    const char *config_path;   /* --config, or NULL */
    int verbose;               /* -v count */
    bool quiet;                /* -q: no progress, no report of what an action did */
    bool json;                 /* --json: one JSON document on stdout, JSON-lines progress */
    const char *now_arg;       /* --now TIME, or NULL */
    struct config *cfg;        /* loaded by cli_config */
    struct repo *repo;         /* opened by cli_repo */
    struct meter *meter;       /* counts the repository's store traffic (meter.h); with repo */
    struct dv_client *dv;      /* opened by cli_dv */
};

/* The values of the commands' options (struct option.val; the short ones are their letters). */
enum cli_optval {
    O_DRY_RUN = 'n', O_FOREGROUND = 'f', O_LAZY = 'z', O_TARGET = 't', O_TABLES = 'T',
    O_INCLUDE_AUDIT = 'a', O_YES = 'y', O_CONFIRM = 'c', O_WAIT = 'w',
    O_ENV = 300, O_EVERY, O_CONCURRENCY, O_PASSES, O_LABEL, O_OFFLINE, O_READ_DATA,
    O_REBUILD_CATALOG, O_CAPTURE_EVERY, O_CACHE_SIZE, O_ALLOW_OTHER, O_DEBUG, O_THREADS,
    O_NO_PASSTHROUGH, O_METRICS_LISTEN, O_INSECURE_NO_ENCRYPTION, O_NEW_PASSWORD_FILE,
    O_MAP, O_FALLBACK_OWNER, O_ALLOW_BUSINESS_LOGIC,                                /* issue 14 */
    O_REASON, O_FOR, O_TABLE, O_ID, O_WHERE, O_NO_RELATED, O_OVERRIDE_HOLD, O_LOG, /* issue 17 */
    O_MAX_NODES,                                                                   /* issue 15 */
};

/* One option as the command received it: val is the struct option's val, arg its argument. */
struct cli_opt {
    int val;
    const char *arg;
};
struct cli_args {
    const struct cli_opt *opts; /* the command's own options, in command-line order */
    size_t n_opts;
    char **pos;                 /* the arguments after the command's name */
    size_t n_pos;
};

struct command {
    const char *name;
    int (*run)(struct cli *cli, const struct cli_args *a);
    const struct option *opts; /* the command's long options (NULL-name terminated), or NULL */
    const char *shortopts;     /* its short options in getopt's syntax, or "" */
    bool json;                 /* has a --json document */
    const char *summary;
    const char *usage;         /* `dvsnap help CMD` text */
};
/* The command table (main.c). */
extern const struct command cli_commands[];
extern const size_t cli_n_commands;

/* The commands, one file each group: cmd_repo.c (init env points cat changes prune forget check),
 * cmd_capture.c (capture backup), cmd_status.c, cmd_mount.c (mount umount), cmd_restore.c. */
int cmd_init(struct cli *, const struct cli_args *);
int cmd_env(struct cli *, const struct cli_args *);
int cmd_capture(struct cli *, const struct cli_args *);
int cmd_backup(struct cli *, const struct cli_args *);
int cmd_points(struct cli *, const struct cli_args *);
int cmd_cat(struct cli *, const struct cli_args *);
int cmd_changes(struct cli *, const struct cli_args *);
int cmd_prune(struct cli *, const struct cli_args *);
int cmd_forget(struct cli *, const struct cli_args *);
int cmd_check(struct cli *, const struct cli_args *);
int cmd_status(struct cli *, const struct cli_args *);
int cmd_mount(struct cli *, const struct cli_args *);
int cmd_umount(struct cli *, const struct cli_args *);
int cmd_restore(struct cli *, const struct cli_args *);
int cmd_key(struct cli *, const struct cli_args *); /* cmd_key.c: list, add, remove, passwd */
int cmd_complete(struct cli *, const struct cli_args *); /* cmd_complete.c: names for completion */
/* cmd_hold.c (hold release) and cmd_erase.c (erase), issue 17 */
int cmd_hold(struct cli *, const struct cli_args *);
int cmd_release(struct cli *, const struct cli_args *);
int cmd_erase(struct cli *, const struct cli_args *);
/* backup.json of p with its hold (`points ENV POINT`, the mount); the HELD column of `points`
 * for point ("-", "forever" or the RFC 3339 end); env's active holds as a JSON array of hold
 * documents (the mount's environment.json). */
int cmd_hold_render_backup_json(struct repo *repo, const struct point *p, struct buf *out);
void cmd_hold_column(const struct point_hold *holds, size_t n, const char *point, char out[32]);
int cmd_hold_list_json(struct repo *repo, const char *env, struct buf *out);

/* Load the configuration once (prints the error and returns NULL on failure). */
struct config *cli_config(struct cli *cli);
/* The repository, with a meter on its store (cli->meter). */
struct repo *cli_repo(struct cli *cli);
/* The same for the commands that delete (prune, forget, erase, hold release, key remove and
 * passwd): opened with the prune credentials (repo_open_prune); NULL with the reason on stderr,
 * e.g. an append-only repository without them. */
struct repo *cli_repo_prune(struct cli *cli);
struct dv_client *cli_dv(struct cli *cli);
void cli_release(struct cli *cli);
/* Map a negative errno to an exit code. */
int cli_exit_code(int rc);
/* Print "dvsnap CMD: msg (see `dvsnap help CMD`)" and return EXIT_USAGE. */
int cli_usage_error(const struct cli *cli, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Print "dvsnap CMD: <err or strerror>" and map rc to an exit code (-EIO: 4, -ENOENT,
 * -ECANCELED, -ESTALE: 1, else cli_exit_code). */
int cli_fail(const struct cli *cli, int rc, const struct dverr *err);
/* "now": --now, else $DVSNAP_NOW (RFC 3339), else the clock. 0 or -EINVAL. */
int cli_now(const struct cli *cli, time_t *out);
/* The time --now or $DVSNAP_NOW pins, or 0 when neither is given (the engines then read the
 * clock themselves, e.g. capture_opts.now). 0 or -EINVAL (and 0 in *out). */
int cli_pinned_time(const struct cli *cli, time_t *out);

/* "user@host" of whoever runs this (who placed a hold, who erased): into out[n]. */
void cli_user_at_host(char *out, size_t n);

/* Resolve POINT (a point name, `latest`, a manual backup's label, or an RFC 3339 time: the newest
 * point at or before it) to a point name of env. -ENOENT with a message naming env and POINT. */
int cli_resolve_point(struct repo *repo, const char *env, const char *arg, char out[32],
                      struct dverr *err);

/* JSON output: values appended to a struct buf. */
void json_str(struct buf *b, const char *s);          /* a string, or null for NULL */
void json_time(struct buf *b, time_t t);               /* RFC 3339, or null for t <= 0 */
/* Write the document with a final newline to stdout; 0 or EXIT_FAIL when stdout fails. */
int json_print(struct buf *b);

#endif
