/* test_forward.c — every fixture case of tests/fixtures/forward_cases.txt (written by
 * scripts/make_fixtures.py with PyTorch): the module's output and attention weights
 * must match PyTorch's within the case's tolerances, through the library and through
 * the `tfm forward` command; and every case of grad_cases.txt (written by
 * scripts/make_grad_fixtures.py with PyTorch autograd): the gradients of every input
 * and parameter, through tfm_forward_train/tfm_backward and `tfm forward --grad-output`. */
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

/* Every tensor of `exp` must be in `got` (a result file) and match. */
static bool compare_files(const st_file *got, const st_file *exp, const fixture_case *c) {
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
    return ok;
}

/* Run `tfm forward` on a case (with --grad-output when grad) and compare its output
 * file with the expected file(s). */
static void run_cli_case(const fixture_case *c, bool grad) {
    char model[1024], input[1024], dy[1024], output[1024], cmd[8192], name[256];
    snprintf(name, sizeof name, "%s.model.safetensors", c->name);
    fixture_path(model, sizeof model, name);
    snprintf(name, sizeof name, "%s.input.safetensors", c->name);
    fixture_path(input, sizeof input, name);
    snprintf(name, sizeof name, "%s.grad_output.safetensors", c->name);
    fixture_path(dy, sizeof dy, name);
    snprintf(name, sizeof name, "%s.%s.out.safetensors", c->name, grad ? "grad" : "fwd");
    tmp_path(output, sizeof output, name);
    snprintf(cmd, sizeof cmd, "%s forward --model %s --input %s --output %s%s%s", TFM_CLI, model,
             input, output, grad ? " --grad-output " : "", grad ? dy : "");
    assert_int_equal(run_command(cmd), 0);
    st_file *got, *exp, *exp_grad = NULL;
    if (st_open(output, &got) != TFM_OK) fail_msg("%s", tfm_last_error());
    open_case(c, "expected", &exp);
    bool ok = compare_files(got, exp, c);
    size_t want = st_count(exp);
    if (grad) {
        open_case(c, "expected_grad", &exp_grad);
        ok = compare_files(got, exp_grad, c) && ok;
        want += st_count(exp_grad);
    }
    if (st_count(got) != want) {
        printf("FAIL %s: CLI wrote %zu tensors, expected %zu\n", c->name, st_count(got), want);
        ok = false;
    }
    st_close(got);
    st_close(exp);
    st_close(exp_grad);
    remove(output);
    assert_true(ok);
}

static void test_case_cli(void **state) { run_cli_case(*state, false); }
static void test_grad_cli(void **state) { run_cli_case(*state, true); }


/* Gradients through the library: forward_train, backward, every expected grad.*. */
static void test_grad_library(void **state) {
    const fixture_case *c = *state;
    char name[256], path[1024];
    snprintf(name, sizeof name, "%s.model.safetensors", c->name);
    tfm_module *m;
    if (tfm_module_load(fixture_path(path, sizeof path, name), &m) != TFM_OK)
        fail_msg("%s", tfm_last_error());
    st_file *in, *exp, *dyf;
    open_case(c, "input", &in);
    open_case(c, "expected_grad", &exp);
    open_case(c, "grad_output", &dyf);
    forward_inputs fi;
    if (forward_inputs_read(in, tfm_module_config(m)->module, &fi) != TFM_OK)
        fail_msg("%s", tfm_last_error());
    const st_tensor *d = st_find(dyf, "output");
    assert_non_null(d);
    float *dy = malloc((size_t)d->numel * sizeof(float));
    assert_int_equal(st_read_f32(dyf, d, dy), TFM_OK);
    tfm_tensor dyt = {.data = dy, .dtype = TFM_F32, .ndim = d->ndim};
    for (int k = 0; k < d->ndim; k++) dyt.shape[k] = d->shape[k];
    tfm_outputs out;
    tfm_input_grads g;
    bool ok = true;
    for (int round = 0; round < 2 && ok; round++) { /* twice: zero_grad must reset */
        tfm_zero_grad(m);
        if (tfm_forward_train(m, &fi.in, &out) != TFM_OK) fail_msg("%s: %s", c->name, tfm_last_error());
        if (tfm_backward(m, &dyt, &g) != TFM_OK) fail_msg("%s: %s", c->name, tfm_last_error());
        for (size_t i = 0; i < st_count(exp); i++) {
            tfm_tensor tmp;
            const char *gname = st_at(exp, i)->name;
            ok = compare_tensor(gname, find_grad(m, &g, gname, &tmp), exp, c) && ok;
        }
    }
    free(dy);
    forward_inputs_free(&fi);
    st_close(in);
    st_close(exp);
    st_close(dyf);
    tfm_module_free(m);
    assert_true(ok);
}

static fixture_case *read_manifest(const char *file, size_t *count) {
    char path[1024], line[512];
    FILE *f = fopen(fixture_path(path, sizeof path, file), "r");
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

/* Two tests (library, CLI) per case of a manifest, appended to tests/names. */
static size_t add_cases(struct CMUnitTest *tests, char (*names)[160], size_t at,
                        fixture_case *cases, size_t n, bool grad) {
    for (size_t i = 0; i < n; i++) {
        snprintf(names[at], sizeof names[0], "%s%s", cases[i].name, grad ? " [grad]" : "");
        tests[at] = (struct CMUnitTest){names[at], grad ? test_grad_library : test_case_library,
                                        NULL, NULL, &cases[i]};
        at++;
        snprintf(names[at], sizeof names[0], "%s%s [cli]", cases[i].name, grad ? " [grad]" : "");
        tests[at] = (struct CMUnitTest){names[at], grad ? test_grad_cli : test_case_cli, NULL,
                                        NULL, &cases[i]};
        at++;
    }
    return at;
}

int main(void) {
    size_t nf = 0, ng = 0;
    fixture_case *fwd = read_manifest("forward_cases.txt", &nf);
    fixture_case *grad = read_manifest("grad_cases.txt", &ng);
    if (!fwd || nf == 0 || !grad || ng == 0) {
        printf("no fixture cases found under %s\n", TFM_FIXTURES);
        return 1;
    }
    size_t total = 2 * (nf + ng);
    struct CMUnitTest *tests = calloc(total, sizeof *tests);
    char (*names)[160] = calloc(total, sizeof *names);
    if (!tests || !names) return 1;
    size_t at = add_cases(tests, names, 0, fwd, nf, false);
    at = add_cases(tests, names, at, grad, ng, true);
    int failed = _cmocka_run_group_tests("conformance", tests, at, NULL, NULL);
    free(tests);
    free(names);
    free(fwd);
    free(grad);
    return failed;
}
