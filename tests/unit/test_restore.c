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

    assert_null(r.map_file);
    assert_null(r.fallback_owner);
    assert_false(r.run_business_logic);
    restore_request_release(&r);

    assert_int_equal(restore_request_parse("target=x map=/etc/dvsnap/map.txt business-logic=run "
                                           "fallback_owner=team:00000000-0000-0000-0000-0000000000aa",
                                           "a", "p", &r, &e), 0);
    assert_string_equal(r.map_file, "/etc/dvsnap/map.txt");
    assert_string_equal(r.fallback_owner, "team:00000000-0000-0000-0000-0000000000aa");
    assert_true(r.run_business_logic);
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
    expect_parse_error("target=a map=relative.txt", "absolute path");
    expect_parse_error("target=a map=/a map=/b", "map given twice");
    expect_parse_error("target=a fallback_owner=account:00000000-0000-0000-0000-0000000000aa",
                       "systemuser:<id> or team:<id>");
    expect_parse_error("target=a business-logic=maybe", "run or bypass");
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
static char *owner_targets[] = {S("systemuser"), S("team")};
static struct dv_attribute account_attrs[] = {
    {.logical_name = S("accountid"), .type = S("Uniqueidentifier"), .valid_for_create = true, .valid_for_update = false, .valid_for_read = true, .is_primary_id = true},
    {.logical_name = S("name"), .type = S("String"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("revenue"), .type = S("Money"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("createdon"), .type = S("DateTime"), .valid_for_create = false, .valid_for_update = false, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("overriddencreatedon"), .type = S("DateTime"), .valid_for_create = true, .valid_for_update = false, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("parentaccountid"), .type = S("Lookup"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("customerid"), .type = S("Customer"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("statecode"), .type = S("State"), .valid_for_create = false, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("statuscode"), .type = S("Status"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true},
    {.logical_name = S("ownerid"), .type = S("Owner"), .targets = owner_targets, .n_targets = 2, .valid_for_create = true, .valid_for_update = true, .valid_for_read = true},
    {.logical_name = S("transactioncurrencyid"), .type = S("Lookup"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true},
    {.logical_name = S("owninguser"), .type = S("Lookup"), .valid_for_read = true},
    {.logical_name = S("new_document"), .type = S("File"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
};
/* as dv_tables_list leaves them: ownerid's "owner" relationship made one lookup per target */
static struct dv_lookup account_lookups[] = {
    {S("parentaccountid"), S("parentaccountid"), S("account"), S("accounts")},
    {S("customerid"), S("customerid_account"), S("account"), S("accounts")},
    {S("customerid"), S("customerid_contact"), S("contact"), S("contacts")},
    {S("ownerid"), S("ownerid"), S("owner"), NULL},
    {S("ownerid"), S("ownerid"), S("systemuser"), S("systemusers")},
    {S("ownerid"), S("ownerid"), S("team"), S("teams")},
    {S("transactioncurrencyid"), S("transactioncurrencyid"), S("transactioncurrency"),
     S("transactioncurrencies")},
    {S("owninguser"), S("owninguser"), S("systemuser"), S("systemusers")},
};
static struct dv_table account = {
    .logical_name = S("account"), .entity_set = S("accounts"), .primary_id = S("accountid"),
    .primary_name = S("name"), .attrs = account_attrs,
    .n_attrs = sizeof(account_attrs) / sizeof(account_attrs[0]), .lookups = account_lookups,
    .n_lookups = sizeof(account_lookups) / sizeof(account_lookups[0]),
    .ownership = DV_OWNERSHIP_USER,
};

static struct dv_attribute note_attrs[] = {
    {.logical_name = S("annotationid"), .type = S("Uniqueidentifier"), .valid_for_create = true, .valid_for_update = false, .valid_for_read = true, .is_primary_id = true},
    {.logical_name = S("subject"), .type = S("String"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("documentbody"), .type = S("String"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
    {.logical_name = S("filename"), .type = S("String"), .valid_for_create = true, .valid_for_update = true, .valid_for_read = true, .is_primary_id = false},
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

/* A map key is the stored key, an elastic table's made from the record (id and partitionid), so a
 * point keyed by id alone compares by both. */
static void test_record_key(void **state)
{
    struct dv_table reading = {.logical_name = S("new_sensorreading"), .entity_set = S("new_sensorreadings"),
                               .primary_id = S("new_sensorreadingid"), .is_elastic = true};
    struct json_doc *d = parse("{\"new_sensorreadingid\":\"r1\",\"partitionid\":\"dev-1\"}");
    struct buf scratch = BUF_INIT;
    const char *k = "r1";
    size_t kl = 2;
    assert_int_equal(restore_record_key(&reading, json_root(d), &scratch, &k, &kl), 0);
    assert_non_null(k);
    assert_int_equal(kl, 8);
    assert_memory_equal(k, "r1:dev-1", 8);
    k = "stored";
    kl = 6;
    assert_int_equal(restore_record_key(&account, json_root(d), &scratch, &k, &kl), 0);
    assert_int_equal(kl, 6);
    assert_memory_equal(k, "stored", 6);
    json_doc_free(d);
    d = parse("{\"new_sensorreadingid\":\"r1\",\"partitionid\":null}");
    k = "r1";
    kl = 2;
    assert_int_equal(restore_record_key(&reading, json_root(d), &scratch, &k, &kl), 0);
    assert_int_equal(kl, 2);
    assert_memory_equal(k, "r1", 2);
    json_doc_free(d);
    /* an elastic row without its id has no key (passed by), which is not out of memory */
    d = parse("{\"partitionid\":\"dev-1\"}");
    k = "stored";
    kl = 6;
    assert_int_equal(restore_record_key(&reading, json_root(d), &scratch, &k, &kl), -ENOENT);
    json_doc_free(d);
    buf_release(&scratch);
}

static char *normalize_h(const struct dv_table *t, const char *line, struct strset *skipped,
                         const struct restore_hooks *h)
{
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT;
    assert_int_equal(restore_normalize(t, json_root(d), h, &b, skipped), 0);
    json_doc_free(d);
    return buf_detach(&b);
}

static char *normalize(const struct dv_table *t, const char *line, struct strset *skipped,
                       restore_file_digest_fn fd, void *fctx)
{
    struct restore_hooks h = {.ctx = fctx, .file_digest = fd};
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT;
    assert_int_equal(restore_normalize(t, json_root(d), &h, &b, skipped), 0);
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
    /* sorted, no key, annotations, etag, createdon (not writable), nulls or unknown telephone1,
     * no state (compared on its own) */
    assert_string_equal(n, "{\"_parentaccountid_value\":\"b2\",\"name\":\"Café\","
                           "\"revenue\":12345678901234.1234567890}");
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

static void body_h(const struct dv_table *t, const char *line, bool create, bool state_in_body,
                   const struct restore_hooks *h, char **out, char **deferred)
{
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT, l = BUF_INIT;
    assert_int_equal(restore_body(t, json_root(d), create, state_in_body, h, &b, &l), 0);
    json_doc_free(d);
    *out = buf_detach(&b);
    *deferred = buf_detach(&l);
}

static void body(const struct dv_table *t, const char *line, bool create, struct bind_rec *br,
                 char **out, char **deferred)
{
    struct restore_hooks h = {.ctx = br, .bind = bind_cb};
    struct json_doc *d = parse(line);
    struct buf b = BUF_INIT, l = BUF_INIT;
    assert_int_equal(restore_body(t, json_root(d), create, false, &h, &b, &l), 0);
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
    assert_null(strstr(b, "statecode")); /* the state is written on its own unless told */
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


/* ---------------------------------------------------------------- principals and state */

/* A mapping for the tests: user u-src -> u-dst, team t-src unmapped (an owner gets the fallback
 * user fb-user), currency c-src -> c-dst, gone and c-gone unmapped (a lookup to them dropped),
 * anything else kept. */
struct fake_map {
    int calls;
};

static int fake_map_fn(void *ctx, const struct dv_table *t, const char *attr, size_t attr_len,
                       const char *table, const char *id, size_t id_len, const char **mt,
                       char out[40])
{
    struct fake_map *m = ctx;
    m->calls++;
    if (!table || (strcmp(table, "systemuser") && strcmp(table, "team") &&
                   strcmp(table, "transactioncurrency")))
        return RL_KEEP;
    if (id_len == 5 && !memcmp(id, "u-src", 5)) {
        snprintf(out, 40, "u-dst");
        return RL_MAPPED;
    }
    if (id_len == 5 && !memcmp(id, "c-src", 5)) {
        snprintf(out, 40, "c-dst");
        return RL_MAPPED;
    }
    if (id_len == 5 && !memcmp(id, "t-src", 5) && attr_len == 7 && !memcmp(attr, "ownerid", 7)) {
        *mt = "systemuser";
        snprintf(out, 40, "fb-user");
        return RL_MAPPED;
    }
    if ((id_len == 4 && !memcmp(id, "gone", 4)) || (id_len == 6 && !memcmp(id, "c-gone", 6)) ||
        (id_len == 5 && !memcmp(id, "t-src", 5)))
        return RL_DROP;
    return RL_KEEP;
}

#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"
#define REC_OWNED(owner, type)                                                                 \
    "{\"accountid\":\"a1\",\"name\":\"n\",\"_ownerid_value\":\"" owner "\","                  \
    "\"_ownerid_value" LLN "\":\"" type "\",\"_transactioncurrencyid_value\":\"c-src\","        \
    "\"_transactioncurrencyid_value" LLN "\":\"transactioncurrency\","                         \
    "\"_owninguser_value\":\"" owner "\",\"_owninguser_value" LLN "\":\"systemuser\","          \
    "\"statecode\":1,\"statuscode\":2,\"createdon\":\"2021-03-04T05:06:07Z\","                 \
    "\"overriddencreatedon\":\"2024-01-01T00:00:00Z\"}"

static void test_normalize_maps_principals(void **state)
{
    struct fake_map fm = {0};
    struct restore_hooks h = {.ctx = &fm, .map = fake_map_fn};
    /* the point's side mapped compares equal to the target's own ids */
    char *p = normalize_h(&account, REC_OWNED("u-src", "systemuser"), NULL, &h);
    char *t = normalize(&account, "{\"accountid\":\"a1\",\"name\":\"n\",\"_ownerid_value\":\"U-DST\","
                                  "\"_transactioncurrencyid_value\":\"c-dst\",\"statecode\":0}",
                        NULL, NULL, NULL);
    assert_string_equal(p, t);
    assert_string_equal(p, "{\"_ownerid_value\":\"u-dst\",\"_transactioncurrencyid_value\":"
                           "\"c-dst\",\"name\":\"n\"}");
    free(p);
    free(t);
    /* an owner without a match compares as the fallback; another lookup without one is gone */
    p = normalize_h(&account,
                    "{\"accountid\":\"a1\",\"_ownerid_value\":\"t-src\",\"_ownerid_value" LLN
                    "\":\"team\",\"_transactioncurrencyid_value\":\"c-gone\","
                    "\"_transactioncurrencyid_value" LLN "\":\"transactioncurrency\"}",
                    NULL, &h);
    assert_string_equal(p, "{\"_ownerid_value\":\"fb-user\"}");
    free(p);
}

static void test_body_owner_state_and_createdon(void **state)
{
    struct fake_map fm = {0};
    struct restore_hooks h = {.ctx = &fm, .map = fake_map_fn};
    char *b, *l;
    /* create of an inactive row: active (no statecode, no statuscode of another state), owner
     * bound by its concrete type, currency mapped, read-only owninguser left out, createdon
     * through overriddencreatedon and the point's own overriddencreatedon left out */
    body_h(&account, REC_OWNED("u-src", "systemuser"), true, false, &h, &b, &l);
    assert_null(strstr(b, "statecode"));
    assert_null(strstr(b, "statuscode"));
    assert_non_null(strstr(b, "\"ownerid@odata.bind\":\"/systemusers(u-dst)\""));
    assert_non_null(strstr(b, "\"transactioncurrencyid@odata.bind\":\"/transactioncurrencies(c-dst)\""));
    assert_null(strstr(b, "owninguser"));
    assert_null(strstr(b, "owners("));
    assert_non_null(strstr(b, "\"overriddencreatedon\":\"2021-03-04T05:06:07Z\""));
    assert_null(strstr(b, "2024-01-01"));
    assert_null(strstr(b, "\"createdon\""));
    free(b);
    free(l);
    /* a team owner stays a team; an unmapped team owner gets the fallback user */
    body_h(&account, REC_OWNED("t-ok", "team"), true, false, &h, &b, &l);
    assert_non_null(strstr(b, "\"ownerid@odata.bind\":\"/teams(t-ok)\""));
    free(b);
    free(l);
    body_h(&account, REC_OWNED("t-src", "team"), true, false, &h, &b, &l);
    assert_non_null(strstr(b, "\"ownerid@odata.bind\":\"/systemusers(fb-user)\""));
    free(b);
    free(l);
    /* create of an active row: its statuscode belongs to state 0 and goes in */
    body_h(&account, "{\"accountid\":\"a1\",\"statecode\":0,\"statuscode\":1}", true, false, &h,
           &b, &l);
    assert_string_equal(b, "{\"statuscode\":1}");
    free(b);
    free(l);
    /* an update carries the state only when told, both columns together; never
     * overriddencreatedon */
    body_h(&account, REC_OWNED("u-src", "systemuser"), false, true, &h, &b, &l);
    assert_non_null(strstr(b, "\"statecode\":1"));
    assert_non_null(strstr(b, "\"statuscode\":2"));
    assert_null(strstr(b, "overriddencreatedon"));
    free(b);
    free(l);
    body_h(&account, REC_OWNED("u-src", "systemuser"), false, false, &h, &b, &l);
    assert_null(strstr(b, "statecode"));
    assert_null(strstr(b, "statuscode"));
    free(b);
    free(l);
    /* a lookup without a match is left out of the body */
    body_h(&account,
           "{\"accountid\":\"a1\",\"_transactioncurrencyid_value\":\"c-gone\","
           "\"_transactioncurrencyid_value" LLN "\":\"transactioncurrency\"}",
           true, false, &h, &b, &l);
    assert_string_equal(b, "{}");
    free(b);
    free(l);
    int32_t st, ss;
    struct json_doc *d = parse("{\"statecode\":2,\"statuscode\":100000001}");
    restore_state_of(json_root(d), &st, &ss);
    assert_int_equal(st, 2);
    assert_int_equal(ss, 100000001);
    json_doc_free(d);
    d = parse("{\"statecode\":null}");
    restore_state_of(json_root(d), &st, &ss);
    assert_int_equal(st, -1);
    assert_int_equal(ss, -1);
    json_doc_free(d);
}

#define G(n) "00000000-0000-0000-0000-0000000000" n

static void add_prow(struct prow **rows, size_t *n, const char *id, const char *k1, const char *k2,
                     const char *ref, bool flag)
{
    *rows = realloc(*rows, (*n + 1) * sizeof(**rows));
    struct prow *r = &(*rows)[(*n)++];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    snprintf(r->ref, sizeof(r->ref), "%s", ref ? ref : "");
    r->key1 = k1 ? strdup(k1) : NULL;
    r->key2 = k2 ? strdup(k2) : NULL;
    r->name = k1 ? strdup(k1) : NULL;
    r->flag = flag;
}

static const char *target_of(struct pmap *pm, enum principal p, const char *id)
{
    struct pdecision *d = restore_map_find(pm, p, id, strlen(id));
    assert_non_null(d);
    return d->target;
}

static enum restore_rule rule_of(struct pmap *pm, enum principal p, const char *id)
{
    return restore_map_find(pm, p, id, strlen(id))->rule;
}

static void test_map_rules(void **state)
{
    struct pmap pm[PR_N];
    restore_pmap_init(pm);
    struct pmap *u = &pm[PR_USER], *t = &pm[PR_TEAM], *b = &pm[PR_BU], *c = &pm[PR_CURRENCY];
    /* users: by Entra object id, then domain name (any case), a leaver, the same id */
    add_prow(&u->src, &u->n_src, G("01"), "aad-1", "ann@contoso.com", NULL, false);
    add_prow(&u->src, &u->n_src, G("02"), "aad-2-prod", "Bob@Contoso.com", NULL, false);
    add_prow(&u->src, &u->n_src, G("03"), "aad-3", "leaver@contoso.com", NULL, false);
    add_prow(&u->src, &u->n_src, G("04"), "aad-4", "same@contoso.com", NULL, false);
    add_prow(&u->dst, &u->n_dst, G("a1"), "AAD-1", "other@contoso.com", NULL, false);
    add_prow(&u->dst, &u->n_dst, G("a2"), "aad-2-dev", "bob@contoso.com", NULL, false);
    add_prow(&u->dst, &u->n_dst, G("04"), "aad-4", "same@contoso.com", NULL, false);
    add_prow(&u->dst, &u->n_dst, G("a9"), "aad-9", "devonly@contoso.com", NULL, false);
    /* business units: root to root whatever its name, children by name */
    add_prow(&b->src, &b->n_src, G("b0"), "Contoso Prod", NULL, NULL, false);
    add_prow(&b->src, &b->n_src, G("b1"), "Sales", NULL, G("b0"), false);
    add_prow(&b->src, &b->n_src, G("b2"), "Gone", NULL, G("b0"), false);
    add_prow(&b->dst, &b->n_dst, G("c0"), "Contoso Dev", NULL, NULL, false);
    add_prow(&b->dst, &b->n_dst, G("c1"), "sales", NULL, G("c0"), false);
    /* teams: by name within the mapped business unit; default teams to default teams */
    add_prow(&t->src, &t->n_src, G("d0"), "Contoso Prod", NULL, G("b0"), true);
    add_prow(&t->src, &t->n_src, G("d1"), "Sales Team", NULL, G("b1"), false);
    add_prow(&t->src, &t->n_src, G("d2"), "Sales Team", NULL, G("b2"), false);
    add_prow(&t->dst, &t->n_dst, G("e0"), "Contoso Dev", NULL, G("c0"), true);
    add_prow(&t->dst, &t->n_dst, G("e1"), "Sales Team", NULL, G("c1"), false);
    add_prow(&t->dst, &t->n_dst, G("e2"), "Sales Team", NULL, G("c0"), false);
    /* currencies by ISO code */
    add_prow(&c->src, &c->n_src, G("f1"), "EUR", NULL, NULL, false);
    add_prow(&c->src, &c->n_src, G("f2"), "CHF", NULL, NULL, false);
    add_prow(&c->dst, &c->n_dst, G("f9"), "EUR", NULL, NULL, false);
    /* the map file: the leaver is mapped by hand */
    struct map_pair pair = {PR_USER, G("03"), G("a9"), 4};
    struct dverr e = {0};
    assert_int_equal(restore_map_decide(pm, &pair, 1, &e), 0);
    assert_string_equal(target_of(pm, PR_USER, G("01")), G("a1"));
    assert_int_equal(rule_of(pm, PR_USER, G("01")), RULE_ENTRA_ID);
    assert_string_equal(target_of(pm, PR_USER, G("02")), G("a2"));
    assert_int_equal(rule_of(pm, PR_USER, G("02")), RULE_DOMAIN_NAME);
    assert_string_equal(target_of(pm, PR_USER, G("03")), G("a9"));
    assert_int_equal(rule_of(pm, PR_USER, G("03")), RULE_MAP_FILE);
    assert_int_equal(rule_of(pm, PR_USER, G("04")), RULE_SAME_ID);
    assert_string_equal(target_of(pm, PR_BU, G("b0")), G("c0"));
    assert_int_equal(rule_of(pm, PR_BU, G("b0")), RULE_ROOT_BU);
    assert_string_equal(target_of(pm, PR_BU, G("b1")), G("c1"));
    assert_int_equal(rule_of(pm, PR_BU, G("b2")), RULE_UNMAPPED);
    assert_string_equal(target_of(pm, PR_TEAM, G("d0")), G("e0"));
    assert_int_equal(rule_of(pm, PR_TEAM, G("d0")), RULE_DEFAULT_TEAM);
    assert_string_equal(target_of(pm, PR_TEAM, G("d1")), G("e1")); /* not e2, of another BU */
    assert_string_equal(target_of(pm, PR_TEAM, G("d2")), "");     /* its BU is unmapped */
    assert_string_equal(target_of(pm, PR_CURRENCY, G("f1")), G("f9"));
    assert_int_equal(rule_of(pm, PR_CURRENCY, G("f1")), RULE_ISO_CODE);
    assert_string_equal(target_of(pm, PR_CURRENCY, G("f2")), "");
    /* an id the point's rows do not list: the same id in the target, else unmapped */
    assert_string_equal(target_of(pm, PR_USER, "00000000-0000-0000-0000-0000000000A9"), G("a9"));
    assert_int_equal(rule_of(pm, PR_USER, G("77")), RULE_UNMAPPED);
    assert_int_equal(pm[PR_USER].by_rule[RULE_UNMAPPED], 1);
    assert_string_equal(restore_rule_name(RULE_ENTRA_ID), "entra_object_id");
    for (int p = 0; p < PR_N; p++)
        restore_pmap_release(&pm[p]);

    /* a pair naming an id the target lacks is refused before anything is written */
    restore_pmap_init(pm);
    add_prow(&pm[PR_USER].dst, &pm[PR_USER].n_dst, G("a1"), "x", "y", NULL, false);
    struct map_pair bad = {PR_USER, G("01"), G("ff"), 7};
    assert_int_equal(restore_map_decide(pm, &bad, 1, &e), -EINVAL);
    assert_non_null(strstr(dverr_msg(&e), "line 7"));
    for (int p = 0; p < PR_N; p++)
        restore_pmap_release(&pm[p]);
}

static void test_map_file_and_fallback_parse(void **state)
{
    const char *text = "# users who left\n"
                       "systemuser " G("01") " " G("A1") "   # Ann\n"
                       "\n"
                       "  team\t" G("02") " " G("a2") "\r\n"
                       "transactioncurrency " G("03") " " G("a3");
    struct map_pair *pairs = NULL;
    size_t n = 0;
    struct dverr e = {0};
    assert_int_equal(restore_map_file_parse(text, strlen(text), &pairs, &n, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(pairs[0].table, PR_USER);
    assert_string_equal(pairs[0].target, G("a1")); /* lower-cased */
    assert_int_equal(pairs[1].table, PR_TEAM);
    assert_int_equal(pairs[1].line, 4);
    assert_int_equal(pairs[2].table, PR_CURRENCY);
    free(pairs);
    const char *bad[] = {"account " G("01") " " G("02"), "systemuser " G("01"),
                         "systemuser " G("01") " not-a-guid", "systemuser a b c"};
    for (size_t i = 0; i < 4; i++) {
        dverr_clear(&e);
        assert_int_equal(restore_map_file_parse(bad[i], strlen(bad[i]), &pairs, &n, &e), -EINVAL);
        assert_non_null(strstr(dverr_msg(&e), "line 1"));
        assert_null(pairs);
    }
    char t[16], id[40];
    assert_int_equal(restore_fallback_parse("team:" G("AB"), t, id), 0);
    assert_string_equal(t, "team");
    assert_string_equal(id, G("ab"));
    assert_int_equal(restore_fallback_parse("systemuser:" G("01"), t, id), 0);
    assert_int_equal(restore_fallback_parse("account:" G("01"), t, id), -EINVAL);
    assert_int_equal(restore_fallback_parse("systemuser:x", t, id), -EINVAL);
    assert_int_equal(restore_fallback_parse(G("01"), t, id), -EINVAL);
}

static const char *fake_set(const void *ctx, const char *table)
{
    if (!strcmp(table, "systemuser"))
        return "systemusers";
    if (!strcmp(table, "contact"))
        return "contacts";
    return NULL;
}

static char *party(const char *row, bool *unmapped)
{
    struct fake_map fm = {0};
    struct json_doc *d = parse(row);
    struct buf b = BUF_INIT;
    assert_int_equal(restore_party_json(json_root(d), fake_map_fn, &fm, fake_set, NULL, &b,
                                        unmapped), 0);
    json_doc_free(d);
    char *s = buf_detach(&b);
    return s ? s : strdup("");
}

static void test_party_json(void **state)
{
    bool um;
    char *p = party("{\"activitypartyid\":\"p1\",\"_activityid_value\":\"e1\","
                    "\"_partyid_value\":\"u-src\",\"_partyid_value" LLN "\":\"systemuser\","
                    "\"participationtypemask\":1,\"addressused\":\"ann@contoso.com\"}", &um);
    assert_string_equal(p, "{\"participationtypemask\":1,\"partyid_systemuser@odata.bind\":"
                           "\"/systemusers(u-dst)\",\"addressused\":\"ann@contoso.com\"}");
    assert_false(um);
    free(p);
    /* a contact: as it is */
    p = party("{\"_partyid_value\":\"C1\",\"_partyid_value" LLN "\":\"contact\","
              "\"participationtypemask\":2}", &um);
    assert_string_equal(p, "{\"participationtypemask\":2,\"partyid_contact@odata.bind\":"
                           "\"/contacts(c1)\"}");
    free(p);
    /* a user without a match keeps its address only */
    p = party("{\"_partyid_value\":\"gone\",\"_partyid_value" LLN "\":\"systemuser\","
              "\"participationtypemask\":3,\"addressused\":\"x@y.z\"}", &um);
    assert_string_equal(p, "{\"participationtypemask\":3,\"addressused\":\"x@y.z\"}");
    assert_true(um);
    free(p);
    /* ... and without an address it is left out; so are the service's own masks 8 and 9 */
    p = party("{\"_partyid_value\":\"gone\",\"_partyid_value" LLN "\":\"systemuser\","
              "\"participationtypemask\":3}", &um);
    assert_string_equal(p, "");
    assert_true(um);
    free(p);
    p = party("{\"_partyid_value\":\"u-src\",\"_partyid_value" LLN "\":\"systemuser\","
              "\"participationtypemask\":9}", &um);
    assert_string_equal(p, "");
    free(p);
    char nav[64];
    restore_parties_nav("email", nav, sizeof(nav));
    assert_string_equal(nav, "email_activity_parties");
}


/* ---------------------------------------------------------------- refused binds */

static size_t drop(struct part *p, struct restore_table_outcome *o, const char *body, int status,
                   const char *response)
{
    static struct rtab tab;
    tab.out = o;
    free(p->body);
    memset(p, 0, sizeof(*p));
    p->kind = K_CREATE;
    p->method = "PATCH";
    p->path = (char *)"emails(e1)";
    p->tab = &tab;
    p->status = status;
    p->body = strdup(body);
    return restore_drop_refused_binds(p, response);
}

static void test_refused_binds(void **state)
{
    struct restore_table_outcome o = {0};
    struct part p = {0};
    const char *email =
        "{\"subject\":\"s\",\"regardingobjectid_account_email@odata.bind\":\"/accounts(a1)\","
        "\"email_activity_parties\":[{\"participationtypemask\":1,"
        "\"partyid_systemuser@odata.bind\":\"/systemusers(u1)\"},{\"participationtypemask\":2,"
        "\"partyid_contact@odata.bind\":\"/contacts(c1)\",\"addressused\":\"c@x.y\"},"
        "{\"participationtypemask\":2,\"partyid_contact@odata.bind\":\"/contacts(C1)\"}]}";
    /* 404 naming a contact: both its parties lose the bind; one keeps its address, the other
     * names nobody and goes */
    assert_int_equal(drop(&p, &o, email, 404,
                          "{\"error\":{\"code\":\"0x80040217\",\"message\":\"contact With Id = c1 "
                          "Does Not Exist\"}}"), 2);
    assert_string_equal(p.body,
                        "{\"subject\":\"s\",\"regardingobjectid_account_email@odata.bind\":"
                        "\"/accounts(a1)\",\"email_activity_parties\":[{\"participationtypemask\":1,"
                        "\"partyid_systemuser@odata.bind\":\"/systemusers(u1)\"},"
                        "{\"participationtypemask\":2,\"addressused\":\"c@x.y\"}]}");
    assert_int_equal(o.lookups_dropped, 2);
    assert_non_null(strstr(o.lookup_note, "the target has no such record"));
    /* another 4xx that names the navigation property: that bind goes */
    assert_int_equal(drop(&p, &o, email, 400,
                          "{\"error\":{\"message\":\"regardingobjectid_account_email cannot point "
                          "there\"}}"), 1);
    assert_null(strstr(p.body, "regardingobjectid"));
    assert_non_null(strstr(p.body, "/systemusers(u1)"));
    /* a 404 without an id, a 400 naming no bind, a 5xx: nothing dropped */
    assert_int_equal(drop(&p, &o, email, 404, "{\"error\":{\"message\":\"not found\"}}"), 0);
    assert_int_equal(drop(&p, &o, email, 400, "{\"error\":{\"message\":\"bad subject\"}}"), 0);
    assert_int_equal(drop(&p, &o, email, 503, "With Id = a1 Does Not Exist"), 0);
    assert_string_equal(p.body, email);
    /* a state write is never stripped (its bind is the record itself) */
    p.kind = K_STATE;
    p.status = 404;
    assert_int_equal(restore_drop_refused_binds(&p, "incident With Id = a1 Does Not Exist"), 0);
    assert_int_equal(o.lookups_dropped, 3);
    free(p.body);
    free(o.lookup_note);
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
    o.tables[1].excluded = true;
    o.tables[0].fallback_owners = 2;
    o.tables[0].states_set = 1;
    snprintf(o.fallback_owner, sizeof(o.fallback_owner), "systemuser:u1");
    o.mapping_json = strdup("{\"systemuser\":{\"matched\":1}}");
    o.unmapped_json = strdup("[{\"table\":\"systemuser\",\"id\":\"x\"}]");
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
    assert_string_equal(json_get_str(r, "business_logic"), "bypassed");
    assert_string_equal(json_get_str(r, "fallback_owner"), "systemuser:u1");
    assert_string_equal(json_get(r, "fallback_owner_rows")->str, "2");
    assert_string_equal(json_get(r, "states_set")->str, "1");
    assert_non_null(json_get(json_get(r, "mapping"), "systemuser"));
    assert_int_equal(json_get(r, "unmapped_principals")->n_children, 1);
    const struct json_node *ex = json_get(r, "excluded_tables");
    assert_int_equal(ex->n_children, 1);
    assert_string_equal(json_get_str(ex->child, "table"), "contact");
    assert_string_equal(json_get_str(ex->child, "reason"), "a \"quoted\" note");
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
        cmocka_unit_test(test_record_key),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_normalize_ignores_what_restore_cannot_write),
        cmocka_unit_test(test_normalize_files_by_bytes),
        cmocka_unit_test(test_body_update_and_create),
        cmocka_unit_test(test_body_polymorphic_and_deferred),
        cmocka_unit_test(test_normalize_maps_principals),
        cmocka_unit_test(test_body_owner_state_and_createdon),
        cmocka_unit_test(test_map_rules),
        cmocka_unit_test(test_map_file_and_fallback_parse),
        cmocka_unit_test(test_party_json),
        cmocka_unit_test(test_refused_binds),
        cmocka_unit_test(test_outcome_json),
        cmocka_unit_test(test_operation_id),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
