/* restore_batch: the restore's writes as $batch requests (restore_int.h; the steps: restore.c).
 *
 * Parts are queued into one batch of up to BATCH_MAX parts and BATCH_MAX_BYTES of body (notes
 * with big attachments) across tables, sent with continue-on-error, and every part's status is
 * read: a part that met its goal (2xx; a delete or disassociate of something already gone; an
 * association that already exists) is counted in its table's outcome, any other is kept for
 * retry_failed. A $batch that fails as a whole is sent again (its parts are idempotent) up to 4
 * times; a target that answers $batch with 501 gets one request per part from then on. A part
 * whose bind the service refuses (404 "... With Id = X Does Not Exist": a record the target
 * lacks; or another 4xx that names the bind's id or navigation property) is sent again without
 * that lookup (restore_drop_refused_binds; a refused party of an activity keeps its addressused), in
 * rounds not counted against the part (at most STRIP_ROUNDS). The parts of a batch run in
 * order, so a record's reopen, update and state write follow each other. Every write carries
 * the business-logic bypass headers (c->write_headers), on the $batch and on each part.
 * Threading: the restore's thread only (restore_int.h). */
#include "backend/engine/restore_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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
    case K_STATE: o->states_set++; break;
    case K_REOPEN: o->reopened++; break;
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
    /* a close action sent again after a lost answer: the record is closed already */
    if (p->kind == K_STATE && !strcmp(p->method, "POST") && p->status >= 400 && p->status < 500 &&
        response && strcasestr(response, "already"))
        return true;
    /* already gone: the goal of a delete or disassociate is met */
    return p->status == 404 &&
           (p->kind == K_DELETE || p->kind == K_DISASSOC || p->kind == K_FILEDEL);
}

/* Does bind member m (a "<nav>@odata.bind" string) name what the refusal names: the id of its
 * "With Id = X", or (no such id) the bind's id or navigation property in the message? */
static bool refused_bind(const struct json_node *m, const char *id, size_t id_len,
                         const char *response)
{
    size_t suffix = strlen("@odata.bind");
    if (m->type != JSON_STRING || m->key_len <= suffix ||
        strcmp(m->key + m->key_len - suffix, "@odata.bind") != 0)
        return false;
    const char *open = memchr(m->str, '(', m->str_len);
    if (!open || m->str[m->str_len - 1] != ')')
        return false;
    const char *bid = open + 1;
    size_t bl = (size_t)(m->str + m->str_len - 1 - bid);
    if (id_len)
        return bl == id_len && strncasecmp(bid, id, id_len) == 0;
    if (bl && memmem(response, strlen(response), bid, bl))
        return true;
    char nav[256];
    size_t nl = m->key_len - suffix;
    if (nl >= sizeof(nav))
        return false;
    memcpy(nav, m->key, nl);
    nav[nl] = '\0';
    return strstr(response, nav) != NULL;
}

struct drop_ctx {
    const char *id, *response;
    size_t id_len;
    size_t dropped;
    struct buf what;
    const char *path;
};

/* obj without the binds the refusal names, into out; parties of an activity likewise, a party
 * left with only its mask is dropped whole. */
static void copy_without(struct drop_ctx *d, const struct json_node *obj, struct buf *out,
                         int depth)
{
    size_t kept = 0;
    buf_addch(out, '{');
    for (const struct json_node *m = obj->child; m; m = m->next) {
        if (refused_bind(m, d->id, d->id_len, d->response)) {
            if (!d->dropped++)
                buf_printf(&d->what, "%s: lookup %.*s -> %s dropped: %s", d->path,
                           (int)(m->key_len - strlen("@odata.bind")), m->key, m->str,
                           d->id_len ? "the target has no such record" : "the target refused it");
            continue;
        }
        if (kept++)
            buf_addch(out, ',');
        buf_add_json_string(out, m->key, m->key_len);
        buf_addch(out, ':');
        static const char parties[] = "_activity_parties";
        size_t pl = sizeof(parties) - 1;
        if (depth == 0 && m->type == JSON_ARRAY && m->key_len > pl &&
            !memcmp(m->key + m->key_len - pl, parties, pl)) {
            size_t n = 0;
            buf_addch(out, '[');
            for (const struct json_node *e = m->child; e; e = e->next) {
                struct buf one = BUF_INIT;
                if (e->type == JSON_OBJECT)
                    copy_without(d, e, &one, depth + 1);
                else
                    buf_add(&one, e->raw, e->raw_len);
                /* a party that names nobody any more ({"participationtypemask":N}) goes */
                bool empty = e->type == JSON_OBJECT && one.data && !strstr(one.data, "@odata.bind") &&
                             !strstr(one.data, "\"addressused\"");
                if (!empty && one.data) {
                    if (n++)
                        buf_addch(out, ',');
                    buf_add(out, one.data, one.len);
                }
                buf_release(&one);
            }
            buf_addch(out, ']');
            continue;
        }
        buf_add(out, m->raw, m->raw_len);
    }
    buf_addch(out, '}');
}

size_t restore_drop_refused_binds(struct part *p, const char *response)
{
    if ((p->kind != K_CREATE && p->kind != K_UPDATE && p->kind != K_BIND) || p->status < 400 ||
        p->status >= 500 || !p->body || !response || !strstr(p->body, "@odata.bind"))
        return 0;
    struct drop_ctx d = {.response = response, .path = p->path, .what = BUF_INIT};
    const char *at = strstr(response, "With Id = ");
    if (at) {
        at += strlen("With Id = ");
        d.id = at;
        d.id_len = strcspn(at, " \"\\");
        if (!d.id_len || d.id_len > 128)
            return 0;
    } else if (p->status == 404) {
        return 0;
    }
    struct json_doc *doc = NULL;
    struct dverr perr = {0};
    if (json_parse(p->body, strlen(p->body), NULL, &doc, &perr))
        return 0;
    const struct json_node *root = json_root(doc);
    struct buf out = BUF_INIT;
    if (root->type == JSON_OBJECT)
        copy_without(&d, root, &out, 0);
    json_doc_free(doc);
    if (d.dropped && out.data) {
        free(p->body);
        p->body = buf_detach(&out);
        p->tab->out->lookups_dropped += d.dropped;
        if (!p->tab->out->lookup_note) {
            log_warn("restore: %s (the outcome counts the others)",
                     d.what.data ? d.what.data : p->path);
            p->tab->out->lookup_note = buf_detach(&d.what);
        }
    }
    buf_release(&out);
    buf_release(&d.what);
    return d.dropped;
}

static int send_singly(struct rctx *c, struct dv_batch_item *items, size_t n, struct dverr *err)
{
    for (size_t i = 0; i < n; i++) {
        if (items[i].status)
            continue; /* done by an earlier attempt */
        struct dv_response resp = {0};
        c->out->write_requests++;
        int rc = dv_request(c->dv, &c->target, items[i].method, items[i].path, items[i].body,
                            c->write_headers, &resp, err);
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
            items[i].headers = c->write_headers;
        }
        struct dverr berr = {0};
        if (c->no_batch) {
            rc = send_singly(c, items, n, &berr);
        } else {
            c->out->batches++;
            c->out->write_requests++;
            rc = dv_batch(c->dv, &c->target, items, n, true, c->write_headers, &berr);
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
        if (restore_drop_refused_binds(p, items[i].response))
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
