/* capture_meta: the environment's table definitions for one pass, read from the service once per
 * change (capture_int.h).
 *
 * A point keeps, next to its tables, the service's version of the definitions it was taken with
 * (point.metadata_stamp: a RetrieveMetadataChanges ServerVersionStamp) and an index of every
 * table the environment defined (point.definitions, a blob):
 *   {"tables":[{"name","set","pk","id":MetadataId|null,"schema":blob id|null[,"definition":{..}]}]},
 * by name, where "schema" is the table's schema document in that point (null when the point has
 * none: a table left out by the configuration, or one that was not read this time), and
 * "definition" the schema document itself for a captured table that was not read (it failed, or
 * the capture never reads such a table), so its definition is not asked for again either. The next pass asks the
 * service what changed since the stamp (one request; dv_metadata_changes) and builds its table
 * list from the index: the schema documents of the tables it captures (parsed back with
 * dv_table_from_schema, or the inline definition), the name, entity set and key of the others,
 * and a fresh read
 * (dv_table_get, one request each) of the tables the answer names as added or changed, of those
 * whose table, column or relationship ids it lists as deleted (a table no longer defined drops
 * out), and of captured tables without a document. Every definition is read again
 * (dv_tables_list) when there is no stamp (the first pass, points of older versions), when the
 * stamp has expired (-ESTALE), when the changes call or a read of one table fails, when a
 * document does not parse, or when more than a quarter of the tables changed (one list read is
 * then cheaper). The stamp for a full read is taken first (RetrieveMetadataChanges without a
 * stamp), so a change made during the read is reported again on the next pass; when that call
 * fails, or the changes call failed just before, the pass goes on without a stamp and the next
 * one reads everything again.
 * Threading: called on capture_env's thread, before the workers start and after they are
 * joined. */
#include "backend/engine/capture_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/base/log.h"

struct table_list {
    struct dv_table *v;
    size_t n, cap;
};

static struct dv_table *list_add(struct table_list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        struct dv_table *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    memset(&l->v[l->n], 0, sizeof l->v[l->n]);
    return &l->v[l->n++];
}

static bool in_list(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* Whether text holds one of the (lower-case) ids, whatever the case it has them in. */
static bool names_deleted_id(const char *text, size_t len, const struct dv_metadata_changes *ch)
{
    if (!ch->n_deleted_ids || !text)
        return false;
    for (size_t i = 0; i + 36 <= len; i++) {
        if (!isxdigit((unsigned char)text[i]) || (i && isxdigit((unsigned char)text[i - 1])))
            continue;
        char id[37];
        for (size_t k = 0; k < 36; k++)
            id[k] = (char)tolower((unsigned char)text[i + k]);
        id[36] = '\0';
        if (in_list(ch->deleted_ids, ch->n_deleted_ids, id))
            return true;
    }
    return false;
}

static bool selected(const struct config *cfg, const char *name)
{
    return !cfg || config_table_selected(cfg, name);
}

/* Every definition read again; *stamp (may stay NULL) taken first, unless the changes call has
 * just failed (no_version: it would most likely fail again, after as many retries). */
static int read_all(struct cap *cap, bool no_version, struct dv_table **tables, size_t *n,
                    char **stamp, struct dverr *err)
{
    struct dv_metadata_changes now = {0};
    struct dverr e = {0};
    if (no_version) {
        log_warn("%s: the next pass reads every table definition again", cap->env->unique_name);
        return dv_tables_list(cap->dv, cap->env, tables, n, err);
    }
    int rc = dv_metadata_changes(cap->dv, cap->env, NULL, &now, &e);
    if (rc == -ECANCELED || rc == -ENOMEM)
        return dverr_set(err, rc, "%s", dverr_msg(&e));
    if (rc)
        log_warn("%s: the table definitions' version could not be read (%s); the next pass "
                 "reads every definition again", cap->env->unique_name, dverr_msg(&e));
    else
        *stamp = now.stamp, now.stamp = NULL;
    dv_metadata_changes_release(&now);
    return dv_tables_list(cap->dv, cap->env, tables, n, err);
}

/* The previous point's index into text, parsed (the nodes' raw text points into text). */
static int load_index(struct cap *cap, struct buf *text, struct json_doc **doc, struct dverr *err)
{
    *doc = NULL;
    int rc = repo_blob_get(cap->repo, cap->prev->definitions, text, err);
    if (!rc)
        rc = json_parse(text->data, text->len, NULL, doc, err);
    const struct json_node *t = rc ? NULL : json_get(json_root(*doc), "tables");
    if (!rc && (!t || t->type != JSON_ARRAY))
        rc = dverr_set(err, -EIO, "the definitions index has no \"tables\" array");
    return rc;
}

/* The tables from the index and what changed since (see the note at the top): 0 with the list,
 * 1 when every definition must be read again (why in err), <0 on a failure of the pass. */
static int read_changes(struct cap *cap, const struct config *cfg,
                        const struct dv_metadata_changes *ch, const struct json_node *entries,
                        struct table_list *out, struct dverr *err)
{
    char **fetch = NULL;
    size_t n_fetch = 0, n_entries = 0, from_repo = 0;
    struct buf doc = BUF_INIT;
    int rc = 0;
    for (const struct json_node *e = entries->child; e; e = e->next)
        n_entries++;
    if (!(fetch = calloc(ch->n_changed + n_entries + 1, sizeof *fetch)))
        return -ENOMEM;
    for (size_t i = 0; i < ch->n_changed; i++)
        if (!in_list(fetch, n_fetch, ch->changed[i]))
            fetch[n_fetch++] = ch->changed[i];
    for (const struct json_node *e = entries->child; e && rc == 0; e = e->next) {
        const char *name = json_get_str(e, "name"), *set = json_get_str(e, "set"),
                   *pk = json_get_str(e, "pk"), *id = json_get_str(e, "id"),
                   *schema = json_get_str(e, "schema");
        const struct json_node *inline_def = json_get(e, "definition");
        if (inline_def && inline_def->type != JSON_OBJECT)
            inline_def = NULL;
        if (!name || !set || in_list(fetch, n_fetch, name))
            continue;
        if (id && names_deleted_id(id, strlen(id), ch)) {
            fetch[n_fetch++] = (char *)name; /* gone, most likely: the read says */
            continue;
        }
        if (!selected(cfg, name)) { /* listed only: its name, set and key */
            struct dv_table *t = list_add(out);
            if (!t || !(t->logical_name = strdup(name)) || !(t->entity_set = strdup(set)) ||
                (pk && !(t->primary_id = strdup(pk))) || (id && !(t->metadata_id = strdup(id))))
                rc = -ENOMEM;
            continue;
        }
        if (!schema && !inline_def) {
            fetch[n_fetch++] = (char *)name;
            continue;
        }
        buf_reset(&doc);
        struct dverr e2 = {0};
        if (!schema) {
            if ((rc = buf_add(&doc, inline_def->raw, inline_def->raw_len)))
                break;
        } else if ((rc = repo_blob_get(cap->repo, schema, &doc, &e2))) {
            if (rc == -ENOMEM || rc == -ECANCELED)
                break;
            rc = dverr_set(err, 1, "the schema document of %s could not be read: %s", name,
                           dverr_msg(&e2));
            break;
        }
        if (names_deleted_id(doc.data, doc.len, ch)) { /* one of its columns or relationships */
            fetch[n_fetch++] = (char *)name;
            continue;
        }
        struct dv_table *t = list_add(out);
        if (!t) {
            rc = -ENOMEM;
            break;
        }
        if ((rc = dv_table_from_schema(doc.data, doc.len, t, &e2))) {
            out->n--;
            if (rc != -ENOMEM)
                rc = dverr_set(err, 1, "the schema document of %s does not parse: %s", name,
                               dverr_msg(&e2));
            break;
        }
        from_repo++;
    }
    size_t n_all = n_entries + ch->n_changed;
    if (rc == 0 && n_fetch > 16 && 4 * n_fetch > n_all)
        rc = dverr_set(err, 1, "%zu of the tables' definitions changed", n_fetch);
    size_t read = 0, gone = 0;
    for (size_t i = 0; i < n_fetch && rc == 0; i++) {
        struct dv_table *t = list_add(out);
        if (!t) {
            rc = -ENOMEM;
            break;
        }
        struct dverr e2 = {0};
        rc = dv_table_get(cap->dv, cap->env, fetch[i], t, &e2);
        if (rc == -ENOENT) {
            out->n--;
            gone++;
            log_info("%s: table %s is no longer defined", cap->env->unique_name, fetch[i]);
            rc = 0;
        } else if (rc == -ENOMEM || rc == -ECANCELED) {
            out->n--;
            dverr_set(err, rc, "%s", dverr_msg(&e2));
        } else if (rc) {
            out->n--;
            rc = dverr_set(err, 1, "the definition of %s could not be read: %s", fetch[i],
                           dverr_msg(&e2));
        } else {
            read++;
        }
    }
    if (rc == 0)
        log_info("%s: table definitions: %zu from the repository, %zu read again (changed "
                 "since the last pass), %zu no longer defined", cap->env->unique_name, from_repo,
                 read, gone);
    free(fetch);
    buf_release(&doc);
    return rc;
}

int capture_definitions(struct cap *cap, const struct config *cfg, struct dv_table **tables,
                        size_t *n, struct dverr *err)
{
    struct dv_metadata_changes ch = {0};
    struct json_doc *index = NULL;
    struct buf index_text = BUF_INIT;
    struct table_list list = {0};
    struct dverr why = {0};
    bool changes_failed = false;
    int rc = 0;
    *tables = NULL;
    *n = 0;
    cap->metadata_stamp = NULL;
    if (!cap->prev || !cap->prev->definitions || !cap->prev->metadata_stamp) {
        dverr_set(&why, 1, "the last point has no version of them");
        goto full;
    }
    if ((rc = load_index(cap, &index_text, &index, &why))) {
        if (rc == -ENOMEM || rc == -ECANCELED)
            goto out;
        goto full;
    }
    rc = dv_metadata_changes(cap->dv, cap->env, cap->prev->metadata_stamp, &ch, &why);
    if (rc == -ENOMEM || rc == -ECANCELED) {
        dverr_set(err, rc, "%s", dverr_msg(&why));
        goto out;
    }
    changes_failed = rc && rc != -ESTALE;
    if (rc)
        goto full;
    rc = read_changes(cap, cfg, &ch, json_get(json_root(index), "tables"), &list, &why);
    if (rc < 0) {
        dverr_set(err, rc, "%s", dverr_msg(&why));
        goto out;
    }
    if (rc > 0)
        goto full;
    if ((rc = dv_tables_link(list.v, list.n))) {
        dverr_set(err, rc, "out of memory");
        goto out;
    }
    cap->metadata_stamp = ch.stamp;
    ch.stamp = NULL;
    *tables = list.v;
    *n = list.n;
    list.v = NULL;
    list.n = 0;
    goto out;
full:
    log_info("%s: reading every table definition: %s", cap->env->unique_name, dverr_msg(&why));
    for (size_t i = 0; i < list.n; i++)
        dv_table_release(&list.v[i]);
    list.n = 0;
    rc = read_all(cap, changes_failed, tables, n, &cap->metadata_stamp, err);
out:
    for (size_t i = 0; i < list.n; i++)
        dv_table_release(&list.v[i]);
    free(list.v);
    dv_metadata_changes_release(&ch);
    json_doc_free(index);
    buf_release(&index_text);
    return rc;
}

static int add_member(struct buf *b, const char *key, const char *v, bool comma)
{
    int rc = buf_printf(b, "%s\"%s\":", comma ? "," : "", key);
    if (!rc)
        rc = v ? buf_add_json_string(b, v, strlen(v)) : buf_addstr(b, "null");
    return rc;
}

int capture_definitions_index(struct cap *cap, const struct config *cfg,
                              const struct dv_table *tables, size_t n, struct point *p,
                              struct dverr *err)
{
    struct buf b = BUF_INIT;
    char id[65];
    int rc = 0;
    if (!cap->metadata_stamp)
        return 0; /* no version: the next pass reads everything again */
    rc = buf_addstr(&b, "{\"tables\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        const struct dv_table *t = &tables[i];
        if (!t->logical_name || !t->entity_set)
            continue;
        const char *schema = NULL;
        for (size_t k = 0; k < cap->n_jobs; k++)
            if (cap->jobs[k].t == t && cap->jobs[k].ok)
                schema = cap->jobs[k].out.schema;
        rc = buf_addstr(&b, b.data[b.len - 1] == '[' ? "{" : ",{");
        if (!rc)
            rc = add_member(&b, "name", t->logical_name, false);
        if (!rc)
            rc = add_member(&b, "set", t->entity_set, true);
        if (!rc)
            rc = add_member(&b, "pk", t->primary_id, true);
        if (!rc)
            rc = add_member(&b, "id", t->metadata_id, true);
        if (!rc)
            rc = add_member(&b, "schema", schema, true);
        if (!rc && !schema && t->schema_json && !t->definition_error && selected(cfg, t->logical_name))
            rc = buf_printf(&b, ",\"definition\":%s", t->schema_json);
        if (!rc)
            rc = buf_addch(&b, '}');
    }
    if (!rc)
        rc = buf_addstr(&b, "]}");
    if (rc) {
        rc = dverr_set(err, -ENOMEM, "out of memory");
        goto out;
    }
    struct dverr pe = {0};
    if ((rc = repo_blob_put(cap->repo, b.data, b.len, id, &pe))) {
        if (rc == -ENOMEM || rc == -ECANCELED) {
            dverr_set(err, rc, "%s", dverr_msg(&pe));
            goto out;
        }
        /* the point stands without it: the next pass reads every definition */
        log_warn("%s: the table definitions index could not be stored (%s); the next pass "
                 "reads every definition again", cap->env->unique_name, dverr_msg(&pe));
        rc = 0;
        goto out;
    }
    if (!(p->definitions = strdup(id)) || !(p->metadata_stamp = strdup(cap->metadata_stamp)))
        rc = dverr_set(err, -ENOMEM, "out of memory");
out:
    buf_release(&b);
    return rc;
}
