/* meter: the counting decorator over an object store (see meter.h). Every operation forwards to
 * the store's own ops with its own impl, then counts. Thread-safe counters (atomics). */
#include "tools/dvsnap/meter.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct meter {
    const struct objstore_ops *inner_ops;
    void *inner;
    atomic_uint_fast64_t gets, get_bytes, object_get_bytes, point_gets;
    atomic_uint_fast64_t puts, put_bytes, stats, lists, dels;
    void (*on_io)(void *ctx); /* set while no other thread uses the store (meter.h) */
    void *on_io_ctx;
};

static void io_done(struct meter *m)
{
    if (m->on_io)
        m->on_io(m->on_io_ctx);
}

static int m_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    struct meter *m = impl;
    int rc = m->inner_ops->put(m->inner, name, data, len, err);
    atomic_fetch_add(&m->puts, 1);
    if (rc == 0)
        atomic_fetch_add(&m->put_bytes, len);
    io_done(m);
    return rc;
}

static int m_put_file(void *impl, const char *name, const char *local_path, struct dverr *err)
{
    struct meter *m = impl;
    struct stat st;
    int rc = m->inner_ops->put_file(m->inner, name, local_path, err);
    atomic_fetch_add(&m->puts, 1);
    if (rc == 0 && stat(local_path, &st) == 0)
        atomic_fetch_add(&m->put_bytes, (uint64_t)st.st_size);
    io_done(m);
    return rc;
}

static int m_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                           struct dverr *err)
{
    struct meter *m = impl;
    int rc = m->inner_ops->put_if_absent(m->inner, name, data, len, err);
    atomic_fetch_add(&m->puts, 1);
    if (rc == 0)
        atomic_fetch_add(&m->put_bytes, len);
    io_done(m);
    return rc;
}

static int m_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                 struct dverr *err)
{
    struct meter *m = impl;
    size_t before = out->len;
    int rc = m->inner_ops->get(m->inner, name, off, len, out, err);
    uint64_t got = out->len > before ? out->len - before : 0;
    atomic_fetch_add(&m->gets, 1);
    atomic_fetch_add(&m->get_bytes, got);
    if (strncmp(name, "objects/", 8) == 0)
        atomic_fetch_add(&m->object_get_bytes, got);
    else if (strncmp(name, "points/", 7) == 0)
        atomic_fetch_add(&m->point_gets, 1);
    io_done(m);
    return rc;
}

static int m_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct meter *m = impl;
    int rc = m->inner_ops->stat(m->inner, name, size, err);
    atomic_fetch_add(&m->stats, 1);
    io_done(m);
    return rc;
}

static int m_list(void *impl, const char *prefix,
                  int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                  struct dverr *err)
{
    struct meter *m = impl;
    int rc = m->inner_ops->list(m->inner, prefix, fn, ctx, err);
    atomic_fetch_add(&m->lists, 1);
    io_done(m);
    return rc;
}

static int m_del(void *impl, const char *name, struct dverr *err)
{
    struct meter *m = impl;
    int rc = m->inner_ops->del(m->inner, name, err);
    atomic_fetch_add(&m->dels, 1);
    io_done(m);
    return rc;
}

static void m_free(void *impl)
{
    struct meter *m = impl;
    if (m->inner_ops->free)
        m->inner_ops->free(m->inner);
    free(m);
}

static int m_retain(void *impl, const char *name, time_t until, struct dverr *err)
{
    struct meter *m = impl;
    if (!m->inner_ops->retain)
        return dverr_set(err, -ENOTSUP, "this store cannot lock objects");
    int rc = m->inner_ops->retain(m->inner, name, until, err);
    io_done(m);
    return rc;
}

static const struct objstore_ops meter_ops = {
    m_put, m_put_file, m_put_if_absent, m_get, m_stat, m_list, m_del, m_free, m_retain,
};

int meter_attach(struct objstore *store, struct meter **out)
{
    struct meter *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->inner_ops = store->ops;
    m->inner = store->impl;
    store->ops = &meter_ops;
    store->impl = m;
    *out = m;
    return 0;
}

void meter_read(struct meter *m, struct meter_counts *out)
{
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    out->gets = atomic_load(&m->gets);
    out->get_bytes = atomic_load(&m->get_bytes);
    out->object_get_bytes = atomic_load(&m->object_get_bytes);
    out->point_gets = atomic_load(&m->point_gets);
    out->puts = atomic_load(&m->puts);
    out->put_bytes = atomic_load(&m->put_bytes);
    out->stats = atomic_load(&m->stats);
    out->lists = atomic_load(&m->lists);
    out->dels = atomic_load(&m->dels);
}

void meter_on_io(struct meter *m, void (*fn)(void *ctx), void *ctx)
{
    if (!m)
        return;
    m->on_io = fn;
    m->on_io_ctx = ctx;
}
