/* segment: writing record segments (format in segment.h, shared internals in segment_int.h), with
 * the format's small pieces: object ids and names, and changes-file lines. Reading, merging and
 * verifying are in segment_read.c.
 *
 * Writer: entries that come in any order go through a sorter (segment_sort.c: bounded memory,
 * compressed runs on disk beyond the budget); at finish they are written in key order into ~1 MiB
 * zstd frames in a temp file while hashing it (crypt_id of the plain bytes: SHA-256, or
 * HMAC-SHA-256 in an encrypted repository, where each frame is sealed as it is written and the
 * index once the id is known), then published as objects/<2 hex>/<id> with put_file (skipped when
 * the object exists). An ordered writer (segment_writer_set_ordered) takes entries already in key
 * order and writes its frames as they come, buffering nothing but the frame.
 * With attachments on, a line holding a large canonical base64 documentbody is stored by reference
 * to its blob (segment_int.h).
 * Frames are compressed on ZPOOL_THREADS worker threads of the writer (started at its first full
 * frame, so a small segment starts none), at most ZPOOL_JOBS frames at once, and written by the
 * writer's thread in their order: the same bytes as compressing them in turn (each frame is one
 * zstd frame of its own with the same parameters).
 * Threading: a writer belongs to one thread at a time (its workers only compress the frames
 * handed to them); temp file names are unique per process (an atomic counter). */
#include "backend/repo/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "backend/repo/blob.h"
#include "backend/repo/segment_int.h"

/* Level 7 on ~1 MiB frames: measured on dvsim tables, 9% smaller than `zstd -3` of the whole table
 * file at ~125 MB/s compressing and ~2 GB/s decompressing on one core (level 3: 385 MB/s, 2% larger
 * than the whole-file reference). Segments are written once and read many times. */
#define ZSTD_LEVEL_DEFAULT 7
#define ZPOOL_THREADS 2 /* frames compressed side by side (level 7 is most of a full read's CPU) */
#define ZPOOL_JOBS 4    /* frames handed over and not yet written, at most */

bool segment_id_ok(const char *id)
{
    if (!id || strlen(id) != 64)
        return false;
    for (int i = 0; i < 64; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return false;
    return true;
}

int segment_key_cmp(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return key_cmp(a, a_len, b, b_len);
}

void segment_object_name(const char *id, char out[80])
{
    snprintf(out, 80, "objects/%.2s/%s", id, id);
}

static uint64_t table_size(uint64_t n, uint64_t line_bytes)
{
    return n == 0 ? 4 : line_bytes + 2 * n + 3;
}

/* ---------- changes lines ---------- */

int changes_line_render(struct buf *out, char op, const char *key, size_t key_len,
                        const char *line, size_t line_len)
{
    const char *name = op == SEG_UPDATE ? "update" : op == SEG_DELETE ? "delete" : "create";
    int rc = buf_printf(out, "{\"op\":\"%s\",\"id\":", name);
    if (!rc)
        rc = buf_add_json_string(out, key, key_len);
    if (!rc && op != SEG_DELETE) {
        rc = buf_addstr(out, ",\"record\":");
        if (!rc)
            rc = buf_add(out, line, line_len);
    }
    if (!rc)
        rc = buf_addch(out, '}');
    return rc;
}

static uint64_t json_string_size(const char *s, size_t n)
{
    uint64_t size = 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' || c == '\b' || c == '\f')
            size += 2;
        else if (c < 0x20)
            size += 6;
        else
            size += 1;
    }
    return size;
}

uint64_t changes_line_size(char op, const char *key, size_t key_len, size_t line_len)
{
    /* {"op":"create","id":KEY,"record":LINE} */
    uint64_t size = strlen("{\"op\":\"create\",\"id\":}"); /* all op names have 6 letters */
    size += json_string_size(key, key_len);
    if (op != SEG_DELETE)
        size += strlen(",\"record\":") + line_len;
    return size;
}

/* ---------- attachments kept once: the writer's side (format in segment_int.h) ---------- */

static const char ATTACH_FIELD[] = "\"documentbody\":\"";

/* Decode s[0..n) into bytes when it is canonical padded base64, i.e. exactly what base64_encode
 * gives back (so the line can be rebuilt byte for byte); -EINVAL otherwise. scratch is used for
 * the re-encoding. */
static int b64_decode_canonical(const char *s, size_t n, struct buf *bytes, struct buf *scratch)
{
    buf_reset(bytes);
    buf_reset(scratch);
    int rc = base64_decode(s, n, bytes);
    if (!rc)
        rc = base64_encode(bytes->data, bytes->len, scratch);
    if (rc)
        return rc;
    return scratch->len == n && memcmp(scratch->data, s, n) == 0 ? 0 : -EINVAL;
}

/* When line holds an attachment, put its blob and write the compact line into out: 1; 0 when
 * the line stays as it is; -errno with detail. */
static int attach_compact(struct objstore *store, const struct crypt *crypt, const char *line,
                          size_t len, struct buf *bytes, struct buf *out, struct dverr *err)
{
    const char *f = memmem(line, len, ATTACH_FIELD, sizeof ATTACH_FIELD - 1);
    if (!f || len > UINT32_MAX)
        return 0;
    size_t start = (size_t)(f - line) + sizeof ATTACH_FIELD - 1, end = start;
    while (end < len && line[end] != '"' && line[end] != '\\')
        end++;
    if (end >= len || line[end] != '"' || end - start < ATTACH_MIN)
        return 0;
    if (b64_decode_canonical(line + start, end - start, bytes, out))
        return 0;
    char id[65];
    int rc = blob_put(store, crypt, bytes->data ? bytes->data : "", bytes->len, id, err);
    if (rc)
        return rc;
    if (bytes->len > (size_t)SEGMENT_MAX_LINE)
        return 0;
    buf_reset(out);
    unsigned char off[8];
    put_u32(off, (uint32_t)start);
    put_u32(off + 4, (uint32_t)bytes->len);
    if ((rc = buf_add(out, "\x01", 1)) || (rc = buf_add(out, id, 64)) ||
        (rc = buf_add(out, off, 8)) || (rc = buf_add(out, line, start)) ||
        (rc = buf_add(out, line + end, len - end)))
        return dverr_set(err, rc, "out of memory");
    return 1;
}

/* The length of a stored line once its attachment is put back (len when it has none). */
static uint64_t line_full_len(const char *line, size_t len)
{
    if (len < ATTACH_HEAD || line[0] != ATTACH_MARK)
        return len;
    return len - ATTACH_HEAD + b64_len(get_u32((const unsigned char *)line + 69));
}

/* ---------- writer ---------- */

struct frame_out {
    int fd;
    char tmp[PATH_MAX];     /* its path ("" when none) */
    ZSTD_CCtx *cctx;
    struct crypt_hash *idh; /* the id, over the plain bytes */
    struct crypt_obj *co;   /* sealed segments: the object's key; NULL for a plain one */
    unsigned char salt[CRYPT_SALT_BYTES];
    uint64_t off;           /* plain bytes so far (the index's offsets) */
    uint64_t stored;        /* bytes written to the file */
    struct buf sealed;      /* a sealed frame or index on its way out */
    struct buf frame;     /* entries of the frame being filled */
    uint32_t frame_count;
    struct buf first_key; /* of the frame being filled */
    struct buf index;     /* index records so far */
    uint32_t n_frames;
    struct buf cbuf;
    struct segment_stats st;
    int level;                /* zstd level of its frames */
    struct zpool *zp;         /* frames compressed on worker threads; NULL: here (zpool_start) */
};

struct segment_writer {
    struct objstore *store;
    const struct crypt *crypt; /* NULL: a plain segment */
    char *tmp_dir;
    size_t budget;
    int level;
    bool attachments;   /* segment_writer_set_attachments */
    bool ordered;       /* segment_writer_set_ordered: entries go straight into frames */
    struct segment_sorter *sorter; /* unordered input, created on the first add */
    bool out_open;      /* o holds the segment being written */
    struct frame_out o;
    struct buf last_key; /* ordered: the previous key */
    uint64_t total_added;
    struct buf att_bytes, att_line; /* attach_compact's scratch */
};

static atomic_uint tmp_counter;

void seg_trailer_make(unsigned char tr[SEG_TRAILER_LEN], uint64_t ioff, const void *index,
                      size_t ilen, uint64_t entries)
{
    char ih[65];
    sha256_hex(index, ilen, ih);
    put_u64(tr, ioff);
    put_u64(tr + 8, ilen);
    put_u64(tr + 16, entries);
    for (int i = 0; i < 8; i++) { /* the index's checksum: the first 8 bytes of its SHA-256 */
        unsigned hi = (unsigned)(ih[2 * i] <= '9' ? ih[2 * i] - '0' : ih[2 * i] - 'a' + 10);
        unsigned lo = (unsigned)(ih[2 * i + 1] <= '9' ? ih[2 * i + 1] - '0'
                                                      : ih[2 * i + 1] - 'a' + 10);
        tr[24 + i] = (unsigned char)(hi << 4 | lo);
    }
    memcpy(tr + 32, SEG_TRAILER_MAGIC, 8);
}

static int make_tmp(const char *dir, const char *what, char *path, size_t n)
{
    if (snprintf(path, n, "%s/%s-%d-%u", dir, what, (int)getpid(),
                 atomic_fetch_add(&tmp_counter, 1)) >= (int)n)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    return fd < 0 ? -errno : fd;
}

int segment_writer_new_in(struct objstore *store, const struct crypt *crypt, const char *tmp_dir,
                          struct segment_writer **out, struct dverr *err)
{
    *out = NULL;
    int rc = mkdir_p(tmp_dir, 0700);
    if (rc)
        return dverr_set(err, rc, "creating %s: %s", tmp_dir, strerror(-rc));
    struct segment_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->tmp_dir = strdup(tmp_dir))) {
        free(w);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    w->store = store;
    w->crypt = crypt;
    w->budget = SEGMENT_WRITER_BUDGET;
    w->level = ZSTD_LEVEL_DEFAULT;
    w->o.fd = -1;
    *out = w;
    return 0;
}

void segment_writer_set_budget(struct segment_writer *w, size_t bytes)
{
    w->budget = bytes < 4096 ? 4096 : bytes;
}

void segment_writer_set_attachments(struct segment_writer *w, bool on)
{
    w->attachments = on;
}

void segment_writer_set_ordered(struct segment_writer *w)
{
    w->ordered = true;
}

uint64_t segment_writer_count(const struct segment_writer *w)
{
    return w ? w->total_added : 0;
}

static int encode_entry(struct buf *b, char op, const char *key, size_t key_len,
                        const char *line, size_t line_len)
{
    unsigned char hdr[24];
    size_t h = 0;
    hdr[h++] = (unsigned char)op;
    h += put_varint(hdr + h, key_len);
    h += put_varint(hdr + h, line_len);
    int rc = buf_reserve(b, h + key_len + line_len);
    if (rc)
        return rc;
    memcpy(b->data + b->len, hdr, h);
    memcpy(b->data + b->len + h, key, key_len);
    if (line_len)
        memcpy(b->data + b->len + h + key_len, line, line_len);
    b->len += h + key_len + line_len;
    b->data[b->len] = '\0';
    return 0;
}

/* Bytes to the file as they are. */
static int out_raw(struct frame_out *o, const void *p, size_t n)
{
    const char *c = p;
    size_t left = n;
    while (left) {
        ssize_t w = write(o->fd, c, left);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        left -= (size_t)w;
    }
    o->stored += n;
    return 0;
}

/* Plain bytes of the segment: into the id, and to the file (a frame of a sealed segment is
 * sealed first, as part `part`). */
static int out_write(struct frame_out *o, const void *p, size_t n, uint64_t part)
{
    crypt_hash_update(o->idh, p, n);
    o->off += n;
    if (!o->co)
        return out_raw(o, p, n);
    buf_reset(&o->sealed);
    int rc = buf_reserve(&o->sealed, n + CRYPT_TAG_BYTES);
    if (!rc)
        rc = crypt_obj_seal(o->co, part, false, SEG_FRAME_AD, sizeof SEG_FRAME_AD, p, n,
                            (unsigned char *)o->sealed.data);
    return rc ? rc : out_raw(o, o->sealed.data, n + CRYPT_TAG_BYTES);
}

/* A compressed frame into the segment: its index record, then its bytes (in frame order). */
static int frame_write(struct frame_out *o, const struct buf *frame, uint32_t count,
                       const struct buf *first_key, const char *c, size_t clen, struct dverr *err)
{
    unsigned char rec[24];
    put_u64(rec, o->off);
    put_u32(rec + 8, (uint32_t)clen);
    put_u32(rec + 12, (uint32_t)frame->len);
    put_u32(rec + 16, count);
    put_u32(rec + 20, (uint32_t)first_key->len);
    int rc = buf_add(&o->index, rec, sizeof rec);
    if (!rc)
        rc = buf_add(&o->index, first_key->data, first_key->len);
    if (rc)
        return dverr_set(err, rc, "out of memory");
    if ((rc = out_write(o, c, clen, o->n_frames)))
        return dverr_set(err, rc, "writing a segment: %s", strerror(-rc));
    o->n_frames++;
    return 0;
}

static int compress_frame(ZSTD_CCtx *cctx, const struct buf *frame, struct buf *cbuf,
                          size_t *clen)
{
    size_t bound = ZSTD_compressBound(frame->len);
    buf_reset(cbuf);
    if (buf_reserve(cbuf, bound))
        return -ENOMEM;
    size_t c = ZSTD_compress2(cctx, cbuf->data, bound, frame->data, frame->len);
    if (ZSTD_isError(c))
        return -EIO;
    *clen = c;
    return 0;
}

static ZSTD_CCtx *new_cctx(int level)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    if (c) {
        ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
        ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
        ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    }
    return c;
}

/* ---- the compression pool of a writer: frames compressed side by side, written in order ---- */

struct zjob {
    struct buf frame, first_key, cbuf;
    uint32_t count;
    size_t clen;
    int rc;          /* of the compression */
    int state;       /* ZJ_FREE, ZJ_QUEUED, ZJ_BUSY, ZJ_DONE */
};
enum { ZJ_FREE, ZJ_QUEUED, ZJ_BUSY, ZJ_DONE };

struct zpool {
    pthread_mutex_t lock;    /* guards jobs[].state, jobs[].rc, jobs[].clen, stop */
    pthread_cond_t changed;  /* a job queued or done, or stop */
    struct zjob jobs[ZPOOL_JOBS]; /* a job's buffers belong to its worker while ZJ_BUSY, else
                                   * to the writer's thread */
    uint64_t submitted, written; /* frames handed over, frames written (the writer's thread) */
    pthread_t threads[ZPOOL_THREADS];
    int n_threads;
    int level;
    bool stop;
};

static void *zpool_main(void *arg)
{
    struct zpool *zp = arg;
    ZSTD_CCtx *cctx = new_cctx(zp->level);
    pthread_mutex_lock(&zp->lock);
    for (;;) {
        if (zp->stop)
            break;
        struct zjob *j = NULL;
        for (size_t i = 0; i < ZPOOL_JOBS && !j; i++)
            if (zp->jobs[i].state == ZJ_QUEUED)
                j = &zp->jobs[i];
        if (!j) {
            pthread_cond_wait(&zp->changed, &zp->lock);
            continue;
        }
        j->state = ZJ_BUSY;
        pthread_mutex_unlock(&zp->lock);
        size_t clen = 0;
        int rc = cctx ? compress_frame(cctx, &j->frame, &j->cbuf, &clen) : -ENOMEM;
        pthread_mutex_lock(&zp->lock);
        j->rc = rc;
        j->clen = clen;
        j->state = ZJ_DONE;
        pthread_cond_broadcast(&zp->changed);
    }
    pthread_mutex_unlock(&zp->lock);
    ZSTD_freeCCtx(cctx);
    return NULL;
}

static void zpool_free(struct zpool *zp)
{
    if (!zp)
        return;
    pthread_mutex_lock(&zp->lock);
    zp->stop = true;
    pthread_cond_broadcast(&zp->changed);
    pthread_mutex_unlock(&zp->lock);
    for (int i = 0; i < zp->n_threads; i++)
        pthread_join(zp->threads[i], NULL);
    for (size_t i = 0; i < ZPOOL_JOBS; i++) {
        buf_release(&zp->jobs[i].frame);
        buf_release(&zp->jobs[i].first_key);
        buf_release(&zp->jobs[i].cbuf);
    }
    pthread_cond_destroy(&zp->changed);
    pthread_mutex_destroy(&zp->lock);
    free(zp);
}

/* The pool, or NULL when no thread could be started (the frames are then compressed here). */
static struct zpool *zpool_start(int level)
{
    struct zpool *zp = calloc(1, sizeof *zp);
    if (!zp)
        return NULL;
    zp->level = level;
    pthread_mutex_init(&zp->lock, NULL);
    pthread_cond_init(&zp->changed, NULL);
    for (int i = 0; i < ZPOOL_THREADS; i++)
        if (thread_start(&zp->threads[zp->n_threads], zpool_main, zp) == 0)
            zp->n_threads++;
    if (!zp->n_threads) {
        zpool_free(zp);
        return NULL;
    }
    return zp;
}

/* Write the oldest frame handed over, once compressed. */
static int zpool_write_oldest(struct frame_out *o, struct dverr *err)
{
    struct zpool *zp = o->zp;
    struct zjob *j = &zp->jobs[zp->written % ZPOOL_JOBS];
    pthread_mutex_lock(&zp->lock);
    while (j->state != ZJ_DONE)
        pthread_cond_wait(&zp->changed, &zp->lock);
    int rc = j->rc;
    pthread_mutex_unlock(&zp->lock);
    if (rc)
        rc = rc == -ENOMEM ? dverr_set(err, rc, "out of memory")
                           : dverr_set(err, rc, "zstd: a frame could not be compressed");
    else
        rc = frame_write(o, &j->frame, j->count, &j->first_key, j->cbuf.data, j->clen, err);
    pthread_mutex_lock(&zp->lock);
    j->state = ZJ_FREE;
    pthread_mutex_unlock(&zp->lock);
    zp->written++;
    return rc;
}

/* Every frame handed over, written. */
static int zpool_write_all(struct frame_out *o, struct dverr *err)
{
    int rc = 0;
    while (!rc && o->zp && o->zp->written < o->zp->submitted)
        rc = zpool_write_oldest(o, err);
    return rc;
}

/* Close the frame being filled: handed to the pool (its buffers swapped with a free job's), or
 * compressed and written here. */
static int flush_frame(struct frame_out *o, struct dverr *err)
{
    int rc;
    if (o->frame_count == 0)
        return 0;
    if (!o->zp)
        o->zp = zpool_start(o->level);
    if (o->zp) {
        struct zpool *zp = o->zp;
        if (zp->submitted - zp->written == ZPOOL_JOBS && (rc = zpool_write_oldest(o, err)))
            return rc;
        struct zjob *j = &zp->jobs[zp->submitted % ZPOOL_JOBS];
        struct buf t = j->frame;
        j->frame = o->frame;
        o->frame = t;
        t = j->first_key;
        j->first_key = o->first_key;
        o->first_key = t;
        j->count = o->frame_count;
        pthread_mutex_lock(&zp->lock);
        j->state = ZJ_QUEUED;
        pthread_cond_signal(&zp->changed);
        pthread_mutex_unlock(&zp->lock);
        zp->submitted++;
    } else {
        size_t c;
        if ((rc = compress_frame(o->cctx, &o->frame, &o->cbuf, &c)))
            return rc == -ENOMEM ? dverr_set(err, rc, "out of memory")
                                 : dverr_set(err, rc, "zstd: a frame could not be compressed");
        if ((rc = frame_write(o, &o->frame, o->frame_count, &o->first_key, o->cbuf.data, c, err)))
            return rc;
    }
    o->frame_count = 0;
    buf_reset(&o->frame);
    buf_reset(&o->first_key);
    return 0;
}

static int emit(struct frame_out *o, const struct segment_entry *e, struct dverr *err)
{
    int rc;
    if (o->frame_count == 0 && (rc = buf_add(&o->first_key, e->key, e->key_len)))
        return dverr_set(err, rc, "out of memory");
    if ((rc = encode_entry(&o->frame, e->op, e->key, e->key_len, e->line, e->line_len)))
        return dverr_set(err, rc, "out of memory");
    o->frame_count++;
    struct segment_stats *st = &o->st;
    st->entries++;
    switch (e->op) {
    case SEG_BASE: st->bases++; break;
    case SEG_CREATE: st->creates++; break;
    case SEG_UPDATE: st->updates++; break;
    default: st->deletes++; break;
    }
    if (e->op != SEG_DELETE)
        st->line_bytes += line_full_len(e->line, e->line_len);
    /* the changes file shows the line as readers see it: attachment put back */
    st->changes_bytes += changes_line_size(e->op, e->key, e->key_len,
                                           line_full_len(e->line, e->line_len));
    if (o->frame.len >= SEGMENT_FRAME_TARGET)
        return flush_frame(o, err);
    return 0;
}

static void frame_out_release(struct frame_out *o)
{
    zpool_free(o->zp);
    o->zp = NULL;
    if (o->fd >= 0)
        close(o->fd);
    ZSTD_freeCCtx(o->cctx);
    if (o->idh)
        crypt_hash_finish(o->idh, NULL);
    crypt_obj_free(o->co);
    buf_release(&o->sealed);
    buf_release(&o->frame);
    buf_release(&o->first_key);
    buf_release(&o->index);
    buf_release(&o->cbuf);
}

/* The segment's temp file, header, compressor and id (and key, when sealed). */
static int frame_out_open(struct segment_writer *w, struct frame_out *o, struct dverr *err)
{
    w->out_open = true;
    o->fd = make_tmp(w->tmp_dir, "segment", o->tmp, sizeof o->tmp);
    if (o->fd < 0) {
        int rc = o->fd;
        o->fd = -1;
        o->tmp[0] = '\0';
        return dverr_set(err, rc, "creating a temp file in %s: %s", w->tmp_dir, strerror(-rc));
    }
    o->level = w->level;
    o->cctx = new_cctx(w->level);
    o->idh = crypt_hash_new(w->crypt);
    if (!o->cctx || !o->idh || (w->crypt && crypt_obj_new(w->crypt, o->salt, &o->co)))
        return dverr_set(err, -ENOMEM, "out of memory");
    /* the id is over the plain header; a sealed segment says it is sealed */
    crypt_hash_update(o->idh, SEG_MAGIC, SEG_HEADER_LEN);
    o->off = SEG_HEADER_LEN;
    int rc = out_raw(o, o->co ? SEG_SEALED_MAGIC : SEG_MAGIC, SEG_HEADER_LEN);
    return rc ? dverr_set(err, rc, "writing a segment in %s: %s", w->tmp_dir, strerror(-rc)) : 0;
}

void segment_writer_abort(struct segment_writer *w)
{
    if (!w)
        return;
    segment_sorter_free(w->sorter);
    frame_out_release(&w->o);
    if (w->o.tmp[0])
        unlink(w->o.tmp);
    free(w->tmp_dir);
    buf_release(&w->last_key);
    buf_release(&w->att_bytes);
    buf_release(&w->att_line);
    free(w);
}

int segment_writer_add(struct segment_writer *w, enum segment_op op, const char *key,
                       size_t key_len, const char *line, size_t line_len, struct dverr *err)
{
    if (!op_ok((char)op))
        return dverr_set(err, -EINVAL, "bad segment op %d", (int)op);
    if (key_len == 0 || key_len > SEGMENT_MAX_KEY)
        return dverr_set(err, -EINVAL, "record key of %zu bytes (1..%u allowed)", key_len,
                         SEGMENT_MAX_KEY);
    if (op == SEG_DELETE)
        line_len = 0;
    if (line_len > SEGMENT_MAX_LINE)
        return dverr_set(err, -EFBIG, "record line of %zu bytes (at most %u)", line_len,
                         SEGMENT_MAX_LINE);
    if (op != SEG_DELETE && line_len == 0)
        return dverr_set(err, -EINVAL, "empty record line");
    if (line_len && line[0] == ATTACH_MARK)
        return dverr_set(err, -EINVAL, "a record line cannot start with byte 1");
    if (w->ordered && w->total_added &&
        key_cmp(key, key_len, w->last_key.data, w->last_key.len) <= 0)
        return dverr_set(err, -EINVAL, "segment entries out of key order");
    /* local stores only for now: reading puts one blob read per attachment line, a syscall on a
     * directory but a request on object storage (a note-heavy table would cost thousands) */
    if (w->attachments && w->store->local_dir && line_len >= ATTACH_MIN) {
        int c = attach_compact(w->store, w->crypt, line, line_len, &w->att_bytes, &w->att_line,
                               err);
        if (c < 0)
            return c;
        if (c) {
            line = w->att_line.data;
            line_len = w->att_line.len;
        }
    }
    int rc;
    w->total_added++;
    if (w->ordered) {
        buf_reset(&w->last_key);
        if (buf_add(&w->last_key, key, key_len))
            return dverr_set(err, -ENOMEM, "out of memory");
        if (!w->out_open && (rc = frame_out_open(w, &w->o, err)))
            return rc;
        struct segment_entry e = {(char)op, key, key_len, line, line_len};
        return emit(&w->o, &e, err);
    }
    if (!w->sorter && (rc = segment_sorter_new(w->tmp_dir, w->budget, &w->sorter, err)))
        return rc;
    return segment_sorter_add(w->sorter, (char)op, key, key_len, line, line_len, err);
}

int segment_writer_finish(struct segment_writer *w, char id[65], struct dverr *err)
{
    return segment_writer_finish_stats(w, id, NULL, err);
}

static int emit_entry(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    return emit(ctx, e, err);
}

int segment_writer_finish_stats(struct segment_writer *w, char id[65], struct segment_stats *st,
                                struct dverr *err)
{
    struct frame_out *o = &w->o;
    int rc = 0;
    id[0] = '\0';
    if (st)
        memset(st, 0, sizeof *st);
    if (w->total_added == 0)
        goto out;
    if (!w->ordered) {
        if ((rc = frame_out_open(w, o, err)) ||
            (rc = segment_sorter_drain(w->sorter, emit_entry, o, err)))
            goto out;
    }
    if ((rc = flush_frame(o, err)) || (rc = zpool_write_all(o, err)))
        goto out;
    /* index and trailer */
    struct buf idx = BUF_INIT;
    unsigned char hdr[16];
    memcpy(hdr, "DVSI", 4);
    put_u32(hdr + 4, o->n_frames);
    put_u64(hdr + 8, o->st.entries);
    if ((rc = buf_add(&idx, hdr, sizeof hdr)) || (rc = buf_add(&idx, o->index.data, o->index.len))) {
        buf_release(&idx);
        rc = dverr_set(err, rc, "out of memory");
        goto out;
    }
    unsigned char tr[SEG_TRAILER_LEN];
    seg_trailer_make(tr, o->off, idx.data, idx.len, o->st.entries);
    crypt_hash_update(o->idh, idx.data, idx.len);
    crypt_hash_update(o->idh, tr, sizeof tr);
    crypt_hash_finish(o->idh, id);
    o->idh = NULL;
    if (!o->co) {
        rc = out_raw(o, idx.data, idx.len);
        if (!rc)
            rc = out_raw(o, tr, sizeof tr);
    } else {
        /* the index, sealed with the id and its place bound in, then the sealed trailer */
        unsigned char ad[SEG_INDEX_AD_LEN], str[SEG_SEALED_TRAILER_LEN];
        uint64_t ioff = o->stored, ilen = idx.len + CRYPT_TAG_BYTES;
        seg_index_ad(ad, id, ioff, ilen);
        buf_reset(&o->sealed);
        rc = buf_reserve(&o->sealed, ilen);
        if (!rc)
            rc = crypt_obj_seal(o->co, SEG_INDEX_PART, true, ad, sizeof ad, idx.data, idx.len,
                                (unsigned char *)o->sealed.data);
        put_u64(str, ioff);
        put_u64(str + 8, ilen);
        memcpy(str + 16, o->salt, CRYPT_SALT_BYTES);
        memcpy(str + 16 + CRYPT_SALT_BYTES, SEG_SEALED_TRAILER_MAGIC, 8);
        if (!rc)
            rc = out_raw(o, o->sealed.data, ilen);
        if (!rc)
            rc = out_raw(o, str, sizeof str);
    }
    buf_release(&idx);
    if (rc)
        goto io;
    if (close(o->fd)) {
        o->fd = -1;
        rc = -errno;
        goto io;
    }
    o->fd = -1;
    char name[80];
    segment_object_name(id, name);
    uint64_t size;
    struct dverr ignore = {0};
    if (w->store->ops->stat(w->store->impl, name, &size, &ignore) != 0 || size != o->stored)
        rc = w->store->ops->put_file(w->store->impl, name, o->tmp, err);
    if (rc)
        id[0] = '\0';
    o->st.table_bytes = table_size(o->st.entries - o->st.deletes, o->st.line_bytes);
    o->st.changes_bytes = table_size(o->st.entries, o->st.changes_bytes); /* lines -> file */
    if (st)
        *st = o->st;
    goto out;
io:
    rc = dverr_set(err, rc, "writing a segment in %s: %s", w->tmp_dir, strerror(-rc));
out:
    if (rc)
        id[0] = '\0';
    segment_writer_abort(w);
    return rc;
}
