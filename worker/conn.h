/* The worker's connection to sweepd: one unix or TCP stream on the event
 * loop, newline-delimited lines in and out, and reconnects with exponential
 * backoff and jitter whenever the stream fails or closes.
 *
 * The connection does not parse the protocol. The session gets on_open, one
 * on_line per received line and on_close. It calls conn_send and, after a
 * successful hello, conn_reset_backoff. Incoming lines are bounded by
 * PROTO_MAX_LINE_BYTES through common/linebuf.h.
 */
#ifndef SWEEPD_WORKER_CONN_H
#define SWEEPD_WORKER_CONN_H

#include <stddef.h>
#include <uv.h>

#include "linebuf.h"

enum conn_state { CONN_WAITING, CONN_CONNECTING, CONN_OPEN, CONN_CLOSING, CONN_STOPPED };

typedef struct conn conn;

typedef struct conn_callbacks {
    void (*on_open)(conn *c);
    /* line is NUL-terminated and valid only during the call. */
    void (*on_line)(conn *c, char *line, size_t len);
    /* The stream is gone (a reconnect is already scheduled unless stopping). */
    void (*on_close)(conn *c, const char *reason);
} conn_callbacks;

struct conn {
    uv_loop_t *loop;
    int is_tcp;
    char path[512];          /* unix socket path */
    char host[256];          /* TCP host */
    char port[16];
    union {
        uv_handle_t handle;
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } sock;
    int sock_initialized;    /* sock is an initialized handle, not yet closed */
    uv_connect_t connect_req;
    uv_getaddrinfo_t resolve_req;
    uv_timer_t retry_timer;
    linebuf in;
    enum conn_state state;
    unsigned failures;       /* consecutive failed attempts, for the backoff */
    unsigned backoff_min_ms, backoff_max_ms;
    conn_callbacks cb;
    void *data;              /* owner's context */
};

/* Parses "unix:PATH" or "tcp:HOST:PORT" (HOST may be [v6]). Returns 0, or -1
 * with err saying what form is expected. */
int conn_init(conn *c, uv_loop_t *loop, const char *target, const conn_callbacks *cb, void *data,
              char *err, size_t err_size);

/* Starts the first connection attempt. */
void conn_start(conn *c);

/* Writes line plus "\n". Returns 0, or -1 when not open or out of memory
 * (the line is dropped; the session resends its state after a reconnect). */
int conn_send(conn *c, const char *line, size_t len);

/* Closes the stream because the peer misbehaved; a reconnect follows. */
void conn_drop(conn *c, const char *reason);

/* Forgets earlier failures, so the next reconnect starts at the minimum delay. */
void conn_reset_backoff(conn *c);

/* Closes everything for good; after the loop runs, no handle remains. */
void conn_stop(conn *c);

/* Computes the delay before attempt number failures+1: min * 2^failures,
 * capped at max, then a uniformly random value in [delay/2, delay]. Exposed
 * for the unit test. */
unsigned conn_backoff_ms(unsigned failures, unsigned min_ms, unsigned max_ms, unsigned random);

#endif
