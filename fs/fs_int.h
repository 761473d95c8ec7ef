/* fs_int: the FUSE view's internals, shared by the files of fs/ and included by nothing outside
 * it (callers use fs/fs.h). The view, by file:
 *   fs.c          the mount's lifecycle: session, threads, the table of operations, teardown
 *   node.c        inode numbers: encoded for everything under a point (no state), kernel-known
 *                 nodes for the rest (the node tables); hashing, kind predicates
 *   env_view.c    the environment list, each environment's points and labels, and the point a
 *                 name, latest, a label or a time resolves to
 *   point_view.c  loaded points with their file names, an LRU within FS_POINT_BYTES
 *   docs.c        generated documents: README.txt, environment.json, control-file status
 *   attr.c        attributes of a node or a would-be node, and the kernel's entry for a node
 *   listing.c     a directory's children, and the resolution of one name
 *   ops_tree.c    lookup, forget, getattr, setattr, readlink, opendir, readdir(plus), statfs
 *   ops_open.c    open, release, flush: cache sources, page cache or passthrough, handles
 *   ops_read.c    read, and the completer thread that answers reads waiting for a fill
 *   ops_write.c   control-file writes, rmdir, EROFS for every other change
 *   refresher.c   the refresher thread, which tells the kernel what changed
 *
 * Locks: four, never nested (none is taken while another is held). None is held across source,
 * control or cache calls, nor across fuse_lowlevel_notify_* (fsd.mu is held across registering a
 * passthrough backing file, an ioctl).
 *   fsd.mu       the node tables, the nodes' LRU, every node's nlookup and child count, the
 *                point numbers, the open counts, the list of handles
 *   fsd.vmu      the environment list, the environment views, the point views' LRU and hash
 *                table, each point view's refs and schema sizes, the schema memo's slots
 *   fsd.stop_mu  the refresher's wake-up and stop flags (with stop_cond)
 *   fsd.cq_mu    the completer's queue (with cq_cond; the queue is in ops_read.c)
 * Every field below names its lock, or says why it needs none: "setup" means set by fs_run before
 * the session loop and the threads start, and never changed while they run; "immutable" means set
 * before the object is reachable by another thread.
 * Threading: FUSE worker threads, the refresher, the completer and the cache's fill threads. */
#ifndef DVSNAP_FS_INT_H
#define DVSNAP_FS_INT_H

#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include "backend/base/util.h"
#include "fs/fs.h"

struct aread;       /* a read waiting for a fill (ops_read.c) */
struct passthrough; /* fs/passthrough.h */

#define IMMUTABLE_TIMEOUT 86400.0 /* the kernel's cache of entries and attributes under a point */
#define ENV_TIMEOUT 1.0           /* elsewhere; also the age at which requests refresh a list */
#define CTL_BIT (1ULL << 63)      /* set in control files' inode numbers, clear in all others */
/* An inode number with ENC_BIT set is encoded: everything under a point (N_POINT and below) is
 * numbered CTL_BIT? | ENC_BIT | kind << 57 | point number << 32 | index, and needs no node (node.c).
 * A point's number is a hash of its environment and name, kept for the mount's life. */
#define ENC_BIT (1ULL << 62)
#define ENC_KIND_SHIFT 57
#define ENC_POINT_SHIFT 32
#define ENC_POINT_BITS 25         /* 33M points a mount */
#define ENC_POINT_BLOCK 4096      /* point numbers are kept in blocks of this many (never moved) */

enum nkind {
    N_ROOT, N_README, N_OPS_DIR, N_OP_FILE,
    N_ENV, N_ENV_JSON, N_BACKUP_CTL, N_LATEST, N_LABELS, N_LABEL, N_AT, N_AT_LINK,
    N_POINT, N_BACKUP_JSON, N_RESTORE_CTL, N_AUDIT, N_TABLES, N_TABLE, N_SCHEMA, N_SCHEMA_FILE,
    N_CHANGES, N_CHANGE_FILE, N_FILES, N_FILES_TABLE, N_FILES_RECORD, N_FILE,
};

/* An inode: a kernel-known node outside the points (node.c), or what an encoded inode number
 * says (node_find fills one in: path, parent and arg NULL, the strings the point number's). A
 * linked node's fields but nlookup, n_children and the chains are immutable: set before the node
 * is linked. A node stays linked while the kernel knows it (nlookup > 0) or while one of its
 * children is linked (n_children > 0), so a child's parent, and the env and point strings it
 * borrows from it, outlive the child; handlers read a copy of the immutable fields. */
struct node {
    fuse_ino_t ino;            /* immutable */
    uint64_t nlookup;          /* fsd->mu */
    struct node *parent;       /* immutable; NULL for the root */
    char *path;                /* immutable: "/env/..." ("" for the root; NULL if encoded) */
    uint64_t phash;            /* immutable: fs_fnv1a(path) */
    char *env, *point, *arg;   /* immutable; NULL when not relevant; env may be the parent's
                                  (see owns); point only in an encoded node's copy */
    int idx;                   /* immutable: an index in the point view: a table (N_TABLE,
                                  N_SCHEMA_FILE, N_CHANGE_FILE), a files/ table directory
                                  (N_FILES_TABLE), a file (N_FILE; for N_FILES_RECORD, its
                                  first file) */
    enum nkind kind;           /* immutable */
    uint8_t owns;              /* immutable: NODE_OWNS_ENV when it frees env */
    bool in_lru;               /* fsd->mu: in fsd.lru (kernel-known, no invalidation asked) */
    uint32_t n_children;       /* fsd->mu: linked nodes whose parent this is */
    struct node *inext, *pnext; /* fsd->mu */
    struct node *lprev, *lnext; /* fsd->mu: fsd.lru, least recently looked up first */
};

/* What a point number stands for (node.c). Immutable once given. */
struct point_number {
    const char *env;           /* in fsd.pn_envs */
    char name[32];
    uint32_t number;           /* below 2^ENC_POINT_BITS */
    uint32_t next, nnext;      /* hash chains by name and by number: the next slot + 1, 0 at the
                                  end (fsd->mu) */
};

#define PN_BUCKETS 65536 /* a power of two */
/* Point numbers given at most: half the number space, so a new number's probing stays short. */
#define PN_MAX_SLOTS ((1u << ENC_POINT_BITS) / 2)

#define NODE_OWNS_ENV 1

/* Kernel-known nodes (outside the points) kept at most (see node_trim): fs_opts.max_nodes
 * (--max-nodes), or this. */
#define FS_MAX_NODES_DEFAULT 200000

/* One environment's points and labels (env_view.c). Kept until the mount ends. All fields vmu,
 * but name (immutable). */
struct eview {
    char *name;                /* real unique name; immutable */
    struct point_summary *pts; /* vmu; oldest first */
    size_t n;                  /* vmu */
    int64_t at_ms;             /* vmu: when pts was read */
    uint64_t hash;             /* vmu: of the point names and labels */
    char (*labels)[256];       /* vmu: sanitised unique label names */
    size_t *label_pt;          /* vmu: index in pts */
    size_t n_labels;           /* vmu */
    /* changed since the refresher last told the kernel, by whichever thread saw it, and the
     * points that went away meanwhile (vmu) */
    bool notify;
    char (*gone)[32];
    size_t n_gone;
    char (*reheld)[32];        /* vmu: points whose hold was placed or released meanwhile */
    size_t n_reheld;
    struct eview *next;        /* vmu */
};

struct ffile {                 /* one entry under files/ (immutable, part of its pview) */
    uint32_t tdir;             /* index in ftab */
    uint32_t idx;              /* index in point->files */
    const char *rdir;          /* record directory name (in the view's names: shared by the
                                  record's files) */
    const char *fname;         /* file name, unique within the record directory (the view's
                                  names) */
};

/* A loaded point and its names (point_view.c). Fields not marked vmu are immutable: set before
 * the view is in the LRU, read by holders of a reference without a lock. */
struct pview {
    char *env, *name;
    uint64_t key;              /* fs_fnv1a of env and name: compared before the strings */
    size_t bytes;              /* an estimate of the memory it holds (pview_bytes) */
    int refs;                  /* vmu */
    bool dead;                 /* vmu: dropped (pview_drop), out of the LRU; freed at refs 0 */
    struct point *p;
    char (*tnames)[256];       /* tables/<tnames[i]> for p->tables[i] */
    int64_t *schema_size;      /* vmu; -1 unknown */
    char (*ftab)[256];
    size_t n_ftab;
    struct ffile *files;
    size_t n_files;
    struct buf backup_json;
    struct pview *prev, *next; /* LRU, vmu */
    struct pview *hnext;       /* chain in fsd.pv_hash, vmu */
    bool with_files;           /* its point was loaded with its file list, and files is built
                                  (else files is empty: the point's list may be unread) */
    struct arena names;        /* the files' rdir and fname strings */
};

#define PV_BUCKETS 4096 /* a power of two */

/* Sizes of schema documents by blob id, for every point: a blob id is its content's hash, so a
 * size never changes, and the points of an environment share most of their schemas (700 of them
 * in the 700-table org: without it, a cold `ls -lR` fetched and decrypted every schema of every
 * point). Direct-mapped: a slot holds the last id that hashed to it. */
#define SCHEMA_MEMO_SLOTS 8192 /* a power of two; 80 bytes a slot */

struct schema_memo {
    char id[72];               /* a blob id (64 hex digits); "" when empty */
    int64_t size;
};

/* The view's state: one per mount, the session's userdata (fs_of_req). */
struct fsd {
    const struct fs_opts *o;   /* setup */
    const struct fs_source *src; /* setup */
    struct fuse_session *se;   /* setup */
    uid_t owner;               /* setup */
    gid_t group;               /* setup */
    time_t started;            /* setup */

    pthread_mutex_t mu;
    struct node **by_ino, **by_path; /* mu */
    size_t n_buckets, n_nodes;       /* mu (ll_statfs reads n_nodes without it: an estimate) */
    struct node *lru_first, *lru_last; /* mu: the nodes the kernel may be asked to drop, least
                                          recently looked up first (node_trim) */
    size_t n_lru;                    /* mu */
    size_t max_nodes;                /* setup: node_trim keeps n_lru at most this */
    bool trim_asked;                 /* mu: the refresher was woken to trim and has not yet */
    struct point_number **pn_blocks; /* mu: point numbers' blocks (ENC_POINT_BLOCK each; a block
                                        is never moved, so its strings can be read without mu) */
    uint32_t *pn_hash;               /* mu: PN_BUCKETS chains of point numbers' slots (slot + 1),
                                        by env and name */
    uint32_t *pn_nhash;              /* mu: the same by number */
    uint32_t n_points;               /* mu: point numbers given (slots used) */
    char **pn_envs;                  /* mu: environment names the point numbers point at */
    size_t n_pn_envs;                /* mu */

    pthread_mutex_t vmu;
    char **env_names;          /* vmu: real names, sorted */
    char (*env_dnames)[256];   /* vmu: directory names */
    size_t n_envs;             /* vmu */
    int64_t envs_at;           /* vmu */
    uint64_t envs_hash;        /* vmu */
    struct eview *eviews;      /* vmu */
    struct pview *lru_head, *lru_tail; /* vmu */
    size_t n_pviews, pview_bytes; /* views held, and their estimated bytes (vmu) */
    struct pview *pv_hash[PV_BUCKETS]; /* the views in the LRU by key (a list walk missed the
                                          CPU cache on every view: 1000 points cost ~1M misses)
                                          (vmu) */

    struct schema_memo *schema_memo; /* SCHEMA_MEMO_SLOTS of them (setup; the slots vmu) */

    pthread_t refresher;       /* fs_run's thread only */
    bool refresher_started;    /* fs_run's thread only */
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cond;
    bool stopping;             /* stop_mu */
    bool refresh_now;          /* a change was seen: run the refresher's pass now (stop_mu) */
    bool trim_now;             /* too many nodes: run node_trim now (stop_mu) */
    bool envs_notify;          /* the environment list changed since the kernel was told (vmu) */

    /* reads answered when the cache has their bytes (see ll_read) */
    pthread_mutex_t cq_mu;
    pthread_cond_t cq_cond;
    struct aread *cq_head, *cq_tail; /* cq_mu */
    pthread_t completer;       /* fs_run's thread only */
    bool completer_started;    /* setup */
    bool cq_stop;              /* cq_mu */

    uint64_t ops_hash;            /* the .operations listing the refresher saw last (refresher
                                     thread only) */
    struct passthrough *pt;       /* FUSE passthrough of cached files (see open_mode_pick);
                                     setup */
    struct open_count *open_counts; /* cached files open, per inode (mu) */
    struct handle *handles;       /* every open file (mu): those whose RELEASE never came are
                                     freed when the session ends */
};

/* How a cached file's inode is open, for the kernel's rule that an inode is open either through
 * the FUSE page cache or through passthrough, never both at once. Kept per inode number (not in
 * the node: a FORGET can overtake the last RELEASE). Counts only grow before the reply and only
 * shrink at RELEASE, which the kernel sends after it let go of the open, so they never
 * undercount. Every field fsd->mu. */
struct open_count {
    fuse_ino_t ino;
    int cached, passthrough;
    int backing_id;           /* registered while passthrough > 0 */
    struct open_count *next;
};

/* A child as listed or resolved: what its node will be (listing.c). Its strings are in its
 * listing's string blocks. Owned by one request. */
struct dent {
    const char *name;
    enum nkind kind;
    const char *env, *point, *arg;
    int idx;
};

struct dirh {                  /* a listing; owned by one request */
    struct dent *e;
    size_t n, cap;
    struct arena strings;      /* the entries' strings: one allocation for many entries */
};

enum htype { H_MEM, H_CACHE, H_CTL };

enum open_mode { OPEN_UNCOUNTED, OPEN_CACHED, OPEN_PASSTHROUGH };

/* An open file (ops_open.c). Built by ll_open before its reply; then used by that open's read,
 * write and release, which the kernel sends only after the reply, so only the chain needs a
 * lock. */
struct handle {
    enum htype type;
    struct buf mem;            /* H_MEM and the status of H_CTL */
    struct cache_file *cf;
    bool write;
    enum open_mode mode;       /* H_CACHE: counted in f->open_counts as */
    struct handle *prev, *next; /* f->handles (f->mu) */
};

struct pinfo {                 /* the point a name resolves to (a copy: no lock) */
    char name[32];
    time_t taken_at;
    bool found;
};

struct attr {                  /* a node's attributes and how long the kernel may keep them */
    struct stat st;
    double timeout;
};

/* ---- fs.c ---- */
/* The view of the session a request came on. */
struct fsd *fs_of_req(fuse_req_t req);

/* ---- node.c ---- */
/* 64-bit FNV-1a of a string. */
uint64_t fs_fnv1a(const char *s);
bool fs_is_ctl(enum nkind k);       /* a control file */
bool fs_is_dir(enum nkind k);
bool fs_is_link(enum nkind k);
bool fs_is_immutable(enum nkind k); /* under a restore point: never changes */
char *fs_xstrdup(const char *s);    /* strdup, NULL for NULL */
/* fsd->mu held (or before the session starts, for node_link). */
struct node *node_by_path(struct fsd *f, const char *path, uint64_t h);
void node_link(struct fsd *f, struct node *n);
/* Free an unlinked node; free the point numbers (at teardown). */
void node_free(struct node *n);
void node_numbers_free(struct fsd *f);
/* These take fsd->mu. */
/* The inode number child d of parent has or would get (for plain readdir); 0 when it has none. */
fuse_ino_t node_ino_peek(struct fsd *f, const struct node *parent, const struct dent *d);
/* The inode number of child d of parent in *ino, taking one lookup reference (for a node outside
 * the points: found or created). 0, -ENOMEM, -EOVERFLOW (out of point numbers), -ENOENT (the
 * parent was forgotten meanwhile). */
int node_get(struct fsd *f, const struct node *parent, const struct dent *d, fuse_ino_t *ino);
/* The inode ino (a copy in *out, which it returns), or NULL when it is not known. */
struct node *node_find(struct fsd *f, fuse_ino_t ino, struct node *out);
void node_forget(struct fsd *f, fuse_ino_t ino, uint64_t nlookup);
/* n for a log line: its path, or what an encoded node is ("table 3 of env/point"), in buf. */
const char *node_describe(const struct node *n, char *buf, size_t size);
/* The inode number of the node at path (outside the points) if the kernel knows it, else 0. */
fuse_ino_t node_path_ino(struct fsd *f, const char *path);
/* The inode number of kind (N_POINT or below, no index) in env/point if the kernel may know it
 * (the point was numbered), else 0. */
fuse_ino_t node_point_ino(struct fsd *f, const char *env, const char *point, enum nkind kind);
/* Ask the kernel to drop the least recently looked-up leaf entries until at most 7/8 of
 * f->max_nodes are in the LRU (fuse_lowlevel_notify_inval_entry; it then sends FORGET). Only
 * from a thread that is not a FUSE request handler (the refresher); takes fsd->mu, not across
 * the notifications. */
void node_trim(struct fsd *f);

/* ---- env_view.c ---- */
/* The view of env, or NULL; vmu held. */
struct eview *eview_find(struct fsd *f, const char *env);
/* Refresh env's points, or the environment list, when older than max_age_ms (0 or -1: always).
 * 1 when it changed (a first read is no change), 0 when not, -errno. A change wakes the
 * refresher. They take vmu, not across the source's calls. */
int eview_refresh(struct fsd *f, const char *env, int max_age_ms);
int envs_refresh(struct fsd *f, int max_age_ms);
/* The point name is in env (re-reading the list once on a miss), the newest point, the newest
 * point taken at or before t, the point labelled label. They take vmu. */
struct pinfo env_point_lookup(struct fsd *f, const char *env, const char *name);
struct pinfo env_point_latest(struct fsd *f, const char *env);
struct pinfo env_point_at(struct fsd *f, const char *env, time_t t);
struct pinfo env_point_of_label(struct fsd *f, const char *env, const char *label);

/* ---- point_view.c ---- */
/* A referenced view of env/point (-ENOENT when the point does not exist, -EIO, -ENOMEM); put it
 * back with pview_put. Both take vmu. with_files: a view with the point's files (what files/
 * needs: fs_needs_files), which costs reading the file list (one object a ~512 files); the
 * other views leave it unread when the store lets them. */
int pview_get(struct fsd *f, const char *env, const char *point, bool with_files,
              struct pview **out);
/* A node of kind needs the point's files (files/ and below). */
bool fs_needs_files(enum nkind kind);
void pview_put(struct fsd *f, struct pview *v);
/* Free a view nobody holds (out of the LRU, or at teardown). */
void pview_free(struct fsd *f, struct pview *v);
/* Drop the views of env/point (their backup.json changed: a hold): the next pview_get loads the
 * point again; a view in use is freed when its last holder puts it back. Takes vmu. */
void pview_drop(struct fsd *f, const char *env, const char *point);
/* The index of the first file of table directory tdir whose record directory is rdir (the table
 * directory's first file when rdir is NULL), or where it would be (v->files is sorted by table
 * directory, then record directory). */
size_t pview_files_seek(const struct pview *v, size_t tdir, const char *rdir);
/* idx is within v for a node of kind (a table, a files/ table, a file), or kind has none. */
bool pview_index_ok(const struct pview *v, enum nkind kind, int idx);
/* The index of table name in p->tables, or -1. */
int fs_table_index(const struct point *p, const char *name);

/* ---- docs.c ---- */
extern const char docs_readme_text[]; /* README.txt */
extern const size_t docs_readme_len;
/* environment.json of env (takes vmu); what reading control file n shows. Appended to out. */
int docs_env_json(struct fsd *f, const char *env, struct buf *out);
int docs_status(struct fsd *f, const struct node *n, struct buf *out);

/* ---- attr.c ---- */
/* Attributes of a node (or a would-be node) described by kind/env/point/arg/idx. */
int attr_of(struct fsd *f, enum nkind kind, const char *env, const char *point, const char *arg,
            int idx, struct attr *a);
void attr_fill_entry(struct fuse_entry_param *e, fuse_ino_t ino, const struct attr *a);

/* ---- listing.c ---- */
void dirh_clear(struct dirh *d);
/* Every listed child of n (with only != NULL, just that one); 0 or -errno (-ENOTDIR). */
int listing_children(struct fsd *f, const struct node *n, const char *only, struct dirh *d);
/* Resolve one child name (including what is never listed). 0 with d->n == 1, or -ENOENT. */
int listing_resolve(struct fsd *f, const struct node *n, const char *name, struct dirh *d);

/* ---- ops_tree.c, ops_open.c, ops_read.c, ops_write.c: the low-level operations ---- */
void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup);
void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets);
void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                struct fuse_file_info *fi);
void ll_readlink(fuse_req_t req, fuse_ino_t ino);
void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                struct fuse_file_info *fi);
void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi);
void ll_statfs(fuse_req_t req, fuse_ino_t ino);
void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi);
void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi);
void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
              struct fuse_file_info *fi);
void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_erofs_entry(fuse_req_t req, fuse_ino_t parent, const char *name);
void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode);
void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev);
void ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name);
void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
               const char *newname, unsigned int flags);
void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname);
void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
               struct fuse_file_info *fi);
/* Root or the mount's owner: who may write control files and rmdir (ops_tree.c). */
bool fs_owner_ok(struct fsd *f, fuse_req_t req);
/* Free a handle (ops_open.c; also for those left open when the session ends). */
void handle_free(struct handle *h);
/* The completer thread (ops_read.c): answers the reads queued on cq_head until cq_stop. */
void *completer_main(void *arg);

/* ---- refresher.c ---- */
/* The refresher thread, until stopping. */
void *refresher_main(void *arg);
/* Have the refresher run its pass now (any thread; takes stop_mu). */
void refresher_wake(struct fsd *f);
/* Have the refresher run node_trim now (any thread; takes stop_mu). */
void refresher_wake_trim(struct fsd *f);
/* Drop the kernel's listing of .operations/ (a new operation; any thread). */
void fs_ops_dir_changed(struct fsd *f);

#endif
