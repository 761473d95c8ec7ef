/* fs: the mount's lifecycle (the contract is fs.h; the parts of the view are listed in fs_int.h).
 * fs_run sets up the view's state and the root node, creates the FUSE session (libfuse3's
 * low-level API) with the table of operations, mounts, installs passthrough as libfuse's custom
 * I/O (fs/passthrough.h), starts the refresher and completer threads and runs libfuse's
 * multi-threaded session loop in the caller's process (it never forks: a caller that wants to
 * run in the background forks before it calls). When the loop ends (unmount,
 * SIGINT/SIGTERM/SIGHUP) it stops the threads and the cache's fills, unmounts and frees
 * everything, the handles whose RELEASE never came included.
 *
 * Limits: one mount per call; at most max_threads FUSE workers (16 by default, 4 kept idle);
 * reads of at most 1 MiB (max_read), no splice, no asynchronous direct I/O.
 * Threading: fs_run runs on the caller's thread. It sets every "setup" field (fs_int.h) before the
 * session loop and the threads start, and frees after they ended; it takes stop_mu and cq_mu only
 * to stop the threads. The custom I/O hooks run on FUSE worker threads. */
#include "fs/fs_int.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "fs/passthrough.h"

struct fsd *fs_of_req(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
    conn->want |= FUSE_CAP_READDIRPLUS;
    /* every listing request is READDIRPLUS, not only a directory's first (the kernel's "auto"
     * mode): otherwise `ls -l` of a directory longer than one request looks up each of the rest
     * one by one, and once entries were dropped (node_trim) every warm listing did */
    conn->want &= ~(unsigned)FUSE_CAP_READDIRPLUS_AUTO;
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    /* O_DIRECT reads as plain requests in the reader's context: with asynchronous direct I/O the
     * reader waits uninterruptibly, so a signal could not withdraw a read waiting for a fill */
    conn->want &= ~(unsigned)FUSE_CAP_ASYNC_DIO;
    conn->max_read = 1u << 20; /* must match the max_read mount option */
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .rmdir = ll_rmdir,
    .unlink = ll_erofs_entry,
    .mkdir = ll_mkdir,
    .mknod = ll_mknod,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .create = ll_create,
    .statfs = ll_statfs,
};

bool fs_mount_is_stale(const char *path)
{
    /* not stat (the kernel's attribute cache can answer it for a moment after the daemon died)
     * nor opendir (it never asks the daemon, see ll_opendir): statfs always asks */
    struct statvfs sv;
    return statvfs(path, &sv) < 0 && errno == ENOTCONN;
}

/* libfuse's custom I/O hooks: its userdata is the view's */
static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    return passthrough_read(((struct fsd *)userdata)->pt, fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    return passthrough_writev(((struct fsd *)userdata)->pt, fd, iov, count);
}

int fs_run(const struct fs_opts *o, const struct fs_source *src, struct dverr *err)
{
    struct fsd *f = calloc(1, sizeof *f);
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_loop_config *lc = NULL;
    int rc = 0;
    bool mounted = false, handlers = false;

    if (!f)
        return dverr_set(err, -ENOMEM, "out of memory");
    f->o = o;
    f->src = src;
    f->owner = getuid();
    f->group = getgid();
    f->started = time(NULL);
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->vmu, NULL);
    pthread_mutex_init(&f->stop_mu, NULL);
    pthread_cond_init(&f->stop_cond, NULL);
    pthread_mutex_init(&f->cq_mu, NULL);
    pthread_cond_init(&f->cq_cond, NULL);
    f->max_nodes = o->max_nodes ? o->max_nodes : FS_MAX_NODES_DEFAULT;
    f->n_buckets = 1024;
    f->by_ino = calloc(f->n_buckets, sizeof *f->by_ino);
    f->by_path = calloc(f->n_buckets, sizeof *f->by_path);
    f->schema_memo = calloc(SCHEMA_MEMO_SLOTS, sizeof *f->schema_memo);
    struct node *root = calloc(1, sizeof *root);
    if (!f->by_ino || !f->by_path || !f->schema_memo || !root || !(root->path = strdup(""))) {
        free(root);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    root->ino = FUSE_ROOT_ID;
    root->kind = N_ROOT;
    root->nlookup = 1;
    root->phash = fs_fnv1a("");
    node_link(f, root);

    if (fs_mount_is_stale(o->mountpoint)) {
        rc = dverr_set(err, -ENOTCONN,
                       "%s is a stale mount of a daemon that died (Transport endpoint is not "
                       "connected); `dvsnap mount` recovers it, or run `fusermount3 -uz %s`",
                       o->mountpoint, o->mountpoint);
        goto out;
    }
    char opt[512];
    snprintf(opt, sizeof opt,
             "fsname=dvsnap,subtype=dvsnap,default_permissions,max_read=1048576%s",
             o->allow_other ? ",allow_other" : "");
    if (fuse_opt_add_arg(&args, "dvsnap") || fuse_opt_add_arg(&args, "-o") ||
        fuse_opt_add_arg(&args, opt) || (o->debug && fuse_opt_add_arg(&args, "-d"))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    f->se = fuse_session_new(&args, &ll_ops, sizeof ll_ops, f);
    if (!f->se) {
        rc = dverr_set(err, -EINVAL, "cannot create the FUSE session");
        goto out;
    }
    /* a background job of a shell starts with SIGINT ignored, and libfuse then leaves it so:
     * SIGINT must always unmount cleanly */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (fuse_set_signal_handlers(f->se) != 0) {
        rc = dverr_set(err, -EIO, "cannot set signal handlers");
        goto out;
    }
    handlers = true;
    if (fuse_session_mount(f->se, o->mountpoint) != 0) {
        rc = dverr_set(err, -EIO, "cannot mount at %s (is /dev/fuse available? is it in use?)",
                       o->mountpoint);
        goto out;
    }
    mounted = true;
    /* passthrough needs CAP_SYS_ADMIN; without it the kernel refuses every backing file */
    f->pt = passthrough_new(!o->no_passthrough && geteuid() == 0);
    struct fuse_custom_io io = {.read = io_read, .writev = io_writev};
    if (!f->pt || fuse_session_custom_io(f->se, &io, fuse_session_fd(f->se)) != 0) {
        rc = dverr_set(err, -ENOMEM, "cannot set up the FUSE device's I/O");
        goto out;
    }
    /* neither takes signals: SIGINT must reach the session loop */
    if (thread_start(&f->refresher, refresher_main, f) == 0)
        f->refresher_started = true;
    /* without it, reads wait for fills on the FUSE workers, as they did before */
    if (o->cache && thread_start(&f->completer, completer_main, f) == 0)
        f->completer_started = true;
    if (o->on_mounted)
        o->on_mounted(o->on_mounted_ctx);
    log_info("mount: serving %s", o->mountpoint);
    lc = fuse_loop_cfg_create();
    if (!lc) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    fuse_loop_cfg_set_max_threads(lc, (unsigned)(o->max_threads > 0 ? o->max_threads : 16));
    fuse_loop_cfg_set_idle_threads(lc, 4);
    fuse_loop_cfg_set_clone_fd(lc, 0);
    int lrc = fuse_session_loop_mt(f->se, lc);
    if (lrc < 0 && lrc != -EINTR)
        rc = dverr_set(err, lrc, "FUSE session loop: %s", strerror(-lrc));
out:
    if (f->refresher_started) {
        pthread_mutex_lock(&f->stop_mu);
        f->stopping = true;
        pthread_cond_broadcast(&f->stop_cond);
        pthread_mutex_unlock(&f->stop_mu);
        pthread_join(f->refresher, NULL);
    }
    /* fills hold references to point views and use the source: stop them before freeing */
    if (o->cache)
        cache_stop_fills(o->cache); /* this also answers every waiting read */
    if (f->completer_started) {
        pthread_mutex_lock(&f->cq_mu);
        f->cq_stop = true;
        pthread_cond_signal(&f->cq_cond);
        pthread_mutex_unlock(&f->cq_mu);
        pthread_join(f->completer, NULL);
    }
    if (mounted)
        fuse_session_unmount(f->se);
    if (handlers)
        fuse_remove_signal_handlers(f->se);
    if (f->se)
        fuse_session_destroy(f->se);
    fuse_loop_cfg_destroy(lc);
    fuse_opt_free_args(&args);
    /* free everything */
    if (f->by_ino) {
        for (size_t i = 0; i < f->n_buckets; i++) {
            struct node *n = f->by_ino[i], *next;
            for (; n; n = next) {
                next = n->inext;
                node_free(n);
            }
        }
    }
    free(f->by_ino);
    free(f->by_path);
    node_numbers_free(f);
    free(f->schema_memo);
    for (struct open_count *c = f->open_counts, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    /* files still open when the session ended (a RELEASE still queued at unmount) */
    for (struct handle *h = f->handles, *next; h; h = next) {
        next = h->next;
        handle_free(h);
    }
    passthrough_free(f->pt);
    for (struct pview *v = f->lru_head, *next; v; v = next) {
        next = v->next;
        pview_free(f, v);
    }
    for (struct eview *e = f->eviews, *next; e; e = next) {
        next = e->next;
        if (e->pts)
            src->ops->points_free(e->pts, e->n);
        free(e->labels);
        free(e->label_pt);
        free(e->gone);
        free(e->reheld);
        free(e->name);
        free(e);
    }
    strv_free(f->env_names, f->n_envs);
    free(f->env_dnames);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->vmu);
    pthread_mutex_destroy(&f->stop_mu);
    pthread_cond_destroy(&f->stop_cond);
    pthread_mutex_destroy(&f->cq_mu);
    pthread_cond_destroy(&f->cq_cond);
    free(f);
    return rc;
}
