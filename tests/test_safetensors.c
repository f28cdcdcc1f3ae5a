/* test_safetensors.c — the safetensors reader rejects every malformed file with the
 * right status and a message naming the tensor and the problem; the writer round-trips
 * tensors and metadata atomically; F64/F16/BF16 convert to float exactly. */
#include <setjmp.h> /* cmocka needs these before it */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/status.h"
#include "io/safetensors.h"

#define LABEL "model.safetensors"

static char tmpdir[64];

static int make_tmpdir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tfm_st_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void **state) {
    (void)state;
    DIR *d = opendir(tmpdir);
    if (!d) return -1;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    return rmdir(tmpdir);
}

static const char *tmp_path(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s/%s", tmpdir, name);
    return buf;
}

/* Entries in tmpdir whose name contains `part`. */
static int count_entries(const char *part) {
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* A file image: 8-byte LE header length, the header as given, data_len bytes of a
 * pattern (byte i = i mod 251). */
static unsigned char *make_file(const char *header, size_t data_len, size_t *len) {
    size_t n = strlen(header);
    *len = 8 + n + data_len;
    unsigned char *b = malloc(*len ? *len : 1);
    assert_non_null(b);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(b + 8, header, n);
    for (size_t i = 0; i < data_len; i++) b[8 + n + i] = (unsigned char)(i % 251);
    return b;
}

static void write_bytes(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(buf, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static unsigned char *read_bytes(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *b = malloc(*len + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, *len, fp), *len);
    fclose(fp);
    return b;
}

/* The last error names each of `words` (NULL-terminated). */
static void expect_words(const char *const *words) {
    const char *msg = tfm_last_error();
    for (; *words; words++)
        if (!strstr(msg, *words)) fail_msg("error message \"%s\" lacks \"%s\"", msg, *words);
}

static void expect_status(tfm_status got, tfm_status want) {
    if (got != want)
        fail_msg("status %d (%s), want %d; message: %s", got, tfm_status_string(got), want,
                 tfm_last_error());
}

/* An image built from `header` fails st_open_memory with `want`, naming the label and
 * each of the words. */
static void expect_bad_image(const unsigned char *b, size_t len, tfm_status want,
                             const char *const *words) {
    st_file *f = (st_file *)1;
    tfm_clear_error();
    expect_status(st_open_memory(b, len, LABEL, &f), want);
    assert_null(f);
    expect_words((const char *const[]){LABEL, NULL});
    expect_words(words);
}

static void expect_bad_(const char *header, size_t data_len, tfm_status want,
                        const char *const *words) {
    size_t len;
    unsigned char *b = make_file(header, data_len, &len);
    expect_bad_image(b, len, want, words);
    free(b);
}
#define EXPECT_BAD(header, data_len, ...)                                                      \
    expect_bad_(header, data_len, TFM_ERR_FORMAT, (const char *const[]){__VA_ARGS__, NULL})

/* A valid file: opens, and the caller checks it. */
static st_file *open_ok(const char *header, size_t data_len, unsigned char **img) {
    size_t len;
    *img = make_file(header, data_len, &len);
    st_file *f = NULL;
    expect_status(st_open_memory(*img, len, LABEL, &f), TFM_OK);
    assert_non_null(f);
    return f;
}

#define T(name, dtype, shape, b, e)                                                            \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e  \
    "]}"

/* ---- truncation and the header length --------------------------------------------- */

static void test_truncated_short(void **state) {
    (void)state;
    unsigned char b[8] = {2, 0, 0, 0, 0, 0, 0, 0};
    for (size_t len = 0; len < 8; len++) {
        expect_bad_image(b, len, TFM_ERR_FORMAT, (const char *const[]){"truncated", NULL});
    }
}

static void test_truncated_header_beyond_file(void **state) {
    (void)state;
    size_t len;
    unsigned char *b = make_file("{}      ", 0, &len);
    b[0] = 100; /* claims 100 header bytes, 8 follow */
    expect_bad_image(b, len, TFM_ERR_FORMAT,
                     (const char *const[]){"truncated", "header length 100", "only 8", NULL});
    free(b);
}

static void test_header_length_absurd(void **state) {
    (void)state;
    size_t len;
    unsigned char *b = make_file("{}", 0, &len);
    memset(b, 0, 8);
    b[7] = 0x10; /* 2^60 */
    expect_bad_image(b, len, TFM_ERR_FORMAT,
                     (const char *const[]){"header length 1152921504606846976", "limit", NULL});
    memset(b, 0, 8);
    b[0] = 0x01, b[1] = 0xe1, b[2] = 0xf5, b[3] = 0x05; /* 100000001: just above the limit */
    expect_bad_image(b, len, TFM_ERR_FORMAT, (const char *const[]){"100000001", "limit", NULL});
    free(b);
}

static void test_header_length_too_small(void **state) {
    (void)state;
    EXPECT_BAD("", 0, "header length 0", "too small");
    EXPECT_BAD("{", 0, "header length 1", "too small");
}

/* ---- the JSON itself ------------------------------------------------------------------ */

static void test_header_not_json(void **state) {
    (void)state;
    EXPECT_BAD("{not json}", 0, "not valid JSON");
    EXPECT_BAD("{\"a\":{\"dtype\":\"F32\",", 0, "not valid JSON");
    EXPECT_BAD("        ", 0, "not valid JSON");
}

static void test_header_array_not_object(void **state) {
    (void)state;
    EXPECT_BAD("[1, 2, 3]", 0, "not a JSON object");
    EXPECT_BAD("\"str\"", 0, "not a JSON object");
    EXPECT_BAD("null", 0, "not a JSON object");
}

static void test_header_trailing_garbage(void **state) {
    (void)state;
    EXPECT_BAD("{}x", 0, "after the JSON object", "byte 2");
    EXPECT_BAD("{} {}", 0, "after the JSON object");
}

static void test_header_bytes(void **state) {
    (void)state;
    EXPECT_BAD("{\"a\x01\":1}", 0, "control byte 0x01");
    EXPECT_BAD("{\"a\xff\":1}", 0, "not valid UTF-8");
    EXPECT_BAD("{\"\xc0\xaf\":1}", 0, "not valid UTF-8"); /* overlong '/' */
    EXPECT_BAD("{\"\xed\xa0\x80\":1}", 0, "not valid UTF-8"); /* a surrogate */
    EXPECT_BAD("{\"a\\u0000b\":1}", 0, "NUL");
    /* A NUL byte would end a C string early; inside JSON it is a control byte. */
    size_t len;
    unsigned char *b = make_file("{\"a\":1}", 0, &len);
    b[8 + 2] = 0;
    expect_bad_image(b, len, TFM_ERR_FORMAT, (const char *const[]){"control byte 0x00", NULL});
    free(b);
}

static void test_header_deep_nesting(void **state) {
    (void)state;
    size_t depth = 5000;
    char *h = malloc(2 * depth + 16);
    assert_non_null(h);
    size_t k = 0;
    k += (size_t)sprintf(h + k, "{\"a\":");
    for (size_t i = 0; i < depth; i++) h[k++] = '[';
    for (size_t i = 0; i < depth; i++) h[k++] = ']';
    h[k++] = '}';
    h[k] = '\0';
    EXPECT_BAD(h, 0, "not valid JSON");
    free(h);
}

static void test_duplicate_tensor_keys(void **state) {
    (void)state;
    EXPECT_BAD("{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 4, 8) "," T(
                   "a", "F32", "[1]", 8, 12) "}",
               12, "duplicate key 'a'");
    EXPECT_BAD("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'");
}

static void test_duplicate_metadata_keys(void **state) {
    (void)state;
    EXPECT_BAD("{\"__metadata__\":{\"k\":\"1\",\"j\":\"2\",\"k\":\"3\"}}", 0,
               "duplicate key 'k'", "__metadata__");
}

static void test_metadata_not_strings(void **state) {
    (void)state;
    EXPECT_BAD("{\"__metadata__\":{\"format\":\"pt\",\"epoch\":3}}", 0, "'epoch'",
               "not a string");
    EXPECT_BAD("{\"__metadata__\":{\"k\":null}}", 0, "'k'", "not a string");
    EXPECT_BAD("{\"__metadata__\":\"pt\"}", 0, "__metadata__", "not a JSON object");
    EXPECT_BAD("{\"__metadata__\":[\"a\",\"b\"]}", 0, "__metadata__", "not a JSON object");
}

/* ---- tensor entries --------------------------------------------------------------------- */

static void test_empty_name(void **state) {
    (void)state;
    EXPECT_BAD("{" T("", "F32", "[1]", 0, 4) "}", 4, "empty name");
}

static void test_entry_fields(void **state) {
    (void)state;
    EXPECT_BAD("{\"w\":3}", 0, "'w'", "not a JSON object");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w'", "missing field",
               "data_offsets");
    EXPECT_BAD("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'", "missing field",
               "dtype");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w'",
               "missing field", "shape");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
               "'w'", "unknown field 'x'");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[0,"
               "4]}}",
               4, "'w'", "duplicate field 'dtype'");
}

static void test_unknown_dtype(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F8_E4M3", "[4]", 0, 4) "}", 4, "'w'", "unknown dtype 'F8_E4M3'");
    EXPECT_BAD("{" T("w", "f32", "[1]", 0, 4) "}", 4, "'w'", "unknown dtype 'f32'");
    EXPECT_BAD("{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w'",
               "dtype is not a string");
}

static void test_negative_dim(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[2,-1]", 0, 8) "}", 8, "'w'", "shape[1]", "negative");
}

static void test_fractional_dim(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[1.5]", 0, 4) "}", 4, "'w'", "shape[0] = 1.5",
               "not an integer");
}

static void test_bad_dims(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[\"2\"]", 0, 8) "}", 8, "'w'", "shape[0]", "not a number");
    EXPECT_BAD("{" T("w", "F32", "4", 0, 16) "}", 16, "'w'", "shape is not an array");
    EXPECT_BAD("{" T("w", "U8", "[9007199254740992]", 0, 8) "}", 8, "'w'", "shape[0]", "2^53");
    EXPECT_BAD("{" T("w", "U8", "[1e999]", 0, 8) "}", 8, "'w'", "shape[0]", "2^53");
}

static void test_too_many_dims(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[1,1,1,1,1,1,1,1,1]", 0, 4) "}", 4, "'w'", "9 dims",
               "more than the 8");
    /* ST_MAX_DIMS itself is fine. */
    unsigned char *img;
    st_file *f = open_ok("{" T("w", "F32", "[1,1,1,1,1,1,1,2]", 0, 8) "}", 8, &img);
    assert_int_equal(st_at(f, 0)->ndim, 8);
    st_close(f);
    free(img);
}

static void test_numel_overflow(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[1099511627776,1099511627776]", 0, 4) "}", 4, "'w'",
               "[1099511627776, 1099511627776]", "overflows");
    /* numel fits in int64 but numel × 8 bytes does not fit anywhere. */
    EXPECT_BAD("{" T("w", "F64", "[4503599627370495,1024]", 0, 4) "}", 4, "'w'", "size_t");
}

static void test_offsets_out_of_range(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[8]", 0, 32) "}", 16, "'w'", "[0, 32]",
               "beyond the data section of 16 bytes");
    EXPECT_BAD("{" T("w", "F32", "[8]", 0, 9007199254740993) "}", 16, "'w'",
               "data_offsets[1]", "2^53");
}

static void test_offsets_begin_after_end(void **state) {
    (void)state;
    EXPECT_BAD("{" T("w", "F32", "[4]", 16, 0) "}", 16, "'w'", "[16, 0]", "begin > end");
}

static void test_offsets_malformed(void **state) {
    (void)state;
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4]}}", 4, "'w'",
               "data_offsets is not an array");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "'w'",
               "data_offsets is not an array");
    EXPECT_BAD("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, "'w'",
               "data_offsets is not an array");
    EXPECT_BAD("{" T("w", "F32", "[1]", -4, 0) "}", 4, "'w'", "data_offsets[0]", "negative");
    EXPECT_BAD("{" T("w", "F32", "[1]", 0, 4.5) "}", 4, "'w'", "data_offsets[1]",
               "not an integer");
}

static void test_byte_length_mismatch(void **state) {
    (void)state;
    size_t len;
    unsigned char *b = make_file("{" T("linear1.weight", "F32", "[4,8]", 0, 64) "}", 64, &len);
    st_file *f = NULL;
    expect_status(st_open_memory(b, len, LABEL, &f), TFM_ERR_FORMAT);
    assert_string_equal(tfm_last_error(),
                        "model.safetensors: tensor 'linear1.weight': data_offsets [0, 64] give "
                        "64 bytes, but F32 [4, 8] needs 128");
    free(b);
    EXPECT_BAD("{" T("b", "BF16", "[3]", 0, 4) "}", 4, "'b'", "give 4 bytes", "BF16 [3] needs 6");
}

static void test_overlapping_tensors(void **state) {
    (void)state;
    EXPECT_BAD("{" T("a", "F32", "[4]", 0, 16) "," T("b", "F32", "[4]", 8, 24) "}", 24, "'a'",
               "'b'", "overlap");
    /* The same range twice is an overlap too. */
    EXPECT_BAD("{" T("a", "F32", "[4]", 0, 16) "," T("b", "I32", "[4]", 0, 16) "}", 16, "'a'",
               "'b'", "overlap");
    /* An empty tensor strictly inside another's range: the reference implementation
     * rejects this too. */
    EXPECT_BAD("{" T("a", "F32", "[4]", 0, 16) "," T("e", "F32", "[0]", 8, 8) "}", 16, "'a'",
               "'e'", "overlap");
}

static void test_hole_in_data(void **state) {
    (void)state;
    EXPECT_BAD("{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[2]", 16, 24) "}", 24, "hole",
               "[8, 16)", "'b'");
    EXPECT_BAD("{" T("a", "F32", "[2]", 8, 16) "}", 16, "hole", "[0, 8)", "'a'");
    EXPECT_BAD("{" T("a", "F32", "[2]", 0, 8) "}", 16, "hole", "[8, 16)", "end");
    EXPECT_BAD("{}", 4, "hole", "[0, 4)");
    EXPECT_BAD("{\"__metadata__\":{\"a\":\"b\"}}", 1, "hole");
}

/* ---- valid files ------------------------------------------------------------------------ */

static void test_empty_file_valid(void **state) {
    (void)state;
    unsigned char *img;
    st_file *f = open_ok("{}", 0, &img);
    assert_int_equal(st_count(f), 0);
    assert_int_equal(st_meta_count(f), 0);
    assert_null(st_at(f, 0));
    assert_null(st_find(f, "x"));
    assert_null(st_meta(f, "x"));
    assert_string_equal(st_label(f), LABEL);
    st_close(f);
    free(img);
    /* Spec padding: trailing spaces (and other JSON whitespace) after the object. */
    f = open_ok("{\"__metadata__\":{\"format\":\"pt\"}}  \n\t   ", 0, &img);
    assert_string_equal(st_meta(f, "format"), "pt");
    st_close(f);
    free(img);
}

static void test_valid_layout(void **state) {
    (void)state;
    /* Header order differs from data order; an empty tensor sits between the two. */
    const char *h = "{" T("b", "I16", "[2,3]", 8, 20) ",\"__metadata__\":{\"format\":\"pt\","
                    "\"note\":\"caf\xc3\xa9 \\u00e9 \\\"q\\\"\"}," T("a", "F64", "[1]", 0, 8) ","
                    T("z", "U8", "[0,5]", 8, 8) "}";
    unsigned char *img;
    st_file *f = open_ok(h, 20, &img);
    const unsigned char *data = img + 8 + strlen(h);
    assert_int_equal(st_count(f), 3);
    const st_tensor *b = st_at(f, 0), *a = st_at(f, 1), *z = st_at(f, 2);
    assert_null(st_at(f, 3));
    assert_string_equal(b->name, "b");
    assert_string_equal(a->name, "a");
    assert_string_equal(z->name, "z");
    assert_ptr_equal(st_find(f, "a"), a);
    assert_ptr_equal(st_find(f, "b"), b);
    assert_ptr_equal(st_find(f, "z"), z);
    assert_null(st_find(f, "__metadata__"));
    assert_null(st_find(f, "c"));
    assert_int_equal(b->dtype, ST_I16);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[0], 2);
    assert_int_equal(b->shape[1], 3);
    assert_int_equal(b->numel, 6);
    assert_int_equal(b->nbytes, 12);
    assert_ptr_equal(b->data, data + 8);
    assert_ptr_equal(a->data, data);
    assert_int_equal(a->nbytes, 8);
    assert_int_equal(z->numel, 0);
    assert_int_equal(z->nbytes, 0);
    assert_int_equal(st_meta_count(f), 2);
    const char *k, *v;
    st_meta_at(f, 0, &k, &v);
    assert_string_equal(k, "format");
    assert_string_equal(v, "pt");
    st_meta_at(f, 1, &k, &v);
    assert_string_equal(k, "note");
    assert_string_equal(v, "caf\xc3\xa9 \xc3\xa9 \"q\"");
    st_meta_at(f, 2, &k, &v);
    assert_null(k);
    assert_null(v);
    assert_string_equal(st_meta(f, "note"), "caf\xc3\xa9 \xc3\xa9 \"q\"");
    assert_null(st_meta(f, "missing"));
    st_close(f);
    free(img);
}

static void test_find_many(void **state) {
    (void)state;
    /* Enough tensors for st_find's binary search to matter; names in reverse order. */
    enum { N = 300 };
    char *h = malloc(N * 80 + 8);
    assert_non_null(h);
    size_t k = 0;
    h[k++] = '{';
    for (int i = 0; i < N; i++)
        k += (size_t)sprintf(h + k, "%s\"t%03d\":{\"dtype\":\"U8\",\"shape\":[1],"
                             "\"data_offsets\":[%d,%d]}",
                             i ? "," : "", N - 1 - i, i, i + 1);
    h[k++] = '}';
    h[k] = '\0';
    unsigned char *img;
    st_file *f = open_ok(h, N, &img);
    const unsigned char *data = img + 8 + strlen(h);
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%03d", i);
        const st_tensor *t = st_find(f, name);
        assert_non_null(t);
        assert_string_equal(t->name, name);
        assert_ptr_equal(t->data, data + (N - 1 - i));
    }
    assert_null(st_find(f, "t300"));
    assert_null(st_find(f, ""));
    st_close(f);
    free(img);
    free(h);
}

static void test_scalar_tensor(void **state) {
    (void)state;
    unsigned char *img;
    st_file *f = open_ok("{" T("s", "F32", "[]", 0, 4) "}", 4, &img);
    const st_tensor *s = st_find(f, "s");
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    assert_int_equal(s->nbytes, 4);
    st_close(f);
    free(img);
    EXPECT_BAD("{" T("s", "F32", "[]", 0, 0) "}", 0, "'s'", "needs 4");
}

static void test_zero_element_tensor(void **state) {
    (void)state;
    unsigned char *img;
    /* Two empty tensors at the same offset, and one at the end of the data. */
    st_file *f = open_ok("{" T("e", "F32", "[0,3]", 0, 0) "," T("g", "I64", "[2,0]", 0, 0) ","
                         T("w", "U8", "[4]", 0, 4) "," T("h", "F16", "[0]", 4, 4) "}",
                         4, &img);
    assert_int_equal(st_count(f), 4);
    const st_tensor *e = st_find(f, "e");
    assert_int_equal(e->numel, 0);
    assert_int_equal(e->nbytes, 0);
    assert_int_equal(e->shape[1], 3);
    float x = 42.0f;
    assert_int_equal(st_read_f32(f, e, NULL), TFM_OK);
    assert_int_equal(st_read_f32(f, st_find(f, "h"), &x), TFM_OK);
    assert_true(x == 42.0f);
    st_close(f);
    free(img);
    /* A zero dim makes numel 0 even when the other dims would overflow. */
    f = open_ok("{" T("z", "F32", "[4503599627370495,4503599627370495,0]", 0, 0) "}", 0, &img);
    assert_int_equal(st_find(f, "z")->numel, 0);
    st_close(f);
    free(img);
}

/* ---- through real files ----------------------------------------------------------------- */

static void test_open_file_errors(void **state) {
    (void)state;
    char p[512];
    st_file *f = (st_file *)1;
    expect_status(st_open(tmp_path(p, sizeof p, "absent.safetensors"), &f), TFM_ERR_IO);
    assert_null(f);
    expect_words((const char *const[]){p, "cannot open", "No such file", NULL});

    expect_status(st_open(tmpdir, &f), TFM_ERR_IO);
    expect_words((const char *const[]){tmpdir, "not a regular file", NULL});

    write_bytes(tmp_path(p, sizeof p, "empty.safetensors"), "", 0);
    expect_status(st_open(p, &f), TFM_ERR_FORMAT);
    assert_null(f);
    expect_words((const char *const[]){p, "truncated", "0 bytes", NULL});

    write_bytes(tmp_path(p, sizeof p, "tiny.safetensors"), "\x02\0\0", 3);
    expect_status(st_open(p, &f), TFM_ERR_FORMAT);
    expect_words((const char *const[]){p, "truncated", "3 bytes", NULL});

    size_t len;
    unsigned char *b = make_file("{" T("linear1.weight", "F32", "[4,8]", 0, 64) "}", 64, &len);
    write_bytes(tmp_path(p, sizeof p, "bad.safetensors"), b, len);
    free(b);
    expect_status(st_open(p, &f), TFM_ERR_FORMAT);
    assert_null(f);
    expect_words((const char *const[]){p, "'linear1.weight'", "needs 128", NULL});

    b = make_file("{" T("w", "F32", "[4]", 0, 16) "}", 16, &len);
    b[8 + 1] = '!';
    write_bytes(tmp_path(p, sizeof p, "notjson.safetensors"), b, len);
    free(b);
    expect_status(st_open(p, &f), TFM_ERR_FORMAT);
    expect_words((const char *const[]){p, "not valid JSON", NULL});
}

static void test_open_file_valid_unaligned(void **state) {
    (void)state;
    /* An even header length puts "w" (1 byte into the data) at an odd address. */
    const char *h = "{" T("w", "F32", "[3]", 1, 13) "," T("p", "U8", "[1]", 0, 1) "}";
    size_t n = strlen(h);
    char *hp = malloc(n + 8);
    assert_non_null(hp);
    memcpy(hp, h, n);
    while (n % 2 != 0) hp[n++] = ' ';
    hp[n] = '\0';
    size_t len;
    unsigned char *b = make_file(hp, 13, &len);
    const float vals[3] = {1.5f, -2.25f, 3.0e-39f /* an f32 subnormal */};
    memcpy(b + 8 + n + 1, vals, sizeof vals);
    char p[512];
    write_bytes(tmp_path(p, sizeof p, "unaligned.safetensors"), b, len);
    st_file *f = NULL;
    expect_status(st_open(p, &f), TFM_OK);
    assert_string_equal(st_label(f), p);
    const st_tensor *w = st_find(f, "w");
    assert_int_equal(((uintptr_t)w->data) % 2, 1);
    float out[3];
    expect_status(st_read_f32(f, w, out), TFM_OK);
    assert_memory_equal(out, vals, sizeof vals);
    assert_memory_equal(w->data, vals, sizeof vals);
    st_close(f);
    free(b);
    free(hp);
}

/* ---- conversion to float ------------------------------------------------------------- */

static uint32_t bits_of(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static void test_read_f16(void **state) {
    (void)state;
    static const struct {
        uint16_t h;
        uint32_t f; /* expected binary32 bits */
    } cases[] = {
        {0x0000, 0x00000000}, {0x8000, 0x80000000},                       /* ±0 */
        {0x3c00, 0x3f800000}, {0xc000, 0xc0000000},                       /* 1, -2 */
        {0x3555, 0x3eaaa000},                                             /* 0.333251953125 */
        {0x7bff, 0x477fe000},                                             /* 65504 */
        {0x0400, 0x38800000},                                             /* 2^-14 */
        {0x0001, 0x33800000},                                             /* 2^-24 subnormal */
        {0x8001, 0xb3800000},                                             /* -2^-24 */
        {0x03ff, 0x387fc000},                                             /* 1023 × 2^-24 */
        {0x0200, 0x38000000},                                             /* 2^-15 */
        {0x7c00, 0x7f800000}, {0xfc00, 0xff800000},                       /* ±inf */
        {0x7e00, 0x7fc00000}, {0xfe00, 0xffc00000},                       /* quiet nan */
        {0x7c01, 0x7fc02000},                                             /* signalling → quiet */
    };
    enum { N = sizeof cases / sizeof cases[0] };
    char h[128];
    snprintf(h, sizeof h, "{" T("h", "F16", "[%d]", 0, %d) "}", N, 2 * N);
    size_t len;
    unsigned char *b = make_file(h, 2 * N, &len);
    unsigned char *d = b + 8 + strlen(h);
    for (int i = 0; i < N; i++) d[2 * i] = cases[i].h & 0xff, d[2 * i + 1] = cases[i].h >> 8;
    st_file *f = NULL;
    expect_status(st_open_memory(b, len, LABEL, &f), TFM_OK);
    float out[N];
    expect_status(st_read_f32(f, st_find(f, "h"), out), TFM_OK);
    for (int i = 0; i < N; i++)
        if (bits_of(out[i]) != cases[i].f)
            fail_msg("F16 0x%04x gave 0x%08x, want 0x%08x", cases[i].h, bits_of(out[i]),
                     cases[i].f);
    assert_true(out[7] == 5.9604644775390625e-08f);
    assert_true(isinf(out[11]) && out[11] > 0);
    assert_true(isnan(out[13]));
    st_close(f);
    free(b);
}

#ifdef __FLT16_MAX__
/* Every binary16 against the compiler's own conversion. */
static void test_read_f16_exhaustive(void **state) {
    (void)state;
    const char *h = "{" T("h", "F16", "[65536]", 0, 131072) "}";
    size_t len;
    unsigned char *b = make_file(h, 131072, &len);
    unsigned char *d = b + 8 + strlen(h);
    for (uint32_t i = 0; i < 65536; i++)
        d[2 * i] = i & 0xff, d[2 * i + 1] = (unsigned char)(i >> 8);
    st_file *f = NULL;
    expect_status(st_open_memory(b, len, LABEL, &f), TFM_OK);
    float *out = malloc(65536 * sizeof *out);
    assert_non_null(out);
    expect_status(st_read_f32(f, st_at(f, 0), out), TFM_OK);
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t u = (uint16_t)i;
        _Float16 x;
        memcpy(&x, &u, 2);
        float want = (float)x;
        if (isnan(want) ? !isnan(out[i]) || signbit(want) != signbit(out[i])
                        : bits_of(want) != bits_of(out[i]))
            fail_msg("F16 0x%04x gave 0x%08x, want 0x%08x", (unsigned)i, bits_of(out[i]),
                     bits_of(want));
    }
    free(out);
    st_close(f);
    free(b);
}
#endif

static void test_read_bf16_f64(void **state) {
    (void)state;
    static const uint16_t bf[] = {0x3f80, 0x4049, 0xc2f7, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x8000};
    static const uint32_t bf_want[] = {0x3f800000, 0x40490000, 0xc2f70000, 0x00010000,
                                       0x7f800000, 0xff800000, 0x7fc00000, 0x80000000};
    static const double f64[] = {1.5, -0.1, 1e300, -1e300, 1e-50, 65504.0, 3.4028234663852886e38};
    const char *h = "{" T("b", "BF16", "[8]", 0, 16) "," T("d", "F64", "[7]", 16, 72) "}";
    size_t len;
    unsigned char *b = make_file(h, 72, &len);
    unsigned char *d = b + 8 + strlen(h);
    for (int i = 0; i < 8; i++) d[2 * i] = bf[i] & 0xff, d[2 * i + 1] = bf[i] >> 8;
    for (int i = 0; i < 7; i++) {
        uint64_t u;
        memcpy(&u, &f64[i], 8);
        for (int k = 0; k < 8; k++) d[16 + 8 * i + k] = (unsigned char)(u >> (8 * k));
    }
    st_file *f = NULL;
    expect_status(st_open_memory(b, len, LABEL, &f), TFM_OK);
    float out[8];
    expect_status(st_read_f32(f, st_find(f, "b"), out), TFM_OK);
    for (int i = 0; i < 8; i++) assert_int_equal(bits_of(out[i]), bf_want[i]);
    assert_true(out[1] == 3.140625f);
    expect_status(st_read_f32(f, st_find(f, "d"), out), TFM_OK);
    assert_true(out[0] == 1.5f);
    assert_true(out[1] == -0.1f); /* rounded to nearest */
    assert_true(isinf(out[2]) && out[2] > 0);
    assert_true(isinf(out[3]) && out[3] < 0);
    assert_true(out[4] == 0.0f);
    assert_true(out[5] == 65504.0f);
    assert_int_equal(bits_of(out[6]), 0x7f7fffff); /* FLT_MAX */
    st_close(f);
    free(b);
}

static void test_read_f32_not_float(void **state) {
    (void)state;
    unsigned char *img;
    st_file *f = open_ok("{" T("ids", "I64", "[2]", 0, 16) "," T("m", "BOOL", "[1]", 16, 17) "}",
                         17, &img);
    float out[2];
    expect_status(st_read_f32(f, st_find(f, "ids"), out), TFM_ERR_FORMAT);
    expect_words((const char *const[]){LABEL, "'ids'", "I64", "not a floating type", NULL});
    expect_status(st_read_f32(f, st_find(f, "m"), out), TFM_ERR_FORMAT);
    expect_words((const char *const[]){"'m'", "BOOL", NULL});
    expect_status(st_read_f32(f, NULL, out), TFM_ERR_INVALID_ARG);
    st_close(f);
    free(img);
}

static void test_dtype_table(void **state) {
    (void)state;
    static const char *names[] = {"F64", "F32", "F16", "BF16", "BOOL",
                                  "U8",  "I8",  "I16", "I32",  "I64"};
    static const size_t sizes[] = {8, 4, 2, 2, 1, 1, 1, 2, 4, 8};
    for (int d = ST_F64; d <= ST_I64; d++) {
        assert_string_equal(st_dtype_name((st_dtype)d), names[d]);
        assert_int_equal(st_dtype_size((st_dtype)d), sizes[d]);
        /* Every dtype name parses back. */
        char h[128];
        snprintf(h, sizeof h, "{" T("x", "%s", "[3]", 0, %zu) "}", names[d], 3 * sizes[d]);
        unsigned char *img;
        st_file *f = open_ok(h, 3 * sizes[d], &img);
        assert_int_equal(st_at(f, 0)->dtype, d);
        st_close(f);
        free(img);
    }
    assert_int_equal(st_dtype_size((st_dtype)99), 0);
}

/* ---- writer ---------------------------------------------------------------------------- */

static void test_round_trip(void **state) {
    (void)state;
    const float w[6] = {1.0f, -2.5f, 3.25f, 0.0f, -0.0f, 1e-40f};
    const unsigned char mask[5] = {1, 0, 0, 1, 1};
    const int64_t ids[3] = {-1, INT64_C(1) << 40, INT64_MAX};
    const float s = 7.0f;
    st_writer *wr = NULL;
    expect_status(st_writer_new(&wr), TFM_OK);
    expect_status(st_writer_meta(wr, "format", "pt"), TFM_OK);
    expect_status(st_writer_meta(wr, "note", "first"), TFM_OK);
    expect_status(st_writer_add(wr, "enc.w", ST_F32, 2, (const int64_t[]){2, 3}, w), TFM_OK);
    expect_status(st_writer_add(wr, "mask", ST_BOOL, 1, (const int64_t[]){5}, mask), TFM_OK);
    expect_status(st_writer_add(wr, "empty", ST_F32, 2, (const int64_t[]){0, 4}, NULL), TFM_OK);
    expect_status(st_writer_add(wr, "ids", ST_I64, 1, (const int64_t[]){3}, ids), TFM_OK);
    expect_status(st_writer_add(wr, "scale", ST_F32, 0, NULL, &s), TFM_OK);
    expect_status(st_writer_meta(wr, "note", "quote \" and caf\xc3\xa9"), TFM_OK); /* replaces */
    char p[512];
    expect_status(st_writer_write(wr, tmp_path(p, sizeof p, "rt.safetensors")), TFM_OK);
    st_writer_free(wr);
    assert_int_equal(count_entries(".tmp."), 0);

    /* The exact bytes: __metadata__ first, insertion order, padded to 8 with spaces. */
    size_t len;
    unsigned char *raw = read_bytes(p, &len);
    const char *want =
        "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"quote \\\" and caf\xc3\xa9\"},"
        "\"enc.w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[5],\"data_offsets\":[24,29]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[29,29]},"
        "\"ids\":{\"dtype\":\"I64\",\"shape\":[3],\"data_offsets\":[29,53]},"
        "\"scale\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[53,57]}}";
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | raw[i];
    assert_int_equal(n % 8, 0);
    assert_true(n >= strlen(want) && n < strlen(want) + 8);
    assert_int_equal(len, 8 + n + 57);
    assert_memory_equal(raw + 8, want, strlen(want));
    for (size_t i = strlen(want); i < n; i++) assert_int_equal(raw[8 + i], ' ');
    free(raw);

    st_file *f = NULL;
    expect_status(st_open(p, &f), TFM_OK);
    assert_int_equal(st_count(f), 5);
    assert_int_equal(st_meta_count(f), 2);
    const char *k, *v;
    st_meta_at(f, 0, &k, &v);
    assert_string_equal(k, "format");
    assert_string_equal(v, "pt");
    assert_string_equal(st_meta(f, "note"), "quote \" and caf\xc3\xa9");
    const st_tensor *t = st_at(f, 0);
    assert_string_equal(t->name, "enc.w");
    assert_int_equal(t->dtype, ST_F32);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 2);
    assert_int_equal(t->shape[1], 3);
    assert_int_equal(((uintptr_t)t->data) % 8, 0); /* the padding aligns the data */
    assert_memory_equal(t->data, w, sizeof w);
    float back[6];
    expect_status(st_read_f32(f, t, back), TFM_OK);
    assert_memory_equal(back, w, sizeof w);
    t = st_find(f, "mask");
    assert_int_equal(t->dtype, ST_BOOL);
    assert_int_equal(t->nbytes, 5);
    assert_memory_equal(t->data, mask, sizeof mask);
    t = st_find(f, "empty");
    assert_int_equal(t->numel, 0);
    assert_int_equal(t->shape[1], 4);
    t = st_find(f, "ids");
    assert_int_equal(t->dtype, ST_I64);
    assert_memory_equal(t->data, ids, sizeof ids);
    t = st_find(f, "scale");
    assert_int_equal(t->ndim, 0);
    assert_int_equal(t->numel, 1);
    expect_status(st_read_f32(f, t, back), TFM_OK);
    assert_true(back[0] == 7.0f);
    st_close(f);
}

static void test_write_empty(void **state) {
    (void)state;
    st_writer *wr = NULL;
    expect_status(st_writer_new(&wr), TFM_OK);
    char p[512];
    expect_status(st_writer_write(wr, tmp_path(p, sizeof p, "none.safetensors")), TFM_OK);
    st_writer_free(wr);
    size_t len;
    unsigned char *raw = read_bytes(p, &len);
    assert_int_equal(len, 16);
    assert_memory_equal(raw, "\x08\0\0\0\0\0\0\0{}      ", 16);
    free(raw);
    st_file *f = NULL;
    expect_status(st_open(p, &f), TFM_OK);
    assert_int_equal(st_count(f), 0);
    st_close(f);
}

static void test_writer_invalid_args(void **state) {
    (void)state;
    st_writer *wr = NULL;
    expect_status(st_writer_new(&wr), TFM_OK);
    const float x[4] = {0};
    expect_status(st_writer_add(wr, "a", ST_F32, 1, (const int64_t[]){4}, x), TFM_OK);
    expect_status(st_writer_add(wr, "a", ST_F32, 1, (const int64_t[]){4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_words((const char *const[]){"'a'", "already added", NULL});
    expect_status(st_writer_add(wr, "", ST_F32, 1, (const int64_t[]){4}, x), TFM_ERR_INVALID_ARG);
    expect_words((const char *const[]){"empty", NULL});
    expect_status(st_writer_add(wr, "__metadata__", ST_F32, 1, (const int64_t[]){4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "bad\xff", ST_F32, 1, (const int64_t[]){4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "b", ST_F32, 1, (const int64_t[]){-4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_words((const char *const[]){"'b'", "shape[0] = -4", NULL});
    expect_status(st_writer_add(wr, "b", ST_F32, 9, (const int64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1},
                                x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "b", ST_F32, -1, NULL, x), TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "b", ST_F32, 1, NULL, x), TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "b", (st_dtype)42, 1, (const int64_t[]){4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(wr, "b", ST_F32, 1, (const int64_t[]){4}, NULL),
                  TFM_ERR_INVALID_ARG);
    expect_words((const char *const[]){"'b'", "NULL", NULL});
    expect_status(st_writer_add(wr, "b", ST_F32, 2,
                                (const int64_t[]){INT64_C(1) << 40, INT64_C(1) << 40}, x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_add(NULL, "b", ST_F32, 1, (const int64_t[]){4}, x),
                  TFM_ERR_INVALID_ARG);
    expect_status(st_writer_meta(wr, NULL, "v"), TFM_ERR_INVALID_ARG);
    expect_status(st_writer_meta(wr, "k", "\xc3"), TFM_ERR_INVALID_ARG);
    expect_status(st_writer_write(wr, NULL), TFM_ERR_INVALID_ARG);
    expect_status(st_writer_new(NULL), TFM_ERR_INVALID_ARG);
    st_writer_free(wr);
    st_writer_free(NULL);
    st_close(NULL);
}

static st_writer *one_tensor_writer(const char *name, const float *x) {
    st_writer *wr = NULL;
    expect_status(st_writer_new(&wr), TFM_OK);
    expect_status(st_writer_add(wr, name, ST_F32, 1, (const int64_t[]){2}, x), TFM_OK);
    return wr;
}

static void test_write_unwritable_path(void **state) {
    (void)state;
    const float x[2] = {1, 2};
    st_writer *wr = one_tensor_writer("w", x);
    char p[512];
    tmp_path(p, sizeof p, "no_such_dir/out.safetensors");
    expect_status(st_writer_write(wr, p), TFM_ERR_IO);
    expect_words((const char *const[]){p, "No such file or directory", NULL});
    assert_int_equal(count_entries("no_such_dir"), 0);

    /* Renaming over a directory fails after the temporary file was written: it must be
     * removed and the directory left alone. */
    char d[512];
    assert_int_equal(mkdir(tmp_path(d, sizeof d, "adir"), 0755), 0);
    int before = count_entries("");
    expect_status(st_writer_write(wr, d), TFM_ERR_IO);
    expect_words((const char *const[]){d, "rename", NULL});
    assert_int_equal(count_entries(".tmp."), 0);
    assert_int_equal(count_entries(""), before);
    struct stat st;
    assert_int_equal(stat(d, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    st_writer_free(wr);
}

static void test_write_replaces_existing(void **state) {
    (void)state;
    char p[512];
    tmp_path(p, sizeof p, "replace.safetensors");
    write_bytes(p, "old contents that are not a safetensors file", 44);
    const float a[2] = {1, 2}, b[2] = {3, 4};
    st_writer *wr = one_tensor_writer("first", a);
    expect_status(st_writer_write(wr, p), TFM_OK);
    st_writer_free(wr);
    /* Keep the first file open across the replacement: the mapping stays valid. */
    st_file *f1 = NULL;
    expect_status(st_open(p, &f1), TFM_OK);
    wr = one_tensor_writer("second", b);
    expect_status(st_writer_write(wr, p), TFM_OK);
    st_writer_free(wr);
    assert_int_equal(count_entries(".tmp."), 0);
    st_file *f2 = NULL;
    expect_status(st_open(p, &f2), TFM_OK);
    assert_int_equal(st_count(f2), 1);
    assert_null(st_find(f2, "first"));
    assert_memory_equal(st_find(f2, "second")->data, b, sizeof b);
    assert_memory_equal(st_find(f1, "first")->data, a, sizeof a);
    st_close(f1);
    st_close(f2);
}

/* ---- robustness: every truncation and many single-byte corruptions of a valid file
 * either open cleanly or fail with TFM_ERR_FORMAT (and never read out of bounds). */
static void test_corruptions(void **state) {
    (void)state;
    const float w[3] = {1, 2, 3};
    const uint16_t h[2] = {0x3c00, 0x7c00};
    st_writer *wr = NULL;
    expect_status(st_writer_new(&wr), TFM_OK);
    expect_status(st_writer_meta(wr, "format", "pt"), TFM_OK);
    expect_status(st_writer_add(wr, "w", ST_F32, 1, (const int64_t[]){3}, w), TFM_OK);
    expect_status(st_writer_add(wr, "h", ST_F16, 2, (const int64_t[]){1, 2}, h), TFM_OK);
    char p[512];
    expect_status(st_writer_write(wr, tmp_path(p, sizeof p, "fuzz.safetensors")), TFM_OK);
    st_writer_free(wr);
    size_t len;
    unsigned char *good = read_bytes(p, &len);
    for (size_t cut = 0; cut < len; cut++) {
        /* A copy of exactly `cut` bytes, so that ASan sees any over-read. */
        unsigned char *b = malloc(cut ? cut : 1);
        memcpy(b, good, cut);
        st_file *f = NULL;
        expect_status(st_open_memory(b, cut, LABEL, &f), TFM_ERR_FORMAT);
        free(b);
    }
    static const unsigned char vals[] = {0x00, ' ', '"', ',', ':', '[', ']', '{', '}',
                                         '0',  '9', '-', '.', 'e', '\\', 0x80, 0xff};
    unsigned char *b = malloc(len);
    int opened = 0;
    for (size_t pos = 0; pos < len; pos++)
        for (size_t v = 0; v < sizeof vals; v++) {
            memcpy(b, good, len);
            b[pos] = vals[v];
            st_file *f = NULL;
            tfm_status s = st_open_memory(b, len, LABEL, &f);
            if (s == TFM_OK) {
                opened++;
                for (size_t i = 0; i < st_count(f); i++) {
                    const st_tensor *t = st_at(f, i);
                    const unsigned char *d = t->data;
                    assert_true(d >= b && d + t->nbytes <= b + len);
                    float out[4];
                    if (t->numel <= 4) st_read_f32(f, t, out);
                }
                st_close(f);
            } else {
                expect_status(s, TFM_ERR_FORMAT);
                assert_null(f);
                assert_non_null(strstr(tfm_last_error(), LABEL));
            }
        }
    assert_true(opened > 0); /* data bytes and spaces can change harmlessly */
    free(b);
    free(good);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_short),
        cmocka_unit_test(test_truncated_header_beyond_file),
        cmocka_unit_test(test_header_length_absurd),
        cmocka_unit_test(test_header_length_too_small),
        cmocka_unit_test(test_header_not_json),
        cmocka_unit_test(test_header_array_not_object),
        cmocka_unit_test(test_header_trailing_garbage),
        cmocka_unit_test(test_header_bytes),
        cmocka_unit_test(test_header_deep_nesting),
        cmocka_unit_test(test_duplicate_tensor_keys),
        cmocka_unit_test(test_duplicate_metadata_keys),
        cmocka_unit_test(test_metadata_not_strings),
        cmocka_unit_test(test_empty_name),
        cmocka_unit_test(test_entry_fields),
        cmocka_unit_test(test_unknown_dtype),
        cmocka_unit_test(test_negative_dim),
        cmocka_unit_test(test_fractional_dim),
        cmocka_unit_test(test_bad_dims),
        cmocka_unit_test(test_too_many_dims),
        cmocka_unit_test(test_numel_overflow),
        cmocka_unit_test(test_offsets_out_of_range),
        cmocka_unit_test(test_offsets_begin_after_end),
        cmocka_unit_test(test_offsets_malformed),
        cmocka_unit_test(test_byte_length_mismatch),
        cmocka_unit_test(test_overlapping_tensors),
        cmocka_unit_test(test_hole_in_data),
        cmocka_unit_test(test_empty_file_valid),
        cmocka_unit_test(test_valid_layout),
        cmocka_unit_test(test_find_many),
        cmocka_unit_test(test_scalar_tensor),
        cmocka_unit_test(test_zero_element_tensor),
        cmocka_unit_test(test_open_file_errors),
        cmocka_unit_test(test_open_file_valid_unaligned),
        cmocka_unit_test(test_read_f16),
#ifdef __FLT16_MAX__
        cmocka_unit_test(test_read_f16_exhaustive),
#endif
        cmocka_unit_test(test_read_bf16_f64),
        cmocka_unit_test(test_read_f32_not_float),
        cmocka_unit_test(test_dtype_table),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_write_empty),
        cmocka_unit_test(test_writer_invalid_args),
        cmocka_unit_test(test_write_unwritable_path),
        cmocka_unit_test(test_write_replaces_existing),
        cmocka_unit_test(test_corruptions),
    };
    return cmocka_run_group_tests(tests, make_tmpdir, remove_tmpdir);
}
