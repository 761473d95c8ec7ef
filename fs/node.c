/* node: the view's nodes, one struct node per kernel-known inode, created by lookup and
 * readdirplus and dropped when the kernel forgets it (nlookup 0), so memory stays flat under
 * `find`. A node's identity is its path in the view; its inode number is a 63-bit FNV-1a hash of
 * that path (collisions probe to the next free number), control files get the top bit set (a
 * reserved range), the root is 1. So numbers are stable for the life of the mount and, barring
 * collisions, across mounts. Also the small helpers every file uses: the hash and the kinds'
 * predicates.
 *
 * Limits: two hash tables (by inode, by path) that double when they hold twice as many nodes as
 * buckets, and stay as they are when that allocation fails.
 * Threading: any thread. fsd->mu guards the tables and nlookup: node_by_ino, node_by_path,
 * node_link, node_unlink and ino_for expect it held, the others take it. Node fields other than
 * nlookup never change after creation (parents are pinned by the kernel while their children are
 * looked up), so handlers read them without a lock. */
#include "fs/fs_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void node_link(struct fsd *f, struct node *n)
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

void node_free(struct node *n)
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

/* Find or create the node for a child and take one lookup reference. */
struct node *node_get(struct fsd *f, const struct node *parent, const struct dent *d)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", parent->ino == FUSE_ROOT_ID ? "" : parent->path, d->name) < 0)
        return NULL;
    uint64_t h = fs_fnv1a(path);
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
    n->env = fs_xstrdup(d->env);
    n->point = fs_xstrdup(d->point);
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
    pthread_mutex_unlock(&f->mu);
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
