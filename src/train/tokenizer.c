/* tokenizer.c — byte-level encode and decode (see tokenizer.h for the id layout). */
#include "train/tokenizer.h"

#include "core/status.h"

size_t tok_encode(const void *bytes, size_t n, bool bos, bool eos, int32_t *ids) {
    const uint8_t *b = bytes;
    size_t k = 0;
    if (bos) ids[k++] = TOK_BOS;
    for (size_t i = 0; i < n; i++) ids[k++] = TOK_BYTE0 + (int32_t)b[i];
    if (eos) ids[k++] = TOK_EOS;
    return k;
}

tfm_status tok_decode(const int32_t *ids, size_t n, void *bytes, size_t cap, size_t *len) {
    uint8_t *out = bytes;
    size_t k = 0;
    if (len) *len = 0;
    if (n && !ids) return tfm_error(TFM_ERR_INVALID_ARG, "tok_decode: ids is NULL");
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= TOK_VOCAB)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "tok_decode: token id %d at position %zu is outside the vocabulary "
                             "[0, %d)",
                             (int)id, i, TOK_VOCAB);
        if (id == TOK_EOS) break;
        if (id == TOK_PAD || id == TOK_BOS) continue;
        if (k == cap)
            return tfm_error(TFM_ERR_INVALID_ARG, "tok_decode: output longer than %zu bytes", cap);
        out[k++] = (uint8_t)(id - TOK_BYTE0);
    }
    if (len) *len = k;
    return TFM_OK;
}
