/* catalog_chunk: the format of the capture state's chunks (catalog_int.h): record keys packed
 * (GUIDs as 16 bytes), where a chunk starts, and a chunk's columns encoded and decoded. Pure
 * functions on memory: no SQLite here (catalog_capture.c reads and writes the rows).
 * Threading: none shared; an encoder or a decoded chunk belongs to its caller. */
#include "backend/repo/catalog_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Record keys in a chunk: a canonical lowercase GUID (8-4-4-4-12 hex) is stored as its 16 bytes;
 * any other key as its bytes, with a 0 byte in front when it is 16 bytes long (keys hold no NUL).
 * out needs n + 1 bytes; returns the packed length. */
static size_t key_pack(const char *key, size_t n, unsigned char *out)
{
    bool guid = n == 36;
    for (size_t i = 0; guid && i < 36; i++) {
        char c = key[i];
        bool is_dash = i == 8 || i == 13 || i == 18 || i == 23;
        guid = is_dash ? c == '-' : ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (guid) {
        size_t o = 0;
        for (size_t i = 0; i < 36; i += 2) {
            if (key[i] == '-')
                i++;
            unsigned hi = (unsigned)(key[i] <= '9' ? key[i] - '0' : key[i] - 'a' + 10);
            unsigned lo = (unsigned)(key[i + 1] <= '9' ? key[i + 1] - '0' : key[i + 1] - 'a' + 10);
            out[o++] = (unsigned char)(hi << 4 | lo);
        }
        return o;
    }
    if (n == 16) {
        out[0] = 0;
        memcpy(out + 1, key, n);
        return n + 1;
    }
    memcpy(out, key, n);
    return n;
}

/* Inverse of key_pack into a NUL-terminated string (out needs max(37, n + 1) bytes); returns
 * its length. */
static size_t key_unpack(const unsigned char *p, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    if (n == 16) {
        size_t o = 0;
        for (size_t i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10)
                out[o++] = '-';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
        }
        out[o] = '\0';
        return o;
    }
    if (n == 17 && p[0] == 0) {
        p++;
        n--;
    }
    memcpy(out, p, n);
    out[n] = '\0';
    return n;
}

/* The key order of the state, the same as segments': bytes, then shorter first (SQLite's BLOB
 * order, so ORDER BY on temp.pending's and the chunks' BLOB keys merges with it). */
int state_key_order(const char *a, size_t an, const char *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

bool state_chunk_starts(const char *key, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)key[i]) * 0x100000001b3ull;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return (h & (STATE_CHUNK_KEYS - 1)) == 0;
}

void state_chunk_release(struct state_chunk *c)
{
    free(c->keys);
    free(c->koff);
    free(c->len);
    free(c->hash);
    memset(c, 0, sizeof *c);
}

const char *state_chunk_key(const struct state_chunk *c, size_t i, size_t *n)
{
    *n = c->koff[i + 1] - c->koff[i] - 1;
    return c->keys + c->koff[i];
}

static int st_varint(struct buf *b, uint64_t v)
{
    unsigned char p[10];
    size_t n = 0;
    do {
        p[n] = (unsigned char)(v & 0x7f);
        v >>= 7;
        if (v)
            p[n] |= 0x80;
        n++;
    } while (v);
    return buf_add(b, p, n);
}

static int st_get_varint(const unsigned char *p, size_t end, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*pos >= end)
            return -EIO;
        unsigned char c = p[(*pos)++];
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -EIO;
}

/* Decode a chunk's data of n entries. */
int state_chunk_decode(ZSTD_DCtx *dctx, const void *data, size_t size, uint64_t n,
                       struct state_chunk *t)
{
    memset(t, 0, sizeof *t);
    unsigned long long raw_n = ZSTD_getFrameContentSize(data, size);
    if (raw_n == ZSTD_CONTENTSIZE_ERROR || raw_n == ZSTD_CONTENTSIZE_UNKNOWN ||
        raw_n > STATE_MAX_RAW || n > raw_n / 3)
        return -EIO;
    unsigned char *raw = malloc(raw_n ? raw_n : 1), *pk = malloc(SEGMENT_KEY_CAP + 2);
    int rc = 0;
    if (!raw || !pk) {
        rc = -ENOMEM;
        goto out;
    }
    size_t z = ZSTD_decompressDCtx(dctx, raw, raw_n, data, size);
    if (ZSTD_isError(z) || z != raw_n) {
        rc = -EIO;
        goto out;
    }
    t->n = n;
    t->koff = malloc((n + 1) * sizeof *t->koff);
    t->len = malloc((n ? n : 1) * sizeof *t->len);
    size_t kcap = n * 40 + 64, kused = 0, pkn = 0;
    t->keys = malloc(kcap);
    if (!t->koff || !t->len || !t->keys) {
        rc = -ENOMEM;
        goto out;
    }
    size_t pos = 0;
    uint64_t count;
    if (st_get_varint(raw, raw_n, &pos, &count) || count != n) {
        rc = -EIO;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        uint64_t head, shared, suffix = 0;
        if (st_get_varint(raw, raw_n, &pos, &head) ||
            ((shared = head >> 1), (head & 1) && st_get_varint(raw, raw_n, &pos, &suffix)) ||
            (!(head & 1) && (shared > 16 || !(suffix = 16 - shared))) || shared > pkn ||
            suffix > raw_n - pos || shared + suffix > SEGMENT_KEY_CAP + 1 ||
            shared + suffix == 0 || ((head & 1) && shared + suffix == 16)) {
            rc = -EIO;
            goto out;
        }
        memcpy(pk + shared, raw + pos, suffix);
        pkn = shared + suffix;
        pos += suffix;
        if (kused + pkn + 40 > kcap) {
            size_t nc = (kused + pkn + 40) * 2;
            char *k = realloc(t->keys, nc);
            if (!k) {
                rc = -ENOMEM;
                goto out;
            }
            t->keys = k;
            kcap = nc;
        }
        t->koff[i] = kused;
        size_t kn = key_unpack(pk, pkn, t->keys + kused);
        if (kn == 0 || memchr(t->keys + kused, '\0', kn)) {
            rc = -EIO;
            goto out;
        }
        if (i && state_key_order(t->keys + t->koff[i - 1], kused - t->koff[i - 1] - 1, t->keys + kused,
                           kn) >= 0) {
            rc = -EIO; /* keys must increase */
            goto out;
        }
        kused += kn + 1;
    }
    t->koff[n] = kused;
    for (size_t i = 0; i < n; i++)
        if (st_get_varint(raw, raw_n, &pos, &t->len[i])) {
            rc = -EIO;
            goto out;
        }
    if (pos >= raw_n || raw[pos] > 1) {
        rc = -EIO;
        goto out;
    }
    if (raw[pos++] == 1) {
        if (raw_n - pos != n * 8 || !(t->hash = malloc((n ? n : 1) * sizeof *t->hash))) {
            rc = raw_n - pos != n * 8 ? -EIO : -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++, pos += 8) {
            uint64_t h = 0;
            for (int b = 7; b >= 0; b--)
                h = h << 8 | raw[pos + (size_t)b];
            t->hash[i] = h;
        }
    }
    if (pos != raw_n)
        rc = -EIO; /* trailing bytes */
out:
    free(raw);
    free(pk);
    if (rc)
        state_chunk_release(t);
    return rc;
}

/* Index of key in t, or where it would go (*found false). */
size_t state_chunk_find(const struct state_chunk *t, const char *k, size_t kn, bool *found)
{
    size_t lo = 0, hi = t->n;
    *found = false;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2, mn;
        const char *mk = state_chunk_key(t, mid, &mn);
        int c = state_key_order(mk, mn, k, kn);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

void state_chunk_enc_reset(struct state_chunk_enc *b)
{
    buf_reset(&b->keys);
    buf_reset(&b->lens);
    buf_reset(&b->hashes);
    buf_reset(&b->prev);
    b->any_hash = false;
    b->n = 0;
}

void state_chunk_enc_release(struct state_chunk_enc *b)
{
    buf_release(&b->keys);
    buf_release(&b->lens);
    buf_release(&b->hashes);
    buf_release(&b->prev);
    buf_release(&b->lo);
    free(b->pk);
    b->pk = NULL;
    ZSTD_freeCCtx(b->cctx);
    b->cctx = NULL;
}

int state_chunk_enc_add(struct state_chunk_enc *b, const char *key, size_t kn, uint64_t len,
                         uint64_t hash)
{
    if (!b->pk && !(b->pk = malloc(SEGMENT_KEY_CAP + 2)))
        return -ENOMEM;
    size_t pn = key_pack(key, kn, b->pk), shared = 0;
    while (shared < pn && shared < b->prev.len && (unsigned char)b->prev.data[shared] == b->pk[shared])
        shared++;
    unsigned char h[8];
    for (int i = 0; i < 8; i++)
        h[i] = (unsigned char)(hash >> (8 * i));
    b->any_hash |= hash != 0;
    /* a GUID's packed key is 16 bytes (any other key's is not): its suffix length is implied */
    int rc = st_varint(&b->keys, shared << 1 | (pn != 16));
    if (!rc && pn != 16)
        rc = st_varint(&b->keys, pn - shared);
    if (!rc)
        rc = buf_add(&b->keys, b->pk + shared, pn - shared);
    if (!rc)
        rc = st_varint(&b->lens, len);
    if (!rc)
        rc = buf_add(&b->hashes, h, 8);
    if (!rc) {
        buf_reset(&b->prev);
        rc = buf_add(&b->prev, b->pk, pn);
    }
    if (!rc)
        b->n++;
    return rc;
}

/* The compressed bytes of b into out. */
int state_chunk_enc_finish(struct state_chunk_enc *b, struct buf *out)
{
    if (!b->cctx && !(b->cctx = ZSTD_createCCtx()))
        return -ENOMEM;
    struct buf raw = BUF_INIT;
    int rc = st_varint(&raw, b->n);
    if (!rc)
        rc = buf_add(&raw, b->keys.data ? b->keys.data : "", b->keys.len);
    if (!rc)
        rc = buf_add(&raw, b->lens.data ? b->lens.data : "", b->lens.len);
    if (!rc)
        rc = buf_add(&raw, b->any_hash ? "\1" : "", 1);
    if (!rc && b->any_hash)
        rc = buf_add(&raw, b->hashes.data, b->hashes.len);
    if (!rc) {
        size_t bound = ZSTD_compressBound(raw.len);
        buf_reset(out);
        if (!(rc = buf_reserve(out, bound))) {
            size_t z = ZSTD_compressCCtx(b->cctx, out->data, bound, raw.data, raw.len,
                                         STATE_CHUNK_LEVEL);
            if (ZSTD_isError(z))
                rc = -EIO;
            else
                out->len = z;
        }
    }
    buf_release(&raw);
    return rc;
}

