/* loss.h — cross-entropy with label smoothing on log-probabilities, ignoring PAD targets:
 * torch.nn.CrossEntropyLoss(ignore_index=pad, label_smoothing=eps, reduction='mean')
 * applied to logits whose log_softmax is logp (log_softmax is idempotent, so applying
 * it to logp itself gives the same value). Per counted row r (target y_r ≠ pad):
 *   loss_r = (1 − eps) · (−logp[r, y_r]) + eps · mean_c(−logp[r, c])
 * i.e. the cross-entropy against the target distribution
 *   q_r = (1 − eps) · onehot(y_r) + eps / V,
 * and loss = Σ_r loss_r / count. (The Annotated Transformer's LabelSmoothing
 * spreads eps over V − 2 classes with KLDivLoss and a sum; this is PyTorch's form.)
 * Legend: R rows (token positions), V vocabulary (classes).
 *
 * Targets are int32; one that is neither pad nor in [0, V) is TFM_ERR_INVALID_ARG
 * (PyTorch raises). eps outside [0, 1] is TFM_ERR_INVALID_ARG (PyTorch too). When
 * every target is pad, tfm defines loss = 0 with count = 0 and zero gradient, where
 * PyTorch returns NaN (0/0). */
#ifndef TFM_MODEL_LOSS_H
#define TFM_MODEL_LOSS_H

#include <stdint.h>

#include "tfm.h"

typedef struct ce_result {
    double loss;     /* Σ_r loss_r / count: what PyTorch returns (0 when count = 0) */
    double loss_sum; /* Σ_r loss_r, for averages over several batches */
    int64_t count;   /* rows whose target is not pad: the mean's denominator */
    int64_t correct; /* counted rows whose argmax_c logp[r, c] (first maximum, as
                        torch.argmax) equals the target */
} ce_result;

/* res from logp (R, V) and targets (R). Accumulates in double. */
tfm_status cross_entropy_forward(ce_result *res, const float *logp, const int32_t *targets,
                                 int64_t R, int64_t V, int32_t pad, float eps);

/* Backward to log-probabilities, for loss = Σ_r loss_r / count:
 *   dlogp[r, c] += dloss / count · −q_r[c]   (counted rows; pad rows get nothing)
 * dlogp (R, V) accumulates. dloss is the gradient arriving at the loss (1 for a plain
 * loss.backward()); count is the denominator, normally res.count — pass the total over
 * all micro-batches to average across them. count ≤ 0 adds nothing. */
tfm_status cross_entropy_backward(float *dlogp, const int32_t *targets, int64_t R, int64_t V,
                                  int32_t pad, float eps, float dloss, int64_t count);

/* Fused backward of log_softmax + cross-entropy straight to the logits:
 *   dlogits[r, c] = dloss / count · (exp(logp[r, c]) − q_r[c])   (counted rows)
 *   dlogits[r, :] = 0                                            (pad rows)
 * (softmax − target distribution; q_r sums to 1, so log_softmax's Σ term is folded in).
 * Unlike the other backward functions this WRITES dlogits (R, V) rather than adding to
 * it: the logits are an intermediate with this one consumer, and writing lets dlogits be
 * the same buffer as logp (R, V), turning the saved log-probabilities into the gradient
 * in place — at R = N·L rows by V classes the largest buffer of a training step.
 * Arguments otherwise as cross_entropy_backward. */
tfm_status log_softmax_cross_entropy_backward(float *dlogits, const float *logp,
                                              const int32_t *targets, int64_t R, int64_t V,
                                              int32_t pad, float eps, float dloss,
                                              int64_t count);

#endif
