/* env_view: the environment list (real names, and sanitised unique directory names that do not
 * clash with README.txt or .operations) and, per environment the kernel has seen, its points
 * (oldest first) and labels (sanitised, unique). Requests refresh a list when it is older than
 * ENV_TIMEOUT; the refresher refreshes every list on each pass. A refresh that sees a change
 * notes it (and the points that went away) and wakes the refresher, which tells the kernel.
 * Also the point a name, latest, a label or a time resolves to in an environment, and parsing a
 * time for at/.
 *
 * Limits: an environment's view is kept for the life of the mount; a name that resolves to no
 * point re-reads the list at most every 200 ms; a point that went away but could not be noted
 * (no memory) keeps its kernel entry until it times out.
 * Threading: any thread. fsd->vmu guards the list and the views, and is not held across the
 * source's calls (two refreshes may read the source at once; the last to publish wins). */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"

static uint64_t points_hash(const struct point_summary *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ fs_fnv1a(p[i].name)) * 0x100000001b3ULL;
        h = (h ^ (p[i].held ? 0x9e3779b97f4a7c15ULL : 0)) * 0x100000001b3ULL;
        if (p[i].label)
            h = (h ^ fs_fnv1a(p[i].label)) * 0x100000001b3ULL;
    }
    return h;
}

static void build_labels(struct eview *e)
{
    free(e->labels);
    free(e->label_pt);
    e->labels = NULL;
    e->label_pt = NULL;
    e->n_labels = 0;
    size_t cnt = 0;
    for (size_t i = 0; i < e->n; i++)
        if (e->pts[i].label)
            cnt++;
    if (!cnt)
        return;
    e->labels = calloc(cnt, sizeof *e->labels);
    e->label_pt = calloc(cnt, sizeof *e->label_pt);
    if (!e->labels || !e->label_pt)
        return;
    for (size_t i = 0; i < e->n; i++) {
        if (!e->pts[i].label)
            continue;
        char nm[256];
        name_sanitize(e->pts[i].label, strlen(e->pts[i].label), nm);
        char base[256];
        memcpy(base, nm, sizeof nm);
        for (int k = 2;; k++) {
            bool clash = false;
            for (size_t j = 0; j < e->n_labels && !clash; j++)
                clash = strcmp(e->labels[j], nm) == 0;
            if (!clash)
                break;
            memcpy(nm, base, sizeof nm);
            name_unique_suffix(nm, k);
        }
        memcpy(e->labels[e->n_labels], nm, 256);
        e->label_pt[e->n_labels++] = i;
    }
}

struct eview *eview_find(struct fsd *f, const char *env)
{
    for (struct eview *e = f->eviews; e; e = e->next)
        if (strcmp(e->name, env) == 0)
            return e;
    return NULL;
}

/* Append to e->gone the points of old (n_old) that are not in new (n_new); both are sorted by
 * name (oldest first). vmu held. */
static void eview_note_gone(struct eview *e, const struct point_summary *old, size_t n_old,
                            const struct point_summary *new, size_t n_new)
{
    for (size_t i = 0, j = 0; i < n_old; i++) {
        while (j < n_new && strcmp(new[j].name, old[i].name) < 0)
            j++;
        if (j < n_new && strcmp(new[j].name, old[i].name) == 0)
            continue;
        char(*g)[32] = realloc(e->gone, (e->n_gone + 1) * sizeof *g);
        if (!g)
            return; /* the listing is still dropped; only this entry may stay a while */
        e->gone = g;
        memcpy(e->gone[e->n_gone++], old[i].name, 32);
    }
}

/* Append to e->reheld the points in both old and new whose hold was placed or released (both
 * sorted by name). vmu held. */
static void eview_note_reheld(struct eview *e, const struct point_summary *old, size_t n_old,
                              const struct point_summary *new, size_t n_new)
{
    for (size_t i = 0, j = 0; i < n_old; i++) {
        while (j < n_new && strcmp(new[j].name, old[i].name) < 0)
            j++;
        if (j == n_new || strcmp(new[j].name, old[i].name) != 0 || new[j].held == old[i].held)
            continue;
        char(*g)[32] = realloc(e->reheld, (e->n_reheld + 1) * sizeof *g);
        if (!g)
            return; /* backup.json then shows the change when its view is evicted */
        e->reheld = g;
        memcpy(e->reheld[e->n_reheld++], old[i].name, 32);
    }
}

/* Refresh env's points when older than max_age_ms (-1: always). Returns 1 when the list changed,
 * 0 when not, -errno on failure. Takes vmu itself. */
int eview_refresh(struct fsd *f, const char *env, int max_age_ms)
{
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e && max_age_ms >= 0 && now_ms() - e->at_ms < max_age_ms) {
        pthread_mutex_unlock(&f->vmu);
        return 0;
    }
    pthread_mutex_unlock(&f->vmu);

    struct point_summary *pts = NULL;
    size_t n = 0;
    struct dverr err = {0};
    int rc = f->src->ops->points(f->src->impl, env, &pts, &n, &err);
    if (rc) {
        log_warn("mount: points of %s: %s", env, dverr_msg(&err));
        return rc;
    }
    uint64_t h = points_hash(pts, n);
    pthread_mutex_lock(&f->vmu);
    e = eview_find(f, env);
    if (!e) {
        e = calloc(1, sizeof *e);
        if (e)
            e->name = strdup(env);
        if (!e || !e->name) {
            if (e)
                free(e);
            pthread_mutex_unlock(&f->vmu);
            f->src->ops->points_free(pts, n);
            return -ENOMEM;
        }
        e->next = f->eviews;
        f->eviews = e;
        e->hash = h + 1; /* differs */
    }
    e->at_ms = now_ms();
    int changed = 0;
    if (e->hash != h) {
        struct point_summary *old = e->pts;
        size_t old_n = e->n;
        bool first = e->pts == NULL && e->n == 0 && e->hash == h + 1;
        if (!first) {
            eview_note_gone(e, old, old_n, pts, n);
            eview_note_reheld(e, old, old_n, pts, n);
            e->notify = true;
        }
        e->pts = pts;
        e->n = n;
        e->hash = h;
        build_labels(e);
        pts = old;
        n = old_n;
        changed = first ? 0 : 1;
    }
    pthread_mutex_unlock(&f->vmu);
    if (pts)
        f->src->ops->points_free(pts, n);
    if (changed)
        refresher_wake(f);
    return changed;
}

int envs_refresh(struct fsd *f, int max_age_ms)
{
    pthread_mutex_lock(&f->vmu);
    bool fresh = f->env_names && now_ms() - f->envs_at < max_age_ms;
    pthread_mutex_unlock(&f->vmu);
    if (fresh)
        return 0;
    char **names = NULL;
    size_t n = 0;
    struct dverr err = {0};
    int rc = f->src->ops->envs(f->src->impl, &names, &n, &err);
    if (rc) {
        log_warn("mount: environments: %s", dverr_msg(&err));
        return rc;
    }
    char(*dn)[256] = calloc(n ? n : 1, sizeof *dn);
    if (!dn) {
        strv_free(names, n);
        return -ENOMEM;
    }
    uint64_t h = 0xcbf29ce484222325ULL ^ n;
    for (size_t i = 0; i < n; i++) {
        name_sanitize(names[i], strlen(names[i]), dn[i]);
        char base[256];
        memcpy(base, dn[i], 256);
        for (int k = 2;; k++) {
            bool clash = strcmp(dn[i], ".operations") == 0 || strcmp(dn[i], "README.txt") == 0;
            for (size_t j = 0; j < i && !clash; j++)
                clash = strcmp(dn[j], dn[i]) == 0;
            if (!clash)
                break;
            memcpy(dn[i], base, 256);
            name_unique_suffix(dn[i], k);
        }
        h = (h ^ fs_fnv1a(names[i])) * 0x100000001b3ULL;
    }
    pthread_mutex_lock(&f->vmu);
    char **old = f->env_names;
    size_t old_n = f->n_envs;
    free(f->env_dnames);
    f->env_names = names;
    f->env_dnames = dn;
    f->n_envs = n;
    f->envs_at = now_ms();
    int changed = f->envs_hash != h && old != NULL;
    f->envs_hash = h;
    if (changed)
        f->envs_notify = true;
    pthread_mutex_unlock(&f->vmu);
    strv_free(old, old_n);
    if (changed)
        refresher_wake(f);
    return changed;
}

/* ---- the point a name resolves to in an environment ---- */
struct pinfo env_point_lookup(struct fsd *f, const char *env, const char *name)
{
    struct pinfo pi = {0};
    for (int pass = 0; pass < 2 && !pi.found; pass++) {
        if (pass == 1 && eview_refresh(f, env, 200) <= 0)
            break; /* a miss re-reads the list at most every 200 ms */
        pthread_mutex_lock(&f->vmu);
        struct eview *e = eview_find(f, env);
        for (size_t i = 0; e && i < e->n; i++)
            if (strcmp(e->pts[i].name, name) == 0) {
                memcpy(pi.name, e->pts[i].name, 32);
                pi.taken_at = e->pts[i].taken_at;
                pi.found = true;
                break;
            }
        pthread_mutex_unlock(&f->vmu);
    }
    return pi;
}

struct pinfo env_point_latest(struct fsd *f, const char *env)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e && e->n) {
        memcpy(pi.name, e->pts[e->n - 1].name, 32);
        pi.taken_at = e->pts[e->n - 1].taken_at;
        pi.found = true;
    }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

struct pinfo env_point_at(struct fsd *f, const char *env, time_t t)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    for (size_t i = 0; e && i < e->n; i++)
        if (e->pts[i].taken_at <= t) {
            memcpy(pi.name, e->pts[i].name, 32);
            pi.taken_at = e->pts[i].taken_at;
            pi.found = true;
        }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

struct pinfo env_point_of_label(struct fsd *f, const char *env, const char *label)
{
    struct pinfo pi = {0};
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    for (size_t i = 0; e && i < e->n_labels; i++)
        if (strcmp(e->labels[i], label) == 0) {
            struct point_summary *ps = &e->pts[e->label_pt[i]];
            memcpy(pi.name, ps->name, 32);
            pi.taken_at = ps->taken_at;
            pi.found = true;
        }
    pthread_mutex_unlock(&f->vmu);
    return pi;
}

int fs_parse_at_time(const char *s, time_t *out)
{
    if (rfc3339_to_time(s, out) == 0)
        return 0;
    if (point_name_to_time(s, out) == 0)
        return 0;
    /* a date alone means its end? no: its start, 00:00:00Z */
    struct tm tm = {0};
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (end && *end == '\0') {
        *out = timegm(&tm);
        return 0;
    }
    return -EINVAL;
}
