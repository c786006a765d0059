/* Local sweep-worker processes started by sweepd --workers N. Each child runs
 * `sweep-worker --connect unix:SOCKET --threads 1 --name local-K
 * --checkpoint-dir STATE_DIR/checkpoints`, found next
 * to the sweepd binary or on PATH. Its stdout and stderr lines are copied to
 * sweepd's stderr with a "local-K | " prefix. A child that exits with an error
 * is restarted with exponential backoff. Five quick failures in a row count
 * as a crash loop, and then it is not restarted again. A child counts as gone only when it has
 * exited and both pipes reached EOF.
 */
#ifndef SWEEPD_LOCAL_WORKERS_H
#define SWEEPD_LOCAL_WORKERS_H

#include <limits.h>
#include <stdint.h>

#include <uv.h>

#include "linebuf.h"

/* Seconds between SIGTERM and SIGKILL at shutdown, for final checkpoints. */
#define LOCAL_WORKERS_KILL_GRACE_S 20
/* A run shorter than this counts as a quick failure. */
#define LOCAL_WORKERS_QUICK_S 10
#define LOCAL_WORKERS_MAX_QUICK_FAILURES 5

typedef struct local_workers local_workers;

enum local_worker_state {
    LOCAL_WORKER_IDLE,     /* not started, or waiting to restart */
    LOCAL_WORKER_RUNNING,  /* process alive or pipes still open */
    LOCAL_WORKER_GAVE_UP,  /* crash loop: no more restarts */
};

typedef struct local_worker {
    local_workers *owner;
    int index;
    char name[32];
    enum local_worker_state state;
    uv_process_t process;
    uv_pipe_t pipes[2];     /* stdout, stderr */
    linebuf lines[2];
    int open_handles;       /* process + pipes not yet closed */
    int exited;
    int64_t exit_status;
    int term_signal;
    uint64_t started_ms;
    int quick_failures;
    uv_timer_t restart_timer;
    int timer_open;
} local_worker;

struct local_workers {
    uv_loop_t *loop;
    local_worker *workers;
    int count;
    char exe[PATH_MAX];
    char connect[PATH_MAX + 8];
    char checkpoint_dir[PATH_MAX];
    int stopping;
    uv_timer_t kill_timer;
    int kill_timer_open;
};

/* Starts count workers (0 does nothing), each storing its checkpoints under
 * checkpoint_dir. Returns 0 or a negative libuv error (UV_ENAMETOOLONG when a
 * path does not fit). */
int local_workers_start(local_workers *lw, uv_loop_t *loop, const char *socket_path,
                        const char *checkpoint_dir, int count);
/* Sends SIGTERM to running children and SIGKILL after the grace period; the
 * handles close as the children go, so the loop can end. */
void local_workers_stop(local_workers *lw);
/* Frees memory once the loop has ended. */
void local_workers_free(local_workers *lw);

#endif
