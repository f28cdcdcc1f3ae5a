/* kv_decoder.h — incremental decoding of a seq2seq model with a key/value cache.
 *
 * Start: the sources are encoded once; each decoder layer's cross-attention keys and
 * values of the memory are computed once, and each row (a source, or a beam of it) gets
 * room for max_steps self-attention keys and values per layer — all allocated here,
 * once. Step: one token per row goes through every layer, attending to the cached keys
 * of the tokens before it (the causal mask is implicit) and to the memory; its keys and
 * values are appended; the step returns log-probabilities of the next token. Equal to
 * recomputing the whole decoder over the prefix (tests check it at every step).
 *
 * Legend: R rows (= sources × repeat), S source length, T max steps, E d_model,
 * V vocabulary, Ly decoder layers.
 */
#ifndef TFM_DECODE_KV_DECODER_H
#define TFM_DECODE_KV_DECODER_H

#include <stdbool.h>
#include <stdint.h>

#include "model/seq2seq.h"

typedef struct kv_decoder {
    seq2seq *m;
    int64_t R, S, T;  /* rows, source length, step capacity */
    int64_t repeat;   /* rows per source: row r decodes source r / repeat */
    int64_t t;        /* tokens fed so far (the next one goes to position t) */
    float *cross_k;   /* (Ly, R, S, E) */
    float *cross_v;   /* (Ly, R, S, E) */
    float *self_k;    /* (Ly, R, T, E) */
    float *self_v;    /* (Ly, R, T, E) */
    float *src_kpm;   /* (R, S) additive: −inf at padding */
    float *attn;      /* (Ly, R, T, S) cross-attention weights, heads averaged, when recorded */
    bool no_cache;    /* recompute the decoder over the whole prefix at every step instead */
    int32_t *prefix;  /* (R, T) tokens fed so far (used by no_cache, and by reorder) */
    float *memory;    /* (R, S, E): kept only for no_cache */
    tfm_ws ws;        /* scratch */
    void *block;      /* one allocation for everything above */
} kv_decoder;

/* Encode n sources (src (n, S) token ids, src_pad (n, S) 1 = padding) and prepare
 * n·repeat rows (source i's copies are rows i·repeat … i·repeat + repeat − 1) for up to
 * max_steps steps. record_attn keeps the cross-attention weights for attention maps.
 * no_cache: decode by full recomputation (for checking and benchmarks); it records no
 * attention (asking for both is TFM_ERR_UNSUPPORTED). */
tfm_status kv_decoder_start(kv_decoder *d, seq2seq *m, const int32_t *src, const uint8_t *src_pad,
                            int64_t n, int64_t S, int64_t repeat, int64_t max_steps,
                            bool record_attn, bool no_cache);
/* Feed tokens (R) — at the first step BOS — and get logp (R, V): log-probabilities of the
 * next token of every row. TFM_ERR_SHAPE once max_steps tokens have been fed. */
tfm_status kv_decoder_step(kv_decoder *d, const int32_t *tokens, float *logp);
/* Beam bookkeeping: afterwards row r holds what row parents[r] held (its cache, its
 * prefix and its recorded attention). parents (R), each in [0, R). */
tfm_status kv_decoder_reorder(kv_decoder *d, const int32_t *parents);
void kv_decoder_free(kv_decoder *d);

#endif
