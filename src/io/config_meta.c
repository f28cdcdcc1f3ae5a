/* config_meta.c — tfm_config <-> __metadata__ strings; defaults as PyTorch's. */
#include "io/config_meta.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

/* Sizes beyond this are refused: no real model has them, and products stay far
 * from overflow. */
#define MAX_DIM ((int64_t)1 << 24)
#define MAX_LAYERS 4096

static const char *const module_names[] = {
    "MultiheadAttention",      "TransformerEncoderLayer", "TransformerEncoder",
    "TransformerDecoderLayer", "TransformerDecoder",      "Transformer",
};

const char *tfm_module_name(tfm_module_kind kind) {
    if ((unsigned)kind >= sizeof module_names / sizeof *module_names) return "unknown";
    return module_names[kind];
}

tfm_status tfm_module_kind_from_name(const char *name, tfm_module_kind *out) {
    for (size_t i = 0; i < sizeof module_names / sizeof *module_names; i++)
        if (name && strcmp(name, module_names[i]) == 0) {
            *out = (tfm_module_kind)i;
            return TFM_OK;
        }
    return tfm_error(TFM_ERR_UNSUPPORTED,
                     "unknown module '%s' (expected MultiheadAttention, TransformerEncoderLayer, "
                     "TransformerEncoder, TransformerDecoderLayer, TransformerDecoder or Transformer)",
                     name ? name : "(none)");
}

void tfm_config_default(tfm_config *c, tfm_module_kind kind) {
    /* nn.Transformer's defaults for the layer arguments; MultiheadAttention has no
     * defaults for embed_dim and num_heads, so these are only placeholders. */
    *c = (tfm_config){
        .module = kind, .embed_dim = 512, .num_heads = 8, .kdim = 0, .vdim = 0,
        .d_model = 512, .nhead = 8, .dim_feedforward = 2048, .activation = TFM_RELU,
        .layer_norm_eps = 1e-5, .norm_first = false, .num_layers = 6, .norm = false,
        .num_encoder_layers = 6, .num_decoder_layers = 6, .bias = true, .batch_first = false,
        .dropout = kind == TFM_MULTIHEAD_ATTENTION ? 0.0 : 0.1,
    };
}

tfm_status meta_parse_bool(const char *key, const char *v, bool *out) {
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "1")) {
        *out = true;
        return TFM_OK;
    }
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "0")) {
        *out = false;
        return TFM_OK;
    }
    return tfm_error(TFM_ERR_FORMAT, "metadata '%s': expected \"true\" or \"false\", got \"%.40s\"",
                     key, v);
}

static tfm_status parse_int(const char *key, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end != '\0')
        return tfm_error(TFM_ERR_FORMAT, "metadata '%s': expected an integer, got \"%.40s\"", key, v);
    if (x < lo || x > hi)
        return tfm_error(TFM_ERR_INVALID_ARG, "metadata '%s': %lld is out of range [%lld, %lld]",
                         key, x, (long long)lo, (long long)hi);
    *out = x;
    return TFM_OK;
}

/* Each reader leaves *out as it is (the default) when the key is absent. */
static tfm_status get_int(const st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *v = st_meta(f, key);
    return v ? parse_int(key, v, lo, hi, out) : TFM_OK;
}

static tfm_status get_bool(const st_file *f, const char *key, bool *out) {
    const char *v = st_meta(f, key);
    return v ? meta_parse_bool(key, v, out) : TFM_OK;
}

/* kdim / vdim: an integer, or "None" (PyTorch's default, meaning embed_dim). */
static tfm_status get_opt_dim(const st_file *f, const char *key, int64_t *out) {
    const char *v = st_meta(f, key);
    if (!v || !strcmp(v, "None") || !strcmp(v, "null")) return TFM_OK;
    return parse_int(key, v, 1, MAX_DIM, out);
}

/* A probability in [0, 1). */
static tfm_status get_dropout(const st_file *f, tfm_config *c) {
    const char *v = st_meta(f, "dropout");
    if (!v) return TFM_OK;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !(x >= 0.0 && x < 1.0))
        return tfm_error(TFM_ERR_FORMAT, "metadata 'dropout': expected a number in [0, 1), got \"%.40s\"", v);
    c->dropout = x;
    return TFM_OK;
}

static tfm_status get_layer_args(const st_file *f, tfm_config *c) {
    TFM_TRY(get_dropout(f, c));
    TFM_TRY(get_int(f, "d_model", 1, MAX_DIM, &c->d_model));
    TFM_TRY(get_int(f, "nhead", 1, MAX_DIM, &c->nhead));
    TFM_TRY(get_int(f, "dim_feedforward", 1, MAX_DIM, &c->dim_feedforward));
    const char *act = st_meta(f, "activation");
    if (act) {
        if (!strcmp(act, "relu"))
            c->activation = TFM_RELU;
        else if (!strcmp(act, "gelu"))
            c->activation = TFM_GELU;
        else
            return tfm_error(TFM_ERR_UNSUPPORTED,
                             "metadata 'activation': \"%.40s\" is not supported (relu or gelu)", act);
    }
    const char *eps = st_meta(f, "layer_norm_eps");
    if (eps) {
        char *end;
        errno = 0;
        double x = strtod(eps, &end);
        if (errno || end == eps || *end != '\0' || !isfinite(x) || x < 0.0)
            return tfm_error(TFM_ERR_FORMAT,
                             "metadata 'layer_norm_eps': expected a non-negative number, got \"%.40s\"",
                             eps);
        c->layer_norm_eps = x;
    }
    TFM_TRY(get_bool(f, "norm_first", &c->norm_first));
    TFM_TRY(get_bool(f, "bias", &c->bias));
    return get_bool(f, "batch_first", &c->batch_first);
}

tfm_status config_from_meta(const st_file *f, tfm_config *c) {
    const char *name = st_meta(f, "module");
    if (!name)
        return tfm_error(TFM_ERR_FORMAT,
                         "no \"module\" in __metadata__: not a tfm/PyTorch module file");
    tfm_module_kind kind = TFM_MULTIHEAD_ATTENTION;
    TFM_TRY(tfm_module_kind_from_name(name, &kind));
    tfm_config_default(c, kind);
    switch (kind) {
    case TFM_MULTIHEAD_ATTENTION:
        if (!st_meta(f, "embed_dim") || !st_meta(f, "num_heads"))
            return tfm_error(TFM_ERR_FORMAT,
                             "MultiheadAttention needs \"embed_dim\" and \"num_heads\" in __metadata__");
        TFM_TRY(get_int(f, "embed_dim", 1, MAX_DIM, &c->embed_dim));
        TFM_TRY(get_int(f, "num_heads", 1, MAX_DIM, &c->num_heads));
        TFM_TRY(get_opt_dim(f, "kdim", &c->kdim));
        TFM_TRY(get_opt_dim(f, "vdim", &c->vdim));
        TFM_TRY(get_bool(f, "bias", &c->bias));
        TFM_TRY(get_bool(f, "add_bias_kv", &c->add_bias_kv));
        TFM_TRY(get_bool(f, "add_zero_attn", &c->add_zero_attn));
        TFM_TRY(get_bool(f, "batch_first", &c->batch_first));
        TFM_TRY(get_dropout(f, c));
        break;
    case TFM_TRANSFORMER_ENCODER:
    case TFM_TRANSFORMER_DECODER:
        TFM_TRY(get_layer_args(f, c));
        TFM_TRY(get_int(f, "num_layers", 1, MAX_LAYERS, &c->num_layers));
        TFM_TRY(get_bool(f, "norm", &c->norm));
        break;
    case TFM_TRANSFORMER:
        TFM_TRY(get_layer_args(f, c));
        TFM_TRY(get_int(f, "num_encoder_layers", 0, MAX_LAYERS, &c->num_encoder_layers));
        TFM_TRY(get_int(f, "num_decoder_layers", 0, MAX_LAYERS, &c->num_decoder_layers));
        break;
    default:
        TFM_TRY(get_layer_args(f, c));
        break;
    }
    return config_check(c);
}

tfm_status config_check(const tfm_config *c) {
    if ((unsigned)c->module > TFM_TRANSFORMER)
        return tfm_error(TFM_ERR_INVALID_ARG, "unknown module kind %d", (int)c->module);
    if (!(c->dropout >= 0.0 && c->dropout < 1.0))
        return tfm_error(TFM_ERR_INVALID_ARG, "dropout (%g) must be in [0, 1)", c->dropout);
    if (c->module == TFM_MULTIHEAD_ATTENTION) {
        if (c->embed_dim <= 0 || c->num_heads <= 0 || c->embed_dim > MAX_DIM)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "MultiheadAttention: embed_dim (%lld) and num_heads (%lld) must be > 0",
                             (long long)c->embed_dim, (long long)c->num_heads);
        if (c->embed_dim % c->num_heads)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "MultiheadAttention: embed_dim (%lld) must be divisible by num_heads (%lld)",
                             (long long)c->embed_dim, (long long)c->num_heads);
        if (c->kdim < 0 || c->vdim < 0 || c->kdim > MAX_DIM || c->vdim > MAX_DIM)
            return tfm_error(TFM_ERR_INVALID_ARG, "MultiheadAttention: kdim and vdim must be > 0");
        return TFM_OK;
    }
    if (c->d_model <= 0 || c->nhead <= 0 || c->dim_feedforward <= 0 || c->d_model > MAX_DIM ||
        c->dim_feedforward > MAX_DIM)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "%s: d_model (%lld), nhead (%lld) and dim_feedforward (%lld) must be > 0",
                         tfm_module_name(c->module), (long long)c->d_model, (long long)c->nhead,
                         (long long)c->dim_feedforward);
    if (c->d_model % c->nhead)
        return tfm_error(TFM_ERR_INVALID_ARG, "%s: d_model (%lld) must be divisible by nhead (%lld)",
                         tfm_module_name(c->module), (long long)c->d_model, (long long)c->nhead);
    if (c->activation != TFM_RELU && c->activation != TFM_GELU)
        return tfm_error(TFM_ERR_INVALID_ARG, "activation must be relu or gelu");
    if (!(c->layer_norm_eps >= 0.0) || !isfinite(c->layer_norm_eps))
        return tfm_error(TFM_ERR_INVALID_ARG, "layer_norm_eps must be a non-negative number");
    if ((c->module == TFM_TRANSFORMER_ENCODER || c->module == TFM_TRANSFORMER_DECODER) &&
        (c->num_layers < 1 || c->num_layers > MAX_LAYERS))
        return tfm_error(TFM_ERR_INVALID_ARG, "num_layers (%lld) must be in [1, %d]",
                         (long long)c->num_layers, MAX_LAYERS);
    if (c->module == TFM_TRANSFORMER &&
        (c->num_encoder_layers < 0 || c->num_decoder_layers < 0 ||
         c->num_encoder_layers > MAX_LAYERS || c->num_decoder_layers > MAX_LAYERS))
        return tfm_error(TFM_ERR_INVALID_ARG, "num_encoder_layers/num_decoder_layers out of range");
    return TFM_OK;
}

static tfm_status put_int(st_writer *w, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return st_writer_meta(w, key, buf);
}

static tfm_status put_bool(st_writer *w, const char *key, bool v) {
    return st_writer_meta(w, key, v ? "true" : "false");
}

tfm_status config_to_meta(const tfm_config *c, st_writer *w) {
    char drop[40];
    snprintf(drop, sizeof drop, "%.17g", c->dropout);
    TFM_TRY(st_writer_meta(w, "module", tfm_module_name(c->module)));
    TFM_TRY(st_writer_meta(w, "dropout", drop));
    if (c->module == TFM_MULTIHEAD_ATTENTION) {
        TFM_TRY(put_int(w, "embed_dim", c->embed_dim));
        TFM_TRY(put_int(w, "num_heads", c->num_heads));
        TFM_TRY(put_int(w, "kdim", c->kdim ? c->kdim : c->embed_dim));
        TFM_TRY(put_int(w, "vdim", c->vdim ? c->vdim : c->embed_dim));
        TFM_TRY(put_bool(w, "bias", c->bias));
        TFM_TRY(put_bool(w, "add_bias_kv", c->add_bias_kv));
        TFM_TRY(put_bool(w, "add_zero_attn", c->add_zero_attn));
        return put_bool(w, "batch_first", c->batch_first);
    }
    char eps[40];
    snprintf(eps, sizeof eps, "%.17g", c->layer_norm_eps);
    TFM_TRY(put_int(w, "d_model", c->d_model));
    TFM_TRY(put_int(w, "nhead", c->nhead));
    TFM_TRY(put_int(w, "dim_feedforward", c->dim_feedforward));
    TFM_TRY(st_writer_meta(w, "activation", c->activation == TFM_GELU ? "gelu" : "relu"));
    TFM_TRY(st_writer_meta(w, "layer_norm_eps", eps));
    TFM_TRY(put_bool(w, "batch_first", c->batch_first));
    TFM_TRY(put_bool(w, "norm_first", c->norm_first));
    TFM_TRY(put_bool(w, "bias", c->bias));
    if (c->module == TFM_TRANSFORMER_ENCODER || c->module == TFM_TRANSFORMER_DECODER) {
        TFM_TRY(put_int(w, "num_layers", c->num_layers));
        TFM_TRY(put_bool(w, "norm", c->norm));
    }
    if (c->module == TFM_TRANSFORMER) {
        TFM_TRY(put_int(w, "num_encoder_layers", c->num_encoder_layers));
        TFM_TRY(put_int(w, "num_decoder_layers", c->num_decoder_layers));
    }
    return TFM_OK;
}
