/* meter: counts what the repository asks of its object store, for progress (check, prune) and
 * health records (bytes a capture stored). It is a decorator: meter_attach replaces the store's
 * ops and impl with its own, which count and forward to the originals; the store's other fields
 * (location, local_dir, sizes) stay, and objstore_free frees the meter with the store.
 *
 * Limits: get counts the bytes it appended; put_file counts the local file's size. Counts are of
 * the whole process (a mount's reads and a capture's writes together).
 * Threading: the counters are atomic; meter_attach must run before any other thread uses the
 * store; on_io (may be NULL) is called after each operation on the thread that made it, and must
 * be set while no other thread uses the store. */
#ifndef DVSNAP_METER_H
#define DVSNAP_METER_H

#include <stdint.h>

#include "backend/objstore/objstore.h"

struct meter_counts {
    uint64_t gets, get_bytes;     /* get: requests and bytes read */
    uint64_t object_get_bytes;    /* of which under objects/ (segments, blobs) */
    uint64_t point_gets;          /* gets under points/ (manifests) */
    uint64_t puts, put_bytes;     /* put, put_file, put_if_absent: requests and bytes written */
    uint64_t stats, lists, dels;
};

struct meter;
/* 0 or -ENOMEM (the store is then unchanged). */
int meter_attach(struct objstore *store, struct meter **out);
void meter_read(struct meter *m, struct meter_counts *out);
/* Call fn(ctx) after every store operation (NULL: stop). */
void meter_on_io(struct meter *m, void (*fn)(void *ctx), void *ctx);

#endif
