/* Unit tests of optim_state_bytes_for(): the memory the trainer checks
 * against --max-memory before it allocates an optimizer. For every kind and
 * Shampoo mode, the predicted export size must equal optim_state_bytes() of
 * the optimizer that optim_create() then builds, and the total must cover
 * it plus Shampoo's per-thread root workspaces. */
#include <stdio.h>
#include <stdlib.h>

#include <cblas.h>

#include "check.h"
#include "hparams.h"
#include "optim.h"

/* A model-like table: two matrices with block edges, one vector. */
static const tensor_desc TENSORS[] = {
    {"t.wte", 2, 40, 24, 0, 960},
    {"t.qkv", 2, 24, 72, 960, 1728},
    {"t.b", 1, 72, 1, 2688, 72},
};
#define N_TENSORS (sizeof TENSORS / sizeof TENSORS[0])

static train_config make_config(enum optimizer_kind kind, const char *const *settings)
{
    train_config cfg;
    char err[256];
    train_config_defaults(&cfg);
    cfg.optimizer = kind;
    for (size_t i = 0; settings && settings[i]; i += 2) {
        int rc = train_config_set(&cfg, settings[i], settings[i + 1], err, sizeof err);
        if (rc != 0)
            fprintf(stderr, "set %s=%s: %s\n", settings[i], settings[i + 1], err);
        CHECK(rc == 0);
    }
    int rc = train_config_finalize(&cfg, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "finalize: %s\n", err);
    CHECK(rc == 0);
    return cfg;
}

/* Compares the prediction with what optim_create() allocates. */
static void check_prediction(const char *label, enum optimizer_kind kind, const char *const *settings)
{
    train_config cfg = make_config(kind, settings);
    size_t export_bytes = 0;
    size_t total_bytes = optim_state_bytes_for(&cfg, TENSORS, N_TENSORS, &export_bytes);

    optimizer *opt = NULL;
    char err[256];
    int rc = optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "%s: optim_create: %s\n", label, err);
    CHECK(rc == 0);
    if (rc != 0)
        return;
    if (export_bytes != optim_state_bytes(opt))
        fprintf(stderr, "%s: predicted %zu state bytes, optim_create made %zu\n", label, export_bytes,
                optim_state_bytes(opt));
    CHECK(export_bytes == optim_state_bytes(opt));
    CHECK(total_bytes >= export_bytes);
    optim_free(opt);
}

int main(void)
{
    static const char *const blocks[] = {"block_size", "16", NULL};
    static const char *const graft_sm3[] = {"block_size", "16", "graft", "sm3", NULL};
    static const char *const async[] = {"block_size", "16", "precondition_async", "true", NULL};
    static const char *const small_dim[] = {"block_size", "16", "max_precond_dim", "30", NULL};

    openblas_set_num_threads(1);
    check_prediction("adam", OPT_ADAM, NULL);
    check_prediction("adamw", OPT_ADAMW, NULL);
    check_prediction("sm3", OPT_SM3, NULL);
    check_prediction("shampoo", OPT_SHAMPOO, blocks);
    check_prediction("shampoo graft=sm3", OPT_SHAMPOO, graft_sm3);
    check_prediction("shampoo async", OPT_SHAMPOO, async);
    check_prediction("shampoo max_precond_dim", OPT_SHAMPOO, small_dim);

    /* Each root thread adds a workspace of the largest block side. */
    train_config cfg = make_config(OPT_SHAMPOO, blocks);
    size_t one = optim_state_bytes_for(&cfg, TENSORS, N_TENSORS, NULL);
    openblas_set_num_threads(2);
    size_t two = optim_state_bytes_for(&cfg, TENSORS, N_TENSORS, NULL);
    check_prediction("shampoo 2 threads", OPT_SHAMPOO, blocks);
    openblas_set_num_threads(1);
    CHECK(two > one + 16 * 16 * 6 * sizeof(double));
    return check_report("optim_state_bytes");
}
