/* repo: the backup repository (repo.h): opening and creating it (plain or encrypted: the config
 * object, the passphrase and key objects), the lock files, restore points (the store's manifests,
 * indexed by the catalog), environment documents, sealed documents and blobs. The rest is in
 * repo_read.c (table and changes readers), repo_capture.c (segment writer glue, captures,
 * compaction) and repo_maint.c (forget, prune, check, catalog rebuild); struct repo, the locks and
 * the commit order are described in repo_int.h.
 * Limits: an environment name as manifest_env_name_ok allows; the catalog path fits PATH_MAX.
 * Threading: struct repo is thread-safe; r->mu guards the catalog pointer (swapped by rebuild),
 * everything else in it is immutable after open. */
#include "backend/repo/repo_int.h"

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

#include "backend/base/json.h"
#include "backend/base/log.h"
#include "backend/repo/blob.h"
#include "backend/repo/catalog.h"
#include "backend/repo/filelist.h"
#include "backend/repo/manifest.h"
#include "backend/repo/segment.h"

struct objstore *repo_store(struct repo *r)
{
    return r->store;
}

struct catalog *repo_catalog_get(struct repo *r, struct dverr *err)
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

int repo_open_store(struct objstore *store, struct crypt *crypt, const char *catalog_path,
                    struct repo **out, struct dverr *err)
{
    *out = NULL;
    struct repo *r = calloc(1, sizeof *r);
    char base[PATH_MAX], p[PATH_MAX];
    int rc = 0;
    if (!r) {
        objstore_free(store);
        crypt_free(crypt);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    r->store = store;
    r->crypt = crypt;
    r->append_only = store->append_only;
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->shared_mu, NULL);
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
    if ((rc = mkdir_p(r->lock_dir, 0700))) {
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
    objstore_sizes_free(r->locked);
    crypt_free(r->crypt);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->shared_mu);
    chunk_tables_release(&r->files_memo);
    for (size_t i = 0; i < sizeof r->shared / sizeof r->shared[0]; i++)
        buf_release(&r->shared[i].doc);
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

/* The config object: {"format":1|2,"kind":"dvsnap-repository","id":ID,"created":T[,
 * "encryption":CRYPT_ALGORITHM,"kdf":"scrypt"]}. */
struct repo_config {
    int format;        /* 1 unencrypted, 2 encrypted */
    char id[40];
};

static int config_parse(const char *loc, const struct buf *doc, struct repo_config *rc_out,
                        struct dverr *err)
{
    struct json_doc *jd = NULL;
    struct json_limits lim = {.max_depth = 4, .max_string = 1024, .max_nodes = 64};
    if (!doc->data || doc->len > 65536 || json_parse(doc->data, doc->len, &lim, &jd, NULL))
        return dverr_set(err, -EIO, "%s: not a dvsnap repository of a known format", loc);
    const struct json_node *root = json_root(jd), *f = json_get(root, "format");
    const char *kind = json_get_str(root, "kind"), *id = json_get_str(root, "id");
    const char *enc = json_get_str(root, "encryption");
    int rc = 0;
    if (!kind || strcmp(kind, "dvsnap-repository") != 0 || !f || f->type != JSON_NUMBER ||
        !id || strlen(id) >= sizeof rc_out->id || strlen(id) < 16) {
        rc = dverr_set(err, -EIO, "%s: not a dvsnap repository of a known format", loc);
    } else if (strcmp(f->str, "1") == 0 && !enc) {
        rc_out->format = 1;
    } else if (strcmp(f->str, "2") == 0 && enc && strcmp(enc, CRYPT_ALGORITHM) == 0) {
        rc_out->format = 2;
    } else {
        rc = dverr_set(err, -EIO, "%s: a dvsnap repository of a format this version does not "
                       "know (format %.10s%s%.60s)", loc, f->str, enc ? ", encryption " : "",
                       enc ? enc : "");
    }
    if (!rc)
        snprintf(rc_out->id, sizeof rc_out->id, "%s", id);
    json_doc_free(jd);
    return rc;
}

int repo_init(const struct config *cfg, bool encrypt, struct dverr *err)
{
    const char *loc = cfg->repository;
    if (!loc || !*loc)
        return dverr_set(err, -EINVAL, "no repository configured");
    if (!encrypt && keys_passphrase_configured(cfg))
        return dverr_set(err, -EINVAL, "a password is configured (password_file or "
                         "password_command): remove it to create an unencrypted repository");
    struct buf pass = BUF_INIT;
    int rc = 0;
    /* a password typed on the terminal is typed twice: a typo would lock the repository */
    if (encrypt && keys_passphrase_configured(cfg))
        rc = keys_passphrase(cfg, "", &pass, err);
    else if (encrypt && (rc = keys_passphrase_new_tty(&pass, err)) == -ENOKEY)
        rc = dverr_set(err, rc, "an encrypted repository needs a password and none is configured "
                       "(and there is no terminal to ask on): set password_file (or "
                       "DVSNAP_PASSWORD_FILE) or password_command, or create an unencrypted one "
                       "with `dvsnap init --insecure-no-encryption`");
    if (rc)
        return rc;
    if (!strstr(loc, "://") || strncmp(loc, "file://", 7) == 0) {
        const char *path = strncmp(loc, "file://", 7) == 0 ? loc + 7 : loc;
        rc = mkdir_p(path, 0700);
        if (rc) {
            keys_passphrase_release(&pass);
            return dverr_set(err, rc, "creating %s: %s", path, strerror(-rc));
        }
        /* private whatever made it: only its owner may read a company's backups */
        if (chmod(path, 0700)) {
            keys_passphrase_release(&pass);
            return dverr_set(err, -errno, "%s: chmod: %s", path, strerror(errno));
        }
    }
    struct objstore *s = NULL;
    struct crypt *crypt = NULL;
    struct buf doc = BUF_INIT;
    char key_id[KEYS_ID_HEX + 1] = "";
    if ((rc = objstore_open(loc, cfg, &s, err)))
        goto out;
    char id[65];
    unsigned char rnd[16];
    if (crypt_random(rnd, sizeof rnd)) {
        rc = dverr_set(err, -EIO, "no random bytes from the system");
        goto out;
    }
    sha256_hex(rnd, sizeof rnd, id);
    char now[32];
    rfc3339_from_time(time(NULL), now);
    buf_printf(&doc, "{\"format\":%d,\"kind\":\"dvsnap-repository\",\"id\":\"%.32s\","
               "\"created\":\"%s\"", encrypt ? 2 : 1, id, now);
    if (encrypt)
        buf_printf(&doc, ",\"encryption\":\"%s\",\"kdf\":\"scrypt\"", CRYPT_ALGORITHM);
    if (buf_addstr(&doc, "}\n")) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    uint64_t size;
    struct dverr ignore = {0};
    if (s->ops->stat(s->impl, "config", &size, &ignore) == 0) {
        rc = dverr_set(err, -EEXIST, "%s already holds a repository", loc);
        goto out;
    }
    if (encrypt) {
        /* the key first: a config without a key could never be opened */
        id[32] = '\0';
        if ((rc = crypt_generate(&crypt))) {
            rc = dverr_set(err, rc, "generating the master key: %s", strerror(-rc));
            goto out;
        }
        if ((rc = keys_add(s, crypt, id, pass.data, pass.len, key_id, err)))
            goto out;
    }
    rc = s->ops->put_if_absent(s->impl, "config", doc.data, doc.len, err);
    if (rc == -EEXIST)
        rc = dverr_set(err, -EEXIST, "%s already holds a repository", loc);
    if (rc) {
        if (key_id[0])
            keys_remove(s, key_id, &ignore);
        goto out;
    }
    char cat[PATH_MAX];
    struct repo *r = NULL;
    if ((rc = catalog_path_for(cfg, s, cat, sizeof cat))) {
        rc = dverr_set(err, rc, "catalog path too long");
        goto out;
    }
    rc = repo_open_store(s, crypt, cat, &r, err);
    s = NULL;
    crypt = NULL;
    repo_free(r);
out:
    keys_passphrase_release(&pass);
    buf_release(&doc);
    crypt_free(crypt);
    objstore_free(s);
    return rc;
}

/* repo_open and repo_open_prune: prune opens the store with the prune credentials and without the
 * append-only guard (it is the one that deletes). */
static int open_as(const struct config *cfg, bool prune, struct repo **out, struct dverr *err)
{
    *out = NULL;
    struct objstore *s = NULL;
    const char *loc = cfg->repository ? cfg->repository : "";
    bool append_only = config_append_only(cfg);
    int lock = config_object_lock(cfg);
    int rc = prune ? objstore_open_prune(loc, cfg, &s, err) : objstore_open(loc, cfg, &s, err);
    if (rc == -ENOENT)
        return dverr_set(err, rc, "no repository at %s; create one with `dvsnap init`", loc);
    if (rc)
        return rc;
    if (lock != CONFIG_LOCK_OFF && s->local_dir) {
        objstore_free(s);
        return dverr_set(err, -EINVAL, "%s: object_lock needs an S3 or Azure repository (a "
                         "directory cannot lock its files)", loc);
    }
    if (append_only && !prune && objstore_append_only(s)) {
        objstore_free(s);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    struct buf doc = BUF_INIT, pass = BUF_INIT;
    struct dverr e2 = {0};
    struct repo_config rcfg = {0};
    struct crypt *crypt = NULL;
    char key_id[KEYS_ID_HEX + 1] = "";
    rc = s->ops->get(s->impl, "config", 0, OBJSTORE_TO_END, &doc, &e2);
    if (rc == -ENOENT)
        rc = dverr_set(err, rc, "no repository at %s; create one with `dvsnap init`", loc);
    else if (rc)
        rc = dverr_set(err, rc, "%s: %s", loc, dverr_msg(&e2));
    else
        rc = config_parse(loc, &doc, &rcfg, err);
    buf_release(&doc);
    if (!rc && rcfg.format == 1 && keys_passphrase_configured(cfg))
        rc = dverr_set(err, -EPERM, "%s is not encrypted, but a password is configured: "
                       "refused (a repository made unencrypted behind your back must not be "
                       "trusted; to use an unencrypted repository, remove password_file and "
                       "password_command)", loc);
    if (!rc && rcfg.format == 2 &&
        !(rc = keys_passphrase(cfg, "repository password: ", &pass, err)))
        rc = keys_unlock(s, rcfg.id, pass.data, pass.len, &crypt, key_id, err);
    keys_passphrase_release(&pass);
    char cat[PATH_MAX];
    if (!rc && (rc = catalog_path_for(cfg, s, cat, sizeof cat)))
        dverr_set(err, rc, "catalog path too long");
    if (rc) {
        crypt_free(crypt);
        objstore_free(s);
        return rc;
    }
    if ((rc = repo_open_store(s, crypt, cat, out, err)))
        return rc;
    snprintf((*out)->repo_id, sizeof (*out)->repo_id, "%s", rcfg.id);
    snprintf((*out)->key_id, sizeof (*out)->key_id, "%s", key_id);
    (*out)->append_only = append_only;
    (*out)->object_lock = lock != CONFIG_LOCK_OFF;
    if ((*out)->object_lock)
        (*out)->locked = objstore_sizes_new(); /* out of memory: no memo, every lock asks */
    return 0;
}

int repo_open(const struct config *cfg, struct repo **out, struct dverr *err)
{
    return open_as(cfg, false, out, err);
}

int repo_open_prune(const struct config *cfg, struct repo **out, struct dverr *err)
{
    return open_as(cfg, true, out, err);
}

bool repo_encrypted(struct repo *r)
{
    return r->crypt != NULL;
}

void repo_describe(struct repo *r, char *out, size_t n)
{
    if (r->crypt)
        snprintf(out, n, "encrypted (%s), opened with key %s", CRYPT_ALGORITHM,
                 r->key_id[0] ? r->key_id : "(given)");
    else
        snprintf(out, n, "not encrypted");
}

/* ---------- lock files ---------- */

int repo_lock_open(struct repo *r, const char *name, int *fd, struct dverr *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", r->lock_dir, name);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (*fd < 0)
        return dverr_set(err, -errno, "%s: %s", path, strerror(errno));
    return 0;
}

/* flock with a bounded wait (polls: flock cannot time out). */
int repo_lock_wait(int fd, int op, int64_t wait_ms)
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

/* ---------- points ---------- */

int name_list_add(struct name_list *l, const char *s, size_t len)
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

int name_list_collect(void *ctx, const char *obj, uint64_t size)
{
    (void)size;
    return name_list_add(ctx, obj, strlen(obj));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void name_list_sort_unique(struct name_list *l)
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
bool repo_manifest_name_parse(const char *obj, char *env, size_t en, char *name, size_t nn)
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
    if (!repo_manifest_name_parse(obj, env, sizeof env, name, sizeof name))
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
    /* envs/<env>.json, or a version envs/<env>/<time>-<tag>.json (append-only) */
    const char *slash = strchr(obj + 5, '/');
    size_t len = slash ? (size_t)(slash - (obj + 5)) : n - 10;
    char env[256];
    if (len >= sizeof env)
        return 0;
    memcpy(env, obj + 5, len);
    env[len] = '\0';
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

int repo_point_names(struct repo *r, const char *env, struct name_list *out, struct dverr *err)
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

/* One shared object of a point (slot 0 tables, 1 files document or index, 2 + k the file list's
 * chunk k) into out: from the memo when it is the last one read, else read as a blob (hash
 * checked) and kept in the memo. */
static int shared_get(struct repo *r, int slot, const char *id, struct buf *out,
                      struct dverr *err)
{
    pthread_mutex_lock(&r->shared_mu);
    bool hit = strcmp(r->shared[slot].id, id) == 0;
    int rc = hit ? buf_add(out, r->shared[slot].doc.data, r->shared[slot].doc.len) : 0;
    pthread_mutex_unlock(&r->shared_mu);
    if (hit)
        return rc ? dverr_set(err, rc, "out of memory") : 0;
    if ((rc = repo_blob_get(r, id, out, err)))
        return rc;
    if (out->len > MANIFEST_MAX_BYTES)
        return dverr_set(err, -EIO, "shared object %.16s is too large", id);
    pthread_mutex_lock(&r->shared_mu);
    buf_reset(&r->shared[slot].doc);
    if (buf_add(&r->shared[slot].doc, out->data, out->len) == 0)
        snprintf(r->shared[slot].id, sizeof r->shared[slot].id, "%s", id);
    else
        r->shared[slot].id[0] = '\0';
    pthread_mutex_unlock(&r->shared_mu);
    return 0;
}

/* A format-3 point's file list: its index (the bytes in index), then each chunk it names, read
 * as a blob (hash checked; the first ones through the memo) into p->files, sized from the
 * index; with later, the index only (files_later, with each chunk's count). */
static int load_file_chunks(struct repo *r, struct point *p, const char *index, size_t len,
                            bool later, struct dverr *err)
{
    size_t *counts = NULL, total = 0;
    struct buf chunk = BUF_INIT;
    int rc = filelist_parse_index(index, len, &p->files_chunks, &counts, &p->n_files_chunks,
                                  &total, err);
    if (!rc && later) {
        p->files_later = true;
        p->files_listed = total;
        p->files_chunk_counts = counts; /* repo_files_chunk_load reads a chunk with its count */
        return 0;
    }
    if (!rc && !(p->files = calloc(total ? total : 1, sizeof *p->files)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    for (size_t k = 0; !rc && k < p->n_files_chunks; k++) {
        buf_reset(&chunk);
        if ((rc = k < REPO_CHUNK_MEMO ? shared_get(r, 2 + (int)k, p->files_chunks[k], &chunk, err)
                                      : repo_blob_get(r, p->files_chunks[k], &chunk, err)))
            break;
        rc = manifest_parse_files_chunk(p, counts[k], chunk.data ? chunk.data : "", chunk.len,
                                        err);
    }
    buf_release(&chunk);
    free(counts);
    return rc;
}

int repo_files_chunk_load(struct repo *r, const struct point *p, size_t k, size_t count,
                          struct point **out, struct dverr *err)
{
    *out = NULL;
    struct buf chunk = BUF_INIT;
    struct point *c = calloc(1, sizeof *c);
    int rc = 0;
    if (!c || (p->env && !(c->env = strdup(p->env))) || (p->name && !(c->name = strdup(p->name))) ||
        !(c->files = calloc(count ? count : 1, sizeof *c->files)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
    if (!rc && k >= p->n_files_chunks)
        rc = dverr_set(err, -EINVAL, "no chunk %zu in the file list of %s/%s", k, p->env, p->name);
    if (!rc && !(rc = repo_blob_get(r, p->files_chunks[k], &chunk, err)))
        rc = manifest_parse_files_chunk(c, count, chunk.data ? chunk.data : "", chunk.len, err);
    buf_release(&chunk);
    if (rc) {
        point_free(c);
        return rc == -ENOENT ? dverr_set(err, -EIO, "damaged point %s/%s: %s", p->env, p->name,
                                         dverr_msg(err))
                             : rc;
    }
    *out = c;
    return 0;
}

/* Complete a format-2 or 3 point with its tables document and files document or file list
 * (manifest.h). */
static int load_shared(struct repo *r, struct point *p, unsigned flags, struct dverr *err)
{
    struct buf t = BUF_INIT, f = BUF_INIT;
    struct dverr e2 = {0};
    int rc = shared_get(r, 0, p->tables_object, &t, &e2);
    if (!rc)
        rc = shared_get(r, 1, p->files_object, &f, &e2);
    if (!rc)
        rc = manifest_parse_shared(p, t.data ? t.data : "", t.len, f.data ? f.data : "", f.len,
                                   &e2);
    if (!rc && p->files_chunked)
        rc = load_file_chunks(r, p, f.data ? f.data : "", f.len,
                              (flags & REPO_LOAD_FILES_LATER) != 0, &e2);
    if (rc)
        rc = dverr_set(err, rc == -ENOENT ? -EIO : rc, "damaged point %s/%s: %s", p->env,
                       p->name, dverr_msg(&e2));
    buf_release(&t);
    buf_release(&f);
    return rc;
}

int repo_point_load(struct repo *r, const char *env, const char *name, struct point **out,
                    struct dverr *err)
{
    return repo_point_load_flags(r, env, name, 0, out, err);
}

int repo_point_load_flags(struct repo *r, const char *env, const char *name, unsigned flags,
                          struct point **out, struct dverr *err)
{
    *out = NULL;
    char obj[400];
    if (manifest_object_name(env, name, obj, sizeof obj))
        return dverr_set(err, -ENOENT, "no point \"%.40s\" in \"%.80s\"", name ? name : "",
                         env ? env : "");
    struct buf b = BUF_INIT;
    struct dverr e2 = {0};
    int rc = repo_doc_get(r, "manifest", obj, crypt_sealed_size(MANIFEST_MAX_BYTES), &b, &e2);
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
    if (p->tables_object && (rc = load_shared(r, p, flags, err))) {
        point_free(p);
        return rc;
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
    s->anomaly = p->anomaly_json != NULL;
}

int repo_points_mark_held(struct repo *r, const char *env, struct point_summary *v, size_t n,
                          struct dverr *err)
{
    struct name_list held;
    int rc = repo_hold_names(r, env, &held, err);
    if (rc)
        return rc;
    for (size_t i = 0, k = 0; i < n && k < held.n;) {
        int c = strcmp(v[i].name, held.v[k]);
        if (c == 0)
            v[i].held = true;
        if (c <= 0)
            i++;
        if (c >= 0)
            k++;
    }
    strv_free(held.v, held.n);
    return 0;
}

/* Points straight from the manifests (no catalog). */
static int points_from_manifests(struct repo *r, const char *env, struct point_summary **out,
                                 size_t *n, struct dverr *err)
{
    struct name_list names = {0};
    int rc = repo_point_names(r, env, &names, err);
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
    struct catalog *cat = repo_catalog_get(r, &ce);
    if (!cat)
        return points_from_manifests(r, env, out, n, err);
    struct name_list names = {0};
    struct point_summary *have = NULL;
    size_t n_have = 0;
    int rc = repo_point_names(r, env, &names, err);
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
    if (rc && rc != -ENOMEM && rc != -ENOENT) {
        /* the catalog cannot follow the store (a full disk, damage): the manifests still say */
        log_warn("%s; listing points from their manifests", dverr_msg(err));
        dverr_clear(err);
        point_summaries_free(have, n_have);
        return points_from_manifests(r, env, out, n, err);
    }
    if (rc) {
        point_summaries_free(have, n_have);
        return rc;
    }
    *out = have;
    *n = n_have;
    return 0;
}

/* Environment documents. envs/<env>.json is rewritten by each capture; an append-only repository
 * instead adds versions envs/<env>/<YYYY-MM-DDTHHMMSSZ>-<8 hex>.json (put_if_absent), the newest
 * by name being the document (prune removes the older ones: repo_env_doc_versions). A reader
 * looks for versions first, so it needs to know nothing of how the repository is configured. */
static int collect_version(void *ctx, const char *obj, uint64_t size)
{
    (void)size;
    size_t n = strlen(obj);
    return n > 5 && strcmp(obj + n - 5, ".json") == 0 ? name_list_add(ctx, obj, n) : 0;
}

int repo_env_doc_versions(struct repo *r, const char *env, struct name_list *out,
                          struct dverr *err)
{
    char prefix[300];
    snprintf(prefix, sizeof prefix, "envs/%s/", env);
    struct name_list v = {0};
    int rc = r->store->ops->list(r->store->impl, prefix, collect_version, &v, err);
    if (rc) {
        strv_free(v.v, v.n);
        return rc == -ENOMEM ? dverr_set(err, rc, "out of memory") : rc;
    }
    name_list_sort_unique(&v);
    *out = v;
    return 0;
}

/* The object that holds env's document now: the newest version, else envs/<env>.json. */
static int env_doc_object(struct repo *r, const char *env, char *obj, size_t n,
                          struct dverr *err)
{
    struct name_list v = {0};
    int rc = repo_env_doc_versions(r, env, &v, err);
    if (rc)
        return rc;
    if (v.n)
        snprintf(obj, n, "%s", v.v[v.n - 1]);
    else
        snprintf(obj, n, "envs/%s.json", env);
    strv_free(v.v, v.n);
    return 0;
}

int repo_env_doc(struct repo *r, const char *env, struct buf *out, struct dverr *err)
{
    char obj[400];
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -ENOENT, "no environment \"%.80s\"", env);
    int rc = env_doc_object(r, env, obj, sizeof obj, err);
    if (rc)
        return rc;
    return repo_doc_get(r, "envdoc", obj, UINT64_MAX, out, err);
}

/* Append-only: a new version unless the newest one says the same. */
static int env_doc_add_version(struct repo *r, const char *env, const char *json,
                               struct dverr *err)
{
    struct buf now = BUF_INIT;
    struct dverr ignore = {0};
    int rc = repo_env_doc(r, env, &now, &ignore);
    bool same = rc == 0 && now.len == strlen(json) && memcmp(now.data, json, now.len) == 0;
    buf_release(&now);
    if (same)
        return 0;
    struct buf sealed = BUF_INIT;
    rc = -EEXIST;
    for (int attempt = 0; attempt < 4 && rc == -EEXIST; attempt++) {
        char obj[400], stamp[32], tag[9];
        unsigned char rnd[4];
        if (crypt_random(rnd, sizeof rnd)) {
            rc = dverr_set(err, -EIO, "no randomness for an environment document's name");
            break;
        }
        hex_encode(rnd, sizeof rnd, tag);
        point_name_from_time(time(NULL), stamp); /* as points are named */
        snprintf(obj, sizeof obj, "envs/%s/%s-%s.json", env, stamp, tag);
        buf_reset(&sealed);
        if ((rc = repo_doc_seal(r, "envdoc", obj, json, strlen(json), &sealed, err)))
            break;
        rc = r->store->ops->put_if_absent(r->store->impl, obj, sealed.data, sealed.len, err);
    }
    buf_release(&sealed);
    return rc;
}

int repo_env_doc_put(struct repo *r, const char *env, const char *json, struct dverr *err)
{
    char obj[300];
    if (!manifest_env_name_ok(env))
        return dverr_set(err, -EINVAL, "environment name \"%.80s\" cannot be stored", env);
    if (r->append_only)
        return env_doc_add_version(r, env, json, err);
    snprintf(obj, sizeof obj, "envs/%s.json", env);
    return repo_doc_put(r, "envdoc", obj, json, strlen(json), err);
}

/* ---------- sealed documents ---------- */

int repo_doc_seal(struct repo *r, const char *kind, const char *obj, const void *data, size_t len,
                  struct buf *out, struct dverr *err)
{
    if (!r->crypt)
        return buf_add(out, data, len) ? dverr_set(err, -ENOMEM, "out of memory") : 0;
    char identity[512];
    snprintf(identity, sizeof identity, "%s:%s", kind, obj);
    int rc = crypt_seal(r->crypt, identity, data, len, out);
    return rc ? dverr_set(err, rc, "sealing %s: %s", obj, strerror(-rc)) : 0;
}

int repo_doc_open(struct repo *r, const char *kind, const char *obj, const struct buf *stored,
                  struct buf *out, struct dverr *err)
{
    if (!r->crypt)
        return buf_add(out, stored->data ? stored->data : "", stored->len)
                   ? dverr_set(err, -ENOMEM, "out of memory") : 0;
    char identity[512];
    snprintf(identity, sizeof identity, "%s:%s", kind, obj);
    int rc = crypt_unseal(r->crypt, identity, stored->data ? stored->data : "", stored->len, out);
    if (rc == -EBADMSG)
        return dverr_set(err, -EIO, "%s is damaged: it does not authenticate (changed, truncated, "
                         "or another object under its name)", obj);
    return rc ? dverr_set(err, rc, "opening %s: %s", obj, strerror(-rc)) : 0;
}

int repo_doc_put(struct repo *r, const char *kind, const char *obj, const void *data, size_t len,
                 struct dverr *err)
{
    struct buf sealed = BUF_INIT;
    int rc = repo_doc_seal(r, kind, obj, data, len, &sealed, err);
    if (!rc)
        rc = r->store->ops->put(r->store->impl, obj, sealed.data, sealed.len, err);
    buf_release(&sealed);
    return rc;
}

int repo_doc_get(struct repo *r, const char *kind, const char *obj, uint64_t max_stored,
                 struct buf *out, struct dverr *err)
{
    struct buf stored = BUF_INIT;
    int rc = r->store->ops->get(r->store->impl, obj, 0, OBJSTORE_TO_END, &stored, err);
    if (!rc && stored.len > max_stored)
        rc = dverr_set(err, -EIO, "%s is too large", obj);
    if (!rc)
        rc = repo_doc_open(r, kind, obj, &stored, out, err);
    buf_release(&stored);
    return rc;
}

/* ---------- blobs ---------- */

int repo_blob_put(struct repo *r, const void *data, size_t len, char id[65], struct dverr *err)
{
    return blob_put(r->store, r->crypt, data, len, id, err);
}

void repo_blob_id(struct repo *r, const void *data, size_t len, char id[65])
{
    crypt_id(r->crypt, data, len, id);
}

struct crypt_hash *repo_blob_id_stream(struct repo *r)
{
    return crypt_hash_new(r->crypt);
}

int repo_blob_get(struct repo *r, const char *id, struct buf *out, struct dverr *err)
{
    return blob_get(r->store, r->crypt, id, BLOB_SIZE_UNKNOWN, REPO_BLOB_MAX, out, err);
}
