/* The byte-level GPT: parameter table, flat buffers and forward / backward
 * passes over one batch. No optimizer, no data: trainer.c drives it.
 *
 * Legend: B batch, T seq_len, C d_model, NH n_head, L n_layer, V = 256,
 * N = B*T positions. Parameters live in one flat float buffer (gradients in a
 * second one of the same layout), carved by the tensor table in this order:
 *
 *   wte [V, C]            token embedding, also the tied output head
 *   wpe [T, C]            position embedding
 *   per block l:  h<l>.ln1.g [C], h<l>.ln1.b [C],
 *                 h<l>.attn.qkv.w [C, 3C], h<l>.attn.qkv.b [3C],
 *                 h<l>.attn.proj.w [C, C], h<l>.attn.proj.b [C],
 *                 h<l>.ln2.g [C], h<l>.ln2.b [C],
 *                 h<l>.mlp.fc.w [C, 4C], h<l>.mlp.fc.b [4C],
 *                 h<l>.mlp.proj.w [4C, C], h<l>.mlp.proj.b [C]
 *   lnf.g [C], lnf.b [C]  final LayerNorm
 *
 * Linear weights are stored [in, out] (y = x @ W + b), so every product is
 * a plain row-major sgemm. qkv columns are q | k | v, each split into NH
 * heads of C/NH columns.
 */
#ifndef SWEEPD_MODEL_H
#define SWEEPD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "optim.h"

#define MODEL_VOCAB 256
#define MODEL_TENSORS_PER_LAYER 12

/* Index of each tensor inside a block, in table order. */
enum model_layer_tensor {
    LT_LN1_G, LT_LN1_B, LT_QKV_W, LT_QKV_B, LT_PROJ_W, LT_PROJ_B,
    LT_LN2_G, LT_LN2_B, LT_FC_W, LT_FC_B, LT_FCPROJ_W, LT_FCPROJ_B,
};

/* Saved activations of one block, for the backward pass. */
typedef struct model_layer_acts {
    float *ln1, *ln1_mean, *ln1_rstd; /* [N,C], [N], [N] */
    float *qkv;                       /* [N,3C] */
    float *att;                       /* [B,NH,T,T] softmax probabilities */
    float *atty;                      /* [N,C] attention output before the projection */
    float *res1;                      /* [N,C] residual stream after attention */
    float *ln2, *ln2_mean, *ln2_rstd; /* [N,C], [N], [N] */
    float *fc, *fc_gelu;              /* [N,4C] before and after GELU */
    float *res2;                      /* [N,C] block output */
} model_layer_acts;

typedef struct gpt_model {
    int L, C, NH, T, B;
    size_t n_tensors;
    tensor_desc *tensors;   /* table above; names point into name_storage */
    char *name_storage;
    size_t num_params;
    float *params, *grads;  /* num_params floats each */

    /* Activations: one allocation carved into the pointers below. */
    float *act_memory;
    size_t act_floats;
    model_layer_acts *layers;
    float *x0;                       /* [N,C] embeddings */
    float *lnf, *lnf_mean, *lnf_rstd;
    float *probs;                    /* [N,V] logits, then probabilities, then dlogits */
    float *losses;                   /* [N] */
    /* Backward scratch. */
    float *dres, *dln, *dqkv, *dfc, *datt;
    uint8_t *inputs, *targets;       /* [N] bytes */
} gpt_model;

/* Builds the table and allocates parameters, gradients and activations for
 * batch size B: model_layout() then model_alloc(). Returns 0 or -1 with err
 * set (out of memory). */
int model_create(gpt_model *m, int n_layer, int d_model, int n_head, int seq_len, int batch_size, char *err,
                 size_t err_size);
void model_free(gpt_model *m);

/* The two halves of model_create(). model_layout() sets the sizes, builds
 * the tensor table and counts num_params and act_floats, allocating only the
 * table (a few kilobytes), so that model_bytes() is known before the large
 * buffers exist. model_alloc() then allocates and carves those buffers. Each
 * returns 0, or -1 with err set after freeing what m held. */
int model_layout(gpt_model *m, int n_layer, int d_model, int n_head, int seq_len, int batch_size, char *err,
                 size_t err_size);
int model_alloc(gpt_model *m, char *err, size_t err_size);

/* Initialises the weights from seed: normal(0, 0.02), the two residual
 * output projections normal(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm gains
 * 1. Tensors are filled in table order from one generator stream. */
void model_init(gpt_model *m, uint64_t seed);

/* Runs the forward pass on m->inputs / m->targets. Returns the mean loss in
 * nats per byte (non-finite when the run diverged). */
double model_forward(gpt_model *m);

/* Zeroes m->grads. */
void model_zero_grad(gpt_model *m);

/* Accumulates the gradient of the last forward's mean loss into m->grads.
 * Precondition: model_forward() ran on the same batch. */
void model_backward(gpt_model *m);

/* Bytes held by parameters, gradients and activations; known as soon as
 * model_layout() returns. */
size_t model_bytes(const gpt_model *m);

/* Returns the table entry of tensor k of block l (0-based). */
const tensor_desc *model_layer_tensor(const gpt_model *m, int l, enum model_layer_tensor k);

#endif
