/* test_util: buffers, error buffers, SHA-256, time names, durations and sizes, name sanitising. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "backend/base/util.h"

static void test_buf(void **state)
{
    struct buf b = BUF_INIT;
    assert_int_equal(buf_printf(&b, "%d-%s", 42, "x"), 0);
    assert_string_equal(b.data, "42-x");
    assert_int_equal(buf_add_json_string(&b, "a\"\n\x01/é", 7), 0);
    assert_string_equal(b.data, "42-x\"a\\\"\\n\\u0001/é\"");
    buf_release(&b);
    assert_null(b.data);
}

static void test_dverr_first_wins(void **state)
{
    struct dverr e = {0};
    assert_int_equal(dverr_set(&e, -ENOENT, "first %d", 1), -ENOENT);
    dverr_set(&e, -EIO, "second");
    assert_int_equal(e.code, -ENOENT);
    assert_string_equal(dverr_msg(&e), "first 1");
}

static void test_sha256(void **state)
{
    char h[65];
    sha256_hex("abc", 3, h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    struct sha256_stream *s = sha256_stream_new();
    sha256_stream_update(s, "a", 1);
    sha256_stream_update(s, "bc", 2);
    char h2[65];
    sha256_stream_finish(s, h2);
    assert_string_equal(h, h2);
}

static void test_times(void **state)
{
    char name[32];
    time_t t;
    point_name_from_time(1763715600, name); /* 2025-11-21T09:00:00Z */
    assert_string_equal(name, "2025-11-21T090000Z");
    assert_int_equal(point_name_to_time(name, &t), 0);
    assert_int_equal(t, 1763715600);
    assert_int_equal(point_name_to_time("2025-11-21T09:00:00Z", &t), -EINVAL);
    assert_int_equal(rfc3339_to_time("2025-11-21T10:30:00+01:30", &t), 0);
    assert_int_equal(t, 1763715600);
    assert_int_equal(rfc3339_to_time("2025-11-21T09:00:00.123Z", &t), 0);
    assert_int_equal(t, 1763715600);
    assert_int_equal(rfc3339_to_time("2025-11-21 09:00", &t), -EINVAL);
}

static void test_durations_sizes(void **state)
{
    int64_t s;
    uint64_t b;
    assert_int_equal(parse_duration("15m", &s), 0);
    assert_int_equal(s, 900);
    assert_int_equal(parse_duration("2x", &s), -EINVAL);
    assert_int_equal(parse_size("2G", &b), 0);
    assert_true(b == 2147483648ULL);
    assert_int_equal(parse_size("-1", &b), -EINVAL);
}

static void test_name_sanitize(void **state)
{
    char out[256];
    name_sanitize("a/b", 3, out);
    assert_string_equal(out, "a\xe2\x88\x95" "b");
    name_sanitize("..", 2, out);
    assert_string_equal(out, "_..");
    name_sanitize("", 0, out);
    assert_string_equal(out, "_");
    name_sanitize("x\0y\n", 4, out);
    assert_string_equal(out, "x_y_");
    char longname[300];
    memset(longname, 'a', sizeof longname);
    name_sanitize(longname, sizeof longname, out);
    assert_int_equal(strlen(out), 255);
    char other[256];
    longname[299] = 'b';
    name_sanitize(longname, sizeof longname, other);
    assert_string_not_equal(out, other); /* same prefix, different names stay distinct */
    name_sanitize("Résumé ü.txt", strlen("Résumé ü.txt"), out);
    assert_string_equal(out, "Résumé ü.txt");
    memcpy(out, "dup", 4);
    name_unique_suffix(out, 2);
    assert_string_equal(out, "dup~2");
}

/* The loopback rule config uses for http:// URLs: conservative, so a trick never passes. */
static void test_url_is_loopback(void **state)
{
    assert_true(url_is_loopback("http://127.0.0.1:8080/x"));
    assert_true(url_is_loopback("http://localhost/x"));
    assert_true(url_is_loopback("http://localhost"));
    assert_true(url_is_loopback("http://[::1]:80/"));
    assert_false(url_is_loopback("http://127.0.0.1.evil.com/"));
    assert_false(url_is_loopback("http://10.0.0.1/"));
    assert_false(url_is_loopback("http://127.0.0.1@evil.com/"));
    assert_false(url_is_loopback("http://evil.com\\@127.0.0.1/"));
    assert_false(url_is_loopback("http://127.0.0.1:80x/"));
    assert_false(url_is_loopback("ftp://127.0.0.1/"));
    assert_false(url_is_loopback("http:///x"));
}

static void test_base64(void **state)
{
    (void)state;
    const char *cases[][2] = {{"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
                              {"\xff\xfe\x00", "//4A"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = i == 4 ? 3 : strlen(cases[i][0]);
        struct buf enc = BUF_INIT, dec = BUF_INIT;
        assert_int_equal(base64_encode(cases[i][0], n, &enc), 0);
        assert_string_equal(enc.data, cases[i][1]);
        assert_int_equal(base64_decode(enc.data, enc.len, &dec), 0);
        assert_int_equal(dec.len, n);
        assert_memory_equal(dec.data, cases[i][0], n);
        buf_release(&enc);
        buf_release(&dec);
    }
    struct buf b = BUF_INIT;
    assert_int_equal(base64_decode("__4A\n", 5, &b), 0); /* url alphabet, whitespace */
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "\xff\xfe\x00", 3);
    buf_reset(&b);
    assert_int_equal(base64_decode("Zm9v!", 5, &b), -EINVAL);
    buf_reset(&b);
    assert_int_equal(base64_decode("Zg=a", 4, &b), -EINVAL); /* data after padding */
    buf_reset(&b);
    assert_int_equal(base64_decode("Z", 1, &b), -EINVAL); /* a dangling partial byte */
    buf_release(&b);
}

/* The arena: aligned pieces after unaligned ones, a piece larger than a block in a block of its
 * own, copies that end in NUL, and a release that leaves it empty and reusable. */
static void test_arena(void **state)
{
    (void)state;
    struct arena a = {.block = 64};
    char *b = arena_bytes(&a, 3);
    assert_non_null(b);
    void *p = arena_alloc(&a, 8);
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % 16, 0);
    assert_true((char *)p >= b + 3);
    char *s = arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    size_t before = a.bytes;
    char *big = arena_bytes(&a, 1000);
    assert_non_null(big);
    memset(big, 'x', 1000);
    assert_true(a.bytes >= before + 1000);
    assert_string_equal(s, "hello"); /* earlier pieces untouched */
    arena_release(&a);
    assert_null(a.blocks);
    assert_int_equal(a.bytes, 0);
    assert_int_equal(a.block, 64);
    assert_string_equal(arena_strndup(&a, "again", 5), "again");
    arena_release(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf),           cmocka_unit_test(test_dverr_first_wins),
        cmocka_unit_test(test_sha256),        cmocka_unit_test(test_times),
        cmocka_unit_test(test_durations_sizes), cmocka_unit_test(test_name_sanitize),
        cmocka_unit_test(test_base64), cmocka_unit_test(test_arena),        cmocka_unit_test(test_url_is_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
