/* pointdump: print a restore point's whole manifest, for integration tests and benchmarks that look
 * inside points with jq; or store it again in format 1, as a repository from before shared
 * documents has it (the test that such points still read).
 *
 *   pointdump CONFIG ENV POINT [--store-format-1 | --store-format-2 |
 *                              --store-without-definitions]
 *                                                     (POINT: a point name, or "latest")
 *
 * The point is loaded through the repository (repo_point_load: a format-3 or 2 manifest with its
 * shared objects, or a format-1 one) and printed in format 1, every field inline (manifest.h),
 * plus "tables_object" and "files_object" when the point names shared objects and "files_chunks"
 * (the ids of its file list's chunks, format 3). So tests read one shape whatever the stored
 * format and whatever the store. --store-format-1 replaces the point's manifest with that inline
 * form (repo_point_replace: sealed as any manifest in an encrypted repository); --store-format-2
 * replaces it with a format-2 one, the whole file list in one files document, as captures before
 * format 3 stored it; --store-without-definitions stores it again without its table
 * definitions index and version stamp, as a point of an older version has it. Exit status: 0, or 1 with the error on stderr. Single-threaded. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/config.h"
#include "backend/repo/manifest.h"
#include "backend/repo/repo.h"
#include "backend/repo/repo_int.h"

/* Store p again as a format-2 point: its file list as one files document (the "files" array of
 * its inline form), its manifest naming it (format 2) and its tables document. */
static int store_format_2(struct repo *r, struct point *p, struct dverr *err)
{
    struct point flat = *p;
    struct buf doc = BUF_INIT;
    flat.tables_object = flat.files_object = NULL;
    int rc = manifest_render(&flat, &doc, err);
    cJSON *root = rc ? NULL : cJSON_Parse(doc.data);
    char *files = root ? cJSON_PrintUnformatted(cJSON_GetObjectItem(root, "files")) : NULL;
    char fid[65], obj[400];
    if (!rc && !files)
        rc = dverr_set(err, -ENOMEM, "out of memory");
    if (!rc)
        rc = repo_blob_put(r, files, strlen(files), fid, err);
    if (!rc && (rc = manifest_object_name(p->env, p->name, obj, sizeof obj)))
        rc = dverr_set(err, rc, "bad point name");
    if (!rc) {
        free(p->files_object);
        p->files_object = strdup(fid);
        p->files_chunked = false;
        buf_reset(&doc);
        rc = p->files_object ? manifest_render(p, &doc, err) : -ENOMEM;
    }
    if (!rc)
        rc = repo_doc_put(r, "manifest", obj, doc.data, doc.len, err);
    free(files);
    cJSON_Delete(root);
    buf_release(&doc);
    return rc;
}

int main(int argc, char **argv)
{
    bool store_v1 = argc == 5 && strcmp(argv[4], "--store-format-1") == 0;
    bool store_v2 = argc == 5 && strcmp(argv[4], "--store-format-2") == 0;
    bool strip_defs = argc == 5 && strcmp(argv[4], "--store-without-definitions") == 0;
    if (argc != 4 && !store_v1 && !store_v2 && !strip_defs) {
        fprintf(stderr, "usage: pointdump CONFIG ENV POINT|latest [--store-format-1 | "
                        "--store-format-2 | --store-without-definitions]\n");
        return 1;
    }
    struct dverr err = {0};
    struct config *cfg = NULL;
    struct repo *r = NULL;
    struct point *p = NULL;
    struct point_summary *ps = NULL;
    size_t n = 0;
    struct buf out = BUF_INIT;
    int rc = config_load(argv[1], &cfg, &err);
    if (!rc)
        rc = repo_open(cfg, &r, &err);
    const char *name = argv[3];
    if (!rc && strcmp(name, "latest") == 0) {
        if (!(rc = repo_points(r, argv[2], &ps, &n, &err)) && n == 0)
            rc = dverr_set(&err, -ENOENT, "no point in %s", argv[2]);
        if (!rc)
            name = ps[n - 1].name;
    }
    if (!rc)
        rc = repo_point_load(r, argv[2], name, &p, &err);
    if (!rc && store_v1) {
        free(p->tables_object);
        free(p->files_object);
        p->tables_object = p->files_object = NULL;
        p->files_chunked = false;
        rc = repo_point_replace(r, p, &err);
        goto done;
    }
    if (!rc && store_v2) {
        rc = p->tables_object ? store_format_2(r, p, &err)
                              : dverr_set(&err, -EINVAL, "the point has no shared objects");
        goto done;
    }
    if (!rc && strip_defs) {
        free(p->definitions);
        free(p->metadata_stamp);
        p->definitions = p->metadata_stamp = NULL;
        rc = repo_point_replace(r, p, &err);
        goto done;
    }
    if (!rc) {
        struct point flat = *p;
        flat.tables_object = flat.files_object = NULL;
        flat.files_chunked = false;
        rc = manifest_render(&flat, &out, &err);
    }
    if (!rc) {
        cJSON *doc = cJSON_Parse(out.data);
        if (doc && p->tables_object) {
            cJSON_AddStringToObject(doc, "tables_object", p->tables_object);
            cJSON_AddStringToObject(doc, "files_object", p->files_object);
        }
        cJSON *chunks = doc && p->files_chunked ? cJSON_AddArrayToObject(doc, "files_chunks") : NULL;
        for (size_t k = 0; chunks && k < p->n_files_chunks; k++)
            cJSON_AddItemToArray(chunks, cJSON_CreateString(p->files_chunks[k]));
        char *text = doc ? cJSON_PrintUnformatted(doc) : NULL;
        if (text)
            printf("%s\n", text);
        else
            rc = dverr_set(&err, -ENOMEM, "out of memory");
        free(text);
        cJSON_Delete(doc);
    }
done:
    if (rc)
        fprintf(stderr, "pointdump: %s\n", dverr_msg(&err));
    buf_release(&out);
    point_free(p);
    point_summaries_free(ps, n);
    repo_free(r);
    config_free(cfg);
    return rc ? 1 : 0;
}
