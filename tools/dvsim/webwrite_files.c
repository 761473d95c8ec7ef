/* webwrite_files: file and image columns and note bodies of each org's Web API (webapi_int.h).
 *   GET <set>(<id>)/<col>/$value      the bytes, with Range (206) and x-ms-file-* headers; for an
 *                                     image column its thumbnail, or with ?size=full the full
 *                                     image (204 when the record has none); for a Base64 text
 *                                     column (annotation.documentbody) its text
 *   PATCH|PUT <set>(<id>)/<col>       upload in one request (x-ms-file-name header), or chunked
 *                                     (x-ms-transfer-mode: chunked): a session, then the chunks
 *                                     in order with Content-Range; an image sets the full image
 *   DELETE <set>(<id>)/<col>          remove the file or image
 * Files and full images live in the files table (bytes as a blob), upload sessions in uploads and
 * upload_parts. An image's thumbnail is derived from the full image (dvsim_image_thumbnail); the
 * record keeps it as Base64 with the image's id, timestamp and download URL. Storing a file or
 * image stamps the record (version, etag) and writes an audit row, as an update does.
 * Limits: a file of at most FILE_MAX_BYTES (the columns' MaxSizeInKB); chunks of UPLOAD_CHUNK are
 * asked for. Threading: stores run in a write session (d->write_lock); reads and session rows use
 * a pooled connection of their own. */
#include "tools/dvsim/webapi_int.h"

#include "backend/base/json.h"

#include <ctype.h>
#include <errno.h>
#include <strings.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FILE_MAX_BYTES (131072u * 1024u) /* the file columns' MaxSizeInKB */
#define IMAGE_MAX_BYTES (30720u * 1024u) /* the image columns' MaxSizeInKB */
#define UPLOAD_CHUNK (4u << 20)          /* x-ms-chunk-size of a chunked upload */

int webwrite_image_set(struct req *r, sqlite3 *db, const struct table_def *t, const char *id, struct rec *rec,
                       const struct col_def *c, const void *data, size_t len, const char *name)
{
    char member[128];
    if (data && len > IMAGE_MAX_BYTES) {
        sreply_error(r, 400, "0x80072553",
                     "Error occured when processing image. Reason: File size is too big. MaxSize: 30 MB, Uploaded "
                     "filesize: %zu MB.", len >> 20);
        return -EFBIG;
    }
    sqlite3_stmt *st = NULL;
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = dvstore_errno(sqlite3_prepare_v2(db, data ? "INSERT OR REPLACE INTO files(tid,id,col,name,mimetype,data) "
                                                         "VALUES(?1,?2,?3,?4,'image/png',?5)"
                                                       : "DELETE FROM files WHERE tid=?1 AND id=?2 AND col=?3",
                                              -1, &st, NULL));
    if (!rc) {
        char fname[200];
        snprintf(fname, sizeof fname, "%s", name && *name ? name : "entityimage.png");
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
        if (data) {
            sqlite3_bind_text(st, 4, fname, -1, SQLITE_TRANSIENT);
            sqlite3_bind_blob64(st, 5, data, len, SQLITE_STATIC);
        }
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    }
    sqlite3_finalize(st);
    struct buf thumb = BUF_INIT, b64 = BUF_INIT;
    if (!rc && data)
        rc = dvsim_image_thumbnail(data, len, &thumb);
    if (!rc && data)
        rc = dvsim_base64((const unsigned char *)thumb.data, thumb.len, &b64);
    if (!rc) {
        char iid[37], num[32], url[240];
        webwrite_random_guid(r->d, iid);
        snprintf(num, sizeof num, "%lld", ((long long)time(NULL) + 62135596800LL) * 10000000LL);
        snprintf(url, sizeof url, "/Image/download.aspx?Entity=%s&Attribute=%s&Id=%s&Timestamp=%s", t->logical, c->name,
                 iid, num);
        srec_set_str(rec, c->name, data ? b64.data : NULL);
        snprintf(member, sizeof member, "%sid", c->name);
        srec_set_str(rec, member, data ? iid : NULL);
        snprintf(member, sizeof member, "%s_timestamp", c->name);
        const struct col_def *ts = dvschema_col_by_member(t, member, strlen(member));
        if (ts)
            webwrite_set_col(rec, ts, member, data ? num : "null", strlen(data ? num : "null"));
        snprintf(member, sizeof member, "%s_url", c->name);
        srec_set_str(rec, member, data ? url : NULL);
    }
    buf_release(&thumb);
    buf_release(&b64);
    if (rc)
        sreply_error(r, 500, "0x80040216", "database error");
    return rc;
}

void webwrite_file_get(struct req *r, const struct table_def *t, const char *id, const struct col_def *c)
{
    struct buf image = BUF_INIT;
    sqlite3 *db = dvstore_get(r->d->store);
    char *line = NULL;
    size_t len = 0;
    sqlite3_stmt *st = NULL;
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = db ? dvstore_get_record(db, tid, id, &line, &len) : -EIO;
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
        goto out;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    if (c->type == COL_MEMO) { /* a Base64 text column such as annotation.documentbody */
        struct lmember m[128];
        int nm = dvline_scan(line, len, m, 128);
        buf_reset(&r->out);
        for (int i = 0; i < nm; i++)
            if (m[i].key_len == strlen(c->name) && !memcmp(m[i].key, c->name, m[i].key_len) && m[i].val[0] == '"')
                buf_add(&r->out, m[i].val + 1, m[i].val_len - 2); /* Base64 needs no unescaping */
        if (!r->out.data)
            buf_addstr(&r->out, "");
        r->status = 200;
        r->content_type = "text/plain";
        goto out;
    }
    /* an image comes whole, as its thumbnail is derived from it; a file is read by range below */
    const char *sql = c->type == COL_IMAGE
                          ? "SELECT name, mimetype, length(data), data FROM files WHERE tid=?1 AND id=?2 AND col=?3"
                          : "SELECT name, mimetype, length(data) FROM files WHERE tid=?1 AND id=?2 AND col=?3";
    rc = dvstore_errno(sqlite3_prepare_v2(db, sql, -1, &st, NULL));
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    sqlite3_bind_int(st, 1, tid);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        if (c->type == COL_IMAGE) {
            buf_reset(&r->out);
            r->status = 204; /* no image */
        } else {
            sreply_error(r, 404, "0x80060891", "No file attachment found for attribute: %s EntityId: %s.", c->name, id);
        }
        goto out;
    }
    char name[512], mime[128], num[32];
    snprintf(name, sizeof name, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(mime, sizeof mime, "%s", sqlite3_column_text(st, 1) ? (const char *)sqlite3_column_text(st, 1) : "application/octet-stream");
    int64_t size = sqlite3_column_int64(st, 2);
    const char *want = sreq_arg(r, "size");
    bool thumbnail = c->type == COL_IMAGE && !(want && !strcmp(want, "full"));
    if (c->type == COL_IMAGE) {
        const void *full = sqlite3_column_blob(st, 3);
        size_t full_len = (size_t)sqlite3_column_bytes(st, 3);
        if (thumbnail) {
            rc = dvsim_image_thumbnail(full ? full : "", full_len, &image);
        } else {
            buf_reset(&image);
            rc = buf_add(&image, full ? full : "", full_len);
        }
        if (rc) {
            sreply_error(r, 500, "0x80040216", "out of memory");
            goto out;
        }
        size = (int64_t)image.len;
        if (thumbnail) {
            char *dot = strrchr(name, '.');
            snprintf(dot ? dot : name + strlen(name), sizeof name - (size_t)((dot ? dot : name + strlen(name)) - name),
                     "_144.png");
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    int64_t from = 0, to = size - 1;
    const char *range = sreq_header(r, "Range");
    bool ranged = false;
    if (range) {
        long long a = -1, b = -1;
        if (sscanf(range, "bytes=%lld-%lld", &a, &b) >= 1 && a >= 0) {
            ranged = true;
            from = a;
            if (b >= a && b < size)
                to = b;
        }
        if (!ranged || from >= size) {
            snprintf(num, sizeof num, "bytes */%lld", (long long)size);
            sreq_add_header(r, "Content-Range", num);
            sreply_error(r, 416, "0x80060891", "Requested range not satisfiable.");
            goto out;
        }
    }
    buf_reset(&r->out);
    if (c->type == COL_IMAGE) {
        buf_add(&r->out, image.data + from, (size_t)(to - from + 1));
    } else {
        rc = dvstore_errno(sqlite3_prepare_v2(db, "SELECT substr(data, ?4, ?5) FROM files WHERE tid=?1 AND id=?2 AND col=?3",
                                              -1, &st, NULL));
        if (!rc) {
            sqlite3_bind_int(st, 1, tid);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 4, from + 1);
            sqlite3_bind_int64(st, 5, to - from + 1);
        }
        if (rc || sqlite3_step(st) != SQLITE_ROW) {
            sreply_error(r, 500, "0x80040216", "database error");
            goto out;
        }
        buf_add(&r->out, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    }
    snprintf(num, sizeof num, "%lld", (long long)size);
    sreq_add_header(r, "x-ms-file-size", num);
    sreq_add_header(r, "x-ms-file-name", name);
    sreq_add_header(r, "mimetype", mime);
    sreq_add_header(r, "Accept-Ranges", "bytes");
    if (ranged) {
        char cr[96];
        snprintf(cr, sizeof cr, "bytes %lld-%lld/%lld", (long long)from, (long long)to, (long long)size);
        sreq_add_header(r, "Content-Range", cr);
        sreq_add_header(r, "x-ms-chunk-size", "4194304");
        r->status = 206;
    } else {
        r->status = 200;
    }
    r->content_type = "application/octet-stream";
out:
    sqlite3_finalize(st);
    free(line);
    buf_release(&image);
    dvstore_put(r->d->store, db);
}

static void file_store(struct req *r, const struct table_def *t, const char *id, const struct col_def *c,
                       bool del, const char *fname, const void *data, size_t len);

/* Chunked upload (the service's x-ms-transfer-mode: chunked): the first PATCH opens a session
 * and answers 200 with its Location; each chunk is a PATCH there with Content-Range a-b/total, in
 * order: 206 until the last, which stores the file (204). Sessions live in the uploads table, their
 * parts in upload_parts. */
static void file_upload_chunked(struct req *r, const struct table_def *t, const char *id, const struct col_def *c)
{
    const char *token = sreq_arg(r, "sessiontoken");
    int tid = table_id(r->env, dvschema_table_index(t));
    sqlite3 *db = dvstore_get(r->d->store);
    sqlite3_stmt *st = NULL;
    if (!token) { /* open a session */
        const char *fname = sreq_arg(r, "x-ms-file-name");
        if (!fname || !*fname) {
            sreply_error(r, 400, "0x80060891", "The x-ms-file-name parameter is required to upload a file.");
            goto out;
        }
        char tok[37];
        webwrite_random_guid(r->d, tok);
        if (sqlite3_prepare_v2(db, "INSERT INTO uploads VALUES(?1, ?2, ?3, ?4, ?5, 0)", -1, &st, NULL) != SQLITE_OK)
            goto fail;
        sqlite3_bind_text(st, 1, tok, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, tid);
        sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, fname, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto fail;
        struct buf loc = BUF_INIT;
        sreq_base(r, &loc);
        buf_addstr(&loc, r->path);
        buf_addstr(&loc, "?x-ms-file-name=");
        dvsim_url_encode(&loc, fname, strlen(fname));
        buf_printf(&loc, "&sessiontoken=%s", tok);
        sreq_add_header(r, "Location", loc.data);
        buf_release(&loc);
        char cs[32];
        snprintf(cs, sizeof cs, "%u", UPLOAD_CHUNK);
        sreq_add_header(r, "x-ms-chunk-size", cs);
        sreq_add_header(r, "Accept-Ranges", "bytes");
        r->status = 200;
        goto out;
    }
    /* a chunk: Content-Range bytes a-b/total, a = the bytes received so far */
    const char *cr = sreq_header(r, "Content-Range");
    unsigned long long a, b, total;
    if (!cr || sscanf(cr, "bytes %llu-%llu/%llu", &a, &b, &total) != 3 || b < a || b >= total ||
        b - a + 1 != r->body.len || total > FILE_MAX_BYTES) {
        sreply_error(r, 400, "0x80060891", "A chunk needs Content-Range: bytes a-b/total matching its body (total at most %u).",
                     FILE_MAX_BYTES);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "SELECT received, name FROM uploads WHERE token = ?1 AND tid = ?2 AND id = ?3 AND col = ?4",
                           -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, tid);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sreply_error(r, 404, "0x80060891", "No upload session %s for this column.", token);
        goto out;
    }
    unsigned long long have = (unsigned long long)sqlite3_column_int64(st, 0);
    char fname[1024];
    snprintf(fname, sizeof fname, "%s", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    st = NULL;
    if (a != have) {
        sreply_error(r, 400, "0x80060891", "Chunks must come in order: expected offset %llu, got %llu.", have, a);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "INSERT INTO upload_parts VALUES(?1, ?2, ?3)", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)a);
    sqlite3_bind_blob64(st, 3, r->body.data ? r->body.data : "", r->body.len, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "UPDATE uploads SET received = ?2 WHERE token = ?1", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)(b + 1));
    if (sqlite3_step(st) != SQLITE_DONE)
        goto fail;
    sqlite3_finalize(st);
    st = NULL;
    if (b + 1 < total) {
        r->status = 206;
        goto out;
    }
    /* the last chunk: store the file as a single upload would, then drop the session */
    if (sqlite3_prepare_v2(db, "SELECT data FROM upload_parts WHERE token = ?1 ORDER BY off", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
    struct buf data = BUF_INIT;
    while (sqlite3_step(st) == SQLITE_ROW)
        buf_add(&data, sqlite3_column_blob(st, 0) ? sqlite3_column_blob(st, 0) : "", (size_t)sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    st = NULL;
    if (data.len != total) {
        buf_release(&data);
        goto fail;
    }
    for (int k = 0; k < 2; k++) {
        if (sqlite3_prepare_v2(db, k ? "DELETE FROM upload_parts WHERE token = ?1" : "DELETE FROM uploads WHERE token = ?1", -1,
                               &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, token, -1, SQLITE_STATIC);
            sqlite3_step(st);
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    dvstore_put(r->d->store, db);
    db = NULL;
    file_store(r, t, id, c, false, fname, data.data ? data.data : "", data.len);
    buf_release(&data);
    goto out;
fail:
    sreply_error(r, 500, "0x80040216", "database error");
out:
    sqlite3_finalize(st);
    if (db)
        dvstore_put(r->d->store, db);
}

/* PATCH <set>(<id>)/<filecol> with the bytes (upload; chunked when asked) or DELETE it. */
void webwrite_file_put(struct req *r, const struct table_def *t, const char *id, const struct col_def *c, bool del)
{
    const char *mode = sreq_header(r, "x-ms-transfer-mode");
    if (!del && ((mode && !strcasecmp(mode, "chunked")) || sreq_arg(r, "sessiontoken"))) {
        file_upload_chunked(r, t, id, c);
        return;
    }
    const char *fname = sreq_header(r, "x-ms-file-name");
    if (!del && (!fname || !*fname)) {
        sreply_error(r, 400, "0x80060891", "The x-ms-file-name header is required to upload a file.");
        return;
    }
    if (!del && c->type == COL_FILE && r->body.len > FILE_MAX_BYTES) {
        sreply_error(r, 400, "0x80090001", "The file is larger than MaxSizeInKB (131072).");
        return;
    }
    file_store(r, t, id, c, del, fname, r->body.data ? r->body.data : "", r->body.len);
}

/* Store (or delete) the column's file and stamp the record, as one write session; 204. */
static void file_store(struct req *r, const struct table_def *t, const char *id, const struct col_def *c,
                       bool del, const char *fname, const void *data, size_t len)
{
    struct wsess ws = {NULL, false};
    struct rec rec;
    struct buf out = BUF_INIT;
    char *old = NULL;
    size_t old_len;
    bool ok = false;
    srec_init(&rec);
    if (webwrite_session_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        return;
    }
    int tid = table_id(r->env, dvschema_table_index(t));
    int rc = dvstore_get_record(ws.db, tid, id, &old, &old_len);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
        goto out;
    }
    sqlite3_stmt *st = NULL;
    char fid[37], name_col[140];
    snprintf(name_col, sizeof name_col, "%s_name", c->name);
    webwrite_random_guid(r->d, fid);
    if (!rc)
        rc = srec_from_line(&rec, old, old_len);
    if (!rc && webwrite_closed(t, webwrite_int_member(&rec, "statecode"))) {
        webwrite_reply_closed(r, t, webwrite_int_member(&rec, "statecode"));
        goto out;
    }
    if (!rc && c->type == COL_IMAGE) {
        if (webwrite_image_set(r, ws.db, t, id, &rec, c, del ? NULL : data, len, fname))
            goto out;
    } else if (!rc) {
        rc = dvstore_errno(sqlite3_prepare_v2(ws.db, del ? "DELETE FROM files WHERE tid=?1 AND id=?2 AND col=?3"
                                                         : "INSERT OR REPLACE INTO files(tid,id,col,name,mimetype,data) "
                                                           "VALUES(?1,?2,?3,?4,?5,?6)", -1, &st, NULL));
        if (!rc) {
            sqlite3_bind_int(st, 1, tid);
            sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 3, c->name, -1, SQLITE_STATIC);
            if (!del) {
                const char *ct = sreq_header(r, "Content-Type");
                sqlite3_bind_text(st, 4, fname, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 5, ct && strncmp(ct, "application/octet-stream", 24) ? ct : "application/octet-stream",
                                  -1, SQLITE_TRANSIENT);
                sqlite3_bind_blob64(st, 6, data, len, SQLITE_STATIC);
            }
            rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
        }
        sqlite3_finalize(st);
    }
    if (!rc) {
        if (c->type == COL_FILE) {
            srec_set_str(&rec, c->name, del ? NULL : fid);
            srec_set_str(&rec, name_col, del ? NULL : fname);
        }
        struct write_ctx w = {r->d, ws.db, r->env, true};
        rc = webwrite_store(&w, t, id, &rec, false, &out);
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = webwrite_session_finish(r, &ws, ok);
    if (ok)
        webwrite_reply_no_content(r);
    free(old);
    srec_release(&rec);
    buf_release(&out);
}

