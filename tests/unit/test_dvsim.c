/* test_dvsim: dvsim's pure pieces: flat line scanning, canonical rendering order, projection
 * ($select and annotations), formatted values, URL coding, tokens, schema lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "tools/dvsim/dvsim.h"

static const char line[] =
    "{\"accountid\":\"0036e99d-3914-4fca-b158-2ae7c3e1f38f\",\"@odata.etag\":\"W/\\\"1000215\\\"\","
    "\"_ownerid_value\":\"68e82d26-b373-4f70-a8c0-a1576266a793\","
    "\"_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname\":\"systemuser\","
    "\"_ownerid_value@OData.Community.Display.V1.FormattedValue\":\"Zoë\","
    "\"name\":\"A, \\\"quoted\\\" name}\",\"revenue\":12345678901234.1234567890,"
    "\"revenue@OData.Community.Display.V1.FormattedValue\":\"$12,345,678,901,234.12\",\"telephone1\":null}";

static void test_line_scan(void **state)
{
    struct lmember m[16];
    int n = dvline_scan(line, strlen(line), m, 16);
    assert_int_equal(n, 9);
    assert_int_equal(m[5].key_len, 4);
    assert_memory_equal(m[5].key, "name", 4);
    assert_int_equal(m[5].val_len, strlen("\"A, \\\"quoted\\\" name}\""));
    assert_memory_equal(m[6].val, "12345678901234.1234567890", m[6].val_len);
    assert_int_equal(dvline_scan("{\"a\":[1]}", 9, m, 16), -EINVAL);
    assert_int_equal(dvline_scan("{\"a\":1,}", 8, m, 16), -EINVAL);
    assert_int_equal(dvline_scan("{\"a\":1", 6, m, 16), -EINVAL);
    assert_int_equal(dvline_scan("{\"a\":1,\"b\":2}", 13, m, 1), -E2BIG);
    assert_int_equal(dvline_scan("{}", 2, m, 16), 0);
}

static void test_rec_render_order(void **state)
{
    struct rec r;
    struct buf out = BUF_INIT;
    srec_init(&r);
    assert_int_equal(srec_from_line(&r, line, strlen(line)), 0);
    assert_int_equal(srec_render(&r, "accountid", &out), 0);
    assert_string_equal(out.data, line); /* already canonical: unchanged */
    buf_reset(&out);
    assert_int_equal(srec_set_str(&r, "aaa", "x\ny"), 0);
    assert_int_equal(srec_set(&r, "telephone1", NULL, 0), 0);
    assert_int_equal(srec_render(&r, "accountid", &out), 0);
    /* the primary key stays first, "@" sorts before "_" and letters */
    assert_non_null(strstr(out.data, "{\"accountid\":\"0036e99d-3914-4fca-b158-2ae7c3e1f38f\",\"@odata.etag\""));
    assert_non_null(strstr(out.data, "\"_ownerid_value@OData.Community.Display.V1.FormattedValue\":\"Zoë\",\"aaa\":\"x\\ny\",\"name\""));
    assert_null(strstr(out.data, "telephone1"));
    srec_release(&r);
    buf_release(&out);
}

static void test_project(void **state)
{
    struct projection p;
    struct buf out = BUF_INIT;
    memset(&p, 0, sizeof p);
    p.t = &dvschema_tables[T_ACCOUNT];
    p.n_select = 1;
    p.select[0] = "_ownerid_value";
    p.select_len[0] = strlen(p.select[0]);
    dvline_annot_parse(&p.annot, "\"Microsoft.Dynamics.CRM.*\"");
    assert_int_equal(dvline_project(&p, line, strlen(line), &out), 0);
    assert_string_equal(out.data,
                        "{\"accountid\":\"0036e99d-3914-4fca-b158-2ae7c3e1f38f\",\"@odata.etag\":\"W/\\\"1000215\\\"\","
                        "\"_ownerid_value\":\"68e82d26-b373-4f70-a8c0-a1576266a793\","
                        "\"_ownerid_value@Microsoft.Dynamics.CRM.lookuplogicalname\":\"systemuser\"}");
    buf_reset(&out);
    p.n_select = -1;
    dvline_annot_parse(&p.annot, "\"*\"");
    p.all_annotations = true;
    assert_int_equal(dvline_project(&p, line, strlen(line), &out), 0);
    assert_string_equal(out.data, line);
    buf_release(&out);
}

static void test_formatting(void **state)
{
    char f[64];
    dvsim_fmt_money("1234.5", f, sizeof f);
    assert_string_equal(f, "$1,234.50");
    dvsim_fmt_money("999.995", f, sizeof f);
    assert_string_equal(f, "$1,000.00");
    dvsim_fmt_money("-12", f, sizeof f);
    assert_string_equal(f, "-$12.00");
    dvsim_fmt_number("9007199254740993", f, sizeof f);
    assert_string_equal(f, "9,007,199,254,740,993");
    dvsim_fmt_number("12345678901234.1234567890", f, sizeof f);
    assert_string_equal(f, "12,345,678,901,234.1234567890");
    dvsim_fmt_datetime("2023-04-07T21:59:01Z", f, sizeof f);
    assert_string_equal(f, "4/7/2023 9:59 PM");
    dvsim_fmt_datetime("2023-04-07T00:05:01Z", f, sizeof f);
    assert_string_equal(f, "4/7/2023 12:05 AM");
    dvsim_fmt_dateonly("1980-01-02", f, sizeof f);
    assert_string_equal(f, "1/2/1980");
}

static void test_url(void **state)
{
    struct buf b = BUF_INIT;
    dvsim_url_encode(&b, "1!11/22/2026 01:01:51", 21);
    assert_string_equal(b.data, "1%2111%2F22%2F2026%2001%3A01%3A51");
    char s[64] = "a%20b+c%2";
    dvsim_url_decode(s);
    assert_string_equal(s, "a b c%2");
    buf_release(&b);
    assert_true(dvsim_guid_valid("0036e99d-3914-4fca-b158-2ae7c3e1f38f", 36));
    assert_false(dvsim_guid_valid("0036e99d-3914-4fca-b158-2ae7c3e1f38", 36));
}

static void test_tokens(void **state)
{
    struct dvsim d;
    memset(&d, 0, sizeof d);
    strcpy(d.token_key, "k"); /* lint-ok: test fixture */
    struct buf t = BUF_INIT;
    char res[128];
    assert_int_equal(dvsim_token_issue(&d, "/org/contoso-prod", 4102444800LL, &t), 0);
    assert_int_equal(dvsim_token_check(&d, t.data, res, sizeof res), 0);
    assert_string_equal(res, "/org/contoso-prod");
    t.data[t.len - 1] = t.data[t.len - 1] == 'a' ? 'b' : 'a';
    assert_int_equal(dvsim_token_check(&d, t.data, res, sizeof res), -EINVAL);
    buf_reset(&t);
    assert_int_equal(dvsim_token_issue(&d, "", 1000, &t), 0);
    assert_int_equal(dvsim_token_check(&d, t.data, res, sizeof res), -ETIMEDOUT);
    buf_release(&t);
}

static void test_schema(void **state)
{
    const struct table_def *t = dvschema_table_by_set("contacts", 8);
    assert_non_null(t);
    assert_string_equal(t->pk, "contactid");
    const struct col_def *c = dvschema_col_by_member(t, "_parentcustomerid_value", 23);
    assert_non_null(c);
    assert_string_equal(c->nav, "parentcustomerid_account");
    assert_null(dvschema_col_by_member(t, "parentcustomerid", 16));
    assert_int_equal(dvschema_env_index("fabrikam-prod", 13), 5);
    assert_false(dvschema_tables[T_PROJECT].change_tracking);
    assert_true(dvschema_tables[T_AUDIT].read_only);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_scan), cmocka_unit_test(test_rec_render_order),
        cmocka_unit_test(test_project),   cmocka_unit_test(test_formatting),
        cmocka_unit_test(test_url),       cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_schema),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
