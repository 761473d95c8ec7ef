/* record: the canonical rendering of records and the table-file format (docs/architecture.md section 4).
 *
 * A record line is compact JSON: the primary-key member first, then every other member sorted by
 * the bytes of its key; nested objects are sorted the same way (arrays keep their order); numbers
 * are the exact text the service sent; strings are decoded and re-encoded by buf_add_json_string
 * (so "\u00e9" and "é" render the same). The same input always gives the same bytes.
 *
 * Table file: "[\n", then lines joined by ",\n", then "\n]\n"; an empty table is "[\n]\n".
 * Lines are sorted by the bytes of the primary key value (decoded string).
 * Thread-safe: no shared state. */
#ifndef DVSNAP_RECORD_H
#define DVSNAP_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "backend/base/json.h"
#include "backend/base/util.h"

#define TABLE_FILE_HEAD "[\n"
#define TABLE_FILE_SEP ",\n"
#define TABLE_FILE_TAIL "\n]\n"
#define TABLE_FILE_EMPTY "[\n]\n"

/* Append the canonical line of obj (a JSON_OBJECT) to out; primary_key may be NULL (then all
 * members are sorted). -EINVAL when obj is not an object. */
int record_render(const struct json_node *obj, const char *primary_key, struct buf *out);
/* Parse json then record_render; -EINVAL with detail in err on bad input. */
int record_canonicalize(const char *json, size_t len, const char *primary_key, struct buf *out,
                        struct dverr *err);
/* The primary key's decoded string value from a record object, or NULL when missing or not a
 * string. */
const char *record_key(const struct json_node *obj, const char *primary_key, size_t *key_len);
/* Exact size of a table file with n lines whose lengths add up to line_bytes. */
uint64_t table_file_size(uint64_t n, uint64_t line_bytes);

#endif
