/* test_data.c — the training data pipeline: byte tokenizer, TSV reader (every error
 * names file and line), and batches (budgets, coverage, determinism, resume, padding). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/check.h"
#include "train/data.h"

/* ---- tokenizer ---- */

static void round_trip(const void *bytes, size_t n) {
    int32_t ids[300];
    uint8_t back[300];
    size_t len = 99;
    assert_true(n + 2 <= 300);
    assert_int_equal(tok_encode(bytes, n, false, false, ids), n);
    for (size_t i = 0; i < n; i++) assert_int_equal(ids[i], 3 + ((const uint8_t *)bytes)[i]);
    assert_int_equal(tok_decode(ids, n, back, n, &len), TFM_OK);
    assert_int_equal(len, n);
    assert_memory_equal(back, bytes, n);

    assert_int_equal(tok_encode(bytes, n, true, true, ids), n + 2);
    assert_int_equal(ids[0], TOK_BOS);
    assert_int_equal(ids[n + 1], TOK_EOS);
    assert_int_equal(tok_decode(ids, n + 2, back, n + 2, &len), TFM_OK);
    assert_int_equal(len, n);
    assert_memory_equal(back, bytes, n);
}

static void test_tokenizer(void **state) {
    const char *utf8 = "h\xC3\xA9llo, w\xC3\xB6rld \xE2\x80\x94 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
                       "\xF0\x9F\x8E\x89"; /* héllo, wörld — 日本語 🎉 */
    round_trip(utf8, strlen(utf8));
    round_trip("", 0);
    uint8_t all[256];
    for (int i = 0; i < 256; i++) all[i] = (uint8_t)i;
    round_trip(all, 256);
    assert_int_equal(TOK_VOCAB, 259);
    assert_int_equal(TOK_BYTE0 + 255, TOK_VOCAB - 1);

    /* PAD and BOS skipped, EOS ends the text; what follows EOS is not looked at. */
    int32_t ids[] = {TOK_BOS, 3 + 'a', TOK_PAD, 3 + 'b', TOK_EOS, 3 + 'c', 9999};
    uint8_t out[8];
    size_t len;
    assert_int_equal(tok_decode(ids, 7, out, sizeof out, &len), TFM_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(out, "ab", 2);

    int32_t bad[] = {3 + 'a', 3 + 'b', 259};
    assert_int_equal(tok_decode(bad, 3, out, sizeof out, &len), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "259 at position 2"));
    bad[2] = -1;
    assert_int_equal(tok_decode(bad, 3, out, sizeof out, &len), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "-1 at position 2"));
    bad[2] = 3 + 'c';
    assert_int_equal(tok_decode(bad, 3, out, 2, &len), TFM_ERR_INVALID_ARG); /* cap too small */
    assert_int_equal(tok_decode(bad, 3, out, 3, &len), TFM_OK);
    assert_int_equal(len, 3);
}

/* ---- TSV reader ---- */

static void expect_pair(const tsv_dataset *d, size_t i, const char *src, const char *tgt) {
    size_t sl, tl;
    const uint8_t *s = tsv_src(d, i, &sl), *t = tsv_tgt(d, i, &tl);
    assert_int_equal(sl, strlen(src));
    assert_memory_equal(s, src, sl);
    assert_int_equal(tl, strlen(tgt));
    assert_memory_equal(t, tgt, tl);
}

static void test_tsv_reads(void **state) {
    /* LF, CRLF, blank lines (also "\r\n" alone), a lone CR inside the text kept, UTF-8,
     * and a last line without newline. */
    const char *text = "a\tb\n"
                       "hello\tw\xC3\xB6rld\r\n"
                       "\n"
                       "\r\n"
                       "x\ry\tz\n"
                       "\xE6\x97\xA5\xE6\x9C\xAC\t\xF0\x9F\x8E\x89";
    tsv_dataset d;
    assert_int_equal(tsv_read_memory(text, strlen(text), "t.tsv", NULL, &d), TFM_OK);
    assert_int_equal(d.n, 4);
    expect_pair(&d, 0, "a", "b");
    expect_pair(&d, 1, "hello", "w\xC3\xB6rld");
    expect_pair(&d, 2, "x\ry", "z");
    expect_pair(&d, 3, "\xE6\x97\xA5\xE6\x9C\xAC", "\xF0\x9F\x8E\x89");
    assert_int_equal(d.max_src_len, 6);
    assert_int_equal(d.max_tgt_len, 6);
    /* Compacted: all bytes back to back. */
    assert_int_equal(d.offsets[0], 0);
    assert_int_equal(d.offsets[2 * d.n], 1 + 1 + 5 + 6 + 3 + 1 + 6 + 4);
    tsv_free(&d);
    assert_null(d.bytes);

    /* Byte order mark skipped; trailing newline; NUL bytes are text. */
    const char bom[] = "\xEF\xBB\xBF" "src\ttgt\n" "n\0l\tz\n";
    assert_int_equal(tsv_read_memory(bom, sizeof bom - 1, "bom.tsv", NULL, &d), TFM_OK);
    assert_int_equal(d.n, 2);
    expect_pair(&d, 0, "src", "tgt");
    size_t sl;
    assert_memory_equal(tsv_src(&d, 1, &sl), "n\0l", 3);
    assert_int_equal(sl, 3);
    tsv_free(&d);

    /* Limits are inclusive: a line of exactly max_line_bytes (without CRLF) and sides of
     * exactly max_tokens are accepted. */
    tsv_limits lim = {.max_line_bytes = 9, .max_tokens = 5};
    const char *edge = "01234\t678\r\n";
    assert_int_equal(tsv_read_memory(edge, strlen(edge), "e.tsv", &lim, &d), TFM_OK);
    tsv_free(&d);

    /* From a file, and a file that is not there. */
    char path[512];
    tmp_path(path, sizeof path, "pairs.tsv");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("one\tuno\r\ntwo\tdos", f);
    fclose(f);
    assert_int_equal(tsv_read_file(path, NULL, &d), TFM_OK);
    assert_int_equal(d.n, 2);
    expect_pair(&d, 0, "one", "uno");
    expect_pair(&d, 1, "two", "dos");
    tsv_free(&d);
    /* Larger than the reader's first 64 KiB buffer, so it grows. */
    tmp_path(path, sizeof path, "big.tsv");
    f = fopen(path, "wb");
    assert_non_null(f);
    for (int i = 0; i < 20000; i++) fprintf(f, "line %05d\tt%d\n", i, i % 7);
    fclose(f);
    assert_int_equal(tsv_read_file(path, NULL, &d), TFM_OK);
    assert_int_equal(d.n, 20000);
    expect_pair(&d, 19999, "line 19999", "t0");
    tsv_free(&d);
    tmp_path(path, sizeof path, "missing.tsv");
    assert_int_equal(tsv_read_file(path, NULL, &d), TFM_ERR_IO);
    assert_non_null(strstr(tfm_last_error(), path));
    assert_int_equal(d.n, 0);
    tmp_path(path, sizeof path, "");
    assert_int_equal(tsv_read_file(path, NULL, &d), TFM_ERR_IO); /* a directory */
    assert_non_null(strstr(tfm_last_error(), path));
}

typedef struct bad_case {
    const char *text;
    size_t len; /* 0: strlen(text) */
    size_t max_line, max_tokens; /* 0: defaults */
    const char *where;  /* "t.tsv:LINE:" */
    const char *what;   /* part of the message */
} bad_case;

static void test_tsv_errors(void **state) {
    const bad_case cases[] = {
        {"a\tb\nno tab here\n", 0, 0, 0, "t.tsv:2: ", "no TAB separating source and target"},
        {"a\tb\tc\n", 0, 0, 0, "t.tsv:1: ", "more than one TAB (bytes 2 and 4)"},
        {"a\tb\n\xC0\xAF\tc\n", 0, 0, 0, "t.tsv:2: ", "invalid UTF-8 at byte 1: overlong"},
        {"x\xE0\x80\xAF\tc", 0, 0, 0, "t.tsv:1: ", "invalid UTF-8 at byte 2: overlong"},
        {"\xF0\x80\x80\xAF\tc", 0, 0, 0, "t.tsv:1: ", "at byte 1: overlong"},
        {"ok\tok\nab\t\xED\xA0\x80\n", 0, 0, 0, "t.tsv:2: ", "at byte 4: UTF-16 surrogate"},
        {"a\t\xE6\x97\n", 0, 0, 0, "t.tsv:1: ", "at byte 3: truncated multi-byte sequence"},
        {"\xE6\x97\tb\n", 0, 0, 0, "t.tsv:1: ", "at byte 1: truncated"},
        {"a\tb\nc\t\xF0\x9F\x8E", 0, 0, 0, "t.tsv:2: ", "at byte 3: truncated"},
        {"\x80" "a\tb", 0, 0, 0, "t.tsv:1: ", "continuation byte without a lead byte"},
        {"\xF4\x90\x80\x80\tb", 0, 0, 0, "t.tsv:1: ", "above U+10FFFF"},
        {"a\t\xFF", 0, 0, 0, "t.tsv:1: ", "never appears in UTF-8"},
        {"a\t\xF5\x80\x80\x80", 0, 0, 0, "t.tsv:1: ", "at byte 3: byte that never appears"},
        {"a\t\xC1\xBF", 0, 0, 0, "t.tsv:1: ", "at byte 3: overlong"},
        {"a\tb\n\tb\n", 0, 0, 0, "t.tsv:2: ", "empty source"},
        {"a\t\n", 0, 0, 0, "t.tsv:1: ", "empty target"},
        {"a\tb\r\na\t\r\n", 0, 0, 0, "t.tsv:2: ", "empty target"},
        {"\n\na\tb\n\r\nbad\n", 0, 0, 0, "t.tsv:5: ", "no TAB"}, /* blank lines counted */
        {"a\tb\n0123456\t89\n", 0, 8, 0, "t.tsv:2: ", "line is 10 bytes, longer than the maximum 8"},
        {"0123\t5678\r\n", 0, 8, 0, "t.tsv:1: ", "line is 9 bytes"},
        {"abcde\tx\n", 0, 0, 4, "t.tsv:1: ", "source is 5 tokens, more than the maximum 4"},
        {"a\tabcd\n", 0, 0, 4, "t.tsv:1: ", "target is 5 tokens with BOS"},
        {"", 0, 0, 0, "t.tsv: ", "empty file"},
        {"\xEF\xBB\xBF", 0, 0, 0, "t.tsv: ", "empty file"},
        {"\n\r\n\n", 0, 0, 0, "t.tsv: ", "only blank lines"},
    };
    /* The default line limit, 4096 bytes. */
    size_t big_len = TSV_DEFAULT_MAX_LINE_BYTES + 1;
    char *big = malloc(big_len + 1);
    assert_non_null(big);
    memset(big, 'x', big_len);
    big[10] = '\t';
    big[big_len] = '\0';

    for (size_t i = 0; i <= sizeof cases / sizeof cases[0]; i++) {
        bad_case c = i < sizeof cases / sizeof cases[0]
                         ? cases[i]
                         : (bad_case){big, 0, 0, 0, "t.tsv:1: ", "line is 4097 bytes"};
        tsv_limits lim;
        tsv_limits_default(&lim);
        if (c.max_line) lim.max_line_bytes = c.max_line;
        if (c.max_tokens) lim.max_tokens = c.max_tokens;
        tsv_dataset d;
        tfm_status s = tsv_read_memory(c.text, c.len ? c.len : strlen(c.text), "t.tsv", &lim, &d);
        if (s != TFM_ERR_FORMAT || !strstr(tfm_last_error(), c.where) ||
            !strstr(tfm_last_error(), c.what))
            fail_msg("case %zu: status %d, message '%s'; want FORMAT, '%s' and '%s'", i, (int)s,
                     tfm_last_error(), c.where, c.what);
        assert_null(d.bytes);
        assert_null(d.offsets);
        assert_int_equal(d.n, 0);
    }
    free(big);
}

/* ---- batches ---- */

/* n pairs with lengths from 1 to maxlen on each side, deterministic. */
static void make_dataset(tsv_dataset *d, size_t n, size_t maxlen, uint32_t seed) {
    size_t cap = n * (2 * maxlen + 2) + 1, len = 0;
    char *text = malloc(cap);
    assert_non_null(text);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        for (int side = 0; side < 2; side++) {
            x = x * 1664525u + 1013904223u;
            size_t l = 1 + (x >> 8) % maxlen;
            for (size_t j = 0; j < l; j++) text[len++] = (char)('a' + (i + j * 7 + (size_t)side) % 26);
            text[len++] = side ? '\n' : '\t';
        }
    }
    assert_int_equal(tsv_read_memory(text, len, "gen.tsv", NULL, d), TFM_OK);
    assert_int_equal(d->n, n);
    free(text);
}

/* Everything about one batch: shapes, ids against the dataset, padding and masks. */
static void check_batch(const tsv_dataset *d, const train_batch *b) {
    assert_true(b->n > 0);
    size_t S = 0, L = 0, st = 0, tt = 0;
    for (size_t r = 0; r < b->n; r++) {
        size_t sl, tl;
        const uint8_t *src = tsv_src(d, b->pairs[r], &sl);
        const uint8_t *tgt = tsv_tgt(d, b->pairs[r], &tl);
        assert_int_equal(b->src_len[r], sl);
        assert_int_equal(b->tgt_len[r], tl + 1);
        if (sl > S) S = sl;
        if (tl + 1 > L) L = tl + 1;
        st += sl, tt += tl + 1;
        const int32_t *s = b->src + r * b->S, *ti = b->tgt_in + r * b->L, *to = b->tgt_out + r * b->L;
        const uint8_t *sp = b->src_pad + r * b->S, *tp = b->tgt_pad + r * b->L;
        for (size_t j = 0; j < b->S; j++) {
            assert_int_equal(s[j], j < sl ? 3 + src[j] : TOK_PAD);
            assert_int_equal(sp[j], j < sl ? 0 : 1);
        }
        for (size_t j = 0; j < b->L; j++) {
            int32_t in = j == 0 ? TOK_BOS : j <= tl ? 3 + tgt[j - 1] : TOK_PAD;
            int32_t out = j < tl ? 3 + tgt[j] : j == tl ? TOK_EOS : TOK_PAD;
            assert_int_equal(ti[j], in);
            assert_int_equal(to[j], out);
            assert_int_equal(tp[j], j <= tl ? 0 : 1);
        }
        uint8_t back[512];
        size_t n;
        assert_int_equal(tok_decode(to, b->L, back, sizeof back, &n), TFM_OK);
        assert_int_equal(n, tl);
        assert_memory_equal(back, tgt, tl);
    }
    assert_int_equal(b->S, S);
    assert_int_equal(b->L, L);
    assert_int_equal(b->src_tokens, st);
    assert_int_equal(b->tgt_tokens, tt);
}

/* FNV-1a over everything a batch holds. */
static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t batch_hash(const train_batch *b) {
    uint64_t h = 0xcbf29ce484222325ULL;
    size_t dims[3] = {b->n, b->S, b->L};
    h = fnv(h, dims, sizeof dims);
    h = fnv(h, b->pairs, b->n * sizeof *b->pairs);
    h = fnv(h, b->src, b->n * b->S * sizeof *b->src);
    h = fnv(h, b->tgt_in, b->n * b->L * sizeof *b->tgt_in);
    h = fnv(h, b->tgt_out, b->n * b->L * sizeof *b->tgt_out);
    h = fnv(h, b->src_pad, b->n * b->S);
    h = fnv(h, b->tgt_pad, b->n * b->L);
    return h;
}

typedef struct epoch_log {
    size_t nb;          /* batches */
    uint64_t hash[4096]; /* per batch */
    size_t order[4096];  /* pair indices in the order returned */
    size_t size[4096];   /* rows per batch */
    size_t padded;      /* Σ N·(S + L) */
} epoch_log;

/* Run the rest of the current epoch: check each batch, the budget and that every pair
 * appears once (when starting from index 0). */
static void run_epoch(batcher *b, const batcher_config *c, epoch_log *log, bool whole) {
    const tsv_dataset *d = b->data;
    unsigned char *seen = calloc(d->n, 1);
    assert_non_null(seen);
    memset(log, 0, sizeof *log);
    size_t k = 0, expect_nb = batcher_num_batches(b);
    uint64_t e0, e;
    size_t i0, i;
    batcher_position(b, &e0, &i0);
    const int32_t *buf = NULL;
    train_batch t;
    while (batcher_next(b, &t)) {
        check_batch(d, &t);
        if (!buf) buf = t.src;
        assert_ptr_equal(t.src, buf); /* the same buffers every time: no allocation */
        if (c->max_tokens) {
            assert_true(t.n * (t.S + t.L) <= c->max_tokens);
            if (c->batch_size) assert_true(t.n <= c->batch_size);
        } else {
            assert_true(t.n <= c->batch_size);
        }
        for (size_t r = 0; r < t.n; r++) {
            assert_int_equal(seen[t.pairs[r]], 0);
            seen[t.pairs[r]] = 1;
            log->order[k++] = t.pairs[r];
        }
        log->padded += t.n * (t.S + t.L);
        log->size[log->nb] = t.n;
        log->hash[log->nb++] = batch_hash(&t);
        batcher_position(b, &e, &i);
        assert_int_equal(e, e0);
        assert_int_equal(i, i0 + log->nb);
    }
    assert_false(batcher_next(b, &t)); /* stays at the end */
    assert_int_equal(i0 + log->nb, expect_nb);
    if (whole) {
        assert_int_equal(k, d->n);
        for (size_t j = 0; j < d->n; j++) assert_int_equal(seen[j], 1);
    }
    free(seen);
}

static bool same_order(const epoch_log *a, const epoch_log *b, size_t n) {
    return a->nb == b->nb && !memcmp(a->order, b->order, n * sizeof a->order[0]) &&
           !memcmp(a->hash, b->hash, a->nb * sizeof a->hash[0]);
}

static epoch_log logs[4];

static void test_batch_by_sentences(void **state) {
    tsv_dataset d;
    make_dataset(&d, 103, 40, 1);
    for (size_t bucket = 0; bucket <= 3; bucket += 3) {
        batcher_config c = {.batch_size = 8, .bucket = bucket};
        batcher a, b;
        assert_int_equal(batcher_init(&a, &d, &c, 42), TFM_OK);
        assert_int_equal(batcher_init(&b, &d, &c, 42), TFM_OK);
        /* 103 = 12·8 + 7; with buckets of 24 pairs, 4 chunks of 3 batches and one of 7. */
        assert_int_equal(batcher_num_batches(&a), 13);
        run_epoch(&a, &c, &logs[0], true);
        run_epoch(&b, &c, &logs[1], true);
        assert_true(same_order(&logs[0], &logs[1], d.n)); /* same seed, same batches */
        size_t full = 0;
        for (size_t k = 0; k < logs[0].nb; k++) full += logs[0].size[k] == 8;
        assert_int_equal(full, 12); /* and one of 7: the last, without bucketing */
        if (!bucket) assert_int_equal(logs[0].size[12], 7);
        batcher_epoch(&a, 1);
        run_epoch(&a, &c, &logs[2], true);
        assert_false(same_order(&logs[0], &logs[2], d.n)); /* another epoch, another order */
        batcher_epoch(&a, 0); /* back to epoch 0: the same as before */
        run_epoch(&a, &c, &logs[3], true);
        assert_true(same_order(&logs[0], &logs[3], d.n));
        batcher_free(&b);
        assert_int_equal(batcher_init(&b, &d, &c, 43), TFM_OK);
        run_epoch(&b, &c, &logs[1], true);
        assert_false(same_order(&logs[0], &logs[1], d.n)); /* another seed */
        batcher_free(&a);
        batcher_free(&b);
    }
    tsv_free(&d);
}

static void test_batch_by_tokens(void **state) {
    tsv_dataset d;
    make_dataset(&d, 500, 40, 2);
    size_t padded[2];
    for (int bucket = 0; bucket <= 1; bucket++) {
        batcher_config c = {.max_tokens = 300, .bucket = bucket ? 10 : 0};
        batcher a;
        assert_int_equal(batcher_init(&a, &d, &c, 7), TFM_OK);
        padded[bucket] = 0;
        for (uint64_t e = 0; e < 3; e++) {
            batcher_epoch(&a, e);
            run_epoch(&a, &c, &logs[0], true);
            padded[bucket] += logs[0].padded;
        }
        batcher_free(&a);
        /* A sentence cap as well. */
        c.batch_size = 3;
        assert_int_equal(batcher_init(&a, &d, &c, 7), TFM_OK);
        run_epoch(&a, &c, &logs[0], true);
        batcher_free(&a);
    }
    /* Sorting by length within chunks cuts the padding (here by far more than 10%). */
    assert_true(padded[1] * 10 < padded[0] * 9);

    /* A budget exactly the size of the largest pair works (each such pair alone). */
    size_t most = 0;
    for (size_t i = 0; i < d.n; i++) {
        size_t t = tsv_src_len(&d, i) + tsv_tgt_len(&d, i) + 1;
        if (t > most) most = t;
    }
    batcher_config c = {.max_tokens = most};
    batcher a;
    assert_int_equal(batcher_init(&a, &d, &c, 7), TFM_OK);
    run_epoch(&a, &c, &logs[0], true);
    batcher_free(&a);
    tsv_free(&d);
}

/* Bucketed batches are shuffled: with one chunk holding the whole dataset, returning
 * them in the order cut would make lengths rise through the epoch. */
static void test_bucket_shuffle(void **state) {
    tsv_dataset d;
    make_dataset(&d, 200, 40, 4);
    batcher_config c = {.batch_size = 4, .bucket = 1000};
    batcher b;
    assert_int_equal(batcher_init(&b, &d, &c, 5), TFM_OK);
    train_batch t;
    size_t prev = 0, rises = 0, falls = 0;
    while (batcher_next(&b, &t)) {
        check_batch(&d, &t);
        if (t.S > prev) rises++;
        if (t.S < prev) falls++;
        prev = t.S;
        for (size_t r = 1; r < t.n; r++) /* sorted within the batch */
            assert_true(t.src_len[r - 1] <= t.src_len[r]);
    }
    assert_true(rises > 10 && falls > 10);
    batcher_free(&b);
    tsv_free(&d);
}

/* The epoch permutation is uniform: over 6000 epochs of 3 pairs, each of the 6 orders
 * comes up about 1000 times (binomial sd ≈ 29; the bounds are over 5 sd away, and the
 * draws are fixed by the seed, so the test is deterministic). */
static void test_shuffle_uniform(void **state) {
    const char *text = "a\tA\nb\tB\nc\tC\n";
    tsv_dataset d;
    assert_int_equal(tsv_read_memory(text, strlen(text), "u.tsv", NULL, &d), TFM_OK);
    batcher_config c = {.batch_size = 3};
    batcher b;
    assert_int_equal(batcher_init(&b, &d, &c, 99), TFM_OK);
    size_t count[3][3][3] = {{{0}}};
    for (uint64_t e = 0; e < 6000; e++) {
        train_batch t;
        batcher_epoch(&b, e);
        assert_true(batcher_next(&b, &t));
        assert_int_equal(t.n, 3);
        count[t.pairs[0]][t.pairs[1]][t.pairs[2]]++;
    }
    const size_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < 6; i++) {
        size_t k = count[perms[i][0]][perms[i][1]][perms[i][2]];
        if (k < 850 || k > 1150) fail_msg("order %d came up %zu times in 6000", i, k);
    }
    batcher_free(&b);
    tsv_free(&d);
}

static void test_resume(void **state) {
    tsv_dataset d;
    make_dataset(&d, 300, 30, 3);
    const batcher_config configs[] = {
        {.batch_size = 16},
        {.batch_size = 16, .bucket = 4},
        {.max_tokens = 250},
        {.max_tokens = 250, .bucket = 5, .batch_size = 6},
    };
    for (size_t ci = 0; ci < sizeof configs / sizeof configs[0]; ci++) {
        const batcher_config *c = &configs[ci];
        batcher a;
        assert_int_equal(batcher_init(&a, &d, c, 1234), TFM_OK);
        assert_int_equal(batcher_seek(&a, 2, 0), TFM_OK);
        size_t nb = batcher_num_batches(&a);
        run_epoch(&a, c, &logs[0], true);
        batcher_free(&a);
        size_t stops[] = {0, 1, nb / 2, nb - 1, nb};
        for (size_t si = 0; si < 5; si++) {
            /* A fresh run, as after loading a checkpoint taken at (2, stop). */
            batcher b;
            assert_int_equal(batcher_init(&b, &d, c, 1234), TFM_OK);
            assert_int_equal(batcher_seek(&b, 2, stops[si]), TFM_OK);
            run_epoch(&b, c, &logs[1], stops[si] == 0);
            assert_int_equal(logs[1].nb, nb - stops[si]);
            assert_memory_equal(logs[1].hash, logs[0].hash + stops[si],
                                logs[1].nb * sizeof logs[1].hash[0]);
            /* The next epoch follows as in an uninterrupted run. */
            batcher_epoch(&b, 3);
            run_epoch(&b, c, &logs[2], true);
            batcher_free(&b);
        }
        assert_int_equal(batcher_init(&a, &d, c, 1234), TFM_OK);
        assert_int_equal(batcher_seek(&a, 2, nb + 1), TFM_ERR_INVALID_ARG);
        assert_non_null(strstr(tfm_last_error(), "past the end of epoch 2"));
        batcher_epoch(&a, 3);
        run_epoch(&a, c, &logs[3], true);
        assert_true(same_order(&logs[2], &logs[3], d.n));
        batcher_free(&a);
    }
    tsv_free(&d);
}

static void test_padding(void **state) {
    const char *text = "ab\tx\nhello\tw\xC3\xB6rld\nq\tlonger target\n";
    tsv_dataset d;
    assert_int_equal(tsv_read_memory(text, strlen(text), "p.tsv", NULL, &d), TFM_OK);
    batcher_config c = {.batch_size = 3};
    batcher b;
    assert_int_equal(batcher_init(&b, &d, &c, 0), TFM_OK);
    train_batch t;
    assert_true(batcher_next(&b, &t));
    assert_int_equal(t.n, 3);
    assert_int_equal(t.S, 5);  /* "hello" */
    assert_int_equal(t.L, 14); /* "longer target" + 1 */
    check_batch(&d, &t);
    /* One row spelled out: the pair "q" → "longer target". */
    size_t r = 0;
    while (t.pairs[r] != 2) r++;
    const int32_t want_src[5] = {3 + 'q', TOK_PAD, TOK_PAD, TOK_PAD, TOK_PAD};
    const uint8_t want_src_pad[5] = {0, 1, 1, 1, 1};
    assert_memory_equal(t.src + r * 5, want_src, sizeof want_src);
    assert_memory_equal(t.src_pad + r * 5, want_src_pad, 5);
    assert_int_equal(t.tgt_in[r * 14], TOK_BOS);
    assert_int_equal(t.tgt_in[r * 14 + 13], 3 + 't');
    assert_int_equal(t.tgt_out[r * 14 + 12], 3 + 't');
    assert_int_equal(t.tgt_out[r * 14 + 13], TOK_EOS);
    /* The row "ab" → "x": target of 2 tokens, 12 PAD. */
    while (t.pairs[r] != 0) r = (r + 1) % 3;
    assert_int_equal(t.tgt_in[r * 14 + 1], 3 + 'x');
    assert_int_equal(t.tgt_out[r * 14 + 1], TOK_EOS);
    assert_int_equal(t.tgt_out[r * 14 + 2], TOK_PAD);
    assert_int_equal(t.tgt_pad[r * 14 + 1], 0);
    assert_int_equal(t.tgt_pad[r * 14 + 2], 1);
    assert_int_equal(t.src_tokens, 2 + 5 + 1);
    assert_int_equal(t.tgt_tokens, 2 + 7 + 14);
    assert_false(batcher_next(&b, &t));
    batcher_free(&b);
    tsv_free(&d);
}

static void test_batch_errors(void **state) {
    const char *text = "abc\tdef\nx\ty\n";
    tsv_dataset d;
    assert_int_equal(tsv_read_memory(text, strlen(text), "e.tsv", NULL, &d), TFM_OK);
    batcher b;
    batcher_config c = {0};
    assert_int_equal(batcher_init(&b, &d, &c, 0), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "batch_size or max_tokens"));
    batcher_free(&b);
    c.max_tokens = 6; /* pair 1 needs 3 + 4 = 7 */
    assert_int_equal(batcher_init(&b, &d, &c, 0), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "pair 1 (source 3 bytes, target 3 bytes) needs 7"));
    batcher_free(&b);
    c.max_tokens = 7;
    assert_int_equal(batcher_init(&b, &d, &c, 0), TFM_OK);
    assert_int_equal(batcher_num_batches(&b), 2); /* 2·(3 + 4) > 7 */
    batcher_free(&b);
    tsv_dataset empty = {0};
    assert_int_equal(batcher_init(&b, &empty, &c, 0), TFM_ERR_INVALID_ARG);
    batcher_free(&b);
    tsv_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer),      cmocka_unit_test(test_tsv_reads),
        cmocka_unit_test(test_tsv_errors),     cmocka_unit_test(test_batch_by_sentences),
        cmocka_unit_test(test_batch_by_tokens), cmocka_unit_test(test_resume),
        cmocka_unit_test(test_padding),        cmocka_unit_test(test_batch_errors),
        cmocka_unit_test(test_bucket_shuffle), cmocka_unit_test(test_shuffle_uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
