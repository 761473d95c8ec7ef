/* node: the view's inode numbers. Everything under a restore point (the point's directory and all
 * below it: 99.9% of a big tree) gets an encoded number that says what it is, so the daemon keeps
 * nothing for it however many of them the kernel knows:
 *   CTL_BIT (a control file) | ENC_BIT | kind << 57 | point number << 32 | index
 * where the point number stands for an environment and a point name (given when the point is first
 * seen, kept for the mount's life: about 60 bytes a point, reckoned) and the index is the node's table
 * or file in the point's view (fs_int.h, struct node). The view of a point is loaded again from
 * its immutable manifest when needed, and gives the same indexes every time. A FORGET of such a
 * number is a no-op, and the kernel keeps these entries and their listings for as long as it has
 * memory for them (IMMUTABLE_TIMEOUT), as it does a local disk's: a second `ls -lR` is served by
 * the kernel but for one GETATTR a directory (a directory read on a writable mount has its access
 * time marked stale, and `ls -R` stats each directory it opens).
 *
 * The rest (the root, environments, labels, at/ links, .operations) is few but changing: one
 * struct node per kernel-known inode, created by lookup and readdirplus and dropped when the
 * kernel forgets it (nlookup 0) and none of its children is left. Its identity is its path; its
 * number a 62-bit FNV-1a hash of that path (collisions probe to the next free number), control
 * files with CTL_BIT set, the root 1. Those nodes are kept in an LRU by last lookup, and when more
 * than fsd.max_nodes are in it (at/<time> links are as many as the times looked up), node_trim
 * (on the refresher) asks the kernel to drop the least recently looked-up leaf entries
 * (fuse_lowlevel_notify_inval_entry); the kernel drops those not in use and sends FORGET, and
 * keeps those in use until they no longer are. The kernel handles a notification inside its
 * write, and the FORGETs it causes need the FUSE workers to be reading: hence the refresher, never
 * a request handler, and no lock held across it. A node borrows its env string from its parent
 * when it is the same.
 *
 * Numbers are stable for the mount's life and, barring collisions, across mounts: a point's number
 * is a 25-bit hash of its environment and name (a collision probes to the next free number, so
 * which point keeps its number depends on which was seen first). Limits: 2^24 point numbers a
 * mount (half the space, so probing stays short; a lookup past them fails with EOVERFLOW) and 2^32
 * entries a point's directory; two hash tables for the nodes (by inode, by
 * path) that double when they hold twice as many nodes as buckets, and stay as they are when that
 * allocation fails; PN_BUCKETS chains for the point numbers (no growth: chains of 16 at a million
 * points). Between two trims the nodes can exceed max_nodes by what the kernel looks up meanwhile.
 * Threading: any thread. fsd->mu guards the tables, the LRU, nlookup, n_children and the point
 * numbers: node_by_ino, node_by_path, node_link, node_unlink and ino_for expect it held, the
 * others take it. Node fields other than those never change after creation, and a node outlives
 * its children; a point number's strings never move: handlers read copies without a lock. */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

uint64_t fs_fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

bool fs_is_ctl(enum nkind k)
{
    return k == N_BACKUP_CTL || k == N_RESTORE_CTL;
}

bool fs_is_dir(enum nkind k)
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

bool fs_is_link(enum nkind k)
{
    return k == N_LATEST || k == N_LABEL || k == N_AT_LINK;
}

/* under a restore point: never changes */
bool fs_is_immutable(enum nkind k)
{
    return k >= N_POINT && k != N_RESTORE_CTL;
}

char *fs_xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct node *node_by_ino(struct fsd *f, fuse_ino_t ino)
{
    for (struct node *n = f->by_ino[ino % f->n_buckets]; n; n = n->inext)
        if (n->ino == ino)
            return n;
    return NULL;
}

struct node *node_by_path(struct fsd *f, const char *path, uint64_t h)
{
    for (struct node *n = f->by_path[h % f->n_buckets]; n; n = n->pnext)
        if (n->phash == h && strcmp(n->path, path) == 0)
            return n;
    return NULL;
}

static void lru_remove(struct fsd *f, struct node *n)
{
    if (!n->in_lru)
        return;
    if (n->lprev)
        n->lprev->lnext = n->lnext;
    else
        f->lru_first = n->lnext;
    if (n->lnext)
        n->lnext->lprev = n->lprev;
    else
        f->lru_last = n->lprev;
    n->lprev = n->lnext = NULL;
    n->in_lru = false;
    f->n_lru--;
}

/* (Re)put n at the most recently looked-up end. */
static void lru_touch(struct fsd *f, struct node *n)
{
    lru_remove(f, n);
    n->lprev = f->lru_last;
    n->lnext = NULL;
    if (f->lru_last)
        f->lru_last->lnext = n;
    else
        f->lru_first = n;
    f->lru_last = n;
    n->in_lru = true;
    f->n_lru++;
}

void node_link(struct fsd *f, struct node *n)
{
    if (n->parent) {
        n->parent->n_children++;
        lru_touch(f, n);
    }
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

void node_free(struct node *n)
{
    if (!n)
        return;
    free(n->path);
    if (n->owns & NODE_OWNS_ENV)
        free(n->env);
    free(n->arg);
    free(n);
}

/* Unlink n if nobody needs it any more (the kernel forgot it, no child is left), then its
 * parent on the same terms, and so on up (mu held). The unlinked nodes, chained through lnext,
 * for the caller to free without the lock. */
static struct node *node_release(struct fsd *f, struct node *n)
{
    struct node *freed = NULL;
    while (n && n->parent && n->nlookup == 0 && n->n_children == 0) {
        struct node *p = n->parent;
        lru_remove(f, n);
        node_unlink(f, n);
        p->n_children--;
        n->lnext = freed;
        freed = n;
        n = p;
    }
    return freed;
}

static void node_free_chain(struct node *n)
{
    while (n) {
        struct node *next = n->lnext;
        node_free(n);
        n = next;
    }
}

static fuse_ino_t ino_for(struct fsd *f, const char *path, uint64_t h, enum nkind kind)
{
    fuse_ino_t ino = h & ~(CTL_BIT | ENC_BIT);
    if (ino < 2)
        ino += 2;
    while (node_by_ino(f, ino | (fs_is_ctl(kind) ? CTL_BIT : 0)))
        ino = (ino + 1) & ~(CTL_BIT | ENC_BIT);
    return ino | (fs_is_ctl(kind) ? CTL_BIT : 0);
}

/* ---- encoded numbers ---- */

static bool is_encoded(enum nkind kind)
{
    return kind >= N_POINT;
}

static fuse_ino_t encode(enum nkind kind, uint32_t number, int idx)
{
    return (fs_is_ctl(kind) ? CTL_BIT : 0) | ENC_BIT | (uint64_t)kind << ENC_KIND_SHIFT |
           (uint64_t)number << ENC_POINT_SHIFT | (uint32_t)idx;
}

/* Point numbers are kept in slots, in the order they were given; two hash chains find a slot by
 * env and name, and by number. */
static struct point_number *slot_at(struct fsd *f, uint32_t slot)
{
    return &f->pn_blocks[slot / ENC_POINT_BLOCK][slot % ENC_POINT_BLOCK];
}

static uint32_t name_bucket(const char *env, const char *point)
{
    return (uint32_t)((fs_fnv1a(env) * 31 + fs_fnv1a(point)) & (PN_BUCKETS - 1));
}

static uint32_t number_bucket(uint32_t number)
{
    return (uint32_t)((number * 0x9E3779B1u) >> 16) & (PN_BUCKETS - 1);
}

/* The point number of env/point, or -1 (mu held). */
static int64_t number_find(struct fsd *f, const char *env, const char *point)
{
    if (!f->pn_hash)
        return -1;
    for (uint32_t k = f->pn_hash[name_bucket(env, point)]; k; k = slot_at(f, k - 1)->next) {
        const struct point_number *pn = slot_at(f, k - 1);
        if (strcmp(pn->name, point) == 0 && strcmp(pn->env, env) == 0)
            return pn->number;
    }
    return -1;
}

/* The slot of point number number, or NULL (mu held). */
static const struct point_number *number_slot(struct fsd *f, uint32_t number)
{
    if (!f->pn_nhash)
        return NULL;
    for (uint32_t k = f->pn_nhash[number_bucket(number)]; k; k = slot_at(f, k - 1)->nnext) {
        const struct point_number *pn = slot_at(f, k - 1);
        if (pn->number == number)
            return pn;
    }
    return NULL;
}

/* The number of env/point, given now if it has none (mu held); -ENOMEM, -EOVERFLOW. A new
 * number is a hash of env and name (the next free one when taken), so a point keeps its number
 * across mounts unless another point took it first. */
static int64_t number_of(struct fsd *f, const char *env, const char *point)
{
    int64_t found = number_find(f, env, point);
    if (found >= 0)
        return found;
    if (strlen(point) >= sizeof ((struct point_number *)0)->name)
        return -ENAMETOOLONG;
    if (f->n_points >= PN_MAX_SLOTS)
        return -EOVERFLOW; /* half full: probing stays short */
    if (!f->pn_hash) {
        f->pn_hash = calloc(PN_BUCKETS, sizeof *f->pn_hash);
        f->pn_nhash = calloc(PN_BUCKETS, sizeof *f->pn_nhash);
        f->pn_blocks = calloc(PN_MAX_SLOTS / ENC_POINT_BLOCK, sizeof *f->pn_blocks);
        if (!f->pn_hash || !f->pn_nhash || !f->pn_blocks) {
            free(f->pn_hash);
            free(f->pn_nhash);
            free(f->pn_blocks);
            f->pn_hash = f->pn_nhash = NULL;
            f->pn_blocks = NULL;
            return -ENOMEM;
        }
    }
    const char *env_copy = NULL;
    for (size_t i = 0; i < f->n_pn_envs && !env_copy; i++)
        if (strcmp(f->pn_envs[i], env) == 0)
            env_copy = f->pn_envs[i];
    if (!env_copy) {
        char **envs = realloc(f->pn_envs, (f->n_pn_envs + 1) * sizeof *envs);
        if (!envs)
            return -ENOMEM;
        f->pn_envs = envs;
        if (!(envs[f->n_pn_envs] = strdup(env)))
            return -ENOMEM;
        env_copy = envs[f->n_pn_envs++];
    }
    uint32_t slot = f->n_points;
    struct point_number **block = &f->pn_blocks[slot / ENC_POINT_BLOCK];
    if (!*block && !(*block = calloc(ENC_POINT_BLOCK, sizeof **block)))
        return -ENOMEM;
    const uint32_t mask = (1u << ENC_POINT_BITS) - 1;
    uint32_t number = (uint32_t)(fs_fnv1a(env) ^ (fs_fnv1a(point) * 0x9E3779B97F4A7C15ULL)) & mask;
    while (number_slot(f, number))
        number = (number + 1) & mask;
    struct point_number *pn = slot_at(f, slot);
    pn->env = env_copy;
    memcpy(pn->name, point, strlen(point) + 1);
    pn->number = number;
    uint32_t b = name_bucket(env, point);
    pn->next = f->pn_hash[b];
    f->pn_hash[b] = slot + 1;
    b = number_bucket(number);
    pn->nnext = f->pn_nhash[b];
    f->pn_nhash[b] = slot + 1;
    f->n_points++;
    return number;
}

void node_numbers_free(struct fsd *f)
{
    if (f->pn_blocks)
        for (size_t i = 0; i < PN_MAX_SLOTS / ENC_POINT_BLOCK; i++)
            free(f->pn_blocks[i]);
    free(f->pn_blocks);
    free(f->pn_hash);
    free(f->pn_nhash);
    for (size_t i = 0; i < f->n_pn_envs; i++)
        free(f->pn_envs[i]);
    free(f->pn_envs);
    f->pn_blocks = NULL;
    f->pn_hash = f->pn_nhash = NULL;
    f->pn_envs = NULL;
    f->n_pn_envs = 0;
    f->n_points = 0;
}

/* The encoded number of child d of parent (mu held): its point's number is its parent's, or, for
 * a point's directory, looked up (given when new). 0 with *err set when it cannot be numbered. */
static fuse_ino_t encoded_child(struct fsd *f, const struct node *parent, const struct dent *d,
                                int *err)
{
    int64_t number;
    if (is_encoded(parent->kind))
        number = (int64_t)((parent->ino >> ENC_POINT_SHIFT) & ((1u << ENC_POINT_BITS) - 1));
    else
        number = number_of(f, d->env, d->point);
    if (number < 0) {
        *err = (int)number;
        return 0;
    }
    return encode(d->kind, (uint32_t)number, d->idx);
}

fuse_ino_t node_point_ino(struct fsd *f, const char *env, const char *point, enum nkind kind)
{
    pthread_mutex_lock(&f->mu);
    int64_t number = number_find(f, env, point);
    pthread_mutex_unlock(&f->mu);
    return number < 0 ? 0 : encode(kind, (uint32_t)number, 0);
}

fuse_ino_t node_path_ino(struct fsd *f, const char *path)
{
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, fs_fnv1a(path));
    fuse_ino_t ino = n ? n->ino : 0;
    pthread_mutex_unlock(&f->mu);
    return ino;
}

/* The node path of child d of parent (outside the points); NULL on ENOMEM. */
static char *child_path(const struct node *parent, const struct dent *d)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", parent->ino == FUSE_ROOT_ID ? "" : parent->path, d->name) < 0)
        return NULL;
    return path;
}

fuse_ino_t node_ino_peek(struct fsd *f, const struct node *parent, const struct dent *d)
{
    int err = 0;
    fuse_ino_t ino = 0;
    if (is_encoded(d->kind)) {
        pthread_mutex_lock(&f->mu);
        ino = encoded_child(f, parent, d, &err);
        pthread_mutex_unlock(&f->mu);
        return ino;
    }
    char *path = child_path(parent, d);
    if (!path)
        return 0;
    uint64_t h = fs_fnv1a(path);
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    ino = n ? n->ino : ino_for(f, path, h, d->kind);
    pthread_mutex_unlock(&f->mu);
    free(path);
    return ino;
}

/* Own a copy of s, or borrow the parent's when it is the same string. */
static char *borrow_or_dup(const char *s, char *parents, uint8_t bit, uint8_t *owns)
{
    if (!s)
        return NULL;
    if (parents && strcmp(s, parents) == 0)
        return parents;
    *owns |= bit;
    return strdup(s);
}

int node_get(struct fsd *f, const struct node *parent_copy, const struct dent *d,
             fuse_ino_t *ino)
{
    int rc = 0;
    *ino = 0;
    if (is_encoded(d->kind)) {
        pthread_mutex_lock(&f->mu);
        *ino = encoded_child(f, parent_copy, d, &rc);
        pthread_mutex_unlock(&f->mu);
        if (rc)
            log_warn("mount: %s/%s has no inode number: %s", d->env, d->point, strerror(-rc));
        return rc;
    }
    char *path = child_path(parent_copy, d);
    if (!path)
        return -ENOMEM;
    uint64_t h = fs_fnv1a(path);
    bool wake = false;
    pthread_mutex_lock(&f->mu);
    struct node *parent = node_by_ino(f, parent_copy->ino);
    struct node *n = node_by_path(f, path, h);
    if (n) {
        n->nlookup++;
        lru_touch(f, n);
        *ino = n->ino;
        goto out;
    }
    if (!parent) { /* forgotten meanwhile */
        rc = -ENOENT;
        goto out;
    }
    if (!(n = calloc(1, sizeof *n))) {
        rc = -ENOMEM;
        goto out;
    }
    n->path = path;
    path = NULL;
    n->phash = h;
    n->kind = d->kind;
    n->parent = parent;
    n->env = borrow_or_dup(d->env, parent->env, NODE_OWNS_ENV, &n->owns);
    n->arg = fs_xstrdup(d->arg);
    n->idx = d->idx;
    n->nlookup = 1;
    if ((d->env && !n->env) || (d->arg && !n->arg)) {
        node_free(n);
        rc = -ENOMEM;
        goto out;
    }
    if (f->n_nodes + 1 > f->n_buckets * 2)
        grow_tables(f);
    n->ino = ino_for(f, n->path, h, d->kind);
    node_link(f, n);
    *ino = n->ino;
    if (f->n_lru > f->max_nodes && !f->trim_asked)
        wake = f->trim_asked = true;
out:
    pthread_mutex_unlock(&f->mu);
    free(path);
    if (wake)
        refresher_wake_trim(f);
    return rc;
}

struct node *node_find(struct fsd *f, fuse_ino_t ino, struct node *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&f->mu);
    if (ino & ENC_BIT) {
        enum nkind kind = (enum nkind)((ino >> ENC_KIND_SHIFT) & 31);
        uint32_t number = (uint32_t)((ino >> ENC_POINT_SHIFT) & ((1u << ENC_POINT_BITS) - 1));
        const struct point_number *pn = number_slot(f, number);
        bool known = pn && is_encoded(kind) && kind <= N_FILE && !(ino & CTL_BIT) == !fs_is_ctl(kind);
        if (known) {
            out->ino = ino;
            out->kind = kind;
            out->env = (char *)pn->env;
            out->point = (char *)pn->name;
            out->idx = (int)(uint32_t)ino;
        }
        pthread_mutex_unlock(&f->mu);
        return known ? out : NULL;
    }
    struct node *n = node_by_ino(f, ino);
    if (n)
        *out = *n;
    pthread_mutex_unlock(&f->mu);
    return n ? out : NULL;
}

const char *node_describe(const struct node *n, char *buf, size_t size)
{
    static const char *const what[] = {
        [N_POINT] = "the directory", [N_BACKUP_JSON] = "backup.json", [N_RESTORE_CTL] = ".restore",
        [N_AUDIT] = "audit.json", [N_TABLES] = "tables/", [N_TABLE] = "table",
        [N_SCHEMA] = "schema/", [N_SCHEMA_FILE] = "schema", [N_CHANGES] = "changes/",
        [N_CHANGE_FILE] = "changes of table", [N_FILES] = "files/",
        [N_FILES_TABLE] = "files/ table", [N_FILES_RECORD] = "record directory of file",
        [N_FILE] = "file",
    };
    if (n->path)
        return n->path;
    snprintf(buf, size, "%s %d of point %s/%s", what[n->kind] ? what[n->kind] : "entry", n->idx,
             n->env, n->point);
    return buf;
}

void node_forget(struct fsd *f, fuse_ino_t ino, uint64_t nlookup)
{
    if (ino == FUSE_ROOT_ID || (ino & ENC_BIT))
        return;
    struct node *freed = NULL;
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_ino(f, ino);
    if (n) {
        n->nlookup = n->nlookup > nlookup ? n->nlookup - nlookup : 0;
        if (n->nlookup == 0) {
            lru_remove(f, n);
            freed = node_release(f, n);
        }
    }
    pthread_mutex_unlock(&f->mu);
    node_free_chain(freed);
}

/* node_trim's batch: the entries to drop, copied under mu and told without it */
#define TRIM_BATCH 1024

struct trim_entry {
    fuse_ino_t parent;
    size_t len;
    char name[256];
};

void node_trim(struct fsd *f)
{
    size_t low = f->max_nodes - f->max_nodes / 8;
    /* the refresher calls this at every pass: no batch to allocate when under the bound */
    pthread_mutex_lock(&f->mu);
    bool over = f->n_lru > low;
    if (!over)
        f->trim_asked = false;
    pthread_mutex_unlock(&f->mu);
    if (!over)
        return;
    struct trim_entry *batch = malloc(TRIM_BATCH * sizeof *batch);
    size_t asked = 0;
    for (;;) {
        size_t k = 0;
        pthread_mutex_lock(&f->mu);
        size_t scan = f->n_lru;
        for (struct node *n = f->lru_first, *next; batch && n && k < TRIM_BATCH &&
                                                   f->n_lru > low && scan > 0;
             n = next, scan--) {
            next = n->lnext;
            if (n->n_children) {
                lru_touch(f, n); /* a directory whose children the kernel knows: later */
                continue;
            }
            const char *name = strrchr(n->path, '/') + 1; /* at most 255 bytes (NAME_MAX) */
            size_t len = strlen(name);
            lru_remove(f, n);
            batch[k].parent = n->parent->ino;
            batch[k].len = len;
            memcpy(batch[k].name, name, len + 1);
            k++;
        }
        if (!k)
            f->trim_asked = false;
        pthread_mutex_unlock(&f->mu);
        if (!k)
            break;
        for (size_t i = 0; i < k; i++)
            fuse_lowlevel_notify_inval_entry(f->se, batch[i].parent, batch[i].name, batch[i].len);
        asked += k;
    }
    free(batch);
    if (asked)
        log_debug("mount: asked the kernel to drop %zu entries", asked);
}
