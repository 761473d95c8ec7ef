/* passthrough: FUSE passthrough (Linux 6.9 and later) on libfuse 3.14, which predates its API.
 *
 * With passthrough, an open of a FUSE file names a "backing" file (registered on /dev/fuse), and
 * the kernel serves reads and mmap from that file as it does for local files: no request reaches
 * the daemon and no FUSE page cache is involved. On kernel 6.18 the FUSE page cache holds only
 * 4 KiB pages, so a warm read through it runs at about 40% of a local file's; through a backing
 * file it runs as fast as the local file.
 *
 * libfuse 3.14 can neither ask for the capability at INIT nor put a backing id in an OPEN reply,
 * so this module sits under it as its custom I/O (fuse_session_custom_io): it reads requests to
 * see the INIT, and patches two replies on their way to the kernel:
 *   - INIT: FUSE_INIT_EXT, FUSE_PASSTHROUGH (flags2) and max_stack_depth 1, when the kernel
 *     offered passthrough and the caller wants it;
 *   - OPEN: FOPEN_PASSTHROUGH and the backing id, when the thread that replies asked for it
 *     (passthrough_next_open) just before fuse_reply_open; FOPEN_KEEP_CACHE is cleared (the
 *     kernel refuses it with passthrough).
 * Registering a backing file needs CAP_SYS_ADMIN: without it the first registration fails and
 * passthrough stays off for the session (files are then served through the FUSE page cache).
 *
 * Kernel rules the caller must keep: every open of an inode that has a passthrough open must be
 * passthrough too, and the first passthrough open fails while the inode is open in cached mode
 * (both give EIO to the opener); a backing id must stay registered until the opens that carry it
 * are released.
 *
 * Threading: the read and writev hooks run on FUSE worker threads; the rest may be called from
 * any thread. */
#ifndef DVSNAP_PASSTHROUGH_H
#define DVSNAP_PASSTHROUGH_H

#include <stdbool.h>
#include <sys/types.h>
#include <sys/uio.h>

struct passthrough;

/* want: ask the kernel for passthrough at INIT (false: the hooks only forward). NULL on ENOMEM. */
struct passthrough *passthrough_new(bool want);
void passthrough_free(struct passthrough *pt); /* accepts NULL */

/* The custom I/O hooks (struct fuse_custom_io's read and writev). */
ssize_t passthrough_read(struct passthrough *pt, int fd, void *buf, size_t len);
ssize_t passthrough_writev(struct passthrough *pt, int fd, struct iovec *iov, int count);

/* true once the kernel accepted passthrough at INIT and no registration has failed for lack of
 * privilege. */
bool passthrough_on(const struct passthrough *pt);

/* Register fd (a regular file, kept open by the caller until passthrough_backing_close) as a
 * backing file: the id (> 0) or -errno. An error that will not change (EPERM without
 * CAP_SYS_ADMIN, ELOOP for a file on a stacked filesystem, EINVAL) turns passthrough off. */
int passthrough_backing_open(struct passthrough *pt, int fd);
void passthrough_backing_close(struct passthrough *pt, int id);

/* The next OPEN reply this thread sends carries backing id (0: none). Call right before
 * fuse_reply_open; the mark is consumed by the next reply this thread sends, whatever it is. */
void passthrough_next_open(int id);

#endif
