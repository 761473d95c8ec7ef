/* test_rel_repo: reliability goals for the repository, through its public API (repo.h) with a
 * fault-injecting object store wrapped around the directory driver (the seam of objstore.h).
 * - #3  failed writes: the Nth put/put_file fails, once and "always after" (the SQLite I/O-error
 *       loop): the capture reports an error (never success), check --read-data stays clean, every
 *       earlier point reads back byte-identical, and the next capture succeeds.
 * - #3  disk full: the repository on a small tmpfs (root only): captures fail with -ENOSPC and a
 *       message, check stays clean, and after the tmpfs grows the next capture succeeds.
 * - #2  crash consistency at the seam (dm-log-writes is not available here, see README): a child
 *       process captures and dies (_exit, no cleanup) at its k-th object write, leaving a torn
 *       temp file as a power cut would; for every k the parent finds a clean check, the earlier
 *       points unchanged, the killed point absent, and a new capture succeeds.
 * - #5  corrupt catalog: random bytes in the header and in b-tree pages of a real catalog: open,
 *       points, capture and check return 0 or an error (never a crash; the ASan build runs this),
 *       and repo_rebuild_catalog recovers points and capture state.
 * - #25 catalog settings read back from a live connection: WAL, synchronous=FULL, foreign keys.
 * - #18 zstd bombs planted as segments with valid ids: a frame declaring 1 TiB, a frame of unknown
 *       size that inflates to 256 MiB, a window of 2^31: -EIO within a fixed time and memory.
 * Every goal runs twice: on an unencrypted repository, then on an encrypted one (issue 16; a fixed
 * master key). Single-threaded except the forked children of the crash test. */
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
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include "backend/repo/catalog.h"
#include "backend/repo/repo.h"
#include "backend/repo/segment.h"

/* ---------- a fault-injecting object store ---------- */

enum fault_mode { FAULT_NONE, FAULT_ONCE, FAULT_ALWAYS, FAULT_CRASH };
struct faulty {
    struct objstore *inner;
    enum fault_mode mode;
    int fail_at;  /* 1-based index of the write that fails */
    int writes;   /* writes seen (put, put_file, put_if_absent, del) */
    int failed;   /* writes failed */
};

/* true when this write must fail; in FAULT_CRASH mode the process dies here after leaving a torn
 * temp file next to the object, as a power cut in the middle of the write would. */
static bool fault_hit(struct faulty *f, const char *name)
{
    f->writes++;
    bool hit = (f->mode == FAULT_ONCE && f->writes == f->fail_at) ||
               (f->mode == FAULT_ALWAYS && f->writes >= f->fail_at) ||
               (f->mode == FAULT_CRASH && f->writes == f->fail_at);
    if (!hit)
        return false;
    if (f->mode == FAULT_CRASH) {
        char path[1200], dir[512];
        if (snprintf(dir, sizeof dir, "%s/%s", f->inner->local_dir, name) >= (int)sizeof dir)
            _exit(97);
        char *slash = strrchr(dir, '/');
        *slash = 0;
        mkdir_p(dir, 0755);
        snprintf(path, sizeof path, "%s/.tmp-%d-0-%s", dir, (int)getpid(), slash + 1);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            if (write(fd, "DVSNSEG1torn", 12) < 0)
                _exit(98);
            close(fd);
        }
        _exit(77);
    }
    f->failed++;
    return true;
}

static int f_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    struct faulty *f = impl;
    if (fault_hit(f, name))
        return dverr_set(err, -EIO, "injected write failure on %s", name);
    return f->inner->ops->put(f->inner->impl, name, data, len, err);
}
static int f_put_file(void *impl, const char *name, const char *local, struct dverr *err)
{
    struct faulty *f = impl;
    if (fault_hit(f, name))
        return dverr_set(err, -EIO, "injected fsync failure on %s", name);
    return f->inner->ops->put_file(f->inner->impl, name, local, err);
}
static int f_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                           struct dverr *err)
{
    struct faulty *f = impl;
    if (fault_hit(f, name))
        return dverr_set(err, -EIO, "injected write failure on %s", name);
    return f->inner->ops->put_if_absent(f->inner->impl, name, data, len, err);
}
static int f_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                 struct dverr *err)
{
    struct faulty *f = impl;
    return f->inner->ops->get(f->inner->impl, name, off, len, out, err);
}
static int f_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct faulty *f = impl;
    return f->inner->ops->stat(f->inner->impl, name, size, err);
}
static int f_list(void *impl, const char *prefix, int (*fn)(void *, const char *, uint64_t),
                  void *ctx, struct dverr *err)
{
    struct faulty *f = impl;
    return f->inner->ops->list(f->inner->impl, prefix, fn, ctx, err);
}
static int f_del(void *impl, const char *name, struct dverr *err)
{
    struct faulty *f = impl;
    if (fault_hit(f, name))
        return dverr_set(err, -EIO, "injected delete failure on %s", name);
    return f->inner->ops->del(f->inner->impl, name, err);
}
static void f_free(void *impl)
{
    struct faulty *f = impl;
    objstore_free(f->inner);
    free(f);
}
static const struct objstore_ops faulty_ops = {f_put,  f_put_file, f_put_if_absent, f_get,
                                               f_stat, f_list,     f_del,           f_free, NULL};

/* ---------- fixture ---------- */

struct fx {
    char dir[64];
    char repo_dir[96];
    char cat[128];
    struct repo *r;
    struct faulty *fault; /* owned by r's store */
    /* points committed so far and their table bytes, to compare after every fault */
    char names[64][32];
    struct buf bytes[64];
    int n_points;
};

static bool encrypted; /* the second run: repositories opened with a crypt */

/* The crypt of the run (NULL unencrypted): always the same master key. */
static struct crypt *run_crypt(void)
{
    struct crypt *c = NULL;
    unsigned char master[CRYPT_MASTER_BYTES];
    for (size_t i = 0; i < sizeof master; i++)
        master[i] = (unsigned char)(i * 5 + 3);
    if (encrypted)
        assert_int_equal(crypt_new(master, &c), 0);
    return c;
}

static void open_repo(struct fx *f)
{
    struct objstore *inner = NULL, *s = calloc(1, sizeof *s);
    struct dverr e = {0};
    assert_int_equal(objstore_dir_open(f->repo_dir, &inner, &e), 0);
    f->fault = calloc(1, sizeof *f->fault);
    f->fault->inner = inner;
    s->ops = &faulty_ops;
    s->impl = f->fault;
    s->location = strdup(inner->location ? inner->location : f->repo_dir);
    s->local_dir = inner->local_dir ? strdup(inner->local_dir) : NULL;
    int rc = repo_open_store(s, run_crypt(), f->cat, &f->r, &e);
    if (rc)
        fprintf(stderr, "repo_open_store: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
}

static void close_repo(struct fx *f)
{
    repo_free(f->r);
    f->r = NULL;
    f->fault = NULL;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_rel_repo.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->repo_dir, sizeof f->repo_dir, "%s/repo", f->dir);
    mkdir(f->repo_dir, 0700);
    snprintf(f->cat, sizeof f->cat, "%s/catalog.db", f->repo_dir);
    open_repo(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    close_repo(f);
    for (int i = 0; i < f->n_points; i++)
        buf_release(&f->bytes[i]);
    char cmd[160];
    snprintf(cmd, sizeof cmd, "umount %s/repo 2>/dev/null; rm -rf %s", f->dir, f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* ---------- a capture of generation g: two tables, a schema blob, capture state ---------- */

#define ENV "contoso-dev"
static const char *const tables[2] = {"account", "contact"};

static void rec_line(struct buf *b, const char *table, int i, int g, size_t pad)
{
    buf_reset(b);
    buf_printf(b, "{\"id\":\"%s-%06d\",\"g\":%d,\"big\":18446744073709551617,\"pad\":\"", table, i,
               g);
    for (size_t k = 0; k < pad; k++)
        buf_addch(b, (char)('a' + (i * 31 + (int)k * 7 + g) % 26));
    buf_addstr(b, "\"}");
}

/* One capture: fresh bases of n records per table with pad bytes of filler each. 0 or the first
 * error (the capture is aborted, nothing kept). *name gets the point's name on success. */
static int capture_gen(struct repo *r, int g, int n, size_t pad, char name[32], struct dverr *e)
{
    struct repo_capture *c = NULL;
    struct point *p = NULL;
    struct buf line = BUF_INIT;
    int rc = repo_capture_begin(r, ENV, &c, e);
    if (rc)
        return rc;
    p = calloc(1, sizeof *p);
    p->env = strdup(ENV);
    p->kind = strdup("system");
    p->taken_at = 1763715600 + g * 60;
    p->n_tables = 2;
    p->tables = calloc(2, sizeof *p->tables);
    for (int t = 0; t < 2; t++) {
        struct point_table *pt = &p->tables[t];
        pt->name = strdup(tables[t]);
        pt->entity_set = strdup(tables[t]);
        pt->primary_key = strdup("id");
        struct segment_writer *w = NULL;
        if ((rc = segment_writer_new(r, &w, e)))
            goto out;
        char key[64];
        for (int i = 0; i < n && !rc; i++) {
            snprintf(key, sizeof key, "%s-%06d", tables[t], i);
            rec_line(&line, tables[t], i, g, pad);
            rc = segment_writer_add(w, SEG_BASE, key, strlen(key), line.data, line.len, e);
            if (!rc)
                rc = repo_capture_state_put(c, tables[t], key, strlen(key),
                                            repo_line_hash(r, line.data, line.len), line.len,
                                            false);
        }
        if (rc) {
            segment_writer_abort(w);
            goto out;
        }
        char id[65];
        struct segment_stats st;
        if ((rc = segment_writer_finish_stats(w, id, &st, e)))
            goto out;
        pt->segments = calloc(1, sizeof(char *));
        pt->segments[0] = strdup(id);
        pt->n_segments = 1;
        pt->delta = strdup(id);
        pt->records = st.entries;
        pt->bytes = st.table_bytes;
        pt->changes_bytes = st.changes_bytes;
        char schema[128];
        snprintf(schema, sizeof schema, "{\"table\":\"%s\",\"generation\":%d}", tables[t], g);
        if ((rc = repo_blob_put(r, schema, strlen(schema), id, e)))
            goto out;
        pt->schema = strdup(id);
    }
    rc = repo_capture_commit(c, p, e);
    c = NULL;
    if (!rc)
        snprintf(name, 32, "%s", p->name);
out:
    repo_capture_abort(c);
    point_free(p);
    buf_release(&line);
    return rc;
}

/* Both table files of point name, concatenated. */
static int point_bytes(struct repo *r, const char *name, struct buf *out, struct dverr *e)
{
    struct point *p = NULL;
    int rc = repo_point_load(r, ENV, name, &p, e);
    for (int t = 0; t < 2 && !rc; t++) {
        struct table_reader *tr = NULL;
        if ((rc = table_reader_open(r, p, tables[t], &tr, e)))
            break;
        char tmp[4096];
        ssize_t n;
        while ((n = table_reader_read(tr, tmp, sizeof tmp, e)) > 0)
            buf_add(out, tmp, (size_t)n);
        if (n < 0)
            rc = (int)n;
        table_reader_free(tr);
    }
    point_free(p);
    return rc;
}

static void remember(struct fx *f, const char *name)
{
    struct dverr e = {0};
    assert_true(f->n_points < 64);
    snprintf(f->names[f->n_points], 32, "%s", name);
    buf_init(&f->bytes[f->n_points]);
    assert_int_equal(point_bytes(f->r, name, &f->bytes[f->n_points], &e), 0);
    f->n_points++;
}

/* The invariants after any fault: check --read-data clean, exactly the remembered points exist,
 * each reads back byte-identical. */
static void expect_intact(struct fx *f, const char *when)
{
    struct dverr e = {0};
    struct check_report rep;
    int rc = repo_check(f->r, true, &rep, &e);
    if (rc || rep.n_damaged) {
        fprintf(stderr, "%s: check rc %d: %s\n", when, rc, dverr_msg(&e));
        for (size_t i = 0; i < rep.n_damaged; i++)
            fprintf(stderr, "  damaged: %s\n", rep.damaged[i]);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(rep.n_damaged, 0);
    assert_int_equal(rep.points, (uint64_t)f->n_points);
    check_report_release(&rep);
    struct point_summary *ps = NULL;
    size_t n = 0;
    assert_int_equal(repo_points(f->r, ENV, &ps, &n, &e), 0);
    assert_int_equal(n, (size_t)f->n_points);
    for (int i = 0; i < f->n_points; i++) {
        assert_string_equal(ps[i].name, f->names[i]);
        struct buf b = BUF_INIT;
        assert_int_equal(point_bytes(f->r, f->names[i], &b, &e), 0);
        assert_int_equal(b.len, f->bytes[i].len);
        assert_memory_equal(b.data, f->bytes[i].data, b.len);
        buf_release(&b);
    }
    point_summaries_free(ps, n);
}

/* ---------- #3: failed writes ---------- */

static void test_write_faults(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    char name[32];
    int g = 0;
    assert_int_equal(capture_gen(f->r, g++, 30, 40, name, &e), 0);
    remember(f, name);
    int runs = 0, failed_runs = 0;
    for (int mode = FAULT_ONCE; mode <= FAULT_ALWAYS; mode++) {
        for (int k = 1;; k++) {
            f->fault->mode = (enum fault_mode)mode;
            f->fault->fail_at = k;
            f->fault->writes = 0;
            f->fault->failed = 0;
            struct dverr fe = {0};
            int rc = capture_gen(f->r, g++, 30, 40, name, &fe);
            int failed = f->fault->failed;
            f->fault->mode = FAULT_NONE;
            runs++;
            if (failed == 0) { /* k beyond the capture's writes: it must have succeeded */
                assert_int_equal(rc, 0);
                remember(f, name);
                break;
            }
            /* a write failed: never a success report, always a message */
            if (rc == 0)
                fail_msg("mode %d, write %d failed but the capture reported success", mode, k);
            assert_true(strlen(dverr_msg(&fe)) > 0);
            failed_runs++;
            expect_intact(f, "after a failed write");
            /* the next run succeeds */
            rc = capture_gen(f->r, g++, 30, 40, name, &e);
            if (rc)
                fprintf(stderr, "re-run: %s\n", dverr_msg(&e));
            assert_int_equal(rc, 0);
            remember(f, name);
            assert_true(k < 40);
        }
    }
    expect_intact(f, "at the end");
    print_message("write faults: %d runs, %d failed as injected, %d points intact\n", runs,
                  failed_runs, f->n_points);
}

/* ---------- #2: crash at each object write ---------- */

static void test_crash_at_each_write(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    char name[32];
    assert_int_equal(capture_gen(f->r, 0, 25, 30, name, &e), 0);
    remember(f, name);
    int crashes = 0;
    for (int k = 1; k < 40; k++) {
        close_repo(f); /* the child opens its own, as a new process would */
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            open_repo(f);
            f->fault->mode = FAULT_CRASH;
            f->fault->fail_at = k;
            struct dverr ce = {0};
            char cn[32];
            _exit(capture_gen(f->r, 100 + k, 25, 30, cn, &ce) == 0 ? 0 : 3);
        }
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(WIFEXITED(status));
        open_repo(f);
        if (WEXITSTATUS(status) == 0) { /* k beyond its writes: the point must be there */
            struct point_summary *ps = NULL;
            size_t n = 0;
            assert_int_equal(repo_points(f->r, ENV, &ps, &n, &e), 0);
            assert_int_equal(n, (size_t)f->n_points + 1);
            char last[32];
            snprintf(last, sizeof last, "%s", ps[n - 1].name);
            point_summaries_free(ps, n);
            remember(f, last);
            expect_intact(f, "after a complete child capture");
            break;
        }
        assert_int_equal(WEXITSTATUS(status), 77);
        crashes++;
        expect_intact(f, "after a crash");
        /* a new capture after the crash succeeds (the dead writer's lock is gone) */
        int rc = capture_gen(f->r, 200 + k, 25, 30, name, &e);
        if (rc)
            fprintf(stderr, "after crash %d: %s\n", k, dverr_msg(&e));
        assert_int_equal(rc, 0);
        remember(f, name);
    }
    assert_true(crashes >= 4);
    expect_intact(f, "at the end");
    print_message("crash at each write: %d crash points, %d points intact\n", crashes,
                  f->n_points);
}

/* ---------- #3: disk full ---------- */

static void test_disk_full(void **state)
{
    struct fx *f = *state;
    if (geteuid() != 0) {
        print_message("skipped: needs root to mount a tmpfs\n");
        return;
    }
    close_repo(f);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf %s/*", f->repo_dir);
    assert_int_equal(system(cmd), 0);
    if (mount("tmpfs", f->repo_dir, "tmpfs", 0, "size=2m,mode=0700") != 0) {
        print_message("skipped: mount tmpfs: %s\n", strerror(errno));
        open_repo(f);
        return;
    }
    open_repo(f);
    struct dverr e = {0};
    char name[32];
    assert_int_equal(capture_gen(f->r, 0, 100, 50, name, &e), 0);
    remember(f, name);
    /* incompressible-ish records until the disk is full */
    int rc = 0, g = 1;
    for (; g < 50; g++) {
        dverr_clear(&e);
        rc = capture_gen(f->r, g, 2000, 200, name, &e);
        if (rc)
            break;
        remember(f, name);
    }
    print_message("disk full after %d captures: rc %d: %s\n", g, rc, dverr_msg(&e));
    assert_true(rc < 0);
    assert_true(rc == -ENOSPC || rc == -EIO || rc == -EFBIG);
    assert_true(strlen(dverr_msg(&e)) > 0);
    /* still full: reading and checking work */
    expect_intact(f, "on a full disk");
    /* room again */
    assert_int_equal(mount("tmpfs", f->repo_dir, "tmpfs", MS_REMOUNT, "size=64m,mode=0700"), 0);
    dverr_clear(&e);
    rc = capture_gen(f->r, 99, 2000, 200, name, &e);
    if (rc)
        fprintf(stderr, "after space returned: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
    remember(f, name);
    expect_intact(f, "after space returned");
    close_repo(f);
    assert_int_equal(umount(f->repo_dir), 0);
    open_repo(f);
    for (int i = 0; i < f->n_points; i++) /* the points lived on the tmpfs */
        buf_release(&f->bytes[i]);
    f->n_points = 0;
}

/* ---------- #5: corrupt catalog ---------- */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void copy_file(const char *from, const char *to)
{
    struct buf b = BUF_INIT;
    assert_int_equal(read_file(from, 1u << 30, &b), 0);
    int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b.data, b.len), (ssize_t)b.len);
    close(fd);
    buf_release(&b);
}

static void test_catalog_corruption(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    char name[32], pristine[160], path[160];
    for (int g = 0; g < 4; g++) {
        assert_int_equal(capture_gen(f->r, g, 300, 20, name, &e), 0);
        remember(f, name);
    }
    close_repo(f); /* last close checkpoints the WAL into the file */
    snprintf(path, sizeof path, "%s-wal", f->cat);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(pristine, sizeof pristine, "%s/pristine.db", f->dir);
    copy_file(f->cat, pristine);
    struct stat sb;
    assert_int_equal(stat(pristine, &sb), 0);
    const size_t page = 4096;
    size_t pages = (size_t)sb.st_size / page;
    assert_true(pages >= 3);
    int open_failed = 0, begin_refused = 0, begin_ok = 0;
    const int rounds = 40;
    for (int round = 0; round < rounds; round++) {
        copy_file(pristine, f->cat);
        snprintf(path, sizeof path, "%s-shm", f->cat);
        unlink(path);
        int fd = open(f->cat, O_RDWR);
        assert_true(fd >= 0);
        if (round % 3 == 0) { /* the 100-byte header */
            for (int i = 0; i < 6; i++) {
                unsigned char b = (unsigned char)rnd();
                assert_int_equal(pwrite(fd, &b, 1, (off_t)(rnd() % 100)), 1);
            }
        } else { /* a b-tree page: a run of random bytes, or the whole page */
            size_t pg = 1 + rnd() % (pages - 1);
            size_t len = round % 3 == 1 ? 1 + rnd() % 64 : page;
            size_t off = len == page ? 0 : rnd() % (page - len);
            unsigned char junk[4096];
            for (size_t i = 0; i < len; i++)
                junk[i] = (unsigned char)rnd();
            assert_int_equal(pwrite(fd, junk, len, (off_t)(pg * page + off)), (ssize_t)len);
        }
        close(fd);
        /* open, list, capture, check: errors allowed, crashes not */
        struct objstore *inner = NULL;
        assert_int_equal(objstore_dir_open(f->repo_dir, &inner, &e), 0);
        struct repo *r = NULL;
        struct dverr oe = {0};
        if (repo_open_store(inner, run_crypt(), f->cat, &r, &oe) != 0) {
            open_failed++;
            assert_true(strlen(dverr_msg(&oe)) > 0);
            continue;
        }
        struct point_summary *ps = NULL;
        size_t n = 0;
        struct dverr pe = {0};
        if (repo_points(r, ENV, &ps, &n, &pe) == 0)
            point_summaries_free(ps, n);
        struct repo_capture *c = NULL;
        struct dverr be = {0};
        int rc = repo_capture_begin(r, ENV, &c, &be);
        if (rc == 0) {
            begin_ok++;
            repo_capture_abort(c);
        } else {
            begin_refused++;
            assert_true(strlen(dverr_msg(&be)) > 0);
        }
        struct check_report rep;
        struct dverr ce = {0};
        repo_check(r, false, &rep, &ce);
        check_report_release(&rep);
        /* rebuild recovers: points and capture state as before */
        struct dverr re = {0};
        rc = repo_rebuild_catalog(r, &re);
        if (rc)
            fprintf(stderr, "round %d: rebuild: %s\n", round, dverr_msg(&re));
        assert_int_equal(rc, 0);
        assert_int_equal(repo_points(r, ENV, &ps, &n, &pe), 0);
        assert_int_equal(n, (size_t)f->n_points);
        point_summaries_free(ps, n);
        assert_int_equal(repo_capture_begin(r, ENV, &c, &be), 0);
        uint64_t h, l;
        bool found;
        struct buf line = BUF_INIT;
        rec_line(&line, "contact", 123, 3, 20);
        assert_int_equal(repo_capture_state_get(c, "contact", "contact-000123", 14, &h, &l, &found),
                         0);
        assert_true(found);
        assert_true(h == repo_line_hash(r, line.data, line.len));
        buf_release(&line);
        repo_capture_abort(c);
        repo_free(r);
    }
    print_message("catalog corruption: %d rounds; open failed %d, capture refused %d, capture "
                  "allowed %d; rebuild recovered every opened one\n",
                  rounds, open_failed, begin_refused, begin_ok);
    copy_file(pristine, f->cat);
    open_repo(f);
    expect_intact(f, "pristine catalog");
}

/* ---------- #25: catalog settings ---------- */

static void test_catalog_settings(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    char name[32];
    assert_int_equal(capture_gen(f->r, 0, 10, 10, name, &e), 0);
    struct catalog *c = NULL;
    assert_int_equal(catalog_open(f->cat, &c, &e), 0);
    char jm[16] = "";
    int sync = -1, fk = -1;
    assert_int_equal(catalog_settings(c, jm, &sync, &fk, &e), 0);
    print_message("catalog: journal_mode=%s synchronous=%d foreign_keys=%d\n", jm, sync, fk);
    assert_string_equal(jm, "wal");
    assert_int_equal(sync, 2);
    assert_int_equal(fk, 1);
    catalog_free(c);
}

/* ---------- #18: zstd bombs planted as segments ---------- */

static void put_u32(struct buf *b, uint32_t v)
{
    unsigned char x[4];
    for (int i = 0; i < 4; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    buf_add(b, x, 4);
}
static void put_u64(struct buf *b, uint64_t v)
{
    unsigned char x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (unsigned char)(v >> (8 * i));
    buf_add(b, x, 8);
}

/* A structurally valid segment around one given frame whose index claims usize plain bytes and
 * one entry; stored under its true id. */
static void plant_segment(struct objstore *s, const void *frame, size_t flen, uint32_t usize,
                          char id[65])
{
    struct buf seg = BUF_INIT, idx = BUF_INIT;
    buf_add(&seg, "DVSNSEG1", 8);
    buf_add(&seg, frame, flen);
    buf_add(&idx, "DVSI", 4);
    put_u32(&idx, 1);
    put_u64(&idx, 1);
    put_u64(&idx, 8);
    put_u32(&idx, (uint32_t)flen);
    put_u32(&idx, usize);
    put_u32(&idx, 1);
    put_u32(&idx, 1);
    buf_addch(&idx, 'k');
    uint64_t ioff = seg.len;
    buf_add(&seg, idx.data, idx.len);
    put_u64(&seg, ioff);
    put_u64(&seg, idx.len);
    put_u64(&seg, 1);
    char ih[65];
    sha256_hex(idx.data, idx.len, ih);
    for (int i = 0; i < 8; i++) {
        unsigned int v;
        sscanf(ih + 2 * i, "%2x", &v);
        buf_addch(&seg, (char)v);
    }
    buf_add(&seg, "DVSNSEGT", 8);
    sha256_hex(seg.data, seg.len, id);
    char name[80];
    segment_object_name(id, name);
    struct dverr e = {0};
    assert_int_equal(s->ops->put(s->impl, name, seg.data, seg.len, &e), 0);
    buf_release(&seg);
    buf_release(&idx);
}

/* Read the planted segment through a merge in a child limited to 512 MiB of address space and
 * 10 s of CPU; the child exits 0 when the read failed with -EIO as it must. */
static void expect_refused_in_bounds(struct fx *f, const char *id, const char *what)
{
    int64_t t0 = now_ms();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
        struct rlimit as = {512u << 20, 512u << 20};
        setrlimit(RLIMIT_AS, &as);
#endif
        struct rlimit cpu = {10, 10};
        setrlimit(RLIMIT_CPU, &cpu);
        struct dverr e = {0};
        struct segment_merge *m = NULL;
        char *ids[1] = {(char *)id};
        /* the bombs are plain segments: read as such whatever the run */
        int rc = segment_merge_open(repo_store(f->r), NULL, ids, 1, false, &m, &e);
        struct segment_entry ent;
        while (rc == 0 && (rc = segment_merge_next(m, &ent, &e)) == 1)
            rc = 0;
        segment_merge_free(m);
        uint64_t entries = 0;
        struct dverr ve = {0};
        int vrc = segment_verify(repo_store(f->r), NULL, id, &entries, &ve);
        fprintf(stderr, "  %s: merge %d (%s), verify %d (%s)\n", what, rc, dverr_msg(&e), vrc,
                dverr_msg(&ve));
        _exit(rc == -EIO && vrc == -EIO ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    int64_t took = now_ms() - t0;
    print_message("%s: refused in %lld ms\n", what, (long long)took);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(took < 10000);
}

static void test_segment_bombs(void **state)
{
    struct fx *f = *state;
    struct objstore *s = repo_store(f->r);
    char id[65];

    /* 1. a frame header that declares 1 TiB of content over a tiny body */
    unsigned char tib[32] = {0x28, 0xb5, 0x2f, 0xfd, 0xc0 /* FCS 8 bytes, single segment */};
    uint64_t declared = 1ull << 40;
    for (int i = 0; i < 8; i++)
        tib[5 + i] = (unsigned char)(declared >> (8 * i));
    tib[13] = 0x01; /* last raw block of 0 bytes */
    plant_segment(s, tib, 16, SEGMENT_MAX_FRAME, id);
    expect_refused_in_bounds(f, id, "frame declaring 1 TiB");

    /* 2. a frame of unknown size that inflates to 256 MiB of zeros, indexed as 1 KiB */
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 0);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    size_t chunk = 1u << 20;
    char *zeros = calloc(1, chunk);
    struct buf out = BUF_INIT;
    buf_reserve(&out, 1u << 20);
    char tmp[1 << 16];
    for (int i = 0; i < 256; i++) {
        ZSTD_inBuffer in = {zeros, chunk, 0};
        while (in.pos < in.size) {
            ZSTD_outBuffer o = {tmp, sizeof tmp, 0};
            ZSTD_compressStream2(cc, &o, &in, i == 255 ? ZSTD_e_end : ZSTD_e_continue);
            buf_add(&out, tmp, o.pos);
        }
    }
    for (;;) {
        ZSTD_inBuffer in = {NULL, 0, 0};
        ZSTD_outBuffer o = {tmp, sizeof tmp, 0};
        size_t left = ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end);
        buf_add(&out, tmp, o.pos);
        if (left == 0)
            break;
    }
    print_message("bomb: 256 MiB of zeros in %zu bytes\n", out.len);
    plant_segment(s, out.data, out.len, 1024, id);
    expect_refused_in_bounds(f, id, "256 MiB bomb indexed as 1 KiB");
    /* 3. the same, indexed with the largest size a frame may claim */
    plant_segment(s, out.data, out.len, SEGMENT_MAX_FRAME, id);
    expect_refused_in_bounds(f, id, "256 MiB bomb indexed at the frame cap");

    /* 4. the bomb with its declared content size patched to agree with the index (1 KiB): the
     * decoder must stop at the index size */
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, 1);
    size_t bound = ZSTD_compressBound(256u << 20);
    struct buf sized = BUF_INIT;
    buf_reserve(&sized, 64u << 10);
    {
        ZSTD_CCtx_setPledgedSrcSize(cc, 256u << 20);
        for (int i = 0; i < 256; i++) {
            ZSTD_inBuffer in = {zeros, chunk, 0};
            while (in.pos < in.size || i == 255) {
                ZSTD_outBuffer o = {tmp, sizeof tmp, 0};
                size_t left =
                    ZSTD_compressStream2(cc, &o, &in, i == 255 ? ZSTD_e_end : ZSTD_e_continue);
                buf_add(&sized, tmp, o.pos);
                if (i == 255 && in.pos == in.size && left == 0)
                    break;
            }
        }
    }
    (void)bound;
    unsigned char fhd = (unsigned char)sized.data[4];
    assert_int_equal(fhd >> 6, 2); /* 4-byte content size field */
    size_t fcs_at = 5 + ((fhd & 0x20) ? 0 : 1);
    uint32_t fake = 1024;
    for (int i = 0; i < 4; i++)
        sized.data[fcs_at + (size_t)i] = (char)(fake >> (8 * i));
    assert_true(ZSTD_getFrameContentSize(sized.data, sized.len) == 1024);
    plant_segment(s, sized.data, sized.len, 1024, id);
    expect_refused_in_bounds(f, id, "256 MiB bomb declaring 1 KiB");
    buf_release(&sized);

    /* 5. a window of 2^31 (descriptor exponent 21) on a frame whose sizes agree with the index */
    struct buf wl = BUF_INIT;
    unsigned char hdr[9] = {0x28, 0xb5, 0x2f, 0xfd, 0x40 /* FCS 2 bytes, not single segment */,
                            (unsigned char)((31 - 10) << 3), (unsigned char)(1024 - 256),
                            (unsigned char)((1024 - 256) >> 8)};
    buf_add(&wl, hdr, 8);
    uint32_t bh = (1024u << 3) | 1u; /* last block, raw, 1024 bytes */
    buf_addch(&wl, (char)bh);
    buf_addch(&wl, (char)(bh >> 8));
    buf_addch(&wl, (char)(bh >> 16));
    for (int i = 0; i < 1024; i++)
        buf_addch(&wl, 'x');
    assert_true(ZSTD_getFrameContentSize(wl.data, wl.len) == 1024);
    plant_segment(s, wl.data, wl.len, 1024, id);
    expect_refused_in_bounds(f, id, "window 2^31");
    buf_release(&wl);
    ZSTD_freeCCtx(cc);
    free(zeros);
    buf_release(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_faults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_each_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog_settings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_bombs, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("unencrypted", tests, NULL, NULL);
    encrypted = true;
    return failed + cmocka_run_group_tests_name("encrypted", tests, NULL, NULL);
}
