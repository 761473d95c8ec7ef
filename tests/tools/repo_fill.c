/* repo_fill: build a synthetic repository through the public repo.h API, for the mount tests and
 * the benchmarks (no Dataverse, no dvsim: records are generated).
 *
 *   repo_fill --repo DIR [--envs N] [--points P] [--tables T] [--records R] [--churn F]
 *             [--record-bytes B] [--seed S] [--start UNIX] [--interval SEC] [--retention-days D]
 *             [--manual-every K] [--no-sync] [--quiet] [--password-file FILE]
 *   repo_fill --repo DIR --cat ENV POINT TABLE        stream tables/TABLE.json of a point
 *   repo_fill --repo DIR --changes ENV POINT TABLE    stream changes/TABLE.json
 *   repo_fill --repo DIR --expect ENV POINT TABLE     print the table file this tool meant to write
 *                                                      (regenerates the history; for tests)
 *
 * Environments are env-01..env-N; tables table01..tableT with primary key "<table>id"; record keys
 * are GUID-shaped and sorted. The first point of each environment writes a base segment per table;
 * every later point changes F*R records per table (80% updates, 10% deletes, 10% creates) as a delta
 * segment, compacting when repo_table_should_compact says so. Every K-th point is a manual backup
 * labelled "manual-<n>". Deterministic for a given seed. Creates the repository when missing.
 * Prints a summary line (points, segments, seconds) unless --quiet. --no-sync skips fsync when
 * publishing objects (test fixtures only: ~5x faster, not crash-safe). --password-file creates the
 * repository encrypted with the password in FILE (mode 0600), and opens it with it; without it
 * the repository is unencrypted. Single-threaded. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/config.h"
#include "backend/repo/repo.h"

/* --no-sync: the directory store with put/put_file that skip fsync (fixtures only). */
static const struct objstore_ops *dir_ops;
static const char *nosync_root;

static int nosync_path(const char *name, char *path, size_t n, char *tmp, size_t tn)
{
    static unsigned counter;
    if (!objstore_name_ok(name) || snprintf(path, n, "%s/%s", nosync_root, name) >= (int)n ||
        snprintf(tmp, tn, "%s/tmp/.fill-%d-%u", nosync_root, (int)getpid(), counter++) >= (int)tn)
        return -EINVAL;
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    return mkdir_p(dir, 0755);
}

static int nosync_put(void *impl, const char *name, const void *data, size_t len,
                      struct dverr *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = nosync_path(name, path, sizeof path, tmp, sizeof tmp);
    if (rc)
        return dverr_set(err, rc, "%s: bad name", name);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return dverr_set(err, -errno, "%s: %s", tmp, strerror(errno));
    rc = fwrite(data, 1, len, f) == len ? 0 : -EIO;
    if (fclose(f) || rc || rename(tmp, path))
        return dverr_set(err, -EIO, "%s: write failed", name);
    return 0;
}

static int nosync_put_file(void *impl, const char *name, const char *local, struct dverr *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = nosync_path(name, path, sizeof path, tmp, sizeof tmp);
    if (rc)
        return dverr_set(err, rc, "%s: bad name", name);
    if (link(local, tmp) || rename(tmp, path))
        return dir_ops->put_file(impl, name, local, err);
    return 0;
}

static int nosync_put_if_absent(void *impl, const char *name, const void *data, size_t len,
                                struct dverr *err)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int rc = nosync_path(name, path, sizeof path, tmp, sizeof tmp);
    if (rc)
        return dverr_set(err, rc, "%s: bad name", name);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return dverr_set(err, -errno, "%s: %s", tmp, strerror(errno));
    rc = fwrite(data, 1, len, f) == len ? 0 : -EIO;
    if (fclose(f) || rc) {
        unlink(tmp);
        return dverr_set(err, -EIO, "%s: write failed", name);
    }
    rc = link(tmp, path) ? -errno : 0;
    unlink(tmp);
    return rc ? dverr_set(err, rc, "%s: %s", name, strerror(-rc)) : 0;
}

static struct objstore_ops nosync_ops;

struct opts {
    const char *repo;
    int envs, points, tables;
    long records;
    double churn;
    int record_bytes;
    unsigned long long seed;
    long long start, interval;
    int retention_days;
    int manual_every;
    int quiet;
    int no_sync;
    const char *password_file;
};

struct table_state {
    char name[32], pk[40];
    int *ver;          /* per record index: 0 never created, >0 version, <0 deleted */
    long n, cap;       /* indices in use */
    uint64_t records, line_bytes;
    char **chain;
    size_t n_chain;
};

static unsigned long long rng_next(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void rec_key(char *out, size_t n, int env, int table, long i)
{
    snprintf(out, n, "%08lx-%04x-4%03x-8000-%012llx", (unsigned long)i, (unsigned)env & 0xffff,
             (unsigned)table & 0xfff, (unsigned long long)i * 2654435761ull % 1000000000000ull);
}

static void rec_line(struct buf *b, const struct opts *o, const struct table_state *t, int env,
                     int table, long i, int ver)
{
    char key[64];
    rec_key(key, sizeof key, env, table, i);
    buf_reset(b);
    buf_printf(b, "{\"%s\":\"%s\",\"@odata.etag\":\"W/\\\"%ld%03d\\\"\",\"amount\":%ld.%02d,"
                  "\"big\":9007199254740993%d,\"name\":\"Record %ld of %s\",\"statecode\":%d,"
                  "\"statecode@OData.Community.Display.V1.FormattedValue\":\"%s\",\"pad\":\"",
               t->pk, key, i, ver, i * 7 % 100000, ver % 100, ver % 10, i, t->name, ver & 1,
               ver & 1 ? "Inactive" : "Active");
    static const char *words[32] = {
        "account", "contact", "invoice", "street", "north", "south", "west", "east", "London",
        "Seattle", "Paris", "order", "shipped", "pending", "customer", "partner", "vendor",
        "phone", "email", "note", "follow", "up", "call", "meeting", "quote", "renewal", "the",
        "of", "and", "for", "with", "service"};
    unsigned long long x = (unsigned long long)i * 0x9E3779B97F4A7C15ull + (unsigned)ver * 7919u + 1;
    while ((int)b->len < o->record_bytes - 3) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 5 == 0)
            buf_printf(b, "%llu ", x % 100000);
        else
            buf_printf(b, "%s ", words[x % 32]);
    }
    buf_addstr(b, "\"}");
}

static int die(const char *what, const struct dverr *e)
{
    fprintf(stderr, "repo_fill: %s: %s\n", what, dverr_msg(e));
    return 1;
}

static int grow(struct table_state *t, long n)
{
    if (n <= t->cap)
        return 0;
    long cap = t->cap ? t->cap : 1024;
    while (cap < n)
        cap *= 2;
    int *v = realloc(t->ver, (size_t)cap * sizeof *v);
    if (!v)
        return -ENOMEM;
    memset(v + t->cap, 0, (size_t)(cap - t->cap) * sizeof *v);
    t->ver = v;
    t->cap = cap;
    return 0;
}

static int stream(struct repo *r, const char *env, const char *point, const char *table,
                  bool changes)
{
    struct dverr e = {0};
    struct point *p = NULL;
    struct table_reader *tr = NULL;
    if (repo_point_load(r, env, point, &p, &e))
        return die("loading the point", &e);
    int rc = changes ? changes_reader_open(r, p, table, &tr, &e)
                     : table_reader_open(r, p, table, &tr, &e);
    if (rc) {
        point_free(p);
        return die("opening the table", &e);
    }
    size_t cap = getenv("CHUNK") ? (size_t)strtoul(getenv("CHUNK"), NULL, 10) : 1 << 17;
    char *buf = malloc(cap);
    ssize_t n;
    while ((n = table_reader_read(tr, buf, cap, &e)) > 0)
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n)
            break;
    table_reader_free(tr);
    point_free(p);
    free(buf);
    if (n < 0)
        return die("reading", &e);
    return fflush(stdout) ? 1 : 0;
}

/* Generate (or replay, when r is NULL) the history; for --expect, print the wanted table. */
static int fill(struct repo *r, const struct opts *o, const char *x_env, const char *x_point,
                const char *x_table)
{
    struct dverr e = {0};
    struct buf line = BUF_INIT;
    uint64_t n_points = 0, n_segments = 0;
    int64_t t_begin = 0, t_commit = 0, t_finish = 0, t0 = now_ms();
    char key[64];
    for (int en = 1; en <= o->envs; en++) {
        char env[32];
        snprintf(env, sizeof env, "env-%02d", en);
        unsigned long long rng = o->seed * 1000003ull + (unsigned long long)en;
        struct table_state *ts = calloc((size_t)o->tables, sizeof *ts);
        for (int ti = 0; ti < o->tables; ti++) {
            snprintf(ts[ti].name, sizeof ts[ti].name, "table%02d", ti + 1);
            snprintf(ts[ti].pk, sizeof ts[ti].pk, "table%02did", ti + 1);
        }
        for (int pn = 0; pn < o->points; pn++) {
            struct repo_capture *c = NULL;
            int64_t tb = now_ms();
            if (r && repo_capture_begin(r, env, &c, &e))
                return die("capture_begin", &e);
            t_begin += now_ms() - tb;
            struct point *p = calloc(1, sizeof *p);
            p->env = strdup(env);
            bool manual = o->manual_every > 0 && (pn + 1) % o->manual_every == 0;
            p->kind = strdup(manual ? "manual" : "system");
            if (manual) {
                char label[32];
                snprintf(label, sizeof label, "manual-%d", pn + 1);
                p->label = strdup(label);
            }
            p->taken_at = (time_t)(o->start + (long long)pn * o->interval);
            p->expires_at = o->retention_days ? p->taken_at + (time_t)o->retention_days * 86400 : 0;
            p->not_captured_json = strdup("[{\"what\":\"apps\",\"reason\":\"not in scope\"}]");
            p->tables = calloc((size_t)o->tables, sizeof *p->tables);
            p->n_tables = (size_t)o->tables;
            for (int ti = 0; ti < o->tables; ti++) {
                struct table_state *t = &ts[ti];
                struct segment_writer *w = NULL;
                if (r && segment_writer_new(r, &w, &e))
                    return die("segment_writer_new", &e);
                uint64_t created = 0, updated = 0, deleted = 0;
                if (pn == 0) {
                    if (grow(t, o->records))
                        return 1;
                    t->n = o->records;
                    for (long i = 0; i < t->n; i++) {
                        t->ver[i] = 1;
                        rec_line(&line, o, t, en, ti, i, 1);
                        t->records++;
                        t->line_bytes += line.len;
                        created++;
                        if (!r)
                            continue;
                        rec_key(key, sizeof key, en, ti, i);
                        if (segment_writer_add(w, SEG_BASE, key, strlen(key), line.data, line.len, &e) ||
                            repo_capture_state_put(c, t->name, key, strlen(key),
                                                   repo_line_hash(r, line.data, line.len),
                                                   line.len, false))
                            return die("writing a base", &e);
                    }
                } else {
                    long changes = (long)(o->churn * (double)o->records + 0.5);
                    for (long k = 0; k < changes; k++) {
                        unsigned long long x = rng_next(&rng);
                        int kind = (int)(x % 10);
                        long i;
                        char op;
                        if (kind == 0 || t->n == 0) { /* create */
                            if (grow(t, t->n + 1))
                                return 1;
                            i = t->n++;
                            t->ver[i] = 1;
                            op = SEG_CREATE;
                        } else {
                            i = (long)((x >> 8) % (unsigned long long)t->n);
                            if (t->ver[i] <= 0)
                                continue;
                            rec_line(&line, o, t, en, ti, i, t->ver[i]);
                            t->line_bytes -= line.len;
                            t->records--;
                            if (kind == 1) {
                                t->ver[i] = -t->ver[i];
                                op = SEG_DELETE;
                            } else {
                                t->ver[i]++;
                                op = SEG_UPDATE;
                            }
                        }
                        if (op != SEG_DELETE) {
                            rec_line(&line, o, t, en, ti, i, t->ver[i]);
                            t->line_bytes += line.len;
                            t->records++;
                        }
                        created += op == SEG_CREATE;
                        updated += op == SEG_UPDATE;
                        deleted += op == SEG_DELETE;
                        if (!r)
                            continue;
                        rec_key(key, sizeof key, en, ti, i);
                        if (segment_writer_add(w, (enum segment_op)op, key, strlen(key), line.data,
                                               op == SEG_DELETE ? 0 : line.len, &e) ||
                            repo_capture_state_put(c, t->name, key, strlen(key),
                                                   repo_line_hash(r, line.data, line.len), line.len,
                                                   op == SEG_DELETE))
                            return die("writing a delta", &e);
                    }
                }
                struct point_table *pt = &p->tables[ti];
                pt->name = strdup(t->name);
                pt->entity_set = strdup(t->name);
                pt->primary_key = strdup(t->pk);
                pt->records = t->records;
                pt->bytes = t->records ? t->line_bytes + 2 * t->records + 3 : 4;
                pt->created = created;
                pt->updated = updated;
                pt->deleted = deleted;
                pt->changes_bytes = 4;
                if (r) {
                    char id[65];
                    struct segment_stats st;
                    int64_t tf = now_ms();
                    if (segment_writer_finish_stats(w, id, &st, &e))
                        return die("segment_writer_finish", &e);
                    t_finish += now_ms() - tf;
                    if (id[0]) {
                        n_segments++;
                        t->chain = realloc(t->chain, (t->n_chain + 1) * sizeof *t->chain);
                        t->chain[t->n_chain++] = strdup(id);
                        pt->delta = strdup(id);
                        pt->changes_bytes = st.changes_bytes;
                    }
                    pt->segments = calloc(t->n_chain + 1, sizeof *pt->segments);
                    for (size_t k = 0; k < t->n_chain; k++)
                        pt->segments[k] = strdup(t->chain[k]);
                    pt->n_segments = t->n_chain;
                    if (repo_table_should_compact(r, pt)) {
                        uint64_t recs, bytes;
                        if (repo_write_base(r, pt, id, &recs, &bytes, &e))
                            return die("compaction", &e);
                        if (recs != pt->records || bytes != pt->bytes) {
                            fprintf(stderr, "repo_fill: compaction gave %llu records, %llu bytes; "
                                    "expected %llu, %llu\n", (unsigned long long)recs,
                                    (unsigned long long)bytes, (unsigned long long)pt->records,
                                    (unsigned long long)pt->bytes);
                            return 1;
                        }
                        for (size_t k = 0; k < t->n_chain; k++) {
                            free(t->chain[k]);
                            free(pt->segments[k]);
                        }
                        t->chain[0] = strdup(id);
                        t->n_chain = 1;
                        pt->segments[0] = strdup(id);
                        pt->n_segments = 1;
                        n_segments++;
                    }
                }
            }
            if (r) {
                int64_t tc = now_ms();
                if (repo_capture_commit(c, p, &e))
                    return die("capture_commit", &e);
                t_commit += now_ms() - tc;
                n_points++;
            } else {
                char name[32];
                point_name_from_time(p->taken_at, name);
                if (strcmp(env, x_env) == 0 && strcmp(name, x_point) == 0) {
                    for (int ti = 0; ti < o->tables; ti++) {
                        if (strcmp(ts[ti].name, x_table) != 0)
                            continue;
                        long lines = 0;
                        fputs("[\n", stdout);
                        for (long i = 0; i < ts[ti].n; i++) {
                            if (ts[ti].ver[i] <= 0)
                                continue;
                            rec_line(&line, o, &ts[ti], en, ti, i, ts[ti].ver[i]);
                            if (lines++)
                                fputs(",\n", stdout);
                            fwrite(line.data, 1, line.len, stdout);
                        }
                        fputs(lines ? "\n]\n" : "]\n", stdout);
                        return 0;
                    }
                }
            }
            point_free(p);
        }
        for (int ti = 0; ti < o->tables; ti++) {
            free(ts[ti].ver);
            for (size_t k = 0; k < ts[ti].n_chain; k++)
                free(ts[ti].chain[k]);
            free(ts[ti].chain);
        }
        free(ts);
    }
    buf_release(&line);
    if (!r) {
        fprintf(stderr, "repo_fill: no such point or table to expect\n");
        return 1;
    }
    if (!o->quiet)
        printf("repo_fill: %llu points, %llu segments in %.2f s (capture_begin %.2f s, "
               "segment_writer_finish %.2f s, capture_commit %.2f s)\n",
               (unsigned long long)n_points, (unsigned long long)n_segments,
               (double)(now_ms() - t0) / 1000, (double)t_begin / 1000, (double)t_finish / 1000,
               (double)t_commit / 1000);
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o = {.envs = 1, .points = 3, .tables = 3, .records = 100, .churn = 0.01,
                     .record_bytes = 200, .seed = 1, .start = 1763715600, .interval = 900,
                     .retention_days = 7};
    const char *mode = NULL, *a1 = NULL, *a2 = NULL, *a3 = NULL;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "--quiet")) {
            o.quiet = 1;
            continue;
        }
        if (!strcmp(k, "--no-sync")) {
            o.no_sync = 1;
            continue;
        }
        if (!strcmp(k, "--cat") || !strcmp(k, "--changes") || !strcmp(k, "--expect")) {
            if (i + 3 >= argc)
                goto usage;
            mode = k;
            a1 = argv[i + 1];
            a2 = argv[i + 2];
            a3 = argv[i + 3];
            i += 3;
            continue;
        }
        if (!v)
            goto usage;
        i++;
        if (!strcmp(k, "--repo")) o.repo = v;
        else if (!strcmp(k, "--envs")) o.envs = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--points")) o.points = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--tables")) o.tables = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--records")) o.records = strtol(v, NULL, 10);
        else if (!strcmp(k, "--churn")) o.churn = strtod(v, NULL);
        else if (!strcmp(k, "--record-bytes")) o.record_bytes = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--seed")) o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(k, "--start")) o.start = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--interval")) o.interval = strtoll(v, NULL, 10);
        else if (!strcmp(k, "--retention-days")) o.retention_days = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--manual-every")) o.manual_every = (int)strtol(v, NULL, 10);
        else if (!strcmp(k, "--password-file")) o.password_file = v;
        else goto usage;
    }
    if (!o.repo || o.envs < 1 || o.points < 0 || o.tables < 1 || o.tables > 99 || o.records < 0 ||
        o.churn < 0 || o.seed == 0)
        goto usage;
    if (mode && !strcmp(mode, "--expect"))
        return fill(NULL, &o, a1, a2, a3);
    struct config cfg = {0};
    cfg.repository = (char *)o.repo;
    cfg.cache_dir = (char *)o.repo;
    cfg.password_file = (char *)o.password_file;
    struct dverr e = {0};
    int rc = repo_init(&cfg, o.password_file != NULL, &e);
    if (rc && rc != -EEXIST)
        return die("init", &e);
    dverr_clear(&e);
    struct repo *r = NULL;
    if (repo_open(&cfg, &r, &e))
        return die("open", &e);
    if (o.no_sync && repo_store(r)->local_dir) {
        struct objstore *st = repo_store(r);
        dir_ops = st->ops;
        nosync_ops = *st->ops;
        nosync_ops.put = nosync_put;
        nosync_ops.put_file = nosync_put_file;
        nosync_ops.put_if_absent = nosync_put_if_absent;
        nosync_root = st->local_dir;
        st->ops = &nosync_ops;
    }
    if (mode)
        rc = stream(r, a1, a2, a3, !strcmp(mode, "--changes"));
    else
        rc = fill(r, &o, NULL, NULL, NULL);
    repo_free(r);
    return rc;
usage:
    fprintf(stderr, "usage: repo_fill --repo DIR [--envs N] [--points P] [--tables T] "
                    "[--records R] [--churn F] [--record-bytes B] [--seed S] [--start UNIX] "
                    "[--interval SEC] [--retention-days D] [--manual-every K] [--no-sync] [--quiet]\n"
                    "       [--password-file FILE]\n"
                    "       repo_fill --repo DIR --cat|--changes|--expect ENV POINT TABLE\n");
    return 2;
}
