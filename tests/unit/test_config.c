/* test_config: configuration parsing, defaults, DVSNAP_<KEY> overrides, ~/ expansion, unknown
 * keys, file permissions and the secret-file rules; the XDG base directories, the system-wide
 * file, the health and identity keys, and which keys were set; tables_include / tables_exclude
 * patterns. Runs in a private temp directory ($DVSNAP_SYSTEM_CONFIG points into it, so
 * /etc/dvsnap/config is never read). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/config.h"

static char dir[64];
static char path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/dvsnap-cfg.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config", dir);
    setenv("HOME", dir, 1);
    unsetenv("DVSNAP_CONFIG");
    unsetenv("DVSNAP_CACHE_SIZE");
    unsetenv("DVSNAP_ADMIN_URL");
    unsetenv("DVSNAP_ENVIRONMENTS");
    unsetenv("DVSNAP_HTTP_RETRIES");
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("XDG_DATA_HOME");
    unsetenv("XDG_STATE_HOME");
    char sys[160];
    snprintf(sys, sizeof sys, "%s/etc-dvsnap-config", dir);
    setenv("DVSNAP_SYSTEM_CONFIG", sys, 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void write_file(const char *p, const char *text, mode_t mode)
{
    unlink(p);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(p, mode), 0);
}

static void test_defaults_without_file(void **state)
{
    struct config *cfg = NULL;
    struct dverr err = {0};
    /* No explicit path, no $DVSNAP_CONFIG, no ~/.config/dvsnap/config: defaults. */
    assert_int_equal(config_load(NULL, &cfg, &err), 0);
    assert_null(cfg->path);
    assert_string_equal(cfg->admin_url, "https://api.bap.microsoft.com");
    assert_null(cfg->token_url);
    char want[160];
    snprintf(want, sizeof(want), "%s/.config/dvsnap/secret", dir);
    assert_string_equal(cfg->client_secret_file, want);
    snprintf(want, sizeof(want), "%s/.local/share/dvsnap/repo", dir);
    assert_string_equal(cfg->repository, want);
    assert_int_equal(cfg->cache_size, 2ull << 30);
    assert_int_equal(cfg->capture_every, 900);
    assert_int_equal(cfg->max_concurrency, 4);
    assert_int_equal(cfg->log_level, 1);
    assert_int_equal(cfg->http_timeout, 300);
    assert_int_equal(cfg->http_retries, 8);
    assert_null(cfg->ca_file);
    assert_null(cfg->admin_resource);
    assert_string_equal(cfg->s3_region, "us-east-1");
    assert_true(config_env_selected(cfg, "anything"));
    assert_null(cfg->tables_include);
    assert_null(cfg->tables_exclude);
    assert_true(config_table_selected(cfg, "account"));
    snprintf(want, sizeof(want), "%s/.cache/dvsnap", dir);
    assert_string_equal(cfg->cache_dir, want);
    snprintf(want, sizeof(want), "%s/.local/state/dvsnap", dir);
    assert_string_equal(cfg->state_dir, want);
    assert_int_equal(cfg->stale_after, 1800); /* twice capture_every */
    assert_null(cfg->metrics_file);
    assert_null(cfg->metrics_listen);
    assert_string_equal(cfg->azure_auth, "key");
    assert_string_equal(cfg->s3_auth, "key");
    assert_string_equal(cfg->aws_metadata_endpoint, "http://169.254.169.254");
    assert_false(config_key_set(cfg, "http_retries"));
    config_free(cfg);
}

/* XDG_*_HOME name the default directories when absolute; a relative one is ignored. */
static void test_xdg_defaults(void **state)
{
    struct config *cfg = NULL;
    char x[160], want[200];
    snprintf(x, sizeof x, "%s/xdg", dir);
    setenv("XDG_CACHE_HOME", x, 1);
    setenv("XDG_DATA_HOME", x, 1);
    setenv("XDG_STATE_HOME", x, 1);
    setenv("XDG_CONFIG_HOME", "relative/ignored", 1);
    assert_int_equal(config_load(NULL, &cfg, NULL), 0);
    snprintf(want, sizeof want, "%s/dvsnap", x);
    assert_string_equal(cfg->cache_dir, want);
    assert_string_equal(cfg->state_dir, want);
    snprintf(want, sizeof want, "%s/dvsnap/repo", x);
    assert_string_equal(cfg->repository, want);
    snprintf(want, sizeof want, "%s/.config/dvsnap/secret", dir);
    assert_string_equal(cfg->client_secret_file, want);
    config_free(cfg);

    /* the user's file: $XDG_CONFIG_HOME/dvsnap/config */
    setenv("XDG_CONFIG_HOME", x, 1);
    char d[200], f[220];
    snprintf(d, sizeof d, "%s/dvsnap", x);
    assert_int_equal(mkdir(x, 0700) == 0 || errno == EEXIST, 1);
    assert_int_equal(mkdir(d, 0700) == 0 || errno == EEXIST, 1);
    snprintf(f, sizeof f, "%s/config", d);
    write_file(f, "cache_size = 3G\n", 0600);
    assert_int_equal(config_load(NULL, &cfg, NULL), 0);
    assert_string_equal(cfg->path, f);
    assert_int_equal(cfg->cache_size, 3ull << 30);
    config_free(cfg);
    unlink(f);
    unsetenv("XDG_CACHE_HOME");
    unsetenv("XDG_DATA_HOME");
    unsetenv("XDG_STATE_HOME");
    unsetenv("XDG_CONFIG_HOME");
}

/* No user file: the system-wide one ($DVSNAP_SYSTEM_CONFIG here), readable by all (0644). */
static void test_system_config(void **state)
{
    struct config *cfg = NULL;
    struct dverr err = {0};
    const char *sys = getenv("DVSNAP_SYSTEM_CONFIG");
    write_file(sys, "cache_size = 5G\nstale_after = 1h\n", 0644);
    assert_int_equal(config_load(NULL, &cfg, &err), 0);
    assert_string_equal(cfg->path, sys);
    assert_int_equal(cfg->cache_size, 5ull << 30);
    assert_int_equal(cfg->stale_after, 3600);
    config_free(cfg);
    char p[200];
    config_default_path(p, sizeof p);
    assert_string_equal(p, sys);
    /* a user file, once there, wins */
    char d[160], f[200];
    snprintf(d, sizeof d, "%s/.config", dir);
    mkdir(d, 0700);
    snprintf(d, sizeof d, "%s/.config/dvsnap", dir);
    mkdir(d, 0700);
    snprintf(f, sizeof f, "%s/config", d);
    write_file(f, "cache_size = 1G\n", 0600);
    assert_int_equal(config_load(NULL, &cfg, &err), 0);
    assert_string_equal(cfg->path, f);
    config_free(cfg);
    config_default_path(p, sizeof p);
    assert_string_equal(p, f);
    unlink(f);
    unlink(sys);
}

static void test_health_and_identity_keys(void **state)
{
    struct config *cfg = NULL;
    struct dverr err = {0};
    write_file(path,
               "capture_every = 10m\n"
               "metrics_file = ~/m/dvsnap.prom\n"
               "metrics_listen = 127.0.0.1:9134\n"
               "azure_auth = managed-identity\n"
               "azure_identity_endpoint = http://169.254.169.254/metadata/identity/oauth2/token\n"
               "azure_client_id = 11111111-2222-3333-4444-555555555555\n"
               "s3_auth = instance-profile\n"
               "aws_metadata_endpoint = http://127.0.0.1:8999\n"
               "http_retries = 2\n",
               0600);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_int_equal(cfg->stale_after, 1200);
    char want[160];
    snprintf(want, sizeof want, "%s/m/dvsnap.prom", dir);
    assert_string_equal(cfg->metrics_file, want);
    assert_string_equal(cfg->metrics_listen, "127.0.0.1:9134");
    assert_string_equal(cfg->azure_auth, "managed-identity");
    assert_string_equal(cfg->azure_identity_endpoint,
                        "http://169.254.169.254/metadata/identity/oauth2/token");
    assert_string_equal(cfg->s3_auth, "instance-profile");
    assert_string_equal(cfg->aws_metadata_endpoint, "http://127.0.0.1:8999");
    assert_true(config_key_set(cfg, "http_retries"));
    assert_false(config_key_set(cfg, "http_timeout"));
    assert_false(config_key_set(cfg, "no_such_key"));
    config_free(cfg);
    /* set by the environment counts as set */
    setenv("DVSNAP_HTTP_TIMEOUT", "30", 1);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_true(config_key_set(cfg, "http_timeout"));
    assert_int_equal(cfg->http_timeout, 30);
    config_free(cfg);
    unsetenv("DVSNAP_HTTP_TIMEOUT");

    static const char *const bad[] = {
        "azure_auth = password\n",
        "s3_auth = keys\n",
        "metrics_listen = 9134\n",
        "metrics_listen = 127.0.0.1:99999\n",
        "metrics_listen = host name:80\n",
        "aws_metadata_endpoint = http://169.254.169.253\n", /* only the metadata address */
        "admin_url = http://169.254.169.254\n",             /* and only for the metadata keys */
        "stale_after = soon\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dverr_clear(&err);
        write_file(path, bad[i], 0600);
        assert_int_equal(config_load(path, &cfg, &err), -EINVAL);
        assert_true(strlen(dverr_msg(&err)) > 0);
    }
    write_file(path, "metrics_listen = [::1]:9134\n", 0600);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    config_free(cfg);
}

static void test_table_patterns(void **state)
{
    write_file(path,
               "tables_include = account contact, new_* msdyn_?ost*\n"
               "tables_exclude = new_secret* ,CONTACT\n",
               0600);
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_true(config_table_selected(cfg, "account"));
    assert_true(config_table_selected(cfg, "new_project"));
    assert_true(config_table_selected(cfg, "msdyn_postalbum"));
    assert_true(config_table_selected(cfg, "NEW_Project")); /* patterns ignore case */
    assert_false(config_table_selected(cfg, "contact"));    /* excluded wins */
    assert_false(config_table_selected(cfg, "new_secretstuff"));
    assert_false(config_table_selected(cfg, "opportunity"));
    config_free(cfg);
    write_file(path, "tables_exclude = audit\ntables_include =\n", 0600);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_null(cfg->tables_include); /* empty: every table */
    assert_true(config_table_selected(cfg, "opportunity"));
    assert_false(config_table_selected(cfg, "audit"));
    config_free(cfg);
}

static void test_parse_file(void **state)
{
    write_file(path,
               "# dvsnap\n"
               "admin_url          = http://127.0.0.1:8080/   # trailing comment\n"
               "token_url=http://127.0.0.1:8080/contoso/oauth2/v2.0/token\n"
               "  client_id = \"app # id\"\n"
               "client_secret_file = ~/secret\n"
               "repository = azure://acct/container/prefix\n"
               "cache_size = 512M\n"
               "capture_every = 1h\n"
               "environments = contoso-prod, contoso-dev  fabrikam-prod\n"
               "log_level = debug\n"
               "http_timeout = 60\n"
               "http_retries = 3\n"
               "ca_file = ~/ca.pem\n"
               "admin_resource = https://service.powerapps.com/\n"
               "\n",
               0600);
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(config_load(path, &cfg, &err), 0);
    assert_string_equal(cfg->path, path);
    assert_string_equal(cfg->admin_url, "http://127.0.0.1:8080");
    assert_string_equal(cfg->token_url, "http://127.0.0.1:8080/contoso/oauth2/v2.0/token");
    assert_string_equal(cfg->client_id, "app # id");
    char want[160];
    snprintf(want, sizeof(want), "%s/secret", dir);
    assert_string_equal(cfg->client_secret_file, want);
    assert_string_equal(cfg->repository, "azure://acct/container/prefix");
    assert_int_equal(cfg->cache_size, 512ull << 20);
    assert_int_equal(cfg->capture_every, 3600);
    assert_int_equal(cfg->log_level, 3);
    assert_int_equal(cfg->http_timeout, 60);
    assert_int_equal(cfg->http_retries, 3);
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    assert_string_equal(cfg->ca_file, want);
    assert_string_equal(cfg->admin_resource, "https://service.powerapps.com");
    assert_true(config_env_selected(cfg, "contoso-dev"));
    assert_true(config_env_selected(cfg, "fabrikam-prod"));
    assert_false(config_env_selected(cfg, "contoso-test"));
    assert_string_equal(cfg->environments[0], "contoso-prod");
    assert_null(cfg->environments[3]);
    config_free(cfg);
}

static void test_env_overrides(void **state)
{
    write_file(path, "cache_size = 1G\nenvironments = a\n", 0600);
    setenv("DVSNAP_CACHE_SIZE", "3G", 1);
    setenv("DVSNAP_ENVIRONMENTS", "*", 1);
    setenv("DVSNAP_CONFIG", path, 1);
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(config_load(NULL, &cfg, &err), 0); /* found through $DVSNAP_CONFIG */
    assert_string_equal(cfg->path, path);
    assert_int_equal(cfg->cache_size, 3ull << 30);
    assert_true(config_env_selected(cfg, "b"));
    config_free(cfg);
    setenv("DVSNAP_CACHE_SIZE", "lots", 1);
    assert_int_equal(config_load(NULL, &cfg, &err), -EINVAL);
    assert_null(cfg);
    assert_non_null(strstr(dverr_msg(&err), "DVSNAP_CACHE_SIZE"));
    unsetenv("DVSNAP_CACHE_SIZE");
    unsetenv("DVSNAP_ENVIRONMENTS");
    unsetenv("DVSNAP_CONFIG");
}

static void expect_error(const char *text, int code, const char *needle)
{
    write_file(path, text, 0600);
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(config_load(path, &cfg, &err), code);
    assert_null(cfg);
    if (!strstr(dverr_msg(&err), needle))
        fail_msg("message \"%s\" lacks \"%s\"", dverr_msg(&err), needle);
}

static void test_errors(void **state)
{
    expect_error("cache_sise = 1G\n", -EINVAL, "unknown key \"cache_sise\"");
    expect_error("admin_url = http://example.com\n", -EINVAL, "https");
    expect_error("token_url = ftp://127.0.0.1/x\n", -EINVAL, "https");
    expect_error("just words\n", -EINVAL, ":1: expected");
    expect_error("\n\nmax_concurrency = 0\n", -EINVAL, ":3: max_concurrency");
    expect_error("http_retries = 3x\n", -EINVAL, "http_retries");
    expect_error("capture_every = soon\n", -EINVAL, "capture_every");
    expect_error("log_level = loud\n", -EINVAL, "log_level");
    expect_error("environments = ,\n", -EINVAL, "environments is empty");
    expect_error("client_id = \"open\n", -EINVAL, "unterminated");
    /* An explicit path that does not exist is an error (a default one is not). */
    struct config *cfg = NULL;
    struct dverr err = {0};
    char missing[160];
    snprintf(missing, sizeof(missing), "%s/nope", dir);
    assert_int_equal(config_load(missing, &cfg, &err), -ENOENT);
    assert_non_null(strstr(dverr_msg(&err), "nope"));
}

static void test_config_permissions(void **state)
{
    struct config *cfg = NULL;
    struct dverr err = {0};
    /* it holds no secret: readable by all is fine; writable by others is not */
    write_file(path, "cache_size = 1G\n", 0644);
    assert_int_equal(config_load(path, &cfg, &err), 0);
    config_free(cfg);
    write_file(path, "cache_size = 1G\n", 0620);
    assert_int_equal(config_load(path, &cfg, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "chmod go-w"));
    write_file(path, "cache_size = 1G\n", 0646);
    dverr_clear(&err);
    assert_int_equal(config_load(path, &cfg, &err), -EPERM);
    write_file(path, "cache_size = 1G\n", 0640);
    assert_int_equal(config_load(path, &cfg, NULL), 0);
    config_free(cfg);
}

static void test_secret_file(void **state)
{
    char sp[160], link[160];
    snprintf(sp, sizeof(sp), "%s/secret", dir);
    snprintf(link, sizeof(link), "%s/secret-link", dir);
    struct buf b = BUF_INIT;
    struct dverr err = {0};

    write_file(sp, "s3cr3t\n", 0600);
    assert_int_equal(config_read_secret_file(sp, &b, &err), 0);
    assert_string_equal(b.data, "s3cr3t");
    assert_int_equal(b.len, 6);
    buf_release(&b);

    write_file(sp, "s3cr3t\n", 0400);
    assert_int_equal(config_read_secret_file(sp, &b, &err), 0);
    buf_release(&b);

    write_file(sp, "s3cr3t\n", 0640);
    assert_int_equal(config_read_secret_file(sp, &b, &err), -EPERM);
    assert_null(b.data);
    assert_non_null(strstr(dverr_msg(&err), "chmod 600"));
    /* The secret never reaches the message. */
    assert_null(strstr(dverr_msg(&err), "s3cr3t"));

    write_file(sp, "s3cr3t\n", 0604);
    dverr_clear(&err);
    assert_int_equal(config_read_secret_file(sp, &b, &err), -EPERM);

    write_file(sp, "s3cr3t\n", 0600);
    unlink(link);
    assert_int_equal(symlink(sp, link), 0);
    dverr_clear(&err);
    assert_int_equal(config_read_secret_file(link, &b, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "symbolic link"));

    dverr_clear(&err);
    assert_int_equal(config_read_secret_file(dir, &b, &err), -EPERM); /* a directory */

    write_file(sp, "\n", 0600);
    dverr_clear(&err);
    assert_int_equal(config_read_secret_file(sp, &b, &err), -EINVAL);

    dverr_clear(&err);
    snprintf(sp, sizeof(sp), "%s/none", dir);
    assert_int_equal(config_read_secret_file(sp, &b, &err), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_without_file),
        cmocka_unit_test(test_xdg_defaults),
        cmocka_unit_test(test_system_config),
        cmocka_unit_test(test_health_and_identity_keys),
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_table_patterns),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_config_permissions),
        cmocka_unit_test(test_secret_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
