/* restore: the engine behind `.restore` and `dvsnap restore` (restore.h; docs/architecture.md section 6).
 *
 * restore_validate checks every rule with reads only (the point, the admin API's view of both
 * environments, the tenant's capacity, and the caller's privilege to bypass business logic:
 * WhoAmI + RetrieveUserPrivileges, unless business logic is to run) and refuses before anything
 * is written. restore_run then:
 *   1. takes a safety backup of the target (a manual capture labelled pre-restore-<op id>) when
 *      the target is backed up; that fresh point is also the target's current state for the
 *      comparison (no second full read); otherwise (dry-run, target not selected in the config)
 *      the affected tables are read in full from the target;
 *   2. maps the point's users, teams, business units and currencies to the target's
 *      (restore_map.c), then compares point and target per table by primary key, mapped and
 *      normalised content and state (restore_int.h); intersect (N:N) tables by their
 *      (entity1 id, entity2 id) pairs;
 *   3. writes only the difference as one stream of $batch requests of up to 1000 parts with
 *      continue-on-error, across tables (so a difference of k records costs about k/1000
 *      requests): upserts (PATCH by key, idempotent) with tables ordered so referenced tables
 *      come first, lookups to records not yet created deferred to a second pass, each record's
 *      state written after it (restore_write.c); then N:N associations ($ref); then deletes,
 *      referencing tables first. Every write carries the business-logic bypass headers unless
 *      business logic is to run. Every part's status is read; failed parts are retried (3
 *      rounds, backing off); what still fails is counted per table;
 *   4. uploads file and image columns (dv_file_upload), sets the target to administration mode,
 *      and records the outcome (with the mapping, the unmapped principals and the excluded
 *      tables).
 * A rerun after a kill or a network loss recomputes the difference, so it converges without
 * duplicates (creates are upserts by the point's key). Throttling (429 + Retry-After) and
 * transient failures are retried by the transport; a $batch that still fails is sent again
 * (its parts are idempotent) before the restore gives up.
 *
 * This file holds the rules (validate), the safety backup and the steps; the steps' work is in
 * restore_map.c and restore_compare.c (2), restore_parties.c, restore_write.c and
 * restore_batch.c (3), restore_files.c (4), and what they share in restore_int.h.
 *
 * Memory: per affected table a key map of the target's keys (a 56-byte slot with the 16-byte
 * digest, at a load of 3/8 to 3/4, and the key copied: 115 to 190 bytes a record with GUID keys,
 * measured with 0.1 to 1.5 million keys); record lines are streamed from the repository twice
 * (compare, write) and never held.
 * Threading: one restore runs on the caller's thread; progress is called from it. */
#include "backend/engine/restore_int.h"

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

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void set_state(struct rctx *c, const char *state)
{
    snprintf(c->out->state, sizeof(c->out->state), "%s", state);
    if (c->progress)
        c->progress(c->pctx, c->out);
}

void restore_report(struct rctx *c, bool force)
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

/* ---------------------------------------------------------------- rules */

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

bool restore_table_in_point(const struct point *p, const char *name)
{
    for (size_t i = 0; i < p->n_tables; i++)
        if (!strcmp(p->tables[i].name, name))
            return true;
    return false;
}

#define BYPASS_PRIVILEGE "prvBypassCustomBusinessLogic"

/* The caller in the target (WhoAmI: the fallback owner by default) and, unless business logic
 * is to run, its privilege to bypass it. */
static int check_caller(struct rctx *c)
{
    struct dv_whoami me;
    int rc = dv_whoami(c->dv, &c->target, &me, c->err);
    if (rc)
        return rc;
    snprintf(c->caller_id, sizeof(c->caller_id), "%s", me.user_id);
    if (c->req->run_business_logic)
        return 0;
    bool has = false;
    if ((rc = dv_user_has_privilege(c->dv, &c->target, me.user_id, BYPASS_PRIVILEGE, &has,
                                    c->err)))
        return rc;
    if (!has)
        return dverr_set(c->err, -EPERM,
                         "the application user %s of %s lacks the %s privilege, so plug-ins, "
                         "workflows and flows cannot be bypassed; nothing was written. Grant it "
                         "(a security role with that privilege), or restore with business logic "
                         "running (--allow-business-logic, business-logic=run)",
                         me.user_id, c->target.unique_name, BYPASS_PRIVILEGE);
    return 0;
}

/* Every rule, reads only. Fills c->point, c->source, c->target, c->caller_id. */
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
            if (!restore_table_in_point(c->point, *t))
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
    if (rc)
        return rc;
    return check_caller(c);
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
    return restore_index_files(&c->tfiles, c->safety);
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
    for (size_t i = 0; i < c->n_defs; i++) /* a write needs every table's lookups: all or none */
        if (c->defs[i].definition_error)
            return dverr_set(c->err, -EIO, "table %s of the target: %s", c->defs[i].logical_name,
                             c->defs[i].definition_error);
    {
        struct buf b = BUF_INIT;
        buf_printf(&b, "%s/api/data/v9.2/", c->target.api_url ? c->target.api_url : "");
        c->api_base = buf_detach(&b);
    }
    if ((rc = restore_index_files(&c->files, c->point)))
        return rc;
    restore_mark_file_columns(c, c->point);
    restore_mark_file_columns(c, c->safety);
    if ((rc = restore_map_principals(c)) || (rc = restore_plan_tables(c)) ||
        (rc = restore_parties_load(c)))
        return rc;
    for (size_t i = 0; i < c->n_tabs && !rc; i++) {
        if (!c->tabs[i].active)
            continue;
        rc = restore_compare_table(c, &c->tabs[i]);
        restore_report(c, true);
    }
    restore_skipped_fields_json(c);
    restore_map_outcome(c);
    if (rc || c->req->dry_run)
        return rc;

    set_state(c, "writing");
    rc = restore_write_changes(c);
    if (!rc)
        rc = restore_flush(c);
    if (!rc)
        rc = restore_retry_failed(c);
    if (!rc)
        rc = restore_upload_files(c);
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
    rmap_init(&c->parties_point);
    rmap_init(&c->parties_target);
    rmap_init(&c->party_bodies);
    restore_pmap_init(c->pm);
    /* plug-ins, real-time workflows and flows are bypassed on every write unless asked */
    static const char *const bypass[] = {
        "MSCRM.BypassBusinessLogicExecution: CustomSync,CustomAsync",
        "MSCRM.SuppressCallbackRegistrationExpanderJob: true", NULL};
    c->write_headers = req->run_business_logic ? NULL : bypass;
    out->business_logic_ran = req->run_business_logic;
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
        restore_part_release(&c->batch[i]);
    for (size_t i = 0; i < c->n_retry; i++)
        restore_part_release(&c->retry[i]);
    free(c->retry);
    for (size_t i = 0; i < c->n_tabs; i++) {
        for (size_t k = 0; c->tabs[i].def && c->tabs[i].def->is_elastic && k < c->tabs[i].map.cap; k++)
            if (c->tabs[i].map.slots[k].key)
                free(c->tabs[i].map.slots[k].ptr); /* the target's partitionid (restore_compare.c) */
        rmap_release(&c->tabs[i].map);
        strset_release(&c->tabs[i].skipped);
        for (int k = 0; k < 3; k++)
            strset_release(&c->tabs[i].keys[k]);
    }
    free(c->tabs);
    free(c->order);
    rmap_release(&c->files);
    rmap_release(&c->tfiles);
    rmap_release(&c->parties_point);
    rmap_release(&c->parties_target);
    for (size_t i = 0; i < c->party_bodies.cap; i++) {
        struct buf *b = c->party_bodies.slots[i].key ? c->party_bodies.slots[i].ptr : NULL;
        if (b) {
            buf_release(b);
            free(b);
        }
    }
    rmap_release(&c->party_bodies);
    for (int p = 0; p < PR_N; p++)
        restore_pmap_release(&c->pm[p]);
    dv_tables_free(c->defs, c->n_defs);
    point_free(c->point);
    point_free(c->safety);
    dv_env_release(&c->source);
    dv_env_release(&c->target);
    free(c->api_base);
    free(c);
    return rc;
}
