/* Naive reference kernels for the unit tests: the same contracts as
 * kernels.h, written as direct loops with double-precision accumulation and
 * libm's exp/tanh, with no BLAS and no shared helpers, so that a bug in a
 * fast kernel cannot hide in its reference.
 */
#include "kernels.h"

#include <math.h>
#include <stdlib.h>

void kernel_matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias, int N, int Cin, int Cout)
{
    for (int i = 0; i < N; i++)
        for (int o = 0; o < Cout; o++) {
            double s = bias ? bias[o] : 0.0;
            for (int c = 0; c < Cin; c++)
                s += (double)inp[(size_t)i * Cin + c] * w[(size_t)c * Cout + o];
            out[(size_t)i * Cout + o] = (float)s;
        }
}

void kernel_matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int Cin, int Cout)
{
    for (int i = 0; i < N && dinp; i++)
        for (int c = 0; c < Cin; c++) {
            double s = 0.0;
            for (int o = 0; o < Cout; o++)
                s += (double)dout[(size_t)i * Cout + o] * w[(size_t)c * Cout + o];
            dinp[(size_t)i * Cin + c] = (float)s;
        }
    for (int c = 0; c < Cin; c++)
        for (int o = 0; o < Cout; o++) {
            double s = 0.0;
            for (int i = 0; i < N; i++)
                s += (double)inp[(size_t)i * Cin + c] * dout[(size_t)i * Cout + o];
            dw[(size_t)c * Cout + o] += (float)s;
        }
    for (int o = 0; o < Cout && dbias; o++) {
        double s = 0.0;
        for (int i = 0; i < N; i++)
            s += dout[(size_t)i * Cout + o];
        dbias[o] += (float)s;
    }
}

void kernel_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp, const float *g, const float *b,
                           int N, int C)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        double m = 0.0, v = 0.0;
        for (int j = 0; j < C; j++)
            m += x[j];
        m /= C;
        for (int j = 0; j < C; j++)
            v += (x[j] - m) * (x[j] - m);
        v /= C;
        double s = 1.0 / sqrt(v + KERNEL_LN_EPS);
        for (int j = 0; j < C; j++)
            out[(size_t)i * C + j] = (float)((x[j] - m) * s * g[j] + b[j]);
        mean[i] = (float)m;
        rstd[i] = (float)s;
    }
}

void kernel_layernorm_backward_ref(float *dinp, float *dg, float *db, const float *dout, const float *inp,
                            const float *g, const float *mean, const float *rstd, int N, int C)
{
    /* Direct Jacobian: dx_j = sum_k dy_k g_k d(xhat_k)/d(x_j), with
     * d(xhat_k)/d(x_j) = s (delta_jk - 1/C - xhat_j xhat_k / C). */
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        const float *dy = dout + (size_t)i * C;
        double m = mean[i], s = rstd[i];
        for (int j = 0; j < C; j++) {
            double xj = (x[j] - m) * s;
            double acc = 0.0;
            for (int k = 0; k < C; k++) {
                double xk = (x[k] - m) * s;
                double jac = s * ((j == k ? 1.0 : 0.0) - 1.0 / C - xj * xk / C);
                acc += dy[k] * g[k] * jac;
            }
            dinp[(size_t)i * C + j] += (float)acc;
            dg[j] += (float)(dy[j] * xj);
            db[j] += dy[j];
        }
    }
}

void kernel_attention_forward_ref(float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
    int hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);

    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
                float *p = att + (((size_t)b * NH + h) * T + i) * T;
                double mx = -INFINITY, sum = 0.0;
                double *sc = malloc(sizeof(double) * (size_t)T);
                if (sc == NULL)
                    abort(); /* test-only code */
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
                    double d = 0.0;
                    for (int c = 0; c < hs; c++)
                        d += (double)q[c] * k[c];
                    sc[j] = d * scale;
                    if (sc[j] > mx)
                        mx = sc[j];
                }
                for (int j = 0; j <= i; j++)
                    sum += exp(sc[j] - mx);
                for (int j = 0; j < T; j++)
                    p[j] = j <= i ? (float)(exp(sc[j] - mx) / sum) : 0.0f;
                for (int c = 0; c < hs; c++) {
                    double o = 0.0;
                    for (int j = 0; j <= i; j++)
                        o += (double)p[j] * qkv[((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hs + c];
                    out[((size_t)b * T + i) * C + (size_t)h * hs + c] = (float)o;
                }
                free(sc);
            }
}

void kernel_attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T,
                            int C, int NH)
{
    int hs = C / NH;
    double scale = 1.0 / sqrt((double)hs);

    for (size_t i = 0; i < (size_t)B * T * 3 * C; i++)
        dqkv[i] = 0.0f;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *p = att + (((size_t)b * NH + h) * T + i) * T;
                const float *dy = dout + ((size_t)b * T + i) * C + (size_t)h * hs;
                const float *q = qkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
                float *dq = dqkv + ((size_t)b * T + i) * 3 * C + (size_t)h * hs;
                double dp[1024];
                double pdp = 0.0;
                if (T > 1024)
                    abort(); /* test-only code */
                for (int j = 0; j <= i; j++) {
                    const float *v = qkv + ((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hs;
                    float *dv = dqkv + ((size_t)b * T + j) * 3 * C + 2 * C + (size_t)h * hs;
                    dp[j] = 0.0;
                    for (int c = 0; c < hs; c++) {
                        dp[j] += (double)dy[c] * v[c];
                        dv[c] += (float)(p[j] * dy[c]);
                    }
                    pdp += p[j] * dp[j];
                }
                for (int j = 0; j <= i; j++) {
                    double ds = p[j] * (dp[j] - pdp) * scale;
                    const float *k = qkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
                    float *dk = dqkv + ((size_t)b * T + j) * 3 * C + C + (size_t)h * hs;
                    for (int c = 0; c < hs; c++) {
                        dq[c] += (float)(ds * k[c]);
                        dk[c] += (float)(ds * q[c]);
                    }
                }
            }
}

void kernel_gelu_forward_ref(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        out[i] = (float)(0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x))));
    }
}

void kernel_gelu_backward_ref(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double x = inp[i];
        double u = sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x);
        double t = tanh(u);
        double du = sqrt(2.0 / M_PI) * (1.0 + 3.0 * 0.044715 * x * x);
        dinp[i] = (float)(dout[i] * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du));
    }
}

double kernel_crossentropy_forward_ref(float *probs, float *losses, const float *logits, const uint8_t *targets, int N,
                                int V)
{
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < V; j++)
            if (z[j] > mx)
                mx = z[j];
        for (int j = 0; j < V; j++)
            sum += exp(z[j] - mx);
        double loss = log(sum) - (z[targets[i]] - mx);
        for (int j = 0; j < V; j++)
            probs[(size_t)i * V + j] = (float)(exp(z[j] - mx) / sum);
        losses[i] = (float)loss;
        total += loss;
    }
    return total / N;
}

void kernel_crossentropy_backward_ref(float *dlogits, const float *probs, const uint8_t *targets, int N, int V)
{
    for (int i = 0; i < N; i++)
        for (int j = 0; j < V; j++)
            dlogits[(size_t)i * V + j] =
                (float)(((double)probs[(size_t)i * V + j] - (j == targets[i] ? 1.0 : 0.0)) / N);
}
