/* A minimal check macro set for the C unit tests: each failed check prints
 * its file, line and expression, and check_report() turns the count into the
 * exit status, so a test binary cannot pass with a failed check. */
#ifndef SWEEPD_CHECK_H
#define SWEEPD_CHECK_H

#include <math.h>
#include <stdio.h>
#include <string.h>

static int check_failures;
static int check_count;

#define CHECK(cond)                                                               \
    do {                                                                          \
        check_count++;                                                            \
        if (!(cond)) {                                                            \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                         \
    } while (0)

#define CHECK_STR(got, want)                                                      \
    do {                                                                          \
        const char *check_got_ = (got), *check_want_ = (want);                    \
        check_count++;                                                            \
        if (check_got_ == NULL || strcmp(check_got_, check_want_) != 0) {         \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: expected \"%s\", got \"%s\"\n", __FILE__,     \
                    __LINE__, check_want_, check_got_ ? check_got_ : "(null)");   \
        }                                                                         \
    } while (0)

/* Checks |got - want| <= tol * max(1, |want|). */
#define CHECK_NEAR(got, want, tol)                                                \
    do {                                                                          \
        double check_g_ = (got), check_w_ = (want);                               \
        double check_s_ = fabs(check_w_) > 1.0 ? fabs(check_w_) : 1.0;            \
        check_count++;                                                            \
        if (!(fabs(check_g_ - check_w_) <= (tol) * check_s_)) {                   \
            check_failures++;                                                     \
            fprintf(stderr, "%s:%d: %s = %.17g, expected %.17g (tol %g)\n",       \
                    __FILE__, __LINE__, #got, check_g_, check_w_, (double)(tol)); \
        }                                                                         \
    } while (0)

static inline int check_report(const char *suite)
{
    printf("%s: %d checks, %d failed\n", suite, check_count, check_failures);
    return check_failures == 0 ? 0 : 1;
}

#endif
