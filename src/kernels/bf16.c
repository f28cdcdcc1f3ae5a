/* bf16.c — converting to bfloat16, and the bf16 twins of a model's weights. */
#include "kernels/bf16.h"

#include <stdlib.h>

#include "core/status.h"

void bf16_convert(uint16_t *dst, const float *src, size_t n) {
    const int64_t len = (int64_t)n;
#pragma omp parallel for schedule(static) if (len > (1 << 16))
    for (int64_t i = 0; i < len; i++) dst[i] = bf16_from_f32(src[i]);
}

static int range_cmp(const void *a, const void *b) {
    const bf16_range *x = a, *y = b;
    return x->f32 < y->f32 ? -1 : x->f32 > y->f32;
}

void bf16_weights_free(bf16_weights *w) {
    if (!w) return;
    free(w->ranges);
    free(w->block);
    *w = (bf16_weights){0};
}

tfm_status bf16_weights_build(bf16_weights *w, const float *const *f32, const size_t *counts,
                              size_t n) {
    bf16_weights_free(w);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += counts[i];
    w->ranges = calloc(n ? n : 1, sizeof *w->ranges);
    w->block = malloc((total ? total : 1) * sizeof *w->block);
    if (!w->ranges || !w->block) {
        bf16_weights_free(w);
        return tfm_error(TFM_ERR_NOMEM, "out of memory for the bf16 copy of the weights");
    }
    size_t off = 0, kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (!counts[i] || !f32[i]) continue;
        w->ranges[kept++] = (bf16_range){f32[i], counts[i], w->block + off};
        off += counts[i];
    }
    w->n = kept;
    qsort(w->ranges, w->n, sizeof *w->ranges, range_cmp);
    bf16_weights_refresh(w);
    return TFM_OK;
}

void bf16_weights_refresh(bf16_weights *w) {
    for (size_t i = 0; i < w->n; i++)
        bf16_convert(w->ranges[i].bf16, w->ranges[i].f32, w->ranges[i].count);
    w->stale = false;
}

const uint16_t *bf16_weights_find(const bf16_weights *w, const float *p) {
    if (!w || !w->n || !p) return NULL;
    size_t lo = 0, hi = w->n; /* the last range starting at or before p */
    while (hi - lo > 1) {
        const size_t mid = lo + (hi - lo) / 2;
        if (w->ranges[mid].f32 <= p) lo = mid;
        else hi = mid;
    }
    const bf16_range *r = &w->ranges[lo];
    if (p < r->f32 || p >= r->f32 + r->count) return NULL;
    return r->bf16 + (p - r->f32);
}

const uint16_t *bf16_weights_find_span(const bf16_weights *w, const float *p, size_t count) {
    const uint16_t *first = bf16_weights_find(w, p);
    if (!first || !count) return first;
    const uint16_t *last = bf16_weights_find(w, p + (count - 1));
    return last == first + (count - 1) ? first : NULL;
}
