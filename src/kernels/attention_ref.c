/* attention_ref.c — the plain-C reference of the attention kernels: the simplest
 * correct algorithm, one query row of S scores at a time, against which the tests hold
 * every SIMD path (attn_tiled_impl.h). Not used by the library itself.
 *
 * Forward splits the work over (batch, head, block of ATT_BQ queries), backward over
 * (batch, head) — there each item owns its head's columns of dK and dV. Each item is
 * done by one thread in a fixed order, so results do not depend on the thread count.
 * Per item the thread transposes K_h (and V_h in backward) once, (D, S), so the inner
 * loops run along contiguous memory; then it handles one query row of S scores at a
 * time: memory per thread is O(D·S), never O(L·S).
 * In bf16 compute (a->bf16) every product's operands are rounded to bf16 where it reads
 * them, as the tiled kernels do.
 * Legend: N batch, H heads, L queries, S keys, D head dim.
 */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#include "core/rng.h"
#include "core/status.h"
#include "core/threads.h"
#include "kernels/bf16.h"

#define ATT_BQ 64

/* x as a product's operand: rounded to bf16 in bf16 compute. */
static inline float op(const attn_args *a, float x) { return a->bf16 ? bf16_round(x) : x; }

/* xT (D, S) = head h of x (S, ld) transposed (as operands). */
static void transpose_head(const attn_args *a, float *xT, const float *x, int64_t ld, int64_t S,
                           int64_t D) {
    for (int64_t j = 0; j < S; j++)
        for (int64_t d = 0; d < D; d++) xT[d * S + j] = op(a, x[j * ld + d]);
}

/* s (S) = a_i · bT (D, S) · scale: one row of a product with a transposed operand. */
static inline void row_times(const attn_args *a, float *s, const float *ai, const float *bT,
                             int64_t S, int64_t D, float scale) {
    memset(s, 0, (size_t)S * sizeof(float));
    for (int64_t d = 0; d < D; d++) {
        float ad = op(a, ai[d]) * scale;
        const float *bd = bT + d * S;
        for (int64_t j = 0; j < S; j++) s[j] += ad * bd[j];
    }
}

/* Where batch n's keys and values start. */
static inline const float *k_of(const attn_args *a, int64_t n) {
    return a->k + n * (a->kbs ? a->kbs : a->S) * a->ldk;
}
static inline const float *v_of(const attn_args *a, int64_t n) {
    return a->v + n * (a->vbs ? a->vbs : a->S) * a->ldv;
}

/* Scores of query row i: q_i·k_j / √D + bias. */
static inline void scores(float *s, const attn_args *a, const float *kT, int64_t n, int64_t h,
                          int64_t i, float scale) {
    const int64_t S = a->S, H = a->H, L = a->L;
    row_times(a, s, a->q + (n * L + i) * a->ldq + h * a->D, kT, S, a->D, scale);
    const attn_bias *b = a->bias;
    if (!b) return;
    const int64_t Sm = b->masked_cols;
    if (b->attn) {
        const float *m = b->attn + (b->attn_per_head ? (n * H + h) * L * Sm : 0) + i * Sm;
        for (int64_t j = 0; j < Sm; j++) s[j] += m[j];
    }
    if (b->key_padding) {
        const float *m = b->key_padding + n * Sm;
        for (int64_t j = 0; j < Sm; j++) s[j] += m[j];
    }
    if (b->causal)
        for (int64_t j = i + 1; j < Sm; j++) s[j] = -INFINITY;
}

/* In place: s (S) becomes exp(s − max) and *sum their sum; returns the max, −inf for a
 * fully masked row (then s is all zeros). A NaN score makes the whole row NaN, as in
 * PyTorch (the max takes it in, and every exp(s − NaN) is NaN). */
static inline float exp_row(float *s, int64_t S, float *sum) {
    float m = -INFINITY;
    for (int64_t j = 0; j < S; j++)
        if (s[j] > m || s[j] != s[j]) m = s[j] != s[j] || m != m ? NAN : s[j];
    *sum = 0.0f;
    if (m == -INFINITY) {
        memset(s, 0, (size_t)S * sizeof(float));
        return -INFINITY;
    }
    for (int64_t j = 0; j < S; j++) {
        s[j] = expf(s[j] - m);
        *sum += s[j];
    }
    return m;
}

/* In place: s (S) becomes softmax(s); returns log Σ exp(s), −inf for a fully masked row
 * (then s is all zeros). */
static inline float softmax_row(float *s, int64_t S) {
    float sum;
    const float m = exp_row(s, S, &sum);
    if (m == -INFINITY) return -INFINITY;
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < S; j++) s[j] *= inv;
    return m + logf(sum);
}

/* p (S) *= inverted-dropout factors of row (n, h, i). */
static inline void dropout_row(float *p, const attn_args *a, int64_t n, int64_t h, int64_t i) {
    uint64_t base = (uint64_t)(((n * a->H + h) * a->L + i) * a->S);
    for (int64_t j = 0; j < a->S; j++) p[j] *= rng_dropout_scale(a->dropout_seed, base + (uint64_t)j, a->dropout);
}

/* o (D) = Σ_j p_j v_j over V_h rows (S, ldv). */
static inline void weighted_sum(const attn_args *a, float *o, const float *p, const float *vb,
                                int64_t ldv, int64_t S, int64_t D) {
    memset(o, 0, (size_t)D * sizeof(float));
    for (int64_t j = 0; j < S; j++) {
        const float pj = op(a, p[j]);
        const float *vj = vb + j * ldv;
        for (int64_t d = 0; d < D; d++) o[d] += pj * op(a, vj[d]);
    }
}

/* Query rows [i0, i1) of batch n, head h. kT (D, S); s (S) scratch. */
static void forward_rows(const attn_args *a, float *out, int64_t ldo, float *weights, float *lse,
                         const float *kT, int64_t n, int64_t h, int64_t i0, int64_t i1,
                         float scale, float *s) {
    const int64_t S = a->S, D = a->D, H = a->H, L = a->L;
    const float *vb = v_of(a, n) + h * D;
    for (int64_t i = i0; i < i1; i++) {
        scores(s, a, kT, n, h, i, scale);
        float *o = out + (n * L + i) * ldo + h * D;
        if (a->bf16) {
            /* As the kernels: P·V on the unnormalised weights exp(s − max) (rounded to
             * bf16 as the product's operand), divided by their sum after. */
            float sum;
            const float m = exp_row(s, S, &sum);
            if (lse) lse[(n * H + h) * L + i] = m == -INFINITY ? m : m + logf(sum);
            if (a->dropout > 0.0f) dropout_row(s, a, n, h, i);
            const float inv = m == -INFINITY ? 0.0f : 1.0f / sum;
            if (weights)
                for (int64_t j = 0; j < S; j++) weights[((n * H + h) * L + i) * S + j] = s[j] * inv;
            weighted_sum(a, o, s, vb, a->ldv, S, D);
            for (int64_t d = 0; d < D; d++) o[d] *= inv;
            continue;
        }
        float l = softmax_row(s, S);
        if (lse) lse[(n * H + h) * L + i] = l;
        if (a->dropout > 0.0f) dropout_row(s, a, n, h, i);
        if (weights) memcpy(weights + ((n * H + h) * L + i) * S, s, (size_t)S * sizeof(float));
        weighted_sum(a, o, s, vb, a->ldv, S, D);
    }
}

tfm_status attention_forward_reference(const attn_args *a, float *out, int64_t ldo, float *weights,
                             float *lse, tfm_ws *ws) {
    const int64_t N = a->N, H = a->H, L = a->L, S = a->S, D = a->D;
    if (N == 0 || L == 0 || H == 0) return TFM_OK;
    const int nthreads = tfm_max_threads();
    const size_t per_thread = (size_t)D * (size_t)S + (size_t)S + 16;
    ws_mark_t mark = ws_mark(ws);
    float *scratch = ws_floats(ws, per_thread * (size_t)nthreads);
    if (!scratch) return tfm_error(TFM_ERR_NOMEM, "attention: cannot allocate scratch");
    const float scale = 1.0f / sqrtf((float)D);
    const int64_t nqb = (L + ATT_BQ - 1) / ATT_BQ;
    const int64_t items = N * H * nqb;

#pragma omp parallel num_threads(nthreads)
    {
        float *kT = scratch + per_thread * (size_t)tfm_thread_id();
        float *s = kT + (size_t)D * (size_t)S;
        int64_t last_nh = -1;
#pragma omp for schedule(static)
        for (int64_t it = 0; it < items; it++) {
            const int64_t nh = it / nqb, qb = it % nqb, n = nh / H, h = nh % H;
            if (nh != last_nh) {
                transpose_head(a, kT, k_of(a, n) + h * D, a->ldk, S, D);
                last_nh = nh;
            }
            const int64_t i0 = qb * ATT_BQ, i1 = i0 + ATT_BQ < L ? i0 + ATT_BQ : L;
            forward_rows(a, out, ldo, weights, lse, kT, n, h, i0, i1, scale, s);
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
}

/* All query rows of batch n, head h. kT, vT (D, S); p, dp (S) scratch. δ_i = rowsum(P∘dP)
 * (the tiled kernels' bf16 δ; in FP32 they take dO_i·O_i, equal but for rounding). */
static void backward_head(const attn_args *a, const float *lse, const float *dout, int64_t lddo,
                          float *dq, int64_t lddq, float *dk, int64_t lddk, float *dv,
                          int64_t lddv, const float *kT, const float *vT, int64_t n, int64_t h,
                          float scale, float *p, float *dp) {
    const int64_t S = a->S, D = a->D, H = a->H, L = a->L;
    const float *kb = k_of(a, n) + h * D;
    float *dkb = dk + n * S * lddk + h * D, *dvb = dv + n * S * lddv + h * D;
    for (int64_t i = 0; i < L; i++) {
        const float l = lse[(n * H + h) * L + i];
        if (l == -INFINITY) continue; /* fully masked row: zero output, zero gradient */
        const float *qi = a->q + (n * L + i) * a->ldq + h * D;
        const float *doi = dout + (n * L + i) * lddo + h * D;
        float *dqi = dq + (n * L + i) * lddq + h * D;
        scores(p, a, kT, n, h, i, scale);
        for (int64_t j = 0; j < S; j++) p[j] = expf(p[j] - l); /* P, as forward had it */
        row_times(a, dp, doi, vT, S, D, 1.0f);                 /* dP' = dO_i · Vᵀ */
        uint64_t base = (uint64_t)(((n * H + h) * L + i) * S);
        float rowsum = 0.0f;
        for (int64_t j = 0; j < S; j++) {
            float keep = a->dropout > 0.0f
                             ? rng_dropout_scale(a->dropout_seed, base + (uint64_t)j, a->dropout)
                             : 1.0f;
            const float pj = p[j], pdj = pj * keep;
            float *dvj = dvb + j * lddv; /* dV_j += P'_ij · dO_i */
            for (int64_t d = 0; d < D; d++) dvj[d] += op(a, pdj) * op(a, doi[d]);
            dp[j] *= keep;               /* dP = dP' ∘ dropout factors */
            rowsum += pj * dp[j];
        }
        for (int64_t j = 0; j < S; j++) {
            const float dsj = op(a, p[j] * (dp[j] - rowsum) * scale); /* dS_ij / √D */
            if (dsj == 0.0f) continue;
            const float *kj = kb + j * a->ldk;
            float *dkj = dkb + j * lddk;
            for (int64_t d = 0; d < D; d++) {
                dqi[d] += dsj * op(a, kj[d]);
                dkj[d] += dsj * op(a, qi[d]);
            }
        }
    }
}

tfm_status attention_backward_reference(const attn_args *a, const float *lse, const float *dout,
                              int64_t lddo, float *dq, int64_t lddq, float *dk, int64_t lddk,
                              float *dv, int64_t lddv, tfm_ws *ws) {
    const int64_t N = a->N, H = a->H, L = a->L, S = a->S, D = a->D;
    if (N == 0 || L == 0 || H == 0 || S == 0) return TFM_OK;
    const int nthreads = tfm_max_threads();
    const size_t per_thread = 2 * (size_t)D * (size_t)S + 2 * (size_t)S + 32;
    ws_mark_t mark = ws_mark(ws);
    float *scratch = ws_floats(ws, per_thread * (size_t)nthreads);
    if (!scratch) return tfm_error(TFM_ERR_NOMEM, "attention backward: cannot allocate scratch");
    const float scale = 1.0f / sqrtf((float)D);

#pragma omp parallel num_threads(nthreads)
    {
        float *kT = scratch + per_thread * (size_t)tfm_thread_id();
        float *vT = kT + (size_t)D * (size_t)S;
        float *p = vT + (size_t)D * (size_t)S;
        float *dp = p + S + 16;
#pragma omp for schedule(static)
        for (int64_t nh = 0; nh < N * H; nh++) {
            const int64_t n = nh / H, h = nh % H;
            transpose_head(a, kT, k_of(a, n) + h * D, a->ldk, S, D);
            transpose_head(a, vT, v_of(a, n) + h * D, a->ldv, S, D);
            backward_head(a, lse, dout, lddo, dq, lddq, dk, lddk, dv, lddv, kT, vT, n, h, scale, p,
                          dp);
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
}
