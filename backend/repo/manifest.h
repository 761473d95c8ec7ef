/* manifest: restore-point manifests (points/<env>/<name>.json) <-> struct point (point.h), and the
 * backup.json a point shows in the mount.
 *
 * Manifest document (cJSON; counts are JSON numbers, exact below 2^53):
 *   {"format":1,"env":E,"name":N,"kind":"system"|"manual","label":L|null,
 *    "taken_at":unix seconds,"expires_at":unix seconds (0: never),
 *    "tables":[{"name","entity_set","primary_key","records","bytes","segments":[ids oldest first],
 *               "segment_bytes":[object sizes, as segments] (absent in older manifests, or
 *               when a size is unknown),
 *               "delta":id|null,"created","updated","deleted","changes_bytes","schema":id|null,
 *               "delta_link":s|null,"full_read_reason":s|null}],
 *    "files":[{"table","record_id","column","file_name","blob","size"}],
 *    "not_captured":"<JSON text>"|null,"environment":"<JSON text>"|null,"audit_table":s|null,
 *    "anomaly":"<JSON text>"|null (absent in older manifests)}
 * The embedded documents are stored as their exact text, so numbers survive byte for byte.
 * Parsing distrusts the input: wrong types, bad ids or names give -EIO with a message.
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
int manifest_render(const struct point *p, struct buf *out, struct dverr *err);
int manifest_parse(const char *json, size_t len, struct point **out, struct dverr *err);

#endif
