/* The compiled form of a sweep spec, shared by spec.c (parsing and
 * validation) and spec_sample.c (grid points and random draws). Only these
 * two files include it; the daemon uses the opaque API in spec.h.
 */
#ifndef SWEEPD_SPEC_IMPL_H
#define SWEEPD_SPEC_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "spec.h"

enum spec_dist {
    DIST_CONSTANT,
    DIST_CATEGORICAL,
    DIST_INT_UNIFORM,
    DIST_UNIFORM,
    DIST_Q_UNIFORM,
    DIST_LOG_UNIFORM_VALUES,
    DIST_Q_LOG_UNIFORM_VALUES,
    DIST_INV_LOG_UNIFORM_VALUES,
    DIST_LOG_UNIFORM,
    DIST_Q_LOG_UNIFORM,
    DIST_INV_LOG_UNIFORM,
    DIST_NORMAL,
    DIST_Q_NORMAL,
    DIST_LOG_NORMAL,
    DIST_Q_LOG_NORMAL,
    DIST_BETA,
    DIST_Q_BETA,
    DIST_COUNT
};

/* One parameter: a group (nested "parameters") or a leaf with a
 * distribution. A group's children are sorted by name (strcmp order). */
struct spec_node {
    char *name;
    int is_group;
    struct spec_node *children;
    size_t child_count;

    /* Leaves only. */
    enum spec_dist dist;
    size_t leaf_index;          /* position in sweep_spec.leaves */
    cJSON *values_doc;          /* owned copy of value / values */
    const cJSON **values;       /* constant: 1 entry; categorical: the list
                                 * (grid: with duplicates removed) */
    size_t value_count;
    double *cumulative;         /* categorical with probabilities: running sums */
    double min, max;            /* int_uniform, uniform and log forms */
    double mu, sigma;           /* normal forms */
    double a, b;                /* beta forms */
    double q;                   /* quantised forms; 1 by default */
    uint64_t grid_points;       /* grid: number of points of this leaf */
};

struct sweep_spec {
    enum spec_method method;
    struct spec_node root;          /* the top-level "parameters" group */
    struct spec_node **leaves;      /* every leaf in grid order: names sorted at
                                     * each level, depth first */
    size_t leaf_count;
    uint64_t grid_size;             /* grid: product of grid_points */
    char *canonical;                /* compact JSON, kinds preserved */
    char *name;
    char *metric_name;
    int maximize;
    int has_target, has_run_cap, has_seed, has_threshold;
    double target, threshold;
    uint64_t run_cap, seed;
    int max_failures, max_requeues;
    char **warnings;                /* submit-time advice, not errors */
    size_t warning_count;
};

/* Draw `index` of a numeric leaf (every distribution but constant and
 * categorical) from a stream keyed by seed, as random sweeps draw it. */
double spec_leaf_draw(const struct spec_node *leaf, uint64_t seed, uint64_t index);

/* Rounds v to a multiple of q, then to 15 significant digits when that moves
 * it by less than 1e-14 relative, so 3 x 0.1 gives 0.3 and not
 * 0.30000000000000004. */
double spec_quantise(double v, double q);

/* Number of q_uniform grid points: the k >= 0 with min + k q < max. Returns 0
 * when the count is not below 2^53. */
uint64_t spec_q_grid_points(double min, double max, double q);

/* Compares two JSON values for grid de-duplication: numbers by value (1 and
 * 1.0 are equal, and so are 0 and -0), everything else structurally. */
int spec_values_equal(const cJSON *a, const cJSON *b);

#endif
