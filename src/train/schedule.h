/* schedule.h — learning-rate schedules as pure functions of the step.
 *
 * `step` is the number of optimizer steps already taken: 0 for the first step. That is
 * torch.optim.lr_scheduler's last_epoch when scheduler.step() follows each
 * optimizer.step(), as in the Annotated Transformer's training loop. The rate is a
 * double, like torch's Python-float lr, and goes straight to optim_step().
 *
 *   constant        lr(step) = lr
 *
 *   noam            "Attention Is All You Need" §5.3, the Annotated Transformer's
 *                   rate(step, model_size, factor, warmup) used through LambdaLR:
 *                     s = max(step, 1)     (rate() replaces step 0 by 1, so the first
 *                                           two optimizer steps share a rate)
 *                     lr = factor · (d_model^-0.5 · min(s^-0.5, s · warmup^-1.5))
 *                   The peak, at s = warmup, is factor · (d_model · warmup)^-0.5.
 *
 *   warmup_cosine   linear warm-up from 0, then cosine annealing to lr_min:
 *                     step <  warmup:  lr = base · step / warmup
 *                     step >= warmup:  t = min(step − warmup, T), T = total − warmup,
 *                                      lr = lr_min + (base − lr_min) · (1 + cos(π·t/T)) / 2
 *                   so lr(0) = 0, lr(warmup) = base, lr(total) = lr_min, and lr_min
 *                   thereafter. With warmup = 0 it is torch's CosineAnnealingLR(
 *                   T_max = total, eta_min = lr_min) in closed form for step <= T_max
 *                   (CosineAnnealingLR keeps following the cosine back up after T_max;
 *                   this stays at lr_min). With lr_min = 0 it is Hugging Face's
 *                   get_cosine_schedule_with_warmup up to step = total.
 */
#ifndef TFM_TRAIN_SCHEDULE_H
#define TFM_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "tfm.h"

typedef enum schedule_kind {
    SCHEDULE_CONSTANT = 0,
    SCHEDULE_NOAM = 1,
    SCHEDULE_WARMUP_COSINE = 2,
} schedule_kind;

/* Fill it with one of the schedule_* constructors, which validate the arguments. */
typedef struct schedule {
    schedule_kind kind;
    double lr;       /* constant: the rate; warmup_cosine: the base (peak) rate */
    double lr_min;   /* warmup_cosine: the final rate (eta_min) */
    double factor;   /* noam */
    int64_t d_model; /* noam: model dimension E */
    int64_t warmup;  /* noam, warmup_cosine: warm-up steps */
    int64_t total;   /* warmup_cosine: the step at which lr_min is reached */
} schedule;

/* lr finite and >= 0. */
tfm_status schedule_constant(schedule *s, double lr);
/* factor finite and > 0, d_model > 0, warmup > 0. */
tfm_status schedule_noam(schedule *s, double factor, int64_t d_model, int64_t warmup);
/* base, lr_min finite and >= 0; 0 <= warmup < total. */
tfm_status schedule_warmup_cosine(schedule *s, double base, double lr_min, int64_t warmup,
                                  int64_t total);

/* The learning rate for the optimizer step that follows `step` steps (step < 0 is
 * treated as 0). */
double schedule_lr(const schedule *s, int64_t step);

#endif
