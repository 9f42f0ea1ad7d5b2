
/* ================================================================================================
 * 7c. Kernels for Arm: NEON on aarch64 (always present there). 32-bit Arm uses the scalar path.
 * ================================================================================================ */

#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(ABC_NO_SIMD)

#define NEON_MR 6
#define NEON_NR 16

/* 6 rows × 16 columns: 24 accumulators, 4 for B, 2 for the packed A column. Written out row by row:
 * at -O2 compilers keep arrays of vectors in memory. */
#define NEON_ROWS(X) X(0, a03, laneq_f32, 0) X(1, a03, laneq_f32, 1) X(2, a03, laneq_f32, 2) \
    X(3, a03, laneq_f32, 3) X(4, a45, lane_f32, 0) X(5, a45, lane_f32, 1)

static void gemm_micro_neon(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate) {
#define NEON_DECLARE(i, src, kind, lane) \
    float32x4_t c##i##0 = vdupq_n_f32(0.0f), c##i##1 = c##i##0, c##i##2 = c##i##0, c##i##3 = c##i##0;
#define NEON_STEP(i, src, kind, lane)                     \
    c##i##0 = vfmaq_##kind(c##i##0, b0, src, lane);       \
    c##i##1 = vfmaq_##kind(c##i##1, b1, src, lane);       \
    c##i##2 = vfmaq_##kind(c##i##2, b2, src, lane);       \
    c##i##3 = vfmaq_##kind(c##i##3, b3, src, lane);
#define NEON_STORE(i, src, kind, lane)                                        \
    if (accumulate) {                                                         \
        c##i##0 = vaddq_f32(vld1q_f32(c + (i) * ldc), c##i##0);               \
        c##i##1 = vaddq_f32(vld1q_f32(c + (i) * ldc + 4), c##i##1);           \
        c##i##2 = vaddq_f32(vld1q_f32(c + (i) * ldc + 8), c##i##2);           \
        c##i##3 = vaddq_f32(vld1q_f32(c + (i) * ldc + 12), c##i##3);          \
    }                                                                         \
    vst1q_f32(c + (i) * ldc, c##i##0);                                        \
    vst1q_f32(c + (i) * ldc + 4, c##i##1);                                    \
    vst1q_f32(c + (i) * ldc + 8, c##i##2);                                    \
    vst1q_f32(c + (i) * ldc + 12, c##i##3);
    NEON_ROWS(NEON_DECLARE)
    for (int64_t k = 0; k < kc; k++, a += NEON_MR, b += NEON_NR) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        float32x4_t a03 = vld1q_f32(a);
        float32x2_t a45 = vld1_f32(a + 4);
        NEON_ROWS(NEON_STEP)
    }
    NEON_ROWS(NEON_STORE)
#undef NEON_DECLARE
#undef NEON_STEP
#undef NEON_STORE
}

static inline float32x4_t load4_as_f32_neon(const void *w, uint32_t dtype, int64_t at) {
    if (dtype == DT_F32) return vld1q_f32((const float *)w + at);
    uint16x4_t h = vld1_u16((const uint16_t *)w + at);
    if (dtype == DT_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

static void convert_f16_neon(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load4_as_f32_neon(src, DT_F16, i));
    for (; i < count; i++) dst[i] = f16_to_f32(((const uint16_t *)src)[i]);
}

static void convert_bf16_neon(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 4 <= count; i += 4) vst1q_f32(dst + i, load4_as_f32_neon(src, DT_BF16, i));
    for (; i < count; i++) dst[i] = bf16_to_f32(((const uint16_t *)src)[i]);
}

/* 4×4 transpose of r[0..3] in place. */
static inline void transpose4_neon(float32x4_t r[4]) {
    float32x4x2_t t01 = vtrnq_f32(r[0], r[1]), t23 = vtrnq_f32(r[2], r[3]);
    r[0] = vcombine_f32(vget_low_f32(t01.val[0]), vget_low_f32(t23.val[0]));
    r[1] = vcombine_f32(vget_low_f32(t01.val[1]), vget_low_f32(t23.val[1]));
    r[2] = vcombine_f32(vget_high_f32(t01.val[0]), vget_high_f32(t23.val[0]));
    r[3] = vcombine_f32(vget_high_f32(t01.val[1]), vget_high_f32(t23.val[1]));
}

static inline void pack_rows4_neon(float *strip, int nr, int j0, const void *w, uint32_t dtype, int64_t ld, int64_t row0,
                                   int64_t k0, int64_t kc) {
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t r[4];
        for (int j = 0; j < 4; j++) r[j] = load4_as_f32_neon(w, dtype, (row0 + j) * ld + k0 + k);
        transpose4_neon(r);
        for (int kk = 0; kk < 4; kk++) vst1q_f32(strip + (k + kk) * nr + j0, r[kk]);
    }
    for (; k < kc; k++)
        for (int j = 0; j < 4; j++) strip[k * nr + j0 + j] = weight_element(w, dtype, (row0 + j) * ld + k0 + k);
}

static void pack_strip_neon(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                            int64_t k0, int64_t kc) {
    for (int j0 = 0; j0 < nr; j0 += 4) {
        if (j0 + 4 <= rows) {
            bool packed = true;
            switch (dtype) {
            case DT_F32: pack_rows4_neon(strip, nr, j0, w, DT_F32, ld, row0 + j0, k0, kc); break;
            case DT_F16: pack_rows4_neon(strip, nr, j0, w, DT_F16, ld, row0 + j0, k0, kc); break;
            case DT_BF16: pack_rows4_neon(strip, nr, j0, w, DT_BF16, ld, row0 + j0, k0, kc); break;
            default: packed = false; break;
            }
            if (packed) continue;
        }
        for (int j = j0; j < j0 + 4; j++)
            for (int64_t k = 0; k < kc; k++)
                strip[k * nr + j] = j < rows ? weight_element(w, dtype, (row0 + j) * ld + k0 + k) : 0.0f;
    }
}

/* Rows of x into [kc][mr], four rows × four columns per transpose; stores run in increasing address
 * order so a group's lanes beyond mr are overwritten by the next k (the last land in the slack). */
static void pack_rows_neon(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    int groups = (mr + 3) / 4;
    int64_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        float32x4_t r[4][4];
        for (int g = 0; g < groups; g++) {
            for (int j = 0; j < 4; j++) {
                int row = g * 4 + j;
                r[g][j] = row < rows && row < mr ? vld1q_f32(x + row * ldx + k) : vdupq_n_f32(0.0f);
            }
            transpose4_neon(r[g]);
        }
        for (int kk = 0; kk < 4; kk++)
            for (int g = 0; g < groups; g++) vst1q_f32(a_pack + (k + kk) * mr + g * 4, r[g][kk]);
    }
    for (; k < kc; k++)
        for (int row = 0; row < mr; row++) a_pack[k * mr + row] = row < rows ? x[row * ldx + k] : 0.0f;
}

static float dot_neon(const float *a, const float *b, int64_t n) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    if (i + 4 <= n) {
        s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
        i += 4;
    }
    float sum = vaddvq_f32(vaddq_f32(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Four dot_neons sharing the loads of w (same arithmetic per row as dot_neon). */
static void dot4_neon(const float *w, const float *const x[4], int64_t n, float out[4]) {
    float32x4_t a[4], b[4];
    for (int r = 0; r < 4; r++) a[r] = b[r] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        float32x4_t wl = vld1q_f32(w + i), wh = vld1q_f32(w + i + 4);
#define NEON_DOT4_ROW(r)                                      \
        a[r] = vfmaq_f32(a[r], vld1q_f32(x[r] + i), wl);      \
        b[r] = vfmaq_f32(b[r], vld1q_f32(x[r] + i + 4), wh);
        NEON_DOT4_ROW(0) NEON_DOT4_ROW(1) NEON_DOT4_ROW(2) NEON_DOT4_ROW(3)
#undef NEON_DOT4_ROW
    }
    if (i + 4 <= n) {
        float32x4_t wl = vld1q_f32(w + i);
        for (int r = 0; r < 4; r++) a[r] = vfmaq_f32(a[r], vld1q_f32(x[r] + i), wl);
        i += 4;
    }
    for (int r = 0; r < 4; r++) {
        float s = vaddvq_f32(vaddq_f32(a[r], b[r]));
        for (int64_t k = i; k < n; k++) s += x[r][k] * w[k];
        out[r] = s;
    }
}

static void scale_add_neon(float *y, float alpha, const float *x, float beta, int64_t n) {
    float32x4_t va = vdupq_n_f32(alpha), vb = vdupq_n_f32(beta);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vmulq_f32(va, vld1q_f32(y + i)), vb, vld1q_f32(x + i)));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static float row_max_neon(const float *x, int64_t n) {
    float32x4_t m = vdupq_n_f32(-INFINITY);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) m = vmaxq_f32(m, vld1q_f32(x + i));
    float r = vmaxvq_f32(m);
    for (; i < n; i++) r = MAX(r, x[i]);
    return r;
}

/* e^x as in exp_avx2 (section 7b): 2^n · e^r, degree-7 polynomial, x clamped to [−87.3, 88.37]. */
static inline float32x4_t exp_neon(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-87.3f)), vdupq_n_f32(88.37f));
    float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(1.44269504088896341f)));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    p = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), p, vmulq_f32(r, r));
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(p, vreinterpretq_f32_s32(e));
}

/* softmax_step on 4 lanes at a time (nr a multiple of 4). */
static void softmax_step_neon(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                              int64_t o_rows) {
    const float32x4_t vs = vdupq_n_f32(scale);
    for (int j = 0; j < nr; j += 4) {
        float32x4_t block_max = vdupq_n_f32(-INFINITY), block_sum = vdupq_n_f32(0.0f);
        for (int64_t k = 0; k < keys; k++) block_max = vmaxq_f32(block_max, vld1q_f32(s + k * nr + j));
        const float32x4_t old_max = vld1q_f32(max + j), new_max = vmaxq_f32(old_max, vmulq_f32(block_max, vs));
        const float32x4_t correction = exp_neon(vsubq_f32(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(s + k * nr + j), vs), new_max));
            vst1q_f32(s + k * nr + j, e);
            block_sum = vaddq_f32(block_sum, e);
        }
        vst1q_f32(sum + j, vaddq_f32(vmulq_f32(vld1q_f32(sum + j), correction), block_sum));
        vst1q_f32(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++) vst1q_f32(o + d * nr + j, vmulq_f32(vld1q_f32(o + d * nr + j), correction));
    }
}

static float exp_sum_neon(float *s, int64_t n, float scale, float max) {
    float32x4_t vs = vdupq_n_f32(scale), vm = vdupq_n_f32(max), sum = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(s + i), vs), vm));
        vst1q_f32(s + i, e);
        sum = vaddq_f32(sum, e);
    }
    if (i < n) {
        float tail[4] = {0};
        int64_t rest = n - i;
        memcpy(tail, s + i, (size_t)rest * sizeof(float));
        float32x4_t e = exp_neon(vsubq_f32(vmulq_f32(vld1q_f32(tail), vs), vm));
        vst1q_f32(tail, e);
        for (int64_t j = rest; j < 4; j++) tail[j] = 0.0f;
        memcpy(s + i, tail, (size_t)rest * sizeof(float));
        sum = vaddq_f32(sum, vld1q_f32(tail));
    }
    return vaddvq_f32(sum);
}

/* x·σ(α·x) = x / (1 + e^(−α·x)) (· up), as sigmoid_gate_avx2; the tail through the scalar definition. */
static void sigmoid_gate_neon(float *x, const float *up, int64_t n, float alpha) {
    const float32x4_t one = vdupq_n_f32(1.0f), neg_alpha = vdupq_n_f32(-alpha);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vld1q_f32(x + i);
        float32x4_t g = vdivq_f32(v, vaddq_f32(one, exp_neon(vmulq_f32(neg_alpha, v))));
        if (up) g = vmulq_f32(g, vld1q_f32(up + i));
        vst1q_f32(x + i, g);
    }
    sigmoid_gate_scalar(x + i, up ? up + i : NULL, n - i, alpha);
}

static void rotate_half_neon(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    int64_t i = 0;
    for (; i + 4 <= half; i += 4) {
        float32x4_t a = vld1q_f32(v + i), b = vld1q_f32(v + i + half);
        float32x4_t c = vld1q_f32(cos_a + i), s = vld1q_f32(sin_a + i);
        vst1q_f32(v + i, vsubq_f32(vmulq_f32(a, c), vmulq_f32(b, s)));
        vst1q_f32(v + i + half, vaddq_f32(vmulq_f32(b, c), vmulq_f32(a, s)));
    }
    rotate_half_tail(v + i, cos_a + i, sin_a + i, half - i, half);
}

/* norm_sum_scalar's partials i mod 16 as eight vectors of two doubles. */
static double norm_sum_neon(const float *x, int64_t n, double shift, bool square) {
    const float64x2_t vshift = vdupq_n_f64(shift);
    float64x2_t p[8];
    for (int q = 0; q < 8; q++) p[q] = vdupq_n_f64(0.0);
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int q = 0; q < 4; q++) {
            float32x4_t v = vld1q_f32(x + i + 4 * q);
            float64x2_t lo = vsubq_f64(vcvt_f64_f32(vget_low_f32(v)), vshift), hi = vsubq_f64(vcvt_high_f64_f32(v), vshift);
            p[2 * q] = vaddq_f64(p[2 * q], square ? vmulq_f64(lo, lo) : lo);
            p[2 * q + 1] = vaddq_f64(p[2 * q + 1], square ? vmulq_f64(hi, hi) : hi);
        }
    double partials[NORM_LANES];
    for (int q = 0; q < 8; q++) vst1q_f64(partials + 2 * q, p[q]);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static void norm_apply_neon(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b) {
    const float32x4_t vshift = vdupq_n_f32(shift), vinv = vdupq_n_f32(inv);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_f32(vmulq_f32(vsubq_f32(vld1q_f32(x + i), vshift), vinv), vld1q_f32(w + i));
        vst1q_f32(y + i, b ? vaddq_f32(v, vld1q_f32(b + i)) : v);
    }
    norm_apply_scalar(y + i, x + i, n - i, shift, inv, w + i, b ? b + i : NULL);
}

static const kernel_ops kernel_ops_neon_table = {
    KERNEL_NEON, NEON_MR, NEON_NR, 192, gemm_micro_neon, pack_strip_neon, pack_rows_neon, convert_f16_neon,
    convert_bf16_neon, dot_neon, dot4_neon, scale_add_neon, row_max_neon, exp_sum_neon, softmax_step_neon,
    sigmoid_gate_neon, rotate_half_neon, norm_sum_neon, norm_apply_neon,
};

static const kernel_ops *kernel_ops_neon(void) { return &kernel_ops_neon_table; }

/* ---- q8 (section 7's q8 part): sdot when the CPU has it (HWCAP asimddp), else smull + sadalp ---- */

#define Q8_NEON_MR 4
#define Q8_NEON_NR 8

/* acc.4s += b.16b · a.4b[lane] (SDOT by element). Inline assembly: this file is built for baseline
 * aarch64, and clang's intrinsic exists only when the whole unit targets dotprod. The instruction is
 * allowed by the function's target (clang) or by an .arch directive (GCC's assembler). */
#if defined(__clang__)
#define Q8_DOTPROD_TARGET __attribute__((target("dotprod")))
#define Q8_SDOT_ARCH ""
#else
#define Q8_DOTPROD_TARGET
#define Q8_SDOT_ARCH ".arch armv8.2-a+dotprod\n\t"
#endif
#define Q8_SDOT_LANE(acc, b, a, lane)                                                                   \
    __asm__(Q8_SDOT_ARCH "sdot %0.4s, %1.16b, %2.4b[" #lane "]" : "+w"(acc) : "w"(b), "w"(a))

/* The float step of one block for a row: fma((float)isum, sx · sw, acc), as in the scalar kernel. */
static inline float32x4_t q8_neon_scale(float32x4_t acc, int32x4_t isum, float sx, float32x4_t sw) {
    return vfmaq_f32(acc, vcvtq_f32_s32(isum), vmulq_n_f32(sw, sx));
}

/* Both kernels take half a strip: b is moved to the strip's column 0 or 8 (quads Q8_STRIP·4 bytes apart). */
static Q8_DOTPROD_TARGET void q8_micro_neon_dot(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi,
                                                float *c, int64_t ldc, bool accumulate) {
    enum { MR = Q8_NEON_MR, NR = Q8_NEON_NR };
    (void)b_hi;
    float32x4_t f00, f01, f10, f11, f20, f21, f30, f31;
    if (accumulate) {
        f00 = vld1q_f32(c), f01 = vld1q_f32(c + 4), f10 = vld1q_f32(c + ldc), f11 = vld1q_f32(c + ldc + 4);
        f20 = vld1q_f32(c + 2 * ldc), f21 = vld1q_f32(c + 2 * ldc + 4);
        f30 = vld1q_f32(c + 3 * ldc), f31 = vld1q_f32(c + 3 * ldc + 4);
    } else {
        f00 = f01 = f10 = f11 = f20 = f21 = f30 = f31 = vdupq_n_f32(0.0f);
    }
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        int32x4_t s00 = vdupq_n_s32(0), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            int8x16_t av = vld1q_s8((const int8_t *)ab + k4 * MR * 4);
            int8x16_t b0 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4), b1 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4 + 16);
            Q8_SDOT_LANE(s00, b0, av, 0);
            Q8_SDOT_LANE(s01, b1, av, 0);
            Q8_SDOT_LANE(s10, b0, av, 1);
            Q8_SDOT_LANE(s11, b1, av, 1);
            Q8_SDOT_LANE(s20, b0, av, 2);
            Q8_SDOT_LANE(s21, b1, av, 2);
            Q8_SDOT_LANE(s30, b0, av, 3);
            Q8_SDOT_LANE(s31, b1, av, 3);
        }
        const float *sw = (const float *)(const void *)(bb + Q8_STRIP * Q8_BLOCK);
        float32x4_t sw0 = vld1q_f32(sw), sw1 = vld1q_f32(sw + 4);
        float sx[MR];
        memcpy(sx, ab + MR * Q8_BLOCK, sizeof sx);
        f00 = q8_neon_scale(f00, s00, sx[0], sw0), f01 = q8_neon_scale(f01, s01, sx[0], sw1);
        f10 = q8_neon_scale(f10, s10, sx[1], sw0), f11 = q8_neon_scale(f11, s11, sx[1], sw1);
        f20 = q8_neon_scale(f20, s20, sx[2], sw0), f21 = q8_neon_scale(f21, s21, sx[2], sw1);
        f30 = q8_neon_scale(f30, s30, sx[3], sw0), f31 = q8_neon_scale(f31, s31, sx[3], sw1);
    }
    vst1q_f32(c, f00), vst1q_f32(c + 4, f01), vst1q_f32(c + ldc, f10), vst1q_f32(c + ldc + 4, f11);
    vst1q_f32(c + 2 * ldc, f20), vst1q_f32(c + 2 * ldc + 4, f21);
    vst1q_f32(c + 3 * ldc, f30), vst1q_f32(c + 3 * ldc + 4, f31);
}

/* Without sdot: per four k, x's quad repeated across the register times four columns' quads with
 * smull (int16 products, |x·w| ≤ 127²), pairwise-accumulated into int32 (sadalp); at the block's end
 * one pairwise add gives each column's sum. */
static void q8_micro_neon_mull(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                               int64_t ldc, bool accumulate) {
    enum { MR = Q8_NEON_MR, NR = Q8_NEON_NR };
    (void)b_hi;
    float32x4_t f[MR][2];
    for (int r = 0; r < MR; r++) {
        f[r][0] = accumulate ? vld1q_f32(c + r * ldc) : vdupq_n_f32(0.0f);
        f[r][1] = accumulate ? vld1q_f32(c + r * ldc + 4) : vdupq_n_f32(0.0f);
    }
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        int32x4_t pairs[MR][4];
        for (int r = 0; r < MR; r++)
            for (int p = 0; p < 4; p++) pairs[r][p] = vdupq_n_s32(0);
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            int8x16_t b0 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4), b1 = vld1q_s8((const int8_t *)bb + k4 * Q8_STRIP * 4 + 16);
            for (int r = 0; r < MR; r++) {
                int32_t quad;
                memcpy(&quad, ab + (k4 * MR + r) * 4, 4);
                int8x16_t xv = vreinterpretq_s8_s32(vdupq_n_s32(quad));
                pairs[r][0] = vpadalq_s16(pairs[r][0], vmull_s8(vget_low_s8(b0), vget_low_s8(xv)));
                pairs[r][1] = vpadalq_s16(pairs[r][1], vmull_high_s8(b0, xv));
                pairs[r][2] = vpadalq_s16(pairs[r][2], vmull_s8(vget_low_s8(b1), vget_low_s8(xv)));
                pairs[r][3] = vpadalq_s16(pairs[r][3], vmull_high_s8(b1, xv));
            }
        }
        const float *sw = (const float *)(const void *)(bb + Q8_STRIP * Q8_BLOCK);
        float32x4_t sw0 = vld1q_f32(sw), sw1 = vld1q_f32(sw + 4);
        float sx[MR];
        memcpy(sx, ab + MR * Q8_BLOCK, sizeof sx);
        for (int r = 0; r < MR; r++) {
            f[r][0] = q8_neon_scale(f[r][0], vpaddq_s32(pairs[r][0], pairs[r][1]), sx[r], sw0);
            f[r][1] = q8_neon_scale(f[r][1], vpaddq_s32(pairs[r][2], pairs[r][3]), sx[r], sw1);
        }
    }
    for (int r = 0; r < MR; r++) {
        vst1q_f32(c + r * ldc, f[r][0]);
        vst1q_f32(c + r * ldc + 4, f[r][1]);
    }
}

/* Row r's 32 quants (int8 in k order) into the group's [k4][mr][4] layout, the block's scale and its
 * compensation. */
static inline void q8_store_quads_neon(uint8_t *block, int mr, int r, int8x16_t lo, int8x16_t hi, float scale) {
    uint32_t quads[Q8_BLOCK / 4];
    vst1q_s8((int8_t *)(void *)quads, lo);
    vst1q_s8((int8_t *)(void *)(quads + 4), hi);
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) memcpy(block + ((size_t)k4 * mr + r) * 4, &quads[k4], 4);
    q8_store_row_scale(block, mr, r, vaddlvq_s8(lo) + vaddlvq_s8(hi), scale);
}

/* The bit mask (bit k: element k) of eight lane masks of four elements each. */
static inline uint32_t q8_mask_bits_neon(const uint32x4_t m[8]) {
    static const uint32_t weights[4] = {1, 2, 4, 8};
    const uint32x4_t w = vld1q_u32(weights);
    uint32_t bits = 0;
    for (int i = 0; i < 8; i++) bits |= vaddvq_u32(vandq_u32(m[i], w)) << (4 * i);
    return bits;
}

/* NEON quantizer: the arithmetic and the outlier rule of q8_quantize_block (max, min, counts, 127/amax,
 * one multiply, round to nearest even); non-finite and tiny blocks go through the definition itself. */
static void q8_pack_rows_neon(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                              q8_outlier *outliers, int *n_outliers) {
    static const int8_t zeros[Q8_BLOCK];
    const float32x4_t big = vdupq_n_f32(Q8_FLT_MAX), inf = vdupq_n_f32(INFINITY);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_row_block(block, mr, r, zeros, 0.0f);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            float32x4_t v[8], a[8];
            uint32x4_t finite = vdupq_n_u32(~0u);
            float32x4_t vmax = vdupq_n_f32(0.0f);
            for (int i = 0; i < 8; i++) {
                v[i] = vld1q_f32(xb + 4 * i);
                a[i] = vabsq_f32(v[i]);
                finite = vandq_u32(finite, vcleq_f32(a[i], big)); /* false for NaN too */
                vmax = vmaxq_f32(vmax, a[i]);
            }
            float amax = vmaxvq_f32(vmax);
            if (vminvq_u32(finite) == 0 || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            const float32x4_t quarter = vdupq_n_f32(amax * 0.25f);
            uint32x4_t large[8];
            int32x4_t count = vdupq_n_s32(0);
            for (int i = 0; i < 8; i++) {
                large[i] = vcgtq_f32(a[i], quarter);
                count = vsubq_s32(count, vreinterpretq_s32_u32(large[i])); /* lanes are 0 or −1 */
            }
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (vaddvq_s32(count) <= Q8_OUTLIERS_MAX) {
                float32x4_t rest = vdupq_n_f32(0.0f), low = inf;
                for (int i = 0; i < 8; i++) {
                    rest = vmaxq_f32(rest, vbslq_f32(large[i], vdupq_n_f32(0.0f), a[i]));
                    low = vminq_f32(low, vbslq_f32(large[i], a[i], inf));
                }
                float rest_max = vmaxvq_f32(rest);
                if (q8_outliers_apart(vminvq_f32(low), rest_max)) {
                    outlier_mask = q8_mask_bits_neon(large);
                    qmax = rest_max;
                    for (int i = 0; i < 8; i++) v[i] = vbslq_f32(large[i], vdupq_n_f32(0.0f), v[i]);
                }
            }
            q8_add_outliers(outliers, n_outliers, r, b, xb, outlier_mask);
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_row_block(block, mr, r, zeros, 0.0f);
                continue;
            }
            const float32x4_t inv = vdupq_n_f32(127.0f / qmax);
            int16x8_t h[4];
            for (int i = 0; i < 4; i++) /* |x·inv| ≤ 127.00002: the narrowing never saturates */
                h[i] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(v[2 * i], inv))),
                                    vqmovn_s32(vcvtnq_s32_f32(vmulq_f32(v[2 * i + 1], inv))));
            q8_store_quads_neon(block, mr, r, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])),
                                vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])), qmax / 127.0f);
        }
    }
}

/* q8_strip_outliers_fn: per outlier, byte k % 4 of each column's quad sign-extended by two shifts, then
 * the definition's two products and sum, four columns at once (a last part under four through the
 * definition). */
static void q8_strip_outliers_neon(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                   const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~3;
    const int32x4_t down = vdupq_n_s32(-24);
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES, quad = (size_t)(out->k / 4) * Q8_STRIP * 4;
        const int32x4_t up = vdupq_n_s32(24 - 8 * (out->k % 4));
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 4) {
            const uint8_t *column = q8_strip_column(b + block, b_hi + block, j);
            int32x4_t q = vreinterpretq_s32_u8(vld1q_u8(column + quad));
            float32x4_t w = vcvtq_f32_s32(vshlq_s32(vshlq_s32(q, up), down));
            float32x4_t term = vmulq_n_f32(vmulq_f32(w, vld1q_f32((const float *)(const void *)(column + Q8_STRIP * Q8_BLOCK))), out->value);
            vst1q_f32(row + j, vaddq_f32(vld1q_f32(row + j), term));
        }
        for (int j = whole; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

static const q8_kernels q8_kernels_neon_dot_table = {
    "neon-sdot", Q8_NEON_MR, Q8_NEON_NR, 128, q8_micro_neon_dot, q8_pack_rows_neon, q8_strip_outliers_neon,
};
static const q8_kernels q8_kernels_neon_mull_table = {
    "neon-smull", Q8_NEON_MR, Q8_NEON_NR, 128, q8_micro_neon_mull, q8_pack_rows_neon, q8_strip_outliers_neon,
};

static const q8_kernels *q8_kernels_neon(bool dotprod) {
    return dotprod ? &q8_kernels_neon_dot_table : &q8_kernels_neon_mull_table;
}

#else
static const kernel_ops *kernel_ops_neon(void) { return NULL; }
static const q8_kernels *q8_kernels_neon(bool dotprod) { (void)dotprod; return NULL; }
#endif
