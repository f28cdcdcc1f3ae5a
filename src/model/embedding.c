/* embedding.c — scaled token embedding: lookup forward, column-parallel scatter-add
 * backward (deterministic for any thread count). */
#include "model/embedding.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

/* Columns per parallel work item in backward: wide enough for whole cache lines and
 * vector loops, narrow enough that E = 512 gives every thread of a small machine work. */
#define EMB_COL_BLOCK 64

float embedding_scale(int64_t E) { return (float)sqrt((double)E); }

static tfm_status check_ids(const int32_t *ids, int64_t R, int64_t V, const char *what) {
    for (int64_t r = 0; r < R; r++)
        if (ids[r] < 0 || ids[r] >= V)
            return tfm_error(TFM_ERR_INVALID_ARG, "%s: id %d at position %lld is outside [0, %lld)",
                             what, (int)ids[r], (long long)r, (long long)V);
    return TFM_OK;
}

tfm_status embedding_forward(float *out, const int32_t *ids, const float *W, int64_t R,
                             int64_t V, int64_t E) {
    TFM_TRY(check_ids(ids, R, V, "embedding_forward"));
    const float s = embedding_scale(E);
#pragma omp parallel for schedule(static) if (R * E > (1 << 16))
    for (int64_t r = 0; r < R; r++) {
        const float *w = W + (int64_t)ids[r] * E;
        float *o = out + r * E;
        for (int64_t c = 0; c < E; c++) o[c] = w[c] * s; /* lut(x) * math.sqrt(d_model) */
    }
    return TFM_OK;
}

tfm_status embedding_backward(float *dW, const float *dout, const int32_t *ids, int64_t R,
                              int64_t V, int64_t E) {
    TFM_TRY(check_ids(ids, R, V, "embedding_backward"));
    const float s = embedding_scale(E);
    const int64_t nblocks = (E + EMB_COL_BLOCK - 1) / EMB_COL_BLOCK;
    /* out[r, :] = W[ids[r], :] * s  →  dW[ids[r], :] += dout[r, :] * s. Rows are visited
     * in order inside each column block, so repeated ids sum in the same order always. */
#pragma omp parallel for schedule(static) if (R * E > (1 << 16))
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t c0 = b * EMB_COL_BLOCK;
        const int64_t c1 = c0 + EMB_COL_BLOCK < E ? c0 + EMB_COL_BLOCK : E;
        for (int64_t r = 0; r < R; r++) {
            float *d = dW + (int64_t)ids[r] * E;
            const float *g = dout + r * E;
            for (int64_t c = c0; c < c1; c++) d[c] += g[c] * s;
        }
    }
    return TFM_OK;
}
