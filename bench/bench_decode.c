/* bench_decode.c — time greedy decoding with tfm's seq2seq model: the KV-cached
 * incremental decoder (src/decode/kv_decoder.h, no_cache = false) and the same decoder
 * recomputing the whole prefix at every step (no_cache = true); print one
 * machine-readable line per case and mode. bench/bench_decode_torch.py runs the same
 * cases with PyTorch's usual nn.Transformer greedy loop; bench/run_decode.sh runs both
 * and tabulates.
 *
 * Uses the library's internal headers (src/decode/kv_decoder.h, src/model/seq2seq.h):
 * the decoding API of include/tfm.h wraps the same decoder.
 *
 * One decode (timed whole), for N = 8 sources of S = L tokens (the source is as long as
 * the target), forced length L (EOS is ignored: every row decodes exactly L tokens):
 *   kv_decoder_start(src, n = N, S, repeat 1, max_steps L, no attention, no_cache)
 *                                        encode once (+ cross-attention K/V when cached)
 *   tokens = BOS; L times: kv_decoder_step(tokens) -> logp (N, V); tokens = argmax(logp)
 *   kv_decoder_free
 * Generated tokens per decode = N · L; tok/s = N · L / median decode time.
 *
 * Models (random init: seq2seq_create + seq2seq_init(seed 1); byte vocabulary V 259,
 * tied embeddings, relu, post-norm, final encoder and decoder LayerNorms, max_len 520):
 *   demo   `tfm demo`'s model: E 64, H 4, 2 + 2 layers, F 256
 *   base   nn.Transformer's default size: E 512, H 8, 6 + 6 layers, F 2048
 * Cases: MODEL-L for L in 32, 128, 256, 512 (demo-32 … base-512). --case demo (a model
 * name) selects all of its lengths.
 *
 * Sources (the same on both sides, from bench_train.c's LCG, seed 12345): (N, S) ids
 * uniform in 3..258, no padding (the key-padding mask is still applied: tfm always
 * applies it).
 *
 * Timing: first a probe: one decoder start (encode) and the decoder step at t = 0 and at
 * t = L − 1 (the step's prefix set directly; the cache rows filled with zeros: its cost
 * does not depend on the values), after a warm-up probe at L = 8, giving an estimate of
 * the whole decode
 *     est = start + L · (step(0) + step(L − 1)) / 2.
 * If est > --budget seconds (default 180) the case is skipped (a `skipped=1` line, with
 * est_s). If est > --single-above seconds (default 10) one decode is timed (reps=1, no
 * warm-up beyond the probe). Otherwise `warmup` untimed decodes, then timed decodes
 * until min-time seconds and min-reps decodes (or max-reps): the median is reported.
 *
 * Usage: bench_decode [--case NAME]... [--mode cached|nocache|both] [--min-time SEC]
 *                     [--min-reps R] [--max-reps R] [--warmup W] [--budget SEC]
 *                     [--single-above SEC] [--impl NAME]
 *        bench_decode --list            (the case names, one a line)
 *        bench_decode --info            (the '#' header line only: SIMD path, threads)
 *
 * Output: a '#' header line (bench/common.h), then one line per case and mode (keys
 * fixed, values without spaces):
 *   BENCH impl=tfm-cached case=demo-32 model=demo L=32 S=32 batch=8 reps=57
 *         median_ms=12.3 min_ms=12.0 tokens=256 tok_s=20813 est_s=0.012 skipped=0
 *         checksum=123456789 start_ms=1.2 step_first_ms=0.1 step_last_ms=0.2
 * start_ms, step_first_ms, step_last_ms: the probe's times (kv_decoder_start = encode,
 * + cross-attention K/V when cached; the step at t = 0; the step at t = L − 1).
 * checksum: a hash of the generated tokens (cached and no-cache should agree: the same
 * greedy decode by two routes). Lines starting with '#' are information. Exit status is
 * non-zero if any case fails.
 *
 * Legend: N batch (sources = rows), S source length, L target length (= steps), E
 * d_model, H heads, F feed-forward width, V vocabulary, T step capacity.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "core/status.h"
#include "decode/kv_decoder.h"
#include "model/seq2seq.h"
#include "train/tokenizer.h"

/* ---- cases ----------------------------------------------------------------------- */
typedef struct model_def {
    const char *name;
    int64_t E, H, enc, dec, F;
} model_def;

static const model_def MODELS[] = {
    /* name    E    H  enc dec  F */
    {"demo", 64, 4, 2, 2, 256},
    {"base", 512, 8, 6, 6, 2048},
};
static const int64_t LENGTHS[] = {32, 128, 256, 512};
enum { NMODELS = sizeof MODELS / sizeof MODELS[0], NLENGTHS = sizeof LENGTHS / sizeof LENGTHS[0] };

#define BATCH 8
#define MAX_LEN 520
#define VOCAB TOK_VOCAB /* 259: PAD, BOS, EOS + 256 bytes */

typedef struct case_def {
    const model_def *model;
    int64_t L;
    char name[32];
} case_def;

/* The options of bench_decode beyond bench/common.h's. */
typedef struct decode_opts {
    double budget, single_above;
    bool cached, nocache;
} decode_opts;

/* ---- one decode -------------------------------------------------------------------- */
typedef struct bufs {
    int32_t *src;    /* (N, S) */
    uint8_t *pad;    /* (N, S) all 0 */
    int32_t *tokens; /* (N) the tokens fed at the current step */
    int32_t *out;    /* (N, L) generated */
    float *logp;     /* (N, V) */
} bufs;

/* First maximum of each row, as torch.argmax. */
static void argmax_rows(int32_t *tok, const float *logp, int64_t N, int64_t V) {
    for (int64_t r = 0; r < N; r++) {
        const float *p = logp + r * V;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (p[v] > p[best]) best = v;
        tok[r] = (int32_t)best;
    }
}

/* The whole greedy decode: start (encode), L steps, free. */
static tfm_status decode(seq2seq *m, bufs *b, int64_t S, int64_t L, bool no_cache) {
    kv_decoder d;
    TFM_TRY(kv_decoder_start(&d, m, b->src, b->pad, BATCH, S, 1, L, false, no_cache));
    for (int64_t r = 0; r < BATCH; r++) b->tokens[r] = TOK_BOS;
    for (int64_t t = 0; t < L; t++) {
        tfm_status st = kv_decoder_step(&d, b->tokens, b->logp);
        if (st) {
            kv_decoder_free(&d);
            return st;
        }
        argmax_rows(b->tokens, b->logp, BATCH, VOCAB);
        for (int64_t r = 0; r < BATCH; r++) b->out[r * L + t] = b->tokens[r];
    }
    kv_decoder_free(&d);
    return TFM_OK;
}

/* The probe (see the header): est = start + L · (step(0) + step(L − 1)) / 2. */
typedef struct probe_times {
    double start, first, last, est; /* s: kv_decoder_start, step(0), step(L − 1), estimate */
} probe_times;

static tfm_status probe(seq2seq *m, bufs *b, int64_t S, int64_t L, bool no_cache, probe_times *pt) {
    kv_decoder d;
    double t0 = bench_now();
    TFM_TRY(kv_decoder_start(&d, m, b->src, b->pad, BATCH, S, 1, L, false, no_cache));
    double t_start = bench_now() - t0;
    for (int64_t r = 0; r < BATCH; r++) b->tokens[r] = TOK_BOS;
    t0 = bench_now();
    tfm_status st = kv_decoder_step(&d, b->tokens, b->logp);
    double t_first = bench_now() - t0, t_last = t_first;
    if (st == TFM_OK && L > 1) {
        /* Jump to the last step: a prefix of BOS + bytes; zeros in the self-attention
         * cache (its values do not change the cost). */
        for (int64_t r = 0; r < BATCH; r++)
            for (int64_t t = 1; t < L; t++) d.prefix[r * d.T + t] = TOK_BYTE0 + (int32_t)((r + t) % 256);
        if (!no_cache) {
            size_t self = (size_t)m->tr_cfg.decoder.num_layers * (size_t)(d.R * d.T * m->cfg.d_model);
            memset(d.self_k, 0, self * sizeof(float));
            memset(d.self_v, 0, self * sizeof(float));
        }
        d.t = L - 1;
        t0 = bench_now();
        st = kv_decoder_step(&d, b->tokens, b->logp);
        t_last = bench_now() - t0;
    }
    kv_decoder_free(&d);
    *pt = (probe_times){t_start, t_first, t_last, t_start + (double)L * 0.5 * (t_first + t_last)};
    return st;
}

static uint64_t checksum(const int32_t *x, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the ids */
    for (size_t i = 0; i < n; i++) h = (h ^ (uint64_t)(uint32_t)x[i]) * 1099511628211ull;
    return h;
}

static int run_mode(const case_def *c, seq2seq *m, bufs *b, bool no_cache, const bench_opts *o,
                    const decode_opts *d) {
    const int64_t L = c->L, S = c->L;
    char impl[64]; /* IMPL-cached or IMPL-nocache */
    snprintf(impl, sizeof impl, "%s-%s", o->impl, no_cache ? "nocache" : "cached");
    probe_times pt;
    /* a short probe first pays for first-use costs (threads, allocations) */
    if (probe(m, b, S, L < 8 ? L : 8, no_cache, &pt) || probe(m, b, S, L, no_cache, &pt)) goto fail;
    const double est = pt.est;
    char probe_kv[128];
    snprintf(probe_kv, sizeof probe_kv, "start_ms=%.3f step_first_ms=%.3f step_last_ms=%.3f",
             1e3 * pt.start, 1e3 * pt.first, 1e3 * pt.last);
    char head[96];
    snprintf(head, sizeof head, " model=%s L=%lld S=%lld batch=%d", c->model->name, (long long)L,
             (long long)S, BATCH);
    if (est > d->budget) {
        printf("# %s %s skipped: estimated %.0f s > budget %.0f s\n", impl, c->name, est, d->budget);
        bench_line(impl, c->name, "%s reps=0 est_s=%.3f skipped=1 %s", head, est, probe_kv);
        return 0;
    }
    bool single = est > d->single_above;
    bench_opts timed = *o; /* a single decode (no warm-up) when it is estimated slow */
    if (single) timed.min_reps = timed.max_reps = 1;
    double *ts = malloc((size_t)timed.max_reps * sizeof(double));
    if (!ts) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return 1;
    }
    if (!single)
        for (int i = 0; i < o->warmup; i++)
            if (decode(m, b, S, L, no_cache)) goto fail_free;
    bench_loop l;
    for (l = bench_loop_start(&timed); bench_loop_more(&l); l.reps++) {
        double t0 = bench_now();
        if (decode(m, b, S, L, no_cache)) goto fail_free;
        ts[l.reps] = bench_now() - t0;
    }
    double med = bench_median(ts, l.reps);
    double tokens = (double)(BATCH * L);
    bench_line(impl, c->name,
               "%s reps=%d median_ms=%.3f min_ms=%.3f tokens=%.0f tok_s=%.1f est_s=%.3f skipped=0"
               " checksum=%llu %s",
               head, l.reps, 1e3 * med, 1e3 * ts[0], tokens, tokens / med, est,
               (unsigned long long)checksum(b->out, (size_t)(BATCH * L)), probe_kv);
    free(ts);
    return 0;
fail_free:
    free(ts);
fail:
    fprintf(stderr, "bench_decode: %s %s: %s\n", impl, c->name, tfm_last_error());
    return 1;
}

static int run_case(const case_def *c, const bench_opts *o, const decode_opts *d) {
    const model_def *md = c->model;
    const int64_t L = c->L, S = c->L;
    seq2seq_config cfg = {.vocab = VOCAB, .d_model = md->E, .nhead = md->H,
                          .num_encoder_layers = md->enc, .num_decoder_layers = md->dec,
                          .dim_feedforward = md->F, .dropout = 0.1f, .activation = TFM_RELU,
                          .norm_first = false, .tie_embeddings = true, .max_len = MAX_LEN};
    bufs b = {.src = malloc((size_t)(BATCH * S) * sizeof(int32_t)),
              .pad = calloc((size_t)(BATCH * S), 1),
              .tokens = malloc(BATCH * sizeof(int32_t)),
              .out = calloc((size_t)(BATCH * L), sizeof(int32_t)),
              .logp = malloc((size_t)(BATCH * VOCAB) * sizeof(float))};
    int rc = 1;
    seq2seq m;
    bool created = false;
    if (!b.src || !b.pad || !b.tokens || !b.out || !b.logp) {
        fprintf(stderr, "bench_decode: %s: out of memory\n", c->name);
        goto done;
    }
    uint64_t s = 12345;
    for (int64_t i = 0; i < BATCH * S; i++) b.src[i] = TOK_BYTE0 + (int32_t)(bench_lcg_next(&s) % 256);
    if (seq2seq_create(&m, &cfg)) {
        fprintf(stderr, "bench_decode: %s: %s\n", c->name, tfm_last_error());
        goto done;
    }
    created = true;
    seq2seq_init(&m, 1);
    rc = 0;
    if (d->cached) rc |= run_mode(c, &m, &b, false, o, d);
    if (d->nocache) rc |= run_mode(c, &m, &b, true, o, d);
done:
    if (created) seq2seq_free(&m);
    free(b.src), free(b.pad), free(b.tokens), free(b.out), free(b.logp);
    return rc;
}

/* --mode cached|nocache|both, --budget SEC, --single-above SEC. */
static int parse_decode_opt(void *ctx, int argc, char **argv, int i) {
    decode_opts *d = ctx;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return 0;
    if (!strcmp(a, "--budget")) d->budget = atof(v);
    else if (!strcmp(a, "--single-above")) d->single_above = atof(v);
    else if (!strcmp(a, "--mode") && !strcmp(v, "cached")) d->cached = true, d->nocache = false;
    else if (!strcmp(a, "--mode") && !strcmp(v, "nocache")) d->cached = false, d->nocache = true;
    else if (!strcmp(a, "--mode") && !strcmp(v, "both")) d->cached = d->nocache = true;
    else return 0;
    return 2;
}

static const char USAGE[] =
    "usage: bench_decode [--case NAME]... [--mode cached|nocache|both] [--min-time SEC]\n"
    "                    [--min-reps R] [--max-reps R] [--warmup W] [--budget SEC]\n"
    "                    [--single-above SEC] [--impl NAME]\n"
    "       bench_decode --list | --info\n"
    "       (--case MODEL alone selects all of its lengths)\n";

int main(int argc, char **argv) {
    bench_opts o = {.impl = "tfm", .min_time = 2.0, .min_reps = 3, .max_reps = 10000, .warmup = 1};
    decode_opts d = {.budget = 180, .single_above = 10, .cached = true, .nocache = true};
    enum { NALL = NMODELS * NLENGTHS };
    static case_def all[NALL];
    const char *names[NALL];
    for (int i = 0; i < NMODELS; i++)
        for (int j = 0; j < NLENGTHS; j++) {
            case_def *c = &all[i * NLENGTHS + j];
            c->model = &MODELS[i], c->L = LENGTHS[j];
            snprintf(c->name, sizeof c->name, "%s-%lld", MODELS[i].name, (long long)LENGTHS[j]);
            names[i * NLENGTHS + j] = c->name;
        }
    const bench_prog prog = {.name = "bench_decode", .usage = USAGE, .case_names = names,
                             .ncase_names = NALL, .extra = parse_decode_opt, .extra_ctx = &d};
    int rc = bench_parse(&prog, argc, argv, &o);
    if (rc >= 0) return rc;
    /* a case name, or a model name for all of its lengths */
    const case_def *chosen[NALL * BENCH_MAX_CASES];
    int nchosen = 0;
    for (int i = 0; i < o.ncases; i++) {
        int found = 0;
        for (int c = 0; c < NALL; c++)
            if (!strcmp(o.cases[i], all[c].name) || !strcmp(o.cases[i], all[c].model->name))
                chosen[nchosen++] = &all[c], found = 1;
        if (!found) {
            fprintf(stderr, "bench_decode: unknown case '%s'\n", o.cases[i]);
            bench_usage(&prog, stderr);
            return 2;
        }
    }
    if (nchosen == 0)
        for (int i = 0; i < NALL; i++) chosen[nchosen++] = &all[i];

    bench_header(&o, " batch=%d S=L max_len=%d budget=%g single_above=%g", BATCH, MAX_LEN, d.budget,
                 d.single_above);
    if (o.info) return 0;
    int failed = 0;
    for (int i = 0; i < nchosen; i++) failed |= run_case(chosen[i], &o, &d);
    return failed ? 1 : 0;
}
