/* seed_int: what the seed's files share (the seed's public functions are in dvsim.h).
 *   seed.c           the record builder, the deterministic values, the people and principals of
 *                    each environment, the data tables, the driver (dvseed_tenant) and churn's
 *                    dvseed_create_record
 *   seed_principals.c the people (systemusers), business units, teams and currencies of each
 *                    environment, and the owner and currency columns of records
 *   seed_files.c     note attachments, project files and contact images
 *   seed_activity.c  the activities (email, task, phonecall, appointment), their activitypointer
 *                    rows and their activityparty rows
 *   seed_real.c      the rows of the generated tables of --shape real (schema_real.c)
 * Every value is a pure function of (seed, environment, table, record index): records refer to each
 * other (lookups and their formatted names) by computing the other record's values, never by a
 * lookup in the store. Single-threaded: one struct gen per seeding (start-up, /_sim/reset) or per
 * churn create. */
#ifndef DVSIM_SEED_INT_H
#define DVSIM_SEED_INT_H

#include <sqlite3.h>
#include <stdint.h>

#include "tools/dvsim/dvsim.h"

#define NA(a) (sizeof(a) / sizeof((a)[0]))

/* a fast builder of one canonical line: members are collected, then sorted once */
struct lbm {
    uint32_t koff, klen, voff, vlen;
};
struct lb {
    struct buf s;
    struct lbm m[128];
    int n;
};

struct gen {
    struct dvsim *d;
    sqlite3 *db;
    sqlite3_stmt *ins, *ins_file, *ins_party;
    int env;
    int64_t ver;
    int64_t counts[N_TABLES];
    int64_t extra_rows;       /* rows seeded into the generated tables (--shape real) */
    int64_t persons;          /* people of the tenant (person 0 is the application user) */
    int *members;             /* the person of each systemuser row of this environment; [0] = 0 */
    int64_t *party_off;       /* activities of every type (T_EMAIL.. order): index of the first party
                               * of each, and the total at [number of activities] */
    struct lb lb;
    struct buf line, tmp;
};

/* the teams of every environment: 0-2 the default team of each business unit, then two owner
 * teams (which own records) and an access team (which cannot) */
#define N_BUSINESS_UNITS 3
#define N_TEAMS 6
#define N_OWNER_TEAMS 5
#define N_CURRENCIES 3

/* ---- seed.c ---- */
uint64_t seed_hash(const struct gen *g, int table, uint64_t i, uint64_t salt);
/* A value of person p that is the same in every environment. */
uint64_t seed_person_hash(const struct gen *g, int p, uint64_t salt);
void seed_person_name(uint64_t h, const char **first, const char **last);
void seed_iso_quoted(int64_t t, char out[40]);
/* statecode and statuscode with their formatted values. */
void seed_state(struct gen *g, const struct table_def *t, int statecode, int statuscode);
void seed_id(const struct gen *g, int table, uint64_t i, char out[37]);
void lb_raw(struct lb *b, const char *key, const char *raw, size_t len);
void lb_str(struct lb *b, const char *key, const char *s);
/* A column value plus its formatted annotation. */
void lb_col(struct lb *b, const struct table_def *t, const char *member, const char *raw);
/* A lookup: _<attr>_value with its target and formatted name (id NULL: null). */
void lb_lookup(struct lb *b, const char *attr, const char *target, const char *id, const char *name);
/* createdon, modifiedon, overriddencreatedon, versionnumber and the etag of record i. */
void seed_common(struct gen *g, const struct table_def *t, uint64_t i, int64_t ver);
void seed_time_pair(const struct gen *g, int table, uint64_t i, int64_t *created, int64_t *modified);
/* Insert rows 0..n-1 of table (row(g, table, i) builds and inserts row i) in primary-key order. */
int seed_rows(struct gen *g, int table, size_t n, int (*row)(struct gen *g, int table, uint64_t i));
/* ---- seed_real.c ---- */
/* The rows of the generated tables of environment g->env (g->extra_rows counts them). */
int seed_real_env(struct gen *g);
/* ---- seed_principals.c ---- */
/* The people of environment g->env: g->members and counts[T_SYSTEMUSER]. */
int seed_members(struct gen *g);
int seed_gen_businessunit(struct gen *g, uint64_t i);
int seed_gen_team(struct gen *g, uint64_t i);
int seed_gen_currency(struct gen *g, uint64_t i);
int seed_gen_systemuser(struct gen *g, uint64_t i);
/* ownerid (a user about 70% of the time, else an owner team) and, when owning, the owning*
 * columns. */
void seed_owner(struct gen *g, int table, uint64_t i, bool owning);
/* transactioncurrencyid (mostly the base currency), exchangerate and <money>_base of record i. */
void seed_currency(struct gen *g, const struct table_def *t, int table, uint64_t i, const char *money_member,
                   const char *money_raw);
/* Render the line and insert it as record id of table. */
int seed_insert(struct gen *g, int table, const char *id);
void seed_account_name(const struct gen *g, uint64_t i, char *out, size_t n);
void seed_contact_name(const struct gen *g, uint64_t i, char *out, size_t n);
void seed_opportunity_name(const struct gen *g, uint64_t i, char *out, size_t n);
void seed_incident_title(const struct gen *g, uint64_t i, char *out, size_t n);
/* systemuser row u of this environment: its id, full name, e-mail address */
void seed_user(const struct gen *g, uint64_t u, char id[37], char *name, size_t n, char *mail,
               size_t mail_n);

/* ---- seed_files.c ---- */
int seed_gen_annotation(struct gen *g, uint64_t i);
int seed_gen_project(struct gen *g, uint64_t i);
/* The image columns of contact i (id) that has an image: the full image in the files table, its
 * thumbnail (Base64), id, timestamp and URL in the record being built. */
int seed_contact_image(struct gen *g, uint64_t i, const char *id, uint64_t h);

/* ---- seed_activity.c ---- */
/* The activity counts of an environment with `accounts` accounts, and each activity's parties
 * (g->party_off; counts[T_ACTIVITYPOINTER] and counts[T_ACTIVITYPARTY]). */
int seed_activity_plan(struct gen *g);
int seed_gen_activity(struct gen *g, int table, uint64_t i);
int seed_gen_pointer(struct gen *g, uint64_t i);
int seed_gen_party(struct gen *g, uint64_t i);
void seed_pointer_id(const struct gen *g, uint64_t i, char out[37]);

#endif
