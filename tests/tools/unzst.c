/* unzst: every byte a file could give away, for tests that grep a repository or a cache for data
 * that must be gone (erase_person). For each file named on the command line (or each line of
 * stdin with no arguments): its raw bytes, then the decoded bytes of every zstd frame found at
 * any offset (segments, cache files and the catalog's packed state are zstd frames inside other
 * formats), each output followed by a newline. A damaged or partial frame is decoded as far as
 * it goes. Limits: decodes at most 1 GiB per frame. Single-threaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

static const unsigned char magic[4] = {0x28, 0xb5, 0x2f, 0xfd};

static int dump(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t cap = 1 << 20, len = 0;
    unsigned char *data = malloc(cap);
    for (size_t n; data && (n = fread(data + len, 1, cap - len, f)) > 0;) {
        len += n;
        if (len == cap) {
            unsigned char *d = realloc(data, cap *= 2);
            if (!d) {
                free(data);
                data = NULL;
            }
            data = d;
        }
    }
    fclose(f);
    if (!data)
        return 1;
    fwrite(data, 1, len, stdout);
    fputc('\n', stdout);
    ZSTD_DStream *ds = ZSTD_createDStream();
    unsigned char *out = malloc(1 << 20);
    for (size_t off = 0; ds && out && off + 4 <= len; off++) {
        if (memcmp(data + off, magic, 4) != 0)
            continue;
        ZSTD_initDStream(ds);
        ZSTD_inBuffer in = {data + off, len - off, 0};
        size_t total = 0;
        for (;;) {
            ZSTD_outBuffer o = {out, 1 << 20, 0};
            size_t r = ZSTD_decompressStream(ds, &o, &in);
            fwrite(out, 1, o.pos, stdout);
            total += o.pos;
            if (ZSTD_isError(r) || r == 0 || total > (1u << 30) ||
                (o.pos == 0 && in.pos == in.size))
                break;
        }
        fputc('\n', stdout);
    }
    free(out);
    ZSTD_freeDStream(ds);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    int rc = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            rc |= dump(argv[i]);
        return rc;
    }
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (*line)
            rc |= dump(line);
    }
    return rc;
}
