/* cache: the cache's lifecycle. cache_open checks and creates the directory (0700, ours, not
 * writable by others), takes its exclusive lock, allocates the shared slots (in huge pages where
 * allowed), opens and loads the index (index.c) and bounds the budget by the free disk space;
 * cache_free stops the fills and the watchdog and frees everything. Also: stopping and waiting for
 * fills, the counters, and the mountpoint check. Contract in cache.h; the rest of the cache, and
 * which lock guards what, in cache_int.h.
 *
 * Limits: one process per cache directory (-EBUSY). The budget is lowered at open to what the
 * cache holds plus 95% of the free disk space, and not raised again.
 * Threading: cache_open and cache_free run alone (no other call on the cache during them);
 * cache_stop_fills, cache_wait_fills and cache_stats take c->mu. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "cache/cache_int.h"

/* The cache holds plaintext customer data: refuse a directory that is a symlink, is not ours, or
 * that others can write, and a parent that is a symlink or that others can write without the
 * sticky bit (they could swap the directory). A directory that does not exist yet passes (it is
 * created 0700 and checked again). */
static int cache_dir_safe(const char *dir, struct dverr *err)
{
    struct stat sb;
    char parent[PATH_MAX];
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n >= sizeof parent)
        return dverr_set(err, -ENAMETOOLONG, "cache directory %s: name too long", dir);
    memcpy(parent, dir, n);
    parent[n] = 0;
    if (lstat(parent, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return dverr_set(err, -ELOOP, "cache directory %s is a symlink: refused", dir);
        if (!S_ISDIR(sb.st_mode))
            return dverr_set(err, -ENOTDIR, "cache directory %s is not a directory", dir);
        if (sb.st_uid != geteuid())
            return dverr_set(err, -EPERM, "cache directory %s belongs to uid %u: refused", dir,
                             (unsigned)sb.st_uid);
        if (sb.st_mode & 022)
            return dverr_set(err, -EPERM,
                             "cache directory %s is writable by others (mode %03o): refused", dir,
                             (unsigned)(sb.st_mode & 0777));
    } else if (errno != ENOENT) {
        return dverr_set(err, -errno, "cache directory %s: %s", dir, strerror(errno));
    }
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = 0;
    else
        *slash = 0;
    if (lstat(parent, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return dverr_set(err, -ELOOP, "cache directory %s: its parent is a symlink: refused",
                             dir);
        if ((sb.st_mode & 022) && !(sb.st_mode & S_ISVTX))
            return dverr_set(err, -EPERM,
                             "cache directory %s: its parent %s is writable by others (mode %03o)"
                             ": refused",
                             dir, parent, (unsigned)(sb.st_mode & 0777));
    }
    return 0;
}

int cache_open(const char *dir, const struct cache_opts *opts, struct cache **out,
               struct dverr *err)
{
    struct cache *c = NULL;
    char path[PATH_MAX];
    int rc;

    *out = NULL;
    c = calloc(1, sizeof *c);
    if (!c)
        return dverr_set(err, -ENOMEM, "out of memory");
    c->lock_fd = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    pthread_cond_init(&c->wd_cond, NULL);
    pthread_mutex_init(&c->db_mu, NULL);
    c->budget = opts && opts->budget ? opts->budget : (2ULL << 30);
    c->wait_ms = opts && opts->wait_ms ? opts->wait_ms : 30000;
    c->level = opts && opts->level ? opts->level : CACHE_LEVEL;
    c->n_buckets = 256;
    c->buckets = calloc(c->n_buckets, sizeof *c->buckets);
    c->dir = strdup(dir);
    /* One block for every slot, in transparent huge pages where the system allows them (only
     * touched pages count): a reply's 1 MiB is then pinned by the kernel as one huge page instead
     * of 256 small ones. */
    c->slab = aligned_alloc(2u << 20, (size_t)CACHE_SLOTS * CACHE_FRAME);
    if (c->slab) {
        madvise(c->slab, (size_t)CACHE_SLOTS * CACHE_FRAME, MADV_HUGEPAGE);
        for (int i = 0; i < CACHE_SLOTS; i++)
            c->slots[i].buf = c->slab + (size_t)i * CACHE_FRAME;
    }
    if (!c->buckets || !c->dir || !c->slab) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = cache_dir_safe(dir, err);
    if (rc)
        goto fail;
    rc = mkdir_p(dir, 0700);
    if (rc) {
        dverr_set(err, rc, "cache directory %s: %s", dir, strerror(-rc));
        goto fail;
    }
    rc = cache_dir_safe(dir, err); /* again: it may have been created (or swapped) meanwhile */
    if (rc)
        goto fail;
    {
        /* absolute: the mount daemon changes directory to / */
        char *abs = realpath(dir, NULL);
        if (!abs) {
            rc = dverr_set(err, -errno, "cache directory %s: %s", dir, strerror(errno));
            goto fail;
        }
        free(c->dir);
        c->dir = abs;
        dir = c->dir;
    }
    struct stat sb;
    if (stat(dir, &sb) == 0 && (sb.st_mode & 077) && chmod(dir, 0700) < 0) {
        rc = dverr_set(err, -errno, "cache directory %s: chmod: %s", dir, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof path, "%s/lock", dir);
    c->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (c->lock_fd < 0) {
        rc = dverr_set(err, -errno, "cache lock %s: %s", path, strerror(errno));
        goto fail;
    }
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        dverr_set(err, rc, "the cache %s is in use by another dvsnap process", dir);
        goto fail;
    }
    if (asprintf(&c->files_dir, "%s/files", dir) < 0) {
        c->files_dir = NULL;
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    rc = mkdir_p(c->files_dir, 0700);
    if (rc) {
        dverr_set(err, rc, "cache directory %s: %s", c->files_dir, strerror(-rc));
        goto fail;
    }
    rc = cache_index_open(c, err);
    if (rc)
        goto fail;
    rc = cache_index_load(c, err);
    if (rc)
        goto fail;
    /* bounded by the disk too: what we hold plus 95% of what is free */
    struct statvfs vfs;
    if (statvfs(c->files_dir, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        uint64_t limit = c->bytes + avail / 20 * 19;
        if (limit < c->budget) {
            log_warn("cache: budget lowered to %llu bytes by free disk space",
                     (unsigned long long)limit);
            c->budget = limit;
        }
    }
    struct entry *victims = cache_evict_locked(c);
    cache_delete_victims(c, victims);
    log_info("cache: %s, budget %llu bytes, %zu files, %llu bytes", dir,
             (unsigned long long)c->budget, c->n_entries, (unsigned long long)c->bytes);
    *out = c;
    return 0;
fail:
    cache_free(c);
    return rc;
}

void cache_free(struct cache *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, 1);
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0)
        pthread_cond_wait(&c->cond, &c->mu);
    c->wd_stop = true;
    pthread_cond_broadcast(&c->wd_cond);
    pthread_mutex_unlock(&c->mu);
    if (c->watchdog_started)
        pthread_join(c->watchdog, NULL); /* it fails every waiter left */
    if (c->buckets) {
        for (size_t i = 0; i < c->n_buckets; i++) {
            struct entry *e = c->buckets[i], *next;
            for (; e; e = next) {
                next = e->hnext;
                cache_entry_free(e);
            }
        }
        free(c->buckets);
    }
    free(c->slab);
    cache_index_close(c);
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    pthread_cond_destroy(&c->wd_cond);
    pthread_mutex_destroy(&c->db_mu);
    free(c->files_dir);
    free(c->dir);
    free(c);
}

void cache_stop_fills(struct cache *c)
{
    atomic_store(&c->stopping, 1);
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0)
        pthread_cond_wait(&c->cond, &c->mu);
    pthread_mutex_unlock(&c->mu);
    atomic_store(&c->stopping, 0);
}

int cache_wait_fills(struct cache *c, int timeout_ms)
{
    struct timespec dl = timespec_in_ms(CLOCK_REALTIME, timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    while (c->fills_running > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cond, &c->mu, &dl);
    rc = c->fills_running > 0 ? -ETIMEDOUT : 0;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

void cache_stats(struct cache *c, struct cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    out->budget = c->budget;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    out->files = c->n_entries;
    out->open_files = c->open_files;
    out->fills = c->fills;
    out->hits = c->hits;
    out->evictions = c->evictions;
    out->plain_copies = 0;
    out->plain_bytes = 0;
    for (struct entry *e = c->lru_head; e; e = e->lnext)
        if (e->plain_fd >= 0) {
            out->plain_copies++;
            out->plain_bytes += e->plain_bytes;
        }
    pthread_mutex_unlock(&c->mu);
    out->frames_decoded = atomic_load(&c->frames_decoded);
}

static bool path_within(const char *inner, const char *outer)
{
    size_t l = strlen(outer);
    if (strcmp(outer, "/") == 0)
        return true;
    return strncmp(inner, outer, l) == 0 && (inner[l] == '\0' || inner[l] == '/');
}

int cache_check_mountpoint(const char *cache_dir, const char *mountpoint, struct dverr *err)
{
    char a[PATH_MAX], b[PATH_MAX];
    if (!realpath(cache_dir, a))
        return dverr_set(err, -errno, "cache directory %s: %s", cache_dir, strerror(errno));
    if (!realpath(mountpoint, b))
        return dverr_set(err, -errno, "mountpoint %s: %s", mountpoint, strerror(errno));
    if (path_within(b, a))
        return dverr_set(err, -EINVAL, "the mountpoint %s is inside the cache directory %s", b, a);
    if (path_within(a, b))
        return dverr_set(err, -EINVAL, "the cache directory %s is inside the mountpoint %s", a, b);
    return 0;
}
