/* fuzz_restore_request: the control-file parser (restore_request_parse) on arbitrary lines, the
 * text any local user with access to a .restore file can write. Accepted requests must name a
 * target and no empty table; rejected ones carry a message. (A confirmation that differs from the
 * target is refused later, by restore_validate through policy_restore_allowed, not here.) */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/engine/restore.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = 0;
    struct restore_request req;
    memset(&req, 0, sizeof req);
    struct dverr e = {0};
    int rc = restore_request_parse(line, "contoso-prod", "2026-11-21T090000Z", &req, &e);
    if (rc == 0) {
        if (!req.target || !*req.target)
            abort();
        for (char **t = req.tables; t && *t; t++)
            if (!**t)
                abort();
    } else if (!*dverr_msg(&e)) {
        abort();
    }
    restore_request_release(&req);
    free(line);
    return 0;
}
