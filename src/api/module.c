/* module.c — creating, loading, saving and freeing modules. */
#include "api/module.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/config_meta.h"
#include "io/safetensors.h"

static layer_config layer_from(const tfm_config *c) {
    return (layer_config){.d_model = c->d_model, .nhead = c->nhead,
                          .dim_feedforward = c->dim_feedforward, .activation = c->activation,
                          .layer_norm_eps = (float)c->layer_norm_eps,
                          .norm_first = c->norm_first, .bias = c->bias};
}

/* Fill the configs of the typed views (once per module). */
static void configure(tfm_module *m) {
    const tfm_config *c = &m->cfg;
    m->layer = layer_from(c);
    m->mha = (mha_config){.embed_dim = c->embed_dim, .num_heads = c->num_heads,
                          .kdim = c->kdim ? c->kdim : c->embed_dim,
                          .vdim = c->vdim ? c->vdim : c->embed_dim, .bias = c->bias,
                          .add_bias_kv = c->add_bias_kv, .add_zero_attn = c->add_zero_attn};
    m->stack = (stack_config){.layer = m->layer, .num_layers = c->num_layers, .norm = c->norm};
    m->tr.encoder = (stack_config){m->layer, c->num_encoder_layers, true};
    m->tr.decoder = (stack_config){m->layer, c->num_decoder_layers, true};
}

/* Describe every parameter of m's kind into list l, with slots in the views v (used
 * for the parameters and, again, for the gradients). */
static tfm_status describe(const tfm_module *m, module_views *v, param_list *l) {
    const tfm_config *c = &m->cfg;
    int64_t ne = c->module == TFM_TRANSFORMER ? c->num_encoder_layers : c->num_layers;
    int64_t nd = c->module == TFM_TRANSFORMER ? c->num_decoder_layers : c->num_layers;
    switch (c->module) {
    case TFM_MULTIHEAD_ATTENTION:
        TFM_TRY(mha_check_config(&m->mha));
        mha_describe(&m->mha, &v->mha, "", l);
        break;
    case TFM_TRANSFORMER_ENCODER_LAYER:
        encoder_layer_describe(&m->layer, &v->enc_layer, "", l);
        break;
    case TFM_TRANSFORMER_DECODER_LAYER:
        decoder_layer_describe(&m->layer, &v->dec_layer, "", l);
        break;
    case TFM_TRANSFORMER_ENCODER:
    case TFM_TRANSFORMER_DECODER:
    case TFM_TRANSFORMER:
        v->enc_layers = calloc((size_t)ne + 1, sizeof *v->enc_layers);
        v->dec_layers = calloc((size_t)nd + 1, sizeof *v->dec_layers);
        if (!v->enc_layers || !v->dec_layers) return tfm_error(TFM_ERR_NOMEM, "out of memory");
        v->enc.layers = v->tr.encoder.layers = v->enc_layers;
        v->dec.layers = v->tr.decoder.layers = v->dec_layers;
        if (c->module == TFM_TRANSFORMER_ENCODER)
            encoder_describe(&m->stack, &v->enc, "", l);
        else if (c->module == TFM_TRANSFORMER_DECODER)
            decoder_describe(&m->stack, &v->dec, "", l);
        else
            transformer_describe(&m->tr, &v->tr, "", l);
        break;
    }
    if (l->failed) return tfm_error(TFM_ERR_NOMEM, "out of memory building the parameter list");
    return TFM_OK;
}

static void views_free(module_views *v) {
    free(v->enc_layers);
    free(v->dec_layers);
    v->enc_layers = NULL, v->dec_layers = NULL;
}

tfm_status module_alloc(const tfm_config *cfg, bool with_block, tfm_module **out) {
    *out = NULL;
    TFM_TRY(config_check(cfg));
    tfm_module *m = calloc(1, sizeof *m);
    if (!m) return tfm_error(TFM_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    param_list_init(&m->params);
    param_list_init(&m->grads);
    ws_init(&m->ws);
    ws_init(&m->act);
    configure(m);
    tfm_status st = describe(m, &m->pv, &m->params);
    if (st == TFM_OK) st = param_list_total(&m->params, &m->block_floats);
    if (st == TFM_OK && with_block) {
        m->block = malloc((m->block_floats ? m->block_floats : 1) * sizeof(float));
        if (!m->block)
            st = tfm_error(TFM_ERR_NOMEM, "cannot allocate %zu parameters", m->block_floats);
    }
    if (st != TFM_OK) {
        tfm_module_free(m);
        return st;
    }
    if (with_block) param_list_bind(&m->params, m->block);
    *out = m;
    return TFM_OK;
}

void tfm_module_free(tfm_module *m) {
    if (!m) return;
    param_list_free(&m->params);
    param_list_free(&m->grads);
    bf16_weights_free(&m->bf16w);
    views_free(&m->pv);
    views_free(&m->gv);
    free(m->block);
    free(m->grad_block);
    st_close(m->mapped);
    ws_free(&m->ws);
    ws_free(&m->act);
    free(m->out_buf);
    free(m->attn_buf);
    for (int i = 0; i < 3; i++) free(m->grad_buf[i]);
    free(m);
}

tfm_status tfm_module_create(const tfm_config *cfg, uint64_t seed, tfm_module **out) {
    if (!cfg || !out) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_create: NULL argument");
    TFM_TRY(module_alloc(cfg, true, out));
    param_list_init_values(&(*out)->params, seed, cfg->module == TFM_TRANSFORMER);
    return TFM_OK;
}

static bool is_float_dtype(st_dtype d) {
    return d == ST_F32 || d == ST_F64 || d == ST_F16 || d == ST_BF16;
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Every parameter is in the file with a float dtype and the config's shape, and the
 * file holds nothing else. Sets *mappable when every one is F32 and float-aligned in
 * the mapping, so the module can use the file's memory as its parameters. */
static tfm_status check_params(const tfm_module *m, const st_file *f, bool *mappable) {
    char want[96], got[96];
    *mappable = true;
    for (size_t i = 0; i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        const st_tensor *t = st_find(f, e->name);
        shape_str(want, sizeof want, e->ndim, e->shape);
        if (!t)
            return tfm_error(TFM_ERR_MISSING, "missing tensor '%s' (%s %s)", e->name,
                             tfm_module_name(m->cfg.module), want);
        if (!is_float_dtype(t->dtype))
            return tfm_error(TFM_ERR_FORMAT, "tensor '%s' has dtype %s; expected F32 (or F64/F16/BF16)",
                             e->name, st_dtype_name(t->dtype));
        bool same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
        if (!same) {
            shape_str(got, sizeof got, t->ndim, t->shape);
            return tfm_error(TFM_ERR_SHAPE, "tensor '%s' has shape %s; the config needs %s",
                             e->name, got, want);
        }
        if (t->dtype != ST_F32 || (uintptr_t)t->data % _Alignof(float) != 0) *mappable = false;
    }
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        if (!param_list_find(&m->params, t->name))
            return tfm_error(TFM_ERR_UNEXPECTED, "unexpected tensor '%s': %s with this config has no such parameter",
                             t->name, tfm_module_name(m->cfg.module));
    }
    return TFM_OK;
}

/* Converted copies of the checked file's parameters in the module's own block. */
static tfm_status copy_params(tfm_module *m, const st_file *f) {
    m->block = malloc((m->block_floats ? m->block_floats : 1) * sizeof(float));
    if (!m->block) return tfm_error(TFM_ERR_NOMEM, "cannot allocate %zu parameters", m->block_floats);
    param_list_bind(&m->params, m->block);
    for (size_t i = 0; i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        TFM_TRY(st_read_f32(f, st_find(f, e->name), *e->slot));
    }
    return TFM_OK;
}

/* The config from f's metadata, the module without its parameter block, and the
 * check of f's tensors against it. */
static tfm_status alloc_checked(const st_file *f, tfm_module **out, bool *mappable) {
    tfm_config cfg;
    *out = NULL;
    TFM_TRY(config_from_meta(f, &cfg));
    TFM_TRY(module_alloc(&cfg, false, out));
    tfm_status st = check_params(*out, f, mappable);
    if (st != TFM_OK) {
        tfm_module_free(*out);
        *out = NULL;
    }
    return st;
}

tfm_status module_load_file(const st_file *f, tfm_module **out) {
    if (!f || !out) return tfm_error(TFM_ERR_INVALID_ARG, "module_load_file: NULL argument");
    *out = NULL;
    bool mappable;
    tfm_module *m = NULL;
    tfm_status st = alloc_checked(f, &m, &mappable);
    if (st == TFM_OK) st = copy_params(m, f);
    if (st != TFM_OK) {
        tfm_module_free(m);
        return tfm_error_context(st, "%s", st_label(f));
    }
    *out = m;
    return TFM_OK;
}

tfm_status tfm_module_load(const char *path, tfm_module **out) {
    if (!path || !out) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_load: NULL argument");
    *out = NULL;
    st_file *f;
    TFM_TRY(st_open(path, &f));
    tfm_module *m = NULL;
    bool mappable = false;
    tfm_status st = alloc_checked(f, &m, &mappable);
    if (st == TFM_OK && mappable) {
        /* pointers into the file's (copy-on-write) mapping; the module owns f now */
        for (size_t i = 0; i < m->params.count; i++) {
            const param_entry *e = &m->params.items[i];
            *e->slot = (float *)st_find(f, e->name)->data;
        }
        m->mapped = f;
        f = NULL;
    } else if (st == TFM_OK) {
        st = copy_params(m, f);
    }
    st_close(f);
    if (st != TFM_OK) {
        tfm_module_free(m);
        return tfm_error_context(st, "%s", path);
    }
    *out = m;
    return TFM_OK;
}

tfm_status tfm_module_save(const tfm_module *m, const char *path) {
    if (!m || !path) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_save: NULL argument");
    st_writer *w;
    TFM_TRY(st_writer_new(&w));
    tfm_status st = config_to_meta(&m->cfg, w);
    if (st == TFM_OK) st = st_writer_meta(w, "producer", "tfm");
    for (size_t i = 0; st == TFM_OK && i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        st = st_writer_add(w, e->name, ST_F32, e->ndim, e->shape, *e->slot);
    }
    if (st == TFM_OK) st = st_writer_write(w, path);
    st_writer_free(w);
    return st;
}

tfm_status module_alloc_grads(tfm_module *m) {
    if (m->grad_block) return TFM_OK;
    TFM_TRY(describe(m, &m->gv, &m->grads));
    m->grad_block = calloc(m->block_floats ? m->block_floats : 1, sizeof(float));
    if (!m->grad_block) return tfm_error(TFM_ERR_NOMEM, "cannot allocate %zu gradients", m->block_floats);
    param_list_bind(&m->grads, m->grad_block);
    return TFM_OK;
}

tfm_status module_buffer(float **buf, size_t *cap, size_t n) {
    if (n <= *cap && *buf) return TFM_OK;
    float *p = realloc(*buf, (n ? n : 1) * sizeof(float));
    if (!p) return tfm_error(TFM_ERR_NOMEM, "cannot allocate %zu floats", n);
    *buf = p;
    *cap = n;
    return TFM_OK;
}

void tfm_zero_grad(tfm_module *m) {
    if (m && m->grad_block) memset(m->grad_block, 0, m->block_floats * sizeof(float));
}

tfm_status tfm_module_grad(const tfm_module *m, size_t i, const char **name, tfm_tensor *view) {
    if (!m || i >= m->params.count)
        return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_grad: index %zu out of range", i);
    if (!m->grad_block)
        return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_grad: no gradients before tfm_forward_train");
    const param_entry *e = &m->grads.items[i];
    if (name) *name = m->params.items[i].name;
    if (view) {
        *view = (tfm_tensor){.data = *e->slot, .dtype = TFM_F32, .ndim = e->ndim};
        for (int d = 0; d < e->ndim; d++) view->shape[d] = e->shape[d];
    }
    return TFM_OK;
}

void tfm_module_train(tfm_module *m, bool training, uint64_t seed) {
    if (!m) return;
    m->training = training;
    m->seed = seed;
    m->calls = 0;
}

const tfm_config *tfm_module_config(const tfm_module *m) { return m ? &m->cfg : NULL; }

size_t tfm_module_num_params(const tfm_module *m) { return m ? m->params.count : 0; }

tfm_status tfm_module_param(const tfm_module *m, size_t i, const char **name, tfm_tensor *view) {
    if (!m || i >= m->params.count)
        return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_param: index %zu out of range", i);
    const param_entry *e = &m->params.items[i];
    if (name) *name = e->name;
    if (view) {
        /* A writable view: the bf16 copy may go stale (tfm.h, "compute type"). Every
         * module is created non-const, so the cast is sound. */
        ((tfm_module *)m)->bf16w.stale = true;
        *view = (tfm_tensor){.data = *e->slot, .dtype = TFM_F32, .ndim = e->ndim};
        for (int d = 0; d < e->ndim; d++) view->shape[d] = e->shape[d];
    }
    return TFM_OK;
}
