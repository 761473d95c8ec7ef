/* restore_map: the point's principals and reference data matched to the target's
 * (restore_int.h; the steps: restore.c).
 *
 * Users, teams, business units and currencies have different ids in every environment, and a
 * restore never writes them: every lookup to one of them goes through this map. Each source row
 * (the point's tables systemuser, team, businessunit, transactioncurrency) is decided once, in
 * this order:
 *   1. a pair of the map file (--map FILE / map=FILE: "<table> <source id> <target id>");
 *   2. the same id in the target (a sandbox restored onto itself, a copy of the same tenant);
 *   3. its table's rule: users by Entra object id (azureactivedirectoryobjectid), then by domain
 *      name, case-insensitively; business units by name, the root to the root; teams by name
 *      within the mapped business unit, a business unit's default team to the mapped unit's
 *      default team; currencies by ISO code;
 *   4. else unmapped.
 * An id the rows of the point do not list (a user deleted before the point, a point without its
 * principal tables) is decided when first met: the same id in the target, else unmapped. A row of
 * the point whose owner is unmapped gets the fallback owner (--fallback-owner, else the user the
 * restore runs as, from WhoAmI); any other lookup to an unmapped principal is left out. Both are
 * counted per source principal and named in the outcome.
 * The target's rows are read live with $select (small tables); the point's from the repository.
 * Columns are the service's standard ones; a column the target's definition lacks is not read.
 * Memory: the four tables' rows, both sides. Threading: the restore's thread only. */
#include "backend/engine/restore_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backend/base/log.h"

#define MAP_FILE_MAX (16u << 20)
#define DECISIONS_SHOWN 1000 /* per table in the outcome */

static const char *const principal_tables[PR_N] = {"systemuser", "team", "businessunit",
                                                   "transactioncurrency"};

int restore_principal_of(const char *table)
{
    for (int p = 0; table && p < PR_N; p++)
        if (strcmp(principal_tables[p], table) == 0)
            return p;
    return -1;
}

const char *restore_rule_name(enum restore_rule r)
{
    static const char *const names[RULE_N] = {
        "unmapped", "map_file", "same_id", "entra_object_id", "domainname", "root_business_unit",
        "name", "default_team", "iso_code"};
    return r < RULE_N ? names[r] : "?";
}

/* ---------------------------------------------------------------- parsing */

size_t restore_lower_copy(char *dst, size_t cap, const char *src, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        dst[i] = (char)tolower((unsigned char)src[i]);
    dst[n] = '\0';
    return n;
}

int restore_fallback_parse(const char *s, char table[16], char id[40])
{
    const char *colon = s ? strchr(s, ':') : NULL;
    if (!colon)
        return -EINVAL;
    size_t tl = (size_t)(colon - s);
    if (!((tl == 10 && memcmp(s, "systemuser", 10) == 0) || (tl == 4 && memcmp(s, "team", 4) == 0)))
        return -EINVAL;
    if (!dv_guid_valid(colon + 1))
        return -EINVAL;
    snprintf(table, 16, "%.*s", (int)tl, s);
    restore_lower_copy(id, 40, colon + 1, 36);
    return 0;
}

int restore_map_file_parse(const char *text, size_t len, struct map_pair **pairs, size_t *n,
                           struct dverr *err)
{
    size_t cap = 0;
    *pairs = NULL;
    *n = 0;
    int line = 0;
    for (size_t off = 0; off < len;) {
        const char *p = text + off;
        const char *nl = memchr(p, '\n', len - off);
        size_t ll = nl ? (size_t)(nl - p) : len - off;
        off += ll + (nl ? 1 : 0);
        line++;
        /* words: table, source id, target id; '#' starts a comment */
        const char *w[4];
        size_t wl[4], nw = 0;
        for (size_t i = 0; i < ll;) {
            while (i < ll && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r'))
                i++;
            if (i >= ll || p[i] == '#')
                break;
            size_t start = i;
            while (i < ll && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '#')
                i++;
            if (nw < 4) {
                w[nw] = p + start;
                wl[nw] = i - start;
            }
            nw++;
        }
        if (nw == 0)
            continue;
        int table = -1;
        for (int t = 0; t < PR_N && nw == 3; t++)
            if (strlen(principal_tables[t]) == wl[0] && memcmp(principal_tables[t], w[0], wl[0]) == 0)
                table = t;
        char source[40] = "", target[40] = "";
        if (nw == 3) {
            restore_lower_copy(source, sizeof(source), w[1], wl[1]);
            restore_lower_copy(target, sizeof(target), w[2], wl[2]);
        }
        if (nw != 3 || table < 0 || !dv_guid_valid(source) || !dv_guid_valid(target)) {
            free(*pairs);
            *pairs = NULL;
            *n = 0;
            return dverr_set(err, -EINVAL,
                             "map file line %d: expected '<table> <source id> <target id>' with "
                             "table systemuser, team, businessunit or transactioncurrency and "
                             "two GUIDs", line);
        }
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct map_pair *np = realloc(*pairs, cap * sizeof(*np));
            if (!np) {
                free(*pairs);
                *pairs = NULL;
                *n = 0;
                return -ENOMEM;
            }
            *pairs = np;
        }
        struct map_pair *mp = &(*pairs)[(*n)++];
        mp->table = (enum principal)table;
        memcpy(mp->source, source, sizeof(mp->source));
        memcpy(mp->target, target, sizeof(mp->target));
        mp->line = line;
    }
    return 0;
}

/* ---------------------------------------------------------------- deciding */

void restore_pmap_init(struct pmap pm[PR_N])
{
    for (int p = 0; p < PR_N; p++) {
        memset(&pm[p], 0, sizeof(pm[p]));
        pm[p].table = principal_tables[p];
        rmap_init(&pm[p].dst_ids);
        rmap_init(&pm[p].decided);
    }
}

void restore_pmap_release(struct pmap *pm)
{
    for (size_t i = 0; i < pm->n_src; i++) {
        free(pm->src[i].key1);
        free(pm->src[i].key2);
        free(pm->src[i].name);
    }
    for (size_t i = 0; i < pm->n_dst; i++) {
        free(pm->dst[i].key1);
        free(pm->dst[i].key2);
        free(pm->dst[i].name);
    }
    free(pm->src);
    free(pm->dst);
    for (size_t i = 0; i < pm->n_d; i++)
        free(pm->d[i].name);
    free(pm->d);
    rmap_release(&pm->dst_ids);
    rmap_release(&pm->decided);
    const char *table = pm->table;
    memset(pm, 0, sizeof(*pm));
    pm->table = table;
}

static struct pdecision *decision_at(struct pmap *pm, const struct rmap_entry *e)
{
    return e && e->ptr ? &pm->d[(uintptr_t)e->ptr - 1] : NULL;
}

/* A new decision for source id (lower-cased), unmapped until set. NULL when out of memory. */
static struct pdecision *decision_new(struct pmap *pm, const char *id, size_t len,
                                      const char *name)
{
    char low[40];
    restore_lower_copy(low, sizeof(low), id, len);
    bool fresh = false;
    struct rmap_entry *e = rmap_put(&pm->decided, low, strlen(low), &fresh);
    if (!e)
        return NULL;
    if (!fresh)
        return decision_at(pm, e);
    if (pm->n_d == pm->cap_d) {
        size_t cap = pm->cap_d ? pm->cap_d * 2 : 32;
        struct pdecision *d = realloc(pm->d, cap * sizeof(*d));
        if (!d)
            return NULL;
        pm->d = d;
        pm->cap_d = cap;
    }
    struct pdecision *d = &pm->d[pm->n_d++];
    memset(d, 0, sizeof(*d));
    snprintf(d->source, sizeof(d->source), "%s", low);
    d->name = name ? strdup(name) : NULL;
    e->ptr = (void *)(uintptr_t)pm->n_d;
    return d;
}

static void decide(struct pmap *pm, struct pdecision *d, enum restore_rule rule,
                   const char *target)
{
    d->rule = (uint8_t)rule;
    restore_lower_copy(d->target, sizeof(d->target), target ? target : "", target ? strlen(target) : 0);
    pm->by_rule[rule]++;
}

static bool dst_has(const struct pmap *pm, const char *id)
{
    char low[40];
    restore_lower_copy(low, sizeof(low), id, strlen(id));
    return rmap_get(&pm->dst_ids, low, strlen(low)) != NULL;
}

/* The index key of (a, b): "a|b" lower-cased, or "a" when b is NULL. */
static void index_key(struct buf *k, const char *a, const char *b)
{
    for (const char *p = a; *p; p++)
        buf_addch(k, (char)tolower((unsigned char)*p));
    if (b) {
        buf_addch(k, '|');
        for (const char *p = b; *p; p++)
            buf_addch(k, (char)tolower((unsigned char)*p));
    }
}

/* An index of the target's rows by a lower-cased key: ptr = row index + 1. */
static int index_put(struct rmap *m, const char *a, const char *b, size_t row)
{
    if (!a || !*a)
        return 0;
    struct buf k = BUF_INIT;
    index_key(&k, a, b);
    int rc = 0;
    bool fresh = false;
    struct rmap_entry *e = k.data ? rmap_put(m, k.data, k.len, &fresh) : NULL;
    if (!e)
        rc = -ENOMEM;
    else if (fresh)
        e->ptr = (void *)(uintptr_t)(row + 1); /* the first row with that key wins */
    buf_release(&k);
    return rc;
}

static const struct prow *index_get(const struct pmap *pm, const struct rmap *m, const char *a,
                                    const char *b)
{
    if (!a || !*a)
        return NULL;
    struct buf k = BUF_INIT;
    index_key(&k, a, b);
    const struct rmap_entry *e = k.data ? rmap_get(m, k.data, k.len) : NULL;
    buf_release(&k);
    return e ? &pm->dst[(uintptr_t)e->ptr - 1] : NULL;
}

struct pdecision *restore_map_find(struct pmap *pm, enum principal p, const char *id, size_t len)
{
    char low[40];
    restore_lower_copy(low, sizeof(low), id, len);
    struct pmap *m = &pm[p];
    struct rmap_entry *e = rmap_get(&m->decided, low, strlen(low));
    if (e)
        return decision_at(m, e);
    struct pdecision *d = decision_new(m, low, strlen(low), NULL);
    if (!d)
        return NULL;
    if (dst_has(m, low))
        decide(m, d, RULE_SAME_ID, low);
    else
        decide(m, d, RULE_UNMAPPED, NULL);
    return d;
}

/* The target of the rule of table p for source row r, or NULL; *rule says which rule. */
static const struct prow *by_rule(struct pmap *pm, enum principal p, const struct prow *r,
                                  struct rmap *ix1, struct rmap *ix2, enum restore_rule *rule)
{
    const struct prow *hit = NULL;
    struct pmap *m = &pm[p];
    switch (p) {
    case PR_USER:
        if ((hit = index_get(m, ix1, r->key1, NULL)))
            *rule = RULE_ENTRA_ID;
        else if ((hit = index_get(m, ix2, r->key2, NULL)))
            *rule = RULE_DOMAIN_NAME;
        break;
    case PR_BU:
        if (!r->ref[0]) {
            for (size_t i = 0; i < m->n_dst && !hit; i++)
                if (!m->dst[i].ref[0])
                    hit = &m->dst[i];
            *rule = RULE_ROOT_BU;
        } else if ((hit = index_get(m, ix1, r->key1, NULL))) {
            *rule = RULE_NAME;
        }
        break;
    case PR_TEAM: {
        if (!r->ref[0])
            break;
        struct pdecision *bu = restore_map_find(pm, PR_BU, r->ref, strlen(r->ref));
        if (!bu || !bu->target[0])
            break;
        if (r->flag && (hit = index_get(m, ix2, "default", bu->target)))
            *rule = RULE_DEFAULT_TEAM;
        else if ((hit = index_get(m, ix1, r->key1, bu->target)))
            *rule = RULE_NAME;
        break;
    }
    case PR_CURRENCY:
        if ((hit = index_get(m, ix1, r->key1, NULL)))
            *rule = RULE_ISO_CODE;
        break;
    case PR_N: break;
    }
    return hit;
}

static int decide_table(struct pmap *pm, enum principal p, const struct map_pair *pairs,
                        size_t n_pairs, struct dverr *err)
{
    struct pmap *m = &pm[p];
    struct rmap ix1, ix2;
    rmap_init(&ix1);
    rmap_init(&ix2);
    int rc = 0;
    for (size_t i = 0; i < m->n_dst && !rc; i++) {
        const struct prow *r = &m->dst[i];
        char low[40];
        restore_lower_copy(low, sizeof(low), r->id, strlen(r->id));
        if (!rmap_put(&m->dst_ids, low, strlen(low), NULL))
            rc = -ENOMEM;
        if (!rc && p == PR_TEAM) {
            rc = index_put(&ix1, r->key1, r->ref, i);
            if (!rc && r->flag)
                rc = index_put(&ix2, "default", r->ref, i);
        } else if (!rc) {
            rc = index_put(&ix1, r->key1, NULL, i);
            if (!rc && p == PR_USER)
                rc = index_put(&ix2, r->key2, NULL, i);
        }
    }
    /* the map file first: its pairs decide whatever the point lists */
    for (size_t i = 0; i < n_pairs && !rc; i++) {
        const struct map_pair *mp = &pairs[i];
        if (mp->table != p)
            continue;
        if (!dst_has(m, mp->target)) {
            rc = dverr_set(err, -EINVAL, "map file line %d: the target has no %s %s", mp->line,
                           m->table, mp->target);
            break;
        }
        const char *name = NULL;
        for (size_t k = 0; k < m->n_src && !name; k++)
            if (strcasecmp(m->src[k].id, mp->source) == 0)
                name = m->src[k].name;
        struct pdecision *d = decision_new(m, mp->source, strlen(mp->source), name);
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        if (d->target[0] || d->rule != RULE_UNMAPPED) {
            rc = dverr_set(err, -EINVAL, "map file line %d: %s %s is mapped twice", mp->line,
                           m->table, mp->source);
            break;
        }
        decide(m, d, RULE_MAP_FILE, mp->target);
    }
    for (size_t i = 0; i < m->n_src && !rc; i++) {
        const struct prow *r = &m->src[i];
        char low[40];
        restore_lower_copy(low, sizeof(low), r->id, strlen(r->id));
        if (rmap_get(&m->decided, low, strlen(low)))
            continue; /* the map file's */
        struct pdecision *d = decision_new(m, low, strlen(low), r->name);
        if (!d) {
            rc = -ENOMEM;
            break;
        }
        enum restore_rule rule = RULE_UNMAPPED;
        const struct prow *hit = NULL;
        if (dst_has(m, low)) {
            decide(m, d, RULE_SAME_ID, low);
            continue;
        }
        hit = by_rule(pm, p, r, &ix1, &ix2, &rule);
        decide(m, d, hit ? rule : RULE_UNMAPPED, hit ? hit->id : NULL);
    }
    rmap_release(&ix1);
    rmap_release(&ix2);
    return rc;
}

int restore_map_decide(struct pmap pm[PR_N], const struct map_pair *pairs, size_t n_pairs,
                       struct dverr *err)
{
    static const enum principal order[PR_N] = {PR_BU, PR_USER, PR_TEAM, PR_CURRENCY};
    int rc = 0;
    for (int i = 0; i < PR_N && !rc; i++)
        rc = decide_table(pm, order[i], pairs, n_pairs, err);
    return rc;
}

/* ---------------------------------------------------------------- reading */

struct row_ctx {
    struct pmap *m;
    enum principal p;
    bool source;
    int rc;
};

static char *dup_or_null(const char *s)
{
    return s && *s ? xstrdup(s) : NULL;
}

static int add_row(struct row_ctx *x, const struct json_node *rec)
{
    static const char *const pk[PR_N] = {"systemuserid", "teamid", "businessunitid",
                                         "transactioncurrencyid"};
    const char *id = json_get_str(rec, pk[x->p]);
    if (!dv_guid_valid(id))
        return 0;
    struct prow **rows = x->source ? &x->m->src : &x->m->dst;
    size_t *n = x->source ? &x->m->n_src : &x->m->n_dst;
    if (*n == 0 || (*n >= 16 && (*n & (*n - 1)) == 0)) { /* capacity: 16, then doubling */
        struct prow *r = realloc(*rows, (*n ? *n * 2 : 16) * sizeof(*r));
        if (!r)
            return -ENOMEM;
        *rows = r;
    }
    struct prow *r = &(*rows)[(*n)++];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    const char *ref = NULL;
    switch (x->p) {
    case PR_USER:
        r->key1 = dup_or_null(json_get_str(rec, "azureactivedirectoryobjectid"));
        r->key2 = dup_or_null(json_get_str(rec, "domainname"));
        r->name = dup_or_null(json_get_str(rec, "fullname"));
        if (!r->name)
            r->name = dup_or_null(r->key2);
        break;
    case PR_TEAM:
        r->key1 = dup_or_null(json_get_str(rec, "name"));
        r->name = dup_or_null(r->key1);
        ref = json_get_str(rec, "_businessunitid_value");
        r->flag = json_get_bool(rec, "isdefault", false);
        break;
    case PR_BU:
        r->key1 = dup_or_null(json_get_str(rec, "name"));
        r->name = dup_or_null(r->key1);
        ref = json_get_str(rec, "_parentbusinessunitid_value");
        break;
    case PR_CURRENCY:
        r->key1 = dup_or_null(json_get_str(rec, "isocurrencycode"));
        r->name = dup_or_null(r->key1);
        break;
    case PR_N: break;
    }
    if (dv_guid_valid(ref))
        snprintf(r->ref, sizeof(r->ref), "%s", ref);
    return 0;
}

static int point_row_cb(void *ctx, const char *key, size_t key_len, const char *line,
                        size_t line_len)
{
    struct row_ctx *x = ctx;
    struct json_doc *doc = NULL;
    if (json_parse(line, line_len, NULL, &doc, NULL))
        return 0; /* a line the repository gave: checked when written */
    int rc = add_row(x, json_root(doc));
    json_doc_free(doc);
    return rc;
}

static int target_row_cb(void *ctx, const struct json_node *rec)
{
    return add_row(ctx, rec);
}

/* The target's columns of table p that exist in its definition, as a $select list. */
static void select_list(const struct dv_table *def, enum principal p, struct buf *out)
{
    static const char *const cols[PR_N][5] = {
        {"systemuserid", "azureactivedirectoryobjectid", "domainname", "fullname", NULL},
        {"teamid", "name", "businessunitid", "isdefault", NULL},
        {"businessunitid", "name", "parentbusinessunitid", NULL, NULL},
        {"transactioncurrencyid", "isocurrencycode", NULL, NULL, NULL}};
    for (int i = 0; i < 5 && cols[p][i]; i++) {
        const struct dv_attribute *a = restore_attr(def, cols[p][i], strlen(cols[p][i]));
        if (!a && i > 0)
            continue;
        bool lookup = a && a->type && (!strcmp(a->type, "Lookup") || !strcmp(a->type, "Owner"));
        buf_printf(out, "%s%s%s%s", out->len ? "," : "", lookup ? "_" : "", cols[p][i],
                   lookup ? "_value" : "");
    }
}

const struct dv_table *restore_target_def(const struct rctx *c, const char *table)
{
    for (size_t i = 0; table && i < c->n_defs; i++)
        if (c->defs[i].logical_name && !strcmp(c->defs[i].logical_name, table))
            return &c->defs[i];
    return NULL;
}

const char *restore_entity_set(const struct rctx *c, const char *table)
{
    const struct dv_table *t = restore_target_def(c, table);
    return t ? t->entity_set : NULL;
}

static int read_map_file(const char *path, struct map_pair **pairs, size_t *n, struct dverr *err)
{
    struct buf text = BUF_INIT;
    int rc = read_file(path, MAP_FILE_MAX, &text);
    if (rc == -EFBIG)
        rc = dverr_set(err, -EINVAL, "map file %s: larger than 16 MiB", path);
    else if (rc && rc != -ENOMEM)
        rc = dverr_set(err, -EINVAL, "map file %s: %s", path, strerror(-rc));
    if (!rc) {
        struct dverr perr = {0};
        rc = restore_map_file_parse(text.data ? text.data : "", text.len, pairs, n, &perr);
        if (rc == -EINVAL)
            dverr_set(err, rc, "%s: %s", path, dverr_msg(&perr));
    }
    buf_release(&text);
    return rc;
}

int restore_map_principals(struct rctx *c)
{
    int rc = 0;
    for (int p = 0; p < PR_N && !rc; p++) {
        struct pmap *m = &c->pm[p];
        struct row_ctx x = {m, (enum principal)p, true, 0};
        if (restore_table_in_point(c->point, m->table))
            rc = table_iterate(c->repo, c->point, m->table, point_row_cb, &x, c->err);
        const struct dv_table *def = restore_target_def(c, m->table);
        if (rc || !def || !def->entity_set)
            continue; /* a target without the table: everything of it is unmapped */
        struct buf sel = BUF_INIT;
        select_list(def, (enum principal)p, &sel);
        x.source = false;
        struct dv_read_cb cb = {target_row_cb, NULL, &x};
        rc = sel.data ? dv_read_select(c->dv, &c->target, def->entity_set, sel.data, &cb, c->err)
                      : -ENOMEM;
        buf_release(&sel);
    }
    struct map_pair *pairs = NULL;
    size_t n_pairs = 0;
    if (!rc && c->req->map_file)
        rc = read_map_file(c->req->map_file, &pairs, &n_pairs, c->err);
    if (!rc)
        rc = restore_map_decide(c->pm, pairs, n_pairs, c->err);
    free(pairs);
    if (rc)
        return rc;
    /* the fallback owner: named, else the caller; it must be one of the target's */
    if (c->req->fallback_owner) {
        if (restore_fallback_parse(c->req->fallback_owner, c->fallback_table, c->fallback_id))
            return dverr_set(c->err, -EINVAL, "fallback owner %s: not systemuser:<id> or "
                                              "team:<id>", c->req->fallback_owner);
    } else {
        snprintf(c->fallback_table, sizeof(c->fallback_table), "systemuser");
        restore_lower_copy(c->fallback_id, sizeof(c->fallback_id), c->caller_id, strlen(c->caller_id));
    }
    struct pmap *fm = &c->pm[restore_principal_of(c->fallback_table)];
    if (c->fallback_id[0] && restore_target_def(c, fm->table) && !dst_has(fm, c->fallback_id))
        return dverr_set(c->err, -EINVAL, "fallback owner %s:%s: %s has no such %s",
                         c->fallback_table, c->fallback_id, c->target.unique_name, fm->table);
    snprintf(c->out->fallback_owner, sizeof(c->out->fallback_owner), "%s:%s", c->fallback_table,
             c->fallback_id);
    for (int p = 0; p < PR_N; p++)
        log_info("restore: %s: %zu of the point's rows, %zu of the target's, %llu unmapped",
                 c->pm[p].table, c->pm[p].n_src, c->pm[p].n_dst,
                 (unsigned long long)c->pm[p].by_rule[RULE_UNMAPPED]);
    return 0;
}

/* ---------------------------------------------------------------- lookups */

/* The principal table a lookup value points at: its lookuplogicalname, else the only principal
 * among the attribute's targets, else the one whose point rows list the id. -1: not a
 * principal. */
static int principal_of_lookup(struct rctx *c, const struct dv_table *t, const char *attr,
                               size_t attr_len, const char *target_table, const char *id,
                               size_t id_len)
{
    if (target_table)
        return restore_principal_of(target_table);
    int found = -1, count = 0;
    for (size_t i = 0; t && i < t->n_lookups; i++) {
        const struct dv_lookup *lk = &t->lookups[i];
        if (!lk->attribute || strlen(lk->attribute) != attr_len ||
            memcmp(lk->attribute, attr, attr_len))
            continue;
        int p = restore_principal_of(lk->target_table);
        if (p >= 0 && p != found) {
            found = p;
            count++;
        }
    }
    if (count <= 1)
        return found;
    char low[40];
    restore_lower_copy(low, sizeof(low), id, id_len);
    for (int p = 0; p < PR_N; p++)
        if (rmap_get(&c->pm[p].decided, low, strlen(low)))
            return p;
    return -1;
}

static bool is_owner_attr(const struct dv_table *t, const char *attr, size_t attr_len)
{
    const struct dv_attribute *a = t ? restore_attr(t, attr, attr_len) : NULL;
    if (a && a->type)
        return strcmp(a->type, "Owner") == 0;
    return attr_len == 7 && memcmp(attr, "ownerid", 7) == 0;
}

int restore_map_lookup(void *ctx, const struct dv_table *t, const char *attr, size_t attr_len,
                       const char *target_table, const char *id, size_t id_len,
                       const char **mapped_table, char mapped_id[40])
{
    struct rctx *c = ctx;
    int p = principal_of_lookup(c, t, attr, attr_len, target_table, id, id_len);
    if (p < 0)
        return RL_KEEP;
    struct pdecision *d = restore_map_find(c->pm, (enum principal)p, id, id_len);
    if (!d)
        return RL_DROP; /* out of memory: never bind what was not decided */
    if (d->target[0]) {
        snprintf(mapped_id, 40, "%s", d->target);
        return RL_MAPPED;
    }
    if (t && (p == PR_USER || p == PR_TEAM) && is_owner_attr(t, attr, attr_len) &&
        c->fallback_id[0]) {
        if (c->counting) {
            d->rows_fallback++;
            if (c->cur)
                c->cur->out->fallback_owners++;
        }
        *mapped_table = c->fallback_table;
        snprintf(mapped_id, 40, "%s", c->fallback_id);
        return RL_MAPPED;
    }
    if (c->counting) {
        d->lookups_dropped++;
    } else if (t && c->cur) {
        struct restore_table_outcome *o = c->cur->out;
        o->lookups_dropped++;
        if (!o->lookup_note) {
            struct buf n = BUF_INIT;
            buf_printf(&n, "%s(%.*s): lookup %.*s -> %s %s dropped: no match in the target",
                       c->cur->def->entity_set, (int)c->cur_key_len, c->cur_key, (int)attr_len,
                       attr, c->pm[p].table, d->source);
            o->lookup_note = buf_detach(&n);
        }
    }
    return RL_DROP;
}

/* ---------------------------------------------------------------- outcome */

void restore_map_outcome(struct rctx *c)
{
    struct buf m = BUF_INIT, u = BUF_INIT;
    buf_addch(&m, '{');
    buf_addch(&u, '[');
    bool first_u = true;
    for (int p = 0; p < PR_N; p++) {
        struct pmap *pm = &c->pm[p];
        uint64_t matched = 0;
        for (int r = 1; r < RULE_N; r++)
            matched += pm->by_rule[r];
        buf_printf(&m, "%s\"%s\":{\"point_rows\":%zu,\"target_rows\":%zu,\"matched\":%llu,"
                       "\"unmapped\":%llu,\"by\":{",
                   p ? "," : "", pm->table, pm->n_src, pm->n_dst, (unsigned long long)matched,
                   (unsigned long long)pm->by_rule[RULE_UNMAPPED]);
        bool first = true;
        for (int r = 1; r < RULE_N; r++) {
            if (!pm->by_rule[r])
                continue;
            buf_printf(&m, "%s\"%s\":%llu", first ? "" : ",", restore_rule_name(r),
                       (unsigned long long)pm->by_rule[r]);
            first = false;
        }
        buf_addstr(&m, "},\"decisions\":[");
        for (size_t i = 0; i < pm->n_d && i < DECISIONS_SHOWN; i++) {
            const struct pdecision *d = &pm->d[i];
            buf_printf(&m, "%s{\"source\":\"%s\",\"target\":", i ? "," : "", d->source);
            if (d->target[0])
                buf_printf(&m, "\"%s\"", d->target);
            else
                buf_addstr(&m, "null");
            buf_printf(&m, ",\"rule\":\"%s\"", restore_rule_name(d->rule));
            if (d->name) {
                buf_addstr(&m, ",\"name\":");
                buf_add_json_string(&m, d->name, strlen(d->name));
            }
            buf_addch(&m, '}');
        }
        buf_printf(&m, "]%s}", pm->n_d > DECISIONS_SHOWN ? ",\"decisions_truncated\":true" : "");
        for (size_t i = 0; i < pm->n_d; i++) {
            const struct pdecision *d = &pm->d[i];
            if (d->target[0])
                continue;
            buf_printf(&u, "%s{\"table\":\"%s\",\"id\":\"%s\",\"name\":", first_u ? "" : ",",
                       pm->table, d->source);
            first_u = false;
            if (d->name)
                buf_add_json_string(&u, d->name, strlen(d->name));
            else
                buf_addstr(&u, "null");
            buf_printf(&u, ",\"rows_given_fallback_owner\":%llu,\"lookups_dropped\":%llu}",
                       (unsigned long long)d->rows_fallback,
                       (unsigned long long)d->lookups_dropped);
        }
    }
    buf_addch(&m, '}');
    buf_addch(&u, ']');
    free(c->out->mapping_json);
    free(c->out->unmapped_json);
    c->out->mapping_json = buf_detach(&m);
    c->out->unmapped_json = buf_detach(&u);
}
