/* backward.c — tfm_backward: the gradient of the last tfm_forward_train's output,
 * taken from the caller's layout to (N, L, E), through the module's backward, and the
 * input gradients handed back in the inputs' layouts.
 * Legend: N batch, L output length, S the other input's length, E model width. */
#include <string.h>

#include "api/module.h"
#include "core/status.h"

/* dst (N, L, E) from t in the caller's layout, after checking its shape. */
static tfm_status load_grad(tfm_ws *ws, const tfm_tensor *t, const forward_record *r, int64_t E,
                            bool batch_first, float **dst) {
    if (!t || !t->data || t->dtype != TFM_F32)
        return tfm_error(TFM_ERR_INVALID_ARG, "grad_output must be an F32 tensor");
    const int64_t N = r->N, L = r->L;
    int64_t want[3] = {L, E, 0};
    int nd = 2;
    if (r->batched) {
        nd = 3;
        want[0] = batch_first ? N : L, want[1] = batch_first ? L : N, want[2] = E;
    }
    bool ok = t->ndim == nd;
    for (int d = 0; ok && d < nd; d++) ok = t->shape[d] == want[d];
    if (!ok)
        return tfm_error(TFM_ERR_SHAPE, "grad_output must have the output's shape (%lld, %lld%s%lld)",
                         (long long)want[0], (long long)want[1], nd == 3 ? ", " : ")",
                         nd == 3 ? (long long)want[2] : 0LL);
    float *d = ws_floats(ws, (size_t)(N * L) * (size_t)E);
    if (!d) return tfm_error(TFM_ERR_NOMEM, "grad_output: out of memory");
    const float *x = t->data;
    if (!r->batched || batch_first || N * L * E == 0) {
        memcpy(d, x, (size_t)(N * L * E) * sizeof(float));
    } else {
        for (int64_t l = 0; l < L; l++)
            for (int64_t n = 0; n < N; n++)
                memcpy(d + (n * L + l) * E, x + (l * N + n) * E, (size_t)E * sizeof(float));
    }
    *dst = d;
    return TFM_OK;
}

/* out (in the caller's layout, module-owned buffer i) from g (N, L, E). */
static tfm_status emit_grad(tfm_module *m, int i, tfm_tensor *out, const float *g, int64_t N,
                            int64_t L, int64_t E, bool batched) {
    return module_emit_seq(&m->grad_buf[i], &m->grad_cap[i], out, g, N, L, E, batched,
                           m->cfg.batch_first);
}

static float *zeros(tfm_ws *ws, int64_t rows, int64_t cols) {
    float *p = ws_floats(ws, (size_t)rows * (size_t)cols);
    if (p) memset(p, 0, (size_t)rows * (size_t)cols * sizeof(float));
    return p;
}

static tfm_status backward_mha(tfm_module *m, float *dy, tfm_input_grads *g) {
    const forward_record *r = &m->rec;
    const mha_config *c = &m->mha;
    const int64_t N = r->N, L = r->L, S = r->S;
    float *dq = zeros(&m->ws, N * L, c->embed_dim), *dk = zeros(&m->ws, N * S, c->kdim);
    float *dv = zeros(&m->ws, N * S, c->vdim);
    if (!dq || !dk || !dv) return tfm_error(TFM_ERR_NOMEM, "backward: out of memory");
    TFM_TRY(mha_backward(c, &m->pv.mha, &m->gv.mha, &r->cache.mha, &m->ws, dy, dq, dk, dv));
    TFM_TRY(emit_grad(m, 0, &g->query, dq, N, L, c->embed_dim, r->batched));
    TFM_TRY(emit_grad(m, 1, &g->key, dk, N, S, c->kdim, r->batched));
    return emit_grad(m, 2, &g->value, dv, N, S, c->vdim, r->batched);
}

static tfm_status backward_layers(tfm_module *m, float *dy, tfm_input_grads *g) {
    const forward_record *r = &m->rec;
    const int64_t N = r->N, L = r->L, S = r->S, E = m->layer.d_model;
    float *dmem = NULL;
    switch (m->cfg.module) {
    case TFM_TRANSFORMER_ENCODER_LAYER:
        TFM_TRY(encoder_layer_backward(&m->layer, &m->pv.enc_layer, &m->gv.enc_layer,
                                       &r->cache.enc_layer, &m->ws, dy, N, L, NULL));
        return emit_grad(m, 0, &g->src, dy, N, L, E, r->batched);
    case TFM_TRANSFORMER_ENCODER:
        TFM_TRY(encoder_backward(&m->stack, &m->pv.enc, &m->gv.enc, &r->cache.stack, &m->ws, dy,
                                 N, L));
        return emit_grad(m, 0, &g->src, dy, N, L, E, r->batched);
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER:
        if (!(dmem = zeros(&m->ws, N * S, E))) return tfm_error(TFM_ERR_NOMEM, "backward: out of memory");
        if (m->cfg.module == TFM_TRANSFORMER_DECODER)
            TFM_TRY(decoder_backward(&m->stack, &m->pv.dec, &m->gv.dec, &r->cache.stack, &m->ws, dy,
                                     dmem, r->memory, N, L, S));
        else
            TFM_TRY(decoder_layer_backward(&m->layer, &m->pv.dec_layer, &m->gv.dec_layer,
                                           &r->cache.dec_layer, &m->ws, dy, dmem, r->memory, N, L,
                                           S, NULL, NULL));
        TFM_TRY(emit_grad(m, 0, &g->tgt, dy, N, L, E, r->batched));
        return emit_grad(m, 1, &g->memory, dmem, N, S, E, r->batched);
    case TFM_TRANSFORMER:
        if (!(dmem = ws_floats(&m->ws, (size_t)(N * S) * (size_t)E)))
            return tfm_error(TFM_ERR_NOMEM, "backward: out of memory");
        TFM_TRY(transformer_backward(&m->tr, &m->pv.tr, &m->gv.tr, &r->cache.tr, &m->ws, dy, dmem,
                                     N, S, L));
        TFM_TRY(emit_grad(m, 0, &g->tgt, dy, N, L, E, r->batched));
        return emit_grad(m, 1, &g->src, dmem, N, S, E, r->batched);
    default: return tfm_error(TFM_ERR_INVALID_ARG, "unknown module kind");
    }
}

tfm_status tfm_backward(tfm_module *m, const tfm_tensor *grad_output, tfm_input_grads *grads) {
    if (!m || !grads) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_backward: NULL argument");
    memset(grads, 0, sizeof *grads);
    if (!m->rec.valid)
        return tfm_error(TFM_ERR_INVALID_ARG, "tfm_backward: no tfm_forward_train to differentiate");
    TFM_TRY(ws_begin(&m->ws));
    const int64_t E = m->cfg.module == TFM_MULTIHEAD_ATTENTION ? m->mha.embed_dim : m->layer.d_model;
    float *dy = NULL;
    TFM_TRY(load_grad(&m->ws, grad_output, &m->rec, E, m->cfg.batch_first, &dy));
    compute_scope previous;
    TFM_TRY(module_compute_begin(m, &previous));
    tfm_status st = m->cfg.module == TFM_MULTIHEAD_ATTENTION ? backward_mha(m, dy, grads)
                                                             : backward_layers(m, dy, grads);
    compute_leave(previous);
    if (st != TFM_OK) memset(grads, 0, sizeof *grads);
    return st;
}
