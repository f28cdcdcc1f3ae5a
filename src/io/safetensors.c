/* safetensors.c — validated, memory-mapped reading and atomic writing of safetensors.
 *
 * Reading: the 8-byte length, then the header bytes (UTF-8, no control bytes), then
 * the JSON (cJSON), then every entry; tensor data pointers are formed only after the
 * whole file has been checked. Writing: header JSON from cJSON in insertion order,
 * padded with spaces to a multiple of 8 bytes, data contiguous in insertion order.
 */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "core/status.h"
#include "io/fileio.h"

/* The header limit of the reference (Rust) implementation. */
#define ST_MAX_HEADER 100000000u
/* JSON numbers reach us as doubles; below 2^53 every integer is exact, and an integer
 * literal of 2^53 or more rounds to at least 2^53, so this bound catches them all. */
#define ST_MAX_INT 9007199254740992.0
#define ST_MAX_INT_U64 ((uint64_t)1 << 53)
/* Names in messages are clipped so that the problem stays within the message buffer. */
#define NAME "%.200s"

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2},
    [ST_BF16] = {"BF16", 2}, [ST_BOOL] = {"BOOL", 1}, [ST_U8] = {"U8", 1},
    [ST_I8] = {"I8", 1},   [ST_I16] = {"I16", 2}, [ST_I32] = {"I32", 4},
    [ST_I64] = {"I64", 8},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])
_Static_assert(N_DTYPES == ST_I64 + 1, "one dtypes[] row per st_dtype");

const char *st_dtype_name(st_dtype d) {
    return (unsigned)d < N_DTYPES ? dtypes[d].name : "?";
}

size_t st_dtype_size(st_dtype d) { return (unsigned)d < N_DTYPES ? dtypes[d].size : 0; }

/* "[4, 8]" into buf (large enough for ST_MAX_DIMS 20-digit dims). */
#define SHAPE_BUF (ST_MAX_DIMS * 22 + 3)
static const char *fmt_shape(char *buf, int ndim, const int64_t *shape) {
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < ndim; i++)
        k += (size_t)snprintf(buf + k, SHAPE_BUF - k, "%s%" PRId64, i ? ", " : "", shape[i]);
    buf[k++] = ']';
    buf[k] = '\0';
    return buf;
}

/* Product of dims, or -1 if it does not fit in int64. A zero dim makes any product 0. */
static int64_t shape_numel(int ndim, const int64_t *shape) {
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > INT64_MAX / n) return -1;
        n *= shape[i];
    }
    return n;
}

/* Length of the valid UTF-8 sequence at p (at most `left` bytes), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *p, size_t left) {
    unsigned char c = p[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
    else return 0;
    if (left < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static bool utf8_valid(const char *s) {
    size_t left = strlen(s);
    const unsigned char *p = (const unsigned char *)s;
    while (left) {
        size_t n = utf8_seq(p, left);
        if (!n) return false;
        p += n, left -= n;
    }
    return true;
}

/* ---- reader ------------------------------------------------------------------ */

typedef struct st_meta_entry {
    const char *key, *value;
} st_meta_entry;

struct st_file {
    char *label;
    void *map; /* set when st_open mapped the file */
    size_t map_len;
    st_tensor *tensors; /* header order */
    size_t ntensors;
    size_t *by_name; /* tensor indices sorted by name, for st_find */
    st_meta_entry *meta;
    size_t nmeta;
    char *strings; /* names and metadata copied out of the header */
};

static uint64_t load_le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* JSON allows only these between tokens; the spec pads the header with spaces. */
static bool json_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Byte-level checks cJSON does not make: the header must be UTF-8 without raw control
 * bytes (JSON forbids them), and no string may hold an escaped NUL, which would
 * silently cut a name short once it becomes a C string. */
static tfm_status scan_header(const char *label, const unsigned char *h, size_t n) {
    bool in_string = false;
    for (size_t i = 0; i < n;) {
        unsigned char c = h[i];
        if (c < 0x20 && (in_string || !json_space(c)))
            return tfm_error(TFM_ERR_FORMAT, "%s: header has control byte 0x%02x at offset %zu",
                             label, c, i);
        if (c >= 0x80) {
            size_t len = utf8_seq(h + i, n - i);
            if (!len)
                return tfm_error(TFM_ERR_FORMAT,
                                 "%s: header is not valid UTF-8 (byte 0x%02x at offset %zu)",
                                 label, c, i);
            i += len;
            continue;
        }
        if (c == '"') {
            in_string = !in_string;
        } else if (c == '\\' && in_string) {
            if (i + 6 <= n && memcmp(h + i + 1, "u0000", 5) == 0)
                return tfm_error(TFM_ERR_FORMAT,
                                 "%s: header has an escaped NUL (\\u0000) at offset %zu; names "
                                 "and metadata cannot contain NUL",
                                 label, i);
            if (i + 1 < n && (h[i + 1] == '"' || h[i + 1] == '\\'))
                i++; /* an escaped quote does not end the string */
        }
        i++;
    }
    return TFM_OK;
}

typedef struct key_ref {
    const char *key;
    size_t idx;
} key_ref;

static int key_ref_cmp(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorted references to the keys of an object's children; the first repeated key, if
 * any, in *dup. NULL when out of memory. */
static key_ref *sorted_keys(const cJSON *obj, size_t n, const char **dup) {
    key_ref *k = malloc((n ? n : 1) * sizeof *k);
    if (!k) return NULL;
    size_t i = 0;
    for (const cJSON *c = obj->child; c; c = c->next, i++) k[i] = (key_ref){c->string, i};
    qsort(k, n, sizeof *k, key_ref_cmp);
    *dup = NULL;
    for (i = 1; i < n && !*dup; i++)
        if (strcmp(k[i - 1].key, k[i].key) == 0) *dup = k[i].key;
    return k;
}

static size_t child_count(const cJSON *obj) {
    size_t n = 0;
    for (const cJSON *c = obj->child; c; c = c->next) n++;
    return n;
}

/* Why a JSON value is not a valid size or offset, or NULL with *out set. */
static const char *json_size(const cJSON *v, uint64_t *out) {
    if (!cJSON_IsNumber(v)) return "is not a number";
    double d = v->valuedouble;
    if (d < 0) return "is negative";
    if (!(d < ST_MAX_INT)) return "is 2^53 or more"; /* also catches inf from 1e999 */
    uint64_t u = (uint64_t)d;
    if ((double)u != d) return "is not an integer";
    *out = u;
    return NULL;
}

typedef struct span {
    uint64_t begin, end;
    size_t idx;
} span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Validate one tensor entry into t (name and data left to the caller) and *sp. */
static tfm_status parse_tensor(const char *label, const cJSON *e, size_t data_len, st_tensor *t,
                               span *sp) {
    const char *name = e->string;
    if (name[0] == '\0') return tfm_error(TFM_ERR_FORMAT, "%s: a tensor has an empty name", label);
    if (!cJSON_IsObject(e))
        return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': entry is not a JSON object",
                         label, name);

    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *c = e->child; c; c = c->next) {
        const cJSON **slot = strcmp(c->string, "dtype") == 0          ? &dtype
                             : strcmp(c->string, "shape") == 0        ? &shape
                             : strcmp(c->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': unknown field '" NAME "'",
                             label, name, c->string);
        if (*slot)
            return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': duplicate field '%s'",
                             label, name, c->string);
        *slot = c;
    }
    const char *missing = !dtype ? "dtype" : !shape ? "shape" : !offs ? "data_offsets" : NULL;
    if (missing)
        return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': missing field '%s'", label,
                         name, missing);

    if (!cJSON_IsString(dtype))
        return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': dtype is not a string", label,
                         name);
    size_t d = 0;
    while (d < N_DTYPES && strcmp(dtypes[d].name, dtype->valuestring) != 0) d++;
    if (d == N_DTYPES)
        return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': unknown dtype '%.40s'", label,
                         name, dtype->valuestring);
    t->dtype = (st_dtype)d;

    if (!cJSON_IsArray(shape))
        return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': shape is not an array", label,
                         name);
    size_t ndim = child_count(shape);
    if (ndim > ST_MAX_DIMS)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': shape has %zu dims, more than the %d supported",
                         label, name, ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    int i = 0;
    for (const cJSON *c = shape->child; c; c = c->next, i++) {
        uint64_t v;
        const char *why = json_size(c, &v);
        if (why) {
            if (cJSON_IsNumber(c))
                return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': shape[%d] = %.17g %s",
                                 label, name, i, c->valuedouble, why);
            return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': shape[%d] %s", label, name,
                             i, why);
        }
        t->shape[i] = (int64_t)v;
    }
    char sbuf[SHAPE_BUF];
    t->numel = shape_numel(t->ndim, t->shape);
    if (t->numel < 0)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': shape %s has too many elements (numel "
                         "overflows 64 bits)",
                         label, name, fmt_shape(sbuf, t->ndim, t->shape));

    if (!cJSON_IsArray(offs) || child_count(offs) != 2)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': data_offsets is not an array [begin, end]",
                         label, name);
    uint64_t be[2];
    for (int k = 0; k < 2; k++) {
        const cJSON *c = k ? offs->child->next : offs->child;
        const char *why = json_size(c, &be[k]);
        if (why) {
            if (cJSON_IsNumber(c))
                return tfm_error(TFM_ERR_FORMAT,
                                 "%s: tensor '" NAME "': data_offsets[%d] = %.17g %s", label,
                                 name, k, c->valuedouble, why);
            return tfm_error(TFM_ERR_FORMAT, "%s: tensor '" NAME "': data_offsets[%d] %s",
                             label, name, k, why);
        }
    }
    if (be[0] > be[1])
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': data_offsets [%" PRIu64 ", %" PRIu64
                         "] have begin > end",
                         label, name, be[0], be[1]);
    if (be[1] > data_len)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': data_offsets [%" PRIu64 ", %" PRIu64
                         "] end beyond the data section of %zu bytes",
                         label, name, be[0], be[1], data_len);
    size_t esize = dtypes[d].size;
    if ((uint64_t)t->numel > SIZE_MAX / esize)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': %s %s needs more bytes than fit in size_t",
                         label, name, dtypes[d].name, fmt_shape(sbuf, t->ndim, t->shape));
    t->nbytes = (size_t)t->numel * esize;
    if (be[1] - be[0] != t->nbytes)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': data_offsets [%" PRIu64 ", %" PRIu64
                         "] give %" PRIu64 " bytes, but %s %s needs %zu",
                         label, name, be[0], be[1], be[1] - be[0], dtypes[d].name,
                         fmt_shape(sbuf, t->ndim, t->shape), t->nbytes);
    sp->begin = be[0];
    sp->end = be[1];
    return TFM_OK;
}

/* The tensors' byte ranges, sorted, must tile [0, data_len) exactly: an overlap would
 * alias two tensors, a hole is unaccounted-for data (the reference implementation
 * rejects both). */
static tfm_status check_coverage(const char *label, const st_tensor *ts, span *sp, size_t n,
                                 size_t data_len) {
    qsort(sp, n, sizeof *sp, span_cmp);
    uint64_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (sp[i].begin < at)
            return tfm_error(TFM_ERR_FORMAT,
                             "%s: tensors '" NAME "' [%" PRIu64 ", %" PRIu64 "] and '" NAME
                             "' [%" PRIu64 ", %" PRIu64 "] overlap",
                             label, ts[sp[i - 1].idx].name, sp[i - 1].begin, sp[i - 1].end,
                             ts[sp[i].idx].name, sp[i].begin, sp[i].end);
        if (sp[i].begin > at)
            return tfm_error(TFM_ERR_FORMAT,
                             "%s: hole in the data section: bytes [%" PRIu64 ", %" PRIu64
                             ") before tensor '" NAME "' belong to no tensor",
                             label, at, sp[i].begin, ts[sp[i].idx].name);
        at = sp[i].end;
    }
    if (at != data_len)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: hole in the data section: bytes [%" PRIu64
                         ", %zu) at its end belong to no tensor",
                         label, at, data_len);
    return TFM_OK;
}

static tfm_status truncated(const char *label, uint64_t len) {
    return tfm_error(TFM_ERR_FORMAT,
                     "%s: truncated: %" PRIu64 " bytes, too short for the 8-byte header length",
                     label, len);
}

/* Validate buf[0, len) into f (whose label is set); f->tensors etc. are owned by f even
 * on failure, for st_close. */
static tfm_status parse(st_file *f, const unsigned char *buf, size_t len) {
    const char *label = f->label;
    if (len < 8) return truncated(label, len);
    uint64_t n = load_le64(buf);
    if (n < 2)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: header length %" PRIu64 " is too small for a JSON object", label,
                         n);
    if (n > ST_MAX_HEADER)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: header length %" PRIu64 " exceeds the %u-byte limit (corrupt, or "
                         "not a safetensors file)",
                         label, n, ST_MAX_HEADER);
    if (n > len - 8)
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: truncated: header length %" PRIu64 " but only %zu bytes follow",
                         label, n, len - 8);
    const unsigned char *hdr = buf + 8;
    size_t data_len = len - 8 - (size_t)n;
    TFM_TRY(scan_header(label, hdr, (size_t)n));

    /* cJSON gets its own copy: it reads the buffer as a C string in places. */
    char *text = malloc((size_t)n + 1);
    if (!text) return tfm_error(TFM_ERR_NOMEM, "%s: out of memory copying the header", label);
    memcpy(text, hdr, (size_t)n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    tfm_status s = TFM_OK;
    key_ref *keys = NULL;
    span *spans = NULL;
    if (!root) {
        s = tfm_error(TFM_ERR_FORMAT, "%s: header is not valid JSON (error near byte %td)", label,
                      end ? end - text : (ptrdiff_t)0);
        goto done;
    }
    if (!cJSON_IsObject(root)) {
        s = tfm_error(TFM_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }
    for (const char *p = end; p < text + n; p++)
        if (!json_space((unsigned char)*p)) {
            s = tfm_error(TFM_ERR_FORMAT,
                          "%s: header has bytes after the JSON object (at byte %td)", label,
                          p - text);
            goto done;
        }

    size_t nchild = child_count(root);
    const char *dup;
    keys = sorted_keys(root, nchild, &dup);
    if (!keys) goto nomem;
    if (dup) {
        s = tfm_error(TFM_ERR_FORMAT, "%s: duplicate key '" NAME "' in the header", label, dup);
        goto done;
    }

    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(root, "__metadata__");
    size_t strings_len = 0;
    if (meta) {
        if (!cJSON_IsObject(meta)) {
            s = tfm_error(TFM_ERR_FORMAT, "%s: __metadata__ is not a JSON object", label);
            goto done;
        }
        for (const cJSON *c = meta->child; c; c = c->next) {
            if (!cJSON_IsString(c)) {
                s = tfm_error(TFM_ERR_FORMAT,
                              "%s: __metadata__ value for key '" NAME "' is not a string", label,
                              c->string);
                goto done;
            }
            strings_len += strlen(c->string) + strlen(c->valuestring) + 2;
        }
        size_t nm = child_count(meta);
        key_ref *mk = sorted_keys(meta, nm, &dup);
        if (!mk) goto nomem;
        free(mk); /* only the duplicate check was wanted */
        if (dup) {
            s = tfm_error(TFM_ERR_FORMAT, "%s: duplicate key '" NAME "' in __metadata__", label,
                          dup);
            goto done;
        }
        f->nmeta = nm;
    }

    size_t nt = nchild - (meta ? 1 : 0);
    f->tensors = calloc(nt ? nt : 1, sizeof *f->tensors);
    f->by_name = malloc((nt ? nt : 1) * sizeof *f->by_name);
    f->meta = calloc(f->nmeta ? f->nmeta : 1, sizeof *f->meta);
    spans = malloc((nt ? nt : 1) * sizeof *spans);
    if (!f->tensors || !f->by_name || !f->meta || !spans) goto nomem;

    size_t ti = 0;
    for (const cJSON *c = root->child; c; c = c->next) {
        if (c == meta) continue;
        spans[ti].idx = ti;
        s = parse_tensor(label, c, data_len, &f->tensors[ti], &spans[ti]);
        if (s) goto done;
        f->tensors[ti].name = c->string; /* until the copy below */
        strings_len += strlen(c->string) + 1;
        ti++;
    }
    f->ntensors = nt;
    s = check_coverage(label, f->tensors, spans, nt, data_len);
    if (s) goto done;

    /* Valid: copy the strings out of the JSON tree and point into the data. */
    f->strings = malloc(strings_len ? strings_len : 1);
    if (!f->strings) goto nomem;
    char *w = f->strings;
#define COPY_STR(dst, src)                                                                     \
    do {                                                                                       \
        size_t l_ = strlen(src) + 1;                                                           \
        memcpy(w, (src), l_);                                                                  \
        (dst) = w;                                                                             \
        w += l_;                                                                               \
    } while (0)
    for (size_t i = 0; i < nt; i++) COPY_STR(f->tensors[i].name, f->tensors[i].name);
    size_t mi = 0;
    for (const cJSON *c = meta ? meta->child : NULL; c; c = c->next, mi++) {
        COPY_STR(f->meta[mi].key, c->string);
        COPY_STR(f->meta[mi].value, c->valuestring);
    }
#undef COPY_STR
    const unsigned char *data = hdr + n;
    for (size_t i = 0; i < nt; i++) f->tensors[spans[i].idx].data = data + spans[i].begin;
    /* keys[] is in name order over all children; drop __metadata__ and map child index
     * to tensor index (children after it shift down by one). */
    size_t meta_child = SIZE_MAX, k = 0;
    for (size_t i = 0; i < nchild; i++)
        if (meta && strcmp(keys[i].key, "__metadata__") == 0) meta_child = keys[i].idx;
    for (size_t i = 0; i < nchild; i++) {
        if (keys[i].idx == meta_child) continue;
        f->by_name[k++] = keys[i].idx - (keys[i].idx > meta_child ? 1 : 0);
    }
    goto done;

nomem:
    s = tfm_error(TFM_ERR_NOMEM, "%s: out of memory reading the header", label);
done:
    if (s) f->ntensors = f->nmeta = 0; /* names may point into the freed tree */
    free(spans);
    free(keys);
    cJSON_Delete(root);
    free(text);
    return s;
}

static tfm_status open_common(const char *label, const unsigned char *buf, size_t len,
                              void *map, st_file **out) {
    st_file *f = calloc(1, sizeof *f);
    char *l = f ? strdup(label) : NULL;
    if (!l) {
        free(f);
        if (map) munmap(map, len);
        return tfm_error(TFM_ERR_NOMEM, "%s: out of memory", label);
    }
    f->label = l;
    f->map = map;
    f->map_len = len;
    tfm_status s = parse(f, buf, len);
    if (s) {
        st_close(f);
        return s;
    }
    *out = f;
    return TFM_OK;
}

tfm_status st_open(const char *path, st_file **out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "st_open: out is NULL");
    *out = NULL;
    if (!path) return tfm_error(TFM_ERR_INVALID_ARG, "st_open: path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tfm_error(TFM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return tfm_error(TFM_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return tfm_error(TFM_ERR_IO, "%s: not a regular file", path);
    }
    /* mmap of zero bytes fails, so short files are reported before mapping. */
    if (st.st_size < 8) {
        close(fd);
        return truncated(path, (uint64_t)st.st_size);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return tfm_error(TFM_ERR_IO, "%s: too large to map", path);
    }
    size_t len = (size_t)st.st_size;
    /* Private and writable: copy-on-write pages, so a module can use mapped tensors as
     * its parameters and callers can still write to them; the file never changes. */
    void *map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (map == MAP_FAILED) return tfm_error(TFM_ERR_IO, "%s: cannot map: %s", path, strerror(e));
    return open_common(path, map, len, map, out);
}

tfm_status st_open_memory(const void *buf, size_t len, const char *label, st_file **out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "st_open_memory: out is NULL");
    *out = NULL;
    if (!label) label = "<memory>";
    if (!buf && len) return tfm_error(TFM_ERR_INVALID_ARG, "%s: buffer is NULL", label);
    return open_common(label, buf, len, NULL, out);
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    free(f->strings);
    free(f->meta);
    free(f->by_name);
    free(f->tensors);
    free(f->label);
    free(f);
}

const char *st_label(const st_file *f) { return f ? f->label : NULL; }
size_t st_count(const st_file *f) { return f ? f->ntensors : 0; }

const st_tensor *st_at(const st_file *f, size_t i) {
    return f && i < f->ntensors ? &f->tensors[i] : NULL;
}

const st_tensor *st_find(const st_file *f, const char *name) {
    if (!f || !name) return NULL;
    size_t lo = 0, hi = f->ntensors;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const st_tensor *t = &f->tensors[f->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    if (!f || !key) return NULL;
    for (size_t i = 0; i < f->nmeta; i++)
        if (strcmp(f->meta[i].key, key) == 0) return f->meta[i].value;
    return NULL;
}

size_t st_meta_count(const st_file *f) { return f ? f->nmeta : 0; }

void st_meta_at(const st_file *f, size_t i, const char **key, const char **value) {
    bool ok = f && i < f->nmeta;
    if (key) *key = ok ? f->meta[i].key : NULL;
    if (value) *value = ok ? f->meta[i].value : NULL;
}

/* ---- conversion to float ------------------------------------------------------- */

/* Little-endian loads byte by byte: the data may be unaligned, and compilers turn
 * these into single loads on little-endian hosts. */
static uint16_t load_le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t load_le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static float f32_from_bits(uint32_t b) {
    float x;
    memcpy(&x, &b, sizeof x);
    return x;
}

/* IEEE binary16 → binary32, exact for every value. Subnormals are renormalised; NaNs
 * keep sign and payload and come out quiet, as from the F16C instruction PyTorch uses. */
static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | mant << 13 | (mant ? 0x400000u : 0));
    if (exp) return f32_from_bits(sign | (exp + 112) << 23 | mant << 13);
    if (!mant) return f32_from_bits(sign);
    uint32_t shift = 0; /* value = mant × 2^-24; shift its leading 1 into the hidden bit */
    while (!(mant & 0x400)) mant <<= 1, shift++;
    return f32_from_bits(sign | (113 - shift) << 23 | (mant & 0x3ff) << 13);
}

tfm_status st_read_f32(const st_file *f, const st_tensor *t, float *dst) {
    const char *label = f ? f->label : "<safetensors>";
    if (!t) return tfm_error(TFM_ERR_INVALID_ARG, "%s: st_read_f32: tensor is NULL", label);
    if (!dst && t->numel > 0)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "%s: tensor '" NAME "': st_read_f32: destination is NULL", label,
                         t->name);
    const unsigned char *p = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            uint64_t b = load_le64(p + 8 * i);
            double d;
            memcpy(&d, &b, sizeof d);
            dst[i] = (float)d; /* round to nearest, like Tensor.float() */
        }
        return TFM_OK;
    case ST_F32:
        for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits(load_le32(p + 4 * i));
        return TFM_OK;
    case ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(load_le16(p + 2 * i));
        return TFM_OK;
    case ST_BF16: /* bfloat16 is the upper half of a binary32 */
        for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)load_le16(p + 2 * i) << 16);
        return TFM_OK;
    default:
        return tfm_error(TFM_ERR_FORMAT,
                         "%s: tensor '" NAME "': dtype %s is not a floating type, cannot read "
                         "it as float",
                         label, t->name, st_dtype_name(t->dtype));
    }
}

/* ---- writer ------------------------------------------------------------------ */

typedef struct st_entry {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
} st_entry;

typedef struct st_kv {
    char *key, *value;
} st_kv;

struct st_writer {
    st_entry *t;
    size_t n, cap;
    st_kv *m;
    size_t nm, capm;
};

tfm_status st_writer_new(st_writer **out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_new: out is NULL");
    *out = calloc(1, sizeof **out);
    return *out ? TFM_OK : tfm_error(TFM_ERR_NOMEM, "st_writer_new: out of memory");
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) free(w->t[i].name);
    for (size_t i = 0; i < w->nm; i++) free(w->m[i].key), free(w->m[i].value);
    free(w->t);
    free(w->m);
    free(w);
}

/* Grow *arr (of *cap elements of `size`) to hold n + 1. */
static bool grow(void **arr, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, c * size);
    if (!p) return false;
    *arr = p;
    *cap = c;
    return true;
}

tfm_status st_writer_meta(st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_meta: NULL writer, key or value");
    if (!utf8_valid(key) || !utf8_valid(value))
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "st_writer_meta: key '" NAME "' or its value is not valid UTF-8", key);
    char *v = strdup(value);
    if (!v) return tfm_error(TFM_ERR_NOMEM, "st_writer_meta: out of memory");
    for (size_t i = 0; i < w->nm; i++)
        if (strcmp(w->m[i].key, key) == 0) {
            free(w->m[i].value);
            w->m[i].value = v;
            return TFM_OK;
        }
    char *k = strdup(key);
    if (!k || !grow((void **)&w->m, &w->capm, w->nm, sizeof *w->m)) {
        free(k);
        free(v);
        return tfm_error(TFM_ERR_NOMEM, "st_writer_meta: out of memory");
    }
    w->m[w->nm++] = (st_kv){k, v};
    return TFM_OK;
}

tfm_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data) {
    if (!w || !name) return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_add: NULL writer or name");
    if (!name[0]) return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_add: empty tensor name");
    if (strcmp(name, "__metadata__") == 0 || !utf8_valid(name))
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "st_writer_add: tensor name '" NAME "' is reserved or not valid UTF-8",
                         name);
    if ((unsigned)dtype >= N_DTYPES)
        return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_add: tensor '" NAME "': bad dtype %d",
                         name, (int)dtype);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "st_writer_add: tensor '" NAME "': ndim %d not in [0, %d] or shape NULL",
                         name, ndim, ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0 || (uint64_t)shape[i] >= ST_MAX_INT_U64)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "st_writer_add: tensor '" NAME "': shape[%d] = %" PRId64
                             " is negative or 2^53 or more",
                             name, i, shape[i]);
    int64_t numel = shape_numel(ndim, shape);
    size_t esize = dtypes[dtype].size;
    if (numel < 0 || (uint64_t)numel > SIZE_MAX / esize)
        return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_add: tensor '" NAME "': too large", name);
    size_t nbytes = (size_t)numel * esize;
    if (nbytes && !data)
        return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_add: tensor '" NAME "': data is NULL",
                         name);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "st_writer_add: tensor '" NAME "' was already added", name);
    char *copy = strdup(name);
    if (!copy || !grow((void **)&w->t, &w->cap, w->n, sizeof *w->t)) {
        free(copy);
        return tfm_error(TFM_ERR_NOMEM, "st_writer_add: out of memory");
    }
    st_entry *e = &w->t[w->n++];
    *e = (st_entry){.name = copy, .dtype = dtype, .ndim = ndim, .data = data, .nbytes = nbytes};
    for (int i = 0; i < ndim; i++) e->shape[i] = shape[i];
    return TFM_OK;
}

/* An integer as a raw JSON number: cJSON would print large doubles as 1e+15, which
 * readers expecting an unsigned integer reject. */
static cJSON *json_int(uint64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, v);
    return cJSON_CreateRaw(buf);
}

/* The header JSON (unpadded), or NULL when out of memory. */
static char *build_header(const st_writer *w) {
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;
    if (ok && w->nm) {
        cJSON *m = cJSON_CreateObject();
        ok = m && cJSON_AddItemToObject(root, "__metadata__", m);
        if (!ok) cJSON_Delete(m);
        for (size_t i = 0; ok && i < w->nm; i++)
            ok = cJSON_AddStringToObject(m, w->m[i].key, w->m[i].value) != NULL;
    }
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n; i++) {
        const st_entry *e = &w->t[i];
        cJSON *o = cJSON_CreateObject();
        ok = o && cJSON_AddItemToObject(root, e->name, o);
        if (!ok) {
            cJSON_Delete(o);
            break;
        }
        cJSON *shape = NULL, *offs = NULL;
        ok = cJSON_AddStringToObject(o, "dtype", dtypes[e->dtype].name) &&
             (shape = cJSON_AddArrayToObject(o, "shape")) != NULL &&
             (offs = cJSON_AddArrayToObject(o, "data_offsets")) != NULL;
        for (int d = 0; ok && d < e->ndim; d++) {
            cJSON *v = json_int((uint64_t)e->shape[d]);
            ok = v && cJSON_AddItemToArray(shape, v);
            if (!ok) cJSON_Delete(v);
        }
        uint64_t be[2] = {off, off + e->nbytes};
        for (int k = 0; ok && k < 2; k++) {
            cJSON *v = json_int(be[k]);
            ok = v && cJSON_AddItemToArray(offs, v);
            if (!ok) cJSON_Delete(v);
        }
        off += e->nbytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return text;
}

tfm_status st_writer_write(const st_writer *w, const char *path) {
    if (!w || !path)
        return tfm_error(TFM_ERR_INVALID_ARG, "st_writer_write: NULL writer or path");
    uint64_t total = 0;
    for (size_t i = 0; i < w->n; i++) {
        total += w->t[i].nbytes;
        if (total < w->t[i].nbytes || total >= ST_MAX_INT_U64)
            return tfm_error(TFM_ERR_INVALID_ARG, "%s: tensor data exceeds 2^53 bytes", path);
    }
    char *text = build_header(w);
    if (!text) return tfm_error(TFM_ERR_NOMEM, "%s: out of memory building the header", path);
    size_t len = strlen(text);
    size_t padded = (len + 7) / 8 * 8; /* so that the data starts 8-byte aligned */
    if (padded > ST_MAX_HEADER) {
        free(text);
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "%s: header of %zu bytes exceeds the %u-byte limit of readers", path,
                         padded, ST_MAX_HEADER);
    }
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(text);
        return tfm_error(TFM_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());

    const char *what = "create";
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++) lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    bool ok = fd >= 0;
    if (ok) what = "write";
    ok = ok && write_all(fd, lenbuf, 8) && write_all(fd, text, len) &&
         write_all(fd, spaces, padded - len);
    for (size_t i = 0; ok && i < w->n; i++)
        ok = write_all(fd, w->t[i].data, w->t[i].nbytes);
    if (ok) {
        what = "fsync";
        ok = fsync(fd) == 0;
    }
    if (ok) {
        what = "close";
        ok = close(fd) == 0;
        fd = -1;
    }
    if (ok) {
        what = "rename";
        ok = rename(tmp, path) == 0;
    }
    int err = errno; /* before free() or close() can change it */
    free(text);
    if (!ok) {
        if (fd >= 0) close(fd);
        unlink(tmp);
        tfm_status s = tfm_error(TFM_ERR_IO, "%s: cannot %s temporary file '%s': %s", path, what,
                                 tmp, strerror(err));
        free(tmp);
        return s;
    }
    free(tmp);
    int e = fsync_parent(path);
    if (e)
        return tfm_error(TFM_ERR_IO,
                         "%s: written, but fsync of its directory failed (%s): it may not "
                         "survive a crash",
                         path, strerror(e));
    return TFM_OK;
}
