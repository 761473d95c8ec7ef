/* manifest: restore-point manifests (points/<env>/<name>.json) <-> struct point (point.h), and the
 * backup.json a point shows in the mount.
 *
 * A point's tables and files change little from one point to the next, so they are kept in
 * shared objects stored as blobs (content-addressed: a point that changed nothing names the same
 * objects as its parent, and costs only its manifest, a few kilobytes whatever the org's size);
 * the manifest holds what is the point's own. Format 3 (what captures write) keeps the file list
 * in chunks named by an index (filelist.h), so a point where a few files changed stores only
 * their chunks and a new index: loading a point reads the manifest, the tables document, the
 * index and each chunk (about one per FILELIST_CHUNK_AVG files).
 *
 * Format 3 manifest: format 2's fields with "files_index":blob id (the file list's index) in
 * place of "files_object".
 * Format 2 manifest (captures before format 3; still read):
 *   {"format":2,"env":E,"name":N,"kind":"system"|"manual","label":L|null,
 *    "taken_at":unix seconds,"expires_at":unix seconds (0: never),
 *    "tables_object":blob id,"files_object":blob id,
 *    "changes":[{"name","delta":id|null,"created","updated","deleted","changes_bytes"}] (only
 *               the tables this point changed; the others have no delta, 0 counts and an empty
 *               changes file, MANIFEST_EMPTY_CHANGES bytes),
 *    "not_captured":"<JSON text>"|null,"environment":"<JSON text>"|null,"audit_table":s|null,
 *    "anomaly":"<JSON text>"|null (absent in older manifests),
 *    "definitions":blob id,"metadata_stamp":s (both absent in older manifests and when the
 *    capture had no version of the definitions: engine/capture_meta.c)}
 * The tables object: [{"name","entity_set","primary_key","records","bytes",
 *    "segments":[ids oldest first],"segment_bytes":[object sizes, as segments] (absent when a
 *    size is unknown),"schema":id|null,"delta_link":s|null,"full_read_reason":s|null}], by name.
 * The files object (format 2; format 3's chunks hold runs of it):
 *    [{"table","record_id","column","file_name","blob","size"}].
 * Format 1 (older manifests, still read; and point_dup's copy): the same fields inline,
 *    "tables":[{every table field above and every change field}],"files":[...], no
 *    tables_object, files_object or changes.
 * Counts are JSON numbers, exact below 2^53. The embedded documents are stored as their exact
 * text, so numbers survive byte for byte. Parsing distrusts the input: wrong types, bad ids or
 * names give -EIO with a message.
 * Thread-safe: no shared state. */
#ifndef DVSNAP_MANIFEST_H
#define DVSNAP_MANIFEST_H

#include <stddef.h>

#include "backend/repo/point.h"
#include "backend/base/util.h"

#define MANIFEST_MAX_BYTES (256u << 20)

/* "points/<env>/<name>.json"; -EINVAL when env or name cannot be part of an object name. */
int manifest_object_name(const char *env, const char *name, char *out, size_t n);
/* true when env is usable as an environment name in the repository ([A-Za-z0-9._-], not starting
 * with '.', 1..200 bytes). */
bool manifest_env_name_ok(const char *env);
/* The size of an empty changes file ("[\n]\n"): an untouched table's changes_bytes. */
#define MANIFEST_EMPTY_CHANGES 4
/* Format 3 when p names its shared objects (tables_object and files_object) and files_chunked,
 * format 2 when it names them without files_chunked (a format-2 point as it was read), else
 * format 1. */
int manifest_render(const struct point *p, struct buf *out, struct dverr *err);
/* The shared tables document of p, one line of JSON: the same bytes for the same tables, so
 * unchanged points share the object (the file list's chunks: filelist.h). */
int manifest_render_tables(const struct point *p, struct buf *tables, struct dverr *err);
/* A manifest of any format. A format-2 or 3 point comes back with tables_object and files_object
 * set and only its changes in tables: manifest_parse_shared completes it. */
int manifest_parse(const char *json, size_t len, struct point **out, struct dverr *err);
/* Complete a format-2 or 3 point with its shared documents' bytes (-EIO when they are damaged or do
 * not match its changes). Format 3: files is not read (NULL is fine); the file list comes from
 * its chunks (manifest_parse_files_chunk). */
int manifest_parse_shared(struct point *p, const char *tables, size_t tables_len,
                          const char *files, size_t files_len, struct dverr *err);
/* Append one chunk of a format-3 file list (filelist.h) to p->files, which has room for exactly
 * room more files: the count its index gives the chunk (-EIO when the chunk has another count or
 * a damaged entry). */
int manifest_parse_files_chunk(struct point *p, size_t room, const char *json, size_t len,
                               struct dverr *err);

#endif
