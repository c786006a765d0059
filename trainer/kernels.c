/* Fast kernels of the byte-level GPT (contracts and legend in kernels.h).
 *
 * Matrix products are cblas_sgemm calls laid out so that no operand is ever
 * copied or transposed in memory: weights are stored [in, out], attention
 * reads q, k and v in place from the qkv rows through leading dimensions.
 * Reductions use 8 independent partial sums so that GCC vectorises them
 * without -ffast-math. This fixes the summation order, so results are
 * deterministic for a given build.
 */
#include "kernels.h"

/* Comparisons in the clamps, max reductions and masks are if-converted to
 * vector selects only when GCC may assume that they do not trap. Nothing here
 * reads the floating-point exception flags. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <cblas.h>
#include <math.h>
#include <string.h>

#define LANES 8

/* The Makefile builds for x86-64-v2 (SSE4.2). The element-wise kernels also
 * get AVX2 and AVX-512 clones chosen at load time. By construction every
 * clone computes the same bits: the C11 mode disables FMA contraction, and
 * the reductions fix their order with LANES partial sums. NOTE: no test
 * forces a clone other than the one the test machine selects. */
#define KERNEL_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))

float kernel_expf(float x)
{
    /* exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2, exp(r) by
     * its Taylor polynomial of degree 7 (truncation error < 1e-8 relative). */
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;

    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = floorf(x * log2e + 0.5f);
    float r = x - n * ln2_hi;
    r = r - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    union { uint32_t u; float f; } scale;
    scale.u = (uint32_t)((int32_t)n + 127) << 23;
    return p * scale.f;
}

static float sum_floats(const float *x, int n)
{
    float acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += x[j + k];
    float s = 0.0f;
    for (; j < n; j++)
        s += x[j];
    for (int k = 0; k < LANES; k++)
        s += acc[k];
    return s;
}

static float dot_floats(const float *x, const float *y, int n)
{
    float acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] += x[j + k] * y[j + k];
    float s = 0.0f;
    for (; j < n; j++)
        s += x[j] * y[j];
    for (int k = 0; k < LANES; k++)
        s += acc[k];
    return s;
}

static float max_floats(const float *x, int n)
{
    float acc[LANES];
    for (int k = 0; k < LANES; k++)
        acc[k] = -INFINITY;
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int k = 0; k < LANES; k++)
            acc[k] = x[j + k] > acc[k] ? x[j + k] : acc[k];
    float m = -INFINITY;
    for (; j < n; j++)
        m = x[j] > m ? x[j] : m;
    for (int k = 0; k < LANES; k++)
        m = acc[k] > m ? acc[k] : m;
    return m;
}

void kernel_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int Cin, int Cout)
{
    float beta = 0.0f;
    if (bias) {
        for (int i = 0; i < N; i++)
            memcpy(out + (size_t)i * Cout, bias, (size_t)Cout * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, Cout, Cin, 1.0f, inp, Cin, w, Cout, beta, out, Cout);
}

void kernel_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int N, int Cin, int Cout)
{
    /* Backward of out = inp @ w + bias. */
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, Cin, Cout, 1.0f, dout, Cout, w, Cout, 0.0f, dinp,
                    Cin);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cin, Cout, N, 1.0f, inp, Cin, dout, Cout, 1.0f, dw, Cout);
    if (dbias) {
        for (int i = 0; i < N; i++) {
            const float *row = dout + (size_t)i * Cout;
            for (int j = 0; j < Cout; j++)
                dbias[j] += row[j];
        }
    }
}

KERNEL_CLONES
void kernel_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *g, const float *b,
                       int N, int C)
{
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        float *y = out + (size_t)i * C;

        /* Two passes: the mean, then the variance around it. */
        float m = sum_floats(x, C) / (float)C;
        float acc[LANES] = {0};
        int j = 0;
        for (; j + LANES <= C; j += LANES)
            for (int k = 0; k < LANES; k++) {
                float d = x[j + k] - m;
                acc[k] += d * d;
            }
        float v = 0.0f;
        for (; j < C; j++)
            v += (x[j] - m) * (x[j] - m);
        for (int k = 0; k < LANES; k++)
            v += acc[k];
        float s = 1.0f / sqrtf(v / (float)C + KERNEL_LN_EPS);

        for (j = 0; j < C; j++)
            y[j] = (x[j] - m) * s * g[j] + b[j];
        mean[i] = m;
        rstd[i] = s;
    }
}

KERNEL_CLONES
void kernel_layernorm_backward(float *dinp, float *dg, float *db, const float *dout, const float *inp, const float *g,
                        const float *mean, const float *rstd, int N, int C)
{
    /* Backward of y = xhat * g + b with xhat = (x - mean) * rstd:
     * dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)). */
    for (int i = 0; i < N; i++) {
        const float *x = inp + (size_t)i * C;
        const float *dy = dout + (size_t)i * C;
        float *dx = dinp + (size_t)i * C;
        float m = mean[i], s = rstd[i];
        float acc_d[LANES] = {0}, acc_dx[LANES] = {0};
        int j = 0;

        for (; j + LANES <= C; j += LANES)
            for (int k = 0; k < LANES; k++) {
                float xhat = (x[j + k] - m) * s;
                float dxhat = dy[j + k] * g[j + k];
                acc_d[k] += dxhat;
                acc_dx[k] += dxhat * xhat;
            }
        float sum_d = 0.0f, sum_dx = 0.0f;
        for (; j < C; j++) {
            float xhat = (x[j] - m) * s;
            float dxhat = dy[j] * g[j];
            sum_d += dxhat;
            sum_dx += dxhat * xhat;
        }
        for (int k = 0; k < LANES; k++) {
            sum_d += acc_d[k];
            sum_dx += acc_dx[k];
        }
        float mean_d = sum_d / (float)C, mean_dx = sum_dx / (float)C;

        for (j = 0; j < C; j++) {
            float xhat = (x[j] - m) * s;
            float dxhat = dy[j] * g[j];
            db[j] += dy[j];
            dg[j] += dy[j] * xhat;
            dx[j] += s * (dxhat - mean_d - xhat * mean_dx);
        }
    }
}

/* Causal attention skips the products above the diagonal block by block:
 * rows are taken KERNEL_ATT_BLOCK at a time, and a block of rows [r0, r1)
 * needs only columns [0, r1). With 4 blocks (T = 128) this does 5/8 of the
 * full T x T work. Entries above the diagonal inside a block are computed
 * and then masked. */
#define ATT_BLOCK KERNEL_ATT_BLOCK

KERNEL_CLONES
void kernel_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH)
{
    int hs = C / NH;
    int C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);

    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * C3 + (size_t)h * hs;
            const float *k = q + C;
            const float *v = q + 2 * C;
            float *p = att + ((size_t)b * NH + h) * T * T;
            float *o = out + (size_t)b * T * C + (size_t)h * hs;

            /* p[r0:r1, 0:r1] = scale * q[r0:r1] @ k[0:r1]^T. */
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, scale, q + (size_t)r0 * C3,
                            C3, k, C3, 0.0f, p + (size_t)r0 * T, T);
            }

            /* Causal softmax per row: positions j <= i; the rest of the row becomes 0. */
            for (int i = 0; i < T; i++) {
                float *row = p + (size_t)i * T;
                float mx = max_floats(row, i + 1);
                for (int j = 0; j <= i; j++)
                    row[j] = kernel_expf(row[j] - mx);
                float inv = 1.0f / sum_floats(row, i + 1);
                for (int j = 0; j <= i; j++)
                    row[j] *= inv;
                for (int j = i + 1; j < T; j++)
                    row[j] = 0.0f;
            }

            /* o[r0:r1] = p[r0:r1, 0:r1] @ v[0:r1], written into the head's columns of out. */
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, 1.0f, p + (size_t)r0 * T,
                            T, v, C3, 0.0f, o + (size_t)r0 * C, C);
            }
        }
}

KERNEL_CLONES
void kernel_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att,
                               int B, int T, int C, int NH)
{
    int hs = C / NH;
    int C3 = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);

    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t head = (size_t)b * T * C3 + (size_t)h * hs;
            const float *q = qkv + head, *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + head, *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + ((size_t)b * NH + h) * T * T;
            const float *dy = dout + (size_t)b * T * C + (size_t)h * hs;
            float *dp = scratch;

            /* Backward of o = p @ v. Row block [r0, r1) of dp = dy[r0:r1] @ v[0:r1]^T;
             * block [r0, r1) of dv = p[r0:T, r0:r1]^T @ dy[r0:T] (p is 0 above the diagonal). */
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, r1, hs, 1.0f, dy + (size_t)r0 * C, C,
                            v, C3, 0.0f, dp + (size_t)r0 * T, T);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, hs, T - r0, 1.0f,
                            p + (size_t)r0 * T + r0, T, dy + (size_t)r0 * C, C, 0.0f, dv + (size_t)r0 * C3, C3);
            }

            /* Backward of the softmax: ds = p * (dp - sum_j p dp), 0 above the diagonal. Only
             * j <= i of dp is read, and the rest, not computed above, is overwritten. */
            for (int i = 0; i < T; i++) {
                const float *prow = p + (size_t)i * T;
                float *row = dp + (size_t)i * T;
                float s = dot_floats(prow, row, i + 1);
                for (int j = 0; j <= i; j++)
                    row[j] = prow[j] * (row[j] - s);
                for (int j = i + 1; j < T; j++)
                    row[j] = 0.0f;
            }

            /* Backward of s = scale * q @ k^T, with ds in dp: dq[r0:r1] = scale ds[r0:r1, 0:r1] @ k[0:r1],
             * dk[r0:r1] = scale ds[r0:T, r0:r1]^T @ q[r0:T]. */
            for (int r0 = 0; r0 < T; r0 += ATT_BLOCK) {
                int r1 = r0 + ATT_BLOCK < T ? r0 + ATT_BLOCK : T;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, hs, r1, scale, dp + (size_t)r0 * T, T,
                            k, C3, 0.0f, dq + (size_t)r0 * C3, C3);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r1 - r0, hs, T - r0, scale,
                            dp + (size_t)r0 * T + r0, T, q + (size_t)r0 * C3, C3, 0.0f, dk + (size_t)r0 * C3, C3);
            }
        }
}

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */
#define GELU_A 0.044715f

/* tanh(u) = 1 - 2 / (exp(2u) + 1), through the vectorisable exp. */
static inline float tanh_fast(float u)
{
    return 1.0f - 2.0f / (kernel_expf(2.0f * u) + 1.0f);
}

KERNEL_CLONES
void kernel_gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float t = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
        out[i] = 0.5f * x * (1.0f + t);
    }
}

KERNEL_CLONES
void kernel_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float t = tanh_fast(GELU_K * (x + GELU_A * x * x * x));
        float du = GELU_K * (1.0f + 3.0f * GELU_A * x * x);
        float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
        dinp[i] = dout[i] * grad;
    }
}

KERNEL_CLONES
double kernel_crossentropy_forward(float *probs, float *losses, const float *logits, const uint8_t *targets, int N, int V)
{
    double total = 0.0;

    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * V;
        float *p = probs + (size_t)i * V;
        float mx = max_floats(z, V);
        float zt = z[targets[i]];

        for (int j = 0; j < V; j++)
            p[j] = kernel_expf(z[j] - mx);
        float sum = sum_floats(p, V);
        float inv = 1.0f / sum;
        for (int j = 0; j < V; j++)
            p[j] *= inv;
        /* -log softmax(z)[t] = log(sum) - (z[t] - max), exact even when p[t] underflows. */
        float loss = logf(sum) - (zt - mx);
        losses[i] = loss;
        total += loss;
    }
    return total / N;
}

KERNEL_CLONES
void kernel_crossentropy_backward(float *dlogits, const float *probs, const uint8_t *targets, int N, int V)
{
    float inv_n = 1.0f / (float)N;

    for (int i = 0; i < N; i++) {
        const float *p = probs + (size_t)i * V;
        float *d = dlogits + (size_t)i * V;
        for (int j = 0; j < V; j++)
            d[j] = p[j] * inv_n;
        d[targets[i]] -= inv_n;
    }
}

void kernel_residual_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}
