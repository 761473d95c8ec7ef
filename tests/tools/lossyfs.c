/* lossyfs: a power-loss filesystem for tests (in the spirit of CrashMonkey and ALICE).
 *
 * usage: lossyfs BACKING MOUNTPOINT [--ready-file F] [--cut-file F]
 *   Presents the directory tree BACKING at MOUNTPOINT (foreground). SIGUSR1 cuts the power:
 *   everything not durable is dropped and every request fails with EIO from then on (the
 *   machine is off); F of --cut-file is created once the cut has taken effect. At unmount
 *   (fusermount3 -u, SIGINT, SIGTERM), with or without a cut, BACKING is rewritten to hold
 *   exactly what a power loss at that moment would have left.
 *
 * Durability model (the strictest POSIX one): BACKING is read into memory at start; from then on
 * every node has a live state (what programs see) and a durable state (what survives).
 *   - file data and size since the file's last fsync/fdatasync are live only; fsync copies the
 *     live bytes to the durable state. A file fsync does NOT make its directory entry durable
 *     (ext4 and XFS happen to commit it with their journal; POSIX does not promise it).
 *   - directory changes (create, mknod, mkdir, link, unlink, rmdir, rename) since the directory's
 *     last fsync are live only; fsync of a directory copies its live entries to its durable
 *     entries. A rename touches two directories; each is durable only once that one is fsynced,
 *     so the file may end up under both names or under the old one.
 *   - modes, owners and times are not modelled (the live value is written out).
 * A file whose entry is durable but whose data never was comes back empty (the classic
 * "rename without fsync gives a zero-length file").
 * Kernel caches: no writeback cache, so every write(2) reaches lossyfs before it returns; locks
 * (flock, fcntl) are left to the kernel's local locking. Single-threaded: one request at a time,
 * so the cut happens between two requests. Limits: no symlinks, xattrs or special files (those
 * in BACKING are skipped at start, so they are gone after unmount); all data is held in memory
 * (twice for files that were fsynced); hard links in BACKING are loaded as separate files. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct node;
struct ent {
    char *name;
    struct node *n;
};
struct ents {
    struct ent *v;
    size_t n, cap;
};
struct node {
    fuse_ino_t ino;
    mode_t mode; /* type and permissions */
    uid_t uid;
    gid_t gid;
    struct timespec atime, mtime, ctime;
    size_t nlink;  /* live entries naming this node */
    size_t dlinks; /* durable entries naming this node */
    size_t opens;
    /* files */
    char *data;
    size_t len, cap;
    char *ddata; /* durable bytes */
    size_t dlen;
    /* directories */
    struct ents live, dur;
    bool writing; /* guard against cycles in the durable tree while writing it out */
};

static struct node **nodes; /* nodes[ino - 1]; never freed (inode numbers stay valid) */
static size_t n_nodes, cap_nodes;
static volatile sig_atomic_t cut;
static const char *cut_file;
static double ttl = 1.0;

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static struct node *node_new(mode_t mode)
{
    if (n_nodes == cap_nodes) {
        cap_nodes = cap_nodes ? cap_nodes * 2 : 1024;
        if (!(nodes = realloc(nodes, cap_nodes * sizeof *nodes)))
            die("realloc");
    }
    struct node *n = calloc(1, sizeof *n);
    if (!n)
        die("calloc");
    n->ino = ++n_nodes;
    nodes[n->ino - 1] = n;
    n->mode = mode;
    n->uid = getuid();
    n->gid = getgid();
    clock_gettime(CLOCK_REALTIME, &n->mtime);
    n->atime = n->ctime = n->mtime;
    return n;
}

static struct node *get(fuse_ino_t ino)
{
    return ino >= 1 && ino <= n_nodes ? nodes[ino - 1] : NULL;
}

/* A file nobody can reach any more (no live name, not open, no durable name): drop its bytes. */
static void maybe_free(struct node *n)
{
    if (S_ISREG(n->mode) && n->nlink == 0 && n->opens == 0 && n->dlinks == 0) {
        free(n->data);
        free(n->ddata);
        n->data = n->ddata = NULL;
        n->len = n->cap = n->dlen = 0;
    }
}

static struct ent *ents_find(struct ents *e, const char *name)
{
    for (size_t i = 0; i < e->n; i++)
        if (strcmp(e->v[i].name, name) == 0)
            return &e->v[i];
    return NULL;
}

static void ents_add(struct ents *e, const char *name, struct node *n)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        if (!(e->v = realloc(e->v, e->cap * sizeof *e->v)))
            die("realloc");
    }
    if (!(e->v[e->n].name = strdup(name)))
        die("strdup");
    e->v[e->n++].n = n;
}

static void ents_del(struct ents *e, struct ent *x)
{
    free(x->name);
    *x = e->v[--e->n];
}

static void touch(struct node *n)
{
    clock_gettime(CLOCK_REALTIME, &n->mtime);
    n->ctime = n->mtime;
}

/* live link changes */
static void link_add(struct node *dir, const char *name, struct node *n)
{
    ents_add(&dir->live, name, n);
    n->nlink++;
    touch(dir);
}

static void link_del(struct node *dir, struct ent *x)
{
    struct node *n = x->n;
    ents_del(&dir->live, x);
    n->nlink--;
    n->ctime = dir->mtime;
    touch(dir);
    maybe_free(n);
}

/* ---------- durability ---------- */

static void sync_file(struct node *n)
{
    free(n->ddata);
    n->ddata = NULL;
    n->dlen = n->len;
    if (n->len) {
        if (!(n->ddata = malloc(n->len)))
            die("malloc");
        memcpy(n->ddata, n->data, n->len);
    }
}

static void sync_dir(struct node *d)
{
    struct ents old = d->dur;
    memset(&d->dur, 0, sizeof d->dur);
    for (size_t i = 0; i < d->live.n; i++) {
        ents_add(&d->dur, d->live.v[i].name, d->live.v[i].n);
        d->live.v[i].n->dlinks++;
    }
    for (size_t i = 0; i < old.n; i++) {
        old.v[i].n->dlinks--;
        maybe_free(old.v[i].n);
        free(old.v[i].name);
    }
    free(old.v);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (ftw->level == 0)
        return 0;
    if ((flag == FTW_DP ? rmdir(path) : unlink(path)) != 0) {
        perror(path);
        return -1;
    }
    return 0;
}

static int write_out(const char *path, struct node *d)
{
    int bad = 0;
    d->writing = true;
    for (size_t i = 0; i < d->dur.n; i++) {
        struct node *n = d->dur.v[i].n;
        char p[PATH_MAX];
        if (snprintf(p, sizeof p, "%s/%s", path, d->dur.v[i].name) >= (int)sizeof p) {
            fprintf(stderr, "lossyfs: path too long under %s\n", path);
            bad = 1;
            continue;
        }
        if (S_ISDIR(n->mode)) {
            if (n->writing)
                continue; /* a durable cycle (a directory renamed into its own subtree) */
            if (mkdir(p, n->mode & 07777) != 0) {
                perror(p);
                bad = 1;
                continue;
            }
            bad |= write_out(p, n);
            continue;
        }
        int fd = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, n->mode & 07777);
        if (fd < 0) {
            perror(p);
            bad = 1;
            continue;
        }
        for (size_t off = 0; off < n->dlen;) {
            ssize_t w = write(fd, n->ddata + off, n->dlen - off);
            if (w < 0) {
                perror(p);
                bad = 1;
                break;
            }
            off += (size_t)w;
        }
        if (close(fd) != 0) {
            perror(p);
            bad = 1;
        }
    }
    d->writing = false;
    return bad;
}

/* BACKING := the durable image. */
static int write_backing(const char *backing)
{
    if (nftw(backing, rm_one, 64, FTW_DEPTH | FTW_PHYS) != 0)
        return 1;
    int bad = write_out(backing, nodes[0]);
    sync();
    return bad;
}

static void load(const char *path, struct node *d)
{
    DIR *dir = opendir(path);
    if (!dir)
        die(path);
    struct dirent *e;
    while ((e = readdir(dir))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[PATH_MAX];
        struct stat st;
        if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p || lstat(p, &st) != 0)
            die(p);
        if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
            fprintf(stderr, "lossyfs: skipping %s (not a file or directory; gone at unmount)\n", p);
            continue;
        }
        struct node *n = node_new(st.st_mode);
        n->uid = st.st_uid;
        n->gid = st.st_gid;
        n->mtime = st.st_mtim;
        n->atime = st.st_atim;
        n->ctime = st.st_ctim;
        ents_add(&d->live, e->d_name, n);
        ents_add(&d->dur, e->d_name, n);
        n->nlink = n->dlinks = 1;
        if (S_ISDIR(st.st_mode)) {
            load(p, n);
            continue;
        }
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die(p);
        n->cap = n->len = (size_t)st.st_size;
        if (n->len && !(n->data = malloc(n->len)))
            die("malloc");
        for (size_t got = 0; got < n->len;) {
            ssize_t r = read(fd, n->data + got, n->len - got);
            if (r <= 0)
                die(p);
            got += (size_t)r;
        }
        close(fd);
        sync_file(n);
    }
    closedir(dir);
}

/* ---------- requests ---------- */

static void st_of(const struct node *n, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = n->ino;
    st->st_mode = n->mode;
    st->st_uid = n->uid;
    st->st_gid = n->gid;
    st->st_atim = n->atime;
    st->st_mtim = n->mtime;
    st->st_ctim = n->ctime;
    st->st_blksize = 4096;
    if (S_ISDIR(n->mode)) {
        st->st_nlink = 2;
        for (size_t i = 0; i < n->live.n; i++)
            st->st_nlink += S_ISDIR(n->live.v[i].n->mode);
        st->st_size = 4096;
    } else {
        st->st_nlink = n->nlink;
        st->st_size = (off_t)n->len;
    }
    st->st_blocks = (st->st_size + 511) / 512;
}

/* Every request starts here: the node, or an error reply (EIO once the power is cut). */
static struct node *begin(fuse_req_t req, fuse_ino_t ino, int want_type)
{
    if (cut) {
        fuse_reply_err(req, EIO);
        return NULL;
    }
    struct node *n = get(ino);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return NULL;
    }
    if (want_type == S_IFDIR && !S_ISDIR(n->mode)) {
        fuse_reply_err(req, ENOTDIR);
        return NULL;
    }
    return n;
}

static void reply_entry(fuse_req_t req, struct node *n)
{
    struct fuse_entry_param e = {0};
    e.ino = n->ino;
    e.attr_timeout = e.entry_timeout = ttl;
    st_of(n, &e.attr);
    fuse_reply_entry(req, &e);
}

static bool name_bad(fuse_req_t req, const char *name)
{
    if (strlen(name) > 255) {
        fuse_reply_err(req, ENAMETOOLONG);
        return true;
    }
    return false;
}

static void l_init(void *u, struct fuse_conn_info *c)
{
    c->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
}

static void l_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct node *d = begin(req, parent, S_IFDIR);
    if (!d)
        return;
    struct ent *x = ents_find(&d->live, name);
    if (!x) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    reply_entry(req, x->n);
}

static void l_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    struct stat st;
    st_of(n, &st);
    fuse_reply_attr(req, &st, ttl);
}

static int resize(struct node *n, size_t len)
{
    if (len > n->cap) {
        size_t cap = n->cap ? n->cap : 4096;
        while (cap < len)
            cap *= 2;
        char *p = realloc(n->data, cap);
        if (!p)
            return -ENOMEM;
        n->data = p;
        n->cap = cap;
    }
    if (len > n->len)
        memset(n->data + n->len, 0, len - n->len);
    n->len = len;
    return 0;
}

static void l_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                      struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    if (to_set & FUSE_SET_ATTR_SIZE) {
        if (S_ISDIR(n->mode)) {
            fuse_reply_err(req, EISDIR);
            return;
        }
        if (attr->st_size < 0 || resize(n, (size_t)attr->st_size)) {
            fuse_reply_err(req, attr->st_size < 0 ? EINVAL : ENOSPC);
            return;
        }
        touch(n);
    }
    if (to_set & FUSE_SET_ATTR_MODE)
        n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
    if (to_set & FUSE_SET_ATTR_UID)
        n->uid = attr->st_uid;
    if (to_set & FUSE_SET_ATTR_GID)
        n->gid = attr->st_gid;
    if (to_set & FUSE_SET_ATTR_ATIME)
        n->atime = attr->st_atim;
    if (to_set & FUSE_SET_ATTR_MTIME)
        n->mtime = attr->st_mtim;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW)
        clock_gettime(CLOCK_REALTIME, &n->atime);
    if (to_set & FUSE_SET_ATTR_MTIME_NOW)
        clock_gettime(CLOCK_REALTIME, &n->mtime);
    clock_gettime(CLOCK_REALTIME, &n->ctime);
    struct stat st;
    st_of(n, &st);
    fuse_reply_attr(req, &st, ttl);
}

/* A new node named NAME in PARENT; NULL after an error reply. */
static struct node *make(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct node *d = begin(req, parent, S_IFDIR);
    if (!d || name_bad(req, name))
        return NULL;
    if (ents_find(&d->live, name)) {
        fuse_reply_err(req, EEXIST);
        return NULL;
    }
    struct node *n = node_new(mode);
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    n->uid = ctx->uid;
    n->gid = ctx->gid;
    link_add(d, name, n);
    return n;
}

static void l_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    if (!S_ISREG(mode)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    struct node *n = make(req, parent, name, mode);
    if (n)
        reply_entry(req, n);
}

static void l_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    struct node *n = make(req, parent, name, S_IFDIR | (mode & 07777));
    if (n)
        reply_entry(req, n);
}

static void l_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                     struct fuse_file_info *fi)
{
    struct node *n = make(req, parent, name, S_IFREG | (mode & 07777));
    if (!n)
        return;
    n->opens++;
    struct fuse_entry_param e = {0};
    e.ino = n->ino;
    e.attr_timeout = e.entry_timeout = ttl;
    st_of(n, &e.attr);
    fuse_reply_create(req, &e, fi);
}

static void l_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct node *d = begin(req, parent, S_IFDIR);
    if (!d)
        return;
    struct ent *x = ents_find(&d->live, name);
    if (!x) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (S_ISDIR(x->n->mode)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    link_del(d, x);
    fuse_reply_err(req, 0);
}

static void l_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct node *d = begin(req, parent, S_IFDIR);
    if (!d)
        return;
    struct ent *x = ents_find(&d->live, name);
    if (!x) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!S_ISDIR(x->n->mode)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    if (x->n->live.n) {
        fuse_reply_err(req, ENOTEMPTY);
        return;
    }
    link_del(d, x);
    fuse_reply_err(req, 0);
}

static bool is_ancestor(struct node *a, struct node *d)
{
    if (a == d)
        return true;
    for (size_t i = 0; i < a->live.n; i++)
        if (S_ISDIR(a->live.v[i].n->mode) && is_ancestor(a->live.v[i].n, d))
            return true;
    return false;
}

static void l_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                     const char *newname, unsigned int flags)
{
    struct node *d = begin(req, parent, S_IFDIR);
    if (!d)
        return;
    struct node *nd = get(newparent);
    if (!nd || !S_ISDIR(nd->mode)) {
        fuse_reply_err(req, nd ? ENOTDIR : ENOENT);
        return;
    }
    if (flags & ~(unsigned)RENAME_NOREPLACE) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (name_bad(req, newname))
        return;
    struct ent *x = ents_find(&d->live, name);
    if (!x) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct node *n = x->n;
    struct ent *y = ents_find(&nd->live, newname);
    if (y && y->n == n) {
        fuse_reply_err(req, 0);
        return;
    }
    if (y && (flags & RENAME_NOREPLACE)) {
        fuse_reply_err(req, EEXIST);
        return;
    }
    if (S_ISDIR(n->mode) && is_ancestor(n, nd)) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if (y) {
        struct node *old = y->n;
        if (S_ISDIR(old->mode) != S_ISDIR(n->mode)) {
            fuse_reply_err(req, S_ISDIR(old->mode) ? EISDIR : ENOTDIR);
            return;
        }
        if (S_ISDIR(old->mode) && old->live.n) {
            fuse_reply_err(req, ENOTEMPTY);
            return;
        }
        link_del(nd, y);
    }
    x = ents_find(&d->live, name); /* link_del may have moved it */
    n->nlink++; /* keep it alive across the move */
    link_del(d, x);
    link_add(nd, newname, n);
    n->nlink--;
    fuse_reply_err(req, 0);
}

static void l_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    struct node *nd = get(newparent);
    if (!nd || !S_ISDIR(nd->mode)) {
        fuse_reply_err(req, nd ? ENOTDIR : ENOENT);
        return;
    }
    if (S_ISDIR(n->mode)) {
        fuse_reply_err(req, EPERM);
        return;
    }
    if (name_bad(req, newname))
        return;
    if (ents_find(&nd->live, newname)) {
        fuse_reply_err(req, EEXIST);
        return;
    }
    if (n->nlink == 0) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    link_add(nd, newname, n);
    n->ctime = nd->mtime;
    reply_entry(req, n);
}

static void l_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    if (S_ISDIR(n->mode)) {
        fuse_reply_err(req, EISDIR);
        return;
    }
    if (fi->flags & O_TRUNC) {
        resize(n, 0);
        touch(n);
    }
    n->opens++;
    fuse_reply_open(req, fi);
}

static void l_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct node *n = get(ino);
    if (n) {
        n->opens--;
        maybe_free(n);
    }
    fuse_reply_err(req, 0);
}

static void l_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    if (off < 0 || (size_t)off >= n->len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t left = n->len - (size_t)off;
    fuse_reply_buf(req, n->data + off, left < size ? left : size);
}

static void l_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    if (fi->flags & O_APPEND)
        off = (off_t)n->len;
    if (off < 0 || (size_t)off + size < (size_t)off) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    if ((size_t)off + size > n->len && resize(n, (size_t)off + size)) {
        fuse_reply_err(req, ENOSPC);
        return;
    }
    memcpy(n->data + off, buf, size);
    touch(n);
    fuse_reply_write(req, size);
}

static void l_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, cut ? EIO : 0);
}

static void l_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct node *n = begin(req, ino, 0);
    if (!n)
        return;
    if (S_ISREG(n->mode))
        sync_file(n);
    fuse_reply_err(req, 0);
}

/* A directory handle holds a snapshot of the names, so unlinking while listing is safe. */
struct dirsnap {
    size_t n;
    struct {
        char *name;
        fuse_ino_t ino;
        mode_t mode;
    } *v;
};

static void l_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct node *d = begin(req, ino, S_IFDIR);
    if (!d)
        return;
    struct dirsnap *s = calloc(1, sizeof *s);
    if (!s || !(s->v = calloc(d->live.n + 1, sizeof *s->v)))
        die("calloc");
    for (size_t i = 0; i < d->live.n; i++) {
        if (!(s->v[i].name = strdup(d->live.v[i].name)))
            die("strdup");
        s->v[i].ino = d->live.v[i].n->ino;
        s->v[i].mode = d->live.v[i].n->mode;
    }
    s->n = d->live.n;
    fi->fh = (uint64_t)(uintptr_t)s;
    fuse_reply_open(req, fi);
}

static void l_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                      struct fuse_file_info *fi)
{
    struct dirsnap *s = (struct dirsnap *)(uintptr_t)fi->fh;
    if (!begin(req, ino, S_IFDIR))
        return;
    char *buf = malloc(size);
    if (!buf)
        die("malloc");
    size_t used = 0;
    for (size_t i = (size_t)off; i < s->n + 2; i++) {
        struct stat st = {0};
        const char *name = i == 0 ? "." : i == 1 ? ".." : s->v[i - 2].name;
        st.st_ino = i < 2 ? ino : s->v[i - 2].ino;
        st.st_mode = i < 2 ? S_IFDIR : s->v[i - 2].mode;
        size_t l = fuse_add_direntry(req, buf + used, size - used, name, &st, (off_t)i + 1);
        if (l > size - used)
            break;
        used += l;
    }
    fuse_reply_buf(req, buf, used);
    free(buf);
}

static void l_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct dirsnap *s = (struct dirsnap *)(uintptr_t)fi->fh;
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i].name);
    free(s->v);
    free(s);
    fuse_reply_err(req, 0);
}

static void l_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
    struct node *d = begin(req, ino, S_IFDIR);
    if (!d)
        return;
    sync_dir(d);
    fuse_reply_err(req, 0);
}

static void l_statfs(fuse_req_t req, fuse_ino_t ino)
{
    if (cut) {
        fuse_reply_err(req, EIO);
        return;
    }
    struct statvfs sv = {0};
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_blocks = sv.f_bfree = sv.f_bavail = 1u << 24; /* 64 GiB */
    sv.f_files = sv.f_ffree = sv.f_favail = 1u << 24;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static const struct fuse_lowlevel_ops ops = {
    .init = l_init, .lookup = l_lookup, .getattr = l_getattr, .setattr = l_setattr,
    .mknod = l_mknod, .mkdir = l_mkdir, .create = l_create, .unlink = l_unlink,
    .rmdir = l_rmdir, .rename = l_rename, .link = l_link, .open = l_open,
    .release = l_release, .read = l_read, .write = l_write, .flush = l_flush,
    .fsync = l_fsync, .opendir = l_opendir, .readdir = l_readdir,
    .releasedir = l_releasedir, .fsyncdir = l_fsyncdir, .statfs = l_statfs,
};

/* SIGUSR1: the power is cut. Only async-signal-safe calls here. */
static void on_cut(int sig)
{
    cut = 1;
    if (cut_file) {
        int fd = open(cut_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
}

int main(int argc, char **argv)
{
    const char *backing = NULL, *mnt = NULL, *ready = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ready-file") == 0 && i + 1 < argc)
            ready = argv[++i];
        else if (strcmp(argv[i], "--cut-file") == 0 && i + 1 < argc)
            cut_file = argv[++i];
        else if (!backing)
            backing = argv[i];
        else if (!mnt)
            mnt = argv[i];
        else
            backing = NULL, i = argc;
    }
    if (!backing || !mnt) {
        fprintf(stderr, "usage: lossyfs BACKING MOUNTPOINT [--ready-file F] [--cut-file F]\n");
        return 2;
    }
    char real[PATH_MAX];
    if (!realpath(backing, real))
        die(backing);
    struct stat st;
    if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
        die(real);
    struct node *root = node_new(st.st_mode);
    root->uid = st.st_uid;
    root->gid = st.st_gid;
    root->nlink = root->dlinks = 1;
    load(real, root);

    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    fuse_opt_add_arg(&args, "lossyfs");
    fuse_opt_add_arg(&args, "-o");
    fuse_opt_add_arg(&args, "fsname=lossyfs,subtype=lossyfs");
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se)
        return 1;
    if (fuse_set_signal_handlers(se) != 0)
        return 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_cut;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    if (fuse_session_mount(se, mnt) != 0)
        return 1;
    if (ready) {
        FILE *f = fopen(ready, "w");
        if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0)
            die(ready);
    }
    int rc = fuse_session_loop(se); /* single-threaded on purpose (see the design note) */
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    fuse_opt_free_args(&args);
    int bad = write_backing(real);
    fprintf(stderr, "lossyfs: %s now holds the durable image%s\n", real,
            cut ? " (power was cut)" : "");
    return rc < 0 || bad ? 1 : 0;
}
