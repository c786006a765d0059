/* Winning-ticket arithmetic: Wilson intervals against bounds computed
 * independently (the roots of (n + z^2) p^2 - (2k + z^2) p + k^2/n = 0 in
 * 40-digit decimal arithmetic), and the group accumulator's counts, best and
 * median against a sort.
 */
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "tickets.h"

static void test_wilson_reference(void)
{
    static const struct {
        uint64_t k, n;
        double low, high;
    } ref[] = {
        { 7, 1900, 0.0017857730444911771, 0.0075855213655726455 },
        { 255, 2200, 0.10319694939962284, 0.12996023019879424 },
        { 0, 50, 0.0, 0.071347599133358711 },
        { 50, 50, 0.92865240086664125, 1.0 },
        { 1, 1, 0.20654931437723742, 1.0 },
        { 3, 10, 0.10779126740630103, 0.60322185253885463 },
    };

    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        double low = -1, high = -1;
        tickets_wilson(ref[i].k, ref[i].n, &low, &high);
        CHECK_NEAR(low, ref[i].low, 1e-12);
        CHECK_NEAR(high, ref[i].high, 1e-12);
    }
}

static void test_wilson_edges(void)
{
    double low = -1, high = -1;

    tickets_wilson(0, 0, &low, &high);
    CHECK(low == 0.0);
    CHECK(high == 1.0);
    tickets_wilson(0, 1000, &low, &high);
    CHECK(low == 0.0);
    CHECK(high > 0.0);
    CHECK(high < 0.01);
    tickets_wilson(1000, 1000, &low, &high);
    CHECK(high == 1.0);
    CHECK(low > 0.99);
    CHECK(low < 1.0);
    /* k > n is clamped to n. */
    tickets_wilson(9, 5, &low, &high);
    CHECK(high == 1.0);
    /* Intervals contain the point estimate and narrow as n grows. */
    double l1, h1, l2, h2;
    tickets_wilson(10, 100, &l1, &h1);
    tickets_wilson(1000, 10000, &l2, &h2);
    CHECK(l1 < 0.1);
    CHECK(h1 > 0.1);
    CHECK(l2 < 0.1);
    CHECK(h2 > 0.1);
    CHECK(h2 - l2 < h1 - l1);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_group_counts(void)
{
    tickets_group g;
    tickets_summary sum;

    tickets_group_init(&g);
    CHECK(tickets_group_add(&g, TICKETS_COMPLETED, 1.0, 2.0) == 0); /* winner */
    CHECK(tickets_group_add(&g, TICKETS_COMPLETED, 3.0, 2.0) == 0);
    CHECK(tickets_group_add(&g, TICKETS_COMPLETED, 2.0, 2.0) == 0); /* not below */
    CHECK(tickets_group_add(&g, TICKETS_DIVERGED, 0.5, 2.0) == 0);  /* never wins */
    CHECK(tickets_group_add(&g, TICKETS_DIVERGED, NAN, 2.0) == 0);
    CHECK(tickets_group_add(&g, TICKETS_COMPLETED, -INFINITY, 2.0) == 0); /* not finite */
    CHECK(tickets_group_add(&g, TICKETS_FAILED, 0.1, 2.0) == 0);
    CHECK(tickets_group_add(&g, TICKETS_CANCELLED, 0.1, 2.0) == 0);
    tickets_group_summary(&g, &sum);

    CHECK(sum.finished == 6);
    CHECK(sum.completed == 4);
    CHECK(sum.diverged == 2);
    CHECK(sum.failed == 1);
    CHECK(sum.cancelled == 1);
    CHECK(sum.winners == 1);
    CHECK_NEAR(sum.fraction, 1.0 / 6.0, 1e-15);
    double low, high;
    tickets_wilson(1, 6, &low, &high);
    CHECK(sum.low == low);
    CHECK(sum.high == high);
    /* Finite losses of finished trials: 1, 3, 2, 0.5 -> best 0.5, median 1.5. */
    CHECK(sum.has_loss == 1);
    CHECK(sum.best == 0.5);
    CHECK_NEAR(sum.median, 1.5, 1e-15);
    tickets_group_free(&g);

    /* An empty group. */
    tickets_group_init(&g);
    tickets_group_summary(&g, &sum);
    CHECK(sum.finished == 0);
    CHECK(sum.fraction == 0.0);
    CHECK(sum.low == 0.0);
    CHECK(sum.high == 1.0);
    CHECK(sum.has_loss == 0);
    CHECK(isnan(sum.best));
    CHECK(isnan(sum.median));
    tickets_group_free(&g);
}

static void test_group_median_matches_sort(void)
{
    uint64_t x = 12345;

    for (size_t n = 1; n <= 301; n += 15) {
        tickets_group g;
        tickets_summary sum;
        double *copy = malloc(n * sizeof(*copy));

        CHECK(copy != NULL);
        if (!copy)
            return;
        tickets_group_init(&g);
        for (size_t i = 0; i < n; i++) {
            /* xorshift64, with repeated values (mod 37) to exercise ties. */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[i] = (double)(x % 37) / 4.0;
            CHECK(tickets_group_add(&g, TICKETS_COMPLETED, copy[i], 3.0) == 0);
        }
        tickets_group_summary(&g, &sum);
        qsort(copy, n, sizeof(*copy), compare_doubles);
        double median = n % 2 ? copy[n / 2] : (copy[n / 2 - 1] + copy[n / 2]) / 2.0;
        CHECK(sum.median == median);
        CHECK(sum.best == copy[0]);
        /* The summary can be taken again after more trials. */
        CHECK(tickets_group_add(&g, TICKETS_COMPLETED, -1.0, 3.0) == 0);
        tickets_group_summary(&g, &sum);
        CHECK(sum.best == -1.0);
        tickets_group_free(&g);
        free(copy);
    }
}

int main(void)
{
    test_wilson_reference();
    test_wilson_edges();
    test_group_counts();
    test_group_median_matches_sort();
    return check_report("test_tickets");
}
