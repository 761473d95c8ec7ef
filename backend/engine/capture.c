/* capture: how one table is read into a restore point (docs/architecture.md section 5; contract in
 * capture.h). The pass over an environment that runs these reads is capture_env.c; attachments
 * and file columns are capture_files.c; what the three share is capture_int.h.
 *
 * Per table, against the capture state the catalog keeps (key -> length of the record's current
 * line, in chunks: catalog.h):
 *   - tracked table with a delta link from the previous point: GET the delta link; created and
 *     updated rows are told apart by looking each key up in the capture state (one chunk read per
 *     key; the API does not say which; a row the service sends is a change, so it is kept as an
 *     update even if its line came out the same); $deletedEntity rows of keys we hold become
 *     SEG_DELETE. Memory and work follow the changed rows, not the table.
 *   - a full read (the first capture of a table, an untracked table, a table whose delta token
 *     expired or that became tracked): every record goes into an external sort (segment.h,
 *     bounded memory; a large table is read as key ranges side by side: capture_ranges.c); once the read is done the sorted records are merged in key order with the
 *     capture state's cursor (and, for keys the state keeps no hash of, with the previous point's
 *     segments, whose lines are hashed as they come): a key not in the state is a create, one
 *     whose line hash or length differs an update, a key of the state not read a delete, the
 *     rest unchanged. The changes go straight into an ordered segment writer and the whole new
 *     state into a state builder, so memory stays flat whatever the table's size. The reason a
 *     table was read in full is kept in the point (full_read_reason). The catalog keeps hashes
 *     only for tables without a delta link (read in full every pass).
 * Lines are record_render output (primary key first), keyed by the primary key's string value;
 * an elastic table's by id and partitionid (record_row_key), and it is always read in full
 * (capture_reads_delta: a delta's deleted rows do not name their partition).
 * records and bytes of every table are kept exact from the previous point and the length changes
 * (table_file_size), never by reading the table back.
 *
 * A table's state changes reach the catalog only at commit, so a table that fails halfway leaves
 * the state as it was; such a table is kept as of the previous point and listed in
 * not_captured. A cancelled or failed pass aborts the capture: nothing is committed (the repository
 * makes the point atomic).
 *
 * Files: a note's documentbody and the File and Image columns of created and updated records
 * become blobs (capture_files.c). The notes' segment writer keeps attachments once
 * (segment_writer_set_attachments): the line in the segment names the blob, and readers get the
 * base64 back; this is safe because every such blob is also one of the point's files, which is
 * what prune keeps. Schema documents are blobs (content-addressed, so an unchanged schema costs
 * nothing).
 *
 * Limits: a full read holds CAPTURE_SORT_BUDGET of records in memory (the rest in compressed sort
 * runs on disk, about a sixth of the table's JSON) and one page of the service's JSON; a delta read
 * holds the changed lines in memory.
 * Threading: each table is read on the worker thread that took it (capture_env.c); every progress
 * callback is made under cap->lock; the repo_capture's state calls are thread-safe (the catalog
 * serialises them); reads, rendering, sorting, segment writing and blob writes run unlocked. */
#include "backend/engine/capture_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "backend/base/record.h"
#include "backend/repo/segment.h" /* changes_line_size: the exact size changes/ shows */

static int render(struct table_job *j, const struct json_node *rec, const char **key,
                  size_t *key_len)
{
    buf_reset(&j->line);
    int rc = record_render(rec, j->t->primary_id, &j->line);
    if (rc)
        return dverr_set(&j->err, rc, "a record of %s could not be rendered", j->t->logical_name);
    *key = record_row_key(rec, j->t->primary_id, capture_partition_column(j->t), &j->row_key,
                          key_len);
    if (!*key)
        return dverr_set(&j->err, -EPROTO, "a record of %s has no primary key %s",
                         j->t->logical_name, j->t->primary_id);
    return 0;
}

static void count_record(struct table_job *j)
{
    struct cap *cap = j->cap;
    j->records_read++;
    if (j->records_read % 5000 == 0) {
        pthread_mutex_lock(&cap->lock);
        cap->records += 5000;
        capture_progress_locked(cap, j->t->logical_name);
        pthread_mutex_unlock(&cap->lock);
    }
}

static int state_lookup(struct table_job *j, struct km_entry *e)
{
    uint64_t h = 0, len = 0;
    bool found = false;
    int rc = repo_capture_state_get(j->cap->rc, j->t->logical_name, e->key, e->key_len, &h, &len,
                                    &found);
    if (rc)
        return dverr_set(&j->err, rc, "capture state of %s unreadable", j->t->logical_name);
    if (found) {
        e->flags |= KM_OLD | (h ? KM_HASHED | KM_HASH_KEPT : 0);
        e->old_hash = h;
        e->old_len = len;
    }
    return 0;
}

/* Delta read: only changed rows arrive; the capture state tells created from updated. */
static int on_record_delta(void *ctx, const struct json_node *rec)
{
    struct table_job *j = ctx;
    const char *key;
    size_t klen;
    bool added;
    if (cancelled(j->cap))
        return -ECANCELED;
    int rc = render(j, rec, &key, &klen);
    if (rc)
        return rc;
    count_record(j);
    struct km_entry *e = km_get(&j->map, key, klen, true, &added);
    if (!e)
        return dverr_set(&j->err, -ENOMEM, "out of memory reading %s", j->t->logical_name);
    if (added && (rc = state_lookup(j, e)))
        return rc;
    e->flags |= KM_SEEN;
    free(e->line);
    e->line = NULL;
    e->new_hash = repo_line_hash(j->cap->repo, j->line.data, j->line.len);
    e->new_len = j->line.len;
    e->op = (e->flags & KM_OLD) ? KM_UPDATE : KM_CREATE;
    e->line = malloc(j->line.len + 1);
    if (!e->line)
        return dverr_set(&j->err, -ENOMEM, "out of memory reading %s", j->t->logical_name);
    memcpy(e->line, j->line.data, j->line.len + 1);
    e->line_len = j->line.len;
    return capture_record_files(j, rec, key);
}

static int on_deleted(void *ctx, const char *id)
{
    struct table_job *j = ctx;
    bool added;
    if (cancelled(j->cap))
        return -ECANCELED;
    struct km_entry *e = km_get(&j->map, id, strlen(id), true, &added);
    if (!e)
        return dverr_set(&j->err, -ENOMEM, "out of memory reading %s", j->t->logical_name);
    int rc;
    if (added && (rc = state_lookup(j, e)))
        return rc;
    e->flags |= KM_SEEN;
    free(e->line);
    e->line = NULL;
    e->op = (e->flags & KM_OLD) ? KM_DELETE : KM_NONE; /* created and deleted since: nothing */
    return 0;
}

/* What a read changed: counts for the point table. */
struct change_counts {
    uint64_t records;        /* in the table after this read */
    int64_t line_delta;      /* change of the table's line bytes */
    uint64_t lines, line_bytes; /* of changes/ */
};

static void count_change(struct table_job *j, struct change_counts *n, enum segment_op op,
                         const char *key, size_t key_len, uint64_t old_len, uint64_t new_len)
{
    struct point_table *o = &j->out;
    switch (op) {
    case SEG_CREATE:
        o->created++;
        n->records++;
        n->line_delta += (int64_t)new_len;
        break;
    case SEG_UPDATE:
        o->updated++;
        n->line_delta += (int64_t)new_len - (int64_t)old_len;
        break;
    default:
        o->deleted++;
        n->records--;
        n->line_delta -= (int64_t)old_len;
        break;
    }
    n->lines++;
    n->line_bytes += changes_line_size(op, key, key_len, op == SEG_DELETE ? 0 : new_len);
}

/* Delta read: apply the map to the segment (its entries), the counts and the capture state. */
static int finish_delta(struct table_job *j, struct change_counts *n)
{
    struct cap *cap = j->cap;
    int rc = 0;
    for (size_t i = 0; i < j->map.cap && !rc; i++) {
        struct km_entry *e = keymap_slot(&j->map, i);
        if (!e->key || e->op == KM_NONE)
            continue;
        enum segment_op op = e->op == KM_CREATE   ? SEG_CREATE
                             : e->op == KM_UPDATE ? SEG_UPDATE
                                                  : SEG_DELETE;
        count_change(j, n, op, e->key, e->key_len, e->old_len, e->new_len);
        rc = segment_writer_add(j->sw, op, e->key, e->key_len, op == SEG_DELETE ? "" : e->line,
                                op == SEG_DELETE ? 0 : e->line_len, &j->err);
    }
    if (rc)
        return rc;
    /* the catalog applies these at commit, so a table that fails later leaves its state as it was */
    for (size_t i = 0; i < j->map.cap && !rc; i++) {
        struct km_entry *e = keymap_slot(&j->map, i);
        if (!e->key)
            continue;
        uint64_t keep = j->keep_hashes ? e->new_hash : 0;
        if (e->op == KM_CREATE || e->op == KM_UPDATE)
            rc = repo_capture_state_put(cap->rc, j->t->logical_name, e->key, e->key_len, keep,
                                        e->new_len, false);
        else if (e->op == KM_DELETE)
            rc = repo_capture_state_put(cap->rc, j->t->logical_name, e->key, e->key_len, 0, 0,
                                        true);
    }
    if (rc)
        return dverr_set(&j->err, rc, "capture state of %s could not be written",
                         j->t->logical_name);
    return 0;
}

/* ---- full reads: the sorted records merged with the capture state ---- */

struct full_merge {
    struct table_job *j;
    struct catalog_cursor *old;   /* the capture state (NULL: a first capture) */
    bool old_have;
    struct buf old_key;
    uint64_t old_hash, old_len;
    struct segment_merge *prev;   /* the previous point's records, for keys kept without a hash
                                   * (opened on first need) */
    bool prev_open, prev_have;
    struct segment_entry prev_e;
    struct catalog_state_builder *state;
    struct change_counts *n;
};

static int old_next(struct full_merge *m)
{
    const char *k;
    size_t kn;
    int r = repo_state_cursor_next(m->old, &k, &kn, &m->old_hash, &m->old_len);
    if (r < 0)
        return dverr_set(&m->j->err, r, "capture state of %s unreadable", m->j->t->logical_name);
    m->old_have = r == 1;
    buf_reset(&m->old_key);
    if (m->old_have && buf_add(&m->old_key, k, kn))
        return dverr_set(&m->j->err, -ENOMEM, "out of memory");
    return 0;
}

/* The hash of the previous point's line of key when it has old_len bytes (the state and the
 * point agree), else 0: the record is then rewritten, never dropped. */
static int prev_hash(struct full_merge *m, const char *key, size_t kn, uint64_t *hash)
{
    struct table_job *j = m->j;
    *hash = 0;
    if (!j->prev)
        return 0;
    int rc;
    if (!m->prev_open) {
        m->prev_open = true;
        if ((rc = repo_table_merge_open(j->cap->repo, j->prev, &m->prev, &j->err)))
            return rc;
        if ((rc = segment_merge_next(m->prev, &m->prev_e, &j->err)) < 0)
            return rc;
        m->prev_have = rc == 1;
    }
    int c = 1;
    while (m->prev_have && (c = segment_key_cmp(m->prev_e.key, m->prev_e.key_len, key, kn)) < 0) {
        if (cancelled(j->cap))
            return -ECANCELED;
        if ((rc = segment_merge_next(m->prev, &m->prev_e, &j->err)) < 0)
            return rc;
        m->prev_have = rc == 1;
    }
    if (m->prev_have && c == 0 && m->prev_e.line_len == m->old_len)
        *hash = repo_line_hash(j->cap->repo, m->prev_e.line, m->prev_e.line_len);
    return 0;
}

/* A key of the state that the read did not see: deleted. */
static int full_delete_old(struct full_merge *m)
{
    struct table_job *j = m->j;
    count_change(j, m->n, SEG_DELETE, m->old_key.data, m->old_key.len, m->old_len, 0);
    int rc = segment_writer_add(j->sw, SEG_DELETE, m->old_key.data, m->old_key.len, "", 0,
                                &j->err);
    if (!rc)
        rc = capture_full_files_key(j, m->old_key.data, m->old_key.len, KM_DELETE, NULL, 0);
    return rc ? rc : old_next(m);
}

static int full_entry(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    (void)err; /* errors go to j->err */
    struct full_merge *m = ctx;
    struct table_job *j = m->j;
    int rc, c = 1;
    if (cancelled(j->cap))
        return -ECANCELED;
    while (m->old_have &&
           (c = segment_key_cmp(m->old_key.data, m->old_key.len, e->key, e->key_len)) < 0)
        if ((rc = full_delete_old(m)))
            return rc;
    uint64_t hash = repo_line_hash(j->cap->repo, e->line, e->line_len);
    enum km_op op = KM_CREATE;
    uint64_t old_len = 0;
    if (m->old_have && c == 0) {
        uint64_t old_hash = m->old_hash;
        old_len = m->old_len;
        if (!old_hash && (rc = prev_hash(m, e->key, e->key_len, &old_hash)))
            return rc;
        op = old_hash && old_hash == hash && old_len == e->line_len ? KM_NONE : KM_UPDATE;
        if ((rc = old_next(m)))
            return rc;
    }
    if (op != KM_NONE) {
        enum segment_op sop = op == KM_CREATE ? SEG_CREATE : SEG_UPDATE;
        count_change(j, m->n, sop, e->key, e->key_len, old_len, e->line_len);
        if ((rc = segment_writer_add(j->sw, sop, e->key, e->key_len, e->line, e->line_len,
                                     &j->err)))
            return rc;
    }
    if ((rc = repo_state_builder_add(m->state, e->key, e->key_len, j->keep_hashes ? hash : 0,
                                     e->line_len)))
        return dverr_set(&j->err, rc, "capture state of %s could not be written",
                         j->t->logical_name);
    return capture_full_files_key(j, e->key, e->key_len, op, e->line, e->line_len);
}

/* The sorted records of a full read against the state: the changes into j->sw (ordered), the
 * table's new state into a builder, files decided key by key. */
static int finish_full(struct table_job *j, struct change_counts *n)
{
    struct cap *cap = j->cap;
    struct full_merge m = {.j = j, .n = n};
    int rc = 0;
    if (!j->first && (rc = repo_capture_state_cursor(cap->rc, j->t->logical_name, &m.old)))
        rc = dverr_set(&j->err, rc, "capture state of %s unreadable", j->t->logical_name);
    if (!rc && m.old)
        rc = old_next(&m);
    if (!rc && (rc = repo_capture_state_replace(cap->rc, j->t->logical_name, &m.state)))
        rc = dverr_set(&j->err, rc, "capture state of %s could not be written",
                       j->t->logical_name);
    if (!rc)
        rc = capture_full_files_begin(j);
    if (!rc)
        rc = capture_full_drain(j, full_entry, &m);
    while (!rc && m.old_have)
        rc = full_delete_old(&m);
    if (!rc)
        rc = capture_full_files_key(j, NULL, 0, KM_NONE, NULL, 0); /* the end */
    if (!rc) {
        rc = repo_state_builder_finish(m.state);
        m.state = NULL;
        if (rc)
            dverr_set(&j->err, rc, "capture state of %s could not be written",
                      j->t->logical_name);
    }
    repo_state_builder_abort(m.state);
    repo_state_cursor_free(m.old);
    segment_merge_free(m.prev);
    buf_release(&m.old_key);
    capture_full_sorters_free(j);
    return rc;
}

void capture_point_table_release(struct point_table *t)
{
    free(t->name);
    free(t->entity_set);
    free(t->primary_key);
    for (size_t i = 0; i < t->n_segments; i++)
        free(t->segments[i]);
    free(t->segments);
    free(t->delta);
    free(t->schema);
    free(t->delta_link);
    free(t->full_read_reason);
    memset(t, 0, sizeof *t);
}

static int copy_chain(struct point_table *o, const struct point_table *prev, const char *add)
{
    size_t n = (prev ? prev->n_segments : 0) + (add ? 1 : 0);
    o->segments = calloc(n ? n : 1, sizeof *o->segments);
    if (!o->segments)
        return -ENOMEM;
    for (size_t i = 0; prev && i < prev->n_segments; i++)
        if (!(o->segments[o->n_segments++] = strdup(prev->segments[i])))
            return -ENOMEM;
    if (add && !(o->segments[o->n_segments++] = strdup(add)))
        return -ENOMEM;
    return 0;
}

/* The table as of the previous point (a table that could not be read this time). */
int capture_carry_previous(struct table_job *j)
{
    const struct point_table *p = j->prev;
    struct point_table *o = &j->out;
    capture_point_table_release(o);
    o->name = xstrdup(p->name);
    o->entity_set = xstrdup(p->entity_set);
    o->primary_key = xstrdup(p->primary_key);
    o->records = p->records;
    o->bytes = p->bytes;
    o->changes_bytes = table_file_size(0, 0);
    o->schema = xstrdup(p->schema);
    o->delta_link = xstrdup(p->delta_link);
    int rc = copy_chain(o, p, NULL);
    if (rc || !o->name)
        return -ENOMEM;
    /* its files stay as they were: carried from the previous point when the list is written */
    capture_job_files_release(j);
    j->carry_prev_files = true;
    return 0;
}

void capture_job_reset_read(struct table_job *j)
{
    segment_writer_abort(j->sw);
    j->sw = NULL;
    capture_full_sorters_free(j);
    km_release(&j->map);
    for (size_t i = 0; i < j->n_todo; i++)
        free(j->todo[i].key);
    j->n_todo = 0;
    capture_job_files_release(j);
    capture_full_files_release(j);
}

/* One read of the table (delta when delta_link is given, else full) into j->out. */
static int read_table(struct table_job *j, const char *delta_link, const char *reason)
{
    struct cap *cap = j->cap;
    struct point_table *o = &j->out;
    const struct point_table *prev = j->prev;
    char *new_link = NULL;
    int rc;

    j->delta_mode = delta_link != NULL;
    j->records_read = 0;
    if ((rc = segment_writer_new(cap->repo, &j->sw, &j->err)))
        return rc;
    segment_writer_set_attachments(j->sw, j->is_annotation); /* its blobs are the point's files */
    if (!j->delta_mode) { /* the merge gives the changes in key order */
        segment_writer_set_ordered(j->sw);
        if ((rc = repo_sorter_new(cap->repo, CAPTURE_SORT_BUDGET, &j->sorter, &j->err)))
            return rc;
    }
    if (j->delta_mode) {
        struct dv_read_stats st = {0};
        struct dv_read_cb cb = {on_record_delta, on_deleted, j};
        rc = dv_read_table(cap->dv, cap->env, j->t, delta_link, &cb, &new_link, &st, &j->err);
        pthread_mutex_lock(&cap->lock);
        cap->records += j->records_read % 5000;
        pthread_mutex_unlock(&cap->lock);
    } else {
        /* capture_ranges.c; an elastic table's link would never be used: its read is untracked */
        rc = capture_read_full(j, capture_reads_delta(j->t) ? &new_link : NULL);
    }
    if (rc)
        goto out;
    j->keep_hashes = new_link == NULL; /* read in full again next pass: keep what it diffs by */

    struct change_counts n = {0};
    n.records = prev && !j->first ? prev->records : 0;
    int64_t line_bytes = 0;
    if (n.records)
        line_bytes = (int64_t)(prev->bytes - 2 * n.records - 3);
    if ((rc = j->delta_mode ? finish_delta(j, &n) : finish_full(j, &n)))
        goto out;
    line_bytes += n.line_delta;
    if (line_bytes < 0 || (n.records == 0 && line_bytes != 0)) {
        rc = dverr_set(&j->err, -EIO, "%s: record sizes do not add up (capture state damaged?)",
                       j->t->logical_name);
        goto out;
    }
    if ((rc = j->delta_mode ? capture_finish_files(j) : capture_download_files(j)))
        goto out;
    char id[65] = "";
    uint64_t entries = segment_writer_count(j->sw);
    rc = segment_writer_finish(j->sw, id, &j->err);
    j->sw = NULL;
    if (rc)
        goto out;
    o->records = n.records;
    o->bytes = table_file_size(n.records, (uint64_t)line_bytes);
    o->changes_bytes = table_file_size(n.lines, n.line_bytes);
    if (entries && id[0]) {
        o->delta = strdup(id);
        if (!o->delta || copy_chain(o, j->first ? NULL : prev, id)) {
            rc = -ENOMEM;
            goto out;
        }
    } else if ((rc = copy_chain(o, j->first ? NULL : prev, NULL))) {
        goto out;
    }
    /* A long chain or deltas that outweigh the base: compacted (repo_table_compact). The delta
     * stays this point's changes. */
    if (o->delta && (rc = repo_table_compact(cap->repo, o, &j->err)))
        goto out;
    /* An unchanged table keeps its delta link while the UTC day of the previous point lasts, so
     * an idle point's tables are its parent's (one shared object, manifest.h): reading from the
     * older link gives the same changes (none happened in between), and every link is renewed
     * daily, well within the service's lifetime for delta tokens. */
    if (j->delta_mode && !o->delta && !n.lines && prev && prev->delta_link && cap->prev &&
        cap->prev->taken_at / 86400 == cap->now / 86400) {
        if (!(o->delta_link = strdup(prev->delta_link)))
            rc = -ENOMEM;
    } else {
        o->delta_link = new_link;
        new_link = NULL;
    }
    if (!rc && reason && !(o->full_read_reason = strdup(reason)))
        rc = -ENOMEM;
out:
    free(new_link);
    return rc;
}

int capture_run_job(struct table_job *j)
{
    struct cap *cap = j->cap;
    const struct dv_table *t = j->t;
    struct point_table *o = &j->out;
    int rc;

    o->name = xstrdup(t->logical_name);
    o->entity_set = xstrdup(t->entity_set);
    o->primary_key = xstrdup(t->primary_id);
    if (!o->name || !o->entity_set || !o->primary_key)
        return -ENOMEM;
    j->is_annotation = strcmp(t->logical_name, "annotation") == 0;
    if ((rc = capture_find_file_columns(j)))
        return rc;
    if (t->schema_json) {
        char id[65];
        if ((rc = repo_blob_put(cap->repo, t->schema_json, strlen(t->schema_json), id, &j->err)))
            return rc;
        if (!(o->schema = strdup(id)))
            return -ENOMEM;
    }
    j->first = j->prev == NULL;
    const char *reason = NULL;
    if (j->first)
        reason = NULL;
    else if (t->is_elastic)
        reason = "an elastic table: read in full and compared by record hash (a delta's deleted "
                 "rows do not name their partition)";
    else if (!t->change_tracking)
        reason = "the table has no change tracking: read in full and compared by record hash";
    else if (!j->prev->delta_link)
        reason = "change tracking is new for this table: read in full and compared";

    if (!j->first && capture_reads_delta(t) && j->prev->delta_link) {
        rc = read_table(j, j->prev->delta_link, NULL);
        if (rc != -ESTALE)
            return rc;
        log_info("%s/%s: change-tracking token expired; reading the whole table",
                 cap->env->unique_name, t->logical_name);
        capture_job_reset_read(j);
        free(o->delta), o->delta = NULL;
        o->created = o->updated = o->deleted = 0;
        j->err = (struct dverr){0};
        reason = "the change-tracking token expired (the service asked for a full sync): read "
                 "in full and compared by record hash";
    }
    return read_table(j, NULL, reason);
}
