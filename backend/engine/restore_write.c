/* restore_write: the writes a restore's difference needs, queued as $batch parts (restore_int.h;
 * the steps: restore.c; sending: restore_batch.c).
 *
 * Upserts are PATCH by the point's key (a create is an upsert too, so a rerun never duplicates),
 * table by table with referenced tables first. A lookup to a record of a table not yet written
 * that this restore creates is left out of the record's body and set afterwards by a second PATCH
 * (deferred binds); notes' documentbody comes from the point's blob. An updated record's file
 * columns that the point holds no bytes for are cleared (DELETE of the column). Then N:N pairs
 * are associated or disassociated ($ref) and records deleted, referencing tables first.
 * Memory: the deferred binds (path and body of each) are held until the upserts are queued.
 * Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

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

static char *record_path(const struct dv_table *def, const char *key, size_t kl)
{
    struct buf p = BUF_INIT;
    buf_printf(&p, "%s(%.*s)", def->entity_set, (int)kl, key);
    return buf_detach(&p);
}

struct deferred {
    char *path, *body;
    struct rtab *t;
};
struct write_ctx {
    struct rctx *c;
    struct rtab *t;
    struct deferred *def;
    size_t n_def, cap_def;
};

static int upsert_cb(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct write_ctx *w = ctx;
    struct rctx *c = w->c;
    struct rtab *t = w->t;
    if (cancelled(c))
        return -ECANCELED;
    struct rmap_entry *e = rmap_get(&t->map, key, key_len);
    if (!e || (e->action != ACT_CREATE && e->action != ACT_UPDATE))
        return 0;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, c->err);
    if (rc)
        return rc;
    struct buf body = BUF_INIT, later = BUF_INIT;
    c->cur = t;
    c->cur_key = key;
    c->cur_key_len = key_len;
    bool create = e->action == ACT_CREATE;
    rc = restore_body(t->def, json_root(doc), create, bind_decide, c, body_blob, c, &body, &later);
    json_doc_free(doc);
    if (rc)
        goto out;
    e->flags |= RMAP_SENT;
    rc = restore_queue(c, t, create ? K_CREATE : K_UPDATE, "PATCH",
                       record_path(t->def, key, key_len), buf_detach(&body));
    if (rc)
        goto out;
    if (later.len) {
        if (w->n_def == w->cap_def) {
            size_t cap = w->cap_def ? w->cap_def * 2 : 64;
            struct deferred *d = realloc(w->def, cap * sizeof(*d));
            if (!d) {
                rc = -ENOMEM;
                goto out;
            }
            w->def = d;
            w->cap_def = cap;
        }
        w->def[w->n_def].path = record_path(t->def, key, key_len);
        w->def[w->n_def].body = buf_detach(&later);
        w->def[w->n_def].t = t;
        w->n_def++;
    }
    /* file columns of an updated record: clear those the point has no bytes for */
    if (!create && t->has_files) {
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
        rc = restore_queue(c, t, K_DELETE, "DELETE", record_path(t->def, e->key, e->key_len), NULL);
    }
    return rc;
}

int restore_write_changes(struct rctx *c)
{
    int rc = 0;
    /* 1. upserts, referenced tables first */
    struct write_ctx w = {c, NULL, NULL, 0, 0};
    for (size_t o = 0; o < c->n_order && !rc; o++) {
        struct rtab *t = &c->tabs[c->order[o]];
        w.t = t;
        if (t->n_create || t->n_update)
            rc = table_iterate(c->repo, c->point, t->name, upsert_cb, &w, c->err);
        t->written = true;
    }
    /* 2. lookups to records created after the record that names them */
    for (size_t i = 0; i < w.n_def; i++) {
        if (!rc)
            rc = restore_queue(c, w.def[i].t, K_BIND, "PATCH", w.def[i].path, w.def[i].body);
        else {
            free(w.def[i].path);
            free(w.def[i].body);
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
