/* Adam and AdamW, with PyTorch's semantics (torch.optim.Adam and AdamW).
 *
 * With t = k + 1 (k = steps taken before this one):
 *   adam:  G += weight_decay * W
 *   adamw: W *= 1 - lr * weight_decay          (decoupled, G untouched)
 *   both:  m = b1*m + (1-b1)*G;  v = b2*v + (1-b2)*G^2
 *          W -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * m and v are float32, one of each per parameter. b2 must be below 1 because
 * the bias correction 1 - b2^t would be zero.
 */
#include <math.h>
#include <stdio.h>

#include "optim_internal.h"

static int adam_plan(optimizer *opt, char *err, size_t err_size)
{
    if (!(opt->cfg.b2 < 1.0)) {
        snprintf(err, err_size, "invalid b2 %g for %s: must be below 1 (the bias correction 1 - b2^t "
                 "would be zero)", opt->cfg.b2, optimizer_name(opt->cfg.optimizer));
        return -1;
    }
    return 0;
}

static void adam_carve(optimizer *opt, optim_arena *state, optim_arena *scratch)
{
    for (size_t i = 0; i < opt->n_tensors; i++) {
        size_t numel = opt->tensors[i].numel;
        opt->slots[i].m = optim_arena_take(state, numel * sizeof(float));
        opt->slots[i].v = optim_arena_take(state, numel * sizeof(float));
    }
}

static void adam_step(optimizer *opt, float *params, float *grads, double lr)
{
    const train_config *cfg = &opt->cfg;
    double t = (double)(opt->step_count + 1);
    float b1 = (float)cfg->b1, b2 = (float)cfg->b2;
    float step_size = (float)(lr / (1.0 - pow(cfg->b1, t)));
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(cfg->b2, t)));
    float eps = (float)cfg->eps;
    float l2 = cfg->optimizer == OPT_ADAM ? (float)cfg->weight_decay : 0.0f;
    float decay = cfg->optimizer == OPT_ADAMW ? (float)(1.0 - lr * cfg->weight_decay) : 1.0f;

    for (size_t i = 0; i < opt->n_tensors; i++) {
        const tensor_desc *td = &opt->tensors[i];
        float *w = params + td->offset;
        float *g = grads + td->offset;
        float *m = opt->slots[i].m;
        float *v = opt->slots[i].v;
        for (size_t j = 0; j < td->numel; j++) {
            g[j] += l2 * w[j];
            m[j] = b1 * m[j] + (1.0f - b1) * g[j];
            v[j] = b2 * v[j] + (1.0f - b2) * g[j] * g[j];
            w[j] = w[j] * decay - step_size * m[j] / (sqrtf(v[j]) * inv_sqrt_bc2 + eps);
        }
    }
}

const optim_ops optim_adam_ops = {
    .plan = adam_plan,
    .carve = adam_carve,
    .step = adam_step,
};
