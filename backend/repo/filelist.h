/* filelist: a point's file list as content-addressed chunks (manifest format 3, manifest.h).
 *
 * A big org has hundreds of thousands of files, and a point where one note changed must not store
 * the whole list again. The list (sorted as captures sort it: table, record id, column, name,
 * blob) is cut into chunks at content-defined places: after the last file of a record whose
 * FNV-1a 64 hash of "table\0record_id" is 0 modulo FILELIST_CHUNK_AVG (so about that many files a
 * chunk), or, for a run without such a record, at the first record change after
 * FILELIST_CHUNK_MAX files. A cut depends only on the records near it, so a changed, added or
 * removed file changes its own chunk (or two, when it moves a cut) and every other chunk keeps its
 * bytes and its blob id: the point shares it with its parent by reference. Each chunk is a JSON
 * array of file entries, format 2's files document in small ({"table","record_id","column",
 * "file_name","blob","size"}); the index names the chunks in order:
 *   {"files":total,"chunks":[{"id":blob id,"files":count},...]}
 * Limits: a record with more than FILELIST_CHUNK_MAX files is cut inside it (chunks stay
 * bounded). Thread-safe: no shared state. */
#ifndef DVSNAP_FILELIST_H
#define DVSNAP_FILELIST_H

#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"
#include "backend/repo/point.h"

#define FILELIST_CHUNK_AVG 512u
#define FILELIST_CHUNK_MAX 4096u

/* The end (exclusive) of the chunk of files[0..n) that starts at from (< n). */
size_t filelist_chunk_end(const struct point_file *files, size_t n, size_t from);
/* A streaming writer: files added one at a time, in list order, are cut into the same chunks as
 * filelist_chunk_end cuts the whole list; each chunk goes to emit (files valid during the call;
 * a non-zero return stops the writer and is returned) as soon as its end is known (the file after
 * it arrived), the last at filelist_writer_finish. Memory: one chunk's files. 0 or -ENOMEM. */
struct filelist_writer;
int filelist_writer_new(int (*emit)(void *ctx, const struct point_file *files, size_t n),
                        void *ctx, struct filelist_writer **out);
int filelist_writer_add(struct filelist_writer *w, const struct point_file *f);
int filelist_writer_finish(struct filelist_writer *w);
void filelist_writer_free(struct filelist_writer *w); /* accepts NULL */
/* The files gathered since the last chunk (*files valid until the next add), and how many. */
size_t filelist_writer_pending(const struct filelist_writer *w, const struct point_file **files);
/* End the chunk here: only for a caller that knows the list is cut after the pending files
 * whatever follows (the same chunk, ended by a cut, in an earlier list with the same next file or
 * one of another record: repo_capture_files_carry). */
int filelist_writer_cut(struct filelist_writer *w);
/* The list's order: table, record id, column (none as ""), file name, blob (strcmp each). */
int filelist_cmp(const struct point_file *x, const struct point_file *y);
/* files[0..n) as one chunk document (one line of JSON, appended to out); 0 or -ENOMEM. */
int filelist_render_chunk(const struct point_file *files, size_t n, struct buf *out);
/* The index of n chunks (ids[k] a blob id, counts[k] its files) appended to out; 0 or -ENOMEM. */
int filelist_render_index(char (*ids)[65], const size_t *counts, size_t n, struct buf *out);
/* Parse an index: *ids (n blob ids, each malloc'd, array malloc'd) and *counts (malloc'd), the
 * counts summing to *total. -EIO with a message when it is damaged. */
int filelist_parse_index(const char *json, size_t len, char ***ids, size_t **counts, size_t *n,
                         size_t *total, struct dverr *err);

#endif
