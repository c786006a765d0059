/* A bounded buffer that turns a byte stream into newline-delimited lines.
 *
 * Bytes are appended as they arrive; linebuf_next() hands out complete lines
 * one at a time, with the trailing "\n" (and a "\r" before it) removed and a
 * NUL written in its place. A line longer than max_line_bytes is an error the
 * moment it is detected, so a peer can never make the buffer grow past
 * max_line_bytes plus one read's worth of bytes.
 */
#ifndef SWEEPD_LINEBUF_H
#define SWEEPD_LINEBUF_H

#include <stddef.h>

typedef struct linebuf {
    char *data;            /* owned; data[start, len) holds unconsumed bytes */
    size_t start;          /* offset of the first unconsumed byte */
    size_t len;            /* bytes in use, counted from data[0] */
    size_t cap;            /* allocated bytes */
    size_t scanned;        /* bytes after start already known to hold no '\n' */
    size_t max_line_bytes; /* longest accepted line, without its newline */
} linebuf;

/* Returns 0, or -ENOMEM. */
int linebuf_init(linebuf *lb, size_t max_line_bytes);
void linebuf_free(linebuf *lb);

/* Appends n bytes. Returns 0; -E2BIG when the unterminated tail now exceeds
 * max_line_bytes (the caller should reply line_too_long and close); -ENOMEM. */
int linebuf_append(linebuf *lb, const char *bytes, size_t n);

/* Takes the next complete line. Returns 1 and sets *line (NUL-terminated,
 * valid until the next append or next call) and *len; returns 0 when no
 * complete line is buffered; returns -E2BIG for a complete line that is too
 * long. */
int linebuf_next(linebuf *lb, char **line, size_t *len);

/* Bytes of an unterminated line waiting for its newline. */
size_t linebuf_pending(const linebuf *lb);

#endif
