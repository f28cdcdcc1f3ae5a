/* layer_config.h — constructor arguments shared by the Transformer layers and stacks,
 * and the sublayers every layer has: LayerNorm and the feed-forward block.
 * Legend: R rows (N·L), E d_model, F dim_feedforward. */
#ifndef TFM_NN_LAYER_CONFIG_H
#define TFM_NN_LAYER_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/workspace.h"
#include "nn/params.h"
#include "nn/train_ctx.h"
#include "tfm.h"

typedef struct layer_config {
    int64_t d_model, nhead, dim_feedforward;
    tfm_activation activation;
    float layer_norm_eps;
    bool norm_first; /* pre-norm: x + sublayer(norm(x)); else post-norm: norm(x + sublayer(x)) */
    bool bias;       /* false removes every Linear, LayerNorm and attention bias */
} layer_config;

tfm_status layer_check_config(const layer_config *c);

/* nn.LayerNorm(d_model, eps, bias=bias) — parameters or gradients */
typedef struct norm_params {
    float *weight; /* (E) */
    float *bias;   /* (E), when bias */
} norm_params;

void norm_describe(const layer_config *c, norm_params *p, const char *prefix, const char *name,
                   param_list *l);
/* out (R, E) = LayerNorm(x (R, E)); out may alias x. mean, rstd (R) or NULL: saved. */
void norm_forward(const layer_config *c, const norm_params *p, float *out, float *mean,
                  float *rstd, const float *x, int64_t R);
/* dx (R, E) += …, parameter gradients into g; x, mean, rstd as in the forward. */
void norm_backward(const layer_config *c, const norm_params *p, norm_params *g, float *dx,
                   const float *dy, const float *x, const float *mean, const float *rstd,
                   int64_t R);
/* A post-norm block's end in one pass: sum (R, E) = a + dropout(t) (kept for backward),
 * out (R, E) = LayerNorm(sum); out may alias a. p, seed: the dropout site. */
void norm_forward_residual(const layer_config *c, const norm_params *p, float *out, float *sum,
                           float *mean, float *rstd, const float *a, const float *t, int64_t R,
                           float drop, uint64_t seed);
/* Its backward: with g the gradient of sum, dres (R, E) = g (OVERWRITTEN, may alias dy)
 * and ddrop (R, E) = dropout(g); parameter gradients into g; sum, mean, rstd saved. */
void norm_backward_residual(const layer_config *c, const norm_params *p, norm_params *g,
                            float *dres, float *ddrop, const float *dy, const float *sum,
                            const float *mean, const float *rstd, int64_t R, float drop,
                            uint64_t seed);

/* linear1 → activation → dropout → linear2 — parameters or gradients */
typedef struct ffn_params {
    float *linear1_weight; /* (F, E) */
    float *linear1_bias;   /* (F), when bias */
    float *linear2_weight; /* (E, F) */
    float *linear2_bias;   /* (E), when bias */
} ffn_params;

typedef struct ffn_cache {
    const float *x; /* (R, E) input */
    float *a;       /* (R, F) linear1 output, before the activation: GELU only (ReLU's
                       backward reads h, which is > 0 exactly where the gradient passes) */
    float *h;       /* (R, F) after activation and dropout: linear2's input */
    float dropout;
    uint64_t seed;
} ffn_cache;

void ffn_describe(const layer_config *c, ffn_params *p, const char *prefix, param_list *l);
/* out (R, E) = linear2(dropout(act(linear1(x (R, E))))); out must not alias x.
 * tc, cache: NULL for inference, else the activations are saved (x must stay). */
tfm_status ffn_forward(const layer_config *c, const ffn_params *p, tfm_ws *ws, float *out,
                       const float *x, int64_t R, train_ctx *tc, ffn_cache *cache);
/* dx (R, E) += …; parameter gradients into g. */
tfm_status ffn_backward(const layer_config *c, const ffn_params *p, ffn_params *g,
                        const ffn_cache *k, tfm_ws *ws, float *dx, const float *dout, int64_t R);

#endif
