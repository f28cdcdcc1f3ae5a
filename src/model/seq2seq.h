/* seq2seq.h — the sequence-to-sequence Transformer of "Attention Is All You Need" (and
 * the Annotated Transformer) around nn.Transformer: token embeddings scaled by
 * √d_model plus sinusoidal positions (then dropout), the Transformer, and a generator
 * Linear + log-softmax; trained with label-smoothed cross-entropy that ignores PAD.
 *
 * With tie_embeddings (the paper's §3.4) one matrix "embed.weight" serves as source
 * embedding, target embedding and generator weight; otherwise "src_embed.weight",
 * "tgt_embed.weight" and "generator.weight" are separate. "generator.bias" always.
 * The Transformer's parameters are "transformer.encoder.…", "transformer.decoder.…".
 * Legend: N batch, S source length, L target length, E d_model, V vocabulary, R = N·L.
 */
#ifndef TFM_MODEL_SEQ2SEQ_H
#define TFM_MODEL_SEQ2SEQ_H

#include <stdbool.h>
#include <stdint.h>

#include "kernels/compute.h"
#include "model/loss.h"
#include "model/posenc.h"
#include "nn/stacks.h"

typedef struct seq2seq_config {
    int64_t vocab;
    int64_t d_model, nhead, num_encoder_layers, num_decoder_layers, dim_feedforward;
    float dropout;
    tfm_activation activation;
    bool norm_first;
    bool tie_embeddings;
    int64_t max_len; /* longest sequence (source or target incl. BOS/EOS) */
} seq2seq_config;

/* Parameters, or gradients with the same layout. */
typedef struct seq2seq_params {
    float *src_embed;        /* (V, E); with tie_embeddings the one shared matrix */
    float *tgt_embed;        /* (V, E), or NULL when tied */
    transformer_params tr;
    float *generator_weight; /* (V, E), or NULL when tied */
    float *generator_bias;   /* (V) */
} seq2seq_params;

/* One batch of token ids. */
typedef struct seq2seq_batch {
    int64_t N, S, L;
    const int32_t *src;      /* (N, S) */
    const uint8_t *src_pad;  /* (N, S) 1 = padding */
    const int32_t *tgt_in;   /* (N, L) BOS + target */
    const uint8_t *tgt_pad;  /* (N, L) */
    const int32_t *tgt_out;  /* (N, L) target + EOS, PAD-filled: the labels */
} seq2seq_batch;

typedef struct seq2seq {
    seq2seq_config cfg;
    transformer_config tr_cfg;
    param_list params, grads;
    seq2seq_params p, g;
    float *block, *grad_block; /* one allocation each */
    size_t num_floats;
    encoder_layer_params *layer_views[2]; /* per-layer views for p and g */
    decoder_layer_params *dlayer_views[2];
    posenc pe;
    tfm_ws ws, act;
    uint64_t dropout_seed; /* training steps draw streams from it and the step */
    tfm_compute_type compute; /* the products' compute type (TFM_COMPUTE_F32 default) */
    bf16_weights bf16w;       /* bf16 twins of the matrices, for TFM_COMPUTE_BF16 */
} seq2seq;

tfm_status seq2seq_check_config(const seq2seq_config *c);
/* Allocate (parameters uninitialised, gradients zero): seq2seq_plan then seq2seq_alloc. */
tfm_status seq2seq_create(seq2seq *m, const seq2seq_config *c);
/* The parameter lists only (names, shapes, num_floats), so that a file can be checked
 * against them before anything large is allocated; seq2seq_alloc then allocates. On
 * failure either leaves m freed. */
tfm_status seq2seq_plan(seq2seq *m, const seq2seq_config *c);
tfm_status seq2seq_alloc(seq2seq *m);
/* Xavier-uniform for every matrix (as the Annotated Transformer), LayerNorm 1/0,
 * Linear biases U(±1/√fan_in), drawn from seed. */
void seq2seq_init(seq2seq *m, uint64_t seed);
void seq2seq_free(seq2seq *m);

/* One training step's forward and backward: the loss (label smoothing eps, PAD
 * ignored, mean over target tokens) and its gradients ACCUMULATED into m->g.
 * dropout applies with the model's rate when `train`; `step` picks the dropout
 * streams. res gets the loss, token count and correct predictions. */
tfm_status seq2seq_train_step(seq2seq *m, const seq2seq_batch *b, float eps, bool train,
                              uint64_t step, ce_result *res);
/* Loss only (evaluation mode), for validation. */
tfm_status seq2seq_eval_loss(seq2seq *m, const seq2seq_batch *b, float eps, ce_result *res);

/* Enter m's compute scope for one call (kernels/compute.h), making or refreshing the
 * bf16 twins of its matrices when the compute type is bf16. compute_leave(*previous)
 * ends it. */
tfm_status seq2seq_compute_begin(seq2seq *m, compute_scope *previous);
/* The parameters changed (an optimizer step, a load): the bf16 twins are stale. */
static inline void seq2seq_params_changed(seq2seq *m) { m->bf16w.stale = true; }

/* Greedy decoding, batched, by recomputing the decoder over the prefix at each step.
 * src (N, S) with src_pad; out (N, max_out) receives target ids (without BOS), each
 * row ending with EOS (if produced) and PAD-filled after it. */
tfm_status seq2seq_greedy(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t N,
                          int64_t S, int64_t max_out, int32_t *out);

#endif
