/* status.c — status codes and the thread-local error message. */
#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TFM_ERROR_LEN 1024

static _Thread_local char last_error[TFM_ERROR_LEN];

const char *tfm_last_error(void) { return last_error; }

void tfm_clear_error(void) { last_error[0] = '\0'; }

const char *tfm_status_string(tfm_status s) {
    switch (s) {
    case TFM_OK: return "ok";
    case TFM_ERR_INVALID_ARG: return "invalid argument";
    case TFM_ERR_NOMEM: return "out of memory";
    case TFM_ERR_IO: return "input/output error";
    case TFM_ERR_FORMAT: return "malformed file";
    case TFM_ERR_SHAPE: return "shape mismatch";
    case TFM_ERR_MISSING: return "missing tensor";
    case TFM_ERR_UNEXPECTED: return "unexpected tensor";
    case TFM_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

tfm_status tfm_error(tfm_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

tfm_status tfm_error_context(tfm_status s, const char *fmt, ...) {
    char prefix[TFM_ERROR_LEN];
    char old[TFM_ERROR_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, last_error, sizeof old);
    /* Truncation of an over-long message is acceptable. */
    size_t k = strlen(prefix);
    if (k > sizeof last_error - 3) k = sizeof last_error - 3;
    memcpy(last_error, prefix, k);
    memcpy(last_error + k, ": ", 2);
    size_t rest = sizeof last_error - k - 3;
    size_t n = strlen(old);
    if (n > rest) n = rest;
    memcpy(last_error + k + 2, old, n);
    last_error[k + 2 + n] = '\0';
    return s;
}
