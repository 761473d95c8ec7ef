/* dataverse: clients for the Power Platform admin API (environments, administration mode, tenant
 * capacity) and each environment's Dataverse Web API (table definitions, paged and change-tracked
 * reads, file columns, writes and $batch). Protocol facts: docs/architecture.md section 5 and the README.
 *
 * Everything goes through the HTTP transport (http.h) with its shared retry policy (429/503 honour
 * Retry-After, other transient failures back off with jitter, bounded attempts). Tokens come from
 * the client-credentials flow, one per resource (admin API, each org), cached and refreshed before
 * expiry; a token is only sent to URLs on its own resource's origin, so a nextLink or deltaLink
 * that points elsewhere is refused (-EPERM).
 *
 * Threading: struct dv_client is thread-safe; any thread may call any function. Internally each
 * request uses a CURL handle that no other thread uses at the same time.
 * Errors: 0 or -errno with detail in err: -EACCES (401/403), -ENOENT (404), -ESTALE (expired
 * change-tracking token: do a full read), -EPERM (URL policy), -EPROTO (malformed response),
 * -ETIMEDOUT, -EIO (anything else after retries). */
#ifndef DVSNAP_DATAVERSE_H
#define DVSNAP_DATAVERSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/config.h"
#include "backend/base/json.h"
#include "backend/base/util.h"

struct dv_client;
struct http_transport; /* http.h */

/* A GET answered 200 with JSON that does not parse (cut short by a proxy or the service, framing
 * intact) is asked for again this many times before the read fails with -EPROTO. */
#define DV_BAD_BODY_RETRIES 4

/* The column that partitions an elastic table (dv_table.is_elastic): its rows are unique by id
 * and this column, and a write or delete of a row names both. */
#define DV_PARTITION_COLUMN "partitionid"

/* Build a client from the configuration (reads the secret file through config_read_secret_file). */
int dv_client_new(const struct config *cfg, struct dv_client **out, struct dverr *err);
/* Same on a given transport (tests script a fake one). Takes ownership of transport. */
int dv_client_new_with_transport(const struct config *cfg, struct http_transport *transport,
                                 struct dv_client **out, struct dverr *err);
void dv_client_free(struct dv_client *c); /* accepts NULL */
/* Stop every retry wait of this client at once (from a signal handler's thread or another
 * thread): calls that are waiting to retry return -ECANCELED within ~50 ms; calls in flight end
 * by their own time-outs. Async-signal-safe (one atomic store). */
void dv_client_cancel(struct dv_client *c);

/* Counters since dv_client_new (for progress and benchmarks). */
struct dv_stats {
    uint64_t requests;   /* HTTP requests sent, retries included */
    uint64_t retries;    /* requests repeated after 429/503/transient failures */
    uint64_t throttled;  /* 429 answers */
    uint64_t bytes_in;   /* response body bytes */
};
void dv_client_stats(struct dv_client *c, struct dv_stats *out);

/* true for a GUID "8-4-4-4-12" hex string (NULL: false). */
bool dv_guid_valid(const char *s);

/* ---- admin API ---- */
struct dv_env {
    char *id;             /* admin API name (a GUID) */
    char *unique_name;    /* linkedEnvironmentMetadata.uniqueName: the mount's directory name */
    char *display_name;
    char *sku;            /* environmentSku: Production, Sandbox, Trial, Developer, Default, ... */
    char *geo;            /* location, e.g. "unitedstates" */
    char *region;         /* azureRegion, e.g. "westus" */
    char *api_url;        /* linkedEnvironmentMetadata.instanceApiUrl, no trailing slash */
    char *tenant_id;
    char *runtime_state;  /* states.runtime.id: Enabled, AdminMode, Disabled, ... */
    int retention_days;   /* retentionDetails.retentionPeriod "P<n>D"; 0 when absent */
    bool is_default;      /* isDefault or sku Default */
    bool has_d365_apps;   /* a linkedEnvironmentMetadata.templates entry starting "D365_" */
    char *raw_json;       /* the admin API object as received (for environment.json) */
};
/* Every environment the admin API lists. The array and its strings are owned by the caller. */
int dv_env_list(struct dv_client *c, struct dv_env **envs, size_t *n, struct dverr *err);
/* One environment by unique name (-ENOENT when not listed). */
int dv_env_get(struct dv_client *c, const char *unique_name, struct dv_env *env, struct dverr *err);
/* One environment from its admin API document as dv_env_list reads it (what the repository keeps
 * as envs/<env>.json): the same fields, parsed the same way. 0; 1 when it has no Dataverse (env
 * left empty); -EPROTO when it is no environment; -errno. Release with dv_env_release. */
int dv_env_from_json(const char *json, size_t len, struct dv_env *env);
void dv_env_release(struct dv_env *env);
void dv_env_list_free(struct dv_env *envs, size_t n);
/* Set states.runtime.id ("AdminMode" or "Enabled"). */
int dv_env_set_runtime_state(struct dv_client *c, const struct dv_env *env, const char *state,
                             struct dverr *err);
/* Free database capacity of the tenant in MB. */
int dv_tenant_free_capacity_mb(struct dv_client *c, const char *tenant_id, int64_t *free_mb,
                               struct dverr *err);

/* ---- table definitions ---- */
struct dv_attribute {
    char *logical_name;
    char *type;              /* AttributeType: String, Integer, BigInt, Money, Decimal, DateTime,
                                Picklist, Lookup, Customer, Owner, Uniqueidentifier, File, Image,
                                ...; a column the service describes as Virtual with
                                AttributeTypeName FileType or ImageType is File or Image here */
    char **targets;          /* lookups: the tables of Targets, else NULL */
    size_t n_targets;
    bool valid_for_create, valid_for_update, valid_for_read;
    bool is_primary_id;
    bool is_primary_image;   /* IsPrimaryImage (the one image a create may carry) */
};
/* A lookup column and one table it may point at: one per many-to-one relationship. A
 * relationship to an abstract table (ownerid's ReferencedEntity "owner", whose set cannot be
 * bound) becomes one lookup per table of the attribute's Targets, each with the relationship's
 * navigation property ("ownerid@odata.bind": "/systemusers(..)" or "/teams(..)"). */
struct dv_lookup {
    char *attribute;         /* referencing attribute, e.g. "parentcustomerid" (record: _x_value) */
    char *nav_property;      /* single-valued navigation property for @odata.bind */
    char *target_table;      /* referenced logical name */
    char *target_set;        /* referenced entity set name */
};
struct dv_many_to_many {
    char *schema_name;
    char *intersect_table;   /* logical name of the intersect table */
    char *entity1, *entity1_attr, *entity1_nav;
    char *entity2, *entity2_attr, *entity2_nav;
};
/* OwnershipType: who owns a table's rows. */
enum dv_ownership {
    DV_OWNERSHIP_UNKNOWN = 0, /* not in the definition */
    DV_OWNERSHIP_NONE,        /* "None": audit, activityparty, activitypointer, intersects */
    DV_OWNERSHIP_USER,        /* "UserOwned": rows owned by a user or team */
    DV_OWNERSHIP_BUSINESS,    /* "BusinessOwned": systemuser, team, businessunit */
    DV_OWNERSHIP_ORGANIZATION /* "OrganizationOwned": currencies and other configuration */
};
struct dv_table {
    char *logical_name;
    char *metadata_id;       /* MetadataId (a GUID), or NULL */
    char *entity_set;
    char *primary_id;        /* primary key attribute */
    char *primary_name;
    bool change_tracking;    /* ChangeTrackingEnabled */
    bool is_intersect;       /* IsIntersect (N:N table; written through $ref, not directly) */
    bool read_only;          /* audits and other tables the API does not let us write */
    bool is_custom;          /* IsCustomEntity */
    bool is_activity;        /* IsActivity (email, task, ...; TableType "Activity") */
    bool is_virtual;         /* TableType "Virtual" (or, without TableType, a DataProviderId): its
                                rows live in an external system; a backup never reads it */
    bool is_elastic;         /* TableType "Elastic": rows carry partitionid, and a write or delete
                                names it (<set>(<id>)?partitionId=<partitionid>) */
    char *data_provider_id;  /* DataProviderId of a virtual table, else NULL */
    enum dv_ownership ownership;
    struct dv_attribute *attrs; size_t n_attrs;
    struct dv_lookup *lookups; size_t n_lookups;
    struct dv_many_to_many *many_to_many; size_t n_many_to_many;
    char *schema_json;       /* canonical JSON of the whole definition: schema/<table>.json */
    char *definition_error;  /* why the definition is incomplete (its relationships could not be
                                read; schema_json is then NULL), or NULL */
};
/* All tables of the environment with attributes and relationships (EntityDefinitions, narrowed
 * with $select to what dvsnap uses; the list is linked: dv_tables_link). */
int dv_tables_list(struct dv_client *c, const struct dv_env *env, struct dv_table **tables,
                   size_t *n, struct dverr *err);
void dv_tables_free(struct dv_table *tables, size_t n);
/* One table's definition, as dv_tables_list reads it (not linked); -ENOENT when the table is no
 * longer defined. */
int dv_table_get(struct dv_client *c, const struct dv_env *env, const char *logical_name,
                 struct dv_table *out, struct dverr *err);
/* A table from its schema document (schema_json as dv_tables_list made it; not linked). */
int dv_table_from_schema(const char *schema_json, size_t len, struct dv_table *out,
                         struct dverr *err);
void dv_table_release(struct dv_table *t); /* the fields of one table, not t itself */
/* Link tables gathered one by one into a list as dv_tables_list leaves it: an abstract lookup
 * (ownerid's "owner") made one lookup per target, each lookup's target entity set filled in, the
 * list sorted by logical name. */
int dv_tables_link(struct dv_table *tables, size_t n);

/* What changed in the table definitions since an earlier answer (RetrieveMetadataChanges, with
 * a query for the properties dv_tables_list selects). */
struct dv_metadata_changes {
    char *stamp;             /* ServerVersionStamp: the client_stamp of the next call */
    char **changed;          /* logical names of the tables added or changed (some of their
                                properties, columns or relationships) */
    size_t n_changed;
    char **deleted_ids;      /* MetadataIds (lower case) of tables, columns and relationships
                                deleted, many of them of no interest to the caller */
    size_t n_deleted_ids;
};
/* client_stamp NULL: only *stamp is of use (every table is listed in changed). -ESTALE when the
 * service says the stamp has expired (ExpiredVersionStamp, 0x80044352): read every definition
 * again. */
int dv_metadata_changes(struct dv_client *c, const struct dv_env *env, const char *client_stamp,
                        struct dv_metadata_changes *out, struct dverr *err);
void dv_metadata_changes_release(struct dv_metadata_changes *m);

/* ---- reads ---- */
struct dv_read_cb {
    /* One record of a page or a delta (created or updated; the API does not say which). The node
     * and its strings live until the callback returns. Non-zero return stops the read and is
     * returned as is. */
    int (*record)(void *ctx, const struct json_node *record);
    /* A $deletedEntity row of a delta: the id of the deleted record. */
    int (*deleted)(void *ctx, const char *id);
    void *ctx;
};
struct dv_read_stats {
    uint64_t pages, records, deleted;
};
/* Read a table. delta_link NULL: a full read (Prefer: odata.track-changes when the table has
 * change tracking and new_delta_link is given: NULL reads untracked); else GET that delta link.
 * Pages of up to 5000 (odata.maxpagesize), formatted values and lookup names included
 * (odata.include-annotations). On success *new_delta_link is the final @odata.deltaLink (caller
 * frees; NULL for tables without change tracking).
 * -ESTALE when the delta token has expired. */
int dv_read_table(struct dv_client *c, const struct dv_env *env, const struct dv_table *table,
                  const char *delta_link, const struct dv_read_cb *cb, char **new_delta_link,
                  struct dv_read_stats *stats, struct dverr *err);

/* A full read narrowed, for reading a large table in parallel (capture_ranges.c):
 *   keys_only   $select=<primary key> only; when the table is tracked, the read is tracked and
 *               its delta link comes back without the $select (the link of the table's whole
 *               rows: the token is the table's position, $select only narrows the columns);
 *   key_from/to the records whose primary key is in [key_from, key_to) by the service's order
 *               ($filter=<pk> ge key_from and <pk> lt key_to; either bound may be NULL; GUIDs
 *               only, else -EINVAL); such a read is never tracked (the service refuses $filter
 *               with change tracking);
 *   page_size   records a page (0: the usual 5000, or 10 for tables with files inline): several
 *               ranges read at once hold a page each. */
struct dv_read_query {
    bool keys_only;
    const char *key_from, *key_to;
    int page_size;
};
/* dv_read_table with q (NULL: the whole table) for a full read (delta_link NULL). */
int dv_read_table_query(struct dv_client *c, const struct dv_env *env,
                        const struct dv_table *table, const char *delta_link,
                        const struct dv_read_query *q, const struct dv_read_cb *cb,
                        char **new_delta_link, struct dv_read_stats *stats, struct dverr *err);

/* Download a file or image column's bytes (GET <set>(<id>)/<column>/$value, Range chunks of
 * 4 MiB). full_image: an image column at full size ($value?size=full; without it the service
 * sends the thumbnail). on_data gets the bytes in order; *file_name (caller frees) from
 * x-ms-file-name. */
int dv_file_download(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                     const char *id, const char *column, bool full_image,
                     int (*on_data)(void *ctx, const void *data, size_t len), void *ctx,
                     char **file_name, struct dverr *err);
/* Upload a file or image column's bytes: one PATCH <set>(<id>)/<column> with x-ms-file-name up
 * to 4 MiB, a chunked upload session (x-ms-transfer-mode: chunked, Content-Range parts) above.
 * headers: extra "Name: value" lines for every request of the upload (NULL-terminated, or
 * NULL), e.g. the business-logic bypass. */
int dv_file_upload(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                   const char *id, const char *column, const char *file_name, const void *data,
                   size_t len, const char *const *headers, struct dverr *err);

/* Rows of a table with only the named columns: GET <set>?$select=<select> (a comma-separated
 * list of plain names), pages followed, lookup names included. For small tables read whole
 * (users, teams, business units, currencies); no change tracking. */
int dv_read_select(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                   const char *select, const struct dv_read_cb *cb, struct dverr *err);

/* ---- the caller and its privileges ---- */
struct dv_whoami {
    char user_id[40], business_unit_id[40]; /* GUIDs */
};
/* GET WhoAmI: the user (for a client-credentials token, the application user) the calls run as. */
int dv_whoami(struct dv_client *c, const struct dv_env *env, struct dv_whoami *out,
              struct dverr *err);
/* Whether user_id holds privilege (a name such as "prvBypassCustomBusinessLogic") through its
 * roles: GET systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges(). */
int dv_user_has_privilege(struct dv_client *c, const struct dv_env *env, const char *user_id,
                          const char *privilege, bool *has, struct dverr *err);

/* ---- writes ---- */
struct dv_response {
    long status;
    struct buf body;         /* caller releases */
};
/* One request to the environment's Web API. path is relative to <api_url>/api/data/v9.2/
 * (e.g. "accounts(<guid>)"); body may be NULL; headers is a NULL-terminated list of
 * "Name: value" lines or NULL. HTTP errors are not failures here: 0 with resp->status set;
 * only transport failures (after retries) return -errno. */
int dv_request(struct dv_client *c, const struct dv_env *env, const char *method, const char *path,
               const char *body, const char *const *headers, struct dv_response *resp,
               struct dverr *err);

struct dv_batch_item {
    const char *method;      /* GET, POST, PATCH, DELETE */
    const char *path;        /* relative to .../api/data/v9.2/ */
    const char *body;        /* JSON or NULL */
    const char *if_match;    /* NULL or "*" or an ETag */
    const char *if_none_match;
    const char *const *headers; /* extra "Name: value" lines of this part (NULL-terminated), or
                                   NULL */
    int status;              /* out: the part's HTTP status; 0 when not executed */
    char *response;          /* out: the part's body (caller frees), may be NULL */
};
/* Send up to 1000 items as one $batch (no change set); the service runs them in order.
 * continue_on_error sends Prefer: odata.continue-on-error; without it the service stops at the
 * first failure and the items after it keep status 0. headers: extra "Name: value" lines of the
 * outer request (NULL-terminated, or NULL). A 200 batch can hold failures: read every item's
 * status. */
int dv_batch(struct dv_client *c, const struct dv_env *env, struct dv_batch_item *items, size_t n,
             bool continue_on_error, const char *const *headers, struct dverr *err);
void dv_batch_items_release(struct dv_batch_item *items, size_t n); /* frees the out fields */

#endif
