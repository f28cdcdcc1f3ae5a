/* adam_kernels.h — the element loop of torch.optim.Adam / AdamW (optim.c), compiled once
 * per instruction set from adam_impl.h (adam_generic.c, adam_avx2.c, adam_avx512.c).
 * Every build rounds as torch does, operation by operation (see optim.c), so the paths
 * agree bit for bit: vector FMA, square root and division are exactly rounded like the
 * scalar ones.
 * Legend: P number of parameters; [lo, hi) a range of them. */
#ifndef TFM_TRAIN_ADAM_KERNELS_H
#define TFM_TRAIN_ADAM_KERNELS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct adam_args {
    float *p, *m, *v, *vmax; /* (P) params, exp_avg, exp_avg_sq, max_exp_avg_sq or NULL */
    const float *grads;      /* (P) */
    float grad_scale;        /* the gradient used is grads[i] · grad_scale (clipping) */
    float wd, shrink, w1_coef, b2, w2, bc2_sqrt, neg_step_size, eps;
    bool scaled, l2, decoupled, w1_small, maximize;
} adam_args;

typedef void (*adam_range_fn)(const adam_args *a, int64_t lo, int64_t hi);

void adam_range_generic(const adam_args *a, int64_t lo, int64_t hi);
#if defined(TFM_HAVE_X86_KERNELS)
void adam_range_avx2(const adam_args *a, int64_t lo, int64_t hi);
void adam_range_avx512(const adam_args *a, int64_t lo, int64_t hi);
#endif

#endif
