/* test_objstore: the directory driver and objstore_open dispatch: put/get with ranges, stat,
 * put_if_absent, put_file, listing by prefix (temp files hidden), delete, and name validation. */
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

#include "backend/objstore/objstore.h"

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/test_objstore.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int count_cb(void *ctx, const char *name, uint64_t size)
{
    struct buf *b = ctx;
    buf_printf(b, "%s:%llu;", name, (unsigned long long)size);
    return 0;
}

static void test_dir_roundtrip(void **state)
{
    struct objstore *s = NULL;
    struct dverr e = {0};
    assert_int_equal(objstore_open(dir, NULL, &s, &e), 0);
    assert_non_null(s->local_dir);
    assert_int_equal(s->ops->put(s->impl, "objects/ab/abc", "0123456789", 10, &e), 0);
    struct buf b = BUF_INIT;
    assert_int_equal(s->ops->get(s->impl, "objects/ab/abc", 0, OBJSTORE_TO_END, &b, &e), 0);
    assert_string_equal(b.data, "0123456789");
    buf_reset(&b);
    assert_int_equal(s->ops->get(s->impl, "objects/ab/abc", 3, 4, &b, &e), 0);
    assert_string_equal(b.data, "3456");
    buf_reset(&b);
    assert_int_equal(s->ops->get(s->impl, "objects/ab/abc", 8, 4, &b, &e), -EIO); /* short */
    assert_int_equal(s->ops->get(s->impl, "objects/ab/nope", 0, 1, &b, &e), -ENOENT);
    uint64_t size = 0;
    assert_int_equal(s->ops->stat(s->impl, "objects/ab/abc", &size, &e), 0);
    assert_int_equal(size, 10);
    assert_int_equal(s->ops->put_if_absent(s->impl, "locks/x", "a", 1, &e), 0);
    assert_int_equal(s->ops->put_if_absent(s->impl, "locks/x", "b", 1, &e), -EEXIST);
    buf_reset(&b);
    assert_int_equal(s->ops->get(s->impl, "locks/x", 0, OBJSTORE_TO_END, &b, &e), 0);
    assert_string_equal(b.data, "a");

    /* put_file: the object has the file's bytes; the local file may then go away */
    char local[128];
    snprintf(local, sizeof local, "%s/local.bin", dir);
    FILE *fp = fopen(local, "w");
    fputs("file bytes", fp);
    fclose(fp);
    assert_int_equal(s->ops->put_file(s->impl, "objects/cd/cdef", local, &e), 0);
    unlink(local);
    buf_reset(&b);
    assert_int_equal(s->ops->get(s->impl, "objects/cd/cdef", 0, OBJSTORE_TO_END, &b, &e), 0);
    assert_string_equal(b.data, "file bytes");

    /* a temp file left by a crashed writer is not listed */
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s/objects/ab/.tmp-1-2-abc", dir);
    fp = fopen(tmp, "w");
    fclose(fp);
    buf_reset(&b);
    assert_int_equal(s->ops->list(s->impl, "objects/", count_cb, &b, &e), 0);
    assert_non_null(strstr(b.data, "objects/ab/abc:10;"));
    assert_non_null(strstr(b.data, "objects/cd/cdef:10;"));
    assert_null(strstr(b.data, ".tmp"));
    assert_null(strstr(b.data, "locks/"));
    buf_reset(&b);
    assert_int_equal(s->ops->list(s->impl, "objects/c", count_cb, &b, &e), 0);
    assert_string_equal(b.data, "objects/cd/cdef:10;");
    buf_reset(&b);
    assert_int_equal(s->ops->list(s->impl, "nothing/", count_cb, &b, &e), 0);
    assert_int_equal(b.len, 0);

    assert_int_equal(s->ops->del(s->impl, "objects/ab/abc", &e), 0);
    assert_int_equal(s->ops->del(s->impl, "objects/ab/abc", &e), -ENOENT);
    buf_release(&b);
    objstore_free(s);
}

static void test_names(void **state)
{
    assert_true(objstore_name_ok("points/contoso-prod/2026-11-21T090000Z.json"));
    assert_false(objstore_name_ok("../etc/passwd"));
    assert_false(objstore_name_ok("a/../b"));
    assert_false(objstore_name_ok("/abs"));
    assert_false(objstore_name_ok("a//b"));
    assert_false(objstore_name_ok("a/b/"));
    assert_false(objstore_name_ok("a b"));
    assert_false(objstore_name_ok(""));
    struct objstore *s = NULL;
    struct dverr e = {0};
    assert_int_equal(objstore_dir_open(dir, &s, &e), 0);
    assert_int_equal(s->ops->put(s->impl, "../escape", "x", 1, &e), -EINVAL);
    objstore_free(s);
}

static void test_open_dispatch(void **state)
{
    struct objstore *s = NULL;
    struct dverr e = {0};
    char loc[128];
    snprintf(loc, sizeof loc, "file://%s", dir);
    assert_int_equal(objstore_open(loc, NULL, &s, &e), 0);
    objstore_free(s);
    assert_int_equal(objstore_open("ftp://x/y", NULL, &s, &e), -ENOTSUP);
    assert_null(s);
    assert_int_equal(objstore_open("/nonexistent/dvsnap/repo", NULL, &s, &e), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dir_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_dispatch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
