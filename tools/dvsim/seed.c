/* seed: the deterministic sample tenant (seed_int.h lists the seed's files). The same seed gives
 * the same database byte for byte; no wall-clock time: timestamps count from a fixed base and
 * spread over three years.
 *
 * Sizes: contoso-prod has `records` accounts and twice as many contacts; the other orgs keep the
 * demo size (300 accounts, fabrikam-prod 500). Opportunities and incidents are half the accounts
 * (at most 500 each), about one activity per account, 2-5 parties per e-mail and 1-4 per other
 * activity. About 10% of contacts (at most 2,000 per org) have an image.
 *
 * People and principals: the tenant's people (25, or records/400 up to 2,500) are the same in
 * every environment: same name, Entra object id (azureactivedirectoryobjectid) and domainname, but
 * a systemuserid of each environment. contoso-dev and contoso-test lack two of them (leavers);
 * in contoso-dev one person has another Entra object id (matched only by domainname) and two
 * people exist there only. Person 0 is the application user (dvschema_app_user_id). Each org has
 * a root business unit named after the org and children Sales and Service, a default team per
 * business unit, the owner teams Sales Team and Support Team and the access team Escalations, and
 * the currencies USD (base), EUR and GBP; all with ids of their own per environment. Records are
 * owned by a user about 70% of the time, else by an owner team; the owning* columns follow.
 *
 * One SQLite transaction with prepared statements; each table is inserted in primary-key order.
 * Also the shared formatting of values (dvsim_format_value), Base64 and the thumbnail of an image.
 * Single-threaded (start-up, /_sim/reset, churn). */
#include "tools/dvsim/seed_int.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

#define BASE_TIME 1609459200LL /* 2021-01-01T00:00:00Z */
#define SPREAD_DAYS (3 * 365)

static const char *const first_names[] = {
    "Zoë", "José", "Søren", "Łukasz", "Małgorzata", "Chloé", "Jürgen", "Ana", "Yuki", "Wei",
    "Αλέξανδρος", "Olúwásèun", "Maria", "John", "Priya", "Ahmed", "Fatima", "Nils", "Aoife", "Siobhán",
    "Émilie", "Dmitri", "Ingrid", "Kwame", "Lucía", "Mateo", "Sakura", "Thandiwe", "Björn", "Noor"};
static const char *const last_names[] = {
    "Müller", "García", "O'Brien", "Nguyễn", "Østergaard", "Smith", "Johnson", "Kowalski", "田中",
    "Ivanov", "Dubois", "Rossi", "Papadopoulos", "Andersson", "Okafor", "Haddad", "Kim", "Patel",
    "Schröder", "Fernández", "Novák", "Yılmaz", "Murphy", "Van der Berg", "Nakamura"};
static const char *const companies[] = {
    "Contoso", "Fabrikam", "Northwind Traders", "Adventure Works", "Tailspin Toys", "Wingtip Toys",
    "Litware", "Proseware", "Alpine Ski House", "Blue Yonder Airlines", "Coho Winery", "Fourth Coffee",
    "Café Zürich", "株式会社 東京商事", "Ørsted Vind", "Señor Taco", "Woodgrove Bank", "Trey Research",
    "Lamna Healthcare", "Relecloud", "Margie's Travel", "Graphic Design Institute", "Humongous Insurance",
    "Datum Corporation"};
static const char *const suffixes[] = {"Ltd", "Inc.", "GmbH", "S.A.", "plc", "LLC", "AB", "K.K.", "Pty Ltd", "SARL"};
static const char *const cities[] = {"Seattle", "München", "São Paulo", "Kraków", "Zürich", "東京",
                                     "Dublin", "Lagos", "Reykjavík", "Montréal", "Århus", "New York"};
static const char *const titles[] = {"Printer not working", "Invoice question", "Cannot log in",
                                     "Delivery delayed", "Refund request", "Größenänderung der Bestellung",
                                     "Damaged package", "Feature request: dark mode", "Password reset",
                                     "Billing address change"};
static const char *const jobs[] = {"Purchasing Manager", "CEO", "Ingénieure", "Buyer", "CTO",
                                   "Office Manager", NULL, "Sales Director", NULL, "Analyst"};


/* ---- Base64 ---- */
int dvsim_base64(const unsigned char *in, size_t n, struct buf *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int rc = buf_reserve(out, (n + 2) / 3 * 4);
    if (rc)
        return rc;
    char *o = out->data + out->len;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
    return 0;
}

/* ---- formatted values (shared with writes) ---- */
int dvsim_format_value(const struct col_def *c, const char *raw, size_t len, char *out, size_t n)
{
    char v[128];
    if (len == 4 && memcmp(raw, "null", 4) == 0)
        return 0;
    if (raw[0] == '"') {
        if (len < 2 || len - 2 >= sizeof v)
            return 0;
        memcpy(v, raw + 1, len - 2);
        v[len - 2] = '\0';
    } else {
        if (len >= sizeof v)
            return 0;
        memcpy(v, raw, len);
        v[len] = '\0';
    }
    switch (c->type) {
    case COL_MONEY: dvsim_fmt_money(v, out, n); return 1;
    case COL_INTEGER: case COL_BIGINT: case COL_DECIMAL: dvsim_fmt_number(v, out, n); return 1;
    case COL_DATETIME: dvsim_fmt_datetime(v, out, n); return 1;
    case COL_DATEONLY: dvsim_fmt_dateonly(v, out, n); return 1;
    case COL_BOOLEAN: snprintf(out, n, "%s", strcmp(v, "true") == 0 ? "Yes" : "No"); return 1;
    case COL_PICKLIST: case COL_STATE: {
        char *end;
        long x = strtol(v, &end, 10);
        const char *l = *end ? NULL : dvschema_option_label(c, (int)x);
        if (!l)
            return 0;
        snprintf(out, n, "%s", l);
        return 1;
    }
    default: return 0;
    }
}

/* ---- the line builder ---- */
void lb_raw(struct lb *b, const char *key, const char *raw, size_t len)
{
    if (b->n >= 128)
        return;
    struct lbm *m = &b->m[b->n++];
    m->koff = (uint32_t)b->s.len;
    m->klen = (uint32_t)strlen(key);
    buf_add(&b->s, key, m->klen);
    m->voff = (uint32_t)b->s.len;
    buf_add(&b->s, raw, len);
    m->vlen = (uint32_t)(b->s.len - m->voff);
}

void lb_str(struct lb *b, const char *key, const char *s)
{
    if (b->n >= 128)
        return;
    if (!s) {
        lb_raw(b, key, "null", 4);
        return;
    }
    struct lbm *m = &b->m[b->n++];
    m->koff = (uint32_t)b->s.len;
    m->klen = (uint32_t)strlen(key);
    buf_add(&b->s, key, m->klen);
    m->voff = (uint32_t)b->s.len;
    buf_add_json_string(&b->s, s, strlen(s));
    m->vlen = (uint32_t)(b->s.len - m->voff);
}

static void lb_annot(struct lb *b, const char *member, const char *annot, const char *s)
{
    char key[256];
    snprintf(key, sizeof key, "%s%s", member, annot);
    lb_str(b, key, s);
}

void lb_col(struct lb *b, const struct table_def *t, const char *member, const char *raw)
{
    const struct col_def *c = dvschema_col_by_member(t, member, strlen(member));
    lb_raw(b, member, raw, strlen(raw));
    char f[160];
    if (c && dvsim_format_value(c, raw, strlen(raw), f, sizeof f))
        lb_annot(b, member, FV, f);
}

void lb_lookup(struct lb *b, const char *attr, const char *target, const char *id, const char *name)
{
    char member[128];
    snprintf(member, sizeof member, "_%s_value", attr);
    lb_str(b, member, id);
    if (id) {
        lb_annot(b, member, LLN, target);
        if (name)
            lb_annot(b, member, FV, name);
    }
}

static int lbm_cmp(const void *a, const void *b, void *ctx)
{
    const char *s = ctx;
    const struct lbm *x = a, *y = b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(s + x->koff, s + y->koff, n);
    return c ? c : (int)x->klen - (int)y->klen;
}

static void lb_render(struct lb *b, const char *pk, struct buf *out)
{
    qsort_r(b->m, (size_t)b->n, sizeof b->m[0], lbm_cmp, b->s.data);
    buf_reset(out);
    buf_addch(out, '{');
    int pki = -1;
    for (int i = 0; i < b->n; i++)
        if (b->m[i].klen == strlen(pk) && memcmp(b->s.data + b->m[i].koff, pk, b->m[i].klen) == 0)
            pki = i;
    bool first = true;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < b->n; i++) {
            if ((pass == 0) != (i == pki))
                continue;
            if (!first)
                buf_addch(out, ',');
            first = false;
            buf_add_json_string(out, b->s.data + b->m[i].koff, b->m[i].klen);
            buf_addch(out, ':');
            buf_add(out, b->s.data + b->m[i].voff, b->m[i].vlen);
        }
    }
    buf_addch(out, '}');
    buf_reset(&b->s);
    b->n = 0;
}

/* ---- deterministic values ---- */
static uint64_t hash_in(const struct gen *g, int env, int table, uint64_t i, uint64_t salt)
{
    uint64_t s = g->d->seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)env << 56) ^ ((uint64_t)table << 48) ^
                 (salt << 40) ^ i;
    dvsim_splitmix64(&s);
    return dvsim_splitmix64(&s);
}

uint64_t seed_hash(const struct gen *g, int table, uint64_t i, uint64_t salt)
{
    return hash_in(g, g->env, table, i, salt);
}

uint64_t seed_person_hash(const struct gen *g, int p, uint64_t salt)
{
    return hash_in(g, 0, T_SYSTEMUSER, (uint64_t)p, salt);
}

void seed_id(const struct gen *g, int table, uint64_t i, char out[37])
{
    if (table == T_SYSTEMUSER) {
        int p = g->members[i];
        if (p == 0)
            dvschema_app_user_id(g->env, out);
        else
            dvsim_guid(seed_hash(g, T_SYSTEMUSER, (uint64_t)p, 1), seed_hash(g, T_SYSTEMUSER, (uint64_t)p, 2),
                       out);
        return;
    }
    if (table == T_ACTIVITYPOINTER) {
        seed_pointer_id(g, i, out);
        return;
    }
    dvsim_guid(seed_hash(g, table, i, 1), seed_hash(g, table, i, 2), out);
}

void seed_account_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    uint64_t h = seed_hash(g, T_ACCOUNT, i, 3);
    snprintf(out, n, "%s %s %llu", companies[h % NA(companies)], suffixes[(h >> 16) % NA(suffixes)],
             (unsigned long long)i + 1);
}

void seed_person_name(uint64_t h, const char **first, const char **last)
{
    *first = first_names[h % NA(first_names)];
    *last = last_names[(h >> 20) % NA(last_names)];
}

static void contact_first_last(const struct gen *g, uint64_t i, const char **first, const char **last)
{
    seed_person_name(seed_hash(g, T_CONTACT, i, 4), first, last);
}

void seed_contact_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    const char *f, *l;
    contact_first_last(g, i, &f, &l);
    snprintf(out, n, "%s %s", f, l);
}

void seed_opportunity_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    uint64_t h = seed_hash(g, T_OPPORTUNITY, i, 7);
    int64_t na = g->counts[T_ACCOUNT];
    char an[160];
    seed_account_name(g, na ? h % (uint64_t)na : 0, an, sizeof an);
    snprintf(out, n, "%llu licences for %s", (unsigned long long)(5 + (h >> 8) % 500), an);
}

void seed_incident_title(const struct gen *g, uint64_t i, char *out, size_t n)
{
    snprintf(out, n, "%s", titles[seed_hash(g, T_INCIDENT, i, 7) % NA(titles)]);
}


void seed_time_pair(const struct gen *g, int table, uint64_t i, int64_t *created, int64_t *modified)
{
    uint64_t h = seed_hash(g, table, i, 5);
    *created = BASE_TIME + (int64_t)(h % (SPREAD_DAYS * 86400ull));
    *modified = *created + (int64_t)((h >> 32) % (120ull * 86400));
}

void seed_iso_quoted(int64_t t, char out[40])
{
    char iso[32];
    dvsim_iso_time(t, iso);
    snprintf(out, 40, "\"%s\"", iso);
}

void seed_common(struct gen *g, const struct table_def *t, uint64_t i, int64_t ver)
{
    char q[40], num[32], etag[40];
    int64_t c, m;
    seed_time_pair(g, dvschema_table_index(t), i, &c, &m);
    seed_iso_quoted(c, q);
    lb_col(&g->lb, t, "createdon", q);
    seed_iso_quoted(m, q);
    lb_col(&g->lb, t, "modifiedon", q);
    lb_raw(&g->lb, "overriddencreatedon", "null", 4);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
}

int seed_insert(struct gen *g, int table, const char *id)
{
    const struct table_def *t = dvschema_table_at(table);
    lb_render(&g->lb, t->pk, &g->line);
    sqlite3_reset(g->ins);
    sqlite3_bind_int(g->ins, 1, table_id(g->env, table));
    sqlite3_bind_text(g->ins, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(g->ins, 3, g->ver);
    sqlite3_bind_blob(g->ins, 4, g->line.data, (int)g->line.len, SQLITE_STATIC);
    int rc = sqlite3_step(g->ins);
    return rc == SQLITE_DONE ? 0 : dvstore_errno(rc);
}

static void money(uint64_t h, uint64_t max, char *out, size_t n)
{
    snprintf(out, n, "%llu.%02llu", (unsigned long long)(h % max), (unsigned long long)((h >> 40) % 100));
}

void seed_state(struct gen *g, const struct table_def *t, int statecode, int statuscode)
{
    char v[16];
    snprintf(v, sizeof v, "%d", statecode);
    lb_col(&g->lb, t, "statecode", v);
    snprintf(v, sizeof v, "%d", statuscode);
    lb_col(&g->lb, t, "statuscode", v);
}

static int gen_account(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_ACCOUNT];
    char id[37], name[160], v[256], rid[37], rev[64];
    uint64_t h = seed_hash(g, T_ACCOUNT, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_ACCOUNT, i, id);
    seed_account_name(g, i, name, sizeof name);
    lb_str(&g->lb, "accountid", id);
    lb_str(&g->lb, "name", name);
    snprintf(v, sizeof v, "ACC-%06llu", (unsigned long long)i + 1);
    lb_str(&g->lb, "accountnumber", v);
    if (h % 5 == 0)
        lb_str(&g->lb, "description", NULL);
    else {
        snprintf(v, sizeof v, "Key account in %s.\nNotes: \"priority\" customer — ✓ since %llu 🚀",
                 cities[h % NA(cities)], (unsigned long long)(2000 + h % 24));
        lb_str(&g->lb, "description", v);
    }
    if (h % 7 == 0)
        lb_str(&g->lb, "telephone1", NULL);
    else {
        snprintf(v, sizeof v, "+1-555-%04llu", (unsigned long long)(h % 10000));
        lb_str(&g->lb, "telephone1", v);
    }
    lb_str(&g->lb, "address1_city", cities[(h >> 8) % NA(cities)]);
    money(h >> 3, 2000000000ull, rev, sizeof rev);
    lb_col(&g->lb, t, "revenue", rev);
    seed_currency(g, t, T_ACCOUNT, i, "revenue", rev);
    snprintf(v, sizeof v, "%llu", (unsigned long long)((h >> 12) % 250000));
    lb_col(&g->lb, t, "numberofemployees", v);
    static const int ct[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    snprintf(v, sizeof v, "%d", ct[(h >> 20) % 12]);
    lb_col(&g->lb, t, "customertypecode", v);
    static const int ic[] = {1, 2, 3, 4, 6, 7, 8, 12, 19, 25, 29, 33};
    if ((h >> 24) % 4 == 0)
        lb_raw(&g->lb, "industrycode", "null", 4);
    else {
        snprintf(v, sizeof v, "%d", ic[(h >> 26) % 12]);
        lb_col(&g->lb, t, "industrycode", v);
    }
    int64_t nc = g->counts[T_CONTACT];
    if (nc > 0 && (h >> 30) % 3 != 0) {
        uint64_t ci = (i * 2) % (uint64_t)nc;
        seed_id(g, T_CONTACT, ci, rid);
        seed_contact_name(g, ci, name, sizeof name);
        lb_lookup(&g->lb, "primarycontactid", "contact", rid, name);
    } else {
        lb_lookup(&g->lb, "primarycontactid", "contact", NULL, NULL);
    }
    if (i > 0 && (h >> 34) % 10 == 0) {
        uint64_t p = (h >> 36) % i;
        seed_id(g, T_ACCOUNT, p, rid);
        seed_account_name(g, p, name, sizeof name);
        lb_lookup(&g->lb, "parentaccountid", "account", rid, name);
    } else {
        lb_lookup(&g->lb, "parentaccountid", "account", NULL, NULL);
    }
    seed_owner(g, T_ACCOUNT, i, true);
    bool inactive = (h >> 40) % 5 == 0;
    seed_state(g, t, inactive, inactive ? 2 : 1);
    seed_common(g, t, i, ver);
    return seed_insert(g, T_ACCOUNT, id);
}

static int gen_contact(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_CONTACT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = seed_hash(g, T_CONTACT, i, 7);
    int64_t ver = ++g->ver;
    const char *f, *l;
    seed_id(g, T_CONTACT, i, id);
    contact_first_last(g, i, &f, &l);
    lb_str(&g->lb, "contactid", id);
    lb_str(&g->lb, "firstname", f);
    lb_str(&g->lb, "lastname", l);
    snprintf(name, sizeof name, "%s %s", f, l);
    lb_str(&g->lb, "fullname", name);
    snprintf(v, sizeof v, "contact%llu@example.com", (unsigned long long)i + 1);
    lb_str(&g->lb, "emailaddress1", h % 9 == 0 ? NULL : v);
    lb_str(&g->lb, "jobtitle", jobs[(h >> 4) % NA(jobs)]);
    if (h % 4 == 0)
        lb_raw(&g->lb, "birthdate", "null", 4);
    else {
        snprintf(v, sizeof v, "\"%04llu-%02llu-%02llu\"", (unsigned long long)(1950 + (h >> 8) % 50),
                 (unsigned long long)(1 + (h >> 16) % 12), (unsigned long long)(1 + (h >> 20) % 28));
        lb_col(&g->lb, t, "birthdate", v);
    }
    money(h >> 5, 400000ull, v, sizeof v);
    lb_col(&g->lb, t, "annualincome", v);
    if ((h >> 24) % 3 == 0)
        lb_raw(&g->lb, "gendercode", "null", 4);
    else
        lb_col(&g->lb, t, "gendercode", (h >> 26) % 2 ? "1" : "2");
    lb_col(&g->lb, t, "donotemail", (h >> 28) % 6 == 0 ? "true" : "false");
    int64_t na = g->counts[T_ACCOUNT];
    if (na > 0 && (h >> 30) % 8 != 0) {
        uint64_t a = (i / 2) % (uint64_t)na;
        seed_id(g, T_ACCOUNT, a, rid);
        seed_account_name(g, a, name, sizeof name);
        lb_lookup(&g->lb, "parentcustomerid", "account", rid, name);
    } else if (i > 0 && (h >> 30) % 8 == 0 && (h >> 33) % 2) {
        uint64_t c = (h >> 34) % i; /* some contacts belong to another contact */
        seed_id(g, T_CONTACT, c, rid);
        seed_contact_name(g, c, name, sizeof name);
        lb_lookup(&g->lb, "parentcustomerid", "contact", rid, name);
    } else {
        lb_lookup(&g->lb, "parentcustomerid", "account", NULL, NULL);
    }
    int rc = 0;
    if (i < 20000 && (h >> 44) % 10 == 0) {
        rc = seed_contact_image(g, i, id, h);
    } else {
        lb_raw(&g->lb, "entityimage", "null", 4);
        lb_raw(&g->lb, "entityimageid", "null", 4);
        lb_raw(&g->lb, "entityimage_timestamp", "null", 4);
        lb_raw(&g->lb, "entityimage_url", "null", 4);
    }
    seed_owner(g, T_CONTACT, i, true);
    bool inactive = (h >> 40) % 5 == 0;
    seed_state(g, t, inactive, inactive ? 2 : 1);
    seed_common(g, t, i, ver);
    return rc ? rc : seed_insert(g, T_CONTACT, id);
}

static void customer(struct gen *g, uint64_t h)
{
    char rid[37], name[160];
    int64_t na = g->counts[T_ACCOUNT], nc = g->counts[T_CONTACT];
    if (nc > 0 && h % 5 == 0) {
        uint64_t c = (h >> 4) % (uint64_t)nc;
        seed_id(g, T_CONTACT, c, rid);
        seed_contact_name(g, c, name, sizeof name);
        lb_lookup(&g->lb, "customerid", "contact", rid, name);
    } else if (na > 0) {
        uint64_t a = h % (uint64_t)na;
        seed_id(g, T_ACCOUNT, a, rid);
        seed_account_name(g, a, name, sizeof name);
        lb_lookup(&g->lb, "customerid", "account", rid, name);
    } else {
        lb_lookup(&g->lb, "customerid", "account", NULL, NULL);
    }
}

static int gen_opportunity(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_OPPORTUNITY];
    char id[37], name[200], v[128], rid[37], est[64];
    uint64_t h = seed_hash(g, T_OPPORTUNITY, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_OPPORTUNITY, i, id);
    lb_str(&g->lb, "opportunityid", id);
    seed_opportunity_name(g, i, name, sizeof name);
    lb_str(&g->lb, "name", name);
    money(h >> 3, 5000000ull, est, sizeof est);
    lb_col(&g->lb, t, "estimatedvalue", est);
    seed_currency(g, t, T_OPPORTUNITY, i, "estimatedvalue", est);
    snprintf(v, sizeof v, "%llu", (unsigned long long)((h >> 16) % 101));
    lb_col(&g->lb, t, "closeprobability", v);
    snprintf(v, sizeof v, "\"2024-%02llu-%02llu\"", (unsigned long long)(1 + (h >> 20) % 12),
             (unsigned long long)(1 + (h >> 24) % 28));
    lb_col(&g->lb, t, "estimatedclosedate", v);
    lb_col(&g->lb, t, "opportunityratingcode", (h >> 28) % 3 == 0 ? "1" : (h >> 28) % 3 == 1 ? "2" : "3");
    customer(g, seed_hash(g, T_OPPORTUNITY, i, 8));
    int64_t nc = g->counts[T_CONTACT];
    if (nc && (h >> 32) % 2) {
        uint64_t c = (h >> 33) % (uint64_t)nc;
        seed_id(g, T_CONTACT, c, rid);
        seed_contact_name(g, c, name, sizeof name);
        lb_lookup(&g->lb, "parentcontactid", "contact", rid, name);
    } else {
        lb_lookup(&g->lb, "parentcontactid", "contact", NULL, NULL);
    }
    seed_owner(g, T_OPPORTUNITY, i, true);
    uint64_t r = (h >> 40) % 100;
    if (r < 20)
        seed_state(g, t, 1, 3);
    else if (r < 35)
        seed_state(g, t, 2, (h >> 48) % 2 ? 4 : 5);
    else
        seed_state(g, t, 0, (h >> 48) % 5 == 0 ? 2 : 1);
    if (r < 35)
        lb_col(&g->lb, t, "actualclosedate", v);
    else
        lb_raw(&g->lb, "actualclosedate", "null", 4);
    seed_common(g, t, i, ver);
    return seed_insert(g, T_OPPORTUNITY, id);
}

static int gen_incident(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_INCIDENT];
    char id[37], v[256];
    uint64_t h = seed_hash(g, T_INCIDENT, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_INCIDENT, i, id);
    lb_str(&g->lb, "incidentid", id);
    lb_str(&g->lb, "title", titles[h % NA(titles)]);
    snprintf(v, sizeof v, "CAS-%05llu-%c%c%c", (unsigned long long)i + 1, 'A' + (int)(h >> 8) % 26,
             'A' + (int)(h >> 13) % 26, '0' + (int)(h >> 18) % 10);
    lb_str(&g->lb, "ticketnumber", v);
    snprintf(v, sizeof v, "Customer wrote:\r\n\t\"%s\" — please help. Ünïcödé ✓", titles[(h >> 3) % NA(titles)]);
    lb_str(&g->lb, "description", (h >> 22) % 5 == 0 ? NULL : v);
    lb_col(&g->lb, t, "prioritycode", (h >> 24) % 3 == 0 ? "1" : (h >> 24) % 3 == 1 ? "2" : "3");
    lb_col(&g->lb, t, "casetypecode", (h >> 26) % 3 == 0 ? "1" : (h >> 26) % 3 == 1 ? "2" : "3");
    customer(g, h >> 28);
    seed_owner(g, T_INCIDENT, i, true);
    uint64_t r = (h >> 40) % 100;
    if (r < 30)
        seed_state(g, t, 1, 5);
    else if (r < 35)
        seed_state(g, t, 2, 6);
    else
        seed_state(g, t, 0, 1 + (int)((h >> 48) % 3));
    seed_common(g, t, i, ver);
    return seed_insert(g, T_INCIDENT, id);
}

static int gen_project_contact(struct gen *g, uint64_t i)
{
    char id[37], pid[37], cid[37], num[32], etag[40];
    int64_t np = g->counts[T_PROJECT], nc = g->counts[T_CONTACT];
    if (!np || !nc)
        return 0;
    uint64_t h = seed_hash(g, T_PROJECT_CONTACT, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_PROJECT_CONTACT, i, id);
    seed_id(g, T_PROJECT, i % (uint64_t)np, pid);
    seed_id(g, T_CONTACT, (i * 7 + h % 5) % (uint64_t)nc, cid);
    lb_str(&g->lb, "new_project_contactid", id);
    lb_str(&g->lb, "new_projectid", pid);
    lb_str(&g->lb, "contactid", cid);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    return seed_insert(g, T_PROJECT_CONTACT, id);
}

static int gen_audit(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_AUDIT];
    char id[37], rid[37], q[40], etag[40], tx[37], app[37];
    int64_t c, m;
    uint64_t h = seed_hash(g, T_AUDIT, i, 7);
    int64_t ver = ++g->ver;
    seed_id(g, T_AUDIT, i, id);
    lb_str(&g->lb, "auditid", id);
    seed_time_pair(g, T_ACCOUNT, i, &c, &m);
    bool create = h % 3 != 0;
    seed_iso_quoted(create ? c : m, q);
    lb_col(&g->lb, t, "createdon", q);
    lb_col(&g->lb, t, "operation", create ? "1" : "2");
    lb_col(&g->lb, t, "action", create ? "1" : "2");
    lb_str(&g->lb, "objecttypecode", "account");
    int64_t na = g->counts[T_ACCOUNT];
    seed_id(g, T_ACCOUNT, na ? i % (uint64_t)na : 0, rid);
    lb_lookup(&g->lb, "objectid", "account", rid, NULL);
    dvschema_app_user_id(g->env, app);
    lb_lookup(&g->lb, "userid", "systemuser", app, "# dvsnap");
    lb_str(&g->lb, "attributemask", create ? NULL : ",3,8,");
    dvsim_guid(seed_hash(g, T_AUDIT, i, 8), seed_hash(g, T_AUDIT, i, 9), tx);
    lb_str(&g->lb, "transactionid", tx);
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    return seed_insert(g, T_AUDIT, id);
}

typedef int (*gen_fn)(struct gen *, uint64_t);

static int gen_email(struct gen *g, uint64_t i) { return seed_gen_activity(g, T_EMAIL, i); }
static int gen_task(struct gen *g, uint64_t i) { return seed_gen_activity(g, T_TASK, i); }
static int gen_phonecall(struct gen *g, uint64_t i) { return seed_gen_activity(g, T_PHONECALL, i); }
static int gen_appointment(struct gen *g, uint64_t i) { return seed_gen_activity(g, T_APPOINTMENT, i); }

static const gen_fn gen_fns[N_TABLES] = {
    [T_ACCOUNT] = gen_account, [T_CONTACT] = gen_contact, [T_OPPORTUNITY] = gen_opportunity,
    [T_INCIDENT] = gen_incident, [T_SYSTEMUSER] = seed_gen_systemuser, [T_ANNOTATION] = seed_gen_annotation,
    [T_PROJECT] = seed_gen_project, [T_PROJECT_CONTACT] = gen_project_contact, [T_AUDIT] = gen_audit,
    [T_BUSINESSUNIT] = seed_gen_businessunit, [T_TEAM] = seed_gen_team, [T_CURRENCY] = seed_gen_currency,
    [T_EMAIL] = gen_email, [T_TASK] = gen_task, [T_PHONECALL] = gen_phonecall,
    [T_APPOINTMENT] = gen_appointment, [T_ACTIVITYPOINTER] = seed_gen_pointer,
    [T_ACTIVITYPARTY] = seed_gen_party};

/* The sizes of environment g->env (see the note at the top), and with plan_activities the parties
 * of every activity (which a single new record of another table does not need). */
static int gen_setup(struct gen *g, bool plan_activities)
{
    int64_t a = g->env == 0 ? g->d->records : g->env == 5 ? 500 : 300;
    memset(g->counts, 0, sizeof g->counts);
    g->counts[T_ACCOUNT] = a;
    g->counts[T_CONTACT] = 2 * a;
    int64_t small = a < 1000 ? a : 1000;
    g->counts[T_OPPORTUNITY] = small / 2;
    g->counts[T_INCIDENT] = small / 2;
    /* the real shape's org has one note per two accounts (seed_files.c) */
    g->counts[T_ANNOTATION] = g->d->real_shape && g->env == 0 ? a / 2 : small / 15 + 8;
    g->counts[T_PROJECT] = small / 25 + 6;
    g->counts[T_PROJECT_CONTACT] = small / 12 + 4;
    g->counts[T_AUDIT] = small / 5;
    g->counts[T_BUSINESSUNIT] = N_BUSINESS_UNITS;
    g->counts[T_TEAM] = N_TEAMS;
    g->counts[T_CURRENCY] = N_CURRENCIES;
    int rc = seed_members(g);
    return rc || !plan_activities ? rc : seed_activity_plan(g);
}

static void gen_teardown(struct gen *g)
{
    free(g->members);
    free(g->party_off);
    g->members = NULL;
    g->party_off = NULL;
}

struct keyed {
    uint64_t hi, lo, index;
};

static int keyed_cmp(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    if (x->lo != y->lo)
        return x->lo < y->lo ? -1 : 1;
    return 0;
}

static int gen_base_row(struct gen *g, int table, uint64_t i)
{
    return gen_fns[table](g, i);
}

int seed_rows(struct gen *g, int table, size_t n, int (*row)(struct gen *g, int table, uint64_t i))
{
    /* insert in primary-key order: the clustered B-tree only ever grows at one end */
    struct keyed *ks = malloc((n ? n : 1) * sizeof *ks);
    if (!ks)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        char id[37];
        seed_id(g, table, i, id);
        ks[i].hi = strtoull((char[17]){id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[9], id[10],
                                       id[11], id[12], id[14], id[15], id[16], id[17], 0}, NULL, 16);
        ks[i].lo = strtoull((char[17]){id[19], id[20], id[21], id[22], id[24], id[25], id[26], id[27], id[28],
                                       id[29], id[30], id[31], id[32], id[33], id[34], id[35], 0}, NULL, 16);
        ks[i].index = i;
    }
    qsort(ks, n, sizeof *ks, keyed_cmp);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = row(g, table, ks[i].index);
    free(ks);
    return rc;
}

static int seed_env(struct gen *g)
{
    static const int order[N_TABLES] = {
        T_BUSINESSUNIT, T_TEAM, T_CURRENCY, T_SYSTEMUSER, T_ACCOUNT, T_CONTACT, T_OPPORTUNITY,
        T_INCIDENT, T_ANNOTATION, T_PROJECT, T_PROJECT_CONTACT, T_EMAIL, T_TASK, T_PHONECALL,
        T_APPOINTMENT, T_ACTIVITYPOINTER, T_ACTIVITYPARTY, T_AUDIT};
    g->ver = 1000000 + 1000 * (int64_t)g->env;
    for (int k = 0; k < N_TABLES; k++) {
        int rc = seed_rows(g, order[k], (size_t)g->counts[order[k]], gen_base_row);
        if (rc)
            return rc;
    }
    if (g->d->real_shape) {
        int rc = seed_real_env(g);
        if (rc)
            return rc;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(g->db, "INSERT OR REPLACE INTO orgver(env, ver) VALUES(?1, ?2)", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_int(st, 1, g->env);
        sqlite3_bind_int64(st, 2, g->ver);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_finalize(st);
    return dvstore_errno(rc);
}

static int prepare_inserts(struct gen *g, bool replace)
{
    int rc = dvstore_errno(sqlite3_prepare_v2(
        g->db, replace ? "INSERT OR REPLACE INTO rec(tid,id,ver,del,line) VALUES(?1,?2,?3,0,?4)"
                       : "INSERT INTO rec(tid,id,ver,del,line) VALUES(?1,?2,?3,0,?4)", -1, &g->ins, NULL));
    if (!rc)
        rc = dvstore_errno(sqlite3_prepare_v2(
            g->db, "INSERT OR REPLACE INTO files(tid,id,col,name,mimetype,data) VALUES(?1,?2,?3,?4,?5,?6)", -1,
            &g->ins_file, NULL));
    if (!rc)
        rc = dvstore_errno(sqlite3_prepare_v2(g->db, "INSERT OR IGNORE INTO party_index VALUES(?1,?2,?3)", -1,
                                              &g->ins_party, NULL));
    return rc;
}

static void gen_release(struct gen *g)
{
    sqlite3_finalize(g->ins);
    sqlite3_finalize(g->ins_file);
    sqlite3_finalize(g->ins_party);
    gen_teardown(g);
    buf_release(&g->lb.s);
    buf_release(&g->line);
    buf_release(&g->tmp);
}

void dvseed_marker(const struct dvsim *d, char *out, size_t n)
{
    if (d->real_shape)
        snprintf(out, n, "%s:%llu/%lld/real/%lld", DVSIM_TENANT_VERSION, (unsigned long long)d->seed,
                 (long long)d->records, (long long)d->elastic_rows);
    else
        snprintf(out, n, "%s:%llu/%lld", DVSIM_TENANT_VERSION, (unsigned long long)d->seed, (long long)d->records);
}

int dvseed_tenant(struct dvsim *d, struct dverr *err)
{
    struct gen g;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.db = dvstore_get(d->store);
    int64_t t0 = now_ms();
    int rc = g.db ? 0 : -EIO;
    if (!rc)
        rc = dvstore_errno(sqlite3_exec(g.db, "PRAGMA cache_size=-262144", NULL, NULL, NULL));
    /* a bulk load needs no journal; only possible while no other connection has the file open
     * (start-up), so a failure here just keeps WAL */
    if (!rc)
        sqlite3_exec(g.db, "PRAGMA journal_mode=OFF", NULL, NULL, NULL);
    if (!rc)
        rc = dvstore_begin(g.db);
    if (!rc)
        rc = dvstore_recreate(g.db);
    if (!rc)
        rc = prepare_inserts(&g, false);
    int64_t total = 0;
    for (int e = 0; e < N_ENVS && !rc; e++) {
        g.env = e;
        g.extra_rows = 0;
        rc = gen_setup(&g, true);
        if (!rc)
            rc = seed_env(&g);
        for (int k = 0; k < N_TABLES; k++)
            total += g.counts[k];
        total += g.extra_rows;
        gen_teardown(&g);
    }
    if (!rc) {
        char sql[256], marker[96];
        dvseed_marker(d, marker, sizeof marker);
        snprintf(sql, sizeof sql, "INSERT INTO meta(k,v) VALUES('seeded','%s')", marker);
        rc = dvstore_errno(sqlite3_exec(g.db, sql, NULL, NULL, NULL));
    }
    sqlite3_finalize(g.ins);
    sqlite3_finalize(g.ins_file);
    sqlite3_finalize(g.ins_party);
    g.ins = g.ins_file = g.ins_party = NULL;
    if (!rc)
        rc = dvstore_commit(g.db);
    else
        dvstore_rollback(g.db);
    if (g.db)
        sqlite3_exec(g.db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    if (rc)
        dverr_set(err, rc, "seeding failed: %s", g.db ? sqlite3_errmsg(g.db) : "no database");
    else
        log_info("dvsim: seeded %lld records in %.1f s (seed %llu, --records %lld)", (long long)total,
                 (double)(now_ms() - t0) / 1000.0, (unsigned long long)d->seed, (long long)d->records);
    dvstore_put(d->store, g.db);
    gen_release(&g);
    return rc;
}

void dvseed_principal_id(struct dvsim *d, int env, int table, int k, char out[37])
{
    struct gen g;
    memset(&g, 0, sizeof g);
    g.d = d;
    g.env = env;
    dvsim_guid(seed_hash(&g, table, (uint64_t)k, 1), seed_hash(&g, table, (uint64_t)k, 2), out);
}

int dvseed_create_record(struct dvsim *d, sqlite3 *db, int env, int table, uint64_t index, struct buf *line,
                         char id[37])
{
    struct gen *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->d = d;
    g->db = db;
    g->env = env;
    bool activity = table >= T_EMAIL && table <= T_ACTIVITYPARTY;
    int rc = gen_setup(g, activity);
    if (!rc)
        rc = prepare_inserts(g, true);
    /* generate into a scratch row, then take the line back out and remove the scratch row */
    g->ver = 0;
    if (!rc)
        rc = gen_fns[table](g, index);
    if (!rc) {
        struct lmember m[128];
        const struct table_def *t = &dvschema_tables[table];
        int n = dvline_scan(g->line.data, g->line.len, m, 128);
        if (n < 1 || m[0].key_len != strlen(t->pk) || m[0].val_len != 38)
            rc = -EIO;
        else {
            memcpy(id, m[0].val + 1, 36);
            id[36] = '\0';
            buf_reset(line);
            rc = buf_add(line, g->line.data, g->line.len);
        }
    }
    gen_release(g);
    free(g);
    return rc;
}
