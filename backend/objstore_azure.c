/* objstore_azure: STUB until issue 6 lands. */
#include "backend/objstore.h"
#include <errno.h>
int objstore_azure_open(const char *location, const struct config *cfg, struct objstore **out,
                       struct dverr *err)
{
    *out = NULL;
    return dverr_set(err, -ENOTSUP, "%s: this repository kind is not built yet", location);
}
