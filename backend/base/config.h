/* config: dvsnap's configuration (README, "Configuration").
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
 * URL keys (admin_url, token_url, endpoints) must be https, except loopback hosts. */
#ifndef DVSNAP_CONFIG_H
#define DVSNAP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/util.h"

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
};

/* Load the configuration. path may be NULL (then $DVSNAP_CONFIG, then the default path; a missing
 * default file is not an error: defaults apply). 0 or -errno with detail in err. */
int config_load(const char *path, struct config **out, struct dverr *err);
void config_free(struct config *cfg); /* accepts NULL */
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
