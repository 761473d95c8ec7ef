/* erase_int: what the erasure's two files share (erase.h is the contract): erase.c (the plan, the
 * rewrite, the run) and erase_journal.c (the journal that lets a rerun finish, and the log). The
 * key sets of the records to erase, the distinct segments of the environment, and one run's state.
 * Not part of the contract: only these two files include it.
 * Threading: a run belongs to one thread. */
#ifndef DVSNAP_ERASE_INT_H
#define DVSNAP_ERASE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "backend/base/keymap.h"
#include "backend/engine/erase.h"

struct tkey {              /* a record to erase (its table's set) */
    const char *key;
    uint32_t len;
    bool found;            /* a segment holds it */
};
struct anykey {            /* any table's key to erase, for lookups that point at it */
    const char *key;
    uint32_t len;
};
struct tset {
    char *table;
    struct keymap keys;    /* struct tkey */
};
struct targets {
    struct tset *v;
    size_t n;
    struct keymap all;     /* struct anykey */
};


struct seg {
    char id[65];
    const char *table;      /* the table's name in a loaded point */
    bool dirty;             /* holds an erased key */
    bool rewritten;
    char new_id[65];        /* "" when the copy is empty */
    struct segment_stats st;
    uint64_t new_size;
    struct keymap removed;  /* struct rkey: what the copy left out */
};
struct rkey {
    const char *key;
    uint32_t len;
    char op;
    uint64_t line_len;
};

struct run {
    struct repo *repo;
    const struct erase_request *req;
    struct erase_report *rep;
    struct dverr *err;
    struct point **pts;     /* the environment's points, oldest first */
    size_t n_pts;
    struct seg *segs;       /* sorted by id */
    size_t n_segs;
    struct targets t;
    struct keymap refs;     /* struct anykey: "table\tfield\tkey" of records referring to them */
    struct buf objects;     /* ids to delete once unreferenced (journal), '\n' separated */
};

void erase_targets_init(struct targets *t);
int erase_targets_add(struct targets *t, const char *table, const char *key, size_t len);
uint64_t erase_targets_count(const struct targets *t);
int erase_cmp_strp(const void *a, const void *b); /* qsort of char * */

/* ---- erase_journal.c ---- */
/* erase/<env>.journal.json */
void erase_journal_name(const char *env, char *out, size_t n);
/* The journal of r: its request's words, its targets (table, key) and r->objects. */
int erase_journal_write(struct run *r, time_t started);
/* A journal left by a run that did not finish: its targets and objects (0), or -ENOENT. */
int erase_journal_read(struct repo *repo, const char *env, struct targets *t,
                       struct buf *objects, char *started, char *by, size_t by_n, char *crit,
                       size_t crit_n, bool *override, struct dverr *err);
/* The log entry of r (erasures/<env>/...; its name into r->rep->log_name). */
int erase_log_write(struct run *r, time_t started, time_t finished, bool resumed);

#endif
