/* repo_maint: maintenance of the repository (repo.h): forgetting a manual point, pruning the points
 * the caller's rules let go (never a held one) and the objects no point names any more, checking
 * every manifest and object, and rebuilding the catalog from the manifests.
 * Limits: prune and check hold every manifest name (and prune every object id) in memory; check
 * reads each shared object once. A prune waits up to LOCK_WAIT_MS for the captures of this
 * machine (the prune lock) and as long again for those of other machines (their leases).
 * Threading: prune excludes captures through the prune lock and lease (repo_int.h); check and
 * forget take no lock; a rebuild swaps the catalog under r->mu. */
#include "backend/repo/repo_int.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "backend/objstore/objstore_lease.h"
#include "backend/repo/catalog.h"
#include "backend/repo/manifest.h"
#include "backend/repo/segment.h"

int repo_forget(struct repo *r, const char *env, const char *name, struct dverr *err)
{
    struct point *p = NULL;
    int rc = repo_point_load(r, env, name, &p, err);
    if (rc)
        return rc;
    if (strcmp(p->kind, "manual") != 0) {
        point_free(p);
        return dverr_set(err, -EPERM, "%s/%s is a system backup: system backups cannot be "
                         "deleted, they expire", env, name);
    }
    point_free(p);
    struct point_hold h;
    struct dverr he = {0};
    int hrc = repo_hold_get(r, env, name, &h, &he);
    bool held = hrc == -EIO || (hrc == 0 && point_hold_active(&h, time(NULL)));
    if (hrc == 0)
        point_hold_release(&h);
    if (held)
        return dverr_set(err, -EPERM, "%s/%s is under a hold: release it first (dvsnap release "
                         "%s %s)", env, name, env, name);
    if (hrc && hrc != -ENOENT)
        return dverr_set(err, hrc, "%s", dverr_msg(&he));
    char obj[400];
    manifest_object_name(env, name, obj, sizeof obj);
    struct dverr de = {0};
    if ((rc = r->store->ops->del(r->store->impl, obj, &de)) == -EACCES)
        return dverr_set(err, -EACCES, "%s/%s is locked by the store until its retention ends "
                         "(object lock, or credentials that may not delete): it stays (%s)", env,
                         name, dverr_msg(&de));
    if (rc)
        return dverr_set(err, rc, "%s", dverr_msg(&de));
    struct dverr ce = {0};
    struct catalog *cat = repo_catalog_get(r, &ce);
    if (cat && catalog_point_del(cat, env, name, &ce))
        log_warn("%s", dverr_msg(&ce));
    return 0;
}

void prune_report_release(struct prune_report *rep)
{
    if (!rep)
        return;
    for (size_t i = 0; i < rep->n_lines; i++) {
        free(rep->lines[i].point);
        free(rep->lines[i].why);
    }
    free(rep->lines);
    memset(rep, 0, sizeof *rep);
}

void check_report_release(struct check_report *rep)
{
    if (!rep)
        return;
    strv_free(rep->damaged, rep->n_damaged);
    memset(rep, 0, sizeof *rep);
}

/* A set of object ids: sorted array after idset_seal. */
struct idset {
    char (*v)[65];
    size_t n, cap;
};

/* A repo_point_each_id callback (ctx: the idset). */
static int idset_add(void *ctx, const char *id)
{
    struct idset *s = ctx;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        char(*v)[65] = realloc(s->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    snprintf(s->v[s->n++], 65, "%s", id);
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void idset_seal(struct idset *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_id);
}

static bool idset_has(const struct idset *s, const char *id)
{
    return s->n && bsearch(id, s->v, s->n, sizeof *s->v, cmp_id) != NULL;
}

int repo_point_each_id(const struct point *p, int (*fn)(void *ctx, const char *id), void *ctx)
{
    int rc = 0;
    for (size_t i = 0; i < p->n_tables && !rc; i++) {
        const struct point_table *t = &p->tables[i];
        for (size_t k = 0; k < t->n_segments && !rc; k++)
            rc = t->segments[k] ? fn(ctx, t->segments[k]) : 0;
        if (!rc && t->delta)
            rc = fn(ctx, t->delta);
        if (!rc && t->schema)
            rc = fn(ctx, t->schema);
    }
    for (size_t i = 0; i < p->n_files && !rc; i++)
        rc = p->files[i].blob ? fn(ctx, p->files[i].blob) : 0;
    /* the table definitions index (capture_meta.c), and the shared tables document and files
     * document or index (manifest.h) */
    const char *more[] = {p->definitions, p->tables_object, p->files_object};
    for (size_t i = 0; i < sizeof more / sizeof more[0] && !rc; i++)
        rc = more[i] ? fn(ctx, more[i]) : 0;
    /* format 3: the file list's chunks (filelist.h) */
    for (size_t k = 0; k < p->n_files_chunks && !rc; k++)
        rc = fn(ctx, p->files_chunks[k]);
    return rc;
}

int repo_point_lock(struct repo *r, const struct point *p, time_t until, struct dverr *err)
{
    if (!r->object_lock || until <= 0)
        return 0;
    if (!r->store->ops->retain)
        return dverr_set(err, -ENOTSUP, "this store cannot lock objects (object_lock)");
    struct idset ids = {0};
    int rc = repo_point_each_id(p, idset_add, &ids);
    if (rc)
        return dverr_set(err, rc, "out of memory");
    idset_seal(&ids);
    for (size_t i = 0; i < ids.n && !rc; i++)
        if (!i || strcmp(ids.v[i], ids.v[i - 1]) != 0)
            rc = repo_object_lock(r, ids.v[i], until, err);
    free(ids.v);
    return rc;
}

int repo_object_lock(struct repo *r, const char *id, time_t until, struct dverr *err)
{
    if (!r->object_lock || until <= 0)
        return 0;
    if (!r->store->ops->retain)
        return dverr_set(err, -ENOTSUP, "this store cannot lock objects (object_lock)");
    char name[80];
    uint64_t have;
    segment_object_name(id, name);
    if (objstore_sizes_get(r->locked, name, &have) && have >= (uint64_t)until)
        return 0; /* this process locked it long enough already */
    int rc = r->store->ops->retain(r->store->impl, name, until, err);
    if (rc == 0)
        objstore_sizes_note(r->locked, name, (uint64_t)until);
    return rc;
}

/* Remote stores: captures on other machines hold locks/<env>.lease and then wait for
 * locks/prune.lease to be free; prune takes locks/prune.lease and then looks for capture leases,
 * backing off (releasing its own) while any is live. Whichever of the two writes its lease first,
 * the other sees it, so prune never runs beside a capture that may reuse old objects. */
int repo_prune_lease_take(struct repo *r, struct objstore_lease **out, struct dverr *err)
{
    int64_t deadline = now_ms() + LOCK_WAIT_MS;
    for (;;) {
        int rc = objstore_lease_take(r->store, "locks/prune.lease", "the prune of the repository",
                                     0, out, err);
        if (rc)
            return rc;
        struct buf who = BUF_INIT;
        int live = 0;
        rc = objstore_lease_live(r->store, "locks/", "locks/prune.lease", &who, &live, err);
        if (rc == 0 && live == 0) {
            buf_release(&who);
            return 0;
        }
        objstore_lease_release(*out);
        *out = NULL;
        if (rc == 0 && now_ms() >= deadline)
            rc = dverr_set(err, -EBUSY, "captures are running: %s", who.data);
        buf_release(&who);
        if (rc)
            return rc;
        usleep(1000 * 1000);
    }
}

/* Temp files of captures that died (segments being written). Called with the prune lock held
 * exclusively, so no capture sharing this tmp directory is running. */
static void clean_tmp(struct repo *r)
{
    DIR *d = opendir(r->tmp_dir);
    if (!d)
        return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "segment-", 8) != 0 && strncmp(e->d_name, "run-", 4) != 0)
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) == 0)
            n++;
    }
    closedir(d);
    if (n)
        log_info("removed %d temp file%s left by interrupted captures", n, n == 1 ? "" : "s");
}

static int report_line(struct prune_report *rep, const char *env, const char *name, bool removed,
                       const char *why)
{
    size_t n = rep->n_lines; /* capacity: 16, then the next power of two */
    if (n == 0 || (n >= 16 && (n & (n - 1)) == 0)) {
        size_t cap = n ? n * 2 : 16;
        struct prune_line *v = realloc(rep->lines, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        rep->lines = v;
    }
    struct prune_line *l = &rep->lines[rep->n_lines];
    char what[400];
    snprintf(what, sizeof what, "%s/%s", env, name);
    l->point = strdup(what);
    l->why = strdup(why);
    l->removed = removed;
    l->locked = false; /* report_kept sets it when the store refuses the delete */
    if (!l->point || !l->why) {
        free(l->point);
        free(l->why);
        return -ENOMEM;
    }
    rep->n_lines++;
    return 0;
}

/* The report line of point what ("env/name") says it stays after all, and why. */
static void report_kept(struct prune_report *rep, const char *what, bool locked, const char *why)
{
    for (size_t k = 0; k < rep->n_lines; k++)
        if (strcmp(rep->lines[k].point, what) == 0) {
            rep->lines[k].removed = false;
            rep->lines[k].locked = locked;
            free(rep->lines[k].why);
            rep->lines[k].why = strdup(why);
        }
}

/* The holds of one environment, read once per prune (for the decision and for tidying). */
struct env_holds {
    struct point_hold *v;
    size_t n;
};

/* Decide for the points of env; the names of those to remove are added to gone ("env/name").
 * env's holds into *eh (the caller frees them). */
static int prune_decide_env(struct repo *r, const char *env, time_t now, prune_decide_fn decide,
                            void *ctx, struct prune_report *rep, struct name_list *gone,
                            struct env_holds *eh, struct dverr *err)
{
    struct point_summary *ps = NULL;
    struct prune_point *pts = NULL;
    size_t n = 0;
    int rc = repo_points(r, env, &ps, &n, err);
    if (!rc)
        rc = repo_holds(r, env, &eh->v, &eh->n, err);
    struct point_hold *holds = eh->v;
    size_t n_holds = eh->n;
    if (!rc && !(pts = calloc(n ? n : 1, sizeof *pts)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    if (rc)
        goto out;
    for (size_t i = 0; i < n; i++) {
        pts[i].s = ps[i];
        for (size_t k = 0; k < n_holds; k++)
            if (strcmp(holds[k].point, ps[i].name) == 0 && point_hold_active(&holds[k], now))
                pts[i].hold = &holds[k];
        pts[i].keep = !(ps[i].expires_at > 0 && ps[i].expires_at <= now);
        snprintf(pts[i].why, sizeof pts[i].why, "%s", pts[i].keep ? "not expired" : "expired");
    }
    if (decide && (rc = decide(ctx, env, pts, n, now)))
        goto out;
    for (size_t i = 0; i < n && !rc; i++) {
        if (pts[i].hold && !pts[i].keep) { /* a held point stays, whatever decide said */
            pts[i].keep = true;
            snprintf(pts[i].why, sizeof pts[i].why, "held%s%s", pts[i].hold->reason ? ": " : "",
                     pts[i].hold->reason ? pts[i].hold->reason : "");
        }
        if (!pts[i].keep) {
            char what[400];
            snprintf(what, sizeof what, "%s/%s", env, ps[i].name);
            rc = name_list_add(gone, what, strlen(what));
        }
        if (!rc)
            rc = report_line(rep, env, ps[i].name, !pts[i].keep, pts[i].why);
        if (rc)
            rc = dverr_set(err, rc, "out of memory");
    }
out:
    free(pts);
    point_summaries_free(ps, n);
    return rc;
}

/* Just before a point's manifest goes: is it held now (a hold placed since the decision, or one
 * whose document is damaged)? */
static bool held_now(struct repo *r, const char *env, const char *name, time_t now)
{
    struct point_hold h;
    struct dverr ignore = {0};
    int rc = repo_hold_get(r, env, name, &h, &ignore);
    bool held = rc == -EIO || (rc == 0 && point_hold_active(&h, now)) ||
                (rc && rc != -ENOENT); /* cannot tell: keep it */
    if (rc == 0)
        point_hold_release(&h);
    return held;
}

/* Hold documents that expired, or whose point is gone (not dry_run), from the holds the decision
 * read (eh, one per environment of envs); a hold about to go is read again first, so that one
 * placed again while prune ran stays. */
static void prune_holds(struct repo *r, const struct name_list *envs,
                        const struct env_holds *eh, time_t now, bool dry_run,
                        struct prune_report *rep)
{
    for (size_t e = 0; e < envs->n; e++) {
        const struct point_hold *holds = eh[e].v;
        size_t n = eh[e].n;
        struct dverr ignore = {0};
        for (size_t i = 0; i < n; i++) {
            char manifest[400];
            uint64_t size;
            bool gone = manifest_object_name(envs->v[e], holds[i].point, manifest,
                                             sizeof manifest) == 0 &&
                        r->store->ops->stat(r->store->impl, manifest, &size, &ignore) == -ENOENT;
            if (point_hold_active(&holds[i], now) && !gone)
                continue;
            if (!holds[i].by || strcmp(holds[i].by, "?") == 0)
                continue; /* damaged: left for a person to look at */
            if (!gone && !dry_run) {
                struct point_hold now_h;
                int hrc = repo_hold_get(r, envs->v[e], holds[i].point, &now_h, &ignore);
                bool still_expired = hrc == 0 && !point_hold_active(&now_h, now);
                if (hrc == 0)
                    point_hold_release(&now_h);
                if (!still_expired)
                    continue; /* placed again, released or damaged meanwhile */
            }
            if (!dry_run && repo_hold_del(r, envs->v[e], holds[i].point, &ignore))
                continue;
            rep->holds_removed++;
        }
    }
}

/* An append-only repository's writers leave what others delete: the older generations of the
 * leases and the older versions of the environment documents. Best effort (logged). */
static void append_only_tidy(struct repo *r, const struct name_list *envs)
{
    struct dverr e = {0};
    uint64_t removed = 0;
    if (objstore_lease_gc(r->store, "locks/", &removed, &e))
        log_warn("prune: old lease generations stay: %s", dverr_msg(&e));
    for (size_t i = 0; i < envs->n; i++) {
        struct name_list v = {0};
        dverr_clear(&e);
        if (repo_env_doc_versions(r, envs->v[i], &v, &e)) {
            log_warn("prune: %s", dverr_msg(&e));
            continue;
        }
        for (size_t k = 0; k + 1 < v.n; k++) {
            dverr_clear(&e);
            int rc = r->store->ops->del(r->store->impl, v.v[k], &e);
            if (rc && rc != -ENOENT)
                log_warn("prune: %s stays: %s", v.v[k], dverr_msg(&e));
        }
        strv_free(v.v, v.n);
    }
}

int repo_prune(struct repo *r, time_t now, bool dry_run, prune_decide_fn decide, void *ctx,
               struct prune_report *rep, struct dverr *err)
{
    memset(rep, 0, sizeof *rep);
    struct name_list manifests = {0}, objects = {0}, envs = {0}, gone = {0};
    struct idset refs = {0};
    struct objstore_lease *lease = NULL;
    struct env_holds *eh = NULL; /* one per environment of envs */
    int lock_fd = -1;
    int rc = repo_lock_open(r, "prune.lock", &lock_fd, err);
    if (rc)
        return rc;
    if ((rc = repo_lock_wait(lock_fd, LOCK_EX, LOCK_WAIT_MS))) {
        dverr_set(err, rc, "waiting for running captures to finish: %s", strerror(-rc));
        goto out;
    }
    if (!r->store->local_dir && (rc = repo_prune_lease_take(r, &lease, err)))
        goto out;
    if (!dry_run)
        clean_tmp(r);
    if ((rc = r->store->ops->list(r->store->impl, "points/", name_list_collect, &manifests, err)))
        goto out;
    name_list_sort_unique(&manifests);
    /* first decide, per environment, over the whole history (retention rules need it) */
    for (size_t i = 0; i < manifests.n && !rc; i++) {
        char env[256], name[64];
        if (repo_manifest_name_parse(manifests.v[i], env, sizeof env, name, sizeof name))
            rc = name_list_add(&envs, env, strlen(env));
    }
    name_list_sort_unique(&envs);
    if (!(eh = calloc(envs.n ? envs.n : 1, sizeof *eh)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    for (size_t e = 0; e < envs.n && !rc; e++)
        rc = prune_decide_env(r, envs.v[e], now, decide, ctx, rep, &gone, &eh[e], err);
    if (rc)
        goto out;
    name_list_sort_unique(&gone);
    struct catalog *cat = repo_catalog_get(r, &(struct dverr){0});
    for (size_t i = 0; i < manifests.n; i++) {
        char env[256], name[64], what[400];
        if (!repo_manifest_name_parse(manifests.v[i], env, sizeof env, name, sizeof name))
            continue;
        snprintf(what, sizeof what, "%s/%s", env, name);
        bool remove = gone.n && bsearch(&(const char *){what}, gone.v, gone.n, sizeof *gone.v,
                                        cmp_strp) != NULL;
        if (remove && held_now(r, env, name, now)) {
            remove = false;
            report_kept(rep, what, false, "held (placed while prune ran)");
        }
        if (remove && !dry_run) {
            struct dverr de = {0};
            rc = r->store->ops->del(r->store->impl, manifests.v[i], &de);
            if (rc == -EACCES) {
                /* locked (object lock until its retention ends): the point stays, whole */
                log_warn("%s stays: the store refuses to delete it (%s)", what, dverr_msg(&de));
                remove = false;
                rep->points_locked++;
                report_kept(rep, what, true, "locked by the store until its retention ends: a "
                                             "later prune removes it");
            } else if (rc && rc != -ENOENT) {
                dverr_set(err, rc, "%s", dverr_msg(&de));
                goto out;
            }
            rc = 0;
        }
        if (remove) {
            rep->points_removed++;
            if (!dry_run) {
                struct dverr ce = {0};
                if (cat && catalog_point_del(cat, env, name, &ce))
                    log_warn("%s", dverr_msg(&ce));
            }
            continue;
        }
        struct point *p = NULL;
        if ((rc = repo_point_load(r, env, name, &p, err))) {
            /* without its manifest we cannot know what a point needs: delete nothing */
            dverr_set(err, rc, "cannot prune: %s/%s is unreadable", env, name);
            goto out;
        }
        rep->points_kept++;
        rc = repo_point_each_id(p, idset_add, &refs);
        point_free(p);
        if (rc)
            goto out;
    }
    prune_holds(r, &envs, eh, now, dry_run, rep);
    idset_seal(&refs);
    if ((rc = r->store->ops->list(r->store->impl, "objects/", name_list_collect, &objects, err)))
        goto out;
    for (size_t i = 0; i < objects.n; i++) {
        const char *slash = strrchr(objects.v[i], '/');
        const char *id = slash ? slash + 1 : objects.v[i];
        if (!segment_id_ok(id) || idset_has(&refs, id))
            continue;
        uint64_t size = 0;
        struct dverr ignore = {0};
        r->store->ops->stat(r->store->impl, objects.v[i], &size, &ignore);
        if (!dry_run && (rc = r->store->ops->del(r->store->impl, objects.v[i], err)) &&
            rc != -ENOENT) {
            if (rc != -EACCES)
                goto out;
            /* still locked (a point that named it kept it until its own expiry) */
            rc = 0;
            rep->objects_locked++;
            continue;
        }
        rc = 0;
        rep->objects_removed++;
        rep->bytes_removed += size;
    }
    if (!dry_run && r->append_only)
        append_only_tidy(r, &envs);
out:
    objstore_lease_release(lease);
    if (lock_fd >= 0)
        close(lock_fd);
    strv_free(manifests.v, manifests.n);
    strv_free(objects.v, objects.n);
    for (size_t e = 0; eh && e < envs.n; e++)
        point_holds_free(eh[e].v, eh[e].n);
    free(eh);
    strv_free(envs.v, envs.n);
    strv_free(gone.v, gone.n);
    free(refs.v);
    return rc;
}

/* Result of checking one object, remembered so shared objects are read once: an open-addressing
 * hash table keyed by the id (ids are SHA-256 hex, so their first 16 hex digits hash well). */
struct checked {
    char id[65];   /* "" when the slot is free */
    char *problem; /* NULL: fine */
};

struct check_state {
    struct repo *r;
    bool read_data;
    struct checked *v;
    size_t n, cap;           /* cap is a power of two */
    struct check_report *rep;
    struct name_list damaged;
};

static size_t id_slot(const char *id, size_t cap)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return (size_t)h & (cap - 1);
}

static struct checked *checked_find(struct check_state *s, const char *id, bool *fresh)
{
    if (2 * (s->n + 1) > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        struct checked *v = calloc(cap, sizeof *v);
        if (!v)
            return NULL;
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->v[i].id[0])
                continue;
            size_t k = id_slot(s->v[i].id, cap);
            while (v[k].id[0])
                k = (k + 1) & (cap - 1);
            v[k] = s->v[i];
        }
        free(s->v);
        s->v = v;
        s->cap = cap;
    }
    size_t k = id_slot(id, s->cap);
    while (s->v[k].id[0] && strcmp(s->v[k].id, id) != 0)
        k = (k + 1) & (s->cap - 1);
    *fresh = !s->v[k].id[0];
    return &s->v[k];
}

/* Check id (once), returning NULL when fine or a description of the problem. */
static const char *check_once(struct check_state *s, const char *id, bool segment)
{
    bool fresh;
    struct checked *c = checked_find(s, id, &fresh);
    if (!c)
        return "out of memory";
    if (!fresh)
        return c->problem;
    struct dverr e = {0};
    char name[80];
    int rc;
    segment_object_name(id, name);
    s->rep->objects_checked++;
    if (!segment_id_ok(id)) {
        rc = dverr_set(&e, -EIO, "invalid object id");
    } else if (!s->read_data) {
        uint64_t size = 0;
        rc = s->r->store->ops->stat(s->r->store->impl, name, &size, &e);
        if (rc == -ENOENT)
            dverr_clear(&e), rc = dverr_set(&e, rc, "%s %.16s is missing",
                                            segment ? "segment" : "blob", id);
    } else if (segment) {
        uint64_t size = 0;
        struct dverr ignore = {0};
        rc = segment_verify(s->r->store, s->r->crypt, id, NULL, &e);
        if (s->r->store->ops->stat(s->r->store->impl, name, &size, &ignore) == 0)
            s->rep->bytes_checked += size;
    } else {
        struct buf b = BUF_INIT;
        rc = repo_blob_get(s->r, id, &b, &e);
        if (rc == -ENOENT)
            dverr_clear(&e), rc = dverr_set(&e, rc, "blob %.16s is missing", id);
        s->rep->bytes_checked += b.len;
        buf_release(&b);
    }
    snprintf(c->id, sizeof c->id, "%s", id);
    s->n++;
    c->problem = rc ? strdup(dverr_msg(&e)[0] ? dverr_msg(&e) : strerror(-rc)) : NULL;
    if (rc && !c->problem)
        return "damaged";
    return c->problem;
}

/* read_data: the table as its chain merges has the records and size the manifest says. */
struct size_ctx {
    uint64_t records, line_bytes;
};

static int size_add(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct size_ctx *c = ctx;
    c->records++;
    c->line_bytes += line_len;
    return 0;
}

static int report(struct check_state *s, const char *env, const char *point, const char *what,
                  const char *problem)
{
    char line[1024];
    snprintf(line, sizeof line, "%s/%s: %s (%s)", env, point, what, problem);
    return name_list_add(&s->damaged, line, strlen(line));
}

int repo_check(struct repo *r, bool read_data, struct check_report *rep, struct dverr *err)
{
    memset(rep, 0, sizeof *rep);
    struct check_state s = {.r = r, .read_data = read_data, .rep = rep};
    struct name_list manifests = {0};
    int rc = r->store->ops->list(r->store->impl, "points/", name_list_collect, &manifests, err);
    if (rc)
        goto out;
    name_list_sort_unique(&manifests);
    for (size_t i = 0; i < manifests.n && !rc; i++) {
        char env[256], name[64];
        if (!repo_manifest_name_parse(manifests.v[i], env, sizeof env, name, sizeof name)) {
            rc = report(&s, "?", manifests.v[i], "manifest", "unexpected name");
            continue;
        }
        rep->points++;
        struct point *p = NULL;
        struct dverr e = {0};
        if (repo_point_load(r, env, name, &p, &e)) {
            rc = report(&s, env, name, "manifest", dverr_msg(&e));
            continue;
        }
        for (size_t t = 0; t < p->n_tables && !rc; t++) {
            const struct point_table *pt = &p->tables[t];
            for (size_t k = 0; k <= pt->n_segments && !rc; k++) {
                const char *id = k < pt->n_segments ? pt->segments[k] : pt->delta;
                if (!id)
                    continue;
                const char *problem = check_once(&s, id, true);
                if (problem)
                    rc = report(&s, env, name, pt->name, problem);
            }
            bool chain_ok = true;
            for (size_t k = 0; k < pt->n_segments; k++)
                chain_ok = chain_ok && check_once(&s, pt->segments[k], true) == NULL;
            if (!rc && read_data && chain_ok) {
                /* the merged table must be what the manifest promises the mount */
                struct size_ctx sc = {0};
                struct dverr te = {0};
                int trc = table_iterate(r, p, pt->name, size_add, &sc, &te);
                uint64_t bytes = sc.records ? sc.line_bytes + 2 * sc.records + 3 : 4;
                char what[200];
                if (trc)
                    rc = report(&s, env, name, pt->name, dverr_msg(&te));
                else if (sc.records != pt->records || bytes != pt->bytes) {
                    snprintf(what, sizeof what, "the segments give %llu records, %llu bytes; the "
                             "manifest says %llu, %llu", (unsigned long long)sc.records,
                             (unsigned long long)bytes, (unsigned long long)pt->records,
                             (unsigned long long)pt->bytes);
                    rc = report(&s, env, name, pt->name, what);
                }
            }
            const char *problem = pt->schema ? check_once(&s, pt->schema, false) : NULL;
            if (!rc && problem) {
                char what[300];
                snprintf(what, sizeof what, "%s schema", pt->name);
                rc = report(&s, env, name, what, problem);
            }
        }
        for (size_t f = 0; f < p->n_files && !rc; f++) {
            const char *problem = check_once(&s, p->files[f].blob, false);
            if (problem) {
                char what[600];
                snprintf(what, sizeof what, "files/%s/%s/%s", p->files[f].table,
                         p->files[f].record_id, p->files[f].file_name);
                rc = report(&s, env, name, what, problem);
            }
        }
        if (!rc && p->definitions) { /* the table definitions index (engine/capture_meta.c) */
            const char *problem = check_once(&s, p->definitions, false);
            if (problem)
                rc = report(&s, env, name, "table definitions index", problem);
        }
        point_free(p);
    }
    name_list_sort_unique(&s.damaged);
out:
    for (size_t i = 0; i < s.cap; i++)
        free(s.v[i].problem);
    free(s.v);
    strv_free(manifests.v, manifests.n);
    rep->damaged = s.damaged.v;
    rep->n_damaged = s.damaged.n;
    if (rc)
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    if (rep->n_damaged)
        return dverr_set(err, -EIO, "%zu damaged: %s", rep->n_damaged, rep->damaged[0]);
    return 0;
}

/* Move the catalog files aside (only rename: no code but SQLite opens them). */
static void move_catalog_aside(const char *path)
{
    char stamp[32], from[PATH_MAX], to[PATH_MAX];
    point_name_from_time(time(NULL), stamp);
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(from, sizeof from, "%s%s", path, suffix[i]);
        snprintf(to, sizeof to, "%s.damaged-%s%s", path, stamp, suffix[i]);
        if (rename(from, to) == 0 && i == 0)
            log_warn("moved the damaged catalog to %s", to);
    }
}

int repo_rebuild_catalog(struct repo *r, struct dverr *err)
{
    pthread_mutex_lock(&r->mu);
    struct catalog *old = r->cat;
    r->cat = NULL;
    dverr_clear(&r->cat_err);
    dverr_set(&r->cat_err, -EBUSY, "the catalog is being rebuilt");
    pthread_mutex_unlock(&r->mu);
    struct catalog *cat = NULL;
    struct dverr e = {0};
    int rc = 0;
    if (old && catalog_clear(old, &e) == 0) {
        cat = old;
    } else {
        catalog_free(old);
        move_catalog_aside(r->catalog_path);
        if ((rc = catalog_open(r->catalog_path, &cat, err)))
            goto out;
    }
    char **envs = NULL;
    size_t n_envs = 0;
    if ((rc = repo_envs(r, &envs, &n_envs, err)))
        goto out;
    for (size_t i = 0; i < n_envs && !rc; i++) {
        struct name_list names = {0};
        if ((rc = repo_point_names(r, envs[i], &names, err)))
            break;
        struct point *latest = NULL;
        for (size_t k = 0; k < names.n && !rc; k++) {
            struct point *p = NULL;
            struct dverr le = {0};
            if (repo_point_load(r, envs[i], names.v[k], &p, &le)) {
                log_warn("rebuild: skipping %s", dverr_msg(&le));
                continue;
            }
            rc = catalog_point_add(cat, p, err);
            point_free(latest);
            latest = p;
        }
        if (!rc)
            rc = repo_env_state_rebuild(r, cat, envs[i], latest, err);
        point_free(latest);
        strv_free(names.v, names.n);
    }
    strv_free(envs, n_envs);
out:
    pthread_mutex_lock(&r->mu);
    if (rc) {
        catalog_free(cat);
        dverr_clear(&r->cat_err);
        dverr_set(&r->cat_err, rc, "the catalog rebuild failed: %s", dverr_msg(err));
    } else {
        r->cat = cat;
        dverr_clear(&r->cat_err);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}
