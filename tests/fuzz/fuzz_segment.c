/* fuzz_segment: the segment reader (segment.h) on arbitrary object bytes. The input is stored in
 * an in-memory object store under its true SHA-256 id (so the reader gets past the hash and must
 * survive everything behind it: trailer, index, frame records, zstd frames, entries), then
 * segment_verify reads it whole and a merge of the chain {id, id} streams it. Both must agree:
 * a segment that verifies merges without error, and a damaged one gives -EIO, never a crash. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/segment.h"

#include "tests/fuzz/mem_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = {data, size, ""};
    struct objstore store = {&mem_ops, &m, (char *)"mem:", NULL, NULL, false};
    char id[65];
    sha256_hex(data, size, id);
    segment_object_name(id, m.name);
    mem_segment_check(&store, NULL, id, -EIO);
    return 0;
}
