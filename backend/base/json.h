/* json: a strict RFC 8259 parser for data from the service and the repository.
 *
 * Unlike cJSON it keeps every number as the exact text that was sent (64-bit integers above 2^53
 * and decimals with many digits survive), records each value's raw span in the input, and enforces
 * limits (depth, string length, node count) so hostile input fails with -EINVAL/-E2BIG, never a
 * crash or unbounded memory. All memory lives in one arena owned by struct json_doc.
 * Not thread-safe per document; separate documents are independent. */
#ifndef DVSNAP_JSON_H
#define DVSNAP_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include "backend/base/util.h"

enum json_type { JSON_NULL, JSON_FALSE, JSON_TRUE, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

struct json_node {
    enum json_type type;
    const char *raw;          /* the value's exact text in the input (strings with quotes) */
    size_t raw_len;
    const char *str;          /* JSON_STRING: decoded UTF-8 (NUL-terminated, may hold NULs);
                                 JSON_NUMBER: the number text, NUL-terminated */
    size_t str_len;
    const char *key;          /* when the node is an object member: decoded key, else NULL */
    size_t key_len;
    struct json_node *child;  /* ARRAY/OBJECT: first element or member */
    struct json_node *next;   /* next sibling */
    size_t n_children;
};

struct json_limits {
    size_t max_depth;   /* default 64 */
    size_t max_string;  /* bytes of one decoded string; default 256 MiB */
    size_t max_nodes;   /* default 50,000,000 */
};

struct json_doc;

/* Parse text (len bytes, need not be NUL-terminated). lim may be NULL for the defaults.
 * 0 or -EINVAL (syntax, with position in err), -E2BIG (a limit), -ENOMEM. */
int json_parse(const char *text, size_t len, const struct json_limits *lim, struct json_doc **out,
               struct dverr *err);
const struct json_node *json_root(const struct json_doc *doc);
void json_doc_free(struct json_doc *doc); /* accepts NULL */

/* Member of an object by key (first match), or NULL. */
const struct json_node *json_get(const struct json_node *obj, const char *key);
/* The decoded string of member key when it is a string, else NULL. */
const char *json_get_str(const struct json_node *obj, const char *key);
/* Member key as bool (true/false), else dflt. */
bool json_get_bool(const struct json_node *obj, const char *key, bool dflt);

#endif
