/* segment: the repository's immutable record segments (DESIGN.md section 7) and their k-way merge.
 *
 * Object bytes:
 *   "DVSNSEG1"                                  8-byte header
 *   frame 0 .. frame N-1                        independent zstd frames (content checksum on), each
 *                                               ~1 MiB of entries: op (1 byte: b c u d), LEB128 key
 *                                               length, LEB128 line length, key bytes, line bytes
 *   index                                       "DVSI", u32 frames, u64 entries, then per frame:
 *                                               u64 offset, u32 compressed size, u32 content size,
 *                                               u32 entries, u32 first-key length, first-key bytes
 *   trailer (40 bytes)                          u64 index offset, u64 index length, u64 entries,
 *                                               u64 first 8 bytes of SHA-256(index), "DVSNSEGT"
 * A line that starts with byte 0x01 holds a note's attachment by reference (segment.c, "attachments
 * kept once"): 0x01, 64-hex blob id, u32 offset, u32 blob size, then the line without the base64,
 * which segment_merge_next puts back; every reader sees the exact line. Written to directory
 * stores only; read from any.
 * All integers little-endian. Entries are sorted by key bytes (memcmp, then shorter first), one
 * entry per key. The object id is the SHA-256 of the whole object; the name is
 * objects/<first 2 hex>/<id>.
 *
 * Reading distrusts every size: index and frame sizes are capped and cross-checked, zstd's window
 * is capped, keys must be strictly increasing, counts must match. Damage gives -EIO with a
 * message naming the segment, never a crash or wrong bytes.
 *
 * Threading: a segment, cursor or merge belongs to one thread at a time; each merge owns its
 * ZSTD_DCtx. The writer (declared in repo.h) belongs to one thread. */
#ifndef DVSNAP_SEGMENT_H
#define DVSNAP_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/objstore.h"
#include "backend/repo.h"
#include "backend/util.h"

#define SEGMENT_FRAME_TARGET (1u << 20)      /* uncompressed bytes per frame before it closes */
#define SEGMENT_MAX_KEY (64u << 10)
#define SEGMENT_MAX_LINE (64u << 20)
#define SEGMENT_MAX_FRAME (SEGMENT_FRAME_TARGET + SEGMENT_MAX_LINE + SEGMENT_MAX_KEY + 32)
#define SEGMENT_MAX_INDEX (256u << 20)

struct segment_entry {
    char op;                 /* enum segment_op */
    const char *key;         /* valid until the next call on the cursor/merge that returned it */
    size_t key_len;
    const char *line;
    size_t line_len;
};

/* "objects/ab/ab12..." for id into out. */
void segment_object_name(const char *id, char out[80]);
bool segment_id_ok(const char *id); /* 64 lowercase hex */

/* ---- reading ---- */
struct segment_merge;
/* Merge the chain ids[0..n) (oldest first) by key: for a key in several segments the newest entry
 * wins; unless keep_deletes, a winning delete drops the key. n may be 0 (an empty table). */
int segment_merge_open(struct objstore *store, char *const *ids, size_t n, bool keep_deletes,
                       struct segment_merge **out, struct dverr *err);
/* 1 with *e set (valid until the next call), 0 at the end, -EIO/-ENOENT/-ENOMEM with detail. */
int segment_merge_next(struct segment_merge *m, struct segment_entry *e, struct dverr *err);
void segment_merge_free(struct segment_merge *m); /* accepts NULL */

/* Read a whole segment: hash matches its id, trailer and index are sound, every frame decodes,
 * keys increase, counts match. 0, or -EIO (damaged) / -ENOENT (missing) with detail. */
int segment_verify(struct objstore *store, const char *id, uint64_t *entries, struct dverr *err);

/* ---- writing ---- */
/* A writer whose temp files go to tmp_dir (created when missing). */
int segment_writer_new_in(struct objstore *store, const char *tmp_dir,
                          struct segment_writer **out, struct dverr *err);

/* The changes-file line of one entry (repo.h changes_reader_open); a base entry renders as a
 * create. changes_line_size is its exact length. */
int changes_line_render(struct buf *out, char op, const char *key, size_t key_len,
                        const char *line, size_t line_len);
uint64_t changes_line_size(char op, const char *key, size_t key_len, size_t line_len);

#endif
