/* The byte-level GPT's forward and backward passes (layout in model.h).
 *
 * Forward per block: ln1 = LN(x); qkv = ln1 @ Wqkv + b; atty = attention(qkv);
 * res1 = x + atty @ Wproj + b; ln2 = LN(res1); fc = ln2 @ Wfc + b;
 * res2 = res1 + GELU(fc) @ Wfcproj + b. Then lnf = LN(x_L), logits = lnf @
 * wte^T, loss = mean cross-entropy. The backward pass walks the same lines in
 * reverse; dres carries the gradient of the residual stream.
 */
#include "model.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "rng.h"

static const char *const layer_names[MODEL_TENSORS_PER_LAYER] = {
    "ln1.g", "ln1.b", "attn.qkv.w", "attn.qkv.b", "attn.proj.w", "attn.proj.b",
    "ln2.g", "ln2.b", "mlp.fc.w", "mlp.fc.b", "mlp.proj.w", "mlp.proj.b",
};

#define NAME_MAX_BYTES 32

static void add_tensor(gpt_model *m, size_t *k, size_t *offset, const char *name, int ndim, int rows, int cols)
{
    tensor_desc *t = &m->tensors[*k];
    char *slot = m->name_storage + *k * NAME_MAX_BYTES;

    snprintf(slot, NAME_MAX_BYTES, "%s", name);
    t->name = slot;
    t->ndim = ndim;
    t->rows = rows;
    t->cols = ndim == 2 ? cols : 1;
    t->offset = *offset;
    t->numel = (size_t)rows * (size_t)t->cols;
    *offset += t->numel;
    (*k)++;
}

/* Fills the tensor table; returns the parameter count. */
static size_t build_table(gpt_model *m)
{
    int C = m->C;
    size_t k = 0, offset = 0;
    char name[NAME_MAX_BYTES];

    add_tensor(m, &k, &offset, "wte", 2, MODEL_VOCAB, C);
    add_tensor(m, &k, &offset, "wpe", 2, m->T, C);
    for (int l = 0; l < m->L; l++) {
        /* rows, cols of each block tensor; 1-D tensors have cols 0. */
        const int shape[MODEL_TENSORS_PER_LAYER][2] = {
            {C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
            {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0},
        };
        for (int j = 0; j < MODEL_TENSORS_PER_LAYER; j++) {
            snprintf(name, sizeof(name), "h%d.%s", l, layer_names[j]);
            add_tensor(m, &k, &offset, name, shape[j][1] ? 2 : 1, shape[j][0], shape[j][1]);
        }
    }
    add_tensor(m, &k, &offset, "lnf.g", 1, C, 0);
    add_tensor(m, &k, &offset, "lnf.b", 1, C, 0);
    return offset;
}

const tensor_desc *model_layer_tensor(const gpt_model *m, int l, enum model_layer_tensor k)
{
    return &m->tensors[2 + (size_t)l * MODEL_TENSORS_PER_LAYER + k];
}

/* Pointer to tensor k of block l inside buf (params or grads). */
static float *layer_ptr(const gpt_model *m, float *buf, int l, enum model_layer_tensor k)
{
    return buf + model_layer_tensor(m, l, k)->offset;
}

/* Carves the activation buffer; with base NULL only counts floats. */
static size_t carve_acts(gpt_model *m, float *base)
{
    size_t N = (size_t)m->B * m->T, C = (size_t)m->C, TT = (size_t)m->T * m->T;
    size_t used = 0;
#define CARVE(ptr, n)                            \
    do {                                         \
        if (base)                                \
            (ptr) = base + used;                 \
        used += (n);                             \
    } while (0)

    for (int l = 0; l < m->L; l++) {
        model_layer_acts dummy, *a = base ? &m->layers[l] : &dummy;
        CARVE(a->ln1, N * C);
        CARVE(a->ln1_mean, N);
        CARVE(a->ln1_rstd, N);
        CARVE(a->qkv, N * 3 * C);
        CARVE(a->att, (size_t)m->B * m->NH * TT);
        CARVE(a->atty, N * C);
        CARVE(a->res1, N * C);
        CARVE(a->ln2, N * C);
        CARVE(a->ln2_mean, N);
        CARVE(a->ln2_rstd, N);
        CARVE(a->fc, N * 4 * C);
        CARVE(a->fc_gelu, N * 4 * C);
        CARVE(a->res2, N * C);
    }
    CARVE(m->x0, N * C);
    CARVE(m->lnf, N * C);
    CARVE(m->lnf_mean, N);
    CARVE(m->lnf_rstd, N);
    CARVE(m->probs, N * MODEL_VOCAB);
    CARVE(m->losses, N);
    CARVE(m->dres, N * C);
    CARVE(m->dln, N * C);
    CARVE(m->dqkv, N * 3 * C);
    CARVE(m->dfc, N * 4 * C);
    CARVE(m->datt, TT);
#undef CARVE
    return used;
}

int model_layout(gpt_model *m, int n_layer, int d_model, int n_head, int seq_len, int batch_size, char *err,
                 size_t err_size)
{
    memset(m, 0, sizeof(*m));
    m->L = n_layer;
    m->C = d_model;
    m->NH = n_head;
    m->T = seq_len;
    m->B = batch_size;
    m->n_tensors = 4 + (size_t)n_layer * MODEL_TENSORS_PER_LAYER;

    m->tensors = calloc(m->n_tensors, sizeof(tensor_desc));
    m->name_storage = calloc(m->n_tensors, NAME_MAX_BYTES);
    m->layers = calloc((size_t)n_layer, sizeof(model_layer_acts));
    if (!m->tensors || !m->name_storage || !m->layers) {
        snprintf(err, err_size, "out of memory allocating the tensor table of %zu tensors", m->n_tensors);
        model_free(m);
        return -1;
    }
    /* With the hyperparameter table's ranges (L <= 64, B <= 65536,
     * T <= 8192, C <= 4096, NH <= 256) the largest count is below 2^57
     * floats, so these size_t sums cannot wrap on a 64-bit build. */
    m->num_params = build_table(m);
    m->act_floats = carve_acts(m, NULL);
    return 0;
}

int model_alloc(gpt_model *m, char *err, size_t err_size)
{
    size_t N = (size_t)m->B * m->T;

    m->params = malloc(m->num_params * sizeof(float));
    m->grads = calloc(m->num_params, sizeof(float));
    m->act_memory = calloc(m->act_floats, sizeof(float));
    m->inputs = calloc(N, 1);
    m->targets = calloc(N, 1);
    if (!m->params || !m->grads || !m->act_memory || !m->inputs || !m->targets) {
        snprintf(err, err_size, "out of memory allocating the model (%zu parameters, %zu activation floats)",
                 m->num_params, m->act_floats);
        model_free(m);
        return -1;
    }
    carve_acts(m, m->act_memory);
    return 0;
}

int model_create(gpt_model *m, int n_layer, int d_model, int n_head, int seq_len, int batch_size, char *err,
                 size_t err_size)
{
    if (model_layout(m, n_layer, d_model, n_head, seq_len, batch_size, err, err_size) != 0)
        return -1;
    return model_alloc(m, err, err_size);
}

void model_free(gpt_model *m)
{
    free(m->tensors);
    free(m->name_storage);
    free(m->layers);
    free(m->params);
    free(m->grads);
    free(m->act_memory);
    free(m->inputs);
    free(m->targets);
    memset(m, 0, sizeof(*m));
}

size_t model_bytes(const gpt_model *m)
{
    return (2 * m->num_params + m->act_floats) * sizeof(float) + 2 * (size_t)m->B * m->T;
}

void model_init(gpt_model *m, uint64_t seed)
{
    rng_state rng;
    double proj_std = 0.02 / sqrt(2.0 * m->L);

    rng_seed(&rng, seed, 0);
    for (size_t k = 0; k < m->n_tensors; k++) {
        const tensor_desc *t = &m->tensors[k];
        float *p = m->params + t->offset;
        const char *leaf = strrchr(t->name, '.');
        int is_gain = leaf && strcmp(leaf, ".g") == 0;
        int is_bias = leaf && strcmp(leaf, ".b") == 0;
        int is_proj = strstr(t->name, "attn.proj.w") || strstr(t->name, "mlp.proj.w");

        for (size_t i = 0; i < t->numel; i++) {
            if (is_gain)
                p[i] = 1.0f;
            else if (is_bias)
                p[i] = 0.0f;
            else
                p[i] = (float)(rng_normal(&rng) * (is_proj ? proj_std : 0.02));
        }
    }
}

void model_zero_grad(gpt_model *m)
{
    memset(m->grads, 0, m->num_params * sizeof(float));
}

double model_forward(gpt_model *m)
{
    int B = m->B, T = m->T, C = m->C, NH = m->NH, N = B * T;
    const float *wte = m->params + m->tensors[0].offset;
    const float *wpe = m->params + m->tensors[1].offset;

    /* x0[b,t,:] = wte[token] + wpe[t]. */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *x = m->x0 + ((size_t)b * T + t) * C;
            const float *te = wte + (size_t)m->inputs[b * T + t] * C;
            const float *pe = wpe + (size_t)t * C;
            for (int c = 0; c < C; c++)
                x[c] = te[c] + pe[c];
        }

    const float *x = m->x0;
    for (int l = 0; l < m->L; l++) {
        model_layer_acts *a = &m->layers[l];
        float *P = m->params;
        size_t NC = (size_t)N * C;

        kernel_layernorm_forward(a->ln1, a->ln1_mean, a->ln1_rstd, x, layer_ptr(m, P, l, LT_LN1_G),
                          layer_ptr(m, P, l, LT_LN1_B), N, C);
        kernel_matmul_forward(a->qkv, a->ln1, layer_ptr(m, P, l, LT_QKV_W), layer_ptr(m, P, l, LT_QKV_B), N, C, 3 * C);
        kernel_attention_forward(a->atty, a->att, a->qkv, B, T, C, NH);
        kernel_matmul_forward(a->res1, a->atty, layer_ptr(m, P, l, LT_PROJ_W), layer_ptr(m, P, l, LT_PROJ_B), N, C, C);
        kernel_residual_forward(a->res1, a->res1, x, NC);

        kernel_layernorm_forward(a->ln2, a->ln2_mean, a->ln2_rstd, a->res1, layer_ptr(m, P, l, LT_LN2_G),
                          layer_ptr(m, P, l, LT_LN2_B), N, C);
        kernel_matmul_forward(a->fc, a->ln2, layer_ptr(m, P, l, LT_FC_W), layer_ptr(m, P, l, LT_FC_B), N, C, 4 * C);
        kernel_gelu_forward(a->fc_gelu, a->fc, (size_t)N * 4 * C);
        kernel_matmul_forward(a->res2, a->fc_gelu, layer_ptr(m, P, l, LT_FCPROJ_W), layer_ptr(m, P, l, LT_FCPROJ_B), N,
                       4 * C, C);
        kernel_residual_forward(a->res2, a->res2, a->res1, NC);
        x = a->res2;
    }

    const float *lnf_g = m->params + m->tensors[m->n_tensors - 2].offset;
    const float *lnf_b = m->params + m->tensors[m->n_tensors - 1].offset;
    kernel_layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, x, lnf_g, lnf_b, N, C);

    /* logits[N,V] = lnf @ wte^T (tied head). */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, MODEL_VOCAB, C, 1.0f, m->lnf, C, wte, C, 0.0f, m->probs,
                MODEL_VOCAB);
    return kernel_crossentropy_forward(m->probs, m->losses, m->probs, m->targets, N, MODEL_VOCAB);
}

void model_backward(gpt_model *m)
{
    int B = m->B, T = m->T, C = m->C, NH = m->NH, N = B * T;
    float *P = m->params, *G = m->grads;
    const float *wte = P + m->tensors[0].offset;
    float *dwte = G + m->tensors[0].offset;
    float *dwpe = G + m->tensors[1].offset;
    size_t lnf_g = m->tensors[m->n_tensors - 2].offset, lnf_b = m->tensors[m->n_tensors - 1].offset;
    const float *x_last = m->L > 0 ? m->layers[m->L - 1].res2 : m->x0;

    /* Backward of the loss and of logits = lnf @ wte^T. probs becomes dlogits. */
    kernel_crossentropy_backward(m->probs, m->probs, m->targets, N, MODEL_VOCAB);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, MODEL_VOCAB, 1.0f, m->probs, MODEL_VOCAB, wte, C,
                0.0f, m->dln, C);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, MODEL_VOCAB, C, N, 1.0f, m->probs, MODEL_VOCAB, m->lnf, C,
                1.0f, dwte, C);

    /* Backward of lnf = LN(x_L): dres starts as the gradient of x_L. */
    memset(m->dres, 0, (size_t)N * C * sizeof(float));
    kernel_layernorm_backward(m->dres, G + lnf_g, G + lnf_b, m->dln, x_last, P + lnf_g, m->lnf_mean, m->lnf_rstd, N, C);

    for (int l = m->L - 1; l >= 0; l--) {
        model_layer_acts *a = &m->layers[l];
        const float *x = l > 0 ? m->layers[l - 1].res2 : m->x0;

        /* res2 = res1 + GELU(fc) @ Wfcproj + b: dres passes through; dfc = dres @ Wfcproj^T. */
        kernel_matmul_backward(m->dfc, layer_ptr(m, G, l, LT_FCPROJ_W), layer_ptr(m, G, l, LT_FCPROJ_B), m->dres,
                        a->fc_gelu, layer_ptr(m, P, l, LT_FCPROJ_W), N, 4 * C, C);
        kernel_gelu_backward(m->dfc, a->fc, m->dfc, (size_t)N * 4 * C);
        kernel_matmul_backward(m->dln, layer_ptr(m, G, l, LT_FC_W), layer_ptr(m, G, l, LT_FC_B), m->dfc, a->ln2,
                        layer_ptr(m, P, l, LT_FC_W), N, C, 4 * C);
        kernel_layernorm_backward(m->dres, layer_ptr(m, G, l, LT_LN2_G), layer_ptr(m, G, l, LT_LN2_B), m->dln, a->res1,
                           layer_ptr(m, P, l, LT_LN2_G), a->ln2_mean, a->ln2_rstd, N, C);

        /* res1 = x + atty @ Wproj + b. dln holds datty here. */
        kernel_matmul_backward(m->dln, layer_ptr(m, G, l, LT_PROJ_W), layer_ptr(m, G, l, LT_PROJ_B), m->dres, a->atty,
                        layer_ptr(m, P, l, LT_PROJ_W), N, C, C);
        kernel_attention_backward(m->dqkv, m->datt, m->dln, a->qkv, a->att, B, T, C, NH);
        kernel_matmul_backward(m->dln, layer_ptr(m, G, l, LT_QKV_W), layer_ptr(m, G, l, LT_QKV_B), m->dqkv, a->ln1,
                        layer_ptr(m, P, l, LT_QKV_W), N, C, 3 * C);
        kernel_layernorm_backward(m->dres, layer_ptr(m, G, l, LT_LN1_G), layer_ptr(m, G, l, LT_LN1_B), m->dln, x,
                           layer_ptr(m, P, l, LT_LN1_G), a->ln1_mean, a->ln1_rstd, N, C);
    }

    /* Backward of x0 = wte[token] + wpe[t]. */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *d = m->dres + ((size_t)b * T + t) * C;
            float *dte = dwte + (size_t)m->inputs[b * T + t] * C;
            float *dpe = dwpe + (size_t)t * C;
            for (int c = 0; c < C; c++) {
                dte[c] += d[c];
                dpe[c] += d[c];
            }
        }
}
