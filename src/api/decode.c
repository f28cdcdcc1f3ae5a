/* decode.c — the public step-by-step decoding API over a model trained by `tfm train`:
 * a tfm_translator is a loaded checkpoint, a tfm_decoder a kv_decoder over it. */
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "decode/kv_decoder.h"
#include "train/tokenizer.h"
#include "train/trainer.h"

struct tfm_translator {
    seq2seq model;
};

struct tfm_decoder {
    kv_decoder kv;
    int64_t n;
};

tfm_status tfm_translator_load(const char *path, tfm_translator **out) {
    if (!path || !out) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_translator_load: NULL argument");
    *out = NULL;
    tfm_translator *t = calloc(1, sizeof *t);
    if (!t) return tfm_error(TFM_ERR_NOMEM, "out of memory");
    train_options o;
    train_progress p;
    tfm_status st = checkpoint_load(path, &t->model, NULL, &o, &p);
    if (st != TFM_OK) {
        free(t);
        return st;
    }
    *out = t;
    return TFM_OK;
}

void tfm_translator_free(tfm_translator *t) {
    if (!t) return;
    seq2seq_free(&t->model);
    free(t);
}

int64_t tfm_translator_vocab(const tfm_translator *t) { return t ? t->model.cfg.vocab : 0; }
int64_t tfm_translator_max_len(const tfm_translator *t) { return t ? t->model.cfg.max_len : 0; }

tfm_status tfm_translator_set_compute_type(tfm_translator *t, tfm_compute_type ct) {
    if (!t) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_translator_set_compute_type: NULL translator");
    if (ct != TFM_COMPUTE_F32 && ct != TFM_COMPUTE_BF16)
        return tfm_error(TFM_ERR_INVALID_ARG, "unknown compute type %d", (int)ct);
    t->model.compute = ct;
    bf16_weights_free(&t->model.bf16w); /* made anew on first use */
    return TFM_OK;
}

tfm_status tfm_decoder_start(tfm_translator *t, const char *const *sources, const size_t *lens,
                             int64_t n, tfm_decoder **out) {
    if (!t || !sources || !lens || !out || n < 1)
        return tfm_error(TFM_ERR_INVALID_ARG, "tfm_decoder_start: NULL argument or n < 1");
    *out = NULL;
    size_t S = 1;
    for (int64_t i = 0; i < n; i++)
        if (lens[i] > S) S = lens[i];
    if ((int64_t)S > t->model.cfg.max_len)
        return tfm_error(TFM_ERR_SHAPE, "a source of %zu bytes is longer than the model's max_len %lld",
                         S, (long long)t->model.cfg.max_len);
    int32_t *src = calloc((size_t)n * S, sizeof *src);
    uint8_t *pad = calloc((size_t)n * S, 1);
    tfm_decoder *d = calloc(1, sizeof *d);
    tfm_status st = src && pad && d ? TFM_OK : tfm_error(TFM_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; st == TFM_OK && i < n; i++) {
        tok_encode(sources[i], lens[i], false, false, src + i * (int64_t)S);
        for (size_t j = lens[i]; j < S; j++) src[i * (int64_t)S + (int64_t)j] = TOK_PAD, pad[i * (int64_t)S + (int64_t)j] = 1;
        if (lens[i] == 0) src[i * (int64_t)S] = TOK_EOS, pad[i * (int64_t)S] = 0; /* an empty source still has a key */
    }
    if (st == TFM_OK)
        st = kv_decoder_start(&d->kv, &t->model, src, pad, n, (int64_t)S, 1, t->model.cfg.max_len,
                              false, false);
    free(src);
    free(pad);
    if (st != TFM_OK) {
        free(d);
        return st;
    }
    d->n = n;
    *out = d;
    return TFM_OK;
}

tfm_status tfm_decoder_step(tfm_decoder *d, const int32_t *tokens, float *logprobs) {
    if (!d || !tokens || !logprobs) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_decoder_step: NULL argument");
    return kv_decoder_step(&d->kv, tokens, logprobs);
}

tfm_status tfm_decoder_reorder(tfm_decoder *d, const int32_t *rows) {
    if (!d || !rows) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_decoder_reorder: NULL argument");
    return kv_decoder_reorder(&d->kv, rows);
}

void tfm_decoder_free(tfm_decoder *d) {
    if (!d) return;
    kv_decoder_free(&d->kv);
    free(d);
}
