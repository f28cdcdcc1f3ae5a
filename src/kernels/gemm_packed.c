/* gemm_packed.c — the packed SGEMM driver: blocking, packing, threads, edges; and the
 * plain-C micro-kernel of the generic path (the SIMD ones are gemm_avx2.c and
 * gemm_avx512.c).
 *
 * Legend: M rows of C, N columns of C, K the contracted dimension; MR × NR micro-tile;
 * KC the K block; MC rows of op(A) and NP columns of op(B) packed at a time (all of them
 * at tfm's shapes); NC columns of op(B) computed at a time; T threads.
 *
 * Loops, all threads of the team in step:
 *   for pc in K by KC            (in order: the summation order of every element of C)
 *     for ic in M by MC, jp in N by NP:
 *       barrier; pack op(A)[ic:, pc:] → panels (KC, MR) and op(B)[pc:, jp:] → panels
 *       (KC, NR) into buffers the team shares, each thread 1/T of the panels; barrier
 *       for jc in the NP columns by NC:
 *         this thread's 1/T of the block's MR × NR tiles, row by row: the micro-kernel,
 *         with the MR × KC panel of A in L1 and the KC × NC block of B in L2
 * Packing is shared as in OpenBLAS and BLIS: every element of A and B is packed once per
 * K block, and a K block costs two barriers — one when C is a single (MC, NP) block, as at
 * tfm's shapes: the buffers are then doubled and block p + 1 packed after block p's tiles.
 * Which thread computes a tile changes with T, its arithmetic does not.
 */
#include "kernels/gemm_packed.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu_model.h"
#include "core/threads.h"

/* ---- packing ---------------------------------------------------------------------- */

void gemm_pack_generic(const float *src, int64_t ld, bool k_contiguous, int64_t kc, int64_t n,
                       int w, float *dst) {
    const int64_t panel = (int64_t)w * kc;
    if (!k_contiguous) {
        gemm_pack_copy(src, ld, kc, n, w, dst);
        return;
    }
    for (int64_t p = 0; p < n; p += w, dst += panel) { /* w rows along k, transposed */
        const int m = n - p < w ? (int)(n - p) : w;
        for (int i = 0; i < m; i++) {
            const float *row = src + (p + i) * ld;
            for (int64_t k = 0; k < kc; k++) dst[k * w + i] = row[k];
        }
        for (int i = m; i < w; i++)
            for (int64_t k = 0; k < kc; k++) dst[k * w + i] = 0.0f;
    }
}

/* ---- the generic micro-kernel ------------------------------------------------------- */

/* 4 × 8: eight 4-wide accumulators for the baseline SSE2 (16 registers); wider tiles make
 * GCC spill or shuffle (measured: 4 × 16 runs at a quarter of the speed). */
#define GEN_MR 4
#define GEN_NR 8

/* acc[i][:] += a[i] · b[:] for each k: the j loop is what the compiler vectorises. */
static void micro_generic(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                          float alpha, float beta) {
    float acc[GEN_MR][GEN_NR] = {{0.0f}};
    for (int64_t k = 0; k < kc; k++, a += GEN_MR, b += GEN_NR)
        for (int i = 0; i < GEN_MR; i++) {
            const float ai = a[i];
            for (int j = 0; j < GEN_NR; j++) acc[i][j] += ai * b[j];
        }
    for (int i = 0; i < GEN_MR; i++) {
        float *ci = c + i * ldc;
        if (beta == 0.0f)
            for (int j = 0; j < GEN_NR; j++) ci[j] = alpha * acc[i][j];
        else
            for (int j = 0; j < GEN_NR; j++) ci[j] = alpha * acc[i][j] + beta * ci[j];
    }
}

static const gemm_kernel gemm_kernel_generic = {
    .name = "generic", .mr = GEN_MR, .nr = GEN_NR, .kc = 256, .mc = 4096, .np = 4096, .nc = 512,
    .micro = micro_generic, .pack = gemm_pack_generic,
};

/* Every kernel of each path, the one most CPUs take first. */
#define GEMM_VARIANTS 2
static const gemm_kernel *const path_kernels[CPU_PATHS][GEMM_VARIANTS] = {
    [CPU_GENERIC] = {&gemm_kernel_generic},
#if defined(TFM_HAVE_X86_KERNELS)
    [CPU_AVX2] = {&gemm_kernel_avx2},
    [CPU_AVX512] = {&gemm_kernel_avx512, &gemm_kernel_avx512_intel},
#endif
};

/* AVX-512: 8 × 32 everywhere (on Zen 4 it runs at the FMA peak, 1 zmm FMA a cycle); on
 * Intel (two 512-bit FMA ports, 2 MiB L2) with a K block of 512 for op(A) not transposed,
 * measured 1–3% faster there, and of 256 for dW = dyᵀ·x (the measurements are in
 * gemm_intel_avx512.c). Zen 5 and other AMD keep Zen 4's (not measured). */
const gemm_kernel *gemm_kernel_for_product(cpu_path p, bool trans_a) {
    if (p < 0 || p >= CPU_PATHS || !cpu_supported(p)) return NULL;
#if defined(TFM_HAVE_X86_KERNELS)
    if (p == CPU_AVX512 && !trans_a && cpu_uarch_active() == CPU_UARCH_INTEL)
        return &gemm_kernel_avx512_intel;
#endif
    return path_kernels[p][0];
}

const gemm_kernel *gemm_kernel_for(cpu_path p) { return gemm_kernel_for_product(p, false); }

int gemm_kernels_of(cpu_path p, const gemm_kernel **out, int cap) {
    const gemm_kernel *chosen = gemm_kernel_for(p);
    int n = 0;
    if (!chosen) return 0;
    if (n < cap) out[n++] = chosen;
    for (int v = 0; v < GEMM_VARIANTS && n < cap; v++)
        if (path_kernels[p][v] && path_kernels[p][v] != chosen) out[n++] = path_kernels[p][v];
    return n;
}

/* ---- packing buffers ---------------------------------------------------------------- */

/* One spare buffer, kept between calls so that the steady state allocates nothing. A call
 * takes it (atomically, so concurrent callers never share one) and puts it back; a call
 * that finds none or too small a one allocates its own. Its capacity in floats is stored
 * in its first 64 bytes. Still reachable at exit: not a leak. */
#define BUF_HEAD 16 /* floats: 64 bytes, keeps the data 64-byte aligned */
static float *_Atomic spare_buffer;

static size_t buffer_capacity(const float *buf) {
    size_t cap;
    memcpy(&cap, buf, sizeof cap);
    return cap;
}

static float *buffer_take(size_t floats) {
    float *buf = atomic_exchange(&spare_buffer, NULL);
    if (buf && buffer_capacity(buf) >= floats) return buf;
    free(buf);
    size_t bytes = (floats + BUF_HEAD) * sizeof(float);
    bytes = (bytes + 63) / 64 * 64;
    buf = aligned_alloc(64, bytes);
    if (buf) memcpy(buf, &floats, sizeof floats);
    return buf;
}

static void buffer_give(float *buf) {
    float *old = atomic_exchange(&spare_buffer, buf);
    if (!old) return;
    /* Another call put one back meanwhile: keep the larger. */
    if (buffer_capacity(old) > buffer_capacity(buf)) {
        old = atomic_exchange(&spare_buffer, old);
    }
    free(old);
}

/* ---- the driver ----------------------------------------------------------------------- */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* One tile's product into c: from packed a (lda 0) or from A's rows in place (lda their
 * stride, op(A) not transposed). */
static void tile_product(const gemm_kernel *k, int64_t kc, const float *a, int64_t lda,
                         const float *b, float *c, int64_t ldc, float alpha, float beta) {
    if (lda) k->micro_rows(kc, a, lda, b, c, ldc, alpha, beta);
    else k->micro(kc, a, b, c, ldc, alpha, beta);
}

/* The partial tile at an edge of C: computed as a full tile in `tile` with the micro-kernel
 * (the same arithmetic as everywhere else), then its m × n corner copied out. A's rows are
 * read in place (lda ≠ 0) only when all MR of them exist (m = MR). */
#define TILE_MAX (32 * 64)
static void edge_tile(const gemm_kernel *k, int64_t kc, const float *a, int64_t lda,
                      const float *b, float *c, int64_t ldc, float alpha, float beta, int m,
                      int n) {
    alignas(64) float tile[TILE_MAX];
    const int nr = k->nr;
    if (beta != 0.0f) {
        memset(tile, 0, (size_t)k->mr * (size_t)nr * sizeof(float));
        for (int i = 0; i < m; i++) memcpy(tile + i * nr, c + i * ldc, (size_t)n * sizeof(float));
    }
    tile_product(k, kc, a, lda, b, tile, nr, alpha, beta);
    for (int i = 0; i < m; i++) memcpy(c + i * ldc, tile + i * nr, (size_t)n * sizeof(float));
}

typedef struct gemm_args {
    const gemm_kernel *k;
    bool trans_a, trans_b;
    int64_t M, N, K;
    float alpha, beta;
    const float *A;
    const void *B;    /* float, or bf16 when b_bf16 */
    int64_t lda, ldb, ldc;
    float *C;
    int64_t mc, np;   /* rows of op(A), columns of op(B) packed at a time: all at most shapes */
    bool a_in_place;  /* op(A)'s whole MR-row panels read in place (k->micro_rows) */
    const float *bias; /* (N) copied into C's rows tile by tile before K block 0, or NULL */
    gemm_format format; /* what the panels hold (gemm_packed.h) */
    bool b_bf16;      /* B is stored as bf16 (a weight's bf16 twin) */
    float *abuf[2];   /* (mc, KC) packed op(A), shared by the team (with a_in_place: only
                       * the last panel, when partial); [1] NULL unless one block */
    float *bbuf[2];   /* (KC, np) packed op(B), shared; [1] as abuf[1] */
} gemm_args;

/* The k steps the micro-kernel makes for a K block of kc: kc, or in the bf16 formats kc
 * rounded up to a whole pair (the pad is zero). */
static int64_t kc_steps(const gemm_args *g, int64_t kc) {
    return g->format == GEMM_F32 ? kc : kc + (kc & 1);
}

/* Floats between a panel's rows of width 1: what a panel of width w takes is w times
 * this. Pairs of bf16 share one float's 32 bits. */
static int64_t kc_span(const gemm_args *g, int64_t kc) {
    return g->format == GEMM_BF16_PAIRS ? kc_steps(g, kc) / 2 : kc_steps(g, kc);
}

/* Packs panels [p0, p1) of op(A)[x0 :, k0 : k0 + kc] (w = MR) or op(B)[k0 :, x0 :] (w = NR)
 * of X, whose n rows (columns) from x0 make ceil(n / w) panels into dst. X is stored
 * (K, ·) when k_major (A with trans_a, B without trans_b), else (·, K); its elements are
 * floats, or bf16 when x_bf16 (then only in a bf16 format). */
static void pack_panels(const gemm_args *g, const void *X, bool x_bf16, int64_t ld, bool k_major,
                        int64_t k0, int64_t x0, int64_t kc, int64_t n, int w, int64_t p0,
                        int64_t p1, float *dst) {
    if (p0 >= p1) return;
    const int64_t first = x0 + p0 * w, count = min64(n, p1 * w) - p0 * w;
    const size_t es = x_bf16 ? sizeof(uint16_t) : sizeof(float);
    const char *x = (const char *)X + (size_t)(k_major ? k0 * ld + first : first * ld + k0) * es;
    dst += p0 * w * kc_span(g, kc);
    if (g->format == GEMM_F32)
        g->k->pack((const float *)x, ld, !k_major, kc, count, w, dst);
    else
        gemm_pack_bf16(g->format, x, x_bf16, ld, !k_major, kc, count, w, dst);
}

/* The share [t0, t1) of tiles of an (mc, nc) block at C[ic:, jc:] in K block pc: tiles in
 * row-major order, so a share is whole rows of tiles when there are many. a, b the block's
 * packed op(A) and op(B). */
static void compute_tiles(const gemm_args *g, int64_t pc, int64_t kc, float beta,
                          const float *a, const float *b, int64_t ic, int64_t mc, int64_t jc,
                          int64_t nc, int64_t t0, int64_t t1) {
    const gemm_kernel *k = g->k;
    const int mr = k->mr, nr = k->nr;
    const int64_t bp = ceil_div(nc, nr), span = kc_span(g, kc), steps = kc_steps(g, kc);
    for (int64_t t = t0; t < t1; t++) {
        const int64_t ir = t / bp * mr, jr = t % bp * nr;
        float *c = g->C + (ic + ir) * g->ldc + jc + jr;
        const int m = (int)min64(mr, mc - ir), n = (int)min64(nr, nc - jr);
        const bool in_place = g->a_in_place && m == mr;
        const float *at = in_place ? g->A + (ic + ir) * g->lda + pc : a + ir * span;
        const int64_t lda = in_place ? g->lda : 0;
        if (g->bias && pc == 0) /* C = bias, then += the product (beta 1), from L1 */
            for (int i = 0; i < m; i++) memcpy(c + i * g->ldc, g->bias + jc + jr, (size_t)n * 4);
        if (m == mr && n == nr)
            tile_product(k, steps, at, lda, b + jr * span, c, g->ldc, g->alpha, beta);
        else
            edge_tile(k, steps, at, lda, b + jr * span, c, g->ldc, g->alpha, beta, m, n);
    }
}

/* This thread's share (id of T) of packing K block pc of the (mc, np) block at op(A)[ic:],
 * op(B)[:, jp:] into a and b: op(A) only when jp = 0 (whole, or only a partial last panel
 * when A is read in place). */
static void pack_block(const gemm_args *g, int64_t pc, int64_t ic, int64_t mc, int64_t jp,
                       int64_t np, float *a, float *b, int id, int T) {
    const gemm_kernel *k = g->k;
    const int mr = k->mr, nr = k->nr;
    const int64_t kc = min64(k->kc, g->K - pc), ap = ceil_div(mc, mr), bp = ceil_div(np, nr);
    if (jp == 0 && !g->a_in_place)
        pack_panels(g, g->A, false, g->lda, g->trans_a, pc, ic, kc, mc, mr, ap * id / T,
                    ap * (id + 1) / T, a);
    else if (jp == 0 && mc % mr && id == T - 1)
        pack_panels(g, g->A, false, g->lda, g->trans_a, pc, ic, kc, mc, mr, ap - 1, ap, a);
    pack_panels(g, g->B, g->b_bf16, g->ldb, !g->trans_b, pc, jp, kc, np, nr, bp * id / T,
                bp * (id + 1) / T, b);
}

/* This thread's share of the tiles of every NC-column block of the (mc, np) block at
 * C[ic:, jp:] in K block pc (the packed KC × NC of op(B) it reads stays in L2). */
static void compute_block(const gemm_args *g, int64_t pc, int64_t ic, int64_t mc, int64_t jp,
                          int64_t np, const float *a, const float *b, int id, int T) {
    const gemm_kernel *k = g->k;
    const int64_t kc = min64(k->kc, g->K - pc), ap = ceil_div(mc, k->mr);
    const float beta = pc == 0 ? g->beta : 1.0f;
    for (int64_t jc = 0; jc < np; jc += k->nc) {
        const int64_t nc = min64(k->nc, np - jc), tiles = ap * ceil_div(nc, k->nr);
        compute_tiles(g, pc, kc, beta, a, b + jc * kc_span(g, kc), ic, mc, jp + jc, nc,
                      tiles * id / T, tiles * (id + 1) / T);
    }
}

/* The whole product, run by every thread of the team (id of T) in step. Per K block the
 * team packs op(A) and op(B) (all of both at most shapes), each thread 1/T of the panels;
 * a barrier; then each thread computes its share of the tiles; a barrier before the
 * buffers are reused. */
static void gemm_team(const gemm_args *g, int id, int T) {
    for (int64_t pc = 0; pc < g->K; pc += g->k->kc)
        for (int64_t ic = 0; ic < g->M; ic += g->mc) {
            const int64_t mc = min64(g->mc, g->M - ic);
            for (int64_t jp = 0; jp < g->N; jp += g->np) {
                const int64_t np = min64(g->np, g->N - jp);
#pragma omp barrier
                pack_block(g, pc, ic, mc, jp, np, g->abuf[0], g->bbuf[0], id, T);
#pragma omp barrier
                compute_block(g, pc, ic, mc, jp, np, g->abuf[0], g->bbuf[0], id, T);
            }
        }
}

/* The same when all of C is one (mc, np) block (tfm's shapes): double-buffered, each
 * thread packs its share of K block p + 1 right after its tiles of block p, and one
 * barrier per K block separates the two (the buffer packed into was last read in block
 * p − 1, which every thread finished before the previous barrier). */
static void gemm_team_one_block(const gemm_args *g, int id, int T) {
    const int64_t KC = g->k->kc;
    pack_block(g, 0, 0, g->M, 0, g->N, g->abuf[0], g->bbuf[0], id, T);
#pragma omp barrier
    for (int64_t pc = 0, x = 0; pc < g->K; pc += KC, x ^= 1) {
        compute_block(g, pc, 0, g->M, 0, g->N, g->abuf[x], g->bbuf[x], id, T);
        if (pc + KC < g->K) {
            pack_block(g, pc + KC, 0, g->M, 0, g->N, g->abuf[x ^ 1], g->bbuf[x ^ 1], id, T);
#pragma omp barrier
        }
    }
}

/* The product of g (its buffers still to be made), over the threads. */
static bool gemm_run(gemm_args *g) {
    const gemm_kernel *k = g->k;
    const int64_t M = g->M, N = g->N, K = g->K;
    /* Threads: at most one per 2^20 multiply-adds and one per tile. */
    const double work = (double)M * (double)N * (double)K;
    int T = tfm_max_threads();
    if (work < (double)T * (1 << 20)) T = work < (1 << 21) ? 1 : (int)(work / (1 << 20));
    const int64_t tiles = ceil_div(M, k->mr) * ceil_div(N, k->nr);
    if (T > tiles) T = (int)tiles;
    if (T < 1) T = 1;

    /* Shared packing space, as small as this product allows, in whole cache lines: an
     * (mc, KC) block of op(A) and a (KC, np) block of op(B). */
    const int64_t kc = kc_span(g, min64(k->kc, K)), mc = min64(k->mc, M), np = min64(k->np, N);
    const size_t a_floats = (size_t)(ceil_div(ceil_div(mc, k->mr) * k->mr * kc, 16) * 16);
    const size_t b_floats = (size_t)(ceil_div(ceil_div(np, k->nr) * k->nr * kc, 16) * 16);
    const bool one_block = M <= mc && N <= np && K > k->kc; /* and more than one K block */
    const size_t halves = one_block ? 2 : 1;
    float *buf = buffer_take(halves * (a_floats + b_floats));
    if (!buf) return false;
    float *space = buf + BUF_HEAD;
    g->mc = mc, g->np = np;
    g->abuf[0] = space, g->abuf[1] = one_block ? space + a_floats : NULL;
    g->bbuf[0] = space + halves * a_floats;
    g->bbuf[1] = one_block ? space + halves * a_floats + b_floats : NULL;
#pragma omp parallel num_threads(T) if (T > 1)
    {
#ifdef _OPENMP
        const int id = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        const int id = 0, nt = 1;
#endif
        if (one_block) gemm_team_one_block(g, id, nt);
        else gemm_team(g, id, nt);
    }
    buffer_give(buf);
    return true;
}

bool gemm_packed(const gemm_kernel *k, bool trans_a, bool trans_b, int64_t M, int64_t N,
                 int64_t K, float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                 float beta, const float *bias, float *C, int64_t ldc) {
    gemm_args g = {.k = k, .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K,
                   .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb,
                   .ldc = ldc, .C = C, .a_in_place = !trans_a && k->micro_rows, .bias = bias,
                   .format = GEMM_F32};
    return gemm_run(&g);
}

bool gemm_packed_bf16(const gemm_kernel *k, bool trans_a, bool trans_b, int64_t M, int64_t N,
                      int64_t K, float alpha, const float *A, int64_t lda, const void *B,
                      bool b_bf16, int64_t ldb, float beta, const float *bias, float *C,
                      int64_t ldc) {
    gemm_args g = {.k = k, .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K,
                   .alpha = alpha, .beta = beta, .A = A, .B = B, .lda = lda, .ldb = ldb,
                   .ldc = ldc, .C = C, .a_in_place = false, .bias = bias,
                   .format = k->format == GEMM_BF16_PAIRS ? GEMM_BF16_PAIRS : GEMM_BF16_FMA,
                   .b_bf16 = b_bf16};
    return gemm_run(&g);
}
