/* restore_write: the writes a restore's difference needs, queued as $batch parts (restore_int.h;
 * the steps: restore.c; sending: restore_batch.c, which runs them in order).
 *
 * Upserts are PATCH by the point's key (a create is an upsert too, so a rerun never duplicates),
 * table by table with referenced tables first; lookups as the target is to hold them (principals
 * mapped, owners bound by their concrete type: restore_map.c, restore_plan.c), an activity's
 * parties inside it (restore_parties.c), createdon carried by overriddencreatedon on create. A
 * lookup to a record of a table not yet written that this restore creates is left out of the
 * record's body and set afterwards by a second PATCH (deferred binds); notes' documentbody comes
 * from the point's blob. An updated record's file and image columns that the point holds no bytes
 * for are cleared (DELETE of the column) when the target has some. Then N:N pairs are associated
 * or disassociated ($ref) and records deleted, referencing tables first.
 * State: a create is always active (statecode is not valid for create); a record whose state is
 * not the active one gets a state write after its upsert (and after its deferred lookups):
 * CloseIncident for a resolved case, WinOpportunity / LoseOpportunity for a closed opportunity,
 * else a PATCH of statecode and statuscode together. An update of other tables carries the state
 * in its body. A closed case, opportunity or activity of the target that must change is reopened
 * first (PATCH statecode 0 with the point's active status, or one seen in the point, or 1), then
 * updated, then closed again. A row of an elastic table (keyed by id and partitionid:
 * restore_record_key) is addressed in its partition by the alternate key of its id and
 * partitionid (<set>(<pk>=<id>,partitionid='<partitionid>'): the point's for upserts, the
 * target's for deletes; record_path).
 * Memory: the deferred parts (path and body of each) are held until the upserts are queued.
 * Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

#include "backend/base/record.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct rtab *restore_tab_by_name(struct rctx *c, const char *name)
{
    for (size_t i = 0; i < c->n_tabs; i++)
        if (c->tabs[i].active && !c->tabs[i].mm && name && !strcmp(c->tabs[i].name, name))
            return &c->tabs[i];
    return NULL;
}

static int bind_decide(void *ctx, const struct dv_lookup *lk, const char *id, size_t id_len)
{
    struct rctx *c = ctx;
    struct rtab *t = restore_tab_by_name(c, lk->target_table);
    if (!t || t->written)
        return RB_INCLUDE;
    struct rmap_entry *e = rmap_get(&t->map, id, id_len);
    if (!e || e->action != ACT_CREATE || (e->flags & RMAP_SENT))
        return RB_INCLUDE;
    return RB_DEFER;
}

static int body_blob(void *ctx, const char *column, struct buf *b64)
{
    struct rctx *c = ctx;
    const struct point_file *f =
        restore_find_file(&c->files, c->cur->name, c->cur_key, c->cur_key_len, column);
    if (!f)
        return 0;
    struct buf raw = BUF_INIT;
    int rc = repo_blob_get(c->repo, f->blob, &raw, c->err);
    if (!rc)
        rc = base64_encode(raw.data ? raw.data : "", raw.len, b64);
    buf_release(&raw);
    return rc ? rc : 1;
}

/* <set>(<key>); a row of an elastic table in a partition is addressed by the alternate key of
 * its id and partition, <set>(<pk>=<id>,partitionid='<partition>'), the form the service's
 * elastic-table examples use for updates, upserts and deletes (a partition's ' doubled, as in
 * any OData string literal); a row without a partition by its id alone (partition NULL or ""). */
static char *record_path(const struct dv_table *def, const char *key, size_t kl, const char *partition)
{
    struct buf p = BUF_INIT, lit = BUF_INIT;
    if (def->is_elastic)
        kl = record_key_id_len(key, kl);
    if (!def->is_elastic || !partition || !*partition) {
        buf_printf(&p, "%s(%.*s)", def->entity_set, (int)kl, key);
        return buf_detach(&p);
    }
    for (const char *c = partition; *c; c++) {
        buf_add(&lit, c, 1);
        if (*c == '\'')
            buf_add(&lit, c, 1);
    }
    buf_printf(&p, "%s(%s=%.*s," DV_PARTITION_COLUMN "='", def->entity_set, def->primary_id, (int)kl, key);
    buf_urlencode(&p, lit.data ? lit.data : "", false);
    buf_addstr(&p, "')");
    buf_release(&lit);
    return buf_detach(&p);
}

/* Parts held back until every upsert is queued: a record's deferred lookups, and the state
 * write that must follow them (a closed record refuses the lookup's update). */
struct deferred {
    struct rtab *t;
    enum part_kind kind;
    const char *method;
    char *path, *body;
};
struct write_ctx {
    struct rctx *c;
    struct rtab *t;
    struct deferred *def;
    size_t n_def, cap_def;
};

static int defer(struct write_ctx *w, struct rtab *t, enum part_kind kind, const char *method,
                 char *path, char *body)
{
    if (w->n_def == w->cap_def) {
        size_t cap = w->cap_def ? w->cap_def * 2 : 64;
        struct deferred *d = realloc(w->def, cap * sizeof(*d));
        if (!d) {
            free(path);
            free(body);
            return -ENOMEM;
        }
        w->def = d;
        w->cap_def = cap;
    }
    w->def[w->n_def++] = (struct deferred){t, kind, method, path, body};
    return 0;
}

/* The request that puts a record into state/status: CloseIncident for a resolved case,
 * WinOpportunity / LoseOpportunity for a closed opportunity (closed_on, the point's
 * actualclosedate, as the close's actualend: the service would stamp today), else a PATCH of
 * statecode and statuscode together. Fills method, path and body (owned). */
static void state_write(const struct rtab *t, const char *key, size_t kl, const char *partition,
                        int32_t state, int32_t status, const char *closed_on, const char **method,
                        char **path, char **body)
{
    struct buf p = BUF_INIT, b = BUF_INIT;
    const char *name = t->def->logical_name;
    const char *action = NULL, *param = NULL, *bind = NULL;
    if (!strcmp(name, "incident") && state == 1) {
        action = "CloseIncident";
        param = "IncidentResolution";
        bind = "incidentid";
    } else if (!strcmp(name, "opportunity") && (state == 1 || state == 2)) {
        action = state == 1 ? "WinOpportunity" : "LoseOpportunity";
        param = "OpportunityClose";
        bind = "opportunityid";
    }
    if (action) {
        *method = "POST";
        buf_addstr(&p, action);
        buf_printf(&b, "{\"%s\":{\"subject\":\"Closed by dvsnap restore\",\"%s@odata.bind\":"
                       "\"/%s(%.*s)\"",
                   param, bind, t->def->entity_set, (int)kl, key);
        if (closed_on && *closed_on) {
            buf_addstr(&b, ",\"actualend\":");
            buf_add_json_string(&b, closed_on, strlen(closed_on));
        }
        buf_addch(&b, '}');
        if (status >= 0)
            buf_printf(&b, ",\"Status\":%d", (int)status);
        buf_addch(&b, '}');
    } else {
        *method = "PATCH";
        char *rp = record_path(t->def, key, kl, partition);
        buf_addstr(&p, rp);
        free(rp);
        buf_printf(&b, "{\"statecode\":%d", (int)state);
        if (status >= 0)
            buf_printf(&b, ",\"statuscode\":%d", (int)status);
        buf_addch(&b, '}');
    }
    *path = buf_detach(&p);
    *body = buf_detach(&b);
}

/* "<activity>_activity_parties": [...] into body (an object): the point's parties of the
 * activity; an update sends [] when it has none (the parties are replaced). */
static int add_parties(struct rctx *c, struct rtab *t, const char *key, size_t kl, bool create,
                       struct buf *body)
{
    if (!c->have_parties)
        return 0;
    struct rmap_entry *e = rmap_get(&c->party_bodies, key, kl);
    const struct buf *arr = e ? e->ptr : NULL;
    if (create && !arr)
        return 0;
    char nav[300];
    restore_parties_nav(t->def->logical_name, nav, sizeof(nav));
    if (!body->len || body->data[body->len - 1] != '}')
        return -EINVAL;
    body->len--; /* reopen the object */
    if (body->len > 1)
        buf_addch(body, ',');
    buf_printf(body, "\"%s\":", nav);
    if (arr && arr->data)
        buf_add(body, arr->data, arr->len);
    else
        buf_addstr(body, "[]");
    return buf_addch(body, '}');
}

static int upsert_cb(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct write_ctx *w = ctx;
    struct rctx *c = w->c;
    struct rtab *t = w->t;
    if (cancelled(c))
        return -ECANCELED;
    struct json_doc *doc = NULL;
    struct buf scratch = BUF_INIT, body = BUF_INIT, later = BUF_INIT;
    char *partition = NULL;
    int rc = 0;
    struct rmap_entry *e = NULL;
    if (t->def->is_elastic) { /* keyed by id and partition, made from the record (compare) */
        if ((rc = json_parse(line, line_len, NULL, &doc, c->err)))
            goto out;
        if ((rc = restore_record_key(t->def, json_root(doc), &scratch, &key, &key_len))) {
            if (rc == -ENOENT)
                rc = 0; /* no id: the compare passed it by too */
            goto out;
        }
    }
    e = rmap_get(&t->map, key, key_len);
    if (!e || (e->action != ACT_CREATE && e->action != ACT_UPDATE))
        goto out;
    if (!doc && (rc = json_parse(line, line_len, NULL, &doc, c->err)))
        goto out;
    c->cur = t;
    c->cur_key = key;
    c->cur_key_len = key_len;
    bool create = e->action == ACT_CREATE;
    int32_t state, status;
    restore_state_of(json_root(doc), &state, &status);
    char closed_on[40] = "";
    const char *cd = json_get_str(json_root(doc), "actualclosedate");
    if (cd)
        snprintf(closed_on, sizeof(closed_on), "%s", cd);
    /* an elastic row is written in its partition (partitionid cannot change after a create) */
    const char *pid = t->def->is_elastic ? json_get_str(json_root(doc), DV_PARTITION_COLUMN) : NULL;
    partition = pid ? strdup(pid) : NULL;
    if (pid && !partition) {
        rc = -ENOMEM;
        goto out;
    }
    bool states = t->has_state && (create ? state > 0 : (e->flags & RMAP_STATE_DIFFERS) != 0);
    bool fields = create || (e->flags & RMAP_FIELDS_DIFFER);
    /* a closed case, opportunity or activity takes no update until it is reopened */
    bool reopen = !create && t->closable && (e->flags & RMAP_TARGET_STATE) && e->tstate > 0 &&
                  (fields || states);
    /* other tables take their state in the update itself */
    bool state_in_body = !create && !t->closable && states;
    /* what is left to do after the upsert (and its deferred lookups): the point's state, unless
     * the update carried it or the reopen set it (an active record); a reopened record closes
     * again */
    bool state_after = (states || reopen) && !state_in_body && !(reopen && state == 0);
    struct restore_hooks h = {.ctx = c, .map = restore_map_lookup, .bind = bind_decide,
                              .body_blob = body_blob};
    rc = restore_body(t->def, json_root(doc), create, state_in_body, &h, &body, &later);
    if (!rc && t->def->is_activity)
        rc = add_parties(c, t, key, key_len, create, &body);
    if (rc)
        goto out;
    e->flags |= RMAP_SENT;
    if (reopen) {
        int32_t open = state == 0 && status >= 0 ? status : t->open_status >= 0 ? t->open_status : 1;
        struct buf b = BUF_INIT;
        buf_printf(&b, "{\"statecode\":0,\"statuscode\":%d}", (int)open);
        rc = restore_queue(c, t, K_REOPEN, "PATCH", record_path(t->def, key, key_len, partition),
                           buf_detach(&b));
        if (rc)
            goto out;
    }
    rc = restore_queue(c, t, create ? K_CREATE : K_UPDATE, "PATCH",
                       record_path(t->def, key, key_len, partition), buf_detach(&body));
    if (rc)
        goto out;
    bool deferred = later.len > 0;
    if (deferred)
        rc = defer(w, t, K_BIND, "PATCH", record_path(t->def, key, key_len, partition), buf_detach(&later));
    if (!rc && state_after) {
        const char *method;
        char *path, *sbody;
        state_write(t, key, key_len, partition, state, status, closed_on, &method, &path, &sbody);
        rc = deferred ? defer(w, t, K_STATE, method, path, sbody)
                      : restore_queue(c, t, K_STATE, method, path, sbody);
    }
    /* file and image columns of an updated record: clear those the point has no bytes for */
    if (!rc && !create && t->has_files && (e->flags & RMAP_TARGET_FILES) &&
        (e->flags & RMAP_FILES_DIFFER)) {
        for (size_t i = 0; i < t->def->n_attrs && !rc; i++) {
            const struct dv_attribute *a = &t->def->attrs[i];
            if (!a->type || (strcmp(a->type, "File") && strcmp(a->type, "Image")))
                continue;
            if (restore_find_file(&c->files, t->name, key, key_len, a->logical_name))
                continue;
            struct buf p = BUF_INIT;
            buf_printf(&p, "%s(%.*s)/%s", t->def->entity_set, (int)key_len, key, a->logical_name);
            rc = restore_queue(c, t, K_FILEDEL, "DELETE", buf_detach(&p), NULL);
        }
    }
out:
    free(partition);
    json_doc_free(doc);
    buf_release(&scratch);
    buf_release(&body);
    buf_release(&later);
    return rc;
}

static int write_n_to_n(struct rctx *c, struct rtab *t)
{
    int rc = 0;
    const char *set1 = t->mm1->entity_set, *set2 = t->mm2->entity_set;
    for (size_t i = 0; i < t->map.cap && !rc; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (!e->key || (e->action != ACT_CREATE && e->action != ACT_DELETE))
            continue;
        const char *bar = strchr(e->key, '|');
        if (!bar)
            continue;
        int l1 = (int)(bar - e->key);
        const char *id2 = bar + 1;
        struct buf p = BUF_INIT, b = BUF_INIT;
        if (e->action == ACT_CREATE) {
            buf_printf(&p, "%s(%.*s)/%s/$ref", set1, l1, e->key, t->mm->entity1_nav);
            buf_addstr(&b, "{\"@odata.id\":");
            struct buf u = BUF_INIT;
            buf_printf(&u, "%s%s(%s)", c->api_base, set2, id2);
            buf_add_json_string(&b, u.data, u.len);
            buf_release(&u);
            buf_addch(&b, '}');
            rc = restore_queue(c, t, K_ASSOC, "POST", buf_detach(&p), buf_detach(&b));
        } else {
            buf_printf(&p, "%s(%.*s)/%s(%s)/$ref", set1, l1, e->key, t->mm->entity1_nav, id2);
            rc = restore_queue(c, t, K_DISASSOC, "DELETE", buf_detach(&p), NULL);
        }
    }
    return rc;
}

static int write_deletes(struct rctx *c, struct rtab *t)
{
    int rc = 0;
    for (size_t i = 0; i < t->map.cap && !rc; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (!e->key || e->action != ACT_DELETE)
            continue;
        rc = restore_queue(c, t, K_DELETE, "DELETE", record_path(t->def, e->key, e->key_len, e->ptr), NULL);
    }
    return rc;
}

int restore_write_changes(struct rctx *c)
{
    /* 0. the parties of the activities to write */
    int rc = restore_parties_bodies(c);
    if (rc)
        return rc;
    /* 1. upserts, referenced tables first */
    struct write_ctx w = {c, NULL, NULL, 0, 0};
    for (size_t o = 0; o < c->n_order && !rc; o++) {
        struct rtab *t = &c->tabs[c->order[o]];
        w.t = t;
        if (t->n_create || t->n_update)
            rc = table_iterate(c->repo, c->point, t->name, upsert_cb, &w, c->err);
        t->written = true;
    }
    /* 2. lookups to records created after the record that names them, and the state writes
     * that follow them */
    for (size_t i = 0; i < w.n_def; i++) {
        struct deferred *d = &w.def[i];
        if (!rc)
            rc = restore_queue(c, d->t, d->kind, d->method, d->path, d->body);
        else {
            free(d->path);
            free(d->body);
        }
    }
    free(w.def);
    /* 3. N:N pairs */
    for (size_t i = 0; i < c->n_tabs && !rc; i++)
        if (c->tabs[i].active && c->tabs[i].mm)
            rc = write_n_to_n(c, &c->tabs[i]);
    /* 4. deletes, referencing tables first */
    for (size_t o = c->n_order; o-- > 0 && !rc;)
        rc = write_deletes(c, &c->tabs[c->order[o]]);
    return rc;
}
