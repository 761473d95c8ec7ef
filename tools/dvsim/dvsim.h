/* dvsim: internal interfaces of the local Dataverse simulator (tools/dvsim).
 *
 * Modules: server.c (libmicrohttpd, routing, auth, faults, throttling, request log), store.c
 * (SQLite), schema.c (the static table definitions of every org), schema_real.c (the generated
 * definitions of --shape real), line.c (flat canonical record
 * lines: scan, render, annotations), seed*.c (the deterministic tenant; listed in seed_int.h),
 * admin.c (token endpoint, BAP routes), webapi*.c (reads, query options, change tracking,
 * metadata), webwrite*.c (writes and the service's rules, privileges, activities and parties,
 * actions, file and image columns, $batch; the files of both are listed in webapi_int.h), sim.c
 * (/_sim/).
 *
 * Threading: one struct dvsim per process, shared by every connection thread. Fields that change
 * at runtime say which lock guards them. Each request owns its struct req. SQLite connections come
 * from a pool in store.c (one connection per thread at a time).
 * All functions return 0 or -errno unless they say otherwise. */
#ifndef DVSIM_DVSIM_H
#define DVSIM_DVSIM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

#define DVSIM_TENANT "contoso"
#define DVSIM_TENANT_ID "6f1c2e34-8d5a-4b7e-9c21-3a4b5c6d7e8f"
#define DVSIM_API_PREFIX "/api/data/v9.2"
#define DVSIM_MAX_BODY (160u * 1024 * 1024)
#define DVSIM_MAX_PAGE 5000

/* ---- schema (schema.c) ---- */
enum col_type {
    COL_PK, COL_STRING, COL_MEMO, COL_INTEGER, COL_BIGINT, COL_MONEY, COL_DECIMAL, COL_DATETIME,
    COL_DATEONLY, COL_PICKLIST, COL_STATE, COL_STATUS, COL_BOOLEAN, COL_GUID, COL_LOOKUP, COL_OWNER,
    COL_CUSTOMER, COL_FILE, COL_FILENAME, COL_IMAGE, COL_VERSION
};
#define COLF_CREATE 1u
#define COLF_UPDATE 2u
#define COLF_RW (COLF_CREATE | COLF_UPDATE)

struct option_def {
    int value;
    const char *label;
    int state;            /* statuscode options: the statecode the status belongs to */
};
/* One table a lookup may point at, and how a client binds it. */
struct lookup_target {
    const char *table;    /* referenced table (logical name) */
    const char *nav;      /* single-valued navigation property for <nav>@odata.bind */
    const char *rel;      /* relationship SchemaName; NULL: <table>_<referencing table>_<column> */
};
struct col_def {
    const char *name;     /* logical name; lookups: the attribute (record member _<name>_value) */
    enum col_type type;
    unsigned flags;       /* COLF_*: IsValidForCreate / IsValidForUpdate */
    const struct lookup_target *targets; /* lookups: ends with table NULL */
    const struct option_def *options; /* picklist/state/status/boolean labels, ends with label NULL */
};
/* OwnershipType of a table. */
enum ownership { OWN_NONE, OWN_USER, OWN_BUSINESS, OWN_ORG };
/* Who may write a table's records through the Web API. */
enum table_writes {
    TW_DATA,              /* clients create, update and delete them */
    TW_NONE,              /* every write refused: audit, activitypointer, and activityparty (whose rows
                           * are written inside their activity) */
    TW_PRINCIPAL          /* principals and configuration (systemuser, team, businessunit,
                           * transactioncurrency): the application user lacks the privileges */
};
struct table_def {
    const char *logical;
    const char *schema;       /* SchemaName ("Account"); "<schema>State" names the state enum */
    const char *set;
    const char *pk;
    const char *primary_name; /* may be NULL */
    const char *privilege;    /* privilege suffix (prvCreate<privilege>); NULL: none of its own */
    int object_type_code;
    bool change_tracking;
    bool intersect;
    bool activity;            /* IsActivity: primary key activityid, parties, a row in activitypointer */
    enum ownership ownership;
    enum table_writes writes;
    const struct col_def *cols;
    size_t n_cols;
    /* TableType Virtual (rows live in an external source; reads fail as a failing data provider
     * answers, DataProviderId set) or Elastic (rows carry partitionid); neither: Standard, or
     * Activity when `activity` */
    bool virtual_table;
    bool elastic;
};
struct n2n_def {
    const char *dvschema_name, *intersect;
    const char *entity1, *entity1_attr, *entity1_nav;
    const char *entity2, *entity2_attr, *entity2_nav;
};
enum table_index {
    T_ACCOUNT, T_CONTACT, T_OPPORTUNITY, T_INCIDENT, T_SYSTEMUSER, T_ANNOTATION, T_PROJECT,
    T_PROJECT_CONTACT, T_AUDIT, T_BUSINESSUNIT, T_TEAM, T_CURRENCY, T_EMAIL, T_TASK, T_PHONECALL,
    T_APPOINTMENT, T_ACTIVITYPOINTER, T_ACTIVITYPARTY, N_TABLES
};
#define N_ACTIVITY_TYPES 4 /* T_EMAIL .. T_APPOINTMENT, in that order */
struct env_def {
    const char *unique_name, *display_name, *sku, *geo, *region, *retention;
    bool d365, is_default;
};
#define N_ENVS 6

extern const struct table_def dvschema_tables[N_TABLES];
/* --shape real: the generated definitions of a Dynamics 365 Sales org beyond the eighteen
 * (schema_real.c), built once before the server starts and read-only after; table index
 * N_TABLES + k is dvschema_extra[k]. Empty in the small shape. */
#define MAX_EXTRA_TABLES 1000
extern const struct table_def *dvschema_extra;
extern size_t dvschema_n_extra;
/* Build dvschema_extra (about 680 definitions; idempotent). */
int dvschema_real_build(void);
/* The table of index i (0 <= i < N_TABLES + dvschema_n_extra). */
const struct table_def *dvschema_table_at(int i);
/* Pieces of the eighteen's definitions that the generated ones share (schema.c). */
extern const struct col_def dvschema_owner_cols[4];
extern const struct col_def dvschema_state_cols[2];
extern const struct col_def dvschema_common_cols[4];
extern const struct option_def dvschema_bool_options[];
extern const struct n2n_def dvschema_n2n[];
extern const size_t dvschema_n_n2n;
extern const struct env_def dvschema_envs[N_ENVS];

/* --hostile-tables: aliases of systemuser with hostile names (schema.c); listed only when on */
#define N_HOSTILE 7
extern const struct table_def dvschema_hostile[N_HOSTILE];
const struct table_def *dvschema_table_by_set(const char *set, size_t len);
const struct table_def *dvschema_table_by_logical(const char *logical, size_t len);
int dvschema_table_index(const struct table_def *t);
int dvschema_env_index(const char *unique_name, size_t len);
/* The column whose record member is `member` (e.g. "_primarycontactid_value" or "name"). */
const struct col_def *dvschema_col_by_member(const struct table_def *t, const char *member, size_t len);
/* The lookup column one of whose targets binds through navigation property nav; *target gets that
 * target (for ownerid, the first: both of its targets bind through "ownerid"). */
const struct col_def *dvschema_col_by_nav(const struct table_def *t, const char *nav, size_t len,
                                          const struct lookup_target **target);
/* The target of lookup column c that is table `logical` and binds through nav (nav NULL: any). */
const struct lookup_target *dvschema_lookup_target(const struct col_def *c, const char *logical,
                                                   const char *nav);
bool dvschema_is_lookup(const struct col_def *c);
/* The record member name of a column into out ("_x_value" for lookups). */
void dvschema_member_name(const struct col_def *c, char *out, size_t n);
const char *dvschema_option_label(const struct col_def *c, int value);
/* statuscode column: the state a status belongs to (-1: no such status), and the default status of
 * a state (its first status; -1: none). */
int dvschema_status_state(const struct col_def *status, int value);
int dvschema_status_default(const struct col_def *status, int state);
/* Deterministic GUID of an environment (admin API name), of its organization, and of the
 * application user dvsim serves as (the one every token authenticates: an id of its own in every
 * environment, 00000000-0000-0000-EEEE-00000000a001 with EEEE the environment's index). */
void dvschema_env_guid(int env, char out[64]);
void dvschema_org_id(int env, char out[37]);
void dvschema_app_user_id(int env, char out[37]);

/* ---- flat record lines (line.c) ---- */
/* The annotations of a record member: its formatted value, a lookup's target table. */
#define FV "@OData.Community.Display.V1.FormattedValue"
#define LLN "@Microsoft.Dynamics.CRM.lookuplogicalname"
struct lmember {
    const char *key;     /* key bytes inside the line (no quotes; ASCII in canonical lines) */
    size_t key_len;
    const char *val;     /* raw JSON value */
    size_t val_len;
};
/* Scan a flat JSON object (values are scalars). Returns the member count (<= max) or -EINVAL. */
int dvline_scan(const char *s, size_t n, struct lmember *m, size_t max);
/* The scanned member named key, or NULL. */
const struct lmember *dvline_member(const struct lmember *m, int n, const char *key);
/* Decode a JSON string value (raw, with quotes) into out; \u escapes are kept as text. */
void dvline_unquote(const char *raw, size_t len, struct buf *out);
/* A member list that owns its strings, for building and changing records. */
struct rec_member {
    char *key;
    char *val; /* raw JSON */
};
struct rec {
    struct rec_member *m;
    size_t n, cap;
};
void srec_init(struct rec *r);
void srec_release(struct rec *r);
int srec_from_line(struct rec *r, const char *line, size_t len);
/* Set (replace or add) key to the raw JSON value val; val NULL removes the member. */
int srec_set(struct rec *r, const char *key, const char *val, size_t val_len);
int srec_set_str(struct rec *r, const char *key, const char *s); /* JSON-encodes s; NULL -> null */
const char *srec_get(const struct rec *r, const char *key);
/* Canonical line: primary key first, then the rest sorted by key bytes. */
int srec_render(struct rec *r, const char *pk, struct buf *out);

/* Which annotations a request asked for (Prefer: odata.include-annotations). */
struct annot_filter {
    char patterns[8][96];
    int n;
};
void dvline_annot_parse(struct annot_filter *f, const char *value);
bool dvline_annot_match(const struct annot_filter *f, const char *name, size_t len);
/* The record projected for a response: $select columns (NULL = all) and the annotations asked
 * for; @odata.etag and the primary key always stay. */
struct projection {
    const struct table_def *t;
    const char *select[64];   /* member names */
    size_t select_len[64];
    int n_select;             /* -1 = all */
    struct annot_filter annot;
    bool all_annotations;     /* fast path: every stored annotation kind is wanted */
};
int dvline_project(const struct projection *p, const char *line, size_t len, struct buf *out);

/* Formatting used for FormattedValue annotations. */
void dvsim_fmt_money(const char *num, char *out, size_t n);        /* "$1,234.50" */
void dvsim_fmt_number(const char *num, char *out, size_t n);       /* "1,234" */
void dvsim_fmt_datetime(const char *iso, char *out, size_t n);     /* "4/7/2023 2:59 PM" */
void dvsim_fmt_dateonly(const char *iso, char *out, size_t n);     /* "4/7/2023" */
/* URL helpers */
int dvsim_url_encode(struct buf *b, const char *s, size_t n);      /* query-component encoding */
size_t dvsim_url_decode(char *s);                          /* %XX and '+' */
void dvsim_guid(uint64_t a, uint64_t b, char out[37]);
bool dvsim_guid_valid(const char *s, size_t n);
uint64_t dvsim_splitmix64(uint64_t *state);
void dvsim_iso_time(int64_t t, char out[32]);                 /* "2023-04-07T21:59:01Z" */
/* A money value in the base currency: money / exchange rate, to 2 decimals (-EINVAL: not numbers,
 * a zero rate). */
int dvsim_money_base(const char *money, const char *rate, char *out, size_t n);

/* ---- store (store.c) ---- */
struct store;
struct sqlite3;
int dvstore_open(const char *path, struct store **out, struct dverr *err);
void dvstore_free(struct store *s);
struct sqlite3 *dvstore_get(struct store *s);   /* a connection for this thread; give it back */
void dvstore_put(struct store *s, struct sqlite3 *db);
int dvstore_is_seeded(struct store *s, bool *seeded);
/* Drop and recreate every table (inside the caller's transaction). */
int dvstore_recreate(struct sqlite3 *db);
/* 1 when meta key k holds exactly v. */
int dvstore_meta_equals(struct sqlite3 *db, const char *k, const char *v);
int dvstore_errno(int rc);
/* The simulated business logic's counts of an environment (inside the caller's transaction). */
int dvstore_effects_add(struct sqlite3 *db, int env, int plugin_runs, int flow_runs);
int dvstore_effects_get(struct sqlite3 *db, int env, int64_t *plugin_runs, int64_t *flow_runs);
/* The activityparty rows of an activity: add or remove one link; every party id (caller frees
 * each and the array). */
int dvstore_party_link(struct sqlite3 *db, int env, const char *activity_id, const char *party_id,
                       bool add);
int dvstore_party_ids(struct sqlite3 *db, int env, const char *activity_id, char ***ids, size_t *n);
#define TABLE_ID_STRIDE 1024 /* more than N_TABLES + MAX_EXTRA_TABLES */
static inline int table_id(int env, int table) { return env * TABLE_ID_STRIDE + table; }

/* ---- the simulator ---- */
struct faults {
    double fail_rate, drop_rate, truncate_rate;
    int latency_ms;
    int max_requests, window_s;  /* service protection window per token */
    int max_concurrency;
    int64_t delta_token_lifetime_s;
    int64_t metadata_stamp_lifetime_s; /* RetrieveMetadataChanges version stamps */
    int64_t capacity_free_mb;    /* -1: computed */
};
/* A change to a table definition (POST /_sim/metadata): a String column added, or the table
 * deleted; metadata version at which it happened. */
struct meta_change {
    const struct table_def *table;
    char column[64];          /* "" for a deletion */
    bool deleted;
    uint64_t version;
};
/* The business-logic headers of a write (webwrite_rules.c): what a request (or a $batch part,
 * with the $batch's own headers applying to every part) asked for. */
struct bypass {
    char business_logic[40]; /* MSCRM.BypassBusinessLogicExecution, "" when absent */
    bool custom_plugins;     /* MSCRM.BypassCustomPluginExecution: true */
    bool suppress_flows;     /* MSCRM.SuppressCallbackRegistrationExpanderJob: true */
};
struct reqlog_entry {
    uint64_t seq;
    char method[8];
    char path[256];
    int status;
    double time_ms;
    char token[17];
    uint64_t bytes;
    struct bypass bypass;
    bool batch_part;      /* one request inside a $batch (listed with /_sim/requests?parts=1) */
};
#define REQLOG_CAP 65536
struct throttle_slot {
    char token[17];
    int64_t *stamps;     /* ring of accepted request times (ms), capacity max_requests */
    int cap, head, count;
    int inflight;
    int64_t blocked_until_ms;
    int64_t extra_ms;    /* grows while a blocked client keeps pushing */
};
#define THROTTLE_SLOTS 256

struct dvsim {
    /* set before the server starts, then read-only */
    char *db_path;
    char *client_id;          /* NULL: any client id */
    char *client_secret;      /* NULL: any secret */
    uint64_t seed;
    bool demo;
    int64_t records;
    bool real_shape;          /* --shape real: dvschema_extra is listed and seeded, notes follow
                               * the real proportions (seed_files.c) */
    int64_t elastic_rows;     /* --elastic-rows: rows of the elastic table in contoso-prod */
    int64_t notes;            /* --notes: notes in contoso-prod (--shape real; default --records/2) */
    int64_t attachment_max;   /* --attachment-max-bytes: the largest attachment of those notes (0: none) */
    int token_lifetime_s;
    int port;
    char base_url[256];       /* http://127.0.0.1:PORT, or --public-url */
    bool public_url;          /* base_url came from --public-url: every generated URL uses it */
    bool hostile_tables;      /* --hostile-tables: EntityDefinitions also lists dvschema_hostile */
    bool bypass_privilege_initial; /* the application user's bypass privileges at start-up
                               * (--no-bypass-privilege clears it); /_sim/reset goes back to it */
    char token_key[65];
    struct store *store;
    void *mhd;                /* struct MHD_Daemon */

    pthread_mutex_t lock;     /* guards everything below */
    struct faults faults;
    struct faults faults_initial;
    bool bypass_privilege;    /* prvBypassCustomBusinessLogic and prvBypassCustomPlugins held by
                               * the application user (/_sim/config switches it) */
    uint64_t rng;
    struct reqlog_entry *log; /* ring of REQLOG_CAP */
    uint64_t log_seq;
    struct throttle_slot slots[THROTTLE_SLOTS];
    uint64_t meta_version;    /* the definitions' version (webapi_metachanges.c), from 1 */
    uint64_t meta_epoch;      /* stamps of another epoch have expired */
    bool meta_fail;           /* RetrieveMetadataChanges answers 500 (a failing service) */
    struct meta_change *meta_changes;
    size_t n_meta_changes;
    pthread_mutex_t write_lock; /* serialises writers (versions, audits) */
};

/* Random double in [0,1) and integers from the shared generator (takes d->lock). */
double dvsim_rand(struct dvsim *d);

/* ---- requests ---- */
struct qarg {
    char *key, *val;
};
struct req {
    struct dvsim *d;
    void *conn;               /* struct MHD_Connection */
    const char *method;
    char *path;               /* decoded path */
    struct qarg args[32];
    int n_args;
    struct buf body;          /* request body */
    bool body_too_big;
    char token[17];           /* fingerprint of the bearer, "" when none */
    int env;                  /* org routes: environment index */
    /* response */
    int status;
    const char *content_type; /* static string */
    struct buf headers;       /* "Name: value\n" lines */
    struct buf out;
    bool no_faults;
    int64_t start_ms;
    /* $batch parts (webwrite_batch.c): headers come from inner_hdrs instead of the connection */
    bool inner;
    struct qarg inner_hdrs[24];
    int n_inner_hdrs;
    struct req *outer;        /* the $batch request of a part */
    struct sqlite3 *txn_db;   /* a part inside an open transaction (change set or item) */
};
const char *sreq_header(struct req *r, const char *name);
/* Every value of a header joined with ", " into out. */
void sreq_header_all(struct req *r, const char *name, struct buf *out);
const char *sreq_arg(struct req *r, const char *key);
int sreq_add_header(struct req *r, const char *name, const char *value);
/* Reply helpers: JSON error in the Dataverse shape {"error":{"code","message"}}. */
void sreply_error(struct req *r, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void sreply_json(struct req *r, int status); /* r->out already holds the body */
/* The absolute base of the request's host ("http://host:port"). */
void sreq_base(struct req *r, struct buf *out);

/* Token helpers (admin.c). resource is "" (admin API) or "/org/<uniqueName>". */
int dvsim_token_issue(struct dvsim *d, const char *resource, int64_t expires_at, struct buf *out);
int dvsim_token_check(struct dvsim *d, const char *token, char *resource, size_t n);
void dvsim_token_fingerprint(const char *token, char out[17]);

/* The business-logic headers of request r (webwrite_privileges.c): a $batch part's own, else its
 * $batch's. */
void dvsim_bypass_of(struct req *r, struct bypass *b);
/* Add one answered request to the request log (server.c). */
void dvsim_reqlog_add(struct dvsim *d, const char *method, const char *path, int status, int64_t start_ms,
                      const char *token, uint64_t bytes, const struct bypass *b, bool batch_part);

/* Route handlers. Each fills r->status / r->out / headers. */
void dvadmin_token(struct req *r, const char *tenant);
void dvadmin_route(struct req *r, const char *rest);
void webapi_route(struct req *r, const char *rest);   /* rest: after /api/data/v9.2 */
void dvsim_sim_route(struct req *r, const char *rest);

/* Writes (webwrite*.c), also used by churn and $batch. */
struct write_ctx {
    struct dvsim *d;
    struct sqlite3 *db;
    int env;
    bool audit;               /* write audit rows */
};
/* The projection a request asks for ($select, Prefer annotations); 0 or a 400 reply. ctx_sel
 * gets "(<select>)" for @odata.context. */
int webapi_projection_for(struct req *r, const struct table_def *t, struct projection *p, char *ctx_sel,
                          size_t ctx_n);
void webwrite_route(struct req *r, const struct table_def *t, const char *key, const char *sub);
void webwrite_batch(struct req *r);
/* Audit row for an operation (1 create, 2 update, 3 delete) inside the caller's transaction
 * (webwrite_rules.c). */
int dvsim_audit_write(struct write_ctx *w, const struct table_def *t, const char *id, int operation);
/* Next version of an environment (inside the caller's transaction). */
int dvstore_next_version(struct sqlite3 *db, int env, int64_t *ver);
int dvstore_put_record(struct sqlite3 *db, int tid, const char *id, int64_t ver, const char *line,
                     size_t len);
int dvstore_delete_record(struct sqlite3 *db, int tid, const char *id, int64_t ver);
/* The stored id of a row: its id, and for a row of an elastic table in a partition
 * (partition not NULL and not empty) <id>:<16 hex digits of the partition's FNV-1a hash>, so that
 * (id, partitionid) is unique, the rows of one id stay together in id order and every stored id
 * fits DVSTORE_ID_MAX (a partitionid may not hold ':', webwrite.c). */
#define DVSTORE_ID_MAX 64
void dvstore_row_id(const char *id, const char *partition, char out[DVSTORE_ID_MAX]);
/* The length of the row's id within a stored id (what the API shows as the primary key). */
size_t dvstore_id_len(const char *stored_id);
/* Current live line (caller frees *line) or -ENOENT. */
int dvstore_get_record(struct sqlite3 *db, int tid, const char *id, char **line, size_t *len);
int dvstore_begin(struct sqlite3 *db);
int dvstore_commit(struct sqlite3 *db);
void dvstore_rollback(struct sqlite3 *db);

/* Seed (seed*.c): fill an empty store deterministically. DVSIM_TENANT_VERSION names the shape of
 * the tenant: a database seeded with another is seeded again. */
#define DVSIM_TENANT_VERSION "tenant-3"
int dvsim_base64(const unsigned char *in, size_t n, struct buf *out);
/* The thumbnail the service derives from a full image (a function of its bytes only). */
int dvsim_image_thumbnail(const void *full, size_t n, struct buf *out);
/* The id of business unit, team or currency k of an environment (0: the root business unit, the
 * base currency). */
void dvseed_principal_id(struct dvsim *d, int env, int table, int k, char out[37]);
/* One new record of `table` in the style of the seed (used by churn). Lookups point at seeded
 * records. The line is not stored; file and image columns get their bytes stored. */
int dvseed_create_record(struct dvsim *d, struct sqlite3 *db, int env, int table, uint64_t index,
                         struct buf *line, char id[37]);
/* The FormattedValue text of a raw column value; 1 when there is one, else 0. */
int dvsim_format_value(const struct col_def *c, const char *raw, size_t len, char *out, size_t n);
int dvseed_tenant(struct dvsim *d, struct dverr *err);
/* What meta "seeded" holds for d's seed, size and shape (a database holding another is reseeded). */
void dvseed_marker(const struct dvsim *d, char *out, size_t n);
/* Churn (sim.c). only_table: a table index, or -1 for every user table; delete_fraction >= 0:
 * delete that fraction of each table and change nothing else (a mass delete), else the usual
 * mix of about `fraction`. */
int dvsim_churn(struct dvsim *d, int env, double fraction, uint64_t seed, int only_table,
                double delete_fraction, struct buf *report, struct dverr *err);
/* Build a record update on rec (modifiedon, versionnumber, etag) for version ver; a create also
 * gets createdon (overriddencreatedon's value when the record carries one). */
void srec_stamp(struct rec *rec, const struct table_def *t, int64_t ver, int64_t when, bool create);

/* Server (server.c) */
int dvsim_server_start(struct dvsim *d, const char *host, int port, struct dverr *err);
void dvsim_server_stop(struct dvsim *d);

#endif
