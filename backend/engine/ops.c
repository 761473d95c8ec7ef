/* ops: background backups and restores with synchronous validation, and their JSON documents
 * (contract in ops.h).
 *
 * Locks: o->mu guards the operation list, every operation's mutable fields and o->cond (state
 * changes). Worker threads are joinable and joined by ops_free; they block all signals so the
 * mount's SIGINT reaches its session loop. */
#include "backend/engine/ops.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/engine/capture.h"
#include "backend/base/log.h"
#include "backend/engine/policy.h"
#include "backend/engine/restore.h"

struct op {
    char id[64];
    char kind[16];             /* backup | restore */
    char *env, *point, *label, *target;
    char state[16];            /* running | done | failed | refused | interrupted */
    char *error;
    char *result_point;        /* backup: the new point */
    char *progress_json;       /* backup: {"tables_done":..}; restore: the outcome */
    time_t started, finished;
    int code;
    int64_t saved_ms;
    pthread_t thread;
    bool has_thread;
    struct dv_env denv;        /* backup: the environment (owned) */
    struct restore_request req;/* restore */
    bool has_req;
    struct ops *o;
    struct op *next;
};

struct ops {
    struct repo *repo;
    struct dv_client *dv;
    const struct config *cfg;
    char *state_dir;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    struct op *head, *tail;    /* oldest first */
    size_t n;
    unsigned seq;
    atomic_int cancel;
    pthread_t loop_thread;
    bool loop_started;
    int64_t every;
    struct ops_capture_observer observer; /* set before the loop starts; read by its thread */
};

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void op_free(struct op *op)
{
    if (!op)
        return;
    free(op->env);
    free(op->point);
    free(op->label);
    free(op->target);
    free(op->error);
    free(op->result_point);
    free(op->progress_json);
    dv_env_release(&op->denv);
    if (op->has_req)
        restore_request_release(&op->req);
    free(op);
}

static void add_str(struct buf *b, const char *key, const char *v, bool comma)
{
    buf_printf(b, "%s\n  \"%s\": ", comma ? "," : "", key);
    if (v)
        buf_add_json_string(b, v, strlen(v));
    else
        buf_addstr(b, "null");
}

static void add_time(struct buf *b, const char *key, time_t t)
{
    char ts[32];
    if (t) {
        rfc3339_from_time(t, ts);
        add_str(b, key, ts, true);
    } else {
        add_str(b, key, NULL, true);
    }
}

/* o->mu held */
static void render_locked(const struct op *op, struct buf *b)
{
    buf_addch(b, '{');
    add_str(b, "id", op->id, false);
    add_str(b, "kind", op->kind, true);
    add_str(b, "env", op->env, true);
    if (!strcmp(op->kind, "backup")) {
        add_str(b, "label", op->label, true);
        add_str(b, "point", op->result_point, true);
    } else {
        add_str(b, "point", op->point, true);
        add_str(b, "target", op->target, true);
    }
    add_str(b, "state", op->state, true);
    add_time(b, "started_at", op->started);
    add_time(b, "finished_at", op->finished);
    add_str(b, "error", op->error, true);
    buf_addstr(b, ",\n  \"progress\": ");
    buf_addstr(b, op->progress_json ? op->progress_json : "null");
    buf_addstr(b, "\n}\n");
}

static void save(struct ops *o, struct op *op, bool force)
{
    struct buf b = BUF_INIT;
    char path[4096];
    pthread_mutex_lock(&o->mu);
    int64_t now = now_ms();
    if (!force && now - op->saved_ms < 1000) {
        pthread_mutex_unlock(&o->mu);
        return;
    }
    op->saved_ms = now;
    render_locked(op, &b);
    snprintf(path, sizeof path, "%s/%s.json", o->state_dir, op->id);
    pthread_mutex_unlock(&o->mu);
    int rc = write_file_atomic(path, b.data, b.len, 0600);
    if (rc)
        log_warn("ops: cannot save %s: %s", path, strerror(-rc));
    buf_release(&b);
}

/* Append (o->mu held); drops the oldest finished operations beyond OPS_KEEP. */
static void add_locked(struct ops *o, struct op *op)
{
    op->next = NULL;
    if (o->tail)
        o->tail->next = op;
    else
        o->head = op;
    o->tail = op;
    o->n++;
    while (o->n > OPS_KEEP && o->head && strcmp(o->head->state, "running") != 0 &&
           !o->head->has_thread) {
        struct op *x = o->head;
        o->head = x->next;
        if (!o->head)
            o->tail = NULL;
        o->n--;
        op_free(x);
    }
}

static struct op *op_new(struct ops *o, const char *kind, const char *env)
{
    struct op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    op->o = o;
    op->started = time(NULL);
    char ts[32];
    point_name_from_time(op->started, ts);
    pthread_mutex_lock(&o->mu);
    unsigned seq = ++o->seq;
    pthread_mutex_unlock(&o->mu);
    snprintf(op->id, sizeof op->id, "%s-%s-%u", ts, kind, seq);
    snprintf(op->kind, sizeof op->kind, "%s", kind);
    snprintf(op->state, sizeof op->state, "running");
    op->env = xstrdup(env);
    if (env && !op->env) {
        free(op);
        return NULL;
    }
    return op;
}

static void finish(struct ops *o, struct op *op, int rc, const char *state, const char *msg)
{
    pthread_mutex_lock(&o->mu);
    snprintf(op->state, sizeof op->state, "%s", state);
    op->code = rc;
    op->finished = time(NULL);
    if (msg && *msg) {
        free(op->error);
        op->error = strdup(msg);
    }
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
    save(o, op, true);
}

/* Record a refusal as a finished operation; returns rc. */
static int refuse(struct ops *o, const char *kind, const char *env, const char *point,
                  const char *label, int rc, const struct dverr *err, char id[64])
{
    struct op *op = op_new(o, kind, env);
    if (!op)
        return rc;
    op->point = xstrdup(point);
    op->label = xstrdup(label);
    pthread_mutex_lock(&o->mu);
    add_locked(o, op);
    pthread_mutex_unlock(&o->mu);
    if (id)
        snprintf(id, 64, "%s", op->id);
    char msg[600];
    snprintf(msg, sizeof msg, "%s (%s)", dverr_msg(err), strerror(-rc));
    finish(o, op, rc, "refused", msg);
    return rc;
}

static int spawn(struct op *op, void *(*fn)(void *))
{
    int rc = thread_start(&op->thread, fn, op);
    if (rc == 0)
        op->has_thread = true;
    return -rc;
}

/* Replace op's progress document with b's bytes (b is left empty); persist when save_now. */
static void set_progress(struct op *op, struct buf *b, bool save_now)
{
    pthread_mutex_lock(&op->o->mu);
    free(op->progress_json);
    op->progress_json = buf_detach(b);
    pthread_mutex_unlock(&op->o->mu);
    if (save_now)
        save(op->o, op, false);
}

/* ---- backups ---- */
static void backup_progress(void *ctx, const struct capture_progress *p)
{
    struct op *op = ctx;
    struct buf b = BUF_INIT;
    buf_addch(&b, '{');
    if (!strcmp(op->kind, "capture")) {
        /* one operation covers every environment of the pass: say which one is running */
        buf_addstr(&b, "\"env\": ");
        if (p->env)
            buf_add_json_string(&b, p->env, strlen(p->env));
        else
            buf_addstr(&b, "null");
        buf_addstr(&b, ", ");
    }
    buf_printf(&b, "\"tables_done\": %llu, \"tables_total\": %llu, \"records\": %llu, \"table\": ",
               (unsigned long long)p->tables_done, (unsigned long long)p->tables_total,
               (unsigned long long)p->records);
    if (p->table)
        buf_add_json_string(&b, p->table, strlen(p->table));
    else
        buf_addstr(&b, "null");
    buf_addch(&b, '}');
    set_progress(op, &b, true);
}

static void *backup_main(void *arg)
{
    struct op *op = arg;
    struct ops *o = op->o;
    struct dverr err = {0};
    struct capture_result res = {0};
    struct capture_opts opts = {0};
    opts.label = op->label;
    opts.progress = backup_progress;
    opts.progress_ctx = op;
    opts.cancel = &o->cancel;
    int rc = capture_env(o->dv, o->repo, o->cfg, &op->denv, &opts, &res, &err);
    if (rc == 0) {
        struct buf b = BUF_INIT;
        buf_printf(&b,
                   "{\"tables\": %llu, \"records_read\": %llu, \"records_changed\": %llu, "
                   "\"requests\": %llu, \"files\": %llu, \"tables_failed\": %llu}",
                   (unsigned long long)res.tables, (unsigned long long)res.records_read,
                   (unsigned long long)res.records_changed, (unsigned long long)res.requests,
                   (unsigned long long)res.files, (unsigned long long)res.tables_failed);
        pthread_mutex_lock(&o->mu);
        free(op->progress_json);
        op->progress_json = buf_detach(&b);
        op->result_point = strdup(res.point);
        pthread_mutex_unlock(&o->mu);
        log_info("ops: backup %s of %s done: point %s", op->id, op->env, res.point);
        finish(o, op, 0, "done", NULL);
    } else {
        log_warn("ops: backup %s of %s failed: %s", op->id, op->env, dverr_msg(&err));
        finish(o, op, rc, "failed", dverr_msg(&err));
    }
    return NULL;
}

static bool running_locked(struct ops *o, const char *kind, const char *env)
{
    for (struct op *x = o->head; x; x = x->next)
        if (!strcmp(x->kind, kind) && !strcmp(x->state, "running") && x->env &&
            !strcmp(x->env, env))
            return true;
    return false;
}

int ops_backup_start(struct ops *o, const char *env, const char *label, char id[64],
                     struct dverr *err)
{
    struct dverr e = {0};
    struct dv_env denv = {0};
    int rc;
    size_t len = strlen(label);
    if (len == 0 || len > 200) {
        dverr_set(&e, -EINVAL, "a label must be 1 to 200 bytes (write it as one line)");
        rc = -EINVAL;
        goto refused;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)label[i] < 0x20 || label[i] == 0x7f) {
            dverr_set(&e, -EINVAL, "a label must not contain control characters");
            rc = -EINVAL;
            goto refused;
        }
    rc = dv_env_get(o->dv, env, &denv, &e);
    if (rc) {
        dverr_set(&e, rc, "cannot read environment %s from the admin API", env);
        if (rc != -ENOENT && rc != -EPERM && rc != -EACCES)
            rc = -EIO;
        goto refused;
    }
    rc = policy_manual_backup_allowed(&denv, &e);
    if (rc)
        goto refused;
    pthread_mutex_lock(&o->mu);
    bool busy = running_locked(o, "backup", env);
    pthread_mutex_unlock(&o->mu);
    if (busy) {
        dverr_set(&e, -EBUSY, "a backup of %s is already running", env);
        rc = -EBUSY;
        goto refused;
    }
    struct op *op = op_new(o, "backup", env);
    if (!op || !(op->label = strdup(label))) {
        op_free(op);
        dv_env_release(&denv);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    op->denv = denv;
    memset(&denv, 0, sizeof denv);
    pthread_mutex_lock(&o->mu);
    add_locked(o, op);
    rc = spawn(op, backup_main);
    pthread_mutex_unlock(&o->mu);
    if (id)
        snprintf(id, 64, "%s", op->id);
    if (rc) {
        finish(o, op, rc, "failed", "cannot start a thread");
        return dverr_set(err, rc, "cannot start a thread");
    }
    save(o, op, true);
    log_info("ops: backup %s of %s labelled '%s' started", op->id, env, label);
    return 0;
refused:
    dv_env_release(&denv);
    dverr_set(err, rc, "%s", dverr_msg(&e));
    return refuse(o, "backup", env, NULL, label, rc, &e, id);
}

/* ---- restores ---- */
static void restore_progress(void *ctx, const struct restore_outcome *out)
{
    struct op *op = ctx;
    struct buf b = BUF_INIT;
    if (restore_outcome_json(out, &b) != 0) {
        buf_release(&b);
        return;
    }
    while (b.len && (b.data[b.len - 1] == '\n'))
        b.data[--b.len] = '\0';
    set_progress(op, &b, true);
}

static void *restore_main(void *arg)
{
    struct op *op = arg;
    struct ops *o = op->o;
    struct dverr err = {0};
    struct restore_outcome out = {0};
    int rc = restore_run(o->dv, o->repo, o->cfg, &op->req, op->id, restore_progress, op,
                         &o->cancel, &out, &err);
    restore_progress(op, &out);
    restore_outcome_release(&out);
    if (rc == 0) {
        log_info("ops: restore %s done", op->id);
        finish(o, op, 0, "done", NULL);
    } else {
        log_warn("ops: restore %s failed: %s", op->id, dverr_msg(&err));
        finish(o, op, rc, "failed", dverr_msg(&err));
    }
    return NULL;
}

int ops_restore_start(struct ops *o, const char *env, const char *point, const char *line,
                      char id[64], struct dverr *err)
{
    struct dverr e = {0};
    struct restore_request req = {0};
    int rc = restore_request_parse(line, env, point, &req, &e);
    if (rc)
        goto refused;
    rc = restore_validate(o->dv, o->repo, &req, &e);
    if (rc)
        goto refused;
    pthread_mutex_lock(&o->mu);
    bool busy = running_locked(o, "restore", env);
    for (struct op *x = o->head; x && !busy; x = x->next)
        busy = !strcmp(x->kind, "restore") && !strcmp(x->state, "running") && x->target &&
               req.target && !strcmp(x->target, req.target);
    pthread_mutex_unlock(&o->mu);
    if (busy) {
        rc = dverr_set(&e, -EBUSY, "a restore into %s is already running", req.target);
        goto refused;
    }
    struct op *op = op_new(o, "restore", env);
    if (!op || !(op->point = strdup(point)) || !(op->target = xstrdup(req.target))) {
        op_free(op);
        restore_request_release(&req);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    op->req = req;
    op->has_req = true;
    pthread_mutex_lock(&o->mu);
    add_locked(o, op);
    rc = spawn(op, restore_main);
    pthread_mutex_unlock(&o->mu);
    if (id)
        snprintf(id, 64, "%s", op->id);
    if (rc) {
        finish(o, op, rc, "failed", "cannot start a thread");
        return dverr_set(err, rc, "cannot start a thread");
    }
    save(o, op, true);
    log_info("ops: restore %s of %s/%s into %s started", op->id, env, point, op->target);
    return 0;
refused:
    restore_request_release(&req);
    if (rc != -EINVAL && rc != -EPERM && rc != -ENOSPC && rc != -EOPNOTSUPP && rc != -EBUSY &&
        rc != -ENOENT)
        rc = -EIO;
    dverr_set(err, rc, "%s", dverr_msg(&e));
    return refuse(o, "restore", env, point, NULL, rc, &e, id);
}

/* ---- continuous capture ----
 * Each pass of the loop is one operation of kind "capture" (env null: it covers every
 * environment): progress names the environment and table being read while it runs; when it ends,
 * progress lists every environment with its new point, or why it was skipped or failed. */
struct pass {
    struct op *op;
    struct buf envs;           /* the "environments" array's elements so far */
    size_t failed;
    const struct ops_capture_observer *observer;
};

static void loop_env_done(void *ctx, const struct dv_env *env, int rc,
                          const struct capture_result *res, const struct dverr *err)
{
    struct pass *ps = ctx;
    struct buf *b = &ps->envs;
    if (ps->observer->env_done)
        ps->observer->env_done(ps->observer->ctx, env, rc, res, err);
    if (b->len)
        buf_addstr(b, ", ");
    buf_addstr(b, "{\"env\": ");
    buf_add_json_string(b, env->unique_name, strlen(env->unique_name));
    if (rc == 0) {
        log_info("capture: %s: point %s (%llu records changed)", env->unique_name, res->point,
                 (unsigned long long)res->records_changed);
        buf_addstr(b, ", \"state\": \"done\", \"point\": ");
        buf_add_json_string(b, res->point, strlen(res->point));
        buf_printf(b, ", \"records_changed\": %llu, \"tables_failed\": %llu}",
                   (unsigned long long)res->records_changed,
                   (unsigned long long)res->tables_failed);
        return;
    }
    if (rc != -EPERM) {
        log_warn("capture: %s: %s", env->unique_name, dverr_msg(err));
        ps->failed++;
    }
    buf_printf(b, ", \"state\": \"%s\", \"error\": ", rc == -EPERM ? "skipped" : "failed");
    buf_add_json_string(b, dverr_msg(err), strlen(dverr_msg(err)));
    buf_addch(b, '}');
}

/* One pass, recorded as an operation (unrecorded only when out of memory). */
static void loop_pass(struct ops *o)
{
    struct dverr err = {0};
    struct capture_opts opts = {0};
    struct pass ps = {0};
    ps.observer = &o->observer;
    if (o->observer.pass)
        o->observer.pass(o->observer.ctx, false);
    opts.cancel = &o->cancel;
    opts.env_done = loop_env_done;
    opts.env_done_ctx = &ps;
    ps.op = op_new(o, "capture", NULL);
    if (ps.op) {
        pthread_mutex_lock(&o->mu);
        add_locked(o, ps.op);
        pthread_mutex_unlock(&o->mu);
        save(o, ps.op, true);
        opts.progress = backup_progress;
        opts.progress_ctx = ps.op;
    }
    int rc = capture_all(o->dv, o->repo, o->cfg, &opts, &err);
    if (rc && rc != -ECANCELED)
        log_warn("capture: %s", dverr_msg(&err));
    if (o->observer.pass)
        o->observer.pass(o->observer.ctx, true);
    if (ps.op) {
        struct buf b = BUF_INIT;
        buf_addstr(&b, "{\"environments\": [");
        buf_add(&b, ps.envs.data ? ps.envs.data : "", ps.envs.len);
        buf_addstr(&b, "]}");
        set_progress(ps.op, &b, false);
        if (rc == -ECANCELED)
            finish(o, ps.op, rc, "interrupted", "the mount stopped during the capture");
        else if (rc || ps.failed)
            finish(o, ps.op, rc ? rc : -EIO, "failed",
                   rc ? dverr_msg(&err) : "some environments failed (see progress)");
        else
            finish(o, ps.op, 0, "done", NULL);
    }
    buf_release(&ps.envs);
}

static void *loop_main(void *arg)
{
    struct ops *o = arg;
    while (!atomic_load(&o->cancel)) {
        int64_t start = now_ms();
        loop_pass(o);
        int64_t next = start + o->every * 1000;
        pthread_mutex_lock(&o->mu);
        while (!atomic_load(&o->cancel) && now_ms() < next) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&o->cond, &o->mu, &ts);
        }
        pthread_mutex_unlock(&o->mu);
    }
    return NULL;
}

int ops_capture_loop_start(struct ops *o, int64_t every_s, struct dverr *err)
{
    if (every_s <= 0)
        return dverr_set(err, -EINVAL, "the capture interval must be positive");
    pthread_mutex_lock(&o->mu);
    if (o->loop_started) {
        pthread_mutex_unlock(&o->mu);
        return dverr_set(err, -EBUSY, "the capture loop is already running");
    }
    o->every = every_s;
    int rc = thread_start(&o->loop_thread, loop_main, o);
    if (rc == 0)
        o->loop_started = true;
    else
        o->every = 0;
    pthread_mutex_unlock(&o->mu);
    return rc ? dverr_set(err, -rc, "cannot start the capture loop") : 0;
}

void ops_observe_captures(struct ops *o, const struct ops_capture_observer *obs)
{
    pthread_mutex_lock(&o->mu);
    if (!o->loop_started)
        o->observer = *obs;
    pthread_mutex_unlock(&o->mu);
}

int64_t ops_capture_every(struct ops *o)
{
    pthread_mutex_lock(&o->mu);
    int64_t e = o->every;
    pthread_mutex_unlock(&o->mu);
    return e;
}

/* ---- reading ---- */
int ops_list(struct ops *o, char ***ids, size_t *n)
{
    pthread_mutex_lock(&o->mu);
    char **v = calloc(o->n ? o->n : 1, sizeof *v);
    size_t k = 0;
    for (struct op *x = o->head; v && x; x = x->next)
        if ((v[k] = strdup(x->id)))
            k++;
    pthread_mutex_unlock(&o->mu);
    if (!v)
        return -ENOMEM;
    *ids = v;
    *n = k;
    return 0;
}

int ops_json(struct ops *o, const char *id, struct buf *out)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&o->mu);
    for (struct op *x = o->head; x; x = x->next)
        if (!strcmp(x->id, id)) {
            render_locked(x, out);
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

int ops_status(struct ops *o, const char *env, const char *point, struct buf *out)
{
    struct op *found = NULL;
    const char *kind = point ? "restore" : "backup";
    pthread_mutex_lock(&o->mu);
    for (struct op *x = o->head; x; x = x->next)
        if (!strcmp(x->kind, kind) && x->env && !strcmp(x->env, env) &&
            (!point || (x->point && !strcmp(x->point, point))))
            found = x;
    if (found)
        render_locked(found, out);
    pthread_mutex_unlock(&o->mu);
    if (!found)
        buf_printf(out, "no %s has been requested here; write %s\n", kind,
                   point ? "'target=ENV confirm=ENV' to restore this point"
                         : "a label to take a manual backup");
    return 0;
}

int ops_wait(struct ops *o, const char *id, int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    int rc = -ENOENT;
    pthread_mutex_lock(&o->mu);
    for (;;) {
        struct op *f = NULL;
        for (struct op *x = o->head; x; x = x->next)
            if (!strcmp(x->id, id))
                f = x;
        if (!f) {
            rc = -ENOENT;
            break;
        }
        if (strcmp(f->state, "running") != 0) {
            rc = 0;
            break;
        }
        if (now_ms() >= end) {
            rc = -ETIMEDOUT;
            break;
        }
        struct timespec ts = timespec_in_ms(CLOCK_REALTIME, 100);
        pthread_cond_timedwait(&o->cond, &o->mu, &ts);
    }
    pthread_mutex_unlock(&o->mu);
    return rc;
}

/* ---- lifecycle ---- */
static const char *jstr(cJSON *o, const char *k)
{
    cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Load the documents of earlier runs (the newest OPS_KEEP). */
static void load_saved(struct ops *o)
{
    DIR *d = opendir(o->state_dir);
    if (!d)
        return;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **v = realloc(names, cap * sizeof *v);
            if (!v)
                break;
            names = v;
        }
        if ((names[n] = strdup(de->d_name)))
            n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = n > OPS_KEEP ? n - OPS_KEEP : 0; i < n; i++) {
        char path[4096];
        struct buf b = BUF_INIT;
        snprintf(path, sizeof path, "%s/%s", o->state_dir, names[i]);
        cJSON *j = NULL;
        if (read_file(path, 1 << 20, &b) == 0)
            j = cJSON_ParseWithLength(b.data, b.len);
        buf_release(&b);
        const char *id = jstr(j, "id"), *kind = jstr(j, "kind"), *state = jstr(j, "state");
        if (id && kind && state && strlen(id) < 64 && strlen(kind) < 16) {
            struct op *op = calloc(1, sizeof *op);
            if (op) {
                op->o = o;
                snprintf(op->id, sizeof op->id, "%s", id);
                snprintf(op->kind, sizeof op->kind, "%s", kind);
                snprintf(op->state, sizeof op->state, "%s",
                         strcmp(state, "running") ? state : "interrupted");
                op->env = xstrdup(jstr(j, "env"));
                op->label = xstrdup(jstr(j, "label"));
                op->target = xstrdup(jstr(j, "target"));
                op->error = xstrdup(jstr(j, "error"));
                if (!strcmp(kind, "backup"))
                    op->result_point = xstrdup(jstr(j, "point"));
                else
                    op->point = xstrdup(jstr(j, "point"));
                time_t t;
                if (jstr(j, "started_at") && rfc3339_to_time(jstr(j, "started_at"), &t) == 0)
                    op->started = t;
                if (jstr(j, "finished_at") && rfc3339_to_time(jstr(j, "finished_at"), &t) == 0)
                    op->finished = t;
                cJSON *pr = cJSON_GetObjectItemCaseSensitive(j, "progress");
                if (pr && !cJSON_IsNull(pr))
                    op->progress_json = cJSON_PrintUnformatted(pr);
                if (!strcmp(state, "running") && !op->error)
                    op->error = strdup("the process running it stopped before it finished");
                add_locked(o, op);
                if (!strcmp(state, "running"))
                    save(o, op, true);
            }
        }
        cJSON_Delete(j);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

int ops_new(struct repo *repo, struct dv_client *dv, const struct config *cfg,
            const char *state_dir, struct ops **out, struct dverr *err)
{
    struct ops *o = calloc(1, sizeof *o);
    if (!o)
        return dverr_set(err, -ENOMEM, "out of memory");
    o->repo = repo;
    o->dv = dv;
    o->cfg = cfg;
    pthread_mutex_init(&o->mu, NULL);
    pthread_cond_init(&o->cond, NULL);
    o->state_dir = strdup(state_dir);
    int rc = o->state_dir ? mkdir_p(state_dir, 0700) : -ENOMEM;
    if (rc) {
        dverr_set(err, rc, "operations directory %s: %s", state_dir, strerror(-rc));
        ops_free(o);
        return rc;
    }
    load_saved(o);
    *out = o;
    return 0;
}

void ops_free(struct ops *o)
{
    if (!o)
        return;
    atomic_store(&o->cancel, 1);
    pthread_mutex_lock(&o->mu);
    pthread_cond_broadcast(&o->cond);
    pthread_mutex_unlock(&o->mu);
    if (o->loop_started)
        pthread_join(o->loop_thread, NULL);
    for (struct op *x = o->head; x; x = x->next)
        if (x->has_thread) {
            pthread_join(x->thread, NULL);
            x->has_thread = false;
        }
    for (struct op *x = o->head, *next; x; x = next) {
        next = x->next;
        op_free(x);
    }
    pthread_mutex_destroy(&o->mu);
    pthread_cond_destroy(&o->cond);
    free(o->state_dir);
    free(o);
}
