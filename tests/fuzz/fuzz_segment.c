/* fuzz_segment: the segment reader (segment.h) on arbitrary object bytes. The input is stored in
 * an in-memory object store under its true SHA-256 id (so the reader gets past the hash and must
 * survive everything behind it: trailer, index, frame records, zstd frames, entries), then
 * segment_verify reads it whole and a merge of the chain {id, id} streams it. Both must agree:
 * a segment that verifies merges without error, and a damaged one gives -EIO, never a crash. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
                                            m_stat, m_list, m_del, m_free};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = {data, size, ""};
    struct objstore store = {&mem_ops, &m, (char *)"mem:", NULL, NULL};
    char id[65];
    sha256_hex(data, size, id);
    segment_object_name(id, m.name);
    struct dverr e = {0};
    uint64_t entries = 0;
    int vrc = segment_verify(&store, NULL, id, &entries, &e);
    if (vrc != 0 && vrc != -EIO)
        abort();
    char *ids[2] = {id, id};
    for (int keep = 0; keep < 2; keep++) {
        struct segment_merge *mg = NULL;
        struct dverr me = {0};
        int rc = segment_merge_open(&store, NULL, ids, 2, keep != 0, &mg, &me);
        uint64_t n = 0;
        struct segment_entry ent;
        while (rc == 0 && (rc = segment_merge_next(mg, &ent, &me)) == 1) {
            if (ent.key_len > SEGMENT_MAX_KEY || ent.line_len > SEGMENT_MAX_LINE)
                abort();
            n++;
            rc = 0;
        }
        segment_merge_free(mg);
        if (rc != 0 && rc != -EIO && rc != -ENOMEM)
            abort();
        /* a segment that verifies must merge cleanly and agree on its entry count */
        if (vrc == 0 && (rc != 0 || (keep && n != entries)))
            abort();
    }
    return 0;
}
