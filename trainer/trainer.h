/* The training engine: a byte-level GPT-style transformer trained on one text
 * file, with checkpoints that resume bit for bit.
 *
 * A run is created from a finalized train_config and a local dataset path,
 * then driven either step by step or by trainer_run(), which evaluates,
 * checkpoints and stops on request at step boundaries. All buffers are
 * allocated in trainer_create(); nothing is allocated per step. Losses are in
 * nats per byte. Details: docs/TRAINER.md.
 */
#ifndef SWEEPD_TRAINER_H
#define SWEEPD_TRAINER_H

#include <stdatomic.h>
#include <stddef.h>

#include "hparams.h"

typedef struct trainer trainer;

enum train_status {
    TRAIN_DONE = 0,     /* all steps ran; final validation loss is set */
    TRAIN_DIVERGED = 1, /* NaN or Inf in the loss or the gradients */
    TRAIN_STOPPED = 2,  /* *hooks->stop became nonzero; stopped at a step boundary */
};

typedef struct train_result {
    enum train_status status;
    double final_loss;      /* mean validation loss after the last step (nats/byte) */
    double best_loss;       /* best validation loss seen, including resumed history */
    long steps;             /* steps completed, counted from 0 of the run (not the attempt) */
    double seconds;         /* wall time of this process's share of the run */
    double tokens_per_s;
    long diverged_step;     /* step that produced the non-finite value, or -1 */
    size_t bytes_allocated; /* parameters, gradients, activations, optimizer state */
} train_result;

typedef struct train_progress {
    long step;             /* steps completed */
    long steps;            /* total steps of the run */
    double train_loss;     /* loss of the batch of this step */
    double tokens_per_s;   /* over the recent steps */
    double eta_seconds;
} train_progress;

typedef struct train_hooks {
    void *ctx;
    /* After every step. */
    void (*on_step)(void *ctx, const train_progress *p);
    /* After every evaluation (every eval_every steps and after the last). */
    void (*on_eval)(void *ctx, long step, double train_loss, double val_loss);
    /* Every checkpoint_every steps (0 = never) and when stopping on request.
     * Return 0 or -1; a failure is logged by the hook and training goes on. */
    int (*on_checkpoint)(void *ctx, trainer *t, long step);
    long checkpoint_every;
    /* Polled at each step boundary; nonzero stops the run (after a checkpoint). */
    atomic_int *stop;
} train_hooks;

/* Makes OpenBLAS start no worker threads when the library loads, so that
 * trainer_thread_setup() can create them after setting FTZ/DAZ and they
 * inherit it (threads inherit the creating thread's MXCSR). It re-executes the
 * program once through /proc/self/exe with OPENBLAS_NUM_THREADS=1, because
 * OpenBLAS reads that variable in its load-time constructor, before main().
 * Call it first thing in main() of a program that trains. Returns 0 when the
 * process already runs that way; does not return when it re-executes; returns
 * -1 when exec failed, and training then works with OpenBLAS's own threads
 * keeping the default denormal handling. */
int trainer_process_init(char **argv);

/* Sets FTZ/DAZ on the calling thread, then the OpenBLAS thread count (any
 * new OpenBLAS threads are created now, from this thread). Call it on the
 * thread that will train. */
void trainer_thread_setup(int threads);

/* Sets the largest number of bytes one run may allocate: parameters,
 * gradients, activations, the evaluation curve, the dataset and the
 * optimizer state with its checkpoint copy. trainer_create() and
 * trainer_resume() reject a config above it with an error naming both
 * figures, and check the model part before allocating it. 0 restores the
 * default: physical memory, or RLIMIT_AS / RLIMIT_DATA when lower.
 * Process-wide; thread-safe. */
void trainer_set_memory_limit(size_t bytes);

/* Returns the limit in effect, in bytes. */
size_t trainer_memory_limit(void);

/* Parses a byte count for --max-memory: digits with an optional suffix K, M,
 * G or T (powers of 1024, an optional trailing "iB" or "B"). Returns 0, or
 * -1 for empty text, another suffix, 0 or a value above SIZE_MAX. */
int trainer_parse_bytes(const char *text, size_t *bytes);

/* Creates a run. dataset_path overrides cfg->dataset when non-NULL (the worker
 * passes its cached copy of a URL). Returns 0 or -1 with err set (file
 * missing, not a regular file or too small, above the memory limit, out of
 * memory, invalid config). */
int trainer_create(trainer **out, const train_config *cfg, const char *dataset_path,
                   char *err, size_t err_size);

/* Resumes a run from a checkpoint file. expected may be NULL; otherwise the
 * checkpoint's config must match it in every field that shapes the model and
 * the optimizer, and the error names the first mismatch. */
int trainer_resume(trainer **out, const char *checkpoint_path, const train_config *expected,
                   const char *dataset_path, char *err, size_t err_size);

void trainer_free(trainer *t);

/* Runs the remaining steps. Returns the status, or -1 with err set for an
 * I/O or internal error. */
int trainer_run(trainer *t, const train_hooks *hooks, train_result *result, char *err, size_t err_size);

/* Writes a checkpoint atomically (temporary file, fsync, rename). */
int trainer_save(const trainer *t, const char *path, char *err, size_t err_size);

/* One training step; sets *train_loss. Returns TRAIN_DONE (0) or TRAIN_DIVERGED. */
int trainer_step(trainer *t, double *train_loss);

/* Mean loss over the fixed validation windows. */
double trainer_evaluate(trainer *t);

long trainer_step_count(const trainer *t);
const train_config *trainer_config(const trainer *t);
size_t trainer_bytes_allocated(const trainer *t);

#endif
