/* log: the one log sink (see log.h). The level and the file are the only global mutable state
 * outside main, guarded by log_lock. */
#include "backend/base/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_level log_level = LOG_WARN; /* guarded by log_lock for writes; read racily */
static FILE *log_file;                      /* guarded by log_lock; NULL = stderr */

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
