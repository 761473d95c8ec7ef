/* schema: the static definitions of the sample tenant: six environments, and in every org the
 * same nine tables (account, contact, opportunity, incident, systemuser, annotation, new_project
 * with a file column, the N:N intersect new_project_contact, audit). new_project has change
 * tracking off (custom tables default to off). Read-only data; thread-safe. */
#include "tools/dvsim/dvsim.h"

#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct option_def state_opts[] = {{0, "Active"}, {1, "Inactive"}, {0, NULL}};
static const struct option_def status_opts[] = {{1, "Active"}, {2, "Inactive"}, {0, NULL}};
static const struct option_def bool_opts[] = {{0, "No"}, {1, "Yes"}, {0, NULL}};
static const struct option_def custtype_opts[] = {
    {1, "Competitor"}, {2, "Consultant"}, {3, "Customer"}, {4, "Investor"}, {5, "Partner"},
    {6, "Influencer"}, {7, "Press"}, {8, "Prospect"}, {9, "Reseller"}, {10, "Supplier"},
    {11, "Vendor"}, {12, "Other"}, {0, NULL}};
static const struct option_def industry_opts[] = {
    {1, "Accounting"}, {2, "Agriculture and Non-petrol Natural Resource Extraction"},
    {3, "Broadcasting Printing and Publishing"}, {4, "Brokers"}, {6, "Business Services"},
    {7, "Consulting"}, {8, "Consumer Services"}, {12, "Financial"}, {19, "Inbound Capital Intensive Processing"},
    {25, "Retail"}, {29, "Transportation"}, {33, "Wholesale"}, {0, NULL}};
static const struct option_def gender_opts[] = {{1, "Male"}, {2, "Female"}, {0, NULL}};
static const struct option_def priority_opts[] = {{1, "High"}, {2, "Normal"}, {3, "Low"}, {0, NULL}};
static const struct option_def casetype_opts[] = {{1, "Question"}, {2, "Problem"}, {3, "Request"}, {0, NULL}};
static const struct option_def rating_opts[] = {{1, "Hot"}, {2, "Warm"}, {3, "Cold"}, {0, NULL}};
static const struct option_def operation_opts[] = {
    {1, "Create"}, {2, "Update"}, {3, "Delete"}, {4, "Access"}, {0, NULL}};
static const struct option_def stage_opts[] = {
    {100000000, "Planning"}, {100000001, "In Progress"}, {100000002, "On Hold"},
    {100000003, "Done"}, {0, NULL}};

#define PK(n) {n, COL_PK, COLF_CREATE, NULL, NULL, NULL}
#define COMMON_TAIL                                                                        \
    {"createdon", COL_DATETIME, 0, NULL, NULL, NULL},                                      \
    {"modifiedon", COL_DATETIME, 0, NULL, NULL, NULL},                                     \
    {"overriddencreatedon", COL_DATETIME, COLF_CREATE, NULL, NULL, NULL},                  \
    {"versionnumber", COL_VERSION, 0, NULL, NULL, NULL}

static const struct col_def account_cols[] = {
    PK("accountid"),
    {"name", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"accountnumber", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"description", COL_MEMO, COLF_RW, NULL, NULL, NULL},
    {"telephone1", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"address1_city", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"revenue", COL_MONEY, COLF_RW, NULL, NULL, NULL},
    {"numberofemployees", COL_INTEGER, COLF_RW, NULL, NULL, NULL},
    {"customertypecode", COL_PICKLIST, COLF_RW, NULL, NULL, custtype_opts},
    {"industrycode", COL_PICKLIST, COLF_RW, NULL, NULL, industry_opts},
    {"primarycontactid", COL_LOOKUP, COLF_RW, "contact", "primarycontactid", NULL},
    {"parentaccountid", COL_LOOKUP, COLF_RW, "account", "parentaccountid", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    {"statecode", COL_STATE, COLF_RW, NULL, NULL, state_opts},
    {"statuscode", COL_PICKLIST, COLF_RW, NULL, NULL, status_opts},
    COMMON_TAIL,
};
static const struct col_def contact_cols[] = {
    PK("contactid"),
    {"fullname", COL_STRING, 0, NULL, NULL, NULL},
    {"firstname", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"lastname", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"emailaddress1", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"jobtitle", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"birthdate", COL_DATEONLY, COLF_RW, NULL, NULL, NULL},
    {"annualincome", COL_MONEY, COLF_RW, NULL, NULL, NULL},
    {"gendercode", COL_PICKLIST, COLF_RW, NULL, NULL, gender_opts},
    {"donotemail", COL_BOOLEAN, COLF_RW, NULL, NULL, bool_opts},
    {"parentcustomerid", COL_CUSTOMER, COLF_RW, "account", "parentcustomerid_account", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    {"statecode", COL_STATE, COLF_RW, NULL, NULL, state_opts},
    COMMON_TAIL,
};
static const struct col_def opportunity_cols[] = {
    PK("opportunityid"),
    {"name", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"estimatedvalue", COL_MONEY, COLF_RW, NULL, NULL, NULL},
    {"closeprobability", COL_INTEGER, COLF_RW, NULL, NULL, NULL},
    {"estimatedclosedate", COL_DATEONLY, COLF_RW, NULL, NULL, NULL},
    {"opportunityratingcode", COL_PICKLIST, COLF_RW, NULL, NULL, rating_opts},
    {"customerid", COL_CUSTOMER, COLF_RW, "account", "customerid_account", NULL},
    {"parentcontactid", COL_LOOKUP, COLF_RW, "contact", "parentcontactid", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    {"statecode", COL_STATE, COLF_RW, NULL, NULL, state_opts},
    COMMON_TAIL,
};
static const struct col_def incident_cols[] = {
    PK("incidentid"),
    {"title", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"ticketnumber", COL_STRING, COLF_CREATE, NULL, NULL, NULL},
    {"description", COL_MEMO, COLF_RW, NULL, NULL, NULL},
    {"prioritycode", COL_PICKLIST, COLF_RW, NULL, NULL, priority_opts},
    {"casetypecode", COL_PICKLIST, COLF_RW, NULL, NULL, casetype_opts},
    {"customerid", COL_CUSTOMER, COLF_RW, "account", "customerid_account", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    {"statecode", COL_STATE, COLF_RW, NULL, NULL, state_opts},
    COMMON_TAIL,
};
static const struct col_def systemuser_cols[] = {
    PK("systemuserid"),
    {"fullname", COL_STRING, 0, NULL, NULL, NULL},
    {"firstname", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"lastname", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"domainname", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"internalemailaddress", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"isdisabled", COL_BOOLEAN, COLF_RW, NULL, NULL, bool_opts},
    COMMON_TAIL,
};
static const struct col_def annotation_cols[] = {
    PK("annotationid"),
    {"subject", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"notetext", COL_MEMO, COLF_RW, NULL, NULL, NULL},
    {"filename", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"mimetype", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"documentbody", COL_MEMO, COLF_RW, NULL, NULL, NULL},
    {"filesize", COL_INTEGER, 0, NULL, NULL, NULL},
    {"isdocument", COL_BOOLEAN, COLF_RW, NULL, NULL, bool_opts},
    {"objecttypecode", COL_STRING, COLF_CREATE, NULL, NULL, NULL},
    {"objectid", COL_LOOKUP, COLF_RW, "account", "objectid_account", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    COMMON_TAIL,
};
static const struct col_def project_cols[] = {
    PK("new_projectid"),
    {"new_name", COL_STRING, COLF_RW, NULL, NULL, NULL},
    {"new_budget", COL_DECIMAL, COLF_RW, NULL, NULL, NULL},
    {"new_bignumber", COL_BIGINT, COLF_RW, NULL, NULL, NULL},
    {"new_stage", COL_PICKLIST, COLF_RW, NULL, NULL, stage_opts},
    {"new_startdate", COL_DATETIME, COLF_RW, NULL, NULL, NULL},
    {"new_document", COL_FILE, 0, NULL, NULL, NULL},
    {"new_document_name", COL_FILENAME, 0, NULL, NULL, NULL},
    {"new_accountid", COL_LOOKUP, COLF_RW, "account", "new_AccountId", NULL},
    {"ownerid", COL_OWNER, COLF_RW, "systemuser", "ownerid", NULL},
    {"statecode", COL_STATE, COLF_RW, NULL, NULL, state_opts},
    COMMON_TAIL,
};
static const struct col_def project_contact_cols[] = {
    PK("new_project_contactid"),
    {"new_projectid", COL_STRING, 0, NULL, NULL, NULL},
    {"contactid", COL_STRING, 0, NULL, NULL, NULL},
    {"versionnumber", COL_VERSION, 0, NULL, NULL, NULL},
};
static const struct col_def audit_cols[] = {
    {"auditid", COL_PK, 0, NULL, NULL, NULL},
    {"createdon", COL_DATETIME, 0, NULL, NULL, NULL},
    {"operation", COL_PICKLIST, 0, NULL, NULL, operation_opts},
    {"action", COL_PICKLIST, 0, NULL, NULL, operation_opts},
    {"objecttypecode", COL_STRING, 0, NULL, NULL, NULL},
    {"objectid", COL_LOOKUP, 0, "account", "objectid_account", NULL},
    {"userid", COL_LOOKUP, 0, "systemuser", "userid", NULL},
    {"attributemask", COL_STRING, 0, NULL, NULL, NULL},
    {"transactionid", COL_STRING, 0, NULL, NULL, NULL},
};

const struct table_def dvschema_tables[N_TABLES] = {
    [T_ACCOUNT] = {"account", "accounts", "accountid", "name", 1, true, false, false, account_cols, N(account_cols)},
    [T_CONTACT] = {"contact", "contacts", "contactid", "fullname", 2, true, false, false, contact_cols, N(contact_cols)},
    [T_OPPORTUNITY] = {"opportunity", "opportunities", "opportunityid", "name", 3, true, false, false, opportunity_cols, N(opportunity_cols)},
    [T_INCIDENT] = {"incident", "incidents", "incidentid", "title", 112, true, false, false, incident_cols, N(incident_cols)},
    [T_SYSTEMUSER] = {"systemuser", "systemusers", "systemuserid", "fullname", 8, true, false, false, systemuser_cols, N(systemuser_cols)},
    [T_ANNOTATION] = {"annotation", "annotations", "annotationid", "subject", 5, true, false, false, annotation_cols, N(annotation_cols)},
    [T_PROJECT] = {"new_project", "new_projects", "new_projectid", "new_name", 10010, false, false, false, project_cols, N(project_cols)},
    [T_PROJECT_CONTACT] = {"new_project_contact", "new_project_contactset", "new_project_contactid", NULL, 10011, true, true, false, project_contact_cols, N(project_contact_cols)},
    [T_AUDIT] = {"audit", "audits", "auditid", NULL, 4567, true, false, true, audit_cols, N(audit_cols)},
};

/* --hostile-tables: extra tables whose logical names are what a careless client would turn into
 * paths (a slash and "..", control characters, 300 bytes, "..", case twins) and one whose entity
 * set is itself hostile (a client must refuse to put it in a URL). Each serves systemuser's
 * records under its own names (dvschema_table_index maps it to T_SYSTEMUSER). */
#define H50 "hostile-long-name-50-bytes-xxxxxxxxxxxxxxxxxxxxxxx"
#define SU(logical, set) {logical, set, "systemuserid", "fullname", 8, true, false, false, \
                          systemuser_cols, N(systemuser_cols)}
const struct table_def dvschema_hostile[N_HOSTILE] = {
    SU("../../etc/passwd", "hostile_slashes"),
    SU("ctl\x01name\x1f\ttab\nline", "hostile_controls"),
    SU(H50 H50 H50 H50 H50 H50, "hostile_long"),
    SU("..", "hostile_dotdot"),
    SU("HostileTwin", "hostile_twin_upper"),
    SU("hostiletwin", "hostile_twin_lower"),
    SU("hostile_badset", "../../_sim/reset"),
};
#undef SU
#undef H50

const struct n2n_def dvschema_n2n[] = {
    {"new_project_contact", "new_project_contact", "new_project", "new_projectid", "new_project_contact",
     "contact", "contactid", "new_project_contact"},
};
const size_t dvschema_n_n2n = N(dvschema_n2n);

const struct env_def dvschema_envs[N_ENVS] = {
    {"contoso-prod", "Contoso (Production)", "Production", "unitedstates", "westus", "P28D", true, false},
    {"contoso-dev", "Contoso Dev", "Sandbox", "unitedstates", "eastus", "P7D", false, false},
    {"contoso-test", "Contoso Test", "Sandbox", "europe", "westeurope", "P7D", false, false},
    {"contoso-trial", "Contoso Trial", "Trial", "unitedstates", "westus", NULL, false, false},
    {"contoso-default", "Contoso (default)", "Default", "unitedstates", "westus", "P7D", false, true},
    {"fabrikam-prod", "Fabrikam", "Production", "unitedstates", "centralus", "P7D", false, false},
};

static bool eq(const char *a, const char *b, size_t blen)
{
    return strlen(a) == blen && memcmp(a, b, blen) == 0;
}

const struct table_def *dvschema_table_by_set(const char *set, size_t len)
{
    for (int i = 0; i < N_TABLES; i++)
        if (eq(dvschema_tables[i].set, set, len))
            return &dvschema_tables[i];
    for (int i = 0; i < N_HOSTILE; i++)
        if (eq(dvschema_hostile[i].set, set, len))
            return &dvschema_hostile[i];
    return NULL;
}

const struct table_def *dvschema_table_by_logical(const char *logical, size_t len)
{
    for (int i = 0; i < N_TABLES; i++)
        if (eq(dvschema_tables[i].logical, logical, len))
            return &dvschema_tables[i];
    return NULL;
}

int dvschema_table_index(const struct table_def *t)
{
    for (int i = 0; i < N_HOSTILE; i++)
        if (t == &dvschema_hostile[i])
            return T_SYSTEMUSER;
    return (int)(t - dvschema_tables);
}

int dvschema_env_index(const char *unique_name, size_t len)
{
    for (int i = 0; i < N_ENVS; i++)
        if (eq(dvschema_envs[i].unique_name, unique_name, len))
            return i;
    return -1;
}

void dvschema_member_name(const struct col_def *c, char *out, size_t n)
{
    if (c->type == COL_LOOKUP || c->type == COL_OWNER || c->type == COL_CUSTOMER)
        snprintf(out, n, "_%s_value", c->name);
    else
        snprintf(out, n, "%s", c->name);
}

const struct col_def *dvschema_col_by_member(const struct table_def *t, const char *member, size_t len)
{
    char name[128];
    for (size_t i = 0; i < t->n_cols; i++) {
        dvschema_member_name(&t->cols[i], name, sizeof name);
        if (eq(name, member, len))
            return &t->cols[i];
    }
    return NULL;
}

const struct col_def *dvschema_col_by_nav(const struct table_def *t, const char *nav, size_t len)
{
    for (size_t i = 0; i < t->n_cols; i++)
        if (t->cols[i].nav && eq(t->cols[i].nav, nav, len))
            return &t->cols[i];
    return NULL;
}

const char *dvschema_option_label(const struct col_def *c, int value)
{
    if (!c->options)
        return NULL;
    for (const struct option_def *o = c->options; o->label; o++)
        if (o->value == value)
            return o->label;
    return NULL;
}

void dvschema_env_guid(int env, char out[64])
{
    static const char *const ids[N_ENVS] = {
        "8a1d3f52-6c0e-4b9a-a1f2-0c9e5d7b3a11", "2b7e9c40-1f3a-4d6e-8b5c-7a0d2e4f6b22",
        "5c3a7e91-8d2b-4f0c-9e6a-1b3d5f7a9c33", "9d4b8f02-3e6c-4a1d-b7f9-2c4e6a8b0d44",
        "Default-6f1c2e34-8d5a-4b7e-9c21-3a4b5c6d7e8f", "1e5c9a13-7b4d-4e2f-a8c0-3d5f7b9e1f55"};
    snprintf(out, 64, "%s", ids[env]);
}
