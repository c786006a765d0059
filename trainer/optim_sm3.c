/* SM3-II (Anil et al., "Memory-Efficient Adaptive Optimization", 2019) with
 * heavy-ball momentum and decoupled weight decay.
 *
 * A matrix (rows x cols) keeps one accumulator per row and per column; a
 * vector keeps one per element. With w2 = 1 if b2 == 1 else 1 - b2:
 *   matrix: nu[i][j] = b2 * min(row[i], col[j]) + w2 * G[i][j]^2,
 *           then row[i] = max_j nu[i][j] and col[j] = max_i nu[i][j]
 *   vector: nu = b2 * acc + w2 * G^2, acc = nu
 *   u = G / sqrt(nu + eps);  m = b1*m + (1-b1)*u
 *   W *= 1 - lr * weight_decay;  W -= lr * m
 * State: m (float32 per parameter) and the accumulators (float32).
 */
#include <math.h>

#include "optim_internal.h"

void optim_sm3_accumulate(float *acc, float *nu_out, float *col_scratch, const float *g,
                          int rows, int cols, int is_vector, double beta2)
{
    float b2 = (float)beta2;
    float w2 = beta2 == 1.0 ? 1.0f : (float)(1.0 - beta2);

    if (is_vector) {
        for (int i = 0; i < rows; i++) {
            nu_out[i] = b2 * acc[i] + w2 * g[i] * g[i];
            acc[i] = nu_out[i];
        }
        return;
    }

    /* nu reads the old row and column maxima, so the new column maxima
     * collect in col_scratch and replace col only after the last row. */
    float *row = acc, *col = acc + rows;
    for (int j = 0; j < cols; j++)
        col_scratch[j] = 0.0f;
    for (int i = 0; i < rows; i++) {
        const float *gi = g + (size_t)i * cols;
        float *nu = nu_out + (size_t)i * cols;
        float row_max = 0.0f;
        for (int j = 0; j < cols; j++) {
            float prev = row[i] < col[j] ? row[i] : col[j];
            nu[j] = b2 * prev + w2 * gi[j] * gi[j];
            row_max = nu[j] > row_max ? nu[j] : row_max;
            col_scratch[j] = nu[j] > col_scratch[j] ? nu[j] : col_scratch[j];
        }
        row[i] = row_max;
    }
    for (int j = 0; j < cols; j++)
        col[j] = col_scratch[j];
}

/* Accumulator count: rows + cols for a matrix, numel for a vector. */
static size_t accumulator_count(const tensor_desc *td)
{
    return td->ndim == 2 ? (size_t)td->rows + (size_t)td->cols : td->numel;
}

static void sm3_carve(optimizer *opt, optim_arena *state, optim_arena *scratch)
{
    size_t max_cols = 1;
    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        opt->slots[i].m = optim_arena_take(state, td->numel * sizeof(float));
        opt->slots[i].acc = optim_arena_take(state, accumulator_count(td) * sizeof(float));
        if ((size_t)td->cols > max_cols)
            max_cols = (size_t)td->cols;
    }
    /* scratch: nu (max numel), then new column maxima (max cols). */
    opt->nu_work = optim_arena_take(scratch, opt->max_numel * sizeof(float));
    opt->col_work = optim_arena_take(scratch, max_cols * sizeof(float));
}

static void sm3_step(optimizer *opt, float *params, float *grads, double lr)
{
    const train_config *cfg = &opt->cfg;
    float b1 = (float)cfg->b1, eps = (float)cfg->eps;
    float decay = (float)(1.0 - lr * cfg->weight_decay);
    float step_size = (float)lr;
    float *nu = opt->nu_work;

    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        float *w = params + td->offset;
        const float *g = grads + td->offset;
        float *m = opt->slots[i].m;

        optim_sm3_accumulate(opt->slots[i].acc, nu, opt->col_work, g, td->rows, td->cols,
                             td->ndim == 1, cfg->b2);
        for (size_t j = 0; j < td->numel; j++) {
            float u = g[j] / sqrtf(nu[j] + eps);
            m[j] = b1 * m[j] + (1.0f - b1) * u;
            w[j] = w[j] * decay - step_size * m[j];
        }
    }
}

const optim_ops optim_sm3_ops = {
    .carve = sm3_carve,
    .step = sm3_step,
};
