/* seed_activity: the activities of the sample tenant (seed_int.h). About one activity per
 * account: 35% e-mails, 30% tasks, 20% phone calls, 15% appointments, each regarding an account
 * (50%), a contact (25%), an opportunity (15%) or an incident (10%); half are open, 40% completed,
 * 10% canceled, with the status codes of their type. Each has a row in activitypointer (same
 * activityid) and parties in activityparty:
 *   e-mail       a sender (a user, mask 1), 1-3 To (contacts or accounts, 2), 0-1 CC (a user, 3),
 *                each with the address used
 *   task         its owner (a user, 9) and, when it regards an account or contact, that (8)
 *   phone call   the caller (a user, 1) and sometimes the contact called (2)
 *   appointment  the organizer (a user, 7) and 1-3 required attendees (contacts or users, 5)
 * The parties of every activity are planned first (g->party_off) so that a party's index maps to
 * its activity and slot; party_index records which parties belong to each activity, as the write
 * path keeps it. Single-threaded (see seed_int.h). */
#include "tools/dvsim/seed_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const topics[] = {"pricing", "renewal", "onboarding", "Q3 review", "Lieferung verspätet",
                                     "contract terms", "support follow-up", "demo", "Ünïcödé invoice",
                                     "site visit"};
static const char *const type_names[N_ACTIVITY_TYPES] = {"email", "task", "phonecall", "appointment"};
static const char *const prefixes[N_ACTIVITY_TYPES] = {"Re:", "Follow up:", "Call:", "Meeting:"};

/* One activity's plan: what every row that depends on it needs. */
struct act {
    int table;               /* T_EMAIL .. T_APPOINTMENT */
    uint64_t i, h;
    int regarding;           /* T_ACCOUNT, T_CONTACT, T_OPPORTUNITY, T_INCIDENT; -1: none */
    uint64_t regarding_index;
    int statecode, statuscode;
    int n_to;                /* e-mail: To recipients; appointment: required attendees */
    bool cc;                 /* e-mail: a CC recipient */
    int n_parties;
};

static void plan(const struct gen *g, int table, uint64_t i, struct act *a)
{
    memset(a, 0, sizeof *a);
    a->table = table;
    a->i = i;
    a->h = seed_hash(g, table, i, 7);
    uint64_t r = a->h % 100, x = a->h >> 8;
    int want = r < 50 ? T_ACCOUNT : r < 75 ? T_CONTACT : r < 90 ? T_OPPORTUNITY : T_INCIDENT;
    if (g->counts[want] == 0)
        want = T_ACCOUNT;
    a->regarding = g->counts[want] ? want : -1;
    a->regarding_index = a->regarding < 0 ? 0 : x % (uint64_t)g->counts[want];
    uint64_t s = (a->h >> 40) % 100, v = a->h >> 48;
    a->statecode = s < 50 ? 0 : s < 90 ? 1 : 2;
    static const int open[N_ACTIVITY_TYPES][2] = {{1, 1}, {2, 3}, {1, 1}, {1, 2}};
    static const int done[N_ACTIVITY_TYPES][2] = {{3, 4}, {5, 5}, {2, 2}, {3, 3}};
    static const int canceled[N_ACTIVITY_TYPES] = {5, 6, 3, 4};
    int k = table - T_EMAIL;
    a->statuscode = a->statecode == 0 ? open[k][v % 2] : a->statecode == 1 ? done[k][v % 2] : canceled[k];
    uint64_t p = seed_hash(g, table, i, 11);
    switch (table) {
    case T_EMAIL:
        a->n_to = 1 + (int)(p % 3);
        a->cc = (p >> 4) & 1;
        a->n_parties = 1 + a->n_to + a->cc;
        break;
    case T_TASK:
        a->n_parties = 1 + (a->regarding == T_ACCOUNT || a->regarding == T_CONTACT);
        break;
    case T_PHONECALL:
        a->n_parties = 1 + (int)((p >> 4) & 1);
        break;
    default:
        a->n_to = 1 + (int)(p % 3);
        a->n_parties = 1 + a->n_to;
        break;
    }
}

int seed_activity_plan(struct gen *g)
{
    int64_t a = g->counts[T_ACCOUNT];
    g->counts[T_EMAIL] = a * 35 / 100;
    g->counts[T_TASK] = a * 30 / 100;
    g->counts[T_PHONECALL] = a * 20 / 100;
    g->counts[T_APPOINTMENT] = a - g->counts[T_EMAIL] - g->counts[T_TASK] - g->counts[T_PHONECALL];
    int64_t total = a;
    g->counts[T_ACTIVITYPOINTER] = total;
    g->party_off = malloc(((size_t)total + 1) * sizeof *g->party_off);
    if (!g->party_off)
        return -ENOMEM;
    int64_t n = 0, j = 0;
    for (int k = 0; k < N_ACTIVITY_TYPES; k++)
        for (int64_t i = 0; i < g->counts[T_EMAIL + k]; i++) {
            struct act act;
            plan(g, T_EMAIL + k, (uint64_t)i, &act);
            g->party_off[n++] = j;
            j += act.n_parties;
        }
    g->party_off[n] = j;
    g->counts[T_ACTIVITYPARTY] = j;
    return 0;
}

/* Activity number n of all types -> its table and index. */
static void activity_at(const struct gen *g, uint64_t n, int *table, uint64_t *i)
{
    int k = 0;
    while (k + 1 < N_ACTIVITY_TYPES && n >= (uint64_t)g->counts[T_EMAIL + k]) {
        n -= (uint64_t)g->counts[T_EMAIL + k];
        k++;
    }
    *table = T_EMAIL + k;
    *i = n;
}

void seed_pointer_id(const struct gen *g, uint64_t i, char out[37])
{
    int table;
    uint64_t k;
    activity_at(g, i, &table, &k);
    seed_id(g, table, k, out);
}

static void subject_of(const struct act *a, char *out, size_t n)
{
    snprintf(out, n, "%s %s #%llu", prefixes[a->table - T_EMAIL], topics[(a->h >> 20) % NA(topics)],
             (unsigned long long)a->i + 1);
}

static void regarding_of(const struct gen *g, const struct act *a, char id[37], char *name, size_t n)
{
    switch (a->regarding) {
    case T_ACCOUNT: seed_account_name(g, a->regarding_index, name, n); break;
    case T_CONTACT: seed_contact_name(g, a->regarding_index, name, n); break;
    case T_OPPORTUNITY: seed_opportunity_name(g, a->regarding_index, name, n); break;
    default: seed_incident_title(g, a->regarding_index, name, n); break;
    }
    seed_id(g, a->regarding, a->regarding_index, id);
}

static void time_col(struct gen *g, const struct table_def *t, const char *member, int64_t when)
{
    char iso[32], q[40];
    dvsim_iso_time(when, iso);
    snprintf(q, sizeof q, "\"%s\"", iso);
    lb_col(&g->lb, t, member, q);
}

/* The columns an activity and its activitypointer row share. */
static void shared_columns(struct gen *g, const struct table_def *t, const struct act *a, int64_t created,
                           int64_t modified)
{
    char id[37], name[200], v[32];
    subject_of(a, name, sizeof name);
    lb_str(&g->lb, "subject", name);
    lb_str(&g->lb, "activitytypecode", type_names[a->table - T_EMAIL]);
    time_col(g, t, "scheduledend", created + (int64_t)((a->h >> 24) % 30 + 1) * 86400);
    if (a->statecode)
        time_col(g, t, "actualend", modified);
    else
        lb_raw(&g->lb, "actualend", "null", 4);
    if (a->regarding < 0) {
        lb_lookup(&g->lb, "regardingobjectid", "account", NULL, NULL);
    } else {
        regarding_of(g, a, id, name, sizeof name);
        lb_lookup(&g->lb, "regardingobjectid", dvschema_tables[a->regarding].logical, id, name);
    }
    snprintf(v, sizeof v, "%d", a->statecode);
    lb_col(&g->lb, t, "statecode", v);
}

int seed_gen_activity(struct gen *g, int table, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[table];
    struct act a;
    char id[37], v[200];
    int64_t ver = ++g->ver, created, modified;
    plan(g, table, i, &a);
    seed_time_pair(g, table, i, &created, &modified);
    seed_id(g, table, i, id);
    lb_str(&g->lb, "activityid", id);
    shared_columns(g, t, &a, created, modified);
    if (a.h % 3 == 0)
        lb_raw(&g->lb, "description", "null", 4);
    else {
        snprintf(v, sizeof v, "Notes on %s:\n- next step agreed\n- \"priority\" ✓", topics[(a.h >> 28) % NA(topics)]);
        lb_str(&g->lb, "description", v);
    }
    snprintf(v, sizeof v, "%d", a.statuscode);
    lb_col(&g->lb, t, "statuscode", v);
    seed_owner(g, table, i, true);
    switch (table) {
    case T_EMAIL:
        lb_col(&g->lb, t, "directioncode", (a.h >> 32) % 3 ? "true" : "false");
        break;
    case T_TASK:
        lb_col(&g->lb, t, "percentcomplete", a.statecode == 1 ? "100" : (a.h >> 32) % 2 ? "50" : "0");
        break;
    case T_PHONECALL:
        snprintf(v, sizeof v, "+44 20 7946 %04llu", (unsigned long long)((a.h >> 32) % 10000));
        lb_str(&g->lb, "phonenumber", v);
        lb_col(&g->lb, t, "directioncode", (a.h >> 36) % 2 ? "true" : "false");
        break;
    default:
        time_col(g, t, "scheduledstart", created + (int64_t)((a.h >> 24) % 30 + 1) * 86400 - 3600);
        lb_str(&g->lb, "location", (a.h >> 32) % 2 ? "Teams" : "Room 4.01 — Zürich");
        break;
    }
    seed_common(g, t, i, ver);
    return seed_insert(g, table, id);
}

int seed_gen_pointer(struct gen *g, uint64_t n)
{
    const struct table_def *t = &dvschema_tables[T_ACTIVITYPOINTER];
    struct act a;
    char id[37], num[32], etag[40];
    int table;
    uint64_t i;
    int64_t ver = ++g->ver, created, modified;
    activity_at(g, n, &table, &i);
    plan(g, table, i, &a);
    seed_time_pair(g, table, i, &created, &modified);
    seed_id(g, table, i, id);
    lb_str(&g->lb, "activityid", id);
    shared_columns(g, t, &a, created, modified);
    seed_owner(g, table, i, false);
    time_col(g, t, "createdon", created);
    time_col(g, t, "modifiedon", modified);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    return seed_insert(g, T_ACTIVITYPOINTER, id);
}

/* A user for a party (any user of the environment but the application user when there is one). */
static uint64_t party_user(const struct gen *g, uint64_t h)
{
    int64_t nu = g->counts[T_SYSTEMUSER];
    return nu > 1 ? 1 + h % (uint64_t)(nu - 1) : 0;
}

int seed_gen_party(struct gen *g, uint64_t j)
{
    const struct table_def *t = &dvschema_tables[T_ACTIVITYPARTY];
    int64_t total = g->counts[T_ACTIVITYPOINTER];
    /* the activity whose parties include party j: the last with party_off <= j */
    int64_t lo = 0, hi = total - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (g->party_off[mid] <= (int64_t)j)
            lo = mid;
        else
            hi = mid - 1;
    }
    int table;
    uint64_t i;
    activity_at(g, (uint64_t)lo, &table, &i);
    struct act a;
    plan(g, table, i, &a);
    int slot = (int)((int64_t)j - g->party_off[lo]);
    uint64_t h = seed_hash(g, T_ACTIVITYPARTY, j, 7);
    int mask, who; /* who: T_SYSTEMUSER, T_CONTACT or T_ACCOUNT */
    uint64_t index;
    int64_t nc = g->counts[T_CONTACT], na = g->counts[T_ACCOUNT];
    switch (table) {
    case T_EMAIL:
        mask = slot == 0 ? 1 : slot <= a.n_to ? 2 : 3;
        who = mask != 2 ? T_SYSTEMUSER : (h >> 8) % 10 < 7 && nc ? T_CONTACT : T_ACCOUNT;
        break;
    case T_TASK:
        mask = slot == 0 ? 9 : 8;
        who = slot == 0 ? T_SYSTEMUSER : a.regarding;
        break;
    case T_PHONECALL:
        mask = slot == 0 ? 1 : 2;
        who = slot == 0 || !nc ? T_SYSTEMUSER : T_CONTACT;
        break;
    default:
        mask = slot == 0 ? 7 : 5;
        who = slot == 0 || (h >> 8) % 10 >= 6 || !nc ? T_SYSTEMUSER : T_CONTACT;
        break;
    }
    if (who == T_ACCOUNT && !na)
        who = T_SYSTEMUSER;
    if (table == T_TASK && slot == 1)
        index = a.regarding_index;
    else if (who == T_SYSTEMUSER)
        index = party_user(g, h >> 16);
    else
        index = (h >> 16) % (uint64_t)(who == T_CONTACT ? nc : na);
    char id[37], aid[37], pid[37], name[200], mail[200], subject[200], v[8], num[32], etag[40];
    int64_t ver = ++g->ver;
    seed_id(g, T_ACTIVITYPARTY, j, id);
    seed_id(g, table, i, aid);
    lb_str(&g->lb, "activitypartyid", id);
    subject_of(&a, subject, sizeof subject);
    lb_lookup(&g->lb, "activityid", dvschema_tables[table].logical, aid, subject);
    mail[0] = '\0';
    if (who == T_SYSTEMUSER) {
        seed_user(g, index, pid, name, sizeof name, mail, sizeof mail);
    } else if (who == T_CONTACT) {
        seed_id(g, T_CONTACT, index, pid);
        seed_contact_name(g, index, name, sizeof name);
        snprintf(mail, sizeof mail, "contact%llu@example.com", (unsigned long long)index + 1);
    } else {
        seed_id(g, T_ACCOUNT, index, pid);
        seed_account_name(g, index, name, sizeof name);
        snprintf(mail, sizeof mail, "info@account%llu.example.com", (unsigned long long)index + 1);
    }
    lb_lookup(&g->lb, "partyid", dvschema_tables[who].logical, pid, name);
    snprintf(v, sizeof v, "%d", mask);
    lb_col(&g->lb, t, "participationtypemask", v);
    lb_str(&g->lb, "addressused", table == T_EMAIL ? mail : NULL);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    sqlite3_reset(g->ins_party);
    sqlite3_bind_int(g->ins_party, 1, g->env);
    sqlite3_bind_text(g->ins_party, 2, aid, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(g->ins_party, 3, id, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(g->ins_party) != SQLITE_DONE)
        return -EIO;
    return seed_insert(g, T_ACTIVITYPARTY, id);
}
