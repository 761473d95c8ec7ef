/* cmd_mount: `dvsnap mount` and `dvsnap umount`. Wires the repository (as the view's source),
 * the cache, the operations registry (control files) and optionally the capture loop into the
 * FUSE view (fs/fs.h), so one process can be the whole backup appliance.
 *
 * A stale mount at the mountpoint (a daemon that died: ENOTCONN) is detected at start, said so,
 * detached lazily and mounted again. The mountpoint may not be inside the cache directory or the
 * repository (the mount would read its own backing files). Without --foreground the process
 * forks before it opens the repository (service.h), logs to <cache_dir>/mount.log, and the
 * command returns once the child has mounted. With metrics_listen (or
 * --metrics-listen) it serves Prometheus metrics (health.h), and the capture loop's passes are
 * recorded for `dvsnap status` and metrics_file as `dvsnap capture`'s are.
 * Threading: the view's worker threads, its refresher, cache fills, operations, the metrics
 * server's thread. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "backend/engine/ops.h"
#include "cache/cache.h"
#include "fs/fs.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/health.h"
#include "tools/dvsnap/service.h"

/* ---- the repository as the view's source ---- */
static int s_envs(void *impl, char ***names, size_t *n, struct dverr *err)
{
    return repo_envs(impl, names, n, err);
}

static int s_points(void *impl, const char *env, struct point_summary **out, size_t *n,
                    struct dverr *err)
{
    int rc = repo_points(impl, env, out, n, err);
    if (!rc && (rc = repo_points_mark_held(impl, env, *out, *n, err))) {
        point_summaries_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int s_point_load(void *impl, const char *env, const char *name, bool with_files,
                        struct point **out, struct dverr *err)
{
    return repo_point_load_flags(impl, env, name, with_files ? 0 : REPO_LOAD_FILES_LATER, out,
                                 err);
}

static int s_env_doc(void *impl, const char *env, struct buf *out, struct dverr *err)
{
    return repo_env_doc(impl, env, out, err);
}

static int s_backup_json(void *impl, const struct point *p, struct buf *out)
{
    return cmd_hold_render_backup_json(impl, p, out);
}

static int s_stream_open(void *impl, const struct point *p, const char *table, bool changes,
                         void **stream, struct dverr *err)
{
    struct table_reader *tr = NULL;
    int rc = changes ? changes_reader_open(impl, p, table, &tr, err)
                     : table_reader_open(impl, p, table, &tr, err);
    *stream = tr;
    return rc;
}

static ssize_t s_stream_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    return table_reader_read(stream, buf, n, err);
}

static void s_stream_close(void *stream)
{
    table_reader_free(stream);
}

static int s_blob_get(void *impl, const char *id, struct buf *out, struct dverr *err)
{
    return repo_blob_get(impl, id, out, err);
}

static int s_forget(void *impl, const char *env, const char *name, struct dverr *err)
{
    return repo_forget(impl, env, name, err);
}

static int s_holds_json(void *impl, const char *env, struct buf *out)
{
    return cmd_hold_list_json(impl, env, out);
}

static const struct fs_source_ops repo_source_ops = {
    s_envs,        s_points,      point_summaries_free, s_point_load, point_free,
    s_env_doc,     s_backup_json, s_stream_open,             s_stream_read, s_stream_close,
    s_blob_get,    s_forget,      s_holds_json,
};

/* ---- the operations registry as the view's control ---- */
static int c_backup(void *ctx, const char *env, const char *label, struct dverr *err)
{
    return ops_backup_start(ctx, env, label, NULL, err);
}

static int c_restore(void *ctx, const char *env, const char *point, const char *line,
                     struct dverr *err)
{
    return ops_restore_start(ctx, env, point, line, NULL, err);
}

static int c_status(void *ctx, const char *env, const char *point, struct buf *out)
{
    return ops_status(ctx, env, point, out);
}

static int c_ops_list(void *ctx, char ***ids, size_t *n)
{
    return ops_list(ctx, ids, n);
}

static int c_ops_json(void *ctx, const char *id, struct buf *out)
{
    return ops_json(ctx, id, out);
}

static int64_t c_capture_every(void *ctx)
{
    return ops_capture_every(ctx);
}

static const struct fs_control_ops ops_control = {
    c_backup, c_restore, c_status, c_ops_list, c_ops_json, c_capture_every,
};

/* ---- helpers ---- */
static int run_fusermount(const char *flags, const char *mp)
{
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        execlp("fusermount3", "fusermount3", flags, mp, (char *)NULL);
        execlp("fusermount", "fusermount", flags, mp, (char *)NULL);
        _exit(127);
    }
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -errno;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -EBUSY;
}

static int detach_stale(const char *mp)
{
    if (geteuid() == 0 && umount2(mp, MNT_DETACH) == 0)
        return 0;
    return run_fusermount("-uz", mp);
}

struct mount_ctx {
    struct ops *ops;
    int64_t capture_every;
    const struct config *cfg;
    const char *metrics_listen;      /* or NULL */
    struct health_server *metrics;   /* started in on_mounted (after the daemon forks) */
    struct health *health;           /* records the capture loop's passes (health.h) */
    const char *mountpoint;
    struct repo *repo;
};

/* ---- the capture loop's passes into the state files and metrics_file (health.h) ---- */
static void h_pass(void *ctx, bool done)
{
    struct dverr err = {0};
    if (!done)
        health_pass_begin(ctx);
    else if (health_pass_end(ctx, &err))
        log_warn("mount: %s", dverr_msg(&err));
}

static void h_env_done(void *ctx, const struct dv_env *env, int rc,
                       const struct capture_result *res, const struct dverr *err)
{
    health_env_done(ctx, env, rc, res, err, NULL);
}

static void on_mounted(void *arg)
{
    struct mount_ctx *m = arg;
    struct dverr err = {0};
    if (m->metrics_listen && health_serve(m->cfg, m->metrics_listen, &m->metrics, &err))
        log_error("mount: metrics: %s", dverr_msg(&err));
    if (m->ops && m->health) {
        struct ops_capture_observer obs = {h_pass, h_env_done, m->health};
        ops_observe_captures(m->ops, &obs);
    }
    service_daemon_ready();                      /* the background mount: release the caller */
    service_mount_ready(m->mountpoint, m->repo); /* systemd: READY=1 once it serves */
    if (m->ops && m->capture_every > 0 && ops_capture_loop_start(m->ops, m->capture_every, &err))
        log_error("mount: capture loop: %s", dverr_msg(&err));
}

int cmd_mount(struct cli *cli, const struct cli_args *a)
{
    bool foreground = false, allow_other = false, debug = false, no_passthrough = false;
    const char *every_arg = NULL, *size_arg = NULL, *metrics_listen = NULL;
    int threads = 0;
    unsigned long long max_nodes = 0;
    for (size_t i = 0; i < a->n_opts; i++) {
        const char *v = a->opts[i].arg;
        char *end;
        switch (a->opts[i].val) {
        case O_FOREGROUND: foreground = true; break;
        case O_CAPTURE_EVERY: every_arg = v; break;
        case O_CACHE_SIZE: size_arg = v; break;
        case O_ALLOW_OTHER: allow_other = true; break;
        case O_DEBUG: debug = true; break;
        case O_THREADS:
            threads = (int)strtol(v, &end, 10);
            if (*end || threads < 1 || threads > 1024)
                return cli_usage_error(cli, "--threads takes a number from 1 to 1024");
            break;
        case O_MAX_NODES:
            max_nodes = strtoull(v, &end, 10);
            if (*end || *v == '-' || max_nodes < 1000 || max_nodes > (1ULL << 32))
                return cli_usage_error(cli, "--max-nodes takes a number from 1000 to 4294967296");
            break;
        case O_NO_PASSTHROUGH: no_passthrough = true; break;
        case O_METRICS_LISTEN: metrics_listen = v; break;
        }
    }
    if (a->n_pos != 1)
        return cli_usage_error(cli, "expected one MOUNTPOINT");
    const char *mp_arg = a->pos[0];
    struct config *cfg = cli_config(cli);
    if (!cfg)
        return EXIT_FAIL;
    if (!metrics_listen)
        metrics_listen = cfg->metrics_listen;
    struct dverr lerr = {0};
    if (metrics_listen && health_listen_check(metrics_listen, &lerr)) {
        fprintf(stderr, "dvsnap mount: %s\n", dverr_msg(&lerr));
        return EXIT_USAGE;
    }
    struct dverr err = {0};
    int64_t every = 0;
    uint64_t cache_size = cfg->cache_size;
    if (every_arg && parse_duration(every_arg, &every)) {
        fprintf(stderr, "dvsnap mount: bad --capture-every '%s' (e.g. 15m)\n", every_arg);
        return EXIT_USAGE;
    }
    if (size_arg && parse_size(size_arg, &cache_size)) {
        fprintf(stderr, "dvsnap mount: bad --cache-size '%s' (e.g. 2G)\n", size_arg);
        return EXIT_USAGE;
    }

    /* a stale mount of a dead daemon: say so, detach it, go on */
    if (fs_mount_is_stale(mp_arg)) {
        fprintf(stderr,
                "dvsnap mount: %s is a stale mount left by a daemon that died (Transport "
                "endpoint is not connected); detaching it and mounting again\n",
                mp_arg);
        if (detach_stale(mp_arg) != 0 || fs_mount_is_stale(mp_arg)) {
            fprintf(stderr, "dvsnap mount: cannot detach %s; try `fusermount3 -uz %s`\n", mp_arg,
                    mp_arg);
            return EXIT_FAIL;
        }
    }
    char mp[PATH_MAX];
    if (!realpath(mp_arg, mp)) {
        fprintf(stderr, "dvsnap mount: %s: %s\n", mp_arg, strerror(errno));
        return EXIT_FAIL;
    }
    struct stat st;
    if (stat(mp, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "dvsnap mount: %s is not a directory\n", mp);
        return EXIT_FAIL;
    }
    int rc = mkdir_p(cfg->cache_dir, 0700);
    if (rc) {
        fprintf(stderr, "dvsnap mount: cache directory %s: %s\n", cfg->cache_dir, strerror(-rc));
        return EXIT_FAIL;
    }
    if (cache_check_mountpoint(cfg->cache_dir, mp, &err)) {
        fprintf(stderr, "dvsnap mount: %s\n", dverr_msg(&err));
        return EXIT_USAGE;
    }
    if (cfg->repository && !strstr(cfg->repository, "://")) {
        struct dverr e2 = {0};
        if (cache_check_mountpoint(cfg->repository, mp, &e2) == -EINVAL) {
            fprintf(stderr, "dvsnap mount: the mountpoint and the repository %s overlap\n",
                    cfg->repository);
            return EXIT_USAGE;
        }
    }
    /* in the background: fork now, before the catalog is opened (see service.h) */
    if (!foreground && (rc = service_daemon_start()) != 0) {
        fprintf(stderr, "dvsnap mount: cannot fork: %s\n", strerror(-rc));
        return EXIT_FAIL;
    }
    struct repo *repo = cli_repo(cli);
    if (!repo)
        return EXIT_FAIL;
    struct cache *cache = NULL;
    struct cache_opts co = {.budget = cache_size};
    rc = cache_open(cfg->cache_dir, &co, &cache, &err);
    if (rc) {
        fprintf(stderr, "dvsnap mount: %s\n", dverr_msg(&err));
        return rc == -EBUSY ? EXIT_LOCKED : EXIT_FAIL;
    }
    struct ops *ops = NULL;
    struct dv_client *dv = cli_dv(cli);
    if (dv) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/operations", cfg->cache_dir);
        if (ops_new(repo, dv, cfg, dir, &ops, &err)) {
            fprintf(stderr, "dvsnap mount: %s\n", dverr_msg(&err));
            cache_free(cache);
            return EXIT_FAIL;
        }
    } else {
        fprintf(stderr, "dvsnap mount: without the Dataverse client, control files (.backup, "
                        ".restore) and --capture-every are off; the view is read-only\n");
    }
    if (every > 0 && !ops) {
        cache_free(cache);
        return EXIT_FAIL;
    }
    if (!foreground) {
        char logp[PATH_MAX];
        snprintf(logp, sizeof logp, "%s/mount.log", cfg->cache_dir);
        if (log_set_file(logp) != 0)
            fprintf(stderr, "dvsnap mount: cannot log to %s\n", logp);
    }
    struct fs_control control = {&ops_control, ops};
    struct fs_source src = {&repo_source_ops, repo};
    struct mount_ctx mctx = {ops, every, cfg, metrics_listen, NULL, NULL, mp, repo};
    if (ops && health_new(cfg, repo, cli->meter, dv, &mctx.health)) {
        ops_free(ops);
        cache_free(cache);
        return EXIT_FAIL;
    }
    struct fs_opts fo = {0};
    fo.mountpoint = mp;
    fo.allow_other = allow_other;
    fo.debug = debug;
    fo.max_threads = threads;
    fo.max_nodes = (size_t)max_nodes;
    fo.no_passthrough = no_passthrough;
    fo.cache_key_prefix = cfg->repository;
    fo.cache = cache;
    fo.control = ops ? &control : NULL;
    fo.on_mounted = on_mounted;
    fo.on_mounted_ctx = &mctx;
    rc = fs_run(&fo, &src, &err);
    health_serve_stop(mctx.metrics);
    service_mount_stopped();
    ops_free(ops);
    health_free(mctx.health);
    cache_free(cache);
    if (rc) {
        fprintf(stderr, "dvsnap mount: %s\n", dverr_msg(&err));
        log_error("mount: %s", dverr_msg(&err));
        return EXIT_FAIL;
    }
    return EXIT_OK;
}

int cmd_umount(struct cli *cli, const struct cli_args *a)
{
    bool lazy = false;
    for (size_t i = 0; i < a->n_opts; i++)
        if (a->opts[i].val == O_LAZY)
            lazy = true;
    if (a->n_pos != 1)
        return cli_usage_error(cli, "expected one MOUNTPOINT");
    const char *mp = a->pos[0];
    if (fs_mount_is_stale(mp)) {
        if (detach_stale(mp) == 0)
            return EXIT_OK;
        fprintf(stderr, "dvsnap umount: cannot detach the stale mount %s\n", mp);
        return EXIT_FAIL;
    }
    int rc = run_fusermount(lazy ? "-uz" : "-u", mp);
    if (rc) {
        fprintf(stderr, "dvsnap umount: %s is busy or not a dvsnap mount (close files there, or "
                        "use --lazy to detach it now and finish when the last file closes)\n", mp);
        return EXIT_FAIL;
    }
    return EXIT_OK;
}
