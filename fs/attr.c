/* attr: the attributes of a node, or of a would-be node described by kind/env/point/arg/idx
 * (an entry listed or resolved before its node exists), and the entry the kernel is given for a
 * node. Owner and group are the mount's. Times: under a point, the point's; an environment, its
 * newest point's; latest, labels and at/ links, their point's; environment.json, operation and
 * control files, now; the rest, the mount's start. The kernel keeps attributes under a point (and
 * README.txt) for IMMUTABLE_TIMEOUT, environment.json, operation and control files not at all,
 * the rest for ENV_TIMEOUT.
 *
 * Limits: generated documents and control-file status are rendered to know their size; a
 * schema's size costs one fetch of its blob, then is kept in the view and in fsd.schema_memo (by
 * blob id, for every point that shares it).
 * Threading: any thread; takes fsd->vmu briefly, never across source or control calls, and holds
 * a point-view reference while it reads one. */
#include "fs/fs_int.h"

#include <errno.h>
#include <string.h>

#include "backend/base/log.h"

static void fill_common(struct fsd *f, struct stat *st, mode_t mode, uint64_t size, time_t mtime)
{
    st->st_mode = mode;
    st->st_nlink = S_ISDIR(mode) ? 2 : 1;
    st->st_size = (off_t)size;
    st->st_blocks = (blkcnt_t)((size + 511) / 512);
    st->st_blksize = 1 << 20;
    st->st_uid = f->owner;
    st->st_gid = f->group;
    st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = mtime;
}

static size_t count_subdirs_env(struct fsd *f, const char *env)
{
    size_t n = 0;
    pthread_mutex_lock(&f->vmu);
    struct eview *e = eview_find(f, env);
    if (e)
        n = e->n;
    pthread_mutex_unlock(&f->vmu);
    return n;
}

/* Attributes of a node (or a would-be node) described by kind/env/point/arg/idx. */
int attr_of(struct fsd *f, enum nkind kind, const char *env, const char *point,
            const char *arg, int idx, struct attr *a)
{
    memset(a, 0, sizeof *a);
    struct stat *st = &a->st;
    struct pview *v = NULL;
    struct buf b = BUF_INIT;
    int rc = 0;
    time_t pt_time = f->started;
    if (point) {
        point_name_to_time(point, &pt_time);
    }
    a->timeout = fs_is_immutable(kind) ? IMMUTABLE_TIMEOUT : ENV_TIMEOUT;
    switch (kind) {
    case N_ROOT: {
        pthread_mutex_lock(&f->vmu);
        size_t ne = f->n_envs;
        pthread_mutex_unlock(&f->vmu);
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        st->st_nlink = 3 + ne;
        break;
    }
    case N_README:
        fill_common(f, st, S_IFREG | 0444, docs_readme_len, f->started);
        a->timeout = IMMUTABLE_TIMEOUT;
        break;
    case N_OPS_DIR:
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        break;
    case N_OP_FILE:
        if (!f->o->control)
            return -ENOENT;
        rc = f->o->control->ops->ops_json(f->o->control->ctx, arg, &b);
        if (rc)
            break;
        fill_common(f, st, S_IFREG | 0444, b.len, time(NULL));
        a->timeout = 0;
        break;
    case N_ENV: {
        struct pinfo pi = env_point_latest(f, env);
        fill_common(f, st, S_IFDIR | 0555, 0, pi.found ? pi.taken_at : f->started);
        st->st_nlink = 4 + count_subdirs_env(f, env);
        break;
    }
    case N_ENV_JSON:
        docs_env_json(f, env, &b);
        fill_common(f, st, S_IFREG | 0444, b.len, time(NULL));
        a->timeout = 0;
        break;
    case N_BACKUP_CTL:
    case N_RESTORE_CTL: {
        struct node tmp = {.kind = kind, .env = (char *)env, .point = (char *)point};
        docs_status(f, &tmp, &b);
        fill_common(f, st, S_IFREG | 0644, b.len, time(NULL));
        a->timeout = 0;
        break;
    }
    case N_LATEST: {
        struct pinfo pi = env_point_latest(f, env);
        if (!pi.found)
            return -ENOENT;
        fill_common(f, st, S_IFLNK | 0777, strlen(pi.name), pi.taken_at);
        break;
    }
    case N_LABELS: case N_AT:
        fill_common(f, st, S_IFDIR | 0555, 0, f->started);
        break;
    case N_LABEL: case N_AT_LINK: {
        struct pinfo pi;
        if (kind == N_LABEL) {
            pi = env_point_of_label(f, env, arg);
        } else {
            time_t t;
            if (fs_parse_at_time(arg, &t))
                return -ENOENT;
            pi = env_point_at(f, env, t);
        }
        if (!pi.found)
            return -ENOENT;
        fill_common(f, st, S_IFLNK | 0777, 3 + strlen(pi.name), pi.taken_at);
        break;
    }
    case N_POINT:
        fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
        st->st_nlink = 6;
        break;
    case N_TABLES: case N_SCHEMA: case N_CHANGES:
        fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
        break;
    default:
        rc = pview_get(f, env, point, fs_needs_files(kind), &v);
        if (rc)
            break;
        if (!pview_index_ok(v, kind, idx)) {
            rc = -ENOENT;
            break;
        }
        switch (kind) {
        case N_BACKUP_JSON:
            fill_common(f, st, S_IFREG | 0444, v->backup_json.len, pt_time);
            break;
        case N_AUDIT: {
            int ti = v->p->audit_table ? fs_table_index(v->p, v->p->audit_table) : -1;
            if (ti < 0) {
                rc = -ENOENT;
                break;
            }
            fill_common(f, st, S_IFREG | 0444, v->p->tables[ti].bytes, pt_time);
            break;
        }
        case N_TABLE:
            fill_common(f, st, S_IFREG | 0444, v->p->tables[idx].bytes, pt_time);
            break;
        case N_CHANGE_FILE:
            fill_common(f, st, S_IFREG | 0444, v->p->tables[idx].changes_bytes, pt_time);
            break;
        case N_SCHEMA_FILE: {
            const char *id = v->p->tables[idx].schema;
            size_t id_len = strlen(id);
            struct schema_memo *slot = NULL; /* set only when the view has no size yet */
            pthread_mutex_lock(&f->vmu);
            int64_t sz = v->schema_size[idx];
            if (sz < 0 && id_len < sizeof slot->id) {
                slot = &f->schema_memo[fs_fnv1a(id) & (SCHEMA_MEMO_SLOTS - 1)];
                if (strcmp(slot->id, id) == 0)
                    sz = v->schema_size[idx] = slot->size;
            }
            pthread_mutex_unlock(&f->vmu);
            if (sz < 0) {
                struct dverr err = {0};
                rc = f->src->ops->blob_get(f->src->impl, id, &b, &err);
                if (rc) {
                    log_warn("mount: schema of %s: %s", v->p->tables[idx].name, dverr_msg(&err));
                    rc = -EIO;
                    break;
                }
                sz = (int64_t)b.len;
                pthread_mutex_lock(&f->vmu);
                v->schema_size[idx] = sz;
                if (slot) {
                    memcpy(slot->id, id, id_len + 1);
                    slot->size = sz;
                }
                pthread_mutex_unlock(&f->vmu);
            }
            fill_common(f, st, S_IFREG | 0444, (uint64_t)sz, pt_time);
            break;
        }
        case N_FILES: {
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            st->st_nlink = 2 + v->n_ftab;
            break;
        }
        case N_FILES_TABLE: {
            size_t recs = 0;
            const char *prev = NULL;
            for (size_t i = pview_files_seek(v, (size_t)idx, NULL);
                 i < v->n_files && v->files[i].tdir == (size_t)idx; i++) {
                if (!prev || strcmp(prev, v->files[i].rdir) != 0)
                    recs++;
                prev = v->files[i].rdir;
            }
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            st->st_nlink = 2 + recs;
            break;
        }
        case N_FILES_RECORD:
            fill_common(f, st, S_IFDIR | 0555, 0, pt_time);
            break;
        case N_FILE:
            fill_common(f, st, S_IFREG | 0444, v->p->files[v->files[idx].idx].size, pt_time);
            break;
        default:
            rc = -ENOENT;
        }
        break;
    }
    pview_put(f, v);
    buf_release(&b);
    return rc;
}

void attr_fill_entry(struct fuse_entry_param *e, fuse_ino_t ino, const struct attr *a)
{
    memset(e, 0, sizeof *e);
    e->ino = ino;
    e->attr = a->st;
    e->attr.st_ino = ino;
    e->attr_timeout = a->timeout;
    e->entry_timeout = a->timeout;
}
