/* config: STUB until the transport work lands (issue 3). */
#include "backend/config.h"
#include <errno.h>
#include <stdlib.h>
int config_load(const char *path, struct config **out, struct dverr *err)
{
    *out = NULL;
    return dverr_set(err, -ENOSYS, "configuration is not implemented yet");
}
void config_free(struct config *cfg) { free(cfg); }
