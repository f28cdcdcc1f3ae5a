/* test_decode.c — the KV-cached decoder: at every step its log-probabilities equal
 * recomputing the whole decoder over the prefix (1e-5), for a padded batch, in both
 * norm orders; reordering rows (beam bookkeeping) moves caches with the rows; the
 * recorded cross-attention rows sum to 1 over the unpadded source. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "decode/kv_decoder.h"
#include "support/check.h"
#include "train/tokenizer.h"

enum { N = 3, S = 7, STEPS = 9, V = TOK_VOCAB };

static void make_model(seq2seq *m, bool norm_first) {
    seq2seq_config c = {.vocab = V, .d_model = 32, .nhead = 4, .num_encoder_layers = 2,
                        .num_decoder_layers = 2, .dim_feedforward = 48, .dropout = 0.1f,
                        .activation = TFM_GELU, .norm_first = norm_first,
                        .tie_embeddings = !norm_first, .max_len = 16};
    assert_int_equal(seq2seq_create(m, &c), TFM_OK);
    seq2seq_init(m, 11);
    /* non-zero biases so every term matters */
    tfm_rng r;
    rng_seed(&r, 5);
    for (size_t i = 0; i < m->num_floats; i++) m->block[i] += 0.05f * rng_normal(&r);
}

/* Sources of lengths 7, 4 and 1 (padded to S). */
static void make_sources(int32_t *src, uint8_t *pad) {
    const int lens[N] = {7, 4, 1};
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            pad[n * S + s] = s >= lens[n];
            src[n * S + s] = s < lens[n] ? TOK_BYTE0 + 'a' + (n * 3 + s) % 20 : TOK_PAD;
        }
}

/* Feed the same token sequence to a cached and a recomputing decoder. */
static void check_cache_equals_recompute(bool norm_first) {
    seq2seq m;
    make_model(&m, norm_first);
    int32_t src[N * S];
    uint8_t pad[N * S];
    make_sources(src, pad);
    kv_decoder a, b;
    assert_int_equal(kv_decoder_start(&a, &m, src, pad, N, S, 1, STEPS, true, false), TFM_OK);
    assert_int_equal(kv_decoder_start(&b, &m, src, pad, N, S, 1, STEPS, false, true), TFM_OK);
    float la[N * V], lb[N * V];
    int32_t tok[N] = {TOK_BOS, TOK_BOS, TOK_BOS};
    for (int t = 0; t < STEPS; t++) {
        assert_int_equal(kv_decoder_step(&a, tok, la), TFM_OK);
        assert_int_equal(kv_decoder_step(&b, tok, lb), TFM_OK);
        char what[64];
        snprintf(what, sizeof what, "step %d log-probs", t);
        assert_true(close_enough(what, la, lb, N * V, 1e-5, 1e-5));
        for (int n = 0; n < N; n++) tok[n] = TOK_BYTE0 + 'a' + (t * 7 + n) % 26; /* any tokens */
    }
    /* the decoder is full now */
    assert_int_equal(kv_decoder_step(&a, tok, la), TFM_ERR_SHAPE);
    /* recorded cross-attention: rows sum to 1 over real source positions, 0 on padding */
    const int64_t Ly = m.tr_cfg.decoder.num_layers;
    for (int64_t l = 0; l < Ly; l++)
        for (int n = 0; n < N; n++)
            for (int t = 0; t < STEPS; t++) {
                const float *w = a.attn + ((l * N + n) * STEPS + t) * S;
                double sum = 0;
                for (int s = 0; s < S; s++) {
                    sum += w[s];
                    if (pad[n * S + s]) assert_true(w[s] == 0.0f);
                }
                assert_true(fabs(sum - 1.0) < 1e-5);
            }
    kv_decoder_free(&a);
    kv_decoder_free(&b);
    seq2seq_free(&m);
}

static void test_cache_post_norm(void **state) { check_cache_equals_recompute(false); }
static void test_cache_pre_norm(void **state) { check_cache_equals_recompute(true); }

/* Reordering rows, then stepping, equals a decoder that was fed the reordered history. */
static void test_reorder(void **state) {
    seq2seq m;
    make_model(&m, false);
    int32_t src[N * S];
    uint8_t pad[N * S];
    make_sources(src, pad);
    const int64_t K = 2, R = N * K;
    kv_decoder a, b;
    assert_int_equal(kv_decoder_start(&a, &m, src, pad, N, S, K, 6, false, false), TFM_OK);
    assert_int_equal(kv_decoder_start(&b, &m, src, pad, N, S, K, 6, false, true), TFM_OK);
    float *la = malloc(sizeof(float) * R * V), *lb = malloc(sizeof(float) * R * V);
    int32_t tok[6], parents[6];
    for (int t = 0; t < 5; t++) {
        for (int r = 0; r < R; r++) tok[r] = t == 0 ? TOK_BOS : TOK_BYTE0 + 'a' + (r * 5 + t) % 26;
        assert_int_equal(kv_decoder_step(&a, tok, la), TFM_OK);
        assert_int_equal(kv_decoder_step(&b, tok, lb), TFM_OK);
        assert_true(close_enough("reordered log-probs", la, lb, (size_t)(R * V), 1e-5, 1e-5));
        /* swap the two beams of every source (and, once, copy beam 0 into both) */
        for (int r = 0; r < R; r++) parents[r] = t == 2 ? (r / K) * K : (r / K) * K + (K - 1 - r % K);
        assert_int_equal(kv_decoder_reorder(&a, parents), TFM_OK);
        assert_int_equal(kv_decoder_reorder(&b, parents), TFM_OK);
    }
    parents[0] = (int32_t)R;
    assert_int_equal(kv_decoder_reorder(&a, parents), TFM_ERR_INVALID_ARG);
    free(la), free(lb);
    kv_decoder_free(&a);
    kv_decoder_free(&b);
    seq2seq_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cache_post_norm),
        cmocka_unit_test(test_cache_pre_norm),
        cmocka_unit_test(test_reorder),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
