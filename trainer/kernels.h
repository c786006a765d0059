/* Forward and backward kernels of the byte-level GPT: linear layers,
 * LayerNorm, causal attention, GELU and softmax cross-entropy.
 *
 * Legend: N rows (= B*T positions), B batch, T seq_len, C channels, NH heads,
 * hs = C/NH head size, V = 256 vocabulary. Every matrix is row-major float.
 * Every matrix product goes through cblas_sgemm; the element-wise kernels are
 * plain loops written for auto-vectorisation. Argument order: outputs,
 * inputs, weights, sizes. Backward kernels say which outputs they overwrite
 * and which they accumulate into (parameter gradients always accumulate).
 *
 * kernels_ref.c holds naive versions of the same functions (suffix _ref),
 * written as direct loops in double precision, for the unit tests.
 */
#ifndef SWEEPD_KERNELS_H
#define SWEEPD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define KERNEL_LN_EPS 1e-5f
/* Rows per block of the causal attention products (see kernels.c). */
#define KERNEL_ATT_BLOCK 32

/* exp(x) for float x, accurate to about 2 ulp on [-87, 88] and written so the
 * compiler can vectorise loops that call it (glibc's expf is not vectorised
 * without -ffast-math). Inputs are clamped to that range. */
float kernel_expf(float x);

/* out[N,Cout] = inp[N,Cin] @ w[Cin,Cout] + bias[Cout] (bias may be NULL). */
void kernel_matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int Cin, int Cout);
/* dinp[N,Cin] = dout @ w^T (overwritten; skipped when dinp is NULL);
 * dw[Cin,Cout] += inp^T @ dout; dbias[Cout] += column sums of dout (if non-NULL). */
void kernel_matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                     int N, int Cin, int Cout);

/* out[N,C] = (inp - mean) * rstd * g + b per row; saves mean[N] and rstd[N]. */
void kernel_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *g, const float *b,
                       int N, int C);
/* dinp[N,C] += d/dinp; dg[C] += ...; db[C] += ... */
void kernel_layernorm_backward(float *dinp, float *dg, float *db, const float *dout, const float *inp, const float *g,
                        const float *mean, const float *rstd, int N, int C);

/* qkv[B,T,3C] holds q | k | v per position, heads contiguous inside each.
 * att[B,NH,T,T] receives the causal softmax probabilities (0 above the
 * diagonal); out[B,T,C] = att @ v per head. */
void kernel_attention_forward(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
/* dqkv[B,T,3C] is overwritten; scratch holds T*T floats. */
void kernel_attention_backward(float *dqkv, float *scratch, const float *dout, const float *qkv, const float *att, int B,
                        int T, int C, int NH);

/* out[n] = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
void kernel_gelu_forward(float *out, const float *inp, size_t n);
/* dinp[n] = dout * gelu'(inp) (overwritten; dinp may alias dout). */
void kernel_gelu_backward(float *dinp, const float *inp, const float *dout, size_t n);

/* probs[N,V] = softmax(logits) (probs may alias logits); losses[N] =
 * -log probs[target]. Returns the mean loss in nats. */
double kernel_crossentropy_forward(float *probs, float *losses, const float *logits, const uint8_t *targets, int N, int V);
/* dlogits[N,V] = (probs - onehot(target)) / N (dlogits may alias probs). */
void kernel_crossentropy_backward(float *dlogits, const float *probs, const uint8_t *targets, int N, int V);

/* out[n] = a + b (out may alias a). */
void kernel_residual_forward(float *out, const float *a, const float *b, size_t n);

/* Naive references (kernels_ref.c), same contracts, except that no output may alias an input. */
void kernel_matmul_forward_ref(float *out, const float *inp, const float *w, const float *bias, int N, int Cin, int Cout);
void kernel_matmul_backward_ref(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const float *w, int N, int Cin, int Cout);
void kernel_layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp, const float *g, const float *b,
                           int N, int C);
void kernel_layernorm_backward_ref(float *dinp, float *dg, float *db, const float *dout, const float *inp,
                            const float *g, const float *mean, const float *rstd, int N, int C);
void kernel_attention_forward_ref(float *out, float *att, const float *qkv, int B, int T, int C, int NH);
void kernel_attention_backward_ref(float *dqkv, const float *dout, const float *qkv, const float *att, int B, int T,
                            int C, int NH);
void kernel_gelu_forward_ref(float *out, const float *inp, size_t n);
void kernel_gelu_backward_ref(float *dinp, const float *inp, const float *dout, size_t n);
double kernel_crossentropy_forward_ref(float *probs, float *losses, const float *logits, const uint8_t *targets, int N,
                                int V);
void kernel_crossentropy_backward_ref(float *dlogits, const float *probs, const uint8_t *targets, int N, int V);

#endif
