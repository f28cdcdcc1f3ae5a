/* test_fuzz_regressions.c — every input the fuzzers ever crashed on, and their seed
 * corpus, fed through the fuzz targets' own code (compiled in below) by the ordinary
 * build and the sanitizer build of the suite.
 *
 *   tests/fixtures/fuzz/<target>/    inputs that once crashed <target> (a finding of
 *                                    fuzz/run.sh, kept after the fix)
 *   fuzz/corpus/<target>/            the committed seeds
 *
 * Each file must go through without a crash or a broken invariant (the targets abort on
 * those), and the entry point it reaches must answer with a clean status: a known
 * tfm_status, with a message whenever it is not TFM_OK. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The three targets, each entry point renamed; their custom mutators are libFuzzer's
 * business only. */
#define FUZZ_NO_MUTATOR
#define LLVMFuzzerTestOneInput fuzz_safetensors_one
#include "../fuzz/fuzz_safetensors.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_forward_input_one
#define LLVMFuzzerInitialize fuzz_forward_input_init
#include "../fuzz/fuzz_forward_input.c"
#undef LLVMFuzzerTestOneInput
#undef LLVMFuzzerInitialize
#define LLVMFuzzerTestOneInput fuzz_tsv_one
#include "../fuzz/fuzz_tsv.c"
#undef LLVMFuzzerTestOneInput

#define FUZZ_CORPUS TFM_FIXTURES "/../../fuzz/corpus"
#define FUZZ_REGRESSIONS TFM_FIXTURES "/fuzz"

static void clean_status(tfm_status st, const char *file) {
    if (st < TFM_OK || st > TFM_ERR_UNSUPPORTED) fail_msg("%s: status %d is no tfm_status", file, (int)st);
    if (st != TFM_OK && tfm_last_error()[0] == '\0')
        fail_msg("%s: status %d (%s) without a message", file, (int)st, tfm_status_string(st));
}

/* The statuses the targets' entry points give for one input. */
static void check_safetensors_status(const uint8_t *data, size_t n, const char *file) {
    st_file *f;
    tfm_status st = st_open_memory(data, n, file, &f);
    clean_status(st, file);
    if (st != TFM_OK) return;
    tfm_module *m;
    st = module_load_file(f, &m);
    clean_status(st, file);
    if (st == TFM_OK) tfm_module_free(m);
    st_close(f);
}

static void check_forward_status(const uint8_t *data, size_t n, const char *file) {
    st_file *f;
    if (n < 1) return;
    tfm_status st = st_open_memory(data + 1, n - 1, file, &f);
    clean_status(st, file);
    if (st != TFM_OK) return;
    forward_inputs fi;
    st = forward_inputs_read(f, tfm_module_config(models[(data[0] & 0x7f) % N_MODELS])->module, &fi);
    clean_status(st, file);
    forward_inputs_free(&fi);
    st_close(f);
}

static void check_tsv_status(const uint8_t *data, size_t n, const char *file) {
    tsv_dataset d;
    clean_status(tsv_read_memory(data, n, file, NULL, &d), file);
    tsv_free(&d);
}

typedef struct target {
    const char *name;
    int (*one)(const uint8_t *, size_t);
    void (*status)(const uint8_t *, size_t, const char *);
} target;

static const target targets[] = {
    {"fuzz_safetensors", fuzz_safetensors_one, check_safetensors_status},
    {"fuzz_forward_input", fuzz_forward_input_one, check_forward_status},
    {"fuzz_tsv", fuzz_tsv_one, check_tsv_status},
};

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    assert_int_equal(ferror(f), 0);
    fclose(f);
    *n = len;
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

/* Every regular file in dir (absent dir: none), through t. Returns the count. */
static int run_dir(const target *t, const char *dir) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    if (n < 0) return 0;
    int count = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        if (names[i]->d_name[0] != '.') {
            snprintf(path, sizeof path, "%s/%s", dir, names[i]->d_name);
            size_t len;
            uint8_t *data = read_all(path, &len);
            /* an exact-size copy, so that reading past the end is caught (ASan build) */
            uint8_t *exact = malloc(len ? len : 1);
            assert_non_null(exact);
            memcpy(exact, data, len);
            free(data);
            assert_int_equal(t->one(exact, len), 0);
            t->status(exact, len, path);
            free(exact);
            count++;
        }
        free(names[i]);
    }
    free(names);
    return count;
}

static void test_regressions_and_seeds(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof targets / sizeof *targets; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", FUZZ_REGRESSIONS, targets[i].name);
        int regressions = run_dir(&targets[i], dir);
        snprintf(dir, sizeof dir, "%s/%s", FUZZ_CORPUS, targets[i].name);
        int seeds = run_dir(&targets[i], dir);
        printf("  %-20s %3d regression inputs, %3d seeds\n", targets[i].name, regressions, seeds);
        assert_true(seeds > 0); /* the corpus is where this test expects it */
    }
}

static int setup(void **state) {
    (void)state;
    int argc = 0;
    char **argv = NULL;
    return fuzz_forward_input_init(&argc, &argv);
}

static int teardown(void **state) {
    (void)state;
    for (int i = 0; i < N_MODELS; i++) tfm_module_free(models[i]);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_regressions_and_seeds)};
    return cmocka_run_group_tests(tests, setup, teardown);
}
