/* restore_compare: which tables a restore writes, in which order, and what differs in each
 * (restore_int.h; the steps: restore.c).
 *
 * Planning: the requested tables of the point, each matched to the target's definition. Which
 * tables are data is decided from the target's metadata: user-owned tables, custom tables of any
 * ownership, and activities. Left out, with the reason as their note and in the outcome's
 * excluded_tables: tables whose every column is read-only (activitypointer), principals
 * (business-owned: systemuser, team, businessunit; matched by restore_map.c, never written),
 * organization-owned system tables (transactioncurrency and other configuration), other system
 * tables without an owner, activityparty (written inside each activity), the closing activities
 * CloseIncident / WinOpportunity / LoseOpportunity write, and N:N tables between tables that are
 * not data. A table named in tables= is written whatever this rule says (the service decides).
 * Audit tables, tables the target lacks and intersect tables without a usable many-to-many
 * relationship are skipped too. Tables are ordered so that referenced tables come first (Kahn's
 * algorithm over the lookups; a cycle falls back to name order, and the lookups it breaks are
 * deferred by the writer).
 * Comparison: the target side is read first (the safety point when it holds the table, else a
 * full read of the live target), then the point's records, their lookups mapped to the target's
 * principals (restore_map.c); each key gets an action (create, update, unchanged, delete) from
 * the 16-byte digest of its normalised content (an activity's parties mixed in:
 * restore_parties.c) and from its state (statecode and statuscode, kept with the target's key for
 * the writer). Intersect tables are keyed by their lower-cased (entity1 id, entity2 id) pair, an
 * elastic table's rows by id and partitionid (restore_record_key). Out of memory on a row of
 * either side fails the compare (-ENOMEM, so nothing is written): a row left out would make the
 * plan wrong.
 * File and image columns are compared by the blob id of their bytes (repo_blob_id): the point's
 * blob id, against the id of the target's bytes (an image at full size), downloaded. A dry run keeps the
 * first keys of each action (FIRST_KEYS) for the outcome.
 * Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_KEYS 5

/* ---------------------------------------------------------------- planning */

static bool requested(const struct restore_request *req, const char *name)
{
    if (!req->tables)
        return true;
    for (char **t = req->tables; *t; t++)
        if (!strcmp(*t, name))
            return true;
    return false;
}

static void skip_table(struct rtab *t, const char *why)
{
    t->active = false;
    free(t->out->note);
    t->out->note = xstrdup(why);
}

static bool all_read_only(const struct dv_table *d)
{
    for (size_t i = 0; i < d->n_attrs; i++)
        if (d->attrs[i].valid_for_create || d->attrs[i].valid_for_update)
            return false;
    return d->n_attrs > 0;
}

/* Why def is not a table of data a restore writes, or NULL when it is (see the note above). */
static const char *not_data(const struct dv_table *def)
{
    static const char *const closing[] = {"incidentresolution", "opportunityclose", "orderclose",
                                          "quoteclose"};
    if (!def || def->is_intersect)
        return NULL; /* N:N tables: by the tables they join (restore_plan_tables) */
    if (def->logical_name && !strcmp(def->logical_name, "activityparty"))
        return "activity parties are written inside each activity (<activity>_activity_parties)";
    for (size_t i = 0; i < sizeof(closing) / sizeof(closing[0]); i++)
        if (def->logical_name && !strcmp(def->logical_name, closing[i]))
            return "closing activity: written by CloseIncident, WinOpportunity or "
                   "LoseOpportunity when a record is closed";
    if (all_read_only(def))
        return "read-only: the service lets no client write its columns";
    if (def->is_custom || def->is_activity)
        return NULL;
    switch (def->ownership) {
    case DV_OWNERSHIP_BUSINESS:
        return "principal table (users, teams, business units): its rows are matched to the "
               "target's, never written";
    case DV_OWNERSHIP_ORGANIZATION:
        return def->logical_name && !strcmp(def->logical_name, "transactioncurrency")
                   ? "reference data: currencies are matched by ISO code, never written"
                   : "configuration table (organization-owned system table): not data to "
                     "overwrite";
    case DV_OWNERSHIP_NONE:
        return "system table without an owner: not data a restore writes";
    case DV_OWNERSHIP_USER:
    case DV_OWNERSHIP_UNKNOWN:
        return NULL;
    }
    return NULL;
}

static bool named(const struct restore_request *req, const char *name)
{
    return req->tables && requested(req, name);
}

/* Tables closed by an action or locked when closed (reopened to be updated). */
static bool closable_table(const struct dv_table *d)
{
    return d->is_activity || (d->logical_name && (!strcmp(d->logical_name, "incident") ||
                                                  !strcmp(d->logical_name, "opportunity")));
}

int restore_plan_tables(struct rctx *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->point->n_tables; i++)
        if (requested(c->req, c->point->tables[i].name))
            n++;
    c->tabs = calloc(n ? n : 1, sizeof(*c->tabs));
    c->out->tables = calloc(n ? n : 1, sizeof(*c->out->tables));
    c->order = calloc(n ? n : 1, sizeof(*c->order));
    if (!c->tabs || !c->out->tables || !c->order)
        return -ENOMEM;
    for (size_t i = 0; i < c->point->n_tables; i++) {
        const struct point_table *pt = &c->point->tables[i];
        if (!requested(c->req, pt->name))
            continue;
        struct rtab *t = &c->tabs[c->n_tabs];
        t->name = pt->name;
        t->out = &c->out->tables[c->n_tabs];
        t->out->table = xstrdup(pt->name);
        c->n_tabs++;
        c->out->n_tables = c->n_tabs;
        rmap_init(&t->map);
        t->def = restore_target_def(c, pt->name);
        t->active = true;
        if (c->point->audit_table && !strcmp(c->point->audit_table, pt->name)) {
            t->out->skipped = pt->records;
            skip_table(t, "audit records are skipped (audit=skip; the service does not take them)");
            continue;
        }
        if (!t->def) {
            t->out->skipped = pt->records;
            skip_table(t, "the target has no such table");
            continue;
        }
        const char *rule = named(c->req, pt->name) ? NULL : not_data(t->def);
        if (rule) {
            t->out->skipped = pt->records;
            t->out->excluded = true;
            skip_table(t, rule);
            continue;
        }
        if (t->def->is_intersect) {
            for (size_t d = 0; d < c->n_defs && !t->mm; d++)
                for (size_t m = 0; m < c->defs[d].n_many_to_many; m++) {
                    const struct dv_many_to_many *mm = &c->defs[d].many_to_many[m];
                    if (mm->intersect_table && !strcmp(mm->intersect_table, pt->name)) {
                        t->mm = mm;
                        break;
                    }
                }
            if (t->mm) {
                t->mm1 = restore_target_def(c, t->mm->entity1);
                t->mm2 = restore_target_def(c, t->mm->entity2);
            }
            if (!t->mm || !t->mm1 || !t->mm2 || !t->mm->entity1_attr || !t->mm->entity2_attr ||
                !t->mm->entity1_nav) {
                t->out->skipped = pt->records;
                skip_table(t, "intersect table without a usable many-to-many relationship");
            } else if (!named(c->req, pt->name) && (not_data(t->mm1) || not_data(t->mm2))) {
                t->out->skipped = pt->records;
                t->out->excluded = true;
                skip_table(t, "N:N between tables that are not data (principals or "
                              "configuration): not written");
            }
            continue;
        }
        if (t->def->read_only) {
            t->out->skipped = pt->records;
            struct buf why = BUF_INIT;
            buf_printf(&why, "the service does not let clients write %s", pt->name);
            skip_table(t, why.data ? why.data : "read-only");
            buf_release(&why);
            continue;
        }
        if (!t->def->entity_set || !t->def->primary_id) {
            t->out->skipped = pt->records;
            skip_table(t, "the target's definition has no entity set or primary key");
            continue;
        }
        for (size_t a = 0; a < t->def->n_attrs; a++) {
            const char *ty = t->def->attrs[a].type, *an = t->def->attrs[a].logical_name;
            if (ty && (!strcmp(ty, "File") || !strcmp(ty, "Image")))
                t->has_files = true;
            if (an && !strcmp(an, "statecode"))
                t->has_state = true;
        }
        t->closable = t->has_state && closable_table(t->def);
        t->open_status = -1;
    }
    /* referenced tables first (Kahn); cycles fall back to name order, deferred binds cover them */
    bool *placed = calloc(c->n_tabs ? c->n_tabs : 1, sizeof(bool));
    if (!placed)
        return -ENOMEM;
    for (;;) {
        bool progress = false;
        for (size_t i = 0; i < c->n_tabs; i++) {
            struct rtab *t = &c->tabs[i];
            if (placed[i] || !t->active || t->mm)
                continue;
            bool ready = true;
            for (size_t l = 0; l < t->def->n_lookups && ready; l++) {
                const char *tt = t->def->lookups[l].target_table;
                for (size_t j = 0; j < c->n_tabs; j++)
                    if (j != i && !placed[j] && c->tabs[j].active && !c->tabs[j].mm && tt &&
                        !strcmp(c->tabs[j].name, tt))
                        ready = false;
            }
            if (ready) {
                placed[i] = true;
                c->order[c->n_order++] = i;
                progress = true;
            }
        }
        if (progress)
            continue;
        bool any = false;
        for (size_t i = 0; i < c->n_tabs && !any; i++) {
            if (!placed[i] && c->tabs[i].active && !c->tabs[i].mm) {
                placed[i] = true;
                c->order[c->n_order++] = i;
                any = true;
            }
        }
        if (!any)
            break;
    }
    free(placed);
    return 0;
}

void restore_skipped_fields_json(struct rctx *c)
{
    struct buf j = BUF_INIT;
    buf_addch(&j, '{');
    bool first = true;
    for (size_t i = 0; i < c->n_tabs; i++) {
        struct rtab *t = &c->tabs[i];
        if (!t->skipped.n)
            continue;
        if (!first)
            buf_addch(&j, ',');
        first = false;
        buf_add_json_string(&j, t->name, strlen(t->name));
        buf_addstr(&j, ":[");
        for (size_t k = 0; k < t->skipped.n; k++) {
            if (k)
                buf_addch(&j, ',');
            buf_add_json_string(&j, t->skipped.items[k], strlen(t->skipped.items[k]));
        }
        buf_addch(&j, ']');
    }
    buf_addch(&j, '}');
    free(c->out->skipped_fields_json);
    c->out->skipped_fields_json = buf_detach(&j);
}

/* ---------------------------------------------------------------- comparison */

struct digest_ctx {
    struct rctx *c;
    const struct rmap *files;  /* the point's files, or NULL when reading the live target */
    const char *table;
    const char *key;
    size_t key_len;
    const struct dv_table *def; /* live reads: download file columns from its entity set */
    bool any;                  /* a file column of the record has bytes */
    uint8_t sum[16];           /* the columns' bytes: sum of digest(column, hash) */
};

static void files_add(struct digest_ctx *d, const char *column, const char hex[65])
{
    struct buf b = BUF_INIT;
    uint8_t dg[16];
    buf_printf(&b, "%s:%s", column, hex);
    restore_digest(b.data ? b.data : "", b.len, dg);
    restore_digest_add(d->sum, dg);
    buf_release(&b);
    d->any = true;
}

static int dl_hash(void *ctx, const void *data, size_t len)
{
    crypt_hash_update(ctx, data, len);
    return 0;
}

static int file_digest(void *ctx, const char *column, const struct json_node *value, char hex[65])
{
    struct digest_ctx *d = ctx;
    if (d->files) {
        const struct point_file *f =
            restore_find_file(d->files, d->table, d->key, d->key_len, column);
        if (f) {
            snprintf(hex, 65, "%s", f->blob);
            files_add(d, column, hex);
            return 0;
        }
    }
    if (!value || value->type != JSON_STRING)
        return 1;
    if (!strcmp(column, "documentbody")) {
        /* as a blob id of the repository (keyed when it is encrypted), as the point's are */
        struct buf raw = BUF_INIT;
        if (base64_decode(value->str, value->str_len, &raw)) {
            buf_release(&raw);
            repo_blob_id(d->c->repo, value->str, value->str_len, hex);
            return 0;
        }
        repo_blob_id(d->c->repo, raw.data ? raw.data : "", raw.len, hex);
        buf_release(&raw);
        files_add(d, column, hex);
        return 0;
    }
    if (d->files)
        return 1; /* a file id without bytes in the point: nothing to restore */
    /* the live target: hash its bytes */
    struct crypt_hash *s = repo_blob_id_stream(d->c->repo);
    if (!s)
        return -ENOMEM;
    char *name = NULL;
    char id[256];
    snprintf(id, sizeof(id), "%.*s", (int)d->key_len, d->key);
    const struct dv_attribute *a = restore_attr(d->def, column, strlen(column));
    bool image = a && a->type && !strcmp(a->type, "Image");
    int rc = dv_file_download(d->c->dv, &d->c->target, d->def->entity_set, id, column, image,
                              dl_hash, s, &name, d->c->err);
    free(name);
    crypt_hash_finish(s, hex);
    if (rc == -ENOENT) {
        dverr_clear(d->c->err);
        return 1;
    }
    if (!rc)
        files_add(d, column, hex);
    return rc;
}

/* Dry-run delete keys come from the key map in hash order: keep the FIRST_KEYS smallest. */
static void keep_smallest(struct strset *s, const char *key, size_t kl)
{
    if (s->n < FIRST_KEYS) {
        strset_add(s, key, kl);
    } else {
        size_t max = 0;
        for (size_t i = 1; i < s->n; i++)
            if (strcmp(s->items[i], s->items[max]) > 0)
                max = i;
        if (strlen(s->items[max]) == kl && !memcmp(s->items[max], key, kl))
            return;
        struct buf k = BUF_INIT;
        buf_add(&k, key, kl);
        if (k.data && strcmp(k.data, s->items[max]) < 0) {
            free(s->items[max]);
            s->items[max] = buf_detach(&k);
        }
        buf_release(&k);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}


static int add_lower(struct buf *k, const char *s)
{
    for (const char *p = s; *p; p++)
        if (buf_addch(k, (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p)))
            return -ENOMEM;
    return 0;
}

/* An intersect row's key: 0, -EINVAL when it lacks one of the pair, -ENOMEM. */
static int intersect_key(const struct rtab *t, const struct json_node *rec, struct buf *k)
{
    const char *a = json_get_str(rec, t->mm->entity1_attr);
    const char *b = json_get_str(rec, t->mm->entity2_attr);
    if (!a || !b)
        return -EINVAL;
    buf_reset(k);
    if (add_lower(k, a) || buf_addch(k, '|') || add_lower(k, b))
        return -ENOMEM;
    return 0;
}

/* restore_map_fn for the point's side: the rctx's mapping. */
static int map_point(void *ctx, const struct dv_table *t, const char *attr, size_t attr_len,
                     const char *target_table, const char *id, size_t id_len,
                     const char **mapped_table, char mapped_id[40])
{
    struct digest_ctx *d = ctx;
    return restore_map_lookup(d->c, t, attr, attr_len, target_table, id, id_len, mapped_table,
                              mapped_id);
}

/* One record of either side into t->map. */
static int index_record(struct rctx *c, struct rtab *t, const struct json_node *rec,
                        const char *key, size_t kl, const struct rmap *files, bool target_side)
{
    struct buf norm = BUF_INIT, ik = BUF_INIT;
    int rc = 0;
    uint8_t dg[16] = {0};
    int32_t state = -1, status = -1;
    bool files_there = false;
    uint8_t files_dg[16] = {0};
    if (t->mm) {
        if ((rc = intersect_key(t, rec, &ik))) {
            if (rc == -EINVAL) { /* not a pair: nothing to associate */
                t->out->skipped++;
                rc = 0;
            }
            goto out;
        }
        key = ik.data;
        kl = ik.len;
    } else {
        struct digest_ctx d = {c, files, t->name, key, kl, t->def, false, {0}};
        struct restore_hooks h = {.ctx = &d, .file_digest = file_digest,
                                  .map = target_side ? NULL : map_point};
        c->cur = t;
        c->cur_key = key;
        c->cur_key_len = kl;
        rc = restore_normalize(t->def, rec, &h, &norm, target_side ? NULL : &t->skipped);
        if (rc)
            goto out;
        restore_digest(norm.data, norm.len, dg);
        if (t->def->is_activity)
            restore_parties_mix(c, target_side, key, kl, dg);
        files_there = d.any;
        memcpy(files_dg, d.sum, 16);
        restore_state_of(rec, &state, &status);
        if (!target_side && state == 0 && status >= 0 && t->open_status < 0)
            t->open_status = status;
    }
    struct rmap_entry *e = rmap_put(&t->map, key, kl, NULL);
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    if (target_side) {
        e->flags |= RMAP_IN_TARGET;
        memcpy(e->digest, dg, 16);
        if (files_there)
            e->flags |= RMAP_TARGET_FILES;
        memcpy(e->files, files_dg, sizeof(e->files));
        if (t->has_state) {
            e->flags |= RMAP_TARGET_STATE;
            e->tstate = state;
            e->tstatus = status;
        }
        /* an elastic row is deleted in its partition: the target's partitionid (freed with the
         * map: restore.c) */
        const char *part = t->def->is_elastic ? json_get_str(rec, DV_PARTITION_COLUMN) : NULL;
        if (part && !e->ptr && !(e->ptr = strdup(part))) {
            rc = -ENOMEM;
            goto out;
        }
    } else {
        e->flags |= RMAP_IN_POINT;
        bool fields = (e->flags & RMAP_IN_TARGET) && memcmp(e->digest, dg, 16) != 0;
        bool states = (e->flags & RMAP_IN_TARGET) && t->has_state &&
                      (state != e->tstate || status != e->tstatus);
        if (fields || c->rewrite_all)
            e->flags |= RMAP_FIELDS_DIFFER;
        if (states)
            e->flags |= RMAP_STATE_DIFFERS;
        if (!(e->flags & RMAP_IN_TARGET) || memcmp(e->files, files_dg, sizeof(e->files)) != 0)
            e->flags |= RMAP_FILES_DIFFER;
        if (!(e->flags & RMAP_IN_TARGET)) {
            e->action = ACT_CREATE;
            t->n_create++;
        } else if (fields || states || c->rewrite_all) {
            e->action = ACT_UPDATE;
            t->n_update++;
        } else {
            e->action = ACT_UNCHANGED;
            t->out->unchanged++;
        }
        if (e->action != ACT_UNCHANGED && c->req->dry_run) {
            struct strset *s = &t->keys[e->action == ACT_CREATE ? 0 : 1];
            if (s->n < FIRST_KEYS)
                strset_add(s, key, kl);
        }
    }
out:
    buf_release(&norm);
    buf_release(&ik);
    return rc;
}

struct line_ctx {
    struct rctx *c;
    struct rtab *t;
    const struct rmap *files;
    bool target_side;
};

/* One row of either side, stored (line_cb) or read live (read_cb), by its key in the map (an
 * elastic row: by id and partition). A row without a key is passed by; out of memory fails the
 * compare, whichever side the row is from: a row left out would make the plan wrong. */
static int index_row(struct line_ctx *l, const struct json_node *rec, const char *key, size_t kl)
{
    struct buf scratch = BUF_INIT;
    int rc = l->t->mm ? 0 : restore_record_key(l->t->def, rec, &scratch, &key, &kl);
    if (rc == 0)
        rc = index_record(l->c, l->t, rec, key, kl, l->files, l->target_side);
    else if (rc == -ENOENT)
        rc = 0;
    if (rc == -ENOMEM)
        dverr_set(l->c->err, rc, "comparing %s: out of memory", l->t->name);
    buf_release(&scratch);
    return rc;
}

static int line_cb(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct line_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, l->c->err);
    if (rc)
        return rc;
    rc = index_row(l, json_root(doc), key, key_len);
    json_doc_free(doc);
    return rc;
}

static int read_cb(void *ctx, const struct json_node *rec)
{
    struct line_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    const char *id = json_get_str(rec, l->t->def->primary_id);
    return id ? index_row(l, rec, id, strlen(id)) : 0;
}

static int read_deleted_cb(void *ctx, const char *id)
{
    return 0;
}

int restore_compare_table(struct rctx *c, struct rtab *t)
{
    int rc;
    struct line_ctx l = {c, t, NULL, true};
    c->counting = false;
    /* the target side: the safety point when it has the table, else a full read */
    if (c->safety && restore_table_in_point(c->safety, t->name)) {
        l.files = &c->tfiles;
        rc = table_iterate(c->repo, c->safety, t->name, line_cb, &l, c->err);
    } else {
        struct dv_read_cb cb = {read_cb, read_deleted_cb, &l};
        struct dv_read_stats st = {0};
        rc = dv_read_table(c->dv, &c->target, t->def, NULL, &cb, NULL, &st, c->err);
    }
    if (rc)
        return rc;
    l.files = &c->files;
    l.target_side = false;
    c->counting = true; /* fallback owners and dropped lookups, once per row of the point */
    rc = table_iterate(c->repo, c->point, t->name, line_cb, &l, c->err);
    c->counting = false;
    c->cur = NULL;
    if (rc)
        return rc;
    for (size_t i = 0; i < t->map.cap; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (e->key && (e->flags & RMAP_IN_TARGET) && !(e->flags & RMAP_IN_POINT)) {
            e->action = ACT_DELETE;
            t->n_delete++;
            if (c->req->dry_run)
                keep_smallest(&t->keys[2], e->key, e->key_len);
        }
    }
    if (c->req->dry_run || t->mm) {
        t->out->created = t->mm ? 0 : t->n_create;
        t->out->updated = t->mm ? 0 : t->n_update;
        t->out->deleted = t->mm ? 0 : t->n_delete;
        if (t->mm && c->req->dry_run) {
            t->out->associated = t->n_create;
            t->out->disassociated = t->n_delete;
        }
    }
    if (c->req->dry_run) {
        struct buf j = BUF_INIT;
        if (t->keys[2].n)
            qsort(t->keys[2].items, t->keys[2].n, sizeof(char *), cmp_str);
        static const char *const kinds[3] = {"create", "update", "delete"};
        buf_addch(&j, '{');
        for (int k = 0; k < 3; k++) {
            buf_printf(&j, "%s\"%s\":[", k ? "," : "", kinds[k]);
            for (size_t i = 0; i < t->keys[k].n; i++) {
                if (i)
                    buf_addch(&j, ',');
                buf_add_json_string(&j, t->keys[k].items[i], strlen(t->keys[k].items[i]));
            }
            buf_addch(&j, ']');
        }
        buf_addch(&j, '}');
        t->out->first_keys_json = buf_detach(&j);
    }
    return 0;
}
