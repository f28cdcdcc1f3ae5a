/* peak_fma.c — the machine's FP32 peak, measured: independent FMA chains in registers
 * (no memory traffic), on one thread and on all threads (OpenMP), best of several
 * repetitions. bench/run.sh prints tfm's GFLOP/s as a share of the all-thread figure.
 *
 * Usage: peak_fma [--isa avx512|avx2] [--reps R] [--rep-time SEC] [--threads T]
 *   --isa       force a kernel (default: avx512 if the CPU has avx512f, else avx2)
 *   --reps      repetitions, the best is reported (default 10)
 *   --rep-time  seconds one repetition lasts, roughly (default 0.1)
 *   --threads   threads of the all-thread run (default: OpenMP's, i.e. OMP_NUM_THREADS
 *               or all cores; 1 in a build without OpenMP)
 *
 * Output:
 *   # peak_fma isa=avx512 chains=24 lanes=16 cpu_avx512f=1 cpu_avx2=1 cpu_fma=1 ...
 *   PEAK threads=1 isa=avx512 gflops=115.2 reps=10
 *   PEAK threads=2 isa=avx512 gflops=230.1 reps=10
 * gflops = FLOPs (2 per FMA lane) / the wall time of the best repetition; on T threads,
 * the time from a barrier before all threads start to a barrier after all finished.
 * Exit status 2 on a bad argument or when the CPU has neither kernel's instructions.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "peak_fma.h"

typedef float (*kernel_fn)(int64_t iters, double *flop);

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static volatile float sink; /* keeps the kernels' results alive */

/* Best GFLOP/s of `reps` repetitions of `iters` iterations on `threads` threads. */
static double measure(kernel_fn k, int64_t iters, int reps, int threads) {
    double best = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = 0, t1 = 0, flop = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(+ : flop)
        {
#pragma omp barrier
#pragma omp master
            t0 = now_s();
            double f;
            sink = k(iters, &f);
            flop += f;
#pragma omp barrier
#pragma omp master
            t1 = now_s();
        }
#else
        (void)threads;
        t0 = now_s();
        sink = k(iters, &flop);
        t1 = now_s();
#endif
        double g = flop * 1e-9 / (t1 - t0);
        if (g > best) best = g;
    }
    return best;
}

static int usage(FILE *f, int rc) {
    fprintf(f, "usage: peak_fma [--isa avx512|avx2] [--reps R] [--rep-time SEC] [--threads T]\n");
    return rc;
}

int main(int argc, char **argv) {
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f"), has2 = __builtin_cpu_supports("avx2"),
              hasfma = __builtin_cpu_supports("fma");
    const char *isa = has512 ? "avx512" : "avx2";
    int reps = 10, threads = 1;
    double rep_time = 0.1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) return usage(stdout, 0);
        if (!v) return usage(stderr, 2);
        if (!strcmp(a, "--isa")) isa = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else if (!strcmp(a, "--rep-time")) rep_time = atof(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else return usage(stderr, 2);
        i++;
    }
    kernel_fn k;
    int lanes;
    if (!strcmp(isa, "avx512") && has512) k = peak_fma_avx512, lanes = 16;
    else if (!strcmp(isa, "avx2") && has2 && hasfma) k = peak_fma_avx2, lanes = 8;
    else {
        fprintf(stderr, "peak_fma: this CPU cannot run the '%s' kernel (avx512f %d, avx2 %d, fma %d)\n",
                isa, has512, has2, hasfma);
        return 2;
    }
    if (reps < 1) reps = 1;
    if (threads < 1) threads = 1;
#ifndef _OPENMP
    threads = 1; /* built without OpenMP: one thread only */
#endif

    /* Size a repetition to last about rep_time seconds on one thread (each thread does
     * the same work, so the all-thread repetition lasts about as long). */
    double flop;
    double t0 = now_s();
    sink = k(1 << 20, &flop);
    double dt = now_s() - t0;
    int64_t iters = (int64_t)((double)(1 << 20) * rep_time / (dt > 1e-6 ? dt : 1e-6));
    if (iters < 1024) iters = 1024;

    printf("# peak_fma isa=%s chains=%.0f lanes=%d cpu_avx512f=%d cpu_avx2=%d cpu_fma=%d "
           "iters=%lld reps=%d threads=%d\n",
           isa, flop / (2.0 * lanes * (1 << 20)), lanes, has512 != 0, has2 != 0, hasfma != 0,
           (long long)iters, reps, threads);
    fflush(stdout);
    printf("PEAK threads=1 isa=%s gflops=%.1f reps=%d\n", isa, measure(k, iters, reps, 1), reps);
    fflush(stdout);
    if (threads > 1)
        printf("PEAK threads=%d isa=%s gflops=%.1f reps=%d\n", threads, isa,
               measure(k, iters, reps, threads), reps);
    return 0;
}
