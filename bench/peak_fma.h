/* peak_fma.h — the FMA-chain kernels of peak_fma.c, one file per instruction set
 * (bench/CMakeLists.txt compiles each with its -m flags; peak_fma.c calls only the one
 * __builtin_cpu_supports allows). */
#ifndef PEAK_FMA_H
#define PEAK_FMA_H
#include <stdint.h>

/* Run `iters` iterations of independent FMA chains; returns a value that depends on
 * every chain (so the compiler keeps them) and sets *flop to the FLOPs done. */
float peak_fma_avx512(int64_t iters, double *flop);
float peak_fma_avx2(int64_t iters, double *flop);
#endif
