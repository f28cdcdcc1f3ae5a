/* demo.c — `tfm demo`: what `make demo` shows.
 *  1. Checks a small nn.Transformer exported from PyTorch (examples/data) against
 *     PyTorch's output.
 *  2. Trains a seq2seq Transformer from scratch on a built-in synthetic task — the
 *     Annotated Transformer's copy task (sequences of 10 symbols from a vocabulary of
 *     10), or their reversal — then decodes 1,000 fresh random sequences greedily and
 *     prints examples and the exact-match accuracy.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "core/rng.h"
#include "core/status.h"
#include "io/forward_io.h"
#include "train/trainer.h"

#ifndef TFM_SOURCE_DIR
#define TFM_SOURCE_DIR "."
#endif

enum { SEQ_LEN = 10, SYMBOLS = 10 };

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 1. The exported module against PyTorch's recorded output. */
static int check_exported(const char *dir, tfm_compute_type ct) {
    char model[1024], input[1024], expected[1024];
    snprintf(model, sizeof model, "%s/demo.model.safetensors", dir);
    snprintf(input, sizeof input, "%s/demo.input.safetensors", dir);
    snprintf(expected, sizeof expected, "%s/demo.expected.safetensors", dir);
    tfm_module *m = NULL;
    st_file *fin = NULL, *fexp = NULL;
    forward_inputs fi = {0};
    float *want = NULL;
    const st_tensor *w;
    tfm_outputs out;
    int rc = 1;
    if (tfm_module_load(model, &m) != TFM_OK || tfm_module_set_compute_type(m, ct) != TFM_OK ||
        st_open(input, &fin) != TFM_OK ||
        st_open(expected, &fexp) != TFM_OK ||
        forward_inputs_read(fin, tfm_module_config(m)->module, &fi) != TFM_OK ||
        tfm_forward(m, &fi.in, &out) != TFM_OK) {
        cli_fail("demo", "%s", tfm_last_error());
        goto done;
    }
    if (!(w = st_find(fexp, "output")) || !(want = malloc((size_t)w->numel * sizeof(float))) ||
        st_read_f32(fexp, w, want) != TFM_OK) {
        cli_fail("demo", "%s: no readable 'output'", expected);
        goto done;
    }
    double maxdiff = 0, maxabs = 0;
    const float *y = out.output.data;
    for (int64_t i = 0; i < w->numel; i++) {
        maxdiff = fmax(maxdiff, fabs((double)y[i] - want[i]));
        maxabs = fmax(maxabs, fabs((double)want[i]));
    }
    const tfm_config *c = tfm_module_config(m);
    printf("1. nn.Transformer(d_model=%lld, nhead=%lld, %lld+%lld layers) exported from PyTorch %s:\n"
           "   tfm's output differs from PyTorch's by at most %.1e (outputs up to %.1f)%s\n\n",
           (long long)c->d_model, (long long)c->nhead, (long long)c->num_encoder_layers,
           (long long)c->num_decoder_layers,
           st_meta(fexp, "torch_version") ? st_meta(fexp, "torch_version") : "", maxdiff, maxabs,
           ct == TFM_COMPUTE_BF16 ? " in bf16 compute (PyTorch: FP32)" : "");
    /* bf16 products: each operand within 2^-9 of itself, errors ~1e-2 of the scale */
    const double tol = ct == TFM_COMPUTE_BF16 ? 5e-2 : 1e-4;
    rc = maxdiff <= tol * fmax(1.0, maxabs) ? 0 : cli_fail("demo", "output differs from PyTorch");
done:
    free(want);
    forward_inputs_free(&fi);
    st_close(fin);
    st_close(fexp);
    tfm_module_free(m);
    return rc;
}

/* n lines "source<TAB>target\n" of the task, from rng. */
static char *make_pairs(tfm_rng *rng, size_t n, bool reverse, size_t *len) {
    char *buf = malloc(n * (2 * SEQ_LEN + 2));
    if (!buf) return NULL;
    char *p = buf;
    for (size_t i = 0; i < n; i++) {
        char s[SEQ_LEN];
        for (int j = 0; j < SEQ_LEN; j++) s[j] = (char)('0' + rng_next(rng) % SYMBOLS);
        memcpy(p, s, SEQ_LEN);
        p += SEQ_LEN;
        *p++ = '\t';
        for (int j = 0; j < SEQ_LEN; j++) *p++ = reverse ? s[SEQ_LEN - 1 - j] : s[j];
        *p++ = '\n';
    }
    *len = (size_t)(p - buf);
    return buf;
}

static tfm_status task_dataset(tfm_rng *rng, size_t n, bool reverse, const char *label, tsv_dataset *d) {
    size_t len;
    char *text = make_pairs(rng, n, reverse, &len);
    if (!text) return tfm_error(TFM_ERR_NOMEM, "demo: out of memory");
    tfm_status st = tsv_read_memory(text, len, label, NULL, d);
    free(text);
    return st;
}

/* Decode the test set, print a few examples, return the exact-match fraction. */
static tfm_status test_accuracy(seq2seq *m, const tsv_dataset *test, double *exact) {
    double loss;
    TFM_TRY(evaluate(m, test, 0, 0.0f, exact, &loss));
    const uint8_t *srcs[6];
    size_t lens[6];
    char *outs[6];
    for (size_t i = 0; i < 6; i++) srcs[i] = tsv_src(test, i, &lens[i]);
    TFM_TRY(translate_batch(m, srcs, lens, 6, outs));
    for (size_t i = 0; i < 6; i++) {
        size_t tl;
        const uint8_t *t = tsv_tgt(test, i, &tl);
        bool ok = strlen(outs[i]) == tl && !memcmp(outs[i], t, tl);
        printf("   %.*s -> %s  %s\n", (int)lens[i], (const char *)srcs[i], outs[i], ok ? "ok" : "WRONG");
        free(outs[i]);
    }
    return TFM_OK;
}

static int train_task(bool reverse, int64_t steps, uint64_t seed, bool quiet, tfm_compute_type ct) {
    train_options o;
    train_options_default(&o);
    o.compute = ct;
    o.model.d_model = 64, o.model.nhead = 4, o.model.dim_feedforward = 256;
    o.model.num_encoder_layers = o.model.num_decoder_layers = 2;
    o.model.dropout = 0.0f, o.model.max_len = 32;
    o.batch_size = 64, o.bucket = 0;
    o.steps = steps, o.warmup = 100, o.lr = 2e-3, o.seed = seed;
    o.label_smoothing = 0.0f;
    tfm_rng rng;
    rng_seed(&rng, seed);
    tsv_dataset train = {0}, valid = {0}, test = {0};
    seq2seq m = {0};
    optimizer *opt = NULL;
    train_progress p = {0};
    int rc = 1;
    tfm_rng test_rng;
    rng_seed(&test_rng, seed ^ 0x5eed5eed5eedULL); /* fresh sequences, never trained on */
    if (task_dataset(&rng, 100000, reverse, "train", &train) ||
        task_dataset(&rng, 200, reverse, "valid", &valid) ||
        task_dataset(&test_rng, 1000, reverse, "test", &test) || seq2seq_create(&m, &o.model) ||
        optim_create(&o.optim, m.num_floats, &opt)) {
        cli_fail("demo", "%s", tfm_last_error());
        goto done;
    }
    printf("2. Training a Transformer from scratch on the %s task: sequences of %d symbols from a\n"
           "   vocabulary of %d (bytes '0'..'9'), d_model %lld, %lld heads, %lld+%lld layers, %zu\n"
           "   parameters, Adam, batch %zu, %lld steps\n",
           reverse ? "reverse" : "copy", SEQ_LEN, SYMBOLS, (long long)o.model.d_model,
           (long long)o.model.nhead, (long long)o.model.num_encoder_layers,
           (long long)o.model.num_decoder_layers, m.num_floats, o.batch_size, (long long)o.steps);
    train_io io = {.eval_every = steps / 4 > 0 ? steps / 4 : 1, .valid_decode_max = 200,
                   .progress = !quiet && isatty(fileno(stderr)) ? stderr : NULL,
                   .report = quiet ? NULL : stdout};
    double t0 = now_sec();
    if (train_run(&o, &io, &train, &valid, &m, opt, &p)) {
        cli_fail("demo", "%s", tfm_last_error());
        goto done;
    }
    double t1 = now_sec(), exact;
    printf("   trained in %.0f s. Greedy decoding of 1,000 fresh random sequences:\n", t1 - t0);
    if (test_accuracy(&m, &test, &exact)) {
        cli_fail("demo", "%s", tfm_last_error());
        goto done;
    }
    printf("   exact match: %.1f%% of 1,000 (%s the 99%% goal)\n", 100 * exact,
           exact >= 0.99 ? "meets" : "MISSES");
    rc = exact >= 0.99 ? 0 : 1;
done:
    optim_free(opt);
    seq2seq_free(&m);
    tsv_free(&train);
    tsv_free(&valid);
    tsv_free(&test);
    return rc;
}

int cmd_demo(int argc, char **argv) {
    const char *dir = TFM_SOURCE_DIR "/examples/data";
    bool reverse = false, quiet = false;
    int64_t steps = 800;
    uint64_t seed = 1;
    tfm_compute_type ct = TFM_COMPUTE_F32;
    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--quiet")) quiet = true;
        else if (i + 1 >= argc) return cli_fail("demo", "%s needs a value", f);
        else if (!strcmp(f, "--data")) dir = argv[++i];
        else if (!strcmp(f, "--task")) {
            const char *t = argv[++i];
            if (strcmp(t, "copy") && strcmp(t, "reverse")) return cli_fail("demo", "--task: copy or reverse");
            reverse = !strcmp(t, "reverse");
        } else if (!strcmp(f, "--steps")) steps = strtoll(argv[++i], NULL, 10);
        else if (!strcmp(f, "--seed")) seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(f, "--threads")) tfm_set_num_threads(atoi(argv[++i]));
        else if (!strcmp(f, "--compute-type")) {
            if (tfm_compute_type_from_name(argv[++i], &ct) != TFM_OK)
                return cli_fail("demo", "--compute-type: f32 or bf16");
        } else
            return cli_fail("demo", "unknown option '%s' (usage: tfm demo [--task copy|reverse] "
                                    "[--steps N] [--seed S] [--threads N] [--data DIR] [--compute-type f32|bf16] "
                                    "[--quiet])", f);
    }
    if (steps < 1) return cli_fail("demo", "--steps must be >= 1");
    int rc = check_exported(dir, ct);
    if (rc) return rc;
    return train_task(reverse, steps, seed, quiet, ct);
}
