/* Conversions between float32 and the 16-bit float formats (IEEE half, bfloat16). Widening is exact;
 * narrowing rounds to nearest, ties to even, and refuses values that would overflow to infinity. */
#include "convert.h"

#include <string.h>

float cv_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
    if (exp == 0x1F) bits = sign | 0x7F800000u | (man << 13); /* inf / nan */
    else if (exp != 0) bits = sign | ((exp + 112) << 23) | (man << 13);
    else if (man == 0) bits = sign;
    else { /* subnormal: normalise */
        int e = -1;
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3FF) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float cv_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* float32 -> float16, round to nearest even; -1 when the value does not fit (|x| >= 65520). */
int cv_f32_to_f16(float f, uint16_t *out) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7FFFFFFFu;
    if (a >= 0x477FF000u) return -1; /* rounds to infinity (or is inf/nan) */
    if (a < 0x38800000u) {          /* below 2^-14: f16 subnormal (or zero) */
        uint32_t exp = a >> 23;
        if (exp < 102) { *out = sign; return 0; } /* below half the smallest subnormal */
        uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
        uint32_t shift = 126 - exp;  /* value / 2^-24 = mant / 2^shift */
        uint32_t h = mant >> shift, rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        *out = (uint16_t)(sign | h);
        return 0;
    }
    uint32_t h = ((a >> 23) - 112) << 10 | ((a >> 13) & 0x3FF);
    uint32_t rem = a & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    *out = (uint16_t)(sign | h);
    return 0;
}

/* float32 -> bfloat16, round to nearest even; -1 when it would round to infinity. */
int cv_f32_to_bf16(float f, uint16_t *out) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) >= 0x7F7F8000u) return -1;
    x += 0x7FFFu + ((x >> 16) & 1);
    *out = (uint16_t)(x >> 16);
    return 0;
}
