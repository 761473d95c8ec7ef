/* webwrite_privileges: who may write what, in each org's Web API (webapi_int.h).
 *   - Tables no client writes (audit, activitypointer, activityparty) answer every write as the
 *     service does for a message a table lacks: 405 "The 'Create' method does not support entities
 *     of type 'activityparty'. MessageProcessorCache returned MessageProcessor.Empty." So does a
 *     delete of a systemuser (users leave through Entra ID, never through a delete).
 *   - Principals and configuration (systemuser, team, businessunit, transactioncurrency): the
 *     application user dvsim serves as holds no privilege to create, write or delete them; such a
 *     write gets the service's 403 0x80040220 "Principal user (Id=..., type=8, ...), is missing
 *     prvCreateUser privilege (Id=...) on OTC=8 for entity 'systemuser'."
 *   - Business logic: MSCRM.BypassBusinessLogicExecution (CustomSync, CustomAsync) needs
 *     prvBypassCustomBusinessLogic and MSCRM.BypassCustomPluginExecution: true needs
 *     prvBypassCustomPlugins; without them (dvsim --no-bypass-privilege, or /_sim/config) a write
 *     that carries the header gets the same 403. MSCRM.SuppressCallbackRegistrationExpanderJob
 *     needs no privilege. In $batch, a part's own header applies to it, else its $batch's.
 *   - The application user's privileges as RetrieveUserPrivileges lists them: create, read, write,
 *     delete, append, append to, assign and share on the data tables, read on the rest, and the
 *     two bypass privileges while it holds them.
 * Threading: d->bypass_privilege is read under d->lock; nothing else is shared. */
#include "tools/dvsim/webapi_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PRV_BYPASS_LOGIC "prvBypassCustomBusinessLogic"
#define PRV_BYPASS_PLUGINS "prvBypassCustomPlugins"

void webwrite_privilege_id(const char *name, char out[37])
{
    if (!strcmp(name, PRV_BYPASS_LOGIC)) {
        snprintf(out, 37, "0ea552b0-a491-4470-9a1b-82068deccf66");
        return;
    }
    if (!strcmp(name, PRV_BYPASS_PLUGINS)) {
        snprintf(out, 37, "148a9eaf-d0c4-4196-9852-c3a38e35f6a1");
        return;
    }
    char hex[65];
    sha256_hex(name, strlen(name), hex);
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static bool holds_bypass(struct dvsim *d)
{
    pthread_mutex_lock(&d->lock);
    bool yes = d->bypass_privilege;
    pthread_mutex_unlock(&d->lock);
    return yes;
}

int webwrite_app_privileges(struct dvsim *d, struct privileges *p)
{
    static const char *const verbs[] = {"Create", "Read", "Write", "Delete", "Append", "AppendTo", "Assign", "Share"};
    p->n = 0;
    for (int i = 0; i < N_TABLES; i++) {
        const struct table_def *t = &dvschema_tables[i];
        bool seen = false;
        for (int k = 0; k < i && t->privilege; k++)
            seen |= dvschema_tables[k].privilege && !strcmp(dvschema_tables[k].privilege, t->privilege);
        if (!t->privilege || seen)
            continue;
        for (int v = 0; v < 8; v++) {
            if (t->writes != TW_DATA && v != 1)
                continue; /* read only */
            snprintf(p->name[p->n++], sizeof p->name[0], "prv%s%s", verbs[v], t->privilege);
        }
    }
    if (holds_bypass(d)) {
        snprintf(p->name[p->n++], sizeof p->name[0], "%s", PRV_BYPASS_LOGIC);
        snprintf(p->name[p->n++], sizeof p->name[0], "%s", PRV_BYPASS_PLUGINS);
    }
    return 0;
}

/* The service's answer to a call the application user lacks `privilege` for. */
static void missing_privilege(struct req *r, const char *privilege, const struct table_def *t)
{
    char app[37], pid[37];
    size_t n = 0;
    struct privileges *p = malloc(sizeof *p);
    if (p && !webwrite_app_privileges(r->d, p))
        n = p->n;
    free(p);
    dvschema_app_user_id(r->env, app);
    webwrite_privilege_id(privilege, pid);
    sreply_error(r, 403, "0x80040220",
                 "Principal user (Id=%s, type=8, roleCount=1, privilegeCount=%zu, accessMode=4), is missing %s "
                 "privilege (Id=%s) on OTC=%d for entity '%s'. context.Caller=%s",
                 app, n, privilege, pid, t ? t->object_type_code : 0, t ? t->logical : "none", app);
}

/* The SDK message a write request stands for. */
static const char *message_of(struct req *r)
{
    if (!strcmp(r->method, "DELETE"))
        return "Delete";
    if (!strcmp(r->method, "POST"))
        return "Create";
    return "Update";
}

int webwrite_refuse_table(struct req *r, const struct table_def *t)
{
    const char *message = message_of(r);
    if (t->writes == TW_NONE || (t->writes == TW_PRINCIPAL && dvschema_table_index(t) == T_SYSTEMUSER &&
                                 !strcmp(message, "Delete"))) {
        sreply_error(r, 405, "0x80040800",
                     "The '%s' method does not support entities of type '%s'. MessageProcessorCache returned "
                     "MessageProcessor.Empty.", message, t->logical);
        return -EPERM;
    }
    if (t->writes == TW_PRINCIPAL) {
        char privilege[96];
        snprintf(privilege, sizeof privilege, "prv%s%s", !strcmp(message, "Update") ? "Write" : message,
                 t->privilege);
        missing_privilege(r, privilege, t);
        return -EPERM;
    }
    return 0;
}

static void bypass_from(struct req *r, struct bypass *b, bool *logic, bool *plugins, bool *flows)
{
    const char *v = sreq_header(r, "MSCRM.BypassBusinessLogicExecution");
    if (v && !*logic) {
        snprintf(b->business_logic, sizeof b->business_logic, "%s", v);
        *logic = true;
    }
    v = sreq_header(r, "MSCRM.BypassCustomPluginExecution");
    if (v && !*plugins) {
        b->custom_plugins = !strcasecmp(v, "true");
        *plugins = true;
    }
    v = sreq_header(r, "MSCRM.SuppressCallbackRegistrationExpanderJob");
    if (v && !*flows) {
        b->suppress_flows = !strcasecmp(v, "true");
        *flows = true;
    }
}

void dvsim_bypass_of(struct req *r, struct bypass *b)
{
    bool logic = false, plugins = false, flows = false;
    memset(b, 0, sizeof *b);
    bypass_from(r, b, &logic, &plugins, &flows);
    if (r->outer)
        bypass_from(r->outer, b, &logic, &plugins, &flows);
}

bool webwrite_bypasses_plugins(const struct bypass *b)
{
    return b->custom_plugins || strcasestr(b->business_logic, "CustomSync") != NULL;
}

int webwrite_business_logic(struct req *r, const struct table_def *t, struct bypass *b)
{
    dvsim_bypass_of(r, b);
    if ((b->business_logic[0] || b->custom_plugins) && !holds_bypass(r->d)) {
        missing_privilege(r, b->business_logic[0] ? PRV_BYPASS_LOGIC : PRV_BYPASS_PLUGINS, t);
        return -EPERM;
    }
    return 0;
}
