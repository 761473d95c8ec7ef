/* restore: the engine behind `.restore` and `dvsnap restore` (restore.h; DESIGN.md 5, 6, 9).
 *
 * restore_validate checks every rule with reads only (the point, the admin API's view of both
 * environments, the tenant's capacity) and refuses before anything is written. restore_run then:
 *   1. takes a safety backup of the target (a manual capture labelled pre-restore-<op id>) when
 *      the target is backed up; that fresh point is also the target's current state for the
 *      comparison (no second full read); otherwise (dry-run, target not selected in the config)
 *      the affected tables are read in full from the target;
 *   2. compares point and target per table by primary key and normalised content
 *      (restore_int.h); intersect (N:N) tables by their (entity1 id, entity2 id) pairs;
 *   3. writes only the difference as one stream of $batch requests of up to 1000 parts with
 *      continue-on-error, across tables (so a difference of k records costs about k/1000
 *      requests): upserts (PATCH by key, idempotent) with tables ordered so referenced tables
 *      come first, lookups to records not yet created deferred to a second pass; then N:N
 *      associations ($ref); then deletes, referencing tables first. Every part's status is read;
 *      failed parts are retried (3 rounds, backing off); what still fails is counted per table;
 *   4. uploads file columns (dv_file_upload), sets the target to administration mode, and
 *      records the outcome.
 * A rerun after a kill or a network loss recomputes the difference, so it converges without
 * duplicates (creates are upserts by the point's key). Throttling (429 + Retry-After) and
 * transient failures are retried by the transport; a $batch that still fails is sent again
 * (its parts are idempotent) before the restore gives up.
 *
 * Memory: per affected table a key map of the target's keys (key + 16-byte digest, about 80 bytes
 * a record); record lines are streamed from the repository twice (compare, write) and never held.
 * Threading: one restore runs on the caller's thread; progress is called from it. */
#include "backend/engine/restore.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "backend/engine/capture.h"
#include "backend/base/log.h"
#include "backend/engine/policy.h"
#include "backend/engine/restore_int.h"

#define BATCH_MAX 1000
#define BATCH_MAX_BYTES (16u << 20) /* notes with big attachments: keep a $batch body bounded */
#define RETRY_ROUNDS 3
#define STRIP_ROUNDS 8 /* rounds that only drop lookups to records the target lacks */
#define FIRST_KEYS 5

enum part_kind { K_CREATE, K_UPDATE, K_DELETE, K_BIND, K_ASSOC, K_DISASSOC, K_FILEDEL };

struct rtab {
    const char *name;                 /* logical name (the point's) */
    const struct dv_table *def;       /* the target's definition; NULL when it lacks the table */
    const struct dv_many_to_many *mm; /* intersect tables: their relationship */
    const struct dv_table *mm1, *mm2; /* both sides of mm */
    struct restore_table_outcome *out;
    struct rmap map;                  /* key -> target digest and action */
    struct strset skipped;            /* fields we cannot write */
    struct strset keys[3];            /* dry-run: first keys to create, update, delete */
    bool active;                      /* compared and written */
    bool written;                     /* its upserts are all queued */
    bool has_files;                   /* has File/Image columns */
    uint64_t n_create, n_update, n_delete;
};

struct part {
    const char *method;
    char *path, *body;
    struct rtab *tab;
    enum part_kind kind;
    int status;
    char *error;
};

struct rctx {
    struct dv_client *dv;
    struct repo *repo;
    const struct config *cfg;
    const struct restore_request *req;
    struct point *point;              /* the source point */
    struct point *safety;             /* the target's safety point, or NULL */
    struct dv_env source, target;
    struct dv_table *defs;
    size_t n_defs;
    struct rtab *tabs;
    size_t n_tabs;
    size_t *order;                    /* indices of tabs, referenced tables first */
    size_t n_order;
    struct rmap files;                /* "table\x1fkey\x1fcolumn" -> point_file (source) */
    struct rmap tfiles;               /* same for the safety point */
    struct restore_outcome *out;
    void (*progress)(void *ctx, const struct restore_outcome *o);
    void *pctx;
    atomic_int *cancel;
    struct dverr *err;
    struct dv_stats stats0;
    struct part batch[BATCH_MAX];
    size_t n_batch, batch_bytes;
    struct part *retry;
    size_t n_retry, cap_retry;
    size_t binds_dropped;             /* parts sent again without a lookup, this round */
    int64_t last_progress;
    /* per-record context for callbacks */
    struct rtab *cur;
    const char *cur_key;
    size_t cur_key_len;
    struct rmap_entry *cur_entry;
    char *api_base;                   /* <api_url>/api/data/v9.2/ */
    bool rewrite_all;                 /* benchmark baseline: write every record (naive restore) */
    bool no_batch;                    /* the target answered $batch with 501: one request a part */
};

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static bool cancelled(const struct rctx *c)
{
    return c->cancel && atomic_load(c->cancel);
}

static void set_state(struct rctx *c, const char *state)
{
    snprintf(c->out->state, sizeof(c->out->state), "%s", state);
    if (c->progress)
        c->progress(c->pctx, c->out);
}

static void report(struct rctx *c, bool force)
{
    if (!c->progress)
        return;
    int64_t now = now_ms();
    if (!force && now - c->last_progress < 250)
        return;
    c->last_progress = now;
    struct dv_stats s;
    dv_client_stats(c->dv, &s);
    c->out->requests = s.requests - c->stats0.requests;
    c->progress(c->pctx, c->out);
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

/* ---------------------------------------------------------------- environments */

static void env_from_point(const struct point *p, struct dv_env *env)
{
    memset(env, 0, sizeof(*env));
    env->unique_name = xstrdup(p->env);
    if (!p->env_json)
        return;
    struct json_doc *doc = NULL;
    if (json_parse(p->env_json, strlen(p->env_json), NULL, &doc, NULL))
        return;
    const struct json_node *r = json_root(doc);
    const struct json_node *props = json_get(r, "properties");
    const char *s;
    if ((s = json_get_str(r, "location")))
        env->geo = xstrdup(s);
    if (props && (s = json_get_str(props, "azureRegion")))
        env->region = xstrdup(s);
    if (props && (s = json_get_str(props, "environmentSku")))
        env->sku = xstrdup(s);
    if (props && (s = json_get_str(props, "tenantId")))
        env->tenant_id = xstrdup(s);
    json_doc_free(doc);
}

static bool table_in_point(const struct point *p, const char *name)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (!strcmp(p->tables[i].name, name))
            return true;
    return false;
}

/* Every rule, reads only. Fills c->point, c->source, c->target. */
static int validate(struct rctx *c)
{
    const struct restore_request *req = c->req;
    struct dverr *err = c->err;
    int rc;
    if (!req->source_env || !req->point || !req->target || !*req->target)
        return dverr_set(err, -EINVAL, "restore request: source environment, point and target "
                                       "are required");
    rc = repo_point_load(c->repo, req->source_env, req->point, &c->point, err);
    if (rc == -ENOENT)
        return dverr_set(err, -EINVAL, "%s has no restore point %s", req->source_env,
                         req->point);
    if (rc)
        return rc;
    if (req->tables) {
        for (char **t = req->tables; *t; t++)
            if (!table_in_point(c->point, *t))
                return dverr_set(err, -EINVAL, "unknown table '%s': the point %s/%s has no such "
                                               "table", *t, req->source_env, req->point);
    }
    rc = dv_env_get(c->dv, req->target, &c->target, err);
    if (rc == -ENOENT) {
        dverr_clear(err);
        return dverr_set(err, -EINVAL, "unknown target environment '%s'", req->target);
    }
    if (rc)
        return rc;
    struct dverr tmp = {0};
    if (dv_env_get(c->dv, req->source_env, &c->source, &tmp))
        env_from_point(c->point, &c->source);
    int64_t free_mb = 0;
    const char *tenant = c->target.tenant_id ? c->target.tenant_id : c->source.tenant_id;
    rc = dv_tenant_free_capacity_mb(c->dv, tenant ? tenant : "", &free_mb, err);
    if (rc)
        return rc;
    /* a dry run writes nothing, so it needs no confirmation; every other rule still applies so
     * that it says whether the real restore would be allowed */
    const char *confirm = req->dry_run && !req->confirm ? c->target.unique_name : req->confirm;
    rc = policy_restore_allowed(&c->source, &c->target, free_mb, confirm, req->include_audit,
                                err);
    return rc;
}

int restore_validate(struct dv_client *dv, struct repo *repo, const struct restore_request *req,
                     struct dverr *err)
{
    struct rctx c;
    memset(&c, 0, sizeof(c));
    c.dv = dv;
    c.repo = repo;
    c.req = req;
    c.err = err;
    int rc = validate(&c);
    point_free(c.point);
    dv_env_release(&c.source);
    dv_env_release(&c.target);
    return rc;
}

/* ---------------------------------------------------------------- files */

static void file_key(struct buf *b, const char *table, const char *key, size_t kl,
                     const char *column)
{
    buf_reset(b);
    buf_addstr(b, table);
    buf_addch(b, '\x1f');
    buf_add(b, key, kl);
    buf_addch(b, '\x1f');
    buf_addstr(b, column);
}

static int index_files(struct rmap *m, const struct point *p)
{
    struct buf k = BUF_INIT;
    for (size_t i = 0; p && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        if (!f->table || !f->record_id || !f->column || !f->blob)
            continue;
        file_key(&k, f->table, f->record_id, strlen(f->record_id), f->column);
        struct rmap_entry *e = rmap_put(m, k.data, k.len, NULL);
        if (!e) {
            buf_release(&k);
            return -ENOMEM;
        }
        e->ptr = (void *)f;
    }
    buf_release(&k);
    return 0;
}

static const struct point_file *find_file(const struct rmap *m, const char *table,
                                          const char *key, size_t kl, const char *column)
{
    struct buf k = BUF_INIT;
    file_key(&k, table, key, kl, column);
    struct rmap_entry *e = rmap_get(m, k.data, k.len);
    buf_release(&k);
    return e ? e->ptr : NULL;
}

struct digest_ctx {
    struct rctx *c;
    const struct rmap *files;  /* the point's files, or NULL when reading the live target */
    const char *table;
    const char *key;
    size_t key_len;
    const char *entity_set;    /* live reads: download file columns from here */
};

static int dl_hash(void *ctx, const void *data, size_t len)
{
    sha256_stream_update(ctx, data, len);
    return 0;
}

static int file_digest(void *ctx, const char *column, const struct json_node *value, char hex[65])
{
    struct digest_ctx *d = ctx;
    if (d->files) {
        const struct point_file *f = find_file(d->files, d->table, d->key, d->key_len, column);
        if (f) {
            snprintf(hex, 65, "%s", f->blob);
            return 0;
        }
    }
    if (!value || value->type != JSON_STRING)
        return 1;
    if (!strcmp(column, "documentbody")) {
        struct buf raw = BUF_INIT;
        if (base64_decode(value->str, value->str_len, &raw)) {
            buf_release(&raw);
            sha256_hex(value->str, value->str_len, hex);
            return 0;
        }
        sha256_hex(raw.data ? raw.data : "", raw.len, hex);
        buf_release(&raw);
        return 0;
    }
    if (d->files)
        return 1; /* a file id without bytes in the point: nothing to restore */
    /* the live target: hash its bytes */
    struct sha256_stream *s = sha256_stream_new();
    char *name = NULL;
    char id[256];
    snprintf(id, sizeof(id), "%.*s", (int)d->key_len, d->key);
    int rc = dv_file_download(d->c->dv, &d->c->target, d->entity_set, id, column, dl_hash, s,
                              &name, d->c->err);
    free(name);
    sha256_stream_finish(s, hex);
    if (rc == -ENOENT) {
        dverr_clear(d->c->err);
        return 1;
    }
    return rc;
}

/* ---------------------------------------------------------------- comparison */

/* Dry-run delete keys come from the key map in hash order: keep the FIRST_KEYS smallest. */
static void keep_smallest(struct strset *s, const char *key, size_t kl)
{
    if (s->n < FIRST_KEYS) {
        strset_add(s, key, kl);
    } else {
        size_t max = 0;
        for (size_t i = 1; i < s->n; i++)
            if (strcmp(s->items[i], s->items[max]) > 0)
                max = i;
        if (strlen(s->items[max]) == kl && !memcmp(s->items[max], key, kl))
            return;
        struct buf k = BUF_INIT;
        buf_add(&k, key, kl);
        if (k.data && strcmp(k.data, s->items[max]) < 0) {
            free(s->items[max]);
            s->items[max] = buf_detach(&k);
        }
        buf_release(&k);
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}


static int intersect_key(const struct rtab *t, const struct json_node *rec, struct buf *k)
{
    const char *a = json_get_str(rec, t->mm->entity1_attr);
    const char *b = json_get_str(rec, t->mm->entity2_attr);
    if (!a || !b)
        return -EINVAL;
    buf_reset(k);
    for (const char *p = a; *p; p++)
        buf_addch(k, (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p));
    buf_addch(k, '|');
    for (const char *p = b; *p; p++)
        buf_addch(k, (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p));
    return 0;
}

/* One record of either side into t->map. */
static int index_record(struct rctx *c, struct rtab *t, const struct json_node *rec,
                        const char *key, size_t kl, const struct rmap *files, bool target_side)
{
    struct buf norm = BUF_INIT, ik = BUF_INIT;
    int rc = 0;
    uint8_t dg[16] = {0};
    if (t->mm) {
        if (intersect_key(t, rec, &ik)) {
            t->out->skipped++;
            goto out;
        }
        key = ik.data;
        kl = ik.len;
    } else {
        struct digest_ctx d = {c, files, t->name, key, kl, t->def->entity_set};
        rc = restore_normalize(t->def, rec, file_digest, &d, &norm,
                               target_side ? NULL : &t->skipped);
        if (rc)
            goto out;
        restore_digest(norm.data, norm.len, dg);
    }
    struct rmap_entry *e = rmap_put(&t->map, key, kl, NULL);
    if (!e) {
        rc = -ENOMEM;
        goto out;
    }
    if (target_side) {
        e->flags |= RMAP_IN_TARGET;
        memcpy(e->digest, dg, 16);
    } else {
        e->flags |= RMAP_IN_POINT;
        if (!(e->flags & RMAP_IN_TARGET)) {
            e->action = ACT_CREATE;
            t->n_create++;
        } else if (memcmp(e->digest, dg, 16) != 0 || c->rewrite_all) {
            e->action = ACT_UPDATE;
            t->n_update++;
        } else {
            e->action = ACT_UNCHANGED;
            t->out->unchanged++;
        }
        if (e->action != ACT_UNCHANGED && c->req->dry_run) {
            struct strset *s = &t->keys[e->action == ACT_CREATE ? 0 : 1];
            if (s->n < FIRST_KEYS)
                strset_add(s, key, kl);
        }
    }
out:
    buf_release(&norm);
    buf_release(&ik);
    return rc;
}

struct line_ctx {
    struct rctx *c;
    struct rtab *t;
    const struct rmap *files;
    bool target_side;
};

static int line_cb(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct line_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, l->c->err);
    if (rc)
        return rc;
    rc = index_record(l->c, l->t, json_root(doc), key, key_len, l->files, l->target_side);
    json_doc_free(doc);
    return rc;
}

static int read_cb(void *ctx, const struct json_node *rec)
{
    struct line_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    const char *key = json_get_str(rec, l->t->def->primary_id);
    if (!key)
        return 0;
    return index_record(l->c, l->t, rec, key, strlen(key), NULL, true);
}

static int read_deleted_cb(void *ctx, const char *id)
{
    return 0;
}

static int compare_table(struct rctx *c, struct rtab *t)
{
    int rc;
    struct line_ctx l = {c, t, NULL, true};
    /* the target side: the safety point when it has the table, else a full read */
    if (c->safety && table_in_point(c->safety, t->name)) {
        l.files = &c->tfiles;
        rc = table_iterate(c->repo, c->safety, t->name, line_cb, &l, c->err);
    } else {
        struct dv_read_cb cb = {read_cb, read_deleted_cb, &l};
        char *link = NULL;
        struct dv_read_stats st = {0};
        rc = dv_read_table(c->dv, &c->target, t->def, NULL, &cb, &link, &st, c->err);
        free(link);
    }
    if (rc)
        return rc;
    l.files = &c->files;
    l.target_side = false;
    rc = table_iterate(c->repo, c->point, t->name, line_cb, &l, c->err);
    if (rc)
        return rc;
    for (size_t i = 0; i < t->map.cap; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (e->key && (e->flags & RMAP_IN_TARGET) && !(e->flags & RMAP_IN_POINT)) {
            e->action = ACT_DELETE;
            t->n_delete++;
            if (c->req->dry_run)
                keep_smallest(&t->keys[2], e->key, e->key_len);
        }
    }
    if (c->req->dry_run || t->mm) {
        t->out->created = t->mm ? 0 : t->n_create;
        t->out->updated = t->mm ? 0 : t->n_update;
        t->out->deleted = t->mm ? 0 : t->n_delete;
        if (t->mm && c->req->dry_run) {
            t->out->associated = t->n_create;
            t->out->disassociated = t->n_delete;
        }
    }
    if (c->req->dry_run) {
        struct buf j = BUF_INIT;
        if (t->keys[2].n)
            qsort(t->keys[2].items, t->keys[2].n, sizeof(char *), cmp_str);
        static const char *const kinds[3] = {"create", "update", "delete"};
        buf_addch(&j, '{');
        for (int k = 0; k < 3; k++) {
            buf_printf(&j, "%s\"%s\":[", k ? "," : "", kinds[k]);
            for (size_t i = 0; i < t->keys[k].n; i++) {
                if (i)
                    buf_addch(&j, ',');
                buf_add_json_string(&j, t->keys[k].items[i], strlen(t->keys[k].items[i]));
            }
            buf_addch(&j, ']');
        }
        buf_addch(&j, '}');
        t->out->first_keys_json = buf_detach(&j);
    }
    return 0;
}

/* ---------------------------------------------------------------- batches */

static void part_release(struct part *p)
{
    free(p->path);
    free(p->body);
    free(p->error);
    memset(p, 0, sizeof(*p));
}

static void part_done(struct rctx *c, struct part *p)
{
    struct restore_table_outcome *o = p->tab->out;
    switch (p->kind) {
    case K_CREATE: o->created++; c->out->records_written++; break;
    case K_UPDATE: o->updated++; c->out->records_written++; break;
    case K_DELETE: o->deleted++; c->out->records_written++; break;
    case K_ASSOC: o->associated++; break;
    case K_DISASSOC: o->disassociated++; break;
    case K_FILEDEL:
        if (p->status < 300)
            o->files++;
        break;
    case K_BIND: break;
    }
}

static bool part_ok(const struct part *p, const char *response)
{
    if (p->status >= 200 && p->status < 300)
        return true;
    /* a pair associated by an earlier attempt of the same batch (sent again after a lost
     * response) */
    if (p->kind == K_ASSOC && p->status >= 400 && p->status < 500 && response &&
        (strcasestr(response, "duplicate") || strcasestr(response, "already exists")))
        return true;
    /* already gone: the goal of a delete or disassociate is met */
    return p->status == 404 &&
           (p->kind == K_DELETE || p->kind == K_DISASSOC || p->kind == K_FILEDEL);
}

/* A part refused with 404 "<table> With Id = <id> Does Not Exist" because one of its lookups
 * names a record the target lacks (a table that was not restored, or a record deleted there):
 * drop the @odata.bind members that point at <id>, so the record is written without that lookup
 * (and the outcome says so) instead of failing. Returns how many members were dropped. */
static size_t drop_missing_binds(struct part *p, const char *response)
{
    const char *at = response ? strstr(response, "With Id = ") : NULL;
    if (p->status != 404 || !p->body || !at || !strstr(p->body, "@odata.bind"))
        return 0;
    at += strlen("With Id = ");
    size_t id_len = strcspn(at, " \"\\");
    if (!id_len || id_len > 128)
        return 0;
    struct json_doc *doc = NULL;
    struct dverr perr = {0};
    if (json_parse(p->body, strlen(p->body), NULL, &doc, &perr))
        return 0;
    const struct json_node *root = json_root(doc);
    struct buf out = BUF_INIT, what = BUF_INIT;
    size_t dropped = 0, kept = 0;
    buf_addch(&out, '{');
    for (const struct json_node *m = root->type == JSON_OBJECT ? root->child : NULL; m; m = m->next) {
        size_t suffix = strlen("@odata.bind");
        bool bind = m->key_len > suffix && !strcmp(m->key + m->key_len - suffix, "@odata.bind");
        if (bind && m->type == JSON_STRING && m->str_len > id_len + 2 &&
            m->str[m->str_len - 1] == ')' && m->str[m->str_len - id_len - 2] == '(' &&
            !memcmp(m->str + m->str_len - id_len - 1, at, id_len)) {
            if (!dropped)
                buf_printf(&what, "%s: lookup %.*s -> %s dropped: the target has no such record",
                           p->path, (int)(m->key_len - suffix), m->key, m->str);
            dropped++;
            continue;
        }
        if (kept++)
            buf_addch(&out, ',');
        buf_add_json_string(&out, m->key, m->key_len);
        buf_addch(&out, ':');
        buf_add(&out, m->raw, m->raw_len);
    }
    buf_addch(&out, '}');
    json_doc_free(doc);
    if (dropped && out.data) {
        free(p->body);
        p->body = buf_detach(&out);
        p->tab->out->lookups_dropped += dropped;
        if (!p->tab->out->lookup_note) {
            log_warn("restore: %s (the outcome counts the others)", what.data ? what.data : p->path);
            p->tab->out->lookup_note = buf_detach(&what);
        }
    }
    buf_release(&out);
    buf_release(&what);
    return dropped;
}

static int send_singly(struct rctx *c, struct dv_batch_item *items, size_t n, struct dverr *err)
{
    static const char *const json_headers[] = {"Content-Type: application/json", NULL};
    for (size_t i = 0; i < n; i++) {
        if (items[i].status)
            continue; /* done by an earlier attempt */
        struct dv_response resp = {0};
        c->out->write_requests++;
        int rc = dv_request(c->dv, &c->target, items[i].method, items[i].path, items[i].body,
                            items[i].body ? json_headers : NULL, &resp, err);
        if (rc) {
            buf_release(&resp.body);
            return rc;
        }
        items[i].status = (int)resp.status;
        items[i].response = resp.body.len ? buf_detach(&resp.body) : NULL;
        buf_release(&resp.body);
    }
    return 0;
}

static int send_parts(struct rctx *c, struct part *parts, size_t n)
{
    if (!n)
        return 0;
    struct dv_batch_item *items = calloc(n, sizeof(*items));
    if (!items)
        return -ENOMEM;
    int rc = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        for (size_t i = 0; i < n; i++) {
            if (c->no_batch && items[i].status)
                continue;
            memset(&items[i], 0, sizeof(items[i]));
            items[i].method = parts[i].method;
            items[i].path = parts[i].path;
            items[i].body = parts[i].body;
        }
        struct dverr berr = {0};
        if (c->no_batch) {
            rc = send_singly(c, items, n, &berr);
        } else {
            c->out->batches++;
            c->out->write_requests++;
            rc = dv_batch(c->dv, &c->target, items, n, true, &berr);
            if (rc == -EOPNOTSUPP || (rc && strstr(dverr_msg(&berr), "HTTP 501"))) {
                /* a service (or proxy) without $batch: one request per part */
                log_warn("restore: %s does not take $batch (%s); sending one request per "
                         "record", c->target.unique_name, dverr_msg(&berr));
                c->no_batch = true;
                attempt--;
                continue;
            }
        }
        if (rc == 0)
            break;
        if (!c->no_batch)
            dv_batch_items_release(items, n);
        log_warn("restore: $batch of %zu parts failed (%s), sending it again", n,
                 dverr_msg(&berr));
        if (attempt == 3 || cancelled(c)) {
            dverr_set(c->err, rc, "writing to %s: %s", c->target.unique_name, dverr_msg(&berr));
            break;
        }
        sleep(1u << attempt);
    }
    if (rc) {
        free(items);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = &parts[i];
        p->status = items[i].status;
        if (part_ok(p, items[i].response)) {
            part_done(c, p);
            part_release(p);
            continue;
        }
        free(p->error);
        struct buf e = BUF_INIT;
        buf_printf(&e, "%s %s: %d %.300s", p->method, p->path, p->status,
                   items[i].response ? items[i].response : "");
        p->error = buf_detach(&e);
        /* a lookup to a record the target lacks: sent again without it (in a round that
         * retry_failed does not count against the part) */
        if (drop_missing_binds(p, items[i].response))
            c->binds_dropped++;
        if (c->n_retry == c->cap_retry) {
            size_t cap = c->cap_retry ? c->cap_retry * 2 : 64;
            struct part *r = realloc(c->retry, cap * sizeof(*r));
            if (!r) {
                rc = -ENOMEM;
                break;
            }
            c->retry = r;
            c->cap_retry = cap;
        }
        c->retry[c->n_retry++] = *p;
        memset(p, 0, sizeof(*p));
    }
    dv_batch_items_release(items, n);
    free(items);
    for (size_t i = 0; i < n; i++)
        part_release(&parts[i]);
    report(c, false);
    return rc;
}

static int flush(struct rctx *c)
{
    int rc = send_parts(c, c->batch, c->n_batch);
    c->n_batch = 0;
    c->batch_bytes = 0;
    if (!rc && cancelled(c))
        rc = dverr_set(c->err, -ECANCELED, "restore cancelled");
    return rc;
}

/* Queue one part (takes path and body). */
static int queue(struct rctx *c, struct rtab *t, enum part_kind kind, const char *method,
                 char *path, char *body)
{
    size_t bytes = strlen(path) + (body ? strlen(body) : 0) + 128;
    if (c->n_batch == BATCH_MAX || (c->n_batch && c->batch_bytes + bytes > BATCH_MAX_BYTES)) {
        int rc = flush(c);
        if (rc) {
            free(path);
            free(body);
            return rc;
        }
    }
    struct part *p = &c->batch[c->n_batch++];
    memset(p, 0, sizeof(*p));
    p->method = method;
    p->path = path;
    p->body = body;
    p->tab = t;
    p->kind = kind;
    c->batch_bytes += bytes;
    return 0;
}

static int retry_failed(struct rctx *c)
{
    int rc = 0;
    /* A round after one that dropped lookups to missing records is not counted (each drop
     * removes a member, so this ends; at most STRIP_ROUNDS): a record whose two lookups both
     * point at missing records needs two such rounds. */
    int round = 0, strip_rounds = 0;
    while (c->n_retry && !rc) {
        bool strip_round = c->binds_dropped && strip_rounds < STRIP_ROUNDS;
        if (!strip_round && round == RETRY_ROUNDS)
            break;
        struct part *parts = c->retry;
        size_t n = c->n_retry;
        c->retry = NULL;
        c->n_retry = c->cap_retry = 0;
        c->binds_dropped = 0;
        log_info("restore: retrying %zu failed parts (round %d)", n, round + strip_rounds + 1);
        if (strip_round)
            strip_rounds++;
        else
            sleep(1u << round++);
        for (size_t off = 0; off < n && !rc; off += BATCH_MAX) {
            size_t m = n - off < BATCH_MAX ? n - off : BATCH_MAX;
            c->out->retried += m;
            rc = send_parts(c, parts + off, m);
        }
        for (size_t i = 0; i < n; i++)
            part_release(&parts[i]);
        free(parts);
    }
    /* what still fails is counted per table, the first error kept as the table's note */
    for (size_t i = 0; i < c->n_retry; i++) {
        struct part *p = &c->retry[i];
        if (!rc) {
            p->tab->out->failed++;
            if (!p->tab->out->note)
                p->tab->out->note = xstrdup(p->error);
        }
        part_release(p);
    }
    c->n_retry = 0;
    return rc;
}

/* ---------------------------------------------------------------- writing */

static struct rtab *tab_by_name(struct rctx *c, const char *name)
{
    for (size_t i = 0; i < c->n_tabs; i++)
        if (c->tabs[i].active && !c->tabs[i].mm && name && !strcmp(c->tabs[i].name, name))
            return &c->tabs[i];
    return NULL;
}

static int bind_decide(void *ctx, const struct dv_lookup *lk, const char *id, size_t id_len)
{
    struct rctx *c = ctx;
    struct rtab *t = tab_by_name(c, lk->target_table);
    if (!t || t->written)
        return RB_INCLUDE;
    struct rmap_entry *e = rmap_get(&t->map, id, id_len);
    if (!e || e->action != ACT_CREATE || (e->flags & RMAP_SENT))
        return RB_INCLUDE;
    return RB_DEFER;
}

static int body_blob(void *ctx, const char *column, struct buf *b64)
{
    struct rctx *c = ctx;
    const struct point_file *f =
        find_file(&c->files, c->cur->name, c->cur_key, c->cur_key_len, column);
    if (!f)
        return 0;
    struct buf raw = BUF_INIT;
    int rc = repo_blob_get(c->repo, f->blob, &raw, c->err);
    if (!rc)
        rc = base64_encode(raw.data ? raw.data : "", raw.len, b64);
    buf_release(&raw);
    return rc ? rc : 1;
}

static char *record_path(const struct dv_table *def, const char *key, size_t kl)
{
    struct buf p = BUF_INIT;
    buf_printf(&p, "%s(%.*s)", def->entity_set, (int)kl, key);
    return buf_detach(&p);
}

struct deferred {
    char *path, *body;
    struct rtab *t;
};
struct write_ctx {
    struct rctx *c;
    struct rtab *t;
    struct deferred *def;
    size_t n_def, cap_def;
};

static int upsert_cb(void *ctx, const char *key, size_t key_len, const char *line, size_t line_len)
{
    struct write_ctx *w = ctx;
    struct rctx *c = w->c;
    struct rtab *t = w->t;
    if (cancelled(c))
        return -ECANCELED;
    struct rmap_entry *e = rmap_get(&t->map, key, key_len);
    if (!e || (e->action != ACT_CREATE && e->action != ACT_UPDATE))
        return 0;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, c->err);
    if (rc)
        return rc;
    struct buf body = BUF_INIT, later = BUF_INIT;
    c->cur = t;
    c->cur_key = key;
    c->cur_key_len = key_len;
    bool create = e->action == ACT_CREATE;
    rc = restore_body(t->def, json_root(doc), create, bind_decide, c, body_blob, c, &body, &later);
    json_doc_free(doc);
    if (rc)
        goto out;
    e->flags |= RMAP_SENT;
    rc = queue(c, t, create ? K_CREATE : K_UPDATE, "PATCH", record_path(t->def, key, key_len),
               buf_detach(&body));
    if (rc)
        goto out;
    if (later.len) {
        if (w->n_def == w->cap_def) {
            size_t cap = w->cap_def ? w->cap_def * 2 : 64;
            struct deferred *d = realloc(w->def, cap * sizeof(*d));
            if (!d) {
                rc = -ENOMEM;
                goto out;
            }
            w->def = d;
            w->cap_def = cap;
        }
        w->def[w->n_def].path = record_path(t->def, key, key_len);
        w->def[w->n_def].body = buf_detach(&later);
        w->def[w->n_def].t = t;
        w->n_def++;
    }
    /* file columns of an updated record: clear those the point has no bytes for */
    if (!create && t->has_files) {
        for (size_t i = 0; i < t->def->n_attrs && !rc; i++) {
            const struct dv_attribute *a = &t->def->attrs[i];
            if (!a->type || (strcmp(a->type, "File") && strcmp(a->type, "Image")))
                continue;
            if (find_file(&c->files, t->name, key, key_len, a->logical_name))
                continue;
            struct buf p = BUF_INIT;
            buf_printf(&p, "%s(%.*s)/%s", t->def->entity_set, (int)key_len, key, a->logical_name);
            rc = queue(c, t, K_FILEDEL, "DELETE", buf_detach(&p), NULL);
        }
    }
out:
    buf_release(&body);
    buf_release(&later);
    return rc;
}

static int write_n_to_n(struct rctx *c, struct rtab *t)
{
    int rc = 0;
    const char *set1 = t->mm1->entity_set, *set2 = t->mm2->entity_set;
    for (size_t i = 0; i < t->map.cap && !rc; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (!e->key || (e->action != ACT_CREATE && e->action != ACT_DELETE))
            continue;
        const char *bar = strchr(e->key, '|');
        if (!bar)
            continue;
        int l1 = (int)(bar - e->key);
        const char *id2 = bar + 1;
        struct buf p = BUF_INIT, b = BUF_INIT;
        if (e->action == ACT_CREATE) {
            buf_printf(&p, "%s(%.*s)/%s/$ref", set1, l1, e->key, t->mm->entity1_nav);
            buf_addstr(&b, "{\"@odata.id\":");
            struct buf u = BUF_INIT;
            buf_printf(&u, "%s%s(%s)", c->api_base, set2, id2);
            buf_add_json_string(&b, u.data, u.len);
            buf_release(&u);
            buf_addch(&b, '}');
            rc = queue(c, t, K_ASSOC, "POST", buf_detach(&p), buf_detach(&b));
        } else {
            buf_printf(&p, "%s(%.*s)/%s(%s)/$ref", set1, l1, e->key, t->mm->entity1_nav, id2);
            rc = queue(c, t, K_DISASSOC, "DELETE", buf_detach(&p), NULL);
        }
    }
    return rc;
}

static int write_deletes(struct rctx *c, struct rtab *t)
{
    int rc = 0;
    for (size_t i = 0; i < t->map.cap && !rc; i++) {
        struct rmap_entry *e = &t->map.slots[i];
        if (!e->key || e->action != ACT_DELETE)
            continue;
        rc = queue(c, t, K_DELETE, "DELETE", record_path(t->def, e->key, e->key_len), NULL);
    }
    return rc;
}

static int upload_files(struct rctx *c)
{
    int rc = 0;
    for (size_t i = 0; i < c->point->n_files && !rc; i++) {
        const struct point_file *f = &c->point->files[i];
        struct rtab *t = tab_by_name(c, f->table);
        if (!t || !t->has_files || !f->record_id || !f->column)
            continue;
        const struct dv_attribute *a = restore_attr(t->def, f->column, strlen(f->column));
        if (!a || !a->type || (strcmp(a->type, "File") && strcmp(a->type, "Image")))
            continue;
        struct rmap_entry *e = rmap_get(&t->map, f->record_id, strlen(f->record_id));
        if (!e || (e->action != ACT_CREATE && e->action != ACT_UPDATE))
            continue;
        struct buf raw = BUF_INIT;
        rc = repo_blob_get(c->repo, f->blob, &raw, c->err);
        if (!rc) {
            struct dverr ferr = {0};
            c->out->write_requests++;
            int frc = dv_file_upload(c->dv, &c->target, t->def->entity_set, f->record_id,
                                     f->column, f->file_name ? f->file_name : "file",
                                     raw.data ? raw.data : "", raw.len, &ferr);
            if (frc) {
                t->out->failed++;
                if (!t->out->note) {
                    struct buf n = BUF_INIT;
                    buf_printf(&n, "file %s of %s: %s", f->column, f->record_id,
                               dverr_msg(&ferr));
                    t->out->note = buf_detach(&n);
                }
            } else {
                t->out->files++;
            }
        }
        buf_release(&raw);
        if (cancelled(c))
            rc = dverr_set(c->err, -ECANCELED, "restore cancelled");
    }
    return rc;
}

/* ---------------------------------------------------------------- planning */

static const struct dv_table *def_by_name(const struct rctx *c, const char *name)
{
    for (size_t i = 0; i < c->n_defs; i++)
        if (c->defs[i].logical_name && name && !strcmp(c->defs[i].logical_name, name))
            return &c->defs[i];
    return NULL;
}

static bool requested(const struct restore_request *req, const char *name)
{
    if (!req->tables)
        return true;
    for (char **t = req->tables; *t; t++)
        if (!strcmp(*t, name))
            return true;
    return false;
}

static void skip_table(struct rtab *t, const char *why)
{
    t->active = false;
    free(t->out->note);
    t->out->note = xstrdup(why);
}

static int plan_tables(struct rctx *c)
{
    size_t n = 0;
    for (size_t i = 0; i < c->point->n_tables; i++)
        if (requested(c->req, c->point->tables[i].name))
            n++;
    c->tabs = calloc(n ? n : 1, sizeof(*c->tabs));
    c->out->tables = calloc(n ? n : 1, sizeof(*c->out->tables));
    c->order = calloc(n ? n : 1, sizeof(*c->order));
    if (!c->tabs || !c->out->tables || !c->order)
        return -ENOMEM;
    for (size_t i = 0; i < c->point->n_tables; i++) {
        const struct point_table *pt = &c->point->tables[i];
        if (!requested(c->req, pt->name))
            continue;
        struct rtab *t = &c->tabs[c->n_tabs];
        t->name = pt->name;
        t->out = &c->out->tables[c->n_tabs];
        t->out->table = xstrdup(pt->name);
        c->n_tabs++;
        c->out->n_tables = c->n_tabs;
        rmap_init(&t->map);
        t->def = def_by_name(c, pt->name);
        t->active = true;
        if (c->point->audit_table && !strcmp(c->point->audit_table, pt->name)) {
            t->out->skipped = pt->records;
            skip_table(t, "audit records are skipped (audit=skip; the service does not take them)");
            continue;
        }
        if (!t->def) {
            t->out->skipped = pt->records;
            skip_table(t, "the target has no such table");
            continue;
        }
        if (t->def->is_intersect) {
            for (size_t d = 0; d < c->n_defs && !t->mm; d++)
                for (size_t m = 0; m < c->defs[d].n_many_to_many; m++) {
                    const struct dv_many_to_many *mm = &c->defs[d].many_to_many[m];
                    if (mm->intersect_table && !strcmp(mm->intersect_table, pt->name)) {
                        t->mm = mm;
                        break;
                    }
                }
            if (t->mm) {
                t->mm1 = def_by_name(c, t->mm->entity1);
                t->mm2 = def_by_name(c, t->mm->entity2);
            }
            if (!t->mm || !t->mm1 || !t->mm2 || !t->mm->entity1_attr || !t->mm->entity2_attr ||
                !t->mm->entity1_nav) {
                t->out->skipped = pt->records;
                skip_table(t, "intersect table without a usable many-to-many relationship");
            }
            continue;
        }
        if (t->def->read_only) {
            t->out->skipped = pt->records;
            struct buf why = BUF_INIT;
            buf_printf(&why, "the service does not let clients write %s", pt->name);
            skip_table(t, why.data ? why.data : "read-only");
            buf_release(&why);
            continue;
        }
        if (!t->def->entity_set || !t->def->primary_id) {
            t->out->skipped = pt->records;
            skip_table(t, "the target's definition has no entity set or primary key");
            continue;
        }
        for (size_t a = 0; a < t->def->n_attrs; a++) {
            const char *ty = t->def->attrs[a].type;
            if (ty && (!strcmp(ty, "File") || !strcmp(ty, "Image")))
                t->has_files = true;
        }
    }
    /* referenced tables first (Kahn); cycles fall back to name order, deferred binds cover them */
    bool *placed = calloc(c->n_tabs ? c->n_tabs : 1, sizeof(bool));
    if (!placed)
        return -ENOMEM;
    for (;;) {
        bool progress = false;
        for (size_t i = 0; i < c->n_tabs; i++) {
            struct rtab *t = &c->tabs[i];
            if (placed[i] || !t->active || t->mm)
                continue;
            bool ready = true;
            for (size_t l = 0; l < t->def->n_lookups && ready; l++) {
                const char *tt = t->def->lookups[l].target_table;
                for (size_t j = 0; j < c->n_tabs; j++)
                    if (j != i && !placed[j] && c->tabs[j].active && !c->tabs[j].mm && tt &&
                        !strcmp(c->tabs[j].name, tt))
                        ready = false;
            }
            if (ready) {
                placed[i] = true;
                c->order[c->n_order++] = i;
                progress = true;
            }
        }
        if (progress)
            continue;
        bool any = false;
        for (size_t i = 0; i < c->n_tabs && !any; i++) {
            if (!placed[i] && c->tabs[i].active && !c->tabs[i].mm) {
                placed[i] = true;
                c->order[c->n_order++] = i;
                any = true;
            }
        }
        if (!any)
            break;
    }
    free(placed);
    return 0;
}

static void skipped_fields_json(struct rctx *c)
{
    struct buf j = BUF_INIT;
    buf_addch(&j, '{');
    bool first = true;
    for (size_t i = 0; i < c->n_tabs; i++) {
        struct rtab *t = &c->tabs[i];
        if (!t->skipped.n)
            continue;
        if (!first)
            buf_addch(&j, ',');
        first = false;
        buf_add_json_string(&j, t->name, strlen(t->name));
        buf_addstr(&j, ":[");
        for (size_t k = 0; k < t->skipped.n; k++) {
            if (k)
                buf_addch(&j, ',');
            buf_add_json_string(&j, t->skipped.items[k], strlen(t->skipped.items[k]));
        }
        buf_addch(&j, ']');
    }
    buf_addch(&j, '}');
    free(c->out->skipped_fields_json);
    c->out->skipped_fields_json = buf_detach(&j);
}

/* The Web API describes file and image columns as AttributeType "Virtual" (with
 * AttributeTypeName FileType/ImageType, which struct dv_attribute does not carry): a column the
 * repository holds file bytes for is a file column, whatever its type says. */
static void mark_file_columns(struct rctx *c, const struct point *p)
{
    for (size_t i = 0; p && i < p->n_files; i++) {
        const struct point_file *f = &p->files[i];
        if (!f->table || !f->column || !strcmp(f->column, "documentbody"))
            continue;
        for (size_t d = 0; d < c->n_defs; d++) {
            struct dv_table *t = &c->defs[d];
            if (!t->logical_name || strcmp(t->logical_name, f->table))
                continue;
            for (size_t a = 0; a < t->n_attrs; a++) {
                struct dv_attribute *x = &t->attrs[a];
                if (!x->logical_name || strcmp(x->logical_name, f->column) || !x->type ||
                    !strcmp(x->type, "File") || !strcmp(x->type, "Image"))
                    continue;
                free(x->type);
                x->type = xstrdup("File");
            }
        }
    }
}

/* ---------------------------------------------------------------- run */

static int safety_backup(struct rctx *c, const char *operation_id)
{
    if (!config_env_selected(c->cfg, c->target.unique_name) ||
        policy_backup_allowed(&c->target, NULL) != 0) {
        log_info("restore: %s is not backed up by this configuration; no safety backup",
                 c->target.unique_name);
        return 0;
    }
    set_state(c, "backing-up");
    char label[64];
    snprintf(label, sizeof(label), "pre-restore-%s", operation_id);
    struct capture_opts opts = {0};
    opts.label = label;
    opts.cancel = c->cancel;
    struct capture_result res;
    int rc;
    /* another writer (the mount's capture loop) may hold the environment: wait for it */
    for (int attempt = 0;; attempt++) {
        memset(&res, 0, sizeof(res));
        struct dverr cerr = {0};
        rc = capture_env(c->dv, c->repo, c->cfg, &c->target, &opts, &res, &cerr);
        if (rc == -EBUSY && attempt < 60 && !cancelled(c)) {
            sleep(1);
            continue;
        }
        if (rc)
            return dverr_set(c->err, rc, "safety backup of %s failed, nothing was written: %s",
                             c->target.unique_name, dverr_msg(&cerr));
        break;
    }
    snprintf(c->out->safety_point, sizeof(c->out->safety_point), "%s", res.point);
    rc = repo_point_load(c->repo, c->target.unique_name, res.point, &c->safety, c->err);
    if (rc)
        return rc;
    return index_files(&c->tfiles, c->safety);
}

static int run(struct rctx *c, const char *operation_id)
{
    int rc = validate(c);
    if (rc)
        return rc;
    if (!c->req->dry_run) {
        rc = safety_backup(c, operation_id);
        if (rc)
            return rc;
    }
    set_state(c, "comparing");
    rc = dv_tables_list(c->dv, &c->target, &c->defs, &c->n_defs, c->err);
    if (rc)
        return rc;
    {
        struct buf b = BUF_INIT;
        buf_printf(&b, "%s/api/data/v9.2/", c->target.api_url ? c->target.api_url : "");
        c->api_base = buf_detach(&b);
    }
    if ((rc = index_files(&c->files, c->point)))
        return rc;
    mark_file_columns(c, c->point);
    mark_file_columns(c, c->safety);
    if ((rc = plan_tables(c)))
        return rc;
    for (size_t i = 0; i < c->n_tabs && !rc; i++) {
        if (!c->tabs[i].active)
            continue;
        rc = compare_table(c, &c->tabs[i]);
        report(c, true);
    }
    skipped_fields_json(c);
    if (rc || c->req->dry_run)
        return rc;

    set_state(c, "writing");
    /* 1. upserts, referenced tables first */
    struct write_ctx w = {c, NULL, NULL, 0, 0};
    for (size_t o = 0; o < c->n_order && !rc; o++) {
        struct rtab *t = &c->tabs[c->order[o]];
        w.t = t;
        if (t->n_create || t->n_update)
            rc = table_iterate(c->repo, c->point, t->name, upsert_cb, &w, c->err);
        t->written = true;
    }
    /* 2. lookups to records created after the record that names them */
    for (size_t i = 0; i < w.n_def; i++) {
        if (!rc)
            rc = queue(c, w.def[i].t, K_BIND, "PATCH", w.def[i].path, w.def[i].body);
        else {
            free(w.def[i].path);
            free(w.def[i].body);
        }
    }
    free(w.def);
    /* 3. N:N pairs */
    for (size_t i = 0; i < c->n_tabs && !rc; i++)
        if (c->tabs[i].active && c->tabs[i].mm)
            rc = write_n_to_n(c, &c->tabs[i]);
    /* 4. deletes, referencing tables first */
    for (size_t o = c->n_order; o-- > 0 && !rc;)
        rc = write_deletes(c, &c->tabs[c->order[o]]);
    if (!rc)
        rc = flush(c);
    if (!rc)
        rc = retry_failed(c);
    if (!rc)
        rc = upload_files(c);
    if (rc)
        return rc;
    /* 5. the platform leaves a restored environment in administration mode */
    c->out->write_requests++;
    rc = dv_env_set_runtime_state(c->dv, &c->target, "AdminMode", c->err);
    if (rc)
        return rc;
    uint64_t failed = 0;
    for (size_t i = 0; i < c->n_tabs; i++)
        failed += c->tabs[i].out->failed;
    if (failed)
        return dverr_set(c->err, -EIO, "%llu writes still failed after %d retries (see tables)",
                         (unsigned long long)failed, RETRY_ROUNDS);
    return 0;
}

int restore_run(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct restore_request *req, const char *operation_id,
                void (*progress)(void *ctx, const struct restore_outcome *o), void *ctx,
                atomic_int *cancel, struct restore_outcome *out, struct dverr *err)
{
    struct rctx *c = calloc(1, sizeof(*c));
    struct dverr local = {0};
    if (!c)
        return -ENOMEM;
    memset(out, 0, sizeof(*out));
    c->dv = dv;
    c->repo = repo;
    c->cfg = cfg;
    c->req = req;
    c->out = out;
    c->progress = progress;
    c->pctx = ctx;
    c->cancel = cancel;
    c->err = err ? err : &local;
    /* for tests/bench/restore.sh only: the naive restore that rewrites every record */
    c->rewrite_all = getenv("DVSNAP_RESTORE_REWRITE_ALL") != NULL;
    rmap_init(&c->files);
    rmap_init(&c->tfiles);
    dv_client_stats(dv, &c->stats0);
    char opid[32];
    if (operation_id && *operation_id)
        snprintf(opid, sizeof(opid), "%s", operation_id);
    else
        restore_operation_id(opid);
    snprintf(out->operation_id, sizeof(out->operation_id), "%s", opid);
    out->source_env = xstrdup(req->source_env);
    out->point = xstrdup(req->point);
    out->target = xstrdup(req->target);
    out->dry_run = req->dry_run;
    out->started_ms = wall_ms();
    set_state(c, "validating");

    int rc = run(c, opid);

    struct dv_stats s;
    dv_client_stats(dv, &s);
    out->requests = s.requests - c->stats0.requests;
    out->finished_ms = wall_ms();
    if (rc) {
        out->code = rc;
        snprintf(out->error, sizeof(out->error), "%s",
                 dverr_msg(c->err)[0] ? dverr_msg(c->err) : strerror(-rc));
    }
    if (!out->skipped_fields_json)
        out->skipped_fields_json = xstrdup("{}");
    set_state(c, rc ? "failed" : "done");
    log_info("restore %s: %s/%s -> %s: %s (%llu written, %llu requests)", opid, req->source_env,
             req->point, req->target, out->state, (unsigned long long)out->records_written,
             (unsigned long long)out->requests);

    for (size_t i = 0; i < c->n_batch; i++)
        part_release(&c->batch[i]);
    for (size_t i = 0; i < c->n_retry; i++)
        part_release(&c->retry[i]);
    free(c->retry);
    for (size_t i = 0; i < c->n_tabs; i++) {
        rmap_release(&c->tabs[i].map);
        strset_release(&c->tabs[i].skipped);
        for (int k = 0; k < 3; k++)
            strset_release(&c->tabs[i].keys[k]);
    }
    free(c->tabs);
    free(c->order);
    rmap_release(&c->files);
    rmap_release(&c->tfiles);
    dv_tables_free(c->defs, c->n_defs);
    point_free(c->point);
    point_free(c->safety);
    dv_env_release(&c->source);
    dv_env_release(&c->target);
    free(c->api_base);
    free(c);
    return rc;
}
