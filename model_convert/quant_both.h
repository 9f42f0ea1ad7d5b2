/* q8_kernel.h instantiated for both types with the ISA macros quant.c defines: q8 as QK_NAME_Q8 (quants
 * in [-127, 127], divisor 127) and q4 as QK_NAME_Q4 (quants in [-8, 7], divisor 8; cv_quantize_q4_row). */
#define QK_NAME QK_NAME_Q8
#define QK_QMIN (-127.0)
#define QK_QMAX 127.0
#define QK_BASE 127.0
#define QK_SYMMETRIC 1
#include "q8_kernel.h"
#undef QK_NAME
#undef QK_QMIN
#undef QK_QMAX
#undef QK_BASE
#undef QK_SYMMETRIC
#define QK_NAME QK_NAME_Q4
#define QK_QMIN (-8.0)
#define QK_QMAX 7.0
#define QK_BASE 8.0
#define QK_SYMMETRIC 0
#include "q8_kernel.h"
#undef QK_NAME
#undef QK_QMIN
#undef QK_QMAX
#undef QK_BASE
#undef QK_SYMMETRIC
#undef QK_NAME_Q8
#undef QK_NAME_Q4
/* the instruction set's macros: each instantiation in quant.c defines its own */
#undef QK_TARGET
#undef QK_V
#undef QK_LANES
#undef QK_SPLAT
#undef QK_LOAD
#undef QK_STORE
#undef QK_ADD
#undef QK_SUB
#undef QK_MUL
#undef QK_DIV
#undef QK_ABS
#undef QK_MIN
#undef QK_MAX
#undef QK_ROUND
#undef QK_TO_FLOAT
#undef QK_SEL_LT
#undef QK_SEL_GT
#undef QK_FMA
#undef QK_FNMA
#undef QK_ALL_LT
#undef QK_LOAD_BLOCKS
#undef QK_STORE_QUANTS
#undef QK_GROUP
#undef QK_CLAMP_SYMMETRIC
