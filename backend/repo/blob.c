/* blob: putting and getting content-addressed blobs, plain or sealed (see blob.h).
 * Limits: a blob is held in memory whole on both sides (the callers cap it: REPO_BLOB_MAX).
 * Threading: none of its own. */
#include "backend/repo/blob.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "backend/repo/segment.h"

static void identity_of(const char *id, char out[80])
{
    snprintf(out, 80, "blob:%s", id);
}

int blob_put(struct objstore *store, const struct crypt *c, const void *data, size_t len,
             char id[65], struct dverr *err)
{
    char name[80], identity[80];
    crypt_id(c, data, len, id);
    segment_object_name(id, name);
    uint64_t size, want = c ? crypt_sealed_size(len) : len;
    struct dverr ignore = {0};
    if (store->ops->stat(store->impl, name, &size, &ignore) == 0 && size == want)
        return 0;
    if (!c)
        return store->ops->put(store->impl, name, data, len, err);
    struct buf sealed = BUF_INIT;
    identity_of(id, identity);
    int rc = crypt_seal(c, identity, data, len, &sealed);
    if (rc)
        rc = dverr_set(err, rc, "sealing blob %.16s: %s", id, strerror(-rc));
    else
        rc = store->ops->put(store->impl, name, sealed.data, sealed.len, err);
    buf_release(&sealed);
    return rc;
}

static int damaged(struct dverr *err, const char *id, const char *what)
{
    return dverr_set(err, -EIO, "blob %.16s is damaged: %s", id, what);
}

int blob_get(struct objstore *store, const struct crypt *c, const char *id, uint64_t size,
             uint64_t max, struct buf *out, struct dverr *err)
{
    char name[80], identity[80], h[65];
    if (!segment_id_ok(id))
        return dverr_set(err, -EINVAL, "invalid blob id \"%.70s\"", id ? id : "");
    segment_object_name(id, name);
    uint64_t stored;
    int rc;
    if (size == BLOB_SIZE_UNKNOWN) {
        if ((rc = store->ops->stat(store->impl, name, &stored, err)))
            return rc == -ENOENT ? dverr_set(err, rc, "blob %.16s is missing", id) : rc;
        if (c && crypt_sealed_plain_size(stored, &size))
            return damaged(err, id, "its size is not that of a sealed object");
        if (!c)
            size = stored;
    }
    if (size > max)
        return dverr_set(err, -EFBIG, "blob %.16s is too large (%llu bytes)", id,
                         (unsigned long long)size);
    stored = c ? crypt_sealed_size(size) : size;
    size_t start = out->len;
    struct buf sealed = BUF_INIT;
    struct buf *into = c ? &sealed : out;
    if ((rc = store->ops->get(store->impl, name, 0, stored, into, err))) {
        buf_release(&sealed);
        return rc == -ENOENT ? dverr_set(err, rc, "blob %.16s is missing", id) : rc;
    }
    if (c) {
        identity_of(id, identity);
        rc = crypt_unseal(c, identity, sealed.data ? sealed.data : "", sealed.len, out);
        buf_release(&sealed);
        if (rc == -ENOMEM)
            return dverr_set(err, rc, "out of memory");
        if (rc)
            return damaged(err, id, "it does not authenticate (changed, truncated, or another "
                                    "object under its name)");
    }
    crypt_id(c, out->data ? out->data + start : "", out->len - start, h);
    if (strcmp(h, id) != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return damaged(err, id, "its bytes do not match its id");
    }
    return 0;
}
