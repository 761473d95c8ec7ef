/* config: load dvsnap's configuration (see config.h).
 *
 * A table of keys drives parsing, the DVSNAP_<KEY> overrides, defaults and validation, so a key
 * added to the table is known everywhere at once. Values: "key = value", a '#' at the start of a
 * line or after whitespace starts a comment, a value may be wrapped in double quotes (then '#'
 * inside is kept). Lines are capped at 4 KiB and the file at 1 MiB.
 * Thread-safe: config_load touches no shared state (getenv only). */
#include "backend/base/config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#define CONFIG_MAX_FILE (1u << 20)
#define CONFIG_MAX_LINE 4096
#define SECRET_MAX (64u << 10)

/* K_METADATA_URL: a K_URL that may also be http:// to the instance-metadata address; K_CHOICE: a
 * K_STR that must be one of the key's choices; K_LISTEN: "HOST:PORT" with a numeric port; K_KEEP,
 * K_SPAN, K_MANUAL, K_PERCENT: retention and anomaly values (a count or "all"; a duration or 0;
 * "all", "platform" or a duration; a percentage); K_PATTERNS: a list like K_ENVS that may be
 * empty (unset). */
enum key_kind { K_STR, K_PATH, K_URL, K_SIZE, K_DURATION, K_INT, K_LEVEL, K_ENVS, K_PATTERNS,
                K_LOCATION, K_METADATA_URL, K_CHOICE, K_LISTEN, K_KEEP, K_SPAN, K_MANUAL,
                K_PERCENT };

struct key_def {
    const char *name;
    enum key_kind kind;
    size_t offset;   /* into struct config */
    const char *dflt; /* a leading "$XDG_<X>_HOME/" is resolved by xdg_home() */
    int min, max;    /* K_INT bounds */
    const char *const *choices; /* K_CHOICE: NULL-terminated */
};

static const char *const auth_azure[] = {"key", "managed-identity", "workload-identity", NULL};
static const char *const auth_s3[] = {"key", "instance-profile", NULL};
static const char *const yes_no[] = {"false", "true", NULL};
static const char *const lock_modes[] = {"off", "governance", "compliance", NULL};

#define OFF(f) offsetof(struct config, f)
static const struct key_def keys[] = {
    {"admin_url", K_URL, OFF(admin_url), "https://api.bap.microsoft.com", 0, 0, NULL},
    {"token_url", K_URL, OFF(token_url), NULL, 0, 0, NULL},
    {"client_id", K_STR, OFF(client_id), NULL, 0, 0, NULL},
    {"client_secret_file", K_PATH, OFF(client_secret_file), "$XDG_CONFIG_HOME/dvsnap/secret", 0,
     0, NULL},
    {"repository", K_LOCATION, OFF(repository), "$XDG_DATA_HOME/dvsnap/repo", 0, 0, NULL},
    {"cache_dir", K_PATH, OFF(cache_dir), "$XDG_CACHE_HOME/dvsnap", 0, 0, NULL},
    {"cache_size", K_SIZE, OFF(cache_size), "2G", 0, 0, NULL},
    {"capture_every", K_DURATION, OFF(capture_every), "15m", 0, 0, NULL},
    {"environments", K_ENVS, OFF(environments), "*", 0, 0, NULL},
    {"tables_include", K_PATTERNS, OFF(tables_include), NULL, 0, 0, NULL},
    {"tables_exclude", K_PATTERNS, OFF(tables_exclude), NULL, 0, 0, NULL},
    {"max_concurrency", K_INT, OFF(max_concurrency), "4", 1, 52, NULL},
    {"log_level", K_LEVEL, OFF(log_level), "warn", 0, 0, NULL},
    {"azure_endpoint", K_URL, OFF(azure_endpoint), NULL, 0, 0, NULL},
    {"azure_key_file", K_PATH, OFF(azure_key_file), NULL, 0, 0, NULL},
    {"s3_endpoint", K_URL, OFF(s3_endpoint), NULL, 0, 0, NULL},
    {"s3_region", K_STR, OFF(s3_region), "us-east-1", 0, 0, NULL},
    {"s3_credentials_file", K_PATH, OFF(s3_credentials_file), NULL, 0, 0, NULL},
    {"http_timeout", K_INT, OFF(http_timeout), "300", 1, 86400, NULL},
    {"http_retries", K_INT, OFF(http_retries), "8", 1, 100, NULL},
    {"ca_file", K_PATH, OFF(ca_file), NULL, 0, 0, NULL},
    {"admin_resource", K_URL, OFF(admin_resource), NULL, 0, 0, NULL},
    {"state_dir", K_PATH, OFF(state_dir), "$XDG_STATE_HOME/dvsnap", 0, 0, NULL},
    {"stale_after", K_DURATION, OFF(stale_after), NULL, 0, 0, NULL},
    {"metrics_file", K_PATH, OFF(metrics_file), NULL, 0, 0, NULL},
    {"metrics_listen", K_LISTEN, OFF(metrics_listen), NULL, 0, 0, NULL},
    {"azure_auth", K_CHOICE, OFF(azure_auth), "key", 0, 0, auth_azure},
    {"azure_identity_endpoint", K_METADATA_URL, OFF(azure_identity_endpoint), NULL, 0, 0, NULL},
    {"azure_client_id", K_STR, OFF(azure_client_id), NULL, 0, 0, NULL},
    {"azure_federated_token_file", K_PATH, OFF(azure_federated_token_file), NULL, 0, 0, NULL},
    {"s3_auth", K_CHOICE, OFF(s3_auth), "key", 0, 0, auth_s3},
    {"aws_metadata_endpoint", K_METADATA_URL, OFF(aws_metadata_endpoint),
     "http://169.254.169.254", 0, 0, NULL},
    {"append_only", K_CHOICE, OFF(append_only), "false", 0, 0, yes_no},
    {"object_lock", K_CHOICE, OFF(object_lock), "off", 0, 0, lock_modes},
    {"s3_prune_credentials_file", K_PATH, OFF(s3_prune_credentials_file), NULL, 0, 0, NULL},
    {"azure_prune_key_file", K_PATH, OFF(azure_prune_key_file), NULL, 0, 0, NULL},
    {"password_file", K_PATH, OFF(password_file), NULL, 0, 0, NULL},
    {"password_command", K_STR, OFF(password_command), NULL, 0, 0, NULL},
    /* retention: the first six keys, in this order, are the ones retention.<env>.<key> sets */
    {"keep_daily", K_KEEP, OFF(retention.keep_daily), "0", 0, 0, NULL},
    {"keep_weekly", K_KEEP, OFF(retention.keep_weekly), "0", 0, 0, NULL},
    {"keep_monthly", K_KEEP, OFF(retention.keep_monthly), "0", 0, 0, NULL},
    {"keep_yearly", K_KEEP, OFF(retention.keep_yearly), "0", 0, 0, NULL},
    {"keep_within", K_SPAN, OFF(retention.keep_within), "0", 0, 0, NULL},
    {"keep_manual", K_MANUAL, OFF(retention.keep_manual), "all", 0, 0, NULL},
    {"anomaly_delete_percent", K_PERCENT, OFF(anomaly_delete_percent), "5", 0, 0, NULL},
    {"anomaly_min_rows", K_INT, OFF(anomaly_min_rows), "1000", 0, 2147483647, NULL},
    {"anomaly_hold", K_SPAN, OFF(anomaly_hold), "30d", 0, 0, NULL},
    {"notify_command", K_STR, OFF(notify_command), NULL, 0, 0, NULL},
};
#define N_RETENTION_KEYS 6
#define N_KEYS (sizeof(keys) / sizeof(keys[0]))

/* The six retention keys, in the table's order from keep_daily (found by name, not by position, so
 * keys added above them do not move them). */
static const struct key_def *retention_keys(void)
{
    for (size_t i = 0; i + N_RETENTION_KEYS <= N_KEYS; i++)
        if (strcmp(keys[i].name, "keep_daily") == 0)
            return &keys[i];
    abort(); /* the table above always has them */
}
_Static_assert(N_KEYS <= 64, "struct config's set_keys has one bit per key");

static const char *home_dir(void)
{
    const char *h = getenv("HOME");
    if (h && *h)
        return h;
    struct passwd *pw = getpwuid(getuid());
    return pw && pw->pw_dir ? pw->pw_dir : "/";
}

/* An XDG base directory: $VAR when it is an absolute path (the specification ignores relative
 * ones), else $HOME/fallback. NULL on allocation failure. */
static char *xdg_home(const char *var, size_t var_len)
{
    static const struct {
        const char *var, *fallback;
    } dirs[] = {{"XDG_CONFIG_HOME", ".config"},
                {"XDG_CACHE_HOME", ".cache"},
                {"XDG_DATA_HOME", ".local/share"},
                {"XDG_STATE_HOME", ".local/state"}};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        if (strlen(dirs[i].var) != var_len || strncmp(dirs[i].var, var, var_len) != 0)
            continue;
        const char *v = getenv(dirs[i].var);
        struct buf b = BUF_INIT;
        if (v && v[0] == '/' ? buf_addstr(&b, v)
                             : buf_printf(&b, "%s/%s", home_dir(), dirs[i].fallback)) {
            buf_release(&b);
            return NULL;
        }
        return buf_detach(&b);
    }
    return NULL;
}

/* "~/x" -> "$HOME/x"; "$XDG_<X>_HOME/x" -> that base directory + "/x" (defaults only); anything
 * else copied. NULL on allocation failure. */
static char *expand_path(const char *v)
{
    struct buf b = BUF_INIT;
    char *base = NULL;
    if (v[0] == '~' && (v[1] == '/' || v[1] == '\0')) {
        if (buf_addstr(&b, home_dir()) || buf_addstr(&b, v + 1))
            goto fail;
    } else if (strncmp(v, "$XDG_", 5) == 0 && strchr(v, '/')) {
        size_t n = (size_t)(strchr(v, '/') - v);
        if (!(base = xdg_home(v + 1, n - 1)) || buf_addstr(&b, base) || buf_addstr(&b, v + n))
            goto fail;
    } else if (buf_addstr(&b, v)) {
        goto fail;
    }
    free(base);
    return buf_detach(&b);
fail:
    free(base);
    buf_release(&b);
    return NULL;
}

void config_default_path(char *out, size_t n)
{
    char *user = expand_path("$XDG_CONFIG_HOME/dvsnap/config");
    const char *sys = getenv("DVSNAP_SYSTEM_CONFIG");
    if (!sys || !*sys)
        sys = "/etc/dvsnap/config";
    struct stat st;
    snprintf(out, n, "%s", user && (stat(user, &st) == 0 || errno != ENOENT) ? user : sys);
    free(user);
}

static void free_envs(char **envs)
{
    if (!envs)
        return;
    for (char **p = envs; *p; p++)
        free(*p);
    free(envs);
}

/* "a, b c" -> {"a","b","c",NULL}. */
static int parse_envs(const char *v, char ***out)
{
    size_t n = 0, cap = 4;
    char **list = calloc(cap + 1, sizeof(*list));
    if (!list)
        return -ENOMEM;
    const char *p = v;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        if (n == cap) {
            char **nl = realloc(list, (cap * 2 + 1) * sizeof(*list));
            if (!nl)
                goto nomem;
            list = nl;
            cap *= 2;
        }
        if (!(list[n] = strndup(s, (size_t)(p - s))))
            goto nomem;
        list[++n] = NULL;
    }
    if (n == 0) {
        free_envs(list);
        return -EINVAL;
    }
    *out = list;
    return 0;
nomem:
    free_envs(list);
    return -ENOMEM;
}

static int parse_level(const char *v, int *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(v, names[i]) == 0 || (v[0] == '0' + i && v[1] == '\0')) {
            *out = i;
            return 0;
        }
    if (strcasecmp(v, "warning") == 0) {
        *out = 1;
        return 0;
    }
    return -EINVAL;
}

static bool url_ok(const char *v)
{
    if (strncmp(v, "https://", 8) == 0)
        return v[8] != '\0';
    return strncmp(v, "http://", 7) == 0 && url_is_loopback(v);
}

/* "0", "none" or a duration (e.g. 2d); seconds. */
static int parse_span(const char *v, int64_t *out)
{
    if (strcmp(v, "none") == 0) {
        *out = 0;
        return 0;
    }
    return parse_duration(v, out);
}

/* "HOST:PORT" or "[IPv6]:PORT" with a port from 1 to 65535 and a host of [A-Za-z0-9.-] (or an
 * IPv6 literal in brackets). */
static bool listen_ok(const char *v)
{
    const char *colon = strrchr(v, ':');
    if (!colon || colon == v || !colon[1] || strlen(colon + 1) > 5)
        return false;
    long port = 0;
    for (const char *p = colon + 1; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        return false;
    if (v[0] == '[') {
        if (colon[-1] != ']' || colon - v < 3)
            return false;
        for (const char *p = v + 1; p < colon - 1; p++)
            if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.')
                return false;
        return true;
    }
    for (const char *p = v; p < colon; p++)
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '-')
            return false;
    return true;
}

/* Store value v of key k into field (replacing an earlier value). src names where it came from. */
static int set_field(void *field, const struct key_def *k, const char *v, const char *src,
                     struct dverr *err)
{
    char *s = NULL;
    switch (k->kind) {
    case K_METADATA_URL:
        if (!url_ok(v) && !url_is_metadata_service(v))
            return dverr_set(err, -EINVAL,
                             "%s: %s must be an https:// URL (http:// only for loopback hosts "
                             "and the instance-metadata address 169.254.169.254)",
                             src, k->name);
        /* fall through */
    case K_URL:
        if (k->kind == K_URL && !url_ok(v))
            return dverr_set(err, -EINVAL,
                             "%s: %s must be an https:// URL (http:// only for loopback hosts)",
                             src, k->name);
        /* fall through */
    case K_STR:
        if (!(s = strdup(v)))
            return -ENOMEM;
        while (k->kind != K_STR && strlen(s) > 8 && s[strlen(s) - 1] == '/')
            s[strlen(s) - 1] = '\0';
        break;
    case K_CHOICE:
        for (const char *const *c = k->choices; *c; c++)
            if (strcmp(*c, v) == 0)
                s = strdup(v);
        if (!s) {
            struct buf all = BUF_INIT;
            for (const char *const *c = k->choices; *c; c++)
                buf_printf(&all, "%s%s", c == k->choices ? "" : ", ", *c);
            dverr_set(err, -EINVAL, "%s: %s: \"%.64s\" is not one of %s", src, k->name, v,
                      all.data ? all.data : "");
            buf_release(&all);
            return -EINVAL;
        }
        break;
    case K_LISTEN:
        if (!listen_ok(v))
            return dverr_set(err, -EINVAL,
                             "%s: %s: \"%.64s\" is not HOST:PORT (e.g. 127.0.0.1:9134)", src,
                             k->name, v);
        if (!(s = strdup(v)))
            return -ENOMEM;
        break;
    case K_LOCATION:
        if (strstr(v, "://") && strncmp(v, "file://", 7) != 0) {
            if (!(s = strdup(v)))
                return -ENOMEM;
            break;
        }
        /* fall through */
    case K_PATH:
        if (!*v)
            return dverr_set(err, -EINVAL, "%s: %s is empty", src, k->name);
        if (!(s = expand_path(v)))
            return -ENOMEM;
        break;
    case K_SIZE:
        if (parse_size(v, (uint64_t *)field))
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a size (e.g. 2G, 512M)", src,
                             k->name, v);
        return 0;
    case K_DURATION: {
        int64_t d;
        if (parse_duration(v, &d) || d <= 0)
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a duration (e.g. 15m, 1h)",
                             src, k->name, v);
        *(int64_t *)field = d;
        return 0;
    }
    case K_INT: {
        char *end;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (errno || end == v || *end || n < k->min || n > k->max)
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a number from %d to %d", src,
                             k->name, v, k->min, k->max);
        *(int *)field = (int)n;
        return 0;
    }
    case K_KEEP: {
        char *end;
        errno = 0;
        long n = strcmp(v, "all") == 0 ? CONFIG_KEEP_ALL : strtol(v, &end, 10);
        if (n != CONFIG_KEEP_ALL && (errno || end == v || *end || n < 0 || n >= CONFIG_KEEP_ALL))
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a count of points or \"all\"",
                             src, k->name, v);
        *(int *)field = (int)n;
        return 0;
    }
    case K_SPAN:
        if (parse_span(v, (int64_t *)field))
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a duration (e.g. 2d, 12h) or 0",
                             src, k->name, v);
        return 0;
    case K_PERCENT: {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        if (errno || end == v || *end || !(d >= 0 && d <= 100))
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not a percentage from 0 to 100",
                             src, k->name, v);
        *(double *)field = d;
        return 0;
    }
    case K_MANUAL: {
        int64_t d = 0;
        if (strcmp(v, "all") == 0)
            d = CONFIG_KEEP_MANUAL_ALL;
        else if (strcmp(v, "platform") == 0)
            d = CONFIG_KEEP_MANUAL_PLATFORM;
        else if (parse_duration(v, &d) || d <= 0)
            return dverr_set(err, -EINVAL, "%s: %s: \"%s\" is not \"all\", \"platform\" or a "
                             "duration (e.g. 365d)", src, k->name, v);
        *(int64_t *)field = d;
        return 0;
    }
    case K_LEVEL:
        if (parse_level(v, (int *)field))
            return dverr_set(err, -EINVAL, "%s: log_level: \"%s\" is not error, warn, info or debug",
                             src, v);
        return 0;
    case K_ENVS:
    case K_PATTERNS: {
        char **list = NULL;
        int rc = parse_envs(v, &list);
        if (rc == -EINVAL && k->kind == K_ENVS)
            return dverr_set(err, rc, "%s: environments is empty (use * for all)", src);
        if (rc == -EINVAL) /* an empty pattern list: the key is unset */
            rc = 0, list = NULL;
        if (rc)
            return rc;
        free_envs(*(char ***)field);
        *(char ***)field = list;
        return 0;
    }
    }
    free(*(char **)field);
    *(char **)field = s;
    return 0;
}

static int set_key(struct config *cfg, const struct key_def *k, const char *v, const char *src,
                   struct dverr *err)
{
    return set_field((char *)cfg + k->offset, k, v, src, err);
}

/* "retention.<env>.<key> = value": an override of one retention key for one environment. */
static int set_env_retention(struct config *cfg, const char *name, const char *v, const char *src,
                             struct dverr *err)
{
    const char *env = name + strlen("retention.");
    const char *dot = strrchr(env, '.');
    const struct key_def *rk = retention_keys(), *k = NULL;
    size_t i = 0;
    for (; dot && i < N_RETENTION_KEYS; i++)
        if (strcmp(rk[i].name, dot + 1) == 0) {
            k = &rk[i];
            break;
        }
    if (!k || dot == env || (size_t)(dot - env) > 200)
        return dverr_set(err, -EINVAL, "%s: \"%.80s\" is not retention.<environment>.<keep_daily|"
                         "keep_weekly|keep_monthly|keep_yearly|keep_within|keep_manual>",
                         src, name);
    struct config_retention *r = NULL;
    for (size_t j = 0; j < cfg->n_retention_envs && !r; j++)
        if (strlen(cfg->retention_envs[j].env) == (size_t)(dot - env) &&
            strncmp(cfg->retention_envs[j].env, env, (size_t)(dot - env)) == 0)
            r = &cfg->retention_envs[j];
    if (!r) {
        struct config_retention *nv = realloc(cfg->retention_envs,
                                              (cfg->n_retention_envs + 1) * sizeof *nv);
        if (!nv)
            return -ENOMEM;
        cfg->retention_envs = nv;
        r = &nv[cfg->n_retention_envs];
        memset(r, 0, sizeof *r);
        if (!(r->env = strndup(env, (size_t)(dot - env))))
            return -ENOMEM;
        cfg->n_retention_envs++;
    }
    int rc = set_field((char *)r + (k->offset - OFF(retention)), k, v, src, err);
    if (!rc)
        r->set |= 1u << i;
    return rc;
}

static const struct key_def *find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strlen(keys[i].name) == len && strncmp(keys[i].name, name, len) == 0)
            return &keys[i];
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Parse the file's text. */
static int parse_text(struct config *cfg, const char *path, char *text, struct dverr *err)
{
    int lineno = 0;
    char *save = NULL;
    for (char *line = text; line; line = save) {
        save = strchr(line, '\n');
        if (save)
            *save++ = '\0';
        lineno++;
        char src[PATH_MAX + 32];
        snprintf(src, sizeof(src), "%s:%d", path, lineno);
        if (strlen(line) > CONFIG_MAX_LINE)
            return dverr_set(err, -EINVAL, "%s: line too long", src);
        line = trim(line);
        if (!*line || *line == '#')
            continue;
        char *eq = strchr(line, '=');
        if (!eq)
            return dverr_set(err, -EINVAL, "%s: expected \"key = value\"", src);
        *eq = '\0';
        char *name = trim(line);
        char *value = trim(eq + 1);
        if (*value == '"') {
            char *close = strchr(value + 1, '"');
            if (!close)
                return dverr_set(err, -EINVAL, "%s: unterminated quote", src);
            *close = '\0';
            char *rest = trim(close + 1);
            if (*rest && *rest != '#')
                return dverr_set(err, -EINVAL, "%s: text after the quoted value", src);
            value++;
        } else {
            for (char *p = value; *p; p++)
                if (*p == '#' && (p == value || isspace((unsigned char)p[-1]))) {
                    *p = '\0';
                    break;
                }
            value = trim(value);
        }
        if (strncmp(name, "retention.", 10) == 0) {
            int rc = set_env_retention(cfg, name, value, src, err);
            if (rc)
                return rc;
            continue;
        }
        const struct key_def *k = find_key(name, strlen(name));
        if (!k)
            return dverr_set(err, -EINVAL, "%s: unknown key \"%.64s\"", src, name);
        int rc = set_key(cfg, k, value, src, err);
        if (rc)
            return rc;
        cfg->set_keys |= (uint64_t)1 << (k - keys);
    }
    return 0;
}

/* Check the file's owner and mode on the open descriptor (no race with a rename). */
static int check_private_file(int fd, const char *path, const char *what, mode_t forbidden,
                              struct dverr *err)
{
    struct stat st;
    if (fstat(fd, &st))
        return dverr_set(err, -errno, "%s: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return dverr_set(err, -EPERM, "%s: the %s is not a regular file", path, what);
    if (st.st_uid != geteuid() && st.st_uid != 0)
        return dverr_set(err, -EPERM, "%s: the %s is owned by another user (uid %u); refused", path,
                         what, (unsigned)st.st_uid);
    if (st.st_mode & forbidden)
        return dverr_set(err, -EPERM,
                         "%s: the %s has mode %03o, which lets other users %s it; "
                         "refused (chmod %s %s)",
                         path, what, (unsigned)(st.st_mode & 0777),
                         (st.st_mode & forbidden & 0022) ? "change" : "read",
                         forbidden & 0044 ? "600" : "go-w", path);
    return 0;
}

static int read_config_file(const char *path, struct buf *out, struct dverr *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    int rc = check_private_file(fd, path, "configuration file", 0022, err);
    if (rc)
        goto out;
    for (;;) {
        if ((rc = buf_reserve(out, 65536)))
            goto out;
        ssize_t n = read(fd, out->data + out->len, 65536);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = dverr_set(err, -errno, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
        if (out->len > CONFIG_MAX_FILE) {
            rc = dverr_set(err, -EFBIG, "%s: configuration file larger than 1 MiB", path);
            goto out;
        }
    }
    if (out->len && memchr(out->data, '\0', out->len))
        rc = dverr_set(err, -EINVAL, "%s: configuration file contains a NUL byte", path);
out:
    close(fd);
    return rc;
}

int config_load(const char *path, struct config **out, struct dverr *err)
{
    struct config *cfg = calloc(1, sizeof(*cfg));
    struct buf text = BUF_INIT;
    char *dflt_path = NULL;
    int rc = 0;
    *out = NULL;
    if (!cfg)
        return -ENOMEM;
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].dflt && (rc = set_key(cfg, &keys[i], keys[i].dflt, "default", err)))
            goto out;

    bool explicit = true;
    if (!path || !*path)
        path = getenv("DVSNAP_CONFIG");
    if (!path || !*path) {
        explicit = false;
        if (!(dflt_path = malloc(PATH_MAX))) {
            rc = -ENOMEM;
            goto out;
        }
        config_default_path(dflt_path, PATH_MAX);
        path = dflt_path;
    }
    rc = read_config_file(path, &text, err);
    if (rc == -ENOENT && !explicit) {
        rc = 0;
    } else if (rc) {
        if (rc == -ENOENT || rc == -EACCES || rc == -EISDIR || rc == -ENOTDIR)
            dverr_set(err, rc, "%s: %s", path, strerror(-rc));
        goto out;
    } else {
        if (!(cfg->path = strdup(path))) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = parse_text(cfg, path, text.data ? text.data : (char *)"", err)))
            goto out;
    }

    /* Environment overrides: DVSNAP_<KEY>. */
    for (size_t i = 0; i < N_KEYS; i++) {
        char var[64] = "DVSNAP_";
        size_t j = 7;
        for (const char *p = keys[i].name; *p && j < sizeof(var) - 1; p++)
            var[j++] = (char)toupper((unsigned char)*p);
        var[j] = '\0';
        const char *v = getenv(var);
        if (v && (rc = set_key(cfg, &keys[i], v, var, err)))
            goto out;
        if (v)
            cfg->set_keys |= (uint64_t)1 << i;
    }
    if (!cfg->stale_after)
        cfg->stale_after = 2 * cfg->capture_every;
    *out = cfg;
    cfg = NULL;
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory reading the configuration");
    buf_release(&text);
    free(dflt_path);
    config_free(cfg);
    return rc;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    free(cfg->path);
    for (size_t i = 0; i < N_KEYS; i++) {
        void *field = (char *)cfg + keys[i].offset;
        switch (keys[i].kind) {
        case K_STR: case K_PATH: case K_URL: case K_LOCATION: case K_METADATA_URL: case K_CHOICE:
        case K_LISTEN:
            free(*(char **)field);
            break;
        case K_ENVS:
        case K_PATTERNS:
            free_envs(*(char ***)field);
            break;
        default:
            break;
        }
    }
    for (size_t i = 0; i < cfg->n_retention_envs; i++)
        free(cfg->retention_envs[i].env);
    free(cfg->retention_envs);
    free(cfg);
}

void config_retention_for(const struct config *cfg, const char *env,
                          struct config_retention *out)
{
    const struct key_def *rk = retention_keys();
    *out = cfg->retention;
    out->env = NULL;
    out->set = 0;
    for (size_t i = 0; env && i < cfg->n_retention_envs; i++) {
        const struct config_retention *o = &cfg->retention_envs[i];
        if (strcmp(o->env, env) != 0)
            continue;
        for (size_t k = 0; k < N_RETENTION_KEYS; k++) {
            if (!(o->set & (1u << k)))
                continue;
            size_t off = rk[k].offset - OFF(retention);
            size_t sz = rk[k].kind == K_KEEP ? sizeof(int) : sizeof(int64_t);
            memcpy((char *)out + off, (const char *)o + off, sz);
        }
    }
}

bool config_key_set(const struct config *cfg, const char *key)
{
    const struct key_def *k = find_key(key, strlen(key));
    return k && (cfg->set_keys >> (k - keys) & 1);
}

bool config_append_only(const struct config *cfg)
{
    return cfg && cfg->append_only && strcmp(cfg->append_only, "true") == 0;
}

int config_object_lock(const struct config *cfg)
{
    if (!cfg || !cfg->object_lock)
        return CONFIG_LOCK_OFF;
    if (strcmp(cfg->object_lock, "compliance") == 0)
        return CONFIG_LOCK_COMPLIANCE;
    return strcmp(cfg->object_lock, "governance") == 0 ? CONFIG_LOCK_GOVERNANCE : CONFIG_LOCK_OFF;
}

bool config_env_selected(const struct config *cfg, const char *unique_name)
{
    if (!cfg->environments)
        return true;
    for (char **p = cfg->environments; *p; p++)
        if (strcmp(*p, "*") == 0 || strcasecmp(*p, unique_name) == 0)
            return true;
    return false;
}

static bool any_match(char *const *patterns, const char *name)
{
    for (char *const *p = patterns; p && *p; p++)
        if (fnmatch(*p, name, FNM_CASEFOLD) == 0)
            return true;
    return false;
}

bool config_table_selected(const struct config *cfg, const char *logical_name)
{
    if (cfg->tables_include && !any_match(cfg->tables_include, logical_name))
        return false;
    return !any_match(cfg->tables_exclude, logical_name);
}

int config_read_secret_file(const char *path, struct buf *out, struct dverr *err)
{
    if (!path || !*path)
        return dverr_set(err, -EINVAL, "no secret file is configured");
    char chunk[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return dverr_set(err, -EPERM, "%s: the secret file is a symbolic link; refused", path);
        return dverr_set(err, -e, "%s: cannot open the secret file: %s", path, strerror(e));
    }
    int rc = check_private_file(fd, path, "secret file", 0077, err);
    if (rc)
        goto out;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_uid != geteuid()) {
        rc = dverr_set(err, -EPERM, "%s: the secret file is not owned by you; refused", path);
        goto out;
    }
    /* One allocation up front, so no realloc leaves a copy of the secret in freed memory. */
    if ((rc = buf_reserve(out, SECRET_MAX + 1)))
        goto out;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = dverr_set(err, -errno, "%s: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        if (out->len + (size_t)n > SECRET_MAX) {
            rc = dverr_set(err, -EFBIG, "%s: the secret file is larger than 64 KiB", path);
            goto out;
        }
        if ((rc = buf_add(out, chunk, (size_t)n)))
            goto out;
    }
    while (out->len && (out->data[out->len - 1] == '\n' || out->data[out->len - 1] == '\r'))
        out->data[--out->len] = '\0';
    if (out->len == 0)
        rc = dverr_set(err, -EINVAL, "%s: the secret file is empty", path);
out:
    explicit_bzero(chunk, sizeof(chunk));
    if (rc)
        buf_release_secret(out);
    close(fd);
    return rc;
}
