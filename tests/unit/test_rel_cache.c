/* test_rel_cache: reliability goal #15 (symlink and permission attacks on the cache directory) and
 * the cache half of #3 (disk full during a cache fill).
 * - the cache directory or its parent a symlink, a directory others can write, a parent others can
 *   write without the sticky bit, a directory of another user: cache_open refuses with a message;
 *   nothing is created or changed where the symlink points;
 * - a planted symlink at a fill's temp name and a pre-created 0666 temp file: the fill never writes
 *   through them (the target stays unchanged) and the cache file ends up 0600;
 * - a 0666 index.db left by a careless umask is tightened to 0600;
 * - ENOSPC (a 1 MiB tmpfs; root only, skipped otherwise): the fill fails, the read returns -EIO
 *   with a message, never short or wrong bytes; with room again the next open fills correctly.
 * Single-threaded test; the cache runs its own fill threads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/util.h"
#include "cache/cache.h"

struct fx {
    char dir[64];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_rel_cache.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    chmod(f->dir, 0755);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "umount %s/small 2>/dev/null; rm -rf %s", f->dir, f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* Incompressible deterministic bytes: splitmix64 of the 8-byte word index. */
static unsigned char pat_byte(uint64_t off)
{
    uint64_t z = (off >> 3) + 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (unsigned char)(z >> ((off & 7) * 8));
}

/* A source of size bytes of that pattern. */
struct pat {
    uint64_t size, off;
};
static int pat_open(void *arg, void **stream, struct dverr *err)
{
    struct pat *p = malloc(sizeof *p);
    *p = *(struct pat *)arg;
    p->off = 0;
    *stream = p;
    return 0;
}
static ssize_t pat_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct pat *p = stream;
    size_t k = 0;
    for (; k < n && p->off < p->size; k++, p->off++)
        ((unsigned char *)buf)[k] = pat_byte(p->off);
    return (ssize_t)k;
}
static void pat_close(void *stream)
{
    free(stream);
}
static struct cache_source pat_source(uint64_t size)
{
    struct pat *p = calloc(1, sizeof *p);
    p->size = size;
    struct cache_source s = {pat_open, pat_read, pat_close, free, p};
    return s;
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, mode);
}

static void expect_text(const char *path, const char *text)
{
    struct buf b = BUF_INIT;
    assert_int_equal(read_file(path, 1 << 20, &b), 0);
    assert_int_equal(b.len, strlen(text));
    assert_memory_equal(b.data, text, b.len);
    buf_release(&b);
}

static void expect_refused(const char *dir, const char *what)
{
    struct cache *c = NULL;
    struct dverr e = {0};
    int rc = cache_open(dir, NULL, &c, &e);
    if (rc == 0)
        cache_free(c);
    assert_true(rc < 0);
    assert_null(c);
    if (!strstr(dverr_msg(&e), what))
        fprintf(stderr, "message: %s\n", dverr_msg(&e));
    assert_non_null(strstr(dverr_msg(&e), what));
}

/* The cache directory, or its parent, is a symlink to a directory with a precious file; or it is
 * writable by others; or its parent is, without the sticky bit. */
static void test_refuses_unsafe_dirs(void **state)
{
    struct fx *f = *state;
    char victim[128], link[128], path[256], parent[128];
    snprintf(victim, sizeof victim, "%s/victim", f->dir);
    assert_int_equal(mkdir(victim, 0755), 0);
    snprintf(path, sizeof path, "%s/precious", victim);
    write_text(path, "precious\n", 0644);

    /* the directory itself a symlink */
    snprintf(link, sizeof link, "%s/cache-link", f->dir);
    assert_int_equal(symlink(victim, link), 0);
    expect_refused(link, "symlink");
    struct stat sb;
    assert_int_equal(stat(victim, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0755); /* not chmod-ed through the link */
    snprintf(path, sizeof path, "%s/lock", victim);
    assert_int_equal(access(path, F_OK), -1); /* nothing created there */
    snprintf(path, sizeof path, "%s/precious", victim);
    expect_text(path, "precious\n");

    /* its parent a symlink */
    snprintf(parent, sizeof parent, "%s/parent-link", f->dir);
    assert_int_equal(symlink(victim, parent), 0);
    snprintf(path, sizeof path, "%s/cache", parent);
    expect_refused(path, "parent is a symlink");
    snprintf(path, sizeof path, "%s/cache", victim);
    assert_int_equal(access(path, F_OK), -1);

    /* a directory others can write (they may have planted anything in it) */
    snprintf(path, sizeof path, "%s/open", f->dir);
    assert_int_equal(mkdir(path, 0700), 0);
    chmod(path, 0777);
    expect_refused(path, "writable by others");
    chmod(path, 0770);
    expect_refused(path, "writable by others");

    /* a parent others can write without the sticky bit; with it (like /tmp) it is fine */
    snprintf(parent, sizeof parent, "%s/shared", f->dir);
    assert_int_equal(mkdir(parent, 0700), 0);
    chmod(parent, 0777);
    snprintf(path, sizeof path, "%s/shared/cache", f->dir);
    expect_refused(path, "parent");
    chmod(parent, 01777);
    struct cache *c = NULL;
    struct dverr e = {0};
    assert_int_equal(cache_open(path, NULL, &c, &e), 0);
    cache_free(c);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);

    /* a directory of another user (root only: chown) */
    if (geteuid() == 0) {
        snprintf(path, sizeof path, "%s/theirs", f->dir);
        assert_int_equal(mkdir(path, 0700), 0);
        assert_int_equal(chown(path, 1001, 1001), 0);
        expect_refused(path, "belongs to uid 1001");
    }
}

/* Planted names inside a cache directory that was ours but loose for a while: the temp name of a
 * fill is a symlink to a precious file, another is a pre-created 0666 file, index.db is 0666. */
static void test_never_writes_through(void **state)
{
    struct fx *f = *state;
    char cache_dir[128], path[256], target[128];
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", f->dir);
    struct cache *c = NULL;
    struct dverr e = {0};
    assert_int_equal(cache_open(cache_dir, NULL, &c, &e), 0);
    cache_free(c);
    snprintf(path, sizeof path, "%s/index.db", cache_dir);
    chmod(path, 0666);

    /* the file names are files/<sha256(key)>.{tmp,zst} */
    char n1[65], n2[65];
    sha256_hex("key-one", 7, n1);
    sha256_hex("key-two", 7, n2);
    snprintf(target, sizeof target, "%s/precious", f->dir);
    write_text(target, "precious\n", 0644);
    snprintf(path, sizeof path, "%s/files/%s.tmp", cache_dir, n1);
    assert_int_equal(symlink(target, path), 0);
    snprintf(path, sizeof path, "%s/files/%s.tmp", cache_dir, n2);
    write_text(path, "planted\n", 0666);

    assert_int_equal(cache_open(cache_dir, NULL, &c, &e), 0);
    struct stat sb;
    snprintf(path, sizeof path, "%s/index.db", cache_dir);
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    const char *keys[2] = {"key-one", "key-two"};
    const char *names[2] = {n1, n2};
    for (int k = 0; k < 2; k++) {
        struct cache_file *cf = NULL;
        struct cache_source s = pat_source(300000);
        int rc = cache_file_open(c, keys[k], 300000, &s, &cf, &e);
        if (rc)
            fprintf(stderr, "open: %s\n", dverr_msg(&e));
        assert_int_equal(rc, 0);
        unsigned char *got = malloc(300000);
        assert_int_equal(cache_file_pread(cf, got, 300000, 0, &e), 300000);
        for (uint64_t i = 0; i < 300000; i++)
            if (got[i] != pat_byte(i))
                fail_msg("byte %llu differs", (unsigned long long)i);
        free(got);
        cache_file_close(cf);
        assert_int_equal(cache_wait_fills(c, 10000), 0);
        snprintf(path, sizeof path, "%s/files/%s.zst", cache_dir, names[k]);
        assert_int_equal(lstat(path, &sb), 0);
        assert_true(S_ISREG(sb.st_mode));
        assert_int_equal(sb.st_mode & 0777, 0600);
    }
    cache_free(c);
    expect_text(target, "precious\n");
    assert_int_equal(stat(target, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0644);
}

/* Disk full during a fill: a 1 MiB tmpfs holds the cache; a 6 MiB file of incompressible bytes
 * cannot fit. The read fails with -EIO and a message (never short or wrong bytes) within the
 * wait bound; with the tmpfs grown, a new cache over the same directory fills it correctly. */
static void test_fill_disk_full(void **state)
{
    struct fx *f = *state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to mount a tmpfs\n");
        return;
    }
    char small[128], cache_dir[160];
    snprintf(small, sizeof small, "%s/small", f->dir);
    assert_int_equal(mkdir(small, 0755), 0);
    if (mount("tmpfs", small, "tmpfs", 0, "size=1m,mode=0755") != 0) {
        print_message("skipped: mount tmpfs: %s\n", strerror(errno));
        return;
    }
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", small);
    const uint64_t size = 6u << 20;
    struct cache_opts o = {.budget = 64u << 20, .wait_ms = 5000};
    struct cache *c = NULL;
    struct dverr e = {0};
    assert_int_equal(cache_open(cache_dir, &o, &c, &e), 0);
    struct cache_file *cf = NULL;
    struct cache_source s = pat_source(size);
    assert_int_equal(cache_file_open(c, "big", size, &s, &cf, &e), 0);
    unsigned char *got = malloc(size);
    int64_t t0 = now_ms();
    ssize_t n = 0;
    uint64_t off = 0;
    while (off < size) {
        n = cache_file_pread(cf, got + off, size - off, off, &e);
        if (n <= 0)
            break;
        off += (uint64_t)n;
    }
    int64_t took = now_ms() - t0;
    assert_int_equal(n, -EIO);
    assert_true(off < size);
    for (uint64_t i = 0; i < off; i++)
        if (got[i] != pat_byte(i))
            fail_msg("byte %llu differs before the failure", (unsigned long long)i);
    print_message("disk full: read failed after %llu bytes in %lld ms: %s\n",
                  (unsigned long long)off, (long long)took, dverr_msg(&e));
    assert_true(strlen(dverr_msg(&e)) > 0);
    assert_true(took < 10000);
    cache_file_close(cf);
    cache_free(c);

    /* room again: grow the tmpfs; a new cache over the same directory fills the file */
    assert_int_equal(mount("tmpfs", small, "tmpfs", MS_REMOUNT, "size=64m,mode=0755"), 0);
    assert_int_equal(cache_open(cache_dir, &o, &c, &e), 0);
    s = pat_source(size);
    cf = NULL;
    assert_int_equal(cache_file_open(c, "big", size, &s, &cf, &e), 0);
    off = 0;
    while (off < size) {
        n = cache_file_pread(cf, got + off, size - off, off, &e);
        if (n <= 0)
            fprintf(stderr, "read: %s\n", dverr_msg(&e));
        assert_true(n > 0);
        off += (uint64_t)n;
    }
    for (uint64_t i = 0; i < size; i++)
        if (got[i] != pat_byte(i))
            fail_msg("byte %llu differs after recovery", (unsigned long long)i);
    cache_file_close(cf);
    cache_free(c);
    free(got);
    umount(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refuses_unsafe_dirs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_writes_through, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fill_disk_full, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
