/* test_crypt: the repository's encryption (issue 16) at the module level.
 * - crypt: keyed ids (equal bytes, equal ids; another key or SHA-256 give others); sealed objects
 *   round trip at every size around the 1 MiB part; the stored size gives the plaintext size back
 *   and no other stored size passes; a flipped byte anywhere, a truncation, an extension, two
 *   parts swapped, another identity or another key never open (and leave no plaintext); nonces:
 *   the same plaintext sealed twice differs (a new salt, so a new key), parts differ by number
 *   and by the last flag, 10,000 salts are distinct.
 * - segments sealed frame by frame: merge and verify read them back; a flipped byte anywhere, a
 *   truncation, bytes of another segment spliced into a frame, one segment stored
 *   under another's name all give -EIO; an unencrypted reader refuses a sealed segment and an
 *   encrypted one a plain segment.
 * - key objects: the right passphrase opens, a wrong one gives -EACCES, any field changed gives
 *   -EACCES (bound as associated data), another repository's id -EIO, malformed JSON and costs out
 *   of range -EIO; keys_add/unlock/list/remove on a store: two keys open the same master key, one
 *   removed leaves the other working.
 * Run under SANITIZE=address,undefined too. */
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
#include "backend/repo/crypt.h"
#include "backend/repo/keys.h"
#include "backend/repo/segment.h"

static char dir[64], tmpdir[96];
static struct objstore *store;
static struct crypt *cr;

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/test_crypt.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", dir);
    struct dverr e = {0};
    setenv("DVSNAP_TEST_KDF_LOG2N", "10", 1);
    if (crypt_generate(&cr))
        return -1;
    return objstore_dir_open(dir, &store, &e);
}

static int teardown(void **state)
{
    objstore_free(store);
    crypt_free(cr);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (unsigned char)(seed >> 16);
    }
}

/* ---------- names ---------- */

static void test_ids(void **state)
{
    char a[65], b[65], plain[65], other[65];
    struct crypt *c2 = NULL;
    assert_int_equal(crypt_generate(&c2), 0);
    crypt_id(cr, "hello", 5, a);
    crypt_id(cr, "hello", 5, b);
    crypt_id(NULL, "hello", 5, plain);
    crypt_id(c2, "hello", 5, other);
    assert_string_equal(a, b);
    assert_string_equal(plain, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert_string_not_equal(a, plain);
    assert_string_not_equal(a, other);
    /* the stream gives the same id as one call */
    struct crypt_hash *h = crypt_hash_new(cr);
    crypt_hash_update(h, "hel", 3);
    crypt_hash_update(h, "lo", 2);
    crypt_hash_finish(h, b);
    assert_string_equal(a, b);
    assert_true(crypt_line_hash(cr, "x", 1) != crypt_line_hash(NULL, "x", 1));
    crypt_free(c2);
}

/* ---------- sealed objects ---------- */

static void test_seal_sizes(void **state)
{
    const size_t sizes[] = {0, 1, 100, CRYPT_CHUNK - 1, CRYPT_CHUNK, CRYPT_CHUNK + 1,
                            2 * CRYPT_CHUNK, 3 * CRYPT_CHUNK + 5};
    unsigned char *data = malloc(3 * CRYPT_CHUNK + 5);
    fill(data, 3 * CRYPT_CHUNK + 5, 7);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct buf s = BUF_INIT, o = BUF_INIT;
        assert_int_equal(crypt_seal(cr, "blob:x", data, sizes[i], &s), 0);
        assert_int_equal(s.len, crypt_sealed_size(sizes[i]));
        uint64_t plain = 0;
        assert_int_equal(crypt_sealed_plain_size(s.len, &plain), 0);
        assert_int_equal(plain, sizes[i]);
        assert_int_equal(crypt_unseal(cr, "blob:x", s.data, s.len, &o), 0);
        assert_int_equal(o.len, sizes[i]);
        assert_memory_equal(o.data ? o.data : "", data, sizes[i]);
        buf_release(&s);
        buf_release(&o);
    }
    /* every stored size either maps to a plaintext size that maps back, or is refused */
    int valid = 0;
    for (uint64_t st = 0; st < 3 * (CRYPT_CHUNK + CRYPT_TAG_BYTES) + 100; st += 97) {
        uint64_t plain;
        if (crypt_sealed_plain_size(st, &plain) == 0) {
            assert_int_equal(crypt_sealed_size(plain), st);
            valid++;
        }
    }
    assert_true(valid > 1000);
    free(data);
}

/* Every way to damage a sealed object fails and leaves out as it was. */
static void test_seal_damage(void **state)
{
    size_t n = 2 * CRYPT_CHUNK + 1000;
    unsigned char *data = malloc(n);
    fill(data, n, 3);
    struct buf s = BUF_INIT, o = BUF_INIT, t = BUF_INIT;
    assert_int_equal(crypt_seal(cr, "manifest:points/e/p.json", data, n, &s), 0);
    buf_addstr(&o, "keep");
    /* another identity, another key */
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/q.json", s.data, s.len, &o), -EBADMSG);
    struct crypt *c2 = NULL;
    assert_int_equal(crypt_generate(&c2), 0);
    assert_int_equal(crypt_unseal(c2, "manifest:points/e/p.json", s.data, s.len, &o), -EBADMSG);
    crypt_free(c2);
    assert_int_equal(o.len, 4);
    /* a flipped bit at 300 places spread over the object (header, salt, parts, tags) */
    for (size_t k = 0; k < 300; k++) {
        size_t at = k < 40 ? k : (k * 7919u) % s.len;
        s.data[at] ^= 0x10;
        assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", s.data, s.len, &o),
                         -EBADMSG);
        s.data[at] ^= 0x10;
    }
    /* truncations: the last part dropped (then the new last is not flagged last), a byte less */
    size_t part = CRYPT_CHUNK + CRYPT_TAG_BYTES;
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", s.data,
                                  CRYPT_SEALED_HEADER + 2 * part, &o), -EBADMSG);
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", s.data, s.len - 1, &o),
                     -EBADMSG);
    /* an extra part appended */
    buf_add(&t, s.data, s.len);
    buf_add(&t, s.data + CRYPT_SEALED_HEADER, part);
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", t.data, t.len, &o), -EBADMSG);
    /* the first two parts swapped */
    buf_reset(&t);
    buf_add(&t, s.data, CRYPT_SEALED_HEADER);
    buf_add(&t, s.data + CRYPT_SEALED_HEADER + part, part);
    buf_add(&t, s.data + CRYPT_SEALED_HEADER, part);
    buf_add(&t, s.data + CRYPT_SEALED_HEADER + 2 * part, s.len - CRYPT_SEALED_HEADER - 2 * part);
    assert_int_equal(t.len, s.len);
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", t.data, t.len, &o), -EBADMSG);
    assert_int_equal(o.len, 4);
    assert_int_equal(crypt_unseal(cr, "manifest:points/e/p.json", s.data, s.len, &o), 0);
    assert_int_equal(o.len, 4 + n);
    buf_release(&s);
    buf_release(&o);
    buf_release(&t);
    free(data);
}

static void test_nonces(void **state)
{
    struct buf a = BUF_INIT, b = BUF_INIT;
    assert_int_equal(crypt_seal(cr, "blob:x", "same bytes", 10, &a), 0);
    assert_int_equal(crypt_seal(cr, "blob:x", "same bytes", 10, &b), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_not_equal(a.data + 8, b.data + 8, CRYPT_SALT_BYTES); /* new salt */
    assert_memory_not_equal(a.data + CRYPT_SEALED_HEADER, b.data + CRYPT_SEALED_HEADER, 10);
    buf_release(&a);
    buf_release(&b);
    /* within one object: the part number and the last flag are in the nonce */
    unsigned char salt[CRYPT_SALT_BYTES], p0[32], p1[32], p0l[32];
    struct crypt_obj *o = NULL;
    assert_int_equal(crypt_obj_new(cr, salt, &o), 0);
    assert_int_equal(crypt_obj_seal(o, 0, false, "ad", 2, "0123456789abcdef", 16, p0), 0);
    assert_int_equal(crypt_obj_seal(o, 1, false, "ad", 2, "0123456789abcdef", 16, p1), 0);
    assert_int_equal(crypt_obj_seal(o, 0, true, "ad", 2, "0123456789abcdef", 16, p0l), 0);
    assert_memory_not_equal(p0, p1, 16);
    assert_memory_not_equal(p0, p0l, 16);
    unsigned char back[16];
    assert_int_equal(crypt_obj_open_part(o, 1, false, "ad", 2, p1, 32, back), 0);
    assert_memory_equal(back, "0123456789abcdef", 16);
    assert_int_equal(crypt_obj_open_part(o, 0, false, "ad", 2, p1, 32, back), -EBADMSG);
    assert_int_equal(crypt_obj_open_part(o, 0, true, "ad", 2, p0, 32, back), -EBADMSG);
    assert_int_equal(crypt_obj_open_part(o, 0, false, "ae", 2, p0, 32, back), -EBADMSG);
    crypt_obj_free(o);
    /* salts are distinct */
    enum { N = 10000 };
    unsigned char(*salts)[CRYPT_SALT_BYTES] = malloc(N * sizeof *salts);
    for (int i = 0; i < N; i++) {
        assert_int_equal(crypt_obj_new(cr, salts[i], &o), 0);
        crypt_obj_free(o);
    }
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < N; k += 97)
            assert_memory_not_equal(salts[i], salts[k], CRYPT_SALT_BYTES);
    free(salts);
}

/* ---------- sealed segments ---------- */

/* A segment of n records with lines of ~700 bytes (several frames for n in the thousands). */
static void write_seg(const struct crypt *c, int n, int salt, char id[65])
{
    struct segment_writer *w = NULL;
    struct dverr e = {0};
    char key[32], line[800];
    assert_int_equal(segment_writer_new_in(store, c, tmpdir, &w, &e), 0);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "k%07d", i);
        int len = snprintf(line, sizeof line, "{\"id\":\"k%07d\",\"v\":%d,\"pad\":\"", i, salt);
        unsigned r = (unsigned)(i * 2654435761u) ^ (unsigned)salt;
        for (int k = 0; k < 600; k++) { /* letters that do not compress away */
            r = r * 1103515245u + 12345u;
            line[len++] = (char)('a' + (r >> 16) % 26);
        }
        len += snprintf(line + len, sizeof line - (size_t)len, "\"}");
        assert_int_equal(segment_writer_add(w, SEG_BASE, key, strlen(key), line, (size_t)len, &e),
                         0);
    }
    assert_int_equal(segment_writer_finish(w, id, &e), 0);
}

/* 0 with the entry count when the merge reads the whole segment, else its error. */
static int read_seg(const struct crypt *c, const char *id, uint64_t *count)
{
    struct segment_merge *m = NULL;
    struct dverr e = {0};
    char *ids[1] = {(char *)id};
    int rc = segment_merge_open(store, c, ids, 1, false, &m, &e);
    struct segment_entry ent;
    *count = 0;
    if (!rc)
        while ((rc = segment_merge_next(m, &ent, &e)) == 1)
            (*count)++;
    segment_merge_free(m);
    return rc;
}

static void path_of(const char *id, char *out, size_t n)
{
    snprintf(out, n, "%s/objects/%.2s/%s", dir, id, id);
}

static void load(const char *path, struct buf *b)
{
    buf_reset(b);
    assert_int_equal(read_file(path, 1u << 30, b), 0);
}

static void store_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

static void test_sealed_segments(void **state)
{
    char a[65], b[65], pa[256], pb[256];
    uint64_t count = 0;
    struct dverr e = {0};
    write_seg(cr, 6000, 1, a); /* about 4 MiB of lines: several frames */
    write_seg(cr, 6000, 2, b);
    assert_int_equal(read_seg(cr, a, &count), 0);
    assert_int_equal(count, 6000);
    assert_int_equal(segment_verify(store, cr, a, NULL, &e), 0);
    /* the id is keyed: the same entries in a plain segment get another id */
    char plain[65];
    write_seg(NULL, 6000, 1, plain);
    assert_string_not_equal(plain, a);
    /* a sealed segment is not read as plain, nor a plain one as sealed */
    assert_int_equal(read_seg(NULL, a, &count), -EIO);
    assert_int_equal(read_seg(cr, plain, &count), -EIO);
    path_of(a, pa, sizeof pa);
    path_of(b, pb, sizeof pb);
    struct buf ba = BUF_INIT, bb = BUF_INIT, t = BUF_INIT;
    load(pa, &ba);
    load(pb, &bb);
    assert_null(memmem(ba.data, ba.len, "\"pad\":\"", 7)); /* nothing of a line in clear */
    /* a flipped byte at 200 places: never read, never verified */
    for (size_t k = 0; k < 200; k++) {
        size_t at = (k * 104729u) % ba.len;
        buf_reset(&t);
        buf_add(&t, ba.data, ba.len);
        t.data[at] ^= 0x01;
        store_bytes(pa, t.data, t.len);
        struct dverr ve = {0};
        assert_int_equal(read_seg(cr, a, &count), -EIO);
        assert_int_equal(segment_verify(store, cr, a, NULL, &ve), -EIO);
    }
    /* truncated */
    store_bytes(pa, ba.data, ba.len - 100);
    assert_int_equal(read_seg(cr, a, &count), -EIO);
    /* one segment stored under the other's name */
    store_bytes(pa, bb.data, bb.len);
    assert_int_equal(read_seg(cr, a, &count), -EIO);
    /* the second frame of b put in place of a's second frame (same offsets: the frames of both
     * start after the 8-byte header; the index of a is kept) */
    buf_reset(&t);
    buf_add(&t, ba.data, ba.len);
    assert_true(ba.len > 2 * SEGMENT_FRAME_TARGET && bb.len > 2 * SEGMENT_FRAME_TARGET);
    size_t from = 8 + SEGMENT_FRAME_TARGET + 1000, len = 1000;
    memcpy(t.data + from, bb.data + from, len);
    store_bytes(pa, t.data, t.len);
    assert_int_equal(read_seg(cr, a, &count), -EIO);
    /* restored, it reads again */
    store_bytes(pa, ba.data, ba.len);
    assert_int_equal(read_seg(cr, a, &count), 0);
    assert_int_equal(count, 6000);
    buf_release(&ba);
    buf_release(&bb);
    buf_release(&t);
}

/* ---------- key objects ---------- */

static void test_key_object(void **state)
{
    struct key_info info = {.id = "0123456789abcdef0123456789abcdef", .created =
                            "2026-01-01T00:00:00Z", .host = "h", .user = "u", .log2n = 10};
    struct buf doc = BUF_INIT, t = BUF_INIT;
    struct dverr e = {0};
    assert_int_equal(key_object_render(cr, "repo-id-0123456789", &info, "pw", 2, &doc, &e), 0);
    struct crypt *c = NULL;
    struct key_info got;
    assert_int_equal(key_object_open(doc.data, doc.len, "repo-id-0123456789", "pw", 2, &c, &got,
                                     &e), 0);
    unsigned char m1[CRYPT_MASTER_BYTES], m2[CRYPT_MASTER_BYTES];
    crypt_master(cr, m1);
    crypt_master(c, m2);
    assert_memory_equal(m1, m2, sizeof m1);
    assert_string_equal(got.id, info.id);
    crypt_free(c);
    struct dverr we = {0};
    assert_int_equal(key_object_open(doc.data, doc.len, "repo-id-0123456789", "px", 2, &c, NULL,
                                     &we), -EACCES);
    assert_null(c);
    assert_non_null(strstr(dverr_msg(&we), "does not open"));
    struct dverr oe = {0};
    assert_int_equal(key_object_open(doc.data, doc.len, "another-repo-0000", "pw", 2, &c, NULL,
                                     &oe), -EIO);
    /* every clear field is bound: changing any one of them closes the key */
    const char *fields[][2] = {{"\"host\":\"h\"", "\"host\":\"H\""},
                               {"\"user\":\"u\"", "\"user\":\"v\""},
                               {"2026-01-01", "2027-01-01"},
                               {"\"log2n\":10", "\"log2n\":11"}};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        buf_reset(&t);
        const char *at = strstr(doc.data, fields[i][0]);
        assert_non_null(at);
        buf_add(&t, doc.data, (size_t)(at - doc.data));
        buf_addstr(&t, fields[i][1]);
        buf_addstr(&t, at + strlen(fields[i][0]));
        struct dverr fe = {0};
        assert_int_equal(key_object_open(t.data, t.len, "repo-id-0123456789", "pw", 2, &c, NULL,
                                         &fe), -EACCES);
    }
    /* malformed: not JSON, a cost out of range, a short key */
    const char *bad[] = {"{", "[]", "{\"kind\":\"dvsnap-key\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dverr be = {0};
        assert_int_equal(key_object_open(bad[i], strlen(bad[i]), "repo-id-0123456789", "pw", 2,
                                         &c, NULL, &be), -EIO);
    }
    buf_reset(&t);
    const char *at = strstr(doc.data, "\"log2n\":10");
    buf_add(&t, doc.data, (size_t)(at - doc.data));
    buf_addstr(&t, "\"log2n\":40");
    buf_addstr(&t, at + 10);
    struct dverr ce = {0};
    assert_int_equal(key_object_open(t.data, t.len, "repo-id-0123456789", "pw", 2, &c, NULL, &ce),
                     -EIO);
    buf_release(&doc);
    buf_release(&t);
}

static void test_keys_store(void **state)
{
    struct dverr e = {0};
    char k1[KEYS_ID_HEX + 1], k2[KEYS_ID_HEX + 1], used[KEYS_ID_HEX + 1];
    assert_int_equal(keys_add(store, cr, "repo-a", "first", 5, k1, &e), 0);
    assert_int_equal(keys_add(store, cr, "repo-a", "second", 6, k2, &e), 0);
    struct crypt *c = NULL;
    assert_int_equal(keys_unlock(store, "repo-a", "second", 6, &c, used, &e), 0);
    assert_string_equal(used, k2);
    crypt_free(c);
    assert_int_equal(keys_unlock(store, "repo-a", "first", 5, &c, used, &e), 0);
    assert_string_equal(used, k1);
    crypt_free(c);
    struct dverr we = {0};
    assert_int_equal(keys_unlock(store, "repo-a", "third", 5, &c, used, &we), -EACCES);
    assert_non_null(strstr(dverr_msg(&we), "wrong password"));
    struct key_info *v = NULL;
    size_t n = 0;
    assert_int_equal(keys_list(store, &v, &n, &e), 0);
    assert_int_equal(n, 2);
    free(v);
    assert_int_equal(keys_remove(store, k1, &e), 0);
    struct dverr re = {0};
    assert_int_equal(keys_unlock(store, "repo-a", "first", 5, &c, used, &re), -EACCES);
    assert_int_equal(keys_unlock(store, "repo-a", "second", 6, &c, used, &e), 0);
    unsigned char m1[CRYPT_MASTER_BYTES], m2[CRYPT_MASTER_BYTES];
    crypt_master(cr, m1);
    crypt_master(c, m2);
    assert_memory_equal(m1, m2, sizeof m1);
    crypt_free(c);
    assert_int_equal(keys_remove(store, k2, &e), 0);
    struct dverr ne = {0};
    assert_int_equal(keys_unlock(store, "repo-a", "second", 6, &c, used, &ne), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_seal_sizes),
        cmocka_unit_test(test_seal_damage),
        cmocka_unit_test(test_nonces),
        cmocka_unit_test(test_sealed_segments),
        cmocka_unit_test(test_key_object),
        cmocka_unit_test(test_keys_store),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
