/* mha.c — nn.MultiheadAttention forward and backward.
 *
 * PyTorch (F.multi_head_attention_forward): q, k, v = in-projections; with
 * add_bias_kv, bias_k / bias_v are appended as one more key / value row; with
 * add_zero_attn a zero row is appended after that; the masks get an unmasked column
 * for each. Then softmax(q kᵀ / √D + mask) v per head (dropout on the weights in
 * training), heads concatenated, out_proj.
 * Legend: N batch, L queries, S keys, E embed_dim, H heads, D head dim, S' keys attended.
 */
#include "nn/mha.h"

#include <string.h>

#include "core/status.h"
#include "kernels/elementwise.h"
#include "nn/linear.h"

tfm_status mha_check_config(const mha_config *c) {
    if (c->embed_dim <= 0 || c->num_heads <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "MultiheadAttention: embed_dim (%lld) and num_heads (%lld) must be > 0",
                         (long long)c->embed_dim, (long long)c->num_heads);
    if (c->embed_dim % c->num_heads != 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "MultiheadAttention: embed_dim (%lld) must be divisible by num_heads (%lld)",
                         (long long)c->embed_dim, (long long)c->num_heads);
    if (c->kdim <= 0 || c->vdim <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "MultiheadAttention: kdim (%lld) and vdim (%lld) must be > 0",
                         (long long)c->kdim, (long long)c->vdim);
    return TFM_OK;
}

bool mha_packed(const mha_config *c) {
    return c->kdim == c->embed_dim && c->vdim == c->embed_dim;
}

int64_t mha_num_keys(const mha_config *c, int64_t S) {
    return S + (c->add_bias_kv ? 1 : 0) + (c->add_zero_attn ? 1 : 0);
}

void mha_describe(const mha_config *c, mha_params *p, const char *prefix, param_list *l) {
    const int64_t E = c->embed_dim;
    const bool packed = mha_packed(c);
    param_add(l, packed, prefix, "in_proj_weight", &p->in_proj_weight, INIT_XAVIER_UNIFORM, E, 2,
              3 * E, E, 0);
    param_add(l, !packed, prefix, "q_proj_weight", &p->q_proj_weight, INIT_XAVIER_UNIFORM, E, 2,
              E, E, 0);
    param_add(l, !packed, prefix, "k_proj_weight", &p->k_proj_weight, INIT_XAVIER_UNIFORM,
              c->kdim, 2, E, c->kdim, 0);
    param_add(l, !packed, prefix, "v_proj_weight", &p->v_proj_weight, INIT_XAVIER_UNIFORM,
              c->vdim, 2, E, c->vdim, 0);
    param_add(l, c->bias, prefix, "in_proj_bias", &p->in_proj_bias, INIT_ZERO, E, 1, 3 * E, 0, 0);
    param_add(l, c->add_bias_kv, prefix, "bias_k", &p->bias_k, INIT_XAVIER_NORMAL, E, 3, 1, 1, E);
    param_add(l, c->add_bias_kv, prefix, "bias_v", &p->bias_v, INIT_XAVIER_NORMAL, E, 3, 1, 1, E);
    param_add(l, true, prefix, "out_proj.weight", &p->out_proj_weight, INIT_KAIMING_LINEAR, E, 2,
              E, E, 0);
    param_add(l, c->bias, prefix, "out_proj.bias", &p->out_proj_bias, INIT_ZERO, E, 1, E, 0, 0);
}

/* Projection `which` (0 q, 1 k, 2 v): its weight (E, in) and bias (E) or NULL, in
 * either layout — for parameters and gradients alike. */
static void mha_proj(const mha_config *c, const mha_params *p, int which, float **w, float **b) {
    const int64_t E = c->embed_dim;
    if (mha_packed(c))
        *w = p->in_proj_weight + (size_t)which * (size_t)(E * E);
    else
        *w = which == 0 ? p->q_proj_weight : which == 1 ? p->k_proj_weight : p->v_proj_weight;
    *b = p->in_proj_bias ? p->in_proj_bias + which * E : NULL;
}

/* dst (N, S', E) = src (N, S, ld) rows, then bias row (if any), then a zero row (if any). */
static void append_kv_rows(float *dst, const float *src, int64_t ld, const float *bias_row,
                           bool zero_row, int64_t N, int64_t S, int64_t E) {
    int64_t St = S + (bias_row ? 1 : 0) + (zero_row ? 1 : 0);
    for (int64_t n = 0; n < N; n++) {
        float *d = dst + n * St * E;
        for (int64_t j = 0; j < S; j++) memcpy(d + j * E, src + (n * S + j) * ld, (size_t)E * sizeof(float));
        int64_t j = S;
        if (bias_row) memcpy(d + (j++) * E, bias_row, (size_t)E * sizeof(float));
        if (zero_row) memset(d + j * E, 0, (size_t)E * sizeof(float));
    }
}

/* Q, K, V as attended, into `cache` (pointers and strides). Saved buffers come from
 * the train arena when training, else from ws. */
static tfm_status project_qkv(const mha_config *c, const mha_params *p, tfm_ws *ws, train_ctx *tc,
                              mha_cache *k) {
    const int64_t E = c->embed_dim, N = k->N, L = k->L, S = k->S, St = mha_num_keys(c, S);
    float *w, *b;
    if (mha_packed(c) && k->query == k->key && k->key == k->value && L == S) {
        /* self-attention: [Q K V] (N·L, 3E) = x · in_proj_weightᵀ + in_proj_bias */
        float *qkv = train_floats(tc, ws, (size_t)(N * L) * (size_t)(3 * E));
        if (!qkv) return TFM_ERR_NOMEM;
        linear_forward(qkv, 3 * E, k->query, E, p->in_proj_weight, p->in_proj_bias, N * L, E, 3 * E);
        k->Q = qkv, k->K = qkv + E, k->V = qkv + 2 * E;
        k->ldq = k->ldk = k->ldv = 3 * E;
    } else {
        float *q = train_floats(tc, ws, (size_t)(N * L) * (size_t)E);
        if (!q) return TFM_ERR_NOMEM;
        mha_proj(c, p, 0, &w, &b);
        linear_forward(q, E, k->query, E, w, b, N * L, E, E);
        k->Q = q, k->ldq = E;
        if (mha_packed(c) && k->key == k->value) {
            /* [K V] (N·S, 2E) from the last two thirds of in_proj in one GEMM */
            float *kv = train_floats(tc, ws, (size_t)(N * S) * (size_t)(2 * E));
            if (!kv) return TFM_ERR_NOMEM;
            mha_proj(c, p, 1, &w, &b);
            linear_forward(kv, 2 * E, k->key, E, w, b, N * S, E, 2 * E);
            k->K = kv, k->V = kv + E;
            k->ldk = k->ldv = 2 * E;
        } else {
            float *kk = train_floats(tc, ws, (size_t)(N * S) * (size_t)E);
            float *vv = train_floats(tc, ws, (size_t)(N * S) * (size_t)E);
            if (!kk || !vv) return TFM_ERR_NOMEM;
            mha_proj(c, p, 1, &w, &b);
            linear_forward(kk, E, k->key, c->kdim, w, b, N * S, c->kdim, E);
            mha_proj(c, p, 2, &w, &b);
            linear_forward(vv, E, k->value, c->vdim, w, b, N * S, c->vdim, E);
            k->K = kk, k->V = vv;
            k->ldk = k->ldv = E;
        }
    }
    if (St != S) { /* add_bias_kv / add_zero_attn: extra key and value rows */
        float *k2 = train_floats(tc, ws, (size_t)(N * St) * (size_t)E);
        float *v2 = train_floats(tc, ws, (size_t)(N * St) * (size_t)E);
        if (!k2 || !v2) return TFM_ERR_NOMEM;
        append_kv_rows(k2, k->K, k->ldk, p->bias_k, c->add_zero_attn, N, S, E);
        append_kv_rows(v2, k->V, k->ldv, p->bias_v, c->add_zero_attn, N, S, E);
        k->K = k2, k->V = v2;
        k->ldk = k->ldv = E;
    }
    return TFM_OK;
}

static attn_args make_args(const mha_config *c, const mha_cache *k) {
    return (attn_args){.N = k->N, .H = c->num_heads, .L = k->L, .S = mha_num_keys(c, k->S),
                       .D = c->embed_dim / c->num_heads, .q = k->Q, .ldq = k->ldq, .k = k->K,
                       .ldk = k->ldk, .v = k->V, .ldv = k->ldv, .bias = &k->bias,
                       .dropout = k->dropout, .dropout_seed = k->dropout_seed};
}

/* weights (N, L, S') = mean over heads of wh (N, H, L, S'), as PyTorch's .mean(dim=1). */
static void average_heads(float *weights, const float *wh, int64_t N, int64_t H, int64_t LS) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t x = 0; x < LS; x++) {
            float sum = 0.0f;
            for (int64_t h = 0; h < H; h++) sum += wh[(n * H + h) * LS + x];
            weights[n * LS + x] = sum / (float)H;
        }
}

tfm_status mha_forward(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                       float *weights, bool average_weights, const float *query,
                       const float *key, const float *value, int64_t N, int64_t L, int64_t S,
                       const attn_bias *mask, train_ctx *tc, mha_cache *cache) {
    const int64_t E = c->embed_dim, H = c->num_heads, St = mha_num_keys(c, S);
    ws_mark_t mark = ws_mark(ws);
    mha_cache local, *k = cache ? cache : &local;
    *k = (mha_cache){.query = query, .key = key, .value = value, .N = N, .L = L, .S = S};
    if (mask) k->bias = *mask;
    k->bias.masked_cols = S;
    if (tc && tc->dropout > 0.0f) {
        k->dropout = tc->dropout;
        k->dropout_seed = train_next_stream(tc);
    }
    tfm_status st = project_qkv(c, p, ws, cache ? tc : NULL, k);
    float *heads = cache ? train_floats(tc, ws, (size_t)(N * L) * (size_t)E)
                         : ws_floats(ws, (size_t)(N * L) * (size_t)E);
    float *lse = cache ? train_floats(tc, ws, (size_t)(N * H * L)) : NULL;
    float *wh = weights; /* (N, H, L, S') */
    if (weights && average_weights) wh = ws_floats(ws, (size_t)(N * H * L) * (size_t)St);
    if (st || !heads || (cache && !lse) || (weights && !wh)) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention: out of memory for N=%lld L=%lld S=%lld",
                         (long long)N, (long long)L, (long long)S);
    }
    k->heads = heads, k->lse = lse;
    attn_args a = make_args(c, k);
    st = attention_forward(&a, heads, E, wh, lse, ws);
    if (st == TFM_OK) {
        linear_forward(out, E, heads, E, p->out_proj_weight, p->out_proj_bias, N * L, E, E);
        if (weights && average_weights && N > 0) /* N = 0: L·St may overflow */
            average_heads(weights, wh, N, H, L * St);
    }
    ws_release(ws, mark);
    return st;
}

/* Input-projection backward for one of q, k, v: dX += dP·W, dW += dPᵀ·X, db += Σ dP.
 * dP (N·rows, E) contiguous; x (N·rows, in). */
static void proj_backward(const mha_config *c, const mha_params *p, mha_params *g, int which,
                          const float *dP, const float *x, float *dx, int64_t rows, int64_t in) {
    float *w, *b, *dw, *db;
    mha_proj(c, p, which, &w, &b);
    mha_proj(c, g, which, &dw, &db);
    linear_backward(dx, in, dw, db, dP, c->embed_dim, x, in, w, rows, in, c->embed_dim);
}

/* dst (N, S, E) = the first S rows of each batch of src (N, S', E); the bias_k row's
 * gradient (row S) goes to dbias (E) if any; the zero row's is dropped. */
static void split_kv_grad(float *dst, float *dbias, const float *src, int64_t N, int64_t S,
                          int64_t St, int64_t E) {
    for (int64_t n = 0; n < N; n++) {
        memcpy(dst + n * S * E, src + n * St * E, (size_t)(S * E) * sizeof(float));
        if (dbias)
            for (int64_t e = 0; e < E; e++) dbias[e] += src[(n * St + S) * E + e];
    }
}

tfm_status mha_backward(const mha_config *c, const mha_params *p, mha_params *g,
                        const mha_cache *k, tfm_ws *ws, const float *dout, float *dquery,
                        float *dkey, float *dvalue) {
    const int64_t E = c->embed_dim, N = k->N, L = k->L, S = k->S, St = mha_num_keys(c, S);
    ws_mark_t mark = ws_mark(ws);
    float *dheads = ws_floats(ws, (size_t)(N * L) * (size_t)E);
    float *dQ = ws_floats(ws, (size_t)(N * L) * (size_t)E);
    float *dK = ws_floats(ws, (size_t)(N * St) * (size_t)E);
    float *dV = ws_floats(ws, (size_t)(N * St) * (size_t)E);
    float *dK1 = St != S ? ws_floats(ws, (size_t)(N * S) * (size_t)E) : dK;
    float *dV1 = St != S ? ws_floats(ws, (size_t)(N * S) * (size_t)E) : dV;
    if (!dheads || !dQ || !dK || !dV || !dK1 || !dV1) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention backward: out of memory");
    }
    /* out = heads · W_outᵀ + b_out */
    memset(dheads, 0, (size_t)(N * L * E) * sizeof(float));
    linear_backward(dheads, E, g->out_proj_weight, g->out_proj_bias, dout, E, k->heads, E,
                    p->out_proj_weight, N * L, E, E);
    memset(dQ, 0, (size_t)(N * L * E) * sizeof(float));
    memset(dK, 0, (size_t)(N * St * E) * sizeof(float));
    memset(dV, 0, (size_t)(N * St * E) * sizeof(float));
    attn_args a = make_args(c, k);
    tfm_status st = attention_backward(&a, k->lse, k->heads, E, dheads, E, dQ, E, dK, E, dV,
                                       E, ws);
    if (st == TFM_OK) {
        if (St != S) {
            split_kv_grad(dK1, c->add_bias_kv ? g->bias_k : NULL, dK, N, S, St, E);
            split_kv_grad(dV1, c->add_bias_kv ? g->bias_v : NULL, dV, N, S, St, E);
        }
        proj_backward(c, p, g, 0, dQ, k->query, dquery, N * L, E);
        proj_backward(c, p, g, 1, dK1, k->key, dkey, N * S, c->kdim);
        proj_backward(c, p, g, 2, dV1, k->value, dvalue, N * S, c->vdim);
    }
    ws_release(ws, mark);
    return st;
}

/* ---- incremental decoding ---- */

static tfm_status need_packed(const mha_config *c) {
    if (!mha_packed(c) || c->add_bias_kv || c->add_zero_attn)
        return tfm_error(TFM_ERR_UNSUPPORTED,
                         "incremental decoding needs packed projections without bias_kv/zero_attn");
    return TFM_OK;
}

tfm_status mha_project_kv(const mha_config *c, const mha_params *p, float *K, float *V,
                          const float *memory, int64_t N, int64_t S) {
    TFM_TRY(need_packed(c));
    float *w, *b;
    mha_proj(c, p, 1, &w, &b);
    linear_forward(K, c->embed_dim, memory, c->embed_dim, w, b, N * S, c->embed_dim, c->embed_dim);
    mha_proj(c, p, 2, &w, &b);
    linear_forward(V, c->embed_dim, memory, c->embed_dim, w, b, N * S, c->embed_dim, c->embed_dim);
    return TFM_OK;
}

/* out (N, E) = out_proj(attention of q (N, ldq) per a). weights: see mha_cross_step. */
static tfm_status attend_rows(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                              float *weights, attn_args *a) {
    const int64_t E = c->embed_dim, N = a->N, H = a->H, S = a->S;
    ws_mark_t mark = ws_mark(ws);
    float *heads = ws_floats(ws, (size_t)(N * E));
    float *wh = weights ? ws_floats(ws, (size_t)(N * H * S)) : NULL;
    if (!heads || (weights && !wh)) {
        ws_release(ws, mark);
        return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention step: out of memory");
    }
    tfm_status st = attention_forward(a, heads, E, wh, NULL, ws);
    if (st == TFM_OK) {
        linear_forward(out, E, heads, E, p->out_proj_weight, p->out_proj_bias, N, E, E);
        if (weights) average_heads(weights, wh, N, H, S);
    }
    ws_release(ws, mark);
    return st;
}

tfm_status mha_self_step(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                         const float *x, float *kcache, float *vcache, int64_t N, int64_t T,
                         int64_t t) {
    TFM_TRY(need_packed(c));
    const int64_t E = c->embed_dim;
    ws_mark_t mark = ws_mark(ws);
    float *qkv = ws_floats(ws, (size_t)(N * 3 * E)); /* (N, 3E) */
    if (!qkv) return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention step: out of memory");
    linear_forward(qkv, 3 * E, x, E, p->in_proj_weight, p->in_proj_bias, N, E, 3 * E);
    for (int64_t n = 0; n < N; n++) {
        memcpy(kcache + (n * T + t) * E, qkv + n * 3 * E + E, (size_t)E * sizeof(float));
        memcpy(vcache + (n * T + t) * E, qkv + n * 3 * E + 2 * E, (size_t)E * sizeof(float));
    }
    attn_args a = {.N = N, .H = c->num_heads, .L = 1, .S = t + 1, .D = E / c->num_heads,
                   .q = qkv, .ldq = 3 * E, .k = kcache, .ldk = E, .v = vcache, .ldv = E,
                   .kbs = T, .vbs = T};
    tfm_status st = attend_rows(c, p, ws, out, NULL, &a);
    ws_release(ws, mark);
    return st;
}

tfm_status mha_cross_step(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                          float *weights, const float *x, const float *K, const float *V,
                          int64_t N, int64_t S, const float *kpm) {
    TFM_TRY(need_packed(c));
    const int64_t E = c->embed_dim;
    ws_mark_t mark = ws_mark(ws);
    float *q = ws_floats(ws, (size_t)(N * E));
    if (!q) return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention step: out of memory");
    float *w, *b;
    mha_proj(c, p, 0, &w, &b);
    linear_forward(q, E, x, E, w, b, N, E, E);
    attn_bias bias = {.key_padding = kpm, .masked_cols = S};
    attn_args a = {.N = N, .H = c->num_heads, .L = 1, .S = S, .D = E / c->num_heads, .q = q,
                   .ldq = E, .k = K, .ldk = E, .v = V, .ldv = E, .bias = kpm ? &bias : NULL};
    tfm_status st = attend_rows(c, p, ws, out, weights, &a);
    ws_release(ws, mark);
    return st;
}
