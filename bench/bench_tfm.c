/* bench_tfm.c — time tfm's forward pass on fixed cases; print one machine-readable
 * line per case. Uses only the public header. bench/bench_torch.py runs the same cases
 * with PyTorch and prints the same line format; bench/run.sh runs both and tabulates.
 *
 * Usage: bench_tfm [--case NAME]... [--compute-type f32|bf16] [--min-time SEC]
 *                  [--min-reps R] [--max-reps R] [--warmup W] [--impl NAME]
 *        bench_tfm --list            (the case names, one a line)
 *        bench_tfm --info            (the '#' header line only: SIMD and bf16 paths, threads)
 *   default: every case, compute type f32, min-time 2 s, min-reps 5, max-reps 10000,
 *   warm-up 1, impl tfm. --compute-type bf16: every module runs with
 *   tfm_module_set_compute_type(TFM_COMPUTE_BF16) (bf16 products, FP32 accumulation and
 *   everything else FP32; see tfm.h); the '#' line's bf16_path= says how this CPU runs
 *   them. TFM_CPU=avx512|avx2|generic forces the SIMD path, as for the CLI.
 *
 * Cases (all batch_first, eval forward, modules from tfm_module_create(cfg, seed)):
 *   transformer  nn.Transformer default size: d_model 512, nhead 8, 6 + 6 layers,
 *                dim_feedforward 2048, relu, post-norm; N 8, S = T = 128, causal float
 *                tgt_mask from tfm_generate_square_subsequent_mask
 *   mha          MultiheadAttention E 512, H 8, N 8, L = S = 128, self-attention
 *                (query = key = value, one pointer), need_weights false
 *   encoder6     TransformerEncoder, 6 layers, d_model 512, nhead 8, ff 2048, N 8, L 128
 *   mha_long     MultiheadAttention E 512, H 8, N 1, L = S = 4096, self-attention
 *   bert384      BERT-style encoder (MiniLM/BERT-small width): TransformerEncoder, 6 layers,
 *                d_model 384, nhead 12 (D 32), ff 1536, gelu, layer_norm_eps 1e-12,
 *                post-norm; N 32, L 128
 *   bert768      BERT-base width: 6 layers, d_model 768, nhead 12 (D 64), ff 3072, gelu,
 *                layer_norm_eps 1e-12, post-norm; N 8, L 128 (batch 8 keeps a forward
 *                near 0.5 s on 2 cores: about as many FLOPs as bert384's)
 *
 * Timing: untimed warm-up forwards (at least one: it sizes the module's workspace), then timed
 * forwards until both min-time seconds have passed and min-reps were done (or max-reps
 * reached); the median and the minimum of the per-forward wall times are reported.
 *
 * Output: a '#' header line (bench/common.h: impl, cpu_path, threads, timing), then one
 * line per case (keys fixed, values without spaces):
 *   BENCH impl=tfm case=mha reps=57 median_ms=12.345 min_ms=12.001 gflop=2.416 gflops=195.7 compute=f32
 * gflops = gflop / median time. Lines starting with '#' are information. Exit status is
 * non-zero if any case fails (the error is printed on stderr).
 *
 * Legend: N batch, L query (target) length, S key (source) length, E model width,
 * H heads, D = E / H head dim, F feed-forward width.
 */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

/* ---- FLOP counts: matrix products only, 2·M·N·K per GEMM -----------------------
 * Element-wise work (bias, softmax, masks, LayerNorm, residuals, activations) is not
 * counted. Attention is counted dense (every (query, key) pair), also under a causal
 * mask: tfm computes all scores, and it keeps the figure the same for both libraries.
 *
 * MultiheadAttention, queries (N, L, E), keys/values (N, S, E):
 *   Q projection     (N·L, E) x (E, E)    2·N·L·E·E
 *   K, V projections (N·S, E) x (E, 2E)   2·N·S·E·2E
 *   Q Kᵀ per head    (L, D) x (D, S)      2·L·S·D, times N·H  = 2·N·L·S·E
 *   P V  per head    (L, S) x (S, D)      2·L·S·D, times N·H  = 2·N·L·S·E
 *   out projection   (N·L, E) x (E, E)    2·N·L·E·E
 *   total = 4·N·L·E² + 4·N·S·E² + 4·N·L·S·E      (self-attention: 8·N·L·E² + 4·N·L²·E)
 *   = bench_flops_mha (common.h)
 * Feed-forward (linear1 E→F, linear2 F→E) on N·L rows: 4·N·L·E·F = bench_flops_ffn
 * Encoder layer (length L): mha(N, L, L) + ffn(N, L)
 * Decoder layer (target T, memory S): mha(N, T, T) + mha(N, T, S) + ffn(N, T)
 * Transformer: enc_layers · encoder layer(S) + dec_layers · decoder layer(T, S)
 */
static double flops_encoder_layer(double N, double L, double E, double F) {
    return bench_flops_mha(N, L, L, E) + bench_flops_ffn(N, L, E, F);
}
static double flops_decoder_layer(double N, double T, double S, double E, double F) {
    return bench_flops_mha(N, T, T, E) + bench_flops_mha(N, T, S, E) + bench_flops_ffn(N, T, E, F);
}

/* ---- deterministic inputs ----------------------------------------------------- */
/* Values in [-1, 1) from a 64-bit LCG (the high bits), the same for every run. */
static float *make_input(size_t count, uint64_t seed) {
    float *x = malloc(count * sizeof(float));
    if (!x) return NULL;
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < count; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        x[i] = (float)((double)(s >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
    }
    return x;
}

static tfm_tensor seq_tensor(float *data, int64_t N, int64_t L, int64_t E) {
    return (tfm_tensor){.data = data, .dtype = TFM_F32, .ndim = 3, .shape = {N, L, E}};
}

/* One prepared case: the module and its forward arguments (inputs owned here). */
typedef struct bench_case {
    const char *name;
    tfm_module *m;
    tfm_inputs in;
    float *bufs[3]; /* input buffers to free */
    double flop;
} bench_case;

#define TRY(call)                                                                          \
    do {                                                                                   \
        if ((call) != TFM_OK) {                                                            \
            fprintf(stderr, "bench_tfm: %s: %s: %s\n", c->name, #call, tfm_last_error()); \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

#define ALLOC(p, count, seed)                                                   \
    do {                                                                        \
        if (!((p) = make_input((count), (seed)))) {                             \
            fprintf(stderr, "bench_tfm: %s: out of memory for inputs\n", c->name); \
            return 1;                                                           \
        }                                                                       \
    } while (0)

/* MultiheadAttention E, H on self-attention inputs (N, L, E). */
static int setup_mha(bench_case *c, int64_t N, int64_t L, int64_t E, int64_t H) {
    tfm_config cfg;
    tfm_config_default(&cfg, TFM_MULTIHEAD_ATTENTION);
    cfg.embed_dim = E, cfg.num_heads = H, cfg.batch_first = true;
    TRY(tfm_module_create(&cfg, 1, &c->m));
    float *x;
    ALLOC(x, (size_t)(N * L * E), 11);
    c->bufs[0] = x;
    tfm_inputs_init(&c->in);
    c->in.query = c->in.key = c->in.value = seq_tensor(x, N, L, E); /* one pointer */
    c->in.need_weights = false;
    c->flop = bench_flops_mha((double)N, (double)L, (double)L, (double)E);
    return 0;
}

/* TransformerEncoder: num_layers post-norm layers (activation act, LayerNorm eps), no
 * final norm, src (N, L, E). */
static int setup_encoder(bench_case *c, int64_t layers, int64_t N, int64_t L, int64_t E,
                         int64_t H, int64_t F, tfm_activation act, double eps) {
    tfm_config cfg;
    tfm_config_default(&cfg, TFM_TRANSFORMER_ENCODER);
    cfg.num_layers = layers, cfg.d_model = E, cfg.nhead = H, cfg.dim_feedforward = F;
    cfg.activation = act, cfg.layer_norm_eps = eps, cfg.batch_first = true;
    TRY(tfm_module_create(&cfg, 1, &c->m));
    float *x;
    ALLOC(x, (size_t)(N * L * E), 12);
    c->bufs[0] = x;
    tfm_inputs_init(&c->in);
    c->in.src = seq_tensor(x, N, L, E);
    c->flop = (double)layers * flops_encoder_layer((double)N, (double)L, (double)E, (double)F);
    return 0;
}

/* nn.Transformer: src (N, S, E), tgt (N, T, E), causal float tgt_mask (T, T). */
static int setup_transformer(bench_case *c, int64_t enc, int64_t dec, int64_t N, int64_t S,
                             int64_t T, int64_t E, int64_t H, int64_t F) {
    tfm_config cfg;
    tfm_config_default(&cfg, TFM_TRANSFORMER);
    cfg.d_model = E, cfg.nhead = H, cfg.dim_feedforward = F;
    cfg.num_encoder_layers = enc, cfg.num_decoder_layers = dec;
    cfg.activation = TFM_RELU, cfg.norm_first = false, cfg.batch_first = true;
    TRY(tfm_module_create(&cfg, 1, &c->m));
    float *src, *tgt, *mask;
    ALLOC(src, (size_t)(N * S * E), 13);
    c->bufs[0] = src;
    ALLOC(tgt, (size_t)(N * T * E), 14);
    c->bufs[1] = tgt;
    ALLOC(mask, (size_t)(T * T), 15);
    c->bufs[2] = mask;
    TRY(tfm_generate_square_subsequent_mask(T, mask));
    tfm_inputs_init(&c->in);
    c->in.src = seq_tensor(src, N, S, E);
    c->in.tgt = seq_tensor(tgt, N, T, E);
    c->in.tgt_mask = (tfm_tensor){.data = mask, .dtype = TFM_F32, .ndim = 2, .shape = {T, T}};
    c->flop = (double)enc * flops_encoder_layer((double)N, (double)S, (double)E, (double)F) +
              (double)dec * flops_decoder_layer((double)N, (double)T, (double)S, (double)E, (double)F);
    return 0;
}

static const char *const CASES[] = {"transformer", "mha", "encoder6", "mha_long", "bert384",
                                    "bert768"};
enum { NCASES = sizeof CASES / sizeof CASES[0] };

static int setup(bench_case *c, const char *name) {
    memset(c, 0, sizeof *c);
    c->name = name;
    if (!strcmp(name, "transformer")) return setup_transformer(c, 6, 6, 8, 128, 128, 512, 8, 2048);
    if (!strcmp(name, "mha")) return setup_mha(c, 8, 128, 512, 8);
    if (!strcmp(name, "encoder6")) return setup_encoder(c, 6, 8, 128, 512, 8, 2048, TFM_RELU, 1e-5);
    if (!strcmp(name, "mha_long")) return setup_mha(c, 1, 4096, 512, 8);
    if (!strcmp(name, "bert384")) return setup_encoder(c, 6, 32, 128, 384, 12, 1536, TFM_GELU, 1e-12);
    if (!strcmp(name, "bert768")) return setup_encoder(c, 6, 8, 128, 768, 12, 3072, TFM_GELU, 1e-12);
    fprintf(stderr, "bench_tfm: unknown case '%s'\n", name);
    return 1;
}

static void teardown(bench_case *c) {
    tfm_module_free(c->m);
    for (int i = 0; i < 3; i++) free(c->bufs[i]);
}

/* Warm up, time, print the BENCH line. */
static int run_case(const char *name, const bench_opts *o) {
    bench_case cc, *c = &cc;
    int rc = setup(c, name);
    if (!rc && tfm_module_set_compute_type(c->m, o->compute) != TFM_OK) {
        fprintf(stderr, "bench_tfm: %s: tfm_module_set_compute_type: %s\n", name, tfm_last_error());
        rc = 1;
    }
    double *t = rc ? NULL : malloc((size_t)o->max_reps * sizeof(double));
    if (!rc && !t) fprintf(stderr, "bench_tfm: out of memory\n");
    if (rc || !t) goto done;
    tfm_outputs out;
    bench_loop l;
    for (int i = 0; i < (o->warmup > 1 ? o->warmup : 1); i++) /* the first sizes the workspace */
        if (tfm_forward(c->m, &c->in, &out) != TFM_OK) goto fail;
    for (l = bench_loop_start(o); bench_loop_more(&l); l.reps++) {
        double t0 = bench_now();
        if (tfm_forward(c->m, &c->in, &out) != TFM_OK) goto fail;
        t[l.reps] = bench_now() - t0;
    }
    double med = bench_median(t, l.reps);
    bench_line(o->impl, name, " reps=%d median_ms=%.3f min_ms=%.3f gflop=%.3f gflops=%.1f compute=%s",
               l.reps, 1e3 * med, 1e3 * t[0], c->flop * 1e-9, c->flop * 1e-9 / med,
               tfm_compute_type_name(o->compute));
    goto done;
fail:
    fprintf(stderr, "bench_tfm: %s: tfm_forward: %s\n", name, tfm_last_error());
    rc = 1;
done:
    free(t);
    teardown(c);
    return rc ? 1 : 0;
}

static const char USAGE[] =
    "usage: bench_tfm [--case NAME]... [--compute-type f32|bf16] [--min-time SEC]\n"
    "                 [--min-reps R] [--max-reps R] [--warmup W] [--impl NAME]\n"
    "       bench_tfm --list | --info\n";

int main(int argc, char **argv) {
    bench_opts o = {.impl = "tfm", .min_time = 2.0, .min_reps = 5, .max_reps = 10000, .warmup = 1};
    const bench_prog prog = {.name = "bench_tfm", .usage = USAGE, .case_names = CASES,
                             .ncase_names = NCASES, .compute_type = true};
    int rc = bench_parse(&prog, argc, argv, &o);
    if (rc >= 0) return rc;
    bench_header(&o, "");
    if (o.info) return 0;
    if (o.ncases == 0)
        for (int i = 0; i < NCASES; i++) o.cases[o.ncases++] = CASES[i];
    int failed = 0;
    for (int i = 0; i < o.ncases; i++) failed |= run_case(o.cases[i], &o);
    return failed ? 1 : 0;
}
