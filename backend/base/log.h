/* log: the one log sink. Levels: error, warn, info, debug. Messages go to stderr (or a file set
 * with log_set_file) with a UTC timestamp; under systemd (stderr is the stream $JOURNAL_STREAM
 * names) to the journal as "<N>level: message" lines with syslog priorities. Callers must not
 * pass secrets; remote strings are escaped by log_escape before they are logged. Thread-safe (one
 * mutex around the write). */
#ifndef DVSNAP_LOG_H
#define DVSNAP_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_set_file(const char *path); /* 0 or -errno; NULL returns to stderr */
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Copy s into out (size n) with control characters and non-ASCII escaped as \xNN and at most
 * n-1 bytes; returns out. For remote strings in log lines. */
char *log_escape(const char *s, char *out, unsigned n);

#endif
