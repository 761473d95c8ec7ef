/* erase: removing chosen records from every point of an environment (contract in erase.h).
 *
 * The plan reads each distinct segment of the environment's points at most three times: to find
 * the records a field's value names (a substring test first, then the line is parsed), to find
 * the records that regard them and the lookups that refer to them (every `"<field>_value":"<id>"`
 * of every line), and to find the segments that hold them. Segments are shared by many points'
 * chains, so each is rewritten once (the copy keeps every other entry as it was; lines are
 * compared as readers see them) and every point that names it gets the copy.
 *
 * A point's new counts come from what was removed, not from reading the table again: for each
 * erased key the newest removed entry in the table's chain is the record's state at that point (a
 * live line: one record and its length less; a delete: nothing); the table file's size follows
 * (record.h table_file_size). The point's own delta segment, when it was rewritten, gives its
 * change counts and the changes file's size (segment_stats). Empty copies leave the chain; an
 * empty delta leaves the point with no changes for that table.
 *
 * Crash safety (erase.h): the journal goes first, new segments before the manifests that name
 * them, old objects only after every manifest of the environment is rewritten, the log and the
 * journal's removal last. A rerun with the journal there finishes it: points already rewritten
 * hold no erased key, so only the rest is done, and the journal's object list says what to
 * delete even when no manifest names those objects any more.
 * Limits: every manifest of the environment is held in memory during the run; the key sets are
 * in memory (about 100 bytes a record).
 * Threading: one thread; the repository is held exclusively (repo_exclusive). */
#include "backend/engine/erase_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/base/keymap.h"
#include "backend/base/log.h"
#include "backend/base/record.h"
#include "backend/repo/manifest.h"

/* ---------------------------------------------------------------- key sets */

void erase_targets_init(struct targets *t)
{
    memset(t, 0, sizeof *t);
    keymap_init(&t->all, sizeof(struct anykey), offsetof(struct anykey, key),
                offsetof(struct anykey, len));
}

static void targets_release(struct targets *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].table);
        keymap_release(&t->v[i].keys);
    }
    free(t->v);
    keymap_release(&t->all);
    memset(t, 0, sizeof *t);
}

static struct tset *tset_find(const struct targets *t, const char *table)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].table, table) == 0)
            return &t->v[i];
    return NULL;
}

int erase_targets_add(struct targets *t, const char *table, const char *key, size_t len)
{
    struct tset *s = tset_find(t, table);
    if (!s) {
        struct tset *v = realloc(t->v, (t->n + 1) * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        s = &v[t->n];
        memset(s, 0, sizeof *s);
        if (!(s->table = strdup(table)))
            return -ENOMEM;
        keymap_init(&s->keys, sizeof(struct tkey), offsetof(struct tkey, key),
                    offsetof(struct tkey, len));
        t->n++;
    }
    if (!keymap_put(&s->keys, key, len, NULL) || !keymap_put(&t->all, key, len, NULL))
        return -ENOMEM;
    return 0;
}

static struct tkey *targets_get(const struct targets *t, const char *table, const char *key,
                                size_t len)
{
    const struct tset *s = tset_find(t, table);
    return s ? keymap_get(&s->keys, key, len) : NULL;
}

uint64_t erase_targets_count(const struct targets *t)
{
    uint64_t n = 0;
    for (size_t i = 0; i < t->n; i++)
        n += t->v[i].keys.n;
    return n;
}

/* ---------------------------------------------------------------- points and segments */

static int cmp_seg(const void *a, const void *b)
{
    return strcmp(((const struct seg *)a)->id, ((const struct seg *)b)->id);
}

static struct seg *seg_find(const struct run *r, const char *id)
{
    struct seg key;
    if (!id || strlen(id) >= sizeof key.id)
        return NULL;
    memcpy(key.id, id, strlen(id) + 1);
    return r->n_segs ? bsearch(&key, r->segs, r->n_segs, sizeof *r->segs, cmp_seg) : NULL;
}

static int load_points(struct run *r)
{
    struct point_summary *ps = NULL;
    size_t n = 0;
    int rc = repo_points(r->repo, r->req->env, &ps, &n, r->err);
    if (rc)
        return rc;
    if (!(r->pts = calloc(n ? n : 1, sizeof *r->pts)))
        rc = dverr_set(r->err, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < n; i++)
        if (!(rc = repo_point_load(r->repo, r->req->env, ps[i].name, &r->pts[r->n_pts], r->err)))
            r->n_pts++;
    point_summaries_free(ps, n);
    if (rc)
        return rc;
    /* the distinct segments, each with its table */
    size_t cap = 0;
    for (size_t i = 0; i < r->n_pts; i++)
        for (size_t k = 0; k < r->pts[i]->n_tables; k++)
            cap += r->pts[i]->tables[k].n_segments + 1;
    if (!(r->segs = calloc(cap ? cap : 1, sizeof *r->segs)))
        return dverr_set(r->err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < r->n_pts; i++)
        for (size_t k = 0; k < r->pts[i]->n_tables; k++) {
            const struct point_table *pt = &r->pts[i]->tables[k];
            for (size_t s = 0; s <= pt->n_segments; s++) {
                const char *id = s < pt->n_segments ? pt->segments[s] : pt->delta;
                if (!id || !segment_id_ok(id))
                    continue;
                struct seg *g = &r->segs[r->n_segs++];
                memcpy(g->id, id, 65);
                g->table = pt->name;
            }
        }
    qsort(r->segs, r->n_segs, sizeof *r->segs, cmp_seg);
    size_t o = 0;
    for (size_t i = 0; i < r->n_segs; i++)
        if (o == 0 || strcmp(r->segs[o - 1].id, r->segs[i].id) != 0)
            r->segs[o++] = r->segs[i];
    r->n_segs = o;
    for (size_t i = 0; i < r->n_segs; i++)
        keymap_init(&r->segs[i].removed, sizeof(struct rkey), offsetof(struct rkey, key),
                    offsetof(struct rkey, len));
    return 0;
}

/* The table's logical name in the points, from a logical name or an entity set. */
static const char *table_name(const struct run *r, const char *name)
{
    for (size_t i = r->n_pts; i-- > 0;)
        for (size_t k = 0; k < r->pts[i]->n_tables; k++) {
            const struct point_table *pt = &r->pts[i]->tables[k];
            if (strcmp(pt->name, name) == 0 ||
                (pt->entity_set && strcmp(pt->entity_set, name) == 0))
                return pt->name;
        }
    return NULL;
}

/* ---------------------------------------------------------------- finding the records */

struct where_ctx {
    struct run *r;
    const char *table;
    char **needles;         /* per match: what a line holding the value must contain */
};

/* true when the record line's member field holds value (a string, or a number as sent). */
static bool field_holds(const char *line, size_t len, const char *field, const char *value)
{
    struct json_doc *doc = NULL;
    if (json_parse(line, len, NULL, &doc, NULL))
        return false;
    const struct json_node *v = json_get(json_root(doc), field);
    bool hit = v && (v->type == JSON_STRING || v->type == JSON_NUMBER) &&
               v->str_len == strlen(value) && memcmp(v->str, value, v->str_len) == 0;
    json_doc_free(doc);
    return hit;
}

static int where_entry(void *arg, const struct segment_entry *e)
{
    struct where_ctx *c = arg;
    if (e->op == SEG_DELETE)
        return 0;
    for (size_t i = 0; i < c->r->req->n_where; i++) {
        const struct erase_match *m = &c->r->req->where[i];
        if (!memmem(e->line, e->line_len, c->needles[i], strlen(c->needles[i])) ||
            !field_holds(e->line, e->line_len, m->field, m->value))
            continue;
        if (erase_targets_add(&c->r->t, c->table, e->key, e->key_len))
            return dverr_set(c->r->err, -ENOMEM, "out of memory");
    }
    return 0;
}

/* A value as it appears inside a canonical line: its JSON string text without the quotes. */
static char *needle_of(const char *value)
{
    struct buf b = BUF_INIT;
    if (buf_add_json_string(&b, value, strlen(value)) || b.len < 2) {
        buf_release(&b);
        return NULL;
    }
    b.data[b.len - 1] = '\0';
    char *s = strdup(b.data + 1);
    buf_release(&b);
    return s;
}

static int find_where(struct run *r)
{
    int rc = 0;
    struct where_ctx c = {r, NULL, calloc(r->req->n_where + 1, sizeof(char *))};
    for (size_t i = 0; c.needles && i < r->req->n_where && !rc; i++)
        if (!(c.needles[i] = needle_of(r->req->where[i].value)))
            rc = -ENOMEM;
    if (!c.needles || rc)
        rc = dverr_set(r->err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < r->n_segs && !rc; i++) {
        c.table = r->segs[i].table;
        rc = repo_segment_iterate(r->repo, r->segs[i].id, where_entry, &c, r->err);
    }
    for (size_t i = 0; c.needles && i < r->req->n_where; i++)
        free(c.needles[i]);
    free(c.needles);
    return rc;
}

static bool is_related_field(const char *f, size_t n)
{
    return (n == 15 && memcmp(f, "_objectid_value", 15) == 0) ||
           (n == 24 && memcmp(f, "_regardingobjectid_value", 24) == 0);
}

struct ref_ctx {
    struct run *r;
    struct seg *g;
    uint64_t added;
};

/* A version of a record to erase: its segment is rewritten, the record is found. */
static struct tkey *mark_dirty(struct run *r, struct seg *g, const struct segment_entry *e)
{
    struct tkey *k = targets_get(&r->t, g->table, e->key, e->key_len);
    if (k) {
        g->dirty = true;
        k->found = true;
    }
    return k;
}

/* Every `"<field>_value":"<id>"` of the line whose id is a record to erase: with related, a
 * record regarding one (_objectid_value, _regardingobjectid_value) is erased too; any other is
 * reported as a reference. A version of a record to erase marks its segment (mark_dirty). */
static int ref_entry(void *arg, const struct segment_entry *e)
{
    struct ref_ctx *c = arg;
    static const char pat[] = "_value\":\"";
    const size_t pl = sizeof pat - 1;
    if (mark_dirty(c->r, c->g, e) || e->op == SEG_DELETE)
        return 0;
    const char *refs[16][2]; /* field start, field end */
    size_t n_refs = 0;
    bool related = false;
    const char *end = e->line + e->line_len;
    for (const char *p = e->line; (p = memmem(p, (size_t)(end - p), pat, pl));) {
        const char *fend = p + 6, *fstart = p;
        while (fstart > e->line && fstart[-1] != '"')
            fstart--;
        const char *v = p + pl;
        const char *vend = memchr(v, '"', (size_t)(end - v));
        p = v;
        if (!vend || vend - v > 200 || !keymap_get(&c->r->t.all, v, (size_t)(vend - v)))
            continue;
        if (c->r->req->related && is_related_field(fstart, (size_t)(fend - fstart)))
            related = true;
        else if (n_refs < 16) {
            refs[n_refs][0] = fstart;
            refs[n_refs++][1] = fend;
        }
    }
    if (related) {
        c->added++;
        return erase_targets_add(&c->r->t, c->g->table, e->key, e->key_len)
                   ? dverr_set(c->r->err, -ENOMEM, "out of memory")
                   : 0;
    }
    for (size_t i = 0; i < n_refs; i++) {
        struct buf k = BUF_INIT;
        buf_printf(&k, "%s\t%.*s\t", c->g->table, (int)(refs[i][1] - refs[i][0]), refs[i][0]);
        buf_add(&k, e->key, e->key_len);
        bool ok = k.data && keymap_put(&c->r->refs, k.data, k.len, NULL);
        buf_release(&k);
        if (!ok)
            return dverr_set(c->r->err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int dirty_entry(void *arg, const struct segment_entry *e)
{
    struct ref_ctx *c = arg;
    mark_dirty(c->r, c->g, e);
    return 0;
}

/* The segments that hold a version of a record to erase (dirty), and the records found. */
static int find_dirty(struct run *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->n_segs && !rc; i++) {
        if (!tset_find(&r->t, r->segs[i].table))
            continue;
        struct ref_ctx c = {r, &r->segs[i], 0};
        rc = repo_segment_iterate(r->repo, r->segs[i].id, dirty_entry, &c, r->err);
    }
    return rc;
}

/* Passes until no record is added: a note regarding an erased account is found in one pass,
 * the audit records regarding that note in the next. A pass that adds nothing has seen every
 * version of every record to erase, so its marks are find_dirty's: the segments are read again
 * only when the pass limit stops the passes while records were still being added. */
static int find_related(struct run *r)
{
    struct ref_ctx c = {r, NULL, 1};
    int rc = 0;
    for (int pass = 0; c.added && pass < 8 && !rc; pass++) {
        c.added = 0;
        for (size_t i = 0; i < r->n_segs && !rc; i++) {
            c.g = &r->segs[i];
            rc = repo_segment_iterate(r->repo, r->segs[i].id, ref_entry, &c, r->err);
        }
        if (!r->req->related)
            break;
    }
    if (!rc && c.added)
        rc = find_dirty(r);
    return rc;
}

/* ---------------------------------------------------------------- the plan */

static bool file_erased(const struct run *r, const struct point_file *f)
{
    return f->table && f->record_id &&
           targets_get(&r->t, f->table, f->record_id, strlen(f->record_id)) != NULL;
}

static bool point_affected(const struct run *r, const struct point *p)
{
    for (size_t k = 0; k < p->n_tables; k++) {
        const struct point_table *pt = &p->tables[k];
        for (size_t s = 0; s <= pt->n_segments; s++) {
            const struct seg *g = seg_find(r, s < pt->n_segments ? pt->segments[s] : pt->delta);
            if (g && g->dirty)
                return true;
        }
    }
    for (size_t f = 0; f < p->n_files; f++)
        if (file_erased(r, &p->files[f]))
            return true;
    return false;
}

static int add_str(char ***v, size_t *n, const char *s)
{
    char **nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (!nv)
        return -ENOMEM;
    *v = nv;
    if (!(nv[*n] = strdup(s)))
        return -ENOMEM;
    (*n)++;
    return 0;
}

int erase_cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_count(const void *a, const void *b)
{
    return strcmp(((const struct erase_count *)a)->table, ((const struct erase_count *)b)->table);
}

/* Counts, held points, references and the objects to drop, into the report. */
static int plan_report(struct run *r)
{
    struct erase_report *rep = r->rep;
    int rc = 0;
    rep->records = erase_targets_count(&r->t);
    for (size_t i = 0; i < r->t.n && !rc; i++) {
        struct erase_count *v = realloc(rep->tables, (rep->n_tables + 1) * sizeof *v);
        if (!v)
            return -ENOMEM;
        rep->tables = v;
        v[rep->n_tables].table = strdup(r->t.v[i].table);
        v[rep->n_tables].records = r->t.v[i].keys.n;
        if (!v[rep->n_tables++].table)
            return -ENOMEM;
    }
    qsort(rep->tables, rep->n_tables, sizeof *rep->tables, cmp_count);
    for (size_t i = 0; i < r->req->n_ids; i++) {
        const char *tn = table_name(r, r->req->ids[i].table);
        struct tkey *k = tn ? targets_get(&r->t, tn, r->req->ids[i].key,
                                          strlen(r->req->ids[i].key))
                            : NULL;
        if (!k || !k->found)
            rep->ids_not_found++;
    }
    for (size_t i = 0; i < r->n_segs; i++)
        if (r->segs[i].dirty) {
            char name[80];
            uint64_t size = 0;
            struct dverr ignore = {0};
            segment_object_name(r->segs[i].id, name);
            struct objstore *st = repo_store(r->repo);
            st->ops->stat(st->impl, name, &size, &ignore);
            rep->segments++;
            rep->segment_bytes += size;
            buf_printf(&r->objects, "%s\n", r->segs[i].id);
        }
    struct point_hold *holds = NULL;
    size_t n_holds = 0;
    if ((rc = repo_holds(r->repo, r->req->env, &holds, &n_holds, r->err)))
        return rc;
    time_t now = r->req->now ? r->req->now : time(NULL);
    for (size_t i = 0; i < r->n_pts && !rc; i++) {
        const struct point *p = r->pts[i];
        if (!point_affected(r, p))
            continue;
        rep->points++;
        for (size_t f = 0; f < p->n_files; f++)
            if (file_erased(r, &p->files[f])) {
                rep->files++;
                buf_printf(&r->objects, "%s\n", p->files[f].blob);
            }
        /* a point's shared tables document and file list (manifest formats 2 and 3) are stored
         * again by the rewrite: the old ones go once no point names them */
        if (p->tables_object && p->files_object)
            buf_printf(&r->objects, "%s\n%s\n", p->tables_object, p->files_object);
        for (size_t k = 0; k < p->n_files_chunks; k++) /* format 3: its file list's chunks */
            buf_printf(&r->objects, "%s\n", p->files_chunks[k]);
        for (size_t h = 0; h < n_holds && !rc; h++)
            if (strcmp(holds[h].point, p->name) == 0 && point_hold_active(&holds[h], now)) {
                char line[1200];
                snprintf(line, sizeof line, "%s (%s)", p->name,
                         holds[h].reason ? holds[h].reason : "no reason given");
                rc = add_str(&rep->held, &rep->n_held, line);
            }
    }
    point_holds_free(holds, n_holds);
    /* references: "table.field: N records refer to erased records" */
    char **keys = calloc(r->refs.n + 1, sizeof *keys);
    size_t nk = 0;
    for (size_t i = 0; keys && i < r->refs.cap; i++) {
        const struct anykey *a = keymap_slot(&r->refs, i);
        if (!a->key)
            continue;
        const char *t1 = strchr(a->key, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        char table[300];
        if (!t2 || t1 - a->key >= (long)sizeof table)
            continue;
        snprintf(table, sizeof table, "%.*s", (int)(t1 - a->key), a->key);
        if (!targets_get(&r->t, table, t2 + 1, strlen(t2 + 1))) /* erased after all: related */
            keys[nk++] = (char *)a->key;
    }
    if (!keys)
        return -ENOMEM;
    qsort(keys, nk, sizeof *keys, erase_cmp_strp);
    for (size_t i = 0; i < nk && !rc;) {
        const char *tab2 = strchr(strchr(keys[i], '\t') + 1, '\t');
        size_t plen = (size_t)(tab2 - keys[i]);
        size_t j = i;
        while (j < nk && strncmp(keys[j], keys[i], plen) == 0 && keys[j][plen] == '\t')
            j++;
        char line[600];
        const char *tab1 = strchr(keys[i], '\t');
        snprintf(line, sizeof line, "%.*s.%.*s: %zu record%s refer%s to erased records",
                 (int)(tab1 - keys[i]), keys[i], (int)(tab2 - tab1 - 1), tab1 + 1, j - i,
                 j - i == 1 ? "" : "s", j - i == 1 ? "s" : "");
        rc = add_str(&rep->refs, &rep->n_refs, line);
        i = j;
    }
    free(keys);
    return rc;
}

/* ---------------------------------------------------------------- rewriting */

struct rw_ctx {
    struct run *r;
    struct seg *g;
    bool oom;
};

static bool rw_drop(void *arg, const struct segment_entry *e)
{
    struct rw_ctx *c = arg;
    return targets_get(&c->r->t, c->g->table, e->key, e->key_len) != NULL;
}

static void rw_removed(void *arg, const struct segment_entry *e)
{
    struct rw_ctx *c = arg;
    struct rkey *k = keymap_put(&c->g->removed, e->key, e->key_len, NULL);
    if (!k) {
        c->oom = true;
        return;
    }
    k->op = e->op;
    k->line_len = e->line_len;
}

static int rewrite_segments(struct run *r)
{
    int rc = 0;
    for (size_t i = 0; i < r->n_segs && !rc; i++) {
        struct seg *g = &r->segs[i];
        if (!g->dirty)
            continue;
        struct rw_ctx c = {r, g, false};
        rc = repo_segment_rewrite(r->repo, g->id, strcmp(g->table, "annotation") == 0, rw_drop,
                                  rw_removed, &c, g->new_id, &g->st, &g->new_size, r->err);
        if (rc)
            break;
        if (c.oom)
            return dverr_set(r->err, -ENOMEM, "out of memory");
        g->rewritten = true;
        if (g->new_id[0]) {
            r->rep->objects_written++;
            r->rep->bytes_written += g->new_size;
        }
    }
    return rc;
}

/* The table of p with its chain's copies and its counts without the erased records. */
static int rewrite_table(struct run *r, struct point_table *t)
{
    struct keymap seen;
    keymap_init(&seen, sizeof(struct anykey), offsetof(struct anykey, key),
                offsetof(struct anykey, len));
    uint64_t records = t->records;
    uint64_t line_bytes = records ? t->bytes - table_file_size(records, 0) : 0;
    int rc = 0;
    /* the records' state at this point: the newest removed entry in the chain */
    for (size_t s = t->n_segments; s-- > 0 && !rc;) {
        const struct seg *g = seg_find(r, t->segments[s]);
        if (!g || !g->rewritten)
            continue;
        for (size_t i = 0; i < g->removed.cap; i++) {
            const struct rkey *k = keymap_slot(&g->removed, i);
            bool fresh = false;
            if (!k->key)
                continue;
            if (!keymap_put(&seen, k->key, k->len, &fresh)) {
                rc = -ENOMEM;
                break;
            }
            if (fresh && k->op != SEG_DELETE && records > 0) {
                records--;
                line_bytes -= k->line_len < line_bytes ? k->line_len : line_bytes;
            }
        }
    }
    keymap_release(&seen);
    if (rc)
        return rc;
    t->records = records;
    t->bytes = table_file_size(records, records ? line_bytes : 0);
    /* the chain: copies in place of the old segments, empty ones left out */
    size_t o = 0;
    for (size_t s = 0; s < t->n_segments; s++) {
        const struct seg *g = seg_find(r, t->segments[s]);
        uint64_t size = t->segment_sizes ? t->segment_sizes[s] : 0;
        if (g && g->rewritten) {
            free(t->segments[s]);
            t->segments[s] = NULL;
            if (!g->new_id[0])
                continue;
            if (!(t->segments[s] = strdup(g->new_id)))
                return -ENOMEM;
            size = g->new_size;
        }
        t->segments[o] = t->segments[s];
        if (t->segment_sizes)
            t->segment_sizes[o] = size;
        o++;
    }
    t->n_segments = o;
    const struct seg *d = seg_find(r, t->delta);
    if (d && d->rewritten) {
        free(t->delta);
        t->delta = d->new_id[0] ? strdup(d->new_id) : NULL;
        if (d->new_id[0] && !t->delta)
            return -ENOMEM;
        t->created = d->new_id[0] ? d->st.creates + d->st.bases : 0;
        t->updated = d->new_id[0] ? d->st.updates : 0;
        t->deleted = d->new_id[0] ? d->st.deletes : 0;
        t->changes_bytes = d->new_id[0] ? d->st.changes_bytes : table_file_size(0, 0);
    }
    return 0;
}

static int rewrite_point(struct run *r, const struct point *p)
{
    struct point *q = point_dup(p);
    if (!q)
        return dverr_set(r->err, -ENOMEM, "out of memory");
    int rc = 0;
    for (size_t k = 0; k < q->n_tables && !rc; k++)
        if (tset_find(&r->t, q->tables[k].name))
            rc = rewrite_table(r, &q->tables[k]);
    if (rc)
        rc = dverr_set(r->err, rc, "out of memory");
    size_t o = 0;
    for (size_t f = 0; f < q->n_files && !rc; f++) {
        struct point_file *pf = &q->files[f];
        if (file_erased(r, pf)) {
            free(pf->table);
            free(pf->record_id);
            free(pf->column);
            free(pf->file_name);
            free(pf->blob);
            continue;
        }
        q->files[o++] = *pf;
    }
    if (!rc)
        q->n_files = o;
    if (!rc)
        rc = repo_point_replace(r->repo, q, r->err);
    point_free(q);
    return rc;
}

/* ---------------------------------------------------------------- the run */

static void run_release(struct run *r)
{
    for (size_t i = 0; i < r->n_pts; i++)
        point_free(r->pts[i]);
    free(r->pts);
    for (size_t i = 0; i < r->n_segs; i++)
        keymap_release(&r->segs[i].removed);
    free(r->segs);
    targets_release(&r->t);
    keymap_release(&r->refs);
    buf_release(&r->objects);
}

/* Erase r->t (and r->objects) from every point: the journal, the copies, the manifests, the old
 * objects, the catalog, the log. */
static int execute(struct run *r, time_t started, bool resumed)
{
    int rc = erase_journal_write(r, started);
    if (!rc)
        rc = rewrite_segments(r);
    for (size_t i = 0; i < r->n_pts && !rc; i++)
        if (point_affected(r, r->pts[i]))
            rc = rewrite_point(r, r->pts[i]);
    /* every manifest is rewritten: the old objects can go */
    char **ids = NULL;
    size_t n = 0;
    for (const char *p = r->objects.data; !rc && p && *p;) {
        const char *nl = strchr(p, '\n');
        char id[65];
        snprintf(id, sizeof id, "%.*s", (int)(nl - p), p);
        rc = add_str(&ids, &n, id);
        p = nl + 1;
    }
    if (rc == -ENOMEM)
        dverr_set(r->err, rc, "out of memory");
    if (!rc)
        rc = repo_objects_drop_unreferenced(r->repo, ids, n, &r->rep->objects_removed,
                                            &r->rep->bytes_removed, r->err);
    for (size_t i = 0; !rc && i < n; i++) { /* the blobs gone, for the cache */
        char name[80];
        uint64_t size;
        struct dverr ignore = {0};
        segment_object_name(ids[i], name);
        struct objstore *st = repo_store(r->repo);
        if (st->ops->stat(st->impl, name, &size, &ignore) == -ENOENT)
            rc = add_str(&r->rep->blobs_removed, &r->rep->n_blobs_removed, ids[i]);
    }
    strv_free(ids, n);
    if (!rc)
        rc = repo_env_catalog_refresh(r->repo, r->req->env, r->err);
    time_t finished = r->req->now ? r->req->now : time(NULL);
    if (!rc)
        rc = erase_log_write(r, started, finished, resumed);
    if (!rc) {
        char name[300];
        erase_journal_name(r->req->env, name, sizeof name);
        rc = repo_erase_doc_del(r->repo, name, r->err);
    }
    if (!rc) /* this machine's state is rebuilt already (repo_env_catalog_refresh) */
        rc = repo_erasure_noted(r->repo, r->req->env, r->err);
    return rc;
}

/* Finish the erasure a journal recorded (0 when there was none). */
static int finish_journal(struct repo *repo, const struct erase_request *req,
                          struct erase_report *rep, struct dverr *err)
{
    struct run r = {repo, req, rep, err, NULL, 0, NULL, 0, {0}, {0}, BUF_INIT};
    char started[32], by[300], crit[1000];
    bool override = false;
    erase_targets_init(&r.t);
    keymap_init(&r.refs, sizeof(struct anykey), offsetof(struct anykey, key),
                offsetof(struct anykey, len));
    int rc = erase_journal_read(repo, req->env, &r.t, &r.objects, started, by, sizeof by, crit,
                          sizeof crit, &override, err);
    if (rc == -ENOENT) {
        run_release(&r);
        return 0;
    }
    struct erase_request jreq = *req;
    jreq.ids = NULL;
    jreq.n_ids = 0;
    jreq.where = NULL;
    jreq.n_where = 0;
    jreq.related = false;
    jreq.by = by;
    jreq.criterion = crit;
    jreq.override_hold = override;
    r.req = &jreq;
    time_t t0 = 0;
    if (!rc && rfc3339_to_time(started, &t0))
        t0 = req->now ? req->now : time(NULL);
    if (!rc)
        rc = load_points(&r);
    if (!rc)
        rc = find_dirty(&r);
    struct buf journal_objects = r.objects; /* the plan adds what is still named */
    r.objects = (struct buf)BUF_INIT;
    if (!rc)
        rc = plan_report(&r);
    if (!rc && journal_objects.len)
        rc = buf_add(&r.objects, journal_objects.data, journal_objects.len);
    buf_release(&journal_objects);
    log_info("%s: finishing the erasure started at %s by %s", req->env, started, by);
    if (!rc)
        rc = execute(&r, t0, true);
    /* the report is the new request's; this run is said by resumed */
    run_release(&r);
    return rc;
}

int erase_run(struct repo *repo, const struct erase_request *req, struct erase_report *rep,
              struct dverr *err)
{
    memset(rep, 0, sizeof *rep);
    if (!req->env || !manifest_env_name_ok(req->env))
        return dverr_set(err, -EINVAL, "no environment to erase from");
    struct repo_exclusive *x = NULL;
    int rc = req->dry_run ? 0 : repo_exclusive_begin(repo, &x, err);
    if (rc)
        return rc;
    bool resumed = false;
    if (!req->dry_run) { /* an erasure a killed run left: finish it first */
        struct erase_report jr = {0};
        rc = finish_journal(repo, req, &jr, err);
        resumed = rc == 0 && jr.log_name[0];
        rep->blobs_removed = jr.blobs_removed; /* the cache must drop those too */
        rep->n_blobs_removed = jr.n_blobs_removed;
        jr.blobs_removed = NULL;
        jr.n_blobs_removed = 0;
        erase_report_release(&jr);
        if (rc) {
            repo_exclusive_end(x);
            return rc;
        }
    } else { /* say that the real run would finish one first */
        char name[300];
        struct buf doc = BUF_INIT;
        struct dverr ignore = {0};
        erase_journal_name(req->env, name, sizeof name);
        rep->unfinished = repo_erase_doc_get(repo, name, &doc, &ignore) == 0;
        buf_release(&doc);
    }
    struct run r = {repo, req, rep, err, NULL, 0, NULL, 0, {0}, {0}, BUF_INIT};
    erase_targets_init(&r.t);
    keymap_init(&r.refs, sizeof(struct anykey), offsetof(struct anykey, key),
                offsetof(struct anykey, len));
    time_t started = req->now ? req->now : time(NULL);
    rc = load_points(&r);
    for (size_t i = 0; !rc && i < req->n_ids; i++) {
        const char *tn = table_name(&r, req->ids[i].table);
        if (!tn)
            continue; /* counted as not found */
        if (erase_targets_add(&r.t, tn, req->ids[i].key, strlen(req->ids[i].key)))
            rc = dverr_set(err, -ENOMEM, "out of memory");
    }
    if (!rc && req->n_where)
        rc = find_where(&r);
    if (!rc && erase_targets_count(&r.t))
        rc = find_related(&r); /* also marks the segments to rewrite (find_dirty) */
    if (!rc && plan_report(&r))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    if (!rc && !rep->points && !resumed)
        rc = dverr_set(err, -ENOENT, "%s: no point holds such a record", req->env);
    if (!rc && rep->n_held && !req->override_hold)
        rc = dverr_set(err, -EPERM, "%s: %zu point%s that hold%s these records %s under a hold "
                       "(first: %s); release %s, or erase with the override", req->env,
                       rep->n_held, rep->n_held == 1 ? "" : "s", rep->n_held == 1 ? "s" : "",
                       rep->n_held == 1 ? "is" : "are", rep->held[0],
                       rep->n_held == 1 ? "it" : "them");
    if (!rc && !req->dry_run && rep->points)
        rc = execute(&r, started, false);
    rep->resumed = resumed;
    run_release(&r);
    repo_exclusive_end(x);
    if (rc == -ENOENT && resumed)
        rc = 0;
    return rc;
}

void erase_report_release(struct erase_report *rep)
{
    if (!rep)
        return;
    for (size_t i = 0; i < rep->n_tables; i++)
        free(rep->tables[i].table);
    free(rep->tables);
    strv_free(rep->held, rep->n_held);
    strv_free(rep->refs, rep->n_refs);
    strv_free(rep->blobs_removed, rep->n_blobs_removed);
    memset(rep, 0, sizeof *rep);
}
