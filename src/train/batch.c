/* batch.c — epoch order, batch cutting and padding (the rules are in batch.h).
 * Legend: N rows in a batch, S source length, L target length + 1. */
#include "train/batch.h"

#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "train/tokenizer.h"

/* splitmix64's finaliser: a bijective 64-bit hash. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, k), k ≥ 1, without modulo bias: draws below 2^64 mod k are rejected,
 * leaving a multiple of k equally likely values. */
static size_t below(tfm_rng *r, size_t k) {
    uint64_t reject = -(uint64_t)k % k;
    for (;;) {
        uint64_t x = rng_next(r);
        if (x >= reject) return (size_t)(x % k);
    }
}

static size_t sat_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

static size_t pair_tokens(const tsv_dataset *d, size_t i) {
    return tsv_src_len(d, i) + tsv_tgt_len(d, i) + 1; /* S + L of the pair alone */
}

/* ---- sorting a chunk by length: heapsort, in place, on a total order (ties broken
 * by pair index), so the result is unique whatever the algorithm ---- */
static bool shorter(const tsv_dataset *d, size_t a, size_t b) {
    size_t sa = tsv_src_len(d, a), sb = tsv_src_len(d, b);
    if (sa != sb) return sa < sb;
    size_t ta = tsv_tgt_len(d, a), tb = tsv_tgt_len(d, b);
    if (ta != tb) return ta < tb;
    return a < b;
}

static void sift_down(const tsv_dataset *d, size_t *v, size_t root, size_t n) {
    for (;;) {
        size_t c = 2 * root + 1;
        if (c >= n) return;
        if (c + 1 < n && shorter(d, v[c], v[c + 1])) c++;
        if (!shorter(d, v[root], v[c])) return;
        size_t t = v[root];
        v[root] = v[c], v[c] = t;
        root = c;
    }
}

static void sort_by_length(const tsv_dataset *d, size_t *v, size_t n) {
    if (n < 2) return;
    for (size_t i = n / 2; i-- > 0;) sift_down(d, v, i, n);
    for (size_t end = n - 1; end > 0; end--) {
        size_t t = v[0];
        v[0] = v[end], v[end] = t;
        sift_down(d, v, 0, end);
    }
}

/* ---- cutting ---- */

/* The end of the chunk that starts at order[i]. */
static size_t chunk_end(const batcher *b, size_t i) {
    size_t n = b->data->n;
    if (!b->cfg.bucket) return n;
    if (!b->cfg.max_tokens) {
        size_t len = sat_mul(b->cfg.bucket, b->cfg.batch_size);
        return len < n - i ? i + len : n;
    }
    size_t budget = sat_mul(b->cfg.bucket, b->cfg.max_tokens), sum = 0, j = i;
    while (j < n) {
        size_t t = pair_tokens(b->data, b->order[j]);
        if (j > i && t > budget - sum) break;
        sum += t;
        j++;
    }
    return j;
}

/* The end of the batch that starts at order[i], within a chunk ending at `end`. */
static size_t batch_end(const batcher *b, size_t i, size_t end) {
    const batcher_config *c = &b->cfg;
    if (!c->max_tokens) return c->batch_size < end - i ? i + c->batch_size : end;
    size_t S = 0, L = 0, j = i;
    while (j < end) {
        size_t rows = j - i + 1;
        if (c->batch_size && rows > c->batch_size) break;
        size_t s = tsv_src_len(b->data, b->order[j]), l = tsv_tgt_len(b->data, b->order[j]) + 1;
        if (s < S) s = S;
        if (l < L) l = L;
        if (s + l > c->max_tokens / rows) break; /* rows·(S + L) > max_tokens */
        S = s, L = l, j++;
    }
    return j; /* > i: batcher_init checked that every pair fits alone */
}

static void plan(batcher *b, uint64_t epoch) {
    const tsv_dataset *d = b->data;
    size_t n = d->n;
    tfm_rng r;
    rng_seed(&r, mix64(b->seed ^ mix64(epoch + 0x9e3779b97f4a7c15ULL)));
    for (size_t i = 0; i < n; i++) b->order[i] = i;
    for (size_t i = n - 1; i > 0; i--) { /* Fisher–Yates */
        size_t j = below(&r, i + 1);
        size_t t = b->order[i];
        b->order[i] = b->order[j], b->order[j] = t;
    }
    size_t nb = 0;
    for (size_t i = 0; i < n;) {
        size_t end = chunk_end(b, i);
        if (b->cfg.bucket) sort_by_length(d, b->order + i, end - i);
        while (i < end) {
            b->begin[nb++] = i;
            i = batch_end(b, i, end);
        }
    }
    b->begin[nb] = n;
    for (size_t k = 0; k < nb; k++) b->seq[k] = k;
    if (b->cfg.bucket) {
        for (size_t k = nb - 1; k > 0; k--) {
            size_t j = below(&r, k + 1);
            size_t t = b->seq[k];
            b->seq[k] = b->seq[j], b->seq[j] = t;
        }
    }
    b->nbatches = nb;
    b->epoch = epoch;
    b->next = 0;
}

/* ---- public ---- */

void batcher_free(batcher *b) {
    if (!b) return;
    free(b->order);
    free(b->begin);
    free(b->seq);
    free(b->buf.src);
    free(b->buf.tgt_in);
    free(b->buf.tgt_out);
    free(b->buf.src_pad);
    free(b->buf.tgt_pad);
    free(b->buf.src_len);
    free(b->buf.tgt_len);
    free(b->buf.pairs);
    memset(b, 0, sizeof *b);
}

tfm_status batcher_init(batcher *b, const tsv_dataset *d, const batcher_config *cfg,
                        uint64_t seed) {
    if (!b) return tfm_error(TFM_ERR_INVALID_ARG, "batcher_init: b is NULL");
    memset(b, 0, sizeof *b);
    if (!d || !cfg) return tfm_error(TFM_ERR_INVALID_ARG, "batcher_init: dataset or config is NULL");
    if (d->n == 0) return tfm_error(TFM_ERR_INVALID_ARG, "batcher: the dataset has no pairs");
    if (!cfg->batch_size && !cfg->max_tokens)
        return tfm_error(TFM_ERR_INVALID_ARG, "batcher: batch_size or max_tokens must be positive");
    b->data = d;
    b->cfg = *cfg;
    b->seed = seed;

    /* The largest batch the config allows, for the buffers. */
    size_t n = d->n, S = d->max_src_len, L = d->max_tgt_len + 1;
    size_t rows = cfg->batch_size && cfg->batch_size < n ? cfg->batch_size : n;
    size_t cap_src = sat_mul(rows, S), cap_tgt = sat_mul(rows, L);
    if (cfg->max_tokens) {
        size_t fewest = SIZE_MAX; /* tokens of the smallest pair */
        for (size_t i = 0; i < n; i++) {
            size_t t = pair_tokens(d, i);
            if (t > cfg->max_tokens)
                return tfm_error(TFM_ERR_INVALID_ARG,
                                 "batcher: pair %zu (source %zu bytes, target %zu bytes) needs %zu "
                                 "tokens (S + L), more than max_tokens %zu",
                                 i + 1, tsv_src_len(d, i), tsv_tgt_len(d, i), t, cfg->max_tokens);
            if (t < fewest) fewest = t;
        }
        /* N·(S + L) ≤ max_tokens bounds N, N·S and N·L. */
        if (cfg->max_tokens / fewest < rows) rows = cfg->max_tokens / fewest;
        cap_src = sat_mul(rows, S) < cfg->max_tokens ? sat_mul(rows, S) : cfg->max_tokens;
        cap_tgt = sat_mul(rows, L) < cfg->max_tokens ? sat_mul(rows, L) : cfg->max_tokens;
    }
    b->cap_rows = rows, b->cap_src = cap_src, b->cap_tgt = cap_tgt;

    /* calloc checks count × size for overflow. */
    b->order = calloc(n, sizeof *b->order);
    b->begin = calloc(n + 1, sizeof *b->begin);
    b->seq = calloc(n, sizeof *b->seq);
    b->buf.src = calloc(cap_src, sizeof *b->buf.src);
    b->buf.tgt_in = calloc(cap_tgt, sizeof *b->buf.tgt_in);
    b->buf.tgt_out = calloc(cap_tgt, sizeof *b->buf.tgt_out);
    b->buf.src_pad = calloc(cap_src, 1);
    b->buf.tgt_pad = calloc(cap_tgt, 1);
    b->buf.src_len = calloc(rows, sizeof *b->buf.src_len);
    b->buf.tgt_len = calloc(rows, sizeof *b->buf.tgt_len);
    b->buf.pairs = calloc(rows, sizeof *b->buf.pairs);
    if (!b->order || !b->begin || !b->seq || !b->buf.src || !b->buf.tgt_in || !b->buf.tgt_out ||
        !b->buf.src_pad || !b->buf.tgt_pad || !b->buf.src_len || !b->buf.tgt_len ||
        !b->buf.pairs) {
        batcher_free(b);
        return tfm_error(TFM_ERR_NOMEM,
                         "batcher: no memory for batches of %zu rows (%zu source, %zu target "
                         "tokens)",
                         rows, cap_src, cap_tgt);
    }
    plan(b, 0);
    return TFM_OK;
}

tfm_status batcher_seek(batcher *b, uint64_t epoch, size_t index) {
    if (!b || !b->order) return tfm_error(TFM_ERR_INVALID_ARG, "batcher_seek: no batcher");
    if (epoch != b->epoch) plan(b, epoch);
    if (index > b->nbatches)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "batcher: position %zu is past the end of epoch %llu (%zu batches)", index,
                         (unsigned long long)epoch, b->nbatches);
    b->next = index;
    return TFM_OK;
}

void batcher_epoch(batcher *b, uint64_t epoch) {
    if (epoch != b->epoch) plan(b, epoch);
    b->next = 0;
}

void batcher_position(const batcher *b, uint64_t *epoch, size_t *index) {
    *epoch = b->epoch;
    *index = b->next;
}

size_t batcher_num_batches(const batcher *b) { return b->nbatches; }

bool batcher_next(batcher *b, train_batch *out) {
    if (b->next >= b->nbatches) return false;
    const tsv_dataset *d = b->data;
    size_t k = b->seq[b->next++];
    const size_t *rows = b->order + b->begin[k];
    size_t N = b->begin[k + 1] - b->begin[k], S = 0, L = 0;
    for (size_t i = 0; i < N; i++) {
        size_t s = tsv_src_len(d, rows[i]), l = tsv_tgt_len(d, rows[i]) + 1;
        if (s > S) S = s;
        if (l > L) L = l;
    }
    train_batch *t = &b->buf;
    t->n = N, t->S = S, t->L = L;
    t->src_tokens = t->tgt_tokens = 0;
    for (size_t i = 0; i < N; i++) {
        size_t sl, tl;
        const uint8_t *src = tsv_src(d, rows[i], &sl);
        const uint8_t *tgt = tsv_tgt(d, rows[i], &tl);
        int32_t *s_row = t->src + i * S, *ti_row = t->tgt_in + i * L, *to_row = t->tgt_out + i * L;
        uint8_t *sp_row = t->src_pad + i * S, *tp_row = t->tgt_pad + i * L;
        tok_encode(src, sl, false, false, s_row);
        tok_encode(tgt, tl, true, false, ti_row);  /* BOS + target */
        tok_encode(tgt, tl, false, true, to_row);  /* target + EOS */
        for (size_t j = sl; j < S; j++) s_row[j] = TOK_PAD;
        for (size_t j = tl + 1; j < L; j++) ti_row[j] = to_row[j] = TOK_PAD;
        memset(sp_row, 0, sl);
        memset(sp_row + sl, 1, S - sl);
        memset(tp_row, 0, tl + 1);
        memset(tp_row + tl + 1, 1, L - tl - 1);
        t->src_len[i] = sl;
        t->tgt_len[i] = tl + 1;
        t->pairs[i] = rows[i];
        t->src_tokens += sl;
        t->tgt_tokens += tl + 1;
    }
    *out = *t;
    return true;
}
