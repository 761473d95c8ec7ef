/* test_objstore_lease: the single-writer lease over the directory store (whose put_if_absent is
 * atomic, like Azure Blob's): take, a second taker refused with the holder named, release,
 * takeover of an expired lease (one winner among racing takers), a damaged lease document,
 * renewal keeping a live holder's lease, a superseded holder noticing it lost the lease, and the
 * repository's use of it: two "machines" (separate catalogs and lock directories) over one store
 * that counts as remote, where the second capture writer of an environment is refused by the
 * lease, takes over after the first one's death, and prune waits for no capture lease.
 * Append-only stores (issue 16): the decorator refuses deletes and overwrites; a lease renews and
 * releases by creating generations, deletes nothing, is still taken over and still notices a
 * takeover; objstore_lease_gc leaves the newest two generations; an environment document is kept
 * as versions, the newest read back. A listing that runs while another taker takes (and releases)
 * the lease neither makes a second holder nor numbers a generation a second time; a release
 * lists the generations once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/objstore/objstore.h"
#include "backend/objstore/objstore_lease.h"
#include "backend/repo/repo.h"

struct fx {
    char dir[64];
    struct objstore *s;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/dvsnap-lease.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(objstore_dir_open(f->dir, &f->s, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    objstore_free(f->s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static bool exists(struct objstore *s, const char *name)
{
    uint64_t size;
    struct dverr err;
    dverr_clear(&err);
    return s->ops->stat(s->impl, name, &size, &err) == 0;
}

static void put_doc(struct objstore *s, const char *name, time_t expires, const char *nonce)
{
    char doc[300];
    snprintf(doc, sizeof doc,
             "{\"holder\":\"ghost\",\"pid\":4242,\"nonce\":\"%s\",\"purpose\":\"capture of x\","
             "\"expires_unix\":%lld}",
             nonce, (long long)expires);
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(s->ops->put(s->impl, name, doc, strlen(doc), &err), 0);
}

static void test_take_refuse_release(void **state)
{
    struct fx *f = *state;
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL, *b = NULL;
    assert_int_equal(objstore_lease_take(f->s, "locks/env1.lease", "capture of env1", 30, &a,
                                         &err),
                     0);
    assert_true(exists(f->s, "locks/env1.lease.0000000001"));
    assert_int_equal(objstore_lease_check(a, &err), 0);
    dverr_clear(&err);
    assert_int_equal(objstore_lease_take(f->s, "locks/env1.lease", "capture of env1", 30, &b,
                                         &err),
                     -EBUSY);
    assert_null(b);
    assert_non_null(strstr(dverr_msg(&err), "capture of env1 is held by"));
    assert_non_null(strstr(dverr_msg(&err), "pid"));
    struct buf h = BUF_INIT;
    dverr_clear(&err);
    assert_int_equal(objstore_lease_holder(f->s, "locks/env1.lease", &h, &err), 0);
    assert_non_null(strstr(h.data, "until"));
    buf_release(&h);
    /* another name is independent */
    dverr_clear(&err);
    assert_int_equal(objstore_lease_take(f->s, "locks/env2.lease", "capture of env2", 30, &b,
                                         &err),
                     0);
    objstore_lease_release(b);
    objstore_lease_release(a);
    /* released by the next generation, expired; the previous one stays (never numbered again) */
    assert_true(exists(f->s, "locks/env1.lease.0000000001"));
    assert_true(exists(f->s, "locks/env1.lease.0000000002"));
    dverr_clear(&err);
    assert_int_equal(objstore_lease_holder(f->s, "locks/env1.lease", &h, &err), 0);
    assert_int_equal(h.len, 0);
    dverr_clear(&err);
    assert_int_equal(objstore_lease_take(f->s, "locks/env1.lease", "again", 30, &a, &err), 0);
    assert_true(exists(f->s, "locks/env1.lease.0000000003"));
    assert_false(exists(f->s, "locks/env1.lease.0000000001")); /* below the previous one */
    objstore_lease_release(a);
}

static void test_takeover_after_expiry(void **state)
{
    struct fx *f = *state;
    put_doc(f->s, "locks/e.lease.0000000005", time(NULL) - 1, "deadbeef");
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL;
    assert_int_equal(objstore_lease_take(f->s, "locks/e.lease", "capture of e", 30, &a, &err), 0);
    assert_true(exists(f->s, "locks/e.lease.0000000006"));
    assert_true(exists(f->s, "locks/e.lease.0000000005")); /* the previous generation stays */
    objstore_lease_release(a);
    assert_true(exists(f->s, "locks/e.lease.0000000007")); /* the release */
    assert_true(exists(f->s, "locks/e.lease.0000000006"));
    assert_false(exists(f->s, "locks/e.lease.0000000005")); /* now below the previous one */
}

static void test_live_foreign_lease_refused(void **state)
{
    struct fx *f = *state;
    put_doc(f->s, "locks/e.lease.0000000003", time(NULL) + 60, "cafe");
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL;
    assert_int_equal(objstore_lease_take(f->s, "locks/e.lease", "capture of e", 30, &a, &err),
                     -EBUSY);
    assert_non_null(strstr(dverr_msg(&err), "ghost pid 4242"));
}

static void test_damaged_lease_counts_as_expired(void **state)
{
    struct fx *f = *state;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(f->s->ops->put(f->s->impl, "locks/d.lease.0000000001", "{nonsense", 9, &err),
                     0);
    struct objstore_lease *a = NULL;
    assert_int_equal(objstore_lease_take(f->s, "locks/d.lease", "x", 30, &a, &err), 0);
    assert_true(exists(f->s, "locks/d.lease.0000000002"));
    objstore_lease_release(a);
}

struct racer {
    struct objstore *s;
    pthread_barrier_t *bar;
    int rc;
    struct objstore_lease *l;
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct dverr err;
    dverr_clear(&err);
    pthread_barrier_wait(r->bar);
    r->rc = objstore_lease_take(r->s, "locks/r.lease", "race", 30, &r->l, &err);
    return NULL;
}

static void run_race(struct objstore *s)
{
    enum { N = 8 };
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    pthread_t t[N];
    struct racer r[N];
    for (int i = 0; i < N; i++) {
        r[i] = (struct racer){s, &bar, 0, NULL};
        pthread_create(&t[i], NULL, race, &r[i]);
    }
    int won = 0, busy = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        won += r[i].rc == 0;
        busy += r[i].rc == -EBUSY;
    }
    assert_int_equal(won, 1);
    assert_int_equal(busy, N - 1);
    for (int i = 0; i < N; i++)
        objstore_lease_release(r[i].l);
    pthread_barrier_destroy(&bar);
}

static void test_racing_takers_one_wins(void **state)
{
    struct fx *f = *state;
    run_race(f->s);                                          /* a free lease */
    put_doc(f->s, "locks/r.lease.0000000007", time(NULL) - 5, "dead"); /* an expired one */
    run_race(f->s);
}

static void test_renewal_keeps_lease(void **state)
{
    struct fx *f = *state;
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL, *b = NULL;
    /* expiry has whole-second resolution: a ttl of 2 s lives 1-2 s after each write */
    assert_int_equal(objstore_lease_take(f->s, "locks/n.lease", "renewed", 2, &a, &err), 0);
    usleep(4500 * 1000); /* past 2 ttl: expired unless renewed */
    assert_int_equal(objstore_lease_check(a, &err), 0);
    assert_int_equal(objstore_lease_take(f->s, "locks/n.lease", "second", 1, &b, &err), -EBUSY);
    objstore_lease_release(a);
}

static void test_superseded_holder_notices(void **state)
{
    struct fx *f = *state;
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL;
    assert_int_equal(objstore_lease_take(f->s, "locks/s.lease", "old", 30, &a, &err), 0);
    /* as if a taker had judged our lease expired (clock skew, a long stall) */
    put_doc(f->s, "locks/s.lease.0000000002", time(NULL) + 60, "other");
    dverr_clear(&err);
    assert_int_equal(objstore_lease_check(a, &err), -ESTALE);
    assert_non_null(strstr(dverr_msg(&err), "took the lease over"));
    objstore_lease_release(a);
    assert_true(exists(f->s, "locks/s.lease.0000000002")); /* the new holder's lease stays */
}

/* A store over another whose next listing of lease generations is not a snapshot: while it runs,
 * another taker takes the lease (and, when release_too, releases it), and the listing shows none
 * of the objects that taker created (a directory listing that had passed their place) and none of
 * those it deleted (gone before the listing reached them). */
struct racy {
    struct objstore *inner;
    bool armed;
    bool release_too;
    bool in_hook;      /* the other taker is at work: record what it creates */
    char hidden[8][128];
    int n_hidden;
    int hook_rc;
    struct objstore_lease *other; /* the other taker's lease, when not released */
    int lists;         /* listings asked of the store */
};

static int racy_put(void *impl, const char *name, const void *data, size_t len,
                    struct dverr *err)
{
    struct racy *r = impl;
    return r->inner->ops->put(r->inner->impl, name, data, len, err);
}

static int racy_put_file(void *impl, const char *name, const char *path, struct dverr *err)
{
    struct racy *r = impl;
    return r->inner->ops->put_file(r->inner->impl, name, path, err);
}

static int racy_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                              struct dverr *err)
{
    struct racy *r = impl;
    int rc = r->inner->ops->put_if_absent(r->inner->impl, name, data, len, err);
    if (rc == 0 && r->in_hook && r->n_hidden < 8)
        snprintf(r->hidden[r->n_hidden++], sizeof r->hidden[0], "%s", name);
    return rc;
}

static int racy_get(void *impl, const char *name, uint64_t off, uint64_t len, struct buf *out,
                    struct dverr *err)
{
    struct racy *r = impl;
    return r->inner->ops->get(r->inner->impl, name, off, len, out, err);
}

static int racy_stat(void *impl, const char *name, uint64_t *size, struct dverr *err)
{
    struct racy *r = impl;
    return r->inner->ops->stat(r->inner->impl, name, size, err);
}

static int racy_del(void *impl, const char *name, struct dverr *err)
{
    struct racy *r = impl;
    return r->inner->ops->del(r->inner->impl, name, err);
}

static struct objstore racy_store;

struct racy_list_ctx {
    struct racy *r;
    int (*fn)(void *ctx, const char *name, uint64_t size);
    void *ctx;
};

static int racy_filter(void *ctx, const char *name, uint64_t size)
{
    struct racy_list_ctx *c = ctx;
    for (int i = 0; i < c->r->n_hidden; i++)
        if (strcmp(name, c->r->hidden[i]) == 0)
            return 0;
    return c->fn(c->ctx, name, size);
}

static int racy_list(void *impl, const char *prefix,
                     int (*fn)(void *ctx, const char *name, uint64_t size), void *ctx,
                     struct dverr *err)
{
    struct racy *r = impl;
    r->lists++;
    if (!r->armed)
        return r->inner->ops->list(r->inner->impl, prefix, fn, ctx, err);
    r->armed = false;
    r->in_hook = true;
    struct dverr e2;
    dverr_clear(&e2);
    char name[128]; /* the prefix is the lease's name and a dot */
    snprintf(name, sizeof name, "%.*s", (int)strlen(prefix) - 1, prefix);
    r->hook_rc = objstore_lease_take(&racy_store, name, "the other taker", 30, &r->other, &e2);
    if (r->release_too) {
        objstore_lease_release(r->other);
        r->other = NULL;
    }
    r->in_hook = false;
    struct racy_list_ctx c = {r, fn, ctx};
    int rc = r->inner->ops->list(r->inner->impl, prefix, racy_filter, &c, err);
    r->n_hidden = 0;
    return rc;
}

static void racy_free(void *impl)
{
    (void)impl;
}

static const struct objstore_ops racy_ops = {
    racy_put, racy_put_file, racy_put_if_absent, racy_get, racy_stat, racy_list, racy_del,
    racy_free, NULL,
};

static void test_listing_racing_a_takeover(void **state)
{
    struct fx *f = *state;
    struct racy r = {.inner = f->s};
    racy_store = (struct objstore){.ops = &racy_ops, .impl = &r};
    struct dverr err;
    /* an expired generation 5: the other taker creates 6 (and tidies) while our listing runs */
    put_doc(f->s, "locks/x.lease.0000000005", time(NULL) - 1, "dead");
    r.armed = true;
    struct objstore_lease *a = NULL;
    dverr_clear(&err);
    int rc = objstore_lease_take(&racy_store, "locks/x.lease", "capture of x", 30, &a, &err);
    assert_int_equal(r.hook_rc, 0); /* the other taker holds it */
    assert_true(exists(f->s, "locks/x.lease.0000000006"));
    assert_false(exists(f->s, "locks/x.lease.0000000001")); /* no number used twice */
    assert_int_equal(rc, -EBUSY);                            /* not two holders */
    assert_null(a);
    objstore_lease_release(r.other);
    r.other = NULL;
    /* a free lease that the other taker takes (1) and releases (2) while our listing runs: ours
     * is the next number, not 1 again */
    r.armed = true;
    r.release_too = true;
    dverr_clear(&err);
    assert_int_equal(objstore_lease_take(&racy_store, "locks/y.lease", "capture of y", 30, &a,
                                         &err),
                     0);
    assert_int_equal(r.hook_rc, 0);
    assert_true(exists(f->s, "locks/y.lease.0000000003"));
    assert_int_equal(objstore_lease_check(a, &err), 0);
    objstore_lease_release(a);
}

/* A release lists the lease's generations once: the listing that finds ours still the top is
 * the one the tidying works from (each listing is a request to a remote store). */
static void test_release_lists_once(void **state)
{
    struct fx *f = *state;
    struct racy r = {.inner = f->s};
    racy_store = (struct objstore){.ops = &racy_ops, .impl = &r};
    put_doc(f->s, "locks/z.lease.0000000005", time(NULL) - 1, "dead");
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL;
    assert_int_equal(objstore_lease_take(&racy_store, "locks/z.lease", "capture of z", 30, &a,
                                         &err),
                     0);
    assert_true(exists(f->s, "locks/z.lease.0000000006"));
    r.lists = 0;
    objstore_lease_release(a);
    assert_int_equal(r.lists, 1);
    assert_true(exists(f->s, "locks/z.lease.0000000007"));  /* the release */
    assert_true(exists(f->s, "locks/z.lease.0000000006"));  /* the previous one stays */
    assert_false(exists(f->s, "locks/z.lease.0000000005")); /* tidied from that one listing */
}

/* A repository over f->dir as another machine would see a remote store: no local_dir, catalog
 * and flock locks in its own directory. */
static struct repo *open_machine(struct fx *f, const char *machine)
{
    struct objstore *s = NULL;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(objstore_dir_open(f->dir, &s, &err), 0);
    free(s->local_dir);
    s->local_dir = NULL; /* behave as a remote store */
    char cat[200];
    snprintf(cat, sizeof cat, "%s/%s/catalog.db", f->dir, machine);
    struct repo *r = NULL;
    int rc = repo_open_store(s, NULL, cat, &r, &err);
    if (rc)
        fprintf(stderr, "%s\n", dverr_msg(&err));
    assert_int_equal(rc, 0);
    return r;
}

/* f->dir again, append-only */
static struct objstore *open_append_only(struct fx *f)
{
    struct objstore *s = NULL;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(objstore_dir_open(f->dir, &s, &err), 0);
    assert_int_equal(objstore_append_only(s), 0);
    assert_true(s->append_only);
    return s;
}

static int count_objects(void *ctx, const char *name, uint64_t size)
{
    (void)name;
    (void)size;
    (*(int *)ctx)++;
    return 0;
}

static int objects_under(struct objstore *s, const char *prefix)
{
    int n = 0;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(s->ops->list(s->impl, prefix, count_objects, &n, &err), 0);
    return n;
}

static void test_append_only_store_refuses(void **state)
{
    struct fx *f = *state;
    struct objstore *s = open_append_only(f);
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(s->ops->put(s->impl, "a/b", "one", 3, &err), 0);
    dverr_clear(&err);
    assert_int_equal(s->ops->put(s->impl, "a/b", "two", 3, &err), -EEXIST);
    assert_non_null(strstr(dverr_msg(&err), "append-only"));
    char path[128];
    snprintf(path, sizeof path, "%s/local", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("three", fp);
    fclose(fp);
    dverr_clear(&err);
    assert_int_equal(s->ops->put_file(s->impl, "a/b", path, &err), -EEXIST);
    dverr_clear(&err);
    assert_int_equal(s->ops->put_file(s->impl, "a/c", path, &err), 0);
    dverr_clear(&err);
    assert_int_equal(s->ops->del(s->impl, "a/b", &err), -EPERM);
    assert_non_null(strstr(dverr_msg(&err), "prune credentials"));
    struct buf b = BUF_INIT;
    dverr_clear(&err);
    assert_int_equal(s->ops->get(s->impl, "a/b", 0, OBJSTORE_TO_END, &b, &err), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, "one", 3);
    buf_release(&b);
    objstore_free(s);
}

static void test_append_only_lease(void **state)
{
    struct fx *f = *state;
    struct objstore *s = open_append_only(f);
    struct dverr err;
    dverr_clear(&err);
    struct objstore_lease *a = NULL, *b = NULL;
    assert_int_equal(objstore_lease_take(s, "locks/e.lease", "capture of e", 2, &a, &err), 0);
    usleep(3500 * 1000); /* past the ttl: alive only through renewals, which add generations */
    assert_int_equal(objstore_lease_check(a, &err), 0);
    int renewed = objects_under(s, "locks/");
    assert_true(renewed >= 3);
    assert_true(exists(s, "locks/e.lease.0000000001")); /* never deleted */
    dverr_clear(&err);
    assert_int_equal(objstore_lease_take(s, "locks/e.lease", "second", 2, &b, &err), -EBUSY);
    objstore_lease_release(a); /* an expired generation on top: free at once */
    assert_int_equal(objects_under(s, "locks/"), renewed + 1);
    struct buf who = BUF_INIT;
    dverr_clear(&err);
    assert_int_equal(objstore_lease_holder(s, "locks/e.lease", &who, &err), 0);
    assert_int_equal(who.len, 0);
    buf_release(&who);
    assert_int_equal(objstore_lease_take(s, "locks/e.lease", "second", 30, &b, &err), 0);
    /* a takeover above it is noticed although renewals also add generations */
    char top[64];
    snprintf(top, sizeof top, "locks/e.lease.%010d", renewed + 3);
    put_doc(f->s, top, time(NULL) + 60, "other");
    dverr_clear(&err);
    assert_int_equal(objstore_lease_check(b, &err), -ESTALE);
    objstore_lease_release(b); /* lost: writes nothing */
    assert_int_equal(objects_under(s, "locks/"), renewed + 3);
    /* prune, with delete rights (the plain store), keeps the newest generation and the one
     * before it (a generation number is never used twice) */
    uint64_t removed = 0;
    dverr_clear(&err);
    assert_int_equal(objstore_lease_gc(f->s, "locks/", &removed, &err), 0);
    assert_int_equal(removed, (uint64_t)renewed + 1);
    assert_int_equal(objects_under(s, "locks/"), 2);
    assert_true(exists(s, top));
    objstore_free(s);
}

static void test_append_only_env_doc(void **state)
{
    struct fx *f = *state;
    struct objstore *s = open_append_only(f);
    char cat[200];
    snprintf(cat, sizeof cat, "%s/cat/catalog.db", f->dir);
    struct repo *r = NULL;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(repo_open_store(s, NULL, cat, &r, &err), 0);
    assert_int_equal(repo_env_doc_put(r, "contoso-dev", "{\"v\":1}", &err), 0);
    assert_int_equal(repo_env_doc_put(r, "contoso-dev", "{\"v\":1}", &err), 0); /* the same */
    assert_int_equal(objects_under(f->s, "envs/"), 1);
    sleep(1); /* versions are named by the second, and a random tag */
    assert_int_equal(repo_env_doc_put(r, "contoso-dev", "{\"v\":2}", &err), 0);
    assert_int_equal(objects_under(f->s, "envs/contoso-dev/"), 2);
    assert_false(exists(f->s, "envs/contoso-dev.json"));
    struct buf b = BUF_INIT;
    assert_int_equal(repo_env_doc(r, "contoso-dev", &b, &err), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "{\"v\":2}", 7);
    buf_release(&b);
    char **envs = NULL;
    size_t n = 0;
    assert_int_equal(repo_envs(r, &envs, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_string_equal(envs[0], "contoso-dev");
    for (size_t i = 0; i < n; i++)
        free(envs[i]);
    free(envs);
    repo_free(r);
}

static void test_repo_writer_lease(void **state)
{
    struct fx *f = *state;
    struct repo *a = open_machine(f, "machine-a"), *b = open_machine(f, "machine-b");
    struct repo_capture *ca = NULL, *cb = NULL;
    struct dverr err;
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(a, "contoso-dev", &ca, &err), 0);
    assert_true(exists(f->s, "locks/contoso-dev.lease.0000000001"));
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(b, "contoso-dev", &cb, &err), -EBUSY);
    assert_non_null(strstr(dverr_msg(&err), "the capture of contoso-dev is held by"));
    /* another environment is not affected */
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(b, "contoso-prod", &cb, &err), 0);
    repo_capture_abort(cb);
    /* prune (remote) backs off while a capture lease is live: checked through the lease list */
    struct buf who = BUF_INIT;
    int live = 0;
    assert_int_equal(objstore_lease_live(f->s, "locks/", "locks/prune.lease", &who, &live, &err),
                     0);
    assert_int_equal(live, 1);
    assert_non_null(strstr(who.data, "locks/contoso-dev.lease: held by"));
    buf_release(&who);
    repo_capture_abort(ca);
    assert_true(exists(f->s, "locks/contoso-dev.lease.0000000002")); /* released */
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(b, "contoso-dev", &cb, &err), 0);
    assert_true(exists(f->s, "locks/contoso-dev.lease.0000000003"));
    repo_capture_abort(cb);
    /* a dead writer's lease (not renewed, expired) is taken over */
    put_doc(f->s, "locks/contoso-dev.lease.0000000009", time(NULL) - 1, "dead");
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(b, "contoso-dev", &cb, &err), 0);
    assert_true(exists(f->s, "locks/contoso-dev.lease.0000000010"));
    repo_capture_abort(cb);
    /* prune with no capture running takes and releases its own lease */
    struct prune_report rep;
    dverr_clear(&err);
    assert_int_equal(repo_prune(a, time(NULL), true, NULL, NULL, &rep, &err), 0);
    assert_true(exists(f->s, "locks/prune.lease.0000000002")); /* released */
    prune_report_release(&rep);
    /* a capture waits for a live prune lease: a foreign one that expires in 2 s */
    put_doc(f->s, "locks/prune.lease.0000000003", time(NULL) + 2, "pruner");
    int64_t t0 = now_ms();
    dverr_clear(&err);
    assert_int_equal(repo_capture_begin(a, "contoso-dev", &ca, &err), 0);
    assert_true(now_ms() - t0 >= 900);
    repo_capture_abort(ca);
    repo_free(a);
    repo_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_take_refuse_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takeover_after_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_foreign_lease_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_lease_counts_as_expired, setup, teardown),
        cmocka_unit_test_setup_teardown(test_racing_takers_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_keeps_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_superseded_holder_notices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listing_racing_a_takeover, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_lists_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repo_writer_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only_store_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only_lease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_only_env_doc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
