/* ops_write: the operations that change something. A write to a control file (one line: a label
 * to ENV/.backup, `target=...` to ENV/POINT/.restore) goes to struct fs_control, which validates
 * it and starts the operation in the background; rmdir of a point has the source forget it (a
 * manual point; a system point is EPERM); every other change is EROFS (unlink, mkdir, mknod,
 * symlink, rename, link, create).
 *
 * Limits: a control write is one line of at most 4096 bytes (trailing newlines, CRs and spaces
 * dropped), from root or the mount's owner (else EACCES), as is rmdir.
 * Threading: FUSE worker threads; no lock is held here (control and source calls run without the
 * view's locks). */
#include "fs/fs_int.h"

#include <errno.h>
#include <string.h>

#include "backend/base/log.h"

void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi)
{
    struct fsd *f = fs_of_req(req);
    struct handle *h = (struct handle *)(uintptr_t)fi->fh;
    struct node copy, *n = node_find(f, ino, &copy);
    if (!n || h->type != H_CTL || !h->write || !f->o->control) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!fs_owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    if (size > 4096) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    char line[4097];
    memcpy(line, buf, size);
    line[size] = '\0';
    size_t len = size;
    while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
        line[--len] = '\0';
    if (memchr(line, '\n', len) || strlen(line) != len) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    struct dverr err = {0};
    int rc;
    if (n->kind == N_BACKUP_CTL)
        rc = f->o->control->ops->backup(f->o->control->ctx, n->env, line, &err);
    else
        rc = f->o->control->ops->restore(f->o->control->ctx, n->env, n->point, line, &err);
    if (rc) {
        char what[400];
        log_info("mount: %s refused: %s", node_describe(n, what, sizeof what), dverr_msg(&err));
        fuse_reply_err(req, -rc);
        return;
    }
    fuse_reply_write(req, size);
    fs_ops_dir_changed(f);
}

void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct fsd *f = fs_of_req(req);
    struct node copy, *p = node_find(f, parent, &copy);
    if (!p) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    if (p->kind != N_ENV) {
        fuse_reply_err(req, EROFS);
        return;
    }
    if (!fs_owner_ok(f, req)) {
        fuse_reply_err(req, EACCES);
        return;
    }
    struct pinfo pi = env_point_lookup(f, p->env, name);
    if (!pi.found) {
        bool special = strcmp(name, "labels") == 0 || strcmp(name, "at") == 0;
        fuse_reply_err(req, special ? EPERM : ENOENT);
        return;
    }
    struct dverr err = {0};
    int rc = f->src->ops->forget(f->src->impl, p->env, name, &err);
    if (rc) {
        log_info("mount: rmdir %s/%s: %s", p->env, name, dverr_msg(&err));
        fuse_reply_err(req, rc == -EPERM || rc == -ENOENT || rc == -EBUSY ? -rc : EIO);
        return;
    }
    eview_refresh(f, p->env, -1);
    fuse_reply_err(req, 0);
}

void ll_erofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    fuse_reply_err(req, EROFS);
}

void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
    fuse_reply_err(req, EROFS);
}

void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
    fuse_reply_err(req, EROFS);
}

void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags)
{
    fuse_reply_err(req, EROFS);
}

void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
    fuse_reply_err(req, EROFS);
}

void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi)
{
    fuse_reply_err(req, EROFS);
}
