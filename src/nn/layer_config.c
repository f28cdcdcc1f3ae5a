/* layer_config.c — checks of the layer arguments; LayerNorm and feed-forward sublayers. */
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

void norm_forward(const layer_config *c, const norm_params *p, float *out, const float *x,
                  int64_t R) {
    layernorm_forward(out, NULL, NULL, x, p->weight, p->bias, R, c->d_model, c->layer_norm_eps);
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
                       const float *x, int64_t R) {
    const int64_t E = c->d_model, F = c->dim_feedforward;
    ws_mark_t mark = ws_mark(ws);
    float *h = ws_floats(ws, (size_t)R * (size_t)F); /* (R, F) */
    if (!h) return tfm_error(TFM_ERR_NOMEM, "feed-forward: out of memory for %lld rows", (long long)R);
    linear_forward(h, F, x, E, p->linear1_weight, p->linear1_bias, R, E, F);
    if (c->activation == TFM_GELU)
        gelu_forward(h, R * F);
    else
        relu_forward(h, R * F);
    linear_forward(out, E, h, F, p->linear2_weight, p->linear2_bias, R, F, E);
    ws_release(ws, mark);
    return TFM_OK;
}
