/* repo_holds: holds on restore points (repo.h, issue 17), one object each:
 * holds/<env>/<point>.json (the document is hold.c's). In the repository, not the catalog, so
 * every machine that shares the repository sees them. A hold is placed only on a point that
 * exists; prune and forget never remove a point whose hold is active (repo_maint.c), and a damaged
 * hold document counts as an active hold (keeping is the safe side).
 * Limits: placing a hold while a prune on another machine is deciding can lose to it: prune reads
 * the hold again just before it deletes a manifest, which leaves a window of one delete.
 * Threading: no state of its own; the store is thread-safe. */
#include "backend/repo/repo_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/manifest.h"

static int hold_object_name(const char *env, const char *point, char *out, size_t n)
{
    time_t t;
    if (!manifest_env_name_ok(env) || !point || point_name_to_time(point, &t) != 0)
        return -EINVAL;
    if (snprintf(out, n, "holds/%s/%s.json", env, point) >= (int)n)
        return -ENAMETOOLONG;
    return 0;
}

int repo_hold_put(struct repo *r, const char *env, const struct point_hold *h, struct dverr *err)
{
    char obj[400], manifest[400];
    uint64_t size;
    if (hold_object_name(env, h->point, obj, sizeof obj) ||
        manifest_object_name(env, h->point, manifest, sizeof manifest))
        return dverr_set(err, -EINVAL, "cannot hold \"%.40s\" of \"%.80s\"", h->point, env);
    struct dverr e2 = {0};
    int rc = r->store->ops->stat(r->store->impl, manifest, &size, &e2);
    if (rc == -ENOENT)
        return dverr_set(err, rc, "%s has no point %s", env, h->point);
    if (rc)
        return dverr_set(err, rc, "%s", dverr_msg(&e2));
    struct buf doc = BUF_INIT;
    rc = point_hold_render(h, &doc);
    if (!rc)
        rc = buf_addch(&doc, '\n');
    if (rc) {
        buf_release(&doc);
        return dverr_set(err, rc, "out of memory");
    }
    rc = repo_doc_put(r, "hold", obj, doc.data, doc.len, err);
    buf_release(&doc);
    return rc;
}

int repo_hold_get(struct repo *r, const char *env, const char *point, struct point_hold *out,
                  struct dverr *err)
{
    char obj[400];
    memset(out, 0, sizeof *out);
    if (hold_object_name(env, point, obj, sizeof obj))
        return dverr_set(err, -ENOENT, "no hold on \"%.40s\"", point ? point : "");
    struct buf doc = BUF_INIT;
    int rc = repo_doc_get(r, "hold", obj, 64u << 10, &doc, err);
    if (!rc && (rc = point_hold_parse(doc.data, doc.len, out, err)) == -EIO)
        dverr_set(err, rc, "the hold on %s/%s is damaged (%s)", env, point, obj);
    if (!rc && strcmp(out->point, point) != 0) {
        point_hold_release(out);
        rc = dverr_set(err, -EIO, "the hold on %s/%s names another point (%s)", env, point, obj);
    }
    buf_release(&doc);
    return rc;
}

int repo_hold_del(struct repo *r, const char *env, const char *point, struct dverr *err)
{
    char obj[400];
    if (hold_object_name(env, point, obj, sizeof obj))
        return dverr_set(err, -ENOENT, "no hold on \"%.40s\"", point ? point : "");
    struct dverr e2 = {0};
    int rc = r->store->ops->del(r->store->impl, obj, &e2);
    if (rc == -ENOENT)
        return dverr_set(err, rc, "%s/%s is not held", env, point);
    if (rc)
        dverr_set(err, rc, "%s", dverr_msg(&e2));
    return rc;
}

static int collect_hold(void *ctx, const char *obj, uint64_t size)
{
    struct name_list *l = ctx;
    const char *slash = strrchr(obj, '/');
    const char *name = slash ? slash + 1 : obj;
    size_t n = strlen(name);
    time_t t;
    char point[32];
    if (n < 6 || n - 5 >= sizeof point || strcmp(name + n - 5, ".json") != 0)
        return 0;
    memcpy(point, name, n - 5);
    point[n - 5] = '\0';
    if (point_name_to_time(point, &t) != 0)
        return 0;
    return name_list_add(l, point, n - 5);
}

int repo_hold_names(struct repo *r, const char *env, struct name_list *out, struct dverr *err)
{
    char prefix[300];
    memset(out, 0, sizeof *out);
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -ENOENT, "no environment \"%.80s\" in the repository", env);
    snprintf(prefix, sizeof prefix, "holds/%s/", env);
    int rc = r->store->ops->list(r->store->impl, prefix, collect_hold, out, err);
    if (rc == -ENOENT)
        rc = 0;
    if (rc) {
        strv_free(out->v, out->n);
        memset(out, 0, sizeof *out);
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    }
    name_list_sort_unique(out);
    return 0;
}

int repo_holds(struct repo *r, const char *env, struct point_hold **out, size_t *n,
               struct dverr *err)
{
    struct name_list names;
    *out = NULL;
    *n = 0;
    int rc = repo_hold_names(r, env, &names, err);
    if (rc)
        return rc;
    struct point_hold *v = calloc(names.n ? names.n : 1, sizeof *v);
    size_t cnt = 0;
    if (!v)
        rc = dverr_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < names.n; i++) {
        struct dverr e2 = {0};
        int hrc = repo_hold_get(r, env, names.v[i], &v[cnt], &e2);
        if (hrc == -ENOENT)
            continue; /* released meanwhile */
        if (hrc == -EIO) { /* unreadable: still a hold, with no end */
            memset(&v[cnt], 0, sizeof v[cnt]);
            snprintf(v[cnt].point, sizeof v[cnt].point, "%s", names.v[i]);
            v[cnt].reason = strdup(dverr_msg(&e2));
            v[cnt].by = strdup("?");
            hrc = v[cnt].reason && v[cnt].by ? 0 : -ENOMEM;
        }
        if (hrc) {
            rc = dverr_set(err, hrc, "%s", dverr_msg(&e2));
            point_hold_release(&v[cnt]);
            break;
        }
        cnt++;
    }
    strv_free(names.v, names.n);
    if (rc) {
        point_holds_free(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}
