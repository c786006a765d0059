/* Sweep spec tests: the validation table (valid specs and rejected ones with
 * the JSON path each error must name), integer-vs-float literal kinds, grid
 * order, de-duplication and exhaustion, huge grids, and canonical text.
 * Random sampling is covered by test_spec_random.c.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "check.h"
#include "json_kinds.h"
#include "spec.h"

/* Parses text and compiles it. Returns the spec, or NULL with err set. */
static sweep_spec *compile_text(const char *text, int generic, char *err, size_t err_size)
{
    cJSON *root = cJSON_ParseWithLength(text, strlen(text));
    json_kinds *kinds;
    sweep_spec *s = NULL;

    if (!root) {
        snprintf(err, err_size, "test: bad JSON in %s", text);
        return NULL;
    }
    kinds = json_kinds_scan(text, strlen(text), root);
    if (!kinds) {
        snprintf(err, err_size, "test: json_kinds_scan failed");
        cJSON_Delete(root);
        return NULL;
    }
    if (spec_compile(root, kinds, generic, &s, err, err_size) != 0)
        s = NULL;
    json_kinds_free(kinds);
    cJSON_Delete(root);
    return s;
}

struct validation_case {
    const char *spec;
    int generic;
    const char *error_prefix;   /* NULL: the spec is valid */
    const char *error_words;    /* a phrase the error must contain, or NULL */
};

static const struct validation_case cases[] = {
    /* Valid specs. */
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"values\":[0.001,0.01]}}}", 0, NULL, NULL },
    { "{\"method\":\"random\",\"run_cap\":10,\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":1e-5,\"max\":0.1}}}", 0, NULL, NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"min\":-0,\"max\":1.0}}}", 0, NULL, NULL },
    { "{\"method\":\"random\",\"metric\":{\"name\":\"val_loss\",\"goal\":\"minimize\",\"target\":1.5},\"name\":\"n\",\"description\":\"d\",\"seed\":7,\"max_failures\":3,\"max_requeues\":0,\"ticket_threshold\":2.5,\"parameters\":{\"optimizer\":{\"values\":[\"adam\",\"sm3\",\"shampoo\"],\"probabilities\":[0.5,0.25,0.25]}}}", 0, NULL, NULL },
    { "{\"method\":\"random\",\"parameters\":{\"g\":{\"parameters\":{\"lr\":{\"distribution\":\"normal\"},\"b1\":{\"distribution\":\"beta\",\"a\":2,\"b\":3}}}}}", 0, NULL, NULL },
    { "{\"method\":\"random\",\"parameters\":{\"x\":{\"distribution\":\"q_log_uniform\",\"min\":0,\"max\":5,\"q\":2}}}", 1, NULL, NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"anything\":{\"values\":[[1,2],{\"k\":null},true]}}}", 1, NULL, NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"n_layer\":{\"min\":1,\"max\":4},\"lr\":{\"distribution\":\"q_uniform\",\"min\":0.1,\"max\":1.0,\"q\":0.1}}}", 0, NULL, NULL },

    /* Log forms: min 0, min -1, min == max, min > max, min 1e-400. */
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":0,\"max\":0.1}}}", 0,
      "parameters.lr.min: log_uniform_values needs min > 0, got 0;", "positive min" },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":-1,\"max\":0.1}}}", 0,
      "parameters.lr.min: log_uniform_values needs min > 0, got -1;", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":0.1,\"max\":0.1}}}", 0,
      "parameters.lr.max: log_uniform_values needs min < max", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":0.2,\"max\":0.1}}}", 0,
      "parameters.lr.max: log_uniform_values needs min < max", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":1e-400,\"max\":0.1}}}", 0,
      "parameters.lr.min: log_uniform_values needs min > 0", "underflows" },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform\",\"min\":-10,\"max\":1000}}}", 0,
      "parameters.lr.max: log_uniform takes natural-log exponents", "exp(1000)" },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"inv_log_uniform\",\"min\":-1000,\"max\":1}}}", 1,
      "parameters.lr.min: inv_log_uniform takes natural-log exponents", NULL },
    /* A continuous distribution in a grid, explicit and inferred. */
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"distribution\":\"uniform\",\"min\":0,\"max\":1}}}", 0,
      "parameters.lr: method grid needs a finite set of values, but uniform is continuous", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"g\":{\"parameters\":{\"lr\":{\"min\":0.0,\"max\":1}}}}}", 0,
      "parameters.g.parameters.lr: method grid needs a finite set", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"values\":[1,2],\"probabilities\":[0.5,0.5]}}}", 0,
      "parameters.lr.probabilities: method grid tries every value once", NULL },
    /* Non-finite numbers. */
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"min\":0.1,\"max\":1e400}}}", 0,
      "parameters.lr.max: the number is not finite", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"values\":[0.1,-1e400]}}}", 0,
      "parameters.lr.values: the number is not finite", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"value\":1e999}}}", 0,
      "parameters.lr.value: the number is not finite", NULL },
    { "{\"method\":\"random\",\"metric\":{\"target\":1e400},\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "metric.target: the number is not finite", NULL },
    /* Other numeric rules. */
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"min\":0.5,\"max\":0.5}}}", 0,
      "parameters.lr.max: uniform needs min < max", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"n_layer\":{\"min\":4,\"max\":2}}}", 0,
      "parameters.n_layer.max: int_uniform needs min < max", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"normal\",\"sigma\":-1}}}", 0,
      "parameters.lr.sigma: normal needs sigma >= 0, got -1;", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"q_uniform\",\"min\":0,\"max\":1,\"q\":0}}}", 0,
      "parameters.lr.q: q_uniform needs q > 0, got 0;", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"q_normal\",\"q\":-0.5}}}", 0,
      "parameters.lr.q: q_normal needs q > 0", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"x\":{\"distribution\":\"q_uniform\",\"min\":0,\"max\":1,\"q\":1e-300}}}", 1,
      "parameters.x.q: q 1e-300 is too small", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"b1\":{\"distribution\":\"beta\",\"a\":0}}}", 0,
      "parameters.b1.a: beta needs a > 0", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"x\":{\"distribution\":\"log_normal\",\"mu\":700,\"sigma\":2}}}", 1,
      "parameters.x.sigma: log_normal draws exp(mu + sigma z)", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"x\":{\"distribution\":\"int_uniform\",\"min\":0.5,\"max\":3}}}", 1,
      "parameters.x.min: expected an integer", NULL },
    /* Lists. */
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"values\":[]}}}", 0,
      "parameters.lr.values: the list is empty", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"values\":[0.1,0.2],\"probabilities\":[0.5]}}}", 0,
      "parameters.lr.probabilities: 1 probabilities for 2 values", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"values\":[0.1,0.2],\"probabilities\":[0.5,0.6]}}}", 0,
      "parameters.lr.probabilities: the probabilities sum to 1.1", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"values\":[0.1,0.2],\"probabilities\":[1.5,-0.5]}}}", 0,
      "parameters.lr.probabilities[1]: expected a finite number >= 0", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"values\":[0.1,0.2],\"probabilities\":[0.5,\"0.5\"]}}}", 0,
      "parameters.lr.probabilities[1]:", NULL },
    /* Keys and names. */
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"valeus\":[0.1]}}}", 0,
      "parameters.lr.valeus: unknown key in a parameter; did you mean \"values\"?", NULL },
    { "{\"method\":\"random\",\"paramters\":{}}", 0,
      "paramters: unknown key in the spec; did you mean \"parameters\"?", NULL },
    { "{\"method\":\"random\",\"metric\":{\"nmae\":\"x\"},\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "metric.nmae: unknown key in metric; did you mean \"name\"?", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"unifrom\",\"min\":0,\"max\":1}}}", 0,
      "parameters.lr.distribution: unknown distribution \"unifrom\"; did you mean \"uniform\"?", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"uniform\",\"min\":0,\"max\":1,\"q\":0.1}}}", 0,
      "parameters.lr.q: uniform does not use q", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":0.1}}}", 0,
      "parameters.lr.max: missing; log_uniform_values needs max", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"min\":0.1}}}", 0,
      "parameters.lr: min and max must be given together", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{}}}", 0,
      "parameters.lr: no distribution", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":0.1}}", 0,
      "parameters.lr: expected an object", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"1lr\":{\"value\":0.1}}}", 1,
      "parameters.1lr: invalid parameter name", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"l r\":{\"value\":0.1}}}", 1,
      "parameters.l r: invalid parameter name", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"learning_rate\":{\"value\":0.1}}}", 0,
      "parameters.learning_rate: \"learning_rate\" is not a trainer hyperparameter", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"n_layers\":{\"value\":2}}}", 0,
      "parameters.n_layers: \"n_layers\" is not a trainer hyperparameter; did you mean \"n_layer\"?", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"value\":0.1},\"g\":{\"parameters\":{\"lr\":{\"value\":0.2}}}}}", 0,
      "parameters.lr: the leaf name \"lr\" is also used at parameters.g.parameters.lr;", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"value\":0.1,\"value\":0.2}}}", 0,
      "parameters.lr.value: key appears twice", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"g\":{\"parameters\":{\"lr\":{\"value\":0.1}},\"value\":1}}}", 0,
      "parameters.g: a group with nested parameters takes no other keys", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"g\":{\"parameters\":{}}}}", 0,
      "parameters.g.parameters: no parameters", NULL },
    /* Trainer types and ranges. */
    { "{\"method\":\"grid\",\"parameters\":{\"optimizer\":{\"values\":[\"adam\",\"sgd\"]}}}", 0,
      "parameters.optimizer.values[1]: ", "adam|adamw|sm3|shampoo" },
    { "{\"method\":\"random\",\"parameters\":{\"n_layer\":{\"min\":1.0,\"max\":4.0}}}", 0,
      "parameters.n_layer: n_layer is an integer hyperparameter, but uniform draws non-integers", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"optimizer\":{\"min\":0,\"max\":3}}}", 0,
      "parameters.optimizer: optimizer takes string values", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"min\":0.0,\"max\":100.0}}}", 0,
      "parameters.lr.max: ", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"lr\":{\"value\":[0.1]}}}", 0,
      "parameters.lr.value: lr takes a number, string or boolean, not a JSON array", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"n_layer\":{\"values\":[2,2.5]}}}", 0,
      "parameters.n_layer.values[1]: ", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"n_layer\":{\"distribution\":\"q_uniform\",\"min\":1,\"max\":4,\"q\":0.5}}}", 0,
      "parameters.n_layer: n_layer is an integer hyperparameter, but q_uniform draws non-integers", NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"n_layer\":{\"distribution\":\"q_uniform\",\"min\":1,\"max\":4,\"q\":1}}}", 0, NULL, NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"nesterov\":{\"values\":[true,false]},\"lr_schedule\":{\"values\":[\"cosine\",\"linear\"]}}}", 0, NULL, NULL },
    { "{\"method\":\"grid\",\"parameters\":{\"nesterov\":{\"values\":[\"maybe\"]}}}", 0,
      "parameters.nesterov.values[0]: ", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"dataset\":{\"value\":3}}}", 0,
      "parameters.dataset.value: ", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_uniform\",\"min\":-10,\"max\":5}}}", 0,
      "parameters.lr.max: ", NULL },
    /* Top level. */
    { "{\"parameters\":{\"lr\":{\"value\":0.1}}}", 0, "method: missing", NULL },
    { "{\"method\":\"bayes\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "method: bayes is not supported yet", NULL },
    { "{\"method\":\"hyperband\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "method: unknown method \"hyperband\"", NULL },
    { "{\"method\":\"random\",\"program\":\"train.py\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "program: external programs are not supported", NULL },
    { "{\"method\":\"random\",\"command\":[\"x\"],\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "command: external programs are not supported", NULL },
    { "{\"method\":\"random\",\"early_terminate\":{},\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "early_terminate: early termination is not supported yet", NULL },
    { "{\"method\":\"random\"}", 0, "parameters: missing", NULL },
    { "{\"method\":\"random\",\"run_cap\":0,\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "run_cap: expected an integer in [1,", NULL },
    { "{\"method\":\"random\",\"run_cap\":2.5,\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "run_cap: expected an integer", NULL },
    { "{\"method\":\"random\",\"seed\":-1,\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "seed: expected an integer in [0,", NULL },
    { "{\"method\":\"random\",\"max_failures\":0,\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "max_failures: expected an integer in [1,", NULL },
    { "{\"method\":\"random\",\"metric\":{\"goal\":\"lower\"},\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "metric.goal: expected \"minimize\" or \"maximize\"", NULL },
    { "{\"method\":\"random\",\"ticket_threshold\":\"2\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "ticket_threshold: expected a number", NULL },
    { "[1,2]", 0, "spec: expected a JSON object", NULL },
    { "{\"method\":\"random\",\"method\":\"grid\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "method: key appears twice", NULL },
    { "{\"method\":\"random\",\"metric\":{\"name\":\"a\",\"name\":\"b\"},\"parameters\":{\"lr\":{\"value\":0.1}}}", 0,
      "metric.name: key appears twice", NULL },
    { "{\"method\":\"random\",\"parameters\":{\"lr\":{\"value\":0.1},\"lr\":{\"value\":0.2}}}", 0,
      "parameters.lr: key appears twice", NULL },
};

static void test_validation_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct validation_case *tc = &cases[i];
        char err[1024] = "";
        sweep_spec *s = compile_text(tc->spec, tc->generic, err, sizeof(err));

        if (!tc->error_prefix) {
            CHECK(s != NULL);
            if (!s)
                fprintf(stderr, "case %zu: expected valid, got: %s\n", i, err);
        } else {
            CHECK(s == NULL);
            CHECK(strncmp(err, tc->error_prefix, strlen(tc->error_prefix)) == 0);
            if (tc->error_words)
                CHECK(strstr(err, tc->error_words) != NULL);
            if (s || strncmp(err, tc->error_prefix, strlen(tc->error_prefix)) != 0 ||
                (tc->error_words && !strstr(err, tc->error_words)))
                fprintf(stderr, "case %zu: expected \"%s\", got \"%s\"\n", i, tc->error_prefix, err);
        }
        spec_free(s);
    }
}

/* The nth parameter set as compact text. */
static char *trial_text(const sweep_spec *s, uint64_t seed, uint64_t index)
{
    cJSON *params = spec_trial_params(s, seed, index);
    char *text = params ? cJSON_PrintUnformatted(params) : NULL;
    cJSON_Delete(params);
    return text;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Counts distinct strings among texts[0..n) (sorts texts). */
static size_t count_distinct(char **texts, size_t n)
{
    size_t distinct = n ? 1 : 0;
    qsort(texts, n, sizeof(*texts), compare_strings);
    for (size_t i = 1; i < n; i++)
        distinct += strcmp(texts[i - 1], texts[i]) != 0;
    return distinct;
}

static void test_grid_order(void)
{
    char err[512];
    /* Names sort to a, b, c: c varies fastest. Values keep list order. */
    sweep_spec *s = compile_text("{\"method\":\"grid\",\"parameters\":{"
                                 "\"c\":{\"values\":[\"x\",\"y\"]},"
                                 "\"a\":{\"values\":[2,1]},"
                                 "\"b\":{\"value\":true}}}", 1, err, sizeof(err));
    const char *expected[] = {
        "{\"a\":2,\"b\":true,\"c\":\"x\"}", "{\"a\":2,\"b\":true,\"c\":\"y\"}",
        "{\"a\":1,\"b\":true,\"c\":\"x\"}", "{\"a\":1,\"b\":true,\"c\":\"y\"}",
    };
    uint64_t n = 0;

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_method(s) == SPEC_GRID);
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 4);
    for (uint64_t i = 0; i < 4; i++) {
        char *text = trial_text(s, 0, i);
        CHECK_STR(text, expected[i]);
        cJSON_free(text);
    }
    spec_free(s);
}

static void test_grid_dedup_and_kinds(void)
{
    char err[512];
    /* 1 and 1.0 are one value; -0 and 0 too; "1" is a string, so distinct. */
    sweep_spec *s = compile_text("{\"method\":\"grid\",\"parameters\":{"
                                 "\"x\":{\"values\":[1,1.0,2,\"1\",0,-0,1e0]}}}", 1, err, sizeof(err));
    uint64_t n = 0;

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 4);
    spec_free(s);

    /* {"min":0,"max":1} is int_uniform, a 2-point grid; {"min":0.0,...} is
     * uniform and rejected in a grid (see the table). */
    s = compile_text("{\"method\":\"grid\",\"parameters\":{\"x\":{\"min\":0,\"max\":1}}}", 1, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 2);
    spec_free(s);
}

static void test_grid_q_uniform(void)
{
    char err[512];
    /* 0 to 1 by 0.1 excluding 1: ten points, the last 0.9. */
    sweep_spec *s = compile_text("{\"method\":\"grid\",\"parameters\":{\"x\":{\"distribution\":\"q_uniform\","
                                 "\"min\":0,\"max\":1,\"q\":0.1}}}", 1, err, sizeof(err));
    uint64_t n = 0;

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 10);
    char *text = trial_text(s, 0, 3);
    CHECK_STR(text, "{\"x\":0.3}");
    cJSON_free(text);
    text = trial_text(s, 0, 9);
    CHECK_STR(text, "{\"x\":0.9}");
    cJSON_free(text);
    spec_free(s);
}

static void test_grid_600_exhaustion(void)
{
    char err[512];
    /* 10 x 6 x 10 = 600 points, with a run_cap above the size. */
    sweep_spec *s = compile_text("{\"method\":\"grid\",\"run_cap\":1000,\"parameters\":{"
                                 "\"a\":{\"min\":0,\"max\":9},"
                                 "\"b\":{\"values\":[\"p\",\"q\",\"r\",\"s\",\"t\",\"u\"]},"
                                 "\"c\":{\"distribution\":\"q_uniform\",\"min\":0,\"max\":5,\"q\":0.5}}}",
                                 1, err, sizeof(err));
    uint64_t n = 0;
    char *texts[600];

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 600);
    for (size_t i = 0; i < 600; i++) {
        texts[i] = trial_text(s, 0, i);
        CHECK(texts[i] != NULL);
        if (!texts[i])
            texts[i] = strdup("");
    }
    CHECK(count_distinct(texts, 600) == 600);
    for (size_t i = 0; i < 600; i++)
        free(texts[i]);
    spec_free(s);

    /* run_cap below the grid size caps the count. */
    s = compile_text("{\"method\":\"grid\",\"run_cap\":5,\"parameters\":{\"a\":{\"min\":0,\"max\":9}}}",
                     1, err, sizeof(err));
    CHECK(s != NULL);
    if (s) {
        CHECK(spec_trial_count(s, &n) == 1);
        CHECK(n == 5);
    }
    spec_free(s);
}

static void test_grid_nested(void)
{
    char err[512];
    /* Two values at the top, a group with two values and a constant, and a
     * group inside it with two values: 2 x 2 x 2 = 8 trials. */
    sweep_spec *s = compile_text(
        "{\"method\":\"grid\",\"parameters\":{"
        "\"optimizer\":{\"values\":[\"adam\",\"sm3\"]},"
        "\"train\":{\"parameters\":{"
        "  \"lr\":{\"values\":[0.001,0.01]},"
        "  \"steps\":{\"value\":50},"
        "  \"model\":{\"parameters\":{\"n_layer\":{\"values\":[1,2]}}}}}}}",
        0, err, sizeof(err));
    uint64_t n = 0;
    char *texts[8];

    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "nested: %s\n", err);
        return;
    }
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == 8);
    for (size_t i = 0; i < 8; i++) {
        cJSON *params = spec_trial_params(s, 0, i);
        const cJSON *train = cJSON_GetObjectItemCaseSensitive(params, "train");
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(train, "model");
        const cJSON *steps = cJSON_GetObjectItemCaseSensitive(train, "steps");

        CHECK(cJSON_IsObject(train));
        CHECK(cJSON_IsObject(model));
        CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(model, "n_layer")));
        CHECK(cJSON_IsNumber(steps));
        CHECK(cJSON_GetNumberValue(steps) == 50);
        CHECK(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(params, "optimizer")));
        texts[i] = cJSON_PrintUnformatted(params);
        cJSON_Delete(params);
    }
    /* Order: optimizer, then train.lr, train.model.n_layer (train.steps is
     * constant); the last leaf in sorted order varies fastest. */
    CHECK_STR(texts[0], "{\"optimizer\":\"adam\",\"train\":{\"lr\":0.001,\"model\":{\"n_layer\":1},\"steps\":50}}");
    CHECK_STR(texts[1], "{\"optimizer\":\"adam\",\"train\":{\"lr\":0.001,\"model\":{\"n_layer\":2},\"steps\":50}}");
    CHECK_STR(texts[7], "{\"optimizer\":\"sm3\",\"train\":{\"lr\":0.01,\"model\":{\"n_layer\":2},\"steps\":50}}");
    CHECK(count_distinct(texts, 8) == 8);
    for (size_t i = 0; i < 8; i++)
        cJSON_free(texts[i]);
    spec_free(s);
}

static void test_grid_huge(void)
{
    char err[512];
    /* 100^6 = 10^12 points, computed without materialising anything. */
    sweep_spec *s = compile_text("{\"method\":\"grid\",\"parameters\":{"
                                 "\"a\":{\"min\":0,\"max\":99},\"b\":{\"min\":0,\"max\":99},"
                                 "\"c\":{\"min\":0,\"max\":99},\"d\":{\"min\":0,\"max\":99},"
                                 "\"e\":{\"min\":0,\"max\":99},\"f\":{\"min\":0,\"max\":99}}}",
                                 1, err, sizeof(err));
    uint64_t n = 0;

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_trial_count(s, &n) == 1);
    CHECK(n == UINT64_C(1000000000000));
    char *text = trial_text(s, 0, UINT64_C(999999999999));
    CHECK_STR(text, "{\"a\":99,\"b\":99,\"c\":99,\"d\":99,\"e\":99,\"f\":99}");
    cJSON_free(text);
    text = trial_text(s, 0, UINT64_C(123456789012));
    CHECK_STR(text, "{\"a\":12,\"b\":34,\"c\":56,\"d\":78,\"e\":90,\"f\":12}");
    cJSON_free(text);
    spec_free(s);

    /* 2^62 points are accepted (the cap is 2^63). */
    s = compile_text("{\"method\":\"grid\",\"parameters\":{"
                     "\"a\":{\"min\":0,\"max\":2147483647},\"b\":{\"min\":0,\"max\":2147483647}}}",
                     1, err, sizeof(err));
    CHECK(s != NULL);
    if (s) {
        CHECK(spec_trial_count(s, &n) == 1);
        CHECK(n == (UINT64_C(1) << 62));
        text = trial_text(s, 0, (UINT64_C(1) << 62) - 1);
        CHECK_STR(text, "{\"a\":2147483647,\"b\":2147483647}");
        cJSON_free(text);
    }
    spec_free(s);

    /* 2^53 x 2^53 overflows 64 bits: rejected, not wrapped. */
    s = compile_text("{\"method\":\"grid\",\"parameters\":{"
                     "\"a\":{\"min\":0,\"max\":9007199254740991},\"b\":{\"min\":0,\"max\":9007199254740991}}}",
                     1, err, sizeof(err));
    CHECK(s == NULL);
    CHECK_STR(err, "parameters.b: the grid has more than 2^63 points with this parameter; "
                   "use fewer values or method random");
    spec_free(s);
}

static void test_accessors_and_canonical(void)
{
    const char *text = "{\"method\":\"random\",\"name\":\"cmp\",\"run_cap\":12,\"seed\":99,"
                       "\"max_failures\":4,\"max_requeues\":7,\"ticket_threshold\":1.0,"
                       "\"metric\":{\"name\":\"val_loss\",\"goal\":\"maximize\",\"target\":2.0},"
                       "\"parameters\":{\"x\":{\"min\":0.0,\"max\":1.0},\"y\":{\"min\":0,\"max\":1}}}";
    char err[512];
    sweep_spec *s = compile_text(text, 1, err, sizeof(err));
    uint64_t u = 0;
    double d = 0;

    CHECK(s != NULL);
    if (!s)
        return;
    CHECK(spec_method(s) == SPEC_RANDOM);
    CHECK_STR(spec_name(s), "cmp");
    CHECK_STR(spec_metric_name(s), "val_loss");
    CHECK(spec_metric_maximize(s) == 1);
    CHECK(spec_metric_target(s, &d) == 1);
    CHECK(d == 2.0);
    CHECK(spec_run_cap(s, &u) == 1);
    CHECK(u == 12);
    u = 0;
    CHECK(spec_trial_count(s, &u) == 1);
    CHECK(u == 12);
    CHECK(spec_seed(s, &u) == 1);
    CHECK(u == 99);
    CHECK(spec_max_failures(s) == 4);
    CHECK(spec_max_requeues(s) == 7);
    CHECK(spec_ticket_threshold(s, &d) == 1);
    CHECK(d == 1.0);

    /* The canonical text keeps 0.0 as a float, so a re-compile draws the
     * same trials. */
    char *canonical = spec_canonical_text(s);
    CHECK(canonical != NULL);
    CHECK(canonical == NULL || strstr(canonical, "\"min\":0.0") != NULL);
    sweep_spec *again = canonical ? compile_text(canonical, 1, err, sizeof(err)) : NULL;
    CHECK(again != NULL);
    if (again) {
        for (uint64_t i = 0; i < 20; i++) {
            char *a = trial_text(s, 5, i), *b = trial_text(again, 5, i);
            CHECK_STR(a, b ? b : "(null)");
            cJSON_free(a);
            cJSON_free(b);
        }
        char *canonical2 = spec_canonical_text(again);
        CHECK_STR(canonical2, canonical ? canonical : "(null)");
        cJSON_free(canonical2);
    }
    cJSON_free(canonical);
    spec_free(again);
    spec_free(s);

    /* Defaults. */
    s = compile_text("{\"method\":\"random\",\"parameters\":{\"lr\":{\"value\":0.1}}}", 0, err, sizeof(err));
    CHECK(s != NULL);
    if (!s)
        return;
    CHECK_STR(spec_name(s), "");
    CHECK_STR(spec_metric_name(s), "val_loss");
    CHECK(spec_metric_maximize(s) == 0);
    CHECK(spec_metric_target(s, &d) == 0);
    CHECK(spec_run_cap(s, &u) == 0);
    CHECK(spec_trial_count(s, &u) == 0);
    CHECK(spec_seed(s, &u) == 0);
    CHECK(spec_max_failures(s) == 2);
    CHECK(spec_max_requeues(s) == 20);
    CHECK(spec_ticket_threshold(s, &d) == 0);
    spec_free(s);
}

/* The daemon scans the whole request line once and compiles the "spec"
 * member with that table: kinds must still decide int_uniform vs uniform. */
static void test_kinds_from_enclosing_request(void)
{
    const char *line = "{\"op\":\"submit\",\"id\":7,\"spec\":{\"method\":\"grid\",\"parameters\":"
                       "{\"x\":{\"min\":0,\"max\":3}}},\"more\":[1.5]}";
    const char *float_line = "{\"id\":8,\"spec\":{\"method\":\"grid\",\"parameters\":"
                             "{\"x\":{\"min\":0,\"max\":3.0}}}}";
    cJSON *root = cJSON_Parse(line);
    json_kinds *kinds = root ? json_kinds_scan(line, strlen(line), root) : NULL;
    sweep_spec *s = NULL;
    char err[512] = "";
    uint64_t n = 0;

    CHECK(kinds != NULL);
    CHECK(spec_compile(cJSON_GetObjectItem(root, "spec"), kinds, 1, &s, err, sizeof(err)) == 0);
    CHECK(s != NULL);
    if (s) {
        CHECK(spec_trial_count(s, &n) == 1);
        CHECK(n == 4);
        char *canonical = spec_canonical_text(s);
        CHECK_STR(canonical, "{\"method\":\"grid\",\"parameters\":{\"x\":{\"min\":0,\"max\":3}}}");
        cJSON_free(canonical);
    }
    spec_free(s);
    json_kinds_free(kinds);
    cJSON_Delete(root);

    /* With max 3.0 the parameter is uniform, which a grid rejects. */
    root = cJSON_Parse(float_line);
    kinds = root ? json_kinds_scan(float_line, strlen(float_line), root) : NULL;
    s = NULL;
    CHECK(kinds != NULL);
    CHECK(spec_compile(cJSON_GetObjectItem(root, "spec"), kinds, 1, &s, err, sizeof(err)) == -1);
    CHECK(s == NULL);
    CHECK(strncmp(err, "parameters.x: method grid needs a finite set", 44) == 0);
    json_kinds_free(kinds);
    cJSON_Delete(root);
}

static void test_limits(void)
{
    char err[512];
    char *text = malloc(64 * 1024);
    size_t len = 0;

    CHECK(text != NULL);
    if (!text)
        return;

    /* 1001 values. */
    len = (size_t)sprintf(text, "{\"method\":\"grid\",\"parameters\":{\"x\":{\"values\":[0");
    for (int i = 1; i <= SPEC_MAX_VALUES; i++)
        len += (size_t)sprintf(text + len, ",%d", i);
    sprintf(text + len, "]}}}");
    sweep_spec *s = compile_text(text, 1, err, sizeof(err));
    CHECK(s == NULL);
    CHECK(strncmp(err, "parameters.x.values: 1001 values, at most 1000", 46) == 0);
    spec_free(s);

    /* Nine nested groups. */
    len = (size_t)sprintf(text, "{\"method\":\"grid\",\"parameters\":");
    for (int i = 0; i < SPEC_MAX_DEPTH; i++)
        len += (size_t)sprintf(text + len, "{\"g\":{\"parameters\":");
    len += (size_t)sprintf(text + len, "{\"x\":{\"value\":1}}");
    for (int i = 0; i < SPEC_MAX_DEPTH; i++)
        len += (size_t)sprintf(text + len, "}}");
    sprintf(text + len, "}");
    s = compile_text(text, 1, err, sizeof(err));
    CHECK(s == NULL);
    CHECK(strstr(err, "nested more than 8 groups deep") != NULL);
    spec_free(s);

    /* 20000 copies of one key: rejected by the count before any quadratic
     * duplicate search. */
    {
        size_t big_size = 20000 * 20 + 128;
        char *big = malloc(big_size);
        CHECK(big != NULL);
        if (big) {
            len = (size_t)sprintf(big, "{\"method\":\"grid\",\"parameters\":{\"x\":{\"value\":0}");
            for (int i = 0; i < 20000; i++)
                len += (size_t)sprintf(big + len, ",\"x\":{\"value\":0}");
            sprintf(big + len, "}}");
            s = compile_text(big, 1, err, sizeof(err));
            CHECK(s == NULL);
            CHECK(strstr(err, "more than 256 parameters") != NULL);
            spec_free(s);
            free(big);
        }
    }

    /* 257 parameters. */
    len = (size_t)sprintf(text, "{\"method\":\"grid\",\"parameters\":{\"p0\":{\"value\":0}");
    for (int i = 1; i <= SPEC_MAX_PARAMETERS; i++)
        len += (size_t)sprintf(text + len, ",\"p%d\":{\"value\":%d}", i, i);
    sprintf(text + len, "}}");
    s = compile_text(text, 1, err, sizeof(err));
    CHECK(s == NULL);
    CHECK(strstr(err, "more than 256 parameters") != NULL);
    spec_free(s);
    free(text);
}

/* Normal, log-normal and beta draws outside the trainer's range warn with
 * an estimated share; bounded forms, in-range priors and generic specs do not. */
static void test_range_warnings(void)
{
    char err[1024];
    sweep_spec *s;

    /* lr's range is [0, 10]: a normal centred on 0 puts about half below. */
    s = compile_text("{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"normal\","
                     "\"mu\":0,\"sigma\":0.01}}}", 0, err, sizeof(err));
    CHECK(s != NULL);
    if (s) {
        CHECK(spec_warning_count(s) == 1);
        const char *w = spec_warning(s, 0);
        CHECK(w != NULL);
        if (w) {
            int outside = -1;
            CHECK(strncmp(w, "parameters.lr: ", 15) == 0);
            CHECK(sscanf(w, "parameters.lr: %d of 4096", &outside) == 1);
            CHECK(outside > 1900);
            CHECK(outside < 2200);
            CHECK(strstr(w, "[0, 10]") != NULL);
        }
        CHECK(spec_warning(s, 1) == NULL);
        spec_free(s);
    }

    /* Generic mode checks no ranges. */
    s = compile_text("{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"normal\","
                     "\"mu\":0,\"sigma\":0.01}}}", 1, err, sizeof(err));
    CHECK(s != NULL);
    if (s)
        CHECK(spec_warning_count(s) == 0);
    spec_free(s);

    /* In range: a log-normal lr far below 10, a beta b1 inside [0, 0.999999]. */
    s = compile_text("{\"method\":\"random\",\"parameters\":{\"lr\":{\"distribution\":\"log_normal\","
                     "\"mu\":-7,\"sigma\":0.5},\"b1\":{\"distribution\":\"beta\",\"a\":2,\"b\":2}}}",
                     0, err, sizeof(err));
    CHECK(s != NULL);
    if (s)
        CHECK(spec_warning_count(s) == 0);
    spec_free(s);

    /* A q_normal warmup_steps centred on 0 rounds about half its draws
     * below 0, the trainer's minimum. */
    s = compile_text("{\"method\":\"random\",\"parameters\":{\"warmup_steps\":{\"distribution\":"
                     "\"q_normal\",\"mu\":0,\"sigma\":50,\"q\":1}}}", 0, err, sizeof(err));
    CHECK(s != NULL);
    if (s)
        CHECK(spec_warning_count(s) == 1);
    spec_free(s);
}

int main(void)
{
    test_validation_table();
    test_grid_order();
    test_grid_dedup_and_kinds();
    test_grid_q_uniform();
    test_grid_600_exhaustion();
    test_grid_nested();
    test_grid_huge();
    test_accessors_and_canonical();
    test_kinds_from_enclosing_request();
    test_limits();
    test_range_warnings();
    return check_report("test_spec");
}
