/* manifest: restore-point manifests (points/<env>/<name>.json) <-> struct point (point.h), and the
 * backup.json a point shows in the mount.
 *
 * A point's tables and files change little from one point to the next, so format 2 keeps them in
 * two shared documents stored as blobs (content-addressed: a point that changed nothing names the
 * same two objects as its parent, and costs only its manifest, a few kilobytes whatever the
 * org's size); the manifest holds what is the point's own. Loading a point reads three objects.
 *
 * Format 2 manifest (what captures write):
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
 * The files object: [{"table","record_id","column","file_name","blob","size"}].
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
/* Format 2 when p names its shared objects (tables_object and files_object), else format 1. */
int manifest_render(const struct point *p, struct buf *out, struct dverr *err);
/* The shared tables and files documents of p (format 2), each one line of JSON: the same bytes
 * for the same tables and files, so unchanged points share the objects. */
int manifest_render_shared(const struct point *p, struct buf *tables, struct buf *files,
                           struct dverr *err);
/* A manifest of either format. A format-2 point comes back with tables_object and files_object
 * set and only its changes in tables: manifest_parse_shared completes it. */
int manifest_parse(const char *json, size_t len, struct point **out, struct dverr *err);
/* Complete a format-2 point with its shared documents' bytes (-EIO when they are damaged or do not
 * match its changes). */
int manifest_parse_shared(struct point *p, const char *tables, size_t tables_len,
                          const char *files, size_t files_len, struct dverr *err);

#endif
