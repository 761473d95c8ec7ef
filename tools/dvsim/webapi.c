/* webapi: the read side of each org's Web API (<instanceApiUrl>/api/data/v9.2/).
 *
 *   GET /                          service document
 *   GET /EntityDefinitions[?$expand=Attributes,ManyToOneRelationships,OneToManyRelationships,
 *                          ManyToManyRelationships]
 *   GET /EntityDefinitions(LogicalName='x') | (<MetadataId>)   same $expand
 *   GET /EntityDefinitions(LogicalName='x')/Attributes | /ManyToOneRelationships |
 *       /OneToManyRelationships | /ManyToManyRelationships
 *   GET /<set>?$select&$filter&$orderby&$top   Prefer: odata.maxpagesize (<= 5000),
 *       odata.include-annotations, odata.track-changes; $skiptoken in @odata.nextLink;
 *       $deltatoken in @odata.deltaLink (upserts by version, then $deletedEntity rows)
 *   GET /<set>/$count, GET /<set>(<guid>)
 * Writes, $batch and file columns are in webwrite.c.
 *
 * $filter: eq ne gt ge lt le, and, or, not, parentheses; literals 'string' (with ''), numbers,
 * null, true, false, GUIDs and ISO dates unquoted; strings compare case-insensitively.
 * Paging order is the primary key's bytes (or $orderby, then the key). Thread-safe: each request
 * uses its own SQLite connection from the pool. */
#include "tools/dvsim/dvsim.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FV_NAME "OData.Community.Display.V1.FormattedValue"
#define LLN_NAME "Microsoft.Dynamics.CRM.lookuplogicalname"
#define QUERY_ERR "0x80060888"

/* ---- Prefer ---- */
struct prefer {
    int maxpagesize;
    bool track;
    bool have_annot;
    char annot[512];
    bool return_repr;
    bool continue_on_error;
};

void webapi_prefer_parse(struct req *r, struct prefer *p);
void webapi_prefer_parse(struct req *r, struct prefer *p)
{
    memset(p, 0, sizeof *p);
    struct buf all = BUF_INIT;
    sreq_header_all(r, "Prefer", &all);
    const char *s = all.data ? all.data : "";
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        const char *start = s;
        bool q = false;
        while (*s && (q || *s != ',')) {
            if (*s == '"')
                q = !q;
            s++;
        }
        size_t n = (size_t)(s - start);
        while (n && start[n - 1] == ' ')
            n--;
        if (n > 18 && strncasecmp(start, "odata.maxpagesize=", 18) == 0)
            p->maxpagesize = (int)strtol(start + 18, NULL, 10);
        else if (n == 19 && strncasecmp(start, "odata.track-changes", 19) == 0)
            p->track = true;
        else if (n == 21 && strncasecmp(start, "return=representation", 21) == 0)
            p->return_repr = true;
        else if (n == 23 && strncasecmp(start, "odata.continue-on-error", 23) == 0)
            p->continue_on_error = true;
        else if (n > 26 && strncasecmp(start, "odata.include-annotations=", 26) == 0) {
            p->have_annot = true;
            snprintf(p->annot, sizeof p->annot, "%.*s", (int)(n - 26), start + 26);
        }
    }
    buf_release(&all);
}

/* ---- $filter ---- */
enum fop { OP_EQ, OP_NE, OP_GT, OP_GE, OP_LT, OP_LE };
enum fkind { FK_CMP, FK_AND, FK_OR, FK_NOT };
enum lkind { L_STRING, L_NUMBER, L_NULL, L_BOOL, L_BARE };
struct fnode {
    enum fkind kind;
    struct fnode *a, *b;
    char member[96];
    const struct col_def *col;
    enum fop op;
    enum lkind lk;
    struct buf lit; /* L_STRING: decoded text; others: literal text */
};

struct fparser {
    const struct table_def *t;
    const char *s, *p;
    char err[300];
};

static void fnode_free(struct fnode *n)
{
    if (!n)
        return;
    fnode_free(n->a);
    fnode_free(n->b);
    buf_release(&n->lit);
    free(n);
}

static void skip_ws(struct fparser *fp)
{
    while (*fp->p == ' ' || *fp->p == '\t')
        fp->p++;
}

static bool word(struct fparser *fp, const char *w)
{
    skip_ws(fp);
    size_t n = strlen(w);
    if (strncmp(fp->p, w, n) == 0 && !isalnum((unsigned char)fp->p[n]) && fp->p[n] != '_') {
        fp->p += n;
        return true;
    }
    return false;
}

static struct fnode *parse_or(struct fparser *fp);

static struct fnode *fail(struct fparser *fp, const char *what)
{
    if (!fp->err[0])
        snprintf(fp->err, sizeof fp->err, "Syntax error: %s at position %d in '%.200s'.", what,
                 (int)(fp->p - fp->s), fp->s);
    return NULL;
}

static struct fnode *parse_cmp(struct fparser *fp)
{
    skip_ws(fp);
    const char *id = fp->p;
    while (isalnum((unsigned char)*fp->p) || *fp->p == '_')
        fp->p++;
    size_t idl = (size_t)(fp->p - id);
    if (!idl)
        return fail(fp, "expected a property name");
    const struct col_def *col = dvschema_col_by_member(fp->t, id, idl);
    if (!col) {
        snprintf(fp->err, sizeof fp->err, "Could not find a property named '%.*s' on type 'Microsoft.Dynamics.CRM.%s'.",
                 (int)(idl > 80 ? 80 : idl), id, fp->t->logical);
        return NULL;
    }
    static const char *const ops[] = {"eq", "ne", "gt", "ge", "lt", "le"};
    int op = -1;
    for (int i = 0; i < 6 && op < 0; i++)
        if (word(fp, ops[i]))
            op = i;
    if (op < 0)
        return fail(fp, "expected a comparison operator (eq, ne, gt, ge, lt, le)");
    struct fnode *n = calloc(1, sizeof *n);
    if (!n)
        return fail(fp, "out of memory");
    n->kind = FK_CMP;
    n->col = col;
    n->op = (enum fop)op;
    snprintf(n->member, sizeof n->member, "%.*s", (int)idl, id);
    skip_ws(fp);
    if (*fp->p == '\'') {
        fp->p++;
        n->lk = L_STRING;
        for (;;) {
            if (!*fp->p) {
                fnode_free(n);
                return fail(fp, "unterminated string literal");
            }
            if (*fp->p == '\'') {
                if (fp->p[1] == '\'') {
                    buf_addch(&n->lit, '\'');
                    fp->p += 2;
                    continue;
                }
                fp->p++;
                break;
            }
            buf_addch(&n->lit, *fp->p++);
        }
        if (!n->lit.data)
            buf_addstr(&n->lit, "");
        return n;
    }
    const char *v = fp->p;
    while (*fp->p && *fp->p != ' ' && *fp->p != ')' && *fp->p != '(')
        fp->p++;
    size_t vl = (size_t)(fp->p - v);
    if (!vl) {
        fnode_free(n);
        return fail(fp, "expected a literal");
    }
    buf_add(&n->lit, v, vl);
    if (strcmp(n->lit.data, "null") == 0)
        n->lk = L_NULL;
    else if (strcmp(n->lit.data, "true") == 0 || strcmp(n->lit.data, "false") == 0)
        n->lk = L_BOOL;
    else if (dvsim_guid_valid(v, vl) || (vl >= 10 && isdigit((unsigned char)v[0]) && v[4] == '-'))
        n->lk = L_BARE; /* GUID or date: compared as text */
    else {
        char *end;
        strtold(n->lit.data, &end);
        if (*end) {
            fnode_free(n);
            return fail(fp, "unrecognised literal");
        }
        n->lk = L_NUMBER;
    }
    return n;
}

static struct fnode *parse_factor(struct fparser *fp)
{
    if (word(fp, "not")) {
        struct fnode *a = parse_factor(fp);
        if (!a)
            return NULL;
        struct fnode *n = calloc(1, sizeof *n);
        if (!n) {
            fnode_free(a);
            return fail(fp, "out of memory");
        }
        n->kind = FK_NOT;
        n->a = a;
        return n;
    }
    skip_ws(fp);
    if (*fp->p == '(') {
        fp->p++;
        struct fnode *n = parse_or(fp);
        if (!n)
            return NULL;
        skip_ws(fp);
        if (*fp->p != ')') {
            fnode_free(n);
            return fail(fp, "expected ')'");
        }
        fp->p++;
        return n;
    }
    return parse_cmp(fp);
}

static struct fnode *parse_bin(struct fparser *fp, bool is_or)
{
    struct fnode *a = is_or ? parse_bin(fp, false) : parse_factor(fp);
    while (a) {
        if (!word(fp, is_or ? "or" : "and"))
            break;
        struct fnode *b = is_or ? parse_bin(fp, false) : parse_factor(fp);
        if (!b) {
            fnode_free(a);
            return NULL;
        }
        struct fnode *n = calloc(1, sizeof *n);
        if (!n) {
            fnode_free(a);
            fnode_free(b);
            return fail(fp, "out of memory");
        }
        n->kind = is_or ? FK_OR : FK_AND;
        n->a = a;
        n->b = b;
        a = n;
    }
    return a;
}

static struct fnode *parse_or(struct fparser *fp)
{
    return parse_bin(fp, true);
}

static struct fnode *filter_parse(const struct table_def *t, const char *s, char *err, size_t errn)
{
    struct fparser fp = {t, s, s, ""};
    struct fnode *n = parse_or(&fp);
    if (n) {
        skip_ws(&fp);
        if (*fp.p) {
            fnode_free(n);
            n = fail(&fp, "unexpected text");
        }
    }
    if (!n)
        snprintf(err, errn, "%s", fp.err[0] ? fp.err : "Syntax error in $filter.");
    return n;
}

static const struct lmember *find_member(const struct lmember *m, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < n; i++)
        if (m[i].key_len == kl && memcmp(m[i].key, key, kl) == 0)
            return &m[i];
    return NULL;
}

static bool op_result(enum fop op, int c)
{
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    }
    return false;
}

/* Decode a JSON string value (raw, with quotes) into out. */
static void json_unquote(const char *raw, size_t len, struct buf *out)
{
    buf_reset(out);
    for (size_t i = 1; i + 1 < len; i++) {
        if (raw[i] == '\\' && i + 2 < len) {
            i++;
            char c = raw[i];
            if (c == 'n') c = '\n';
            else if (c == 't') c = '\t';
            else if (c == 'r') c = '\r';
            else if (c == 'b') c = '\b';
            else if (c == 'f') c = '\f';
            else if (c == 'u' && i + 4 < len) { /* keep \u escapes as text; rare in canonical lines */
                buf_add(out, raw + i - 1, 6);
                i += 4;
                continue;
            }
            buf_addch(out, c);
        } else {
            buf_addch(out, raw[i]);
        }
    }
    if (!out->data)
        buf_addstr(out, "");
}

static bool eval(const struct fnode *n, const struct lmember *m, int nm, struct buf *tmp)
{
    switch (n->kind) {
    case FK_AND: return eval(n->a, m, nm, tmp) && eval(n->b, m, nm, tmp);
    case FK_OR: return eval(n->a, m, nm, tmp) || eval(n->b, m, nm, tmp);
    case FK_NOT: return !eval(n->a, m, nm, tmp);
    case FK_CMP: break;
    }
    const struct lmember *v = find_member(m, nm, n->member);
    bool vnull = !v || (v->val_len == 4 && memcmp(v->val, "null", 4) == 0);
    if (n->lk == L_NULL)
        return n->op == OP_EQ ? vnull : n->op == OP_NE ? !vnull : false;
    if (vnull)
        return n->op == OP_NE;
    if (n->lk == L_NUMBER) {
        char num[64];
        size_t l = v->val_len < 63 ? v->val_len : 63;
        const char *s = v->val;
        if (*s == '"') { s++; l = l >= 2 ? l - 2 : 0; }
        memcpy(num, s, l);
        num[l] = '\0';
        char *end;
        long double a = strtold(num, &end), b = strtold(n->lit.data, NULL);
        if (end == num)
            return n->op == OP_NE;
        return op_result(n->op, a < b ? -1 : a > b ? 1 : 0);
    }
    if (n->lk == L_BOOL) {
        bool eqv = v->val_len == n->lit.len && memcmp(v->val, n->lit.data, n->lit.len) == 0;
        return n->op == OP_EQ ? eqv : n->op == OP_NE ? !eqv : false;
    }
    const char *s;
    size_t sl;
    if (v->val[0] == '"') {
        json_unquote(v->val, v->val_len, tmp);
        s = tmp->data;
        sl = tmp->len;
    } else {
        s = v->val;
        sl = v->val_len;
    }
    size_t ml = sl < n->lit.len ? sl : n->lit.len;
    int c = strncasecmp(s, n->lit.data, ml);
    if (c == 0)
        c = sl < n->lit.len ? -1 : sl > n->lit.len ? 1 : 0;
    return op_result(n->op, c);
}

/* ---- $orderby ---- */
struct order_key {
    char member[96];
    bool desc, numeric;
};
struct sorted_row {
    char *id, *line;
    size_t len;
    const char *val[4];
    size_t vlen[4];
};
struct order {
    struct order_key k[4];
    int n;
};

static int parse_orderby(const struct table_def *t, const char *s, struct order *o, char *err, size_t errn)
{
    o->n = 0;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", s);
    char *save = NULL;
    for (char *item = strtok_r(tmp, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        char name[96] = "", dir[16] = "";
        if (sscanf(item, "%95[A-Za-z0-9_] %15s", name, dir) < 1 || o->n >= 4) {
            snprintf(err, errn, "Syntax error in $orderby '%.200s'.", s);
            return -EINVAL;
        }
        const struct col_def *c = dvschema_col_by_member(t, name, strlen(name));
        if (!c) {
            snprintf(err, errn, "Could not find a property named '%s' on type 'Microsoft.Dynamics.CRM.%s'.",
                     name, t->logical);
            return -EINVAL;
        }
        if (dir[0] && strcmp(dir, "asc") != 0 && strcmp(dir, "desc") != 0) {
            snprintf(err, errn, "Syntax error in $orderby '%.200s'.", s);
            return -EINVAL;
        }
        struct order_key *k = &o->k[o->n++];
        snprintf(k->member, sizeof k->member, "%s", name);
        k->desc = strcmp(dir, "desc") == 0;
        k->numeric = c->type == COL_INTEGER || c->type == COL_BIGINT || c->type == COL_MONEY ||
                     c->type == COL_DECIMAL || c->type == COL_PICKLIST || c->type == COL_STATE ||
                     c->type == COL_VERSION;
    }
    return 0;
}

static int cmp_val(const char *a, size_t al, const char *b, size_t bl, bool numeric)
{
    bool an = !a || (al == 4 && memcmp(a, "null", 4) == 0), bn = !b || (bl == 4 && memcmp(b, "null", 4) == 0);
    if (an || bn)
        return an && bn ? 0 : an ? -1 : 1;
    if (numeric) {
        long double x = strtold(a, NULL), y = strtold(b, NULL);
        return x < y ? -1 : x > y ? 1 : 0;
    }
    size_t ml = al < bl ? al : bl;
    int c = strncasecmp(a, b, ml);
    return c ? c : al < bl ? -1 : al > bl ? 1 : 0;
}

static int row_cmp(const void *x, const void *y, void *ctx)
{
    const struct order *o = ctx;
    const struct sorted_row *a = x, *b = y;
    for (int i = 0; i < o->n; i++) {
        int c = cmp_val(a->val[i], a->vlen[i], b->val[i], b->vlen[i], o->k[i].numeric);
        if (c)
            return o->k[i].desc ? -c : c;
    }
    return strcmp(a->id, b->id);
}

/* ---- skiptoken cookie ---- */
struct cookie {
    int page;
    char last[64];
    int64_t ver;      /* tracking: snapshot version */
    int64_t after;    /* delta: last version returned in this phase */
    char phase;       /* 'u' upserts, 'd' deletes, 0 full read */
    int64_t off;      /* $orderby offset */
    bool tracking;
};

static void cookie_attr(const char *s, const char *name, char *out, size_t n)
{
    char pat[40];
    snprintf(pat, sizeof pat, " %s=\"", name);
    const char *p = strstr(s, pat);
    out[0] = '\0';
    if (!p)
        return;
    p += strlen(pat);
    size_t l = strcspn(p, "\"");
    snprintf(out, n, "%.*s", (int)(l < n ? l : n - 1), p);
}

static int cookie_parse(const char *s, struct cookie *c)
{
    memset(c, 0, sizeof *c);
    if (strncmp(s, "<cookie ", 8) != 0)
        return -EINVAL;
    char v[80];
    cookie_attr(s, "pagenumber", v, sizeof v);
    c->page = (int)strtol(v, NULL, 10);
    cookie_attr(s, "last", c->last, sizeof c->last);
    cookie_attr(s, "version", v, sizeof v);
    c->ver = strtoll(v, NULL, 10);
    cookie_attr(s, "after", v, sizeof v);
    c->after = strtoll(v, NULL, 10);
    cookie_attr(s, "phase", v, sizeof v);
    c->phase = v[0];
    cookie_attr(s, "offset", v, sizeof v);
    c->off = strtoll(v, NULL, 10);
    cookie_attr(s, "istracking", v, sizeof v);
    c->tracking = strcmp(v, "True") == 0;
    if (c->page < 2 || (c->last[0] && !dvsim_guid_valid(c->last, strlen(c->last))))
        return -EINVAL;
    return 0;
}

static void cookie_render(const struct cookie *c, struct buf *out)
{
    buf_printf(out, "<cookie pagenumber=\"%d\"", c->page);
    if (c->last[0])
        buf_printf(out, " last=\"%s\"", c->last);
    if (c->ver)
        buf_printf(out, " version=\"%lld\"", (long long)c->ver);
    if (c->phase)
        buf_printf(out, " phase=\"%c\" after=\"%lld\"", c->phase, (long long)c->after);
    if (c->off)
        buf_printf(out, " offset=\"%lld\"", (long long)c->off);
    buf_printf(out, " istracking=\"%s\" />", c->tracking ? "True" : "False");
}

/* ---- helpers ---- */

static void api_base(struct req *r, struct buf *out)
{
    sreq_base(r, out);
    buf_printf(out, "/org/%s%s", dvschema_envs[r->env].unique_name, DVSIM_API_PREFIX);
}

/* The request URL with its query rebuilt, without the given options. */
static void self_link(struct req *r, const char *set, const char *const *drop, struct buf *out)
{
    api_base(r, out);
    buf_printf(out, "/%s", set);
    char sep = '?';
    for (int i = 0; i < r->n_args; i++) {
        bool skip = false;
        for (const char *const *d = drop; *d && !skip; d++)
            skip = strcmp(r->args[i].key, *d) == 0;
        if (skip)
            continue;
        buf_addch(out, sep);
        sep = '&';
        buf_addstr(out, r->args[i].key);
        buf_addch(out, '=');
        dvsim_url_encode(out, r->args[i].val, strlen(r->args[i].val));
    }
    if (sep == '&')
        buf_addch(out, '&');
    else
        buf_addch(out, '?');
}

static int64_t org_version(sqlite3 *db, int env)
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

static void delta_token_render(int64_t ver, struct buf *out)
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
static int delta_token_parse(struct dvsim *d, const char *s, int64_t *ver)
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

static bool is_known_option(const char *k)
{
    static const char *const ok[] = {"$select", "$filter", "$orderby", "$top", "$skiptoken", "$deltatoken",
                                     "$expand", "$count", NULL};
    for (const char *const *p = ok; *p; p++)
        if (strcmp(k, *p) == 0)
            return true;
    return false;
}

/* Build the projection from $select and Prefer. 0 or a 400 reply. */
int webapi_projection_init(struct req *r, const struct table_def *t, const struct prefer *pf, struct projection *p,
                    char *ctx_sel, size_t ctx_n);
int webapi_projection_init(struct req *r, const struct table_def *t, const struct prefer *pf, struct projection *p,
                    char *ctx_sel, size_t ctx_n)
{
    memset(p, 0, sizeof *p);
    p->t = t;
    p->n_select = -1;
    if (pf->have_annot)
        dvline_annot_parse(&p->annot, pf->annot);
    p->all_annotations = dvline_annot_match(&p->annot, FV_NAME, strlen(FV_NAME)) &&
                         dvline_annot_match(&p->annot, LLN_NAME, strlen(LLN_NAME));
    if (ctx_n)
        ctx_sel[0] = '\0';
    const char *sel = sreq_arg(r, "$select");
    if (!sel)
        return 0;
    p->n_select = 0;
    const char *s = sel;
    while (*s) {
        while (*s == ' ' || *s == ',')
            s++;
        if (!*s)
            break;
        const char *e = s;
        while (*e && *e != ',')
            e++;
        size_t l = (size_t)(e - s);
        while (l && s[l - 1] == ' ')
            l--;
        if (!dvschema_col_by_member(t, s, l)) {
            sreply_error(r, 400, QUERY_ERR, "Could not find a property named '%.*s' on type 'Microsoft.Dynamics.CRM.%s'.",
                        (int)(l > 80 ? 80 : l), s, t->logical);
            return -EINVAL;
        }
        if (p->n_select >= 64) {
            sreply_error(r, 400, QUERY_ERR, "Too many columns in $select.");
            return -EINVAL;
        }
        p->select[p->n_select] = s;
        p->select_len[p->n_select] = l;
        p->n_select++;
        s = e;
    }
    if (ctx_n)
        snprintf(ctx_sel, ctx_n, "(%s)", sel);
    return 0;
}

/* ---- collection GET ---- */

static void collection_get(struct req *r, const struct table_def *t)
{
    struct dvsim *d = r->d;
    struct prefer pf;
    struct projection proj;
    struct fnode *filter = NULL;
    struct order order = {.n = 0};
    struct sorted_row *rows = NULL;
    size_t n_rows = 0;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    struct buf tmp = BUF_INIT, link = BUF_INIT;
    char ctx_sel[600], err[400];
    int tid = table_id(r->env, dvschema_table_index(t));

    webapi_prefer_parse(r, &pf);
    for (int i = 0; i < r->n_args; i++) {
        if (r->args[i].key[0] == '$' && !is_known_option(r->args[i].key)) {
            sreply_error(r, 400, QUERY_ERR, "The query parameter %.40s is not supported", r->args[i].key);
            return;
        }
    }
    const char *deltatoken = sreq_arg(r, "$deltatoken");
    const char *skiptoken = sreq_arg(r, "$skiptoken");
    bool track = t->change_tracking && (pf.track || deltatoken);
    if (track) {
        static const char *const bad[] = {"$filter", "$orderby", "$expand", "$top"};
        for (int i = 0; i < 4; i++)
            if (sreq_arg(r, bad[i])) {
                sreply_error(r, 400, QUERY_ERR,
                            "The \"%s\" query parameter isn't supported when Change Tracking is enabled.", bad[i]);
                return;
            }
    }
    if (sreq_arg(r, "$expand")) {
        sreply_error(r, 400, "0x80060888", "$expand is not supported by dvsim on collections.");
        return;
    }
    if (webapi_projection_init(r, t, &pf, &proj, ctx_sel, sizeof ctx_sel))
        return;
    const char *fs = sreq_arg(r, "$filter");
    if (fs) {
        filter = filter_parse(t, fs, err, sizeof err);
        if (!filter) {
            sreply_error(r, 400, QUERY_ERR, "%s", err);
            return;
        }
    }
    const char *os = sreq_arg(r, "$orderby");
    if (os && parse_orderby(t, os, &order, err, sizeof err)) {
        sreply_error(r, 400, QUERY_ERR, "%s", err);
        goto out;
    }
    long top = -1;
    const char *ts = sreq_arg(r, "$top");
    if (ts) {
        char *end;
        top = strtol(ts, &end, 10);
        if (*end || top < 0) {
            sreply_error(r, 400, QUERY_ERR, "Invalid value '%.40s' for $top.", ts);
            goto out;
        }
        if (top > DVSIM_MAX_PAGE)
            top = DVSIM_MAX_PAGE;
    }
    int page = pf.maxpagesize > 0 && pf.maxpagesize <= DVSIM_MAX_PAGE ? pf.maxpagesize : DVSIM_MAX_PAGE;
    struct cookie ck;
    memset(&ck, 0, sizeof ck);
    ck.page = 1;
    if (skiptoken && (cookie_parse(skiptoken, &ck) || (ck.tracking != track && deltatoken == NULL && track))) {
        sreply_error(r, 400, QUERY_ERR, "The $skiptoken is not valid.");
        goto out;
    }
    int64_t since = 0;
    if (deltatoken) {
        int rc = delta_token_parse(d, deltatoken, &since);
        if (rc == -ESTALE) {
            sreply_error(r, 400, "0x80044352",
                        "Version stamp associated with the client has expired. Please perform a full sync.");
            goto out;
        }
        if (rc) {
            sreply_error(r, 400, QUERY_ERR, "The $deltatoken is not valid.");
            goto out;
        }
    }
    db = dvstore_get(d->store);
    if (!db) {
        sreply_error(r, 500, "0x80040216", "database unavailable");
        goto out;
    }
    int64_t snapshot = ck.ver ? ck.ver : org_version(db, r->env);

    struct buf *o = &r->out;
    buf_reset(o);
    buf_addstr(o, "{\"@odata.context\":\"");
    api_base(r, o);
    buf_printf(o, "/$metadata#%s%s%s\",\"value\":[", t->set, ctx_sel, deltatoken ? "/$delta" : "");
    int emitted = 0;
    bool more = false;
    struct lmember m[128];
    struct cookie next = ck;
    next.page = ck.page + 1;
    next.tracking = track;
    next.ver = track ? snapshot : 0;

    if (deltatoken) {
        /* upserts by version, then deletes */
        char phase = ck.phase ? ck.phase : 'u';
        int64_t after = ck.phase ? ck.after : since;
        if (phase == 'u') {
            sqlite3_prepare_v2(db, "SELECT id, line, ver FROM rec WHERE tid=?1 AND del=0 AND ver>?2 AND ver<=?3 "
                                   "ORDER BY ver", -1, &st, NULL);
            sqlite3_bind_int(st, 1, tid);
            sqlite3_bind_int64(st, 2, after);
            sqlite3_bind_int64(st, 3, snapshot);
            while (sqlite3_step(st) == SQLITE_ROW) {
                if (emitted == page) {
                    more = true;
                    break;
                }
                if (emitted)
                    buf_addch(o, ',');
                dvline_project(&proj, sqlite3_column_blob(st, 1), (size_t)sqlite3_column_bytes(st, 1), o);
                next.after = sqlite3_column_int64(st, 2);
                emitted++;
            }
            sqlite3_finalize(st);
            st = NULL;
            if (more)
                next.phase = 'u';
            else {
                phase = 'd';
                after = since;
            }
        }
        if (!more && phase == 'd') {
            sqlite3_prepare_v2(db, "SELECT id, ver FROM rec WHERE tid=?1 AND del=1 AND ver>?2 AND ver<=?3 "
                                   "AND ver>?4 ORDER BY ver", -1, &st, NULL);
            sqlite3_bind_int(st, 1, tid);
            sqlite3_bind_int64(st, 2, since);
            sqlite3_bind_int64(st, 3, snapshot);
            sqlite3_bind_int64(st, 4, after);
            while (sqlite3_step(st) == SQLITE_ROW) {
                if (emitted == page) {
                    more = true;
                    break;
                }
                if (emitted)
                    buf_addch(o, ',');
                buf_addstr(o, "{\"@odata.context\":\"");
                api_base(r, o);
                buf_printf(o, "/$metadata#%s/$deletedEntity\",\"id\":\"%s\",\"reason\":\"deleted\"}", t->set,
                           (const char *)sqlite3_column_text(st, 0));
                next.after = sqlite3_column_int64(st, 1);
                emitted++;
            }
            sqlite3_finalize(st);
            st = NULL;
            next.phase = 'd';
        }
    } else if (order.n > 0) {
        /* $orderby: sort every match in memory, page by offset */
        sqlite3_prepare_v2(db, "SELECT id, line FROM rec WHERE tid=?1 AND del=0 ORDER BY id", -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        size_t cap = 0;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *line = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            int nm = dvline_scan(line, len, m, 128);
            if (nm < 0 || (filter && !eval(filter, m, nm, &tmp)))
                continue;
            if (n_rows == cap) {
                cap = cap ? cap * 2 : 1024;
                struct sorted_row *nr = realloc(rows, cap * sizeof *rows);
                if (!nr)
                    break;
                rows = nr;
            }
            struct sorted_row *sr = &rows[n_rows++];
            sr->id = strdup((const char *)sqlite3_column_text(st, 0));
            sr->line = malloc(len + 1);
            memcpy(sr->line, line, len);
            sr->line[len] = '\0';
            sr->len = len;
            int nm2 = dvline_scan(sr->line, len, m, 128);
            for (int k = 0; k < order.n; k++) {
                const struct lmember *v = find_member(m, nm2, order.k[k].member);
                sr->val[k] = v ? v->val : NULL;
                sr->vlen[k] = v ? v->val_len : 0;
                if (v && v->val[0] == '"') {
                    sr->val[k]++;
                    sr->vlen[k] -= 2;
                }
            }
        }
        sqlite3_finalize(st);
        st = NULL;
        qsort_r(rows, n_rows, sizeof *rows, row_cmp, &order);
        size_t start = (size_t)ck.off, limit = top >= 0 ? (size_t)top : (size_t)page;
        for (size_t i = start; i < n_rows; i++) {
            if ((size_t)emitted == limit) {
                more = top < 0;
                break;
            }
            if (emitted)
                buf_addch(o, ',');
            dvline_project(&proj, rows[i].line, rows[i].len, o);
            emitted++;
        }
        next.off = (int64_t)start + emitted;
    } else {
        sqlite3_prepare_v2(db, "SELECT id, line FROM rec WHERE tid=?1 AND del=0 AND id>?2 ORDER BY id", -1, &st, NULL);
        sqlite3_bind_int(st, 1, tid);
        sqlite3_bind_text(st, 2, ck.last, -1, SQLITE_STATIC);
        int limit = top >= 0 ? (int)top : page;
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *line = sqlite3_column_blob(st, 1);
            size_t len = (size_t)sqlite3_column_bytes(st, 1);
            if (filter) {
                int nm = dvline_scan(line, len, m, 128);
                if (nm < 0 || !eval(filter, m, nm, &tmp))
                    continue;
            }
            if (emitted == limit) {
                more = top < 0;
                break;
            }
            if (emitted)
                buf_addch(o, ',');
            dvline_project(&proj, line, len, o);
            snprintf(next.last, sizeof next.last, "%s", (const char *)sqlite3_column_text(st, 0));
            emitted++;
        }
        sqlite3_finalize(st);
        st = NULL;
    }
    buf_addch(o, ']');
    if (more) {
        static const char *const drop[] = {"$skiptoken", NULL};
        buf_addstr(o, ",\"@odata.nextLink\":");
        buf_reset(&link);
        self_link(r, t->set, drop, &link);
        buf_addstr(&link, "$skiptoken=");
        buf_reset(&tmp);
        cookie_render(&next, &tmp);
        dvsim_url_encode(&link, tmp.data, tmp.len);
        buf_add_json_string(o, link.data, link.len);
    } else if (track) {
        static const char *const drop[] = {"$skiptoken", "$deltatoken", NULL};
        buf_addstr(o, ",\"@odata.deltaLink\":");
        buf_reset(&link);
        self_link(r, t->set, drop, &link);
        buf_addstr(&link, "$deltatoken=");
        delta_token_render(snapshot, &link);
        buf_add_json_string(o, link.data, link.len);
    }
    buf_addch(o, '}');
    sreply_json(r, 200);
    {
        char pa[700] = "";
        size_t pl = 0;
        if (pf.maxpagesize > 0)
            pl += (size_t)snprintf(pa + pl, sizeof pa - pl, "odata.maxpagesize=%d", page);
        if (track && pf.track)
            pl += (size_t)snprintf(pa + pl, sizeof pa - pl, "%sodata.track-changes", pl ? "," : "");
        if (pf.have_annot)
            snprintf(pa + pl, sizeof pa - pl, "%sodata.include-annotations=%s", pl ? "," : "",
                     pf.annot[0] ? pf.annot : "\"*\"");
        if (pa[0])
            sreq_add_header(r, "Preference-Applied", pa);
    }
out:
    sqlite3_finalize(st);
    dvstore_put(d->store, db);
    fnode_free(filter);
    for (size_t i = 0; i < n_rows; i++) {
        free(rows[i].id);
        free(rows[i].line);
    }
    free(rows);
    buf_release(&tmp);
    buf_release(&link);
}

static void count_get(struct req *r, const struct table_def *t)
{
    sqlite3 *db = dvstore_get(r->d->store);
    sqlite3_stmt *st = NULL;
    long long n = 0;
    if (db && sqlite3_prepare_v2(db, "SELECT count(*) FROM rec WHERE tid=?1 AND del=0", -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int(st, 1, table_id(r->env, dvschema_table_index(t)));
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    dvstore_put(r->d->store, db);
    buf_reset(&r->out);
    buf_printf(&r->out, "%lld", n > 5000 ? 5000 : n);
    r->status = 200;
    r->content_type = "text/plain";
}

void webapi_record_get(struct req *r, const struct table_def *t, const char *key);
void webapi_record_get(struct req *r, const struct table_def *t, const char *key)
{
    struct prefer pf;
    struct projection proj;
    char ctx_sel[600];
    webapi_prefer_parse(r, &pf);
    if (webapi_projection_init(r, t, &pf, &proj, ctx_sel, sizeof ctx_sel))
        return;
    sqlite3 *db = dvstore_get(r->d->store);
    char *line = NULL;
    size_t len = 0;
    int rc = db ? dvstore_get_record(db, table_id(r->env, dvschema_table_index(t)), key, &line, &len) : -EIO;
    dvstore_put(r->d->store, db);
    if (rc == -ENOENT) {
        sreply_error(r, 404, "0x80040217", "%s With Id = %s Does Not Exist", t->logical, key);
        return;
    }
    if (rc) {
        sreply_error(r, 500, "0x80040216", "database error");
        return;
    }
    const char *inm = sreq_header(r, "If-None-Match");
    if (inm && strcmp(inm, "null") != 0 && !pf.have_annot) {
        struct lmember m[128];
        int nm = dvline_scan(line, len, m, 128);
        const struct lmember *e = nm > 0 ? find_member(m, nm, "@odata.etag") : NULL;
        struct buf et = BUF_INIT;
        if (e)
            json_unquote(e->val, e->val_len, &et);
        bool same = et.data && strcmp(et.data, inm) == 0;
        buf_release(&et);
        if (same) {
            free(line);
            buf_reset(&r->out);
            r->status = 304;
            return;
        }
    }
    struct buf body = BUF_INIT;
    dvline_project(&proj, line, len, &body);
    free(line);
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"@odata.context\":\"");
    api_base(r, &r->out);
    buf_printf(&r->out, "/$metadata#%s%s/$entity\"", t->set, ctx_sel);
    if (body.len > 2)
        buf_addch(&r->out, ',');
    buf_add(&r->out, body.data + 1, body.len - 1);
    buf_release(&body);
    sreply_json(r, 200);
}

/* ---- metadata ---- */

static void metadata_id(const char *a, const char *b, char out[37])
{
    char hex[65];
    struct buf s = BUF_INIT;
    buf_printf(&s, "%s|%s", a, b ? b : "");
    sha256_hex(s.data, s.len, hex);
    buf_release(&s);
    uint64_t x = strtoull((char[17]){hex[0], hex[1], hex[2], hex[3], hex[4], hex[5], hex[6], hex[7], hex[8],
                                     hex[9], hex[10], hex[11], hex[12], hex[13], hex[14], hex[15], 0},
                          NULL, 16);
    uint64_t y = strtoull((char[17]){hex[16], hex[17], hex[18], hex[19], hex[20], hex[21], hex[22], hex[23],
                                     hex[24], hex[25], hex[26], hex[27], hex[28], hex[29], hex[30], hex[31], 0},
                          NULL, 16);
    dvsim_guid(x, y, out);
}

static void label(cJSON *o, const char *key, const char *text)
{
    cJSON *l = cJSON_AddObjectToObject(o, key);
    cJSON *arr = cJSON_AddArrayToObject(l, "LocalizedLabels");
    cJSON *one = cJSON_CreateObject();
    cJSON_AddStringToObject(one, "Label", text);
    cJSON_AddNumberToObject(one, "LanguageCode", 1033);
    cJSON_AddItemToArray(arr, one);
    cJSON *u = cJSON_AddObjectToObject(l, "UserLocalizedLabel");
    cJSON_AddStringToObject(u, "Label", text);
    cJSON_AddNumberToObject(u, "LanguageCode", 1033);
}

static void managed(cJSON *o, const char *key, bool v, const char *logical)
{
    cJSON *m = cJSON_AddObjectToObject(o, key);
    cJSON_AddBoolToObject(m, "Value", v);
    cJSON_AddBoolToObject(m, "CanBeChanged", true);
    cJSON_AddStringToObject(m, "ManagedPropertyLogicalName", logical);
}

static void type_names(enum col_type ty, const char **at, const char **atn, const char **odt)
{
    switch (ty) {
    case COL_PK: *at = "Uniqueidentifier"; *atn = "UniqueidentifierType"; *odt = "AttributeMetadata"; break;
    case COL_STRING: case COL_FILENAME: *at = "String"; *atn = "StringType"; *odt = "StringAttributeMetadata"; break;
    case COL_MEMO: *at = "Memo"; *atn = "MemoType"; *odt = "MemoAttributeMetadata"; break;
    case COL_INTEGER: *at = "Integer"; *atn = "IntegerType"; *odt = "IntegerAttributeMetadata"; break;
    case COL_BIGINT: case COL_VERSION: *at = "BigInt"; *atn = "BigIntType"; *odt = "BigIntAttributeMetadata"; break;
    case COL_MONEY: *at = "Money"; *atn = "MoneyType"; *odt = "MoneyAttributeMetadata"; break;
    case COL_DECIMAL: *at = "Decimal"; *atn = "DecimalType"; *odt = "DecimalAttributeMetadata"; break;
    case COL_DATETIME: case COL_DATEONLY: *at = "DateTime"; *atn = "DateTimeType"; *odt = "DateTimeAttributeMetadata"; break;
    case COL_PICKLIST: *at = "Picklist"; *atn = "PicklistType"; *odt = "PicklistAttributeMetadata"; break;
    case COL_STATE: *at = "State"; *atn = "StateType"; *odt = "StateAttributeMetadata"; break;
    case COL_BOOLEAN: *at = "Boolean"; *atn = "BooleanType"; *odt = "BooleanAttributeMetadata"; break;
    case COL_LOOKUP: *at = "Lookup"; *atn = "LookupType"; *odt = "LookupAttributeMetadata"; break;
    case COL_OWNER: *at = "Owner"; *atn = "OwnerType"; *odt = "LookupAttributeMetadata"; break;
    case COL_CUSTOMER: *at = "Customer"; *atn = "CustomerType"; *odt = "LookupAttributeMetadata"; break;
    case COL_FILE: *at = "Virtual"; *atn = "FileType"; *odt = "FileAttributeMetadata"; break;
    }
}

static cJSON *attr_json(const struct table_def *t, const struct col_def *c)
{
    const char *at = "", *atn = "", *odt = "";
    type_names(c->type, &at, &atn, &odt);
    cJSON *o = cJSON_CreateObject();
    char s[160], id[37];
    snprintf(s, sizeof s, "#Microsoft.Dynamics.CRM.%s", odt);
    cJSON_AddStringToObject(o, "@odata.type", s);
    metadata_id(t->logical, c->name, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "LogicalName", c->name);
    cJSON_AddStringToObject(o, "SchemaName", c->name);
    cJSON_AddStringToObject(o, "EntityLogicalName", t->logical);
    cJSON_AddStringToObject(o, "AttributeType", at);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(o, "AttributeTypeName"), "Value", atn);
    cJSON_AddBoolToObject(o, "IsPrimaryId", c->type == COL_PK);
    cJSON_AddBoolToObject(o, "IsPrimaryName", t->primary_name && strcmp(t->primary_name, c->name) == 0);
    bool ro = t->read_only || t->intersect;
    cJSON_AddBoolToObject(o, "IsValidForCreate", !ro && (c->flags & COLF_CREATE));
    cJSON_AddBoolToObject(o, "IsValidForUpdate", !ro && (c->flags & COLF_UPDATE));
    cJSON_AddBoolToObject(o, "IsValidForRead", true);
    cJSON_AddBoolToObject(o, "IsCustomAttribute", strncmp(c->name, "new_", 4) == 0);
    cJSON *rl = cJSON_AddObjectToObject(o, "RequiredLevel");
    cJSON_AddStringToObject(rl, "Value", c->type == COL_PK ? "SystemRequired" : "None");
    cJSON_AddBoolToObject(rl, "CanBeChanged", c->type != COL_PK);
    cJSON_AddStringToObject(rl, "ManagedPropertyLogicalName", "canmodifyrequirementlevelsettings");
    if (c->type == COL_FILENAME)
        cJSON_AddStringToObject(o, "AttributeOf", "new_document");
    else
        cJSON_AddNullToObject(o, "AttributeOf");
    if (c->type == COL_DATEONLY)
        cJSON_AddStringToObject(o, "Format", "DateOnly");
    else if (c->type == COL_DATETIME)
        cJSON_AddStringToObject(o, "Format", "DateAndTime");
    if (c->type == COL_LOOKUP || c->type == COL_OWNER || c->type == COL_CUSTOMER) {
        cJSON *tg = cJSON_AddArrayToObject(o, "Targets");
        cJSON_AddItemToArray(tg, cJSON_CreateString(c->target));
    }
    if (c->type == COL_FILE)
        cJSON_AddNumberToObject(o, "MaxSizeInKB", 131072);
    if (c->type == COL_MONEY)
        cJSON_AddNumberToObject(o, "Precision", 2);
    if (c->type == COL_DECIMAL)
        cJSON_AddNumberToObject(o, "Precision", 10);
    if (c->options) {
        cJSON *os = cJSON_AddObjectToObject(o, "OptionSet");
        cJSON *arr = cJSON_AddArrayToObject(os, "Options");
        for (const struct option_def *op = c->options; op->label; op++) {
            cJSON *x = cJSON_CreateObject();
            cJSON_AddNumberToObject(x, "Value", op->value);
            label(x, "Label", op->label);
            cJSON_AddItemToArray(arr, x);
        }
    }
    return o;
}

static cJSON *rel_json(const struct table_def *t, const struct col_def *c)
{
    const struct table_def *target = dvschema_table_by_logical(c->target, strlen(c->target));
    cJSON *o = cJSON_CreateObject();
    char s[160], id[37];
    snprintf(s, sizeof s, "%s_%s_%s", c->target, t->logical, c->name);
    metadata_id("rel", s, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "SchemaName", s);
    cJSON_AddStringToObject(o, "RelationshipType", "OneToManyRelationship");
    cJSON_AddStringToObject(o, "ReferencedEntity", c->target);
    cJSON_AddStringToObject(o, "ReferencedAttribute", target ? target->pk : "");
    cJSON_AddStringToObject(o, "ReferencingEntity", t->logical);
    cJSON_AddStringToObject(o, "ReferencingAttribute", c->name);
    cJSON_AddStringToObject(o, "ReferencedEntityNavigationPropertyName", s);
    cJSON_AddStringToObject(o, "ReferencingEntityNavigationPropertyName", c->nav);
    cJSON_AddBoolToObject(o, "IsHierarchical", strcmp(c->target, t->logical) == 0);
    cJSON_AddBoolToObject(o, "IsCustomRelationship", strncmp(c->name, "new_", 4) == 0);
    return o;
}

static cJSON *n2n_json(const struct n2n_def *n)
{
    cJSON *o = cJSON_CreateObject();
    char id[37];
    metadata_id("n2n", n->dvschema_name, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "SchemaName", n->dvschema_name);
    cJSON_AddStringToObject(o, "RelationshipType", "ManyToManyRelationship");
    cJSON_AddStringToObject(o, "IntersectEntityName", n->intersect);
    cJSON_AddStringToObject(o, "Entity1LogicalName", n->entity1);
    cJSON_AddStringToObject(o, "Entity1IntersectAttribute", n->entity1_attr);
    cJSON_AddStringToObject(o, "Entity1NavigationPropertyName", n->entity1_nav);
    cJSON_AddStringToObject(o, "Entity2LogicalName", n->entity2);
    cJSON_AddStringToObject(o, "Entity2IntersectAttribute", n->entity2_attr);
    cJSON_AddStringToObject(o, "Entity2NavigationPropertyName", n->entity2_nav);
    cJSON_AddBoolToObject(o, "IsCustomRelationship", true);
    return o;
}

enum { EX_ATTR = 1, EX_M2O = 2, EX_O2M = 4, EX_N2N = 8 };

static cJSON *sub_array(const struct table_def *t, int which)
{
    cJSON *a = cJSON_CreateArray();
    if (which == EX_ATTR)
        for (size_t i = 0; i < t->n_cols; i++)
            cJSON_AddItemToArray(a, attr_json(t, &t->cols[i]));
    if (which == EX_M2O)
        for (size_t i = 0; i < t->n_cols; i++)
            if (t->cols[i].target)
                cJSON_AddItemToArray(a, rel_json(t, &t->cols[i]));
    if (which == EX_O2M)
        for (int k = 0; k < N_TABLES; k++)
            for (size_t i = 0; i < dvschema_tables[k].n_cols; i++)
                if (dvschema_tables[k].cols[i].target && strcmp(dvschema_tables[k].cols[i].target, t->logical) == 0)
                    cJSON_AddItemToArray(a, rel_json(&dvschema_tables[k], &dvschema_tables[k].cols[i]));
    if (which == EX_N2N)
        for (size_t i = 0; i < dvschema_n_n2n; i++) {
            const struct n2n_def *n = &dvschema_n2n[i];
            if (strcmp(n->entity1, t->logical) == 0 || strcmp(n->entity2, t->logical) == 0 ||
                strcmp(n->intersect, t->logical) == 0)
                cJSON_AddItemToArray(a, n2n_json(n));
        }
    return a;
}

static cJSON *entity_json(const struct table_def *t, int expand)
{
    cJSON *o = cJSON_CreateObject();
    char id[37];
    metadata_id(t->logical, NULL, id);
    cJSON_AddStringToObject(o, "MetadataId", id);
    cJSON_AddStringToObject(o, "LogicalName", t->logical);
    cJSON_AddStringToObject(o, "SchemaName", t->logical);
    cJSON_AddStringToObject(o, "EntitySetName", t->set);
    cJSON_AddStringToObject(o, "LogicalCollectionName", t->set);
    cJSON_AddStringToObject(o, "PrimaryIdAttribute", t->pk);
    if (t->primary_name)
        cJSON_AddStringToObject(o, "PrimaryNameAttribute", t->primary_name);
    else
        cJSON_AddNullToObject(o, "PrimaryNameAttribute");
    cJSON_AddNumberToObject(o, "ObjectTypeCode", t->object_type_code);
    cJSON_AddBoolToObject(o, "ChangeTrackingEnabled", t->change_tracking);
    managed(o, "CanChangeTrackingBeEnabled", !t->read_only, "canchangetrackingbeenabled");
    cJSON_AddBoolToObject(o, "IsCustomEntity", strncmp(t->logical, "new_", 4) == 0);
    cJSON_AddBoolToObject(o, "IsActivity", false);
    cJSON_AddBoolToObject(o, "IsIntersect", t->intersect);
    cJSON_AddBoolToObject(o, "IsValidForAdvancedFind", !t->intersect);
    cJSON_AddBoolToObject(o, "IsOptimisticConcurrencyEnabled", !t->read_only && !t->intersect);
    cJSON_AddStringToObject(o, "OwnershipType",
                            t->intersect || t->read_only ? "None"
                            : dvschema_table_index(t) == T_SYSTEMUSER ? "BusinessOwned" : "UserOwned");
    managed(o, "IsAuditEnabled", !t->read_only, "canmodifyauditsettings");
    label(o, "DisplayName", t->logical);
    if (expand & EX_ATTR)
        cJSON_AddItemToObject(o, "Attributes", sub_array(t, EX_ATTR));
    if (expand & EX_M2O)
        cJSON_AddItemToObject(o, "ManyToOneRelationships", sub_array(t, EX_M2O));
    if (expand & EX_O2M)
        cJSON_AddItemToObject(o, "OneToManyRelationships", sub_array(t, EX_O2M));
    if (expand & EX_N2N)
        cJSON_AddItemToObject(o, "ManyToManyRelationships", sub_array(t, EX_N2N));
    return o;
}

static int parse_expand(const char *s, int *out)
{
    *out = 0;
    if (!s)
        return 0;
    int depth = 0;
    const char *start = s;
    for (const char *p = s;; p++) {
        if (*p == '(')
            depth++;
        else if (*p == ')')
            depth--;
        if ((*p == ',' && depth == 0) || !*p) {
            const char *e = start;
            while (e < p && *e != '(')
                e++;
            while (start < e && *start == ' ')
                start++;
            size_t n = (size_t)(e - start);
            if (n == 10 && !strncmp(start, "Attributes", n)) *out |= EX_ATTR;
            else if (n == 22 && !strncmp(start, "ManyToOneRelationships", n)) *out |= EX_M2O;
            else if (n == 22 && !strncmp(start, "OneToManyRelationships", n)) *out |= EX_O2M;
            else if (n == 23 && !strncmp(start, "ManyToManyRelationships", n)) *out |= EX_N2N;
            else if (n)
                return -EINVAL;
            if (!*p)
                break;
            start = p + 1;
        }
    }
    return 0;
}

static void send_cjson_odata(struct req *r, cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    buf_reset(&r->out);
    if (s)
        buf_addstr(&r->out, s);
    free(s);
    sreply_json(r, 200);
}

static void entity_definitions(struct req *r, const char *rest)
{
    int expand;
    if (parse_expand(sreq_arg(r, "$expand"), &expand)) {
        sreply_error(r, 400, QUERY_ERR, "Could not find a property named '%.80s' on type "
                    "'Microsoft.Dynamics.CRM.EntityMetadata'.", sreq_arg(r, "$expand"));
        return;
    }
    struct buf ctx = BUF_INIT;
    api_base(r, &ctx);
    if (*rest == '\0' || strcmp(rest, "/") == 0) {
        cJSON *o = cJSON_CreateObject();
        buf_addstr(&ctx, "/$metadata#EntityDefinitions");
        cJSON_AddStringToObject(o, "@odata.context", ctx.data);
        cJSON *a = cJSON_AddArrayToObject(o, "value");
        for (int i = 0; i < N_TABLES; i++)
            cJSON_AddItemToArray(a, entity_json(&dvschema_tables[i], expand));
        for (int i = 0; r->d->hostile_tables && i < N_HOSTILE; i++)
            cJSON_AddItemToArray(a, entity_json(&dvschema_hostile[i], expand));
        buf_release(&ctx);
        send_cjson_odata(r, o);
        return;
    }
    const struct table_def *t = NULL;
    const char *p = rest;
    if (strncmp(p, "(LogicalName='", 14) == 0) {
        p += 14;
        size_t n = strcspn(p, "'");
        t = dvschema_table_by_logical(p, n);
        p += n;
        if (strncmp(p, "')", 2) != 0)
            t = NULL;
        p += 2;
    } else if (*p == '(' && strlen(p) >= 38 && p[37] == ')') {
        for (int i = 0; i < N_TABLES && !t; i++) {
            char id[37];
            metadata_id(dvschema_tables[i].logical, NULL, id);
            if (strncasecmp(id, p + 1, 36) == 0)
                t = &dvschema_tables[i];
        }
        p += 38;
    }
    if (!t) {
        buf_release(&ctx);
        sreply_error(r, 404, "0x80040217", "Could not find an entity definition for '%.80s'.", rest);
        return;
    }
    cJSON *o;
    if (*p == '\0') {
        o = entity_json(t, expand);
        buf_addstr(&ctx, "/$metadata#EntityDefinitions/$entity");
        cJSON_AddItemToObject(o, "@odata.context", cJSON_CreateString(ctx.data));
    } else {
        int which = !strcmp(p, "/Attributes") ? EX_ATTR : !strcmp(p, "/ManyToOneRelationships") ? EX_M2O
                    : !strcmp(p, "/OneToManyRelationships") ? EX_O2M : !strcmp(p, "/ManyToManyRelationships") ? EX_N2N : 0;
        if (!which) {
            buf_release(&ctx);
            sreply_error(r, 404, QUERY_ERR, "Resource not found for the segment '%.80s'.", p);
            return;
        }
        o = cJSON_CreateObject();
        buf_printf(&ctx, "/$metadata#EntityDefinitions('%s')%s", t->logical, p);
        cJSON_AddStringToObject(o, "@odata.context", ctx.data);
        cJSON_AddItemToObject(o, "value", sub_array(t, which));
    }
    buf_release(&ctx);
    send_cjson_odata(r, o);
}

static void service_document(struct req *r)
{
    buf_reset(&r->out);
    buf_addstr(&r->out, "{\"@odata.context\":\"");
    api_base(r, &r->out);
    buf_addstr(&r->out, "/$metadata\",\"value\":[");
    for (int i = 0; i < N_TABLES; i++)
        buf_printf(&r->out, "%s{\"name\":\"%s\",\"kind\":\"EntitySet\",\"url\":\"%s\"}", i ? "," : "",
                   dvschema_tables[i].set, dvschema_tables[i].set);
    buf_addstr(&r->out, "]}");
    sreply_json(r, 200);
}

void webapi_route(struct req *r, const char *rest)
{
    if (*rest == '/')
        rest++;
    bool get = strcmp(r->method, "GET") == 0;
    if (*rest == '\0') {
        if (get)
            service_document(r);
        else
            sreply_error(r, 405, "0x80060888", "Method %s is not allowed here.", r->method);
        return;
    }
    if (strncmp(rest, "EntityDefinitions", 17) == 0) {
        if (!get) {
            sreply_error(r, 405, "0x80060888", "dvsim does not change metadata.");
            return;
        }
        entity_definitions(r, rest + 17);
        return;
    }
    if (strcmp(rest, "$batch") == 0) {
        webwrite_batch(r);
        return;
    }
    size_t sl = strcspn(rest, "(/");
    const struct table_def *t = dvschema_table_by_set(rest, sl);
    if (!t) {
        sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.*s'.", (int)(sl > 80 ? 80 : sl), rest);
        return;
    }
    const char *p = rest + sl;
    if (*p == '\0') {
        if (get)
            collection_get(r, t);
        else
            webwrite_route(r, t, NULL, NULL);
        return;
    }
    if (strcmp(p, "/$count") == 0 && get) {
        count_get(r, t);
        return;
    }
    if (*p == '(') {
        const char *k = p + 1;
        size_t kl = strcspn(k, ")");
        if (k[kl] != ')') {
            sreply_error(r, 400, QUERY_ERR, "Bad key segment.");
            return;
        }
        char key[64];
        if (!dvsim_guid_valid(k, kl)) {
            sreply_error(r, 400, "0x80060888", "Invalid key '%.*s': dvsim supports primary key GUIDs only.",
                        (int)(kl > 80 ? 80 : kl), k);
            return;
        }
        for (size_t i = 0; i < kl; i++)
            key[i] = (char)tolower((unsigned char)k[i]);
        key[kl] = '\0';
        const char *sub = k + kl + 1;
        if (*sub == '\0' && get) {
            webapi_record_get(r, t, key);
            return;
        }
        webwrite_route(r, t, key, *sub ? sub : NULL);
        return;
    }
    sreply_error(r, 404, "0x80060888", "Resource not found for the segment '%.80s'.", rest);
}

int webapi_projection_for(struct req *r, const struct table_def *t, struct projection *p, char *ctx_sel, size_t ctx_n)
{
    struct prefer pf;
    webapi_prefer_parse(r, &pf);
    return webapi_projection_init(r, t, &pf, p, ctx_sel, ctx_n);
}
