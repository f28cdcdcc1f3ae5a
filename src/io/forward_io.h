/* forward_io.h — the files of `tfm forward`: an input file whose tensors are named as
 * the module's forward() arguments (flags in __metadata__), and the output file.
 * Shared by the CLI, the tests and the fuzzers. */
#ifndef TFM_IO_FORWARD_IO_H
#define TFM_IO_FORWARD_IO_H

#include "io/safetensors.h"
#include "tfm.h"

#define FORWARD_MAX_INPUTS 16

typedef struct forward_inputs {
    tfm_inputs in;
    void *buffers[FORWARD_MAX_INPUTS]; /* aligned copies of the file's tensors */
    int nbuf;
} forward_inputs;

/* The names `kind` takes, in PyTorch's forward() order, comma-separated. */
const char *forward_input_names(tfm_module_kind kind);
/* Fill fi->in from f: float tensors converted to F32 copies, BOOL masks copied.
 * An unknown tensor name, a float where a mask is expected or the reverse, a bad
 * flag value: an error naming the file and tensor. Free with forward_inputs_free
 * whatever the result. */
tfm_status forward_inputs_read(const st_file *f, tfm_module_kind kind, forward_inputs *fi);
void forward_inputs_free(forward_inputs *fi);
/* `output`, and `attn_weights` when present, written atomically to path. With
 * grads (else NULL): also `grad.<input>` for each input gradient present and
 * `grad.<parameter name>` for every parameter of m. */
tfm_status forward_outputs_write(const char *path, const tfm_outputs *o,
                                 const tfm_input_grads *grads, const tfm_module *m);

#endif
