/* seed_real: the rows of the generated tables of --shape real (schema_real.c; seed_int.h).
 * As in a real org most of them are empty: about one standard table in six holds 1 to 5 rows;
 * activity and intersect tables hold none, and the virtual table none (its rows are external).
 * The elastic table new_sensorreading holds --elastic-rows rows in contoso-prod (default: as many
 * as --records) and 40 in the other orgs; its partitionid is one of 64 devices, null for one row
 * in ten (a row created without a partition), and one row in fifty (the 22nd, 72nd, ...) is a
 * twin: the id of the row before it in a partition of its own (twin-<row>), as the service allows
 * (an elastic row is keyed by id and partitionid). A row sets its primary name, up to 16 filler
 * columns, createdby/modifiedby, owner, state and the common columns; the rest of its attributes
 * are absent, as a column never set reads. Values are pure functions of (seed, environment,
 * table, row) like every other seeded value. Single-threaded (see seed_int.h). */
#include "tools/dvsim/seed_int.h"

#include <stdio.h>
#include <string.h>

#define MAX_FILLED 16

static void user_lookup(struct gen *g, const char *attr, uint64_t h)
{
    int64_t nu = g->counts[T_SYSTEMUSER];
    char id[37], name[160];
    seed_user(g, nu > 1 ? 1 + h % (uint64_t)(nu - 1) : 0, id, name, sizeof name, NULL, 0);
    lb_lookup(&g->lb, attr, "systemuser", id, name);
}

static int gen_row(struct gen *g, int table, uint64_t i)
{
    const struct table_def *t = dvschema_table_at(table);
    char id[37], v[200], part[40] = "", row[DVSTORE_ID_MAX];
    int64_t ver = ++g->ver;
    bool twin = t->elastic && i % 50 == 21; /* the row before it (i % 10 == 0) has a partition */
    seed_id(g, table, twin ? i - 1 : i, id);
    if (twin)
        snprintf(part, sizeof part, "twin-%03llu", (unsigned long long)i);
    else if (t->elastic && i % 10 != 9)
        snprintf(part, sizeof part, "device-%03llu", (unsigned long long)(seed_hash(g, table, i, 9) % 64));
    lb_str(&g->lb, t->pk, id);
    int filled = 0;
    for (size_t c = 0; c < t->n_cols; c++) {
        const struct col_def *col = &t->cols[c];
        uint64_t x = seed_hash(g, table, i, 100 + c);
        bool primary = t->primary_name && !strcmp(col->name, t->primary_name);
        bool own = !strcmp(col->name, "partitionid") || !strcmp(col->name, "new_deviceid");
        bool value = col->type == COL_STRING || col->type == COL_MEMO || col->type == COL_INTEGER ||
                     col->type == COL_DECIMAL || col->type == COL_BOOLEAN || col->type == COL_DATETIME;
        /* a filler is a value column clients write (createdon and the other system columns:
         * seed_common) */
        bool filler = value && !primary && !own;
        if (filler && ((col->flags & COLF_RW) != COLF_RW || filled++ >= MAX_FILLED))
            continue;
        switch (col->type) {
        case COL_STRING:
            if (primary)
                snprintf(v, sizeof v, "%s %llu", t->logical, (unsigned long long)i + 1);
            else if (own)
                snprintf(v, sizeof v, "%s", part);
            else
                snprintf(v, sizeof v, "%s-%06llx", col->name, (unsigned long long)(x & 0xffffff));
            lb_str(&g->lb, col->name, own && !part[0] ? NULL : v);
            break;
        case COL_MEMO:
            snprintf(v, sizeof v, "Notes on %s %llu.\nSecond line: \"quoted\" ✓", t->logical,
                     (unsigned long long)i + 1);
            lb_str(&g->lb, col->name, x % 4 ? v : NULL);
            break;
        case COL_INTEGER:
            snprintf(v, sizeof v, "%llu", (unsigned long long)(x % 100000));
            lb_col(&g->lb, t, col->name, v);
            break;
        case COL_DECIMAL:
            snprintf(v, sizeof v, "%llu.%02llu", (unsigned long long)(x % 10000),
                     (unsigned long long)((x >> 20) % 100));
            lb_col(&g->lb, t, col->name, v);
            break;
        case COL_BOOLEAN:
            lb_col(&g->lb, t, col->name, x % 2 ? "true" : "false");
            break;
        case COL_DATETIME: {
            char q[40];
            int64_t created, modified;
            seed_time_pair(g, table, i + 1000003 * c, &created, &modified);
            seed_iso_quoted(modified, q);
            lb_col(&g->lb, t, col->name, q);
            break;
        }
        case COL_LOOKUP:
            if (!strcmp(col->name, "createdby") || !strcmp(col->name, "modifiedby"))
                user_lookup(g, col->name, x);
            break; /* owning*: seed_owner */
        default:
            break; /* key, owner, state, status, version: below */
        }
    }
    if (t->ownership == OWN_USER)
        seed_owner(g, table, i, true);
    if (dvschema_col_by_member(t, "statecode", 9))
        seed_state(g, t, 0, 1);
    seed_common(g, t, i, ver);
    g->extra_rows++;
    dvstore_row_id(id, part, row);
    return seed_insert(g, table, row);
}

int seed_real_env(struct gen *g)
{
    int rc = 0;
    for (size_t k = 0; k < dvschema_n_extra && !rc; k++) {
        const struct table_def *t = &dvschema_extra[k];
        int table = N_TABLES + (int)k;
        size_t n = 0;
        if (t->elastic)
            n = g->env == 0 ? (size_t)g->d->elastic_rows : 40;
        else if (!t->virtual_table && !t->intersect && !t->activity) {
            uint64_t h = seed_hash(g, table, 0, 40);
            n = h % 6 == 0 ? 1 + (size_t)((h >> 8) % 5) : 0;
        }
        rc = seed_rows(g, table, n, gen_row);
    }
    return rc;
}
