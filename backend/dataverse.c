/* dataverse: STUB until the client work lands (issue 3). */
#include "backend/dataverse.h"
#include <errno.h>
int dv_client_new(const struct config *cfg, struct dv_client **out, struct dverr *err)
{
    *out = NULL;
    return dverr_set(err, -ENOSYS, "the Dataverse client is not implemented yet");
}
void dv_client_free(struct dv_client *c) { (void)c; }
