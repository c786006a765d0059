/* Hyperparameters of one training run: the config struct, and the table that
 * names every field with its type, default, allowed range and meaning.
 *
 * The table is the single list of names that sweep specs, `sweep-train --set`
 * and checkpoints use. It has no BLAS dependency, so the daemon links it to
 * validate sweep specs. Optimizer defaults differ per optimizer (adam lr 1e-3,
 * sm3 lr 0.1, ...): fields the user did not set are filled in by
 * train_config_finalize() once the optimizer is known.
 */
#ifndef SWEEPD_HPARAMS_H
#define SWEEPD_HPARAMS_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

enum lr_schedule { LR_CONSTANT = 0, LR_COSINE, LR_LINEAR };
enum optimizer_kind { OPT_ADAM = 0, OPT_ADAMW, OPT_SM3, OPT_SHAMPOO };
enum graft_kind { GRAFT_ADAM = 0, GRAFT_SM3, GRAFT_SGD, GRAFT_ADAGRAD, GRAFT_RMSPROP, GRAFT_NONE };
enum root_method { ROOT_EIGH = 0, ROOT_NEWTON };

#define HPARAM_DATASET_MAX 1024

typedef struct train_config {
    /* model */
    int n_layer, d_model, n_head, seq_len;
    /* run */
    int batch_size;
    long steps;
    uint64_t seed;
    double lr;                  /* peak learning rate */
    long warmup_steps;          /* linear warm-up from 0 to lr */
    enum lr_schedule lr_schedule;
    double grad_clip;           /* global L2 norm; 0 disables clipping */
    long eval_every;            /* steps between validation evaluations */
    int eval_batches;           /* validation set = eval_batches x batch_size windows */
    char dataset[HPARAM_DATASET_MAX];  /* path, or URL resolved by the worker */
    char dataset_sha256[65];    /* optional lowercase hex digest; "" = not checked */
    enum optimizer_kind optimizer;
    /* optimizers */
    double b1, b2, eps, weight_decay;
    double matrix_eps;
    int block_size, precondition_every, start_preconditioning_step, max_precond_dim;
    enum graft_kind graft;
    double graft_beta2, graft_eps;
    int nesterov;
    enum root_method root_method;
    int precondition_async;     /* shampoo: roots computed off the critical path, one period late */
    /* When set, b1 = 1 - one_minus_b1 and b2 = 1 - one_minus_b2 (at finalize). */
    double one_minus_b1, one_minus_b2;
    /* One bit per table entry (bit i = hparam_table[i]) set by the user. */
    uint64_t set_mask;
    /* Entries set by an optimizer-scoped name (OPT.NAME) for this run's
     * optimizer; an unscoped name no longer changes them. */
    uint64_t scoped_mask;
} train_config;

enum hparam_type { HP_INT, HP_FLOAT, HP_STRING, HP_ENUM, HP_BOOL };

typedef struct hparam_info {
    const char *name;
    enum hparam_type type;
    const char *default_text;   /* as shown in --help; "(per optimizer)" where it varies */
    double min, max;            /* inclusive numeric range (HP_INT, HP_FLOAT) */
    const char *choices;        /* HP_ENUM: "adam|adamw|sm3|shampoo" */
    const char *description;    /* one line */
    const char *applies_to;     /* NULL = every run, else e.g. "shampoo" */
} hparam_info;

/* The table, in --help order. */
const hparam_info *hparam_table(size_t *count);

/* Returns the entry named name, or NULL. An optimizer-scoped name OPT.NAME
 * (e.g. "shampoo.b2") returns NAME's entry when OPT is an optimizer. */
const hparam_info *hparam_find(const char *name);

/* Returns the table name closest to name by edit distance (for "did you
 * mean"), our name for a common alias such as learning_rate, or NULL when
 * nothing is close. For OPT.NAME it suggests both parts; that result is in
 * a per-thread buffer valid until the next call. */
const char *hparam_suggest(const char *name);

/* Fills cfg with the defaults that do not depend on the optimizer. */
void train_config_defaults(train_config *cfg);

/* Sets one hyperparameter from text (as in --set name=value). Returns 0, or
 * -1 with a message in err naming the parameter, the value and the allowed
 * range or choices. OPT.NAME needs optimizer to be set first; it applies only
 * when the optimizer is OPT, and then an unscoped NAME no longer changes the
 * field. The value is checked either way. */
int train_config_set(train_config *cfg, const char *name, const char *value, char *err, size_t err_size);

/* Sets every member of a JSON object (numbers, strings, booleans; nested
 * objects are flattened by leaf name, see docs/SPEC.md). Unknown names are an
 * error. Key order does not matter: optimizer is set first, then the
 * unscoped names, then the OPT.NAME ones. Returns 0 or -1 with err set. */
int train_config_set_json(train_config *cfg, const struct cJSON *params, char *err, size_t err_size);

/* Fills unset optimizer-dependent fields with that optimizer's defaults and
 * checks cross-field rules (d_model divisible by n_head, warmup_steps <= steps,
 * ...). Returns 0 or -1 with err set. */
int train_config_finalize(train_config *cfg, char *err, size_t err_size);

/* Writes cfg as a JSON object with every table field except one_minus_b1
 * and one_minus_b2, whose effect b1 and b2 carry (for checkpoints and
 * summaries). Returns a new object owned by the caller, or NULL on ENOMEM. */
struct cJSON *train_config_to_json(const train_config *cfg);

const char *optimizer_name(enum optimizer_kind kind);

#endif
