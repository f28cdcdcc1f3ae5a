/* check.c — shared test helpers. */
#include "support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

bool close_enough(const char *what, const float *got, const float *want, size_t n, double rtol,
                  double atol) {
    size_t worst = 0;
    double worst_excess = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (isnan(g) || isnan(w)) {
            printf("FAIL %s[%zu]: got %.9g, want %.9g (NaN)\n", what, i, g, w);
            return false;
        }
        double excess = fabs(g - w) - (atol + rtol * fabs(w));
        if (excess > worst_excess) worst_excess = excess, worst = i;
    }
    if (n && worst_excess > 0) {
        printf("FAIL %s[%zu]: got %.9g, want %.9g, |diff| %.3g > atol %.1g + rtol %.1g·|want|\n",
               what, worst, got[worst], want[worst], fabs((double)got[worst] - want[worst]), atol,
               rtol);
        return false;
    }
    return true;
}

static char tmp_dir[512];

static void remove_tmp_dir(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_dir);
}

const char *tmp_path(char *buf, size_t size, const char *name) {
    const char *dir = tmp_dir;
    if (!tmp_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(tmp_dir, sizeof tmp_dir, "%s/tfm-test-%d", t && *t ? t : "/tmp", (int)getpid());
        mkdir(tmp_dir, 0700);
        atexit(remove_tmp_dir);
    }
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

const char *fixture_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", TFM_FIXTURES, name);
    return buf;
}

int run_command(const char *cmd) {
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st)) return -1;
    return WEXITSTATUS(st);
}

const tfm_tensor *find_grad(const tfm_module *m, const tfm_input_grads *g, const char *name,
                            tfm_tensor *tmp) {
    const struct {
        const char *name;
        const tfm_tensor *t;
    } inputs[] = {{"grad.query", &g->query}, {"grad.key", &g->key}, {"grad.value", &g->value},
                  {"grad.src", &g->src},     {"grad.tgt", &g->tgt}, {"grad.memory", &g->memory}};
    for (size_t i = 0; i < sizeof inputs / sizeof *inputs; i++)
        if (!strcmp(name, inputs[i].name)) return inputs[i].t;
    if (strncmp(name, "grad.", 5)) return NULL;
    for (size_t i = 0; i < tfm_module_num_params(m); i++) {
        const char *pname;
        if (tfm_module_grad(m, i, &pname, tmp) == TFM_OK && !strcmp(name + 5, pname)) return tmp;
    }
    return NULL;
}
