/* forward.c — tfm_forward: PyTorch's argument conventions at the edge, (N, L, E) inside.
 *
 * Inputs are checked against the module (dtype, rank, widths, batch sizes, mask
 * shapes), moved to batch-major when batch_first is false, masks turned into the one
 * additive form (bool true → −inf, float added as is), the module run, and the output
 * moved back to the caller's layout in a buffer the module owns.
 * Legend: N batch, L target/query length, S source/key length, E model width, H heads.
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api/module.h"
#include "core/rng.h"
#include "core/status.h"
#include "nn/train_ctx.h"

/* A sequence input after checking: its sizes and batch-major data. */
typedef struct seq {
    const float *data; /* (N, L, E) */
    int64_t N, L, E;
    bool batched;
} seq;

void tfm_inputs_init(tfm_inputs *in) {
    memset(in, 0, sizeof *in);
    in->average_attn_weights = true;
}

static bool present(const tfm_tensor *t) { return t && t->data != NULL; }

/* Check a float sequence tensor ((L, N, E), (N, L, E) or unbatched (L, E)) and make
 * it batch-major. width 0 = any width. */
static tfm_status load_seq(tfm_ws *ws, const tfm_tensor *t, const char *name, bool batch_first,
                           int64_t width, seq *s) {
    if (!present(t)) return tfm_error(TFM_ERR_MISSING, "input '%s' is required", name);
    if (t->dtype != TFM_F32)
        return tfm_error(TFM_ERR_FORMAT, "input '%s' must be F32", name);
    if (t->ndim != 2 && t->ndim != 3)
        return tfm_error(TFM_ERR_SHAPE, "input '%s' must have 2 (unbatched) or 3 dimensions, not %d",
                         name, t->ndim);
    for (int d = 0; d < t->ndim; d++)
        if (t->shape[d] < 0 || t->shape[d] > ((int64_t)1 << 40))
            return tfm_error(TFM_ERR_SHAPE, "input '%s': dimension %d is %lld", name, d,
                             (long long)t->shape[d]);
    s->batched = t->ndim == 3;
    s->E = t->shape[t->ndim - 1];
    if (width && s->E != width)
        return tfm_error(TFM_ERR_SHAPE, "input '%s' has width %lld; the module expects %lld", name,
                         (long long)s->E, (long long)width);
    if (!s->batched) {
        s->N = 1, s->L = t->shape[0];
        s->data = t->data;
        return TFM_OK;
    }
    s->N = batch_first ? t->shape[0] : t->shape[1];
    s->L = batch_first ? t->shape[1] : t->shape[0];
    if ((double)s->N * (double)s->L * (double)s->E > 9e15)
        return tfm_error(TFM_ERR_SHAPE, "input '%s' is too large", name);
    if (batch_first || s->N <= 1 || s->L <= 1 || s->E == 0) { /* nothing to move */
        s->data = t->data;
        return TFM_OK;
    }
    float *d = ws_floats(ws, (size_t)(s->N * s->L) * (size_t)s->E);
    if (!d) return tfm_error(TFM_ERR_NOMEM, "input '%s': out of memory", name);
    const float *x = t->data; /* (L, N, E) → (N, L, E) */
    for (int64_t l = 0; l < s->L; l++)
        for (int64_t n = 0; n < s->N; n++)
            memcpy(d + (n * s->L + l) * s->E, x + (l * s->N + n) * s->E, (size_t)s->E * sizeof(float));
    s->data = d;
    return TFM_OK;
}

/* Mask data as additive floats: F32 used in place, BOOL converted (true → −inf). */
static tfm_status mask_floats(tfm_ws *ws, const tfm_tensor *t, const char *name, size_t count,
                              const float **out) {
    if (t->dtype == TFM_F32) {
        *out = t->data;
        return TFM_OK;
    }
    if (t->dtype != TFM_BOOL)
        return tfm_error(TFM_ERR_FORMAT, "mask '%s' must be BOOL or F32", name);
    float *f = ws_floats(ws, count);
    if (!f) return tfm_error(TFM_ERR_NOMEM, "mask '%s': out of memory", name);
    const unsigned char *b = t->data;
    for (size_t i = 0; i < count; i++) f[i] = b[i] ? -INFINITY : 0.0f;
    *out = f;
    return TFM_OK;
}

static bool shape_is(const tfm_tensor *t, int ndim, int64_t a, int64_t b, int64_t c) {
    int64_t want[3] = {a, b, c};
    if (t->ndim != ndim) return false;
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != want[d]) return false;
    return true;
}

/* The additive bias of one attention: attn_mask (L, S) or (N·H, L, S) — unbatched
 * (L, S) or (H, L, S) —, key_padding_mask (N, S) — unbatched (S) —, and is_causal. */
static tfm_status build_bias(tfm_ws *ws, attn_bias *b, const tfm_tensor *attn_mask,
                             const char *attn_name, const tfm_tensor *kpm, const char *kpm_name,
                             bool causal, bool batched, int64_t N, int64_t H, int64_t L, int64_t S) {
    *b = (attn_bias){.causal = causal, .masked_cols = S};
    if (present(attn_mask)) {
        if (shape_is(attn_mask, 2, L, S, 0)) {
            b->attn_per_head = false;
        } else if (shape_is(attn_mask, 3, N * H, L, S)) {
            b->attn_per_head = true;
        } else {
            return tfm_error(TFM_ERR_SHAPE,
                             "mask '%s' must be (%lld, %lld) or (%lld, %lld, %lld) [%s·num_heads, L, S]",
                             attn_name, (long long)L, (long long)S, (long long)(N * H),
                             (long long)L, (long long)S, batched ? "N" : "1");
        }
        /* N first, as everywhere: an empty batch (no data) may have lengths whose
         * product L·S overflows */
        size_t count = b->attn_per_head ? (size_t)(N * H * L) * (size_t)S : (size_t)(L * S);
        TFM_TRY(mask_floats(ws, attn_mask, attn_name, count, &b->attn));
    }
    if (present(kpm)) {
        bool ok = batched ? shape_is(kpm, 2, N, S, 0) : shape_is(kpm, 1, S, 0, 0);
        if (!ok)
            return batched ? tfm_error(TFM_ERR_SHAPE, "mask '%s' must be (N, S) = (%lld, %lld)",
                                       kpm_name, (long long)N, (long long)S)
                           : tfm_error(TFM_ERR_SHAPE, "mask '%s' must be (S) = (%lld) for unbatched input",
                                       kpm_name, (long long)S);
        TFM_TRY(mask_floats(ws, kpm, kpm_name, (size_t)(N * S), &b->key_padding));
    }
    return TFM_OK;
}

tfm_status module_emit_seq(float **buf, size_t *cap, tfm_tensor *t, const float *y, int64_t N,
                           int64_t L, int64_t E, bool batched, bool batch_first) {
    TFM_TRY(module_buffer(buf, cap, (size_t)(N * L) * (size_t)E));
    float *o = *buf;
    *t = (tfm_tensor){.data = o, .dtype = TFM_F32};
    if (N * L * E == 0) { /* an empty result: shapes only (no loop over a huge empty axis) */
        t->ndim = batched ? 3 : 2;
        int64_t dims[3] = {batch_first ? N : L, batch_first ? L : N, E};
        if (!batched) dims[0] = L, dims[1] = E;
        for (int d = 0; d < t->ndim; d++) t->shape[d] = dims[d];
        return TFM_OK;
    }
    if (!batched) {
        memcpy(o, y, (size_t)(L * E) * sizeof(float));
        t->ndim = 2, t->shape[0] = L, t->shape[1] = E;
    } else if (batch_first) {
        memcpy(o, y, (size_t)(N * L * E) * sizeof(float));
        t->ndim = 3, t->shape[0] = N, t->shape[1] = L, t->shape[2] = E;
    } else {
        for (int64_t n = 0; n < N; n++)
            for (int64_t l = 0; l < L; l++)
                memcpy(o + (l * N + n) * E, y + (n * L + l) * E, (size_t)E * sizeof(float));
        t->ndim = 3, t->shape[0] = L, t->shape[1] = N, t->shape[2] = E;
    }
    return TFM_OK;
}

static tfm_status emit_output(tfm_module *m, tfm_outputs *o, const float *y, const seq *shape,
                              int64_t E) {
    return module_emit_seq(&m->out_buf, &m->out_cap, &o->output, y, shape->N, shape->L, E,
                    shape->batched, m->cfg.batch_first);
}

static tfm_status same_batching(const seq *a, const char *an, const seq *b, const char *bn) {
    if (a->batched != b->batched)
        return tfm_error(TFM_ERR_SHAPE, "'%s' and '%s' must both be batched (3-D) or unbatched (2-D)",
                         an, bn);
    if (a->N != b->N)
        return tfm_error(TFM_ERR_SHAPE, "'%s' has batch size %lld but '%s' has %lld", an,
                         (long long)a->N, bn, (long long)b->N);
    return TFM_OK;
}

/* Everything a forward call shares: the module, where edge buffers go (the scratch
 * workspace, or the activation arena when the call is recorded for backward), and
 * the training context and record (NULL for inference). */
typedef struct call {
    tfm_module *m;
    tfm_ws *edge;
    train_ctx *tc;
    forward_record *rec;
} call;

static tfm_status forward_mha(const call *cl, const tfm_inputs *in, tfm_outputs *o) {
    tfm_module *m = cl->m;
    const mha_config *c = &m->mha;
    const bool bf = m->cfg.batch_first;
    seq q, k, v;
    TFM_TRY(load_seq(cl->edge, &in->query, "query", bf, c->embed_dim, &q));
    /* Self-attention passes the same tensor three times: keep one copy, so the
     * projections run as one GEMM. */
    if (in->key.data == in->query.data && c->kdim == c->embed_dim)
        k = q;
    else
        TFM_TRY(load_seq(cl->edge, &in->key, "key", bf, c->kdim, &k));
    if (in->value.data == in->key.data && c->vdim == c->kdim)
        v = k;
    else
        TFM_TRY(load_seq(cl->edge, &in->value, "value", bf, c->vdim, &v));
    TFM_TRY(same_batching(&q, "query", &k, "key"));
    TFM_TRY(same_batching(&k, "key", &v, "value"));
    if (k.L != v.L)
        return tfm_error(TFM_ERR_SHAPE, "key length %lld differs from value length %lld",
                         (long long)k.L, (long long)v.L);
    const int64_t N = q.N, L = q.L, S = k.L, H = c->num_heads, St = mha_num_keys(c, S);
    attn_bias bias;
    TFM_TRY(build_bias(cl->edge, &bias, &in->attn_mask, "attn_mask", &in->key_padding_mask,
                       "key_padding_mask", in->is_causal, q.batched, N, H, L, S));
    float *y = ws_floats(&m->ws, (size_t)(N * L) * (size_t)c->embed_dim);
    if (!y) return tfm_error(TFM_ERR_NOMEM, "output: out of memory");
    float *w = NULL;
    const size_t nw = (size_t)(N * L * St) * (size_t)(in->average_attn_weights ? 1 : H);
    if (in->need_weights) {
        TFM_TRY(module_buffer(&m->attn_buf, &m->attn_cap, nw));
        w = m->attn_buf;
    }
    TFM_TRY(mha_forward(c, &m->pv.mha, &m->ws, y, w, in->average_attn_weights, q.data, k.data,
                        v.data, N, L, S, &bias, cl->tc, cl->rec ? &cl->rec->cache.mha : NULL));
    TFM_TRY(emit_output(m, o, y, &q, c->embed_dim));
    if (cl->rec) {
        forward_record *r = cl->rec;
        r->batched = q.batched, r->N = N, r->L = L, r->S = S;
        r->q = q.data, r->k = k.data, r->v = v.data;
    }
    if (w) {
        tfm_tensor *t = &o->attn_weights;
        *t = (tfm_tensor){.data = w, .dtype = TFM_F32};
        int d = 0;
        if (q.batched) t->shape[d++] = N;
        if (!in->average_attn_weights) t->shape[d++] = H;
        t->shape[d++] = L;
        t->shape[d++] = St;
        t->ndim = d;
    }
    return TFM_OK;
}

static tfm_status forward_encoder(const call *cl, const tfm_inputs *in, tfm_outputs *o) {
    tfm_module *m = cl->m;
    const bool stack = m->cfg.module == TFM_TRANSFORMER_ENCODER;
    const tfm_tensor *mask = stack ? &in->mask : &in->src_mask;
    seq x;
    TFM_TRY(load_seq(cl->edge, &in->src, "src", m->cfg.batch_first, m->layer.d_model, &x));
    attn_bias bias;
    TFM_TRY(build_bias(cl->edge, &bias, mask, stack ? "mask" : "src_mask",
                       &in->src_key_padding_mask, "src_key_padding_mask", in->is_causal,
                       x.batched, x.N, m->layer.nhead, x.L, x.L));
    float *y = ws_floats(&m->ws, (size_t)(x.N * x.L) * (size_t)x.E);
    if (!y) return tfm_error(TFM_ERR_NOMEM, "output: out of memory");
    forward_record *r = cl->rec;
    if (stack)
        TFM_TRY(encoder_forward(&m->stack, &m->pv.enc, &m->ws, y, x.data, x.N, x.L, &bias, cl->tc,
                                r ? &r->cache.stack : NULL));
    else
        TFM_TRY(encoder_layer_forward(&m->layer, &m->pv.enc_layer, &m->ws, y, x.data, x.N, x.L,
                                      &bias, cl->tc, r ? &r->cache.enc_layer : NULL));
    if (r) r->batched = x.batched, r->N = x.N, r->L = x.L, r->S = 0;
    return emit_output(m, o, y, &x, x.E);
}

/* The decoder's two biases: self-attention over tgt, cross-attention to memory. */
static tfm_status decoder_biases(const call *cl, const tfm_inputs *in, const seq *t,
                                 const seq *mem, attn_bias *self_b, attn_bias *cross_b) {
    const int64_t H = cl->m->layer.nhead;
    TFM_TRY(build_bias(cl->edge, self_b, &in->tgt_mask, "tgt_mask", &in->tgt_key_padding_mask,
                       "tgt_key_padding_mask", in->tgt_is_causal, t->batched, t->N, H, t->L,
                       t->L));
    return build_bias(cl->edge, cross_b, &in->memory_mask, "memory_mask",
                      &in->memory_key_padding_mask, "memory_key_padding_mask",
                      in->memory_is_causal, t->batched, t->N, H, t->L, mem->L);
}

static tfm_status forward_decoder(const call *cl, const tfm_inputs *in, tfm_outputs *o) {
    tfm_module *m = cl->m;
    const bool bf = m->cfg.batch_first;
    seq t, mem;
    TFM_TRY(load_seq(cl->edge, &in->tgt, "tgt", bf, m->layer.d_model, &t));
    TFM_TRY(load_seq(cl->edge, &in->memory, "memory", bf, m->layer.d_model, &mem));
    TFM_TRY(same_batching(&t, "tgt", &mem, "memory"));
    attn_bias sb, cb;
    TFM_TRY(decoder_biases(cl, in, &t, &mem, &sb, &cb));
    float *y = ws_floats(&m->ws, (size_t)(t.N * t.L) * (size_t)t.E);
    if (!y) return tfm_error(TFM_ERR_NOMEM, "output: out of memory");
    forward_record *r = cl->rec;
    if (m->cfg.module == TFM_TRANSFORMER_DECODER)
        TFM_TRY(decoder_forward(&m->stack, &m->pv.dec, &m->ws, y, t.data, mem.data, t.N, t.L,
                                mem.L, &sb, &cb, cl->tc, r ? &r->cache.stack : NULL));
    else
        TFM_TRY(decoder_layer_forward(&m->layer, &m->pv.dec_layer, &m->ws, y, t.data, mem.data,
                                      t.N, t.L, mem.L, &sb, &cb, cl->tc,
                                      r ? &r->cache.dec_layer : NULL));
    if (r) r->batched = t.batched, r->N = t.N, r->L = t.L, r->S = mem.L, r->memory = mem.data;
    return emit_output(m, o, y, &t, t.E);
}

static tfm_status forward_transformer(const call *cl, const tfm_inputs *in, tfm_outputs *o) {
    tfm_module *m = cl->m;
    const bool bf = m->cfg.batch_first;
    seq s, t;
    TFM_TRY(load_seq(cl->edge, &in->src, "src", bf, m->layer.d_model, &s));
    TFM_TRY(load_seq(cl->edge, &in->tgt, "tgt", bf, m->layer.d_model, &t));
    TFM_TRY(same_batching(&s, "src", &t, "tgt"));
    attn_bias src_b, sb, cb;
    TFM_TRY(build_bias(cl->edge, &src_b, &in->src_mask, "src_mask", &in->src_key_padding_mask,
                       "src_key_padding_mask", in->src_is_causal, s.batched, s.N, m->layer.nhead,
                       s.L, s.L));
    TFM_TRY(decoder_biases(cl, in, &t, &s, &sb, &cb));
    float *y = ws_floats(&m->ws, (size_t)(t.N * t.L) * (size_t)t.E);
    if (!y) return tfm_error(TFM_ERR_NOMEM, "output: out of memory");
    forward_record *r = cl->rec;
    TFM_TRY(transformer_forward(&m->tr, &m->pv.tr, &m->ws, y, s.data, t.data, s.N, s.L, t.L,
                                &src_b, &sb, &cb, cl->tc, r ? &r->cache.tr : NULL));
    if (r) r->batched = t.batched, r->N = t.N, r->L = t.L, r->S = s.L;
    return emit_output(m, o, y, &t, t.E);
}

/* Which module kinds take each tfm_inputs field (bit k: tfm_module_kind k). PyTorch
 * raises a TypeError for an argument a forward() does not have; so does tfm, rather than
 * silently dropping, say, a causal flag meant for another module. */
#define K(kind) (1u << (kind))
#define MHA K(TFM_MULTIHEAD_ATTENTION)
#define ENC (K(TFM_TRANSFORMER_ENCODER_LAYER) | K(TFM_TRANSFORMER_ENCODER))
#define DEC (K(TFM_TRANSFORMER_DECODER_LAYER) | K(TFM_TRANSFORMER_DECODER))
#define TR K(TFM_TRANSFORMER)
static const struct {
    const char *name;
    size_t offset;
    unsigned kinds;
    bool flag; /* a bool (set = true) rather than a tensor (set = data non-NULL) */
} input_fields[] = {
#define T(f, k) {#f, offsetof(tfm_inputs, f), k, false}
#define F(f, k) {#f, offsetof(tfm_inputs, f), k, true}
    T(query, MHA), T(key, MHA), T(value, MHA), T(key_padding_mask, MHA), T(attn_mask, MHA),
    T(src, ENC | TR), T(tgt, DEC | TR), T(memory, DEC),
    T(src_mask, K(TFM_TRANSFORMER_ENCODER_LAYER) | TR), T(mask, K(TFM_TRANSFORMER_ENCODER)),
    T(tgt_mask, DEC | TR), T(memory_mask, DEC | TR), T(src_key_padding_mask, ENC | TR),
    T(tgt_key_padding_mask, DEC | TR), T(memory_key_padding_mask, DEC | TR),
    F(need_weights, MHA), F(is_causal, MHA | ENC), F(src_is_causal, TR),
    F(tgt_is_causal, DEC | TR), F(memory_is_causal, DEC | TR),
#undef T
#undef F
};
#undef K

static tfm_status check_fields(tfm_module_kind kind, const tfm_inputs *in) {
    for (size_t i = 0; i < sizeof input_fields / sizeof *input_fields; i++) {
        const char *p = (const char *)in + input_fields[i].offset;
        bool set = input_fields[i].flag ? *(const bool *)p : ((const tfm_tensor *)p)->data != NULL;
        if (set && !(input_fields[i].kinds & (1u << kind)))
            return tfm_error(TFM_ERR_UNEXPECTED, "%s does not take '%s'", tfm_module_name(kind),
                             input_fields[i].name);
    }
    return TFM_OK;
}

static tfm_status run_forward(const call *cl, const tfm_inputs *in, tfm_outputs *out) {
    TFM_TRY(check_fields(cl->m->cfg.module, in));
    switch (cl->m->cfg.module) {
    case TFM_MULTIHEAD_ATTENTION: return forward_mha(cl, in, out);
    case TFM_TRANSFORMER_ENCODER_LAYER:
    case TFM_TRANSFORMER_ENCODER: return forward_encoder(cl, in, out);
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER: return forward_decoder(cl, in, out);
    case TFM_TRANSFORMER: return forward_transformer(cl, in, out);
    }
    return tfm_error(TFM_ERR_INVALID_ARG, "unknown module kind");
}

tfm_status tfm_forward(tfm_module *m, const tfm_inputs *in, tfm_outputs *out) {
    if (!m || !in || !out) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_forward: NULL argument");
    memset(out, 0, sizeof *out);
    m->rec.valid = false; /* the arena may still hold a record; it no longer matches */
    TFM_TRY(ws_begin(&m->ws));
    compute_scope previous;
    TFM_TRY(module_compute_begin(m, &previous));
    call cl = {.m = m, .edge = &m->ws};
    tfm_status st = run_forward(&cl, in, out);
    compute_leave(previous);
    if (st != TFM_OK) memset(out, 0, sizeof *out);
    return st;
}

tfm_status tfm_forward_train(tfm_module *m, const tfm_inputs *in, tfm_outputs *out) {
    if (!m || !in || !out) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_forward_train: NULL argument");
    memset(out, 0, sizeof *out);
    m->rec = (forward_record){0};
    TFM_TRY(module_alloc_grads(m));
    TFM_TRY(ws_begin(&m->ws));
    TFM_TRY(ws_begin(&m->act));
    train_ctx tc = {.act = &m->act, .dropout = m->training ? (float)m->cfg.dropout : 0.0f,
                    .seed = rng_derive(m->seed, ++m->calls)};
    call cl = {.m = m, .edge = &m->act, .tc = &tc, .rec = &m->rec};
    compute_scope previous;
    TFM_TRY(module_compute_begin(m, &previous));
    tfm_status st = run_forward(&cl, in, out);
    compute_leave(previous);
    if (st != TFM_OK) {
        memset(out, 0, sizeof *out);
        return st;
    }
    m->rec.valid = true;
    return TFM_OK;
}

tfm_status tfm_generate_square_subsequent_mask(int64_t sz, float *out) {
    if (sz < 0 || !out)
        return tfm_error(TFM_ERR_INVALID_ARG, "generate_square_subsequent_mask: bad size or NULL");
    for (int64_t i = 0; i < sz; i++)
        for (int64_t j = 0; j < sz; j++) out[i * sz + j] = j > i ? -INFINITY : 0.0f;
    return TFM_OK;
}
