/* seed_principals: the people and principals of each environment of the sample tenant
 * (seed_int.h; the model is described in seed.c's note): the people of an environment (leavers,
 * the person with another Entra object id, contoso-dev's own people), systemuser rows (ids of the
 * environment, Entra object id and domainname of the person), business units, teams and
 * currencies, and the owner and currency columns of the records that refer to them.
 * Single-threaded (see seed_int.h). */
#include "tools/dvsim/seed_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- people and principals ---- */
#define LEAVER_A 3   /* in contoso-prod, gone from contoso-dev and contoso-test */
#define LEAVER_B 7
#define REKEYED 5    /* in contoso-dev with another Entra object id, the same domainname */

static const char *const bu_names[N_BUSINESS_UNITS] = {NULL /* the org's display name */, "Sales", "Service"};
static const struct {
    const char *name;  /* NULL: its business unit's name (a default team) */
    int bu, type;
} teams[N_TEAMS] = {{NULL, 0, 0}, {NULL, 1, 0}, {NULL, 2, 0}, {"Sales Team", 1, 0},
                    {"Support Team", 2, 0}, {"Escalations", 2, 1}};
static const struct {
    const char *iso, *name, *symbol, *rate;
} currencies[N_CURRENCIES] = {{"USD", "US Dollar", "$", "1.0"}, {"EUR", "Euro", "\xe2\x82\xac", "0.92"},
                              {"GBP", "Pound Sterling", "\xc2\xa3", "0.79"}};

static void bu_name(const struct gen *g, int k, char *out, size_t n)
{
    snprintf(out, n, "%s", k == 0 ? dvschema_envs[g->env].display_name : bu_names[k]);
}

static void team_name(const struct gen *g, int k, char *out, size_t n)
{
    if (teams[k].name)
        snprintf(out, n, "%s", teams[k].name);
    else
        bu_name(g, teams[k].bu, out, n);
}

static int person_bu(int p)
{
    return p == 0 ? 0 : p % N_BUSINESS_UNITS;
}

/* The people of this environment (g->members, counts[T_SYSTEMUSER]). */
int seed_members(struct gen *g)
{
    int64_t persons = g->d->records / 400;
    g->persons = persons < 25 ? 25 : persons > 2500 ? 2500 : persons;
    g->members = calloc((size_t)g->persons + 2, sizeof *g->members);
    if (!g->members)
        return -ENOMEM;
    int n = 0;
    bool sandbox_copy = g->env == 1 || g->env == 2;
    for (int p = 0; p < g->persons; p++)
        if (!(sandbox_copy && (p == LEAVER_A || p == LEAVER_B)))
            g->members[n++] = p;
    if (g->env == 1) {
        g->members[n++] = (int)g->persons;
        g->members[n++] = (int)g->persons + 1;
    }
    g->counts[T_SYSTEMUSER] = n;
    return 0;
}

static void person_full(const struct gen *g, int p, char *out, size_t n)
{
    const char *f, *l;
    if (p == 0) {
        snprintf(out, n, "# dvsnap");
        return;
    }
    seed_person_name(seed_person_hash(g, p, 4), &f, &l);
    snprintf(out, n, "%s %s", f, l);
}

void seed_user(const struct gen *g, uint64_t u, char id[37], char *name, size_t n, char *mail, size_t mail_n)
{
    int p = g->members[u];
    seed_id(g, T_SYSTEMUSER, u, id);
    if (name)
        person_full(g, p, name, n);
    if (mail)
        snprintf(mail, mail_n, "user%d@%s.onmicrosoft.com", p, DVSIM_TENANT);
}

void seed_owner(struct gen *g, int table, uint64_t i, bool owning)
{
    uint64_t h = seed_hash(g, table, i, 6);
    int64_t nu = g->counts[T_SYSTEMUSER];
    char id[37], name[160], bu[37], bun[160];
    int k;
    if (h % 10 < 7 && nu > 1) {
        uint64_t u = 1 + (h >> 8) % (uint64_t)(nu - 1);
        seed_user(g, u, id, name, sizeof name, NULL, 0);
        lb_lookup(&g->lb, "ownerid", "systemuser", id, name);
        if (!owning)
            return;
        lb_lookup(&g->lb, "owninguser", "systemuser", id, name);
        lb_lookup(&g->lb, "owningteam", "team", NULL, NULL);
        k = person_bu(g->members[u]);
    } else {
        int tm = (int)((h >> 8) % N_OWNER_TEAMS);
        seed_id(g, T_TEAM, (uint64_t)tm, id);
        team_name(g, tm, name, sizeof name);
        lb_lookup(&g->lb, "ownerid", "team", id, name);
        if (!owning)
            return;
        lb_lookup(&g->lb, "owninguser", "systemuser", NULL, NULL);
        lb_lookup(&g->lb, "owningteam", "team", id, name);
        k = teams[tm].bu;
    }
    seed_id(g, T_BUSINESSUNIT, (uint64_t)k, bu);
    bu_name(g, k, bun, sizeof bun);
    lb_lookup(&g->lb, "owningbusinessunit", "businessunit", bu, bun);
}

/* transactioncurrencyid (mostly the base currency), exchangerate and <money>_base. */
void seed_currency(struct gen *g, const struct table_def *t, int table, uint64_t i, const char *money_member,
                     const char *money_raw)
{
    uint64_t h = seed_hash(g, table, i, 9) % 100;
    int k = h < 80 ? 0 : h < 92 ? 1 : 2;
    char id[37], member[96], base[64];
    seed_id(g, T_CURRENCY, (uint64_t)k, id);
    lb_lookup(&g->lb, "transactioncurrencyid", "transactioncurrency", id, currencies[k].name);
    lb_col(&g->lb, t, "exchangerate", currencies[k].rate);
    snprintf(member, sizeof member, "%s_base", money_member);
    if (dvsim_money_base(money_raw, currencies[k].rate, base, sizeof base))
        lb_raw(&g->lb, member, "null", 4);
    else
        lb_col(&g->lb, t, member, base);
}

int seed_gen_businessunit(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_BUSINESSUNIT];
    char id[37], name[160], pid[37];
    int64_t ver = ++g->ver;
    seed_id(g, T_BUSINESSUNIT, i, id);
    lb_str(&g->lb, "businessunitid", id);
    bu_name(g, (int)i, name, sizeof name);
    lb_str(&g->lb, "name", name);
    if (i == 0) {
        lb_lookup(&g->lb, "parentbusinessunitid", "businessunit", NULL, NULL);
    } else {
        char root[160];
        seed_id(g, T_BUSINESSUNIT, 0, pid);
        bu_name(g, 0, root, sizeof root);
        lb_lookup(&g->lb, "parentbusinessunitid", "businessunit", pid, root);
    }
    seed_common(g, t, i, ver);
    return seed_insert(g, T_BUSINESSUNIT, id);
}

int seed_gen_team(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_TEAM];
    char id[37], name[160], bu[37], v[8];
    int64_t ver = ++g->ver;
    seed_id(g, T_TEAM, i, id);
    lb_str(&g->lb, "teamid", id);
    team_name(g, (int)i, name, sizeof name);
    lb_str(&g->lb, "name", name);
    seed_id(g, T_BUSINESSUNIT, (uint64_t)teams[i].bu, bu);
    bu_name(g, teams[i].bu, name, sizeof name);
    lb_lookup(&g->lb, "businessunitid", "businessunit", bu, name);
    snprintf(v, sizeof v, "%d", teams[i].type);
    lb_col(&g->lb, t, "teamtype", v);
    lb_col(&g->lb, t, "isdefault", teams[i].name ? "false" : "true");
    seed_common(g, t, i, ver);
    return seed_insert(g, T_TEAM, id);
}

int seed_gen_currency(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_CURRENCY];
    char id[37];
    int64_t ver = ++g->ver;
    seed_id(g, T_CURRENCY, i, id);
    lb_str(&g->lb, "transactioncurrencyid", id);
    lb_str(&g->lb, "isocurrencycode", currencies[i].iso);
    lb_str(&g->lb, "currencyname", currencies[i].name);
    lb_str(&g->lb, "currencysymbol", currencies[i].symbol);
    lb_col(&g->lb, t, "exchangerate", currencies[i].rate);
    lb_col(&g->lb, t, "currencyprecision", "2");
    seed_common(g, t, i, ver);
    return seed_insert(g, T_CURRENCY, id);
}

int seed_gen_systemuser(struct gen *g, uint64_t i)
{
    const struct table_def *t = &dvschema_tables[T_SYSTEMUSER];
    char id[37], name[160], mail[160], aad[37], bu[37], bun[160];
    int64_t ver = ++g->ver;
    int p = g->members[i];
    const char *f, *l;
    seed_user(g, i, id, name, sizeof name, mail, sizeof mail);
    lb_str(&g->lb, "systemuserid", id);
    if (p == 0) {
        f = "#";
        l = "dvsnap";
    } else {
        seed_person_name(seed_person_hash(g, p, 4), &f, &l);
    }
    lb_str(&g->lb, "firstname", f);
    lb_str(&g->lb, "lastname", l);
    lb_str(&g->lb, "fullname", name);
    lb_str(&g->lb, "domainname", mail);
    lb_str(&g->lb, "internalemailaddress", mail);
    lb_col(&g->lb, t, "isdisabled", p % 11 == 10 ? "true" : "false");
    if (g->env == 1 && p == REKEYED)
        dvsim_guid(seed_hash(g, T_SYSTEMUSER, (uint64_t)p, 31), seed_hash(g, T_SYSTEMUSER, (uint64_t)p, 32), aad);
    else
        dvsim_guid(seed_person_hash(g, p, 21), seed_person_hash(g, p, 22), aad);
    lb_str(&g->lb, "azureactivedirectoryobjectid", aad);
    seed_id(g, T_BUSINESSUNIT, (uint64_t)person_bu(p), bu);
    bu_name(g, person_bu(p), bun, sizeof bun);
    lb_lookup(&g->lb, "businessunitid", "businessunit", bu, bun);
    seed_common(g, t, (uint64_t)p, ver);
    return seed_insert(g, T_SYSTEMUSER, id);
}

