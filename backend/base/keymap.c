/* keymap: open-addressing string map (see keymap.h). FNV-1a with a final mix picks the slot;
 * linear probing; the slot array doubles at 3/4 load; keys go to 1 MiB arena chunks (a key longer
 * than a chunk gets a chunk of its own). Threading: none. */
#include "backend/base/keymap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BYTES ((size_t)1 << 20)

static uint64_t key_hash(const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static char *slot(const struct keymap *m, size_t i)
{
    return keymap_slot(m, i);
}

/* The key pointer and length of an entry (memcpy: the entry is the caller's type). */
static const char *key_of(const struct keymap *m, const char *e)
{
    const char *k;
    memcpy(&k, e + m->key_off, sizeof k);
    return k;
}

static uint32_t len_of(const struct keymap *m, const char *e)
{
    uint32_t n;
    memcpy(&n, e + m->len_off, sizeof n);
    return n;
}

void keymap_init(struct keymap *m, size_t entry_size, size_t key_off, size_t len_off)
{
    memset(m, 0, sizeof *m);
    m->keys.block = CHUNK_BYTES;
    m->entry_size = entry_size;
    m->key_off = key_off;
    m->len_off = len_off;
}

void keymap_release(struct keymap *m)
{
    free(m->slots);
    arena_release(&m->keys);
    keymap_init(m, m->entry_size, m->key_off, m->len_off);
}

void *keymap_get(const struct keymap *m, const char *key, size_t len)
{
    if (!m->cap)
        return NULL;
    size_t i = key_hash(key, len) & (m->cap - 1);
    for (;;) {
        char *e = slot(m, i);
        const char *k = key_of(m, e);
        if (!k)
            return NULL;
        if (len_of(m, e) == len && memcmp(k, key, len) == 0)
            return e;
        i = (i + 1) & (m->cap - 1);
    }
}

static int grow(struct keymap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 1024;
    if (!m->entry_size || cap > SIZE_MAX / m->entry_size)
        return -ENOMEM;
    struct keymap nm = *m;
    nm.slots = calloc(cap, m->entry_size);
    if (!nm.slots)
        return -ENOMEM;
    nm.cap = cap;
    for (size_t j = 0; j < m->cap; j++) {
        const char *e = slot(m, j), *k = key_of(m, e);
        if (!k)
            continue;
        size_t i = key_hash(k, len_of(m, e)) & (cap - 1);
        while (key_of(m, slot(&nm, i)))
            i = (i + 1) & (cap - 1);
        memcpy(slot(&nm, i), e, m->entry_size);
    }
    free(m->slots);
    m->slots = nm.slots;
    m->cap = cap;
    return 0;
}

void *keymap_put(struct keymap *m, const char *key, size_t len, bool *fresh)
{
    if (fresh)
        *fresh = false;
    char *e = keymap_get(m, key, len);
    if (e)
        return e;
    if (len > UINT32_MAX)
        return NULL;
    if ((m->n + 1) * 4 > m->cap * 3 && grow(m))
        return NULL;
    const char *k = arena_strndup(&m->keys, key, len);
    if (!k)
        return NULL;
    size_t i = key_hash(key, len) & (m->cap - 1);
    while (key_of(m, slot(m, i)))
        i = (i + 1) & (m->cap - 1);
    e = slot(m, i);
    uint32_t n32 = (uint32_t)len;
    memset(e, 0, m->entry_size);
    memcpy(e + m->key_off, &k, sizeof k);
    memcpy(e + m->len_off, &n32, sizeof n32);
    m->n++;
    if (fresh)
        *fresh = true;
    return e;
}
