/* test_policy: the platform's rules as a table of cases (environment type, apps, own retention
 * setting) -> (backed up, manual backups, retention days), plus the restore rules one by one; and
 * the owner's retention rules (retention.h): a GFS policy over a simulated year of points keeps
 * exactly the expected set, the platform's rule alone when no rule is set, keep_within, periods
 * without points, manual backups and holds; the retention keys of the configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/engine/policy.h"
#include "backend/engine/retention.h"

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


/* ---------------------------------------------------------------- retention rules */

#define DAY 86400
#define YEAR_POINTS (365 * 4)

/* A year of system points every 6 hours (2025-01-01T00:00Z .. 2025-12-31T18:00Z), each with the
 * platform's 7 days. */
struct year {
    struct retention_point p[YEAR_POINTS + 4];
    char names[YEAR_POINTS + 4][32];
    size_t n;
    time_t now;
};

static time_t at(const char *rfc3339)
{
    time_t t;
    assert_int_equal(rfc3339_to_time(rfc3339, &t), 0);
    return t;
}

static void year_init(struct year *y, int platform_days)
{
    memset(y, 0, sizeof *y);
    time_t t0 = at("2025-01-01T00:00:00Z");
    for (size_t i = 0; i < YEAR_POINTS; i++) {
        struct retention_point *p = &y->p[y->n];
        point_name_from_time(t0 + (time_t)i * 6 * 3600, y->names[y->n]);
        p->name = y->names[y->n];
        p->taken_at = t0 + (time_t)i * 6 * 3600;
        p->platform_expires = p->taken_at + (time_t)platform_days * DAY;
        y->n++;
    }
    y->now = at("2025-12-31T19:00:00Z");
}

static struct retention_point *year_add(struct year *y, const char *when, bool manual)
{
    struct retention_point *p = &y->p[y->n];
    p->taken_at = at(when);
    point_name_from_time(p->taken_at, y->names[y->n]);
    p->name = y->names[y->n];
    p->manual = manual;
    p->platform_expires = p->taken_at + 7 * DAY;
    y->n++;
    return p;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of the kept points, sorted, joined by spaces. */
static char *kept(struct year *y)
{
    char **v = calloc(y->n, sizeof *v);
    size_t k = 0;
    for (size_t i = 0; i < y->n; i++)
        if (y->p[i].keep)
            v[k++] = y->names[i];
    qsort(v, k, sizeof *v, cmp_str);
    struct buf b = BUF_INIT;
    for (size_t i = 0; i < k; i++)
        buf_printf(&b, "%s%s", i ? " " : "", v[i]);
    free(v);
    return b.data ? buf_detach(&b) : strdup("");
}

static const struct retention_point *find_point(const struct year *y, const char *name)
{
    for (size_t i = 0; i < y->n; i++)
        if (strcmp(y->names[i], name) == 0)
            return &y->p[i];
    fail_msg("no point %s", name);
    return NULL;
}

static struct config_retention no_rules(void)
{
    struct config_retention r = {0};
    r.keep_manual = CONFIG_KEEP_MANUAL_ALL;
    return r;
}

/* keep_daily 7, keep_weekly 4, keep_monthly 12, keep_yearly 3 over a year of points every 6
 * hours, as of 2025-12-31T19:00Z with the platform's 7 days:
 *   the platform keeps the 28 points of Dec 25..31 (after Dec 24T19:00);
 *   keep_daily 7: the 18:00 point of Dec 25..31 (kept already);
 *   keep_weekly 4: ISO weeks 2026-W01 (Dec 29..31) and 2025-W52 (kept already), W51 (Dec 21
 *     18:00) and W50 (Dec 14 18:00);
 *   keep_monthly 12: the last point of each month, Jan 31 .. Nov 30 (and Dec 31);
 *   keep_yearly 3: 2025's last point (Dec 31 18:00; there is no other year).
 * 28 + 2 + 11 = 41 points. */
static void test_gfs_year(void **state)
{
    struct year *y = calloc(1, sizeof *y);
    year_init(y, 7);
    struct config_retention r = no_rules();
    r.keep_daily = 7;
    r.keep_weekly = 4;
    r.keep_monthly = 12;
    r.keep_yearly = 3;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    struct buf want = BUF_INIT;
    static const char *const monthly[] = {"01-31", "02-28", "03-31", "04-30", "05-31", "06-30",
                                          "07-31", "08-31", "09-30", "10-31", "11-30"};
    for (size_t i = 0; i < 11; i++)
        buf_printf(&want, "2025-%sT180000Z ", monthly[i]);
    buf_addstr(&want, "2025-12-14T180000Z 2025-12-21T180000Z");
    for (int d = 25; d <= 31; d++)
        for (int h = 0; h < 24; h += 6)
            buf_printf(&want, " 2025-12-%02dT%02d0000Z", d, h);
    char *got = kept(y);
    assert_string_equal(got, want.data);
    free(got);
    buf_release(&want);
    /* each reason names the rules that keep it, or why it goes */
    assert_string_equal(find_point(y, "2025-12-21T180000Z")->why, "keep_weekly 2025-W51");
    assert_string_equal(find_point(y, "2025-03-31T180000Z")->why, "keep_monthly 2025-03");
    assert_non_null(strstr(find_point(y, "2025-12-31T180000Z")->why,
                           "platform retention until 2026-01-07T18:00:00Z, keep_daily "
                           "2025-12-31, keep_weekly 2026-W01, keep_monthly 2025-12, keep_yearly "
                           "2025"));
    assert_string_equal(find_point(y, "2025-03-31T120000Z")->why,
                        "platform retention ended 2025-04-07T12:00:00Z and no retention rule "
                        "keeps it");
    free(y);
}

/* No rule set: the platform's rule alone (the 28 points of the last 7 days). */
static void test_platform_default_alone(void **state)
{
    struct year *y = calloc(1, sizeof *y);
    year_init(y, 7);
    struct config_retention r = no_rules();
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    size_t n_kept = 0;
    for (size_t i = 0; i < y->n; i++) {
        n_kept += y->p[i].keep;
        assert_int_equal(y->p[i].keep, y->p[i].platform_expires > y->now);
    }
    assert_int_equal(n_kept, 28);
    /* and with rules, every point the platform keeps is still kept */
    r.keep_monthly = 2;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    for (size_t i = 0; i < y->n; i++)
        if (y->p[i].platform_expires > y->now)
            assert_true(y->p[i].keep);
    free(y);
}

/* keep_within counts from the newest point; "all" keeps the newest of every period; a period
 * without points does not use up a count. */
static void test_within_all_and_gaps(void **state)
{
    struct year *y = calloc(1, sizeof *y);
    year_init(y, 0); /* the platform keeps nothing */
    struct config_retention r = no_rules();
    r.keep_within = 2 * DAY;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now + 100 * DAY), 0); /* now does not matter */
    char *got = kept(y);
    assert_string_equal(got, "2025-12-30T000000Z 2025-12-30T060000Z 2025-12-30T120000Z "
                             "2025-12-30T180000Z 2025-12-31T000000Z 2025-12-31T060000Z "
                             "2025-12-31T120000Z 2025-12-31T180000Z");
    free(got);
    r = no_rules();
    r.keep_monthly = CONFIG_KEEP_ALL;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    size_t n_kept = 0;
    for (size_t i = 0; i < y->n; i++)
        n_kept += y->p[i].keep;
    assert_int_equal(n_kept, 12);
    free(y);

    /* points on Mar 1, Mar 5 and Mar 9 only: keep_daily 2 keeps Mar 9 and Mar 5 */
    struct year *g = calloc(1, sizeof *g);
    g->now = at("2025-06-01T00:00:00Z");
    year_add(g, "2025-03-01T10:00:00Z", false);
    year_add(g, "2025-03-05T10:00:00Z", false);
    year_add(g, "2025-03-05T09:00:00Z", false);
    year_add(g, "2025-03-09T10:00:00Z", false);
    r = no_rules();
    r.keep_daily = 2;
    assert_int_equal(retention_decide(&r, g->p, g->n, g->now), 0);
    got = kept(g);
    assert_string_equal(got, "2025-03-05T100000Z 2025-03-09T100000Z");
    free(got);
    free(g);
}

/* Manual backups: kept until forgotten by default (a label like keep-forever is not dropped
 * after 7 days), or by keep_manual; they are outside the GFS counts. A held point is kept
 * whatever the rules. */
static void test_manual_and_held(void **state)
{
    struct year *y = calloc(1, sizeof *y);
    year_init(y, 7);
    struct retention_point *m = year_add(y, "2025-03-15T12:34:00Z", true);
    struct retention_point *h = &y->p[600]; /* 2025-06-30T00:00Z */
    h->held = "audit 2025";
    struct config_retention r = no_rules();
    r.keep_daily = 3;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    assert_true(m->keep);
    assert_non_null(strstr(m->why, "keep_manual all"));
    assert_true(h->keep);
    assert_string_equal(h->why, "held: audit 2025");
    /* the manual point did not take a day of keep_daily: Dec 29..31 are the three days */
    assert_true(find_point(y, "2025-12-29T180000Z")->keep);
    r.keep_manual = 30 * DAY;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    assert_false(m->keep);
    assert_string_equal(m->why, "keep_manual 30d ended 2025-04-14T12:34:00Z");
    assert_true(h->keep); /* held: kept whatever the rules */
    assert_int_equal(retention_decide(&r, y->p, y->n, at("2025-04-01T00:00:00Z")), 0);
    assert_true(m->keep);
    r.keep_manual = CONFIG_KEEP_MANUAL_PLATFORM;
    assert_int_equal(retention_decide(&r, y->p, y->n, y->now), 0);
    assert_false(m->keep);
    free(y);
}

/* The configuration's retention keys: for all environments, and retention.<env>.<key>
 * overrides for one; bad values are refused. */
static int load_config(const char *text, struct config **cfg, struct dverr *err)
{
    char path[] = "/tmp/test_policy_config.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    chmod(path, 0600);
    int rc = config_load(path, cfg, err);
    unlink(path);
    return rc;
}

static void test_retention_config(void **state)
{
    struct config *cfg = NULL;
    struct dverr err = {0};
    assert_int_equal(load_config("keep_daily = 7\nkeep_weekly = 4\nkeep_yearly = all\n"
                                 "keep_within = 2d\nretention.contoso-prod.keep_daily = 30\n"
                                 "retention.contoso-prod.keep_manual = 365d\n"
                                 "retention.contoso-dev.keep_weekly = 0\n",
                                 &cfg, &err),
                     0);
    struct config_retention r;
    config_retention_for(cfg, "contoso-test", &r);
    assert_int_equal(r.keep_daily, 7);
    assert_int_equal(r.keep_weekly, 4);
    assert_int_equal(r.keep_monthly, 0);
    assert_int_equal(r.keep_yearly, CONFIG_KEEP_ALL);
    assert_int_equal(r.keep_within, 2 * DAY);
    assert_int_equal(r.keep_manual, CONFIG_KEEP_MANUAL_ALL); /* the default */
    config_retention_for(cfg, "contoso-prod", &r);
    assert_int_equal(r.keep_daily, 30);
    assert_int_equal(r.keep_weekly, 4);
    assert_int_equal(r.keep_manual, 365 * DAY);
    config_retention_for(cfg, "contoso-dev", &r);
    assert_int_equal(r.keep_daily, 7);
    assert_int_equal(r.keep_weekly, 0);
    assert_int_equal(retention_expires_at(cfg, "contoso-prod", true, 5, 1000), 1000 + 365 * DAY);
    assert_int_equal(retention_expires_at(cfg, "contoso-dev", true, 5, 1000), 0);
    assert_int_equal(retention_expires_at(cfg, "contoso-dev", false, 5, 1000), 5);
    config_free(cfg);
    static const char *const bad[] = {"keep_daily = -1\n", "keep_daily = lots\n",
                                      "keep_manual = 0\n", "keep_manual = forever\n",
                                      "keep_within = soon\n", "retention.contoso-prod.daily = 1\n",
                                      "retention.keep_daily = 1\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cfg = NULL;
        dverr_clear(&err);
        assert_int_equal(load_config(bad[i], &cfg, &err), -EINVAL);
        assert_null(cfg);
        assert_true(strlen(dverr_msg(&err)) > 10);
    }
    assert_int_equal(load_config("keep_manual = platform\nkeep_within = 0\n", &cfg, &err), 0);
    assert_int_equal(cfg->retention.keep_manual, CONFIG_KEEP_MANUAL_PLATFORM);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_table),
        cmocka_unit_test(test_switch_to_sandbox_shortens),
        cmocka_unit_test(test_default_refusal_names_rule),
        cmocka_unit_test(test_restore_table),
        cmocka_unit_test(test_restore_onto_itself),
        cmocka_unit_test(test_gfs_year),
        cmocka_unit_test(test_platform_default_alone),
        cmocka_unit_test(test_within_all_and_gaps),
        cmocka_unit_test(test_manual_and_held),
        cmocka_unit_test(test_retention_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
