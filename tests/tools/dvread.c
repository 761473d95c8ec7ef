/* dvread: a small driver of backend/dataverse/dataverse.h for integration tests against a real dvsim.
 *
 *   dvread [-v] --config FILE envs                      one line per environment (tab-separated)
 *   dvread [-v] --config FILE tables ENV                one line per table
 *   dvread [-v] --config FILE read ENV TABLE [--delta-out F] [--delta-in F]
 *        full read (or the delta link in --delta-in), the table in the table-file format on
 *        stdout (a delta prints "upsert <line>" and "delete <id>" lines instead); the new delta
 *        link is written to --delta-out
 *   dvread [-v] --config FILE readall ENV THREADS       every readable table, THREADS at once;
 *        prints "<table> <records>" lines
 *   dvread [-v] --config FILE capacity ENV              free tenant database MB
 *   dvread [-v] --config FILE runtime ENV STATE         set AdminMode / Enabled
 *   dvread [-v] --config FILE request ENV METHOD PATH [BODY|-] [HEADER...]
 *        prints the status line "status N" and the body
 *   dvread [-v] --config FILE batch ENV FILE [--continue]
 *        FILE has one item per line: "METHOD PATH [BODY]" (BODY to the end of the line);
 *        prints "item <n> <status>" per item
 *   dvread [-v] --config FILE file-get ENV SET ID COLUMN OUT    bytes to OUT, prints the name
 *   dvread [-v] --config FILE file-put ENV SET ID COLUMN NAME IN
 * Always ends with a "stats requests=N retries=N throttled=N bytes=N" line on stderr.
 * Exit status: 0, or 1 with the error on stderr ("dvread: <message> (rc=-N)"). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/base/log.h"
#include "backend/base/record.h"

struct line {
    char *key;
    size_t key_len;
    char *text;
    size_t len;
};

struct table_out {
    const char *primary_id;
    struct line *lines;
    size_t n, cap;
    bool delta;
    FILE *out;
};

static int on_record(void *ctx, const struct json_node *r)
{
    struct table_out *t = ctx;
    struct buf b = BUF_INIT;
    int rc = record_render(r, t->primary_id, &b);
    if (rc)
        return rc;
    if (t->delta) {
        fprintf(t->out, "upsert %s\n", b.data);
        buf_release(&b);
        return 0;
    }
    size_t kl = 0;
    const char *k = record_key(r, t->primary_id, &kl);
    if (!k) {
        buf_release(&b);
        return -EPROTO;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 1024;
        t->lines = realloc(t->lines, t->cap * sizeof(*t->lines));
        if (!t->lines)
            return -ENOMEM;
    }
    struct line *l = &t->lines[t->n++];
    l->key = malloc(kl + 1);
    if (!l->key)
        return -ENOMEM;
    memcpy(l->key, k, kl);
    l->key[kl] = '\0';
    l->key_len = kl;
    l->len = b.len;
    l->text = buf_detach(&b);
    return 0;
}

static int on_deleted(void *ctx, const char *id)
{
    struct table_out *t = ctx;
    if (t->delta)
        fprintf(t->out, "delete %s\n", id);
    return 0;
}

static int line_cmp(const void *a, const void *b)
{
    const struct line *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static void table_out_release(struct table_out *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->lines[i].key);
        free(t->lines[i].text);
    }
    free(t->lines);
    t->lines = NULL;
    t->n = t->cap = 0;
}

static void table_write(struct table_out *t)
{
    qsort(t->lines, t->n, sizeof(*t->lines), line_cmp);
    if (t->n == 0) {
        fputs(TABLE_FILE_EMPTY, t->out);
        return;
    }
    fputs(TABLE_FILE_HEAD, t->out);
    for (size_t i = 0; i < t->n; i++) {
        if (i)
            fputs(TABLE_FILE_SEP, t->out);
        fwrite(t->lines[i].text, 1, t->lines[i].len, t->out);
    }
    fputs(TABLE_FILE_TAIL, t->out);
}

static int die(int rc, const struct dverr *err, const char *what)
{
    fprintf(stderr, "dvread: %s: %s (rc=%d)\n", what, err ? dverr_msg(err) : "", rc);
    return 1;
}

static int find_table(struct dv_client *c, const struct dv_env *env, const char *name,
                      struct dv_table **tables, size_t *n, const struct dv_table **out,
                      struct dverr *err)
{
    int rc = dv_tables_list(c, env, tables, n, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*tables)[i].logical_name, name) == 0) {
            *out = &(*tables)[i];
            return 0;
        }
    return dverr_set(err, -ENOENT, "no table %s", name);
}

static int write_out(void *ctx, const void *data, size_t len)
{
    return fwrite(data, 1, len, ctx) == len ? 0 : -EIO;
}

static char *read_text(const char *path)
{
    struct buf b = BUF_INIT;
    if (read_file(path, 1 << 20, &b))
        return NULL;
    while (b.len && (b.data[b.len - 1] == '\n'))
        b.data[--b.len] = '\0';
    return buf_detach(&b);
}

struct readall {
    struct dv_client *c;
    const struct dv_env *env;
    struct dv_table *tables;
    size_t n;
    size_t next;              /* guarded by lock */
    pthread_mutex_t lock;
    uint64_t *counts;
    int *rcs;
};

static void *readall_worker(void *p)
{
    struct readall *ra = p;
    for (;;) {
        pthread_mutex_lock(&ra->lock);
        size_t i = ra->next++;
        pthread_mutex_unlock(&ra->lock);
        if (i >= ra->n)
            return NULL;
        struct table_out t = {.primary_id = ra->tables[i].primary_id, .delta = true,
                              .out = fopen("/dev/null", "w")};
        struct dv_read_stats st = {0};
        char *delta = NULL;
        struct dverr err = {0};
        ra->rcs[i] = dv_read_table(ra->c, ra->env, &ra->tables[i], NULL,
                                   &(struct dv_read_cb){on_record, on_deleted, &t}, &delta, &st,
                                   &err);
        if (ra->rcs[i])
            fprintf(stderr, "dvread: %s: %s\n", ra->tables[i].logical_name, dverr_msg(&err));
        ra->counts[i] = st.records;
        free(delta);
        fclose(t.out);
    }
}

int main(int argc, char **argv)
{
    const char *config_path = NULL;
    int i = 1;
    for (; i < argc; i++) {
        if (strcmp(argv[i], "-v") == 0)
            log_set_level(LOG_DEBUG);
        else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            config_path = argv[++i];
        else
            break;
    }
    if (i >= argc) {
        fprintf(stderr, "usage: dvread [-v] --config FILE envs|tables|read|readall|capacity|"
                        "runtime ...\n");
        return 2;
    }
    const char *cmd = argv[i++];
    struct config *cfg = NULL;
    struct dv_client *c = NULL;
    struct dverr err = {0};
    struct dv_env env = {0};
    struct dv_table *tables = NULL;
    size_t n_tables = 0;
    int status = 0, rc;
    if ((rc = config_load(config_path, &cfg, &err)))
        return die(rc, &err, "configuration");
    if ((rc = dv_client_new(cfg, &c, &err))) {
        status = die(rc, &err, "client");
        goto out;
    }
    if (strcmp(cmd, "envs") == 0) {
        struct dv_env *envs = NULL;
        size_t n = 0;
        if ((rc = dv_env_list(c, &envs, &n, &err))) {
            status = die(rc, &err, "envs");
            goto out;
        }
        for (size_t k = 0; k < n; k++)
            printf("%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", envs[k].unique_name,
                   envs[k].sku ? envs[k].sku : "-", envs[k].geo ? envs[k].geo : "-",
                   envs[k].region ? envs[k].region : "-", envs[k].retention_days,
                   envs[k].has_d365_apps ? "d365" : "-", envs[k].is_default ? "default" : "-",
                   envs[k].runtime_state ? envs[k].runtime_state : "-", envs[k].api_url);
        dv_env_list_free(envs, n);
        goto out;
    }
    if (i >= argc) {
        status = die(-EINVAL, NULL, "missing ENV");
        goto out;
    }
    if ((rc = dv_env_get(c, argv[i++], &env, &err))) {
        status = die(rc, &err, "environment");
        goto out;
    }
    if (strcmp(cmd, "tables") == 0) {
        if ((rc = dv_tables_list(c, &env, &tables, &n_tables, &err))) {
            status = die(rc, &err, "tables");
            goto out;
        }
        for (size_t k = 0; k < n_tables; k++) {
            const struct dv_table *t = &tables[k];
            printf("%s\t%s\t%s\t%s\t%s%s\tattrs=%zu\tlookups=%zu\tn:n=%zu\n", t->logical_name,
                   t->entity_set, t->primary_id ? t->primary_id : "-",
                   t->change_tracking ? "tracked" : "untracked", t->is_intersect ? "intersect" : "-",
                   t->read_only ? ",read-only" : "", t->n_attrs, t->n_lookups, t->n_many_to_many);
        }
    } else if (strcmp(cmd, "read") == 0 && i < argc) {
        const struct dv_table *t = NULL;
        const char *delta_out = NULL, *delta_in = NULL;
        const char *name = argv[i++];
        for (; i + 1 < argc; i += 2) {
            if (strcmp(argv[i], "--delta-out") == 0)
                delta_out = argv[i + 1];
            else if (strcmp(argv[i], "--delta-in") == 0)
                delta_in = argv[i + 1];
        }
        if ((rc = find_table(c, &env, name, &tables, &n_tables, &t, &err))) {
            status = die(rc, &err, "table");
            goto out;
        }
        char *link_in = delta_in ? read_text(delta_in) : NULL;
        if (delta_in && !link_in) {
            status = die(-ENOENT, NULL, "cannot read --delta-in");
            goto out;
        }
        struct table_out to = {.primary_id = t->primary_id, .delta = link_in != NULL,
                               .out = stdout};
        struct dv_read_cb cb = {on_record, on_deleted, &to};
        char *link = NULL;
        struct dv_read_stats st = {0};
        rc = dv_read_table(c, &env, t, link_in, &cb, &link, &st, &err);
        free(link_in);
        if (rc) {
            table_out_release(&to);
            status = die(rc, &err, "read");
            goto out;
        }
        if (!to.delta)
            table_write(&to);
        table_out_release(&to);
        fprintf(stderr, "read pages=%llu records=%llu deleted=%llu\n",
                (unsigned long long)st.pages, (unsigned long long)st.records,
                (unsigned long long)st.deleted);
        if (delta_out && link &&
            write_file_atomic(delta_out, link, strlen(link), 0600) != 0)
            status = die(-EIO, NULL, "cannot write --delta-out");
        free(link);
    } else if (strcmp(cmd, "readall") == 0 && i < argc) {
        int threads = (int)strtol(argv[i], NULL, 10);
        if ((rc = dv_tables_list(c, &env, &tables, &n_tables, &err))) {
            status = die(rc, &err, "tables");
            goto out;
        }
        struct readall ra = {.c = c, .env = &env, .tables = tables, .n = n_tables,
                             .counts = calloc(n_tables + 1, sizeof(uint64_t)),
                             .rcs = calloc(n_tables + 1, sizeof(int))};
        pthread_mutex_init(&ra.lock, NULL);
        pthread_t th[64];
        if (threads < 1 || threads > 64)
            threads = 4;
        for (int k = 0; k < threads; k++)
            pthread_create(&th[k], NULL, readall_worker, &ra);
        for (int k = 0; k < threads; k++)
            pthread_join(th[k], NULL);
        for (size_t k = 0; k < n_tables; k++) {
            printf("%s\t%llu\n", tables[k].logical_name, (unsigned long long)ra.counts[k]);
            if (ra.rcs[k])
                status = 1;
        }
        pthread_mutex_destroy(&ra.lock);
        free(ra.counts);
        free(ra.rcs);
    } else if (strcmp(cmd, "capacity") == 0) {
        int64_t mb = 0;
        if ((rc = dv_tenant_free_capacity_mb(c, env.tenant_id, &mb, &err))) {
            status = die(rc, &err, "capacity");
            goto out;
        }
        printf("%lld\n", (long long)mb);
    } else if (strcmp(cmd, "runtime") == 0 && i < argc) {
        if ((rc = dv_env_set_runtime_state(c, &env, argv[i], &err))) {
            status = die(rc, &err, "runtime");
            goto out;
        }
    } else if (strcmp(cmd, "request") == 0 && i + 1 < argc) {
        const char *method = argv[i], *path = argv[i + 1];
        const char *body = i + 2 < argc && strcmp(argv[i + 2], "-") != 0 ? argv[i + 2] : NULL;
        const char *const *headers = i + 3 < argc ? (const char *const *)&argv[i + 3] : NULL;
        struct dv_response r;
        if ((rc = dv_request(c, &env, method, path, body, headers, &r, &err))) {
            status = die(rc, &err, "request");
            goto out;
        }
        printf("status %ld\n%s\n", r.status, r.body.data ? r.body.data : "");
        buf_release(&r.body);
    } else if (strcmp(cmd, "batch") == 0 && i < argc) {
        struct buf text = BUF_INIT;
        if (read_file(argv[i], 64 << 20, &text)) {
            status = die(-ENOENT, NULL, "cannot read the batch file");
            goto out;
        }
        bool cont = i + 1 < argc && strcmp(argv[i + 1], "--continue") == 0;
        struct dv_batch_item *items = calloc(1001, sizeof(*items));
        size_t n = 0;
        char *save = NULL;
        for (char *line = strtok_r(text.data, "\n", &save); line && n < 1001;
             line = strtok_r(NULL, "\n", &save)) {
            char *sp = strchr(line, ' ');
            if (!sp)
                continue;
            *sp = '\0';
            char *path = sp + 1, *body = strchr(path, ' ');
            if (body)
                *body++ = '\0';
            items[n].method = line;
            items[n].path = path;
            items[n].body = body;
            n++;
        }
        rc = dv_batch(c, &env, items, n, cont, NULL, &err);
        if (rc) {
            status = die(rc, &err, "batch");
        } else {
            for (size_t k = 0; k < n; k++)
                printf("item %zu %d\n", k + 1, items[k].status);
        }
        dv_batch_items_release(items, n);
        free(items);
        buf_release(&text);
    } else if (strcmp(cmd, "file-get") == 0 && i + 3 < argc) {
        FILE *f = fopen(argv[i + 3], "wb");
        char *name = NULL;
        if (!f) {
            status = die(-errno, NULL, "cannot create OUT");
            goto out;
        }
        rc = dv_file_download(c, &env, argv[i], argv[i + 1], argv[i + 2], false, write_out, f,
                              &name, &err);
        fclose(f);
        if (rc) {
            status = die(rc, &err, "file-get");
            goto out;
        }
        printf("%s\n", name ? name : "");
        free(name);
    } else if (strcmp(cmd, "file-put") == 0 && i + 4 < argc) {
        struct buf data = BUF_INIT;
        if (read_file(argv[i + 4], 200u << 20, &data)) {
            status = die(-ENOENT, NULL, "cannot read IN");
            goto out;
        }
        rc = dv_file_upload(c, &env, argv[i], argv[i + 1], argv[i + 2], argv[i + 3], data.data,
                            data.len, NULL, &err);
        buf_release(&data);
        if (rc)
            status = die(rc, &err, "file-put");
    } else {
        status = die(-EINVAL, NULL, "unknown command or missing arguments");
    }
out:
    if (c) {
        struct dv_stats s;
        dv_client_stats(c, &s);
        fprintf(stderr, "stats requests=%llu retries=%llu throttled=%llu bytes=%llu\n",
                (unsigned long long)s.requests, (unsigned long long)s.retries,
                (unsigned long long)s.throttled, (unsigned long long)s.bytes_in);
    }
    dv_tables_free(tables, n_tables);
    dv_env_release(&env);
    dv_client_free(c);
    config_free(cfg);
    return status;
}
