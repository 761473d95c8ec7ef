/* restore_int: internals of the restore engine, shared by its files and reachable from
 * tests/unit/test_restore.c:
 *   restore.c          the run: request rules (validation, reads only), safety backup, the steps
 *   restore_compare.c  which tables, in which order; point and target compared per table
 *   restore_write.c    the writes the difference needs: upserts, deferred lookups, N:N, deletes
 *   restore_batch.c    parts queued into $batch requests, sent, checked, retried
 *   restore_files.c    the points' files by record and column; file columns uploaded
 *   restore_plan.c     pure: request parsing, record normalisation, write bodies, key maps,
 *                      outcome JSON
 *
 * Normalised content: a record's members that restore can write, as a compact JSON object with
 * keys sorted by bytes: the primary key, annotation keys ("x@..." and "@odata.etag") and fields
 * the service does not let us set (not valid for update) are left out; nulls are left out (absent
 * and null are the same); a lookup "_x_value" stays as the referenced id; a file column or a
 * note's documentbody becomes "sha256:<hex>", the blob id its bytes have in the repository
 * (repo_blob_id: their SHA-256, keyed in an encrypted repository). Two records with the same
 * normalised content need no write.
 * Threading: restore_plan.c's functions keep no shared state (thread-safe). A restore runs on
 * one thread, the caller's: struct rctx and everything it points to belong to that thread alone,
 * so none of their fields has a lock (the cancel flag it points at is atomic: any thread may set
 * it); progress callbacks are made from it. */
#ifndef DVSNAP_RESTORE_INT_H
#define DVSNAP_RESTORE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- the run (restore.c and the files it names) ---- */
#define BATCH_MAX 1000
#define RETRY_ROUNDS 3

enum part_kind { K_CREATE, K_UPDATE, K_DELETE, K_BIND, K_ASSOC, K_DISASSOC, K_FILEDEL };

struct rtab {
    const char *name;                 /* logical name (the point's) */
    const struct dv_table *def;       /* the target's definition; NULL when it lacks the table */
    const struct dv_many_to_many *mm; /* intersect tables: their relationship */
    const struct dv_table *mm1, *mm2; /* both sides of mm */
    struct restore_table_outcome *out;
    struct rmap map;                  /* key -> target digest and action */
    struct strset skipped;            /* fields we cannot write */
    struct strset keys[3];            /* dry-run: first keys to create, update, delete */
    bool active;                      /* compared and written */
    bool written;                     /* its upserts are all queued */
    bool has_files;                   /* has File/Image columns */
    uint64_t n_create, n_update, n_delete;
};

struct part {
    const char *method;
    char *path, *body;
    struct rtab *tab;
    enum part_kind kind;
    int status;
    char *error;
};

/* One restore; its thread's alone (see the note above). */
struct rctx {
    struct dv_client *dv;
    struct repo *repo;
    const struct config *cfg;
    const struct restore_request *req;
    struct point *point;              /* the source point */
    struct point *safety;             /* the target's safety point, or NULL */
    struct dv_env source, target;
    struct dv_table *defs;
    size_t n_defs;
    struct rtab *tabs;
    size_t n_tabs;
    size_t *order;                    /* indices of tabs, referenced tables first */
    size_t n_order;
    struct rmap files;                /* "table\x1fkey\x1fcolumn" -> point_file (source) */
    struct rmap tfiles;               /* same for the safety point */
    struct restore_outcome *out;
    void (*progress)(void *ctx, const struct restore_outcome *o);
    void *pctx;
    atomic_int *cancel;
    struct dverr *err;
    struct dv_stats stats0;
    struct part batch[BATCH_MAX];
    size_t n_batch, batch_bytes;
    struct part *retry;
    size_t n_retry, cap_retry;
    size_t binds_dropped;             /* parts sent again without a lookup, this round */
    int64_t last_progress;
    /* per-record context for callbacks */
    struct rtab *cur;
    const char *cur_key;
    size_t cur_key_len;
    struct rmap_entry *cur_entry;
    char *api_base;                   /* <api_url>/api/data/v9.2/ */
    bool rewrite_all;                 /* benchmark baseline: write every record (naive restore) */
    bool no_batch;                    /* the target answered $batch with 501: one request a part */
};

/* Whether the caller asked the restore to stop. */
static inline bool cancelled(const struct rctx *c)
{
    return c->cancel && atomic_load(c->cancel);
}

/* strdup of s ("" for NULL); aborts when out of memory. */
static inline char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

/* restore.c */
/* The outcome to the progress callback (at most every 250 ms unless force). */
void restore_report(struct rctx *c, bool force);
bool restore_table_in_point(const struct point *p, const char *name);

/* restore_compare.c */
/* c->tabs, c->out->tables and c->order (referenced tables first) for the requested tables;
 * tables that cannot be restored are inactive, with the reason as their note. */
int restore_plan_tables(struct rctx *c);
/* Point and target of one table into t->map (actions) and the counts; dry runs also fill
 * first_keys_json. */
int restore_compare_table(struct rctx *c, struct rtab *t);
/* c->out->skipped_fields_json: the fields of each table that could not be written. */
void restore_skipped_fields_json(struct rctx *c);

/* restore_write.c */
/* Queues every write of the difference: upserts (referenced tables first), the lookups deferred
 * to records created later, N:N pairs, deletes (referencing tables first). The caller flushes. */
int restore_write_changes(struct rctx *c);
/* The active, non-intersect table of that name, or NULL. */
struct rtab *restore_tab_by_name(struct rctx *c, const char *name);

/* restore_batch.c */
/* Queue one part (takes path and body); a full batch is sent first. */
int restore_queue(struct rctx *c, struct rtab *t, enum part_kind kind, const char *method,
                  char *path, char *body);
/* Send the queued parts. */
int restore_flush(struct rctx *c);
/* Send failed parts again (RETRY_ROUNDS, backing off); count what still fails per table. */
int restore_retry_failed(struct rctx *c);
void restore_part_release(struct part *p);

/* restore_files.c */
/* Index p's files by "table\x1fkey\x1fcolumn" into m (entries point at p's point_files). */
int restore_index_files(struct rmap *m, const struct point *p);
const struct point_file *restore_find_file(const struct rmap *m, const char *table,
                                           const char *key, size_t kl, const char *column);
/* The Web API describes file and image columns as Virtual: a column p holds file bytes for is
 * made a File column in c->defs. */
void restore_mark_file_columns(struct rctx *c, const struct point *p);
/* Upload the file columns of records created or updated. */
int restore_upload_files(struct rctx *c);

#endif
