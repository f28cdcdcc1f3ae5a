/* batch.h — the batches of `tfm train`: the dataset's pairs in a shuffled order,
 * grouped by sentence count or by a token budget, padded and masked for the model.
 *
 * Legend: N pairs (rows) in a batch, S source length, L target length (+1 for BOS/EOS).
 *
 * Epoch order, a pure function of (dataset, config, seed, epoch) — no threads, no
 * clock, so a run restarted from a checkpoint at (epoch, index) continues with exactly
 * the batches it would have seen:
 *   1. the pairs are permuted (Fisher–Yates, xoshiro256** seeded by a hash of seed
 *      and epoch, unbiased bounded draws);
 *   2. with bucket > 0, the permutation is cut into chunks of `bucket` batches' worth
 *      of pairs (bucket·batch_size pairs; by tokens, pairs whose unpadded tokens add up
 *      to at most bucket·max_tokens) and each chunk is sorted by (source length, target
 *      length, pair index), so a batch holds pairs of similar length and little padding
 *      (fairseq and tensor2tensor bucket likewise);
 *   3. batches are cut greedily from the start of each chunk (the whole permutation
 *      without bucketing): batch_size pairs, or by tokens as many pairs as keep
 *      N·(S + L) ≤ max_tokens (padded source plus padded target, like fairseq's
 *      --max-tokens) and N ≤ batch_size when batch_size > 0;
 *   4. with bucket > 0 the batches are shuffled, so lengths do not rise and fall in
 *      step through the epoch.
 * Every pair is in exactly one batch per epoch; the last batch may be smaller.
 *
 * Memory: everything is allocated by batcher_init for the largest batch the config
 * allows; batcher_next allocates nothing.
 */
#ifndef TFM_TRAIN_BATCH_H
#define TFM_TRAIN_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tfm.h"
#include "train/tsv.h"

typedef struct batcher_config {
    size_t batch_size; /* pairs per batch; with max_tokens, the most pairs (0 = no cap) */
    size_t max_tokens; /* 0: batch by sentence count; else the budget for N·(S + L) */
    size_t bucket;     /* 0: no length bucketing; else batches' worth per sorted chunk */
} batcher_config;

/* One batch, in the batcher's buffers: valid until the next batcher_next, _seek,
 * _epoch or _free. Arrays are dense: row i of src is src[i·S, (i+1)·S). */
typedef struct train_batch {
    size_t n;          /* N rows */
    size_t S, L;       /* padded lengths: longest source; longest target + 1 */
    int32_t *src;      /* (N, S) source byte ids, then PAD */
    int32_t *tgt_in;   /* (N, L) BOS, target byte ids, then PAD: the decoder's input */
    int32_t *tgt_out;  /* (N, L) target byte ids, EOS, then PAD: the labels */
    uint8_t *src_pad;  /* (N, S) 1 = PAD: src_key_padding_mask, memory_key_padding_mask */
    uint8_t *tgt_pad;  /* (N, L) 1 = PAD: tgt_key_padding_mask; also the labels to ignore */
    size_t *src_len;   /* (N) source tokens (bytes) per row */
    size_t *tgt_len;   /* (N) target tokens per row: target bytes + 1 */
    size_t *pairs;     /* (N) each row's pair index in the dataset */
    size_t src_tokens; /* Σ src_len: non-PAD source tokens */
    size_t tgt_tokens; /* Σ tgt_len: non-PAD labels (the loss's normaliser) */
} train_batch;

typedef struct batcher {
    const tsv_dataset *data; /* not owned: must outlive the batcher */
    batcher_config cfg;
    uint64_t seed;
    uint64_t epoch;  /* the epoch planned */
    size_t next;     /* batches of this epoch already returned: the resume index */
    size_t nbatches; /* batches in this epoch (by tokens, varies with the epoch) */
    size_t *order;   /* (n) pair indices in epoch order */
    size_t *begin;   /* (nbatches + 1) batch k is order[begin[k], begin[k + 1]) */
    size_t *seq;     /* (nbatches) the order in which batches are returned */
    size_t cap_rows, cap_src, cap_tgt; /* buffer sizes: rows, N·S, N·L */
    train_batch buf; /* the buffers handed out */
} batcher;

/* Check the config against the dataset (batch_size or max_tokens positive; by tokens,
 * every pair fits alone: src_len + tgt_len + 1 ≤ max_tokens), allocate, and plan
 * epoch 0. TFM_ERR_INVALID_ARG or TFM_ERR_NOMEM; free with batcher_free either way. */
tfm_status batcher_init(batcher *b, const tsv_dataset *d, const batcher_config *cfg,
                        uint64_t seed);
void batcher_free(batcher *b);

/* Plan `epoch` and continue after its first `index` batches (index ≤ the epoch's
 * batch count, else TFM_ERR_INVALID_ARG). Restoring a checkpoint is
 * batcher_seek(b, saved_epoch, saved_index) with what batcher_position said. */
tfm_status batcher_seek(batcher *b, uint64_t epoch, size_t index);
/* batcher_seek(b, epoch, 0). */
void batcher_epoch(batcher *b, uint64_t epoch);
/* The next batch of the epoch into *out; false at the end of the epoch. */
bool batcher_next(batcher *b, train_batch *out);
/* Where the batcher stands: the epoch and how many of its batches were returned. */
void batcher_position(const batcher *b, uint64_t *epoch, size_t *index);
size_t batcher_num_batches(const batcher *b); /* in the current epoch */

#endif
