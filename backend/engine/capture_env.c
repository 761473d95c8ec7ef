/* capture_env: one environment's capture pass, and capture_all over the environments the admin
 * API lists (contract in capture.h; how one table is read: capture.c).
 *
 * capture_env checks the policy and the environment's unique name (it names repository
 * directories), opens the repository's capture (a catalog transaction), lists the tables (their
 * definitions read once per change: capture_meta.c) and
 * runs one job per table (capture_run_job) on up to opts->concurrency worker threads, biggest
 * tables first; the configuration's tables_include and tables_exclude patterns leave tables out
 * (one not_captured entry says so). Which tables are read is decided from their definitions: a
 * virtual table (TableType Virtual) holds external data and is never read (a not_captured entry
 * each); an elastic table is read in full every pass, its rows keyed by id and partitionid
 * (capture_int.h; restore writes them back in their partition). A table that failed, or whose
 * definition came incomplete (its relationships could not be read), is kept as of the previous
 * point and listed in not_captured with the reason, next to what dvsnap never captures (apps,
 * flows, ...); a pass where no table could be read, or that was cancelled or ran out of memory,
 * commits nothing. Otherwise the point (tables, files, not_captured) is committed atomically by
 * the repository.
 * Threading: the workers take tables from cap->next under cap->lock and report progress under it
 * (capture_int.h); capture_env joins them before it builds the point on the caller's thread.
 * capture_all captures the environments one after the other. */
#include "backend/engine/capture_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/base/log.h"
#include "backend/engine/anomaly.h"
#include "backend/engine/policy.h"
#include "backend/engine/retention.h"

void capture_progress_locked(struct cap *cap, const char *table)
{
    if (!cap->opts || !cap->opts->progress)
        return;
    struct capture_progress p = {cap->env->unique_name, table, cap->tables_done, cap->n_jobs,
                                 cap->records};
    cap->opts->progress(cap->opts->progress_ctx, &p);
}

int capture_not_captured_open(struct buf *b, const char *what, const char *reason)
{
    int rc = buf_addstr(b, "{\"what\":");
    if (!rc)
        rc = buf_add_json_string(b, what, strlen(what));
    if (!rc)
        rc = buf_addstr(b, ",\"reason\":");
    return rc ? rc : buf_add_json_string(b, reason, strlen(reason));
}

static void *worker(void *arg)
{
    struct cap *cap = arg;
    for (;;) {
        pthread_mutex_lock(&cap->lock);
        if (cap->next >= cap->n_jobs || cancelled(cap)) {
            pthread_mutex_unlock(&cap->lock);
            return NULL;
        }
        struct table_job *j = &cap->jobs[cap->next++];
        capture_progress_locked(cap, j->t->logical_name);
        pthread_mutex_unlock(&cap->lock);

        /* a table whose definition came incomplete is not read: listed, kept as it was */
        int rc = j->t->definition_error
                     ? dverr_set(&j->err, -EIO, "%s", j->t->definition_error)
                     : capture_run_job(j);
        if (rc == 0)
            rc = capture_job_files_park(j);
        if (rc == 0) {
            j->ok = true;
        } else {
            j->rc = rc;
            const char *m = dverr_msg(&j->err);
            char reason[700];
            snprintf(reason, sizeof reason, "%s%s", *m ? m : strerror(-rc),
                     j->prev ? " (shown as of the previous point)" : "");
            j->fail_reason = strdup(reason);
            char esc[200];
            if (rc != -ECANCELED)
                log_warn("%s: table %s could not be read: %s", cap->env->unique_name,
                         log_escape(j->t->logical_name, esc, sizeof esc), reason);
            capture_job_reset_read(j);
            /* what its read gave the state is dropped: the table stays as of the previous point */
            if (rc != -ECANCELED && repo_capture_state_forget(cap->rc, j->t->logical_name))
                j->rc = -ENOMEM; /* the pass must not commit a state the point does not match */
        }
        segment_writer_abort(j->sw);
        j->sw = NULL;
        km_release(&j->map);
        pthread_mutex_lock(&cap->lock);
        cap->tables_done++;
        capture_progress_locked(cap, NULL);
        pthread_mutex_unlock(&cap->lock);
    }
}

static const struct {
    const char *what, *reason;
} not_in_scope[] = {
    {"apps", "canvas and model-driven apps are not table data; dvsnap captures tables, schema, "
             "attachments, file columns and audit records"},
    {"flows", "Power Automate flows are not captured"},
    {"Power Pages", "Power Pages sites are not captured"},
    {"solutions", "solutions and their customisations are not captured (table definitions are, "
                  "under schema/)"},
    {"Power BI", "Power BI reports and datasets are not captured"},
    {"external data", "virtual tables and other data that lives outside Dataverse are not "
                      "captured"},
};

/* The not_captured entry of the tables the configuration leaves out (one, whatever their
 * number: the patterns say which). */
static int add_excluded(struct buf *nc, const struct config *cfg, size_t n)
{
    struct buf what = BUF_INIT, why = BUF_INIT;
    int rc = buf_printf(&what, "%zu table%s", n, n == 1 ? "" : "s");
    if (!rc)
        rc = buf_addstr(&why, "left out by the configuration:");
    for (int k = 0; k < 2 && !rc; k++) {
        char *const *list = k ? cfg->tables_exclude : cfg->tables_include;
        if (!list)
            continue;
        rc = buf_addstr(&why, k ? " tables_exclude =" : " tables_include =");
        for (char *const *p = list; *p && !rc; p++)
            rc = buf_printf(&why, " %s", *p);
    }
    if (!rc)
        rc = capture_not_captured_open(nc, what.data, why.data);
    if (!rc)
        rc = buf_addstr(nc, "},");
    buf_release(&what);
    buf_release(&why);
    return rc;
}

/* The not_captured entry of a virtual table: its rows live in another system, which a backup of
 * Dataverse does not hold (and whose provider may fail any read): it is never read. Its "what"
 * is "virtual table <name>", not "table <name>", which names a table that should have been read
 * and was not (dvsnap status and the capture's outcome count those). */
static int add_virtual(struct buf *nc, const struct dv_table *t)
{
    char what[300], why[300];
    snprintf(what, sizeof what, "virtual table %s", t->logical_name);
    snprintf(why, sizeof why, "virtual table: external data (data provider %s); never read",
             t->data_provider_id ? t->data_provider_id : "not named");
    int rc = capture_not_captured_open(nc, what, why);
    return rc ? rc : buf_addstr(nc, "},");
}

static int cmp_jobs(const void *a, const void *b)
{
    const struct table_job *x = a, *y = b;
    uint64_t rx = x->prev ? x->prev->records : 0, ry = y->prev ? y->prev->records : 0;
    if (rx != ry)
        return rx > ry ? -1 : 1; /* biggest first: better balance across workers */
    return strcmp(x->t->logical_name, y->t->logical_name);
}

/* The jobs in table order: the point's file list is in that order (filelist.h). */
static int cmp_job_names(const void *a, const void *b)
{
    const struct table_job *x = *(const struct table_job *const *)a,
                           *y = *(const struct table_job *const *)b;
    return strcmp(x->t->logical_name, y->t->logical_name);
}

/* The point's file list, streamed table by table (capture_job_files_put) into the repository:
 * whatever the order the tables were read in, the same files give the same list, so a point whose
 * files did not change has its parent's chunks. *n_files: how many. */
static int put_files(struct cap *cap, struct point *p, size_t *n_files, struct dverr *err)
{
    struct table_job **order = calloc(cap->n_jobs ? cap->n_jobs : 1, sizeof *order);
    size_t n = 0;
    if (!order)
        return dverr_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < cap->n_jobs; i++)
        if (cap->jobs[i].ok)
            order[n++] = &cap->jobs[i];
    qsort(order, n, sizeof *order, cmp_job_names);
    int rc = repo_capture_files_begin(cap->rc, p->expires_at, err);
    for (size_t i = 0; i < n && !rc; i++) {
        rc = capture_job_files_put(order[i], err);
        capture_job_files_release(order[i]);
    }
    if (!rc)
        rc = repo_capture_files_finish(cap->rc, p, n_files, err);
    free(order);
    return rc;
}

static int cmp_tables(const void *a, const void *b)
{
    const struct point_table *x = a, *y = b;
    return strcmp(x->name, y->name);
}

/* Unique names become repository paths (points/<env>/, envs/<env>.json): hostile ones are
 * refused rather than rewritten, so two environments can never share a directory. */
static bool env_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 100 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int capture_env(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct dv_env *env, const struct capture_opts *opts,
                struct capture_result *res, struct dverr *err)
{
    struct capture_opts no_opts = {0};
    struct cap cap = {0};
    struct buf virtual_nc = BUF_INIT; /* the not_captured entries of the virtual tables */
    struct dv_table *tables = NULL;
    size_t n_tables = 0;
    struct point *p = NULL;
    pthread_t *threads = NULL;
    size_t n_threads = 0;
    struct dv_stats st0, st1;
    bool lock_init = false;
    int rc;

    if (!opts)
        opts = &no_opts;
    if (res)
        memset(res, 0, sizeof *res);
    if (!env_name_ok(env->unique_name)) {
        char esc[200];
        return dverr_set(err, -EINVAL,
                         "environment \"%s\": its unique name cannot name a repository directory "
                         "(letters, digits, '.', '_', '-'; 1 to 100 bytes; not starting with '.')",
                         log_escape(env->unique_name ? env->unique_name : "", esc, sizeof esc));
    }
    if ((rc = policy_backup_allowed(env, err)))
        return rc;
    if (opts->label && (rc = policy_manual_backup_allowed(env, err)))
        return rc;
    if (opts->label && !*opts->label)
        return dverr_set(err, -EINVAL, "a manual backup needs a label");
    dv_client_stats(dv, &st0);
    time_t taken_at = opts->now ? opts->now : time(NULL);

    cap.dv = dv;
    cap.repo = repo;
    cap.env = env;
    cap.opts = opts;
    cap.now = taken_at;
    if (pthread_mutex_init(&cap.lock, NULL))
        return dverr_set(err, -ENOMEM, "mutex");
    lock_init = true;
    if (env->raw_json && (rc = repo_env_doc_put(repo, env->unique_name, env->raw_json, err)))
        goto out;
    if ((rc = repo_capture_begin(repo, env->unique_name, &cap.rc, err)))
        goto out;
    cap.prev = repo_capture_previous(cap.rc);
    if ((rc = capture_definitions(&cap, cfg, &tables, &n_tables, err)))
        goto out;

    cap.jobs = calloc(n_tables ? n_tables : 1, sizeof *cap.jobs);
    if (!cap.jobs) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t n_excluded = 0;
    for (size_t i = 0; i < n_tables; i++) {
        struct table_job *j = &cap.jobs[cap.n_jobs];
        if (!tables[i].logical_name || !tables[i].entity_set || !tables[i].primary_id)
            continue;
        if (cfg && !config_table_selected(cfg, tables[i].logical_name)) {
            n_excluded++;
            continue;
        }
        if (tables[i].is_virtual) {
            if ((rc = add_virtual(&virtual_nc, &tables[i]))) {
                rc = dverr_set(err, rc, "out of memory");
                goto out;
            }
            continue;
        }
        bool dup = false;
        for (size_t k = 0; k < cap.n_jobs; k++)
            dup |= strcmp(cap.jobs[k].t->logical_name, tables[i].logical_name) == 0;
        if (dup)
            continue;
        j->cap = &cap;
        j->t = &tables[i];
        km_init(&j->map);
        for (size_t k = 0; cap.prev && k < cap.prev->n_tables; k++)
            if (strcmp(cap.prev->tables[k].name, tables[i].logical_name) == 0)
                j->prev = &cap.prev->tables[k];
        cap.n_jobs++;
    }
    qsort(cap.jobs, cap.n_jobs, sizeof *cap.jobs, cmp_jobs);

    int want = opts->concurrency > 0                   ? opts->concurrency
               : cfg && cfg->max_concurrency > 0 ? cfg->max_concurrency
                                                   : 4;
    cap.concurrency = want;
    n_threads = (size_t)want < cap.n_jobs ? (size_t)want : cap.n_jobs;
    threads = calloc(n_threads ? n_threads : 1, sizeof *threads);
    if (!threads) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    size_t started = 0;
    for (; started < n_threads; started++)
        if (thread_start(&threads[started], worker, &cap))
            break;
    if (started == 0 && n_threads)
        worker(&cap); /* no threads available: do it here */
    for (size_t i = 0; i < started; i++)
        pthread_join(threads[i], NULL);

    if (cancelled(&cap)) {
        rc = dverr_set(err, -ECANCELED, "%s: capture cancelled", env->unique_name);
        goto out;
    }
    size_t n_ok = 0, n_failed = 0;
    int first_rc = 0;
    for (size_t i = 0; i < cap.n_jobs; i++) {
        if (cap.jobs[i].ok) {
            n_ok++;
            continue;
        }
        n_failed++;
        if (!first_rc) {
            first_rc = cap.jobs[i].rc;
            dverr_set(err, first_rc, "%s: table %s: %s", env->unique_name,
                      cap.jobs[i].t->logical_name, dverr_msg(&cap.jobs[i].err));
        }
        if (cap.jobs[i].rc == -ECANCELED || cap.jobs[i].rc == -ENOMEM) {
            rc = cap.jobs[i].rc;
            goto out;
        }
    }
    if (cap.n_jobs && !n_ok) { /* nothing read at all: no point, say why */
        rc = first_rc;
        goto out;
    }
    if (err && first_rc) /* partial success: the failures are in not_captured, not an error */
        dverr_clear(err);

    /* ---- the point ---- */
    p = calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->env = xstrdup(env->unique_name);
    p->kind = xstrdup(opts->label ? "manual" : "system");
    p->label = xstrdup(opts->label);
    p->taken_at = taken_at;
    p->expires_at = retention_expires_at(cfg, env->unique_name, opts->label != NULL,
                                         policy_expires_at(env, taken_at), taken_at);
    p->env_json = xstrdup(env->raw_json);
    if (!p->env || !p->kind || (opts->label && !p->label) || (env->raw_json && !p->env_json))
        goto nomem;
    p->tables = calloc(cap.n_jobs ? cap.n_jobs : 1, sizeof *p->tables);
    if (!p->tables)
        goto nomem;
    if ((rc = capture_definitions_index(&cap, cfg, tables, n_tables, p, err)))
        goto out;
    struct buf nc = BUF_INIT;
    buf_addch(&nc, '[');
    for (size_t i = 0; i < sizeof not_in_scope / sizeof not_in_scope[0]; i++) {
        capture_not_captured_open(&nc, not_in_scope[i].what, not_in_scope[i].reason);
        buf_addstr(&nc, "},");
    }
    if (n_excluded && add_excluded(&nc, cfg, n_excluded))
        goto nomem;
    if (virtual_nc.len && buf_add(&nc, virtual_nc.data, virtual_nc.len))
        goto nomem;
    size_t n_files = 0;
    for (size_t i = 0; i < cap.n_jobs; i++) {
        struct table_job *j = &cap.jobs[i];
        if (!j->ok) {
            char what[300];
            snprintf(what, sizeof what, "table %s", j->t->logical_name);
            capture_not_captured_open(&nc, what,
                                      j->fail_reason ? j->fail_reason : "could not be read");
            buf_addstr(&nc, "},");
            if (res)
                res->tables_failed++;
            if (!j->prev || capture_carry_previous(j))
                continue;
            j->ok = true;
        } else if (res) {
            if (j->out.full_read_reason || !j->prev || !j->prev->delta_link ||
                !j->t->change_tracking)
                res->full_reads++;
            else
                res->delta_reads++;
            res->records_changed += j->out.created + j->out.updated + j->out.deleted;
        }
        if (j->problems.len)
            buf_add(&nc, j->problems.data, j->problems.len);
        if (j->t->logical_name && strcmp(j->t->logical_name, "audit") == 0)
            p->audit_table = strdup("audit");
        p->tables[p->n_tables++] = j->out;
        memset(&j->out, 0, sizeof j->out);
    }
    if (nc.len > 1)
        nc.len--; /* the last ',' */
    buf_addch(&nc, ']');
    if (!nc.data)
        goto nomem;
    p->not_captured_json = buf_detach(&nc);
    qsort(p->tables, p->n_tables, sizeof *p->tables, cmp_tables);
    if ((rc = put_files(&cap, p, &n_files, err)))
        goto out;

    if (anomaly_check(cfg, cap.prev, p))
        goto nomem;
    char prev_name[32] = "";
    if (cap.prev && cap.prev->name)
        snprintf(prev_name, sizeof prev_name, "%s", cap.prev->name);
    rc = repo_capture_commit(cap.rc, p, err);
    cap.rc = NULL;
    if (rc)
        goto out;
    if (p->anomaly_json) { /* the point stands; a hold or notify failure is only logged */
        anomaly_report(repo, cfg, prev_name[0] ? prev_name : NULL, p, taken_at);
        if (res) {
            res->anomaly = true;
            anomaly_note(p->anomaly_json, res->anomaly_note, sizeof res->anomaly_note);
        }
    }
    dv_client_stats(dv, &st1);
    if (res) {
        snprintf(res->point, sizeof res->point, "%s", p->name ? p->name : "");
        res->tables = p->n_tables;
        res->records_read = cap.records;
        res->requests = st1.requests - st0.requests;
        res->blobs_written = atomic_load(&cap.blobs_written);
        res->files = n_files;
    }
    goto out;
nomem:
    rc = dverr_set(err, -ENOMEM, "out of memory building the point");
out:
    buf_release(&virtual_nc);
    repo_capture_abort(cap.rc);
    point_free(p);
    for (size_t i = 0; i < cap.n_jobs; i++) {
        struct table_job *j = &cap.jobs[i];
        capture_job_reset_read(j);
        capture_point_table_release(&j->out);
        free(j->todo);
        for (size_t k = 0; k < j->n_file_cols; k++)
            free(j->file_cols[k]);
        free(j->file_cols);
        free(j->fail_reason);
        buf_release(&j->problems);
        buf_release(&j->line);
        buf_release(&j->row_key);
    }
    free(cap.jobs);
    free(threads);
    dv_tables_free(tables, n_tables);
    free(cap.metadata_stamp);
    if (lock_init)
        pthread_mutex_destroy(&cap.lock);
    return rc;
}

static bool env_wanted(const struct config *cfg, const struct capture_opts *opts, const char *name)
{
    if (opts && opts->only_envs) {
        for (const char *const *e = opts->only_envs; *e; e++)
            if (strcmp(*e, name) == 0)
                return true;
        return false;
    }
    return !cfg || config_env_selected(cfg, name);
}

int capture_all(struct dv_client *dv, struct repo *repo, const struct config *cfg,
                const struct capture_opts *opts, struct dverr *err)
{
    struct dv_env *envs = NULL;
    size_t n = 0;
    int first = 0;
    int rc = dv_env_list(dv, &envs, &n, err);
    if (rc)
        return rc;
    for (const char *const *e = opts && opts->only_envs ? opts->only_envs : NULL; e && *e; e++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= envs[i].unique_name && strcmp(envs[i].unique_name, *e) == 0;
        if (!found && !first)
            first = dverr_set(err, -ENOENT, "the admin API lists no environment named %s", *e);
    }
    for (size_t i = 0; i < n; i++) {
        const struct dv_env *env = &envs[i];
        struct capture_result res;
        struct dverr e = {0};
        if (!env->unique_name || !env_wanted(cfg, opts, env->unique_name))
            continue;
        if (opts && opts->cancel && atomic_load(opts->cancel)) {
            if (!first)
                first = dverr_set(err, -ECANCELED, "capture cancelled");
            break;
        }
        rc = policy_backup_allowed(env, &e);
        if (rc == 0) {
            rc = capture_env(dv, repo, cfg, env, opts, &res, &e);
            if (rc && !first)
                first = dverr_set(err, rc, "%s", dverr_msg(&e));
        } else if (env->raw_json && env_name_ok(env->unique_name)) {
            /* not backed up, but the mount still shows what it is */
            repo_env_doc_put(repo, env->unique_name, env->raw_json, NULL);
        }
        if (opts && opts->env_done)
            opts->env_done(opts->env_done_ctx, env, rc, rc ? NULL : &res, &e);
    }
    dv_env_list_free(envs, n);
    return first;
}
