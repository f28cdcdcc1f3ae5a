/* checkpoint.c — a training run in one safetensors file: the model's parameters under
 * their names, the optimizer state as "optim.<state>" (flat, in parameter order), and in
 * __metadata__ the model config (module "Seq2SeqTransformer"), the training options
 * ("train.*") and the progress ("progress.*"), so `tfm translate` needs nothing else
 * and `tfm train --resume` continues exactly. Written atomically (st_writer_write). */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/config_meta.h"
#include "io/safetensors.h"
#include "train/trainer.h"

static const char *const schedule_names[] = {"constant", "noam", "cosine"};

static tfm_status put_i(st_writer *w, const char *k, int64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%" PRId64, v);
    return st_writer_meta(w, k, b);
}

static tfm_status put_u(st_writer *w, const char *k, uint64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%" PRIu64, v);
    return st_writer_meta(w, k, b);
}

static tfm_status put_f(st_writer *w, const char *k, double v) {
    char b[40];
    snprintf(b, sizeof b, "%.17g", v);
    return st_writer_meta(w, k, b);
}

static tfm_status put_b(st_writer *w, const char *k, bool v) { return st_writer_meta(w, k, v ? "true" : "false"); }

static tfm_status write_meta(st_writer *w, const seq2seq_config *c, const train_options *o,
                             const train_progress *p, const optimizer *opt) {
    TFM_TRY(st_writer_meta(w, "module", "Seq2SeqTransformer"));
    TFM_TRY(st_writer_meta(w, "tokenizer", "bytes"));
    TFM_TRY(put_i(w, "vocab", c->vocab));
    TFM_TRY(put_i(w, "d_model", c->d_model));
    TFM_TRY(put_i(w, "nhead", c->nhead));
    TFM_TRY(put_i(w, "num_encoder_layers", c->num_encoder_layers));
    TFM_TRY(put_i(w, "num_decoder_layers", c->num_decoder_layers));
    TFM_TRY(put_i(w, "dim_feedforward", c->dim_feedforward));
    TFM_TRY(put_f(w, "dropout", c->dropout));
    TFM_TRY(st_writer_meta(w, "activation", c->activation == TFM_GELU ? "gelu" : "relu"));
    TFM_TRY(put_b(w, "norm_first", c->norm_first));
    TFM_TRY(put_b(w, "tie_embeddings", c->tie_embeddings));
    TFM_TRY(put_i(w, "max_len", c->max_len));
    if (!o) return TFM_OK;
    TFM_TRY(put_u(w, "train.batch_size", o->batch_size));
    TFM_TRY(put_u(w, "train.max_tokens", o->max_tokens));
    TFM_TRY(put_u(w, "train.bucket", o->bucket));
    TFM_TRY(put_i(w, "train.steps", o->steps));
    TFM_TRY(st_writer_meta(w, "train.optimizer", optim_kind_name(o->optim.kind)));
    TFM_TRY(put_f(w, "train.weight_decay", o->optim.weight_decay));
    TFM_TRY(put_f(w, "train.momentum", o->optim.momentum));
    TFM_TRY(put_f(w, "train.dampening", o->optim.dampening));
    TFM_TRY(put_b(w, "train.nesterov", o->optim.nesterov));
    TFM_TRY(put_f(w, "train.beta1", o->optim.beta1));
    TFM_TRY(put_f(w, "train.beta2", o->optim.beta2));
    TFM_TRY(put_f(w, "train.eps", o->optim.eps));
    TFM_TRY(put_b(w, "train.amsgrad", o->optim.amsgrad));
    TFM_TRY(st_writer_meta(w, "train.schedule", schedule_names[o->schedule]));
    TFM_TRY(put_f(w, "train.lr", o->lr));
    TFM_TRY(put_i(w, "train.warmup", o->warmup));
    TFM_TRY(put_f(w, "train.label_smoothing", o->label_smoothing));
    TFM_TRY(put_f(w, "train.clip", o->clip));
    TFM_TRY(put_u(w, "train.seed", o->seed));
    TFM_TRY(st_writer_meta(w, "train.compute_type", tfm_compute_type_name(o->compute)));
    TFM_TRY(put_i(w, "progress.step", p->step));
    TFM_TRY(put_u(w, "progress.epoch", p->epoch));
    TFM_TRY(put_u(w, "progress.batch_index", p->batch_index));
    if (opt) TFM_TRY(put_i(w, "optim.step", optim_get_step(opt)));
    return TFM_OK;
}

tfm_status checkpoint_save(const char *path, const seq2seq *m, const optimizer *opt,
                           const train_options *o, const train_progress *p) {
    st_writer *w;
    TFM_TRY(st_writer_new(&w));
    tfm_status st = write_meta(w, &m->cfg, o, p, opt);
    for (size_t i = 0; st == TFM_OK && i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        st = st_writer_add(w, e->name, ST_F32, e->ndim, e->shape, *e->slot);
    }
    char names[8][64];
    for (size_t i = 0; st == TFM_OK && opt && i < optim_num_states(opt) && i < 8; i++) {
        const char *name;
        float *data;
        int64_t n = (int64_t)m->num_floats;
        if ((st = optim_state(opt, i, &name, &data)) != TFM_OK) break;
        snprintf(names[i], sizeof names[i], "optim.%s", name);
        st = st_writer_add(w, names[i], ST_F32, 1, &n, data);
    }
    if (st == TFM_OK) st = st_writer_write(w, path);
    st_writer_free(w);
    return st;
}

/* ---- reading ---- */

static tfm_status need(const st_file *f, const char *key, const char **v) {
    *v = st_meta(f, key);
    if (!*v) return tfm_error(TFM_ERR_FORMAT, "%s: no \"%s\" in __metadata__", st_label(f), key);
    return TFM_OK;
}

static tfm_status get_i(const st_file *f, const char *key, int64_t lo, int64_t hi, int64_t *out) {
    const char *v;
    TFM_TRY(need(f, key, &v));
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return tfm_error(TFM_ERR_FORMAT, "%s: \"%s\" = \"%.40s\" is not an integer in [%lld, %lld]",
                         st_label(f), key, v, (long long)lo, (long long)hi);
    *out = x;
    return TFM_OK;
}

static tfm_status get_z(const st_file *f, const char *key, size_t *out) {
    int64_t x = 0;
    TFM_TRY(get_i(f, key, 0, INT64_MAX, &x));
    *out = (size_t)x;
    return TFM_OK;
}

static tfm_status get_u(const st_file *f, const char *key, uint64_t *out) {
    const char *v;
    TFM_TRY(need(f, key, &v));
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return tfm_error(TFM_ERR_FORMAT, "%s: \"%s\" = \"%.40s\" is not an unsigned integer",
                         st_label(f), key, v);
    *out = x;
    return TFM_OK;
}

static tfm_status get_f(const st_file *f, const char *key, double *out) {
    const char *v;
    TFM_TRY(need(f, key, &v));
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return tfm_error(TFM_ERR_FORMAT, "%s: \"%s\" = \"%.40s\" is not a number", st_label(f), key, v);
    *out = x;
    return TFM_OK;
}

static tfm_status get_b(const st_file *f, const char *key, bool *out) {
    const char *v;
    TFM_TRY(need(f, key, &v));
    return meta_parse_bool(key, v, out);
}

static tfm_status read_model_config(const st_file *f, seq2seq_config *c) {
    const char *v;
    TFM_TRY(need(f, "module", &v));
    if (strcmp(v, "Seq2SeqTransformer"))
        return tfm_error(TFM_ERR_FORMAT, "%s: module \"%.40s\" is not a Seq2SeqTransformer (made by tfm train)",
                         st_label(f), v);
    TFM_TRY(need(f, "tokenizer", &v));
    if (strcmp(v, "bytes"))
        return tfm_error(TFM_ERR_UNSUPPORTED, "%s: tokenizer \"%.40s\" (tfm knows \"bytes\")", st_label(f), v);
    double d;
    TFM_TRY(get_i(f, "vocab", 3, 1 << 24, &c->vocab));
    TFM_TRY(get_i(f, "d_model", 1, 1 << 16, &c->d_model));
    TFM_TRY(get_i(f, "nhead", 1, 1 << 16, &c->nhead));
    TFM_TRY(get_i(f, "num_encoder_layers", 1, 256, &c->num_encoder_layers));
    TFM_TRY(get_i(f, "num_decoder_layers", 1, 256, &c->num_decoder_layers));
    TFM_TRY(get_i(f, "dim_feedforward", 1, 1 << 20, &c->dim_feedforward));
    TFM_TRY(get_f(f, "dropout", &d));
    c->dropout = (float)d;
    TFM_TRY(need(f, "activation", &v));
    if (strcmp(v, "relu") && strcmp(v, "gelu"))
        return tfm_error(TFM_ERR_FORMAT, "%s: activation \"%.40s\"", st_label(f), v);
    c->activation = strcmp(v, "gelu") ? TFM_RELU : TFM_GELU;
    TFM_TRY(get_b(f, "norm_first", &c->norm_first));
    TFM_TRY(get_b(f, "tie_embeddings", &c->tie_embeddings));
    TFM_TRY(get_i(f, "max_len", 2, 1 << 20, &c->max_len));
    return seq2seq_check_config(c);
}

static tfm_status read_options(const st_file *f, train_options *o, train_progress *p) {
    const char *v;
    double d;
    TFM_TRY(get_z(f, "train.batch_size", &o->batch_size));
    TFM_TRY(get_z(f, "train.max_tokens", &o->max_tokens));
    TFM_TRY(get_z(f, "train.bucket", &o->bucket));
    TFM_TRY(get_i(f, "train.steps", 1, INT64_MAX, &o->steps));
    TFM_TRY(need(f, "train.optimizer", &v));
    optim_kind kind;
    TFM_TRY(optim_kind_from_name(v, &kind));
    optim_config_default(&o->optim, kind);
    TFM_TRY(get_f(f, "train.weight_decay", &o->optim.weight_decay));
    TFM_TRY(get_f(f, "train.momentum", &o->optim.momentum));
    TFM_TRY(get_f(f, "train.dampening", &o->optim.dampening));
    TFM_TRY(get_b(f, "train.nesterov", &o->optim.nesterov));
    TFM_TRY(get_f(f, "train.beta1", &o->optim.beta1));
    TFM_TRY(get_f(f, "train.beta2", &o->optim.beta2));
    TFM_TRY(get_f(f, "train.eps", &o->optim.eps));
    TFM_TRY(get_b(f, "train.amsgrad", &o->optim.amsgrad));
    TFM_TRY(need(f, "train.schedule", &v));
    int k = -1;
    for (int i = 0; i < 3; i++)
        if (!strcmp(v, schedule_names[i])) k = i;
    if (k < 0) return tfm_error(TFM_ERR_FORMAT, "%s: unknown schedule \"%.40s\"", st_label(f), v);
    o->schedule = (schedule_kind)k;
    TFM_TRY(get_f(f, "train.lr", &o->lr));
    TFM_TRY(get_i(f, "train.warmup", 0, INT64_MAX, &o->warmup));
    TFM_TRY(get_f(f, "train.label_smoothing", &d));
    o->label_smoothing = (float)d;
    TFM_TRY(get_f(f, "train.clip", &o->clip));
    TFM_TRY(get_u(f, "train.seed", &o->seed));
    /* absent in checkpoints from before compute types: FP32 */
    const char *ct = st_meta(f, "train.compute_type");
    o->compute = TFM_COMPUTE_F32;
    if (ct && tfm_compute_type_from_name(ct, &o->compute) != TFM_OK)
        return tfm_error(TFM_ERR_FORMAT, "%s: unknown train.compute_type \"%.40s\"", st_label(f), ct);
    TFM_TRY(get_i(f, "progress.step", 0, INT64_MAX, &p->step));
    TFM_TRY(get_u(f, "progress.epoch", &p->epoch));
    TFM_TRY(get_z(f, "progress.batch_index", &p->batch_index));
    return train_options_check(o);
}

/* Every parameter present with the config's shape and a float dtype, and nothing unknown
 * in the file but optim.* tensors — checked before anything is allocated for them. */
static tfm_status check_params(const st_file *f, const seq2seq *m) {
    for (size_t i = 0; i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        const st_tensor *t = st_find(f, e->name);
        if (!t) return tfm_error(TFM_ERR_MISSING, "%s: missing tensor '%s'", st_label(f), e->name);
        bool same = t->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = t->shape[d] == e->shape[d];
        if (!same) return tfm_error(TFM_ERR_SHAPE, "%s: tensor '%s' does not have the config's shape", st_label(f), e->name);
        if (t->dtype != ST_F32 && t->dtype != ST_F64 && t->dtype != ST_F16 && t->dtype != ST_BF16)
            return tfm_error(TFM_ERR_FORMAT, "%s: tensor '%s' has dtype %s", st_label(f), e->name,
                             st_dtype_name(t->dtype));
    }
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_at(f, i)->name;
        if (strncmp(name, "optim.", 6) && !param_list_find(&m->params, name))
            return tfm_error(TFM_ERR_UNEXPECTED, "%s: unexpected tensor '%s'", st_label(f), name);
    }
    return TFM_OK;
}

static tfm_status read_params(const st_file *f, seq2seq *m) {
    for (size_t i = 0; i < m->params.count; i++) {
        const param_entry *e = &m->params.items[i];
        TFM_TRY(st_read_f32(f, st_find(f, e->name), *e->slot));
    }
    return TFM_OK;
}

static tfm_status read_optimizer(const st_file *f, const seq2seq *m, const train_options *o,
                                 optimizer **out) {
    int64_t step;
    TFM_TRY(get_i(f, "optim.step", 0, INT64_MAX, &step));
    TFM_TRY(optim_create(&o->optim, m->num_floats, out));
    tfm_status st = optim_set_step(*out, step);
    char key[80];
    for (size_t i = 0; st == TFM_OK && i < optim_num_states(*out); i++) {
        const char *name;
        float *data;
        if ((st = optim_state(*out, i, &name, &data))) break;
        snprintf(key, sizeof key, "optim.%s", name);
        const st_tensor *t = st_find(f, key);
        if (!t)
            st = tfm_error(TFM_ERR_MISSING, "%s: missing optimizer state '%s'", st_label(f), key);
        else if (t->ndim != 1 || (size_t)t->shape[0] != m->num_floats)
            st = tfm_error(TFM_ERR_SHAPE, "%s: '%s' must have %zu values", st_label(f), key, m->num_floats);
        else
            st = st_read_f32(f, t, data);
    }
    if (st != TFM_OK) {
        optim_free(*out);
        *out = NULL;
    }
    return st;
}

tfm_status checkpoint_load(const char *path, seq2seq *m, optimizer **opt_out, train_options *o,
                           train_progress *p) {
    st_file *f;
    TFM_TRY(st_open(path, &f));
    seq2seq_config c;
    train_options_default(o);
    *p = (train_progress){0};
    tfm_status st = read_model_config(f, &c);
    if (st == TFM_OK) o->model = c;
    if (st == TFM_OK && opt_out) st = read_options(f, o, p);
    if (st == TFM_OK && (st = seq2seq_plan(m, &c)) == TFM_OK) {
        if ((st = check_params(f, m)) == TFM_OK && (st = seq2seq_alloc(m)) == TFM_OK &&
            (st = read_params(f, m)) == TFM_OK && opt_out)
            st = read_optimizer(f, m, o, opt_out);
        if (st != TFM_OK && m->params.items) seq2seq_free(m);
    }
    /* every message names the file (those from st_* already do) */
    if (st != TFM_OK && strncmp(tfm_last_error(), path, strlen(path)) != 0)
        tfm_error_context(st, "%s", path);
    st_close(f);
    return st;
}
