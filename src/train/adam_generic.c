/* adam_generic.c — the Adam element loop for the baseline instruction set; body in
 * adam_impl.h. */
#define ADAM_FN(x) x##_generic
#include "train/adam_impl.h"
