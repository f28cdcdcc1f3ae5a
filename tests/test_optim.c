/* test_optim.c — optimizers, gradient clipping and learning-rate schedules against
 * torch (fixtures from scripts/make_optim_fixtures.py, under tests/fixtures/optim/):
 *   every optimizer case, step by step, and its final state under torch's names;
 *   a checkpoint round trip through a safetensors file (6 steps, save, restore into a
 *   fresh optimizer, 6 more) that must equal 12 straight steps bit for bit;
 *   clip_grad_norm_ (clipping and not), thread-count invariance, non-finite norms;
 *   Noam and cosine schedules; bad configurations giving torch's ValueError messages. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core/rng.h"
#include "io/safetensors.h"
#include "support/check.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "tfm.h"

/* Tolerance on parameters and state after up to 12 steps. SGD agrees bit for bit;
 * Adam differs by the last bit of torch's (vectorised, not correctly rounded) sqrt. */
#define OPT_RTOL 1e-6
#define OPT_ATOL_REL 1e-6 /* atol = this × max|want| of the tensor */

static st_file *open_fixture(const char *name) {
    char path[1024];
    st_file *f = NULL;
    tfm_status s = st_open(fixture_path(path, sizeof path, name), &f);
    if (s != TFM_OK) fail_msg("%s: %s", path, tfm_last_error());
    return f;
}

/* A tensor of the fixture as floats; its element count must be `numel`. */
static float *read_f32(const st_file *f, const char *name, int64_t numel) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", st_label(f), name);
    assert_int_equal(t->numel, numel);
    float *x = malloc((size_t)numel * sizeof(float));
    assert_non_null(x);
    assert_int_equal(st_read_f32(f, t, x), TFM_OK);
    return x;
}

/* An F64 tensor of the fixture, kept in double (learning rates are Python floats). */
static double *read_f64(const st_file *f, const char *name, int64_t numel) {
    const st_tensor *t = st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", st_label(f), name);
    assert_int_equal(t->dtype, ST_F64);
    assert_int_equal(t->numel, numel);
    double *x = malloc((size_t)numel * sizeof(double));
    assert_non_null(x);
    memcpy(x, t->data, (size_t)numel * sizeof(double)); /* data may be unaligned */
    return x;
}

static const char *meta(const st_file *f, const char *key) {
    const char *v = st_meta(f, key);
    if (!v) fail_msg("%s: no metadata %s", st_label(f), key);
    return v;
}

static double meta_f64(const st_file *f, const char *key) { return strtod(meta(f, key), NULL); }
static bool meta_bool(const st_file *f, const char *key) { return strcmp(meta(f, key), "true") == 0; }

static float max_abs(const float *x, size_t n) {
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) m = fabsf(x[i]) > m ? fabsf(x[i]) : m;
    return m;
}

static bool close_scaled(const char *what, const float *got, const float *want, size_t n) {
    return close_enough(what, got, want, n, OPT_RTOL, OPT_ATOL_REL * max_abs(want, n));
}

/* The shared inputs: params0 (P) and grads (STEPS, P). */
typedef struct inputs {
    st_file *f;
    size_t n;
    int steps;
    float *params0, *grads;
} inputs;

static void load_inputs(inputs *in) {
    in->f = open_fixture("optim/inputs.safetensors");
    const st_tensor *p = st_find(in->f, "params0");
    assert_non_null(p);
    in->n = (size_t)p->numel;
    in->steps = atoi(meta(in->f, "steps"));
    assert_true(in->steps >= 12);
    in->params0 = read_f32(in->f, "params0", (int64_t)in->n);
    in->grads = read_f32(in->f, "grads", (int64_t)in->n * in->steps);
}

static void free_inputs(inputs *in) {
    free(in->params0), free(in->grads);
    st_close(in->f);
}

/* The optimizer config of a case file, from torch's constructor arguments. */
static void case_config(const st_file *f, optim_config *cfg) {
    optim_kind kind;
    assert_int_equal(optim_kind_from_name(meta(f, "optimizer"), &kind), TFM_OK);
    optim_config_default(cfg, kind);
    cfg->weight_decay = meta_f64(f, "weight_decay");
    cfg->maximize = meta_bool(f, "maximize");
    if (kind == OPTIM_SGD) {
        cfg->momentum = meta_f64(f, "momentum");
        cfg->dampening = meta_f64(f, "dampening");
        cfg->nesterov = meta_bool(f, "nesterov");
    } else {
        cfg->beta1 = meta_f64(f, "beta1");
        cfg->beta2 = meta_f64(f, "beta2");
        cfg->eps = meta_f64(f, "eps");
        cfg->amsgrad = meta_bool(f, "amsgrad");
    }
}

static bool run_case(const inputs *in, const char *name) {
    char file[256], what[300];
    snprintf(file, sizeof file, "optim/%s.safetensors", name);
    st_file *f = open_fixture(file);
    optim_config cfg;
    case_config(f, &cfg);
    const size_t n = in->n;
    double *lrs = read_f64(f, "lrs", in->steps);
    float *want = read_f32(f, "params", (int64_t)n * in->steps);
    float *p = malloc(n * sizeof(float));
    memcpy(p, in->params0, n * sizeof(float));
    optimizer *opt = NULL;
    assert_int_equal(optim_create(&cfg, n, &opt), TFM_OK);
    bool ok = true;
    for (int s = 0; s < in->steps && ok; s++) {
        assert_int_equal(optim_step(opt, p, in->grads + (size_t)s * n, n, lrs[s]), TFM_OK);
        snprintf(what, sizeof what, "%s: params after step %d", name, s + 1);
        ok = close_scaled(what, p, want + (size_t)s * n, n);
    }
    /* Final state: the names torch uses, in the order the fixture lists them. */
    assert_int_equal(optim_get_step(opt), atoll(meta(f, "step")));
    const char *names = meta(f, "states");
    size_t count = 0;
    for (const char *c = names; *c; c++) count += *c == ',';
    count += names[0] != '\0';
    assert_int_equal(optim_num_states(opt), count);
    for (size_t i = 0; i < optim_num_states(opt) && ok; i++) {
        const char *sname;
        float *data;
        assert_int_equal(optim_state(opt, i, &sname, &data), TFM_OK);
        assert_ptr_equal(optim_state_find(opt, sname), data);
        snprintf(what, sizeof what, "state.%s", sname);
        float *ws = read_f32(f, what, (int64_t)n);
        snprintf(what, sizeof what, "%s: state.%s", name, sname);
        ok = close_scaled(what, data, ws, n);
        free(ws);
    }
    optim_free(opt);
    free(lrs), free(want), free(p);
    st_close(f);
    return ok;
}

static void test_torch_cases(void **state) {
    inputs in;
    load_inputs(&in);
    char cases[512];
    snprintf(cases, sizeof cases, "%s", meta(in.f, "cases"));
    int ran = 0, failed = 0;
    for (char *save, *c = strtok_r(cases, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
        if (!run_case(&in, c)) {
            printf("FAIL case %s\n", c);
            failed++;
        }
        ran++;
    }
    free_inputs(&in);
    assert_int_equal(ran, 8);
    assert_int_equal(failed, 0);
}

/* ---- checkpoint round trip ------------------------------------------------------ */

static void lr_of_step(int s, double *lr) { *lr = 0.02 * (1.0 + 0.25 * sin(0.7 * s)); }

/* Save params, state and step to a safetensors file as a checkpoint would. */
static void save_checkpoint(const optimizer *opt, const float *p, size_t n, const char *path) {
    st_writer *w;
    assert_int_equal(st_writer_new(&w), TFM_OK);
    int64_t shape[1] = {(int64_t)n};
    char key[64], step[32];
    assert_int_equal(st_writer_add(w, "params", ST_F32, 1, shape, p), TFM_OK);
    for (size_t i = 0; i < optim_num_states(opt); i++) {
        const char *name;
        float *data;
        assert_int_equal(optim_state(opt, i, &name, &data), TFM_OK);
        snprintf(key, sizeof key, "optim.%s", name);
        assert_int_equal(st_writer_add(w, key, ST_F32, 1, shape, data), TFM_OK);
    }
    snprintf(step, sizeof step, "%lld", (long long)optim_get_step(opt));
    assert_int_equal(st_writer_meta(w, "optim.step", step), TFM_OK);
    assert_int_equal(st_writer_write(w, path), TFM_OK);
    st_writer_free(w);
}

static optimizer *load_checkpoint(const optim_config *cfg, float *p, size_t n, const char *path) {
    st_file *f;
    optimizer *opt;
    char key[64];
    assert_int_equal(st_open(path, &f), TFM_OK);
    assert_int_equal(optim_create(cfg, n, &opt), TFM_OK);
    assert_int_equal(st_read_f32(f, st_find(f, "params"), p), TFM_OK);
    for (size_t i = 0; i < optim_num_states(opt); i++) {
        const char *name;
        float *data;
        assert_int_equal(optim_state(opt, i, &name, &data), TFM_OK);
        snprintf(key, sizeof key, "optim.%s", name);
        const st_tensor *t = st_find(f, key);
        assert_non_null(t);
        assert_int_equal(t->numel, (int64_t)n);
        assert_int_equal(st_read_f32(f, t, data), TFM_OK);
    }
    assert_int_equal(optim_set_step(opt, atoll(st_meta(f, "optim.step"))), TFM_OK);
    st_close(f);
    return opt;
}

static void test_checkpoint_round_trip(void **state) {
    inputs in;
    load_inputs(&in);
    const size_t n = in.n;
    optim_config cfgs[4];
    optim_config_default(&cfgs[0], OPTIM_SGD);
    cfgs[0].momentum = 0.9, cfgs[0].nesterov = true, cfgs[0].weight_decay = 1e-3;
    optim_config_default(&cfgs[1], OPTIM_ADAM);
    cfgs[1].amsgrad = true, cfgs[1].weight_decay = 0.1;
    optim_config_default(&cfgs[2], OPTIM_ADAMW);
    optim_config_default(&cfgs[3], OPTIM_SGD); /* no state at all */
    float *straight = malloc(n * sizeof(float)), *resumed = malloc(n * sizeof(float));
    char path[1024];
    tmp_path(path, sizeof path, "optim_ckpt.safetensors");
    for (int c = 0; c < 4; c++) {
        double lr;
        optimizer *a, *b;
        memcpy(straight, in.params0, n * sizeof(float));
        memcpy(resumed, in.params0, n * sizeof(float));
        assert_int_equal(optim_create(&cfgs[c], n, &a), TFM_OK);
        assert_int_equal(optim_create(&cfgs[c], n, &b), TFM_OK);
        for (int s = 0; s < 12; s++) {
            lr_of_step(s, &lr);
            assert_int_equal(optim_step(a, straight, in.grads + (size_t)s * n, n, lr), TFM_OK);
        }
        for (int s = 0; s < 6; s++) {
            lr_of_step(s, &lr);
            assert_int_equal(optim_step(b, resumed, in.grads + (size_t)s * n, n, lr), TFM_OK);
        }
        save_checkpoint(b, resumed, n, path);
        optim_free(b);
        memset(resumed, 0, n * sizeof(float));
        b = load_checkpoint(&cfgs[c], resumed, n, path);
        assert_int_equal(optim_get_step(b), 6);
        for (int s = 6; s < 12; s++) {
            lr_of_step(s, &lr);
            assert_int_equal(optim_step(b, resumed, in.grads + (size_t)s * n, n, lr), TFM_OK);
        }
        assert_memory_equal(straight, resumed, n * sizeof(float));
        assert_int_equal(optim_get_step(b), 12);
        assert_int_equal(optim_num_states(a), optim_num_states(b));
        for (size_t i = 0; i < optim_num_states(a); i++) {
            float *da, *db;
            assert_int_equal(optim_state(a, i, NULL, &da), TFM_OK);
            assert_int_equal(optim_state(b, i, NULL, &db), TFM_OK);
            assert_memory_equal(da, db, n * sizeof(float));
        }
        optim_free(a), optim_free(b);
    }
    free(straight), free(resumed);
    free_inputs(&in);
}

/* ---- gradient clipping ------------------------------------------------------------ */

static void test_clip_torch(void **state) {
    st_file *f = open_fixture("optim/clip.safetensors");
    const st_tensor *t = st_find(f, "grads");
    assert_non_null(t);
    const size_t n = (size_t)t->numel;
    float *g0 = read_f32(f, "grads", (int64_t)n), *g = malloc(n * sizeof(float));
    /* "tiny": a norm below max_norm that torch still clips, through the 1e-6 it adds. */
    const char *cases[] = {"clip", "noclip", "tiny"};
    char key[64];
    for (int c = 0; c < 3; c++) {
        snprintf(key, sizeof key, "%s.max_norm", cases[c]);
        double max_norm = meta_f64(f, key), norm = -1;
        snprintf(key, sizeof key, "%s.scale", cases[c]);
        const float scale = (float)meta_f64(f, key);
        snprintf(key, sizeof key, "%s.grads", cases[c]);
        float *want = read_f32(f, key, (int64_t)n);
        snprintf(key, sizeof key, "%s.total_norm", cases[c]);
        float *want_norm = read_f32(f, key, 1);
        for (size_t i = 0; i < n; i++) g[i] = g0[i] * scale; /* as torch: float product */
        assert_int_equal(clip_grad_norm(g, n, max_norm, &norm), TFM_OK);
        float normf = (float)norm;
        assert_true(close_enough(key, &normf, want_norm, 1, 1e-6, 0));
        assert_true(close_enough(cases[c], g, want, n, 1e-6, 1e-6 * max_abs(want, n)));
        if (c == 0) assert_true(norm > max_norm * 1.5); /* really clipped */
        if (c == 1) assert_memory_equal(g, g0, n * sizeof(float)); /* untouched */
        if (c == 2) assert_true(norm < max_norm && fabsf(g[0]) < 0.7f * fabsf(g0[0] * scale));
        free(want), free(want_norm);
    }
    free(g0), free(g);
    st_close(f);
}

static float *randn(size_t n, uint64_t seed, float scale) {
    tfm_rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * sizeof(float));
    assert_non_null(x);
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
    return x;
}

static void set_threads(int t) {
#ifdef _OPENMP
    omp_set_num_threads(t);
#else
    (void)t;
#endif
}

/* The norm and the clipped gradients, and an Adam step, are the same bits for any
 * number of threads; the norm equals a plain sequential double sum closely. */
static void test_thread_invariance(void **state) {
    const size_t n = 3 * 100003 + 17;
    float *g0 = randn(n, 11, 0.01f), *g = malloc(n * sizeof(float)), *g1 = malloc(n * sizeof(float));
    float *p0 = randn(n, 12, 1.0f), *p = malloc(n * sizeof(float)), *p1 = malloc(n * sizeof(float));
    double ref = 0;
    for (size_t i = 0; i < n; i++) ref += (double)g0[i] * g0[i];
    ref = sqrt(ref);
    const int threads[] = {1, 2, 3, 8};
    double norm1 = 0;
    optim_config cfg;
    optim_config_default(&cfg, OPTIM_ADAMW);
    cfg.amsgrad = true;
#ifdef _OPENMP
    int saved = omp_get_max_threads();
#endif
    for (int k = 0; k < 4; k++) {
        set_threads(threads[k]);
        double norm;
        memcpy(g, g0, n * sizeof(float));
        assert_int_equal(clip_grad_norm(g, n, 1.0, &norm), TFM_OK);
        assert_true(fabs(norm - ref) <= 1e-12 * ref);
        assert_true(norm > 1.0);
        optimizer *opt;
        memcpy(p, p0, n * sizeof(float));
        assert_int_equal(optim_create(&cfg, n, &opt), TFM_OK);
        for (int s = 0; s < 3; s++) assert_int_equal(optim_step(opt, p, g, n, 1e-2), TFM_OK);
        optim_free(opt);
        if (k == 0) {
            norm1 = norm;
            memcpy(g1, g, n * sizeof(float));
            memcpy(p1, p, n * sizeof(float));
        } else {
            assert_memory_equal(&norm, &norm1, sizeof norm);
            assert_memory_equal(g, g1, n * sizeof(float));
            assert_memory_equal(p, p1, n * sizeof(float));
        }
    }
#ifdef _OPENMP
    set_threads(saved);
#endif
    /* After clipping, the norm is max_norm (to float rounding). */
    assert_true(fabs(grad_norm(g1, n) - 1.0) < 1e-6);
    free(g0), free(g), free(g1), free(p0), free(p), free(p1);
}

/* Clipping folded into the step (clip_grad_coef + optim_step_scaled, what the trainer
 * does) gives the bits of clip_grad_norm + optim_step, and every SIMD path the CPU has
 * gives the generic path's bits, for each update rule's branches: Adam (beta1 above and
 * below 0.5: the two lerp forms), L2 decay, AdamW, amsgrad, maximize, SGD with momentum
 * and Nesterov. n is odd so the vector loops have remainders. */
static void step_both_ways(const optim_config *cfg, const float *g0, const float *p0, size_t n,
                           float *p_out, float *state_out) {
    float *g = malloc(n * sizeof(float)), *p = malloc(n * sizeof(float));
    float *q = malloc(n * sizeof(float));
    optimizer *a, *b;
    assert_int_equal(optim_create(cfg, n, &a), TFM_OK);
    assert_int_equal(optim_create(cfg, n, &b), TFM_OK);
    memcpy(p, p0, n * sizeof(float));
    memcpy(q, p0, n * sizeof(float));
    for (int s = 0; s < 3; s++) {
        double na, nb;
        float coef;
        memcpy(g, g0, n * sizeof(float));
        const double max_norm = s == 1 ? 1e9 : 0.5; /* step 2 does not clip */
        assert_int_equal(clip_grad_norm(g, n, max_norm, &na), TFM_OK);
        assert_int_equal(optim_step(a, p, g, n, 1e-2), TFM_OK);
        assert_int_equal(clip_grad_coef(g0, n, max_norm, &nb, &coef), TFM_OK);
        assert_true(na == nb && (s == 1 ? coef == 1.0f : coef < 1.0f));
        assert_int_equal(optim_step_scaled(b, q, g0, n, 1e-2, coef), TFM_OK);
    }
    assert_memory_equal(p, q, n * sizeof(float));
    for (size_t i = 0; i < optim_num_states(a); i++) {
        float *da, *db;
        assert_int_equal(optim_state(a, i, NULL, &da), TFM_OK);
        assert_int_equal(optim_state(b, i, NULL, &db), TFM_OK);
        assert_memory_equal(da, db, n * sizeof(float));
        if (i == 0) memcpy(state_out, da, n * sizeof(float));
    }
    memcpy(p_out, p, n * sizeof(float));
    optim_free(a), optim_free(b);
    free(g), free(p), free(q);
}

static void test_scaled_step_and_paths(void **state) {
    const size_t n = 4099;
    float *g0 = randn(n, 21, 0.05f), *p0 = randn(n, 22, 1.0f);
    float *p_ref = malloc(n * sizeof(float)), *s_ref = malloc(n * sizeof(float));
    float *p_got = malloc(n * sizeof(float)), *s_got = malloc(n * sizeof(float));
    g0[5] = 0.0f, g0[6] = -0.0f, p0[7] = -0.0f; /* signed zeros through every branch */
    enum { CASES = 7 };
    optim_config cfgs[CASES];
    optim_config_default(&cfgs[0], OPTIM_ADAM);
    optim_config_default(&cfgs[1], OPTIM_ADAM), cfgs[1].beta1 = 0.3, cfgs[1].weight_decay = 0.1;
    optim_config_default(&cfgs[2], OPTIM_ADAMW);
    optim_config_default(&cfgs[3], OPTIM_ADAMW), cfgs[3].amsgrad = true;
    optim_config_default(&cfgs[4], OPTIM_ADAM), cfgs[4].maximize = true;
    optim_config_default(&cfgs[5], OPTIM_SGD), cfgs[5].momentum = 0.9, cfgs[5].nesterov = true;
    optim_config_default(&cfgs[6], OPTIM_ADAM), cfgs[6].weight_decay = 0.01;
    const char *paths[] = {"generic", "avx2", "avx512"};
    const char *saved = tfm_cpu_path();
    for (int c = 0; c < CASES; c++) {
        for (int k = 0; k < 3; k++) {
            if (tfm_set_cpu_path(paths[k]) != TFM_OK) continue; /* not on this CPU */
            step_both_ways(&cfgs[c], g0, p0, n, k == 0 ? p_ref : p_got, k == 0 ? s_ref : s_got);
            if (k == 0) continue;
            if (memcmp(p_got, p_ref, n * sizeof(float)) || memcmp(s_got, s_ref, n * sizeof(float)))
                fail_msg("case %d: path %s differs from generic", c, paths[k]);
        }
    }
    assert_int_equal(tfm_set_cpu_path(saved), TFM_OK);
    free(g0), free(p0), free(p_ref), free(s_ref), free(p_got), free(s_got);
}

static void test_clip_edge_cases(void **state) {
    float g[5] = {1, 2, NAN, 3, 4}, keep[5];
    memcpy(keep, g, sizeof g);
    double norm = 0;
    /* NaN: reported, gradients untouched (torch's error_if_nonfinite=True). */
    assert_int_equal(clip_grad_norm(g, 5, 1.0, &norm), TFM_ERR_INVALID_ARG);
    assert_true(isnan(norm));
    assert_non_null(strstr(tfm_last_error(), "nan"));
    assert_memory_equal(g, keep, sizeof g);
    g[2] = INFINITY;
    memcpy(keep, g, sizeof g);
    assert_int_equal(clip_grad_norm(g, 5, 1.0, &norm), TFM_ERR_INVALID_ARG);
    assert_true(isinf(norm));
    assert_memory_equal(g, keep, sizeof g);
    /* Bad max_norm. */
    g[2] = 0;
    assert_int_equal(clip_grad_norm(g, 5, -1.0, &norm), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "max_norm"));
    assert_int_equal(clip_grad_norm(g, 5, NAN, NULL), TFM_ERR_INVALID_ARG);
    /* All zero and max_norm 0: stays zero, no NaN (the 1e-6 guards the division). */
    float z[3] = {0, 0, 0};
    assert_int_equal(clip_grad_norm(z, 3, 0.0, &norm), TFM_OK);
    assert_true(norm == 0.0 && z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f);
    /* max_norm 0 zeroes the gradients; empty input is a zero norm. */
    assert_int_equal(clip_grad_norm(g, 5, 0.0, &norm), TFM_OK);
    assert_true(norm == sqrt(1 + 4 + 9 + 16) && g[0] == 0.0f && g[4] == 0.0f);
    assert_int_equal(clip_grad_norm(NULL, 0, 1.0, &norm), TFM_OK);
    assert_true(norm == 0.0);
}

/* ---- schedules --------------------------------------------------------------------- */

static bool close_f64(const char *what, int64_t step, double got, double want, double rtol) {
    if (fabs(got - want) <= rtol * fabs(want)) return true;
    printf("FAIL %s at step %lld: got %.17g, want %.17g\n", what, (long long)step, got, want);
    return false;
}

static void test_schedules_torch(void **state) {
    st_file *f = open_fixture("optim/schedules.safetensors");
    schedule s;
    /* Noam through LambdaLR, steps 0, 1, 2, ...: the same double formula as rate(). */
    const st_tensor *t = st_find(f, "noam.lr");
    assert_non_null(t);
    int64_t m = t->numel;
    double *steps = read_f64(f, "noam.steps", m), *lr = read_f64(f, "noam.lr", m);
    assert_int_equal(schedule_noam(&s, meta_f64(f, "noam.factor"), atoll(meta(f, "noam.d_model")),
                                   atoll(meta(f, "noam.warmup"))),
                     TFM_OK);
    for (int64_t i = 0; i < m; i++)
        assert_true(close_f64("noam", (int64_t)steps[i], schedule_lr(&s, (int64_t)steps[i]), lr[i],
                              1e-15));
    assert_true(schedule_lr(&s, 0) == schedule_lr(&s, 1)); /* rate() guards step 0 */
    free(steps), free(lr);
    t = st_find(f, "noam_far.lr");
    assert_non_null(t);
    m = t->numel;
    steps = read_f64(f, "noam_far.steps", m), lr = read_f64(f, "noam_far.lr", m);
    assert_int_equal(schedule_noam(&s, meta_f64(f, "noam_far.factor"),
                                   atoll(meta(f, "noam_far.d_model")),
                                   atoll(meta(f, "noam_far.warmup"))),
                     TFM_OK);
    for (int64_t i = 0; i < m; i++)
        assert_true(close_f64("noam_far", (int64_t)steps[i], schedule_lr(&s, (int64_t)steps[i]),
                              lr[i], 1e-15));
    /* Peak at warmup: factor · (d_model · warmup)^-0.5. */
    assert_true(close_f64("noam peak", 4000, schedule_lr(&s, 4000), 2.0 / sqrt(64.0 * 4000.0), 1e-15));
    free(steps), free(lr);

    /* Cosine: torch's CosineAnnealingLR (recursive form) over last_epoch 0..T_max. */
    const double base = meta_f64(f, "cosine.base_lr"), eta_min = meta_f64(f, "cosine.eta_min");
    const int64_t T = atoll(meta(f, "cosine.T_max"));
    lr = read_f64(f, "cosine.lr", T + 1);
    for (int64_t warmup = 0; warmup <= 7; warmup += 7) {
        assert_int_equal(schedule_warmup_cosine(&s, base, eta_min, warmup, warmup + T), TFM_OK);
        for (int64_t i = 0; i <= T; i++)
            assert_true(close_f64("cosine", warmup + i, schedule_lr(&s, warmup + i), lr[i], 1e-12));
        /* and lr_min after the end (CosineAnnealingLR would rise again) */
        assert_true(schedule_lr(&s, warmup + T + 1) == eta_min);
        assert_true(schedule_lr(&s, warmup + 10 * T) == eta_min);
    }
    /* The linear warm-up: 0 at step 0, base at step warmup, base·k/warmup between. */
    assert_true(schedule_lr(&s, 0) == 0.0);
    assert_true(close_f64("warmup", 3, schedule_lr(&s, 3), base * 3.0 / 7.0, 1e-15));
    assert_true(schedule_lr(&s, 7) == base);
    for (int64_t i = 1; i <= 7; i++) assert_true(schedule_lr(&s, i) > schedule_lr(&s, i - 1));
    free(lr);
    st_close(f);

    assert_int_equal(schedule_constant(&s, 3e-4), TFM_OK);
    assert_true(schedule_lr(&s, 0) == 3e-4 && schedule_lr(&s, 1000000) == 3e-4);
}

static void test_schedule_errors(void **state) {
    schedule s;
    assert_int_equal(schedule_constant(&s, -1e-3), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "Invalid learning rate"));
    assert_int_equal(schedule_constant(&s, NAN), TFM_ERR_INVALID_ARG);
    assert_int_equal(schedule_noam(&s, 1.0, 512, 0), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "warmup"));
    assert_int_equal(schedule_noam(&s, 1.0, 0, 4000), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "d_model"));
    assert_int_equal(schedule_noam(&s, 0.0, 512, 4000), TFM_ERR_INVALID_ARG);
    assert_int_equal(schedule_warmup_cosine(&s, 1e-3, 0, 10, 10), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "warmup"));
    assert_int_equal(schedule_warmup_cosine(&s, 1e-3, 0, -1, 10), TFM_ERR_INVALID_ARG);
    assert_int_equal(schedule_warmup_cosine(&s, 1e-3, -1e-5, 0, 10), TFM_ERR_INVALID_ARG);
    assert_int_equal(schedule_warmup_cosine(&s, INFINITY, 0, 0, 10), TFM_ERR_INVALID_ARG);
    assert_int_equal(schedule_warmup_cosine(&s, 1e-3, 0, 0, 1), TFM_OK);
    assert_true(schedule_lr(&s, -5) == 1e-3); /* negative steps count as 0 */
}

/* ---- bad configurations ------------------------------------------------------------- */

static void expect_bad(const optim_config *cfg, const char *message) {
    optimizer *opt = (optimizer *)1;
    assert_int_equal(optim_config_check(cfg), TFM_ERR_INVALID_ARG);
    assert_int_equal(optim_create(cfg, 10, &opt), TFM_ERR_INVALID_ARG);
    assert_null(opt);
    if (!strstr(tfm_last_error(), message))
        fail_msg("expected \"%s\" in \"%s\"", message, tfm_last_error());
}

static void test_bad_configs(void **state) {
    optim_config c;
    /* SGD: torch.optim.SGD's ValueErrors */
    optim_config_default(&c, OPTIM_SGD);
    c.momentum = -0.1;
    expect_bad(&c, "Invalid momentum value");
    optim_config_default(&c, OPTIM_SGD);
    c.weight_decay = -1e-4;
    expect_bad(&c, "Invalid weight_decay value");
    optim_config_default(&c, OPTIM_SGD);
    c.nesterov = true; /* momentum 0 */
    expect_bad(&c, "Nesterov momentum requires a momentum and zero dampening");
    c.momentum = 0.9, c.dampening = 0.1;
    expect_bad(&c, "Nesterov momentum requires a momentum and zero dampening");
    /* Adam / AdamW: torch.optim.Adam's */
    for (int k = OPTIM_ADAM; k <= OPTIM_ADAMW; k++) {
        optim_config_default(&c, (optim_kind)k);
        c.eps = -1e-8;
        expect_bad(&c, "Invalid epsilon value");
        optim_config_default(&c, (optim_kind)k);
        c.beta1 = 1.0;
        expect_bad(&c, "Invalid beta parameter at index 0");
        c.beta1 = -0.1;
        expect_bad(&c, "Invalid beta parameter at index 0");
        optim_config_default(&c, (optim_kind)k);
        c.beta2 = 1.0;
        expect_bad(&c, "Invalid beta parameter at index 1");
        c.beta2 = NAN;
        expect_bad(&c, "Invalid beta parameter at index 1");
        optim_config_default(&c, (optim_kind)k);
        c.weight_decay = -0.01;
        expect_bad(&c, "Invalid weight_decay value");
        c.weight_decay = INFINITY;
        expect_bad(&c, "Invalid weight_decay value");
    }
    optim_config_default(&c, OPTIM_ADAM);
    c.kind = (optim_kind)7;
    expect_bad(&c, "unknown optimizer kind");
    optim_kind kind;
    assert_int_equal(optim_kind_from_name("Adagrad", &kind), TFM_ERR_INVALID_ARG);
    assert_int_equal(optim_kind_from_name("AdamW", &kind), TFM_OK);
    assert_int_equal(kind, OPTIM_ADAMW);

    /* Defaults are torch's and valid; the edge betas = 0 are allowed. */
    optim_config_default(&c, OPTIM_ADAMW);
    assert_true(c.weight_decay == 1e-2 && c.beta1 == 0.9 && c.beta2 == 0.999 && c.eps == 1e-8);
    c.beta1 = 0.0, c.beta2 = 0.0;
    assert_int_equal(optim_config_check(&c), TFM_OK);

    /* Empty parameter list, bad step arguments: nothing changes. */
    optimizer *opt;
    optim_config_default(&c, OPTIM_ADAM);
    assert_int_equal(optim_create(&c, 0, &opt), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "empty parameter list"));
    assert_int_equal(optim_create(&c, 4, &opt), TFM_OK);
    float p[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1}, p_keep[4];
    memcpy(p_keep, p, sizeof p);
    assert_int_equal(optim_step(opt, p, g, 4, -1e-3), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "Invalid learning rate"));
    assert_int_equal(optim_step(opt, p, g, 4, NAN), TFM_ERR_INVALID_ARG);
    assert_int_equal(optim_step(opt, p, g, 3, 1e-3), TFM_ERR_SHAPE);
    assert_int_equal(optim_step(opt, NULL, g, 4, 1e-3), TFM_ERR_INVALID_ARG);
    assert_memory_equal(p, p_keep, sizeof p);
    assert_int_equal(optim_get_step(opt), 0);
    assert_int_equal(optim_set_step(opt, -1), TFM_ERR_INVALID_ARG);
    assert_int_equal(optim_state(opt, 2, NULL, NULL), TFM_ERR_INVALID_ARG);
    assert_null(optim_state_find(opt, "momentum_buffer"));
    /* lr = 0 is allowed (torch: 0.0 <= lr) and, for Adam, leaves params unchanged. */
    assert_int_equal(optim_step(opt, p, g, 4, 0.0), TFM_OK);
    assert_memory_equal(p, p_keep, sizeof p);
    assert_int_equal(optim_get_step(opt), 1);
    optim_free(opt);
    optim_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_torch_cases),
        cmocka_unit_test(test_checkpoint_round_trip),
        cmocka_unit_test(test_clip_torch),
        cmocka_unit_test(test_thread_invariance),
        cmocka_unit_test(test_scaled_step_and_paths),
        cmocka_unit_test(test_clip_edge_cases),
        cmocka_unit_test(test_schedules_torch),
        cmocka_unit_test(test_schedule_errors),
        cmocka_unit_test(test_bad_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
