/* optim.c — torch.optim.SGD / Adam / AdamW (single-tensor path, float32) and
 * torch.nn.utils.clip_grad_norm_ on flat parameter and gradient blocks.
 *
 * Legend: P number of parameters.
 *
 * Rounding follows torch operation by operation (see optim.h): a Python-float
 * hyperparameter that scales a float32 tensor is rounded to float first; bias
 * corrections stay in double as in adam.py; ATen's vectorised add(alpha=),
 * addcmul and lerp are fused multiply-adds, so they are fmaf here. Do not rewrite
 * `fmaf(a, b, c)` as `a * b + c`: that changes results by an ulp.
 */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "core/status.h"
#include "train/adam_kernels.h"

/* Elementwise loops go parallel above this many parameters (any split gives the
 * same bits: each element is computed by itself). */
#define OPTIM_PAR_MIN (1 << 15)

enum { MAX_STATES = 3 };

struct optimizer {
    optim_config cfg;
    size_t n;       /* P */
    int64_t step;   /* optimizer steps taken (torch's state["step"]) */
    size_t nstates; /* arrays in `state` */
    const char *names[MAX_STATES];
    float *state[MAX_STATES]; /* each (P), views into `block` */
    float *block;             /* nstates · P floats */
};

void optim_config_default(optim_config *cfg, optim_kind kind) {
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->weight_decay = kind == OPTIM_ADAMW ? 1e-2 : 0.0;
    cfg->maximize = false;
    cfg->momentum = 0.0;
    cfg->dampening = 0.0;
    cfg->nesterov = false;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    cfg->amsgrad = false;
}

const char *optim_kind_name(optim_kind kind) {
    switch (kind) {
    case OPTIM_SGD: return "SGD";
    case OPTIM_ADAM: return "Adam";
    case OPTIM_ADAMW: return "AdamW";
    }
    return "?";
}

tfm_status optim_kind_from_name(const char *name, optim_kind *out) {
    static const optim_kind kinds[] = {OPTIM_SGD, OPTIM_ADAM, OPTIM_ADAMW};
    for (size_t i = 0; name && i < sizeof kinds / sizeof kinds[0]; i++)
        if (strcmp(name, optim_kind_name(kinds[i])) == 0) {
            *out = kinds[i];
            return TFM_OK;
        }
    return tfm_error(TFM_ERR_INVALID_ARG, "unknown optimizer \"%s\" (SGD, Adam, AdamW)",
                     name ? name : "(null)");
}

/* torch's checks are `0.0 <= x`, which NaN fails too; inf we refuse as well. */
static bool finite_nonneg(double x) { return isfinite(x) && x >= 0.0; }

tfm_status optim_config_check(const optim_config *cfg) {
    if (!cfg) return tfm_error(TFM_ERR_INVALID_ARG, "optimizer config is NULL");
    if (!finite_nonneg(cfg->weight_decay))
        return tfm_error(TFM_ERR_INVALID_ARG, "Invalid weight_decay value: %g", cfg->weight_decay);
    switch (cfg->kind) {
    case OPTIM_SGD:
        if (!finite_nonneg(cfg->momentum))
            return tfm_error(TFM_ERR_INVALID_ARG, "Invalid momentum value: %g", cfg->momentum);
        if (!isfinite(cfg->dampening))
            return tfm_error(TFM_ERR_INVALID_ARG, "Invalid dampening value: %g", cfg->dampening);
        if (cfg->nesterov && (cfg->momentum <= 0.0 || cfg->dampening != 0.0))
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "Nesterov momentum requires a momentum and zero dampening");
        return TFM_OK;
    case OPTIM_ADAM:
    case OPTIM_ADAMW:
        if (!finite_nonneg(cfg->eps))
            return tfm_error(TFM_ERR_INVALID_ARG, "Invalid epsilon value: %g", cfg->eps);
        if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0))
            return tfm_error(TFM_ERR_INVALID_ARG, "Invalid beta parameter at index 0: %g",
                             cfg->beta1);
        if (!(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0))
            return tfm_error(TFM_ERR_INVALID_ARG, "Invalid beta parameter at index 1: %g",
                             cfg->beta2);
        return TFM_OK;
    }
    return tfm_error(TFM_ERR_INVALID_ARG, "unknown optimizer kind %d", (int)cfg->kind);
}

tfm_status optim_create(const optim_config *cfg, size_t n, optimizer **out) {
    if (!out) return tfm_error(TFM_ERR_INVALID_ARG, "optim_create: out is NULL");
    *out = NULL;
    TFM_TRY(optim_config_check(cfg));
    if (n == 0) return tfm_error(TFM_ERR_INVALID_ARG, "optimizer got an empty parameter list");
    optimizer *o = calloc(1, sizeof *o);
    if (!o) return tfm_error(TFM_ERR_NOMEM, "optimizer: out of memory");
    o->cfg = *cfg;
    o->n = n;
    if (cfg->kind == OPTIM_SGD) {
        if (cfg->momentum != 0.0) o->names[o->nstates++] = "momentum_buffer";
    } else {
        o->names[o->nstates++] = "exp_avg";
        o->names[o->nstates++] = "exp_avg_sq";
        if (cfg->amsgrad) o->names[o->nstates++] = "max_exp_avg_sq";
    }
    if (o->nstates) {
        if (n > SIZE_MAX / sizeof(float) / o->nstates) {
            free(o);
            return tfm_error(TFM_ERR_NOMEM, "optimizer: %zu parameters overflow the state size", n);
        }
        const size_t count = o->nstates * n;
        o->block = calloc(count, sizeof(float)); /* torch: zeros_like */
        if (!o->block) {
            free(o);
            return tfm_error(TFM_ERR_NOMEM, "optimizer: out of memory for %zu floats of state",
                             count);
        }
        for (size_t i = 0; i < o->nstates; i++) o->state[i] = o->block + i * n;
    }
    *out = o;
    return TFM_OK;
}

void optim_free(optimizer *opt) {
    if (!opt) return;
    free(opt->block);
    free(opt);
}

const optim_config *optim_get_config(const optimizer *opt) { return &opt->cfg; }
size_t optim_num_params(const optimizer *opt) { return opt->n; }
int64_t optim_get_step(const optimizer *opt) { return opt->step; }

tfm_status optim_set_step(optimizer *opt, int64_t step) {
    if (step < 0) return tfm_error(TFM_ERR_INVALID_ARG, "optimizer step count %lld < 0",
                                   (long long)step);
    opt->step = step;
    return TFM_OK;
}

size_t optim_num_states(const optimizer *opt) { return opt->nstates; }

tfm_status optim_state(const optimizer *opt, size_t i, const char **name, float **data) {
    if (i >= opt->nstates)
        return tfm_error(TFM_ERR_INVALID_ARG, "optimizer state %zu out of range (%zu states)", i,
                         opt->nstates);
    if (name) *name = opt->names[i];
    if (data) *data = opt->state[i];
    return TFM_OK;
}

float *optim_state_find(const optimizer *opt, const char *name) {
    for (size_t i = 0; name && i < opt->nstates; i++)
        if (strcmp(opt->names[i], name) == 0) return opt->state[i];
    return NULL;
}

/* ---- update rules ------------------------------------------------------------ */

/* fmaf is a libm call per element unless the compiler may use the FMA instruction;
 * on x86-64 the kernels are also built for FMA CPUs and picked at load time (~7×
 * faster). Both builds give the same bits: fmaf is exactly rounded either way, and
 * no kernel has an a * b + c that a compiler could contract. */
#if defined(__x86_64__) && defined(__ELF__) && !defined(__FMA__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define FMA_CLONES __attribute__((target_clones("fma", "default")))
#endif
#endif
#ifndef FMA_CLONES
#define FMA_CLONES
#endif
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Kernels run on element ranges [lo, hi): OpenMP's outlined loop bodies would not
 * inherit the FMA clones, so each thread calls a kernel on whole chunks. */
#define OPTIM_CHUNK 8192

typedef struct sgd_args {
    float *p, *buf;     /* (P) params; momentum buffer or NULL */
    const float *grads; /* (P) */
    float grad_scale;   /* the gradient used is grads[i] · grad_scale (clipping) */
    float wd, mom, keep, neg_lr;
    bool scaled, decay, first, nesterov, maximize;
} sgd_args;

/* torch/optim/sgd.py, _single_tensor_sgd. */
FMA_CLONES static void sgd_range(const sgd_args *a, int64_t lo, int64_t hi) {
    float *p = a->p, *buf = a->buf;
    for (int64_t i = lo; i < hi; i++) {
        float g = a->scaled ? a->grads[i] * a->grad_scale : a->grads[i]; /* grad.mul_(clip_coef) */
        if (a->maximize) g = -g;
        if (a->decay) g = fmaf(p[i], a->wd, g); /* grad = grad.add(param, alpha=weight_decay) */
        if (buf) {
            /* torch: buf = clone(grad) on the first step, then
             * buf.mul_(momentum).add_(grad, alpha=1 - dampening) */
            float b = a->first ? g : fmaf(g, a->keep, buf[i] * a->mom);
            buf[i] = b;
            g = a->nesterov ? fmaf(b, a->mom, g) : b; /* grad.add(buf, alpha=momentum) */
        }
        p[i] = fmaf(g, a->neg_lr, p[i]); /* param.add_(grad, alpha=-lr) */
    }
}

static void sgd_step(optimizer *o, float *p, const float *grads, float grad_scale, double lr) {
    const optim_config *c = &o->cfg;
    const sgd_args a = {
        .p = p, .buf = c->momentum != 0.0 ? o->state[0] : NULL, .grads = grads,
        .grad_scale = grad_scale, .scaled = grad_scale != 1.0f,
        .wd = (float)c->weight_decay, .mom = (float)c->momentum,
        .keep = (float)(1.0 - c->dampening), .neg_lr = (float)(-lr),
        .decay = c->weight_decay != 0.0, .first = o->step == 0, .nesterov = c->nesterov,
        .maximize = c->maximize,
    };
    const int64_t n = (int64_t)o->n, chunks = (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n > OPTIM_PAR_MIN)
    for (int64_t k = 0; k < chunks; k++)
        sgd_range(&a, k * OPTIM_CHUNK, k + 1 < chunks ? (k + 1) * OPTIM_CHUNK : n);
}

/* The Adam element loop of the active SIMD path. */
static adam_range_fn adam_range_active(void) {
    switch (cpu_active()) {
#if defined(TFM_HAVE_X86_KERNELS)
    case CPU_AVX512: return adam_range_avx512;
    case CPU_AVX2: return adam_range_avx2;
#endif
    default: return adam_range_generic;
    }
}

/* `step` counts this step (torch increments state["step"] first). */
static void adam_step(optimizer *o, float *p, const float *grads, float grad_scale, double lr,
                      int64_t step) {
    const optim_config *c = &o->cfg;
    const bool decay = c->weight_decay != 0.0, decoupled = c->kind == OPTIM_ADAMW;
    /* exp_avg.lerp_(grad, 1 - beta1): ATen's lerp is fma(w, end - start, start) for
     * |w| < 0.5 and fma(w - 1, end - start, end) otherwise, w rounded to float. */
    const float w1 = (float)(1.0 - c->beta1);
    const bool w1_small = fabsf(w1) < 0.5f;
    /* Python doubles, as adam.py computes them from step = state["step"].item(). */
    const double bias_correction1 = 1.0 - pow(c->beta1, (double)step);
    const double bias_correction2 = 1.0 - pow(c->beta2, (double)step);
    const double step_size = lr / bias_correction1;
    const adam_args a = {
        .p = p, .m = o->state[0], .v = o->state[1], .vmax = c->amsgrad ? o->state[2] : NULL,
        .grads = grads, .grad_scale = grad_scale, .scaled = grad_scale != 1.0f,
        .wd = (float)c->weight_decay,
        .shrink = (float)(1.0 - lr * c->weight_decay), .w1_coef = w1_small ? w1 : w1 - 1.0f,
        .b2 = (float)c->beta2, .w2 = (float)(1.0 - c->beta2),
        .bc2_sqrt = (float)pow(bias_correction2, 0.5), /* bias_correction2**0.5 */
        .neg_step_size = (float)(-step_size), .eps = (float)c->eps,
        .l2 = decay && !decoupled, .decoupled = decay && decoupled, .w1_small = w1_small,
        .maximize = c->maximize,
    };
    const adam_range_fn range = adam_range_active();
    const int64_t n = (int64_t)o->n, chunks = (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK;
#pragma omp parallel for schedule(static) if (n > OPTIM_PAR_MIN)
    for (int64_t k = 0; k < chunks; k++)
        range(&a, k * OPTIM_CHUNK, k + 1 < chunks ? (k + 1) * OPTIM_CHUNK : n);
}

tfm_status optim_step(optimizer *opt, float *params, const float *grads, size_t n, double lr) {
    return optim_step_scaled(opt, params, grads, n, lr, 1.0f);
}

tfm_status optim_step_scaled(optimizer *opt, float *params, const float *grads, size_t n,
                             double lr, float grad_scale) {
    if (!opt || !params || !grads)
        return tfm_error(TFM_ERR_INVALID_ARG, "optim_step: NULL optimizer, params or grads");
    if (n != opt->n)
        return tfm_error(TFM_ERR_SHAPE, "optim_step: %zu parameters, the optimizer was made for %zu",
                         n, opt->n);
    if (!finite_nonneg(lr)) return tfm_error(TFM_ERR_INVALID_ARG, "Invalid learning rate: %g", lr);
    if (opt->step == INT64_MAX)
        return tfm_error(TFM_ERR_INVALID_ARG, "optimizer step count overflows");
    if (opt->cfg.kind == OPTIM_SGD) sgd_step(opt, params, grads, grad_scale, lr);
    else adam_step(opt, params, grads, grad_scale, lr, opt->step + 1);
    opt->step++;
    return TFM_OK;
}

/* ---- gradient clipping --------------------------------------------------------- */

/* The sum of squares is split into at most NORM_MAX_CHUNKS chunks of at least
 * NORM_MIN_CHUNK floats; the boundaries depend on n alone, and the partial sums are
 * added in chunk order, so any number of threads gives the same bits. */
#define NORM_MIN_CHUNK 4096
#define NORM_MAX_CHUNKS 256

double grad_norm(const float *x, size_t n) {
    if (n == 0) return 0.0;
    size_t chunks = (n + NORM_MIN_CHUNK - 1) / NORM_MIN_CHUNK;
    if (chunks > NORM_MAX_CHUNKS) chunks = NORM_MAX_CHUNKS;
    const size_t len = (n + chunks - 1) / chunks;
    double part[NORM_MAX_CHUNKS];
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (int64_t c = 0; c < (int64_t)chunks; c++) {
        size_t lo = (size_t)c * len, hi = lo + len < n ? lo + len : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * x[i]; /* exact products */
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < chunks; c++) s += part[c];
    return sqrt(s);
}

tfm_status clip_grad_coef(const float *grads, size_t n, double max_norm, double *total_norm,
                          float *coef) {
    if (total_norm) *total_norm = 0.0;
    if (coef) *coef = 1.0f;
    if (!grads && n) return tfm_error(TFM_ERR_INVALID_ARG, "clip_grad_norm: grads is NULL");
    if (!finite_nonneg(max_norm))
        return tfm_error(TFM_ERR_INVALID_ARG, "clip_grad_norm: max_norm %g must be finite and >= 0",
                         max_norm);
    const double norm = grad_norm(grads, n);
    if (total_norm) *total_norm = norm;
    if (!isfinite(norm))
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "clip_grad_norm: the total norm of the gradients is %g; gradients left "
                         "unchanged",
                         norm);
    /* clip_coef = max_norm / (total_norm + 1e-6) with total_norm a float32 tensor:
     * Tensor.__rtruediv__ is reciprocal() * other, all in float. clamp(max=1.0): a factor
     * of 1 changes nothing, so it stays 1 and the gradients need no pass. */
    const float c = (1.0f / ((float)norm + 1e-6f)) * (float)max_norm;
    if (coef && c < 1.0f) *coef = c;
    return TFM_OK;
}

tfm_status clip_grad_norm(float *grads, size_t n, double max_norm, double *total_norm) {
    float coef;
    TFM_TRY(clip_grad_coef(grads, n, max_norm, total_norm, &coef));
    if (coef == 1.0f) return TFM_OK;
    const int64_t m = (int64_t)n;
#pragma omp parallel for schedule(static) if (m > OPTIM_PAR_MIN)
    for (int64_t i = 0; i < m; i++) grads[i] *= coef;
    return TFM_OK;
}
