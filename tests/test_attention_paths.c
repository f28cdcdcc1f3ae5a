/* test_attention_paths.c — every SIMD path of the attention kernels (avx512, avx2,
 * generic: those this CPU runs) against the plain-C reference (attention_ref.c), forward
 * (output, weights, log-sum-exp) and backward (dQ, dK, dV), over sizes that straddle the
 * block edges, every mask kind, columns beyond the masked ones, fully masked rows,
 * dropout, strided inputs and KV-cache batch strides; and the same bits for 1 and 2
 * threads on each path. Each case also in bf16 compute (attn_args.bf16) against the
 * reference's bf16. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/rng.h"
#include "core/workspace.h"
#include "kernels/attention.h"
#include "support/check.h"
#include "tfm.h"

static const char *const paths[] = {"avx512", "avx2", "generic"};

static float *randn(size_t n, tfm_rng *r, float scale) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(r);
    return x;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

/* One configuration: sizes, the mask kinds in use, dropout, layout. */
typedef struct acase {
    const char *name;
    int N, H, L, S, D;
    int masked_cols;   /* ≤ S; the rest are bias_kv / zero_attn columns */
    int attn;          /* 0 none, 2 = (L, Sm), 3 = (N·H, L, Sm) */
    int key_padding, causal, full_row; /* full_row: query row 1 of batch 0 fully masked */
    float dropout;
    int pad;           /* extra columns in every leading dimension */
    int cache;         /* K/V rows per batch in a longer buffer (decoding) */
} acase;

/* Everything a case needs, made from a seed. */
typedef struct adata {
    attn_args a;
    attn_bias b;
    float *q, *k, *v, *mask, *kpm, *dout;
    int64_t E, ld, T;
} adata;

static void make_data(adata *d, const acase *c, uint64_t seed) {
    tfm_rng r;
    rng_seed(&r, seed);
    const int64_t N = c->N, H = c->H, L = c->L, S = c->S, D = c->D, Sm = c->masked_cols;
    d->E = H * D, d->ld = d->E + c->pad, d->T = c->cache ? S + 5 : S;
    d->q = randn((size_t)(N * L * d->ld), &r, 1.0f);
    d->k = randn((size_t)(N * d->T * d->ld), &r, 1.0f);
    d->v = randn((size_t)(N * d->T * d->ld), &r, 1.0f);
    d->dout = randn((size_t)(N * L * d->E), &r, 1.0f);
    const int64_t nm = c->attn == 3 ? N * H * L * Sm : L * Sm;
    d->mask = randn((size_t)nm, &r, 1.0f);
    for (int64_t i = 0; i < nm; i++)
        if (rng_uniform(&r) < 0.2f) d->mask[i] = -INFINITY;
    d->kpm = zeros((size_t)(N * Sm));
    for (int64_t i = 0; i < N * Sm; i++)
        d->kpm[i] = rng_uniform(&r) < 0.25f ? -INFINITY : 0.3f * rng_normal(&r);
    if (c->full_row && L > 1 && c->attn) /* row 1 (of every batch/head) fully masked */
        for (int64_t x = 0; x < (c->attn == 3 ? N * H : 1); x++)
            for (int64_t j = 0; j < Sm; j++) d->mask[(x * L + 1) * Sm + j] = -INFINITY;
    d->b = (attn_bias){.attn = c->attn ? d->mask : NULL, .attn_per_head = c->attn == 3,
                       .key_padding = c->key_padding ? d->kpm : NULL, .causal = c->causal,
                       .masked_cols = Sm};
    d->a = (attn_args){.N = N, .H = H, .L = L, .S = S, .D = D, .q = d->q, .ldq = d->ld,
                       .k = d->k, .ldk = d->ld, .v = d->v, .ldv = d->ld,
                       .kbs = c->cache ? d->T : 0, .vbs = c->cache ? d->T : 0,
                       .bias = &d->b, .dropout = c->dropout, .dropout_seed = seed * 7 + 1};
}

static void free_data(adata *d) {
    free(d->q), free(d->k), free(d->v), free(d->mask), free(d->kpm), free(d->dout);
}

/* Results of one run. */
typedef struct aresult {
    float *out, *w, *lse, *dq, *dk, *dv;
} aresult;

static aresult run(const adata *d, int with_backward, int reference) {
    const attn_args *a = &d->a;
    const int64_t N = a->N, H = a->H, L = a->L, S = a->S, E = d->E;
    aresult x = {zeros((size_t)(N * L * E)), zeros((size_t)(N * H * L * S)),
                 zeros((size_t)(N * H * L)), zeros((size_t)(N * L * E)),
                 zeros((size_t)(N * S * E)), zeros((size_t)(N * S * E))};
    tfm_ws ws;
    ws_init(&ws);
    assert_int_equal(ws_begin(&ws), TFM_OK);
    tfm_status st = reference ? attention_forward_reference(a, x.out, E, x.w, x.lse, &ws)
                              : attention_forward(a, x.out, E, x.w, x.lse, &ws);
    assert_int_equal(st, TFM_OK);
    if (with_backward && !a->kbs) {
        st = reference ? attention_backward_reference(a, x.lse, d->dout, E, x.dq, E, x.dk, E,
                                                      x.dv, E, &ws)
                       : attention_backward(a, x.lse, x.out, E, d->dout, E, x.dq, E, x.dk, E,
                                            x.dv, E, &ws);
        assert_int_equal(st, TFM_OK);
    }
    ws_free(&ws);
    return x;
}

static void free_result(aresult *x) {
    free(x->out), free(x->w), free(x->lse), free(x->dq), free(x->dk), free(x->dv);
}

/* Largest |x| (for an absolute tolerance that scales with the tensor). */
static double scale_of(const float *x, size_t n) {
    double m = 1e-3;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]) && fabs(x[i]) > m) m = fabs(x[i]);
    return m;
}

static bool same(const char *what, const float *got, const float *want, size_t n) {
    /* lse is −inf for fully masked rows: compare those exactly */
    float *g = malloc((n ? n : 1) * sizeof(float)), *w = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        if (isinf(want[i]) && got[i] == want[i]) {
            g[i] = w[i] = 0.0f;
            continue;
        }
        g[i] = got[i], w[i] = want[i];
    }
    bool ok = close_enough(what, g, w, n, 2e-5, 2e-6 * scale_of(want, n));
    free(g), free(w);
    return ok;
}

static void check_case(const acase *c, const char *path) {
    adata d;
    make_data(&d, c, 1234 + (uint64_t)c->L * 31 + (uint64_t)c->S);
    const int64_t N = c->N, H = c->H, L = c->L, S = c->S, E = d.E;
    const int bwd = !c->cache;
    aresult want = run(&d, bwd, 1);
    assert_int_equal(tfm_set_cpu_path(path), TFM_OK);
    tfm_set_num_threads(2);
    aresult got = run(&d, bwd, 0);
    char what[160];
    snprintf(what, sizeof what, "%s [%s] out", c->name, path);
    assert_true(same(what, got.out, want.out, (size_t)(N * L * E)));
    snprintf(what, sizeof what, "%s [%s] weights", c->name, path);
    assert_true(same(what, got.w, want.w, (size_t)(N * H * L * S)));
    snprintf(what, sizeof what, "%s [%s] lse", c->name, path);
    assert_true(same(what, got.lse, want.lse, (size_t)(N * H * L)));
    if (bwd) {
        snprintf(what, sizeof what, "%s [%s] dq", c->name, path);
        assert_true(same(what, got.dq, want.dq, (size_t)(N * L * E)));
        snprintf(what, sizeof what, "%s [%s] dk", c->name, path);
        assert_true(same(what, got.dk, want.dk, (size_t)(N * S * E)));
        snprintf(what, sizeof what, "%s [%s] dv", c->name, path);
        assert_true(same(what, got.dv, want.dv, (size_t)(N * S * E)));
    }
    /* one thread: the same bits */
    tfm_set_num_threads(1);
    aresult one = run(&d, bwd, 0);
    assert_memory_equal(one.out, got.out, (size_t)(N * L * E) * sizeof(float));
    assert_memory_equal(one.w, got.w, (size_t)(N * H * L * S) * sizeof(float));
    assert_memory_equal(one.dq, got.dq, (size_t)(N * L * E) * sizeof(float));
    assert_memory_equal(one.dk, got.dk, (size_t)(N * S * E) * sizeof(float));
    assert_memory_equal(one.dv, got.dv, (size_t)(N * S * E) * sizeof(float));
    tfm_set_num_threads(0);
    free_result(&one), free_result(&got), free_result(&want);
    free_data(&d);
}

/* ||got − want|| / ||want|| over the finite entries of want (0 when want is all zero). */
static double rel_l2(const float *got, const float *want, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(want[i])) continue;
        const double d = (double)got[i] - (double)want[i];
        num += d * d, den += (double)want[i] * (double)want[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

/* bf16 compute (attn_args.bf16) on this path. The online softmax rounds each key block's
 * unnormalised weights exp(s − running max) to bf16, the reference the final normalised
 * ones, so the two part at bf16's rounding (~1e-3), not a float's: each path is held to
 * the generic tiled path within float rounding (relative L2 below 1e-4: they run the same
 * algorithm), to the bf16 reference within 1.5e-2, and — for the tensors that products
 * make — clearly apart from the FP32 reference (so the rounding is really there). Bits as
 * for FP32: the same for 1 and 2 threads. */
static void check_case_bf16(const acase *c, const char *path) {
    adata d;
    make_data(&d, c, 4321 + (uint64_t)c->L * 31 + (uint64_t)c->S);
    const int64_t N = c->N, H = c->H, L = c->L, S = c->S, E = d.E;
    const int bwd = !c->cache;
    aresult f32 = run(&d, bwd, 1);
    d.a.bf16 = true;
    aresult want = run(&d, bwd, 1);
    assert_int_equal(tfm_set_cpu_path("generic"), TFM_OK);
    aresult gen = run(&d, bwd, 0);
    assert_int_equal(tfm_set_cpu_path(path), TFM_OK);
    tfm_set_num_threads(2);
    aresult got = run(&d, bwd, 0);
    const struct { const char *name; const float *g, *gen, *w, *f; size_t n; bool product; } t[] = {
        {"out", got.out, gen.out, want.out, f32.out, (size_t)(N * L * E), true},
        {"weights", got.w, gen.w, want.w, f32.w, (size_t)(N * H * L * S), true},
        {"lse", got.lse, gen.lse, want.lse, f32.lse, (size_t)(N * H * L), false},
        {"dq", got.dq, gen.dq, want.dq, f32.dq, bwd ? (size_t)(N * L * E) : 0, true},
        {"dk", got.dk, gen.dk, want.dk, f32.dk, bwd ? (size_t)(N * S * E) : 0, true},
        {"dv", got.dv, gen.dv, want.dv, f32.dv, bwd ? (size_t)(N * S * E) : 0, true},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (!t[i].n || S == 0) continue;
        const double paths_apart = rel_l2(t[i].g, t[i].gen, t[i].n);
        const double near = rel_l2(t[i].g, t[i].w, t[i].n), far = rel_l2(t[i].g, t[i].f, t[i].n);
        const bool ok = paths_apart < 1e-4 && near < 1.5e-2 && (!t[i].product || far > 1e-4);
        if (!ok)
            printf("  %s [%s, bf16] %s: %.3g from the generic path, %.3g from the bf16 "
                   "reference, %.3g from FP32's\n", c->name, path, t[i].name, paths_apart, near,
                   far);
        assert_true(ok);
    }
    tfm_set_num_threads(1);
    aresult one = run(&d, bwd, 0);
    assert_memory_equal(one.out, got.out, (size_t)(N * L * E) * sizeof(float));
    assert_memory_equal(one.dq, got.dq, (size_t)(N * L * E) * sizeof(float));
    assert_memory_equal(one.dk, got.dk, (size_t)(N * S * E) * sizeof(float));
    tfm_set_num_threads(0);
    free_result(&one), free_result(&got), free_result(&gen), free_result(&want),
        free_result(&f32);
    free_data(&d);
}

static const acase cases[] = {
    /* name                      N  H   L    S   D   Sm  attn kpm causal full drop pad cache */
    {"plain, one block",         2, 3, 5, 7, 8, 7, 0, 0, 0, 0, 0.0f, 0, 0},
    {"plain, D 64, edges",       1, 2, 130, 129, 64, 129, 0, 0, 0, 0, 0.0f, 0, 0},
    {"D 1",                      1, 2, 9, 70, 1, 70, 0, 0, 0, 0, 0.0f, 0, 0},
    {"D 3, strided",             2, 2, 66, 65, 3, 65, 0, 1, 0, 0, 0.0f, 5, 0},
    {"D 24, 2-D mask",           2, 2, 70, 67, 24, 67, 2, 0, 0, 1, 0.0f, 0, 0},
    {"3-D mask + key padding",   2, 3, 65, 80, 16, 80, 3, 1, 0, 1, 0.0f, 0, 0},
    {"causal, self",             2, 2, 150, 150, 32, 150, 0, 0, 1, 0, 0.0f, 0, 0},
    {"causal + kpm, extra cols", 2, 2, 70, 72, 8, 70, 0, 1, 1, 0, 0.0f, 0, 0},
    {"causal, L > S",            1, 2, 140, 66, 16, 66, 0, 0, 1, 0, 0.0f, 0, 0},
    {"everything + dropout",     2, 2, 67, 131, 20, 129, 3, 1, 1, 1, 0.2f, 3, 0},
    {"dropout, D 64",            1, 2, 64, 64, 64, 64, 0, 0, 0, 0, 0.5f, 0, 0},
    {"decode, one query",        3, 2, 1, 77, 16, 77, 0, 1, 0, 0, 0.0f, 0, 1},
    {"decode, 3 queries, causal",2, 2, 3, 40, 24, 40, 2, 0, 1, 0, 0.0f, 2, 1},
    {"no keys",                  1, 2, 5, 0, 8, 0, 0, 0, 0, 0, 0.0f, 0, 0},
};

static void test_every_path_matches_reference(void **state) {
    int ran = 0;
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        if (tfm_set_cpu_path(paths[p]) != TFM_OK) {
            printf("  path %s: not supported here, skipped\n", paths[p]);
            continue;
        }
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            check_case(&cases[i], paths[p]);
            check_case_bf16(&cases[i], paths[p]);
        }
        printf("  path %s: %zu cases match the reference, in FP32 and in bf16\n", paths[p],
               sizeof cases / sizeof *cases);
        ran++;
    }
    assert_true(ran >= 1);
    tfm_set_cpu_path(NULL);
}

/* A NaN score makes its row NaN on every path (as PyTorch), never a silent value. */
static void test_nan_propagates(void **state) {
    acase c = {"nan", 1, 1, 4, 70, 8, 70, 0, 0, 0, 0, 0.0f, 0, 0};
    for (size_t p = 0; p < sizeof paths / sizeof *paths; p++) {
        if (tfm_set_cpu_path(paths[p]) != TFM_OK) continue;
        adata d;
        make_data(&d, &c, 5);
        d.k[(int64_t)66 * d.ld + 2] = NAN; /* key 66, in the second key block */
        aresult x = run(&d, 0, 0);
        for (int i = 0; i < 4 * 8; i++) assert_true(isnan(x.out[i]));
        free_result(&x);
        free_data(&d);
    }
    tfm_set_cpu_path(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_path_matches_reference),
        cmocka_unit_test(test_nan_propagates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
