/* attn_tiled_impl.h — the tiled (flash-attention style) attention kernels, written once
 * with GCC vector types and compiled once per instruction set: attn_tiled_avx512.c,
 * attn_tiled_avx2.c and attn_tiled_generic.c define
 *   ATT_VW      floats per vector (16, 8, 4)
 *   ATT_NV      vectors per column tile of the micro-kernel
 *   ATT_MR      rows per tile of the micro-kernel
 *   ATT_FN(x)   the exported name of x for that instruction set (x ## _avx512, ...)
 * and include this file. The design is described in docs/kernels.md.
 *
 * Forward, per (batch n, head h, block of ATT_BQ queries): for each block of ATT_BK keys,
 * the score block S = Q·Kᵀ·scale + bias (ATT_BQ × ATT_BK, in L1), an online softmax per
 * row (running max m, running sum l, the output accumulator O rescaled when m grows),
 * O += P·V. At the end O /= l and lse = m + log l is saved for backward. Memory per
 * thread: the head's K and V packed (O(S·D)) and one score block — never L × S.
 * Backward, per (n, h): for each key block, for each query block, recompute P from lse,
 * dP = dO·Vᵀ, dV += Pᵀ·dO, dS = P∘(dP − δ)·scale with δ_i = dO_i·O_i (bf16 compute:
 * Σ_j P_ij·dP_ij, from a first pass, see delta_pass), dQ += dS·K, dK += dSᵀ·Q. One thread owns a whole head, in a fixed order: results do not depend on
 * the thread count.
 * All products go through one register-tiled micro-kernel (tile()): C (MR × NV vectors)
 * += A·B with A read by strides (so Pᵀ and dSᵀ need no transposed copy) and B rows
 * contiguous (packed panels).
 * Legend: N batch, H heads, L queries, S keys, D head dim, Dp = D rounded up to ATT_VW.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/threads.h"
#include "kernels/attn_tiled.h"
#include "kernels/bf16.h"
#include "kernels/elementwise_isa.h" /* ew_drop, ew_drop_factor: dropout's one decision */

#define ATT_BQ (12 * ATT_MR) /* queries per block: whole register tiles (72 or 48) */
#define ATT_BK 64 /* keys per block (a multiple of ATT_NV · ATT_VW) */

typedef float vf __attribute__((vector_size(ATT_VW * sizeof(float))));
typedef int32_t vi __attribute__((vector_size(ATT_VW * sizeof(int32_t))));

#define ATT_INLINE static inline __attribute__((always_inline))

ATT_INLINE vf vload(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}
ATT_INLINE void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* x − 0 is exact (+0 + −0 would not be), so the compiler folds it to a bare broadcast */
ATT_INLINE vf vsplat(float x) { return x - (vf){0}; }
/* where m: a, else b (m lanes all ones or all zeros) */
ATT_INLINE vf vselect(vi m, vf a, vf b) { return (vf)(((vi)a & m) | ((vi)b & ~m)); }
ATT_INLINE float vsum(vf v) {
    float s = 0.0f;
    for (int k = 0; k < ATT_VW; k++) s += v[k];
    return s;
}

/* bf16 compute (attn_args.bf16): x rounded to the nearest bf16, ties to even, NaN kept a
 * (quiet) NaN: kernels/bf16.h's bf16_round, lane by lane. */
typedef uint32_t vu __attribute__((vector_size(ATT_VW * sizeof(uint32_t))));
ATT_INLINE vf vbf16(vf x) {
    const vu u = (vu)x;
    const vu r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
    const vu nan = (vu)((u & 0x7fffffffu) > 0x7f800000u);
    return (vf)((r & ~nan) | ((u | 0x400000u) & 0xffff0000u & nan));
}

/* x (n) rounded to bf16 in place. */
static void round_bf16(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + ATT_VW <= n; i += ATT_VW) vstore(x + i, vbf16(vload(x + i)));
    for (; i < n; i++) x[i] = bf16_round(x[i]);
}

/* e^x lane by lane (Cephes-style: x = n·ln2 + r, a degree-6 polynomial in r, times 2^n),
 * within 2 ulp of expf; x ≤ −88 gives 0 (−inf included), NaN stays NaN. Only used on
 * x ≤ 0 (a score minus the running max) — x above 88 is clamped. */
#if ATT_VW == 16 && defined(__AVX512F__)
#include <immintrin.h>
/* The same with AVX-512's own rounding and 2^n scaling (vrndscaleps, vscalefps): no
 * clamps or integer tricks needed, −inf gives 0 and NaN stays NaN by themselves. */
ATT_INLINE vf vexp(vf x) {
    __m512 v = (__m512)x;
    v = _mm512_max_ps(v, _mm512_set1_ps(-104.0f)); /* −inf → underflow (NaN passes: 2nd arg) */
    v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask((__m512)x, (__m512)x, _CMP_UNORD_Q), (__m512)x);
    __m512 fn = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(0.693359375f), v);
    r = _mm512_fnmadd_ps(fn, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return (vf)_mm512_scalef_ps(p, fn);
}
#else
ATT_INLINE vf vexp(vf x) {
    x = vselect(x < vsplat(-88.0f), vsplat(-88.0f), x);
    x = vselect(x > vsplat(88.0f), vsplat(88.0f), x);
    vf t = x * 1.44269504088896341f;
    vf fn = (t + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5·2^23 */
    vf r = x - fn * 0.693359375f - fn * -2.12194440e-4f;
    vf p = vsplat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    vi n = __builtin_convertvector(fn, vi);
    vi bits = (n + 127) << 23; /* 2^n; n = −127 (x ≈ −88) gives 0 */
    bits = bits & (vi)(n > -127);
    return p * (vf)bits;
}
#endif

/* c (mr rows, ldc apart; nv vectors each) += A · B over k < K, where A(r, k) is
 * a[r·ars + k·aks] and row k of B starts at b + k·ldb; or, when not accumulating,
 * c = alpha · A · B. Constant mr, nv: registers. */
ATT_INLINE void tile(const int mr, const int nv, int64_t K, const float *a, int64_t ars,
                     int64_t aks, const float *b, int64_t ldb, float *c, int64_t ldc,
                     const int accumulate, float alpha) {
    vf acc[ATT_MR][ATT_NV];
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = accumulate ? vload(c + r * ldc + v * ATT_VW) : vsplat(0.0f);
    for (int64_t k = 0; k < K; k++) {
        vf bv[ATT_NV];
        for (int v = 0; v < nv; v++) bv[v] = vload(b + k * ldb + v * ATT_VW);
        for (int r = 0; r < mr; r++) {
            vf ar = vsplat(a[r * ars + k * aks]);
            for (int v = 0; v < nv; v++) acc[r][v] += ar * bv[v];
        }
    }
    for (int r = 0; r < mr; r++)
        for (int v = 0; v < nv; v++)
            vstore(c + r * ldc + v * ATT_VW, accumulate ? acc[r][v] : acc[r][v] * alpha);
}

/* The last mr < ATT_MR rows of a product: one vector column at a time, mr constant. */
static void edge_rows(int mr, int64_t Nc, int64_t K, const float *a, int64_t ars, int64_t aks,
                      const float *b, int64_t ldb, float *c, int64_t ldc, int accumulate,
                      float alpha) {
#define ATT_EDGE(R)                                                                          \
    case R:                                                                                  \
        for (int64_t j = 0; j < Nc; j += ATT_VW)                                             \
            if (accumulate)                                                                  \
                tile(R, 1, K, a, ars, aks, b + j, ldb, c + j, ldc, 1, 1.0f);                       \
            else                                                                             \
                tile(R, 1, K, a, ars, aks, b + j, ldb, c + j, ldc, 0, alpha);                       \
        break;
    switch (mr) {
        ATT_EDGE(1)
        ATT_EDGE(2)
        ATT_EDGE(3)
#if ATT_MR > 4
        ATT_EDGE(4)
        ATT_EDGE(5)
#endif
    default: break;
    }
#undef ATT_EDGE
}

/* C (M, Nc) += A (M, K) · B (K, Nc), or C = alpha · A · B when not accumulating; Nc a
 * multiple of ATT_VW; A by strides as tile(). */
static void block_product(int64_t M, int64_t Nc, int64_t K, const float *a, int64_t ars,
                          int64_t aks, const float *b, int64_t ldb, float *c, int64_t ldc,
                          int accumulate, float alpha) {
    const int64_t W = ATT_NV * ATT_VW;
    int64_t i = 0;
    for (; i + ATT_MR <= M; i += ATT_MR) {
        const float *ai = a + i * ars;
        float *ci = c + i * ldc;
        int64_t j = 0;
        if (accumulate) {
            for (; j + W <= Nc; j += W)
                tile(ATT_MR, ATT_NV, K, ai, ars, aks, b + j, ldb, ci + j, ldc, 1, 1.0f);
            for (; j < Nc; j += ATT_VW)
                tile(ATT_MR, 1, K, ai, ars, aks, b + j, ldb, ci + j, ldc, 1, 1.0f);
        } else {
            for (; j + W <= Nc; j += W)
                tile(ATT_MR, ATT_NV, K, ai, ars, aks, b + j, ldb, ci + j, ldc, 0, alpha);
            for (; j < Nc; j += ATT_VW)
                tile(ATT_MR, 1, K, ai, ars, aks, b + j, ldb, ci + j, ldc, 0, alpha);
        }
    }
    if (i < M)
        edge_rows((int)(M - i), Nc, K, a + i * ars, ars, aks, b, ldb, c + i * ldc, ldc,
                  accumulate, alpha);
}

static inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* Where batch n's keys and values start. */
static inline const float *keys_of(const attn_args *a, int64_t n) {
    return a->k + n * (a->kbs ? a->kbs : a->S) * a->ldk;
}
static inline const float *values_of(const attn_args *a, int64_t n) {
    return a->v + n * (a->vbs ? a->vbs : a->S) * a->ldv;
}

/* ---- packing: a head's keys or values into the layouts the micro-kernel reads ---- */

/* Panels of ATT_BK rows transposed: panel b is (D, ATT_BK) at xT + b·D·ATT_BK, with
 * xT[(b·D + d)·ATT_BK + jj] = x[(b·ATT_BK + jj)·ld + d]; rows past S are zero. */
static void pack_panels_t(float *xT, const float *x, int64_t ld, int64_t S, int64_t D) {
    const int64_t nb = (S + ATT_BK - 1) / ATT_BK;
    for (int64_t b = 0; b < nb; b++) {
        float *p = xT + b * D * ATT_BK;
        const int64_t j0 = b * ATT_BK, bk = S - j0 < ATT_BK ? S - j0 : ATT_BK;
        if (bk < ATT_BK) memset(p, 0, (size_t)(D * ATT_BK) * sizeof(float));
        for (int64_t jj = 0; jj < bk; jj++) {
            const float *row = x + (j0 + jj) * ld;
            for (int64_t d = 0; d < D; d++) p[d * ATT_BK + jj] = row[d];
        }
    }
}

/* xp (rows, Dp) = x (rows, ld) with columns D..Dp zero. */
static void pack_rows(float *xp, const float *x, int64_t ld, int64_t rows, int64_t D, int64_t Dp) {
    for (int64_t j = 0; j < rows; j++) {
        memcpy(xp + j * Dp, x + j * ld, (size_t)D * sizeof(float));
        memset(xp + j * Dp + D, 0, (size_t)(Dp - D) * sizeof(float));
    }
}

/* ---- scores ---- */

/* Scores s (rows, lds) of queries [i0, i0+rows) of (n, h) on keys [j0, j1), j1 ≤
 * masked_cols (s[r·lds] is key j0 of row r) += every mask, row by row: the float
 * attn_mask, then the key-padding row, then causality (key j > query i: −inf). The one
 * place masks are applied: block_scores (a block) and forward_row (one whole row). It
 * takes a block rather than a row so the mask pointers are set up once per block: a
 * per-row helper measured about 10% slower on a masked 256 × 256 head. */
ATT_INLINE void add_masks(float *s, int64_t lds, const attn_args *a, int64_t n, int64_t h,
                          int64_t i0, int64_t rows, int64_t j0, int64_t j1) {
    const attn_bias *b = a->bias;
    const int64_t Sm = b->masked_cols, w = j1 - j0;
    const float *attn =
        b->attn ? b->attn + (b->attn_per_head ? (n * a->H + h) * a->L * Sm : 0) + j0 : NULL;
    const float *kpm = b->key_padding ? b->key_padding + n * Sm + j0 : NULL;
    for (int64_t r = 0; r < rows; r++) {
        float *sr = s + r * lds;
        const int64_t i = i0 + r;
        if (attn) {
            const float *m = attn + i * Sm;
            for (int64_t jj = 0; jj < w; jj++) sr[jj] += m[jj];
        }
        if (kpm)
            for (int64_t jj = 0; jj < w; jj++) sr[jj] += kpm[jj];
        if (b->causal)
            for (int64_t jj = i + 1 - j0 > 0 ? i + 1 - j0 : 0; jj < w; jj++) sr[jj] = -INFINITY;
    }
}

/* s (bq, ATT_BK) = block scores of queries [i0, i0+bq) and keys [j0, j0+bk) of (n, h):
 * q·k·scale + every mask; columns bk..ATT_BK become −inf. q (bq, ldq): the block's
 * query rows (head h's columns); kT: the block's panel. */
static void block_scores(float *s, const attn_args *a, const float *q, int64_t ldq,
                         const float *kT, int64_t n, int64_t h, int64_t i0, int64_t bq,
                         int64_t j0, int64_t bk, float scale) {
    block_product(bq, ATT_BK, a->D, q, ldq, 1, kT, ATT_BK, s, ATT_BK, 0, scale);
    const int64_t Sm = a->bias ? a->bias->masked_cols : 0;
    const int64_t jm = Sm - j0 < bk ? (Sm - j0 > 0 ? Sm - j0 : 0) : bk; /* masked: [0, jm) */
    for (int64_t r = 0; r < bq; r++)
        for (int64_t jj = bk; jj < ATT_BK; jj++) s[r * ATT_BK + jj] = -INFINITY;
    if (jm > 0) add_masks(s, ATT_BK, a, n, h, i0, bq, j0, j0 + jm);
}

/* Whether every score of the block is masked by causality (then it is skipped). */
static inline int block_all_causal(const attn_args *a, int64_t i_last, int64_t j0, int64_t bk) {
    return a->bias && a->bias->causal && j0 > i_last && j0 + bk <= a->bias->masked_cols;
}

/* The largest of s[0..ATT_BK) — NaN if any is NaN. */
static float row_max(const float *s) {
    vf mx = vsplat(-INFINITY);
    vi nan = (vi){0};
    for (int64_t j = 0; j < ATT_BK; j += ATT_VW) {
        vf x = vload(s + j);
        mx = vselect(x > mx, x, mx);
        nan |= (vi)(x != x);
    }
    float m = -INFINITY;
    int any_nan = 0;
    for (int k = 0; k < ATT_VW; k++) {
        m = mx[k] > m ? mx[k] : m;
        any_nan |= nan[k];
    }
    return any_nan ? NAN : m;
}

/* s[0..ATT_BK) = exp(s − m); returns their sum. */
static float row_exp(float *s, float m) {
    vf sum = vsplat(0.0f), mv = vsplat(m);
    for (int64_t j = 0; j < ATT_BK; j += ATT_VW) {
        vf e = vexp(vload(s + j) - mv);
        vstore(s + j, e);
        sum += e;
    }
    return vsum(sum);
}

/* ---- dropout on the weights ---- */

/* The call's dropout (seed, threshold and 1/(1 − p), computed once), or NULL when
 * a->dropout is not above 0. The decision is rng_dropout_scale's, in integers
 * (elementwise_isa.h), so the reference kernel's bits are kept. */
static const ew_drop *drop_make(ew_drop *d, const attn_args *a) {
    if (!(a->dropout > 0.0f)) return NULL;
    *d = (ew_drop){.seed = a->dropout_seed, .thresh = rng_dropout_threshold(a->dropout),
                   .scale = 1.0f / (1.0f - a->dropout)};
    return d;
}

/* The dropout counter of weight (n, h, i, j): ((n·H + h)·L + i)·S + j (attention.h). */
static inline uint64_t drop_index(const attn_args *a, int64_t n, int64_t h, int64_t i, int64_t j) {
    return (uint64_t)(((n * a->H + h) * a->L + i) * a->S + j);
}

/* s[0..bk) *= the dropout factors of counters i0, i0 + 1, ... A plain loop that GCC
 * vectorises on the AVX2 and AVX-512 paths (the hash is 64-bit multiplies and shifts, the
 * factor a select); backward_pair's loop is the same. */
static void row_dropout(float *s, const ew_drop *d, uint64_t i0, int64_t bk) {
    const uint64_t seed = d->seed, th = d->thresh;
    const float sc = d->scale;
    for (int64_t jj = 0; jj < bk; jj++) s[jj] *= ew_drop_factor(seed, th, sc, i0 + (uint64_t)jj);
}

/* ---- per-thread scratch ---- */

/* Floats left after each thread's scratch block: 256 bytes, so the next thread's block
 * starts on other cache lines. */
#define ATT_GAP 64

/* The next n floats of a layout: base + *at (NULL when only sizing: base NULL), and
 * *at moves past them. The layout functions below call it once per array, from offset 0,
 * so one list of arrays gives both the size of a block and the pointers into it. */
static inline float *carve(float *base, size_t *at, int64_t n) {
    float *p = base ? base + *at : NULL;
    *at += (size_t)n;
    return p;
}

/* ---- forward ---- */

typedef struct fwd_scratch {
    float *kT, *vp; /* the head's keys as panels (Sp/BK × (D, BK)), values (Sp, Dp) */
    float *s;       /* score block (BQ, BK); for forward_row, one row of scores (Sp) */
    float *o;       /* output accumulator (BQ, Dp) */
    float *m, *l;   /* running max and sum per query row (BQ) */
    float *qb;      /* bf16 compute: the block's queries rounded (BQ, D); forward_row: (D) */
} fwd_scratch;

/* A thread's forward scratch laid out from base (NULL: only sized); returns its size in
 * floats. few: the forward_row path, which needs only s. */
static size_t forward_layout(fwd_scratch *f, float *base, int64_t S, int64_t D, int few) {
    const int64_t Dp = round_up(D, ATT_VW), Sp = round_up(S, ATT_BK);
    size_t at = 0;
    if (few) {
        *f = (fwd_scratch){.s = carve(base, &at, Sp)};
        f->qb = carve(base, &at, D);
        return at + ATT_GAP;
    }
    f->kT = carve(base, &at, Sp * D);
    f->vp = carve(base, &at, Sp * Dp);
    f->s = carve(base, &at, ATT_BQ * ATT_BK);
    f->o = carve(base, &at, ATT_BQ * Dp);
    f->m = carve(base, &at, ATT_BQ);
    f->l = carve(base, &at, ATT_BQ);
    f->qb = carve(base, &at, ATT_BQ * D);
    return at + ATT_GAP;
}

/* Online-softmax update of query row r with its score block s (ATT_BK); s becomes the
 * (undropped) exp(s − m_new), or zeros while the row has seen only masked scores. */
static void online_row(fwd_scratch *f, int64_t r, float *s, int64_t Dp) {
    const float m_old = f->m[r], bm = row_max(s);
    const float m_new = (m_old != m_old || bm != bm) ? NAN : (bm > m_old ? bm : m_old);
    if (m_new == -INFINITY) {
        memset(s, 0, ATT_BK * sizeof(float));
        return;
    }
    if (m_new != m_old && m_old != -INFINITY) {
        const float corr = expf(m_old - m_new);
        f->l[r] *= corr;
        float *o = f->o + r * Dp;
        for (int64_t d = 0; d < Dp; d++) o[d] *= corr;
    }
    f->l[r] += row_exp(s, m_new);
    f->m[r] = m_new;
}

/* The query rows [i0, i0+bq) of (n, h) as the scores read them: in place, or in bf16
 * compute rounded into f->qb; *ldq their stride. */
static const float *block_queries(const attn_args *a, fwd_scratch *f, int64_t n, int64_t h,
                                  int64_t i0, int64_t bq, int64_t *ldq) {
    const float *q = a->q + (n * a->L + i0) * a->ldq + h * a->D;
    *ldq = a->ldq;
    if (!a->bf16) return q;
    for (int64_t r = 0; r < bq; r++) {
        memcpy(f->qb + r * a->D, q + r * a->ldq, (size_t)a->D * sizeof(float));
        round_bf16(f->qb + r * a->D, a->D);
    }
    *ldq = a->D;
    return f->qb;
}

/* Query rows [i0, i0+bq) of (n, h) against every key, the head already packed. */
static void forward_block(const attn_args *a, const ew_drop *drop, fwd_scratch *f, float *out,
                          int64_t ldo, float *lse, int64_t n, int64_t h, int64_t i0, int64_t bq,
                          float scale) {
    const int64_t S = a->S, D = a->D, Dp = round_up(D, ATT_VW);
    for (int64_t r = 0; r < bq; r++) f->m[r] = -INFINITY, f->l[r] = 0.0f;
    memset(f->o, 0, (size_t)(bq * Dp) * sizeof(float));
    int64_t ldq;
    const float *q = block_queries(a, f, n, h, i0, bq, &ldq);
    for (int64_t j0 = 0; j0 < S; j0 += ATT_BK) {
        const int64_t bk = S - j0 < ATT_BK ? S - j0 : ATT_BK;
        if (block_all_causal(a, i0 + bq - 1, j0, bk)) continue;
        block_scores(f->s, a, q, ldq, f->kT + j0 * D, n, h, i0, bq, j0, bk, scale);
        for (int64_t r = 0; r < bq; r++) {
            online_row(f, r, f->s + r * ATT_BK, Dp);
            if (drop) row_dropout(f->s + r * ATT_BK, drop, drop_index(a, n, h, i0 + r, j0), bk);
        }
        if (a->bf16) round_bf16(f->s, bq * ATT_BK); /* P as the P·V product's operand */
        block_product(bq, Dp, bk, f->s, ATT_BK, 1, f->vp + j0 * Dp, Dp, f->o, Dp, 1, 1.0f);
    }
    for (int64_t r = 0; r < bq; r++) { /* f->m becomes the row's log-sum-exp */
        const float l = f->l[r], inv = l != 0.0f ? 1.0f / l : 0.0f;
        const int64_t i = i0 + r;
        float *o = out + (n * a->L + i) * ldo + h * D, *acc = f->o + r * Dp;
        for (int64_t d = 0; d < D; d++) o[d] = acc[d] * inv;
        f->m[r] = l != 0.0f ? f->m[r] + logf(l) : -INFINITY;
        if (lse) lse[(n * a->H + h) * a->L + i] = f->m[r];
    }
}

/* The weights of rows [i0, i0+bq) of (n, h), (bq, S) rows of `weights`, from their
 * log-sum-exp (f->m after forward_block): a second pass over the keys, only when the
 * caller asked for them. */
static void weights_block(const attn_args *a, const ew_drop *drop, fwd_scratch *f,
                          float *weights, int64_t n, int64_t h, int64_t i0, int64_t bq,
                          float scale) {
    const int64_t S = a->S, D = a->D, L = a->L;
    int64_t ldq;
    const float *q = block_queries(a, f, n, h, i0, bq, &ldq);
    for (int64_t j0 = 0; j0 < S; j0 += ATT_BK) {
        const int64_t bk = S - j0 < ATT_BK ? S - j0 : ATT_BK;
        block_scores(f->s, a, q, ldq, f->kT + j0 * D, n, h, i0, bq, j0, bk, scale);
        for (int64_t r = 0; r < bq; r++) {
            const int64_t i = i0 + r;
            float *s = f->s + r * ATT_BK;
            const float l = f->m[r];
            if (l == -INFINITY)
                memset(s, 0, ATT_BK * sizeof(float));
            else
                row_exp(s, l);
            if (drop) row_dropout(s, drop, drop_index(a, n, h, i, j0), bk);
            memcpy(weights + ((n * a->H + h) * L + i) * S + j0, s, (size_t)bk * sizeof(float));
        }
    }
}

/* ---- forward for a few queries (decoding): no packing, one row at a time ---- */

/* Dot product of x and y (D). */
static inline float dot(const float *x, const float *y, int64_t D) {
    vf acc = vsplat(0.0f);
    int64_t d = 0;
    for (; d + ATT_VW <= D; d += ATT_VW) acc += vload(x + d) * vload(y + d);
    float s = vsum(acc);
    for (; d < D; d++) s += x[d] * y[d];
    return s;
}

/* o (D) += w · x (D). */
static inline void axpy(float *o, float w, const float *x, int64_t D) {
    int64_t d = 0;
    for (; d + ATT_VW <= D; d += ATT_VW) vstore(o + d, vload(o + d) + w * vload(x + d));
    for (; d < D; d++) o[d] += w * x[d];
}

/* The same with y's values rounded to bf16 (x already is). */
static inline float dot_bf16(const float *x, const float *y, int64_t D) {
    vf acc = vsplat(0.0f);
    int64_t d = 0;
    for (; d + ATT_VW <= D; d += ATT_VW) acc += vload(x + d) * vbf16(vload(y + d));
    float s = vsum(acc);
    for (; d < D; d++) s += x[d] * bf16_round(y[d]);
    return s;
}

/* o (D) += w · x (D) with w and x's values rounded to bf16. */
static inline void axpy_bf16(float *o, float w, const float *x, int64_t D) {
    w = bf16_round(w);
    int64_t d = 0;
    for (; d + ATT_VW <= D; d += ATT_VW) vstore(o + d, vload(o + d) + w * vbf16(vload(x + d)));
    for (; d < D; d++) o[d] += w * bf16_round(x[d]);
}

/* Query row i of (n, h): s (Sp) and qr (D) scratch. K and V are read in place (a KV
 * cache); in bf16 compute rounded as they are read. */
static void forward_row(const attn_args *a, const ew_drop *drop, float *out, int64_t ldo,
                        float *weights, float *lse, int64_t n, int64_t h, int64_t i, float scale,
                        float *s, float *qr) {
    const int64_t S = a->S, D = a->D, L = a->L, H = a->H;
    const float *q = a->q + (n * L + i) * a->ldq + h * D;
    const float *k = keys_of(a, n) + h * D, *v = values_of(a, n) + h * D;
    if (a->bf16) {
        memcpy(qr, q, (size_t)D * sizeof(float));
        round_bf16(qr, D);
        for (int64_t j = 0; j < S; j++) s[j] = dot_bf16(qr, k + j * a->ldk, D) * scale;
    } else {
        for (int64_t j = 0; j < S; j++) s[j] = dot(q, k + j * a->ldk, D) * scale;
    }
    if (a->bias) add_masks(s, 0, a, n, h, i, 1, 0, a->bias->masked_cols);
    /* softmax over S in blocks of ATT_BK (the tail padded with −inf) */
    const int64_t Sp = round_up(S, ATT_BK);
    for (int64_t j = S; j < Sp; j++) s[j] = -INFINITY;
    float m = -INFINITY;
    for (int64_t j0 = 0; j0 < Sp; j0 += ATT_BK) {
        float bm = row_max(s + j0);
        m = (m != m || bm != bm) ? NAN : (bm > m ? bm : m);
    }
    float *o = out + (n * L + i) * ldo + h * D;
    memset(o, 0, (size_t)D * sizeof(float));
    if (m == -INFINITY) {
        if (lse) lse[(n * H + h) * L + i] = -INFINITY;
        if (weights) memset(weights + ((n * H + h) * L + i) * S, 0, (size_t)S * sizeof(float));
        return;
    }
    float l = 0.0f;
    for (int64_t j0 = 0; j0 < Sp; j0 += ATT_BK) l += row_exp(s + j0, m);
    const float inv = 1.0f / l;
    if (lse) lse[(n * H + h) * L + i] = m + logf(l);
    if (a->bf16) { /* as the tiled path: P·V on the unnormalised weights, then 1/l */
        if (drop) row_dropout(s, drop, drop_index(a, n, h, i, 0), S);
        if (weights) {
            float *w = weights + ((n * H + h) * L + i) * S;
            for (int64_t j = 0; j < S; j++) w[j] = s[j] * inv;
        }
        for (int64_t j = 0; j < S; j++) axpy_bf16(o, s[j], v + j * a->ldv, D);
        for (int64_t d = 0; d < D; d++) o[d] *= inv;
        return;
    }
    for (int64_t j = 0; j < S; j++) s[j] *= inv;
    if (drop) row_dropout(s, drop, drop_index(a, n, h, i, 0), S);
    if (weights) memcpy(weights + ((n * H + h) * L + i) * S, s, (size_t)S * sizeof(float));
    for (int64_t j = 0; j < S; j++) axpy(o, s[j], v + j * a->ldv, D);
}

tfm_status ATT_FN(attn_tiled_forward)(const attn_args *a, float *out, int64_t ldo, float *weights,
                                      float *lse, tfm_ws *ws) {
    const int64_t N = a->N, H = a->H, L = a->L, S = a->S, D = a->D;
    const int nthreads = tfm_max_threads();
    const float scale = 1.0f / sqrtf((float)D);
    const int few = L < ATT_MR; /* decoding: a handful of queries per head */
    ew_drop drop_args;
    const ew_drop *drop = drop_make(&drop_args, a);
    fwd_scratch sized;
    const size_t per_thread = forward_layout(&sized, NULL, S, D, few);
    ws_mark_t mark = ws_mark(ws);
    float *scratch = ws_floats(ws, per_thread * (size_t)nthreads);
    if (!scratch) return tfm_error(TFM_ERR_NOMEM, "attention: cannot allocate scratch");
    const int64_t nqb = few ? L : (L + ATT_BQ - 1) / ATT_BQ;
    const int64_t items = N * H * nqb;

#pragma omp parallel num_threads(nthreads)
    {
        fwd_scratch f;
        forward_layout(&f, scratch + per_thread * (size_t)tfm_thread_id(), S, D, few);
        int64_t packed = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            const int64_t nh = it / nqb, qb = it % nqb, n = nh / H, h = nh % H;
            if (few) {
                forward_row(a, drop, out, ldo, weights, lse, n, h, qb, scale, f.s, f.qb);
                continue;
            }
            if (nh != packed) {
                pack_panels_t(f.kT, keys_of(a, n) + h * D, a->ldk, S, D);
                pack_rows(f.vp, values_of(a, n) + h * D, a->ldv, S, D, round_up(D, ATT_VW));
                memset(f.vp + S * round_up(D, ATT_VW), 0,
                       (size_t)((round_up(S, ATT_BK) - S) * round_up(D, ATT_VW)) * sizeof(float));
                if (a->bf16) { /* K and V as the products' operands */
                    round_bf16(f.kT, round_up(S, ATT_BK) * D);
                    round_bf16(f.vp, S * round_up(D, ATT_VW));
                }
                packed = nh;
            }
            const int64_t i0 = qb * ATT_BQ, bq = L - i0 < ATT_BQ ? L - i0 : ATT_BQ;
            forward_block(a, drop, &f, out, ldo, lse, n, h, i0, bq, scale);
            if (weights) weights_block(a, drop, &f, weights, n, h, i0, bq, scale);
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
}

/* ---- backward ---- */

typedef struct bwd_scratch {
    float *kT, *vT;        /* keys and values as transposed panels (Sp/BK × (D, BK)) */
    float *kp;             /* keys (Sp, Dp) */
    float *qp, *dop, *dq;  /* queries, output gradient, dQ accumulator (L, Dp) */
    float *lse, *delta;    /* per query row (L): log-sum-exp, δ = dO·O */
    float *p, *pd, *ds;    /* blocks (BQ, BK): P, P after dropout, dP then dS */
    float *dk, *dv;        /* the key block's dK, dV accumulators (BK, Dp) */
} bwd_scratch;

/* A thread's backward scratch laid out from base (NULL: only sized); returns its size in
 * floats. dk and dv must stay adjacent: backward_head clears both with one memset. */
static size_t backward_layout(bwd_scratch *b, float *base, int64_t L, int64_t S, int64_t D) {
    const int64_t Dp = round_up(D, ATT_VW), Sp = round_up(S, ATT_BK);
    size_t at = 0;
    b->kT = carve(base, &at, Sp * D);
    b->vT = carve(base, &at, Sp * D);
    b->kp = carve(base, &at, Sp * Dp);
    b->qp = carve(base, &at, L * Dp);
    b->dop = carve(base, &at, L * Dp);
    b->dq = carve(base, &at, L * Dp);
    b->lse = carve(base, &at, L);
    b->delta = carve(base, &at, L);
    b->p = carve(base, &at, ATT_BQ * ATT_BK);
    b->pd = carve(base, &at, ATT_BQ * ATT_BK);
    b->ds = carve(base, &at, ATT_BQ * ATT_BK);
    b->dk = carve(base, &at, ATT_BK * Dp);
    b->dv = carve(base, &at, ATT_BK * Dp);
    return at + ATT_GAP;
}

/* Pack head (n, h) for backward: K, V panels, K rows, Q and dO rows, lse and δ. */
static void backward_pack(const attn_args *a, bwd_scratch *b, const float *lse, const float *out,
                          int64_t ldo, const float *dout, int64_t lddo, int64_t n, int64_t h) {
    const int64_t L = a->L, S = a->S, D = a->D, Dp = round_up(D, ATT_VW);
    const int64_t Sp = round_up(S, ATT_BK);
    pack_panels_t(b->kT, keys_of(a, n) + h * D, a->ldk, S, D);
    pack_panels_t(b->vT, values_of(a, n) + h * D, a->ldv, S, D);
    pack_rows(b->kp, keys_of(a, n) + h * D, a->ldk, S, D, Dp);
    memset(b->kp + S * Dp, 0, (size_t)((Sp - S) * Dp) * sizeof(float));
    pack_rows(b->qp, a->q + n * L * a->ldq + h * D, a->ldq, L, D, Dp);
    pack_rows(b->dop, dout + n * L * lddo + h * D, lddo, L, D, Dp);
    memset(b->dq, 0, (size_t)(L * Dp) * sizeof(float));
    memcpy(b->lse, lse + (n * a->H + h) * L, (size_t)L * sizeof(float));
    if (a->bf16) { /* the products' operands */
        round_bf16(b->kT, Sp * D);
        round_bf16(b->vT, Sp * D);
        round_bf16(b->kp, Sp * Dp);
        round_bf16(b->qp, L * Dp);
        round_bf16(b->dop, L * Dp);
    }
    /* δ_i = dO_i·O_i (in bf16 compute delta_pass replaces it) */
    for (int64_t i = 0; i < L; i++)
        b->delta[i] = dot(b->dop + i * Dp, out + (n * L + i) * ldo + h * D, D);
}

/* P (b->p) and dP (b->ds) of the (query block, key block) pair of head (n, h), with
 * dropout: Pd (b->pd) = P∘keep and dP = (dO·Vᵀ)∘keep. Fully masked rows: all zero. */
static void pair_p_dp(const attn_args *a, const ew_drop *drop, bwd_scratch *b, int64_t n,
                      int64_t h, int64_t i0, int64_t bq, int64_t j0, int64_t bk, float scale) {
    const int64_t D = a->D, Dp = round_up(D, ATT_VW);
    block_scores(b->p, a, b->qp + i0 * Dp, Dp, b->kT + j0 * D, n, h, i0, bq, j0, bk, scale);
    block_product(bq, ATT_BK, D, b->dop + i0 * Dp, Dp, 1, b->vT + j0 * D, ATT_BK, b->ds, ATT_BK,
                  0, 1.0f);
    for (int64_t r = 0; r < bq; r++) {
        float *p = b->p + r * ATT_BK, *dp = b->ds + r * ATT_BK, *pd = b->pd + r * ATT_BK;
        const float l = b->lse[i0 + r];
        if (l == -INFINITY) { /* fully masked row: no gradient */
            memset(p, 0, ATT_BK * sizeof(float));
            memset(dp, 0, ATT_BK * sizeof(float));
            if (drop) memset(pd, 0, ATT_BK * sizeof(float));
            continue;
        }
        row_exp(p, l); /* P, as forward had it */
        if (drop) { /* the forward's factors, recomputed: Pd = P∘keep, dP = dPd∘keep */
            const uint64_t seed = drop->seed, th = drop->thresh;
            const uint64_t i1 = drop_index(a, n, h, i0 + r, j0);
            const float sc = drop->scale;
            memcpy(pd, p, ATT_BK * sizeof(float));
            for (int64_t jj = 0; jj < bk; jj++) {
                const float keep = ew_drop_factor(seed, th, sc, i1 + (uint64_t)jj);
                pd[jj] *= keep;
                dp[jj] *= keep;
            }
        }
    }
}

/* bf16 compute: δ_i = Σ_j P_ij·dP_ij over every key, from the same P and dP as the
 * gradient pass (pair_p_dp), into b->delta. FP32 takes δ_i = dO_i·O_i, equal in exact
 * arithmetic; with bf16 operands the two part by dO's, V's and P's rounding, and only
 * this δ keeps each row of dS = P∘(dP − δ) summing to zero as softmax's Jacobian does —
 * the sums over keys of dK and of the memory's gradient depend on it (measured with
 * δ = dO·O: the encoder's gradients of nn.Transformer at 2.3x PyTorch autocast's error,
 * whose softmax backward takes this δ). Costs two of the four products once more. */
static void delta_pass(const attn_args *a, const ew_drop *drop, bwd_scratch *b, int64_t n,
                       int64_t h, float scale) {
    const int64_t L = a->L, S = a->S;
    for (int64_t i = 0; i < L; i++) b->delta[i] = 0.0f;
    for (int64_t j0 = 0; j0 < S; j0 += ATT_BK) {
        const int64_t bk = S - j0 < ATT_BK ? S - j0 : ATT_BK;
        for (int64_t i0 = 0; i0 < L; i0 += ATT_BQ) {
            const int64_t bq = L - i0 < ATT_BQ ? L - i0 : ATT_BQ;
            if (block_all_causal(a, i0 + bq - 1, j0, bk)) continue;
            pair_p_dp(a, drop, b, n, h, i0, bq, j0, bk, scale);
            for (int64_t r = 0; r < bq; r++) {
                const float *p = b->p + r * ATT_BK, *dp = b->ds + r * ATT_BK;
                vf acc = vsplat(0.0f);
                for (int64_t jj = 0; jj < ATT_BK; jj += ATT_VW) acc += vload(p + jj) * vload(dp + jj);
                b->delta[i0 + r] += vsum(acc);
            }
        }
    }
}

/* One (query block, key block) pair of head (n, h): P, dP, then dV, dS, dQ, dK. */
static void backward_pair(const attn_args *a, const ew_drop *drop, bwd_scratch *b, int64_t n,
                          int64_t h, int64_t i0, int64_t bq, int64_t j0, int64_t bk, float scale) {
    const int64_t Dp = round_up(a->D, ATT_VW);
    pair_p_dp(a, drop, b, n, h, i0, bq, j0, bk, scale);
    const float *dO = b->dop + i0 * Dp;
    for (int64_t r = 0; r < bq; r++) {
        const float *p = b->p + r * ATT_BK;
        float *dp = b->ds + r * ATT_BK;
        const float delta = b->delta[i0 + r];
        for (int64_t jj = 0; jj < ATT_BK; jj++) dp[jj] = p[jj] * (dp[jj] - delta) * scale;
    }
    const float *pd = drop ? b->pd : b->p;
    if (a->bf16) { /* Pd and dS as the products' operands (P itself stays FP32 above) */
        if (!drop) memcpy(b->pd, b->p, (size_t)(bq * ATT_BK) * sizeof(float));
        round_bf16(b->pd, bq * ATT_BK);
        round_bf16(b->ds, bq * ATT_BK);
        pd = b->pd;
    }
    /* dV (bk, Dp) += Pdᵀ (bk, bq) · dO (bq, Dp) */
    block_product(bk, Dp, bq, pd, 1, ATT_BK, dO, Dp, b->dv, Dp, 1, 1.0f);
    /* dQ (bq, Dp) += dS (bq, bk) · K (bk, Dp) */
    block_product(bq, Dp, bk, b->ds, ATT_BK, 1, b->kp + j0 * Dp, Dp, b->dq + i0 * Dp, Dp, 1,
                  1.0f);
    /* dK (bk, Dp) += dSᵀ (bk, bq) · Q (bq, Dp) */
    block_product(bk, Dp, bq, b->ds, 1, ATT_BK, b->qp + i0 * Dp, Dp, b->dk, Dp, 1, 1.0f);
}

/* dst (rows, ld) += src (rows, Dp), the first D columns. */
static void add_rows(float *dst, int64_t ld, const float *src, int64_t Dp, int64_t rows, int64_t D) {
    for (int64_t j = 0; j < rows; j++)
        for (int64_t d = 0; d < D; d++) dst[j * ld + d] += src[j * Dp + d];
}

/* Every gradient of head (n, h): key blocks outer (their dK, dV stay in cache), query
 * blocks inner; dQ accumulates over key blocks in b->dq. */
static void backward_head(const attn_args *a, const ew_drop *drop, bwd_scratch *b, float *dq,
                          int64_t lddq, float *dk, int64_t lddk, float *dv, int64_t lddv, int64_t n,
                          int64_t h, float scale) {
    const int64_t L = a->L, S = a->S, D = a->D, Dp = round_up(D, ATT_VW);
    for (int64_t j0 = 0; j0 < S; j0 += ATT_BK) {
        const int64_t bk = S - j0 < ATT_BK ? S - j0 : ATT_BK;
        memset(b->dk, 0, (size_t)(2 * ATT_BK * Dp) * sizeof(float)); /* dk and dv */
        for (int64_t i0 = 0; i0 < L; i0 += ATT_BQ) {
            const int64_t bq = L - i0 < ATT_BQ ? L - i0 : ATT_BQ;
            if (block_all_causal(a, i0 + bq - 1, j0, bk)) continue;
            backward_pair(a, drop, b, n, h, i0, bq, j0, bk, scale);
        }
        add_rows(dk + (n * S + j0) * lddk + h * D, lddk, b->dk, Dp, bk, D);
        add_rows(dv + (n * S + j0) * lddv + h * D, lddv, b->dv, Dp, bk, D);
    }
    add_rows(dq + n * L * lddq + h * D, lddq, b->dq, Dp, L, D);
}

tfm_status ATT_FN(attn_tiled_backward)(const attn_args *a, const float *lse, const float *out,
                                       int64_t ldo, const float *dout, int64_t lddo, float *dq,
                                       int64_t lddq, float *dk, int64_t lddk, float *dv,
                                       int64_t lddv, tfm_ws *ws) {
    const int64_t N = a->N, H = a->H, L = a->L, S = a->S, D = a->D;
    const int nthreads = tfm_max_threads();
    bwd_scratch sized;
    const size_t per_thread = backward_layout(&sized, NULL, L, S, D);
    ws_mark_t mark = ws_mark(ws);
    float *scratch = ws_floats(ws, per_thread * (size_t)nthreads);
    if (!scratch) return tfm_error(TFM_ERR_NOMEM, "attention backward: cannot allocate scratch");
    const float scale = 1.0f / sqrtf((float)D);
    ew_drop drop_args;
    const ew_drop *drop = drop_make(&drop_args, a);

#pragma omp parallel num_threads(nthreads)
    {
        bwd_scratch b;
        backward_layout(&b, scratch + per_thread * (size_t)tfm_thread_id(), L, S, D);
#pragma omp for schedule(static)
        for (int64_t nh = 0; nh < N * H; nh++) {
            const int64_t n = nh / H, h = nh % H;
            backward_pack(a, &b, lse, out, ldo, dout, lddo, n, h);
            if (a->bf16) delta_pass(a, drop, &b, n, h, scale);
            backward_head(a, drop, &b, dq, lddq, dk, lddk, dv, lddv, n, h, scale);
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
}
