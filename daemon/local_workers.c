/* Local worker processes: spawn, prefix their output, restart with backoff,
 * stop at shutdown. See local_workers.h for the rules.
 */
#include "local_workers.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static void spawn_worker(local_worker *w);

/* Writes one child line to stderr as "local-K | line" in a single write. */
static void emit_line(local_worker *w, const char *line, size_t len)
{
    char out[4096];
    int n = snprintf(out, sizeof(out), "%s | %.*s\n", w->name, (int)(len > 4000 ? 4000 : len), line);
    if (n <= 0)
        return;
    size_t total = (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1;
    ssize_t wrote = write(STDERR_FILENO, out, total);
    (void)wrote; /* stderr failures cannot be reported anywhere else */
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char buffer[16384];
    buf->base = buffer;
    buf->len = sizeof(buffer);
}

static void maybe_gone(local_worker *w);

static void close_kill_timer_when_done(local_workers *lw)
{
    for (int i = 0; i < lw->count; i++)
        if (lw->workers[i].state == LOCAL_WORKER_RUNNING)
            return;
    if (lw->kill_timer_open) {
        uv_close((uv_handle_t *)&lw->kill_timer, NULL);
        lw->kill_timer_open = 0;
    }
}

static void on_handle_closed(uv_handle_t *handle)
{
    local_worker *w = handle->data;
    w->open_handles--;
    maybe_gone(w);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    local_worker *w = stream->data;
    int which = stream == (uv_stream_t *)&w->pipes[1];
    if (nread == 0)
        return;
    if (nread < 0) {
        /* EOF or error: flush a partial last line, then close the pipe. */
        if (linebuf_pending(&w->lines[which]))
            emit_line(w, w->lines[which].data + w->lines[which].start, linebuf_pending(&w->lines[which]));
        if (!uv_is_closing((uv_handle_t *)stream))
            uv_close((uv_handle_t *)stream, on_handle_closed);
        return;
    }
    int rc = linebuf_append(&w->lines[which], buf->base, (size_t)nread);
    if (rc != 0) {
        /* A line over the limit is emitted cut, and the buffer starts over. */
        emit_line(w, w->lines[which].data + w->lines[which].start, linebuf_pending(&w->lines[which]));
        size_t max = w->lines[which].max_line_bytes;
        linebuf_free(&w->lines[which]);
        if (linebuf_init(&w->lines[which], max) != 0)
            uv_close((uv_handle_t *)stream, on_handle_closed);
        return;
    }
    char *line;
    size_t len;
    while ((rc = linebuf_next(&w->lines[which], &line, &len)) == 1)
        emit_line(w, line, len);
}

static void on_restart_timer(uv_timer_t *timer)
{
    local_worker *w = timer->data;
    if (!w->owner->stopping)
        spawn_worker(w);
}

/* Called as handles close: once the process exited and both pipes are
 * closed, the child is gone and may be restarted. */
static void maybe_gone(local_worker *w)
{
    if (w->open_handles > 0 || w->state != LOCAL_WORKER_RUNNING)
        return;
    linebuf_free(&w->lines[0]);
    linebuf_free(&w->lines[1]);
    local_workers *lw = w->owner;
    uint64_t ran_ms = uv_now(lw->loop) - w->started_ms;
    int failed = w->exit_status != 0 || w->term_signal != 0;
    w->state = LOCAL_WORKER_IDLE;
    if (lw->stopping) {
        log_info("local", "worker=%s stopped (exit %lld, signal %d)", w->name, (long long)w->exit_status,
                 w->term_signal);
        close_kill_timer_when_done(lw);
        return;
    }
    if (!failed) {
        log_info("local", "worker=%s exited 0 after %.1f s; not restarting it", w->name, (double)ran_ms / 1000.0);
        return;
    }
    w->quick_failures = ran_ms < LOCAL_WORKERS_QUICK_S * 1000 ? w->quick_failures + 1 : 0;
    if (w->quick_failures >= LOCAL_WORKERS_MAX_QUICK_FAILURES) {
        w->state = LOCAL_WORKER_GAVE_UP;
        log_error("local", "worker=%s failed %d times within %d s of starting (last: exit %lld, signal %d); "
                  "crash loop, not restarting it; see its log lines above", w->name, w->quick_failures,
                  LOCAL_WORKERS_QUICK_S, (long long)w->exit_status, w->term_signal);
        return;
    }
    uint64_t delay_ms = 500u << (w->quick_failures < 6 ? w->quick_failures : 6);
    log_warn("local", "worker=%s died (exit %lld, signal %d) after %.1f s; restarting in %.1f s", w->name,
             (long long)w->exit_status, w->term_signal, (double)ran_ms / 1000.0, (double)delay_ms / 1000.0);
    int rc = uv_timer_start(&w->restart_timer, on_restart_timer, delay_ms, 0);
    if (rc != 0)
        log_error("local", "worker=%s scheduling the restart failed: %s", w->name, uv_strerror(rc));
}

static void on_process_exit(uv_process_t *process, int64_t exit_status, int term_signal)
{
    local_worker *w = process->data;
    w->exited = 1;
    w->exit_status = exit_status;
    w->term_signal = term_signal;
    uv_close((uv_handle_t *)process, on_handle_closed);
}

static void spawn_worker(local_worker *w)
{
    local_workers *lw = w->owner;
    int rc = 0;
    for (int i = 0; i < 2; i++) {
        if (linebuf_init(&w->lines[i], 64 * 1024) != 0) {
            log_error("local", "worker=%s out of memory", w->name);
            return;
        }
        rc = uv_pipe_init(lw->loop, &w->pipes[i], 0);
        if (rc != 0) {
            log_error("local", "worker=%s creating a pipe failed: %s", w->name, uv_strerror(rc));
            return;
        }
        w->pipes[i].data = w;
    }
    char *args[] = {lw->exe,          "--connect", lw->connect, "--threads",         "1",
                    "--name",         w->name,     "--checkpoint-dir", lw->checkpoint_dir, NULL};
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_IGNORE},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&w->pipes[0]},
        {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&w->pipes[1]},
    };
    uv_process_options_t options = {
        .exit_cb = on_process_exit,
        .file = lw->exe,
        .args = args,
        .stdio = stdio,
        .stdio_count = 3,
    };
    w->process.data = w;
    w->exited = 0;
    w->exit_status = 0;
    w->term_signal = 0;
    w->started_ms = uv_now(lw->loop);
    w->state = LOCAL_WORKER_RUNNING;
    rc = uv_spawn(lw->loop, &w->process, &options);
    if (rc != 0) {
        /* The process handle must still be closed; count it as a failed run. */
        log_error("local", "worker=%s starting %s failed: %s", w->name, lw->exe, uv_strerror(rc));
        w->open_handles = 3;
        w->exit_status = 127;
        uv_close((uv_handle_t *)&w->process, on_handle_closed);
        uv_close((uv_handle_t *)&w->pipes[0], on_handle_closed);
        uv_close((uv_handle_t *)&w->pipes[1], on_handle_closed);
        return;
    }
    w->open_handles = 3;
    log_info("local", "worker=%s started pid=%d", w->name, w->process.pid);
    for (int i = 0; i < 2; i++) {
        rc = uv_read_start((uv_stream_t *)&w->pipes[i], on_alloc, on_read);
        if (rc != 0) {
            log_error("local", "worker=%s reading its output failed: %s", w->name, uv_strerror(rc));
            uv_close((uv_handle_t *)&w->pipes[i], on_handle_closed);
        }
    }
}

/* Finds sweep-worker next to this executable, else leaves the bare name for
 * a PATH search by execvp. */
static void find_exe(local_workers *lw)
{
    char self[PATH_MAX];
    size_t size = sizeof(self);
    if (uv_exepath(self, &size) == 0) {
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            int n = snprintf(lw->exe, sizeof(lw->exe), "%.*s/sweep-worker", (int)(sizeof(lw->exe) - 16), self);
            if (n > 0 && (size_t)n < sizeof(lw->exe) && access(lw->exe, X_OK) == 0)
                return;
        }
    }
    snprintf(lw->exe, sizeof(lw->exe), "sweep-worker");
}

int local_workers_start(local_workers *lw, uv_loop_t *loop, const char *socket_path,
                        const char *checkpoint_dir, int count)
{
    memset(lw, 0, sizeof(*lw));
    lw->loop = loop;
    if (count <= 0)
        return 0;
    lw->workers = calloc((size_t)count, sizeof(*lw->workers));
    if (!lw->workers)
        return UV_ENOMEM;
    lw->count = count;
    find_exe(lw);
    int n = snprintf(lw->connect, sizeof(lw->connect), "unix:%s", socket_path);
    int m = snprintf(lw->checkpoint_dir, sizeof(lw->checkpoint_dir), "%s", checkpoint_dir);
    if (n < 0 || (size_t)n >= sizeof(lw->connect) || m < 0 || (size_t)m >= sizeof(lw->checkpoint_dir)) {
        log_error("local", "the socket path %s or checkpoint directory %s is too long for a worker argument",
                  socket_path, checkpoint_dir);
        return UV_ENAMETOOLONG;
    }
    int rc = uv_timer_init(loop, &lw->kill_timer);
    if (rc != 0)
        return rc;
    lw->kill_timer.data = lw;
    lw->kill_timer_open = 1;
    log_info("local", "starting %d local workers with %s (checkpoints in %s)", count, lw->exe, lw->checkpoint_dir);
    for (int i = 0; i < count; i++) {
        local_worker *w = &lw->workers[i];
        w->owner = lw;
        w->index = i;
        snprintf(w->name, sizeof(w->name), "local-%d", i + 1);
        rc = uv_timer_init(loop, &w->restart_timer);
        if (rc != 0)
            return rc;
        w->restart_timer.data = w;
        w->timer_open = 1;
        spawn_worker(w);
    }
    return 0;
}

static void on_kill_timer(uv_timer_t *timer)
{
    local_workers *lw = timer->data;
    for (int i = 0; i < lw->count; i++) {
        local_worker *w = &lw->workers[i];
        if (w->state == LOCAL_WORKER_RUNNING && !w->exited) {
            log_warn("local", "worker=%s still running %d s after SIGTERM; sending SIGKILL", w->name,
                     LOCAL_WORKERS_KILL_GRACE_S);
            int rc = uv_process_kill(&w->process, SIGKILL);
            if (rc != 0)
                log_error("local", "worker=%s SIGKILL failed: %s", w->name, uv_strerror(rc));
        }
    }
    if (lw->kill_timer_open) {
        uv_close((uv_handle_t *)timer, NULL);
        lw->kill_timer_open = 0;
    }
}

void local_workers_stop(local_workers *lw)
{
    if (lw->stopping || lw->count == 0)
        return;
    lw->stopping = 1;
    int running = 0;
    for (int i = 0; i < lw->count; i++) {
        local_worker *w = &lw->workers[i];
        if (w->timer_open) {
            uv_close((uv_handle_t *)&w->restart_timer, NULL);
            w->timer_open = 0;
        }
        if (w->state == LOCAL_WORKER_RUNNING && !w->exited) {
            int rc = uv_process_kill(&w->process, SIGTERM);
            if (rc != 0 && rc != UV_ESRCH)
                log_error("local", "worker=%s SIGTERM failed: %s", w->name, uv_strerror(rc));
            running++;
        }
    }
    if (running) {
        log_info("local", "sent SIGTERM to %d local workers; SIGKILL follows after %d s", running,
                 LOCAL_WORKERS_KILL_GRACE_S);
        int rc = uv_timer_start(&lw->kill_timer, on_kill_timer, LOCAL_WORKERS_KILL_GRACE_S * 1000, 0);
        if (rc == 0) {
            /* The timer must not keep the loop alive once every child is gone. */
            uv_unref((uv_handle_t *)&lw->kill_timer);
            return;
        }
    }
    close_kill_timer_when_done(lw);
}

void local_workers_free(local_workers *lw)
{
    for (int i = 0; i < lw->count; i++) {
        linebuf_free(&lw->workers[i].lines[0]);
        linebuf_free(&lw->workers[i].lines[1]);
    }
    free(lw->workers);
    lw->workers = NULL;
    lw->count = 0;
}
