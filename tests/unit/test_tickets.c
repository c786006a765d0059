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
    tickets_counts counts = {.completed = 3, .diverged = 2, .failed = 1, .cancelled = 1};
    tickets_losses losses = {0};
    tickets_summary sum;

    CHECK(tickets_losses_add(&losses, 1.0) == 0); /* winner */
    CHECK(tickets_losses_add(&losses, 3.0) == 0);
    CHECK(tickets_losses_add(&losses, 2.0) == 0); /* not below the threshold */
    tickets_summarize(&counts, &losses, 2.0, &sum);

    CHECK(sum.finished == 5);
    CHECK(sum.completed == 3);
    CHECK(sum.diverged == 2);
    CHECK(sum.failed == 1);
    CHECK(sum.cancelled == 1);
    CHECK(sum.winners == 1);
    CHECK_NEAR(sum.fraction, 1.0 / 5.0, 1e-15);
    double low, high;
    tickets_wilson(1, 5, &low, &high);
    CHECK(sum.low == low);
    CHECK(sum.high == high);
    /* Completed losses 1, 3, 2: best 1, median 2. */
    CHECK(sum.has_loss == 1);
    CHECK(sum.best == 1.0);
    CHECK(sum.median == 2.0);

    /* The threshold applies at query time: the same losses, another one. */
    tickets_summarize(&counts, &losses, 3.5, &sum);
    CHECK(sum.winners == 3);
    tickets_summarize(&counts, &losses, 1.0, &sum);
    CHECK(sum.winners == 0);
    /* The multiset is kept across summaries. */
    CHECK(losses.n == 3);
    CHECK(losses.v[0] + losses.v[1] + losses.v[2] == 6.0);
    tickets_losses_free(&losses);
    CHECK(losses.v == NULL);

    /* Finished trials that are all diverged: no loss, no winner. */
    tickets_counts diverged_only = {.diverged = 4};
    tickets_summarize(&diverged_only, &losses, 10.0, &sum);
    CHECK(sum.finished == 4);
    CHECK(sum.winners == 0);
    CHECK(sum.fraction == 0.0);
    CHECK(sum.has_loss == 0);
    CHECK(isnan(sum.best));

    /* An empty group. */
    tickets_counts none = {0};
    tickets_summarize(&none, &losses, 2.0, &sum);
    CHECK(sum.finished == 0);
    CHECK(sum.fraction == 0.0);
    CHECK(sum.low == 0.0);
    CHECK(sum.high == 1.0);
    CHECK(sum.has_loss == 0);
    CHECK(isnan(sum.best));
    CHECK(isnan(sum.median));
}

static void test_group_median_matches_sort(void)
{
    uint64_t x = 12345;

    for (size_t n = 1; n <= 301; n += 15) {
        tickets_losses losses = {0};
        tickets_summary sum;
        double *copy = malloc(n * sizeof(*copy));

        CHECK(copy != NULL);
        if (!copy)
            return;
        size_t below = 0;
        for (size_t i = 0; i < n; i++) {
            /* xorshift64, with repeated values (mod 37) to exercise ties. */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[i] = (double)(x % 37) / 4.0;
            below += copy[i] < 3.0;
            CHECK(tickets_losses_add(&losses, copy[i]) == 0);
        }
        tickets_counts counts = {.completed = n};
        tickets_summarize(&counts, &losses, 3.0, &sum);
        qsort(copy, n, sizeof(*copy), compare_doubles);
        double median = n % 2 ? copy[n / 2] : (copy[n / 2 - 1] + copy[n / 2]) / 2.0;
        CHECK(sum.median == median);
        CHECK(sum.best == copy[0]);
        CHECK(sum.winners == below);
        /* The summary can be taken again after more trials. */
        CHECK(tickets_losses_add(&losses, -1.0) == 0);
        counts.completed++;
        tickets_summarize(&counts, &losses, 3.0, &sum);
        CHECK(sum.best == -1.0);
        CHECK(sum.winners == below + 1);
        tickets_losses_free(&losses);
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
