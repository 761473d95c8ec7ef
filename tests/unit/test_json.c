/* test_json: the exact-number JSON parser and the canonical record renderer: numbers survive as
 * text, strings decode, limits hold on hostile input, rendering is canonical and deterministic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/base/record.h"

static const struct json_node *parse_ok(const char *s, struct json_doc **doc)
{
    struct dverr err = {0};
    int rc = json_parse(s, strlen(s), NULL, doc, &err);
    if (rc)
        fail_msg("parse failed: %s", dverr_msg(&err));
    return json_root(*doc);
}

static void test_numbers_exact(void **state)
{
    struct json_doc *doc;
    const struct json_node *r =
        parse_ok("{\"big\":9007199254740993,\"dec\":12345678901234.1234567890,\"e\":1e400,"
                 "\"neg\":-0.5,\"huge\":18446744073709551617}", &doc);
    assert_string_equal(json_get(r, "big")->str, "9007199254740993");
    assert_string_equal(json_get(r, "dec")->str, "12345678901234.1234567890");
    assert_string_equal(json_get(r, "e")->str, "1e400");
    assert_string_equal(json_get(r, "neg")->str, "-0.5");
    assert_string_equal(json_get(r, "huge")->str, "18446744073709551617");
    json_doc_free(doc);
}

static void test_strings_decode(void **state)
{
    struct json_doc *doc;
    const struct json_node *r =
        parse_ok("[\"a\\u00e9\\n\", \"\\ud83d\\ude00\", \"\\ud800x\", \"x\\u0000y\", \"Zoë\"]", &doc);
    const struct json_node *c = r->child;
    assert_string_equal(c->str, "a\xc3\xa9\n");
    c = c->next;
    assert_string_equal(c->str, "\xf0\x9f\x98\x80");
    c = c->next;
    assert_string_equal(c->str, "\xef\xbf\xbdx"); /* lone surrogate -> U+FFFD */
    c = c->next;
    assert_int_equal(c->str_len, 3);
    assert_memory_equal(c->str, "x\0y", 3);
    c = c->next;
    assert_string_equal(c->str, "Zoë");
    assert_int_equal(r->n_children, 5);
    json_doc_free(doc);
}

static void expect_fail(const char *s, size_t len, const struct json_limits *lim, int code)
{
    struct json_doc *doc = NULL;
    struct dverr err = {0};
    int rc = json_parse(s, len, lim, &doc, &err);
    if (rc != code)
        fail_msg("input %.40s: expected %d got %d (%s)", s, code, rc, dverr_msg(&err));
    assert_null(doc);
    assert_true(strlen(dverr_msg(&err)) > 0);
}

static void test_rejects(void **state)
{
    expect_fail("{\"a\":1,}", 8, NULL, -EINVAL);
    expect_fail("[01]", 4, NULL, -EINVAL);
    expect_fail("[1.]", 4, NULL, -EINVAL);
    expect_fail("\"abc", 4, NULL, -EINVAL);
    expect_fail("\"a\x01\"", 4, NULL, -EINVAL);
    expect_fail("\"\xff\"", 3, NULL, -EINVAL);
    expect_fail("{\"a\":1} x", 9, NULL, -EINVAL);
    expect_fail("", 0, NULL, -EINVAL);
    expect_fail("[tru]", 5, NULL, -EINVAL);
    expect_fail("{\"a\" 1}", 7, NULL, -EINVAL);
}

static void test_limits(void **state)
{
    /* 100k deep nesting: refused by depth, quickly, without recursion to that depth */
    size_t n = 100000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    expect_fail(deep, 2 * n, NULL, -E2BIG);
    free(deep);
    struct json_limits lim = {.max_string = 10};
    expect_fail("\"01234567890\"", 13, &lim, -E2BIG);
    struct json_limits lim2 = {.max_nodes = 3};
    expect_fail("[1,2,3]", 7, &lim2, -E2BIG);
}

static void test_render_canonical(void **state)
{
    struct buf out = BUF_INIT;
    struct dverr err = {0};
    const char *in = "{ \"name\" : \"Caf\\u00e9\", \"accountid\":\"b-1\", \"@odata.etag\":\"W/\\\"7\\\"\","
                     " \"_x_value\":null, \"revenue\":100.0000, \"n\":{\"z\":1,\"a\":[3,{\"y\":2,\"b\":1}]}}";
    assert_int_equal(record_canonicalize(in, strlen(in), "accountid", &out, &err), 0);
    assert_string_equal(out.data,
                        "{\"accountid\":\"b-1\",\"@odata.etag\":\"W/\\\"7\\\"\",\"_x_value\":null,"
                        "\"n\":{\"a\":[3,{\"b\":1,\"y\":2}],\"z\":1},\"name\":\"Café\",\"revenue\":100.0000}");
    /* rendering the rendering gives the same bytes */
    struct buf again = BUF_INIT;
    assert_int_equal(record_canonicalize(out.data, out.len, "accountid", &again, &err), 0);
    assert_string_equal(out.data, again.data);
    buf_release(&out);
    buf_release(&again);
}

static void test_render_duplicates_and_errors(void **state)
{
    struct buf out = BUF_INIT;
    struct dverr err = {0};
    assert_int_equal(record_canonicalize("{\"b\":1,\"a\":2,\"b\":3}", 19, NULL, &out, &err), 0);
    assert_string_equal(out.data, "{\"a\":2,\"b\":3}");
    buf_reset(&out);
    assert_int_equal(record_canonicalize("[1]", 3, "id", &out, &err), -EINVAL);
    assert_int_equal(out.len, 0);
    buf_release(&out);
}

static void test_render_many_members(void **state)
{
    struct buf in = BUF_INIT, out = BUF_INIT;
    buf_addch(&in, '{');
    for (int i = 99; i >= 0; i--)
        buf_printf(&in, "%s\"k%02d\":%d", i == 99 ? "" : ",", i, i);
    buf_addch(&in, '}');
    assert_int_equal(record_canonicalize(in.data, in.len, "k50", &out, NULL), 0);
    assert_memory_equal(out.data, "{\"k50\":50,\"k00\":0,\"k01\":1", 25);
    buf_release(&in);
    buf_release(&out);
}

static void test_record_key_and_size(void **state)
{
    struct json_doc *doc;
    const struct json_node *r = parse_ok("{\"contactid\":\"c1\",\"n\":1}", &doc);
    size_t kl;
    assert_string_equal(record_key(r, "contactid", &kl), "c1");
    assert_int_equal(kl, 2);
    assert_null(record_key(r, "n", NULL));
    json_doc_free(doc);
    assert_int_equal(table_file_size(0, 0), strlen("[\n]\n"));
    /* "[\n" + "a" + ",\n" + "bb" + "\n]\n" */
    assert_int_equal(table_file_size(2, 3), strlen("[\na,\nbb\n]\n"));
}

/* An elastic row's key: id, ':' and partitionid; without a partition (absent, null, empty or the
 * id itself) the id alone, as every other table's key. */
static void test_record_row_key(void **state)
{
    struct buf scratch = BUF_INIT;
    size_t kl;
    struct json_doc *doc;
    const struct json_node *r = parse_ok("{\"pid\":\"a1\",\"partitionid\":\"dev-7\"}", &doc);
    assert_string_equal(record_row_key(r, "pid", "partitionid", &scratch, &kl), "a1:dev-7");
    assert_int_equal(kl, 8);
    assert_int_equal(record_key_id_len("a1:dev-7", kl), 2);
    /* no partition column asked: the id */
    assert_string_equal(record_row_key(r, "pid", NULL, &scratch, &kl), "a1");
    assert_int_equal(kl, 2);
    json_doc_free(doc);
    static const char *const plain[] = {
        "{\"pid\":\"a1\"}", "{\"pid\":\"a1\",\"partitionid\":null}",
        "{\"pid\":\"a1\",\"partitionid\":\"\"}", "{\"pid\":\"a1\",\"partitionid\":\"a1\"}",
    };
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        r = parse_ok(plain[i], &doc);
        assert_string_equal(record_row_key(r, "pid", "partitionid", &scratch, &kl), "a1");
        assert_int_equal(kl, 2);
        assert_int_equal(record_key_id_len("a1", kl), 2);
        json_doc_free(doc);
    }
    /* two partitions of one id sort together, after the id alone and before the next id */
    r = parse_ok("{\"pid\":\"a1\",\"partitionid\":\"b\"}", &doc);
    const char *k = record_row_key(r, "pid", "partitionid", &scratch, &kl);
    assert_true(memcmp(k, "a1", 2) == 0 && kl > 2);
    assert_true(strcmp(k, "a1:c") < 0 && strcmp("a1", k) < 0 && strcmp(k, "a2") < 0);
    json_doc_free(doc);
    r = parse_ok("{\"partitionid\":\"b\"}", &doc);
    assert_null(record_row_key(r, "pid", "partitionid", &scratch, &kl));
    json_doc_free(doc);
    buf_release(&scratch);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numbers_exact),       cmocka_unit_test(test_strings_decode),
        cmocka_unit_test(test_rejects),             cmocka_unit_test(test_limits),
        cmocka_unit_test(test_render_canonical),    cmocka_unit_test(test_render_duplicates_and_errors),
        cmocka_unit_test(test_render_many_members), cmocka_unit_test(test_record_key_and_size),
        cmocka_unit_test(test_record_row_key),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
