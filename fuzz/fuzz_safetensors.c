/* fuzz_safetensors.c — libFuzzer target: the input is a safetensors file (a model, an
 * input file, anything).
 *
 *   1. st_open_memory validates it; a rejected file must leave *out NULL.
 *   2. For a valid file: every tensor is found again by name, floating ones are read
 *      with st_read_f32 (others must be refused with TFM_ERR_FORMAT), and every
 *      __metadata__ entry is found again by key.
 *   3. config_from_meta; when it gives a config small enough to build quickly (the
 *      caps below belong to the fuzzer, not the library), module_load_file builds the
 *      module from the file. When that succeeds, the parameters must equal the file's
 *      tensors, and a tiny forward pass runs on fixed inputs of the module's shapes.
 *
 * Any status is fine; a crash, a sanitizer report, a leak or a broken invariant
 * (abort) is a finding. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "api/module.h"
#include "io/config_meta.h"
#include "io/safetensors.h"
#include "tfm.h"

#define MAX_PARAMS 1000000 /* floats the fuzzer lets a module have */
#define MAX_LAYERS 64      /* layers (each adds a dozen parameter entries) */

static bool is_float(st_dtype d) { return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16; }

/* An upper bound of the parameter count, in double (no overflow), or HUGE_VAL when the
 * config has more layers than MAX_LAYERS. */
static double param_bound(const tfm_config *c) {
    if (c->module == TFM_MULTIHEAD_ATTENTION) {
        double e = (double)c->embed_dim, k = c->kdim ? (double)c->kdim : e,
               v = c->vdim ? (double)c->vdim : e;
        return e * (e + k + v) + e * e + 8 * e;
    }
    double d = (double)c->d_model, ff = (double)c->dim_feedforward;
    double layer = 8 * d * d + 2 * d * ff + ff + 20 * d; /* a decoder layer, the larger */
    double layers = 1;
    if (c->module == TFM_TRANSFORMER_ENCODER || c->module == TFM_TRANSFORMER_DECODER)
        layers = (double)c->num_layers;
    else if (c->module == TFM_TRANSFORMER)
        layers = (double)c->num_encoder_layers + (double)c->num_decoder_layers;
    if (layers > MAX_LAYERS) return HUGE_VAL;
    return layers * layer + 4 * d;
}

/* A float tensor (L, N, W) in the module's layout, filled with fixed values. */
static void seq_tensor(tfm_tensor *t, float *buf, int64_t len, int64_t width, bool batch_first) {
    const int64_t n = 2;
    for (int64_t i = 0; i < len * n * width; i++) buf[i] = (float)sin(0.37 * (double)i);
    *t = (tfm_tensor){.data = buf, .dtype = TFM_F32, .ndim = 3};
    t->shape[0] = batch_first ? n : len;
    t->shape[1] = batch_first ? len : n;
    t->shape[2] = width;
}

/* One forward pass of the loaded module on small fixed inputs (length 3 and 2, batch 2),
 * with weights for MultiheadAttention. Any status is acceptable. */
static void tiny_forward(tfm_module *m) {
    const tfm_config *c = tfm_module_config(m);
    int64_t e = c->module == TFM_MULTIHEAD_ATTENTION ? c->embed_dim : c->d_model;
    int64_t kd = c->kdim ? c->kdim : e, vd = c->vdim ? c->vdim : e;
    int64_t w = e > kd ? e : kd;
    w = w > vd ? w : vd;
    if (w > 4096) return;
    float *a = malloc((size_t)(3 * 2 * w) * sizeof(float));
    float *b = malloc((size_t)(2 * 2 * w) * sizeof(float));
    float *v = malloc((size_t)(2 * 2 * w) * sizeof(float));
    CHECK(a && b && v);
    tfm_inputs in;
    tfm_inputs_init(&in);
    switch (c->module) {
    case TFM_MULTIHEAD_ATTENTION:
        seq_tensor(&in.query, a, 3, e, c->batch_first);
        seq_tensor(&in.key, b, 2, kd, c->batch_first);
        seq_tensor(&in.value, v, 2, vd, c->batch_first);
        in.need_weights = true;
        break;
    case TFM_TRANSFORMER_ENCODER_LAYER:
    case TFM_TRANSFORMER_ENCODER:
        seq_tensor(&in.src, a, 3, e, c->batch_first);
        in.is_causal = true;
        break;
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER:
        seq_tensor(&in.tgt, a, 3, e, c->batch_first);
        seq_tensor(&in.memory, b, 2, e, c->batch_first);
        break;
    case TFM_TRANSFORMER:
        seq_tensor(&in.tgt, a, 3, e, c->batch_first);
        seq_tensor(&in.src, b, 2, e, c->batch_first);
        break;
    }
    tfm_outputs out;
    if (tfm_forward(m, &in, &out) == TFM_OK) CHECK(out.output.data != NULL);
    free(a);
    free(b);
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file *f = (st_file *)1;
    if (st_open_memory(data, size, "fuzz", &f) != TFM_OK) {
        CHECK(f == NULL);
        return 0;
    }
    CHECK(f != NULL);

    /* every tensor, by index and by name */
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        CHECK(t && t->name && st_find(f, t->name) == t);
        CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS && t->numel >= 0);
        CHECK(t->nbytes == (size_t)t->numel * st_dtype_size(t->dtype));
        if (t->nbytes) CHECK((const uint8_t *)t->data >= data && (const uint8_t *)t->data + t->nbytes <= data + size);
        float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
        CHECK(buf);
        tfm_status st = st_read_f32(f, t, buf);
        CHECK(is_float(t->dtype) ? st == TFM_OK : st == TFM_ERR_FORMAT);
        free(buf);
    }

    /* every metadata entry, by index and by key */
    for (size_t i = 0; i < st_meta_count(f); i++) {
        const char *key = NULL, *value = NULL;
        st_meta_at(f, i, &key, &value);
        CHECK(key && value);
        const char *again = st_meta(f, key);
        CHECK(again && strcmp(again, value) == 0);
    }

    /* as a model file */
    tfm_config cfg;
    if (config_from_meta(f, &cfg) == TFM_OK && param_bound(&cfg) <= MAX_PARAMS) {
        CHECK(config_check(&cfg) == TFM_OK);
        tfm_module *m = (tfm_module *)1;
        if (module_load_file(f, &m) == TFM_OK) {
            CHECK(m != NULL);
            CHECK(tfm_module_num_params(m) == st_count(f));
            for (size_t i = 0; i < tfm_module_num_params(m); i++) {
                const char *name;
                tfm_tensor view;
                CHECK(tfm_module_param(m, i, &name, &view) == TFM_OK);
                const st_tensor *t = st_find(f, name);
                CHECK(t && t->ndim == view.ndim);
                float *buf = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
                CHECK(buf && st_read_f32(f, t, buf) == TFM_OK);
                /* the parameters are copies, bit for bit */
                CHECK(memcmp(buf, view.data, (size_t)t->numel * sizeof(float)) == 0);
                CHECK((const uint8_t *)view.data < data || (const uint8_t *)view.data >= data + size);
                free(buf);
            }
            tiny_forward(m);
            tfm_module_free(m);
        } else {
            CHECK(m == NULL);
        }
    }
    st_close(f);
    return 0;
}

#ifndef FUZZ_NO_MUTATOR
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    return st_mutate(data, size, max_size, seed);
}
#endif
