/* webapi_int: what the files of each org's Web API share (the simulator's other interfaces are in
 * dvsim.h). Read side:
 *   webapi.c         routing, Prefer, projections, collection and record GETs, $count
 *   webapi_query.c   query options: $filter (parse, evaluate), $orderby, the $skiptoken cookie
 *   webapi_delta.c   change tracking: org versions, delta tokens, $deltatoken pages
 *   webapi_meta.c    EntityDefinitions (metadata), $select on them
 *   webapi_metachanges.c  RetrieveMetadataChanges, and the definition changes /_sim/metadata makes
 * Write side:
 *   webwrite.c            single-record POST/PATCH (upsert)/DELETE, $ref, write sessions, routing
 *   webwrite_rules.c      what every write must pass and what it adds: body validation (columns,
 *                         option ranges, @odata.bind), state rules, defaults of new records, derived
 *                         columns (owning*, exchange rate, *_base), version stamps, audits
 *   webwrite_privileges.c which tables a client may write, the business-logic headers and the
 *                         bypass privilege, the application user's privileges
 *   webwrite_activity.c   activities: their activitypointer rows and parties, and the simulated
 *                         business logic (the plug-in's follow-up task, flow runs)
 *   webwrite_actions.c    CloseIncident, WinOpportunity, LoseOpportunity, WhoAmI,
 *                         RetrieveUserPrivileges
 *   webwrite_files.c      file and image columns and note bodies: $value GET with Range (an image's
 *                         thumbnail, or ?size=full), uploads (single and chunked sessions), DELETE
 *   webwrite_batch.c      $batch (change sets, Content-ID references, the parts' log entries)
 * Threading: each request runs on its connection's thread and owns its struct req; writers hold
 * d->write_lock for their whole SQLite transaction (struct wsess); d->rng is read under d->lock.
 * Nothing here keeps state of its own but the definition changes (d->meta_*, under d->lock). */
#ifndef DVSIM_WEBAPI_INT_H
#define DVSIM_WEBAPI_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/dvsim/dvsim.h"

#define QUERY_ERR "0x80060888"

/* ---- webapi.c ---- */
/* "<base>/org/<env>/api/data/v9.2" of the request's org. */
void webapi_base(struct req *r, struct buf *out);
/* The partition a request names: ?partitionId= (also spelled partitionid; an alternate key
 * segment (<pk>=<id>,partitionid='<p>') arrives as ?partitionId=), or NULL. */
const char *webapi_partition_arg(struct req *r);
/* 404 for a row that is not there (in the partition named, NULL: none, for an elastic table). */
void webapi_row_not_found(struct req *r, const struct table_def *t, const char *key,
                          const char *partition);

/* ---- webapi_query.c ---- */
/* A parsed $filter; NULL when parsing failed (err says why, as the service would). */
struct fnode;
struct fnode *webapi_filter_parse(const struct table_def *t, const char *s, char *err,
                                  size_t errn);
/* Whether the record's members m (nm of them) match; tmp is scratch. */
bool webapi_filter_eval(const struct fnode *n, const struct lmember *m, int nm, struct buf *tmp);
void webapi_filter_free(struct fnode *n);
/* The bounds a filter puts on the primary key pk, for the store to seek with: the first
 * `pk ge|gt <guid>` and `pk lt|le <guid>` among the conjuncts of the filter's top-level and-chain
 * (lowercase; the filter itself is still evaluated on every row). lo/hi stay "" when absent. */
void webapi_filter_key_bounds(const struct fnode *n, const char *pk, char lo[37], bool *lo_incl,
                              char hi[37], bool *hi_incl);

struct order_key {
    char member[96];
    bool desc, numeric;
};
struct sorted_row {
    char *id, *line;
    size_t len;
    const char *val[4];
    size_t vlen[4];
};
struct order {
    struct order_key k[4];
    int n;
};
/* $orderby into o (at most 4 keys); -EINVAL with err filled. */
int webapi_orderby_parse(const struct table_def *t, const char *s, struct order *o, char *err,
                         size_t errn);
/* qsort_r comparator of sorted_rows; ctx is the struct order (then the key breaks ties). */
int webapi_row_cmp(const void *x, const void *y, void *ctx);

/* ---- skiptoken cookie ---- */
struct cookie {
    int page;
    char last[64];
    int64_t ver;      /* tracking: snapshot version */
    int64_t after;    /* delta: last version returned in this phase */
    char phase;       /* 'u' upserts, 'd' deletes, 0 full read */
    int64_t off;      /* $orderby offset */
    bool tracking;
};
int webapi_cookie_parse(const char *s, struct cookie *c);
void webapi_cookie_render(const struct cookie *c, struct buf *out);

/* ---- webapi_delta.c ---- */
/* The org's current version (0 when unknown). */
int64_t webapi_org_version(sqlite3 *db, int env);
/* A delta token for version ver, URL-encoded, into out. */
void webapi_delta_token_render(int64_t ver, struct buf *out);
/* -EINVAL malformed, -ESTALE expired. */
int webapi_delta_token_parse(struct dvsim *d, const char *s, int64_t *ver);
/* One page of a $deltatoken read appended to o (see webapi_delta.c). */
void webapi_delta_page(struct req *r, const struct table_def *t, sqlite3 *db, int tid,
                       const struct projection *proj, const struct cookie *ck, int64_t since,
                       int64_t snapshot, int page, struct buf *o, int *emitted, bool *more,
                       struct cookie *next);

/* ---- webapi_meta.c ---- */
/* GET EntityDefinitions...; rest is what follows "EntityDefinitions". */
void webapi_entity_definitions(struct req *r, const char *rest);
/* Expanded collections of a definition. */
enum { EX_ATTR = 1, EX_M2O = 2, EX_O2M = 4, EX_N2N = 8 };
/* The properties asked for (comma-separated names; NULL: all): of the definition, and of the
 * entries of each expanded collection (sub, by bit: Attributes, ManyToOne, OneToMany,
 * ManyToMany). */
struct meta_select {
    const char *entity;
    const char *sub[4];
};
/* Definition of t with the collections of expand (EX_*), narrowed to sel (NULL: whole). */
struct cJSON *webapi_entity_json(struct dvsim *d, const struct table_def *t, int expand,
                                 const struct meta_select *sel);
/* The MetadataId of the definition (a, b) names: a table (b NULL), a column, "rel"/"n2n". */
void webapi_metadata_id(const char *a, const char *b, char out[37]);
/* The i-th table EntityDefinitions lists (the eighteen, the generated ones of --shape real, then
 * the hostile ones with --hostile-tables; deleted ones included), NULL past the last. */
const struct table_def *webapi_listed_table(struct dvsim *d, int i);

/* ---- webapi_metachanges.c: definition changes ---- */
/* GET RetrieveMetadataChanges(...) (rest: after the function name). */
void webapi_metadata_changes(struct req *r, const char *rest);
/* POST /_sim/metadata. */
void dvmeta_sim_route(struct req *r);
/* Forget every change (/_sim/reset); takes d->lock. */
void dvmeta_reset(struct dvsim *d);
/* Whether t was deleted; the columns added to t (at most max, into out). Take d->lock. */
bool dvmeta_table_deleted(struct dvsim *d, const struct table_def *t);
size_t dvmeta_columns(struct dvsim *d, const struct table_def *t, char out[][64], size_t max);

/* ---- webwrite.c: write sessions, a transaction under d->write_lock or the $batch's open one */
struct wsess {
    sqlite3 *db;
    bool own;
};
int webwrite_session_begin(struct req *r, struct wsess *s);
/* End the write session (commit when ok); a failed commit answers 503. Whether it succeeded. */
bool webwrite_session_finish(struct req *r, struct wsess *s, bool ok);
void webwrite_reply_no_content(struct req *r);
/* A GUID from the shared generator (takes d->lock). */
void webwrite_random_guid(struct dvsim *d, char out[37]);

/* ---- webwrite_rules.c ---- */
/* A reference "/contacts(<guid>)", "contacts(<guid>)" or an absolute URL -> table and id. set gets
 * the entity set named. -ENOENT for an unresolved "$n" Content-ID, -ENXIO for an entity set that
 * does not exist, -EINVAL otherwise. */
int webwrite_resolve_ref(const char *s, const struct table_def **t, char id[37], char *set, size_t set_n);
/* Point lookup column c at target record id (NULL clears); a 404 or 500 reply on failure. */
int webwrite_set_lookup(struct req *r, sqlite3 *db, struct rec *rec, const struct col_def *c,
                        const struct table_def *target, const char *id);
/* Set column c (record member `member`) to raw JSON and its formatted value. */
void webwrite_set_col(struct rec *rec, const struct col_def *c, const char *member, const char *raw,
                      size_t len);
/* An integer member of rec (-1 when null or absent). */
int webwrite_int_member(const struct rec *rec, const char *member);

/* One party of an activity write (<activity>_activity_parties). */
struct party_write {
    int mask;                        /* participationtypemask */
    const struct table_def *target;  /* the party's table; NULL: none (addressused only) */
    char id[37];
    char *addressused;               /* raw JSON string, NULL: null */
};
/* What a write body held besides plain columns. */
struct write_body {
    bool statecode, statuscode;      /* applied */
    bool fields;                     /* some other member was applied */
    bool parties_set;                /* <activity>_activity_parties: they replace the parties */
    struct party_write *parties;
    size_t n_parties;
    bool image_set, image_null;      /* the image column was given (null: cleared) */
    struct buf image;                /* its bytes */
};
void webwrite_body_release(struct write_body *b);
/* Apply the JSON body of r to rec. create: a new record (IsValidForCreate applies). body_id gets
 * the primary key when the body names one; b what else it held. 0, or a reply and -errno. */
int webwrite_apply_body(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec,
                        bool create, char body_id[37], struct write_body *b);
/* Members every new record has: every column (null when not given), state and status (a status
 * of another state is refused), owner, currency. 0, or a reply and -errno. */
int webwrite_create_defaults(struct req *r, sqlite3 *db, const struct table_def *t,
                             struct rec *rec, const char *id);
/* The state rules of an update of a record whose statecode was old_state. 0, or a reply. */
int webwrite_check_update(struct req *r, const struct table_def *t, int old_state, struct rec *rec,
                          const struct write_body *b, const char *id);
/* Whether a record of t in state `state` is closed (a resolved or cancelled case, a won or lost
 * opportunity), and the service's answer to a change of one. */
bool webwrite_closed(const struct table_def *t, int state);
void webwrite_reply_closed(struct req *r, const struct table_def *t, int state);
int webwrite_set_state(struct rec *rec, const struct table_def *t, int statecode, int statuscode);
/* The columns the service derives: owning* from ownerid, exchangerate and *_base. */
int webwrite_derive(sqlite3 *db, int env, const struct table_def *t, struct rec *rec);
/* The stored id of a record: id, and for a row of an elastic table its partitionid (store.c). */
void webwrite_row_id(const struct table_def *t, const char *id, const struct rec *rec, char out[DVSTORE_ID_MAX]);
/* Store rec as record id of t (in its partition, for an elastic table) with the org's next version: stamped (srec_stamp), rendered into out,
 * audited as a create or an update when w asks for audits, and, for an activity, its
 * activitypointer row. The caller has applied, checked and derived everything else. */
int webwrite_store(struct write_ctx *w, const struct table_def *t, const char *id, struct rec *rec, bool create,
                   struct buf *out);

/* ---- webwrite_privileges.c ---- */
/* 0 when a client may write records of t with this request's method; else the service's refusal
 * (405 for tables without that message, 403 for a privilege the application user lacks). */
int webwrite_refuse_table(struct req *r, const struct table_def *t);
/* The business-logic headers of a write into b; 0, or a 403 reply when a bypass is asked for
 * without the privilege. t (may be NULL) names the table in the message. */
int webwrite_business_logic(struct req *r, const struct table_def *t, struct bypass *b);
/* Whether b bypasses synchronous custom logic (plug-ins). */
bool webwrite_bypasses_plugins(const struct bypass *b);
/* The application user's privileges, with the bypass privileges while it holds them. */
struct privileges {
    size_t n;
    char name[N_TABLES * 8 + 2][64];
};
int webwrite_app_privileges(struct dvsim *d, struct privileges *p);
/* A privilege's id (the real ids of the bypass privileges, a stable one for the others). */
void webwrite_privilege_id(const char *name, char out[37]);

/* ---- webwrite_activity.c ---- */
/* The activitypointer row of activity id (whose record is rec), stored with version ver. */
int webwrite_pointer_put(sqlite3 *db, int env, const char *id, const struct rec *rec, int64_t ver);
/* Remove an activity's activitypointer row and parties (its delete). */
int webwrite_activity_deleted(sqlite3 *db, int env, const char *id);
/* Replace the parties of activity id of t (record rec) with b's. */
int webwrite_parties_replace(struct req *r, sqlite3 *db, const struct table_def *t, const char *id,
                             const struct rec *rec, const struct write_body *b);
/* The simulated business logic after a create or update of record id of t: a plug-in that adds a
 * follow-up task (unless bypassed) and a flow run (unless suppressed), for accounts and contacts. */
int webwrite_business_effects(struct req *r, sqlite3 *db, const struct table_def *t, const char *id,
                              const struct rec *rec, const struct bypass *b);

/* ---- webwrite_actions.c ---- */
/* POST /CloseIncident, /WinOpportunity, /LoseOpportunity (name without the namespace). */
void webwrite_action(struct req *r, const char *name);
/* GET /WhoAmI */
void webwrite_whoami(struct req *r);
/* GET /systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges() */
void webwrite_user_privileges(struct req *r, const char *user_id);

/* ---- webwrite_files.c ---- */
/* GET <set>(<id>)/<col>/$value: a file column's bytes (Range), an image's thumbnail (?size=full:
 * the full image) or a Base64 text column. */
void webwrite_file_get(struct req *r, const struct table_def *t, const char *id,
                       const struct col_def *c);
/* PATCH <set>(<id>)/<filecol> with the bytes (upload; chunked when asked) or DELETE it. */
void webwrite_file_put(struct req *r, const struct table_def *t, const char *id,
                       const struct col_def *c, bool del);
/* Set (data NULL: clear) image column c of record rec (id of t): the full image in the files
 * table, the thumbnail and the image id, timestamp and URL in the record. */
int webwrite_image_set(struct req *r, sqlite3 *db, const struct table_def *t, const char *id,
                       struct rec *rec, const struct col_def *c, const void *data, size_t len,
                       const char *name);

#endif
