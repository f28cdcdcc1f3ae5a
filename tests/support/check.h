/* check.h — shared test helpers: tolerant comparison that fails loudly, fixtures,
 * temporary files. */
#ifndef TFM_TEST_CHECK_H
#define TFM_TEST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tfm.h"

/* |got − want| ≤ atol + rtol·|want| elementwise. On failure, prints the tensor name,
 * the worst index, both values and the tolerance, and returns false. NaN in either
 * fails (the fixtures hold no NaN: tfm defines every value). */
bool close_enough(const char *what, const float *got, const float *want, size_t n, double rtol,
                  double atol);

/* A path under the build's temporary directory: "<tmpdir>/<name>". Returns buf. */
const char *tmp_path(char *buf, size_t size, const char *name);
/* TFM_FIXTURES "/" name. Returns buf. */
const char *fixture_path(char *buf, size_t size, const char *name);
/* Run a command through the shell; its exit status (or -1). */
int run_command(const char *cmd);

/* The gradient named `name` ("grad.query", "grad.layers.0.linear1.weight") after
 * tfm_backward: an input's from g, a parameter's from m into *tmp; NULL if none. */
const tfm_tensor *find_grad(const tfm_module *m, const tfm_input_grads *g, const char *name,
                            tfm_tensor *tmp);

#endif
