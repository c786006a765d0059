/* Shampoo's inverse-root computations on threads: a persistent pool for the
 * synchronous refresh and one background thread for precondition_async. The
 * pool also runs Shampoo's per-block work of every step.
 *
 * Each root is computed by matrix_root_inverse_fourth() on its own input with
 * single-threaded code, so which thread computes it does not change a bit of
 * the result. The threads and their workspaces are created once, in
 * optim_roots_create(); running a batch allocates nothing. Only
 * optim_shampoo.c uses this module.
 */
#ifndef SWEEPD_OPTIM_ROOTS_H
#define SWEEPD_OPTIM_ROOTS_H

#include <stddef.h>

#include "hparams.h"

/* One inverse fourth root: out = (stat + e I)^(-1/4), stat n x n (upper
 * triangle read). On success out (n x n doubles) is written in full and, when
 * out32 is not NULL, rounded into out32; on rejection both are left as they
 * were. rejected and residual are outputs, read after the batch finished. */
typedef struct optim_root_task {
    const double *stat;
    int n;
    double *out;
    float *out32;
    int rejected;
    double residual;
} optim_root_task;

typedef struct optim_roots optim_roots;

/* One item of a batch: item in [0, n), thread in [0, optim_roots_threads())
 * names the calling thread, for per-thread scratch. */
typedef void (*optim_item_fn)(void *ctx, size_t item, int thread);

/* Creates n_threads - 1 pool threads (the caller of optim_roots_run is the
 * n_threads-th) and, when background is nonzero, one background thread, each
 * with a workspace for matrices up to max_side. Threads copy the caller's
 * floating-point control register (FTZ/DAZ), so they round as it does.
 * Returns 0, or -1 with err set (out of memory, thread creation failed). */
int optim_roots_create(optim_roots **out, int n_threads, int background, int max_side,
                       enum root_method method, double matrix_eps, char *err, size_t err_size);

/* Stops and joins every thread (a background batch in flight is cancelled
 * between roots) and frees the workspaces. NULL is a no-op. */
void optim_roots_free(optim_roots *roots);

/* Runs fn for every item in [0, n) on the pool and the calling thread, and
 * returns when all are done. While the pool runs, OpenBLAS is set to one
 * thread and then restored, so no item depends on OpenBLAS's thread count.
 * Items must be independent of each other. */
void optim_roots_for_each(optim_roots *roots, optim_item_fn fn, void *ctx, size_t n);

/* Computes tasks[0, n) with optim_roots_for_each. */
void optim_roots_run(optim_roots *roots, optim_root_task *tasks, size_t n);

/* Computes tasks[0, n) on the calling thread alone, with OpenBLAS as it is
 * set. This is the code path of the background thread. */
void optim_roots_run_here(optim_roots *roots, optim_root_task *tasks, size_t n);

/* Starts computing tasks[0, n) on the background thread and returns at once.
 * The tasks, their inputs and outputs belong to that thread until
 * optim_roots_wait() returns. Requires background threads and no batch in
 * flight. */
void optim_roots_start(optim_roots *roots, optim_root_task *tasks, size_t n);

/* Waits for the background batch started last; returns at once if none is in
 * flight. */
void optim_roots_wait(optim_roots *roots);

/* Threads that compute a synchronous refresh, the caller included. */
int optim_roots_threads(const optim_roots *roots);

#endif
