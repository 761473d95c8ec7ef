/* line: dvsim's records are flat JSON objects kept as canonical lines (the format of
 * backend/base/record.h: primary key first, the other members sorted by key bytes, compact, numbers as
 * stored). This module scans such lines without building a tree (fast enough to serve well over
 * 50,000 records/s), projects them for a response ($select, annotations), and builds and renders
 * member lists for writes. Values are scalars only; nested values are refused (-EINVAL).
 * Also small helpers: formatted values, amounts in the base currency, URL encoding, GUIDs, the
 * PRNG. Thread-safe. */
#include "tools/dvsim/dvsim.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *skip_string(const char *p, const char *end)
{
    /* p at the opening quote; returns the char after the closing quote or NULL */
    p++;
    while (p < end) {
        if (*p == '\\') {
            p += 2;
            continue;
        }
        if (*p == '"')
            return p + 1;
        p++;
    }
    return NULL;
}

int dvline_scan(const char *s, size_t n, struct lmember *m, size_t max)
{
    const char *p = s, *end = s + n;
    size_t count = 0;
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (p >= end || *p != '{')
        return -EINVAL;
    p++;
    while (p < end && isspace((unsigned char)*p))
        p++;
    if (p < end && *p == '}')
        return 0;
    for (;;) {
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p >= end || *p != '"')
            return -EINVAL;
        const char *k = p + 1;
        const char *q = skip_string(p, end);
        if (!q)
            return -EINVAL;
        size_t klen = (size_t)(q - 1 - k);
        p = q;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p >= end || *p != ':')
            return -EINVAL;
        p++;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p >= end)
            return -EINVAL;
        const char *v = p;
        if (*p == '"') {
            p = skip_string(p, end);
            if (!p)
                return -EINVAL;
        } else if (*p == '{' || *p == '[') {
            return -EINVAL;
        } else {
            while (p < end && *p != ',' && *p != '}' && !isspace((unsigned char)*p))
                p++;
            if (p == v)
                return -EINVAL;
        }
        if (count < max) {
            m[count].key = k;
            m[count].key_len = klen;
            m[count].val = v;
            m[count].val_len = (size_t)(p - v);
        }
        count++;
        while (p < end && isspace((unsigned char)*p))
            p++;
        if (p >= end)
            return -EINVAL;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p == '}')
            break;
        return -EINVAL;
    }
    return count > max ? -E2BIG : (int)count;
}

const struct lmember *dvline_member(const struct lmember *m, int n, const char *key)
{
    size_t kl = strlen(key);
    for (int i = 0; i < n; i++)
        if (m[i].key_len == kl && memcmp(m[i].key, key, kl) == 0)
            return &m[i];
    return NULL;
}

/* Decode a JSON string value (raw, with quotes) into out. */
void dvline_unquote(const char *raw, size_t len, struct buf *out)
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

void srec_init(struct rec *r)
{
    r->m = NULL;
    r->n = r->cap = 0;
}

void srec_release(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->m[i].key);
        free(r->m[i].val);
    }
    free(r->m);
    srec_init(r);
}

static int srec_find(const struct rec *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->m[i].key, key) == 0)
            return (int)i;
    return -1;
}

const char *srec_get(const struct rec *r, const char *key)
{
    int i = srec_find(r, key);
    return i < 0 ? NULL : r->m[i].val;
}

static int srec_set_n(struct rec *r, const char *key, size_t key_len, const char *val, size_t val_len)
{
    char kbuf[256];
    if (key_len >= sizeof kbuf)
        return -EINVAL;
    memcpy(kbuf, key, key_len);
    kbuf[key_len] = '\0';
    int i = srec_find(r, kbuf);
    if (!val) {
        if (i >= 0) {
            free(r->m[i].key);
            free(r->m[i].val);
            r->m[i] = r->m[--r->n];
        }
        return 0;
    }
    char *v = strndup(val, val_len);
    if (!v)
        return -ENOMEM;
    if (i >= 0) {
        free(r->m[i].val);
        r->m[i].val = v;
        return 0;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 32;
        struct rec_member *m = realloc(r->m, cap * sizeof *m);
        if (!m) {
            free(v);
            return -ENOMEM;
        }
        r->m = m;
        r->cap = cap;
    }
    r->m[r->n].key = strndup(key, key_len);
    if (!r->m[r->n].key) {
        free(v);
        return -ENOMEM;
    }
    r->m[r->n].val = v;
    r->n++;
    return 0;
}

int srec_set(struct rec *r, const char *key, const char *val, size_t val_len)
{
    return srec_set_n(r, key, strlen(key), val, val_len);
}

int srec_set_str(struct rec *r, const char *key, const char *s)
{
    if (!s)
        return srec_set(r, key, "null", 4);
    struct buf b = BUF_INIT;
    int rc = buf_add_json_string(&b, s, strlen(s));
    if (!rc)
        rc = srec_set(r, key, b.data, b.len);
    buf_release(&b);
    return rc;
}

int srec_from_line(struct rec *r, const char *line, size_t len)
{
    struct lmember m[128];
    int n = dvline_scan(line, len, m, 128);
    if (n < 0)
        return n;
    for (int i = 0; i < n; i++) {
        int rc = srec_set_n(r, m[i].key, m[i].key_len, m[i].val, m[i].val_len);
        if (rc)
            return rc;
    }
    return 0;
}

static int member_cmp(const void *a, const void *b)
{
    const struct rec_member *x = a, *y = b;
    return strcmp(x->key, y->key);
}

int srec_render(struct rec *r, const char *pk, struct buf *out)
{
    qsort(r->m, r->n, sizeof r->m[0], member_cmp);
    int rc = buf_addch(out, '{');
    bool first = true;
    int pki = pk ? srec_find(r, pk) : -1;
    if (pki >= 0) {
        rc = rc ? rc : buf_add_json_string(out, r->m[pki].key, strlen(r->m[pki].key));
        rc = rc ? rc : buf_addch(out, ':');
        rc = rc ? rc : buf_addstr(out, r->m[pki].val);
        first = false;
    }
    for (size_t i = 0; i < r->n && !rc; i++) {
        if ((int)i == pki)
            continue;
        if (!first)
            rc = buf_addch(out, ',');
        first = false;
        rc = rc ? rc : buf_add_json_string(out, r->m[i].key, strlen(r->m[i].key));
        rc = rc ? rc : buf_addch(out, ':');
        rc = rc ? rc : buf_addstr(out, r->m[i].val);
    }
    return rc ? rc : buf_addch(out, '}');
}

/* ---- annotations and projection ---- */

void dvline_annot_parse(struct annot_filter *f, const char *value)
{
    f->n = 0;
    if (!value)
        return;
    const char *p = value;
    while (*p && f->n < 8) {
        while (*p == ' ' || *p == ',' || *p == '"')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != '"')
            p++;
        size_t len = (size_t)(p - s);
        while (len && s[len - 1] == ' ')
            len--;
        if (len && len < sizeof f->patterns[0]) {
            memcpy(f->patterns[f->n], s, len);
            f->patterns[f->n][len] = '\0';
            f->n++;
        }
    }
}

bool dvline_annot_match(const struct annot_filter *f, const char *name, size_t len)
{
    for (int i = 0; i < f->n; i++) {
        const char *pat = f->patterns[i];
        size_t pl = strlen(pat);
        if (pl && pat[pl - 1] == '*') {
            if (len >= pl - 1 && memcmp(name, pat, pl - 1) == 0)
                return true;
        } else if (pl == len && memcmp(name, pat, len) == 0) {
            return true;
        }
    }
    return false;
}

int dvline_project(const struct projection *p, const char *line, size_t len, struct buf *out)
{
    if (p->n_select < 0 && p->all_annotations)
        return buf_add(out, line, len);
    struct lmember m[128];
    int n = dvline_scan(line, len, m, 128);
    if (n < 0)
        return n;
    size_t pklen = strlen(p->t->pk);
    int rc = buf_addch(out, '{');
    bool first = true;
    for (int i = 0; i < n && !rc; i++) {
        const char *k = m[i].key;
        size_t kl = m[i].key_len;
        bool keep;
        if ((kl == pklen && memcmp(k, p->t->pk, kl) == 0) ||
            (kl == 11 && memcmp(k, "@odata.etag", 11) == 0)) {
            keep = true;
        } else {
            const char *at = memchr(k + 1, '@', kl - 1);
            size_t base = at ? (size_t)(at - k) : kl;
            keep = p->n_select < 0;
            for (int j = 0; j < p->n_select && !keep; j++)
                keep = p->select_len[j] == base && memcmp(p->select[j], k, base) == 0;
            if (keep && at)
                keep = dvline_annot_match(&p->annot, at + 1, kl - base - 1);
        }
        if (!keep)
            continue;
        if (!first)
            rc = buf_addch(out, ',');
        first = false;
        rc = rc ? rc : buf_addch(out, '"');
        rc = rc ? rc : buf_add(out, k, kl);
        rc = rc ? rc : buf_add(out, "\":", 2);
        rc = rc ? rc : buf_add(out, m[i].val, m[i].val_len);
    }
    return rc ? rc : buf_addch(out, '}');
}

/* ---- formatted values ---- */

static void group_digits(const char *digits, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        if (i && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* num rounded to `places` decimals, with thousands separators, into out. */
static void fmt_fixed(const char *num, int places, const char *prefix, char *out, size_t n)
{
    bool neg = *num == '-';
    if (neg || *num == '+')
        num++;
    char digits[80];
    size_t ilen = strcspn(num, ".eE");
    if (ilen == 0 || ilen > 40) {
        snprintf(out, n, "%s%s", prefix, num);
        return;
    }
    memcpy(digits, num, ilen);
    const char *frac = num[ilen] == '.' ? num + ilen + 1 : "";
    size_t fl = strspn(frac, "0123456789");
    for (int i = 0; i < places; i++)
        digits[ilen + (size_t)i] = (size_t)i < fl ? frac[i] : '0';
    size_t total = ilen + (size_t)places;
    if ((size_t)places < fl && frac[places] >= '5') {
        size_t i = total;
        while (i > 0) {
            i--;
            if (digits[i] == '9') {
                digits[i] = '0';
                continue;
            }
            digits[i]++;
            break;
        }
        if (i == 0 && digits[0] == '0') { /* carried out of the top digit */
            memmove(digits + 1, digits, total);
            digits[0] = '1';
            total++;
            ilen++;
        }
    }
    char grouped[120];
    group_digits(digits, ilen, grouped, sizeof grouped);
    if (places)
        snprintf(out, n, "%s%s%s.%.*s", neg ? "-" : "", prefix, grouped, places, digits + ilen);
    else
        snprintf(out, n, "%s%s%s", neg ? "-" : "", prefix, grouped);
}

void dvsim_fmt_money(const char *num, char *out, size_t n)
{
    fmt_fixed(num, 2, "$", out, n);
}

void dvsim_fmt_number(const char *num, char *out, size_t n)
{
    const char *dot = strchr(num, '.');
    int places = 0;
    if (dot) {
        places = (int)strspn(dot + 1, "0123456789");
        if (places > 10)
            places = 10;
    }
    fmt_fixed(num, places, "", out, n);
}

void dvsim_fmt_datetime(const char *iso, char *out, size_t n)
{
    int y, mo, d, h, mi, s;
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &s) != 6) {
        snprintf(out, n, "%s", iso);
        return;
    }
    int h12 = h % 12 == 0 ? 12 : h % 12;
    snprintf(out, n, "%d/%d/%d %d:%02d %s", mo, d, y, h12, mi, h < 12 ? "AM" : "PM");
}

void dvsim_fmt_dateonly(const char *iso, char *out, size_t n)
{
    int y, mo, d;
    if (sscanf(iso, "%4d-%2d-%2d", &y, &mo, &d) != 3) {
        snprintf(out, n, "%s", iso);
        return;
    }
    snprintf(out, n, "%d/%d/%d", mo, d, y);
}

/* ---- URLs, GUIDs, randomness, time ---- */

int dvsim_url_encode(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = buf_reserve(b, n * 3);
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            rc = buf_addch(b, (char)c);
        } else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            rc = buf_add(b, e, 3);
        }
    }
    return rc;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t dvsim_url_decode(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            *o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
            p += 2;
        } else if (*p == '+') {
            *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return (size_t)(o - s);
}

uint64_t dvsim_splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void dvsim_guid(uint64_t a, uint64_t b, char out[37])
{
    a = (a & ~0xf000ull) | 0x4000ull;                      /* version 4 */
    b = (b & ~(3ull << 62)) | (2ull << 62);                /* variant 10 */
    snprintf(out, 37, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32), (unsigned)((a >> 16) & 0xffff),
             (unsigned)(a & 0xffff), (unsigned)(b >> 48), (unsigned long long)(b & 0xffffffffffffull));
}

bool dvsim_guid_valid(const char *s, size_t n)
{
    if (n != 36)
        return false;
    for (size_t i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return false;
        } else if (!isxdigit((unsigned char)s[i])) {
            return false;
        }
    }
    return true;
}

void dvsim_iso_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int dvsim_money_base(const char *money, const char *rate, char *out, size_t n)
{
    char *e1, *e2;
    long double m = strtold(money, &e1), r = strtold(rate, &e2);
    if (e1 == money || *e1 || e2 == rate || *e2 || r == 0)
        return -EINVAL;
    snprintf(out, n, "%.2Lf", m / r);
    return 0;
}
