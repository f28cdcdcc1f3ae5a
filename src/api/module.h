/* module.h — the tfm_module object behind the public API: a config, the one
 * parameter block with its list, the typed views the nn code uses, a workspace,
 * and the output buffers handed back by tfm_forward. */
#ifndef TFM_API_MODULE_H
#define TFM_API_MODULE_H

#include "core/workspace.h"
#include "nn/mha.h"
#include "nn/params.h"
#include "nn/stacks.h"
#include "tfm.h"

struct tfm_module {
    tfm_config cfg;
    param_list params;  /* names, shapes and slots, in state_dict order */
    float *block;       /* every parameter, one allocation (NULL when mapped) */
    size_t block_floats;
    struct st_file *mapped; /* the loaded file, when the parameters point into it */

    /* Typed views into `block`; which ones are used depends on cfg.module. */
    mha_config mha;
    mha_params mha_p;
    layer_config layer;
    encoder_layer_params enc_layer_p;
    decoder_layer_params dec_layer_p;
    stack_config stack;
    encoder_params enc_p;
    decoder_params dec_p;
    transformer_config tr;
    transformer_params tr_p;
    encoder_layer_params *enc_layers; /* owned arrays of per-layer views */
    decoder_layer_params *dec_layers;

    tfm_ws ws;
    float *out_buf;   /* output handed back, grown only when a larger one is needed */
    size_t out_cap;
    float *attn_buf;  /* attention weights handed back */
    size_t attn_cap;
};

/* Build the parameter list for cfg; with `with_block`, also the parameter block
 * (parameters uninitialised) and the slots pointing into it. */
tfm_status module_alloc(const tfm_config *cfg, bool with_block, tfm_module **out);

#endif
