/* test_policy: the platform's rules as a table of cases (environment type, apps, own retention
 * setting) -> (backed up, manual backups, retention days), plus the restore rules one by one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "backend/engine/policy.h"

struct env_case {
    const char *sku;
    bool is_default, d365;
    int own_retention;
    /* expected */
    int backup_rc, manual_rc, retention;
};

static const struct env_case env_cases[] = {
    /* sku            default d365  own  backup  manual  days */
    {"Production", false, true, 0, 0, 0, 28},
    {"Production", false, false, 0, 0, 0, 7},
    {"production", false, true, 0, 0, 0, 28}, /* case-insensitive */
    {"Production", false, false, 14, 0, 0, 14}, /* own setting wins */
    {"Production", false, true, 7, 0, 0, 7},
    {"Sandbox", false, false, 0, 0, 0, 7},
    {"Sandbox", false, true, 0, 0, 0, 7}, /* apps do not lengthen a sandbox */
    {"Sandbox", false, false, 28, 0, 0, 7}, /* a production setting left over: not kept */
    {"Sandbox", false, false, 5, 0, 0, 5},
    {"Developer", false, false, 0, 0, 0, 7},
    {"Default", true, false, 0, 0, -EPERM, 7},
    {"Production", true, true, 0, 0, -EPERM, 7}, /* isDefault wins over the sku */
    {"Trial", false, false, 0, -EPERM, -EPERM, 0},
    {"Trial", false, false, 28, -EPERM, -EPERM, 0}, /* no retention for what is not backed up */
    {"SubscriptionBasedTrial", false, false, 0, -EPERM, -EPERM, 0},
    {"Teams", false, false, 0, 0, -EPERM, 7},
    {"SomethingNew", false, false, 0, 0, 0, 7},
    {NULL, false, false, 0, 0, 0, 7},
};

static struct dv_env make_env(const char *sku, bool is_default, bool d365, int own)
{
    struct dv_env e;
    memset(&e, 0, sizeof e);
    e.unique_name = (char *)"contoso-x";
    e.sku = (char *)sku;
    e.is_default = is_default;
    e.has_d365_apps = d365;
    e.retention_days = own;
    e.geo = (char *)"unitedstates";
    return e;
}

static void test_env_table(void **state)
{
    for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
        const struct env_case *c = &env_cases[i];
        struct dv_env e = make_env(c->sku, c->is_default, c->d365, c->own_retention);
        struct dverr err = {0};
        print_message("case %zu: %s default=%d d365=%d own=%d\n", i, c->sku ? c->sku : "(null)",
                      c->is_default, c->d365, c->own_retention);
        assert_int_equal(policy_backup_allowed(&e, &err), c->backup_rc);
        if (c->backup_rc)
            assert_non_null(strstr(dverr_msg(&err), "trial"));
        dverr_clear(&err);
        assert_int_equal(policy_manual_backup_allowed(&e, &err), c->manual_rc);
        if (c->manual_rc)
            assert_true(strlen(dverr_msg(&err)) > 20);
        assert_int_equal(policy_retention_days(&e), c->retention);
        assert_int_equal(policy_expires_at(&e, 1000000), 1000000 + c->retention * 86400);
    }
}

static void test_switch_to_sandbox_shortens(void **state)
{
    struct dv_env e = make_env("Production", false, true, 0);
    time_t taken = 1763715600;
    time_t before = policy_expires_at(&e, taken);
    e.sku = (char *)"Sandbox";
    time_t after = policy_expires_at(&e, taken);
    assert_int_equal(before - taken, 28 * 86400);
    assert_int_equal(after - taken, 7 * 86400);
    /* the same when the admin API still reports the production retention setting */
    e.sku = (char *)"Production";
    e.retention_days = 28;
    assert_int_equal(policy_expires_at(&e, taken) - taken, 28 * 86400);
    e.sku = (char *)"Sandbox";
    assert_int_equal(policy_expires_at(&e, taken) - taken, 7 * 86400);
}

static void test_default_refusal_names_rule(void **state)
{
    struct dv_env e = make_env("Default", true, false, 0);
    struct dverr err = {0};
    assert_int_equal(policy_manual_backup_allowed(&e, &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "default environment"));
    assert_non_null(strstr(dverr_msg(&err), "contoso-x"));
}

struct restore_case {
    const char *target_sku;
    const char *source_geo, *target_geo;
    int64_t free_mb;
    const char *confirm;
    bool audit;
    int rc;
    const char *msg_has;
};

static const struct restore_case restore_cases[] = {
    {"Sandbox", "unitedstates", "unitedstates", 5000, "contoso-x", false, 0, NULL},
    {"Production", "unitedstates", "unitedstates", 5000, "contoso-x", false, -EPERM, "sandbox"},
    {"Trial", "unitedstates", "unitedstates", 5000, "contoso-x", false, -EPERM, "sandbox"},
    {"Sandbox", "unitedstates", "europe", 5000, "contoso-x", false, -EPERM, "region"},
    {"Sandbox", "UnitedStates", "unitedstates", 5000, "contoso-x", false, 0, NULL},
    {"Sandbox", "unitedstates", "unitedstates", 1023, "contoso-x", false, -ENOSPC, "1 GB"},
    {"Sandbox", "unitedstates", "unitedstates", 1024, "contoso-x", false, 0, NULL},
    {"Sandbox", "unitedstates", "unitedstates", 5000, NULL, false, -EINVAL, "confirm"},
    {"Sandbox", "unitedstates", "unitedstates", 5000, "contoso-y", false, -EINVAL, "confirm"},
    {"Sandbox", "unitedstates", "unitedstates", 5000, "contoso-x", true, -EOPNOTSUPP, "audit"},
    /* the first broken rule is the one reported */
    {"Production", "unitedstates", "europe", 0, NULL, true, -EPERM, "sandbox"},
};

static void test_restore_table(void **state)
{
    for (size_t i = 0; i < sizeof restore_cases / sizeof restore_cases[0]; i++) {
        const struct restore_case *c = &restore_cases[i];
        struct dv_env src = make_env("Production", false, true, 0);
        struct dv_env dst = make_env(c->target_sku, false, false, 0);
        src.unique_name = (char *)"contoso-prod";
        src.geo = (char *)c->source_geo;
        dst.geo = (char *)c->target_geo;
        struct dverr err = {0};
        print_message("restore case %zu\n", i);
        assert_int_equal(policy_restore_allowed(&src, &dst, c->free_mb, c->confirm, c->audit, &err),
                         c->rc);
        if (c->msg_has)
            assert_non_null(strstr(dverr_msg(&err), c->msg_has));
        else
            assert_string_equal(dverr_msg(&err), "");
    }
}

static void test_restore_onto_itself(void **state)
{
    struct dv_env e = make_env("Sandbox", false, false, 0);
    struct dverr err = {0};
    assert_int_equal(policy_restore_allowed(&e, &e, 2048, "contoso-x", false, &err), 0);
    struct dv_env d = make_env("Default", true, false, 0);
    assert_int_equal(policy_restore_allowed(&d, &d, 2048, "contoso-x", false, &err), -EPERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_table),
        cmocka_unit_test(test_switch_to_sandbox_shortens),
        cmocka_unit_test(test_default_refusal_names_rule),
        cmocka_unit_test(test_restore_table),
        cmocka_unit_test(test_restore_onto_itself),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
