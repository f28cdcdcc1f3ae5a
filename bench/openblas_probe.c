/* openblas_probe.c — which OpenBLAS tfm links: configuration, run-time kernel family,
 * threading. Printed in the benchmark header. */
#include <stdio.h>

char *openblas_get_config(void);
char *openblas_get_corename(void);
int openblas_get_num_threads(void);
int openblas_get_parallel(void); /* 0 sequential, 1 pthreads, 2 OpenMP */

int main(void) {
    static const char *par[] = {"sequential", "pthreads", "OpenMP"};
    int p = openblas_get_parallel();
    printf("%s; core %s, %s threading, %d threads", openblas_get_config(),
           openblas_get_corename(), p >= 0 && p <= 2 ? par[p] : "?", openblas_get_num_threads());
    return 0;
}
