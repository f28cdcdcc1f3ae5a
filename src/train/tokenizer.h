/* tokenizer.h — the byte-level tokenizer of `tfm train`: every byte is a token, so any
 * text (any language, any UTF-8) is representable and there is no vocabulary file.
 *   id 0 PAD, 1 BOS, 2 EOS, 3 + b for byte b; vocabulary 259.
 */
#ifndef TFM_TRAIN_TOKENIZER_H
#define TFM_TRAIN_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tfm.h"

enum {
    TOK_PAD = 0,
    TOK_BOS = 1,
    TOK_EOS = 2,
    TOK_BYTE0 = 3,   /* byte b is id TOK_BYTE0 + b */
    TOK_VOCAB = 259, /* 3 specials + 256 bytes */
};

/* ids (bos + n + eos) = [BOS] bytes... [EOS], the specials only when asked.
 * Returns the number of ids written. Cannot fail. */
size_t tok_encode(const void *bytes, size_t n, bool bos, bool eos, int32_t *ids);

/* bytes (≤ cap) from ids (n): stops at the first EOS, skips PAD and BOS. An id outside
 * [0, TOK_VOCAB) before that EOS is TFM_ERR_INVALID_ARG naming its position; so is an
 * output longer than cap (cap ≥ n always suffices). *len is the byte count written. */
tfm_status tok_decode(const int32_t *ids, size_t n, void *bytes, size_t cap, size_t *len);

#endif
