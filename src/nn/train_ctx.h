/* train_ctx.h — what a forward pass needs when it will be differentiated: where to
 * keep the activations backward reads, and the dropout in force.
 *
 * A forward given a train_ctx saves its activations in `act` (which lives until the
 * backward pass); a forward given NULL is inference and saves nothing. Dropout applies
 * only when p > 0 (training mode). Each dropout site draws its own stream of the
 * counter-based RNG (core/rng.h), recorded in its cache, so backward recomputes the
 * same mask instead of storing it.
 */
#ifndef TFM_NN_TRAIN_CTX_H
#define TFM_NN_TRAIN_CTX_H

#include <stdint.h>

#include "core/rng.h"
#include "core/workspace.h"

typedef struct train_ctx {
    tfm_ws *act;       /* saved activations, kept until backward */
    float dropout;     /* probability for every dropout site; 0 = none (eval) */
    uint64_t seed;     /* this forward pass's seed */
    uint64_t streams;  /* dropout sites drawn so far in this pass */
} train_ctx;

/* The seed of the next dropout site (0 when dropout is off). */
static inline uint64_t train_next_stream(train_ctx *t) {
    if (!t || t->dropout <= 0.0f) return 0;
    t->streams++;
    return rng_derive(t->seed, t->streams);
}

/* Allocate saved activations: from the activation arena when training, else from the
 * scratch workspace (released by the caller's mark). */
static inline float *train_floats(train_ctx *t, tfm_ws *ws, size_t n) {
    return ws_floats(t ? t->act : ws, n);
}

#endif
