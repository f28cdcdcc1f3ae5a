/* test_forward.c — every fixture case of tests/fixtures/forward_cases.txt (written by
 * scripts/make_fixtures.py with PyTorch): the module's output and attention weights
 * must match PyTorch's within the case's tolerances, through the library and through
 * the `tfm forward` command. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/forward_io.h"
#include "io/safetensors.h"
#include "support/check.h"
#include "tfm.h"

typedef struct fixture_case {
    char name[128];
    double rtol, atol;
} fixture_case;

/* Compare `name` of a result file (or in-memory tensor) with the expected file. */
static bool compare_tensor(const char *name, const tfm_tensor *got, const st_file *exp,
                           const fixture_case *c) {
    const st_tensor *w = st_find(exp, name);
    char what[256];
    snprintf(what, sizeof what, "%s: %s", c->name, name);
    if (!w) {
        printf("FAIL %s: not in the expected file\n", what);
        return false;
    }
    if (!got || !got->data) {
        printf("FAIL %s: tfm gave none\n", what);
        return false;
    }
    bool same = got->ndim == w->ndim;
    for (int d = 0; same && d < w->ndim; d++) same = got->shape[d] == w->shape[d];
    if (!same) {
        printf("FAIL %s: shape differs (ndim %d vs %d)\n", what, got->ndim, w->ndim);
        return false;
    }
    float *want = malloc((size_t)(w->numel ? w->numel : 1) * sizeof(float));
    bool ok = want && st_read_f32(exp, w, want) == TFM_OK &&
              close_enough(what, got->data, want, (size_t)w->numel, c->rtol, c->atol);
    free(want);
    return ok;
}

static void open_case(const fixture_case *c, const char *part, st_file **f) {
    char name[256], path[1024];
    snprintf(name, sizeof name, "%s.%s.safetensors", c->name, part);
    fixture_path(path, sizeof path, name);
    if (st_open(path, f) != TFM_OK) fail_msg("%s", tfm_last_error());
}

static void test_case_library(void **state) {
    const fixture_case *c = *state;
    char name[256], path[1024];
    snprintf(name, sizeof name, "%s.model.safetensors", c->name);
    tfm_module *m;
    if (tfm_module_load(fixture_path(path, sizeof path, name), &m) != TFM_OK)
        fail_msg("%s", tfm_last_error());
    st_file *in, *exp;
    open_case(c, "input", &in);
    open_case(c, "expected", &exp);
    forward_inputs fi;
    if (forward_inputs_read(in, tfm_module_config(m)->module, &fi) != TFM_OK)
        fail_msg("%s", tfm_last_error());
    tfm_outputs out;
    if (tfm_forward(m, &fi.in, &out) != TFM_OK) fail_msg("%s: %s", c->name, tfm_last_error());
    bool ok = compare_tensor("output", &out.output, exp, c);
    if (st_find(exp, "attn_weights"))
        ok = compare_tensor("attn_weights", &out.attn_weights, exp, c) && ok;
    else
        ok = ok && out.attn_weights.data == NULL;
    /* A second call reuses the workspace and must give the same numbers. */
    if (ok) {
        ok = tfm_forward(m, &fi.in, &out) == TFM_OK && compare_tensor("output", &out.output, exp, c);
        if (!ok) printf("FAIL %s: the second forward differs\n", c->name);
    }
    forward_inputs_free(&fi);
    st_close(in);
    st_close(exp);
    tfm_module_free(m);
    assert_true(ok);
}

/* The same case through `tfm forward`, reading its output file back. */
static void test_case_cli(void **state) {
    const fixture_case *c = *state;
    char model[1024], input[1024], output[1024], cmd[4096], n1[256], n2[256];
    snprintf(n1, sizeof n1, "%s.model.safetensors", c->name);
    snprintf(n2, sizeof n2, "%s.input.safetensors", c->name);
    snprintf(cmd, sizeof cmd, "%s.out.safetensors", c->name);
    tmp_path(output, sizeof output, cmd);
    snprintf(cmd, sizeof cmd, "%s forward --model %s --input %s --output %s", TFM_CLI,
             fixture_path(model, sizeof model, n1), fixture_path(input, sizeof input, n2), output);
    assert_int_equal(run_command(cmd), 0);
    st_file *got, *exp;
    if (st_open(output, &got) != TFM_OK) fail_msg("%s", tfm_last_error());
    open_case(c, "expected", &exp);
    bool ok = true;
    for (size_t i = 0; i < st_count(exp); i++) {
        const st_tensor *w = st_at(exp, i);
        const st_tensor *g = st_find(got, w->name);
        if (!g) {
            printf("FAIL %s: '%s' missing from the CLI output\n", c->name, w->name);
            ok = false;
            continue;
        }
        float *buf = malloc((size_t)(g->numel ? g->numel : 1) * sizeof(float));
        assert_non_null(buf);
        assert_int_equal(st_read_f32(got, g, buf), TFM_OK);
        tfm_tensor t = {.data = buf, .dtype = TFM_F32, .ndim = g->ndim};
        for (int d = 0; d < g->ndim && d < TFM_MAX_DIMS; d++) t.shape[d] = g->shape[d];
        ok = compare_tensor(w->name, &t, exp, c) && ok;
        free(buf);
    }
    if (st_count(got) != st_count(exp)) {
        printf("FAIL %s: CLI wrote %zu tensors, expected %zu\n", c->name, st_count(got), st_count(exp));
        ok = false;
    }
    st_close(got);
    st_close(exp);
    remove(output);
    assert_true(ok);
}

static fixture_case *read_manifest(size_t *count) {
    char path[1024], line[512];
    FILE *f = fopen(fixture_path(path, sizeof path, "forward_cases.txt"), "r");
    if (!f) return NULL;
    size_t n = 0, cap = 0;
    fixture_case *cases = NULL;
    while (fgets(line, sizeof line, f)) {
        fixture_case c;
        if (line[0] == '#' || sscanf(line, "%127s %lf %lf", c.name, &c.rtol, &c.atol) != 3) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            cases = realloc(cases, cap * sizeof *cases);
            if (!cases) break;
        }
        cases[n++] = c;
    }
    fclose(f);
    *count = cases ? n : 0;
    return cases;
}

int main(void) {
    size_t n = 0;
    fixture_case *cases = read_manifest(&n);
    if (!cases || n == 0) {
        printf("no fixture cases found under %s\n", TFM_FIXTURES);
        return 1;
    }
    struct CMUnitTest *tests = calloc(2 * n, sizeof *tests);
    char (*names)[160] = calloc(2 * n, sizeof *names);
    if (!tests || !names) return 1;
    for (size_t i = 0; i < n; i++) {
        snprintf(names[2 * i], sizeof names[0], "%s", cases[i].name);
        snprintf(names[2 * i + 1], sizeof names[0], "%s [cli]", cases[i].name);
        tests[2 * i] = (struct CMUnitTest){names[2 * i], test_case_library, NULL, NULL, &cases[i]};
        tests[2 * i + 1] = (struct CMUnitTest){names[2 * i + 1], test_case_cli, NULL, NULL, &cases[i]};
    }
    int failed = _cmocka_run_group_tests("forward_fixtures", tests, 2 * n, NULL, NULL);
    free(tests);
    free(names);
    free(cases);
    return failed;
}
