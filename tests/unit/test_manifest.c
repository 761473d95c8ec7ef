/* test_manifest: the manifest's "segment_bytes" (issue 6, size-based compaction on every store):
 * rendered when every size is known and parsed back; a manifest without it (older ones) still
 * reads; a damaged one is refused. The store's size memo. The compaction rule on a store without
 * a local directory (as Azure / S3): it decides from recorded or remembered sizes and sends no
 * stat; with a size unknown it leaves the chain alone, and the length cap still applies.
 * Format 2 (shared tables and files documents; a files document has the shape of a format-3
 * chunk, filelist.h, which renders it here): a point renders and parses back to the same inline
 * manifest; an idle child (same tables and files, no changes) has the same shared documents and
 * a manifest that names only them; damage is refused (a change for a table the documents lack, a
 * document that is not an array, a format-2 manifest without its objects). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/filelist.h"
#include "backend/repo/manifest.h"
#include "backend/objstore/objstore.h"
#include "backend/repo/repo.h"
#include "backend/repo/segment.h"

static char ids[40][65];

static void make_ids(void)
{
    for (int i = 0; i < 40; i++)
        snprintf(ids[i], sizeof ids[i], "%064x", i + 1);
}

/* A point with one table whose chain is the first n ids, with sizes (or NULL). */
static struct point *point_with(size_t n, const uint64_t *sizes)
{
    struct point *p = calloc(1, sizeof *p);
    p->env = strdup("contoso-prod");
    p->name = strdup("2026-11-21T090000Z");
    p->kind = strdup("system");
    p->taken_at = 1795338000;
    p->tables = calloc(1, sizeof *p->tables);
    p->n_tables = 1;
    struct point_table *t = &p->tables[0];
    t->name = strdup("account");
    t->records = 3;
    t->bytes = 100;
    t->segments = calloc(n ? n : 1, sizeof *t->segments);
    for (size_t k = 0; k < n; k++)
        t->segments[t->n_segments++] = strdup(ids[k]);
    if (sizes) {
        t->segment_sizes = calloc(n ? n : 1, sizeof *t->segment_sizes);
        memcpy(t->segment_sizes, sizes, n * sizeof *sizes);
    }
    return p;
}

static void test_sizes_round_trip(void **state)
{
    (void)state;
    uint64_t sizes[3] = {1000, 20, 123456789012345ull}; /* 15 digits: exact in the manifest */
    struct point *p = point_with(3, sizes), *q = NULL;
    struct buf doc = BUF_INIT;
    struct dverr e = {0};
    assert_int_equal(manifest_render(p, &doc, &e), 0);
    assert_non_null(strstr(doc.data, "\"segment_bytes\":[1000,20,123456789012345]"));
    assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), 0);
    assert_non_null(q->tables[0].segment_sizes);
    for (int k = 0; k < 3; k++)
        assert_true(q->tables[0].segment_sizes[k] == sizes[k]);
    struct point *d = point_dup(q); /* a copy keeps them too */
    assert_non_null(d);
    assert_true(d->tables[0].segment_sizes && d->tables[0].segment_sizes[1] == 20);
    point_free(d);
    point_free(q);
    point_free(p);
    buf_release(&doc);
}

static void test_unknown_size_not_recorded(void **state)
{
    (void)state;
    uint64_t sizes[2] = {1000, 0};
    struct point *p = point_with(2, sizes), *q = NULL;
    struct buf doc = BUF_INIT;
    struct dverr e = {0};
    assert_int_equal(manifest_render(p, &doc, &e), 0);
    assert_null(strstr(doc.data, "segment_bytes"));
    assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), 0);
    assert_null(q->tables[0].segment_sizes);
    point_free(q);
    point_free(p);
    buf_release(&doc);
}

/* A manifest written before the field existed. */
static void test_old_manifest_reads(void **state)
{
    (void)state;
    struct buf doc = BUF_INIT;
    buf_printf(&doc,
               "{\"format\":1,\"env\":\"contoso-prod\",\"name\":\"2026-11-21T090000Z\","
               "\"kind\":\"system\",\"label\":null,\"taken_at\":1795338000,\"expires_at\":0,"
               "\"tables\":[{\"name\":\"account\",\"entity_set\":\"accounts\","
               "\"primary_key\":\"accountid\",\"records\":3,\"bytes\":100,"
               "\"segments\":[\"%s\",\"%s\"],\"delta\":null,\"created\":0,\"updated\":0,"
               "\"deleted\":0,\"changes_bytes\":4,\"schema\":null,\"delta_link\":null,"
               "\"full_read_reason\":null}],\"files\":[],\"not_captured\":null,"
               "\"environment\":null,\"audit_table\":null}",
               ids[0], ids[1]);
    struct point *q = NULL;
    struct dverr e = {0};
    assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), 0);
    assert_int_equal(q->tables[0].n_segments, 2);
    assert_null(q->tables[0].segment_sizes);
    point_free(q);
    buf_release(&doc);
}

/* The definitions index and version stamp (engine/capture_meta.c) survive a round trip and a
 * copy; a manifest without them (older ones) has neither; a bad index id is refused. */
static void test_definitions_round_trip(void **state)
{
    (void)state;
    struct point *p = point_with(1, NULL), *q = NULL, *old = NULL;
    struct buf doc = BUF_INIT, none = BUF_INIT;
    struct dverr e = {0};
    assert_int_equal(manifest_render(p, &none, &e), 0);
    assert_null(strstr(none.data, "definitions"));
    assert_int_equal(manifest_parse(none.data, none.len, &old, &e), 0);
    assert_null(old->definitions);
    assert_null(old->metadata_stamp);
    p->definitions = strdup(ids[5]);
    p->metadata_stamp = strdup("1234!12/07/2026 15:00:00");
    assert_int_equal(manifest_render(p, &doc, &e), 0);
    assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), 0);
    assert_string_equal(q->definitions, ids[5]);
    assert_string_equal(q->metadata_stamp, "1234!12/07/2026 15:00:00");
    struct point *d = point_dup(q);
    assert_non_null(d);
    assert_string_equal(d->metadata_stamp, q->metadata_stamp);
    point_free(d);
    point_free(q);
    q = NULL;
    char *at = strstr(doc.data, ids[5]);
    at[0] = 'z'; /* not an object id */
    assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), -EIO);
    point_free(old);
    point_free(p);
    buf_release(&doc);
    buf_release(&none);
}

static void test_damaged_sizes_refused(void **state)
{
    (void)state;
    const char *bad[] = {"[10]", "[10,20,30]", "[10,0]", "[10,-1]", "[10,1.5]", "[10,\"20\"]",
                         "{}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct buf doc = BUF_INIT;
        buf_printf(&doc,
                   "{\"format\":1,\"env\":\"contoso-prod\",\"name\":\"2026-11-21T090000Z\","
                   "\"kind\":\"system\",\"taken_at\":1,\"tables\":[{\"name\":\"account\","
                   "\"segments\":[\"%s\",\"%s\"],\"segment_bytes\":%s}]}",
                   ids[0], ids[1], bad[i]);
        struct point *q = NULL;
        struct dverr e = {0};
        assert_int_equal(manifest_parse(doc.data, doc.len, &q, &e), -EIO);
        assert_null(q);
        assert_non_null(strstr(dverr_msg(&e), "segment"));
        buf_release(&doc);
    }
}

static void test_size_memo(void **state)
{
    (void)state;
    struct objstore_sizes *m = objstore_sizes_new();
    uint64_t v = 0;
    char name[80];
    segment_object_name(ids[0], name);
    assert_false(objstore_sizes_get(m, name, &v));
    objstore_sizes_note(m, name, 1234);
    assert_true(objstore_sizes_get(m, name, &v));
    assert_true(v == 1234);
    objstore_sizes_note(m, "points/contoso-prod/2026-11-21T090000Z.json", 5);
    assert_false(objstore_sizes_get(m, "points/contoso-prod/2026-11-21T090000Z.json", &v));
    /* bounded: past the cap it starts over rather than growing */
    for (int i = 0; i < OBJSTORE_SIZES_MAX + 10; i++) {
        char n[80];
        snprintf(n, sizeof n, "objects/00/%064d", i);
        objstore_sizes_note(m, n, (uint64_t)i + 1);
    }
    assert_false(objstore_sizes_get(m, name, &v));
    char last[80];
    snprintf(last, sizeof last, "objects/00/%064d", OBJSTORE_SIZES_MAX + 9);
    assert_true(objstore_sizes_get(m, last, &v));
    assert_true(v == OBJSTORE_SIZES_MAX + 10);
    objstore_sizes_note(NULL, name, 1); /* a store without a memo */
    assert_false(objstore_sizes_get(NULL, name, &v));
    objstore_sizes_free(m);
    objstore_sizes_free(NULL);
}

/* ---- the compaction rule on a store with no local directory ---- */

static int stats;
static int f_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    (void)impl, (void)name, (void)data, (void)len, (void)err;
    return -EIO;
}
static int f_put_file(void *impl, const char *name, const char *path, struct dverr *err)
{
    (void)impl, (void)name, (void)path, (void)err;
    return -EIO;
}
static int f_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                 struct dverr *err)
{
    (void)impl, (void)name, (void)off, (void)len, (void)out, (void)err;
    return -ENOENT;
}
static int f_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    (void)impl, (void)name, (void)err;
    stats++;
    *size = 1;
    return 0;
}
static int f_list(void *impl, const char *prefix, int (*fn)(void *, const char *, uint64_t),
                  void *ctx, struct dverr *err)
{
    (void)impl, (void)prefix, (void)fn, (void)ctx, (void)err;
    return 0;
}
static int f_del(void *impl, const char *name, struct dverr *err)
{
    (void)impl, (void)name, (void)err;
    return -ENOENT;
}
static void f_free(void *impl)
{
    (void)impl;
}
static const struct objstore_ops remote_like = {f_put, f_put_file, f_put, f_get,
                                                f_stat, f_list, f_del, f_free, NULL};

static void test_rule_without_requests(void **state)
{
    (void)state;
    char dir[64] = "/tmp/test_manifest.XXXXXX", cat[128];
    assert_non_null(mkdtemp(dir));
    snprintf(cat, sizeof cat, "%s/catalog.db", dir);
    struct objstore *s = calloc(1, sizeof *s);
    s->ops = &remote_like;
    s->location = strdup("s3://fake/repo");
    s->sizes = objstore_sizes_new();
    struct repo *r = NULL;
    struct dverr e = {0};
    assert_int_equal(repo_open_store(s, NULL, cat, &r, &e), 0);
    stats = 0;

    uint64_t heavy[4] = {100, 40, 40, 40}, light[4] = {100, 10, 10, 10};
    struct point *p = point_with(4, heavy);
    assert_true(repo_table_should_compact(r, &p->tables[0])); /* deltas 120 > base 100 */
    memcpy(p->tables[0].segment_sizes, light, sizeof light);
    assert_false(repo_table_should_compact(r, &p->tables[0]));
    point_free(p);

    /* sizes unknown: left alone, and no stat is sent to find them */
    p = point_with(4, NULL);
    assert_false(repo_table_should_compact(r, &p->tables[0]));
    /* known from the memo (a manifest loaded, an object this process wrote) */
    for (int k = 0; k < 4; k++) {
        char name[80];
        segment_object_name(ids[k], name);
        objstore_sizes_note(s->sizes, name, heavy[k]);
    }
    assert_true(repo_table_should_compact(r, &p->tables[0]));
    point_free(p);

    /* the length cap needs no size at all */
    p = point_with(REPO_MAX_CHAIN + 1, NULL);
    assert_true(repo_table_should_compact(r, &p->tables[0]));
    point_free(p);
    p = point_with(3, (uint64_t[]){1, 1000, 1000}); /* below 4 segments: never by size */
    assert_false(repo_table_should_compact(r, &p->tables[0]));
    point_free(p);
    assert_int_equal(stats, 0);

    repo_free(r);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

/* A point of two tables and two files; the child is the same point taken later with nothing
 * changed (what an idle pass commits). */
static struct point *two_tables(const char *name, bool changed)
{
    struct point *p = point_with(2, (uint64_t[]){500, 60});
    free(p->name);
    p->name = strdup(name);
    p->tables = realloc(p->tables, 2 * sizeof *p->tables);
    struct point_table *c = &p->tables[1];
    memset(c, 0, sizeof *c);
    c->name = strdup("contact");
    c->records = 7;
    c->bytes = 900;
    c->segments = calloc(1, sizeof *c->segments);
    c->segments[c->n_segments++] = strdup(ids[5]);
    c->delta_link = strdup("https://example/api/data/v9.2/contacts?$deltatoken=1");
    c->changes_bytes = MANIFEST_EMPTY_CHANGES;
    p->n_tables = 2;
    struct point_table *a = &p->tables[0];
    a->changes_bytes = MANIFEST_EMPTY_CHANGES;
    if (changed) {
        a->delta = strdup(ids[1]);
        a->updated = 2;
        a->changes_bytes = 321;
    }
    p->files = calloc(2, sizeof *p->files);
    for (int i = 0; i < 2; i++) {
        struct point_file *f = &p->files[p->n_files++];
        f->table = strdup("annotation");
        f->record_id = strdup(i ? "r2" : "r1");
        f->column = strdup("documentbody");
        f->file_name = strdup("a.pdf");
        f->blob = strdup(ids[10 + i]);
        f->size = 1000u + (unsigned)i;
    }
    p->not_captured_json = strdup("[]");
    return p;
}

/* Render p as a capture commits it (shared documents named by made-up ids), parse it back. */
static struct point *round_trip_v2(struct point *p, struct buf *t, struct buf *f, struct buf *m)
{
    struct dverr e = {0};
    assert_int_equal(manifest_render_tables(p, t, &e), 0);
    assert_int_equal(filelist_render_chunk(p->files, p->n_files, f), 0);
    char tid[65], fid[65];
    sha256_hex(t->data, t->len, tid);
    sha256_hex(f->data, f->len, fid);
    p->tables_object = strdup(tid);
    p->files_object = strdup(fid);
    assert_int_equal(manifest_render(p, m, &e), 0);
    struct point *q = NULL;
    assert_int_equal(manifest_parse(m->data, m->len, &q, &e), 0);
    assert_string_equal(q->tables_object, tid);
    assert_int_equal(manifest_parse_shared(q, t->data, t->len, f->data, f->len, &e), 0);
    return q;
}

static void test_shared_documents(void **state)
{
    (void)state;
    struct point *p = two_tables("2026-11-21T090000Z", true);
    struct buf t = BUF_INIT, f = BUF_INIT, m = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
    struct dverr e = {0};
    struct point *q = round_trip_v2(p, &t, &f, &m);
    assert_non_null(strstr(m.data, "\"format\":2"));
    assert_null(strstr(m.data, "segments")); /* the chains are in the tables object */
    /* the same point, inline, whatever the way it came */
    struct point flat = *p, qflat = *q;
    flat.tables_object = flat.files_object = qflat.tables_object = qflat.files_object = NULL;
    assert_int_equal(manifest_render(&flat, &a, &e), 0);
    assert_int_equal(manifest_render(&qflat, &b, &e), 0);
    assert_string_equal(a.data, b.data);
    assert_int_equal(q->tables[0].updated, 2);
    assert_int_equal(q->tables[1].changes_bytes, MANIFEST_EMPTY_CHANGES);
    assert_int_equal(q->n_files, 2);
    /* an idle child shares both documents; its manifest names them and no change */
    struct point *child = two_tables("2026-11-21T091500Z", false);
    struct buf t2 = BUF_INIT, f2 = BUF_INIT, m2 = BUF_INIT;
    point_free(round_trip_v2(child, &t2, &f2, &m2));
    assert_string_equal(t.data, t2.data);
    assert_string_equal(f.data, f2.data);
    assert_non_null(strstr(m2.data, "\"changes\":[]"));
    print_message("idle point: manifest %zu bytes (shared: tables %zu, files %zu)\n", m2.len,
                  t2.len, f2.len);
    /* damage: a change for a table the document lacks, a document that is not an array */
    struct point *r = NULL;
    const char *lacks = "[{\"name\":\"contact\",\"segments\":[]}]";
    assert_int_equal(manifest_parse(m.data, m.len, &r, &e), 0);
    assert_int_equal(manifest_parse_shared(r, lacks, strlen(lacks), f.data, f.len, &e), -EIO);
    point_free(r);
    assert_int_equal(manifest_parse(m.data, m.len, &r, &e), 0);
    assert_int_equal(manifest_parse_shared(r, "{}", 2, f.data, f.len, &e), -EIO);
    point_free(r);
    const char *no_objects = "{\"format\":2,\"env\":\"contoso-prod\",\"name\":"
                             "\"2026-11-21T090000Z\",\"kind\":\"system\",\"changes\":[]}";
    assert_int_equal(manifest_parse(no_objects, strlen(no_objects), &r, &e), -EIO);
    point_free(q);
    point_free(p);
    point_free(child);
    buf_release(&t), buf_release(&f), buf_release(&m), buf_release(&a), buf_release(&b);
    buf_release(&t2), buf_release(&f2), buf_release(&m2);
}

int main(void)
{
    make_ids();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_round_trip),
        cmocka_unit_test(test_unknown_size_not_recorded),
        cmocka_unit_test(test_old_manifest_reads),
        cmocka_unit_test(test_definitions_round_trip),
        cmocka_unit_test(test_damaged_sizes_refused),
        cmocka_unit_test(test_size_memo),
        cmocka_unit_test(test_rule_without_requests),
        cmocka_unit_test(test_shared_documents),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
