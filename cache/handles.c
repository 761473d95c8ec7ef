/* cache handles: cache_file_open and cache_file_close. An open finds the entry of its key (a hit:
 * the file is opened, and its SHA-256 checked the first time after a restart; a damaged or missing
 * file is forgotten and filled again) or creates it and starts a fill from the caller's source.
 * The source is consumed in every case.
 *
 * Limits: the same key must always name content of the same size (-EIO otherwise); the temp file
 * of a fill is created with O_EXCL | O_NOFOLLOW (never through a planted symlink).
 * Threading: any thread. Takes c->mu for the table and the entry; a hit opens and checks its
 * file without it, and deletes a damaged one's row (c->db_mu) after releasing it; a miss creates
 * the temp file and starts the fill thread with c->mu held. The last close of an entry closes its
 * file and evicts what no longer fits. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "cache/cache_int.h"

/* Check a loaded file's SHA-256 once per process. */
static int verify_file(struct cache *c, struct entry *e, int fd)
{
    char buf[1 << 16];
    struct sha256_stream *s = sha256_stream_new();
    if (!s)
        return -ENOMEM;
    off_t off = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, off);
        if (n < 0) {
            char d[65];
            sha256_stream_finish(s, d);
            return -errno;
        }
        if (n == 0)
            break;
        sha256_stream_update(s, buf, (size_t)n);
        off += n;
    }
    char got[65];
    sha256_stream_finish(s, got);
    return strcmp(got, e->sha) == 0 && (uint64_t)off == e->disk_bytes ? 0 : -EIO;
}

int cache_file_open(struct cache *c, const char *key, uint64_t size,
                    const struct cache_source *src, struct cache_file **out, struct dverr *err)
{
    char name[65], path[PATH_MAX];
    struct cache_source s = *src;
    struct cache_file *f = NULL;
    struct entry *e = NULL;
    int rc = 0;

    *out = NULL;
    sha256_hex(key, strlen(key), name);
    f = calloc(1, sizeof *f);
    if (!f) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    f->c = c;
again:
    pthread_mutex_lock(&c->mu);
    e = cache_table_find(c, name);
    if (e && e->size != size) {
        /* the same key must always name the same content: a changed size is a caller bug or a
         * damaged index; never serve it */
        pthread_mutex_unlock(&c->mu);
        rc = dverr_set(err, -EIO, "cache: %s: size %llu, expected %llu", key,
                       (unsigned long long)e->size, (unsigned long long)size);
        goto out;
    }
    if (e) {
        e->refs++;
        cache_lru_touch(c, e);
        c->hits++;
        bool need_fd = e->fd < 0;
        bool need_verify = e->state == ENTRY_READY && !e->verified;
        pthread_mutex_unlock(&c->mu);
        if (need_fd || need_verify) {
            cache_entry_path(c, e, false, path, sizeof path);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd >= 0) /* most reads are sequential: a larger readahead of the frames */
                posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
            int vrc = fd < 0 ? -errno : (need_verify ? verify_file(c, e, fd) : 0);
            pthread_mutex_lock(&c->mu);
            if (vrc) {
                /* damaged or gone: forget it and fill again */
                log_warn("cache: %s failed its check (%s); filling it again", key,
                         strerror(-vrc));
                if (fd >= 0)
                    close(fd);
                cache_entry_drop_locked(c, e);
                struct entry *dead = cache_unref_locked(c, e);
                pthread_mutex_unlock(&c->mu);
                cache_index_delete(c, name);
                unlink(path);
                cache_entry_free(dead);
                goto again;
            }
            e->verified = true;
            if (e->fd < 0)
                e->fd = fd;
            else if (fd >= 0)
                close(fd);
            pthread_mutex_unlock(&c->mu);
        }
        if (s.free_arg)
            s.free_arg(s.arg);
        pthread_mutex_lock(&c->mu);
        c->open_files++;
        pthread_mutex_unlock(&c->mu);
        f->e = e;
        *out = f;
        return 0;
    }
    /* not cached: start a fill */
    e = cache_entry_new(c, key, name);
    struct fill_job *job = calloc(1, sizeof *job);
    if (!e || !job) {
        pthread_mutex_unlock(&c->mu);
        cache_entry_free(e);
        free(job);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    e->size = size;
    e->state = ENTRY_FILLING;
    cache_entry_path(c, e, true, path, sizeof path);
    /* never through a planted symlink or into a pre-created file (its mode would stay) */
    unlink(path);
    e->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (e->fd < 0) {
        rc = dverr_set(err, -errno, "cache file %s: %s", path, strerror(errno));
        pthread_mutex_unlock(&c->mu);
        cache_entry_free(e);
        free(job);
        goto out;
    }
    e->refs = 2; /* this handle and the fill */
    cache_table_add(c, e);
    cache_lru_touch(c, e);
    c->fills++;
    c->fills_running++;
    job->c = c;
    job->e = e;
    job->src = s;
    /* thread_start: SIGINT must reach the thread that unmounts */
    int prc = thread_start(NULL, cache_fill_main, job);
    if (prc) {
        e->refs = 0;
        cache_table_remove(c, e);
        cache_lru_unlink(c, e);
        c->fills_running--;
        pthread_mutex_unlock(&c->mu);
        unlink(path);
        cache_entry_free(e);
        free(job);
        rc = dverr_set(err, -prc, "cannot start a fill thread");
        goto out;
    }
    c->open_files++;
    pthread_mutex_unlock(&c->mu);
    f->e = e;
    f->started_fill = true;
    *out = f;
    return 0;
out:
    if (s.free_arg)
        s.free_arg(s.arg);
    free(f);
    return rc;
}

uint64_t cache_file_size(const struct cache_file *f)
{
    return f->e->size;
}

void cache_file_close(struct cache_file *f)
{
    if (!f)
        return;
    struct cache *c = f->c;
    pthread_mutex_lock(&c->mu);
    c->open_files--;
    struct entry *dead = cache_unref_locked(c, f->e);
    struct entry *victims = cache_evict_locked(c);
    pthread_mutex_unlock(&c->mu);
    cache_entry_free(dead);
    cache_delete_victims(c, victims);
    free(f);
}
