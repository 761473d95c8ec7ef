/* webwrite_actions: the Web API's messages beyond record reads and writes that dvsim serves
 * (webapi_int.h):
 *   POST /CloseIncident    {"IncidentResolution":{"subject":..,"incidentid@odata.bind":"/incidents(<id>)"},
 *                           "Status":5}   resolves an active case (Status: a status of state
 *                           Resolved, 5 Problem Solved or 1000 Information Provided)
 *   POST /WinOpportunity   {"OpportunityClose":{"subject":..,"opportunityid@odata.bind":"/opportunities(<id>)",
 *                           "actualend":..},"Status":3}   wins an open opportunity
 *   POST /LoseOpportunity  the same with Status 4 (Canceled) or 5 (Out-Sold)
 *       Each sets statecode and statuscode (an opportunity also its actualclosedate, from the
 *       close's actualend, else today), stamps and audits the record, and answers 204; also
 *       inside $batch. A closed record, a status of another state or a missing parameter is
 *       refused in the service's shape. The resolution and close records themselves are not
 *       kept (dvsim has no incidentresolution or opportunityclose table).
 *   GET /WhoAmI            {UserId, BusinessUnitId, OrganizationId} of the application user
 *   GET /systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()
 *                          {"RolePrivileges":[{Depth, PrivilegeId, BusinessUnitId, PrivilegeName}]}:
 *                          the application user's privileges (webwrite_privileges.c), read
 *                          privileges for any other user of the org
 * Threading: the actions run in a write session (d->write_lock); the functions read with a
 * pooled connection of their own. */
#include "tools/dvsim/webapi_int.h"

#include "backend/base/json.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct action_def {
    const char *name, *parameter, *bind; /* message, its entity parameter, the bind inside it */
    int table, state;                    /* the record's table, the state it closes into */
};
static const struct action_def actions[] = {
    {"CloseIncident", "IncidentResolution", "incidentid@odata.bind", T_INCIDENT, 1},
    {"WinOpportunity", "OpportunityClose", "opportunityid@odata.bind", T_OPPORTUNITY, 1},
    {"LoseOpportunity", "OpportunityClose", "opportunityid@odata.bind", T_OPPORTUNITY, 2},
};

static void required(struct req *r, const char *what)
{
    sreply_error(r, 400, "0x80040203", "Required field '%s' is missing", what);
}

void webwrite_action(struct req *r, const char *name)
{
    const struct action_def *a = NULL;
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (!strcmp(actions[i].name, name))
            a = &actions[i];
    if (!a || strcmp(r->method, "POST") != 0) {
        sreply_error(r, 405, "0x80060888", "Method %s is not allowed on %s.", r->method, name);
        return;
    }
    const struct table_def *t = &dvschema_tables[a->table];
    struct bypass bl;
    if (webwrite_business_logic(r, t, &bl))
        return;
    struct json_doc *doc = NULL;
    struct wsess ws = {NULL, false};
    struct rec rec;
    struct buf out = BUF_INIT;
    char *line = NULL;
    size_t len = 0;
    bool ok = false;
    srec_init(&rec);
    const struct json_node *root = NULL;
    if (json_parse(r->body.data ? r->body.data : "", r->body.len, NULL, &doc, NULL) == 0)
        root = json_root(doc);
    if (!root || root->type != JSON_OBJECT) {
        sreply_error(r, 400, "0x80048d19", "The body of %s must be a JSON object.", name);
        goto done;
    }
    const struct json_node *entity = json_get(root, a->parameter), *status = json_get(root, "Status");
    const char *ref = entity && entity->type == JSON_OBJECT ? json_get_str(entity, a->bind) : NULL;
    if (!entity || entity->type != JSON_OBJECT) {
        required(r, a->parameter);
        goto done;
    }
    if (!status || status->type != JSON_NUMBER || strpbrk(status->str, ".eE")) {
        required(r, "Status");
        goto done;
    }
    const struct table_def *rt = NULL;
    char id[37], set[96];
    if (!ref || webwrite_resolve_ref(ref, &rt, id, set, sizeof set) || rt != t) {
        sreply_error(r, 400, "0x80040203", "The %s must name the %s to close with %s.", a->parameter, t->logical,
                     a->bind);
        goto done;
    }
    int st = (int)strtol(status->str, NULL, 10);
    const struct col_def *status_col = dvschema_col_by_member(t, "statuscode", 10);
    if (dvschema_status_state(status_col, st) != a->state) {
        const char *label = dvschema_option_label(dvschema_col_by_member(t, "statecode", 9), a->state);
        sreply_error(r, 400, "0x80048408", "%d is not a valid status code for state code %sState.%s on %s with Id %s.",
                     st, t->schema, label, t->logical, id);
        goto done;
    }
    if (webwrite_session_begin(r, &ws)) {
        sreply_error(r, 503, "0x80040216", "database busy");
        goto done;
    }
    int tid = table_id(r->env, a->table);
    int rc = dvstore_get_record(ws.db, tid, id, &line, &len);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, id);
        goto out;
    }
    if (rc || srec_from_line(&rec, line, len)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    int state = webwrite_int_member(&rec, "statecode");
    if (webwrite_closed(t, state)) {
        webwrite_reply_closed(r, t, state);
        goto out;
    }
    webwrite_set_state(&rec, t, a->state, st);
    if (a->table == T_OPPORTUNITY) {
        const char *end = json_get_str(entity, "actualend");
        char date[16], q[24];
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        if (end && strlen(end) >= 10)
            snprintf(date, sizeof date, "%.10s", end);
        else
            strftime(date, sizeof date, "%Y-%m-%d", &tm);
        snprintf(q, sizeof q, "\"%s\"", date);
        webwrite_set_col(&rec, dvschema_col_by_member(t, "actualclosedate", 15), "actualclosedate", q, strlen(q));
    }
    struct write_ctx w = {r->d, ws.db, r->env, true};
    if (webwrite_store(&w, t, id, &rec, false, &out)) {
        sreply_error(r, 500, "0x80040216", "database error");
        goto out;
    }
    ok = true;
out:
    ok = webwrite_session_finish(r, &ws, ok);
    if (ok)
        webwrite_reply_no_content(r);
done:
    json_doc_free(doc);
    free(line);
    srec_release(&rec);
    buf_release(&out);
}

static void send_json(struct req *r, cJSON *o, const char *context)
{
    struct buf ctx = BUF_INIT;
    webapi_base(r, &ctx);
    buf_printf(&ctx, "/$metadata#%s", context);
    cJSON_AddStringToObject(o, "@odata.context", ctx.data ? ctx.data : "");
    buf_release(&ctx);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    buf_reset(&r->out);
    buf_addstr(&r->out, s ? s : "{}");
    free(s);
    sreply_json(r, 200);
}

void webwrite_whoami(struct req *r)
{
    char user[37], bu[37], org[37];
    if (strcmp(r->method, "GET") != 0) {
        sreply_error(r, 405, "0x80060888", "WhoAmI is a function: use GET.");
        return;
    }
    dvschema_app_user_id(r->env, user);
    dvseed_principal_id(r->d, r->env, T_BUSINESSUNIT, 0, bu);
    dvschema_org_id(r->env, org);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "BusinessUnitId", bu);
    cJSON_AddStringToObject(o, "UserId", user);
    cJSON_AddStringToObject(o, "OrganizationId", org);
    send_json(r, o, "Microsoft.Dynamics.CRM.WhoAmIResponse");
}

void webwrite_user_privileges(struct req *r, const char *user_id)
{
    if (strcmp(r->method, "GET") != 0) {
        sreply_error(r, 405, "0x80060888", "RetrieveUserPrivileges is a function: use GET.");
        return;
    }
    sqlite3 *db = dvstore_get(r->d->store);
    char *line = NULL;
    size_t len;
    int rc = db ? dvstore_get_record(db, table_id(r->env, T_SYSTEMUSER), user_id, &line, &len) : -EIO;
    dvstore_put(r->d->store, db);
    free(line);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "systemuser With Id = %s Does Not Exist", user_id);
        return;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        return;
    }
    struct privileges *p = malloc(sizeof *p);
    if (!p || webwrite_app_privileges(r->d, p)) {
        free(p);
        sreply_error(r, 500, "0x80040216", "out of memory");
        return;
    }
    char app[37], bu[37], pid[37];
    dvschema_app_user_id(r->env, app);
    dvseed_principal_id(r->d, r->env, T_BUSINESSUNIT, 0, bu);
    bool is_app = strcmp(app, user_id) == 0;
    cJSON *o = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(o, "RolePrivileges");
    for (size_t i = 0; i < p->n; i++) {
        if (!is_app && strncmp(p->name[i], "prvRead", 7) != 0)
            continue;
        cJSON *x = cJSON_CreateObject();
        webwrite_privilege_id(p->name[i], pid);
        cJSON_AddStringToObject(x, "Depth", is_app ? "Global" : "Basic");
        cJSON_AddStringToObject(x, "PrivilegeId", pid);
        cJSON_AddStringToObject(x, "BusinessUnitId", bu);
        cJSON_AddStringToObject(x, "PrivilegeName", p->name[i]);
        cJSON_AddItemToArray(arr, x);
    }
    free(p);
    send_json(r, o, "Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse");
}
