/* Unit tests for the bounded line framer (common/linebuf.c). */
#include "check.h"
#include "linebuf.h"

#include <errno.h>
#include <string.h>

static void test_split_lines(void)
{
    linebuf lb;
    char *line;
    size_t len;

    CHECK(linebuf_init(&lb, 16) == 0);
    CHECK(linebuf_append(&lb, "ab\r\ncd\nef", 9) == 0);
    CHECK(linebuf_next(&lb, &line, &len) == 1);
    CHECK_STR(line, "ab");
    CHECK(len == 2);
    CHECK(linebuf_next(&lb, &line, &len) == 1);
    CHECK_STR(line, "cd");
    CHECK(linebuf_next(&lb, &line, &len) == 0);
    CHECK(linebuf_pending(&lb) == 2);
    CHECK(linebuf_append(&lb, "g\n", 2) == 0);
    CHECK(linebuf_next(&lb, &line, &len) == 1);
    CHECK_STR(line, "efg");
    linebuf_free(&lb);
}

static void test_limit(void)
{
    linebuf lb;
    char *line;
    size_t len;
    char big[40];

    memset(big, 'x', sizeof(big));
    CHECK(linebuf_init(&lb, 16) == 0);
    CHECK(linebuf_append(&lb, big, 16) == 0);
    CHECK(linebuf_append(&lb, big, 2) == -E2BIG);
    linebuf_free(&lb);

    /* A complete line that is too long arrives in one read. */
    CHECK(linebuf_init(&lb, 16) == 0);
    big[17] = '\n';
    CHECK(linebuf_append(&lb, big, 18) == 0);
    CHECK(linebuf_next(&lb, &line, &len) == -E2BIG);
    linebuf_free(&lb);
}

static void test_byte_by_byte(void)
{
    linebuf lb;
    char *line;
    size_t len;
    const char *text = "{\"op\":\"hello\"}\n";

    CHECK(linebuf_init(&lb, 1024) == 0);
    for (size_t i = 0; i + 1 < strlen(text); i++) {
        CHECK(linebuf_append(&lb, text + i, 1) == 0);
        CHECK(linebuf_next(&lb, &line, &len) == 0);
    }
    CHECK(linebuf_append(&lb, "\n", 1) == 0);
    CHECK(linebuf_next(&lb, &line, &len) == 1);
    CHECK_STR(line, "{\"op\":\"hello\"}");
    linebuf_free(&lb);
}

int main(void)
{
    test_split_lines();
    test_limit();
    test_byte_by_byte();
    return check_report("linebuf");
}
