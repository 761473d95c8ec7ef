/* point_view: loaded points (parsed manifests) with the view's names for them:
 * tables/<name>.json (sanitised, unique, room for ".json"), files/<table>/<record>/<name> (unique
 * within a record directory) and the rendered backup.json. Kept in an LRU, found by a hash of
 * env and point, within FS_POINT_BYTES (estimated) and FS_POINT_CACHE views; views in use are
 * never evicted. A point's file list (hundreds of chunks in a big org) is read only for files/:
 * the other views load the point without it (with_files false), so opening a table reads the
 * manifest and its shared tables document whatever the number of files. A files/ entry's names
 * are pointers into the view's arena (two per file, a record's directory name shared by its
 * files): about 70 bytes a file on top of the point's own entry (reckoned, not measured).
 *
 * Limits: the byte count is an estimate (16 bytes of allocator overhead per block); views in use
 * can hold the total over budget until they are put back; two requests that miss the same point
 * at once both load it (both views are kept, the newer is found first).
 * Threading: any thread. fsd->vmu guards the LRU, the hash table, refs and schema sizes; loading,
 * building and freeing run without it. A view's other fields never change once it is built, so
 * the holder of a reference reads them without a lock. */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

void pview_free(struct fsd *f, struct pview *v)
{
    if (!v)
        return;
    if (v->p)
        f->src->ops->point_free(v->p);
    free(v->env);
    free(v->name);
    free(v->tnames);
    free(v->schema_size);
    free(v->ftab);
    free(v->files);
    arena_release(&v->names);
    buf_release(&v->backup_json);
    free(v);
}

static int cmp_ffile(const void *a, const void *b)
{
    const struct ffile *x = a, *y = b;
    if (x->tdir != y->tdir)
        return x->tdir < y->tdir ? -1 : 1;
    int c = strcmp(x->rdir, y->rdir);
    if (c)
        return c;
    return strcmp(x->fname, y->fname);
}

/* A sanitised copy of s in the view's names (NULL when out of memory). */
static const char *view_name(struct pview *v, const char *s)
{
    char nm[256];
    name_sanitize(s, strlen(s), nm);
    return arena_strndup(&v->names, nm, strlen(nm));
}

/* files/<table>/<record>/<name>: the point's files sorted by table and record directory (the
 * same order every time the point is loaded: node.c numbers a file by its index here), names
 * made unique within a record directory. */
static int pview_build_files(struct pview *v)
{
    const struct point *p = v->p;
    size_t cap_ftab = 0;
    v->names.block = 64 * 1024;
    v->files = calloc(p->n_files ? p->n_files : 1, sizeof *v->files);
    if (!v->files)
        return -ENOMEM;
    const struct point_file *prev = NULL;
    for (size_t i = 0; i < p->n_files; i++) {
        const struct point_file *pf = &p->files[i];
        char tn[256];
        name_sanitize(pf->table, strlen(pf->table), tn);
        size_t t;
        for (t = 0; t < v->n_ftab; t++)
            if (strcmp(v->ftab[t], tn) == 0)
                break;
        if (t == v->n_ftab) {
            if (v->n_ftab == cap_ftab) {
                cap_ftab = cap_ftab ? 2 * cap_ftab : 8;
                char (*ftab)[256] = realloc(v->ftab, cap_ftab * sizeof *ftab);
                if (!ftab)
                    return -ENOMEM;
                v->ftab = ftab;
            }
            memcpy(v->ftab[v->n_ftab++], tn, 256);
        }
        struct ffile *ff = &v->files[v->n_files++];
        ff->tdir = (uint32_t)t;
        ff->idx = (uint32_t)i;
        /* a record's files are next to each other in the list: one name for them */
        bool same = prev && strcmp(prev->table, pf->table) == 0 &&
                    strcmp(prev->record_id, pf->record_id) == 0;
        ff->rdir = same ? v->files[v->n_files - 2].rdir : view_name(v, pf->record_id);
        const char *fnm = pf->file_name && *pf->file_name ? pf->file_name : pf->column;
        ff->fname = view_name(v, fnm ? fnm : "file");
        if (!ff->rdir || !ff->fname)
            return -ENOMEM;
        prev = pf;
    }
    /* unique names within a record directory: sort, then suffix; a directory's files are
     * contiguous */
    qsort(v->files, v->n_files, sizeof *v->files, cmp_ffile);
    size_t dir_start = 0;
    for (size_t i = 1; i < v->n_files; i++) {
        struct ffile *a = &v->files[i];
        if (a->tdir != v->files[i - 1].tdir || strcmp(a->rdir, v->files[i - 1].rdir) != 0)
            dir_start = i;
        char name[256];
        snprintf(name, sizeof name, "%s", a->fname);
        for (int k = 2;; k++) {
            bool clash = false;
            for (size_t j = dir_start; j < i && !clash; j++)
                clash = strcmp(v->files[j].fname, name) == 0;
            if (!clash)
                break;
            snprintf(name, sizeof name, "%s", a->fname);
            name_unique_suffix(name, k);
        }
        if (strcmp(name, a->fname) != 0 &&
            !(a->fname = arena_strndup(&v->names, name, strlen(name))))
            return -ENOMEM;
    }
    return 0;
}

static int pview_build(struct fsd *f, struct pview *v)
{
    int rc;
    struct point *p = v->p;
    size_t nt = p->n_tables;
    v->tnames = calloc(nt ? nt : 1, sizeof *v->tnames);
    v->schema_size = calloc(nt ? nt : 1, sizeof *v->schema_size);
    if (!v->tnames || !v->schema_size)
        return -ENOMEM;
    for (size_t i = 0; i < nt; i++) {
        char nm[256];
        v->schema_size[i] = -1;
        name_sanitize(p->tables[i].name, strlen(p->tables[i].name), nm);
        /* room for ".json" */
        if (strlen(nm) > 250) {
            nm[250] = '\0';
            while (strlen(nm) > 0 && ((unsigned char)nm[strlen(nm) - 1] & 0xc0) == 0x80)
                nm[strlen(nm) - 1] = '\0';
        }
        char base[256];
        memcpy(base, nm, 256);
        for (int k = 2;; k++) {
            char full[300];
            snprintf(full, sizeof full, "%s.json", nm);
            bool clash = false;
            for (size_t j = 0; j < i && !clash; j++)
                clash = strcmp(v->tnames[j], full) == 0;
            if (!clash) {
                memcpy(v->tnames[i], full, strlen(full) + 1);
                break;
            }
            memcpy(nm, base, 256);
            name_unique_suffix(nm, k);
            nm[250] = '\0';
        }
    }
    if (v->with_files && (rc = pview_build_files(v)))
        return rc;
    return f->src->ops->backup_json(f->src->impl, p, &v->backup_json);
}

/* The memory a view holds, estimated from what it points to (16 bytes of allocator overhead per
 * block): what the point-view budget counts. */
static size_t str_bytes(const char *s)
{
    return s ? strlen(s) + 17 : 0;
}

static size_t pview_bytes(const struct pview *v)
{
    const struct point *p = v->p;
    size_t b = sizeof *v + str_bytes(v->env) + str_bytes(v->name) + v->backup_json.cap + 16;
    if (!p)
        return b;
    b += sizeof *p + str_bytes(p->env) + str_bytes(p->name) + str_bytes(p->kind) +
         str_bytes(p->label) + str_bytes(p->not_captured_json) + str_bytes(p->env_json) +
         str_bytes(p->audit_table) + str_bytes(p->anomaly_json);
    for (size_t i = 0; i < p->n_tables; i++) {
        const struct point_table *t = &p->tables[i];
        b += sizeof *t + sizeof *v->tnames + sizeof *v->schema_size + str_bytes(t->name) +
             str_bytes(t->entity_set) + str_bytes(t->primary_key) + str_bytes(t->delta) +
             str_bytes(t->schema) + str_bytes(t->delta_link) + str_bytes(t->full_read_reason) +
             t->n_segments * (sizeof *t->segments + sizeof(uint64_t)) + 32;
        for (size_t j = 0; j < t->n_segments; j++)
            b += str_bytes(t->segments[j]);
    }
    /* a point loaded from chunks keeps its files' strings in an arena; otherwise each string
     * is an allocation */
    b += p->files_strings.bytes + v->names.bytes + v->n_ftab * sizeof *v->ftab;
    for (size_t i = 0; i < p->n_files; i++) {
        const struct point_file *pf = &p->files[i];
        b += sizeof *pf + sizeof *v->files;
        if (!p->files_strings.blocks)
            b += str_bytes(pf->table) + str_bytes(pf->record_id) + str_bytes(pf->column) +
                 str_bytes(pf->file_name) + str_bytes(pf->blob);
    }
    return b;
}

static uint64_t pview_key(const char *env, const char *point)
{
    return fs_fnv1a(env) * 0x100000001b3ULL ^ fs_fnv1a(point);
}

/* Over budget: more than FS_POINT_BYTES of views, or more than FS_POINT_CACHE of them (vmu). */
static bool pviews_over(const struct fsd *f)
{
    return f->n_pviews > FS_POINT_CACHE || (f->n_pviews > 1 && f->pview_bytes > FS_POINT_BYTES);
}

static void pv_hash_add(struct fsd *f, struct pview *v)
{
    struct pview **b = &f->pv_hash[v->key & (PV_BUCKETS - 1)];
    v->hnext = *b;
    *b = v;
}

static void pv_hash_remove(struct fsd *f, struct pview *v)
{
    for (struct pview **pp = &f->pv_hash[v->key & (PV_BUCKETS - 1)]; *pp; pp = &(*pp)->hnext)
        if (*pp == v) {
            *pp = v->hnext;
            break;
        }
    v->hnext = NULL;
}

static void pview_lru_unlink(struct fsd *f, struct pview *v)
{
    if (v->prev)
        v->prev->next = v->next;
    else if (f->lru_head == v)
        f->lru_head = v->next;
    if (v->next)
        v->next->prev = v->prev;
    else if (f->lru_tail == v)
        f->lru_tail = v->prev;
    v->prev = v->next = NULL;
}

static void pview_lru_push(struct fsd *f, struct pview *v)
{
    v->prev = f->lru_tail;
    v->next = NULL;
    if (f->lru_tail)
        f->lru_tail->next = v;
    else
        f->lru_head = v;
    f->lru_tail = v;
}

/* Take v out of the LRU, the hash and the counts (vmu); the caller frees it. */
static void pview_unlist(struct fsd *f, struct pview *v)
{
    pview_lru_unlink(f, v);
    pv_hash_remove(f, v);
    f->n_pviews--;
    f->pview_bytes -= v->bytes;
}

/* Free the views linked through prev (gathered under vmu; freed without it). */
static void pview_free_chain(struct fsd *f, struct pview *victims)
{
    while (victims) {
        struct pview *x = victims;
        victims = x->prev;
        pview_free(f, x);
    }
}

bool fs_needs_files(enum nkind kind)
{
    return kind == N_FILES || kind == N_FILES_TABLE || kind == N_FILES_RECORD || kind == N_FILE;
}

/* A referenced view of env/point (-ENOENT when the point does not exist). A view with files
 * serves both; a view without is loaded again with them when they are asked for (the newer view
 * is found first, the older one ages out of the LRU). */
int pview_get(struct fsd *f, const char *env, const char *point, bool with_files,
              struct pview **out)
{
    uint64_t key = pview_key(env, point);
    pthread_mutex_lock(&f->vmu);
    for (struct pview *v = f->pv_hash[key & (PV_BUCKETS - 1)]; v; v = v->hnext) {
        if (v->key == key && (v->with_files || !with_files) && strcmp(v->name, point) == 0 &&
            strcmp(v->env, env) == 0) {
            v->refs++;
            pview_lru_unlink(f, v);
            pview_lru_push(f, v);
            pthread_mutex_unlock(&f->vmu);
            *out = v;
            return 0;
        }
    }
    pthread_mutex_unlock(&f->vmu);

    struct pview *v = calloc(1, sizeof *v);
    struct dverr err = {0};
    if (!v)
        return -ENOMEM;
    v->env = strdup(env);
    v->name = strdup(point);
    v->key = key;
    v->with_files = with_files;
    int rc = v->env && v->name ? 0 : -ENOMEM;
    if (!rc)
        rc = f->src->ops->point_load(f->src->impl, env, point, with_files, &v->p, &err);
    if (!rc && with_files && v->p->files_later)
        rc = -EIO; /* a source that does not honour with_files */
    if (!rc)
        rc = pview_build(f, v);
    if (rc) {
        if (rc != -ENOENT)
            log_warn("mount: point %s/%s: %s", env, point, dverr_msg(&err));
        pview_free(f, v);
        return rc == -ENOENT ? -ENOENT : -EIO;
    }
    v->refs = 1;
    v->bytes = pview_bytes(v);
    struct pview *victims = NULL;
    pthread_mutex_lock(&f->vmu);
    pview_lru_push(f, v);
    pv_hash_add(f, v);
    f->n_pviews++;
    f->pview_bytes += v->bytes;
    /* evict the least recently used views nobody holds until within budget (prev links the
     * victims while they wait to be freed outside the lock) */
    for (struct pview *x = f->lru_head, *next; x && pviews_over(f); x = next) {
        next = x->next;
        if (x->refs != 0)
            continue;
        pview_unlist(f, x);
        x->prev = victims;
        victims = x;
    }
    pthread_mutex_unlock(&f->vmu);
    pview_free_chain(f, victims);
    *out = v;
    return 0;
}

void pview_put(struct fsd *f, struct pview *v)
{
    if (!v)
        return;
    struct pview *victim = NULL;
    pthread_mutex_lock(&f->vmu);
    v->refs--;
    if (v->refs == 0 && v->dead) {
        victim = v; /* dropped while in use: already out of the LRU and the counts */
    } else if (v->refs == 0 && pviews_over(f)) {
        pview_unlist(f, v);
        victim = v;
    }
    pthread_mutex_unlock(&f->vmu);
    pview_free(f, victim);
}

void pview_drop(struct fsd *f, const char *env, const char *point)
{
    uint64_t key = pview_key(env, point);
    struct pview *victims = NULL;
    pthread_mutex_lock(&f->vmu);
    for (struct pview *v = f->pv_hash[key & (PV_BUCKETS - 1)], *next; v; v = next) {
        next = v->hnext;
        if (v->key != key || strcmp(v->name, point) != 0 || strcmp(v->env, env) != 0)
            continue;
        pview_unlist(f, v);
        v->dead = true;
        if (v->refs == 0) {
            v->prev = victims;
            victims = v;
        }
    }
    pthread_mutex_unlock(&f->vmu);
    pview_free_chain(f, victims);
}

size_t pview_files_seek(const struct pview *v, size_t tdir, const char *rdir)
{
    size_t lo = 0, hi = v->n_files;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct ffile *ff = &v->files[mid];
        bool before = ff->tdir < tdir || (ff->tdir == tdir && rdir && strcmp(ff->rdir, rdir) < 0);
        if (before)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool pview_index_ok(const struct pview *v, enum nkind kind, int idx)
{
    if (idx < 0)
        return false;
    switch (kind) {
    case N_TABLE: case N_SCHEMA_FILE: case N_CHANGE_FILE:
        return (size_t)idx < v->p->n_tables;
    case N_FILES_TABLE:
        return (size_t)idx < v->n_ftab;
    case N_FILES_RECORD: case N_FILE:
        return (size_t)idx < v->n_files;
    default:
        return true;
    }
}

int fs_table_index(const struct point *p, const char *name)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (strcmp(p->tables[i].name, name) == 0)
            return (int)i;
    return -1;
}
