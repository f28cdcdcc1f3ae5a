/* kv_decoder.c — incremental decoding with a key/value cache; see kv_decoder.h.
 * Legend: R rows, S source length, T step capacity, E d_model, V vocabulary, Ly layers. */
#include "decode/kv_decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "kernels/elementwise.h"
#include "model/embedding.h"
#include "model/generator.h"
#include "train/tokenizer.h"

static mha_config attn_config(const layer_config *c) {
    return (mha_config){.embed_dim = c->d_model, .num_heads = c->nhead, .kdim = c->d_model,
                        .vdim = c->d_model, .bias = c->bias};
}

static const float *tgt_embedding(const seq2seq *m) {
    return m->cfg.tie_embeddings ? m->p.src_embed : m->p.tgt_embed;
}

static const float *generator_weight(const seq2seq *m) {
    return m->cfg.tie_embeddings ? m->p.src_embed : m->p.generator_weight;
}

/* size_t product with overflow check (0 on overflow). */
static size_t mul(size_t a, size_t b) { return a && b > SIZE_MAX / a ? 0 : a * b; }

/* The sources' memory (n, S, E): embeddings, positions, encoder. */
static tfm_status encode(seq2seq *m, tfm_ws *ws, float *memory, const int32_t *src,
                         const float *kpm, int64_t n, int64_t S) {
    const int64_t E = m->cfg.d_model;
    float *x = ws_floats(ws, (size_t)(n * S * E));
    if (!x) return tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    TFM_TRY(embedding_forward(x, src, m->p.src_embed, n * S, m->cfg.vocab, E));
    TFM_TRY(posenc_forward(x, x, &m->pe, n, S, E));
    attn_bias b = {.key_padding = kpm, .masked_cols = S};
    return encoder_forward(&m->tr_cfg.encoder, &m->p.tr.encoder, ws, memory, x, n, S, &b, NULL, NULL);
}

/* dst row r (of `width` floats) = src row r / repeat, for R rows. */
static void repeat_rows(float *dst, const float *src, int64_t R, int64_t repeat, size_t width) {
    for (int64_t r = 0; r < R; r++) memcpy(dst + (size_t)r * width, src + (size_t)(r / repeat) * width, width * sizeof(float));
}

static tfm_status start(kv_decoder *d, seq2seq *m, const int32_t *src, const uint8_t *src_pad,
                        int64_t n, int64_t S, int64_t repeat, int64_t max_steps, bool record_attn,
                        bool no_cache);
static tfm_status step(kv_decoder *d, const int32_t *tokens, float *logp);

/* The two below run in the model's compute scope (seq2seq_compute_begin). */
tfm_status kv_decoder_start(kv_decoder *d, seq2seq *m, const int32_t *src, const uint8_t *src_pad,
                            int64_t n, int64_t S, int64_t repeat, int64_t max_steps,
                            bool record_attn, bool no_cache) {
    compute_scope previous;
    memset(d, 0, sizeof *d);
    TFM_TRY(seq2seq_compute_begin(m, &previous));
    const tfm_status st = start(d, m, src, src_pad, n, S, repeat, max_steps, record_attn, no_cache);
    compute_leave(previous);
    return st;
}

tfm_status kv_decoder_step(kv_decoder *d, const int32_t *tokens, float *logp) {
    compute_scope previous;
    TFM_TRY(seq2seq_compute_begin(d->m, &previous));
    const tfm_status st = step(d, tokens, logp);
    compute_leave(previous);
    return st;
}

static tfm_status start(kv_decoder *d, seq2seq *m, const int32_t *src, const uint8_t *src_pad,
                        int64_t n, int64_t S, int64_t repeat, int64_t max_steps, bool record_attn,
                        bool no_cache) {
    memset(d, 0, sizeof *d);
    if (n < 1 || S < 1 || repeat < 1 || max_steps < 1)
        return tfm_error(TFM_ERR_INVALID_ARG, "decoder: n, S, repeat and max_steps must be >= 1");
    if (S > m->cfg.max_len)
        return tfm_error(TFM_ERR_SHAPE, "decoder: a source of %lld tokens is longer than max_len %lld",
                         (long long)S, (long long)m->cfg.max_len);
    if (record_attn && no_cache)
        return tfm_error(TFM_ERR_UNSUPPORTED,
                         "decoder: attention maps are recorded by the cached decoder only (drop no_cache)");
    if (max_steps > m->cfg.max_len) max_steps = m->cfg.max_len; /* positions end there */
    const int64_t E = m->cfg.d_model, Ly = m->tr_cfg.decoder.num_layers, R = n * repeat, T = max_steps;
    d->m = m, d->R = R, d->S = S, d->T = T, d->no_cache = no_cache, d->repeat = repeat;
    /* one block: cross K/V, self K/V, kpm, attention record, prefix, memory */
    size_t cross = mul(mul((size_t)Ly, (size_t)R), mul((size_t)S, (size_t)E));
    size_t self = no_cache ? 0 : mul(mul((size_t)Ly, (size_t)R), mul((size_t)T, (size_t)E));
    size_t att = record_attn ? mul(mul((size_t)Ly, (size_t)R), mul((size_t)T, (size_t)S)) : 0;
    size_t mem = mul(mul((size_t)R, (size_t)S), (size_t)E);
    size_t floats = 2 * (no_cache ? 0 : cross) + 2 * self + (size_t)(R * S) + att + (no_cache ? mem : 0);
    size_t ints = mul((size_t)R, (size_t)T);
    if (!cross || !mem || !ints || floats > SIZE_MAX / 8)
        return tfm_error(TFM_ERR_INVALID_ARG, "decoder: sizes overflow");
    d->block = malloc(floats * sizeof(float) + ints * sizeof(int32_t));
    if (!d->block) return tfm_error(TFM_ERR_NOMEM, "decoder: cannot allocate the cache (%zu floats)", floats);
    float *f = d->block;
    if (!no_cache) {
        d->cross_k = f, f += cross;
        d->cross_v = f, f += cross;
        d->self_k = f, f += self;
        d->self_v = f, f += self;
    }
    d->src_kpm = f, f += R * S;
    if (record_attn) d->attn = f, f += att;
    if (no_cache) d->memory = f, f += mem;
    d->prefix = (int32_t *)f;
    ws_init(&d->ws);

    /* the n sources once: memory, then per layer the cross-attention K and V */
    tfm_status st = ws_begin(&d->ws);
    float *kpm1 = ws_floats(&d->ws, (size_t)(n * S));
    float *memory = ws_floats(&d->ws, (size_t)(n * S * E));
    float *k1 = ws_floats(&d->ws, (size_t)(n * S * E)), *v1 = ws_floats(&d->ws, (size_t)(n * S * E));
    if (st == TFM_OK && (!kpm1 || !memory || !k1 || !v1)) st = tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    if (st == TFM_OK) {
        for (int64_t i = 0; i < n * S; i++) kpm1[i] = src_pad[i] ? -INFINITY : 0.0f;
        repeat_rows(d->src_kpm, kpm1, R, repeat, (size_t)S);
        st = encode(m, &d->ws, memory, src, kpm1, n, S);
    }
    if (st == TFM_OK && no_cache) repeat_rows(d->memory, memory, R, repeat, (size_t)(S * E));
    const mha_config ac = attn_config(&m->tr_cfg.decoder.layer);
    for (int64_t l = 0; st == TFM_OK && !no_cache && l < Ly; l++) {
        st = mha_project_kv(&ac, &m->p.tr.decoder.layers[l].multihead_attn, k1, v1, memory, n, S);
        repeat_rows(d->cross_k + (size_t)l * cross / (size_t)Ly, k1, R, repeat, (size_t)(S * E));
        repeat_rows(d->cross_v + (size_t)l * cross / (size_t)Ly, v1, R, repeat, (size_t)(S * E));
    }
    if (st != TFM_OK) kv_decoder_free(d);
    return st;
}

/* One residual block of decoder layer l on h (R, E), in place. */
static tfm_status block_step(kv_decoder *d, int64_t l, int which, float *h, float *in, float *t) {
    seq2seq *m = d->m;
    const layer_config *c = &m->tr_cfg.decoder.layer;
    const decoder_layer_params *p = &m->p.tr.decoder.layers[l];
    const norm_params *norm = which == 0 ? &p->norm1 : which == 1 ? &p->norm2 : &p->norm3;
    const mha_config ac = attn_config(c);
    const int64_t R = d->R, E = c->d_model, S = d->S, T = d->T;
    const float *x = h;
    if (c->norm_first) {
        norm_forward(c, norm, in, NULL, NULL, h, R);
        x = in;
    }
    tfm_status st;
    if (which == 0) {
        size_t off = (size_t)l * (size_t)(R * T * E);
        st = mha_self_step(&ac, &p->self_attn, &d->ws, t, x, d->self_k + off, d->self_v + off, R, T, d->t);
    } else if (which == 1) {
        size_t off = (size_t)l * (size_t)(R * S * E);
        float *w = NULL;
        if (d->attn) w = in + R * E; /* (R, S) scratch after `in` */
        st = mha_cross_step(&ac, &p->multihead_attn, &d->ws, t, w, x, d->cross_k + off,
                            d->cross_v + off, R, S, d->src_kpm);
        if (st == TFM_OK && w)
            for (int64_t r = 0; r < R; r++)
                memcpy(d->attn + ((size_t)(l * R + r) * (size_t)T + (size_t)d->t) * (size_t)S,
                       w + r * S, (size_t)S * sizeof(float));
    } else {
        st = ffn_forward(c, &p->ff, &d->ws, t, x, R, NULL, NULL);
    }
    if (st) return st;
    add_vectors(h, h, t, R * E);
    if (!c->norm_first) norm_forward(c, norm, h, NULL, NULL, h, R);
    return TFM_OK;
}

/* h (R, E): the decoder's output for the newest position, recomputed over the prefix. */
static tfm_status recompute(kv_decoder *d, float *h) {
    seq2seq *m = d->m;
    const int64_t R = d->R, E = m->cfg.d_model, t1 = d->t + 1, S = d->S;
    float *x = ws_floats(&d->ws, (size_t)(R * t1 * E)), *y = ws_floats(&d->ws, (size_t)(R * t1 * E));
    int32_t *ids = ws_alloc(&d->ws, (size_t)(R * t1) * sizeof(int32_t));
    if (!x || !y || !ids) return tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    for (int64_t r = 0; r < R; r++) memcpy(ids + r * t1, d->prefix + r * d->T, (size_t)t1 * sizeof(int32_t));
    TFM_TRY(embedding_forward(x, ids, tgt_embedding(m), R * t1, m->cfg.vocab, E));
    TFM_TRY(posenc_forward(x, x, &m->pe, R, t1, E));
    attn_bias tgt_b = {.causal = true, .masked_cols = t1}, mem_b = {.key_padding = d->src_kpm, .masked_cols = S};
    TFM_TRY(decoder_forward(&m->tr_cfg.decoder, &m->p.tr.decoder, &d->ws, y, x, d->memory, R, t1, S,
                            &tgt_b, &mem_b, NULL, NULL));
    for (int64_t r = 0; r < R; r++) memcpy(h + r * E, y + (r * t1 + d->t) * E, (size_t)E * sizeof(float));
    return TFM_OK;
}

static tfm_status step(kv_decoder *d, const int32_t *tokens, float *logp) {
    seq2seq *m = d->m;
    const int64_t R = d->R, E = m->cfg.d_model, V = m->cfg.vocab;
    if (d->t >= d->T)
        return tfm_error(TFM_ERR_SHAPE, "decoder: all %lld steps used (the model's max_len is %lld)",
                         (long long)d->T, (long long)m->cfg.max_len);
    for (int64_t r = 0; r < R; r++) {
        if (tokens[r] < 0 || tokens[r] >= V)
            return tfm_error(TFM_ERR_INVALID_ARG, "decoder: token %d of row %lld is outside the vocabulary",
                             tokens[r], (long long)r);
        d->prefix[r * d->T + d->t] = tokens[r];
    }
    TFM_TRY(ws_begin(&d->ws));
    float *h = ws_floats(&d->ws, (size_t)(R * E));
    float *in = ws_floats(&d->ws, (size_t)(R * E + R * d->S)), *t = ws_floats(&d->ws, (size_t)(R * E));
    if (!h || !in || !t) return tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    if (d->no_cache) {
        TFM_TRY(recompute(d, h));
    } else {
        /* x = embed(token) · √E + PE[t] */
        TFM_TRY(embedding_forward(h, tokens, tgt_embedding(m), R, V, E));
        const float *pe = m->pe.table + d->t * E;
        for (int64_t r = 0; r < R; r++)
            for (int64_t e = 0; e < E; e++) h[r * E + e] += pe[e];
        for (int64_t l = 0; l < m->tr_cfg.decoder.num_layers; l++)
            for (int which = 0; which < 3; which++) TFM_TRY(block_step(d, l, which, h, in, t));
        norm_forward(&m->tr_cfg.decoder.layer, &m->p.tr.decoder.norm, h, NULL, NULL, h, R);
    }
    generator_forward(logp, h, generator_weight(m), m->p.generator_bias, R, E, V);
    d->t++;
    return TFM_OK;
}

/* Rows of a (Ly, R, row) array: row r ← row parents[r], within each layer; only the
 * first `used` floats of each row (of row_floats) are moved. */
static tfm_status gather(tfm_ws *ws, float *x, const int32_t *parents, int64_t Ly, int64_t R,
                         size_t row_floats, size_t used) {
    float *tmp = ws_floats(ws, (size_t)R * used);
    if (!tmp) return tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    for (int64_t l = 0; l < Ly; l++) {
        float *base = x + (size_t)(l * R) * row_floats;
        for (int64_t r = 0; r < R; r++) memcpy(tmp + (size_t)r * used, base + (size_t)r * row_floats, used * sizeof(float));
        for (int64_t r = 0; r < R; r++)
            if (parents[r] != r)
                memcpy(base + (size_t)r * row_floats, tmp + (size_t)parents[r] * used, used * sizeof(float));
    }
    return TFM_OK;
}

/* Does every row take a parent decoding the same source as itself? */
static bool same_sources(const kv_decoder *d, const int32_t *parents) {
    for (int64_t r = 0; r < d->R; r++)
        if (parents[r] / d->repeat != r / d->repeat) return false;
    return true;
}

tfm_status kv_decoder_reorder(kv_decoder *d, const int32_t *parents) {
    const int64_t R = d->R, T = d->T, S = d->S, E = d->m->cfg.d_model;
    const int64_t Ly = d->m->tr_cfg.decoder.num_layers;
    for (int64_t r = 0; r < R; r++)
        if (parents[r] < 0 || parents[r] >= R)
            return tfm_error(TFM_ERR_INVALID_ARG, "decoder: parent %d of row %lld out of range", parents[r], (long long)r);
    TFM_TRY(ws_begin(&d->ws));
    bool identity = true;
    for (int64_t r = 0; r < R; r++) identity = identity && parents[r] == r;
    if (identity) return TFM_OK;
    /* Rows hold T positions; only the first t are in use, but whole rows keep it simple. */
    int32_t *tmp = ws_alloc(&d->ws, (size_t)(R * T) * sizeof(int32_t));
    if (!tmp) return tfm_error(TFM_ERR_NOMEM, "decoder: out of memory");
    memcpy(tmp, d->prefix, (size_t)(R * T) * sizeof(int32_t));
    for (int64_t r = 0; r < R; r++) memcpy(d->prefix + r * T, tmp + parents[r] * T, (size_t)T * sizeof(int32_t));
    if (!d->no_cache) {
        const size_t used = (size_t)(d->t * E); /* positions fed so far */
        TFM_TRY(gather(&d->ws, d->self_k, parents, Ly, R, (size_t)(T * E), used));
        TFM_TRY(gather(&d->ws, d->self_v, parents, Ly, R, (size_t)(T * E), used));
        /* A row's cross-attention K/V depend only on its source: rows that take a parent
         * of the same source (beam search always does) keep theirs. */
        if (!same_sources(d, parents)) {
            TFM_TRY(gather(&d->ws, d->cross_k, parents, Ly, R, (size_t)(S * E), (size_t)(S * E)));
            TFM_TRY(gather(&d->ws, d->cross_v, parents, Ly, R, (size_t)(S * E), (size_t)(S * E)));
        }
    } else {
        TFM_TRY(gather(&d->ws, d->memory, parents, 1, R, (size_t)(S * E), (size_t)(S * E)));
    }
    TFM_TRY(gather(&d->ws, d->src_kpm, parents, 1, R, (size_t)S, (size_t)S));
    if (d->attn) TFM_TRY(gather(&d->ws, d->attn, parents, Ly, R, (size_t)(T * S), (size_t)(d->t * S)));
    return TFM_OK;
}

void kv_decoder_free(kv_decoder *d) {
    free(d->block);
    ws_free(&d->ws);
    memset(d, 0, sizeof *d);
}
