/* Sweep specs: the Weights & Biases sweep configuration as JSON, compiled into
 * a form that yields trial parameters by index. A grid is never materialised:
 * index -> point is mixed-radix arithmetic over the sorted parameters. A random
 * sweep draws trial i from a counter-based hash of (seed, i), so any process
 * gets the same parameters for the same trial. docs/SPEC.md is the reference
 * for every key, distribution, default and limit.
 */
#ifndef SWEEPD_SPEC_H
#define SWEEPD_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "json_kinds.h"

typedef struct sweep_spec sweep_spec;

/* Compiles and validates a spec object. kinds is the json_kinds table of the
 * text spec was parsed from; NULL treats integral values as integers.
 * generic != 0 skips the check that every parameter name is a trainer
 * hyperparameter. Returns 0 and sets *out (free with spec_free), or -1 with
 * err holding "<json path>: <rule>; <what would be valid>", e.g.
 * "parameters.lr.min: log_uniform_values needs min > 0, got 0; use a positive
 * min such as 1e-5". err is always NUL-terminated when err_size > 0. */
int spec_compile(const cJSON *spec, const json_kinds *kinds, int generic,
                 sweep_spec **out, char *err, size_t err_size);
void spec_free(sweep_spec *s);

enum spec_method { SPEC_GRID, SPEC_RANDOM };
enum spec_method spec_method(const sweep_spec *s);

/* Number of trials the sweep will create: grid size (capped by run_cap when
 * set) or run_cap for random. Returns 1 and sets *n when bounded, 0 when
 * unbounded (random without run_cap). Grid sizes above SPEC_MAX_GRID_POINTS
 * are rejected at compile. */
int spec_trial_count(const sweep_spec *s, uint64_t *n);

/* Parameters of trial `index` (0-based) as nested JSON (nested groups stay
 * nested, constants included). Grid: the index-th point in documented order,
 * computed arithmetically; an index past the grid wraps modulo its size.
 * Random: a deterministic function of (seed, index); grid sweeps ignore seed.
 * Caller owns the result (cJSON_Delete); NULL on ENOMEM. */
cJSON *spec_trial_params(const sweep_spec *s, uint64_t seed, uint64_t index);

/* Canonical text to store in the database; spec_compile of its re-parse (with
 * json_kinds_scan) gives the same sweep. Caller frees with cJSON_free; NULL on
 * ENOMEM. */
char *spec_canonical_text(const sweep_spec *s);

const char *spec_name(const sweep_spec *s);          /* "" when absent */
const char *spec_metric_name(const sweep_spec *s);   /* default "val_loss" */
int spec_metric_maximize(const sweep_spec *s);       /* 1 for goal maximize */
int spec_metric_target(const sweep_spec *s, double *target);   /* 1 when set */
int spec_run_cap(const sweep_spec *s, uint64_t *cap);          /* 1 when set */
/* Returns 1 and sets *seed when the spec set one; else 0, and the daemon
 * draws a seed and stores it with the sweep. */
int spec_seed(const sweep_spec *s, uint64_t *seed);
int spec_max_failures(const sweep_spec *s);     /* default 2 */
int spec_max_requeues(const sweep_spec *s);     /* default 20 */
int spec_ticket_threshold(const sweep_spec *s, double *threshold); /* 1 when set */

/* Advice found at compile that does not make the spec invalid: a normal,
 * log-normal or beta parameter whose draws can fall outside the trainer's
 * range (those trials fail when they start). Each is "<json path>: <text>".
 * Generic compiles have none. */
size_t spec_warning_count(const sweep_spec *s);
const char *spec_warning(const sweep_spec *s, size_t i);

/* Calls fn with the flattened name (nested groups joined with '.') of each
 * parameter drawn from a list of two or more values (values, or distribution
 * categorical), in grid order. Stops at the first nonzero result of fn and
 * returns it; 0 otherwise. */
typedef int (*spec_name_fn)(const char *name, void *arg);
int spec_each_categorical(const sweep_spec *s, spec_name_fn fn, void *arg);

/* Limits checked at compile (docs/SPEC.md lists them with the reasons). */
#define SPEC_MAX_DEPTH 8               /* nested parameter groups */
#define SPEC_MAX_PARAMETERS 256        /* leaves and groups in the whole spec */
#define SPEC_MAX_VALUES 1000           /* entries of one values list */
#define SPEC_MAX_GRID_POINTS (UINT64_C(1) << 63)
#define SPEC_MAX_NAME_BYTES 128        /* parameter name length */
#define SPEC_RANGE_SAMPLES 4096        /* draws that estimate an out-of-range share */
/* A flattened name: up to SPEC_MAX_DEPTH + 2 names and the dots between them. */
#define SPEC_MAX_PATH_BYTES ((SPEC_MAX_DEPTH + 2) * (SPEC_MAX_NAME_BYTES + 1) + 1)

#endif
