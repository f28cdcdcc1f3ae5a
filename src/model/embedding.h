/* embedding.h — token embedding, scaled as in "Attention Is All You Need" §3.4:
 * out = W[ids] · √E (the Annotated Transformer's `Embeddings`: nn.Embedding, then
 * `* math.sqrt(d_model)`).
 * Legend: R rows (token positions, N·L for a batch (N, L)), V vocabulary, E model dim.
 *
 * Like nn.Embedding without padding_idx: a PAD id is an ordinary row of W, looked up
 * like any other and given gradient like any other (the Annotated Transformer's
 * choice; PAD positions are kept out of the loss and of attention by masks instead).
 * With weight tying the generator shares W (V, E) and adds its gradient into the
 * same dW. */
#ifndef TFM_MODEL_EMBEDDING_H
#define TFM_MODEL_EMBEDDING_H

#include <stdint.h>

#include "tfm.h"

/* The factor the lookup is multiplied by: √E, rounded to float as PyTorch rounds the
 * Python scalar `math.sqrt(d_model)` when it multiplies a float32 tensor. */
float embedding_scale(int64_t E);

/* out (R, E) = W[ids[r], :] · √E.
 * ids (R), each in [0, V): anything else is TFM_ERR_INVALID_ARG (PyTorch: IndexError)
 * and out is left unwritten. W (V, E). */
tfm_status embedding_forward(float *out, const int32_t *ids, const float *W, int64_t R,
                             int64_t V, int64_t E);

/* Backward of  out[r, :] = W[ids[r], :] · √E:  dW[ids[r], :] += dout[r, :] · √E.
 * Accumulates into dW (V, E); dout (R, E); ids (R) checked as in forward (nothing is
 * written when one is out of range). Rows with the same id add up in increasing r,
 * whatever the number of threads (threads split the E columns, never the rows), so
 * the result is bit-identical for every thread count. */
tfm_status embedding_backward(float *dW, const float *dout, const int32_t *ids, int64_t R,
                              int64_t V, int64_t E);

#endif
