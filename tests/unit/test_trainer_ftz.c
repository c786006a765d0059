/* FTZ/DAZ on every thread that trains: after trainer_process_init() and
 * trainer_thread_setup(2), an sgemm large enough for OpenBLAS to split across
 * its threads reads denormal inputs as zero on all of them. Without the
 * re-exec, OpenBLAS's load-time thread computes its share with the default
 * MXCSR and half of the result is non-zero. */
#include <cblas.h>
#include <stdlib.h>

#include "check.h"
#include "trainer.h"

int main(int argc, char **argv)
{
    (void)argc;
    CHECK(trainer_process_init(argv) == 0);
    trainer_thread_setup(2);

    /* C (512 x 512) = A (512 x 64, every entry 1e-39, a denormal) x B (ones).
     * With DAZ every entry of C is 0; without it each is 64e-39, a normal. */
    const int m = 512, n = 512, k = 64;
    float *a = malloc(sizeof(float) * (size_t)m * k);
    float *b = malloc(sizeof(float) * (size_t)k * n);
    float *c = calloc((size_t)m * n, sizeof(float));
    CHECK(a != NULL && b != NULL && c != NULL);
    if (a == NULL || b == NULL || c == NULL)
        return check_report("test_trainer_ftz");
    for (size_t i = 0; i < (size_t)m * k; i++)
        a[i] = 1e-39f;
    for (size_t i = 0; i < (size_t)k * n; i++)
        b[i] = 1.0f;

    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);

    size_t nonzero = 0;
    for (size_t i = 0; i < (size_t)m * n; i++)
        nonzero += c[i] != 0.0f;
    if (nonzero != 0)
        fprintf(stderr, "%zu of %d entries were computed without DAZ\n", nonzero, m * n);
    CHECK(nonzero == 0);

    free(a);
    free(b);
    free(c);
    return check_report("test_trainer_ftz");
}
