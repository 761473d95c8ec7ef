/* purge: dropping cached files whose content changed under their key (cache.h cache_purge). The
 * cache's rule is that a key names its content for ever; the one exception is an erasure
 * (backend/engine/erase.h), which rewrites a point's tables and removes blobs, after which the
 * files cached under those keys must go: their rows, their files and their plain copies.
 * Limits: a file in use (an open handle, a fill) cannot be purged: -EBUSY, nothing dropped.
 * Threading: takes c->mu to pick the victims, then deletes them without it (c->db_mu). */
#include <errno.h>
#include <string.h>

#include "cache/cache_int.h"

int cache_purge(struct cache *c, const char *key_prefix, uint64_t *purged, struct dverr *err)
{
    size_t n = strlen(key_prefix);
    struct entry *victims = NULL;
    uint64_t count = 0;
    pthread_mutex_lock(&c->mu);
    for (size_t b = 0; b < c->n_buckets; b++)
        for (struct entry *e = c->buckets[b]; e; e = e->hnext)
            if (strncmp(e->key, key_prefix, n) == 0 && e->refs != 0) {
                pthread_mutex_unlock(&c->mu);
                return dverr_set(err, -EBUSY, "the cache is in use (%s)", e->key);
            }
    for (size_t b = 0; b < c->n_buckets; b++) {
        struct entry *e = c->buckets[b], *next;
        for (; e; e = next) {
            next = e->hnext;
            if (strncmp(e->key, key_prefix, n) != 0)
                continue;
            cache_entry_drop_locked(c, e);
            e->hnext = victims;
            victims = e;
            count++;
        }
    }
    pthread_mutex_unlock(&c->mu);
    cache_delete_victims(c, victims);
    if (purged)
        *purged = count;
    return 0;
}
