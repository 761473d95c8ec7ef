/* dataverse_int: declarations shared by dataverse.c (client, requests, admin API),
 * dataverse_webapi.c (definitions, reads, the caller, single requests), dataverse_files.c (file
 * and image columns) and dataverse_batch.c. Not part of the contract; only these files include
 * it. */
#ifndef DVSNAP_DATAVERSE_INT_H
#define DVSNAP_DATAVERSE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend/net/auth.h"
#include "backend/dataverse/dataverse.h"
#include "backend/net/http.h"

#define DV_API_PATH "/api/data/v9.2/"

struct dv_client {
    char *admin_url;                 /* no trailing slash; immutable */
    char *admin_scope;               /* token resource of the admin API; immutable */
    struct http_transport *transport;
    struct auth *auth;
    struct http_retry retry;         /* immutable; hold_until_ms points at hold_until below */
    struct http_counters counters;   /* atomics */
    atomic_int_fast64_t hold_until;  /* shared Retry-After gate */
    atomic_int cancel;
    /* At most max_concurrency requests in flight per resource (admin API, each environment),
     * whatever the number of calling threads. */
    int max_concurrency;
    pthread_mutex_t slots_lock;      /* guards slots and every slot's in_flight */
    pthread_cond_t slots_free;
    struct dv_slot {
        struct dv_slot *next;
        char *resource;
        int in_flight;
        int peak;                    /* highest in_flight seen (tests) */
    } *slots;
};
/* Highest number of requests that were in flight at once for resource (tests). */
int dv_client_peak_concurrency(struct dv_client *c, const char *resource);

/* One call with the client's policies: the URL must lie within resource (http_url_within), else
 * -EPERM and nothing is sent; the bearer for resource is attached; a 401 drops the token and
 * retries once with a fresh one. 0 when any response arrived (check resp->status). */
struct dv_call {
    const char *method;
    const char *url;
    const char *resource;            /* where the bearer may go: admin_url or env->api_url */
    const char *token_resource;      /* audience of the token when it differs, else NULL */
    const char *const *headers;      /* extra headers, NULL-terminated, or NULL */
    const char *body;
    size_t body_len;
    bool retry_unsafe;
    uint64_t max_response;           /* 0: 256 MiB */
    /* When set (GET only): a 200 body is parsed into *json (caller frees). A 200 whose JSON does
     * not parse (cut short with valid framing by a proxy or the service) is fetched again, up to
     * DV_BAD_BODY_RETRIES times, then dv_call fails with -EPROTO "<what>: malformed JSON". */
    struct json_doc **json;
    const char *what;                /* names the request in that error */
};
int dv_call(struct dv_client *c, const struct dv_call *call, struct http_response *resp,
            struct dverr *err);

/* err <- "<what>: HTTP <status>: <service error code and message>"; returns the mapped -errno
 * (http_status_to_errno). */
int dv_status_error(const struct http_response *resp, const char *what, struct dverr *err);
/* The service's error message (error.message) of a response body, escaped, into out. */
void dv_error_message(const struct http_response *resp, char *out, size_t n);

/* GET url with the Web API's headers (or the given ones); with json set, a 200 body is parsed
 * into *json (see struct dv_call). max caps the response. */
int dv_webapi_get(struct dv_client *c, const struct dv_env *env, const char *url,
                  const char *const *headers, uint64_t max, struct json_doc **json,
                  const char *what, struct http_response *resp, struct dverr *err);

/* base then extra (both NULL-terminated; extra may be NULL) in a new array (caller frees), or
 * NULL when out of memory: a request's own headers and the caller's extra ones. */
const char **dv_headers_join(const char *const *base, const char *const *extra);

/* true for names safe to put into a URL path unencoded: [A-Za-z0-9_.-], 1..128 bytes. */
bool dv_name_safe(const char *s);
/* "<env->api_url>/api/data/v9.2/<path>" into out. -EINVAL when the env has no API URL. */
int dv_api_url(const struct dv_env *env, const char *path, struct buf *out, struct dverr *err);

/* strdup of a member string, NULL when absent (never fails silently: -ENOMEM via *rc). */
char *dv_dup_str(const struct json_node *obj, const char *key, int *rc);
/* A bool that may be plain or a managed property {"Value": bool}. */
bool dv_get_flag(const struct json_node *obj, const char *key, bool dflt);

/* What dvsnap uses of a definition, and nothing more ($select; MetadataId always comes too).
 * Lookup Targets and IsPrimaryImage live on derived attribute types, which a $select of the
 * Attributes collection cannot name: an Owner column's targets are the user and team tables, and
 * the primary image is the table's PrimaryImageAttribute. The change query of
 * dv_metadata_changes asks for the same properties, so a change to any of them is reported. */
#define ENTITY_PROPS                                                                          \
    "MetadataId,LogicalName,EntitySetName,PrimaryIdAttribute,PrimaryNameAttribute,"          \
    "PrimaryImageAttribute,ChangeTrackingEnabled,IsIntersect,IsCustomEntity,IsActivity,"     \
    "TableType,OwnershipType,DataProviderId"
#define ATTR_PROPS                                                                            \
    "MetadataId,LogicalName,AttributeType,AttributeTypeName,IsValidForCreate,"               \
    "IsValidForUpdate,IsValidForRead,IsPrimaryId"
#define M2O_PROPS                                                                             \
    "MetadataId,SchemaName,ReferencingAttribute,ReferencingEntity,"                          \
    "ReferencingEntityNavigationPropertyName,ReferencedEntity"
/* a many-to-many relationship's own properties (the change query lists them after M2O_PROPS) */
#define N2N_OWN_PROPS                                                                         \
    "IntersectEntityName,Entity1LogicalName,Entity1IntersectAttribute,"                      \
    "Entity1NavigationPropertyName,Entity2LogicalName,Entity2IntersectAttribute,"            \
    "Entity2NavigationPropertyName"
#define N2N_PROPS "MetadataId,SchemaName," N2N_OWN_PROPS
#define DEFS_EXPAND_ATTRS "Attributes($select=" ATTR_PROPS ")"
#define DEFS_EXPAND_ALL                                                                       \
    DEFS_EXPAND_ATTRS ",ManyToOneRelationships($select=" M2O_PROPS                            \
    "),ManyToManyRelationships($select=" N2N_PROPS ")"

#endif
