/* restore_batch: the restore's writes as $batch requests (restore_int.h; the steps: restore.c).
 *
 * Parts are queued into one batch of up to BATCH_MAX parts and BATCH_MAX_BYTES of body (notes
 * with big attachments) across tables, sent with continue-on-error, and every part's status is
 * read: a part that met its goal (2xx; a delete or disassociate of something already gone; an
 * association that already exists) is counted in its table's outcome, any other is kept for
 * retry_failed. A $batch that fails as a whole is sent again (its parts are idempotent) up to 4
 * times; a target that answers $batch with 501 gets one request per part from then on. A part
 * refused because a lookup names a record the target lacks is sent again without that lookup
 * (drop_missing_binds), in rounds not counted against the part (at most STRIP_ROUNDS).
 * Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/log.h"

#define BATCH_MAX_BYTES (16u << 20) /* notes with big attachments: keep a $batch body bounded */
#define STRIP_ROUNDS 8 /* rounds that only drop lookups to records the target lacks */

void restore_part_release(struct part *p)
{
    free(p->path);
    free(p->body);
    free(p->error);
    memset(p, 0, sizeof(*p));
}

static void part_done(struct rctx *c, struct part *p)
{
    struct restore_table_outcome *o = p->tab->out;
    switch (p->kind) {
    case K_CREATE: o->created++; c->out->records_written++; break;
    case K_UPDATE: o->updated++; c->out->records_written++; break;
    case K_DELETE: o->deleted++; c->out->records_written++; break;
    case K_ASSOC: o->associated++; break;
    case K_DISASSOC: o->disassociated++; break;
    case K_FILEDEL:
        if (p->status < 300)
            o->files++;
        break;
    case K_BIND: break;
    }
}

static bool part_ok(const struct part *p, const char *response)
{
    if (p->status >= 200 && p->status < 300)
        return true;
    /* a pair associated by an earlier attempt of the same batch (sent again after a lost
     * response) */
    if (p->kind == K_ASSOC && p->status >= 400 && p->status < 500 && response &&
        (strcasestr(response, "duplicate") || strcasestr(response, "already exists")))
        return true;
    /* already gone: the goal of a delete or disassociate is met */
    return p->status == 404 &&
           (p->kind == K_DELETE || p->kind == K_DISASSOC || p->kind == K_FILEDEL);
}

/* A part refused with 404 "<table> With Id = <id> Does Not Exist" because one of its lookups
 * names a record the target lacks (a table that was not restored, or a record deleted there):
 * drop the @odata.bind members that point at <id>, so the record is written without that lookup
 * (and the outcome says so) instead of failing. Returns how many members were dropped. */
static size_t drop_missing_binds(struct part *p, const char *response)
{
    const char *at = response ? strstr(response, "With Id = ") : NULL;
    if (p->status != 404 || !p->body || !at || !strstr(p->body, "@odata.bind"))
        return 0;
    at += strlen("With Id = ");
    size_t id_len = strcspn(at, " \"\\");
    if (!id_len || id_len > 128)
        return 0;
    struct json_doc *doc = NULL;
    struct dverr perr = {0};
    if (json_parse(p->body, strlen(p->body), NULL, &doc, &perr))
        return 0;
    const struct json_node *root = json_root(doc);
    struct buf out = BUF_INIT, what = BUF_INIT;
    size_t dropped = 0, kept = 0;
    buf_addch(&out, '{');
    for (const struct json_node *m = root->type == JSON_OBJECT ? root->child : NULL; m; m = m->next) {
        size_t suffix = strlen("@odata.bind");
        bool bind = m->key_len > suffix && !strcmp(m->key + m->key_len - suffix, "@odata.bind");
        if (bind && m->type == JSON_STRING && m->str_len > id_len + 2 &&
            m->str[m->str_len - 1] == ')' && m->str[m->str_len - id_len - 2] == '(' &&
            !memcmp(m->str + m->str_len - id_len - 1, at, id_len)) {
            if (!dropped)
                buf_printf(&what, "%s: lookup %.*s -> %s dropped: the target has no such record",
                           p->path, (int)(m->key_len - suffix), m->key, m->str);
            dropped++;
            continue;
        }
        if (kept++)
            buf_addch(&out, ',');
        buf_add_json_string(&out, m->key, m->key_len);
        buf_addch(&out, ':');
        buf_add(&out, m->raw, m->raw_len);
    }
    buf_addch(&out, '}');
    json_doc_free(doc);
    if (dropped && out.data) {
        free(p->body);
        p->body = buf_detach(&out);
        p->tab->out->lookups_dropped += dropped;
        if (!p->tab->out->lookup_note) {
            log_warn("restore: %s (the outcome counts the others)", what.data ? what.data : p->path);
            p->tab->out->lookup_note = buf_detach(&what);
        }
    }
    buf_release(&out);
    buf_release(&what);
    return dropped;
}

static int send_singly(struct rctx *c, struct dv_batch_item *items, size_t n, struct dverr *err)
{
    static const char *const json_headers[] = {"Content-Type: application/json", NULL};
    for (size_t i = 0; i < n; i++) {
        if (items[i].status)
            continue; /* done by an earlier attempt */
        struct dv_response resp = {0};
        c->out->write_requests++;
        int rc = dv_request(c->dv, &c->target, items[i].method, items[i].path, items[i].body,
                            items[i].body ? json_headers : NULL, &resp, err);
        if (rc) {
            buf_release(&resp.body);
            return rc;
        }
        items[i].status = (int)resp.status;
        items[i].response = resp.body.len ? buf_detach(&resp.body) : NULL;
        buf_release(&resp.body);
    }
    return 0;
}

static int send_parts(struct rctx *c, struct part *parts, size_t n)
{
    if (!n)
        return 0;
    struct dv_batch_item *items = calloc(n, sizeof(*items));
    if (!items)
        return -ENOMEM;
    int rc = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        for (size_t i = 0; i < n; i++) {
            if (c->no_batch && items[i].status)
                continue;
            memset(&items[i], 0, sizeof(items[i]));
            items[i].method = parts[i].method;
            items[i].path = parts[i].path;
            items[i].body = parts[i].body;
        }
        struct dverr berr = {0};
        if (c->no_batch) {
            rc = send_singly(c, items, n, &berr);
        } else {
            c->out->batches++;
            c->out->write_requests++;
            rc = dv_batch(c->dv, &c->target, items, n, true, &berr);
            if (rc == -EOPNOTSUPP || (rc && strstr(dverr_msg(&berr), "HTTP 501"))) {
                /* a service (or proxy) without $batch: one request per part */
                log_warn("restore: %s does not take $batch (%s); sending one request per "
                         "record", c->target.unique_name, dverr_msg(&berr));
                c->no_batch = true;
                attempt--;
                continue;
            }
        }
        if (rc == 0)
            break;
        if (!c->no_batch)
            dv_batch_items_release(items, n);
        log_warn("restore: $batch of %zu parts failed (%s), sending it again", n,
                 dverr_msg(&berr));
        if (attempt == 3 || cancelled(c)) {
            dverr_set(c->err, rc, "writing to %s: %s", c->target.unique_name, dverr_msg(&berr));
            break;
        }
        sleep(1u << attempt);
    }
    if (rc) {
        free(items);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        struct part *p = &parts[i];
        p->status = items[i].status;
        if (part_ok(p, items[i].response)) {
            part_done(c, p);
            restore_part_release(p);
            continue;
        }
        free(p->error);
        struct buf e = BUF_INIT;
        buf_printf(&e, "%s %s: %d %.300s", p->method, p->path, p->status,
                   items[i].response ? items[i].response : "");
        p->error = buf_detach(&e);
        /* a lookup to a record the target lacks: sent again without it (in a round that
         * retry_failed does not count against the part) */
        if (drop_missing_binds(p, items[i].response))
            c->binds_dropped++;
        if (c->n_retry == c->cap_retry) {
            size_t cap = c->cap_retry ? c->cap_retry * 2 : 64;
            struct part *r = realloc(c->retry, cap * sizeof(*r));
            if (!r) {
                rc = -ENOMEM;
                break;
            }
            c->retry = r;
            c->cap_retry = cap;
        }
        c->retry[c->n_retry++] = *p;
        memset(p, 0, sizeof(*p));
    }
    dv_batch_items_release(items, n);
    free(items);
    for (size_t i = 0; i < n; i++)
        restore_part_release(&parts[i]);
    restore_report(c, false);
    return rc;
}

int restore_flush(struct rctx *c)
{
    int rc = send_parts(c, c->batch, c->n_batch);
    c->n_batch = 0;
    c->batch_bytes = 0;
    if (!rc && cancelled(c))
        rc = dverr_set(c->err, -ECANCELED, "restore cancelled");
    return rc;
}

/* Queue one part (takes path and body). */
int restore_queue(struct rctx *c, struct rtab *t, enum part_kind kind, const char *method,
                  char *path, char *body)
{
    size_t bytes = strlen(path) + (body ? strlen(body) : 0) + 128;
    if (c->n_batch == BATCH_MAX || (c->n_batch && c->batch_bytes + bytes > BATCH_MAX_BYTES)) {
        int rc = restore_flush(c);
        if (rc) {
            free(path);
            free(body);
            return rc;
        }
    }
    struct part *p = &c->batch[c->n_batch++];
    memset(p, 0, sizeof(*p));
    p->method = method;
    p->path = path;
    p->body = body;
    p->tab = t;
    p->kind = kind;
    c->batch_bytes += bytes;
    return 0;
}

int restore_retry_failed(struct rctx *c)
{
    int rc = 0;
    /* A round after one that dropped lookups to missing records is not counted (each drop
     * removes a member, so this ends; at most STRIP_ROUNDS): a record whose two lookups both
     * point at missing records needs two such rounds. */
    int round = 0, strip_rounds = 0;
    while (c->n_retry && !rc) {
        bool strip_round = c->binds_dropped && strip_rounds < STRIP_ROUNDS;
        if (!strip_round && round == RETRY_ROUNDS)
            break;
        struct part *parts = c->retry;
        size_t n = c->n_retry;
        c->retry = NULL;
        c->n_retry = c->cap_retry = 0;
        c->binds_dropped = 0;
        log_info("restore: retrying %zu failed parts (round %d)", n, round + strip_rounds + 1);
        if (strip_round)
            strip_rounds++;
        else
            sleep(1u << round++);
        for (size_t off = 0; off < n && !rc; off += BATCH_MAX) {
            size_t m = n - off < BATCH_MAX ? n - off : BATCH_MAX;
            c->out->retried += m;
            rc = send_parts(c, parts + off, m);
        }
        for (size_t i = 0; i < n; i++)
            restore_part_release(&parts[i]);
        free(parts);
    }
    /* what still fails is counted per table, the first error kept as the table's note */
    for (size_t i = 0; i < c->n_retry; i++) {
        struct part *p = &c->retry[i];
        if (!rc) {
            p->tab->out->failed++;
            if (!p->tab->out->note)
                p->tab->out->note = xstrdup(p->error);
        }
        restore_part_release(p);
    }
    c->n_retry = 0;
    return rc;
}
