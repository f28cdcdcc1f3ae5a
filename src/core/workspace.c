/* workspace.c — bump allocator with overflow chunks; see workspace.h. */
#include "core/workspace.h"

#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"

#define WS_ALIGN 64

struct ws_chunk {
    ws_chunk *next;
    size_t bytes;
    /* followed by padding and the payload */
};

static size_t align_up(size_t n) { return (n + WS_ALIGN - 1) & ~(size_t)(WS_ALIGN - 1); }

void ws_init(tfm_ws *ws) { *ws = (tfm_ws){0}; }

static void free_chunks_until(tfm_ws *ws, ws_chunk *stop) {
    while (ws->chunks && ws->chunks != stop) {
        ws_chunk *c = ws->chunks;
        ws->chunks = c->next;
        free(c);
    }
}

void ws_free(tfm_ws *ws) {
    free_chunks_until(ws, NULL);
    free(ws->base);
    *ws = (tfm_ws){0};
}

tfm_status ws_begin(tfm_ws *ws) {
    free_chunks_until(ws, NULL);
    if (ws->peak > ws->cap) {
        size_t cap = align_up(ws->peak);
        void *p = NULL;
        free(ws->base);
        ws->base = NULL;
        ws->cap = 0;
        if (posix_memalign(&p, WS_ALIGN, cap) != 0)
            return tfm_error(TFM_ERR_NOMEM, "workspace: cannot allocate %zu bytes", cap);
        ws->base = p;
        ws->cap = cap;
    }
    ws->used = 0;
    ws->in_use = 0;
    ws->peak = 0;
    ws->failed = false;
    return TFM_OK;
}

void *ws_alloc(tfm_ws *ws, size_t bytes) {
    size_t n = align_up(bytes ? bytes : 1);
    if (n < bytes) {
        ws->failed = true;
        return NULL;
    }
    void *p;
    if (ws->base && ws->cap - ws->used >= n) {
        p = ws->base + ws->used;
        ws->used += n;
    } else {
        size_t head = align_up(sizeof(ws_chunk));
        void *raw = NULL;
        if (n > SIZE_MAX - head || posix_memalign(&raw, WS_ALIGN, head + n) != 0) {
            ws->failed = true;
            return NULL;
        }
        ws_chunk *c = raw;
        c->bytes = n;
        c->next = ws->chunks;
        ws->chunks = c;
        p = (char *)raw + head;
    }
    ws->in_use += n;
    if (ws->in_use > ws->peak) ws->peak = ws->in_use;
    return p;
}

float *ws_floats(tfm_ws *ws, size_t count) {
    if (count > SIZE_MAX / sizeof(float)) {
        ws->failed = true;
        return NULL;
    }
    return ws_alloc(ws, count * sizeof(float));
}

ws_mark_t ws_mark(const tfm_ws *ws) {
    return (ws_mark_t){.used = ws->used, .in_use = ws->in_use, .chunks = ws->chunks};
}

void ws_release(tfm_ws *ws, ws_mark_t m) {
    free_chunks_until(ws, m.chunks);
    ws->used = m.used;
    ws->in_use = m.in_use;
}
