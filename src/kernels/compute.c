/* compute.c — the thread's compute scope (compute.h). */
#include "kernels/compute.h"

static _Thread_local compute_scope current = {TFM_COMPUTE_F32, NULL};

compute_scope compute_enter(tfm_compute_type type, const bf16_weights *weights) {
    const compute_scope previous = current;
    current = (compute_scope){type, weights};
    return previous;
}

void compute_leave(compute_scope previous) { current = previous; }

compute_scope compute_current(void) { return current; }
