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
 *                     [--single-above SEC]
 *        bench_decode --list            (the case names, one a line)
 *
 * Output, one line per case and mode (keys fixed, values without spaces):
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

typedef struct opts {
    double min_time, budget, single_above;
    int min_reps, max_reps, warmup;
    bool cached, nocache;
} opts;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* A 64-bit LCG (high bits), as bench_train.c: the same ids in bench_decode_torch.py. */
static uint64_t lcg_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

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
    double t0 = now_s();
    TFM_TRY(kv_decoder_start(&d, m, b->src, b->pad, BATCH, S, 1, L, false, no_cache));
    double t_start = now_s() - t0;
    for (int64_t r = 0; r < BATCH; r++) b->tokens[r] = TOK_BOS;
    t0 = now_s();
    tfm_status st = kv_decoder_step(&d, b->tokens, b->logp);
    double t_first = now_s() - t0, t_last = t_first;
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
        t0 = now_s();
        st = kv_decoder_step(&d, b->tokens, b->logp);
        t_last = now_s() - t0;
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

static int run_mode(const case_def *c, seq2seq *m, bufs *b, bool no_cache, const opts *o) {
    const int64_t L = c->L, S = c->L;
    const char *impl = no_cache ? "tfm-nocache" : "tfm-cached";
    probe_times pt;
    /* a short probe first pays for first-use costs (threads, allocations) */
    if (probe(m, b, S, L < 8 ? L : 8, no_cache, &pt) || probe(m, b, S, L, no_cache, &pt)) goto fail;
    const double est = pt.est;
    char probe_kv[128];
    snprintf(probe_kv, sizeof probe_kv, "start_ms=%.3f step_first_ms=%.3f step_last_ms=%.3f",
             1e3 * pt.start, 1e3 * pt.first, 1e3 * pt.last);
    if (est > o->budget) {
        printf("# %s %s skipped: estimated %.0f s > budget %.0f s\n", impl, c->name, est, o->budget);
        printf("BENCH impl=%s case=%s model=%s L=%lld S=%lld batch=%d reps=0 est_s=%.3f skipped=1 %s\n",
               impl, c->name, c->model->name, (long long)L, (long long)S, BATCH, est, probe_kv);
        fflush(stdout);
        return 0;
    }
    bool single = est > o->single_above;
    int max_reps = single ? 1 : o->max_reps;
    double *ts = malloc((size_t)max_reps * sizeof(double));
    if (!ts) {
        fprintf(stderr, "bench_decode: out of memory\n");
        return 1;
    }
    if (!single)
        for (int i = 0; i < o->warmup; i++)
            if (decode(m, b, S, L, no_cache)) goto fail_free;
    int reps = 0;
    double start = now_s();
    while (reps < max_reps && (reps < (single ? 1 : o->min_reps) || now_s() - start < o->min_time)) {
        double t0 = now_s();
        if (decode(m, b, S, L, no_cache)) goto fail_free;
        ts[reps++] = now_s() - t0;
    }
    double med = median(ts, reps);
    double tokens = (double)(BATCH * L);
    printf("BENCH impl=%s case=%s model=%s L=%lld S=%lld batch=%d reps=%d median_ms=%.3f min_ms=%.3f "
           "tokens=%.0f tok_s=%.1f est_s=%.3f skipped=0 checksum=%llu %s\n",
           impl, c->name, c->model->name, (long long)L, (long long)S, BATCH, reps, 1e3 * med,
           1e3 * ts[0], tokens, tokens / med, est,
           (unsigned long long)checksum(b->out, (size_t)(BATCH * L)), probe_kv);
    fflush(stdout);
    free(ts);
    return 0;
fail_free:
    free(ts);
fail:
    fprintf(stderr, "bench_decode: %s %s: %s\n", impl, c->name, tfm_last_error());
    return 1;
}

static int run_case(const case_def *c, const opts *o) {
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
    for (int64_t i = 0; i < BATCH * S; i++) b.src[i] = TOK_BYTE0 + (int32_t)(lcg_next(&s) % 256);
    if (seq2seq_create(&m, &cfg)) {
        fprintf(stderr, "bench_decode: %s: %s\n", c->name, tfm_last_error());
        goto done;
    }
    created = true;
    seq2seq_init(&m, 1);
    rc = 0;
    if (o->cached) rc |= run_mode(c, &m, &b, false, o);
    if (o->nocache) rc |= run_mode(c, &m, &b, true, o);
done:
    if (created) seq2seq_free(&m);
    free(b.src), free(b.pad), free(b.tokens), free(b.out), free(b.logp);
    return rc;
}

static void usage(FILE *f) {
    fprintf(f, "usage: bench_decode [--case NAME]... [--mode cached|nocache|both] [--min-time SEC]\n"
               "                    [--min-reps R] [--max-reps R] [--warmup W] [--budget SEC]\n"
               "                    [--single-above SEC]\n"
               "       bench_decode --list\n"
               "cases: MODEL-L, MODEL in");
    for (int i = 0; i < NMODELS; i++) fprintf(f, " %s", MODELS[i].name);
    fprintf(f, ", L in");
    for (int i = 0; i < NLENGTHS; i++) fprintf(f, " %lld", (long long)LENGTHS[i]);
    fprintf(f, " (or MODEL alone: all its lengths)\n");
}

int main(int argc, char **argv) {
    opts o = {.min_time = 2.0, .min_reps = 3, .max_reps = 10000, .warmup = 1, .budget = 180,
              .single_above = 10, .cached = true, .nocache = true};
    static case_def all[NMODELS * NLENGTHS];
    for (int i = 0; i < NMODELS; i++)
        for (int j = 0; j < NLENGTHS; j++) {
            case_def *c = &all[i * NLENGTHS + j];
            c->model = &MODELS[i], c->L = LENGTHS[j];
            snprintf(c->name, sizeof c->name, "%s-%lld", MODELS[i].name, (long long)LENGTHS[j]);
        }
    const case_def *chosen[NMODELS * NLENGTHS * 4];
    int nchosen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--list")) {
            for (int c = 0; c < NMODELS * NLENGTHS; c++) printf("%s\n", all[c].name);
            return 0;
        } else if (v && !strcmp(a, "--case")) {
            int found = 0;
            for (int c = 0; c < NMODELS * NLENGTHS; c++)
                if ((!strcmp(v, all[c].name) || !strcmp(v, all[c].model->name)) &&
                    nchosen < (int)(sizeof chosen / sizeof chosen[0]))
                    chosen[nchosen++] = &all[c], found = 1;
            if (!found) {
                fprintf(stderr, "bench_decode: unknown case '%s'\n", v);
                usage(stderr);
                return 2;
            }
            i++;
        } else if (v && !strcmp(a, "--mode")) {
            if (!strcmp(v, "cached")) o.cached = true, o.nocache = false;
            else if (!strcmp(v, "nocache")) o.cached = false, o.nocache = true;
            else if (!strcmp(v, "both")) o.cached = o.nocache = true;
            else {
                usage(stderr);
                return 2;
            }
            i++;
        } else if (v && !strcmp(a, "--min-time")) {
            o.min_time = atof(v), i++;
        } else if (v && !strcmp(a, "--min-reps")) {
            o.min_reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--max-reps")) {
            o.max_reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--warmup")) {
            o.warmup = atoi(v), i++;
        } else if (v && !strcmp(a, "--budget")) {
            o.budget = atof(v), i++;
        } else if (v && !strcmp(a, "--single-above")) {
            o.single_above = atof(v), i++;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (o.min_reps < 1) o.min_reps = 1;
    if (o.max_reps < o.min_reps) o.max_reps = o.min_reps;
    if (o.warmup < 0) o.warmup = 0;
    if (nchosen == 0)
        for (int i = 0; i < NMODELS * NLENGTHS; i++) chosen[nchosen++] = &all[i];

    const char *omp = getenv("OMP_NUM_THREADS"), *obt = getenv("OPENBLAS_NUM_THREADS");
    printf("# impl=tfm OMP_NUM_THREADS=%s OPENBLAS_NUM_THREADS=%s batch=%d S=L max_len=%d "
           "min_time=%g min_reps=%d warmup=%d budget=%g single_above=%g\n",
           omp ? omp : "(unset)", obt ? obt : "(unset)", BATCH, MAX_LEN, o.min_time, o.min_reps,
           o.warmup, o.budget, o.single_above);
    fflush(stdout);

    int failed = 0;
    for (int i = 0; i < nchosen; i++) failed |= run_case(chosen[i], &o);
    return failed ? 1 : 0;
}
