/* health: per-environment state files, the capture recorder, Prometheus metrics (file and HTTP).
 * See health.h. State files are small JSON documents read with json.h and written whole with
 * write_file_atomic; a read-modify-write holds an flock on <dir>/.lock. The metrics server is
 * libmicrohttpd with its own polling thread, started with every signal blocked so the mount's
 * signal handling stays on the mount's threads. */
#include "tools/dvsnap/health.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include "backend/base/json.h"
#include "backend/base/log.h"
#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/version.h"

#define STATE_MAX (1u << 20)

/* ---------------------------------------------------------------- state files */

/* The directory of this repository's state files, into out[n]. */
static void health_state_dir(const struct config *cfg, char *out, size_t n)
{
    char h[65];
    const char *repo = cfg->repository ? cfg->repository : "";
    sha256_hex(repo, strlen(repo), h);
    snprintf(out, n, "%s/%.16s", cfg->state_dir ? cfg->state_dir : ".", h);
}

/* Environment names become file names: [A-Za-z0-9._-], 1 to 100 bytes, not starting with '.'. */
static bool env_file_name_ok(const char *env)
{
    size_t n = strlen(env);
    if (n == 0 || n > 100 || env[0] == '.')
        return false;
    for (const char *p = env; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

static int state_path(const struct config *cfg, const char *env, char *out, size_t n)
{
    char dir[PATH_MAX];
    if (!env_file_name_ok(env))
        return -EINVAL;
    health_state_dir(cfg, dir, sizeof dir);
    return snprintf(out, n, "%s/%s.json", dir, env) >= (int)n ? -ENAMETOOLONG : 0;
}

void health_state_release(struct health_state *s)
{
    free(s->env);
    free(s->last_result);
    free(s->last_point);
    free(s->last_error);
    strv_free(s->tables_not_captured, s->n_not_captured);
    strv_free(s->not_captured_reasons, s->n_not_captured);
    memset(s, 0, sizeof *s);
}

static uint64_t get_u64(const struct json_node *o, const char *k)
{
    const struct json_node *n = json_get(o, k);
    return n && n->type == JSON_NUMBER ? strtoull(n->str, NULL, 10) : 0;
}

static double get_double(const struct json_node *o, const char *k)
{
    const struct json_node *n = json_get(o, k);
    return n && n->type == JSON_NUMBER ? strtod(n->str, NULL) : 0;
}

static time_t get_time(const struct json_node *o, const char *k)
{
    const char *s = json_get_str(o, k);
    time_t t = 0;
    if (s && rfc3339_to_time(s, &t))
        t = 0;
    return t;
}

static char *get_strdup(const struct json_node *o, const char *k)
{
    const char *s = json_get_str(o, k);
    return s ? strdup(s) : NULL;
}

static int parse_state(const char *text, size_t len, struct health_state *s)
{
    struct json_doc *doc = NULL;
    memset(s, 0, sizeof *s);
    if (json_parse(text, len, NULL, &doc, NULL))
        return -EINVAL;
    const struct json_node *r = json_root(doc);
    int rc = 0;
    if (!r || r->type != JSON_OBJECT) {
        rc = -EINVAL;
        goto out;
    }
    s->env = get_strdup(r, "env");
    s->last_attempt_at = get_time(r, "last_attempt_at");
    s->last_result = get_strdup(r, "last_result");
    s->last_success_at = get_time(r, "last_success_at");
    s->last_point = get_strdup(r, "last_point");
    s->last_duration_s = get_double(r, "last_duration_seconds");
    s->last_records_changed = get_u64(r, "last_records_changed");
    s->last_requests = get_u64(r, "last_requests");
    s->last_throttled = get_u64(r, "last_throttled");
    s->last_bytes_stored = get_u64(r, "last_bytes_stored");
    s->last_failure_at = get_time(r, "last_failure_at");
    s->last_error = get_strdup(r, "last_error");
    s->ok_total = get_u64(r, "captures_ok_total");
    s->partial_total = get_u64(r, "captures_partial_total");
    s->failed_total = get_u64(r, "captures_failed_total");
    s->records_changed_total = get_u64(r, "records_changed_total");
    s->requests_total = get_u64(r, "requests_total");
    s->throttled_total = get_u64(r, "throttled_total");
    s->bytes_stored_total = get_u64(r, "bytes_stored_total");
    const struct json_node *nc = json_get(r, "tables_not_captured");
    if (nc && nc->type == JSON_ARRAY && nc->n_children) {
        s->tables_not_captured = calloc(nc->n_children, sizeof(char *));
        s->not_captured_reasons = calloc(nc->n_children, sizeof(char *));
        if (!s->tables_not_captured || !s->not_captured_reasons) {
            rc = -ENOMEM;
            goto out;
        }
        for (const struct json_node *e = nc->child; e; e = e->next) {
            const char *t = json_get_str(e, "table");
            if (!t)
                continue;
            s->tables_not_captured[s->n_not_captured] = strdup(t);
            s->not_captured_reasons[s->n_not_captured] = get_strdup(e, "reason");
            s->n_not_captured++;
        }
    }
out:
    json_doc_free(doc);
    if (rc)
        health_state_release(s);
    return rc;
}

int health_state_read(const struct config *cfg, const char *env, struct health_state *out)
{
    char path[PATH_MAX];
    struct buf b = BUF_INIT;
    memset(out, 0, sizeof *out);
    int rc = state_path(cfg, env, path, sizeof path);
    if (rc)
        return rc == -EINVAL ? -ENOENT : rc;
    if ((rc = read_file(path, STATE_MAX, &b)) == 0)
        rc = parse_state(b.data ? b.data : "", b.len, out);
    buf_release(&b);
    return rc;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int health_state_envs(const struct config *cfg, char ***names, size_t *n)
{
    char dir[PATH_MAX];
    health_state_dir(cfg, dir, sizeof dir);
    *names = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    char **v = NULL;
    size_t k = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".json") != 0 || e->d_name[0] == '.')
            continue;
        if (k == cap) {
            cap = cap ? cap * 2 : 16;
            char **nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                rc = -ENOMEM;
                break;
            }
            v = nv;
        }
        if (!(v[k] = strndup(e->d_name, len - 5))) {
            rc = -ENOMEM;
            break;
        }
        k++;
    }
    closedir(d);
    if (rc) {
        strv_free(v, k);
        return rc;
    }
    if (k)
        qsort(v, k, sizeof *v, cmp_str);
    *names = v;
    *n = k;
    return 0;
}

static void render_state(const struct health_state *s, struct buf *b)
{
    buf_addstr(b, "{\n  \"env\": ");
    json_str(b, s->env);
    buf_addstr(b, ",\n  \"last_attempt_at\": ");
    json_time(b, s->last_attempt_at);
    buf_addstr(b, ",\n  \"last_result\": ");
    json_str(b, s->last_result);
    buf_addstr(b, ",\n  \"last_success_at\": ");
    json_time(b, s->last_success_at);
    buf_addstr(b, ",\n  \"last_point\": ");
    json_str(b, s->last_point);
    buf_printf(b,
               ",\n  \"last_duration_seconds\": %.3f,\n  \"last_records_changed\": %" PRIu64
               ",\n  \"last_requests\": %" PRIu64 ",\n  \"last_throttled\": %" PRIu64
               ",\n  \"last_bytes_stored\": %" PRIu64 ",\n  \"tables_not_captured\": ",
               s->last_duration_s, s->last_records_changed, s->last_requests, s->last_throttled,
               s->last_bytes_stored);
    health_not_captured_json(b, s->tables_not_captured, s->not_captured_reasons,
                             s->n_not_captured, true);
    buf_addstr(b, ",\n  \"last_failure_at\": ");
    json_time(b, s->last_failure_at);
    buf_addstr(b, ",\n  \"last_error\": ");
    json_str(b, s->last_error);
    buf_printf(b,
               ",\n  \"captures_ok_total\": %" PRIu64 ",\n  \"captures_partial_total\": %" PRIu64
               ",\n  \"captures_failed_total\": %" PRIu64
               ",\n  \"records_changed_total\": %" PRIu64 ",\n  \"requests_total\": %" PRIu64
               ",\n  \"throttled_total\": %" PRIu64 ",\n  \"bytes_stored_total\": %" PRIu64
               "\n}\n",
               s->ok_total, s->partial_total, s->failed_total, s->records_changed_total,
               s->requests_total, s->throttled_total, s->bytes_stored_total);
}

/* Fold one recorded environment into its state file (under the directory's lock). */
static int state_update(const struct config *cfg, const struct health_env *e, time_t now)
{
    char dir[PATH_MAX], path[PATH_MAX], lockp[PATH_MAX];
    int rc = state_path(cfg, e->env, path, sizeof path);
    if (rc)
        return rc;
    health_state_dir(cfg, dir, sizeof dir);
    if ((rc = mkdir_p(dir, 0755)))
        return rc;
    if (snprintf(lockp, sizeof lockp, "%s/.lock", dir) >= (int)sizeof lockp)
        return -ENAMETOOLONG;
    int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (lfd < 0)
        return -errno;
    while (flock(lfd, LOCK_EX) != 0 && errno == EINTR)
        ;
    struct health_state s;
    struct buf b = BUF_INIT;
    if (read_file(path, STATE_MAX, &b) != 0 || parse_state(b.data ? b.data : "", b.len, &s) != 0)
        memset(&s, 0, sizeof s);
    buf_reset(&b);
    free(s.env);
    s.env = strdup(e->env);
    s.last_attempt_at = now;
    s.last_duration_s = e->duration_s;
    s.last_requests = e->requests;
    s.last_throttled = e->throttled;
    s.last_bytes_stored = e->bytes_stored;
    s.requests_total += e->requests;
    s.throttled_total += e->throttled;
    s.bytes_stored_total += e->bytes_stored;
    free(s.last_result);
    if (e->rc == 0) {
        bool partial = health_env_partial(e);
        s.last_result = strdup(partial ? "partial" : "ok");
        s.last_success_at = now;
        free(s.last_point);
        s.last_point = strdup(e->res.point);
        s.last_records_changed = e->res.records_changed;
        s.records_changed_total += e->res.records_changed;
        if (partial)
            s.partial_total++;
        else
            s.ok_total++;
        strv_free(s.tables_not_captured, s.n_not_captured);
        strv_free(s.not_captured_reasons, s.n_not_captured);
        s.tables_not_captured = s.not_captured_reasons = NULL;
        s.n_not_captured = 0;
        if (e->n_not_captured) {
            s.tables_not_captured = calloc(e->n_not_captured, sizeof(char *));
            s.not_captured_reasons = calloc(e->n_not_captured, sizeof(char *));
            for (size_t i = 0; s.tables_not_captured && s.not_captured_reasons &&
                               i < e->n_not_captured; i++, s.n_not_captured++) {
                s.tables_not_captured[i] = strdup(e->not_captured[i]);
                s.not_captured_reasons[i] =
                    e->not_captured_reasons[i] ? strdup(e->not_captured_reasons[i]) : NULL;
            }
        }
    } else {
        s.last_result = strdup("failed");
        s.last_failure_at = now;
        s.last_records_changed = 0;
        s.failed_total++;
        free(s.last_error);
        s.last_error = strdup(e->error ? e->error : "failed");
    }
    render_state(&s, &b);
    rc = b.data ? write_file_atomic(path, b.data, b.len, 0644) : -ENOMEM;
    buf_release(&b);
    health_state_release(&s);
    close(lfd); /* releases the lock */
    return rc;
}

/* ---------------------------------------------------------------- the recorder */

struct health {
    const struct config *cfg;
    struct repo *repo;
    struct meter *meter;
    struct dv_client *dv;
    int64_t mark_ms;             /* end of the previous environment, or start of the pass */
    struct dv_stats stats;       /* the client's counters then */
    uint64_t put_bytes;          /* the meter's then */
};

int health_new(const struct config *cfg, struct repo *repo, struct meter *meter,
               struct dv_client *dv, struct health **out)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h)
        return -ENOMEM;
    h->cfg = cfg;
    h->repo = repo;
    h->meter = meter;
    h->dv = dv;
    health_pass_begin(h);
    *out = h;
    return 0;
}

void health_free(struct health *h)
{
    free(h);
}

void health_pass_begin(struct health *h)
{
    struct meter_counts mc;
    h->mark_ms = now_ms();
    if (h->dv)
        dv_client_stats(h->dv, &h->stats);
    meter_read(h->meter, &mc);
    h->put_bytes = mc.put_bytes;
}

void health_env_release(struct health_env *e)
{
    free(e->env);
    free(e->error);
    strv_free(e->not_captured, e->n_not_captured);
    strv_free(e->not_captured_reasons, e->n_not_captured);
    memset(e, 0, sizeof *e);
}

bool health_env_partial(const struct health_env *e)
{
    return e->rc == 0 && (e->res.tables_failed || e->n_not_captured);
}

void health_not_captured_json(struct buf *b, char *const *tables, char *const *reasons, size_t n,
                              bool spaced)
{
    buf_addch(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_addstr(b, spaced ? ", " : ",");
        buf_addstr(b, spaced ? "{\"table\": " : "{\"table\":");
        json_str(b, tables[i]);
        buf_addstr(b, spaced ? ", \"reason\": " : ",\"reason\":");
        json_str(b, reasons[i]);
        buf_addch(b, '}');
    }
    buf_addch(b, ']');
}

int health_point_not_captured(struct repo *repo, const char *env, const char *point,
                              char ***tables, char ***reasons, size_t *n)
{
    struct point *p = NULL;
    struct json_doc *doc = NULL;
    char **t = NULL, **r = NULL;
    size_t k = 0;
    *tables = *reasons = NULL;
    *n = 0;
    int rc = repo_point_load(repo, env, point, &p, NULL);
    if (rc || !p->not_captured_json)
        goto out;
    const char *nc = p->not_captured_json;
    if ((rc = json_parse(nc, strlen(nc), NULL, &doc, NULL)))
        goto out;
    const struct json_node *root = json_root(doc);
    if (!root || root->type != JSON_ARRAY || !root->n_children)
        goto out;
    t = calloc(root->n_children, sizeof(char *));
    r = calloc(root->n_children, sizeof(char *));
    if (!t || !r) {
        rc = -ENOMEM;
        goto out;
    }
    for (const struct json_node *x = root->child; x; x = x->next) {
        const char *what = json_get_str(x, "what");
        if (!what || strncmp(what, "table ", 6) != 0)
            continue;
        if (!(t[k] = strdup(what + 6))) {
            rc = -ENOMEM;
            goto out;
        }
        r[k++] = get_strdup(x, "reason");
    }
out:
    json_doc_free(doc);
    point_free(p);
    if (rc) {
        strv_free(t, k);
        strv_free(r, k);
        return rc;
    }
    *tables = t;
    *reasons = r;
    *n = k;
    return 0;
}

void health_env_done(struct health *h, const struct dv_env *env, int rc,
                     const struct capture_result *res, const struct dverr *err,
                     struct health_env *out)
{
    struct health_env e;
    struct dv_stats st = {0};
    struct meter_counts mc;
    memset(&e, 0, sizeof e);
    int64_t now = now_ms();
    e.env = strdup(env->unique_name ? env->unique_name : "");
    e.rc = rc;
    e.duration_s = (double)(now - h->mark_ms) / 1000.0;
    if (h->dv)
        dv_client_stats(h->dv, &st);
    meter_read(h->meter, &mc);
    e.requests = st.requests - h->stats.requests;
    e.throttled = st.throttled - h->stats.throttled;
    e.bytes_stored = mc.put_bytes - h->put_bytes;
    h->mark_ms = now;
    h->stats = st;
    h->put_bytes = mc.put_bytes;
    if (rc == 0 && res) {
        e.res = *res;
        if (res->tables_failed)
            health_point_not_captured(h->repo, e.env, res->point, &e.not_captured,
                                      &e.not_captured_reasons, &e.n_not_captured);
    } else if (rc) {
        const char *m = dverr_msg(err);
        e.error = strdup(*m ? m : strerror(rc < 0 ? -rc : rc));
    }
    if (e.env && rc != -EPERM) {
        int src = state_update(h->cfg, &e, time(NULL));
        if (src)
            log_warn("health: cannot record the capture of %s in %s: %s", e.env,
                     h->cfg->state_dir, strerror(-src));
    }
    if (out)
        *out = e;
    else
        health_env_release(&e);
}

int health_pass_end(struct health *h, struct dverr *err)
{
    if (!h->cfg->metrics_file)
        return 0;
    struct buf b = BUF_INIT;
    int rc = health_metrics(h->cfg, &b);
    if (rc == 0) {
        char dir[PATH_MAX];
        parent_of(h->cfg->metrics_file, dir, sizeof dir);
        rc = mkdir_p(dir, 0755);
        if (rc == 0)
            rc = write_file_atomic(h->cfg->metrics_file, b.data, b.len, 0644);
    }
    buf_release(&b);
    if (rc)
        return dverr_set(err, rc, "metrics_file %s: %s", h->cfg->metrics_file, strerror(-rc));
    return 0;
}

/* ---------------------------------------------------------------- metrics */

/* A label value with \, " and newline escaped. */
static void label_value(struct buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"') {
            buf_addch(b, '\\');
            buf_addch(b, *s);
        } else if (*s == '\n')
            buf_addstr(b, "\\n");
        else
            buf_addch(b, *s);
    }
}

enum mkind { M_GAUGE, M_COUNTER };

struct family {
    const char *name;
    enum mkind kind;
    const char *help;
};

static void family_head(struct buf *b, const struct family *f)
{
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
               f->kind == M_COUNTER ? "counter" : "gauge");
}

static void sample(struct buf *b, const char *name, const char *env, const char *extra_label,
                   const char *extra_value, const char *value)
{
    buf_printf(b, "%s{environment=\"", name);
    label_value(b, env);
    buf_addch(b, '"');
    if (extra_label) {
        buf_printf(b, ",%s=\"", extra_label);
        label_value(b, extra_value);
        buf_addch(b, '"');
    }
    buf_printf(b, "} %s\n", value);
}

int health_metrics(const struct config *cfg, struct buf *out)
{
    static const struct family fams[] = {
        {"dvsnap_last_attempt_timestamp_seconds", M_GAUGE,
         "When the last capture of the environment ended (Unix time)."},
        {"dvsnap_last_success_timestamp_seconds", M_GAUGE,
         "When the last capture that committed a point of the environment ended (Unix time; "
         "0: never)."},
        {"dvsnap_last_failure_timestamp_seconds", M_GAUGE,
         "When the last failed capture of the environment ended (Unix time; 0: never)."},
        {"dvsnap_last_capture_ok", M_GAUGE,
         "1 when the last capture committed a point with every table, else 0."},
        {"dvsnap_last_capture_duration_seconds", M_GAUGE,
         "How long the last capture of the environment took."},
        {"dvsnap_last_capture_records_changed", M_GAUGE,
         "Records created, updated or deleted in the last point."},
        {"dvsnap_last_capture_tables_not_captured", M_GAUGE,
         "Tables the last point could not capture (shown as of the point before)."},
        {"dvsnap_captures_total", M_COUNTER, "Captures of the environment by result."},
        {"dvsnap_capture_records_changed_total", M_COUNTER,
         "Records created, updated or deleted, summed over the points taken."},
        {"dvsnap_capture_requests_total", M_COUNTER,
         "HTTP requests sent to Dataverse while capturing the environment."},
        {"dvsnap_capture_throttled_total", M_COUNTER,
         "HTTP 429 (throttled) answers received while capturing the environment."},
        {"dvsnap_capture_stored_bytes_total", M_COUNTER,
         "Bytes written to the repository while capturing the environment."},
    };
    char **envs = NULL;
    size_t n = 0;
    int rc = health_state_envs(cfg, &envs, &n);
    if (rc)
        return rc;
    struct health_state *st = calloc(n ? n : 1, sizeof *st);
    if (!st) {
        strv_free(envs, n);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        if (health_state_read(cfg, envs[i], &st[i]) || !st[i].env) {
            health_state_release(&st[i]);
            st[i].env = NULL;
        }
    char v[64];
    for (size_t f = 0; f < sizeof fams / sizeof fams[0]; f++) {
        family_head(out, &fams[f]);
        for (size_t i = 0; i < n; i++) {
            const struct health_state *s = &st[i];
            if (!s->env)
                continue;
            const char *name = fams[f].name;
            switch (f) {
            case 0: snprintf(v, sizeof v, "%lld", (long long)s->last_attempt_at); break;
            case 1: snprintf(v, sizeof v, "%lld", (long long)s->last_success_at); break;
            case 2: snprintf(v, sizeof v, "%lld", (long long)s->last_failure_at); break;
            case 3:
                snprintf(v, sizeof v, "%d", s->last_result && !strcmp(s->last_result, "ok"));
                break;
            case 4: snprintf(v, sizeof v, "%.3f", s->last_duration_s); break;
            case 5: snprintf(v, sizeof v, "%" PRIu64, s->last_records_changed); break;
            case 6: snprintf(v, sizeof v, "%zu", s->n_not_captured); break;
            case 7: {
                static const char *const results[] = {"ok", "partial", "failed"};
                const uint64_t counts[] = {s->ok_total, s->partial_total, s->failed_total};
                for (int k = 0; k < 3; k++) {
                    snprintf(v, sizeof v, "%" PRIu64, counts[k]);
                    sample(out, name, s->env, "result", results[k], v);
                }
                continue;
            }
            case 8: snprintf(v, sizeof v, "%" PRIu64, s->records_changed_total); break;
            case 9: snprintf(v, sizeof v, "%" PRIu64, s->requests_total); break;
            case 10: snprintf(v, sizeof v, "%" PRIu64, s->throttled_total); break;
            default: snprintf(v, sizeof v, "%" PRIu64, s->bytes_stored_total); break;
            }
            sample(out, name, s->env, NULL, NULL, v);
        }
    }
    buf_printf(out,
               "# HELP dvsnap_stale_after_seconds An environment whose newest point is older "
               "than this is stale (dvsnap status exits 7).\n"
               "# TYPE dvsnap_stale_after_seconds gauge\n"
               "dvsnap_stale_after_seconds %lld\n"
               "# HELP dvsnap_build_info The dvsnap version that wrote these metrics.\n"
               "# TYPE dvsnap_build_info gauge\n"
               "dvsnap_build_info{version=\"%s\"} 1\n",
               (long long)cfg->stale_after, DVSNAP_VERSION);
    for (size_t i = 0; i < n; i++)
        health_state_release(&st[i]);
    free(st);
    strv_free(envs, n);
    return out->data ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- the metrics server */

struct health_server {
    struct MHD_Daemon *mhd;
    const struct config *cfg;    /* borrowed; read-only while serving */
};

static enum MHD_Result on_metrics(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls)
{
    struct health_server *s = cls;
    struct buf b = BUF_INIT;
    unsigned status = 200;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        status = 405;
        buf_addstr(&b, "only GET\n");
    } else if (strcmp(url, "/metrics") != 0) {
        status = 404;
        buf_addstr(&b, "dvsnap serves /metrics only\n");
    } else if (health_metrics(s->cfg, &b) != 0) {
        status = 500;
        buf_reset(&b);
        buf_addstr(&b, "cannot read the state files\n");
    }
    if (!b.data)
        return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b.len, b.data, MHD_RESPMEM_MUST_COPY);
    buf_release(&b);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type",
                            status == 200 ? "text/plain; version=0.0.4; charset=utf-8"
                                          : "text/plain; charset=utf-8");
    enum MHD_Result r = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

/* "HOST:PORT" or "[V6]:PORT" -> addrinfo for a listening socket (freeaddrinfo). */
static int listen_addr(const char *listen, struct addrinfo **ai, struct dverr *err)
{
    char host[256], *end;
    const char *colon = strrchr(listen, ':');
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (!colon || (size_t)(colon - listen) >= sizeof host || !colon[1] || *end || port < 1 ||
        port > 65535)
        return dverr_set(err, -EINVAL, "metrics_listen %s is not HOST:PORT", listen);
    const char *h = listen, *he = colon;
    if (*h == '[' && he > h && he[-1] == ']') {
        h++;
        he--;
    }
    snprintf(host, sizeof host, "%.*s", (int)(he - h), h);
    struct addrinfo hints = {0};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    int grc = getaddrinfo(host, colon + 1, &hints, ai);
    if (grc)
        return dverr_set(err, -EINVAL, "metrics_listen %s: %s", listen, gai_strerror(grc));
    return 0;
}

int health_listen_check(const char *listen, struct dverr *err)
{
    struct addrinfo *ai = NULL;
    int rc = listen_addr(listen, &ai, err);
    if (rc)
        return rc;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, ai->ai_addr, ai->ai_addrlen))
        rc = dverr_set(err, -errno, "metrics_listen %s: %s", listen, strerror(errno));
    if (fd >= 0)
        close(fd);
    freeaddrinfo(ai);
    return rc;
}

int health_serve(const struct config *cfg, const char *listen, struct health_server **out,
                 struct dverr *err)
{
    struct addrinfo *ai = NULL;
    *out = NULL;
    int rc = listen_addr(listen, &ai, err);
    if (rc)
        return rc;
    struct health_server *s = calloc(1, sizeof *s);
    if (!s) {
        freeaddrinfo(ai);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    s->cfg = cfg;
    uint16_t port = (uint16_t)strtoul(strrchr(listen, ':') + 1, NULL, 10);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* MHD's thread inherits it */
    s->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
                                  (ai->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0),
                              port, NULL, NULL, on_metrics, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                              MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT,
                              30u, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    freeaddrinfo(ai);
    if (!s->mhd) {
        free(s);
        return dverr_set(err, -EADDRINUSE, "cannot listen on %s for metrics", listen);
    }
    log_info("metrics: serving http://%s/metrics", listen);
    *out = s;
    return 0;
}

void health_serve_stop(struct health_server *s)
{
    if (!s)
        return;
    MHD_stop_daemon(s->mhd);
    free(s);
}
