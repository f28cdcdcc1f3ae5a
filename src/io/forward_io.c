/* forward_io.c — reading `tfm forward` input files and writing its output files. */
#include "io/forward_io.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/config_meta.h"

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

const char *forward_input_names(tfm_module_kind kind) {
    switch (kind) {
    case TFM_MULTIHEAD_ATTENTION: return "query, key, value, key_padding_mask, attn_mask";
    case TFM_TRANSFORMER_ENCODER_LAYER: return "src, src_mask, src_key_padding_mask";
    case TFM_TRANSFORMER_ENCODER: return "src, mask, src_key_padding_mask";
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER:
        return "tgt, memory, tgt_mask, memory_mask, tgt_key_padding_mask, memory_key_padding_mask";
    case TFM_TRANSFORMER:
        return "src, tgt, src_mask, tgt_mask, memory_mask, src_key_padding_mask, "
               "tgt_key_padding_mask, memory_key_padding_mask";
    }
    return "";
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

/* Self-attention exported from PyTorch stores query, key and value as three equal
 * tensors: an F32 input equal to one taken before shares its buffer, so that the
 * module sees one tensor (one copy in memory, one fused projection). True if shared. */
static bool share_equal(const st_file *f, const st_tensor *t, tfm_tensor *dst,
                        const forward_inputs *fi) {
    static const size_t slots[] = {offsetof(tfm_inputs, query), offsetof(tfm_inputs, key),
                                   offsetof(tfm_inputs, src), offsetof(tfm_inputs, tgt),
                                   offsetof(tfm_inputs, memory)};
    for (size_t i = 0; i < sizeof slots / sizeof *slots; i++) {
        const tfm_tensor *o = (const tfm_tensor *)((const char *)&fi->in + slots[i]);
        if (!o->data || o == dst || o->dtype != TFM_F32 || o->ndim != t->ndim) continue;
        bool same_shape = true;
        for (int d = 0; d < t->ndim; d++) same_shape &= o->shape[d] == t->shape[d];
        if (same_shape && memcmp(o->data, t->data, (size_t)t->numel * sizeof(float)) == 0) {
            *dst = *o;
            return true;
        }
    }
    return false;
}

static tfm_status take_tensor(const st_file *f, const st_tensor *t, const input_slot *s,
                              forward_inputs *fi) {
    tfm_tensor *dst = (tfm_tensor *)((char *)&fi->in + s->offset);
    const char *file = st_label(f);
    if (t->ndim > TFM_MAX_DIMS)
        return tfm_error(TFM_ERR_SHAPE, "%s: input '%s' has %d dimensions (at most %d)", file,
                         t->name, t->ndim, TFM_MAX_DIMS);
    bool is_bool = t->dtype == ST_BOOL;
    bool is_float = t->dtype == ST_F32 || t->dtype == ST_F64 || t->dtype == ST_F16 ||
                    t->dtype == ST_BF16;
    if (!is_float && !(is_bool && s->mask))
        return tfm_error(TFM_ERR_FORMAT, "%s: input '%s' has dtype %s; expected %s", file,
                         t->name, st_dtype_name(t->dtype), s->mask ? "BOOL or F32" : "F32");
    if (fi->nbuf >= FORWARD_MAX_INPUTS)
        return tfm_error(TFM_ERR_FORMAT, "%s: too many inputs", file);
    if (t->dtype == ST_F32 && share_equal(f, t, dst, fi)) return TFM_OK;
    size_t bytes = (size_t)t->numel * (is_bool ? 1 : sizeof(float));
    void *buf = malloc(bytes ? bytes : 1);
    if (!buf) return tfm_error(TFM_ERR_NOMEM, "%s: out of memory for input '%s'", file, t->name);
    fi->buffers[fi->nbuf++] = buf;
    if (is_bool)
        memcpy(buf, t->data, bytes);
    else
        TFM_TRY(st_read_f32(f, t, buf));
    *dst = (tfm_tensor){.data = buf, .dtype = is_bool ? TFM_BOOL : TFM_F32, .ndim = t->ndim};
    for (int d = 0; d < t->ndim; d++) dst->shape[d] = t->shape[d];
    return TFM_OK;
}

tfm_status forward_inputs_read(const st_file *f, tfm_module_kind kind, forward_inputs *fi) {
    size_t nslots;
    const input_slot *slots = slots_for(kind, &nslots);
    memset(fi, 0, sizeof *fi);
    tfm_inputs_init(&fi->in);
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        const input_slot *s = NULL;
        for (size_t j = 0; j < nslots; j++)
            if (!strcmp(slots[j].name, t->name)) s = &slots[j];
        if (!s)
            return tfm_error(TFM_ERR_UNEXPECTED, "%s: unexpected input tensor '%s' for %s (it takes %s)",
                             st_label(f), t->name, tfm_module_name(kind), forward_input_names(kind));
        TFM_TRY(take_tensor(f, t, s, fi));
    }
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        const char *v = st_meta(f, flags[i].name);
        if (v && meta_parse_bool(flags[i].name, v, (bool *)((char *)&fi->in + flags[i].offset)))
            return tfm_error_context(TFM_ERR_FORMAT, "%s", st_label(f));
    }
    return TFM_OK;
}

void forward_inputs_free(forward_inputs *fi) {
    for (int i = 0; i < fi->nbuf; i++) free(fi->buffers[i]);
    fi->nbuf = 0;
}

static tfm_status add_tensor(st_writer *w, const char *name, const tfm_tensor *t) {
    if (!t->data) return TFM_OK;
    return st_writer_add(w, name, ST_F32, t->ndim, t->shape, t->data);
}

/* The input gradients in a fixed order, under their forward() names. */
static tfm_status add_grads(st_writer *w, const tfm_input_grads *g, const tfm_module *m) {
    const struct {
        const char *name;
        const tfm_tensor *t;
    } inputs[] = {{"grad.query", &g->query}, {"grad.key", &g->key}, {"grad.value", &g->value},
                  {"grad.src", &g->src},     {"grad.tgt", &g->tgt}, {"grad.memory", &g->memory}};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
        TFM_TRY(add_tensor(w, inputs[i].name, inputs[i].t));
    char name[256];
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *pname;
        tfm_tensor t;
        TFM_TRY(tfm_module_grad(m, i, &pname, &t));
        snprintf(name, sizeof name, "grad.%s", pname);
        TFM_TRY(add_tensor(w, name, &t));
    }
    return TFM_OK;
}

tfm_status forward_outputs_write(const char *path, const tfm_outputs *o,
                                 const tfm_input_grads *grads, const tfm_module *m) {
    st_writer *w;
    TFM_TRY(st_writer_new(&w));
    tfm_status st = st_writer_meta(w, "producer", "tfm");
    if (st == TFM_OK) st = add_tensor(w, "output", &o->output);
    if (st == TFM_OK) st = add_tensor(w, "attn_weights", &o->attn_weights);
    if (st == TFM_OK && grads) st = add_grads(w, grads, m);
    if (st == TFM_OK) st = st_writer_write(w, path);
    st_writer_free(w);
    return st;
}
