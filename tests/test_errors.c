/* test_errors.c — bad model files, bad input files and bad arguments give a clear
 * error (the status and a message naming the problem), never a crash; `tfm forward`
 * exits non-zero with one line on stderr and leaves no output file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/forward_io.h"
#include "io/safetensors.h"
#include "support/check.h"
#include "tfm.h"

/* How a model file is spoiled: each field names one change to a valid state_dict. */
typedef struct spoil {
    const char *skip;          /* leave out this tensor */
    const char *reshape;       /* give this tensor one extra row */
    const char *extra;         /* add an unknown tensor of this name */
    const char *as_int;        /* store this tensor as I32 */
    const char *meta_key, *meta_value; /* override one metadata entry */
} spoil;

static tfm_module *small_layer(void) {
    tfm_config c;
    tfm_config_default(&c, TFM_TRANSFORMER_ENCODER_LAYER);
    c.d_model = 8, c.nhead = 2, c.dim_feedforward = 16;
    tfm_module *m = NULL;
    assert_int_equal(tfm_module_create(&c, 3, &m), TFM_OK);
    return m;
}

/* Write the small layer's state_dict with one spoil to `path`. */
static void write_spoiled(const char *path, const spoil *s) {
    tfm_module *m = small_layer();
    st_writer *w;
    assert_int_equal(st_writer_new(&w), TFM_OK);
    const char *meta[][2] = {{"module", "TransformerEncoderLayer"}, {"d_model", "8"}, {"nhead", "2"},
                             {"dim_feedforward", "16"}};
    for (size_t i = 0; i < 4; i++) st_writer_meta(w, meta[i][0], meta[i][1]);
    if (s->meta_key) st_writer_meta(w, s->meta_key, s->meta_value);
    static float big[4096];
    static int32_t ints[4096];
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *name;
        tfm_tensor t;
        tfm_module_param(m, i, &name, &t);
        if (s->skip && !strcmp(name, s->skip)) continue;
        int64_t shape[4];
        memcpy(shape, t.shape, sizeof shape);
        if (s->reshape && !strcmp(name, s->reshape)) {
            shape[0] += 1;
            assert_int_equal(st_writer_add(w, name, ST_F32, t.ndim, shape, big), TFM_OK);
        } else if (s->as_int && !strcmp(name, s->as_int)) {
            assert_int_equal(st_writer_add(w, name, ST_I32, t.ndim, shape, ints), TFM_OK);
        } else {
            assert_int_equal(st_writer_add(w, name, ST_F32, t.ndim, shape, t.data), TFM_OK);
        }
    }
    int64_t one = 1;
    if (s->extra) assert_int_equal(st_writer_add(w, s->extra, ST_F32, 1, &one, big), TFM_OK);
    assert_int_equal(st_writer_write(w, path), TFM_OK);
    st_writer_free(w);
    tfm_module_free(m);
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

/* A valid input file for the small layer: src (5, 2, 8). */
static void write_input(const char *path, const char *extra_name, st_dtype mask_dtype,
                        int64_t mask_rows) {
    static float src[5 * 2 * 8], mask[64];
    st_writer *w;
    assert_int_equal(st_writer_new(&w), TFM_OK);
    int64_t s[3] = {5, 2, 8}, ms[2] = {mask_rows, 5};
    st_writer_add(w, "src", ST_F32, 3, s, src);
    if (mask_rows) st_writer_add(w, "src_mask", mask_dtype, 2, ms, mask);
    if (extra_name) st_writer_add(w, extra_name, ST_F32, 3, s, src);
    assert_int_equal(st_writer_write(w, path), TFM_OK);
    st_writer_free(w);
}

/* Load must fail with `status` and a message containing `words`. */
static void expect_load_error(const char *path, tfm_status status, const char *words) {
    tfm_module *m = (tfm_module *)1;
    tfm_status st = tfm_module_load(path, &m);
    if (st != status || !strstr(tfm_last_error(), words))
        fail_msg("load %s: status %d (want %d), message \"%s\" (want \"%s\")", path, st, status,
                 tfm_last_error(), words);
    assert_null(m);
}

/* `tfm forward` must exit 1, print one line naming `words`, and leave no OUT. */
static void expect_cli_error(const char *model, const char *input, const char *words) {
    char out[1024], err[1024], cmd[4096], line[2048];
    tmp_path(out, sizeof out, "cli_out.safetensors");
    tmp_path(err, sizeof err, "cli_err.txt");
    write_bytes(out, "stale", 5); /* an old result must not survive a failed run */
    snprintf(cmd, sizeof cmd, "%s forward --model %s --input %s --output %s 2>%s", TFM_CLI, model,
             input, out, err);
    assert_int_equal(run_command(cmd), 1);
    assert_int_equal(access(out, F_OK), -1);
    FILE *f = fopen(err, "r");
    assert_non_null(f);
    int lines = 0;
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        lines++;
        found = found || strstr(line, words);
    }
    fclose(f);
    if (lines != 1 || !found) fail_msg("stderr had %d lines, wanted 1 with \"%s\"", lines, words);
}

static const char *tmp(const char *name) {
    static char bufs[8][1024];
    static int k;
    return tmp_path(bufs[k++ % 8], sizeof bufs[0], name);
}

static void test_bad_model_files(void **state) {
    const char *p = tmp("bad_model.safetensors"), *in = tmp("good_input.safetensors");
    write_input(in, NULL, ST_F32, 0);
    static const struct {
        spoil s;
        tfm_status st;
        const char *words;
    } cases[] = {
        {{.skip = "linear1.weight"}, TFM_ERR_MISSING, "missing tensor 'linear1.weight'"},
        {{.reshape = "self_attn.in_proj_weight"}, TFM_ERR_SHAPE, "'self_attn.in_proj_weight' has shape [25, 8]"},
        {{.extra = "decoder.bogus"}, TFM_ERR_UNEXPECTED, "unexpected tensor 'decoder.bogus'"},
        {{.as_int = "norm1.weight"}, TFM_ERR_FORMAT, "'norm1.weight' has dtype I32"},
        {{.meta_key = "module", .meta_value = "Conv2d"}, TFM_ERR_UNSUPPORTED, "unknown module 'Conv2d'"},
        {{.meta_key = "nhead", .meta_value = "3"}, TFM_ERR_INVALID_ARG, "divisible by nhead"},
        {{.meta_key = "nhead", .meta_value = "two"}, TFM_ERR_FORMAT, "'nhead': expected an integer"},
        {{.meta_key = "d_model", .meta_value = "-8"}, TFM_ERR_INVALID_ARG, "'d_model': -8 is out of range"},
        {{.meta_key = "d_model", .meta_value = "99999999999"}, TFM_ERR_INVALID_ARG, "out of range"},
        {{.meta_key = "norm_first", .meta_value = "maybe"}, TFM_ERR_FORMAT, "'norm_first'"},
        {{.meta_key = "activation", .meta_value = "tanh"}, TFM_ERR_UNSUPPORTED, "'activation'"},
        {{.meta_key = "layer_norm_eps", .meta_value = "nan"}, TFM_ERR_FORMAT, "'layer_norm_eps'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_spoiled(p, &cases[i].s);
        expect_load_error(p, cases[i].st, cases[i].words);
        expect_cli_error(p, in, cases[i].words);
    }
}

static void test_broken_files(void **state) {
    const char *p = tmp("broken.safetensors"), *good = tmp("good_model.safetensors");
    const char *in = tmp("good_input2.safetensors");
    write_input(in, NULL, ST_F32, 0);
    spoil none = {0};
    write_spoiled(good, &none);
    /* truncated: the valid file cut in the middle of its data */
    FILE *f = fopen(good, "rb");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    write_bytes(p, buf, n / 2);
    expect_load_error(p, TFM_ERR_FORMAT, "");
    expect_cli_error(p, in, "broken.safetensors");
    write_bytes(p, buf, 5);
    expect_load_error(p, TFM_ERR_FORMAT, "broken.safetensors");
    /* header that is not JSON */
    char bad[64] = {16, 0, 0, 0, 0, 0, 0, 0};
    memcpy(bad + 8, "{not json at all", 16);
    write_bytes(p, bad, 24);
    expect_load_error(p, TFM_ERR_FORMAT, "broken.safetensors");
    expect_cli_error(p, in, "broken.safetensors");
    /* no metadata: not a module file */
    char empty[16] = {8, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    write_bytes(p, empty, 16);
    expect_load_error(p, TFM_ERR_FORMAT, "no \"module\"");
    /* a file that does not exist, and the input being broken instead of the model */
    expect_load_error(tmp("does_not_exist.safetensors"), TFM_ERR_IO, "does_not_exist");
    expect_cli_error(good, p, "broken.safetensors");
    expect_cli_error(good, tmp("no_input.safetensors"), "no_input");
}

static void test_bad_inputs(void **state) {
    const char *model = tmp("good_model3.safetensors"), *in = tmp("bad_input.safetensors");
    spoil none = {0};
    write_spoiled(model, &none);
    write_input(in, "query", ST_F32, 0);
    expect_cli_error(model, in, "unexpected input tensor 'query'");
    write_input(in, NULL, ST_F32, 4); /* src_mask (4, 5) for L = 5 */
    expect_cli_error(model, in, "mask 'src_mask' must be (5, 5)");
    write_input(in, NULL, ST_I64, 5);
    expect_cli_error(model, in, "'src_mask' has dtype I64");
    /* no src at all */
    st_writer *w;
    st_writer_new(&w);
    st_writer_meta(w, "is_causal", "perhaps");
    st_writer_write(w, in);
    st_writer_free(w);
    expect_cli_error(model, in, "'is_causal'");
    st_writer_new(&w);
    st_writer_write(w, in);
    st_writer_free(w);
    expect_cli_error(model, in, "input 'src' is required");
}

static void test_bad_arguments(void **state) {
    tfm_module *m = small_layer();
    tfm_inputs in;
    tfm_outputs out;
    float x[2 * 5 * 8] = {0};
    unsigned char kpm[10] = {0};
    tfm_inputs_init(&in);
    in.src = (tfm_tensor){x, TFM_F32, 3, {5, 2, 7}};
    assert_int_equal(tfm_forward(m, &in, &out), TFM_ERR_SHAPE);
    assert_non_null(strstr(tfm_last_error(), "width 7"));
    in.src = (tfm_tensor){x, TFM_F32, 4, {1, 5, 2, 8}};
    assert_int_equal(tfm_forward(m, &in, &out), TFM_ERR_SHAPE);
    in.src = (tfm_tensor){x, TFM_F32, 3, {5, 2, 8}};
    in.src_key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {5, 2}}; /* should be (N, S) = (2, 5) */
    assert_int_equal(tfm_forward(m, &in, &out), TFM_ERR_SHAPE);
    assert_non_null(strstr(tfm_last_error(), "src_key_padding_mask"));
    in.src_key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {2, 5}};
    assert_int_equal(tfm_forward(m, &in, &out), TFM_OK);
    assert_int_equal(tfm_forward(m, NULL, &out), TFM_ERR_INVALID_ARG);
    tfm_module_free(m);

    tfm_config c;
    tfm_config_default(&c, TFM_MULTIHEAD_ATTENTION);
    c.embed_dim = 10, c.num_heads = 4;
    assert_int_equal(tfm_module_create(&c, 0, &m), TFM_ERR_INVALID_ARG);
    assert_non_null(strstr(tfm_last_error(), "divisible"));
    c.embed_dim = 0;
    assert_int_equal(tfm_module_create(&c, 0, &m), TFM_ERR_INVALID_ARG);
    assert_int_equal(tfm_module_load(NULL, &m), TFM_ERR_INVALID_ARG);
    assert_int_equal(run_command(TFM_CLI " forward --model 2>/dev/null"), 1);
    assert_int_equal(run_command(TFM_CLI " forward --bogus x 2>/dev/null"), 1);
    assert_int_equal(run_command(TFM_CLI " nosuchcommand 2>/dev/null"), 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_model_files),
        cmocka_unit_test(test_broken_files),
        cmocka_unit_test(test_bad_inputs),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
