/* restore_parties: the parties of activities (sender, recipients, attendees: activityparty rows)
 * in a restore (restore_int.h; the steps: restore.c).
 *
 * The service does not let a client write activityparty rows on their own: an activity's
 * parties are written inside the activity, as "<activity>_activity_parties": [{
 * "participationtypemask": 1, "partyid_systemuser@odata.bind": "/systemusers(<id>)",
 * "addressused": "..."}, ...], which replaces them. So the parties are part of what an activity
 * is compared by: each side's parties of an activity become one order-free digest (the 128-bit
 * sum of each party's digest), mixed into the activity's digest. A party is its mask and its
 * party id, mapped like any lookup (restore_map.c); a party without a match, or without a party
 * id, is its mask and its addressused, and is written that way (addressused only), counted per
 * table as parties_unmapped. Masks 8 (regarding) and 9 (owner) are the service's own rows: left
 * out of both the comparison and the bodies.
 * Target side: the safety point's activityparty when it has one, else a live read ($select).
 * Memory: a key and 16 bytes per activity of each side, and the bodies of the activities this
 * restore writes. Threading: the restore's thread only. */
#include "backend/engine/restore_int.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PARTY_TABLE "activityparty"
#define PARTY_SELECT "activitypartyid,_activityid_value,_partyid_value,participationtypemask," \
                     "addressused"

void restore_parties_nav(const char *activity, char *out, size_t n)
{
    snprintf(out, n, "%s_activity_parties", activity);
}

/* One party as restore sees it: its mask (the number's text), the party bound (type and id,
 * mapped) or not, and its addressused. */
struct party {
    const char *mask;
    const char *type;
    char id[40];
    const char *addr;
    bool bound, unmapped;
};

/* false when the row is not a party to write or compare (no mask, a service-kept mask, nothing
 * to name the party by). */
static bool party_of(const struct json_node *row, restore_map_fn map, void *mctx,
                     struct party *p)
{
    memset(p, 0, sizeof(*p));
    const struct json_node *mask = json_get(row, "participationtypemask");
    if (!mask || mask->type != JSON_NUMBER)
        return false;
    if (!strcmp(mask->str, "8") || !strcmp(mask->str, "9"))
        return false;
    p->mask = mask->str;
    p->addr = json_get_str(row, "addressused");
    if (p->addr && !*p->addr)
        p->addr = NULL;
    const char *pid = json_get_str(row, "_partyid_value");
    p->type = json_get_str(row, "_partyid_value@Microsoft.Dynamics.CRM.lookuplogicalname");
    if (pid && p->type) {
        const char *mt = NULL;
        char mapped[40];
        int r = map ? map(mctx, NULL, "partyid", 7, p->type, pid, strlen(pid), &mt, mapped)
                    : RL_KEEP;
        if (r == RL_DROP) {
            p->unmapped = true;
        } else {
            const char *id = r == RL_MAPPED ? mapped : pid;
            if (mt)
                p->type = mt;
            restore_lower_copy(p->id, sizeof(p->id), id, strlen(id));
            p->bound = true;
        }
    }
    return p->bound || p->addr;
}

int restore_party_json(const struct json_node *row, restore_map_fn map, void *mctx,
                       const char *(*entity_set)(const void *ctx, const char *table),
                       const void *sctx, struct buf *out, bool *unmapped)
{
    struct party p;
    party_of(row, map, mctx, &p); /* false: neither bound nor addressed, left out below */
    const char *set = p.bound && entity_set ? entity_set(sctx, p.type) : NULL;
    if (p.bound && !set) {
        p.bound = false; /* a party type the target does not have */
        p.unmapped = true;
    }
    *unmapped = p.unmapped;
    if (!p.bound && !p.addr)
        return 0;
    buf_printf(out, "{\"participationtypemask\":%s", p.mask);
    if (p.bound)
        buf_printf(out, ",\"partyid_%s@odata.bind\":\"/%s(%s)\"", p.type, set, p.id);
    if (p.addr) {
        buf_addstr(out, ",\"addressused\":");
        buf_add_json_string(out, p.addr, strlen(p.addr));
    }
    buf_addch(out, '}');
    return out->data ? 0 : -ENOMEM;
}

/* ---------------------------------------------------------------- digests */

struct load_ctx {
    struct rctx *c;
    struct rmap *into;
    bool map;      /* the point's side: parties mapped */
    int rc;
};

static int add_party(struct load_ctx *l, const struct json_node *row)
{
    const char *act = json_get_str(row, "_activityid_value");
    struct party p;
    if (!act || !party_of(row, l->map ? restore_map_lookup : NULL, l->c, &p))
        return 0;
    struct buf k = BUF_INIT;
    buf_printf(&k, "%s|", p.mask);
    if (p.bound)
        buf_addstr(&k, p.id);
    else {
        buf_addstr(&k, "addr:");
        buf_addstr(&k, p.addr ? p.addr : "");
    }
    uint8_t dg[16];
    char low[40];
    size_t al = restore_lower_copy(low, sizeof(low), act, strlen(act));
    struct rmap_entry *e = k.data ? rmap_put(l->into, low, al, NULL) : NULL;
    if (e) {
        restore_digest(k.data, k.len, dg);
        restore_digest_add(e->digest, dg);
    }
    buf_release(&k);
    return e ? 0 : -ENOMEM;
}

static int party_line_cb(void *ctx, const char *key, size_t key_len, const char *line,
                         size_t line_len)
{
    struct load_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, l->c->err);
    if (!rc)
        rc = add_party(l, json_root(doc));
    json_doc_free(doc);
    return rc;
}

static int party_read_cb(void *ctx, const struct json_node *row)
{
    struct load_ctx *l = ctx;
    if (cancelled(l->c))
        return -ECANCELED;
    return add_party(l, row);
}

int restore_parties_load(struct rctx *c)
{
    bool activities = false;
    for (size_t i = 0; i < c->n_tabs; i++)
        activities |= c->tabs[i].active && c->tabs[i].def && c->tabs[i].def->is_activity;
    c->have_parties = activities && restore_table_in_point(c->point, PARTY_TABLE);
    if (!c->have_parties)
        return 0;
    struct load_ctx l = {c, &c->parties_point, true, 0};
    int rc = table_iterate(c->repo, c->point, PARTY_TABLE, party_line_cb, &l, c->err);
    if (rc)
        return rc;
    l.into = &c->parties_target;
    l.map = false;
    if (c->safety && restore_table_in_point(c->safety, PARTY_TABLE))
        return table_iterate(c->repo, c->safety, PARTY_TABLE, party_line_cb, &l, c->err);
    const char *set = restore_entity_set(c, PARTY_TABLE);
    if (!set)
        return 0; /* the target keeps no parties: every activity's parties differ */
    struct dv_read_cb cb = {party_read_cb, NULL, &l};
    return dv_read_select(c->dv, &c->target, set, PARTY_SELECT, &cb, c->err);
}

void restore_parties_mix(const struct rctx *c, bool target_side, const char *key, size_t kl,
                         uint8_t digest[16])
{
    if (!c->have_parties)
        return;
    char low[40];
    size_t n = restore_lower_copy(low, sizeof(low), key, kl);
    const struct rmap_entry *e =
        rmap_get(target_side ? &c->parties_target : &c->parties_point, low, n);
    uint8_t both[32];
    memcpy(both, digest, 16);
    if (e)
        memcpy(both + 16, e->digest, 16);
    else
        memset(both + 16, 0, 16);
    restore_digest(both, sizeof(both), digest);
}

/* ---------------------------------------------------------------- bodies */

static const char *set_of(const void *ctx, const char *table)
{
    return restore_entity_set(ctx, table);
}

/* The activity table whose write this party belongs to, or NULL. */
static struct rtab *writing(struct rctx *c, const char *act)
{
    for (size_t i = 0; i < c->n_tabs; i++) {
        struct rtab *t = &c->tabs[i];
        if (!t->active || t->mm || !t->def || !t->def->is_activity)
            continue;
        struct rmap_entry *e = rmap_get(&t->map, act, strlen(act));
        if (e && (e->action == ACT_CREATE || e->action == ACT_UPDATE))
            return t;
    }
    return NULL;
}

static int body_line_cb(void *ctx, const char *key, size_t key_len, const char *line,
                        size_t line_len)
{
    struct rctx *c = ctx;
    if (cancelled(c))
        return -ECANCELED;
    struct json_doc *doc = NULL;
    int rc = json_parse(line, line_len, NULL, &doc, c->err);
    if (rc)
        return rc;
    const struct json_node *row = json_root(doc);
    const char *act = json_get_str(row, "_activityid_value");
    struct rtab *t = act ? writing(c, act) : NULL;
    if (t) {
        struct buf one = BUF_INIT;
        bool unmapped = false;
        rc = restore_party_json(row, restore_map_lookup, c, set_of, c, &one, &unmapped);
        if (unmapped)
            t->out->parties_unmapped++;
        struct rmap_entry *e = !rc && one.len ? rmap_put(&c->party_bodies, act, strlen(act), NULL)
                                              : NULL;
        if (!rc && one.len && !e)
            rc = -ENOMEM;
        if (e) {
            struct buf *b = e->ptr;
            if (!b && !(b = e->ptr = calloc(1, sizeof(*b))))
                rc = -ENOMEM;
            if (b) {
                buf_addch(b, b->len ? ',' : '[');
                buf_add(b, one.data, one.len);
            }
        }
        buf_release(&one);
    }
    json_doc_free(doc);
    return rc;
}

int restore_parties_bodies(struct rctx *c)
{
    if (!c->have_parties)
        return 0;
    int rc = table_iterate(c->repo, c->point, PARTY_TABLE, body_line_cb, c, c->err);
    for (size_t i = 0; i < c->party_bodies.cap && !rc; i++) {
        struct rmap_entry *e = &c->party_bodies.slots[i];
        if (e->key && e->ptr)
            rc = buf_addch(e->ptr, ']');
    }
    return rc;
}
