/* Winning-ticket arithmetic: the Wilson score interval and the group summary
 * described in tickets.h. The median uses selection (expected linear time),
 * so a 1M-trial group needs no sort.
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

int tickets_losses_add(tickets_losses *l, double loss)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        double *grown = realloc(l->v, cap * sizeof(*grown));
        if (!grown)
            return -1;
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->n++] = loss;
    return 0;
}

void tickets_losses_free(tickets_losses *l)
{
    free(l->v);
    *l = (tickets_losses){0};
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

void tickets_summarize(const tickets_counts *counts, tickets_losses *l, double threshold, tickets_summary *out)
{
    size_t n = l->n;
    double *v = l->v;
    out->completed = counts->completed;
    out->diverged = counts->diverged;
    out->failed = counts->failed;
    out->cancelled = counts->cancelled;
    out->finished = counts->completed + counts->diverged;
    out->winners = 0;
    out->best = NAN;
    out->median = NAN;
    out->has_loss = n > 0;
    if (n > 0) {
        out->best = v[0];
        uint64_t winners = 0;
        for (size_t i = 0; i < n; i++) {
            winners += v[i] < threshold;
            out->best = fmin(out->best, v[i]);
        }
        out->winners = winners;

        /* Upper middle first; for an even count the lower middle is then the
         * largest value below it. */
        select_kth(v, n, n / 2);
        out->median = v[n / 2];
        if (n % 2 == 0) {
            double lower = v[0];
            for (size_t i = 1; i < n / 2; i++)
                lower = fmax(lower, v[i]);
            out->median = (lower + out->median) / 2.0;
        }
    }
    out->fraction = out->finished ? (double)out->winners / (double)out->finished : 0.0;
    tickets_wilson(out->winners, out->finished, &out->low, &out->high);
}
