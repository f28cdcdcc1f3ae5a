/* test_bad_inputs.c — "Hostile inputs", part 3: every kind of bad input gives a clear
 * error (the status, and a message naming the file, tensor or line and what is wrong)
 * and never a crash, through the library and, for files, through the CLI: `tfm forward`,
 * `tfm train` and `tfm translate` exit 1, print exactly one line on stderr holding the
 * expected words, and leave no output file.
 *
 * Row of the issue → where it is tested (tests in other files are not repeated here):
 *
 *  1 truncated file ............... test_safetensors.c: test_truncated_short, test_corruptions
 *                                   (every prefix of a file); test_errors.c: test_broken_files
 *                                   (a model cut in half and at 5 bytes, library + CLI);
 *                                   here: test_file_damage_cli (model, input and checkpoint
 *                                   files cut in the length prefix, header and data, through
 *                                   `tfm forward`, `tfm translate`, `tfm train --resume`).
 *  2 header length > file / absurd  test_safetensors.c: test_truncated_header_beyond_file,
 *                                   test_header_length_absurd (in memory); here:
 *                                   test_file_damage_cli (real files, library + all three commands).
 *  3 header not JSON / not object . test_safetensors.c: test_header_not_json,
 *                                   test_header_array_not_object; test_errors.c:
 *                                   test_broken_files (not JSON, CLI); here: test_file_damage_cli
 *                                   (an array, a string; model, input and checkpoint).
 *  4 duplicate keys ............... test_safetensors.c: test_duplicate_tensor_keys,
 *                                   test_duplicate_metadata_keys; here: test_file_damage_cli
 *                                   (a repeated tensor, a repeated "module").
 *  5 offsets out of range, overlapping, not covering
 *                                   test_safetensors.c: test_offsets_out_of_range,
 *                                   test_offsets_begin_after_end, test_overlapping_tensors,
 *                                   test_hole_in_data; here: test_file_damage_cli.
 *  6 dtype × shape ≠ byte length .. test_safetensors.c: test_byte_length_mismatch; here:
 *                                   test_file_damage_cli.
 *  7 shapes not matching the config test_errors.c: test_bad_model_files (one extra row);
 *                                   here: test_model_shape_mismatch (a wrong rank, a transposed
 *                                   matrix, a scalar for a vector, kdim, a checkpoint).
 *  8 zero, negative, huge dimensions; overflow of every product of sizes from a file
 *                                   test_safetensors.c: test_negative_dim, test_bad_dims,
 *                                   test_numel_overflow; test_errors.c: d_model -8 and
 *                                   99999999999; here: test_config_dims (every size key of
 *                                   every module kind: 0, negative, above the limit; products
 *                                   that overflow; huge but legal sizes fail on the missing
 *                                   tensors without allocating), test_checkpoint_dims
 *                                   (`tfm translate`), test_input_dims (negative, > 2^40,
 *                                   N·L·E overflow, zero-element files with a huge dimension).
 *  9 missing and unexpected tensors test_errors.c: test_bad_model_files (model files),
 *                                   test_bad_inputs (input 'query' for a layer, no 'src');
 *                                   here: test_missing_unexpected (required inputs of every
 *                                   kind, library + CLI; an input of another kind in an
 *                                   input file; checkpoints: a missing parameter, an unknown
 *                                   tensor, missing optimizer state on --resume),
 *                                   test_unexpected_inputs_library (tfm_inputs fields the
 *                                   module kind does not take), test_flags_of_other_kinds_cli
 *                                   (flags in an input file that the module does not take).
 * 10 unknown module name .......... test_errors.c: "Conv2d" (library + CLI); here:
 *                                   test_unknown_module (wrong case, empty, absent; a checkpoint
 *                                   given to `tfm forward`, a module file to `tfm translate`).
 * 11 embed_dim % num_heads ≠ 0 .... test_errors.c: layer file nhead 3, tfm_module_create of
 *                                   MultiheadAttention; here: test_not_divisible
 *                                   (MultiheadAttention file, nhead > d_model, checkpoint,
 *                                   `tfm train --d-model 30 --heads 4`).
 * 12 masks of wrong shape or dtype  test_errors.c: src_mask (4, 5), an I64 src_mask (CLI),
 *                                   src_key_padding_mask (5, 2); here: test_mask_shapes_library
 *                                   and test_mask_dtypes_library (all 20 mask inputs of the
 *                                   six module kinds), test_masks_cli (the same through
 *                                   `tfm forward`: wrong shape, I64/I32/U8/I8 dtype, and F16:
 *                                   converted exactly like any float input).
 * 13 NaN/Inf in inputs ............ here: test_nan_inf_library, test_nan_inf_cli.
 * 14 empty sequences .............. here: test_empty_sequences_library (L = 0, S = 0, N = 0,
 *                                   every kind), test_empty_sequences_cli, test_decode_edges
 *                                   (an empty source); test_train.c: an empty translate line.
 * 15 TSV: invalid UTF-8, long lines test_data.c: test_tsv_errors (the reader: every UTF-8
 *                                   error class, line limits); test_train.c: a line with no TAB
 *                                   through `tfm train`; here: test_tsv_cli (UTF-8, over-long
 *                                   lines and sequences, no TAB after CRLF lines and a BOM,
 *                                   --valid, an empty file, CRLF accepted).
 * 16 decoding longer than max_len . test_train.c: `tfm translate` of a long line (exit
 *                                   status); test_search.c: a source longer than max_len;
 *                                   test_decode.c: a full kv_decoder; here: test_decode_edges
 *                                   (tfm_decoder_start / tfm_decoder_step past max_len,
 *                                   `tfm translate` at max_len and max_len + 1).
 *
 * NaN and Inf (row 13) are not errors (the behaviour pinned here, for the README to
 * state): like PyTorch, tfm computes with them and they spread along the data flow. A NaN or ±Inf in query row i makes output row i NaN (its
 * scores are NaN, so is its softmax); a NaN in key or value row j makes every output row
 * of that batch element NaN, even where key j is masked out (PyTorch adds the mask to a
 * NaN score, and 0·NaN is NaN); a NaN in a float mask entry (i, j) makes row i NaN. Rows
 * and batch elements the bad value does not reach are unchanged.
 *
 * Empty sequences (row 14) follow PyTorch: L = 0 gives an empty output of the right shape;
 * S = 0 (no keys at all) gives a zero attention output, so MultiheadAttention returns
 * out_proj.bias in every row (PyTorch's math path: an empty softmax times an empty V),
 * and attention weights of shape (N, L, 0); N = 0 gives an empty batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "support/check.h"
#include "tfm.h"

#define W(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- helpers ------------------------------------------------------------------------ */

/* A path in the test's temporary directory; the same name gives the same (lasting) string. */
static const char *tmp(const char *name) {
    static struct {
        char name[64], path[1024];
    } seen[128];
    static int n;
    for (int i = 0; i < n; i++)
        if (!strcmp(seen[i].name, name)) return seen[i].path;
    assert_true(n < 128 && strlen(name) < sizeof seen[0].name);
    snprintf(seen[n].name, sizeof seen[n].name, "%s", name);
    return tmp_path(seen[n].path, sizeof seen[n].path, name), seen[n++].path;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

static unsigned char *read_bytes(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(*n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *n, f), *n);
    fclose(f);
    return b;
}

/* A safetensors image: 8-byte length (header_len, which may lie), the header, data. */
static void write_st_raw(const char *path, uint64_t header_len, const char *header,
                         size_t data_len) {
    size_t n = strlen(header), len = 8 + n + data_len;
    unsigned char *b = calloc(len, 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(header_len >> (8 * i));
    memcpy(b + 8, header, n);
    write_bytes(path, b, len);
    free(b);
}
static void write_st(const char *path, const char *header, size_t data_len) {
    write_st_raw(path, strlen(header), header, data_len);
}

/* The status is `want` and the last error holds every word. */
static void expect_error_(tfm_status got, tfm_status want, const char *what,
                          const char *const *words) {
    const char *msg = tfm_last_error();
    if (got != want)
        fail_msg("%s: status %d (%s), want %d (%s); message \"%s\"", what, got,
                 tfm_status_string(got), want, tfm_status_string(want), msg);
    for (; *words; words++)
        if (!strstr(msg, *words)) fail_msg("%s: message \"%s\" lacks \"%s\"", what, msg, *words);
}
#define EXPECT_ERROR(call, want, ...) expect_error_((call), (want), #call, W(__VA_ARGS__))

static void expect_ok_(tfm_status got, const char *what) {
    if (got != TFM_OK) fail_msg("%s: status %d, message \"%s\"", what, got, tfm_last_error());
}
#define EXPECT_OK(call) expect_ok_((call), #call)

/* Run `tfm ARGS`: exit status 1, exactly one line on stderr holding every word (and
 * `also`, unless NULL), and (when out is not NULL) no file at `out` afterwards — for
 * `tfm forward` even though a stale one was there before. */
static void cli_fails2(const char *args, const char *out, const char *const *words,
                       const char *also) {
    char cmd[8192], line[4096];
    const char *err = tmp("cli_stderr.txt");
    bool forward = !strncmp(args, "forward ", 8);
    if (out && forward) write_text(out, "stale");
    if (out && !forward) unlink(out);
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", TFM_CLI, args, err);
    int rc = run_command(cmd);
    FILE *f = fopen(err, "r");
    assert_non_null(f);
    int lines = 0;
    char first[4096] = "";
    while (fgets(line, sizeof line, f))
        if (lines++ == 0) snprintf(first, sizeof first, "%s", line);
    fclose(f);
    if (rc != 1) fail_msg("tfm %s: exit status %d, want 1; stderr \"%s\"", args, rc, first);
    if (lines != 1) fail_msg("tfm %s: %d lines on stderr, want 1; first \"%s\"", args, lines, first);
    for (; *words; words++)
        if (!strstr(first, *words)) fail_msg("tfm %s: stderr \"%s\" lacks \"%s\"", args, first, *words);
    if (also && !strstr(first, also)) fail_msg("tfm %s: stderr \"%s\" lacks \"%s\"", args, first, also);
    if (out && access(out, F_OK) == 0) fail_msg("tfm %s: left a file at %s", args, out);
}
static void cli_fails(const char *args, const char *out, const char *const *words) {
    cli_fails2(args, out, words, NULL);
}

/* Run `tfm ARGS`, which must succeed (within `seconds` when > 0). */
static void cli_ok_within(const char *args, int seconds) {
    char cmd[8192], limit[64] = "";
    const char *err = tmp("cli_stderr.txt");
    if (seconds > 0) snprintf(limit, sizeof limit, "timeout -s KILL %d ", seconds);
    snprintf(cmd, sizeof cmd, "%s%s %s >/dev/null 2>%s", limit, TFM_CLI, args, err);
    int rc = run_command(cmd);
    if (rc != 0) {
        char line[4096] = "";
        FILE *f = fopen(err, "r");
        if (f && !fgets(line, sizeof line, f)) line[0] = '\0';
        if (f) fclose(f);
        fail_msg("tfm %s: exit status %d%s, want 0; stderr \"%s\"", args, rc,
                 seconds > 0 && rc == 137 ? " (killed: still running)" : "", line);
    }
}
static void cli_ok(const char *args) { cli_ok_within(args, 0); }

/* `tfm forward` of model and input, expected to fail with the words (and `also`). */
static void forward_fails2(const char *model, const char *input, const char *const *words,
                           const char *also) {
    char args[4096];
    const char *out = tmp("fwd_out.safetensors");
    snprintf(args, sizeof args, "forward --model %s --input %s --output %s", model, input, out);
    cli_fails2(args, out, words, also);
}
static void forward_fails(const char *model, const char *input, const char *const *words) {
    forward_fails2(model, input, words, NULL);
}

/* `tfm forward` of model and input to out, which must succeed. */
static void forward_ok(const char *model, const char *input, const char *out) {
    char args[4096];
    snprintf(args, sizeof args, "forward --model %s --input %s --output %s", model, input, out);
    cli_ok(args);
}

/* How a safetensors file is copied with one change. */
typedef struct edit {
    const char *drop;                  /* leave out this tensor */
    const char *reshape;               /* store this tensor with shape `shape` (ndim dims, */
    int ndim;                          /* the same number of values), or as one value */
    int64_t shape[4];                  /* of shape [1] when ndim is 0 */
    const char *extra;                 /* add a one-value tensor of this name */
    const char *meta_key, *meta_value; /* set this metadata entry (value NULL: remove it) */
} edit;

static void copy_edited(const char *from, const char *to, const edit *e) {
    st_file *f;
    EXPECT_OK(st_open(from, &f));
    st_writer *w;
    EXPECT_OK(st_writer_new(&w));
    for (size_t i = 0; i < st_meta_count(f); i++) {
        const char *k, *v;
        st_meta_at(f, i, &k, &v);
        if (e->meta_key && !strcmp(k, e->meta_key)) continue;
        EXPECT_OK(st_writer_meta(w, k, v));
    }
    if (e->meta_key && e->meta_value) EXPECT_OK(st_writer_meta(w, e->meta_key, e->meta_value));
    static const float one = 0.5f;
    for (size_t i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        if (e->drop && !strcmp(t->name, e->drop)) continue;
        if (e->reshape && !strcmp(t->name, e->reshape) && e->ndim)
            EXPECT_OK(st_writer_add(w, t->name, t->dtype, e->ndim, e->shape, t->data));
        else if (e->reshape && !strcmp(t->name, e->reshape))
            EXPECT_OK(st_writer_add(w, t->name, ST_F32, 1, (const int64_t[]){1}, &one));
        else
            EXPECT_OK(st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data));
    }
    if (e->extra) EXPECT_OK(st_writer_add(w, e->extra, ST_F32, 1, (const int64_t[]){1}, &one));
    EXPECT_OK(st_writer_write(w, to));
    st_writer_free(w);
    st_close(f);
}

/* A metadata-only module file (no tensors): enough to test the config checks, which
 * come before the tensors are looked at. pairs: key, value, ..., NULL. */
static void write_meta_only(const char *path, const char *const *pairs) {
    st_writer *w;
    EXPECT_OK(st_writer_new(&w));
    for (; pairs[0]; pairs += 2) EXPECT_OK(st_writer_meta(w, pairs[0], pairs[1]));
    EXPECT_OK(st_writer_write(w, path));
    st_writer_free(w);
}

/* tfm_module_load (translator: tfm_translator_load) of path fails with `want` and a
 * message naming the path and holding the words, and sets its result to NULL. label, if
 * not NULL, names the case in a failure. */
static void loader_fails(bool translator, const char *label, const char *path, tfm_status want,
                         const char *const *words) {
    tfm_status st;
    bool nulled;
    if (translator) {
        tfm_translator *t = (tfm_translator *)1;
        st = tfm_translator_load(path, &t);
        nulled = !t;
    } else {
        tfm_module *m = (tfm_module *)1;
        st = tfm_module_load(path, &m);
        nulled = !m;
    }
    char what[1300];
    snprintf(what, sizeof what, "%s(%s)%s%s",
             translator ? "tfm_translator_load" : "tfm_module_load", path, label ? ", " : "",
             label ? label : "");
    expect_error_(st, want, what, words);
    expect_error_(st, want, what, W(path));
    if (!nulled) fail_msg("%s: the result is not NULL", what);
}
static void load_fails(const char *path, tfm_status want, const char *const *words) {
    loader_fails(false, NULL, path, want, words);
}
static void translator_fails(const char *path, tfm_status want, const char *const *words) {
    loader_fails(true, NULL, path, want, words);
}

/* `tfm translate --model path` fails naming the path and the words. */
static void translate_fails(const char *path, const char *input, const char *const *words) {
    char args[4096];
    snprintf(args, sizeof args, "translate --model %s --input %s", path, input);
    cli_fails2(args, NULL, words, path);
}

/* A source file of one line, "abc", for `tfm translate` (written once). */
static const char *src_abc(void) {
    static const char *p;
    if (!p) {
        p = tmp("abc.txt");
        write_text(p, "abc\n");
    }
    return p;
}

/* ---- small modules and their inputs ---------------------------------------------------- */

enum { E = 8, H = 2, N = 2, LQ = 3, SK = 5, LE = 4 };

static tfm_module *small_module(tfm_module_kind kind) {
    tfm_config c;
    tfm_config_default(&c, kind);
    c.embed_dim = E, c.num_heads = H, c.d_model = E, c.nhead = H, c.dim_feedforward = 16;
    c.num_layers = 2, c.num_encoder_layers = 1, c.num_decoder_layers = 1, c.dropout = 0.0;
    tfm_module *m = NULL;
    EXPECT_OK(tfm_module_create(&c, 7, &m));
    /* non-zero biases, so that a zero attention output is told apart from a zero row */
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *name;
        tfm_tensor v;
        EXPECT_OK(tfm_module_param(m, i, &name, &v));
        size_t n = 1;
        for (int d = 0; d < v.ndim; d++) n *= (size_t)v.shape[d];
        float *x = v.data;
        for (size_t j = 0; j < n; j++) x[j] += 0.1f * sinf(0.37f * (float)j + (float)i);
    }
    return m;
}

static const char *kind_file(tfm_module_kind kind) {
    static char paths[6][1024];
    if (!paths[kind][0]) {
        char name[64];
        snprintf(name, sizeof name, "kind%d.model.safetensors", (int)kind);
        tmp_path(paths[kind], sizeof paths[kind], name);
        tfm_module *m = small_module(kind);
        EXPECT_OK(tfm_module_save(m, paths[kind]));
        tfm_module_free(m);
    }
    return paths[kind];
}

static float seq_a[SK * N * E], seq_b[SK * N * E];

static void fill_seqs(void) {
    for (int i = 0; i < SK * N * E; i++) {
        seq_a[i] = sinf(0.3f * (float)i);
        seq_b[i] = cosf(0.7f * (float)i);
    }
}

/* The sequence inputs of a kind (batch_first = false): MultiheadAttention query (LQ, N, E)
 * and key = value (SK, N, E); encoders src (LE, N, E); decoders tgt (LQ, N, E) and
 * memory (SK, N, E); Transformer src (SK, N, E) and tgt (LQ, N, E). */
static void base_inputs(tfm_module_kind kind, tfm_inputs *in) {
    fill_seqs();
    tfm_inputs_init(in);
    const tfm_tensor a_lq = {seq_a, TFM_F32, 3, {LQ, N, E}}, b_sk = {seq_b, TFM_F32, 3, {SK, N, E}};
    switch (kind) {
    case TFM_MULTIHEAD_ATTENTION: in->query = a_lq, in->key = in->value = b_sk; break;
    case TFM_TRANSFORMER_ENCODER_LAYER:
    case TFM_TRANSFORMER_ENCODER: in->src = (tfm_tensor){seq_a, TFM_F32, 3, {LE, N, E}}; break;
    case TFM_TRANSFORMER_DECODER_LAYER:
    case TFM_TRANSFORMER_DECODER: in->tgt = a_lq, in->memory = b_sk; break;
    case TFM_TRANSFORMER: in->src = b_sk, in->tgt = a_lq; break;
    }
}

/* The same as an input file, plus `extra` tensors (name, dtype, ndim, shape, data). */
typedef struct extra_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
} extra_tensor;

static void write_inputs(const char *path, tfm_module_kind kind, const extra_tensor *extra,
                         size_t nextra, const char *meta_key, const char *meta_value) {
    tfm_inputs in;
    base_inputs(kind, &in);
    st_writer *w;
    EXPECT_OK(st_writer_new(&w));
    const struct {
        const char *name;
        tfm_tensor *t;
    } seqs[] = {{"query", &in.query}, {"key", &in.key}, {"value", &in.value},
                {"src", &in.src},     {"tgt", &in.tgt}, {"memory", &in.memory}};
    for (size_t i = 0; i < sizeof seqs / sizeof *seqs; i++) {
        bool replaced = false;
        for (size_t k = 0; k < nextra; k++) replaced |= !strcmp(extra[k].name, seqs[i].name);
        if (seqs[i].t->data && !replaced)
            EXPECT_OK(st_writer_add(w, seqs[i].name, ST_F32, seqs[i].t->ndim, seqs[i].t->shape,
                                    seqs[i].t->data));
    }
    for (size_t k = 0; k < nextra; k++)
        EXPECT_OK(st_writer_add(w, extra[k].name, extra[k].dtype, extra[k].ndim, extra[k].shape,
                                extra[k].data));
    if (meta_key) EXPECT_OK(st_writer_meta(w, meta_key, meta_value));
    EXPECT_OK(st_writer_write(w, path));
    st_writer_free(w);
}

/* A file of kind's base inputs (written once). */
static const char *input_file(tfm_module_kind kind) {
    static const char *paths[6];
    if (!paths[kind]) {
        char name[64];
        snprintf(name, sizeof name, "kind%d.input.safetensors", (int)kind);
        paths[kind] = tmp(name);
        write_inputs(paths[kind], kind, NULL, 0, NULL, NULL);
    }
    return paths[kind];
}

/* ---- bad module files and checkpoints, one row a case ------------------------------------ */

/* The checkpoint `tfm train` made for these tests (make_checkpoint). */
static const char *checkpoint_path;

enum { BAD_META = 12 };

/* A module file that must not load: kind's good file with one edit, or, when meta[0] is
 * set, a file of metadata only: "module" = kind's name, then meta's key, value pairs. */
typedef struct bad_module {
    tfm_module_kind kind;
    edit e;
    const char *meta[BAD_META];
    tfm_status want;      /* what tfm_module_load returns; its message names the file */
    const char *words[4]; /* and holds these (at most 3: a NULL ends the list) */
    bool cli;             /* also `tfm forward` of it (with kind's inputs): one line on
                             stderr naming the file, with the words */
} bad_module;

static void bad_module_fails(const bad_module *b) {
    const char *p = tmp("bad_module.safetensors");
    if (b->meta[0]) {
        const char *pairs[2 + BAD_META + 1] = {"module", tfm_module_name(b->kind)};
        for (int i = 0; i < BAD_META && b->meta[i]; i++) pairs[2 + i] = b->meta[i];
        write_meta_only(p, pairs);
    } else {
        copy_edited(kind_file(b->kind), p, &b->e);
    }
    load_fails(p, b->want, b->words);
    if (b->cli) forward_fails2(p, input_file(b->kind), b->words, p);
}

/* A checkpoint that must not load: the trained one with one edit. tfm_translator_load
 * returns `want`, and `tfm translate` prints one line; both name the file and hold the
 * words. */
typedef struct bad_checkpoint {
    edit e;
    tfm_status want;
    const char *words[4]; /* at most 3: a NULL ends the list */
} bad_checkpoint;

static void bad_checkpoint_fails(const bad_checkpoint *b) {
    const char *p = tmp("bad_checkpoint.safetensors");
    copy_edited(checkpoint_path, p, &b->e);
    translate_fails(p, src_abc(), b->words);
    translator_fails(p, b->want, b->words);
}

/* Every mask input of every kind: its field, its name, and (L, S) of its attention. */
typedef struct mask_slot {
    tfm_module_kind kind;
    const char *name;
    size_t offset;
    bool kpm; /* key padding mask (N, S), else attention mask (L, S) */
    int64_t L, S;
} mask_slot;

#define MS(kind, field, kpm, L, S) {kind, #field, offsetof(tfm_inputs, field), kpm, L, S}
static const mask_slot mask_slots[] = {
    MS(TFM_MULTIHEAD_ATTENTION, attn_mask, false, LQ, SK),
    MS(TFM_MULTIHEAD_ATTENTION, key_padding_mask, true, LQ, SK),
    MS(TFM_TRANSFORMER_ENCODER_LAYER, src_mask, false, LE, LE),
    MS(TFM_TRANSFORMER_ENCODER_LAYER, src_key_padding_mask, true, LE, LE),
    MS(TFM_TRANSFORMER_ENCODER, mask, false, LE, LE),
    MS(TFM_TRANSFORMER_ENCODER, src_key_padding_mask, true, LE, LE),
    MS(TFM_TRANSFORMER_DECODER_LAYER, tgt_mask, false, LQ, LQ),
    MS(TFM_TRANSFORMER_DECODER_LAYER, memory_mask, false, LQ, SK),
    MS(TFM_TRANSFORMER_DECODER_LAYER, tgt_key_padding_mask, true, LQ, LQ),
    MS(TFM_TRANSFORMER_DECODER_LAYER, memory_key_padding_mask, true, LQ, SK),
    MS(TFM_TRANSFORMER_DECODER, tgt_mask, false, LQ, LQ),
    MS(TFM_TRANSFORMER_DECODER, memory_mask, false, LQ, SK),
    MS(TFM_TRANSFORMER_DECODER, tgt_key_padding_mask, true, LQ, LQ),
    MS(TFM_TRANSFORMER_DECODER, memory_key_padding_mask, true, LQ, SK),
    MS(TFM_TRANSFORMER, src_mask, false, SK, SK),
    MS(TFM_TRANSFORMER, tgt_mask, false, LQ, LQ),
    MS(TFM_TRANSFORMER, memory_mask, false, LQ, SK),
    MS(TFM_TRANSFORMER, src_key_padding_mask, true, SK, SK),
    MS(TFM_TRANSFORMER, tgt_key_padding_mask, true, LQ, LQ),
    MS(TFM_TRANSFORMER, memory_key_padding_mask, true, LQ, SK),
};
#undef MS
enum { NUM_MASK_SLOTS = sizeof mask_slots / sizeof *mask_slots };

/* The right shape of a slot's mask. */
static int right_shape(const mask_slot *s, int64_t *shape) {
    if (s->kpm) return shape[0] = N, shape[1] = s->S, 2;
    return shape[0] = s->L, shape[1] = s->S, 2;
}

/* Wrong shapes of a slot's mask; returns how many (each has ndim in shape[k][3]... see
 * below: ndims[k]). */
static int wrong_shapes(const mask_slot *s, int64_t shapes[][4], int *ndims) {
    int k = 0;
    if (s->kpm) {
        if (s->S != N) shapes[k][0] = s->S, shapes[k][1] = N, ndims[k++] = 2; /* (S, N) */
        shapes[k][0] = N, shapes[k][1] = s->S + 1, ndims[k++] = 2;
        shapes[k][0] = N + 1, shapes[k][1] = s->S, ndims[k++] = 2;
        shapes[k][0] = s->S, ndims[k++] = 1; /* the unbatched form for batched input */
        shapes[k][0] = 1, shapes[k][1] = N, shapes[k][2] = s->S, ndims[k++] = 3;
    } else {
        if (s->L != s->S) shapes[k][0] = s->S, shapes[k][1] = s->L, ndims[k++] = 2; /* (S, L) */
        shapes[k][0] = s->L + 1, shapes[k][1] = s->S, ndims[k++] = 2;
        shapes[k][0] = s->L, shapes[k][1] = s->S + 1, ndims[k++] = 2;
        shapes[k][0] = s->L * s->S, ndims[k++] = 1;
        shapes[k][0] = N * H + 1, shapes[k][1] = s->L, shapes[k][2] = s->S, ndims[k++] = 3;
        shapes[k][0] = H, shapes[k][1] = s->L, shapes[k][2] = s->S, ndims[k++] = 3; /* H, not N·H */
        shapes[k][0] = N, shapes[k][1] = H, shapes[k][2] = s->L, shapes[k][3] = s->S, ndims[k++] = 4;
    }
    return k;
}

static float mask_f32[256];
static unsigned char mask_bool[256];
static int64_t mask_i64[256];
static uint16_t mask_f16[256];

/* ---- row 12: masks, library --------------------------------------------------------------- */

static void test_mask_shapes_library(void **state) {
    for (int i = 0; i < NUM_MASK_SLOTS; i++) {
        const mask_slot *s = &mask_slots[i];
        tfm_module *m = small_module(s->kind);
        tfm_inputs in;
        tfm_outputs out;
        base_inputs(s->kind, &in);
        tfm_tensor *t = (tfm_tensor *)((char *)&in + s->offset);
        /* the right shape works, BOOL and F32 */
        *t = (tfm_tensor){mask_bool, TFM_BOOL, 2, {0}};
        right_shape(s, t->shape);
        EXPECT_OK(tfm_forward(m, &in, &out));
        t->data = mask_f32, t->dtype = TFM_F32;
        EXPECT_OK(tfm_forward(m, &in, &out));
        int64_t shapes[8][4] = {{0}};
        int ndims[8];
        int nw = wrong_shapes(s, shapes, ndims);
        for (int k = 0; k < nw; k++)
            for (int dt = 0; dt < 2; dt++) {
                *t = (tfm_tensor){dt ? (void *)mask_f32 : (void *)mask_bool, dt ? TFM_F32 : TFM_BOOL,
                                  ndims[k], {shapes[k][0], shapes[k][1], shapes[k][2], shapes[k][3]}};
                char quoted[64];
                snprintf(quoted, sizeof quoted, "mask '%s' must be", s->name);
                char what[160];
                snprintf(what, sizeof what, "%s %s shape #%d", tfm_module_name(s->kind), s->name, k);
                expect_error_(tfm_forward(m, &in, &out), TFM_ERR_SHAPE, what, W(quoted));
                assert_null(out.output.data);
            }
        tfm_module_free(m);
    }
}

static void test_mask_dtypes_library(void **state) {
    for (int i = 0; i < NUM_MASK_SLOTS; i++) {
        const mask_slot *s = &mask_slots[i];
        tfm_module *m = small_module(s->kind);
        tfm_inputs in;
        tfm_outputs out;
        base_inputs(s->kind, &in);
        tfm_tensor *t = (tfm_tensor *)((char *)&in + s->offset);
        /* a dtype that is neither BOOL nor F32 (an int64 mask passed through the API) */
        *t = (tfm_tensor){mask_i64, (tfm_dtype)7, 2, {0}};
        right_shape(s, t->shape);
        char quoted[64], what[160];
        snprintf(quoted, sizeof quoted, "mask '%s' must be BOOL or F32", s->name);
        snprintf(what, sizeof what, "%s %s dtype 7", tfm_module_name(s->kind), s->name);
        expect_error_(tfm_forward(m, &in, &out), TFM_ERR_FORMAT, what, W(quoted));
        expect_error_(tfm_forward_train(m, &in, &out), TFM_ERR_FORMAT, what, W(quoted));
        tfm_module_free(m);
    }
    /* a sequence input must be F32: a BOOL query is refused by name */
    tfm_module *m = small_module(TFM_MULTIHEAD_ATTENTION);
    tfm_inputs in;
    tfm_outputs out;
    base_inputs(TFM_MULTIHEAD_ATTENTION, &in);
    in.query.dtype = TFM_BOOL;
    EXPECT_ERROR(tfm_forward(m, &in, &out), TFM_ERR_FORMAT, "'query' must be F32");
    tfm_module_free(m);
}

/* ---- row 12: masks, CLI --------------------------------------------------------------- */

static void test_masks_cli(void **state) {
    const char *in = tmp("mask_input.safetensors");
    for (int i = 0; i < NUM_MASK_SLOTS; i++) {
        const mask_slot *s = &mask_slots[i];
        const char *model = kind_file(s->kind);
        extra_tensor x = {s->name, ST_BOOL, 2, {0}, mask_bool};
        right_shape(s, x.shape);
        /* a wrong shape: (L + 1, S) or (N + 1, S) */
        x.shape[0] += 1;
        write_inputs(in, s->kind, &x, 1, NULL, NULL);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "mask '%s' must be", s->name);
        forward_fails(model, in, W(in, quoted));
        /* integer dtypes: I64, I32, U8 and I8 in turn */
        right_shape(s, x.shape);
        static const st_dtype bad[] = {ST_I64, ST_I32, ST_U8, ST_I8};
        x.dtype = bad[i % 4];
        x.data = mask_i64;
        write_inputs(in, s->kind, &x, 1, NULL, NULL);
        char dt[96];
        snprintf(dt, sizeof dt, "input '%s' has dtype %s; expected BOOL or F32", s->name,
                 st_dtype_name(x.dtype));
        forward_fails(model, in, W(in, dt));
    }
    /* F16 (like F64 and BF16) is a float dtype: converted on load, exactly for 0 and −inf,
     * so an F16 mask gives the F32 mask's result (tfm converts every float input). */
    const mask_slot *s = &mask_slots[16]; /* Transformer memory_mask */
    assert_string_equal(s->name, "memory_mask");
    for (int j = 0; j < s->L * s->S; j++) {
        bool masked = (j % 3) == 1;
        mask_f32[j] = masked ? -INFINITY : 0.0f;
        mask_f16[j] = masked ? 0xFC00 : 0x0000;
    }
    const char *o32 = tmp("o32.safetensors"), *o16 = tmp("o16.safetensors");
    extra_tensor x = {s->name, ST_F32, 2, {s->L, s->S}, mask_f32};
    write_inputs(in, s->kind, &x, 1, NULL, NULL);
    forward_ok(kind_file(s->kind), in, o32);
    x.dtype = ST_F16, x.data = mask_f16;
    write_inputs(in, s->kind, &x, 1, NULL, NULL);
    forward_ok(kind_file(s->kind), in, o16);
    st_file *a, *b;
    EXPECT_OK(st_open(o32, &a));
    EXPECT_OK(st_open(o16, &b));
    const st_tensor *ta = st_find(a, "output"), *tb = st_find(b, "output");
    assert_non_null(ta);
    assert_non_null(tb);
    assert_int_equal(ta->nbytes, tb->nbytes);
    assert_memory_equal(ta->data, tb->data, ta->nbytes);
    st_close(a);
    st_close(b);
    memset(mask_f32, 0, sizeof mask_f32);
}

/* ---- rows 1–6: damaged files through every command --------------------------------------- */

static void test_file_damage_cli(void **state) {
    const char *model = kind_file(TFM_TRANSFORMER_ENCODER_LAYER);
    const char *good_in = input_file(TFM_TRANSFORMER_ENCODER_LAYER);
    const char *bad = tmp("damaged.safetensors");
    const char *train_tsv = tmp("damage_train.tsv");
    write_text(train_tsv, "abc\tcba\n");

    /* Each damaged image is tried as the model and as the input of `tfm forward`, as
     * the checkpoint of `tfm translate` (and of `tfm train --resume`), and loaded through
     * the library: every time one line naming the file and the problem. */

    size_t glen;
    unsigned char *g = read_bytes(model, &glen);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | g[i];

    struct {
        const char *what;
        size_t cut;          /* keep this many bytes of the good model (0: not this way) */
        uint64_t header_len; /* with a raw header (below) when cut == 0 */
        const char *header;
        size_t data_len;
        const char *words[4];
    } cases[] = {
        /* row 1: truncated */
        {"cut in the length", 5, 0, NULL, 0, {"truncated"}},
        {"cut in the header", 8 + (size_t)hlen / 2, 0, NULL, 0, {"truncated", "header length"}},
        {"cut in the data", (size_t)glen - 10, 0, NULL, 0, {"beyond the data section"}},
        /* row 2: header length larger than the file, absurd */
        {"length > file", 0, 1000, "{}", 0, {"header length 1000", "truncated"}},
        {"length 2^60", 0, (uint64_t)1 << 60, "{}", 0, {"header length 1152921504606846976", "limit"}},
        {"length 2^64-1", 0, UINT64_MAX, "{}", 0, {"header length 18446744073709551615"}},
        /* row 3: not JSON, not an object */
        {"not JSON", 0, 0, "{\"module\": oops}", 0, {"not valid JSON"}},
        {"array", 0, 0, "[1, 2, 3]", 0, {"not a JSON object"}},
        {"string", 0, 0, "\"TransformerEncoderLayer\"", 0, {"not a JSON object"}},
        /* row 4: duplicate keys */
        {"duplicate tensor", 0, 0,
         "{\"norm1.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"norm1.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, {"duplicate key 'norm1.weight'"}},
        {"duplicate metadata", 0, 0,
         "{\"__metadata__\":{\"module\":\"TransformerEncoderLayer\",\"module\":\"Transformer\"}}", 0,
         {"duplicate key 'module'"}},
        /* row 5: offsets out of range, overlapping, not covering */
        {"offsets beyond", 0, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
         8, {"'w'", "beyond the data section of 8 bytes"}},
        {"offsets reversed", 0, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}",
         8, {"'w'", "begin > end"}},
        {"overlap", 0, 0,
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, {"'a'", "'b'", "overlap"}},
        {"hole", 0, 0,
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, {"hole", "[4, 8)"}},
        {"trailing bytes", 0, 0, "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
         12, {"hole", "[4, 12)"}},
        /* row 6: dtype × shape ≠ byte length */
        {"byte length", 0, 0,
         "{\"linear1.weight\":{\"dtype\":\"F32\",\"shape\":[16,8],\"data_offsets\":[0,256]}}", 256,
         {"'linear1.weight'", "256 bytes", "F32 [16, 8] needs 512"}},
        {"byte length bf16", 0, 0, "{\"b\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4,
         {"'b'", "BF16 [3] needs 6"}},
        /* row 8 at the format level: a dimension product that overflows */
        {"numel overflow", 0, 0,
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
         {"'w'", "overflows"}},
        {"negative dim", 0, 0, "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,4]}}", 4,
         {"'w'", "negative"}},
    };
    char args[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].cut)
            write_bytes(bad, g, cases[i].cut);
        else if (cases[i].header_len)
            write_st_raw(bad, cases[i].header_len, cases[i].header, cases[i].data_len);
        else
            write_st(bad, cases[i].header, cases[i].data_len);
        const char *const *words = cases[i].words;
        /* the library: the format error, naming the file */
        loader_fails(false, cases[i].what, bad, TFM_ERR_FORMAT, words);
        loader_fails(true, cases[i].what, bad, TFM_ERR_FORMAT, words);
        /* the CLI, as the model and as the input */
        forward_fails2(bad, good_in, words, bad);
        forward_fails2(model, bad, words, bad);
        if (i % 2) translate_fails(bad, src_abc(), words);
        /* tfm train --resume with a damaged checkpoint at --out: refused, file kept */
        if (i % 5 == 0) {
            snprintf(args, sizeof args,
                     "train --train %s --out %s --resume --steps 1 --d-model 16 --heads 2 --ff 32 "
                     "--max-len 16 --quiet --eval-every 0",
                     train_tsv, bad);
            cli_fails(args, NULL, W(bad));
            assert_int_equal(access(bad, F_OK), 0);
        }
    }
    free(g);

    /* A damaged checkpoint: the trained one cut in its data. */
    size_t clen;
    unsigned char *c = read_bytes(checkpoint_path, &clen);
    write_bytes(bad, c, clen - 100);
    translate_fails(bad, src_abc(), W("beyond the data section"));
    translator_fails(bad, TFM_ERR_FORMAT, W("beyond the data section"));
    free(c);
}

/* ---- row 7: shapes that do not match the config ----------------------------------------------- */

static void test_model_shape_mismatch(void **state) {
    static const bad_module cases[] = {
        /* a 1-D parameter stored 2-D: the rank is part of the shape */
        {.kind = TFM_TRANSFORMER_ENCODER_LAYER,
         .e = {.reshape = "norm1.weight", .ndim = 2, .shape = {E, 1}},
         .want = TFM_ERR_SHAPE, .words = {"'norm1.weight' has shape [8, 1]; the config needs [8]"},
         .cli = true},
        /* a matrix stored transposed: (ff, E) as (E, ff) */
        {.kind = TFM_TRANSFORMER_ENCODER_LAYER,
         .e = {.reshape = "linear1.weight", .ndim = 2, .shape = {E, 16}},
         .want = TFM_ERR_SHAPE,
         .words = {"'linear1.weight' has shape [8, 16]; the config needs [16, 8]"}, .cli = true},
        /* the config says kdim 4, the file holds the q/k/v weights of kdim 8 */
        {.kind = TFM_MULTIHEAD_ATTENTION, .e = {.meta_key = "kdim", .meta_value = "4"},
         .want = TFM_ERR_MISSING, .words = {"q_proj_weight"}},
        /* a scalar where a vector belongs */
        {.kind = TFM_TRANSFORMER_DECODER, .e = {.reshape = "layers.1.norm3.bias"},
         .want = TFM_ERR_SHAPE,
         .words = {"'layers.1.norm3.bias' has shape [1]; the config needs [8]"}, .cli = true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) bad_module_fails(&cases[i]);
    /* a checkpoint whose tensor does not fit its own config */
    bad_checkpoint_fails(&(bad_checkpoint){.e = {.reshape = "generator.bias"},
                                           .want = TFM_ERR_SHAPE,
                                           .words = {"'generator.bias'", "shape"}});
}

/* ---- row 8: sizes in a model file's config ------------------------------------------------------ */

static void test_config_dims(void **state) {
    /* Every size key of every kind, with a value that is zero, negative or too big:
     * INVALID_ARG naming the key and the value, through the library and the CLI. */
    static const struct {
        tfm_module_kind kind;
        const char *key, *value, *word;
    } cases[] = {
        {TFM_MULTIHEAD_ATTENTION, "embed_dim", "0", "'embed_dim': 0 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "embed_dim", "-8", "'embed_dim': -8 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "embed_dim", "16777217", "'embed_dim': 16777217 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "num_heads", "0", "'num_heads': 0 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "num_heads", "-2", "'num_heads': -2 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "kdim", "0", "'kdim': 0 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "kdim", "-1", "'kdim': -1 is out of range"},
        {TFM_MULTIHEAD_ATTENTION, "vdim", "99999999999999999999", "'vdim': expected an integer"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "d_model", "0", "'d_model': 0 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "nhead", "0", "'nhead': 0 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "nhead", "-2", "'nhead': -2 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "dim_feedforward", "0", "'dim_feedforward': 0 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "dim_feedforward", "-16", "'dim_feedforward': -16 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "dim_feedforward", "16777217", "'dim_feedforward': 16777217 is out of range"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "d_model", "8x", "'d_model': expected an integer"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "d_model", "", "'d_model': expected an integer"},
        {TFM_TRANSFORMER_ENCODER, "num_layers", "0", "'num_layers': 0 is out of range"},
        {TFM_TRANSFORMER_ENCODER, "num_layers", "-1", "'num_layers': -1 is out of range"},
        {TFM_TRANSFORMER_DECODER, "num_layers", "4097", "'num_layers': 4097 is out of range"},
        {TFM_TRANSFORMER, "num_encoder_layers", "-1", "'num_encoder_layers': -1 is out of range"},
        {TFM_TRANSFORMER, "num_decoder_layers", "100000", "'num_decoder_layers': 100000 is out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bool mha = cases[i].kind == TFM_MULTIHEAD_ATTENTION;
        bool not_int = strstr(cases[i].word, "expected an integer");
        const bad_module b = {
            .kind = cases[i].kind,
            .meta = {mha ? "embed_dim" : "d_model", "8", mha ? "num_heads" : "nhead", "2",
                     cases[i].key, cases[i].value},
            .want = not_int ? TFM_ERR_FORMAT : TFM_ERR_INVALID_ARG,
            .words = {cases[i].word},
            .cli = i % 3 == 0, /* the CLI reports what tfm_module_load says: a third suffice */
        };
        bad_module_fails(&b);
    }
    static const bad_module sizes[] = {
        /* Sizes each within the limits whose product is not: d_model = dim_feedforward =
         * 2^24 over 4096 layers is 2^64.6 floats. A clean error, no allocation. */
        {.kind = TFM_TRANSFORMER_ENCODER,
         .meta = {"d_model", "16777216", "nhead", "1", "dim_feedforward", "16777216",
                  "num_layers", "4096"},
         .want = TFM_ERR_INVALID_ARG, .words = {"overflow"}, .cli = true},
        {.kind = TFM_TRANSFORMER,
         .meta = {"d_model", "16777216", "nhead", "16", "dim_feedforward", "16777216",
                  "num_encoder_layers", "4096", "num_decoder_layers", "4096"},
         .want = TFM_ERR_INVALID_ARG, .words = {"overflow"}},
        /* Huge but representable: the file must hold 2^48-float tensors; it holds none,
         * and that is what is reported (nothing that size is allocated first). */
        {.kind = TFM_TRANSFORMER_ENCODER_LAYER,
         .meta = {"d_model", "16777216", "nhead", "1", "dim_feedforward", "16777216"},
         .want = TFM_ERR_MISSING,
         .words = {"missing tensor 'self_attn.in_proj_weight'", "[50331648, 16777216]"},
         .cli = true},
        {.kind = TFM_MULTIHEAD_ATTENTION,
         .meta = {"embed_dim", "16777216", "num_heads", "1", "kdim", "16777216", "vdim", "3"},
         .want = TFM_ERR_MISSING, .words = {"missing tensor 'q_proj_weight'"}},
        /* Transformer with zero encoder layers is legal in PyTorch (the final norm remains) */
        {.kind = TFM_TRANSFORMER,
         .meta = {"d_model", "8", "nhead", "2", "num_encoder_layers", "0",
                  "num_decoder_layers", "1"},
         .want = TFM_ERR_MISSING, .words = {"missing tensor 'encoder.norm.weight'"}},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) bad_module_fails(&sizes[i]);
}

/* ---- row 8: sizes in a checkpoint's config (`tfm translate`) ------------------------------- */

static void test_checkpoint_dims(void **state) {
    const char *p = tmp("ckpt_dims.safetensors");
    static const struct {
        const char *key, *value, *word;
    } cases[] = {
        {"d_model", "0", "\"d_model\" = \"0\""},
        {"d_model", "-16", "\"d_model\" = \"-16\""},
        {"d_model", "131072", "\"d_model\" = \"131072\""},
        {"nhead", "0", "\"nhead\" = \"0\""},
        {"dim_feedforward", "0", "\"dim_feedforward\""},
        {"num_encoder_layers", "0", "\"num_encoder_layers\""},
        {"num_decoder_layers", "-1", "\"num_decoder_layers\""},
        {"max_len", "1", "\"max_len\" = \"1\""},
        {"max_len", "0", "\"max_len\" = \"0\""},
        {"max_len", "2097152", "\"max_len\""},
        {"vocab", "2", "\"vocab\" = \"2\""},
        {"vocab", "x", "\"vocab\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        bad_checkpoint_fails(&(bad_checkpoint){
            .e = {.meta_key = cases[i].key, .meta_value = cases[i].value},
            .want = TFM_ERR_FORMAT,
            .words = {cases[i].word}});
    /* Sizes within the limits whose model would not fit in memory, in a file without
     * tensors: the missing tensors are reported (naming the file), not an allocation
     * failure of terabytes. */
    write_meta_only(p, W("module", "Seq2SeqTransformer", "tokenizer", "bytes", "vocab", "259",
                         "d_model", "4096", "nhead", "1", "num_encoder_layers", "256",
                         "num_decoder_layers", "256", "dim_feedforward", "1048576", "dropout", "0",
                         "activation", "relu", "norm_first", "false", "tie_embeddings", "true",
                         "max_len", "65536"));
    translate_fails(p, src_abc(), W("missing tensor"));
    translator_fails(p, TFM_ERR_MISSING, W("missing tensor"));
}

/* ---- row 8: sizes of input tensors ---------------------------------------------------------- */

static void test_input_dims(void **state) {
    tfm_module *m = small_module(TFM_TRANSFORMER_ENCODER_LAYER);
    tfm_inputs in;
    tfm_outputs out;
    base_inputs(TFM_TRANSFORMER_ENCODER_LAYER, &in);
    /* src of these shapes: SHAPE from tfm_forward and from tfm_forward_train */
    static const struct {
        int ndim;
        int64_t shape[3];
        const char *words[3]; /* at most 2: a NULL ends the list */
    } cases[] = {
        /* negative and huge dimensions are refused before the data is touched */
        {3, {-1, N, E}, {"'src'", "dimension 0 is -1"}},
        {3, {LE, INT64_MIN, E}, {"'src'", "dimension 1"}},
        {3, {INT64_MAX, N, E}, {"'src'", "dimension 0 is 9223372036854775807"}},
        {2, {(int64_t)1 << 41, E}, {"'src'", "dimension 0"}},
        /* each dimension allowed, the product N·L·E (2^83) not */
        {3, {(int64_t)1 << 40, (int64_t)1 << 40, E}, {"'src'", "too large"}},
        /* width 0 is a width mismatch */
        {3, {LE, N, 0}, {"'src' has width 0; the module expects 8"}},
        {5, {LE, N, E}, {"'src' must have 2", "not 5"}},
        {-1, {LE, N, E}, {"'src' must have 2", "not -1"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const int64_t *d = cases[i].shape;
        in.src = (tfm_tensor){seq_a, TFM_F32, cases[i].ndim, {d[0], d[1], d[2]}};
        char what[96];
        snprintf(what, sizeof what, "src of ndim %d, shape [%lld, %lld, %lld]", cases[i].ndim,
                 (long long)d[0], (long long)d[1], (long long)d[2]);
        expect_error_(tfm_forward(m, &in, &out), TFM_ERR_SHAPE, what, cases[i].words);
        expect_error_(tfm_forward_train(m, &in, &out), TFM_ERR_SHAPE, what, cases[i].words);
    }
    tfm_module_free(m);
    /* a huge dimension beside a zero one: no data, so no time may be spent on it; run in
     * a child process (this binary, see main) under a time limit, so that a loop over
     * the huge dimension fails the test instead of hanging it */
    char self[1024], cmd[2200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    assert_true(n > 0);
    self[n] = '\0';
    snprintf(cmd, sizeof cmd, "timeout -s KILL 5 %s --empty-huge-dims", self);
    int rc = run_command(cmd);
    if (rc != 0)
        fail_msg("tfm_forward of zero-element inputs with a 2^40 dimension: %s (exit status %d)",
                 rc == 137 ? "still running after 5 s" : "failed", rc);

    /* the same from files: zero elements, so the file is small */
    const char *model = kind_file(TFM_TRANSFORMER_ENCODER_LAYER), *p = tmp("dims_input.safetensors");
    const char *out_path = tmp("dims_out.safetensors");
    char args[4096];
    extra_tensor x = {"src", ST_F32, 3, {(int64_t)1 << 40, 0, E}, seq_a};
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    snprintf(args, sizeof args, "forward --model %s --input %s --output %s", model, p, out_path);
    cli_ok_within(args, 5);
    st_file *f;
    EXPECT_OK(st_open(out_path, &f));
    const st_tensor *o = st_find(f, "output");
    assert_non_null(o);
    assert_int_equal(o->ndim, 3);
    assert_int_equal(o->shape[0], (int64_t)1 << 40);
    assert_int_equal(o->numel, 0);
    st_close(f);
    x.shape[0] = (int64_t)1 << 45;
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    forward_fails(model, p, W(p, "'src'", "dimension 0 is 35184372088832"));
    x.shape[0] = LE, x.shape[1] = N, x.shape[2] = 0;
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    forward_fails(model, p, W(p, "'src' has width 0"));
    /* a 5-D src of 8 floats */
    {
        st_writer *w;
        EXPECT_OK(st_writer_new(&w));
        EXPECT_OK(st_writer_add(w, "src", ST_F32, 5, (const int64_t[]){1, 1, 1, 1, E}, seq_a));
        EXPECT_OK(st_writer_write(w, p));
        st_writer_free(w);
    }
    forward_fails(model, p, W(p, "'src' has 5 dimensions"));
}

/* ---- row 9: missing and unexpected tensors -------------------------------------------------- */

static void test_missing_unexpected(void **state) {
    const char *p = tmp("mu_input.safetensors");
    /* every required input of every kind: the library and the CLI name it */
    static const struct {
        tfm_module_kind kind;
        const char *name;
        size_t offset;
    } req[] = {
        {TFM_MULTIHEAD_ATTENTION, "query", offsetof(tfm_inputs, query)},
        {TFM_MULTIHEAD_ATTENTION, "key", offsetof(tfm_inputs, key)},
        {TFM_MULTIHEAD_ATTENTION, "value", offsetof(tfm_inputs, value)},
        {TFM_TRANSFORMER_ENCODER, "src", offsetof(tfm_inputs, src)},
        {TFM_TRANSFORMER_DECODER_LAYER, "tgt", offsetof(tfm_inputs, tgt)},
        {TFM_TRANSFORMER_DECODER_LAYER, "memory", offsetof(tfm_inputs, memory)},
        {TFM_TRANSFORMER_DECODER, "memory", offsetof(tfm_inputs, memory)},
        {TFM_TRANSFORMER, "src", offsetof(tfm_inputs, src)},
        {TFM_TRANSFORMER, "tgt", offsetof(tfm_inputs, tgt)},
    };
    for (size_t i = 0; i < sizeof req / sizeof *req; i++) {
        tfm_module *m = small_module(req[i].kind);
        tfm_inputs in;
        tfm_outputs out;
        base_inputs(req[i].kind, &in);
        ((tfm_tensor *)((char *)&in + req[i].offset))->data = NULL;
        char quoted[64];
        snprintf(quoted, sizeof quoted, "input '%s' is required", req[i].name);
        expect_error_(tfm_forward(m, &in, &out), TFM_ERR_MISSING, quoted, W(quoted));
        tfm_module_free(m);
        /* a file without it */
        st_writer *w;
        EXPECT_OK(st_writer_new(&w));
        const char *names[] = {"query", "key", "value", "src", "tgt", "memory"};
        const size_t offs[] = {offsetof(tfm_inputs, query), offsetof(tfm_inputs, key),
                               offsetof(tfm_inputs, value), offsetof(tfm_inputs, src),
                               offsetof(tfm_inputs, tgt), offsetof(tfm_inputs, memory)};
        base_inputs(req[i].kind, &in);
        for (int k = 0; k < 6; k++) {
            const tfm_tensor *s = (const tfm_tensor *)((const char *)&in + offs[k]);
            if (s->data && strcmp(names[k], req[i].name))
                EXPECT_OK(st_writer_add(w, names[k], ST_F32, s->ndim, s->shape, s->data));
        }
        EXPECT_OK(st_writer_write(w, p));
        st_writer_free(w);
        forward_fails(kind_file(req[i].kind), p, W(p, quoted));
    }
    /* an input of another kind: named, with the names this kind takes */
    extra_tensor x = {"src", ST_F32, 3, {SK, N, E}, seq_b};
    write_inputs(p, TFM_TRANSFORMER_DECODER, &x, 1, NULL, NULL);
    forward_fails(kind_file(TFM_TRANSFORMER_DECODER), p,
                  W(p, "unexpected input tensor 'src' for TransformerDecoder", "tgt, memory"));
    x.name = "mask"; /* TransformerEncoder's name, not its layer's (src_mask) */
    x.shape[0] = LE, x.shape[1] = LE, x.ndim = 2, x.data = mask_f32;
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    forward_fails(kind_file(TFM_TRANSFORMER_ENCODER_LAYER), p,
                  W(p, "unexpected input tensor 'mask' for TransformerEncoderLayer"));

    /* checkpoints: a missing parameter, an unknown tensor, missing optimizer state */
    static const bad_checkpoint ckpts[] = {
        {.e = {.drop = "generator.bias"}, .want = TFM_ERR_MISSING,
         .words = {"missing tensor 'generator.bias'"}},
        {.e = {.extra = "transformer.decoder.layers.7.bogus"}, .want = TFM_ERR_UNEXPECTED,
         .words = {"unexpected tensor 'transformer.decoder.layers.7.bogus'"}},
    };
    for (size_t i = 0; i < sizeof ckpts / sizeof *ckpts; i++) bad_checkpoint_fails(&ckpts[i]);
    const char *c = tmp("mu_ckpt.safetensors");
    st_file *f;
    EXPECT_OK(st_open(checkpoint_path, &f));
    const char *optim_name = NULL;
    for (size_t i = 0; i < st_count(f) && !optim_name; i++)
        if (!strncmp(st_at(f, i)->name, "optim.", 6)) optim_name = strdup(st_at(f, i)->name);
    st_close(f);
    assert_non_null(optim_name);
    copy_edited(checkpoint_path, c, &(edit){.drop = optim_name});
    const char *tsv = tmp("mu_train.tsv");
    write_text(tsv, "abc\tcba\n");
    char args[4096];
    snprintf(args, sizeof args, "train --train %s --out %s --resume --quiet", tsv, c);
    cli_fails(args, NULL, W(c, optim_name));
    free((void *)optim_name);
    /* translating needs no optimizer state */
    snprintf(args, sizeof args, "translate --model %s --input %s", c, src_abc());
    cli_ok(args);
}

/* Row 9, input-file flags: a flag the module does not take is as unexpected as such a
 * tensor (PyTorch: a TypeError); a decoder layer given `is_causal` would silently run
 * without the causal mask its author asked for. Other metadata ("format": "pt", written
 * by safetensors.torch) is not a flag and stays allowed. */
static void test_flags_of_other_kinds_cli(void **state) {
    const char *p = tmp("flags_input.safetensors");
    static const struct {
        tfm_module_kind kind;
        const char *flag;
    } flags[] = {
        {TFM_TRANSFORMER_DECODER_LAYER, "is_causal"},
        {TFM_TRANSFORMER_ENCODER_LAYER, "need_weights"},
        {TFM_TRANSFORMER_ENCODER, "tgt_is_causal"},
        {TFM_MULTIHEAD_ATTENTION, "memory_is_causal"},
        {TFM_TRANSFORMER, "is_causal"},
    };
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++) {
        write_inputs(p, flags[i].kind, NULL, 0, flags[i].flag, "true");
        forward_fails(kind_file(flags[i].kind), p, W(p, flags[i].flag));
    }
    write_inputs(p, TFM_TRANSFORMER_DECODER_LAYER, NULL, 0, "format", "pt");
    forward_ok(kind_file(TFM_TRANSFORMER_DECODER_LAYER), p, tmp("fwd_out.safetensors"));
}

/* Row 9 through the library: a tensor in a tfm_inputs field that the module kind does
 * not take (PyTorch: a TypeError) is refused, naming the field, rather than silently
 * ignored — `src_mask` is TransformerEncoderLayer's name, TransformerEncoder's is `mask`,
 * and a mask the caller believes applied must not be dropped. */
static void test_unexpected_inputs_library(void **state) {
    static const struct {
        tfm_module_kind kind;
        const char *name;
        size_t offset;
        int64_t rows, cols;
    } cases[] = {
        {TFM_TRANSFORMER_ENCODER, "src_mask", offsetof(tfm_inputs, src_mask), LE, LE},
        {TFM_TRANSFORMER_ENCODER_LAYER, "mask", offsetof(tfm_inputs, mask), LE, LE},
        {TFM_TRANSFORMER_DECODER_LAYER, "src_key_padding_mask", offsetof(tfm_inputs, src_key_padding_mask), N, SK},
        {TFM_MULTIHEAD_ATTENTION, "src", offsetof(tfm_inputs, src), LQ, E},
        {TFM_TRANSFORMER, "memory", offsetof(tfm_inputs, memory), SK, E},
        {TFM_TRANSFORMER, "attn_mask", offsetof(tfm_inputs, attn_mask), LQ, LQ},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tfm_module *m = small_module(cases[i].kind);
        tfm_inputs in;
        tfm_outputs out;
        base_inputs(cases[i].kind, &in);
        *(tfm_tensor *)((char *)&in + cases[i].offset) =
            (tfm_tensor){mask_f32, TFM_F32, 2, {cases[i].rows, cases[i].cols}};
        char quoted[64], what[128];
        snprintf(quoted, sizeof quoted, "'%s'", cases[i].name);
        snprintf(what, sizeof what, "%s given %s", tfm_module_name(cases[i].kind), cases[i].name);
        expect_error_(tfm_forward(m, &in, &out), TFM_ERR_UNEXPECTED, what, W(quoted));
        tfm_module_free(m);
    }
}

/* ---- row 10: unknown module names ----------------------------------------------------------- */

static void test_unknown_module(void **state) {
#define MODULE_NAMED(name, status, word)                                                         \
    {.kind = TFM_TRANSFORMER_ENCODER_LAYER, .e = {.meta_key = "module", .meta_value = name},      \
     .want = status, .words = {word}, .cli = true}
    static const bad_module cases[] = {
        MODULE_NAMED("transformerencoderlayer", TFM_ERR_UNSUPPORTED,
                     "unknown module 'transformerencoderlayer'"),
        MODULE_NAMED("", TFM_ERR_UNSUPPORTED, "unknown module ''"),
        MODULE_NAMED("TransformerEncoderLayer ", TFM_ERR_UNSUPPORTED,
                     "unknown module 'TransformerEncoderLayer '"),
        MODULE_NAMED("nn.TransformerEncoderLayer", TFM_ERR_UNSUPPORTED,
                     "unknown module 'nn.TransformerEncoderLayer'"),
        MODULE_NAMED(NULL, TFM_ERR_FORMAT, "no \"module\""), /* the key removed */
    };
#undef MODULE_NAMED
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) bad_module_fails(&cases[i]);
    /* a checkpoint is not a forward() module, and a module is not a checkpoint */
    const char *in = input_file(TFM_TRANSFORMER_ENCODER_LAYER);
    const char *model = kind_file(TFM_TRANSFORMER_ENCODER_LAYER);
    load_fails(checkpoint_path, TFM_ERR_UNSUPPORTED, W("unknown module 'Seq2SeqTransformer'"));
    forward_fails(checkpoint_path, in, W(checkpoint_path, "'Seq2SeqTransformer'"));
    translate_fails(model, src_abc(), W("\"TransformerEncoderLayer\" is not a Seq2SeqTransformer"));
    translator_fails(model, TFM_ERR_FORMAT, W("not a Seq2SeqTransformer"));
    static const bad_checkpoint ckpts[] = {
        {.e = {.meta_key = "tokenizer", .meta_value = "sentencepiece"},
         .want = TFM_ERR_UNSUPPORTED, .words = {"tokenizer \"sentencepiece\""}},
        /* (FORMAT, where an unknown tokenizer is UNSUPPORTED: what the library returns) */
        {.e = {.meta_key = "activation", .meta_value = "tanh"}, .want = TFM_ERR_FORMAT,
         .words = {"activation \"tanh\""}},
    };
    for (size_t i = 0; i < sizeof ckpts / sizeof *ckpts; i++) bad_checkpoint_fails(&ckpts[i]);
    /* tfm_module_kind_from_name directly */
    tfm_module_kind k;
    EXPECT_ERROR(tfm_module_kind_from_name("Conv2d", &k), TFM_ERR_UNSUPPORTED, "'Conv2d'");
    EXPECT_ERROR(tfm_module_kind_from_name(NULL, &k), TFM_ERR_UNSUPPORTED, "(none)");
    tfm_config c;
    tfm_config_default(&c, TFM_TRANSFORMER);
    c.module = (tfm_module_kind)42;
    tfm_module *m = NULL;
    EXPECT_ERROR(tfm_module_create(&c, 0, &m), TFM_ERR_INVALID_ARG, "unknown module kind 42");
    assert_null(m);
}

/* ---- row 11: not divisible -------------------------------------------------------------------- */

static void test_not_divisible(void **state) {
    static const bad_module cases[] = {
        {.kind = TFM_MULTIHEAD_ATTENTION, .meta = {"embed_dim", "10", "num_heads", "4"},
         .want = TFM_ERR_INVALID_ARG,
         .words = {"embed_dim (10) must be divisible by num_heads (4)"}, .cli = true},
        {.kind = TFM_MULTIHEAD_ATTENTION, .meta = {"embed_dim", "8", "num_heads", "16"},
         .want = TFM_ERR_INVALID_ARG,
         .words = {"embed_dim (8) must be divisible by num_heads (16)"}},
        {.kind = TFM_TRANSFORMER, .meta = {"d_model", "8", "nhead", "16"},
         .want = TFM_ERR_INVALID_ARG, .words = {"d_model (8) must be divisible by nhead (16)"},
         .cli = true},
        {.kind = TFM_TRANSFORMER_DECODER, .meta = {"d_model", "30", "nhead", "4"},
         .want = TFM_ERR_INVALID_ARG, .words = {"TransformerDecoder", "d_model (30)", "nhead (4)"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) bad_module_fails(&cases[i]);
    tfm_config c;
    tfm_config_default(&c, TFM_TRANSFORMER_DECODER_LAYER);
    c.d_model = 30, c.nhead = 4;
    tfm_module *m = NULL;
    EXPECT_ERROR(tfm_module_create(&c, 0, &m), TFM_ERR_INVALID_ARG, "d_model (30) must be divisible by nhead (4)");
    /* a checkpoint and `tfm train` */
    bad_checkpoint_fails(&(bad_checkpoint){.e = {.meta_key = "nhead", .meta_value = "3"},
                                           .want = TFM_ERR_INVALID_ARG,
                                           .words = {"divisible by nhead (3)"}});
    const char *tsv = tmp("nd.tsv"), *out = tmp("nd_out.safetensors");
    write_text(tsv, "abc\tcba\n");
    char args[4096];
    snprintf(args, sizeof args, "train --train %s --out %s --d-model 30 --heads 4 --steps 1 --quiet", tsv, out);
    cli_fails(args, out, W("d_model (30)", "nhead (4)"));
}

/* ---- row 13: NaN and Inf ------------------------------------------------------------------- */

static int count_nan(const float *x, int n) {
    int k = 0;
    for (int i = 0; i < n; i++) k += isnan(x[i]);
    return k;
}

/* Output rows (l, b) of an (L, N, E) output: NaN everywhere where bad(l, b), else equal
 * to the clean output. */
static void check_rows(const char *what, const float *y, const float *clean, int L,
                       bool (*bad)(int l, int b)) {
    for (int l = 0; l < L; l++)
        for (int b = 0; b < N; b++) {
            const float *r = y + (l * N + b) * E, *c = clean + (l * N + b) * E;
            char row[128];
            snprintf(row, sizeof row, "%s row (%d, %d)", what, l, b);
            if (bad(l, b)) {
                if (count_nan(r, E) != E)
                    fail_msg("%s: %d of %d values NaN, want all (first %g)", row, count_nan(r, E), E, r[0]);
            } else {
                assert_true(close_enough(row, r, c, E, 0, 0));
            }
        }
}

static bool row1_batch0(int l, int b) { return l == 1 && b == 0; }
static bool batch1(int l, int b) { return b == 1; }
static bool row2(int l, int b) { return l == 2; }

static void test_nan_inf_library(void **state) {
    tfm_module *m = small_module(TFM_MULTIHEAD_ATTENTION);
    tfm_inputs in;
    tfm_outputs out;
    base_inputs(TFM_MULTIHEAD_ATTENTION, &in);
    float clean[LQ * N * E], key[SK * N * E];
    memcpy(key, seq_b, sizeof key);
    in.key = in.value = (tfm_tensor){key, TFM_F32, 3, {SK, N, E}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    memcpy(clean, out.output.data, sizeof clean);

    /* a NaN, +Inf or −Inf in query row (1, 0): that row NaN, the rest unchanged */
    const float bad_values[] = {NAN, INFINITY, -INFINITY};
    const char *names[] = {"NaN in query", "+Inf in query", "-Inf in query"};
    for (int v = 0; v < 3; v++) {
        float keep = seq_a[(1 * N + 0) * E + 3];
        seq_a[(1 * N + 0) * E + 3] = bad_values[v];
        EXPECT_OK(tfm_forward(m, &in, &out));
        check_rows(names[v], out.output.data, clean, LQ, row1_batch0);
        seq_a[(1 * N + 0) * E + 3] = keep;
    }
    /* a NaN in key row (2, 1): every row of batch element 1 NaN, also when key 2 of
     * batch 1 is masked out */
    key[(2 * N + 1) * E + 0] = NAN;
    EXPECT_OK(tfm_forward(m, &in, &out));
    check_rows("NaN in key", out.output.data, clean, LQ, batch1);
    unsigned char kpm[N * SK] = {0};
    kpm[1 * SK + 2] = 1;
    in.key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {N, SK}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    check_rows("NaN in a masked key", out.output.data, clean, LQ, batch1);
    in.key_padding_mask.data = NULL;
    key[(2 * N + 1) * E + 0] = seq_b[(2 * N + 1) * E + 0];
    /* a NaN in a float attn_mask entry (2, 4): row 2 of every batch element NaN */
    float am[LQ * SK] = {0};
    am[2 * SK + 4] = NAN;
    in.attn_mask = (tfm_tensor){am, TFM_F32, 2, {LQ, SK}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    check_rows("NaN in attn_mask", out.output.data, clean, LQ, row2);
    in.attn_mask.data = NULL;
    tfm_module_free(m);

    /* an encoder layer: a NaN in src (1, 0) reaches every row of batch element 0 through
     * the keys and values; batch element 1 is unchanged */
    m = small_module(TFM_TRANSFORMER_ENCODER_LAYER);
    base_inputs(TFM_TRANSFORMER_ENCODER_LAYER, &in);
    float eclean[LE * N * E];
    EXPECT_OK(tfm_forward(m, &in, &out));
    memcpy(eclean, out.output.data, sizeof eclean);
    seq_a[(1 * N + 0) * E + 5] = NAN;
    EXPECT_OK(tfm_forward(m, &in, &out));
    const float *y = out.output.data;
    for (int l = 0; l < LE; l++) {
        assert_int_equal(count_nan(y + (l * N + 0) * E, E), E);
        assert_true(close_enough("encoder layer, batch 1", y + (l * N + 1) * E,
                                 eclean + (l * N + 1) * E, E, 0, 0));
    }
    tfm_module_free(m);
}

static void test_nan_inf_cli(void **state) {
    /* NaN is not an error for `tfm forward`: it computes, and the NaN shows in OUT */
    const char *p = tmp("nan_in.safetensors"), *o = tmp("nan_out.safetensors");
    float src[LE * N * E];
    fill_seqs();
    memcpy(src, seq_a, sizeof src);
    src[(2 * N + 1) * E + 0] = NAN;
    src[(0 * N + 1) * E + 1] = INFINITY;
    extra_tensor x = {"src", ST_F32, 3, {LE, N, E}, src};
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    forward_ok(kind_file(TFM_TRANSFORMER_ENCODER_LAYER), p, o);
    st_file *f;
    EXPECT_OK(st_open(o, &f));
    const st_tensor *t = st_find(f, "output");
    assert_non_null(t);
    float y[LE * N * E];
    EXPECT_OK(st_read_f32(f, t, y));
    st_close(f);
    for (int l = 0; l < LE; l++) {
        assert_int_equal(count_nan(y + (l * N + 1) * E, E), E);
        assert_int_equal(count_nan(y + (l * N + 0) * E, E), 0);
    }
}

/* ---- row 14: empty sequences ------------------------------------------------------------------ */

static bool all_finite(const tfm_tensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    const float *x = t->data;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

static void expect_shape(const tfm_tensor *t, int ndim, int64_t a, int64_t b, int64_t c) {
    const int64_t want[3] = {a, b, c};
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++)
        if (t->shape[d] != want[d])
            fail_msg("shape[%d] = %lld, want %lld", d, (long long)t->shape[d], (long long)want[d]);
}

static void test_empty_sequences_library(void **state) {
    tfm_module *m = small_module(TFM_MULTIHEAD_ATTENTION);
    tfm_inputs in;
    tfm_outputs out;
    unsigned char kpm[16] = {0};
    /* L = 0: an empty output (0, N, E); with weights (N, 0, S) */
    base_inputs(TFM_MULTIHEAD_ATTENTION, &in);
    in.query.shape[0] = 0;
    in.need_weights = true;
    in.attn_mask = (tfm_tensor){mask_f32, TFM_F32, 2, {0, SK}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    expect_shape(&out.output, 3, 0, N, E);
    expect_shape(&out.attn_weights, 3, N, 0, SK);
    /* S = 0: no keys; the attention output is zero, so every row is out_proj.bias */
    base_inputs(TFM_MULTIHEAD_ATTENTION, &in);
    in.key.shape[0] = in.value.shape[0] = 0;
    in.need_weights = true;
    in.key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {N, 0}};
    in.attn_mask = (tfm_tensor){mask_f32, TFM_F32, 2, {LQ, 0}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    expect_shape(&out.output, 3, LQ, N, E);
    expect_shape(&out.attn_weights, 3, N, LQ, 0);
    assert_true(all_finite(&out.output));
    const float *bias = NULL;
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *name;
        tfm_tensor v;
        EXPECT_OK(tfm_module_param(m, i, &name, &v));
        if (!strcmp(name, "out_proj.bias")) bias = v.data;
    }
    assert_non_null(bias);
    for (int r = 0; r < LQ * N; r++)
        assert_true(close_enough("S = 0 row", (const float *)out.output.data + r * E, bias, E, 0, 0));
    /* and its gradient is defined: zero for the keys' side (there are none) */
    EXPECT_OK(tfm_forward_train(m, &in, &out));
    float dy[LQ * N * E];
    for (int i = 0; i < LQ * N * E; i++) dy[i] = 1.0f;
    tfm_input_grads g;
    tfm_tensor dyt = {dy, TFM_F32, 3, {LQ, N, E}};
    EXPECT_OK(tfm_backward(m, &dyt, &g));
    assert_true(all_finite(&g.query));
    /* N = 0 */
    base_inputs(TFM_MULTIHEAD_ATTENTION, &in);
    in.query.shape[1] = in.key.shape[1] = in.value.shape[1] = 0;
    EXPECT_OK(tfm_forward(m, &in, &out));
    expect_shape(&out.output, 3, LQ, 0, E);
    /* unbatched, L = 0 and S = 0 */
    in.query = (tfm_tensor){seq_a, TFM_F32, 2, {0, E}};
    in.key = in.value = (tfm_tensor){seq_b, TFM_F32, 2, {0, E}};
    EXPECT_OK(tfm_forward(m, &in, &out));
    expect_shape(&out.output, 2, 0, E, 0);
    tfm_module_free(m);

    /* every other kind: L = 0 gives an empty output; S = 0 a finite one */
    for (int kind = TFM_TRANSFORMER_ENCODER_LAYER; kind <= TFM_TRANSFORMER; kind++) {
        m = small_module((tfm_module_kind)kind);
        const char *kn = tfm_module_name((tfm_module_kind)kind);
        base_inputs((tfm_module_kind)kind, &in);
        bool enc = kind == TFM_TRANSFORMER_ENCODER_LAYER || kind == TFM_TRANSFORMER_ENCODER;
        if (enc) {
            in.src.shape[0] = 0;
            in.src_key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {N, 0}};
            in.is_causal = true;
        } else {
            in.tgt.shape[0] = 0;
            in.tgt_is_causal = true;
        }
        tfm_status st = tfm_forward(m, &in, &out);
        if (st != TFM_OK) fail_msg("%s, L = 0: %s", kn, tfm_last_error());
        expect_shape(&out.output, 3, 0, N, E);
        if (enc) {
            tfm_module_free(m);
            continue;
        }
        /* no memory (decoders) or no source (Transformer): S = 0 */
        base_inputs((tfm_module_kind)kind, &in);
        if (kind == TFM_TRANSFORMER) {
            in.src.shape[0] = 0;
            in.src_key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {N, 0}};
        } else {
            in.memory.shape[0] = 0;
        }
        in.memory_key_padding_mask = (tfm_tensor){kpm, TFM_BOOL, 2, {N, 0}};
        in.tgt_is_causal = true;
        st = tfm_forward(m, &in, &out);
        if (st != TFM_OK) fail_msg("%s, S = 0: %s", kn, tfm_last_error());
        expect_shape(&out.output, 3, LQ, N, E);
        if (!all_finite(&out.output)) fail_msg("%s, S = 0: non-finite output", kn);
        tfm_module_free(m);
    }
}

static void test_empty_sequences_cli(void **state) {
    const char *p = tmp("empty_in.safetensors"), *o = tmp("empty_out.safetensors");
    /* L = 0 through an encoder layer: OUT holds an empty `output` of shape [0, N, E] */
    extra_tensor x = {"src", ST_F32, 3, {0, N, E}, seq_a};
    write_inputs(p, TFM_TRANSFORMER_ENCODER_LAYER, &x, 1, NULL, NULL);
    forward_ok(kind_file(TFM_TRANSFORMER_ENCODER_LAYER), p, o);
    st_file *f;
    EXPECT_OK(st_open(o, &f));
    const st_tensor *t = st_find(f, "output");
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[0], 0);
    assert_int_equal(t->shape[1], N);
    assert_int_equal(t->shape[2], E);
    st_close(f);
    /* S = 0 through MultiheadAttention with need_weights: weights (N, L, 0) */
    extra_tensor kv[2] = {{"key", ST_F32, 3, {0, N, E}, seq_b}, {"value", ST_F32, 3, {0, N, E}, seq_b}};
    write_inputs(p, TFM_MULTIHEAD_ATTENTION, kv, 2, "need_weights", "true");
    forward_ok(kind_file(TFM_MULTIHEAD_ATTENTION), p, o);
    EXPECT_OK(st_open(o, &f));
    t = st_find(f, "attn_weights");
    assert_non_null(t);
    assert_int_equal(t->ndim, 3);
    assert_int_equal(t->shape[0], N);
    assert_int_equal(t->shape[1], LQ);
    assert_int_equal(t->shape[2], 0);
    t = st_find(f, "output");
    assert_non_null(t);
    float y[LQ * N * E];
    EXPECT_OK(st_read_f32(f, t, y));
    for (int i = 0; i < LQ * N * E; i++) assert_true(isfinite(y[i]));
    st_close(f);
    /* an empty source to a Transformer */
    x.shape[0] = 0;
    write_inputs(p, TFM_TRANSFORMER, &x, 1, NULL, NULL);
    forward_ok(kind_file(TFM_TRANSFORMER), p, o);
}

/* ---- row 15: TSV through `tfm train` ------------------------------------------------------- */

static void test_tsv_cli(void **state) {
    const char *good = tmp("tsv_good.tsv"), *bad = tmp("tsv_bad.tsv"), *out = tmp("tsv_out.safetensors");
    write_text(good, "abc\tcba\nhello\tolleh\n");
    static char longline[6000];
    memset(longline, 'a', 4000);
    memcpy(longline + 4000, "\t", 1);
    memset(longline + 4001, 'b', 999);
    memcpy(longline + 5000, "\n", 2);
    static char text[8000];
    snprintf(text, sizeof text, "ab\tba\n%s", longline);
    struct {
        const char *data; /* NULL: the long line case */
        const char *where, *what;
    } cases[] = {
        {"abc\tcba\nx\xff" "y\tyx\n", ":2: ", "invalid UTF-8 at byte 2: byte that never appears in UTF-8"},
        {"abc\tcba\r\nde\tf\xc0\xaf\r\n", ":2: ", "invalid UTF-8 at byte 5: overlong"},
        {"\xef\xbb\xbf" "abc\tcba\n\xed\xa0\x80\tx\n", ":2: ", "UTF-16 surrogate"},
        {"abc\tc\xe6\x97\n", ":1: ", "truncated multi-byte sequence"},
        {"abc\tcba\r\n\r\nno tab\r\n", ":3: ", "no TAB separating source and target"},
        {"\xef\xbb\xbfno tab\n", ":1: ", "no TAB"},
        {"a\tb\tc\n", ":1: ", "more than one TAB"},
        {"\tcba\n", ":1: ", "empty source"},
        {"abcdefghijklmnop\tx\n", ":1: ", "source is 16 tokens, more than the maximum 15"},
        {"x\tabcdefghijklmno\n", ":1: ", "target is 16 tokens with BOS, more than the maximum 15"},
        {NULL, ":2: ", "line is 5000 bytes, longer than the maximum 4096"},
        {"", ": ", "no source<TAB>target pairs (empty file)"},
        {"\r\n\n\r\n", ": ", "only blank lines"},
    };
    char args[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(bad, cases[i].data ? cases[i].data : text);
        char where[1200];
        snprintf(where, sizeof where, "%s%s", bad, cases[i].where);
        /* as the training data, and as the validation data */
        snprintf(args, sizeof args,
                 "train --train %s --out %s --steps 2 --d-model 16 --heads 2 --ff 32 --max-len 16 --quiet",
                 bad, out);
        cli_fails(args, out, W(where, cases[i].what));
        snprintf(args, sizeof args,
                 "train --train %s --valid %s --out %s --steps 2 --d-model 16 --heads 2 --ff 32 "
                 "--max-len 16 --quiet",
                 good, bad, out);
        cli_fails(args, out, W(where, cases[i].what));
    }
    /* CRLF line endings, a BOM and blank lines are fine */
    write_text(bad, "\xef\xbb\xbf" "abc\tcba\r\n\r\nhello\tolleh\r\n");
    snprintf(args, sizeof args,
             "train --train %s --out %s --steps 2 --d-model 16 --heads 2 --ff 32 --max-len 16 "
             "--encoder-layers 1 --decoder-layers 1 --threads 1 --quiet --eval-every 0",
             bad, out);
    cli_ok(args);
    assert_int_equal(access(out, F_OK), 0);
}

/* ---- rows 14 and 16: decoding --------------------------------------------------------------- */

static void test_decode_edges(void **state) {
    tfm_translator *t;
    EXPECT_OK(tfm_translator_load(checkpoint_path, &t));
    const int64_t max_len = tfm_translator_max_len(t), V = tfm_translator_vocab(t);
    assert_int_equal(max_len, 16);
    /* a source longer than max_len */
    char longsrc[64];
    memset(longsrc, 'a', sizeof longsrc);
    const char *srcs[2] = {"abc", longsrc};
    size_t lens[2] = {3, (size_t)max_len + 1};
    tfm_decoder *d = (tfm_decoder *)1;
    EXPECT_ERROR(tfm_decoder_start(t, srcs, lens, 2, &d), TFM_ERR_SHAPE, "17 bytes", "max_len 16");
    assert_null(d);
    /* max_len itself fits */
    lens[1] = (size_t)max_len;
    EXPECT_OK(tfm_decoder_start(t, srcs, lens, 2, &d));
    tfm_decoder_free(d);
    /* an empty source (row 14), then max_len steps, then one too many */
    const char *empty[1] = {""};
    size_t zero[1] = {0};
    EXPECT_OK(tfm_decoder_start(t, empty, zero, 1, &d));
    float *logp = malloc(sizeof(float) * (size_t)V);
    int32_t tok = TFM_TOKEN_BOS;
    for (int64_t s = 0; s < max_len; s++) {
        EXPECT_OK(tfm_decoder_step(d, &tok, logp));
        for (int64_t v = 0; v < V; v++) assert_true(isfinite(logp[v]) || logp[v] == -INFINITY);
        tok = TFM_TOKEN_BYTE0 + 'a';
    }
    EXPECT_ERROR(tfm_decoder_step(d, &tok, logp), TFM_ERR_SHAPE, "max_len is 16");
    EXPECT_ERROR(tfm_decoder_step(d, &tok, logp), TFM_ERR_SHAPE, "max_len");
    tfm_decoder_free(d);
    /* hostile tokens */
    EXPECT_OK(tfm_decoder_start(t, empty, zero, 1, &d));
    tok = (int32_t)V;
    EXPECT_ERROR(tfm_decoder_step(d, &tok, logp), TFM_ERR_INVALID_ARG, "outside the vocabulary");
    tok = -1;
    EXPECT_ERROR(tfm_decoder_step(d, &tok, logp), TFM_ERR_INVALID_ARG, "outside the vocabulary");
    tfm_decoder_free(d);
    free(logp);
    tfm_translator_free(t);

    /* `tfm translate`: a line of max_len bytes is a source the model takes (as
     * tfm_decoder_start does); max_len + 1 is refused naming FILE:LINE and max_len */
    const char *in = tmp("dec_in.txt");
    char text[128];
    snprintf(text, sizeof text, "abc\n%.16s\n", longsrc);
    write_text(in, text);
    char args[4096];
    snprintf(args, sizeof args, "translate --model %s --input %s", checkpoint_path, in);
    cli_ok(args);
    snprintf(text, sizeof text, "abc\n\n%.17s\n", longsrc);
    write_text(in, text);
    char where[1100];
    snprintf(where, sizeof where, "%s:3:", in);
    cli_fails(args, NULL, W(where, "17 bytes", "max_len 16"));
}

/* ---- the checkpoint shared by the tests ------------------------------------------------------ */

static int make_checkpoint(void **state) {
    static char path[1024];
    const char *tsv = tmp("ckpt_train.tsv");
    FILE *f = fopen(tsv, "w");
    if (!f) return -1;
    const char *words[] = {"abc", "hello", "tfm", "xyz", "cat", "transformer"};
    for (int i = 0; i < 24; i++) {
        const char *w = words[i % 6];
        fprintf(f, "%s\t", w);
        for (int j = (int)strlen(w) - 1; j >= 0; j--) fputc(w[j], f);
        fputc('\n', f);
    }
    fclose(f);
    tmp_path(path, sizeof path, "ckpt.safetensors");
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s train --train %s --out %s --steps 5 --d-model 16 --heads 2 --ff 32 "
             "--encoder-layers 1 --decoder-layers 1 --max-len 16 --batch-size 8 --threads 1 --quiet "
             "--eval-every 0 >/dev/null",
             TFM_CLI, tsv, path);
    if (run_command(cmd) != 0) return -1;
    checkpoint_path = path;
    return 0;
}

/* The child of test_input_dims: zero-element inputs with a 2^40 dimension, batch-major
 * and sequence-major, give empty outputs of the right shape. Exit status 0 when so. */
static int empty_huge_dims_child(void) {
    tfm_config c;
    tfm_config_default(&c, TFM_TRANSFORMER_ENCODER_LAYER);
    c.d_model = E, c.nhead = H, c.dim_feedforward = 16;
    tfm_module *m;
    if (tfm_module_create(&c, 1, &m) != TFM_OK) return 2;
    const int64_t huge = (int64_t)1 << 40;
    static const float x[1] = {0};
    unsigned char none[1] = {0};
    struct {
        int64_t shape[3], kpm[2];
        int out_dim;
    } cases[] = {{{huge, 0, E}, {0, huge}, 0}, {{0, huge, E}, {huge, 0}, 1}};
    for (int i = 0; i < 2; i++) {
        tfm_inputs in;
        tfm_outputs out;
        tfm_inputs_init(&in);
        in.src = (tfm_tensor){(void *)x, TFM_F32, 3, {cases[i].shape[0], cases[i].shape[1], E}};
        in.src_key_padding_mask = (tfm_tensor){none, TFM_BOOL, 2, {cases[i].kpm[0], cases[i].kpm[1]}};
        tfm_status st = tfm_forward(m, &in, &out);
        if (st != TFM_OK || out.output.ndim != 3 || out.output.shape[cases[i].out_dim] != huge) {
            fprintf(stderr, "case %d: status %d (%s)\n", i, st, tfm_last_error());
            return 1;
        }
    }
    tfm_module_free(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--empty-huge-dims")) return empty_huge_dims_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_damage_cli),
        cmocka_unit_test(test_model_shape_mismatch),
        cmocka_unit_test(test_config_dims),
        cmocka_unit_test(test_checkpoint_dims),
        cmocka_unit_test(test_input_dims),
        cmocka_unit_test(test_missing_unexpected),
        cmocka_unit_test(test_unexpected_inputs_library),
        cmocka_unit_test(test_flags_of_other_kinds_cli),
        cmocka_unit_test(test_unknown_module),
        cmocka_unit_test(test_not_divisible),
        cmocka_unit_test(test_mask_shapes_library),
        cmocka_unit_test(test_mask_dtypes_library),
        cmocka_unit_test(test_masks_cli),
        cmocka_unit_test(test_nan_inf_library),
        cmocka_unit_test(test_nan_inf_cli),
        cmocka_unit_test(test_empty_sequences_library),
        cmocka_unit_test(test_empty_sequences_cli),
        cmocka_unit_test(test_tsv_cli),
        cmocka_unit_test(test_decode_edges),
    };
    return cmocka_run_group_tests(tests, make_checkpoint, NULL);
}
