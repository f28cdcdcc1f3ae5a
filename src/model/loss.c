/* loss.c — label-smoothed cross-entropy on log-probabilities with ignored (pad) targets,
 * and its backward to log-probabilities or, fused with log_softmax, to logits. */
#include "model/loss.h"

#include <math.h>

#include "core/status.h"

/* Rows are summed in this many fixed chunks (partial sums added in order afterwards), so
 * the loss is the same for every thread count. */
#define CE_CHUNKS 64

static tfm_status check_args(const int32_t *targets, int64_t R, int64_t V, int32_t pad,
                             float eps, const char *what) {
    if (V <= 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "%s: %lld classes", what, (long long)V);
    if (!(eps >= 0.0f && eps <= 1.0f)) /* also rejects NaN */
        return tfm_error(TFM_ERR_INVALID_ARG, "%s: label_smoothing %g is outside [0, 1]", what,
                         (double)eps);
    for (int64_t r = 0; r < R; r++)
        if (targets[r] != pad && (targets[r] < 0 || targets[r] >= V))
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "%s: target %d at row %lld is outside [0, %lld) and is not the "
                             "ignore_index %d",
                             what, (int)targets[r], (long long)r, (long long)V, (int)pad);
    return TFM_OK;
}

tfm_status cross_entropy_forward(ce_result *res, const float *logp, const int32_t *targets,
                                 int64_t R, int64_t V, int32_t pad, float eps) {
    *res = (ce_result){0};
    TFM_TRY(check_args(targets, R, V, pad, eps, "cross_entropy_forward"));
    double part_loss[CE_CHUNKS] = {0};
    int64_t part_count[CE_CHUNKS] = {0}, part_correct[CE_CHUNKS] = {0};
    const int64_t chunk = (R + CE_CHUNKS - 1) / CE_CHUNKS;
#pragma omp parallel for schedule(static) if (R * V > (1 << 15))
    for (int k = 0; k < CE_CHUNKS; k++) {
        const int64_t r1 = (k + 1) * chunk < R ? (k + 1) * chunk : R;
        for (int64_t r = k * chunk; r < r1; r++) {
            const int32_t y = targets[r];
            if (y == pad) continue; /* ignore_index: no loss, not counted */
            const float *lp = logp + r * V;
            double sum = 0.0;
            int64_t best = 0;
            for (int64_t c = 0; c < V; c++) {
                sum += lp[c];
                if (lp[c] > lp[best]) best = c; /* strict: the first maximum wins */
            }
            /* (1 − eps) · nll + eps · mean_c(−logp[c]), as PyTorch's
             * (1 − ε) · nll_loss + ε / V · Σ_c(−logp[c]) */
            part_loss[k] += (1.0 - (double)eps) * -(double)lp[y] + (double)eps * (-sum / (double)V);
            part_count[k]++;
            part_correct[k] += best == y;
        }
    }
    for (int k = 0; k < CE_CHUNKS; k++) {
        res->loss_sum += part_loss[k];
        res->count += part_count[k];
        res->correct += part_correct[k];
    }
    res->loss = res->count ? res->loss_sum / (double)res->count : 0.0;
    return TFM_OK;
}

tfm_status cross_entropy_backward(float *dlogp, const int32_t *targets, int64_t R, int64_t V,
                                  int32_t pad, float eps, float dloss, int64_t count) {
    TFM_TRY(check_args(targets, R, V, pad, eps, "cross_entropy_backward"));
    if (count <= 0) return TFM_OK;
    const float scale = (float)((double)dloss / (double)count);
    const float off = scale * (eps / (float)V);      /* scale · eps / V, every class */
    const float on = scale * (1.0f - eps);           /* scale · (1 − eps), the target */
#pragma omp parallel for schedule(static) if (R * V > (1 << 15))
    for (int64_t r = 0; r < R; r++) {
        if (targets[r] == pad) continue;
        float *d = dlogp + r * V;
        /* loss = Σ_r Σ_c −q_r[c] · logp[r, c] / count  →  dlogp = −scale · q */
        for (int64_t c = 0; c < V; c++) d[c] -= off;
        d[targets[r]] -= on;
    }
    return TFM_OK;
}

tfm_status log_softmax_cross_entropy_backward(float *dlogits, const float *logp,
                                              const int32_t *targets, int64_t R, int64_t V,
                                              int32_t pad, float eps, float dloss,
                                              int64_t count) {
    TFM_TRY(check_args(targets, R, V, pad, eps, "log_softmax_cross_entropy_backward"));
    const float scale = count > 0 ? (float)((double)dloss / (double)count) : 0.0f;
    const float off = eps / (float)V, on = 1.0f - eps;
#pragma omp parallel for schedule(static) if (R * V > (1 << 15))
    for (int64_t r = 0; r < R; r++) {
        const int32_t y = targets[r];
        const float *lp = logp + r * V;
        float *d = dlogits + r * V; /* may be lp: each element is read, then written */
        if (y == pad || scale == 0.0f) {
            for (int64_t c = 0; c < V; c++) d[c] = 0.0f;
            continue;
        }
        /* dlogp = −scale · q through log_softmax: dz = dlogp − softmax · Σ dlogp
         *                                          = scale · (softmax − q)   (Σ q = 1) */
        for (int64_t c = 0; c < V; c++) d[c] = scale * (expf(lp[c]) - (c == y ? on + off : off));
    }
    return TFM_OK;
}
