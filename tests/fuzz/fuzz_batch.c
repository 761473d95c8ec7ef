/* fuzz_batch: the $batch multipart response parser on arbitrary bytes. The first line of the input
 * is the Content-Type, the rest the body. Checks that parsing never crashes or leaks, and that an
 * accepted answer has statuses in 100..599 and at most 2000 parts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/dataverse/dataverse_batch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *nl = memchr(data, '\n', size);
    if (!nl)
        return 0;
    size_t ctl = (size_t)(nl - (const char *)data);
    char *ct = malloc(ctl + 1);
    if (!ct)
        return 0;
    memcpy(ct, data, ctl);
    ct[ctl] = '\0';
    struct dv_batch_part *parts = NULL;
    size_t n = 0;
    if (dv_batch_parse_response(ct, nl + 1, size - ctl - 1, &parts, &n) == 0) {
        if (n > 2000)
            abort();
        for (size_t i = 0; i < n; i++)
            if (parts[i].status < 100 || parts[i].status > 599)
                abort();
        dv_batch_parts_free(parts, n);
    }
    free(ct);
    return 0;
}
