/* objstore: opening a store by location and the helpers every driver shares.
 * A location without a scheme (or file://) is a local directory; azure:// and s3:// go to the
 * object-storage drivers (objstore_azure.c, objstore_s3.c). Thread-safe: no shared state. */
#include "backend/objstore.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool objstore_name_ok(const char *name)
{
    if (!name || !*name || name[0] == '/' || strlen(name) > 1024)
        return false;
    const char *seg = name;
    for (const char *p = name;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (*p == '\0')
                return true;
            seg = p + 1;
            continue;
        }
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
}

int objstore_open(const char *location, const struct config *cfg, struct objstore **out,
                  struct dverr *err)
{
    *out = NULL;
    if (!location || !*location)
        return dverr_set(err, -EINVAL, "no repository location configured");
    if (strncmp(location, "azure://", 8) == 0)
        return objstore_azure_open(location, cfg, out, err);
    if (strncmp(location, "s3://", 5) == 0)
        return objstore_s3_open(location, cfg, out, err);
    if (strncmp(location, "file://", 7) == 0)
        return objstore_dir_open(location + 7, out, err);
    if (strstr(location, "://"))
        return dverr_set(err, -ENOTSUP, "%s: unknown repository kind (use a path, file://, "
                         "azure:// or s3://)", location);
    return objstore_dir_open(location, out, err);
}

void objstore_free(struct objstore *s)
{
    if (!s)
        return;
    if (s->ops && s->ops->free)
        s->ops->free(s->impl);
    free(s->location);
    free(s->local_dir);
    free(s);
}
