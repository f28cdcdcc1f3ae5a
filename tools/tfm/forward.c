/* forward.c — `tfm forward --model M --input IN --output OUT`.
 *
 * IN holds tensors named as the module's forward() arguments and, in __metadata__,
 * the flags need_weights, average_attn_weights, is_causal, src_is_causal,
 * tgt_is_causal, memory_is_causal ("true"/"false"). OUT gets `output`, and
 * `attn_weights` when need_weights is true. With --grad-output G (G holds `output`,
 * the gradient of a scalar loss with respect to the module's output), OUT also gets
 * `grad.<input>` for each float input and `grad.<parameter>` for every parameter.
 * On any error: one line on stderr, exit 1, and no OUT file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/status.h"
#include "io/forward_io.h"
#include "tfm.h"

static const char usage[] =
    "usage: tfm forward --model M.safetensors --input IN.safetensors --output OUT.safetensors\n"
    "                   [--grad-output G.safetensors] [--compute-type f32|bf16]";

/* G's `output` tensor as an F32 tfm_tensor in buf (freed by the caller). */
static tfm_status read_grad_output(const char *path, tfm_tensor *t, float **buf) {
    st_file *f;
    TFM_TRY(st_open(path, &f));
    const st_tensor *g = st_find(f, "output");
    tfm_status st = TFM_OK;
    if (!g)
        st = tfm_error(TFM_ERR_MISSING, "%s: no tensor 'output' (the gradient of the output)", path);
    else if (g->ndim > TFM_MAX_DIMS)
        st = tfm_error(TFM_ERR_SHAPE, "%s: 'output' has %d dimensions", path, g->ndim);
    else if (!(*buf = malloc((size_t)(g->numel ? g->numel : 1) * sizeof(float))))
        st = tfm_error(TFM_ERR_NOMEM, "%s: out of memory", path);
    else if ((st = st_read_f32(f, g, *buf)) == TFM_OK) {
        *t = (tfm_tensor){.data = *buf, .dtype = TFM_F32, .ndim = g->ndim};
        for (int d = 0; d < g->ndim; d++) t->shape[d] = g->shape[d];
    }
    st_close(f);
    return st;
}

static tfm_status run(const char *model, const char *input, const char *output,
                      const char *grad_output, tfm_compute_type ct) {
    tfm_module *m = NULL;
    st_file *f = NULL;
    forward_inputs fi = {0};
    tfm_outputs out;
    tfm_input_grads grads;
    tfm_tensor dy;
    float *dy_buf = NULL;
    tfm_status st = tfm_module_load(model, &m);
    if (st == TFM_OK) st = tfm_module_set_compute_type(m, ct);
    if (st == TFM_OK) st = st_open(input, &f);
    if (st == TFM_OK) st = forward_inputs_read(f, tfm_module_config(m)->module, &fi);
    st_close(f); /* the inputs are copied: unmap the file (its pages would stay resident) */
    f = NULL;
    if (st == TFM_OK && grad_output) st = read_grad_output(grad_output, &dy, &dy_buf);
    if (st == TFM_OK) {
        /* evaluation mode either way: with gradients, as PyTorch's module.eval() under autograd */
        st = grad_output ? tfm_forward_train(m, &fi.in, &out) : tfm_forward(m, &fi.in, &out);
        if (st != TFM_OK) tfm_error_context(st, "%s", input);
    }
    if (st == TFM_OK && grad_output && (st = tfm_backward(m, &dy, &grads)) != TFM_OK)
        tfm_error_context(st, "%s", grad_output);
    if (st == TFM_OK) st = forward_outputs_write(output, &out, grad_output ? &grads : NULL, m);
    free(dy_buf);
    forward_inputs_free(&fi);
    st_close(f);
    tfm_module_free(m);
    return st;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL, *grad = NULL, *compute = "f32";
    for (int i = 1; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--model")         ? &model
                           : !strcmp(argv[i], "--input")       ? &input
                           : !strcmp(argv[i], "--output")      ? &output
                           : !strcmp(argv[i], "--grad-output") ? &grad
                           : !strcmp(argv[i], "--compute-type") ? &compute
                                                               : NULL;
        if (!dst) return cli_fail("forward", "unknown option '%s'\n%s", argv[i], usage);
        if (i + 1 >= argc) return cli_fail("forward", "option '%s' needs a value", argv[i]);
        *dst = argv[++i];
    }
    if (!model || !input || !output) return cli_fail("forward", "%s", usage);
    tfm_compute_type ct;
    if (tfm_compute_type_from_name(compute, &ct) != TFM_OK)
        return cli_fail("forward", "--compute-type: %s", tfm_last_error());
    /* A stale OUT must not pass for this run's result. */
    if (unlink(output) != 0 && access(output, F_OK) == 0)
        return cli_fail("forward", "%s: cannot replace the existing output file", output);
    if (run(model, input, output, grad, ct) != TFM_OK) return cli_fail("forward", "%s", tfm_last_error());
    return 0;
}
