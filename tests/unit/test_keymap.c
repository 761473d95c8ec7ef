/* test_keymap: the shared string map (keymap.h): many keys put and found again across growth,
 * binary keys with NULs and keys that are prefixes of each other kept apart, fresh reported once,
 * entries zeroed on insert and their payload kept through growth, iteration over slots sees every
 * key once, a key longer than an arena chunk, release empties the map and leaves it reusable. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/keymap.h"

struct ent {
    uint64_t before; /* payload on both sides of the key fields */
    const char *key;
    uint32_t key_len;
    uint64_t value;
};

static void init(struct keymap *m)
{
    keymap_init(m, sizeof(struct ent), offsetof(struct ent, key), offsetof(struct ent, key_len));
}

static void test_put_get_grow(void **state)
{
    (void)state;
    struct keymap m;
    init(&m);
    assert_null(keymap_get(&m, "a", 1));
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "key-%d", i);
        bool fresh = false;
        struct ent *e = keymap_put(&m, k, (size_t)kl, &fresh);
        assert_non_null(e);
        assert_true(fresh);
        assert_int_equal(e->value, 0);
        assert_int_equal(e->before, 0);
        e->value = (uint64_t)i * 3 + 1;
        e->before = (uint64_t)i;
    }
    assert_int_equal(m.n, n);
    assert_true(m.cap >= (size_t)n * 4 / 3);
    for (int i = 0; i < n; i++) {
        char k[32];
        int kl = snprintf(k, sizeof k, "key-%d", i);
        struct ent *e = keymap_get(&m, k, (size_t)kl);
        assert_non_null(e);
        assert_int_equal(e->value, (uint64_t)i * 3 + 1);
        assert_int_equal(e->before, (uint64_t)i);
        assert_int_equal(e->key_len, kl);
        assert_string_equal(e->key, k);
        bool fresh = true;
        assert_ptr_equal(keymap_put(&m, k, (size_t)kl, &fresh), e);
        assert_false(fresh);
    }
    assert_null(keymap_get(&m, "key-", 4));
    assert_null(keymap_get(&m, "key-100000", 10));
    /* iteration sees every key once */
    size_t seen = 0;
    uint64_t sum = 0;
    for (size_t i = 0; i < m.cap; i++) {
        struct ent *e = keymap_slot(&m, i);
        if (!e->key)
            continue;
        seen++;
        sum += e->before;
    }
    assert_int_equal(seen, n);
    assert_true(sum == (uint64_t)n * (n - 1) / 2);
    keymap_release(&m);
    assert_int_equal(m.n, 0);
    assert_null(keymap_get(&m, "key-1", 5));
    /* reusable after release */
    assert_non_null(keymap_put(&m, "again", 5, NULL));
    assert_non_null(keymap_get(&m, "again", 5));
    keymap_release(&m);
}

static void test_binary_and_long_keys(void **state)
{
    (void)state;
    struct keymap m;
    init(&m);
    const char a[] = {'x', 0, 'y'}, b[] = {'x', 0, 'z'};
    struct ent *ea = keymap_put(&m, a, 3, NULL), *eb;
    ea->value = 1;
    eb = keymap_put(&m, b, 3, NULL);
    eb->value = 2;
    assert_int_equal(((struct ent *)keymap_get(&m, a, 3))->value, 1);
    assert_int_equal(((struct ent *)keymap_get(&m, b, 3))->value, 2);
    assert_null(keymap_get(&m, a, 1)); /* "x" alone is another key */
    assert_non_null(keymap_put(&m, "", 0, NULL));
    assert_non_null(keymap_get(&m, "", 0));
    size_t big = (1u << 20) + 17; /* longer than an arena chunk */
    char *k = malloc(big);
    assert_non_null(k);
    memset(k, 'q', big);
    struct ent *e = keymap_put(&m, k, big, NULL);
    assert_non_null(e);
    e->value = 9;
    k[big - 1] = 'r';
    assert_null(keymap_get(&m, k, big));
    k[big - 1] = 'q';
    assert_int_equal(((struct ent *)keymap_get(&m, k, big))->value, 9);
    assert_int_equal(((struct ent *)keymap_get(&m, a, 3))->value, 1);
    free(k);
    keymap_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_grow),
        cmocka_unit_test(test_binary_and_long_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
