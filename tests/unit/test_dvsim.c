/* test_dvsim: dvsim's pure pieces: flat line scanning, canonical rendering order, projection
 * ($select and annotations), formatted values, URL coding, tokens, schema lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/base/record.h"
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

/* An elastic row's stored id: the id, then ':' and 16 hex digits of its partition; the id alone
 * without one. The API shows the id part (dvstore_id_len). */
static void test_row_id(void **state)
{
    char a[DVSTORE_ID_MAX], b[DVSTORE_ID_MAX], c[DVSTORE_ID_MAX];
    const char *id = "0036e99d-3914-4fca-b158-2ae7c3e1f38f";
    dvstore_row_id(id, NULL, a);
    assert_string_equal(a, id);
    dvstore_row_id(id, "", a);
    assert_string_equal(a, id);
    assert_int_equal(dvstore_id_len(a), 36);
    dvstore_row_id(id, "device-001", a);
    dvstore_row_id(id, "device-002", b);
    dvstore_row_id(id, "device-001", c);
    assert_int_equal(strlen(a), 36 + 1 + 16);
    assert_int_equal(dvstore_id_len(a), 36);
    assert_memory_equal(a, id, 36);
    assert_string_not_equal(a, b);
    assert_string_equal(a, c);
    char long_part[1100];
    memset(long_part, 'p', sizeof long_part - 1);
    long_part[sizeof long_part - 1] = '\0';
    dvstore_row_id(id, long_part, a);
    assert_int_equal(strlen(a), 36 + 1 + 16);
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
    assert_string_equal(c->targets[0].nav, "parentcustomerid_account");
    assert_string_equal(c->targets[1].nav, "parentcustomerid_contact");
    assert_null(c->targets[2].table);
    const struct lookup_target *g = NULL;
    assert_ptr_equal(dvschema_col_by_nav(t, "parentcustomerid_contact", 24, &g), c);
    assert_string_equal(g->table, "contact");
    assert_null(dvschema_col_by_member(t, "parentcustomerid", 16));
    /* ownerid binds a user or a team through the same property */
    const struct col_def *owner = dvschema_col_by_member(t, "_ownerid_value", 14);
    assert_non_null(dvschema_lookup_target(owner, "team", "ownerid"));
    assert_non_null(dvschema_lookup_target(owner, "systemuser", "ownerid"));
    assert_null(dvschema_lookup_target(owner, "account", NULL));
    assert_int_equal(dvschema_env_index("fabrikam-prod", 13), 5);
    assert_false(dvschema_tables[T_PROJECT].change_tracking);
    assert_int_equal(dvschema_tables[T_AUDIT].writes, TW_NONE);
    assert_int_equal(dvschema_tables[T_ACTIVITYPARTY].writes, TW_NONE);
    assert_int_equal(dvschema_tables[T_TEAM].writes, TW_PRINCIPAL);
    assert_int_equal(dvschema_tables[T_CURRENCY].ownership, OWN_ORG);
    assert_true(dvschema_tables[T_EMAIL].activity);
    assert_string_equal(dvschema_tables[T_PHONECALL].pk, "activityid");
    /* statecode is not valid for create; each status belongs to one state */
    const struct table_def *inc = &dvschema_tables[T_INCIDENT];
    assert_int_equal(dvschema_col_by_member(inc, "statecode", 9)->flags, COLF_UPDATE);
    const struct col_def *st = dvschema_col_by_member(inc, "statuscode", 10);
    assert_int_equal(dvschema_status_state(st, 5), 1);
    assert_int_equal(dvschema_status_state(st, 6), 2);
    assert_int_equal(dvschema_status_state(st, 99), -1);
    assert_int_equal(dvschema_status_default(st, 0), 1);
    assert_int_equal(dvschema_status_default(dvschema_col_by_member(&dvschema_tables[T_TASK], "statuscode", 10), 0), 2);
    /* every table's records fit in its slice of table ids */
    assert_true(N_TABLES <= TABLE_ID_STRIDE);
    char a0[37], a1[37];
    dvschema_app_user_id(0, a0);
    dvschema_app_user_id(1, a1);
    assert_string_equal(a0, "00000000-0000-0000-0000-00000000a001");
    assert_string_not_equal(a0, a1);
    assert_true(dvsim_guid_valid(a1, 36));
}

/* Every seeded line is already canonical (record_canonicalize gives back the same bytes), and the
 * same seed gives the same database content. */
static void seed_into(const char *path, uint64_t seed, struct dvsim *d)
{
    struct dverr err;
    dverr_clear(&err);
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
    d->seed = seed;
    d->records = 40;
    unlink(path);
    assert_int_equal(dvstore_open(path, &d->store, &err), 0);
    assert_int_equal(dvseed_tenant(d, &err), 0);
}

static void test_seed_canonical_and_deterministic(void **state)
{
    char p1[] = "/tmp/test_dvsim_a.XXXXXX", p2[] = "/tmp/test_dvsim_b.XXXXXX";
    int f1 = mkstemp(p1), f2 = mkstemp(p2);
    assert_true(f1 >= 0 && f2 >= 0);
    close(f1);
    close(f2);
    struct dvsim a, b;
    seed_into(p1, 5, &a);
    seed_into(p2, 5, &b);
    sqlite3 *da = dvstore_get(a.store), *db = dvstore_get(b.store);
    sqlite3_stmt *qa = NULL, *qb = NULL;
    assert_int_equal(sqlite3_prepare_v2(da, "SELECT tid, id, line FROM rec ORDER BY tid, id", -1, &qa, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT tid, id, line FROM rec ORDER BY tid, id", -1, &qb, NULL), SQLITE_OK);
    struct buf out = BUF_INIT;
    int n = 0;
    while (sqlite3_step(qa) == SQLITE_ROW) {
        assert_int_equal(sqlite3_step(qb), SQLITE_ROW);
        int tid = sqlite3_column_int(qa, 0);
        const char *ln = (const char *)sqlite3_column_blob(qa, 2);
        size_t len = (size_t)sqlite3_column_bytes(qa, 2);
        assert_int_equal(len, (size_t)sqlite3_column_bytes(qb, 2));
        assert_memory_equal(ln, sqlite3_column_blob(qb, 2), len);
        buf_reset(&out);
        struct dverr err;
        dverr_clear(&err);
        assert_int_equal(record_canonicalize(ln, len, dvschema_tables[tid % TABLE_ID_STRIDE].pk, &out, &err), 0);
        if (out.len != len || memcmp(out.data, ln, len) != 0)
            fail_msg("not canonical:\n%.*s\n%s", (int)len, ln, out.data);
        n++;
    }
    assert_int_equal(sqlite3_step(qb), SQLITE_DONE);
    assert_true(n > 500);
    /* a different seed gives different data */
    sqlite3_finalize(qa);
    sqlite3_finalize(qb);
    dvstore_put(a.store, da);
    dvstore_put(b.store, db);
    dvstore_free(a.store);
    dvstore_free(b.store);
    buf_release(&out);
    unlink(p1);
    unlink(p2);
}

/* The people of the tenant: the same Entra object id and domainname in every org, an id of each
 * org; contoso-dev and contoso-test without the two leavers; contoso-dev with one person re-keyed
 * (domainname only) and two of its own; the application user in every org with an id of its own. */
struct person {
    char id[40], aad[40], domain[80];
};

static int people_of(sqlite3 *db, int env, struct person *out, int max)
{
    sqlite3_stmt *st = NULL;
    int n = 0;
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT line FROM rec WHERE tid=?1 AND del=0", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int(st, 1, table_id(env, T_SYSTEMUSER));
    while (sqlite3_step(st) == SQLITE_ROW && n < max) {
        struct lmember m[128];
        struct buf v = BUF_INIT;
        int nm = dvline_scan(sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0), m, 128);
        const char *keys[3] = {"systemuserid", "azureactivedirectoryobjectid", "domainname"};
        char *dst[3] = {out[n].id, out[n].aad, out[n].domain};
        size_t cap[3] = {sizeof out[n].id, sizeof out[n].aad, sizeof out[n].domain};
        for (int k = 0; k < 3; k++) {
            const struct lmember *x = dvline_member(m, nm, keys[k]);
            assert_non_null(x);
            buf_reset(&v);
            dvline_unquote(x->val, x->val_len, &v);
            snprintf(dst[k], cap[k], "%s", v.data);
        }
        buf_release(&v);
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

static const struct person *find_by(const struct person *p, int n, const char *aad, const char *domain)
{
    for (int i = 0; i < n; i++)
        if ((aad && !strcmp(p[i].aad, aad)) || (domain && !strcmp(p[i].domain, domain)))
            return &p[i];
    return NULL;
}

static void test_tenant_people(void **state)
{
    char path[] = "/tmp/test_dvsim_p.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct dvsim d;
    seed_into(path, 9, &d);
    sqlite3 *db = dvstore_get(d.store);
    static struct person prod[64], dev[64], test[64];
    int np = people_of(db, 0, prod, 64), nd = people_of(db, 1, dev, 64), nt = people_of(db, 2, test, 64);
    assert_int_equal(np, 25);
    assert_int_equal(nd, 25);
    assert_int_equal(nt, 23);
    int leavers = 0, rekeyed = 0, own = 0, shared_ids = 0;
    for (int i = 0; i < np; i++) {
        const struct person *in_dev = find_by(dev, nd, prod[i].aad, NULL);
        const struct person *in_test = find_by(test, nt, prod[i].aad, NULL);
        for (int k = 0; k < nd; k++)
            shared_ids += !strcmp(dev[k].id, prod[i].id);
        for (int k = 0; k < nt; k++)
            shared_ids += !strcmp(test[k].id, prod[i].id);
        if (!in_dev && !in_test && !find_by(dev, nd, NULL, prod[i].domain))
            leavers++;
        else if (!in_dev && find_by(dev, nd, NULL, prod[i].domain))
            rekeyed++;
        if (in_dev)
            assert_string_equal(in_dev->domain, prod[i].domain);
    }
    for (int k = 0; k < nd; k++)
        own += !find_by(prod, np, dev[k].aad, dev[k].domain);
    assert_int_equal(leavers, 2);
    assert_int_equal(rekeyed, 1);
    assert_int_equal(own, 2);
    assert_int_equal(shared_ids, 0);
    char app[37];
    dvschema_app_user_id(1, app);
    bool found = false;
    for (int k = 0; k < nd; k++)
        found |= !strcmp(dev[k].id, app);
    assert_true(found);
    dvstore_put(d.store, db);
    dvstore_free(d.store);
    unlink(path);
}

/* An image's thumbnail depends on its bytes only; a base-currency amount is money / rate. */
static void test_thumbnail_and_base(void **state)
{
    struct buf a = BUF_INIT, b = BUF_INIT, c = BUF_INIT;
    assert_int_equal(dvsim_image_thumbnail("full image bytes", 16, &a), 0);
    assert_int_equal(dvsim_image_thumbnail("full image bytes", 16, &b), 0);
    assert_int_equal(dvsim_image_thumbnail("other image bytes", 17, &c), 0);
    assert_true(a.len > 1000 && a.len == b.len && memcmp(a.data, b.data, a.len) == 0);
    assert_memory_equal(a.data, "\x89PNG\r\n\x1a\n", 8);
    assert_true(a.len != c.len || memcmp(a.data, c.data, a.len) != 0);
    char out[64];
    assert_int_equal(dvsim_money_base("1000", "0.92", out, sizeof out), 0);
    assert_string_equal(out, "1086.96");
    assert_int_equal(dvsim_money_base("12345678901234.12", "1.0", out, sizeof out), 0);
    assert_string_equal(out, "12345678901234.12");
    assert_int_equal(dvsim_money_base("1", "0", out, sizeof out), -EINVAL);
    buf_release(&a);
    buf_release(&b);
    buf_release(&c);
}

/* Lines built by the write path (srec_render) are canonical too, escapes included. */
static void test_write_path_canonical(void **state)
{
    struct rec r;
    struct buf out = BUF_INIT, canon = BUF_INIT;
    srec_init(&r);
    srec_set_str(&r, "name", "tab\there \"quoted\" \\ / é \x01");
    srec_set(&r, "revenue", "12345678901234.1234567890", 25);
    srec_set(&r, "new_bignumber", "9007199254740993", 16);
    srec_set_str(&r, "accountid", "0036e99d-3914-4fca-b158-2ae7c3e1f38f");
    srec_set_str(&r, "@odata.etag", "W/\"5\"");
    srec_set(&r, "telephone1", "null", 4);
    assert_int_equal(srec_render(&r, "accountid", &out), 0);
    assert_int_equal(record_canonicalize(out.data, out.len, "accountid", &canon, NULL), 0);
    assert_string_equal(out.data, canon.data);
    srec_release(&r);
    buf_release(&out);
    buf_release(&canon);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_scan), cmocka_unit_test(test_rec_render_order),
        cmocka_unit_test(test_project),   cmocka_unit_test(test_formatting),
        cmocka_unit_test(test_url),       cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_row_id),
        cmocka_unit_test(test_schema),    cmocka_unit_test(test_seed_canonical_and_deterministic),
        cmocka_unit_test(test_write_path_canonical), cmocka_unit_test(test_tenant_people),
        cmocka_unit_test(test_thumbnail_and_base),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
