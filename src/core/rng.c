/* rng.c — xoshiro256** (Blackman & Vigna) seeded through splitmix64. */
#include "core/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(tfm_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t rng_next(tfm_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float rng_uniform(tfm_rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

float rng_uniform_range(tfm_rng *r, float lo, float hi) { return lo + (hi - lo) * rng_uniform(r); }

float rng_normal(tfm_rng *r) {
    /* 1 - u keeps the log argument in (0, 1]. */
    double u1 = 1.0 - (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    double u2 = (double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

uint64_t rng_dropout_threshold(float p) {
    const float scaled = p * 16777216.0f; /* exact: a power-of-two scaling */
    if (!(scaled > 0.0f)) return 0;
    if (scaled >= 16777216.0f) return 1ULL << 24;
    return (uint64_t)ceil((double)scaled);
}
