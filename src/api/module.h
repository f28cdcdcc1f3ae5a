/* module.h — the tfm_module object behind the public API: a config, the parameter
 * block with its list (and, once training starts, the gradient block with its own),
 * the typed views the nn code uses, workspaces, saved activations, and the output
 * buffers handed back by tfm_forward / tfm_backward. */
#ifndef TFM_API_MODULE_H
#define TFM_API_MODULE_H

#include "core/workspace.h"
#include "kernels/bf16.h"
#include "kernels/compute.h"
#include "nn/mha.h"
#include "nn/params.h"
#include "nn/stacks.h"
#include "tfm.h"

/* Typed views into a parameter (or gradient) block; which are used depends on the
 * module kind. */
typedef struct module_views {
    mha_params mha;
    encoder_layer_params enc_layer;
    decoder_layer_params dec_layer;
    encoder_params enc; /* TransformerEncoder */
    decoder_params dec; /* TransformerDecoder */
    transformer_params tr;
    encoder_layer_params *enc_layers; /* owned arrays of per-layer views */
    decoder_layer_params *dec_layers;
} module_views;

/* What tfm_forward_train leaves for tfm_backward. */
typedef struct forward_record {
    bool valid;
    bool batched;
    int64_t N, L, S;              /* L: the output's length; S: the other input's */
    const float *q, *k, *v;       /* MultiheadAttention inputs as attended, (N, ·, ·) */
    int64_t kdim, vdim;
    union {
        mha_cache mha;
        encoder_layer_cache enc_layer;
        decoder_layer_cache dec_layer;
        stack_cache stack;
        transformer_cache tr;
    } cache;
    const float *memory;          /* DecoderLayer / Decoder: memory (N, S, E) */
} forward_record;

struct tfm_module {
    tfm_config cfg;
    mha_config mha;       /* MultiheadAttention */
    layer_config layer;   /* the layers' arguments */
    stack_config stack;   /* TransformerEncoder / Decoder */
    transformer_config tr;

    param_list params;    /* names, shapes and slots, in state_dict order */
    module_views pv;      /* views of the parameters */
    float *block;         /* every parameter, one allocation (NULL when mapped) */
    size_t block_floats;
    struct st_file *mapped; /* the loaded file, when the parameters point into it */

    param_list grads;     /* the same names and shapes, for the gradients */
    module_views gv;
    float *grad_block;    /* allocated by the first tfm_forward_train */

    tfm_compute_type compute; /* what the matrix products compute in */
    bf16_weights bf16w;   /* bf16 copy of the parameters, for TFM_COMPUTE_BF16 */

    bool training;        /* dropout on (PyTorch's module.train()) */
    uint64_t seed, calls; /* dropout streams: seed and forward count */
    tfm_ws ws;            /* scratch */
    tfm_ws act;           /* saved activations, from tfm_forward_train to tfm_backward */
    forward_record rec;

    float *out_buf;   /* output handed back, grown only when a larger one is needed */
    size_t out_cap;
    float *attn_buf;  /* attention weights handed back */
    size_t attn_cap;
    float *grad_buf[3]; /* input gradients handed back */
    size_t grad_cap[3];
};

/* Build the parameter list for cfg; with `with_block`, also the parameter block
 * (parameters uninitialised) and the slots pointing into it. */
tfm_status module_alloc(const tfm_config *cfg, bool with_block, tfm_module **out);
/* tfm_module_load for a file already opened (st_open or st_open_memory): config
 * from its __metadata__, every tensor checked, the parameters converted into the
 * module's own block (never pointing into f, which the caller keeps and closes).
 * Errors are prefixed with the file's label, as tfm_module_load's with the path. */
tfm_status module_load_file(const struct st_file *f, tfm_module **out);
/* Allocate and zero the gradient block, if not yet there. */
tfm_status module_alloc_grads(tfm_module *m);
/* t = y (N, L, E) moved into *buf (grown as needed) in the caller's layout: (L, E)
 * unbatched, (N, L, E) batch_first, else (L, N, E). */
tfm_status module_emit_seq(float **buf, size_t *cap, tfm_tensor *t, const float *y, int64_t N,
                           int64_t L, int64_t E, bool batched, bool batch_first);
/* Enter the module's compute scope (kernels/compute.h) for one call, making or
 * refreshing its bf16 weights when the compute type is bf16; compute_leave(*previous)
 * ends it. */
tfm_status module_compute_begin(tfm_module *m, compute_scope *previous);
/* A module-owned buffer of n floats (grown only when needed). */
tfm_status module_buffer(float **buf, size_t *cap, size_t n);

#endif
