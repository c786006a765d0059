/* Leveled logging to stderr; see log.h for the line format. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static char log_prefix[64];

static const char *const level_names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};

void log_set_level(enum log_level level) { min_level = level; }

enum log_level log_get_level(void) { return min_level; }

int log_parse_level(const char *text, enum log_level *level)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(text, names[i]) == 0) {
            *level = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_set_prefix(const char *prefix)
{
    if (prefix == NULL)
        prefix = "";
    snprintf(log_prefix, sizeof(log_prefix), "%s", prefix);
}

void log_write(enum log_level level, const char *component, const char *fmt, ...)
{
    if (level < min_level)
        return;
    int saved_errno = errno;

    char line[4096];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %ld %s %s%s%s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, now.tv_nsec / 1000000L, (long)getpid(), level_names[level],
                     log_prefix, log_prefix[0] ? " " : "", component);
    if (n < 0)
        n = 0;

    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2; /* the message was cut to fit one line */
    line[len++] = '\n';

    /* One write per line; a short write to a full pipe is retried. */
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(STDERR_FILENO, line + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        off += (size_t)w;
    }
    errno = saved_errno;
}

char *log_escape(const char *in, size_t in_len, size_t max_in, char *out, size_t out_size)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    size_t limit = in_len < max_in ? in_len : max_in;

    if (out_size == 0)
        return out;
    for (size_t i = 0; i < limit; i++) {
        unsigned char c = (unsigned char)in[i];
        char buf[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            buf[k++] = '\\';
            buf[k++] = (char)c;
        } else if (c == '\n') {
            buf[k++] = '\\';
            buf[k++] = 'n';
        } else if (c == '\r') {
            buf[k++] = '\\';
            buf[k++] = 'r';
        } else if (c == '\t') {
            buf[k++] = '\\';
            buf[k++] = 't';
        } else if (c < 0x20 || c >= 0x7f) {
            buf[k++] = '\\';
            buf[k++] = 'x';
            buf[k++] = hex[c >> 4];
            buf[k++] = hex[c & 15];
        } else {
            buf[k++] = (char)c;
        }
        if (o + k + 4 >= out_size)
            break;
        memcpy(out + o, buf, k);
        o += k;
    }
    if (in_len > limit && o + 3 < out_size) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
