/* repo_read: reading a table at a point (repo.h): the table reader streams tables/<t>.json and
 * changes/<t>.json byte for byte from a k-way merge of the point's segment chain (segment.h), and
 * table_iterate hands every record to a callback in key order.
 * Limits: the reader checks the bytes it gives against the size the manifest records (-EIO on a
 * mismatch); it holds one decoded frame per segment of the chain.
 * Threading: a table_reader belongs to one thread at a time; any number may run in parallel over
 * the same repository (they share nothing but the store). */
#include "backend/repo/repo_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/segment.h"

struct piece {
    const char *p;
    size_t n;
};

struct table_reader {
    struct segment_merge *m;
    bool changes;
    uint64_t expect, emitted, lines;
    bool done;
    struct piece pieces[4];
    int n_pieces, cur;
    struct buf stage;
};

static const struct point_table *find_table(const struct point *p, const char *table)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (strcmp(p->tables[i].name, table) == 0)
            return &p->tables[i];
    return NULL;
}

static int reader_open(struct repo *r, const struct point *p, const char *table, bool changes,
                       struct table_reader **out, struct dverr *err)
{
    *out = NULL;
    const struct point_table *pt = find_table(p, table);
    if (!pt)
        return dverr_set(err, -ENOENT, "no table \"%.80s\" in %s/%s", table, p->env, p->name);
    struct table_reader *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dverr_set(err, -ENOMEM, "out of memory");
    tr->changes = changes;
    tr->expect = changes ? pt->changes_bytes : pt->bytes;
    int rc;
    if (changes) {
        char *ids[1] = {pt->delta};
        rc = segment_merge_open(r->store, r->crypt, ids, pt->delta ? 1 : 0, true, &tr->m, err);
        if (!pt->delta && tr->expect == 0)
            tr->expect = 4; /* "[\n]\n" */
    } else {
        rc = segment_merge_open(r->store, r->crypt, pt->segments, pt->n_segments, false, &tr->m,
                                err);
    }
    if (rc) {
        free(tr);
        return rc;
    }
    *out = tr;
    return 0;
}

int table_reader_open(struct repo *r, const struct point *p, const char *table,
                      struct table_reader **out, struct dverr *err)
{
    return reader_open(r, p, table, false, out, err);
}

int changes_reader_open(struct repo *r, const struct point *p, const char *table,
                        struct table_reader **out, struct dverr *err)
{
    return reader_open(r, p, table, true, out, err);
}

/* Queue the pieces of the next line (or the tail); false at the end. */
static int refill(struct table_reader *tr, struct dverr *err)
{
    tr->n_pieces = tr->cur = 0;
    if (tr->done)
        return 0;
    struct segment_entry e;
    int rc = segment_merge_next(tr->m, &e, err);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        tr->done = true;
        tr->pieces[tr->n_pieces++] = (struct piece){tr->lines ? "\n]\n" : "[\n]\n",
                                                    tr->lines ? 3 : 4};
        return 1;
    }
    tr->pieces[tr->n_pieces++] = (struct piece){tr->lines ? ",\n" : "[\n", 2};
    tr->lines++;
    if (!tr->changes) {
        tr->pieces[tr->n_pieces++] = (struct piece){e.line, e.line_len};
        return 1;
    }
    buf_reset(&tr->stage);
    if (changes_line_render(&tr->stage, e.op, e.key, e.key_len, e.line, e.line_len))
        return dverr_set(err, -ENOMEM, "out of memory");
    tr->pieces[tr->n_pieces++] = (struct piece){tr->stage.data, tr->stage.len};
    return 1;
}

ssize_t table_reader_read(struct table_reader *tr, void *buf, size_t n, struct dverr *err)
{
    char *out = buf;
    size_t got = 0;
    while (got < n) {
        if (tr->cur == tr->n_pieces) {
            int rc = refill(tr, err);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
        }
        struct piece *pc = &tr->pieces[tr->cur];
        size_t k = pc->n < n - got ? pc->n : n - got;
        memcpy(out + got, pc->p, k);
        got += k;
        pc->p += k;
        pc->n -= k;
        if (pc->n == 0)
            tr->cur++;
    }
    tr->emitted += got;
    if (tr->emitted > tr->expect || (got == 0 && tr->emitted != tr->expect))
        return dverr_set(err, -EIO, "table size mismatch: the manifest says %llu bytes, the "
                         "segments give %s%llu", (unsigned long long)tr->expect,
                         got ? "more than " : "", (unsigned long long)tr->emitted);
    return (ssize_t)got;
}

void table_reader_free(struct table_reader *tr)
{
    if (!tr)
        return;
    segment_merge_free(tr->m);
    buf_release(&tr->stage);
    free(tr);
}

int table_iterate(struct repo *r, const struct point *p, const char *table,
                  int (*fn)(void *ctx, const char *key, size_t key_len, const char *line,
                            size_t line_len),
                  void *ctx, struct dverr *err)
{
    const struct point_table *pt = find_table(p, table);
    if (!pt)
        return dverr_set(err, -ENOENT, "no table \"%.80s\" in %s/%s", table, p->env, p->name);
    struct segment_merge *m = NULL;
    int rc = repo_table_merge_open(r, pt, &m, err);
    if (rc)
        return rc;
    struct segment_entry e;
    while ((rc = segment_merge_next(m, &e, err)) == 1) {
        if ((rc = fn(ctx, e.key, e.key_len, e.line, e.line_len)))
            break;
    }
    segment_merge_free(m);
    return rc;
}

int repo_table_merge_open(struct repo *r, const struct point_table *pt, struct segment_merge **out,
                          struct dverr *err)
{
    return segment_merge_open(r->store, r->crypt, pt->segments, pt->n_segments, false, out, err);
}
