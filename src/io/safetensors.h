/* safetensors.h — reading and writing the safetensors format (Hugging Face):
 *   8 bytes  little-endian u64 header length n
 *   n bytes  JSON object: { "__metadata__": {str: str}, name: {"dtype": "F32",
 *            "shape": [d0, ...], "data_offsets": [begin, end]}, ... }
 *   rest     raw little-endian tensor data; offsets are relative to its start.
 *
 * Everything read from the file is validated before any pointer is formed into it:
 * header length against the file size, JSON well-formed and an object, no
 * duplicate keys, known dtypes, non-negative dimensions whose product (and product
 * with the dtype size) does not overflow, offsets within the data, byte length =
 * dtype size × element count, tensors not overlapping and covering the data
 * section with no holes. Errors name the file, the tensor and the problem.
 */
#ifndef TFM_IO_SAFETENSORS_H
#define TFM_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "tfm.h"

#define ST_MAX_DIMS 8

typedef enum st_dtype {
    ST_F64, ST_F32, ST_F16, ST_BF16, ST_BOOL, ST_U8, ST_I8, ST_I16, ST_I32, ST_I64,
} st_dtype;

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    const void *data; /* inside the mapped file; may be unaligned */
    size_t nbytes;
} st_tensor;

typedef struct st_file st_file;

/* Map and validate a file. `*out` is NULL on failure. */
tfm_status st_open(const char *path, st_file **out);
/* Validate a buffer the caller keeps alive (used by fuzzers and tests);
 * `label` names it in error messages. */
tfm_status st_open_memory(const void *buf, size_t len, const char *label, st_file **out);
void st_close(st_file *f);

const char *st_label(const st_file *f); /* the path or label given on open */
size_t st_count(const st_file *f);      /* tensors, in header order */
const st_tensor *st_at(const st_file *f, size_t i);
const st_tensor *st_find(const st_file *f, const char *name); /* NULL if absent */

/* __metadata__ entries (string → string); NULL if absent. */
const char *st_meta(const st_file *f, const char *key);
size_t st_meta_count(const st_file *f);
void st_meta_at(const st_file *f, size_t i, const char **key, const char **value);

const char *st_dtype_name(st_dtype d); /* "F32", ... */
size_t st_dtype_size(st_dtype d);

/* Convert a floating tensor (F64, F32, F16, BF16) to float: dst has t->numel slots.
 * Any other dtype is TFM_ERR_FORMAT naming the tensor. */
tfm_status st_read_f32(const st_file *f, const st_tensor *t, float *dst);

/* ---- writer ---- */
typedef struct st_writer st_writer;

tfm_status st_writer_new(st_writer **out);
void st_writer_free(st_writer *w);
/* Both strings are copied. A repeated key replaces the earlier value. */
tfm_status st_writer_meta(st_writer *w, const char *key, const char *value);
/* `data` (nbytes = dtype size × product of shape) is referenced, not copied: it must
 * stay alive until st_writer_write returns. A repeated name is TFM_ERR_INVALID_ARG. */
tfm_status st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                         const int64_t *shape, const void *data);
/* Write atomically: a temporary file beside `path`, fsync, rename over `path`,
 * fsync of the directory. On failure nothing is left at `path` that was not there
 * before, and the temporary file is removed. */
tfm_status st_writer_write(const st_writer *w, const char *path);

#endif
