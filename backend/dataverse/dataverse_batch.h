/* dataverse_batch: the $batch multipart response parser on its own, for dv_batch, the unit tests
 * and a fuzz target. Input is untrusted: boundaries up to 70 bytes, nesting at most 4 deep, at
 * most 2000 parts; anything malformed is -EPROTO, never a crash. No shared state. */
#ifndef DVSNAP_DATAVERSE_BATCH_H
#define DVSNAP_DATAVERSE_BATCH_H

#include <stddef.h>

struct dv_batch_part {
    int status;       /* HTTP status of the part */
    int content_id;   /* Content-ID echoed by the service, 0 when absent */
    char *body;       /* the part's body (NUL-terminated), NULL when empty; owned by the array */
};

/* The boundary parameter of a multipart/mixed Content-Type into out. 0 or -EPROTO. */
int dv_batch_boundary(const char *content_type, char *out, size_t n);
/* Split a multipart/mixed body (change-set responses flattened in order) into parts.
 * 0, -EPROTO (malformed or truncated), -E2BIG, -ENOMEM. *parts freed by dv_batch_parts_free. */
int dv_batch_parse_response(const char *content_type, const char *body, size_t len,
                            struct dv_batch_part **parts, size_t *n);
void dv_batch_parts_free(struct dv_batch_part *parts, size_t n);

#endif
