/* repo: the backup repository (repo.h): opening, points, table readers, blobs, captures,
 * prune, forget, check and catalog rebuild, over segment.c, manifest.c, catalog.c and objstore.
 *
 * Locks (directory repositories: files under ROOT/locks; other stores: under the catalog's
 * directory for the writers of this machine, plus the lease object locks/<env>.lease.<gen> in the
 * store (objstore_lease.h) for writers on other machines, checked again before the manifest):
 *   <env>.lock   flock LOCK_EX for the whole capture of env (-EBUSY when held)
 *   prune.lock   captures hold LOCK_SH from begin to commit/abort; prune takes LOCK_EX, so prune
 *                never deletes an object that a capture in progress has written or reuses.
 * Commit order: segments and blobs are durable when written; the manifest is written with
 * put_if_absent; then the catalog transaction commits. A crash between the two leaves the catalog
 * behind the manifests; capture_begin notices (the state's point differs from the latest
 * manifest) and rebuilds that environment's state from the latest point.
 * Threading: struct repo is thread-safe; r->mu guards the catalog pointer (swapped by rebuild). */
#include "backend/repo/repo.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/repo/catalog.h"
#include "backend/base/log.h"
#include "backend/repo/manifest.h"
#include "backend/objstore/objstore_lease.h"
#include "backend/repo/segment.h"

#define LOCK_WAIT_MS (300 * 1000)

struct repo {
    struct objstore *store;
    char *catalog_path;
    char *tmp_dir;
    char *lock_dir;
    pthread_mutex_t mu;
    struct catalog *cat;     /* guarded by mu; NULL when the catalog could not be opened */
    struct dverr cat_err;    /* why (guarded by mu) */
};

struct objstore *repo_store(struct repo *r)
{
    return r->store;
}

static struct catalog *get_cat(struct repo *r, struct dverr *err)
{
    pthread_mutex_lock(&r->mu);
    struct catalog *c = r->cat;
    if (!c)
        dverr_set(err, r->cat_err.code ? r->cat_err.code : -EIO, "%s", r->cat_err.msg);
    pthread_mutex_unlock(&r->mu);
    return c;
}

static int dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    size_t len = slash ? (size_t)(slash - path) : 1;
    if (!slash)
        path = ".";
    if (len == 0)
        len = 1;
    if (len >= n)
        return -ENAMETOOLONG;
    memcpy(out, path, len);
    out[len] = '\0';
    return 0;
}

int repo_open_store(struct objstore *store, const char *catalog_path, struct repo **out,
                    struct dverr *err)
{
    *out = NULL;
    struct repo *r = calloc(1, sizeof *r);
    char base[PATH_MAX], p[PATH_MAX];
    int rc = 0;
    if (!r) {
        objstore_free(store);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    r->store = store;
    pthread_mutex_init(&r->mu, NULL);
    if (store->local_dir)
        snprintf(base, sizeof base, "%s", store->local_dir);
    else if ((rc = dir_of(catalog_path, base, sizeof base)))
        goto fail;
    if (!(r->catalog_path = strdup(catalog_path))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (snprintf(p, sizeof p, "%s/tmp", base) >= (int)sizeof p ||
        !(r->tmp_dir = strdup(p)) || snprintf(p, sizeof p, "%s/locks", base) >= (int)sizeof p ||
        !(r->lock_dir = strdup(p))) {
        rc = -ENOMEM;
        goto fail;
    }
    if ((rc = dir_of(catalog_path, p, sizeof p)) || (rc = mkdir_p(p, 0700))) {
        dverr_set(err, rc, "creating the directory of %s: %s", catalog_path, strerror(-rc));
        goto fail;
    }
    if ((rc = mkdir_p(r->lock_dir, 0755))) {
        dverr_set(err, rc, "creating %s: %s", r->lock_dir, strerror(-rc));
        goto fail;
    }
    rc = catalog_open(catalog_path, &r->cat, &r->cat_err);
    if (rc == -EIO) {
        /* damaged: the repository stays usable (points are read from manifests) until rebuilt */
        log_warn("%s", dverr_msg(&r->cat_err));
        rc = 0;
    } else if (rc) {
        dverr_set(err, rc, "%s", dverr_msg(&r->cat_err));
        goto fail;
    }
    *out = r;
    return 0;
fail:
    dverr_set(err, rc, "opening the repository: %s", strerror(-rc));
    repo_free(r);
    return rc;
}

void repo_free(struct repo *r)
{
    if (!r)
        return;
    catalog_free(r->cat);
    objstore_free(r->store);
    pthread_mutex_destroy(&r->mu);
    free(r->catalog_path);
    free(r->tmp_dir);
    free(r->lock_dir);
    free(r);
}

static int catalog_path_for(const struct config *cfg, const struct objstore *s, char *out, size_t n)
{
    if (s->local_dir)
        return snprintf(out, n, "%s/catalog.db", s->local_dir) >= (int)n ? -ENAMETOOLONG : 0;
    char h[65];
    sha256_hex(cfg->repository, strlen(cfg->repository), h);
    return snprintf(out, n, "%s/catalog-%.16s.db", cfg->cache_dir ? cfg->cache_dir : ".", h) >= (int)n
               ? -ENAMETOOLONG : 0;
}

int repo_init(const struct config *cfg, struct dverr *err)
{
    const char *loc = cfg->repository;
    if (!loc || !*loc)
        return dverr_set(err, -EINVAL, "no repository configured");
    if (!strstr(loc, "://") || strncmp(loc, "file://", 7) == 0) {
        const char *path = strncmp(loc, "file://", 7) == 0 ? loc + 7 : loc;
        int rc = mkdir_p(path, 0755);
        if (rc)
            return dverr_set(err, rc, "creating %s: %s", path, strerror(-rc));
    }
    struct objstore *s = NULL;
    int rc = objstore_open(loc, cfg, &s, err);
    if (rc)
        return rc;
    char id[65];
    unsigned char rnd[16] = {0};
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, rnd, sizeof rnd) != (ssize_t)sizeof rnd)
            rnd[0] ^= (unsigned char)getpid();
        close(fd);
    }
    sha256_hex(rnd, sizeof rnd, id);
    char now[32];
    rfc3339_from_time(time(NULL), now);
    struct buf doc = BUF_INIT;
    buf_printf(&doc, "{\"format\":1,\"kind\":\"dvsnap-repository\",\"id\":\"%.32s\",\"created\":\"%s\"}\n",
               id, now);
    rc = s->ops->put_if_absent(s->impl, "config", doc.data, doc.len, err);
    buf_release(&doc);
    if (rc == -EEXIST)
        rc = dverr_set(err, -EEXIST, "%s already holds a repository", loc);
    if (rc) {
        objstore_free(s);
        return rc;
    }
    char cat[PATH_MAX];
    struct repo *r = NULL;
    if ((rc = catalog_path_for(cfg, s, cat, sizeof cat))) {
        objstore_free(s);
        return dverr_set(err, rc, "catalog path too long");
    }
    rc = repo_open_store(s, cat, &r, err);
    repo_free(r);
    return rc;
}

int repo_open(const struct config *cfg, struct repo **out, struct dverr *err)
{
    *out = NULL;
    struct objstore *s = NULL;
    const char *loc = cfg->repository ? cfg->repository : "";
    int rc = objstore_open(loc, cfg, &s, err);
    if (rc == -ENOENT)
        return dverr_set(err, rc, "no repository at %s; create one with `dvsnap init`", loc);
    if (rc)
        return rc;
    struct buf doc = BUF_INIT;
    struct dverr e2 = {0};
    rc = s->ops->get(s->impl, "config", 0, OBJSTORE_TO_END, &doc, &e2);
    if (rc == -ENOENT) {
        rc = dverr_set(err, rc, "no repository at %s; create one with `dvsnap init`", loc);
    } else if (rc) {
        rc = dverr_set(err, rc, "%s: %s", loc, dverr_msg(&e2));
    } else if (!doc.data || !strstr(doc.data, "\"format\":1")) {
        rc = dverr_set(err, -EIO, "%s: not a dvsnap repository of a known format", loc);
    }
    buf_release(&doc);
    char cat[PATH_MAX];
    if (!rc && (rc = catalog_path_for(cfg, s, cat, sizeof cat)))
        dverr_set(err, rc, "catalog path too long");
    if (rc) {
        objstore_free(s);
        return rc;
    }
    return repo_open_store(s, cat, out, err);
}

/* ---------- points ---------- */

struct name_list {
    char **v;
    size_t n, cap;
};

static int name_list_add(struct name_list *l, const char *s, size_t len)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 32;
        char **v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    if (!(l->v[l->n] = strndup(s, len)))
        return -ENOMEM;
    l->n++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void name_list_sort_unique(struct name_list *l)
{
    if (!l->n)
        return;
    qsort(l->v, l->n, sizeof *l->v, cmp_str);
    size_t o = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i], l->v[o - 1]) == 0)
            free(l->v[i]);
        else
            l->v[o++] = l->v[i];
    }
    l->n = o;
}

/* "points/<env>/<name>.json" -> env and name; false for anything else. */
static bool parse_manifest_name(const char *obj, char *env, size_t en, char *name, size_t nn)
{
    if (strncmp(obj, "points/", 7) != 0)
        return false;
    const char *e = obj + 7, *slash = strchr(e, '/');
    if (!slash || (size_t)(slash - e) >= en)
        return false;
    const char *nm = slash + 1;
    size_t len = strlen(nm);
    if (len < 6 || strcmp(nm + len - 5, ".json") != 0 || len - 5 >= nn || strchr(nm, '/'))
        return false;
    memcpy(env, e, (size_t)(slash - e));
    env[slash - e] = '\0';
    memcpy(name, nm, len - 5);
    name[len - 5] = '\0';
    time_t t;
    return manifest_env_name_ok(env) && point_name_to_time(name, &t) == 0;
}

struct list_ctx {
    struct name_list envs, names; /* names: "env/name" or just name */
    bool want_env;
};

static int collect_manifest(void *ctx, const char *obj, uint64_t size)
{
    struct list_ctx *c = ctx;
    char env[256], name[64];
    if (!parse_manifest_name(obj, env, sizeof env, name, sizeof name))
        return 0;
    if (c->want_env)
        return name_list_add(&c->envs, env, strlen(env));
    return name_list_add(&c->names, name, strlen(name));
}

static int collect_envdoc(void *ctx, const char *obj, uint64_t size)
{
    struct list_ctx *c = ctx;
    size_t n = strlen(obj);
    if (strncmp(obj, "envs/", 5) != 0 || n < 11 || strcmp(obj + n - 5, ".json") != 0)
        return 0;
    char env[256];
    if (n - 10 >= sizeof env)
        return 0;
    memcpy(env, obj + 5, n - 10);
    env[n - 10] = '\0';
    return manifest_env_name_ok(env) ? name_list_add(&c->envs, env, strlen(env)) : 0;
}

int repo_envs(struct repo *r, char ***names, size_t *n, struct dverr *err)
{
    *names = NULL;
    *n = 0;
    struct list_ctx c = {.want_env = true};
    int rc = r->store->ops->list(r->store->impl, "points/", collect_manifest, &c, err);
    if (!rc)
        rc = r->store->ops->list(r->store->impl, "envs/", collect_envdoc, &c, err);
    if (rc) {
        strv_free(c.envs.v, c.envs.n);
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    }
    name_list_sort_unique(&c.envs);
    *names = c.envs.v;
    *n = c.envs.n;
    return 0;
}

static int list_point_names(struct repo *r, const char *env, struct name_list *out,
                            struct dverr *err)
{
    char prefix[300];
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -ENOENT, "no environment \"%.80s\" in the repository", env);
    snprintf(prefix, sizeof prefix, "points/%s/", env);
    struct list_ctx c = {.want_env = false};
    int rc = r->store->ops->list(r->store->impl, prefix, collect_manifest, &c, err);
    if (rc) {
        strv_free(c.names.v, c.names.n);
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    }
    name_list_sort_unique(&c.names);
    *out = c.names;
    return 0;
}

int repo_point_load(struct repo *r, const char *env, const char *name, struct point **out,
                    struct dverr *err)
{
    *out = NULL;
    char obj[400];
    if (manifest_object_name(env, name, obj, sizeof obj))
        return dverr_set(err, -ENOENT, "no point \"%.40s\" in \"%.80s\"", name ? name : "",
                         env ? env : "");
    struct buf b = BUF_INIT;
    struct dverr e2 = {0};
    int rc = r->store->ops->get(r->store->impl, obj, 0, OBJSTORE_TO_END, &b, &e2);
    if (rc == -ENOENT) {
        buf_release(&b);
        return dverr_set(err, rc, "no point %s in %s", name, env);
    }
    if (!rc && b.len > MANIFEST_MAX_BYTES)
        rc = dverr_set(&e2, -EIO, "manifest of %s/%s is too large", env, name);
    if (rc) {
        buf_release(&b);
        return dverr_set(err, rc, "%s", dverr_msg(&e2));
    }
    struct point *p = NULL;
    rc = manifest_parse(b.data ? b.data : "", b.len, &p, err);
    buf_release(&b);
    if (rc)
        return rc == -EIO ? dverr_set(err, rc, "damaged manifest %s/%s", env, name) : rc;
    if (strcmp(p->env, env) != 0 || strcmp(p->name, name) != 0) {
        point_free(p);
        return dverr_set(err, -EIO, "damaged manifest %s/%s: it names another point", env, name);
    }
    /* the segment sizes it records serve the compaction rule of later captures */
    for (size_t i = 0; i < p->n_tables; i++) {
        const struct point_table *pt = &p->tables[i];
        for (size_t k = 0; pt->segment_sizes && k < pt->n_segments; k++) {
            char seg[80];
            segment_object_name(pt->segments[k], seg);
            objstore_sizes_note(r->store->sizes, seg, pt->segment_sizes[k]);
        }
    }
    *out = p;
    return 0;
}

static void summary_from_point(const struct point *p, struct point_summary *s)
{
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", p->name);
    snprintf(s->kind, sizeof s->kind, "%s", p->kind);
    s->label = p->label ? strdup(p->label) : NULL;
    s->taken_at = p->taken_at;
    s->expires_at = p->expires_at;
}

/* Points straight from the manifests (no catalog). */
static int points_from_manifests(struct repo *r, const char *env, struct point_summary **out,
                                 size_t *n, struct dverr *err)
{
    struct name_list names = {0};
    int rc = list_point_names(r, env, &names, err);
    if (rc)
        return rc;
    struct point_summary *v = calloc(names.n ? names.n : 1, sizeof *v);
    size_t cnt = 0;
    if (!v)
        rc = dverr_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; !rc && i < names.n; i++) {
        struct point *p = NULL;
        struct dverr e2 = {0};
        int lrc = repo_point_load(r, env, names.v[i], &p, &e2);
        if (lrc == -ENOENT)
            continue; /* removed meanwhile */
        if (lrc) {
            log_warn("%s", dverr_msg(&e2));
            continue; /* a damaged manifest is reported by check, not hidden here */
        }
        summary_from_point(p, &v[cnt++]);
        point_free(p);
    }
    strv_free(names.v, names.n);
    if (rc) {
        point_summaries_free(v, cnt);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

int repo_points(struct repo *r, const char *env, struct point_summary **out, size_t *n,
                struct dverr *err)
{
    *out = NULL;
    *n = 0;
    struct dverr ce = {0};
    struct catalog *cat = get_cat(r, &ce);
    if (!cat)
        return points_from_manifests(r, env, out, n, err);
    struct name_list names = {0};
    struct point_summary *have = NULL;
    size_t n_have = 0;
    int rc = list_point_names(r, env, &names, err);
    if (rc)
        return rc;
    if ((rc = catalog_points(cat, env, &have, &n_have, err)))
        goto out;
    /* both sorted by name: add what the store has and the catalog lacks, drop the reverse */
    size_t i = 0, k = 0;
    bool changed = false;
    while (!rc && (i < names.n || k < n_have)) {
        int c = i == names.n ? 1 : k == n_have ? -1 : strcmp(names.v[i], have[k].name);
        if (c == 0) {
            i++;
            k++;
        } else if (c < 0) {
            struct point *p = NULL;
            struct dverr e2 = {0};
            int lrc = repo_point_load(r, env, names.v[i], &p, &e2);
            if (lrc == 0)
                rc = catalog_point_add(cat, p, err);
            else if (lrc != -ENOENT)
                log_warn("%s", dverr_msg(&e2));
            point_free(p);
            changed = true;
            i++;
        } else {
            rc = catalog_point_del(cat, env, have[k].name, err);
            changed = true;
            k++;
        }
    }
    if (!rc && changed) {
        point_summaries_free(have, n_have);
        have = NULL;
        n_have = 0;
        rc = catalog_points(cat, env, &have, &n_have, err);
    }
out:
    strv_free(names.v, names.n);
    if (rc) {
        point_summaries_free(have, n_have);
        return rc;
    }
    *out = have;
    *n = n_have;
    return 0;
}

int repo_env_doc(struct repo *r, const char *env, struct buf *out, struct dverr *err)
{
    char obj[300];
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -ENOENT, "no environment \"%.80s\"", env);
    snprintf(obj, sizeof obj, "envs/%s.json", env);
    return r->store->ops->get(r->store->impl, obj, 0, OBJSTORE_TO_END, out, err);
}

int repo_env_doc_put(struct repo *r, const char *env, const char *json, struct dverr *err)
{
    char obj[300];
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -EINVAL, "environment name \"%.80s\" cannot be stored", env);
    snprintf(obj, sizeof obj, "envs/%s.json", env);
    return r->store->ops->put(r->store->impl, obj, json, strlen(json), err);
}

/* ---------- reading tables ---------- */

struct piece {
    const char *p;
    size_t n;
};

struct table_reader {
    struct segment_merge *m;
    bool changes;
    uint64_t expect, emitted, lines;
    bool done;
    struct piece pieces[4];
    int n_pieces, cur;
    struct buf stage;
};

static const struct point_table *find_table(const struct point *p, const char *table)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (strcmp(p->tables[i].name, table) == 0)
            return &p->tables[i];
    return NULL;
}

static int reader_open(struct repo *r, const struct point *p, const char *table, bool changes,
                       struct table_reader **out, struct dverr *err)
{
    *out = NULL;
    const struct point_table *pt = find_table(p, table);
    if (!pt)
        return dverr_set(err, -ENOENT, "no table \"%.80s\" in %s/%s", table, p->env, p->name);
    struct table_reader *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dverr_set(err, -ENOMEM, "out of memory");
    tr->changes = changes;
    tr->expect = changes ? pt->changes_bytes : pt->bytes;
    int rc;
    if (changes) {
        char *ids[1] = {pt->delta};
        rc = segment_merge_open(r->store, ids, pt->delta ? 1 : 0, true, &tr->m, err);
        if (!pt->delta && tr->expect == 0)
            tr->expect = 4; /* "[\n]\n" */
    } else {
        rc = segment_merge_open(r->store, pt->segments, pt->n_segments, false, &tr->m, err);
    }
    if (rc) {
        free(tr);
        return rc;
    }
    *out = tr;
    return 0;
}

int table_reader_open(struct repo *r, const struct point *p, const char *table,
                      struct table_reader **out, struct dverr *err)
{
    return reader_open(r, p, table, false, out, err);
}

int changes_reader_open(struct repo *r, const struct point *p, const char *table,
                        struct table_reader **out, struct dverr *err)
{
    return reader_open(r, p, table, true, out, err);
}

/* Queue the pieces of the next line (or the tail); false at the end. */
static int refill(struct table_reader *tr, struct dverr *err)
{
    tr->n_pieces = tr->cur = 0;
    if (tr->done)
        return 0;
    struct segment_entry e;
    int rc = segment_merge_next(tr->m, &e, err);
    if (rc < 0)
        return rc;
    if (rc == 0) {
        tr->done = true;
        tr->pieces[tr->n_pieces++] = (struct piece){tr->lines ? "\n]\n" : "[\n]\n",
                                                    tr->lines ? 3 : 4};
        return 1;
    }
    tr->pieces[tr->n_pieces++] = (struct piece){tr->lines ? ",\n" : "[\n", 2};
    tr->lines++;
    if (!tr->changes) {
        tr->pieces[tr->n_pieces++] = (struct piece){e.line, e.line_len};
        return 1;
    }
    buf_reset(&tr->stage);
    if (changes_line_render(&tr->stage, e.op, e.key, e.key_len, e.line, e.line_len))
        return dverr_set(err, -ENOMEM, "out of memory");
    tr->pieces[tr->n_pieces++] = (struct piece){tr->stage.data, tr->stage.len};
    return 1;
}

ssize_t table_reader_read(struct table_reader *tr, void *buf, size_t n, struct dverr *err)
{
    char *out = buf;
    size_t got = 0;
    while (got < n) {
        if (tr->cur == tr->n_pieces) {
            int rc = refill(tr, err);
            if (rc < 0)
                return rc;
            if (rc == 0)
                break;
        }
        struct piece *pc = &tr->pieces[tr->cur];
        size_t k = pc->n < n - got ? pc->n : n - got;
        memcpy(out + got, pc->p, k);
        got += k;
        pc->p += k;
        pc->n -= k;
        if (pc->n == 0)
            tr->cur++;
    }
    tr->emitted += got;
    if (tr->emitted > tr->expect || (got == 0 && tr->emitted != tr->expect))
        return dverr_set(err, -EIO, "table size mismatch: the manifest says %llu bytes, the "
                         "segments give %s%llu", (unsigned long long)tr->expect,
                         got ? "more than " : "", (unsigned long long)tr->emitted);
    return (ssize_t)got;
}

void table_reader_free(struct table_reader *tr)
{
    if (!tr)
        return;
    segment_merge_free(tr->m);
    buf_release(&tr->stage);
    free(tr);
}

int table_iterate(struct repo *r, const struct point *p, const char *table,
                  int (*fn)(void *ctx, const char *key, size_t key_len, const char *line,
                            size_t line_len),
                  void *ctx, struct dverr *err)
{
    const struct point_table *pt = find_table(p, table);
    if (!pt)
        return dverr_set(err, -ENOENT, "no table \"%.80s\" in %s/%s", table, p->env, p->name);
    struct segment_merge *m = NULL;
    int rc = segment_merge_open(r->store, pt->segments, pt->n_segments, false, &m, err);
    if (rc)
        return rc;
    struct segment_entry e;
    while ((rc = segment_merge_next(m, &e, err)) == 1) {
        if ((rc = fn(ctx, e.key, e.key_len, e.line, e.line_len)))
            break;
    }
    segment_merge_free(m);
    return rc;
}

/* ---------- blobs ---------- */

int repo_blob_put(struct repo *r, const void *data, size_t len, char id[65], struct dverr *err)
{
    char name[80];
    sha256_hex(data, len, id);
    segment_object_name(id, name);
    uint64_t size;
    struct dverr ignore = {0};
    if (r->store->ops->stat(r->store->impl, name, &size, &ignore) == 0 && size == len)
        return 0;
    return r->store->ops->put(r->store->impl, name, data, len, err);
}

int repo_blob_get(struct repo *r, const char *id, struct buf *out, struct dverr *err)
{
    char name[80], h[65];
    if (!segment_id_ok(id))
        return dverr_set(err, -EINVAL, "invalid blob id \"%.70s\"", id ? id : "");
    segment_object_name(id, name);
    uint64_t size;
    int rc = r->store->ops->stat(r->store->impl, name, &size, err);
    if (rc)
        return rc;
    if (size > REPO_BLOB_MAX)
        return dverr_set(err, -EFBIG, "blob %.16s is too large (%llu bytes)", id,
                         (unsigned long long)size);
    size_t start = out->len;
    if ((rc = r->store->ops->get(r->store->impl, name, 0, size, out, err)))
        return rc;
    sha256_hex(out->data + start, out->len - start, h);
    if (strcmp(h, id) != 0) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
        return dverr_set(err, -EIO, "blob %.16s is damaged: its bytes do not match its id", id);
    }
    return 0;
}

/* ---------- writing ---------- */

int segment_writer_new(struct repo *r, struct segment_writer **out, struct dverr *err)
{
    return segment_writer_new_in(r->store, r->tmp_dir, out, err);
}

uint64_t repo_line_hash(const char *line, size_t len)
{
    char h[65];
    sha256_hex(line, len, h);
    uint64_t v = 0;
    for (int i = 0; i < 16; i++)
        v = (v << 4) | (uint64_t)(h[i] <= '9' ? h[i] - '0' : h[i] - 'a' + 10);
    return v;
}

/* The size of segment k of pt without a request: the manifest's record, else what this process
 * learnt (the size memo: manifests loaded, objects written or stat-ed), else a stat where that is
 * a local call. false when unknown (a remote store never pays a request for it). */
static bool segment_size(struct repo *r, const struct point_table *pt, size_t k, uint64_t *size)
{
    if (pt->segment_sizes && pt->segment_sizes[k]) {
        *size = pt->segment_sizes[k];
        return true;
    }
    char name[80];
    segment_object_name(pt->segments[k], name);
    if (objstore_sizes_get(r->store->sizes, name, size))
        return true;
    struct dverr ignore = {0};
    if (!r->store->local_dir || r->store->ops->stat(r->store->impl, name, size, &ignore))
        return false;
    objstore_sizes_note(r->store->sizes, name, *size);
    return true;
}

bool repo_table_should_compact(struct repo *r, const struct point_table *pt)
{
    if (pt->n_segments > REPO_MAX_CHAIN)
        return true;
    /* the size rule, once the chain is long enough for it to matter: the deltas together larger
     * than the base. Sizes come from manifests and what this process wrote, so it costs no request
     * on any store; a chain with a size unknown is left alone (the length cap still applies). */
    if (pt->n_segments < 4)
        return false;
    uint64_t base = 0, deltas = 0, size;
    for (size_t i = 0; i < pt->n_segments; i++) {
        if (!segment_size(r, pt, i, &size))
            return false;
        if (i == 0)
            base = size;
        else
            deltas += size;
    }
    return deltas > base;
}

/* Record the size of every segment of p's tables that is known without a request (manifest
 * format: "segment_bytes"). A table with a size unknown keeps none. */
static int record_segment_sizes(struct repo *r, struct point *p, struct dverr *err)
{
    for (size_t i = 0; i < p->n_tables; i++) {
        struct point_table *pt = &p->tables[i];
        if (!pt->n_segments)
            continue;
        uint64_t *v = calloc(pt->n_segments, sizeof *v);
        if (!v)
            return dverr_set(err, -ENOMEM, "out of memory");
        bool all = true;
        for (size_t k = 0; all && k < pt->n_segments; k++)
            all = segment_size(r, pt, k, &v[k]) && v[k] > 0;
        free(pt->segment_sizes);
        pt->segment_sizes = NULL;
        if (all)
            pt->segment_sizes = v;
        else
            free(v);
    }
    return 0;
}

struct base_ctx {
    struct segment_writer *w;
    struct dverr *err;
};

static int base_add(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct base_ctx *c = ctx;
    return segment_writer_add(c->w, SEG_BASE, key, key_len, line, line_len, c->err);
}

int repo_write_base(struct repo *r, const struct point_table *pt, char id[65], uint64_t *records,
                    uint64_t *bytes, struct dverr *err)
{
    struct segment_writer *w = NULL;
    int rc = segment_writer_new(r, &w, err);
    if (rc)
        return rc;
    /* notes' attachments are the point's files (capture.c): keep them once in the base too */
    segment_writer_set_attachments(w, strcmp(pt->name, "annotation") == 0);
    char fake_env[] = "(capture)", fake_name[] = "(new)";
    struct point fake = {.env = fake_env, .name = fake_name, .tables = (struct point_table *)pt,
                         .n_tables = 1};
    struct base_ctx c = {w, err};
    if ((rc = table_iterate(r, &fake, pt->name, base_add, &c, err))) {
        segment_writer_abort(w);
        return rc;
    }
    struct segment_stats st;
    if ((rc = segment_writer_finish_stats(w, id, &st, err)))
        return rc;
    if (records)
        *records = st.entries;
    if (bytes)
        *bytes = st.entries ? st.table_bytes : 4;
    return 0;
}

/* ---------- capture ---------- */

struct repo_capture {
    struct repo *r;
    char *env;
    int lock_fd, prune_fd;
    struct objstore_lease *lease; /* remote stores: the writer lease (objstore_lease.h) */
    struct point *prev;
    struct catalog_capture *cc;
};

static int open_lock(struct repo *r, const char *name, int *fd, struct dverr *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->lock_dir, name);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (*fd < 0)
        return dverr_set(err, -errno, "%s: %s", path, strerror(errno));
    return 0;
}

/* flock with a bounded wait (polls: flock cannot time out). */
static int lock_wait(int fd, int op, int64_t wait_ms)
{
    int64_t deadline = now_ms() + wait_ms;
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        if (now_ms() >= deadline)
            return -EBUSY;
        usleep(20000);
    }
}

void repo_capture_abort(struct repo_capture *c)
{
    if (!c)
        return;
    catalog_capture_abort(c->cc);
    objstore_lease_release(c->lease);
    point_free(c->prev);
    if (c->prune_fd >= 0)
        close(c->prune_fd);
    if (c->lock_fd >= 0)
        close(c->lock_fd);
    free(c->env);
    free(c);
}

struct rebuild_ctx {
    struct catalog_capture *cc;
    const char *table;
    bool hashes;             /* the capture keeps hashes for this table (no delta link) */
};

static int rebuild_put(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct rebuild_ctx *c = ctx;
    return catalog_capture_put(c->cc, c->table, key, key_len,
                               c->hashes ? repo_line_hash(line, line_len) : 0, line_len, false);
}

/* Replace env's capture state with the records of p (NULL: empty). */
static int rebuild_env_state(struct repo *r, struct catalog *cat, const char *env,
                             const struct point *p, struct dverr *err)
{
    struct catalog_capture *cc = NULL;
    int rc = catalog_capture_begin(cat, env, true, &cc, err);
    if (rc)
        return rc;
    for (size_t i = 0; p && i < p->n_tables && !rc; i++) {
        struct rebuild_ctx c = {cc, p->tables[i].name, !p->tables[i].delta_link};
        rc = table_iterate(r, p, p->tables[i].name, rebuild_put, &c, err);
    }
    if (rc) {
        catalog_capture_abort(cc);
        return rc;
    }
    return catalog_capture_commit(cc, p, err);
}

int repo_capture_begin(struct repo *r, const char *env, struct repo_capture **out,
                       struct dverr *err)
{
    *out = NULL;
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -EINVAL, "environment name \"%.80s\" cannot be stored", env);
    struct catalog *cat = get_cat(r, err);
    if (!cat)
        return -EIO;
    struct repo_capture *c = calloc(1, sizeof *c);
    if (!c || !(c->env = strdup(env))) {
        free(c);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    c->r = r;
    c->lock_fd = c->prune_fd = -1;
    char lname[300];
    snprintf(lname, sizeof lname, "%s.lock", env);
    int rc = open_lock(r, lname, &c->lock_fd, err);
    if (rc)
        goto fail;
    if (flock(c->lock_fd, LOCK_EX | LOCK_NB)) {
        rc = errno == EWOULDBLOCK ? dverr_set(err, -EBUSY, "another capture of %s is running", env)
                                  : dverr_set(err, -errno, "locking %s: %s", env, strerror(errno));
        goto fail;
    }
    if (!r->store->local_dir) {
        /* Other machines may share a remote store: one writer per environment across all of
         * them, through a lease object that expires when its holder dies. */
        char lname2[300], purpose[300];
        snprintf(lname2, sizeof lname2, "locks/%s.lease", env);
        snprintf(purpose, sizeof purpose, "the capture of %s", env);
        if ((rc = objstore_lease_take(r->store, lname2, purpose, 0, &c->lease, err)) ||
            (rc = objstore_lease_wait_free(r->store, "locks/prune.lease", LOCK_WAIT_MS, err)))
            goto fail;
    }
    if ((rc = open_lock(r, "prune.lock", &c->prune_fd, err)))
        goto fail;
    if ((rc = lock_wait(c->prune_fd, LOCK_SH, LOCK_WAIT_MS))) {
        dverr_set(err, rc, "waiting for a prune of the repository to finish: %s", strerror(-rc));
        goto fail;
    }
    struct point_summary *pts = NULL;
    size_t n = 0;
    if ((rc = repo_points(r, env, &pts, &n, err)))
        goto fail;
    char latest[32] = "";
    if (n)
        snprintf(latest, sizeof latest, "%s", pts[n - 1].name);
    point_summaries_free(pts, n);
    if (latest[0] && (rc = repo_point_load(r, env, latest, &c->prev, err)))
        goto fail;
    char state_point[32];
    if ((rc = catalog_state_point(cat, env, state_point, err)))
        goto fail;
    if (strcmp(state_point, latest) != 0) {
        log_info("%s: the capture state is at \"%s\", the latest point is \"%s\": rebuilding it",
                 env, state_point, latest);
        if ((rc = rebuild_env_state(r, cat, env, c->prev, err)))
            goto fail;
    }
    if ((rc = catalog_capture_begin(cat, env, false, &c->cc, err)))
        goto fail;
    *out = c;
    return 0;
fail:
    repo_capture_abort(c);
    return rc;
}

const struct point *repo_capture_previous(struct repo_capture *c)
{
    return c->prev;
}

int repo_capture_state_get(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t *hash, uint64_t *len, bool *found)
{
    return catalog_capture_get(c->cc, table, key, key_len, hash, len, found);
}

int repo_capture_state_put(struct repo_capture *c, const char *table, const char *key,
                           size_t key_len, uint64_t hash, uint64_t len, bool deleted)
{
    return catalog_capture_put(c->cc, table, key, key_len, hash, len, deleted);
}

int repo_capture_state_iterate(struct repo_capture *c, const char *table,
                               int (*fn)(void *ctx, const char *key, uint64_t hash, uint64_t len),
                               void *ctx)
{
    return catalog_capture_iterate(c->cc, table, fn, ctx);
}

void repo_capture_state_done(struct repo_capture *c, const char *table)
{
    catalog_capture_done(c->cc, table);
}

/* Replace long chains by a new base before the manifest names them (the capture need not know).
 * A base that does not reproduce the manifest's counts is not used (logged: the capture's counts
 * are then wrong, and readers will say so). */
static int compact_point(struct repo *r, struct point *p, struct dverr *err)
{
    for (size_t i = 0; i < p->n_tables; i++) {
        struct point_table *pt = &p->tables[i];
        /* the capture's rule (capture.c): a create-only delta (audit) is not compacted for its
         * size, since a new base would copy the whole table and save no reading; the chain cap
         * still applies */
        if (pt->n_segments <= REPO_MAX_CHAIN && !pt->updated && !pt->deleted)
            continue;
        if (!repo_table_should_compact(r, pt))
            continue;
        char id[65];
        uint64_t records = 0, bytes = 0;
        int rc = repo_write_base(r, pt, id, &records, &bytes, err);
        if (rc)
            return rc;
        if (records != pt->records || bytes != pt->bytes) {
            log_error("%s: compaction of %s gave %llu records, %llu bytes where the capture counted "
                      "%llu, %llu; keeping the chain", p->env, pt->name,
                      (unsigned long long)records, (unsigned long long)bytes,
                      (unsigned long long)pt->records, (unsigned long long)pt->bytes);
            continue;
        }
        char *base = strdup(id[0] ? id : "");
        if (!base)
            return dverr_set(err, -ENOMEM, "out of memory");
        for (size_t k = 0; k < pt->n_segments; k++)
            free(pt->segments[k]);
        free(pt->segment_sizes); /* recorded afresh by record_segment_sizes */
        pt->segment_sizes = NULL;
        if (id[0]) {
            pt->segments[0] = base;
            pt->n_segments = 1;
        } else { /* the table is empty now */
            free(base);
            pt->n_segments = 0;
        }
        log_info("%s: compacted %s into one base segment", p->env, pt->name);
    }
    return 0;
}

int repo_capture_commit(struct repo_capture *c, struct point *p, struct dverr *err)
{
    struct repo *r = c->r;
    struct buf doc = BUF_INIT;
    int rc = 0;
    if (!p->env && !(p->env = strdup(c->env))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if (strcmp(p->env, c->env) != 0) {
        rc = dverr_set(err, -EINVAL, "point of %s committed by a capture of %s", p->env, c->env);
        goto out;
    }
    if (!p->kind && !(p->kind = strdup("system"))) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = compact_point(r, p, err)) || (rc = record_segment_sizes(r, p, err)))
        goto out;
    if ((rc = objstore_lease_check(c->lease, err))) /* never publish after losing the lease */
        goto out;
    time_t t = p->taken_at;
    if (c->prev && t <= c->prev->taken_at)
        t = c->prev->taken_at + 1;
    for (int attempt = 0;; attempt++) {
        char name[32], obj[400];
        point_name_from_time(t, name);
        free(p->name);
        if (!(p->name = strdup(name))) {
            rc = dverr_set(err, -ENOMEM, "out of memory");
            goto out;
        }
        p->taken_at = t;
        buf_reset(&doc);
        if ((rc = manifest_render(p, &doc, err)))
            goto out;
        if ((rc = manifest_object_name(p->env, p->name, obj, sizeof obj))) {
            rc = dverr_set(err, rc, "bad point name");
            goto out;
        }
        struct dverr e2 = {0};
        rc = r->store->ops->put_if_absent(r->store->impl, obj, doc.data, doc.len, &e2);
        if (rc == -EEXIST && attempt < 1000) {
            t++;
            continue;
        }
        if (rc) {
            dverr_set(err, rc, "writing the manifest: %s", dverr_msg(&e2));
            goto out;
        }
        break;
    }
    struct dverr ce = {0};
    int crc = catalog_capture_commit(c->cc, p, &ce);
    c->cc = NULL;
    if (crc)
        log_warn("%s/%s is saved but the catalog was not updated (%s); the next capture repairs "
                 "it", p->env, p->name, dverr_msg(&ce));
out:
    buf_release(&doc);
    repo_capture_abort(c);
    return rc;
}

/* ---------- maintenance ---------- */

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
    char obj[400];
    manifest_object_name(env, name, obj, sizeof obj);
    if ((rc = r->store->ops->del(r->store->impl, obj, err)))
        return rc;
    struct dverr ce = {0};
    struct catalog *cat = get_cat(r, &ce);
    if (cat && catalog_point_del(cat, env, name, &ce))
        log_warn("%s", dverr_msg(&ce));
    return 0;
}

void prune_report_release(struct prune_report *rep)
{
    if (!rep)
        return;
    strv_free(rep->removed, rep->n_removed);
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

static int idset_add(struct idset *s, const char *id)
{
    if (!id)
        return 0;
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

static void idset_seal(struct idset *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_id);
}

static bool idset_has(const struct idset *s, const char *id)
{
    return s->n && bsearch(id, s->v, s->n, sizeof *s->v, cmp_id) != NULL;
}

static int point_refs(const struct point *p, struct idset *s)
{
    int rc = 0;
    for (size_t i = 0; i < p->n_tables && !rc; i++) {
        const struct point_table *t = &p->tables[i];
        for (size_t k = 0; k < t->n_segments && !rc; k++)
            rc = idset_add(s, t->segments[k]);
        if (!rc)
            rc = idset_add(s, t->delta);
        if (!rc)
            rc = idset_add(s, t->schema);
    }
    for (size_t i = 0; i < p->n_files && !rc; i++)
        rc = idset_add(s, p->files[i].blob);
    return rc;
}

struct all_manifests {
    struct name_list objs;
};

static int collect_obj(void *ctx, const char *obj, uint64_t size)
{
    struct name_list *l = ctx;
    return name_list_add(l, obj, strlen(obj));
}

/* Remote stores: captures on other machines hold locks/<env>.lease and then wait for
 * locks/prune.lease to be free; prune takes locks/prune.lease and then looks for capture leases,
 * backing off (releasing its own) while any is live. Whichever of the two writes its lease first,
 * the other sees it, so prune never runs beside a capture that may reuse old objects. */
static int prune_lease_take(struct repo *r, struct objstore_lease **out, struct dverr *err)
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

int repo_prune(struct repo *r, time_t now, bool dry_run,
               time_t (*expires_fn)(void *ctx, const struct point *p), void *ctx,
               struct prune_report *rep, struct dverr *err)
{
    memset(rep, 0, sizeof *rep);
    struct name_list manifests = {0}, objects = {0}, removed = {0};
    struct idset refs = {0};
    struct objstore_lease *lease = NULL;
    int lock_fd = -1;
    int rc = open_lock(r, "prune.lock", &lock_fd, err);
    if (rc)
        return rc;
    if ((rc = lock_wait(lock_fd, LOCK_EX, LOCK_WAIT_MS))) {
        dverr_set(err, rc, "waiting for running captures to finish: %s", strerror(-rc));
        goto out;
    }
    if (!r->store->local_dir && (rc = prune_lease_take(r, &lease, err)))
        goto out;
    if (!dry_run)
        clean_tmp(r);
    if ((rc = r->store->ops->list(r->store->impl, "points/", collect_obj, &manifests, err)))
        goto out;
    name_list_sort_unique(&manifests);
    struct catalog *cat = get_cat(r, &(struct dverr){0});
    for (size_t i = 0; i < manifests.n; i++) {
        char env[256], name[64];
        if (!parse_manifest_name(manifests.v[i], env, sizeof env, name, sizeof name))
            continue;
        struct point *p = NULL;
        if ((rc = repo_point_load(r, env, name, &p, err))) {
            /* without its manifest we cannot know what a point needs: delete nothing */
            dverr_set(err, rc, "cannot prune: %s/%s is unreadable", env, name);
            goto out;
        }
        time_t exp = expires_fn ? expires_fn(ctx, p) : p->expires_at;
        if (exp > 0 && exp <= now) {
            char what[400];
            snprintf(what, sizeof what, "%s/%s", env, name);
            if ((rc = name_list_add(&removed, what, strlen(what)))) {
                point_free(p);
                goto out;
            }
            rep->points_removed++;
            if (!dry_run) {
                if ((rc = r->store->ops->del(r->store->impl, manifests.v[i], err))) {
                    point_free(p);
                    goto out;
                }
                struct dverr ce = {0};
                if (cat && catalog_point_del(cat, env, name, &ce))
                    log_warn("%s", dverr_msg(&ce));
            }
        } else if ((rc = point_refs(p, &refs))) {
            point_free(p);
            goto out;
        }
        point_free(p);
    }
    idset_seal(&refs);
    if ((rc = r->store->ops->list(r->store->impl, "objects/", collect_obj, &objects, err)))
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
            rc != -ENOENT)
            goto out;
        rc = 0;
        rep->objects_removed++;
        rep->bytes_removed += size;
    }
out:
    objstore_lease_release(lease);
    if (lock_fd >= 0)
        close(lock_fd);
    strv_free(manifests.v, manifests.n);
    strv_free(objects.v, objects.n);
    free(refs.v);
    rep->removed = removed.v;
    rep->n_removed = removed.n;
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
        rc = segment_verify(s->r->store, id, NULL, &e);
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
    int rc = r->store->ops->list(r->store->impl, "points/", collect_obj, &manifests, err);
    if (rc)
        goto out;
    name_list_sort_unique(&manifests);
    for (size_t i = 0; i < manifests.n && !rc; i++) {
        char env[256], name[64];
        if (!parse_manifest_name(manifests.v[i], env, sizeof env, name, sizeof name)) {
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
        if ((rc = list_point_names(r, envs[i], &names, err)))
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
            rc = rebuild_env_state(r, cat, envs[i], latest, err);
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
