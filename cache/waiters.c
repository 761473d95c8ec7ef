/* cache waiters: asynchronous reads (cache_file_wait_async, cache_waiter_cancel), so a FUSE worker
 * never waits for a fill. A waiter is registered on c->waiters and answered, on a cache thread,
 * when the frame it needs is published (cache_waiters_kick from the fill), when its fill fails,
 * or by the watchdog thread when its fill made no progress for wait_ms.
 *
 * Limits: the watchdog starts with the first waiter and checks every 100 ms, so a timeout fires
 * up to 100 ms late; when it cannot start, cache_file_wait_async answers 0 and the caller waits
 * in cache_file_pread instead.
 * Threading: c->waiters and every queued waiter's fields are guarded by c->mu; callbacks run with
 * no cache lock held. The watchdog stops (failing every waiter left) in cache_free. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include "cache/cache_int.h"

struct fired {
    struct cache_waiter *list;
};

/* Move waiters of e (every entry when e is NULL) that can be answered to *out (c->mu held):
 * those whose frame is available (rc 0), and, when fail is set, all the others (-EIO). Each
 * fired waiter's outcome is kept in its seen_ field: see fire_run. */
static void waiters_take_locked(struct cache *c, const struct entry *e, bool fail,
                                struct fired *out, int64_t now_ms_)
{
    struct cache_waiter **pp = &c->waiters;
    while (*pp) {
        struct cache_waiter *w = *pp;
        const struct entry *we = w->entry_;
        bool ready = w->frame_ < cache_avail_frames(we);
        bool expired = false;
        if (!ready && now_ms_ > 0) {
            if (cache_avail_frames(we) != w->seen_) {
                w->seen_ = cache_avail_frames(we);
                w->deadline_ = now_ms_ + (int64_t)c->wait_ms;
            } else if (now_ms_ >= w->deadline_) {
                expired = true;
            }
        }
        bool mine = !e || we == e;
        bool failed = !ready && (expired || (mine && fail) || we->state == ENTRY_FAILED);
        if ((mine && ready) || failed) {
            *pp = w->next_;
            w->queued_ = false;
            /* seen_ now carries the outcome: 0 ready, 1 failed, 2 timed out */
            w->seen_ = ready ? 0 : expired ? 2 : 1;
            w->next_ = out->list;
            out->list = w;
        } else {
            pp = &w->next_;
        }
    }
}

/* Run the callbacks of fired waiters (no lock held). */
static void fire_run(struct cache *c, struct fired *fl)
{
    struct cache_waiter *w = fl->list;
    while (w) {
        struct cache_waiter *next = w->next_;
        const struct entry *e = w->entry_;
        char msg[300];
        if (w->seen_ == 0)
            msg[0] = '\0';
        else if (w->seen_ == 2)
            snprintf(msg, sizeof msg, "no progress for %d ms", c->wait_ms);
        else
            snprintf(msg, sizeof msg, "%s", e->state == ENTRY_FAILED ? e->errmsg : "fill stopped");
        w->ready(w, w->seen_ == 0 ? 0 : -EIO, msg);
        w = next;
    }
    fl->list = NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *watchdog_main(void *arg)
{
    struct cache *c = arg;
    pthread_setname_np(pthread_self(), "cache-watch");
    pthread_mutex_lock(&c->mu);
    while (!c->wd_stop || c->waiters) {
        struct fired fl = {0};
        waiters_take_locked(c, NULL, c->wd_stop, &fl, mono_ms());
        if (fl.list) {
            pthread_mutex_unlock(&c->mu);
            fire_run(c, &fl);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (c->wd_stop)
            break;
        struct timespec ts = timespec_in_ms(CLOCK_REALTIME, 100);
        pthread_cond_timedwait(&c->wd_cond, &c->mu, &ts);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Answer the waiters of e that can be answered now (takes c->mu). */
void cache_waiters_kick(struct cache *c, struct entry *e, bool fail)
{
    struct fired fl = {0};
    pthread_mutex_lock(&c->mu);
    if (c->waiters)
        waiters_take_locked(c, e, fail, &fl, 0);
    pthread_mutex_unlock(&c->mu);
    fire_run(c, &fl);
}

int cache_file_wait_async(struct cache_file *f, uint64_t off, size_t n, struct cache_waiter *w)
{
    struct cache *c = f->c;
    struct entry *e = f->e;
    if (off >= e->size || n == 0)
        return 0;
    uint64_t last = off + n > e->size ? e->size - 1 : off + n - 1;
    size_t fi = (size_t)(last / CACHE_FRAME);
    pthread_mutex_lock(&c->mu);
    if (fi < cache_avail_frames(e) || e->state != ENTRY_FILLING) {
        /* readable now, or failed: cache_file_pread answers at once either way */
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    if (!c->watchdog_started) {
        c->watchdog_started = thread_start(&c->watchdog, watchdog_main, c) == 0;
        if (!c->watchdog_started) {
            pthread_mutex_unlock(&c->mu);
            return 0; /* no timer: the caller waits in cache_file_pread instead */
        }
    }
    w->entry_ = e;
    w->frame_ = fi;
    w->seen_ = cache_avail_frames(e);
    w->deadline_ = mono_ms() + c->wait_ms;
    w->queued_ = true;
    w->next_ = c->waiters;
    c->waiters = w;
    pthread_mutex_unlock(&c->mu);
    return -EINPROGRESS;
}

bool cache_waiter_cancel(struct cache_file *f, struct cache_waiter *w)
{
    struct cache *c = f->c;
    bool found = false;
    pthread_mutex_lock(&c->mu);
    if (w->queued_) {
        for (struct cache_waiter **pp = &c->waiters; *pp; pp = &(*pp)->next_)
            if (*pp == w) {
                *pp = w->next_;
                found = true;
                break;
            }
        w->queued_ = false;
    }
    pthread_mutex_unlock(&c->mu);
    return found;
}
