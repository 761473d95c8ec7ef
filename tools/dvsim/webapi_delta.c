/* webapi_delta: change tracking of each org's Web API (webapi_int.h; the collection GET that
 * asks for it: webapi.c).
 *
 * Every write takes the org's next version (orgver); a deleted record stays as a row marked
 * del=1 with the version of its deletion. Prefer: odata.track-changes ends the last page of a
 * read with an @odata.deltaLink whose $deltatoken is "<version>!<issue time>" (the time in the
 * service's MM/dd/yyyy HH:mm:ss form); a GET of it returns the records changed after that
 * version up to the snapshot version taken on its first page (upserts in version order, then
 * $deletedEntity rows, which name the id alone: the service's documentation does not say that
 * the delete of an elastic row names its partition, and dvsim's elastic table is not tracked,
 * schema_real.c), paged like any read, and a new delta link. A token older than
 * --delta-token-lifetime (a fault /_sim/ can change) is refused with the service's 0x80044352
 * (full sync needed).
 * Thread-safe: each request reads with its own pooled connection; the lifetime is read under
 * d->lock. */
#include "tools/dvsim/webapi_int.h"

#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int64_t webapi_org_version(sqlite3 *db, int env)
{
    sqlite3_stmt *st = NULL;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, "SELECT ver FROM orgver WHERE env=?1", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, env);
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return v;
}

void webapi_delta_token_render(int64_t ver, struct buf *out)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%m/%d/%Y %H:%M:%S", &tm);
    char tok[64];
    snprintf(tok, sizeof tok, "%lld!%s", (long long)ver, ts);
    dvsim_url_encode(out, tok, strlen(tok));
}

/* -EINVAL malformed, -ESTALE expired. */
int webapi_delta_token_parse(struct dvsim *d, const char *s, int64_t *ver)
{
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '!')
        return -EINVAL;
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (sscanf(end + 1, "%2d/%2d/%4d %2d:%2d:%2d", &tm.tm_mon, &tm.tm_mday, &tm.tm_year, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec) != 6)
        return -EINVAL;
    tm.tm_mon -= 1;
    tm.tm_year -= 1900;
    time_t issued = timegm(&tm);
    pthread_mutex_lock(&d->lock);
    int64_t life = d->faults.delta_token_lifetime_s;
    pthread_mutex_unlock(&d->lock);
    *ver = v;
    if ((int64_t)time(NULL) - (int64_t)issued > life)
        return -ESTALE;
    return 0;
}

/* One page of a $deltatoken read, after where the previous page stopped (ck): the records
 * changed since the token's version up to snapshot (by version), then the $deletedEntity rows of
 * the records deleted in that range. Rows are appended to o (*emitted of them so far, at most
 * page); *more when a row is left for the next page; next gets the phase and version to go on
 * from. */
void webapi_delta_page(struct req *r, const struct table_def *t, sqlite3 *db, int tid,
                       const struct projection *proj, const struct cookie *ck, int64_t since,
                       int64_t snapshot, int page, struct buf *o, int *emitted, bool *more,
                       struct cookie *next)
{
    sqlite3_stmt *st = NULL;
    /* upserts by version, then deletes */
    char phase = ck->phase ? ck->phase : 'u';
    int64_t after = ck->phase ? ck->after : since;
    if (phase == 'u') {
        sqlite3_prepare_v2(db, "SELECT id, line, ver FROM rec WHERE tid=?1 AND del=0 AND ver>?2 AND ver<=?3 "
                               "ORDER BY ver", -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_int64(st, 2, after);
        sqlite3_bind_int64(st, 3, snapshot);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (*emitted == page) {
                *more = true;
                break;
            }
            if (*emitted)
                buf_addch(o, ',');
            dvline_project(proj, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), o);
            next->after = sqlite3_column_int64(st, 2);
            (*emitted)++;
        }
        sqlite3_finalize(st);
        st = NULL;
        if (*more)
            next->phase = 'u';
        else {
            phase = 'd';
            after = since;
        }
    }
    if (!*more && phase == 'd') {
        sqlite3_prepare_v2(db, "SELECT id, ver FROM rec WHERE tid=?1 AND del=1 AND ver>?2 AND ver<=?3 "
                               "AND ver>?4 ORDER BY ver", -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_int64(st, 2, since);
        sqlite3_bind_int64(st, 3, snapshot);
        sqlite3_bind_int64(st, 4, after);
        while (sqlite3_step(st) == SQLITE_ROW) {
            if (*emitted == page) {
                *more = true;
                break;
            }
            if (*emitted)
                buf_addch(o, ',');
            buf_addstr(o, "{\"@odata.context\":\"");
            webapi_base(r, o);
            const char *sid = (const char *)sqlite3_column_text(st, 0); /* an elastic row: id:partition */
            buf_printf(o, "/$metadata#%s/$deletedEntity\",\"id\":\"%.*s\",\"reason\":\"deleted\"}", t->set,
                       (int)dvstore_id_len(sid), sid);
            next->after = sqlite3_column_int64(st, 1);
            (*emitted)++;
        }
        sqlite3_finalize(st);
        st = NULL;
        next->phase = 'd';
    }
}
