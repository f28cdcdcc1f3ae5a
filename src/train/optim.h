/* optim.h — torch.optim's SGD, Adam and AdamW, and clip_grad_norm_, on flat arrays.
 *
 * Legend: P number of parameters (all of a module's parameters, one contiguous block;
 * the gradients are a second block of the same layout).
 *
 * Each optimizer updates params (P) in place from grads (P) with the update rule of
 * torch.optim's single-tensor path (foreach=False) in float32, operation by operation:
 * the hyperparameters are doubles (Python floats) and are rounded to float where torch
 * rounds them (a scalar multiplying a float32 tensor), the bias corrections are
 * computed in double as torch computes them in Python, and every `add(x, alpha=a)`,
 * `addcmul` and `lerp` is a fused multiply-add, as in ATen's vectorised CPU kernels.
 * On the fixtures (torch 2.15, AVX-512) SGD matches torch bit for bit and Adam/AdamW to
 * an ulp: ATen's vectorised sqrt is not correctly rounded there (sqrtf is). The results
 * are the same bits with any compiler, flags or thread count.
 *
 * The learning rate is an argument of every step, so that a schedule (schedule.h) can
 * drive it. The optimizer owns its per-element state (allocated once by optim_create,
 * never during a step) and exposes it for checkpoints under torch's state names.
 */
#ifndef TFM_TRAIN_OPTIM_H
#define TFM_TRAIN_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tfm.h"

typedef enum optim_kind {
    OPTIM_SGD = 0,   /* torch.optim.SGD */
    OPTIM_ADAM = 1,  /* torch.optim.Adam: L2 weight_decay added to the gradient */
    OPTIM_ADAMW = 2, /* torch.optim.AdamW: decoupled decay p *= 1 - lr·weight_decay */
} optim_kind;

/* Constructor arguments under torch's names (lr excepted: it is given to each step).
 * optim_config_default() fills torch's defaults; a field a kind does not take is
 * ignored. */
typedef struct optim_config {
    optim_kind kind;
    double weight_decay; /* SGD, Adam: 0; AdamW: 1e-2 */
    bool maximize;       /* false: minimise (the gradient is negated when true) */
    /* SGD */
    double momentum;  /* 0: no momentum buffer */
    double dampening; /* 0 */
    bool nesterov;    /* false; needs momentum > 0 and dampening == 0 */
    /* Adam, AdamW */
    double beta1, beta2; /* betas = (0.9, 0.999) */
    double eps;          /* 1e-8 */
    bool amsgrad;        /* false */
} optim_config;

typedef struct optimizer optimizer;

void optim_config_default(optim_config *cfg, optim_kind kind);
/* "SGD", "Adam", "AdamW" (torch's class names), and back. */
const char *optim_kind_name(optim_kind kind);
tfm_status optim_kind_from_name(const char *name, optim_kind *out);

/* Check a configuration as torch's constructors do (their ValueError messages, plus
 * non-finite values): TFM_ERR_INVALID_ARG with a message, or TFM_OK. */
tfm_status optim_config_check(const optim_config *cfg);

/* A new optimizer for P = n parameters, its state zeroed and its step count 0.
 * TFM_ERR_INVALID_ARG for a bad config or n == 0 (torch: "optimizer got an empty
 * parameter list"), TFM_ERR_NOMEM. *out is NULL on failure. */
tfm_status optim_create(const optim_config *cfg, size_t n, optimizer **out);
void optim_free(optimizer *opt);

const optim_config *optim_get_config(const optimizer *opt);
size_t optim_num_params(const optimizer *opt); /* P */

/* One optimizer.step() with learning rate lr:
 *   params (P) updated in place; grads (P) read only; n must equal P (TFM_ERR_SHAPE).
 * lr must be finite and >= 0 (TFM_ERR_INVALID_ARG: "Invalid learning rate"). Nothing
 * is modified when an error is returned. Elementwise, OpenMP-parallel for large P;
 * the result does not depend on the thread count. */
tfm_status optim_step(optimizer *opt, float *params, const float *grads, size_t n, double lr);
/* optim_step with the gradients grads[i] · grad_scale (each product rounded to float):
 * bit for bit clip_grad_norm with that coefficient followed by optim_step, in one pass
 * over memory instead of three, and grads left unscaled. */
tfm_status optim_step_scaled(optimizer *opt, float *params, const float *grads, size_t n,
                             double lr, float grad_scale);

/* ---- state, for checkpoints ----------------------------------------------------
 * The step count (torch's state["step"]: steps taken so far) and the named arrays of
 * P floats each, in this order:
 *   SGD with momentum > 0:  "momentum_buffer"   (meaningful once step >= 1; torch
 *                                                creates it on the first step)
 *   SGD without momentum:   none
 *   Adam, AdamW:            "exp_avg", "exp_avg_sq", and with amsgrad "max_exp_avg_sq"
 * To restore: create an optimizer with the same config and P, copy each array into
 * optim_state()'s data and set the step count; training then continues bit for bit. */
int64_t optim_get_step(const optimizer *opt);
tfm_status optim_set_step(optimizer *opt, int64_t step); /* step >= 0 */
size_t optim_num_states(const optimizer *opt);
/* name and data (P floats, owned by the optimizer, writable) of state i;
 * TFM_ERR_INVALID_ARG if i >= optim_num_states(). */
tfm_status optim_state(const optimizer *opt, size_t i, const char **name, float **data);
/* The state named `name`, or NULL. */
float *optim_state_find(const optimizer *opt, const char *name);

/* ---- gradient clipping ---------------------------------------------------------
 * torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type=2):
 *   total_norm = ||grads||_2 over all P gradients,
 *   clip_coef  = max_norm / (total_norm + 1e-6), and grads *= min(clip_coef, 1),
 * with total_norm rounded to float and the coefficient formed in float as torch does.
 * The sum of squares accumulates in double over fixed chunks combined in a fixed order:
 * the result does not depend on the thread count.
 *   grads (P) scaled in place; *total_norm (may be NULL) = the norm before clipping.
 * A non-finite total norm (a NaN or inf gradient) is TFM_ERR_INVALID_ARG with
 * *total_norm still set (to inf or NaN) and the gradients left unchanged: torch's
 * error_if_nonfinite=True, so that a caller can skip the step (test isfinite(norm)).
 * max_norm must be finite and >= 0 (TFM_ERR_INVALID_ARG). */
tfm_status clip_grad_norm(float *grads, size_t n, double max_norm, double *total_norm);
/* clip_grad_norm without touching the gradients: *coef (may be NULL) = the factor it would
 * multiply them by (1 when the norm is within max_norm or on error), for
 * optim_step_scaled. Same errors and *total_norm. */
tfm_status clip_grad_coef(const float *grads, size_t n, double max_norm, double *total_norm,
                          float *coef);

/* ||x||_2 of n floats, the same fixed-order double sum clip_grad_norm uses. */
double grad_norm(const float *x, size_t n);

#endif
