/* params.c — the parameter list; see params.h. */
#include "nn/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    int len = snprintf(out, PARAM_NAME_MAX, "%s%s.", prefix, name);
    return len >= 0 && len < PARAM_NAME_MAX;
}
