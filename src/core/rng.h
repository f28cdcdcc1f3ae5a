/* rng.h — a small seeded generator (xoshiro256**, seeded by splitmix64) for
 * initialisation, and a counter-based hash for dropout. Same seed → same numbers on every
 * machine. */
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

/* splitmix64's finaliser: a bijective scramble of 64 bits. */
static inline uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* A seed for sub-stream `i` of `seed` (a forward pass of a run, a dropout site of a
 * pass): scrambled, so that sub-streams and their elements do not line up. */
static inline uint64_t rng_derive(uint64_t seed, uint64_t i) {
    return rng_mix64(seed ^ rng_mix64(i + 0x632be59bd9b4e019ULL));
}

/* 64 counter-based random bits (splitmix64 in counter mode): the same (seed, index)
 * always gives the same bits, so a dropout mask can be recomputed in backward instead
 * of stored, and does not depend on which thread draws it. Seeds should come from
 * rng_derive. */
static inline uint64_t rng_hash_bits(uint64_t seed, uint64_t index) {
    return rng_mix64(seed + index * 0x9e3779b97f4a7c15ULL);
}

/* A counter-based uniform in [0, 1): the top 24 bits of rng_hash_bits. */
static inline float rng_hash_uniform(uint64_t seed, uint64_t index) {
    return (float)(rng_hash_bits(seed, index) >> 40) * (1.0f / 16777216.0f);
}

/* Inverted dropout's factor for element `index`: 0 (dropped) or 1 / (1 − p). */
static inline float rng_dropout_scale(uint64_t seed, uint64_t index, float p) {
    return rng_hash_uniform(seed, index) < p ? 0.0f : 1.0f / (1.0f - p);
}

/* The same decision in integers, for vector loops: element `index` is dropped exactly
 * when (rng_hash_bits(seed, index) >> 40) < rng_dropout_threshold(p). With u = bits >> 40
 * (an integer below 2^24, exact in float), u · 2^-24 < p ⇔ u < p · 2^24 (scaling by a
 * power of two is exact) ⇔ u < ceil(p · 2^24). NaN or p <= 0 drops nothing; p · 2^24 at
 * or above 2^24 drops everything. */
uint64_t rng_dropout_threshold(float p);

#endif
