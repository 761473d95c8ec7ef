/* objtool: drive one object store from the shell (integration tests and benchmarks of issue 6).
 *
 *   objtool LOCATION put NAME            (data from stdin)
 *   objtool LOCATION put-file NAME PATH
 *   objtool LOCATION put-if-absent NAME  (data from stdin)
 *   objtool LOCATION get NAME [OFF [LEN]] (to stdout)
 *   objtool LOCATION stat NAME           (prints the size)
 *   objtool LOCATION list [PREFIX]       ("SIZE NAME" lines, sorted)
 *   objtool LOCATION del NAME
 *   objtool LOCATION leases [PREFIX]     (the live leases under PREFIX, "NAME: holder" lines; a
 *                                         released or expired lease keeps objects but is not
 *                                         listed)
 *   objtool LOCATION fill PREFIX N       (N small objects PREFIX000000.. holding their names)
 *   objtool LOCATION open NAME           (a manifest or environment document, opened: the
 *                                         repository is opened with DVSNAP_PASSWORD_FILE when
 *                                         encrypted, its catalog under DVSNAP_CACHE_DIR)
 *   objtool LOCATION blob ID             (a blob's bytes, opened and checked, the same way)
 *
 * Endpoints and credential files come from the same environment variables that override the
 * configuration: DVSNAP_AZURE_ENDPOINT, DVSNAP_AZURE_KEY_FILE, DVSNAP_S3_ENDPOINT,
 * DVSNAP_S3_REGION, DVSNAP_S3_CREDENTIALS_FILE; OBJTOOL_DEBUG=1 logs every request. Exit status: 0, or the errno of the failure
 * (2 ENOENT, 17 EEXIST, 5 EIO, 110 ETIMEDOUT...), with the message on stderr. Single-threaded. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/log.h"
#include "backend/objstore/objstore.h"
#include "backend/objstore/objstore_lease.h"
#include "backend/repo/repo_int.h"

static int collect(void *ctx, const char *name, uint64_t size)
{
    struct buf *b = ctx;
    return buf_printf(b, "%llu %s\n", (unsigned long long)size, name);
}

static int cmp_line(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    const char *xs = strchr(x, ' '), *ys = strchr(y, ' ');
    return strcmp(xs ? xs : x, ys ? ys : y);
}

static int read_stdin(struct buf *b)
{
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, stdin)) > 0)
        if (buf_add(b, tmp, n))
            return -ENOMEM;
    return ferror(stdin) ? -EIO : 0;
}

static char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? strdup(v) : NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: objtool LOCATION put|put-file|put-if-absent|get|stat|list|del|leases|fill ...\n");
        return 64;
    }
    const char *loc = argv[1], *cmd = argv[2];
    if (getenv("OBJTOOL_DEBUG"))
        log_set_level(LOG_DEBUG);
    struct config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.azure_endpoint = env("DVSNAP_AZURE_ENDPOINT");
    cfg.azure_key_file = env("DVSNAP_AZURE_KEY_FILE");
    cfg.s3_endpoint = env("DVSNAP_S3_ENDPOINT");
    cfg.s3_region = env("DVSNAP_S3_REGION");
    cfg.s3_credentials_file = env("DVSNAP_S3_CREDENTIALS_FILE");
    struct dverr err;
    dverr_clear(&err);
    struct objstore *s = NULL;
    struct buf b = BUF_INIT;
    int rc;
    if (strncmp(loc, "azure://", 8) == 0)
        rc = objstore_azure_open(loc, &cfg, &s, &err);
    else if (strncmp(loc, "s3://", 5) == 0)
        rc = objstore_s3_open(loc, &cfg, &s, &err);
    else
        rc = objstore_open(loc, &cfg, &s, &err);
    if (rc)
        goto out;
    const char *name = argc > 3 ? argv[3] : "";
    if (strcmp(cmd, "put") == 0 || strcmp(cmd, "put-if-absent") == 0) {
        if ((rc = read_stdin(&b)))
            goto out;
        rc = (cmd[3] ? s->ops->put_if_absent : s->ops->put)(s->impl, name, b.data ? b.data : "",
                                                            b.len, &err);
    } else if (strcmp(cmd, "put-file") == 0 && argc > 4) {
        rc = s->ops->put_file(s->impl, name, argv[4], &err);
    } else if (strcmp(cmd, "get") == 0) {
        uint64_t off = argc > 4 ? strtoull(argv[4], NULL, 10) : 0;
        uint64_t len = argc > 5 ? strtoull(argv[5], NULL, 10) : OBJSTORE_TO_END;
        rc = s->ops->get(s->impl, name, off, len, &b, &err);
        if (rc == 0 && b.len && fwrite(b.data, 1, b.len, stdout) != b.len)
            rc = -EIO;
    } else if (strcmp(cmd, "stat") == 0) {
        uint64_t size = 0;
        rc = s->ops->stat(s->impl, name, &size, &err);
        if (rc == 0)
            printf("%llu\n", (unsigned long long)size);
    } else if (strcmp(cmd, "list") == 0) {
        rc = s->ops->list(s->impl, name, collect, &b, &err);
        if (rc == 0 && b.len) {
            size_t n = 0;
            for (size_t i = 0; i < b.len; i++)
                n += b.data[i] == '\n';
            char **lines = calloc(n, sizeof *lines);
            size_t k = 0;
            for (char *p = b.data; lines && *p && k < n; k++) {
                char *e = strchr(p, '\n');
                *e = '\0';
                lines[k] = p;
                p = e + 1;
            }
            qsort(lines, k, sizeof *lines, cmp_line);
            for (size_t i = 0; i < k; i++)
                printf("%s\n", lines[i]);
            free(lines);
        }
    } else if (strcmp(cmd, "del") == 0) {
        rc = s->ops->del(s->impl, name, &err);
    } else if (strcmp(cmd, "leases") == 0) {
        int live = 0;
        rc = objstore_lease_live(s, name, NULL, &b, &live, &err);
        if (rc == 0 && b.len && fwrite(b.data, 1, b.len, stdout) != b.len)
            rc = -EIO;
    } else if ((strcmp(cmd, "open") == 0 || strcmp(cmd, "blob") == 0) && argc > 3) {
        struct repo *r = NULL;
        struct buf doc = BUF_INIT;
        cfg.repository = (char *)loc;
        cfg.cache_dir = env("DVSNAP_CACHE_DIR"); /* the catalog of a remote repository */
        if (!cfg.cache_dir)
            cfg.cache_dir = strdup("/tmp");
        cfg.password_file = env("DVSNAP_PASSWORD_FILE");
        if (!(rc = repo_open(&cfg, &r, &err)) && cmd[0] == 'b')
            rc = repo_blob_get(r, name, &doc, &err);
        else if (!rc && !(rc = s->ops->get(s->impl, name, 0, OBJSTORE_TO_END, &b, &err)))
            rc = repo_doc_open(r, strncmp(name, "points/", 7) == 0 ? "manifest" : "envdoc", name,
                               &b, &doc, &err);
        if (rc == 0 && doc.len && fwrite(doc.data, 1, doc.len, stdout) != doc.len)
            rc = -EIO;
        buf_release(&doc);
        repo_free(r);
        free(cfg.cache_dir);
        free(cfg.password_file);
    } else if (strcmp(cmd, "fill") == 0 && argc > 4) {
        long n = strtol(argv[4], NULL, 10);
        for (long i = 0; i < n && rc == 0; i++) {
            char key[300];
            snprintf(key, sizeof key, "%s%06ld", name, i);
            rc = s->ops->put(s->impl, key, key, strlen(key), &err);
        }
    } else {
        fprintf(stderr, "objtool: unknown command or missing argument: %s\n", cmd);
        rc = -EINVAL;
    }
out:
    if (rc)
        fprintf(stderr, "objtool: %s\n", *dverr_msg(&err) ? dverr_msg(&err) : strerror(-rc));
    fflush(stdout);
    buf_release(&b);
    objstore_free(s);
    free(cfg.azure_endpoint);
    free(cfg.azure_key_file);
    free(cfg.s3_endpoint);
    free(cfg.s3_region);
    free(cfg.s3_credentials_file);
    return rc ? (-rc > 0 && -rc < 126 ? -rc : 1) : 0;
}
