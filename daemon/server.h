/* The sweepd server: one libuv loop serving the protocol of docs/PROTOCOL.md
 * on a unix socket and optionally TCP. server.c owns connections, framing,
 * limits, the group commit and reply flushing; ops_client.c and ops_worker.c
 * hold the operation handlers, found by name in one dispatch table. Replies and
 * events are queued per connection and written only after the transaction
 * that recorded them committed and, in durable mode, after a WAL sync that
 * began after that commit, so nothing acknowledged is lost to a crash.
 */
#ifndef SWEEPD_SERVER_H
#define SWEEPD_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>
#include <uv.h>

#include "linebuf.h"
#include "proto.h"
#include "store.h"

typedef struct server_options {
    const char *socket_path;
    const char *listen_address;  /* "HOST:PORT" or NULL for no TCP */
    const char *token;           /* required on TCP */
    const char *checkpoint_dir;  /* named in the worker hello reply; NULL: not named */
    double heartbeat_timeout_s;  /* default 30 */
    double idle_timeout_s;       /* default 30 */
    double grace_s;              /* restart grace for re-presented leases, default 60 */
    size_t max_connections;      /* default 1024 */
    size_t max_line_bytes;       /* default PROTO_MAX_LINE_BYTES */
} server_options;

enum conn_role { ROLE_CLIENT, ROLE_WORKER };

/* A lease a worker connection holds. */
typedef struct held_lease {
    int64_t trial;
    int64_t sweep;
    int64_t attempt;
    char lease[33];
} held_lease;

/* One queued reply or event; written after the commit. */
typedef struct out_item {
    struct out_item *next;
    char *text;       /* one line with its '\n' */
    size_t len;
    char *id_text;    /* the request id as JSON, NULL for events */
    uint64_t epoch;   /* the commit it reports on (server.commit_epoch numbering);
                         written once that commit is durable */
} out_item;

typedef struct server server;

/* Receives the output of a connection that has no socket (see
 * server_conn_open_detached): each flushed batch of whole lines. */
typedef void (*server_output_fn)(void *arg, const char *data, size_t len);

typedef struct conn {
    union {
        uv_stream_t stream;
        uv_pipe_t pipe;
        uv_tcp_t tcp;
    } h;
    server *srv;
    uint64_t number;        /* for logs: conn=N */
    char peer[80];          /* "unix" or "HOST:PORT" */
    int is_tcp;
    int authed;             /* TCP connections start unauthenticated */
    int closing;            /* uv_close called or queued */
    int close_after_flush;  /* close once the queued output is written */
    linebuf in;
    uint64_t last_input_ms; /* monotonic, uv_now */
    uint64_t partial_since_ms;
    struct conn *next, *prev;

    /* Output queued until the iteration's commit. */
    out_item *out_head, *out_tail;
    int dirty;
    struct conn *dirty_next;
    int parked;             /* output waits for a WAL sync */
    struct conn *parked_next;
    size_t writing_bytes;   /* handed to uv_write, not yet completed */
    server_output_fn sink;  /* set for a connection without a socket */
    void *sink_arg;

    /* Worker state, after hello with role worker. */
    enum conn_role role;
    char name[64];
    char host[128];
    int64_t pid;
    int bye;
    held_lease *held;
    size_t held_count, held_cap;
    uint64_t last_heard_ms;
    int64_t hb_step;
    double hb_loss;
    double hb_tokens_per_s;
    int has_heartbeat;

    /* A lease request with "wait": true, held until a trial is ready. */
    cJSON *wait_id;
    struct conn *wait_next;
    int waiting;

    /* watch subscription: sweep id, 0 for all. */
    int watching;
    int64_t watch_sweep;
} conn;

/* A running trial left by a previous daemon process, waiting to be
 * re-presented by its worker until deadline_ms (monotonic). */
typedef struct orphan_lease {
    held_lease lease;
    char worker[64];
    uint64_t deadline_ms;
    int adopted;
} orphan_lease;

struct server {
    uv_loop_t *loop;
    store *st;
    server_options opt;
    uv_pipe_t unix_listener;
    uv_tcp_t tcp_listener;
    int has_tcp;
    int unix_open, tcp_open;
    uv_check_t check;
    uv_idle_t idle;         /* keeps the poll from blocking while output waits */
    uv_timer_t tick;
    int idle_active;
    conn *conns;
    size_t conn_count;
    size_t watcher_count;   /* connections with a watch subscription */
    uint64_t next_conn_number;
    conn *dirty_head;
    conn *wait_head, *wait_tail;
    int waiters_ready;      /* a trial may have become ready */
    orphan_lease *orphans;
    size_t orphan_count;
    int stopping;
    uint64_t auth_fail_logged_ms;
    uint64_t auth_fail_suppressed;
    uint64_t conn_limit_logged_ms;  /* rejections past --max-connections, logged like auth failures */
    uint64_t conn_limit_suppressed;
    uint64_t leases, completions;

    /* Counters for the stats op and the benchmarks. */
    uint64_t requests;         /* request lines dispatched to a handler */
    uint64_t batch_requests;   /* requests dispatched since the last commit */
    uint64_t max_batch;        /* most requests covered by one commit */
    uint64_t commit_ns;        /* time spent in COMMIT */
    /* Durable acknowledgements. Commits are numbered from 1; output that
     * reports on commit n is written once synced_epoch >= n. One WAL sync
     * runs at a time on a libuv pool thread and covers every commit up to
     * sync_target. Commits made meanwhile wait for the next one. */
    uint64_t commit_epoch;     /* commits made by this server */
    uint64_t synced_epoch;     /* commits known durable */
    uint64_t sync_target;      /* the commit the sync in flight covers */
    int sync_busy;
    int sync_errno;            /* set by the pool thread, read after it */
    uint64_t sync_started_ns;
    uv_work_t sync_work;
    conn *parked_head;         /* connections whose output waits for a sync */
    uint64_t syncs, sync_ns;   /* for the stats op */

    /* Replies are printed here and copied into the output queue, one at a
     * time; a reply that does not fit is printed by cJSON_PrintUnformatted. */
    char reply_buf[4096];
};

/* Starts listening and serving on loop. Returns 0 or a negative libuv or
 * STORE_ERR_* error, logged with the address involved. */
int server_start(server *srv, uv_loop_t *loop, store *st, const server_options *opt);
/* Stops accepting, pushes shutdown to workers, replies to held leases, commits, flushes and
 * closes every handle; the loop then ends once the writes complete. */
void server_stop(server *srv);

/* ---- connections without a socket, for fuzzers and tests ---- */

/* Sets srv up like server_start but listens nowhere; connections come from
 * server_conn_open_detached. Stop it with server_stop. Returns 0 or a
 * negative libuv or STORE_ERR_* error. */
int server_init(server *srv, uv_loop_t *loop, store *st, const server_options *opt);
/* Opens a connection with no socket. Its output goes to sink when the loop
 * iteration ends (or at server_flush); is_tcp makes it start unauthenticated
 * like a TCP peer. Returns NULL when out of memory. The loop frees it once it
 * is closed (server_conn_close, a protocol violation or server_stop). */
conn *server_conn_open_detached(server *srv, int is_tcp, server_output_fn sink, void *sink_arg);
/* Takes bytes as if read from c's peer: the same framing, limits and dispatch. */
void server_conn_feed(conn *c, const char *data, size_t len);
/* Closes c as if its peer hung up; a worker's held trials are requeued. */
void server_conn_close(conn *c);
/* Runs the end of a loop iteration now: serves held leases, commits, flushes. */
void server_flush(server *srv);

/* ---- for the operation handlers ---- */

typedef struct request {
    conn *c;
    cJSON *root;
    const cJSON *id;
    const char *line;
    size_t len;
} request;

typedef void (*op_handler)(request *req);

typedef struct op_entry {
    const char *name;
    op_handler handler;
    int worker_only;  /* needs hello with role worker */
} op_entry;

/* Handlers defined in ops_client.c and ops_worker.c. */
void ops_hello(request *req);
void ops_lease(request *req);
void ops_heartbeat(request *req);
void ops_metrics(request *req);
void ops_checkpoint(request *req);
void ops_complete(request *req);
void ops_diverged(request *req);
void ops_failed(request *req);
void ops_preempted(request *req);
void ops_bye(request *req);
void ops_submit(request *req);
void ops_validate(request *req);
void ops_list(request *req);
void ops_stats(request *req);
void ops_status(request *req);
void ops_trials(request *req);
void ops_tickets(request *req);
void ops_workers(request *req);
void ops_pause(request *req);
void ops_resume(request *req);
void ops_cancel(request *req);
void ops_watch(request *req);

/* Queues {"id":..,"ok":true, fields...}; takes ownership of fields (may be NULL). */
void server_reply_ok(conn *c, const cJSON *id, cJSON *fields);
/* Queues an error reply whose message names what failed and what to do. */
void server_reply_error(conn *c, const cJSON *id, enum proto_error code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Maps a STORE_ERR_* to a protocol error reply. */
void server_reply_store_error(conn *c, const cJSON *id, int err, const char *what);
/* Queues an event to one connection; takes ownership of event. */
void server_push(conn *c, cJSON *event);
/* Sends an event to every watcher of sweep (0: all watchers); takes ownership. */
void server_broadcast(server *srv, int64_t sweep, cJSON *event);

/* Stops reading from c and closes it once its queued output is written. */
void server_close_after_flush(conn *c);
/* Compares two tokens in time that depends on their lengths only. */
int server_token_equal(const char *a, const char *b);
/* Logs a rejected authentication, at most one line per second. */
void server_log_auth_failure(server *srv, conn *c, const char *why);

/* Worker helpers (ops_worker.c). */
void server_serve_waiters(server *srv);
void server_requeue_held(server *srv, conn *c, const char *reason);
void server_check_timeouts(server *srv, uint64_t now_ms);
void server_trial_event(server *srv, int64_t sweep, int64_t trial, enum trial_state state, int64_t attempt,
                        const char *worker);
void server_after_trial_end(server *srv, int64_t sweep);
int server_held_remove(conn *c, int64_t trial);
int server_held_add(conn *c, const held_lease *lease);
void server_worker_gone(server *srv, conn *c);
int server_load_orphans(server *srv);

/* Returns 1 and sets *out when item is an integral JSON number within
 * +-2^53 (exact in a double), else 0. */
int server_json_int(const cJSON *item, int64_t *out);
/* Adds value to object under name as a raw JSON integer and returns the new
 * item, or NULL when out of memory. cJSON prints every number with "%1.15g"
 * and reads it back with sscanf to check it, about 3,000 instructions per
 * number, so reply fields on the lease path use this instead. */
cJSON *server_json_add_int(cJSON *object, const char *name, int64_t value);
/* Returns 1 and sets *out when item is a JSON number or one of the strings
 * "nan", "inf" and "-inf", else 0. */
int server_json_loss(const cJSON *item, double *out);

/* Field readers: return 1 when present and valid, 0 when absent, -1 when
 * present with the wrong type (an error reply naming the field was queued). */
int req_int(request *req, const char *field, int64_t *out);
int req_string(request *req, const char *field, const char **out);
int req_loss(request *req, const char *field, double *out);
int req_bool(request *req, const char *field, int *out);

#endif
