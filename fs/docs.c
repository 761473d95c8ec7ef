/* docs: the documents the view generates: README.txt (fixed text), ENV/environment.json (from
 * the source's environment document, the environment's view and the control's capture period)
 * and what reading a control file shows (the control's status).
 *
 * environment.json lists the points whose capture flagged a mass delete ("anomalies") and the
 * active holds ("holds").
 * Limits: environment.json is rendered whole at each open and getattr (its size is known only by
 * rendering it); an environment document that is missing or does not parse gives nulls.
 * Threading: any thread; takes fsd->vmu briefly to read the environment's points, never across
 * the source's or the control's calls. */
#include "fs/fs_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char docs_readme_text[] =
    "dvsnap: Dataverse backups as files\n"
    "\n"
    "<env>/                         one directory per environment\n"
    "  environment.json             type, region, url, admin mode, retention, captures\n"
    "  latest -> <point>            the newest restore point\n"
    "  <YYYY-MM-DDTHHMMSSZ>/        one directory per restore point (UTC); never changes\n"
    "    backup.json                kind, label, taken_at, expires_at, tables, not captured\n"
    "    tables/<table>.json        the table at that point: one record per line, sorted by key\n"
    "    schema/<table>.json        the table definition\n"
    "    changes/<table>.json       records created/updated/deleted since the point before\n"
    "    files/<table>/<id>/<name>  attachments and file columns\n"
    "    audit.json                 audit records, when captured\n"
    "  labels/<label> -> ../<point> manual backups by label\n"
    "  at/<RFC 3339 time>           the point in force at that time (lookup only), e.g.\n"
    "                               ls at/2026-11-21T09:30:00Z/tables\n"
    ".operations/<id>.json          every backup and restore: state, progress, errors\n"
    "\n"
    "Control files (reachable by name, never listed; mount owner or root only):\n"
    "  echo LABEL > <env>/.backup                 take a manual backup labelled LABEL\n"
    "  cat <env>/.backup                          its progress, outcome or refusal\n"
    "  echo 'target=ENV confirm=ENV [tables=a,b] [audit=include|skip] [dry-run]' \\\n"
    "       > <env>/<point>/.restore              restore the point into a sandbox\n"
    "       more words: map=/abs/FILE (principal pairs), fallback_owner=systemuser:ID|team:ID,\n"
    "       business-logic=run (no bypass of plug-ins and flows; the default bypasses them)\n"
    "  cat <env>/<point>/.restore                 its progress, outcome or refusal\n"
    "  rmdir <env>/<point>                        delete a manual backup (system or held: EPERM)\n"
    "\n"
    "Everything else is read-only (EROFS).\n";
const size_t docs_readme_len = sizeof docs_readme_text - 1;


static bool streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

static const char *env_type(const char *sku, bool is_default)
{
    if (is_default)
        return "default";
    if (!sku)
        return "unknown";
    if (strcasecmp(sku, "Production") == 0)
        return "production";
    if (strcasecmp(sku, "Sandbox") == 0)
        return "sandbox";
    if (strcasecmp(sku, "Trial") == 0)
        return "trial";
    if (strcasecmp(sku, "Developer") == 0)
        return "developer";
    if (strcasecmp(sku, "Default") == 0)
        return "default";
    return "unknown";
}

static cJSON *jget(cJSON *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && o; tok = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, tok);
    return o;
}

static const char *jstr(cJSON *o, const char *path)
{
    cJSON *x = jget(o, path);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

int docs_env_json(struct fsd *f, const char *env, struct buf *out)
{
    struct buf doc = BUF_INIT;
    struct dverr err = {0};
    cJSON *raw = NULL;
    if (f->src->ops->env_doc(f->src->impl, env, &doc, &err) == 0 && doc.len)
        raw = cJSON_ParseWithLength(doc.data, doc.len);
    buf_release(&doc);
    cJSON *props = raw ? cJSON_GetObjectItemCaseSensitive(raw, "properties") : NULL;
    const char *sku = jstr(props, "environmentSku");
    cJSON *isdef = raw ? cJSON_GetObjectItemCaseSensitive(raw, "isDefault") : NULL;
    bool is_default = cJSON_IsTrue(isdef) || (sku && strcasecmp(sku, "Default") == 0);
    const char *runtime = jstr(props, "states.runtime.id");
    const char *ret = jstr(props, "retentionDetails.retentionPeriod");
    int ret_days = 0;
    if (ret && ret[0] == 'P')
        ret_days = (int)strtol(ret + 1, NULL, 10);

    size_t npts = 0;
    time_t last = 0;
    struct buf anomalies = BUF_INIT; /* the flagged points, a JSON array */
    buf_addch(&anomalies, '[');
    eview_refresh(f, env, (int)(ENV_TIMEOUT * 1000)); /* read before the directory was listed */
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e) {
        npts = e->n;
        last = e->n ? e->pts[e->n - 1].taken_at : 0;
        for (size_t i = 0; i < e->n; i++)
            if (e->pts[i].anomaly)
                buf_printf(&anomalies, "%s\"%s\"", anomalies.len > 1 ? "," : "", e->pts[i].name);
    }
    pthread_mutex_unlock(&f->vmu);
    buf_addch(&anomalies, ']');
    int64_t every = f->o->control && f->o->control->ops->capture_every
                        ? f->o->control->ops->capture_every(f->o->control->ctx)
                        : 0;

    buf_addstr(out, "{\n  \"name\": ");
    buf_add_json_string(out, env, strlen(env));
    buf_printf(out, ",\n  \"type\": \"%s\"", env_type(sku, is_default));
    const char *fields[][2] = {
        {"display_name", "displayName"},
        {"geo", NULL},
        {"region", "azureRegion"},
        {"url", "linkedEnvironmentMetadata.instanceUrl"},
        {"api_url", "linkedEnvironmentMetadata.instanceApiUrl"},
        {"state", "states.runtime.id"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *v = fields[i][1] ? jstr(props, fields[i][1]) : jstr(raw, "location");
        buf_printf(out, ",\n  \"%s\": ", fields[i][0]);
        if (v)
            buf_add_json_string(out, v, strlen(v));
        else
            buf_addstr(out, "null");
    }
    buf_printf(out, ",\n  \"admin_mode\": %s", streq(runtime, "AdminMode") ? "true" : "false");
    if (ret_days)
        buf_printf(out, ",\n  \"retention_days\": %d", ret_days);
    else
        buf_addstr(out, ",\n  \"retention_days\": null");
    buf_printf(out, ",\n  \"points\": %zu", npts);
    buf_addstr(out, ",\n  \"anomalies\": ");
    buf_addstr(out, anomalies.data ? anomalies.data : "[]");
    buf_release(&anomalies);
    buf_addstr(out, ",\n  \"holds\": ");
    size_t before = out->len;
    if (!f->src->ops->holds_json || f->src->ops->holds_json(f->src->impl, env, out) != 0) {
        out->len = before;
        buf_addstr(out, "[]");
    }
    char ts[32];
    if (last) {
        rfc3339_from_time(last, ts);
        buf_printf(out, ",\n  \"last_capture\": \"%s\"", ts);
        buf_printf(out, ",\n  \"capture_lag_s\": %lld", (long long)(time(NULL) - last));
    } else {
        buf_addstr(out, ",\n  \"last_capture\": null,\n  \"capture_lag_s\": null");
    }
    if (every > 0 && last) {
        rfc3339_from_time(last + (time_t)every, ts);
        buf_printf(out, ",\n  \"next_capture\": \"%s\"", ts);
    } else {
        buf_addstr(out, ",\n  \"next_capture\": null");
    }
    buf_printf(out, ",\n  \"capture_every_s\": %lld\n}\n", (long long)every);
    cJSON_Delete(raw);
    return 0;
}

int docs_status(struct fsd *f, const struct node *n, struct buf *out)
{
    struct fs_control *c = f->o->control;
    if (!c)
        return buf_addstr(out, "control files are not available in this mount\n");
    return c->ops->status(c->ctx, n->env, n->kind == N_RESTORE_CTL ? n->point : NULL, out);
}
