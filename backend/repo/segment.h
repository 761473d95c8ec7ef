/* segment: the repository's immutable record segments (docs/architecture.md section 3) and their k-way merge.
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
 * A line that starts with byte 0x01 holds a note's attachment by reference (segment_int.h,
 * "attachments kept once"): 0x01, 64-hex blob id, u32 offset, u32 blob size, then the line
 * without the base64, which segment_merge_next puts back; every reader sees the exact line.
 * Written to directory stores only; read from any.
 * All integers little-endian. Entries are sorted by key bytes (memcmp, then shorter first), one
 * entry per key. The object id is crypt_id of the bytes above (crypt.h: their SHA-256, or in an
 * encrypted repository their HMAC-SHA-256 under the naming key); the name is
 * objects/<first 2 hex>/<id>.
 *
 * In an encrypted repository (a crypt given) the same segment is stored sealed, frame by frame,
 * so a reader still fetches only the frames it needs (crypt.h: one key per object, from a salt):
 *   "DVSNSEGE"                                  8-byte header
 *   frame i sealed as part i                    its compressed bytes + a 16-byte tag; associated
 *                                               data "dvsnap-segment-frame-v1"
 *   index sealed as the last part (UINT64_MAX)  the index above + a tag; associated data
 *                                               "dvsnap-segment-index-v1", NUL, the id, then the
 *                                               sealed index's offset and length (u64 each)
 *   trailer (56 bytes)                          u64 sealed index offset, u64 its length, the
 *                                               salt (32), "DVSNSEGX"
 * Frame i of the plain layout at offset off is stored at off + 16 * i, csize + 16 bytes long.
 * The index binds the id, so a segment stored under another's name fails; a frame taken from
 * another segment fails (another salt, so another key) as does one moved within it (its part
 * number is in the nonce); the index lists every frame, so truncation fails. A plain segment
 * is never accepted where a sealed one is expected.
 *
 * Reading distrusts every size: index and frame sizes are capped and cross-checked, zstd's window
 * is capped, keys must be strictly increasing, counts must match. Damage gives -EIO with a
 * message naming the segment, never a crash or wrong bytes.
 *
 * Threading: a segment, cursor or merge belongs to one thread at a time; each merge owns its
 * ZSTD_DCtx. The writer belongs to one thread. */
#ifndef DVSNAP_SEGMENT_H
#define DVSNAP_SEGMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/objstore/objstore.h"
#include "backend/repo/crypt.h"
#include "backend/repo/point.h"
#include "backend/base/util.h"

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

/* The key order of segments (and of the capture state): bytes, then shorter first. */
int segment_key_cmp(const char *a, size_t a_len, const char *b, size_t b_len);
/* "objects/ab/ab12..." for id into out. */
void segment_object_name(const char *id, char out[80]);
bool segment_id_ok(const char *id); /* 64 lowercase hex */

/* ---- reading ---- */
struct segment_merge;
/* Merge the chain ids[0..n) (oldest first) by key: for a key in several segments the newest entry
 * wins; unless keep_deletes, a winning delete drops the key. n may be 0 (an empty table). crypt:
 * the repository's (segments are sealed), or NULL (plain); it must outlive the merge. */
int segment_merge_open(struct objstore *store, const struct crypt *crypt, char *const *ids,
                       size_t n, bool keep_deletes, struct segment_merge **out, struct dverr *err);
/* 1 with *e set (valid until the next call), 0 at the end, -EIO/-ENOENT/-ENOMEM with detail. */
int segment_merge_next(struct segment_merge *m, struct segment_entry *e, struct dverr *err);
void segment_merge_free(struct segment_merge *m); /* accepts NULL */

/* Read a whole segment: its id is crypt_id of its (plain) bytes, trailer and index are sound, every
 * frame opens and decodes, keys increase, counts match. 0, or -EIO (damaged) / -ENOENT (missing)
 * with detail. */
int segment_verify(struct objstore *store, const struct crypt *crypt, const char *id,
                   uint64_t *entries, struct dverr *err);

/* ---- writing ---- */
struct segment_writer;
/* Entries may come in any order (the writer sorts, spilling to temp files beyond a memory budget);
 * a key added twice keeps the last entry. Lines are canonical record lines (record.h); a delete has
 * an empty line. */
int segment_writer_add(struct segment_writer *w, enum segment_op op, const char *key,
                       size_t key_len, const char *line, size_t line_len, struct dverr *err);
uint64_t segment_writer_count(const struct segment_writer *w);
/* Write the segment object (durably) and return its id; frees w in every case. With no entries,
 * id is set to "" and nothing is written. */
int segment_writer_finish(struct segment_writer *w, char id[65], struct dverr *err);
void segment_writer_abort(struct segment_writer *w); /* accepts NULL */
/* What a finished segment holds, so a capture can fill struct point_table without re-reading. */
struct segment_stats {
    uint64_t entries, bases, creates, updates, deletes;
    uint64_t line_bytes;     /* sum of line lengths of non-delete entries */
    uint64_t table_bytes;    /* table-file size of the non-delete entries alone (for a base) */
    uint64_t changes_bytes;  /* exact size of the changes file rendered from this segment */
};
/* segment_writer_finish that also reports what was written (st may be NULL). */
int segment_writer_finish_stats(struct segment_writer *w, char id[65], struct segment_stats *st,
                                struct dverr *err);
/* Memory for buffered entries before a sorted run is spilled to a temp file (default
 * SEGMENT_WRITER_BUDGET). */
#define SEGMENT_WRITER_BUDGET ((size_t)64 << 20)
void segment_writer_set_budget(struct segment_writer *w, size_t bytes);
/* Entries will come in strictly increasing key order (an entry out of order gives -EINVAL): they
 * are written into frames as they come, with nothing buffered beyond the frame being filled. */
void segment_writer_set_ordered(struct segment_writer *w);
/* Keep attachments once (default off): a line holding a large canonical base64 "documentbody" is
 * stored as a reference to the blob of its bytes (put by the writer) and readers get the exact line
 * back. Only for lines whose blobs the point also lists as files (notes), since prune keeps the
 * blobs the points' files name, not those inside segments. Directory stores only (reading back
 * costs a blob read per such line: a request on object storage); elsewhere lines stay inline. */
void segment_writer_set_attachments(struct segment_writer *w, bool on);

/* A writer whose temp files go to tmp_dir (created when missing); crypt: seal the segment (and
 * the attachments it keeps once) with it, or NULL; it must outlive the writer. */
int segment_writer_new_in(struct objstore *store, const struct crypt *crypt, const char *tmp_dir,
                          struct segment_writer **out, struct dverr *err);

/* ---- sorting ---- */
/* An external sort of entries (segment_sort.c): added in any order, drained in key order with one
 * entry per key (the last added wins). Memory stays within the budget whatever the count: beyond
 * it, sorted runs go compressed to unlinked temp files in tmp_dir. Input that comes already in
 * key order is never merged. A sorter belongs to one thread at a time. */
struct segment_sorter;
int segment_sorter_new(const char *tmp_dir, size_t budget, struct segment_sorter **out,
                       struct dverr *err);
/* Sizes as segment entries (key 1..SEGMENT_MAX_KEY, line up to SEGMENT_MAX_LINE); op is kept
 * as given. */
int segment_sorter_add(struct segment_sorter *s, char op, const char *key, size_t key_len,
                       const char *line, size_t line_len, struct dverr *err);
uint64_t segment_sorter_count(const struct segment_sorter *s); /* entries added */
/* Every entry in key order to fn (e is valid during the call); fn's non-zero return stops and is
 * returned. Once per sorter. */
int segment_sorter_drain(struct segment_sorter *s,
                         int (*fn)(void *ctx, const struct segment_entry *e, struct dverr *err),
                         void *ctx, struct dverr *err);
/* Set the sorter aside until its drain: what it buffers goes to a run on disk and its buffers and
 * compression contexts are freed (it keeps its temp files' descriptors); more may be added after. */
int segment_sorter_park(struct segment_sorter *s, struct dverr *err);
/* The memory its buffer takes now (at most about the budget). */
size_t segment_sorter_memory(const struct segment_sorter *s);
void segment_sorter_free(struct segment_sorter *s); /* accepts NULL */

/* The changes-file line of one entry (repo.h changes_reader_open); a base entry renders as a
 * create. changes_line_size is its exact length. */
int changes_line_render(struct buf *out, char op, const char *key, size_t key_len,
                        const char *line, size_t line_len);
uint64_t changes_line_size(char op, const char *key, size_t key_len, size_t line_len);

#endif
