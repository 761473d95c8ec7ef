/* webapi_query: the query options of a collection GET (webapi_int.h; the GET itself: webapi.c).
 *
 * $filter: eq ne gt ge lt le, and, or, not, parentheses; literals 'string' (with ''), numbers,
 * null, true, false, GUIDs and ISO dates unquoted; strings compare case-insensitively; a member
 * that is absent or null only equals null. Parsed into a tree once, evaluated on each record's
 * scanned members (dvline_scan), so a filter costs no JSON parse per record.
 * A filter's bounds on the primary key (webapi_filter_key_bounds) let the store seek its index
 * to a key range, as the service does, instead of scanning the table from its start.
 * $orderby: up to 4 columns, asc or desc, numbers by value, text case-insensitively, nulls lowest;
 * the primary key breaks ties.
 * $skiptoken: the service's paging cookie (<cookie pagenumber=".." .../>), here carrying where the
 * next page starts: the last key, the $orderby offset, or the delta phase and version.
 * Errors are the service's messages. Thread-safe: no shared state. */
#include "tools/dvsim/webapi_int.h"

#include <ctype.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

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

void webapi_filter_free(struct fnode *n)
{
    if (!n)
        return;
    webapi_filter_free(n->a);
    webapi_filter_free(n->b);
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
                webapi_filter_free(n);
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
        webapi_filter_free(n);
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
            webapi_filter_free(n);
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
            webapi_filter_free(a);
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
            webapi_filter_free(n);
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
            webapi_filter_free(a);
            return NULL;
        }
        struct fnode *n = calloc(1, sizeof *n);
        if (!n) {
            webapi_filter_free(a);
            webapi_filter_free(b);
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

struct fnode *webapi_filter_parse(const struct table_def *t, const char *s, char *err, size_t errn)
{
    struct fparser fp = {t, s, s, ""};
    struct fnode *n = parse_or(&fp);
    if (n) {
        skip_ws(&fp);
        if (*fp.p) {
            webapi_filter_free(n);
            n = fail(&fp, "unexpected text");
        }
    }
    if (!n)
        snprintf(err, errn, "%s", fp.err[0] ? fp.err : "Syntax error in $filter.");
    return n;
}


void webapi_filter_key_bounds(const struct fnode *n, const char *pk, char lo[37], bool *lo_incl,
                              char hi[37], bool *hi_incl)
{
    if (!n)
        return;
    if (n->kind == FK_AND) {
        webapi_filter_key_bounds(n->a, pk, lo, lo_incl, hi, hi_incl);
        webapi_filter_key_bounds(n->b, pk, lo, lo_incl, hi, hi_incl);
        return;
    }
    if (n->kind != FK_CMP || n->lk != L_BARE || strcmp(n->member, pk) != 0 ||
        !dvsim_guid_valid(n->lit.data, n->lit.len))
        return;
    bool lower = n->op == OP_GE || n->op == OP_GT, upper = n->op == OP_LT || n->op == OP_LE;
    char *b = lower && !lo[0] ? lo : upper && !hi[0] ? hi : NULL;
    if (!b)
        return;
    for (size_t i = 0; i < 36; i++)
        b[i] = (char)tolower((unsigned char)n->lit.data[i]);
    b[36] = '\0';
    if (lower)
        *lo_incl = n->op == OP_GE;
    else
        *hi_incl = n->op == OP_LE;
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

bool webapi_filter_eval(const struct fnode *n, const struct lmember *m, int nm, struct buf *tmp)
{
    switch (n->kind) {
    case FK_AND: return webapi_filter_eval(n->a, m, nm, tmp) && webapi_filter_eval(n->b, m, nm, tmp);
    case FK_OR: return webapi_filter_eval(n->a, m, nm, tmp) || webapi_filter_eval(n->b, m, nm, tmp);
    case FK_NOT: return !webapi_filter_eval(n->a, m, nm, tmp);
    case FK_CMP: break;
    }
    const struct lmember *v = dvline_member(m, nm, n->member);
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
        dvline_unquote(v->val, v->val_len, tmp);
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

/* ---- $orderby (struct order, sorted_row: webapi_int.h) ---- */

int webapi_orderby_parse(const struct table_def *t, const char *s, struct order *o, char *err, size_t errn)
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

int webapi_row_cmp(const void *x, const void *y, void *ctx)
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

/* ---- skiptoken cookie (struct cookie: webapi_int.h) ---- */

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

int webapi_cookie_parse(const char *s, struct cookie *c)
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
    /* last: a stored id, a GUID or an elastic row's GUID:<16 hex digits> (store.c) */
    size_t il = dvstore_id_len(c->last), tl = strlen(c->last);
    bool last_ok = dvsim_guid_valid(c->last, il) &&
                   (tl == il || (tl == il + 17 && strspn(c->last + il + 1, "0123456789abcdef") == 16));
    if (c->page < 2 || (c->last[0] && !last_ok))
        return -EINVAL;
    return 0;
}

void webapi_cookie_render(const struct cookie *c, struct buf *out)
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

