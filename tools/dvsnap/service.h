/* service: dvsnap run by the system rather than by a person. Two entry points:
 *
 * - systemd (service.c): `dvsnap mount --foreground` as a Type=notify unit
 *   (contrib/systemd/dvsnap-mount@.service.in). READY=1 is sent once a listing of the mountpoint
 *   is answered by this daemon, STATUS= lines name the newest restore point, STOPPING=1 is sent
 *   when the stop begins (SIGTERM, SIGINT, SIGHUP, or an unmount from outside). Nothing happens
 *   unless $NOTIFY_SOCKET is set.
 * - mount(8) (mount_helper.c): the argv that mount.fuse3 or the installed mount.fuse.dvsnap
 *   helper gives for an /etc/fstab line of type fuse.dvsnap, turned into a `dvsnap mount` command
 *   line before main() parses it.
 * - the background mount (service.c): `dvsnap mount` without --foreground forks before it opens
 *   the repository and the cache, and the command returns once the child serves the mount.
 *
 * Threading: service.c runs one notifier thread between service_mount_ready and
 * service_mount_stopped; mount_helper_argv and service_daemon_start run before any thread
 * exists. */
#ifndef DVSNAP_SERVICE_H
#define DVSNAP_SERVICE_H

#include "backend/repo/repo.h"

/* Called once the filesystem is mounted (fs_opts.on_mounted; the session loop has not started):
 * when $NOTIFY_SOCKET is set, starts the notifier thread, which lists mountpoint through the
 * mount, then sends READY=1 and a STATUS= line, and refreshes STATUS= every
 * SERVICE_STATUS_SECONDS from repo (borrowed until service_mount_stopped). */
#define SERVICE_STATUS_SECONDS 30
void service_mount_ready(const char *mountpoint, struct repo *repo);
/* Called when the session has ended and the filesystem is unmounted: sends STOPPING=1 unless a
 * signal already did, stops the notifier thread and gives SIGTERM, SIGINT and SIGHUP back their
 * default action. A no-op when service_mount_ready started nothing. */
void service_mount_stopped(void);

/* Become a daemon before anything is opened: an SQLite connection must not cross a fork (the
 * child loses the parent's POSIX locks on the catalog's -shm file, so another process that opens
 * the catalog resets the file under the child's mapping: SIGBUS). Forks; the child starts a new
 * session and returns 0 and goes on (its stderr still the caller's, so a failure is reported);
 * the parent waits until the child calls service_daemon_ready, then exits 0, or, when the child
 * ends first, exits with the child's exit status. -errno when the fork fails. */
int service_daemon_start(void);
/* In the child, once the filesystem is mounted: release the waiting parent, move to "/" and put
 * /dev/null on stdin, stdout and stderr. A no-op in a process that did not fork. */
void service_daemon_ready(void);

/* When argv is the mount helper form
 *     mount.fuse.dvsnap SOURCE MOUNTPOINT [-o OPTIONS]... [-t TYPE] [-n] [-s] [-v] [-f]
 *     dvsnap SOURCE /MOUNTPOINT -o OPTIONS ...          (from mount.fuse3, SOURCE not "-...")
 * with SOURCE "dvsnap#CONFIG", "CONFIG", "dvsnap" or "none" (the default configuration), replace
 * *argv by `dvsnap [-v] [--config CONFIG] mount [OPTIONS as flags] MOUNTPOINT` and return -1 so
 * main() goes on with it; return -1 leaving argv alone for any other command line. OPTIONS:
 * allow_other, no_passthrough, capture_every=DURATION, cache_size=SIZE; the generic ones mount(8)
 * and mount.fuse3 add (rw, dev, suid, nodev, nosuid, exec, noexec, the atime family, _netdev,
 * nofail, auto, noauto, user, users, nouser, defaults, x-*, comment=*) are accepted and ignored.
 * Returns an exit code for main() to return at once: 2 (printed why) for an unknown option, `ro`
 * (the view has writable control files; it cannot be mounted read-only) or a missing mountpoint,
 * and 0 for -f (mount -f: validate only). */
int mount_helper_argv(int *argc, char ***argv);

#endif
