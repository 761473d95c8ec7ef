/* fuzz_config: the configuration reader (config_load) on arbitrary file contents. The input is
 * written to a private (0600) temp file and loaded as --config would; an accepted configuration
 * must have its required URLs well-formed, a rejected one carries a message. */
#include <fcntl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/fuzz_config.%d", (int)getpid());
        unsetenv("DVSNAP_CONFIG");
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    close(fd);
    struct config *cfg = NULL;
    struct dverr e = {0};
    int rc = config_load(path, &cfg, &e);
    if (rc == 0) {
        if (!cfg || !cfg->path)
            abort();
        if (cfg->environments)
            for (char **p = cfg->environments; *p; p++)
                if (!**p)
                    abort();
        config_env_selected(cfg, "contoso-prod");
    } else if (!*dverr_msg(&e) && rc != -ENOMEM) {
        abort();
    }
    config_free(cfg);
    unlink(path);
    return 0;
}
