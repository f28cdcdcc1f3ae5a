/* mha.c — nn.MultiheadAttention forward.
 *
 * PyTorch (F.multi_head_attention_forward): q, k, v = in-projections; with
 * add_bias_kv, bias_k / bias_v are appended as one more key / value row; with
 * add_zero_attn a zero row is appended after that; the masks get an unmasked column
 * for each. Then softmax(q kᵀ / √D + mask) v per head, heads concatenated, out_proj.
 * Legend: N batch, L queries, S keys, E embed_dim, H heads, D head dim, S' keys attended.
 */
#include "nn/mha.h"

#include <string.h>

#include "core/status.h"
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

/* The three projection matrices and biases, whichever layout the params use. */
static void mha_proj(const mha_config *c, const mha_params *p, int which, const float **w,
                     const float **b) {
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

tfm_status mha_forward(const mha_config *c, const mha_params *p, tfm_ws *ws, float *out,
                       float *weights, bool average_weights, const float *query,
                       const float *key, const float *value, int64_t N, int64_t L, int64_t S,
                       const attn_bias *mask) {
    const int64_t E = c->embed_dim, H = c->num_heads, D = E / H;
    const int64_t St = mha_num_keys(c, S);
    ws_mark_t mark = ws_mark(ws);
    const float *w, *b;
    const float *Q, *K, *V;
    int64_t ldq, ldk, ldv;

    if (mha_packed(c) && query == key && key == value && L == S) {
        /* self-attention: [Q K V] (N·L, 3E) = x · in_proj_weightᵀ + in_proj_bias */
        float *qkv = ws_floats(ws, (size_t)(N * L) * (size_t)(3 * E));
        if (!qkv) goto nomem;
        linear_forward(qkv, 3 * E, query, E, p->in_proj_weight, p->in_proj_bias, N * L, E, 3 * E);
        Q = qkv, K = qkv + E, V = qkv + 2 * E;
        ldq = ldk = ldv = 3 * E;
    } else {
        float *q = ws_floats(ws, (size_t)(N * L) * (size_t)E);
        if (!q) goto nomem;
        mha_proj(c, p, 0, &w, &b);
        linear_forward(q, E, query, E, w, b, N * L, E, E);
        Q = q, ldq = E;
        if (mha_packed(c) && key == value) {
            /* [K V] (N·S, 2E) from the last two thirds of in_proj in one GEMM */
            float *kv = ws_floats(ws, (size_t)(N * S) * (size_t)(2 * E));
            if (!kv) goto nomem;
            mha_proj(c, p, 1, &w, &b);
            linear_forward(kv, 2 * E, key, E, w, b, N * S, E, 2 * E);
            K = kv, V = kv + E;
            ldk = ldv = 2 * E;
        } else {
            float *k = ws_floats(ws, (size_t)(N * S) * (size_t)E);
            float *v = ws_floats(ws, (size_t)(N * S) * (size_t)E);
            if (!k || !v) goto nomem;
            mha_proj(c, p, 1, &w, &b);
            linear_forward(k, E, key, c->kdim, w, b, N * S, c->kdim, E);
            mha_proj(c, p, 2, &w, &b);
            linear_forward(v, E, value, c->vdim, w, b, N * S, c->vdim, E);
            K = k, V = v;
            ldk = ldv = E;
        }
    }

    if (St != S) { /* add_bias_kv / add_zero_attn: extra key and value rows */
        float *k2 = ws_floats(ws, (size_t)(N * St) * (size_t)E);
        float *v2 = ws_floats(ws, (size_t)(N * St) * (size_t)E);
        if (!k2 || !v2) goto nomem;
        append_kv_rows(k2, K, ldk, p->bias_k, c->add_zero_attn, N, S, E);
        append_kv_rows(v2, V, ldv, p->bias_v, c->add_zero_attn, N, S, E);
        K = k2, V = v2;
        ldk = ldv = E;
    }

    attn_bias bias = {0};
    if (mask) bias = *mask;
    bias.masked_cols = S;

    float *heads = ws_floats(ws, (size_t)(N * L) * (size_t)E); /* (N, L, E) before out_proj */
    float *wh = weights;                                        /* (N, H, L, S') */
    if (weights && average_weights) wh = ws_floats(ws, (size_t)(N * H * L) * (size_t)St);
    if (!heads || (weights && !wh)) goto nomem;
    tfm_status st = attention_forward(heads, E, wh, Q, ldq, K, ldk, V, ldv, N, H, L, St, D, &bias, ws);
    if (st != TFM_OK) {
        ws_release(ws, mark);
        return st;
    }
    linear_forward(out, E, heads, E, p->out_proj_weight, p->out_proj_bias, N * L, E, E);

    if (weights && average_weights) { /* PyTorch: weights.view(N, H, L, S').mean(dim=1) */
        const int64_t LS = L * St;
        for (int64_t n = 0; n < N; n++) {
            float *dst = weights + n * LS;
            for (int64_t x = 0; x < LS; x++) {
                float sum = 0.0f;
                for (int64_t h = 0; h < H; h++) sum += wh[(n * H + h) * LS + x];
                dst[x] = sum / (float)H;
            }
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
nomem:
    ws_release(ws, mark);
    return tfm_error(TFM_ERR_NOMEM, "MultiheadAttention: out of memory for N=%lld L=%lld S=%lld",
                     (long long)N, (long long)L, (long long)S);
}
