/* search.h — greedy and beam search over a seq2seq model, on the incremental decoder
 * (kv_decoder.h). Batched: n sources at once, each with its own padding.
 *
 * Greedy (beam 1): at every step each row takes the first maximum of log p (as
 * torch.argmax) until EOS or max_len; the batch stops when every row has ended.
 *
 * Beam search (beam K ≥ 1), K rows per source (kv_decoder_start with repeat = K). The
 * formulation is fairseq's SequenceGenerator (Ott et al. 2019) with GNMT's length
 * penalty and an exact stopping test:
 *   - step 0: only beam 0 of each source is live (the others score −inf), so the K
 *     first hypotheses are K distinct tokens;
 *   - every step, per source: candidates = live beam score (cumulative log p, in double)
 *     + log p(v) over the V tokens of the K beams; the top 2K are kept (fairseq's
 *     cand_size = 2·beam, so that K non-EOS candidates always remain), ordered by score,
 *     ties by lower beam index, then lower token id;
 *   - a candidate ending in EOS is finished only if it ranks among the first K (fairseq's
 *     eos_mask[:, :beam_size]; Hugging Face's "beam_token_rank >= num_beams: continue");
 *     its score is the GNMT length-normalised log-probability (Wu et al. 2016, eq. 14;
 *     OpenNMT-py's "wu" penalty)
 *         score = logP / lp(len),   lp(len) = ((5 + len) / 6)^alpha,
 *     len counting the EOS. Each source keeps the best K finished hypotheses;
 *   - the first K non-EOS candidates become the new beams (kv_decoder_reorder moves each
 *     row's cache from its parent);
 *   - a source is done when it holds K finished hypotheses and no live beam can beat the
 *     worst of them: log p ≤ 0, so a beam's log p only falls, and its best reachable
 *     score is logP / lp(L) at the most favourable final length L ≤ max_len (Hugging
 *     Face's BeamHypotheses.is_done with early_stopping="never"). With alpha = 0 this is
 *     "the best live beam is no better than the worst finished one";
 *   - at max_len the live beams are finished as they are (no EOS), scored the same way;
 *   - the batch stops when every source is done; each source returns its best nbest
 *     finished hypotheses by score (ties: the one finished first).
 * With K = 1 and alpha = 0 this is exactly greedy decoding (same tokens, same scores):
 * the top candidate is the argmax, and an EOS there ends the search. With alpha > 0,
 * K = 1 may go on past a greedy EOS and return a longer hypothesis with a better
 * normalised score — which is what the penalty asks for.
 *
 * Memory: one allocation per call for the search state (beams, candidates, finished
 * hypotheses), plus the kv_decoder's; nothing per step beyond what the kv_decoder does.
 * The returned hypotheses are allocated at the end.
 *
 * Legend: n sources, S source length (padded), K beam, V vocabulary, Ly decoder layers,
 * len hypothesis length (output tokens, EOS included).
 */
#ifndef TFM_DECODE_SEARCH_H
#define TFM_DECODE_SEARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "model/seq2seq.h"

typedef struct search_config {
    int64_t beam;          /* K ≥ 1; 1 = greedy (search_translate) */
    int64_t max_len;       /* most output tokens, EOS included (≥ 1; at most the model's
                            * max_len − 1, the room left after BOS: larger is clamped) */
    double length_penalty; /* GNMT alpha: score = logP / ((5 + len) / 6)^alpha; 0 = none */
    int64_t nbest;         /* hypotheses returned per source, 1 ≤ nbest ≤ beam */
    bool no_cache;         /* decode by full recomputation (kv_decoder_start's no_cache) */
    bool record_attn;      /* return each hypothesis' cross-attention weights */
} search_config;

/* beam 1, max_len 64, length_penalty 0, nbest 1, cache on, no attention. */
void search_config_default(search_config *c);

/* One output hypothesis. Owned by the caller: search_hyp_free. */
typedef struct search_hyp {
    int32_t *tokens; /* (len) without BOS; ends with EOS unless max_len was reached */
    int64_t len;
    double logprob;  /* Σ log p of the tokens, each given the ones before it */
    double score;    /* logprob / ((5 + len) / 6)^alpha */
    float *attn;     /* (Ly, len, S) cross-attention weights (heads averaged) that produced
                      * each token (row j: the step whose output is tokens[j]); NULL unless
                      * record_attn */
} search_hyp;

/* ((5 + len) / 6)^alpha: GNMT's length penalty (1 when alpha = 0). */
double search_length_penalty(int64_t len, double alpha);

/* Decode n sources src (n, S) with src_pad (n, S) (1 = padding): out (n · nbest) gets,
 * for source i, its nbest best hypotheses at out[i·nbest …], best first. beam 1 is
 * greedy; beam K > 1 is beam search (above). On failure out holds nothing to free.
 * TFM_ERR_INVALID_ARG for beam < 1 or ≥ V, nbest outside [1, beam], max_len < 1, a
 * non-finite length_penalty or a NULL pointer. */
tfm_status search_translate(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                            int64_t S, const search_config *cfg, search_hyp *out);

/* The two algorithms behind search_translate, with its arguments and checks: greedy
 * ignores cfg->beam (nbest must be 1); search_beam runs beam search even for beam 1
 * (tests compare the two). */
tfm_status search_greedy(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                         int64_t S, const search_config *cfg, search_hyp *out);
tfm_status search_beam(seq2seq *m, const int32_t *src, const uint8_t *src_pad, int64_t n,
                       int64_t S, const search_config *cfg, search_hyp *out);

/* Free the tokens and attention of hyps (count) and zero them. */
void search_hyp_free(search_hyp *hyps, int64_t count);

#endif
