/* seed: the deterministic sample tenant. Every value is a pure function of (seed, environment,
 * table, record index), so the same seed gives the same database byte for byte and records can
 * refer to each other (lookups and their formatted names) without lookups in the store. No
 * wall-clock time: timestamps count from a fixed base. Sizes: contoso-prod has `records` accounts
 * and twice as many contacts; the other orgs keep the demo size. One SQLite transaction with
 * prepared statements (about 3 million rows per minute on this machine for --records 1000000).
 * Also the shared formatting of values (dvsim_format_value) and Base64. Single-threaded (startup). */
#include "tools/dvsim/dvsim.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

#define BASE_TIME 1672531200LL /* 2023-01-01T00:00:00Z */
#define FV "@OData.Community.Display.V1.FormattedValue"
#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"

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
static const char *const codenames[] = {"Aurora", "Borealis", "Cygnus", "Draco", "Éclair", "Fénix",
                                        "Gemini", "Hydra", "Ίκαρος", "Juno", "Kestrel", "Lynx"};
static const char *const titles[] = {"Printer not working", "Invoice question", "Cannot log in",
                                     "Delivery delayed", "Refund request", "Größenänderung der Bestellung",
                                     "Damaged package", "Feature request: dark mode", "Password reset",
                                     "Billing address change"};
static const char *const jobs[] = {"Purchasing Manager", "CEO", "Ingénieure", "Buyer", "CTO",
                                   "Office Manager", NULL, "Sales Director", NULL, "Analyst"};

#define NA(a) (sizeof(a) / sizeof((a)[0]))

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

/* ---- a fast line builder for seeding ---- */
struct lbm {
    uint32_t koff, klen, voff, vlen;
};
struct lb {
    struct buf s;
    struct lbm m[128];
    int n;
};

static void lb_raw(struct lb *b, const char *key, const char *raw, size_t len)
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

static void lb_str(struct lb *b, const char *key, const char *s)
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

/* A column value plus its formatted annotation. */
static void lb_col(struct lb *b, const struct table_def *t, const char *member, const char *raw)
{
    const struct col_def *c = dvschema_col_by_member(t, member, strlen(member));
    lb_raw(b, member, raw, strlen(raw));
    char f[160];
    if (c && dvsim_format_value(c, raw, strlen(raw), f, sizeof f))
        lb_annot(b, member, FV, f);
}

static void lb_lookup(struct lb *b, const char *attr, const char *target, const char *id,
                      const char *name)
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
struct gen {
    struct dvsim *d;
    sqlite3 *db;
    sqlite3_stmt *ins, *ins_file;
    int env;
    int64_t ver;
    int64_t counts[N_TABLES];
    struct lb lb;
    struct buf line, tmp;
};

static uint64_t hv(const struct gen *g, int table, uint64_t i, uint64_t salt)
{
    uint64_t s = g->d->seed * 0x9e3779b97f4a7c15ull ^ ((uint64_t)g->env << 56) ^ ((uint64_t)table << 48) ^
                 (salt << 40) ^ i;
    dvsim_splitmix64(&s);
    return dvsim_splitmix64(&s);
}

static void id_of(const struct gen *g, int table, uint64_t i, char out[37])
{
    if (table == T_SYSTEMUSER && i == 0) {
        snprintf(out, 37, "%s", DVSIM_APP_USER_ID);
        return;
    }
    dvsim_guid(hv(g, table, i, 1), hv(g, table, i, 2), out);
}

static void account_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    uint64_t h = hv(g, T_ACCOUNT, i, 3);
    snprintf(out, n, "%s %s %llu", companies[h % NA(companies)], suffixes[(h >> 16) % NA(suffixes)],
             (unsigned long long)i + 1);
}

static void person_name(const struct gen *g, int table, uint64_t i, const char **first, const char **last)
{
    uint64_t h = hv(g, table, i, 4);
    *first = first_names[h % NA(first_names)];
    *last = last_names[(h >> 20) % NA(last_names)];
}

static void person_full(const struct gen *g, int table, uint64_t i, char *out, size_t n)
{
    const char *f, *l;
    if (table == T_SYSTEMUSER && i == 0) {
        snprintf(out, n, "# dvsnap");
        return;
    }
    person_name(g, table, i, &f, &l);
    snprintf(out, n, "%s %s", f, l);
}

static void project_name(const struct gen *g, uint64_t i, char *out, size_t n)
{
    uint64_t h = hv(g, T_PROJECT, i, 3);
    snprintf(out, n, "Project %s %llu", codenames[h % NA(codenames)], (unsigned long long)i + 1);
}

static void time_pair(const struct gen *g, int table, uint64_t i, char created[32], char modified[32])
{
    uint64_t h = hv(g, table, i, 5);
    int64_t c = BASE_TIME + (int64_t)(h % (365ull * 86400));
    int64_t m = c + (int64_t)((h >> 32) % (120ull * 86400));
    dvsim_iso_time(c, created);
    dvsim_iso_time(m, modified);
}

static void common(struct gen *g, const struct table_def *t, uint64_t i, int64_t ver)
{
    char c[32], m[32], num[32];
    time_pair(g, dvschema_table_index(t), i, c, m);
    char q[40];
    snprintf(q, sizeof q, "\"%s\"", c);
    lb_col(&g->lb, t, "createdon", q);
    snprintf(q, sizeof q, "\"%s\"", m);
    lb_col(&g->lb, t, "modifiedon", q);
    lb_raw(&g->lb, "overriddencreatedon", "null", 4);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    char etag[40];
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
}

static void owner(struct gen *g, int table, uint64_t i)
{
    int64_t nu = g->counts[T_SYSTEMUSER];
    uint64_t u = nu > 1 ? 1 + hv(g, table, i, 6) % (uint64_t)(nu - 1) : 0;
    char id[37], name[128];
    id_of(g, T_SYSTEMUSER, u, id);
    person_full(g, T_SYSTEMUSER, u, name, sizeof name);
    lb_lookup(&g->lb, "ownerid", "systemuser", id, name);
}

static int insert(struct gen *g, int table, const char *id)
{
    const struct table_def *t = &dvschema_tables[table];
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

static int gen_account(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_ACCOUNT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = hv(g, T_ACCOUNT, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_ACCOUNT, i, id);
    account_name(g, i, name, sizeof name);
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
    money(h >> 3, 2000000000ull, v, sizeof v);
    lb_col(&g->lb, t, "revenue", v);
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
        id_of(g, T_CONTACT, ci, rid);
        person_full(g, T_CONTACT, ci, name, sizeof name);
        lb_lookup(&g->lb, "primarycontactid", "contact", rid, name);
    } else {
        lb_lookup(&g->lb, "primarycontactid", "contact", NULL, NULL);
    }
    if (i > 0 && (h >> 34) % 10 == 0) {
        uint64_t p = (h >> 36) % i;
        id_of(g, T_ACCOUNT, p, rid);
        account_name(g, p, name, sizeof name);
        lb_lookup(&g->lb, "parentaccountid", "account", rid, name);
    } else {
        lb_lookup(&g->lb, "parentaccountid", "account", NULL, NULL);
    }
    owner(g, T_ACCOUNT, i);
    bool inactive = (h >> 40) % 20 == 0;
    lb_col(&g->lb, t, "statecode", inactive ? "1" : "0");
    lb_col(&g->lb, t, "statuscode", inactive ? "2" : "1");
    common(g, t, i, ver);
    return insert(g, T_ACCOUNT, id);
}

static int gen_contact(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_CONTACT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = hv(g, T_CONTACT, i, 7);
    int64_t ver = ++g->ver;
    const char *f, *l;
    id_of(g, T_CONTACT, i, id);
    person_name(g, T_CONTACT, i, &f, &l);
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
        id_of(g, T_ACCOUNT, a, rid);
        account_name(g, a, name, sizeof name);
        lb_lookup(&g->lb, "parentcustomerid", "account", rid, name);
    } else {
        lb_lookup(&g->lb, "parentcustomerid", "account", NULL, NULL);
    }
    owner(g, T_CONTACT, i);
    lb_col(&g->lb, t, "statecode", (h >> 40) % 25 == 0 ? "1" : "0");
    common(g, t, i, ver);
    return insert(g, T_CONTACT, id);
}

static int gen_opportunity(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_OPPORTUNITY];
    char id[37], name[200], an[160], v[128], rid[37];
    uint64_t h = hv(g, T_OPPORTUNITY, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_OPPORTUNITY, i, id);
    lb_str(&g->lb, "opportunityid", id);
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? h % (uint64_t)na : 0;
    account_name(g, a, an, sizeof an);
    snprintf(name, sizeof name, "%llu licences for %s", (unsigned long long)(5 + (h >> 8) % 500), an);
    lb_str(&g->lb, "name", name);
    money(h >> 3, 5000000ull, v, sizeof v);
    lb_col(&g->lb, t, "estimatedvalue", v);
    snprintf(v, sizeof v, "%llu", (unsigned long long)((h >> 16) % 101));
    lb_col(&g->lb, t, "closeprobability", v);
    snprintf(v, sizeof v, "\"2024-%02llu-%02llu\"", (unsigned long long)(1 + (h >> 20) % 12),
             (unsigned long long)(1 + (h >> 24) % 28));
    lb_col(&g->lb, t, "estimatedclosedate", v);
    lb_col(&g->lb, t, "opportunityratingcode", (h >> 28) % 3 == 0 ? "1" : (h >> 28) % 3 == 1 ? "2" : "3");
    id_of(g, T_ACCOUNT, a, rid);
    lb_lookup(&g->lb, "customerid", "account", na ? rid : NULL, an);
    int64_t nc = g->counts[T_CONTACT];
    if (nc && (h >> 32) % 2) {
        uint64_t c = (h >> 33) % (uint64_t)nc;
        id_of(g, T_CONTACT, c, rid);
        person_full(g, T_CONTACT, c, name, sizeof name);
        lb_lookup(&g->lb, "parentcontactid", "contact", rid, name);
    } else {
        lb_lookup(&g->lb, "parentcontactid", "contact", NULL, NULL);
    }
    owner(g, T_OPPORTUNITY, i);
    lb_col(&g->lb, t, "statecode", "0");
    common(g, t, i, ver);
    return insert(g, T_OPPORTUNITY, id);
}

static int gen_incident(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_INCIDENT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = hv(g, T_INCIDENT, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_INCIDENT, i, id);
    lb_str(&g->lb, "incidentid", id);
    lb_str(&g->lb, "title", titles[h % NA(titles)]);
    snprintf(v, sizeof v, "CAS-%05llu-%c%c%c", (unsigned long long)i + 1, 'A' + (int)(h >> 8) % 26,
             'A' + (int)(h >> 13) % 26, '0' + (int)(h >> 18) % 10);
    lb_str(&g->lb, "ticketnumber", v);
    snprintf(v, sizeof v, "Customer wrote:\r\n\t\"%s\" — please help. Ünïcödé ✓", titles[(h >> 3) % NA(titles)]);
    lb_str(&g->lb, "description", (h >> 22) % 5 == 0 ? NULL : v);
    lb_col(&g->lb, t, "prioritycode", (h >> 24) % 3 == 0 ? "1" : (h >> 24) % 3 == 1 ? "2" : "3");
    lb_col(&g->lb, t, "casetypecode", (h >> 26) % 3 == 0 ? "1" : (h >> 26) % 3 == 1 ? "2" : "3");
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? (h >> 28) % (uint64_t)na : 0;
    id_of(g, T_ACCOUNT, a, rid);
    account_name(g, a, name, sizeof name);
    lb_lookup(&g->lb, "customerid", "account", na ? rid : NULL, name);
    owner(g, T_INCIDENT, i);
    lb_col(&g->lb, t, "statecode", (h >> 40) % 3 == 0 ? "1" : "0");
    common(g, t, i, ver);
    return insert(g, T_INCIDENT, id);
}

static int gen_systemuser(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_SYSTEMUSER];
    char id[37], name[160], v[160];
    int64_t ver = ++g->ver;
    const char *f, *l;
    id_of(g, T_SYSTEMUSER, i, id);
    lb_str(&g->lb, "systemuserid", id);
    if (i == 0) {
        f = "#";
        l = "dvsnap";
    } else {
        person_name(g, T_SYSTEMUSER, i, &f, &l);
    }
    lb_str(&g->lb, "firstname", f);
    lb_str(&g->lb, "lastname", l);
    person_full(g, T_SYSTEMUSER, i, name, sizeof name);
    lb_str(&g->lb, "fullname", name);
    snprintf(v, sizeof v, "user%llu@%s.onmicrosoft.com", (unsigned long long)i, DVSIM_TENANT);
    lb_str(&g->lb, "domainname", v);
    lb_str(&g->lb, "internalemailaddress", v);
    lb_col(&g->lb, t, "isdisabled", i % 11 == 10 ? "true" : "false");
    common(g, t, i, ver);
    return insert(g, T_SYSTEMUSER, id);
}

struct attach_kind {
    const char *name, *mime;
};
static const struct attach_kind attach_kinds[] = {
    {"Quarterly report Q3.pdf", "application/pdf"},
    {"Zoë's notes.txt", "text/plain"},
    {"contract v1/v2.pdf", "application/pdf"},
    {"会议记录.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"photo (1).png", "image/png"},
    {"archive 2023.zip", "application/zip"},
    {"café menu.txt", "text/plain"},
};
static const size_t attach_sizes[] = {17, 1024, 4000, 65536, 300000, 2500, 123};

static void fake_bytes(uint64_t h, const char *mime, size_t n, struct buf *out)
{
    buf_reset(out);
    buf_reserve(out, n);
    const char *magic = "";
    if (strcmp(mime, "application/pdf") == 0)
        magic = "%PDF-1.4\n";
    else if (strcmp(mime, "image/png") == 0)
        magic = "\x89PNG\r\n\x1a\n";
    else if (strstr(mime, "zip") || strstr(mime, "openxml"))
        magic = "PK\x03\x04";
    buf_add(out, magic, strlen(magic) < n ? strlen(magic) : n);
    bool text = strcmp(mime, "text/plain") == 0;
    static const char words[] = "Lorem ipsum dolor sit amet, größer café naïve résumé. ";
    uint64_t s = h;
    while (out->len < n) {
        if (text) {
            size_t k = n - out->len < sizeof words - 1 ? n - out->len : sizeof words - 1;
            buf_add(out, words, k);
        } else {
            uint64_t r = dvsim_splitmix64(&s);
            size_t k = n - out->len < 8 ? n - out->len : 8;
            buf_add(out, &r, k);
        }
    }
}

static int gen_annotation(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_ANNOTATION];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = hv(g, T_ANNOTATION, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_ANNOTATION, i, id);
    lb_str(&g->lb, "annotationid", id);
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? h % (uint64_t)na : 0;
    account_name(g, a, name, sizeof name);
    id_of(g, T_ACCOUNT, a, rid);
    lb_lookup(&g->lb, "objectid", "account", na ? rid : NULL, name);
    lb_str(&g->lb, "objecttypecode", "account");
    owner(g, T_ANNOTATION, i);
    if (i % 4 == 3) { /* a plain note */
        snprintf(v, sizeof v, "Call notes %llu", (unsigned long long)i + 1);
        lb_str(&g->lb, "subject", v);
        lb_str(&g->lb, "notetext", "Spoke with the customer; follow up next week.\nTODO: send \"pricing\" ✉");
        lb_str(&g->lb, "filename", NULL);
        lb_str(&g->lb, "mimetype", NULL);
        lb_str(&g->lb, "documentbody", NULL);
        lb_col(&g->lb, t, "filesize", "0");
        lb_col(&g->lb, t, "isdocument", "false");
    } else {
        const struct attach_kind *k = &attach_kinds[i % NA(attach_kinds)];
        size_t size = attach_sizes[(i / NA(attach_kinds)) % NA(attach_sizes)] + (size_t)(h % 97);
        fake_bytes(h, k->mime, size, &g->tmp);
        struct buf b64 = BUF_INIT;
        dvsim_base64((const unsigned char *)g->tmp.data, g->tmp.len, &b64);
        snprintf(v, sizeof v, "Attachment: %s", k->name);
        lb_str(&g->lb, "subject", v);
        lb_str(&g->lb, "notetext", NULL);
        lb_str(&g->lb, "filename", k->name);
        lb_str(&g->lb, "mimetype", k->mime);
        lb_str(&g->lb, "documentbody", b64.data ? b64.data : "");
        buf_release(&b64);
        snprintf(v, sizeof v, "%zu", size);
        lb_col(&g->lb, t, "filesize", v);
        lb_col(&g->lb, t, "isdocument", "true");
    }
    common(g, t, i, ver);
    return insert(g, T_ANNOTATION, id);
}

static int gen_project(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_PROJECT];
    char id[37], name[160], v[256], rid[37];
    uint64_t h = hv(g, T_PROJECT, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_PROJECT, i, id);
    lb_str(&g->lb, "new_projectid", id);
    project_name(g, i, name, sizeof name);
    lb_str(&g->lb, "new_name", name);
    if (i == 0)
        snprintf(v, sizeof v, "12345678901234.1234567890");
    else
        snprintf(v, sizeof v, "%llu.%010llu", (unsigned long long)(h % 100000000000000ull),
                 (unsigned long long)((h >> 7) % 10000000000ull));
    lb_col(&g->lb, t, "new_budget", v);
    snprintf(v, sizeof v, "%llu", 9007199254740993ull + 2 * (unsigned long long)i);
    lb_col(&g->lb, t, "new_bignumber", v);
    static const char *const stages[] = {"100000000", "100000001", "100000002", "100000003"};
    lb_col(&g->lb, t, "new_stage", stages[(h >> 9) % 4]);
    char c[32], m[32], q[40];
    time_pair(g, T_PROJECT, i + 1000, c, m);
    snprintf(q, sizeof q, "\"%s\"", c);
    lb_col(&g->lb, t, "new_startdate", (h >> 11) % 5 == 0 ? "null" : q);
    int64_t na = g->counts[T_ACCOUNT];
    uint64_t a = na ? (h >> 13) % (uint64_t)na : 0;
    id_of(g, T_ACCOUNT, a, rid);
    account_name(g, a, name, sizeof name);
    lb_lookup(&g->lb, "new_accountid", "account", na ? rid : NULL, name);
    owner(g, T_PROJECT, i);
    lb_col(&g->lb, t, "statecode", "0");
    if (i % 3 == 2) {
        lb_str(&g->lb, "new_document", NULL);
        lb_str(&g->lb, "new_document_name", NULL);
    } else {
        static const struct attach_kind files[] = {
            {"Project plan.pdf", "application/pdf"}, {"budget 2024 (final).zip", "application/zip"},
            {"Übersicht/Plan.txt", "text/plain"}, {"diagram.png", "image/png"}};
        const struct attach_kind *k = &files[i % 4];
        size_t size = 1000 + (size_t)(h % 50000);
        if (i == 0 && g->env == 0)
            size = 5u * 1024 * 1024 + 12345; /* more than one 4 MiB chunk */
        char fid[37];
        dvsim_guid(hv(g, T_PROJECT, i, 8), hv(g, T_PROJECT, i, 9), fid);
        lb_str(&g->lb, "new_document", fid);
        lb_str(&g->lb, "new_document_name", k->name);
        fake_bytes(h, k->mime, size, &g->tmp);
        sqlite3_reset(g->ins_file);
        sqlite3_bind_int(g->ins_file, 1, table_id(g->env, T_PROJECT));
        sqlite3_bind_text(g->ins_file, 2, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(g->ins_file, 3, "new_document", -1, SQLITE_STATIC);
        sqlite3_bind_text(g->ins_file, 4, k->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(g->ins_file, 5, k->mime, -1, SQLITE_STATIC);
        sqlite3_bind_blob(g->ins_file, 6, g->tmp.data, (int)g->tmp.len, SQLITE_STATIC);
        if (sqlite3_step(g->ins_file) != SQLITE_DONE)
            return -EIO;
    }
    common(g, t, i, ver);
    return insert(g, T_PROJECT, id);
}

static int gen_project_contact(struct gen *g, uint64_t i)
{
    char id[37], pid[37], cid[37], num[32], etag[40];
    int64_t np = g->counts[T_PROJECT], nc = g->counts[T_CONTACT];
    if (!np || !nc)
        return 0;
    uint64_t h = hv(g, T_PROJECT_CONTACT, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_PROJECT_CONTACT, i, id);
    id_of(g, T_PROJECT, i % (uint64_t)np, pid);
    id_of(g, T_CONTACT, (i * 7 + h % 5) % (uint64_t)nc, cid);
    lb_str(&g->lb, "new_project_contactid", id);
    lb_str(&g->lb, "new_projectid", pid);
    lb_str(&g->lb, "contactid", cid);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    lb_raw(&g->lb, "versionnumber", num, strlen(num));
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    return insert(g, T_PROJECT_CONTACT, id);
}

static int gen_audit(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_AUDIT];
    char id[37], rid[37], c[32], m[32], q[40], num[32], etag[40], tx[37];
    uint64_t h = hv(g, T_AUDIT, i, 7);
    int64_t ver = ++g->ver;
    id_of(g, T_AUDIT, i, id);
    lb_str(&g->lb, "auditid", id);
    time_pair(g, T_ACCOUNT, i, c, m);
    bool create = h % 3 != 0;
    snprintf(q, sizeof q, "\"%s\"", create ? c : m);
    lb_col(&g->lb, t, "createdon", q);
    lb_col(&g->lb, t, "operation", create ? "1" : "2");
    lb_col(&g->lb, t, "action", create ? "1" : "2");
    lb_str(&g->lb, "objecttypecode", "account");
    int64_t na = g->counts[T_ACCOUNT];
    id_of(g, T_ACCOUNT, na ? i % (uint64_t)na : 0, rid);
    lb_lookup(&g->lb, "objectid", "account", rid, NULL);
    lb_lookup(&g->lb, "userid", "systemuser", DVSIM_APP_USER_ID, "# dvsnap");
    lb_str(&g->lb, "attributemask", create ? NULL : ",3,8,");
    dvsim_guid(hv(g, T_AUDIT, i, 8), hv(g, T_AUDIT, i, 9), tx);
    lb_str(&g->lb, "transactionid", tx);
    snprintf(num, sizeof num, "%lld", (long long)ver);
    (void)num;
    snprintf(etag, sizeof etag, "W/\"%lld\"", (long long)ver);
    lb_str(&g->lb, "@odata.etag", etag);
    return insert(g, T_AUDIT, id);
}

typedef int (*gen_fn)(struct gen *, uint64_t);

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

static int seed_env(struct gen *g)
{
    static const gen_fn fns[N_TABLES] = {gen_account, gen_contact, gen_opportunity, gen_incident,
                                         gen_systemuser, gen_annotation, gen_project,
                                         gen_project_contact, gen_audit};
    static const int order[N_TABLES] = {T_SYSTEMUSER, T_ACCOUNT, T_CONTACT, T_OPPORTUNITY, T_INCIDENT,
                                        T_ANNOTATION, T_PROJECT, T_PROJECT_CONTACT, T_AUDIT};
    int64_t a = g->env == 0 ? g->d->records : g->env == 5 ? 500 : 300;
    g->counts[T_ACCOUNT] = a;
    g->counts[T_CONTACT] = 2 * a;
    int64_t small = a < 1000 ? a : 1000;
    g->counts[T_OPPORTUNITY] = small / 2;
    g->counts[T_INCIDENT] = small / 2;
    g->counts[T_SYSTEMUSER] = 25;
    g->counts[T_ANNOTATION] = small / 15 + 8;
    g->counts[T_PROJECT] = small / 25 + 6;
    g->counts[T_PROJECT_CONTACT] = small / 12 + 4;
    g->counts[T_AUDIT] = small / 5;
    g->ver = 1000000 + 1000 * (int64_t)g->env;
    for (int k = 0; k < N_TABLES; k++) {
        int tb = order[k];
        /* insert in primary-key order: the clustered B-tree only ever grows at one end */
        size_t n = (size_t)g->counts[tb];
        struct keyed *ks = malloc((n ? n : 1) * sizeof *ks);
        if (!ks)
            return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
            char id[37];
            id_of(g, tb, i, id);
            ks[i].hi = strtoull((char[17]){id[0], id[1], id[2], id[3], id[4], id[5], id[6], id[7], id[9], id[10],
                                           id[11], id[12], id[14], id[15], id[16], id[17], 0}, NULL, 16);
            ks[i].lo = strtoull((char[17]){id[19], id[20], id[21], id[22], id[24], id[25], id[26], id[27], id[28],
                                           id[29], id[30], id[31], id[32], id[33], id[34], id[35], 0}, NULL, 16);
            ks[i].index = i;
        }
        qsort(ks, n, sizeof *ks, keyed_cmp);
        for (size_t i = 0; i < n; i++) {
            int rc = fns[tb](g, ks[i].index);
            if (rc) {
                free(ks);
                return rc;
            }
        }
        free(ks);
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
        rc = dvstore_errno(sqlite3_prepare_v2(
            g.db, "INSERT INTO rec(tid,id,ver,del,line) VALUES(?1,?2,?3,0,?4)", -1, &g.ins, NULL));
    if (!rc)
        rc = dvstore_errno(sqlite3_prepare_v2(
            g.db, "INSERT INTO files(tid,id,col,name,mimetype,data) VALUES(?1,?2,?3,?4,?5,?6)", -1,
            &g.ins_file, NULL));
    int64_t total = 0;
    for (int e = 0; e < N_ENVS && !rc; e++) {
        g.env = e;
        rc = seed_env(&g);
        for (int k = 0; k < N_TABLES; k++)
            total += g.counts[k];
    }
    if (!rc) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "INSERT INTO meta(k,v) VALUES('seeded','%llu/%lld')", (unsigned long long)d->seed,
                 (long long)d->records);
        rc = dvstore_errno(sqlite3_exec(g.db, sql, NULL, NULL, NULL));
    }
    sqlite3_finalize(g.ins);
    sqlite3_finalize(g.ins_file);
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
    buf_release(&g.lb.s);
    buf_release(&g.line);
    buf_release(&g.tmp);
    return rc;
}

/* One new record of `table` in the style of the seed (used by churn). Lookups point at seeded
 * records. The line is not stored; file columns get their bytes stored. */
int dvseed_create_record(struct dvsim *d, sqlite3 *db, int env, int table, uint64_t index, struct buf *line,
                       char id[37]);
int dvseed_create_record(struct dvsim *d, sqlite3 *db, int env, int table, uint64_t index, struct buf *line,
                       char id[37])
{
    static const gen_fn fns[N_TABLES] = {gen_account, gen_contact, gen_opportunity, gen_incident,
                                         gen_systemuser, gen_annotation, gen_project,
                                         gen_project_contact, gen_audit};
    struct gen *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    g->d = d;
    g->db = db;
    g->env = env;
    int64_t a = env == 0 ? d->records : env == 5 ? 500 : 300;
    int64_t small = a < 1000 ? a : 1000;
    g->counts[T_ACCOUNT] = a;
    g->counts[T_CONTACT] = 2 * a;
    g->counts[T_SYSTEMUSER] = 25;
    g->counts[T_PROJECT] = small / 25 + 6;
    int rc = dvstore_errno(sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO rec(tid,id,ver,del,line) VALUES(?1,?2,?3,0,?4)",
                                                -1, &g->ins, NULL));
    if (!rc)
        rc = dvstore_errno(sqlite3_prepare_v2(
            db, "INSERT OR REPLACE INTO files(tid,id,col,name,mimetype,data) VALUES(?1,?2,?3,?4,?5,?6)", -1,
            &g->ins_file, NULL));
    /* generate into a scratch row, then take the line back out and remove the scratch row */
    g->ver = 0;
    if (!rc)
        rc = fns[table](g, index);
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
    sqlite3_finalize(g->ins);
    sqlite3_finalize(g->ins_file);
    buf_release(&g->lb.s);
    buf_release(&g->line);
    buf_release(&g->tmp);
    free(g);
    return rc;
}
