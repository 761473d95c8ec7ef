/* hold: the document of a hold (point.h, issue 17): what holds/<env>/<point>.json holds and
 * backup.json shows. Small and strict: parsing distrusts the store (a wrong type, a bad point
 * name or time gives -EIO with a message). No I/O, no shared state: thread-safe. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/repo/point.h"

void point_hold_release(struct point_hold *h)
{
    if (!h)
        return;
    free(h->reason);
    free(h->by);
    h->reason = h->by = NULL;
}

void point_holds_free(struct point_hold *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        point_hold_release(&v[i]);
    free(v);
}

bool point_hold_active(const struct point_hold *h, time_t now)
{
    return h && (h->until == 0 || h->until > now);
}

static int add_time(struct buf *out, const char *key, time_t t)
{
    char ts[32];
    int rc = buf_printf(out, ",\"%s\":", key);
    if (rc)
        return rc;
    if (t <= 0)
        return buf_addstr(out, "null");
    rfc3339_from_time(t, ts);
    return buf_printf(out, "\"%s\"", ts);
}

int point_hold_render(const struct point_hold *h, struct buf *out)
{
    int rc = buf_addstr(out, "{\"point\":");
    rc = rc ? rc : buf_add_json_string(out, h->point, strlen(h->point));
    rc = rc ? rc : buf_addstr(out, ",\"reason\":");
    rc = rc ? rc : h->reason ? buf_add_json_string(out, h->reason, strlen(h->reason))
                             : buf_addstr(out, "null");
    rc = rc ? rc : buf_addstr(out, ",\"by\":");
    rc = rc ? rc : buf_add_json_string(out, h->by ? h->by : "", h->by ? strlen(h->by) : 0);
    rc = rc ? rc : add_time(out, "placed_at", h->placed_at);
    rc = rc ? rc : add_time(out, "until", h->until);
    rc = rc ? rc : buf_printf(out, ",\"automatic\":%s}", h->automatic ? "true" : "false");
    return rc;
}

/* A time member: RFC 3339 text, or null/absent (0) when allow_null. */
static int get_time(const struct json_node *o, const char *key, bool allow_null, time_t *out)
{
    const struct json_node *v = json_get(o, key);
    *out = 0;
    if (!v || v->type == JSON_NULL)
        return allow_null ? 0 : -EIO;
    if (v->type != JSON_STRING || rfc3339_to_time(v->str, out) != 0)
        return -EIO;
    return 0;
}

int point_hold_parse(const char *json, size_t len, struct point_hold *out, struct dverr *err)
{
    struct json_doc *doc = NULL;
    struct json_limits lim = {8, 64 << 10, 64};
    memset(out, 0, sizeof *out);
    int rc = json_parse(json, len, &lim, &doc, NULL);
    const struct json_node *root = rc ? NULL : json_root(doc);
    const char *point = root && root->type == JSON_OBJECT ? json_get_str(root, "point") : NULL;
    const struct json_node *reason = root ? json_get(root, "reason") : NULL;
    const char *by = root ? json_get_str(root, "by") : NULL;
    time_t t;
    if (!point || strlen(point) >= sizeof out->point || point_name_to_time(point, &t) != 0 ||
        (reason && reason->type != JSON_NULL && reason->type != JSON_STRING) || !by ||
        get_time(root, "placed_at", false, &out->placed_at) ||
        get_time(root, "until", true, &out->until)) {
        json_doc_free(doc);
        return dverr_set(err, -EIO, "damaged hold document");
    }
    memcpy(out->point, point, strlen(point) + 1);
    out->automatic = json_get_bool(root, "automatic", false);
    bool has_reason = reason && reason->type == JSON_STRING; /* read before doc is freed */
    out->reason = has_reason ? strdup(reason->str) : NULL;
    out->by = strdup(by);
    json_doc_free(doc);
    if (!out->by || (has_reason && !out->reason)) {
        point_hold_release(out);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    return 0;
}
