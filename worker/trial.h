/* One leased trial, trained on its own thread.
 *
 * The trial thread resolves the dataset, resumes from the lease's checkpoint
 * (or an older valid one, or starts over), runs trainer_run and stores
 * checkpoints. It never touches the connection: it puts progress, metric
 * points, checkpoint locations and the outcome into trial_shared under a
 * mutex and wakes the event loop with uv_async_send. uv_async coalesces
 * wake-ups, so the loop takes everything queued at once with trial_take().
 * The loop stops the run by setting `stop`; the trainer polls it at step
 * boundaries and saves a checkpoint before it returns.
 */
#ifndef SWEEPD_WORKER_TRIAL_H
#define SWEEPD_WORKER_TRIAL_H

#include <stdatomic.h>
#include <uv.h>

#include "ckpt.h"
#include "hparams.h"
#include "trainer.h"

#define TRIAL_LEASE_MAX 128
#define TRIAL_ERROR_MAX 1024

enum trial_outcome {
    TRIAL_RUNNING = 0,
    TRIAL_COMPLETE,   /* all steps ran with a finite final loss */
    TRIAL_DIVERGED,   /* NaN or Inf; diverged_step and diverged_loss are set */
    TRIAL_FAILED,     /* dataset, checkpoint or trainer error; error is set */
    TRIAL_STOPPED,    /* stop was requested; checkpoint_* is the newest checkpoint */
};

typedef struct metric_point {
    long step;
    double train_loss; /* nats per byte */
    double val_loss;   /* nats per byte */
} metric_point;

/* Everything the loop reads from the thread, copied out by trial_take(). */
typedef struct trial_report {
    int have_progress;
    train_progress progress;
    metric_point *points;  /* owned by the caller after trial_take; free() it */
    size_t n_points;
    int new_checkpoint;    /* checkpoint_* changed since the last take */
    char checkpoint_location[CKPT_LOCATION_MAX];
    long checkpoint_step;
    enum trial_outcome outcome;
    train_result result;
    double diverged_loss;
    char error[TRIAL_ERROR_MAX];
} trial_report;

typedef struct trial {
    /* Set before trial_start, read-only afterwards. */
    long long sweep, id, attempt;
    char lease[TRIAL_LEASE_MAX];
    train_config cfg;                        /* finalized */
    char resume_location[CKPT_LOCATION_MAX]; /* from the lease, or "" */
    long resume_step;
    const ckpt_store *store;
    const char *cache_dir;
    http_limits limits;
    int threads;
    long checkpoint_every;                   /* steps; 0 = only when stopping */

    atomic_int stop;     /* nonzero: stop at the next step boundary */
    atomic_int discard;  /* nonzero: save no checkpoint, the results are dropped */

    uv_thread_t thread;
    uv_async_t wake;
    uv_mutex_t mutex;
    int started;         /* thread and handles exist */

    /* Guarded by mutex. */
    trial_report shared;
    ckpt_pins pins;       /* slots TRIAL_PIN_*, set by the loop */
    long previous_checkpoint_step; /* the second newest stored, or -1 */
    size_t points_cap;
    ckpt_history history; /* touched only by the trial thread */
    long last_step;
    double last_train_loss;
} trial;

/* Slots of trial.pins: the checkpoints the daemon may have stored. The loop
 * picks one to report (CHOSEN), sends it (SENT) and gets it acknowledged
 * (HELD). A report whose reply was lost with the connection may have been
 * stored too (LOST, and LOST_OLDER for the one before). A checkpoint is
 * deleted only once it is in no slot. */
enum {
    TRIAL_PIN_HELD = 0,
    TRIAL_PIN_SENT = 1,
    TRIAL_PIN_CHOSEN = 2,
    TRIAL_PIN_LOST = 3,
    TRIAL_PIN_LOST_OLDER = 4,
};

/* Starts the thread. on_wake runs on the loop thread after every wake-up,
 * with t->wake.data set to data. Returns 0 or a libuv error code. */
int trial_start(trial *t, uv_loop_t *loop, uv_async_cb on_wake, void *data);

/* Moves what the thread queued into report (points become the caller's). */
void trial_take(trial *t, trial_report *report);

/* Pins the checkpoint at step in slot when it is one of the two newest
 * stored, which the thread never deletes. Returns 0, or -1 when it is older
 * (it may be gone; a newer one is on its way to the loop). */
int trial_pin_kept(trial *t, int slot, long step);

/* Sets pin slot to step (-1 clears it). */
void trial_pin(trial *t, int slot, long step);

/* Joins the thread and closes the async handle. Call it only once the outcome
 * is no longer RUNNING or after setting stop, because the join waits for the
 * thread. close_cb runs when the handle is closed; t may be freed after it. */
void trial_finish(trial *t, uv_close_cb close_cb);

/* Formats a loss as the protocol wants it for the "loss" string of
 * diverged: "nan", "inf" or "-inf". Finite values return NULL. */
const char *trial_nonfinite_text(double value);

#endif
