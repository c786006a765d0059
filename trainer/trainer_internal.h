/* The trainer struct, shared by trainer.c (the run loop) and checkpoint.c
 * (save and resume). Not part of the library interface: callers use
 * trainer.h.
 */
#ifndef SWEEPD_TRAINER_INTERNAL_H
#define SWEEPD_TRAINER_INTERNAL_H

#include "data.h"
#include "hparams.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "trainer.h"

/* One point of the training curve, recorded at every evaluation. */
typedef struct trainer_eval_point {
    int64_t step;
    double train_loss; /* loss of that step's batch, nats per byte */
    double val_loss;   /* mean over the validation windows, nats per byte */
} trainer_eval_point;

struct trainer {
    train_config cfg;
    gpt_model model;
    dataset data;
    optimizer *opt;
    rng_state sampler;       /* stream 1 of cfg.seed; advanced B draws per step */
    long step;               /* steps completed */
    double best_loss;        /* best validation loss so far; INFINITY before the first */
    double last_val_loss;    /* NAN before the first evaluation */
    double last_train_loss;
    long diverged_step;      /* -1, or the step whose loss or gradients were not finite */
    trainer_eval_point *curve; /* curve_cap entries, allocated in trainer_create */
    size_t curve_len, curve_cap;
    void *optim_export;      /* optim_state_bytes(), for checkpoints */
    size_t bytes_allocated;
};

#endif
