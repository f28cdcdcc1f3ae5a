/* elementwise.c — the element-wise kernels: argument handling, the split over OpenMP
 * threads, and the choice of instruction set for the pieces that do the work
 * (elementwise_isa.h). Small calls stay on the calling thread: below EW_PAR_MIN
 * elements a fork/join costs more than it saves.
 * Legend: R rows, C columns, n elements. */
#include "kernels/elementwise.h"

#include <string.h>

#include "core/cpu.h"
#include "core/threads.h"
#include "kernels/elementwise_isa.h"

/* Elements below which a call runs on one thread. */
#define EW_PAR_MIN (1 << 14)
/* GELU costs some 60 double operations per EW_DW elements (elementwise_impl.h), several
 * times a plain pass: worth threads from fewer elements. */
#define EW_PAR_MIN_GELU (EW_PAR_MIN / 4)
/* Elements per parallel item of the flat (index-only) kernels. */
#define EW_CHUNK 8192

const ew_kernels *ew_active(void) {
    switch (cpu_active()) {
#if defined(TFM_HAVE_X86_KERNELS)
    case CPU_AVX512: return &ew_kernels_avx512;
    case CPU_AVX2: return &ew_kernels_avx2;
#endif
    default: return &ew_kernels_generic;
    }
}

/* d for dropout probability p; false when p <= 0 (no dropout, as PyTorch's eval mode). */
static bool drop_make(ew_drop *d, float p, uint64_t seed) {
    if (p <= 0.0f) return false;
    *d = (ew_drop){.seed = seed, .thresh = rng_dropout_threshold(p), .scale = 1.0f / (1.0f - p)};
    return true;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* The width of the column blocks of a C-column kernel: one block per thread, a multiple
 * of 16 columns, at most EW_COL_BLOCK (see elementwise_isa.h: no effect on results). */
static int64_t col_block_width(int64_t C) {
    const int64_t T = tfm_max_threads();
    int64_t w = ((C + T - 1) / T + 15) / 16 * 16;
    return w < 16 ? 16 : w > EW_COL_BLOCK ? EW_COL_BLOCK : w;
}

void add_bias_rows(float *y, const float *b, int64_t R, int64_t C) {
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t r = 0; r < R; r++) {
        float *row = y + r * C;
        for (int64_t c = 0; c < C; c++) row[c] += b[c];
    }
}

void fill_rows(float *y, int64_t ldy, const float *b, int64_t R, int64_t C) {
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t r = 0; r < R; r++) memcpy(y + r * ldy, b, (size_t)C * sizeof(float));
}

void copy_floats(float *dst, const float *src, int64_t n) {
    const int64_t nc = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t b = 0; b < nc; b++)
        memcpy(dst + b * EW_CHUNK, src + b * EW_CHUNK,
               (size_t)min64(EW_CHUNK, n - b * EW_CHUNK) * sizeof(float));
}

void add_vectors(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void relu_forward(float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : (x[i] < 0.0f ? 0.0f : x[i]);
}

void gelu_forward(float *x, int64_t n) {
    const ew_kernels *k = ew_active();
    const int64_t nc = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN_GELU)
    for (int64_t b = 0; b < nc; b++)
        k->gelu(x + b * EW_CHUNK, x + b * EW_CHUNK, min64(EW_CHUNK, n - b * EW_CHUNK));
}

void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *weight,
                       const float *bias, int64_t R, int64_t C, float eps) {
    const ew_kernels *k = ew_active();
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t r = 0; r < R; r++)
        k->layernorm_row(out + r * C, NULL, mean ? mean + r : NULL, rstd ? rstd + r : NULL,
                         x + r * C, NULL, weight, bias, C, eps, 0, NULL);
}

/* ---- dropout and the fused forward kernels ---- */

void dropout_copy(float *y, const float *x, int64_t n, float p, uint64_t seed) {
    ew_drop d;
    if (!drop_make(&d, p, seed)) {
        if (y != x && n > 0) memcpy(y, x, (size_t)n * sizeof(float));
        return;
    }
    const ew_kernels *k = ew_active();
    const int64_t nc = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t b = 0; b < nc; b++) {
        const int64_t i0 = b * EW_CHUNK;
        k->dropout(y + i0, x + i0, min64(EW_CHUNK, n - i0), (uint64_t)i0, &d);
    }
}

void dropout_apply(float *x, int64_t n, float p, uint64_t seed) {
    dropout_copy(x, x, n, p, seed);
}

void dropout_add(float *y, const float *a, const float *t, int64_t n, float p, uint64_t seed) {
    ew_drop d;
    const ew_drop *dp = drop_make(&d, p, seed) ? &d : NULL;
    const ew_kernels *k = ew_active();
    const int64_t nc = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t b = 0; b < nc; b++) {
        const int64_t i0 = b * EW_CHUNK;
        k->dropout_add(y + i0, a + i0, t + i0, min64(EW_CHUNK, n - i0), (uint64_t)i0, dp);
    }
}

void add_dropout_layernorm_forward(float *out, float *sum, float *mean, float *rstd,
                                   const float *a, const float *t, const float *weight,
                                   const float *bias, int64_t R, int64_t C, float eps, float p,
                                   uint64_t seed) {
    ew_drop d;
    const ew_drop *dp = drop_make(&d, p, seed) ? &d : NULL;
    const ew_kernels *k = ew_active();
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t r = 0; r < R; r++)
        k->layernorm_row(out + r * C, sum + r * C, mean ? mean + r : NULL,
                         rstd ? rstd + r : NULL, a + r * C, t + r * C, weight, bias, C, eps,
                         (uint64_t)(r * C), dp);
}

void bias_act_dropout_forward(float *y, float *pre, const float *b, int64_t R, int64_t C,
                              bool gelu, float p, uint64_t seed) {
    ew_drop d;
    const ew_drop *dp = drop_make(&d, p, seed) ? &d : NULL;
    const ew_kernels *k = ew_active();
#pragma omp parallel for schedule(static) if (R * C > (gelu ? EW_PAR_MIN_GELU : EW_PAR_MIN))
    for (int64_t r = 0; r < R; r++)
        k->act_dropout_row(y + r * C, pre ? pre + r * C : NULL, b, C, gelu, (uint64_t)(r * C),
                           dp);
}

/* ---- backward ---- */

void relu_backward(float *dx, const float *dy, const float *x, int64_t n) {
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        if (x[i] > 0.0f) dx[i] += dy[i];
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n) {
    const ew_kernels *k = ew_active();
    const int64_t nc = (n + EW_CHUNK - 1) / EW_CHUNK;
#pragma omp parallel for schedule(static) if (n > EW_PAR_MIN_GELU)
    for (int64_t b = 0; b < nc; b++) {
        const int64_t i0 = b * EW_CHUNK;
        k->gelu_backward(dx + i0, dy + i0, x + i0, min64(EW_CHUNK, n - i0));
    }
}

/* Both LayerNorm backwards: the parameter gradients by column blocks (rows in order),
 * then, after the barrier (dx may overwrite dy), the input gradient by rows; one
 * parallel region for both. ddrop NULL: dx accumulates; else dx = g, ddrop = drop(g). */
static void layernorm_backward_any(float *dx, float *ddrop, float *dweight, float *dbias,
                                   const float *dy, const float *x, const float *mean,
                                   const float *rstd, const float *weight, int64_t R, int64_t C,
                                   const ew_drop *d) {
    const ew_kernels *k = ew_active();
    const bool params = dweight || dbias;
    const int64_t bw = col_block_width(C), nb = (C + bw - 1) / bw;
#pragma omp parallel if (R * C > EW_PAR_MIN)
    {
        if (params) {
#pragma omp for schedule(static)
            for (int64_t b = 0; b < nb; b++)
                k->layernorm_backward_cols(dweight, dbias, dy, x, mean, rstd, R, C, b * bw,
                                           min64((b + 1) * bw, C));
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++)
            k->layernorm_backward_row(dx + r * C, ddrop ? ddrop + r * C : NULL, dy + r * C,
                                      x + r * C, mean[r], rstd[r], weight, C, (uint64_t)(r * C),
                                      d);
    }
}

void layernorm_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *weight, int64_t R,
                        int64_t C) {
    layernorm_backward_any(dx, NULL, dweight, dbias, dy, x, mean, rstd, weight, R, C, NULL);
}

void layernorm_backward_dropout(float *dres, float *ddrop, float *dweight, float *dbias,
                                const float *dy, const float *x, const float *mean,
                                const float *rstd, const float *weight, int64_t R, int64_t C,
                                float p, uint64_t seed) {
    ew_drop d;
    const ew_drop *dp = drop_make(&d, p, seed) ? &d : NULL;
    layernorm_backward_any(dres, ddrop, dweight, dbias, dy, x, mean, rstd, weight, R, C, dp);
}

void bias_backward(float *db, const float *dy, int64_t lddy, int64_t R, int64_t C) {
    if (R <= 0) return;
    const ew_kernels *k = ew_active();
    const int64_t bw = col_block_width(C), nb = (C + bw - 1) / bw;
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t b = 0; b < nb; b++)
        k->bias_cols(db, dy, lddy, R, b * bw, min64((b + 1) * bw, C));
}

void relu_dropout_backward(float *dv, float *db, const float *dy, const float *y, int64_t R,
                           int64_t C, float p) {
    const float scale = p <= 0.0f ? 1.0f : 1.0f / (1.0f - p); /* drop_make's scale */
    const ew_kernels *k = ew_active();
    const int64_t bw = col_block_width(C), nb = (C + bw - 1) / bw;
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN)
    for (int64_t b = 0; b < nb; b++)
        k->relu_dropout_backward_cols(dv, db, dy, y, R, C, b * bw, min64((b + 1) * bw, C),
                                      scale);
}

void gelu_dropout_backward(float *dv, float *db, const float *dy, const float *v, int64_t R,
                           int64_t C, float p, uint64_t seed) {
    ew_drop d;
    const ew_drop *dp = drop_make(&d, p, seed) ? &d : NULL;
    const ew_kernels *k = ew_active();
    const int64_t bw = col_block_width(C), nb = (C + bw - 1) / bw;
#pragma omp parallel for schedule(static) if (R * C > EW_PAR_MIN_GELU)
    for (int64_t b = 0; b < nb; b++)
        k->gelu_dropout_backward_cols(dv, db, dy, v, R, C, b * bw, min64((b + 1) * bw, C), dp);
}
