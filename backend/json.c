/* json: STUB, replaced by the real parser. */
#include "backend/json.h"
#include <errno.h>
int json_parse(const char *text, size_t len, const struct json_limits *lim, struct json_doc **out,
               struct dverr *err)
{
    *out = NULL;
    return dverr_set(err, -ENOSYS, "not yet");
}
