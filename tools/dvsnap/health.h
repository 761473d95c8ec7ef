/* health: what dvsnap remembers of its captures, for `dvsnap status` and Prometheus.
 *
 * State: one JSON file per environment, <state_dir>/<repository key>/<env>.json (the key is the
 * first 16 hex digits of the SHA-256 of the `repository` setting, so one state_dir serves several
 * repositories), written atomically after every capture of the environment by `dvsnap capture`,
 * `dvsnap backup` and the mount's capture loop: the last attempt and its result, the last success,
 * the last failure and its reason, the tables the last point could not capture, and running totals
 * (captures by result, records changed, requests, 429 answers, bytes stored). Files are mode 0644:
 * they hold no secret; an error message there is the same one printed on stderr.
 *
 * Metrics: the Prometheus text exposition format (version 0.0.4) rendered from those files, written
 * atomically to metrics_file after every capture pass (node_exporter's textfile collector) and
 * served at GET /metrics on metrics_listen by `dvsnap mount` (libmicrohttpd). docs/json.md lists
 * the metrics.
 *
 * Per environment and pass, the recorder measures: the duration (from the end of the previous
 * environment's capture, or the start of the pass), the requests and 429s the Dataverse client
 * sent meanwhile, and the bytes written to the repository meanwhile (meter.h).
 * Threading: a recorder is used by one thread at a time; state files are updated under an flock
 * of <dir>/.lock so two processes do not lose each other's totals; the metrics server renders on
 * its own thread from the files alone. */
#ifndef DVSNAP_HEALTH_H
#define DVSNAP_HEALTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/engine/capture.h"
#include "backend/repo/repo.h"
#include "tools/dvsnap/meter.h"

/* What the state file of one environment says (every field zero/NULL when unknown). */
struct health_state {
    char *env;
    time_t last_attempt_at;
    char *last_result;           /* "ok", "partial" (a point without some tables), "failed" */
    time_t last_success_at;      /* the last capture that committed a point */
    char *last_point;
    double last_duration_s;
    uint64_t last_records_changed, last_requests, last_throttled, last_bytes_stored;
    char **tables_not_captured;  /* of the last committed point */
    char **not_captured_reasons; /* the same length */
    size_t n_not_captured;
    time_t last_failure_at;
    char *last_error;
    uint64_t ok_total, partial_total, failed_total;
    uint64_t records_changed_total, requests_total, throttled_total, bytes_stored_total;
};
void health_state_release(struct health_state *s);
/* Read env's state file: 0, -ENOENT when there is none, -EINVAL when it does not parse. */
int health_state_read(const struct config *cfg, const char *env, struct health_state *out);
/* Environments that have a state file, sorted. */
int health_state_envs(const struct config *cfg, char ***names, size_t *n);

/* The tables a point lists in its not_captured ("table NAME" entries) and their reasons (the
 * reason may be NULL), in the manifest's order. Free both with strv_free(v, n). 0 or -errno. */
int health_point_not_captured(struct repo *repo, const char *env, const char *point,
                              char ***tables, char ***reasons, size_t *n);

/* One environment's part of a capture pass, as recorded (also what `capture --json` reports). */
struct health_env {
    char *env;
    int rc;                      /* 0: point committed; -EPERM: not backed up; else failed */
    struct capture_result res;   /* rc 0 */
    char *error;                 /* rc != 0 */
    double duration_s;
    uint64_t requests, throttled, bytes_stored;
    char **not_captured;         /* tables the point lacks (rc 0), with their reasons */
    char **not_captured_reasons;
    size_t n_not_captured;
};
void health_env_release(struct health_env *e);
/* Did e commit a point without some tables ("partial" in the state file, exit 5)? */
bool health_env_partial(const struct health_env *e);
/* The "tables_not_captured" array, [{"table":T,"reason":R or null},...], appended to b; spaced:
 * with a space after each ',' and ':' (the state files' layout). */
void health_not_captured_json(struct buf *b, char *const *tables, char *const *reasons, size_t n,
                              bool spaced);

struct health;
/* A recorder over the run's repository (its meter: bytes stored) and client (requests, 429s). */
int health_new(const struct config *cfg, struct repo *repo, struct meter *meter,
               struct dv_client *dv, struct health **out);
void health_free(struct health *h); /* accepts NULL */
void health_pass_begin(struct health *h);
/* Record one environment (capture_opts.env_done's arguments) in its state file; out (may be
 * NULL) gets what was recorded. Skipped environments (-EPERM) are not recorded. */
void health_env_done(struct health *h, const struct dv_env *env, int rc,
                     const struct capture_result *res, const struct dverr *err,
                     struct health_env *out);
/* End of a pass: write metrics_file when configured. 0 or -errno with err. */
int health_pass_end(struct health *h, struct dverr *err);

/* The metrics of every environment with a state file, in the text exposition format. */
int health_metrics(const struct config *cfg, struct buf *out);

/* Can listen ("HOST:PORT") be served? Resolves it and binds a socket there for a moment, so a
 * mount that will daemonise can refuse a bad address or a port in use before it does. */
int health_listen_check(const char *listen, struct dverr *err);
/* Serve GET /metrics on listen ("HOST:PORT") until health_serve_stop. */
struct health_server;
int health_serve(const struct config *cfg, const char *listen, struct health_server **out,
                 struct dverr *err);
void health_serve_stop(struct health_server *s); /* accepts NULL */

#endif
