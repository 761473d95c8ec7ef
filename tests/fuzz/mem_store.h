/* mem_store: a read-only object store holding one object in memory, for the fuzz targets that
 * feed arbitrary bytes to a reader of the repository (fuzz_segment, fuzz_crypt). Every write is
 * EROFS; get honours ranges; list names the one object. Header-only (the fuzz targets are each one
 * file plus replay.c). Single-threaded, as the fuzzers are. */
#ifndef DVSNAP_FUZZ_MEM_STORE_H
#define DVSNAP_FUZZ_MEM_STORE_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "backend/objstore/objstore.h"

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

#endif
