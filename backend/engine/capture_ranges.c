/* capture_ranges: a table's full read (capture_int.h): every record rendered into the job's sort
 * (capture.c merges it with the capture state once the read is done). A large tracked table is
 * read as key ranges, concurrently; the rest as one stream.
 *
 * Ranges: first a keys-only tracked read (dv_read_table_query: 5000 primary keys a page, light)
 * gives the table's change-tracking link and the keys in the service's own order, sampled; the
 * ranges' bounds are sampled keys at even distances, so the ranges are of about equal size in the
 * order the service compares keys with, whatever that order is. Then up to `concurrency` range
 * reads ($filter=<pk> ge a and <pk> lt b, untracked) run on their own threads; the environment's
 * request cap (the Web API client's max_concurrency) bounds them with every other read of the
 * pass. A table is split when change tracking is on (else there is no link to take first), the
 * keys are GUIDs (what $filter compares), and it has at least two ranges' worth of records.
 *
 * Why no change is lost (the order of the two steps): the keys-only read completes before any
 * range starts, so the version V its link carries is from before every record the ranges read.
 * The service returns, from that link, every change made after V. Take any record:
 *   - changed (created, updated, deleted) after V: the next delta read returns that change,
 *     whatever this point holds for it (old line, new line, or nothing), so the next point is
 *     exact for it;
 *   - unchanged since V: it exists, with the same key, the whole time the ranges run; the ranges
 *     partition the keys by the service's order (consecutive bounds it gave, the first range open
 *     below, the last open above), so exactly one range reads it, as it is.
 * So the point is what a single stream gives (whose pages are read over time too), and nothing
 * after V is lost. Taking the link after the ranges would lose the changes made between a
 * record's range read and the link. A range that fails fails the table's read (it is kept as of
 * the previous point; nothing of it reaches the catalog).
 *
 * Each range has a sorter of its own (a share of the sort budget): its pages come in key order,
 * so its runs are never merged. When every range's keys are below the next one's by dvsnap's
 * key order (the service compares keys as dvsnap does), the ranges' sorters are drained one after
 * the other (capture_full_drain); otherwise they are poured into the table's sorter first.
 *
 * Threading: range threads render on their own buffers and add to their own sorters (a single
 * stream, and the pour of overlapping ranges, add to j->sorter on the job's thread); progress
 * counts go through cap->lock (count_records). The key sample belongs to the job's thread. */
#include "backend/engine/capture_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "backend/base/record.h"

#define RANGE_MIN_RECORDS 10000 /* records per range at least (two pages) */
#define SAMPLE_MAX 1024         /* keys kept from the keys-only read */
#define RANGE_PAGE 1000         /* records a page of a range read: a fifth of the usual, so ranges
                                 * side by side hold no more JSON than one stream and a few */

static void count_records(struct table_job *j, uint64_t n)
{
    struct cap *cap = j->cap;
    pthread_mutex_lock(&cap->lock);
    uint64_t before = j->records_read;
    j->records_read += n;
    if (before / 5000 != j->records_read / 5000) {
        cap->records += 5000;
        capture_progress_locked(cap, j->t->logical_name);
    }
    pthread_mutex_unlock(&cap->lock);
}

/* One reader of the table: the whole table, or one range. */
struct reader {
    struct table_job *j;
    const char *from, *to;   /* the range (NULL: open), in the sample's storage */
    struct segment_sorter *sorter; /* a range's own sorter (NULL: the one stream, j->sorter) */
    struct buf min_key, max_key;   /* a range's lowest and highest key by segment_key_cmp */
    uint64_t n_keys;
    struct buf line;
    struct buf row_key;      /* an elastic row's key (record_row_key) */
    struct dverr err;
    int rc;
    pthread_t thread;
    bool started;
};

static int on_record(void *ctx, const struct json_node *rec)
{
    struct reader *r = ctx;
    struct table_job *j = r->j;
    if (cancelled(j->cap) || atomic_load(&j->ranges_failed))
        return -ECANCELED;
    buf_reset(&r->line);
    int rc = record_render(rec, j->t->primary_id, &r->line);
    if (rc)
        return dverr_set(&r->err, rc, "a record of %s could not be rendered", j->t->logical_name);
    size_t klen;
    const char *key = record_row_key(rec, j->t->primary_id, capture_partition_column(j->t),
                                     &r->row_key, &klen);
    if (!key)
        return dverr_set(&r->err, -EPROTO, "a record of %s has no primary key %s",
                         j->t->logical_name, j->t->primary_id);
    if (memchr(key, '\0', klen))
        return dverr_set(&r->err, -EPROTO, "a record of %s has a primary key with a NUL",
                         j->t->logical_name);
    rc = segment_sorter_add(r->sorter ? r->sorter : j->sorter, SEG_CREATE, key, klen,
                            r->line.data, r->line.len, &r->err);
    if (!rc && r->sorter) { /* a range: its key bounds, for ranges_hand_over */
        if (!r->n_keys || segment_key_cmp(key, klen, r->min_key.data, r->min_key.len) < 0) {
            buf_reset(&r->min_key);
            rc = buf_add(&r->min_key, key, klen);
        }
        if (!rc && (!r->n_keys ||
                    segment_key_cmp(key, klen, r->max_key.data, r->max_key.len) > 0)) {
            buf_reset(&r->max_key);
            rc = buf_add(&r->max_key, key, klen);
        }
        if (rc == -ENOMEM)
            rc = dverr_set(&r->err, rc, "out of memory");
        r->n_keys++;
    }
    if (!rc)
        count_records(j, 1);
    return rc;
}

static int add_to_table_sorter(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    struct table_job *j = ctx;
    return segment_sorter_add(j->sorter, e->op, e->key, e->key_len, e->line, e->line_len, err);
}

/* The ranges' records to the job: their sorters, drained in turn, when each range's keys are all
 * below the next one's by dvsnap's key order (the service's order is dvsnap's, as dvsim's); else
 * (another order, or keys that repeat) poured into j->sorter, which sorts them again. */
static int ranges_hand_over(struct table_job *j, struct reader *rs, size_t n)
{
    bool in_turn = true;
    const struct reader *prev = NULL;
    for (size_t i = 0; i < n && in_turn; i++) {
        if (!rs[i].n_keys)
            continue;
        in_turn = !prev || segment_key_cmp(prev->max_key.data, prev->max_key.len,
                                           rs[i].min_key.data, rs[i].min_key.len) < 0;
        prev = &rs[i];
    }
    if (in_turn) {
        if (!(j->range_sorters = calloc(n, sizeof *j->range_sorters)))
            return dverr_set(&j->err, -ENOMEM, "out of memory");
        for (size_t i = 0; i < n; i++) {
            j->range_sorters[i] = rs[i].sorter;
            rs[i].sorter = NULL;
        }
        j->n_range_sorters = n;
        return 0;
    }
    log_info("%s/%s: the key ranges overlap in dvsnap's key order: sorted again",
             j->cap->env->unique_name, j->t->logical_name);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        rc = segment_sorter_drain(rs[i].sorter, add_to_table_sorter, j, &j->err);
        segment_sorter_free(rs[i].sorter);
        rs[i].sorter = NULL;
    }
    return rc;
}

int capture_full_drain(struct table_job *j,
                       int (*fn)(void *ctx, const struct segment_entry *e, struct dverr *err),
                       void *ctx)
{
    if (!j->n_range_sorters)
        return segment_sorter_drain(j->sorter, fn, ctx, &j->err);
    int rc = 0;
    for (size_t i = 0; i < j->n_range_sorters && !rc; i++)
        rc = segment_sorter_drain(j->range_sorters[i], fn, ctx, &j->err);
    return rc;
}

void capture_full_sorters_free(struct table_job *j)
{
    segment_sorter_free(j->sorter);
    j->sorter = NULL;
    for (size_t i = 0; i < j->n_range_sorters; i++)
        segment_sorter_free(j->range_sorters[i]);
    free(j->range_sorters);
    j->range_sorters = NULL;
    j->n_range_sorters = 0;
}

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    struct table_job *j = r->j;
    struct dv_read_query q = {.key_from = r->from, .key_to = r->to, .page_size = RANGE_PAGE};
    struct dv_read_cb cb = {on_record, NULL, r};
    r->rc = dv_read_table_query(j->cap->dv, j->cap->env, j->t, NULL, &q, &cb, NULL, NULL, &r->err);
    if (r->rc)
        atomic_store(&j->ranges_failed, true); /* the other ranges stop at their next record */
    return NULL;
}

/* The keys-only read: its count and a sample of its keys, in the service's order (every
 * `every`-th key, the sample halved and `every` doubled when full). */
struct key_sample {
    struct table_job *j;
    char (*keys)[40];
    size_t n, every;
    uint64_t seen;
    bool guids;              /* every key is a GUID (what a range $filter takes) */
};

static bool is_guid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23 ? c != '-'
                                                     : !((c >= '0' && c <= '9') ||
                                                         (c >= 'a' && c <= 'f') ||
                                                         (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

static int on_key(void *ctx, const struct json_node *rec)
{
    struct key_sample *s = ctx;
    if (cancelled(s->j->cap))
        return -ECANCELED;
    size_t klen;
    const char *key = record_key(rec, s->j->t->primary_id, &klen);
    if (!key)
        return dverr_set(&s->j->err, -EPROTO, "a key of %s is missing", s->j->t->logical_name);
    s->guids = s->guids && is_guid(key, klen);
    if (s->guids && s->seen++ % s->every == 0) {
        if (s->n == SAMPLE_MAX) {
            for (size_t i = 0; i < SAMPLE_MAX / 2; i++)
                memcpy(s->keys[i], s->keys[2 * i], sizeof s->keys[i]);
            s->n = SAMPLE_MAX / 2;
            s->every *= 2;
            if ((s->seen - 1) % s->every) /* the sample stays every `every`-th key */
                return 0;
        }
        memcpy(s->keys[s->n], key, 36);
        s->keys[s->n++][36] = '\0';
    }
    return 0;
}

/* Read the table (or the range of r) in one stream on this thread. */
static int read_one(struct table_job *j, struct reader *r, const struct dv_read_query *q,
                    char **new_link)
{
    struct dv_read_cb cb = {on_record, NULL, r};
    int rc = dv_read_table_query(j->cap->dv, j->cap->env, j->t, NULL, q, &cb, new_link, NULL,
                                 &r->err);
    if (rc)
        dverr_set(&j->err, rc, "%s", dverr_msg(&r->err));
    return rc;
}

int capture_read_full(struct table_job *j, char **new_link)
{
    struct cap *cap = j->cap;
    struct reader one = {.j = j};
    struct key_sample s = {.j = j, .every = 1, .guids = true};
    struct reader *rs = NULL;
    size_t n_ranges = 1;
    int rc;
    atomic_store(&j->ranges_failed, false);
    /* one stream: an untracked (or elastic) table, no room for more, or a table the last point found small */
    if (!capture_reads_delta(j->t) || cap->concurrency < 2 ||
        (j->prev && !j->first && j->prev->records < 2 * RANGE_MIN_RECORDS)) {
        rc = read_one(j, &one, NULL, new_link);
        goto out;
    }
    /* 1. the link, before any range: the keys-only tracked read (see the note above) */
    if (!(s.keys = malloc(SAMPLE_MAX * sizeof *s.keys))) {
        rc = dverr_set(&j->err, -ENOMEM, "out of memory");
        goto out;
    }
    struct dv_read_query keys = {.keys_only = true};
    struct dv_read_cb kcb = {on_key, NULL, &s};
    if ((rc = dv_read_table_query(cap->dv, cap->env, j->t, NULL, &keys, &kcb, new_link, NULL,
                                  &j->err)))
        goto out;
    if (!*new_link) {
        rc = dverr_set(&j->err, -EPROTO, "%s: the keys-only read gave no delta link",
                       j->t->logical_name);
        goto out;
    }
    if (s.guids && s.seen >= 2 * RANGE_MIN_RECORDS && s.n >= 2) {
        n_ranges = (size_t)(s.seen / RANGE_MIN_RECORDS);
        if (n_ranges > (size_t)cap->concurrency)
            n_ranges = (size_t)cap->concurrency;
        if (n_ranges > s.n)
            n_ranges = s.n;
    }
    /* 2. the records: one untracked stream, or the ranges side by side */
    struct dv_read_query whole = {0};
    if (n_ranges < 2) {
        rc = read_one(j, &one, &whole, NULL);
        goto out;
    }
    if (!(rs = calloc(n_ranges, sizeof *rs))) {
        rc = dverr_set(&j->err, -ENOMEM, "out of memory");
        goto out;
    }
    log_info("%s/%s: %llu records: read as %zu key ranges side by side",
             cap->env->unique_name, j->t->logical_name, (unsigned long long)s.seen, n_ranges);
    for (size_t i = 0; i < n_ranges; i++) {
        rs[i].j = j;
        rs[i].from = i ? s.keys[i * s.n / n_ranges] : NULL;
        rs[i].to = i + 1 < n_ranges ? s.keys[(i + 1) * s.n / n_ranges] : NULL;
        /* a sorter each (the sort budget shared): a range comes in key order, so its runs are
         * never merged, where the ranges interleaved in one sorter are merged again */
        if ((rc = repo_sorter_new(cap->repo, CAPTURE_SORT_BUDGET / n_ranges, &rs[i].sorter,
                                  &j->err)))
            goto out;
    }
    for (size_t i = 0; i < n_ranges; i++)
        rs[i].started = thread_start(&rs[i].thread, reader_main, &rs[i]) == 0;
    for (size_t i = 0; i < n_ranges; i++) {
        if (rs[i].started)
            pthread_join(rs[i].thread, NULL);
        else /* no thread to spare: read it here */
            reader_main(&rs[i]);
    }
    rc = 0;
    for (size_t i = 0; i < n_ranges && !rc; i++) /* the first real failure, not a stop it caused */
        if (rs[i].rc && rs[i].rc != -ECANCELED)
            rc = dverr_set(&j->err, rs[i].rc, "%s", dverr_msg(&rs[i].err));
    for (size_t i = 0; i < n_ranges && !rc; i++)
        if (rs[i].rc)
            rc = dverr_set(&j->err, rs[i].rc, "%s", dverr_msg(&rs[i].err));
    if (!rc)
        rc = ranges_hand_over(j, rs, n_ranges);
out:
    for (size_t i = 0; rs && i < n_ranges; i++) {
        segment_sorter_free(rs[i].sorter);
        buf_release(&rs[i].min_key);
        buf_release(&rs[i].max_key);
        buf_release(&rs[i].line);
        buf_release(&rs[i].row_key);
    }
    free(rs);
    free(s.keys);
    buf_release(&one.line);
    buf_release(&one.row_key);
    if (rc) {
        free(*new_link);
        *new_link = NULL;
    }
    pthread_mutex_lock(&cap->lock);
    cap->records += j->records_read % 5000;
    pthread_mutex_unlock(&cap->lock);
    return rc;
}
