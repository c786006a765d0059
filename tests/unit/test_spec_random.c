/* Random sweeps. Trial parameters are a function of (seed, index) only, in
 * this process and in a forked one. Every distribution's draws stay in range
 * and quantised draws are multiples of q. The literal kind of min and max
 * picks int_uniform or uniform, and categorical probabilities hold
 * statistically.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cJSON.h>

#include "check.h"
#include "json_kinds.h"
#include "spec.h"

static sweep_spec *compile_text(const char *text, int generic)
{
    char err[1024] = "";
    cJSON *root = cJSON_ParseWithLength(text, strlen(text));
    json_kinds *kinds = root ? json_kinds_scan(text, strlen(text), root) : NULL;
    sweep_spec *s = NULL;

    if (kinds && spec_compile(root, kinds, generic, &s, err, sizeof(err)) != 0) {
        fprintf(stderr, "compile failed: %s\n", err);
        s = NULL;
    }
    json_kinds_free(kinds);
    cJSON_Delete(root);
    return s;
}

static char *trial_text(const sweep_spec *s, uint64_t seed, uint64_t index)
{
    cJSON *params = spec_trial_params(s, seed, index);
    char *text = params ? cJSON_PrintUnformatted(params) : NULL;
    cJSON_Delete(params);
    return text;
}

static const char *mixed_spec =
    "{\"method\":\"random\",\"parameters\":{"
    "\"optimizer\":{\"values\":[\"adam\",\"sm3\",\"shampoo\"]},"
    "\"lr\":{\"distribution\":\"log_uniform_values\",\"min\":1e-5,\"max\":1.0},"
    "\"g\":{\"parameters\":{\"b1\":{\"distribution\":\"beta\",\"a\":2,\"b\":5},"
    "\"n_layer\":{\"min\":1,\"max\":8}}}}}";

static void test_random_determinism(void)
{
    sweep_spec *s = compile_text(mixed_spec, 0);
    sweep_spec *again = compile_text(mixed_spec, 0);
    int differ_index = 0, differ_seed = 0;

    CHECK(s != NULL);
    CHECK(again != NULL);
    if (!s || !again) {
        spec_free(s);
        spec_free(again);
        return;
    }
    for (uint64_t i = 0; i < 50; i++) {
        char *a = trial_text(s, 42, i);
        char *b = trial_text(again, 42, i);
        char *next = trial_text(s, 42, i + 1);
        char *other_seed = trial_text(s, 43, i);

        /* Same (seed, index) gives the same text, whatever came before. */
        CHECK_STR(a, b ? b : "(null)");
        differ_index += a && next && strcmp(a, next) != 0;
        differ_seed += a && other_seed && strcmp(a, other_seed) != 0;
        cJSON_free(a);
        cJSON_free(b);
        cJSON_free(next);
        cJSON_free(other_seed);
    }
    /* lr is continuous, so any two trials differ. */
    CHECK(differ_index == 50);
    CHECK(differ_seed == 50);

    /* Asking in reverse order gives the same parameters. */
    char *late = trial_text(s, 42, 1000000);
    for (int i = 0; i < 10; i++) {
        char *t = trial_text(s, 42, (uint64_t)i);
        cJSON_free(t);
    }
    char *late_again = trial_text(s, 42, 1000000);
    CHECK_STR(late, late_again ? late_again : "(null)");
    cJSON_free(late);
    cJSON_free(late_again);
    spec_free(again);
    spec_free(s);
}

/* A forked process computes trials 0..19 and writes them to a pipe; they
 * must equal the ones computed here. */
static void test_random_across_processes(void)
{
    int fds[2];
    pid_t pid;
    char buf[65536];
    size_t got = 0;
    int status = 0;

    CHECK(pipe(fds) == 0);
    pid = fork();
    CHECK(pid >= 0);
    if (pid < 0)
        return;
    if (pid == 0) {
        sweep_spec *child = compile_text(mixed_spec, 0);
        close(fds[0]);
        for (uint64_t i = 0; child && i < 20; i++) {
            char *t = trial_text(child, UINT64_C(0xfeedface12345678), i);
            if (!t || write(fds[1], t, strlen(t)) < 0 || write(fds[1], "\n", 1) < 0)
                _exit(1);
            cJSON_free(t);
        }
        spec_free(child);
        close(fds[1]);
        _exit(0);
    }
    close(fds[1]);
    for (;;) {
        ssize_t n = read(fds[0], buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    buf[got] = '\0';
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);

    sweep_spec *s = compile_text(mixed_spec, 0);
    char *line = buf;
    CHECK(s != NULL);
    for (uint64_t i = 0; s && i < 20; i++) {
        char *end = strchr(line, '\n');
        char *t = trial_text(s, UINT64_C(0xfeedface12345678), i);
        CHECK(end != NULL);
        if (!end) {
            cJSON_free(t);
            break;
        }
        *end = '\0';
        CHECK_STR(line, t ? t : "");
        cJSON_free(t);
        line = end + 1;
    }
    spec_free(s);
}

/* Draws n values of parameter x and checks each with check(). */
struct dist_case {
    const char *param;      /* the JSON of parameter "x" */
    double lo, hi;          /* every draw in [lo, hi] */
    double q;               /* draws are multiples of q; 0 = no check */
    double mean;            /* expected mean, checked loosely; NAN = no check */
};

static const struct dist_case dist_cases[] = {
    { "{\"distribution\":\"int_uniform\",\"min\":-3,\"max\":3}", -3, 3, 1, 0.0 },
    { "{\"distribution\":\"uniform\",\"min\":-2,\"max\":6}", -2, 6, 0, 2.0 },
    { "{\"distribution\":\"q_uniform\",\"min\":0,\"max\":1,\"q\":0.05}", 0, 1, 0.05, 0.5 },
    { "{\"distribution\":\"log_uniform_values\",\"min\":0.001,\"max\":10}", 0.001, 10, 0, NAN },
    { "{\"distribution\":\"q_log_uniform_values\",\"min\":1,\"max\":1000,\"q\":5}", 0, 1000, 5, NAN },
    { "{\"distribution\":\"inv_log_uniform_values\",\"min\":0.01,\"max\":100}", 0.01, 100, 0, NAN },
    { "{\"distribution\":\"log_uniform\",\"min\":-4,\"max\":2}", exp(-4), exp(2), 0, NAN },
    { "{\"distribution\":\"q_log_uniform\",\"min\":0,\"max\":5,\"q\":2}", 0, 150, 2, NAN },
    { "{\"distribution\":\"inv_log_uniform\",\"min\":-1,\"max\":3}", exp(-3), exp(1), 0, NAN },
    { "{\"distribution\":\"normal\",\"mu\":10,\"sigma\":2}", 10 - 18, 10 + 18, 0, 10.0 },
    { "{\"distribution\":\"q_normal\",\"mu\":0,\"sigma\":5,\"q\":0.5}", -45, 45, 0.5, 0.0 },
    { "{\"distribution\":\"log_normal\",\"mu\":0,\"sigma\":0.5}", exp(-4.5), exp(4.5), 0, NAN },
    { "{\"distribution\":\"q_log_normal\",\"mu\":3,\"sigma\":0.3,\"q\":1}", 0, exp(3 + 2.7), 1, NAN },
    { "{\"distribution\":\"beta\",\"a\":2,\"b\":6}", 0, 1, 0, 0.25 },
    { "{\"distribution\":\"beta\",\"a\":0.3,\"b\":0.3}", 0, 1, 0, 0.5 },
    { "{\"distribution\":\"q_beta\",\"a\":1,\"b\":1,\"q\":0.1}", 0, 1, 0.1, 0.5 },
    { "{\"distribution\":\"normal\"}", -9, 9, 0, 0.0 },
    { "{\"distribution\":\"constant\",\"value\":4.5}", 4.5, 4.5, 0, 4.5 },
};

static void test_distribution_ranges(void)
{
    enum { DRAWS = 4000 };

    for (size_t c = 0; c < sizeof(dist_cases) / sizeof(dist_cases[0]); c++) {
        const struct dist_case *dc = &dist_cases[c];
        char text[512];
        double sum = 0, sumsq = 0;
        int in_range = 0, on_grid = 0;

        snprintf(text, sizeof(text), "{\"method\":\"random\",\"parameters\":{\"x\":%s}}", dc->param);
        sweep_spec *s = compile_text(text, 1);
        CHECK(s != NULL);
        if (!s)
            continue;
        for (uint64_t i = 0; i < DRAWS; i++) {
            cJSON *params = spec_trial_params(s, 7, i);
            const cJSON *x = cJSON_GetObjectItemCaseSensitive(params, "x");
            double v = cJSON_IsNumber(x) ? x->valuedouble : NAN;

            in_range += v >= dc->lo && v <= dc->hi;
            if (dc->q > 0) {
                double steps = v / dc->q;
                on_grid += fabs(steps - round(steps)) <= 1e-9 * fmax(1.0, fabs(steps));
            }
            sum += v;
            sumsq += v * v;
            cJSON_Delete(params);
        }
        CHECK(in_range == DRAWS);
        if (dc->q > 0)
            CHECK(on_grid == DRAWS);
        if (!isnan(dc->mean)) {
            /* Within 6 standard errors of the mean. */
            double mean = sum / DRAWS;
            double var = sumsq / DRAWS - mean * mean;
            double tol = 6.0 * sqrt(var / DRAWS) + 1e-12;
            CHECK(fabs(mean - dc->mean) <= tol);
            if (fabs(mean - dc->mean) > tol)
                fprintf(stderr, "case %zu: mean %g, expected %g +- %g\n", c, mean, dc->mean, tol);
        }
        if (in_range != DRAWS || (dc->q > 0 && on_grid != DRAWS))
            fprintf(stderr, "case %zu: %d in range, %d on the q grid of %d\n", c, in_range, on_grid, DRAWS);
        spec_free(s);
    }
}

/* {"min":0,"max":1} is int_uniform (draws 0 and 1 only); {"min":0.0,"max":1.0}
 * is uniform (draws reals). */
static void test_literal_kind_decides(void)
{
    sweep_spec *ints = compile_text("{\"method\":\"random\",\"parameters\":{\"x\":{\"min\":0,\"max\":1}}}", 1);
    sweep_spec *reals = compile_text("{\"method\":\"random\",\"parameters\":{\"x\":{\"min\":0.0,\"max\":1.0}}}", 1);
    int zeros = 0, ones = 0, others = 0, fractional = 0;

    CHECK(ints != NULL);
    CHECK(reals != NULL);
    for (uint64_t i = 0; ints && reals && i < 1000; i++) {
        cJSON *a = spec_trial_params(ints, 3, i);
        cJSON *b = spec_trial_params(reals, 3, i);
        double va = cJSON_GetObjectItemCaseSensitive(a, "x")->valuedouble;
        double vb = cJSON_GetObjectItemCaseSensitive(b, "x")->valuedouble;

        zeros += va == 0.0;
        ones += va == 1.0;
        others += va != 0.0 && va != 1.0;
        fractional += vb > 0.0 && vb < 1.0 && vb != floor(vb);
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    CHECK(others == 0);
    CHECK(zeros > 400);
    CHECK(ones > 400);
    CHECK(fractional == 1000);
    spec_free(ints);
    spec_free(reals);
}

static void test_probabilities(void)
{
    sweep_spec *s = compile_text("{\"method\":\"random\",\"parameters\":{\"optimizer\":{"
                                 "\"values\":[\"adam\",\"sm3\",\"shampoo\",\"adamw\"],"
                                 "\"probabilities\":[0.6,0.3,0.1,0]}}}", 0);
    int counts[4] = { 0 };
    const char *names[4] = { "adam", "sm3", "shampoo", "adamw" };
    const double expected[4] = { 0.6, 0.3, 0.1, 0.0 };
    enum { DRAWS = 10000 };

    CHECK(s != NULL);
    if (!s)
        return;
    for (uint64_t i = 0; i < DRAWS; i++) {
        cJSON *params = spec_trial_params(s, 11, i);
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(params, "optimizer");
        for (int k = 0; k < 4; k++) {
            if (cJSON_IsString(opt) && strcmp(opt->valuestring, names[k]) == 0)
                counts[k]++;
        }
        cJSON_Delete(params);
    }
    /* Binomial standard deviation at p = 0.6 and n = 10000 is 49; allow 5. */
    for (int k = 0; k < 4; k++) {
        double sd = sqrt(DRAWS * expected[k] * (1 - expected[k]));
        CHECK(fabs(counts[k] - DRAWS * expected[k]) <= 5 * sd);
    }
    CHECK(counts[3] == 0);
    spec_free(s);
}

int main(void)
{
    test_random_determinism();
    test_random_across_processes();
    test_distribution_ranges();
    test_literal_kind_decides();
    test_probabilities();
    return check_report("test_spec_random");
}
