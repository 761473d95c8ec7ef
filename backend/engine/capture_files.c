/* capture_files: a table's attachments and file columns during a capture (capture_int.h).
 *
 * annotation.documentbody (base64) is decoded into a blob as the record is read (a full read: as
 * the sorted records are merged with the state, for created and updated records); File and Image
 * columns are queued then and downloaded (dv_file_download) after the table's read, for created
 * and updated records only (an image at full size: the record line keeps the thumbnail the
 * service put there); files of unchanged records are carried from the previous point (a full
 * read walks the previous point's files of the table in record order alongside its merge, read
 * chunk by chunk from the store, so it needs no map of the table's keys).
 * The table's part of the point's file list never sits whole in memory: a full read's files go
 * to an external sort (parked on disk when the read is done); a delta read keeps only its new
 * files and the ids of the records it touched, and the previous point's other files of the table
 * are merged in, from its chunks, as the list is written (capture_job_files_put, table by table
 * in list order, into the repository's streaming list writer). A
 * file the previous point lists as not captured is fetched again, unless it was too large and the
 * limit has not been raised since. Every such blob is one of the point's files, which is what
 * prune keeps (the notes' segment writer names those blobs instead of holding the base64:
 * capture.c).
 *
 * Limits: a file column's bytes go to an unlinked temporary file (TMPDIR, else /var/tmp) and are
 * mapped for their blob, so a large file costs disk, not memory; a file above REPO_BLOB_MAX (2 GiB;
 * DVSNAP_MAX_FILE_BYTES lowers it) is not kept and is listed in not_captured with its size, as is
 * any download that fails.
 * Threading: every function works on one struct table_job, on the worker thread that owns it;
 * blob writes run unlocked (the repository's blob store is thread-safe) and blobs_written is
 * atomic. */
#include "backend/engine/capture_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/repo/filelist.h"

/* A not_captured entry; a file's also names its table, record and column (the next capture
 * fetches it again: queue_failed_files). */
static int add_problem_of(struct table_job *j, const char *what, const char *reason,
                          const char *record_id, const char *column, uint64_t too_large)
{
    struct buf *b = &j->problems;
    int rc = capture_not_captured_open(b, what, reason);
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

/* A full read's file as a sort entry: key record id, column ("" for none), file name, blob, each
 * ended by a NUL (so keys sort as the list does), then a sequence number (big-endian: entries
 * alike stay apart); line: 1 when the column is null, then the size (big-endian). */
static int sort_file(struct table_job *j, const char *key, const char *column,
                     const char *file_name, const char *blob, uint64_t size)
{
    struct buf k = BUF_INIT;
    unsigned char seq[8], line[9];
    uint64_t n = j->file_seq++;
    for (int i = 7; i >= 0; i--, n >>= 8)
        seq[i] = (unsigned char)n;
    line[0] = column == NULL;
    for (int i = 8; i >= 1; i--, size >>= 8)
        line[i] = (unsigned char)size;
    int rc = buf_add(&k, key, strlen(key) + 1);
    if (!rc)
        rc = buf_add(&k, column ? column : "", column ? strlen(column) + 1 : 1);
    if (!rc)
        rc = buf_add(&k, file_name, strlen(file_name) + 1);
    if (!rc)
        rc = buf_add(&k, blob, strlen(blob) + 1);
    if (!rc)
        rc = buf_add(&k, seq, sizeof seq);
    if (!rc)
        rc = segment_sorter_add(j->file_sorter, 'b', k.data, k.len, (const char *)line,
                                sizeof line, &j->err);
    buf_release(&k);
    return rc;
}

int capture_add_file(struct table_job *j, const char *key, const char *column,
                     const char *file_name, const char *blob, uint64_t size)
{
    if (j->file_sorter)
        return sort_file(j, key, column, file_name, blob, size);
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
    if (!f->table || !f->record_id || (column && !f->column) || !f->file_name || !f->blob) {
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

void capture_files_free(struct point_file *f, size_t n)
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
int capture_record_files(struct table_job *j, const struct json_node *rec, const char *key)
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
                rc = capture_add_file(j, key, "documentbody",
                                      name && *name ? name : "documentbody", id, bytes.len);
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

/* An image column (dv_tables_list makes the service's Virtual/ImageType "Image"): its record
 * line holds the thumbnail; the blob is the full-size image. */
static bool is_image_column(const struct dv_table *t, const char *column)
{
    for (size_t i = 0; i < t->n_attrs; i++)
        if (t->attrs[i].logical_name && strcmp(t->attrs[i].logical_name, column) == 0)
            return t->attrs[i].type && strcmp(t->attrs[i].type, "Image") == 0;
    return false;
}

/* Download the queued file columns into blobs (delta reads: those of records whose final op is
 * a create or update, and retries; a full read queues only those). */
int capture_download_files(struct table_job *j)
{
    struct cap *cap = j->cap;
    int rc = 0;
    for (size_t i = 0; i < j->n_todo && !rc; i++) {
        struct file_todo *t = &j->todo[i];
        if (j->delta_mode && !t->retry) {
            struct km_entry *e = km_get(&j->map, t->key, strlen(t->key), false, NULL);
            if (!e || (e->op != KM_CREATE && e->op != KM_UPDATE))
                continue;
        }
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
                                   is_image_column(j->t, t->column), download_file, &sink,
                                   &file_name, &ferr);
        if (frc && sink.too_big)
            dverr_set(&ferr, -EFBIG, "larger than %llu bytes, the most dvsnap keeps of one file",
                      (unsigned long long)sink.max);
        if (frc == 0) {
            char id[65];
            rc = file_sink_to_blob(&sink, cap->repo, id, &j->err);
            if (!rc) {
                atomic_fetch_add(&cap->blobs_written, 1);
                rc = capture_add_file(j, t->key, t->column,
                                      file_name && *file_name ? file_name : t->column, id,
                                      sink.len);
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
    return rc;
}

/* Delta reads: files of this table in the new point: new ones (already in j->files) for records
 * still created or updated, downloads of queued file columns, and the previous point's files of
 * untouched records. */
int capture_finish_files(struct table_job *j)
{
    int rc = queue_failed_files(j);
    if (rc)
        return rc;
    /* drop new note files whose record's final op is not a create/update (deleted later) */
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
    if ((rc = capture_download_files(j)))
        return rc;
    /* the previous point's files of records this pass did not touch are carried when the list
     * is written (capture_job_files_put), read from the previous point then */
    return capture_files_note_touched(j);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int capture_files_note_touched(struct table_job *j)
{
    size_t n = 0;
    for (size_t i = 0; i < j->map.cap; i++) {
        const struct km_entry *e = keymap_slot(&j->map, i);
        n += e->key && e->op != KM_NONE;
    }
    strv_free(j->touched, j->n_touched);
    j->touched = NULL;
    j->n_touched = 0;
    j->carry_prev_files = true;
    if (!n)
        return 0;
    if (!(j->touched = calloc(n, sizeof *j->touched)))
        return -ENOMEM;
    for (size_t i = 0; i < j->map.cap; i++) {
        const struct km_entry *e = keymap_slot(&j->map, i);
        if (!e->key || e->op == KM_NONE)
            continue;
        if (!(j->touched[j->n_touched] = strndup(e->key, e->key_len)))
            return -ENOMEM;
        j->n_touched++;
    }
    qsort(j->touched, j->n_touched, sizeof *j->touched, cmp_str);
    return 0;
}

/* ---- full reads: files decided key by key, in key order ---- */

/* The next of the previous point's files of the table (j->prev_file; NULL at the end). */
static int prev_file_next(struct table_job *j)
{
    j->prev_file = NULL;
    if (!j->prev_reader)
        return 0;
    int rc = repo_files_reader_next(j->prev_reader, &j->prev_file, &j->err);
    return rc < 0 ? rc : 0;
}

static int cmp_fail(const void *a, const void *b)
{
    const struct json_node *x = *(const struct json_node *const *)a,
                           *y = *(const struct json_node *const *)b;
    return strcmp(json_get_str(x, "record_id"), json_get_str(y, "record_id"));
}

int capture_full_files_begin(struct table_job *j)
{
    const struct point *prev = j->cap->prev;
    capture_full_files_release(j);
    capture_job_files_release(j);
    int rc = repo_sorter_new(j->cap->repo, CAPTURE_FILES_SORT_BUDGET, &j->file_sorter, &j->err);
    if (!rc && j->prev && prev)
        rc = repo_prev_files_open(j->cap->rc, j->t->logical_name, &j->prev_reader, &j->err);
    if (!rc)
        rc = prev_file_next(j);
    if (rc)
        return rc;
    /* files of this table the previous point lists as not captured: fetched again below when
     * their record is still there */
    const char *nc = prev ? prev->not_captured_json : NULL;
    if (!nc || !j->n_file_cols || json_parse(nc, strlen(nc), NULL, &j->nc_doc, NULL))
        return 0;
    const struct json_node *root = json_root(j->nc_doc);
    size_t cap = 0;
    for (const struct json_node *p = root->type == JSON_ARRAY ? root->child : NULL; p;
         p = p->next) {
        const char *t = json_get_str(p, "table");
        if (!t || !json_get_str(p, "record_id") || !json_get_str(p, "column") ||
            strcmp(t, j->t->logical_name) != 0)
            continue;
        if (j->n_fails == cap) {
            cap = cap ? cap * 2 : 16;
            const struct json_node **v = realloc(j->fails, cap * sizeof *v);
            if (!v)
                return -ENOMEM;
            j->fails = v;
        }
        j->fails[j->n_fails++] = p;
    }
    if (j->n_fails)
        qsort(j->fails, j->n_fails, sizeof *j->fails, cmp_fail);
    return 0;
}

void capture_full_files_release(struct table_job *j)
{
    repo_files_reader_free(j->prev_reader);
    j->prev_reader = NULL;
    j->prev_file = NULL;
    free(j->fails);
    j->fails = NULL;
    j->n_fails = j->fail_at = 0;
    json_doc_free(j->nc_doc);
    j->nc_doc = NULL;
}

/* record_id against a key of kn bytes, in key order (bytes, then shorter first). */
static int id_cmp(const char *id, const char *key, size_t kn)
{
    size_t n = strlen(id);
    int c = n && kn ? memcmp(id, key, n < kn ? n : kn) : 0; /* key may be NULL when kn is 0 */
    return c ? c : (n > kn) - (n < kn);
}

/* A previous not_captured file of this record: fetched again (or kept listed when it was too
 * large and still is). */
static int retry_failed(struct table_job *j, const struct json_node *p, const char *key,
                        size_t todo_from)
{
    const char *col = json_get_str(p, "column");
    const char *column = NULL;
    for (size_t i = 0; i < j->n_file_cols && !column; i++)
        if (strcmp(j->file_cols[i], col) == 0)
            column = j->file_cols[i];
    if (!column)
        return 0; /* not a file column any more */
    const struct json_node *limit = json_get(p, "limit");
    if (limit && limit->type == JSON_NUMBER && strtoull(limit->str, NULL, 10) >= max_file_bytes()) {
        int rc = buf_add(&j->problems, p->raw, p->raw_len);
        return rc ? rc : buf_addstr(&j->problems, ",");
    }
    for (size_t i = todo_from; i < j->n_todo; i++)
        if (j->todo[i].column == column)
            return 0; /* queued already: the record changed */
    return add_todo(j, key, column, true);
}

int capture_full_files_key(struct table_job *j, const char *key, size_t kn, enum km_op op,
                           const char *line, size_t line_len)
{
    int rc = 0;
    size_t todo_from = j->n_todo;
    char *k = key ? strndup(key, kn) : NULL; /* key NULL: the end of the table */
    if (key && !k)
        return -ENOMEM;
    if ((op == KM_CREATE || op == KM_UPDATE) && (j->is_annotation || j->n_file_cols)) {
        struct json_doc *doc = NULL;
        struct dverr perr = {0};
        if ((rc = json_parse(line, line_len, NULL, &doc, &perr)))
            rc = dverr_set(&j->err, rc, "a record of %s could not be read back: %s",
                           j->t->logical_name, dverr_msg(&perr));
        else
            rc = capture_record_files(j, json_root(doc), k);
        json_doc_free(doc);
    }
    while (!rc && j->prev_file) {
        const struct point_file *f = j->prev_file;
        int c = id_cmp(f->record_id, key, kn);
        if (c > 0)
            break;
        if (c == 0 && op == KM_NONE) /* unchanged: its files are as they were */
            rc = capture_add_file(j, f->record_id, f->column, f->file_name, f->blob, f->size);
        if (!rc)
            rc = prev_file_next(j);
    }
    while (!rc && j->fail_at < j->n_fails) {
        const struct json_node *p = j->fails[j->fail_at];
        int c = id_cmp(json_get_str(p, "record_id"), key, kn);
        if (c > 0)
            break;
        if (c == 0 && op != KM_DELETE)
            rc = retry_failed(j, p, k, todo_from);
        j->fail_at++;
    }
    free(k);
    return rc;
}

static bool is_file_type(const char *s)
{
    return s && (strcmp(s, "File") == 0 || strcmp(s, "Image") == 0 || strcmp(s, "FileType") == 0 ||
                 strcmp(s, "ImageType") == 0);
}

/* File and Image columns: AttributeType File/Image, or (as the service reports them) Virtual with
 * AttributeTypeName FileType/ImageType, found in the table's definition document. */
int capture_find_file_columns(struct table_job *j)
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

/* ---- the job's files into the point's list ---- */

void capture_job_files_release(struct table_job *j)
{
    capture_files_free(j->files, j->n_files);
    j->files = NULL;
    j->n_files = j->cap_files = 0;
    segment_sorter_free(j->file_sorter);
    j->file_sorter = NULL;
    j->file_seq = 0;
    strv_free(j->touched, j->n_touched);
    j->touched = NULL;
    j->n_touched = 0;
    j->carry_prev_files = false;
}

int capture_job_files_park(struct table_job *j)
{
    if (!j->file_sorter || segment_sorter_memory(j->file_sorter) <= CAPTURE_FILES_PARK)
        return 0;
    return segment_sorter_park(j->file_sorter, &j->err);
}

static int cmp_files(const void *a, const void *b)
{
    return filelist_cmp(a, b);
}

struct put_ctx {
    struct table_job *j;
};

/* A sort entry back into a file (sort_file's encoding). */
static int put_sorted(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    struct put_ctx *pc = ctx;
    const char *k = e->key, *end = e->key + e->key_len, *field[4];
    for (int i = 0; i < 4; i++) {
        const char *nul = k < end ? memchr(k, '\0', (size_t)(end - k)) : NULL;
        if (!nul)
            return dverr_set(err, -EIO, "a sorted file entry of %s is damaged",
                             pc->j->t->logical_name);
        field[i] = k;
        k = nul + 1;
    }
    if (e->line_len != 9)
        return dverr_set(err, -EIO, "a sorted file entry of %s is damaged", pc->j->t->logical_name);
    const unsigned char *l = (const unsigned char *)e->line;
    uint64_t size = 0;
    for (int i = 1; i <= 8; i++)
        size = size << 8 | l[i];
    struct point_file f = {(char *)pc->j->t->logical_name, (char *)field[0],
                           l[0] ? NULL : (char *)field[1], (char *)field[2], (char *)field[3],
                           size};
    return repo_capture_files_add(pc->j->cap->rc, &f, err);
}

int capture_job_files_put(struct table_job *j, struct dverr *err)
{
    if (j->file_sorter) {
        struct put_ctx pc = {j};
        return segment_sorter_drain(j->file_sorter, put_sorted, &pc, err);
    }
    if (j->n_files)
        qsort(j->files, j->n_files, sizeof *j->files, cmp_files);
    if (j->carry_prev_files)
        return repo_capture_files_carry(j->cap->rc, j->t->logical_name, j->files, j->n_files,
                                        j->touched, j->n_touched, err);
    int rc = 0;
    for (size_t i = 0; i < j->n_files && !rc; i++)
        rc = repo_capture_files_add(j->cap->rc, &j->files[i], err);
    return rc;
}
