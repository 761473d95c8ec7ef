/* schema_real: the definitions `--shape real` adds to the eighteen of schema.c, so that an org
 * looks like a Dynamics 365 Sales org (about 700 definitions in all), generated from short lists
 * of names rather than written out one by one:
 *   system and configuration tables with their real names (lead, quote, salesorder, queue,
 *     savedquery, workflow, ...), Standard, 20 to 150 attributes;
 *   activity tables (fax, letter, campaignresponse, ...: TableType Activity, key activityid);
 *   intersect tables of N:N relationships (accountleads, systemuserroles, ...: IsIntersect);
 *   tables of first-party solutions and portals (msdyn_, msdynmkt_, msfp_, msdyncrm_, adx_,
 *     mspp_ prefixes) and custom tables (new_, cr8a3_), each name a prefix, a stem from one list
 *     and a variant;
 *   one virtual table, new_erporder (TableType Virtual, DataProviderId set): its rows live in an
 *     external system and every read of it fails as a failing data provider answers (webapi.c);
 *   one elastic table, new_sensorreading (TableType Elastic): its rows carry partitionid, a row
 *     is keyed by id and partitionid (two rows may share an id in two partitions) and a request
 *     addresses it by id and ?partitionId= or the alternate key (webapi.c, webwrite.c). It is not
 *     change-tracked (the service's documentation does not say that a delta's deleted rows name
 *     their partition).
 * Attribute counts and ownership are functions of the table's name, so the definitions are the
 * same on every run. Which generated tables hold rows, and how many: seed_real.c.
 * Threading: dvschema_real_build runs once on the main thread before the server starts; the
 * definitions are read-only after it. They are never freed (they live as long as the process). */
#include "tools/dvsim/dvsim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct table_def *dvschema_extra;
size_t dvschema_n_extra;

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const char *const system_names[] = {
    "lead", "quote", "quotedetail", "salesorder", "salesorderdetail", "invoice", "invoicedetail",
    "opportunityproduct", "product", "pricelevel", "productpricelevel", "uom", "uomschedule",
    "discounttype", "discount", "competitor", "campaign", "list", "queue", "queueitem",
    "knowledgearticle", "knowledgebaserecord", "contract", "contractdetail", "entitlement", "sla",
    "slaitem", "slakpiinstance", "goal", "goalrollupquery", "metric", "territory", "connection",
    "connectionrole", "position", "role", "privilege", "fieldsecurityprofile", "organization",
    "calendar", "calendarrule", "businessunitnewsarticle", "subject", "kbarticle", "savedquery",
    "userquery", "systemform", "webresource", "workflow", "processsession", "asyncoperation",
    "bulkdeleteoperation", "importfile", "importjob", "duplicaterule", "duplicaterulecondition",
    "mailbox", "emailserverprofile", "emailsignature", "template", "kbarticletemplate",
    "contracttemplate", "sharepointsite", "sharepointdocumentlocation", "report",
    "reportcategory", "solution", "publisher", "solutioncomponent", "pluginassembly",
    "plugintype", "sdkmessage", "sdkmessageprocessingstep", "sdkmessagefilter",
    "serviceendpoint", "customeraddress", "socialprofile", "feedback", "postfollow", "post",
    "postcomment", "postlike", "usersettings", "teamtemplate", "sitemap", "appmodule",
    "canvasapp", "connectionreference", "environmentvariabledefinition",
    "environmentvariablevalue", "bookableresource", "bookableresourcebooking",
    "bookableresourcecategory", "characteristic", "ratingmodel", "ratingvalue", "resource",
    "resourcegroup", "equipment", "site", "service", "annualfiscalcalendar",
    "fixedmonthlyfiscalcalendar", "mobileofflineprofile", "channelaccessprofile",
    "externalparty", "convertrule", "routingrule", "routingruleitem", "salesliterature",
    "salesliteratureitem", "productsubstitute", "dynamicproperty", "processstage",
    "workflowlog", "plugintracelog", "msdyn_aiconfiguration", "transformationmapping",
    "importmap", "ownermapping", "attributemap", "entitymap", "principalobjectattributeaccess",
    "recurrencerule", "mailmergetemplate", "documenttemplate", "personaldocumenttemplate",
};
static const char *const activity_names[] = {
    "fax", "letter", "recurringappointmentmaster", "socialactivity", "campaignactivity",
    "campaignresponse", "serviceappointment", "bulkoperation", "incidentresolution",
    "opportunityclose", "orderclose", "quoteclose", "msdyn_ocliveworkitem", "msdyn_ocsession",
    "chat", "msfp_alert", "msfp_surveyinvite", "msfp_surveyresponse",
};
static const char *const intersect_names[] = {
    "accountleads", "contactleads", "contactinvoices", "contactorders", "contactquotes",
    "leadcompetitors", "opportunitycompetitors", "leadproduct", "campaignitem", "listmember",
    "systemuserroles", "teammembership", "teamroles", "roleprivileges", "teamprofiles",
    "systemuserprofiles", "queuemembership", "competitorproduct", "competitorsalesliterature",
    "productsalesliterature", "campaignactivityitem", "teamsyncattributemappingprofiles",
};
/* stems of the solution and custom tables; a table is prefix + stem + variant */
static const char *const stems[] = {
    "accountkpiitem", "actual", "agreement", "agreementbookingdate", "agreementbookingincident",
    "agreementbookingproduct", "agreementbookingservice", "agreementbookingsetup",
    "agreementinvoicedate", "agreementinvoiceproduct", "agreementinvoicesetup", "aibdataset",
    "aimodel", "analysiscomponent", "analysisjob", "analysisresult", "approval",
    "assignmentmap", "assignmentrule", "bookingalert", "bookingchange", "bookingjournal",
    "bookingrule", "bookingsetupmetadata", "bookingtimestamp", "businessclosure",
    "callablecontext", "clientextension", "contactpricelist", "customerasset",
    "customerassetcategory", "dataanalyticsreport", "dealmanageraccess", "deviceconfiguration",
    "entityconfiguration", "estimate", "estimateline", "expense", "expensecategory",
    "expensereceipt", "fact", "fieldcomputation", "flowcardtype", "forecastconfiguration",
    "forecastdefinition", "forecastinstance", "forecastrecurrence", "functionallocation",
    "icebreakersconfig", "incidenttype", "incidenttypeproduct", "incidenttypeservice",
    "inventoryadjustment", "inventoryjournal", "inventorytransfer", "invoicelinetransaction",
    "journal", "journalline", "kpieventdata", "leadkpiitem", "leadmodelconfig", "mlresultcache",
    "modelpreviewstatus", "notesanalysisconfig", "opportunitykpiitem", "opportunitymodelconfig",
    "organizationalunit", "paymentdetail", "paymentmethod", "paymentterm", "playbookactivity",
    "playbookcategory", "playbookinstance", "playbooktemplate", "postalbum", "postalcode",
    "predictivescore", "priority", "productinventory", "project", "projectteam",
    "purchaseorder", "purchaseorderproduct", "quotebookingincident", "quotebookingproduct",
    "requirementcharacteristic", "requirementgroup", "resourcerequirement", "rma", "rmaproduct",
    "rtv", "salesinsightssettings", "salesroutingrun", "segment", "sequence", "sequencetarget",
    "sequencetargetstep", "servicetasktype", "shipvia", "siconfig", "skipactivityreason",
    "solutionhealthrule", "suggestionassignmentrule", "taxcode", "timeentry", "timegroup",
    "transactionorigin", "unifiedroutingrun", "warehouse", "workhourtemplate", "workorder",
    "workorderincident", "workorderproduct", "workorderservice", "workordertype",
};
static const char *const variants[] = {"", "detail", "history", "setting"};
/* tables per prefix; new_ and cr8a3_ are custom (IsCustomEntity: webapi_meta.c) */
static const struct {
    const char *prefix;
    int count;
} prefixes[] = {
    {"msdyn_", 250}, {"msdynmkt_", 60}, {"msfp_", 20}, {"msdyncrm_", 40}, {"adx_", 50},
    {"mspp_", 30}, {"new_", 40}, {"cr8a3_", 25},
};
/* attribute stems of the filler columns (types rotate through filler_types) */
static const char *const attr_stems[] = {
    "description", "code", "amount", "quantity", "startdate", "enddate", "category", "notes",
    "externalid", "sequence", "isactive", "score", "duration", "url", "email", "phone",
    "address", "region", "comment", "rating", "weight", "reference", "completedon", "isprimary",
};
static const enum col_type filler_types[] = {
    COL_MEMO, COL_STRING, COL_DECIMAL, COL_INTEGER, COL_DATETIME, COL_DATETIME, COL_STRING,
    COL_MEMO, COL_STRING, COL_INTEGER, COL_BOOLEAN, COL_DECIMAL, COL_INTEGER, COL_STRING,
    COL_STRING, COL_STRING, COL_STRING, COL_STRING, COL_MEMO, COL_INTEGER, COL_DECIMAL,
    COL_STRING, COL_DATETIME, COL_BOOLEAN,
};

static const struct lookup_target created_by[] = {{"systemuser", "createdby", NULL}, {NULL, NULL, NULL}};
static const struct lookup_target modified_by[] = {{"systemuser", "modifiedby", NULL}, {NULL, NULL, NULL}};

enum kind { K_STANDARD, K_ACTIVITY, K_INTERSECT, K_VIRTUAL, K_ELASTIC };

static uint64_t name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h ^ (h >> 29);
}

/* a + b in a new string */
static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", a, b);
    return s;
}

/* The attribute count of a generated table: most 20-80, about one in twelve 100-150. */
static size_t attribute_count(uint64_t h)
{
    return h % 12 == 0 ? 100 + (size_t)(h >> 8) % 51 : 20 + (size_t)(h >> 8) % 61;
}

/* Fill t (logical already set) as a table of kind k; the name strings are owned by t. */
static int make_table(struct table_def *t, enum kind k, int otc)
{
    const char *logical = t->logical;
    uint64_t h = name_hash(logical);
    const char *under = strchr(logical, '_');
    size_t plen = under ? (size_t)(under - logical) + 1 : 0; /* "msdyn_" */
    char prefix[24];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(plen < sizeof prefix ? plen : 0), logical);
    bool ends_s = logical[strlen(logical) - 1] == 's';
    t->schema = logical;
    /* entity sets: the plural, or <name>collection for an intersect, as the service names them */
    t->set = join(logical, k == K_INTERSECT ? "collection" : ends_s ? "es" : "s");
    t->pk = k == K_ACTIVITY ? "activityid" : join(logical, "id");
    t->primary_name = k == K_INTERSECT ? NULL : k == K_ACTIVITY ? "subject" : join(prefix, "name");
    t->privilege = NULL;
    t->object_type_code = otc;
    t->change_tracking = k != K_VIRTUAL && k != K_ELASTIC && h % 5 != 0;
    t->intersect = k == K_INTERSECT;
    t->activity = k == K_ACTIVITY;
    t->virtual_table = k == K_VIRTUAL;
    t->elastic = k == K_ELASTIC;
    t->ownership = k == K_INTERSECT ? OWN_NONE : (k == K_ACTIVITY || h % 10 < 7) ? OWN_USER : OWN_ORG;
    t->writes = TW_DATA;
    if (!t->set || !t->pk || (k != K_INTERSECT && !t->primary_name))
        return -ENOMEM;

    size_t want = k == K_INTERSECT ? 4 : k == K_ELASTIC ? 16 : attribute_count(h);
    struct col_def *c = calloc(want + 24, sizeof *c);
    if (!c)
        return -ENOMEM;
    size_t n = 0;
    c[n++] = (struct col_def){t->pk, COL_PK, COLF_CREATE, NULL, NULL};
    if (k == K_INTERSECT) {
        /* the two keys of the pair, as the service lists them */
        c[n++] = (struct col_def){join(logical, "1id"), COL_GUID, 0, NULL, NULL};
        c[n++] = (struct col_def){join(logical, "2id"), COL_GUID, 0, NULL, NULL};
        c[n++] = (struct col_def){"versionnumber", COL_VERSION, 0, NULL, NULL};
        t->cols = c;
        t->n_cols = n;
        return c[1].name && c[2].name ? 0 : -ENOMEM;
    }
    c[n++] = (struct col_def){t->primary_name, COL_STRING, COLF_RW, NULL, NULL};
    if (k == K_ELASTIC) {
        c[n++] = (struct col_def){"partitionid", COL_STRING, COLF_CREATE, NULL, NULL};
        c[n++] = (struct col_def){"new_deviceid", COL_STRING, COLF_RW, NULL, NULL};
        c[n++] = (struct col_def){"new_value", COL_DECIMAL, COLF_RW, NULL, NULL};
        c[n++] = (struct col_def){"new_unit", COL_STRING, COLF_RW, NULL, NULL};
        c[n++] = (struct col_def){"new_recordedon", COL_DATETIME, COLF_RW, NULL, NULL};
        c[n++] = (struct col_def){"ttlinseconds", COL_INTEGER, COLF_RW, NULL, NULL};
    }
    c[n++] = (struct col_def){"createdby", COL_LOOKUP, 0, created_by, NULL};
    c[n++] = (struct col_def){"modifiedby", COL_LOOKUP, 0, modified_by, NULL};
    if (t->ownership == OWN_USER)
        for (size_t i = 0; i < N(dvschema_owner_cols); i++)
            c[n++] = dvschema_owner_cols[i];
    if (k != K_ELASTIC)
        for (size_t i = 0; i < N(dvschema_state_cols); i++)
            c[n++] = dvschema_state_cols[i];
    for (size_t i = 0; i < N(dvschema_common_cols); i++)
        c[n++] = dvschema_common_cols[i];
    /* filler columns up to the table's count */
    for (size_t f = 0; n < want; f++) {
        size_t s = f % N(attr_stems);
        char num[16] = "";
        if (f >= N(attr_stems))
            snprintf(num, sizeof num, "%zu", f / N(attr_stems) + 1);
        size_t len = strlen(prefix) + strlen(attr_stems[s]) + strlen(num) + 1;
        char *name = malloc(len);
        if (!name) {
            free(c);
            return -ENOMEM;
        }
        snprintf(name, len, "%s%s%s", prefix, attr_stems[s], num);
        enum col_type ty = filler_types[s];
        c[n++] = (struct col_def){name, ty, COLF_RW, NULL, ty == COL_BOOLEAN ? dvschema_bool_options : NULL};
    }
    t->cols = c;
    t->n_cols = n;
    return 0;
}

int dvschema_real_build(void)
{
    if (dvschema_n_extra)
        return 0;
    size_t cap = N(system_names) + N(activity_names) + N(intersect_names) + 2;
    for (size_t p = 0; p < N(prefixes); p++)
        cap += (size_t)prefixes[p].count;
    if (cap > MAX_EXTRA_TABLES)
        return -E2BIG;
    struct table_def *x = calloc(cap, sizeof *x);
    if (!x)
        return -ENOMEM;
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < N(system_names) && !rc; i++) {
        x[n].logical = system_names[i];
        rc = make_table(&x[n], K_STANDARD, 4000 + (int)n);
        n++;
    }
    for (size_t i = 0; i < N(activity_names) && !rc; i++) {
        x[n].logical = activity_names[i];
        rc = make_table(&x[n], K_ACTIVITY, 4000 + (int)n);
        n++;
    }
    for (size_t i = 0; i < N(intersect_names) && !rc; i++) {
        x[n].logical = intersect_names[i];
        rc = make_table(&x[n], K_INTERSECT, 4000 + (int)n);
        n++;
    }
    for (size_t p = 0; p < N(prefixes) && !rc; p++)
        for (int j = 0; j < prefixes[p].count && !rc; j++) {
            /* stem j, variant by round; a stride coprime with the stem count spreads each prefix
             * over the whole list */
            size_t s = ((size_t)j * 7 + p * 13) % N(stems);
            const char *v = variants[((size_t)j / N(stems)) % N(variants)];
            size_t len = strlen(prefixes[p].prefix) + strlen(stems[s]) + strlen(v) + 1;
            char *name = malloc(len);
            if (!name) {
                rc = -ENOMEM;
                break;
            }
            snprintf(name, len, "%s%s%s", prefixes[p].prefix, stems[s], v);
            if (dvschema_table_by_logical(name, strlen(name))) { /* new_project is one of the eighteen */
                free(name);
                continue;
            }
            x[n].logical = name;
            rc = make_table(&x[n], K_STANDARD, 10100 + (int)n);
            n++;
        }
    if (!rc) {
        x[n].logical = "new_erporder";
        rc = make_table(&x[n], K_VIRTUAL, 10100 + (int)n);
        n++;
    }
    if (!rc) {
        x[n].logical = "new_sensorreading";
        rc = make_table(&x[n], K_ELASTIC, 10100 + (int)n);
        n++;
    }
    if (rc)
        return rc; /* the process exits: what was allocated goes with it */
    dvschema_extra = x;
    dvschema_n_extra = n;
    return 0;
}
