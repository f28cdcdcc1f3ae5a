/* train.c — `tfm train --train PAIRS.tsv [--valid PAIRS.tsv] --out MODEL.safetensors …`:
 * trains a byte-level seq2seq Transformer on source<TAB>target lines. */
#include <errno.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "core/status.h"
#include "train/trainer.h"

static const char usage[] =
    "usage: tfm train --train PAIRS.tsv [--valid PAIRS.tsv] --out MODEL.safetensors [options]\n"
    "model:    --d-model 128 --heads 4 --encoder-layers 2 --decoder-layers 2 --ff 512\n"
    "          --dropout 0.1 --activation relu|gelu --norm-first --no-tie --max-len 256\n"
    "batches:  --batch-size 64 (sentences) | --max-tokens N (padded tokens per batch)\n"
    "length:   --steps 2000 | --epochs N\n"
    "optimizer:--optimizer adam|adamw|sgd --lr 1e-3 --schedule cosine|noam|constant\n"
    "          --warmup 200 --weight-decay W --momentum M --clip 1.0 --label-smoothing 0.1\n"
    "run:      --seed 1 --threads N --checkpoint-every 500 --eval-every 500\n"
    "          --compute-type f32|bf16 (bf16: mixed precision, bf16 products)\n"
    "          --valid-decode 500 --log LOG.csv --resume --quiet\n";

typedef struct train_args {
    const char *train, *valid, *out, *log;
    int64_t epochs, steps; /* steps: as given on the command line (0 = not given) */
    int threads;
    bool resume, quiet;
    bool compute_given; /* --compute-type on the command line */
    train_io io;
} train_args;

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !(x >= lo && x <= hi))
        return cli_fail("train", "%s: \"%s\" is not a number in [%g, %g]", flag, v, lo, hi);
    *out = x;
    return 0;
}

/* One flag; returns 0, or 1 after printing an error. *i advances past a value. */
static int parse_flag(int argc, char **argv, int *i, train_options *o, train_args *a) {
    const char *f = argv[*i];
    static const char *const bool_flags[] = {"--norm-first", "--no-tie", "--resume", "--quiet"};
    bool is_bool = false;
    for (size_t k = 0; k < sizeof bool_flags / sizeof *bool_flags; k++) is_bool |= !strcmp(f, bool_flags[k]);
    if (is_bool) {
        if (!strcmp(f, "--norm-first")) o->model.norm_first = true;
        if (!strcmp(f, "--no-tie")) o->model.tie_embeddings = false;
        if (!strcmp(f, "--resume")) a->resume = true;
        if (!strcmp(f, "--quiet")) a->quiet = true;
        return 0;
    }
    if (*i + 1 >= argc) return cli_fail("train", "%s needs a value\n%s", f, usage);
    const char *v = argv[++*i];
    double x = 0;
    const double big = 9e15;
#define NUM(lo, hi) if (parse_num(f, v, lo, hi, &x)) return 1
    if (!strcmp(f, "--train")) a->train = v;
    else if (!strcmp(f, "--valid")) a->valid = v;
    else if (!strcmp(f, "--out")) a->out = v;
    else if (!strcmp(f, "--log")) a->log = v;
    else if (!strcmp(f, "--d-model")) { NUM(2, 65536); o->model.d_model = (int64_t)x; }
    else if (!strcmp(f, "--heads")) { NUM(1, 65536); o->model.nhead = (int64_t)x; }
    else if (!strcmp(f, "--encoder-layers")) { NUM(1, 256); o->model.num_encoder_layers = (int64_t)x; }
    else if (!strcmp(f, "--decoder-layers")) { NUM(1, 256); o->model.num_decoder_layers = (int64_t)x; }
    else if (!strcmp(f, "--ff")) { NUM(1, 1 << 20); o->model.dim_feedforward = (int64_t)x; }
    else if (!strcmp(f, "--dropout")) { NUM(0, 0.99); o->model.dropout = (float)x; }
    else if (!strcmp(f, "--max-len")) { NUM(2, 1 << 20); o->model.max_len = (int64_t)x; }
    else if (!strcmp(f, "--activation")) {
        if (strcmp(v, "relu") && strcmp(v, "gelu")) return cli_fail("train", "--activation: relu or gelu");
        o->model.activation = strcmp(v, "gelu") ? TFM_RELU : TFM_GELU;
    }
    else if (!strcmp(f, "--batch-size")) { NUM(1, big); o->batch_size = (size_t)x; }
    else if (!strcmp(f, "--max-tokens")) { NUM(1, big); o->max_tokens = (size_t)x; o->batch_size = 0; }
    else if (!strcmp(f, "--steps")) { NUM(1, big); o->steps = a->steps = (int64_t)x; a->epochs = 0; }
    else if (!strcmp(f, "--epochs")) { NUM(1, 1e6); a->epochs = (int64_t)x; }
    else if (!strcmp(f, "--lr")) { NUM(0, 1e3); o->lr = x; }
    else if (!strcmp(f, "--warmup")) { NUM(0, big); o->warmup = (int64_t)x; }
    else if (!strcmp(f, "--weight-decay")) { NUM(0, 1e3); o->optim.weight_decay = x; }
    else if (!strcmp(f, "--momentum")) { NUM(0, 1); o->optim.momentum = x; }
    else if (!strcmp(f, "--clip")) { NUM(0, 1e9); o->clip = x; }
    else if (!strcmp(f, "--label-smoothing")) { NUM(0, 0.99); o->label_smoothing = (float)x; }
    else if (!strcmp(f, "--seed")) { NUM(0, big); o->seed = (uint64_t)x; }
    else if (!strcmp(f, "--threads")) { NUM(1, 1024); a->threads = (int)x; }
    else if (!strcmp(f, "--compute-type")) {
        if (tfm_compute_type_from_name(v, &o->compute) != TFM_OK)
            return cli_fail("train", "--compute-type: f32 or bf16");
        a->compute_given = true;
    }
    else if (!strcmp(f, "--checkpoint-every")) { NUM(0, big); a->io.checkpoint_every = (int64_t)x; }
    else if (!strcmp(f, "--eval-every")) { NUM(0, big); a->io.eval_every = (int64_t)x; }
    else if (!strcmp(f, "--valid-decode")) { NUM(0, big); a->io.valid_decode_max = (size_t)x; }
    else if (!strcmp(f, "--schedule")) {
        if (!strcmp(v, "constant")) o->schedule = SCHEDULE_CONSTANT;
        else if (!strcmp(v, "noam")) o->schedule = SCHEDULE_NOAM;
        else if (!strcmp(v, "cosine")) o->schedule = SCHEDULE_WARMUP_COSINE;
        else return cli_fail("train", "--schedule: constant, noam or cosine");
    }
    else if (!strcmp(f, "--optimizer")) {
        optim_kind k;
        if (!strcmp(v, "sgd")) k = OPTIM_SGD;
        else if (!strcmp(v, "adam")) k = OPTIM_ADAM;
        else if (!strcmp(v, "adamw")) k = OPTIM_ADAMW;
        else return cli_fail("train", "--optimizer: sgd, adam or adamw");
        double wd = o->optim.weight_decay;
        optim_config_default(&o->optim, k);
        if (k != OPTIM_SGD) o->optim.beta2 = 0.98, o->optim.eps = 1e-9;
        if (k != OPTIM_ADAMW) o->optim.weight_decay = wd;
    }
    else return cli_fail("train", "unknown option '%s'\n%s", f, usage);
#undef NUM
    return 0;
}

/* Fail before training, not at the first checkpoint, when the output cannot be written:
 * create and remove a file beside it. */
static int probe_output(const char *out) {
    char probe[4096];
    snprintf(probe, sizeof probe, "%s.probe.%d", out, (int)getpid());
    FILE *f = fopen(probe, "w");
    if (!f) return cli_fail("train", "%s: cannot write beside the output: %s", out, strerror(errno));
    fclose(f);
    remove(probe);
    return 0;
}

/* A run killed while saving leaves "<out>.tmp.<pid>" behind (the checkpoint itself is
 * whole: it is only ever replaced by rename). Remove those of processes that are gone. */
static void remove_stale_temporaries(const char *out) {
    char pattern[4096];
    snprintf(pattern, sizeof pattern, "%s.tmp.*", out);
    glob_t g;
    if (glob(pattern, GLOB_NOSORT, NULL, &g) != 0) return;
    const size_t prefix = strlen(pattern) - 1; /* up to the '*' */
    for (size_t i = 0; i < g.gl_pathc; i++) {
        char *end;
        long pid = strtol(g.gl_pathv[i] + prefix, &end, 10);
        if (*end == '\0' && pid > 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH) remove(g.gl_pathv[i]);
    }
    globfree(&g);
}

/* A fresh model and optimizer, or the checkpoint's when resuming from an existing file. */
static tfm_status setup(const train_args *a, train_options *o, seq2seq *m, optimizer **opt,
                        train_progress *p) {
    if (a->resume && access(a->out, F_OK) == 0) {
        const tfm_compute_type asked = o->compute;
        TFM_TRY(checkpoint_load(a->out, m, opt, o, p));
        if (a->compute_given && asked != o->compute)
            return tfm_error(TFM_ERR_INVALID_ARG,
                             "--compute-type %s: %s was trained with %s (a resumed run keeps it)",
                             tfm_compute_type_name(asked), a->out, tfm_compute_type_name(o->compute));
        /* Everything comes from the checkpoint, so the same command line continues the
         * same run; only --steps may extend (or shorten) it. */
        if (a->steps) o->steps = a->steps;
        if (!a->quiet)
            fprintf(stderr, "tfm train: resuming %s at step %lld of %lld\n", a->out,
                    (long long)p->step, (long long)o->steps);
        return TFM_OK;
    }
    *p = (train_progress){0};
    TFM_TRY(seq2seq_create(m, &o->model));
    tfm_status st = optim_create(&o->optim, m->num_floats, opt);
    if (st) seq2seq_free(m);
    return st;
}

int cmd_train(int argc, char **argv) {
    train_options o;
    train_options_default(&o);
    train_args a = {.io = {.checkpoint_every = 500, .eval_every = 500, .valid_decode_max = 500}};
    for (int i = 1; i < argc; i++)
        if (parse_flag(argc, argv, &i, &o, &a)) return 1;
    if (!a.train || !a.out) return cli_fail("train", "--train and --out are required\n%s", usage);
    if (a.threads) tfm_set_num_threads(a.threads);
    if (probe_output(a.out)) return 1;
    remove_stale_temporaries(a.out);

    tsv_limits lim;
    tsv_limits_default(&lim);
    lim.max_tokens = (size_t)o.model.max_len - 1;
    tsv_dataset train = {0}, valid = {0};
    seq2seq m = {0};
    optimizer *opt = NULL;
    train_progress p;
    int rc = 1;
    if (tsv_read_file(a.train, &lim, &train) || (a.valid && tsv_read_file(a.valid, &lim, &valid))) {
        cli_fail("train", "%s", tfm_last_error());
        goto done;
    }
    if (a.epochs > 0) { /* steps = epochs × batches per epoch */
        batcher b;
        batcher_config bc = {.batch_size = o.batch_size, .max_tokens = o.max_tokens, .bucket = o.bucket};
        if (batcher_init(&b, &train, &bc, o.seed)) {
            cli_fail("train", "%s", tfm_last_error());
            goto done;
        }
        o.steps = a.epochs * (int64_t)batcher_num_batches(&b);
        batcher_free(&b);
    }
    if (setup(&a, &o, &m, &opt, &p)) {
        cli_fail("train", "%s", tfm_last_error());
        goto done;
    }
    if (a.log) {
        bool fresh = access(a.log, F_OK) != 0 || p.step == 0;
        a.io.log_csv = fopen(a.log, fresh ? "w" : "a");
        if (!a.io.log_csv) {
            cli_fail("train", "%s: %s", a.log, strerror(errno));
            goto done;
        }
        if (fresh) fprintf(a.io.log_csv, "step,epoch,lr,train_loss,valid_loss,valid_exact,tokens_per_s,elapsed_s\n");
    }
    a.io.out_path = a.out;
    a.io.progress = !a.quiet && isatty(fileno(stderr)) ? stderr : NULL;
    a.io.report = a.quiet ? NULL : stdout;
    if (!a.quiet)
        printf("training %zu pairs%s: d_model %lld, %lld heads, %lld+%lld layers, ff %lld, %zu parameters, %lld steps%s\n",
               train.n, a.valid ? " (+ validation)" : "", (long long)o.model.d_model,
               (long long)o.model.nhead, (long long)o.model.num_encoder_layers,
               (long long)o.model.num_decoder_layers, (long long)o.model.dim_feedforward,
               m.num_floats, (long long)o.steps,
               o.compute == TFM_COMPUTE_BF16 ? ", bf16 compute" : "");
    if (train_run(&o, &a.io, &train, a.valid ? &valid : NULL, &m, opt, &p)) {
        if (a.io.progress) fputc('\n', stderr);
        cli_fail("train", "%s", tfm_last_error());
        goto done;
    }
    rc = 0;
done:
    if (a.io.log_csv) fclose(a.io.log_csv);
    optim_free(opt);
    seq2seq_free(&m);
    tsv_free(&train);
    tsv_free(&valid);
    return rc;
}
