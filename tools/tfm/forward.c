/* forward.c — `tfm forward --model M --input IN --output OUT`.
 *
 * IN holds tensors named as the module's forward() arguments and, in __metadata__,
 * the flags need_weights, average_attn_weights, is_causal, src_is_causal,
 * tgt_is_causal, memory_is_causal ("true"/"false"). OUT gets `output`, and
 * `attn_weights` when need_weights is true. On any error: one line on stderr, exit 1,
 * and no OUT file.
 */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "io/config_meta.h"
#include "io/safetensors.h"
#include "tfm.h"

typedef struct input_slot {
    const char *name;
    size_t offset; /* of the tfm_tensor in tfm_inputs */
    bool mask;     /* BOOL or F32; otherwise float data */
} input_slot;

#define SLOT(field, is_mask) {#field, offsetof(tfm_inputs, field), is_mask}
static const input_slot mha_inputs[] = {SLOT(query, false), SLOT(key, false), SLOT(value, false),
                                        SLOT(key_padding_mask, true), SLOT(attn_mask, true)};
static const input_slot enc_layer_inputs[] = {SLOT(src, false), SLOT(src_mask, true),
                                              SLOT(src_key_padding_mask, true)};
static const input_slot enc_inputs[] = {SLOT(src, false), SLOT(mask, true),
                                        SLOT(src_key_padding_mask, true)};
static const input_slot dec_inputs[] = {SLOT(tgt, false), SLOT(memory, false),
                                        SLOT(tgt_mask, true), SLOT(memory_mask, true),
                                        SLOT(tgt_key_padding_mask, true),
                                        SLOT(memory_key_padding_mask, true)};
static const input_slot tr_inputs[] = {SLOT(src, false), SLOT(tgt, false), SLOT(src_mask, true),
                                       SLOT(tgt_mask, true), SLOT(memory_mask, true),
                                       SLOT(src_key_padding_mask, true),
                                       SLOT(tgt_key_padding_mask, true),
                                       SLOT(memory_key_padding_mask, true)};
#undef SLOT

static const input_slot *slots_for(tfm_module_kind kind, size_t *n) {
#define RET(a) return (*n = sizeof a / sizeof *a), a
    switch (kind) {
    case TFM_MULTIHEAD_ATTENTION: RET(mha_inputs);
    case TFM_TRANSFORMER_ENCODER_LAYER: RET(enc_layer_inputs);
    case TFM_TRANSFORMER_ENCODER: RET(enc_inputs);
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER: RET(dec_inputs);
    case TFM_TRANSFORMER: RET(tr_inputs);
    }
#undef RET
    *n = 0;
    return NULL;
}

static const struct {
    const char *name;
    size_t offset;
} flags[] = {
    {"need_weights", offsetof(tfm_inputs, need_weights)},
    {"average_attn_weights", offsetof(tfm_inputs, average_attn_weights)},
    {"is_causal", offsetof(tfm_inputs, is_causal)},
    {"src_is_causal", offsetof(tfm_inputs, src_is_causal)},
    {"tgt_is_causal", offsetof(tfm_inputs, tgt_is_causal)},
    {"memory_is_causal", offsetof(tfm_inputs, memory_is_causal)},
};

/* Buffers made for the inputs; freed at the end. */
typedef struct owned {
    void *ptr[16];
    int n;
} owned;

static void owned_free(owned *o) {
    for (int i = 0; i < o->n; i++) free(o->ptr[i]);
    o->n = 0;
}

/* One tensor of IN into its tfm_inputs slot: floats converted to aligned F32 copies,
 * BOOL masks copied as bytes. */
static int take_tensor(const st_file *f, const st_tensor *t, const input_slot *s, tfm_inputs *in,
                       owned *own) {
    tfm_tensor *dst = (tfm_tensor *)((char *)in + s->offset);
    const char *file = st_label(f);
    if (t->ndim > TFM_MAX_DIMS)
        return cli_fail("forward", "%s: input '%s' has %d dimensions (at most %d)", file, t->name,
                        t->ndim, TFM_MAX_DIMS);
    bool is_bool = t->dtype == ST_BOOL;
    bool is_float = t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 || t->dtype == ST_BF16;
    if (!is_float && !(is_bool && s->mask))
        return cli_fail("forward", "%s: input '%s' has dtype %s; expected %s", file, t->name,
                        st_dtype_name(t->dtype), s->mask ? "BOOL or F32" : "F32");
    size_t bytes = (size_t)t->numel * (is_bool ? 1 : sizeof(float));
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) return cli_fail("forward", "%s: out of memory for input '%s'", file, t->name);
    own->ptr[own->n++] = buf;
    if (is_bool)
        memcpy(buf, t->data, bytes);
    else if (st_read_f32(f, t, buf) != TFM_OK)
        return cli_fail("forward", "%s", tfm_last_error());
    *dst = (tfm_tensor){.data = buf, .dtype = is_bool ? TFM_BOOL : TFM_F32, .ndim = t->ndim};
    for (int d = 0; d < t->ndim; d++) dst->shape[d] = t->shape[d];
    return 0;
}

static int read_inputs(const st_file *f, tfm_module_kind kind, tfm_inputs *in, owned *own) {
    size_t nslots;
    const input_slot *slots = slots_for(kind, &nslots);
    tfm_inputs_init(in);
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        const input_slot *s = NULL;
        for (size_t j = 0; j < nslots; j++)
            if (!strcmp(slots[j].name, t->name)) s = &slots[j];
        if (!s) {
            char names[256] = "";
            for (size_t j = 0; j < nslots; j++) {
                strncat(names, slots[j].name, sizeof names - strlen(names) - 1);
                if (j + 1 < nslots) strncat(names, ", ", sizeof names - strlen(names) - 1);
            }
            return cli_fail("forward", "%s: unexpected input tensor '%s' for %s (it takes %s)",
                            st_label(f), t->name, tfm_module_name(kind), names);
        }
        if (take_tensor(f, t, s, in, own)) return 1;
    }
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        const char *v = st_meta(f, flags[i].name);
        if (v && meta_parse_bool(flags[i].name, v, (bool *)((char *)in + flags[i].offset)) != TFM_OK)
            return cli_fail("forward", "%s: %s", st_label(f), tfm_last_error());
    }
    return 0;
}

static int write_outputs(const char *path, const tfm_outputs *o) {
    st_writer *w;
    if (st_writer_new(&w) != TFM_OK) return cli_fail("forward", "%s", tfm_last_error());
    tfm_status st = st_writer_meta(w, "producer", "tfm");
    if (st == TFM_OK)
        st = st_writer_add(w, "output", ST_F32, o->output.ndim, o->output.shape, o->output.data);
    if (st == TFM_OK && o->attn_weights.data)
        st = st_writer_add(w, "attn_weights", ST_F32, o->attn_weights.ndim, o->attn_weights.shape,
                           o->attn_weights.data);
    if (st == TFM_OK) st = st_writer_write(w, path);
    st_writer_free(w);
    return st == TFM_OK ? 0 : cli_fail("forward", "%s", tfm_last_error());
}

int cmd_forward(int argc, char **argv) {
    const char *model = NULL, *input = NULL, *output = NULL;
    for (int i = 1; i < argc; i++) {
        const char **dst = !strcmp(argv[i], "--model")    ? &model
                           : !strcmp(argv[i], "--input")  ? &input
                           : !strcmp(argv[i], "--output") ? &output
                                                          : NULL;
        if (!dst) return cli_fail("forward", "unknown option '%s'", argv[i]);
        if (i + 1 >= argc) return cli_fail("forward", "option '%s' needs a value", argv[i]);
        *dst = argv[++i];
    }
    if (!model || !input || !output)
        return cli_fail("forward", "usage: tfm forward --model M.safetensors --input IN.safetensors "
                                   "--output OUT.safetensors");
    /* A stale OUT must not pass for this run's result. */
    if (unlink(output) != 0 && access(output, F_OK) == 0)
        return cli_fail("forward", "%s: cannot replace the existing output file", output);

    tfm_module *m = NULL;
    st_file *f = NULL;
    owned own = {0};
    tfm_inputs in;
    tfm_outputs out;
    int rc = 1;
    if (tfm_module_load(model, &m) != TFM_OK) {
        cli_fail("forward", "%s", tfm_last_error());
        goto done;
    }
    if (st_open(input, &f) != TFM_OK) {
        cli_fail("forward", "%s", tfm_last_error());
        goto done;
    }
    if (read_inputs(f, tfm_module_config(m)->module, &in, &own)) goto done;
    if (tfm_forward(m, &in, &out) != TFM_OK) {
        cli_fail("forward", "%s: %s", input, tfm_last_error());
        goto done;
    }
    rc = write_outputs(output, &out);
done:
    owned_free(&own);
    st_close(f);
    tfm_module_free(m);
    return rc;
}
