/* memfuse: the FUSE ceiling for benchmarks. Serves one file, /data, whose bytes are read into
 * memory at start from a local file; the same low-level API, multi-threaded loop, 1 MiB reads and
 * keep_cache as the dvsnap view, and nothing else.
 * usage: memfuse SOURCE_FILE MOUNTPOINT   (foreground; SIGINT/SIGTERM unmount) */
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct mem {
    char *data;
    size_t len;
};

static void st_of(const struct mem *m, fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    if (ino == 1) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = (off_t)m->len;
        st->st_blocks = (blkcnt_t)((m->len + 511) / 512);
    }
}

static void m_init(void *u, struct fuse_conn_info *c)
{
    c->max_read = 1u << 20;
}

static void m_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct mem *m = fuse_req_userdata(req);
    if (parent != 1 || strcmp(name, "data") != 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e = {0};
    e.ino = 2;
    e.attr_timeout = e.entry_timeout = 86400;
    st_of(m, 2, &e.attr);
    fuse_reply_entry(req, &e);
}

static void m_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct stat st;
    st_of(fuse_req_userdata(req), ino, &st);
    fuse_reply_attr(req, &st, 86400);
}

static void m_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    char buf[512];
    size_t used = 0;
    struct stat st = {0};
    const char *names[] = {".", "..", "data"};
    for (off_t i = off; i < 3; i++) {
        st.st_ino = i == 2 ? 2 : 1;
        st.st_mode = i == 2 ? S_IFREG : S_IFDIR;
        size_t l = fuse_add_direntry(req, buf + used, sizeof buf - used, names[i], &st, i + 1);
        if (l > sizeof buf - used || used + l > size)
            break;
        used += l;
    }
    fuse_reply_buf(req, buf, used);
}

static void m_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
}

static void m_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    struct mem *m = fuse_req_userdata(req);
    if ((size_t)off >= m->len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t n = m->len - (size_t)off;
    fuse_reply_buf(req, m->data + off, n < size ? n : size);
}

static const struct fuse_lowlevel_ops ops = {
    .init = m_init, .lookup = m_lookup, .getattr = m_getattr, .readdir = m_readdir,
    .open = m_open, .read = m_read,
};

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: memfuse SOURCE_FILE MOUNTPOINT\n");
        return 2;
    }
    struct mem m = {0};
    int fd = open(argv[1], O_RDONLY);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) < 0) {
        perror(argv[1]);
        return 1;
    }
    m.len = (size_t)sb.st_size;
    m.data = malloc(m.len ? m.len : 1);
    for (size_t got = 0; m.data && got < m.len;) {
        ssize_t r = read(fd, m.data + got, m.len - got);
        if (r <= 0) {
            perror("read");
            return 1;
        }
        got += (size_t)r;
    }
    close(fd);
    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, "memfuse");
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "fsname=memfuse,subtype=memfuse,max_read=1048576");
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, &m);
    if (!se)
        return 1;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    fuse_set_signal_handlers(se);
    if (fuse_session_mount(se, argv[2]) != 0)
        return 1;
    struct fuse_loop_config *lc = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(lc, 16);
    int rc = fuse_session_loop_mt(se, lc);
    fuse_loop_cfg_destroy(lc);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    free(m.data);
    return rc < 0 ? 1 : 0;
}
