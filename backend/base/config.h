/* config: dvsnap's configuration (DESIGN.md section 11).
 *
 * Source: --config FILE, else $DVSNAP_CONFIG, else ~/.config/dvsnap/config. One "key = value" per
 * line, '#' starts a comment; every key can be overridden by the environment variable
 * DVSNAP_<KEY> (upper case). A leading "~/" in path values expands to $HOME. Unknown keys are an
 * error (typos must not silently change behaviour). The secret is never part of struct config: it
 * is read on demand by config_read_secret from a file that must be mode 0600 (or stricter) and
 * owned by the caller.
 *
 * The configuration file itself is refused when it is writable by group or others or readable by
 * others, or owned by another user (root excepted): it names where the secret is sent.
 * URL keys (admin_url, token_url, endpoints) must be https, except loopback hosts.
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
};

/* Load the configuration. path may be NULL (then $DVSNAP_CONFIG, then the default path; a missing
 * default file is not an error: defaults apply). 0 or -errno with detail in err. */
int config_load(const char *path, struct config **out, struct dverr *err);
void config_free(struct config *cfg); /* accepts NULL */
/* The retention rules of env: the rules for all, with env's overrides applied. */
void config_retention_for(const struct config *cfg, const char *env,
                          struct config_retention *out);
/* true when unique_name is selected by the "environments" key. */
bool config_env_selected(const struct config *cfg, const char *unique_name);
/* Read a secret file into out (trailing newline stripped). Refuses (-EPERM, clear message) when the
 * file is a symlink, not a regular file, readable or writable by group or others, or not owned by
 * the caller. */
int config_read_secret_file(const char *path, struct buf *out, struct dverr *err);

#endif
