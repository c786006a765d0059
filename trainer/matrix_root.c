/* Inverse fourth roots for Shampoo: eigh through LAPACK's dsyevd and the
 * coupled Newton iteration, both in double precision (see matrix_root.h).
 *
 * Matrices are dense n x n doubles. A symmetric matrix reads the same in
 * row-major and column-major order, so LAPACK's column-major convention only
 * matters for the eigenvectors, which are columns of the output array.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "matrix_root.h"

/* LAPACK's symmetric divide-and-conquer eigensolver (Fortran ABI, with the
 * hidden lengths of the two character arguments). */
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
             double *work, const int *lwork, int *iwork, const int *liwork, int *info,
             size_t jobz_len, size_t uplo_len);

#define ROOT_P 4                 /* the root order: (.)^(-1/4) */
#define NEWTON_MAX_ITERATIONS 100
#define NEWTON_TOLERANCE 1e-10   /* stop when max|M - I| falls below this */
#define POWER_MAX_ITERATIONS 100
#define POWER_TOLERANCE 1e-7     /* relative change of the estimate */

struct matrix_root_work {
    int n_max;
    int lwork, liwork;
    double *a;          /* n x n: symmetrised copy, then eigenvectors */
    double *eigenvalues;
    double *lapack_work;
    int *lapack_iwork;
    double *m, *h, *mi, *t1, *t2;  /* Newton iterates, n x n each */
    double *v, *y;                 /* power iteration vectors */
};

matrix_root_work *matrix_root_work_create(int n_max)
{
    assert(n_max >= 1);
    matrix_root_work *work = calloc(1, sizeof *work);
    if (!work)
        return NULL;
    work->n_max = n_max;

    /* Ask dsyevd for its optimal workspace at n_max; keep at least the
     * documented minimum for jobz = 'V'. */
    double lwork_query = 0.0;
    int liwork_query = 0, query = -1, info = 0, lda = n_max;
    double dummy_a = 0.0, dummy_w = 0.0;
    dsyevd_("V", "U", &n_max, &dummy_a, &lda, &dummy_w, &lwork_query, &query, &liwork_query, &query,
            &info, 1, 1);
    if (info != 0) {
        free(work);
        return NULL;
    }
    work->lwork = 1 + 6 * n_max + 2 * n_max * n_max;
    if ((int)lwork_query > work->lwork)
        work->lwork = (int)lwork_query;
    work->liwork = 3 + 5 * n_max;
    if (liwork_query > work->liwork)
        work->liwork = liwork_query;

    size_t nn = (size_t)n_max * (size_t)n_max;
    work->a = malloc(nn * sizeof(double));
    work->eigenvalues = malloc((size_t)n_max * sizeof(double));
    work->lapack_work = malloc((size_t)work->lwork * sizeof(double));
    work->lapack_iwork = malloc((size_t)work->liwork * sizeof(int));
    work->m = malloc(5 * nn * sizeof(double));
    work->v = malloc(2 * (size_t)n_max * sizeof(double));
    if (!work->a || !work->eigenvalues || !work->lapack_work || !work->lapack_iwork || !work->m ||
        !work->v) {
        matrix_root_work_free(work);
        return NULL;
    }
    work->h = work->m + nn;
    work->mi = work->h + nn;
    work->t1 = work->mi + nn;
    work->t2 = work->t1 + nn;
    work->y = work->v + n_max;
    return work;
}

void matrix_root_work_free(matrix_root_work *work)
{
    if (!work)
        return;
    free(work->a);
    free(work->eigenvalues);
    free(work->lapack_work);
    free(work->lapack_iwork);
    free(work->m);
    free(work->v);
    free(work);
}

/* Copies the upper triangle of stat (row-major) into dst as a full matrix. */
static void symmetrize(double *dst, const double *stat, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = i; j < n; j++) {
            double x = stat[(size_t)i * n + j];
            dst[(size_t)i * n + j] = x;
            dst[(size_t)j * n + i] = x;
        }
    }
}

static int all_finite(const double *x, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static double regularizer(double matrix_eps, double lambda_max)
{
    return matrix_eps * (lambda_max > 1e-6 ? lambda_max : 1e-6);
}

static int root_eigh(matrix_root_work *work, const double *stat, int n, double matrix_eps, double *root)
{
    int info = 0, lda = n;
    double *a = work->a, *lambda = work->eigenvalues;

    symmetrize(a, stat, n);
    dsyevd_("V", "U", &n, a, &lda, lambda, work->lapack_work, &work->lwork, work->lapack_iwork,
            &work->liwork, &info, 1, 1);
    if (info != 0)
        return -1;

    /* Eigenvalues ascend, so the last is lambda_max. Scaling eigenvector j
     * (column j, column-major) by (lambda_j + e)^(-1/8) gives B with
     * B B^T = Q diag((lambda + e)^(-1/4)) Q^T. */
    double e = regularizer(matrix_eps, lambda[n - 1]);
    for (int j = 0; j < n; j++) {
        double scale = pow(lambda[j] + e, -1.0 / (2.0 * ROOT_P));
        if (!isfinite(scale))
            return -1;
        cblas_dscal(n, scale, a + (size_t)j * n, 1);
    }

    /* Build into t1 first so root stays untouched on failure. */
    double *out = work->t1;
    cblas_dsyrk(CblasColMajor, CblasUpper, CblasNoTrans, n, n, 1.0, a, n, 0.0, out, n);
    for (int j = 0; j < n; j++)
        for (int i = j + 1; i < n; i++)
            out[(size_t)j * n + i] = out[(size_t)i * n + j];
    if (!all_finite(out, (size_t)n * n))
        return -1;
    memcpy(root, out, (size_t)n * n * sizeof(double));
    return 0;
}

/* Estimates lambda_max of the symmetric positive semi-definite a by power
 * iteration from a fixed start vector with no special structure, so the
 * result is deterministic. Returns 0 for the zero matrix. */
static double power_lambda_max(matrix_root_work *work, const double *a, int n)
{
    double *v = work->v, *y = work->y;
    for (int i = 0; i < n; i++)
        v[i] = 1.0 + fmod(0.6180339887498949 * (i + 1), 1.0);
    cblas_dscal(n, 1.0 / cblas_dnrm2(n, v, 1), v, 1);

    double lambda = 0.0;
    for (int it = 0; it < POWER_MAX_ITERATIONS; it++) {
        cblas_dsymv(CblasRowMajor, CblasUpper, n, 1.0, a, n, v, 1, 0.0, y, 1);
        double norm = cblas_dnrm2(n, y, 1);
        if (!(norm > 0.0) || !isfinite(norm))
            return norm > 0.0 ? norm : 0.0;
        cblas_dscal(n, 1.0 / norm, y, 1);
        memcpy(v, y, (size_t)n * sizeof(double));
        double change = fabs(norm - lambda);
        lambda = norm;
        if (change <= POWER_TOLERANCE * lambda)
            break;
    }
    return lambda;
}

static double max_abs_minus_identity(const double *m, int n)
{
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++) {
            double d = fabs(m[(size_t)i * n + j] - (i == j ? 1.0 : 0.0));
            if (!(d <= worst))
                worst = d; /* a NaN replaces worst, so it propagates */
        }
    }
    return worst;
}

static void gemm(int n, const double *x, const double *y, double *out)
{
    cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, x, n, y, n, 0.0, out, n);
}

/* Coupled Newton for A^(-1/p), A = S + e*I: start with M = z*A and
 * H = z^(1/p) I, so that M = H^p A holds throughout; each iteration sets
 * Mi = ((p+1) I - M) / p, M = Mi^p M and H = H Mi, which drives M to I and
 * H to A^(-1/p). z = (p+1) / (2 lambda_max(A)) puts the spectrum of M in
 * (0, (p+1)/2], inside the region where the iteration converges. */
static int root_newton(matrix_root_work *work, const double *stat, int n, double matrix_eps, double *root,
                       double *residual)
{
    double *a = work->a, *m = work->m, *h = work->h, *mi = work->mi, *t1 = work->t1, *t2 = work->t2;
    size_t nn = (size_t)n * n;

    symmetrize(a, stat, n);
    double lambda_max = power_lambda_max(work, a, n);
    double e = regularizer(matrix_eps, lambda_max);
    for (int i = 0; i < n; i++)
        a[(size_t)i * n + i] += e;
    double z = (ROOT_P + 1.0) / (2.0 * (lambda_max + e));
    if (!isfinite(z) || !(z > 0.0))
        return -1;

    for (size_t i = 0; i < nn; i++) {
        m[i] = z * a[i];
        h[i] = 0.0;
    }
    for (int i = 0; i < n; i++)
        h[(size_t)i * n + i] = pow(z, 1.0 / ROOT_P);

    double err = max_abs_minus_identity(m, n);
    for (int it = 0; it < NEWTON_MAX_ITERATIONS && err > NEWTON_TOLERANCE; it++) {
        /* mi = (p+1)/p I - M/p */
        for (size_t i = 0; i < nn; i++)
            mi[i] = -m[i] / ROOT_P;
        for (int i = 0; i < n; i++)
            mi[(size_t)i * n + i] += (ROOT_P + 1.0) / ROOT_P;

        /* t2 = mi^4 M (p = 4: square twice), then the new H into t1. */
        gemm(n, mi, mi, t1);
        gemm(n, t1, t1, t2);
        gemm(n, t2, m, t1);
        double new_err = max_abs_minus_identity(t1, n);
        if (!(new_err < 1.2 * err))
            break; /* stalled at rounding level or diverging: keep the last iterate */
        memcpy(m, t1, nn * sizeof(double));
        gemm(n, h, mi, t1);
        memcpy(h, t1, nn * sizeof(double));
        err = new_err;
    }

    if (residual)
        *residual = err;
    if (!(err < MATRIX_ROOT_MAX_RESIDUAL) || !all_finite(h, nn))
        return -1;
    /* H is symmetric in exact arithmetic; average out the rounding skew. */
    for (int i = 0; i < n; i++) {
        for (int j = i; j < n; j++) {
            double x = 0.5 * (h[(size_t)i * n + j] + h[(size_t)j * n + i]);
            root[(size_t)i * n + j] = x;
            root[(size_t)j * n + i] = x;
        }
    }
    return 0;
}

int matrix_root_inverse_fourth(matrix_root_work *work, enum root_method method, const double *stat,
                               int n, double matrix_eps, double *root, double *residual)
{
    assert(n >= 1 && n <= work->n_max);
    if (residual)
        *residual = 0.0;
    if (!all_finite(stat, (size_t)n * n))
        return -1;
    if (method == ROOT_NEWTON)
        return root_newton(work, stat, n, matrix_eps, root, residual);
    return root_eigh(work, stat, n, matrix_eps, root);
}
