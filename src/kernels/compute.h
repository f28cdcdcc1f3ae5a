/* compute.h — the compute type in force on this thread, as PyTorch's autocast state:
 * the API sets it for the length of a call (a module's forward or backward, a decoding
 * step, a training step) and the matrix products read it. It carries the bf16 twins of
 * the weights, which the products use in place of converting a weight each time.
 * Read only by the calling thread, before any OpenMP region starts.
 */
#ifndef TFM_KERNELS_COMPUTE_H
#define TFM_KERNELS_COMPUTE_H

#include "kernels/bf16.h"
#include "tfm.h"

typedef struct compute_scope {
    tfm_compute_type type;
    const bf16_weights *weights; /* or NULL: every operand converted when used */
} compute_scope;

/* Enter a scope; returns the one it replaces, to be given back to compute_leave. */
compute_scope compute_enter(tfm_compute_type type, const bf16_weights *weights);
void compute_leave(compute_scope previous);
/* The scope in force (FP32 and no weights outside any). */
compute_scope compute_current(void);
static inline bool compute_bf16(void) { return compute_current().type == TFM_COMPUTE_BF16; }

#endif
