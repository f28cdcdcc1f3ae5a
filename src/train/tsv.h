/* tsv.h — the training data of `tfm train`: a text file of pairs, one per line,
 *     source<TAB>target
 *
 * The rules, checked line by line; every error is TFM_ERR_FORMAT with a message
 * "FILE:LINE: what is wrong" (LINE 1-based, counting every line, blank ones too):
 *   - a line ends at "\n" or at the end of the file (the last line may lack its
 *     newline); one "\r" before the end is stripped too, so CRLF files read the same;
 *   - a UTF-8 byte order mark at the start of the file is skipped;
 *   - a blank line (nothing left after stripping) is skipped: trailing blank lines and
 *     blank separators are common in hand-edited files and carry no pair;
 *   - a line is at most max_line_bytes long, without its line ending;
 *   - it is valid UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 *     U+10FFFF, no truncated or stray bytes);
 *   - it holds exactly one TAB, with a non-empty source before it and a non-empty
 *     target after it; every other byte (a second TAB excepted) belongs to the text;
 *   - with max_tokens > 0, the model's sequences fit: the source is at most max_tokens
 *     tokens (its bytes) and the target at most max_tokens with BOS (or EOS) added;
 *   - the file holds at least one pair.
 * Reading or opening failures are TFM_ERR_IO naming the file.
 *
 * Memory: the whole file is read into one buffer and the pairs are compacted in
 * place (TABs and line endings removed), so the dataset is that one block of bytes
 * plus one array of 2·n + 1 offsets. No line-length limit exists but max_line_bytes.
 */
#ifndef TFM_TRAIN_TSV_H
#define TFM_TRAIN_TSV_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "tfm.h"

#define TSV_DEFAULT_MAX_LINE_BYTES 4096

typedef struct tsv_limits {
    size_t max_line_bytes; /* longest line, in bytes without "\n"/"\r\n" (0 = no limit) */
    size_t max_tokens;     /* longest source, and target + 1, in tokens (0 = no limit) */
} tsv_limits;

/* max_line_bytes = TSV_DEFAULT_MAX_LINE_BYTES, max_tokens = 0 (the trainer sets it
 * from the model's maximum sequence length). */
void tsv_limits_default(tsv_limits *lim);

typedef struct tsv_dataset {
    uint8_t *bytes;     /* every source and target back to back, no separators */
    size_t *offsets;    /* (2·n + 1): pair i's source is bytes[offsets[2i], offsets[2i+1]),
                         * its target bytes[offsets[2i+1], offsets[2i+2]) */
    size_t n;           /* pairs */
    size_t max_src_len; /* longest source, bytes */
    size_t max_tgt_len; /* longest target, bytes */
} tsv_dataset;

/* Each reads everything, validates it and fills *out (zeroed on failure; free with
 * tsv_free either way). lim NULL means the defaults. `label` names the data in
 * error messages (the path for tsv_read_file). */
tfm_status tsv_read_file(const char *path, const tsv_limits *lim, tsv_dataset *out);
tfm_status tsv_read_stream(FILE *f, const char *label, const tsv_limits *lim, tsv_dataset *out);
/* The buffer is copied; the caller keeps ownership (tests, fuzzers). */
tfm_status tsv_read_memory(const void *buf, size_t len, const char *label, const tsv_limits *lim,
                           tsv_dataset *out);
void tsv_free(tsv_dataset *d);

/* Pair i's source and target: pointer and length in bytes (not NUL-terminated). */
static inline const uint8_t *tsv_src(const tsv_dataset *d, size_t i, size_t *len) {
    *len = d->offsets[2 * i + 1] - d->offsets[2 * i];
    return d->bytes + d->offsets[2 * i];
}
static inline const uint8_t *tsv_tgt(const tsv_dataset *d, size_t i, size_t *len) {
    *len = d->offsets[2 * i + 2] - d->offsets[2 * i + 1];
    return d->bytes + d->offsets[2 * i + 1];
}
static inline size_t tsv_src_len(const tsv_dataset *d, size_t i) {
    return d->offsets[2 * i + 1] - d->offsets[2 * i];
}
static inline size_t tsv_tgt_len(const tsv_dataset *d, size_t i) {
    return d->offsets[2 * i + 2] - d->offsets[2 * i + 1];
}

/* The first UTF-8 error in s (n bytes): returns its byte offset and sets *why to a
 * fixed description, or returns n (and *why = NULL) when s is valid. */
size_t utf8_check(const uint8_t *s, size_t n, const char **why);

#endif
