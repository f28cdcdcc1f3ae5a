/* schedule.c — learning-rate schedules (formulas in schedule.h). */
#include "train/schedule.h"

#include <math.h>
#include <string.h>

#include "core/status.h"

static const double PI = 3.14159265358979323846;

tfm_status schedule_constant(schedule *s, double lr) {
    if (!(isfinite(lr) && lr >= 0.0))
        return tfm_error(TFM_ERR_INVALID_ARG, "constant schedule: Invalid learning rate: %g", lr);
    memset(s, 0, sizeof *s);
    s->kind = SCHEDULE_CONSTANT;
    s->lr = lr;
    return TFM_OK;
}

tfm_status schedule_noam(schedule *s, double factor, int64_t d_model, int64_t warmup) {
    if (!(isfinite(factor) && factor > 0.0))
        return tfm_error(TFM_ERR_INVALID_ARG, "noam schedule: factor %g must be > 0", factor);
    if (d_model <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "noam schedule: d_model %lld must be > 0",
                         (long long)d_model);
    if (warmup <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "noam schedule: warmup %lld must be > 0",
                         (long long)warmup);
    memset(s, 0, sizeof *s);
    s->kind = SCHEDULE_NOAM;
    s->factor = factor;
    s->d_model = d_model;
    s->warmup = warmup;
    return TFM_OK;
}

tfm_status schedule_warmup_cosine(schedule *s, double base, double lr_min, int64_t warmup,
                                  int64_t total) {
    if (!(isfinite(base) && base >= 0.0))
        return tfm_error(TFM_ERR_INVALID_ARG, "cosine schedule: Invalid learning rate: %g", base);
    if (!(isfinite(lr_min) && lr_min >= 0.0))
        return tfm_error(TFM_ERR_INVALID_ARG, "cosine schedule: Invalid lr_min: %g", lr_min);
    if (warmup < 0 || total <= warmup)
        return tfm_error(TFM_ERR_INVALID_ARG,
                         "cosine schedule: need 0 <= warmup (%lld) < total (%lld)",
                         (long long)warmup, (long long)total);
    memset(s, 0, sizeof *s);
    s->kind = SCHEDULE_WARMUP_COSINE;
    s->lr = base;
    s->lr_min = lr_min;
    s->warmup = warmup;
    s->total = total;
    return TFM_OK;
}

double schedule_lr(const schedule *s, int64_t step) {
    if (step < 0) step = 0;
    switch (s->kind) {
    case SCHEDULE_CONSTANT: return s->lr;
    case SCHEDULE_NOAM: {
        /* rate(): if step == 0: step = 1; factor * (model_size ** (-0.5) *
         *         min(step ** (-0.5), step * warmup ** (-1.5))), in this order. */
        double st = step == 0 ? 1.0 : (double)step;
        double a = pow(st, -0.5), b = st * pow((double)s->warmup, -1.5);
        return s->factor * (pow((double)s->d_model, -0.5) * (a < b ? a : b));
    }
    case SCHEDULE_WARMUP_COSINE: {
        if (step < s->warmup) return s->lr * (double)step / (double)s->warmup;
        int64_t T = s->total - s->warmup, t = step - s->warmup;
        if (t > T) t = T;
        /* CosineAnnealingLR._get_closed_form_lr:
         * eta_min + (base_lr - eta_min) * (1 + cos(pi * last_epoch / T_max)) / 2 */
        return s->lr_min + (s->lr - s->lr_min) * (1.0 + cos(PI * (double)t / (double)T)) / 2.0;
    }
    }
    return 0.0;
}
