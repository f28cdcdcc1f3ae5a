/* status.h — setting the thread-local error message behind tfm_last_error(). */
#ifndef TFM_CORE_STATUS_H
#define TFM_CORE_STATUS_H

#include "tfm.h"

/* Record a formatted message for tfm_last_error() and return `s`, so that a
 * failure reads `return tfm_error(TFM_ERR_SHAPE, "query: expected ...", ...);` */
tfm_status tfm_error(tfm_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Prefix the current message with "context: " (used as errors travel up). */
tfm_status tfm_error_context(tfm_status s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void tfm_clear_error(void);

/* Evaluate `expr`; return its status from the calling function if it failed. */
#define TFM_TRY(expr)                                                                   \
    do {                                                                                \
        tfm_status tfm_try_s_ = (expr);                                                 \
        if (tfm_try_s_ != TFM_OK) return tfm_try_s_;                                    \
    } while (0)

#endif
