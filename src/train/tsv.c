/* tsv.c — reading source<TAB>target pairs (the rules are in tsv.h). */
#include "train/tsv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"

void tsv_limits_default(tsv_limits *lim) {
    lim->max_line_bytes = TSV_DEFAULT_MAX_LINE_BYTES;
    lim->max_tokens = 0;
}

void tsv_free(tsv_dataset *d) {
    if (!d) return;
    free(d->bytes);
    free(d->offsets);
    memset(d, 0, sizeof *d);
}

static bool cont(uint8_t c) { return (c & 0xC0) == 0x80; }

/* RFC 3629, Table 3-7 of the Unicode standard: the second byte's range depends on the
 * lead byte, which is what excludes overlong forms, surrogates and > U+10FFFF. */
size_t utf8_check(const uint8_t *s, size_t n, const char **why) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;             /* continuation bytes after the lead */
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c < 0xC0) {
            *why = "continuation byte without a lead byte";
            return i;
        } else if (c < 0xC2) {
            *why = "overlong encoding";
            return i;
        } else if (c < 0xE0) {
            need = 1;
        } else if (c < 0xF0) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c < 0xF5) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            *why = "byte that never appears in UTF-8";
            return i;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n || !cont(s[i + k])) {
                *why = "truncated multi-byte sequence";
                return i;
            }
        }
        uint8_t c1 = s[i + 1];
        if (c1 < lo) {
            *why = "overlong encoding";
            return i;
        }
        if (c1 > hi) {
            *why = c == 0xED ? "UTF-16 surrogate (U+D800..U+DFFF)" : "code point above U+10FFFF";
            return i;
        }
        i += need + 1;
    }
    *why = NULL;
    return n;
}

/* Validate and compact buf (len bytes, owned: stored in *out or freed). */
static tfm_status parse(uint8_t *buf, size_t len, const char *label, const tsv_limits *lim,
                        tsv_dataset *out) {
    size_t p = 0;
    if (len >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) p = 3; /* BOM */
    bool empty = p == len;

    /* Pairs ≤ lines = newlines + 1: the bound for the offsets array. */
    size_t lines = 1;
    for (const uint8_t *q = buf + p; (q = memchr(q, '\n', len - (size_t)(q - buf))) != NULL; q++)
        lines++;
    if (lines > (SIZE_MAX / sizeof(size_t) - 1) / 2) {
        free(buf);
        return tfm_error(TFM_ERR_NOMEM, "%s: too many lines", label);
    }
    size_t *off = malloc((2 * lines + 1) * sizeof *off);
    if (!off) {
        free(buf);
        return tfm_error(TFM_ERR_NOMEM, "%s: no memory for %zu lines", label, lines);
    }

    tfm_status s = TFM_OK;
    size_t w = 0;    /* write position: pairs are compacted towards the front, w ≤ p */
    size_t np = 0;   /* pairs */
    size_t line = 0; /* 1-based number of the current line */
    size_t max_src = 0, max_tgt = 0;
    off[0] = 0;
    while (p < len) {
        line++;
        const uint8_t *nl = memchr(buf + p, '\n', len - p);
        size_t end = nl ? (size_t)(nl - buf) : len; /* end of the line's content */
        size_t next = nl ? end + 1 : len;
        if (end > p && buf[end - 1] == '\r') end--;
        size_t n = end - p;
        if (n == 0) { /* blank line: skipped (see tsv.h) */
            p = next;
            continue;
        }
        if (lim->max_line_bytes && n > lim->max_line_bytes) {
            s = tfm_error(TFM_ERR_FORMAT, "%s:%zu: line is %zu bytes, longer than the maximum %zu",
                          label, line, n, lim->max_line_bytes);
            break;
        }
        const char *why;
        size_t bad = utf8_check(buf + p, n, &why);
        if (why) {
            s = tfm_error(TFM_ERR_FORMAT, "%s:%zu: invalid UTF-8 at byte %zu: %s", label, line,
                          bad + 1, why);
            break;
        }
        const uint8_t *tab = memchr(buf + p, '\t', n);
        if (!tab) {
            s = tfm_error(TFM_ERR_FORMAT, "%s:%zu: no TAB separating source and target", label,
                          line);
            break;
        }
        size_t src_len = (size_t)(tab - (buf + p));
        size_t tgt_len = n - src_len - 1;
        const uint8_t *tab2 = memchr(tab + 1, '\t', tgt_len);
        if (tab2) {
            s = tfm_error(TFM_ERR_FORMAT,
                          "%s:%zu: more than one TAB (bytes %zu and %zu); expected "
                          "source<TAB>target",
                          label, line, src_len + 1, (size_t)(tab2 - (buf + p)) + 1);
            break;
        }
        if (src_len == 0 || tgt_len == 0) {
            s = tfm_error(TFM_ERR_FORMAT, "%s:%zu: empty %s", label, line,
                          src_len == 0 ? "source before the TAB" : "target after the TAB");
            break;
        }
        /* The source is its bytes; the target gains BOS (decoder input) or EOS (labels). */
        if (lim->max_tokens && src_len > lim->max_tokens) {
            s = tfm_error(TFM_ERR_FORMAT,
                          "%s:%zu: source is %zu tokens, more than the maximum %zu", label, line,
                          src_len, lim->max_tokens);
            break;
        }
        if (lim->max_tokens && tgt_len + 1 > lim->max_tokens) {
            s = tfm_error(TFM_ERR_FORMAT,
                          "%s:%zu: target is %zu tokens with BOS, more than the maximum %zu",
                          label, line, tgt_len + 1, lim->max_tokens);
            break;
        }
        memmove(buf + w, buf + p, src_len);
        w += src_len;
        off[2 * np + 1] = w;
        memmove(buf + w, tab + 1, tgt_len);
        w += tgt_len;
        off[2 * np + 2] = w;
        np++;
        if (src_len > max_src) max_src = src_len;
        if (tgt_len > max_tgt) max_tgt = tgt_len;
        p = next;
    }
    if (s == TFM_OK && np == 0)
        s = tfm_error(TFM_ERR_FORMAT, "%s: no source<TAB>target pairs (%s)", label,
                      empty ? "empty file" : "only blank lines");
    if (s != TFM_OK) {
        free(buf);
        free(off);
        return s;
    }
    /* Give back what compaction and blank lines freed; a failed shrink keeps the block. */
    uint8_t *b2 = realloc(buf, w);
    size_t *o2 = realloc(off, (2 * np + 1) * sizeof *off);
    *out = (tsv_dataset){b2 ? b2 : buf, o2 ? o2 : off, np, max_src, max_tgt};
    return TFM_OK;
}

static const tsv_limits *limits_or_default(const tsv_limits *lim, tsv_limits *def) {
    if (lim) return lim;
    tsv_limits_default(def);
    return def;
}

tfm_status tsv_read_memory(const void *buf, size_t len, const char *label, const tsv_limits *lim,
                           tsv_dataset *out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "tsv_read_memory: out is NULL");
    memset(out, 0, sizeof *out);
    if (!label) label = "<memory>";
    if (!buf && len) return tfm_error(TFM_ERR_INVALID_ARG, "%s: buffer is NULL", label);
    tsv_limits def;
    lim = limits_or_default(lim, &def);
    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return tfm_error(TFM_ERR_NOMEM, "%s: no memory for %zu bytes", label, len);
    if (len) memcpy(copy, buf, len);
    return parse(copy, len, label, lim, out);
}

tfm_status tsv_read_stream(FILE *f, const char *label, const tsv_limits *lim, tsv_dataset *out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "tsv_read_stream: out is NULL");
    memset(out, 0, sizeof *out);
    if (!label) label = "<stream>";
    if (!f) return tfm_error(TFM_ERR_INVALID_ARG, "%s: stream is NULL", label);
    tsv_limits def;
    lim = limits_or_default(lim, &def);
    size_t cap = (size_t)1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return tfm_error(TFM_ERR_NOMEM, "%s: no memory to read", label);
    for (;;) {
        if (len == cap) {
            uint8_t *b2 = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
            if (!b2) {
                free(buf);
                return tfm_error(TFM_ERR_NOMEM, "%s: no memory to read more than %zu bytes",
                                 label, len);
            }
            buf = b2;
            cap *= 2;
        }
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap) {
            if (ferror(f)) {
                int e = errno;
                free(buf);
                return tfm_error(TFM_ERR_IO, "%s: read error: %s", label,
                                 e ? strerror(e) : "unknown");
            }
            if (feof(f)) break;
        }
    }
    return parse(buf, len, label, lim, out);
}

tfm_status tsv_read_file(const char *path, const tsv_limits *lim, tsv_dataset *out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "tsv_read_file: out is NULL");
    memset(out, 0, sizeof *out);
    if (!path) return tfm_error(TFM_ERR_INVALID_ARG, "tsv_read_file: path is NULL");
    errno = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return tfm_error(TFM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    errno = 0;
    tfm_status s = tsv_read_stream(f, path, lim, out);
    fclose(f);
    return s;
}
