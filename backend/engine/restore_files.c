/* restore_files: the files of a point (notes' attachments, file and image columns) by record and
 * column, and the upload of file and image columns after the records are written
 * (restore_int.h; the steps: restore.c).
 *
 * Files are indexed by "table\x1fkey\x1fcolumn" in an rmap whose entries point at the point's
 * point_files (the point outlives the index). File and image columns are uploaded one request
 * each (dv_file_upload, the business-logic bypass headers with it) for records this restore
 * created, and for records it updated whose columns' bytes differ; an image goes up full-size
 * (the point's blob is the full image). A failed upload is counted in its table's outcome with
 * the first error as the table's note, and the restore goes on.
 * Memory: one file's bytes at a time. Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void file_key(struct buf *b, const char *table, const char *key, size_t kl,
                     const char *column)
{
    buf_reset(b);
    buf_addstr(b, table);
    buf_addch(b, '\x1f');
    buf_add(b, key, kl);
    buf_addch(b, '\x1f');
    buf_addstr(b, column);
}

int restore_index_files(struct rmap *m, const struct point *p)
{
    struct buf k = BUF_INIT;
    for (size_t i = 0; p && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        if (!f->table || !f->record_id || !f->column || !f->blob)
            continue;
        file_key(&k, f->table, f->record_id, strlen(f->record_id), f->column);
        struct rmap_entry *e = rmap_put(m, k.data, k.len, NULL);
        if (!e) {
            buf_release(&k);
            return -ENOMEM;
        }
        e->ptr = (void *)f;
    }
    buf_release(&k);
    return 0;
}

const struct point_file *restore_find_file(const struct rmap *m, const char *table,
                                           const char *key, size_t kl, const char *column)
{
    struct buf k = BUF_INIT;
    file_key(&k, table, key, kl, column);
    struct rmap_entry *e = rmap_get(m, k.data, k.len);
    buf_release(&k);
    return e ? e->ptr : NULL;
}

/* The Web API describes file and image columns as AttributeType "Virtual" (with
 * AttributeTypeName FileType/ImageType, which struct dv_attribute does not carry): a column the
 * repository holds file bytes for is a file column, whatever its type says. */
void restore_mark_file_columns(struct rctx *c, const struct point *p)
{
    for (size_t i = 0; p && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        if (!f->table || !f->column || !strcmp(f->column, "documentbody"))
            continue;
        for (size_t d = 0; d < c->n_defs; d++) {
            struct dv_table *t = &c->defs[d];
            if (!t->logical_name || strcmp(t->logical_name, f->table))
                continue;
            for (size_t a = 0; a < t->n_attrs; a++) {
                struct dv_attribute *x = &t->attrs[a];
                if (!x->logical_name || strcmp(x->logical_name, f->column) || !x->type ||
                    !strcmp(x->type, "File") || !strcmp(x->type, "Image"))
                    continue;
                free(x->type);
                x->type = xstrdup("File");
            }
        }
    }
}

int restore_upload_files(struct rctx *c)
{
    int rc = 0;
    for (size_t i = 0; i < c->point->n_files && !rc; i++) {
        const struct point_file *f = &c->point->files[i];
        struct rtab *t = restore_tab_by_name(c, f->table);
        if (!t || !t->has_files || !f->record_id || !f->column)
            continue;
        const struct dv_attribute *a = restore_attr(t->def, f->column, strlen(f->column));
        if (!a || !a->type || (strcmp(a->type, "File") && strcmp(a->type, "Image")))
            continue;
        struct rmap_entry *e = rmap_get(&t->map, f->record_id, strlen(f->record_id));
        if (!e || (e->action != ACT_CREATE && e->action != ACT_UPDATE) ||
            !(e->flags & RMAP_FILES_DIFFER))
            continue;
        struct buf raw = BUF_INIT;
        rc = repo_blob_get(c->repo, f->blob, &raw, c->err);
        if (!rc) {
            struct dverr ferr = {0};
            c->out->write_requests++;
            int frc = dv_file_upload(c->dv, &c->target, t->def->entity_set, f->record_id,
                                     f->column, f->file_name ? f->file_name : "file",
                                     raw.data ? raw.data : "", raw.len, c->write_headers, &ferr);
            if (frc) {
                t->out->failed++;
                if (!t->out->note) {
                    struct buf n = BUF_INIT;
                    buf_printf(&n, "file %s of %s: %s", f->column, f->record_id,
                               dverr_msg(&ferr));
                    t->out->note = buf_detach(&n);
                }
            } else {
                t->out->files++;
            }
        }
        buf_release(&raw);
        if (cancelled(c))
            rc = dverr_set(c->err, -ECANCELED, "restore cancelled");
    }
    return rc;
}
