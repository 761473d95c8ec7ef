/* segment_sort: the external sort behind segment writers and full table reads (segment.h,
 * struct segment_sorter). Entries (op, key, line) come in any order and leave in key order, one
 * per key, the last added winning, with memory bounded by the budget whatever the count.
 *
 * Entries are buffered in an arena; beyond the budget the buffer is sorted, reduced to one entry
 * per key and spilled as a run: blocks of about RUN_BLOCK bytes of entries (segment entry
 * encoding), each zstd-compressed at level 1 ("u32 raw size, u32 compressed size, bytes"), so a
 * spill costs about a sixth of the lines on disk. Runs live in level files (one unlinked temp
 * file per level, so descriptors do not grow with the data): when level L holds RUN_FANIN runs
 * they are merged into one run appended to level L+1 and L's file is emptied; each entry is thus
 * rewritten about log16(data / budget) times and a merge reads at most RUN_FANIN runs at once.
 * Level L+1's runs are older than level L's, and within a level the earlier run is older, which is
 * what "the last added wins" needs. Input that arrives already in key order (every key above the
 * one before) is never merged: its runs follow each other in the level-0 file and the drain reads
 * them in sequence.
 * The drain is a binary heap over every run and the buffer, ordered by (key, newest first).
 * Memory: the buffer (budget), plus RUN_BLOCK and its compressed copy per run being read
 * (at most RUN_FANIN per level during a drain).
 * Threading: a sorter belongs to one thread at a time. */
#include "backend/repo/segment_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define RUN_BLOCK (128u << 10)
#define RUN_FANIN 16
#define RUN_LEVELS 12 /* 16^12 budgets: more than any disk */

struct sentry {
    const char *p;           /* key bytes then line bytes, in the arena */
    uint32_t key_len, line_len;
    uint64_t seq;
    char op;
};

struct run_ref {
    uint64_t off, len;       /* byte range in its level's file */
};

struct level {
    int fd;                  /* -1 until first used */
    uint64_t end;            /* bytes written */
    struct run_ref *runs;
    size_t n, cap;
};

struct segment_sorter {
    char *tmp_dir;
    size_t budget, used;
    struct sentry *ents;
    size_t n, cap;
    uint64_t seq, added;
    struct arena arena;      /* the entries' key and line bytes; its block from the budget */
    bool ordered;            /* every key so far above the one before */
    struct buf last_key;
    struct level levels[RUN_LEVELS];
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    struct buf block, zblock; /* spill scratch */
};

static atomic_uint sort_tmp_counter;

int segment_sorter_new(const char *tmp_dir, size_t budget, struct segment_sorter **out,
                       struct dverr *err)
{
    *out = NULL;
    int rc = mkdir_p(tmp_dir, 0700);
    if (rc)
        return dverr_set(err, rc, "creating %s: %s", tmp_dir, strerror(-rc));
    struct segment_sorter *s = calloc(1, sizeof *s);
    if (!s || !(s->tmp_dir = strdup(tmp_dir))) {
        free(s);
        return dverr_set(err, -ENOMEM, "out of memory");
    }
    s->budget = budget < 4096 ? 4096 : budget;
    size_t block = s->budget / 8; /* an eighth of the budget, 4 KiB to 1 MiB */
    s->arena.block = block < 4096 ? 4096 : block > (1u << 20) ? (1u << 20) : block;
    s->ordered = true;
    for (int i = 0; i < RUN_LEVELS; i++)
        s->levels[i].fd = -1;
    *out = s;
    return 0;
}

void segment_sorter_free(struct segment_sorter *s)
{
    if (!s)
        return;
    for (int i = 0; i < RUN_LEVELS; i++) {
        if (s->levels[i].fd >= 0)
            close(s->levels[i].fd);
        free(s->levels[i].runs);
    }
    arena_release(&s->arena);
    free(s->ents);
    free(s->tmp_dir);
    buf_release(&s->last_key);
    buf_release(&s->block);
    buf_release(&s->zblock);
    ZSTD_freeCCtx(s->cctx);
    ZSTD_freeDCtx(s->dctx);
    free(s);
}

uint64_t segment_sorter_count(const struct segment_sorter *s)
{
    return s ? s->added : 0;
}

/* n bytes of the arena, counted in the sorter's use. */
static char *sort_bytes(struct segment_sorter *s, size_t n)
{
    size_t before = s->arena.bytes;
    char *p = arena_bytes(&s->arena, n);
    s->used += s->arena.bytes - before;
    return p;
}

static int sentry_cmp(const void *a, const void *b)
{
    const struct sentry *x = a, *y = b;
    int c = key_cmp(x->p, x->key_len, y->p, y->key_len);
    if (c)
        return c;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort the buffer and keep the last entry of each key; returns the new count. */
static size_t sort_dedupe(struct segment_sorter *s)
{
    if (s->n == 0)
        return 0;
    if (!s->ordered)
        qsort(s->ents, s->n, sizeof *s->ents, sentry_cmp);
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (i + 1 < s->n && key_cmp(s->ents[i].p, s->ents[i].key_len, s->ents[i + 1].p,
                                    s->ents[i + 1].key_len) == 0)
            continue; /* a later entry of the same key follows */
        s->ents[o++] = s->ents[i];
    }
    s->n = o;
    return o;
}

/* ---------- runs: writing ---------- */

static int level_fd(struct segment_sorter *s, int lv, struct dverr *err)
{
    struct level *l = &s->levels[lv];
    if (l->fd >= 0)
        return 0;
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/sort-%d-%u", s->tmp_dir, (int)getpid(),
                 atomic_fetch_add(&sort_tmp_counter, 1)) >= (int)sizeof path)
        return dverr_set(err, -ENAMETOOLONG, "temporary directory name too long");
    l->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (l->fd < 0)
        return dverr_set(err, -errno, "creating a sort run in %s: %s", s->tmp_dir,
                         strerror(errno));
    unlink(path); /* anonymous: vanishes with the descriptor, even after a crash */
    return 0;
}

static int pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    while (n) {
        ssize_t w = pwrite(fd, c, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

/* A run being written at the end of level lv's file. */
struct run_out {
    struct segment_sorter *s;
    int lv;
    uint64_t start;
};

static int run_flush_block(struct run_out *o, struct dverr *err)
{
    struct segment_sorter *s = o->s;
    if (!s->block.len)
        return 0;
    if (!s->cctx && !(s->cctx = ZSTD_createCCtx()))
        return dverr_set(err, -ENOMEM, "out of memory");
    size_t bound = ZSTD_compressBound(s->block.len);
    buf_reset(&s->zblock);
    if (buf_reserve(&s->zblock, bound + 8))
        return dverr_set(err, -ENOMEM, "out of memory");
    size_t z = ZSTD_compressCCtx(s->cctx, s->zblock.data + 8, bound, s->block.data, s->block.len,
                                 1);
    if (ZSTD_isError(z))
        return dverr_set(err, -EIO, "zstd: %s", ZSTD_getErrorName(z));
    put_u32((unsigned char *)s->zblock.data, (uint32_t)s->block.len);
    put_u32((unsigned char *)s->zblock.data + 4, (uint32_t)z);
    struct level *l = &s->levels[o->lv];
    int rc = pwrite_all(l->fd, s->zblock.data, z + 8, l->end);
    if (rc)
        return dverr_set(err, rc, "writing a sort run in %s: %s", s->tmp_dir, strerror(-rc));
    l->end += z + 8;
    buf_reset(&s->block);
    return 0;
}

static int run_begin(struct segment_sorter *s, int lv, struct run_out *o, struct dverr *err)
{
    *o = (struct run_out){s, lv, 0};
    int rc = level_fd(s, lv, err);
    if (rc)
        return rc;
    o->start = s->levels[lv].end;
    buf_reset(&s->block);
    return 0;
}

static int run_add(struct run_out *o, const struct segment_entry *e, struct dverr *err)
{
    struct segment_sorter *s = o->s;
    unsigned char hdr[24];
    size_t h = 0;
    hdr[h++] = (unsigned char)e->op;
    h += put_varint(hdr + h, e->key_len);
    h += put_varint(hdr + h, e->line_len);
    int rc = buf_add(&s->block, hdr, h);
    if (!rc)
        rc = buf_add(&s->block, e->key, e->key_len);
    if (!rc && e->line_len)
        rc = buf_add(&s->block, e->line, e->line_len);
    if (rc)
        return dverr_set(err, rc, "out of memory");
    return s->block.len >= RUN_BLOCK ? run_flush_block(o, err) : 0;
}

static int run_end(struct run_out *o, struct dverr *err)
{
    int rc = run_flush_block(o, err);
    if (rc)
        return rc;
    struct level *l = &o->s->levels[o->lv];
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct run_ref *v = realloc(l->runs, cap * sizeof *v);
        if (!v)
            return dverr_set(err, -ENOMEM, "out of memory");
        l->runs = v;
        l->cap = cap;
    }
    l->runs[l->n++] = (struct run_ref){o->start, l->end - o->start};
    return 0;
}

/* ---------- runs: reading ---------- */

struct run_in {
    int fd;
    uint64_t off, end;
    struct buf z, raw;
    size_t pos;
    struct segment_entry e;
    int rank;                /* higher: newer */
    bool have;
};

/* The next entry of the run into r->e: 1, 0 at its end, -errno. */
static int run_next(struct segment_sorter *s, struct run_in *r)
{
    if (r->pos >= r->raw.len) {
        if (r->off >= r->end)
            return 0;
        unsigned char h[8];
        ssize_t n = pread(r->fd, h, 8, (off_t)r->off);
        if (n != 8)
            return -EIO;
        uint32_t raw = get_u32(h), z = get_u32(h + 4);
        if (raw > RUN_BLOCK + SEGMENT_MAX_LINE + SEGMENT_MAX_KEY + 32 || z > r->end - r->off - 8)
            return -EIO;
        buf_reset(&r->z);
        buf_reset(&r->raw);
        if (buf_reserve(&r->z, z) || buf_reserve(&r->raw, raw))
            return -ENOMEM;
        for (size_t got = 0; got < z;) {
            ssize_t k = pread(r->fd, r->z.data + got, z - got, (off_t)(r->off + 8 + got));
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return -EIO;
            got += (size_t)k;
        }
        if (!s->dctx && !(s->dctx = ZSTD_createDCtx()))
            return -ENOMEM;
        size_t d = ZSTD_decompressDCtx(s->dctx, r->raw.data, raw, r->z.data, z);
        if (ZSTD_isError(d) || d != raw)
            return -EIO;
        r->raw.len = raw;
        r->pos = 0;
        r->off += 8 + (uint64_t)z;
    }
    const unsigned char *p = (const unsigned char *)r->raw.data;
    size_t pos = r->pos + 1;
    uint64_t kl, ll;
    if (get_varint(p, r->raw.len, &pos, &kl) || get_varint(p, r->raw.len, &pos, &ll) ||
        kl > r->raw.len - pos || ll > r->raw.len - pos - kl)
        return -EIO;
    r->e = (struct segment_entry){(char)p[r->pos], (const char *)p + pos, kl,
                                  (const char *)p + pos + kl, ll};
    r->pos = pos + kl + ll;
    return 1;
}

static void run_in_release(struct run_in *r)
{
    buf_release(&r->z);
    buf_release(&r->raw);
}

/* ---------- merging ---------- */

/* A source of the merge: a run, or the sorted buffer (rank highest). */
struct source {
    struct run_in run;
    bool is_buffer;
    size_t bi;               /* buffer: next index */
};

static int source_next(struct segment_sorter *s, struct source *src)
{
    if (src->is_buffer) {
        if (src->bi >= s->n) {
            src->run.have = false;
            return 0;
        }
        const struct sentry *e = &s->ents[src->bi++];
        src->run.e = (struct segment_entry){e->op, e->p, e->key_len, e->p + e->key_len,
                                            e->line_len};
        src->run.have = true;
        return 1;
    }
    int rc = run_next(s, &src->run);
    src->run.have = rc == 1;
    return rc;
}

static bool src_before(const struct source *a, const struct source *b)
{
    int c = key_cmp(a->run.e.key, a->run.e.key_len, b->run.e.key, b->run.e.key_len);
    return c < 0 || (c == 0 && a->run.rank > b->run.rank);
}

static void heap_down(struct source **h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && src_before(h[l], h[m]))
            m = l;
        if (r < n && src_before(h[r], h[m]))
            m = r;
        if (m == i)
            return;
        struct source *t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

typedef int (*entry_fn)(void *ctx, const struct segment_entry *e, struct dverr *err);

/* Merge srcs (each positioned on its first entry or empty) by (key, newest first), one entry per
 * key, into fn. */
static int merge_sources(struct segment_sorter *s, struct source *srcs, size_t n, entry_fn fn,
                         void *ctx, struct dverr *err)
{
    struct source **h = calloc(n ? n : 1, sizeof *h);
    if (!h)
        return dverr_set(err, -ENOMEM, "out of memory");
    size_t hn = 0;
    for (size_t i = 0; i < n; i++)
        if (srcs[i].run.have)
            h[hn++] = &srcs[i];
    for (size_t i = hn / 2; i-- > 0;)
        heap_down(h, hn, i);
    struct buf key = BUF_INIT;
    int rc = 0;
    while (hn && !rc) {
        struct source *top = h[0];
        if ((rc = fn(ctx, &top->run.e, err)))
            break;
        buf_reset(&key);
        if ((rc = buf_add(&key, top->run.e.key, top->run.e.key_len))) {
            dverr_set(err, rc, "out of memory");
            break;
        }
        /* advance every source positioned on this key (older entries of it are dropped) */
        while (hn && key_cmp(h[0]->run.e.key, h[0]->run.e.key_len, key.data, key.len) == 0) {
            int r = source_next(s, h[0]);
            if (r < 0) {
                rc = dverr_set(err, r, "reading a sort run back: %s", strerror(-r));
                break;
            }
            if (!r)
                h[0] = h[--hn];
            heap_down(h, hn, 0);
        }
    }
    buf_release(&key);
    free(h);
    return rc;
}

static int run_open(struct segment_sorter *s, int lv, size_t i, int rank, struct source *src,
                    struct dverr *err)
{
    memset(src, 0, sizeof *src);
    src->run.fd = s->levels[lv].fd;
    src->run.off = s->levels[lv].runs[i].off;
    src->run.end = src->run.off + s->levels[lv].runs[i].len;
    src->run.rank = rank;
    int rc = run_next(s, &src->run);
    if (rc < 0)
        return dverr_set(err, rc, "reading a sort run back: %s", strerror(-rc));
    src->run.have = rc == 1;
    return 0;
}

static int add_to_run(void *ctx, const struct segment_entry *e, struct dverr *err)
{
    return run_add(ctx, e, err);
}

/* Level lv is full: its runs, RUN_FANIN at a time (oldest first), become runs at the end of level
 * lv + 1, and lv's file is emptied. */
static int cascade(struct segment_sorter *s, int lv, struct dverr *err)
{
    if (lv + 1 >= RUN_LEVELS)
        return dverr_set(err, -EFBIG, "too much data to sort");
    struct level *l = &s->levels[lv];
    struct source srcs[RUN_FANIN];
    int rc = 0;
    for (size_t g = 0; g < l->n && !rc; g += RUN_FANIN) {
        size_t k = l->n - g < RUN_FANIN ? l->n - g : RUN_FANIN, opened = 0;
        for (; opened < k && !rc; opened++)
            rc = run_open(s, lv, g + opened, (int)opened, &srcs[opened], err);
        struct run_out o;
        if (!rc)
            rc = run_begin(s, lv + 1, &o, err);
        if (!rc)
            rc = merge_sources(s, srcs, k, add_to_run, &o, err);
        if (!rc)
            rc = run_end(&o, err);
        for (size_t i = 0; i < opened; i++)
            run_in_release(&srcs[i].run);
    }
    if (rc)
        return rc;
    if (ftruncate(l->fd, 0))
        return dverr_set(err, -errno, "emptying a sort run: %s", strerror(errno));
    l->end = 0;
    l->n = 0;
    if (s->levels[lv + 1].n >= RUN_FANIN)
        return cascade(s, lv + 1, err);
    return 0;
}

static int spill(struct segment_sorter *s, struct dverr *err)
{
    size_t n = sort_dedupe(s);
    struct run_out o;
    int rc = run_begin(s, 0, &o, err);
    for (size_t i = 0; i < n && !rc; i++) {
        const struct sentry *e = &s->ents[i];
        struct segment_entry se = {e->op, e->p, e->key_len, e->p + e->key_len, e->line_len};
        rc = run_add(&o, &se, err);
    }
    if (!rc)
        rc = run_end(&o, err);
    if (rc)
        return rc;
    arena_release(&s->arena);
    s->n = 0;
    s->used = s->cap * sizeof *s->ents;
    /* ordered input never overlaps: its runs are read one after another, never merged */
    if (!s->ordered && s->levels[0].n >= RUN_FANIN)
        return cascade(s, 0, err);
    return 0;
}

int segment_sorter_add(struct segment_sorter *s, char op, const char *key, size_t key_len,
                       const char *line, size_t line_len, struct dverr *err)
{
    if (key_len == 0 || key_len > SEGMENT_MAX_KEY || line_len > SEGMENT_MAX_LINE)
        return dverr_set(err, -EINVAL, "a sort entry of %zu + %zu bytes", key_len, line_len);
    if (s->ordered && s->added &&
        key_cmp(key, key_len, s->last_key.data, s->last_key.len) <= 0) {
        s->ordered = false;
        /* runs already spilled are in order among themselves; they are now merged like any
         * others, level by level */
        if (s->levels[0].n >= RUN_FANIN) {
            int rc = cascade(s, 0, err);
            if (rc)
                return rc;
        }
    }
    if (s->ordered) {
        buf_reset(&s->last_key);
        if (buf_add(&s->last_key, key, key_len))
            return dverr_set(err, -ENOMEM, "out of memory");
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        struct sentry *e = realloc(s->ents, cap * sizeof *e);
        if (!e)
            return dverr_set(err, -ENOMEM, "out of memory");
        s->used += (cap - s->cap) * sizeof *e;
        s->ents = e;
        s->cap = cap;
    }
    char *p = sort_bytes(s, key_len + line_len);
    if (!p)
        return dverr_set(err, -ENOMEM, "out of memory");
    memcpy(p, key, key_len);
    if (line_len)
        memcpy(p + key_len, line, line_len);
    s->ents[s->n++] = (struct sentry){p, (uint32_t)key_len, (uint32_t)line_len, s->seq++, op};
    s->added++;
    if (s->used > s->budget)
        return spill(s, err);
    return 0;
}

int segment_sorter_park(struct segment_sorter *s, struct dverr *err)
{
    int rc = s->n ? spill(s, err) : 0;
    if (rc)
        return rc;
    free(s->ents);
    s->ents = NULL;
    s->cap = 0;
    s->used = 0;
    buf_release(&s->block);
    buf_release(&s->zblock);
    ZSTD_freeCCtx(s->cctx);
    s->cctx = NULL;
    ZSTD_freeDCtx(s->dctx);
    s->dctx = NULL;
    return 0;
}

size_t segment_sorter_memory(const struct segment_sorter *s)
{
    return s ? s->used : 0;
}

int segment_sorter_drain(struct segment_sorter *s, entry_fn fn, void *ctx, struct dverr *err)
{
    size_t n_buf = sort_dedupe(s), n_src = 1;
    (void)n_buf;
    for (int lv = 0; lv < RUN_LEVELS; lv++)
        n_src += s->levels[lv].n;
    int rc = 0;
    if (s->ordered) { /* runs in order, then the buffer: no merge */
        for (size_t i = 0; i < s->levels[0].n && !rc; i++) {
            struct source src;
            rc = run_open(s, 0, i, 0, &src, err);
            while (!rc && src.run.have) {
                if ((rc = fn(ctx, &src.run.e, err)))
                    break;
                int r = run_next(s, &src.run);
                if (r < 0)
                    rc = dverr_set(err, r, "reading a sort run back: %s", strerror(-r));
                src.run.have = r == 1;
            }
            run_in_release(&src.run);
        }
        for (size_t i = 0; i < s->n && !rc; i++) {
            const struct sentry *e = &s->ents[i];
            struct segment_entry se = {e->op, e->p, e->key_len, e->p + e->key_len, e->line_len};
            rc = fn(ctx, &se, err);
        }
        return rc;
    }
    struct source *srcs = calloc(n_src, sizeof *srcs);
    if (!srcs)
        return dverr_set(err, -ENOMEM, "out of memory");
    size_t k = 0;
    int rank = 0;
    for (int lv = RUN_LEVELS - 1; lv >= 0 && !rc; lv--) /* oldest first: ranks grow with age */
        for (size_t i = 0; i < s->levels[lv].n && !rc; i++, k++)
            rc = run_open(s, lv, i, rank++, &srcs[k], err);
    if (!rc) {
        srcs[k].is_buffer = true;
        srcs[k].run.rank = rank;
        source_next(s, &srcs[k]);
        k++;
        rc = merge_sources(s, srcs, k, fn, ctx, err);
    }
    for (size_t i = 0; i < n_src; i++)
        run_in_release(&srcs[i].run);
    free(srcs);
    return rc;
}
