/* erase_journal: the erasure's two documents (erase.h). The journal (erase/<env>.journal.json)
 * is written before anything is rewritten and deleted last: it names the records (table and
 * primary key, no field value) and the objects to delete once unreferenced, so a rerun after a
 * kill finishes the same erasure. The log entry (erasures/<env>/<time>-<fingerprint>.json) says
 * when, by whom, the request in words (its values withheld: cmd_erase words it), how many records
 * of which tables, what was rewritten and removed, and which held points were overridden; the
 * records' keys appear only as a SHA-256 fingerprint of their sorted list.
 * Threading: a run belongs to one thread. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/engine/erase_int.h"

/* ---------------------------------------------------------------- journal and log */

void erase_journal_name(const char *env, char *out, size_t n)
{
    snprintf(out, n, "erase/%s.journal.json", env);
}

int erase_journal_write(struct run *r, time_t started)
{
    struct buf j = BUF_INIT;
    char ts[32], name[300];
    rfc3339_from_time(started, ts);
    buf_addstr(&j, "{\"env\":");
    buf_add_json_string(&j, r->req->env, strlen(r->req->env));
    buf_printf(&j, ",\"started_at\":\"%s\",\"by\":", ts);
    buf_add_json_string(&j, r->req->by ? r->req->by : "?", strlen(r->req->by ? r->req->by : "?"));
    buf_addstr(&j, ",\"criterion\":");
    const char *crit = r->req->criterion ? r->req->criterion : "";
    buf_add_json_string(&j, crit, strlen(crit));
    buf_printf(&j, ",\"override_hold\":%s,\"targets\":[", r->req->override_hold ? "true" : "false");
    bool first = true;
    for (size_t i = 0; i < r->t.n; i++)
        for (size_t s = 0; s < r->t.v[i].keys.cap; s++) {
            const struct tkey *k = keymap_slot(&r->t.v[i].keys, s);
            if (!k->key)
                continue;
            buf_addstr(&j, first ? "[" : ",[");
            buf_add_json_string(&j, r->t.v[i].table, strlen(r->t.v[i].table));
            buf_addch(&j, ',');
            buf_add_json_string(&j, k->key, k->len);
            buf_addch(&j, ']');
            first = false;
        }
    buf_addstr(&j, "],\"objects\":[");
    first = true;
    for (const char *p = r->objects.data; p && *p;) {
        const char *nl = strchr(p, '\n');
        buf_printf(&j, "%s\"%.*s\"", first ? "" : ",", (int)(nl - p), p);
        first = false;
        p = nl + 1;
    }
    buf_addstr(&j, "]}\n");
    erase_journal_name(r->req->env, name, sizeof name);
    int rc = j.data ? repo_erase_doc_put(r->repo, name, j.data, r->err)
                    : dverr_set(r->err, -ENOMEM, "out of memory");
    buf_release(&j);
    return rc;
}

/* A journal left by a run that did not finish: its targets and objects (0), or -ENOENT. */
int erase_journal_read(struct repo *repo, const char *env, struct targets *t, struct buf *objects,
                        char *started, char *by, size_t by_n, char *crit, size_t crit_n,
                        bool *override, struct dverr *err)
{
    char name[300];
    struct buf doc = BUF_INIT;
    struct json_doc *jd = NULL;
    erase_journal_name(env, name, sizeof name);
    struct dverr e2 = {0};
    int rc = repo_erase_doc_get(repo, name, &doc, &e2);
    if (rc) {
        buf_release(&doc);
        return rc == -ENOENT ? rc : dverr_set(err, rc, "%s", dverr_msg(&e2));
    }
    rc = json_parse(doc.data ? doc.data : "", doc.len, NULL, &jd, NULL);
    const struct json_node *root = rc ? NULL : json_root(jd);
    const struct json_node *tg = root ? json_get(root, "targets") : NULL;
    const struct json_node *ob = root ? json_get(root, "objects") : NULL;
    if (!tg || tg->type != JSON_ARRAY || !ob || ob->type != JSON_ARRAY) {
        rc = dverr_set(err, -EIO, "the erase journal %s is damaged; the erasure it recorded "
                       "cannot be finished (remove it to go on, then erase again)", name);
        goto out;
    }
    const char *s;
    snprintf(started, 32, "%s", (s = json_get_str(root, "started_at")) ? s : "?");
    snprintf(by, by_n, "%s", (s = json_get_str(root, "by")) ? s : "?");
    snprintf(crit, crit_n, "%s", (s = json_get_str(root, "criterion")) ? s : "");
    *override = json_get_bool(root, "override_hold", false);
    for (const struct json_node *x = tg->child; x && !rc; x = x->next) {
        if (x->type != JSON_ARRAY || x->n_children != 2 || x->child->type != JSON_STRING ||
            x->child->next->type != JSON_STRING) {
            rc = dverr_set(err, -EIO, "the erase journal %s is damaged", name);
            break;
        }
        if (erase_targets_add(t, x->child->str, x->child->next->str, x->child->next->str_len))
            rc = dverr_set(err, -ENOMEM, "out of memory");
    }
    for (const struct json_node *x = ob->child; x && !rc; x = x->next)
        if (x->type == JSON_STRING && segment_id_ok(x->str))
            buf_printf(objects, "%s\n", x->str);
out:
    json_doc_free(jd);
    buf_release(&doc);
    return rc;
}

/* The log entry: what, when, by whom; no field value, no record key (a fingerprint of them). */
int erase_log_write(struct run *r, time_t started, time_t finished, bool resumed)
{
    char **keys = calloc(erase_targets_count(&r->t) + 1, sizeof *keys);
    size_t nk = 0;
    int rc = keys ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < r->t.n; i++)
        for (size_t s = 0; !rc && s < r->t.v[i].keys.cap; s++) {
            const struct tkey *k = keymap_slot(&r->t.v[i].keys, s);
            if (k->key && asprintf(&keys[nk++], "%s\t%s\n", r->t.v[i].table, k->key) < 0)
                rc = -ENOMEM, nk--;
        }
    char fp[65] = "";
    if (!rc) {
        qsort(keys, nk, sizeof *keys, erase_cmp_strp);
        struct sha256_stream *h = sha256_stream_new();
        for (size_t i = 0; h && i < nk; i++)
            sha256_stream_update(h, keys[i], strlen(keys[i]));
        if (h)
            sha256_stream_finish(h, fp);
    }
    for (size_t i = 0; i < nk; i++)
        free(keys[i]);
    free(keys);
    if (rc)
        return dverr_set(r->err, rc, "out of memory");
    struct buf j = BUF_INIT;
    char ts[32], tf[32], pn[32];
    rfc3339_from_time(started, ts);
    rfc3339_from_time(finished, tf);
    point_name_from_time(finished, pn);
    buf_addstr(&j, "{\"env\":");
    buf_add_json_string(&j, r->req->env, strlen(r->req->env));
    buf_printf(&j, ",\"started_at\":\"%s\",\"finished_at\":\"%s\",\"by\":", ts, tf);
    buf_add_json_string(&j, r->req->by ? r->req->by : "?", strlen(r->req->by ? r->req->by : "?"));
    buf_addstr(&j, ",\"criterion\":");
    const char *crit = r->req->criterion ? r->req->criterion : "";
    buf_add_json_string(&j, crit, strlen(crit));
    buf_addstr(&j, ",\"records\":{");
    for (size_t i = 0; i < r->t.n; i++) {
        buf_addstr(&j, i ? "," : "");
        buf_add_json_string(&j, r->t.v[i].table, strlen(r->t.v[i].table));
        buf_printf(&j, ":%zu", r->t.v[i].keys.n);
    }
    buf_printf(&j, "},\"fingerprint\":\"%s\",\"points_rewritten\":%llu,"
                   "\"segments_rewritten\":%llu,\"files_dropped\":%llu,\"objects_written\":%llu,"
                   "\"bytes_written\":%llu,\"objects_removed\":%llu,\"bytes_removed\":%llu,"
                   "\"finished_after_interruption\":%s,\"held_points_overridden\":[",
               fp, (unsigned long long)r->rep->points, (unsigned long long)r->rep->segments,
               (unsigned long long)r->rep->files, (unsigned long long)r->rep->objects_written,
               (unsigned long long)r->rep->bytes_written,
               (unsigned long long)r->rep->objects_removed,
               (unsigned long long)r->rep->bytes_removed, resumed ? "true" : "false");
    for (size_t i = 0; i < r->rep->n_held; i++) {
        char pt[32];
        snprintf(pt, sizeof pt, "%.18s", r->rep->held[i]);
        buf_printf(&j, "%s\"%s\"", i ? "," : "", pt);
    }
    buf_addstr(&j, "]}\n");
    snprintf(r->rep->log_name, sizeof r->rep->log_name, "erasures/%s/%s-%.12s.json",
             r->req->env, pn, fp);
    rc = j.data ? repo_erase_doc_put(r->repo, r->rep->log_name, j.data, r->err)
                : dverr_set(r->err, -ENOMEM, "out of memory");
    buf_release(&j);
    return rc;
}
