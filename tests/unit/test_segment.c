/* test_segment: the segment format and merge at the module level: newest-wins merges across a
 * chain (delete then re-create), changes-line sizes for hostile keys, and damage: single flipped
 * bytes anywhere (trailer, index, frame headers, random frame bytes) and truncations always give
 * -EIO or the exact original entries, never a crash or other bytes; segment_verify catches every
 * flip by hash; attachments kept once (a blob reference in the line, the exact line back from the
 * merge); the external sort (many runs, cascades between levels, duplicates, input that starts in
 * key order and stops being so) against a model, and the ordered writer. Run under
 * SANITIZE=address,undefined too. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/objstore/objstore.h"
#include "backend/repo/segment.h"

static char dir[64], tmpdir[96];
static struct objstore *store;

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/test_segment.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    struct dverr e = {0};
    return objstore_dir_open(dir, &store, &e);
}

static int teardown(void **state)
{
    objstore_free(store);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

struct ent {
    char op;
    const char *key;
    const char *line;
};

static bool attachments; /* write_seg's writers keep attachments once */

static void write_seg(const struct ent *v, size_t n, char id[65])
{
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
    segment_writer_set_attachments(w, attachments);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(segment_writer_add(w, (enum segment_op)v[i].op, v[i].key,
                                            strlen(v[i].key), v[i].line,
                                            v[i].line ? strlen(v[i].line) : 0, &e), 0);
    assert_int_equal(segment_writer_finish(w, id, &e), 0);
}

/* Merge ids and render "key=line;" for each winner. */
static int merged(char **ids, size_t n, bool keep_deletes, struct buf *out)
{
    struct segment_merge *m = NULL;
    struct dverr e = {0};
    int rc = segment_merge_open(store, NULL, ids, n, keep_deletes, &m, &e);
    if (rc)
        return rc;
    struct segment_entry en;
    while ((rc = segment_merge_next(m, &en, &e)) == 1) {
        buf_addch(out, en.op);
        buf_add(out, en.key, en.key_len);
        buf_addch(out, '=');
        buf_add(out, en.line, en.line_len);
        buf_addch(out, ';');
    }
    segment_merge_free(m);
    return rc;
}

static void test_merge_chain(void **state)
{
    char a[65], b[65], c[65];
    const struct ent base[] = {{'b', "k1", "v1"}, {'b', "k2", "v1"}, {'b', "k3", "v1"},
                               {'b', "k10", "v1"}};
    const struct ent d1[] = {{'d', "k2", NULL}, {'u', "k3", "v2"}, {'c', "k4", "v2"}};
    const struct ent d2[] = {{'c', "k2", "v3"}, {'d', "k10", NULL}, {'u', "k3", "v3"}};
    write_seg(base, 4, a);
    write_seg(d1, 3, b);
    write_seg(d2, 3, c);
    char *chain[3] = {a, b, c};
    struct buf out = BUF_INIT;
    assert_int_equal(merged(chain, 3, false, &out), 0);
    assert_string_equal(out.data, "bk1=v1;ck2=v3;uk3=v3;ck4=v2;");
    buf_reset(&out);
    assert_int_equal(merged(chain, 2, false, &out), 0);
    assert_string_equal(out.data, "bk1=v1;bk10=v1;uk3=v2;ck4=v2;");
    buf_reset(&out);
    assert_int_equal(merged(chain + 1, 1, true, &out), 0);
    assert_string_equal(out.data, "dk2=;uk3=v2;ck4=v2;");
    buf_reset(&out);
    assert_int_equal(merged(NULL, 0, false, &out), 0);
    assert_int_equal(out.len, 0);
    buf_release(&out);
    /* bad input to the writer */
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_BASE, "", 0, "x", 1, &e), -EINVAL);
    assert_int_equal(segment_writer_add(w, (enum segment_op)'z', "k", 1, "x", 1, &e), -EINVAL);
    assert_int_equal(segment_writer_add(w, SEG_UPDATE, "k", 1, "", 0, &e), -EINVAL);
    char id[65];
    assert_int_equal(segment_writer_finish(w, id, &e), 0);
    assert_string_equal(id, ""); /* nothing added: nothing written */
}

static void test_changes_line_size(void **state)
{
    const char *keys[] = {"plain", "q\"uote", "back\\slash", "ctl\x01\x1f", "nl\n\t\r\b\f", "é∕"};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const char ops[] = {'b', 'c', 'u', 'd'};
        for (int k = 0; k < 4; k++) {
            struct buf b = BUF_INIT;
            const char *line = ops[k] == 'd' ? "" : "{\"a\":1}";
            assert_int_equal(changes_line_render(&b, ops[k], keys[i], strlen(keys[i]), line,
                                                 strlen(line)), 0);
            assert_int_equal(changes_line_size(ops[k], keys[i], strlen(keys[i]), strlen(line)),
                             b.len);
            buf_release(&b);
        }
    }
}

static void test_damage(void **state)
{
    /* ~1.3 MiB of entries: two frames */
    enum { N = 2600 };
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    struct buf line = BUF_INIT, want = BUF_INIT, got = BUF_INIT, orig = BUF_INIT, bad = BUF_INIT;
    assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
    for (int i = 0; i < N; i++) {
        char key[32];
        snprintf(key, sizeof key, "key%05d", i);
        buf_reset(&line);
        buf_printf(&line, "{\"id\":\"%s\",\"n\":%d,\"pad\":\"", key, i * 7919);
        for (int k = 0; k < 480; k++)
            buf_addch(&line, (char)('a' + (i * 31 + k * 17) % 26));
        buf_addstr(&line, "\"}");
        assert_int_equal(segment_writer_add(w, SEG_BASE, key, strlen(key), line.data, line.len, &e), 0);
    }
    char id[65], name[80];
    assert_int_equal(segment_writer_finish(w, id, &e), 0);
    segment_object_name(id, name);
    char *chain[1] = {id};
    assert_int_equal(merged(chain, 1, false, &want), 0);
    assert_int_equal(segment_verify(store, NULL, id, NULL, &e), 0);
    assert_int_equal(store->ops->get(store->impl, name, 0, OBJSTORE_TO_END, &orig, &e), 0);
    size_t size = orig.len;

    /* positions: every byte of the last 2 KiB (index, trailer), the first 64 bytes, and a spread
     * through the frames */
    size_t pos[4096];
    size_t np = 0;
    for (size_t i = 0; i < 64; i++)
        pos[np++] = i;
    for (size_t i = size > 2048 ? size - 2048 : 0; i < size; i++)
        pos[np++] = i;
    for (size_t i = 64; i + 2048 < size && np < sizeof pos / sizeof *pos; i += size / 700 + 1)
        pos[np++] = i;
    int eio = 0, same = 0;
    for (size_t t = 0; t < np; t++) {
        buf_reset(&bad);
        buf_add(&bad, orig.data, orig.len);
        bad.data[pos[t]] ^= (char)(1 << (t % 8));
        assert_int_equal(store->ops->put(store->impl, name, bad.data, bad.len, &e), 0);
        buf_reset(&got);
        int rc = merged(chain, 1, false, &got);
        if (rc == 0) {
            assert_int_equal(got.len, want.len); /* never other bytes */
            assert_memory_equal(got.data, want.data, want.len);
            same++;
        } else {
            assert_int_equal(rc, -EIO);
            eio++;
        }
        struct dverr ve = {0};
        assert_int_equal(segment_verify(store, NULL, id, NULL, &ve), -EIO);
    }
    /* truncations */
    for (size_t cut = 0; cut < size; cut += size / 50 + 1) {
        assert_int_equal(store->ops->put(store->impl, name, orig.data, cut, &e), 0);
        buf_reset(&got);
        assert_int_equal(merged(chain, 1, false, &got), -EIO);
    }
    assert_true(eio > (int)np / 2);
    print_message("damage: %zu flips, %d gave -EIO, %d harmless (same bytes)\n", np, eio, same);
    buf_release(&line);
    buf_release(&want);
    buf_release(&got);
    buf_release(&orig);
    buf_release(&bad);
}

static void b64(const unsigned char *in, size_t n, struct buf *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        buf_addch(out, t[v >> 18]);
        buf_addch(out, t[(v >> 12) & 63]);
        buf_addch(out, i + 1 < n ? t[(v >> 6) & 63] : '=');
        buf_addch(out, i + 2 < n ? t[v & 63] : '=');
    }
}

static uint64_t object_size(const char *id)
{
    char name[80];
    uint64_t size = 0;
    struct dverr e = {0};
    segment_object_name(id, name);
    assert_int_equal(store->ops->stat(store->impl, name, &size, &e), 0);
    return size;
}

/* Attachments are kept once: a line with a large canonical base64 documentbody is stored as a
 * reference to the blob of its bytes (the segment shrinks by the base64, the blob exists under the
 * bytes' SHA-256) and the merge gives the exact line back, for every padding length; base64 that
 * would not come back byte for byte (whitespace, base64url, stray bits) stays inline; a missing
 * blob is named; a line may not start with the reference mark. */
static void test_attachment_once(void **state)
{
    (void)state;
    for (size_t pad = 0; pad < 3; pad++) {
        size_t n = 30000 + pad;
        unsigned char *bytes = malloc(n);
        uint64_t x = 0x9e3779b97f4a7c15ull + pad;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            bytes[i] = (unsigned char)x;
        }
        struct buf line = BUF_INIT, enc = BUF_INIT, odd = BUF_INIT, out = BUF_INIT, want = BUF_INIT;
        b64(bytes, n, &enc);
        buf_printf(&line, "{\"annotationid\":\"a1\",\"documentbody\":\"%s\",\"filename\":\"x.bin\"}",
                   enc.data);
        /* the same bytes with a line break in the base64 (valid for decoders, not canonical) */
        buf_printf(&odd, "{\"annotationid\":\"a2\",\"documentbody\":\"%.100s\\n%s\"}", enc.data,
                   enc.data + 100);
        const struct ent v[] = {{'c', "a1", line.data}, {'c', "a2", odd.data}, {'c', "a3", "{}"}};
        char id[65], blob[65], plain[65];
        sha256_hex(bytes, n, blob);
        attachments = false; /* off (the default): inline, no blob */
        write_seg(v, 1, plain);
        uint64_t size;
        char name[80];
        struct dverr ne = {0};
        segment_object_name(blob, name);
        assert_int_equal(store->ops->stat(store->impl, name, &size, &ne), -ENOENT);
        attachments = true;
        write_seg(v, 3, id);
        attachments = false;
        assert_true(object_size(plain) > enc.len / 2);
        char only[65];
        attachments = true;
        write_seg(v, 1, only);
        attachments = false;
        assert_true(object_size(only) < 1000); /* the reference, not the bytes */
        assert_int_equal(object_size(blob), n); /* the blob holds the bytes */
        /* stored once: the segment is about the size of the inline (incompressible) copy */
        uint64_t seg = object_size(id);
        assert_true(seg < enc.len + enc.len / 4);
        char *chain[1] = {id};
        assert_int_equal(merged(chain, 1, false, &out), 0);
        buf_printf(&want, "ca1=%s;ca2=%s;ca3={};", line.data, odd.data);
        assert_int_equal(out.len, want.len);
        assert_memory_equal(out.data, want.data, want.len);
        struct dverr e = {0};
        assert_int_equal(segment_verify(store, NULL, id, NULL, &e), 0);
        /* the blob gone: named, not wrong bytes */
        assert_int_equal(store->ops->del(store->impl, name, &e), 0);
        buf_reset(&out);
        struct segment_merge *m = NULL;
        struct segment_entry en;
        assert_int_equal(segment_merge_open(store, NULL, chain, 1, false, &m, &e), 0);
        assert_int_equal(segment_merge_next(m, &en, &e), -ENOENT);
        assert_non_null(strstr(dverr_msg(&e), "missing"));
        segment_merge_free(m);
        free(bytes);
        buf_release(&line);
        buf_release(&enc);
        buf_release(&odd);
        buf_release(&out);
        buf_release(&want);
    }
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_CREATE, "k", 1, "\x01rest", 5, &e), -EINVAL);
    segment_writer_abort(w);
}

/* ---- the sorter ---- */

struct model_ent {
    char key[24];
    char op;
    uint64_t version;
};

static int model_cmp(const void *a, const void *b)
{
    const struct model_ent *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->version < y->version ? -1 : x->version > y->version);
}

struct drain_check {
    const struct model_ent *want;
    size_t n, i;
    bool bad;
};

static int check_entry(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    (void)err;
    struct drain_check *c = ctx;
    char line[64];
    if (c->i >= c->n) {
        c->bad = true;
        return -EIO;
    }
    const struct model_ent *w = &c->want[c->i++];
    snprintf(line, sizeof line, "{\"v\":%llu,\"k\":\"%s\"}", (unsigned long long)w->version,
             w->key);
    if (e->key_len != strlen(w->key) || memcmp(e->key, w->key, e->key_len) != 0 ||
        e->op != w->op || e->line_len != strlen(line) || memcmp(e->line, line, e->line_len) != 0)
        c->bad = true;
    return 0;
}

/* n entries over `keys` distinct keys, in key order for the first `ordered_prefix` of them, then
 * shuffled; sorted with a small budget, drained, and compared with the model (last add wins). */
static void sort_case(size_t n, size_t keys, size_t ordered_prefix, size_t budget)
{
    struct segment_sorter *s = NULL;
    struct dverr e = {0};
    struct model_ent *all = calloc(n, sizeof *all);
    assert_non_null(all);
    uint64_t rng = 88172645463325252ull;
    for (size_t i = 0; i < n; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        size_t k = i < ordered_prefix ? i : (size_t)(rng % keys);
        snprintf(all[i].key, sizeof all[i].key, "key-%09zu", k);
        all[i].op = "cud"[rng % 3];
        all[i].version = i;
    }
    assert_int_equal(segment_sorter_new(tmpdir, budget, &s, &e), 0);
    for (size_t i = 0; i < n; i++) {
        char line[64];
        snprintf(line, sizeof line, "{\"v\":%llu,\"k\":\"%s\"}",
                 (unsigned long long)all[i].version, all[i].key);
        assert_int_equal(segment_sorter_add(s, all[i].op, all[i].key, strlen(all[i].key), line,
                                            strlen(line), &e), 0);
    }
    assert_int_equal(segment_sorter_count(s), n);
    /* the model: sort by (key, version), keep the last of each key */
    qsort(all, n, sizeof *all, model_cmp);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        if (i + 1 == n || strcmp(all[i].key, all[i + 1].key) != 0)
            all[o++] = all[i];
    struct drain_check c = {all, o, 0, false};
    assert_int_equal(segment_sorter_drain(s, check_entry, &c, &e), 0);
    assert_false(c.bad);
    assert_int_equal(c.i, o);
    segment_sorter_free(s);
    free(all);
}

static void test_sorter(void **state)
{
    (void)state;
    sort_case(0, 1, 0, 4096);                  /* nothing */
    sort_case(1000, 1000, 1000, 1 << 20);      /* in memory, in order */
    sort_case(5000, 800, 0, 1 << 20);          /* in memory, duplicates */
    sort_case(100000, 100000, 100000, 131072); /* ordered: about 70 runs, never merged */
    sort_case(100000, 40000, 0, 131072);       /* about 70 runs: cascades into level 1 */
    sort_case(100000, 50000, 60000, 131072);   /* ordered runs, then out of order: merged */
    sort_case(30000, 50, 0, 65536);            /* few keys, many versions across runs */
    sort_case(3000, 3000, 0, 4096);            /* a run per entry or two: three levels */
}

static void test_ordered_writer(void **state)
{
    (void)state;
    struct dverr e = {0};
    char ids[2][65];
    for (int ordered = 0; ordered < 2; ordered++) {
        struct segment_writer *w = NULL;
        assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
        if (ordered)
            segment_writer_set_ordered(w);
        for (int i = 0; i < 20000; i++) {
            char k[32], line[64];
            int j = ordered ? i : (i * 7919) % 20000;
            snprintf(k, sizeof k, "k%06d", j);
            snprintf(line, sizeof line, "{\"k\":\"%s\",\"pad\":%d}", k, j * 3);
            assert_int_equal(segment_writer_add(w, SEG_CREATE, k, strlen(k), line, strlen(line),
                                                &e), 0);
        }
        assert_int_equal(segment_writer_finish(w, ids[ordered], &e), 0);
    }
    /* the same entries give the same object either way */
    assert_string_equal(ids[0], ids[1]);
    struct segment_writer *w = NULL;
    assert_int_equal(segment_writer_new_in(store, NULL, tmpdir, &w, &e), 0);
    segment_writer_set_ordered(w);
    assert_int_equal(segment_writer_add(w, SEG_CREATE, "b", 1, "{}", 2, &e), 0);
    assert_int_equal(segment_writer_add(w, SEG_CREATE, "a", 1, "{}", 2, &e), -EINVAL);
    assert_int_equal(segment_writer_add(w, SEG_CREATE, "b", 1, "{}", 2, &e), -EINVAL);
    segment_writer_abort(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_merge_chain),
        cmocka_unit_test(test_changes_line_size),
        cmocka_unit_test(test_damage),
        cmocka_unit_test(test_attachment_once),
        cmocka_unit_test(test_sorter),
        cmocka_unit_test(test_ordered_writer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
