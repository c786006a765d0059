/* Trial parameters from a compiled spec. A grid index is decoded digit by
 * digit (mixed radix, the last leaf varying fastest), so no grid is ever
 * materialised. A random trial draws each leaf from its own splitmix64 stream
 * keyed by (seed, trial index, leaf position), so the parameters depend on
 * nothing else: not on the process, the order of requests or a restart.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spec_impl.h"

/* ---- Counter-based random numbers ---- */

#define GOLDEN_GAMMA UINT64_C(0x9e3779b97f4a7c15)

/* The splitmix64 output function (Steele, Lea and Flood, "Fast splittable
 * pseudorandom number generators", OOPSLA 2014). */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

struct rng {
    uint64_t state;
};

/* The stream of leaf `leaf` in trial `index` of a sweep seeded with seed. */
static struct rng rng_stream(uint64_t seed, uint64_t index, uint64_t leaf)
{
    uint64_t key = mix64(seed + GOLDEN_GAMMA);
    key = mix64(key ^ (index + GOLDEN_GAMMA));
    key = mix64(key ^ (leaf + GOLDEN_GAMMA));
    return (struct rng){ key };
}

static uint64_t rng_next(struct rng *r)
{
    r->state += GOLDEN_GAMMA;
    return mix64(r->state);
}

/* Uniform in [0, 1) with 53 random bits. */
static double rng_uniform(struct rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* Uniform in (0, 1): never 0, so its logarithm is finite. */
static double rng_open(struct rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) * 0x1.0p-53;
}

/* Uniform integer in [0, n), n >= 1, without modulo bias (rejection). */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;

    do {
        x = rng_next(r);
    } while (x >= limit);
    return x % n;
}

/* Standard normal by Box-Muller; |z| < 8.66 because rng_open() >= 2^-54. */
static double rng_normal(struct rng *r)
{
    double u1 = rng_open(r), u2 = rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

/* Gamma(shape, 1) by Marsaglia and Tsang ("A simple method for generating
 * gamma variables", ACM TOMS 2000), with the u^(1/shape) boost below 1. */
static double rng_gamma(struct rng *r, double shape)
{
    double boost = 1.0, d, c;

    if (shape < 1.0) {
        boost = pow(rng_open(r), 1.0 / shape);
        shape += 1.0;
    }
    d = shape - 1.0 / 3.0;
    c = 1.0 / sqrt(9.0 * d);
    /* Each round accepts with probability above 0.95; the cap only keeps the
     * loop bounded. */
    for (int round = 0; round < 1000; round++) {
        double z = rng_normal(r), v = 1.0 + c * z, u;
        if (v <= 0.0)
            continue;
        v = v * v * v;
        u = rng_open(r);
        if (log(u) < 0.5 * z * z + d - d * v + d * log(v))
            return boost * d * v;
    }
    return boost * d;
}

static double rng_beta(struct rng *r, double a, double b)
{
    double x = rng_gamma(r, a), y = rng_gamma(r, b);

    /* Both gammas underflow only for tiny a and b; fall back to the mean. */
    if (!(x + y > 0.0))
        return a / (a + b);
    return x / (x + y);
}

/* ---- Shared helpers ---- */

/* Rounds v to 15 significant digits when that moves it by at most 1e-14
 * relative, so 3 x 0.1 gives 0.3 and not 0.30000000000000004. */
static double round_digits(double v)
{
    char text[32];
    double pretty;

    snprintf(text, sizeof(text), "%.15g", v);
    pretty = strtod(text, NULL);
    return fabs(pretty - v) <= fabs(v) * 1e-14 ? pretty : v;
}

double spec_quantise(double v, double q)
{
    return round_digits(round(v / q) * q);
}

uint64_t spec_q_grid_points(double min, double max, double q)
{
    double steps = (max - min) / q;
    double nearest = round(steps);

    /* (max - min) / q that is an integer up to rounding error counts as one,
     * so max itself stays excluded: 0 to 0.3 by 0.1 is 0, 0.1, 0.2. */
    if (fabs(steps - nearest) <= 1e-9 * fmax(1.0, steps))
        steps = nearest;
    steps = ceil(steps);
    if (!(steps >= 1.0) || steps >= 9007199254740992.0)
        return 0;
    return (uint64_t)steps;
}

int spec_values_equal(const cJSON *a, const cJSON *b)
{
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b))
        return a->valuedouble == b->valuedouble;
    if ((a->type & 0xff) != (b->type & 0xff))
        return 0;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsArray(a)) {
        const cJSON *x = a->child, *y = b->child;
        for (; x && y; x = x->next, y = y->next) {
            if (!spec_values_equal(x, y))
                return 0;
        }
        return !x && !y;
    }
    if (cJSON_IsObject(a)) {
        if (cJSON_GetArraySize(a) != cJSON_GetArraySize(b))
            return 0;
        for (const cJSON *x = a->child; x; x = x->next) {
            const cJSON *y = cJSON_GetObjectItemCaseSensitive(b, x->string);
            if (!y || !spec_values_equal(x, y))
                return 0;
        }
        return 1;
    }
    return 1; /* true, false, null */
}

/* ---- Values of one leaf ---- */

/* The grid value of leaf at digit (0 <= digit < grid_points). */
static cJSON *grid_value(const struct spec_node *leaf, uint64_t digit)
{
    switch (leaf->dist) {
    case DIST_CONSTANT:
    case DIST_CATEGORICAL:
        return cJSON_Duplicate(leaf->values[digit], 1);
    case DIST_INT_UNIFORM:
        return cJSON_CreateNumber(leaf->min + (double)digit);
    case DIST_Q_UNIFORM:
        return cJSON_CreateNumber(round_digits(leaf->min + (double)digit * leaf->q));
    default:
        return NULL; /* spec_compile rejects continuous forms in a grid */
    }
}

/* A draw of a categorical leaf: the index of the chosen value. */
static size_t draw_categorical(const struct spec_node *leaf, struct rng *r)
{
    double u;

    if (!leaf->cumulative)
        return (size_t)rng_below(r, leaf->value_count);
    u = rng_uniform(r);
    for (size_t i = 0; i < leaf->value_count; i++) {
        if (u < leaf->cumulative[i])
            return i;
    }
    /* The sum may fall short of 1 by up to 1e-9: the last value with a
     * positive probability takes the remainder. */
    for (size_t i = leaf->value_count; i > 0; i--) {
        double before = i > 1 ? leaf->cumulative[i - 2] : 0.0;
        if (leaf->cumulative[i - 1] > before)
            return i - 1;
    }
    return leaf->value_count - 1;
}

/* The number drawn for a numeric leaf. */
static double draw_number(const struct spec_node *leaf, struct rng *r)
{
    double y;

    switch (leaf->dist) {
    case DIST_INT_UNIFORM:
        return leaf->min + (double)rng_below(r, (uint64_t)(leaf->max - leaf->min) + 1);
    case DIST_UNIFORM:
        return leaf->min + rng_uniform(r) * (leaf->max - leaf->min);
    case DIST_Q_UNIFORM:
        return spec_quantise(leaf->min + rng_uniform(r) * (leaf->max - leaf->min), leaf->q);
    case DIST_LOG_UNIFORM_VALUES:
    case DIST_Q_LOG_UNIFORM_VALUES:
        y = exp(log(leaf->min) + rng_uniform(r) * (log(leaf->max) - log(leaf->min)));
        return leaf->dist == DIST_Q_LOG_UNIFORM_VALUES ? spec_quantise(y, leaf->q) : y;
    case DIST_INV_LOG_UNIFORM_VALUES:
        /* log(1/X) uniform in [log(1/max), log(1/min)]. */
        y = log(1.0 / leaf->max) + rng_uniform(r) * (log(1.0 / leaf->min) - log(1.0 / leaf->max));
        return 1.0 / exp(y);
    case DIST_LOG_UNIFORM:
    case DIST_Q_LOG_UNIFORM:
        y = exp(leaf->min + rng_uniform(r) * (leaf->max - leaf->min));
        return leaf->dist == DIST_Q_LOG_UNIFORM ? spec_quantise(y, leaf->q) : y;
    case DIST_INV_LOG_UNIFORM:
        /* log(1/X) uniform in [min, max]. */
        return 1.0 / exp(leaf->min + rng_uniform(r) * (leaf->max - leaf->min));
    case DIST_NORMAL:
        return leaf->mu + leaf->sigma * rng_normal(r);
    case DIST_Q_NORMAL:
        return spec_quantise(leaf->mu + leaf->sigma * rng_normal(r), leaf->q);
    case DIST_LOG_NORMAL:
        return exp(leaf->mu + leaf->sigma * rng_normal(r));
    case DIST_Q_LOG_NORMAL:
        return spec_quantise(exp(leaf->mu + leaf->sigma * rng_normal(r)), leaf->q);
    case DIST_BETA:
        return rng_beta(r, leaf->a, leaf->b);
    case DIST_Q_BETA:
        return spec_quantise(rng_beta(r, leaf->a, leaf->b), leaf->q);
    default:
        return 0.0;
    }
}

double spec_leaf_draw(const struct spec_node *leaf, uint64_t seed, uint64_t index)
{
    struct rng r = rng_stream(seed, index, leaf->leaf_index);
    return draw_number(leaf, &r);
}

static cJSON *random_value(const struct spec_node *leaf, uint64_t seed, uint64_t index)
{
    struct rng r = rng_stream(seed, index, leaf->leaf_index);

    if (leaf->dist == DIST_CONSTANT)
        return cJSON_Duplicate(leaf->values[0], 1);
    if (leaf->dist == DIST_CATEGORICAL)
        return cJSON_Duplicate(leaf->values[draw_categorical(leaf, &r)], 1);
    return cJSON_CreateNumber(draw_number(leaf, &r));
}

/* ---- Trial parameters ---- */

/* Builds the nested object of group; digits[i] is leaf i's grid digit, or
 * NULL for a random draw. Returns NULL on ENOMEM. */
static cJSON *build_group(const struct spec_node *group, const uint64_t *digits, uint64_t seed,
                          uint64_t index)
{
    cJSON *obj = cJSON_CreateObject();

    if (!obj)
        return NULL;
    for (size_t i = 0; i < group->child_count; i++) {
        const struct spec_node *child = &group->children[i];
        cJSON *value;

        if (child->is_group)
            value = build_group(child, digits, seed, index);
        else if (digits)
            value = grid_value(child, digits[child->leaf_index]);
        else
            value = random_value(child, seed, index);
        if (!value || !cJSON_AddItemToObject(obj, child->name, value)) {
            cJSON_Delete(value);
            cJSON_Delete(obj);
            return NULL;
        }
    }
    return obj;
}

cJSON *spec_trial_params(const sweep_spec *s, uint64_t seed, uint64_t index)
{
    uint64_t digits[SPEC_MAX_PARAMETERS];

    if (s->method == SPEC_RANDOM)
        return build_group(&s->root, NULL, seed, index);

    /* Mixed radix: the last leaf is the least significant digit. */
    index %= s->grid_size;
    for (size_t i = s->leaf_count; i > 0; i--) {
        uint64_t radix = s->leaves[i - 1]->grid_points;
        digits[i - 1] = index % radix;
        index /= radix;
    }
    return build_group(&s->root, digits, seed, index);
}
