/* trainer.c — the training loop; see trainer.h. */
#include "train/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "core/status.h"
#include "decode/search.h"
#include "train/tokenizer.h"

void train_options_default(train_options *o) {
    *o = (train_options){0};
    o->model = (seq2seq_config){.vocab = TOK_VOCAB, .d_model = 128, .nhead = 4,
                                .num_encoder_layers = 2, .num_decoder_layers = 2,
                                .dim_feedforward = 512, .dropout = 0.1f, .activation = TFM_RELU,
                                .norm_first = false, .tie_embeddings = true, .max_len = 256};
    o->batch_size = 64;
    o->bucket = 16;
    o->steps = 2000;
    optim_config_default(&o->optim, OPTIM_ADAM);
    o->optim.beta2 = 0.98; /* the paper's Adam */
    o->optim.eps = 1e-9;
    o->schedule = SCHEDULE_WARMUP_COSINE;
    o->lr = 1e-3;
    o->warmup = 200;
    o->label_smoothing = 0.1f;
    o->clip = 1.0;
    o->seed = 1;
}

static tfm_status make_schedule(const train_options *o, schedule *s) {
    switch (o->schedule) {
    case SCHEDULE_CONSTANT: return schedule_constant(s, o->lr);
    case SCHEDULE_NOAM: return schedule_noam(s, o->lr, o->model.d_model, o->warmup > 0 ? o->warmup : 1);
    case SCHEDULE_WARMUP_COSINE:
        return schedule_warmup_cosine(s, o->lr, 0.0, o->warmup < o->steps ? o->warmup : 0,
                                      o->steps > 0 ? o->steps : 1);
    }
    return tfm_error(TFM_ERR_INVALID_ARG, "unknown schedule");
}

tfm_status train_options_check(const train_options *o) {
    TFM_TRY(seq2seq_check_config(&o->model));
    TFM_TRY(optim_config_check(&o->optim));
    if (o->steps < 1) return tfm_error(TFM_ERR_INVALID_ARG, "steps (%lld) must be >= 1", (long long)o->steps);
    if (o->batch_size == 0 && o->max_tokens == 0)
        return tfm_error(TFM_ERR_INVALID_ARG, "a batch size in sentences or in tokens is needed");
    if (!(o->label_smoothing >= 0.0f && o->label_smoothing < 1.0f))
        return tfm_error(TFM_ERR_INVALID_ARG, "label smoothing must be in [0, 1)");
    if (!(o->clip >= 0.0) || !isfinite(o->clip))
        return tfm_error(TFM_ERR_INVALID_ARG, "clip must be >= 0");
    if (o->warmup < 0) return tfm_error(TFM_ERR_INVALID_ARG, "warmup must be >= 0");
    schedule s;
    return make_schedule(o, &s);
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static seq2seq_batch as_model_batch(const train_batch *b) {
    return (seq2seq_batch){.N = (int64_t)b->n, .S = (int64_t)b->S, .L = (int64_t)b->L,
                           .src = b->src, .src_pad = b->src_pad, .tgt_in = b->tgt_in,
                           .tgt_pad = b->tgt_pad, .tgt_out = b->tgt_out};
}

tfm_status translate_batch(seq2seq *m, const uint8_t *const *sources, const size_t *lens,
                           size_t n, char **outs) {
    size_t S = 1;
    for (size_t i = 0; i < n; i++) {
        outs[i] = NULL;
        if (lens[i] > S) S = lens[i];
    }
    if ((int64_t)S > m->cfg.max_len)
        return tfm_error(TFM_ERR_SHAPE, "a source of %zu bytes is longer than the model's max_len %lld",
                         S, (long long)m->cfg.max_len);
    search_config cfg;
    search_config_default(&cfg);
    cfg.max_len = m->cfg.max_len - 1;
    int32_t *src = calloc(n * S, sizeof *src);
    uint8_t *pad = calloc(n * S, 1);
    search_hyp *hyp = calloc(n, sizeof *hyp);
    tfm_status st = (!src || !pad || !hyp) ? tfm_error(TFM_ERR_NOMEM, "translate: out of memory") : TFM_OK;
    for (size_t i = 0; st == TFM_OK && i < n; i++) {
        tok_encode(sources[i], lens[i], false, false, src + i * S);
        for (size_t j = lens[i]; j < S; j++) src[i * S + j] = TOK_PAD, pad[i * S + j] = 1;
        if (lens[i] == 0) src[i * S] = TOK_EOS, pad[i * S] = 0; /* an empty line still has a key */
    }
    if (st == TFM_OK) st = search_translate(m, src, pad, (int64_t)n, (int64_t)S, &cfg, hyp);
    for (size_t i = 0; st == TFM_OK && i < n; i++) {
        size_t len = 0;
        outs[i] = malloc((size_t)hyp[i].len + 1);
        if (!outs[i]) st = tfm_error(TFM_ERR_NOMEM, "translate: out of memory");
        else if ((st = tok_decode(hyp[i].tokens, (size_t)hyp[i].len, outs[i], (size_t)hyp[i].len, &len)) == TFM_OK)
            outs[i][len] = '\0';
    }
    if (st != TFM_OK)
        for (size_t i = 0; i < n; i++) free(outs[i]), outs[i] = NULL;
    if (hyp) search_hyp_free(hyp, (int64_t)n);
    free(hyp);
    free(src);
    free(pad);
    return st;
}

tfm_status evaluate(seq2seq *m, const tsv_dataset *d, size_t max, float eps, double *exact,
                    double *loss) {
    enum { CHUNK = 64 };
    size_t n = max && max < d->n ? max : d->n;
    size_t hits = 0;
    const uint8_t *srcs[CHUNK];
    size_t lens[CHUNK];
    char *outs[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t k = n - i0 < CHUNK ? n - i0 : CHUNK;
        for (size_t i = 0; i < k; i++) srcs[i] = tsv_src(d, i0 + i, &lens[i]);
        TFM_TRY(translate_batch(m, srcs, lens, k, outs));
        for (size_t i = 0; i < k; i++) {
            size_t tl;
            const uint8_t *t = tsv_tgt(d, i0 + i, &tl);
            hits += strlen(outs[i]) == tl && memcmp(outs[i], t, tl) == 0;
            free(outs[i]);
        }
    }
    *exact = n ? (double)hits / (double)n : 0.0;
    /* loss over the whole set, in batches of the batcher's making */
    batcher b;
    batcher_config bc = {.batch_size = CHUNK};
    TFM_TRY(batcher_init(&b, d, &bc, 0));
    train_batch tb;
    double sum = 0.0;
    int64_t count = 0;
    tfm_status st = TFM_OK;
    while (st == TFM_OK && batcher_next(&b, &tb)) {
        seq2seq_batch mb = as_model_batch(&tb);
        ce_result r;
        if ((st = seq2seq_eval_loss(m, &mb, eps, &r)) == TFM_OK) sum += r.loss_sum, count += r.count;
    }
    batcher_free(&b);
    *loss = count ? sum / (double)count : 0.0;
    return st;
}

static void print_progress(FILE *f, const train_progress *p, int64_t total, double loss,
                           double tok_s, double eta) {
    if (!f) return;
    fprintf(f, "\rstep %lld/%lld  epoch %llu  loss %.4f  %.0f tok/s  ETA %dm%02ds   ",
            (long long)p->step, (long long)total, (unsigned long long)p->epoch, loss, tok_s,
            (int)(eta / 60), (int)fmod(eta, 60.0));
    fflush(f);
}

/* Validation, the CSV row and the report line. */
static tfm_status report(const train_options *o, const train_io *io, seq2seq *m,
                         const tsv_dataset *valid, const train_progress *p, double lr,
                         double train_loss, double tok_s, double elapsed) {
    double exact = NAN, vloss = NAN;
    if (valid) TFM_TRY(evaluate(m, valid, io->valid_decode_max, o->label_smoothing, &exact, &vloss));
    if (io->log_csv) {
        fprintf(io->log_csv, "%lld,%llu,%.6g,%.6f,%.6f,%.4f,%.0f,%.1f\n", (long long)p->step,
                (unsigned long long)p->epoch, lr, train_loss, vloss, exact, tok_s, elapsed);
        fflush(io->log_csv);
    }
    if (io->report) {
        if (io->progress) fputc('\n', io->progress);
        fprintf(io->report, "step %lld: train loss %.4f", (long long)p->step, train_loss);
        if (valid) fprintf(io->report, ", valid loss %.4f, valid exact match %.2f%%", vloss, 100 * exact);
        fprintf(io->report, " (%.0f tok/s, %.0f s)\n", tok_s, elapsed);
        fflush(io->report);
    }
    return TFM_OK;
}

tfm_status train_run(const train_options *o, const train_io *io, const tsv_dataset *train,
                     const tsv_dataset *valid, seq2seq *m, optimizer *opt,
                     train_progress *p) {
    m->compute = o->compute;
    TFM_TRY(train_options_check(o));
    schedule sched;
    TFM_TRY(make_schedule(o, &sched));
    if (p->step == 0) seq2seq_init(m, o->seed);
    m->dropout_seed = rng_derive(o->seed, 0xd20b);
    batcher b;
    batcher_config bc = {.batch_size = o->batch_size, .max_tokens = o->max_tokens, .bucket = o->bucket};
    TFM_TRY(batcher_init(&b, train, &bc, o->seed));
    tfm_status st = batcher_seek(&b, p->epoch, p->batch_index);
    double t0 = now_sec(), loss_sum = 0.0, tokens = 0.0, tokens_window = 0.0, t_window = t0;
    int64_t loss_n = 0, start_step = p->step;
    train_batch tb;
    while (st == TFM_OK && p->step < o->steps) {
        if (!batcher_next(&b, &tb)) {
            p->epoch++;
            batcher_epoch(&b, p->epoch);
            continue;
        }
        seq2seq_batch mb = as_model_batch(&tb);
        ce_result r;
        memset(m->grad_block, 0, m->num_floats * sizeof(float));
        if ((st = seq2seq_train_step(m, &mb, o->label_smoothing, true, (uint64_t)p->step, &r)))
            break;
        double norm;
        float coef = 1.0f; /* clipping, applied by the optimizer as it reads the gradients */
        if (o->clip > 0.0 && (st = clip_grad_coef(m->grad_block, m->num_floats, o->clip, &norm, &coef)))
            break;
        double lr = schedule_lr(&sched, p->step);
        if ((st = optim_step_scaled(opt, m->block, m->grad_block, m->num_floats, lr, coef))) break;
        seq2seq_params_changed(m); /* the bf16 twins are made again before the next product */
        p->step++;
        uint64_t e;
        batcher_position(&b, &e, &p->batch_index);
        loss_sum += r.loss, loss_n++;
        tokens += (double)r.count, tokens_window += (double)r.count;
        double now = now_sec(), elapsed = now - t0;
        double tok_s = tokens / (elapsed > 0 ? elapsed : 1e-9);
        if (io->progress && (now - t_window > 0.25 || p->step == o->steps)) {
            double eta = (double)(o->steps - p->step) * elapsed / (double)(p->step - start_step);
            print_progress(io->progress, p, o->steps, r.loss, tokens_window / (now - t_window), eta);
            tokens_window = 0.0, t_window = now;
        }
        bool last = p->step == o->steps;
        if (last || (io->eval_every > 0 && p->step % io->eval_every == 0)) {
            st = report(o, io, m, valid, p, lr, loss_sum / (double)loss_n, tok_s, elapsed);
            loss_sum = 0.0, loss_n = 0;
        }
        if (st == TFM_OK && io->out_path &&
            (last || (io->checkpoint_every > 0 && p->step % io->checkpoint_every == 0)))
            st = checkpoint_save(io->out_path, m, opt, o, p);
    }
    batcher_free(&b);
    return st;
}
