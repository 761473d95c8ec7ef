/* segment_int: internals of the segment format (segment.h) shared by segment.c (ids, changes
 * lines, the writer) and segment_read.c (reader, merge, verify): the header and trailer magic,
 * the little-endian and LEB128 encoders, the key order and the format of a line whose attachment
 * is kept once. Not part of the contract; only these two files include it.
 * Threading: constants and pure functions only. */
#ifndef DVSNAP_SEGMENT_INT_H
#define DVSNAP_SEGMENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "backend/repo/segment.h"

#define SEG_MAGIC "DVSNSEG1"
#define SEG_TRAILER_MAGIC "DVSNSEGT"
#define SEG_TRAILER_LEN 40
#define SEG_HEADER_LEN 8
/* sealed segments (segment.h) */
#define SEG_SEALED_MAGIC "DVSNSEGE"
#define SEG_SEALED_TRAILER_MAGIC "DVSNSEGX"
#define SEG_SEALED_TRAILER_LEN (16 + CRYPT_SALT_BYTES + 8)
#define SEG_INDEX_PART UINT64_MAX
#define SEG_FRAME_AD "dvsnap-segment-frame-v1"
#define SEG_INDEX_AD "dvsnap-segment-index-v1"
#define SEG_INDEX_AD_LEN (sizeof SEG_INDEX_AD + 64 + 16)

/* ---------- small encoders ---------- */

static inline void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static inline size_t put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

/* 0 on success with *pos advanced; -1 when malformed or past end. */
static inline int get_varint(const unsigned char *p, size_t end, size_t *pos, uint64_t *v)
{
    uint64_t r = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= end)
            return -1;
        unsigned char c = p[(*pos)++];
        r |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -1;
}

/* The key order: bytes (memcmp), then shorter first. */
static inline int key_cmp(const char *a, size_t al, const char *b, size_t bl)
{
    int c = memcmp(a, b, al < bl ? al : bl);
    if (c)
        return c;
    return al < bl ? -1 : al > bl;
}

static inline bool op_ok(char op)
{
    return op == SEG_BASE || op == SEG_CREATE || op == SEG_UPDATE || op == SEG_DELETE;
}

/* The associated data of a sealed segment's index: SEG_INDEX_AD, NUL, id, offset, length. */
static inline void seg_index_ad(unsigned char ad[SEG_INDEX_AD_LEN], const char *id, uint64_t off,
                                uint64_t len)
{
    memcpy(ad, SEG_INDEX_AD, sizeof SEG_INDEX_AD);
    memcpy(ad + sizeof SEG_INDEX_AD, id, 64);
    put_u64(ad + sizeof SEG_INDEX_AD + 64, off);
    put_u64(ad + sizeof SEG_INDEX_AD + 72, len);
}

/* A plain segment's trailer (segment.h) for its index (ilen bytes at ioff) and entry count: the
 * writer writes it, and verify rebuilds it to recompute a sealed segment's id (segment.c). */
void seg_trailer_make(unsigned char tr[SEG_TRAILER_LEN], uint64_t ioff, const void *index,
                      size_t ilen, uint64_t entries);

/* ---------- attachments kept once ----------
 *
 * A line holding an attachment ("documentbody":"<base64>" of at least ATTACH_MIN characters, in
 * canonical padded base64) is stored with the base64 cut out and a reference to the blob of its
 * bytes in front:
 *   0x01, the blob's 64-hex id, u32 offset (where the base64 goes back), u32 size of the blob,
 *   the rest of the line
 * (so the line's real length, rest + base64 length of size, is known without the blob).
 * The writer puts the blob (content-addressed: usually the capture stored it already); the merge
 * puts the base64 back, so every reader (cat, the mount, changes/, restore, compaction) sees the
 * exact line. Record lines are JSON objects and always start with '{', so 0x01 cannot be a line. */

#define ATTACH_MARK '\x01'
#define ATTACH_HEAD (1 + 64 + 4 + 4)
#define ATTACH_MIN 256
static inline size_t b64_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

#endif
