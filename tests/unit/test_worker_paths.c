/* Worker helpers without a daemon: ".." detection in checkpoint locations,
 * recursive mkdir, XDG defaults, the reconnect backoff bounds, the
 * checkpoint fallback listing and the --connect parser. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "ckpt.h"
#include "conn.h"
#include "paths.h"

static void test_dotdot(void)
{
    CHECK(paths_has_dotdot(".."));
    CHECK(paths_has_dotdot("../x"));
    CHECK(paths_has_dotdot("/a/../b"));
    CHECK(paths_has_dotdot("/a/b/.."));
    CHECK(paths_has_dotdot("http://h/a/../b"));
    CHECK(!paths_has_dotdot("/a/..b/c"));
    CHECK(!paths_has_dotdot("/a/b..c"));
    CHECK(!paths_has_dotdot("/a/./b"));
    CHECK(!ckpt_location_valid(""));
    CHECK(!ckpt_location_valid("/x/../etc/passwd"));
    CHECK(ckpt_location_valid("/x/3/17/step-10.ckpt"));
}

static void test_xdg(void)
{
    char out[256];
    setenv("XDG_STATE_HOME", "/xs", 1);
    setenv("XDG_CACHE_HOME", "/xc", 1);
    CHECK(paths_state_dir("/sweepd.sock", out, sizeof(out)) == 0);
    CHECK_STR(out, "/xs/sweepd/sweepd.sock");
    CHECK(paths_cache_dir(out, sizeof(out)) == 0);
    CHECK_STR(out, "/xc/sweepd");
    unsetenv("XDG_STATE_HOME");
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    CHECK(paths_state_dir("", out, sizeof(out)) == 0);
    CHECK_STR(out, "/home/u/.local/state/sweepd");
    CHECK(paths_cache_dir(out, sizeof(out)) == 0);
    CHECK_STR(out, "/home/u/.cache/sweepd");
    CHECK(paths_state_dir("", out, 8) == -1);
}

static void test_mkdirs_and_older(void)
{
    char root[] = "/tmp/test_worker_paths_XXXXXX";
    CHECK(mkdtemp(root) != NULL);
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/a/b/3/17", root);
    CHECK(paths_mkdirs(dir) == 0);
    CHECK(paths_mkdirs(dir) == 0);
    struct stat st;
    CHECK(stat(dir, &st) == 0);
    CHECK(S_ISDIR(st.st_mode));

    long steps[] = {10, 20, 30, 5};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/step-%ld.ckpt", dir, steps[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL);
        if (f)
            fclose(f);
    }
    snprintf(path, sizeof(path), "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    if (f)
        fclose(f);

    char older[8][CKPT_LOCATION_MAX];
    snprintf(path, sizeof(path), "%s/step-30.ckpt", dir);
    int n = ckpt_store_older(path, older, 8);
    CHECK(n == 3);
    char want[600];
    snprintf(want, sizeof(want), "%s/step-20.ckpt", dir);
    CHECK_STR(older[0], want);
    snprintf(want, sizeof(want), "%s/step-5.ckpt", dir);
    CHECK_STR(older[2], want);
    CHECK(ckpt_store_older("http://127.0.0.1/x/step-30.ckpt", older, 8) == 0);

    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

static void test_backoff(void)
{
    /* First attempts are near the minimum; the delay never exceeds the cap
     * and never drops below half of its nominal value. */
    for (unsigned r = 0; r < 1000; r += 37) {
        unsigned d0 = conn_backoff_ms(0, 100, 10000, r);
        CHECK(d0 >= 50);
        CHECK(d0 <= 100);
        unsigned d3 = conn_backoff_ms(3, 100, 10000, r);
        CHECK(d3 >= 400);
        CHECK(d3 <= 800);
        unsigned d30 = conn_backoff_ms(30, 100, 10000, r);
        CHECK(d30 >= 5000);
        CHECK(d30 <= 10000);
    }
    CHECK(conn_backoff_ms(100, 100, 10000, 0) == 5000);
}

static void test_connect_parser(void)
{
    /* Each accepted target gets its own struct: a stopped conn's handles
     * stay in use until the loop runs their close callbacks. */
    uv_loop_t loop;
    CHECK(uv_loop_init(&loop) == 0);
    static conn c[4];
    conn_callbacks cb = {0};
    char err[256];
    CHECK(conn_init(&c[0], &loop, "tcp:127.0.0.1:7000", &cb, NULL, err, sizeof(err)) == 0);
    CHECK(c[0].is_tcp);
    CHECK_STR(c[0].host, "127.0.0.1");
    CHECK_STR(c[0].port, "7000");
    conn_stop(&c[0]);
    CHECK(conn_init(&c[1], &loop, "tcp:[::1]:80", &cb, NULL, err, sizeof(err)) == 0);
    CHECK_STR(c[1].host, "::1");
    conn_stop(&c[1]);
    CHECK(conn_init(&c[2], &loop, "unix:/tmp/s.sock", &cb, NULL, err, sizeof(err)) == 0);
    CHECK_STR(c[2].path, "/tmp/s.sock");
    CHECK(!c[2].is_tcp);
    conn_stop(&c[2]);
    CHECK(conn_init(&c[3], &loop, "tcp:127.0.0.1", &cb, NULL, err, sizeof(err)) == -1);
    CHECK(strstr(err, "tcp:HOST:PORT") != NULL);
    CHECK(conn_init(&c[3], &loop, "tcp:h:12x", &cb, NULL, err, sizeof(err)) == -1);
    CHECK(conn_init(&c[3], &loop, "/tmp/s.sock", &cb, NULL, err, sizeof(err)) == -1);
    CHECK(strstr(err, "unix:PATH") != NULL);
    CHECK(conn_init(&c[3], &loop, "unix:", &cb, NULL, err, sizeof(err)) == -1);
    CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
    CHECK(uv_loop_close(&loop) == 0);
}

int main(void)
{
    test_dotdot();
    test_xdg();
    test_mkdirs_and_older();
    test_backoff();
    test_connect_parser();
    return check_report("test_worker_paths");
}
