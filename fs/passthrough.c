/* passthrough: FUSE passthrough under libfuse 3.14, as its custom I/O. Contract in passthrough.h.
 *
 * The kernel ABI pieces used here (include/uapi/linux/fuse.h, protocol 7.40) are spelled out
 * below because Debian 12's headers predate them. Offsets are into the request (after the
 * 40-byte fuse_in_header) or into the reply body (after the 16-byte fuse_out_header, which
 * libfuse sends as iov[0]). */
#include "fs/passthrough.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "backend/base/log.h"

#define PT_OPCODE_INIT 26u
#define PT_IN_HEADER 40u             /* sizeof(struct fuse_in_header) */
#define PT_INIT_IN_FLAGS2 16u        /* fuse_init_in.flags2 */
#define PT_INIT_OUT_FLAGS 12u        /* fuse_init_out.flags */
#define PT_INIT_OUT_FLAGS2 32u       /* fuse_init_out.flags2 */
#define PT_INIT_OUT_STACK_DEPTH 36u  /* fuse_init_out.max_stack_depth */
#define PT_INIT_EXT (1u << 30)       /* FUSE_INIT_EXT: flags2 is valid */
#define PT_FLAGS2_PASSTHROUGH (1u << 5) /* FUSE_PASSTHROUGH (1ULL << 37) in flags2 */
#define PT_OPEN_OUT_SIZE 16u         /* sizeof(struct fuse_open_out) */
#define PT_OPEN_OUT_FLAGS 8u         /* fuse_open_out.open_flags */
#define PT_OPEN_OUT_BACKING 12u      /* fuse_open_out.backing_id */
#define PT_FOPEN_KEEP_CACHE (1u << 1)
#define PT_FOPEN_PASSTHROUGH (1u << 7)

struct pt_backing_map { /* struct fuse_backing_map */
    int32_t fd;
    uint32_t flags;
    uint64_t padding;
};
#define PT_IOC_BACKING_OPEN _IOW(229, 1, struct pt_backing_map)
#define PT_IOC_BACKING_CLOSE _IOW(229, 2, uint32_t)

struct passthrough {
    bool want;
    atomic_bool offered; /* the kernel's INIT offered passthrough */
    atomic_bool on;      /* accepted, and no registration failed for lack of privilege */
    atomic_int devfd;    /* /dev/fuse, seen in the first read */
};

/* per FUSE worker thread: the request it read last was INIT; the backing id for its next reply */
static _Thread_local bool tl_init_pending;
static _Thread_local int tl_next_backing;

struct passthrough *passthrough_new(bool want)
{
    struct passthrough *pt = calloc(1, sizeof *pt);
    if (!pt)
        return NULL;
    pt->want = want;
    atomic_init(&pt->devfd, -1);
    return pt;
}

void passthrough_free(struct passthrough *pt)
{
    free(pt);
}

static uint32_t get_u32(const void *p, size_t off)
{
    uint32_t v;
    memcpy(&v, (const char *)p + off, sizeof v);
    return v;
}

static void put_u32(void *p, size_t off, uint32_t v)
{
    memcpy((char *)p + off, &v, sizeof v);
}

ssize_t passthrough_read(struct passthrough *pt, int fd, void *buf, size_t len)
{
    ssize_t n = read(fd, buf, len);
    atomic_store(&pt->devfd, fd);
    tl_init_pending = false;
    if (n >= (ssize_t)(PT_IN_HEADER + PT_INIT_IN_FLAGS2 + 4) && get_u32(buf, 4) == PT_OPCODE_INIT) {
        tl_init_pending = true;
        uint32_t flags = get_u32(buf, PT_IN_HEADER + 12); /* fuse_init_in.flags */
        uint32_t flags2 = get_u32(buf, PT_IN_HEADER + PT_INIT_IN_FLAGS2);
        atomic_store(&pt->offered,
                     (flags & PT_INIT_EXT) && (flags2 & PT_FLAGS2_PASSTHROUGH));
    }
    return n;
}

ssize_t passthrough_writev(struct passthrough *pt, int fd, struct iovec *iov, int count)
{
    if (tl_init_pending && count >= 2 &&
        iov[1].iov_len >= PT_INIT_OUT_STACK_DEPTH + 4) {
        tl_init_pending = false;
        if (pt->want && atomic_load(&pt->offered)) {
            char *o = iov[1].iov_base;
            put_u32(o, PT_INIT_OUT_FLAGS, get_u32(o, PT_INIT_OUT_FLAGS) | PT_INIT_EXT);
            put_u32(o, PT_INIT_OUT_FLAGS2,
                    get_u32(o, PT_INIT_OUT_FLAGS2) | PT_FLAGS2_PASSTHROUGH);
            put_u32(o, PT_INIT_OUT_STACK_DEPTH, 1);
            atomic_store(&pt->on, true);
        }
    }
    if (tl_next_backing > 0 && count == 2 && iov[1].iov_len == PT_OPEN_OUT_SIZE) {
        char *o = iov[1].iov_base;
        uint32_t fl = get_u32(o, PT_OPEN_OUT_FLAGS);
        put_u32(o, PT_OPEN_OUT_FLAGS, (fl & ~PT_FOPEN_KEEP_CACHE) | PT_FOPEN_PASSTHROUGH);
        put_u32(o, PT_OPEN_OUT_BACKING, (uint32_t)tl_next_backing);
    }
    tl_next_backing = 0;
    return writev(fd, iov, count);
}

bool passthrough_on(const struct passthrough *pt)
{
    return pt && atomic_load(&pt->on);
}

int passthrough_backing_open(struct passthrough *pt, int fd)
{
    int devfd = atomic_load(&pt->devfd);
    if (!passthrough_on(pt) || devfd < 0)
        return -ENOTSUP;
    struct pt_backing_map map = {.fd = fd};
    int id = ioctl(devfd, PT_IOC_BACKING_OPEN, &map);
    if (id > 0)
        return id;
    int e = id < 0 ? errno : EIO;
    /* EPERM: no CAP_SYS_ADMIN; ELOOP: the cache is on a stacked filesystem; EINVAL: not a
     * regular file. They will not change: stop asking. */
    bool lasting = e != ENOMEM && e != EMFILE && e != ENFILE && e != EBADF;
    if (lasting && atomic_exchange(&pt->on, false))
        log_info("mount: passthrough is off (%s%s); files are served through the FUSE page "
                 "cache", strerror(e), e == EPERM ? ": it needs CAP_SYS_ADMIN" : "");
    return -e;
}

void passthrough_backing_close(struct passthrough *pt, int id)
{
    uint32_t v = (uint32_t)id;
    int devfd = atomic_load(&pt->devfd);
    if (id > 0 && devfd >= 0 && ioctl(devfd, PT_IOC_BACKING_CLOSE, &v) < 0)
        log_warn("mount: closing backing file %d: %s", id, strerror(errno));
}

void passthrough_next_open(int id)
{
    tl_next_backing = id;
}
