/* replay: a main() for libFuzzer targets built without libFuzzer. `make check` runs every target
 * over its seed corpus (tests/fuzz/corpus/<target>/) and its regression files
 * (tests/fuzz/regressions/<target>/), so a crasher once found stays fixed. Each argument is a file
 * or a directory of files. Exit 0 when every input ran (a crash aborts the process). */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/base/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path, int *count)
{
    struct buf b = BUF_INIT;
    int rc = read_file(path, (size_t)64 << 20, &b);
    if (rc) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
        return 1;
    }
    /* exact-size copy so ASan sees reads past the end */
    uint8_t *copy = malloc(b.len ? b.len : 1);
    if (b.len)
        memcpy(copy, b.data, b.len);
    LLVMFuzzerTestOneInput(copy, b.len);
    free(copy);
    buf_release(&b);
    (*count)++;
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st))
            continue; /* an absent regression directory is fine */
        if (!S_ISDIR(st.st_mode)) {
            bad |= run_file(argv[i], &count);
            continue;
        }
        DIR *d = opendir(argv[i]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            bad |= run_file(path, &count);
        }
        if (d)
            closedir(d);
    }
    printf("replayed %d inputs\n", count);
    return bad;
}
