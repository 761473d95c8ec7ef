/* cli: shared state of a dvsnap run (see cli.h). Opens the configuration, repository and client
 * lazily so `dvsnap help` and `dvsnap init` need nothing they do not use. Single-threaded. */
#include "tools/dvsnap/cli.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/json.h"
#include "backend/base/log.h"
#include "tools/dvsnap/meter.h"

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

static struct repo *open_repo(struct cli *cli, bool prune)
{
    struct dverr err = {0};
    if (cli->repo)
        return cli->repo;
    if (!cli_config(cli))
        return NULL;
    if ((prune ? repo_open_prune : repo_open)(cli->cfg, &cli->repo, &err)) {
        fprintf(stderr, "dvsnap: repository: %s\n", dverr_msg(&err));
        return NULL;
    }
    /* before any other thread exists (meter.h) */
    if (meter_attach(repo_store(cli->repo), &cli->meter)) {
        fprintf(stderr, "dvsnap: out of memory\n");
        repo_free(cli->repo);
        cli->repo = NULL;
        return NULL;
    }
    return cli->repo;
}

struct repo *cli_repo(struct cli *cli)
{
    return open_repo(cli, false);
}

struct repo *cli_repo_prune(struct cli *cli)
{
    return open_repo(cli, true);
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
    repo_free(cli->repo); /* frees the store, and with it the meter */
    config_free(cli->cfg);
    cli->dv = NULL;
    cli->repo = NULL;
    cli->meter = NULL;
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

int cli_usage_error(const struct cli *cli, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (cli->command)
        fprintf(stderr, "dvsnap %s: %s (see `dvsnap help %s`)\n", cli->command, msg,
                cli->command);
    else
        fprintf(stderr, "dvsnap: %s (see `dvsnap help`)\n", msg);
    return EXIT_USAGE;
}

int cli_fail(const struct cli *cli, int rc, const struct dverr *err)
{
    const char *m = dverr_msg(err);
    fprintf(stderr, "dvsnap %s: %s\n", cli->command, *m ? m : strerror(rc < 0 ? -rc : rc));
    if (rc == -EIO)
        return EXIT_DAMAGED;
    if (rc == -ENOENT || rc == -ECANCELED || rc == -ESTALE)
        return EXIT_FAIL;
    return cli_exit_code(rc);
}

/* --now, else $DVSNAP_NOW; NULL when neither is given (or it is empty). */
static const char *pinned_arg(const struct cli *cli)
{
    const char *s = cli->now_arg;
    if (!s)
        s = getenv("DVSNAP_NOW");
    return s && *s ? s : NULL;
}

int cli_now(const struct cli *cli, time_t *out)
{
    const char *s = pinned_arg(cli);
    if (!s) {
        *out = time(NULL);
        return 0;
    }
    return rfc3339_to_time(s, out);
}

int cli_pinned_time(const struct cli *cli, time_t *out)
{
    const char *s = pinned_arg(cli);
    *out = 0;
    if (!s)
        return 0;
    int rc = rfc3339_to_time(s, out);
    if (rc)
        *out = 0;
    return rc;
}

void cli_user_at_host(char *out, size_t n)
{
    char host[256] = "localhost";
    const struct passwd *pw = getpwuid(geteuid());
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(out, n, "%s@%s", pw && pw->pw_name ? pw->pw_name : "?", host);
}

int cli_resolve_point(struct repo *repo, const char *env, const char *arg, char out[32],
                      struct dverr *err)
{
    struct point_summary *ps = NULL;
    size_t n = 0;
    int rc = repo_points(repo, env, &ps, &n, err);
    if (rc)
        return rc;
    rc = -ENOENT;
    time_t t;
    if (n && strcmp(arg, "latest") == 0) {
        snprintf(out, 32, "%s", ps[n - 1].name);
        rc = 0;
    }
    for (size_t i = 0; rc && i < n; i++)
        if (strcmp(ps[i].name, arg) == 0) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    for (size_t i = n; rc && i-- > 0;) /* newest manual backup with that label */
        if (ps[i].label && strcmp(ps[i].label, arg) == 0) {
            snprintf(out, 32, "%s", ps[i].name);
            rc = 0;
        }
    if (rc && rfc3339_to_time(arg, &t) == 0)
        for (size_t i = n; rc && i-- > 0;)
            if (ps[i].taken_at <= t) {
                snprintf(out, 32, "%s", ps[i].name);
                rc = 0;
            }
    point_summaries_free(ps, n);
    if (rc)
        return dverr_set(err, -ENOENT,
                         "%s has no restore point %s%s (a point name, latest, a label or an "
                         "RFC 3339 time; see dvsnap points %s)",
                         env, arg, n ? "" : " (it has no points at all)", env);
    return 0;
}

void json_str(struct buf *b, const char *s)
{
    if (s)
        buf_add_json_string(b, s, strlen(s));
    else
        buf_addstr(b, "null");
}

void json_time(struct buf *b, time_t t)
{
    char s[32];
    if (t <= 0) {
        buf_addstr(b, "null");
        return;
    }
    rfc3339_from_time(t, s);
    json_str(b, s);
}

int json_print(struct buf *b)
{
    if (!b->data) {
        fprintf(stderr, "dvsnap: out of memory\n");
        return EXIT_FAIL;
    }
    if (b->len == 0 || b->data[b->len - 1] != '\n')
        buf_addch(b, '\n');
    if (fwrite(b->data, 1, b->len, stdout) != b->len || fflush(stdout) != 0) {
        fprintf(stderr, "dvsnap: writing the JSON document: %s\n", strerror(errno));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
