/* ops: the operations registry behind the mount's control files (docs/architecture.md section 4). It starts
 * manual backups (capture_env with a label) and restores (restore_run) on background threads,
 * after validating them synchronously so a refusal reaches the writer of the control file as an
 * errno (EINVAL, EPERM, ENOSPC, EOPNOTSUPP, EBUSY) with the reason kept for reading. It can also
 * run the continuous capture loop (capture_all every N seconds) inside the mount process; each
 * pass of it is an operation too (kind "capture", env null; progress names the environment and
 * table being read, and at the end lists every environment with its new point, or with why it
 * was skipped or failed).
 *
 * Every operation (refusals included) has an id and a JSON document: kind, env, state
 * (running|done|failed|refused|interrupted), progress, outcome, error. Documents are kept in
 * memory (the newest OPS_KEEP) and written atomically to <state_dir>/<id>.json on every state
 * change and at most once a second while running, so they survive a restart (an operation that
 * was running when the process died reads "interrupted").
 *
 * Threading: all functions are thread-safe; one mutex guards the list and each operation's
 * fields; no lock is held across capture, restore, HTTP or file I/O. ops_free cancels running
 * operations (at their next page) and waits for them. */
#ifndef DVSNAP_OPS_H
#define DVSNAP_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/base/config.h"
#include "backend/dataverse/dataverse.h"
#include "backend/repo/repo.h"
#include "backend/base/util.h"

#define OPS_KEEP 200

struct ops;

/* repo, dv and cfg are borrowed and must outlive the registry. state_dir is created (0700). */
int ops_new(struct repo *repo, struct dv_client *dv, const struct config *cfg,
            const char *state_dir, struct ops **out, struct dverr *err);
void ops_free(struct ops *o); /* accepts NULL */

/* Start a manual backup of env labelled label. -EINVAL (bad label), -EPERM (policy: default
 * environment, trial), -EBUSY (a backup of env is running), -ENOENT (no such environment), with
 * the reason in err; the refusal is recorded too. id (may be NULL) gets the operation id. */
int ops_backup_start(struct ops *o, const char *env, const char *label, char id[64],
                     struct dverr *err);
/* Start a restore of env/point from a .restore line (restore_request_parse + restore_validate
 * synchronously, then restore_run in the background). */
int ops_restore_start(struct ops *o, const char *env, const char *point, const char *line,
                      char id[64], struct dverr *err);
/* Run capture_all every every_s seconds (the first pass at once) until ops_free; every pass is
 * recorded as a "capture" operation. */
int ops_capture_loop_start(struct ops *o, int64_t every_s, struct dverr *err);
/* An observer of the capture loop (dvsnap's health records and metrics), called on the loop's
 * thread: pass(ctx, false) before each pass, env_done as capture_opts.env_done for every
 * environment, pass(ctx, true) after the pass. Set it before ops_capture_loop_start; NULL
 * members are skipped. The struct is copied. */
struct capture_result;
struct ops_capture_observer {
    void (*pass)(void *ctx, bool done);
    void (*env_done)(void *ctx, const struct dv_env *env, int rc,
                     const struct capture_result *res, const struct dverr *err);
    void *ctx;
};
void ops_observe_captures(struct ops *o, const struct ops_capture_observer *obs);
int64_t ops_capture_every(struct ops *o); /* 0 when the loop is not running */

/* Ids of the known operations, oldest first (caller frees each and the array). */
int ops_list(struct ops *o, char ***ids, size_t *n);
/* The operation's JSON document (-ENOENT when unknown). */
int ops_json(struct ops *o, const char *id, struct buf *out);
/* What reading ENV/.backup (point NULL) or ENV/POINT/.restore shows: the newest such operation's
 * document, or a line saying there is none. */
int ops_status(struct ops *o, const char *env, const char *point, struct buf *out);
/* Wait until operation id is no longer running (at most timeout_ms): 0, -ETIMEDOUT, -ENOENT. */
int ops_wait(struct ops *o, const char *id, int timeout_ms);

#endif
