/* adam_impl.h — the body of adam_range (adam_kernels.h), included once per instruction
 * set with ADAM_FN(name) naming that set's function.
 *
 * torch/optim/adam.py, _single_tensor_adam (capturable=False, differentiable=False);
 * AdamW is the same function with decoupled_weight_decay=True. The flags are constant
 * over a call: adam_loop is inlined once per combination the common configurations use,
 * each a branch-free loop the compiler vectorises; the rest take the general loop. */
#include <math.h>
#include <stddef.h>

#include "train/adam_kernels.h"

/* Every FMA here is an explicit fmaf, as ATen's; nothing else may be contracted. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#ifndef ADAM_FN
#error "define ADAM_FN before including adam_impl.h"
#endif

static inline __attribute__((always_inline)) void
adam_loop(const adam_args *a, int64_t lo, int64_t hi, const bool scaled, const bool l2,
          const bool decoupled, const bool w1_small, const bool maximize, const bool ams) {
    float *restrict p = a->p, *restrict m = a->m, *restrict v = a->v, *restrict vmax = a->vmax;
    const float *restrict grads = a->grads;
    const float gs = a->grad_scale, wd = a->wd, shrink = a->shrink, w1c = a->w1_coef;
    const float b2 = a->b2, w2 = a->w2, bc2 = a->bc2_sqrt, nss = a->neg_step_size, eps = a->eps;
    for (int64_t i = lo; i < hi; i++) {
        float g = scaled ? grads[i] * gs : grads[i]; /* clip_grad_norm_: grad.mul_(clip_coef) */
        if (maximize) g = -g;
        float pi = p[i];
        if (decoupled) pi *= shrink;        /* param.mul_(1 - lr * weight_decay) */
        if (l2) g = fmaf(pi, wd, g);        /* grad = grad.add(param, alpha=weight_decay) */
        const float mi = fmaf(w1c, g - m[i], w1_small ? m[i] : g); /* exp_avg.lerp_ */
        m[i] = mi;
        /* exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) */
        float vi = fmaf(w2 * g, g, v[i] * b2);
        v[i] = vi;
        if (ams) {
            /* torch.maximum(max_exp_avg_sqs[i], exp_avg_sq): NaN propagates */
            const float x = vmax[i];
            vi = (x > vi || x != x) ? x : vi;
            vmax[i] = vi;
        }
        const float denom = sqrtf(vi) / bc2 + eps; /* (sqrt(v) / bc2_sqrt).add_(eps) */
        p[i] = pi + (nss * mi) / denom;            /* addcdiv_(exp_avg, denom, -step_size) */
    }
}

void ADAM_FN(adam_range)(const adam_args *a, int64_t lo, int64_t hi) {
    const bool plain = a->w1_small && !a->maximize && !a->vmax;
    if (plain && !a->l2 && !a->decoupled) {
        if (a->scaled) adam_loop(a, lo, hi, true, false, false, true, false, false);
        else adam_loop(a, lo, hi, false, false, false, true, false, false);
    } else if (plain && a->decoupled && !a->l2) {
        if (a->scaled) adam_loop(a, lo, hi, true, false, true, true, false, false);
        else adam_loop(a, lo, hi, false, false, true, true, false, false);
    } else if (plain && a->l2 && !a->decoupled) {
        if (a->scaled) adam_loop(a, lo, hi, true, true, false, true, false, false);
        else adam_loop(a, lo, hi, false, true, false, true, false, false);
    } else {
        adam_loop(a, lo, hi, a->scaled, a->l2, a->decoupled, a->w1_small, a->maximize,
                  a->vmax != NULL);
    }
}
