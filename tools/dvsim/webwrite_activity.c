/* webwrite_activity: what a write of an activity, an account or a contact brings with it
 * (webapi_int.h).
 *   - activitypointer: every create and update of an email, task, phonecall or appointment
 *     stores the activity's row there (same activityid, its subject, type, dates, regarding,
 *     owner and state; the activity's version), and its delete removes that row;
 *   - activityparty: a write that carries <activity>_activity_parties replaces the activity's
 *     parties: the old rows are deleted and new rows with new ids are created, each pointing at
 *     its activity (and, unless it has only an address, at its party), so change tracking shows
 *     the deletes and creates; party_index remembers which rows belong to which activity;
 *   - the simulated business logic: a create or update of an account or a contact runs a
 *     synchronous plug-in that creates a task "Plug-in follow-up: <name>" regarding the record
 *     (owned by the application user, audited like any write, in activitypointer too) unless
 *     the request bypasses custom synchronous logic, and counts a flow run unless it carries
 *     MSCRM.SuppressCallbackRegistrationExpanderJob: true; both counts are kept per org in the
 *     write's own transaction (GET /_sim/effects).
 * Threading: everything runs inside the caller's write session (d->write_lock held). */
#include "tools/dvsim/webapi_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the members of an activity that its activitypointer row repeats (with their annotations) */
static const char *const pointer_members[] = {
    "activitytypecode", "subject", "scheduledend", "actualend", "_regardingobjectid_value", "_ownerid_value",
    "statecode", "createdon", "modifiedon", "versionnumber", "@odata.etag", NULL};

int webwrite_pointer_put(sqlite3 *db, int env, const char *id, const struct rec *rec, int64_t ver)
{
    const struct table_def *pt = &dvschema_tables[T_ACTIVITYPOINTER];
    struct rec p;
    struct buf out = BUF_INIT;
    srec_init(&p);
    int rc = srec_set_str(&p, pt->pk, id);
    for (size_t i = 0; i < rec->n && !rc; i++) {
        const char *k = rec->m[i].key;
        for (const char *const *m = pointer_members; *m; m++) {
            size_t l = strlen(*m);
            if (!strncmp(k, *m, l) && (k[l] == '\0' || (k[l] == '@' && strcmp(*m, "@odata.etag") != 0))) {
                rc = srec_set(&p, k, rec->m[i].val, strlen(rec->m[i].val));
                break;
            }
        }
    }
    rc = rc ? rc : srec_render(&p, pt->pk, &out);
    rc = rc ? rc : dvstore_put_record(db, table_id(env, T_ACTIVITYPOINTER), id, ver, out.data, out.len);
    srec_release(&p);
    buf_release(&out);
    return rc;
}

/* Delete every party row of activity id (each with a version of its own). */
static int parties_delete(sqlite3 *db, int env, const char *id)
{
    char **ids = NULL;
    size_t n = 0;
    int rc = dvstore_party_ids(db, env, id, &ids, &n);
    for (size_t i = 0; i < n; i++) {
        int64_t ver;
        if (!rc)
            rc = dvstore_next_version(db, env, &ver);
        if (!rc) {
            rc = dvstore_delete_record(db, table_id(env, T_ACTIVITYPARTY), ids[i], ver);
            if (rc == -ENOENT)
                rc = 0;
        }
        if (!rc)
            rc = dvstore_party_link(db, env, id, ids[i], false);
        free(ids[i]);
    }
    free(ids);
    return rc;
}

int webwrite_activity_deleted(sqlite3 *db, int env, const char *id)
{
    int64_t ver;
    int rc = dvstore_next_version(db, env, &ver);
    if (!rc) {
        rc = dvstore_delete_record(db, table_id(env, T_ACTIVITYPOINTER), id, ver);
        if (rc == -ENOENT)
            rc = 0;
    }
    return rc ? rc : parties_delete(db, env, id);
}

int webwrite_parties_replace(struct req *r, sqlite3 *db, const struct table_def *t, const char *id,
                             const struct rec *rec, const struct write_body *b)
{
    const struct table_def *pt = &dvschema_tables[T_ACTIVITYPARTY];
    const struct col_def *party_col = dvschema_col_by_member(pt, "_partyid_value", 14);
    const struct col_def *mask_col = dvschema_col_by_member(pt, "participationtypemask", 21);
    struct write_ctx unaudited = {r->d, db, r->env, false}; /* party rows are not audited */
    int rc = parties_delete(db, r->env, id);
    for (size_t i = 0; i < b->n_parties && !rc; i++) {
        const struct party_write *w = &b->parties[i];
        struct rec p;
        struct buf out = BUF_INIT;
        char pid[37], mask[16];
        srec_init(&p);
        webwrite_random_guid(r->d, pid);
        rc = srec_set_str(&p, pt->pk, pid);
        rc = rc ? rc : srec_set_str(&p, "_activityid_value", id);
        rc = rc ? rc : srec_set_str(&p, "_activityid_value" LLN, t->logical);
        const char *subject = srec_get(rec, "subject");
        if (!rc && subject && subject[0] == '"')
            rc = srec_set(&p, "_activityid_value" FV, subject, strlen(subject));
        rc = rc ? rc : webwrite_set_lookup(r, db, &p, party_col, w->target, w->target ? w->id : NULL);
        snprintf(mask, sizeof mask, "%d", w->mask);
        if (!rc)
            webwrite_set_col(&p, mask_col, "participationtypemask", mask, strlen(mask));
        rc = rc ? rc : srec_set(&p, "addressused", w->addressused ? w->addressused : "null",
                                strlen(w->addressused ? w->addressused : "null"));
        rc = rc ? rc : webwrite_store(&unaudited, pt, pid, &p, true, &out);
        rc = rc ? rc : dvstore_party_link(db, r->env, id, pid, true);
        srec_release(&p);
        buf_release(&out);
    }
    return rc;
}

/* The plug-in: a follow-up task regarding record id of t. */
static int plugin_task(struct req *r, sqlite3 *db, const struct table_def *t, const char *id, const struct rec *rec)
{
    const struct table_def *tt = &dvschema_tables[T_TASK];
    const struct col_def *regarding = dvschema_col_by_member(tt, "_regardingobjectid_value", 24);
    struct rec task;
    struct buf out = BUF_INIT, name = BUF_INIT, subject = BUF_INIT;
    char tid[37];
    srec_init(&task);
    webwrite_random_guid(r->d, tid);
    const char *raw = t->primary_name ? srec_get(rec, t->primary_name) : NULL;
    if (raw && raw[0] == '"')
        dvline_unquote(raw, strlen(raw), &name);
    buf_printf(&subject, "Plug-in follow-up: %s", name.data ? name.data : "");
    int rc = srec_set_str(&task, tt->pk, tid);
    rc = rc ? rc : srec_set_str(&task, "subject", subject.data);
    rc = rc ? rc : srec_set_str(&task, "activitytypecode", "task");
    rc = rc ? rc : webwrite_set_lookup(r, db, &task, regarding, t, id);
    rc = rc ? rc : webwrite_create_defaults(r, db, tt, &task, tid);
    rc = rc ? rc : webwrite_derive(db, r->env, tt, &task);
    struct write_ctx w = {r->d, db, r->env, true};
    rc = rc ? rc : webwrite_store(&w, tt, tid, &task, true, &out);
    srec_release(&task);
    buf_release(&out);
    buf_release(&name);
    buf_release(&subject);
    return rc;
}

int webwrite_business_effects(struct req *r, sqlite3 *db, const struct table_def *t, const char *id,
                              const struct rec *rec, const struct bypass *b)
{
    if (t != &dvschema_tables[T_ACCOUNT] && t != &dvschema_tables[T_CONTACT])
        return 0;
    bool plugin = !webwrite_bypasses_plugins(b), flow = !b->suppress_flows;
    int rc = plugin ? plugin_task(r, db, t, id, rec) : 0;
    return rc ? rc : dvstore_effects_add(db, r->env, plugin, flow);
}
