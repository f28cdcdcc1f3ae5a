/* compute.c — the compute type of modules (tfm.h, "compute type"): names, setting it,
 * the module's bf16 twins of its parameters, and the scope a call runs in. */
#include <string.h>

#include "api/module.h"
#include "core/cpu.h"
#include "core/status.h"
#include "kernels/compute.h"

const char *tfm_compute_type_name(tfm_compute_type t) {
    switch (t) {
    case TFM_COMPUTE_F32: return "f32";
    case TFM_COMPUTE_BF16: return "bf16";
    }
    return "?";
}

tfm_status tfm_compute_type_from_name(const char *name, tfm_compute_type *out) {
    if (!name || !out) return tfm_error(TFM_ERR_INVALID_ARG, "compute type: NULL argument");
    if (!strcmp(name, "f32") || !strcmp(name, "float32")) *out = TFM_COMPUTE_F32;
    else if (!strcmp(name, "bf16") || !strcmp(name, "bfloat16")) *out = TFM_COMPUTE_BF16;
    else return tfm_error(TFM_ERR_INVALID_ARG, "unknown compute type '%s' (expected f32 or bf16)", name);
    return TFM_OK;
}

bool tfm_compute_type_fast(tfm_compute_type t) {
    return t == TFM_COMPUTE_F32 || cpu_bf16_kind() != BF16_REFERENCE;
}

tfm_status tfm_module_set_compute_type(tfm_module *m, tfm_compute_type t) {
    if (!m) return tfm_error(TFM_ERR_INVALID_ARG, "tfm_module_set_compute_type: NULL module");
    if (t != TFM_COMPUTE_F32 && t != TFM_COMPUTE_BF16)
        return tfm_error(TFM_ERR_INVALID_ARG, "unknown compute type %d", (int)t);
    m->compute = t;
    bf16_weights_free(&m->bf16w); /* made anew on first use */
    return TFM_OK;
}

tfm_compute_type tfm_module_compute_type(const tfm_module *m) {
    return m ? m->compute : TFM_COMPUTE_F32;
}

void tfm_module_params_changed(tfm_module *m) {
    if (m) m->bf16w.stale = true;
}

tfm_status module_compute_begin(tfm_module *m, compute_scope *previous) {
    return param_list_compute_begin(&m->params, m->compute, &m->bf16w, previous);
}
