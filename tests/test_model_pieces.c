/* test_model_pieces.c — the pieces around nn.Transformer (src/model/): scaled embedding,
 * sinusoidal positional encoding, generator (Linear + log_softmax), label-smoothed
 * cross-entropy with ignored PAD targets.
 *   1. Against PyTorch: tests/fixtures/model/ from scripts/make_model_fixtures.py
 *      (values and autograd gradients, tied weights included).
 *   2. Each backward against central finite differences of its forward.
 *   3. Edge cases (all PAD, bad ids and targets, ties), accumulation, thread invariance.
 * Legend: R rows, N batch, L length, E model dim, V vocabulary. */
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
#include "core/status.h"
#include "io/safetensors.h"
#include "model/embedding.h"
#include "model/generator.h"
#include "model/loss.h"
#include "model/posenc.h"
#include "support/check.h"
#include "tfm.h"

/* ---- helpers ------------------------------------------------------------------------ */

static float *randn(size_t n, uint64_t seed, float scale) {
    tfm_rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = scale * rng_normal(&r);
    return x;
}

static float *zeros(size_t n) { return calloc(n ? n : 1, sizeof(float)); }

static st_file *open_fixture(const char *name) {
    char path[1024];
    st_file *f = NULL;
    tfm_status s = st_open(fixture_path(path, sizeof path, name), &f);
    if (s != TFM_OK) printf("%s: %s\n", path, tfm_last_error());
    assert_int_equal(s, TFM_OK);
    return f;
}

/* A float tensor of the fixture, which must hold exactly `numel` elements. */
static float *get_f32(const st_file *f, const char *name, int64_t numel) {
    const st_tensor *t = st_find(f, name);
    if (!t) printf("fixture %s: no tensor %s\n", st_label(f), name);
    assert_non_null(t);
    assert_int_equal(t->numel, numel);
    float *x = malloc((size_t)(numel ? numel : 1) * sizeof(float));
    assert_int_equal(st_read_f32(f, t, x), TFM_OK);
    return x;
}

/* An I64 tensor (PyTorch's ids) as int32. */
static int32_t *get_ids(const st_file *f, const char *name, int64_t numel) {
    const st_tensor *t = st_find(f, name);
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_I64);
    assert_int_equal(t->numel, numel);
    int32_t *ids = malloc((size_t)numel * sizeof(int32_t));
    const unsigned char *p = t->data;
    for (int64_t i = 0; i < numel; i++) {
        uint64_t v = 0;
        for (int b = 7; b >= 0; b--) v = v << 8 | p[i * 8 + b]; /* little-endian */
        ids[i] = (int32_t)(int64_t)v;
    }
    return ids;
}

static long meta_long(const st_file *f, const char *key) {
    const char *v = st_meta(f, key);
    if (!v) printf("fixture %s: no metadata %s\n", st_label(f), key);
    assert_non_null(v);
    return strtol(v, NULL, 10);
}

/* ---- finite differences -------------------------------------------------------------- */

/* The scalar whose gradient a backward computes, evaluated with the current parameters. */
typedef double (*objective_fn)(void *ctx);

/* Central differences of f with respect to each of the n floats at p, against grad.
 * The step is the one actually taken after rounding p ± h to float. */
static bool fd_check(const char *what, float *p, size_t n, const float *grad, objective_fn f,
                     void *ctx, double h, double rtol, double atol) {
    float *num = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        const float save = p[i];
        const float hi = (float)(save + h), lo = (float)(save - h);
        p[i] = hi;
        const double fp = f(ctx);
        p[i] = lo;
        const double fm = f(ctx);
        p[i] = save;
        num[i] = (float)((fp - fm) / ((double)hi - (double)lo));
    }
    bool ok = close_enough(what, grad, num, n, rtol, atol);
    free(num);
    return ok;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ---- embedding ---------------------------------------------------------------------- */

static void test_embedding_fixture(void **state) {
    st_file *f = open_fixture("model/embedding.safetensors");
    const int64_t V = 11, E = 8, R = 10;
    float *W = get_f32(f, "W", V * E), *dout = get_f32(f, "dout", R * E);
    float *want_out = get_f32(f, "out", R * E), *want_dW = get_f32(f, "dW", V * E);
    int32_t *ids = get_ids(f, "ids", R);
    assert_int_equal(meta_long(f, "pad"), 0);

    float *out = zeros(R * E), *dW = zeros(V * E);
    assert_int_equal(embedding_forward(out, ids, W, R, V, E), TFM_OK);
    /* one float multiply by (float)√E, as PyTorch: bit-identical */
    assert_memory_equal(out, want_out, (size_t)(R * E) * sizeof(float));
    assert_int_equal(embedding_backward(dW, dout, ids, R, V, E), TFM_OK);
    assert_true(close_enough("embedding dW", dW, want_dW, V * E, 1e-6, 1e-6));
    /* PAD (0) gets gradient like any other id (nn.Embedding without padding_idx) */
    double pad_norm = 0;
    for (int64_t c = 0; c < E; c++) pad_norm += fabs(dW[c]);
    assert_true(pad_norm > 0);
    /* backward accumulates */
    assert_int_equal(embedding_backward(dW, dout, ids, R, V, E), TFM_OK);
    for (int64_t i = 0; i < V * E; i++) want_dW[i] *= 2;
    assert_true(close_enough("embedding dW twice", dW, want_dW, V * E, 1e-6, 1e-6));
    free(W), free(dout), free(want_out), free(want_dW), free(ids), free(out), free(dW);
    st_close(f);
}

static void test_embedding_errors(void **state) {
    const int64_t V = 5, E = 3;
    float W[15] = {0}, out[6], dW[15], dout[6] = {1, 1, 1, 1, 1, 1};
    for (int i = 0; i < 6; i++) out[i] = 42.0f;
    for (int i = 0; i < 15; i++) dW[i] = 7.0f;
    const int32_t bad[2][2] = {{1, 5}, {-1, 0}};
    for (int k = 0; k < 2; k++) {
        tfm_clear_error();
        assert_int_equal(embedding_forward(out, bad[k], W, 2, V, E), TFM_ERR_INVALID_ARG);
        assert_true(strstr(tfm_last_error(), "outside") != NULL);
        assert_int_equal(embedding_backward(dW, dout, bad[k], 2, V, E), TFM_ERR_INVALID_ARG);
    }
    for (int i = 0; i < 6; i++) assert_true(out[i] == 42.0f); /* nothing written */
    for (int i = 0; i < 15; i++) assert_true(dW[i] == 7.0f);
    assert_true(embedding_scale(512) == (float)sqrt(512.0));
}

typedef struct emb_ctx {
    float *W, *out;
    const float *dout;
    const int32_t *ids;
    int64_t R, V, E;
} emb_ctx;

static double emb_objective(void *p) { /* Σ dout · out */
    emb_ctx *c = p;
    assert_int_equal(embedding_forward(c->out, c->ids, c->W, c->R, c->V, c->E), TFM_OK);
    return dot(c->dout, c->out, (size_t)(c->R * c->E));
}

static void test_embedding_fd(void **state) {
    const int64_t V = 6, E = 5, R = 9;
    const int32_t ids[9] = {0, 3, 3, 5, 0, 1, 3, 2, 0};
    float *W = randn(V * E, 11, 1), *dout = randn(R * E, 12, 1), *dW = zeros(V * E);
    emb_ctx c = {W, zeros(R * E), dout, ids, R, V, E};
    assert_int_equal(embedding_backward(dW, dout, ids, R, V, E), TFM_OK);
    /* linear in W: large steps are exact but for rounding */
    assert_true(fd_check("fd embedding dW", W, V * E, dW, emb_objective, &c, 0.25, 1e-4, 1e-4));
    /* row 4 is never looked up: its gradient is exactly zero */
    for (int64_t e = 0; e < E; e++) assert_true(dW[4 * E + e] == 0.0f);
    free(W), free(dout), free(dW), free(c.out);
}

static void test_embedding_threads(void **state) {
    const int64_t V = 50, E = 300, R = 700; /* above the parallel threshold, E in 5 blocks */
    float *W = randn(V * E, 21, 1), *dout = randn(R * E, 22, 1);
    int32_t *ids = malloc(R * sizeof(int32_t));
    tfm_rng r;
    rng_seed(&r, 23);
    for (int64_t i = 0; i < R; i++) ids[i] = (int32_t)(rng_next(&r) % 7); /* many repeats */
    float *a = zeros(V * E), *b = zeros(V * E);
    tfm_set_num_threads(1);
    assert_int_equal(embedding_backward(a, dout, ids, R, V, E), TFM_OK);
    tfm_set_num_threads(4);
    assert_int_equal(embedding_backward(b, dout, ids, R, V, E), TFM_OK);
    tfm_set_num_threads(0);
    assert_memory_equal(a, b, (size_t)(V * E) * sizeof(float));
    free(W), free(dout), free(ids), free(a), free(b);
}

/* ---- positional encoding ------------------------------------------------------------ */

static void test_posenc_fixture(void **state) {
    st_file *f = open_fixture("model/posenc.safetensors");
    const int64_t P = meta_long(f, "max_len"), E = meta_long(f, "d_model");
    float *want = get_f32(f, "pe", P * E), *annotated = get_f32(f, "pe_annotated", P * E);
    posenc pe;
    assert_int_equal(posenc_create(&pe, P, E), TFM_OK);
    assert_true(close_enough("posenc table", pe.table, want, P * E, 0, 1e-6));
    /* The Annotated Transformer's float32 table: within pos · 2^-23 (posenc.h) */
    assert_true(close_enough("posenc vs annotated", pe.table, annotated, P * E, 0,
                             (double)P * ldexp(1.0, -23)));
    /* a longer table starts with the same rows */
    posenc longer;
    assert_int_equal(posenc_create(&longer, 3 * P, E), TFM_OK);
    assert_memory_equal(longer.table, pe.table, (size_t)(P * E) * sizeof(float));
    posenc_free(&longer);

    /* forward: x + PE[:L] for every batch element, in place as well */
    const int64_t N = 3, L = P - 1;
    float *x = randn(N * L * E, 31, 1), *out = zeros(N * L * E), *w = zeros(N * L * E);
    for (int64_t n = 0; n < N; n++)
        for (int64_t j = 0; j < L * E; j++) w[n * L * E + j] = x[n * L * E + j] + want[j];
    assert_int_equal(posenc_forward(out, x, &pe, N, L, E), TFM_OK);
    assert_true(close_enough("posenc forward", out, w, N * L * E, 1e-6, 1e-6));
    assert_int_equal(posenc_forward(x, x, &pe, N, L, E), TFM_OK);
    assert_memory_equal(x, out, (size_t)(N * L * E) * sizeof(float));

    /* errors */
    assert_int_equal(posenc_forward(out, x, &pe, 1, P + 1, E), TFM_ERR_SHAPE);
    assert_int_equal(posenc_forward(out, x, &pe, 1, 2, E + 2), TFM_ERR_SHAPE);
    posenc bad;
    assert_int_equal(posenc_create(&bad, 10, 7), TFM_ERR_INVALID_ARG);
    assert_null(bad.table);
    assert_int_equal(posenc_create(&bad, -1, 8), TFM_ERR_INVALID_ARG);
    assert_int_equal(posenc_create(&bad, INT64_MAX / 2, 8), TFM_ERR_NOMEM);
    posenc_free(&bad);
    posenc_free(&pe);
    posenc_free(&pe); /* twice is harmless */
    free(want), free(annotated), free(x), free(out), free(w);
    st_close(f);
}

typedef struct pe_ctx {
    float *x, *out;
    const float *dout;
    const posenc *pe;
    int64_t N, L, E;
} pe_ctx;

static double pe_objective(void *p) {
    pe_ctx *c = p;
    assert_int_equal(posenc_forward(c->out, c->x, c->pe, c->N, c->L, c->E), TFM_OK);
    return dot(c->dout, c->out, (size_t)(c->N * c->L * c->E));
}

static void test_posenc_fd(void **state) {
    const int64_t N = 2, L = 4, E = 6, n = N * L * E;
    posenc pe;
    assert_int_equal(posenc_create(&pe, 8, E), TFM_OK);
    float *x = randn(n, 41, 1), *dout = randn(n, 42, 1), *dx = randn(n, 43, 1);
    float *want = zeros(n);
    for (int64_t i = 0; i < n; i++) want[i] = dx[i] + dout[i];
    posenc_backward(dx, dout, n); /* accumulates */
    assert_memory_equal(dx, want, (size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) dx[i] = dout[i];
    pe_ctx c = {x, zeros(n), dout, &pe, N, L, E};
    assert_true(fd_check("fd posenc dx", x, n, dx, pe_objective, &c, 0.25, 1e-4, 1e-4));
    posenc_free(&pe);
    free(x), free(dout), free(dx), free(want), free(c.out);
}

/* ---- generator ---------------------------------------------------------------------- */

static void test_generator_fixture(void **state) {
    st_file *f = open_fixture("model/generator.safetensors");
    const int64_t R = 6, E = 8, V = 13;
    float *x = get_f32(f, "x", R * E), *W = get_f32(f, "W", V * E), *b = get_f32(f, "b", V);
    float *dlogp = get_f32(f, "dlogp", R * V), *want_logp = get_f32(f, "logp", R * V);
    float *want_dx = get_f32(f, "dx", R * E), *want_dW = get_f32(f, "dW", V * E);
    float *want_db = get_f32(f, "db", V);

    float *logp = zeros(R * V), *dlogits = zeros(R * V);
    float *dx = zeros(R * E), *dW = zeros(V * E), *db = zeros(V);
    generator_forward(logp, x, W, b, R, E, V);
    assert_true(close_enough("generator logp", logp, want_logp, R * V, 1e-5, 1e-6));
    log_softmax_backward(dlogits, dlogp, logp, R, V);
    generator_backward(dx, dW, db, dlogits, x, W, R, E, V);
    assert_true(close_enough("generator dx", dx, want_dx, R * E, 1e-5, 1e-6));
    assert_true(close_enough("generator dW", dW, want_dW, V * E, 1e-5, 1e-6));
    assert_true(close_enough("generator db", db, want_db, V, 1e-5, 1e-6));
    /* accumulation, and NULL dx / db */
    generator_backward(NULL, dW, NULL, dlogits, x, W, R, E, V);
    for (int64_t i = 0; i < V * E; i++) want_dW[i] *= 2;
    assert_true(close_enough("generator dW twice", dW, want_dW, V * E, 1e-5, 1e-6));
    assert_true(close_enough("generator db once", db, want_db, V, 1e-5, 1e-6));
    /* without bias: the log_softmax of x·Wᵀ */
    generator_forward(logp, x, W, NULL, R, E, V);
    for (int64_t r = 0; r < R; r++) {
        double s = 0;
        for (int64_t c = 0; c < V; c++) s += exp(logp[r * V + c]);
        assert_float_equal(s, 1.0, 1e-6);
    }
    free(x), free(W), free(b), free(dlogp), free(want_logp), free(want_dx), free(want_dW);
    free(want_db), free(logp), free(dlogits), free(dx), free(dW), free(db);
    st_close(f);
}

typedef struct gen_ctx {
    float *x, *W, *b, *logp;
    const float *dlogp;
    int64_t R, E, V;
} gen_ctx;

static double gen_objective(void *p) { /* Σ dlogp · logp */
    gen_ctx *c = p;
    generator_forward(c->logp, c->x, c->W, c->b, c->R, c->E, c->V);
    return dot(c->dlogp, c->logp, (size_t)(c->R * c->V));
}

static void test_generator_fd(void **state) {
    const int64_t R = 4, E = 5, V = 7;
    gen_ctx c = {randn(R * E, 51, 1), randn(V * E, 52, 0.5f), randn(V, 53, 0.5f), zeros(R * V),
                 randn(R * V, 54, 1), R, E, V};
    float *dlogits = zeros(R * V), *dx = zeros(R * E), *dW = zeros(V * E), *db = zeros(V);
    generator_forward(c.logp, c.x, c.W, c.b, R, E, V);
    log_softmax_backward(dlogits, c.dlogp, c.logp, R, V);
    generator_backward(dx, dW, db, dlogits, c.x, c.W, R, E, V);
    assert_true(fd_check("fd generator dx", c.x, R * E, dx, gen_objective, &c, 1e-2, 1e-2, 1e-3));
    assert_true(fd_check("fd generator dW", c.W, V * E, dW, gen_objective, &c, 1e-2, 1e-2, 1e-3));
    assert_true(fd_check("fd generator db", c.b, V, db, gen_objective, &c, 1e-2, 1e-2, 1e-3));
    free(c.x), free(c.W), free(c.b), free(c.logp), free((float *)c.dlogp);
    free(dlogits), free(dx), free(dW), free(db);
}

/* ---- cross-entropy ------------------------------------------------------------------ */

static void test_ce_fixture(void **state) {
    st_file *f = open_fixture("model/ce.safetensors");
    const int64_t R = 10, V = 13;
    const int32_t pad = (int32_t)meta_long(f, "pad");
    float *logits = get_f32(f, "logits", R * V), *want_logp = get_f32(f, "logp", R * V);
    int32_t *targets = get_ids(f, "targets", R);
    float *logp = zeros(R * V), *d = zeros(R * V), *d2 = zeros(R * V);
    log_softmax_forward(logp, logits, R, V);
    assert_true(close_enough("ce log_softmax", logp, want_logp, R * V, 1e-6, 1e-6));

    static const char *tags[2] = {"eps0", "eps01"};
    static const float eps[2] = {0.0f, 0.1f};
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "loss_%s", tags[k]);
        float *want_loss = get_f32(f, name, 1);
        snprintf(name, sizeof name, "loss64_%s", tags[k]);
        float *want_loss64 = get_f32(f, name, 1);
        snprintf(name, sizeof name, "dlogp_%s", tags[k]);
        float *want_dlogp = get_f32(f, name, R * V);
        snprintf(name, sizeof name, "dlogits_%s", tags[k]);
        float *want_dlogits = get_f32(f, name, R * V);
        snprintf(name, sizeof name, "count_%s", tags[k]);
        const long count = meta_long(f, name);
        snprintf(name, sizeof name, "correct_%s", tags[k]);
        const long correct = meta_long(f, name);

        ce_result res;
        assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, pad, eps[k]), TFM_OK);
        assert_int_equal(res.count, count);
        assert_int_equal(res.correct, correct);
        float got = (float)res.loss;
        assert_true(close_enough(tags[k], &got, want_loss, 1, 1e-6, 0));
        assert_true(close_enough(tags[k], &got, want_loss64, 1, 1e-6, 0));
        assert_float_equal(res.loss_sum, res.loss * (double)res.count, 1e-9);

        memset(d, 0, (size_t)(R * V) * sizeof(float));
        assert_int_equal(cross_entropy_backward(d, targets, R, V, pad, eps[k], 1.0f, res.count),
                         TFM_OK);
        assert_true(close_enough("ce dlogp", d, want_dlogp, R * V, 1e-6, 1e-8));
        /* fused, into a separate buffer and in place over a copy of logp */
        for (int64_t i = 0; i < R * V; i++) d[i] = NAN; /* written, not accumulated */
        assert_int_equal(log_softmax_cross_entropy_backward(d, logp, targets, R, V, pad, eps[k],
                                                            1.0f, res.count),
                         TFM_OK);
        assert_true(close_enough("ce dlogits", d, want_dlogits, R * V, 1e-5, 1e-7));
        memcpy(d2, logp, (size_t)(R * V) * sizeof(float));
        assert_int_equal(log_softmax_cross_entropy_backward(d2, d2, targets, R, V, pad, eps[k],
                                                            1.0f, res.count),
                         TFM_OK);
        assert_memory_equal(d, d2, (size_t)(R * V) * sizeof(float));
        /* the unfused path agrees: dlogp then log_softmax's backward */
        float *dlp = zeros(R * V), *dz = zeros(R * V);
        assert_int_equal(cross_entropy_backward(dlp, targets, R, V, pad, eps[k], 1.0f, res.count),
                         TFM_OK);
        log_softmax_backward(dz, dlp, logp, R, V);
        assert_true(close_enough("ce dlogits unfused", dz, want_dlogits, R * V, 1e-5, 1e-7));
        free(dlp), free(dz);
        free(want_loss), free(want_loss64), free(want_dlogp), free(want_dlogits);
    }
    free(logits), free(want_logp), free(targets), free(logp), free(d), free(d2);
    st_close(f);
}

static void test_ce_edges(void **state) {
    const int64_t R = 3, V = 4;
    /* row 0: a tie between classes 1 and 2 (torch.argmax: the first); row 1: PAD */
    float logp[12] = {-3, -1, -1, -2, -1, -2, -3, -4, -2, -2, -0.5f, -3};
    int32_t targets[3] = {2, 0, 2};
    ce_result res;
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, 0.0f), TFM_OK);
    assert_int_equal(res.count, 2);
    assert_int_equal(res.correct, 1); /* row 0 predicts 1, row 2 predicts 2 */
    assert_float_equal(res.loss, (1.0 + 0.5) / 2, 1e-7);
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, 1.0f), TFM_OK);
    assert_float_equal(res.loss, ((3 + 1 + 1 + 2) / 4.0 + (2 + 2 + 0.5 + 3) / 4.0) / 2, 1e-7);
    /* ignore_index other than 0, and PyTorch's default -100 */
    int32_t t2[3] = {-100, 3, -100};
    assert_int_equal(cross_entropy_forward(&res, logp, t2, R, V, -100, 0.0f), TFM_OK);
    assert_int_equal(res.count, 1);
    assert_float_equal(res.loss, 4.0, 1e-7);

    /* all PAD: tfm defines 0 (PyTorch: NaN), and the gradient is zero */
    int32_t all_pad[3] = {0, 0, 0};
    assert_int_equal(cross_entropy_forward(&res, logp, all_pad, R, V, 0, 0.1f), TFM_OK);
    assert_int_equal(res.count, 0);
    assert_true(res.loss == 0.0 && res.loss_sum == 0.0 && res.correct == 0);
    float d[12];
    for (int i = 0; i < 12; i++) d[i] = 5.0f;
    assert_int_equal(cross_entropy_backward(d, all_pad, R, V, 0, 0.1f, 1.0f, res.count), TFM_OK);
    for (int i = 0; i < 12; i++) assert_true(d[i] == 5.0f);
    assert_int_equal(
        log_softmax_cross_entropy_backward(d, logp, all_pad, R, V, 0, 0.1f, 1.0f, res.count),
        TFM_OK);
    for (int i = 0; i < 12; i++) assert_true(d[i] == 0.0f);

    /* errors: targets out of range, eps outside [0, 1] or NaN, no classes */
    int32_t bad[3] = {1, 4, 0};
    tfm_clear_error();
    assert_int_equal(cross_entropy_forward(&res, logp, bad, R, V, 0, 0.0f), TFM_ERR_INVALID_ARG);
    assert_true(strstr(tfm_last_error(), "target 4") != NULL);
    bad[1] = -1;
    assert_int_equal(cross_entropy_backward(d, bad, R, V, 0, 0.0f, 1.0f, 1), TFM_ERR_INVALID_ARG);
    assert_int_equal(log_softmax_cross_entropy_backward(d, logp, bad, R, V, 0, 0.0f, 1.0f, 1),
                     TFM_ERR_INVALID_ARG);
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, 1.5f), TFM_ERR_INVALID_ARG);
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, -0.1f),
                     TFM_ERR_INVALID_ARG);
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, NAN), TFM_ERR_INVALID_ARG);
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, 0, 0, 0.0f), TFM_ERR_INVALID_ARG);
}

typedef struct ce_ctx {
    float *logits, *logp;
    const int32_t *targets;
    int64_t R, V;
    float eps, dloss;
    int64_t count;
    bool from_logits; /* objective of the logits (fused) or of logp (unfused) */
} ce_ctx;

static double ce_objective(void *p) { /* dloss · Σ_r loss_r / count */
    ce_ctx *c = p;
    if (c->from_logits) log_softmax_forward(c->logp, c->logits, c->R, c->V);
    ce_result res;
    assert_int_equal(cross_entropy_forward(&res, c->logp, c->targets, c->R, c->V, 0, c->eps),
                     TFM_OK);
    return c->dloss * res.loss_sum / (double)c->count;
}

static void test_ce_fd(void **state) {
    const int64_t R = 6, V = 5;
    const int32_t targets[6] = {3, 0, 1, 4, 0, 2};
    float *logits = randn(R * V, 61, 1.5f), *logp = zeros(R * V), *d = zeros(R * V);
    log_softmax_forward(logp, logits, R, V);
    ce_result res;
    for (int k = 0; k < 2; k++) {
        const float eps = k ? 0.1f : 0.0f, dloss = 0.7f;
        assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, 0, eps), TFM_OK);
        assert_int_equal(res.count, 4);
        /* dlogp: the loss is linear in logp */
        ce_ctx c = {logits, logp, targets, R, V, eps, dloss, res.count, false};
        memset(d, 0, (size_t)(R * V) * sizeof(float));
        assert_int_equal(cross_entropy_backward(d, targets, R, V, 0, eps, dloss, res.count), TFM_OK);
        assert_true(fd_check("fd ce dlogp", logp, R * V, d, ce_objective, &c, 0.25, 1e-4, 1e-5));
        /* fused dlogits */
        c.from_logits = true;
        assert_int_equal(log_softmax_cross_entropy_backward(d, logp, targets, R, V, 0, eps, dloss,
                                                            res.count),
                         TFM_OK);
        assert_true(fd_check("fd ce dlogits", logits, R * V, d, ce_objective, &c, 1e-2, 1e-2, 1e-4));
        log_softmax_forward(logp, logits, R, V); /* restore after the perturbations */
        /* normalising by a larger count (several micro-batches) scales the gradient */
        float *half = zeros(R * V);
        assert_int_equal(log_softmax_cross_entropy_backward(half, logp, targets, R, V, 0, eps,
                                                            dloss, 2 * res.count),
                         TFM_OK);
        for (int64_t i = 0; i < R * V; i++) assert_float_equal(2 * half[i], d[i], 1e-7);
        free(half);
    }
    free(logits), free(logp), free(d);
}

/* Loss and reductions over rows/columns do not depend on the thread count. */
static void test_threads(void **state) {
    const int64_t R = 96, V = 1000, E = 4;
    float *logits = randn(R * V, 71, 3), *g = randn(R * V, 72, 1), *x = randn(R * E, 73, 1);
    float *W = randn(V * E, 74, 1), *dW = zeros(V * E);
    float *lp[2], *dz[2], *dl[2], *db[2];
    int32_t *targets = malloc(R * sizeof(int32_t));
    for (int64_t r = 0; r < R; r++) targets[r] = (int32_t)((r * 37) % V);
    ce_result res[2];
    for (int t = 0; t < 2; t++) {
        tfm_set_num_threads(t ? 3 : 1);
        lp[t] = zeros(R * V), dz[t] = zeros(R * V), dl[t] = zeros(R * V), db[t] = zeros(V);
        log_softmax_forward(lp[t], logits, R, V);
        assert_int_equal(cross_entropy_forward(&res[t], lp[t], targets, R, V, 0, 0.1f), TFM_OK);
        assert_int_equal(log_softmax_cross_entropy_backward(dz[t], lp[t], targets, R, V, 0, 0.1f,
                                                            1.0f, res[t].count),
                         TFM_OK);
        log_softmax_backward(dl[t], g, lp[t], R, V);
        generator_backward(NULL, dW, db[t], dz[t], x, W, R, E, V);
    }
    tfm_set_num_threads(0);
    assert_memory_equal(lp[0], lp[1], (size_t)(R * V) * sizeof(float));
    assert_true(res[0].loss == res[1].loss && res[0].correct == res[1].correct);
    assert_int_equal(res[0].count, R - 1); /* row 0's target is 0 = PAD */
    assert_memory_equal(dz[0], dz[1], (size_t)(R * V) * sizeof(float));
    assert_memory_equal(dl[0], dl[1], (size_t)(R * V) * sizeof(float));
    assert_memory_equal(db[0], db[1], (size_t)V * sizeof(float));
    for (int t = 0; t < 2; t++) free(lp[t]), free(dz[t]), free(dl[t]), free(db[t]);
    free(logits), free(g), free(x), free(W), free(dW), free(targets);
}

/* ---- tied weights: embedding and generator share W ---------------------------------- */

static void test_tied_fixture(void **state) {
    st_file *f = open_fixture("model/tied.safetensors");
    const int64_t V = 9, E = 6, R = 7;
    const int32_t pad = (int32_t)meta_long(f, "pad");
    float *W = get_f32(f, "W", V * E), *b = get_f32(f, "b", V);
    float *want_loss = get_f32(f, "loss", 1), *want_dW = get_f32(f, "dW", V * E);
    float *want_db = get_f32(f, "db", V);
    int32_t *ids = get_ids(f, "ids", R), *targets = get_ids(f, "targets", R);
    const float eps = strtof(st_meta(f, "eps"), NULL);

    float *x = zeros(R * E), *logp = zeros(R * V), *dx = zeros(R * E);
    float *dW = zeros(V * E), *db = zeros(V);
    assert_int_equal(embedding_forward(x, ids, W, R, V, E), TFM_OK);
    generator_forward(logp, x, W, b, R, E, V);
    ce_result res;
    assert_int_equal(cross_entropy_forward(&res, logp, targets, R, V, pad, eps), TFM_OK);
    float got = (float)res.loss;
    assert_true(close_enough("tied loss", &got, want_loss, 1, 1e-6, 0));
    /* backward, in place over logp, both uses of W adding into one dW */
    assert_int_equal(log_softmax_cross_entropy_backward(logp, logp, targets, R, V, pad, eps, 1.0f,
                                                        res.count),
                     TFM_OK);
    generator_backward(dx, dW, db, logp, x, W, R, E, V);
    assert_int_equal(embedding_backward(dW, dx, ids, R, V, E), TFM_OK);
    assert_true(close_enough("tied dW", dW, want_dW, V * E, 1e-5, 1e-6));
    assert_true(close_enough("tied db", db, want_db, V, 1e-5, 1e-6));
    free(W), free(b), free(want_loss), free(want_dW), free(want_db), free(ids), free(targets);
    free(x), free(logp), free(dx), free(dW), free(db);
    st_close(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embedding_fixture), cmocka_unit_test(test_embedding_errors),
        cmocka_unit_test(test_embedding_fd),      cmocka_unit_test(test_embedding_threads),
        cmocka_unit_test(test_posenc_fixture),    cmocka_unit_test(test_posenc_fd),
        cmocka_unit_test(test_generator_fixture), cmocka_unit_test(test_generator_fd),
        cmocka_unit_test(test_ce_fixture),        cmocka_unit_test(test_ce_edges),
        cmocka_unit_test(test_ce_fd),             cmocka_unit_test(test_threads),
        cmocka_unit_test(test_tied_fixture),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
