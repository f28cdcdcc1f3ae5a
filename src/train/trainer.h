/* trainer.h — the training loop of `tfm train` and `tfm demo`: batches, the seq2seq
 * model's step, gradient clipping, the optimizer under a learning-rate schedule,
 * validation (loss and exact match by greedy decoding), a CSV log, and atomic
 * checkpoints that hold everything needed to resume exactly.
 */
#ifndef TFM_TRAIN_TRAINER_H
#define TFM_TRAIN_TRAINER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "model/seq2seq.h"
#include "train/batch.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/tsv.h"

/* Everything that decides the numbers of a run (saved in every checkpoint). */
typedef struct train_options {
    seq2seq_config model;
    size_t batch_size, max_tokens, bucket; /* batching (batch.h) */
    int64_t steps;                         /* optimizer steps in all */
    optim_config optim;
    schedule_kind schedule;
    double lr;                             /* constant/cosine: the rate; noam: the factor */
    int64_t warmup;
    float label_smoothing;
    double clip;                           /* max gradient norm; 0 = none */
    uint64_t seed;
    tfm_compute_type compute;              /* the products' compute type: bf16 is mixed
                                              precision (FP32 master weights, optimizer
                                              state, loss; bf16 products) */
} train_options;

/* Where a run is: saved with the options, restored by --resume. */
typedef struct train_progress {
    int64_t step;
    uint64_t epoch;
    size_t batch_index;
} train_progress;

/* How a run reports and saves (not part of the numbers). */
typedef struct train_io {
    const char *out_path;       /* checkpoint; NULL = none */
    int64_t checkpoint_every;   /* steps; 0 = only at the end */
    int64_t eval_every;         /* steps; 0 = only at the end */
    size_t valid_decode_max;    /* pairs decoded for exact match (0 = all) */
    FILE *log_csv;              /* NULL = none */
    FILE *progress;             /* live progress line (a terminal), or NULL */
    FILE *report;               /* one line per evaluation, or NULL */
} train_io;

void train_options_default(train_options *o);
tfm_status train_options_check(const train_options *o);

/* Train from `progress` (zero for a fresh run: the model is initialised from the
 * seed; else `model` holds the checkpoint's parameters and `opt` its state).
 * valid may be NULL. */
tfm_status train_run(const train_options *o, const train_io *io, const tsv_dataset *train,
                     const tsv_dataset *valid, seq2seq *model, optimizer *opt,
                     train_progress *progress);

/* Exact match and mean loss over (up to max, 0 = all) pairs of d, by greedy decoding. */
tfm_status evaluate(seq2seq *m, const tsv_dataset *d, size_t max, float eps, double *exact,
                    double *loss);

/* Translate n sources (bytes) by greedy decoding: outs[i] (malloc'd, NUL-terminated)
 * receives the decoded bytes of sources[i]. */
tfm_status translate_batch(seq2seq *m, const uint8_t *const *sources, const size_t *lens,
                           size_t n, char **outs);

/* ---- checkpoints (checkpoint.c) ---- */
/* Parameters, optimizer state, options and progress, written atomically. */
tfm_status checkpoint_save(const char *path, const seq2seq *m, const optimizer *opt,
                           const train_options *o, const train_progress *p);
/* The model (and, when opt_out is non-NULL, a new optimizer with its state), the
 * options and the progress from a checkpoint. */
tfm_status checkpoint_load(const char *path, seq2seq *m, optimizer **opt_out, train_options *o,
                           train_progress *p);

#endif
