/* bench_gemm.c — GFLOP/s of the matrix products tfm's linear layers make, through
 * tfm_gemm (whatever it dispatches to), through cblas_sgemm directly, and through the
 * packed SGEMM of each CPU path, on 1 and 2 threads.
 *
 * Usage: bench_gemm [--threads LIST] [--impl LIST] [--case SUBSTR] [--min-time SEC]
 *                   [--min-reps R]
 *   --threads 1,2          thread counts (tfm_set_num_threads; OpenBLAS's OpenMP build
 *                          follows omp_set_num_threads)
 *   --impl    LIST         of: tfm, openblas (cblas_sgemm, whole K), openblas256
 *                          (cblas_sgemm fed K by 256, as tfm_gemm's CBLAS path),
 *                          any packed kernel by name (gemm_packed with it: avx512 (8 × 32,
 *                          KC 256), avx512_intel (KC 512), avx2, generic — every kernel of
 *                          every path this CPU runs, whatever microarchitecture it was
 *                          tuned for; the path's choice here first),
 *                          reference (tfm_gemm_reference); default: all this build and
 *                          CPU have but reference
 *   --micro                instead of the products: each packed kernel's micro-kernel alone,
 *                          one thread, operands in cache as the driver leaves them (the
 *                          (KC, MR) panel of A in L1, packed or MR rows in place; a
 *                          (KC, NC) block of packed B from L2; C one tile), GFLOP/s and the
 *                          share of --peak GFLOP/s (a core's, from bench/peak_fma) if given;
 *                          --micro-nc NC instead of each kernel's NC (e.g. 64: B from L1)
 *   --case    SUBSTR       only the cases whose name contains it
 *   --clock   wall|cpu     what is timed: wall-clock (default), or the process's CPU
 *                          time — with one thread on a shared machine, the time this
 *                          thread ran, not the time other processes held its core (with
 *                          more threads it also counts time spent waiting at barriers)
 *   --cold                 operands from main memory, as a decoding step finds its weights:
 *                          copies of A and B filling 96 MiB (past the L3), a different
 *                          copy for each call
 *   --shape   OP,M,N,K     instead of the model's cases (repeatable): OP fwd, dx or dw with
 *                          the linear layer's M (rows), N (out) and K (in), e.g. decoding's
 *                          fwd,8,1536,512
 *   --min-time 0.25 --min-reps 5   per (case, threads): after one warm-up call of each
 *                          impl, rounds of one timed call of each impl in turn (so that
 *                          a burst of load on a shared machine hits all alike) until
 *                          min-reps rounds and min-time seconds per impl have passed;
 *                          the median call is reported, and the fastest for reference
 *
 * Cases (src/nn/linear.c; x (M, K), W (N, K), y (M, N); M = batch 8 × 128 tokens = 1024,
 * or one sequence of 4096):
 *   fwd  y = x · Wᵀ + y            tfm_gemm(0, 1, M, N, K, 1, x, K, W, K, 1, y, N)
 *   dx   dx += dy · W              tfm_gemm(0, 0, M, K, N, 1, dy, N, W, K, 1, dx, K)
 *   dw   dW += dyᵀ · x             tfm_gemm(1, 0, N, K, M, 1, dy, N, x, K, 1, dW, K)
 *   with (N, K) = (1536, 512) the packed Q,K,V projection, (512, 512) the output
 *   projection, (2048, 512) and (512, 2048) the feed-forward pair.
 *
 * Output: one line per (case, threads, impl):
 *   GEMM case=fwd_M1024_N1536_K512 threads=2 impl=avx512 ms=8.123 gflops=198.3
 *        best_gflops=205.1 reps=31
 * then a table per thread count. Lines starting with '#' are information.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu.h"
#include "core/cpu_model.h"
#include "kernels/gemm.h"
#include "kernels/gemm_packed.h"
#include "tfm.h"

#ifdef TFM_BENCH_CBLAS
#include <cblas.h>
#endif

typedef struct gemm_case {
    char name[64];
    bool ta, tb;
    int64_t M, N, K; /* of the product: C (M, N), contraction K */
    int64_t lda, ldb, ldc;
} gemm_case;

/* What a column of the tables times: tfm_gemm, CBLAS, one packed kernel, the reference. */
typedef enum impl_kind { KIND_TFM, KIND_OPENBLAS, KIND_OPENBLAS256, KIND_PACKED, KIND_REFERENCE } impl_kind;
typedef struct impl {
    const char *name;
    impl_kind kind;
    const gemm_kernel *k; /* KIND_PACKED */
} impl;
enum { IMPLS = 24 };
static impl impls[IMPLS];
static int nimpls;

/* The implementations this build and CPU have: tfm, CBLAS, every packed kernel of every
 * path the CPU runs, the reference. */
static void impls_init(void) {
    impls[nimpls++] = (impl){"tfm", KIND_TFM, NULL};
#ifdef TFM_BENCH_CBLAS
    impls[nimpls++] = (impl){"openblas", KIND_OPENBLAS, NULL};
    impls[nimpls++] = (impl){"openblas256", KIND_OPENBLAS256, NULL};
#endif
    static const cpu_path paths[] = {CPU_AVX512, CPU_AVX2, CPU_GENERIC};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        const gemm_kernel *ks[IMPLS];
        const int n = gemm_kernels_of(paths[p], ks, IMPLS);
        for (int i = 0; i < n && nimpls < IMPLS - 1; i++)
            impls[nimpls++] = (impl){ks[i]->name, KIND_PACKED, ks[i]};
    }
    impls[nimpls++] = (impl){"reference", KIND_REFERENCE, NULL};
}

static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec t;
    clock_gettime(clock_id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#ifdef TFM_BENCH_CBLAS
static void run_cblas(const gemm_case *c, const float *A, const float *B, float *C, int64_t kstep) {
    for (int64_t k0 = 0; k0 < c->K; k0 += kstep) {
        const int64_t k = c->K - k0 < kstep ? c->K - k0 : kstep;
        const float *a = c->ta ? A + k0 * c->lda : A + k0;
        const float *b = c->tb ? B + k0 : B + k0 * c->ldb;
        cblas_sgemm(CblasRowMajor, c->ta ? CblasTrans : CblasNoTrans,
                    c->tb ? CblasTrans : CblasNoTrans, (int)c->M, (int)c->N, (int)k, 1.0f, a,
                    (int)c->lda, b, (int)c->ldb, 1.0f, C, (int)c->ldc);
    }
}
#endif

static void run(int impl, const gemm_case *c, const float *A, const float *B, float *C) {
    switch (impls[impl].kind) {
    case KIND_TFM:
        tfm_gemm(c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, c->lda, B, c->ldb, 1.0f, C, c->ldc);
        break;
    case KIND_REFERENCE:
        tfm_gemm_reference(c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, c->lda, B, c->ldb, 1.0f, C,
                           c->ldc);
        break;
#ifdef TFM_BENCH_CBLAS
    case KIND_OPENBLAS: run_cblas(c, A, B, C, c->K); break;
    case KIND_OPENBLAS256: run_cblas(c, A, B, C, 256); break;
#endif
    default:
        gemm_packed(impls[impl].k, c->ta, c->tb, c->M, c->N, c->K, 1.0f, A, c->lda,
                    B, c->ldb, 1.0f, NULL, C, c->ldc);
    }
}

static void fill(float *x, size_t n, uint32_t seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)((seed >> 8) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* --micro: each packed kernel's micro-kernel over one row of tiles, as compute_tiles runs
 * it: the (KC, MR) panel of A (packed, or MR rows in place, lda = 2·KC floats apart as x's
 * rows at K = 512), NC / NR panels of packed B (KC, NR) one after another (the KC × NC
 * block: from L2 once it has been read), C the (MR, NC) row of tiles (beta 1). One thread;
 * rounds of one pass per kernel in turn, the median pass reported. */
/* One row of tiles: NC / NR micro-kernel calls. */
static void micro_pass(const gemm_kernel *k, bool rows, int64_t kc, const float *a, int64_t lda,
                       const float *ap, const float *b, float *c, int64_t nc) {
    for (int64_t jr = 0; jr < nc; jr += k->nr) {
        if (rows)
            k->micro_rows(kc, a, lda, b + jr * kc, c + jr, nc, 1.0f, 1.0f);
        else
            k->micro(kc, ap, b + jr * kc, c + jr, nc, 1.0f, 1.0f);
    }
}

static void micro_bench(const bool use[IMPLS], double peak, double min_time, int64_t nc_over) {
    printf("# micro-kernels alone, 1 thread, operands in cache (A panel L1, B block L2)%s\n",
           peak > 0 ? "; % of the --peak given" : "");
    for (int i = 0; i < nimpls; i++) {
        if (!use[i] || impls[i].kind != KIND_PACKED) continue;
        const gemm_kernel *k = impls[i].k;
        const int64_t kc = k->kc, nc = nc_over > 0 ? nc_over / k->nr * k->nr : k->nc,
                      lda = 2 * kc, mr = k->mr, nr = k->nr;
        float *a = aligned_alloc(64, (size_t)(mr * lda) * sizeof(float)),
              *ap = aligned_alloc(64, (size_t)(mr * kc) * sizeof(float)),
              *b = aligned_alloc(64, (size_t)(nc * kc) * sizeof(float)),
              *c = aligned_alloc(64, (size_t)(mr * nc) * sizeof(float));
        if (!a || !ap || !b || !c) {
            fprintf(stderr, "bench_gemm: out of memory\n");
            exit(1);
        }
        fill(a, (size_t)(mr * lda), 1), fill(b, (size_t)(nc * kc), 2), fill(c, (size_t)(mr * nc), 3);
        k->pack(a, lda, true, kc, mr, (int)mr, ap);
        const double flop = 2.0 * (double)(mr * nc * kc);
        for (int rows = 0; rows < 2; rows++) {
            if (rows && !k->micro_rows) continue;
            enum { PASSES = 4096 };
            static double t[PASSES];
            int n = 0;
            double spent = 0.0;
            for (int warm = 0; warm < 20; warm++) micro_pass(k, rows, kc, a, lda, ap, b, c, nc);
            while (n < PASSES && (n < 50 || spent < min_time)) {
                const double t0 = now();
                micro_pass(k, rows, kc, a, lda, ap, b, c, nc);
                t[n] = now() - t0;
                spent += t[n++];
            }
            qsort(t, (size_t)n, sizeof(double), cmp_double);
            const double g = flop / t[n / 2] * 1e-9;
            printf("MICRO kernel=%s tile=%lldx%lld kc=%lld nc=%lld a=%s gflops=%.1f", k->name,
                   (long long)mr, (long long)nr, (long long)kc, (long long)nc,
                   rows ? "rows" : "packed", g);
            if (peak > 0) printf(" peak_pct=%.1f", 100.0 * g / peak);
            printf(" passes=%d\n", n);
            fflush(stdout);
        }
        free(a), free(ap), free(b), free(c);
    }
}

static int parse_list(const char *s, int *out, int cap) {
    int n = 0;
    while (*s && n < cap) {
        out[n++] = atoi(s);
        s = strchr(s, ',');
        if (!s) break;
        s++;
    }
    return n;
}

int main(int argc, char **argv) {
    int threads[8] = {1, 2}, nthreads = 2;
    bool use[IMPLS];
    impls_init();
    for (int i = 0; i < IMPLS; i++) use[i] = i < nimpls && impls[i].kind != KIND_REFERENCE;
    const char *filter = NULL;
    char shapes[16][64];
    int nshapes = 0;
    bool cold = false, micro = false;
    double peak = 0.0;
    int64_t micro_nc = 0;
    double min_time = 0.25;
    int min_reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "bench_gemm: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--threads")) {
            nthreads = parse_list(v, threads, 8);
        } else if (!strcmp(a, "--impl")) {
            for (int k = 0; k < IMPLS; k++) use[k] = false;
            char buf[256];
            snprintf(buf, sizeof buf, "%s", v);
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                int k = 0;
                while (k < nimpls && strcmp(tok, impls[k].name)) k++;
                if (k == nimpls) {
                    fprintf(stderr, "bench_gemm: impl '%s' is unknown or not in this build/CPU\n",
                            tok);
                    return 2;
                }
                use[k] = true;
            }
        } else if (!strcmp(a, "--clock")) {
            if (strcmp(v, "wall") && strcmp(v, "cpu")) {
                fprintf(stderr, "bench_gemm: --clock is wall or cpu\n");
                return 2;
            }
            clock_id = strcmp(v, "cpu") ? CLOCK_MONOTONIC : CLOCK_PROCESS_CPUTIME_ID;
        } else if (!strcmp(a, "--cold")) {
            cold = true;
            continue;
        } else if (!strcmp(a, "--micro")) {
            micro = true;
            continue;
        } else if (!strcmp(a, "--peak")) {
            peak = atof(v);
        } else if (!strcmp(a, "--micro-nc")) {
            micro_nc = atoll(v);
        } else if (!strcmp(a, "--shape") && nshapes < 16) {
            snprintf(shapes[nshapes++], sizeof shapes[0], "%s", v);
        } else if (!strcmp(a, "--case")) {
            filter = v;
        } else if (!strcmp(a, "--min-time")) {
            min_time = atof(v);
        } else if (!strcmp(a, "--min-reps")) {
            min_reps = atoi(v);
        } else {
            fprintf(stderr, "bench_gemm: unknown option %s\n", a);
            return 2;
        }
        i++;
    }

    if (micro) {
        micro_bench(use, peak, min_time, micro_nc);
        return 0;
    }

    /* The cases: each linear shape (M rows, N out, K in) gives three products. */
    static const int64_t model[][3] = {{1024, 1536, 512}, {1024, 512, 512}, {1024, 2048, 512},
                                       {1024, 512, 2048}, {4096, 1536, 512}};
    static const char *const op[3] = {"fwd", "dx", "dw"};
    gemm_case cases[64];
    int ncases = 0;
    const int nlin = nshapes ? nshapes : 5;
    for (int s = 0; s < nlin; s++) {
        int64_t M, N, K;
        int only = -1;
        if (nshapes) {
            char name[8];
            long long m, n, k;
            if (sscanf(shapes[s], "%7[a-z],%lld,%lld,%lld", name, &m, &n, &k) != 4 || m < 1 ||
                n < 1 || k < 1) {
                fprintf(stderr, "bench_gemm: --shape '%s': expected OP,M,N,K\n", shapes[s]);
                return 2;
            }
            for (int o = 0; o < 3; o++)
                if (!strcmp(name, op[o])) only = o;
            if (only < 0) {
                fprintf(stderr, "bench_gemm: --shape '%s': OP is fwd, dx or dw\n", shapes[s]);
                return 2;
            }
            M = m, N = n, K = k;
        } else {
            M = model[s][0], N = model[s][1], K = model[s][2];
        }
        const gemm_case fwd = {"", false, true, M, N, K, K, K, N};
        const gemm_case dx = {"", false, false, M, K, N, N, K, K};
        const gemm_case dw = {"", true, false, N, K, M, N, K, K};
        const gemm_case *three[3] = {&fwd, &dx, &dw};
        for (int o = 0; o < 3; o++) {
            if (only >= 0 && o != only) continue;
            gemm_case c = *three[o];
            snprintf(c.name, sizeof c.name, "%s_M%lld_N%lld_K%lld", op[o], (long long)M,
                     (long long)N, (long long)K);
            if (!filter || strstr(c.name, filter)) cases[ncases++] = c;
        }
    }

    printf("# tfm_gemm backend %s, cpu path %s, cpu model %s (kernel %s); median of interleaved "
           "timed calls (%s time)\n",
           tfm_gemm_backend(), tfm_cpu_path(), cpu_uarch_name(cpu_uarch_active()),
           gemm_kernel_for(cpu_active()) ? gemm_kernel_for(cpu_active())->name : "none",
           clock_id == CLOCK_MONOTONIC ? "wall" : "CPU");
    enum { CAP = 4096 };
    static double gflops[64][8][IMPLS];
    for (int ci = 0; ci < ncases; ci++) {
        const gemm_case *c = &cases[ci];
        /* Operands in their stored shapes: A (M, K) or (K, M); B (K, N) or (N, K). */
        const size_t na = (size_t)(c->M * c->K), nb = (size_t)(c->K * c->N),
                     nc = (size_t)(c->M * c->N);
        /* copies of A and B: one, or with --cold as many as fill 96 MiB (at most 256) */
        const size_t bytes = (na + nb) * sizeof(float);
        const int copies = !cold ? 1 : bytes >= (96u << 20) ? 2 : (int)((96u << 20) / bytes);
        const int ncopies = copies > 256 ? 256 : copies;
        float *A = malloc(na * ncopies * sizeof(float)), *B = malloc(nb * ncopies * sizeof(float)),
              *C = malloc(nc * sizeof(float));
        if (!A || !B || !C) {
            fprintf(stderr, "bench_gemm: out of memory\n");
            return 1;
        }
        fill(A, na * ncopies, 1), fill(B, nb * ncopies, 2), fill(C, nc, 3);
        int call = 0;
        const double flop = 2.0 * (double)c->M * (double)c->N * (double)c->K;
        for (int ti = 0; ti < nthreads; ti++) {
            tfm_set_num_threads(threads[ti]);
            static double all[IMPLS][CAP];
            double spent = 0.0;
            int reps = 0, nimpl = 0;
            for (int impl = 0; impl < IMPLS; impl++)
                if (use[impl]) run(impl, c, A, B, C), nimpl++; /* warm-up: buffers, pages, pool */
            while (reps < CAP && (reps < min_reps || spent < min_time * nimpl)) {
                for (int impl = 0; impl < IMPLS; impl++) {
                    if (!use[impl]) continue;
                    const size_t r = (size_t)(call++ % ncopies);
                    const double t0 = now();
                    run(impl, c, A + r * na, B + r * nb, C);
                    all[impl][reps] = now() - t0;
                    spent += all[impl][reps];
                }
                reps++;
            }
            for (int impl = 0; impl < IMPLS; impl++) {
                if (!use[impl]) continue;
                qsort(all[impl], (size_t)reps, sizeof(double), cmp_double);
                const double med = all[impl][reps / 2];
                gflops[ci][ti][impl] = flop / med * 1e-9;
                printf("GEMM case=%s threads=%d impl=%s ms=%.3f gflops=%.1f best_gflops=%.1f "
                       "reps=%d\n",
                       c->name, threads[ti], impls[impl].name, med * 1e3, gflops[ci][ti][impl],
                       flop / all[impl][0] * 1e-9, reps);
                fflush(stdout);
            }
        }
        free(A), free(B), free(C);
    }

    for (int ti = 0; ti < nthreads; ti++) {
        printf("\n# GFLOP/s, %d thread%s\n# %-24s", threads[ti], threads[ti] > 1 ? "s" : "",
               "case");
        for (int impl = 0; impl < IMPLS; impl++)
            if (use[impl]) printf(" %11s", impls[impl].name);
        printf("\n");
        for (int ci = 0; ci < ncases; ci++) {
            printf("# %-24s", cases[ci].name);
            for (int impl = 0; impl < IMPLS; impl++)
                if (use[impl]) printf(" %11.1f", gflops[ci][ti][impl]);
            printf("\n");
        }
    }
    return 0;
}
