/* config: dvsnap's configuration (README, "Configuration").
 *
 * Source: --config FILE, else $DVSNAP_CONFIG, else $XDG_CONFIG_HOME/dvsnap/config
 * (XDG_CONFIG_HOME defaults to ~/.config), else the system-wide /etc/dvsnap/config (for services;
 * $DVSNAP_SYSTEM_CONFIG names another path, for tests); when none of the default files exists the
 * defaults apply. One
 * "key = value" per line, '#' starts a comment; every key can be overridden by the environment
 * variable DVSNAP_<KEY> (upper case). A leading "~/" in path values expands to $HOME. Unknown keys
 * are an error (typos must not silently change behaviour). Default directories follow the XDG base
 * directories: cache_dir $XDG_CACHE_HOME/dvsnap, repository $XDG_DATA_HOME/dvsnap/repo, state_dir
 * $XDG_STATE_HOME/dvsnap, client_secret_file $XDG_CONFIG_HOME/dvsnap/secret (a variable that is
 * unset or not an absolute path counts as its default: ~/.cache, ~/.local/share, ~/.local/state,
 * ~/.config).
 *
 * No key holds a secret: secrets are never part of struct config, they are read on demand by
 * config_read_secret_file from files that must be mode 0600 (or stricter) and owned by the caller.
 * So the configuration file may be readable by others (0644), but it is refused when group or
 * others may write it, or when another user (root excepted) owns it: it names where the secret
 * is sent. URL keys (admin_url, token_url, endpoints) must be https, except loopback hosts; the
 * two instance-metadata keys also accept http:// to the metadata address (util.h).
 *
 * Retention (backend/engine/retention.h applies it): keep_daily, keep_weekly, keep_monthly,
 * keep_yearly (a count, or "all"), keep_within (a duration, 0 none) and keep_manual ("all",
 * "platform" or a duration) hold for every environment; "retention.<env>.<key> = value" overrides
 * one of them for one environment (file only: no DVSNAP_ variable names an environment). */
#ifndef DVSNAP_CONFIG_H
#define DVSNAP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

/* Retention rules (one environment's overrides, or the rules for all). */
#define CONFIG_KEEP_ALL INT32_MAX        /* keep_daily... = all */
#define CONFIG_KEEP_MANUAL_ALL (-1)      /* keep_manual = all: until forgotten */
#define CONFIG_KEEP_MANUAL_PLATFORM (-2) /* keep_manual = platform: like system points */
struct config_retention {
    char *env;                /* NULL: every environment */
    int keep_daily, keep_weekly, keep_monthly, keep_yearly; /* points, or CONFIG_KEEP_ALL */
    int64_t keep_within;      /* seconds (0: none) before the environment's newest point */
    int64_t keep_manual;      /* seconds, or CONFIG_KEEP_MANUAL_ALL / _PLATFORM */
    unsigned set;             /* bit i: the i-th of those six keys was given (overrides only) */
};

struct config {
    char *path;               /* the file read, or NULL when none existed */
    char *admin_url;          /* default https://api.bap.microsoft.com */
    char *token_url;          /* https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token */
    char *client_id;
    char *client_secret_file; /* default ~/.config/dvsnap/secret */
    char *repository;         /* default ~/.local/share/dvsnap/repo; or azure://, s3:// */
    char *cache_dir;          /* default ~/.cache/dvsnap */
    uint64_t cache_size;      /* default 2G */
    int64_t capture_every;    /* seconds; default 900 (15m) */
    char **environments;      /* NULL-terminated list of unique names, or {"*", NULL} */
    char **tables_include;    /* NULL-terminated glob patterns of the tables to back up, or NULL
                                 (all) */
    char **tables_exclude;    /* NULL-terminated glob patterns of the tables never backed up, or
                                 NULL (none) */
    int max_concurrency;      /* requests in flight per environment; default 4 */
    int log_level;            /* 0 error .. 3 debug; default 1 (warn) */
    /* object stores (issue 6): endpoint overrides and credential files, NULL when unset */
    char *azure_endpoint;     /* e.g. http://127.0.0.1:10000/devstoreaccount1 for Azurite */
    char *azure_key_file;     /* Shared Key (base64) or SAS token file, mode 0600 */
    char *s3_endpoint;        /* e.g. http://127.0.0.1:9000 */
    char *s3_region;          /* default us-east-1 */
    char *s3_credentials_file;/* "access_key_id secret_access_key" file, mode 0600 */
    /* HTTP transport (helper net) */
    int http_timeout;         /* seconds for one whole request; default 300 */
    int http_retries;         /* attempts per request including the first; default 8 */
    char *ca_file;            /* extra CA bundle (PEM) to trust, or NULL for the system store */
    char *admin_resource;     /* token audience of the admin API; NULL: admin_url, except
                                 https://service.powerapps.com for *.api.bap.microsoft.com */
    /* retention (issue 17): the rules for every environment, then per-environment overrides */
    struct config_retention retention;
    struct config_retention *retention_envs;
    size_t n_retention_envs;
    /* mass-delete alerts (issue 17, backend/engine/anomaly.h) */
    double anomaly_delete_percent; /* flag a pass that deletes more than this % of a table; 0 off */
    int anomaly_min_rows;     /* ... of a table that had at least this many rows; default 1000 */
    int64_t anomaly_hold;     /* seconds the point before an anomaly is held; default 30d, 0 none */
    char *notify_command;     /* run by /bin/sh -c with the JSON summary on stdin; NULL: none */
    /* health (issue 18): the state kept per environment, staleness, Prometheus metrics */
    char *state_dir;          /* default $XDG_STATE_HOME/dvsnap: per-environment capture records */
    int64_t stale_after;      /* seconds; default (unset) 2 * capture_every */
    char *metrics_file;       /* Prometheus text file written after each capture pass, or NULL */
    char *metrics_listen;     /* "HOST:PORT" the mount serves /metrics on, or NULL */
    /* object-store credentials without a key file (issue 18) */
    char *azure_auth;         /* "key" (default), "managed-identity" or "workload-identity" */
    char *azure_identity_endpoint;    /* token endpoint; NULL: the platform's (objstore_azure.c) */
    char *azure_client_id;            /* user-assigned identity, or the workload identity's app;
                                         NULL: $AZURE_CLIENT_ID */
    char *azure_federated_token_file; /* workload identity; NULL: $AZURE_FEDERATED_TOKEN_FILE */
    char *s3_auth;            /* "key" (default) or "instance-profile" */
    char *aws_metadata_endpoint; /* instance metadata (IMDSv2); default http://169.254.169.254 */
    /* the repository's passphrase (issue 16): a file (mode 0600, read as a secret file) or a
     * command whose standard output it is; at most one; NULL when unset */
    char *password_file;
    char *password_command;   /* run with /bin/sh -c */
    /* ransomware protection (issue 16; README "Append-only, locked repositories"): append_only
     * "true" makes capture and backup create objects and never delete or overwrite one, and prune,
     * forget and erase use the prune credentials below; object_lock "governance" or "compliance"
     * sets S3 Object Lock retention / Azure blob immutability from each point's expires_at */
    char *append_only;        /* "false" (default) or "true": config_append_only() */
    char *object_lock;        /* "off" (default), "governance" or "compliance": config_object_lock() */
    char *s3_prune_credentials_file; /* the delete-capable key pair, used by prune/forget/erase */
    char *azure_prune_key_file;      /* the same for Azure (Shared Key or SAS with delete) */
    uint64_t set_keys;        /* bit i: key i of config.c's table was given (file or env) */
};

/* Load the configuration. path may be NULL (then $DVSNAP_CONFIG, then the default path; a missing
 * default file is not an error: defaults apply). 0 or -errno with detail in err. */
int config_load(const char *path, struct config **out, struct dverr *err);
void config_free(struct config *cfg); /* accepts NULL */
/* The retention rules of env: the rules for all, with env's overrides applied. */
void config_retention_for(const struct config *cfg, const char *env,
                          struct config_retention *out);
/* append_only = true. */
bool config_append_only(const struct config *cfg);
/* object_lock: 0 off, 1 governance, 2 compliance. */
#define CONFIG_LOCK_OFF 0
#define CONFIG_LOCK_GOVERNANCE 1
#define CONFIG_LOCK_COMPLIANCE 2
int config_object_lock(const struct config *cfg);
/* true when key (e.g. "http_retries") was given in the file or by DVSNAP_<KEY>, not defaulted. */
bool config_key_set(const struct config *cfg, const char *key);
/* The default configuration file: $XDG_CONFIG_HOME/dvsnap/config, or the system-wide one when that
 * does not exist (what config_load reads without --config or $DVSNAP_CONFIG), into out[n]. */
void config_default_path(char *out, size_t n);
/* true when unique_name is selected by the "environments" key. */
bool config_env_selected(const struct config *cfg, const char *unique_name);
/* true when the table is backed up: it matches a tables_include pattern (when set) and no
 * tables_exclude pattern (glob patterns, fnmatch, case-insensitive, on logical names). */
bool config_table_selected(const struct config *cfg, const char *logical_name);
/* Read a secret file into out (trailing newline stripped). Refuses (-EPERM, clear message) when the
 * file is a symlink, not a regular file, readable or writable by group or others, or not owned by
 * the caller. */
int config_read_secret_file(const char *path, struct buf *out, struct dverr *err);

#endif
