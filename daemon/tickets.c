/* Winning-ticket arithmetic: the Wilson score interval and the per-group
 * accumulator described in tickets.h. The median uses selection (expected
 * linear time), so a 1M-trial group needs no sort.
 */
#include "tickets.h"

#include <math.h>
#include <stdlib.h>

void tickets_wilson(uint64_t k, uint64_t n, double *low, double *high)
{
    const double z = TICKETS_Z95;
    double nd, p, z2n, denom, center, half;

    if (n == 0) {
        *low = 0.0;
        *high = 1.0;
        return;
    }
    if (k > n)
        k = n;

    /* center = (p + z^2/2n) / (1 + z^2/n),
     * half   = z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n). */
    nd = (double)n;
    p = (double)k / nd;
    z2n = z * z / nd;
    denom = 1.0 + z2n;
    center = (p + z2n / 2.0) / denom;
    half = z * sqrt(p * (1.0 - p) / nd + z2n / (4.0 * nd)) / denom;

    *low = k == 0 ? 0.0 : fmax(0.0, center - half);
    *high = k == n ? 1.0 : fmin(1.0, center + half);
}

void tickets_group_init(tickets_group *g)
{
    *g = (tickets_group){ 0 };
}

void tickets_group_free(tickets_group *g)
{
    free(g->losses);
    *g = (tickets_group){ 0 };
}

int tickets_group_add(tickets_group *g, enum tickets_outcome outcome, double final_loss,
                      double threshold)
{
    int finished = outcome == TICKETS_COMPLETED || outcome == TICKETS_DIVERGED;

    /* Grow first so a failed allocation leaves every count unchanged. */
    if (finished && isfinite(final_loss) && g->loss_count == g->loss_cap) {
        size_t cap = g->loss_cap ? g->loss_cap * 2 : 64;
        double *grown = realloc(g->losses, cap * sizeof(*grown));
        if (!grown)
            return -1;
        g->losses = grown;
        g->loss_cap = cap;
    }

    switch (outcome) {
    case TICKETS_COMPLETED:
        g->completed++;
        if (isfinite(final_loss) && final_loss < threshold)
            g->winners++;
        break;
    case TICKETS_DIVERGED:
        g->diverged++;
        break;
    case TICKETS_FAILED:
        g->failed++;
        break;
    case TICKETS_CANCELLED:
        g->cancelled++;
        break;
    }
    if (finished) {
        g->finished++;
        if (isfinite(final_loss))
            g->losses[g->loss_count++] = final_loss;
    }
    return 0;
}

/* Moves the k-th smallest of v[0..n) to v[k], with no larger value before it
 * and no smaller value after it (Wirth's selection with Hoare partitioning).
 * Signed indices, because j may step below lo. */
static void select_kth(double *v, size_t n, size_t k_index)
{
    ptrdiff_t lo = 0, hi = (ptrdiff_t)n - 1, k = (ptrdiff_t)k_index;

    while (lo < hi) {
        double pivot = v[k];
        ptrdiff_t i = lo, j = hi;

        do {
            while (v[i] < pivot)
                i++;
            while (pivot < v[j])
                j--;
            if (i <= j) {
                double t = v[i];
                v[i] = v[j];
                v[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < k)
            lo = i;
        if (k < i)
            hi = j;
    }
}

void tickets_group_summary(tickets_group *g, tickets_summary *out)
{
    size_t n = g->loss_count;

    out->finished = g->finished;
    out->completed = g->completed;
    out->diverged = g->diverged;
    out->failed = g->failed;
    out->cancelled = g->cancelled;
    out->winners = g->winners;
    out->fraction = g->finished ? (double)g->winners / (double)g->finished : 0.0;
    tickets_wilson(g->winners, g->finished, &out->low, &out->high);

    out->has_loss = n > 0;
    out->best = NAN;
    out->median = NAN;
    if (n == 0)
        return;

    out->best = g->losses[0];
    for (size_t i = 1; i < n; i++)
        out->best = fmin(out->best, g->losses[i]);

    /* Upper middle first; for an even count the lower middle is then the
     * largest value below it. */
    select_kth(g->losses, n, n / 2);
    out->median = g->losses[n / 2];
    if (n % 2 == 0) {
        double lower = g->losses[0];
        for (size_t i = 1; i < n / 2; i++)
            lower = fmax(lower, g->losses[i]);
        out->median = (lower + out->median) / 2.0;
    }
}
