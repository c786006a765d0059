/* The optimizer front end: dispatch by cfg->optimizer, the copied tensor
 * table, the step counter, and state export/import.
 *
 * All state lives in one zero-initialised arena carved at creation, so export
 * is a small header plus one memcpy and a resumed run continues bit for bit.
 * The update rules live in optim_adam.c, optim_sm3.c and optim_shampoo.c.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim_internal.h"
#include "optim_roots.h"

/* OpenBLAS's thread count; declared by cblas.h in some builds only. */
int openblas_get_num_threads(void);

#define ARENA_ALIGN_BYTES 64

/* Export header: magic with the optimizer kind in the low byte, then k and
 * the rejected-root counter, each 8 bytes. */
#define STATE_MAGIC UINT64_C(0x4f50545354415400) /* "OPTSTAT" + kind */
#define STATE_HEADER_BYTES (3 * sizeof(uint64_t))

void *optim_arena_take(optim_arena *arena, size_t bytes)
{
    size_t offset = (arena->used_bytes + ARENA_ALIGN_BYTES - 1) & ~(size_t)(ARENA_ALIGN_BYTES - 1);
    arena->used_bytes = offset + bytes;
    return arena->base ? arena->base + offset : NULL;
}

static const optim_ops *ops_for(enum optimizer_kind kind)
{
    switch (kind) {
    case OPT_ADAM:
    case OPT_ADAMW:
        return &optim_adam_ops;
    case OPT_SM3:
        return &optim_sm3_ops;
    case OPT_SHAMPOO:
        return &optim_shampoo_ops;
    }
    return NULL;
}

/* Checks the ranges every kind relies on. Kind-specific rules live in each
 * kind's plan(). */
static int check_config(const train_config *cfg, char *err, size_t err_size)
{
    if (!(cfg->b1 >= 0.0 && cfg->b1 < 1.0)) {
        snprintf(err, err_size, "invalid b1 %g: must be in [0, 1)", cfg->b1);
        return -1;
    }
    if (!(cfg->b2 >= 0.0 && cfg->b2 <= 1.0)) {
        snprintf(err, err_size, "invalid b2 %g: must be in [0, 1]", cfg->b2);
        return -1;
    }
    if (!(cfg->eps >= 0.0)) {
        snprintf(err, err_size, "invalid eps %g: must be >= 0", cfg->eps);
        return -1;
    }
    if (!(cfg->weight_decay >= 0.0)) {
        snprintf(err, err_size, "invalid weight_decay %g: must be >= 0", cfg->weight_decay);
        return -1;
    }
    return 0;
}

static int check_tensor(const tensor_desc *t, size_t index, char *err, size_t err_size)
{
    const char *name = t->name ? t->name : "(unnamed)";
    if (t->ndim != 1 && t->ndim != 2) {
        snprintf(err, err_size, "tensor %zu (%s): ndim %d is invalid; use 1 or 2", index, name, t->ndim);
        return -1;
    }
    if (t->rows < 1 || t->cols < 1 || (t->ndim == 1 && t->cols != 1)) {
        snprintf(err, err_size, "tensor %zu (%s): shape %dx%d is invalid (a 1-D tensor has cols 1)",
                 index, name, t->rows, t->cols);
        return -1;
    }
    if (t->numel != (size_t)t->rows * (size_t)t->cols) {
        snprintf(err, err_size, "tensor %zu (%s): numel %zu does not match shape %dx%d", index, name,
                 t->numel, t->rows, t->cols);
        return -1;
    }
    return 0;
}

/* Copies the table and the names into one allocation, so the caller's
 * strings may go away after optim_create returns. */
static tensor_desc *copy_tensors(const tensor_desc *tensors, size_t n)
{
    size_t names_bytes = 0;
    for (size_t i = 0; i < n; i++)
        names_bytes += strlen(tensors[i].name ? tensors[i].name : "") + 1;

    tensor_desc *copy = malloc(n * sizeof *copy + names_bytes);
    if (!copy)
        return NULL;
    char *names = (char *)(copy + n);
    for (size_t i = 0; i < n; i++) {
        const char *name = tensors[i].name ? tensors[i].name : "";
        size_t len = strlen(name) + 1;
        copy[i] = tensors[i];
        copy[i].name = memcpy(names, name, len);
        names += len;
    }
    return copy;
}

static void *alloc_arena(optim_arena *arena)
{
    size_t bytes = arena->used_bytes ? arena->used_bytes : 1;
    arena->used_bytes = 0;
    arena->base = aligned_alloc(ARENA_ALIGN_BYTES, (bytes + ARENA_ALIGN_BYTES - 1) & ~(size_t)(ARENA_ALIGN_BYTES - 1));
    if (arena->base)
        memset(arena->base, 0, bytes);
    return arena->base;
}

int optim_create(optimizer **out, const train_config *cfg, const tensor_desc *tensors, size_t n,
                 char *err, size_t err_size)
{
    *out = NULL;
    const optim_ops *ops = ops_for(cfg->optimizer);
    if (!ops) {
        snprintf(err, err_size, "invalid optimizer kind %d; use adam, adamw, sm3 or shampoo",
                 (int)cfg->optimizer);
        return -1;
    }
    if (check_config(cfg, err, err_size) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (check_tensor(&tensors[i], i, err, err_size) < 0)
            return -1;

    optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        goto oom;
    opt->cfg = *cfg;
    opt->ops = ops;
    opt->n_tensors = n;
    opt->tensors = copy_tensors(tensors, n);
    opt->slots = calloc(n ? n : 1, sizeof *opt->slots);
    if (!opt->tensors || !opt->slots)
        goto oom;
    for (size_t i = 0; i < n; i++)
        if (tensors[i].numel > opt->max_numel)
            opt->max_numel = tensors[i].numel;

    if (ops->plan && ops->plan(opt, err, err_size) < 0) {
        optim_free(opt);
        return -1;
    }

    /* Measure, allocate, then carve for real. */
    ops->carve(opt, &opt->state, &opt->scratch);
    if (!alloc_arena(&opt->state) || !alloc_arena(&opt->scratch))
        goto oom;
    ops->carve(opt, &opt->state, &opt->scratch);
    if (ops->init)
        ops->init(opt);
    *out = opt;
    return 0;

oom:
    optim_free(opt);
    snprintf(err, err_size, "out of memory creating the %s optimizer for %zu tensors",
             optimizer_name(cfg->optimizer), n);
    return -1;
}

/* Bytes that matrix_root_work_create(side) allocates: six side x side double
 * matrices, 3 * side doubles of vectors and eigenvalues, and LAPACK dsyevd's
 * documented minimum workspace for jobz = 'V' (1 + 6 side + 2 side^2
 * doubles, 3 + 5 side ints).
 * NOTE: matrix_root.c takes a larger dsyevd workspace when the LAPACK query
 * returns a larger optimum; reference LAPACK returns exactly this minimum. */
static size_t root_work_bytes(size_t side)
{
    size_t doubles = 6 * side * side + 3 * side + 1 + 6 * side + 2 * side * side;
    return doubles * sizeof(double) + (3 + 5 * side) * sizeof(int);
}

/* Measures Shampoo's arenas as shampoo_carve() lays them out, without the
 * blocks table that shampoo_plan() builds: the blocks of one tensor are
 * full block_size squares except at its right and bottom edges. Adds the
 * root workspaces, one per root thread, to scratch. */
static void measure_shampoo(const train_config *cfg, const tensor_desc *tensors, size_t n,
                            optim_arena *state, optim_arena *scratch)
{
    size_t max_numel = 1, max_cols = 1, total_numel = 1, max_block = 1, max_square = 1;
    int max_side = 1;
    int n_buffers = cfg->precondition_async ? 2 : 1;
    int bs = cfg->block_size > 0 ? cfg->block_size : INT_MAX; /* optim_create rejects < 1 */

    for (size_t i = 0; i < n; i++) {
        const tensor_desc *td = &tensors[i];
        enum graft_kind graft = cfg->graft;
        optim_arena_take(state, td->numel * sizeof(float)); /* m */
        optim_arena_take(state, td->numel * sizeof(float)); /* mg */
        if (graft == GRAFT_ADAM || graft == GRAFT_RMSPROP || graft == GRAFT_ADAGRAD)
            optim_arena_take(state, td->numel * sizeof(float));
        if (graft == GRAFT_SM3)
            optim_arena_take(state, (td->ndim == 2 ? (size_t)td->rows + (size_t)td->cols : td->numel) *
                                        sizeof(float));
        max_numel = td->numel > max_numel ? td->numel : max_numel;
        max_cols = (size_t)td->cols > max_cols ? (size_t)td->cols : max_cols;
        total_numel = td->offset + td->numel > total_numel ? td->offset + td->numel : total_numel;
    }

    /* Blocks in the order shampoo_plan() makes them, so the arena's
     * alignment padding comes out the same. */
    for (size_t i = 0; i < n; i++) {
        const tensor_desc *td = &tensors[i];
        if (td->ndim != 2 || td->rows > cfg->max_precond_dim || td->cols > cfg->max_precond_dim)
            continue;
        for (int r0 = 0; r0 < td->rows; r0 += bs) {
            for (int c0 = 0; c0 < td->cols; c0 += bs) {
                size_t rows = (size_t)(td->rows - r0 < bs ? td->rows - r0 : bs);
                size_t cols = (size_t)(td->cols - c0 < bs ? td->cols - c0 : bs);
                for (int k = 0; k < n_buffers; k++) {
                    optim_arena_take(state, rows * rows * sizeof(double));
                    optim_arena_take(state, cols * cols * sizeof(double));
                    optim_arena_take(state, rows * rows * sizeof(double));
                    optim_arena_take(state, cols * cols * sizeof(double));
                    optim_arena_take(state, rows * rows * sizeof(float));
                    optim_arena_take(state, cols * cols * sizeof(float));
                }
                size_t side = rows > cols ? rows : cols;
                max_block = rows * cols > max_block ? rows * cols : max_block;
                max_square = side * side > max_square ? side * side : max_square;
                max_side = (int)side > max_side ? (int)side : max_side;
            }
        }
    }
    if (cfg->precondition_async)
        optim_arena_take(state, ASYNC_FIELDS * sizeof(uint64_t));

    /* Synchronous refreshes run on as many threads as OpenBLAS uses now;
     * the asynchronous mode has the caller plus one background thread. */
    size_t root_threads = cfg->precondition_async ? 1 : (size_t)openblas_get_num_threads();
    size_t workspaces = cfg->precondition_async ? 2 : root_threads;
    size_t block_work = max_square > max_block ? max_square : max_block;
    optim_arena_take(scratch, max_numel * sizeof(float));   /* graft_work */
    optim_arena_take(scratch, total_numel * sizeof(float)); /* precond_work */
    optim_arena_take(scratch, max_numel * sizeof(float));   /* nu_work */
    optim_arena_take(scratch, max_cols * sizeof(float));    /* col_work */
    optim_arena_take(scratch, root_threads * block_work * sizeof(float));
    optim_arena_take(scratch, root_threads * block_work * sizeof(float));
    scratch->used_bytes += workspaces * root_work_bytes((size_t)max_side);
}

size_t optim_state_bytes_for(const train_config *cfg, const tensor_desc *tensors, size_t n,
                             size_t *export_bytes)
{
    optim_arena state = {0}, scratch = {0};
    const optim_ops *ops = ops_for(cfg->optimizer);

    if (cfg->optimizer == OPT_SHAMPOO) {
        measure_shampoo(cfg, tensors, n, &state, &scratch);
    } else if (ops != NULL) {
        /* Adam's and SM3's carve() read only the tensor table, max_numel
         * and the slots, so a stack optimizer with a temporary slot table
         * measures them exactly. */
        optimizer probe = {.cfg = *cfg, .ops = ops, .tensors = (tensor_desc *)tensors, .n_tensors = n};
        probe.slots = calloc(n ? n : 1, sizeof *probe.slots);
        if (probe.slots == NULL)
            return SIZE_MAX;
        for (size_t i = 0; i < n; i++)
            probe.max_numel = tensors[i].numel > probe.max_numel ? tensors[i].numel : probe.max_numel;
        ops->carve(&probe, &state, &scratch);
        free(probe.slots);
    }
    if (export_bytes != NULL)
        *export_bytes = STATE_HEADER_BYTES + state.used_bytes;
    return STATE_HEADER_BYTES + state.used_bytes + scratch.used_bytes;
}

void optim_free(optimizer *opt)
{
    if (!opt)
        return;
    optim_roots_free(opt->roots);
    free(opt->root_tasks);
    free(opt->async_tasks);
    free(opt->state.base);
    free(opt->scratch.base);
    free(opt->blocks);
    free(opt->slots);
    free(opt->tensors);
    free(opt);
}

int optim_step(optimizer *opt, float *params, float *grads, double lr)
{
    opt->ops->step(opt, params, grads, lr);
    opt->step_count++;
    return 0;
}

long optim_step_count(const optimizer *opt)
{
    return opt->step_count;
}

long optim_rejected_roots(const optimizer *opt)
{
    return opt->rejected_roots;
}

int optim_root_threads(const optimizer *opt)
{
    return opt->roots ? optim_roots_threads(opt->roots) : 1;
}

size_t optim_state_bytes(const optimizer *opt)
{
    return STATE_HEADER_BYTES + opt->state.used_bytes;
}

void optim_state_export(const optimizer *opt, void *buf)
{
    if (opt->ops->before_export)
        opt->ops->before_export(opt);
    uint64_t header[3] = {
        STATE_MAGIC | (uint64_t)opt->cfg.optimizer,
        (uint64_t)opt->step_count,
        (uint64_t)opt->rejected_roots,
    };
    memcpy(buf, header, sizeof header);
    memcpy((unsigned char *)buf + STATE_HEADER_BYTES, opt->state.base, opt->state.used_bytes);
}

int optim_state_import(optimizer *opt, const void *buf, size_t size)
{
    uint64_t header[3];
    if (size != optim_state_bytes(opt))
        return -1;
    memcpy(header, buf, sizeof header);
    if (header[0] != (STATE_MAGIC | (uint64_t)opt->cfg.optimizer) || header[1] > (uint64_t)LONG_MAX ||
        header[2] > (uint64_t)LONG_MAX)
        return -1;
    if (opt->ops->before_import)
        opt->ops->before_import(opt);
    opt->step_count = (long)header[1];
    opt->rejected_roots = (long)header[2];
    memcpy(opt->state.base, (const unsigned char *)buf + STATE_HEADER_BYTES, opt->state.used_bytes);
    if (opt->ops->after_import)
        opt->ops->after_import(opt);
    return 0;
}
