/* ops_tree: the FUSE operations that walk and describe the tree: lookup (a miss inside a point
 * is cached by the kernel: nothing ever appears there), forget, getattr, setattr (control files
 * only, where truncation is a no-op), readlink (latest, labels, at/), opendir (ENOSYS: the kernel
 * then caches listings), readdir and readdirplus, statfs (sizes from the cache).
 *
 * Limits: readdir has no handle: each request lists the directory and serves from its offset; a
 * readdirplus entry that went away meanwhile is skipped.
 * Threading: FUSE worker threads. The node, view and listing functions take the locks; none is
 * held here (statfs reads the node count without fsd->mu: an estimate). */
#include "fs/fs_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/statvfs.h>

void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fsd *f = fs_of_req(req);
    struct node pcopy, *p = node_find(f, parent, &pcopy);
    if (!p) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!fs_is_dir(p->kind)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct dirh d = {0};
    int rc = listing_resolve(f, p, name, &d);
    struct attr a;
    if (!rc)
        rc = attr_of(f, d.e[0].kind, d.e[0].env, d.e[0].point, d.e[0].arg, d.e[0].idx, &a);
    if (rc) {
        dirh_clear(&d);
        if (rc == -ENOENT && p->kind >= N_POINT) {
            /* nothing appears inside a point: cache the miss */
            struct fuse_entry_param e = {0};
            e.entry_timeout = IMMUTABLE_TIMEOUT;
            fuse_reply_entry(req, &e);
            return;
        }
        fuse_reply_err(req, -rc);
        return;
    }
    fuse_ino_t c;
    rc = node_get(f, p, &d.e[0], &c);
    dirh_clear(&d);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    struct fuse_entry_param e;
    attr_fill_entry(&e, c, &a);
    if (fuse_reply_entry(req, &e) != 0)
        node_forget(f, c, 1);
}

void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    node_forget(fs_of_req(req), ino, nlookup);
    fuse_reply_none(req);
}

void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    for (size_t i = 0; i < count; i++)
        node_forget(fs_of_req(req), forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
}

/* Reply with n's attributes; no_cache: a timeout of 0 (after a control file's setattr). */
static void reply_attr_of(struct fsd *f, fuse_req_t req, const struct node *n, bool no_cache)
{
    struct attr a;
    int rc = attr_of(f, n->kind, n->env, n->point, n->arg, n->idx, &a);
    if (rc) {
        fuse_reply_err(req, -rc);
        return;
    }
    a.st.st_ino = n->ino;
    fuse_reply_attr(req, &a.st, no_cache ? 0 : a.timeout);
}

void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *n = node_find(f, ino, &copy);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    reply_attr_of(f, req, n, false);
}

bool fs_owner_ok(struct fsd *f, fuse_req_t req)
{
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    return ctx->uid == 0 || ctx->uid == f->owner;
}

void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *n = node_find(f, ino, &copy);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!fs_is_ctl(n->kind) || (to_set & ~(FUSE_SET_ATTR_SIZE | FUSE_SET_ATTR_ATIME |
                                           FUSE_SET_ATTR_MTIME | FUSE_SET_ATTR_ATIME_NOW |
                                           FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_CTIME))) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!fs_owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    /* truncating a control file is a no-op (shells open with O_TRUNC) */
    reply_attr_of(f, req, n, true);
}

void ll_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *n = node_find(f, ino, &copy);
    if (!n || !fs_is_link(n->kind)) {
        fuse_reply_err(req, n ? EINVAL : ENOENT);
        return;
    }
    struct pinfo pi;
    if (n->kind == N_LATEST) {
        eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
        pi = env_point_latest(f, n->env);
        if (pi.found) {
            fuse_reply_readlink(req, pi.name);
            return;
        }
    } else {
        if (n->kind == N_LABEL) {
            pi = env_point_of_label(f, n->env, n->arg);
        } else {
            time_t t = 0;
            fs_parse_at_time(n->arg, &t);
            eview_refresh(f, n->env, ENV_TIMEOUT * 1000);
            pi = env_point_at(f, n->env, t);
        }
        if (pi.found) {
            char target[64];
            snprintf(target, sizeof target, "../%s", pi.name);
            fuse_reply_readlink(req, target);
            return;
        }
    }
    fuse_reply_err(req, ENOENT);
}

/* No OPENDIR: the first one is answered ENOSYS, and from then on the kernel opens and closes
 * directories without asking (no OPENDIR, no RELEASEDIR) and caches every directory's listing
 * until it is invalidated. `ls -lR` of 1000 points (5,000 directories) went from 1.9x to under
 * 1x the time on local disk. What that asks of the rest:
 *   - listings of directories that change (the root, environments, labels/, .operations/) are
 *     invalidated when they change (the refresher, and a started operation);
 *   - readdir has no handle: each request lists the directory and serves from its offset;
 *   - after the daemon died, the kernel may answer from its caches for up to ENV_TIMEOUT (1 s: the
 *     root's and environments' attributes and listings), then gives ENOTCONN; it never shows an
 *     empty directory. fs_mount_is_stale asks with statfs, which always reaches the daemon. (Not
 *     caching the root's attributes instead made every path walk through the root a GETATTR,
 *     with default_permissions: `ls -lR` took 10x as long.) */
void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    fuse_reply_err(req, ENOSYS);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi, bool plus)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *n = node_find(f, ino, &copy);
    if (!n) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (!fs_is_dir(n->kind)) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct dirh listing = {0}, *d = &listing;
    int lrc = listing_children(f, n, NULL, d);
    char *buf = lrc ? NULL : malloc(size);
    if (!buf) {
        dirh_clear(d);
        fuse_reply_err(req, lrc ? -lrc : ENOMEM);
        return;
    }
    size_t used = 0;
    int err = 0; /* an entry that could not be numbered: the reply ends before it */
    /* offsets: 1 = ".", 2 = "..", 3 + i = entry i */
    for (off_t i = off; i < (off_t)d->n + 2; i++) {
        size_t room = size - used;
        size_t len;
        if (i < 2) {
            struct stat st = {0};
            st.st_mode = S_IFDIR;
            st.st_ino = i == 0 ? n->ino : FUSE_ROOT_ID; /* parent ino is not used by the kernel */
            if (plus) {
                struct fuse_entry_param e = {0};
                e.attr = st;
                len = fuse_add_direntry_plus(req, buf + used, room, i == 0 ? "." : "..", &e,
                                             i + 1);
            } else {
                len = fuse_add_direntry(req, buf + used, room, i == 0 ? "." : "..", &st, i + 1);
            }
            if (len > room)
                break;
            used += len;
            continue;
        }
        const struct dent *de = &d->e[i - 2];
        if (plus) {
            struct attr a;
            int rc = attr_of(f, de->kind, de->env, de->point, de->arg, de->idx, &a);
            if (rc) {
                /* it went away (a point deleted meanwhile): skip it */
                continue;
            }
            fuse_ino_t c;
            if ((err = node_get(f, n, de, &c)))
                break;
            struct fuse_entry_param e;
            attr_fill_entry(&e, c, &a);
            len = fuse_add_direntry_plus(req, buf + used, room, de->name, &e, i + 1);
            if (len > room) {
                node_forget(f, c, 1);
                break;
            }
        } else {
            struct stat st = {0};
            st.st_ino = node_ino_peek(f, n, de);
            if (!st.st_ino) {
                err = -ENOMEM;
                break;
            }
            st.st_mode = fs_is_dir(de->kind) ? S_IFDIR : fs_is_link(de->kind) ? S_IFLNK : S_IFREG;
            len = fuse_add_direntry(req, buf + used, room, de->name, &st, i + 1);
            if (len > room)
                break;
        }
        used += len;
    }
    if (err && used == 0)
        fuse_reply_err(req, -err); /* not an empty (ended) listing */
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
    dirh_clear(d);
}

void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, false);
}

void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, fi, true);
}

void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct fsd *f = fs_of_req(req);
    struct statvfs sv = {0};
    struct cache_stats cs;
    cache_stats(f->o->cache, &cs);
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = cs.bytes / 4096;
    sv.f_namemax = 255;
    sv.f_files = f->n_nodes;
    sv.f_flag = ST_NOSUID | ST_NODEV;
    fuse_reply_statfs(req, &sv);
}
