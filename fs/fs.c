/* fs: the FUSE view (contract in fs.h). Low-level libfuse3 API, explicit multi-threaded loop.
 *
 * Nodes: one struct node per kernel-known inode, created by lookup/readdirplus and dropped when
 * the kernel forgets it (nlookup 0), so memory stays flat under `find`. A node's identity is its
 * path in the view; its inode number is a 63-bit FNV-1a hash of that path (collisions probe to
 * the next free number), control files get the top bit set (a reserved range), the root is 1.
 * So numbers are stable for the life of the mount and, barring collisions, across mounts.
 * Node fields other than nlookup never change after creation (parents are pinned by the kernel
 * while their children are looked up), so handlers read them without a lock.
 *
 * Views: the environment list, each environment's points (refreshed at most every refresh_ms,
 * and by the refresher thread which then invalidates the kernel's entries), and an LRU of loaded
 * points with their sanitised, unique file names.
 *
 * Reads of cached files never hold a FUSE worker while a fill renders: a read whose bytes are not
 * there yet is left with the cache as a waiter and answered by the completer thread when the
 * fill publishes them (or fails, or stalls past the cache's bound: EIO); an interrupt (the reader
 * got a signal) withdraws it with EINTR. fsd->cq_mu guards the completer's queue.
 *
 * Locks: fsd->mu guards the node tables; fsd->vmu guards the views and the point LRU. Neither is
 * held across source, control or cache calls, nor across fuse_lowlevel_notify_*. */
#include "fs/fs.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "fs/passthrough.h"

#define IMMUTABLE_TIMEOUT 86400.0
#define ENV_TIMEOUT 1.0
#define CTL_BIT (1ULL << 63)

enum nkind {
    N_ROOT, N_README, N_OPS_DIR, N_OP_FILE,
    N_ENV, N_ENV_JSON, N_BACKUP_CTL, N_LATEST, N_LABELS, N_LABEL, N_AT, N_AT_LINK,
    N_POINT, N_BACKUP_JSON, N_RESTORE_CTL, N_AUDIT, N_TABLES, N_TABLE, N_SCHEMA, N_SCHEMA_FILE,
    N_CHANGES, N_CHANGE_FILE, N_FILES, N_FILES_TABLE, N_FILES_RECORD, N_FILE,
};

static const char README_TEXT[] =
    "dvsnap: Dataverse backups as files\n"
    "\n"
    "<env>/                         one directory per environment\n"
    "  environment.json             type, region, url, admin mode, retention, captures\n"
    "  latest -> <point>            the newest restore point\n"
    "  <YYYY-MM-DDTHHMMSSZ>/        one directory per restore point (UTC); never changes\n"
    "    backup.json                kind, label, taken_at, expires_at, tables, not captured\n"
    "    tables/<table>.json        the table at that point: one record per line, sorted by key\n"
    "    schema/<table>.json        the table definition\n"
    "    changes/<table>.json       records created/updated/deleted since the point before\n"
    "    files/<table>/<id>/<name>  attachments and file columns\n"
    "    audit.json                 audit records, when captured\n"
    "  labels/<label> -> ../<point> manual backups by label\n"
    "  at/<RFC 3339 time>           the point in force at that time (lookup only), e.g.\n"
    "                               ls at/2026-11-21T09:30:00Z/tables\n"
    ".operations/<id>.json          every backup and restore: state, progress, errors\n"
    "\n"
    "Control files (reachable by name, never listed; mount owner or root only):\n"
    "  echo LABEL > <env>/.backup                 take a manual backup labelled LABEL\n"
    "  cat <env>/.backup                          its progress, outcome or refusal\n"
    "  echo 'target=ENV confirm=ENV [tables=a,b] [audit=include|skip] [dry-run]' \\\n"
    "       > <env>/<point>/.restore              restore the point into a sandbox\n"
    "  cat <env>/<point>/.restore                 its progress, outcome or refusal\n"
    "  rmdir <env>/<point>                        delete a manual backup (system: EPERM)\n"
    "\n"
    "Everything else is read-only (EROFS).\n";

struct node {
    fuse_ino_t ino;
    uint64_t nlookup;          /* fsd->mu */
    enum nkind kind;
    char *path;
    uint64_t phash;
    char *env, *point, *arg;   /* immutable; NULL when not relevant */
    int i1, i2;
    struct node *inext, *pnext; /* fsd->mu */
};

struct eview {
    char *name;                /* real unique name */
    struct point_summary *pts; /* vmu; oldest first */
    size_t n;
    int64_t at_ms;
    uint64_t hash;
    char (*labels)[256];       /* sanitised unique label names */
    size_t *label_pt;          /* index in pts */
    size_t n_labels;
    bool watched;              /* the refresher keeps it fresh */
    /* changed since the refresher last told the kernel, by whichever thread saw it, and the
     * points that went away meanwhile (vmu) */
    bool notify;
    char (*gone)[32];
    size_t n_gone;
    struct eview *next;
};

struct ffile {                 /* one entry under files/ */
    size_t tdir;               /* index in ftab */
    char rdir[256];            /* record directory name */
    char fname[256];           /* file name (unique within the record directory) */
    size_t idx;                /* index in point->files */
};

struct pview {
    char *env, *name;
    uint64_t key;              /* fnv1a of env and name: compared before the strings */
    size_t bytes;              /* an estimate of the memory it holds (pview_bytes) */
    int refs;                  /* vmu */
    bool dead;                 /* out of the LRU; freed at refs 0 */
    struct point *p;
    char (*tnames)[256];       /* tables/<tnames[i]> for p->tables[i] */
    int64_t *schema_size;      /* vmu; -1 unknown */
    char (*ftab)[256];
    size_t n_ftab;
    struct ffile *files;
    size_t n_files;
    struct buf backup_json;
    struct pview *prev, *next; /* LRU, vmu */
    struct pview *hnext;       /* chain in fsd.pv_hash, vmu */
};

#define PV_BUCKETS 4096 /* a power of two */

struct fsd {
    const struct fs_opts *o;
    const struct fs_source *src;
    struct fuse_session *se;
    uid_t owner;
    gid_t group;
    time_t started;

    pthread_mutex_t mu;
    struct node **by_ino, **by_path;
    size_t n_buckets, n_nodes;

    pthread_mutex_t vmu;
    char **env_names;          /* real names, sorted */
    char (*env_dnames)[256];   /* directory names */
    size_t n_envs;
    int64_t envs_at;
    uint64_t envs_hash;
    struct eview *eviews;
    struct pview *lru_head, *lru_tail;
    size_t n_pviews, pview_bytes; /* views held, and their estimated bytes (vmu) */
    struct pview *pv_hash[PV_BUCKETS]; /* the views in the LRU by key (a list walk missed the
                                          CPU cache on every view: 1000 points cost ~1M misses) */

    pthread_t refresher;
    bool refresher_started;
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cond;
    bool stopping;
    bool refresh_now;          /* a change was seen: run the refresher's pass now (stop_mu) */
    bool envs_notify;          /* the environment list changed since the kernel was told (vmu) */

    /* reads answered when the cache has their bytes (see ll_read) */
    pthread_mutex_t cq_mu;
    pthread_cond_t cq_cond;
    struct aread *cq_head, *cq_tail;
    pthread_t completer;
    bool completer_started, cq_stop;

    uint64_t ops_hash;            /* the .operations listing the refresher saw last */
    struct passthrough *pt;       /* FUSE passthrough of cached files (see open_mode_pick) */
    struct open_count *open_counts; /* cached files open, per inode (mu) */
    struct handle *handles;       /* every open file (mu): those whose RELEASE never came are
                                     freed when the session ends */
};

/* How a cached file's inode is open, for the kernel's rule that an inode is open either through
 * the FUSE page cache or through passthrough, never both at once. Kept per inode number (not in
 * the node: a FORGET can overtake the last RELEASE). Counts only grow before the reply and only
 * shrink at RELEASE, which the kernel sends after it let go of the open, so they never
 * undercount. */
struct open_count {
    fuse_ino_t ino;
    int cached, passthrough;
    int backing_id;           /* registered while passthrough > 0 */
    struct open_count *next;
};

struct dent {
    char *name;
    enum nkind kind;
    char *env, *point, *arg;
    int i1, i2;
};

struct dirh {
    struct dent *e;
    size_t n, cap;
};

enum htype { H_MEM, H_CACHE, H_CTL };
enum open_mode { OPEN_UNCOUNTED, OPEN_CACHED, OPEN_PASSTHROUGH };
struct handle {
    enum htype type;
    struct buf mem;            /* H_MEM and the status of H_CTL */
    struct cache_file *cf;
    bool write;
    enum open_mode mode;       /* H_CACHE: counted in f->open_counts as */
    struct handle *prev, *next; /* f->handles (f->mu) */
};

static struct fsd *fsd_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

/* ---- hashing and small helpers ---- */
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

static bool is_ctl(enum nkind k)
{
    return k == N_BACKUP_CTL || k == N_RESTORE_CTL;
}

static bool is_dir(enum nkind k)
{
    switch (k) {
    case N_ROOT: case N_OPS_DIR: case N_ENV: case N_LABELS: case N_AT: case N_POINT:
    case N_TABLES: case N_SCHEMA: case N_CHANGES: case N_FILES: case N_FILES_TABLE:
    case N_FILES_RECORD:
        return true;
    default:
        return false;
    }
}

static bool is_link(enum nkind k)
{
    return k == N_LATEST || k == N_LABEL || k == N_AT_LINK;
}

/* under a restore point: never changes */
static bool is_immutable(enum nkind k)
{
    return k >= N_POINT && k != N_RESTORE_CTL;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

/* ---- node tables (fsd->mu held) ---- */
static struct node *node_by_ino(struct fsd *f, fuse_ino_t ino)
{
    for (struct node *n = f->by_ino[ino % f->n_buckets]; n; n = n->inext)
        if (n->ino == ino)
            return n;
    return NULL;
}

static struct node *node_by_path(struct fsd *f, const char *path, uint64_t h)
{
    for (struct node *n = f->by_path[h % f->n_buckets]; n; n = n->pnext)
        if (n->phash == h && strcmp(n->path, path) == 0)
            return n;
    return NULL;
}

static void node_link(struct fsd *f, struct node *n)
{
    size_t b = n->ino % f->n_buckets;
    n->inext = f->by_ino[b];
    f->by_ino[b] = n;
    b = n->phash % f->n_buckets;
    n->pnext = f->by_path[b];
    f->by_path[b] = n;
    f->n_nodes++;
}

static void grow_tables(struct fsd *f)
{
    size_t nb = f->n_buckets * 2;
    struct node **bi = calloc(nb, sizeof *bi), **bp = calloc(nb, sizeof *bp);
    if (!bi || !bp) {
        free(bi);
        free(bp);
        return;
    }
    for (size_t i = 0; i < f->n_buckets; i++) {
        struct node *n, *next;
        for (n = f->by_ino[i]; n; n = next) {
            next = n->inext;
            n->inext = bi[n->ino % nb];
            bi[n->ino % nb] = n;
        }
        for (n = f->by_path[i]; n; n = next) {
            next = n->pnext;
            n->pnext = bp[n->phash % nb];
            bp[n->phash % nb] = n;
        }
    }
    free(f->by_ino);
    free(f->by_path);
    f->by_ino = bi;
    f->by_path = bp;
    f->n_buckets = nb;
}

static void node_unlink(struct fsd *f, struct node *n)
{
    struct node **pp;
    for (pp = &f->by_ino[n->ino % f->n_buckets]; *pp; pp = &(*pp)->inext)
        if (*pp == n) {
            *pp = n->inext;
            break;
        }
    for (pp = &f->by_path[n->phash % f->n_buckets]; *pp; pp = &(*pp)->pnext)
        if (*pp == n) {
            *pp = n->pnext;
            break;
        }
    f->n_nodes--;
}

static void node_free(struct node *n)
{
    if (!n)
        return;
    free(n->path);
    free(n->env);
    free(n->point);
    free(n->arg);
    free(n);
}

static fuse_ino_t ino_for(struct fsd *f, const char *path, uint64_t h, enum nkind kind)
{
    fuse_ino_t ino = is_ctl(kind) ? (h | CTL_BIT) : (h & ~CTL_BIT);
    if (ino < 2)
        ino += 2;
    while (node_by_ino(f, ino))
        ino++;
    return ino;
}

/* The inode number a child has or would get (for plain readdir). */
static fuse_ino_t ino_peek(struct fsd *f, const char *path, enum nkind kind)
{
    uint64_t h = fnv1a(path);
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    fuse_ino_t ino = n ? n->ino : ino_for(f, path, h, kind);
    pthread_mutex_unlock(&f->mu);
    return ino;
}

/* Find or create the node for a child and take one lookup reference. */
static struct node *node_get(struct fsd *f, const struct node *parent, const struct dent *d)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", parent->ino == FUSE_ROOT_ID ? "" : parent->path, d->name) < 0)
        return NULL;
    uint64_t h = fnv1a(path);
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    if (n) {
        n->nlookup++;
        pthread_mutex_unlock(&f->mu);
        free(path);
        return n;
    }
    n = calloc(1, sizeof *n);
    if (!n) {
        pthread_mutex_unlock(&f->mu);
        free(path);
        return NULL;
    }
    n->path = path;
    n->phash = h;
    n->kind = d->kind;
    n->env = xstrdup(d->env);
    n->point = xstrdup(d->point);
    n->arg = xstrdup(d->arg);
    n->i1 = d->i1;
    n->i2 = d->i2;
    n->nlookup = 1;
    if ((d->env && !n->env) || (d->point && !n->point) || (d->arg && !n->arg)) {
        pthread_mutex_unlock(&f->mu);
        node_free(n);
        return NULL;
    }
    if (f->n_nodes + 1 > f->n_buckets * 2)
        grow_tables(f);
    n->ino = ino_for(f, path, h, d->kind);
    node_link(f, n);
    pthread_mutex_unlock(&f->mu);
    return n;
}

static struct node *node_find(struct fsd *f, fuse_ino_t ino)
{
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_ino(f, ino);
    pthread_mutex_unlock(&f->mu);
    return n;
}

static void node_forget(struct fsd *f, fuse_ino_t ino, uint64_t nlookup)
{
    if (ino == FUSE_ROOT_ID)
        return;
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_ino(f, ino);
    if (n) {
        n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
        if (n->nlookup == 0)
            node_unlink(f, n);
        else
            n = NULL;
    }
    pthread_mutex_unlock(&f->mu);
    node_free(n);
}

/* ---- environment views ---- */
static uint64_t points_hash(const struct point_summary *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ fnv1a(p[i].name)) * 0x100000001b3ULL;
        if (p[i].label)
            h = (h ^ fnv1a(p[i].label)) * 0x100000001b3ULL;
    }
    return h;
}

static void build_labels(struct eview *e)
{
    free(e->labels);
    free(e->label_pt);
    e->labels = NULL;
    e->label_pt = NULL;
    e->n_labels = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < e->n; i++)
        if (e->pts[i].label)
            cnt++;
    if (!cnt)
        return;
    e->labels = calloc(cnt, sizeof *e->labels);
    e->label_pt = calloc(cnt, sizeof *e->label_pt);
    if (!e->labels || !e->label_pt)
        return;
    for (size_t i = 0; i < e->n; i++) {
        if (!e->pts[i].label)
            continue;
        char nm[256];
        name_sanitize(e->pts[i].label, strlen(e->pts[i].label), nm);
        char base[256];
        memcpy(base, nm, sizeof nm);
        for (int k = 2;; k++) {
            bool clash = false;
            for (size_t j = 0; j < e->n_labels && !clash; j++)
                clash = strcmp(e->labels[j], nm) == 0;
            if (!clash)
                break;
            memcpy(nm, base, sizeof nm);
            name_unique_suffix(nm, k);
        }
        memcpy(e->labels[e->n_labels], nm, 256);
        e->label_pt[e->n_labels++] = i;
    }
}

static struct eview *eview_find(struct fsd *f, const char *env)
{
    for (struct eview *e = f->eviews; e; e = e->next)
        if (strcmp(e->name, env) == 0)
            return e;
    return NULL;
}

/* Refresh env's points when older than max_age_ms (-1: always). Returns 1 when the list changed,
 * 0 when not, -errno on failure. Takes vmu itself. */
/* Have the refresher run its pass now: only it tells the kernel about changes (a request handler
 * cannot: invalidating an entry of the directory it is looking up in would deadlock). */
static void refresher_wake(struct fsd *f)
{
    pthread_mutex_lock(&f->stop_mu);
    f->refresh_now = true;
    pthread_cond_signal(&f->stop_cond);
    pthread_mutex_unlock(&f->stop_mu);
}

/* Append to e->gone the points of old (n_old) that are not in new (n_new); both are sorted by
 * name (oldest first). vmu held. */
static void eview_note_gone(struct eview *e, const struct point_summary *old, size_t n_old,
                            const struct point_summary *new, size_t n_new)
{
    for (size_t i = 0, j = 0; i < n_old; i++) {
        while (j < n_new && strcmp(new[j].name, old[i].name) < 0)
            j++;
        if (j < n_new && strcmp(new[j].name, old[i].name) == 0)
            continue;
        char(*g)[32] = realloc(e->gone, (e->n_gone + 1) * sizeof *g);
        if (!g)
            return; /* the listing is still dropped; only this entry may stay a while */
        e->gone = g;
        memcpy(e->gone[e->n_gone++], old[i].name, 32);
    }
}

static int eview_refresh(struct fsd *f, const char *env, int max_age_ms)
{
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e && max_age_ms >= 0 && now_ms() - e->at_ms < max_age_ms) {
        pthread_mutex_unlock(&f->vmu);
        return 0;
    }
    pthread_mutex_unlock(&f->vmu);

    struct point_summary *pts = NULL;
    size_t n = 0;
    struct dverr err = {0};
    int rc = f->src->ops->points(f->src->impl, env, &pts, &n, &err);
    if (rc) {
        log_warn("mount: points of %s: %s", env, dverr_msg(&err));
        return rc;
    }
    uint64_t h = points_hash(pts, n);
    pthread_mutex_lock(&f->vmu);
    e = eview_find(f, env);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (e)
            e->name = strdup(env);
        if (!e || !e->name) {
            if (e)
                free(e);
            pthread_mutex_unlock(&f->vmu);
            f->src->ops->points_free(pts, n);
            return -ENOMEM;
        }
        e->next = f->eviews;
        f->eviews = e;
        e->hash = h + 1; /* differs */
    }
    e->at_ms = now_ms();
    int changed = 0;
    if (e->hash != h) {
        struct point_summary *old = e->pts;
        size_t old_n = e->n;
        bool first = e->pts == NULL && e->n == 0 && e->hash == h + 1;
        if (!first) {
            eview_note_gone(e, old, old_n, pts, n);
            e->notify = true;
        }
        e->pts = pts;
        e->n = n;
        e->hash = h;
        build_labels(e);
        pts = old;
        n = old_n;
        changed = first ? 0 : 1;
    }
    pthread_mutex_unlock(&f->vmu);
    if (pts)
        f->src->ops->points_free(pts, n);
    if (changed)
        refresher_wake(f);
    return changed;
}

static int envs_refresh(struct fsd *f, int max_age_ms)
{
    pthread_mutex_lock(&f->vmu);
    bool fresh = f->env_names && now_ms() - f->envs_at < max_age_ms;
    pthread_mutex_unlock(&f->vmu);
    if (fresh)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dverr err = {0};
    int rc = f->src->ops->envs(f->src->impl, &names, &n, &err);
    if (rc) {
        log_warn("mount: environments: %s", dverr_msg(&err));
        return rc;
    }
    char(*dn)[256] = calloc(n ? n : 1, sizeof *dn);
    if (!dn) {
        strv_free(names, n);
        return -ENOMEM;
    }
    uint64_t h = 0xcbf29ce484222325ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        name_sanitize(names[i], strlen(names[i]), dn[i]);
        char base[256];
        memcpy(base, dn[i], 256);
        for (int k = 2;; k++) {
            bool clash = strcmp(dn[i], ".operations") == 0 || strcmp(dn[i], "README.txt") == 0;
            for (size_t j = 0; j < i && !clash; j++)
                clash = strcmp(dn[j], dn[i]) == 0;
            if (!clash)
                break;
            memcpy(dn[i], base, 256);
            name_unique_suffix(dn[i], k);
        }
        h = (h ^ fnv1a(names[i])) * 0x100000001b3ULL;
    }
    pthread_mutex_lock(&f->vmu);
    char **old = f->env_names;
    size_t old_n = f->n_envs;
    free(f->env_dnames);
    f->env_names = names;
    f->env_dnames = dn;
    f->n_envs = n;
    f->envs_at = now_ms();
    int changed = f->envs_hash != h && old != NULL;
    f->envs_hash = h;
    if (changed)
        f->envs_notify = true;
    pthread_mutex_unlock(&f->vmu);
    strv_free(old, old_n);
    if (changed)
        refresher_wake(f);
    return changed;
}

/* ---- point views ---- */
static void pview_free(struct fsd *f, struct pview *v)
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

static int pview_build(struct fsd *f, struct pview *v)
{
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
    /* files/<table>/<record>/<name> */
    v->files = calloc(p->n_files ? p->n_files : 1, sizeof *v->files);
    v->ftab = calloc(p->n_files ? p->n_files : 1, sizeof *v->ftab);
    if (!v->files || !v->ftab)
        return -ENOMEM;
    for (size_t i = 0; i < p->n_files; i++) {
        const struct point_file *pf = &p->files[i];
        char tn[256];
        name_sanitize(pf->table, strlen(pf->table), tn);
        size_t t;
        for (t = 0; t < v->n_ftab; t++)
            if (strcmp(v->ftab[t], tn) == 0)
                break;
        if (t == v->n_ftab)
            memcpy(v->ftab[v->n_ftab++], tn, 256);
        struct ffile *ff = &v->files[v->n_files++];
        ff->tdir = t;
        ff->idx = i;
        name_sanitize(pf->record_id, strlen(pf->record_id), ff->rdir);
        const char *fnm = pf->file_name && *pf->file_name ? pf->file_name : pf->column;
        name_sanitize(fnm ? fnm : "file", strlen(fnm ? fnm : "file"), ff->fname);
    }
    /* unique names within a record directory: sort (stable input order), then suffix */
    qsort(v->files, v->n_files, sizeof *v->files, cmp_ffile);
    for (size_t i = 1; i < v->n_files; i++) {
        struct ffile *a = &v->files[i];
        char base[256];
        memcpy(base, a->fname, 256);
        for (int k = 2;; k++) {
            bool clash = false;
            for (size_t j = 0; j < i && !clash; j++)
                clash = v->files[j].tdir == a->tdir && strcmp(v->files[j].rdir, a->rdir) == 0 &&
                        strcmp(v->files[j].fname, a->fname) == 0;
            if (!clash)
                break;
            memcpy(a->fname, base, 256);
            name_unique_suffix(a->fname, k);
        }
    }
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
         str_bytes(p->audit_table);
    for (size_t i = 0; i < p->n_tables; i++) {
        const struct point_table *t = &p->tables[i];
        b += sizeof *t + sizeof *v->tnames + sizeof *v->schema_size + str_bytes(t->name) +
             str_bytes(t->entity_set) + str_bytes(t->primary_key) + str_bytes(t->delta) +
             str_bytes(t->schema) + str_bytes(t->delta_link) + str_bytes(t->full_read_reason) +
             t->n_segments * (sizeof *t->segments + sizeof(uint64_t)) + 32;
        for (size_t j = 0; j < t->n_segments; j++)
            b += str_bytes(t->segments[j]);
    }
    for (size_t i = 0; i < p->n_files; i++) {
        const struct point_file *pf = &p->files[i];
        b += sizeof *pf + sizeof *v->files + sizeof *v->ftab + str_bytes(pf->table) +
             str_bytes(pf->record_id) + str_bytes(pf->column) + str_bytes(pf->file_name) +
             str_bytes(pf->blob);
    }
    return b;
}

static uint64_t pview_key(const char *env, const char *point)
{
    return fnv1a(env) * 0x100000001b3ULL ^ fnv1a(point);
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

/* A referenced view of env/point (-ENOENT when the point does not exist). */
static int pview_get(struct fsd *f, const char *env, const char *point, struct pview **out)
{
    uint64_t key = pview_key(env, point);
    pthread_mutex_lock(&f->vmu);
    for (struct pview *v = f->pv_hash[key & (PV_BUCKETS - 1)]; v; v = v->hnext) {
        if (v->key == key && strcmp(v->name, point) == 0 && strcmp(v->env, env) == 0) {
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
    int rc = v->env && v->name ? 0 : -ENOMEM;
    if (!rc)
        rc = f->src->ops->point_load(f->src->impl, env, point, &v->p, &err);
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
        pview_lru_unlink(f, x);
        pv_hash_remove(f, x);
        f->n_pviews--;
        f->pview_bytes -= x->bytes;
        x->prev = victims;
        victims = x;
    }
    pthread_mutex_unlock(&f->vmu);
    while (victims) {
        struct pview *x = victims;
        victims = x->prev;
        pview_free(f, x);
    }
    *out = v;
    return 0;
}

static void pview_put(struct fsd *f, struct pview *v)
{
    if (!v)
        return;
    struct pview *victim = NULL;
    pthread_mutex_lock(&f->vmu);
    v->refs--;
    if (v->refs == 0 && pviews_over(f)) {
        pview_lru_unlink(f, v);
        pv_hash_remove(f, v);
        f->n_pviews--;
        f->pview_bytes -= v->bytes;
        victim = v;
    }
    pthread_mutex_unlock(&f->vmu);
    pview_free(f, victim);
}

static int table_index(const struct point *p, const char *name)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (strcmp(p->tables[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* ---- the point a name resolves to in an environment ---- */
struct pinfo {
    char name[32];
    time_t taken_at;
    bool found;
};

static struct pinfo point_lookup(struct fsd *f, const char *env, const char *name)
{
    struct pinfo pi = {0};
    for (int pass = 0; pass < 2 && !pi.found; pass++) {
        if (pass == 1 && eview_refresh(f, env, 200) <= 0)
            break; /* a miss re-reads the list at most every 200 ms */
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, env);
        for (size_t i = 0; e && i < e->n; i++)
            if (strcmp(e->pts[i].name, name) == 0) {
                memcpy(pi.name, e->pts[i].name, 32);
                pi.taken_at = e->pts[i].taken_at;
                pi.found = true;
                break;
            }
        pthread_mutex_unlock(&f->vmu);
    }
    return pi;
}

static struct pinfo point_latest(struct fsd *f, const char *env)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e && e->n) {
        memcpy(pi.name, e->pts[e->n - 1].name, 32);
        pi.taken_at = e->pts[e->n - 1].taken_at;
        pi.found = true;
    }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

static struct pinfo point_at(struct fsd *f, const char *env, time_t t)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    for (size_t i = 0; e && i < e->n; i++)
        if (e->pts[i].taken_at <= t) {
            memcpy(pi.name, e->pts[i].name, 32);
            pi.taken_at = e->pts[i].taken_at;
            pi.found = true;
        }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

static struct pinfo point_of_label(struct fsd *f, const char *env, const char *label)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    for (size_t i = 0; e && i < e->n_labels; i++)
        if (strcmp(e->labels[i], label) == 0) {
            struct point_summary *ps = &e->pts[e->label_pt[i]];
            memcpy(pi.name, ps->name, 32);
            pi.taken_at = ps->taken_at;
            pi.found = true;
        }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

int fs_parse_at_time(const char *s, time_t *out)
{
    if (rfc3339_to_time(s, out) == 0)
        return 0;
    if (point_name_to_time(s, out) == 0)
        return 0;
    /* a date alone means its end? no: its start, 00:00:00Z */
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (end && *end == '\0') {
        *out = timegm(&tm);
        return 0;
    }
    return -EINVAL;
}

/* ---- generated documents ---- */
static const char *env_type(const char *sku, bool is_default)
{
    if (is_default)
        return "default";
    if (!sku)
        return "unknown";
    if (strcasecmp(sku, "Production") == 0)
        return "production";
    if (strcasecmp(sku, "Sandbox") == 0)
        return "sandbox";
    if (strcasecmp(sku, "Trial") == 0)
        return "trial";
    if (strcasecmp(sku, "Developer") == 0)
        return "developer";
    if (strcasecmp(sku, "Default") == 0)
        return "default";
    return "unknown";
}

static cJSON *jget(cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, tok);
    return o;
}

static const char *jstr(cJSON *o, const char *path)
{
    cJSON *x = jget(o, path);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int render_env_json(struct fsd *f, const char *env, struct buf *out)
{
    struct buf doc = BUF_INIT;
    struct dverr err = {0};
    cJSON *raw = NULL;
    if (f->src->ops->env_doc(f->src->impl, env, &doc, &err) == 0 && doc.len)
        raw = cJSON_ParseWithLength(doc.data, doc.len);
    buf_release(&doc);
    cJSON *props = raw ? cJSON_GetObjectItemCaseSensitive(raw, "properties") : NULL;
    const char *sku = jstr(props, "environmentSku");
    cJSON *isdef = raw ? cJSON_GetObjectItemCaseSensitive(raw, "isDefault") : NULL;
    bool is_default = cJSON_IsTrue(isdef) || (sku && strcasecmp(sku, "Default") == 0);
    const char *runtime = jstr(props, "states.runtime.id");
    const char *ret = jstr(props, "retentionDetails.retentionPeriod");
    int ret_days = 0;
    if (ret && ret[0] == 'P')
        ret_days = (int)strtol(ret + 1, NULL, 10);

    size_t npts = 0;
    time_t last = 0;
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e) {
        npts = e->n;
        last = e->n ? e->pts[e->n - 1].taken_at : 0;
    }
    pthread_mutex_unlock(&f->vmu);
    int64_t every = f->o->control && f->o->control->ops->capture_every
                        ? f->o->control->ops->capture_every(f->o->control->ctx)
                        : 0;

    buf_addstr(out, "{\n  \"name\": ");
    buf_add_json_string(out, env, strlen(env));
    buf_printf(out, ",\n  \"type\": \"%s\"", env_type(sku, is_default));
    const char *fields[][2] = {
        {"display_name", "displayName"},
        {"geo", NULL},
        {"region", "azureRegion"},
        {"url", "linkedEnvironmentMetadata.instanceUrl"},
        {"api_url", "linkedEnvironmentMetadata.instanceApiUrl"},
        {"state", "states.runtime.id"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *v = fields[i][1] ? jstr(props, fields[i][1]) : jstr(raw, "location");
        buf_printf(out, ",\n  \"%s\": ", fields[i][0]);
        if (v)
            buf_add_json_string(out, v, strlen(v));
        else
            buf_addstr(out, "null");
    }
    buf_printf(out, ",\n  \"admin_mode\": %s", streq(runtime, "AdminMode") ? "true" : "false");
    if (ret_days)
        buf_printf(out, ",\n  \"retention_days\": %d", ret_days);
    else
        buf_addstr(out, ",\n  \"retention_days\": null");
    buf_printf(out, ",\n  \"points\": %zu", npts);
    char ts[32];
    if (last) {
        rfc3339_from_time(last, ts);
        buf_printf(out, ",\n  \"last_capture\": \"%s\"", ts);
        buf_printf(out, ",\n  \"capture_lag_s\": %lld", (long long)(time(NULL) - last));
    } else {
        buf_addstr(out, ",\n  \"last_capture\": null,\n  \"capture_lag_s\": null");
    }
    if (every > 0 && last) {
        rfc3339_from_time(last + (time_t)every, ts);
        buf_printf(out, ",\n  \"next_capture\": \"%s\"", ts);
    } else {
        buf_addstr(out, ",\n  \"next_capture\": null");
    }
    buf_printf(out, ",\n  \"capture_every_s\": %lld\n}\n", (long long)every);
    cJSON_Delete(raw);
    return 0;
}

static int render_status(struct fsd *f, const struct node *n, struct buf *out)
{
    struct fs_control *c = f->o->control;
    if (!c)
        return buf_addstr(out, "control files are not available in this mount\n");
    return c->ops->status(c->ctx, n->env, n->kind == N_RESTORE_CTL ? n->point : NULL, out);
}

/* ---- attributes ---- */
struct attr {
    struct stat st;
    double timeout;
};

static void fill_common(struct fsd *f, struct stat *st, mode_t mode, uint64_t size, time_t mtime)
{
    st->st_mode = mode;
    st->st_nlink = S_ISDIR(mode) ? 2 : 1;
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_blksize = 1 << 20;
    st->st_uid = f->owner;
    st->st_gid = f->group;
    st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = mtime;
}

static size_t count_subdirs_env(struct fsd *f, const char *env)
{
    size_t n = 0;
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e)
        n = e->n;
    pthread_mutex_unlock(&f->vmu);
    return n;
}

/* Attributes of a node (or a would-be node) described by kind/env/point/arg/i1/i2. */
static int attr_of(struct fsd *f, enum nkind kind, const char *env, const char *point,
                   const char *arg, int i1, int i2, struct attr *a)
{
    memset(a, 0, sizeof *a);
    struct stat *st = &a->st;
    struct pview *v = NULL;
    struct buf b = BUF_INIT;
    int rc = 0;
    time_t pt_time = f->started;
    if (point) {
        point_name_to_time(point, &pt_time);
    }
    a->timeout = is_immutable(kind) ? IMMUTABLE_TIMEOUT : ENV_TIMEOUT;
    switch (kind) {
    case N_ROOT: {
        pthread_mutex_lock(&f->vmu);
        size_t ne = f->n_envs;
        pthread_mutex_unlock(&f->vmu);
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        st->st_nlink = 3 + ne;
        break;
    }
    case N_README:
        fill_common(f, st, S_IFREG | 0444, sizeof README_TEXT - 1, f->started);
        a->timeout = IMMUTABLE_TIMEOUT;
        break;
    case N_OPS_DIR:
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        break;
    case N_OP_FILE:
        if (!f->o->control)
            return -ENOENT;
        rc = f->o->control->ops->ops_json(f->o->control->ctx, arg, &b);
        if (rc)
            break;
        fill_common(f, st, S_IFREG | 0444, b.len, time(NULL));
        a->timeout = 0;
        break;
    case N_ENV: {
        struct pinfo pi = point_latest(f, env);
        fill_common(f, st, S_IFDIR | 0555, 0, pi.found ? pi.taken_at : f->started);
        st->st_nlink = 4 + count_subdirs_env(f, env);
        break;
    }
    case N_ENV_JSON:
        render_env_json(f, env, &b);
        fill_common(f, st, S_IFREG | 0444, b.len, time(NULL));
        a->timeout = 0;
        break;
    case N_BACKUP_CTL:
    case N_RESTORE_CTL: {
        struct node tmp = {.kind = kind, .env = (char *)env, .point = (char *)point};
        render_status(f, &tmp, &b);
        fill_common(f, st, S_IFREG | 0644, b.len, time(NULL));
        a->timeout = 0;
        break;
    }
    case N_LATEST: {
        struct pinfo pi = point_latest(f, env);
        if (!pi.found)
            return -ENOENT;
        fill_common(f, st, S_IFLNK | 0777, strlen(pi.name), pi.taken_at);
        break;
    }
    case N_LABELS: case N_AT:
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        break;
    case N_LABEL: case N_AT_LINK: {
        struct pinfo pi;
        if (kind == N_LABEL) {
            pi = point_of_label(f, env, arg);
        } else {
            time_t t;
            if (fs_parse_at_time(arg, &t))
                return -ENOENT;
            pi = point_at(f, env, t);
        }
        if (!pi.found)
            return -ENOENT;
        fill_common(f, st, S_IFLNK | 0777, 3 + strlen(pi.name), pi.taken_at);
        break;
    }
    case N_POINT:
        fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
        st->st_nlink = 6;
        break;
    case N_TABLES: case N_SCHEMA: case N_CHANGES:
        fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
        break;
    default:
        rc = pview_get(f, env, point, &v);
        if (rc)
            break;
        switch (kind) {
        case N_BACKUP_JSON:
            fill_common(f, st, S_IFREG | 0444, v->backup_json.len, pt_time);
            break;
        case N_AUDIT: {
            int ti = v->p->audit_table ? table_index(v->p, v->p->audit_table) : -1;
            if (ti < 0) {
                rc = -ENOENT;
                break;
            }
            fill_common(f, st, S_IFREG | 0444, v->p->tables[ti].bytes, pt_time);
            break;
        }
        case N_TABLE:
            fill_common(f, st, S_IFREG | 0444, v->p->tables[i1].bytes, pt_time);
            break;
        case N_CHANGE_FILE:
            fill_common(f, st, S_IFREG | 0444, v->p->tables[i1].changes_bytes, pt_time);
            break;
        case N_SCHEMA_FILE: {
            pthread_mutex_lock(&f->vmu);
            int64_t sz = v->schema_size[i1];
            pthread_mutex_unlock(&f->vmu);
            if (sz < 0) {
                struct dverr err = {0};
                rc = f->src->ops->blob_get(f->src->impl, v->p->tables[i1].schema, &b, &err);
                if (rc) {
                    log_warn("mount: schema of %s: %s", v->p->tables[i1].name, dverr_msg(&err));
                    rc = -EIO;
                    break;
                }
                sz = (int64_t)b.len;
                pthread_mutex_lock(&f->vmu);
                v->schema_size[i1] = sz;
                pthread_mutex_unlock(&f->vmu);
            }
            fill_common(f, st, S_IFREG | 0444, (uint64_t)sz, pt_time);
            break;
        }
        case N_FILES: {
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            st->st_nlink = 2 + v->n_ftab;
            break;
        }
        case N_FILES_TABLE: {
            size_t recs = 0;
            const char *prev = NULL;
            for (size_t i = 0; i < v->n_files; i++)
                if (v->files[i].tdir == (size_t)i1) {
                    if (!prev || strcmp(prev, v->files[i].rdir) != 0)
                        recs++;
                    prev = v->files[i].rdir;
                }
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            st->st_nlink = 2 + recs;
            break;
        }
        case N_FILES_RECORD:
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            break;
        case N_FILE:
            fill_common(f, st, S_IFREG | 0444, v->p->files[v->files[i2].idx].size, pt_time);
            break;
        default:
            rc = -ENOENT;
        }
        break;
    }
    pview_put(f, v);
    buf_release(&b);
    return rc;
}

/* ---- listing and resolving ---- */
static void dirh_clear(struct dirh *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->e[i].name);
        free(d->e[i].env);
        free(d->e[i].point);
        free(d->e[i].arg);
    }
    free(d->e);
    *d = (struct dirh){0};
}

static int dirh_add(struct dirh *d, const char *name, enum nkind kind, const char *env,
                    const char *point, const char *arg, int i1, int i2)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        struct dent *e = realloc(d->e, cap * sizeof *e);
        if (!e)
            return -ENOMEM;
        d->e = e;
        d->cap = cap;
    }
    struct dent *x = &d->e[d->n];
    x->name = strdup(name);
    x->kind = kind;
    x->env = xstrdup(env);
    x->point = xstrdup(point);
    x->arg = xstrdup(arg);
    x->i1 = i1;
    x->i2 = i2;
    if (!x->name || (env && !x->env) || (point && !x->point) || (arg && !x->arg)) {
        free(x->name);
        free(x->env);
        free(x->point);
        free(x->arg);
        return -ENOMEM;
    }
    d->n++;
    return 0;
}

/* Every listed child of n (control files and at/ children are never listed). With only != NULL,
 * stop after the child of that name (lookup). */
static int list_children(struct fsd *f, const struct node *n, const char *only, struct dirh *d)
{
    int rc = 0;
#define ADD(name, kind, env, point, arg, i1, i2)                                                  \
    do {                                                                                          \
        if (!only || strcmp(only, (name)) == 0) {                                                 \
            rc = dirh_add(d, (name), (kind), (env), (point), (arg), (i1), (i2));                  \
            if (rc || only)                                                                       \
                goto out;                                                                         \
        }                                                                                         \
    } while (0)
    switch (n->kind) {
    case N_ROOT: {
        ADD("README.txt", N_README, NULL, NULL, NULL, 0, 0);
        ADD(".operations", N_OPS_DIR, NULL, NULL, NULL, 0, 0);
        envs_refresh(f, ENV_TIMEOUT * 1000);
        pthread_mutex_lock(&f->vmu);
        for (size_t i = 0; i < f->n_envs && !rc; i++)
            if (!only || strcmp(only, f->env_dnames[i]) == 0)
                rc = dirh_add(d, f->env_dnames[i], N_ENV, f->env_names[i], NULL, NULL, 0, 0);
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
                    rc = dirh_add(d, nm, N_OP_FILE, NULL, NULL, ids[i], 0, 0);
            }
            strv_free(ids, k);
        }
        break;
    }
    case N_ENV: {
        ADD("environment.json", N_ENV_JSON, n->env, NULL, NULL, 0, 0);
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        if (!only || strcmp(only, "latest") == 0) {
            struct pinfo pi = point_latest(f, n->env);
            if (pi.found)
                ADD("latest", N_LATEST, n->env, NULL, NULL, 0, 0);
        }
        ADD("labels", N_LABELS, n->env, NULL, NULL, 0, 0);
        ADD("at", N_AT, n->env, NULL, NULL, 0, 0);
        if (only) {
            struct pinfo pi = point_lookup(f, n->env, only);
            if (pi.found)
                ADD(pi.name, N_POINT, n->env, pi.name, NULL, 0, 0);
            break;
        }
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, n->env);
        for (size_t i = 0; e && i < e->n && !rc; i++)
            rc = dirh_add(d, e->pts[i].name, N_POINT, n->env, e->pts[i].name, NULL, 0, 0);
        pthread_mutex_unlock(&f->vmu);
        break;
    }
    case N_LABELS: {
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, n->env);
        for (size_t i = 0; e && i < e->n_labels && !rc; i++)
            if (!only || strcmp(only, e->labels[i]) == 0)
                rc = dirh_add(d, e->labels[i], N_LABEL, n->env, NULL, e->labels[i], 0, 0);
        pthread_mutex_unlock(&f->vmu);
        break;
    }
    case N_AT:
        break; /* lookup only */
    case N_POINT: {
        ADD("backup.json", N_BACKUP_JSON, n->env, n->point, NULL, 0, 0);
        ADD("tables", N_TABLES, n->env, n->point, NULL, 0, 0);
        ADD("schema", N_SCHEMA, n->env, n->point, NULL, 0, 0);
        ADD("changes", N_CHANGES, n->env, n->point, NULL, 0, 0);
        ADD("files", N_FILES, n->env, n->point, NULL, 0, 0);
        if (!only || strcmp(only, "audit.json") == 0) {
            struct pview *v;
            if (pview_get(f, n->env, n->point, &v) == 0) {
                bool has = v->p->audit_table && table_index(v->p, v->p->audit_table) >= 0;
                pview_put(f, v);
                if (has)
                    ADD("audit.json", N_AUDIT, n->env, n->point, NULL, 0, 0);
            }
        }
        break;
    }
    case N_TABLES: case N_SCHEMA: case N_CHANGES: case N_FILES: case N_FILES_TABLE:
    case N_FILES_RECORD: {
        struct pview *v;
        rc = pview_get(f, n->env, n->point, &v);
        if (rc)
            break;
        const struct point *p = v->p;
        if (n->kind == N_TABLES || n->kind == N_SCHEMA || n->kind == N_CHANGES) {
            enum nkind ck = n->kind == N_TABLES ? N_TABLE
                            : n->kind == N_SCHEMA ? N_SCHEMA_FILE : N_CHANGE_FILE;
            for (size_t i = 0; i < p->n_tables && !rc; i++) {
                if (ck == N_SCHEMA_FILE && !p->tables[i].schema)
                    continue;
                if (ck == N_CHANGE_FILE && !p->tables[i].delta)
                    continue;
                if (!only || strcmp(only, v->tnames[i]) == 0)
                    rc = dirh_add(d, v->tnames[i], ck, n->env, n->point, NULL, (int)i, 0);
            }
        } else if (n->kind == N_FILES) {
            for (size_t t = 0; t < v->n_ftab && !rc; t++)
                if (!only || strcmp(only, v->ftab[t]) == 0)
                    rc = dirh_add(d, v->ftab[t], N_FILES_TABLE, n->env, n->point, NULL, (int)t,
                                  0);
        } else if (n->kind == N_FILES_TABLE) {
            const char *prev = NULL;
            for (size_t i = 0; i < v->n_files && !rc; i++) {
                const struct ffile *ff = &v->files[i];
                if (ff->tdir != (size_t)n->i1 || (prev && strcmp(prev, ff->rdir) == 0))
                    continue;
                prev = ff->rdir;
                if (!only || strcmp(only, ff->rdir) == 0)
                    rc = dirh_add(d, ff->rdir, N_FILES_RECORD, n->env, n->point, ff->rdir, n->i1,
                                  0);
            }
        } else {
            for (size_t i = 0; i < v->n_files && !rc; i++) {
                const struct ffile *ff = &v->files[i];
                if (ff->tdir != (size_t)n->i1 || strcmp(ff->rdir, n->arg) != 0)
                    continue;
                if (!only || strcmp(only, ff->fname) == 0)
                    rc = dirh_add(d, ff->fname, N_FILE, n->env, n->point, NULL, n->i1, (int)i);
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
static int resolve(struct fsd *f, const struct node *n, const char *name, struct dirh *d)
{
    if (n->kind == N_ENV && strcmp(name, ".backup") == 0)
        return f->o->control ? dirh_add(d, name, N_BACKUP_CTL, n->env, NULL, NULL, 0, 0) : -ENOENT;
    if (n->kind == N_POINT && strcmp(name, ".restore") == 0) {
        if (!f->o->control)
            return -ENOENT;
        return dirh_add(d, name, N_RESTORE_CTL, n->env, n->point, NULL, 0, 0);
    }
    if (n->kind == N_AT) {
        time_t t;
        if (fs_parse_at_time(name, &t))
            return -ENOENT;
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        if (!point_at(f, n->env, t).found)
            return -ENOENT;
        return dirh_add(d, name, N_AT_LINK, n->env, NULL, name, 0, 0);
    }
    int rc = list_children(f, n, name, d);
    if (rc)
        return rc;
    return d->n ? 0 : -ENOENT;
}

static void fill_entry(struct fuse_entry_param *e, const struct node *n, const struct attr *a)
{
    memset(e, 0, sizeof *e);
    e->ino = n->ino;
    e->attr = a->st;
    e->attr.st_ino = n->ino;
    e->attr_timeout = a->timeout;
    e->entry_timeout = a->timeout;
}

/* ---- FUSE operations ---- */
static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
    conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~(unsigned)FUSE_CAP_SPLICE_READ;
    /* O_DIRECT reads as plain requests in the reader's context: with asynchronous direct I/O the
     * reader waits uninterruptibly, so a signal could not withdraw a read waiting for a fill */
    conn->want &= ~(unsigned)FUSE_CAP_ASYNC_DIO;
    conn->max_read = 1u << 20; /* must match the max_read mount option */
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fsd *f = fsd_of(req);
    struct node *p = node_find(f, parent);
    if (!p) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!is_dir(p->kind)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct dirh d = {0};
    int rc = resolve(f, p, name, &d);
    struct attr a;
    if (!rc)
        rc = attr_of(f, d.e[0].kind, d.e[0].env, d.e[0].point, d.e[0].arg, d.e[0].i1, d.e[0].i2,
                     &a);
    if (rc) {
        for (size_t i = 0; i < d.n; i++) {
            free(d.e[i].name);
            free(d.e[i].env);
            free(d.e[i].point);
            free(d.e[i].arg);
        }
        free(d.e);
        if (rc == -ENOENT && p->kind >= N_POINT) {
            /* nothing appears inside a point: cache the miss */
            struct fuse_entry_param e = {0};
            e.entry_timeout = IMMUTABLE_TIMEOUT;
            fuse_reply_entry(req, &e);
            return;
        }
        fuse_reply_err(req, -rc);
        return;
    }
    struct node *c = node_get(f, p, &d.e[0]);
    for (size_t i = 0; i < d.n; i++) {
        free(d.e[i].name);
        free(d.e[i].env);
        free(d.e[i].point);
        free(d.e[i].arg);
    }
    free(d.e);
    if (!c) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    struct fuse_entry_param e;
    fill_entry(&e, c, &a);
    if (fuse_reply_entry(req, &e) != 0)
        node_forget(f, c->ino, 1);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    node_forget(fsd_of(req), ino, nlookup);
    fuse_reply_none(req);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        node_forget(fsd_of(req), forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fsd *f = fsd_of(req);
    struct node *n = node_find(f, ino);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct attr a;
    int rc = attr_of(f, n->kind, n->env, n->point, n->arg, n->i1, n->i2, &a);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    a.st.st_ino = n->ino;
    fuse_reply_attr(req, &a.st, a.timeout);
}

static bool owner_ok(struct fsd *f, fuse_req_t req)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    return ctx->uid == 0 || ctx->uid == f->owner;
}

static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
    struct fsd *f = fsd_of(req);
    struct node *n = node_find(f, ino);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!is_ctl(n->kind) || (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
                                        FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                                        FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    /* truncating a control file is a no-op (shells open with O_TRUNC) */
    struct attr a;
    int rc = attr_of(f, n->kind, n->env, n->point, n->arg, n->i1, n->i2, &a);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    a.st.st_ino = n->ino;
    fuse_reply_attr(req, &a.st, 0);
}

static void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct fsd *f = fsd_of(req);
    struct node *n = node_find(f, ino);
    if (!n || !is_link(n->kind)) {
        fuse_reply_err(req, n ? EINVAL : ENOENT);
        return;
    }
    struct pinfo pi;
    if (n->kind == N_LATEST) {
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        pi = point_latest(f, n->env);
        if (pi.found) {
            fuse_reply_readlink(req, pi.name);
            return;
        }
    } else {
        if (n->kind == N_LABEL) {
            pi = point_of_label(f, n->env, n->arg);
        } else {
            time_t t = 0;
            fs_parse_at_time(n->arg, &t);
            eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
            pi = point_at(f, n->env, t);
        }
        if (pi.found) {
            char target[64];
            snprintf(target, sizeof target, "../%s", pi.name);
            fuse_reply_readlink(req, target);
            return;
        }
    }
    fuse_reply_err(req, ENOENT);
}

/* No OPENDIR: the first one is answered ENOSYS, and from then on the kernel opens and closes
 * directories without asking (no OPENDIR, no RELEASEDIR) and caches every directory's listing
 * until it is invalidated. `ls -lR` of 1000 points (5,000 directories) went from 1.9x to under
 * 1x the time on local disk. What that asks of the rest:
 *   - listings of directories that change (the root, environments, labels/, .operations/) are
 *     invalidated when they change (the refresher, and a started operation);
 *   - readdir has no handle: each request lists the directory and serves from its offset;
 *   - after the daemon died, the kernel may answer from its caches for up to ENV_TIMEOUT (1 s: the
 *     root's and environments' attributes and listings), then gives ENOTCONN; it never shows an
 *     empty directory. fs_mount_is_stale asks with statfs, which always reaches the daemon. (Not
 *     caching the root's attributes instead made every path walk through the root a GETATTR,
 *     with default_permissions: `ls -lR` took 10x as long.) */
static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, ENOSYS);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
    struct fsd *f = fsd_of(req);
    struct node *n = node_find(f, ino);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!is_dir(n->kind)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct dirh listing = {0}, *d = &listing;
    int lrc = list_children(f, n, NULL, d);
    char *buf = lrc ? NULL : malloc(size);
    if (!buf) {
        dirh_clear(d);
        fuse_reply_err(req, lrc ? -lrc : ENOMEM);
        return;
    }
    size_t used = 0;
    /* offsets: 1 = ".", 2 = "..", 3 + i = entry i */
    for (off_t i = off; i < (off_t)d->n + 2; i++) {
        size_t room = size - used;
        size_t len;
        if (i < 2) {
            struct stat st = {0};
            st.st_mode = S_IFDIR;
            st.st_ino = i == 0 ? n->ino : FUSE_ROOT_ID; /* parent ino is not used by the kernel */
            if (plus) {
                struct fuse_entry_param e = {0};
                e.attr = st;
                len = fuse_add_direntry_plus(req, buf + used, room, i == 0 ? "." : "..", &e,
                                             i + 1);
            } else {
                len = fuse_add_direntry(req, buf + used, room, i == 0 ? "." : "..", &st, i + 1);
            }
            if (len > room)
                break;
            used += len;
            continue;
        }
        const struct dent *de = &d->e[i - 2];
        if (plus) {
            struct attr a;
            int rc = attr_of(f, de->kind, de->env, de->point, de->arg, de->i1, de->i2, &a);
            if (rc) {
                /* it went away (a point deleted meanwhile): skip it */
                continue;
            }
            struct node *c = node_get(f, n, de);
            if (!c)
                break;
            struct fuse_entry_param e;
            fill_entry(&e, c, &a);
            len = fuse_add_direntry_plus(req, buf + used, room, de->name, &e, i + 1);
            if (len > room) {
                node_forget(f, c->ino, 1);
                break;
            }
        } else {
            char *path = NULL;
            if (asprintf(&path, "%s/%s", n->ino == FUSE_ROOT_ID ? "" : n->path, de->name) < 0)
                break;
            struct stat st = {0};
            st.st_ino = ino_peek(f, path, de->kind);
            free(path);
            st.st_mode = is_dir(de->kind) ? S_IFDIR : is_link(de->kind) ? S_IFLNK : S_IFREG;
            len = fuse_add_direntry(req, buf + used, room, de->name, &st, i + 1);
            if (len > room)
                break;
        }
        used += len;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
    dirh_clear(d);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

/* cache sources */
struct table_src {
    struct fsd *f;
    struct pview *v;
    char *table;
    bool changes;
    void *stream; /* the source's stream while open */
};

static int table_src_open(void *arg, void **stream, struct dverr *err)
{
    struct table_src *s = arg;
    int rc = s->f->src->ops->stream_open(s->f->src->impl, s->v->p, s->table, s->changes,
                                         &s->stream, err);
    *stream = s;
    return rc;
}

static ssize_t table_src_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct table_src *s = stream;
    return s->f->src->ops->stream_read(s->stream, buf, n, err);
}

static void table_src_close(void *stream)
{
    struct table_src *s = stream;
    s->f->src->ops->stream_close(s->stream);
    s->stream = NULL;
}

static void table_src_free(void *arg)
{
    struct table_src *s = arg;
    pview_put(s->f, s->v);
    free(s->table);
    free(s);
}

struct blob_src {
    struct fsd *f;
    char *id;
    struct buf b;
    size_t pos;
};

static int blob_src_open(void *arg, void **stream, struct dverr *err)
{
    struct blob_src *s = arg;
    *stream = s;
    return s->f->src->ops->blob_get(s->f->src->impl, s->id, &s->b, err);
}

static ssize_t blob_src_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct blob_src *s = stream;
    if (n > s->b.len - s->pos)
        n = s->b.len - s->pos;
    memcpy(buf, s->b.data + s->pos, n);
    s->pos += n;
    return (ssize_t)n;
}

static void blob_src_close(void *stream) {}

static void blob_src_free(void *arg)
{
    struct blob_src *s = arg;
    buf_release(&s->b);
    free(s->id);
    free(s);
}

static int open_cached(struct fsd *f, const struct node *n, struct handle *h, struct dverr *err)
{
    struct pview *v;
    int rc = pview_get(f, n->env, n->point, &v);
    if (rc)
        return rc;
    char *key = NULL;
    uint64_t size = 0;
    struct cache_source cs = {0};
    const struct point *p = v->p;
    if (n->kind == N_TABLE || n->kind == N_CHANGE_FILE || n->kind == N_AUDIT) {
        int ti = n->kind == N_AUDIT ? (p->audit_table ? table_index(p, p->audit_table) : -1)
                                    : n->i1;
        if (ti < 0 || (size_t)ti >= p->n_tables) {
            pview_put(f, v);
            return -ENOENT;
        }
        bool changes = n->kind == N_CHANGE_FILE;
        size = changes ? p->tables[ti].changes_bytes : p->tables[ti].bytes;
        struct table_src *s = calloc(1, sizeof *s);
        if (!s || asprintf(&key, "%s/%s/%s/%s/%s", f->o->cache_key_prefix, n->env, n->point,
                           changes ? "changes" : "tables", p->tables[ti].name) < 0) {
            free(s);
            pview_put(f, v);
            return -ENOMEM;
        }
        s->f = f;
        s->v = v; /* the source keeps the reference */
        s->table = strdup(p->tables[ti].name);
        s->changes = changes;
        cs = (struct cache_source){table_src_open, table_src_read, table_src_close,
                                   table_src_free, s};
        if (!s->table) {
            table_src_free(s);
            free(key);
            return -ENOMEM;
        }
    } else {
        const char *blob;
        if (n->kind == N_SCHEMA_FILE) {
            blob = p->tables[n->i1].schema;
            int64_t sz;
            pthread_mutex_lock(&f->vmu);
            sz = v->schema_size[n->i1];
            pthread_mutex_unlock(&f->vmu);
            if (sz < 0) {
                struct attr a;
                rc = attr_of(f, n->kind, n->env, n->point, n->arg, n->i1, n->i2, &a);
                if (rc) {
                    pview_put(f, v);
                    return rc;
                }
                sz = a.st.st_size;
            }
            size = (uint64_t)sz;
        } else {
            const struct point_file *pf = &p->files[v->files[n->i2].idx];
            blob = pf->blob;
            size = pf->size;
        }
        struct blob_src *s = calloc(1, sizeof *s);
        if (!s || !blob || asprintf(&key, "%s/blob/%s", f->o->cache_key_prefix, blob) < 0) {
            free(s);
            pview_put(f, v);
            return !blob ? -ENOENT : -ENOMEM;
        }
        s->f = f;
        s->id = strdup(blob);
        pview_put(f, v);
        cs = (struct cache_source){blob_src_open, blob_src_read, blob_src_close, blob_src_free,
                                   s};
        if (!s->id) {
            blob_src_free(s);
            free(key);
            return -ENOMEM;
        }
    }
    rc = cache_file_open(f->o->cache, key, size, &cs, &h->cf, err);
    free(key);
    if (rc)
        return rc;
    h->type = H_CACHE;
    return 0;
}

/* f->mu held */
static struct open_count *open_count_get(struct fsd *f, fuse_ino_t ino, bool create)
{
    for (struct open_count *c = f->open_counts; c; c = c->next)
        if (c->ino == ino)
            return c;
    struct open_count *c = create ? calloc(1, sizeof *c) : NULL;
    if (c) {
        c->ino = ino;
        c->next = f->open_counts;
        f->open_counts = c;
    }
    return c;
}

/* How the kernel serves this open of a cached file: by passthrough from the cache's plain copy
 * when there is one and the inode is not open through the FUSE page cache (and always while it
 * is open by passthrough), else through the page cache. The backing id for the reply (0: the
 * page cache), or -ENOMEM. */
static int open_mode_pick(struct fsd *f, fuse_ino_t ino, struct handle *h)
{
    int plain = passthrough_on(f->pt) ? cache_file_plain_fd(h->cf) : -1;
    int id = 0;
    pthread_mutex_lock(&f->mu);
    struct open_count *c = open_count_get(f, ino, true);
    if (!c) {
        pthread_mutex_unlock(&f->mu);
        return -ENOMEM;
    }
    if (c->passthrough == 0 && c->cached == 0 && plain >= 0) {
        int r = passthrough_backing_open(f->pt, plain);
        c->backing_id = r > 0 ? r : 0;
    }
    if (c->backing_id > 0) {
        c->passthrough++;
        h->mode = OPEN_PASSTHROUGH;
        id = c->backing_id;
    } else {
        c->cached++;
        h->mode = OPEN_CACHED;
    }
    pthread_mutex_unlock(&f->mu);
    return id;
}

static void open_mode_release(struct fsd *f, fuse_ino_t ino, struct handle *h)
{
    int close_id = 0;
    if (h->mode == OPEN_UNCOUNTED)
        return;
    pthread_mutex_lock(&f->mu);
    struct open_count *c = open_count_get(f, ino, false);
    if (c) {
        if (h->mode == OPEN_PASSTHROUGH && --c->passthrough == 0) {
            close_id = c->backing_id;
            c->backing_id = 0;
        } else if (h->mode == OPEN_CACHED) {
            c->cached--;
        }
        if (c->passthrough == 0 && c->cached == 0) {
            struct open_count **pp = &f->open_counts;
            while (*pp != c)
                pp = &(*pp)->next;
            *pp = c->next;
            free(c);
        }
    }
    pthread_mutex_unlock(&f->mu);
    h->mode = OPEN_UNCOUNTED;
    if (close_id > 0)
        passthrough_backing_close(f->pt, close_id);
}

static void handle_track(struct fsd *f, struct handle *h)
{
    pthread_mutex_lock(&f->mu);
    h->prev = NULL;
    h->next = f->handles;
    if (f->handles)
        f->handles->prev = h;
    f->handles = h;
    pthread_mutex_unlock(&f->mu);
}

static void handle_untrack(struct fsd *f, struct handle *h)
{
    pthread_mutex_lock(&f->mu);
    if (h->prev)
        h->prev->next = h->next;
    else
        f->handles = h->next;
    if (h->next)
        h->next->prev = h->prev;
    pthread_mutex_unlock(&f->mu);
}

static void handle_free(struct handle *h)
{
    cache_file_close(h->cf);
    buf_release(&h->mem);
    free(h);
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fsd *f = fsd_of(req);
    struct node *n = node_find(f, ino);
    struct dverr err = {0};
    int rc = 0, backing_id = 0;
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (is_dir(n->kind)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    bool wr = (fi->flags & O_ACCMODE) != O_RDONLY;
    if (wr && !is_ctl(n->kind)) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (wr && !owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    struct handle *h = calloc(1, sizeof *h);
    if (!h) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    switch (n->kind) {
    case N_README:
        h->type = H_MEM;
        rc = buf_add(&h->mem, README_TEXT, sizeof README_TEXT - 1);
        fi->keep_cache = 1;
        break;
    case N_BACKUP_JSON: {
        struct pview *v;
        rc = pview_get(f, n->env, n->point, &v);
        if (!rc) {
            rc = buf_add(&h->mem, v->backup_json.data, v->backup_json.len);
            pview_put(f, v);
        }
        h->type = H_MEM;
        fi->keep_cache = 1;
        break;
    }
    case N_ENV_JSON:
        h->type = H_MEM;
        rc = render_env_json(f, n->env, &h->mem);
        fi->direct_io = 1;
        break;
    case N_OP_FILE:
        h->type = H_MEM;
        rc = f->o->control ? f->o->control->ops->ops_json(f->o->control->ctx, n->arg, &h->mem)
                           : -ENOENT;
        fi->direct_io = 1;
        break;
    case N_BACKUP_CTL:
    case N_RESTORE_CTL:
        h->type = H_CTL;
        h->write = wr;
        if (!wr)
            rc = render_status(f, n, &h->mem);
        fi->direct_io = 1;
        break;
    case N_TABLE: case N_CHANGE_FILE: case N_AUDIT: case N_SCHEMA_FILE: case N_FILE:
        rc = open_cached(f, n, h, &err);
        if (rc)
            log_warn("mount: open %s: %s", n->path, dverr_msg(&err));
        if (!rc)
            backing_id = open_mode_pick(f, ino, h);
        if (backing_id < 0)
            rc = backing_id;
        fi->keep_cache = 1;
        break;
    default:
        rc = -EINVAL;
    }
    if (rc) {
        handle_free(h);
        fuse_reply_err(req, rc == -ENOENT ? ENOENT : rc == -ENOMEM ? ENOMEM : EIO);
        return;
    }
    fi->fh = (uint64_t)(uintptr_t)h;
    /* a passthrough open needs no FLUSH: its close never waits for the daemon. Other opens keep
     * it: their last read's reply may still be in its writev when the reader closes, and the
     * FLUSH round trip keeps the RELEASE (which frees the handle) behind it (without it,
     * AddressSanitizer saw the handle freed while the writev of its reply returned). */
    fi->noflush = backing_id > 0;
    passthrough_next_open(backing_id);
    handle_track(f, h);
    if (fuse_reply_open(req, fi) != 0) {
        handle_untrack(f, h);
        open_mode_release(f, ino, h);
        handle_free(h);
    }
}

static _Thread_local char *tl_readbuf;
static _Thread_local size_t tl_readcap;
/* libfuse starts and ends worker threads as load changes: the key's destructor frees a thread's
 * read buffer when it ends (a bare _Thread_local pointer leaked it every time). */
static pthread_key_t readbuf_key;
static pthread_once_t readbuf_once = PTHREAD_ONCE_INIT;
static void readbuf_key_make(void)
{
    pthread_key_create(&readbuf_key, free);
}

static void read_failed(struct fsd *f, fuse_req_t req, fuse_ino_t ino, const char *msg)
{
    struct node *nd = node_find(f, ino);
    log_warn("mount: read %s: %s", nd ? nd->path : "?", msg);
    fuse_reply_err(req, EIO);
}

/* Read size bytes at off of a cached file and reply (the bytes are there, or it fails). */
static int reply_in_place(void *ctx, const void *p, size_t len)
{
    fuse_reply_buf(ctx, p, len);
    return 0;
}

static void read_serve(struct fsd *f, fuse_req_t req, fuse_ino_t ino, struct handle *h,
                       size_t size, off_t off)
{
    struct dverr err = {0};
    /* within one frame (most reads): straight from the cache's frame, no copy */
    int rc = cache_file_read_in_place(h->cf, size, (uint64_t)off, reply_in_place, req, &err);
    if (rc != -ERANGE) {
        if (rc < 0)
            read_failed(f, req, ino, dverr_msg(&err));
        return;
    }
    if (size > tl_readcap) {
        char *p = realloc(tl_readbuf, size);
        if (!p) {
            fuse_reply_err(req, ENOMEM);
            return;
        }
        tl_readbuf = p;
        tl_readcap = size;
        pthread_once(&readbuf_once, readbuf_key_make);
        pthread_setspecific(readbuf_key, p);
    }
    ssize_t n = cache_file_pread(h->cf, tl_readbuf, size, (uint64_t)off, &err);
    if (n < 0) {
        read_failed(f, req, ino, dverr_msg(&err));
        return;
    }
    fuse_reply_buf(req, tl_readbuf, (size_t)n);
}

/* A read waiting for a fill: no FUSE worker waits with it. The cache calls aread_ready when the
 * bytes are there (or the fill failed, or made no progress within the bound); the completer
 * thread then answers it. A signal to the reader (fuse interrupt) withdraws it with EINTR. */
struct aread {
    struct cache_waiter w;
    struct fsd *f;
    fuse_req_t req;
    fuse_ino_t ino;
    struct handle *h;
    size_t size;
    off_t off;
    int rc;
    char msg[300];
    struct aread *next;
};

static void aread_ready(struct cache_waiter *w, int rc, const char *msg)
{
    struct aread *a = (struct aread *)w;
    struct fsd *f = a->f;
    a->rc = rc;
    snprintf(a->msg, sizeof a->msg, "%s", msg);
    a->next = NULL;
    pthread_mutex_lock(&f->cq_mu);
    if (f->cq_tail)
        f->cq_tail->next = a;
    else
        f->cq_head = a;
    f->cq_tail = a;
    pthread_cond_signal(&f->cq_cond);
    pthread_mutex_unlock(&f->cq_mu);
}

/* Runs under the request's lock: a completer clearing the callback waits for it, so a stays
 * valid here; it is freed here only when the withdrawal won. */
static void aread_interrupted(fuse_req_t req, void *data)
{
    struct aread *a = data;
    if (cache_waiter_cancel(a->h->cf, &a->w)) {
        fuse_reply_err(req, EINTR);
        free(a);
    }
}

static void *completer_main(void *arg)
{
    struct fsd *f = arg;
    pthread_setname_np(pthread_self(), "fs-complete");
    pthread_mutex_lock(&f->cq_mu);
    for (;;) {
        while (!f->cq_head && !f->cq_stop)
            pthread_cond_wait(&f->cq_cond, &f->cq_mu);
        struct aread *a = f->cq_head;
        if (!a)
            break;
        f->cq_head = a->next;
        if (!f->cq_head)
            f->cq_tail = NULL;
        pthread_mutex_unlock(&f->cq_mu);
        fuse_req_interrupt_func(a->req, NULL, NULL); /* waits out a running interrupt */
        if (a->rc)
            read_failed(f, a->req, a->ino, a->msg);
        else
            read_serve(f, a->req, a->ino, a->h, a->size, a->off);
        free(a);
        pthread_mutex_lock(&f->cq_mu);
    }
    pthread_mutex_unlock(&f->cq_mu);
    return NULL;
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct fsd *f = fsd_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (h->type == H_MEM || h->type == H_CTL) {
        if ((uint64_t)off >= h->mem.len) {
            fuse_reply_buf(req, NULL, 0);
            return;
        }
        size_t n = h->mem.len - (size_t)off;
        fuse_reply_buf(req, h->mem.data + off, n < size ? n : size);
        return;
    }
    struct aread *a = f->completer_started ? calloc(1, sizeof *a) : NULL;
    if (a) {
        a->w.ready = aread_ready;
        a->f = f;
        a->req = req;
        a->ino = ino;
        a->h = h;
        a->size = size;
        a->off = off;
        /* before the waiter exists: once it does, a may be answered and freed at any time */
        fuse_req_interrupt_func(req, aread_interrupted, a);
        if (cache_file_wait_async(h->cf, (uint64_t)off, size, &a->w) == -EINPROGRESS)
            return;
        fuse_req_interrupt_func(req, NULL, NULL);
        free(a);
    }
    read_serve(f, req, ino, h, size, off); /* the bytes are there (or it fails at once) */
}

/* The kernel caches .operations/'s listing: drop it (a new operation). */
static void ops_dir_changed(struct fsd *f)
{
    fuse_lowlevel_notify_inval_inode(f->se, ino_peek(f, "/.operations", N_OPS_DIR), 0, 0);
}

/* A hash of the operation ids, to see .operations/ change. */
static uint64_t ops_list_hash(struct fsd *f)
{
    char **ids = NULL;
    size_t k = 0;
    uint64_t h = 0;
    if (f->o->control && f->o->control->ops->ops_list(f->o->control->ctx, &ids, &k) == 0) {
        for (size_t i = 0; i < k; i++)
            h = h * 31 + fnv1a(ids[i]);
        strv_free(ids, k);
    }
    return h;
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
    struct fsd *f = fsd_of(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    struct node *n = node_find(f, ino);
    if (!n || h->type != H_CTL || !h->write || !f->o->control) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    if (size > 4096) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char line[4097];
    memcpy(line, buf, size);
    line[size] = '\0';
    size_t len = size;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = '\0';
    if (memchr(line, '\n', len) || strlen(line) != len) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    struct dverr err = {0};
    int rc;
    if (n->kind == N_BACKUP_CTL)
        rc = f->o->control->ops->backup(f->o->control->ctx, n->env, line, &err);
    else
        rc = f->o->control->ops->restore(f->o->control->ctx, n->env, n->point, line, &err);
    if (rc) {
        log_info("mount: %s refused: %s", n->path, dverr_msg(&err));
        fuse_reply_err(req, -rc);
        return;
    }
    fuse_reply_write(req, size);
    ops_dir_changed(f);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    if (h) {
        handle_untrack(fsd_of(req), h);
        open_mode_release(fsd_of(req), ino, h);
        handle_free(h);
    }
    fuse_reply_err(req, 0);
}

static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, 0);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fsd *f = fsd_of(req);
    struct node *p = node_find(f, parent);
    if (!p) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (p->kind != N_ENV) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    struct pinfo pi = point_lookup(f, p->env, name);
    if (!pi.found) {
        bool special = strcmp(name, "labels") == 0 || strcmp(name, "at") == 0;
        fuse_reply_err(req, special ? EPERM : ENOENT);
        return;
    }
    struct dverr err = {0};
    int rc = f->src->ops->forget(f->src->impl, p->env, name, &err);
    if (rc) {
        log_info("mount: rmdir %s/%s: %s", p->env, name, dverr_msg(&err));
        fuse_reply_err(req, rc == -EPERM || rc == -ENOENT || rc == -EBUSY ? -rc : EIO);
        return;
    }
    eview_refresh(f, p->env, -1);
    fuse_reply_err(req, 0);
}

static void ll_erofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EROFS);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    fuse_reply_err(req, EROFS);
}

static void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EROFS);
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EROFS);
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct fsd *f = fsd_of(req);
    struct statvfs sv = {0};
    struct cache_stats cs;
    cache_stats(f->o->cache, &cs);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = cs.bytes / 4096;
    sv.f_namemax = 255;
    sv.f_files = f->n_nodes;
    sv.f_flag = ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ll_ops = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .readlink = ll_readlink,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .rmdir = ll_rmdir,
    .unlink = ll_erofs_entry,
    .mkdir = ll_mkdir,
    .mknod = ll_mknod,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .create = ll_create,
    .statfs = ll_statfs,
};

/* ---- the refresher ---- */
static void notify_env_changed(struct fsd *f, const char *env, char (*gone)[32], size_t n_gone)
{
    char dname[256] = "";
    pthread_mutex_lock(&f->vmu);
    for (size_t i = 0; i < f->n_envs; i++)
        if (strcmp(f->env_names[i], env) == 0)
            memcpy(dname, f->env_dnames[i], 256);
    pthread_mutex_unlock(&f->vmu);
    if (!dname[0])
        return;
    char path[300];
    snprintf(path, sizeof path, "/%s", dname);
    uint64_t h = fnv1a(path);
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    fuse_ino_t env_ino = n ? n->ino : 0;
    snprintf(path, sizeof path, "/%s/labels", dname);
    n = node_by_path(f, path, fnv1a(path));
    fuse_ino_t labels_ino = n ? n->ino : 0;
    pthread_mutex_unlock(&f->mu);
    if (!env_ino)
        return;
    fuse_lowlevel_notify_inval_inode(f->se, env_ino, 0, 0);
    fuse_lowlevel_notify_inval_entry(f->se, env_ino, "latest", 6);
    if (labels_ino)
        fuse_lowlevel_notify_inval_inode(f->se, labels_ino, 0, 0);
    for (size_t i = 0; i < n_gone; i++)
        fuse_lowlevel_notify_inval_entry(f->se, env_ino, gone[i], strlen(gone[i]));
    log_debug("mount: %s changed; kernel entries invalidated", env);
}

/* Let the kernel read ahead 1 MiB (the frame size) instead of 128 KiB. Only root may; best
 * effort. Runs on the refresher thread: stat of our own root needs the session loop running. */
static void raise_readahead(struct fsd *f)
{
    struct stat st;
    if (geteuid() != 0 || stat(f->o->mountpoint, &st) != 0)
        return;
    char path[128];
    snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", major(st.st_dev),
             minor(st.st_dev));
    FILE *fp = fopen(path, "we");
    if (fp) {
        fputs("1024\n", fp);
        fclose(fp);
    }
}

static void *refresher_main(void *arg)
{
    struct fsd *f = arg;
    int period = f->o->refresh_ms > 0 ? f->o->refresh_ms : 1000;
    raise_readahead(f);
    for (;;) {
        pthread_mutex_lock(&f->stop_mu);
        if (!f->stopping && !f->refresh_now) {
            struct timespec ts = timespec_in_ms(CLOCK_REALTIME, period);
            pthread_cond_timedwait(&f->stop_cond, &f->stop_mu, &ts);
        }
        f->refresh_now = false;
        bool stop = f->stopping;
        pthread_mutex_unlock(&f->stop_mu);
        if (stop)
            break;
        /* the kernel is told of every change, whichever thread saw it first */
        envs_refresh(f, 0);
        pthread_mutex_lock(&f->vmu);
        bool envs_changed = f->envs_notify;
        f->envs_notify = false;
        pthread_mutex_unlock(&f->vmu);
        if (envs_changed)
            fuse_lowlevel_notify_inval_inode(f->se, FUSE_ROOT_ID, 0, 0);
        uint64_t oh = ops_list_hash(f); /* operations the capture loop started, and ends */
        if (oh != f->ops_hash) {
            f->ops_hash = oh;
            ops_dir_changed(f);
        }
        /* every environment the kernel has seen */
        pthread_mutex_lock(&f->vmu);
        size_t n = 0;
        for (struct eview *e = f->eviews; e; e = e->next)
            n++;
        char **names = calloc(n ? n : 1, sizeof *names);
        size_t k = 0;
        for (struct eview *e = f->eviews; names && e; e = e->next)
            if ((names[k] = strdup(e->name)))
                k++;
        pthread_mutex_unlock(&f->vmu);
        for (size_t i = 0; i < k; i++) {
            eview_refresh(f, names[i], -1);
            pthread_mutex_lock(&f->vmu);
            struct eview *e = eview_find(f, names[i]);
            bool tell = e && e->notify;
            char(*gone)[32] = tell ? e->gone : NULL;
            size_t n_gone = tell ? e->n_gone : 0;
            if (tell) {
                e->notify = false;
                e->gone = NULL;
                e->n_gone = 0;
            }
            pthread_mutex_unlock(&f->vmu);
            if (tell)
                notify_env_changed(f, names[i], gone, n_gone);
            free(gone);
            free(names[i]);
        }
        free(names);
    }
    return NULL;
}

bool fs_mount_is_stale(const char *path)
{
    /* not stat (the kernel's attribute cache can answer it for a moment after the daemon died)
     * nor opendir (it never asks the daemon, see ll_opendir): statfs always asks */
    struct statvfs sv;
    return statvfs(path, &sv) < 0 && errno == ENOTCONN;
}

/* libfuse's custom I/O hooks: its userdata is the view's */
static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
    return passthrough_read(((struct fsd *)userdata)->pt, fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
    return passthrough_writev(((struct fsd *)userdata)->pt, fd, iov, count);
}

int fs_run(const struct fs_opts *o, const struct fs_source *src, struct dverr *err)
{
    struct fsd *f = calloc(1, sizeof *f);
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    struct fuse_loop_config *lc = NULL;
    int rc = 0;
    bool mounted = false, handlers = false;

    if (!f)
        return dverr_set(err, -ENOMEM, "out of memory");
    f->o = o;
    f->src = src;
    f->owner = getuid();
    f->group = getgid();
    f->started = time(NULL);
    pthread_mutex_init(&f->mu, NULL);
    pthread_mutex_init(&f->vmu, NULL);
    pthread_mutex_init(&f->stop_mu, NULL);
    pthread_cond_init(&f->stop_cond, NULL);
    pthread_mutex_init(&f->cq_mu, NULL);
    pthread_cond_init(&f->cq_cond, NULL);
    f->n_buckets = 1024;
    f->by_ino = calloc(f->n_buckets, sizeof *f->by_ino);
    f->by_path = calloc(f->n_buckets, sizeof *f->by_path);
    struct node *root = calloc(1, sizeof *root);
    if (!f->by_ino || !f->by_path || !root || !(root->path = strdup(""))) {
        free(root);
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    root->ino = FUSE_ROOT_ID;
    root->kind = N_ROOT;
    root->nlookup = 1;
    root->phash = fnv1a("");
    node_link(f, root);

    if (fs_mount_is_stale(o->mountpoint)) {
        rc = dverr_set(err, -ENOTCONN,
                       "%s is a stale mount of a daemon that died (Transport endpoint is not "
                       "connected); `dvsnap mount` recovers it, or run `fusermount3 -uz %s`",
                       o->mountpoint, o->mountpoint);
        goto out;
    }
    char opt[512];
    snprintf(opt, sizeof opt,
             "fsname=dvsnap,subtype=dvsnap,default_permissions,max_read=1048576%s",
             o->allow_other ? ",allow_other" : "");
    if (fuse_opt_add_arg(&args, "dvsnap") || fuse_opt_add_arg(&args, "-o") ||
        fuse_opt_add_arg(&args, opt) || (o->debug && fuse_opt_add_arg(&args, "-d"))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    f->se = fuse_session_new(&args, &ll_ops, sizeof ll_ops, f);
    if (!f->se) {
        rc = dverr_set(err, -EINVAL, "cannot create the FUSE session");
        goto out;
    }
    /* a background job of a shell starts with SIGINT ignored, and libfuse then leaves it so:
     * SIGINT must always unmount cleanly */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if (fuse_set_signal_handlers(f->se) != 0) {
        rc = dverr_set(err, -EIO, "cannot set signal handlers");
        goto out;
    }
    handlers = true;
    if (fuse_session_mount(f->se, o->mountpoint) != 0) {
        rc = dverr_set(err, -EIO, "cannot mount at %s (is /dev/fuse available? is it in use?)",
                       o->mountpoint);
        goto out;
    }
    mounted = true;
    /* passthrough needs CAP_SYS_ADMIN; without it the kernel refuses every backing file */
    f->pt = passthrough_new(!o->no_passthrough && geteuid() == 0);
    struct fuse_custom_io io = {.read = io_read, .writev = io_writev};
    if (!f->pt || fuse_session_custom_io(f->se, &io, fuse_session_fd(f->se)) != 0) {
        rc = dverr_set(err, -ENOMEM, "cannot set up the FUSE device's I/O");
        goto out;
    }
    if (fuse_daemonize(o->foreground) != 0) {
        rc = dverr_set(err, -EIO, "cannot daemonize");
        goto out;
    }
    /* neither takes signals: SIGINT must reach the session loop */
    if (thread_start(&f->refresher, refresher_main, f) == 0)
        f->refresher_started = true;
    /* without it, reads wait for fills on the FUSE workers, as they did before */
    if (o->cache && thread_start(&f->completer, completer_main, f) == 0)
        f->completer_started = true;
    if (o->on_mounted)
        o->on_mounted(o->on_mounted_ctx);
    log_info("mount: serving %s", o->mountpoint);
    lc = fuse_loop_cfg_create();
    if (!lc) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    fuse_loop_cfg_set_max_threads(lc, (unsigned)(o->max_threads > 0 ? o->max_threads : 16));
    fuse_loop_cfg_set_idle_threads(lc, 4);
    fuse_loop_cfg_set_clone_fd(lc, 0);
    int lrc = fuse_session_loop_mt(f->se, lc);
    if (lrc < 0 && lrc != -EINTR)
        rc = dverr_set(err, lrc, "FUSE session loop: %s", strerror(-lrc));
out:
    if (f->refresher_started) {
        pthread_mutex_lock(&f->stop_mu);
        f->stopping = true;
        pthread_cond_broadcast(&f->stop_cond);
        pthread_mutex_unlock(&f->stop_mu);
        pthread_join(f->refresher, NULL);
    }
    /* fills hold references to point views and use the source: stop them before freeing */
    if (o->cache)
        cache_stop_fills(o->cache); /* this also answers every waiting read */
    if (f->completer_started) {
        pthread_mutex_lock(&f->cq_mu);
        f->cq_stop = true;
        pthread_cond_signal(&f->cq_cond);
        pthread_mutex_unlock(&f->cq_mu);
        pthread_join(f->completer, NULL);
    }
    if (mounted)
        fuse_session_unmount(f->se);
    if (handlers)
        fuse_remove_signal_handlers(f->se);
    if (f->se)
        fuse_session_destroy(f->se);
    fuse_loop_cfg_destroy(lc);
    fuse_opt_free_args(&args);
    /* free everything */
    if (f->by_ino) {
        for (size_t i = 0; i < f->n_buckets; i++) {
            struct node *n = f->by_ino[i], *next;
            for (; n; n = next) {
                next = n->inext;
                node_free(n);
            }
        }
    }
    free(f->by_ino);
    free(f->by_path);
    for (struct open_count *c = f->open_counts, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    /* files still open when the session ended (a RELEASE still queued at unmount) */
    for (struct handle *h = f->handles, *next; h; h = next) {
        next = h->next;
        handle_free(h);
    }
    passthrough_free(f->pt);
    for (struct pview *v = f->lru_head, *next; v; v = next) {
        next = v->next;
        pview_free(f, v);
    }
    for (struct eview *e = f->eviews, *next; e; e = next) {
        next = e->next;
        if (e->pts)
            src->ops->points_free(e->pts, e->n);
        free(e->labels);
        free(e->label_pt);
        free(e->gone);
        free(e->name);
        free(e);
    }
    strv_free(f->env_names, f->n_envs);
    free(f->env_dnames);
    pthread_mutex_destroy(&f->mu);
    pthread_mutex_destroy(&f->vmu);
    pthread_mutex_destroy(&f->stop_mu);
    pthread_cond_destroy(&f->stop_cond);
    pthread_mutex_destroy(&f->cq_mu);
    pthread_cond_destroy(&f->cq_cond);
    free(f);
    return rc;
}
