/* dataverse_files: file and image columns of one environment's Web API (see dataverse.h).
 *
 * Download: GET <set>(<id>)/<column>/$value in Range chunks of FILE_CHUNK (an image at full size
 * with ?size=full; without it the service sends the thumbnail), x-ms-file-name and the size from
 * x-ms-file-size or Content-Range. Upload: one PATCH with x-ms-file-name up to FILE_CHUNK, a
 * chunked upload session above (x-ms-transfer-mode: chunked, then Content-Range parts to the
 * session's Location, which must stay on the environment's host). The caller's extra headers (the
 * business-logic bypass of a restore) go on every request of an upload. Table, column and id
 * values put into URLs must be plain names or GUIDs, else -EINVAL.
 * Threading: as dataverse.h; no shared state beyond the client. */
#include "backend/dataverse/dataverse_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FILE_CHUNK (4u << 20)

static int file_path(const struct dv_env *env, const char *entity_set, const char *id,
                     const char *column, const char *suffix, struct buf *url, struct dverr *err)
{
    if (!dv_name_safe(entity_set) || !dv_guid_valid(id) || !dv_name_safe(column))
        return dverr_set(err, -EINVAL, "file column: table, record id or column is not a plain "
                                       "name/GUID");
    struct buf path = BUF_INIT;
    int rc = buf_printf(&path, "%s(%s)/%s%s", entity_set, id, column, suffix);
    if (!rc)
        rc = dv_api_url(env, path.data, url, err);
    buf_release(&path);
    return rc;
}

/* "bytes a-b/total" -> total; -1 when absent. */
static int64_t content_range_total(const struct http_response *r, struct buf *tmp)
{
    if (!http_response_header(r, "Content-Range", tmp))
        return -1;
    const char *slash = strrchr(tmp->data, '/');
    if (!slash || !isdigit((unsigned char)slash[1]))
        return -1;
    return strtoll(slash + 1, NULL, 10);
}

int dv_file_download(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                     const char *id, const char *column, bool full_image,
                     int (*on_data)(void *ctx, const void *data, size_t len), void *ctx,
                     char **file_name, struct dverr *err)
{
    struct buf url = BUF_INIT, hv = BUF_INIT, range = BUF_INIT;
    struct http_response resp;
    int rc;
    int64_t total = -1;
    uint64_t off = 0;
    if (file_name)
        *file_name = NULL;
    http_response_init(&resp);
    if ((rc = file_path(env, entity_set, id, column, full_image ? "/$value?size=full" : "/$value",
                        &url, err)))
        goto out;
    for (;;) {
        buf_reset(&range);
        if ((rc = buf_printf(&range, "Range: bytes=%llu-%llu", (unsigned long long)off,
                             (unsigned long long)(off + FILE_CHUNK - 1))))
            goto out;
        const char *headers[] = {"Accept: */*", "OData-MaxVersion: 4.0", "OData-Version: 4.0",
                                 range.data, NULL};
        if ((rc = dv_webapi_get(c, env, url.data, headers, FILE_CHUNK + 65536, NULL, NULL, &resp,
                             err)))
            goto out;
        if (resp.status == 204 && off == 0)
            break; /* no file */
        if (resp.status != 200 && resp.status != 206) {
            if (resp.status == 416 && off > 0 && total < 0)
                break; /* past the end of a file whose size was not announced */
            rc = dv_status_error(&resp, "file download", err);
            goto out;
        }
        if (file_name && !*file_name && http_response_header(&resp, "x-ms-file-name", &hv) &&
            !(*file_name = strdup(hv.data))) {
            rc = -ENOMEM;
            goto out;
        }
        if (resp.status == 200 && off > 0) {
            rc = dverr_set(err, -EPROTO, "file download: the service ignored the range");
            goto out;
        }
        if (resp.body.len && on_data && (rc = on_data(ctx, resp.body.data, resp.body.len)))
            goto out;
        off += resp.body.len;
        if (resp.status == 200)
            break; /* the whole file in one answer */
        if (total < 0) {
            if (http_response_header(&resp, "x-ms-file-size", &hv) && isdigit((unsigned char)hv.data[0]))
                total = strtoll(hv.data, NULL, 10);
            else
                total = content_range_total(&resp, &hv);
        }
        if (total >= 0 && off >= (uint64_t)total)
            break;
        if (resp.body.len == 0) {
            rc = dverr_set(err, -EPROTO, "file download: an empty partial answer");
            goto out;
        }
        if (total < 0 && resp.body.len < FILE_CHUNK)
            break;
    }
    if (total >= 0 && off != (uint64_t)total) {
        rc = dverr_set(err, -EPROTO, "file download: got %llu bytes of %lld",
                       (unsigned long long)off, (long long)total);
        goto out;
    }
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    if (rc && file_name) {
        free(*file_name);
        *file_name = NULL;
    }
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&hv);
    buf_release(&range);
    return rc;
}

/* A file larger than one chunk: PATCH ...?x-ms-file-name=<name> with x-ms-transfer-mode: chunked
 * opens a session (200, Location, x-ms-chunk-size); each chunk is a PATCH to that Location with
 * Content-Range a-b/total (206 until the last, then 204). dv_call keeps the bearer on the
 * environment's host, so a Location elsewhere is refused. */
static int file_upload_chunked(struct dv_client *c, const struct dv_env *env, const char *url,
                               const char *file_name, const unsigned char *data, size_t len,
                               const char *const *extra, struct dverr *err)
{
    struct buf open_url = BUF_INIT, loc = BUF_INIT, range = BUF_INIT, hv = BUF_INIT;
    struct http_response resp;
    const char **open_headers = NULL, **headers = NULL;
    http_response_init(&resp);
    int rc = buf_printf(&open_url, "%s?x-ms-file-name=", url);
    if (!rc)
        rc = buf_urlencode(&open_url, file_name, false);
    if (rc)
        goto out;
    static const char *const open_base[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                                            "OData-Version: 4.0", "x-ms-transfer-mode: chunked",
                                            NULL};
    if (!(open_headers = dv_headers_join(open_base, extra))) {
        rc = -ENOMEM;
        goto out;
    }
    struct dv_call open = {.method = "PATCH", .url = open_url.data, .resource = env->api_url,
                           .headers = open_headers, .body = "", .body_len = 0,
                           .retry_unsafe = true /* an unused session is harmless */,
                           .max_response = 1 << 20};
    if ((rc = dv_call(c, &open, &resp, err)))
        goto out;
    if (resp.status != 200) {
        rc = dv_status_error(&resp, "file upload (chunked)", err);
        goto out;
    }
    if (!http_response_header(&resp, "Location", &loc) || !loc.len) {
        rc = dverr_set(err, -EPROTO, "file upload (chunked): no Location for the session");
        goto out;
    }
    uint64_t chunk = FILE_CHUNK;
    if (http_response_header(&resp, "x-ms-chunk-size", &hv) && isdigit((unsigned char)hv.data[0])) {
        unsigned long long v = strtoull(hv.data, NULL, 10);
        if (v >= 64u << 10 && v <= 64u << 20)
            chunk = v;
    }
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : (size_t)chunk;
        buf_reset(&range);
        if ((rc = buf_printf(&range, "Content-Range: bytes %zu-%zu/%zu", off, off + n - 1, len)))
            goto out;
        const char *part_base[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                                   "OData-Version: 4.0", "Content-Type: application/octet-stream",
                                   range.data, NULL};
        free(headers);
        if (!(headers = dv_headers_join(part_base, extra))) {
            rc = -ENOMEM;
            goto out;
        }
        struct dv_call part = {.method = "PATCH", .url = loc.data, .resource = env->api_url,
                               .headers = headers, .body = (const char *)data + off, .body_len = n,
                               .retry_unsafe = true /* the same bytes at the same offset */,
                               .max_response = 1 << 20};
        if ((rc = dv_call(c, &part, &resp, err)))
            goto out;
        bool last = off + n == len;
        if (last ? resp.status < 200 || resp.status >= 300 : resp.status != 206) {
            rc = dv_status_error(&resp, "file upload (chunk)", err);
            if (!rc)
                rc = dverr_set(err, -EPROTO, "file upload: HTTP %ld for a chunk", resp.status);
            goto out;
        }
        off += n;
    }
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    free(open_headers);
    free(headers);
    http_response_release(&resp);
    buf_release(&open_url);
    buf_release(&loc);
    buf_release(&range);
    buf_release(&hv);
    return rc;
}

int dv_file_upload(struct dv_client *c, const struct dv_env *env, const char *entity_set,
                   const char *id, const char *column, const char *file_name, const void *data,
                   size_t len, const char *const *extra, struct dverr *err)
{
    struct buf url = BUF_INIT, name_h = BUF_INIT;
    struct http_response resp;
    const char **headers = NULL;
    int rc;
    http_response_init(&resp);
    if ((rc = file_path(env, entity_set, id, column, "", &url, err)))
        goto out;
    if (!file_name || !*file_name) {
        rc = dverr_set(err, -EINVAL, "file upload: no file name");
        goto out;
    }
    for (const unsigned char *p = (const unsigned char *)file_name; *p; p++)
        if (*p < 0x20 || *p == 0x7f) {
            rc = dverr_set(err, -EINVAL, "file upload: the file name has control characters");
            goto out;
        }
    if (len > FILE_CHUNK) {
        rc = file_upload_chunked(c, env, url.data, file_name, data, len, extra, err);
        goto out;
    }
    if ((rc = buf_printf(&name_h, "x-ms-file-name: %s", file_name)))
        goto out;
    const char *base[] = {"Accept: application/json", "OData-MaxVersion: 4.0",
                          "OData-Version: 4.0", "Content-Type: application/octet-stream",
                          name_h.data, NULL};
    if (!(headers = dv_headers_join(base, extra))) {
        rc = -ENOMEM;
        goto out;
    }
    struct dv_call call = {.method = "PATCH", .url = url.data, .resource = env->api_url,
                           .headers = headers, .body = data, .body_len = len,
                           .retry_unsafe = true /* same bytes to the same column */,
                           .max_response = 1 << 20};
    if ((rc = dv_call(c, &call, &resp, err)))
        goto out;
    if (resp.status < 200 || resp.status >= 300)
        rc = dv_status_error(&resp, "file upload", err);
out:
    if (rc == -ENOMEM)
        dverr_set(err, rc, "out of memory");
    free(headers);
    http_response_release(&resp);
    buf_release(&url);
    buf_release(&name_h);
    return rc;
}
