/* Finite-difference gradient check of every parameter tensor of the tiny
 * model (1 layer, d_model 8, 2 heads, seq_len 4, batch 2).
 *
 * The reference is an independent double-precision forward pass written here
 * as direct loops; central differences with h = 1e-5 on it are accurate to
 * about 1e-10. The analytic gradient is the float model_backward(). For each
 * tensor the test prints max |analytic - numeric| / max |numeric| and
 * requires it below TOL. Weights are perturbed away from the init so that
 * LayerNorm gains, biases and attention patterns are all non-trivial.
 */
#include "check.h"
#include "model.h"
#include "rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL 1e-5
#define STEP 1e-5

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static const double *tensor(const gpt_model *m, const double *P, int l, enum model_layer_tensor k)
{
    return P + model_layer_tensor(m, l, k)->offset;
}

/* out[n,:] = LN(x[n,:]) * g + b in double. */
static void layernorm_double(double *out, const double *x, const double *g, const double *b, int N, int C)
{
    for (int n = 0; n < N; n++) {
        const double *r = x + (size_t)n * C;
        double mean = 0.0, var = 0.0;
        for (int c = 0; c < C; c++)
            mean += r[c];
        mean /= C;
        for (int c = 0; c < C; c++)
            var += (r[c] - mean) * (r[c] - mean);
        var /= C;
        double s = 1.0 / sqrt(var + 1e-5);
        for (int c = 0; c < C; c++)
            out[(size_t)n * C + c] = (r[c] - mean) * s * g[c] + b[c];
    }
}

/* out[N,Cout] = in[N,Cin] @ w[Cin,Cout] + b, accumulated into out when add is set. */
static void linear_double(double *out, const double *in, const double *w, const double *b, int N, int Cin,
                          int Cout, int add)
{
    for (int n = 0; n < N; n++)
        for (int o = 0; o < Cout; o++) {
            double s = b[o];
            for (int c = 0; c < Cin; c++)
                s += in[(size_t)n * Cin + c] * w[(size_t)c * Cout + o];
            out[(size_t)n * Cout + o] = add ? out[(size_t)n * Cout + o] + s : s;
        }
}

/* The whole model's mean loss in double precision, independent of model.c. */
static double forward_double(const gpt_model *m, const double *P)
{
    int B = m->B, T = m->T, C = m->C, NH = m->NH, N = B * T, hs = C / NH, V = MODEL_VOCAB;
    double *x = xcalloc((size_t)N * C, sizeof(double)), *ln = xcalloc((size_t)N * C, sizeof(double));
    double *qkv = xcalloc((size_t)N * 3 * C, sizeof(double)), *atty = xcalloc((size_t)N * C, sizeof(double));
    double *fc = xcalloc((size_t)N * 4 * C, sizeof(double));
    const double *wte = P + m->tensors[0].offset, *wpe = P + m->tensors[1].offset;

    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            x[(size_t)n * C + c] = wte[(size_t)m->inputs[n] * C + c] + wpe[(size_t)(n % T) * C + c];

    for (int l = 0; l < m->L; l++) {
        layernorm_double(ln, x, tensor(m, P, l, LT_LN1_G), tensor(m, P, l, LT_LN1_B), N, C);
        linear_double(qkv, ln, tensor(m, P, l, LT_QKV_W), tensor(m, P, l, LT_QKV_B), N, C, 3 * C, 0);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < T; i++) {
                    double score[64], mx = -INFINITY, sum = 0.0;
                    const double *q = qkv + ((size_t)b * T + i) * 3 * C + h * hs;
                    for (int j = 0; j <= i; j++) {
                        const double *k = qkv + ((size_t)b * T + j) * 3 * C + C + h * hs;
                        score[j] = 0.0;
                        for (int c = 0; c < hs; c++)
                            score[j] += q[c] * k[c];
                        score[j] /= sqrt((double)hs);
                        mx = fmax(mx, score[j]);
                    }
                    for (int j = 0; j <= i; j++)
                        sum += exp(score[j] - mx);
                    for (int c = 0; c < hs; c++) {
                        double o = 0.0;
                        for (int j = 0; j <= i; j++)
                            o += exp(score[j] - mx) / sum * qkv[((size_t)b * T + j) * 3 * C + 2 * C + h * hs + c];
                        atty[((size_t)b * T + i) * C + h * hs + c] = o;
                    }
                }
        linear_double(x, atty, tensor(m, P, l, LT_PROJ_W), tensor(m, P, l, LT_PROJ_B), N, C, C, 1);
        layernorm_double(ln, x, tensor(m, P, l, LT_LN2_G), tensor(m, P, l, LT_LN2_B), N, C);
        linear_double(fc, ln, tensor(m, P, l, LT_FC_W), tensor(m, P, l, LT_FC_B), N, C, 4 * C, 0);
        for (size_t i = 0; i < (size_t)N * 4 * C; i++) {
            double v = fc[i];
            fc[i] = 0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
        }
        linear_double(x, fc, tensor(m, P, l, LT_FCPROJ_W), tensor(m, P, l, LT_FCPROJ_B), N, 4 * C, C, 1);
    }
    layernorm_double(ln, x, P + m->tensors[m->n_tensors - 2].offset, P + m->tensors[m->n_tensors - 1].offset, N, C);

    double total = 0.0;
    for (int n = 0; n < N; n++) {
        double logits[MODEL_VOCAB], mx = -INFINITY, sum = 0.0;
        for (int v = 0; v < V; v++) {
            logits[v] = 0.0;
            for (int c = 0; c < C; c++)
                logits[v] += ln[(size_t)n * C + c] * wte[(size_t)v * C + c];
            mx = fmax(mx, logits[v]);
        }
        for (int v = 0; v < V; v++)
            sum += exp(logits[v] - mx);
        total += log(sum) + mx - logits[m->targets[n]];
    }
    free(x);
    free(ln);
    free(qkv);
    free(atty);
    free(fc);
    return total / N;
}

int main(void)
{
    gpt_model m;
    char err[256];
    rng_state rng;

    if (model_create(&m, 1, 8, 2, 4, 2, err, sizeof(err)) != 0) {
        fprintf(stderr, "model_create: %s\n", err);
        return 1;
    }
    model_init(&m, 7);
    rng_seed(&rng, 99, 3);
    for (size_t i = 0; i < m.num_params; i++)
        m.params[i] += (float)(0.3 * rng_normal(&rng));
    for (int n = 0; n < m.B * m.T; n++) {
        /* A small alphabet so that several positions share embedding rows. */
        m.inputs[n] = (uint8_t)('a' + rng_below(&rng, 5));
        m.targets[n] = (uint8_t)('a' + rng_below(&rng, 5));
    }

    double *P = xcalloc(m.num_params, sizeof(double));
    for (size_t i = 0; i < m.num_params; i++)
        P[i] = m.params[i];

    /* The float forward must agree with the double reference before gradients mean anything. */
    double loss_float = model_forward(&m);
    double loss_double = forward_double(&m, P);
    printf("loss: float %.9f, double reference %.9f\n", loss_float, loss_double);
    CHECK_NEAR(loss_float, loss_double, 1e-5);

    model_zero_grad(&m);
    model_backward(&m);

    printf("%-18s %6s %12s %12s   (tolerance %.0e)\n", "tensor", "numel", "max |grad|", "max rel err", TOL);
    for (size_t k = 0; k < m.n_tensors; k++) {
        const tensor_desc *t = &m.tensors[k];
        double max_numeric = 0.0, max_diff = 0.0;
        for (size_t i = t->offset; i < t->offset + t->numel; i++) {
            double saved = P[i];
            P[i] = saved + STEP;
            double up = forward_double(&m, P);
            P[i] = saved - STEP;
            double down = forward_double(&m, P);
            P[i] = saved;
            double numeric = (up - down) / (2 * STEP);
            max_numeric = fmax(max_numeric, fabs(numeric));
            max_diff = fmax(max_diff, fabs(numeric - m.grads[i]));
        }
        double rel = max_diff / fmax(max_numeric, 1e-12);
        printf("%-18s %6zu %12.3e %12.3e %s\n", t->name, t->numel, max_numeric, rel, rel <= TOL ? "ok" : "FAIL");
        CHECK(rel <= TOL);
        CHECK(max_numeric > 1e-6); /* every tensor must get a gradient for the check to mean anything */
    }

    free(P);
    model_free(&m);
    return check_report("trainer_gradcheck");
}
