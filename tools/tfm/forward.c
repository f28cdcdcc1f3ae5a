/* forward.c — `tfm forward --model M --input IN --output OUT`.
 *
 * IN holds tensors named as the module's forward() arguments and, in __metadata__,
 * the flags need_weights, average_attn_weights, is_causal, src_is_causal,
 * tgt_is_causal, memory_is_causal ("true"/"false"). OUT gets `output`, and
 * `attn_weights` when need_weights is true. On any error: one line on stderr, exit 1,
 * and no OUT file.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/status.h"
#include "io/forward_io.h"
#include "tfm.h"

static const char usage[] =
    "usage: tfm forward --model M.safetensors --input IN.safetensors --output OUT.safetensors";

static tfm_status run(const char *model, const char *input, const char *output) {
    tfm_module *m = NULL;
    st_file *f = NULL;
    forward_inputs fi = {0};
    tfm_outputs out;
    tfm_status st = tfm_module_load(model, &m);
    if (st == TFM_OK) st = st_open(input, &f);
    if (st == TFM_OK) st = forward_inputs_read(f, tfm_module_config(m)->module, &fi);
    if (st == TFM_OK && (st = tfm_forward(m, &fi.in, &out)) != TFM_OK)
        tfm_error_context(st, "%s", input);
    if (st == TFM_OK) st = forward_outputs_write(output, &out);
    forward_inputs_free(&fi);
    st_close(f);
    tfm_module_free(m);
    return st;
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--model")    ? &model
                           : !strcmp(argv[i], "--input")  ? &input
                           : !strcmp(argv[i], "--output") ? &output
                                                          : NULL;
        if (!dst) return cli_fail("forward", "unknown option '%s'\n%s", argv[i], usage);
        if (i + 1 >= argc) return cli_fail("forward", "option '%s' needs a value", argv[i]);
        *dst = argv[++i];
    }
    if (!model || !input || !output) return cli_fail("forward", "%s", usage);
    /* A stale OUT must not pass for this run's result. */
    if (unlink(output) != 0 && access(output, F_OK) == 0)
        return cli_fail("forward", "%s: cannot replace the existing output file", output);
    if (run(model, input, output) != TFM_OK) return cli_fail("forward", "%s", tfm_last_error());
    return 0;
}
