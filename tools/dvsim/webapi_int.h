/* webapi_int: what the files of each org's Web API share (the simulator's other interfaces are in
 * dvsim.h). Read side:
 *   webapi.c         routing, Prefer, projections, collection and record GETs, $count
 *   webapi_query.c   query options: $filter (parse, evaluate), $orderby, the $skiptoken cookie
 *   webapi_delta.c   change tracking: org versions, delta tokens, $deltatoken pages
 *   webapi_meta.c    EntityDefinitions (metadata)
 * Write side:
 *   webwrite.c       single-record POST/PATCH (upsert)/DELETE, $ref, write sessions, routing
 *   webwrite_rules.c what every write must pass and what it adds: body validation (columns,
 *                    option ranges, @odata.bind), defaults of new records, version stamps, audits
 *   webwrite_files.c file columns and note bodies: $value GET with Range, uploads (single and
 *                    chunked sessions), DELETE
 *   webwrite_batch.c $batch (change sets, Content-ID references)
 * Threading: each request runs on its connection's thread and owns its struct req; writers hold
 * d->write_lock for their whole SQLite transaction (struct wsess); d->rng is read under d->lock.
 * Nothing here keeps state of its own. */
#ifndef DVSIM_WEBAPI_INT_H
#define DVSIM_WEBAPI_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tools/dvsim/dvsim.h"

#define QUERY_ERR "0x80060888"
#define FV "@OData.Community.Display.V1.FormattedValue"
#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"

/* ---- webapi.c ---- */
/* "<base>/org/<env>/api/data/v9.2" of the request's org. */
void webapi_base(struct req *r, struct buf *out);

/* ---- webapi_query.c ---- */
/* A parsed $filter; NULL when parsing failed (err says why, as the service would). */
struct fnode;
struct fnode *webapi_filter_parse(const struct table_def *t, const char *s, char *err,
                                  size_t errn);
/* Whether the record's members m (nm of them) match; tmp is scratch. */
bool webapi_filter_eval(const struct fnode *n, const struct lmember *m, int nm, struct buf *tmp);
void webapi_filter_free(struct fnode *n);

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
/* A reference "/contacts(<guid>)", "contacts(<guid>)" or an absolute URL -> table and id.
 * -ENOENT for an unresolved "$n" Content-ID, -EINVAL otherwise. */
int webwrite_resolve_ref(const char *s, const struct table_def **t, char id[37]);
/* Point lookup column c at target record id (NULL clears); a 404 or 500 reply on failure. */
int webwrite_set_lookup(struct req *r, sqlite3 *db, struct rec *rec, const struct col_def *c,
                        const struct table_def *target, const char *id);
/* Apply the JSON body of r to rec. create: a new record (IsValidForCreate applies). body_id gets
 * the primary key when the body names one. 0, or a reply and -errno. */
int webwrite_apply_body(struct req *r, sqlite3 *db, const struct table_def *t, struct rec *rec,
                        bool create, char body_id[37]);
/* Members every new record has: every column (null when not given), state, owner. */
int webwrite_create_defaults(struct req *r, sqlite3 *db, const struct table_def *t,
                             struct rec *rec);

/* ---- webwrite_files.c ---- */
/* GET <set>(<id>)/<col>/$value: a file column's bytes (Range) or a Base64 text column. */
void webwrite_file_get(struct req *r, const struct table_def *t, const char *id,
                       const struct col_def *c);
/* PATCH <set>(<id>)/<filecol> with the bytes (upload; chunked when asked) or DELETE it. */
void webwrite_file_put(struct req *r, const struct table_def *t, const char *id,
                       const struct col_def *c, bool del);

#endif
