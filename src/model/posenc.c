/* posenc.c — the sinusoidal positional-encoding table, computed once in double. */
#include "model/posenc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"

tfm_status posenc_create(posenc *pe, int64_t max_len, int64_t E) {
    pe->table = NULL;
    pe->max_len = 0;
    pe->E = 0;
    if (E <= 0 || E % 2 != 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "posenc: d_model %lld must be even and positive",
                         (long long)E);
    if (max_len < 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "posenc: max_len %lld is negative",
                         (long long)max_len);
    if ((uint64_t)max_len > SIZE_MAX / sizeof(float) / (uint64_t)E)
        return tfm_error(TFM_ERR_NOMEM, "posenc: a %lld x %lld table does not fit in memory",
                         (long long)max_len, (long long)E);
    float *t = malloc((size_t)(max_len ? max_len : 1) * (size_t)E * sizeof(float));
    if (!t) return tfm_error(TFM_ERR_NOMEM, "posenc: out of memory for the table");
    for (int64_t i = 0; 2 * i < E; i++) {
        /* 1 / 10000^(2i/E), the paper's wavelength for dimensions 2i and 2i + 1 */
        const double inv = 1.0 / pow(10000.0, (double)(2 * i) / (double)E);
        for (int64_t p = 0; p < max_len; p++) {
            const double a = (double)p * inv;
            t[p * E + 2 * i] = (float)sin(a);
            t[p * E + 2 * i + 1] = (float)cos(a);
        }
    }
    pe->table = t;
    pe->max_len = max_len;
    pe->E = E;
    return TFM_OK;
}

void posenc_free(posenc *pe) {
    if (!pe) return;
    free(pe->table);
    pe->table = NULL;
    pe->max_len = pe->E = 0;
}

tfm_status posenc_forward(float *out, const float *x, const posenc *pe, int64_t N, int64_t L,
                          int64_t E) {
    if (!pe->table || E != pe->E)
        return tfm_error(TFM_ERR_SHAPE, "posenc: input width %lld, table width %lld",
                         (long long)E, (long long)pe->E);
    if (L > pe->max_len)
        return tfm_error(TFM_ERR_SHAPE, "posenc: sequence length %lld exceeds max_len %lld",
                         (long long)L, (long long)pe->max_len);
    const int64_t LE = L * E;
#pragma omp parallel for schedule(static) if (N * LE > (1 << 16))
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < LE; j++) out[n * LE + j] = x[n * LE + j] + pe->table[j];
    return TFM_OK;
}

void posenc_backward(float *dx, const float *dout, int64_t n) {
    for (int64_t i = 0; i < n; i++) dx[i] += dout[i]; /* d(x + PE)/dx = I */
}
