/* mount_helper: dvsnap started by mount(8) for an /etc/fstab line (see service.h), e.g.
 *
 *     dvsnap#/etc/dvsnap/config  /srv/dv  fuse.dvsnap  defaults,_netdev,allow_other  0 0
 *
 * How it gets here. For type fuse.dvsnap, util-linux's mount runs /sbin/mount.fuse.dvsnap when it
 * exists (the symlink `make install` puts in $(SBINDIR), found there when SBINDIR is /sbin or
 * /usr/sbin on a merged /usr) as `mount.fuse.dvsnap SOURCE MOUNTPOINT [-o OPTS]` plus -n, -s, -v,
 * -f as given to mount; else it runs mount.fuse (fuse3's mount.fuse3) with `-t fuse.dvsnap`,
 * which drops _netdev, nofail, auto, noauto, user, users and nouser, adds dev and suid, and runs
 * `dvsnap SOURCE MOUNTPOINT -o OPTS` through /bin/sh with the shell's default PATH (mount(8)
 * drops the caller's), so dvsnap must be in /usr/local/bin or /usr/bin. Either way the command
 * line becomes `dvsnap [-v] [--config CONFIG] mount [flags] MOUNTPOINT` without --foreground:
 * the mount daemonises once the filesystem is mounted, so mount(8) returns then.
 *
 * Limits: options are those of `dvsnap mount` and nothing else; `ro` is refused rather than
 * ignored (the control files take writes).
 * Threading: runs in main() before any thread exists; the new argv is static. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/dvsnap/cli.h"
#include "tools/dvsnap/service.h"

#define HELPER_MAX_ARGS 16

static bool has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Options that mount(8), /etc/fstab conventions or mount.fuse3 add, and that change nothing for
 * dvsnap (the kernel mount is always nosuid, nodev, as libfuse mounts it). */
static bool ignored_option(const char *o)
{
    static const char *const ignored[] = {
        "rw",     "dev",       "nodev",    "suid",        "nosuid",     "exec",  "noexec",
        "atime",  "noatime",   "relatime", "norelatime",  "strictatime", "diratime",
        "nodiratime", "lazytime", "nolazytime", "async", "_netdev", "nofail", "auto", "noauto",
        "user",   "users",     "nouser",   "owner",       "group",      "defaults", "",
    };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        if (strcmp(o, ignored[i]) == 0)
            return true;
    return has_prefix(o, "x-") || has_prefix(o, "comment=");
}

struct helper_args {
    const char *out[HELPER_MAX_ARGS];
    int n;
};

static int push(struct helper_args *h, const char *arg)
{
    if (h->n >= HELPER_MAX_ARGS - 1)
        return -E2BIG;
    h->out[h->n++] = arg;
    h->out[h->n] = NULL;
    return 0;
}

/* Turn one comma-separated -o list into flags of `dvsnap mount`. opts is modified (split). */
static int add_options(struct helper_args *mount_flags, char *opts)
{
    for (char *save = NULL, *o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
        int rc = 0;
        if (strcmp(o, "allow_other") == 0) {
            rc = push(mount_flags, "--allow-other");
        } else if (strcmp(o, "no_passthrough") == 0) {
            rc = push(mount_flags, "--no-passthrough");
        } else if (has_prefix(o, "capture_every=")) {
            if (!(rc = push(mount_flags, "--capture-every")))
                rc = push(mount_flags, o + strlen("capture_every="));
        } else if (has_prefix(o, "cache_size=")) {
            if (!(rc = push(mount_flags, "--cache-size")))
                rc = push(mount_flags, o + strlen("cache_size="));
        } else if (strcmp(o, "ro") == 0) {
            fprintf(stderr, "dvsnap: mount option 'ro' is not supported: the view is read-only "
                            "already, except its control files (.backup, .restore)\n");
            return -EINVAL;
        } else if (!ignored_option(o)) {
            fprintf(stderr, "dvsnap: unknown mount option '%s' (dvsnap's are allow_other, "
                            "no_passthrough, capture_every=DURATION, cache_size=SIZE)\n", o);
            return -EINVAL;
        }
        if (rc == -E2BIG) {
            fprintf(stderr, "dvsnap: too many mount options\n");
            return rc;
        }
    }
    return 0;
}

int mount_helper_argv(int *argc, char ***argv)
{
    static struct helper_args result;
    int ac = *argc;
    char **av = *argv;
    const char *self = base_name(av[0]);
    bool by_name = strcmp(self, "mount.fuse.dvsnap") == 0 || strcmp(self, "mount.dvsnap") == 0;
    bool by_mount_fuse = ac >= 5 && av[1][0] != '-' && av[2][0] == '/' &&
                         strcmp(av[3], "-o") == 0;
    if (!by_name && !by_mount_fuse)
        return -1;
    if (ac < 3 || av[1][0] == '-' || av[2][0] == '-') {
        fprintf(stderr, "usage: %s dvsnap#CONFIG MOUNTPOINT [-o OPTIONS]\n", self);
        return EXIT_USAGE;
    }
    const char *source = av[1], *mountpoint = av[2];
    if (has_prefix(source, "dvsnap#"))
        source += strlen("dvsnap#");
    bool default_config = !*source || strcmp(source, "dvsnap") == 0 ||
                          strcmp(source, "none") == 0;

    struct helper_args flags = {{0}, 0};
    bool verbose = false, fake = false;
    for (int i = 3; i < ac; i++) {
        if (strcmp(av[i], "-o") == 0 && i + 1 < ac) {
            if (add_options(&flags, av[++i]))
                return EXIT_USAGE;
        } else if (strcmp(av[i], "-t") == 0 && i + 1 < ac) {
            i++; /* fuse.dvsnap: how we got here */
        } else if (strcmp(av[i], "-v") == 0) {
            verbose = true;
        } else if (strcmp(av[i], "-f") == 0) {
            fake = true;
        } else if (strcmp(av[i], "-n") != 0 && strcmp(av[i], "-s") != 0) {
            fprintf(stderr, "dvsnap: unexpected mount helper argument '%s'\n", av[i]);
            return EXIT_USAGE;
        }
    }
    if (fake)
        return EXIT_OK;

    result.n = 0;
    int rc = push(&result, "dvsnap");
    if (!rc && verbose)
        rc = push(&result, "-v");
    if (!rc && !default_config && !(rc = push(&result, "--config")))
        rc = push(&result, source);
    if (!rc)
        rc = push(&result, "mount");
    for (int i = 0; !rc && i < flags.n; i++)
        rc = push(&result, flags.out[i]);
    if (!rc)
        rc = push(&result, mountpoint);
    if (rc) {
        fprintf(stderr, "dvsnap: too many mount options\n");
        return EXIT_USAGE;
    }
    *argc = result.n;
    *argv = (char **)result.out;
    return -1;
}
