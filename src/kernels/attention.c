/* attention.c — multi-head scaled dot-product attention (eval forward).
 *
 * Work is split over (batch, head, block of ATT_BQ queries); each item is done by one
 * thread in a fixed order, so the result does not depend on the thread count. Per
 * item the thread transposes K_h once (D, S) so that both inner loops run along
 * contiguous memory, then handles its queries one row of S scores at a time: memory
 * per thread is O(D·S), never O(L·S).
 * Legend: N batch, H heads, L queries, S keys, D head dim.
 */
#include "kernels/attention.h"

#include <math.h>
#include <string.h>

#include "core/status.h"
#include "core/threads.h"

#define ATT_BQ 64

/* Until the hand-written SIMD kernels land, let the compiler build the row loops for
 * AVX-512, AVX2 and baseline x86-64 and pick one at load time (ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define ATT_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define ATT_CLONES
#endif

/* scores (S) for one query row: q_i·k_j / √D + bias. kT (D, S). */
static inline void score_row(float *s, const float *qi, const float *kT, int64_t S, int64_t D,
                      float scale) {
    memset(s, 0, (size_t)S * sizeof(float));
    for (int64_t d = 0; d < D; d++) {
        float qd = qi[d] * scale;
        const float *kd = kT + d * S;
        for (int64_t j = 0; j < S; j++) s[j] += qd * kd[j];
    }
}

static inline void add_bias_row(float *s, const attn_bias *b, int64_t n, int64_t h, int64_t H,
                         int64_t i, int64_t L) {
    int64_t Sm = b->masked_cols;
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

/* In place: s (S) becomes softmax(s). Returns false for a fully masked row (all −inf),
 * which is then set to zeros. */
static inline bool softmax_row(float *s, int64_t S) {
    float m = -INFINITY;
    for (int64_t j = 0; j < S; j++)
        if (s[j] > m) m = s[j];
    if (m == -INFINITY) {
        memset(s, 0, (size_t)S * sizeof(float));
        return false;
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < S; j++) {
        s[j] = expf(s[j] - m);
        sum += s[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < S; j++) s[j] *= inv;
    return true;
}

/* Query rows [i0, i1) of batch n, head h: scores, bias, softmax, weights, P·V.
 * kT (D, S) is K_h transposed; vb (S, ldv) points at V_h; s (S) is scratch. */
ATT_CLONES
static void attend_rows(float *out, int64_t ldo, float *weights, const float *q, int64_t ldq,
                        const float *kT, const float *vb, int64_t ldv, const attn_bias *bias,
                        int64_t n, int64_t h, int64_t H, int64_t L, int64_t S, int64_t D,
                        int64_t i0, int64_t i1, float scale, float *s) {
    for (int64_t i = i0; i < i1; i++) {
        score_row(s, q + (n * L + i) * ldq + h * D, kT, S, D, scale);
        if (bias) add_bias_row(s, bias, n, h, H, i, L);
        softmax_row(s, S);
        if (weights) memcpy(weights + ((n * H + h) * L + i) * S, s, (size_t)S * sizeof(float));
        float *o = out + (n * L + i) * ldo + h * D;
        memset(o, 0, (size_t)D * sizeof(float));
        for (int64_t j = 0; j < S; j++) {
            float p = s[j];
            const float *vj = vb + j * ldv;
            for (int64_t d = 0; d < D; d++) o[d] += p * vj[d];
        }
    }
}

tfm_status attention_forward(float *out, int64_t ldo, float *weights, const float *q, int64_t ldq,
                             const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t N,
                             int64_t H, int64_t L, int64_t S, int64_t D, const attn_bias *bias,
                             tfm_ws *ws) {
    if (N == 0 || L == 0 || H == 0) return TFM_OK;
    int nthreads = tfm_max_threads();
    size_t per_thread = (size_t)D * (size_t)S + (size_t)S + 16;
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
            int64_t nh = it / nqb, qb = it % nqb;
            int64_t n = nh / H, h = nh % H;
            const float *kb = k + n * S * ldk + h * D;
            const float *vb = v + n * S * ldv + h * D;
            if (nh != last_nh) { /* kT = K_h transposed, (D, S) */
                for (int64_t j = 0; j < S; j++)
                    for (int64_t d = 0; d < D; d++) kT[d * S + j] = kb[j * ldk + d];
                last_nh = nh;
            }
            int64_t i0 = qb * ATT_BQ, i1 = i0 + ATT_BQ < L ? i0 + ATT_BQ : L;
            attend_rows(out, ldo, weights, q, ldq, kT, vb, ldv, bias, n, h, H, L, S, D, i0, i1,
                        scale, s);
        }
    }
    ws_release(ws, mark);
    return TFM_OK;
}
