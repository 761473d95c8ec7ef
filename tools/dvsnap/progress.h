/* progress: how long work (capture, check, prune, restore) shows it advances, on stderr.
 *
 * Modes: on a terminal one line redrawn in place: "capture contoso-prod: 45% 3/9 tables,
 * 15,000 records, 4,200 records/s, 0:12 left, account"; with --json one JSON object per line,
 * {"progress":{...}} (docs/json.md); with restore's --wait and no terminal, plain lines; else (and
 * with -q) nothing. Updates are drawn at most 4 times a second (a forced one, such as a change of
 * phase, always). The percent is what the caller estimates (fraction); the rate is `done` units
 * per second since progress_restart; time left is the elapsed time scaled by what is left of the
 * fraction, shown once 1% is done.
 * Threading: one struct per command; calls must be serialised by the caller. */
#ifndef DVSNAP_PROGRESS_H
#define DVSNAP_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct cli;

enum progress_mode { PROGRESS_NONE, PROGRESS_TTY, PROGRESS_LINES, PROGRESS_JSON };

struct progress {
    enum progress_mode mode;
    const char *command;       /* "capture", "check", ... */
    int64_t start_ms;          /* of the current stretch of work (progress_restart) */
    int64_t last_ms;           /* when the last update was drawn */
    bool shown;                /* a terminal line is on screen */
};

/* What one update says; NULL / negative fields are left out. */
struct progress_item {
    const char *env;           /* environment, or NULL */
    const char *phase;         /* e.g. "reading points", or NULL */
    const char *item;          /* current table or object, or NULL */
    double fraction;           /* 0..1 of the work, or < 0 when unknown */
    uint64_t done;             /* units done so far (for the rate) */
    const char *unit;          /* "records", "bytes", "objects" */
    uint64_t total;            /* units in all, or 0 when unknown */
    const char *detail;        /* extra words for the terminal, e.g. "3/9 tables", or NULL */
    const char *json_extra;    /* extra members for JSON, e.g. "\"tables_done\":3", or NULL */
};

/* Mode from the command line: --json, -q, a terminal on stderr, or lines when force_lines. */
void progress_init(struct progress *p, const struct cli *cli, const char *command,
                   bool force_lines);
/* Start timing a new stretch of work (e.g. the next environment). */
void progress_restart(struct progress *p);
void progress_update(struct progress *p, const struct progress_item *it, bool force);
/* Erase the terminal line (before other output). */
void progress_clear(struct progress *p);

#endif
