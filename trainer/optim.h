/* The optimizer interface: one step over a model's named tensors.
 *
 * Parameters and gradients are flat float buffers carved by a table of
 * tensor_desc; an optimizer allocates all of its state in optim_create() and
 * nothing per step. The same code runs in training, in `sweep-train
 * optim-trace` and in the tests. Semantics of each optimizer are documented in
 * docs/OPTIMIZERS.md and at the top of its source file.
 */
#ifndef SWEEPD_OPTIM_H
#define SWEEPD_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "hparams.h"

typedef struct tensor_desc {
    const char *name;   /* e.g. "h0.attn.qkv.w" */
    int ndim;           /* 1 or 2 */
    int rows, cols;     /* ndim 2: rows x cols, row-major; ndim 1: rows = n, cols = 1 */
    size_t offset;      /* first element in the flat parameter/gradient buffers */
    size_t numel;
} tensor_desc;

typedef struct optimizer optimizer;

/* Creates an optimizer of kind cfg->optimizer (cfg must be finalized) for
 * n tensors. The table is copied. Shampoo computes its roots on as many
 * threads as OpenBLAS is set to use at this call (trainer_thread_setup, so
 * --threads), or with precondition_async on one background thread; those
 * threads live until optim_free. Returns 0, or -1 with err set (bad
 * hyperparameter, out of memory, a thread failed to start). */
int optim_create(optimizer **out, const train_config *cfg, const tensor_desc *tensors, size_t n,
                 char *err, size_t err_size);
void optim_free(optimizer *opt);

/* Applies one step: params -= f(grads, state) at learning rate lr (already
 * scheduled). grads may be modified (weight decay is added into them for
 * adam). Returns 0; never fails once created.
 * NOTE: synchronous Shampoo with more than one root thread sets OpenBLAS's
 * process-wide thread count to 1 during parts of the step and then restores
 * it, so no other thread of the process should call BLAS meanwhile. */
int optim_step(optimizer *opt, float *params, float *grads, double lr);

/* Number of previous steps (k in docs/OPTIMIZERS.md). */
long optim_step_count(const optimizer *opt);

/* Bytes of optimizer state, for memory reports and checkpoints. */
size_t optim_state_bytes(const optimizer *opt);

/* Returns the bytes that optim_create() would allocate for cfg and the n
 * tensors, without allocating them: the state arena (what
 * optim_state_bytes() will return), the per-step scratch and, for Shampoo,
 * one root workspace per root thread at the current OpenBLAS thread count.
 * export_bytes, when not NULL, receives the optim_state_bytes() figure
 * alone. Tables of a few bytes per tensor are not counted. Returns SIZE_MAX
 * when even the small temporary table cannot be allocated. */
size_t optim_state_bytes_for(const train_config *cfg, const tensor_desc *tensors, size_t n,
                             size_t *export_bytes);

/* Serialises the full state (step count included) into buf, which has room for
 * optim_state_bytes() bytes; import reverses it. Import returns -1 when the
 * size does not match. With precondition_async the state includes the
 * statistics snapshot whose roots are still pending, and import recomputes
 * those roots on the calling thread before it returns. */
void optim_state_export(const optimizer *opt, void *buf);
int optim_state_import(optimizer *opt, const void *buf, size_t size);

/* Counters for reports: roots kept because a new one was not finite or
 * Newton's residual was too large (Shampoo only; 0 for the others). */
long optim_rejected_roots(const optimizer *opt);

/* Threads that compute a synchronous Shampoo root refresh, the caller
 * included (1 for the other optimizers and for precondition_async). */
int optim_root_threads(const optimizer *opt);

#endif
