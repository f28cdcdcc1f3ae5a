/* peak_fma_kernel.h — the body of one FMA-chain kernel, included by peak_fma_avx512.c
 * and peak_fma_avx2.c after they define:
 *   KERNEL   the function's name          VEC     the vector type
 *   LANES    floats per vector            NACC    independent chains (accumulators)
 *   SET1(x)  broadcast                    FMADD(c, a, b)  c · a + b, one instruction
 *   STORE(p, v)  store a vector to float p[LANES]
 * NACC chains cover the FMA latency (4 cycles) times the FMA ports (2) with room to
 * spare, so the loop is bound by FMA throughput, not latency; they and the two
 * constants must fit the register file (no spills). */
float KERNEL(int64_t iters, double *flop) {
    /* c = c · a + b converges to b / (1 − a): the values stay finite however long */
    const VEC a = SET1(0.9999f), b = SET1(1e-4f);
    VEC c[NACC];
    for (int k = 0; k < NACC; k++) c[k] = SET1((float)k);
    for (int64_t i = 0; i < iters; i++) {
#pragma GCC unroll 32
        for (int k = 0; k < NACC; k++) c[k] = FMADD(c[k], a, b);
    }
    /* every chain feeds the result, so none can be dropped */
    float lanes[LANES], sum = 0.f;
    for (int k = 0; k < NACC; k++) {
        STORE(lanes, c[k]);
        for (int j = 0; j < LANES; j++) sum += lanes[j];
    }
    *flop = 2.0 * LANES * NACC * (double)iters; /* an FMA is 2 FLOPs a lane */
    return sum;
}
