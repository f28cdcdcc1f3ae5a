/* params.c — the parameter list; see params.h. */
#include "nn/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <math.h>

#include "core/rng.h"
#include "core/status.h"

void param_list_init(param_list *l) { *l = (param_list){0}; }

void param_list_free(param_list *l) {
    free(l->items);
    *l = (param_list){0};
}

void param_add(param_list *l, bool present, const char *prefix, const char *name, float **slot,
               param_init init, int64_t fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    *slot = NULL;
    if (!present || l->failed) return;
    if (l->count == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 32;
        param_entry *items = realloc(l->items, cap * sizeof *items);
        if (!items) {
            l->failed = true;
            return;
        }
        l->items = items;
        l->cap = cap;
    }
    param_entry *e = &l->items[l->count];
    int len = snprintf(e->name, sizeof e->name, "%s%s", prefix, name);
    if (len < 0 || (size_t)len >= sizeof e->name) {
        l->failed = true;
        return;
    }
    int64_t dims[3] = {d0, d1, d2};
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < 3; i++) {
        e->shape[i] = i < ndim ? dims[i] : 0;
        if (i < ndim) e->numel *= dims[i];
    }
    e->slot = slot;
    e->init = init;
    e->fan_in = fan_in;
    l->count++;
}

tfm_status param_list_total(const param_list *l, size_t *total) {
    size_t t = 0;
    for (size_t i = 0; i < l->count; i++) {
        size_t n = (size_t)l->items[i].numel;
        if (n > SIZE_MAX / sizeof(float) - t)
            return tfm_error(TFM_ERR_INVALID_ARG, "parameters: total size overflows");
        t += n;
    }
    *total = t;
    return TFM_OK;
}

void param_list_bind(const param_list *l, float *block) {
    size_t off = 0;
    for (size_t i = 0; i < l->count; i++) {
        *l->items[i].slot = block + off;
        off += (size_t)l->items[i].numel;
    }
}

const param_entry *param_list_find(const param_list *l, const char *name) {
    for (size_t i = 0; i < l->count; i++)
        if (strcmp(l->items[i].name, name) == 0) return &l->items[i];
    return NULL;
}

bool param_prefix(char *out, const char *prefix, const char *name) {
    int len = snprintf(out, PARAM_NAME_MAX, name[0] ? "%s%s." : "%s%s", prefix, name);
    return len >= 0 && len < PARAM_NAME_MAX;
}

/* PyTorch's torch.nn.init: fans of a (out, in, ...) tensor. */
static void fans(const param_entry *e, double *fan_in, double *fan_out) {
    double receptive = 1.0;
    for (int i = 2; i < e->ndim; i++) receptive *= (double)e->shape[i];
    *fan_in = (double)(e->ndim > 1 ? e->shape[1] : e->shape[0]) * receptive;
    *fan_out = (double)e->shape[0] * receptive;
}

static void init_entry(const param_entry *e, tfm_rng *rng, bool xavier_matrices) {
    float *x = *e->slot;
    double fi, fo;
    fans(e, &fi, &fo);
    param_init how = e->init;
    if (xavier_matrices && e->ndim > 1) how = INIT_XAVIER_UNIFORM;
    float bound;
    switch (how) {
    case INIT_ZERO:
        for (int64_t i = 0; i < e->numel; i++) x[i] = 0.0f;
        break;
    case INIT_ONE:
        for (int64_t i = 0; i < e->numel; i++) x[i] = 1.0f;
        break;
    case INIT_XAVIER_UNIFORM:
        bound = (float)sqrt(6.0 / (fi + fo));
        for (int64_t i = 0; i < e->numel; i++) x[i] = rng_uniform_range(rng, -bound, bound);
        break;
    case INIT_XAVIER_NORMAL:
        bound = (float)sqrt(2.0 / (fi + fo));
        for (int64_t i = 0; i < e->numel; i++) x[i] = bound * rng_normal(rng);
        break;
    case INIT_KAIMING_LINEAR: /* kaiming_uniform(a=√5) = U(±1/√fan_in) */
    case INIT_LINEAR_BIAS:
        bound = (float)(1.0 / sqrt((double)e->fan_in));
        for (int64_t i = 0; i < e->numel; i++) x[i] = rng_uniform_range(rng, -bound, bound);
        break;
    }
}

void param_list_init_values(const param_list *l, uint64_t seed, bool xavier_matrices) {
    tfm_rng rng;
    rng_seed(&rng, seed);
    for (size_t i = 0; i < l->count; i++) init_entry(&l->items[i], &rng, xavier_matrices);
}

tfm_status param_list_bf16(const param_list *l, bf16_weights *w) {
    if (w->n) {
        if (w->stale) bf16_weights_refresh(w);
        return TFM_OK;
    }
    const size_t n = l->count;
    const float **ptrs = calloc(n ? n : 1, sizeof *ptrs);
    size_t *counts = calloc(n ? n : 1, sizeof *counts);
    tfm_status st = ptrs && counts ? TFM_OK : tfm_error(TFM_ERR_NOMEM, "out of memory");
    for (size_t i = 0; st == TFM_OK && i < n; i++) {
        const param_entry *e = &l->items[i];
        ptrs[i] = *e->slot;
        counts[i] = e->ndim >= 2 ? (size_t)e->numel : 0;
    }
    if (st == TFM_OK) st = bf16_weights_build(w, ptrs, counts, n);
    free(ptrs);
    free(counts);
    return st;
}

tfm_status param_list_compute_begin(const param_list *l, tfm_compute_type t, bf16_weights *w,
                                    compute_scope *previous) {
    if (t == TFM_COMPUTE_BF16) TFM_TRY(param_list_bf16(l, w));
    *previous = compute_enter(t, t == TFM_COMPUTE_BF16 ? w : NULL);
    return TFM_OK;
}
