/* objstore_append: the append-only decorator of a store (objstore.h, objstore_append_only) and
 * opening a store with the prune credentials (objstore_open_prune).
 *
 * The decorator forwards to the store's own ops; del is refused (-EPERM, logged as an error: in
 * an append-only repository a capture never deletes, so reaching it is a bug the tests catch),
 * put is the store's put_if_absent (one request where the store has a conditional create) and
 * put_file is refused over an existing object (a stat first: the store has no conditional upload
 * of a file, so a racing writer of the same name can slip between the two, which for the
 * content-addressed objects that put_file writes means the same bytes). This protects against
 * dvsnap's own mistakes; against a stolen credential only the store protects (credentials
 * without delete, object lock).
 * Threading: no state besides the inner store's (thread-safe). */
#include "backend/objstore/objstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

struct append_only {
    const struct objstore_ops *inner_ops;
    void *inner;
};

static int a_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                           struct dverr *err)
{
    struct append_only *a = impl;
    return a->inner_ops->put_if_absent(a->inner, name, data, len, err);
}

static int a_put(void *impl, const char *name, const void *data, size_t len, struct dverr *err)
{
    struct append_only *a = impl;
    struct dverr e2 = {0};
    int rc = a->inner_ops->put_if_absent(a->inner, name, data, len, &e2);
    if (rc == -EEXIST)
        return dverr_set(err, rc, "%s exists and the repository is append-only: it is not "
                         "overwritten", name);
    return rc ? dverr_set(err, rc, "%s", dverr_msg(&e2)) : 0;
}

static int a_put_file(void *impl, const char *name, const char *local_path, struct dverr *err)
{
    struct append_only *a = impl;
    uint64_t size;
    struct dverr e2 = {0};
    int rc = a->inner_ops->stat(a->inner, name, &size, &e2);
    if (rc == 0)
        return dverr_set(err, -EEXIST, "%s exists and the repository is append-only: it is not "
                         "overwritten", name);
    if (rc != -ENOENT)
        return dverr_set(err, rc, "%s", dverr_msg(&e2));
    return a->inner_ops->put_file(a->inner, name, local_path, err);
}

static int a_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                 struct dverr *err)
{
    struct append_only *a = impl;
    return a->inner_ops->get(a->inner, name, off, len, out, err);
}

static int a_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct append_only *a = impl;
    return a->inner_ops->stat(a->inner, name, size, err);
}

static int a_list(void *impl, const char *prefix,
                  int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                  struct dverr *err)
{
    struct append_only *a = impl;
    return a->inner_ops->list(a->inner, prefix, fn, ctx, err);
}

static int a_del(void *impl, const char *name, struct dverr *err)
{
    (void)impl;
    log_error("append-only repository: refusing to delete %s (a bug: writers never delete here)",
              name);
    return dverr_set(err, -EPERM, "the repository is append-only: %s is not deleted with the "
                     "capture credentials (prune, forget and erase use the prune credentials)",
                     name);
}

static int a_retain(void *impl, const char *name, time_t until, struct dverr *err)
{
    struct append_only *a = impl;
    if (!a->inner_ops->retain)
        return dverr_set(err, -ENOTSUP, "this store cannot lock objects");
    return a->inner_ops->retain(a->inner, name, until, err);
}

static void a_free(void *impl)
{
    struct append_only *a = impl;
    if (a->inner_ops->free)
        a->inner_ops->free(a->inner);
    free(a);
}

static const struct objstore_ops append_only_ops = {
    .put = a_put,
    .put_file = a_put_file,
    .put_if_absent = a_put_if_absent,
    .get = a_get,
    .stat = a_stat,
    .list = a_list,
    .del = a_del,
    .free = a_free,
    .retain = a_retain,
};

int objstore_append_only(struct objstore *s)
{
    if (s->append_only)
        return 0;
    struct append_only *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    a->inner_ops = s->ops;
    a->inner = s->impl;
    s->ops = &append_only_ops;
    s->impl = a;
    s->append_only = true;
    return 0;
}

int objstore_open_prune(const char *location, const struct config *cfg, struct objstore **out,
                        struct dverr *err)
{
    *out = NULL;
    if (!cfg || !location)
        return objstore_open(location, cfg, out, err);
    bool s3 = strncmp(location, "s3://", 5) == 0, azure = strncmp(location, "azure://", 8) == 0;
    const char *cred = s3 ? cfg->s3_prune_credentials_file
                          : azure ? cfg->azure_prune_key_file : NULL;
    if (!cred) {
        if (config_append_only(cfg) && (s3 || azure))
            return dverr_set(err, -EPERM,
                             "the repository is append-only: prune, forget and erase need the "
                             "prune credentials (set %s to a file holding credentials that may "
                             "delete)", s3 ? "s3_prune_credentials_file" : "azure_prune_key_file");
        return objstore_open(location, cfg, out, err);
    }
    /* the drivers read their credential from the configuration: a shallow copy that names the
     * prune credential instead (the strings stay cfg's) */
    struct config pcfg = *cfg;
    if (s3)
        pcfg.s3_credentials_file = cfg->s3_prune_credentials_file;
    else
        pcfg.azure_key_file = cfg->azure_prune_key_file;
    return objstore_open(location, &pcfg, out, err);
}
