/* search.c — greedy and beam search on the incremental decoder; see search.h.
 * Legend: n sources, S source length, K beam, R = n·K rows, V vocabulary, Ly decoder
 * layers, ML max output length, T the decoder's step capacity. */
#include "decode/search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "decode/kv_decoder.h"
#include "train/tokenizer.h"

void search_config_default(search_config *c) {
    *c = (search_config){.beam = 1, .max_len = 64, .length_penalty = 0.0, .nbest = 1};
}

double search_length_penalty(int64_t len, double alpha) {
    return alpha == 0.0 ? 1.0 : pow((5.0 + (double)len) / 6.0, alpha);
}

void search_hyp_free(search_hyp *hyps, int64_t count) {
    if (!hyps) return;
    for (int64_t i = 0; i < count; i++) {
        free(hyps[i].tokens);
        free(hyps[i].attn);
        hyps[i] = (search_hyp){0};
    }
}

/* size_t product, SIZE_MAX on overflow (which then fails the carving below). */
static size_t mul(size_t a, size_t b) { return a && b > SIZE_MAX / a ? SIZE_MAX : a * b; }

/* Carving one block into arrays: run once with base NULL to size it, then for real. */
typedef struct carve {
    char *base;
    size_t off;
    bool overflow;
} carve;

static void *take(carve *c, size_t count, size_t size) {
    size_t off = (c->off + 15) & ~(size_t)15;
    if (count == SIZE_MAX || (size && count > SIZE_MAX / size) || off < c->off ||
        count * size > SIZE_MAX - off) {
        c->overflow = true;
        return NULL;
    }
    c->off = off + count * size;
    return c->base ? c->base + off : NULL;
}

/* The checks shared by both algorithms; *ml gets the effective max_len. */
static tfm_status check_args(const seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                             int64_t S, const search_config *cfg, search_hyp *out, bool greedy,
                             int64_t *ml) {
    if (!m || !src || !src_pad || !cfg || !out)
        return tfm_error(TFM_ERR_INVALID_ARG, "search: NULL argument");
    if (n < 1 || S < 1) return tfm_error(TFM_ERR_INVALID_ARG, "search: n (%lld) and S (%lld) must be >= 1", (long long)n, (long long)S);
    const int64_t V = m->cfg.vocab;
    if (!greedy && (cfg->beam < 1 || cfg->beam >= V))
        return tfm_error(TFM_ERR_INVALID_ARG, "search: beam (%lld) must be in [1, vocab %lld)",
                         (long long)cfg->beam, (long long)V);
    if (greedy ? cfg->nbest != 1 : (cfg->nbest < 1 || cfg->nbest > cfg->beam))
        return tfm_error(TFM_ERR_INVALID_ARG, "search: nbest (%lld) must be in [1, beam %lld]",
                         (long long)cfg->nbest, (long long)(greedy ? 1 : cfg->beam));
    if (cfg->max_len < 1)
        return tfm_error(TFM_ERR_INVALID_ARG, "search: max_len (%lld) must be >= 1", (long long)cfg->max_len);
    if (!isfinite(cfg->length_penalty))
        return tfm_error(TFM_ERR_INVALID_ARG, "search: length_penalty must be finite");
    if (m->cfg.max_len < 2)
        return tfm_error(TFM_ERR_INVALID_ARG, "search: the model's max_len (%lld) leaves no room after BOS",
                         (long long)m->cfg.max_len);
    if (mul((size_t)n, (size_t)cfg->nbest) > SIZE_MAX / sizeof(search_hyp))
        return tfm_error(TFM_ERR_INVALID_ARG, "search: sizes overflow");
    /* BOS + outputs fit the model's positions, as seq2seq_greedy */
    *ml = cfg->max_len < m->cfg.max_len - 1 ? cfg->max_len : m->cfg.max_len - 1;
    memset(out, 0, (size_t)(n * cfg->nbest) * sizeof(search_hyp));
    return TFM_OK;
}

/* dst (Ly, len, S) = steps [0, len) of a (Ly, ·, S) record whose layer l starts at
 * base + l·layer_stride. */
static void copy_attn(float *dst, const float *base, size_t layer_stride, int64_t Ly, int64_t len,
                      int64_t S) {
    for (int64_t l = 0; l < Ly; l++)
        memcpy(dst + (size_t)(l * len * S), base + (size_t)l * layer_stride, (size_t)(len * S) * sizeof(float));
}

/* Fill h with a copy of tokens (len) and, when attn is non-NULL, of its (Ly, len, S)
 * weights laid out as copy_attn reads them. */
static tfm_status emit(search_hyp *h, const int32_t *tokens, int64_t len, double logprob, double alpha,
                       const float *attn, size_t layer_stride, int64_t Ly, int64_t S) {
    h->len = len;
    h->logprob = logprob;
    h->score = logprob / search_length_penalty(len, alpha);
    h->tokens = malloc((size_t)(len > 0 ? len : 1) * sizeof(int32_t));
    if (!h->tokens) return tfm_error(TFM_ERR_NOMEM, "search: out of memory");
    if (len > 0) memcpy(h->tokens, tokens, (size_t)len * sizeof(int32_t));
    if (attn) {
        h->attn = malloc((size_t)(Ly * (len > 0 ? len : 1) * S) * sizeof(float));
        if (!h->attn) return tfm_error(TFM_ERR_NOMEM, "search: out of memory");
        copy_attn(h->attn, attn, layer_stride, Ly, len, S);
    }
    return TFM_OK;
}

/* Size the block with base NULL (layout() fills pointers with NULL), allocate, lay out
 * again for real. */
#define CARVE(c, layout_call)                                                                 \
    do {                                                                                      \
        (c) = (carve){0};                                                                     \
        layout_call;                                                                          \
        if ((c).overflow) return tfm_error(TFM_ERR_INVALID_ARG, "search: sizes overflow");    \
        size_t bytes_ = (c).off;                                                              \
        (c) = (carve){.base = malloc(bytes_ ? bytes_ : 1)};                                   \
        if (!(c).base) return tfm_error(TFM_ERR_NOMEM, "search: out of memory");              \
        layout_call;                                                                          \
    } while (0)

/* ---- greedy ---- */

typedef struct greedy_state {
    double *sum;    /* (n) Σ log p of the chosen tokens */
    int64_t *len;   /* (n) tokens chosen */
    float *logp;    /* (n, V) */
    int32_t *tok;   /* (n, ML) */
    int32_t *feed;  /* (n) */
    uint8_t *done;  /* (n) */
} greedy_state;

static void greedy_layout(carve *c, greedy_state *g, int64_t n, int64_t V, int64_t ML) {
    g->sum = take(c, (size_t)n, sizeof(double));
    g->len = take(c, (size_t)n, sizeof(int64_t));
    g->logp = take(c, mul((size_t)n, (size_t)V), sizeof(float));
    g->tok = take(c, mul((size_t)n, (size_t)ML), sizeof(int32_t));
    g->feed = take(c, (size_t)n, sizeof(int32_t));
    g->done = take(c, (size_t)n, 1);
}

static tfm_status greedy_run(kv_decoder *d, greedy_state *g, int64_t n, int64_t V, int64_t ML) {
    for (int64_t i = 0; i < n; i++) g->sum[i] = 0.0, g->len[i] = 0, g->done[i] = 0;
    for (int64_t t = 0; t < ML; t++) {
        for (int64_t i = 0; i < n; i++)
            g->feed[i] = t == 0 ? TOK_BOS : g->done[i] ? TOK_EOS : g->tok[i * ML + t - 1];
        TFM_TRY(kv_decoder_step(d, g->feed, g->logp));
        bool all = true;
        for (int64_t i = 0; i < n; i++) {
            if (g->done[i]) continue;
            const float *lp = g->logp + i * V;
            int32_t best = 0; /* the first maximum, as torch.argmax and seq2seq_greedy */
            for (int64_t v = 1; v < V; v++)
                if (lp[v] > lp[best]) best = (int32_t)v;
            g->tok[i * ML + t] = best;
            g->sum[i] += (double)lp[best];
            g->len[i] = t + 1;
            g->done[i] = best == TOK_EOS;
            all = all && g->done[i];
        }
        if (all) break;
    }
    return TFM_OK;
}

tfm_status search_greedy(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                         int64_t S, const search_config *cfg, search_hyp *out) {
    int64_t ML;
    TFM_TRY(check_args(m, src, src_pad, n, S, cfg, out, true, &ML));
    const int64_t V = m->cfg.vocab, Ly = m->tr_cfg.decoder.num_layers;
    carve c;
    greedy_state g;
    CARVE(c, greedy_layout(&c, &g, n, V, ML));
    kv_decoder d;
    tfm_status st = kv_decoder_start(&d, m, src, src_pad, n, S, 1, ML, cfg->record_attn, cfg->no_cache);
    if (st == TFM_OK) {
        st = greedy_run(&d, &g, n, V, ML);
        /* row i's record: d.attn + (l·n + i)·T·S for layer l */
        const size_t row = (size_t)(d.T * S);
        for (int64_t i = 0; st == TFM_OK && i < n; i++)
            st = emit(&out[i], g.tok + i * ML, g.len[i], g.sum[i], cfg->length_penalty,
                      cfg->record_attn ? d.attn + (size_t)i * row : NULL, (size_t)n * row, Ly, S);
        kv_decoder_free(&d);
    }
    if (st != TFM_OK) search_hyp_free(out, n);
    free(c.base);
    return st;
}

/* ---- beam ---- */

typedef struct beam_state {
    int64_t n, K, V, ML, S, Ly;
    double alpha;
    float *logp;        /* (R, V) */
    double *score;      /* (R) cumulative log p of each live beam; −inf = dead */
    double *next_score; /* (R) */
    int32_t *tok;       /* (R, ML) each beam's tokens so far */
    int32_t *next_tok;  /* (R, ML) */
    int32_t *feed;      /* (R) the token each row gets next (after reorder) */
    int32_t *parent;    /* (R) the row each new beam continues */
    double *cand_score; /* (2K) one source's candidates, best first */
    int32_t *cand_beam; /* (2K) */
    int32_t *cand_tok;  /* (2K) */
    uint8_t *done;      /* (n) */
    /* finished hypotheses, K per source */
    int64_t *fin_count; /* (n) */
    int32_t *fin_tok;   /* (n, K, ML) */
    int64_t *fin_len;   /* (n, K) */
    double *fin_logp;   /* (n, K) */
    double *fin_score;  /* (n, K) */
    int64_t *fin_seq;   /* (n, K) order of finishing, for ties */
    float *fin_attn;    /* (n, K, Ly, ML, S) when recording, else NULL */
    uint8_t *taken;     /* (n, K) already returned, while emitting */
    int64_t seq;
} beam_state;

static void beam_layout(carve *c, beam_state *b, bool record) {
    const size_t n = (size_t)b->n, K = (size_t)b->K, R = mul(n, K), ML = (size_t)b->ML;
    b->logp = take(c, mul(R, (size_t)b->V), sizeof(float));
    b->score = take(c, R, sizeof(double));
    b->next_score = take(c, R, sizeof(double));
    b->tok = take(c, mul(R, ML), sizeof(int32_t));
    b->next_tok = take(c, mul(R, ML), sizeof(int32_t));
    b->feed = take(c, R, sizeof(int32_t));
    b->parent = take(c, R, sizeof(int32_t));
    b->cand_score = take(c, 2 * K, sizeof(double));
    b->cand_beam = take(c, 2 * K, sizeof(int32_t));
    b->cand_tok = take(c, 2 * K, sizeof(int32_t));
    b->done = take(c, n, 1);
    b->fin_count = take(c, n, sizeof(int64_t));
    b->fin_tok = take(c, mul(R, ML), sizeof(int32_t));
    b->fin_len = take(c, R, sizeof(int64_t));
    b->fin_logp = take(c, R, sizeof(double));
    b->fin_score = take(c, R, sizeof(double));
    b->fin_seq = take(c, R, sizeof(int64_t));
    b->taken = take(c, R, 1);
    b->fin_attn = record ? take(c, mul(mul(R, (size_t)b->Ly), mul(ML, (size_t)b->S)), sizeof(float)) : NULL;
}

/* Source i's top 2K candidates over its K beams: best first, ties by lower beam, then
 * lower token (the scan order, kept by inserting after equals). −inf and NaN never
 * enter. Returns how many (< 2K only when fewer are finite). */
static int64_t select_candidates(beam_state *b, int64_t i) {
    const int64_t K = b->K, V = b->V, cap = 2 * K;
    int64_t count = 0;
    for (int64_t k = 0; k < K; k++) {
        const int64_t r = i * K + k;
        const double base = b->score[r];
        if (!(base > -INFINITY)) continue;
        const float *lp = b->logp + r * V;
        for (int64_t v = 0; v < V; v++) {
            const double s = base + (double)lp[v];
            if (!(s > -INFINITY)) continue;
            if (count == cap && !(s > b->cand_score[cap - 1])) continue;
            int64_t pos = count < cap ? count++ : cap - 1;
            for (; pos > 0 && b->cand_score[pos - 1] < s; pos--) {
                b->cand_score[pos] = b->cand_score[pos - 1];
                b->cand_beam[pos] = b->cand_beam[pos - 1];
                b->cand_tok[pos] = b->cand_tok[pos - 1];
            }
            b->cand_score[pos] = s;
            b->cand_beam[pos] = (int32_t)k;
            b->cand_tok[pos] = (int32_t)v;
        }
    }
    return count;
}

/* Offer source i a finished hypothesis: row `row`'s tokens (t of them) + `last`, log p
 * `logprob`, attention steps [0, t] of row `row` in the decoder. Kept if fewer than K
 * are held or it beats the worst held (ties: the earlier stays). */
static void finish(beam_state *b, const kv_decoder *d, int64_t i, int64_t row, int64_t t,
                   int32_t last, double logprob) {
    const int64_t K = b->K, ML = b->ML, len = t + 1;
    const double score = logprob / search_length_penalty(len, b->alpha);
    int64_t slot;
    if (b->fin_count[i] < K) {
        slot = i * K + b->fin_count[i]++;
    } else {
        slot = i * K;
        for (int64_t j = i * K + 1; j < i * K + K; j++)
            if (b->fin_score[j] < b->fin_score[slot] ||
                (b->fin_score[j] == b->fin_score[slot] && b->fin_seq[j] > b->fin_seq[slot]))
                slot = j;
        if (!(score > b->fin_score[slot])) return;
    }
    memcpy(b->fin_tok + slot * ML, b->tok + row * ML, (size_t)t * sizeof(int32_t));
    b->fin_tok[slot * ML + t] = last;
    b->fin_len[slot] = len;
    b->fin_logp[slot] = logprob;
    b->fin_score[slot] = score;
    b->fin_seq[slot] = b->seq++;
    if (b->fin_attn) {
        const size_t S = (size_t)b->S, T = (size_t)d->T, R = (size_t)d->R;
        float *dst = b->fin_attn + (size_t)slot * (size_t)(b->Ly * ML) * S;
        for (int64_t l = 0; l < b->Ly; l++)
            memcpy(dst + (size_t)(l * ML) * S, d->attn + ((size_t)l * R + (size_t)row) * T * S,
                   (size_t)len * S * sizeof(float));
    }
}

/* Whether source i can stop after step t: K finished and the best live beam (score
 * `best`, length t + 1) cannot beat the worst of them at any final length in
 * [t + 2, ML]. lp is monotonic in len, so the best ratio is at an end of the range. */
static bool source_done(const beam_state *b, int64_t i, int64_t t, double best) {
    const int64_t K = b->K;
    if (b->fin_count[i] < K) return false;
    if (!(best > -INFINITY)) return true;
    double worst = b->fin_score[i * K];
    for (int64_t j = i * K + 1; j < i * K + K; j++)
        if (b->fin_score[j] < worst) worst = b->fin_score[j];
    const double a = best / search_length_penalty(t + 2, b->alpha);
    const double z = best / search_length_penalty(b->ML, b->alpha);
    return (a > z ? a : z) <= worst;
}

static tfm_status beam_run(beam_state *b, kv_decoder *d) {
    const int64_t n = b->n, K = b->K, R = n * K, ML = b->ML;
    for (int64_t i = 0; i < n; i++) b->done[i] = 0, b->fin_count[i] = 0;
    for (int64_t r = 0; r < R; r++) {
        b->score[r] = r % K == 0 ? 0.0 : -INFINITY; /* one live beam per source at first */
        b->feed[r] = TOK_BOS;
    }
    b->seq = 0;
    for (int64_t t = 0; t < ML; t++) {
        TFM_TRY(kv_decoder_step(d, b->feed, b->logp));
        bool all = true;
        for (int64_t i = 0; i < n; i++) {
            const int64_t r0 = i * K;
            if (b->done[i]) { /* rows keep their state; their outputs are ignored */
                for (int64_t k = 0; k < K; k++) {
                    b->parent[r0 + k] = (int32_t)(r0 + k);
                    b->next_score[r0 + k] = b->score[r0 + k];
                    b->feed[r0 + k] = TOK_EOS;
                }
                continue;
            }
            const int64_t count = select_candidates(b, i);
            int64_t live = 0;
            for (int64_t j = 0; j < count; j++) {
                const int64_t row = r0 + b->cand_beam[j];
                if (b->cand_tok[j] == TOK_EOS) {
                    if (j < K) finish(b, d, i, row, t, TOK_EOS, b->cand_score[j]);
                } else if (live < K) {
                    b->parent[r0 + live] = (int32_t)row;
                    b->feed[r0 + live] = b->cand_tok[j];
                    b->next_score[r0 + live] = b->cand_score[j];
                    live++;
                }
            }
            for (int64_t k = live; k < K; k++) { /* only when fewer than K are finite */
                b->parent[r0 + k] = (int32_t)r0;
                b->feed[r0 + k] = TOK_PAD;
                b->next_score[r0 + k] = -INFINITY;
            }
            if (t == ML - 1) { /* out of room: the live beams finish as they are */
                for (int64_t k = 0; k < live; k++)
                    finish(b, d, i, b->parent[r0 + k], t, b->feed[r0 + k], b->next_score[r0 + k]);
                b->done[i] = 1;
            } else {
                b->done[i] = source_done(b, i, t, live ? b->next_score[r0] : -INFINITY);
            }
            all = all && b->done[i];
        }
        if (all) break;
        for (int64_t r = 0; r < R; r++) {
            memcpy(b->next_tok + r * ML, b->tok + (int64_t)b->parent[r] * ML, (size_t)t * sizeof(int32_t));
            b->next_tok[r * ML + t] = b->feed[r];
        }
        int32_t *tk = b->tok;
        b->tok = b->next_tok, b->next_tok = tk;
        double *sc = b->score;
        b->score = b->next_score, b->next_score = sc;
        TFM_TRY(kv_decoder_reorder(d, b->parent));
    }
    return TFM_OK;
}

/* Source i's finished hypotheses into out (nbest), best score first, ties by finishing
 * order. Fewer than nbest (only when fewer than K candidates were ever finite) leaves
 * empty hypotheses with score −inf. */
static tfm_status beam_emit(beam_state *b, int64_t i, int64_t nbest, search_hyp *out) {
    const int64_t K = b->K, ML = b->ML, cnt = b->fin_count[i];
    const size_t attn_each = (size_t)(b->Ly * ML * b->S);
    uint8_t *taken = b->taken + i * K;
    memset(taken, 0, (size_t)K);
    for (int64_t q = 0; q < nbest; q++) {
        int64_t best = -1;
        for (int64_t j = 0; j < cnt; j++) {
            if (taken[j]) continue;
            const int64_t s = i * K + j, bs = i * K + best;
            if (best < 0 || b->fin_score[s] > b->fin_score[bs] ||
                (b->fin_score[s] == b->fin_score[bs] && b->fin_seq[s] < b->fin_seq[bs]))
                best = j;
        }
        if (best < 0) {
            TFM_TRY(emit(&out[q], NULL, 0, -INFINITY, b->alpha, NULL, 0, b->Ly, b->S));
            continue;
        }
        taken[best] = true;
        const int64_t s = i * K + best;
        TFM_TRY(emit(&out[q], b->fin_tok + s * ML, b->fin_len[s], b->fin_logp[s], b->alpha,
                     b->fin_attn ? b->fin_attn + (size_t)s * attn_each : NULL, (size_t)(ML * b->S),
                     b->Ly, b->S));
    }
    return TFM_OK;
}

tfm_status search_beam(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                       int64_t S, const search_config *cfg, search_hyp *out) {
    int64_t ML;
    TFM_TRY(check_args(m, src, src_pad, n, S, cfg, out, false, &ML));
    beam_state b = {.n = n, .K = cfg->beam, .V = m->cfg.vocab, .ML = ML, .S = S,
                    .Ly = m->tr_cfg.decoder.num_layers, .alpha = cfg->length_penalty};
    carve c;
    CARVE(c, beam_layout(&c, &b, cfg->record_attn));
    kv_decoder d;
    tfm_status st = kv_decoder_start(&d, m, src, src_pad, n, S, b.K, ML, cfg->record_attn, cfg->no_cache);
    if (st == TFM_OK) {
        st = beam_run(&b, &d);
        for (int64_t i = 0; st == TFM_OK && i < n; i++)
            st = beam_emit(&b, i, cfg->nbest, out + i * cfg->nbest);
        kv_decoder_free(&d);
    }
    if (st != TFM_OK) search_hyp_free(out, n * cfg->nbest);
    free(c.base);
    return st;
}

tfm_status search_translate(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                            int64_t S, const search_config *cfg, search_hyp *out) {
    if (cfg && cfg->beam == 1) return search_greedy(m, src, src_pad, n, S, cfg, out);
    return search_beam(m, src, src_pad, n, S, cfg, out);
}
