/* capture: how one table is read into a restore point (docs/architecture.md section 5; contract in
 * capture.h). The pass over an environment that runs these reads is capture_env.c; attachments
 * and file columns are capture_files.c; what the three share is capture_int.h.
 *
 * Per table, against the capture state the catalog keeps (key -> length of the record's current
 * line):
 *   - first capture of a table: a full read; every record is written as SEG_CREATE into one
 *     segment that is both the table's whole chain and the point's delta, so changes/ of the first
 *     point lists everything as created (no separate SEG_BASE: one object, not two);
 *   - tracked table with a delta link from the previous point: GET the delta link; created and
 *     updated rows are told apart by the capture state (the API does not say which; a row the
 *     service sends is a change, so it is kept as an update even if its line came out the same);
 *     $deletedEntity rows of keys we hold become SEG_DELETE;
 *   - untracked table, a table whose delta token expired (-ESTALE), or a table that became
 *     tracked: a full read diffed by record hash; keys not seen are deletions. The reason is kept
 *     in the point (full_read_reason). The catalog keeps hashes only for tables without a delta
 *     link (read in full every pass); any other table's old hashes are computed from the previous
 *     point's segments (hash_prev_line), so tracked tables cost the catalog 8 bytes a record
 *     less and a rare full read of them reads the table's segments once.
 * Lines are record_render output (primary key first), keyed by the primary key's string value.
 * records and bytes of every table are kept exact from the previous point and the length changes
 * (table_file_size), never by reading the table back.
 *
 * A table's state changes reach the catalog only after its read finished, so a table that fails
 * halfway leaves the state as it was; such a table is kept as of the previous point and listed in
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
 * Limits: a full read holds one map entry per record key (about 100 bytes each plus the key) and
 * a delta read holds the changed lines in memory; a table of 1M records costs ~150 MB during its
 * read, plus the table's packed capture state while it is read (about 40 bytes a record; dropped
 * with repo_capture_state_done when the read ends).
 * Threading: each table is read on the worker thread that took it (capture_env.c); every call on
 * the repo_capture (a catalog transaction) and every progress callback is made under cap->lock;
 * reads, rendering, segment writing and blob writes run unlocked. */
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
                  size_t *key_len, uint64_t *hash)
{
    buf_reset(&j->line);
    int rc = record_render(rec, j->t->primary_id, &j->line);
    if (rc)
        return dverr_set(&j->err, rc, "a record of %s could not be rendered", j->t->logical_name);
    *key = record_key(rec, j->t->primary_id, key_len);
    if (!*key)
        return dverr_set(&j->err, -EPROTO, "a record of %s has no primary key %s",
                         j->t->logical_name, j->t->primary_id);
    *hash = repo_line_hash(j->line.data, j->line.len);
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

/* Full read: every record is looked up in the map loaded from the capture state. */
static int on_record_full(void *ctx, const struct json_node *rec)
{
    struct table_job *j = ctx;
    const char *key;
    size_t klen;
    uint64_t hash;
    if (cancelled(j->cap))
        return -ECANCELED;
    int rc = render(j, rec, &key, &klen, &hash);
    if (rc)
        return rc;
    count_record(j);
    struct km_entry *e = km_get(&j->map, key, klen, true, NULL);
    if (!e)
        return dverr_set(&j->err, -ENOMEM, "out of memory reading %s", j->t->logical_name);
    bool existed = (e->flags & KM_OLD) && !j->first;
    bool again = e->flags & KM_SEEN; /* the same key twice in one read: the later line wins */
    e->flags |= KM_SEEN;
    e->new_hash = hash;
    e->new_len = j->line.len;
    if (!existed)
        e->op = KM_CREATE;
    else if ((e->flags & KM_HASHED) && e->old_hash == hash && e->old_len == j->line.len &&
             !(again && e->op != KM_NONE))
        e->op = KM_NONE;
    else
        e->op = KM_UPDATE;
    if (e->op == KM_NONE)
        return 0;
    rc = segment_writer_add(j->sw, e->op == KM_CREATE ? SEG_CREATE : SEG_UPDATE, key, klen,
                            j->line.data, j->line.len, &j->err);
    if (!rc)
        rc = capture_record_files(j, rec, key);
    return rc;
}

static int state_lookup(struct table_job *j, struct km_entry *e)
{
    uint64_t h = 0, len = 0;
    bool found = false;
    pthread_mutex_lock(&j->cap->lock);
    int rc = repo_capture_state_get(j->cap->rc, j->t->logical_name, e->key, e->key_len, &h, &len,
                                    &found);
    pthread_mutex_unlock(&j->cap->lock);
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
    uint64_t hash;
    bool added;
    if (cancelled(j->cap))
        return -ECANCELED;
    int rc = render(j, rec, &key, &klen, &hash);
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
    e->new_hash = hash;
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

static int load_state(void *ctx, const char *key, uint64_t hash, uint64_t len)
{
    struct table_job *j = ctx;
    struct km_entry *e = km_get(&j->map, key, strlen(key), true, NULL);
    if (!e)
        return -ENOMEM;
    e->flags = KM_OLD | (hash ? KM_HASHED | KM_HASH_KEPT : 0);
    e->old_hash = hash;
    e->old_len = len;
    if (!hash)
        j->unhashed++;
    return 0;
}

/* A record of the previous point: its line's hash, for the key the state holds with that length
 * (a state and a point that disagree leave the key unhashed: it is rewritten, never dropped). */
static int hash_prev_line(void *ctx, const char *key, size_t key_len, const char *line,
                          size_t line_len)
{
    struct table_job *j = ctx;
    if (cancelled(j->cap))
        return -ECANCELED;
    struct km_entry *e = km_get(&j->map, key, key_len, false, NULL);
    if (e && (e->flags & KM_OLD) && !(e->flags & KM_HASHED) && e->old_len == line_len) {
        e->old_hash = repo_line_hash(line, line_len);
        e->flags |= KM_HASHED;
    }
    return 0;
}

/* Apply the map to the segment (delta entries), the counts and the capture state. */
static int finish_changes(struct table_job *j, uint64_t *records, int64_t *line_bytes,
                          uint64_t *changes_lines, uint64_t *changes_line_bytes)
{
    struct cap *cap = j->cap;
    struct point_table *o = &j->out;
    int rc = 0;
    for (size_t i = 0; i < j->map.cap && !rc; i++) {
        struct km_entry *e = keymap_slot(&j->map, i);
        if (!e->key)
            continue;
        if (!j->delta_mode && !(e->flags & KM_SEEN) && (e->flags & KM_OLD))
            e->op = j->first ? KM_NONE : KM_DELETE; /* first: stale state, dropped below */
        switch (e->op) {
        case KM_CREATE:
            o->created++;
            (*records)++;
            *line_bytes += (int64_t)e->new_len;
            break;
        case KM_UPDATE:
            o->updated++;
            *line_bytes += (int64_t)e->new_len - (int64_t)e->old_len;
            break;
        case KM_DELETE:
            o->deleted++;
            (*records)--;
            *line_bytes -= (int64_t)e->old_len;
            break;
        default:
            continue;
        }
        (*changes_lines)++;
        *changes_line_bytes += changes_line_size(e->op == KM_CREATE   ? SEG_CREATE
                                                 : e->op == KM_UPDATE ? SEG_UPDATE
                                                                      : SEG_DELETE,
                                                 e->key, e->key_len,
                                                 e->op == KM_DELETE ? 0 : e->new_len);
        if (j->delta_mode || e->op == KM_DELETE)
            rc = segment_writer_add(j->sw,
                                    e->op == KM_CREATE   ? SEG_CREATE
                                    : e->op == KM_UPDATE ? SEG_UPDATE
                                                         : SEG_DELETE,
                                    e->key, e->key_len, e->op == KM_DELETE ? "" : e->line,
                                    e->op == KM_DELETE ? 0 : e->line_len, &j->err);
    }
    if (rc)
        return rc;
    /* The catalog learns the new state only now that the whole table was read. */
    pthread_mutex_lock(&cap->lock);
    for (size_t i = 0; i < j->map.cap && !rc; i++) {
        struct km_entry *e = keymap_slot(&j->map, i);
        if (!e->key)
            continue;
        uint64_t keep = j->keep_hashes ? e->new_hash : 0;
        if (e->op == KM_CREATE || e->op == KM_UPDATE)
            rc = repo_capture_state_put(cap->rc, j->t->logical_name, e->key, e->key_len, keep,
                                        e->new_len, false);
        else if (e->op == KM_NONE && keep && (e->flags & KM_SEEN) && !(e->flags & KM_HASH_KEPT))
            rc = repo_capture_state_put(cap->rc, j->t->logical_name, e->key, e->key_len, keep,
                                        e->new_len, false); /* unchanged: its hash is kept now */
        else if (e->op == KM_DELETE || (j->first && (e->flags & KM_OLD) && !(e->flags & KM_SEEN)))
            rc = repo_capture_state_put(cap->rc, j->t->logical_name, e->key, e->key_len, 0, 0,
                                        true);
    }
    pthread_mutex_unlock(&cap->lock);
    if (rc)
        return dverr_set(&j->err, rc, "capture state of %s could not be written",
                         j->t->logical_name);
    return 0;
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
    /* its files stay as they were */
    capture_files_free(j->files, j->n_files);
    j->files = NULL;
    j->n_files = j->cap_files = 0;
    const struct point *prev = j->cap->prev;
    for (size_t i = 0; prev && i < prev->n_files && !rc; i++)
        if (prev->files[i].table && strcmp(prev->files[i].table, p->name) == 0)
            rc = capture_add_file(j, prev->files[i].record_id, prev->files[i].column,
                                  prev->files[i].file_name, prev->files[i].blob,
                                  prev->files[i].size);
    return rc;
}

void capture_job_reset_read(struct table_job *j)
{
    segment_writer_abort(j->sw);
    j->sw = NULL;
    km_release(&j->map);
    for (size_t i = 0; i < j->n_todo; i++)
        free(j->todo[i].key);
    j->n_todo = 0;
    capture_files_free(j->files, j->n_files);
    j->files = NULL;
    j->n_files = j->cap_files = 0;
}

/* One read of the table (delta when delta_link is given, else full) into j->out. */
static int read_table(struct table_job *j, const char *delta_link, const char *reason)
{
    struct cap *cap = j->cap;
    struct point_table *o = &j->out;
    const struct point_table *prev = j->prev;
    char *new_link = NULL;
    struct dv_read_stats st = {0};
    int rc;

    j->delta_mode = delta_link != NULL;
    j->records_read = 0;
    j->unhashed = 0;
    if ((rc = segment_writer_new(cap->repo, &j->sw, &j->err)))
        return rc;
    segment_writer_set_attachments(j->sw, j->is_annotation); /* its blobs are the point's files */
    if (!j->delta_mode) {
        pthread_mutex_lock(&cap->lock);
        rc = repo_capture_state_iterate(cap->rc, j->t->logical_name, load_state, j);
        pthread_mutex_unlock(&cap->lock);
        if (rc)
            return dverr_set(&j->err, rc, "capture state of %s unreadable", j->t->logical_name);
        if (j->unhashed && !j->first &&
            (rc = table_iterate(cap->repo, cap->prev, prev->name, hash_prev_line, j, &j->err)))
            return rc;
    }
    struct dv_read_cb cb = {j->delta_mode ? on_record_delta : on_record_full, on_deleted, j};
    rc = dv_read_table(cap->dv, cap->env, j->t, delta_link, &cb, &new_link, &st, &j->err);
    pthread_mutex_lock(&cap->lock);
    cap->records += j->records_read % 5000;
    pthread_mutex_unlock(&cap->lock);
    if (rc)
        goto out;
    j->keep_hashes = new_link == NULL; /* read in full again next pass: keep what it diffs by */

    uint64_t records = prev && !j->first ? prev->records : 0;
    int64_t line_bytes = 0, line_delta = 0;
    if (records)
        line_bytes = (int64_t)(prev->bytes - 2 * records - 3);
    uint64_t ch_lines = 0, ch_bytes = 0;
    if ((rc = finish_changes(j, &records, &line_delta, &ch_lines, &ch_bytes)))
        goto out;
    line_bytes += line_delta;
    if (line_bytes < 0 || (records == 0 && line_bytes != 0)) {
        rc = dverr_set(&j->err, -EIO, "%s: record sizes do not add up (capture state damaged?)",
                       j->t->logical_name);
        goto out;
    }
    if ((rc = capture_finish_files(j)))
        goto out;
    char id[65] = "";
    uint64_t entries = segment_writer_count(j->sw);
    rc = segment_writer_finish(j->sw, id, &j->err);
    j->sw = NULL;
    if (rc)
        goto out;
    o->records = records;
    o->bytes = table_file_size(records, (uint64_t)line_bytes);
    o->changes_bytes = table_file_size(ch_lines, ch_bytes);
    if (entries && id[0]) {
        o->delta = strdup(id);
        if (!o->delta || copy_chain(o, j->first ? NULL : prev, id)) {
            rc = -ENOMEM;
            goto out;
        }
    } else if ((rc = copy_chain(o, j->first ? NULL : prev, NULL))) {
        goto out;
    }
    /* A new base when the chain is too long, or when deltas that update or delete records
     * outweigh the base (merging then reads records only to drop them). Tables that only grow
     * (audit) are not rewritten for their size: every entry of a create-only chain is output, so
     * a new base would cost storage and save no reading. The delta stays this point's changes. */
    if (o->delta && (o->n_segments > REPO_MAX_CHAIN ||
                     ((o->updated || o->deleted) && repo_table_should_compact(cap->repo, o)))) {
        char base[65];
        uint64_t n = 0, size = 0;
        if ((rc = repo_write_base(cap->repo, o, base, &n, &size, &j->err)))
            goto out;
        if (n != o->records || size != o->bytes) {
            rc = dverr_set(&j->err, -EIO,
                           "%s: compaction gave %llu records / %llu bytes, the capture counted "
                           "%llu / %llu (capture state damaged?)",
                           j->t->logical_name, (unsigned long long)n, (unsigned long long)size,
                           (unsigned long long)o->records, (unsigned long long)o->bytes);
            goto out;
        }
        for (size_t i = 0; i < o->n_segments; i++)
            free(o->segments[i]);
        o->n_segments = 0;
        if (!(o->segments[o->n_segments++] = strdup(base))) {
            rc = -ENOMEM;
            goto out;
        }
    }
    o->delta_link = new_link;
    new_link = NULL;
    if (reason && !(o->full_read_reason = strdup(reason)))
        rc = -ENOMEM;
out:
    /* the table's state is in the pending puts now: drop its loaded copy (memory) */
    pthread_mutex_lock(&cap->lock);
    repo_capture_state_done(cap->rc, j->t->logical_name);
    pthread_mutex_unlock(&cap->lock);
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
    else if (!t->change_tracking)
        reason = "the table has no change tracking: read in full and compared by record hash";
    else if (!j->prev->delta_link)
        reason = "change tracking is new for this table: read in full and compared";

    if (!j->first && t->change_tracking && j->prev->delta_link) {
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
