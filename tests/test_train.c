/* test_train.c — training end to end: the loss falls on a small task; checkpoints
 * round-trip; a run killed with SIGKILL and resumed ends bit-identical to an
 * uninterrupted one; the thread count does not change a bit; `tfm translate` writes a
 * line per input line; bad data is reported with its line number. */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/rng.h"
#include "io/safetensors.h"
#include "support/check.h"
#include "train/trainer.h"

static const char *tmp(const char *name) {
    static char bufs[16][1024];
    static int k;
    return tmp_path(bufs[k++ % 16], sizeof bufs[0], name);
}

/* n reversal pairs of 3–8 letters. */
static void write_reverse_tsv(const char *path, size_t n, uint64_t seed) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    tfm_rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) {
        char s[16];
        int len = 3 + (int)(rng_next(&r) % 6);
        for (int j = 0; j < len; j++) s[j] = (char)('a' + rng_next(&r) % 6);
        fprintf(f, "%.*s\t", len, s);
        for (int j = len - 1; j >= 0; j--) fputc(s[j], f);
        fputc('\n', f);
    }
    fclose(f);
}

static bool files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        eq = ca == cb;
        if (ca == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

#define SMALL_MODEL "--d-model 32 --heads 2 --ff 64 --max-len 16 --batch-size 16 --quiet --eval-every 0"

static void test_loss_falls_and_checkpoint_roundtrips(void **state) {
    const char *data = tmp("rev.tsv"), *model = tmp("rev.safetensors");
    write_reverse_tsv(data, 400, 1);
    tsv_dataset d;
    assert_int_equal(tsv_read_file(data, NULL, &d), TFM_OK);
    train_options o;
    train_options_default(&o);
    o.model.d_model = 32, o.model.nhead = 2, o.model.dim_feedforward = 64, o.model.max_len = 16;
    o.batch_size = 32, o.steps = 60, o.warmup = 10, o.lr = 3e-3;
    seq2seq m;
    optimizer *opt;
    assert_int_equal(seq2seq_create(&m, &o.model), TFM_OK);
    assert_int_equal(optim_create(&o.optim, m.num_floats, &opt), TFM_OK);
    train_progress p = {0};
    train_io io = {.out_path = model};
    double exact0, loss0, exact1, loss1;
    seq2seq_init(&m, o.seed);
    assert_int_equal(evaluate(&m, &d, 64, 0.0f, &exact0, &loss0), TFM_OK);
    assert_int_equal(train_run(&o, &io, &d, NULL, &m, opt, &p), TFM_OK);
    assert_int_equal(evaluate(&m, &d, 64, 0.0f, &exact1, &loss1), TFM_OK);
    printf("loss %.3f -> %.3f over %lld steps\n", loss0, loss1, (long long)p.step);
    assert_true(loss1 < 0.6 * loss0);
    assert_int_equal(p.step, 60);

    /* the checkpoint holds the same parameters, options, progress and optimizer state */
    seq2seq r;
    optimizer *ropt;
    train_options ro;
    train_progress rp;
    assert_int_equal(checkpoint_load(model, &r, &ropt, &ro, &rp), TFM_OK);
    assert_int_equal(r.num_floats, m.num_floats);
    assert_memory_equal(r.block, m.block, m.num_floats * sizeof(float));
    assert_int_equal(rp.step, 60);
    assert_int_equal(ro.steps, 60);
    assert_true(ro.lr == o.lr && ro.model.d_model == 32 && ro.batch_size == 32);
    assert_int_equal(optim_get_step(ropt), optim_get_step(opt));
    const char *name;
    float *a, *b;
    assert_int_equal(optim_state(opt, 0, &name, &a), TFM_OK);
    assert_int_equal(optim_state(ropt, 0, &name, &b), TFM_OK);
    assert_memory_equal(a, b, m.num_floats * sizeof(float));
    optim_free(ropt);
    seq2seq_free(&r);
    optim_free(opt);
    seq2seq_free(&m);
    tsv_free(&d);
}

/* `tfm train` with --threads 1 and 2 writes the same bytes. */
static void test_thread_count_invariance(void **state) {
    const char *data = tmp("rev2.tsv"), *a = tmp("t1.safetensors"), *b = tmp("t2.safetensors");
    write_reverse_tsv(data, 300, 2);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 20 --threads 1 --dropout 0.1 " SMALL_MODEL,
             TFM_CLI, data, a);
    assert_int_equal(run_command(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 20 --threads 2 --dropout 0.1 " SMALL_MODEL,
             TFM_CLI, data, b);
    assert_int_equal(run_command(cmd), 0);
    assert_true(files_equal(a, b));
}

/* Mixed precision: `tfm train --compute-type bf16` learns the task as FP32 does (loss
 * falls as far), bit-identically on 1 and 2 threads, records the compute type in the
 * checkpoint, refuses to resume it as f32, and translates with it; nonsense values of
 * --compute-type are one-line errors on every command. */
static void test_bf16_training(void **state) {
    const char *data = tmp("rev3.tsv"), *a = tmp("b1.safetensors"), *b = tmp("b2.safetensors");
    write_reverse_tsv(data, 400, 3);
    tsv_dataset d;
    assert_int_equal(tsv_read_file(data, NULL, &d), TFM_OK);
    double loss[2];
    for (int bf16 = 0; bf16 < 2; bf16++) { /* the library: same seed, f32 then bf16 */
        train_options o;
        train_options_default(&o);
        o.model.d_model = 32, o.model.nhead = 2, o.model.dim_feedforward = 64, o.model.max_len = 16;
        o.batch_size = 32, o.steps = 60, o.warmup = 10, o.lr = 3e-3;
        o.compute = bf16 ? TFM_COMPUTE_BF16 : TFM_COMPUTE_F32;
        seq2seq m;
        optimizer *opt;
        assert_int_equal(seq2seq_create(&m, &o.model), TFM_OK);
        assert_int_equal(optim_create(&o.optim, m.num_floats, &opt), TFM_OK);
        seq2seq_init(&m, o.seed);
        train_progress p = {0};
        train_io io = {0};
        double exact;
        assert_int_equal(train_run(&o, &io, &d, NULL, &m, opt, &p), TFM_OK);
        assert_int_equal(evaluate(&m, &d, 64, 0.0f, &exact, &loss[bf16]), TFM_OK);
        optim_free(opt);
        seq2seq_free(&m);
    }
    printf("loss after 60 steps: f32 %.4f, bf16 %.4f\n", loss[0], loss[1]);
    assert_true(loss[1] != loss[0]);                 /* bf16 did compute differently */
    assert_true(fabs(loss[1] - loss[0]) < 0.1 * loss[0]); /* and learned as far */
    tsv_free(&d);

    char cmd[4096];
    for (int t = 1; t <= 2; t++) {
        snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 20 --threads %d "
                 "--dropout 0.1 --compute-type bf16 " SMALL_MODEL, TFM_CLI, data, t == 1 ? a : b, t);
        assert_int_equal(run_command(cmd), 0);
    }
    assert_true(files_equal(a, b));
    st_file *f;
    assert_int_equal(st_open(a, &f), TFM_OK);
    assert_non_null(st_meta(f, "train.compute_type"));
    assert_string_equal(st_meta(f, "train.compute_type"), "bf16");
    st_close(f);
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 30 --resume --compute-type f32 "
             SMALL_MODEL " 2>/dev/null", TFM_CLI, data, a);
    assert_int_equal(run_command(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 30 --resume " SMALL_MODEL,
             TFM_CLI, data, a);
    assert_int_equal(run_command(cmd), 0);
    snprintf(cmd, sizeof cmd, "printf 'abc\\n' | %s translate --model %s --compute-type bf16 > /dev/null",
             TFM_CLI, a);
    assert_int_equal(run_command(cmd), 0);
    /* the public decoding API in bf16: log-probabilities near FP32's */
    float lp[2][259];
    for (int bf16 = 0; bf16 < 2; bf16++) {
        tfm_translator *tr;
        tfm_decoder *dec;
        assert_int_equal(tfm_translator_load(a, &tr), TFM_OK);
        assert_int_equal(tfm_translator_set_compute_type(tr, bf16 ? TFM_COMPUTE_BF16 : TFM_COMPUTE_F32),
                         TFM_OK);
        const char *srcs[1] = {"hello"};
        const size_t lens[1] = {5};
        const int32_t bos = TFM_TOKEN_BOS;
        assert_int_equal(tfm_decoder_start(tr, srcs, lens, 1, &dec), TFM_OK);
        assert_int_equal(tfm_decoder_step(dec, &bos, lp[bf16]), TFM_OK);
        tfm_decoder_free(dec);
        tfm_translator_free(tr);
    }
    double worst = 0;
    for (int v = 0; v < 259; v++)
        if (lp[0][v] > -20.0f) worst = fmax(worst, fabs((double)lp[1][v] - lp[0][v]));
    printf("decoder step, bf16 vs f32 log-probabilities: at most %.3g apart\n", worst);
    assert_true(worst > 0 && worst < 0.1);
    assert_int_equal(tfm_translator_set_compute_type(NULL, TFM_COMPUTE_BF16), TFM_ERR_INVALID_ARG);
    static const char *const bad[] = {
        "train --train %s --out /dev/null --compute-type fp8", "translate --model %s --compute-type x",
        "demo --compute-type half", "forward --model %s --input %s --output /dev/null --compute-type bf17"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char sub[512];
        snprintf(sub, sizeof sub, bad[i], a, a);
        snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", TFM_CLI, sub);
        assert_int_equal(run_command(cmd), 1);
    }
}

/* The step recorded in a checkpoint, or -1 if it cannot be read. */
static long checkpoint_step(const char *path) {
    st_file *f;
    if (st_open(path, &f) != TFM_OK) return -1;
    const char *v = st_meta(f, "progress.step");
    long s = v ? atol(v) : -1;
    st_close(f);
    return s;
}

/* Kill `tfm train --resume` with SIGKILL at moments spread over the run, resume each
 * time, and finish: the result equals an uninterrupted run's, byte for byte. */
static void test_sigkill_resume(void **state) {
    const char *data = tmp("rev3.tsv"), *ref = tmp("ref.safetensors"), *out = tmp("killed.safetensors");
    write_reverse_tsv(data, 300, 3);
    char args[2048], cmd[4096];
    snprintf(args, sizeof args, "train --train %s --steps 400 --checkpoint-every 7 --dropout 0.1 " SMALL_MODEL,
             data);
    snprintf(cmd, sizeof cmd, "%s %s --out %s", TFM_CLI, args, ref);
    assert_int_equal(run_command(cmd), 0);
    snprintf(cmd, sizeof cmd, "exec %s %s --out %s --resume", TFM_CLI, args, out);
    tfm_rng r;
    rng_seed(&r, (uint64_t)time(NULL)); /* random moments: each run of the test tries others */
    int killed_after_checkpoint = 0;
    for (int k = 0; k < 12 && killed_after_checkpoint < 4; k++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        /* Wait until this run has written a checkpoint of its own (so the kill lands in
         * the middle of real progress, however loaded the machine), then a random moment
         * more: during a step, or during a save. */
        long before = checkpoint_step(out);
        int status = 0;
        bool exited = false;
        for (int w = 0; w < 4000 && !exited && checkpoint_step(out) <= before; w++) {
            struct timespec poll = {0, 2 * 1000000L};
            nanosleep(&poll, NULL);
            exited = waitpid(pid, &status, WNOHANG) == pid;
        }
        struct timespec ts = {0, (long)(rng_next(&r) % 120) * 1000000L};
        if (!exited) {
            nanosleep(&ts, NULL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        long step = checkpoint_step(out);
        printf("  after %ld ms: %s, last checkpoint at step %ld\n", ts.tv_nsec / 1000000L,
               WIFSIGNALED(status) ? "killed" : "finished", step);
        /* whatever moment it died at, what is on disk is a whole checkpoint */
        if (access(out, F_OK) == 0) assert_true(step >= 7 && (step % 7 == 0 || step == 400));
        if (WIFSIGNALED(status) && step > 0) killed_after_checkpoint++;
        if (WIFEXITED(status)) break;
    }
    assert_true(killed_after_checkpoint >= 1);
    assert_int_equal(run_command(cmd), 0);
    assert_int_equal(checkpoint_step(out), 400);
    assert_true(files_equal(ref, out));
    /* temporaries of killed saves are cleaned up by the next run */
    snprintf(cmd, sizeof cmd, "ls %s.tmp.* 2>/dev/null | grep -q .", out);
    assert_int_not_equal(run_command(cmd), 0);
}

static void test_translate_and_bad_data(void **state) {
    const char *data = tmp("rev4.tsv"), *model = tmp("m4.safetensors"), *in = tmp("in4.txt");
    const char *outp = tmp("out4.txt"), *err = tmp("err4.txt"), *bad = tmp("bad.tsv");
    write_reverse_tsv(data, 100, 4);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 5 " SMALL_MODEL, TFM_CLI, data, model);
    assert_int_equal(run_command(cmd), 0);
    FILE *f = fopen(in, "w");
    fputs("abc\n\nfedcba\nx\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s translate --model %s --input %s > %s", TFM_CLI, model, in, outp);
    assert_int_equal(run_command(cmd), 0);
    f = fopen(outp, "r");
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF) lines += c == '\n';
    fclose(f);
    assert_int_equal(lines, 4); /* one output line per input line, the empty one included */

    f = fopen(in, "w");
    fputs("abc\nthis line is far longer than the sixteen bytes the model allows\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s translate --model %s --input %s > %s 2> %s", TFM_CLI, model, in, outp, err);
    assert_int_equal(run_command(cmd), 1);

    f = fopen(bad, "w");
    fputs("abc\tcba\nno tab here\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 5 " SMALL_MODEL " 2> %s", TFM_CLI, bad,
             tmp("never.safetensors"), err);
    assert_int_equal(run_command(cmd), 1);
    char msg[1024] = "";
    f = fopen(err, "r");
    assert_non_null(fgets(msg, sizeof msg, f));
    fclose(f);
    assert_non_null(strstr(msg, "bad.tsv:2"));
    assert_int_equal(access(tmp("never.safetensors"), F_OK), -1);
}

/* A save that fails (an unwritable place, a full disk — here a file-size limit) is an
 * error naming the file, and the previous checkpoint is left intact, with no temporary
 * file beside it. */
static void test_failed_save_keeps_checkpoint(void **state) {
    const char *data = tmp("rev5.tsv"), *model = tmp("keep.safetensors"), *err = tmp("err5.txt");
    const char *copy = tmp("keep.copy");
    write_reverse_tsv(data, 100, 5);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s --steps 6 --checkpoint-every 3 " SMALL_MODEL,
             TFM_CLI, data, model);
    assert_int_equal(run_command(cmd), 0);
    snprintf(cmd, sizeof cmd, "cp %s %s", model, copy);
    assert_int_equal(run_command(cmd), 0);
    /* resume with more steps under a 64 KiB file-size limit: the next save cannot fit */
    snprintf(cmd, sizeof cmd, "sh -c 'ulimit -f 128; exec %s train --train %s --out %s --steps 9 "
             "--checkpoint-every 3 --resume " SMALL_MODEL "' 2> %s", TFM_CLI, data, model, err);
    assert_int_equal(run_command(cmd), 1);
    char msg[1024] = "";
    FILE *f = fopen(err, "r");
    assert_non_null(f);
    assert_non_null(fgets(msg, sizeof msg, f));
    fclose(f);
    assert_non_null(strstr(msg, "keep.safetensors"));
    assert_true(files_equal(model, copy));
    snprintf(cmd, sizeof cmd, "ls %s.tmp.* 2>/dev/null | grep -q .", model);
    assert_int_not_equal(run_command(cmd), 0);
    /* an output directory that does not exist: refused before any training */
    snprintf(cmd, sizeof cmd, "%s train --train %s --out %s/no/such/dir/m.safetensors --steps 3 " SMALL_MODEL
             " 2> %s", TFM_CLI, data, tmp(""), err);
    assert_int_equal(run_command(cmd), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loss_falls_and_checkpoint_roundtrips),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_bf16_training),
        cmocka_unit_test(test_sigkill_resume),
        cmocka_unit_test(test_translate_and_bad_data),
        cmocka_unit_test(test_failed_save_keeps_checkpoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
