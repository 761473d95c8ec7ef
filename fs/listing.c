/* listing: what a directory holds. listing_children gives every listed child of a node (for
 * readdir; with a name, only that child, for lookup); listing_resolve resolves one name,
 * including what is never listed (the control files, at/<time>). An entry (struct dent) carries
 * what its node will be.
 *
 * Limits: each call lists afresh (directories have no handle: see ll_opendir); the root, an
 * environment and labels/ refresh their lists first when older than ENV_TIMEOUT; a point's
 * directories come from its point view; .operations/ from the control.
 * Threading: any thread; takes fsd->vmu briefly, never across source or control calls. A struct
 * dirh belongs to its caller; its strings live in a few blocks it frees at once (a cold listing
 * of the 700-table org spent a fifth of its time in malloc and free, four strings an entry). */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIRH_BLOCK 16384 /* a listing's string blocks */

void dirh_clear(struct dirh *d)
{
    arena_release(&d->strings);
    free(d->e);
    *d = (struct dirh){0};
}

/* A copy of s in d's string blocks (NULL for NULL; prev when it is the same string). */
static const char *dirh_str(struct dirh *d, const char *s, const char *prev, bool *nomem)
{
    if (!s)
        return NULL;
    if (prev && strcmp(s, prev) == 0)
        return prev;
    if (!d->strings.block)
        d->strings.block = DIRH_BLOCK;
    char *out = arena_strndup(&d->strings, s, strlen(s));
    if (!out)
        *nomem = true;
    return out;
}

static int dirh_add(struct dirh *d, const char *name, enum nkind kind, const char *env,
                    const char *point, const char *arg, int idx)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct dent *e = realloc(d->e, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        d->e = e;
        d->cap = cap;
    }
    const struct dent *last = d->n ? &d->e[d->n - 1] : NULL;
    struct dent *x = &d->e[d->n];
    bool nomem = false;
    x->name = dirh_str(d, name, NULL, &nomem);
    x->kind = kind;
    x->env = dirh_str(d, env, last ? last->env : NULL, &nomem);
    x->point = dirh_str(d, point, last ? last->point : NULL, &nomem);
    x->arg = dirh_str(d, arg, NULL, &nomem);
    x->idx = idx;
    if (nomem)
        return -ENOMEM;
    d->n++;
    return 0;
}

/* Every listed child of n (control files and at/ children are never listed). With only != NULL,
 * stop after the child of that name (lookup). */
int listing_children(struct fsd *f, const struct node *n, const char *only, struct dirh *d)
{
    int rc = 0;
#define ADD(name, kind, env, point, arg, idx)                                                     \
    do {                                                                                          \
        if (!only || strcmp(only, (name)) == 0) {                                                 \
            rc = dirh_add(d, (name), (kind), (env), (point), (arg), (idx));                       \
            if (rc || only)                                                                       \
                goto out;                                                                         \
        }                                                                                         \
    } while (0)
    switch (n->kind) {
    case N_ROOT: {
        ADD("README.txt", N_README, NULL, NULL, NULL, 0);
        ADD(".operations", N_OPS_DIR, NULL, NULL, NULL, 0);
        envs_refresh(f, ENV_TIMEOUT * 1000);
        pthread_mutex_lock(&f->vmu);
        for (size_t i = 0; i < f->n_envs && !rc; i++)
            if (!only || strcmp(only, f->env_dnames[i]) == 0)
                rc = dirh_add(d, f->env_dnames[i], N_ENV, f->env_names[i], NULL, NULL, 0);
        pthread_mutex_unlock(&f->vmu);
        break;
    }
    case N_OPS_DIR: {
        if (!f->o->control)
            break;
        char **ids = NULL;
        size_t k = 0;
        if (f->o->control->ops->ops_list(f->o->control->ctx, &ids, &k) == 0) {
            for (size_t i = 0; i < k && !rc; i++) {
                char nm[300];
                snprintf(nm, sizeof nm, "%s.json", ids[i]);
                if (!only || strcmp(only, nm) == 0)
                    rc = dirh_add(d, nm, N_OP_FILE, NULL, NULL, ids[i], 0);
            }
            strv_free(ids, k);
        }
        break;
    }
    case N_ENV: {
        ADD("environment.json", N_ENV_JSON, n->env, NULL, NULL, 0);
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        if (!only || strcmp(only, "latest") == 0) {
            struct pinfo pi = env_point_latest(f, n->env);
            if (pi.found)
                ADD("latest", N_LATEST, n->env, NULL, NULL, 0);
        }
        ADD("labels", N_LABELS, n->env, NULL, NULL, 0);
        ADD("at", N_AT, n->env, NULL, NULL, 0);
        if (only) {
            struct pinfo pi = env_point_lookup(f, n->env, only);
            if (pi.found)
                ADD(pi.name, N_POINT, n->env, pi.name, NULL, 0);
            break;
        }
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, n->env);
        for (size_t i = 0; e && i < e->n && !rc; i++)
            rc = dirh_add(d, e->pts[i].name, N_POINT, n->env, e->pts[i].name, NULL, 0);
        pthread_mutex_unlock(&f->vmu);
        break;
    }
    case N_LABELS: {
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, n->env);
        for (size_t i = 0; e && i < e->n_labels && !rc; i++)
            if (!only || strcmp(only, e->labels[i]) == 0)
                rc = dirh_add(d, e->labels[i], N_LABEL, n->env, NULL, e->labels[i], 0);
        pthread_mutex_unlock(&f->vmu);
        break;
    }
    case N_AT:
        break; /* lookup only */
    case N_POINT: {
        ADD("backup.json", N_BACKUP_JSON, n->env, n->point, NULL, 0);
        ADD("tables", N_TABLES, n->env, n->point, NULL, 0);
        ADD("schema", N_SCHEMA, n->env, n->point, NULL, 0);
        ADD("changes", N_CHANGES, n->env, n->point, NULL, 0);
        ADD("files", N_FILES, n->env, n->point, NULL, 0);
        if (!only || strcmp(only, "audit.json") == 0) {
            struct pview *v;
            if (pview_get(f, n->env, n->point, false, &v) == 0) {
                bool has = v->p->audit_table && fs_table_index(v->p, v->p->audit_table) >= 0;
                pview_put(f, v);
                if (has)
                    ADD("audit.json", N_AUDIT, n->env, n->point, NULL, 0);
            }
        }
        break;
    }
    case N_TABLES: case N_SCHEMA: case N_CHANGES: case N_FILES: case N_FILES_TABLE:
    case N_FILES_RECORD: {
        struct pview *v;
        rc = pview_get(f, n->env, n->point, fs_needs_files(n->kind), &v);
        if (rc)
            break;
        const struct point *p = v->p;
        if (!pview_index_ok(v, n->kind, n->idx)) {
            rc = -ENOENT;
        } else if (n->kind == N_TABLES || n->kind == N_SCHEMA || n->kind == N_CHANGES) {
            enum nkind ck = n->kind == N_TABLES ? N_TABLE
                            : n->kind == N_SCHEMA ? N_SCHEMA_FILE : N_CHANGE_FILE;
            for (size_t i = 0; i < p->n_tables && !rc; i++) {
                if (ck == N_SCHEMA_FILE && !p->tables[i].schema)
                    continue;
                if (ck == N_CHANGE_FILE && !p->tables[i].delta)
                    continue;
                if (!only || strcmp(only, v->tnames[i]) == 0)
                    rc = dirh_add(d, v->tnames[i], ck, n->env, n->point, NULL, (int)i);
            }
        } else if (n->kind == N_FILES) {
            for (size_t t = 0; t < v->n_ftab && !rc; t++)
                if (!only || strcmp(only, v->ftab[t]) == 0)
                    rc = dirh_add(d, v->ftab[t], N_FILES_TABLE, n->env, n->point, NULL, (int)t);
        } else if (n->kind == N_FILES_TABLE) {
            /* a record directory's node is its first file's index; files are sorted by table
             * directory and record directory (a lookup seeks to its name) */
            const char *prev = NULL;
            for (size_t i = pview_files_seek(v, (size_t)n->idx, only); i < v->n_files && !rc; i++) {
                const struct ffile *ff = &v->files[i];
                if (ff->tdir != (size_t)n->idx || (only && strcmp(only, ff->rdir) != 0))
                    break;
                if (prev && strcmp(prev, ff->rdir) == 0)
                    continue;
                prev = ff->rdir;
                rc = dirh_add(d, ff->rdir, N_FILES_RECORD, n->env, n->point, NULL, (int)i);
            }
        } else {
            /* a record directory's files follow its first one (files are sorted by directory) */
            const struct ffile *first = &v->files[n->idx];
            for (size_t i = (size_t)n->idx; i < v->n_files && !rc; i++) {
                const struct ffile *ff = &v->files[i];
                if (ff->tdir != first->tdir || strcmp(ff->rdir, first->rdir) != 0)
                    break;
                if (!only || strcmp(only, ff->fname) == 0)
                    rc = dirh_add(d, ff->fname, N_FILE, n->env, n->point, NULL, (int)i);
            }
        }
        pview_put(f, v);
        break;
    }
    default:
        rc = -ENOTDIR;
    }
#undef ADD
out:
    return rc;
}

/* Resolve one child name (including what is never listed). 0 with d->n == 1, or -ENOENT. */
int listing_resolve(struct fsd *f, const struct node *n, const char *name, struct dirh *d)
{
    if (n->kind == N_ENV && strcmp(name, ".backup") == 0)
        return f->o->control ? dirh_add(d, name, N_BACKUP_CTL, n->env, NULL, NULL, 0) : -ENOENT;
    if (n->kind == N_POINT && strcmp(name, ".restore") == 0) {
        if (!f->o->control)
            return -ENOENT;
        return dirh_add(d, name, N_RESTORE_CTL, n->env, n->point, NULL, 0);
    }
    if (n->kind == N_AT) {
        time_t t;
        if (fs_parse_at_time(name, &t))
            return -ENOENT;
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        if (!env_point_at(f, n->env, t).found)
            return -ENOENT;
        return dirh_add(d, name, N_AT_LINK, n->env, NULL, name, 0);
    }
    int rc = listing_children(f, n, name, d);
    if (rc)
        return rc;
    return d->n ? 0 : -ENOENT;
}
