/* test_repo: the repository through its public API (repo.h): segments written in any order and
 * read back as exact table files, chains merged newest-first with deletes, changes files, captures
 * with state, points listed and loaded, blobs, forget, prune, check naming a flipped byte, catalog
 * damage and rebuild, writer locks, compaction (a new base, or a long chain's small deltas
 * merged). Each test works in its own temp directory. Every test runs twice: on an unencrypted
 * repository, then on an encrypted one (issue 16; a fixed master key, so a test that reopens the
 * repository opens it with the same key).
 * Size: over 1,000 lines, the repository's public API in one suite and one fixture; the
 * encryption-only cases are in test_crypt.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/repo/catalog.h"
#include "backend/repo/filelist.h"
#include "backend/repo/manifest.h"
#include "backend/repo/repo.h"
#include "backend/repo/repo_int.h"
#include "backend/repo/segment.h"

static bool encrypted; /* the second run: repositories opened with a crypt */

struct fx {
    char dir[64];
    char cat[128];
    struct repo *r;
};

static void open_repo(struct fx *f)
{
    struct objstore *s = NULL;
    struct dverr e = {0};
    assert_int_equal(objstore_dir_open(f->dir, &s, &e), 0);
    struct crypt *c = NULL;
    unsigned char master[CRYPT_MASTER_BYTES];
    for (size_t i = 0; i < sizeof master; i++)
        master[i] = (unsigned char)(i * 7 + 1);
    if (encrypted)
        assert_int_equal(crypt_new(master, &c), 0);
    int rc = repo_open_store(s, c, f->cat, &f->r, &e);
    if (rc)
        fprintf(stderr, "repo_open_store: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/test_repo.XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->cat, sizeof f->cat, "%s/catalog.db", f->dir);
    open_repo(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    repo_free(f->r);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    if (system(cmd) != 0)
        return -1;
    free(f);
    return 0;
}

/* The line of record i (version v): a small JSON object with the key first. */
static void rec_line(struct buf *b, int i, int v)
{
    buf_reset(b);
    buf_printf(b, "{\"id\":\"k%06d\",\"n\":%d,\"v\":%d,\"big\":12345678901234567890.000000001}", i,
               i, v);
}
static void rec_key(char *k, size_t n, int i)
{
    snprintf(k, n, "k%06d", i);
}

static void read_all(struct table_reader *tr, struct buf *out, size_t chunk)
{
    char *tmp = malloc(chunk);
    struct dverr e = {0};
    for (;;) {
        ssize_t n = table_reader_read(tr, tmp, chunk, &e);
        if (n < 0)
            fprintf(stderr, "read: %s\n", dverr_msg(&e));
        assert_true(n >= 0);
        if (n == 0)
            break;
        buf_add(out, tmp, (size_t)n);
    }
    free(tmp);
}

/* Expected table file for records [0,n) where keys in del are gone and versions come from ver. */
static void expect_table(struct buf *out, int n, const int *ver)
{
    struct buf line = BUF_INIT;
    int lines = 0;
    buf_addstr(out, "[\n");
    for (int i = 0; i < n; i++) {
        if (ver[i] < 0)
            continue;
        rec_line(&line, i, ver[i]);
        if (lines++)
            buf_addstr(out, ",\n");
        buf_add(out, line.data, line.len);
    }
    buf_addstr(out, lines ? "\n]\n" : "]\n");
    buf_release(&line);
}

static char *write_segment(struct repo *r, char op, const int *idx, int n, const int *ver,
                           struct segment_stats *st, size_t budget)
{
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    struct buf line = BUF_INIT;
    char key[32], id[65];
    assert_int_equal(segment_writer_new(r, &w, &e), 0);
    if (budget)
        segment_writer_set_budget(w, budget);
    for (int j = 0; j < n; j++) {
        int i = idx[j];
        rec_key(key, sizeof key, i);
        rec_line(&line, i, ver ? ver[i] : 0);
        char o = op == 'x' ? (ver[i] < 0 ? 'd' : 'u') : op;
        assert_int_equal(segment_writer_add(w, (enum segment_op)o, key, strlen(key), line.data,
                                            o == 'd' ? 0 : line.len, &e), 0);
    }
    int rc = segment_writer_finish_stats(w, id, st, &e);
    if (rc)
        fprintf(stderr, "finish: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
    buf_release(&line);
    return strdup(id);
}

static void shuffle(int *v, int n, unsigned seed)
{
    for (int i = n - 1; i > 0; i--) {
        seed = seed * 1103515245u + 12345u;
        int j = (int)((seed >> 8) % (unsigned)(i + 1));
        int t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

static struct point *one_table_point(const char *env, char **chain, size_t n, uint64_t records,
                                     uint64_t bytes)
{
    struct point *p = calloc(1, sizeof *p);
    p->env = strdup(env);
    p->kind = strdup("system");
    p->taken_at = 1763715600;
    p->n_tables = 1;
    p->tables = calloc(1, sizeof *p->tables);
    p->tables[0].name = strdup("account");
    p->tables[0].primary_key = strdup("id");
    p->tables[0].segments = calloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        p->tables[0].segments[i] = strdup(chain[i]);
    p->tables[0].n_segments = n;
    p->tables[0].records = records;
    p->tables[0].bytes = bytes;
    return p;
}

/* Base in shuffled order (with a duplicate key that must keep its last entry), then a delta with
 * updates and deletes: the merged table file equals the expected bytes, read in odd chunk sizes. */
static void test_segment_chain_roundtrip(void **state)
{
    struct fx *f = *state;
    enum { N = 20000 };
    int *idx = malloc(N * sizeof *idx), ver[N];
    for (int i = 0; i < N; i++) {
        idx[i] = i;
        ver[i] = 1;
    }
    shuffle(idx, N, 7);
    /* duplicate: key 5 added first with version 0 via a separate writer call sequence */
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    struct buf line = BUF_INIT;
    char key[32], base[65];
    assert_int_equal(segment_writer_new(f->r, &w, &e), 0);
    rec_line(&line, 5, 0);
    assert_int_equal(segment_writer_add(w, SEG_BASE, "k000005", 7, line.data, line.len, &e), 0);
    for (int j = 0; j < N; j++) {
        rec_key(key, sizeof key, idx[j]);
        rec_line(&line, idx[j], 1);
        assert_int_equal(segment_writer_add(w, SEG_BASE, key, strlen(key), line.data, line.len, &e), 0);
    }
    assert_int_equal(segment_writer_count(w), N + 1);
    struct segment_stats st;
    assert_int_equal(segment_writer_finish_stats(w, base, &st, &e), 0);
    assert_int_equal(st.entries, N);
    assert_int_equal(strlen(base), 64);

    /* delta: update every 7th, delete every 11th */
    int dn = 0, *didx = malloc(N * sizeof *didx);
    for (int i = 0; i < N; i++) {
        if (i % 11 == 0) {
            ver[i] = -1;
            didx[dn++] = i;
        } else if (i % 7 == 0) {
            ver[i] = 2;
            didx[dn++] = i;
        }
    }
    shuffle(didx, dn, 3);
    struct segment_stats dst;
    char *delta = write_segment(f->r, 'x', didx, dn, ver, &dst, 0);
    assert_int_equal(dst.deletes, (N + 10) / 11);

    struct buf want = BUF_INIT, got = BUF_INIT;
    expect_table(&want, N, ver);
    char *chain[2] = {base, delta};
    struct point *p = one_table_point("contoso-dev", chain, 2, 0, want.len);
    struct table_reader *tr = NULL;
    assert_int_equal(table_reader_open(f->r, p, "account", &tr, &e), 0);
    read_all(tr, &got, 4093);
    table_reader_free(tr);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);

    /* the base alone gives version 1 of everything */
    for (int i = 0; i < N; i++)
        ver[i] = 1;
    buf_reset(&want);
    buf_reset(&got);
    expect_table(&want, N, ver);
    assert_int_equal(st.table_bytes, want.len);
    p->tables[0].n_segments = 1;
    p->tables[0].bytes = want.len;
    assert_int_equal(table_reader_open(f->r, p, "account", &tr, &e), 0);
    read_all(tr, &got, 1 << 20);
    table_reader_free(tr);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);

    /* a wrong size in the manifest is an error, never silently different bytes */
    p->tables[0].bytes = want.len - 1;
    assert_int_equal(table_reader_open(f->r, p, "account", &tr, &e), 0);
    char tmp[65536];
    ssize_t n;
    struct dverr e2 = {0};
    while ((n = table_reader_read(tr, tmp, sizeof tmp, &e2)) > 0)
        ;
    assert_int_equal(n, -EIO);
    table_reader_free(tr);
    p->tables[0].n_segments = 2;
    point_free(p);
    buf_release(&want);
    buf_release(&got);
    buf_release(&line);
    free(delta);
    free(idx);
    free(didx);
}

/* A tiny memory budget forces spilled runs; the result must equal the in-memory result. */
static void test_segment_spill(void **state)
{
    struct fx *f = *state;
    enum { N = 5000 };
    int idx[N], ver[N];
    for (int i = 0; i < N; i++) {
        idx[i] = i;
        ver[i] = 3;
    }
    shuffle(idx, N, 11);
    struct segment_stats a, b;
    char *spilled = write_segment(f->r, 'b', idx, N, ver, &a, 16 << 10);
    char *mem = write_segment(f->r, 'b', idx, N, ver, &b, 0);
    assert_string_equal(spilled, mem); /* same bytes, same id */
    assert_int_equal(a.entries, N);
    free(spilled);
    free(mem);
}

static void test_changes_file(void **state)
{
    struct fx *f = *state;
    int ver[3] = {1, 1, -1}, idx[3] = {2, 0, 1};
    struct dverr e = {0};
    struct segment_writer *w = NULL;
    char id[65];
    struct segment_stats st;
    assert_int_equal(segment_writer_new(f->r, &w, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_DELETE, "b\"q", 3, NULL, 0, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_CREATE, "a", 1, "{\"id\":\"a\"}", 10, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_UPDATE, "c", 1, "{\"id\":\"c\",\"x\":1}", 16, &e), 0);
    assert_int_equal(segment_writer_finish_stats(w, id, &st, &e), 0);
    (void)ver;
    (void)idx;
    const char *want = "[\n{\"op\":\"create\",\"id\":\"a\",\"record\":{\"id\":\"a\"}},\n"
                       "{\"op\":\"delete\",\"id\":\"b\\\"q\"},\n"
                       "{\"op\":\"update\",\"id\":\"c\",\"record\":{\"id\":\"c\",\"x\":1}}\n]\n";
    assert_int_equal(st.changes_bytes, strlen(want));
    char *chain[1] = {id};
    struct point *p = one_table_point("contoso-dev", chain, 1, 2, 0);
    p->tables[0].delta = strdup(id);
    p->tables[0].changes_bytes = st.changes_bytes;
    p->tables[0].bytes = st.table_bytes;
    struct table_reader *tr = NULL;
    struct buf got = BUF_INIT;
    assert_int_equal(changes_reader_open(f->r, p, "account", &tr, &e), 0);
    read_all(tr, &got, 7);
    table_reader_free(tr);
    assert_string_equal(got.data, want);
    /* the table itself: the delete is not a record */
    buf_reset(&got);
    assert_int_equal(table_reader_open(f->r, p, "account", &tr, &e), 0);
    read_all(tr, &got, 100);
    table_reader_free(tr);
    assert_string_equal(got.data, "[\n{\"id\":\"a\"},\n{\"id\":\"c\",\"x\":1}\n]\n");
    /* no delta: an empty changes file */
    free(p->tables[0].delta);
    p->tables[0].delta = NULL;
    p->tables[0].changes_bytes = 4;
    buf_reset(&got);
    assert_int_equal(changes_reader_open(f->r, p, "account", &tr, &e), 0);
    read_all(tr, &got, 100);
    table_reader_free(tr);
    assert_string_equal(got.data, "[\n]\n");
    point_free(p);
    buf_release(&got);
}

/* Capture: begin, state, commit; points listed; manifest round trip; next capture sees previous
 * point and state; a second concurrent begin is refused. */
static void test_capture_points(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    struct repo_capture *c = NULL, *c2 = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    assert_null(repo_capture_previous(c));
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c2, &e), -EBUSY);
    assert_non_null(strstr(dverr_msg(&e), "another capture"));
    dverr_clear(&e);
    int idx[100], ver[100];
    for (int i = 0; i < 100; i++) {
        idx[i] = i;
        ver[i] = 1;
    }
    struct segment_stats st;
    char *base = write_segment(f->r, 'b', idx, 100, ver, &st, 0);
    struct buf line = BUF_INIT;
    char key[32];
    for (int i = 0; i < 100; i++) {
        rec_key(key, sizeof key, i);
        rec_line(&line, i, 1);
        assert_int_equal(repo_capture_state_put(c, "account", key, strlen(key),
                                                repo_line_hash(f->r, line.data, line.len), line.len,
                                                false), 0);
    }
    uint64_t h, l;
    bool found;
    assert_int_equal(repo_capture_state_get(c, "account", "k000042", 7, &h, &l, &found), 0);
    assert_true(found);
    rec_line(&line, 42, 1);
    assert_true(h == repo_line_hash(f->r, line.data, line.len));
    char *chain[1] = {base};
    struct point *p = one_table_point("contoso-dev", chain, 1, st.entries, st.table_bytes);
    p->tables[0].delta = strdup(base);
    p->tables[0].changes_bytes = st.changes_bytes;
    p->tables[0].delta_link = strdup("http://x/delta?token=1");
    p->not_captured_json = strdup("[{\"what\":\"apps\",\"reason\":\"not supported\"}]");
    p->env_json = strdup("{\"name\":\"contoso-dev\",\"big\":12345678901234567}");
    int rc = repo_capture_commit(c, p, &e);
    if (rc)
        fprintf(stderr, "commit: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
    assert_string_equal(p->name, "2025-11-21T090000Z");

    struct point_summary *ps = NULL;
    size_t n = 0;
    assert_int_equal(repo_points(f->r, "contoso-dev", &ps, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ps[0].name, "2025-11-21T090000Z");
    assert_string_equal(ps[0].kind, "system");
    point_summaries_free(ps, n);

    struct point *q = NULL;
    assert_int_equal(repo_point_load(f->r, "contoso-dev", "2025-11-21T090000Z", &q, &e), 0);
    assert_string_equal(q->tables[0].delta_link, "http://x/delta?token=1");
    assert_int_equal(q->tables[0].bytes, st.table_bytes);
    assert_string_equal(q->env_json, "{\"name\":\"contoso-dev\",\"big\":12345678901234567}");
    struct buf bj = BUF_INIT;
    assert_int_equal(point_render_backup_json(q, NULL, &bj), 0);
    assert_non_null(strstr(bj.data, "\"taken_at\": \"2025-11-21T09:00:00Z\""));
    assert_non_null(strstr(bj.data, "\"records\": 100"));
    assert_non_null(strstr(bj.data, "not supported"));
    buf_release(&bj);
    point_free(q);

    /* a second capture in the same second gets a later, unique name and sees the state */
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    assert_non_null(repo_capture_previous(c));
    assert_int_equal(repo_capture_state_get(c, "account", "k000042", 7, &h, &l, &found), 0);
    assert_true(found);
    assert_int_equal(repo_capture_state_put(c, "account", "k000042", 7, 0, 0, true), 0);
    assert_int_equal(repo_capture_state_get(c, "account", "k000042", 7, &h, &l, &found), 0);
    assert_false(found);
    struct point *p2 = one_table_point("contoso-dev", chain, 1, st.entries, st.table_bytes);
    assert_int_equal(repo_capture_commit(c, p2, &e), 0);
    assert_string_equal(p2->name, "2025-11-21T090001Z");
    char **envs = NULL;
    assert_int_equal(repo_envs(f->r, &envs, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(envs[0], "contoso-dev");
    strv_free(envs, n);
    point_free(p);
    point_free(p2);
    buf_release(&line);
    free(base);
}

static void test_blobs(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    char id[65], id2[65];
    assert_int_equal(repo_blob_put(f->r, "hello", 5, id, &e), 0);
    assert_int_equal(repo_blob_put(f->r, "hello", 5, id2, &e), 0);
    assert_string_equal(id, id2);
    /* SHA-256 of the bytes; keyed in an encrypted repository, so nothing confirms the content */
    const char *sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    if (encrypted)
        assert_string_not_equal(id, sha);
    else
        assert_string_equal(id, sha);
    struct buf b = BUF_INIT;
    assert_int_equal(repo_blob_get(f->r, id, &b, &e), 0);
    assert_string_equal(b.data, "hello");
    buf_release(&b);
    /* flip a byte: the hash no longer matches -> -EIO, no bytes */
    char path[256];
    snprintf(path, sizeof path, "%s/objects/%.2s/%s", f->dir, id, id);
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    fputc('j', fp);
    fclose(fp);
    struct dverr e2 = {0};
    assert_int_equal(repo_blob_get(f->r, id, &b, &e2), -EIO);
    assert_int_equal(b.len, 0);
    assert_non_null(strstr(dverr_msg(&e2), "damaged"));
    buf_release(&b);
}


/* Commit a point of env with table "account" holding records [0,n) at version v (a fresh base),
 * updating the capture state; returns the point (caller frees). */
static struct point *commit_point(struct fx *f, const char *env, time_t t, const char *kind,
                                  int n, int v, time_t expires)
{
    struct dverr e = {0};
    struct repo_capture *c = NULL;
    int rc = repo_capture_begin(f->r, env, &c, &e);
    if (rc)
        fprintf(stderr, "begin: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
    int *idx = malloc((size_t)n * sizeof *idx), *ver = malloc((size_t)n * sizeof *ver);
    for (int i = 0; i < n; i++) {
        idx[i] = i;
        ver[i] = v;
    }
    struct segment_stats st;
    char *id = write_segment(f->r, 'b', idx, n, ver, &st, 0);
    struct buf line = BUF_INIT;
    char key[32];
    for (int i = 0; i < n; i++) {
        rec_key(key, sizeof key, i);
        rec_line(&line, i, v);
        assert_int_equal(repo_capture_state_put(c, "account", key, strlen(key),
                                                repo_line_hash(f->r, line.data, line.len), line.len,
                                                false), 0);
    }
    char *chain[1] = {id};
    struct point *p = one_table_point(env, chain, 1, st.entries, st.table_bytes);
    free(p->kind);
    p->kind = strdup(kind);
    p->taken_at = t;
    p->expires_at = expires;
    p->tables[0].delta = strdup(id);
    p->tables[0].changes_bytes = st.changes_bytes;
    assert_int_equal(repo_capture_commit(c, p, &e), 0);
    buf_release(&line);
    free(id);
    free(idx);
    free(ver);
    return p;
}

static void object_path(struct fx *f, const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/objects/%.2s/%s", f->dir, id, id);
}

static void flip_byte(const char *path, long off)
{
    FILE *fp = fopen(path, "r+");
    assert_non_null(fp);
    fseek(fp, off, SEEK_SET);
    int ch = fgetc(fp);
    fseek(fp, off, SEEK_SET);
    fputc(ch ^ 0x20, fp);
    fclose(fp);
}

/* A flipped byte inside a segment: check --read-data names the point and table, the reader gives
 * -EIO (never other bytes); a structural check still passes; a missing object is named. */
static void test_check_names_damage(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    struct point *p = commit_point(f, "contoso-dev", 1763715600, "system", 3000, 1, 0);
    struct check_report rep;
    assert_int_equal(repo_check(f->r, true, &rep, &e), 0);
    assert_int_equal(rep.points, 1);
    assert_int_equal(rep.n_damaged, 0);
    check_report_release(&rep);

    char path[256];
    object_path(f, p->tables[0].segments[0], path, sizeof path);
    flip_byte(path, 2000);
    assert_int_equal(repo_check(f->r, false, &rep, &e), 0); /* it exists */
    check_report_release(&rep);
    dverr_clear(&e);
    assert_int_equal(repo_check(f->r, true, &rep, &e), -EIO);
    assert_int_equal(rep.n_damaged, 1);
    assert_non_null(strstr(rep.damaged[0], "contoso-dev/2025-11-21T090000Z: account ("));
    assert_non_null(strstr(rep.damaged[0], "damaged"));
    check_report_release(&rep);

    struct table_reader *tr = NULL;
    assert_int_equal(table_reader_open(f->r, p, "account", &tr, &e), 0);
    char buf[65536];
    ssize_t n;
    dverr_clear(&e);
    while ((n = table_reader_read(tr, buf, sizeof buf, &e)) > 0)
        ;
    assert_int_equal(n, -EIO);
    assert_non_null(strstr(dverr_msg(&e), "damaged"));
    table_reader_free(tr);

    assert_int_equal(unlink(path), 0);
    dverr_clear(&e);
    assert_int_equal(repo_check(f->r, false, &rep, &e), -EIO);
    assert_int_equal(rep.n_damaged, 1);
    assert_non_null(strstr(rep.damaged[0], "missing"));
    check_report_release(&rep);
    point_free(p);
}

/* A catalog overwritten with garbage: open still works, points come from the manifests, capture
 * is refused with a message naming the fix, and rebuild restores points and capture state. */
static void test_catalog_damage_rebuild(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    point_free(commit_point(f, "contoso-dev", 1763715600, "system", 50, 1, 0));
    point_free(commit_point(f, "contoso-dev", 1763716500, "manual", 60, 2, 0));
    repo_free(f->r);
    f->r = NULL;
    char path[256];
    snprintf(path, sizeof path, "%s-wal", f->cat);
    unlink(path);
    snprintf(path, sizeof path, "%s-shm", f->cat);
    unlink(path);
    FILE *fp = fopen(f->cat, "w");
    assert_non_null(fp);
    for (int i = 0; i < 8192; i++)
        fputc(i * 7 & 0xff, fp);
    fclose(fp);
    open_repo(f);
    struct point_summary *ps = NULL;
    size_t n = 0;
    assert_int_equal(repo_points(f->r, "contoso-dev", &ps, &n, &e), 0);
    assert_int_equal(n, 2);
    assert_string_equal(ps[1].kind, "manual");
    point_summaries_free(ps, n);
    struct repo_capture *c = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), -EIO);
    assert_non_null(strstr(dverr_msg(&e), "--rebuild-catalog"));
    dverr_clear(&e);
    int rc = repo_rebuild_catalog(f->r, &e);
    if (rc)
        fprintf(stderr, "rebuild: %s\n", dverr_msg(&e));
    assert_int_equal(rc, 0);
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    uint64_t h, l;
    bool found;
    struct buf line = BUF_INIT;
    rec_line(&line, 59, 2);
    assert_int_equal(repo_capture_state_get(c, "account", "k000059", 7, &h, &l, &found), 0);
    assert_true(found);
    assert_true(h == repo_line_hash(f->r, line.data, line.len));
    assert_int_equal(l, line.len);
    repo_capture_abort(c);
    buf_release(&line);
}

/* A crash after the manifest was written but before the catalog committed: the next capture sees
 * the state does not match the latest point and rebuilds it from that point. */
static void test_crash_between_manifest_and_catalog(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    point_free(commit_point(f, "contoso-dev", 1763715600, "system", 20, 1, 0));
    /* what a dead capture left: a durable segment and manifest, no catalog commit */
    int idx[30], ver[30];
    for (int i = 0; i < 30; i++) {
        idx[i] = i;
        ver[i] = 5;
    }
    struct segment_stats st;
    char *id = write_segment(f->r, 'b', idx, 30, ver, &st, 0);
    char *chain[1] = {id};
    struct point *p = one_table_point("contoso-dev", chain, 1, st.entries, st.table_bytes);
    p->name = strdup("2025-11-21T100000Z");
    struct buf doc = BUF_INIT;
    assert_int_equal(manifest_render(p, &doc, &e), 0);
    assert_int_equal(repo_doc_put(f->r, "manifest", "points/contoso-dev/2025-11-21T100000Z.json",
                                  doc.data, doc.len, &e), 0);
    struct repo_capture *c = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    assert_string_equal(repo_capture_previous(c)->name, "2025-11-21T100000Z");
    uint64_t h, l;
    bool found;
    struct buf line = BUF_INIT;
    rec_line(&line, 25, 5);
    assert_int_equal(repo_capture_state_get(c, "account", "k000025", 7, &h, &l, &found), 0);
    assert_true(found);
    assert_true(h == repo_line_hash(f->r, line.data, line.len));
    rec_line(&line, 3, 5);
    assert_int_equal(repo_capture_state_get(c, "account", "k000003", 7, &h, &l, &found), 0);
    assert_true(h == repo_line_hash(f->r, line.data, line.len));
    repo_capture_abort(c);
    buf_release(&line);
    buf_release(&doc);
    point_free(p);
    free(id);
}

static int keep_all(void *ctx, const char *env, struct prune_point *pts, size_t n, time_t now)
{
    for (size_t i = 0; i < n; i++)
        pts[i].keep = true;
    return 0;
}

/* prune removes exactly the expired points and the objects only they used; dry-run changes
 * nothing; check passes after; forget refuses system points and removes manual ones. */
static void test_prune_forget(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    time_t t0 = 1763715600;
    struct point *a = commit_point(f, "contoso-dev", t0, "system", 40, 1, t0 + 100);
    struct point *b = commit_point(f, "contoso-dev", t0 + 50, "system", 40, 2, t0 + 1000);
    struct point *m = commit_point(f, "contoso-dev", t0 + 60, "manual", 40, 3, t0 + 1000);
    char blob[65];
    assert_int_equal(repo_blob_put(f->r, "orphan", 6, blob, &e), 0);
    char stale[256];
    snprintf(stale, sizeof stale, "%s/tmp/segment-999-1", f->dir); /* left by a killed capture */
    FILE *sf = fopen(stale, "w");
    assert_non_null(sf);
    fclose(sf);
    struct prune_report rep;
    assert_int_equal(repo_prune(f->r, t0 + 200, true, NULL, NULL, &rep, &e), 0);
    assert_int_equal(rep.points_removed, 1);
    assert_int_equal(rep.objects_removed, 3); /* a's segment, its tables object, the orphan */
    prune_report_release(&rep);
    char path[256];
    object_path(f, a->tables[0].segments[0], path, sizeof path);
    assert_int_equal(access(path, F_OK), 0); /* dry run kept it */
    assert_int_equal(access(stale, F_OK), 0);
    assert_int_equal(repo_prune(f->r, t0 + 200, false, keep_all, NULL, &rep, &e), 0);
    assert_int_equal(rep.points_removed, 0); /* decide overrides */
    assert_int_equal(access(stale, F_OK), -1);
    assert_int_equal(rep.objects_removed, 1);
    prune_report_release(&rep);
    assert_int_equal(repo_prune(f->r, t0 + 200, false, NULL, NULL, &rep, &e), 0);
    assert_int_equal(rep.points_removed, 1);
    assert_int_equal(rep.n_lines, 3); /* every point, and what happened to it */
    assert_string_equal(rep.lines[0].point, "contoso-dev/2025-11-21T090000Z");
    assert_true(rep.lines[0].removed);
    assert_false(rep.lines[1].removed);
    prune_report_release(&rep);
    assert_int_equal(access(path, F_OK), -1);
    object_path(f, b->tables[0].segments[0], path, sizeof path);
    assert_int_equal(access(path, F_OK), 0);
    struct check_report cr;
    assert_int_equal(repo_check(f->r, true, &cr, &e), 0);
    assert_int_equal(cr.points, 2);
    check_report_release(&cr);

    assert_int_equal(repo_forget(f->r, "contoso-dev", b->name, &e), -EPERM);
    dverr_clear(&e);
    assert_int_equal(repo_forget(f->r, "contoso-dev", m->name, &e), 0);
    assert_int_equal(repo_forget(f->r, "contoso-dev", m->name, &e), -ENOENT);
    struct point_summary *ps = NULL;
    size_t n = 0;
    assert_int_equal(repo_points(f->r, "contoso-dev", &ps, &n, &e), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ps[0].name, b->name);
    point_summaries_free(ps, n);
    point_free(a);
    point_free(b);
    point_free(m);
}

struct prune_thread {
    struct repo *r;
    atomic_int done;
    int rc;
    struct prune_report rep;
};

static void *prune_main(void *arg)
{
    struct prune_thread *pt = arg;
    struct dverr e = {0};
    pt->rc = repo_prune(pt->r, 1763715600 + 10000000, false, NULL, NULL, &pt->rep, &e);
    atomic_store(&pt->done, 1);
    return NULL;
}

/* A prune started while a capture runs waits for it, so the capture's new objects survive. */
static void test_prune_waits_for_capture(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    struct repo_capture *c = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    int idx[10], ver[10];
    for (int i = 0; i < 10; i++) {
        idx[i] = i;
        ver[i] = 1;
    }
    struct segment_stats st;
    char *id = write_segment(f->r, 'b', idx, 10, ver, &st, 0);
    struct prune_thread pt = {.r = f->r};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, prune_main, &pt), 0);
    usleep(300000); /* asserting that something does NOT happen needs a bounded wait */
    assert_int_equal(atomic_load(&pt.done), 0);
    char *chain[1] = {id};
    struct point *p = one_table_point("contoso-dev", chain, 1, st.entries, st.table_bytes);
    assert_int_equal(repo_capture_commit(c, p, &e), 0);
    pthread_join(th, NULL);
    assert_int_equal(pt.rc, 0);
    assert_int_equal(pt.rep.objects_removed, 0);
    prune_report_release(&pt.rep);
    char path[256];
    object_path(f, id, path, sizeof path);
    assert_int_equal(access(path, F_OK), 0);
    point_free(p);
    free(id);
}

struct seen {
    struct buf keys;
    int n;
    struct repo_capture *c;
};

static int see(void *ctx, const char *key, uint64_t hash, uint64_t len)
{
    struct seen *s = ctx;
    buf_printf(&s->keys, "%s=%llu/%llu;", key, (unsigned long long)hash, (unsigned long long)len);
    s->n++;
    /* deleting while iterating is allowed (a full read's deletions are found this way) */
    if (s->c && strcmp(key, "plain-key") == 0)
        return repo_capture_state_put(s->c, "account", key, strlen(key), 0, 0, true);
    return 0;
}

/* The capture state: GUID keys (stored packed) and other keys, including a 16-byte one, come back
 * exactly; pending puts overlay the committed state; iteration pages through many keys. */
static void test_state_iterate(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    struct repo_capture *c = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    const char *keys[] = {"0216ea39-aa40-4e8c-825c-892f2c82b146", "0216EA39-AA40-4E8C-825C-892F2C82B146",
                          "sixteen-byte-key", "plain-key", "ü-unicode"};
    for (int i = 0; i < 5; i++)
        assert_int_equal(repo_capture_state_put(c, "account", keys[i], strlen(keys[i]),
                                                (uint64_t)i + 1, (uint64_t)i * 10, false), 0);
    for (int i = 0; i < 10000; i++) { /* more than one page of iteration */
        char k[40];
        snprintf(k, sizeof k, "%08x-0000-4000-8000-%012d", i, i);
        assert_int_equal(repo_capture_state_put(c, "contact", k, strlen(k), (uint64_t)i, 7, false), 0);
    }
    uint64_t h, l;
    bool found;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(repo_capture_state_get(c, "account", keys[i], strlen(keys[i]), &h, &l,
                                                &found), 0);
        assert_true(found);
        assert_int_equal(h, i + 1);
    }
    struct point *p = one_table_point("contoso-dev", NULL, 0, 0, 4);
    assert_int_equal(repo_capture_commit(c, p, &e), 0);
    point_free(p);

    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    assert_int_equal(repo_capture_state_put(c, "account", "ü-unicode", strlen("ü-unicode"), 99, 1,
                                            false), 0);
    struct seen s = {BUF_INIT, 0, c};
    assert_int_equal(repo_capture_state_iterate(c, "account", see, &s), 0);
    assert_int_equal(s.n, 5);
    assert_non_null(strstr(s.keys.data, "0216ea39-aa40-4e8c-825c-892f2c82b146=1/0;"));
    assert_non_null(strstr(s.keys.data, "0216EA39-AA40-4E8C-825C-892F2C82B146=2/10;"));
    assert_non_null(strstr(s.keys.data, "sixteen-byte-key=3/20;"));
    assert_non_null(strstr(s.keys.data, "ü-unicode=99/1;"));
    assert_int_equal(repo_capture_state_get(c, "account", "plain-key", 9, &h, &l, &found), 0);
    assert_false(found);
    struct seen s2 = {BUF_INIT, 0, NULL};
    assert_int_equal(repo_capture_state_iterate(c, "contact", see, &s2), 0);
    assert_int_equal(s2.n, 10000);
    assert_int_equal(repo_capture_state_iterate(c, "nosuchtable", see, &s2), 0);
    assert_int_equal(s2.n, 10000);
    repo_capture_abort(c); /* nothing kept */
    assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
    assert_int_equal(repo_capture_state_get(c, "account", "plain-key", 9, &h, &l, &found), 0);
    assert_true(found);
    repo_capture_abort(c);
    buf_release(&s.keys);
    buf_release(&s2.keys);
}

/* check --read-data merges every table and compares it with the manifest's counts. */
static void test_check_sizes(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    struct point *p = commit_point(f, "contoso-dev", 1763715600, "system", 30, 1, 0);
    struct point *bad = point_dup(p);
    assert_non_null(bad);
    free(bad->tables_object); /* rendered inline (format 1), with the wrong size in it */
    free(bad->files_object);
    bad->tables_object = bad->files_object = NULL;
    free(bad->name);
    bad->name = strdup("2025-11-21T091500Z");
    bad->tables[0].bytes += 1;
    struct buf doc = BUF_INIT;
    assert_int_equal(manifest_render(bad, &doc, &e), 0);
    assert_int_equal(repo_doc_put(f->r, "manifest", "points/contoso-dev/2025-11-21T091500Z.json",
                                  doc.data, doc.len, &e), 0);
    struct check_report rep;
    assert_int_equal(repo_check(f->r, false, &rep, &e), 0);
    check_report_release(&rep);
    assert_int_equal(repo_check(f->r, true, &rep, &e), -EIO);
    assert_int_equal(rep.n_damaged, 1);
    assert_non_null(strstr(rep.damaged[0], "contoso-dev/2025-11-21T091500Z: account"));
    assert_non_null(strstr(rep.damaged[0], "the manifest says"));
    check_report_release(&rep);
    buf_release(&doc);
    point_free(bad);
    point_free(p);
}

struct reader_thread {
    struct repo *r;
    const struct point *p;
    const struct buf *want;
    int bad;
};

static void *reader_main(void *arg)
{
    struct reader_thread *rt = arg;
    for (int round = 0; round < 5; round++) {
        struct table_reader *tr = NULL;
        struct dverr e = {0};
        struct buf got = BUF_INIT;
        if (table_reader_open(rt->r, rt->p, "account", &tr, &e)) {
            rt->bad++;
            continue;
        }
        char tmp[8192];
        ssize_t n;
        while ((n = table_reader_read(tr, tmp, sizeof tmp, &e)) > 0)
            buf_add(&got, tmp, (size_t)n);
        if (n < 0 || got.len != rt->want->len || memcmp(got.data, rt->want->data, got.len) != 0)
            rt->bad++;
        struct point_summary *ps = NULL;
        size_t np = 0;
        if (repo_points(rt->r, "contoso-dev", &ps, &np, &e) || np < 1)
            rt->bad++;
        point_summaries_free(ps, np);
        table_reader_free(tr);
        buf_release(&got);
    }
    return NULL;
}

/* Readers on several threads (one repo) while captures commit: every read is exact. */
static void test_parallel_readers(void **state)
{
    struct fx *f = *state;
    struct point *p = commit_point(f, "contoso-dev", 1763715600, "system", 3000, 1, 0);
    int ver[3000];
    for (int i = 0; i < 3000; i++)
        ver[i] = 1;
    struct buf want = BUF_INIT;
    expect_table(&want, 3000, ver);
    struct reader_thread rt[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        rt[i] = (struct reader_thread){f->r, p, &want, 0};
        assert_int_equal(pthread_create(&th[i], NULL, reader_main, &rt[i]), 0);
    }
    for (int k = 0; k < 3; k++)
        point_free(commit_point(f, "contoso-dev", 1763716600 + k * 100, "system", 100, k + 2, 0));
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(rt[i].bad, 0);
    }
    buf_release(&want);
    point_free(p);
}

/* A chain longer than REPO_MAX_CHAIN is compacted by the commit: the manifest names one base with
 * the same table bytes. */
static void test_commit_compacts(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    enum { N = 200 };
    int ver[N], idx[N];
    for (int i = 0; i < N; i++) {
        ver[i] = 1;
        idx[i] = i;
    }
    struct segment_stats st;
    char *chain[REPO_MAX_CHAIN + 2];
    size_t n = 0;
    chain[n++] = write_segment(f->r, 'b', idx, N, ver, &st, 0);
    struct point *p = NULL;
    for (int k = 1; k <= REPO_MAX_CHAIN; k++) {
        int some[20]; /* deltas that together outweigh the base: a new base, not a merge */
        for (int i = 0; i < 20; i++)
            ver[some[i] = (k * 20 + i) % N]++;
        chain[n++] = write_segment(f->r, 'u', some, 20, ver, NULL, 0);
        struct buf want = BUF_INIT;
        expect_table(&want, N, ver);
        struct repo_capture *c = NULL;
        assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
        point_free(p);
        p = one_table_point("contoso-dev", chain, n, N, want.len);
        p->taken_at = 1763715600 + k;
        assert_int_equal(repo_capture_commit(c, p, &e), 0);
        buf_release(&want);
    }
    assert_int_equal(n, REPO_MAX_CHAIN + 1);
    assert_int_equal(p->tables[0].n_segments, 1); /* compacted */
    struct point *q = NULL;
    assert_int_equal(repo_point_load(f->r, "contoso-dev", p->name, &q, &e), 0);
    assert_int_equal(q->tables[0].n_segments, 1);
    struct buf want = BUF_INIT, got = BUF_INIT;
    expect_table(&want, N, ver);
    struct table_reader *tr = NULL;
    assert_int_equal(table_reader_open(f->r, q, "account", &tr, &e), 0);
    read_all(tr, &got, 1000);
    table_reader_free(tr);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    struct check_report rep;
    assert_int_equal(repo_check(f->r, true, &rep, &e), 0);
    check_report_release(&rep);
    buf_release(&want);
    buf_release(&got);
    point_free(q);
    point_free(p);
    for (size_t i = 0; i < n; i++)
        free(chain[i]);
}

/* A long chain of deltas small beside a large base: the commit merges the deltas into one (the
 * chain is then the base and that segment; the base is not rewritten), and the table reads back
 * exactly, deletes included. */
static void test_commit_merges_deltas(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    enum { N = 20000 };
    int *ver = calloc(N, sizeof *ver), *idx = calloc(N, sizeof *idx);
    for (int i = 0; i < N; i++) {
        ver[i] = 1;
        idx[i] = i;
    }
    struct segment_stats st;
    char *chain[REPO_MAX_CHAIN + 2];
    size_t n = 0;
    chain[n++] = write_segment(f->r, 'b', idx, N, ver, &st, 0);
    struct point *p = NULL;
    int gone = 7; /* deleted in the first delta, its record left out of the expected table */
    for (int k = 1; k <= REPO_MAX_CHAIN; k++) {
        int one = (k * 997) % N;
        if (k == 1) {
            one = gone;
            ver[one] = -1;
            chain[n++] = write_segment(f->r, 'x', &one, 1, ver, NULL, 0);
        } else {
            ver[one]++;
            chain[n++] = write_segment(f->r, 'u', &one, 1, ver, NULL, 0);
        }
        struct repo_capture *c = NULL;
        assert_int_equal(repo_capture_begin(f->r, "contoso-dev", &c, &e), 0);
        point_free(p);
        struct buf want = BUF_INIT;
        expect_table(&want, N, ver);
        p = one_table_point("contoso-dev", chain, n, N - 1, want.len);
        p->tables[0].updated = 1;
        p->taken_at = 1763715600 + k;
        assert_int_equal(repo_capture_commit(c, p, &e), 0);
        buf_release(&want);
    }
    assert_int_equal(p->tables[0].n_segments, 2); /* the base and the merged deltas */
    assert_string_equal(p->tables[0].segments[0], chain[0]);
    struct point *q = NULL;
    assert_int_equal(repo_point_load(f->r, "contoso-dev", p->name, &q, &e), 0);
    struct buf want = BUF_INIT, got = BUF_INIT;
    expect_table(&want, N, ver);
    struct table_reader *tr = NULL;
    assert_int_equal(table_reader_open(f->r, q, "account", &tr, &e), 0);
    read_all(tr, &got, 4096);
    table_reader_free(tr);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
    buf_release(&want);
    buf_release(&got);
    point_free(q);
    point_free(p);
    for (size_t i = 0; i < n; i++)
        free(chain[i]);
    free(ver);
    free(idx);
}

/* ---- file lists carried through captures (repo_files.c) ---- */

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_point_file(const void *a, const void *b)
{
    return filelist_cmp(a, b);
}

/* A list of three tables (one with most of the files), sorted; f->size holds a version. */
static struct point_file *carry_files(size_t *n, int changed)
{
    const char *tables[] = {"account", "annotation", "contact"};
    size_t counts[] = {400, 6000, 300}, k = 0;
    struct point_file *v = calloc(7000, sizeof *v);
    for (int t = 0; t < 3; t++)
        for (size_t i = 0; i < counts[t]; i++) {
            if (t == 1 && changed && (i == 2500 || i == 4000))
                continue; /* deleted */
            char rid[40], name[40], blob[65];
            snprintf(rid, sizeof rid, "%08zx-%d", (i * 2654435761u) % 0xffffffffu, t);
            snprintf(name, sizeof name, "f%zu.bin", i);
            int ver = t == 1 && changed && i == 1000 ? 2 : 1;
            char seed[64];
            snprintf(seed, sizeof seed, "%s/%d", name, ver);
            sha256_hex(seed, strlen(seed), blob);
            v[k++] = (struct point_file){strdup(tables[t]), strdup(rid),
                                         strdup("documentbody"), strdup(name), strdup(blob),
                                         (uint64_t)ver};
        }
    if (changed) { /* a new note */
        char blob[65];
        sha256_hex("new", 3, blob);
        v[k++] = (struct point_file){strdup("annotation"), strdup("7fffffff-new"),
                                     strdup("documentbody"), strdup("new.bin"), strdup(blob), 3};
    }
    qsort(v, k, sizeof *v, cmp_point_file);
    *n = k;
    return v;
}

/* Commit a point whose file list is streamed: each table carried from the previous point (less
 * touched, plus added), or, when carry is false, every file of v added. */
static struct point *commit_streamed(struct fx *f, time_t t, const struct point_file *v, size_t n,
                                     bool carry, char *const *touched, size_t n_touched,
                                     const struct point_file *added, size_t n_added)
{
    struct dverr e = {0};
    struct repo_capture *c = NULL;
    assert_int_equal(repo_capture_begin(f->r, "contoso-files", &c, &e), 0);
    assert_int_equal(repo_capture_files_begin(c, 0, &e), 0);
    const char *tables[] = {"account", "annotation", "contact"};
    for (int k = 0; k < 3; k++) {
        if (!carry) {
            for (size_t i = 0; i < n; i++)
                if (strcmp(v[i].table, tables[k]) == 0)
                    assert_int_equal(repo_capture_files_add(c, &v[i], &e), 0);
            continue;
        }
        bool notes = strcmp(tables[k], "annotation") == 0;
        int rc = repo_capture_files_carry(c, tables[k], notes ? added : NULL, notes ? n_added : 0,
                                          notes ? touched : NULL, notes ? n_touched : 0, &e);
        if (rc)
            fprintf(stderr, "carry: %s\n", dverr_msg(&e));
        assert_int_equal(rc, 0);
    }
    char *chain[1] = {NULL};
    struct point *p = one_table_point("contoso-files", chain, 0, 0, 4);
    p->taken_at = t;
    size_t total = 0;
    assert_int_equal(repo_capture_files_finish(c, p, &total, &e), 0);
    assert_int_equal(repo_capture_commit(c, p, &e), 0);
    return p;
}

/* The previous point's files, carried table by table (unchanged chunks by id, unread), give
 * exactly the list written whole: an idle pass names its parent's index; a pass where notes
 * changed, went and came gives the index of that list written from scratch, and loads back to
 * it. */
static void test_files_carried(void **state)
{
    struct fx *f = *state;
    struct dverr e = {0};
    size_t n0, n1;
    struct point_file *v0 = carry_files(&n0, 0), *v1 = carry_files(&n1, 1);
    struct point *p1 = commit_streamed(f, 1763715600, v0, n0, false, NULL, 0, NULL, 0);
    assert_true(p1->n_files_chunks > 8);
    struct point *p2 = commit_streamed(f, 1763715700, NULL, 0, true, NULL, 0, NULL, 0);
    assert_string_equal(p2->files_object, p1->files_object);
    /* touched: the changed, deleted and new notes' records; added: their files now */
    char *touched[4];
    size_t n_touched = 0;
    struct point_file added[2];
    size_t n_added = 0;
    for (size_t i = 0; i < n0; i++) {
        const char *name = v0[i].file_name;
        if (strcmp(v0[i].table, "annotation") == 0 &&
            (!strcmp(name, "f1000.bin") || !strcmp(name, "f2500.bin") || !strcmp(name, "f4000.bin")))
            touched[n_touched++] = v0[i].record_id;
    }
    char new_id[] = "7fffffff-new";
    touched[n_touched++] = new_id;
    qsort(touched, n_touched, sizeof *touched, cmp_strp);
    for (size_t i = 0; i < n1; i++)
        if (strcmp(v1[i].table, "annotation") == 0 &&
            (!strcmp(v1[i].file_name, "f1000.bin") || !strcmp(v1[i].file_name, "new.bin")))
            added[n_added++] = v1[i];
    assert_int_equal(n_added, 2);
    qsort(added, n_added, sizeof *added, cmp_point_file);
    struct point *p3 = commit_streamed(f, 1763715800, NULL, 0, true, touched, n_touched, added,
                                       n_added);
    /* the same list written whole */
    char env[] = "contoso-files";
    struct point whole = {.env = env, .files = v1, .n_files = n1};
    char tid[65], fid[65], **chunks = NULL;
    size_t n_chunks = 0;
    assert_int_equal(repo_point_shared_put(f->r, &whole, NULL, tid, fid, &chunks, &n_chunks, &e),
                     0);
    assert_string_equal(p3->files_object, fid);
    size_t kept = 0;
    for (size_t k = 0; k < p3->n_files_chunks; k++)
        for (size_t j = 0; j < p1->n_files_chunks; j++)
            kept += strcmp(p3->files_chunks[k], p1->files_chunks[j]) == 0;
    assert_true(kept + 8 >= p3->n_files_chunks && kept > 0);
    struct point *q = NULL;
    assert_int_equal(repo_point_load(f->r, "contoso-files", p3->name, &q, &e), 0);
    assert_int_equal(q->n_files, n1);
    for (size_t i = 0; i < n1; i++) {
        assert_string_equal(q->files[i].record_id, v1[i].record_id);
        assert_string_equal(q->files[i].blob, v1[i].blob);
    }
    strv_free(chunks, n_chunks);
    point_free(q);
    point_free(p1);
    point_free(p2);
    point_free(p3);
    for (size_t i = 0; i < n0; i++)
        free(v0[i].table), free(v0[i].record_id), free(v0[i].column), free(v0[i].file_name),
            free(v0[i].blob);
    for (size_t i = 0; i < n1; i++)
        free(v1[i].table), free(v1[i].record_id), free(v1[i].column), free(v1[i].file_name),
            free(v1[i].blob);
    free(v0);
    free(v1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_segment_chain_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_spill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_changes_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capture_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_names_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(test_catalog_damage_rebuild, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_between_manifest_and_catalog, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_forget, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prune_waits_for_capture, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_iterate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_check_sizes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parallel_readers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_compacts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_merges_deltas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_files_carried, setup, teardown),
    };
    int failed = cmocka_run_group_tests_name("unencrypted", tests, NULL, NULL);
    encrypted = true;
    return failed + cmocka_run_group_tests_name("encrypted", tests, NULL, NULL);
}
