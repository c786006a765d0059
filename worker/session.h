/* The worker's protocol session: hello, lease, heartbeats, metrics,
 * checkpoint reports, the final report of each trial, pushed events, signals
 * and the exit rules (--max-trials, --exit-when-idle, preemption).
 *
 * Everything here runs on the event loop thread. The session survives
 * reconnects: what the daemon has not acknowledged (metric points, the newest
 * checkpoint, the final report) stays queued and is sent again after the next
 * hello, once the held lease was presented again and accepted.
 */
#ifndef SWEEPD_WORKER_SESSION_H
#define SWEEPD_WORKER_SESSION_H

#include <uv.h>

#include "ckpt.h"
#include "conn.h"
#include "trial.h"

typedef struct worker_options {
    const char *connect;          /* unix:PATH or tcp:HOST:PORT */
    char token[512];              /* from --token-file, or "" */
    char name[128];
    int threads;
    const char *checkpoint_dir;   /* NULL: the daemon's hint, then the default */
    const char *checkpoint_url;
    long checkpoint_every;        /* steps; 0 = only when preempted */
    char cache_dir[4096];
    long max_trials;              /* 0 = no limit */
    double exit_when_idle_s;      /* 0 = wait for trials forever */
    long http_stall_timeout_s;    /* an HTTP transfer below 1 byte/s this long fails */
    long long max_dataset_bytes;  /* largest dataset download (decoded); 0 = 4 GiB */
} worker_options;

enum req_kind { REQ_HELLO, REQ_LEASE, REQ_HEARTBEAT, REQ_REATTACH, REQ_METRICS, REQ_CHECKPOINT,
                REQ_FINAL, REQ_BYE };

#define SESSION_MAX_INFLIGHT 32

typedef struct session {
    uv_loop_t *loop;
    worker_options opt;
    conn conn;
    ckpt_store store;
    int store_ready;
    char worker_id[128];

    uv_timer_t heartbeat_timer;
    uv_timer_t idle_timer;
    uv_signal_t sigterm, sigint;
    unsigned heartbeat_interval_ms;

    long long next_request_id;
    struct { long long id; enum req_kind kind; int count; } inflight[SESSION_MAX_INFLIGHT];
    int hello_done;
    int lease_waiting, bye_sent, bye_acked, reattach_sent, metrics_sent, checkpoint_sent, final_sent;
    int hold_until_tick;   /* a transient error: resend at the next heartbeat tick */

    /* The held trial. */
    int has_trial;
    trial cur;
    int trial_thread_done; /* outcome known, thread joined */
    int wake_closing;      /* cur.wake is closing; no new trial until closed */
    int lease_presented;   /* the daemon accepted the lease on this connection */
    int dropped;           /* stale lease or cancel: report nothing more */
    trial_report final;    /* the outcome, once trial_thread_done */
    train_progress progress;
    int have_progress;
    metric_point *outbox;  /* metric points not yet acknowledged */
    size_t outbox_len, outbox_cap;
    char checkpoint_location[CKPT_LOCATION_MAX]; /* the newest stored */
    long checkpoint_step;
    int checkpoint_unsent; /* newer than any chosen for a report */
    char report_location[CKPT_LOCATION_MAX];     /* chosen, waiting for its points */
    long report_step;
    int report_pending;
    long report_sent_step; /* the report in flight, or -1 */
    long report_lost_step; /* in flight when the connection closed, or -1 */
    int final_reported;    /* the final report was sent at least once */

    long trials_done;
    int leaving;           /* no new leases; bye and exit once the trial is reported */
    int signals_seen;
    int stopped;
    int exit_code;
} session;

/* Sets up handles on loop and starts connecting. Returns 0, or -1 with err. */
int session_start(session *s, uv_loop_t *loop, const worker_options *opt, char *err,
                  size_t err_size);

#endif
