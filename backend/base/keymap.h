/* keymap: an open-addressing hash map from byte-string keys to fixed-size entries, shared by
 * capture (key -> capture state and new line) and restore (key -> target digest and action).
 *
 * The caller's entry type holds the key as two fields, a `const char *` (or `char *`) and a
 * uint32_t length, at offsets given to keymap_init; the map stores entries by value in one slot
 * array (linear probing, load <= 3/4, capacity a power of two) and copies each key, NUL
 * terminated, into an arena it owns (the entry's key pointer points there: never free it). Nothing
 * is ever removed: a map lives for one table's pass and is released whole. Entry pointers stay
 * valid until the next insertion (which may grow the array); key pointers stay valid until
 * keymap_release. Limits: keys up to UINT32_MAX bytes; memory ~ entry_size * 4/3 * n plus the keys.
 * Threading: none; a map belongs to one thread at a time. */
#ifndef DVSNAP_KEYMAP_H
#define DVSNAP_KEYMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

struct keymap {
    void *slots; /* cap entries of entry_size bytes (owned) */
    size_t cap, n, entry_size;
    size_t key_off, len_off;     /* where an entry keeps its key pointer (NULL: empty) and length */
    struct arena keys;           /* the keys' bytes (owned; blocks of 1 MiB, set by keymap_init) */
};

/* An empty map of entries of entry_size bytes keeping their key pointer at key_off and its
 * uint32_t length at len_off (use offsetof). */
void keymap_init(struct keymap *m, size_t entry_size, size_t key_off, size_t len_off);
/* Frees the slots and every key; m is empty (and reusable) afterwards. */
void keymap_release(struct keymap *m);
/* The entry for key, or NULL. */
void *keymap_get(const struct keymap *m, const char *key, size_t len);
/* The entry for key, inserted (zeroed apart from its key) when absent; *fresh (may be NULL) says
 * which. NULL when out of memory or the key is too long. */
void *keymap_put(struct keymap *m, const char *key, size_t len, bool *fresh);
/* Slot i (0 <= i < m->cap) for iteration: an entry whose key pointer is NULL when empty. */
static inline void *keymap_slot(const struct keymap *m, size_t i)
{
    return (char *)m->slots + i * m->entry_size;
}

#endif
