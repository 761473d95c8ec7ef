/* cache entries: the table of entries (a hash table on the SHA-256 name of the key), the LRU list,
 * the byte budget and eviction. An entry leaves the table when it fails or is evicted; an
 * evicted one is handed back as a victim (linked through hnext) for the caller to delete (row,
 * file, memory) once c->mu is released.
 *
 * Limits: only READY entries that nobody references are evicted (plain copies of unreferenced
 * entries go first), so open files can hold the cache over its budget. The table doubles when
 * it averages two entries a bucket, and keeps longer chains when memory is short.
 * Threading: every function here is called with c->mu held, except cache_entry_free,
 * cache_entry_path and cache_victims_join (no lock needed) and cache_delete_victims (called
 * without c->mu; it takes c->db_mu). */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/cache_int.h"

static size_t key_hash(const char *name)
{
    size_t h = 0;
    for (int i = 0; i < 16; i++)
        h = h * 16 + (size_t)(name[i] <= '9' ? name[i] - '0' : name[i] - 'a' + 10);
    return h;
}

struct entry *cache_table_find(struct cache *c, const char *name)
{
    for (struct entry *e = c->buckets[key_hash(name) % c->n_buckets]; e; e = e->hnext)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void table_grow(struct cache *c)
{
    size_t nb = c->n_buckets * 2;
    struct entry **b = calloc(nb, sizeof *b);
    if (!b)
        return; /* stay with longer chains */
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct entry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            size_t h = key_hash(e->name) % nb;
            e->hnext = b[h];
            b[h] = e;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
}

void cache_table_add(struct cache *c, struct entry *e)
{
    if (c->n_entries + 1 > c->n_buckets * 2)
        table_grow(c);
    size_t h = key_hash(e->name) % c->n_buckets;
    e->hnext = c->buckets[h];
    c->buckets[h] = e;
    e->in_table = true;
    c->n_entries++;
}

void cache_table_remove(struct cache *c, struct entry *e)
{
    if (!e->in_table)
        return;
    struct entry **pp = &c->buckets[key_hash(e->name) % c->n_buckets];
    for (; *pp; pp = &(*pp)->hnext)
        if (*pp == e) {
            *pp = e->hnext;
            break;
        }
    e->in_table = false;
    c->n_entries--;
}

void cache_lru_unlink(struct cache *c, struct entry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else if (c->lru_head == e)
        c->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else if (c->lru_tail == e)
        c->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

void cache_lru_touch(struct cache *c, struct entry *e)
{
    cache_lru_unlink(c, e);
    e->lprev = c->lru_tail;
    if (c->lru_tail)
        c->lru_tail->lnext = e;
    else
        c->lru_head = e;
    c->lru_tail = e;
    e->last_use = ++c->use_clock;
}

struct entry *cache_entry_new(struct cache *c, const char *key, const char *name)
{
    struct entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    e->key = strdup(key);
    if (!e->key) {
        free(e);
        return NULL;
    }
    memcpy(e->name, name, 65);
    e->id = ++c->next_id;
    e->fd = -1;
    e->plain_fd = -1;
    return e;
}

void cache_entry_free(struct entry *e)
{
    if (!e)
        return;
    if (e->fd >= 0)
        close(e->fd);
    if (e->plain_fd >= 0)
        close(e->plain_fd);
    free(e->key);
    free(e->frame_len);
    free(e->frame_off);
    free(e);
}

int cache_entry_add_frame(struct entry *e, uint32_t len)
{
    if (e->n_frames == e->cap_frames) {
        size_t cap = e->cap_frames ? e->cap_frames * 2 : 16;
        uint32_t *fl = realloc(e->frame_len, cap * sizeof *fl);
        if (!fl)
            return -ENOMEM;
        e->frame_len = fl;
        uint64_t *fo = realloc(e->frame_off, cap * sizeof *fo);
        if (!fo)
            return -ENOMEM;
        e->frame_off = fo;
        e->cap_frames = cap;
    }
    e->frame_off[e->n_frames] = e->disk_bytes;
    e->frame_len[e->n_frames] = len;
    e->n_frames++;
    e->disk_bytes += len;
    return 0;
}

void cache_entry_path(const struct cache *c, const struct entry *e, bool tmp, char *out, size_t n)
{
    snprintf(out, n, "%s/%s.%s", c->files_dir, e->name, tmp ? "tmp" : "zst");
}

void cache_entry_drop_locked(struct cache *c, struct entry *e)
{
    cache_lru_unlink(c, e);
    cache_table_remove(c, e);
    cache_plain_drop_locked(c, e);
    c->bytes -= e->disk_bytes;
}

/* Pick victims until bytes fit the budget (c->mu held). Victims leave the table and the LRU and
 * are returned as a list (linked through hnext) for the caller to delete without the lock. */
struct entry *cache_evict_locked(struct cache *c)
{
    struct entry *victims = NULL;
    /* plain copies first: they are the biggest and can be made again from the frames */
    for (struct entry *e = c->lru_head; e && c->bytes > c->budget; e = e->lnext)
        if (e->refs == 0)
            cache_plain_drop_locked(c, e);
    struct entry *e = c->lru_head;
    while (c->bytes > c->budget && e) {
        struct entry *next = e->lnext;
        if (e->refs == 0 && e->state == ENTRY_READY) {
            cache_entry_drop_locked(c, e);
            c->evictions++;
            e->hnext = victims;
            victims = e;
        }
        e = next;
    }
    return victims;
}

/* One list of two victim lists. */
struct entry *cache_victims_join(struct entry *a, struct entry *b)
{
    if (!a)
        return b;
    struct entry *last = a;
    while (last->hnext)
        last = last->hnext;
    last->hnext = b;
    return a;
}

void cache_delete_victims(struct cache *c, struct entry *victims)
{
    char path[PATH_MAX];
    while (victims) {
        struct entry *next = victims->hnext;
        cache_index_delete(c, victims->name);
        cache_entry_path(c, victims, false, path, sizeof path);
        unlink(path);
        cache_entry_free(victims);
        victims = next;
    }
}

/* Drop a reference (c->mu held). An unreferenced FAILED entry (already out of the table) is
 * returned for freeing; READY ones close their fd. */
struct entry *cache_unref_locked(struct cache *c, struct entry *e)
{
    if (--e->refs > 0)
        return NULL;
    if (e->fd >= 0) {
        close(e->fd);
        e->fd = -1;
    }
    if (e->state == ENTRY_FAILED || !e->in_table)
        return e;
    return NULL;
}

/* Frames a reader may ask for (c->mu held): written ones, and published ones while filling. */
size_t cache_avail_frames(const struct entry *e)
{
    return e->n_plain > e->n_frames ? e->n_plain : e->n_frames;
}
