/* Winning-ticket arithmetic: the 95% Wilson score interval for a winning
 * fraction, and an accumulator that turns per-trial outcomes into the counts,
 * best and median loss of one group (the whole sweep, or one value of a
 * parameter). The SQL that feeds it lives with the daemon's storage code.
 *
 * Definitions: finished = completed + diverged; a winner is a completed trial
 * whose final validation loss is finite and below the threshold (diverged
 * trials never win); failed and cancelled trials are counted apart and are
 * not in the denominator; best and median are over finished trials with a
 * finite final loss.
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

enum tickets_outcome {
    TICKETS_COMPLETED,
    TICKETS_DIVERGED,
    TICKETS_FAILED,
    TICKETS_CANCELLED,
};

typedef struct tickets_group {
    uint64_t finished;      /* completed + diverged */
    uint64_t completed, diverged, failed, cancelled;
    uint64_t winners;
    double *losses;         /* finite final losses of finished trials */
    size_t loss_count, loss_cap;
} tickets_group;

typedef struct tickets_summary {
    uint64_t finished, completed, diverged, failed, cancelled, winners;
    double fraction;        /* winners / finished; 0 when finished == 0 */
    double low, high;       /* Wilson interval of fraction */
    int has_loss;           /* 0: best and median are undefined (NAN) */
    double best, median;    /* median of an even count is the mean of the middle two */
} tickets_summary;

void tickets_group_init(tickets_group *g);
void tickets_group_free(tickets_group *g);

/* Adds one trial with its final validation loss (ignored unless finished; any
 * double, non-finite included). Returns 0, or -1 on ENOMEM with g unchanged. */
int tickets_group_add(tickets_group *g, enum tickets_outcome outcome, double final_loss,
                      double threshold);

/* Computes the summary. Reorders g's stored losses (selection for the median)
 * but keeps them, so more trials may be added afterwards. */
void tickets_group_summary(tickets_group *g, tickets_summary *out);

#endif
