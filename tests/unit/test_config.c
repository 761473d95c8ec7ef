/* test_config: configuration parsing, defaults, DVSNAP_<KEY> overrides, ~/ expansion, unknown
 * keys, file permissions and the secret-file rules; tables_include / tables_exclude patterns.
 * Runs in a private temp directory. */
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
    write_file(path, "cache_size = 1G\n", 0644);
    assert_int_equal(config_load(path, &cfg, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "chmod 600"));
    write_file(path, "cache_size = 1G\n", 0620);
    dverr_clear(&err);
    assert_int_equal(config_load(path, &cfg, &err), -EPERM);
    write_file(path, "cache_size = 1G\n", 0640); /* group-readable is fine */
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
        cmocka_unit_test(test_parse_file),
        cmocka_unit_test(test_table_patterns),
        cmocka_unit_test(test_env_overrides),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_config_permissions),
        cmocka_unit_test(test_secret_file),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
