/* fuzz_crypt: what an encrypted repository reads before and while it authenticates (issue 16),
 * on arbitrary bytes, under a fixed master key (the seed corpus was sealed with it). The first
 * byte picks the reader:
 *   'k'  a key object (keys.h) opened with the passphrase "fuzz" for repository "fuzz-repo":
 *        0, -EACCES (does not open) or -EIO (malformed), never a crash. Inputs that ask for a
 *        scrypt cost above 2^12 are skipped (each would cost up to a second and 1 GiB).
 *   'o'  a sealed object (crypt.h) opened as "blob:fuzz": 0 or -EBADMSG; when it opens, sealing
 *        the plaintext again and opening that gives the same bytes.
 *   's'  64 hex (a segment id) then a sealed segment (segment.h) in an in-memory store:
 *        segment_verify and a merge of {id, id} agree, as fuzz_segment checks for plain ones.
 * The tags keep the fuzzer from forging what opens; the seeds are genuine objects, so mutations
 * exercise the size, trailer and index checks in front of the tags and the decoders behind them. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/repo/crypt.h"
#include "backend/repo/keys.h"
#include "backend/repo/segment.h"

#include "tests/fuzz/mem_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct crypt *fuzz_crypt(void)
{
    static struct crypt *c;
    if (!c) {
        unsigned char master[CRYPT_MASTER_BYTES];
        for (size_t i = 0; i < sizeof master; i++)
            master[i] = (unsigned char)(0xA5 ^ i);
        if (crypt_new(master, &c))
            abort();
    }
    return c;
}

/* true when the input asks for a scrypt cost above 2^12 ("log2n" spelt plainly) */
static bool costly(const uint8_t *data, size_t size)
{
    const uint8_t *p = memmem(data, size, "\"log2n\":", 8);
    long v = 0;
    for (p = p ? p + 8 : NULL; p && p < data + size && *p >= '0' && *p <= '9' && v < 1000; p++)
        v = v * 10 + (*p - '0');
    return v > 12;
}

static void key_object(const uint8_t *data, size_t size)
{
    if (costly(data, size))
        return;
    struct crypt *c = NULL;
    struct key_info info;
    struct dverr e = {0};
    int rc = key_object_open((const char *)data, size, "fuzz-repo", "fuzz", 4, &c, &info, &e);
    if (rc != 0 && rc != -EACCES && rc != -EIO && rc != -ENOMEM)
        abort();
    if (rc == 0 && (!c || !keys_id_ok(info.id)))
        abort();
    crypt_free(c);
}

static void sealed_object(const uint8_t *data, size_t size)
{
    struct buf out = BUF_INIT, again = BUF_INIT, back = BUF_INIT;
    int rc = crypt_unseal(fuzz_crypt(), "blob:fuzz", data, size, &out);
    if (rc != 0 && rc != -EBADMSG && rc != -ENOMEM)
        abort();
    if (rc == 0) {
        uint64_t plain = 0;
        if (crypt_sealed_plain_size(size, &plain) || plain != out.len ||
            crypt_seal(fuzz_crypt(), "blob:fuzz", out.data, out.len, &again) ||
            crypt_unseal(fuzz_crypt(), "blob:fuzz", again.data, again.len, &back) ||
            back.len != out.len || (out.len && memcmp(back.data, out.data, out.len) != 0))
            abort();
    }
    buf_release(&out);
    buf_release(&again);
    buf_release(&back);
}

static void sealed_segment(const uint8_t *data, size_t size)
{
    char id[65];
    if (size < 64)
        return;
    memcpy(id, data, 64);
    id[64] = '\0';
    if (!segment_id_ok(id))
        return;
    struct mem m = {data + 64, size - 64, ""};
    struct objstore store = {&mem_ops, &m, (char *)"mem:", NULL, NULL, false};
    segment_object_name(id, m.name);
    mem_segment_check(&store, fuzz_crypt(), id, -ENOENT);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0]) {
    case 'k': key_object(data + 1, size - 1); break;
    case 'o': sealed_object(data + 1, size - 1); break;
    case 's': sealed_segment(data + 1, size - 1); break;
    default: break;
    }
    return 0;
}
