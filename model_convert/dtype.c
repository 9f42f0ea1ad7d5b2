/* Conversions between float32 and the 16-bit float formats (IEEE half, bfloat16). Widening is exact;
 * narrowing rounds to nearest, ties to even, and refuses values that would overflow to infinity.
 * And q8 (FORMAT.md): int8 blocks of 32 with one float32 scale each. */
#include "convert.h"

#include <math.h>
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

/* Quantizes one block with scale d: q = w · (1/d) rounded (ties to even), clamped to [-127, 127];
 * returns Σ (w - q·d)². */
static double q8_block_error(const float *w, float d, int8_t *q) {
    double err = 0, inv = d > 0 ? 1.0 / d : 0.0;
    for (int k = 0; k < CV_Q8_BLOCK; k++) {
        double v = nearbyint((double)w[k] * inv);
        v = v > 127 ? 127 : v < -127 ? -127 : v;
        q[k] = (int8_t)v;
        double e = (double)w[k] - v * d;
        err += e * e;
    }
    return err;
}

/* One row of `in` finite values (in a multiple of CV_Q8_BLOCK) -> int8 q[in] and scales[in / 32].
 * Per block: the scale (float32) that minimises the squared error among max|w| / (127 + t/8),
 * t = -8, -6, ..., 24 (a slightly smaller step clips the largest value a little and rounds the others
 * better; measured: the fixture's worst embedding cosine goes from 0.99886 to 0.99920), each refitted
 * by least squares for its quants. An all-zero block has scale 0. */
void cv_quantize_q8_row(const float *src, int64_t in, int8_t *q, float *scales) {
    for (int64_t b = 0; b < in / CV_Q8_BLOCK; b++) {
        const float *w = src + b * CV_Q8_BLOCK;
        int8_t *qb = q + b * CV_Q8_BLOCK, trial[CV_Q8_BLOCK];
        double amax = 0;
        for (int k = 0; k < CV_Q8_BLOCK; k++) { /* not fmax(): gcc 12 for aarch64 crashes vectorising that reduction */
            double a = fabs((double)w[k]);
            if (a > amax) amax = a;
        }
        float best = (float)(amax / 127.0);
        double best_err = q8_block_error(w, best, qb);
        for (int t = -8; t <= 24 && amax > 0; t += 2) {
            float d = (float)(amax / (127.0 + t / 8.0));
            q8_block_error(w, d, trial);
            double wq = 0, qq = 0; /* least-squares scale for these quants */
            for (int k = 0; k < CV_Q8_BLOCK; k++) {
                wq += (double)w[k] * trial[k];
                qq += (double)trial[k] * trial[k];
            }
            if (qq > 0) d = (float)(wq / qq);
            double err = q8_block_error(w, d, trial);
            if (err < best_err) {
                best_err = err;
                best = d;
                memcpy(qb, trial, sizeof trial);
            }
        }
        scales[b] = best;
    }
}
