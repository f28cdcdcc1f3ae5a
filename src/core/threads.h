/* threads.h — OpenMP helpers that also build without OpenMP. */
#ifndef TFM_CORE_THREADS_H
#define TFM_CORE_THREADS_H

#ifdef _OPENMP
#include <omp.h>
static inline int tfm_max_threads(void) { return omp_get_max_threads(); }
static inline int tfm_thread_id(void) { return omp_get_thread_num(); }
#else
static inline int tfm_max_threads(void) { return 1; }
static inline int tfm_thread_id(void) { return 0; }
#endif

#endif
