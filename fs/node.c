/* node: the view's nodes, one struct node per kernel-known inode, created by lookup and
 * readdirplus and dropped when the kernel forgets it (nlookup 0) and none of its children is
 * left. A node's identity is its path in the view; its inode number is a 63-bit FNV-1a hash of
 * that path (collisions probe to the next free number), control files get the top bit set (a
 * reserved range), the root is 1. So numbers are stable for the life of the mount and, barring
 * collisions, across mounts. Also the small helpers every file uses: the hash and the kinds'
 * predicates.
 *
 * Memory is bounded: the kernel keeps every entry it looked up for as long as it has memory to
 * spare (1.6M entries after one `ls -lR` of 1,000 points of the 700-table org: 499 MB of nodes),
 * so the nodes it knows are kept in an LRU by last lookup, and when more than fsd.max_nodes are
 * in it, node_trim (on the refresher) asks the kernel to drop the least recently looked-up leaf
 * entries (fuse_lowlevel_notify_inval_entry); the kernel drops those not in use and sends FORGET,
 * and keeps those in use (an open file, a working directory) until they no longer are. A node
 * whose drop was asked leaves the LRU, and comes back to it when looked up again. The kernel
 * handles a notification inside its write, and the FORGETs it causes need the FUSE workers to be
 * reading: hence the refresher, never a request handler, and no lock held across it. A node borrows
 * its env and point strings from its parent when they are the same (most are).
 *
 * Limits: two hash tables (by inode, by path) that double when they hold twice as many nodes as
 * buckets, and stay as they are when that allocation fails. Between two trims the nodes can
 * exceed max_nodes by what the kernel looks up meanwhile (the refresher is woken at once). A
 * directory's entry is asked to be dropped only once its children are gone, so a dropped
 * directory costs its parent's cached listing (the kernel drops it with any entry of it).
 * Threading: any thread. fsd->mu guards the tables, the LRU, nlookup and n_children: node_by_ino,
 * node_by_path, node_link, node_unlink and ino_for expect it held, the others take it. Node fields
 * other than those never change after creation, and a node outlives its children, so handlers
 * read them without a lock. */
#include "fs/fs_int.h"

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
    if (n->owns & NODE_OWNS_POINT)
        free(n->point);
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
    fuse_ino_t ino = fs_is_ctl(kind) ? (h | CTL_BIT) : (h & ~CTL_BIT);
    if (ino < 2)
        ino += 2;
    while (node_by_ino(f, ino))
        ino++;
    return ino;
}

/* The inode number a child has or would get (for plain readdir). */
fuse_ino_t node_ino_peek(struct fsd *f, const char *path, enum nkind kind)
{
    uint64_t h = fs_fnv1a(path);
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    fuse_ino_t ino = n ? n->ino : ino_for(f, path, h, kind);
    pthread_mutex_unlock(&f->mu);
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

/* Find or create the node for a child and take one lookup reference. */
struct node *node_get(struct fsd *f, struct node *parent, const struct dent *d)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", parent->ino == FUSE_ROOT_ID ? "" : parent->path, d->name) < 0)
        return NULL;
    uint64_t h = fs_fnv1a(path);
    bool wake = false;
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_path(f, path, h);
    if (n) {
        n->nlookup++;
        lru_touch(f, n);
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
    n->parent = parent;
    n->env = borrow_or_dup(d->env, parent->env, NODE_OWNS_ENV, &n->owns);
    n->point = borrow_or_dup(d->point, parent->point, NODE_OWNS_POINT, &n->owns);
    n->arg = fs_xstrdup(d->arg);
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
    if (f->n_lru > f->max_nodes && !f->trim_asked)
        wake = f->trim_asked = true;
    pthread_mutex_unlock(&f->mu);
    if (wake)
        refresher_wake_trim(f);
    return n;
}

struct node *node_find(struct fsd *f, fuse_ino_t ino)
{
    pthread_mutex_lock(&f->mu);
    struct node *n = node_by_ino(f, ino);
    pthread_mutex_unlock(&f->mu);
    return n;
}

void node_forget(struct fsd *f, fuse_ino_t ino, uint64_t nlookup)
{
    if (ino == FUSE_ROOT_ID)
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
