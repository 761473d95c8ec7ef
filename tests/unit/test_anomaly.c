/* test_anomaly: the mass-delete rule (anomaly.h) on points built in memory: more than
 * anomaly_delete_percent of a table of at least anomaly_min_rows records flags the point (exactly
 * the threshold does not), a smaller table or a table new in this point never does, 0 turns the
 * check off, several tables are all listed, and the note names the first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "backend/engine/anomaly.h"

static struct point *mk(const char *name, size_t n, const char *const *tables,
                        const uint64_t *records, const uint64_t *deleted)
{
    struct point *p = calloc(1, sizeof *p);
    p->env = strdup("contoso-prod");
    p->name = name ? strdup(name) : NULL;
    p->tables = calloc(n, sizeof *p->tables);
    for (size_t i = 0; i < n; i++) {
        p->tables[i].name = strdup(tables[i]);
        p->tables[i].records = records[i];
        p->tables[i].deleted = deleted[i];
    }
    p->n_tables = n;
    return p;
}

static struct config cfg_of(double percent, int min_rows)
{
    struct config c;
    memset(&c, 0, sizeof c);
    c.anomaly_delete_percent = percent;
    c.anomaly_min_rows = min_rows;
    return c;
}

static void test_threshold(void **state)
{
    const char *const t[] = {"account", "contact", "note"};
    struct point *prev = mk("2026-03-01T080000Z", 3, t, (uint64_t[]){1000, 2000, 999},
                            (uint64_t[]){0, 7, 0});
    struct config c = cfg_of(5, 1000);
    /* exactly 5% of account: not more than the threshold */
    struct point *p = mk(NULL, 3, t, (uint64_t[]){950, 2000, 999}, (uint64_t[]){50, 0, 0});
    assert_int_equal(anomaly_check(&c, prev, p), 0);
    assert_null(p->anomaly_json);
    point_free(p);
    /* 5.1% of account, 10% of contact, 50% of a table under min_rows */
    p = mk(NULL, 3, t, (uint64_t[]){949, 1800, 500}, (uint64_t[]){51, 200, 499});
    assert_int_equal(anomaly_check(&c, prev, p), 0);
    assert_string_equal(p->anomaly_json,
                        "{\"kind\":\"mass_delete\",\"previous_point\":\"2026-03-01T080000Z\","
                        "\"threshold_percent\":5,\"min_rows\":1000,\"tables\":["
                        "{\"table\":\"account\",\"rows_before\":1000,\"deleted\":51,"
                        "\"percent\":5.10,\"created\":0,\"updated\":0,\"deleted_previous_pass\":0},"
                        "{\"table\":\"contact\",\"rows_before\":2000,\"deleted\":200,"
                        "\"percent\":10.00,\"created\":0,\"updated\":0,"
                        "\"deleted_previous_pass\":7}]}");
    char note[240];
    anomaly_note(p->anomaly_json, note, sizeof note);
    assert_string_equal(note, "account: 51 of 1000 records deleted (5.10%), and more tables");
    point_free(p);
    /* a lower min_rows flags the small table too; 0% turns the check off */
    c = cfg_of(5, 100);
    p = mk(NULL, 3, t, (uint64_t[]){1000, 2000, 500}, (uint64_t[]){0, 0, 499});
    assert_int_equal(anomaly_check(&c, prev, p), 0);
    assert_non_null(p->anomaly_json);
    anomaly_note(p->anomaly_json, note, sizeof note);
    assert_string_equal(note, "note: 499 of 999 records deleted (49.95%)");
    free(p->anomaly_json);
    p->anomaly_json = NULL;
    c = cfg_of(0, 100);
    assert_int_equal(anomaly_check(&c, prev, p), 0);
    assert_null(p->anomaly_json);
    /* the first point, or a table the previous point did not have, is never an anomaly */
    c = cfg_of(5, 0);
    assert_int_equal(anomaly_check(&c, NULL, p), 0);
    assert_null(p->anomaly_json);
    point_free(p);
    const char *const t2[] = {"newtable"};
    p = mk(NULL, 1, t2, (uint64_t[]){0}, (uint64_t[]){5000});
    assert_int_equal(anomaly_check(&c, prev, p), 0);
    assert_null(p->anomaly_json);
    point_free(p);
    point_free(prev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
