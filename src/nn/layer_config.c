/* layer_config.c — checks of the layer arguments; LayerNorm and feed-forward sublayers,
 * forward and backward. Legend: R rows, E d_model, F dim_feedforward. */
#include "nn/layer_config.h"

#include "core/status.h"
#include "kernels/elementwise.h"
#include "nn/linear.h"

tfm_status layer_check_config(const layer_config *c) {
    if (c->d_model <= 0 || c->nhead <= 0 || c->dim_feedforward <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "d_model (%lld), nhead (%lld) and dim_feedforward (%lld) must be > 0",
                         (long long)c->d_model, (long long)c->nhead, (long long)c->dim_feedforward);
    if (c->d_model % c->nhead != 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "d_model (%lld) must be divisible by nhead (%lld)",
                         (long long)c->d_model, (long long)c->nhead);
    if (!(c->layer_norm_eps >= 0.0f))
        return tfm_error(TFM_ERR_INVALID_ARG, "layer_norm_eps must be >= 0");
    if (c->activation != TFM_RELU && c->activation != TFM_GELU)
        return tfm_error(TFM_ERR_INVALID_ARG, "activation must be relu or gelu");
    return TFM_OK;
}

void norm_describe(const layer_config *c, norm_params *p, const char *prefix, const char *name,
                   param_list *l) {
    char pre[PARAM_NAME_MAX];
    if (!param_prefix(pre, prefix, name)) {
        l->failed = true;
        return;
    }
    const int64_t E = c->d_model;
    param_add(l, true, pre, "weight", &p->weight, INIT_ONE, E, 1, E, 0, 0);
    param_add(l, c->bias, pre, "bias", &p->bias, INIT_ZERO, E, 1, E, 0, 0);
}

void norm_forward(const layer_config *c, const norm_params *p, float *out, float *mean,
                  float *rstd, const float *x, int64_t R) {
    layernorm_forward(out, mean, rstd, x, p->weight, p->bias, R, c->d_model, c->layer_norm_eps);
}

void norm_backward(const layer_config *c, const norm_params *p, norm_params *g, float *dx,
                   const float *dy, const float *x, const float *mean, const float *rstd,
                   int64_t R) {
    layernorm_backward(dx, g->weight, g->bias, dy, x, mean, rstd, p->weight, R, c->d_model);
}

void norm_forward_residual(const layer_config *c, const norm_params *p, float *out, float *sum,
                           float *mean, float *rstd, const float *a, const float *t, int64_t R,
                           float drop, uint64_t seed) {
    add_dropout_layernorm_forward(out, sum, mean, rstd, a, t, p->weight, p->bias, R, c->d_model,
                                  c->layer_norm_eps, drop, seed);
}

void norm_backward_residual(const layer_config *c, const norm_params *p, norm_params *g,
                            float *dres, float *ddrop, const float *dy, const float *sum,
                            const float *mean, const float *rstd, int64_t R, float drop,
                            uint64_t seed) {
    layernorm_backward_dropout(dres, ddrop, g->weight, g->bias, dy, sum, mean, rstd, p->weight, R,
                               c->d_model, drop, seed);
}

void ffn_describe(const layer_config *c, ffn_params *p, const char *prefix, param_list *l) {
    const int64_t E = c->d_model, F = c->dim_feedforward;
    param_add(l, true, prefix, "linear1.weight", &p->linear1_weight, INIT_KAIMING_LINEAR, E, 2, F,
              E, 0);
    param_add(l, c->bias, prefix, "linear1.bias", &p->linear1_bias, INIT_LINEAR_BIAS, E, 1, F, 0,
              0);
    param_add(l, true, prefix, "linear2.weight", &p->linear2_weight, INIT_KAIMING_LINEAR, F, 2, E,
              F, 0);
    param_add(l, c->bias, prefix, "linear2.bias", &p->linear2_bias, INIT_LINEAR_BIAS, F, 1, E, 0,
              0);
}

tfm_status ffn_forward(const layer_config *c, const ffn_params *p, tfm_ws *ws, float *out,
                       const float *x, int64_t R, train_ctx *tc, ffn_cache *k) {
    const int64_t E = c->d_model, F = c->dim_feedforward;
    const size_t RF = (size_t)R * (size_t)F;
    const bool gelu = c->activation == TFM_GELU;
    ws_mark_t mark = ws_mark(ws);
    float *h = train_floats(k ? tc : NULL, ws, RF);            /* (R, F) */
    float *a = k && gelu ? train_floats(tc, ws, RF) : NULL;    /* (R, F) pre-activation, saved */
    if (!h || (k && gelu && !a)) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "feed-forward: out of memory for %lld rows", (long long)R);
    }
    /* h = dropout(act(linear1(x))): the GEMM, then bias, activation and dropout in one pass */
    linear_forward(h, F, x, E, p->linear1_weight, NULL, R, E, F);
    float drop = tc ? tc->dropout : 0.0f;
    uint64_t seed = train_next_stream(tc);
    bias_act_dropout_forward(h, a, p->linear1_bias, R, F, gelu, drop, seed);
    linear_forward(out, E, h, F, p->linear2_weight, p->linear2_bias, R, F, E);
    if (k) *k = (ffn_cache){.x = x, .a = a, .h = h, .dropout = drop, .seed = seed};
    ws_release(ws, mark); /* when training, h and a live in tc->act, untouched by this */
    return TFM_OK;
}

tfm_status ffn_backward(const layer_config *c, const ffn_params *p, ffn_params *g,
                        const ffn_cache *k, tfm_ws *ws, float *dx, const float *dout, int64_t R) {
    const int64_t E = c->d_model, F = c->dim_feedforward;
    ws_mark_t mark = ws_mark(ws);
    float *dh = ws_floats(ws, (size_t)R * (size_t)F); /* (R, F): dh, then in place dv */
    if (!dh) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "feed-forward backward: out of memory");
    }
    /* out = h · W2ᵀ + b2 */
    linear_backward_input(dh, F, dout, E, p->linear2_weight, R, F, E, false);
    linear_backward_params(g->linear2_weight, g->linear2_bias, dout, E, k->h, F, R, F, E);
    /* h = dropout(act(v)), v = x · W1ᵀ + b1: dv and b1's gradient in one pass */
    if (c->activation == TFM_GELU)
        gelu_dropout_backward(dh, g->linear1_bias, dh, k->a, R, F, k->dropout, k->seed);
    else
        relu_dropout_backward(dh, g->linear1_bias, dh, k->h, R, F, k->dropout);
    linear_backward(dx, E, g->linear1_weight, NULL, dh, F, k->x, E, p->linear1_weight, R, E, F);
    ws_release(ws, mark);
    return TFM_OK;
}
