/* anomaly: mass-delete alerts (contract and formats in anomaly.h).
 *
 * The check is arithmetic on the manifests' counts: the previous point's record count of a table
 * is its size before the pass, and the new point's "deleted" is what the pass deleted (a table
 * kept as of the previous point because its read failed deleted nothing). The report holds the
 * point before (an automatic hold, by "dvsnap", that keeps any longer hold already there) and runs
 * notify_command through /bin/sh -c with posix_spawn: the summary is its stdin (an unlinked
 * temporary file, so a command that does not read it cannot block or SIGPIPE dvsnap), its stdout
 * goes to dvsnap's stderr, its signals are the defaults with none blocked (dvsnap's threads block
 * them all), and it gets ANOMALY_NOTIFY_WAIT_S to finish.
 * Threading: no shared state; safe from any thread (posix_spawn, no fork of a threaded process's
 * memory beyond what it does). */
#include "backend/engine/anomaly.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/base/json.h"
#include "backend/base/log.h"

extern char **environ;

static const struct point_table *prev_table(const struct point *prev, const char *name)
{
    for (size_t i = 0; i < prev->n_tables; i++)
        if (strcmp(prev->tables[i].name, name) == 0)
            return &prev->tables[i];
    return NULL;
}

int anomaly_check(const struct config *cfg, const struct point *prev, struct point *p)
{
    if (!cfg || !prev || cfg->anomaly_delete_percent <= 0)
        return 0;
    struct buf tables = BUF_INIT;
    size_t flagged = 0;
    int rc = 0;
    for (size_t i = 0; i < p->n_tables && !rc; i++) {
        const struct point_table *t = &p->tables[i];
        const struct point_table *b = prev_table(prev, t->name);
        if (!b || b->records == 0 || b->records < (uint64_t)cfg->anomaly_min_rows)
            continue;
        double percent = 100.0 * (double)t->deleted / (double)b->records;
        if (percent <= cfg->anomaly_delete_percent)
            continue;
        rc = buf_addstr(&tables, flagged++ ? ",{\"table\":" : "{\"table\":");
        rc = rc ? rc : buf_add_json_string(&tables, t->name, strlen(t->name));
        rc = rc ? rc : buf_printf(&tables, ",\"rows_before\":%llu,\"deleted\":%llu,"
                                           "\"percent\":%.2f,\"created\":%llu,\"updated\":%llu,"
                                           "\"deleted_previous_pass\":%llu}",
                                  (unsigned long long)b->records, (unsigned long long)t->deleted,
                                  percent, (unsigned long long)t->created,
                                  (unsigned long long)t->updated,
                                  (unsigned long long)b->deleted);
    }
    if (!rc && flagged) {
        struct buf doc = BUF_INIT;
        rc = buf_addstr(&doc, "{\"kind\":\"mass_delete\",\"previous_point\":");
        rc = rc ? rc : buf_add_json_string(&doc, prev->name, strlen(prev->name));
        rc = rc ? rc : buf_printf(&doc, ",\"threshold_percent\":%g,\"min_rows\":%d,\"tables\":[",
                                  cfg->anomaly_delete_percent, cfg->anomaly_min_rows);
        rc = rc ? rc : buf_add(&doc, tables.data, tables.len);
        rc = rc ? rc : buf_addstr(&doc, "]}");
        if (!rc) {
            free(p->anomaly_json);
            p->anomaly_json = buf_detach(&doc);
        }
        buf_release(&doc);
    }
    buf_release(&tables);
    return rc;
}

void anomaly_note(const char *anomaly_json, char *out, size_t n)
{
    struct json_doc *doc = NULL;
    snprintf(out, n, "a mass delete");
    if (!anomaly_json || json_parse(anomaly_json, strlen(anomaly_json), NULL, &doc, NULL))
        return;
    const struct json_node *tables = json_get(json_root(doc), "tables");
    const struct json_node *t = tables && tables->type == JSON_ARRAY ? tables->child : NULL;
    const char *name = t ? json_get_str(t, "table") : NULL;
    const struct json_node *del = t ? json_get(t, "deleted") : NULL;
    const struct json_node *before = t ? json_get(t, "rows_before") : NULL;
    const struct json_node *pct = t ? json_get(t, "percent") : NULL;
    if (name && del && before && pct && del->type == JSON_NUMBER &&
        before->type == JSON_NUMBER && pct->type == JSON_NUMBER)
        snprintf(out, n, "%s: %s of %s records deleted (%s%%)%s", name, del->str, before->str,
                 pct->str, tables->n_children > 1 ? ", and more tables" : "");
    json_doc_free(doc);
}

/* Hold prev (unless a hold that lasts at least as long is there); *held gets the hold in force. */
static int hold_previous(struct repo *repo, const struct config *cfg, const char *prev_name,
                         const struct point *p, time_t now, struct point_hold *held,
                         struct dverr *err)
{
    struct point_hold h = {0};
    struct dverr e2 = {0};
    time_t until = now + (time_t)cfg->anomaly_hold;
    int rc = repo_hold_get(repo, p->env, prev_name, &h, &e2);
    if (rc == 0 && point_hold_active(&h, now) && (h.until == 0 || h.until >= until)) {
        *held = h;
        return 0;
    }
    if (rc == 0)
        point_hold_release(&h);
    if (rc == -EIO) { /* a damaged hold holds with no end: leave it as it is */
        memset(held, 0, sizeof *held);
        snprintf(held->point, sizeof held->point, "%s", prev_name);
        held->reason = strdup(dverr_msg(&e2));
        held->by = strdup("?");
        return 0;
    }
    if (rc && rc != -ENOENT)
        return dverr_set(err, rc, "%s", dverr_msg(&e2));
    char what[240], reason[600];
    anomaly_note(p->anomaly_json, what, sizeof what);
    snprintf(reason, sizeof reason, "automatic: mass delete at %s (%s); the point before it is "
             "kept while someone looks", p->name, what);
    memset(&h, 0, sizeof h);
    snprintf(h.point, sizeof h.point, "%s", prev_name);
    h.reason = strdup(reason);
    h.by = strdup("dvsnap");
    h.placed_at = now;
    h.until = until;
    h.automatic = true;
    if (!h.reason || !h.by) {
        point_hold_release(&h);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    if ((rc = repo_hold_put(repo, p->env, &h, err))) {
        point_hold_release(&h);
        return rc;
    }
    *held = h;
    return 0;
}

/* Run cmd with doc on stdin; 0 when it exits 0. */
static int run_notify(const char *cmd, const struct buf *doc, struct dverr *err)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/dvsnap-notify-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return dverr_set(err, -errno, "notify_command: a temporary file: %s", strerror(errno));
    unlink(path);
    int rc = 0;
    for (size_t off = 0; off < doc->len && !rc;) {
        ssize_t w = write(fd, doc->data + off, doc->len - off);
        if (w < 0 && errno != EINTR)
            rc = dverr_set(err, -errno, "notify_command: writing its input: %s", strerror(errno));
        else if (w > 0)
            off += (size_t)w;
    }
    if (!rc && lseek(fd, 0, SEEK_SET) != 0)
        rc = dverr_set(err, -errno, "notify_command: %s", strerror(errno));
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    pid_t pid = -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawn_file_actions_adddup2(&fa, fd, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *argv[] = {(char *)"sh", (char *)"-c", (char *)cmd, NULL};
    int src = rc ? 0 : posix_spawn(&pid, "/bin/sh", &fa, &attr, argv, environ);
    if (!rc && src)
        rc = dverr_set(err, -src, "notify_command: cannot start /bin/sh: %s", strerror(src));
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(fd);
    if (rc)
        return rc;
    int status = 0;
    for (int waited_ms = 0;; waited_ms += 100) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            return dverr_set(err, -errno, "notify_command: %s", strerror(errno));
        if (waited_ms >= ANOMALY_NOTIFY_WAIT_S * 1000) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return dverr_set(err, -ETIMEDOUT, "notify_command did not finish in %d s; killed",
                             ANOMALY_NOTIFY_WAIT_S);
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return dverr_set(err, -EIO, "notify_command exited with status %d", WEXITSTATUS(status));
    return dverr_set(err, -EIO, "notify_command was killed by signal %d",
                     WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void anomaly_report(struct repo *repo, const struct config *cfg, const char *prev_name,
                    const struct point *p, time_t now)
{
    if (!p->anomaly_json || !cfg)
        return;
    struct point_hold held = {0};
    bool have_hold = false;
    struct dverr e2 = {0};
    if (prev_name && cfg->anomaly_hold > 0) {
        if (hold_previous(repo, cfg, prev_name, p, now, &held, &e2))
            log_warn("%s: the point before the anomaly (%s) could not be held: %s", p->env,
                     prev_name, dverr_msg(&e2));
        else
            have_hold = true;
    }
    log_info("%s: point %s is flagged: %s", p->env, p->name, p->anomaly_json);
    if (cfg->notify_command && *cfg->notify_command) {
        struct buf doc = BUF_INIT;
        int rc = buf_addstr(&doc, "{\"env\":");
        rc = rc ? rc : buf_add_json_string(&doc, p->env, strlen(p->env));
        rc = rc ? rc : buf_addstr(&doc, ",\"point\":");
        rc = rc ? rc : buf_add_json_string(&doc, p->name, strlen(p->name));
        rc = rc ? rc : buf_addstr(&doc, ",\"held\":");
        rc = rc ? rc : have_hold ? point_hold_render(&held, &doc) : buf_addstr(&doc, "null");
        rc = rc ? rc : buf_addch(&doc, ',');
        rc = rc ? rc : buf_addstr(&doc, p->anomaly_json + 1); /* the check's object, unwrapped */
        rc = rc ? rc : buf_addch(&doc, '\n');
        dverr_clear(&e2);
        if (rc)
            rc = dverr_set(&e2, rc, "out of memory");
        else
            rc = run_notify(cfg->notify_command, &doc, &e2);
        buf_release(&doc);
        if (rc)
            log_warn("%s: %s", p->env, dverr_msg(&e2));
    }
    point_hold_release(&held);
}
