/* stacks.c — encoder and decoder stacks, and the whole Transformer.
 * Legend: N batch, S source length, L target length, E d_model. */
#include "nn/stacks.h"

#include <stdio.h>
#include <string.h>

#include "core/status.h"

static bool layer_prefix(char *out, const char *prefix, int64_t i) {
    int len = snprintf(out, PARAM_NAME_MAX, "%slayers.%lld.", prefix, (long long)i);
    return len >= 0 && len < PARAM_NAME_MAX;
}

void encoder_describe(const stack_config *c, encoder_params *p, const char *prefix, param_list *l) {
    char pre[PARAM_NAME_MAX];
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (!layer_prefix(pre, prefix, i)) l->failed = true;
        encoder_layer_describe(&c->layer, &p->layers[i], pre, l);
    }
    if (c->norm)
        norm_describe(&c->layer, &p->norm, prefix, "norm", l);
    else
        p->norm = (norm_params){0};
}

void decoder_describe(const stack_config *c, decoder_params *p, const char *prefix, param_list *l) {
    char pre[PARAM_NAME_MAX];
    for (int64_t i = 0; i < c->num_layers; i++) {
        if (!layer_prefix(pre, prefix, i)) l->failed = true;
        decoder_layer_describe(&c->layer, &p->layers[i], pre, l);
    }
    if (c->norm)
        norm_describe(&c->layer, &p->norm, prefix, "norm", l);
    else
        p->norm = (norm_params){0};
}

/* One layer of a stack: out (N, L, E) = layer i (in). */
typedef tfm_status (*layer_step)(const void *ctx, int64_t i, tfm_ws *ws, float *out,
                                 const float *in);

/* The layers in turn, alternating between two buffers, then the final norm if any.
 * out (R, E) may alias x (R, E). */
static tfm_status run_stack(const stack_config *c, const norm_params *norm, tfm_ws *ws,
                            float *out, const float *x, int64_t R, layer_step step,
                            const void *ctx, const char *what) {
    const size_t n = (size_t)R * (size_t)c->layer.d_model;
    ws_mark_t mark = ws_mark(ws);
    float *a = ws_floats(ws, n), *b = ws_floats(ws, n);
    tfm_status st = TFM_OK;
    if (!a || !b) {
        st = tfm_error(TFM_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    memcpy(a, x, n * sizeof(float));
    for (int64_t i = 0; i < c->num_layers; i++) {
        if ((st = step(ctx, i, ws, b, a))) {
            tfm_error_context(st, "layers.%lld", (long long)i);
            goto done;
        }
        float *t = a;
        a = b, b = t;
    }
    if (c->norm)
        norm_forward(&c->layer, norm, out, a, R);
    else
        memcpy(out, a, n * sizeof(float));
done:
    ws_release(ws, mark);
    return st;
}

typedef struct encoder_ctx {
    const stack_config *c;
    const encoder_params *p;
    int64_t N, L;
    const attn_bias *mask;
} encoder_ctx;

static tfm_status encoder_step(const void *ctx, int64_t i, tfm_ws *ws, float *out, const float *in) {
    const encoder_ctx *e = ctx;
    return encoder_layer_forward(&e->c->layer, &e->p->layers[i], ws, out, in, e->N, e->L, e->mask);
}

tfm_status encoder_forward(const stack_config *c, const encoder_params *p, tfm_ws *ws, float *out,
                           const float *x, int64_t N, int64_t L, const attn_bias *mask) {
    encoder_ctx ctx = {c, p, N, L, mask};
    return run_stack(c, &p->norm, ws, out, x, N * L, encoder_step, &ctx, "TransformerEncoder");
}

typedef struct decoder_ctx {
    const stack_config *c;
    const decoder_params *p;
    const float *memory;
    int64_t N, L, S;
    const attn_bias *self_mask, *cross_mask;
} decoder_ctx;

static tfm_status decoder_step(const void *ctx, int64_t i, tfm_ws *ws, float *out, const float *in) {
    const decoder_ctx *d = ctx;
    return decoder_layer_forward(&d->c->layer, &d->p->layers[i], ws, out, in, d->memory, d->N,
                                 d->L, d->S, d->self_mask, d->cross_mask);
}

tfm_status decoder_forward(const stack_config *c, const decoder_params *p, tfm_ws *ws, float *out,
                           const float *x, const float *memory, int64_t N, int64_t L, int64_t S,
                           const attn_bias *self_mask, const attn_bias *cross_mask) {
    decoder_ctx ctx = {c, p, memory, N, L, S, self_mask, cross_mask};
    return run_stack(c, &p->norm, ws, out, x, N * L, decoder_step, &ctx, "TransformerDecoder");
}

void transformer_describe(const transformer_config *c, transformer_params *p, param_list *l) {
    encoder_describe(&c->encoder, &p->encoder, "encoder.", l);
    decoder_describe(&c->decoder, &p->decoder, "decoder.", l);
}

tfm_status transformer_forward(const transformer_config *c, const transformer_params *p,
                               tfm_ws *ws, float *out, const float *src, const float *tgt,
                               int64_t N, int64_t S, int64_t L, const attn_bias *src_mask,
                               const attn_bias *tgt_mask, const attn_bias *memory_mask) {
    ws_mark_t mark = ws_mark(ws);
    float *memory = ws_floats(ws, (size_t)(N * S) * (size_t)c->encoder.layer.d_model);
    tfm_status st;
    if (!memory)
        st = tfm_error(TFM_ERR_NOMEM, "Transformer: out of memory");
    else if ((st = encoder_forward(&c->encoder, &p->encoder, ws, memory, src, N, S, src_mask)))
        tfm_error_context(st, "encoder");
    else if ((st = decoder_forward(&c->decoder, &p->decoder, ws, out, tgt, memory, N, L, S,
                                   tgt_mask, memory_mask)))
        tfm_error_context(st, "decoder");
    ws_release(ws, mark);
    return st;
}
