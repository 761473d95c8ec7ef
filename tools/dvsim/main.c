/* dvsim: a local Dataverse simulator (Web API, admin API, token endpoint) for trying and testing
 * dvsnap without a tenant. main parses the command line, opens and seeds the SQLite store, starts
 * the HTTP server, writes the ready file and waits for SIGINT/SIGTERM. See `dvsim --help`.
 * Single-threaded until dvsim_server_start; the server threads share struct dvsim (dvsim.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/base/log.h"
#include "tools/dvsim/dvsim.h"

int dvsim_parse_rate(const char *s, int *n, int *secs);

static void usage(FILE *f)
{
    fputs("usage: dvsim [options]\n"
          "  --listen HOST:PORT          address to serve (default 127.0.0.1:8080; port 0 = any free port)\n"
          "  --ready-file FILE           write the bound port and a newline here once serving\n"
          "  --public-url URL            the base of every URL dvsim hands out (instanceApiUrl, nextLink,\n"
          "                              deltaLink, OData-EntityId), e.g. a TLS front https://host:8443\n"
          "  --db FILE                   SQLite database (default dvsim.db); kept across restarts\n"
          "  --seed demo|N               the sample tenant's seed (default demo); same seed, same data\n"
          "  --records N                 accounts in contoso-prod (contacts: 2N); default 1000\n"
          "  --reseed                    rebuild the tenant even if the database is already seeded\n"
          "  --shape small|real          small (default): eighteen tables in every org; real: about 700\n"
          "                              definitions shaped like a Dynamics 365 Sales org (virtual and\n"
          "                              elastic tables, most tables empty, notes per two accounts)\n"
          "  --elastic-rows N            rows of the elastic table in contoso-prod (--shape real;\n"
          "                              default: --records)\n"
          "  --notes N                   notes in contoso-prod (--shape real; default: --records / 2)\n"
          "  --attachment-max-bytes N    the largest of their attachments (--shape real; default 5 MB):\n"
          "                              a larger one is drawn again between N/2 and N\n"
          "  --client-id ID              the only accepted client id (default: any)\n"
          "  --client-secret-file FILE   the client secret (file mode 0600); default: any secret\n"
          "  --token-lifetime S          access token lifetime in seconds (default 3599)\n"
          "  --delta-token-lifetime S    change-tracking token lifetime (default 604800 = 7 days)\n"
          "  --metadata-stamp-lifetime S RetrieveMetadataChanges version stamp lifetime\n"
          "                              (default 7776000 = 90 days)\n"
          "  --max-requests N/SECONDS    service protection window per token (default 6000/300)\n"
          "  --max-concurrency N         concurrent requests per token (default 52)\n"
          "  --latency-ms N              added latency per Web API/admin request\n"
          "  --fail-rate P               fraction of requests answered 500/503\n"
          "  --drop-rate P               fraction of responses cut off mid-body\n"
          "  --truncate-rate P           fraction of 200 responses with truncated JSON\n"
          "  --no-bypass-privilege       the application user lacks prvBypassCustomBusinessLogic and\n"
          "                              prvBypassCustomPlugins: a write with a bypass header gets 403\n"
          "  --hostile-tables            also serve tables with hostile names (slashes, \"..\", control\n"
          "                              characters, 300 bytes, case twins, a hostile entity set)\n"
          "  --verbose                   log debug messages\n",
          f);
}

static int read_secret(const char *path, char **out)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    if (st.st_mode & 077) {
        fprintf(stderr, "dvsim: %s must have mode 0600 (it holds a secret)\n", path);
        return -EPERM;
    }
    struct buf b = BUF_INIT;
    int rc = read_file(path, 4096, &b);
    if (rc)
        return rc;
    while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r'))
        b.data[--b.len] = '\0';
    *out = buf_detach(&b);
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v < 0 || v > 1)
        return -EINVAL;
    *out = v;
    return 0;
}

static int parse_long(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    struct dvsim d;
    memset(&d, 0, sizeof d);
    const char *listen = "127.0.0.1:8080", *ready = NULL, *db = "dvsim.db", *secret_file = NULL;
    bool reseed = false;
    d.demo = true;
    d.bypass_privilege_initial = true;
    d.seed = 1;
    d.records = 1000;
    d.elastic_rows = -1;
    d.notes = -1;
    d.token_lifetime_s = 3599;
    d.faults.delta_token_lifetime_s = 7 * 86400;
    d.faults.metadata_stamp_lifetime_s = 90 * 86400; /* Organization.ExpireSubscriptionsInDays */
    d.meta_version = 1;
    d.faults.max_requests = 6000;
    d.faults.window_s = 300;
    d.faults.max_concurrency = 52;
    d.faults.capacity_free_mb = -1;
    int rc = 0;
    log_set_level(LOG_INFO);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        bool takes = true;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--reseed")) {
            reseed = true;
            takes = false;
        } else if (!strcmp(a, "--hostile-tables")) {
            d.hostile_tables = true;
            takes = false;
        } else if (!strcmp(a, "--no-bypass-privilege")) {
            d.bypass_privilege_initial = false;
            takes = false;
        } else if (!strcmp(a, "--verbose")) {
            log_set_level(LOG_DEBUG);
            takes = false;
        } else if (!v) {
            fprintf(stderr, "dvsim: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--listen")) {
            listen = v;
        } else if (!strcmp(a, "--public-url")) {
            size_t ul = strlen(v);
            while (ul && v[ul - 1] == '/')
                ul--;
            if ((strncmp(v, "http://", 7) && strncmp(v, "https://", 8)) || ul >= sizeof d.base_url ||
                strpbrk(v, "\"\\ \r\n")) {
                rc = -EINVAL;
            } else {
                snprintf(d.base_url, sizeof d.base_url, "%.*s", (int)ul, v);
                d.public_url = true;
            }
        } else if (!strcmp(a, "--ready-file")) {
            ready = v;
        } else if (!strcmp(a, "--db")) {
            db = v;
        } else if (!strcmp(a, "--client-id")) {
            d.client_id = strdup(v);
        } else if (!strcmp(a, "--client-secret-file")) {
            secret_file = v;
        } else if (!strcmp(a, "--seed")) {
            if (!strcmp(v, "demo")) {
                d.demo = true;
                d.seed = 1;
            } else if (parse_long(v, 0, 1LL << 62, &n) == 0) {
                d.demo = false;
                d.seed = (uint64_t)n;
            } else {
                rc = -EINVAL;
            }
        } else if (!strcmp(a, "--records")) {
            rc = parse_long(v, 0, 100000000, &n);
            d.records = n;
        } else if (!strcmp(a, "--shape")) {
            if (!strcmp(v, "real"))
                d.real_shape = true;
            else if (!strcmp(v, "small"))
                d.real_shape = false;
            else
                rc = -EINVAL;
        } else if (!strcmp(a, "--elastic-rows")) {
            rc = parse_long(v, 0, 100000000, &n);
            d.elastic_rows = n;
        } else if (!strcmp(a, "--notes")) {
            rc = parse_long(v, 0, 100000000, &n);
            d.notes = n;
        } else if (!strcmp(a, "--attachment-max-bytes")) {
            rc = parse_long(v, 1, 64LL << 20, &n);
            d.attachment_max = n;
        } else if (!strcmp(a, "--token-lifetime")) {
            rc = parse_long(v, 1, 1LL << 30, &n);
            d.token_lifetime_s = (int)n;
        } else if (!strcmp(a, "--delta-token-lifetime")) {
            rc = parse_long(v, 0, 1LL << 40, &n);
            d.faults.delta_token_lifetime_s = n;
        } else if (!strcmp(a, "--metadata-stamp-lifetime")) {
            rc = parse_long(v, 0, 1LL << 40, &n);
            d.faults.metadata_stamp_lifetime_s = n;
        } else if (!strcmp(a, "--max-requests")) {
            rc = dvsim_parse_rate(v, &d.faults.max_requests, &d.faults.window_s);
        } else if (!strcmp(a, "--max-concurrency")) {
            rc = parse_long(v, 0, 100000, &n);
            d.faults.max_concurrency = (int)n;
        } else if (!strcmp(a, "--latency-ms")) {
            rc = parse_long(v, 0, 600000, &n);
            d.faults.latency_ms = (int)n;
        } else if (!strcmp(a, "--fail-rate")) {
            rc = parse_double(v, &d.faults.fail_rate);
        } else if (!strcmp(a, "--drop-rate")) {
            rc = parse_double(v, &d.faults.drop_rate);
        } else if (!strcmp(a, "--truncate-rate")) {
            rc = parse_double(v, &d.faults.truncate_rate);
        } else {
            fprintf(stderr, "dvsim: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
        if (rc) {
            fprintf(stderr, "dvsim: bad value for %s: %s\n", a, v);
            return 2;
        }
        if (takes)
            i++;
    }
    if (secret_file && (rc = read_secret(secret_file, &d.client_secret)) != 0) {
        fprintf(stderr, "dvsim: cannot read the client secret file %s: %s\n", secret_file, strerror(-rc));
        return 1;
    }
    if (!d.client_secret)
        log_warn("dvsim: no --client-secret-file: any client secret is accepted");
    if (d.elastic_rows < 0)
        d.elastic_rows = d.records;
    if (d.notes < 0)
        d.notes = d.records / 2;
    if (d.real_shape && (rc = dvschema_real_build()) != 0) {
        fprintf(stderr, "dvsim: cannot build the real shape's definitions: %s\n", strerror(-rc));
        return 1;
    }
    d.faults_initial = d.faults;
    d.bypass_privilege = d.bypass_privilege_initial;
    char host[64];
    int port = 0;
    const char *colon = strrchr(listen, ':');
    if (!colon || (size_t)(colon - listen) >= sizeof host || sscanf(colon + 1, "%d", &port) != 1 || port < 0 ||
        port > 65535) {
        fprintf(stderr, "dvsim: --listen wants HOST:PORT, got %s\n", listen);
        return 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen), listen);

    char key_src[256];
    snprintf(key_src, sizeof key_src, "dvsim-token-key|%s|%s", d.client_secret ? d.client_secret : "",
             d.client_id ? d.client_id : "");
    sha256_hex(key_src, strlen(key_src), d.token_key);
    pthread_mutex_init(&d.lock, NULL);
    pthread_mutex_init(&d.write_lock, NULL);
    d.rng = 0x5eed0000ull ^ (uint64_t)now_ms() ^ ((uint64_t)getpid() << 32);
    d.log = calloc(REQLOG_CAP, sizeof *d.log);
    d.db_path = strdup(db);
    struct dverr err;
    dverr_clear(&err);
    if (!d.log || !d.db_path)
        return 1;
    if ((rc = dvstore_open(db, &d.store, &err)) != 0) {
        fprintf(stderr, "dvsim: %s\n", dverr_msg(&err));
        return 1;
    }
    /* reseed when the database holds another seed/size, or when asked */
    bool seeded = false;
    dvstore_is_seeded(d.store, &seeded);
    if (seeded && !reseed) {
        struct sqlite3 *c = dvstore_get(d.store);
        char want[96];
        dvseed_marker(&d, want, sizeof want);
        if (!dvstore_meta_equals(c, "seeded", want))
            reseed = true;
        dvstore_put(d.store, c);
    }
    if (!seeded || reseed) {
        if ((rc = dvseed_tenant(&d, &err)) != 0) {
            fprintf(stderr, "dvsim: %s\n", dverr_msg(&err));
            return 1;
        }
    } else {
        log_info("dvsim: using the tenant already in %s", db);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if ((rc = dvsim_server_start(&d, host, port, &err)) != 0) {
        fprintf(stderr, "dvsim: %s\n", dverr_msg(&err));
        return 1;
    }
    log_info("dvsim: serving %s (tenant %s, token URL %s/%s/oauth2/v2.0/token)", d.base_url, DVSIM_TENANT,
             d.base_url, DVSIM_TENANT);
    if (ready) {
        char line[32];
        int n = snprintf(line, sizeof line, "%d\n", d.port);
        if ((rc = write_file_atomic(ready, line, (size_t)n, 0644)) != 0) {
            fprintf(stderr, "dvsim: cannot write %s: %s\n", ready, strerror(-rc));
            dvsim_server_stop(&d);
            return 1;
        }
    }
    int sig = 0;
    sigwait(&set, &sig);
    log_info("dvsim: signal %d, stopping", sig);
    dvsim_server_stop(&d);
    dvstore_free(d.store);
    free(d.log);
    free(d.db_path);
    free(d.client_id);
    free(d.client_secret);
    for (int i = 0; i < THROTTLE_SLOTS; i++)
        free(d.slots[i].stamps);
    return 0;
}
