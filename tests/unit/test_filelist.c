/* test_filelist: the file list in chunks (manifest format 3, filelist.h). Chunks are bounded and
 * about FILELIST_CHUNK_AVG files; a changed, added or removed file changes at most two chunks of a
 * 20,000-file list, and those chunks are a small part of its bytes; an index renders and parses
 * back and a damaged one is refused; a format-3 manifest, its tables document, index and chunks
 * parse back to the same point as it was (its file strings in blocks, a table name kept once),
 * and a chunk that does not match its index is refused; the streaming writer cuts a varied list
 * (several tables, big records, a record cut inside) into the same chunks as the whole-list cut. */
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

#define N_FILES 20000

static int cmp_file(const void *a, const void *b)
{
    const struct point_file *x = a, *y = b;
    int c = strcmp(x->record_id, y->record_id);
    return c ? c : strcmp(x->file_name, y->file_name);
}

/* n files of notes, record ids as the service's GUID-like keys, sorted as captures sort them;
 * record i of the list has files 'a' and, for every seventh record, 'b' too. */
static struct point_file *make_files(size_t n_records, size_t *n)
{
    struct point_file *v = calloc(2 * n_records + 1, sizeof *v);
    *n = 0;
    for (size_t i = 0; i < n_records; i++)
        for (int k = 0; k < (i % 7 ? 1 : 2); k++) {
            struct point_file *f = &v[(*n)++];
            char rid[40], blob[65], name[32];
            snprintf(rid, sizeof rid, "%08zx-0000-4000-8000-%012zx", i * 2654435761u % 0xffffffffu,
                     i);
            snprintf(name, sizeof name, "doc-%zu-%c.pdf", i, 'a' + k);
            sha256_hex(name, strlen(name), blob);
            f->table = strdup("annotation");
            f->record_id = strdup(rid);
            f->column = strdup("documentbody");
            f->file_name = strdup(name);
            f->blob = strdup(blob);
            f->size = 1000 + i;
        }
    qsort(v, *n, sizeof *v, cmp_file);
    return v;
}

static void files_free(struct point_file *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].table), free(v[i].record_id), free(v[i].column), free(v[i].file_name);
        free(v[i].blob);
    }
    free(v);
}

struct chunked {
    char (*ids)[65];
    size_t *counts, *bytes, n, total_bytes;
};

static void chunk_all(const struct point_file *f, size_t n, struct chunked *c)
{
    memset(c, 0, sizeof *c);
    c->ids = calloc(n + 1, sizeof *c->ids);
    c->counts = calloc(n + 1, sizeof *c->counts);
    c->bytes = calloc(n + 1, sizeof *c->bytes);
    for (size_t from = 0, end; from < n; from = end) {
        end = filelist_chunk_end(f, n, from);
        assert_true(end > from && end <= n);
        struct buf b = BUF_INIT;
        assert_int_equal(filelist_render_chunk(f + from, end - from, &b), 0);
        sha256_hex(b.data, b.len, c->ids[c->n]);
        c->counts[c->n] = end - from;
        c->bytes[c->n++] = b.len;
        c->total_bytes += b.len;
        buf_release(&b);
    }
}

static void chunked_free(struct chunked *c)
{
    free(c->ids), free(c->counts), free(c->bytes);
}

/* The chunks of b that a does not have, and their bytes. */
static size_t new_chunks(const struct chunked *a, const struct chunked *b, size_t *bytes)
{
    size_t n = 0;
    *bytes = 0;
    for (size_t k = 0; k < b->n; k++) {
        bool have = false;
        for (size_t j = 0; j < a->n && !have; j++)
            have = strcmp(a->ids[j], b->ids[k]) == 0;
        if (!have) {
            n++;
            *bytes += b->bytes[k];
        }
    }
    return n;
}

static void test_chunks_are_bounded(void **state)
{
    (void)state;
    size_t n;
    struct point_file *f = make_files(N_FILES * 6 / 7, &n);
    struct chunked c;
    chunk_all(f, n, &c);
    size_t max = 0;
    for (size_t k = 0; k < c.n; k++)
        max = c.counts[k] > max ? c.counts[k] : max;
    print_message("%zu files in %zu chunks (largest %zu files), %zu bytes\n", n, c.n, max,
                  c.total_bytes);
    assert_true(max <= FILELIST_CHUNK_MAX + 1);
    assert_true(c.n >= n / (4 * FILELIST_CHUNK_AVG) && c.n <= 4 * n / FILELIST_CHUNK_AVG + 1);
    /* one record's files stay in one chunk (none has FILELIST_CHUNK_MAX files) */
    size_t at = 0;
    for (size_t k = 0; k + 1 < c.n; k++) {
        at += c.counts[k];
        assert_string_not_equal(f[at - 1].record_id, f[at].record_id);
    }
    chunked_free(&c);
    files_free(f, n);
}

static void test_one_change_changes_one_chunk(void **state)
{
    (void)state;
    size_t n, bytes;
    struct point_file *f = make_files(N_FILES * 6 / 7, &n);
    struct chunked a, b;
    chunk_all(f, n, &a);
    /* a changed note: another blob and size */
    char *old = f[n / 2].blob;
    f[n / 2].blob = strdup(f[3].blob);
    f[n / 2].size++;
    chunk_all(f, n, &b);
    assert_int_equal(new_chunks(&a, &b, &bytes), 1);
    print_message("one changed file: 1 new chunk of %zu bytes, the list %zu bytes\n", bytes,
                  b.total_bytes);
    assert_true(bytes * 10 < b.total_bytes);
    chunked_free(&b);
    /* a removed record */
    struct point_file gone = f[n / 3];
    memmove(&f[n / 3], &f[n / 3 + 1], (n - n / 3 - 1) * sizeof *f);
    chunk_all(f, n - 1, &b);
    assert_true(new_chunks(&a, &b, &bytes) <= 2);
    assert_true(bytes * 5 < b.total_bytes);
    chunked_free(&b);
    /* put back: the list as it was but for the change, then an added record at the end */
    memmove(&f[n / 3 + 1], &f[n / 3], (n - n / 3 - 1) * sizeof *f);
    f[n / 3] = gone;
    struct point_file *g = realloc(f, (n + 1) * sizeof *f);
    assert_non_null(g);
    f = g;
    f[n] = f[n - 1];
    f[n].record_id = strdup("ffffffff-ffff-4fff-8fff-ffffffffffff");
    f[n].table = strdup(f[n - 1].table), f[n].column = strdup(f[n - 1].column);
    f[n].file_name = strdup(f[n - 1].file_name), f[n].blob = strdup(f[n - 1].blob);
    chunk_all(f, n + 1, &b);
    assert_true(new_chunks(&a, &b, &bytes) <= 2);
    assert_true(bytes * 5 < b.total_bytes);
    chunked_free(&b);
    chunked_free(&a);
    free(old);
    files_free(f, n + 1);
}

static void test_index_round_trip(void **state)
{
    (void)state;
    char ids[3][65];
    size_t counts[3] = {5, 1, 700};
    for (int k = 0; k < 3; k++)
        snprintf(ids[k], sizeof ids[k], "%064x", k + 10);
    struct buf b = BUF_INIT;
    assert_int_equal(filelist_render_index(ids, counts, 3, &b), 0);
    char **got;
    size_t *gc, n, total;
    struct dverr e = {0};
    assert_int_equal(filelist_parse_index(b.data, b.len, &got, &gc, &n, &total, &e), 0);
    assert_int_equal(n, 3);
    assert_int_equal(total, 706);
    for (size_t k = 0; k < n; k++) {
        assert_string_equal(got[k], ids[k]);
        assert_int_equal(gc[k], counts[k]);
        free(got[k]);
    }
    free(got), free(gc);
    const char *bad[] = {
        "{\"files\":7,\"chunks\":[{\"id\":\"" "0000000000000000000000000000000000000000000000000000000000000001\",\"files\":6}]}",
        "{\"files\":1,\"chunks\":[{\"id\":\"../x\",\"files\":1}]}",
        "{\"files\":0,\"chunks\":[{\"id\":\"" "0000000000000000000000000000000000000000000000000000000000000001\",\"files\":0}]}",
        "[]",
        "{\"files\":-1,\"chunks\":[]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(filelist_parse_index(bad[i], strlen(bad[i]), &got, &gc, &n, &total, &e),
                         -EIO);
    buf_release(&b);
}

static void test_format_3_round_trip(void **state)
{
    (void)state;
    struct point *p = calloc(1, sizeof *p);
    p->env = strdup("contoso-prod");
    p->name = strdup("2026-12-07T090000Z");
    p->kind = strdup("system");
    p->not_captured_json = strdup("[]");
    p->files = make_files(3000, &p->n_files);
    p->files[5].column = (free(p->files[5].column), NULL); /* a file without a column reads too */
    struct buf t = BUF_INIT, m = BUF_INIT, idx = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
    struct dverr e = {0};
    struct chunked c;
    chunk_all(p->files, p->n_files, &c);
    assert_int_equal(manifest_render_tables(p, &t, &e), 0);
    assert_int_equal(filelist_render_index(c.ids, c.counts, c.n, &idx), 0);
    char tid[65], fid[65];
    sha256_hex(t.data, t.len, tid);
    sha256_hex(idx.data, idx.len, fid);
    p->tables_object = strdup(tid);
    p->files_object = strdup(fid);
    p->files_chunked = true;
    assert_int_equal(manifest_render(p, &m, &e), 0);
    assert_non_null(strstr(m.data, "\"format\":3"));
    assert_non_null(strstr(m.data, "\"files_index\""));
    assert_null(strstr(m.data, "record_id")); /* the list is in the chunks */
    struct point *q = NULL;
    assert_int_equal(manifest_parse(m.data, m.len, &q, &e), 0);
    assert_true(q->files_chunked);
    assert_string_equal(q->files_object, fid);
    assert_int_equal(manifest_parse_shared(q, t.data, t.len, NULL, 0, &e), 0);
    size_t *counts, total;
    assert_int_equal(filelist_parse_index(idx.data, idx.len, &q->files_chunks, &counts,
                                          &q->n_files_chunks, &total, &e),
                     0);
    assert_int_equal(total, p->n_files);
    q->files = calloc(total, sizeof *q->files);
    for (size_t k = 0, from = 0; k < q->n_files_chunks; from += counts[k++]) {
        struct buf ch = BUF_INIT;
        assert_int_equal(filelist_render_chunk(p->files + from, counts[k], &ch), 0);
        if (k == 1) /* a chunk that does not match its index */
            assert_int_equal(manifest_parse_files_chunk(q, counts[k] + 1, ch.data, ch.len, &e),
                             -EIO);
        assert_int_equal(manifest_parse_files_chunk(q, counts[k], ch.data, ch.len, &e), 0);
        buf_release(&ch);
    }
    free(counts);
    /* its strings are in blocks, the table name kept once */
    assert_non_null(q->files_strings.blocks);
    assert_ptr_equal(q->files[1].table, q->files[0].table);
    /* the same point inline, whichever way it came; the manifest renders again the same */
    struct point flat = *p, qflat = *q;
    flat.tables_object = flat.files_object = qflat.tables_object = qflat.files_object = NULL;
    flat.files_chunked = qflat.files_chunked = false;
    assert_int_equal(manifest_render(&flat, &a, &e), 0);
    assert_int_equal(manifest_render(&qflat, &b, &e), 0);
    assert_string_equal(a.data, b.data);
    buf_reset(&b);
    assert_int_equal(manifest_render(q, &b, &e), 0);
    assert_string_equal(m.data, b.data);
    /* a deep copy keeps the chunks */
    struct point *d = point_dup(q);
    assert_non_null(d);
    assert_true(d->files_chunked);
    assert_int_equal(d->n_files_chunks, q->n_files_chunks);
    assert_string_equal(d->files_chunks[0], q->files_chunks[0]);
    point_free(d);
    point_free(q);
    point_free(p);
    chunked_free(&c);
    buf_release(&t), buf_release(&m), buf_release(&idx), buf_release(&a), buf_release(&b);
}

/* A streaming writer's chunks, rendered one after the other. */
static int collect_chunk(void *ctx, const struct point_file *files, size_t n)
{
    struct buf *out = ctx;
    assert_true(n > 0 && n <= 2 * FILELIST_CHUNK_MAX);
    assert_int_equal(filelist_render_chunk(files, n, out), 0);
    return 0;
}

static int cmp_list(const void *a, const void *b)
{
    const struct point_file *x = a, *y = b;
    int c = strcmp(x->table, y->table);
    if (!c)
        c = strcmp(x->record_id, y->record_id);
    if (!c)
        c = strcmp(x->column ? x->column : "", y->column ? y->column : "");
    return c ? c : strcmp(x->file_name, y->file_name);
}

/* Several tables; records with one to a few files, a few with hundreds, one with more than
 * 2 * FILELIST_CHUNK_MAX (cut inside it), and a run long enough that a chunk ends at
 * FILELIST_CHUNK_MAX; some columns null. */
static struct point_file *make_varied(size_t *n)
{
    const char *tables[] = {"account", "annotation", "contact", "msdyn_doc"};
    size_t cap = 40000, k = 0;
    struct point_file *v = calloc(cap, sizeof *v);
    for (size_t t = 0; t < 4; t++)
        for (size_t i = 0; i < (t == 1 ? 3000 : 400); i++) {
            size_t per = i == 17 && t == 2 ? 2 * FILELIST_CHUNK_MAX + 300
                         : i % 97 == 5     ? 300
                                           : 1 + i % 3;
            for (size_t f = 0; f < per && k < cap; f++) {
                char rid[48], name[48], blob[65];
                snprintf(rid, sizeof rid, "%08zx-%zu", (i * 2654435761u) % 0xffffffffu, t);
                snprintf(name, sizeof name, "f-%zu-%06zu.bin", i, f);
                sha256_hex(name, strlen(name), blob);
                v[k] = (struct point_file){strdup(tables[t]), strdup(rid),
                                           f % 5 == 4 ? NULL : strdup(f % 2 ? "doc" : "image"),
                                           strdup(name), strdup(blob), f * 7 + i};
                k++;
            }
        }
    qsort(v, k, sizeof *v, cmp_list);
    *n = k;
    return v;
}

/* The streaming writer cuts a list exactly as filelist_chunk_end cuts it whole: the same chunks,
 * byte for byte (so the same blob ids). */
static void test_streamed_equals_whole(void **state)
{
    (void)state;
    size_t n;
    struct point_file *v = make_varied(&n);
    assert_true(n > 3000);
    struct buf whole = BUF_INIT, streamed = BUF_INIT;
    size_t chunks = 0, longest = 0;
    for (size_t from = 0, end; from < n; from = end, chunks++) {
        end = filelist_chunk_end(v, n, from);
        longest = end - from > longest ? end - from : longest;
        assert_int_equal(filelist_render_chunk(v + from, end - from, &whole), 0);
    }
    assert_true(chunks > 5);
    assert_int_equal(longest, 2 * FILELIST_CHUNK_MAX); /* the cut inside a record was made */
    struct filelist_writer *w = NULL;
    assert_int_equal(filelist_writer_new(collect_chunk, &streamed, &w), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(filelist_writer_add(w, &v[i]), 0);
    assert_int_equal(filelist_writer_finish(w), 0);
    filelist_writer_free(w);
    assert_int_equal(streamed.len, whole.len);
    assert_memory_equal(streamed.data, whole.data, whole.len);
    /* an empty list: no chunk */
    buf_reset(&streamed);
    assert_int_equal(filelist_writer_new(collect_chunk, &streamed, &w), 0);
    assert_int_equal(filelist_writer_finish(w), 0);
    filelist_writer_free(w);
    assert_int_equal(streamed.len, 0);
    buf_release(&whole);
    buf_release(&streamed);
    files_free(v, n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks_are_bounded),
        cmocka_unit_test(test_one_change_changes_one_chunk),
        cmocka_unit_test(test_index_round_trip),
        cmocka_unit_test(test_format_3_round_trip),
        cmocka_unit_test(test_streamed_equals_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
