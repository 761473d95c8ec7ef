/* objstore_dir: the local-directory object store. An object "a/b/c" is the file ROOT/a/b/c.
 *
 * put writes ROOT/<dir>/.tmp-<pid>-<n>-<base>, fsyncs it, renames it over the name and fsyncs the
 * directory, so a reader sees the whole object or nothing and the object survives power loss once
 * put returns. put_if_absent publishes with link(2) instead of rename(2) (fails with EEXIST).
 * put_file hard-links the local file when it is on the same filesystem (else copies it).
 * Durability of names (POSIX: a directory change survives power loss only once that directory is
 * fsynced; tests/integration/rel_powerloss proves each rule on lossyfs):
 *   - a directory that put creates (objects/ab, points/<env>) is made durable by an fsync of its
 *     parent before it is used, under dirs_lock held for writing; every put passes through
 *     dirs_lock for reading before it returns, so a put that found the directory made by another
 *     thread does not return before that directory is durable;
 *   - del fsyncs the directory, so a deletion is durable when del returns (prune deletes a
 *     manifest before the objects only it used: a later fsync of an objects directory must not
 *     make an object's deletion durable while the manifest's is not);
 *   - ROOT itself is made durable where `dvsnap init` creates it (util's mkdir_p).
 * Private: files are created 0600 and directories 0700 whatever the umask (the repository holds
 * a company's data; only its owner reads it).
 * Listing skips dot files (temp files of writers in progress, or left by a crash).
 *   Left open: a directory whose creator died between the mkdir and the fsync of its parent is
 *   durable only once something fsyncs that parent; dirs_lock orders the threads of one process,
 *   not two processes (one writer per environment; two environments' captures in two processes
 *   could share an objects/ab made by the other).
 * Limits: names as objstore_name_ok allows. Threading: no shared mutable state but an atomic
 * counter and dirs_lock; every call opens its own descriptors. */
#include "backend/objstore/objstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dirstore {
    char *root;
};

static atomic_uint tmp_counter;
static pthread_rwlock_t dirs_lock = PTHREAD_RWLOCK_INITIALIZER;

/* mkdir -p (util: each directory created is made durable) done before any other put can return
 * having used one of those directories (see dirs_barrier). */
static int mkdir_durable(const char *path)
{
    pthread_rwlock_wrlock(&dirs_lock);
    int rc = mkdir_p(path, 0700); /* private: the repository holds a company's data */
    pthread_rwlock_unlock(&dirs_lock);
    return rc;
}

/* Wait until no mkdir_durable is between its mkdir and the fsync of the parent. */
static void dirs_barrier(void)
{
    pthread_rwlock_rdlock(&dirs_lock);
    pthread_rwlock_unlock(&dirs_lock);
}

static int full_path(struct dirstore *d, const char *name, char *out, size_t n, struct dverr *err)
{
    if (!objstore_name_ok(name))
        return dverr_set(err, -EINVAL, "invalid object name \"%.80s\"", name ? name : "(null)");
    if (snprintf(out, n, "%s/%s", d->root, name) >= (int)n)
        return dverr_set(err, -ENAMETOOLONG, "object path too long: %.80s", name);
    return 0;
}

/* Split ROOT/a/b/c into its directory and a temp name in that directory. */
static int tmp_path_for(const char *path, char *dir, size_t dn, char *tmp, size_t tn)
{
    const char *slash = strrchr(path, '/');
    size_t len = (size_t)(slash - path);
    if (len >= dn)
        return -ENAMETOOLONG;
    memcpy(dir, path, len);
    dir[len] = '\0';
    if (snprintf(tmp, tn, "%s/.tmp-%d-%u-%s", dir, (int)getpid(),
                 atomic_fetch_add(&tmp_counter, 1), slash + 1) >= (int)tn)
        return -ENAMETOOLONG;
    return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Write data into a new temp file next to path; on success *tmp holds its name. */
static int write_tmp(const char *path, const void *data, size_t len, char *dir, size_t dn,
                     char *tmp, size_t tn)
{
    int rc = tmp_path_for(path, dir, dn, tmp, tn);
    if (rc)
        return rc;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0 && errno == ENOENT) {
        if ((rc = mkdir_durable(dir)))
            return rc;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    }
    if (fd < 0)
        return -errno;
    rc = write_all(fd, data, len);
    if (!rc && fsync(fd))
        rc = -errno;
    if (close(fd) && !rc)
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

static int dir_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    if ((rc = write_tmp(path, data, len, dir, sizeof dir, tmp, sizeof tmp)))
        return dverr_set(err, rc, "writing %s: %s", name, strerror(-rc));
    if (rename(tmp, path)) {
        rc = -errno;
        unlink(tmp);
        return dverr_set(err, rc, "publishing %s: %s", name, strerror(-rc));
    }
    if ((rc = fsync_dir(dir)))
        return dverr_set(err, rc, "syncing the directory of %s: %s", name, strerror(-rc));
    dirs_barrier();
    return 0;
}

static int dir_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                             struct dverr *err)
{
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    if ((rc = write_tmp(path, data, len, dir, sizeof dir, tmp, sizeof tmp)))
        return dverr_set(err, rc, "writing %s: %s", name, strerror(-rc));
    rc = link(tmp, path) ? -errno : 0;
    unlink(tmp);
    if (rc == -EEXIST)
        return dverr_set(err, rc, "%s exists", name);
    if (rc)
        return dverr_set(err, rc, "publishing %s: %s", name, strerror(-rc));
    if ((rc = fsync_dir(dir)))
        return dverr_set(err, rc, "syncing the directory of %s: %s", name, strerror(-rc));
    dirs_barrier();
    return 0;
}

static int copy_fd(int in, int out)
{
    char *chunk = malloc(1 << 20);
    if (!chunk)
        return -ENOMEM;
    int rc = 0;
    for (;;) {
        ssize_t r = read(in, chunk, 1 << 20);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        if ((rc = write_all(out, chunk, (size_t)r)))
            break;
    }
    free(chunk);
    return rc;
}

static int dir_put_file(void *impl, const char *name, const char *local_path, struct dverr *err)
{
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    if ((rc = tmp_path_for(path, dir, sizeof dir, tmp, sizeof tmp)))
        return dverr_set(err, rc, "object path too long: %.80s", name);
    int in = open(local_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return dverr_set(err, -errno, "%s: %s", local_path, strerror(errno));
    if (fsync(in)) {
        rc = -errno;
        close(in);
        return dverr_set(err, rc, "syncing %s: %s", local_path, strerror(-rc));
    }
    rc = link(local_path, tmp) ? -errno : 0;
    if (rc == -ENOENT) {
        if ((rc = mkdir_durable(dir))) {
            close(in);
            return dverr_set(err, rc, "creating %s: %s", dir, strerror(-rc));
        }
        rc = link(local_path, tmp) ? -errno : 0;
    }
    if (rc) { /* another filesystem (EXDEV) or no hard links: copy */
        int out = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (out < 0) {
            rc = -errno;
            close(in);
            return dverr_set(err, rc, "writing %s: %s", name, strerror(-rc));
        }
        rc = copy_fd(in, out);
        if (!rc && fsync(out))
            rc = -errno;
        if (close(out) && !rc)
            rc = -errno;
        if (rc) {
            unlink(tmp);
            close(in);
            return dverr_set(err, rc, "writing %s: %s", name, strerror(-rc));
        }
    }
    close(in);
    if (rename(tmp, path)) {
        rc = -errno;
        unlink(tmp);
        return dverr_set(err, rc, "publishing %s: %s", name, strerror(-rc));
    }
    if ((rc = fsync_dir(dir)))
        return dverr_set(err, rc, "syncing the directory of %s: %s", name, strerror(-rc));
    dirs_barrier();
    return 0;
}

static int dir_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                   struct dverr *err)
{
    char path[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        return dverr_set(err, rc, "%s: %s", name, rc == -ENOENT ? "no such object" : strerror(-rc));
    }
    struct stat st;
    if (fstat(fd, &st)) {
        rc = -errno;
        goto out;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (off > size) {
        rc = dverr_set(err, -EIO, "%s: read at %llu beyond its end (%llu bytes)", name,
                       (unsigned long long)off, (unsigned long long)size);
        goto out;
    }
    uint64_t want = len == OBJSTORE_TO_END || len > size - off ? size - off : len;
    if (len != OBJSTORE_TO_END && want < len) {
        rc = dverr_set(err, -EIO, "%s: short object (%llu bytes, wanted %llu at %llu)", name,
                       (unsigned long long)size, (unsigned long long)len,
                       (unsigned long long)off);
        goto out;
    }
    if (want > SIZE_MAX / 2 || (rc = buf_reserve(out, (size_t)want))) {
        rc = dverr_set(err, -ENOMEM, "%s: cannot hold %llu bytes", name, (unsigned long long)want);
        goto out;
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, out->data + out->len + got, (size_t)want - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = dverr_set(err, -EIO, "%s: %s", name, strerror(errno));
            goto out;
        }
        if (r == 0) {
            rc = dverr_set(err, -EIO, "%s: object shrank while reading", name);
            goto out;
        }
        got += (size_t)r;
    }
    out->len += got;
    out->data[out->len] = '\0';
out:
    close(fd);
    return rc;
}

static int dir_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    char path[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    struct stat st;
    if (stat(path, &st)) {
        rc = -errno;
        return dverr_set(err, rc, "%s: %s", name, rc == -ENOENT ? "no such object" : strerror(-rc));
    }
    if (!S_ISREG(st.st_mode))
        return dverr_set(err, -ENOENT, "%s: not an object", name);
    *size = (uint64_t)st.st_size;
    return 0;
}

/* Walk ROOT/rel (a directory) recursively, reporting files whose name starts with prefix. */
static int walk(struct dirstore *d, struct buf *rel, const char *prefix,
                int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx, struct dverr *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/%s", d->root, rel->data ? rel->data : "") >= (int)sizeof path)
        return 0;
    DIR *dir = opendir(path);
    if (!dir) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return dverr_set(err, -errno, "listing %s: %s", path, strerror(errno));
    }
    int dfd = dirfd(dir);
    int rc = 0;
    size_t base = rel->len;
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (e->d_name[0] == '.')
            continue;
        rel->len = base;
        if (base && (rc = buf_addch(rel, '/')))
            break;
        if ((rc = buf_addstr(rel, e->d_name)))
            break;
        size_t cmp = rel->len < strlen(prefix) ? rel->len : strlen(prefix);
        if (strncmp(rel->data, prefix, cmp) != 0)
            continue;
        struct stat st;
        if (fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW))
            continue;
        if (S_ISDIR(st.st_mode)) {
            if ((rc = walk(d, rel, prefix, fn, ctx, err)))
                break;
        } else if (S_ISREG(st.st_mode) && rel->len >= strlen(prefix)) {
            if ((rc = fn(ctx, rel->data, (uint64_t)st.st_size)))
                break;
        }
    }
    rel->len = base;
    if (rel->data)
        rel->data[base] = '\0';
    closedir(dir);
    return rc;
}

static int dir_list(void *impl, const char *prefix,
                    int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                    struct dverr *err)
{
    struct buf rel = BUF_INIT;
    /* start at the deepest directory the prefix names */
    const char *slash = strrchr(prefix, '/');
    if (slash) {
        buf_add(&rel, prefix, (size_t)(slash - prefix));
        if (rel.len && !objstore_name_ok(rel.data)) {
            buf_release(&rel);
            return dverr_set(err, -EINVAL, "invalid listing prefix \"%.80s\"", prefix);
        }
    }
    int rc = walk(impl, &rel, prefix, fn, ctx, err);
    buf_release(&rel);
    return rc;
}

static int dir_del(void *impl, const char *name, struct dverr *err)
{
    char path[PATH_MAX];
    int rc = full_path(impl, name, path, sizeof path, err);
    if (rc)
        return rc;
    if (unlink(path)) {
        rc = -errno;
        return dverr_set(err, rc, "deleting %s: %s", name, strerror(-rc));
    }
    char dir[PATH_MAX];
    parent_of(path, dir, sizeof dir);
    if ((rc = fsync_dir(dir)))
        return dverr_set(err, rc, "syncing the directory of %s: %s", name, strerror(-rc));
    return 0;
}

static void dir_free(void *impl)
{
    struct dirstore *d = impl;
    if (d)
        free(d->root);
    free(d);
}

static const struct objstore_ops dir_ops = {
    .put = dir_put,
    .put_file = dir_put_file,
    .put_if_absent = dir_put_if_absent,
    .get = dir_get,
    .stat = dir_stat,
    .list = dir_list,
    .del = dir_del,
    .free = dir_free,
};

int objstore_dir_open(const char *path, struct objstore **out, struct dverr *err)
{
    *out = NULL;
    if (!path || !*path)
        return dverr_set(err, -EINVAL, "empty repository path");
    char real[PATH_MAX];
    if (!realpath(path, real))
        return dverr_set(err, -errno, "%s: %s", path, strerror(errno));
    struct objstore *s = calloc(1, sizeof *s);
    struct dirstore *d = calloc(1, sizeof *d);
    if (!s || !d || !(d->root = strdup(real)) || !(s->location = strdup(path)) ||
        !(s->local_dir = strdup(real))) {
        if (d)
            free(d->root);
        free(d);
        if (s) {
            free(s->location);
            free(s->local_dir);
        }
        free(s);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    s->ops = &dir_ops;
    s->sizes = objstore_sizes_new(); /* what manifests record (a stat here is cheap anyway) */
    s->impl = d;
    *out = s;
    return 0;
}
