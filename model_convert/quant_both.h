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
