/* workspace.h — a per-module scratch arena, so a forward pass of a given shape does
 * no heap allocation after its first call.
 *
 * Allocation is a bump pointer in one block. A request that does not fit during a
 * call goes to an overflow chunk; the next ws_begin() replaces block and chunks by
 * one block as large as the peak seen, so the steady state allocates nothing.
 * ws_mark()/ws_release() scope temporaries (stack discipline).
 */
#ifndef TFM_CORE_WORKSPACE_H
#define TFM_CORE_WORKSPACE_H

#include <stddef.h>

#include "tfm.h"

typedef struct ws_chunk ws_chunk;

typedef struct tfm_ws {
    char *base;        /* the main block */
    size_t cap;        /* its size in bytes */
    size_t used;       /* bytes in use in base */
    ws_chunk *chunks;  /* overflow chunks, newest first */
    size_t in_use;     /* bytes in use in base and chunks together */
    size_t peak;       /* the largest in_use since the last ws_begin */
    bool failed;       /* an allocation failed since ws_begin */
} tfm_ws;

typedef struct ws_mark_t {
    size_t used;
    size_t in_use;
    ws_chunk *chunks;
} ws_mark_t;

void ws_init(tfm_ws *ws);
void ws_free(tfm_ws *ws);
/* Start of a top-level call: fold the previous call's chunks into one block. */
tfm_status ws_begin(tfm_ws *ws);
/* 64-byte aligned, uninitialised; NULL (and ws->failed) when out of memory. */
void *ws_alloc(tfm_ws *ws, size_t bytes);
/* Overflow-checked count × size allocation of floats (NULL on overflow or OOM). */
float *ws_floats(tfm_ws *ws, size_t count);
ws_mark_t ws_mark(const tfm_ws *ws);
void ws_release(tfm_ws *ws, ws_mark_t m);

#endif
