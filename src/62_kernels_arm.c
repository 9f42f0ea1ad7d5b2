
/* ================================================================================================
 * 7c. Kernels for Arm: NEON on aarch64 (always present there). 32-bit Arm uses the scalar path.
 * ================================================================================================ */

#if defined(__aarch64__) && defined(__ARM_NEON)

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

static const kernel_ops kernel_ops_neon_table = {
    KERNEL_NEON, NEON_MR, NEON_NR, 192, gemm_micro_neon, pack_strip_neon, pack_rows_neon, convert_f16_neon,
    convert_bf16_neon, dot_neon, dot4_neon, scale_add_neon, row_max_neon, exp_sum_neon,
};

static const kernel_ops *kernel_ops_neon(void) { return &kernel_ops_neon_table; }

#else
static const kernel_ops *kernel_ops_neon(void) { return NULL; }
#endif
