/* refresher: the thread that tells the kernel what changed, and asks it to drop entries when it
 * holds more than the view's bound of nodes (node_trim, at once when woken for it by
 * refresher_wake_trim, and at every pass). Each pass (every refresh_ms, 1 s by
 * default, or at once when refresher_wake says a request saw a change) re-reads the environment
 * list and every environment the kernel has seen, then drops the kernel's cached listings and
 * entries that changed: the root's listing; an environment's listing, its `latest` entry, its
 * labels/ listing and the entries of its points that went away; .operations/'s listing when its
 * ids changed. Request handlers leave this to it (invalidating an entry of the directory a
 * request is looking up in would deadlock); only a control write drops .operations/'s listing at
 * once (fs_ops_dir_changed: an inode, not an entry). It also raises the mount's read-ahead to
 * 1 MiB (root only, once).
 *
 * Inside a point only backup.json is ever invalidated, when a hold is placed or released (its
 * "hold" changes; the rest of a point never does): the point's view is dropped so it renders
 * again.
 * Limits: a change is told within one period; only nodes the kernel holds are invalidated; a
 * hold whose reason changes without a release shows when the point's view is next loaded.
 * Threading: one thread (refresher_main); refresher_wake and fs_ops_dir_changed from any thread.
 * fsd->stop_mu guards the wake-up and stop flags; vmu and mu are taken briefly, never across
 * fuse_lowlevel_notify_*. */
#include "fs/fs_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "backend/base/log.h"

/* Have the refresher run its pass now: only it tells the kernel about changes (a request handler
 * cannot: invalidating an entry of the directory it is looking up in would deadlock). */
void refresher_wake(struct fsd *f)
{
    pthread_mutex_lock(&f->stop_mu);
    f->refresh_now = true;
    pthread_cond_signal(&f->stop_cond);
    pthread_mutex_unlock(&f->stop_mu);
}

void refresher_wake_trim(struct fsd *f)
{
    pthread_mutex_lock(&f->stop_mu);
    f->trim_now = true;
    pthread_cond_signal(&f->stop_cond);
    pthread_mutex_unlock(&f->stop_mu);
}

/* The kernel caches .operations/'s listing: drop it (a new operation). */
void fs_ops_dir_changed(struct fsd *f)
{
    fuse_ino_t ino = node_path_ino(f, "/.operations");
    if (ino)
        fuse_lowlevel_notify_inval_inode(f->se, ino, 0, 0);
}

/* A hash of the operation ids, to see .operations/ change. */
static uint64_t ops_list_hash(struct fsd *f)
{
    char **ids = NULL;
    size_t k = 0;
    uint64_t h = 0;
    if (f->o->control && f->o->control->ops->ops_list(f->o->control->ctx, &ids, &k) == 0) {
        for (size_t i = 0; i < k; i++)
            h = h * 31 + fs_fnv1a(ids[i]);
        strv_free(ids, k);
    }
    return h;
}

/* A hold was placed or released: backup.json of env/point is rendered again, and the kernel
 * drops what it cached of it (when it has seen it). */
static void notify_reheld(struct fsd *f, const char *env, const char *point)
{
    pview_drop(f, env, point);
    fuse_ino_t ino = node_point_ino(f, env, point, N_BACKUP_JSON);
    if (ino)
        fuse_lowlevel_notify_inval_inode(f->se, ino, 0, 0);
}

static void notify_env_changed(struct fsd *f, const char *env, char (*gone)[32], size_t n_gone,
                               char (*reheld)[32], size_t n_reheld)
{
    char dname[256] = "";
    pthread_mutex_lock(&f->vmu);
    for (size_t i = 0; i < f->n_envs; i++)
        if (strcmp(f->env_names[i], env) == 0)
            memcpy(dname, f->env_dnames[i], 256);
    pthread_mutex_unlock(&f->vmu);
    if (!dname[0])
        return;
    char path[300];
    snprintf(path, sizeof path, "/%s", dname);
    fuse_ino_t env_ino = node_path_ino(f, path);
    snprintf(path, sizeof path, "/%s/labels", dname);
    fuse_ino_t labels_ino = node_path_ino(f, path);
    if (!env_ino)
        return;
    fuse_lowlevel_notify_inval_inode(f->se, env_ino, 0, 0);
    fuse_lowlevel_notify_inval_entry(f->se, env_ino, "latest", 6);
    if (labels_ino)
        fuse_lowlevel_notify_inval_inode(f->se, labels_ino, 0, 0);
    for (size_t i = 0; i < n_gone; i++)
        fuse_lowlevel_notify_inval_entry(f->se, env_ino, gone[i], strlen(gone[i]));
    for (size_t i = 0; i < n_reheld; i++)
        notify_reheld(f, env, reheld[i]);
    log_debug("mount: %s changed; kernel entries invalidated", env);
}

/* Let the kernel read ahead 1 MiB (the frame size) instead of 128 KiB. Only root may; best
 * effort. Runs on the refresher thread: stat of our own root needs the session loop running. */
static void raise_readahead(struct fsd *f)
{
    struct stat st;
    if (geteuid() != 0 || stat(f->o->mountpoint, &st) != 0)
        return;
    char path[128];
    snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
             minor(st.st_dev));
    FILE *fp = fopen(path, "we");
    if (fp) {
        fputs("1024\n", fp);
        fclose(fp);
    }
}

void *refresher_main(void *arg)
{
    struct fsd *f = arg;
    int period = f->o->refresh_ms > 0 ? f->o->refresh_ms : 1000;
    raise_readahead(f);
    int64_t last_pass = now_ms();
    for (;;) {
        pthread_mutex_lock(&f->stop_mu);
        if (!f->stopping && !f->refresh_now && !f->trim_now) {
            struct timespec ts = timespec_in_ms(CLOCK_REALTIME, period);
            pthread_cond_timedwait(&f->stop_cond, &f->stop_mu, &ts);
        }
        bool refresh = f->refresh_now;
        f->refresh_now = false;
        f->trim_now = false;
        bool stop = f->stopping;
        pthread_mutex_unlock(&f->stop_mu);
        if (stop)
            break;
        node_trim(f);
        int64_t now = now_ms();
        if (!refresh && now - last_pass < period)
            continue; /* woken to trim only */
        last_pass = now;
        /* the kernel is told of every change, whichever thread saw it first */
        envs_refresh(f, 0);
        pthread_mutex_lock(&f->vmu);
        bool envs_changed = f->envs_notify;
        f->envs_notify = false;
        pthread_mutex_unlock(&f->vmu);
        if (envs_changed)
            fuse_lowlevel_notify_inval_inode(f->se, FUSE_ROOT_ID, 0, 0);
        uint64_t oh = ops_list_hash(f); /* operations the capture loop started, and ends */
        if (oh != f->ops_hash) {
            f->ops_hash = oh;
            fs_ops_dir_changed(f);
        }
        /* every environment the kernel has seen */
        pthread_mutex_lock(&f->vmu);
        size_t n = 0;
        for (struct eview *e = f->eviews; e; e = e->next)
            n++;
        char **names = calloc(n ? n : 1, sizeof *names);
        size_t k = 0;
        for (struct eview *e = f->eviews; names && e; e = e->next)
            if ((names[k] = strdup(e->name)))
                k++;
        pthread_mutex_unlock(&f->vmu);
        for (size_t i = 0; i < k; i++) {
            eview_refresh(f, names[i], -1);
            pthread_mutex_lock(&f->vmu);
            struct eview *e = eview_find(f, names[i]);
            bool tell = e && e->notify;
            char(*gone)[32] = tell ? e->gone : NULL;
            size_t n_gone = tell ? e->n_gone : 0;
            char(*reheld)[32] = tell ? e->reheld : NULL;
            size_t n_reheld = tell ? e->n_reheld : 0;
            if (tell) {
                e->notify = false;
                e->gone = NULL;
                e->n_gone = 0;
                e->reheld = NULL;
                e->n_reheld = 0;
            }
            pthread_mutex_unlock(&f->vmu);
            if (tell)
                notify_env_changed(f, names[i], gone, n_gone, reheld, n_reheld);
            free(gone);
            free(reheld);
            free(names[i]);
        }
        free(names);
    }
    return NULL;
}
