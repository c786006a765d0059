/* Internals shared by the optimizer sources (optim.c and optim_<kind>.c).
 *
 * Each kind supplies an optim_ops table. optim.c owns the struct, copies the
 * tensor table, and carves one flat state arena (exported verbatim by
 * optim_state_export) and one scratch arena (never exported) from the sizes
 * the kind's carve() reports. Nothing here is used outside trainer/optim*.c.
 */
#ifndef SWEEPD_OPTIM_INTERNAL_H
#define SWEEPD_OPTIM_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"

/* A bump allocator over one buffer. With base == NULL it only measures, so a
 * kind's carve() runs twice: once to size the arena, once to hand out
 * pointers. Every region starts on a 64-byte boundary. */
typedef struct optim_arena {
    unsigned char *base;
    size_t used_bytes;
} optim_arena;

void *optim_arena_take(optim_arena *arena, size_t bytes);

/* One Shampoo block: rows x cols starting at (row0, col0) of its tensor.
 * Statistics L (rows x rows), R (cols x cols) and roots PL, PR are dense
 * row-major doubles in the state arena. Only the upper triangle of L and R
 * is maintained. The roots are stored full, and again rounded to float32
 * (PL32, PR32) for the per-step products.
 *
 * With precondition_async every one of these has a second buffer in the
 * state arena (index 1 of the *_buffer arrays), and the two swap roles
 * instead of being copied. L_snapshot and R_snapshot are the statistics
 * of the last refresh, which the background thread reads, and PL_next to
 * PR32_next are the roots it writes. Without it, only index 0 exists and
 * the snapshot and next pointers are NULL. */
typedef struct shampoo_block {
    size_t tensor;
    int row0, col0, rows, cols;
    double *L, *R, *PL, *PR;
    float *PL32, *PR32;
    double *L_snapshot, *R_snapshot, *PL_next, *PR_next;
    float *PL32_next, *PR32_next;
    double *L_buffer[2], *R_buffer[2], *PL_buffer[2], *PR_buffer[2];
    float *PL32_buffer[2], *PR32_buffer[2];
} shampoo_block;

/* The asynchronous refresh's own state, exported with the arena as one
 * uint64 each. PENDING is 1 while a snapshot's roots are not installed.
 * STATS_BUFFER and ROOTS_BUFFER are the indexes of the live statistics and
 * roots. STATS_STALE is 1 when the last refresh handed the live buffer to
 * the snapshot, so the next update reads the snapshot instead. */
enum shampoo_async_field {
    ASYNC_PENDING,
    ASYNC_STATS_BUFFER,
    ASYNC_STATS_STALE,
    ASYNC_ROOTS_BUFFER,
    ASYNC_FIELDS
};

/* Per-tensor state; which pointers are set depends on the kind:
 *   adam/adamw: m, v (numel each)
 *   sm3:        m (numel), acc (rows + cols for a matrix, numel for a vector)
 *   shampoo:    m, mg (numel each), graft state in v (adam, rmsprop, adagrad)
 *               or acc (sm3), blocks [first_block, first_block + n_blocks) */
typedef struct optim_slot {
    float *m, *v, *mg, *acc;
    int preconditioned;
    size_t first_block, n_blocks;
} optim_slot;

typedef struct optim_ops {
    /* Checks kind-specific hyperparameters and builds tables; may be NULL. */
    int (*plan)(optimizer *opt, char *err, size_t err_size);
    /* Takes every state and scratch region from the two arenas. */
    void (*carve)(optimizer *opt, optim_arena *state, optim_arena *scratch);
    /* Sets non-zero initial state (the arenas start zeroed); may be NULL. */
    void (*init)(optimizer *opt);
    void (*step)(optimizer *opt, float *params, float *grads, double lr);
    /* Called before an export reads or an import overwrites the state
     * arena, so background work that uses it finishes first, and after an
     * import, to rebuild what derives from the state. Each may be NULL. */
    void (*before_export)(const optimizer *opt);
    void (*before_import)(optimizer *opt);
    void (*after_import)(optimizer *opt);
} optim_ops;

struct optimizer {
    train_config cfg;
    const optim_ops *ops;
    tensor_desc *tensors;
    size_t n_tensors;
    size_t max_numel;
    optim_slot *slots;          /* n_tensors entries */
    shampoo_block *blocks;      /* Shampoo only */
    size_t n_blocks;
    long step_count;            /* k: steps taken so far */
    long rejected_roots;
    optim_arena state;          /* exported */
    optim_arena scratch;        /* reused by every step, not exported */
    /* Scratch regions, carved by the kinds that use them. */
    float *nu_work;             /* SM3 nu, max numel */
    float *col_work;            /* SM3 new column maxima, max cols */
    float *graft_work;          /* Shampoo graft direction A, max numel */
    float *precond_work;        /* Shampoo preconditioned direction D, laid out as the parameters */
    /* Per pool thread, block_work_floats each: Gb Gb^T or Gb^T Gb of one
     * block, and PL * Gb of one block (float32). */
    float *gram_work, *product_work;
    size_t block_work_floats;
    /* Shampoo only: the root threads, and one task per root (left and right
     * of each block, in block order) for the synchronous refresh and for the
     * asynchronous one. async_state (ASYNC_FIELDS entries) is in the state
     * arena. */
    struct optim_roots *roots;
    struct optim_root_task *root_tasks, *async_tasks;
    uint64_t *async_state;
};

extern const optim_ops optim_adam_ops;
extern const optim_ops optim_sm3_ops;
extern const optim_ops optim_shampoo_ops;

/* The SM3 accumulator update shared by the sm3 optimizer and Shampoo's sm3
 * graft. For a matrix (rows x cols, acc = row[rows] then col[cols]):
 * nu[i][j] = beta2 * min(row[i], col[j]) + w2 * g^2, then row and col become
 * the row and column maxima of nu. For a vector (cols == 1 and is_vector):
 * nu = beta2 * acc + w2 * g^2 and acc = nu. Writes nu into nu_out (numel)
 * and uses col_scratch (cols floats). */
void optim_sm3_accumulate(float *acc, float *nu_out, float *col_scratch, const float *g,
                          int rows, int cols, int is_vector, double beta2);

#endif
