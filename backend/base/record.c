/* record: canonical record lines and the table-file format (see record.h).
 *
 * Rendering sorts an object's members by key bytes (the primary key first at the top level) with
 * a small array of pointers per object; values are emitted from the parse tree: numbers and
 * literals verbatim, strings re-encoded by buf_add_json_string. When a key appears twice the last
 * one wins, as in most JSON readers. No shared state; thread-safe. */
#include "backend/base/record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int key_cmp(const void *a, const void *b)
{
    const struct json_node *x = *(const struct json_node *const *)a;
    const struct json_node *y = *(const struct json_node *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

static int render_value(const struct json_node *v, const char *pk, struct buf *out);

static int render_object(const struct json_node *obj, const char *pk, struct buf *out)
{
    const struct json_node *small[64];
    const struct json_node **m = small;
    size_t n = 0, pk_len = pk ? strlen(pk) : 0;
    int rc = 0;
    if (obj->n_children > 64 && !(m = malloc(obj->n_children * sizeof *m)))
        return -ENOMEM;
    for (const struct json_node *c = obj->child; c; c = c->next)
        m[n++] = c;
    qsort(m, n, sizeof *m, key_cmp);
    /* of members with the same key, keep the one that came last in the input */
    size_t w = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        const struct json_node *last = m[i];
        while (j + 1 < n && key_cmp(&m[j], &m[j + 1]) == 0) {
            j++;
            if (m[j]->raw > last->raw)
                last = m[j];
        }
        m[w++] = last;
        i = j + 1;
    }
    n = w;
    if ((rc = buf_addch(out, '{')))
        goto out;
    bool first = true;
    const struct json_node *pkn = NULL;
    if (pk) {
        for (size_t i = 0; i < n; i++)
            if (m[i]->key_len == pk_len && memcmp(m[i]->key, pk, pk_len) == 0)
                pkn = m[i];
        if (pkn) {
            if ((rc = buf_add_json_string(out, pkn->key, pkn->key_len)) ||
                (rc = buf_addch(out, ':')) || (rc = render_value(pkn, NULL, out)))
                goto out;
            first = false;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i] == pkn)
            continue;
        if ((!first && (rc = buf_addch(out, ','))) ||
            (rc = buf_add_json_string(out, m[i]->key, m[i]->key_len)) ||
            (rc = buf_addch(out, ':')) || (rc = render_value(m[i], NULL, out)))
            goto out;
        first = false;
    }
    rc = buf_addch(out, '}');
out:
    if (m != small)
        free(m);
    return rc;
}

static int render_value(const struct json_node *v, const char *pk, struct buf *out)
{
    switch (v->type) {
    case JSON_NULL: return buf_add(out, "null", 4);
    case JSON_TRUE: return buf_add(out, "true", 4);
    case JSON_FALSE: return buf_add(out, "false", 5);
    case JSON_NUMBER: return buf_add(out, v->str, v->str_len);
    case JSON_STRING: return buf_add_json_string(out, v->str, v->str_len);
    case JSON_OBJECT: return render_object(v, pk, out);
    case JSON_ARRAY: {
        int rc = buf_addch(out, '[');
        for (const struct json_node *c = v->child; c && !rc; c = c->next) {
            if (c != v->child)
                rc = buf_addch(out, ',');
            if (!rc)
                rc = render_value(c, NULL, out);
        }
        return rc ? rc : buf_addch(out, ']');
    }
    }
    return -EINVAL;
}

int record_render(const struct json_node *obj, const char *primary_key, struct buf *out)
{
    if (!obj || obj->type != JSON_OBJECT)
        return -EINVAL;
    size_t mark = out->len;
    int rc = render_object(obj, primary_key, out);
    if (rc) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
    }
    return rc;
}

int record_canonicalize(const char *json, size_t len, const char *primary_key, struct buf *out,
                        struct dverr *err)
{
    struct json_doc *doc;
    int rc = json_parse(json, len, NULL, &doc, err);
    if (rc)
        return rc;
    rc = record_render(json_root(doc), primary_key, out);
    if (rc == -EINVAL)
        dverr_set(err, rc, "record is not a JSON object");
    json_doc_free(doc);
    return rc;
}

const char *record_key(const struct json_node *obj, const char *primary_key, size_t *key_len)
{
    const struct json_node *k = json_get(obj, primary_key);
    if (!k || k->type != JSON_STRING)
        return NULL;
    if (key_len)
        *key_len = k->str_len;
    return k->str;
}

const char *record_row_key(const struct json_node *obj, const char *primary_key,
                           const char *partition_column, struct buf *scratch, size_t *key_len)
{
    size_t id_len;
    const char *id = record_key(obj, primary_key, &id_len);
    if (!id || !partition_column)
        goto plain;
    const struct json_node *p = json_get(obj, partition_column);
    if (!p || p->type != JSON_STRING || p->str_len == 0 ||
        (p->str_len == id_len && memcmp(p->str, id, id_len) == 0))
        goto plain;
    buf_reset(scratch);
    if (buf_add(scratch, id, id_len) || buf_addch(scratch, RECORD_PARTITION_SEP) ||
        buf_add(scratch, p->str, p->str_len))
        return NULL;
    if (key_len)
        *key_len = scratch->len;
    return scratch->data;
plain:
    if (id && key_len)
        *key_len = id_len;
    return id;
}

size_t record_key_id_len(const char *key, size_t key_len)
{
    const char *sep = memchr(key, RECORD_PARTITION_SEP, key_len);
    return sep ? (size_t)(sep - key) : key_len;
}

uint64_t table_file_size(uint64_t n, uint64_t line_bytes)
{
    if (n == 0)
        return sizeof TABLE_FILE_EMPTY - 1;
    return (sizeof TABLE_FILE_HEAD - 1) + line_bytes + (n - 1) * (sizeof TABLE_FILE_SEP - 1) +
           (sizeof TABLE_FILE_TAIL - 1);
}
