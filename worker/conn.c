/* Connection and reconnect; see conn.h. States:
 *
 *   WAITING --timer--> CONNECTING --connected--> OPEN
 *      ^                   |                       |
 *      +---- close cb <-- CLOSING <--- error / EOF-+
 *
 * conn_stop moves any state to STOPPED once every handle is closed.
 */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "proto.h"

typedef struct write_req {
    uv_write_t req;
    uv_buf_t buf;
    char data[]; /* the line and its "\n" */
} write_req;

static void start_attempt(conn *c);

unsigned conn_backoff_ms(unsigned failures, unsigned min_ms, unsigned max_ms, unsigned random)
{
    unsigned delay = min_ms;
    for (unsigned i = 0; i < failures && delay < max_ms; i++)
        delay = delay > max_ms / 2 ? max_ms : delay * 2;
    if (delay > max_ms)
        delay = max_ms;
    unsigned half = delay / 2;
    return half + (half ? random % (delay - half + 1) : 0);
}

int conn_init(conn *c, uv_loop_t *loop, const char *target, const conn_callbacks *cb, void *data,
              char *err, size_t err_size)
{
    memset(c, 0, sizeof(*c));
    c->loop = loop;
    c->cb = *cb;
    c->data = data;
    c->backoff_min_ms = 100;
    c->backoff_max_ms = 10000;
    c->state = CONN_STOPPED;

    if (strncmp(target, "unix:", 5) == 0) {
        const char *path = target + 5;
        if (path[0] == '\0' || strlen(path) >= sizeof(c->path)) {
            snprintf(err, err_size, "--connect %s: unix socket path is empty or too long", target);
            return -1;
        }
        memcpy(c->path, path, strlen(path) + 1);
    } else if (strncmp(target, "tcp:", 4) == 0) {
        const char *hostport = target + 4;
        const char *colon = strrchr(hostport, ':');
        const char *host = hostport;
        size_t host_len = colon ? (size_t)(colon - hostport) : 0;
        if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
            host++;
            host_len -= 2;
        }
        if (colon == NULL || host_len == 0 || host_len >= sizeof(c->host) || colon[1] == '\0' ||
            strlen(colon + 1) >= sizeof(c->port) || strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
            snprintf(err, err_size, "--connect %s: expected tcp:HOST:PORT, e.g. tcp:127.0.0.1:7000",
                     target);
            return -1;
        }
        memcpy(c->host, host, host_len);
        c->host[host_len] = '\0';
        memcpy(c->port, colon + 1, strlen(colon + 1) + 1);
        c->is_tcp = 1;
    } else {
        snprintf(err, err_size, "--connect %s: expected unix:PATH or tcp:HOST:PORT", target);
        return -1;
    }

    if (linebuf_init(&c->in, PROTO_MAX_LINE_BYTES) != 0) {
        snprintf(err, err_size, "out of memory");
        return -1;
    }
    int rc = uv_timer_init(loop, &c->retry_timer);
    if (rc != 0) {
        linebuf_free(&c->in);
        snprintf(err, err_size, "uv_timer_init: %s", uv_strerror(rc));
        return -1;
    }
    c->retry_timer.data = c;
    c->state = CONN_WAITING;
    return 0;
}

static void on_retry_timer(uv_timer_t *timer)
{
    start_attempt(timer->data);
}

/* Schedules the next attempt after the backoff delay. */
static void schedule_retry(conn *c)
{
    unsigned delay_ms = conn_backoff_ms(c->failures, c->backoff_min_ms, c->backoff_max_ms,
                                        (unsigned)rand());
    c->failures++;
    c->state = CONN_WAITING;
    int rc = uv_timer_start(&c->retry_timer, on_retry_timer, delay_ms, 0);
    if (rc != 0)
        log_error("conn", "failed to schedule reconnect: %s", uv_strerror(rc));
    else
        log_debug("conn", "reconnecting in %u ms (attempt %u)", delay_ms, c->failures + 1);
}

static void on_sock_closed(uv_handle_t *handle)
{
    conn *c = handle->data;
    c->sock_initialized = 0;
    if (c->state == CONN_STOPPED)
        return;
    schedule_retry(c);
}

/* Closes the stream (if any) and reports the reason once. */
static void close_stream(conn *c, const char *reason)
{
    int was_open = c->state == CONN_OPEN;
    c->state = c->state == CONN_STOPPED ? CONN_STOPPED : CONN_CLOSING;
    /* Reset the framing so a half line from the old stream cannot join the next. */
    linebuf_free(&c->in);
    if (linebuf_init(&c->in, PROTO_MAX_LINE_BYTES) != 0)
        log_error("conn", "out of memory resetting the line buffer");
    if (c->sock_initialized && !uv_is_closing(&c->sock.handle))
        uv_close(&c->sock.handle, on_sock_closed);
    else if (!c->sock_initialized && c->state != CONN_STOPPED)
        schedule_retry(c);
    if (was_open && c->cb.on_close)
        c->cb.on_close(c, reason);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    static char chunk[65536];
    /* One connection per process, and reads are consumed before the next
     * alloc, so a static chunk is safe here. */
    *buf = uv_buf_init(chunk, sizeof(chunk));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        close_stream(c, nread == UV_EOF ? "daemon closed the connection" : uv_strerror((int)nread));
        return;
    }
    if (linebuf_append(&c->in, buf->base, (size_t)nread) != 0) {
        log_error("conn", "daemon sent a line longer than %d bytes; reconnecting",
                  PROTO_MAX_LINE_BYTES);
        close_stream(c, "line too long");
        return;
    }
    for (;;) {
        char *line;
        size_t len;
        int rc = linebuf_next(&c->in, &line, &len);
        if (rc == 0)
            return;
        if (rc < 0) {
            close_stream(c, "line too long");
            return;
        }
        c->cb.on_line(c, line, len);
        /* The callback may have closed or stopped the connection. */
        if (c->state != CONN_OPEN)
            return;
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    conn *c = req->data;
    if (c->state != CONN_CONNECTING)
        return; /* stopped meanwhile; the close callback cleans up */
    if (status != 0) {
        if (c->failures == 0 || log_get_level() <= LOG_DEBUG)
            log_warn("conn", "failed to connect to %s%s%s: %s; retrying with backoff",
                     c->is_tcp ? c->host : c->path, c->is_tcp ? ":" : "", c->is_tcp ? c->port : "",
                     uv_strerror(status));
        close_stream(c, uv_strerror(status));
        return;
    }
    int rc = uv_read_start(&c->sock.stream, on_alloc, on_read);
    if (rc != 0) {
        close_stream(c, uv_strerror(rc));
        return;
    }
    c->state = CONN_OPEN;
    c->cb.on_open(c);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    conn *c = req->data;
    if (c->state != CONN_CONNECTING) {
        uv_freeaddrinfo(res);
        return;
    }
    int rc = status;
    if (rc == 0)
        rc = uv_tcp_init(c->loop, &c->sock.tcp);
    if (rc == 0) {
        c->sock_initialized = 1;
        c->sock.handle.data = c;
        c->connect_req.data = c;
        rc = uv_tcp_connect(&c->connect_req, &c->sock.tcp, res->ai_addr, on_connected);
    }
    uv_freeaddrinfo(res);
    if (rc != 0) {
        log_warn("conn", "failed to connect to %s:%s: %s; retrying with backoff", c->host, c->port,
                 uv_strerror(rc));
        close_stream(c, uv_strerror(rc));
    }
}

static void start_attempt(conn *c)
{
    if (c->state != CONN_WAITING)
        return;
    c->state = CONN_CONNECTING;
    if (c->is_tcp) {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        c->resolve_req.data = c;
        int rc = uv_getaddrinfo(c->loop, &c->resolve_req, on_resolved, c->host, c->port, &hints);
        if (rc != 0) {
            log_warn("conn", "failed to resolve %s: %s", c->host, uv_strerror(rc));
            close_stream(c, uv_strerror(rc));
        }
        return;
    }
    int rc = uv_pipe_init(c->loop, &c->sock.pipe, 0);
    if (rc != 0) {
        log_error("conn", "uv_pipe_init: %s", uv_strerror(rc));
        close_stream(c, uv_strerror(rc));
        return;
    }
    c->sock_initialized = 1;
    c->sock.handle.data = c;
    c->connect_req.data = c;
    uv_pipe_connect(&c->connect_req, &c->sock.pipe, c->path, on_connected);
}

void conn_start(conn *c)
{
    start_attempt(c);
}

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    conn *c = req->handle->data;
    free(w);
    if (status != 0 && status != UV_ECANCELED && c->state == CONN_OPEN)
        close_stream(c, uv_strerror(status));
}

int conn_send(conn *c, const char *line, size_t len)
{
    if (c->state != CONN_OPEN)
        return -1;
    write_req *w = malloc(sizeof(*w) + len + 1);
    if (w == NULL)
        return -1;
    memcpy(w->data, line, len);
    w->data[len] = '\n';
    w->buf = uv_buf_init(w->data, (unsigned)(len + 1));
    int rc = uv_write(&w->req, &c->sock.stream, &w->buf, 1, on_written);
    if (rc != 0) {
        free(w);
        close_stream(c, uv_strerror(rc));
        return -1;
    }
    return 0;
}

void conn_drop(conn *c, const char *reason)
{
    if (c->state == CONN_OPEN || c->state == CONN_CONNECTING)
        close_stream(c, reason);
}

void conn_reset_backoff(conn *c)
{
    c->failures = 0;
}

static void on_timer_closed(uv_handle_t *handle)
{
}

void conn_stop(conn *c)
{
    int was_open = c->state == CONN_OPEN;
    c->state = CONN_STOPPED;
    if (!uv_is_closing((uv_handle_t *)&c->retry_timer))
        uv_close((uv_handle_t *)&c->retry_timer, on_timer_closed);
    if (c->sock_initialized && !uv_is_closing(&c->sock.handle))
        uv_close(&c->sock.handle, on_sock_closed);
    linebuf_free(&c->in);
    if (was_open && c->cb.on_close)
        c->cb.on_close(c, "stopped");
}
