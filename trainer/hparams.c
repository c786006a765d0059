/* The hyperparameter table: every name a sweep spec, `sweep-train --set` or a
 * checkpoint may use, with its type, default, inclusive range and meaning,
 * plus parsing, per-optimizer defaults and cross-field checks.
 *
 * One X-macro list generates both the public table (hparam_info) and the
 * private field bindings, so the two cannot drift apart. This file links no
 * BLAS: the daemon uses it to validate sweep specs.
 */
#include "hparams.h"

#include <cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How a table entry is stored in train_config. */
enum field_kind { F_INT, F_LONG, F_U64, F_DOUBLE, F_STRING, F_ENUM, F_BOOL };

/* 2^53: the largest integer a JSON number (double) carries exactly. */
#define MAX_EXACT 9007199254740992.0

#define OPT_ONLY "adam|adamw|sm3|shampoo"

/* X(name, type, field kind, member, default text, min, max, choices, applies_to, description) */
#define HPARAMS(X)                                                                                      \
    X(n_layer, HP_INT, F_INT, n_layer, "2", 1, 64, NULL, NULL, "number of transformer blocks")          \
    X(d_model, HP_INT, F_INT, d_model, "64", 2, 4096, NULL, NULL,                                       \
      "width of the residual stream; must be divisible by n_head")                                      \
    X(n_head, HP_INT, F_INT, n_head, "4", 1, 256, NULL, NULL, "attention heads per block")              \
    X(seq_len, HP_INT, F_INT, seq_len, "64", 2, 8192, NULL, NULL, "context length in bytes")            \
    X(batch_size, HP_INT, F_INT, batch_size, "16", 1, 65536, NULL, NULL, "sequences per training step") \
    X(steps, HP_INT, F_LONG, steps, "1000", 1, 1e9, NULL, NULL, "optimizer steps in the run")           \
    X(seed, HP_INT, F_U64, seed, "1", 0, MAX_EXACT, NULL, NULL,                                         \
      "seed of the initial weights and of the batch sampler")                                           \
    X(lr, HP_FLOAT, F_DOUBLE, lr, "(per optimizer)", 0, 10, NULL, NULL,                                 \
      "peak learning rate, reached at the end of warm-up")                                              \
    X(warmup_steps, HP_INT, F_LONG, warmup_steps, "0", 0, 1e9, NULL, NULL,                              \
      "steps of linear warm-up from 0 to lr; at most steps")                                            \
    X(lr_schedule, HP_ENUM, F_ENUM, lr_schedule, "cosine", 0, 0, "constant|cosine|linear", NULL,        \
      "learning rate after warm-up: constant, or cosine / linear decay to 0 at the last step")          \
    X(grad_clip, HP_FLOAT, F_DOUBLE, grad_clip, "1", 0, 1e6, NULL, NULL,                                \
      "maximum global L2 norm of the gradients; 0 disables clipping")                                   \
    X(eval_every, HP_INT, F_LONG, eval_every, "100", 1, 1e9, NULL, NULL,                                \
      "steps between validation evaluations (the last step is always evaluated)")                       \
    X(eval_batches, HP_INT, F_INT, eval_batches, "8", 1, 100000, NULL, NULL,                            \
      "validation set size, in batches of batch_size windows")                                          \
    X(dataset, HP_STRING, F_STRING, dataset, "(none)", 0, 0, NULL, NULL,                                \
      "text file read as raw bytes (path, or URL resolved by the worker)")                              \
    X(dataset_sha256, HP_STRING, F_STRING, dataset_sha256, "(none)", 0, 0, NULL, NULL,                  \
      "expected SHA-256 of the dataset, 64 lowercase hex digits; checked by the worker")                \
    X(optimizer, HP_ENUM, F_ENUM, optimizer, "adam", 0, 0, OPT_ONLY, NULL, "optimizer")                 \
    X(b1, HP_FLOAT, F_DOUBLE, b1, "0.9", 0, 0.999999, NULL, NULL, "momentum / first-moment decay")      \
    X(b2, HP_FLOAT, F_DOUBLE, b2, "(per optimizer)", 0, 1, NULL, NULL,                                  \
      "second-moment decay (adam .999, sm3 1.0, shampoo statistics .999)")                              \
    X(eps, HP_FLOAT, F_DOUBLE, eps, "1e-8", 0, 1, NULL, "adam|adamw|sm3", "denominator epsilon")        \
    X(weight_decay, HP_FLOAT, F_DOUBLE, weight_decay, "(per optimizer)", 0, 1, NULL, NULL,              \
      "weight decay (adam: coupled L2; adamw, sm3, shampoo: decoupled); adamw 0.01, others 0")          \
    X(matrix_eps, HP_FLOAT, F_DOUBLE, matrix_eps, "1e-6", 0, 1, NULL, "shampoo",                        \
      "initial statistic diagonal and relative damping of the inverse roots")                           \
    X(block_size, HP_INT, F_INT, block_size, "128", 1, 65536, NULL, "shampoo",                          \
      "matrices are split into blocks of at most block_size x block_size")                              \
    X(precondition_every, HP_INT, F_INT, precondition_every, "10", 1, 1e9, NULL, "shampoo",             \
      "steps between recomputations of the inverse 4th roots")                                          \
    X(start_preconditioning_step, HP_INT, F_INT, start_preconditioning_step, "1", 0, 1e9, NULL,         \
      "shampoo", "first step (0-based) that uses the preconditioned direction")                         \
    X(graft, HP_ENUM, F_ENUM, graft, "adam", 0, 0, "adam|sm3|sgd|adagrad|rmsprop|none", "shampoo",      \
      "optimizer whose step norm the Shampoo direction takes")                                          \
    X(graft_beta2, HP_FLOAT, F_DOUBLE, graft_beta2, "(b2)", 0, 1, NULL, "shampoo",                      \
      "second-moment decay of the graft optimizer; defaults to b2")                                     \
    X(graft_eps, HP_FLOAT, F_DOUBLE, graft_eps, "1e-10", 0, 1, NULL, "shampoo",                         \
      "denominator epsilon of the graft optimizer")                                                     \
    X(nesterov, HP_BOOL, F_BOOL, nesterov, "true", 0, 1, NULL, "shampoo", "use Nesterov momentum")      \
    X(root_method, HP_ENUM, F_ENUM, root_method, "eigh", 0, 0, "eigh|newton", "shampoo",                \
      "inverse root by LAPACK symmetric eigensolver or coupled Newton iteration")                       \
    X(max_precond_dim, HP_INT, F_INT, max_precond_dim, "4096", 1, 1e6, NULL, "shampoo",                 \
      "matrices with a side longer than this use the graft direction only")                             \
    X(precondition_async, HP_BOOL, F_BOOL, precondition_async, "false", 0, 1, NULL, "shampoo",          \
      "compute the roots on a background thread and install them one precondition_every later")        \
    X(one_minus_b1, HP_FLOAT, F_DOUBLE, one_minus_b1, "(unset)", 0, 1, NULL, NULL,                      \
      "sets b1 = 1 - one_minus_b1, for log-uniform sampling; must be > 0; not with b1")                  \
    X(one_minus_b2, HP_FLOAT, F_DOUBLE, one_minus_b2, "(unset)", 0, 1, NULL, NULL,                      \
      "sets b2 = 1 - one_minus_b2, for log-uniform sampling; must be > 0; not with b2")

#define AS_INFO(name_, type_, kind_, member_, def_, min_, max_, choices_, applies_, desc_) \
    {#name_, type_, def_, min_, max_, choices_, desc_, applies_},
static const hparam_info table[] = {HPARAMS(AS_INFO)};

typedef struct field_binding {
    enum field_kind kind;
    size_t offset;
    size_t size;
} field_binding;

#define AS_BINDING(name_, type_, kind_, member_, def_, min_, max_, choices_, applies_, desc_) \
    {kind_, offsetof(train_config, member_), sizeof(((train_config *)0)->member_)},
static const field_binding bindings[] = {HPARAMS(AS_BINDING)};

#define TABLE_COUNT (sizeof(table) / sizeof(table[0]))
_Static_assert(TABLE_COUNT <= 64, "set_mask has one bit per table entry");

const hparam_info *hparam_table(size_t *count)
{
    *count = TABLE_COUNT;
    return table;
}

static long find_index(const char *name)
{
    for (size_t i = 0; i < TABLE_COUNT; i++)
        if (strcmp(table[i].name, name) == 0)
            return (long)i;
    return -1;
}

static int choice_index(const char *choices, const char *value);

/* Maximum length of an optimizer name, plus its terminating NUL. */
#define SCOPE_MAX 16

/* Splits an optimizer-scoped name "OPT.NAME" into the optimizer and NAME's
 * table index. Returns 0, or -1 when name is not one: no '.', OPT is not an
 * optimizer, or NAME is not in the table or is "optimizer" itself. */
static int split_scoped(const char *name, enum optimizer_kind *kind, long *index)
{
    const char *dot = strchr(name, '.');
    char scope[SCOPE_MAX];

    if (dot == NULL || (size_t)(dot - name) >= sizeof(scope))
        return -1;
    memcpy(scope, name, (size_t)(dot - name));
    scope[dot - name] = '\0';
    int k = choice_index(OPT_ONLY, scope);
    long i = find_index(dot + 1);
    if (k < 0 || i < 0 || strcmp(dot + 1, "optimizer") == 0)
        return -1;
    *kind = (enum optimizer_kind)k;
    *index = i;
    return 0;
}

const hparam_info *hparam_find(const char *name)
{
    enum optimizer_kind kind;
    long i = find_index(name);

    if (i < 0 && split_scoped(name, &kind, &i) != 0)
        return NULL;
    return &table[i];
}

/* Levenshtein distance of two short strings; names longer than 63 bytes are
 * compared by their first 63. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, 63), lb = strnlen(b, 63);
    size_t prev[64], cur[64];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = prev[j - 1] + cost;
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            cur[j] = best;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

/* Returns the closest of the '|'-separated choices, or of the table names
 * when choices is NULL, or NULL when none is close: at most a third of the
 * name changed, and at least one edit allowed. */
static const char *closest_name(const char *name, const char *choices, char *buf, size_t buf_size)
{
    const char *best = NULL;
    size_t best_distance = 0;

    for (size_t i = 0; choices == NULL && i < TABLE_COUNT; i++) {
        size_t d = edit_distance(name, table[i].name);
        if (best == NULL || d < best_distance) {
            best = table[i].name;
            best_distance = d;
        }
    }
    for (const char *p = choices; p != NULL && *p;) {
        size_t n = strcspn(p, "|");
        if (n < buf_size) {
            char candidate[SCOPE_MAX];
            snprintf(candidate, sizeof(candidate), "%.*s", (int)n, p);
            size_t d = edit_distance(name, candidate);
            if (best == NULL || d < best_distance) {
                memcpy(buf, candidate, n + 1);
                best = buf;
                best_distance = d;
            }
        }
        p += n;
        if (*p == '|')
            p++;
    }
    size_t limit = strlen(name) / 3 + 1;
    return best_distance <= limit ? best : NULL;
}

/* Spellings of our hyperparameters that are common in other training
 * scripts and configs, too far from ours in edit distance to be found by
 * closest_name(). */
static const struct {
    const char *alias;
    const char *name;
} common_aliases[] = {
    {"learning_rate", "lr"},      {"beta1", "b1"},
    {"beta2", "b2"},              {"adam_beta1", "b1"},
    {"adam_beta2", "b2"},         {"epsilon", "eps"},
    {"adam_epsilon", "eps"},      {"num_layers", "n_layer"},
    {"num_heads", "n_head"},      {"n_embd", "d_model"},
    {"hidden_size", "d_model"},   {"max_steps", "steps"},
    {"max_iters", "steps"},       {"num_warmup_steps", "warmup_steps"},
    {"warmup_iters", "warmup_steps"}, {"max_grad_norm", "grad_clip"},
};

/* Returns our name for a common alias, or the closest table name. */
static const char *suggest_plain(const char *name)
{
    for (size_t i = 0; i < sizeof(common_aliases) / sizeof(common_aliases[0]); i++) {
        if (strcmp(name, common_aliases[i].alias) == 0)
            return common_aliases[i].name;
    }
    return closest_name(name, NULL, NULL, 0);
}

const char *hparam_suggest(const char *name)
{
    const char *dot = strchr(name, '.');
    if (dot == NULL || (size_t)(dot - name) >= SCOPE_MAX)
        return suggest_plain(name);

    /* OPT.NAME: suggest each part on its own. The result lives in a
     * per-thread buffer that the next call on the thread overwrites. */
    static _Thread_local char suggestion[SCOPE_MAX + 64];
    char scope[SCOPE_MAX], scope_buf[SCOPE_MAX];
    memcpy(scope, name, (size_t)(dot - name));
    scope[dot - name] = '\0';
    const char *near_scope = closest_name(scope, OPT_ONLY, scope_buf, sizeof(scope_buf));
    const char *near_name = suggest_plain(dot + 1);
    if (near_scope == NULL || near_name == NULL || strcmp(near_name, "optimizer") == 0)
        return NULL;
    snprintf(suggestion, sizeof(suggestion), "%s.%s", near_scope, near_name);
    return suggestion;
}

const char *optimizer_name(enum optimizer_kind kind)
{
    switch (kind) {
    case OPT_ADAM: return "adam";
    case OPT_ADAMW: return "adamw";
    case OPT_SM3: return "sm3";
    case OPT_SHAMPOO: return "shampoo";
    }
    return "unknown";
}

void train_config_defaults(train_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->n_layer = 2;
    cfg->d_model = 64;
    cfg->n_head = 4;
    cfg->seq_len = 64;
    cfg->batch_size = 16;
    cfg->steps = 1000;
    cfg->seed = 1;
    cfg->warmup_steps = 0;
    cfg->lr_schedule = LR_COSINE;
    cfg->grad_clip = 1.0;
    cfg->eval_every = 100;
    cfg->eval_batches = 8;
    cfg->optimizer = OPT_ADAM;
    /* Optimizer-dependent values are placeholders until train_config_finalize(). */
    cfg->lr = 1e-3;
    cfg->b1 = 0.9;
    cfg->b2 = 0.999;
    cfg->eps = 1e-8;
    cfg->weight_decay = 0.0;
    cfg->matrix_eps = 1e-6;
    cfg->block_size = 128;
    cfg->precondition_every = 10;
    cfg->start_preconditioning_step = 1;
    cfg->max_precond_dim = 4096;
    cfg->graft = GRAFT_ADAM;
    cfg->graft_beta2 = 0.999;
    cfg->graft_eps = 1e-10;
    cfg->nesterov = 1;
    cfg->root_method = ROOT_EIGH;
    cfg->precondition_async = 0;
    cfg->one_minus_b1 = 0.0;
    cfg->one_minus_b2 = 0.0;
    cfg->set_mask = 0;
    cfg->scoped_mask = 0;
}

/* Returns the index of value among the '|'-separated choices, or -1. */
static int choice_index(const char *choices, const char *value)
{
    size_t len = strlen(value);
    int index = 0;
    const char *p = choices;

    while (*p) {
        const char *end = strchr(p, '|');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return index;
        index++;
        p += n;
        if (*p == '|')
            p++;
    }
    return -1;
}

static int parse_bool(const char *value, int *out)
{
    if (strcmp(value, "true") == 0 || strcmp(value, "1") == 0 || strcmp(value, "yes") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(value, "false") == 0 || strcmp(value, "0") == 0 || strcmp(value, "no") == 0) {
        *out = 0;
        return 0;
    }
    return -1;
}

/* Parses a finite number that uses the whole string. */
static int parse_number(const char *value, double *out)
{
    char *end;

    if (*value == '\0' || isspace((unsigned char)*value))
        return -1;
    errno = 0;
    double v = strtod(value, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

static int is_sha256_hex(const char *value)
{
    if (strlen(value) != 64)
        return 0;
    for (const char *p = value; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return 0;
    return 1;
}

static int set_numeric(train_config *cfg, size_t i, const char *value, char *err, size_t err_size)
{
    const hparam_info *h = &table[i];
    const field_binding *b = &bindings[i];
    char *field = (char *)cfg + b->offset;
    double v;

    if (parse_number(value, &v) != 0 || (h->type == HP_INT && v != floor(v))) {
        snprintf(err, err_size, "invalid %s=%s: expected %s in [%.17g, %.17g]", h->name, value,
                 h->type == HP_INT ? "an integer" : "a number", h->min, h->max);
        return -1;
    }
    if (v < h->min || v > h->max) {
        snprintf(err, err_size, "invalid %s=%s: out of range, allowed [%.17g, %.17g]", h->name, value,
                 h->min, h->max);
        return -1;
    }
    switch (b->kind) {
    case F_INT: *(int *)field = (int)v; break;
    case F_LONG: *(long *)field = (long)v; break;
    case F_U64: *(uint64_t *)field = (uint64_t)v; break;
    case F_DOUBLE: *(double *)field = v; break;
    default: break;
    }
    return 0;
}

/* Parses value into table entry i of cfg and marks it set. Returns 0, or -1
 * with err naming the entry, the value and what is allowed. */
static int set_entry(train_config *cfg, size_t i, const char *value, char *err, size_t err_size)
{
    const hparam_info *h = &table[i];
    const field_binding *b = &bindings[i];
    char *field = (char *)cfg + b->offset;

    switch (h->type) {
    case HP_INT:
    case HP_FLOAT:
        if (set_numeric(cfg, i, value, err, err_size) != 0)
            return -1;
        /* one_minus_b1 and one_minus_b2 exclude 0, which the inclusive
         * table range cannot express. */
        if (bindings[i].kind == F_DOUBLE && strncmp(h->name, "one_minus_", 10) == 0 &&
            !(*(double *)field > 0.0)) {
            snprintf(err, err_size, "invalid %s=%s: must be > 0; set %s directly instead", h->name, value,
                     h->name + 10);
            return -1;
        }
        break;
    case HP_STRING: {
        size_t len = strlen(value);
        if (len >= b->size) {
            snprintf(err, err_size, "invalid %s: %zu bytes long, at most %zu allowed", h->name, len, b->size - 1);
            return -1;
        }
        if (i == (size_t)find_index("dataset_sha256") && len > 0 && !is_sha256_hex(value)) {
            snprintf(err, err_size, "invalid dataset_sha256=%s: expected 64 lowercase hex digits", value);
            return -1;
        }
        memcpy(field, value, len + 1);
        break;
    }
    case HP_ENUM: {
        int index = choice_index(h->choices, value);
        if (index < 0) {
            snprintf(err, err_size, "invalid %s=%s: expected one of %s", h->name, value, h->choices);
            return -1;
        }
        /* Every enum member of train_config is an int-sized C enum. */
        *(int *)field = index;
        break;
    }
    case HP_BOOL: {
        int flag;
        if (parse_bool(value, &flag) != 0) {
            snprintf(err, err_size, "invalid %s=%s: expected true or false", h->name, value);
            return -1;
        }
        *(int *)field = flag;
        break;
    }
    }
    cfg->set_mask |= UINT64_C(1) << i;
    return 0;
}

/* Sets OPT.NAME: the value is checked whatever the run's optimizer, and
 * applied only when it is OPT, where it replaces any unscoped NAME. */
static int set_scoped(train_config *cfg, const char *name, enum optimizer_kind kind, long index, const char *value,
                      char *err, size_t err_size)
{
    char inner[256];
    train_config scratch = *cfg;

    if (set_entry(&scratch, (size_t)index, value, inner, sizeof(inner)) != 0) {
        snprintf(err, err_size, "%s (set as %s)", inner, name);
        return -1;
    }
    if (cfg->optimizer == kind) {
        *cfg = scratch;
        cfg->scoped_mask |= UINT64_C(1) << index;
    }
    return 0;
}

static int is_set(const train_config *cfg, const char *name);

int train_config_set(train_config *cfg, const char *name, const char *value, char *err, size_t err_size)
{
    enum optimizer_kind kind;
    long found = find_index(name), scoped_index;

    if (found < 0 && split_scoped(name, &kind, &scoped_index) == 0) {
        /* One at a time, a scoped name can only be applied once the
         * optimizer is known; train_config_set_json orders its keys. */
        if (!is_set(cfg, "optimizer")) {
            snprintf(err, err_size, "%s applies only to %s runs: set optimizer before it", name,
                     optimizer_name(kind));
            return -1;
        }
        return set_scoped(cfg, name, kind, scoped_index, value, err, err_size);
    }
    if (found < 0) {
        const char *near = hparam_suggest(name);
        if (near)
            snprintf(err, err_size, "unknown hyperparameter '%s' (did you mean '%s'?); see sweep-train --help",
                     name, near);
        else
            snprintf(err, err_size, "unknown hyperparameter '%s'; see sweep-train --help", name);
        return -1;
    }

    /* A scoped value for this run's optimizer wins over the unscoped name,
     * whichever came first; the unscoped value is still checked. */
    train_config scratch = *cfg;
    if (set_entry(&scratch, (size_t)found, value, err, err_size) != 0)
        return -1;
    if (cfg->scoped_mask & (UINT64_C(1) << found))
        return 0;
    if (strcmp(name, "optimizer") == 0 && cfg->scoped_mask != 0 && scratch.optimizer != cfg->optimizer) {
        snprintf(err, err_size, "optimizer=%s comes after names scoped to %s were applied; set optimizer first",
                 value, optimizer_name(cfg->optimizer));
        return -1;
    }
    *cfg = scratch;
    return 0;
}

/* The passes of train_config_set_json, so that the result does not depend
 * on key order: the optimizer first, then unscoped names, then OPT.NAME. */
enum json_pass { PASS_OPTIMIZER, PASS_UNSCOPED, PASS_SCOPED };

static enum json_pass pass_of(const char *name)
{
    enum optimizer_kind kind;
    long index;

    if (strcmp(name, "optimizer") == 0)
        return PASS_OPTIMIZER;
    if (find_index(name) < 0 && split_scoped(name, &kind, &index) == 0)
        return PASS_SCOPED;
    return PASS_UNSCOPED;
}

/* Sets the leaves of obj that belong to pass; nested objects are walked with
 * the same rules. */
static int set_json_object(train_config *cfg, const cJSON *obj, int depth, enum json_pass pass, char *err,
                           size_t err_size)
{
    const cJSON *item;

    if (depth > 8) {
        snprintf(err, err_size, "hyperparameters nested more than 8 objects deep");
        return -1;
    }
    cJSON_ArrayForEach(item, obj) {
        char text[64];
        const char *value = text;

        if (item->string == NULL) {
            snprintf(err, err_size, "hyperparameters must be a JSON object");
            return -1;
        }
        if (cJSON_IsObject(item)) {
            if (set_json_object(cfg, item, depth + 1, pass, err, err_size) != 0)
                return -1;
            continue;
        }
        if (pass_of(item->string) != pass)
            continue;
        if (cJSON_IsNumber(item)) {
            snprintf(text, sizeof(text), "%.17g", item->valuedouble);
        } else if (cJSON_IsBool(item)) {
            snprintf(text, sizeof(text), "%s", cJSON_IsTrue(item) ? "true" : "false");
        } else if (cJSON_IsString(item)) {
            value = item->valuestring;
        } else {
            snprintf(err, err_size, "invalid %s: expected a number, string or boolean", item->string);
            return -1;
        }
        const hparam_info *h = hparam_find(item->string);
        if (h && (h->type == HP_STRING || h->type == HP_ENUM) && !cJSON_IsString(item)) {
            snprintf(err, err_size, "invalid %s: expected a string", item->string);
            return -1;
        }
        if (pass == PASS_SCOPED) {
            enum optimizer_kind kind;
            long index;
            if (split_scoped(item->string, &kind, &index) != 0 ||
                set_scoped(cfg, item->string, kind, index, value, err, err_size) != 0)
                return -1;
        } else if (train_config_set(cfg, item->string, value, err, err_size) != 0) {
            return -1;
        }
    }
    return 0;
}

int train_config_set_json(train_config *cfg, const cJSON *params, char *err, size_t err_size)
{
    if (!cJSON_IsObject(params)) {
        snprintf(err, err_size, "hyperparameters must be a JSON object");
        return -1;
    }
    for (int pass = PASS_OPTIMIZER; pass <= PASS_SCOPED; pass++)
        if (set_json_object(cfg, params, 0, (enum json_pass)pass, err, err_size) != 0)
            return -1;
    return 0;
}

static int is_set(const train_config *cfg, const char *name)
{
    long i = find_index(name);
    return i >= 0 && (cfg->set_mask & (UINT64_C(1) << i)) != 0;
}

/* Fills a double field with def unless the user set it. */
static void default_double(train_config *cfg, const char *name, double *field, double def)
{
    if (!is_set(cfg, name))
        *field = def;
}

static int is_scoped(const train_config *cfg, const char *name)
{
    long i = find_index(name);
    return i >= 0 && (cfg->scoped_mask & (UINT64_C(1) << i)) != 0;
}

/* Applies one_minus_NAME to NAME (b1 or b2) when it was set. A scoped
 * setting replaces the unscoped ones; setting both forms at one level is an
 * error. The result must lie in NAME's own range. Calling it again gives the
 * same result, as train_config_finalize may run more than once. */
static int resolve_one_minus(train_config *cfg, const char *name, double *beta, double one_minus, char *err,
                             size_t err_size)
{
    char one_minus_name[32];
    snprintf(one_minus_name, sizeof(one_minus_name), "one_minus_%s", name);
    int beta_scoped = is_scoped(cfg, name), one_minus_scoped = is_scoped(cfg, one_minus_name);
    const char *scope = optimizer_name(cfg->optimizer);

    if (beta_scoped && one_minus_scoped) {
        snprintf(err, err_size, "%s.%s and %s.%s are both set; set only one (%s = 1 - %s)", scope, name, scope,
                 one_minus_name, name, one_minus_name);
        return -1;
    }
    if (beta_scoped)
        return 0;
    if (!one_minus_scoped && is_set(cfg, name) && is_set(cfg, one_minus_name)) {
        snprintf(err, err_size, "%s and %s are both set; set only one (%s = 1 - %s)", name, one_minus_name, name,
                 one_minus_name);
        return -1;
    }
    if (!one_minus_scoped && !is_set(cfg, one_minus_name))
        return 0;

    const hparam_info *h = &table[find_index(name)];
    double value = 1.0 - one_minus;
    if (value < h->min || value > h->max) {
        snprintf(err, err_size, "invalid %s=%.17g: gives %s=%.17g, allowed %s in [%.17g, %.17g]", one_minus_name,
                 one_minus, name, value, name, h->min, h->max);
        return -1;
    }
    *beta = value;
    return 0;
}

int train_config_finalize(train_config *cfg, char *err, size_t err_size)
{
    /* Optimizer defaults: adam / adamw / sm3 / shampoo. */
    double lr = 1e-3, b2 = 0.999, wd = 0.0;
    switch (cfg->optimizer) {
    case OPT_ADAM: break;
    case OPT_ADAMW: wd = 0.01; break;
    case OPT_SM3: lr = 0.1; b2 = 1.0; break;
    case OPT_SHAMPOO: break;
    }
    default_double(cfg, "lr", &cfg->lr, lr);
    default_double(cfg, "b1", &cfg->b1, 0.9);
    default_double(cfg, "b2", &cfg->b2, b2);
    default_double(cfg, "eps", &cfg->eps, 1e-8);
    default_double(cfg, "weight_decay", &cfg->weight_decay, wd);
    default_double(cfg, "matrix_eps", &cfg->matrix_eps, 1e-6);
    if (resolve_one_minus(cfg, "b1", &cfg->b1, cfg->one_minus_b1, err, err_size) != 0 ||
        resolve_one_minus(cfg, "b2", &cfg->b2, cfg->one_minus_b2, err, err_size) != 0)
        return -1;
    default_double(cfg, "graft_beta2", &cfg->graft_beta2, cfg->b2);
    default_double(cfg, "graft_eps", &cfg->graft_eps, 1e-10);
    if (!is_set(cfg, "block_size"))
        cfg->block_size = 128;
    if (!is_set(cfg, "precondition_every"))
        cfg->precondition_every = 10;
    if (!is_set(cfg, "start_preconditioning_step"))
        cfg->start_preconditioning_step = 1;
    if (!is_set(cfg, "max_precond_dim"))
        cfg->max_precond_dim = 4096;
    if (!is_set(cfg, "graft"))
        cfg->graft = GRAFT_ADAM;
    if (!is_set(cfg, "nesterov"))
        cfg->nesterov = 1;
    if (!is_set(cfg, "root_method"))
        cfg->root_method = ROOT_EIGH;
    if (!is_set(cfg, "precondition_async"))
        cfg->precondition_async = 0;

    /* Cross-field rules. */
    if (cfg->d_model % cfg->n_head != 0) {
        snprintf(err, err_size, "invalid d_model=%d: must be divisible by n_head=%d (for example d_model=%d)",
                 cfg->d_model, cfg->n_head, (cfg->d_model / cfg->n_head + 1) * cfg->n_head);
        return -1;
    }
    if (cfg->warmup_steps > cfg->steps) {
        snprintf(err, err_size, "invalid warmup_steps=%ld: must be at most steps=%ld", cfg->warmup_steps,
                 cfg->steps);
        return -1;
    }
    if ((cfg->optimizer == OPT_ADAM || cfg->optimizer == OPT_ADAMW) && cfg->b2 >= 1.0) {
        snprintf(err, err_size, "invalid b2=%.17g for %s: must be in [0, 1) because of bias correction",
                 cfg->b2, optimizer_name(cfg->optimizer));
        return -1;
    }
    if ((size_t)cfg->seq_len * (size_t)cfg->batch_size > ((size_t)1 << 31)) {
        snprintf(err, err_size, "invalid batch_size=%d with seq_len=%d: at most 2^31 tokens per step",
                 cfg->batch_size, cfg->seq_len);
        return -1;
    }
    return 0;
}

cJSON *train_config_to_json(const train_config *cfg)
{
    cJSON *obj = cJSON_CreateObject();
    if (obj == NULL)
        return NULL;

    for (size_t i = 0; i < TABLE_COUNT; i++) {
        const hparam_info *h = &table[i];
        const field_binding *b = &bindings[i];
        const char *field = (const char *)cfg + b->offset;
        cJSON *item = NULL;

        /* one_minus_b1 and one_minus_b2 only feed b1 and b2, which carry
         * the result. Writing both forms would make the object conflict
         * with itself when it is read back. */
        if (strncmp(h->name, "one_minus_", 10) == 0)
            continue;

        switch (b->kind) {
        case F_INT: item = cJSON_CreateNumber(*(const int *)field); break;
        case F_LONG: item = cJSON_CreateNumber((double)*(const long *)field); break;
        case F_U64: item = cJSON_CreateNumber((double)*(const uint64_t *)field); break;
        case F_DOUBLE: item = cJSON_CreateNumber(*(const double *)field); break;
        case F_STRING: item = cJSON_CreateString(field); break;
        case F_BOOL: item = cJSON_CreateBool(*(const int *)field); break;
        case F_ENUM: {
            /* Copy the index-th choice out of "a|b|c". */
            int index = *(const int *)field;
            const char *p = h->choices;
            char name[32];
            while (index-- > 0 && strchr(p, '|'))
                p = strchr(p, '|') + 1;
            size_t n = strcspn(p, "|");
            if (n >= sizeof(name))
                n = sizeof(name) - 1;
            memcpy(name, p, n);
            name[n] = '\0';
            item = cJSON_CreateString(name);
            break;
        }
        }
        if (item == NULL || !cJSON_AddItemToObject(obj, h->name, item)) {
            cJSON_Delete(item);
            cJSON_Delete(obj);
            return NULL;
        }
    }
    return obj;
}
