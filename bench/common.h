/* common.h — what bench_tfm.c, bench_train.c and bench_decode.c share: the clock, the
 * timing loop, medians, the synthetic-id LCG, the command line and the output lines.
 *
 * Command line (every benchmark):
 *   --case NAME (repeatable)  --min-time SEC  --min-reps R  --max-reps R  --warmup W
 *   --impl NAME (the impl= of the output lines, default tfm)
 *   --list (the case names, one a line)  --info (the '#' header line only)  -h/--help
 *   --compute-type f32|bf16 (benchmarks whose bench_prog sets compute_type: what the
 *     matrix products compute in, tfm_compute_type; the '#' line then carries compute=,
 *     and so does each of the benchmark's BENCH lines)
 * A benchmark's own options go through its `extra` callback (see bench_parse).
 *
 * Output: a '#' header line first (impl, SIMD path, bf16 path, GEMM backend, threads,
 * timing options, then the benchmark's own keys), then one line per case:
 *   BENCH impl=tfm case=NAME key=value ...
 * bench/lib.sh reads the lines by key, so the order of the keys does not matter.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <tfm.h>

/* tfm_gemm_backend(): what tfm_gemm uses on the active CPU path ("avx512+cblas",
 * "cblas", "avx2", ...), outside the public header; the '#' line reports it (bench/lib.sh
 * reads it). Every benchmark has src/ on its include path. */
#include "kernels/gemm.h"

#define BENCH_MAX_CASES 64

/* ---- clock, median ------------------------------------------------------------------- */
static inline double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median of x[0..n); sorts x, so x[0] is then the minimum. */
static inline double bench_median(double *x, int n) {
    qsort(x, (size_t)n, sizeof *x, bench_cmp_double);
    return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* ---- synthetic ids: a 64-bit LCG (its high bits), the same in the PyTorch scripts ---- */
static inline uint64_t bench_lcg_next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

/* ---- FLOP counts: matrix products only, 2·M·N·K per GEMM (the derivation: bench_tfm.c) */
/* MultiheadAttention, queries (N, L, E), keys/values (N, S, E). */
static inline double bench_flops_mha(double N, double L, double S, double E) {
    return 4 * N * L * E * E + 4 * N * S * E * E + 4 * N * L * S * E;
}
/* Feed-forward, linear1 E→F and linear2 F→E, on N·L rows. */
static inline double bench_flops_ffn(double N, double L, double E, double F) {
    return 4 * N * L * E * F;
}

/* ---- options ------------------------------------------------------------------------- */
typedef struct bench_opts {
    const char *impl;             /* the impl= name of the output lines ("tfm") */
    double min_time;              /* time each case for at least this many seconds */
    int min_reps, max_reps;       /* and at least min_reps, at most max_reps runs */
    int warmup;                   /* untimed runs first */
    const char *cases[BENCH_MAX_CASES]; /* --case names as given (0: all) */
    int ncases;
    bool info;                    /* --info: print the header line and stop */
    tfm_compute_type compute;     /* --compute-type (default TFM_COMPUTE_F32) */
    bool has_compute;             /* the benchmark takes --compute-type (set by bench_parse) */
} bench_opts;

/* The timing loop: `for (bench_loop l = bench_loop_start(o); bench_loop_more(&l); l.reps++)`
 * runs until both min_time seconds have passed and min_reps runs were done, or max_reps. */
typedef struct bench_loop {
    double start, min_time;
    int reps, min_reps, max_reps;
} bench_loop;

static inline bench_loop bench_loop_start(const bench_opts *o) {
    return (bench_loop){bench_now(), o->min_time, 0, o->min_reps, o->max_reps};
}

static inline bool bench_loop_more(const bench_loop *l) {
    return l->reps < l->max_reps &&
           (l->reps < l->min_reps || bench_now() - l->start < l->min_time);
}

/* A benchmark's own option: returns how many arguments it took from argv[i] on (1 or 2),
 * or 0 if it does not know argv[i]. */
typedef int (*bench_extra_fn)(void *ctx, int argc, char **argv, int i);

typedef struct bench_prog {
    const char *name;               /* "bench_tfm" */
    const char *usage;              /* the usage text, printed as is */
    const char *const *case_names;  /* for --list */
    int ncase_names;
    bench_extra_fn extra;           /* may be NULL */
    void *extra_ctx;
    bool compute_type;              /* takes --compute-type */
} bench_prog;

static inline void bench_usage(const bench_prog *p, FILE *f) {
    fputs(p->usage, f);
    fprintf(f, "cases:");
    for (int i = 0; i < p->ncase_names; i++) fprintf(f, " %s", p->case_names[i]);
    fprintf(f, "\n");
}

/* Parse the command line into *o (whose fields hold the defaults). Returns -1 to go on,
 * or the exit status to end with (0 after --help or --list, 2 on a bad argument). Also
 * refuses a TFM_CPU this machine cannot take, as the CLI does. */
static inline int bench_parse(const bench_prog *p, int argc, char **argv, bench_opts *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int took;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(p, stdout);
            return 0;
        } else if (!strcmp(a, "--list")) {
            for (int c = 0; c < p->ncase_names; c++) printf("%s\n", p->case_names[c]);
            return 0;
        } else if (!strcmp(a, "--info")) {
            o->info = true;
        } else if (v && !strcmp(a, "--case") && o->ncases < BENCH_MAX_CASES) {
            o->cases[o->ncases++] = v, i++;
        } else if (v && !strcmp(a, "--impl")) {
            o->impl = v, i++;
        } else if (v && !strcmp(a, "--min-time")) {
            o->min_time = atof(v), i++;
        } else if (v && !strcmp(a, "--min-reps")) {
            o->min_reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--max-reps")) {
            o->max_reps = atoi(v), i++;
        } else if (v && !strcmp(a, "--warmup")) {
            o->warmup = atoi(v), i++;
        } else if (v && p->compute_type && !strcmp(a, "--compute-type")) {
            if (tfm_compute_type_from_name(v, &o->compute) != TFM_OK) {
                fprintf(stderr, "%s: --compute-type: %s\n", p->name, tfm_last_error());
                return 2;
            }
            i++;
        } else if (p->extra && (took = p->extra(p->extra_ctx, argc, argv, i)) > 0) {
            i += took - 1;
        } else {
            bench_usage(p, stderr);
            return 2;
        }
    }
    o->has_compute = p->compute_type;
    if (o->min_reps < 1) o->min_reps = 1;
    if (o->max_reps < o->min_reps) o->max_reps = o->min_reps;
    if (o->warmup < 0) o->warmup = 0;
    if (tfm_check_cpu_env() != TFM_OK) {
        fprintf(stderr, "%s: TFM_CPU: %s\n", p->name, tfm_last_error());
        return 2;
    }
    return -1;
}

/* ---- output ---------------------------------------------------------------------------- */
/* The rest of a line: fmt's " key=value" pairs, the newline; flushed (a reader may be
 * watching the pipe). */
static inline void bench_vend_line(const char *fmt, va_list ap) {
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
}

/* The '#' header line: impl, the SIMD path, how bf16 products run on it (tfm_bf16_path),
 * the GEMM backend, the thread settings, the timing options, the compute type (if the
 * benchmark takes --compute-type), then the benchmark's own " key=value" pairs (fmt). */
static inline void bench_header(const bench_opts *o, const char *fmt, ...) {
    const char *omp = getenv("OMP_NUM_THREADS"), *obt = getenv("OPENBLAS_NUM_THREADS");
    const char *cpu = getenv("TFM_CPU");
    printf("# impl=%s cpu_path=%s bf16_path=%s gemm=%s TFM_CPU=%s OMP_NUM_THREADS=%s "
           "OPENBLAS_NUM_THREADS=%s min_time=%g min_reps=%d warmup=%d",
           o->impl, tfm_cpu_path(), tfm_bf16_path(), tfm_gemm_backend(), cpu && *cpu ? cpu : "(unset)",
           omp ? omp : "(unset)", obt ? obt : "(unset)", o->min_time, o->min_reps, o->warmup);
    if (o->has_compute) printf(" compute=%s", tfm_compute_type_name(o->compute));
    va_list ap;
    va_start(ap, fmt);
    bench_vend_line(fmt, ap);
    va_end(ap);
}

/* One result line: "BENCH impl=IMPL case=NAME" then the " key=value" pairs of fmt. */
static inline void bench_line(const char *impl, const char *name, const char *fmt, ...) {
    printf("BENCH impl=%s case=%s", impl, name);
    va_list ap;
    va_start(ap, fmt);
    bench_vend_line(fmt, ap);
    va_end(ap);
}

#endif /* BENCH_COMMON_H */
