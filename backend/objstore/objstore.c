/* objstore: opening a store by location and the helpers every driver shares.
 * A location without a scheme (or file://) is a local directory; azure:// and s3:// go to the
 * object-storage drivers (objstore_azure.c, objstore_s3.c). The size memo is a chained hash table
 * of object names; its mutex guards it. Otherwise no shared state. */
#include "backend/objstore/objstore.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SIZES_BUCKETS 8192

struct size_entry {
    struct size_entry *next;
    uint64_t size;
    char name[];
};

struct objstore_sizes {
    pthread_mutex_t mu;
    struct size_entry *bucket[SIZES_BUCKETS]; /* guarded by mu */
    size_t n;                                 /* guarded by mu */
};

struct objstore_sizes *objstore_sizes_new(void)
{
    struct objstore_sizes *m = calloc(1, sizeof *m);
    if (m)
        pthread_mutex_init(&m->mu, NULL);
    return m;
}

static void sizes_clear(struct objstore_sizes *m)
{
    for (size_t i = 0; i < SIZES_BUCKETS; i++) {
        struct size_entry *e = m->bucket[i];
        while (e) {
            struct size_entry *next = e->next;
            free(e);
            e = next;
        }
        m->bucket[i] = NULL;
    }
    m->n = 0;
}

void objstore_sizes_free(struct objstore_sizes *m)
{
    if (!m)
        return;
    sizes_clear(m);
    pthread_mutex_destroy(&m->mu);
    free(m);
}

static size_t sizes_hash(const char *name)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % SIZES_BUCKETS);
}

static struct size_entry *sizes_find(struct objstore_sizes *m, const char *name, size_t b)
{
    for (struct size_entry *e = m->bucket[b]; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

void objstore_sizes_note(struct objstore_sizes *m, const char *name, uint64_t size)
{
    if (!m || !name || strncmp(name, "objects/", 8) != 0)
        return;
    size_t b = sizes_hash(name), len = strlen(name);
    pthread_mutex_lock(&m->mu);
    struct size_entry *e = sizes_find(m, name, b);
    if (e) {
        e->size = size;
    } else {
        if (m->n >= OBJSTORE_SIZES_MAX)
            sizes_clear(m);
        if ((e = malloc(sizeof *e + len + 1))) { /* out of memory: simply not kept */
            memcpy(e->name, name, len + 1);
            e->size = size;
            e->next = m->bucket[b];
            m->bucket[b] = e;
            m->n++;
        }
    }
    pthread_mutex_unlock(&m->mu);
}

bool objstore_sizes_get(struct objstore_sizes *m, const char *name, uint64_t *size)
{
    if (!m || !name)
        return false;
    size_t b = sizes_hash(name);
    pthread_mutex_lock(&m->mu);
    struct size_entry *e = sizes_find(m, name, b);
    if (e)
        *size = e->size;
    pthread_mutex_unlock(&m->mu);
    return e != NULL;
}

bool objstore_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '/' || strlen(name) > 1024)
        return false;
    const char *seg = name;
    for (const char *p = name;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (*p == '\0')
                return true;
            seg = p + 1;
            continue;
        }
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
}

int objstore_open(const char *location, const struct config *cfg, struct objstore **out,
                  struct dverr *err)
{
    *out = NULL;
    if (!location || !*location)
        return dverr_set(err, -EINVAL, "no repository location configured");
    if (strncmp(location, "azure://", 8) == 0)
        return objstore_azure_open(location, cfg, out, err);
    if (strncmp(location, "s3://", 5) == 0)
        return objstore_s3_open(location, cfg, out, err);
    if (strncmp(location, "file://", 7) == 0)
        return objstore_dir_open(location + 7, out, err);
    if (strstr(location, "://"))
        return dverr_set(err, -ENOTSUP, "%s: unknown repository kind (use a path, file://, "
                         "azure:// or s3://)", location);
    return objstore_dir_open(location, out, err);
}

void objstore_free(struct objstore *s)
{
    if (!s)
        return;
    if (s->ops && s->ops->free)
        s->ops->free(s->impl);
    free(s->location);
    free(s->local_dir);
    objstore_sizes_free(s->sizes);
    free(s);
}
