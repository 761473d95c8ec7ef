/* capture: one restore point per environment per pass (DESIGN.md section 8; contract in
 * capture.h).
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
 * Files: annotation.documentbody (base64) is decoded into a blob; File and Image columns are
 * downloaded (dv_file_download) after the table's read, for created and updated records only;
 * files of unchanged records are carried from the previous point. The notes' segment writer keeps
 * attachments once (segment_writer_set_attachments): the line in the segment names the blob, and
 * readers get the base64 back; this is safe because every such blob is also one of the point's
 * files, which is what prune keeps. Schema documents are blobs (content-addressed, so an
 * unchanged schema costs nothing).
 *
 * Limits: a file column's bytes go to an unlinked temporary file (TMPDIR, else /var/tmp) and are
 * mapped for their blob, so a large file costs disk, not memory; a file above REPO_BLOB_MAX (2 GiB;
 * DVSNAP_MAX_FILE_BYTES lowers it) is not kept and is listed in not_captured with its size, as is
 * any download that fails. A full read holds one map entry per record key (about 100 bytes each plus the key) and
 * a delta read holds the changed lines in memory; a table of 1M records costs ~150 MB during its
 * read, plus the table's packed capture state while it is read (about 40 bytes a record; dropped
 * with repo_capture_state_done when the read ends).
 * Threading: up to opts->concurrency worker threads per environment take tables from a
 * queue; every call on the repo_capture (a catalog transaction) and every progress callback is
 * made under cap->lock; reads, rendering, segment writing and blob writes run unlocked. */
#include "backend/engine/capture.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/keymap.h"
#include "backend/base/log.h"
#include "backend/engine/policy.h"
#include "backend/base/record.h"
#include "backend/repo/segment.h" /* changes_line_size: the exact size changes/ shows */

/* ---------------------------------------------------------------- key map */

enum { KM_OLD = 1, KM_SEEN = 2, KM_HASHED = 4, KM_HASH_KEPT = 8 };
enum km_op { KM_NONE = 0, KM_CREATE, KM_UPDATE, KM_DELETE };

struct km_entry {
    const char *key;         /* in the map's arena; NULL for an empty slot */
    uint32_t key_len;
    uint8_t flags;           /* KM_OLD: in the capture state (old_len); KM_SEEN: read this pass;
                              * KM_HASHED: old_hash is the previous line's; KM_HASH_KEPT: the
                              * catalog holds that hash */
    uint8_t op;              /* enum km_op, decided as the read goes */
    uint64_t old_hash, old_len, new_hash, new_len;
    char *line;              /* delta reads: the new line (malloc), NULL otherwise */
    size_t line_len;
};

static void km_init(struct keymap *m)
{
    keymap_init(m, sizeof(struct km_entry), offsetof(struct km_entry, key),
                offsetof(struct km_entry, key_len));
}

/* Frees the entries' lines, then the map. */
static void km_release(struct keymap *m)
{
    for (size_t i = 0; i < m->cap; i++)
        free(((struct km_entry *)keymap_slot(m, i))->line);
    keymap_release(m);
}

/* The entry for key, or NULL when absent (add=false) or out of memory (add=true). The pointer is
 * valid until the next insertion. */
static struct km_entry *km_get(struct keymap *m, const char *key, size_t n, bool add, bool *added)
{
    if (!add) {
        if (added)
            *added = false;
        return keymap_get(m, key, n);
    }
    return keymap_put(m, key, n, added);
}

/* ---------------------------------------------------------------- the pass */

struct file_todo {
    char *key;
    const char *column; /* owned by the job's file_cols */
    bool retry;         /* failed in the previous point: fetched again though the record did not
                         * change (else it would stay missing until it does) */
};

struct cap;

struct table_job {
    struct cap *cap;
    const struct dv_table *t;
    const struct point_table *prev; /* the table in the previous point, or NULL */
    /* results */
    struct point_table out;
    bool ok;                        /* out is filled */
    char *fail_reason;              /* set when the table could not be read */
    int rc;
    struct point_file *files;
    size_t n_files, cap_files;
    struct buf problems;            /* not_captured entries for this table (JSON objects + ',') */
    /* read state */
    struct keymap map;
    bool delta_mode;
    bool first;                     /* no previous point for this table */
    bool keep_hashes;               /* the catalog keeps this table's hashes (no delta link) */
    size_t unhashed;                /* full read: keys of the state without a hash */
    bool is_annotation;
    char **file_cols;               /* File and Image columns (owned) */
    size_t n_file_cols;
    struct segment_writer *sw;
    struct buf line;
    struct file_todo *todo;
    size_t n_todo, cap_todo;
    uint64_t records_read;
    struct dverr err;
};

struct cap {
    struct dv_client *dv;
    struct repo *repo;
    const struct dv_env *env;
    const struct capture_opts *opts;
    struct repo_capture *rc;
    const struct point *prev;
    pthread_mutex_t lock;           /* guards rc calls, next, tables_done, records, progress */
    size_t next;
    uint64_t tables_done, records;
    struct table_job *jobs;
    size_t n_jobs;
    _Atomic uint64_t blobs_written;
};

static bool cancelled(const struct cap *cap)
{
    return cap->opts && cap->opts->cancel && atomic_load(cap->opts->cancel);
}

static void progress_locked(struct cap *cap, const char *table)
{
    if (!cap->opts || !cap->opts->progress)
        return;
    struct capture_progress p = {cap->env->unique_name, table, cap->tables_done, cap->n_jobs,
                                 cap->records};
    cap->opts->progress(cap->opts->progress_ctx, &p);
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* A not_captured entry; a file's also names its table, record and column (the next capture
 * fetches it again: queue_failed_files). */
static int add_problem_of(struct table_job *j, const char *what, const char *reason,
                          const char *record_id, const char *column, uint64_t too_large)
{
    struct buf *b = &j->problems;
    int rc = buf_addstr(b, "{\"what\":");
    if (!rc)
        rc = buf_add_json_string(b, what, strlen(what));
    if (!rc)
        rc = buf_addstr(b, ",\"reason\":");
    if (!rc)
        rc = buf_add_json_string(b, reason, strlen(reason));
    if (!rc && record_id && column) {
        const char *t = j->t->logical_name;
        rc = buf_addstr(b, ",\"table\":");
        if (!rc)
            rc = buf_add_json_string(b, t, strlen(t));
        if (!rc)
            rc = buf_addstr(b, ",\"record_id\":");
        if (!rc)
            rc = buf_add_json_string(b, record_id, strlen(record_id));
        if (!rc)
            rc = buf_addstr(b, ",\"column\":");
        if (!rc)
            rc = buf_add_json_string(b, column, strlen(column));
        if (!rc && too_large) /* above this limit: not fetched again while the limit stays */
            rc = buf_printf(b, ",\"limit\":%llu", (unsigned long long)too_large);
    }
    if (!rc)
        rc = buf_addstr(b, "},");
    return rc;
}

static int add_problem(struct table_job *j, const char *what, const char *reason)
{
    return add_problem_of(j, what, reason, NULL, NULL, 0);
}

static int add_file(struct table_job *j, const char *key, const char *column,
                    const char *file_name, const char *blob, uint64_t size)
{
    if (j->n_files == j->cap_files) {
        size_t cap = j->cap_files ? j->cap_files * 2 : 16;
        struct point_file *f = realloc(j->files, cap * sizeof *f);
        if (!f)
            return -ENOMEM;
        j->files = f;
        j->cap_files = cap;
    }
    struct point_file *f = &j->files[j->n_files];
    memset(f, 0, sizeof *f);
    f->table = xstrdup(j->t->logical_name);
    f->record_id = xstrdup(key);
    f->column = xstrdup(column);
    f->file_name = xstrdup(file_name);
    f->blob = xstrdup(blob);
    f->size = size;
    if (!f->table || !f->record_id || !f->column || !f->file_name || !f->blob) {
        free(f->table), free(f->record_id), free(f->column), free(f->file_name), free(f->blob);
        return -ENOMEM;
    }
    j->n_files++;
    return 0;
}

static void point_file_release(struct point_file *f)
{
    free(f->table);
    free(f->record_id);
    free(f->column);
    free(f->file_name);
    free(f->blob);
    memset(f, 0, sizeof *f);
}

static void files_free(struct point_file *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        point_file_release(&f[i]);
    free(f);
}

/* Queue a file column's download (retry: the previous point lists it as not captured). */
static int add_todo(struct table_job *j, const char *key, const char *column, bool retry)
{
    if (j->n_todo == j->cap_todo) {
        size_t cap = j->cap_todo ? j->cap_todo * 2 : 16;
        struct file_todo *t = realloc(j->todo, cap * sizeof *t);
        if (!t)
            return -ENOMEM;
        j->todo = t;
        j->cap_todo = cap;
    }
    if (!(j->todo[j->n_todo].key = strdup(key)))
        return -ENOMEM;
    j->todo[j->n_todo].column = column;
    j->todo[j->n_todo].retry = retry;
    j->n_todo++;
    return 0;
}

/* Files named in one record: documentbody of a note (decoded now), file columns (queued). */
static int record_files(struct table_job *j, const struct json_node *rec, const char *key)
{
    int rc = 0;
    if (j->is_annotation) {
        const struct json_node *body = json_get(rec, "documentbody");
        if (body && body->type == JSON_STRING && body->str_len) {
            struct buf bytes = BUF_INIT;
            char id[65];
            rc = base64_decode(body->str, body->str_len, &bytes);
            if (rc == -EINVAL) {
                char what[300];
                snprintf(what, sizeof what, "attachment of note %s", key);
                buf_release(&bytes);
                return add_problem(j, what, "documentbody is not valid base64");
            }
            if (!rc)
                rc = repo_blob_put(j->cap->repo, bytes.data ? bytes.data : "", bytes.len, id,
                                   &j->err);
            if (!rc) {
                const char *name = json_get_str(rec, "filename");
                rc = add_file(j, key, "documentbody", name && *name ? name : "documentbody", id,
                              bytes.len);
                atomic_fetch_add(&j->cap->blobs_written, 1);
            }
            buf_release(&bytes);
            if (rc)
                return rc;
        }
    }
    for (size_t i = 0; i < j->n_file_cols && !rc; i++) {
        const struct json_node *v = json_get(rec, j->file_cols[i]);
        if (v && v->type == JSON_STRING && v->str_len)
            rc = add_todo(j, key, j->file_cols[i], false);
    }
    return rc;
}

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
        progress_locked(cap, j->t->logical_name);
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
        rc = record_files(j, rec, key);
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
    return record_files(j, rec, key);
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

/* A file column's bytes on their way to a blob (see Limits above). */
struct file_sink {
    int fd;
    uint64_t len, max;
    bool too_big;
};

static uint64_t max_file_bytes(void)
{
    const char *v = getenv("DVSNAP_MAX_FILE_BYTES");
    unsigned long long n = v && *v ? strtoull(v, NULL, 10) : 0;
    return n && n < REPO_BLOB_MAX ? (uint64_t)n : REPO_BLOB_MAX;
}

static int file_sink_open(struct file_sink *s, struct dverr *err)
{
    const char *dir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/var/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/dvsnap-file.XXXXXX", dir);
    *s = (struct file_sink){.fd = mkstemp(path), .max = max_file_bytes()};
    if (s->fd < 0)
        return dverr_set(err, -errno, "no temporary file in %s: %s", dir, strerror(errno));
    unlink(path);
    return 0;
}

static int download_file(void *ctx, const void *data, size_t len)
{
    struct file_sink *s = ctx;
    if (s->len + len > s->max) {
        s->too_big = true;
        return -EFBIG;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(s->fd, (const char *)data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        off += (size_t)w;
    }
    s->len += len;
    return 0;
}

/* The downloaded bytes into a blob (id), read through a mapping of the temporary file. */
static int file_sink_to_blob(struct file_sink *s, struct repo *repo, char id[65], struct dverr *err)
{
    if (s->len == 0)
        return repo_blob_put(repo, "", 0, id, err);
    void *p = mmap(NULL, s->len, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (p == MAP_FAILED)
        return dverr_set(err, -errno, "mapping a downloaded file: %s", strerror(errno));
    int rc = repo_blob_put(repo, p, s->len, id, err);
    munmap(p, s->len);
    return rc;
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

/* Files of this table in the new point: new ones (already in j->files) for records still created
 * or updated, downloads of queued file columns, and the previous point's files of untouched
 * records. */
/* Files of this table that the previous point lists as not captured (a failed download, a file
 * too large), for records still there and not already queued: fetched again this pass. */
static int queue_failed_files(struct table_job *j)
{
    const struct point *prev = j->cap->prev;
    const char *nc = prev ? prev->not_captured_json : NULL;
    struct json_doc *doc = NULL;
    if (!nc || !j->n_file_cols || json_parse(nc, strlen(nc), NULL, &doc, NULL))
        return 0; /* nothing to retry (a manifest's not_captured was checked when it was read) */
    int rc = 0;
    const struct json_node *root = json_root(doc);
    for (const struct json_node *p = root->type == JSON_ARRAY ? root->child : NULL; p && !rc;
         p = p->next) {
        const char *t = json_get_str(p, "table"), *id = json_get_str(p, "record_id"),
                   *col = json_get_str(p, "column");
        if (!t || !id || !col || strcmp(t, j->t->logical_name) != 0)
            continue;
        const char *column = NULL;
        for (size_t i = 0; i < j->n_file_cols && !column; i++)
            if (strcmp(j->file_cols[i], col) == 0)
                column = j->file_cols[i];
        struct km_entry *e = km_get(&j->map, id, strlen(id), false, NULL);
        if (!column || (e && e->op == KM_DELETE) || (!j->delta_mode && !(e && (e->flags & KM_SEEN))))
            continue; /* not a file column any more, or the record is gone */
        const struct json_node *limit = json_get(p, "limit");
        if (limit && limit->type == JSON_NUMBER &&
            strtoull(limit->str, NULL, 10) >= max_file_bytes()) {
            /* too large under this limit too: not fetched again, still listed */
            if (!(rc = buf_add(&j->problems, p->raw, p->raw_len)))
                rc = buf_addstr(&j->problems, ",");
            continue;
        }
        bool queued = false;
        for (size_t i = 0; i < j->n_todo && !queued; i++)
            queued = j->todo[i].column == column && strcmp(j->todo[i].key, id) == 0;
        if (!queued)
            rc = add_todo(j, id, column, true);
    }
    json_doc_free(doc);
    return rc;
}

static int finish_files(struct table_job *j)
{
    struct cap *cap = j->cap;
    int rc = queue_failed_files(j);
    if (rc)
        return rc;
    /* drop new note files whose record's final op is not a create/update (delta: deleted later) */
    size_t w = 0;
    for (size_t i = 0; i < j->n_files; i++) {
        struct km_entry *e =
            km_get(&j->map, j->files[i].record_id, strlen(j->files[i].record_id), false, NULL);
        if (e && (e->op == KM_CREATE || e->op == KM_UPDATE))
            j->files[w++] = j->files[i];
        else
            point_file_release(&j->files[i]);
    }
    j->n_files = w;
    for (size_t i = 0; i < j->n_todo && !rc; i++) {
        struct file_todo *t = &j->todo[i];
        struct km_entry *e = km_get(&j->map, t->key, strlen(t->key), false, NULL);
        if (!t->retry && (!e || (e->op != KM_CREATE && e->op != KM_UPDATE)))
            continue;
        char *file_name = NULL;
        struct dverr ferr = {0};
        struct file_sink sink;
        if (cancelled(cap)) {
            rc = -ECANCELED;
            break;
        }
        int frc = file_sink_open(&sink, &ferr);
        if (!frc)
            frc = dv_file_download(cap->dv, cap->env, j->t->entity_set, t->key, t->column,
                                   download_file, &sink, &file_name, &ferr);
        if (frc && sink.too_big)
            dverr_set(&ferr, -EFBIG, "larger than %llu bytes, the most dvsnap keeps of one file",
                      (unsigned long long)sink.max);
        if (frc == 0) {
            char id[65];
            rc = file_sink_to_blob(&sink, cap->repo, id, &j->err);
            if (!rc) {
                atomic_fetch_add(&cap->blobs_written, 1);
                rc = add_file(j, t->key, t->column, file_name && *file_name ? file_name : t->column,
                              id, sink.len);
            }
        } else if (frc == -ECANCELED) {
            rc = frc;
        } else if (frc != -ENOENT) { /* -ENOENT: the file went away since the read */
            char what[400], reason[700];
            snprintf(what, sizeof what, "file %s of %s record %s", t->column, j->t->logical_name,
                     t->key);
            snprintf(reason, sizeof reason, "could not be downloaded: %s", dverr_msg(&ferr));
            rc = add_problem_of(j, what, reason, t->key, t->column, sink.too_big ? sink.max : 0);
        }
        free(file_name);
        if (sink.fd >= 0)
            close(sink.fd);
    }
    if (rc)
        return rc;
    /* carry the previous point's files of records this pass did not touch */
    const struct point *prev = cap->prev;
    for (size_t i = 0; prev && i < prev->n_files && !rc; i++) {
        const struct point_file *f = &prev->files[i];
        if (!f->table || strcmp(f->table, j->t->logical_name) != 0)
            continue;
        struct km_entry *e = km_get(&j->map, f->record_id, strlen(f->record_id), false, NULL);
        if (e && e->op != KM_NONE)
            continue;
        if (!(e && (e->flags & KM_SEEN)) && !j->delta_mode)
            continue; /* full read and the record is gone */
        rc = add_file(j, f->record_id, f->column, f->file_name, f->blob, f->size);
    }
    return rc;
}

static void point_table_release(struct point_table *t)
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
static int carry_previous(struct table_job *j)
{
    const struct point_table *p = j->prev;
    struct point_table *o = &j->out;
    point_table_release(o);
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
    files_free(j->files, j->n_files);
    j->files = NULL;
    j->n_files = j->cap_files = 0;
    const struct point *prev = j->cap->prev;
    for (size_t i = 0; prev && i < prev->n_files && !rc; i++)
        if (prev->files[i].table && strcmp(prev->files[i].table, p->name) == 0)
            rc = add_file(j, prev->files[i].record_id, prev->files[i].column,
                          prev->files[i].file_name, prev->files[i].blob, prev->files[i].size);
    return rc;
}

static void job_reset_read(struct table_job *j)
{
    segment_writer_abort(j->sw);
    j->sw = NULL;
    km_release(&j->map);
    for (size_t i = 0; i < j->n_todo; i++)
        free(j->todo[i].key);
    j->n_todo = 0;
    files_free(j->files, j->n_files);
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
    if ((rc = finish_files(j)))
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

static bool is_file_type(const char *s)
{
    return s && (strcmp(s, "File") == 0 || strcmp(s, "Image") == 0 || strcmp(s, "FileType") == 0 ||
                 strcmp(s, "ImageType") == 0);
}

/* File and Image columns: AttributeType File/Image, or (as the service reports them) Virtual with
 * AttributeTypeName FileType/ImageType, found in the table's definition document. */
static int find_file_columns(struct table_job *j)
{
    const struct dv_table *t = j->t;
    size_t cap = t->n_attrs + 1;
    struct json_doc *doc = NULL;
    j->file_cols = calloc(cap, sizeof *j->file_cols);
    if (!j->file_cols)
        return -ENOMEM;
    for (size_t i = 0; i < t->n_attrs && j->n_file_cols < cap; i++)
        if (is_file_type(t->attrs[i].type) && t->attrs[i].logical_name &&
            !(j->file_cols[j->n_file_cols++] = strdup(t->attrs[i].logical_name)))
            return -ENOMEM;
    if (!t->schema_json || json_parse(t->schema_json, strlen(t->schema_json), NULL, &doc, NULL))
        return 0;
    const struct json_node *attrs = json_get(json_root(doc), "Attributes");
    for (const struct json_node *a = attrs && attrs->type == JSON_ARRAY ? attrs->child : NULL; a;
         a = a->next) {
        const char *name = json_get_str(a, "LogicalName");
        const struct json_node *tn = json_get(a, "AttributeTypeName");
        if (!name || !(is_file_type(json_get_str(a, "AttributeType")) ||
                       (tn && is_file_type(json_get_str(tn, "Value")))))
            continue;
        bool dup = false;
        for (size_t k = 0; k < j->n_file_cols; k++)
            dup |= strcmp(j->file_cols[k], name) == 0;
        if (dup)
            continue;
        if (j->n_file_cols == cap) {
            char **n = realloc(j->file_cols, 2 * cap * sizeof *n);
            if (!n) {
                json_doc_free(doc);
                return -ENOMEM;
            }
            j->file_cols = n;
            cap *= 2;
        }
        if (!(j->file_cols[j->n_file_cols++] = strdup(name))) {
            json_doc_free(doc);
            return -ENOMEM;
        }
    }
    json_doc_free(doc);
    return 0;
}

static int run_job(struct table_job *j)
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
    if ((rc = find_file_columns(j)))
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
        job_reset_read(j);
        free(o->delta), o->delta = NULL;
        o->created = o->updated = o->deleted = 0;
        j->err = (struct dverr){0};
        reason = "the change-tracking token expired (the service asked for a full sync): read "
                 "in full and compared by record hash";
    }
    return read_table(j, NULL, reason);
}

static void *worker(void *arg)
{
    struct cap *cap = arg;
    for (;;) {
        pthread_mutex_lock(&cap->lock);
        if (cap->next >= cap->n_jobs || cancelled(cap)) {
            pthread_mutex_unlock(&cap->lock);
            return NULL;
        }
        struct table_job *j = &cap->jobs[cap->next++];
        progress_locked(cap, j->t->logical_name);
        pthread_mutex_unlock(&cap->lock);

        int rc = run_job(j);
        if (rc == 0) {
            j->ok = true;
        } else {
            j->rc = rc;
            const char *m = dverr_msg(&j->err);
            char reason[700];
            snprintf(reason, sizeof reason, "%s%s", *m ? m : strerror(-rc),
                     j->prev ? " (shown as of the previous point)" : "");
            j->fail_reason = strdup(reason);
            char esc[200];
            if (rc != -ECANCELED)
                log_warn("%s: table %s could not be read: %s", cap->env->unique_name,
                         log_escape(j->t->logical_name, esc, sizeof esc), reason);
            job_reset_read(j);
        }
        segment_writer_abort(j->sw);
        j->sw = NULL;
        km_release(&j->map);
        pthread_mutex_lock(&cap->lock);
        cap->tables_done++;
        progress_locked(cap, NULL);
        pthread_mutex_unlock(&cap->lock);
    }
}

static const struct {
    const char *what, *reason;
} not_in_scope[] = {
    {"apps", "canvas and model-driven apps are not table data; dvsnap captures tables, schema, "
             "attachments, file columns and audit records"},
    {"flows", "Power Automate flows are not captured"},
    {"Power Pages", "Power Pages sites are not captured"},
    {"solutions", "solutions and their customisations are not captured (table definitions are, "
                  "under schema/)"},
    {"Power BI", "Power BI reports and datasets are not captured"},
    {"external data", "virtual tables and other data that lives outside Dataverse are not "
                      "captured"},
};

static int cmp_jobs(const void *a, const void *b)
{
    const struct table_job *x = a, *y = b;
    uint64_t rx = x->prev ? x->prev->records : 0, ry = y->prev ? y->prev->records : 0;
    if (rx != ry)
        return rx > ry ? -1 : 1; /* biggest first: better balance across workers */
    return strcmp(x->t->logical_name, y->t->logical_name);
}

static int cmp_tables(const void *a, const void *b)
{
    const struct point_table *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Unique names become repository paths (points/<env>/, envs/<env>.json): hostile ones are
 * refused rather than rewritten, so two environments can never share a directory. */
static bool env_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 100 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int capture_env(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct dv_env *env, const struct capture_opts *opts,
                struct capture_result *res, struct dverr *err)
{
    struct capture_opts no_opts = {0};
    struct cap cap = {0};
    struct dv_table *tables = NULL;
    size_t n_tables = 0;
    struct point *p = NULL;
    pthread_t *threads = NULL;
    size_t n_threads = 0;
    struct dv_stats st0, st1;
    bool lock_init = false;
    int rc;

    if (!opts)
        opts = &no_opts;
    if (res)
        memset(res, 0, sizeof *res);
    if (!env_name_ok(env->unique_name)) {
        char esc[200];
        return dverr_set(err, -EINVAL,
                         "environment \"%s\": its unique name cannot name a repository directory "
                         "(letters, digits, '.', '_', '-'; 1 to 100 bytes; not starting with '.')",
                         log_escape(env->unique_name ? env->unique_name : "", esc, sizeof esc));
    }
    if ((rc = policy_backup_allowed(env, err)))
        return rc;
    if (opts->label && (rc = policy_manual_backup_allowed(env, err)))
        return rc;
    if (opts->label && !*opts->label)
        return dverr_set(err, -EINVAL, "a manual backup needs a label");
    dv_client_stats(dv, &st0);
    time_t taken_at = opts->now ? opts->now : time(NULL);

    cap.dv = dv;
    cap.repo = repo;
    cap.env = env;
    cap.opts = opts;
    if (pthread_mutex_init(&cap.lock, NULL))
        return dverr_set(err, -ENOMEM, "mutex");
    lock_init = true;
    if (env->raw_json && (rc = repo_env_doc_put(repo, env->unique_name, env->raw_json, err)))
        goto out;
    if ((rc = repo_capture_begin(repo, env->unique_name, &cap.rc, err)))
        goto out;
    cap.prev = repo_capture_previous(cap.rc);
    if ((rc = dv_tables_list(dv, env, &tables, &n_tables, err)))
        goto out;

    cap.jobs = calloc(n_tables ? n_tables : 1, sizeof *cap.jobs);
    if (!cap.jobs) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_tables; i++) {
        struct table_job *j = &cap.jobs[cap.n_jobs];
        if (!tables[i].logical_name || !tables[i].entity_set || !tables[i].primary_id)
            continue;
        bool dup = false;
        for (size_t k = 0; k < cap.n_jobs; k++)
            dup |= strcmp(cap.jobs[k].t->logical_name, tables[i].logical_name) == 0;
        if (dup)
            continue;
        j->cap = &cap;
        j->t = &tables[i];
        km_init(&j->map);
        for (size_t k = 0; cap.prev && k < cap.prev->n_tables; k++)
            if (strcmp(cap.prev->tables[k].name, tables[i].logical_name) == 0)
                j->prev = &cap.prev->tables[k];
        cap.n_jobs++;
    }
    qsort(cap.jobs, cap.n_jobs, sizeof *cap.jobs, cmp_jobs);

    int want = opts->concurrency > 0                   ? opts->concurrency
               : cfg && cfg->max_concurrency > 0 ? cfg->max_concurrency
                                                   : 4;
    n_threads = (size_t)want < cap.n_jobs ? (size_t)want : cap.n_jobs;
    threads = calloc(n_threads ? n_threads : 1, sizeof *threads);
    if (!threads) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t started = 0;
    for (; started < n_threads; started++)
        if (pthread_create(&threads[started], NULL, worker, &cap))
            break;
    if (started == 0 && n_threads)
        worker(&cap); /* no threads available: do it here */
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);

    if (cancelled(&cap)) {
        rc = dverr_set(err, -ECANCELED, "%s: capture cancelled", env->unique_name);
        goto out;
    }
    size_t n_ok = 0, n_failed = 0;
    int first_rc = 0;
    for (size_t i = 0; i < cap.n_jobs; i++) {
        if (cap.jobs[i].ok) {
            n_ok++;
            continue;
        }
        n_failed++;
        if (!first_rc) {
            first_rc = cap.jobs[i].rc;
            dverr_set(err, first_rc, "%s: table %s: %s", env->unique_name,
                      cap.jobs[i].t->logical_name, dverr_msg(&cap.jobs[i].err));
        }
        if (cap.jobs[i].rc == -ECANCELED || cap.jobs[i].rc == -ENOMEM) {
            rc = cap.jobs[i].rc;
            goto out;
        }
    }
    if (cap.n_jobs && !n_ok) { /* nothing read at all: no point, say why */
        rc = first_rc;
        goto out;
    }
    if (err && first_rc) /* partial success: the failures are in not_captured, not an error */
        dverr_clear(err);

    /* ---- the point ---- */
    p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->env = xstrdup(env->unique_name);
    p->kind = xstrdup(opts->label ? "manual" : "system");
    p->label = xstrdup(opts->label);
    p->taken_at = taken_at;
    p->expires_at = policy_expires_at(env, taken_at);
    p->env_json = xstrdup(env->raw_json);
    if (!p->env || !p->kind || (opts->label && !p->label) || (env->raw_json && !p->env_json))
        goto nomem;
    p->tables = calloc(cap.n_jobs ? cap.n_jobs : 1, sizeof *p->tables);
    if (!p->tables)
        goto nomem;
    struct buf nc = BUF_INIT;
    buf_addch(&nc, '[');
    for (size_t i = 0; i < sizeof not_in_scope / sizeof not_in_scope[0]; i++) {
        buf_addstr(&nc, "{\"what\":");
        buf_add_json_string(&nc, not_in_scope[i].what, strlen(not_in_scope[i].what));
        buf_addstr(&nc, ",\"reason\":");
        buf_add_json_string(&nc, not_in_scope[i].reason, strlen(not_in_scope[i].reason));
        buf_addstr(&nc, "},");
    }
    size_t n_files = 0;
    for (size_t i = 0; i < cap.n_jobs; i++) {
        struct table_job *j = &cap.jobs[i];
        if (!j->ok) {
            char what[300];
            snprintf(what, sizeof what, "table %s", j->t->logical_name);
            buf_addstr(&nc, "{\"what\":");
            buf_add_json_string(&nc, what, strlen(what));
            buf_addstr(&nc, ",\"reason\":");
            const char *r = j->fail_reason ? j->fail_reason : "could not be read";
            buf_add_json_string(&nc, r, strlen(r));
            buf_addstr(&nc, "},");
            if (res)
                res->tables_failed++;
            if (!j->prev || carry_previous(j))
                continue;
            j->ok = true;
        } else if (res) {
            if (j->out.full_read_reason || !j->prev || !j->prev->delta_link ||
                !j->t->change_tracking)
                res->full_reads++;
            else
                res->delta_reads++;
            res->records_changed += j->out.created + j->out.updated + j->out.deleted;
        }
        if (j->problems.len)
            buf_add(&nc, j->problems.data, j->problems.len);
        if (j->t->logical_name && strcmp(j->t->logical_name, "audit") == 0)
            p->audit_table = strdup("audit");
        p->tables[p->n_tables++] = j->out;
        memset(&j->out, 0, sizeof j->out);
        n_files += j->n_files;
    }
    if (nc.len > 1)
        nc.len--; /* the last ',' */
    buf_addch(&nc, ']');
    if (!nc.data)
        goto nomem;
    p->not_captured_json = buf_detach(&nc);
    qsort(p->tables, p->n_tables, sizeof *p->tables, cmp_tables);
    p->files = calloc(n_files ? n_files : 1, sizeof *p->files);
    if (!p->files)
        goto nomem;
    for (size_t i = 0; i < cap.n_jobs; i++) {
        struct table_job *j = &cap.jobs[i];
        if (!j->ok)
            continue;
        if (j->n_files) /* j->files may be NULL: memcpy(.., NULL, 0) is undefined */
            memcpy(p->files + p->n_files, j->files, j->n_files * sizeof *j->files);
        p->n_files += j->n_files;
        free(j->files);
        j->files = NULL;
        j->n_files = 0;
    }

    rc = repo_capture_commit(cap.rc, p, err);
    cap.rc = NULL;
    if (rc)
        goto out;
    dv_client_stats(dv, &st1);
    if (res) {
        snprintf(res->point, sizeof res->point, "%s", p->name ? p->name : "");
        res->tables = p->n_tables;
        res->records_read = cap.records;
        res->requests = st1.requests - st0.requests;
        res->blobs_written = atomic_load(&cap.blobs_written);
        res->files = p->n_files;
    }
    goto out;
nomem:
    rc = dverr_set(err, -ENOMEM, "out of memory building the point");
out:
    repo_capture_abort(cap.rc);
    point_free(p);
    for (size_t i = 0; i < cap.n_jobs; i++) {
        struct table_job *j = &cap.jobs[i];
        job_reset_read(j);
        point_table_release(&j->out);
        free(j->todo);
        for (size_t k = 0; k < j->n_file_cols; k++)
            free(j->file_cols[k]);
        free(j->file_cols);
        free(j->fail_reason);
        buf_release(&j->problems);
        buf_release(&j->line);
    }
    free(cap.jobs);
    free(threads);
    dv_tables_free(tables, n_tables);
    if (lock_init)
        pthread_mutex_destroy(&cap.lock);
    return rc;
}

static bool env_wanted(const struct config *cfg, const struct capture_opts *opts, const char *name)
{
    if (opts && opts->only_envs) {
        for (const char *const *e = opts->only_envs; *e; e++)
            if (strcmp(*e, name) == 0)
                return true;
        return false;
    }
    return !cfg || config_env_selected(cfg, name);
}

int capture_all(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct capture_opts *opts, struct dverr *err)
{
    struct dv_env *envs = NULL;
    size_t n = 0;
    int first = 0;
    int rc = dv_env_list(dv, &envs, &n, err);
    if (rc)
        return rc;
    for (const char *const *e = opts && opts->only_envs ? opts->only_envs : NULL; e && *e; e++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= envs[i].unique_name && strcmp(envs[i].unique_name, *e) == 0;
        if (!found && !first)
            first = dverr_set(err, -ENOENT, "the admin API lists no environment named %s", *e);
    }
    for (size_t i = 0; i < n; i++) {
        const struct dv_env *env = &envs[i];
        struct capture_result res;
        struct dverr e = {0};
        if (!env->unique_name || !env_wanted(cfg, opts, env->unique_name))
            continue;
        if (opts && opts->cancel && atomic_load(opts->cancel)) {
            if (!first)
                first = dverr_set(err, -ECANCELED, "capture cancelled");
            break;
        }
        rc = policy_backup_allowed(env, &e);
        if (rc == 0) {
            rc = capture_env(dv, repo, cfg, env, opts, &res, &e);
            if (rc && !first)
                first = dverr_set(err, rc, "%s", dverr_msg(&e));
        } else if (env->raw_json && env_name_ok(env->unique_name)) {
            /* not backed up, but the mount still shows what it is */
            repo_env_doc_put(repo, env->unique_name, env->raw_json, NULL);
        }
        if (opts && opts->env_done)
            opts->env_done(opts->env_done_ctx, env, rc, rc ? NULL : &res, &e);
    }
    dv_env_list_free(envs, n);
    return first;
}
