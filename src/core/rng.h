/* rng.h — a small seeded generator (xoshiro256**, seeded by splitmix64) for
 * initialisation and, later, dropout. Same seed → same numbers on every machine. */
#ifndef TFM_CORE_RNG_H
#define TFM_CORE_RNG_H

#include <stdint.h>

typedef struct tfm_rng {
    uint64_t s[4];
} tfm_rng;

void rng_seed(tfm_rng *r, uint64_t seed);
uint64_t rng_next(tfm_rng *r);
float rng_uniform(tfm_rng *r);                  /* [0, 1) with 24 random bits */
float rng_uniform_range(tfm_rng *r, float lo, float hi);
float rng_normal(tfm_rng *r);                   /* N(0, 1), Box–Muller */

#endif
