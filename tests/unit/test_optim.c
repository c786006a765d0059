/* Unit tests of the optimizer front end: Adam's hand-derived first step,
 * AdamW's decoupled decay, state export/import resuming bit for bit for every
 * optimizer, and rejection of invalid settings. Values are checked against
 * closed forms here; step-by-step references for every optimizer live in
 * tests/optim_reference.py and tests/integration/test_optim_trace.py. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "check.h"
#include "hparams.h"
#include "optim.h"

/* Two tensors in one flat buffer: a 3x5 matrix and a 1-D vector of 4. */
static const tensor_desc TENSORS[] = {
    {"test.w", 2, 3, 5, 0, 15},
    {"test.b", 1, 4, 1, 15, 4},
};
#define N_TENSORS (sizeof TENSORS / sizeof TENSORS[0])
#define N_PARAMS 19

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

/* Fills x with deterministic pseudo-random values in [-1, 1) from seed. */
static void fill_values(float *x, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
    }
}

static void test_adam_first_step(void)
{
    /* With m = (1-b1) g and v = (1-b2) g^2, the bias corrections cancel and
     * the step is lr * g / (|g| + eps), which is lr * sign(g) up to eps. */
    train_config cfg = make_config(OPT_ADAM, NULL);
    optimizer *opt = NULL;
    char err[256];
    CHECK(optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err) == 0);
    if (!opt)
        return;

    float w[N_PARAMS], w0[N_PARAMS], g[N_PARAMS], g0[N_PARAMS];
    fill_values(w, N_PARAMS, 1);
    fill_values(g, N_PARAMS, 2);
    memcpy(w0, w, sizeof w);
    memcpy(g0, g, sizeof g);
    CHECK(optim_step(opt, w, g, 1e-3) == 0);
    double worst = 0.0;
    for (int i = 0; i < N_PARAMS; i++) {
        double expected = w0[i] - 1e-3 * g0[i] / (fabs(g0[i]) + 1e-8);
        double diff = fabs(w[i] - expected);
        worst = diff > worst ? diff : worst;
        CHECK_NEAR(w[i], expected, 1e-6);
        CHECK(fabs(fabs(w[i] - w0[i]) - 1e-3) < 1e-5);
    }
    printf("adam first step: max |w - closed form| = %.3g\n", worst);
    CHECK(optim_step_count(opt) == 1);
    CHECK(optim_rejected_roots(opt) == 0);
    optim_free(opt);
}

static void test_adamw_decay_only(void)
{
    /* A zero gradient leaves m = v = 0, so only W *= 1 - lr * wd acts. */
    static const char *const settings[] = {"weight_decay", "0.5", NULL};
    train_config cfg = make_config(OPT_ADAMW, settings);
    optimizer *opt = NULL;
    char err[256];
    CHECK(optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err) == 0);
    if (!opt)
        return;
    float w[N_PARAMS], g[N_PARAMS] = {0};
    fill_values(w, N_PARAMS, 3);
    float w0[N_PARAMS];
    memcpy(w0, w, sizeof w);
    CHECK(optim_step(opt, w, g, 0.1) == 0);
    for (int i = 0; i < N_PARAMS; i++)
        CHECK_NEAR(w[i], w0[i] * (1.0 - 0.1 * 0.5), 1e-7);
    optim_free(opt);
}

/* Runs 3 steps, exports, then runs 4 more on the original and on a fresh
 * optimizer that imported the state: parameters must match bit for bit. */
static void check_resume(enum optimizer_kind kind, const char *const *settings)
{
    train_config cfg = make_config(kind, settings);
    optimizer *a = NULL, *b = NULL;
    char err[256];
    CHECK(optim_create(&a, &cfg, TENSORS, N_TENSORS, err, sizeof err) == 0);
    CHECK(optim_create(&b, &cfg, TENSORS, N_TENSORS, err, sizeof err) == 0);
    if (!a || !b) {
        optim_free(a);
        optim_free(b);
        return;
    }

    float wa[N_PARAMS], wb[N_PARAMS], g[N_PARAMS];
    fill_values(wa, N_PARAMS, 4);
    for (unsigned s = 0; s < 3; s++) {
        fill_values(g, N_PARAMS, 100 + s);
        optim_step(a, wa, g, 0.01);
    }
    memcpy(wb, wa, sizeof wa);

    size_t bytes = optim_state_bytes(a);
    CHECK(bytes == optim_state_bytes(b));
    unsigned char *state = malloc(bytes);
    CHECK(state != NULL);
    if (state) {
        optim_state_export(a, state);
        CHECK(optim_state_import(b, state, bytes - 1) == -1);
        CHECK(optim_state_import(b, state, bytes) == 0);
        free(state);
    }
    CHECK(optim_step_count(b) == 3);

    for (unsigned s = 3; s < 7; s++) {
        float ga[N_PARAMS], gb[N_PARAMS];
        fill_values(ga, N_PARAMS, 100 + s);
        memcpy(gb, ga, sizeof ga);
        optim_step(a, wa, ga, 0.01);
        optim_step(b, wb, gb, 0.01);
    }
    int same = memcmp(wa, wb, sizeof wa) == 0;
    if (!same)
        fprintf(stderr, "resume mismatch for %s\n", optimizer_name(kind));
    CHECK(same);
    CHECK(optim_step_count(a) == 7);
    optim_free(a);
    optim_free(b);
}

static void test_resume_bit_exact(void)
{
    static const char *const shampoo_blocks[] = {"block_size", "2", "precondition_every", "2",
                                                 "graft", "sm3", "nesterov", "false", NULL};
    static const char *const shampoo_newton[] = {"root_method", "newton", "precondition_every", "1", NULL};
    check_resume(OPT_ADAM, NULL);
    check_resume(OPT_ADAMW, NULL);
    check_resume(OPT_SM3, NULL);
    check_resume(OPT_SHAMPOO, NULL);
    check_resume(OPT_SHAMPOO, shampoo_blocks);
    check_resume(OPT_SHAMPOO, shampoo_newton);
}

/* With precondition_async, a state exported between a refresh and the
 * install of its roots carries the snapshot, and the importer recomputes
 * those roots. Exporting after 3 steps with precondition_every 2 catches the
 * snapshot of step 2 in flight. */
static void test_async_resume_bit_exact(void)
{
    static const char *const async_blocks[] = {"precondition_async", "true", "precondition_every", "2",
                                               "block_size", "2", NULL};
    static const char *const async_every[] = {"precondition_async", "true", "precondition_every", "1",
                                              "graft", "sm3", "nesterov", "false", NULL};
    static const char *const async_newton[] = {"precondition_async", "true", "precondition_every", "3",
                                               "root_method", "newton", NULL};
    check_resume(OPT_SHAMPOO, async_blocks);
    check_resume(OPT_SHAMPOO, async_every);
    check_resume(OPT_SHAMPOO, async_newton);
}

/* Runs 6 Shampoo steps with the root threads that OpenBLAS's thread count
 * gives at creation and writes the parameters into w. */
static void run_shampoo_threads(const char *const *settings, int threads, float *w, int *root_threads)
{
    train_config cfg = make_config(OPT_SHAMPOO, settings);
    optimizer *opt = NULL;
    char err[256];

    openblas_set_num_threads(threads);
    int rc = optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err);
    if (rc != 0)
        fprintf(stderr, "optim_create: %s\n", err);
    CHECK(rc == 0);
    if (!opt)
        return;
    *root_threads = optim_root_threads(opt);
    fill_values(w, N_PARAMS, 5);
    for (unsigned s = 0; s < 6; s++) {
        float g[N_PARAMS];
        fill_values(g, N_PARAMS, 200 + s);
        optim_step(opt, w, g, 0.01);
    }
    optim_free(opt);
}

/* Roots computed on a pool of 3 threads equal the single-threaded ones bit
 * for bit, because each root is computed by the same code on the same
 * statistic. Six blocks give each thread work on every refresh. The
 * asynchronous mode has no pool, but its background thread then runs
 * beside 3 OpenBLAS threads. */
static void test_root_pool_matches_serial(void)
{
    static const char *const eigh[] = {"block_size", "2", "precondition_every", "1", NULL};
    static const char *const newton[] = {"block_size", "2", "precondition_every", "2", "root_method", "newton",
                                         NULL};
    static const char *const async[] = {"block_size", "2", "precondition_every", "1", "precondition_async",
                                        "true", NULL};
    const char *const *cases[] = {eigh, newton, async};
    int blas_threads = openblas_get_num_threads();

    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float serial[N_PARAMS], pooled[N_PARAMS];
        int serial_threads = 0, pooled_threads = 0;
        run_shampoo_threads(cases[c], 1, serial, &serial_threads);
        run_shampoo_threads(cases[c], 3, pooled, &pooled_threads);
        CHECK(serial_threads == 1);
        CHECK(pooled_threads == (cases[c] == async ? 1 : 3));
        int same = memcmp(serial, pooled, sizeof serial) == 0;
        if (!same)
            fprintf(stderr, "root pool case %zu differs from the serial run\n", c);
        CHECK(same);
    }
    openblas_set_num_threads(blas_threads);
}

/* Asynchronous roots arrive one period late, so the run must differ from
 * the synchronous one. tests/integration/test_optim_trace.py checks the
 * exact values against the numpy reference. */
static void test_async_differs_from_sync(void)
{
    static const char *const sync[] = {"block_size", "2", "precondition_every", "1", NULL};
    static const char *const async[] = {"block_size", "2", "precondition_every", "1", "precondition_async",
                                        "true", NULL};
    float w_sync[N_PARAMS], w_async[N_PARAMS];
    int threads = 0;
    int blas_threads = openblas_get_num_threads();

    run_shampoo_threads(sync, 1, w_sync, &threads);
    run_shampoo_threads(async, 1, w_async, &threads);
    CHECK(memcmp(w_sync, w_async, sizeof w_sync) != 0);
    openblas_set_num_threads(blas_threads);
}

static void test_state_import_wrong_kind(void)
{
    train_config adam = make_config(OPT_ADAM, NULL);
    train_config adamw = make_config(OPT_ADAMW, NULL);
    optimizer *a = NULL, *b = NULL;
    char err[256];
    CHECK(optim_create(&a, &adam, TENSORS, N_TENSORS, err, sizeof err) == 0);
    CHECK(optim_create(&b, &adamw, TENSORS, N_TENSORS, err, sizeof err) == 0);
    if (a && b) {
        /* Same size, different kind: the header rejects it. */
        size_t bytes = optim_state_bytes(a);
        CHECK(bytes == optim_state_bytes(b));
        unsigned char *state = malloc(bytes);
        if (state) {
            optim_state_export(a, state);
            CHECK(optim_state_import(b, state, bytes) == -1);
            free(state);
        }
    }
    optim_free(a);
    optim_free(b);
}

static void test_create_rejects_invalid(void)
{
    char err[256];
    optimizer *opt = NULL;

    train_config cfg = make_config(OPT_ADAM, NULL);
    cfg.b2 = 1.0;
    CHECK(optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err) == -1);
    CHECK(opt == NULL);
    CHECK(strstr(err, "b2") != NULL);

    cfg = make_config(OPT_SHAMPOO, NULL);
    cfg.block_size = 0;
    CHECK(optim_create(&opt, &cfg, TENSORS, N_TENSORS, err, sizeof err) == -1);
    CHECK(strstr(err, "block_size") != NULL);

    cfg = make_config(OPT_SM3, NULL);
    tensor_desc bad = {"bad.w", 2, 3, 5, 0, 14};
    CHECK(optim_create(&opt, &cfg, &bad, 1, err, sizeof err) == -1);
    CHECK(strstr(err, "bad.w") != NULL);
}

int main(void)
{
    test_adam_first_step();
    test_adamw_decay_only();
    test_resume_bit_exact();
    test_async_resume_bit_exact();
    test_root_pool_matches_serial();
    test_async_differs_from_sync();
    test_state_import_wrong_kind();
    test_create_rejects_invalid();
    return check_report("test_optim");
}
