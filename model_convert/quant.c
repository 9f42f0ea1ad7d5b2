/* Block quantization at conversion speed.
 *
 * cv_quantize_q8_row (dtype.c) is the definition of q8's scale search; the kernel here computes the
 * same thing for many blocks side by side, one block per double lane, so every lane performs exactly
 * the operations of the scalar code in the same order (no reassociation, no fused multiply-add):
 * the scales and quants are bit-identical, which tests/test_quant.c checks against the scalar code.
 * One source is compiled for the baseline ISA and, on x86-64, again for AVX2 and AVX-512F; the CPU
 * picks at run time.
 *
 * Quantized types are described by cv_quant_type entries (cv_quant_find), so that a new type (4-bit)
 * adds an entry with its own block kernel and strip encoder without touching the converter's
 * streaming code. */
#include "convert.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF /* bit-identity needs separate roundings (the Makefile also says -ffp-contract=off) */
#endif

#define QK_CAT_(a, b) a##b
#define QK_CAT(a, b) QK_CAT_(a, b)

#if defined(__GNUC__) || defined(__clang__)

/* Baseline: GNU vector extensions, two doubles (SSE2 on x86-64, NEON on aarch64). Rounding by adding
 * and subtracting 1.5·2^52, exact for |x| <= 127 (QK_QUANT clamps first), ties to even like nearbyint
 * in the default rounding mode. */
typedef double qk_v2 __attribute__((vector_size(16)));
typedef long long qk_m2 __attribute__((vector_size(16)));
typedef float qk_f2 __attribute__((vector_size(8)));
static inline qk_v2 qk_sel2(qk_m2 m, qk_v2 a, qk_v2 b) { return (qk_v2)((m & (qk_m2)a) | (~m & (qk_m2)b)); }
static inline qk_v2 qk_load2(const double *p) { qk_v2 v; memcpy(&v, p, sizeof v); return v; }
static inline void qk_store2(double *p, qk_v2 a) { memcpy(p, &a, sizeof a); }
static inline int qk_all2(qk_m2 m) { return (m[0] & m[1]) != 0; }
#define QK_TARGET
#define QK_V qk_v2
#define QK_LANES 2
#define QK_SPLAT(x) ((qk_v2){ (x), (x) })
#define QK_LOAD(p) qk_load2(p)
#define QK_STORE(p, a) qk_store2((p), (a))
#define QK_ADD(a, b) ((a) + (b))
#define QK_SUB(a, b) ((a) - (b))
#define QK_MUL(a, b) ((a) * (b))
#define QK_DIV(a, b) ((a) / (b))
#define QK_ABS(a) ((qk_v2)((qk_m2)(a) & ~(qk_m2)QK_SPLAT(-0.0)))
#define QK_MIN(a, b) qk_sel2((qk_m2)((a) < (b)), (a), (b))
#define QK_MAX(a, b) qk_sel2((qk_m2)((a) > (b)), (a), (b))
#define QK_ROUND(a) (((a) + QK_SPLAT(6755399441055744.0)) - QK_SPLAT(6755399441055744.0))
#define QK_TO_FLOAT(a) __builtin_convertvector(__builtin_convertvector((a), qk_f2), qk_v2)
#define QK_SEL_LT(a, b, x, y) qk_sel2((qk_m2)((a) < (b)), (x), (y))
#define QK_SEL_GT(a, b, x, y) qk_sel2((qk_m2)((a) > (b)), (x), (y))
#define QK_FMA(a, b, c) ((a) * (b) + (c))
#define QK_FNMA(a, b, c) ((c) - (a) * (b))
#define QK_ALL_LT(a, b) qk_all2((qk_m2)((a) < (b)))
#define QK_NAME_Q8 q8_blocks_generic
#define QK_NAME_Q4 q4_blocks_generic
#include "quant_both.h"

#if defined(__x86_64__) && !defined(ABC_NO_SIMD) /* ABC_NO_SIMD: baseline only, as for the library */
#include <immintrin.h>

#define QK_ROUND_MODE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

/* Four blocks of 32 floats -> w[k] = (block 0..3)[k] as doubles: 4 x 4 transposes. */
static __attribute__((target("avx2"))) inline void qk_load_blocks_avx2(const float *src, __m256d *w) {
    for (int k0 = 0; k0 < CV_Q8_BLOCK; k0 += 4) {
        __m128 r0 = _mm_loadu_ps(src + k0), r1 = _mm_loadu_ps(src + CV_Q8_BLOCK + k0);
        __m128 r2 = _mm_loadu_ps(src + 2 * CV_Q8_BLOCK + k0), r3 = _mm_loadu_ps(src + 3 * CV_Q8_BLOCK + k0);
        _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
        w[k0] = _mm256_cvtps_pd(r0);
        w[k0 + 1] = _mm256_cvtps_pd(r1);
        w[k0 + 2] = _mm256_cvtps_pd(r2);
        w[k0 + 3] = _mm256_cvtps_pd(r3);
    }
}
/* four integral doubles in [-128, 127] -> four int8 */
static __attribute__((target("avx2"))) inline void qk_store_quants_avx2(int8_t *p, __m256d v) {
    const __m128i i32 = _mm256_cvtpd_epi32(v), i16 = _mm_packs_epi32(i32, i32);
    const int32_t bytes = _mm_cvtsi128_si32(_mm_packs_epi16(i16, i16));
    memcpy(p, &bytes, 4);
}

#define QK_TARGET __attribute__((target("avx2,fma")))
#define QK_V __m256d
#define QK_LANES 4
#define QK_SPLAT(x) _mm256_set1_pd(x)
#define QK_LOAD(p) _mm256_loadu_pd(p)
#define QK_STORE(p, a) _mm256_storeu_pd((p), (a))
#define QK_ADD(a, b) _mm256_add_pd((a), (b))
#define QK_SUB(a, b) _mm256_sub_pd((a), (b))
#define QK_MUL(a, b) _mm256_mul_pd((a), (b))
#define QK_DIV(a, b) _mm256_div_pd((a), (b))
#define QK_ABS(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), (a))
#define QK_MIN(a, b) _mm256_min_pd((a), (b))
#define QK_MAX(a, b) _mm256_max_pd((a), (b))
#define QK_ROUND(a) _mm256_round_pd((a), QK_ROUND_MODE)
#define QK_TO_FLOAT(a) _mm256_cvtps_pd(_mm256_cvtpd_ps(a))
#define QK_SEL_LT(a, b, x, y) _mm256_blendv_pd((y), (x), _mm256_cmp_pd((a), (b), _CMP_LT_OQ))
#define QK_SEL_GT(a, b, x, y) _mm256_blendv_pd((y), (x), _mm256_cmp_pd((a), (b), _CMP_GT_OQ))
#define QK_FMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define QK_FNMA(a, b, c) _mm256_fnmadd_pd((a), (b), (c))
#define QK_ALL_LT(a, b) (_mm256_movemask_pd(_mm256_cmp_pd((a), (b), _CMP_LT_OQ)) == 0xF)
#define QK_GROUP 4 /* 16 ymm registers */
#define QK_LOAD_BLOCKS(src, w) qk_load_blocks_avx2((src), (w))
#define QK_STORE_QUANTS(p, v) qk_store_quants_avx2((p), (v))
#define QK_NAME_Q8 q8_blocks_avx2
#define QK_NAME_Q4 q4_blocks_avx2
#include "quant_both.h"

/* Eight blocks of 32 floats -> w[k] = (block 0..7)[k] as doubles: 8 x 8 transposes. */
static __attribute__((target("avx2,avx512f"))) inline void qk_load_blocks_avx512(const float *src, __m512d *w) {
    for (int k0 = 0; k0 < CV_Q8_BLOCK; k0 += 8) {
        __m256 r[8], t[8], s[8];
        for (int l = 0; l < 8; l++) r[l] = _mm256_loadu_ps(src + l * CV_Q8_BLOCK + k0);
        for (int l = 0; l < 8; l += 2) {
            t[l] = _mm256_unpacklo_ps(r[l], r[l + 1]);
            t[l + 1] = _mm256_unpackhi_ps(r[l], r[l + 1]);
        }
        for (int h = 0; h < 8; h += 4) { /* rows h..h+3: columns c and c+4 in the two halves */
            s[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);
            s[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);
            s[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
            s[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
        }
        for (int c = 0; c < 4; c++) {
            w[k0 + c] = _mm512_cvtps_pd(_mm256_permute2f128_ps(s[c], s[c + 4], 0x20));
            w[k0 + c + 4] = _mm512_cvtps_pd(_mm256_permute2f128_ps(s[c], s[c + 4], 0x31));
        }
    }
}
/* eight integral doubles in [-128, 127] -> eight int8 */
static __attribute__((target("avx2,avx512f,avx512dq"))) inline void qk_store_quants_avx512(int8_t *p, __m512d v) {
    _mm_storel_epi64((__m128i *)(void *)p, _mm512_cvtepi64_epi8(_mm512_cvtpd_epi64(v)));
}

#define QK_TARGET __attribute__((target("avx2,avx512f,avx512dq")))
/* VRANGEPD imm 0b0010: the operand of smaller magnitude, with x's sign: sign(x)·min(|x|, m) */
#define QK_CLAMP_SYMMETRIC(x, m) _mm512_range_pd((x), _mm512_set1_pd(m), 0x02)
#define QK_V __m512d
#define QK_LANES 8
#define QK_SPLAT(x) _mm512_set1_pd(x)
#define QK_LOAD(p) _mm512_loadu_pd(p)
#define QK_STORE(p, a) _mm512_storeu_pd((p), (a))
#define QK_ADD(a, b) _mm512_add_pd((a), (b))
#define QK_SUB(a, b) _mm512_sub_pd((a), (b))
#define QK_MUL(a, b) _mm512_mul_pd((a), (b))
#define QK_DIV(a, b) _mm512_div_pd((a), (b))
#define QK_ABS(a) _mm512_castsi512_pd(_mm512_and_epi64(_mm512_castpd_si512(a), _mm512_set1_epi64(INT64_MAX)))
#define QK_MIN(a, b) _mm512_min_pd((a), (b))
#define QK_MAX(a, b) _mm512_max_pd((a), (b))
#define QK_ROUND(a) _mm512_roundscale_pd((a), QK_ROUND_MODE)
#define QK_TO_FLOAT(a) _mm512_cvtps_pd(_mm512_cvtpd_ps(a))
#define QK_SEL_LT(a, b, x, y) _mm512_mask_blend_pd(_mm512_cmp_pd_mask((a), (b), _CMP_LT_OQ), (y), (x))
#define QK_SEL_GT(a, b, x, y) _mm512_mask_blend_pd(_mm512_cmp_pd_mask((a), (b), _CMP_GT_OQ), (y), (x))
#define QK_FMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define QK_FNMA(a, b, c) _mm512_fnmadd_pd((a), (b), (c))
#define QK_ALL_LT(a, b) (_mm512_cmp_pd_mask((a), (b), _CMP_LT_OQ) == 0xFF)
#define QK_LOAD_BLOCKS(src, w) qk_load_blocks_avx512((src), (w))
#define QK_STORE_QUANTS(p, v) qk_store_quants_avx512((p), (v))
#define QK_NAME_Q8 q8_blocks_avx512
#define QK_NAME_Q4 q4_blocks_avx512
#include "quant_both.h"
#endif /* __x86_64__ */

#else /* no vector extensions: the scalar definition, block by block */

static void q8_blocks_generic(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    cv_quantize_q8_row(src, nblocks * CV_Q8_BLOCK, q, scales);
}
static void q4_blocks_generic(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    cv_quantize_q4_row(src, nblocks * CV_Q8_BLOCK, q, scales);
}

#endif

cv_q8_kernel cv_quant_kernel_for(uint32_t dtype, int level) {
    const int q4 = dtype == ABC_FILE_Q4;
    if (level == 0) return q4 ? q4_blocks_generic : q8_blocks_generic;
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(ABC_NO_SIMD)
    __builtin_cpu_init(); /* __builtin_cpu_supports also checks that the OS saves the AVX/AVX-512 state */
    if (level == 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return q4 ? q4_blocks_avx2 : q8_blocks_avx2;
    if (level == 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) return q4 ? q4_blocks_avx512 : q8_blocks_avx512;
#endif
    return NULL;
}

cv_q8_kernel cv_q8_kernel_for(int level) { return cv_quant_kernel_for(ABC_FILE_Q8, level); }

/* The best kernel of this CPU for q8 (slot 0) or q4 (slot 1), chosen once; threads racing here all
 * choose the same one. */
static void quantize_blocks(uint32_t dtype, const float *src, int64_t nblocks, int8_t *q, float *scales) {
    static cv_q8_kernel kernels[2];
    const int slot = dtype == ABC_FILE_Q4;
    cv_q8_kernel k = __atomic_load_n(&kernels[slot], __ATOMIC_RELAXED);
    if (!k) {
        for (int level = 2; level >= 0 && !k; level--) k = cv_quant_kernel_for(dtype, level);
        __atomic_store_n(&kernels[slot], k, __ATOMIC_RELAXED);
    }
    k(src, nblocks, q, scales);
}

void cv_quantize_q8_blocks(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    quantize_blocks(ABC_FILE_Q8, src, nblocks, q, scales);
}

void cv_quantize_q4_blocks(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    quantize_blocks(ABC_FILE_Q4, src, nblocks, q, scales);
}

/* ---- strip encoders ---- */

static size_t q8_strip_bytes(int64_t in) { return (size_t)(in / CV_Q8_BLOCK) * CV_Q8_STRIP_BLOCK_BYTES; }

/* rows (<= strips·16; the rows past them are padding, zero) of width in -> whole strips at dst
 * (FORMAT.md): row j's block b is quads at strip j/16, block b, [k/4][j%16][k%4], then its scale. */
static int q8_encode(const float *src, int64_t rows, int64_t in, int64_t strips, void *dst, char *err, size_t errsize) {
    const int64_t blocks = in / CV_Q8_BLOCK;
    int8_t *q = malloc((size_t)(rows * in) + 1);
    float *scales = malloc((size_t)(rows * blocks) * sizeof *scales + sizeof *scales);
    if (!q || !scales) {
        free(q);
        free(scales);
        return cv_fail(err, errsize, "out of memory");
    }
    cv_quantize_q8_blocks(src, rows * blocks, q, scales);
    unsigned char *out = dst;
    memset(out, 0, (size_t)strips * q8_strip_bytes(in));
    for (int64_t j = 0; j < rows; j++) { /* the host is little-endian (main.c checks) */
        unsigned char *strip = out + (j / CV_Q8_STRIP) * blocks * CV_Q8_STRIP_BLOCK_BYTES + (j % CV_Q8_STRIP) * 4;
        for (int64_t b = 0; b < blocks; b++) {
            unsigned char *block = strip + b * CV_Q8_STRIP_BLOCK_BYTES;
            const int8_t *qb = q + j * in + b * CV_Q8_BLOCK;
            for (int k4 = 0; k4 < CV_Q8_BLOCK / 4; k4++) memcpy(block + k4 * CV_Q8_STRIP * 4, qb + k4 * 4, 4);
            memcpy(block + CV_Q8_STRIP * CV_Q8_BLOCK, &scales[j * blocks + b], 4);
        }
    }
    free(q);
    free(scales);
    return 0;
}

static size_t q4_strip_bytes(int64_t in) { return (size_t)(in / CV_Q8_BLOCK) * CV_Q4_STRIP_BLOCK_BYTES; }

/* Each block turned so that its largest magnitude (the first, on ties) is negative: -8 reaches it
 * there, so the scale search has 8 steps on that side. Returns the sign applied (-1 or 1). Magnitudes
 * are compared as the bits of |w| (the same order for finite floats), which vectorises. */
static float q4_orient_block(const float *w, float *out) {
    uint32_t mag[CV_Q8_BLOCK], amax = 0;
    for (int k = 0; k < CV_Q8_BLOCK; k++) {
        memcpy(&mag[k], &w[k], 4);
        mag[k] &= 0x7FFFFFFFu;
        amax = mag[k] > amax ? mag[k] : amax;
    }
    int first = 0;
    while (first < CV_Q8_BLOCK - 1 && mag[first] != amax) first++;
    const float sign = amax != 0 && w[first] > 0 ? -1.0f : 1.0f;
    for (int k = 0; k < CV_Q8_BLOCK; k++) out[k] = sign * w[k];
    return sign;
}

/* q = clamp(w·inv, -8, 7) rounded to nearest, ties to even, in double: clamping first gives the same
 * integer (integral bounds, monotonic rounding), and below 2^51 adding and subtracting 1.5·2^52 rounds
 * exactly as nearbyint does in the default mode: no libm call, and no branch (two lanes at a time with
 * the vector extensions). */
static void q4_quantize_block(const float *w, double inv, int8_t *q) {
#if defined(__GNUC__) || defined(__clang__)
    const qk_v2 lo = { -8.0, -8.0 }, hi = { 7.0, 7.0 }, magic = { 6755399441055744.0, 6755399441055744.0 }, vinv = { inv, inv };
    for (int k = 0; k < CV_Q8_BLOCK; k += 2) {
        qk_v2 v = (qk_v2){ (double)w[k], (double)w[k + 1] } * vinv;
        v = qk_sel2((qk_m2)(v > hi), hi, v);
        v = qk_sel2((qk_m2)(v < lo), lo, v);
        v = (v + magic) - magic;
        q[k] = (int8_t)v[0];
        q[k + 1] = (int8_t)v[1];
    }
#else
    for (int k = 0; k < CV_Q8_BLOCK; k++) {
        double v = (double)w[k] * inv;
        v = v > 7.0 ? 7.0 : v < -8.0 ? -8.0 : v;
        q[k] = (int8_t)((v + 6755399441055744.0) - 6755399441055744.0);
    }
#endif
}

/* rows (<= strips·16, the rest zero padding) of width in -> whole q4 strips at dst (FORMAT.md). The
 * searched float32 scale is rounded to float16 and the block quantized again with that scale (what the
 * kernels multiply by); the orientation's sign goes into the stored scale. */
static int q4_encode(const float *src, int64_t rows, int64_t in, int64_t strips, void *dst, char *err, size_t errsize) {
    const int64_t blocks = in / CV_Q8_BLOCK;
    float *turned = malloc((size_t)(rows * in) * sizeof *turned + sizeof *turned);
    float *signs = malloc((size_t)(rows * blocks) * sizeof *signs + sizeof *signs);
    int8_t *q = malloc((size_t)(rows * in) + 1);
    float *scales = malloc((size_t)(rows * blocks) * sizeof *scales + sizeof *scales);
    int rc = 0;
    if (!turned || !signs || !q || !scales) {
        rc = cv_fail(err, errsize, "out of memory");
        goto done;
    }
    for (int64_t b = 0; b < rows * blocks; b++) signs[b] = q4_orient_block(src + b * CV_Q8_BLOCK, turned + b * CV_Q8_BLOCK);
    cv_quantize_q4_blocks(turned, rows * blocks, q, scales);
    unsigned char *out = dst;
    memset(out, 0, (size_t)strips * q4_strip_bytes(in));
    for (int64_t j = 0; j < rows; j++)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t at = j * blocks + b;
            uint16_t h;
            if (abc_f32_to_f16(scales[at], &h) != 0) {
                rc = cv_fail(err, errsize, "a q4 block scale (%g) is out of float16 range: weights this large need q8 or f32", (double)scales[at]);
                goto done;
            }
            const double d = abc_f16_to_f32(h), inv = d > 0 ? 1.0 / d : 0.0;
            int8_t qb[CV_Q8_BLOCK];
            q4_quantize_block(turned + at * CV_Q8_BLOCK, inv, qb);
            if (signs[at] < 0) h ^= 0x8000; /* the scale carries the orientation back */
            unsigned char *block = out + ((j / CV_Q8_STRIP) * blocks + b) * CV_Q4_STRIP_BLOCK_BYTES;
            const int row = (int)(j % CV_Q8_STRIP);
            for (int p = 0; p < CV_Q8_BLOCK / 8; p++)
                for (int t = 0; t < 4; t++)
                    block[(p * CV_Q8_STRIP + row) * 4 + t] = (unsigned char)((qb[8 * p + t] + 8) | (qb[8 * p + 4 + t] + 8) << 4);
            memcpy(block + CV_Q4_NIBBLE_BYTES + row * 2, &h, 2); /* the host is little-endian (main.c checks) */
        }
done:
    free(turned);
    free(signs);
    free(q);
    free(scales);
    return rc;
}

static const cv_quant_type quant_types[] = {
    { ABC_FILE_Q8, "q8", CV_Q8_BLOCK, CV_Q8_STRIP, q8_strip_bytes, q8_encode },
    { ABC_FILE_Q4, "q4", CV_Q8_BLOCK, CV_Q8_STRIP, q4_strip_bytes, q4_encode },
};

const cv_quant_type *cv_quant_find(uint32_t dtype) {
    for (size_t i = 0; i < sizeof quant_types / sizeof quant_types[0]; i++)
        if (quant_types[i].dtype == dtype) return &quant_types[i];
    return NULL;
}
