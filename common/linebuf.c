/* Newline framing with a ceiling; see linebuf.h. */
#include "linebuf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int linebuf_init(linebuf *lb, size_t max_line_bytes)
{
    memset(lb, 0, sizeof(*lb));
    lb->max_line_bytes = max_line_bytes;
    lb->cap = 4096;
    lb->data = malloc(lb->cap);
    return lb->data ? 0 : -ENOMEM;
}

void linebuf_free(linebuf *lb)
{
    free(lb->data);
    memset(lb, 0, sizeof(*lb));
}

size_t linebuf_pending(const linebuf *lb) { return lb->len - lb->start; }

int linebuf_append(linebuf *lb, const char *bytes, size_t n)
{
    /* Drop consumed bytes before growing. */
    if (lb->start > 0) {
        memmove(lb->data, lb->data + lb->start, lb->len - lb->start);
        lb->len -= lb->start;
        lb->start = 0;
    }

    if (lb->len + n + 1 > lb->cap) {
        size_t cap = lb->cap;
        while (cap < lb->len + n + 1)
            cap *= 2;
        char *p = realloc(lb->data, cap);
        if (p == NULL)
            return -ENOMEM;
        lb->data = p;
        lb->cap = cap;
    }
    memcpy(lb->data + lb->len, bytes, n);
    lb->len += n;

    /* An unterminated tail that is already too long can never become valid. */
    const char *nl = memchr(lb->data + lb->start + lb->scanned, '\n',
                            lb->len - lb->start - lb->scanned);
    if (nl == NULL && lb->len - lb->start > lb->max_line_bytes + 1)
        return -E2BIG;
    return 0;
}

int linebuf_next(linebuf *lb, char **line, size_t *len)
{
    char *begin = lb->data + lb->start;
    size_t avail = lb->len - lb->start;
    char *nl = memchr(begin + lb->scanned, '\n', avail - lb->scanned);

    if (nl == NULL) {
        lb->scanned = avail;
        return 0;
    }

    size_t n = (size_t)(nl - begin);
    lb->start += n + 1;
    lb->scanned = 0;
    if (n > 0 && begin[n - 1] == '\r')
        n--;
    if (n > lb->max_line_bytes)
        return -E2BIG;
    begin[n] = '\0';
    *line = begin;
    *len = n;
    return 1;
}
