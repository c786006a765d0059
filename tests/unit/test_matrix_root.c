/* Unit tests of the inverse fourth roots in trainer/matrix_root.c and of
 * Shampoo's rejected-root counting: eigh and newton agree on well- and
 * ill-conditioned SPD matrices (condition 1e6), rank-deficient and zero
 * statistics give finite roots, and failed roots keep the previous one.
 * Matrices are built as Q diag(lambda) Q^T from Householder reflections, so
 * the exact root is known. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "hparams.h"
#include "matrix_root.h"
#include "optim.h"

#define N 16

static unsigned rng_state = 12345u;

static double uniform(void)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return ((rng_state >> 8) & 0xffffff) / (double)0x1000000;
}

/* Fills q (n x n, row-major) with an orthogonal matrix: a product of three
 * random Householder reflections. */
static void random_orthogonal(double *q, int n)
{
    double v[N], tmp[N * N];
    memset(q, 0, sizeof(double) * n * n);
    for (int i = 0; i < n; i++)
        q[i * n + i] = 1.0;
    for (int r = 0; r < 3; r++) {
        double norm2 = 0.0;
        for (int i = 0; i < n; i++) {
            v[i] = uniform() - 0.5;
            norm2 += v[i] * v[i];
        }
        /* q = q (I - 2 v v^T / |v|^2) */
        for (int i = 0; i < n; i++) {
            double qv = 0.0;
            for (int k = 0; k < n; k++)
                qv += q[i * n + k] * v[k];
            for (int j = 0; j < n; j++)
                tmp[i * n + j] = q[i * n + j] - 2.0 * qv * v[j] / norm2;
        }
        memcpy(q, tmp, sizeof(double) * n * n);
    }
}

/* out = q diag(d) q^T */
static void compose(double *out, const double *q, const double *d, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int k = 0; k < n; k++)
                sum += q[i * n + k] * d[k] * q[j * n + k];
            out[i * n + j] = sum;
        }
    }
}

static double relative_difference(const double *a, const double *b, int n)
{
    double diff = 0.0, norm = 0.0;
    for (int i = 0; i < n * n; i++) {
        diff += (a[i] - b[i]) * (a[i] - b[i]);
        norm += b[i] * b[i];
    }
    return sqrt(diff) / (sqrt(norm) + 1e-300);
}

static int all_finite(const double *a, int count)
{
    for (int i = 0; i < count; i++)
        if (!isfinite(a[i]))
            return 0;
    return 1;
}

/* Builds S from eigenvalues lambda, computes both roots and compares each
 * with the exact root Q diag((lambda + e)^(-1/4)) Q^T. */
static void check_spectrum(const char *label, const double *lambda, double matrix_eps, double tolerance)
{
    double q[N * N], s[N * N], exact[N * N], eigh_root[N * N], newton_root[N * N], d[N];
    random_orthogonal(q, N);
    compose(s, q, lambda, N);

    double lambda_max = 0.0;
    for (int i = 0; i < N; i++)
        lambda_max = lambda[i] > lambda_max ? lambda[i] : lambda_max;
    double e = matrix_eps * (lambda_max > 1e-6 ? lambda_max : 1e-6);
    for (int i = 0; i < N; i++)
        d[i] = pow(lambda[i] + e, -0.25);
    compose(exact, q, d, N);

    matrix_root_work *work = matrix_root_work_create(N);
    CHECK(work != NULL);
    if (!work)
        return;
    double residual = -1.0;
    int eigh_rc = matrix_root_inverse_fourth(work, ROOT_EIGH, s, N, matrix_eps, eigh_root, NULL);
    int newton_rc = matrix_root_inverse_fourth(work, ROOT_NEWTON, s, N, matrix_eps, newton_root, &residual);
    CHECK(eigh_rc == 0);
    CHECK(newton_rc == 0);
    CHECK(all_finite(eigh_root, N * N));
    CHECK(all_finite(newton_root, N * N));

    double eigh_err = relative_difference(eigh_root, exact, N);
    double newton_err = relative_difference(newton_root, exact, N);
    double between = relative_difference(newton_root, eigh_root, N);
    printf("%-28s eigh %.2e  newton %.2e  newton-eigh %.2e  residual %.2e (tolerance %.0e)\n", label,
           eigh_err, newton_err, between, residual, tolerance);
    CHECK(eigh_err < tolerance);
    CHECK(newton_err < tolerance);
    CHECK(between < tolerance);
    CHECK(residual >= 0.0 && residual < MATRIX_ROOT_MAX_RESIDUAL);
    matrix_root_work_free(work);
}

static void test_well_conditioned(void)
{
    double lambda[N];
    for (int i = 0; i < N; i++)
        lambda[i] = 1.0 + 9.0 * i / (N - 1);
    check_spectrum("well conditioned (cond 10)", lambda, 1e-6, 1e-8);
}

static void test_ill_conditioned(void)
{
    /* Eigenvalues 1e-6 .. 1 in geometric steps: condition 1e6. */
    double lambda[N];
    for (int i = 0; i < N; i++)
        lambda[i] = pow(10.0, -6.0 + 6.0 * i / (N - 1));
    check_spectrum("ill conditioned (cond 1e6)", lambda, 1e-6, 1e-6);
}

static void test_rank_deficient(void)
{
    double lambda[N] = {0};
    lambda[N - 1] = 4.0;
    check_spectrum("rank 1", lambda, 1e-6, 1e-6);

    for (int i = 0; i < 3; i++)
        lambda[i] = 0.5 + i;
    check_spectrum("rank 4", lambda, 1e-6, 1e-6);
}

static void test_zero_statistic(void)
{
    /* lambda_max = 0, so e = matrix_eps * 1e-6 and the root is e^(-1/4) I. */
    double lambda[N] = {0};
    check_spectrum("zero", lambda, 1e-6, 1e-8);

    double s[N * N] = {0}, root[N * N];
    matrix_root_work *work = matrix_root_work_create(N);
    CHECK(work != NULL);
    if (!work)
        return;
    CHECK(matrix_root_inverse_fourth(work, ROOT_EIGH, s, N, 1e-6, root, NULL) == 0);
    CHECK_NEAR(root[0], 1000.0, 1e-9);
    CHECK_NEAR(root[1], 0.0, 1e-9);
    matrix_root_work_free(work);
}

static void test_failures_leave_root(void)
{
    /* matrix_eps = 0 on a zero matrix makes (0)^(-1/4) infinite, and a NaN
     * statistic is never finite: both methods fail and keep the old root. */
    double s[N * N] = {0}, root[N * N];
    for (int i = 0; i < N * N; i++)
        root[i] = 7.0;
    matrix_root_work *work = matrix_root_work_create(N);
    CHECK(work != NULL);
    if (!work)
        return;
    CHECK(matrix_root_inverse_fourth(work, ROOT_EIGH, s, N, 0.0, root, NULL) == -1);
    CHECK(matrix_root_inverse_fourth(work, ROOT_NEWTON, s, N, 0.0, root, NULL) == -1);
    s[3] = NAN;
    CHECK(matrix_root_inverse_fourth(work, ROOT_EIGH, s, N, 1e-6, root, NULL) == -1);
    CHECK(matrix_root_inverse_fourth(work, ROOT_NEWTON, s, N, 1e-6, root, NULL) == -1);
    int untouched = 1;
    for (int i = 0; i < N * N; i++)
        untouched &= root[i] == 7.0;
    CHECK(untouched);
    matrix_root_work_free(work);
}

/* Shampoo with matrix_eps 0 and gradients that are nonzero only at (0, 0)
 * and (0, 2) of the matrix: every statistic is diag(x, 0) or zero, so
 * every root fails and each refresh counts two rejections (left and right)
 * per block, while D = Gb stays nonzero. The parameters stay finite. With
 * precondition_async the rejections are counted when a snapshot's roots are
 * installed, at k = 2 and 4, and the roots stay I as in the synchronous
 * run, so the parameters match it bit for bit. Writes them into w_out. */
static void check_rejected_count(enum root_method method, int async, float *w_out)
{
    static const tensor_desc tensors[] = {{"w", 2, 3, 5, 0, 15}, {"b", 1, 4, 1, 15, 4}};
    char err[256];
    train_config cfg;
    train_config_defaults(&cfg);
    cfg.optimizer = OPT_SHAMPOO;
    CHECK(train_config_set(&cfg, "matrix_eps", "0", err, sizeof err) == 0);
    CHECK(train_config_set(&cfg, "block_size", "2", err, sizeof err) == 0);
    CHECK(train_config_set(&cfg, "precondition_every", "2", err, sizeof err) == 0);
    CHECK(train_config_set(&cfg, "precondition_async", async ? "true" : "false", err, sizeof err) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof err) == 0);
    cfg.root_method = method;

    optimizer *opt = NULL;
    CHECK(optim_create(&opt, &cfg, tensors, 2, err, sizeof err) == 0);
    if (!opt)
        return;
    float w[19], g[19];
    for (int i = 0; i < 19; i++)
        w[i] = 0.1f * (float)i;
    for (int s = 0; s < 5; s++) {
        memset(g, 0, sizeof g);
        g[0] = 0.5f + 0.1f * (float)s;
        g[2] = -0.25f;
        g[15] = 0.3f;
        optim_step(opt, w, g, 1e-3);
    }
    /* 3x5 with block_size 2: 2 x 3 = 6 blocks; refreshes at k = 0, 2, 4. */
    CHECK(optim_rejected_roots(opt) == 6 * 2 * (async ? 2 : 3));
    int finite = 1;
    for (int i = 0; i < 19; i++)
        finite &= isfinite(w[i]);
    CHECK(finite);
    memcpy(w_out, w, sizeof w);
    optim_free(opt);
}

static void test_rejected_roots_counted(void)
{
    static const enum root_method methods[] = {ROOT_EIGH, ROOT_NEWTON};
    for (size_t i = 0; i < 2; i++) {
        float w_sync[19], w_async[19];
        check_rejected_count(methods[i], 0, w_sync);
        check_rejected_count(methods[i], 1, w_async);
        CHECK(memcmp(w_sync, w_async, sizeof w_sync) == 0);
    }
}

/* The gradient of step s for the resume test below. At steps 0 and 1 it
 * is nonzero in rows 0-1, columns 0-3 of the 3x5 matrix (the two full 2x2
 * blocks) and in the vector. Later it is nonzero only at (0, 0) and
 * (0, 2). */
static void rejection_gradient(float *g, int s)
{
    memset(g, 0, 19 * sizeof *g);
    if (s >= 2) {
        g[0] = 0.5f + 0.1f * (float)s;
        g[2] = -0.25f;
        return;
    }
    for (int r = 0; r < 2; r++)
        for (int c = 0; c < 4; c++)
            g[r * 5 + c] = (float)(((r * 5 + c) * 7 + s * 13) % 11 - 5) / 8.0f;
    for (int i = 15; i < 19; i++)
        g[i] = 0.25f * (float)(i - 16);
}

/* precondition_async with b2 0, so each statistic is the current G G^T:
 * the refresh at k = 0 succeeds for the two full blocks and its roots are
 * installed at k = 2, while the one at k = 2 fails (every statistic is
 * diag(x, 0) or zero) and must keep them at k = 4. A state exported after 3 steps, with that failing refresh
 * pending, must resume to the same parameters and rejection count, which
 * needs the rejection flags that only the recomputation on import
 * restores. */
static void test_async_resume_with_rejections(void)
{
    static const tensor_desc tensors[] = {{"w", 2, 3, 5, 0, 15}, {"b", 1, 4, 1, 15, 4}};
    static const char *const settings[] = {"matrix_eps", "0", "block_size", "2", "precondition_every", "2",
                                           "b2", "0", "graft", "sgd", "precondition_async", "true", NULL};
    char err[256];
    train_config cfg;
    train_config_defaults(&cfg);
    cfg.optimizer = OPT_SHAMPOO;
    for (int i = 0; settings[i]; i += 2)
        CHECK(train_config_set(&cfg, settings[i], settings[i + 1], err, sizeof err) == 0);
    CHECK(train_config_finalize(&cfg, err, sizeof err) == 0);

    optimizer *straight = NULL, *first = NULL, *resumed = NULL;
    CHECK(optim_create(&straight, &cfg, tensors, 2, err, sizeof err) == 0);
    CHECK(optim_create(&first, &cfg, tensors, 2, err, sizeof err) == 0);
    CHECK(optim_create(&resumed, &cfg, tensors, 2, err, sizeof err) == 0);
    if (!straight || !first || !resumed) {
        optim_free(straight);
        optim_free(first);
        optim_free(resumed);
        return;
    }

    float w_straight[19], w_split[19], g[19];
    for (int i = 0; i < 19; i++)
        w_straight[i] = w_split[i] = 0.1f * (float)i;
    for (int s = 0; s < 5; s++) {
        rejection_gradient(g, s);
        optim_step(straight, w_straight, g, 1e-2);
    }
    for (int s = 0; s < 3; s++) {
        rejection_gradient(g, s);
        optim_step(first, w_split, g, 1e-2);
    }
    size_t bytes = optim_state_bytes(first);
    unsigned char *state = malloc(bytes);
    CHECK(state != NULL);
    if (state) {
        optim_state_export(first, state);
        CHECK(optim_state_import(resumed, state, bytes) == 0);
        free(state);
    }
    for (int s = 3; s < 5; s++) {
        rejection_gradient(g, s);
        optim_step(resumed, w_split, g, 1e-2);
    }

    /* The k = 0 refresh rejects both roots of the 4 blocks with a zero
     * statistic, and the k = 2 refresh all 12 roots of the 6 blocks. */
    CHECK(optim_rejected_roots(straight) == 8 + 12);
    CHECK(optim_rejected_roots(resumed) == optim_rejected_roots(straight));
    CHECK(memcmp(w_straight, w_split, sizeof w_split) == 0);
    optim_free(straight);
    optim_free(first);
    optim_free(resumed);
}

int main(void)
{
    test_well_conditioned();
    test_ill_conditioned();
    test_rank_deficient();
    test_zero_statistic();
    test_failures_leave_root();
    test_rejected_roots_counted();
    test_async_resume_with_rejections();
    return check_report("test_matrix_root");
}
