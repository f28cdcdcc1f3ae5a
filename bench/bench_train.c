/* bench_train.c — time one full training step of tfm's seq2seq Transformer (forward,
 * backward, gradient clipping, Adam update) on fixed synthetic batches; print one
 * machine-readable line per case. bench/bench_train_torch.py runs the same cases with
 * PyTorch and prints the same line format; bench/run_train.sh runs both and tabulates.
 *
 * Uses the library's internal headers (src/model/seq2seq.h, src/train/optim.h): the
 * training API is not public yet. The step is the one train_run (src/train/trainer.c)
 * takes, minus batching and the schedule:
 *   memset(grads, 0)                               zero the gradient block (P floats)
 *   seq2seq_train_step(eps 0.1, train = true)      forward + backward, dropout 0.1
 *   clip_grad_coef(max_norm 1.0) + optim_step_scaled: torch.nn.utils.clip_grad_norm_
 *     then Adam(0.9, 0.98), eps 1e-9, lr              torch.optim.Adam.step()
 *
 * Usage: bench_train [--case NAME]... [--batch N] [--compute-type f32|bf16]
 *                    [--min-time SEC] [--min-reps R] [--max-reps R] [--warmup W]
 *                    [--impl NAME]
 *        bench_train --list            (the case names, one a line)
 *        bench_train --info            (the '#' header line only: SIMD and bf16 paths, threads)
 *   default: every case, its own batch size, compute type f32, min-time 2 s, min-reps 5,
 *   max-reps 10000, warm-up 2 steps. --batch overrides the batch size of every case run.
 *   --compute-type bf16 sets the model's `compute` (src/model/seq2seq.h): the products of
 *   forward and backward in bf16 with FP32 accumulation, the FP32 master weights,
 *   gradients and Adam as before (bench_train_torch.py --mode autocast-bf16 is PyTorch's
 *   counterpart).
 *
 * Cases (byte vocabulary V 259, tied embeddings: one (V, E) matrix is source
 * embedding, target embedding and generator weight; relu, post-norm, final encoder and
 * decoder LayerNorms as nn.Transformer; dropout 0.1; label smoothing 0.1):
 *   demo   `tfm demo`'s model: E 64, H 4, 2 + 2 layers, F 256; N 64, S = L = 11
 *   base   nn.Transformer's default size: E 512, H 8, 6 + 6 layers, F 2048;
 *          N 32, S = L = 64
 *
 * Batch (the same on both sides, built from the same LCG; no padding):
 *   src     (N, S)  ids uniform in 3..258 (bytes)
 *   tgt_in  (N, L)  BOS (1), then L − 1 ids in 3..258
 *   tgt_out (N, L)  tgt_in shifted left by one, then EOS (2): the labels
 *   pads    (N, S), (N, L) all 0. The key-padding masks are still applied (tfm always
 *           applies them; the PyTorch side passes them too), with the causal tgt mask.
 * Tokens per step = non-PAD labels = N · L. tokens/s = N · L / median step time.
 *
 * Timing: `warmup` untimed steps (the first sizes the workspaces), then timed steps
 * until both min-time seconds have passed and min-reps were done (or max-reps reached).
 * Each step is timed whole and in two phases: fb = zero grads + forward + backward;
 * opt = clipping + Adam. The medians of each are reported (the phase medians need not
 * add up to the step median exactly).
 *
 * Output: a '#' header line (bench/common.h), then one line per case (keys fixed,
 * values without spaces):
 *   BENCH impl=tfm case=demo reps=57 median_ms=12.345 min_ms=12.001 fb_ms=11.0 opt_ms=1.3
 *         tokens=704 tok_s=57020 gflop=1.234 gflops=99.9 params=123456 loss=5.61 compute=f32
 * gflop: matrix-product FLOPs of the step, forward counted as bench_tfm.c counts it
 * (plus the generator) and backward as twice forward (dX and dW products), i.e. 3 × fwd.
 * Lines starting with '#' are information. Exit status is non-zero if any case fails.
 *
 * Legend: N batch, S source length, L target length, E d_model, H heads, F feed-forward
 * width, V vocabulary, R = N · L target rows, P parameter count.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"
#include "core/rng.h"
#include "model/seq2seq.h"
#include "train/optim.h"
#include "train/tokenizer.h"

/* ---- cases ----------------------------------------------------------------------- */
typedef struct case_def {
    const char *name;
    int64_t E, H, enc, dec, F, N, S, L;
} case_def;

static const case_def CASES[] = {
    /* name    E    H  enc dec  F     N   S   L */
    {"demo", 64, 4, 2, 2, 256, 64, 11, 11},
    {"base", 512, 8, 6, 6, 2048, 32, 64, 64},
};
enum { NCASES = sizeof CASES / sizeof CASES[0] };

#define VOCAB TOK_VOCAB /* 259: PAD, BOS, EOS + 256 bytes */
#define DROPOUT 0.1f
#define SMOOTHING 0.1f
#define CLIP 1.0
#define LR 1e-4 /* constant: the rate does not change the cost of a step */

/* ---- FLOP counts: matrix products only, 2·M·N·K per GEMM (see bench_tfm.c) ------ */
/* Forward: enc · (self-attn(S, S) + ffn(S)) + dec · (self-attn(L, L) + cross(L, S) +
 * ffn(L)) + generator (R, E) x (E, V). Training step ≈ 3 × forward. */
static double flops_step(const case_def *c, double N) {
    double S = (double)c->S, L = (double)c->L, E = (double)c->E, F = (double)c->F;
    double enc = bench_flops_mha(N, S, S, E) + bench_flops_ffn(N, S, E, F);
    double dec = bench_flops_mha(N, L, L, E) + bench_flops_mha(N, L, S, E) + bench_flops_ffn(N, L, E, F);
    double fwd = (double)c->enc * enc + (double)c->dec * dec + 2 * N * L * E * VOCAB;
    return 3 * fwd;
}

/* ---- the synthetic batch (bench_lcg_next: the same ids in bench_train_torch.py) ---- */
typedef struct batch_bufs {
    int32_t *src, *tgt_in, *tgt_out; /* (N, S), (N, L), (N, L) */
    uint8_t *src_pad, *tgt_pad;      /* (N, S), (N, L): all 0 */
} batch_bufs;

static void batch_free(batch_bufs *b) {
    free(b->src), free(b->tgt_in), free(b->tgt_out), free(b->src_pad), free(b->tgt_pad);
}

static int batch_make(batch_bufs *b, int64_t N, int64_t S, int64_t L) {
    memset(b, 0, sizeof *b);
    b->src = malloc((size_t)(N * S) * sizeof(int32_t));
    b->tgt_in = malloc((size_t)(N * L) * sizeof(int32_t));
    b->tgt_out = malloc((size_t)(N * L) * sizeof(int32_t));
    b->src_pad = calloc((size_t)(N * S), 1);
    b->tgt_pad = calloc((size_t)(N * L), 1);
    if (!b->src || !b->tgt_in || !b->tgt_out || !b->src_pad || !b->tgt_pad) return 1;
    uint64_t s = 12345;
    for (int64_t i = 0; i < N * S; i++) b->src[i] = TOK_BYTE0 + (int32_t)(bench_lcg_next(&s) % 256);
    for (int64_t n = 0; n < N; n++) {
        int32_t *in = b->tgt_in + n * L, *out = b->tgt_out + n * L;
        in[0] = TOK_BOS;
        for (int64_t t = 1; t < L; t++) in[t] = TOK_BYTE0 + (int32_t)(bench_lcg_next(&s) % 256);
        for (int64_t t = 0; t + 1 < L; t++) out[t] = in[t + 1];
        out[L - 1] = TOK_EOS;
    }
    return 0;
}

/* One training step (see the header); *fb and *opt get the phase times. */
static tfm_status train_step(seq2seq *m, optimizer *opt, const seq2seq_batch *b, uint64_t stepno,
                             ce_result *res, double *fb, double *op) {
    double t0 = bench_now();
    memset(m->grad_block, 0, m->num_floats * sizeof(float)); /* grads (P) = 0 */
    tfm_status st = seq2seq_train_step(m, b, SMOOTHING, true, stepno, res);
    if (st) return st;
    double t1 = bench_now();
    double norm;
    float coef; /* clipping, applied by Adam as it reads the gradients (as src/train/trainer.c) */
    if ((st = clip_grad_coef(m->grad_block, m->num_floats, CLIP, &norm, &coef))) return st;
    if ((st = optim_step_scaled(opt, m->block, m->grad_block, m->num_floats, LR, coef))) return st;
    double t2 = bench_now();
    *fb = t1 - t0, *op = t2 - t1;
    return TFM_OK;
}

static int run_case(const case_def *c, const bench_opts *o, int64_t batch) {
    const int64_t N = batch > 0 ? batch : c->N, S = c->S, L = c->L;
    seq2seq_config cfg = {.vocab = VOCAB, .d_model = c->E, .nhead = c->H,
                          .num_encoder_layers = c->enc, .num_decoder_layers = c->dec,
                          .dim_feedforward = c->F, .dropout = DROPOUT, .activation = TFM_RELU,
                          .norm_first = false, .tie_embeddings = true,
                          .max_len = S > L ? S : L};
    optim_config oc;
    optim_config_default(&oc, OPTIM_ADAM);
    oc.beta1 = 0.9, oc.beta2 = 0.98, oc.eps = 1e-9;

    seq2seq m;
    optimizer *opt = NULL;
    batch_bufs bb = {0};
    double *t = malloc(3 * (size_t)o->max_reps * sizeof(double)); /* step, fb, opt */
    int rc = 1;
    if (!t || batch_make(&bb, N, S, L)) {
        fprintf(stderr, "bench_train: %s: out of memory\n", c->name);
        free(t);
        batch_free(&bb);
        return 1;
    }
    if (seq2seq_create(&m, &cfg) || optim_create(&oc, m.num_floats, &opt)) {
        fprintf(stderr, "bench_train: %s: %s\n", c->name, tfm_last_error());
        goto done;
    }
    seq2seq_init(&m, 1);
    m.compute = o->compute;
    m.dropout_seed = rng_derive(1, 0xd20b); /* as train_run */
    seq2seq_batch b = {.N = N, .S = S, .L = L, .src = bb.src, .src_pad = bb.src_pad,
                       .tgt_in = bb.tgt_in, .tgt_pad = bb.tgt_pad, .tgt_out = bb.tgt_out};
    ce_result res = {0};
    double fb, op;
    uint64_t stepno = 0;
    for (int i = 0; i < o->warmup; i++)
        if (train_step(&m, opt, &b, stepno++, &res, &fb, &op)) goto fail;

    double *ts = t, *tfb = t + o->max_reps, *top = t + 2 * (size_t)o->max_reps;
    bench_loop l;
    for (l = bench_loop_start(o); bench_loop_more(&l); l.reps++) {
        double t0 = bench_now();
        if (train_step(&m, opt, &b, stepno++, &res, &fb, &op)) goto fail;
        ts[l.reps] = bench_now() - t0, tfb[l.reps] = fb, top[l.reps] = op;
    }
    const int reps = l.reps;
    double med = bench_median(ts, reps), mfb = bench_median(tfb, reps), mop = bench_median(top, reps);
    double flop = flops_step(c, (double)N);
    bench_line(o->impl, c->name,
               " reps=%d median_ms=%.3f min_ms=%.3f fb_ms=%.3f opt_ms=%.3f tokens=%lld tok_s=%.0f"
               " gflop=%.3f gflops=%.1f params=%zu batch=%lld loss=%.4f compute=%s",
               reps, 1e3 * med, 1e3 * ts[0], 1e3 * mfb, 1e3 * mop, (long long)res.count,
               (double)res.count / med, flop * 1e-9, flop * 1e-9 / med, m.num_floats, (long long)N,
               res.loss, tfm_compute_type_name(o->compute));
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench_train: %s: training step: %s\n", c->name, tfm_last_error());
done:
    optim_free(opt);
    seq2seq_free(&m);
    batch_free(&bb);
    free(t);
    return rc;
}

/* --batch N: every case's batch size (0: the case's own). */
static int parse_batch(void *ctx, int argc, char **argv, int i) {
    if (strcmp(argv[i], "--batch") || i + 1 >= argc) return 0;
    *(int64_t *)ctx = atoll(argv[i + 1]);
    return 2;
}

static const char USAGE[] =
    "usage: bench_train [--case NAME]... [--batch N] [--compute-type f32|bf16]\n"
    "                   [--min-time SEC] [--min-reps R] [--max-reps R] [--warmup W]\n"
    "                   [--impl NAME]\n"
    "       bench_train --list | --info\n";

int main(int argc, char **argv) {
    bench_opts o = {.impl = "tfm", .min_time = 2.0, .min_reps = 5, .max_reps = 10000, .warmup = 2};
    int64_t batch = 0;
    const char *names[NCASES];
    for (int i = 0; i < NCASES; i++) names[i] = CASES[i].name;
    const bench_prog prog = {.name = "bench_train", .usage = USAGE, .case_names = names,
                             .ncase_names = NCASES, .extra = parse_batch, .extra_ctx = &batch,
                             .compute_type = true};
    int rc = bench_parse(&prog, argc, argv, &o);
    if (rc >= 0) return rc;
    if (o.warmup < 1) o.warmup = 1; /* the first step sizes the workspaces */
    const case_def *chosen[BENCH_MAX_CASES];
    for (int i = 0; i < o.ncases; i++) {
        chosen[i] = NULL;
        for (int c = 0; c < NCASES; c++)
            if (!strcmp(o.cases[i], CASES[c].name)) chosen[i] = &CASES[c];
        if (!chosen[i]) {
            fprintf(stderr, "bench_train: unknown case '%s'\n", o.cases[i]);
            bench_usage(&prog, stderr);
            return 2;
        }
    }
    int nchosen = o.ncases;
    if (nchosen == 0)
        for (int i = 0; i < NCASES; i++) chosen[nchosen++] = &CASES[i];

    bench_header(&o, "");
    if (o.info) return 0;
    int failed = 0;
    for (int i = 0; i < nchosen; i++) failed |= run_case(chosen[i], &o, batch);
    return failed ? 1 : 0;
}
