/* schema: the static definitions of the sample tenant: six environments, and in every org the
 * same eighteen tables, shaped as the service shapes them:
 *   data (UserOwned): account, contact (primary image entityimage), opportunity, incident,
 *     annotation, new_project (custom, file column new_document, change tracking off), and the
 *     activities email, task, phonecall, appointment (primary key activityid, regarding lookup);
 *   principals and configuration: systemuser, team, businessunit (BusinessOwned),
 *     transactioncurrency (OrganizationOwned): clients cannot write them (table_writes);
 *   read-only or written only through another table: audit, activitypointer (the union of the
 *     activities), activityparty (parties, written inside their activity), and the N:N intersect
 *     new_project_contact ($ref).
 * Each lookup lists the tables it may point at and the navigation property that binds each one
 * (ownerid: systemuser and team through "ownerid"; customer lookups <col>_account/_contact;
 * regarding regardingobjectid_<table>_<activity>). statecode is valid for update only; each status
 * option names the state it belongs to. The owner, state and common columns are also exported
 * for the generated definitions of --shape real (schema_real.c), which the lookups by set, by
 * logical name and by index (dvschema_table_at) also find. Read-only data; thread-safe. */
#include "tools/dvsim/dvsim.h"

#include <stdio.h>
#include <string.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

const struct option_def dvschema_bool_options[] = {{0, "No", 0}, {1, "Yes", 0}, {0, NULL, 0}};
static const struct option_def custtype_opts[] = {
    {1, "Competitor", 0}, {2, "Consultant", 0}, {3, "Customer", 0}, {4, "Investor", 0},
    {5, "Partner", 0}, {6, "Influencer", 0}, {7, "Press", 0}, {8, "Prospect", 0},
    {9, "Reseller", 0}, {10, "Supplier", 0}, {11, "Vendor", 0}, {12, "Other", 0}, {0, NULL, 0}};
static const struct option_def industry_opts[] = {
    {1, "Accounting", 0}, {2, "Agriculture and Non-petrol Natural Resource Extraction", 0},
    {3, "Broadcasting Printing and Publishing", 0}, {4, "Brokers", 0}, {6, "Business Services", 0},
    {7, "Consulting", 0}, {8, "Consumer Services", 0}, {12, "Financial", 0},
    {19, "Inbound Capital Intensive Processing", 0}, {25, "Retail", 0}, {29, "Transportation", 0},
    {33, "Wholesale", 0}, {0, NULL, 0}};
static const struct option_def gender_opts[] = {{1, "Male", 0}, {2, "Female", 0}, {0, NULL, 0}};
static const struct option_def priority_opts[] = {
    {1, "High", 0}, {2, "Normal", 0}, {3, "Low", 0}, {0, NULL, 0}};
static const struct option_def casetype_opts[] = {
    {1, "Question", 0}, {2, "Problem", 0}, {3, "Request", 0}, {0, NULL, 0}};
static const struct option_def rating_opts[] = {{1, "Hot", 0}, {2, "Warm", 0}, {3, "Cold", 0}, {0, NULL, 0}};
static const struct option_def operation_opts[] = {
    {1, "Create", 0}, {2, "Update", 0}, {3, "Delete", 0}, {4, "Access", 0}, {0, NULL, 0}};
static const struct option_def stage_opts[] = {
    {100000000, "Planning", 0}, {100000001, "In Progress", 0}, {100000002, "On Hold", 0},
    {100000003, "Done", 0}, {0, NULL, 0}};
static const struct option_def teamtype_opts[] = {{0, "Owner", 0}, {1, "Access", 0}, {0, NULL, 0}};
static const struct option_def mask_opts[] = {
    {1, "Sender", 0}, {2, "To Recipient", 0}, {3, "CC Recipient", 0}, {4, "BCC Recipient", 0},
    {5, "Required attendee", 0}, {6, "Optional attendee", 0}, {7, "Organizer", 0},
    {8, "Regarding", 0}, {9, "Owner", 0}, {0, NULL, 0}};

/* State and status of each table: a status option's third member is the state it belongs to; the
 * first status of a state is its default. */
static const struct option_def active_state[] = {{0, "Active", 0}, {1, "Inactive", 0}, {0, NULL, 0}};
static const struct option_def active_status[] = {{1, "Active", 0}, {2, "Inactive", 1}, {0, NULL, 0}};
static const struct option_def opp_state[] = {
    {0, "Open", 0}, {1, "Won", 0}, {2, "Lost", 0}, {0, NULL, 0}};
static const struct option_def opp_status[] = {
    {1, "In Progress", 0}, {2, "On Hold", 0}, {3, "Won", 1}, {4, "Canceled", 2}, {5, "Out-Sold", 2},
    {0, NULL, 0}};
static const struct option_def case_state[] = {
    {0, "Active", 0}, {1, "Resolved", 0}, {2, "Cancelled", 0}, {0, NULL, 0}};
static const struct option_def case_status[] = {
    {1, "In Progress", 0}, {2, "On Hold", 0}, {3, "Waiting for Details", 0}, {4, "Researching", 0},
    {5, "Problem Solved", 1}, {1000, "Information Provided", 1}, {6, "Cancelled", 2},
    {2000, "Merged", 2}, {0, NULL, 0}};
static const struct option_def activity_state[] = {
    {0, "Open", 0}, {1, "Completed", 0}, {2, "Canceled", 0}, {0, NULL, 0}};
static const struct option_def task_status[] = {
    {2, "Not Started", 0}, {3, "In Progress", 0}, {4, "Waiting on someone else", 0},
    {7, "Deferred", 0}, {5, "Completed", 1}, {6, "Canceled", 2}, {0, NULL, 0}};
static const struct option_def email_status[] = {
    {1, "Draft", 0}, {8, "Failed", 0}, {2, "Completed", 1}, {3, "Sent", 1}, {4, "Received", 1},
    {6, "Pending Send", 1}, {7, "Sending", 1}, {5, "Canceled", 2}, {0, NULL, 0}};
static const struct option_def phonecall_status[] = {
    {1, "Open", 0}, {2, "Made", 1}, {4, "Received", 1}, {3, "Canceled", 2}, {0, NULL, 0}};
static const struct option_def appointment_status[] = {
    {1, "Free", 0}, {2, "Tentative", 0}, {3, "Completed", 1}, {4, "Canceled", 2}, {0, NULL, 0}};
static const struct option_def pointer_state[] = {
    {0, "Open", 0}, {1, "Completed", 0}, {2, "Canceled", 0}, {3, "Scheduled", 0}, {0, NULL, 0}};

/* Lookup targets. ownerid binds /systemusers(..) or /teams(..) through the same property. */
#define TARGET(table, nav, rel) ((const struct lookup_target[]){{table, nav, rel}, {NULL, NULL, NULL}})
static const struct lookup_target owner_targets[] = {
    {"systemuser", "ownerid", NULL}, {"team", "ownerid", NULL}, {NULL, NULL, NULL}};
#define CUSTOMER(col) ((const struct lookup_target[]){                                      \
    {"account", col "_account", NULL}, {"contact", col "_contact", NULL}, {NULL, NULL, NULL}})
#define REGARDING(activity) ((const struct lookup_target[]){                                \
    {"account", "regardingobjectid_account_" activity, NULL},                               \
    {"contact", "regardingobjectid_contact_" activity, NULL},                               \
    {"opportunity", "regardingobjectid_opportunity_" activity, NULL},                       \
    {"incident", "regardingobjectid_incident_" activity, NULL}, {NULL, NULL, NULL}})
static const struct lookup_target party_activity_targets[] = {
    {"email", "activityid_email", "email_activity_parties"},
    {"task", "activityid_task", "task_activity_parties"},
    {"phonecall", "activityid_phonecall", "phonecall_activity_parties"},
    {"appointment", "activityid_appointment", "appointment_activity_parties"},
    {NULL, NULL, NULL}};
static const struct lookup_target party_targets[] = {
    {"systemuser", "partyid_systemuser", "system_user_activity_parties"},
    {"contact", "partyid_contact", "contact_activity_parties"},
    {"account", "partyid_account", "account_activity_parties"},
    {NULL, NULL, NULL}};

#define PK(n) {n, COL_PK, COLF_CREATE, NULL, NULL}
#define COL(n, type, flags) {n, type, flags, NULL, NULL}
#define OPT(n, type, flags, opts) {n, type, flags, NULL, opts}
#define LOOKUP(n, type, flags, targets) {n, type, flags, targets, NULL}
#define COMMON_TAIL                                                                        \
    COL("createdon", COL_DATETIME, 0),                                                     \
    COL("modifiedon", COL_DATETIME, 0),                                                    \
    COL("overriddencreatedon", COL_DATETIME, COLF_CREATE),                                 \
    COL("versionnumber", COL_VERSION, 0)
/* ownerid and the read-only columns the service derives from it */
#define OWNER_COLS                                                                         \
    LOOKUP("ownerid", COL_OWNER, COLF_RW, owner_targets),                                  \
    LOOKUP("owninguser", COL_LOOKUP, 0, TARGET("systemuser", "owninguser", NULL)),         \
    LOOKUP("owningteam", COL_LOOKUP, 0, TARGET("team", "owningteam", NULL)),               \
    LOOKUP("owningbusinessunit", COL_LOOKUP, 0,                                            \
           TARGET("businessunit", "owningbusinessunit", NULL))
#define STATE_COLS(states, statuses)                                                       \
    OPT("statecode", COL_STATE, COLF_UPDATE, states),                                      \
    OPT("statuscode", COL_STATUS, COLF_RW, statuses)
#define CURRENCY_COLS                                                                      \
    LOOKUP("transactioncurrencyid", COL_LOOKUP, COLF_RW,                                   \
           TARGET("transactioncurrency", "transactioncurrencyid", NULL)),                  \
    COL("exchangerate", COL_DECIMAL, 0)

static const struct col_def account_cols[] = {
    PK("accountid"),
    COL("name", COL_STRING, COLF_RW),
    COL("accountnumber", COL_STRING, COLF_RW),
    COL("description", COL_MEMO, COLF_RW),
    COL("telephone1", COL_STRING, COLF_RW),
    COL("address1_city", COL_STRING, COLF_RW),
    COL("revenue", COL_MONEY, COLF_RW),
    COL("revenue_base", COL_MONEY, 0),
    COL("numberofemployees", COL_INTEGER, COLF_RW),
    OPT("customertypecode", COL_PICKLIST, COLF_RW, custtype_opts),
    OPT("industrycode", COL_PICKLIST, COLF_RW, industry_opts),
    LOOKUP("primarycontactid", COL_LOOKUP, COLF_RW,
           TARGET("contact", "primarycontactid", "account_primary_contact")),
    LOOKUP("parentaccountid", COL_LOOKUP, COLF_RW,
           TARGET("account", "parentaccountid", "account_parent_account")),
    CURRENCY_COLS,
    OWNER_COLS,
    STATE_COLS(active_state, active_status),
    COMMON_TAIL,
};
static const struct col_def contact_cols[] = {
    PK("contactid"),
    COL("fullname", COL_STRING, 0),
    COL("firstname", COL_STRING, COLF_RW),
    COL("lastname", COL_STRING, COLF_RW),
    COL("emailaddress1", COL_STRING, COLF_RW),
    COL("jobtitle", COL_STRING, COLF_RW),
    COL("birthdate", COL_DATEONLY, COLF_RW),
    COL("annualincome", COL_MONEY, COLF_RW),
    OPT("gendercode", COL_PICKLIST, COLF_RW, gender_opts),
    OPT("donotemail", COL_BOOLEAN, COLF_RW, dvschema_bool_options),
    LOOKUP("parentcustomerid", COL_CUSTOMER, COLF_RW, CUSTOMER("parentcustomerid")),
    COL("entityimage", COL_IMAGE, COLF_RW),
    COL("entityimageid", COL_GUID, 0),
    COL("entityimage_timestamp", COL_BIGINT, 0),
    COL("entityimage_url", COL_STRING, 0),
    OWNER_COLS,
    STATE_COLS(active_state, active_status),
    COMMON_TAIL,
};
static const struct col_def opportunity_cols[] = {
    PK("opportunityid"),
    COL("name", COL_STRING, COLF_RW),
    COL("estimatedvalue", COL_MONEY, COLF_RW),
    COL("estimatedvalue_base", COL_MONEY, 0),
    COL("closeprobability", COL_INTEGER, COLF_RW),
    COL("estimatedclosedate", COL_DATEONLY, COLF_RW),
    COL("actualclosedate", COL_DATEONLY, COLF_RW),
    OPT("opportunityratingcode", COL_PICKLIST, COLF_RW, rating_opts),
    LOOKUP("customerid", COL_CUSTOMER, COLF_RW, CUSTOMER("customerid")),
    LOOKUP("parentcontactid", COL_LOOKUP, COLF_RW, TARGET("contact", "parentcontactid", NULL)),
    CURRENCY_COLS,
    OWNER_COLS,
    STATE_COLS(opp_state, opp_status),
    COMMON_TAIL,
};
static const struct col_def incident_cols[] = {
    PK("incidentid"),
    COL("title", COL_STRING, COLF_RW),
    COL("ticketnumber", COL_STRING, COLF_CREATE),
    COL("description", COL_MEMO, COLF_RW),
    OPT("prioritycode", COL_PICKLIST, COLF_RW, priority_opts),
    OPT("casetypecode", COL_PICKLIST, COLF_RW, casetype_opts),
    LOOKUP("customerid", COL_CUSTOMER, COLF_RW, CUSTOMER("customerid")),
    OWNER_COLS,
    STATE_COLS(case_state, case_status),
    COMMON_TAIL,
};
static const struct col_def systemuser_cols[] = {
    PK("systemuserid"),
    COL("fullname", COL_STRING, 0),
    COL("firstname", COL_STRING, COLF_RW),
    COL("lastname", COL_STRING, COLF_RW),
    COL("domainname", COL_STRING, COLF_RW),
    COL("internalemailaddress", COL_STRING, COLF_RW),
    OPT("isdisabled", COL_BOOLEAN, COLF_RW, dvschema_bool_options),
    COL("azureactivedirectoryobjectid", COL_GUID, COLF_CREATE),
    LOOKUP("businessunitid", COL_LOOKUP, COLF_RW,
           TARGET("businessunit", "businessunitid", "business_unit_system_users")),
    COMMON_TAIL,
};
static const struct col_def businessunit_cols[] = {
    PK("businessunitid"),
    COL("name", COL_STRING, COLF_RW),
    LOOKUP("parentbusinessunitid", COL_LOOKUP, COLF_RW,
           TARGET("businessunit", "parentbusinessunitid", "business_unit_parent_business_unit")),
    COMMON_TAIL,
};
static const struct col_def team_cols[] = {
    PK("teamid"),
    COL("name", COL_STRING, COLF_RW),
    LOOKUP("businessunitid", COL_LOOKUP, COLF_RW,
           TARGET("businessunit", "businessunitid", "business_unit_teams")),
    OPT("teamtype", COL_PICKLIST, COLF_CREATE, teamtype_opts),
    OPT("isdefault", COL_BOOLEAN, 0, dvschema_bool_options),
    COMMON_TAIL,
};
static const struct col_def currency_cols[] = {
    PK("transactioncurrencyid"),
    COL("isocurrencycode", COL_STRING, COLF_CREATE),
    COL("currencyname", COL_STRING, COLF_RW),
    COL("currencysymbol", COL_STRING, COLF_RW),
    COL("exchangerate", COL_DECIMAL, COLF_RW),
    COL("currencyprecision", COL_INTEGER, COLF_RW),
    COMMON_TAIL,
};
static const struct col_def annotation_cols[] = {
    PK("annotationid"),
    COL("subject", COL_STRING, COLF_RW),
    COL("notetext", COL_MEMO, COLF_RW),
    COL("filename", COL_STRING, COLF_RW),
    COL("mimetype", COL_STRING, COLF_RW),
    COL("documentbody", COL_MEMO, COLF_RW),
    COL("filesize", COL_INTEGER, 0),
    OPT("isdocument", COL_BOOLEAN, COLF_RW, dvschema_bool_options),
    COL("objecttypecode", COL_STRING, COLF_CREATE),
    LOOKUP("objectid", COL_LOOKUP, COLF_RW, TARGET("account", "objectid_account", NULL)),
    OWNER_COLS,
    COMMON_TAIL,
};
static const struct col_def project_cols[] = {
    PK("new_projectid"),
    COL("new_name", COL_STRING, COLF_RW),
    COL("new_budget", COL_DECIMAL, COLF_RW),
    COL("new_bignumber", COL_BIGINT, COLF_RW),
    OPT("new_stage", COL_PICKLIST, COLF_RW, stage_opts),
    COL("new_startdate", COL_DATETIME, COLF_RW),
    COL("new_document", COL_FILE, 0),
    COL("new_document_name", COL_FILENAME, 0),
    LOOKUP("new_accountid", COL_LOOKUP, COLF_RW, TARGET("account", "new_AccountId", NULL)),
    OWNER_COLS,
    STATE_COLS(active_state, active_status),
    COMMON_TAIL,
};
static const struct col_def project_contact_cols[] = {
    PK("new_project_contactid"),
    COL("new_projectid", COL_STRING, 0),
    COL("contactid", COL_STRING, 0),
    COL("versionnumber", COL_VERSION, 0),
};
static const struct col_def audit_cols[] = {
    {"auditid", COL_PK, 0, NULL, NULL},
    COL("createdon", COL_DATETIME, 0),
    OPT("operation", COL_PICKLIST, 0, operation_opts),
    OPT("action", COL_PICKLIST, 0, operation_opts),
    COL("objecttypecode", COL_STRING, 0),
    LOOKUP("objectid", COL_LOOKUP, 0, TARGET("account", "objectid_account", NULL)),
    LOOKUP("userid", COL_LOOKUP, 0, TARGET("systemuser", "userid", NULL)),
    COL("attributemask", COL_STRING, 0),
    COL("transactionid", COL_STRING, 0),
};

/* The columns every activity has, then its own. */
#define ACTIVITY_COLS(activity, statuses)                                                  \
    {"activityid", COL_PK, COLF_CREATE, NULL, NULL},                                       \
    COL("subject", COL_STRING, COLF_RW),                                                   \
    COL("description", COL_MEMO, COLF_RW),                                                 \
    COL("activitytypecode", COL_STRING, 0),                                                \
    COL("scheduledend", COL_DATETIME, COLF_RW),                                            \
    COL("actualend", COL_DATETIME, COLF_RW),                                               \
    LOOKUP("regardingobjectid", COL_LOOKUP, COLF_RW, REGARDING(activity)),                 \
    OWNER_COLS,                                                                            \
    STATE_COLS(activity_state, statuses),                                                  \
    COMMON_TAIL
static const struct col_def email_cols[] = {
    ACTIVITY_COLS("email", email_status),
    OPT("directioncode", COL_BOOLEAN, COLF_RW, dvschema_bool_options),
};
static const struct col_def task_cols[] = {
    ACTIVITY_COLS("task", task_status),
    COL("percentcomplete", COL_INTEGER, COLF_RW),
};
static const struct col_def phonecall_cols[] = {
    ACTIVITY_COLS("phonecall", phonecall_status),
    COL("phonenumber", COL_STRING, COLF_RW),
    OPT("directioncode", COL_BOOLEAN, COLF_RW, dvschema_bool_options),
};
static const struct col_def appointment_cols[] = {
    ACTIVITY_COLS("appointment", appointment_status),
    COL("scheduledstart", COL_DATETIME, COLF_RW),
    COL("location", COL_STRING, COLF_RW),
};
/* The read-only union of every activity (kept by the write path: webwrite_activity.c). */
static const struct col_def activitypointer_cols[] = {
    {"activityid", COL_PK, 0, NULL, NULL},
    COL("activitytypecode", COL_STRING, 0),
    COL("subject", COL_STRING, 0),
    COL("scheduledend", COL_DATETIME, 0),
    COL("actualend", COL_DATETIME, 0),
    LOOKUP("regardingobjectid", COL_LOOKUP, 0, REGARDING("activitypointer")),
    LOOKUP("ownerid", COL_OWNER, 0, owner_targets),
    OPT("statecode", COL_STATE, 0, pointer_state),
    COL("createdon", COL_DATETIME, 0),
    COL("modifiedon", COL_DATETIME, 0),
    COL("versionnumber", COL_VERSION, 0),
};
/* The parties of activities: written only inside their activity (<activity>_activity_parties). */
static const struct col_def activityparty_cols[] = {
    {"activitypartyid", COL_PK, 0, NULL, NULL},
    LOOKUP("activityid", COL_LOOKUP, COLF_CREATE, party_activity_targets),
    LOOKUP("partyid", COL_LOOKUP, COLF_RW, party_targets),
    OPT("participationtypemask", COL_PICKLIST, COLF_RW, mask_opts),
    COL("addressused", COL_STRING, COLF_RW),
    COL("versionnumber", COL_VERSION, 0),
};

#define TABLE(logical, schema, set, pk, name, priv, otc, tracked, intersect, activity, own, w, cols) \
    {logical, schema, set, pk, name, priv, otc, tracked, intersect, activity, own, w, cols, N(cols), false, false}
const struct table_def dvschema_tables[N_TABLES] = {
    [T_ACCOUNT] = TABLE("account", "Account", "accounts", "accountid", "name", "Account", 1, true,
                        false, false, OWN_USER, TW_DATA, account_cols),
    [T_CONTACT] = TABLE("contact", "Contact", "contacts", "contactid", "fullname", "Contact", 2,
                        true, false, false, OWN_USER, TW_DATA, contact_cols),
    [T_OPPORTUNITY] = TABLE("opportunity", "Opportunity", "opportunities", "opportunityid", "name",
                            "Opportunity", 3, true, false, false, OWN_USER, TW_DATA,
                            opportunity_cols),
    [T_INCIDENT] = TABLE("incident", "Incident", "incidents", "incidentid", "title", "Incident", 112,
                         true, false, false, OWN_USER, TW_DATA, incident_cols),
    [T_SYSTEMUSER] = TABLE("systemuser", "SystemUser", "systemusers", "systemuserid", "fullname",
                           "User", 8, true, false, false, OWN_BUSINESS, TW_PRINCIPAL,
                           systemuser_cols),
    [T_ANNOTATION] = TABLE("annotation", "Annotation", "annotations", "annotationid", "subject",
                           "Note", 5, true, false, false, OWN_USER, TW_DATA, annotation_cols),
    [T_PROJECT] = TABLE("new_project", "new_project", "new_projects", "new_projectid", "new_name",
                        "new_project", 10010, false, false, false, OWN_USER, TW_DATA, project_cols),
    [T_PROJECT_CONTACT] = TABLE("new_project_contact", "new_project_contact",
                                "new_project_contactset", "new_project_contactid", NULL, NULL,
                                10011, true, true, false, OWN_NONE, TW_DATA, project_contact_cols),
    [T_AUDIT] = TABLE("audit", "Audit", "audits", "auditid", NULL, "AuditSummary", 4567, true, false,
                      false, OWN_NONE, TW_NONE, audit_cols),
    [T_BUSINESSUNIT] = TABLE("businessunit", "BusinessUnit", "businessunits", "businessunitid",
                             "name", "BusinessUnit", 10, true, false, false, OWN_BUSINESS,
                             TW_PRINCIPAL, businessunit_cols),
    [T_TEAM] = TABLE("team", "Team", "teams", "teamid", "name", "Team", 9, true, false, false,
                     OWN_BUSINESS, TW_PRINCIPAL, team_cols),
    [T_CURRENCY] = TABLE("transactioncurrency", "TransactionCurrency", "transactioncurrencies",
                         "transactioncurrencyid", "currencyname", "TransactionCurrency", 9105, true,
                         false, false, OWN_ORG, TW_PRINCIPAL, currency_cols),
    [T_EMAIL] = TABLE("email", "Email", "emails", "activityid", "subject", "Activity", 4202, true,
                      false, true, OWN_USER, TW_DATA, email_cols),
    [T_TASK] = TABLE("task", "Task", "tasks", "activityid", "subject", "Activity", 4212, true, false,
                     true, OWN_USER, TW_DATA, task_cols),
    [T_PHONECALL] = TABLE("phonecall", "PhoneCall", "phonecalls", "activityid", "subject",
                          "Activity", 4210, true, false, true, OWN_USER, TW_DATA, phonecall_cols),
    [T_APPOINTMENT] = TABLE("appointment", "Appointment", "appointments", "activityid", "subject",
                            "Activity", 4201, true, false, true, OWN_USER, TW_DATA,
                            appointment_cols),
    [T_ACTIVITYPOINTER] = TABLE("activitypointer", "ActivityPointer", "activitypointers",
                                "activityid", "subject", "Activity", 4200, true, false, false,
                                OWN_NONE, TW_NONE, activitypointer_cols),
    [T_ACTIVITYPARTY] = TABLE("activityparty", "ActivityParty", "activityparties",
                              "activitypartyid", "partyid", NULL, 135, true, false, false, OWN_NONE,
                              TW_NONE, activityparty_cols),
};

/* --hostile-tables: extra tables whose logical names are what a careless client would turn into
 * paths (a slash and "..", control characters, 300 bytes, "..", case twins) and one whose entity
 * set is itself hostile (a client must refuse to put it in a URL). Each serves systemuser's
 * records under its own names (dvschema_table_index maps it to T_SYSTEMUSER). */
#define H50 "hostile-long-name-50-bytes-xxxxxxxxxxxxxxxxxxxxxxx"
#define SU(logical, set) TABLE(logical, logical, set, "systemuserid", "fullname", "User", 8, true, \
                               false, false, OWN_BUSINESS, TW_PRINCIPAL, systemuser_cols)
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

const struct col_def dvschema_owner_cols[4] = {OWNER_COLS};
const struct col_def dvschema_state_cols[2] = {STATE_COLS(active_state, active_status)};
const struct col_def dvschema_common_cols[4] = {COMMON_TAIL};

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
    for (size_t i = 0; i < dvschema_n_extra; i++)
        if (eq(dvschema_extra[i].set, set, len))
            return &dvschema_extra[i];
    return NULL;
}

const struct table_def *dvschema_table_by_logical(const char *logical, size_t len)
{
    for (int i = 0; i < N_TABLES; i++)
        if (eq(dvschema_tables[i].logical, logical, len))
            return &dvschema_tables[i];
    for (size_t i = 0; i < dvschema_n_extra; i++)
        if (eq(dvschema_extra[i].logical, logical, len))
            return &dvschema_extra[i];
    return NULL;
}

const struct table_def *dvschema_table_at(int i)
{
    return i < N_TABLES ? &dvschema_tables[i] : &dvschema_extra[i - N_TABLES];
}

int dvschema_table_index(const struct table_def *t)
{
    for (int i = 0; i < N_HOSTILE; i++)
        if (t == &dvschema_hostile[i])
            return T_SYSTEMUSER;
    if (dvschema_n_extra && t >= dvschema_extra && t < dvschema_extra + dvschema_n_extra)
        return N_TABLES + (int)(t - dvschema_extra);
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
    if (dvschema_is_lookup(c))
        snprintf(out, n, "_%s_value", c->name);
    else
        snprintf(out, n, "%s", c->name);
}

const struct col_def *dvschema_col_by_member(const struct table_def *t, const char *member, size_t len)
{
    /* a lookup's member is "_<name>_value": compared in place (this runs for every value seeded) */
    bool wrapped = len > 7 && member[0] == '_' && memcmp(member + len - 6, "_value", 6) == 0;
    for (size_t i = 0; i < t->n_cols; i++) {
        const struct col_def *c = &t->cols[i];
        if (dvschema_is_lookup(c) ? wrapped && eq(c->name, member + 1, len - 7) : eq(c->name, member, len))
            return c;
    }
    return NULL;
}

bool dvschema_is_lookup(const struct col_def *c)
{
    return c->type == COL_LOOKUP || c->type == COL_OWNER || c->type == COL_CUSTOMER;
}

const struct col_def *dvschema_col_by_nav(const struct table_def *t, const char *nav, size_t len,
                                          const struct lookup_target **target)
{
    for (size_t i = 0; i < t->n_cols; i++)
        for (const struct lookup_target *g = t->cols[i].targets; g && g->table; g++)
            if (eq(g->nav, nav, len)) {
                if (target)
                    *target = g;
                return &t->cols[i];
            }
    return NULL;
}

const struct lookup_target *dvschema_lookup_target(const struct col_def *c, const char *logical,
                                                   const char *nav)
{
    for (const struct lookup_target *g = c->targets; g && g->table; g++)
        if (strcmp(g->table, logical) == 0 && (!nav || strcmp(g->nav, nav) == 0))
            return g;
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

int dvschema_status_state(const struct col_def *status, int value)
{
    for (const struct option_def *o = status->options; o && o->label; o++)
        if (o->value == value)
            return o->state;
    return -1;
}

int dvschema_status_default(const struct col_def *status, int state)
{
    for (const struct option_def *o = status->options; o && o->label; o++)
        if (o->state == state)
            return o->value;
    return -1;
}

void dvschema_org_id(int env, char out[37])
{
    snprintf(out, 37, "%08x-5c0a-4e1b-9d2f-%012x", 0x0a9a0000u + (unsigned)env, 0x0c0150u + (unsigned)env);
}

void dvschema_app_user_id(int env, char out[37])
{
    snprintf(out, 37, "00000000-0000-0000-%04x-00000000a001", (unsigned)env);
}

void dvschema_env_guid(int env, char out[64])
{
    static const char *const ids[N_ENVS] = {
        "8a1d3f52-6c0e-4b9a-a1f2-0c9e5d7b3a11", "2b7e9c40-1f3a-4d6e-8b5c-7a0d2e4f6b22",
        "5c3a7e91-8d2b-4f0c-9e6a-1b3d5f7a9c33", "9d4b8f02-3e6c-4a1d-b7f9-2c4e6a8b0d44",
        "Default-6f1c2e34-8d5a-4b7e-9c21-3a4b5c6d7e8f", "1e5c9a13-7b4d-4e2f-a8c0-3d5f7b9e1f55"};
    snprintf(out, 64, "%s", ids[env]);
}
