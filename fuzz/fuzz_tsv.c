/* fuzz_tsv.c — libFuzzer target: the training data of `tfm train`.
 *
 * The input is read with tsv_read_memory twice: with the default limits, and with a
 * small max_tokens. For a dataset that is read:
 *   - every source and target is non-empty valid UTF-8 without TAB or "\n", within
 *     the limits, as tsv.h promises;
 *   - tok_encode / tok_decode round-trip every source and target;
 *   - the batcher runs one epoch by sentences (with and without bucketing) and one by
 *     tokens, and every pair comes out exactly once, its tokens being its bytes, padded
 *     and masked as batch.h says.
 * A failure to read is fine; a crash, a sanitizer report, a leak or a broken invariant
 * (abort) is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "train/batch.h"
#include "train/tokenizer.h"
#include "train/tsv.h"

#define SMALL_MAX_TOKENS 12

static void check_text(const uint8_t *s, size_t n, size_t max_bytes) {
    const char *why;
    CHECK(n > 0 && n <= max_bytes);
    CHECK(utf8_check(s, n, &why) == n && why == NULL);
    CHECK(memchr(s, '\n', n) == NULL);
}

/* Encode with BOS and EOS, decode, compare. */
static void round_trip(const uint8_t *s, size_t n, int32_t *ids, uint8_t *back) {
    size_t k = tok_encode(s, n, true, true, ids);
    CHECK(k == n + 2 && ids[0] == TOK_BOS && ids[k - 1] == TOK_EOS);
    size_t len = 0;
    CHECK(tok_decode(ids, k, back, n, &len) == TFM_OK);
    CHECK(len == n && memcmp(s, back, n) == 0);
    if (n > 0) /* one byte too little room */
        CHECK(tok_decode(ids, k, back, n - 1, &len) == TFM_ERR_INVALID_ARG);
}

/* One epoch: every pair exactly once, with its bytes, padding and masks. */
static void one_epoch(const tsv_dataset *d, const batcher_config *cfg, uint64_t seed) {
    batcher b;
    tfm_status st = batcher_init(&b, d, cfg, seed);
    if (st != TFM_OK) {
        batcher_free(&b);
        return;
    }
    uint8_t *seen = calloc(d->n, 1);
    CHECK(seen);
    train_batch tb;
    size_t batches = 0, rows = 0;
    while (batcher_next(&b, &tb)) {
        batches++;
        CHECK(tb.n > 0);
        if (cfg->batch_size) CHECK(tb.n <= cfg->batch_size);
        if (cfg->max_tokens) CHECK(tb.n * (tb.S + tb.L) <= cfg->max_tokens);
        size_t src_tokens = 0, tgt_tokens = 0;
        for (size_t r = 0; r < tb.n; r++) {
            size_t p = tb.pairs[r], sl, tl;
            CHECK(p < d->n && !seen[p]);
            seen[p] = 1;
            const uint8_t *s = tsv_src(d, p, &sl), *t = tsv_tgt(d, p, &tl);
            CHECK(tb.src_len[r] == sl && tb.tgt_len[r] == tl + 1);
            CHECK(sl <= tb.S && tl + 1 <= tb.L);
            for (size_t j = 0; j < tb.S; j++) {
                int32_t want = j < sl ? TOK_BYTE0 + s[j] : TOK_PAD;
                CHECK(tb.src[r * tb.S + j] == want && tb.src_pad[r * tb.S + j] == (j >= sl));
            }
            for (size_t j = 0; j < tb.L; j++) {
                int32_t in = j == 0 ? TOK_BOS : j <= tl ? TOK_BYTE0 + t[j - 1] : TOK_PAD;
                int32_t out = j < tl ? TOK_BYTE0 + t[j] : j == tl ? TOK_EOS : TOK_PAD;
                CHECK(tb.tgt_in[r * tb.L + j] == in && tb.tgt_out[r * tb.L + j] == out);
                CHECK(tb.tgt_pad[r * tb.L + j] == (j > tl));
            }
            src_tokens += sl, tgt_tokens += tl + 1;
        }
        CHECK(tb.src_tokens == src_tokens && tb.tgt_tokens == tgt_tokens);
        rows += tb.n;
    }
    CHECK(rows == d->n && batches == batcher_num_batches(&b));
    uint64_t epoch;
    size_t index;
    batcher_position(&b, &epoch, &index);
    CHECK(index == batches);
    /* resuming halfway gives the rest of the epoch */
    CHECK(batcher_seek(&b, epoch, batches / 2) == TFM_OK);
    size_t rest = 0;
    while (batcher_next(&b, &tb)) rest++;
    CHECK(rest == batches - batches / 2);
    CHECK(batcher_seek(&b, epoch, batches + 1) == TFM_ERR_INVALID_ARG);
    free(seen);
    batcher_free(&b);
}

static void check_dataset(const tsv_dataset *d, const tsv_limits *lim, uint64_t seed) {
    CHECK(d->n > 0);
    size_t longest = 0, pair_max = 0; /* longest text; most tokens of one pair (S + L) */
    for (size_t i = 0; i < d->n; i++) {
        size_t sl = tsv_src_len(d, i), tl = tsv_tgt_len(d, i);
        pair_max = sl + tl + 1 > pair_max ? sl + tl + 1 : pair_max;
        longest = sl > longest ? sl : longest;
        longest = tl > longest ? tl : longest;
    }
    CHECK(longest == (d->max_src_len > d->max_tgt_len ? d->max_src_len : d->max_tgt_len));
    int32_t *ids = malloc((longest + 2) * sizeof *ids);
    uint8_t *back = malloc(longest + 1);
    CHECK(ids && back);
    size_t max_bytes = lim->max_line_bytes ? lim->max_line_bytes : SIZE_MAX;
    for (size_t i = 0; i < d->n; i++) {
        size_t sl, tl;
        const uint8_t *s = tsv_src(d, i, &sl), *t = tsv_tgt(d, i, &tl);
        check_text(s, sl, max_bytes);
        check_text(t, tl, max_bytes);
        CHECK(memchr(s, '\t', sl) == NULL && memchr(t, '\t', tl) == NULL);
        if (lim->max_tokens) CHECK(sl <= lim->max_tokens && tl + 1 <= lim->max_tokens);
        CHECK(sl <= d->max_src_len && tl <= d->max_tgt_len);
        round_trip(s, sl, ids, back);
        round_trip(t, tl, ids, back);
    }
    free(ids);
    free(back);

    batcher_config by_sent = {.batch_size = 1 + seed % 5, .max_tokens = 0, .bucket = 0};
    one_epoch(d, &by_sent, seed);
    by_sent.bucket = 2;
    one_epoch(d, &by_sent, seed + 1);
    batcher_config by_tok = {.batch_size = 0, .max_tokens = pair_max + seed % 64, .bucket = 0};
    one_epoch(d, &by_tok, seed);
    by_tok.bucket = 3, by_tok.batch_size = 4;
    one_epoch(d, &by_tok, seed + 2);
    /* a budget too small for the longest pair is refused, not cut */
    batcher_config too_small = {.batch_size = 0, .max_tokens = pair_max - 1, .bucket = 0};
    batcher b;
    CHECK(batcher_init(&b, d, &too_small, seed) == TFM_ERR_INVALID_ARG);
    batcher_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint64_t seed = size ? data[size - 1] : 0;
    tsv_limits lim;
    tsv_limits_default(&lim);
    tsv_dataset d;
    if (tsv_read_memory(data, size, "fuzz.tsv", &lim, &d) == TFM_OK) check_dataset(&d, &lim, seed);
    else CHECK(d.n == 0 && d.bytes == NULL && d.offsets == NULL);
    tsv_free(&d);

    lim.max_tokens = SMALL_MAX_TOKENS;
    if (tsv_read_memory(data, size, "fuzz.tsv", &lim, &d) == TFM_OK) check_dataset(&d, &lim, seed);
    tsv_free(&d);
    return 0;
}
