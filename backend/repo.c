/* repo: STUB until the repository work lands (issue 3). */
#include "backend/repo.h"
#include <errno.h>
int repo_open(const struct config *cfg, struct repo **out, struct dverr *err)
{
    *out = NULL;
    return dverr_set(err, -ENOSYS, "the repository is not implemented yet");
}
void repo_free(struct repo *r) { (void)r; }
