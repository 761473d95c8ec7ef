/* test_cache: the table cache on its own: fills followed by readers, random reads across frames,
 * size mismatches and source errors as EIO, the bounded wait, the budget with LRU eviction that
 * spares open files, persistence and the hash check across reopen, the one-process lock and the
 * mountpoint check, the frame decoded ahead of a sequential reader, and plain copies (for FUSE
 * passthrough) within the budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/util.h"
#include "cache/cache.h"

/* A deterministic pseudo-random source of `size` bytes (text-like so it compresses a little). */
struct gen {
    uint64_t size, pos;
    uint64_t seed;
    int fail_at_mib;   /* -1: never; else -EIO after that many MiB */
    int extra;         /* produce this many bytes beyond size */
    int block_ms;      /* sleep this long before every read (for the bounded wait) */
    int *opened;       /* counter of opens */
};

static unsigned char gen_byte(uint64_t seed, uint64_t i)
{
    uint64_t x = (i / 7) * 0x9E3779B97F4A7C15ULL ^ seed;
    x ^= x >> 29;
    return (unsigned char)("abcdefghij{}\":,\n0123456789"[(x + i % 7) % 26]);
}

static int gen_open(void *arg, void **stream, struct dverr *err)
{
    struct gen *g = arg;
    if (g->opened)
        (*g->opened)++;
    g->pos = 0;
    *stream = g;
    return 0;
}

static ssize_t gen_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct gen *g = stream;
    if (g->block_ms)
        usleep((useconds_t)g->block_ms * 1000);
    if (g->fail_at_mib >= 0 && g->pos >= (uint64_t)g->fail_at_mib << 20)
        return dverr_set(err, -EIO, "segment damaged");
    uint64_t end = g->size + (uint64_t)g->extra;
    if (g->pos >= end)
        return 0;
    if (n > 300000)
        n = 300000; /* odd chunk sizes on purpose */
    if (n > end - g->pos)
        n = (size_t)(end - g->pos);
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)buf)[i] = gen_byte(g->seed, g->pos + i);
    g->pos += n;
    return (ssize_t)n;
}

static void gen_close(void *stream) {}

static struct cache_source gen_source(struct gen *g)
{
    struct cache_source s = {gen_open, gen_read, gen_close, NULL, g};
    return s;
}

static char dir[256];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/dvsnap-test-cache.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_bytes(const unsigned char *buf, size_t n, uint64_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != gen_byte(seed, off + i))
            fail_msg("byte %llu differs", (unsigned long long)(off + i));
}

static void test_fill_and_read(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    struct cache_opts o = {.budget = 64 << 20};
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    struct stat sb;
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    uint64_t size = 5 * CACHE_FRAME + 12345;
    struct gen g = {.size = size, .seed = 7, .fail_at_mib = -1};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    assert_int_equal(cache_file_open(c, "env/p1/tables/a.json", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_size(f), size);
    /* sequential read in odd pieces while the fill runs */
    unsigned char *buf = malloc(size + 10);
    uint64_t off = 0;
    while (off < size) {
        ssize_t n = cache_file_pread(f, buf + off, 131071, off, &err);
        assert_true(n > 0);
        off += (uint64_t)n;
    }
    assert_int_equal(cache_file_pread(f, buf, 10, size, &err), 0);
    check_bytes(buf, size, 7, 0);
    /* random reads across frame boundaries */
    for (int i = 0; i < 50; i++) {
        uint64_t o2 = ((uint64_t)i * 2654435761u) % size;
        size_t len = (size_t)((i * 40503u) % (3 * CACHE_FRAME));
        ssize_t n = cache_file_pread(f, buf, len, o2, &err);
        size_t want = len < size - o2 ? len : (size_t)(size - o2);
        assert_int_equal(n, want);
        check_bytes(buf, (size_t)n, 7, o2);
    }
    cache_file_close(f);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    struct cache_stats st;
    cache_stats(c, &st);
    assert_int_equal(st.files, 1);
    assert_int_equal(st.fills, 1);
    assert_true(st.bytes > 0 && st.bytes < size);
    /* files are 0600 */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test -z \"$(find %s/files -type f ! -perm 600)\"", dir);
    assert_int_equal(system(cmd), 0);
    cache_free(c);

    /* reopen: served from disk without a new fill; the source is not opened */
    int opened = 0;
    struct gen g2 = {.size = size, .seed = 7, .fail_at_mib = -1, .opened = &opened};
    s = gen_source(&g2);
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    assert_int_equal(cache_file_open(c, "env/p1/tables/a.json", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_pread(f, buf, size, 0, &err), (ssize_t)size);
    check_bytes(buf, size, 7, 0);
    cache_file_close(f);
    assert_int_equal(opened, 0);
    cache_free(c);
    free(buf);
}

static void test_damaged_file_refilled(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    struct cache_opts o = {.budget = 64 << 20};
    uint64_t size = 2 * CACHE_FRAME + 7;
    struct gen g = {.size = size, .seed = 9, .fail_at_mib = -1};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    unsigned char *buf = malloc(size);
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    assert_int_equal(cache_file_open(c, "k", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_pread(f, buf, size, 0, &err), (ssize_t)size);
    cache_file_close(f);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    cache_free(c);
    /* flip a byte in the cache file */
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "f=$(ls %s/files/*.zst) && printf 'X' | dd of=$f bs=1 seek=100 conv=notrunc "
             "status=none",
             dir);
    assert_int_equal(system(cmd), 0);
    int opened = 0;
    struct gen g2 = {.size = size, .seed = 9, .fail_at_mib = -1, .opened = &opened};
    s = gen_source(&g2);
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    assert_int_equal(cache_file_open(c, "k", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_pread(f, buf, size, 0, &err), (ssize_t)size);
    check_bytes(buf, size, 9, 0);
    assert_int_equal(opened, 1);
    cache_file_close(f);
    cache_free(c);
    free(buf);
}

static void test_errors_are_eio(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    struct cache_opts o = {.budget = 64 << 20, .wait_ms = 300};
    unsigned char *buf = malloc(4 * CACHE_FRAME);
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);

    /* source fails after 2 MiB: the first 2 MiB read, then EIO */
    uint64_t size = 4 * CACHE_FRAME;
    struct gen g = {.size = size, .seed = 1, .fail_at_mib = 2};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    assert_int_equal(cache_file_open(c, "bad", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_pread(f, buf, CACHE_FRAME, 0, &err), CACHE_FRAME);
    dverr_clear(&err);
    assert_int_equal(cache_file_pread(f, buf, CACHE_FRAME, 3 * CACHE_FRAME, &err), -EIO);
    assert_non_null(strstr(dverr_msg(&err), "segment damaged"));
    cache_file_close(f);

    /* more bytes than announced: EIO, never the wrong bytes */
    struct gen g2 = {.size = CACHE_FRAME / 2, .seed = 1, .fail_at_mib = -1, .extra = 10};
    s = gen_source(&g2);
    assert_int_equal(cache_file_open(c, "long", CACHE_FRAME / 2, &s, &f, &err), 0);
    dverr_clear(&err);
    assert_int_equal(cache_file_pread(f, buf, 100, 0, &err), -EIO);
    cache_file_close(f);

    /* fewer bytes than announced */
    struct gen g3 = {.size = 3 * CACHE_FRAME / 2, .seed = 1, .fail_at_mib = -1};
    s = gen_source(&g3);
    assert_int_equal(cache_file_open(c, "short", 3 * CACHE_FRAME / 2 + 1, &s, &f, &err), 0);
    dverr_clear(&err);
    ssize_t n = cache_file_pread(f, buf, 3 * CACHE_FRAME / 2 + 1, 0, &err);
    assert_true(n == -EIO || n == CACHE_FRAME); /* the first full frame may be served */
    assert_int_equal(cache_file_pread(f, buf, 10, CACHE_FRAME + 10, &err), -EIO);
    cache_file_close(f);

    /* a source that stalls: EIO after the bounded wait (300 ms), not a hang */
    struct gen g4 = {.size = CACHE_FRAME, .seed = 1, .fail_at_mib = -1, .block_ms = 1500};
    s = gen_source(&g4);
    assert_int_equal(cache_file_open(c, "slow", CACHE_FRAME, &s, &f, &err), 0);
    int64_t t0 = now_ms();
    dverr_clear(&err);
    assert_int_equal(cache_file_pread(f, buf, 10, 0, &err), -EIO);
    int64_t dt = now_ms() - t0;
    assert_true(dt >= 250 && dt < 1400);
    cache_file_close(f);

    struct cache_stats st;
    cache_stats(c, &st);
    assert_int_equal(st.files, 1); /* failed fills are not kept; "slow" may still be filling */
    cache_free(c);
    free(buf);
}

static void test_budget_lru(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    /* each file compresses to a bit under 1 MiB per 2 MiB; budget fits about 3 */
    uint64_t size = 2 * CACHE_FRAME;
    struct cache_opts o = {.budget = 0};
    struct cache_file *f, *pinned = NULL;
    unsigned char *buf = malloc(size);
    /* measure one file's cache size */
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    struct gen g0 = {.size = size, .seed = 100, .fail_at_mib = -1};
    struct cache_source s = gen_source(&g0);
    assert_int_equal(cache_file_open(c, "probe", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_pread(f, buf, size, 0, &err), (ssize_t)size);
    cache_file_close(f);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    struct cache_stats st;
    cache_stats(c, &st);
    uint64_t one = st.bytes;
    cache_free(c);
    teardown(state);
    setup(state);

    o.budget = one * 3 + one / 2;
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    struct gen gs[8];
    for (int i = 0; i < 8; i++) {
        char key[16];
        snprintf(key, sizeof key, "t%d", i);
        gs[i] = (struct gen){.size = size, .seed = (uint64_t)i, .fail_at_mib = -1};
        s = gen_source(&gs[i]);
        assert_int_equal(cache_file_open(c, key, size, &s, &f, &err), 0);
        assert_int_equal(cache_file_pread(f, buf, size, 0, &err), (ssize_t)size);
        check_bytes(buf, size, (uint64_t)i, 0);
        assert_int_equal(cache_wait_fills(c, 5000), 0);
        if (i == 0)
            pinned = f; /* kept open: must survive eviction */
        else
            cache_file_close(f);
        cache_stats(c, &st);
        assert_true(st.bytes <= o.budget);
    }
    cache_stats(c, &st);
    assert_true(st.max_bytes <= o.budget);
    assert_true(st.evictions >= 4);
    /* the pinned file still reads correctly */
    assert_int_equal(cache_file_pread(pinned, buf, size, 0, &err), (ssize_t)size);
    check_bytes(buf, size, 0, 0);
    cache_file_close(pinned);
    /* the most recent file is still cached: no new fill */
    uint64_t fills = st.fills;
    s = gen_source(&gs[7]);
    assert_int_equal(cache_file_open(c, "t7", size, &s, &f, &err), 0);
    cache_file_close(f);
    cache_stats(c, &st);
    assert_int_equal(st.fills, fills);
    /* files on disk add up to at most the budget */
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(cat %s/files/*.zst | wc -c) -le %llu", dir,
             (unsigned long long)o.budget);
    assert_int_equal(system(cmd), 0);
    cache_free(c);
    free(buf);
}

/* Wait (bounded) until the plain copy of f is ready; its fd, or the last error. */
static int plain_wait(struct cache_file *f)
{
    int fd = -EAGAIN;
    for (int i = 0; i < 500 && fd == -EAGAIN; i++) {
        fd = cache_file_plain_fd(f);
        if (fd == -EAGAIN)
            usleep(10000);
    }
    return fd;
}

static void test_plain_copies(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    uint64_t size = 3 * CACHE_FRAME + 777;
    struct cache_opts o = {.budget = 64 << 20};
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    struct gen g = {.size = size, .seed = 11, .fail_at_mib = -1, .block_ms = 20};
    struct cache_source s = gen_source(&g);
    struct cache_file *f, *f2;
    struct cache_stats st;
    /* the open that starts the fill is a first read: it asks for no copy */
    assert_int_equal(cache_file_open(c, "once", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_plain_fd(f), -EAGAIN);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    cache_stats(c, &st);
    assert_int_equal(st.plain_copies, 0);
    cache_file_close(f);
    /* a second open while the file fills (a read again) gets the copy made once the fill is
     * done (cache_wait_fills waits for that too) */
    s = gen_source(&g);
    assert_int_equal(cache_file_open(c, "big", size, &s, &f, &err), 0);
    s = gen_source(&g);
    assert_int_equal(cache_file_open(c, "big", size, &s, &f2, &err), 0);
    assert_int_equal(cache_file_plain_fd(f2), -EAGAIN);
    cache_file_close(f2);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    int fd = cache_file_plain_fd(f);
    assert_true(fd >= 0);
    char path[400];
    snprintf(path, sizeof path, "%s/files", dir);
    uint64_t zst_bytes = 0;
    DIR *d = opendir(path);
    assert_non_null(d);
    for (struct dirent *de; (de = readdir(d));) {
        struct stat zs;
        char p2[700];
        snprintf(p2, sizeof p2, "%s/%s", path, de->d_name);
        if (strstr(de->d_name, ".zst") && stat(p2, &zs) == 0)
            zst_bytes += (uint64_t)zs.st_size;
    }
    closedir(d);
    assert_true(zst_bytes > 0);
    assert_int_equal(cache_file_plain_fd(f), fd); /* the same copy, not a second one */
    /* the plain bytes, in an unlinked 0600 file inside the cache directory */
    struct stat sb;
    assert_int_equal(fstat(fd, &sb), 0);
    assert_int_equal(sb.st_size, size);
    assert_int_equal(sb.st_nlink, 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    unsigned char *buf = malloc(size);
    assert_int_equal(pread(fd, buf, size, 0), (ssize_t)size);
    check_bytes(buf, size, 11, 0);
    cache_stats(c, &st);
    assert_int_equal(st.plain_copies, 1);
    assert_int_equal(st.plain_bytes, size);
    assert_int_equal(st.bytes, zst_bytes + size); /* counted in the budget */
    cache_file_close(f);

    /* a small file gets none */
    struct gen gsmall = {.size = 1000, .seed = 12, .fail_at_mib = -1};
    s = gen_source(&gsmall);
    assert_int_equal(cache_file_open(c, "small", 1000, &s, &f, &err), 0);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    assert_int_equal(cache_file_plain_fd(f), -EINVAL);
    cache_file_close(f);
    cache_free(c);

    /* a restart starts without plain copies (they were unlinked files) */
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    cache_stats(c, &st);
    assert_int_equal(st.plain_copies, 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test -z \"$(find %s/files -type f ! -name '*.zst')\"", dir);
    assert_int_equal(system(cmd), 0);
    cache_free(c);
    teardown(state);
    setup(state);

    /* a budget that holds both files' frames and one plain copy, not two */
    o.budget = 2 * size + zst_bytes / 2; /* zst_bytes: two files; >= 2 * size lets a copy in */
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    struct gen g2 = {.size = size, .seed = 21, .fail_at_mib = -1};
    s = gen_source(&g2);
    assert_int_equal(cache_file_open(c, "a", size, &s, &f, &err), 0);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    assert_true(plain_wait(f) >= 0);
    cache_file_close(f);
    cache_stats(c, &st);
    assert_int_equal(st.plain_copies, 1);
    /* a second file's copy does not fit beside the first: the first (closed) copy goes, the
     * first file's frames stay */
    struct gen g3 = {.size = size, .seed = 22, .fail_at_mib = -1};
    s = gen_source(&g3);
    struct cache_file *f3;
    assert_int_equal(cache_file_open(c, "b", size, &s, &f3, &err), 0);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    int fd3 = plain_wait(f3);
    assert_true(fd3 >= 0);
    assert_int_equal(pread(fd3, buf, size, 0), (ssize_t)size);
    check_bytes(buf, size, 22, 0);
    cache_stats(c, &st);
    assert_int_equal(st.plain_copies, 1);
    assert_int_equal(st.files, 2);
    assert_true(st.max_bytes <= o.budget);
    /* an open copy is never dropped: the first file cannot get one back while b's is open */
    s = gen_source(&g2);
    assert_int_equal(cache_file_open(c, "a", size, &s, &f, &err), 0);
    assert_int_equal(cache_file_plain_fd(f), -ENOSPC);
    assert_int_equal(pread(fd3, buf, size, 0), (ssize_t)size);
    check_bytes(buf, size, 22, 0);
    cache_file_close(f);
    cache_file_close(f3);
    cache_stats(c, &st);
    assert_true(st.max_bytes <= o.budget);
    cache_free(c);

    /* more than half the budget: refused outright */
    o.budget = size + size / 2;
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    s = gen_source(&g2);
    assert_int_equal(cache_file_open(c, "a", size, &s, &f, &err), 0);
    assert_int_equal(cache_wait_fills(c, 5000), 0);
    assert_int_equal(cache_file_plain_fd(f), -ENOSPC);
    cache_file_close(f);
    cache_free(c);
    free(buf);
}

static void test_lock_and_mountpoint(void **state)
{
    struct cache *c, *c2;
    struct dverr err = {0};
    assert_int_equal(cache_open(dir, NULL, &c, &err), 0);
    assert_int_equal(cache_open(dir, NULL, &c2, &err), -EBUSY);
    cache_free(c);
    assert_int_equal(cache_open(dir, NULL, &c2, &err), 0);
    cache_free(c2);

    char inner[300];
    snprintf(inner, sizeof inner, "%s/mnt", dir);
    assert_int_equal(mkdir(inner, 0755), 0);
    dverr_clear(&err);
    assert_int_equal(cache_check_mountpoint(dir, inner, &err), -EINVAL);
    assert_int_equal(cache_check_mountpoint(inner, dir, &err), -EINVAL);
    assert_int_equal(cache_check_mountpoint(inner, "/tmp/..", &err), -EINVAL);
    char other[300];
    snprintf(other, sizeof other, "%s-other", dir);
    assert_int_equal(mkdir(other, 0755), 0);
    dverr_clear(&err);
    assert_int_equal(cache_check_mountpoint(dir, other, &err), 0); /* prefix but not inside */
    rmdir(other);
}

struct par_arg {
    struct cache *c;
    int i;
    int ok;
};

static void *par_reader(void *p)
{
    struct par_arg *a = p;
    struct dverr err = {0};
    uint64_t size = 3 * CACHE_FRAME + (uint64_t)a->i * 1000;
    struct gen g = {.size = size, .seed = (uint64_t)(a->i % 4), .fail_at_mib = -1};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    char key[16];
    snprintf(key, sizeof key, "par%d", a->i % 4);
    size = 3 * CACHE_FRAME + (uint64_t)(a->i % 4) * 1000;
    g.size = size;
    unsigned char *buf = malloc(size);
    if (cache_file_open(a->c, key, size, &s, &f, &err) == 0) {
        a->ok = cache_file_pread(f, buf, size, 0, &err) == (ssize_t)size;
        for (uint64_t k = 0; a->ok && k < size; k++)
            a->ok = buf[k] == gen_byte((uint64_t)(a->i % 4), k);
        cache_file_close(f);
    }
    free(buf);
    return NULL;
}

static void test_parallel_readers(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    assert_int_equal(cache_open(dir, NULL, &c, &err), 0);
    pthread_t th[16];
    struct par_arg a[16];
    for (int i = 0; i < 16; i++) {
        a[i] = (struct par_arg){c, i, 0};
        pthread_create(&th[i], NULL, par_reader, &a[i]);
    }
    for (int i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        assert_true(a[i].ok);
    }
    struct cache_stats st;
    cache_stats(c, &st);
    assert_int_equal(st.fills, 4); /* four keys, each filled once */
    cache_free(c);
}

/* Asynchronous waiters: answered when the bytes are published, withdrawn by cancel, failed by a
 * broken source, and failed by the no-progress bound (no thread of the caller waits). */
struct aw {
    struct cache_waiter w;
    pthread_mutex_t mu;
    int calls, rc;
    char msg[300];
};

static void aw_ready(struct cache_waiter *w, int rc, const char *msg)
{
    struct aw *a = (struct aw *)w;
    pthread_mutex_lock(&a->mu);
    a->calls++;
    a->rc = rc;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
    pthread_mutex_unlock(&a->mu);
}

static int aw_calls(struct aw *a, int timeout_ms)
{
    for (int i = 0; i < timeout_ms / 10; i++) {
        pthread_mutex_lock(&a->mu);
        int n = a->calls;
        pthread_mutex_unlock(&a->mu);
        if (n)
            return n;
        usleep(10000);
    }
    return 0;
}

struct span {
    unsigned char *p;
    size_t len;
};

static int span_take(void *ctx, const void *p, size_t len)
{
    struct span *sp = ctx;
    free(sp->p);
    sp->p = malloc(len + 1);
    if (len)
        memcpy(sp->p, p, len);
    sp->len = len;
    return 0;
}

static void test_async_waiters(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    struct cache_opts o = {.budget = 64 << 20, .wait_ms = 400};
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    uint64_t size = 4 * CACHE_FRAME + 99;

    /* answered once the last frame is published; the bytes are then readable at once */
    struct gen g = {.size = size, .seed = 3, .fail_at_mib = -1, .block_ms = 15};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    assert_int_equal(cache_file_open(c, "async/a", size, &s, &f, &err), 0);
    struct aw a = {.w.ready = aw_ready, .mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(cache_file_wait_async(f, size - 1000, 1000, &a.w), -EINPROGRESS);
    assert_int_equal(aw_calls(&a, 10000), 1);
    assert_int_equal(a.rc, 0);
    unsigned char *buf = malloc(1000);
    assert_int_equal(cache_file_pread(f, buf, 1000, size - 1000, &err), 1000);
    check_bytes(buf, 1000, 3, size - 1000);
    assert_int_equal(cache_file_wait_async(f, 0, 1000, &a.w), 0); /* there already */
    /* in place: within a frame the bytes come without a copy; across frames -ERANGE */
    struct span sp = {0};
    assert_int_equal(cache_file_read_in_place(f, 5000, CACHE_FRAME + 7, span_take, &sp, &err), 0);
    assert_int_equal(sp.len, 5000);
    check_bytes(sp.p, 5000, 3, CACHE_FRAME + 7);
    assert_int_equal(cache_file_read_in_place(f, 100, CACHE_FRAME - 50, span_take, &sp, &err),
                     -ERANGE);
    sp.len = 1;
    assert_int_equal(cache_file_read_in_place(f, 100, size, span_take, &sp, &err), 0);
    assert_int_equal(sp.len, 0); /* at the end */
    free(sp.p);
    assert_int_equal(cache_wait_fills(c, 10000), 0);
    cache_file_close(f);

    /* withdrawn before the bytes come: never called */
    struct gen g2 = {.size = size, .seed = 4, .fail_at_mib = -1, .block_ms = 15};
    s = gen_source(&g2);
    assert_int_equal(cache_file_open(c, "async/b", size, &s, &f, &err), 0);
    struct aw b = {.w.ready = aw_ready, .mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(cache_file_wait_async(f, size - 1, 1, &b.w), -EINPROGRESS);
    assert_true(cache_waiter_cancel(f, &b.w));
    assert_false(cache_waiter_cancel(f, &b.w));
    assert_int_equal(cache_wait_fills(c, 10000), 0);
    assert_int_equal(aw_calls(&b, 200), 0);
    cache_file_close(f);

    /* a source failing after 1 MiB: a waiter for frame 3 gets -EIO with the reason */
    struct gen g3 = {.size = size, .seed = 5, .fail_at_mib = 1};
    s = gen_source(&g3);
    assert_int_equal(cache_file_open(c, "async/c", size, &s, &f, &err), 0);
    struct aw d = {.w.ready = aw_ready, .mu = PTHREAD_MUTEX_INITIALIZER};
    int rc = cache_file_wait_async(f, 3 * CACHE_FRAME, 10, &d.w);
    if (rc == -EINPROGRESS) {
        assert_int_equal(aw_calls(&d, 10000), 1);
        assert_int_equal(d.rc, -EIO);
        assert_non_null(strstr(d.msg, "damaged"));
    }
    assert_true(cache_file_pread(f, buf, 10, 3 * CACHE_FRAME, &err) < 0);
    assert_int_equal(cache_wait_fills(c, 10000), 0);
    cache_file_close(f);

    /* a stalled source: the bound (400 ms without progress) fails the waiter */
    struct gen g4 = {.size = size, .seed = 6, .fail_at_mib = -1, .block_ms = 3000};
    s = gen_source(&g4);
    assert_int_equal(cache_file_open(c, "async/d", size, &s, &f, &err), 0);
    struct aw e = {.w.ready = aw_ready, .mu = PTHREAD_MUTEX_INITIALIZER};
    assert_int_equal(cache_file_wait_async(f, 0, 10, &e.w), -EINPROGRESS);
    assert_int_equal(aw_calls(&e, 2500), 1);
    assert_int_equal(e.rc, -EIO);
    assert_non_null(strstr(e.msg, "no progress"));
    cache_file_close(f);
    free(buf);
    cache_free(c);
}

/* An in-place reader that closes its handle from inside the reply, as a FUSE release can come
 * the moment a read is answered. */
struct close_in_reply {
    struct cache_file *f;
    uint64_t seed, off;
};

static int close_take(void *ctx, const void *p, size_t len)
{
    struct close_in_reply *r = ctx;
    check_bytes(p, len, r->seed, r->off);
    cache_file_close(r->f);
    r->f = NULL;
    return (int)len;
}

static void test_sequential_prefetch(void **state)
{
    struct cache *c;
    struct dverr err = {0};
    struct cache_opts o = {.budget = 64 << 20};
    uint64_t size = 3 * CACHE_FRAME + 777;
    struct gen g = {.size = size, .seed = 11, .fail_at_mib = -1};
    struct cache_source s = gen_source(&g);
    struct cache_file *f;
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    assert_int_equal(cache_file_open(c, "pre/a", size, &s, &f, &err), 0);
    assert_int_equal(cache_wait_fills(c, 10000), 0);
    cache_file_close(f);
    cache_free(c);

    /* a fresh process: no frame decoded yet */
    assert_int_equal(cache_open(dir, &o, &c, &err), 0);
    s = gen_source(&g);
    assert_int_equal(cache_file_open(c, "pre/a", size, &s, &f, &err), 0);
    struct close_in_reply r = {.f = f, .seed = 11, .off = 0};
    /* a read ending at a frame's end decodes the next frame after its reply, even when the
     * handle was closed in between */
    assert_int_equal(cache_file_read_in_place(f, CACHE_FRAME, 0, close_take, &r, &err),
                     (int)CACHE_FRAME);
    assert_null(r.f);
    struct cache_stats st;
    cache_stats(c, &st);
    assert_int_equal(st.frames_decoded, 2);
    assert_int_equal(st.open_files, 0);
    s = gen_source(&g);
    assert_int_equal(cache_file_open(c, "pre/a", size, &s, &f, &err), 0);
    r = (struct close_in_reply){.f = f, .seed = 11, .off = CACHE_FRAME};
    assert_int_equal(cache_file_read_in_place(f, CACHE_FRAME, CACHE_FRAME, close_take, &r, &err),
                     (int)CACHE_FRAME);
    cache_stats(c, &st);
    assert_int_equal(st.frames_decoded, 3); /* frame 1 was there; frame 2 decoded ahead */
    /* a read that does not end at a frame's end decodes nothing ahead */
    s = gen_source(&g);
    assert_int_equal(cache_file_open(c, "pre/a", size, &s, &f, &err), 0);
    r = (struct close_in_reply){.f = f, .seed = 11, .off = 3 * CACHE_FRAME};
    assert_int_equal(cache_file_read_in_place(f, 777, 3 * CACHE_FRAME, close_take, &r, &err), 777);
    cache_stats(c, &st);
    assert_int_equal(st.frames_decoded, 4);
    cache_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fill_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_file_refilled, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_are_eio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_budget_lru, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_and_mountpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_waiters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sequential_prefetch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plain_copies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
