/* Logging for every sweepd program: one line per event on stderr,
 *
 *   2026-12-04T21:40:59.123Z 4121 INFO  lease: sweep=3 trial=17 attempt=2 worker=w1 leased
 *
 * with a UTC timestamp in milliseconds, the pid, the level and a component.
 * Callers put the ids involved into the message as key=value pairs. Each line
 * is formatted into one buffer and written with a single write(2), so lines
 * from several threads or processes sharing a pipe do not interleave.
 */
#ifndef SWEEPD_LOG_H
#define SWEEPD_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level that is written; the default is LOG_INFO. */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Parses "debug", "info", "warn" or "error". Returns 0 and sets *level, or -1
 * for any other string. */
int log_parse_level(const char *text, enum log_level *level);

/* Sets a prefix written before the component, e.g. the worker name for lines
 * that a worker process writes. NULL or "" clears it. */
void log_set_prefix(const char *prefix);

void log_write(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(component, ...) \
    do { if (log_get_level() <= LOG_DEBUG) log_write(LOG_DEBUG, component, __VA_ARGS__); } while (0)
#define log_info(component, ...)  log_write(LOG_INFO, component, __VA_ARGS__)
#define log_warn(component, ...)  log_write(LOG_WARN, component, __VA_ARGS__)
#define log_error(component, ...) log_write(LOG_ERROR, component, __VA_ARGS__)

/* Copies at most max_in bytes of untrusted input into out as printable ASCII:
 * backslash escapes for quotes, backslashes and control bytes, \xNN for the
 * rest, and "..." when the input was cut. out is always NUL-terminated.
 * Returns out, so the call can sit inside a log_write argument list. */
char *log_escape(const char *in, size_t in_len, size_t max_in, char *out, size_t out_size);

#endif
