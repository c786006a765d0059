/* Inverse fourth roots of symmetric positive semi-definite matrices, for
 * Shampoo's preconditioners, in double precision.
 *
 * Two methods: eigh (LAPACK dsyevd, then Q diag((lambda + e)^(-1/4)) Q^T
 * built with one dsyrk) and newton (the coupled Newton iteration of Guo and
 * Higham, four GEMMs per iteration, with a residual check). Both regularise
 * with e = matrix_eps * max(lambda_max, 1e-6). A workspace sized for the
 * largest matrix is allocated once; the calls allocate nothing.
 */
#ifndef SWEEPD_MATRIX_ROOT_H
#define SWEEPD_MATRIX_ROOT_H

#include "hparams.h"

/* Newton results whose residual max|M - I| reaches this are rejected. */
#define MATRIX_ROOT_MAX_RESIDUAL 0.1

typedef struct matrix_root_work matrix_root_work;

/* Allocates a workspace for matrices up to n_max x n_max. Returns NULL when
 * out of memory or when LAPACK's workspace query fails. */
matrix_root_work *matrix_root_work_create(int n_max);
void matrix_root_work_free(matrix_root_work *work);

/* Computes root = (S + e*I)^(-1/4) for the n x n symmetric matrix S, of which
 * only the upper triangle (row-major, i <= j) is read, with
 * e = matrix_eps * max(lambda_max(S), 1e-6). root (n x n) is written in full.
 * Returns 0 on success, or -1 when the eigensolver failed, the result is not
 * finite, or Newton's residual is >= MATRIX_ROOT_MAX_RESIDUAL; root is left
 * untouched then. *residual (may be NULL) receives Newton's final
 * max|M - I|, or 0 for eigh. n must not exceed the workspace's n_max. */
int matrix_root_inverse_fourth(matrix_root_work *work, enum root_method method, const double *stat,
                               int n, double matrix_eps, double *root, double *residual);

#endif
