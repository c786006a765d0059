/* Each fast trainer kernel (trainer/kernels.c) forward and backward against
 * its naive double-precision reference (trainer/kernels_ref.c) on random
 * inputs whose sizes are not multiples of the vector width. Prints the max
 * absolute difference per kernel; the tolerance is TOL relative to
 * max(1, |reference|). */
#include "check.h"
#include "kernels.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 2e-5

static rng_state rng;

static float *random_floats(size_t n, double scale)
{
    float *x = malloc(n * sizeof(float));
    if (x == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(rng_normal(&rng) * scale);
    return x;
}

static float *copy_floats(const float *x, size_t n)
{
    float *y = malloc(n * sizeof(float));
    if (y == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* Prints and checks the max difference of got against want. */
static void compare(const char *what, const float *got, const float *want, size_t n)
{
    double max_diff = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - want[i]);
        double scaled = d / fmax(1.0, fabs(want[i]));
        if (d > max_diff)
            max_diff = d;
        if (scaled > worst)
            worst = scaled;
    }
    printf("%-28s max |diff| %.3g (tolerance %.1g)\n", what, max_diff, TOL);
    CHECK(worst <= TOL);
}

static void test_expf(void)
{
    double worst = 0.0;
    for (float x = -80.0f; x < 80.0f; x += 0.01234f) {
        double rel = fabs(kernel_expf(x) - exp(x)) / exp(x);
        if (rel > worst)
            worst = rel;
    }
    printf("%-28s max relative error %.3g (tolerance 5e-7)\n", "kernel_expf", worst);
    CHECK(worst < 5e-7);
    CHECK(kernel_expf(-1000.0f) >= 0.0f && kernel_expf(-1000.0f) < 1e-37f);
    CHECK(isfinite(kernel_expf(1000.0f)));
}

static void test_matmul(void)
{
    int N = 13, Cin = 19, Cout = 11;
    float *inp = random_floats((size_t)N * Cin, 1.0), *w = random_floats((size_t)Cin * Cout, 0.5);
    float *bias = random_floats((size_t)Cout, 0.5), *dout = random_floats((size_t)N * Cout, 1.0);
    float *out = calloc((size_t)N * Cout, 4), *out_ref = calloc((size_t)N * Cout, 4);
    float *dinp = calloc((size_t)N * Cin, 4), *dinp_ref = calloc((size_t)N * Cin, 4);
    float *dw = random_floats((size_t)Cin * Cout, 0.1), *dw_ref = copy_floats(dw, (size_t)Cin * Cout);
    float *db = random_floats((size_t)Cout, 0.1), *db_ref = copy_floats(db, (size_t)Cout);

    kernel_matmul_forward(out, inp, w, bias, N, Cin, Cout);
    kernel_matmul_forward_ref(out_ref, inp, w, bias, N, Cin, Cout);
    compare("matmul forward", out, out_ref, (size_t)N * Cout);
    kernel_matmul_backward(dinp, dw, db, dout, inp, w, N, Cin, Cout);
    kernel_matmul_backward_ref(dinp_ref, dw_ref, db_ref, dout, inp, w, N, Cin, Cout);
    compare("matmul backward dinp", dinp, dinp_ref, (size_t)N * Cin);
    compare("matmul backward dw (+=)", dw, dw_ref, (size_t)Cin * Cout);
    compare("matmul backward dbias (+=)", db, db_ref, (size_t)Cout);
    free(inp); free(w); free(bias); free(dout); free(out); free(out_ref); free(dinp); free(dinp_ref);
    free(dw); free(dw_ref); free(db); free(db_ref);
}

static void test_layernorm(void)
{
    int N = 7, C = 21;
    float *inp = random_floats((size_t)N * C, 2.0), *g = random_floats((size_t)C, 1.0);
    float *b = random_floats((size_t)C, 1.0), *dout = random_floats((size_t)N * C, 1.0);
    float *out = calloc((size_t)N * C, 4), *out_ref = calloc((size_t)N * C, 4);
    float mean[7], rstd[7], mean_ref[7], rstd_ref[7];
    float *dinp = random_floats((size_t)N * C, 0.1), *dinp_ref = copy_floats(dinp, (size_t)N * C);
    float *dg = random_floats((size_t)C, 0.1), *dg_ref = copy_floats(dg, (size_t)C);
    float *db = random_floats((size_t)C, 0.1), *db_ref = copy_floats(db, (size_t)C);

    for (int i = 0; i < C; i++)
        inp[i] += 5.0f; /* one row with a large mean */
    kernel_layernorm_forward(out, mean, rstd, inp, g, b, N, C);
    kernel_layernorm_forward_ref(out_ref, mean_ref, rstd_ref, inp, g, b, N, C);
    compare("layernorm forward", out, out_ref, (size_t)N * C);
    compare("layernorm forward mean", mean, mean_ref, (size_t)N);
    compare("layernorm forward rstd", rstd, rstd_ref, (size_t)N);
    kernel_layernorm_backward(dinp, dg, db, dout, inp, g, mean, rstd, N, C);
    kernel_layernorm_backward_ref(dinp_ref, dg_ref, db_ref, dout, inp, g, mean_ref, rstd_ref, N, C);
    compare("layernorm backward dinp (+=)", dinp, dinp_ref, (size_t)N * C);
    compare("layernorm backward dg (+=)", dg, dg_ref, (size_t)C);
    compare("layernorm backward db (+=)", db, db_ref, (size_t)C);
    free(inp); free(g); free(b); free(dout); free(out); free(out_ref); free(dinp); free(dinp_ref);
    free(dg); free(dg_ref); free(db); free(db_ref);
}

/* T = 11 fits one causal row block; T = 70 spans three, the last partial. */
static void test_attention(int T)
{
    int B = 2, C = 20, NH = 2;
    size_t nqkv = (size_t)B * T * 3 * C, nout = (size_t)B * T * C, natt = (size_t)B * NH * T * T;
    float *qkv = random_floats(nqkv, 1.0), *dout = random_floats(nout, 1.0);
    float *out = calloc(nout, 4), *out_ref = calloc(nout, 4);
    float *att = calloc(natt, 4), *att_ref = calloc(natt, 4);
    float *dqkv = random_floats(nqkv, 1.0), *dqkv_ref = calloc(nqkv, 4);
    float *scratch = calloc((size_t)T * T, 4);

    kernel_attention_forward(out, att, qkv, B, T, C, NH);
    kernel_attention_forward_ref(out_ref, att_ref, qkv, B, T, C, NH);
    printf("attention with T = %d:\n", T);
    compare("attention forward out", out, out_ref, nout);
    compare("attention forward probs", att, att_ref, natt);
    kernel_attention_backward(dqkv, scratch, dout, qkv, att, B, T, C, NH);
    kernel_attention_backward_ref(dqkv_ref, dout, qkv, att_ref, B, T, C, NH);
    compare("attention backward dqkv", dqkv, dqkv_ref, nqkv);
    free(qkv); free(dout); free(out); free(out_ref); free(att); free(att_ref); free(dqkv); free(dqkv_ref);
    free(scratch);
}

static void test_gelu(void)
{
    size_t n = 1003;
    float *inp = random_floats(n, 3.0), *dout = random_floats(n, 1.0);
    float *out = calloc(n, 4), *out_ref = calloc(n, 4), *d = calloc(n, 4), *d_ref = calloc(n, 4);

    inp[0] = 0.0f;
    inp[1] = 1e-4f;
    inp[2] = -30.0f;
    inp[3] = 30.0f;
    kernel_gelu_forward(out, inp, n);
    kernel_gelu_forward_ref(out_ref, inp, n);
    compare("gelu forward", out, out_ref, n);
    kernel_gelu_backward(d, inp, dout, n);
    kernel_gelu_backward_ref(d_ref, inp, dout, n);
    compare("gelu backward", d, d_ref, n);
    free(inp); free(dout); free(out); free(out_ref); free(d); free(d_ref);
}

static void test_crossentropy(void)
{
    int N = 9, V = 256;
    float *logits = random_floats((size_t)N * V, 3.0);
    float *probs = calloc((size_t)N * V, 4), *probs_ref = calloc((size_t)N * V, 4);
    float losses[9], losses_ref[9];
    uint8_t targets[9];

    for (int i = 0; i < N; i++)
        targets[i] = (uint8_t)rng_below(&rng, 256);
    logits[5] = 80.0f; /* a dominant logit: exp must not overflow */
    double mean = kernel_crossentropy_forward(probs, losses, logits, targets, N, V);
    double mean_ref = kernel_crossentropy_forward_ref(probs_ref, losses_ref, logits, targets, N, V);
    printf("%-28s %.9f vs %.9f\n", "crossentropy mean loss", mean, mean_ref);
    CHECK_NEAR(mean, mean_ref, TOL);
    compare("crossentropy forward losses", losses, losses_ref, (size_t)N);
    compare("crossentropy forward probs", probs, probs_ref, (size_t)N * V);
    kernel_crossentropy_backward(probs, probs, targets, N, V); /* in place, as the model uses it */
    float *dlogits_ref = calloc((size_t)N * V, 4);
    kernel_crossentropy_backward_ref(dlogits_ref, probs_ref, targets, N, V);
    compare("crossentropy backward", probs, dlogits_ref, (size_t)N * V);
    free(logits); free(probs); free(probs_ref); free(dlogits_ref);
}

int main(void)
{
    rng_seed(&rng, 42, 7);
    test_expf();
    test_matmul();
    test_layernorm();
    test_attention(11);
    test_attention(70);
    test_gelu();
    test_crossentropy();
    return check_report("trainer_kernels");
}
