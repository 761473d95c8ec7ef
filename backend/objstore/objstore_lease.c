/* objstore_lease: single-holder leases as generation objects in a store (see objstore_lease.h).
 * Limits: at most ~10^10 generations; a lease document is at most 64 KiB; expiry uses wall clocks.
 * A generation number is never used twice. A release creates the next generation as an expired
 * document (it deletes nothing of its own), and the tidying after a take or a release deletes only
 * the generations below the previous one, oldest first, stopping at a failure: a lease that was
 * ever taken keeps its two newest generations. So a taker's listing that runs while others take
 * and release (a listing is no snapshot: it may miss what is created or deleted meanwhile) still
 * sees the previous generation, which stayed throughout; and a taker whose create of top+1
 * succeeded lists once more and gives the lease up when a higher generation is there (a number
 * whose object was deleted while it stalled), before it counts as held.
 * Append-only stores (objstore.h, s->append_only; issue 16): the holder never deletes nor
 * rewrites an object. A renewal creates the next generation with the same nonce (put_if_absent:
 * of a renewal and a takeover racing for it only one wins, and a renewal that loses means the
 * lease was lost), a release creates the next generation as on any store, and older generations
 * stay until a prune, with the delete-capable credentials, removes them (objstore_lease_gc).
 * Threading: one renewal thread per held lease; l->mu guards lost, stop, expires, gen and the
 * condvar. */
#include "backend/objstore/objstore_lease.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"

#define GEN_DIGITS 10

struct objstore_lease {
    struct objstore *s;        /* not owned */
    char *name;                /* lease name (without the generation) */
    char *purpose;
    char nonce[33];
    uint64_t gen;              /* guarded by mu: our generation (append-only: the newest we wrote) */
    int64_t ttl_s;
    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* CLOCK_MONOTONIC */
    bool stop;                 /* guarded by mu */
    bool lost;                 /* guarded by mu: a higher generation appeared */
    time_t expires;            /* guarded by mu: expiry of the last successful write */
    char lost_msg[256];        /* guarded by mu */
};

int64_t objstore_lease_default_ttl(void)
{
    const char *v = getenv("DVSNAP_LEASE_TTL");
    if (v && *v) {
        int64_t s;
        if (parse_duration(v, &s) == 0 && s > 0)
            return s;
    }
    return OBJSTORE_LEASE_TTL_S;
}

static void gen_name(const char *name, uint64_t gen, char *out, size_t n)
{
    snprintf(out, n, "%s.%0*llu", name, GEN_DIGITS, (unsigned long long)gen);
}

struct gens {
    const char *prefix; /* "NAME." */
    size_t plen;
    uint64_t *v;
    size_t n, cap;
};

static int collect_gen(void *ctx, const char *obj, uint64_t size)
{
    struct gens *g = ctx;
    if (strncmp(obj, g->prefix, g->plen) != 0)
        return 0;
    const char *d = obj + g->plen;
    if (strlen(d) != GEN_DIGITS)
        return 0;
    for (const char *p = d; *p; p++)
        if (*p < '0' || *p > '9')
            return 0;
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        uint64_t *v = realloc(g->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        g->v = v;
        g->cap = cap;
    }
    g->v[g->n++] = strtoull(d, NULL, 10);
    return 0;
}

/* All generations of name, unsorted; *top = the highest (0 when none). */
static int list_gens(struct objstore *s, const char *name, struct gens *g, uint64_t *top,
                     struct dverr *err)
{
    char prefix[1100];
    snprintf(prefix, sizeof prefix, "%s.", name);
    g->prefix = prefix;
    g->plen = strlen(prefix);
    g->n = 0;
    int rc = s->ops->list(s->impl, prefix, collect_gen, g, err);
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    *top = 0;
    for (size_t i = 0; !rc && i < g->n; i++)
        if (g->v[i] > *top)
            *top = g->v[i];
    g->prefix = NULL;
    return rc;
}

static int cmp_gen(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Delete the generations in g below keep_from, oldest first, stopping at the first failure (so a
 * generation is deleted only once every older one is gone); *removed (may be NULL) counts them.
 * 0 or -errno. */
static int remove_below(struct objstore *s, const char *name, struct gens *g, uint64_t keep_from,
                        uint64_t *removed, struct dverr *err)
{
    qsort(g->v, g->n, sizeof *g->v, cmp_gen);
    for (size_t i = 0; i < g->n && g->v[i] < keep_from; i++) {
        char obj[1100];
        gen_name(name, g->v[i], obj, sizeof obj);
        int rc = s->ops->del(s->impl, obj, err);
        if (rc == -ENOENT)
            continue;
        if (rc)
            return rc;
        if (removed)
            (*removed)++;
    }
    return 0;
}

/* After creating generation gen of name on a store that deletes: remove the generations below the
 * previous one (best effort, see the design note), from listed (a listing taken since gen, or the
 * previous one, was created or found ours: no generation below that one appears later) or, when
 * NULL, from a listing of its own. */
static void tidy_after(struct objstore *s, const char *name, uint64_t gen, struct gens *listed)
{
    struct gens g = {0};
    uint64_t top;
    struct dverr ignore;
    dverr_clear(&ignore);
    if (s->append_only || gen <= 1)
        return;
    if (listed)
        remove_below(s, name, listed, gen - 1, NULL, &ignore);
    else if (list_gens(s, name, &g, &top, &ignore) == 0)
        remove_below(s, name, &g, gen - 1, NULL, &ignore);
    free(g.v);
}

struct lease_doc {
    char holder[256];
    long long pid;
    char machine[128];    /* "" in documents written before it was recorded */
    unsigned long long start; /* the holder's start time (clock ticks after boot); 0: unknown */
    char nonce[33];
    char purpose[256];
    time_t expires;
    bool released;        /* an append-only release (its expiry is already past) */
};

static int read_doc(struct objstore *s, const char *name, uint64_t gen, struct lease_doc *d,
                    struct dverr *err)
{
    char obj[1100];
    gen_name(name, gen, obj, sizeof obj);
    struct buf b = BUF_INIT;
    memset(d, 0, sizeof *d);
    int rc = s->ops->get(s->impl, obj, 0, OBJSTORE_TO_END, &b, err);
    if (rc)
        goto out;
    cJSON *j = b.len <= 65536 ? cJSON_ParseWithLength(b.data, b.len) : NULL;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "holder");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pid");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "nonce");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(j, "purpose");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "expires_unix");
    if (!cJSON_IsString(h) || !cJSON_IsString(n) || !cJSON_IsNumber(e)) {
        /* Unreadable: treat as expired long ago, so it can be taken over. */
        log_warn("lease %s is damaged; it counts as expired", obj);
        d->expires = 0;
    } else {
        snprintf(d->holder, sizeof d->holder, "%s", h->valuestring);
        snprintf(d->nonce, sizeof d->nonce, "%s", n->valuestring);
        if (cJSON_IsString(u))
            snprintf(d->purpose, sizeof d->purpose, "%s", u->valuestring);
        d->pid = cJSON_IsNumber(p) ? (long long)p->valuedouble : 0;
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(j, "machine");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(j, "start");
        if (cJSON_IsString(m))
            snprintf(d->machine, sizeof d->machine, "%s", m->valuestring);
        if (cJSON_IsNumber(st) && st->valuedouble > 0)
            d->start = (unsigned long long)st->valuedouble;
        d->expires = (time_t)e->valuedouble;
        d->released = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "released"));
    }
    cJSON_Delete(j);
out:
    buf_release(&b);
    return rc;
}

/* This kernel instance and pid namespace: "<boot id>/<pid namespace inode>", so that a pid in a
 * lease document can be checked here only when it means the same process table.
 * $DVSNAP_TEST_MACHINE replaces it (tests simulating a writer on another machine). "" when
 * unknown. */
static void machine_id(char *out, size_t n)
{
    out[0] = '\0';
    const char *t = getenv("DVSNAP_TEST_MACHINE");
    if (t && *t) {
        snprintf(out, n, "%s", t);
        return;
    }
    char boot[64] = "", ns[64] = "";
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
    if (f) {
        if (!fgets(boot, sizeof boot, f))
            boot[0] = '\0';
        fclose(f);
    }
    boot[strcspn(boot, "\n")] = '\0';
    ssize_t k = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    if (!boot[0] || k <= 0)
        return;
    ns[k] = '\0';
    snprintf(out, n, "%s/%s", boot, ns);
}

/* Start time of process pid (field 22 of /proc/PID/stat, clock ticks after boot); 0 when the
 * process does not exist. */
static unsigned long long proc_start(long long pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    /* after ')': field 3 (state) ... field 22 (starttime) */
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* true when the lease's holder was a process of this machine that no longer runs (killed or
 * crashed): its lease can be taken over at once instead of after its expiry. False whenever
 * that cannot be known for sure (another machine, an older document, a live pid). */
static bool holder_is_dead_here(const struct lease_doc *d)
{
    char me[128];
    machine_id(me, sizeof me);
    if (!me[0] || !d->machine[0] || strcmp(me, d->machine) != 0 || d->pid <= 0 || !d->start)
        return false;
    unsigned long long now = proc_start(d->pid);
    return now != d->start; /* gone, or the pid now names a newer process */
}

static int render_doc(struct objstore_lease *l, uint64_t gen, time_t now, time_t expires,
                      struct buf *out)
{
    char machine[128];
    machine_id(machine, sizeof machine);
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    char acq[32], exp[32];
    rfc3339_from_time(now, acq);
    rfc3339_from_time(expires, exp);
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return -ENOMEM;
    int rc = 0;
    if (!cJSON_AddStringToObject(j, "holder", host) ||
        !cJSON_AddNumberToObject(j, "pid", (double)getpid()) ||
        !cJSON_AddStringToObject(j, "machine", machine) ||
        !cJSON_AddNumberToObject(j, "start", (double)proc_start(getpid())) ||
        !cJSON_AddStringToObject(j, "nonce", l->nonce) ||
        !cJSON_AddStringToObject(j, "purpose", l->purpose) ||
        !cJSON_AddNumberToObject(j, "generation", (double)gen) ||
        !cJSON_AddStringToObject(j, "written", acq) ||
        !cJSON_AddStringToObject(j, "expires", exp) ||
        !cJSON_AddNumberToObject(j, "expires_unix", (double)expires) ||
        (expires < now && !cJSON_AddTrueToObject(j, "released"))) {
        rc = -ENOMEM;
    } else {
        char *txt = cJSON_PrintUnformatted(j);
        if (!txt)
            rc = -ENOMEM;
        else {
            rc = buf_addstr(out, txt);
            free(txt);
        }
    }
    cJSON_Delete(j);
    return rc;
}

/* Write generation gen: create it (put_if_absent) or rewrite it (renewal of a store that is not
 * append-only). released: a document that has expired already (an append-only release). */
static int write_gen(struct objstore_lease *l, uint64_t gen, bool create, bool released,
                     time_t *expires, struct dverr *err)
{
    time_t now = time(NULL);
    time_t exp = released ? now - 1 : now + (time_t)l->ttl_s;
    struct buf b = BUF_INIT;
    char obj[1100];
    gen_name(l->name, gen, obj, sizeof obj);
    int rc = render_doc(l, gen, now, exp, &b);
    if (rc) {
        buf_release(&b);
        return dverr_set(err, rc, "out of memory");
    }
    rc = create ? l->s->ops->put_if_absent(l->s->impl, obj, b.data, b.len, err)
                : l->s->ops->put(l->s->impl, obj, b.data, b.len, err);
    buf_release(&b);
    if (rc == 0)
        *expires = exp;
    return rc;
}

static uint64_t our_gen(struct objstore_lease *l)
{
    pthread_mutex_lock(&l->mu);
    uint64_t g = l->gen;
    pthread_mutex_unlock(&l->mu);
    return g;
}

static void describe(const struct lease_doc *d, char *out, size_t n)
{
    char exp[32], esc[200], pur[200];
    rfc3339_from_time(d->expires, exp);
    snprintf(out, n, "held by %s pid %lld (%s) until %s", log_escape(d->holder, esc, sizeof esc),
             d->pid, log_escape(d->purpose, pur, sizeof pur), exp);
}

/* true when generation gen exists and carries our nonce (an append-only renewal of ours); its
 * document into *d. */
static bool gen_is_ours(struct objstore_lease *l, uint64_t gen, struct lease_doc *d)
{
    struct dverr ignore = {0};
    return read_doc(l->s, l->name, gen, d, &ignore) == 0 && strcmp(d->nonce, l->nonce) == 0;
}

/* Is a generation above ours present? 1 yes, 0 no, -errno. listing (may be NULL) takes the
 * generations listed, for the caller to free, when it returns 0 or 1. */
static int superseded(struct objstore_lease *l, struct gens *listing, struct dverr *err)
{
    struct gens g = {0};
    uint64_t top;
    int rc = list_gens(l->s, l->name, &g, &top, err);
    if (listing && !rc)
        *listing = g;
    else
        free(g.v);
    if (rc)
        return rc;
    if (top <= our_gen(l))
        return 0;
    /* append-only: a renewal by our own thread creates the next generation before it says so */
    struct lease_doc d;
    return l->s->append_only && gen_is_ours(l, top, &d) ? 0 : 1;
}

static void mark_lost(struct objstore_lease *l, const char *why)
{
    pthread_mutex_lock(&l->mu);
    if (!l->lost) {
        l->lost = true;
        snprintf(l->lost_msg, sizeof l->lost_msg, "%s", why);
    }
    pthread_mutex_unlock(&l->mu);
}

static int renew(struct objstore_lease *l)
{
    struct dverr err;
    dverr_clear(&err);
    int sup = superseded(l, NULL, &err);
    if (sup == 1) {
        mark_lost(l, "another writer took the lease over");
        return -ESTALE;
    }
    if (sup < 0) {
        log_warn("lease %s: cannot renew: %s", l->name, dverr_msg(&err));
        return sup;
    }
    time_t exp;
    uint64_t gen = our_gen(l);
    bool append_only = l->s->append_only;
    /* append-only: the next generation, ours by its nonce; a takeover that created it first wins */
    int rc = write_gen(l, append_only ? gen + 1 : gen, append_only, false, &exp, &err);
    if (rc == -EEXIST && append_only) {
        struct lease_doc d;
        if (!gen_is_ours(l, gen + 1, &d)) {
            mark_lost(l, "another writer took the lease over");
            return -ESTALE;
        }
        rc = 0; /* our own renewal whose answer was lost: it is there */
        exp = d.expires;
    }
    if (rc) {
        log_warn("lease %s: cannot renew: %s", l->name, dverr_msg(&err));
        return rc;
    }
    pthread_mutex_lock(&l->mu);
    l->expires = exp;
    if (append_only)
        l->gen = gen + 1;
    pthread_mutex_unlock(&l->mu);
    return 0;
}

static void *renew_thread(void *arg)
{
    struct objstore_lease *l = arg;
    int64_t period_ms = l->ttl_s * 1000 / 3;
    if (period_ms < 200)
        period_ms = 200;
    pthread_mutex_lock(&l->mu);
    while (!l->stop && !l->lost) {
        struct timespec ts = timespec_in_ms(CLOCK_MONOTONIC, (long)period_ms);
        int w = 0;
        while (!l->stop && w != ETIMEDOUT)
            w = pthread_cond_timedwait(&l->cv, &l->mu, &ts);
        if (l->stop)
            break;
        pthread_mutex_unlock(&l->mu);
        renew(l); /* a failure is retried at the next period; check() sees the expiry */
        pthread_mutex_lock(&l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void lease_free(struct objstore_lease *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->name);
    free(l->purpose);
    free(l);
}

int objstore_lease_take(struct objstore *s, const char *name, const char *purpose, int64_t ttl_s,
                        struct objstore_lease **out, struct dverr *err)
{
    *out = NULL;
    char probe[1100];
    if (!name || strlen(name) > 1000)
        return dverr_set(err, -EINVAL, "lease name too long");
    gen_name(name, 1, probe, sizeof probe);
    if (!objstore_name_ok(probe))
        return dverr_set(err, -EINVAL, "invalid lease name");
    struct objstore_lease *l = calloc(1, sizeof *l);
    if (!l)
        return dverr_set(err, -ENOMEM, "out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    l->s = s;
    l->name = strdup(name);
    l->purpose = strdup(purpose ? purpose : "");
    l->ttl_s = ttl_s > 0 ? ttl_s : objstore_lease_default_ttl();
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        lease_free(l);
        return dverr_set(err, -EIO, "no randomness for the lease nonce");
    }
    hex_encode(rnd, sizeof rnd, l->nonce);
    if (!l->name || !l->purpose) {
        lease_free(l);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    struct gens g = {0};
    int rc = -EBUSY;
    bool held = false, listed = false; /* listed: g is a whole listing taken once ours was there */
    for (int attempt = 0; attempt < 8 && !held; attempt++) {
        uint64_t top;
        struct dverr e2;
        dverr_clear(&e2);
        if ((rc = list_gens(s, name, &g, &top, err)))
            break;
        if (top > 0) {
            struct lease_doc d;
            rc = read_doc(s, name, top, &d, &e2);
            if (rc == -ENOENT)
                continue; /* released or cleaned up meanwhile: look again */
            if (rc) {
                dverr_set(err, rc, "%s", dverr_msg(&e2));
                break;
            }
            if (strcmp(d.nonce, l->nonce) == 0) { /* our create whose answer got lost */
                l->gen = top;
                held = listed = true;
                break;
            }
            time_t now = time(NULL);
            bool dead = d.expires > now && holder_is_dead_here(&d);
            if (dead) {
                char who[600];
                describe(&d, who, sizeof who);
                log_warn("lease %s was %s, a process of this machine that is gone: taking it over",
                         name, who);
            } else if (d.expires > now) {
                char who[600];
                describe(&d, who, sizeof who);
                rc = dverr_set(err, -EBUSY, "%s is %s", purpose && *purpose ? purpose : name,
                               who);
                break;
            } else if (d.holder[0] && !d.released) {
                char who[600];
                describe(&d, who, sizeof who);
                log_warn("lease %s expired (%s): taking it over", name, who);
            }
        }
        l->gen = top + 1;
        time_t exp;
        dverr_clear(&e2);
        rc = write_gen(l, l->gen, true, false, &exp, &e2);
        if (rc == 0) {
            l->expires = exp;
            /* Is ours the top? Not when our listing was stale and the number's object had been
             * deleted (design note): then ours is a dead generation below the top, which a later
             * tidying removes, and the lease is looked at again. Unknown (no listing): ours. */
            uint64_t now_top;
            dverr_clear(&e2);
            listed = list_gens(s, name, &g, &now_top, &e2) == 0;
            held = !listed || now_top <= l->gen;
            if (!held)
                rc = -EBUSY;
        } else if (rc != -EEXIST) {
            dverr_set(err, rc, "%s", dverr_msg(&e2));
            break;
        } else {
            /* Someone created this generation first (or our create's answer was lost):
             * look again. */
            rc = -EBUSY;
        }
    }
    if (!held) {
        free(g.v);
        lease_free(l);
        if (rc == 0 || rc == -EBUSY)
            return dverr_set(err, -EBUSY, "%s: the lease is contended; try again", name);
        return rc;
    }
    tidy_after(s, name, l->gen, listed ? &g : NULL);
    free(g.v);
    if (thread_start(&l->thread, renew_thread, l) == 0)
        l->thread_started = true;
    else
        log_warn("lease %s: no renewal thread; it expires in %lld s", name, (long long)l->ttl_s);
    *out = l;
    return 0;
}

int objstore_lease_check(struct objstore_lease *l, struct dverr *err)
{
    if (!l)
        return 0;
    int sup = superseded(l, NULL, err);
    if (sup == 1)
        mark_lost(l, "another writer took the lease over");
    else if (sup < 0)
        return sup;
    pthread_mutex_lock(&l->mu);
    bool lost = l->lost;
    time_t exp = l->expires;
    char msg[256];
    snprintf(msg, sizeof msg, "%s", l->lost_msg);
    pthread_mutex_unlock(&l->mu);
    if (lost)
        return dverr_set(err, -ESTALE, "lease %s lost: %s", l->name, msg);
    if (time(NULL) >= exp)
        return dverr_set(err, -ESTALE, "lease %s expired before it could be renewed", l->name);
    return 0;
}

void objstore_lease_release(struct objstore_lease *l)
{
    if (!l)
        return;
    if (l->thread_started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    /* The next generation, expired at once (a generation number is never used twice, see the
     * design note): -EEXIST means someone took over, and a lease taken over has nothing of ours
     * to free (its next number may even be deleted already: it is not created again). The
     * listing that found ours the top is the one the tidying works from: one listing, not two. */
    struct dverr err;
    dverr_clear(&err);
    time_t exp;
    struct gens listed = {0};
    int sup = superseded(l, &listed, &err);
    bool lost = sup == 1;
    pthread_mutex_lock(&l->mu);
    lost = lost || l->lost;
    uint64_t gen = l->gen;
    pthread_mutex_unlock(&l->mu);
    dverr_clear(&err);
    int rc = lost ? -EEXIST : write_gen(l, gen + 1, true, true, &exp, &err);
    if (rc == 0)
        tidy_after(l->s, l->name, gen + 1, sup == 0 ? &listed : NULL);
    else if (rc != -EEXIST)
        log_warn("lease %s: could not release it (%s); it expires by itself", l->name,
                 dverr_msg(&err));
    free(listed.v);
    lease_free(l);
}

int objstore_lease_holder(struct objstore *s, const char *name, struct buf *out,
                          struct dverr *err)
{
    struct gens g = {0};
    uint64_t top;
    int rc = list_gens(s, name, &g, &top, err);
    free(g.v);
    if (rc || top == 0)
        return rc;
    struct lease_doc d;
    if ((rc = read_doc(s, name, top, &d, err)))
        return rc == -ENOENT ? 0 : rc;
    if (d.expires <= time(NULL) || holder_is_dead_here(&d))
        return 0;
    char who[600];
    describe(&d, who, sizeof who);
    return buf_addstr(out, who);
}

int objstore_lease_wait_free(struct objstore *s, const char *name, int64_t wait_ms,
                             struct dverr *err)
{
    int64_t deadline = now_ms() + wait_ms;
    struct buf who = BUF_INIT;
    int rc;
    for (;;) {
        buf_reset(&who);
        if ((rc = objstore_lease_holder(s, name, &who, err)))
            break;
        if (who.len == 0)
            break;
        if (now_ms() >= deadline) {
            rc = dverr_set(err, -EBUSY, "%s is %s", name, who.data);
            break;
        }
        usleep(500 * 1000);
    }
    buf_release(&who);
    return rc;
}

struct lease_names {
    char **v;
    size_t n, cap;
};

static int collect_lease_name(void *ctx, const char *obj, uint64_t size)
{
    struct lease_names *ln = ctx;
    size_t n = strlen(obj);
    if (n < GEN_DIGITS + 2 || obj[n - GEN_DIGITS - 1] != '.')
        return 0;
    for (size_t i = n - GEN_DIGITS; i < n; i++)
        if (obj[i] < '0' || obj[i] > '9')
            return 0;
    size_t base = n - GEN_DIGITS - 1;
    for (size_t i = 0; i < ln->n; i++)
        if (strlen(ln->v[i]) == base && strncmp(ln->v[i], obj, base) == 0)
            return 0;
    if (ln->n == ln->cap) {
        size_t cap = ln->cap ? ln->cap * 2 : 8;
        char **v = realloc(ln->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        ln->v = v;
        ln->cap = cap;
    }
    if (!(ln->v[ln->n] = strndup(obj, base)))
        return -ENOMEM;
    ln->n++;
    return 0;
}

int objstore_lease_live(struct objstore *s, const char *prefix, const char *except,
                        struct buf *out, int *count, struct dverr *err)
{
    struct lease_names ln = {0};
    *count = 0;
    int rc = s->ops->list(s->impl, prefix, collect_lease_name, &ln, err);
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    for (size_t i = 0; !rc && i < ln.n; i++) {
        if (except && strcmp(ln.v[i], except) == 0)
            continue;
        struct buf who = BUF_INIT;
        rc = objstore_lease_holder(s, ln.v[i], &who, err);
        if (!rc && who.len) {
            (*count)++;
            rc = buf_printf(out, "%s: %s\n", ln.v[i], who.data);
        }
        buf_release(&who);
    }
    for (size_t i = 0; i < ln.n; i++)
        free(ln.v[i]);
    free(ln.v);
    return rc;
}

int objstore_lease_gc(struct objstore *s, const char *prefix, uint64_t *removed,
                      struct dverr *err)
{
    struct lease_names ln = {0};
    *removed = 0;
    int rc = s->ops->list(s->impl, prefix, collect_lease_name, &ln, err);
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    for (size_t i = 0; !rc && i < ln.n; i++) {
        struct gens g = {0};
        uint64_t top;
        if ((rc = list_gens(s, ln.v[i], &g, &top, err)) == 0 && top > 1)
            rc = remove_below(s, ln.v[i], &g, top - 1, removed, err);
        free(g.v);
    }
    for (size_t i = 0; i < ln.n; i++)
        free(ln.v[i]);
    free(ln.v);
    return rc;
}
