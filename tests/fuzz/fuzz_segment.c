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
    struct dverr e = {0};
    uint64_t entries = 0;
    int vrc = segment_verify(&store, NULL, id, &entries, &e);
    if (vrc != 0 && vrc != -EIO)
        abort();
    char *ids[2] = {id, id};
    for (int keep = 0; keep < 2; keep++) {
        struct segment_merge *mg = NULL;
        struct dverr me = {0};
        int rc = segment_merge_open(&store, NULL, ids, 2, keep != 0, &mg, &me);
        uint64_t n = 0;
        struct segment_entry ent;
        while (rc == 0 && (rc = segment_merge_next(mg, &ent, &me)) == 1) {
            if (ent.key_len > SEGMENT_MAX_KEY || ent.line_len > SEGMENT_MAX_LINE)
                abort();
            n++;
            rc = 0;
        }
        segment_merge_free(mg);
        if (rc != 0 && rc != -EIO && rc != -ENOMEM)
            abort();
        /* a segment that verifies must merge cleanly and agree on its entry count */
        if (vrc == 0 && (rc != 0 || (keep && n != entries)))
            abort();
    }
    return 0;
}
