/* generator.h — the output layer of the Annotated Transformer's `Generator`:
 *   logp = log_softmax(x · Wᵀ + b)   (nn.Linear(E, V), then log_softmax over V).
 * Legend: R rows (token positions), E model dim, V vocabulary.
 *
 * Weight tying ("Attention Is All You Need" §3.4: the embedding and the pre-softmax
 * linear share one matrix): W (V, E) has the embedding's shape, so a tied model passes
 * the embedding's W as W and the embedding's gradient as dW; generator_backward then
 * adds its part into the same dW that embedding_backward scatters into. The bias b stays
 * the generator's own.
 *
 * Training path: generator_forward → cross-entropy forward (loss.h) →
 * log_softmax_cross_entropy_backward (dlogits straight from logp) → generator_backward.
 * log_softmax_backward is there for callers that hold dlogp instead. */
#ifndef TFM_MODEL_GENERATOR_H
#define TFM_MODEL_GENERATOR_H

#include <stdint.h>

/* logp (R, V) = (logits − max) − log Σ exp(logits − max) per row of logits (R, V), the
 * sum in double. logp may be logits (in place). */
void log_softmax_forward(float *logp, const float *logits, int64_t R, int64_t V);

/* Backward of  logp = log_softmax(z):  dz[r, c] += dlogp[r, c] − exp(logp[r, c]) · Σ_c' dlogp[r, c'].
 * dlogits (R, V) accumulates and must not alias dlogp (R, V); logp (R, V) saved from forward. */
void log_softmax_backward(float *dlogits, const float *dlogp, const float *logp, int64_t R,
                          int64_t V);

/* logp (R, V) = log_softmax(x (R, E) · W (V, E)ᵀ + b (V, or NULL)): also the value
 * saved for backward. */
void generator_forward(float *logp, const float *x, const float *W, const float *b, int64_t R,
                       int64_t E, int64_t V);

/* Backward of the linear part  logits = x · Wᵀ + b, from dlogits (R, V):
 *   dx (R, E) += dlogits · W      (NULL: not wanted)
 *   dW (V, E) += dlogitsᵀ · x     (tied: the embedding's gradient)
 *   db (V)    += Σ_r dlogits[r, :] (NULL: no bias; rows summed in order, per column)
 * x (R, E) and W (V, E) as in forward. Calls tfm_gemm: not inside an OpenMP region. */
void generator_backward(float *dx, float *dW, float *db, const float *dlogits, const float *x,
                        const float *W, int64_t R, int64_t E, int64_t V);

#endif
