/* test_module.c — module objects: golden values from PyTorch for a fixed parameter
 * fill, save/load round trips, PyTorch's initialisation distributions, the parameter
 * names of each module kind, is_causal, unbatched inputs, thread-count invariance. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "golden_values.h"
#include "io/safetensors.h"
#include "support/check.h"
#include "tfm.h"

static tfm_module *create(tfm_module_kind kind, int64_t E, int64_t H, int64_t F, bool batch_first) {
    tfm_config c;
    tfm_config_default(&c, kind);
    c.embed_dim = c.d_model = E;
    c.num_heads = c.nhead = H;
    c.dim_feedforward = F;
    c.num_layers = c.num_encoder_layers = c.num_decoder_layers = 2;
    c.batch_first = batch_first;
    tfm_module *m = NULL;
    if (tfm_module_create(&c, 1234, &m) != TFM_OK) fail_msg("%s", tfm_last_error());
    return m;
}

/* Every parameter p, in state_dict order: cos(arange(numel)) (see golden_values.h). */
static void cos_fill(tfm_module *m) {
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        tfm_tensor t;
        tfm_module_param(m, i, NULL, &t);
        int64_t n = 1;
        for (int d = 0; d < t.ndim; d++) n *= t.shape[d];
        for (int64_t k = 0; k < n; k++) ((float *)t.data)[k] = cosf((float)k);
    }
}

static void test_golden_encoder_layer(void **state) {
    tfm_module *m = create(TFM_TRANSFORMER_ENCODER_LAYER, 8, 2, 16, true);
    cos_fill(m);
    float src[2 * 5 * 8];
    for (int i = 0; i < 80; i++) src[i] = sinf((float)i) * 0.5f;
    tfm_inputs in;
    tfm_inputs_init(&in);
    in.src = (tfm_tensor){src, TFM_F32, 3, {2, 5, 8}};
    tfm_outputs out;
    assert_int_equal(tfm_forward(m, &in, &out), TFM_OK);
    assert_true(close_enough("golden encoder layer", out.output.data, golden_encoder_layer_out, 80,
                             1e-5, 1e-5));
    tfm_module_free(m);
}

static void test_golden_decoder_layer(void **state) {
    tfm_module *m = create(TFM_TRANSFORMER_DECODER_LAYER, 8, 2, 16, true);
    cos_fill(m);
    float src[2 * 5 * 8], tgt[2 * 4 * 8];
    for (int i = 0; i < 80; i++) src[i] = sinf((float)i) * 0.5f;
    for (int i = 0; i < 64; i++) tgt[i] = sinf((float)i + 1.0f) * 0.5f;
    tfm_inputs in;
    tfm_inputs_init(&in);
    in.tgt = (tfm_tensor){tgt, TFM_F32, 3, {2, 4, 8}};
    in.memory = (tfm_tensor){src, TFM_F32, 3, {2, 5, 8}};
    tfm_outputs out;
    assert_int_equal(tfm_forward(m, &in, &out), TFM_OK);
    assert_true(close_enough("golden decoder layer", out.output.data, golden_decoder_layer_out, 64,
                             1e-5, 1e-5));
    tfm_module_free(m);
}

static void test_parameter_names(void **state) {
    tfm_module *m = create(TFM_TRANSFORMER, 8, 2, 16, false);
    /* nn.Transformer(d_model=8, nhead=2, 2, 2, 16): 2·12 + 2 + 2·18 + 2 tensors */
    assert_int_equal(tfm_module_num_params(m), 2 * 12 + 2 + 2 * 18 + 2);
    const char *name;
    tfm_tensor t;
    tfm_module_param(m, 0, &name, &t);
    assert_string_equal(name, "encoder.layers.0.self_attn.in_proj_weight");
    assert_int_equal(t.shape[0], 24);
    tfm_module_param(m, tfm_module_num_params(m) - 1, &name, &t);
    assert_string_equal(name, "decoder.norm.bias");
    tfm_module_free(m);

    tfm_config c;
    tfm_config_default(&c, TFM_MULTIHEAD_ATTENTION);
    c.embed_dim = 8, c.num_heads = 2, c.kdim = 3, c.vdim = 5, c.add_bias_kv = true, c.bias = false;
    assert_int_equal(tfm_module_create(&c, 0, &m), TFM_OK);
    const char *want[] = {"q_proj_weight", "k_proj_weight", "v_proj_weight", "bias_k", "bias_v",
                          "out_proj.weight"};
    assert_int_equal(tfm_module_num_params(m), 6);
    for (size_t i = 0; i < 6; i++) {
        tfm_module_param(m, i, &name, &t);
        assert_string_equal(name, want[i]);
    }
    tfm_module_param(m, 1, NULL, &t);
    assert_int_equal(t.shape[1], 3); /* k_proj_weight (E, kdim) */
    tfm_module_free(m);
}

/* PyTorch's initialisation: xavier_uniform bounds, zero attention biases, LayerNorm 1/0. */
static void test_initialisation(void **state) {
    tfm_module *m = create(TFM_TRANSFORMER_ENCODER_LAYER, 64, 4, 128, false);
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *name;
        tfm_tensor t;
        tfm_module_param(m, i, &name, &t);
        int64_t n = 1;
        for (int d = 0; d < t.ndim; d++) n *= t.shape[d];
        const float *x = t.data;
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (int64_t k = 0; k < n; k++) lo = fmin(lo, x[k]), hi = fmax(hi, x[k]), sum += x[k];
        if (!strcmp(name, "self_attn.in_proj_weight")) {
            double bound = sqrt(6.0 / (64 + 192));
            assert_true(lo >= -bound && hi <= bound && hi > 0.9 * bound && lo < -0.9 * bound);
        } else if (!strcmp(name, "self_attn.in_proj_bias") || !strcmp(name, "self_attn.out_proj.bias") ||
                   (strstr(name, "norm") && strstr(name, "bias"))) {
            assert_true(lo == 0 && hi == 0);
        } else if (strstr(name, "norm") && strstr(name, "weight")) {
            assert_true(lo == 1 && hi == 1);
        } else if (!strcmp(name, "linear2.weight")) { /* U(±1/√fan_in), fan_in = 128 */
            double bound = 1 / sqrt(128.0);
            assert_true(lo >= -bound && hi <= bound && hi > 0.9 * bound);
            assert_true(fabs(sum / (double)n) < 0.01);
        }
    }
    tfm_module_free(m);
    /* Same seed, same numbers; another seed, others. */
    tfm_module *a = create(TFM_MULTIHEAD_ATTENTION, 8, 2, 0, false);
    tfm_module *b = create(TFM_MULTIHEAD_ATTENTION, 8, 2, 0, false);
    tfm_tensor ta, tb;
    tfm_module_param(a, 0, NULL, &ta);
    tfm_module_param(b, 0, NULL, &tb);
    assert_memory_equal(ta.data, tb.data, 24 * 8 * sizeof(float));
    tfm_module_free(a);
    tfm_module_free(b);
}

static float *run_src(tfm_module *m, const float *src, int64_t N, int64_t L, int64_t E,
                      const tfm_tensor *mask, bool is_causal) {
    tfm_inputs in;
    tfm_inputs_init(&in);
    in.src = (tfm_tensor){(void *)src, TFM_F32, 3, {L, N, E}};
    if (N == 0) in.src = (tfm_tensor){(void *)src, TFM_F32, 2, {L, E}};
    if (mask) in.mask = *mask;
    in.is_causal = is_causal;
    tfm_outputs out;
    if (tfm_forward(m, &in, &out) != TFM_OK) fail_msg("%s", tfm_last_error());
    size_t n = (size_t)(N ? N : 1) * (size_t)(L * E);
    float *copy = malloc(n * sizeof(float));
    memcpy(copy, out.output.data, n * sizeof(float));
    return copy;
}

/* Save → load gives the same module; is_causal equals the explicit causal mask;
 * an unbatched input equals the batch of one; threads do not change a bit. */
static void test_roundtrip_causal_unbatched_threads(void **state) {
    tfm_module *m = create(TFM_TRANSFORMER_ENCODER, 16, 4, 32, false);
    enum { L = 7, N = 1, E = 16 };
    float src[L * N * E], mask[L * L];
    for (int i = 0; i < L * N * E; i++) src[i] = sinf(0.37f * (float)i);
    char path[1024];
    tmp_path(path, sizeof path, "roundtrip.safetensors");
    assert_int_equal(tfm_module_save(m, path), TFM_OK);
    tfm_module *r = NULL;
    assert_int_equal(tfm_module_load(path, &r), TFM_OK);
    assert_int_equal(tfm_module_num_params(r), tfm_module_num_params(m));
    assert_int_equal(tfm_module_config(r)->num_layers, 2);

    tfm_generate_square_subsequent_mask(L, mask);
    assert_true(mask[1] == -INFINITY && mask[L] == 0.0f);
    tfm_tensor tm = {mask, TFM_F32, 2, {L, L}};
    float *a = run_src(m, src, N, L, E, &tm, false);
    float *b = run_src(r, src, N, L, E, NULL, true);
    float *c = run_src(r, src, 0, L, E, NULL, true); /* unbatched (L, E) */
    assert_true(close_enough("is_causal vs mask", b, a, L * E, 1e-6, 1e-6));
    assert_true(close_enough("unbatched", c, b, L * E, 0, 0));
    tfm_set_num_threads(1);
    float *d = run_src(r, src, N, L, E, NULL, true);
    tfm_set_num_threads(0);
    assert_memory_equal(d, b, sizeof(float) * L * E);
    free(a), free(b), free(c), free(d);
    tfm_module_free(m);
    tfm_module_free(r);
    remove(path);
}

/* A state_dict stored as F64 (or F16/BF16) loads, converted to float. */
static void test_load_other_float_dtypes(void **state) {
    tfm_module *m = create(TFM_MULTIHEAD_ATTENTION, 8, 2, 0, true);
    char path[1024];
    tmp_path(path, sizeof path, "f64.safetensors");
    st_writer *w;
    assert_int_equal(st_writer_new(&w), TFM_OK);
    st_writer_meta(w, "module", "MultiheadAttention");
    st_writer_meta(w, "embed_dim", "8");
    st_writer_meta(w, "num_heads", "2");
    st_writer_meta(w, "batch_first", "true");
    double *bufs[8] = {0};
    uint16_t *bf16 = NULL;
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *name;
        tfm_tensor t;
        tfm_module_param(m, i, &name, &t);
        int64_t n = 1;
        for (int d = 0; d < t.ndim; d++) n *= t.shape[d];
        const float *x = t.data;
        if (i == 1) { /* in_proj_bias as BF16: values exactly representable */
            bf16 = malloc((size_t)n * sizeof *bf16);
            for (int64_t k = 0; k < n; k++) {
                float v = (float)(k % 5) * 0.25f;
                ((float *)t.data)[k] = v;
                uint32_t u;
                memcpy(&u, &v, 4);
                bf16[k] = (uint16_t)(u >> 16);
            }
            st_writer_add(w, name, ST_BF16, t.ndim, t.shape, bf16);
            continue;
        }
        bufs[i] = malloc((size_t)n * sizeof(double));
        for (int64_t k = 0; k < n; k++) bufs[i][k] = x[k];
        assert_int_equal(st_writer_add(w, name, ST_F64, t.ndim, t.shape, bufs[i]), TFM_OK);
    }
    assert_int_equal(st_writer_write(w, path), TFM_OK);
    st_writer_free(w);
    tfm_module *r;
    assert_int_equal(tfm_module_load(path, &r), TFM_OK);
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        tfm_tensor a, b;
        tfm_module_param(m, i, NULL, &a);
        tfm_module_param(r, i, NULL, &b);
        int64_t n = 1;
        for (int d = 0; d < a.ndim; d++) n *= a.shape[d];
        assert_memory_equal(a.data, b.data, (size_t)n * sizeof(float));
    }
    for (int i = 0; i < 8; i++) free(bufs[i]);
    free(bf16);
    tfm_module_free(m);
    tfm_module_free(r);
}

/* One MHA forward (self-attention over x (2, 3, 8)) into y. */
static void mha_out(tfm_module *m, const float *x, float *y) {
    tfm_inputs in;
    tfm_inputs_init(&in);
    in.query = in.key = in.value =
        (tfm_tensor){(void *)x, TFM_F32, 3, {2, 3, 8}};
    tfm_outputs out;
    assert_int_equal(tfm_forward(m, &in, &out), TFM_OK);
    memcpy(y, out.output.data, 48 * sizeof(float));
}

/* The bf16 weights rule (tfm.h, "compute type"): a view asked for marks the bf16 copy
 * stale; a write through a view kept across a forward needs tfm_module_params_changed;
 * set_compute_type checks its argument. */
static void test_compute_type_weights(void **state) {
    tfm_config c;
    tfm_config_default(&c, TFM_MULTIHEAD_ATTENTION);
    c.embed_dim = 8, c.num_heads = 2;
    tfm_module *m, *fresh;
    assert_int_equal(tfm_module_create(&c, 3, &m), TFM_OK);
    assert_int_equal(tfm_module_set_compute_type(m, (tfm_compute_type)7), TFM_ERR_INVALID_ARG);
    assert_int_equal(tfm_module_set_compute_type(m, TFM_COMPUTE_BF16), TFM_OK);
    assert_int_equal(tfm_module_compute_type(m), TFM_COMPUTE_BF16);
    float x[48], y0[48], y1[48], y2[48];
    for (int i = 0; i < 48; i++) x[i] = sinf(0.37f * (float)i);
    const char *name;
    tfm_tensor w;
    assert_int_equal(tfm_module_param(m, 0, &name, &w), TFM_OK); /* in_proj_weight */
    mha_out(m, x, y0);
    for (int i = 0; i < 24; i++) ((float *)w.data)[i] *= 1.5f; /* kept view, after a forward */
    mha_out(m, x, y1);
    assert_memory_equal(y0, y1, sizeof y0); /* the copy is stale: as documented */
    tfm_module_params_changed(m);
    mha_out(m, x, y1);
    assert_memory_not_equal(y0, y1, sizeof y0);
    /* a module made with those weights from the start agrees */
    assert_int_equal(tfm_module_create(&c, 3, &fresh), TFM_OK);
    assert_int_equal(tfm_module_set_compute_type(fresh, TFM_COMPUTE_BF16), TFM_OK);
    tfm_tensor fw;
    assert_int_equal(tfm_module_param(fresh, 0, &name, &fw), TFM_OK);
    memcpy(fw.data, w.data, (size_t)(fw.shape[0] * fw.shape[1]) * sizeof(float));
    mha_out(fresh, x, y2);
    assert_memory_equal(y1, y2, sizeof y1);
    /* asking for a view again marks it stale by itself */
    ((float *)w.data)[0] += 1.0f;
    assert_int_equal(tfm_module_param(m, 0, &name, &w), TFM_OK);
    mha_out(m, x, y2);
    assert_memory_not_equal(y1, y2, sizeof y1);
    tfm_module_free(fresh);
    tfm_module_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compute_type_weights),
        cmocka_unit_test(test_golden_encoder_layer),
        cmocka_unit_test(test_golden_decoder_layer),
        cmocka_unit_test(test_parameter_names),
        cmocka_unit_test(test_initialisation),
        cmocka_unit_test(test_roundtrip_causal_unbatched_threads),
        cmocka_unit_test(test_load_other_float_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
