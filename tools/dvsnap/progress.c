/* progress: terminal, plain-line and JSON-lines progress on stderr (see progress.h). Numbers on a
 * terminal are grouped by thousands and bytes shown in KB/MB/GB (decimal). Single-threaded per
 * struct (the caller serialises). */
#include "tools/dvsnap/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backend/base/util.h"
#include "tools/dvsnap/cli.h"

#define PROGRESS_PERIOD_MS 250

void progress_init(struct progress *p, const struct cli *cli, const char *command,
                   bool force_lines)
{
    memset(p, 0, sizeof *p);
    p->command = command;
    if (cli->quiet)
        p->mode = PROGRESS_NONE;
    else if (cli->json)
        p->mode = PROGRESS_JSON;
    else if (isatty(2))
        p->mode = PROGRESS_TTY;
    else
        p->mode = force_lines ? PROGRESS_LINES : PROGRESS_NONE;
    progress_restart(p);
}

void progress_restart(struct progress *p)
{
    p->start_ms = now_ms();
}

/* 1234567 -> "1,234,567" */
static void grouped(uint64_t v, char out[32])
{
    char raw[24];
    int n = snprintf(raw, sizeof raw, "%" PRIu64, v);
    int o = 0;
    for (int i = 0; i < n; i++) {
        if (i && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = raw[i];
    }
    out[o] = '\0';
}

static void amount(uint64_t v, const char *unit, char out[48])
{
    if (unit && strcmp(unit, "bytes") == 0) {
        static const char *const sfx[] = {"B", "KB", "MB", "GB", "TB"};
        double x = (double)v;
        int i = 0;
        while (x >= 1000 && i < 4) {
            x /= 1000;
            i++;
        }
        snprintf(out, 48, i ? "%.1f %s" : "%.0f %s", x, sfx[i]);
        return;
    }
    char g[32];
    grouped(v, g);
    snprintf(out, 48, "%s %s", g, unit ? unit : "");
}

void progress_update(struct progress *p, const struct progress_item *it, bool force)
{
    if (p->mode == PROGRESS_NONE)
        return;
    int64_t now = now_ms();
    if (!force && p->last_ms && now - p->last_ms < PROGRESS_PERIOD_MS)
        return;
    p->last_ms = now;
    double elapsed = (double)(now - p->start_ms) / 1000.0;
    double rate = elapsed > 0.05 ? (double)it->done / elapsed : -1;
    double frac = it->fraction > 1 ? 1 : it->fraction;
    double left = frac >= 0.01 && frac < 1 ? elapsed * (1 - frac) / frac : -1;
    if (frac >= 1)
        left = 0;

    if (p->mode == PROGRESS_JSON) {
        struct buf b = BUF_INIT;
        buf_addstr(&b, "{\"progress\":{\"command\":");
        json_str(&b, p->command);
        buf_addstr(&b, ",\"env\":");
        json_str(&b, it->env);
        buf_addstr(&b, ",\"phase\":");
        json_str(&b, it->phase);
        buf_addstr(&b, ",\"item\":");
        json_str(&b, it->item);
        if (frac >= 0)
            buf_printf(&b, ",\"percent\":%.1f", frac * 100);
        else
            buf_addstr(&b, ",\"percent\":null");
        buf_printf(&b, ",\"done\":%" PRIu64 ",\"unit\":", it->done);
        json_str(&b, it->unit);
        if (it->total)
            buf_printf(&b, ",\"total\":%" PRIu64, it->total);
        else
            buf_addstr(&b, ",\"total\":null");
        if (rate >= 0)
            buf_printf(&b, ",\"rate\":%.1f", rate);
        else
            buf_addstr(&b, ",\"rate\":null");
        if (left >= 0)
            buf_printf(&b, ",\"eta_seconds\":%.0f", left);
        else
            buf_addstr(&b, ",\"eta_seconds\":null");
        buf_printf(&b, ",\"elapsed_seconds\":%.1f", elapsed);
        if (it->json_extra && *it->json_extra)
            buf_printf(&b, ",%s", it->json_extra);
        buf_addstr(&b, "}}\n");
        if (b.data)
            fputs(b.data, stderr);
        fflush(stderr);
        buf_release(&b);
        return;
    }

    /* command [env]: [phase] [pct%] [detail, ]done[ of total][, rate/s][, m:ss left][, item] */
    char done[48], total[48], rate_s[48];
    struct buf line = BUF_INIT;
    buf_printf(&line, "%s%s%s: ", p->command, it->env ? " " : "", it->env ? it->env : "");
    if (it->phase)
        buf_printf(&line, "%s ", it->phase);
    if (frac >= 0)
        buf_printf(&line, "%.0f%% ", frac * 100);
    if (it->detail)
        buf_printf(&line, "%s, ", it->detail);
    amount(it->done, it->unit, done);
    buf_addstr(&line, done);
    if (it->total) {
        amount(it->total, it->unit, total);
        buf_printf(&line, " of %s", total);
    }
    if (rate >= 0) {
        amount((uint64_t)(rate + 0.5), it->unit, rate_s);
        buf_printf(&line, ", %s/s", rate_s);
    }
    if (left >= 0 && frac < 1) {
        long s = (long)(left + 0.5);
        if (s >= 3600)
            buf_printf(&line, ", %ld:%02ld:%02ld left", s / 3600, s / 60 % 60, s % 60);
        else
            buf_printf(&line, ", %ld:%02ld left", s / 60, s % 60);
    }
    if (it->item)
        buf_printf(&line, ", %s", it->item);
    if (!line.data) {
        buf_release(&line);
        return;
    }
    if (p->mode == PROGRESS_TTY) {
        /* one line, cut to the terminal's usual width so it redraws in place */
        fprintf(stderr, "\r\033[K%.150s", line.data);
        p->shown = true;
    } else {
        fprintf(stderr, "%s\n", line.data);
    }
    fflush(stderr);
    buf_release(&line);
}

void progress_clear(struct progress *p)
{
    if (p->mode == PROGRESS_TTY && p->shown) {
        fprintf(stderr, "\r\033[K");
        fflush(stderr);
    }
    p->shown = false;
}
