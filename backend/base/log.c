/* log: the one log sink (see log.h). The level, the file and whether stderr is the journal are
 * the only global mutable state outside main, guarded by log_lock.
 *
 * Under systemd, stderr is a stream to the journal and $JOURNAL_STREAM names it ("DEV:INODE").
 * When fd 2 is that very stream, a line is written as "<N>level: message" (sd-daemon(3)), N the
 * syslog priority, and without our timestamp: the journal keeps its own, and the priority lets
 * `journalctl -p warning` filter. A command of a unit whose stderr goes elsewhere (`2>FILE`) does
 * not match and writes the plain form. Checked once, at the first line. */
#include "backend/base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_level log_level = LOG_WARN; /* guarded by log_lock for writes; read racily */
static FILE *log_file;                      /* guarded by log_lock; NULL = stderr */
static int stderr_is_journal = -1;          /* guarded by log_lock; -1 until first checked */

/* true when fd 2 is the journal stream that $JOURNAL_STREAM names. */
static bool journal_stream_is_stderr(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!v || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(2, &st) != 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_set_level(enum log_level level)
{
    pthread_mutex_lock(&log_lock);
    log_level = level;
    pthread_mutex_unlock(&log_lock);
}

enum log_level log_get_level(void)
{
    pthread_mutex_lock(&log_lock);
    enum log_level l = log_level;
    pthread_mutex_unlock(&log_lock);
    return l;
}

int log_set_file(const char *path)
{
    FILE *f = NULL;
    if (path && !(f = fopen(path, "ae")))
        return -1;
    pthread_mutex_lock(&log_lock);
    if (log_file)
        fclose(log_file);
    log_file = f;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    static const int syslog_priority[] = {3, 4, 6, 7}; /* LOG_ERR LOG_WARNING LOG_INFO LOG_DEBUG */
    if (level > log_get_level())
        return;
    char when[32];
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&log_lock);
    FILE *f = log_file ? log_file : stderr;
    if (!log_file && stderr_is_journal < 0)
        stderr_is_journal = journal_stream_is_stderr();
    if (!log_file && stderr_is_journal)
        fprintf(f, "<%d>%s: %s\n", syslog_priority[level], names[level], line);
    else
        fprintf(f, "%s dvsnap %s: %s\n", when, names[level], line);
    fflush(f);
    pthread_mutex_unlock(&log_lock);
}

char *log_escape(const char *s, char *out, unsigned n)
{
    static const char hex[] = "0123456789abcdef";
    unsigned o = 0;
    if (n == 0)
        return out;
    for (; s && *s && o + 1 < n; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            out[o++] = (char)c;
        } else {
            if (o + 5 >= n)
                break;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return out;
}
