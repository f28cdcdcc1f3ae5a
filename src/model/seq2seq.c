/* seq2seq.c — the sequence-to-sequence Transformer: embeddings + positions, nn.Transformer,
 * generator, label-smoothed cross-entropy; training step, evaluation, greedy decoding.
 * Legend: N batch, S source length, L target length, E d_model, V vocabulary, R = N·L. */
#include "model/seq2seq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "kernels/elementwise.h"
#include "model/embedding.h"
#include "model/generator.h"
#include "train/tokenizer.h"

tfm_status seq2seq_check_config(const seq2seq_config *c) {
    if (c->vocab < 3 || c->vocab > (1 << 24))
        return tfm_error(TFM_ERR_INVALID_ARG, "vocab (%lld) must be in [3, 2^24]", (long long)c->vocab);
    if (c->d_model <= 0 || c->nhead <= 0 || c->d_model % c->nhead || c->d_model % 2 ||
        c->d_model > (1 << 16))
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "d_model (%lld) must be even, at most 65536 and divisible by nhead (%lld)",
                         (long long)c->d_model, (long long)c->nhead);
    if (c->dim_feedforward <= 0 || c->dim_feedforward > (1 << 20))
        return tfm_error(TFM_ERR_INVALID_ARG, "dim_feedforward (%lld) out of range",
                         (long long)c->dim_feedforward);
    if (c->num_encoder_layers < 1 || c->num_decoder_layers < 1 || c->num_encoder_layers > 256 ||
        c->num_decoder_layers > 256)
        return tfm_error(TFM_ERR_INVALID_ARG, "encoder and decoder layers must be in [1, 256]");
    if (!(c->dropout >= 0.0f && c->dropout < 1.0f))
        return tfm_error(TFM_ERR_INVALID_ARG, "dropout (%g) must be in [0, 1)", (double)c->dropout);
    if (c->max_len < 2 || c->max_len > (1 << 16))
        return tfm_error(TFM_ERR_INVALID_ARG, "max_len (%lld) must be in [2, 65536]", (long long)c->max_len);
    if (c->max_len * c->d_model > ((int64_t)1 << 28)) /* the positional table: at most 1 GiB */
        return tfm_error(TFM_ERR_INVALID_ARG, "max_len × d_model (%lld × %lld) is too large",
                         (long long)c->max_len, (long long)c->d_model);
    if (c->activation != TFM_RELU && c->activation != TFM_GELU)
        return tfm_error(TFM_ERR_INVALID_ARG, "activation must be relu or gelu");
    return TFM_OK;
}

/* The one list of parameters (or gradients, into views v). */
static void describe(const seq2seq *m, seq2seq_params *v, param_list *l) {
    const int64_t V = m->cfg.vocab, E = m->cfg.d_model;
    const bool tie = m->cfg.tie_embeddings;
    param_add(l, true, "", tie ? "embed.weight" : "src_embed.weight", &v->src_embed,
              INIT_XAVIER_UNIFORM, E, 2, V, E, 0);
    param_add(l, !tie, "", "tgt_embed.weight", &v->tgt_embed, INIT_XAVIER_UNIFORM, E, 2, V, E, 0);
    transformer_describe(&m->tr_cfg, &v->tr, "transformer.", l);
    param_add(l, !tie, "", "generator.weight", &v->generator_weight, INIT_XAVIER_UNIFORM, E, 2, V,
              E, 0);
    param_add(l, true, "", "generator.bias", &v->generator_bias, INIT_LINEAR_BIAS, E, 1, V, 0, 0);
}

tfm_status seq2seq_plan(seq2seq *m, const seq2seq_config *c) {
    memset(m, 0, sizeof *m);
    TFM_TRY(seq2seq_check_config(c));
    m->cfg = *c;
    layer_config lc = {.d_model = c->d_model, .nhead = c->nhead,
                       .dim_feedforward = c->dim_feedforward, .activation = c->activation,
                       .layer_norm_eps = 1e-5f, .norm_first = c->norm_first, .bias = true};
    m->tr_cfg.encoder = (stack_config){lc, c->num_encoder_layers, true};
    m->tr_cfg.decoder = (stack_config){lc, c->num_decoder_layers, true};
    param_list_init(&m->params);
    param_list_init(&m->grads);
    ws_init(&m->ws);
    ws_init(&m->act);
    seq2seq_params *views[2] = {&m->p, &m->g};
    param_list *lists[2] = {&m->params, &m->grads};
    for (int i = 0; i < 2; i++) {
        m->layer_views[i] = calloc((size_t)c->num_encoder_layers, sizeof(encoder_layer_params));
        m->dlayer_views[i] = calloc((size_t)c->num_decoder_layers, sizeof(decoder_layer_params));
        if (!m->layer_views[i] || !m->dlayer_views[i]) goto nomem;
        views[i]->tr.encoder.layers = m->layer_views[i];
        views[i]->tr.decoder.layers = m->dlayer_views[i];
        describe(m, views[i], lists[i]);
        if (lists[i]->failed) goto nomem;
    }
    tfm_status st = param_list_total(&m->params, &m->num_floats);
    if (st != TFM_OK) seq2seq_free(m);
    return st;
nomem:
    seq2seq_free(m);
    return tfm_error(TFM_ERR_NOMEM, "seq2seq: out of memory");
}

tfm_status seq2seq_alloc(seq2seq *m) {
    m->block = malloc((m->num_floats ? m->num_floats : 1) * sizeof(float));
    m->grad_block = calloc(m->num_floats ? m->num_floats : 1, sizeof(float));
    tfm_status st = m->block && m->grad_block
                        ? posenc_create(&m->pe, m->cfg.max_len, m->cfg.d_model)
                        : tfm_error(TFM_ERR_NOMEM, "seq2seq: cannot allocate %zu parameters", m->num_floats);
    if (st != TFM_OK) {
        seq2seq_free(m);
        return st;
    }
    param_list_bind(&m->params, m->block);
    param_list_bind(&m->grads, m->grad_block);
    return TFM_OK;
}

tfm_status seq2seq_create(seq2seq *m, const seq2seq_config *c) {
    TFM_TRY(seq2seq_plan(m, c));
    return seq2seq_alloc(m);
}

void seq2seq_init(seq2seq *m, uint64_t seed) { param_list_init_values(&m->params, seed, true); }

void seq2seq_free(seq2seq *m) {
    param_list_free(&m->params);
    param_list_free(&m->grads);
    for (int i = 0; i < 2; i++) {
        free(m->layer_views[i]);
        free(m->dlayer_views[i]);
    }
    free(m->block);
    free(m->grad_block);
    bf16_weights_free(&m->bf16w);
    posenc_free(&m->pe);
    ws_free(&m->ws);
    ws_free(&m->act);
    memset(m, 0, sizeof *m);
}

static const float *tgt_embedding(const seq2seq_params *p, bool tie) {
    return tie ? p->src_embed : p->tgt_embed;
}

static float *tgt_embedding_mut(seq2seq_params *p, bool tie) {
    return tie ? p->src_embed : p->tgt_embed;
}

static const float *generator_weight(const seq2seq_params *p, bool tie) {
    return tie ? p->src_embed : p->generator_weight;
}

/* x (N, T, E) = dropout(embed(ids) · √E + PE); returns the dropout stream's seed. */
static tfm_status embed(const seq2seq *m, float *x, const int32_t *ids, const float *W, int64_t N,
                        int64_t T, train_ctx *tc, uint64_t *seed) {
    const int64_t E = m->cfg.d_model;
    TFM_TRY(embedding_forward(x, ids, W, N * T, m->cfg.vocab, E));
    TFM_TRY(posenc_forward(x, x, &m->pe, N, T, E));
    *seed = train_next_stream(tc);
    dropout_apply(x, N * T * E, tc ? tc->dropout : 0.0f, *seed);
    return TFM_OK;
}

/* Additive key-padding bias (N, T): −inf where pad. */
static float *pad_bias(tfm_ws *ws, const uint8_t *pad, int64_t N, int64_t T) {
    float *b = ws_floats(ws, (size_t)(N * T));
    if (b)
        for (int64_t i = 0; i < N * T; i++) b[i] = pad[i] ? -INFINITY : 0.0f;
    return b;
}

static tfm_status check_batch(const seq2seq *m, const seq2seq_batch *b) {
    if (b->N <= 0 || b->S <= 0 || b->L <= 0)
        return tfm_error(TFM_ERR_SHAPE, "seq2seq: empty batch (N %lld, S %lld, L %lld)",
                         (long long)b->N, (long long)b->S, (long long)b->L);
    if (b->S > m->cfg.max_len || b->L > m->cfg.max_len)
        return tfm_error(TFM_ERR_SHAPE, "seq2seq: sequence of %lld tokens is longer than max_len %lld",
                         (long long)(b->S > b->L ? b->S : b->L), (long long)m->cfg.max_len);
    return TFM_OK;
}

/* Forward (and, with `grad`, backward) of one batch; see seq2seq_train_step. */
static tfm_status step(seq2seq *m, const seq2seq_batch *b, float eps, bool train, bool grad,
                       uint64_t stepno, ce_result *res) {
    TFM_TRY(check_batch(m, b));
    const int64_t N = b->N, S = b->S, L = b->L, E = m->cfg.d_model, V = m->cfg.vocab, R = N * L;
    const bool tie = m->cfg.tie_embeddings;
    TFM_TRY(ws_begin(&m->ws));
    TFM_TRY(ws_begin(&m->act));
    train_ctx tc = {.act = &m->act, .dropout = train ? m->cfg.dropout : 0.0f,
                    .seed = rng_derive(m->dropout_seed, stepno)};
    float *xs = ws_floats(&m->act, (size_t)(N * S * E)), *xt = ws_floats(&m->act, (size_t)(R * E));
    float *y = ws_floats(&m->act, (size_t)(R * E));
    float *src_kpm = pad_bias(&m->act, b->src_pad, N, S), *tgt_kpm = pad_bias(&m->act, b->tgt_pad, N, L);
    float *logp = ws_floats(&m->act, (size_t)R * (size_t)V);
    if (!xs || !xt || !y || !src_kpm || !tgt_kpm || !logp)
        return tfm_error(TFM_ERR_NOMEM, "seq2seq: out of memory for a batch of %lld×(%lld+%lld)",
                         (long long)N, (long long)S, (long long)L);
    uint64_t seed_s, seed_t;
    TFM_TRY(embed(m, xs, b->src, m->p.src_embed, N, S, &tc, &seed_s));
    TFM_TRY(embed(m, xt, b->tgt_in, tgt_embedding(&m->p, tie), N, L, &tc, &seed_t));
    attn_bias src_b = {.key_padding = src_kpm, .masked_cols = S};
    attn_bias tgt_b = {.key_padding = tgt_kpm, .causal = true, .masked_cols = L};
    attn_bias mem_b = {.key_padding = src_kpm, .masked_cols = S};
    transformer_cache cache;
    TFM_TRY(transformer_forward(&m->tr_cfg, &m->p.tr, &m->ws, y, xs, xt, N, S, L, &src_b, &tgt_b,
                                &mem_b, grad ? &tc : NULL, grad ? &cache : NULL));
    generator_forward(logp, y, generator_weight(&m->p, tie), m->p.generator_bias, R, E, V);
    TFM_TRY(cross_entropy_forward(res, logp, b->tgt_out, R, V, TOK_PAD, eps));
    if (!grad || res->count == 0) return TFM_OK;

    /* backward: loss → logits → generator → Transformer → embeddings */
    float *dlogits = logp; /* in place: the largest buffer of the step */
    TFM_TRY(log_softmax_cross_entropy_backward(dlogits, logp, b->tgt_out, R, V, TOK_PAD, eps, 1.0f,
                                               res->count));
    float *dy = ws_floats(&m->act, (size_t)(R * E)), *dxs = ws_floats(&m->act, (size_t)(N * S * E));
    if (!dy || !dxs) return tfm_error(TFM_ERR_NOMEM, "seq2seq: out of memory in backward");
    memset(dy, 0, (size_t)(R * E) * sizeof(float));
    generator_backward(dy, tie ? m->g.src_embed : m->g.generator_weight, m->g.generator_bias,
                       dlogits, y, generator_weight(&m->p, tie), R, E, V);
    TFM_TRY(transformer_backward(&m->tr_cfg, &m->p.tr, &m->g.tr, &cache, &m->ws, dy, dxs, N, S, L));
    dropout_apply(dy, R * E, tc.dropout, seed_t);
    dropout_apply(dxs, N * S * E, tc.dropout, seed_s);
    TFM_TRY(embedding_backward(tgt_embedding_mut(&m->g, tie), dy, b->tgt_in, R, V, E));
    return embedding_backward(m->g.src_embed, dxs, b->src, N * S, V, E);
}

tfm_status seq2seq_compute_begin(seq2seq *m, compute_scope *previous) {
    return param_list_compute_begin(&m->params, m->compute, &m->bf16w, previous);
}

/* step() in m's compute scope. */
static tfm_status scoped_step(seq2seq *m, const seq2seq_batch *b, float eps, bool train,
                              bool backward, uint64_t stepno, ce_result *res) {
    compute_scope previous;
    TFM_TRY(seq2seq_compute_begin(m, &previous));
    const tfm_status st = step(m, b, eps, train, backward, stepno, res);
    compute_leave(previous);
    return st;
}

tfm_status seq2seq_train_step(seq2seq *m, const seq2seq_batch *b, float eps, bool train,
                              uint64_t stepno, ce_result *res) {
    return scoped_step(m, b, eps, train, true, stepno, res);
}

tfm_status seq2seq_eval_loss(seq2seq *m, const seq2seq_batch *b, float eps, ce_result *res) {
    return scoped_step(m, b, eps, false, false, 0, res);
}

static tfm_status greedy_run(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t N,
                             int64_t S, int64_t max_out, int32_t *out);

tfm_status seq2seq_greedy(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t N,
                          int64_t S, int64_t max_out, int32_t *out) {
    compute_scope previous;
    TFM_TRY(seq2seq_compute_begin(m, &previous));
    const tfm_status st = greedy_run(m, src, src_pad, N, S, max_out, out);
    compute_leave(previous);
    return st;
}

static tfm_status greedy_run(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t N,
                             int64_t S, int64_t max_out, int32_t *out) {
    const int64_t E = m->cfg.d_model, V = m->cfg.vocab;
    const bool tie = m->cfg.tie_embeddings;
    if (N <= 0 || S <= 0) return tfm_error(TFM_ERR_SHAPE, "greedy: empty input");
    if (S > m->cfg.max_len) return tfm_error(TFM_ERR_SHAPE, "greedy: source of %lld tokens is longer than max_len %lld", (long long)S, (long long)m->cfg.max_len);
    if (max_out + 1 > m->cfg.max_len) max_out = m->cfg.max_len - 1;
    TFM_TRY(ws_begin(&m->ws));
    TFM_TRY(ws_begin(&m->act));
    const int64_t T = max_out + 1;
    float *xs = ws_floats(&m->act, (size_t)(N * S * E)), *memory = ws_floats(&m->act, (size_t)(N * S * E));
    float *src_kpm = pad_bias(&m->act, src_pad, N, S);
    int32_t *ys = ws_alloc(&m->act, (size_t)(N * T) * sizeof(int32_t)); /* (N, T): BOS + outputs */
    bool *done = ws_alloc(&m->act, (size_t)N * sizeof(bool));
    float *xt = ws_floats(&m->act, (size_t)(N * T * E)), *y = ws_floats(&m->act, (size_t)(N * T * E));
    float *last = ws_floats(&m->act, (size_t)(N * E)), *logp = ws_floats(&m->act, (size_t)(N * V));
    if (!xs || !memory || !src_kpm || !ys || !done || !xt || !y || !last || !logp)
        return tfm_error(TFM_ERR_NOMEM, "greedy: out of memory");
    uint64_t unused;
    TFM_TRY(embed(m, xs, src, m->p.src_embed, N, S, NULL, &unused));
    attn_bias src_b = {.key_padding = src_kpm, .masked_cols = S};
    TFM_TRY(encoder_forward(&m->tr_cfg.encoder, &m->p.tr.encoder, &m->ws, memory, xs, N, S, &src_b,
                            NULL, NULL));
    for (int64_t n = 0; n < N; n++) {
        ys[n * T] = TOK_BOS;
        done[n] = false;
        for (int64_t t = 0; t < max_out; t++) out[n * max_out + t] = TOK_PAD;
    }
    for (int64_t t = 1; t <= max_out; t++) {
        ws_mark_t mark = ws_mark(&m->ws);
        /* the prefix ys[:, :t] as a contiguous (N, t) block */
        int32_t *prefix = (int32_t *)ws_alloc(&m->ws, (size_t)(N * t) * sizeof(int32_t));
        if (!prefix) return tfm_error(TFM_ERR_NOMEM, "greedy: out of memory");
        for (int64_t n = 0; n < N; n++) memcpy(prefix + n * t, ys + n * T, (size_t)t * sizeof(int32_t));
        TFM_TRY(embed(m, xt, prefix, tgt_embedding(&m->p, tie), N, t, NULL, &unused));
        attn_bias tgt_b = {.causal = true, .masked_cols = t};
        attn_bias mem_b = {.key_padding = src_kpm, .masked_cols = S};
        TFM_TRY(decoder_forward(&m->tr_cfg.decoder, &m->p.tr.decoder, &m->ws, y, xt, memory, N, t, S,
                                &tgt_b, &mem_b, NULL, NULL));
        ws_release(&m->ws, mark);
        for (int64_t n = 0; n < N; n++) memcpy(last + n * E, y + (n * t + t - 1) * E, (size_t)E * sizeof(float));
        generator_forward(logp, last, generator_weight(&m->p, tie), m->p.generator_bias, N, E, V);
        bool all = true;
        for (int64_t n = 0; n < N; n++) {
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (logp[n * V + v] > logp[n * V + best]) best = (int32_t)v;
            int32_t tok = done[n] ? TOK_PAD : best;
            ys[n * T + t] = tok;
            out[n * max_out + t - 1] = tok;
            if (tok == TOK_EOS) done[n] = true;
            all = all && done[n];
        }
        if (all) break;
    }
    return TFM_OK;
}
