/* attn_tiled_generic.c — the tiled attention kernels for the baseline instruction set
 * (4-float vectors: SSE2 on x86-64, NEON or scalar code elsewhere). */
#define ATT_VW 4
#define ATT_NV 2
#define ATT_MR 4
#define ATT_FN(x) x##_generic
#include "kernels/attn_tiled_impl.h"
