/* posenc.h — sinusoidal positional encoding, "Attention Is All You Need" §3.5:
 *   PE[pos, 2i]   = sin(pos / 10000^(2i/E))
 *   PE[pos, 2i+1] = cos(pos / 10000^(2i/E))
 * added to the (already scaled) embeddings.
 * Legend: N batch, L sequence length, E model dim (even), P max_len.
 *
 * The table is computed in double and rounded once to float, so every entry is the
 * paper's value to within float rounding (≤ 2^-25 absolute; PyTorch fixture: 1e-6).
 * The Annotated Transformer computes it in float32 (div_term = exp(arange(0, E, 2) ·
 * −ln(10000)/E), then sin(pos · div_term)); its argument carries a relative error of
 * about an ulp, so its table differs from this one by up to about pos · 2^-23
 * (measured with E = 512: 7e-6 for pos < 100, 4e-4 for pos < 5000) — float32 rounding
 * in PyTorch's computation, not a different model. Dropout after the sum (the paper's
 * P_drop) is the caller's. */
#ifndef TFM_MODEL_POSENC_H
#define TFM_MODEL_POSENC_H

#include <stdint.h>

#include "tfm.h"

typedef struct posenc {
    float *table;    /* (P, E), owned */
    int64_t max_len; /* P */
    int64_t E;
} posenc;

/* Compute the table once for positions [0, max_len). E must be even and > 0 (as in
 * the paper and every PyTorch formulation), max_len ≥ 0. On failure pe->table is NULL. */
tfm_status posenc_create(posenc *pe, int64_t max_len, int64_t E);
void posenc_free(posenc *pe);

/* out (N, L, E) = x (N, L, E) + PE[0:L, :] broadcast over N. out may be x.
 * L > max_len or E ≠ pe->E is TFM_ERR_SHAPE. */
tfm_status posenc_forward(float *out, const float *x, const posenc *pe, int64_t N, int64_t L,
                          int64_t E);

/* Backward of  out = x + PE:  dx += dout, both (n) floats. The identity: a caller that
 * keeps one gradient buffer for both sides need not call it (and must not with
 * dx == dout, which would double it). */
void posenc_backward(float *dx, const float *dout, int64_t n);

#endif
