/* restore_int: internals of the restore engine shared by restore.c (I/O: validation, reads,
 * $batch writes) and restore_plan.c (pure: request parsing, record normalisation, write bodies,
 * key maps, outcome JSON), and reachable from tests/unit/test_restore.c.
 *
 * Normalised content: a record's members that restore can write, as a compact JSON object with
 * keys sorted by bytes: the primary key, annotation keys ("x@..." and "@odata.etag") and fields
 * the service does not let us set (not valid for update) are left out; nulls are left out (absent
 * and null are the same); a lookup "_x_value" stays as the referenced id; a file column or a
 * note's documentbody becomes "sha256:<hex>" of its bytes (a blob id is that hash already). Two
 * records with the same normalised content need no write. No shared state: thread-safe. */
#ifndef DVSNAP_RESTORE_INT_H
#define DVSNAP_RESTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/dataverse/dataverse.h"
#include "backend/base/json.h"
#include "backend/base/keymap.h"
#include "backend/engine/restore.h"
#include "backend/base/util.h"

/* ---- key map: open addressing, keys copied, 16-byte digest + action per key ---- */
enum rmap_action { ACT_NONE = 0, ACT_UNCHANGED, ACT_CREATE, ACT_UPDATE, ACT_DELETE };
enum { RMAP_IN_TARGET = 1, RMAP_IN_POINT = 2, RMAP_SENT = 4 };

struct rmap_entry {
    const char *key;         /* in the map's arena, NUL-terminated; NULL: empty slot */
    uint32_t key_len;
    uint8_t action;          /* enum rmap_action */
    uint8_t flags;           /* RMAP_* */
    uint8_t digest[16];      /* normalised content (target side) */
    void *ptr;               /* caller's pointer (not owned) */
};
struct rmap {
    /* a typed view of km's slot array for loops over the map (cap entries, empty ones have a NULL
     * key); rmap_put keeps it equal to km's after every insertion */
    struct rmap_entry *slots;
    size_t cap, n;
    struct keymap km;        /* the map (backend/keymap.h); keys live in its arena */
};
void rmap_init(struct rmap *m);
void rmap_release(struct rmap *m);
/* The entry for key, or NULL. */
struct rmap_entry *rmap_get(const struct rmap *m, const char *key, size_t len);
/* The entry for key, inserted (zeroed) when absent; *fresh says which. NULL on -ENOMEM. */
struct rmap_entry *rmap_put(struct rmap *m, const char *key, size_t len, bool *fresh);

/* ---- small string set (skipped field names) ---- */
struct strset {
    char **items;
    size_t n, cap;
};
int strset_add(struct strset *s, const char *str, size_t len); /* keeps insertion order, unique */
bool strset_has(const struct strset *s, const char *str, size_t len);
void strset_release(struct strset *s);

/* ---- table definition helpers ---- */
const struct dv_attribute *restore_attr(const struct dv_table *t, const char *name, size_t len);
/* The lookup for a record member "_x_value": by attribute x, choosing the relationship whose
 * target table is target_table when given (polymorphic lookups); NULL when none. */
const struct dv_lookup *restore_lookup(const struct dv_table *t, const char *attr, size_t len,
                                       const char *target_table);
/* true when the attribute's bytes live outside the record line (file columns, images, notes'
 * documentbody). */
bool restore_attr_is_file(const struct dv_table *t, const struct dv_attribute *a);

/* Bytes-digest source for file columns and documentbody: fill hex (65) with the SHA-256 of the
 * column's bytes for this record, or return 1 when the column is empty, <0 on error. value is
 * the member as found in the record (NULL when absent). */
typedef int (*restore_file_digest_fn)(void *ctx, const char *column, const struct json_node *value,
                                      char hex[65]);

/* Normalised content of rec (see the note above) into out; fields found in rec that cannot be
 * written are added to skipped (may be NULL). 0 or -errno. */
int restore_normalize(const struct dv_table *t, const struct json_node *rec,
                      restore_file_digest_fn file_digest, void *fctx, struct buf *out,
                      struct strset *skipped);
/* First 16 bytes of the SHA-256 of data. */
void restore_digest(const void *data, size_t len, uint8_t out[16]);

/* Canonical JSON of a value (objects sorted by key bytes, numbers as sent). */
int restore_canon_value(const struct json_node *v, struct buf *out);

/* How a lookup bind is handled when building a body: RB_INCLUDE writes it, RB_DEFER leaves it
 * for the second pass. */
enum { RB_INCLUDE = 0, RB_DEFER = 1 };
typedef int (*restore_bind_fn)(void *ctx, const struct dv_lookup *lk, const char *id,
                               size_t id_len);
/* Build the PATCH body for rec. create: fields valid for create, nulls left out; otherwise
 * fields valid for update, nulls written (to clear). Lookups become "<nav>@odata.bind":
 * "/<set>(<id>)" (or null); those bind() defers go to deferred as {"<nav>@odata.bind":..} body
 * (left empty when none). documentbody (when the point holds it as a blob) is filled by
 * body_blob(ctx, column, out_base64) returning 1 when it filled, 0 when not applicable.
 * File columns are never in the body (dv_file_upload writes them). */
int restore_body(const struct dv_table *t, const struct json_node *rec, bool create,
                 restore_bind_fn bind, void *bctx,
                 int (*body_blob)(void *ctx, const char *column, struct buf *b64), void *blobctx,
                 struct buf *out, struct buf *deferred);

/* Operation ids: "r" + UTC compact time + "-" + 4 hex chars, e.g. r20261122T010203Z-9f1c. */
void restore_operation_id(char out[32]);

#endif
