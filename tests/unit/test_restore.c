/* test_restore: the pure half of restore with canned data: request parsing and its refusals,
 * record normalisation (what counts as a difference), PATCH bodies with @odata.bind lookups and
 * deferred binds, the key map, base64 and the outcome JSON. The I/O half is tested against dvsim
 * in tests/integration/restore_*.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/engine/restore.h"
#include "backend/engine/restore_int.h"

/* ---------------------------------------------------------------- requests */

static void test_parse_full(void **state)
{
    struct restore_request r;
    struct dverr e = {0};
    assert_int_equal(restore_request_parse("target=contoso-dev tables=account,contact,account "
                                           "audit=skip confirm=contoso-dev dry-run\n",
                                           "contoso-prod", "2026-11-21T090000Z", &r, &e),
                     0);
    assert_string_equal(r.target, "contoso-dev");
    assert_string_equal(r.confirm, "contoso-dev");
    assert_string_equal(r.source_env, "contoso-prod");
    assert_string_equal(r.point, "2026-11-21T090000Z");
    assert_non_null(r.tables);
    assert_string_equal(r.tables[0], "account");
    assert_string_equal(r.tables[1], "contact");
    assert_null(r.tables[2]); /* duplicate dropped */
    assert_false(r.include_audit);
    assert_true(r.dry_run);
    restore_request_release(&r);

    assert_int_equal(restore_request_parse("  target=x   audit=include  ", "a", "p", &r, &e), 0);
    assert_true(r.include_audit);
    assert_false(r.dry_run);
    assert_null(r.confirm);
    assert_null(r.tables);
    restore_request_release(&r);
}

static void expect_parse_error(const char *line, const char *msg_part)
{
    struct restore_request r;
    struct dverr e = {0};
    assert_int_equal(restore_request_parse(line, "a", "p", &r, &e), -EINVAL);
    if (!strstr(dverr_msg(&e), msg_part)) {
        print_error("line '%s': message '%s' lacks '%s'\n", line, dverr_msg(&e), msg_part);
        fail();
    }
    assert_null(r.target);
    assert_null(r.tables);
}

static void test_parse_errors(void **state)
{
    expect_parse_error("", "target=ENV is required");
    expect_parse_error("confirm=x", "target=ENV is required");
    expect_parse_error("target=a target=b", "target given twice");
    expect_parse_error("target=a colour=red", "unknown key 'colour'");
    expect_parse_error("target=a please", "unknown word 'please'");
    expect_parse_error("target=a audit=maybe", "audit must be include or skip");
    expect_parse_error("target=a tables=account,,contact", "not a table name");
    expect_parse_error("target=a tables=acc/ount", "not a table name");
    expect_parse_error("target=../etc", "not an environment name");
    expect_parse_error("target=a dry-run=no", "dry-run takes no value");
}

/* ---------------------------------------------------------------- key map */

static void test_rmap(void **state)
{
    struct rmap m;
    rmap_init(&m);
    char k[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        bool fresh;
        struct rmap_entry *e = rmap_put(&m, k, (size_t)n, &fresh);
        assert_non_null(e);
        assert_true(fresh);
        e->action = (uint8_t)(i % 5);
    }
    assert_int_equal(m.n, 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(k, sizeof(k), "key-%d", i);
        struct rmap_entry *e = rmap_get(&m, k, (size_t)n);
        assert_non_null(e);
        assert_int_equal(e->action, i % 5);
        assert_string_equal(e->key, k);
    }
    bool fresh = true;
    assert_non_null(rmap_put(&m, "key-7", 5, &fresh));
    assert_false(fresh);
    assert_null(rmap_get(&m, "key-5000", 8));
    assert_null(rmap_get(&m, "key-", 4));
    rmap_release(&m);
    assert_null(rmap_get(&m, "key-1", 5));
}

static void test_base64(void **state)
{
    struct buf b = BUF_INIT, d = BUF_INIT;
    const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        buf_reset(&b);
        buf_reset(&d);
        assert_int_equal(base64_encode(in[i], strlen(in[i]), &b), 0);
        assert_string_equal(b.data, out[i]);
        assert_int_equal(base64_decode(b.data, b.len, &d), 0);
        assert_int_equal(d.len, strlen(in[i]));
        assert_memory_equal(d.data, in[i], d.len);
    }
    buf_reset(&d);
    assert_int_equal(base64_decode("Zm9v!", 5, &d), -EINVAL);
    buf_release(&b);
    buf_release(&d);
}

/* ---------------------------------------------------------------- canned definitions */

#define S(x) ((char *)(x)) /* definitions own their strings; these are never freed */
static struct dv_attribute account_attrs[] = {
    {S("accountid"), S("Uniqueidentifier"), true, false, true, true},
    {S("name"), S("String"), true, true, true, false},
    {S("revenue"), S("Money"), true, true, true, false},
    {S("createdon"), S("DateTime"), false, false, true, false},
    {S("overriddencreatedon"), S("DateTime"), true, false, true, false},
    {S("parentaccountid"), S("Lookup"), true, true, true, false},
    {S("customerid"), S("Customer"), true, true, true, false},
    {S("statecode"), S("State"), false, true, true, false},
    {S("new_document"), S("File"), true, true, true, false},
};
static struct dv_lookup account_lookups[] = {
    {S("parentaccountid"), S("parentaccountid"), S("account"), S("accounts")},
    {S("customerid"), S("customerid_account"), S("account"), S("accounts")},
    {S("customerid"), S("customerid_contact"), S("contact"), S("contacts")},
};
static struct dv_table account = {
    .logical_name = S("account"), .entity_set = S("accounts"), .primary_id = S("accountid"),
    .primary_name = S("name"), .attrs = account_attrs, .n_attrs = 9,
    .lookups = account_lookups, .n_lookups = 3,
};

static struct dv_attribute note_attrs[] = {
    {S("annotationid"), S("Uniqueidentifier"), true, false, true, true},
    {S("subject"), S("String"), true, true, true, false},
    {S("documentbody"), S("String"), true, true, true, false},
    {S("filename"), S("String"), true, true, true, false},
};
static struct dv_table annotation = {
    .logical_name = S("annotation"), .entity_set = S("annotations"), .primary_id = S("annotationid"),
    .attrs = note_attrs, .n_attrs = 4,
};

static struct json_doc *parse(const char *s)
{
    struct json_doc *d = NULL;
    struct dverr e = {0};
    assert_int_equal(json_parse(s, strlen(s), NULL, &d, &e), 0);
    return d;
}

static char *normalize(const struct dv_table *t, const char *line, struct strset *skipped,
                       restore_file_digest_fn fd, void *fctx)
{
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT;
    assert_int_equal(restore_normalize(t, json_root(d), fd, fctx, &b, skipped), 0);
    json_doc_free(d);
    return buf_detach(&b);
}

#define REC_A                                                                                      \
    "{\"accountid\":\"a1\",\"@odata.etag\":\"W/\\\"12\\\"\",\"createdon\":\"2026-01-01T00:00:00Z\"," \
    "\"name\":\"Caf\\u00e9\",\"revenue\":12345678901234.1234567890,"                            \
    "\"revenue@OData.Community.Display.V1.FormattedValue\":\"$12,345,678,901,234.12\","         \
    "\"_parentaccountid_value\":\"B2\",\"_parentaccountid_value@Microsoft.Dynamics.CRM."        \
    "lookuplogicalname\":\"account\",\"telephone1\":null,\"statecode\":0,"                      \
    "\"_customerid_value\":null,\"new_document\":null}"

static void test_normalize_ignores_what_restore_cannot_write(void **state)
{
    struct strset sk = {0};
    char *n = normalize(&account, REC_A, &sk, NULL, NULL);
    /* sorted, no key, annotations, etag, createdon (not writable), nulls or unknown telephone1 */
    assert_string_equal(n, "{\"_parentaccountid_value\":\"b2\",\"name\":\"Café\","
                           "\"revenue\":12345678901234.1234567890,\"statecode\":0}");
    assert_true(strset_has(&sk, "createdon", 9));
    assert_true(strset_has(&sk, "telephone1", 10));
    assert_false(strset_has(&sk, "name", 4));
    assert_false(strset_has(&sk, "@odata.etag", 11));
    assert_false(strset_has(&sk, "revenue@OData.Community.Display.V1.FormattedValue", 49));
    free(n);

    /* another version of the same content: different etag, createdon, annotations, member order,
     * absent instead of null -> same normalised content */
    char *m = normalize(&account,
                        "{\"statecode\":0,\"accountid\":\"a1\",\"@odata.etag\":\"W/\\\"99\\\"\","
                        "\"createdon\":\"2026-02-02T00:00:00Z\",\"name\":\"Café\","
                        "\"revenue\":12345678901234.1234567890,\"_parentaccountid_value\":\"b2\"}",
                        NULL, NULL, NULL);
    char *n2 = normalize(&account, REC_A, NULL, NULL, NULL);
    assert_string_equal(m, n2);
    free(m);
    /* an exact number with different digits is a difference (never through a double) */
    char *r = normalize(&account, "{\"accountid\":\"a1\",\"name\":\"Café\","
                                  "\"revenue\":12345678901234.1234567891,\"statecode\":0,"
                                  "\"_parentaccountid_value\":\"b2\"}",
                        NULL, NULL, NULL);
    assert_string_not_equal(r, n2);
    free(r);
    free(n2);
    strset_release(&sk);
}

static int fake_digest(void *ctx, const char *column, const struct json_node *v, char hex[65])
{
    const char *blob = ctx;
    if (!blob)
        return 1;
    snprintf(hex, 65, "%s", blob);
    return 0;
}

static int inline_digest(void *ctx, const char *column, const struct json_node *v, char hex[65])
{
    if (!v || v->type != JSON_STRING)
        return 1;
    struct buf raw = BUF_INIT;
    assert_int_equal(base64_decode(v->str, v->str_len, &raw), 0);
    sha256_hex(raw.data, raw.len, hex);
    buf_release(&raw);
    return 0;
}

static void test_normalize_files_by_bytes(void **state)
{
    char hex[65];
    sha256_hex("hello", 5, hex);
    /* point: documentbody held as a blob (no member); target: inline base64 of the same bytes */
    char *a = normalize(&annotation, "{\"annotationid\":\"n1\",\"subject\":\"s\"}", NULL,
                        fake_digest, hex);
    char *b = normalize(&annotation,
                        "{\"annotationid\":\"n1\",\"subject\":\"s\",\"documentbody\":\"aGVsbG8=\"}",
                        NULL, inline_digest, NULL);
    assert_string_equal(a, b);
    assert_non_null(strstr(a, hex));
    char *c = normalize(&annotation,
                        "{\"annotationid\":\"n1\",\"subject\":\"s\",\"documentbody\":\"aGVsbG8h\"}",
                        NULL, inline_digest, NULL);
    assert_string_not_equal(a, c);
    free(a);
    free(b);
    free(c);
    /* a file column's value is a file id: only the bytes' hash counts */
    char *f1 = normalize(&account, "{\"accountid\":\"a\",\"new_document\":\"id-1\"}", NULL,
                         fake_digest, hex);
    char *f2 = normalize(&account, "{\"accountid\":\"a\",\"new_document\":\"id-2\"}", NULL,
                         fake_digest, hex);
    assert_string_equal(f1, f2);
    free(f1);
    free(f2);
}

/* ---------------------------------------------------------------- bodies */

struct bind_rec {
    const char *defer_id; /* defer binds to this id */
    int calls;
};

static int bind_cb(void *ctx, const struct dv_lookup *lk, const char *id, size_t len)
{
    struct bind_rec *b = ctx;
    b->calls++;
    return b->defer_id && strlen(b->defer_id) == len && !memcmp(b->defer_id, id, len) ? RB_DEFER
                                                                                     : RB_INCLUDE;
}

static void body(const struct dv_table *t, const char *line, bool create, struct bind_rec *br,
                 char **out, char **deferred)
{
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT, l = BUF_INIT;
    assert_int_equal(restore_body(t, json_root(d), create, bind_cb, br, NULL, NULL, &b, &l), 0);
    json_doc_free(d);
    *out = buf_detach(&b);
    *deferred = buf_detach(&l);
}

static void test_body_update_and_create(void **state)
{
    struct bind_rec br = {0};
    char *b, *l;
    body(&account, REC_A, false, &br, &b, &l);
    /* update: writable for update only, nulls written to clear, lookups as binds */
    assert_null(strstr(b, "createdon"));
    assert_null(strstr(b, "accountid\""));
    assert_null(strstr(b, "etag"));
    assert_null(strstr(b, "FormattedValue"));
    assert_null(strstr(b, "new_document"));
    assert_null(strstr(b, "telephone1")); /* not a known attribute */
    assert_non_null(strstr(b, "\"parentaccountid@odata.bind\":\"/accounts(B2)\""));
    assert_non_null(strstr(b, "\"customerid_account@odata.bind\":null"));
    assert_non_null(strstr(b, "\"statecode\":0"));
    assert_string_equal(l, "");
    assert_int_equal(br.calls, 1);
    struct json_doc *chk = parse(b);
    json_doc_free(chk);
    free(b);
    free(l);

    body(&account, REC_A, true, &br, &b, &l);
    /* create: valid for create, no nulls, no statecode (not valid for create) */
    assert_null(strstr(b, "statecode"));
    assert_null(strstr(b, "null"));
    assert_non_null(strstr(b, "\"name\":\"Café\""));
    assert_non_null(strstr(b, "\"parentaccountid@odata.bind\":\"/accounts(B2)\""));
    free(b);
    free(l);
}

static void test_body_polymorphic_and_deferred(void **state)
{
    struct bind_rec br = {.defer_id = "b2"};
    char *b, *l;
    body(&account,
         "{\"accountid\":\"a1\",\"name\":\"x\",\"_customerid_value\":\"c9\","
         "\"_customerid_value@Microsoft.Dynamics.CRM.lookuplogicalname\":\"contact\","
         "\"_parentaccountid_value\":\"b2\"}",
         true, &br, &b, &l);
    assert_non_null(strstr(b, "\"customerid_contact@odata.bind\":\"/contacts(c9)\""));
    assert_null(strstr(b, "parentaccountid"));
    assert_string_equal(l, "{\"parentaccountid@odata.bind\":\"/accounts(b2)\"}");
    free(b);
    free(l);
}

/* ---------------------------------------------------------------- outcome */

static void test_outcome_json(void **state)
{
    struct restore_outcome o;
    memset(&o, 0, sizeof(o));
    snprintf(o.state, sizeof(o.state), "done");
    snprintf(o.operation_id, sizeof(o.operation_id), "r20261122T010203Z-abcd");
    o.source_env = strdup("contoso-prod");
    o.point = strdup("2026-11-21T090000Z");
    o.target = strdup("contoso-dev");
    o.n_tables = 2;
    o.tables = calloc(2, sizeof(*o.tables));
    o.tables[0].table = strdup("account");
    o.tables[0].created = 3;
    o.tables[0].updated = 4;
    o.tables[1].table = strdup("contact");
    o.tables[1].deleted = 5;
    o.tables[1].note = strdup("a \"quoted\" note");
    o.tables[1].first_keys_json = strdup("{\"create\":[],\"update\":[\"k\"],\"delete\":[]}");
    o.started_ms = 1763715600000;
    o.finished_ms = 1763715601500;
    o.skipped_fields_json = strdup("{\"account\":[\"createdon\"]}");
    struct buf b = BUF_INIT;
    assert_int_equal(restore_outcome_json(&o, &b), 0);
    struct json_doc *d = parse(b.data);
    const struct json_node *r = json_root(d);
    assert_string_equal(json_get_str(r, "state"), "done");
    assert_string_equal(json_get_str(r, "target"), "contoso-dev");
    assert_string_equal(json_get(r, "created")->str, "3");
    assert_string_equal(json_get(r, "deleted")->str, "5");
    assert_string_equal(json_get(r, "elapsed_ms")->str, "1500");
    assert_string_equal(json_get_str(r, "started_at"), "2025-11-21T09:00:00Z");
    assert_int_equal(json_get(r, "tables")->n_children, 2);
    assert_int_equal(json_get(r, "safety_point")->type, JSON_NULL);
    json_doc_free(d);
    buf_release(&b);
    restore_outcome_release(&o);
    assert_null(o.tables);
}

static void test_operation_id(void **state)
{
    char a[32];
    restore_operation_id(a);
    assert_int_equal(strlen(a), 22);
    assert_int_equal(a[0], 'r');
    assert_int_equal(a[16], 'Z');
    assert_int_equal(a[17], '-');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_rmap),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_normalize_ignores_what_restore_cannot_write),
        cmocka_unit_test(test_normalize_files_by_bytes),
        cmocka_unit_test(test_body_update_and_create),
        cmocka_unit_test(test_body_polymorphic_and_deferred),
        cmocka_unit_test(test_outcome_json),
        cmocka_unit_test(test_operation_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
