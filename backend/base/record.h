/* record: the canonical rendering of records and the table-file format (docs/architecture.md section 4).
 *
 * A record line is compact JSON: the primary-key member first, then every other member sorted by
 * the bytes of its key; nested objects are sorted the same way (arrays keep their order); numbers
 * are the exact text the service sent; strings are decoded and re-encoded by buf_add_json_string
 * (so "\u00e9" and "é" render the same). The same input always gives the same bytes.
 *
 * Table file: "[\n", then lines joined by ",\n", then "\n]\n"; an empty table is "[\n]\n".
 * Lines are sorted by the bytes of the primary key value (decoded string); a partitioned table's
 * (a Dataverse elastic table) by record_row_key: the id, then ':' and the partitionid.
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
/* The key of a row of a partitioned table (a Dataverse elastic table, whose rows are unique by id
 * and partitionid): <id>:<partitionid>; a row without a partition (partitionid absent, null or
 * empty, or the id itself, the service's default in some versions) keeps its id alone, so a table
 * without partitions keeps the keys it always had. ':' occurs neither in a GUID nor in a
 * partitionid (the service refuses it in alternate-key values), so the key splits back at its
 * first ':' and the rows of one id sort together, right after the id. partition_column NULL:
 * record_key. The result points into obj, or into scratch when a partition is added; NULL when
 * the primary key is missing (or scratch could not grow). */
#define RECORD_PARTITION_SEP ':'
const char *record_row_key(const struct json_node *obj, const char *primary_key,
                           const char *partition_column, struct buf *scratch, size_t *key_len);
/* The length of the id in a key record_row_key made (the key's length when it has no partition). */
size_t record_key_id_len(const char *key, size_t key_len);
/* Exact size of a table file with n lines whose lengths add up to line_bytes. */
uint64_t table_file_size(uint64_t n, uint64_t line_bytes);

#endif
