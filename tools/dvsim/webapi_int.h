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

#define FV "@OData.Community.Display.V1.FormattedValue"
#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"

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
