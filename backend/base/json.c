/* json: strict RFC 8259 parser keeping numbers as text (see json.h).
 *
 * Recursive descent bounded by max_depth; every node and decoded string lives in one arena of
 * 64 KiB+ blocks owned by the document, so freeing is one walk over the blocks. Strings must be
 * valid UTF-8 without raw control characters; \u escapes are decoded (surrogate pairs joined, a
 * lone surrogate becomes U+FFFD). Numbers are validated against the grammar and kept verbatim.
 * Limits are checked before allocating, so hostile input fails fast with -E2BIG or -EINVAL. */
#include "backend/base/json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct json_doc {
    struct arena arena; /* every node and string */
    struct json_node *root;
};

struct parser {
    const char *p, *start, *end;
    struct json_doc *doc;
    struct json_limits lim;
    size_t nodes;
    size_t depth;
    int rc;
    struct dverr *err;
};

static int fail(struct parser *ps, int code, const char *what)
{
    if (ps->rc == 0) {
        ps->rc = code;
        dverr_set(ps->err, code, "JSON: %s at byte %zu", what, (size_t)(ps->p - ps->start));
    }
    return code;
}

static void skip_ws(struct parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static struct json_node *new_node(struct parser *ps, enum json_type t)
{
    if (++ps->nodes > ps->lim.max_nodes) {
        fail(ps, -E2BIG, "too many values");
        return NULL;
    }
    struct json_node *n = arena_alloc(&ps->doc->arena, sizeof *n);
    if (!n) {
        fail(ps, -ENOMEM, "out of memory");
        return NULL;
    }
    memset(n, 0, sizeof *n);
    n->type = t;
    n->raw = ps->p;
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(const char *p, const char *end, unsigned *out)
{
    if (end - p < 4)
        return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f)); return 4;
}

/* Length of a valid UTF-8 sequence at p, 0 when invalid. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end)
{
    unsigned cp;
    size_t len;
    if (p[0] < 0x80) return 1;
    if ((p[0] & 0xe0) == 0xc0) { len = 2; cp = p[0] & 0x1f; }
    else if ((p[0] & 0xf0) == 0xe0) { len = 3; cp = p[0] & 0x0f; }
    else if ((p[0] & 0xf8) == 0xf0) { len = 4; cp = p[0] & 0x07; }
    else return 0;
    if ((size_t)(end - p) < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Parse a string at ps->p (on the opening quote); decoded into the arena. */
static int parse_string(struct parser *ps, const char **out, size_t *out_len)
{
    const char *p = ps->p + 1;
    const char *q = p;
    bool escapes = false;
    /* first pass: find the end, validate, measure */
    while (q < ps->end && *q != '"') {
        unsigned char c = (unsigned char)*q;
        if (c == '\\') {
            escapes = true;
            q += 2;
            continue;
        }
        if (c < 0x20) {
            ps->p = q;
            return fail(ps, -EINVAL, "control character in string");
        }
        if (c >= 0x80) {
            size_t l = utf8_seq((const unsigned char *)q, (const unsigned char *)ps->end);
            if (!l) {
                ps->p = q;
                return fail(ps, -EINVAL, "invalid UTF-8 in string");
            }
            q += l;
            continue;
        }
        q++;
    }
    if (q >= ps->end) {
        return fail(ps, -EINVAL, "unterminated string");
    }
    size_t raw_len = (size_t)(q - p);
    if (raw_len > ps->lim.max_string)
        return fail(ps, -E2BIG, "string too long");
    char *o = arena_bytes(&ps->doc->arena, raw_len + 1);
    if (!o)
        return fail(ps, -ENOMEM, "out of memory");
    size_t n = 0;
    if (!escapes) {
        memcpy(o, p, raw_len);
        n = raw_len;
    } else {
        for (const char *s = p; s < q;) {
            if (*s != '\\') {
                o[n++] = *s++;
                continue;
            }
            s++;
            char e = *s++;
            switch (e) {
            case '"': o[n++] = '"'; break;
            case '\\': o[n++] = '\\'; break;
            case '/': o[n++] = '/'; break;
            case 'b': o[n++] = '\b'; break;
            case 'f': o[n++] = '\f'; break;
            case 'n': o[n++] = '\n'; break;
            case 'r': o[n++] = '\r'; break;
            case 't': o[n++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (read_hex4(s, q, &cp)) {
                    ps->p = s;
                    return fail(ps, -EINVAL, "bad \\u escape");
                }
                s += 4;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    if (q - s >= 6 && s[0] == '\\' && s[1] == 'u' && read_hex4(s + 2, q, &lo) == 0 &&
                        lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                        s += 6;
                    } else {
                        cp = 0xfffd;
                    }
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    cp = 0xfffd;
                }
                /* a \u escape is 6 bytes and yields at most 3 (4 for a 12-byte pair): fits */
                n += put_utf8(o + n, cp);
                break;
            }
            default:
                ps->p = s - 1;
                return fail(ps, -EINVAL, "bad escape");
            }
        }
    }
    o[n] = '\0';
    *out = o;
    *out_len = n;
    ps->p = q + 1;
    return 0;
}

static int parse_number(struct parser *ps, struct json_node *n)
{
    const char *p = ps->p;
    if (p < ps->end && *p == '-')
        p++;
    if (p >= ps->end)
        return fail(ps, -EINVAL, "bad number");
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (p < ps->end && *p >= '0' && *p <= '9')
            p++;
    } else {
        return fail(ps, -EINVAL, "bad number");
    }
    if (p < ps->end && *p == '.') {
        p++;
        if (p >= ps->end || *p < '0' || *p > '9')
            return fail(ps, -EINVAL, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < ps->end && (*p == '+' || *p == '-'))
            p++;
        if (p >= ps->end || *p < '0' || *p > '9')
            return fail(ps, -EINVAL, "bad number");
        while (p < ps->end && *p >= '0' && *p <= '9')
            p++;
    }
    size_t len = (size_t)(p - ps->p);
    if (len > ps->lim.max_string)
        return fail(ps, -E2BIG, "number too long");
    char *s = arena_bytes(&ps->doc->arena, len + 1);
    if (!s)
        return fail(ps, -ENOMEM, "out of memory");
    memcpy(s, ps->p, len);
    s[len] = '\0';
    n->str = s;
    n->str_len = len;
    ps->p = p;
    return 0;
}

static struct json_node *parse_value(struct parser *ps);

static int parse_container(struct parser *ps, struct json_node *n, bool object)
{
    char close = object ? '}' : ']';
    if (++ps->depth > ps->lim.max_depth)
        return fail(ps, -E2BIG, "nested too deep");
    ps->p++;
    skip_ws(ps);
    struct json_node **tail = &n->child;
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
        ps->depth--;
        return 0;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        skip_ws(ps);
        if (object) {
            if (ps->p >= ps->end || *ps->p != '"')
                return fail(ps, -EINVAL, "expected a member name");
            if (parse_string(ps, &key, &key_len))
                return ps->rc;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':')
                return fail(ps, -EINVAL, "expected ':'");
            ps->p++;
            skip_ws(ps);
        }
        struct json_node *v = parse_value(ps);
        if (!v)
            return ps->rc;
        v->key = key;
        v->key_len = key_len;
        *tail = v;
        tail = &v->next;
        n->n_children++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == close) {
            ps->p++;
            break;
        }
        return fail(ps, -EINVAL, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->depth--;
    return 0;
}

static bool match_literal(struct parser *ps, const char *lit, size_t len)
{
    if ((size_t)(ps->end - ps->p) < len || memcmp(ps->p, lit, len) != 0)
        return false;
    ps->p += len;
    return true;
}

static struct json_node *parse_value(struct parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end) {
        fail(ps, -EINVAL, "unexpected end of input");
        return NULL;
    }
    struct json_node *n;
    int rc = 0;
    switch (*ps->p) {
    case '{':
    case '[':
        if (!(n = new_node(ps, *ps->p == '{' ? JSON_OBJECT : JSON_ARRAY)))
            return NULL;
        rc = parse_container(ps, n, n->type == JSON_OBJECT);
        break;
    case '"':
        if (!(n = new_node(ps, JSON_STRING)))
            return NULL;
        rc = parse_string(ps, &n->str, &n->str_len);
        break;
    case 't':
        if (!(n = new_node(ps, JSON_TRUE)))
            return NULL;
        if (!match_literal(ps, "true", 4))
            rc = fail(ps, -EINVAL, "bad literal");
        break;
    case 'f':
        if (!(n = new_node(ps, JSON_FALSE)))
            return NULL;
        if (!match_literal(ps, "false", 5))
            rc = fail(ps, -EINVAL, "bad literal");
        break;
    case 'n':
        if (!(n = new_node(ps, JSON_NULL)))
            return NULL;
        if (!match_literal(ps, "null", 4))
            rc = fail(ps, -EINVAL, "bad literal");
        break;
    default:
        if (!(n = new_node(ps, JSON_NUMBER)))
            return NULL;
        rc = parse_number(ps, n);
        break;
    }
    if (rc)
        return NULL;
    n->raw_len = (size_t)(ps->p - n->raw);
    return n;
}

int json_parse(const char *text, size_t len, const struct json_limits *lim, struct json_doc **out,
               struct dverr *err)
{
    *out = NULL;
    struct json_doc *doc = calloc(1, sizeof *doc);
    if (!doc)
        return dverr_set(err, -ENOMEM, "JSON: out of memory");
    struct parser ps = {.p = text, .start = text, .end = text + len, .doc = doc, .err = err};
    ps.lim.max_depth = lim && lim->max_depth ? lim->max_depth : 64;
    ps.lim.max_string = lim && lim->max_string ? lim->max_string : (size_t)256 << 20;
    ps.lim.max_nodes = lim && lim->max_nodes ? lim->max_nodes : 50000000;
    /* a UTF-8 byte order mark is not JSON; refuse it like any other stray byte */
    doc->root = parse_value(&ps);
    if (doc->root) {
        skip_ws(&ps);
        if (ps.p != ps.end)
            fail(&ps, -EINVAL, "trailing characters");
    }
    if (ps.rc) {
        json_doc_free(doc);
        return ps.rc;
    }
    *out = doc;
    return 0;
}

const struct json_node *json_root(const struct json_doc *doc)
{
    return doc ? doc->root : NULL;
}

void json_doc_free(struct json_doc *doc)
{
    if (!doc)
        return;
    arena_release(&doc->arena);
    free(doc);
}

const struct json_node *json_get(const struct json_node *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    size_t kl = strlen(key);
    for (const struct json_node *c = obj->child; c; c = c->next)
        if (c->key_len == kl && memcmp(c->key, key, kl) == 0)
            return c;
    return NULL;
}

const char *json_get_str(const struct json_node *obj, const char *key)
{
    const struct json_node *n = json_get(obj, key);
    return n && n->type == JSON_STRING ? n->str : NULL;
}

bool json_get_bool(const struct json_node *obj, const char *key, bool dflt)
{
    const struct json_node *n = json_get(obj, key);
    if (n && n->type == JSON_TRUE)
        return true;
    if (n && n->type == JSON_FALSE)
        return false;
    return dflt;
}
