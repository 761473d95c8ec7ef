/* dvsnap: the one command-line program. Finds the command on the line, parses the global options
 * and the command's own with getopt_long wherever they appear (cli.h), then runs the command from
 * the table below. `dvsnap help CMD` and `dvsnap CMD --help` print that command's usage, which is
 * the reference the man pages follow. Single-threaded until a command starts threads. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "backend/base/log.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/service.h"

/* ---- global options ---- */
enum { G_CONFIG = 1000, G_JSON, G_VERSION, G_NOW, G_HELP = 'h', G_QUIET = 'q', G_VERBOSE = 'v' };
static const struct option global_opts[] = {
    {"config", required_argument, NULL, G_CONFIG}, {"verbose", no_argument, NULL, G_VERBOSE},
    {"quiet", no_argument, NULL, G_QUIET},         {"json", no_argument, NULL, G_JSON},
    {"version", no_argument, NULL, G_VERSION},     {"now", required_argument, NULL, G_NOW},
    {"help", no_argument, NULL, G_HELP},           {NULL, 0, NULL, 0}};
#define GLOBAL_SHORT "hqv"

/* ---- the commands' options ---- */
static const struct option capture_opts[] = {
    {"env", required_argument, NULL, O_ENV},
    {"every", required_argument, NULL, O_EVERY},
    {"concurrency", required_argument, NULL, O_CONCURRENCY},
    {"passes", required_argument, NULL, O_PASSES},
    {NULL, 0, NULL, 0}};
static const struct option backup_opts[] = {
    {"label", required_argument, NULL, O_LABEL}, {"wait", no_argument, NULL, O_WAIT},
    {NULL, 0, NULL, 0}};
static const struct option prune_opts[] = {
    {"dry-run", no_argument, NULL, O_DRY_RUN}, {"offline", no_argument, NULL, O_OFFLINE},
    {NULL, 0, NULL, 0}};
static const struct option check_opts[] = {
    {"read-data", no_argument, NULL, O_READ_DATA},
    {"rebuild-catalog", no_argument, NULL, O_REBUILD_CATALOG},
    {NULL, 0, NULL, 0}};
static const struct option mount_opts[] = {
    {"foreground", no_argument, NULL, O_FOREGROUND},
    {"capture-every", required_argument, NULL, O_CAPTURE_EVERY},
    {"cache-size", required_argument, NULL, O_CACHE_SIZE},
    {"allow-other", no_argument, NULL, O_ALLOW_OTHER},
    {"debug", no_argument, NULL, O_DEBUG},
    {"threads", required_argument, NULL, O_THREADS},
    {"max-nodes", required_argument, NULL, O_MAX_NODES},
    {"no-passthrough", no_argument, NULL, O_NO_PASSTHROUGH},
    {"metrics-listen", required_argument, NULL, O_METRICS_LISTEN},
    {NULL, 0, NULL, 0}};
static const struct option hold_opts[] = {
    {"reason", required_argument, NULL, O_REASON}, {"for", required_argument, NULL, O_FOR},
    {NULL, 0, NULL, 0}};
static const struct option erase_opts[] = {
    {"table", required_argument, NULL, O_TABLE},
    {"id", required_argument, NULL, O_ID},
    {"where", required_argument, NULL, O_WHERE},
    {"no-related", no_argument, NULL, O_NO_RELATED},
    {"override-hold", no_argument, NULL, O_OVERRIDE_HOLD},
    {"yes", no_argument, NULL, O_YES},
    {"log", no_argument, NULL, O_LOG},
    {NULL, 0, NULL, 0}};
static const struct option init_opts[] = {
    {"insecure-no-encryption", no_argument, NULL, O_INSECURE_NO_ENCRYPTION}, {NULL, 0, NULL, 0}};
static const struct option key_opts[] = {
    {"new-password-file", required_argument, NULL, O_NEW_PASSWORD_FILE}, {NULL, 0, NULL, 0}};
static const struct option umount_opts[] = {{"lazy", no_argument, NULL, O_LAZY},
                                            {NULL, 0, NULL, 0}};
static const struct option restore_opts[] = {
    {"target", required_argument, NULL, O_TARGET},
    {"tables", required_argument, NULL, O_TABLES},
    {"include-audit", no_argument, NULL, O_INCLUDE_AUDIT},
    {"dry-run", no_argument, NULL, O_DRY_RUN},
    {"yes", no_argument, NULL, O_YES},
    {"confirm", required_argument, NULL, O_CONFIRM},
    {"wait", no_argument, NULL, O_WAIT},
    {"map", required_argument, NULL, O_MAP},
    {"fallback-owner", required_argument, NULL, O_FALLBACK_OWNER},
    {"allow-business-logic", no_argument, NULL, O_ALLOW_BUSINESS_LOGIC},
    {NULL, 0, NULL, 0}};

#define POINT_FORMS                                                                            \
    "  POINT is a point name (2026-11-21T090000Z), `latest`, a manual backup's label, or an\n"   \
    "  RFC 3339 time (2026-11-21T09:30:00Z: the newest point at or before it).\n"

const struct command cli_commands[] = {
    {"init", cmd_init, init_opts, "", false, "create a new repository",
     "usage: dvsnap init [--insecure-no-encryption]\n"
     "  Create the repository named by the configuration's `repository`, encrypted with the\n"
     "  password from password_file, password_command or the terminal; unencrypted only when\n"
     "  asked for, and only while no password is configured.\n"},
    {"key", cmd_key, key_opts, "", false, "manage the passwords of an encrypted repository",
     "usage: dvsnap key list\n"
     "       dvsnap key add [--new-password-file FILE]\n"
     "       dvsnap key remove ID\n"
     "       dvsnap key passwd [--new-password-file FILE]\n"
     "  The repository opens with the configured password. add writes a key for another\n"
     "  password (two or more open the same repository); remove refuses the key in use and the\n"
     "  last key; passwd replaces the key in use (the new key is durable and read back before\n"
     "  the old one goes). The new password comes from FILE (mode 0600) or is asked twice on\n"
     "  the terminal.\n"},
    {"env", cmd_env, NULL, "", true, "list environments and what dvsnap does with them",
     "usage: dvsnap env list [--json]\n"
     "  Environments from the admin API with type, geo, region, retention, state and what is\n"
     "  backed up (system points, manual backups, or why not).\n"},
    {"capture", cmd_capture, capture_opts, "", true,
     "take restore points (continuous system backups)",
     "usage: dvsnap capture [--env ENV]... [--every DURATION] [--concurrency N] [--passes N]\n"
     "                      [--json] [--now TIME]\n"
     "  One pass over every selected environment (trials are never backed up), or one pass every\n"
     "  DURATION (e.g. 15m) until interrupted. --env: only these environments (repeatable);\n"
     "  --concurrency: tables read in parallel per environment (default max_concurrency);\n"
     "  --passes: N passes back to back (benchmarks). --now (or DVSNAP_NOW) pins the time of the\n"
     "  points taken (tests). Each environment's outcome is recorded for `dvsnap status` and the\n"
     "  metrics (metrics_file). --json: one document per pass (docs/json.md).\n"
     "  Exit 0 when every environment got a complete point, 5 when a point was committed without\n"
     "  some tables (they are listed in its not_captured, shown as of the point before), 1 when\n"
     "  an environment failed, 11 when another writer holds an environment's lock.\n"},
    {"backup", cmd_backup, backup_opts, "", true, "take a labelled manual backup",
     "usage: dvsnap backup ENV --label TEXT [--json] [--now TIME]\n"
     "  A manual backup: a point labelled TEXT (1 to 200 bytes, one line). Refused (exit 3) for\n"
     "  the default environment and for trials. The command waits for it (--wait is accepted\n"
     "  and changes nothing). Exit codes as capture's.\n"},
    {"points", cmd_points, NULL, "", true, "list restore points",
     "usage: dvsnap points ENV [POINT] [--json]\n"
     "  Without POINT: ENV's points, oldest first (a table, or --json). With POINT: that point's\n"
     "  backup.json, as the mount shows it (JSON either way).\n" POINT_FORMS},
    {"cat", cmd_cat, NULL, "", false, "write a table at a point, exactly as the mount shows it",
     "usage: dvsnap cat ENV POINT TABLE\n" POINT_FORMS},
    {"changes", cmd_changes, NULL, "", false, "write what changed in a table at a point",
     "usage: dvsnap changes ENV POINT TABLE\n"
     "  One line per record created, updated or deleted since the point before.\n" POINT_FORMS},
    {"prune", cmd_prune, prune_opts, "n", true,
     "remove the points no retention rule keeps, then unreferenced objects",
     "usage: dvsnap prune [-n|--dry-run] [--offline] [--now TIME] [--json]\n"
     "  A system point goes when the platform's retention has passed and none of the retention\n"
     "  rules (keep_daily, keep_weekly, keep_monthly, keep_yearly, keep_within) keeps it; a\n"
     "  manual one by keep_manual; a held one never. --dry-run says for every point the rules\n"
     "  that keep it or why it goes. The platform's retention follows each environment as the\n"
     "  admin API describes it now (switching to sandbox shortens it at once); --offline uses\n"
     "  the environments as last captured. --now (or DVSNAP_NOW) prunes as of another time.\n"},
    {"forget", cmd_forget, NULL, "", false, "delete a manual backup",
     "usage: dvsnap forget ENV POINT\n"
     "  Deletes a manual backup (its objects go at the next prune). System points are refused\n"
     "  (exit 3): they go when they expire.\n" POINT_FORMS},
    {"hold", cmd_hold, hold_opts, "", false, "keep a point whatever the retention rules say",
     "usage: dvsnap hold ENV POINT [--reason TEXT] [--for DURATION]\n"
     "  Keep the point whatever the retention rules say (prune and forget leave it) until it\n"
     "  is released, or for DURATION (e.g. 90d). Stored in the repository: every machine that\n"
     "  shares it sees the hold. `dvsnap points ENV` shows holds.\n" POINT_FORMS},
    {"release", cmd_release, NULL, "", false, "end a hold",
     "usage: dvsnap release ENV POINT\n  End the point's hold; its retention applies again.\n"
     POINT_FORMS},
    {"erase", cmd_erase, erase_opts, "", false,
     "erase records from every point (a dry run unless confirmed)",
     "usage: dvsnap erase ENV [--table T --id KEY[,KEY]]... [--where FIELD=VALUE]...\n"
     "                    [--no-related] [--override-hold] [--yes]\n"
     "       dvsnap erase ENV --log\n"
     "  Remove every version of the records from every point of ENV: by table and primary key,\n"
     "  or by a field's value in any table (e.g. --where emailaddress1=jane@example.com), with\n"
     "  the notes, audit records and activities regarding them (--no-related: not those).\n"
     "  Without --yes: a dry run that says what would go. A held point refuses it (exit 3)\n"
     "  unless --override-hold. Unmount first (exit 11 while a mount uses the cache). --log:\n"
     "  the erasure log (no values, no record keys).\n"},
    {"check", cmd_check, check_opts, "", true, "verify the repository",
     "usage: dvsnap check [--read-data] [--rebuild-catalog] [--json]\n"
     "  Every manifest parses and every object it names exists; --read-data also reads every\n"
     "  object and checks its hash and that every table merges to what its manifest says.\n"
     "  --rebuild-catalog recreates the catalog from the repository first.\n"
     "  Exit 4 naming the damaged points and tables when something is wrong.\n"},
    {"status", cmd_status, NULL, "", true, "health of the backups of each environment",
     "usage: dvsnap status [ENV]... [--now TIME] [--json]\n"
     "  Per environment: the newest point and its age, the capture lag (how far past\n"
     "  capture_every the newest point is), the last capture's result, the last failure and its\n"
     "  reason, and the tables the newest point could not capture. Without ENV: every\n"
     "  environment the repository or the state files know, less those not selected by\n"
     "  `environments` and those not backed up (trials).\n"
     "  Exit 7 when an environment's newest point is older than stale_after (default twice\n"
     "  capture_every) or it has none; else 5 when a newest point lacks tables; else 0.\n"},
    {"mount", cmd_mount, mount_opts, "f", false, "show the backups as a filesystem",
     "usage: dvsnap mount [-f|--foreground] [--capture-every DURATION] [--cache-size SIZE]\n"
     "                    [--allow-other] [--no-passthrough] [--metrics-listen HOST:PORT]\n"
     "                    [--max-nodes N] [--threads N] [--debug] MOUNTPOINT\n"
     "  --capture-every runs the capture loop in the mount process (each pass is recorded for\n"
     "  `dvsnap status` and written to metrics_file). --metrics-listen (or metrics_listen)\n"
     "  serves Prometheus metrics at http://HOST:PORT/metrics. As root, a file read again is\n"
     "  served by FUSE passthrough from a plain copy in the cache (local-disk speed);\n"
     "  --no-passthrough serves every read through the daemon. --max-nodes: the entries\n"
     "  outside the points (environments, labels, at/ links) the daemon keeps (default\n"
     "  200000; entries under a point cost the daemon nothing); past it the least recently\n"
     "  used are dropped from the kernel's cache and looked up again when used. --threads: FUSE\n"
     "  worker threads; --debug: libfuse's debug output. Without --foreground the process\n"
     "  detaches and logs to <cache_dir>/mount.log.\n"},
    {"umount", cmd_umount, umount_opts, "z", false, "unmount",
     "usage: dvsnap umount [-z|--lazy] MOUNTPOINT\n"
     "  --lazy detaches it now and finishes when the last file there closes.\n"},
    {"restore", cmd_restore, restore_opts, "t:T:anyc:w", true,
     "restore a point into a sandbox, writing only what differs",
     "usage: dvsnap restore ENV POINT -t|--target ENV2 [-T|--tables a,b] [-a|--include-audit]\n"
     "                      [--map FILE] [--fallback-owner systemuser:ID|team:ID]\n"
     "                      [--allow-business-logic]\n"
     "                      [-n|--dry-run] [-y|--yes | -c|--confirm ENV2] [-w|--wait] [--json]\n"
     "  Restores the point (or some of its tables) into the sandbox ENV2, writing only what\n"
     "  differs, after a safety backup of ENV2. Without --yes or --confirm the target's name is\n"
     "  asked for on the terminal (refused, exit 3, when stdin is not one); a dry run needs no\n"
     "  confirmation. Prints a per-table summary (or, with --json, the outcome document).\n"
     "  --wait shows progress lines on stderr even when it is not a terminal.\n"
     "  Users, teams, business units and currencies are matched to ENV2's (users by Entra\n"
     "  object id, then domain name); --map FILE adds or overrides pairs, one a line:\n"
     "  '<table> <source id> <target id>'. Rows whose owner has no match get the\n"
     "  --fallback-owner (default: the application user dvsnap runs as). Plug-ins and flows\n"
     "  are bypassed (refused, exit 3, without the prvBypassCustomBusinessLogic privilege)\n"
     "  unless --allow-business-logic.\n" POINT_FORMS},
    {"complete", cmd_complete, NULL, "", false,
     "names for shell completion (environments, points, tables)",
     "usage: dvsnap complete envs | points ENV | tables ENV POINT\n"
     "  One name per line, from the repository alone (no request to the service).\n"},
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

static void usage(FILE *f)
{
    fprintf(f, "usage: dvsnap [OPTIONS] COMMAND [ARGS]   (options may also follow the command)\n"
               "\ncommands:\n");
    for (size_t i = 0; i < cli_n_commands; i++)
        fprintf(f, "  %-9s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(f,
            "  help      `dvsnap help COMMAND`: a command's usage\n"
            "\noptions:\n"
            "  --config FILE   the configuration (else $DVSNAP_CONFIG, else\n"
            "                  $XDG_CONFIG_HOME/dvsnap/config, else /etc/dvsnap/config)\n"
            "  --json          one JSON document on stdout (env, capture, backup, points, prune,\n"
            "                  check, restore, status), JSON-lines progress on stderr\n"
            "  -q, --quiet     no progress, and no report of what an action did\n"
            "  -v, --verbose   more log output (-vv: debug)\n"
            "  --now TIME      act as of this RFC 3339 time (status, prune; capture: the point's\n"
            "                  time, for tests); also $DVSNAP_NOW\n"
            "  --version       print the version\n"
            "  -h, --help      this text, or a command's usage after the command\n"
            "\nexit codes: 0 ok, 1 failure, 2 usage, 3 refused by a platform rule, 4 repository\n"
            "damaged, 5 point committed without some tables, 6 mass-delete anomaly,\n"
            "7 stale (status), 11 lock held by another writer.\n");
}

static const struct command *find(const char *name)
{
    for (size_t i = 0; i < cli_n_commands; i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    return NULL;
}

/* Does option `name` (long, up to len bytes) or letter `c` take an argument in any table?
 * (Used to find the command word before the command, and so its options, is known.) */
static bool takes_arg(const char *name, size_t len, int c)
{
    const struct option *tables[16];
    size_t nt = 0;
    tables[nt++] = global_opts;
    for (size_t i = 0; i < cli_n_commands && nt < 16; i++)
        if (cli_commands[i].opts)
            tables[nt++] = cli_commands[i].opts;
    for (size_t t = 0; t < nt; t++)
        for (const struct option *o = tables[t]; o->name; o++)
            if (name ? strlen(o->name) == len && strncmp(o->name, name, len) == 0
                     : o->val == c)
                return o->has_arg == required_argument;
    return false;
}

/* Index of the command word in argv (the first argument that is neither an option nor an
 * option's value), or argc. */
static int find_command(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            return i + 1 < argc ? i + 1 : argc;
        if (a[0] != '-' || a[1] == '\0')
            return i;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            if (!eq && takes_arg(a + 2, strlen(a + 2), 0))
                i++;
            continue;
        }
        for (const char *p = a + 1; *p; p++)
            if (takes_arg(NULL, 0, (unsigned char)*p)) {
                if (!p[1])
                    i++;
                break;
            }
    }
    return argc;
}

int main(int argc, char **argv)
{
    int helper_rc = mount_helper_argv(&argc, &argv); /* run by mount(8) for /etc/fstab */
    if (helper_rc >= 0)
        return helper_rc;
    struct cli cli = {0};
    /* Secrets live in this process's memory: no core dumps, no ptrace by other users. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

    int ci = find_command(argc, argv);
    const struct command *cmd = ci < argc ? find(argv[ci]) : NULL;
    if (ci < argc && !cmd && strcmp(argv[ci], "help") != 0) {
        fprintf(stderr, "dvsnap: unknown command '%s'\n", argv[ci]);
        usage(stderr);
        return EXIT_USAGE;
    }
    cli.command = cmd ? cmd->name : NULL;

    /* getopt_long over the global options and the command's; "-" returns arguments in order
     * (code 1), ":" reports a missing value as ':' */
    struct option longopts[32];
    size_t nl = 0;
    for (const struct option *o = global_opts; o->name; o++)
        longopts[nl++] = *o;
    for (const struct option *o = cmd && cmd->opts ? cmd->opts : NULL; o && o->name && nl < 31;
         o++)
        longopts[nl++] = *o;
    memset(&longopts[nl], 0, sizeof longopts[nl]);
    char shortopts[64];
    snprintf(shortopts, sizeof shortopts, "-:" GLOBAL_SHORT "%s", cmd ? cmd->shortopts : "");

    struct cli_opt *copts = calloc((size_t)argc + 1, sizeof *copts);
    char **pos = calloc((size_t)argc + 1, sizeof *pos);
    size_t nc = 0, np = 0;
    bool help = false, version = false;
    int rc = EXIT_USAGE, ch;
    if (!copts || !pos) {
        fprintf(stderr, "dvsnap: out of memory\n");
        rc = EXIT_FAIL;
        goto out;
    }
    opterr = 0;
    optind = 1;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        switch (ch) {
        case 1: pos[np++] = optarg; break;
        case G_CONFIG: cli.config_path = optarg; break;
        case G_VERBOSE: cli.verbose++; break;
        case G_QUIET: cli.quiet = true; break;
        case G_JSON: cli.json = true; break;
        case G_VERSION: version = true; break;
        case G_NOW: cli.now_arg = optarg; break;
        case G_HELP: help = true; break;
        case ':':
        case '?': {
            /* the option as written: a letter of a cluster, else the whole argument */
            const char *arg = argv[optind - 1];
            char letter[3] = {'-', (char)optopt, '\0'};
            if (optopt > 0 && optopt < 128 && strncmp(arg, "--", 2) != 0)
                arg = letter;
            cli_usage_error(&cli, ch == ':' ? "option %s needs a value" : "unknown option %s",
                            arg);
            goto out;
        }
        default:
            copts[nc].val = ch;
            copts[nc].arg = optarg;
            nc++;
        }
    }
    for (; optind < argc; optind++) /* after "--" */
        pos[np++] = argv[optind];

    if (version) {
        printf("dvsnap %s\n", DVSNAP_VERSION);
        rc = EXIT_OK;
        goto out;
    }
    if (cli.verbose)
        log_set_level(cli.verbose >= 2 ? LOG_DEBUG : LOG_INFO);
    if (np == 0) {
        usage(help ? stdout : stderr);
        rc = help ? EXIT_OK : EXIT_USAGE;
        goto out;
    }
    if (!cmd) { /* help [COMMAND] */
        const struct command *c = np > 1 ? find(pos[1]) : NULL;
        if (np > 1 && !c && strcmp(pos[1], "help") != 0) {
            fprintf(stderr, "dvsnap: unknown command '%s'\n", pos[1]);
            usage(stderr);
            goto out;
        }
        if (c)
            fputs(c->usage, stdout);
        else
            usage(stdout);
        rc = EXIT_OK;
        goto out;
    }
    if (help) {
        fputs(cmd->usage, stdout);
        rc = EXIT_OK;
        goto out;
    }
    if (cli.json && !cmd->json) {
        rc = cli_usage_error(&cli, "%s has no --json output", cmd->name);
        goto out;
    }
    struct cli_args args = {copts, nc, pos + 1, np - 1};
    rc = cmd->run(&cli, &args);
    cli_release(&cli);
out:
    free(copts);
    free(pos);
    return rc;
}
