/* generator.c — Linear(E → V) + log_softmax, forward and backward. */
#include "model/generator.h"

#include <math.h>

#include "kernels/gemm.h"
#include "nn/linear.h"

/* Columns per parallel item when summing db over rows (see column_sums). */
#define GEN_COL_BLOCK 256

void log_softmax_forward(float *logp, const float *logits, int64_t R, int64_t V) {
#pragma omp parallel for schedule(static) if (R * V > (1 << 15))
    for (int64_t r = 0; r < R; r++) {
        const float *z = logits + r * V;
        float *y = logp + r * V;
        float m = -INFINITY;
        for (int64_t c = 0; c < V; c++) m = z[c] > m ? z[c] : m;
        double s = 0.0;
        for (int64_t c = 0; c < V; c++) s += expf(z[c] - m);
        /* PyTorch's order: (z − max) − log Σ exp(z − max) */
        const float lse = (float)log(s);
        for (int64_t c = 0; c < V; c++) y[c] = (z[c] - m) - lse;
    }
}

void log_softmax_backward(float *dlogits, const float *dlogp, const float *logp, int64_t R,
                          int64_t V) {
#pragma omp parallel for schedule(static) if (R * V > (1 << 15))
    for (int64_t r = 0; r < R; r++) {
        const float *g = dlogp + r * V, *y = logp + r * V;
        float *d = dlogits + r * V;
        double s = 0.0;
        for (int64_t c = 0; c < V; c++) s += g[c];
        const float sf = (float)s;
        /* y = z − logsumexp(z)  →  dz = dy − softmax(z) · Σ dy */
        for (int64_t c = 0; c < V; c++) d[c] += g[c] - expf(y[c]) * sf;
    }
}

void generator_forward(float *logp, const float *x, const float *W, const float *b, int64_t R,
                       int64_t E, int64_t V) {
    linear_forward(logp, V, x, E, W, b, R, E, V); /* proj(x) */
    log_softmax_forward(logp, logp, R, V);         /* log_softmax(proj(x), dim=-1) */
}

/* db (C) += Σ_r d (R, C)[r, :]. Threads split the columns; each column sums its rows in
 * order, so the result does not depend on the thread count. */
static void column_sums(float *db, const float *d, int64_t R, int64_t C) {
    const int64_t nblocks = (C + GEN_COL_BLOCK - 1) / GEN_COL_BLOCK;
#pragma omp parallel for schedule(static) if (R * C > (1 << 16))
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t c0 = b * GEN_COL_BLOCK;
        const int64_t c1 = c0 + GEN_COL_BLOCK < C ? c0 + GEN_COL_BLOCK : C;
        for (int64_t r = 0; r < R; r++) {
            const float *row = d + r * C;
            for (int64_t c = c0; c < c1; c++) db[c] += row[c];
        }
    }
}

void generator_backward(float *dx, float *dW, float *db, const float *dlogits, const float *x,
                        const float *W, int64_t R, int64_t E, int64_t V) {
    if (R == 0) return;
    /* logits = x · Wᵀ + b */
    if (dx) tfm_gemm(false, false, R, E, V, 1.0f, dlogits, V, W, E, 1.0f, dx, E); /* dx += dl · W */
    tfm_gemm(true, false, V, E, R, 1.0f, dlogits, V, x, E, 1.0f, dW, E);         /* dW += dlᵀ · x */
    if (db) column_sums(db, dlogits, R, V);                                      /* db += Σ_r dl */
}
