/* mem_store: a read-only object store holding one object in memory, for the fuzz targets that
 * feed arbitrary bytes to a reader of the repository (fuzz_segment, fuzz_crypt). Every write is
 * EROFS; get honours ranges; list names the one object. mem_segment_check is the check both
 * segment targets make on a segment stored there. Header-only (the fuzz targets are each one
 * file plus replay.c). Single-threaded, as the fuzzers are. */
#ifndef DVSNAP_FUZZ_MEM_STORE_H
#define DVSNAP_FUZZ_MEM_STORE_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/objstore/objstore.h"
#include "backend/repo/segment.h"

struct mem {
    const uint8_t *data;
    size_t size;
    char name[80];
};

static int m_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                 struct dverr *err)
{
    struct mem *m = impl;
    if (strcmp(name, m->name) != 0)
        return dverr_set(err, -ENOENT, "no such object");
    if (off > m->size)
        return dverr_set(err, -EIO, "range");
    uint64_t n = m->size - off;
    if (len != OBJSTORE_TO_END && len < n)
        n = len;
    return buf_add(out, m->data + off, (size_t)n);
}
static int m_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct mem *m = impl;
    if (strcmp(name, m->name) != 0)
        return dverr_set(err, -ENOENT, "no such object");
    *size = m->size;
    return 0;
}
static int m_put(void *impl, const char *name, const void *d, size_t len, struct dverr *err)
{
    return dverr_set(err, -EROFS, "read-only");
}
static int m_put_file(void *impl, const char *name, const char *p, struct dverr *err)
{
    return dverr_set(err, -EROFS, "read-only");
}
static int m_list(void *impl, const char *prefix, int (*fn)(void *, const char *, uint64_t),
                  void *ctx, struct dverr *err)
{
    struct mem *m = impl;
    return strncmp(m->name, prefix, strlen(prefix)) == 0 ? fn(ctx, m->name, m->size) : 0;
}
static int m_del(void *impl, const char *name, struct dverr *err)
{
    return dverr_set(err, -EROFS, "read-only");
}
static void m_free(void *impl)
{
}
static const struct objstore_ops mem_ops = {m_put, m_put_file, m_put, m_get,
                                            m_stat, m_list, m_del, m_free, NULL};

/* The segment id in store (plain, or sealed with crypt): segment_verify and a merge of {id, id}
 * (deletes dropped, then kept) agree. Each gives 0, -EIO or also_ok (-ENOMEM too for the merge),
 * never anything else; a segment that verifies merges without error and, deletes kept, with its
 * entry count. Anything else aborts. */
static void mem_segment_check(struct objstore *store, const struct crypt *crypt, char *id,
                              int also_ok)
{
    struct dverr e = {0};
    uint64_t entries = 0;
    int vrc = segment_verify(store, crypt, id, &entries, &e);
    if (vrc != 0 && vrc != -EIO && vrc != also_ok)
        abort();
    char *ids[2] = {id, id};
    for (int keep = 0; keep < 2; keep++) {
        struct segment_merge *mg = NULL;
        struct dverr me = {0};
        int rc = segment_merge_open(store, crypt, ids, 2, keep != 0, &mg, &me);
        uint64_t n = 0;
        struct segment_entry ent;
        while (rc == 0 && (rc = segment_merge_next(mg, &ent, &me)) == 1) {
            if (ent.key_len > SEGMENT_MAX_KEY || ent.line_len > SEGMENT_MAX_LINE)
                abort();
            n++;
            rc = 0;
        }
        segment_merge_free(mg);
        if (rc != 0 && rc != -EIO && rc != -ENOMEM && rc != also_ok)
            abort();
        /* a segment that verifies must merge cleanly and agree on its entry count */
        if (vrc == 0 && (rc != 0 || (keep && n != entries)))
            abort();
    }
}

#endif
