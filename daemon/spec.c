/* Sweep spec compilation: checks a W&B-style sweep configuration key by key
 * and builds the sorted parameter tree that spec_sample.c expands. Every
 * rejection names the JSON path of the field, the rule and a valid
 * alternative. docs/SPEC.md is the user-facing reference for the same rules;
 * trial expansion (grid and random) lives in spec_sample.c.
 */
#include "spec.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hparams.h"
#include "spec_impl.h"

#define PATH_MAX_BYTES 2048
/* Largest |x| with exp(x) finite: log(DBL_MAX). */
#define EXP_ARG_MAX 709.782712893384
/* 2^53: integers up to this are exact in a double (and in JSON). */
#define EXACT_INT_MAX 9007199254740992.0
/* |z| of a Box-Muller normal draw is at most sqrt(-2 ln 2^-54) < 8.66 with
 * the 53-bit uniforms spec_sample.c uses, so mu +- 9 sigma bounds a draw. */
#define NORMAL_Z_MAX 9.0

/* Keys of a parameter object, as bits. */
enum {
    K_DISTRIBUTION = 1 << 0,
    K_VALUE = 1 << 1,
    K_VALUES = 1 << 2,
    K_PROBABILITIES = 1 << 3,
    K_MIN = 1 << 4,
    K_MAX = 1 << 5,
    K_MU = 1 << 6,
    K_SIGMA = 1 << 7,
    K_Q = 1 << 8,
    K_A = 1 << 9,
    K_B = 1 << 10,
    K_PARAMETERS = 1 << 11,
};

static const char *const param_keys[] = {
    "distribution", "value", "values", "probabilities", "min", "max",
    "mu", "sigma", "q", "a", "b", "parameters",
};
#define PARAM_KEY_COUNT (sizeof(param_keys) / sizeof(param_keys[0]))

struct dist_info {
    const char *name;
    unsigned keys;      /* keys the distribution accepts, besides "distribution" */
    unsigned required;
    int continuous;     /* 1: not allowed in a grid */
};

static const struct dist_info dists[DIST_COUNT] = {
    [DIST_CONSTANT] = { "constant", K_VALUE, K_VALUE, 0 },
    [DIST_CATEGORICAL] = { "categorical", K_VALUES | K_PROBABILITIES, K_VALUES, 0 },
    [DIST_INT_UNIFORM] = { "int_uniform", K_MIN | K_MAX, K_MIN | K_MAX, 0 },
    [DIST_UNIFORM] = { "uniform", K_MIN | K_MAX, K_MIN | K_MAX, 1 },
    [DIST_Q_UNIFORM] = { "q_uniform", K_MIN | K_MAX | K_Q, K_MIN | K_MAX, 0 },
    [DIST_LOG_UNIFORM_VALUES] = { "log_uniform_values", K_MIN | K_MAX, K_MIN | K_MAX, 1 },
    [DIST_Q_LOG_UNIFORM_VALUES] = { "q_log_uniform_values", K_MIN | K_MAX | K_Q, K_MIN | K_MAX, 1 },
    [DIST_INV_LOG_UNIFORM_VALUES] = { "inv_log_uniform_values", K_MIN | K_MAX, K_MIN | K_MAX, 1 },
    [DIST_LOG_UNIFORM] = { "log_uniform", K_MIN | K_MAX, K_MIN | K_MAX, 1 },
    [DIST_Q_LOG_UNIFORM] = { "q_log_uniform", K_MIN | K_MAX | K_Q, K_MIN | K_MAX, 1 },
    [DIST_INV_LOG_UNIFORM] = { "inv_log_uniform", K_MIN | K_MAX, K_MIN | K_MAX, 1 },
    [DIST_NORMAL] = { "normal", K_MU | K_SIGMA, 0, 1 },
    [DIST_Q_NORMAL] = { "q_normal", K_MU | K_SIGMA | K_Q, 0, 1 },
    [DIST_LOG_NORMAL] = { "log_normal", K_MU | K_SIGMA, 0, 1 },
    [DIST_Q_LOG_NORMAL] = { "q_log_normal", K_MU | K_SIGMA | K_Q, 0, 1 },
    [DIST_BETA] = { "beta", K_A | K_B, 0, 1 },
    [DIST_Q_BETA] = { "q_beta", K_A | K_B | K_Q, 0, 1 },
};

static const char *const top_keys[] = {
    "method", "metric", "parameters", "name", "description", "run_cap",
    "seed", "max_failures", "max_requeues", "ticket_threshold",
};
#define TOP_KEY_COUNT (sizeof(top_keys) / sizeof(top_keys[0]))

static const char *const metric_keys[] = { "name", "goal", "target" };
#define METRIC_KEY_COUNT (sizeof(metric_keys) / sizeof(metric_keys[0]))

/* State of one spec_compile call. path is the JSON path of the object being
 * checked: helpers append ".key" and cut it back. */
struct compile_ctx {
    const json_kinds *kinds;
    int generic;
    sweep_spec *spec;
    char *err;
    size_t err_size;
    char path[PATH_MAX_BYTES];
    size_t param_count;     /* groups and leaves so far */
};

/* Writes "<path>: <message>" into the error buffer. Returns -1. */
__attribute__((format(printf, 3, 4)))
static int fail(struct compile_ctx *c, const char *path, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (c->err_size == 0)
        return -1;
    n = snprintf(c->err, c->err_size, "%s: ", path[0] ? path : "spec");
    if (n < 0 || (size_t)n >= c->err_size)
        return -1;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->err_size - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Appends "<path>: <message>" to the spec's warnings. Returns 0, or -1
 * with an error when memory runs out. */
__attribute__((format(printf, 3, 4)))
static int warn(struct compile_ctx *c, const char *path, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    int n = snprintf(text, sizeof(text), "%s: ", path);
    if (n < 0 || (size_t)n >= sizeof(text))
        n = 0;
    va_start(ap, fmt);
    vsnprintf(text + n, sizeof(text) - (size_t)n, fmt, ap);
    va_end(ap);

    sweep_spec *s = c->spec;
    char **grown = realloc(s->warnings, (s->warning_count + 1) * sizeof(*grown));
    if (!grown)
        return fail(c, path, "out of memory while checking the spec");
    s->warnings = grown;
    s->warnings[s->warning_count] = strdup(text);
    if (!s->warnings[s->warning_count])
        return fail(c, path, "out of memory while checking the spec");
    s->warning_count++;
    return 0;
}

/* Appends ".key" (or "key" at the top) to c->path. Returns the old length to
 * restore with path_pop(), or (size_t)-1 when the path would not fit. */
static size_t path_push(struct compile_ctx *c, const char *key)
{
    size_t len = strlen(c->path);
    int n = snprintf(c->path + len, sizeof(c->path) - len, "%s%s", len ? "." : "", key);
    if (n < 0 || (size_t)n >= sizeof(c->path) - len) {
        c->path[len] = '\0';
        return (size_t)-1;
    }
    return len;
}

static void path_pop(struct compile_ctx *c, size_t len)
{
    c->path[len] = '\0';
}

/* Formats path + ".key" into out, for errors about one key. */
static const char *key_path(const struct compile_ctx *c, const char *key, char *out, size_t size)
{
    snprintf(out, size, "%s%s%s", c->path, c->path[0] ? "." : "", key);
    return out;
}

/* Edit distance of a and b where an insertion, deletion, substitution or
 * swap of two adjacent bytes costs 1 (optimal string alignment), so the typo
 * "valeus" is closer to "values" than to "value". Compares at most 64 bytes
 * of each. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strnlen(a, 64), lb = strnlen(b, 64);
    size_t rows[3][65];
    size_t *before = rows[0], *prev = rows[1], *cur = rows[2];

    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
                before[j - 2] + 1 < best)
                best = before[j - 2] + 1;
            cur[j] = best;
        }
        size_t *t = before;
        before = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

/* Returns the entry of words closest to word when at most a third of it (and
 * at least one edit) differs, else NULL. */
static const char *closest(const char *word, const char *const *words, size_t count)
{
    const char *best = NULL;
    size_t best_distance = strlen(word) / 3 + 1;

    for (size_t i = 0; i < count; i++) {
        size_t d = edit_distance(word, words[i]);
        if (d <= best_distance && (!best || d < best_distance)) {
            best = words[i];
            best_distance = d;
        }
    }
    return best;
}

/* Rejects a key given twice in one object. */
static int fail_repeated_key(struct compile_ctx *c, const char *key)
{
    char path[PATH_MAX_BYTES + 64];
    return fail(c, key_path(c, key, path, sizeof(path)), "key appears twice; keep one");
}

/* Returns the index of key in words, or -1. */
static int find_word(const char *key, const char *const *words, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(key, words[i]) == 0)
            return (int)i;
    }
    return -1;
}

/* Rejects a key that is not in words, suggesting the closest valid one. */
static int fail_unknown_key(struct compile_ctx *c, const char *key, const char *const *words,
                            size_t count, const char *what)
{
    char path[PATH_MAX_BYTES + 64];
    const char *near = closest(key, words, count);

    key_path(c, key, path, sizeof(path));
    if (near)
        return fail(c, path, "unknown key in %s; did you mean \"%s\"?", what, near);
    return fail(c, path, "unknown key in %s; see docs/SPEC.md for the valid keys", what);
}

/* Rejects an object that has the same key twice (cJSON keeps both). The
 * check is quadratic, so callers bound the key count first. */
static int check_duplicate_keys(struct compile_ctx *c, const cJSON *obj)
{
    for (const cJSON *a = obj->child; a; a = a->next) {
        for (const cJSON *b = a->next; b; b = b->next) {
            if (strcmp(a->string, b->string) == 0)
                return fail_repeated_key(c, a->string);
        }
    }
    return 0;
}

/* Reads obj[key] as a finite number into *out. Returns 1 when present, 0 when
 * absent, -1 (error set) when it is not a finite number. */
static int get_number(struct compile_ctx *c, const cJSON *obj, const char *key, double *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    char path[PATH_MAX_BYTES + 64];

    if (!item)
        return 0;
    key_path(c, key, path, sizeof(path));
    if (!cJSON_IsNumber(item))
        return fail(c, path, "expected a number, got %s", cJSON_IsString(item) ? "a string" : "another JSON type");
    if (!isfinite(item->valuedouble))
        return fail(c, path, "the number is not finite (a literal such as 1e400 overflows a double); "
                             "use a value within +-1.7e308");
    *out = item->valuedouble;
    return 1;
}

/* Reads obj[key] as an integral number in [lo, hi]. Same returns as
 * get_number(). */
static int get_integer(struct compile_ctx *c, const cJSON *obj, const char *key, double lo,
                       double hi, double *out)
{
    char path[PATH_MAX_BYTES + 64];
    int found = get_number(c, obj, key, out);

    if (found <= 0)
        return found;
    key_path(c, key, path, sizeof(path));
    if (*out != floor(*out) || *out < lo || *out > hi)
        return fail(c, path, "expected an integer in [%.17g, %.17g], got %.17g", lo, hi, *out);
    return 1;
}

/* Rejects non-finite numbers anywhere inside a value (values may be nested
 * arrays or objects). */
static int check_finite_tree(struct compile_ctx *c, const cJSON *node, const char *path)
{
    if (cJSON_IsNumber(node) && !isfinite(node->valuedouble))
        return fail(c, path, "the number is not finite (a literal such as 1e400 overflows a double); "
                             "use a value within +-1.7e308");
    for (const cJSON *child = node->child; child; child = child->next) {
        if (check_finite_tree(c, child, path) != 0)
            return -1;
    }
    return 0;
}

static int name_is_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > SPEC_MAX_NAME_BYTES)
        return 0;
    if (!((name[0] >= 'A' && name[0] <= 'Z') || (name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return 0;
    for (size_t i = 1; i < len; i++) {
        char ch = name[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return 0;
    }
    return 1;
}

/* ---- Trainer compatibility ---- */

/* Checks one concrete value against the trainer's table by setting it on a
 * scratch config, so the trainer's own rules (type, range, choices) apply. */
static int check_trainer_value(struct compile_ctx *c, const char *name, const cJSON *value,
                               const char *path)
{
    train_config cfg;
    char trainer_err[512];
    cJSON *obj, *copy;
    int rc;

    if (cJSON_IsObject(value) || cJSON_IsArray(value))
        return fail(c, path, "%s takes a number, string or boolean, not a %s", name,
                    cJSON_IsObject(value) ? "JSON object" : "JSON array");
    obj = cJSON_CreateObject();
    copy = cJSON_Duplicate(value, 1);
    if (!obj || !copy || !cJSON_AddItemToObject(obj, name, copy)) {
        cJSON_Delete(copy);
        cJSON_Delete(obj);
        return fail(c, path, "out of memory while checking the value");
    }
    train_config_defaults(&cfg);
    rc = train_config_set_json(&cfg, obj, trainer_err, sizeof(trainer_err));
    cJSON_Delete(obj);
    if (rc != 0)
        return fail(c, path, "%s; see sweep-train --help for the allowed values", trainer_err);
    return 0;
}

/* Checks a bound of a numeric distribution against the trainer's range. */
static int check_trainer_bound(struct compile_ctx *c, const char *name, double v, const char *path)
{
    cJSON *number = cJSON_CreateNumber(v);
    int rc;

    if (!number)
        return fail(c, path, "out of memory while checking the value");
    rc = check_trainer_value(c, name, number, path);
    cJSON_Delete(number);
    return rc;
}

/* Returns 1 when every draw of leaf is an integer. */
static int draws_integers(const struct spec_node *leaf)
{
    switch (leaf->dist) {
    case DIST_INT_UNIFORM:
        return 1;
    case DIST_Q_UNIFORM:
    case DIST_Q_LOG_UNIFORM_VALUES:
    case DIST_Q_LOG_UNIFORM:
    case DIST_Q_NORMAL:
    case DIST_Q_LOG_NORMAL:
    case DIST_Q_BETA:
        return leaf->q == floor(leaf->q);
    default:
        return 0;
    }
}

/* Normal, log-normal and beta forms have no bounds to check, and a draw
 * outside the trainer's range fails its trial when it starts. So estimate
 * that share from SPEC_RANGE_SAMPLES draws (q rounding included) and warn
 * when any fall outside. The spec stays valid: a wide prior that loses a
 * few trials may be what the user wants. */
static int check_draws_in_range(struct compile_ctx *c, const struct spec_node *leaf,
                                const hparam_info *info)
{
    int outside = 0;
    for (uint64_t i = 0; i < SPEC_RANGE_SAMPLES; i++) {
        double v = spec_leaf_draw(leaf, 0, i);
        if (!(v >= info->min && v <= info->max))
            outside++;
    }
    if (outside == 0)
        return 0;
    return warn(c, c->path, "%d of %d sample draws of %s fall outside %s's range [%g, %g]; trials "
                            "drawing such values fail when they start. Narrow the distribution or "
                            "use a bounded form such as uniform or log_uniform_values",
                outside, SPEC_RANGE_SAMPLES, dists[leaf->dist].name, leaf->name, info->min, info->max);
}

/* Checks that a leaf fits the trainer hyperparameter of the same name. */
static int check_trainer_leaf(struct compile_ctx *c, const struct spec_node *leaf)
{
    const hparam_info *info = hparam_find(leaf->name);
    char path[PATH_MAX_BYTES + 64];

    if (!info) {
        const char *near = hparam_suggest(leaf->name);
        if (near)
            return fail(c, c->path, "\"%s\" is not a trainer hyperparameter; did you mean \"%s\"? "
                                    "(generic mode skips this check)", leaf->name, near);
        return fail(c, c->path, "\"%s\" is not a trainer hyperparameter; see sweep-train --help "
                                "for the names (generic mode skips this check)", leaf->name);
    }

    if (leaf->dist == DIST_CONSTANT || leaf->dist == DIST_CATEGORICAL) {
        for (size_t i = 0; i < leaf->value_count; i++) {
            if (leaf->dist == DIST_CONSTANT)
                key_path(c, "value", path, sizeof(path));
            else
                snprintf(path, sizeof(path), "%s.values[%zu]", c->path, i);
            if (check_trainer_value(c, leaf->name, leaf->values[i], path) != 0)
                return -1;
        }
        return 0;
    }

    /* A numeric distribution: the type must be numeric, integers need an
     * integer-valued distribution, and bounded ones must fit the range. */
    if (info->type != HP_INT && info->type != HP_FLOAT)
        return fail(c, c->path, "%s takes %s values, but %s draws numbers; use values with the "
                                "allowed choices", leaf->name,
                    info->type == HP_BOOL ? "boolean" : "string", dists[leaf->dist].name);
    if (info->type == HP_INT && !draws_integers(leaf))
        return fail(c, c->path, "%s is an integer hyperparameter, but %s draws non-integers; use "
                                "int_uniform, values, or a q_ form with an integer q",
                    leaf->name, dists[leaf->dist].name);

    switch (leaf->dist) {
    case DIST_INT_UNIFORM:
    case DIST_UNIFORM:
    case DIST_Q_UNIFORM:
    case DIST_LOG_UNIFORM_VALUES:
    case DIST_Q_LOG_UNIFORM_VALUES:
    case DIST_INV_LOG_UNIFORM_VALUES:
        if (check_trainer_bound(c, leaf->name, leaf->min, key_path(c, "min", path, sizeof(path))) != 0)
            return -1;
        return check_trainer_bound(c, leaf->name, leaf->max, key_path(c, "max", path, sizeof(path)));
    case DIST_LOG_UNIFORM:
    case DIST_Q_LOG_UNIFORM:
        if (check_trainer_bound(c, leaf->name, exp(leaf->min), key_path(c, "min", path, sizeof(path))) != 0)
            return -1;
        return check_trainer_bound(c, leaf->name, exp(leaf->max), key_path(c, "max", path, sizeof(path)));
    case DIST_INV_LOG_UNIFORM:
        if (check_trainer_bound(c, leaf->name, exp(-leaf->max), key_path(c, "max", path, sizeof(path))) != 0)
            return -1;
        return check_trainer_bound(c, leaf->name, exp(-leaf->min), key_path(c, "min", path, sizeof(path)));
    default:
        return check_draws_in_range(c, leaf, info);
    }
}

/* ---- Parameter leaves ---- */

/* Reads "values" (and "probabilities") into a categorical leaf. */
static int compile_values(struct compile_ctx *c, const cJSON *obj, struct spec_node *leaf)
{
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(obj, "values");
    const cJSON *probs = cJSON_GetObjectItemCaseSensitive(obj, "probabilities");
    char path[PATH_MAX_BYTES + 64];
    int count;
    double sum = 0.0;

    key_path(c, "values", path, sizeof(path));
    if (!cJSON_IsArray(values))
        return fail(c, path, "expected a list of values such as [0.001, 0.01]");
    count = cJSON_GetArraySize(values);
    if (count == 0)
        return fail(c, path, "the list is empty; give at least one value");
    if (count > SPEC_MAX_VALUES)
        return fail(c, path, "%d values, at most %d allowed; use a distribution for larger sets",
                    count, SPEC_MAX_VALUES);
    if (check_finite_tree(c, values, path) != 0)
        return -1;

    leaf->values_doc = cJSON_Duplicate(values, 1);
    leaf->values = calloc((size_t)count, sizeof(*leaf->values));
    if (!leaf->values_doc || !leaf->values)
        return fail(c, path, "out of memory");
    for (const cJSON *v = leaf->values_doc->child; v; v = v->next)
        leaf->values[leaf->value_count++] = v;

    if (!probs)
        return 0;

    /* Probabilities: one per value, each >= 0, summing to 1. */
    key_path(c, "probabilities", path, sizeof(path));
    if (!cJSON_IsArray(probs))
        return fail(c, path, "expected a list of numbers, one per value");
    if (cJSON_GetArraySize(probs) != count)
        return fail(c, path, "%d probabilities for %d values; give one per value",
                    cJSON_GetArraySize(probs), count);
    leaf->cumulative = calloc((size_t)count, sizeof(*leaf->cumulative));
    if (!leaf->cumulative)
        return fail(c, path, "out of memory");
    int i = 0;
    for (const cJSON *p = probs->child; p; p = p->next, i++) {
        snprintf(path, sizeof(path), "%s.probabilities[%d]", c->path, i);
        if (!cJSON_IsNumber(p) || !isfinite(p->valuedouble) || p->valuedouble < 0.0)
            return fail(c, path, "expected a finite number >= 0");
        sum += p->valuedouble;
        leaf->cumulative[i] = sum;
    }
    if (fabs(sum - 1.0) > 1e-9)
        return fail(c, key_path(c, "probabilities", path, sizeof(path)),
                    "the probabilities sum to %.17g; they must sum to 1 (within 1e-9)", sum);
    return 0;
}

/* Reads min and max, both required, with min < max. */
static int compile_bounds(struct compile_ctx *c, const cJSON *obj, struct spec_node *leaf)
{
    char path[PATH_MAX_BYTES + 64];

    if (get_number(c, obj, "min", &leaf->min) < 0 || get_number(c, obj, "max", &leaf->max) < 0)
        return -1;
    if (!(leaf->min < leaf->max))
        return fail(c, key_path(c, "max", path, sizeof(path)),
                    "%s needs min < max, got min %.17g and max %.17g; make max larger than min",
                    dists[leaf->dist].name, leaf->min, leaf->max);
    return 0;
}

/* Largest |draw| of a quantised leaf before quantising, for the q check. */
static double draw_bound(const struct spec_node *leaf)
{
    switch (leaf->dist) {
    case DIST_Q_UNIFORM:
    case DIST_Q_LOG_UNIFORM_VALUES:
        return fmax(fabs(leaf->min), fabs(leaf->max));
    case DIST_Q_LOG_UNIFORM:
        return exp(leaf->max);
    case DIST_Q_NORMAL:
        return fabs(leaf->mu) + NORMAL_Z_MAX * leaf->sigma;
    case DIST_Q_LOG_NORMAL:
        return exp(leaf->mu + NORMAL_Z_MAX * leaf->sigma);
    case DIST_Q_BETA:
        return 1.0;
    default:
        return 0.0;
    }
}

/* Checks the keys and numbers of one leaf's distribution. */
static int compile_distribution(struct compile_ctx *c, const cJSON *obj, struct spec_node *leaf)
{
    const struct dist_info *d = &dists[leaf->dist];
    char path[PATH_MAX_BYTES + 64];
    int found;

    switch (leaf->dist) {
    case DIST_CONSTANT: {
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(obj, "value");
        key_path(c, "value", path, sizeof(path));
        if (check_finite_tree(c, value, path) != 0)
            return -1;
        leaf->values_doc = cJSON_Duplicate(value, 1);
        leaf->values = calloc(1, sizeof(*leaf->values));
        if (!leaf->values_doc || !leaf->values)
            return fail(c, path, "out of memory");
        leaf->values[0] = leaf->values_doc;
        leaf->value_count = 1;
        return 0;
    }
    case DIST_CATEGORICAL:
        return compile_values(c, obj, leaf);

    case DIST_INT_UNIFORM:
        if (get_integer(c, obj, "min", -EXACT_INT_MAX, EXACT_INT_MAX, &leaf->min) < 0 ||
            get_integer(c, obj, "max", -EXACT_INT_MAX, EXACT_INT_MAX, &leaf->max) < 0)
            return -1;
        if (!(leaf->min < leaf->max))
            return fail(c, key_path(c, "max", path, sizeof(path)),
                        "int_uniform needs min < max, got min %.17g and max %.17g; make max larger "
                        "than min, or use value for a single value", leaf->min, leaf->max);
        return 0;

    case DIST_UNIFORM:
    case DIST_Q_UNIFORM:
        if (compile_bounds(c, obj, leaf) != 0)
            return -1;
        if (!isfinite(leaf->max - leaf->min))
            return fail(c, key_path(c, "max", path, sizeof(path)),
                        "max - min overflows a double; narrow the range");
        break;

    case DIST_LOG_UNIFORM_VALUES:
    case DIST_Q_LOG_UNIFORM_VALUES:
    case DIST_INV_LOG_UNIFORM_VALUES: {
        const cJSON *min_item = cJSON_GetObjectItemCaseSensitive(obj, "min");
        if (get_number(c, obj, "min", &leaf->min) < 0 || get_number(c, obj, "max", &leaf->max) < 0)
            return -1;
        key_path(c, "min", path, sizeof(path));
        if (leaf->min <= 0.0 && json_kinds_underflowed(c->kinds, min_item))
            return fail(c, path, "%s needs min > 0, but the literal underflows a double to 0; use a "
                                 "positive min of at least 2.2e-308, such as 1e-5", d->name);
        if (leaf->min <= 0.0)
            return fail(c, path, "%s needs min > 0, got %.17g; use a positive min such as 1e-5",
                        d->name, leaf->min);
        if (!(leaf->min < leaf->max))
            return fail(c, key_path(c, "max", path, sizeof(path)),
                        "%s needs min < max, got min %.17g and max %.17g; make max larger than min",
                        d->name, leaf->min, leaf->max);
        break;
    }

    case DIST_LOG_UNIFORM:
    case DIST_Q_LOG_UNIFORM:
    case DIST_INV_LOG_UNIFORM:
        /* Bounds are natural-log exponents; exp(+-bound) must be finite and
         * nonzero so every draw is a positive finite number. */
        if (compile_bounds(c, obj, leaf) != 0)
            return -1;
        if (fabs(leaf->min) > EXP_ARG_MAX)
            return fail(c, key_path(c, "min", path, sizeof(path)),
                        "%s takes natural-log exponents, and exp(%.17g) is not a finite nonzero "
                        "double; use a min within +-709 (or log_uniform_values to give values)",
                        d->name, leaf->min);
        if (fabs(leaf->max) > EXP_ARG_MAX)
            return fail(c, key_path(c, "max", path, sizeof(path)),
                        "%s takes natural-log exponents, and exp(%.17g) is not a finite nonzero "
                        "double; use a max within +-709 (or log_uniform_values to give values)",
                        d->name, leaf->max);
        break;

    case DIST_NORMAL:
    case DIST_Q_NORMAL:
    case DIST_LOG_NORMAL:
    case DIST_Q_LOG_NORMAL:
        leaf->mu = 0.0;
        leaf->sigma = 1.0;
        if (get_number(c, obj, "mu", &leaf->mu) < 0 || get_number(c, obj, "sigma", &leaf->sigma) < 0)
            return -1;
        if (leaf->sigma < 0.0)
            return fail(c, key_path(c, "sigma", path, sizeof(path)),
                        "%s needs sigma >= 0, got %.17g; use a non-negative sigma such as 1",
                        d->name, leaf->sigma);
        if (!isfinite(fabs(leaf->mu) + NORMAL_Z_MAX * leaf->sigma))
            return fail(c, key_path(c, "sigma", path, sizeof(path)),
                        "mu +- 9 sigma overflows a double; use a smaller mu or sigma");
        if ((leaf->dist == DIST_LOG_NORMAL || leaf->dist == DIST_Q_LOG_NORMAL) &&
            leaf->mu + NORMAL_Z_MAX * leaf->sigma > EXP_ARG_MAX)
            return fail(c, key_path(c, "sigma", path, sizeof(path)),
                        "%s draws exp(mu + sigma z), which overflows for mu + 9 sigma > 709; use "
                        "a smaller mu or sigma", d->name);
        break;

    case DIST_BETA:
    case DIST_Q_BETA:
        leaf->a = 1.0;
        leaf->b = 1.0;
        if (get_number(c, obj, "a", &leaf->a) < 0 || get_number(c, obj, "b", &leaf->b) < 0)
            return -1;
        if (!(leaf->a > 0.0))
            return fail(c, key_path(c, "a", path, sizeof(path)),
                        "%s needs a > 0, got %.17g; use a positive a such as 1", d->name, leaf->a);
        if (!(leaf->b > 0.0))
            return fail(c, key_path(c, "b", path, sizeof(path)),
                        "%s needs b > 0, got %.17g; use a positive b such as 1", d->name, leaf->b);
        break;

    case DIST_COUNT:
        return fail(c, c->path, "internal error: unknown distribution");
    }

    /* q: default 1, > 0, and small enough that the draws do not exceed 2^53
     * steps (beyond that, multiples of q are not distinct doubles). */
    leaf->q = 1.0;
    found = get_number(c, obj, "q", &leaf->q);
    if (found < 0)
        return -1;
    if (d->keys & K_Q) {
        key_path(c, "q", path, sizeof(path));
        if (!(leaf->q > 0.0))
            return fail(c, path, "%s needs q > 0, got %.17g; use a positive step such as 1",
                        d->name, leaf->q);
        if (!(draw_bound(leaf) / leaf->q < EXACT_INT_MAX))
            return fail(c, path, "q %.17g is too small for draws up to %.17g (more than 2^53 "
                                 "steps); use a larger q", leaf->q, draw_bound(leaf));
    }
    return 0;
}

/* Finds the distribution of a leaf from "distribution", or infers it. */
static int resolve_distribution(struct compile_ctx *c, const cJSON *obj, unsigned present,
                                struct spec_node *leaf)
{
    const cJSON *dist = cJSON_GetObjectItemCaseSensitive(obj, "distribution");
    char path[PATH_MAX_BYTES + 64];

    if (dist) {
        const char *names[DIST_COUNT];

        key_path(c, "distribution", path, sizeof(path));
        if (!cJSON_IsString(dist))
            return fail(c, path, "expected a string such as \"uniform\"");
        for (int i = 0; i < DIST_COUNT; i++) {
            names[i] = dists[i].name;
            if (strcmp(dist->valuestring, dists[i].name) == 0) {
                leaf->dist = (enum spec_dist)i;
                return 0;
            }
        }
        const char *near = closest(dist->valuestring, names, DIST_COUNT);
        if (near)
            return fail(c, path, "unknown distribution \"%s\"; did you mean \"%s\"?",
                        dist->valuestring, near);
        return fail(c, path, "unknown distribution \"%s\"; see docs/SPEC.md for the list",
                    dist->valuestring);
    }

    /* Inference: values, value, then min/max whose literal kinds decide
     * between int_uniform (both integers) and uniform. */
    if ((present & K_VALUES) && (present & K_VALUE))
        return fail(c, c->path, "both value and values are given; keep one");
    if (present & K_VALUES) {
        leaf->dist = DIST_CATEGORICAL;
        return 0;
    }
    if (present & K_VALUE) {
        leaf->dist = DIST_CONSTANT;
        return 0;
    }
    if ((present & K_MIN) && (present & K_MAX)) {
        const cJSON *min = cJSON_GetObjectItemCaseSensitive(obj, "min");
        const cJSON *max = cJSON_GetObjectItemCaseSensitive(obj, "max");
        int integers = cJSON_IsNumber(min) && cJSON_IsNumber(max) &&
                       json_kinds_is_integer(c->kinds, min) && json_kinds_is_integer(c->kinds, max);
        leaf->dist = integers ? DIST_INT_UNIFORM : DIST_UNIFORM;
        return 0;
    }
    if (present & (K_MIN | K_MAX))
        return fail(c, c->path, "min and max must be given together; add the missing %s",
                    (present & K_MIN) ? "max" : "min");
    return fail(c, c->path, "no distribution: give value, values, min and max, parameters, or "
                            "distribution with its keys");
}

/* Compiles one leaf parameter object at c->path. */
static int compile_leaf(struct compile_ctx *c, const cJSON *obj, unsigned present, struct spec_node *leaf)
{
    const struct dist_info *d;
    char path[PATH_MAX_BYTES + 64];

    if (resolve_distribution(c, obj, present, leaf) != 0)
        return -1;
    d = &dists[leaf->dist];

    /* Every key must belong to the distribution, and the required ones
     * must be there. */
    for (size_t i = 0; i < PARAM_KEY_COUNT; i++) {
        unsigned bit = 1u << i;
        if (bit == K_DISTRIBUTION)
            continue;
        if ((present & bit) && !(d->keys & bit))
            return fail(c, key_path(c, param_keys[i], path, sizeof(path)),
                        "%s does not use %s; remove it or pick a distribution that does",
                        d->name, param_keys[i]);
        if (!(present & bit) && (d->required & bit))
            return fail(c, key_path(c, param_keys[i], path, sizeof(path)),
                        "missing; %s needs %s", d->name, param_keys[i]);
    }

    if (compile_distribution(c, obj, leaf) != 0)
        return -1;

    /* Grid: only finite forms, without probabilities. */
    if (c->spec->method == SPEC_GRID) {
        if (d->continuous)
            return fail(c, c->path, "method grid needs a finite set of values, but %s is "
                                    "continuous; use values, int_uniform or q_uniform, or method "
                                    "random", d->name);
        if (leaf->cumulative)
            return fail(c, key_path(c, "probabilities", path, sizeof(path)),
                        "method grid tries every value once, so probabilities do not apply; "
                        "remove them or use method random");
    }

    if (!c->generic && check_trainer_leaf(c, leaf) != 0)
        return -1;
    return 0;
}

/* ---- Parameter groups ---- */

static int compare_nodes(const void *a, const void *b)
{
    return strcmp(((const struct spec_node *)a)->name, ((const struct spec_node *)b)->name);
}

static int compile_group(struct compile_ctx *c, const cJSON *params, struct spec_node *group, int depth);

/* Compiles parameter object obj named node->name at c->path. */
static int compile_param(struct compile_ctx *c, const cJSON *obj, struct spec_node *node, int depth)
{
    unsigned present = 0;

    if (!cJSON_IsObject(obj))
        return fail(c, c->path, "expected an object such as {\"values\": [1, 2]} or {\"value\": 3}");
    for (const cJSON *key = obj->child; key; key = key->next) {
        int i = find_word(key->string, param_keys, PARAM_KEY_COUNT);
        if (i < 0)
            return fail_unknown_key(c, key->string, param_keys, PARAM_KEY_COUNT, "a parameter");
        if (present & (1u << i))
            return fail_repeated_key(c, key->string);
        present |= 1u << i;
    }

    if (present & K_PARAMETERS) {
        if (present != K_PARAMETERS)
            return fail(c, c->path, "a group with nested parameters takes no other keys; move "
                                    "the other keys into a parameter inside the group");
        node->is_group = 1;
        return compile_group(c, cJSON_GetObjectItemCaseSensitive(obj, "parameters"), node, depth + 1);
    }
    return compile_leaf(c, obj, present, node);
}

/* Compiles a "parameters" object at c->path into group's sorted children. */
static int compile_group(struct compile_ctx *c, const cJSON *params, struct spec_node *group, int depth)
{
    size_t base = path_push(c, "parameters");
    int count;

    if (base == (size_t)-1)
        return fail(c, c->path, "the parameter path is too long; use shorter names");
    if (depth > SPEC_MAX_DEPTH) {
        path_pop(c, base);
        return fail(c, c->path, "parameters are nested more than %d groups deep; flatten the groups",
                    SPEC_MAX_DEPTH);
    }
    if (!cJSON_IsObject(params))
        return fail(c, c->path, "expected an object that maps parameter names to parameter objects");
    count = cJSON_GetArraySize(params);
    if (count == 0)
        return fail(c, c->path, "no parameters; add at least one, such as \"lr\": {\"value\": 0.001}");
    c->param_count += (size_t)count;
    if (c->param_count > SPEC_MAX_PARAMETERS)
        return fail(c, c->path, "more than %d parameters in the spec; split the sweep",
                    SPEC_MAX_PARAMETERS);
    if (check_duplicate_keys(c, params) != 0)
        return -1;

    group->children = calloc((size_t)count, sizeof(*group->children));
    if (!group->children)
        return fail(c, c->path, "out of memory");

    /* Sort first, so children compile (and leaves number) in grid order. */
    for (const cJSON *item = params->child; item; item = item->next) {
        struct spec_node *child = &group->children[group->child_count++];
        char path[PATH_MAX_BYTES + 64];

        if (!name_is_valid(item->string))
            return fail(c, key_path(c, item->string, path, sizeof(path)),
                        "invalid parameter name; names match ^[A-Za-z_][A-Za-z0-9_.-]*$ and have "
                        "at most %d bytes", SPEC_MAX_NAME_BYTES);
        child->name = strdup(item->string);
        if (!child->name)
            return fail(c, c->path, "out of memory");
    }
    qsort(group->children, group->child_count, sizeof(*group->children), compare_nodes);

    for (size_t i = 0; i < group->child_count; i++) {
        struct spec_node *child = &group->children[i];
        const cJSON *item = cJSON_GetObjectItemCaseSensitive(params, child->name);
        size_t len = path_push(c, child->name);

        if (len == (size_t)-1)
            return fail(c, c->path, "the parameter path is too long; use shorter names");
        if (compile_param(c, item, child, depth) != 0)
            return -1;
        if (!child->is_group) {
            child->leaf_index = c->spec->leaf_count;
            c->spec->leaves[c->spec->leaf_count++] = child;
        }
        path_pop(c, len);
    }
    path_pop(c, base);
    return 0;
}

/* Writes the JSON path of leaf ("parameters.g.parameters.lr") into out,
 * searching group, whose own path is out[0..len). Returns 1 when found. */
static int leaf_path(const struct spec_node *group, const struct spec_node *leaf, char *out,
                     size_t size, size_t len)
{
    int n = snprintf(out + len, size - len, "%sparameters", len ? "." : "");

    if (n < 0 || (size_t)n >= size - len)
        return 0;
    len += (size_t)n;
    for (size_t i = 0; i < group->child_count; i++) {
        const struct spec_node *child = &group->children[i];
        int m = snprintf(out + len, size - len, ".%s", child->name);

        if (m < 0 || (size_t)m >= size - len)
            return 0;
        if (child == leaf)
            return 1;
        if (child->is_group && leaf_path(child, leaf, out, size, len + (size_t)m))
            return 1;
    }
    return 0;
}

/* In trainer mode the trainer flattens groups by leaf name, so a leaf name
 * may appear once in the whole spec. */
static int check_unique_leaves(struct compile_ctx *c)
{
    sweep_spec *s = c->spec;

    for (size_t i = 0; i < s->leaf_count; i++) {
        for (size_t j = i + 1; j < s->leaf_count; j++) {
            char first[PATH_MAX_BYTES], second[PATH_MAX_BYTES];

            if (strcmp(s->leaves[i]->name, s->leaves[j]->name) != 0)
                continue;
            if (!leaf_path(&s->root, s->leaves[i], first, sizeof(first), 0))
                snprintf(first, sizeof(first), "parameters");
            if (!leaf_path(&s->root, s->leaves[j], second, sizeof(second), 0))
                snprintf(second, sizeof(second), "parameters");
            return fail(c, second, "the leaf name \"%s\" is also used at %s; the trainer "
                                   "flattens nested groups by leaf name, so each name may "
                                   "appear once", s->leaves[j]->name, first);
        }
    }
    return 0;
}

/* Computes each leaf's grid points and the grid size. */
static int compute_grid(struct compile_ctx *c)
{
    sweep_spec *s = c->spec;
    uint64_t size = 1;

    for (size_t i = 0; i < s->leaf_count; i++) {
        struct spec_node *leaf = s->leaves[i];
        char path[PATH_MAX_BYTES];

        if (!leaf_path(&s->root, leaf, path, sizeof(path), 0))
            snprintf(path, sizeof(path), "parameters");

        switch (leaf->dist) {
        case DIST_CONSTANT:
            leaf->grid_points = 1;
            break;
        case DIST_CATEGORICAL: {
            /* Drop repeated values in place, keeping first occurrences. */
            size_t unique_count = 0;
            for (size_t j = 0; j < leaf->value_count; j++) {
                size_t k;
                for (k = 0; k < unique_count; k++) {
                    if (spec_values_equal(leaf->values[k], leaf->values[j]))
                        break;
                }
                if (k == unique_count)
                    leaf->values[unique_count++] = leaf->values[j];
            }
            leaf->value_count = unique_count;
            leaf->grid_points = unique_count;
            break;
        }
        case DIST_INT_UNIFORM:
            leaf->grid_points = (uint64_t)(leaf->max - leaf->min) + 1;
            break;
        case DIST_Q_UNIFORM:
            leaf->grid_points = spec_q_grid_points(leaf->min, leaf->max, leaf->q);
            if (leaf->grid_points == 0)
                return fail(c, path, "q_uniform in a grid gives 2^53 or more points; use a "
                                     "larger q");
            break;
        default:
            return fail(c, path, "internal error: a continuous distribution in a grid");
        }

        if (size > SPEC_MAX_GRID_POINTS / leaf->grid_points)
            return fail(c, path, "the grid has more than 2^63 points with this parameter; "
                                 "use fewer values or method random");
        size *= leaf->grid_points;
    }
    s->grid_size = size;
    return 0;
}

/* ---- Top level ---- */

static int compile_metric(struct compile_ctx *c, const cJSON *metric)
{
    sweep_spec *s = c->spec;
    char path[PATH_MAX_BYTES + 64];
    const cJSON *name, *goal;
    unsigned seen = 0;
    int found;

    if (!cJSON_IsObject(metric))
        return fail(c, "metric", "expected an object such as {\"name\": \"val_loss\", \"goal\": \"minimize\"}");
    /* Key paths below are relative to "metric". */
    snprintf(c->path, sizeof(c->path), "metric");
    for (const cJSON *key = metric->child; key; key = key->next) {
        int i = find_word(key->string, metric_keys, METRIC_KEY_COUNT);
        if (i < 0)
            return fail_unknown_key(c, key->string, metric_keys, METRIC_KEY_COUNT, "metric");
        if (seen & (1u << i))
            return fail_repeated_key(c, key->string);
        seen |= 1u << i;
    }

    name = cJSON_GetObjectItemCaseSensitive(metric, "name");
    if (name) {
        if (!cJSON_IsString(name) || name->valuestring[0] == '\0' || strlen(name->valuestring) > 128)
            return fail(c, key_path(c, "name", path, sizeof(path)),
                        "expected a metric name of 1 to 128 bytes, such as \"val_loss\"");
        free(s->metric_name);
        s->metric_name = strdup(name->valuestring);
        if (!s->metric_name)
            return fail(c, c->path, "out of memory");
    }
    goal = cJSON_GetObjectItemCaseSensitive(metric, "goal");
    if (goal) {
        if (cJSON_IsString(goal) && strcmp(goal->valuestring, "maximize") == 0)
            s->maximize = 1;
        else if (!cJSON_IsString(goal) || strcmp(goal->valuestring, "minimize") != 0)
            return fail(c, key_path(c, "goal", path, sizeof(path)),
                        "expected \"minimize\" or \"maximize\"");
    }
    found = get_number(c, metric, "target", &s->target);
    if (found < 0)
        return -1;
    s->has_target = found;
    c->path[0] = '\0';
    return 0;
}

static int compile_method(struct compile_ctx *c, const cJSON *method)
{
    if (!method)
        return fail(c, "method", "missing; use \"grid\" or \"random\"");
    if (!cJSON_IsString(method))
        return fail(c, "method", "expected the string \"grid\" or \"random\"");
    if (strcmp(method->valuestring, "grid") == 0)
        c->spec->method = SPEC_GRID;
    else if (strcmp(method->valuestring, "random") == 0)
        c->spec->method = SPEC_RANDOM;
    else if (strcmp(method->valuestring, "bayes") == 0)
        return fail(c, "method", "bayes is not supported yet; use \"grid\" or \"random\"");
    else
        return fail(c, "method", "unknown method \"%s\"; use \"grid\" or \"random\"", method->valuestring);
    return 0;
}

/* Checks the top-level keys, rejecting the W&B keys that have no meaning
 * here with a specific reason. */
static int check_top_keys(struct compile_ctx *c, const cJSON *spec)
{
    unsigned seen = 0;

    for (const cJSON *key = spec->child; key; key = key->next) {
        const char *k = key->string;
        int i = find_word(k, top_keys, TOP_KEY_COUNT);

        if (i >= 0) {
            if (seen & (1u << i))
                return fail_repeated_key(c, k);
            seen |= 1u << i;
            continue;
        }
        if (strcmp(k, "program") == 0 || strcmp(k, "command") == 0)
            return fail(c, k, "external programs are not supported: sweepd trains every trial with "
                              "its built-in trainer; remove \"%s\"", k);
        if (strcmp(k, "early_terminate") == 0)
            return fail(c, k, "early termination is not supported yet; remove it");
        if (strcmp(k, "project") == 0 || strcmp(k, "entity") == 0)
            return fail(c, k, "W&B projects and entities have no meaning in sweepd; remove it");
        return fail_unknown_key(c, k, top_keys, TOP_KEY_COUNT, "the spec");
    }
    return 0;
}

static int compile_top(struct compile_ctx *c, const cJSON *spec)
{
    sweep_spec *s = c->spec;
    const cJSON *item;
    double v;
    int found;

    if (!cJSON_IsObject(spec))
        return fail(c, "spec", "expected a JSON object with method and parameters");
    if (check_top_keys(c, spec) != 0)
        return -1;
    if (compile_method(c, cJSON_GetObjectItemCaseSensitive(spec, "method")) != 0)
        return -1;

    item = cJSON_GetObjectItemCaseSensitive(spec, "metric");
    if (item && compile_metric(c, item) != 0)
        return -1;

    item = cJSON_GetObjectItemCaseSensitive(spec, "name");
    if (item) {
        if (!cJSON_IsString(item) || strlen(item->valuestring) > 256)
            return fail(c, "name", "expected a string of at most 256 bytes");
        s->name = strdup(item->valuestring);
        if (!s->name)
            return fail(c, "name", "out of memory");
    }
    item = cJSON_GetObjectItemCaseSensitive(spec, "description");
    if (item && !cJSON_IsString(item))
        return fail(c, "description", "expected a string");

    found = get_integer(c, spec, "run_cap", 1, EXACT_INT_MAX, &v);
    if (found < 0)
        return -1;
    s->has_run_cap = found;
    s->run_cap = found ? (uint64_t)v : 0;

    found = get_integer(c, spec, "seed", 0, EXACT_INT_MAX, &v);
    if (found < 0)
        return -1;
    s->has_seed = found;
    s->seed = found ? (uint64_t)v : 0;

    found = get_integer(c, spec, "max_failures", 1, 1000000, &v);
    if (found < 0)
        return -1;
    s->max_failures = found ? (int)v : 2;

    found = get_integer(c, spec, "max_requeues", 0, 1000000, &v);
    if (found < 0)
        return -1;
    s->max_requeues = found ? (int)v : 20;

    found = get_number(c, spec, "ticket_threshold", &s->threshold);
    if (found < 0)
        return -1;
    s->has_threshold = found;

    /* Parameters: the tree, then the cross-leaf checks. */
    item = cJSON_GetObjectItemCaseSensitive(spec, "parameters");
    if (!item)
        return fail(c, "parameters", "missing; add the parameters to sweep, such as "
                                     "{\"lr\": {\"values\": [0.001, 0.01]}}");
    s->leaves = calloc(SPEC_MAX_PARAMETERS, sizeof(*s->leaves));
    if (!s->leaves)
        return fail(c, "parameters", "out of memory");
    s->root.is_group = 1;
    if (compile_group(c, item, &s->root, 1) != 0)
        return -1;
    if (!c->generic && check_unique_leaves(c) != 0)
        return -1;
    if (s->method == SPEC_GRID && compute_grid(c) != 0)
        return -1;
    return 0;
}

int spec_compile(const cJSON *spec, const json_kinds *kinds, int generic,
                 sweep_spec **out, char *err, size_t err_size)
{
    struct compile_ctx c = { .kinds = kinds, .generic = generic, .err = err, .err_size = err_size };
    sweep_spec *s;

    *out = NULL;
    if (err_size > 0)
        err[0] = '\0';
    s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_size, "spec: out of memory");
        return -1;
    }
    c.spec = s;
    s->max_failures = 2;
    s->max_requeues = 20;
    s->metric_name = strdup("val_loss");
    if (!s->metric_name) {
        spec_free(s);
        snprintf(err, err_size, "spec: out of memory");
        return -1;
    }

    if (compile_top(&c, spec) != 0) {
        spec_free(s);
        return -1;
    }
    s->canonical = json_kinds_print(spec, kinds);
    if (!s->canonical) {
        spec_free(s);
        snprintf(err, err_size, "spec: out of memory");
        return -1;
    }
    *out = s;
    return 0;
}

static void free_node(struct spec_node *node)
{
    for (size_t i = 0; i < node->child_count; i++)
        free_node(&node->children[i]);
    free(node->children);
    free(node->name);
    cJSON_Delete(node->values_doc);
    free(node->values);
    free(node->cumulative);
}

void spec_free(sweep_spec *s)
{
    if (!s)
        return;
    free_node(&s->root);
    free(s->leaves);
    cJSON_free(s->canonical);
    free(s->name);
    free(s->metric_name);
    for (size_t i = 0; i < s->warning_count; i++)
        free(s->warnings[i]);
    free(s->warnings);
    free(s);
}

/* ---- Accessors ---- */

size_t spec_warning_count(const sweep_spec *s)
{
    return s->warning_count;
}

const char *spec_warning(const sweep_spec *s, size_t i)
{
    return i < s->warning_count ? s->warnings[i] : NULL;
}

enum spec_method spec_method(const sweep_spec *s)
{
    return s->method;
}

int spec_trial_count(const sweep_spec *s, uint64_t *n)
{
    if (s->method == SPEC_GRID) {
        *n = s->has_run_cap && s->run_cap < s->grid_size ? s->run_cap : s->grid_size;
        return 1;
    }
    if (s->has_run_cap) {
        *n = s->run_cap;
        return 1;
    }
    return 0;
}

char *spec_canonical_text(const sweep_spec *s)
{
    size_t len = strlen(s->canonical);
    char *copy = cJSON_malloc(len + 1);

    if (copy)
        memcpy(copy, s->canonical, len + 1);
    return copy;
}

const char *spec_name(const sweep_spec *s)
{
    return s->name ? s->name : "";
}

const char *spec_metric_name(const sweep_spec *s)
{
    return s->metric_name;
}

int spec_metric_maximize(const sweep_spec *s)
{
    return s->maximize;
}

int spec_metric_target(const sweep_spec *s, double *target)
{
    if (s->has_target)
        *target = s->target;
    return s->has_target;
}

int spec_run_cap(const sweep_spec *s, uint64_t *cap)
{
    if (s->has_run_cap)
        *cap = s->run_cap;
    return s->has_run_cap;
}

int spec_seed(const sweep_spec *s, uint64_t *seed)
{
    if (s->has_seed)
        *seed = s->seed;
    return s->has_seed;
}

int spec_max_failures(const sweep_spec *s)
{
    return s->max_failures;
}

int spec_max_requeues(const sweep_spec *s)
{
    return s->max_requeues;
}

int spec_ticket_threshold(const sweep_spec *s, double *threshold)
{
    if (s->has_threshold)
        *threshold = s->threshold;
    return s->has_threshold;
}

/* Walks node's children depth first with path holding the names of the
 * groups above them, '.'-joined. */
static int each_categorical(const struct spec_node *node, char *path, size_t len, spec_name_fn fn, void *arg)
{
    for (size_t i = 0; i < node->child_count; i++) {
        const struct spec_node *child = &node->children[i];
        size_t name_len = strlen(child->name);
        size_t end = len ? len + 1 + name_len : name_len;
        if (end >= SPEC_MAX_PATH_BYTES)
            continue; /* cannot happen within SPEC_MAX_DEPTH and SPEC_MAX_NAME_BYTES */
        if (len)
            path[len] = '.';
        memcpy(path + (len ? len + 1 : 0), child->name, name_len + 1);
        int rc = 0;
        if (child->is_group)
            rc = each_categorical(child, path, end, fn, arg);
        else if (child->dist == DIST_CATEGORICAL && child->value_count > 1)
            rc = fn(path, arg);
        path[len] = '\0';
        if (rc != 0)
            return rc;
    }
    return 0;
}

int spec_each_categorical(const sweep_spec *s, spec_name_fn fn, void *arg)
{
    char path[SPEC_MAX_PATH_BYTES];
    path[0] = '\0';
    return each_categorical(&s->root, path, 0, fn, arg);
}
