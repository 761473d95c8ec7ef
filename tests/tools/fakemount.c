/* fakemount: the dvsnap view (fs/) over an in-memory fake source, for testing the FUSE layer on
 * its own and for benchmarks that need exact control of the data.
 *
 * usage: fakemount [--points N] [--tables N] [--records N] [--big-records N] [--cache DIR]
 *                  [--cache-size BYTES] [--wait-ms MS] [--slow-ms MS] [--allow-other] [--debug]
 *                  MOUNTPOINT
 * Environments: "alpha" (N points, the second one manual with label "pre-upgrade", the newest
 * system; tables "account" (records grow with the point), "contact", "big" (--big-records,
 * default 0: absent) and --tables more; files under files/annotation/ with names that need
 * sanitising), "beta" (one point: "account" and "broken", which fails after 1 MiB of a 3 MiB
 * file; with --slow-ms also "slow", whose source gives its first byte only after MS), "odd/name"
 * (sanitised to odd∕name; two empty points). Every record line has the same length, so sizes are exact by
 * formula. `touch MOUNTPOINT.addpoint` while mounted adds a point to alpha (tests of latest).
 * Runs in the foreground; SIGINT/SIGTERM unmount. Single process, not thread-safe beyond what the
 * view needs (the point list is guarded by one mutex). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "backend/base/record.h"
#include "cache/cache.h"
#include "fs/fs.h"

#define T0 1763715600 /* 2025-11-21T09:00:00Z */
#define LINE_FMT "{\"id\":\"%010llu\",\"name\":\"record %010llu\",\"point\":%06d,\"v\":\"%s\"}"

struct fake {
    int points, tables;
    unsigned long long records, big_records;
    int slow_ms;            /* > 0: beta has table "slow", stalled this long before its bytes */
    pthread_mutex_t mu;
    int n_points;           /* alpha's points (grows with .addpoint) */
    bool forgotten[4096];
    char mountpoint[4096];
};

static const char *PAD = "0123456789abcdefghij";

static size_t line_len(void)
{
    char b[256];
    return (size_t)snprintf(b, sizeof b, LINE_FMT, 0ULL, 0ULL, 0, PAD);
}

static uint64_t tsize(unsigned long long n)
{
    if (n == 0)
        return 4;
    return 2 + n * line_len() + (n - 1) * 2 + 3;
}

static unsigned long long records_of(struct fake *fk, const char *table, int pt)
{
    if (strcmp(table, "account") == 0)
        return fk->records + (unsigned long long)pt;
    if (strcmp(table, "contact") == 0)
        return fk->records / 2 + 1;
    if (strcmp(table, "big") == 0)
        return fk->big_records;
    if (strcmp(table, "broken") == 0)
        return 3ULL * 1048576 / line_len();
    /* t<N> extra tables */
    return 20;
}

static int f_envs(void *impl, char ***names, size_t *n, struct dverr *err)
{
    const char *e[] = {"alpha", "beta", "odd/name"};
    *names = calloc(3, sizeof **names);
    for (int i = 0; i < 3; i++)
        (*names)[i] = strdup(e[i]);
    *n = 3;
    return 0;
}

static int f_points(void *impl, const char *env, struct point_summary **out, size_t *n,
                    struct dverr *err)
{
    struct fake *fk = impl;
    pthread_mutex_lock(&fk->mu);
    char path[4200];
    snprintf(path, sizeof path, "%s.addpoint", fk->mountpoint);
    if (access(path, F_OK) == 0) {
        unlink(path);
        fk->n_points++;
    }
    int np = strcmp(env, "alpha") == 0 ? fk->n_points : strcmp(env, "beta") == 0 ? 1 : 2;
    *out = calloc((size_t)np, sizeof **out);
    size_t k = 0;
    for (int i = 0; i < np; i++) {
        if (strcmp(env, "alpha") == 0 && fk->forgotten[i])
            continue;
        struct point_summary *ps = &(*out)[k++];
        ps->taken_at = T0 + (time_t)i * 3600;
        point_name_from_time(ps->taken_at, ps->name);
        bool manual = i == 1;
        snprintf(ps->kind, sizeof ps->kind, "%s", manual ? "manual" : "system");
        ps->label = manual ? strdup("pre-upgrade") : NULL;
    }
    pthread_mutex_unlock(&fk->mu);
    *n = k;
    return 0;
}

static void f_points_free(struct point_summary *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].label);
    free(p);
}

static void f_point_free(struct point *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_tables; i++) {
        free(p->tables[i].name);
        free(p->tables[i].delta);
        free(p->tables[i].schema);
    }
    free(p->tables);
    for (size_t i = 0; i < p->n_files; i++) {
        free(p->files[i].table);
        free(p->files[i].record_id);
        free(p->files[i].file_name);
        free(p->files[i].blob);
    }
    free(p->files);
    free(p->env);
    free(p->name);
    free(p->kind);
    free(p->label);
    free(p->audit_table);
    free(p);
}

static const char *FILES[][3] = {
    {"r1", "my file.txt", "hello world\n"},
    {"r1", "ünï/cödé.bin", "\x01\x02\x03 unicode bytes"},
    {"r2", "a", "second record"},
    {"r2", "a", "same name, second file"},
    {"r2", "a~2", "a name the second file's suffix would take"},
};
#define N_FILES (sizeof FILES / sizeof FILES[0])

static int f_point_load(void *impl, const char *env, const char *name, bool with_files,
                        struct point **out, struct dverr *err)
{
    (void)with_files; /* its points are small: always whole */
    struct fake *fk = impl;
    time_t t;
    if (point_name_to_time(name, &t))
        return -ENOENT;
    int idx = (int)((t - T0) / 3600);
    struct point_summary *ps;
    size_t n;
    f_points(impl, env, &ps, &n, err);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(ps[i].name, name) == 0;
    f_points_free(ps, n);
    if (!found)
        return dverr_set(err, -ENOENT, "no point %s", name);
    struct point *p = calloc(1, sizeof *p);
    p->env = strdup(env);
    p->name = strdup(name);
    p->kind = strdup(idx == 1 ? "manual" : "system");
    p->label = idx == 1 ? strdup("pre-upgrade") : NULL;
    p->taken_at = t;
    if (strcmp(env, "alpha") == 0) {
        const char *base[] = {"account", "contact", "big"};
        int nt = fk->big_records ? 3 : 2;
        p->n_tables = (size_t)(nt + fk->tables);
        p->tables = calloc(p->n_tables, sizeof *p->tables);
        for (size_t i = 0; i < p->n_tables; i++) {
            char nm[32];
            if (i < (size_t)nt)
                snprintf(nm, sizeof nm, "%s", base[i]);
            else
                snprintf(nm, sizeof nm, "t%03zu", i - (size_t)nt);
            struct point_table *pt = &p->tables[i];
            pt->name = strdup(nm);
            pt->records = records_of(fk, nm, idx);
            pt->bytes = tsize(pt->records);
            pt->schema = strdup(nm);
            if (strcmp(nm, "account") == 0) {
                pt->delta = strdup("delta");
                pt->changes_bytes = tsize(idx == 0 ? pt->records : 1);
            }
        }
        p->n_files = N_FILES;
        p->files = calloc(N_FILES, sizeof *p->files);
        for (int i = 0; i < (int)N_FILES; i++) {
            p->files[i].table = strdup("annotation");
            p->files[i].record_id = strdup(FILES[i][0]);
            p->files[i].file_name = strdup(FILES[i][1]);
            char b[16];
            snprintf(b, sizeof b, "file%d", i);
            p->files[i].blob = strdup(b);
            p->files[i].size = strlen(FILES[i][2]);
        }
        p->audit_table = strdup("contact");
    } else if (strcmp(env, "beta") == 0) {
        const char *base[] = {"account", "broken", "slow"};
        p->n_tables = fk->slow_ms > 0 ? 3 : 2;
        p->tables = calloc(p->n_tables, sizeof *p->tables);
        for (size_t i = 0; i < p->n_tables; i++) {
            struct point_table *pt = &p->tables[i];
            pt->name = strdup(base[i]);
            pt->records = records_of(fk, base[i], idx);
            pt->bytes = tsize(pt->records);
        }
    }
    *out = p;
    return 0;
}

static int f_env_doc(void *impl, const char *env, struct buf *out, struct dverr *err)
{
    return buf_printf(out,
                      "{\"name\":\"x\",\"location\":\"unitedstates\",\"properties\":{"
                      "\"environmentSku\":\"%s\",\"azureRegion\":\"westus\","
                      "\"states\":{\"runtime\":{\"id\":\"Enabled\"}},"
                      "\"retentionDetails\":{\"retentionPeriod\":\"P7D\"},"
                      "\"linkedEnvironmentMetadata\":{\"instanceUrl\":\"https://%s.example\"}}}",
                      strcmp(env, "alpha") == 0 ? "Production" : "Sandbox", env);
}

static int f_backup_json(void *impl, const struct point *p, struct buf *out)
{
    buf_printf(out, "{\n  \"kind\": \"%s\",\n  \"label\": %s%s%s,\n  \"tables\": {", p->kind,
               p->label ? "\"" : "", p->label ? p->label : "null", p->label ? "\"" : "");
    for (size_t i = 0; i < p->n_tables; i++)
        buf_printf(out, "%s\"%s\": {\"records\": %llu, \"bytes\": %llu}", i ? ", " : "",
                   p->tables[i].name, (unsigned long long)p->tables[i].records,
                   (unsigned long long)p->tables[i].bytes);
    return buf_addstr(out, "}\n}\n");
}

struct stream {
    unsigned long long n, i;   /* records, next record */
    int point;
    bool broken;
    int slow_ms;               /* sleep this long before the first bytes */
    struct buf pend;
    size_t pos;
    bool done;
    uint64_t emitted;
};

static int f_stream_open(void *impl, const struct point *p, const char *table, bool changes,
                         void **out, struct dverr *err)
{
    struct fake *fk = impl;
    struct stream *s = calloc(1, sizeof *s);
    time_t t = p->taken_at;
    s->point = (int)((t - T0) / 3600);
    s->n = records_of(fk, table, s->point);
    if (changes)
        s->n = s->point == 0 ? s->n : 1;
    s->broken = strcmp(table, "broken") == 0;
    s->slow_ms = strcmp(table, "slow") == 0 ? fk->slow_ms : 0;
    buf_addstr(&s->pend, "[\n");
    *out = s;
    return 0;
}

static ssize_t f_stream_read(void *stream, void *buf, size_t n, struct dverr *err)
{
    struct stream *s = stream;
    size_t done = 0;
    if (s->slow_ms > 0) { /* a stalled source (a slow store): the first read blocks */
        struct timespec ts = {s->slow_ms / 1000, (long)(s->slow_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        s->slow_ms = 0;
    }
    while (done < n) {
        if (s->pos == s->pend.len) {
            if (s->done)
                break;
            if (s->broken && s->emitted >= (1u << 20))
                return done ? (ssize_t)done : dverr_set(err, -EIO, "segment damaged (fake)");
            buf_reset(&s->pend);
            s->pos = 0;
            for (int k = 0; k < 256 && s->i < s->n; k++, s->i++) {
                if (s->i)
                    buf_addstr(&s->pend, ",\n");
                buf_printf(&s->pend, LINE_FMT, s->i, s->i, s->point, PAD);
            }
            if (s->i == s->n) {
                buf_addstr(&s->pend, s->n ? "\n]\n" : "]\n");
                s->done = true;
            }
            continue;
        }
        size_t take = s->pend.len - s->pos;
        if (take > n - done)
            take = n - done;
        memcpy((char *)buf + done, s->pend.data + s->pos, take);
        s->pos += take;
        done += take;
        s->emitted += take;
    }
    return (ssize_t)done;
}

static void f_stream_close(void *stream)
{
    struct stream *s = stream;
    buf_release(&s->pend);
    free(s);
}

static int f_blob_get(void *impl, const char *id, struct buf *out, struct dverr *err)
{
    if (strncmp(id, "file", 4) == 0) {
        int i = id[4] - '0';
        return buf_addstr(out, FILES[i][2]);
    }
    return buf_printf(out, "{\"LogicalName\":\"%s\",\"Attributes\":[\"id\",\"name\"]}\n", id);
}

static int f_forget(void *impl, const char *env, const char *name, struct dverr *err)
{
    struct fake *fk = impl;
    time_t t;
    if (strcmp(env, "alpha") || point_name_to_time(name, &t))
        return -ENOENT;
    int idx = (int)((t - T0) / 3600);
    if (idx != 1)
        return dverr_set(err, -EPERM, "system backups cannot be deleted");
    pthread_mutex_lock(&fk->mu);
    fk->forgotten[idx] = true;
    pthread_mutex_unlock(&fk->mu);
    return 0;
}

static const struct fs_source_ops fake_ops = {
    f_envs, f_points, f_points_free, f_point_load, f_point_free, f_env_doc, f_backup_json,
    f_stream_open, f_stream_read, f_stream_close, f_blob_get, f_forget, NULL,
};

int main(int argc, char **argv)
{
    struct fake fk = {.points = 3, .records = 1000};
    const char *cache_dir = NULL;
    uint64_t cache_size = 0;
    int wait_ms = 0;
    struct fs_opts o = {0};
    int i;
    for (i = 1; i < argc - 1; i++) {
        if (strcmp(argv[i], "--points") == 0)
            fk.points = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--tables") == 0)
            fk.tables = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--records") == 0)
            fk.records = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--big-records") == 0)
            fk.big_records = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--cache") == 0)
            cache_dir = argv[++i];
        else if (strcmp(argv[i], "--cache-size") == 0)
            cache_size = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--wait-ms") == 0)
            wait_ms = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--slow-ms") == 0)
            fk.slow_ms = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--allow-other") == 0)
            o.allow_other = true;
        else if (strcmp(argv[i], "--debug") == 0)
            o.debug = true;
        else
            break;
    }
    if (i != argc - 1 || !cache_dir || fk.points > 4000) {
        fprintf(stderr, "usage: fakemount [--points N] [--tables N] [--records N] "
                        "[--big-records N] --cache DIR [--cache-size B] [--wait-ms MS] [--slow-ms MS] "
                        "MOUNTPOINT\n");
        return 2;
    }
    fk.n_points = fk.points;
    pthread_mutex_init(&fk.mu, NULL);
    if (!realpath(argv[i], fk.mountpoint)) {
        perror(argv[i]);
        return 1;
    }
    log_set_level(LOG_WARN);
    struct dverr err = {0};
    struct cache *c;
    struct cache_opts co = {.budget = cache_size, .wait_ms = wait_ms};
    if (cache_open(cache_dir, &co, &c, &err)) {
        fprintf(stderr, "fakemount: %s\n", dverr_msg(&err));
        return 1;
    }
    struct fs_source src = {&fake_ops, &fk};
    o.mountpoint = fk.mountpoint;
    o.cache = c;
    o.cache_key_prefix = "fake";
    int rc = fs_run(&o, &src, &err);
    struct cache_stats st;
    cache_stats(c, &st);
    fprintf(stderr, "fakemount: cache budget %llu max %llu bytes %llu\n",
            (unsigned long long)st.budget, (unsigned long long)st.max_bytes,
            (unsigned long long)st.bytes);
    cache_free(c);
    if (rc) {
        fprintf(stderr, "fakemount: %s\n", dverr_msg(&err));
        return 1;
    }
    return 0;
}
