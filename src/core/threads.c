/* threads.c — tfm_set_num_threads. */
#include "core/threads.h"

#include "tfm.h"

void tfm_set_num_threads(int n) {
#ifdef _OPENMP
    static int default_threads = 0;
    if (default_threads == 0) default_threads = omp_get_max_threads();
    omp_set_num_threads(n > 0 ? n : default_threads);
#else
    (void)n;
#endif
}
