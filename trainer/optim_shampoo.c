/* Shampoo with blocking, grafting and momentum, following the semantics of
 * Distributed Shampoo (Anil et al., "Scalable Second Order Optimization for
 * Deep Learning", 2020). The exact update is in docs/OPTIMIZERS.md; in short,
 * with k = steps taken before this one and w2 = 1 if b2 == 1 else 1 - b2:
 *
 *   per block Gb:  L = b2 L + w2 Gb Gb^T,  R = b2 R + w2 Gb^T Gb
 *   k % precondition_every == 0:  PL = (L + eI)^(-1/4), PR = (R + eI)^(-1/4)
 *   D = PL Gb PR per block;  U = D ||A||_F / (||D||_F + 1e-16)
 *   m = b1 m + U;  mg = b1 mg + A  (A = the graft optimizer's direction)
 *   W -= lr wd W;  W -= lr * (nesterov ? du + b1 mu : mu)
 *
 * Statistics and roots are doubles (roots via matrix_root.c); the per-step
 * Gram products and D = PL Gb PR are float32 GEMMs; momenta and graft state
 * are float32. 1-D tensors and matrices with a side longer than
 * max_precond_dim use D = A.
 *
 * A step updates every block's statistics first, then refreshes the roots
 * when due (on the optim_roots pool, or with precondition_async on its
 * background thread), then computes D of every block, then the update
 * tensor by tensor. The block passes run on the pool as well, each block
 * with single-threaded BLAS, so no result depends on --threads. The
 * asynchronous mode has no pool: changing OpenBLAS's thread count while its
 * background thread is inside LAPACK would make results depend on timing.
 * There the blocks run on the training thread with OpenBLAS as --threads
 * set it.
 * precondition_async snapshots the statistics at a refresh step k and
 * installs the roots computed from them at step k + precondition_every,
 * waiting there if they are not ready: one period later than the
 * synchronous rule, and independent of timing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "log.h"
#include "optim_internal.h"
#include "optim_roots.h"

static int count_chunks(int length, int block_size)
{
    return (length + block_size - 1) / block_size;
}

static int check_shampoo_config(const train_config *cfg, char *err, size_t err_size)
{
    if (cfg->block_size < 1) {
        snprintf(err, err_size, "invalid block_size %d: must be >= 1", cfg->block_size);
        return -1;
    }
    if (cfg->precondition_every < 1) {
        snprintf(err, err_size, "invalid precondition_every %d: must be >= 1", cfg->precondition_every);
        return -1;
    }
    if (cfg->start_preconditioning_step < 0) {
        snprintf(err, err_size, "invalid start_preconditioning_step %d: must be >= 0",
                 cfg->start_preconditioning_step);
        return -1;
    }
    if (cfg->max_precond_dim < 1) {
        snprintf(err, err_size, "invalid max_precond_dim %d: must be >= 1", cfg->max_precond_dim);
        return -1;
    }
    if (!(cfg->matrix_eps >= 0.0)) {
        snprintf(err, err_size, "invalid matrix_eps %g: must be >= 0", cfg->matrix_eps);
        return -1;
    }
    if (!(cfg->graft_beta2 >= 0.0 && cfg->graft_beta2 <= 1.0)) {
        snprintf(err, err_size, "invalid graft_beta2 %g: must be in [0, 1]", cfg->graft_beta2);
        return -1;
    }
    if (!(cfg->graft_eps >= 0.0)) {
        snprintf(err, err_size, "invalid graft_eps %g: must be >= 0", cfg->graft_eps);
        return -1;
    }
    if (cfg->graft < GRAFT_ADAM || cfg->graft > GRAFT_NONE) {
        snprintf(err, err_size, "invalid graft kind %d; use adam, sm3, sgd, adagrad, rmsprop or none",
                 (int)cfg->graft);
        return -1;
    }
    if (cfg->root_method != ROOT_EIGH && cfg->root_method != ROOT_NEWTON) {
        snprintf(err, err_size, "invalid root_method %d; use eigh or newton", (int)cfg->root_method);
        return -1;
    }
    return 0;
}

/* Splits every preconditioned matrix into blocks and starts the root
 * threads, with workspaces for the largest block side. */
static int shampoo_plan(optimizer *opt, char *err, size_t err_size)
{
    const train_config *cfg = &opt->cfg;
    if (check_shampoo_config(cfg, err, err_size) < 0)
        return -1;

    size_t n_blocks = 0;
    int max_side = 1;
    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        optim_slot *slot = &opt->slots[i];
        slot->preconditioned =
            td->ndim == 2 && td->rows <= cfg->max_precond_dim && td->cols <= cfg->max_precond_dim;
        if (!slot->preconditioned)
            continue;
        slot->first_block = n_blocks;
        slot->n_blocks = (size_t)count_chunks(td->rows, cfg->block_size) *
                         (size_t)count_chunks(td->cols, cfg->block_size);
        n_blocks += slot->n_blocks;
        int side = td->rows > td->cols ? td->rows : td->cols;
        side = side < cfg->block_size ? side : cfg->block_size;
        max_side = side > max_side ? side : max_side;
    }

    opt->n_blocks = n_blocks;
    opt->blocks = calloc(n_blocks ? n_blocks : 1, sizeof *opt->blocks);
    opt->root_tasks = calloc(2 * n_blocks + 1, sizeof *opt->root_tasks);
    if (cfg->precondition_async)
        opt->async_tasks = calloc(2 * n_blocks + 1, sizeof *opt->async_tasks);
    if (!opt->blocks || !opt->root_tasks || (cfg->precondition_async && !opt->async_tasks)) {
        snprintf(err, err_size, "out of memory planning %zu Shampoo blocks (largest side %d)", n_blocks,
                 max_side);
        return -1;
    }
    /* The asynchronous mode computes every root on its background thread,
     * so it needs no pool. */
    int pool_threads = cfg->precondition_async ? 1 : openblas_get_num_threads();
    if (optim_roots_create(&opt->roots, pool_threads, cfg->precondition_async, max_side, cfg->root_method,
                           cfg->matrix_eps, err, err_size) < 0)
        return -1;

    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        if (!opt->slots[i].preconditioned)
            continue;
        shampoo_block *b = &opt->blocks[opt->slots[i].first_block];
        for (int r0 = 0; r0 < td->rows; r0 += cfg->block_size) {
            for (int c0 = 0; c0 < td->cols; c0 += cfg->block_size, b++) {
                b->tensor = i;
                b->row0 = r0;
                b->col0 = c0;
                b->rows = td->rows - r0 < cfg->block_size ? td->rows - r0 : cfg->block_size;
                b->cols = td->cols - c0 < cfg->block_size ? td->cols - c0 : cfg->block_size;
            }
        }
    }
    return 0;
}

static size_t square_bytes(int n)
{
    return (size_t)n * (size_t)n * sizeof(double);
}

static void shampoo_carve(optimizer *opt, optim_arena *state, optim_arena *scratch)
{
    enum graft_kind graft = opt->cfg.graft;
    size_t max_cols = 1, max_block = 1, max_square = 1;

    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        optim_slot *slot = &opt->slots[i];
        slot->m = optim_arena_take(state, td->numel * sizeof(float));
        slot->mg = optim_arena_take(state, td->numel * sizeof(float));
        if (graft == GRAFT_ADAM || graft == GRAFT_RMSPROP || graft == GRAFT_ADAGRAD)
            slot->v = optim_arena_take(state, td->numel * sizeof(float));
        if (graft == GRAFT_SM3) {
            size_t count = td->ndim == 2 ? (size_t)td->rows + (size_t)td->cols : td->numel;
            slot->acc = optim_arena_take(state, count * sizeof(float));
        }
        if ((size_t)td->cols > max_cols)
            max_cols = (size_t)td->cols;
    }
    int n_buffers = opt->cfg.precondition_async ? 2 : 1;
    for (size_t i = 0; i < opt->n_blocks; i++) {
        shampoo_block *b = &opt->blocks[i];
        for (int k = 0; k < n_buffers; k++) {
            b->L_buffer[k] = optim_arena_take(state, square_bytes(b->rows));
            b->R_buffer[k] = optim_arena_take(state, square_bytes(b->cols));
            b->PL_buffer[k] = optim_arena_take(state, square_bytes(b->rows));
            b->PR_buffer[k] = optim_arena_take(state, square_bytes(b->cols));
            b->PL32_buffer[k] = optim_arena_take(state, square_bytes(b->rows) / 2);
            b->PR32_buffer[k] = optim_arena_take(state, square_bytes(b->cols) / 2);
        }
        b->L = b->L_buffer[0];
        b->R = b->R_buffer[0];
        b->PL = b->PL_buffer[0];
        b->PR = b->PR_buffer[0];
        b->PL32 = b->PL32_buffer[0];
        b->PR32 = b->PR32_buffer[0];
        size_t size = (size_t)b->rows * (size_t)b->cols;
        max_block = size > max_block ? size : max_block;
        int side = b->rows > b->cols ? b->rows : b->cols;
        max_square = (size_t)side * side > max_square ? (size_t)side * side : max_square;
    }

    if (opt->cfg.precondition_async)
        opt->async_state = optim_arena_take(state, ASYNC_FIELDS * sizeof(uint64_t));
    opt->graft_work = optim_arena_take(scratch, opt->max_numel * sizeof(float));
    /* D of every tensor at its parameter offset, because the blocks of all
     * tensors are preconditioned in one pass over the pool. */
    size_t total_numel = 1;
    for (size_t i = 0; i < opt->n_tensors; i++) {
        size_t end = opt->tensors[i].offset + opt->tensors[i].numel;
        total_numel = end > total_numel ? end : total_numel;
    }
    opt->precond_work = optim_arena_take(scratch, total_numel * sizeof(float));
    opt->nu_work = optim_arena_take(scratch, opt->max_numel * sizeof(float));
    opt->col_work = optim_arena_take(scratch, max_cols * sizeof(float));
    /* One Gram and one product buffer per thread of the pool. */
    size_t n_threads = (size_t)optim_roots_threads(opt->roots);
    opt->block_work_floats = max_square > max_block ? max_square : max_block;
    opt->gram_work = optim_arena_take(scratch, n_threads * opt->block_work_floats * sizeof(float));
    opt->product_work = optim_arena_take(scratch, n_threads * opt->block_work_floats * sizeof(float));
}

static void set_scaled_identity(double *a, int n, double diagonal)
{
    memset(a, 0, square_bytes(n));
    for (int i = 0; i < n; i++)
        a[(size_t)i * n + i] = diagonal;
}

static void round_root(float *dst, const double *root, int n)
{
    for (size_t i = 0; i < (size_t)n * n; i++)
        dst[i] = (float)root[i];
}

/* Points every block's live, snapshot and next pointers, and the
 * asynchronous tasks, at the buffers that async_state names. */
static void point_async_buffers(optimizer *opt)
{
    int stats = (int)opt->async_state[ASYNC_STATS_BUFFER], roots = (int)opt->async_state[ASYNC_ROOTS_BUFFER];

    for (size_t i = 0; i < opt->n_blocks; i++) {
        shampoo_block *b = &opt->blocks[i];
        b->L = b->L_buffer[stats];
        b->R = b->R_buffer[stats];
        b->L_snapshot = b->L_buffer[1 - stats];
        b->R_snapshot = b->R_buffer[1 - stats];
        b->PL = b->PL_buffer[roots];
        b->PR = b->PR_buffer[roots];
        b->PL32 = b->PL32_buffer[roots];
        b->PR32 = b->PR32_buffer[roots];
        b->PL_next = b->PL_buffer[1 - roots];
        b->PR_next = b->PR_buffer[1 - roots];
        b->PL32_next = b->PL32_buffer[1 - roots];
        b->PR32_next = b->PR32_buffer[1 - roots];

        opt->async_tasks[2 * i] =
            (optim_root_task){.stat = b->L_snapshot, .n = b->rows, .out = b->PL_next, .out32 = b->PL32_next};
        opt->async_tasks[2 * i + 1] =
            (optim_root_task){.stat = b->R_snapshot, .n = b->cols, .out = b->PR_next, .out32 = b->PR32_next};
    }
}

/* Statistics start at matrix_eps * I, roots at I. */
static void shampoo_init(optimizer *opt)
{
    for (size_t i = 0; i < opt->n_blocks; i++) {
        shampoo_block *b = &opt->blocks[i];
        set_scaled_identity(b->L, b->rows, opt->cfg.matrix_eps);
        set_scaled_identity(b->R, b->cols, opt->cfg.matrix_eps);
        set_scaled_identity(b->PL, b->rows, 1.0);
        set_scaled_identity(b->PR, b->cols, 1.0);
        round_root(b->PL32, b->PL, b->rows);
        round_root(b->PR32, b->PR, b->cols);

        opt->root_tasks[2 * i] = (optim_root_task){.stat = b->L, .n = b->rows, .out = b->PL, .out32 = b->PL32};
        opt->root_tasks[2 * i + 1] = (optim_root_task){.stat = b->R, .n = b->cols, .out = b->PR, .out32 = b->PR32};
    }
    if (opt->async_tasks)
        point_async_buffers(opt);
}

/* Sums x[i]^2 in double over eight interleaved partial sums, so the loop
 * vectorises instead of waiting on one accumulator. The order is fixed, so
 * the result is the same on every run. */
static double sum_squares(const float *x, size_t n)
{
    double partial[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int lane = 0; lane < 8; lane++)
            partial[lane] += (double)x[i + lane] * x[i + lane];
    for (int lane = 0; i < n; i++, lane++)
        partial[lane] += (double)x[i] * x[i];
    return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
           ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

/* Returns the graft direction A for one tensor and updates the graft state.
 * For sgd and none A is the gradient itself, so the returned pointer is g and
 * nothing is copied; otherwise it is a_work (numel floats). t = k + 1. */
static const float *graft_direction(optimizer *opt, size_t index, const float *g, float *a_work, double t)
{
    const train_config *cfg = &opt->cfg;
    const tensor_desc *td = &opt->tensors[index];
    optim_slot *slot = &opt->slots[index];
    double gb = cfg->graft_beta2;
    float ge = (float)cfg->graft_eps;
    size_t n = td->numel;
    float *a = a_work;

    switch (cfg->graft) {
    case GRAFT_SGD:
    case GRAFT_NONE:
        return g;
    case GRAFT_SM3: {
        float *nu = opt->nu_work;
        optim_sm3_accumulate(slot->acc, nu, opt->col_work, g, td->rows, td->cols, td->ndim == 1, gb);
        for (size_t j = 0; j < n; j++)
            a[j] = g[j] / (sqrtf(nu[j]) + ge);
        return a;
    }
    case GRAFT_ADAGRAD:
    case GRAFT_RMSPROP:
    case GRAFT_ADAM: {
        /* adagrad keeps a plain sum; so do rmsprop and adam when gb == 1. */
        int plain_sum = cfg->graft == GRAFT_ADAGRAD || gb == 1.0;
        float decay = plain_sum ? 1.0f : (float)gb;
        float weight = plain_sum ? 1.0f : (float)(1.0 - gb);
        float inv_sqrt_bc = 1.0f;
        if (cfg->graft == GRAFT_ADAM && gb < 1.0)
            inv_sqrt_bc = (float)(1.0 / sqrt(1.0 - pow(gb, t)));
        float *v = slot->v;
        for (size_t j = 0; j < n; j++) {
            v[j] = decay * v[j] + weight * g[j] * g[j];
            a[j] = g[j] / (sqrtf(v[j]) * inv_sqrt_bc + ge);
        }
        return a;
    }
    }
    return g;
}

static void note_rejected_root(optimizer *opt, size_t task, double residual)
{
    const shampoo_block *b = &opt->blocks[task / 2];
    opt->rejected_roots++;
    /* Log the first rejection and then every power of two, so a persistent
     * failure stays visible without one line per block and step. */
    long count = opt->rejected_roots;
    if ((count & (count - 1)) == 0)
        log_warn("shampoo", "step=%ld tensor=%s block=(%d,%d) side=%s rejected_roots=%ld residual=%g "
                 "root not finite or not converged; keeping the previous root",
                 opt->step_count, opt->tensors[b->tensor].name, b->row0, b->col0, task % 2 ? "right" : "left",
                 count, residual);
}

/* Counts and logs the rejected roots of a finished batch, in task order, so
 * the counter and the log do not depend on which thread computed what. */
static void count_rejections(optimizer *opt, const optim_root_task *tasks)
{
    for (size_t i = 0; i < 2 * opt->n_blocks; i++)
        if (tasks[i].rejected)
            note_rejected_root(opt, i, tasks[i].residual);
}

/* stat = b2 * previous + w2 * gram on the upper triangle (n x n; gram is
 * float32, the rest double). previous is stat itself, or after an
 * asynchronous refresh the snapshot that took over stat's buffer. */
static void accumulate_statistic(double *stat, const double *previous, const float *gram, int n, double b2,
                                 double w2)
{
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++)
            stat[(size_t)i * n + j] = b2 * previous[(size_t)i * n + j] + w2 * gram[(size_t)i * n + j];
}

/* The context of a pass over the blocks on the pool. */
typedef struct block_pass {
    optimizer *opt;
    const float *grads;
    int update_statistics, precondition, stale;
} block_pass;

/* L = b2 L + w2 Gb Gb^T and R = b2 R + w2 Gb^T Gb for one block, upper
 * triangles only. The Gram products run every step, so they are float32
 * SYRKs read straight from the gradient; the sums accumulate in double. */
static void update_block_statistics(optimizer *opt, shampoo_block *b, const float *gb, int ld, float *gram,
                                    int stale)
{
    double b2 = opt->cfg.b2, w2 = opt->cfg.b2 == 1.0 ? 1.0 : 1.0 - opt->cfg.b2;
    int rb = b->rows, cb = b->cols;

    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, rb, cb, 1.0f, gb, ld, 0.0f, gram, rb);
    accumulate_statistic(b->L, stale ? b->L_snapshot : b->L, gram, rb, b2, w2);
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, cb, rb, 1.0f, gb, ld, 0.0f, gram, cb);
    accumulate_statistic(b->R, stale ? b->R_snapshot : b->R, gram, cb, b2, w2);
}

/* Writes D = PL Gb PR into d (leading dimension ld). Both products are
 * float32 GEMMs because they run every step. */
static void precondition_block(const shampoo_block *b, const float *gb, int ld, float *product, float *d)
{
    int rb = b->rows, cb = b->cols;

    /* product = PL Gb (rb x cb), then D = product PR into d. */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, cb, rb, 1.0f, b->PL32, rb, gb, ld, 0.0f, product,
                cb);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rb, cb, cb, 1.0f, product, cb, b->PR32, cb, 0.0f, d,
                ld);
}

/* One block of a pass, on pool thread `thread` with its own scratch. */
static void run_block_pass(void *ctx, size_t item, int thread)
{
    const block_pass *pass = ctx;
    optimizer *opt = pass->opt;
    shampoo_block *b = &opt->blocks[item];
    const tensor_desc *td = &opt->tensors[b->tensor];
    size_t at = td->offset + (size_t)b->row0 * td->cols + b->col0;
    float *gram = opt->gram_work + (size_t)thread * opt->block_work_floats;
    float *product = opt->product_work + (size_t)thread * opt->block_work_floats;

    if (pass->update_statistics)
        update_block_statistics(opt, b, pass->grads + at, td->cols, gram, pass->stale);
    if (pass->precondition)
        precondition_block(b, pass->grads + at, td->cols, product, opt->precond_work + at);
}

/* Runs the statistics update, the preconditioning (D into precond_work at
 * each tensor's offset), or both over every block, on the pool. Blocks are
 * independent, and each runs single-threaded code, so the result does not
 * depend on the number of threads. */
static void run_blocks(optimizer *opt, const float *grads, int update_statistics, int precondition)
{
    block_pass pass = {opt, grads, update_statistics, precondition, 0};
    if (update_statistics && opt->async_state)
        pass.stale = (int)opt->async_state[ASYNC_STATS_STALE];
    optim_roots_for_each(opt->roots, run_block_pass, &pass, opt->n_blocks);
    if (pass.stale)
        opt->async_state[ASYNC_STATS_STALE] = 0;
}

/* Installs the roots of the pending snapshot, waiting for them if needed,
 * by swapping the live and next root buffers. A rejected root keeps the
 * installed one, as in the synchronous refresh, so it is copied across
 * first. */
static void install_async_roots(optimizer *opt)
{
    optim_roots_wait(opt->roots);
    for (size_t i = 0; i < opt->n_blocks; i++) {
        shampoo_block *b = &opt->blocks[i];
        if (opt->async_tasks[2 * i].rejected) {
            memcpy(b->PL_next, b->PL, square_bytes(b->rows));
            memcpy(b->PL32_next, b->PL32, square_bytes(b->rows) / 2);
        }
        if (opt->async_tasks[2 * i + 1].rejected) {
            memcpy(b->PR_next, b->PR, square_bytes(b->cols));
            memcpy(b->PR32_next, b->PR32, square_bytes(b->cols) / 2);
        }
    }
    count_rejections(opt, opt->async_tasks);
    opt->async_state[ASYNC_ROOTS_BUFFER] ^= 1;
    opt->async_state[ASYNC_PENDING] = 0;
    point_async_buffers(opt);
}

/* Hands the live statistics to the snapshot, by swapping buffers, and
 * starts their roots on the background thread. The next update reads the
 * snapshot and writes the other buffer, so nothing is copied. */
static void launch_async_roots(optimizer *opt)
{
    opt->async_state[ASYNC_STATS_BUFFER] ^= 1;
    opt->async_state[ASYNC_STATS_STALE] = 1;
    opt->async_state[ASYNC_PENDING] = 1;
    point_async_buffers(opt);
    optim_roots_start(opt->roots, opt->async_tasks, 2 * opt->n_blocks);
}

/* The background thread reads the snapshots and writes the next roots, all
 * in the state arena, so an export or import waits for it. */
static void shampoo_before_export(const optimizer *opt)
{
    if (opt->async_tasks)
        optim_roots_wait(opt->roots);
}

static void shampoo_before_import(optimizer *opt)
{
    shampoo_before_export(opt);
}

/* A checkpoint taken between a snapshot and its install contains the
 * snapshot. Its roots are recomputed here by the background thread's code,
 * so the install step gets the same bits as an uninterrupted run. */
static void shampoo_after_import(optimizer *opt)
{
    if (!opt->async_tasks)
        return;
    /* Each field is a flag or a buffer index. A checkpoint is checksummed,
     * but an index must never leave [0, 1] even so. */
    for (int f = 0; f < ASYNC_FIELDS; f++)
        opt->async_state[f] = opt->async_state[f] != 0;
    point_async_buffers(opt);
    if (opt->async_state[ASYNC_PENDING])
        optim_roots_run_here(opt->roots, opt->async_tasks, 2 * opt->n_blocks);
}

static void shampoo_step(optimizer *opt, float *params, float *grads, double lr)
{
    const train_config *cfg = &opt->cfg;
    long k = opt->step_count;
    int refresh_roots = k % cfg->precondition_every == 0;
    int use_preconditioned = k >= cfg->start_preconditioning_step;
    float b1 = (float)cfg->b1;
    float decay = (float)(1.0 - lr * cfg->weight_decay);
    float step_size = (float)lr;

    /* Statistics, roots when due, then D of every block. Without a
     * refresh the first and last are one pass. */
    run_blocks(opt, grads, 1, !refresh_roots);
    if (refresh_roots && opt->async_tasks) {
        if (opt->async_state[ASYNC_PENDING])
            install_async_roots(opt);
        launch_async_roots(opt);
    } else if (refresh_roots) {
        optim_roots_run(opt->roots, opt->root_tasks, 2 * opt->n_blocks);
        count_rejections(opt, opt->root_tasks);
    }
    if (refresh_roots)
        run_blocks(opt, grads, 0, 1);

    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        optim_slot *slot = &opt->slots[i];
        float *w = params + td->offset;
        const float *g = grads + td->offset;
        size_t n = td->numel;

        const float *a = graft_direction(opt, i, g, opt->graft_work, (double)(k + 1));

        /* D, and the scale that grafts A's norm onto it: U = D * scale.
         * An unpreconditioned tensor has D = A, so one norm serves both. */
        const float *d = slot->preconditioned ? opt->precond_work + td->offset : a;
        float scale = 1.0f;
        if (cfg->graft != GRAFT_NONE) {
            double a_norm = sqrt(sum_squares(a, n));
            double d_norm = d == a ? a_norm : sqrt(sum_squares(d, n));
            scale = (float)(a_norm / (d_norm + 1e-16));
        }

        /* Momenta, the chosen update, decoupled weight decay. U = d[j] * scale
         * is rounded to float before use, as when it was stored. */
        float *m = slot->m, *mg = slot->mg;
        for (size_t j = 0; j < n; j++) {
            float u = d[j] * scale;
            m[j] = b1 * m[j] + u;
            mg[j] = b1 * mg[j] + a[j];
            float mu = use_preconditioned ? m[j] : mg[j];
            float du = use_preconditioned ? u : a[j];
            float update = cfg->nesterov ? du + b1 * mu : mu;
            w[j] = w[j] * decay - step_size * update;
        }
    }
}

const optim_ops optim_shampoo_ops = {
    .plan = shampoo_plan,
    .carve = shampoo_carve,
    .init = shampoo_init,
    .step = shampoo_step,
    .before_export = shampoo_before_export,
    .before_import = shampoo_before_import,
    .after_import = shampoo_after_import,
};
