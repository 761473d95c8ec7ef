/* restore_int: internals of the restore engine, shared by its files and reachable from
 * tests/unit/test_restore.c:
 *   restore.c          the run: request rules (validation, reads only), safety backup, the steps
 *   restore_compare.c  which tables, in which order; point and target compared per table
 *   restore_write.c    the writes the difference needs: upserts, deferred lookups, N:N, deletes
 *   restore_batch.c    parts queued into $batch requests, sent, checked, retried
 *   restore_files.c    the points' files by record and column; file and image columns uploaded
 *   restore_map.c      principals and reference data: the point's users, teams, business units
 *                      and currencies matched to the target's; the fallback owner
 *   restore_parties.c  activity parties: compared with each activity, written inside it
 *   restore_plan.c     pure: request parsing, record normalisation, write bodies, key maps,
 *                      outcome JSON
 *
 * Normalised content: a record's members that restore can write, as a compact JSON object with
 * keys sorted by bytes: the primary key, annotation keys ("x@..." and "@odata.etag") and fields
 * the service does not let us set (not valid for update) are left out; nulls are left out (absent
 * and null are the same); statecode and statuscode are left out (compared on their own: a state
 * is written by its own request); a lookup "_x_value" stays as the referenced id, on the point's
 * side as the target will hold it (principals mapped, a lookup without a match left out); a file
 * or image column or a note's documentbody becomes "sha256:<hex>", the blob id its bytes have in
 * the repository (repo_blob_id: their SHA-256, keyed in an encrypted repository). Two records
 * with the same normalised content and state need no write.
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
enum {
    RMAP_IN_TARGET = 1,
    RMAP_IN_POINT = 2,
    RMAP_SENT = 4,
    RMAP_FIELDS_DIFFER = 8,  /* normalised content differs (an update writes fields) */
    RMAP_STATE_DIFFERS = 16, /* statecode or statuscode differs */
    RMAP_TARGET_FILES = 32,  /* the target's record holds a file or image column */
    RMAP_TARGET_STATE = 64,  /* tstate and tstatus are the target's */
    RMAP_FILES_DIFFER = 128, /* the bytes of its file or image columns differ */
};

struct rmap_entry {
    const char *key;         /* in the map's arena, NUL-terminated; NULL: empty slot */
    uint32_t key_len;
    uint8_t action;          /* enum rmap_action */
    uint8_t flags;           /* RMAP_* */
    uint8_t digest[16];      /* normalised content (target side) */
    int32_t tstate, tstatus; /* the target's statecode and statuscode (RMAP_TARGET_STATE) */
    uint8_t files[8];        /* the target's file and image columns' bytes (a digest) */
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

/* A point's lookup value as the target is to hold it. attr is the lookup attribute (x of
 * "_x_value"), target_table the record's lookuplogicalname for it (NULL when absent). Returns
 * RL_KEEP (the id as it is), RL_MAPPED (mapped_id, and *mapped_table when the table changes: a
 * fallback owner), or RL_DROP (no match: the lookup is left out). */
enum { RL_KEEP = 0, RL_MAPPED = 1, RL_DROP = 2 };
typedef int (*restore_map_fn)(void *ctx, const struct dv_table *t, const char *attr,
                              size_t attr_len, const char *target_table, const char *id,
                              size_t id_len, const char **mapped_table, char mapped_id[40]);

/* How a lookup bind is handled when building a body: RB_INCLUDE writes it, RB_DEFER leaves it
 * for the second pass. */
enum { RB_INCLUDE = 0, RB_DEFER = 1 };
typedef int (*restore_bind_fn)(void *ctx, const struct dv_lookup *lk, const char *id,
                               size_t id_len);

/* What restore_normalize and restore_body ask their caller; any may be NULL. */
struct restore_hooks {
    void *ctx;
    restore_file_digest_fn file_digest; /* normalise: bytes of file columns (NULL: left out) */
    restore_map_fn map;                 /* the point's lookups as the target is to hold them */
    restore_bind_fn bind;               /* body: include a bind now or defer it */
    /* body: documentbody held as a blob into b64; 1 when filled, 0 when not applicable */
    int (*body_blob)(void *ctx, const char *column, struct buf *b64);
};

/* Normalised content of rec (see the note above) into out; fields found in rec that cannot be
 * written are added to skipped (may be NULL). 0 or -errno. */
int restore_normalize(const struct dv_table *t, const struct json_node *rec,
                      const struct restore_hooks *h, struct buf *out, struct strset *skipped);
/* First 16 bytes of the SHA-256 of data. */
void restore_digest(const void *data, size_t len, uint8_t out[16]);
/* sum += add, as 128-bit little-endian numbers: an order-free digest of a set. */
void restore_digest_add(uint8_t sum[16], const uint8_t add[16]);

/* Canonical JSON of a value (objects sorted by key bytes, numbers as sent). */
int restore_canon_value(const struct json_node *v, struct buf *out);

/* The statecode and statuscode of rec (-1 when absent). */
void restore_state_of(const struct json_node *rec, int32_t *state, int32_t *status);

/* Build the PATCH body for rec. create: fields valid for create, nulls left out, never
 * statecode, statuscode only when statecode is 0 (the active state: any other state is written
 * afterwards), overriddencreatedon from createdon (the point's own overriddencreatedon left out);
 * otherwise fields valid for update, nulls written (to clear), statecode and statuscode only
 * when state_in_body. Lookups go through h->map and become "<nav>@odata.bind": "/<set>(<id>)"
 * (or null), the relationship chosen by the record's lookuplogicalname (owners by their concrete
 * type, polymorphic lookups by their target's navigation property); those h->bind defers go to
 * deferred as a {"<nav>@odata.bind":..} body (left empty when none). documentbody (when the
 * point holds it as a blob) is filled by h->body_blob. File and image columns are never in the
 * body (dv_file_upload writes them). */
int restore_body(const struct dv_table *t, const struct json_node *rec, bool create,
                 bool state_in_body, const struct restore_hooks *h, struct buf *out,
                 struct buf *deferred);

/* The key a record has in its table's map: *key (as stored, *key_len bytes) is left as it is, or
 * for an elastic table replaced by the key made from the record (record_row_key: its id and
 * partitionid), so rows sharing an id in two partitions are two keys on both sides, and a point
 * captured when such rows were keyed by id alone compares the same way. The new key points into
 * rec or into scratch. 0; -ENOENT when an elastic row has no id (no side indexes it: the caller
 * passes it by); -ENOMEM when scratch could not grow (the caller fails: a row passed by for want
 * of memory would make the plan wrong). */
int restore_record_key(const struct dv_table *t, const struct json_node *rec, struct buf *scratch,
                       const char **key, size_t *key_len);

/* Operation ids: "r" + UTC compact time + "-" + 4 hex chars, e.g. r20261122T010203Z-9f1c. */
void restore_operation_id(char out[32]);

/* ---- the run (restore.c and the files it names) ---- */
#define BATCH_MAX 1000
#define RETRY_ROUNDS 3

/* K_STATE: a state write (PATCH statecode+statuscode, or CloseIncident / WinOpportunity /
 * LoseOpportunity); K_REOPEN: a closed record set active to be updated. */
enum part_kind {
    K_CREATE, K_UPDATE, K_DELETE, K_BIND, K_ASSOC, K_DISASSOC, K_FILEDEL, K_STATE, K_REOPEN
};

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
    bool has_state;                   /* has statecode */
    bool closable;                    /* a closed row refuses field updates until reopened
                                         (incident, opportunity, activities) */
    int32_t open_status;              /* a statuscode of state 0 seen in the point (reopen) */
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

/* ---- principals (restore_map.c) ---- */
enum principal { PR_USER, PR_TEAM, PR_BU, PR_CURRENCY, PR_N };
/* How a principal of the point was matched: the names the outcome uses are restore_rule_name. */
enum restore_rule {
    RULE_UNMAPPED, RULE_MAP_FILE, RULE_SAME_ID, RULE_ENTRA_ID, RULE_DOMAIN_NAME, RULE_ROOT_BU,
    RULE_NAME, RULE_DEFAULT_TEAM, RULE_ISO_CODE, RULE_N
};
const char *restore_rule_name(enum restore_rule r);
/* One principal row, as matching needs it (strings owned): users: key1 Entra object id, key2
 * domain name; business units: key1 name, ref the parent (empty: the root); teams: key1 name,
 * ref the business unit, flag isdefault; currencies: key1 ISO code. name is for people. */
struct prow {
    char id[40], ref[40];
    char *key1, *key2, *name;
    bool flag;
};
struct pdecision {
    char source[40], target[40];     /* lower-case GUIDs; target "" when unmapped */
    char *name;                      /* how the point names it (may be NULL) */
    uint8_t rule;                    /* enum restore_rule */
    uint64_t rows_fallback;          /* rows of the point it owns: given the fallback owner */
    uint64_t lookups_dropped;        /* rows of the point with another lookup to it: left out */
};
struct pmap {
    const char *table;               /* systemuser, team, businessunit, transactioncurrency */
    struct prow *src, *dst;          /* the point's rows and the target's */
    size_t n_src, n_dst;
    struct rmap dst_ids;             /* lower-case target ids */
    struct rmap decided;             /* lower-case source id -> decision (ptr: index + 1) */
    struct pdecision *d;
    size_t n_d, cap_d;
    uint64_t by_rule[RULE_N];
};
/* A pair of the map file: "<table> <source id> <target id>". */
struct map_pair {
    enum principal table;
    char source[40], target[40];
    int line;
};
/* src[0..n) lower-cased into dst (cap bytes, NUL-terminated, cut at cap - 1): ids compare
 * case-insensitively. Returns the length copied. */
size_t restore_lower_copy(char *dst, size_t cap, const char *src, size_t n);
/* The principal table of that logical name, or -1. */
int restore_principal_of(const char *table);
/* Parse a map file's text: one pair a line, '#' comments, blank lines. -EINVAL naming the line. */
int restore_map_file_parse(const char *text, size_t len, struct map_pair **pairs, size_t *n,
                           struct dverr *err);
/* Parse "systemuser:<id>" or "team:<id>" (lower-cases the id). -EINVAL when malformed. */
int restore_fallback_parse(const char *s, char table[16], char id[40]);
/* Decide every source row of pm (the four tables; business units before teams): the map file's
 * pairs first, then the same id in the target, then the table's rules. A pair naming an id the
 * target lacks is -EINVAL. Pure (tests call it with canned rows). */
int restore_map_decide(struct pmap pm[PR_N], const struct map_pair *pairs, size_t n_pairs,
                       struct dverr *err);
/* The decision for a source id of table p, made now when the point's table did not list it (the
 * same id in the target, else unmapped). NULL when out of memory. */
struct pdecision *restore_map_find(struct pmap *pm, enum principal p, const char *id, size_t len);
/* The four tables, empty. */
void restore_pmap_init(struct pmap pm[PR_N]);
/* One table's rows and decisions freed (empty afterwards; release twice is harmless). */
void restore_pmap_release(struct pmap *pm);

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
    char *api_base;                   /* <api_url>/api/data/v9.2/ */
    bool rewrite_all;                 /* benchmark baseline: write every record (naive restore) */
    bool no_batch;                    /* the target answered $batch with 501: one request a part */
    /* principals and business logic */
    struct pmap pm[PR_N];
    char caller_id[40];               /* WhoAmI's UserId in the target */
    char fallback_table[16], fallback_id[40]; /* who owns rows whose owner has no match */
    const char *const *write_headers; /* the bypass headers of every write, NULL when logic runs */
    bool counting;                    /* comparing the point: count fallbacks and dropped lookups */
    /* activity parties (restore_parties.c) */
    bool have_parties;                /* the point has activityparty and the target its parties */
    struct rmap parties_point, parties_target; /* activity id -> sum of party digests */
    struct rmap party_bodies;         /* activity id -> ptr: JSON array of parties (malloc'd) */
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
/* A part (create, update, deferred bind) refused because of one of its binds (a record the
 * target lacks: 404 "... With Id = X ..."; a bind it does not take: another 4xx naming the bind's
 * id or navigation property): drop the @odata.bind members the refusal names, inside an
 * activity's parties too (a party keeps its addressused; one naming nobody goes), so the record
 * is written without that lookup instead of failing; counted in the table's lookups_dropped,
 * the first named in its lookup_note. Returns how many members were dropped. */
size_t restore_drop_refused_binds(struct part *p, const char *response);
/* Send failed parts again (RETRY_ROUNDS, backing off); count what still fails per table. */
int restore_retry_failed(struct rctx *c);
void restore_part_release(struct part *p);

/* restore_map.c */
/* Read the principals of the point and the target, the map file and the fallback owner, and
 * decide; fills c->pm, c->fallback_*, and the outcome's fallback_owner. */
int restore_map_principals(struct rctx *c);
/* restore_map_fn over c->pm (ctx: the rctx): principal lookups mapped, an owner without a match
 * given the fallback owner, other lookups without a match dropped; counted while c->counting. */
int restore_map_lookup(void *ctx, const struct dv_table *t, const char *attr, size_t attr_len,
                       const char *target_table, const char *id, size_t id_len,
                       const char **mapped_table, char mapped_id[40]);
/* c->out->mapping_json and unmapped_json. */
void restore_map_outcome(struct rctx *c);
/* The target's definition of a table, or NULL (table may be NULL). */
const struct dv_table *restore_target_def(const struct rctx *c, const char *table);
/* The entity set of a table of the target, or NULL. */
const char *restore_entity_set(const struct rctx *c, const char *table);

/* restore_parties.c */
/* The navigation property of an activity's parties: "<activity>_activity_parties". */
void restore_parties_nav(const char *activity, char *out, size_t n);
/* Digests of both sides' parties, by activity (before activity tables are compared). */
int restore_parties_load(struct rctx *c);
/* Mix the parties of activity key (point or target side) into the record's digest. */
void restore_parties_mix(const struct rctx *c, bool target_side, const char *key, size_t kl,
                         uint8_t digest[16]);
/* The parties of activities this restore writes, as body arrays in c->party_bodies. */
int restore_parties_bodies(struct rctx *c);
/* One activityparty row of the point as a party of its activity's body, into out (an object,
 * or nothing when the party is left out): participationtypemask, the party bound through
 * partyid_<type>@odata.bind (mapped by map; a party without a match keeps its addressused
 * only, and *unmapped is set), addressused. Pure. */
int restore_party_json(const struct json_node *row, restore_map_fn map, void *mctx,
                       const char *(*entity_set)(const void *ctx, const char *table),
                       const void *sctx, struct buf *out, bool *unmapped);

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
