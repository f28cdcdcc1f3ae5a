/* test_search.c — greedy and beam search (src/decode/search.h) on a small seq2seq model
 * trained for a few dozen steps on string reversal, so that its distributions are
 * peaked: beam 1 equals greedy equals seq2seq_greedy (the recompute-based decoder);
 * batching, padding and the cache change nothing; beam hypotheses are sorted, their
 * log-probabilities agree with the training forward pass, and beat greedy's; max_len
 * holds; bad arguments are refused; attention records are distributions over the
 * source. */
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
#include "decode/search.h"
#include "support/check.h"
#include "train/data.h"
#include "train/trainer.h"

static seq2seq model;       /* trained once for the whole file */
static seq2seq untrained;   /* the same shape, freshly initialised: flat distributions */

enum { MAXLEN = 16, MAXOUT = MAXLEN - 1 };

/* ---- data ---- */

/* Sources as token rows (n, S), PAD-filled, with src_pad; S ≥ the longest. */
typedef struct batch {
    int64_t n, S;
    int32_t src[8 * MAXLEN];
    uint8_t pad[8 * MAXLEN];
} batch;

static void make_batch(batch *b, const char *const *texts, int64_t n, int64_t S) {
    assert_true(n <= 8 && S <= MAXLEN);
    b->n = n, b->S = S;
    for (int64_t i = 0; i < n; i++) {
        const size_t len = strlen(texts[i]);
        assert_true((int64_t)len <= S);
        for (int64_t s = 0; s < S; s++) {
            const bool real = s < (int64_t)len;
            b->src[i * S + s] = real ? TOK_BYTE0 + (uint8_t)texts[i][s] : TOK_PAD;
            b->pad[i * S + s] = !real;
        }
    }
}

static const char *const TEXTS[] = {"abcdef", "fa", "bbcaf", "eddcab", "c", "afefb"};
enum { NTEXTS = sizeof TEXTS / sizeof TEXTS[0] };

/* 400 reversal pairs of 1–8 letters from {a..f}, as a TSV in memory. */
static void reverse_tsv(tsv_dataset *d) {
    char *buf = malloc(400 * 20);
    assert_non_null(buf);
    size_t at = 0;
    tfm_rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 400; i++) {
        char s[8];
        const int len = 1 + (int)(rng_next(&r) % 8);
        for (int j = 0; j < len; j++) s[j] = (char)('a' + rng_next(&r) % 6);
        memcpy(buf + at, s, (size_t)len), at += (size_t)len;
        buf[at++] = '\t';
        for (int j = len - 1; j >= 0; j--) buf[at++] = s[j];
        buf[at++] = '\n';
    }
    assert_int_equal(tsv_read_memory(buf, at, "reverse", NULL, d), TFM_OK);
    free(buf);
}

static int setup(void **state) {
    train_options o;
    train_options_default(&o);
    o.model.d_model = 32, o.model.nhead = 2, o.model.dim_feedforward = 64, o.model.max_len = MAXLEN;
    o.model.dropout = 0.0f, o.label_smoothing = 0.0f; /* peaked distributions, quickly */
    o.batch_size = 32, o.steps = 240, o.warmup = 10, o.lr = 3e-3; /* loss ≈ 0.3, ~1 s */
    tsv_dataset d;
    reverse_tsv(&d);
    optimizer *opt;
    if (seq2seq_create(&model, &o.model) != TFM_OK) return -1;
    if (optim_create(&o.optim, model.num_floats, &opt) != TFM_OK) return -1;
    seq2seq_init(&model, o.seed);
    train_progress p = {0};
    train_io io = {0};
    tfm_status st = train_run(&o, &io, &d, NULL, &model, opt, &p);
    optim_free(opt);
    tsv_free(&d);
    if (st != TFM_OK) return -1;
    if (seq2seq_create(&untrained, &o.model) != TFM_OK) return -1;
    seq2seq_init(&untrained, 123);
    return 0;
}

static int teardown(void **state) {
    seq2seq_free(&model);
    seq2seq_free(&untrained);
    return 0;
}

/* ---- helpers ---- */

static search_config config(int64_t beam, int64_t nbest, double alpha) {
    search_config c;
    search_config_default(&c);
    c.beam = beam, c.nbest = nbest, c.length_penalty = alpha, c.max_len = MAXOUT;
    return c;
}

static void run(seq2seq *m, const batch *b, const search_config *c, search_hyp *out) {
    tfm_status st = search_translate(m, b->src, b->pad, b->n, b->S, c, out);
    if (st != TFM_OK) fail_msg("search_translate: %s", tfm_last_error());
}

/* Same tokens; log-probabilities and scores within a float sum's rounding. */
static void assert_same_hyp(const search_hyp *a, const search_hyp *b, double tol, const char *what) {
    if (a->len != b->len || memcmp(a->tokens, b->tokens, (size_t)a->len * sizeof(int32_t)))
        fail_msg("%s: different tokens (len %lld vs %lld)", what, (long long)a->len, (long long)b->len);
    if (fabs(a->logprob - b->logprob) > tol || fabs(a->score - b->score) > tol)
        fail_msg("%s: logprob %.9g vs %.9g, score %.9g vs %.9g", what, a->logprob, b->logprob,
                 a->score, b->score);
}

/* Σ log p of h's tokens given src i of b, by the training forward pass (eval mode,
 * no label smoothing): an independent check on the decoder's numbers. */
static double recomputed_logprob(seq2seq *m, const batch *b, int64_t i, const search_hyp *h) {
    int32_t in[MAXLEN], outt[MAXLEN];
    uint8_t tpad[MAXLEN] = {0};
    in[0] = TOK_BOS;
    for (int64_t j = 0; j < h->len; j++) {
        outt[j] = h->tokens[j];
        if (j + 1 < h->len) in[j + 1] = h->tokens[j];
    }
    seq2seq_batch sb = {.N = 1, .S = b->S, .L = h->len, .src = b->src + i * b->S,
                        .src_pad = b->pad + i * b->S, .tgt_in = in, .tgt_pad = tpad, .tgt_out = outt};
    ce_result r;
    assert_int_equal(seq2seq_eval_loss(m, &sb, 0.0f, &r), TFM_OK);
    /* a PAD among the tokens would not be counted: the model never emits one here */
    assert_int_equal(r.count, h->len);
    return -r.loss_sum;
}

/* ---- tests ---- */

/* (1) beam 1 (the beam code) = greedy = seq2seq_greedy, on the trained and an untrained
 * model (the latter rarely stops before max_len). */
static void test_beam1_equals_greedy(void **state) {
    seq2seq *models[] = {&model, &untrained};
    for (int mi = 0; mi < 2; mi++) {
        seq2seq *m = models[mi];
        batch b;
        make_batch(&b, TEXTS, NTEXTS, 8);
        search_config c = config(1, 1, 0.0);
        search_hyp g[NTEXTS], k1[NTEXTS];
        assert_int_equal(search_greedy(m, b.src, b.pad, b.n, b.S, &c, g), TFM_OK);
        assert_int_equal(search_beam(m, b.src, b.pad, b.n, b.S, &c, k1), TFM_OK);
        int32_t ref[NTEXTS * MAXOUT];
        assert_int_equal(seq2seq_greedy(m, b.src, b.pad, b.n, b.S, MAXOUT, ref), TFM_OK);
        int eos = 0;
        for (int64_t i = 0; i < b.n; i++) {
            /* the same code path's numbers: bit-identical */
            assert_int_equal(g[i].len, k1[i].len);
            assert_memory_equal(g[i].tokens, k1[i].tokens, (size_t)g[i].len * sizeof(int32_t));
            assert_true(g[i].logprob == k1[i].logprob && g[i].score == k1[i].score);
            for (int64_t j = 0; j < MAXOUT; j++)
                assert_int_equal(ref[i * MAXOUT + j], j < g[i].len ? g[i].tokens[j] : TOK_PAD);
            assert_true(g[i].len == MAXOUT || g[i].tokens[g[i].len - 1] == TOK_EOS);
            eos += g[i].tokens[g[i].len - 1] == TOK_EOS;
        }
        if (m == &model) {
            assert_int_equal(eos, NTEXTS); /* trained: every output stops */
            /* and it learnt something: "fa" reversed */
            assert_int_equal(g[1].len, 3);
            assert_int_equal(g[1].tokens[0], TOK_BYTE0 + 'a');
            assert_int_equal(g[1].tokens[1], TOK_BYTE0 + 'f');
        }
        search_hyp_free(g, b.n);
        search_hyp_free(k1, b.n);
    }
}

/* (2) several sources of different lengths batched = each alone without padding;
 * (3) more padding (a longer S) changes nothing. For greedy and beam 3. */
static void test_batching_and_padding(void **state) {
    const int64_t beams[] = {1, 3};
    for (int bi = 0; bi < 2; bi++) {
        const int64_t K = beams[bi];
        search_config c = config(K, K, 0.6);
        batch all, wide;
        make_batch(&all, TEXTS, NTEXTS, 6);
        make_batch(&wide, TEXTS, NTEXTS, 11);
        search_hyp *ha = calloc((size_t)(NTEXTS * K), sizeof *ha);
        search_hyp *hw = calloc((size_t)(NTEXTS * K), sizeof *hw);
        assert_non_null(ha), assert_non_null(hw);
        run(&model, &all, &c, ha);
        run(&model, &wide, &c, hw);
        for (int64_t i = 0; i < NTEXTS; i++) {
            batch one;
            make_batch(&one, &TEXTS[i], 1, (int64_t)strlen(TEXTS[i]));
            search_hyp h1[3];
            run(&model, &one, &c, h1);
            for (int64_t q = 0; q < K; q++) {
                assert_same_hyp(&h1[q], &ha[i * K + q], 1e-4, "batched vs alone");
                assert_same_hyp(&ha[i * K + q], &hw[i * K + q], 1e-4, "extra padding");
            }
            search_hyp_free(h1, K);
        }
        search_hyp_free(ha, NTEXTS * K);
        search_hyp_free(hw, NTEXTS * K);
        free(ha), free(hw);
    }
}

/* (4) beam K: nbest sorted by score, distinct, scores = logprob / lp(len), logprob =
 * the training forward's Σ log p, and the best at least greedy's score. */
static void test_beam_hypotheses(void **state) {
    const double alphas[] = {0.0, 0.6, 1.0};
    seq2seq *models[] = {&model, &untrained};
    for (int mi = 0; mi < 2; mi++)
        for (int ai = 0; ai < 3; ai++) {
            seq2seq *m = models[mi];
            const int64_t K = 4;
            const double alpha = alphas[ai];
            batch b;
            make_batch(&b, TEXTS, NTEXTS, 7);
            search_config c = config(K, K, alpha), cg = config(1, 1, alpha);
            search_hyp h[NTEXTS * 4], g[NTEXTS];
            run(m, &b, &c, h);
            run(m, &b, &cg, g);
            int better = 0; /* sources where the beam found more than greedy did */
            for (int64_t i = 0; i < NTEXTS; i++) {
                const search_hyp *hi = h + i * K;
                for (int64_t q = 0; q < K; q++) {
                    assert_true(hi[q].len >= 1 && hi[q].len <= MAXOUT);
                    assert_true(hi[q].len == MAXOUT || hi[q].tokens[hi[q].len - 1] == TOK_EOS);
                    for (int64_t j = 0; j + 1 < hi[q].len; j++) assert_int_not_equal(hi[q].tokens[j], TOK_EOS);
                    if (q > 0) assert_true(hi[q].score <= hi[q - 1].score);
                    for (int64_t p = 0; p < q; p++)
                        assert_false(hi[p].len == hi[q].len &&
                                     !memcmp(hi[p].tokens, hi[q].tokens, (size_t)hi[q].len * sizeof(int32_t)));
                    const double lp = search_length_penalty(hi[q].len, alpha);
                    assert_true(fabs(hi[q].score - hi[q].logprob / lp) <= 1e-12 * fabs(hi[q].score));
                    const double want = recomputed_logprob(m, &b, i, &hi[q]);
                    if (fabs(hi[q].logprob - want) > 1e-4 + 1e-5 * fabs(want))
                        fail_msg("source %lld hyp %lld: logprob %.7f, recomputed %.7f", (long long)i,
                                 (long long)q, hi[q].logprob, want);
                }
                /* not a theorem of beam search, but true of a peaked model; greedy's
                 * numbers come from a batch of other rows: equal up to rounding */
                if (mi == 0 && hi[0].score < g[i].score - 1e-5)
                    fail_msg("alpha %g source %lld: beam best %.6f < greedy %.6f", alpha, (long long)i,
                             hi[0].score, g[i].score);
                better += hi[0].score > g[i].score + 1e-5;
                const double want = recomputed_logprob(m, &b, i, &g[i]);
                assert_true(fabs(g[i].logprob - want) <= 1e-4 + 1e-5 * fabs(want));
            }
            /* the trained model prefers "fabcb" to greedy's "facbb" for "bbcaf": the test
             * sees beam search do more than greedy */
            if (mi == 0) assert_true(better >= 1);
            /* nbest < beam: the first nbest of the same search */
            search_config c2 = config(K, 2, alpha);
            search_hyp h2[NTEXTS * 2];
            run(m, &b, &c2, h2);
            for (int64_t i = 0; i < NTEXTS; i++)
                for (int64_t q = 0; q < 2; q++) assert_same_hyp(&h2[i * 2 + q], &h[i * K + q], 0.0, "nbest");
            search_hyp_free(h, NTEXTS * K);
            search_hyp_free(h2, NTEXTS * 2);
            search_hyp_free(g, NTEXTS);
        }
}

/* (5) decoding by recomputation (no_cache) gives the cached decoder's outputs. */
static void test_no_cache(void **state) {
    const int64_t beams[] = {1, 3};
    for (int bi = 0; bi < 2; bi++) {
        const int64_t K = beams[bi];
        batch b;
        make_batch(&b, TEXTS, NTEXTS, 8);
        search_config c = config(K, K, 0.6), cn = c;
        cn.no_cache = true;
        search_hyp h[NTEXTS * 3], hn[NTEXTS * 3];
        run(&model, &b, &c, h);
        run(&model, &b, &cn, hn);
        for (int64_t q = 0; q < NTEXTS * K; q++) assert_same_hyp(&h[q], &hn[q], 1e-4, "no_cache");
        search_hyp_free(h, NTEXTS * K);
        search_hyp_free(hn, NTEXTS * K);
    }
}

/* (6) no hypothesis is longer than max_len; a too-large max_len is clamped to the
 * model's room after BOS. */
static void test_max_len(void **state) {
    batch b;
    make_batch(&b, TEXTS, NTEXTS, 8);
    for (int64_t K = 1; K <= 3; K += 2)
        for (int64_t ml = 1; ml <= 4; ml++) {
            search_config c = config(K, K, 0.6);
            c.max_len = ml;
            search_hyp h[NTEXTS * 3];
            run(&model, &b, &c, h);
            for (int64_t q = 0; q < NTEXTS * K; q++) {
                assert_true(h[q].len >= 1 && h[q].len <= ml);
                assert_true(h[q].len == ml || h[q].tokens[h[q].len - 1] == TOK_EOS);
            }
            /* "abcdef" reversed needs 7 tokens: cut at ml, unfinished */
            assert_int_equal(h[0].len, ml);
            assert_int_not_equal(h[0].tokens[ml - 1], TOK_EOS);
            search_hyp_free(h, NTEXTS * K);
        }
    search_config c = config(2, 2, 0.0);
    c.max_len = 1000;
    search_hyp h[NTEXTS * 2];
    run(&untrained, &b, &c, h);
    for (int64_t q = 0; q < NTEXTS * 2; q++) assert_true(h[q].len <= MAXOUT);
    search_hyp_free(h, NTEXTS * 2);
}

/* (7) bad arguments: TFM_ERR_INVALID_ARG, and nothing to free. */
static void test_bad_arguments(void **state) {
    batch b;
    make_batch(&b, TEXTS, 2, 6);
    search_hyp h[8];
    struct {
        int64_t beam, nbest, max_len;
        double alpha;
    } bad[] = {{0, 1, 5, 0.0},  {2, 3, 5, 0.0},  {1, 2, 5, 0.0},          {2, 0, 5, 0.0},
               {2, 2, 0, 0.0},  {1, 1, 0, 0.0},  {2, 2, -3, 0.0},         {259, 1, 5, 0.0},
               {-1, 1, 5, 0.0}, {2, 1, 5, NAN},  {2, 1, 5, INFINITY}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        search_config c = config(bad[k].beam, bad[k].nbest, bad[k].alpha);
        c.max_len = bad[k].max_len;
        memset(h, 0, sizeof h);
        if (search_translate(&model, b.src, b.pad, b.n, b.S, &c, h) != TFM_ERR_INVALID_ARG)
            fail_msg("case %zu accepted", k);
        for (int q = 0; q < 8; q++) assert_true(h[q].tokens == NULL && h[q].attn == NULL);
    }
    search_config c = config(2, 1, 0.0);
    assert_int_equal(search_translate(&model, NULL, b.pad, b.n, b.S, &c, h), TFM_ERR_INVALID_ARG);
    assert_int_equal(search_translate(&model, b.src, b.pad, 0, b.S, &c, h), TFM_ERR_INVALID_ARG);
    assert_int_equal(search_translate(&model, b.src, b.pad, b.n, b.S, NULL, h), TFM_ERR_INVALID_ARG);
    assert_int_equal(search_translate(&model, b.src, b.pad, b.n, b.S, &c, NULL), TFM_ERR_INVALID_ARG);
    /* a source longer than the model's max_len: the decoder's shape error */
    int32_t longsrc[MAXLEN + 1];
    uint8_t longpad[MAXLEN + 1] = {0};
    for (int s = 0; s <= MAXLEN; s++) longsrc[s] = TOK_BYTE0 + 'a';
    assert_int_equal(search_translate(&model, longsrc, longpad, 1, MAXLEN + 1, &c, h), TFM_ERR_SHAPE);
    search_hyp_free(h, 8); /* zeroed: a no-op */
}

/* Attention records: (Ly, len, S), each row a distribution over the real source
 * positions (padding gets 0); beam 1 with alpha 0 records exactly greedy's. */
static void test_attention(void **state) {
    const int64_t Ly = model.tr_cfg.decoder.num_layers;
    batch b;
    make_batch(&b, TEXTS, NTEXTS, 9);
    const int64_t S = b.S;
    for (int64_t K = 1; K <= 3; K += 2) {
        search_config c = config(K, K, 0.6);
        c.record_attn = true;
        search_hyp h[NTEXTS * 3];
        run(&model, &b, &c, h);
        for (int64_t i = 0; i < NTEXTS; i++)
            for (int64_t q = 0; q < K; q++) {
                const search_hyp *x = &h[i * K + q];
                assert_non_null(x->attn);
                for (int64_t r = 0; r < Ly * x->len; r++) {
                    double sum = 0;
                    for (int64_t s = 0; s < S; s++) {
                        const float w = x->attn[r * S + s];
                        assert_true(w >= 0.0f && w <= 1.0f);
                        if (b.pad[i * S + s]) assert_true(w == 0.0f);
                        sum += w;
                    }
                    assert_true(fabs(sum - 1.0) < 1e-5);
                }
            }
        search_hyp_free(h, NTEXTS * K);
    }
    search_config c0 = config(1, 1, 0.0);
    c0.record_attn = true;
    search_hyp g[NTEXTS], k1[NTEXTS];
    assert_int_equal(search_greedy(&model, b.src, b.pad, b.n, b.S, &c0, g), TFM_OK);
    assert_int_equal(search_beam(&model, b.src, b.pad, b.n, b.S, &c0, k1), TFM_OK);
    for (int64_t i = 0; i < NTEXTS; i++) {
        assert_int_equal(g[i].len, k1[i].len);
        assert_memory_equal(g[i].attn, k1[i].attn, (size_t)(Ly * g[i].len * S) * sizeof(float));
    }
    search_hyp_free(g, NTEXTS);
    search_hyp_free(k1, NTEXTS);
}

/* The attention records are the same with and without the cache. */
/* Attention maps come from the cached decoder; asking for them without the cache is
 * refused (the recomputing decoder does not record them), not answered with garbage. */
static void test_attention_no_cache(void **state) {
    batch b;
    make_batch(&b, TEXTS, NTEXTS, 9);
    search_config c = config(1, 1, 0.0);
    c.record_attn = true, c.no_cache = true;
    search_hyp h[NTEXTS];
    assert_int_equal(search_translate(&model, b.src, b.pad, b.n, b.S, &c, h), TFM_ERR_UNSUPPORTED);
    assert_non_null(strstr(tfm_last_error(), "cache"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_beam1_equals_greedy), cmocka_unit_test(test_batching_and_padding),
        cmocka_unit_test(test_beam_hypotheses),     cmocka_unit_test(test_no_cache),
        cmocka_unit_test(test_max_len),             cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_attention),           cmocka_unit_test(test_attention_no_cache),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
