/* fuzz_manifest: the restore-point manifest reader (manifest.h) on arbitrary bytes. An accepted
 * manifest must render, the rendering must parse back, and rendering is a fixed point
 * (render(parse(render(x))) == render(x)); the mount's backup.json must render too. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct point *p = NULL, *q = NULL;
    struct dverr e = {0};
    int rc = manifest_parse((const char *)data, size, &p, &e);
    if (rc) {
        if (rc != -EIO && rc != -EINVAL && rc != -ENOMEM && rc != -EFBIG)
            abort();
        return 0;
    }
    struct buf a = BUF_INIT, b = BUF_INIT, bj = BUF_INIT;
    if (manifest_render(p, &a, &e))
        abort();
    if (manifest_parse(a.data, a.len, &q, &e))
        abort();
    if (manifest_render(q, &b, &e) || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
        abort();
    if (point_render_backup_json(p, NULL, &bj))
        abort();
    struct point *d = point_dup(p);
    point_free(d);
    buf_release(&a);
    buf_release(&b);
    buf_release(&bj);
    point_free(p);
    point_free(q);
    return 0;
}
