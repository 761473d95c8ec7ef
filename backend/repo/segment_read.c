/* segment_read: reading, merging and verifying segments (format in segment.h, internals in
 * segment_int.h). segment_open reads a segment's trailer and index and checks them against each
 * other; a cursor decodes one frame at a time (memory: one frame per segment in the chain); the
 * merge is a binary heap over the cursors ordered by (key, newest first), and puts the base64 of a
 * line kept by reference back (one blob read per such line). Every size read is capped and
 * cross-checked: damage gives -EIO naming the segment. With a crypt, segments are sealed
 * (segment.h): the index is opened with the segment's id bound in, each frame as it is fetched
 * (its stored range is the plain one moved by 16 bytes a frame), and anything that does not
 * authenticate is damage.
 * Threading: a merge and its cursors belong to one thread at a time; each merge owns its
 * ZSTD_DCtx. */
#include "backend/repo/segment_int.h"

#include "backend/repo/blob.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define WINDOW_LOG_MAX 27

/* ---------- attachments kept once: the reader's side ---------- */

/* Put the base64 of an attachment line back (segment_int.h) into out; e->line then points there. */
static int attach_expand(struct objstore *store, const struct crypt *crypt,
                         struct segment_entry *e, struct buf *bytes, struct buf *out,
                         struct dverr *err)
{
    char id[65] = "";
    if (e->line_len >= ATTACH_HEAD) {
        memcpy(id, e->line + 1, 64);
        id[64] = '\0';
    }
    if (!segment_id_ok(id))
        return dverr_set(err, -EIO, "a segment line of record %.*s is damaged (bad attachment "
                         "reference)", (int)(e->key_len > 80 ? 80 : e->key_len), e->key);
    size_t off = get_u32((const unsigned char *)e->line + 65), rest = e->line_len - ATTACH_HEAD;
    const char *r = e->line + ATTACH_HEAD;
    if (off > rest)
        return dverr_set(err, -EIO, "a segment line of record %.*s is damaged (attachment offset)",
                         (int)(e->key_len > 80 ? 80 : e->key_len), e->key);
    /* one read of the size the line records (no stat: a request less on object stores); the
     * blob's check (its id, and sealed, its tags) catches a blob of other bytes */
    uint64_t size = get_u32((const unsigned char *)e->line + 69);
    if (size > (uint64_t)SEGMENT_MAX_LINE / 4 * 3)
        return dverr_set(err, -EIO, "a segment line of record %.*s is damaged (attachment of "
                         "%llu bytes)", (int)(e->key_len > 80 ? 80 : e->key_len), e->key,
                         (unsigned long long)size);
    struct dverr ge = {0};
    buf_reset(bytes);
    int rc = blob_get(store, crypt, id, size, size, bytes, &ge);
    if (rc)
        return rc == -ENOENT ? dverr_set(err, -ENOENT, "attachment blob %.16s of record %.*s is "
                                         "missing", id, (int)(e->key_len > 80 ? 80 : e->key_len),
                                         e->key)
                             : dverr_set(err, rc == -EFBIG ? -EIO : rc, "attachment %s",
                                         dverr_msg(&ge));
    buf_reset(out);
    if ((rc = buf_reserve(out, rest + b64_len(bytes->len) + 1)) || (rc = buf_add(out, r, off)) ||
        (rc = base64_encode(bytes->data, bytes->len, out)) ||
        (rc = buf_add(out, r + off, rest - off)))
        return dverr_set(err, rc, "out of memory");
    e->line = out->data;
    e->line_len = out->len;
    return 0;
}

/* ---------- reader ---------- */

struct frame_info {
    uint64_t off;
    uint32_t csize, usize, count;
    const unsigned char *first_key;
    uint32_t first_key_len;
};

struct segment {
    char id[65];
    char name[80];
    struct objstore *store;
    struct crypt_obj *co;   /* sealed: the segment's key; NULL for a plain segment */
    uint64_t size, entries;
    struct buf index;
    struct frame_info *frames;
    uint32_t n_frames;
};

static void segment_free(struct segment *s)
{
    if (!s)
        return;
    buf_release(&s->index);
    crypt_obj_free(s->co);
    free(s->frames);
    free(s);
}

static int damaged(struct dverr *err, const struct segment *s, const char *what)
{
    return dverr_set(err, -EIO, "segment %.16s is damaged: %s", s->id, what);
}

/* A plain segment's trailer and index: s->index, s->entries; *ioff and *ilen where the index is. */
static int plain_index(struct segment *s, struct buf *tb, uint64_t *ioff, uint64_t *ilen,
                       struct dverr *err)
{
    struct objstore *store = s->store;
    int rc;
    if (s->size < SEG_HEADER_LEN + SEG_TRAILER_LEN)
        return damaged(err, s, "too short");
    if ((rc = store->ops->get(store->impl, s->name, s->size - SEG_TRAILER_LEN, SEG_TRAILER_LEN, tb,
                              err)))
        return rc;
    const unsigned char *t = (const unsigned char *)tb->data;
    if (tb->len != SEG_TRAILER_LEN || memcmp(t + 32, SEG_TRAILER_MAGIC, 8) != 0)
        return damaged(err, s, "bad trailer");
    *ioff = get_u64(t);
    *ilen = get_u64(t + 8);
    s->entries = get_u64(t + 16);
    if (*ilen < 16 || *ilen > SEGMENT_MAX_INDEX || *ioff < SEG_HEADER_LEN ||
        *ioff > s->size - SEG_TRAILER_LEN || *ilen != s->size - SEG_TRAILER_LEN - *ioff)
        return damaged(err, s, "bad index position");
    if ((rc = store->ops->get(store->impl, s->name, *ioff, *ilen, &s->index, err)))
        return rc;
    char ih[65];
    sha256_hex(s->index.data, s->index.len, ih);
    for (int i = 0; i < 8; i++) {
        char hx[3];
        snprintf(hx, sizeof hx, "%02x", t[24 + i]);
        if (memcmp(hx, ih + 2 * i, 2) != 0)
            return damaged(err, s, "index checksum mismatch");
    }
    if (s->index.len < 16 || get_u64((const unsigned char *)s->index.data + 8) != s->entries)
        return damaged(err, s, "bad index header");
    return 0;
}

/* A sealed segment's trailer and index, opened with the id bound in: s->index (plain), s->co,
 * s->entries; *ioff and *ilen where the plain index would be. */
static int sealed_index(struct segment *s, const struct crypt *crypt, struct buf *tb,
                        uint64_t *ioff, uint64_t *ilen, struct dverr *err)
{
    struct objstore *store = s->store;
    int rc;
    if (s->size < SEG_HEADER_LEN + 16 + CRYPT_TAG_BYTES + SEG_SEALED_TRAILER_LEN)
        return damaged(err, s, "too short");
    if ((rc = store->ops->get(store->impl, s->name, s->size - SEG_SEALED_TRAILER_LEN,
                              SEG_SEALED_TRAILER_LEN, tb, err)))
        return rc;
    const unsigned char *t = (const unsigned char *)tb->data;
    if (tb->len != SEG_SEALED_TRAILER_LEN ||
        memcmp(t + 16 + CRYPT_SALT_BYTES, SEG_SEALED_TRAILER_MAGIC, 8) != 0)
        return damaged(err, s, "bad trailer (not a sealed segment)");
    uint64_t soff = get_u64(t), slen = get_u64(t + 8);
    if (slen < 16 + CRYPT_TAG_BYTES || slen > SEGMENT_MAX_INDEX + CRYPT_TAG_BYTES ||
        soff < SEG_HEADER_LEN || soff > s->size - SEG_SEALED_TRAILER_LEN ||
        slen != s->size - SEG_SEALED_TRAILER_LEN - soff)
        return damaged(err, s, "bad index position");
    if ((rc = crypt_obj_open(crypt, t + 16, &s->co)))
        return dverr_set(err, rc, "out of memory");
    if ((rc = store->ops->get(store->impl, s->name, soff, slen, &s->index, err)))
        return rc;
    unsigned char ad[SEG_INDEX_AD_LEN];
    seg_index_ad(ad, s->id, soff, slen);
    if (s->index.len != slen ||
        crypt_obj_open_part(s->co, SEG_INDEX_PART, true, ad, sizeof ad,
                            (unsigned char *)s->index.data, slen,
                            (unsigned char *)s->index.data))
        return damaged(err, s, "its index does not authenticate (changed, or another object "
                               "under its name)");
    s->index.len = slen - CRYPT_TAG_BYTES;
    s->entries = get_u64((const unsigned char *)s->index.data + 8);
    /* where the plain index would start: the frames' plain bytes end there */
    uint32_t n_frames = get_u32((const unsigned char *)s->index.data + 4);
    if (soff < SEG_HEADER_LEN + (uint64_t)CRYPT_TAG_BYTES * n_frames)
        return damaged(err, s, "bad frame count");
    *ioff = soff - (uint64_t)CRYPT_TAG_BYTES * n_frames;
    *ilen = s->index.len;
    return 0;
}

static int segment_open(struct objstore *store, const struct crypt *crypt, const char *id,
                        struct segment **out, struct dverr *err)
{
    *out = NULL;
    if (!segment_id_ok(id))
        return dverr_set(err, -EIO, "invalid segment id \"%.70s\"", id ? id : "");
    struct segment *s = calloc(1, sizeof *s);
    if (!s)
        return dverr_set(err, -ENOMEM, "out of memory");
    memcpy(s->id, id, 65);
    s->store = store;
    segment_object_name(id, s->name);
    struct buf tb = BUF_INIT;
    uint64_t ioff = 0, ilen = 0;
    int rc = store->ops->stat(store->impl, s->name, &s->size, err);
    if (rc) {
        if (rc == -ENOENT)
            dverr_set(err, rc, "segment %.16s is missing", id);
        goto out;
    }
    if ((rc = crypt ? sealed_index(s, crypt, &tb, &ioff, &ilen, err)
                    : plain_index(s, &tb, &ioff, &ilen, err)))
        goto out;
    const unsigned char *p = (const unsigned char *)s->index.data;
    if (memcmp(p, "DVSI", 4) != 0) {
        rc = damaged(err, s, "bad index header");
        goto out;
    }
    s->n_frames = get_u32(p + 4);
    if (s->n_frames > ilen / 24) {
        rc = damaged(err, s, "bad frame count");
        goto out;
    }
    s->frames = calloc(s->n_frames ? s->n_frames : 1, sizeof *s->frames);
    if (!s->frames) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t pos = 16;
    uint64_t expect_off = SEG_HEADER_LEN, total = 0;
    for (uint32_t i = 0; i < s->n_frames; i++) {
        struct frame_info *f = &s->frames[i];
        if (ilen - pos < 24) {
            rc = damaged(err, s, "index truncated");
            goto out;
        }
        f->off = get_u64(p + pos);
        f->csize = get_u32(p + pos + 8);
        f->usize = get_u32(p + pos + 12);
        f->count = get_u32(p + pos + 16);
        f->first_key_len = get_u32(p + pos + 20);
        pos += 24;
        if (f->first_key_len > SEGMENT_MAX_KEY || ilen - pos < f->first_key_len) {
            rc = damaged(err, s, "index truncated");
            goto out;
        }
        f->first_key = p + pos;
        pos += f->first_key_len;
        if (f->off != expect_off || f->csize == 0 || f->csize > ZSTD_compressBound(SEGMENT_MAX_FRAME) ||
            f->usize == 0 || f->usize > SEGMENT_MAX_FRAME || f->count == 0 ||
            f->csize > ioff - f->off) {
            rc = damaged(err, s, "bad frame record in the index");
            goto out;
        }
        expect_off = f->off + f->csize;
        total += f->count;
    }
    if (pos != ilen || expect_off != ioff || total != s->entries) {
        rc = damaged(err, s, "index does not match the frames");
        goto out;
    }
    *out = s;
    s = NULL;
out:
    buf_release(&tb);
    segment_free(s);
    return rc;
}

/* Fetch frame i's compressed bytes into cbuf (*frame points at them, f->csize bytes): its stored
 * range, opened when the segment is sealed. The first frame is read together with the header,
 * which is checked on the way. */
static int frame_fetch(struct segment *s, uint32_t i, struct buf *cbuf, const char **frame,
                       struct dverr *err)
{
    const struct frame_info *f = &s->frames[i];
    uint64_t tags = s->co ? CRYPT_TAG_BYTES : 0;
    uint64_t off = f->off + tags * i, len = f->csize + tags;
    uint64_t skip = i == 0 ? off : 0;
    buf_reset(cbuf);
    int rc = s->store->ops->get(s->store->impl, s->name, off - skip, len + skip, cbuf, err);
    if (rc)
        return rc == -ENOENT ? dverr_set(err, rc, "segment %.16s is missing", s->id) : rc;
    if (cbuf->len != len + skip)
        return damaged(err, s, "short frame");
    if (skip && memcmp(cbuf->data, s->co ? SEG_SEALED_MAGIC : SEG_MAGIC, SEG_HEADER_LEN) != 0)
        return damaged(err, s, "bad header");
    unsigned char *p = (unsigned char *)cbuf->data + skip;
    if (s->co && crypt_obj_open_part(s->co, i, false, SEG_FRAME_AD, sizeof SEG_FRAME_AD, p, len,
                                     p)) {
        char what[80];
        snprintf(what, sizeof what, "frame %u does not authenticate", i);
        return damaged(err, s, what);
    }
    *frame = (const char *)p;
    return 0;
}

struct cursor {
    struct segment *seg;
    uint32_t frame;         /* next frame to load */
    struct buf cbuf, ubuf;  /* compressed and decoded frame */
    size_t pos;             /* in ubuf */
    uint32_t left;          /* entries left in the decoded frame */
    struct segment_entry e; /* current */
    struct buf prev_key;    /* last key of the previous frame */
    bool have_prev;
    int index;              /* position in the chain (newer = larger) */
};

static int cursor_load(struct cursor *c, ZSTD_DCtx *dctx, struct dverr *err)
{
    struct segment *s = c->seg;
    const struct frame_info *f = &s->frames[c->frame];
    if (c->ubuf.len) { /* remember the last key for the cross-frame order check */
        buf_reset(&c->prev_key);
        if (buf_add(&c->prev_key, c->e.key, c->e.key_len))
            return dverr_set(err, -ENOMEM, "out of memory");
        c->have_prev = true;
    }
    const char *frame;
    int rc = frame_fetch(s, c->frame, &c->cbuf, &frame, err);
    if (rc)
        return rc;
    unsigned long long fcs = ZSTD_getFrameContentSize(frame, f->csize);
    if (fcs != f->usize)
        return damaged(err, s, "frame size does not match the index");
    buf_reset(&c->ubuf);
    if (buf_reserve(&c->ubuf, f->usize))
        return dverr_set(err, -ENOMEM, "out of memory");
    size_t d = ZSTD_decompressDCtx(dctx, c->ubuf.data, f->usize, frame, f->csize);
    if (ZSTD_isError(d) || d != f->usize) {
        char what[160];
        snprintf(what, sizeof what, "frame %u does not decode (%s)", c->frame,
                 ZSTD_isError(d) ? ZSTD_getErrorName(d) : "short");
        return damaged(err, s, what);
    }
    c->ubuf.len = d;
    c->pos = 0;
    c->left = f->count;
    c->frame++;
    return 0;
}

/* 1 with c->e set, 0 at the end, <0 on damage. */
static int cursor_next(struct cursor *c, ZSTD_DCtx *dctx, struct dverr *err)
{
    struct segment *s = c->seg;
    bool first_of_frame = false;
    if (c->left == 0) {
        if (c->ubuf.len && c->pos != c->ubuf.len)
            return damaged(err, s, "trailing bytes in a frame");
        if (c->frame >= s->n_frames)
            return 0;
        int rc = cursor_load(c, dctx, err);
        if (rc)
            return rc;
        first_of_frame = true;
    }
    const unsigned char *p = (const unsigned char *)c->ubuf.data;
    size_t end = c->ubuf.len, pos = c->pos;
    uint64_t kl, ll;
    if (pos >= end)
        return damaged(err, s, "frame ends early");
    char op = (char)p[pos++];
    if (!op_ok(op) || get_varint(p, end, &pos, &kl) || get_varint(p, end, &pos, &ll) ||
        kl == 0 || kl > SEGMENT_MAX_KEY || ll > SEGMENT_MAX_LINE || kl + ll > end - pos ||
        (op == SEG_DELETE) != (ll == 0))
        return damaged(err, s, "bad entry");
    const char *key = (const char *)p + pos;
    if (first_of_frame) {
        const struct frame_info *f = &s->frames[c->frame - 1];
        if (f->first_key_len != kl || memcmp(f->first_key, key, kl) != 0)
            return damaged(err, s, "frame's first key does not match the index");
        if (c->have_prev && key_cmp(c->prev_key.data, c->prev_key.len, key, kl) >= 0)
            return damaged(err, s, "keys out of order");
    } else if (key_cmp(c->e.key, c->e.key_len, key, kl) >= 0) {
        return damaged(err, s, "keys out of order");
    }
    c->e = (struct segment_entry){op, key, kl, key + kl, ll};
    c->pos = pos + kl + ll;
    c->left--;
    return 1;
}

static void cursor_release(struct cursor *c)
{
    segment_free(c->seg);
    buf_release(&c->cbuf);
    buf_release(&c->ubuf);
    buf_release(&c->prev_key);
}

struct segment_merge {
    struct objstore *store;
    const struct crypt *crypt;
    struct buf att_bytes, att_line; /* attach_expand's scratch; att_line holds the last line */
    ZSTD_DCtx *dctx;
    struct cursor *cur;
    size_t n;
    size_t *heap;           /* cursor indices */
    size_t n_heap;
    size_t *pending;        /* cursors to advance before the next selection */
    size_t n_pending;
    bool keep_deletes;
    bool advance_top;       /* the last winner is still heap[0]: advance it in place */
};

static bool heap_less(const struct segment_merge *m, size_t a, size_t b)
{
    const struct segment_entry *x = &m->cur[a].e, *y = &m->cur[b].e;
    int c = key_cmp(x->key, x->key_len, y->key, y->key_len);
    if (c)
        return c < 0;
    return a > b; /* newer segment first */
}

static void heap_sift_down(struct segment_merge *m, size_t k)
{
    for (;;) {
        size_t l = 2 * k + 1, r = l + 1, s = k;
        if (l < m->n_heap && heap_less(m, m->heap[l], m->heap[s]))
            s = l;
        if (r < m->n_heap && heap_less(m, m->heap[r], m->heap[s]))
            s = r;
        if (s == k)
            return;
        size_t t = m->heap[k];
        m->heap[k] = m->heap[s];
        m->heap[s] = t;
        k = s;
    }
}

static void heap_push(struct segment_merge *m, size_t i)
{
    size_t k = m->n_heap++;
    m->heap[k] = i;
    while (k > 0) {
        size_t parent = (k - 1) / 2;
        if (!heap_less(m, m->heap[k], m->heap[parent]))
            break;
        size_t t = m->heap[k];
        m->heap[k] = m->heap[parent];
        m->heap[parent] = t;
        k = parent;
    }
}

static size_t heap_pop(struct segment_merge *m)
{
    size_t top = m->heap[0];
    m->heap[0] = m->heap[--m->n_heap];
    heap_sift_down(m, 0);
    return top;
}

void segment_merge_free(struct segment_merge *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        cursor_release(&m->cur[i]);
    free(m->cur);
    free(m->heap);
    free(m->pending);
    ZSTD_freeDCtx(m->dctx);
    buf_release(&m->att_bytes);
    buf_release(&m->att_line);
    free(m);
}

int segment_merge_open(struct objstore *store, const struct crypt *crypt, char *const *ids,
                       size_t n, bool keep_deletes, struct segment_merge **out, struct dverr *err)
{
    *out = NULL;
    struct segment_merge *m = calloc(1, sizeof *m);
    int rc = 0;
    if (!m)
        return dverr_set(err, -ENOMEM, "out of memory");
    m->keep_deletes = keep_deletes;
    m->store = store;
    m->crypt = crypt;
    m->dctx = ZSTD_createDCtx();
    m->cur = calloc(n ? n : 1, sizeof *m->cur);
    m->heap = calloc(n ? n : 1, sizeof *m->heap);
    m->pending = calloc(n ? n : 1, sizeof *m->pending);
    if (!m->dctx || !m->cur || !m->heap || !m->pending) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    ZSTD_DCtx_setParameter(m->dctx, ZSTD_d_windowLogMax, WINDOW_LOG_MAX);
    for (size_t i = 0; i < n; i++) {
        if ((rc = segment_open(store, crypt, ids[i], &m->cur[i].seg, err)))
            goto fail;
        m->cur[i].index = (int)i;
        m->n = i + 1;
        m->pending[m->n_pending++] = i; /* first entry loaded by the first next() */
    }
    m->n = n;
    *out = m;
    return 0;
fail:
    segment_merge_free(m);
    return rc;
}

static bool same_key(const struct segment_merge *m, size_t heap_pos, const struct segment_entry *e)
{
    const struct segment_entry *o = &m->cur[m->heap[heap_pos]].e;
    return o->key_len == e->key_len && memcmp(o->key, e->key, e->key_len) == 0;
}

/* 1 with an attachment line's base64 put back, or -errno. */
static int merge_expand(struct segment_merge *m, struct segment_entry *e, struct dverr *err)
{
    if (e->line_len == 0 || e->line[0] != ATTACH_MARK)
        return 1;
    int rc = attach_expand(m->store, m->crypt, e, &m->att_bytes, &m->att_line, err);
    return rc ? rc : 1;
}

/* The common case (a key in one segment only) keeps the winner at the top of the heap and
 * advances it in place: one sift-down of two comparisons while it stays the smallest, instead
 * of a pop and a push. */
int segment_merge_next(struct segment_merge *m, struct segment_entry *e, struct dverr *err)
{
    for (;;) {
        if (m->advance_top) {
            m->advance_top = false;
            int rc = cursor_next(&m->cur[m->heap[0]], m->dctx, err);
            if (rc < 0)
                return rc;
            if (rc == 1)
                heap_sift_down(m, 0);
            else
                heap_pop(m);
        }
        for (size_t i = 0; i < m->n_pending; i++) {
            size_t ci = m->pending[i];
            int rc = cursor_next(&m->cur[ci], m->dctx, err);
            if (rc < 0)
                return rc;
            if (rc == 1)
                heap_push(m, ci);
        }
        m->n_pending = 0;
        if (m->n_heap == 0)
            return 0;
        const struct segment_entry *te = &m->cur[m->heap[0]].e;
        /* an equal key elsewhere in the heap shows in a child of the root */
        bool dup = (m->n_heap > 1 && same_key(m, 1, te)) || (m->n_heap > 2 && same_key(m, 2, te));
        if (!dup) {
            m->advance_top = true;
            if (te->op == SEG_DELETE && !m->keep_deletes)
                continue;
            *e = *te;
            return merge_expand(m, e, err);
        }
        size_t top = heap_pop(m);
        m->pending[m->n_pending++] = top;
        te = &m->cur[top].e;
        while (m->n_heap) {
            const struct segment_entry *o = &m->cur[m->heap[0]].e;
            if (key_cmp(o->key, o->key_len, te->key, te->key_len) != 0)
                break;
            m->pending[m->n_pending++] = heap_pop(m);
        }
        if (te->op == SEG_DELETE && !m->keep_deletes)
            continue;
        *e = *te;
        return merge_expand(m, e, err);
    }
}

/* A plain segment's id: the SHA-256 of its bytes, read in 8 MiB pieces. */
static int plain_id(struct objstore *store, const char *id, char h[65], struct dverr *err)
{
    char name[80];
    segment_object_name(id, name);
    uint64_t size = 0;
    int rc = store->ops->stat(store->impl, name, &size, err);
    if (rc)
        return rc == -ENOENT ? dverr_set(err, rc, "segment %.16s is missing", id) : rc;
    struct sha256_stream *sha = sha256_stream_new();
    struct buf b = BUF_INIT;
    for (uint64_t off = 0; off < size && !rc;) {
        uint64_t n = size - off < (8u << 20) ? size - off : (8u << 20);
        buf_reset(&b);
        if (!(rc = store->ops->get(store->impl, name, off, n, &b, err)))
            sha256_stream_update(sha, b.data, b.len);
        off += n;
    }
    sha256_stream_finish(sha, h);
    buf_release(&b);
    return rc;
}

/* A sealed segment's id: crypt_id of the plain segment its opened frames and index make. */
static int sealed_id(struct objstore *store, const struct crypt *crypt, const char *id,
                     char h[65], struct dverr *err)
{
    struct segment *s = NULL;
    int rc = segment_open(store, crypt, id, &s, err);
    if (rc)
        return rc;
    struct crypt_hash *ch = crypt_hash_new(crypt);
    struct buf cbuf = BUF_INIT;
    if (!ch) {
        segment_free(s);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    crypt_hash_update(ch, SEG_MAGIC, SEG_HEADER_LEN);
    for (uint32_t i = 0; i < s->n_frames && !rc; i++) {
        const char *frame;
        if (!(rc = frame_fetch(s, i, &cbuf, &frame, err)))
            crypt_hash_update(ch, frame, s->frames[i].csize);
    }
    if (!rc) {
        unsigned char tr[SEG_TRAILER_LEN];
        uint64_t ioff = SEG_HEADER_LEN;
        if (s->n_frames)
            ioff = s->frames[s->n_frames - 1].off + s->frames[s->n_frames - 1].csize;
        seg_trailer_make(tr, ioff, s->index.data, s->index.len, s->entries);
        crypt_hash_update(ch, s->index.data, s->index.len);
        crypt_hash_update(ch, tr, sizeof tr);
    }
    crypt_hash_finish(ch, h);
    buf_release(&cbuf);
    segment_free(s);
    return rc;
}

int segment_verify(struct objstore *store, const struct crypt *crypt, const char *id,
                   uint64_t *entries, struct dverr *err)
{
    if (!segment_id_ok(id))
        return dverr_set(err, -EIO, "invalid segment id \"%.70s\"", id ? id : "");
    /* the whole object's id first */
    char h[65];
    int rc = crypt ? sealed_id(store, crypt, id, h, err) : plain_id(store, id, h, err);
    if (rc)
        return rc;
    if (strcmp(h, id) != 0)
        return dverr_set(err, -EIO, "segment %.16s is damaged: its bytes do not match its id", id);
    struct segment_merge *m = NULL;
    char *ids[1] = {(char *)id};
    if ((rc = segment_merge_open(store, crypt, ids, 1, true, &m, err)))
        return rc;
    uint64_t count = 0;
    struct segment_entry e;
    while ((rc = segment_merge_next(m, &e, err)) == 1)
        count++;
    if (rc == 0 && count != m->cur[0].seg->entries)
        rc = dverr_set(err, -EIO, "segment %.16s is damaged: entry count mismatch", id);
    if (rc == 0 && entries)
        *entries = count;
    segment_merge_free(m);
    return rc;
}
