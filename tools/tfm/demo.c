/* demo.c — `tfm demo`: what `make demo` shows until training lands.
 *  1. Runs the shipped example Transformer (exported from PyTorch by
 *     scripts/export_pytorch.py) on its shipped inputs and compares with PyTorch's output.
 *  2. Builds nn.Transformer's default size (d_model 512, nhead 8, 6+6 layers, ff 2048)
 *     and times a forward pass on batch 8, src = tgt = 128.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "io/forward_io.h"
#include "tfm.h"

#ifndef TFM_SOURCE_DIR
#define TFM_SOURCE_DIR "."
#endif

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int run_example(const char *dir) {
    char model[1024], input[1024], expected[1024];
    snprintf(model, sizeof model, "%s/demo.model.safetensors", dir);
    snprintf(input, sizeof input, "%s/demo.input.safetensors", dir);
    snprintf(expected, sizeof expected, "%s/demo.expected.safetensors", dir);
    tfm_module *m = NULL;
    st_file *fin = NULL, *fexp = NULL;
    forward_inputs fi = {0};
    float *want = NULL;
    const st_tensor *w;
    int rc = 1;
    if (tfm_module_load(model, &m) != TFM_OK || st_open(input, &fin) != TFM_OK ||
        st_open(expected, &fexp) != TFM_OK ||
        forward_inputs_read(fin, tfm_module_config(m)->module, &fi) != TFM_OK) {
        cli_fail("demo", "%s", tfm_last_error());
        goto done;
    }
    if (!(w = st_find(fexp, "output")) || !(want = malloc((size_t)w->numel * sizeof(float))) ||
        st_read_f32(fexp, w, want) != TFM_OK) {
        cli_fail("demo", "%s: no readable 'output'", expected);
        goto done;
    }
    const tfm_config *c = tfm_module_config(m);
    const tfm_inputs *in = &fi.in;
    printf("1. An nn.Transformer exported from PyTorch %s by scripts/export_pytorch.py\n",
           st_meta(fexp, "torch_version") ? st_meta(fexp, "torch_version") : "");
    printf("   d_model %lld, nhead %lld, %lld+%lld layers, ff %lld, %s; src (%lld, %lld, %lld), "
           "tgt (%lld, %lld, %lld)%s\n",
           (long long)c->d_model, (long long)c->nhead, (long long)c->num_encoder_layers,
           (long long)c->num_decoder_layers, (long long)c->dim_feedforward,
           c->activation == TFM_GELU ? "gelu" : "relu", (long long)in->src.shape[0],
           (long long)in->src.shape[1], (long long)in->src.shape[2], (long long)in->tgt.shape[0],
           (long long)in->tgt.shape[1], (long long)in->tgt.shape[2],
           in->tgt_mask.data ? ", causal tgt_mask" : "");
    tfm_outputs out;
    double t[2];
    for (int r = 0; r < 2; r++) { /* the first call also sizes the workspace */
        double t0 = now_sec();
        if (tfm_forward(m, in, &out) != TFM_OK) {
            cli_fail("demo", "%s", tfm_last_error());
            goto done;
        }
        t[r] = now_sec() - t0;
    }
    double maxdiff = 0, maxabs = 0;
    const float *y = out.output.data;
    for (int64_t i = 0; i < w->numel; i++) {
        maxdiff = fmax(maxdiff, fabs((double)y[i] - want[i]));
        maxabs = fmax(maxabs, fabs((double)want[i]));
    }
    printf("   forward %.2f ms (first call %.2f ms); max |tfm - PyTorch| = %.2g, outputs up to %.2g\n",
           1e3 * t[1], 1e3 * t[0], maxdiff, maxabs);
    rc = maxdiff <= 1e-4 * fmax(1.0, maxabs) ? 0 : cli_fail("demo", "output differs from PyTorch");
done:
    free(want);
    forward_inputs_free(&fi);
    st_close(fin);
    st_close(fexp);
    tfm_module_free(m);
    return rc;
}

/* Multiply-adds ×2 of the matrix products of one nn.Transformer forward. */
static double transformer_flops(double N, double S, double L, double E, double F, double le,
                                double ld) {
    double enc = 2 * N * S * E * 3 * E + 4 * N * S * S * E + 2 * N * S * E * E + 4 * N * S * E * F;
    double dec = 2 * N * L * E * 3 * E + 4 * N * L * L * E + 2 * N * L * E * E   /* self */
                 + 2 * N * L * E * E + 4 * N * S * E * E + 4 * N * L * S * E + 2 * N * L * E * E
                 + 4 * N * L * E * F;
    return le * enc + ld * dec;
}

static int time_default(void) {
    tfm_config c;
    tfm_config_default(&c, TFM_TRANSFORMER);
    c.batch_first = true;
    const int64_t N = 8, S = 128, L = 128, E = c.d_model;
    tfm_module *m = NULL;
    if (tfm_module_create(&c, 42, &m) != TFM_OK) return cli_fail("demo", "%s", tfm_last_error());
    float *src = malloc((size_t)(N * S * E) * sizeof(float));
    float *tgt = malloc((size_t)(N * L * E) * sizeof(float));
    float *mask = malloc((size_t)(L * L) * sizeof(float));
    int rc = 1;
    if (!src || !tgt || !mask) {
        cli_fail("demo", "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < N * S * E; i++) src[i] = sinf(0.01f * (float)i);
    for (int64_t i = 0; i < N * L * E; i++) tgt[i] = cosf(0.01f * (float)i);
    tfm_generate_square_subsequent_mask(L, mask);
    tfm_inputs in;
    tfm_inputs_init(&in);
    in.src = (tfm_tensor){src, TFM_F32, 3, {N, S, E}};
    in.tgt = (tfm_tensor){tgt, TFM_F32, 3, {N, L, E}};
    in.tgt_mask = (tfm_tensor){mask, TFM_F32, 2, {L, L}};
    tfm_outputs out;
    double times[5];
    for (int r = 0; r < 6; r++) { /* the first run sizes the workspace */
        double t0 = now_sec();
        if (tfm_forward(m, &in, &out) != TFM_OK) {
            cli_fail("demo", "%s", tfm_last_error());
            goto done;
        }
        if (r > 0) times[r - 1] = now_sec() - t0;
    }
    for (int i = 0; i < 5; i++) /* median of 5 */
        for (int j = i + 1; j < 5; j++)
            if (times[j] < times[i]) {
                double t = times[i];
                times[i] = times[j], times[j] = t;
            }
    double flops = transformer_flops(N, S, L, E, c.dim_feedforward, 6, 6);
    printf("2. nn.Transformer default size (d_model 512, nhead 8, 6+6 layers, ff 2048), random init,\n"
           "   batch 8, src = tgt = 128, causal tgt_mask: forward %.1f ms (median of 5), %.1f GFLOP/s\n",
           1e3 * times[2], flops / times[2] * 1e-9);
    rc = 0;
done:
    free(src);
    free(tgt);
    free(mask);
    tfm_module_free(m);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    const char *dir = TFM_SOURCE_DIR "/examples/data";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc)
            dir = argv[++i];
        else
            return cli_fail("demo", "unknown option '%s' (usage: tfm demo [--data DIR])", argv[i]);
    }
    int rc = run_example(dir);
    if (rc) return rc;
    return time_default();
}
