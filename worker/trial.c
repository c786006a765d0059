/* The trial thread; see trial.h. Lock order: only t->mutex, never held
 * while training, saving or transferring. */
#include "trial.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dataset.h"
#include "log.h"

const char *trial_nonfinite_text(double value)
{
    if (isnan(value))
        return "nan";
    if (isinf(value))
        return value > 0 ? "inf" : "-inf";
    return NULL;
}

static void wake_loop(trial *t)
{
    int rc = uv_async_send(&t->wake);
    if (rc != 0)
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld uv_async_send: %s", t->sweep, t->id,
                  t->attempt, uv_strerror(rc));
}

static void on_step(void *ctx, const train_progress *p)
{
    trial *t = ctx;
    uv_mutex_lock(&t->mutex);
    t->shared.progress = *p;
    t->shared.have_progress = 1;
    t->last_step = p->step;
    t->last_train_loss = p->train_loss;
    uv_mutex_unlock(&t->mutex);
    wake_loop(t);
}

static void on_eval(void *ctx, long step, double train_loss, double val_loss)
{
    trial *t = ctx;
    uv_mutex_lock(&t->mutex);
    if (t->shared.n_points == t->points_cap) {
        size_t cap = t->points_cap ? t->points_cap * 2 : 64;
        metric_point *grown = realloc(t->shared.points, cap * sizeof(*grown));
        if (grown == NULL) {
            uv_mutex_unlock(&t->mutex);
            log_error("trial", "sweep=%lld trial=%lld attempt=%lld out of memory; metric point at "
                      "step %ld dropped", t->sweep, t->id, t->attempt, step);
            return;
        }
        t->shared.points = grown;
        t->points_cap = cap;
    }
    t->shared.points[t->shared.n_points++] =
        (metric_point){.step = step, .train_loss = train_loss, .val_loss = val_loss};
    uv_mutex_unlock(&t->mutex);
    wake_loop(t);
}

static int on_checkpoint(void *ctx, trainer *tr, long step)
{
    trial *t = ctx;
    if (atomic_load(&t->discard))
        return 0;

    char location[CKPT_LOCATION_MAX], err[TRIAL_ERROR_MAX];
    if (ckpt_store_save(t->store, tr, t->sweep, t->id, step, location, err, sizeof(err)) != 0) {
        log_error("ckpt", "sweep=%lld trial=%lld attempt=%lld step=%ld checkpoint failed: %s; "
                  "training goes on", t->sweep, t->id, t->attempt, step, err);
        return -1;
    }
    log_info("ckpt", "sweep=%lld trial=%lld attempt=%lld step=%ld saved %s", t->sweep, t->id,
             t->attempt, step, location);

    /* Publish first, then copy the pins: a pin set after the copy names one
     * of the two newest (see trial_pin_kept), which the prune below keeps. */
    uv_mutex_lock(&t->mutex);
    memcpy(t->shared.checkpoint_location, location, strlen(location) + 1);
    t->previous_checkpoint_step = t->shared.checkpoint_step;
    t->shared.checkpoint_step = step;
    t->shared.new_checkpoint = 1;
    ckpt_pins pins = t->pins;
    uv_mutex_unlock(&t->mutex);

    ckpt_store_keep(t->store, &t->history, &pins, location, step);
    wake_loop(t);
    return 0;
}

/* Tries trainer_resume on one location. Returns 0 with *out set, or -1 after
 * logging why that checkpoint cannot be used. */
static int resume_from(trial *t, const char *location, const char *dataset_path, trainer **out)
{
    char local[CKPT_LOCATION_MAX], err[TRIAL_ERROR_MAX];
    int staged = 0;
    int rc = ckpt_store_fetch(t->store, location, local, sizeof(local), &staged, err, sizeof(err));
    if (rc == 0)
        rc = trainer_resume(out, local, &t->cfg, dataset_path, err, sizeof(err));
    if (staged)
        unlink(local);
    if (rc != 0) {
        log_warn("ckpt", "sweep=%lld trial=%lld attempt=%lld checkpoint %s is not usable: %s",
                 t->sweep, t->id, t->attempt, location, err);
        return rc;
    }

    /* The resumed checkpoint is deleted once two newer ones exist and the
     * daemon has stored a newer one. NOTE: a URL store has no listing, so the older checkpoint that the
     * previous attempt kept beside this one stays on the server. */
    ckpt_history_start(&t->history, location);
    return 0;
}

/* Creates the trainer: from the lease's checkpoint, else from an older one in
 * the same directory, else from scratch (an unreadable checkpoint must not
 * make the trial fail forever). */
static int open_trainer(trial *t, const char *dataset_path, trainer **out, char *err,
                        size_t err_size)
{
    if (t->resume_location[0] != '\0') {
        if (resume_from(t, t->resume_location, dataset_path, out) == 0) {
            log_info("ckpt", "sweep=%lld trial=%lld attempt=%lld resumed from %s at step %ld",
                     t->sweep, t->id, t->attempt, t->resume_location, trainer_step_count(*out));
            return 0;
        }
        char older[8][CKPT_LOCATION_MAX];
        int n = ckpt_store_older(t->resume_location, older, 8);
        for (int i = 0; i < n; i++) {
            if (resume_from(t, older[i], dataset_path, out) == 0) {
                log_info("ckpt", "sweep=%lld trial=%lld attempt=%lld resumed from older "
                         "checkpoint %s at step %ld", t->sweep, t->id, t->attempt, older[i],
                         trainer_step_count(*out));
                return 0;
            }
        }
        log_warn("ckpt", "sweep=%lld trial=%lld attempt=%lld no usable checkpoint; starting "
                 "over from step 0", t->sweep, t->id, t->attempt);
    }
    return trainer_create(out, &t->cfg, dataset_path, err, err_size);
}

static void finish(trial *t, enum trial_outcome outcome, const train_result *result,
                   const char *error)
{
    uv_mutex_lock(&t->mutex);
    t->shared.outcome = outcome;
    if (result != NULL)
        t->shared.result = *result;
    if (outcome == TRIAL_DIVERGED)
        t->shared.diverged_loss = t->last_train_loss;
    if (error != NULL)
        snprintf(t->shared.error, sizeof(t->shared.error), "%s", error);
    uv_mutex_unlock(&t->mutex);
    wake_loop(t);
}

static void run_thread(void *arg)
{
    trial *t = arg;
    char err[TRIAL_ERROR_MAX];
    trainer_thread_setup(t->threads);

    /* Dataset first: a bad URL fails the trial before any training. */
    dataset_source source;
    http_limits limits = t->limits;
    limits.stop = &t->stop;
    if (dataset_resolve(t->cfg.dataset, t->cfg.dataset_sha256, t->cache_dir, &limits, &source, err,
                        sizeof(err)) != 0) {
        if (atomic_load(&t->stop)) {
            finish(t, TRIAL_STOPPED, NULL, NULL);
            return;
        }
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld %s", t->sweep, t->id, t->attempt,
                  err);
        finish(t, TRIAL_FAILED, NULL, err);
        return;
    }
    const char *origin = "local file";
    if (source.cache_hit)
        origin = "cache hit";
    else if (source.refetched)
        origin = "downloaded again: the cached copy did not match dataset_sha256";
    else if (source.downloaded)
        origin = "downloaded";
    log_info("trial", "sweep=%lld trial=%lld attempt=%lld dataset %s (%s)", t->sweep, t->id,
             t->attempt, source.path, origin);

    trainer *tr = NULL;
    if (open_trainer(t, source.path, &tr, err, sizeof(err)) != 0) {
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld trainer: %s", t->sweep, t->id,
                  t->attempt, err);
        char message[TRIAL_ERROR_MAX];
        snprintf(message, sizeof(message), "trainer: %.*s", TRIAL_ERROR_MAX - 16, err);
        finish(t, TRIAL_FAILED, NULL, message);
        return;
    }

    train_hooks hooks = {
        .ctx = t,
        .on_step = on_step,
        .on_eval = on_eval,
        .on_checkpoint = on_checkpoint,
        .checkpoint_every = t->checkpoint_every,
        .stop = &t->stop,
    };
    train_result result;
    memset(&result, 0, sizeof(result));
    int status = trainer_run(tr, &hooks, &result, err, sizeof(err));
    trainer_free(tr);

    if (status < 0) {
        log_error("trial", "sweep=%lld trial=%lld attempt=%lld training failed: %s", t->sweep,
                  t->id, t->attempt, err);
        finish(t, TRIAL_FAILED, &result, err);
    } else if (status == TRAIN_STOPPED) {
        finish(t, TRIAL_STOPPED, &result, NULL);
    } else if (status == TRAIN_DIVERGED || !isfinite(result.final_loss)) {
        if (status != TRAIN_DIVERGED) {
            result.diverged_step = result.steps;
            t->last_train_loss = result.final_loss;
        }
        finish(t, TRIAL_DIVERGED, &result, NULL);
    } else {
        finish(t, TRIAL_COMPLETE, &result, NULL);
    }
}

int trial_start(trial *t, uv_loop_t *loop, uv_async_cb on_wake, void *data)
{
    /* The lease's checkpoint is the newest known until this run stores one. */
    memcpy(t->shared.checkpoint_location, t->resume_location, strlen(t->resume_location) + 1);
    t->shared.checkpoint_step = t->resume_step;
    t->shared.outcome = TRIAL_RUNNING;
    for (int i = 0; i < CKPT_PINS; i++)
        t->pins.steps[i] = -1;
    if (t->resume_location[0] != '\0')
        t->pins.steps[TRIAL_PIN_HELD] = t->resume_step;
    t->previous_checkpoint_step = -1;

    int rc = uv_mutex_init(&t->mutex);
    if (rc != 0)
        return rc;
    rc = uv_async_init(loop, &t->wake, on_wake);
    if (rc != 0) {
        uv_mutex_destroy(&t->mutex);
        return rc;
    }
    t->wake.data = data;
    rc = uv_thread_create(&t->thread, run_thread, t);
    if (rc != 0) {
        uv_close((uv_handle_t *)&t->wake, NULL);
        uv_mutex_destroy(&t->mutex);
        return rc;
    }
    t->started = 1;
    return 0;
}

void trial_take(trial *t, trial_report *report)
{
    uv_mutex_lock(&t->mutex);
    *report = t->shared;
    t->shared.points = NULL;
    t->shared.n_points = 0;
    t->points_cap = 0;
    t->shared.new_checkpoint = 0;
    t->shared.have_progress = 0;
    uv_mutex_unlock(&t->mutex);
}

int trial_pin_kept(trial *t, int slot, long step)
{
    int rc = -1;
    uv_mutex_lock(&t->mutex);
    if (t->shared.checkpoint_location[0] != '\0' &&
        (step == t->shared.checkpoint_step || step == t->previous_checkpoint_step)) {
        t->pins.steps[slot] = step;
        rc = 0;
    }
    uv_mutex_unlock(&t->mutex);
    return rc;
}

void trial_pin(trial *t, int slot, long step)
{
    uv_mutex_lock(&t->mutex);
    t->pins.steps[slot] = step;
    uv_mutex_unlock(&t->mutex);
}

void trial_finish(trial *t, uv_close_cb close_cb)
{
    if (!t->started) {
        close_cb((uv_handle_t *)&t->wake);
        return;
    }
    int rc = uv_thread_join(&t->thread);
    if (rc != 0)
        log_error("trial", "sweep=%lld trial=%lld uv_thread_join: %s", t->sweep, t->id,
                  uv_strerror(rc));
    uv_mutex_destroy(&t->mutex);
    free(t->shared.points);
    t->shared.points = NULL;
    t->started = 0;
    uv_close((uv_handle_t *)&t->wake, close_cb);
}
