/* Winning-ticket arithmetic: the 95% Wilson score interval for a winning
 * fraction, and the summary of one group (the whole sweep, or one value of a
 * parameter) from its counts per finished state and the final losses of its
 * completed trials. The daemon keeps those losses in memory per sweep and
 * per cached parameter value (daemon/store.c), so a summary reads no rows.
 *
 * Definitions: finished = completed + diverged. A winner is a completed trial
 * whose final validation loss is below the threshold. Diverged trials never
 * win, and a trial reported complete with a non-finite loss is stored as
 * diverged. Failed and cancelled trials are counted apart and are not in the
 * denominator. Best and median are over completed trials.
 */
#ifndef SWEEPD_TICKETS_H
#define SWEEPD_TICKETS_H

#include <stddef.h>
#include <stdint.h>

/* z for a two-sided 95% interval: the 0.975 quantile of the standard normal. */
#define TICKETS_Z95 1.959963984540054

/* 95% Wilson score interval for k successes of n (n > 0); n == 0 gives [0, 1].
 * k > n is clamped to n. Both bounds lie in [0, 1]; k == 0 gives low 0 and
 * k == n gives high 1 exactly. */
void tickets_wilson(uint64_t k, uint64_t n, double *low, double *high);

/* Trials of one group per finished state. */
typedef struct tickets_counts {
    uint64_t completed, diverged, failed, cancelled;
} tickets_counts;

/* Final losses of a group's completed trials, all finite, in no order. */
typedef struct tickets_losses {
    double *v;
    size_t n, cap;
} tickets_losses;

typedef struct tickets_summary {
    uint64_t finished, completed, diverged, failed, cancelled, winners;
    double fraction;        /* winners / finished; 0 when finished == 0 */
    double low, high;       /* Wilson interval of fraction */
    int has_loss;           /* 0: best and median are undefined (NAN) */
    double best, median;    /* median of an even count is the mean of the middle two */
} tickets_summary;

/* Appends loss (finite). Returns 0, or -1 on ENOMEM with l unchanged. */
int tickets_losses_add(tickets_losses *l, double loss);
void tickets_losses_free(tickets_losses *l);

/* Computes the summary at threshold in time linear in l->n. Reorders l->v
 * (selection for the median) without changing its values, so losses may be
 * added afterwards. */
void tickets_summarize(const tickets_counts *counts, tickets_losses *l, double threshold, tickets_summary *out);

#endif
