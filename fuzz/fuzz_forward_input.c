/* fuzz_forward_input.c — libFuzzer target: the input of `tfm forward`.
 *
 * Byte 0 chooses one of a few fixed small modules (its low 7 bits modulo N_MODELS; the
 * modules are built once with tfm_module_create, in the shapes of small fixtures in
 * tests/fixtures/, so the fixtures' input files make good seeds); its bit 7 also runs
 * tfm_forward_train and tfm_backward. The rest
 * of the input is the input file: st_open_memory → forward_inputs_read → tfm_forward.
 * Inputs whose tensors hold more than MAX_ELEMS elements are skipped (a cap of the
 * fuzzer, to keep executions fast). Any status is fine; a crash, a sanitizer report or
 * a leak is a finding. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "io/forward_io.h"
#include "io/safetensors.h"
#include "tfm.h"

#define MAX_ELEMS 100000

#define N_MODELS 9

static tfm_config model_config(int i) {
    static const tfm_module_kind kinds[N_MODELS] = {
        TFM_MULTIHEAD_ATTENTION,       TFM_MULTIHEAD_ATTENTION,       TFM_MULTIHEAD_ATTENTION,
        TFM_TRANSFORMER_ENCODER_LAYER, TFM_TRANSFORMER_ENCODER,       TFM_TRANSFORMER_DECODER_LAYER,
        TFM_TRANSFORMER_DECODER,       TFM_TRANSFORMER,               TFM_TRANSFORMER_ENCODER_LAYER,
    };
    tfm_config c;
    tfm_config_default(&c, kinds[i]);
    c.dropout = 0.25;
    c.embed_dim = c.d_model = 8;
    c.num_heads = c.nhead = 2;
    c.dim_feedforward = 16;
    c.num_layers = c.num_encoder_layers = c.num_decoder_layers = 2;
    switch (i) {
    case 0: /* as mha_no_bias_kdim */
        c.kdim = 6, c.vdim = 4, c.bias = false;
        break;
    case 1: /* as mha_unbatched_bias_kv_zero_attn */
        c.add_bias_kv = c.add_zero_attn = true;
        break;
    case 2: /* as mha_batch_first_cross */
        c.embed_dim = 12, c.num_heads = 4, c.batch_first = true;
        break;
    case 3: /* as enc_layer_unbatched_masks, dec_layer_unbatched_masks */
    case 5:
        c.batch_first = true;
        break;
    case 4: /* as enc_stack2_no_bias_unbatched */
        c.norm = true, c.bias = false;
        break;
    case 6: /* as dec_stack2_unbatched */
        c.norm = true;
        break;
    case 7: /* as tf_unbatched */
        break;
    case 8: /* pre-norm, gelu */
        c.norm_first = true, c.activation = TFM_GELU;
        break;
    }
    return c;
}

static tfm_module *models[N_MODELS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tfm_set_num_threads(1);
    for (int i = 0; i < N_MODELS; i++) {
        tfm_config c = model_config(i);
        CHECK(tfm_module_create(&c, 1234 + (uint64_t)i, &models[i]) == TFM_OK);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    tfm_module *m = models[(data[0] & 0x7f) % N_MODELS];
    bool train = data[0] & 0x80;
    st_file *f;
    if (st_open_memory(data + 1, size - 1, "fuzz-input", &f) != TFM_OK) return 0;
    int64_t total = 0;
    for (size_t i = 0; i < st_count(f); i++) total += st_at(f, i)->numel; /* each ≤ size */
    if (total > MAX_ELEMS) {
        st_close(f);
        return 0;
    }
    forward_inputs fi;
    tfm_outputs out;
    tfm_status st = forward_inputs_read(f, tfm_module_config(m)->module, &fi);
    if (st == TFM_OK && !train) {
        if (tfm_forward(m, &fi.in, &out) == TFM_OK) CHECK(out.output.data != NULL);
    } else if (st == TFM_OK) {
        tfm_module_train(m, true, 7);
        if (tfm_forward_train(m, &fi.in, &out) == TFM_OK) {
            tfm_tensor dy = out.output;
            int64_t n = 1;
            for (int d = 0; d < dy.ndim; d++) n *= dy.shape[d];
            float *g = malloc((size_t)(n ? n : 1) * sizeof(float));
            CHECK(g);
            for (int64_t i = 0; i < n; i++) g[i] = (float)((i % 7) - 3) * 0.25f;
            dy.data = g;
            tfm_input_grads grads;
            CHECK(tfm_backward(m, &dy, &grads) == TFM_OK);
            free(g);
            tfm_zero_grad(m);
        }
        tfm_module_train(m, false, 0);
    }
    forward_inputs_free(&fi);
    st_close(f);
    return 0;
}

#ifndef FUZZ_NO_MUTATOR
/* One time in eight another module (byte 0); else the input file, safetensors-aware. */
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    if (size < 1 || max_size < 2) return LLVMFuzzerMutate(data, size, max_size);
    if (seed % 8 == 0) {
        data[0] = (uint8_t)((seed >> 3) % N_MODELS | (seed >> 11 & 0x80));
        return size;
    }
    return 1 + st_mutate(data + 1, size - 1, max_size - 1, seed >> 3);
}
#endif
