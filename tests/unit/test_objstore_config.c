/* test_objstore_config: the object-store drivers take their HTTP policy from the configuration:
 * http_retries (when set) replaces their 3 attempts and lifts the 20 s bound on waits,
 * http_timeout (when set) replaces the per-request time-out that grows with the size; unset, the
 * drivers keep their bounded defaults. Also the choice of credentials: azure_auth / s3_auth
 * against a key file set at the same time is refused, and instance-profile credentials are
 * fetched at open (here from a metadata endpoint nobody answers: a clear, bounded failure).
 * No network: opening a driver sends no request except the instance-profile fetch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/config.h"
#include "backend/objstore/objstore.h"
#include "backend/objstore/objstore_remote.h"

static char dir[64], path[128];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/dvsnap-ocfg.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/config", dir);
    setenv("HOME", dir, 1);
    unsetenv("DVSNAP_CONFIG");
    unsetenv("DVSNAP_HTTP_RETRIES");
    unsetenv("DVSNAP_HTTP_TIMEOUT");
    unsetenv("DVSNAP_OBJSTORE_ATTEMPTS");
    setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI", 1);
    setenv("AZURE_STORAGE_KEY", "a2V5a2V5a2V5", 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static struct config *load(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(config_load(path, &cfg, &err), 0);
    return cfg;
}

static void check_policy(const char *location, const char *text, int attempts, int64_t total_ms,
                         int timeout_small, int timeout_big)
{
    struct config *cfg = load(text);
    struct objstore *s = NULL;
    struct dverr err = {0};
    assert_int_equal(objstore_open(location, cfg, &s, &err), 0);
    const struct remote *r = s->impl; /* the driver's struct starts with its struct remote */
    assert_int_equal(r->retry.max_attempts, attempts);
    assert_int_equal(r->retry.max_total_ms, total_ms);
    assert_int_equal(remote_request_timeout_s(r, 0, 0), timeout_small);
    assert_int_equal(remote_request_timeout_s(r, 100u << 20, 0), timeout_big);
    objstore_free(s);
    config_free(cfg);
}

static void test_http_policy(void **state)
{
    static const char *const locations[] = {"s3://bucket-one/p", "azure://acct/container/p"};
    for (int i = 0; i < 2; i++) {
        /* unset: the drivers' own bounded policy; the time-out grows with the size */
        check_policy(locations[i], "cache_size = 1G\n", 3, 20000, 10, 110);
        /* set: what the user asked for */
        check_policy(locations[i], "http_retries = 5\nhttp_timeout = 42\n", 5, 600000, 42, 42);
    }
}

static void test_credential_choice(void **state)
{
    struct objstore *s = NULL;
    struct dverr err = {0};
    char text[512];
    snprintf(text, sizeof text, "s3_auth = instance-profile\ns3_credentials_file = %s/cred\n", dir);
    struct config *cfg = load(text);
    assert_int_equal(objstore_open("s3://bucket-one/p", cfg, &s, &err), -EINVAL);
    assert_non_null(strstr(dverr_msg(&err), "choose one"));
    config_free(cfg);

    snprintf(text, sizeof text, "azure_auth = managed-identity\nazure_key_file = %s/key\n", dir);
    cfg = load(text);
    dverr_clear(&err);
    assert_int_equal(objstore_open("azure://acct/container/p", cfg, &s, &err), -EINVAL);
    assert_non_null(strstr(dverr_msg(&err), "choose one"));
    config_free(cfg);

    /* workload identity without its settings: says which */
    unsetenv("AZURE_FEDERATED_TOKEN_FILE");
    unsetenv("AZURE_CLIENT_ID");
    cfg = load("azure_auth = workload-identity\n");
    dverr_clear(&err);
    assert_int_equal(objstore_open("azure://acct/container/p", cfg, &s, &err), -EINVAL);
    assert_non_null(strstr(dverr_msg(&err), "azure_federated_token_file"));
    config_free(cfg);

    /* a managed identity opens without a request (tokens come with the first one) */
    cfg = load("azure_auth = managed-identity\n");
    assert_int_equal(objstore_open("azure://acct/container/p", cfg, &s, &err), 0);
    objstore_free(s);
    config_free(cfg);

    /* instance profile: fetched at open; nobody answers on this port: a bounded failure */
    cfg = load("s3_auth = instance-profile\naws_metadata_endpoint = http://127.0.0.1:9\n"
               "http_retries = 1\n");
    dverr_clear(&err);
    int64_t t0 = now_ms();
    assert_true(objstore_open("s3://bucket-one/p", cfg, &s, &err) < 0);
    assert_true(now_ms() - t0 < 10000);
    assert_non_null(strstr(dverr_msg(&err), "instance metadata"));
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_policy),
        cmocka_unit_test(test_credential_choice),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
