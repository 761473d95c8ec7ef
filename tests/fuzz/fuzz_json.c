/* fuzz_json: the exact-number JSON parser and the canonical renderer on arbitrary bytes. Checks
 * that parsing never crashes, that every accepted object renders, and that rendering is a fixed
 * point (render(parse(render(x))) == render(x)). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/base/json.h"
#include "backend/base/record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct json_doc *doc = NULL;
    struct json_limits lim = {.max_depth = 64, .max_string = 1 << 20, .max_nodes = 100000};
    if (json_parse((const char *)data, size, &lim, &doc, NULL))
        return 0;
    const struct json_node *root = json_root(doc);
    if (root->type == JSON_OBJECT) {
        struct buf a = BUF_INIT, b = BUF_INIT;
        if (record_render(root, "id", &a))
            abort();
        if (record_canonicalize(a.data, a.len, "id", &b, NULL) || a.len != b.len ||
            memcmp(a.data, b.data, a.len) != 0)
            abort();
        buf_release(&a);
        buf_release(&b);
    }
    json_doc_free(doc);
    return 0;
}
