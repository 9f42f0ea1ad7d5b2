
/* ================================================================================================
 * 7b. Kernels for x86-64: AVX2+FMA(+F16C) and AVX-512 (F/BW/VL)
 *
 * Every function carries its own target attribute, so the file compiles with the baseline flags and
 * the dispatch in section 7 calls these only when cpu_features says the CPU (and OS) support them.
 * ================================================================================================ */

#if defined(__x86_64__) && !defined(ABC_NO_SIMD) /* ABC_NO_SIMD: the scalar-only build */

#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define AVX512_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

/* ---- conversions ---- */

/* Eight elements of a weight row as f32 (dtype is a constant after inlining). */
static inline AVX2_TARGET __m256 load8_as_f32_avx2(const void *w, uint32_t dtype, int64_t at) {
    if (dtype == DT_F32) return _mm256_loadu_ps((const float *)w + at);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + at));
    if (dtype == DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static AVX2_TARGET void convert_f16_avx2(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8_as_f32_avx2(src, DT_F16, i));
    for (; i < count; i++) dst[i] = f16_to_f32(((const uint16_t *)src)[i]);
}

static AVX2_TARGET void convert_bf16_avx2(float *dst, const void *src, int64_t count) {
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, load8_as_f32_avx2(src, DT_BF16, i));
    for (; i < count; i++) dst[i] = bf16_to_f32(((const uint16_t *)src)[i]);
}

/* ---- weight packing: 8×8 transposes ---- */

/* Transposes eight named __m256 in place (named variables, not an array: at -O2 an array of vectors
 * would stay in memory). */
#define TRANSPOSE8_AVX2(r0, r1, r2, r3, r4, r5, r6, r7)                                           \
    do {                                                                                          \
        __m256 t0_ = _mm256_unpacklo_ps(r0, r1), t1_ = _mm256_unpackhi_ps(r0, r1);                \
        __m256 t2_ = _mm256_unpacklo_ps(r2, r3), t3_ = _mm256_unpackhi_ps(r2, r3);                \
        __m256 t4_ = _mm256_unpacklo_ps(r4, r5), t5_ = _mm256_unpackhi_ps(r4, r5);                \
        __m256 t6_ = _mm256_unpacklo_ps(r6, r7), t7_ = _mm256_unpackhi_ps(r6, r7);                \
        __m256 s0_ = _mm256_shuffle_ps(t0_, t2_, 0x44), s1_ = _mm256_shuffle_ps(t0_, t2_, 0xee);  \
        __m256 s2_ = _mm256_shuffle_ps(t1_, t3_, 0x44), s3_ = _mm256_shuffle_ps(t1_, t3_, 0xee);  \
        __m256 s4_ = _mm256_shuffle_ps(t4_, t6_, 0x44), s5_ = _mm256_shuffle_ps(t4_, t6_, 0xee);  \
        __m256 s6_ = _mm256_shuffle_ps(t5_, t7_, 0x44), s7_ = _mm256_shuffle_ps(t5_, t7_, 0xee);  \
        r0 = _mm256_permute2f128_ps(s0_, s4_, 0x20), r1 = _mm256_permute2f128_ps(s1_, s5_, 0x20); \
        r2 = _mm256_permute2f128_ps(s2_, s6_, 0x20), r3 = _mm256_permute2f128_ps(s3_, s7_, 0x20); \
        r4 = _mm256_permute2f128_ps(s0_, s4_, 0x31), r5 = _mm256_permute2f128_ps(s1_, s5_, 0x31); \
        r6 = _mm256_permute2f128_ps(s2_, s6_, 0x31), r7 = _mm256_permute2f128_ps(s3_, s7_, 0x31); \
    } while (0)

/* Eight full rows (row0 .. row0+7) of the strip, columns [k0, k0 + kc), into strip columns j0..j0+7. */
static inline AVX2_TARGET void pack_rows8_avx2(float *strip, int nr, int j0, const void *w, uint32_t dtype, int64_t ld,
                                               int64_t row0, int64_t k0, int64_t kc) {
    const int64_t at = row0 * ld + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 r0 = load8_as_f32_avx2(w, dtype, at + k), r1 = load8_as_f32_avx2(w, dtype, at + ld + k);
        __m256 r2 = load8_as_f32_avx2(w, dtype, at + 2 * ld + k), r3 = load8_as_f32_avx2(w, dtype, at + 3 * ld + k);
        __m256 r4 = load8_as_f32_avx2(w, dtype, at + 4 * ld + k), r5 = load8_as_f32_avx2(w, dtype, at + 5 * ld + k);
        __m256 r6 = load8_as_f32_avx2(w, dtype, at + 6 * ld + k), r7 = load8_as_f32_avx2(w, dtype, at + 7 * ld + k);
        TRANSPOSE8_AVX2(r0, r1, r2, r3, r4, r5, r6, r7);
        float *dst = strip + k * nr + j0;
        _mm256_storeu_ps(dst, r0), _mm256_storeu_ps(dst + nr, r1);
        _mm256_storeu_ps(dst + 2 * nr, r2), _mm256_storeu_ps(dst + 3 * nr, r3);
        _mm256_storeu_ps(dst + 4 * nr, r4), _mm256_storeu_ps(dst + 5 * nr, r5);
        _mm256_storeu_ps(dst + 6 * nr, r6), _mm256_storeu_ps(dst + 7 * nr, r7);
    }
    for (; k < kc; k++)
        for (int j = 0; j < 8; j++) strip[k * nr + j0 + j] = weight_element(w, dtype, at + j * ld + k);
}

static AVX2_TARGET void pack_strip_avx2(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0,
                                        int rows, int64_t k0, int64_t kc) {
    for (int j0 = 0; j0 < nr; j0 += 8) {
        if (j0 + 8 <= rows) {
            bool packed = true;
            switch (dtype) { /* constant dtype per copy: the loads inline without a branch */
            case DT_F32: pack_rows8_avx2(strip, nr, j0, w, DT_F32, ld, row0 + j0, k0, kc); break;
            case DT_F16: pack_rows8_avx2(strip, nr, j0, w, DT_F16, ld, row0 + j0, k0, kc); break;
            case DT_BF16: pack_rows8_avx2(strip, nr, j0, w, DT_BF16, ld, row0 + j0, k0, kc); break;
            default: packed = false; break;
            }
            if (packed) continue;
        }
        for (int j = j0; j < j0 + 8; j++) {
            if (j >= rows) {
                for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = 0.0f;
            } else {
                for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = weight_element(w, dtype, (row0 + j) * ld + k0 + k);
            }
        }
    }
}

/* Rows of x into the micro-kernel's [kc][mr] layout, eight rows × eight columns per transpose. Each
 * k writes 8 floats per group of 8 rows, in increasing address order, so the part of a store beyond
 * row mr is overwritten by the next k (and the last one lands in the slack). */
/* mr ≤ 16 (both x86 micro-kernels). */
static AVX2_TARGET void pack_rows_avx2(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    rows = MIN(rows, mr);
#define ROW_OR_ZERO(row) ((row) < rows ? _mm256_loadu_ps(x + (row) * ldx + k) : _mm256_setzero_ps())
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
        __m256 p0 = ROW_OR_ZERO(0), p1 = ROW_OR_ZERO(1), p2 = ROW_OR_ZERO(2), p3 = ROW_OR_ZERO(3);
        __m256 p4 = ROW_OR_ZERO(4), p5 = ROW_OR_ZERO(5), p6 = ROW_OR_ZERO(6), p7 = ROW_OR_ZERO(7);
        TRANSPOSE8_AVX2(p0, p1, p2, p3, p4, p5, p6, p7);
        float *dst = a_pack + k * mr;
        if (mr <= 8) {
            _mm256_storeu_ps(dst, p0), _mm256_storeu_ps(dst + mr, p1);
            _mm256_storeu_ps(dst + 2 * mr, p2), _mm256_storeu_ps(dst + 3 * mr, p3);
            _mm256_storeu_ps(dst + 4 * mr, p4), _mm256_storeu_ps(dst + 5 * mr, p5);
            _mm256_storeu_ps(dst + 6 * mr, p6), _mm256_storeu_ps(dst + 7 * mr, p7);
            continue;
        }
        __m256 q0 = ROW_OR_ZERO(8), q1 = ROW_OR_ZERO(9), q2 = ROW_OR_ZERO(10), q3 = ROW_OR_ZERO(11);
        __m256 q4 = ROW_OR_ZERO(12), q5 = ROW_OR_ZERO(13), q6 = ROW_OR_ZERO(14), q7 = ROW_OR_ZERO(15);
        TRANSPOSE8_AVX2(q0, q1, q2, q3, q4, q5, q6, q7);
        _mm256_storeu_ps(dst, p0), _mm256_storeu_ps(dst + 8, q0);
        _mm256_storeu_ps(dst + mr, p1), _mm256_storeu_ps(dst + mr + 8, q1);
        _mm256_storeu_ps(dst + 2 * mr, p2), _mm256_storeu_ps(dst + 2 * mr + 8, q2);
        _mm256_storeu_ps(dst + 3 * mr, p3), _mm256_storeu_ps(dst + 3 * mr + 8, q3);
        _mm256_storeu_ps(dst + 4 * mr, p4), _mm256_storeu_ps(dst + 4 * mr + 8, q4);
        _mm256_storeu_ps(dst + 5 * mr, p5), _mm256_storeu_ps(dst + 5 * mr + 8, q5);
        _mm256_storeu_ps(dst + 6 * mr, p6), _mm256_storeu_ps(dst + 6 * mr + 8, q6);
        _mm256_storeu_ps(dst + 7 * mr, p7), _mm256_storeu_ps(dst + 7 * mr + 8, q7);
    }
#undef ROW_OR_ZERO
    for (; k < kc; k++)
        for (int row = 0; row < mr; row++) a_pack[k * mr + row] = row < rows ? x[row * ldx + k] : 0.0f;
}

/* ---- AVX2 micro-kernel: 6 rows × 16 columns, 12 accumulators ---- */

#define AVX2_MR 6
#define AVX2_NR 16

static AVX2_TARGET void gemm_micro_avx2(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                        bool accumulate) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    for (int i = 0; i < AVX2_MR; i++) /* y is read only after the loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
    for (int64_t k = 0; k < kc; k++, a += AVX2_MR, b += AVX2_NR) {
        __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8), t;
        t = _mm256_broadcast_ss(a + 0), c00 = _mm256_fmadd_ps(t, b0, c00), c01 = _mm256_fmadd_ps(t, b1, c01);
        t = _mm256_broadcast_ss(a + 1), c10 = _mm256_fmadd_ps(t, b0, c10), c11 = _mm256_fmadd_ps(t, b1, c11);
        t = _mm256_broadcast_ss(a + 2), c20 = _mm256_fmadd_ps(t, b0, c20), c21 = _mm256_fmadd_ps(t, b1, c21);
        t = _mm256_broadcast_ss(a + 3), c30 = _mm256_fmadd_ps(t, b0, c30), c31 = _mm256_fmadd_ps(t, b1, c31);
        t = _mm256_broadcast_ss(a + 4), c40 = _mm256_fmadd_ps(t, b0, c40), c41 = _mm256_fmadd_ps(t, b1, c41);
        t = _mm256_broadcast_ss(a + 5), c50 = _mm256_fmadd_ps(t, b0, c50), c51 = _mm256_fmadd_ps(t, b1, c51);
    }
    if (accumulate) {
        c00 = _mm256_add_ps(_mm256_loadu_ps(c), c00), c01 = _mm256_add_ps(_mm256_loadu_ps(c + 8), c01);
        c10 = _mm256_add_ps(_mm256_loadu_ps(c + ldc), c10), c11 = _mm256_add_ps(_mm256_loadu_ps(c + ldc + 8), c11);
        c20 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc), c20);
        c21 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc + 8), c21);
        c30 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc), c30);
        c31 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc + 8), c31);
        c40 = _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc), c40);
        c41 = _mm256_add_ps(_mm256_loadu_ps(c + 4 * ldc + 8), c41);
        c50 = _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc), c50);
        c51 = _mm256_add_ps(_mm256_loadu_ps(c + 5 * ldc + 8), c51);
    }
    _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10), _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20), _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30), _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40), _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50), _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

/* ---- vector helpers for attention and the dot-product path ---- */

static inline AVX2_TARGET float hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static AVX2_TARGET float dot_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    if (i + 8 <= n) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        i += 8;
    }
    float sum = hsum_avx2(_mm256_add_ps(s0, s1));
    for (; i < n; i++) sum += a[i] * b[i];
    return sum;
}

/* Four dot_avx2s sharing the loads of w (same arithmetic per row as dot_avx2). */
static AVX2_TARGET void dot4_avx2(const float *w, const float *const x[4], int64_t n, float out[4]) {
    const float *x0 = x[0], *x1 = x[1], *x2 = x[2], *x3 = x[3];
    __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0, a3 = a0, b3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 wl = _mm256_loadu_ps(w + i), wh = _mm256_loadu_ps(w + i + 8);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), wl, a0), b0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i + 8), wh, b0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), wl, a1), b1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i + 8), wh, b1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), wl, a2), b2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i + 8), wh, b2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), wl, a3), b3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i + 8), wh, b3);
    }
    if (i + 8 <= n) {
        __m256 wl = _mm256_loadu_ps(w + i);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x0 + i), wl, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x1 + i), wl, a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x2 + i), wl, a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x3 + i), wl, a3);
        i += 8;
    }
    float s0 = hsum_avx2(_mm256_add_ps(a0, b0)), s1 = hsum_avx2(_mm256_add_ps(a1, b1));
    float s2 = hsum_avx2(_mm256_add_ps(a2, b2)), s3 = hsum_avx2(_mm256_add_ps(a3, b3));
    for (; i < n; i++) {
        s0 += x0[i] * w[i];
        s1 += x1[i] * w[i];
        s2 += x2[i] * w[i];
        s3 += x3[i] * w[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

static AVX2_TARGET void scale_add_avx2(float *y, float alpha, const float *x, float beta, int64_t n) {
    __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vb, _mm256_loadu_ps(x + i), _mm256_mul_ps(va, _mm256_loadu_ps(y + i))));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static AVX2_TARGET float row_max_avx2(const float *x, int64_t n) {
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r = MAX(r, x[i]);
    return r;
}

/* e^x for x ≤ 88.37 (the softmax calls it with x ≤ 0): 2^n · e^r with |r| ≤ ln2/2 and a degree-7 polynomial
 * for e^r (about 1 ulp); results below e^−87.3 come out as ~1e−38 instead of 0 (harmless next to the
 * row maximum's 1). */
static inline AVX2_TARGET __m256 exp_avx2(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* softmax_step on 8 lanes at a time (nr a multiple of 8). */
static AVX2_TARGET void softmax_step_avx2(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                          int64_t o_rows) {
    const __m256 vs = _mm256_set1_ps(scale);
    for (int j = 0; j < nr; j += 8) {
        __m256 block_max = _mm256_set1_ps(-INFINITY), block_sum = _mm256_setzero_ps();
        for (int64_t k = 0; k < keys; k++) block_max = _mm256_max_ps(block_max, _mm256_loadu_ps(s + k * nr + j));
        const __m256 old_max = _mm256_loadu_ps(max + j), new_max = _mm256_max_ps(old_max, _mm256_mul_ps(block_max, vs));
        const __m256 correction = exp_avx2(_mm256_sub_ps(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + k * nr + j), vs, new_max));
            _mm256_storeu_ps(s + k * nr + j, e);
            block_sum = _mm256_add_ps(block_sum, e);
        }
        _mm256_storeu_ps(sum + j, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(sum + j), correction), block_sum));
        _mm256_storeu_ps(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++)
            _mm256_storeu_ps(o + d * nr + j, _mm256_mul_ps(_mm256_loadu_ps(o + d * nr + j), correction));
    }
}

static AVX2_TARGET float exp_sum_avx2(float *s, int64_t n, float scale, float max) {
    __m256 vs = _mm256_set1_ps(scale), vm = _mm256_set1_ps(max), sum = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(s + i), vs, vm));
        _mm256_storeu_ps(s + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    if (i < n) { /* the tail through a padded copy keeps one code path for the exponential */
        float tail[8] = {0};
        int64_t rest = n - i;
        memcpy(tail, s + i, (size_t)rest * sizeof(float));
        __m256 e = exp_avx2(_mm256_fmsub_ps(_mm256_loadu_ps(tail), vs, vm));
        __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)rest), lanes));
        e = _mm256_and_ps(e, keep);
        _mm256_storeu_ps(tail, e);
        memcpy(s + i, tail, (size_t)rest * sizeof(float));
        sum = _mm256_add_ps(sum, e);
    }
    return hsum_avx2(sum);
}

/* x·σ(α·x) = x / (1 + e^(−α·x)) (· up); the tail through the scalar definition. */
static AVX2_TARGET void sigmoid_gate_avx2(float *x, const float *up, int64_t n, float alpha) {
    const __m256 one = _mm256_set1_ps(1.0f), neg_alpha = _mm256_set1_ps(-alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 g = _mm256_div_ps(v, _mm256_add_ps(one, exp_avx2(_mm256_mul_ps(neg_alpha, v))));
        if (up) g = _mm256_mul_ps(g, _mm256_loadu_ps(up + i));
        _mm256_storeu_ps(x + i, g);
    }
    sigmoid_gate_scalar(x + i, up ? up + i : NULL, n - i, alpha);
}

static AVX2_TARGET void rotate_half_avx2(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 a = _mm256_loadu_ps(v + i), b = _mm256_loadu_ps(v + i + half);
        __m256 c = _mm256_loadu_ps(cos_a + i), s = _mm256_loadu_ps(sin_a + i);
        _mm256_storeu_ps(v + i, _mm256_sub_ps(_mm256_mul_ps(a, c), _mm256_mul_ps(b, s)));
        _mm256_storeu_ps(v + i + half, _mm256_add_ps(_mm256_mul_ps(b, c), _mm256_mul_ps(a, s)));
    }
    rotate_half_tail(v + i, cos_a + i, sin_a + i, half - i, half);
}

/* norm_sum_scalar's partials i mod 16 as four vectors of four doubles. */
static AVX2_TARGET double norm_sum_avx2(const float *x, int64_t n, double shift, bool square) {
    const __m256d vshift = _mm256_set1_pd(shift);
    __m256d p[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES)
        for (int q = 0; q < 4; q++) {
            __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * q)), vshift);
            p[q] = _mm256_add_pd(p[q], square ? _mm256_mul_pd(d, d) : d);
        }
    double partials[NORM_LANES];
    for (int q = 0; q < 4; q++) _mm256_storeu_pd(partials + 4 * q, p[q]);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static AVX2_TARGET void norm_apply_avx2(float *y, const float *x, int64_t n, float shift, float inv, const float *w,
                                        const float *b) {
    const __m256 vshift = _mm256_set1_ps(shift), vinv = _mm256_set1_ps(inv);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vshift), vinv), _mm256_loadu_ps(w + i));
        _mm256_storeu_ps(y + i, b ? _mm256_add_ps(v, _mm256_loadu_ps(b + i)) : v);
    }
    norm_apply_scalar(y + i, x + i, n - i, shift, inv, w + i, b ? b + i : NULL);
}

static const kernel_ops kernel_ops_avx2_table = {
    KERNEL_AVX2, AVX2_MR, AVX2_NR, 768, gemm_micro_avx2, pack_strip_avx2, pack_rows_avx2, convert_f16_avx2, convert_bf16_avx2,
    dot_avx2, dot4_avx2, scale_add_avx2, row_max_avx2, exp_sum_avx2, softmax_step_avx2, sigmoid_gate_avx2,
    rotate_half_avx2, norm_sum_avx2, norm_apply_avx2,
};

/* ---- AVX-512 micro-kernel: 12 rows × 32 columns, 24 accumulators ---- */

#define AVX512_MR 12
#define AVX512_NR 32

/* Written out row by row (no arrays of vectors): at -O2 compilers do not fully unroll loops over
 * accumulator arrays, and the accumulators would live in memory. */
#define AVX512_ROWS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)

static AVX512_TARGET void gemm_micro_avx512(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,
                                            bool accumulate) {
#define AVX512_DECLARE(i) __m512 c##i##l = _mm512_setzero_ps(), c##i##h = _mm512_setzero_ps();
#define AVX512_STEP(i)                             \
    t = _mm512_set1_ps(a[i]);                      \
    c##i##l = _mm512_fmadd_ps(t, b0, c##i##l);     \
    c##i##h = _mm512_fmadd_ps(t, b1, c##i##h);
#define AVX512_STORE(i)                                                                   \
    if (accumulate) {                                                                     \
        c##i##l = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc), c##i##l);                  \
        c##i##h = _mm512_add_ps(_mm512_loadu_ps(c + (i) * ldc + 16), c##i##h);             \
    }                                                                                     \
    _mm512_storeu_ps(c + (i) * ldc, c##i##l);                                             \
    _mm512_storeu_ps(c + (i) * ldc + 16, c##i##h);
    AVX512_ROWS(AVX512_DECLARE)
    for (int i = 0; i < AVX512_MR; i++) { /* y is read only after the loop: fetch it meanwhile */
        _mm_prefetch((const char *)(c + i * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + i * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++, a += AVX512_MR, b += AVX512_NR) {
        __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16), t;
        AVX512_ROWS(AVX512_STEP)
    }
    AVX512_ROWS(AVX512_STORE)
#undef AVX512_DECLARE
#undef AVX512_STEP
#undef AVX512_STORE
}

/* ---- AVX-512 vector helpers for attention: the AVX2 ones' arithmetic on 16 lanes ---- */

static AVX512_TARGET void scale_add_avx512(float *y, float alpha, const float *x, float beta, int64_t n) {
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(vb, _mm512_loadu_ps(x + i), _mm512_mul_ps(va, _mm512_loadu_ps(y + i))));
    for (; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static AVX512_TARGET float row_max_avx512(const float *x, int64_t n) {
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    if (i < n) m = _mm512_mask_max_ps(m, (__mmask16)((1u << (n - i)) - 1), m, _mm512_maskz_loadu_ps((__mmask16)((1u << (n - i)) - 1), x + i));
    return _mm512_reduce_max_ps(m);
}

/* exp_avx2's range reduction and polynomial on 16 lanes. */
static inline AVX512_TARGET __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.37f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

static AVX512_TARGET float exp_sum_avx512(float *s, int64_t n, float scale, float max) {
    __m512 vs = _mm512_set1_ps(scale), vm = _mm512_set1_ps(max), sum = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(s + i), vs, vm));
        _mm512_storeu_ps(s + i, e);
        sum = _mm512_add_ps(sum, e);
    }
    if (i < n) { /* the tail under a mask: the same exponential, lanes past n neither read nor written */
        __mmask16 keep = (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_maskz_loadu_ps(keep, s + i), vs, vm));
        _mm512_mask_storeu_ps(s + i, keep, e);
        sum = _mm512_mask_add_ps(sum, keep, sum, e);
    }
    return _mm512_reduce_add_ps(sum);
}

/* softmax_step_avx2's arithmetic on 16 lanes at a time (nr a multiple of 16). */
static AVX512_TARGET void softmax_step_avx512(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                              int64_t o_rows) {
    const __m512 vs = _mm512_set1_ps(scale);
    for (int j = 0; j < nr; j += 16) {
        __m512 block_max = _mm512_set1_ps(-INFINITY), block_sum = _mm512_setzero_ps();
        for (int64_t k = 0; k < keys; k++) block_max = _mm512_max_ps(block_max, _mm512_loadu_ps(s + k * nr + j));
        const __m512 old_max = _mm512_loadu_ps(max + j), new_max = _mm512_max_ps(old_max, _mm512_mul_ps(block_max, vs));
        const __m512 correction = exp_avx512(_mm512_sub_ps(old_max, new_max));
        for (int64_t k = 0; k < keys; k++) {
            __m512 e = exp_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(s + k * nr + j), vs, new_max));
            _mm512_storeu_ps(s + k * nr + j, e);
            block_sum = _mm512_add_ps(block_sum, e);
        }
        _mm512_storeu_ps(sum + j, _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(sum + j), correction), block_sum));
        _mm512_storeu_ps(max + j, new_max);
        for (int64_t d = 0; d < o_rows; d++)
            _mm512_storeu_ps(o + d * nr + j, _mm512_mul_ps(_mm512_loadu_ps(o + d * nr + j), correction));
    }
}

/* sigmoid_gate_avx2's arithmetic on 16 lanes; a last part under 16 through the AVX2 kernel. */
static AVX512_TARGET void sigmoid_gate_avx512(float *x, const float *up, int64_t n, float alpha) {
    const __m512 one = _mm512_set1_ps(1.0f), neg_alpha = _mm512_set1_ps(-alpha);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        __m512 g = _mm512_div_ps(v, _mm512_add_ps(one, exp_avx512(_mm512_mul_ps(neg_alpha, v))));
        if (up) g = _mm512_mul_ps(g, _mm512_loadu_ps(up + i));
        _mm512_storeu_ps(x + i, g);
    }
    sigmoid_gate_avx2(x + i, up ? up + i : NULL, n - i, alpha);
}

/* norm_sum_scalar's partials i mod 16 as two vectors of eight doubles. */
static AVX512_TARGET double norm_sum_avx512(const float *x, int64_t n, double shift, bool square) {
    const __m512d vshift = _mm512_set1_pd(shift);
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i)), vshift);
        __m512d c = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8)), vshift);
        lo = _mm512_add_pd(lo, square ? _mm512_mul_pd(a, a) : a);
        hi = _mm512_add_pd(hi, square ? _mm512_mul_pd(c, c) : c);
    }
    double partials[NORM_LANES];
    _mm512_storeu_pd(partials, lo);
    _mm512_storeu_pd(partials + 8, hi);
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static AVX512_TARGET void norm_apply_avx512(float *y, const float *x, int64_t n, float shift, float inv, const float *w,
                                            const float *b) {
    const __m512 vshift = _mm512_set1_ps(shift), vinv = _mm512_set1_ps(inv);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vshift), vinv),
                                 _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, b ? _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, b + i)) : v);
    }
}

static const kernel_ops kernel_ops_avx512_table = {
    KERNEL_AVX512, AVX512_MR, AVX512_NR, 384, gemm_micro_avx512, pack_strip_avx2, pack_rows_avx2, convert_f16_avx2, convert_bf16_avx2,
    dot_avx2, dot4_avx2, scale_add_avx512, row_max_avx512, exp_sum_avx512, softmax_step_avx512, sigmoid_gate_avx512,
    rotate_half_avx2, norm_sum_avx512, norm_apply_avx512,
};

static const kernel_ops *kernel_ops_avx2(void) { return &kernel_ops_avx2_table; }
static const kernel_ops *kernel_ops_avx512(void) { return &kernel_ops_avx512_table; }

/* ---- q8 (section 7's q8 part): AVX2 sign trick, AVX-512 VNNI ---- */

/* Row r's 32 quants (bytes in k order, as int8 or already offset) into the group's [k4][mr][4] layout. */
static inline void q8_scatter_quads(uint8_t *block, int mr, int r, const uint32_t quads[Q8_BLOCK / 4]) {
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) memcpy(block + ((size_t)k4 * mr + r) * 4, &quads[k4], 4);
}

static inline void q8_store_zero_row(uint8_t *block, int mr, int r) {
    static const int8_t zeros[Q8_BLOCK];
    q8_store_row_block(block, mr, r, zeros, 0.0f);
}

/* Appends the outliers of row r's block b (bit mask over k) and stores the block's scale and
 * compensation (from the sum of its quants). */
static inline void q8_finish_row_block(uint8_t *block, int mr, int r, int64_t b, const float *xb, uint32_t outlier_mask,
                                       int32_t quant_sum, float scale, q8_outlier *outliers, int *n_outliers) {
    q8_add_outliers(outliers, n_outliers, r, b, xb, outlier_mask);
    q8_store_row_scale(block, mr, r, quant_sum, scale);
}

/* Σ of 32 int8: vpsadbw on q + 128 (four partial sums) less 32·128. */
static inline AVX2_TARGET int32_t q8_quant_sum_avx2(__m256i bytes) {
    __m256i sad = _mm256_sad_epu8(_mm256_xor_si256(bytes, _mm256_set1_epi8((char)0x80)), _mm256_setzero_si256());
    __m128i sum = _mm_add_epi64(_mm256_castsi256_si128(sad), _mm256_extracti128_si256(sad, 1));
    sum = _mm_add_epi64(sum, _mm_unpackhi_epi64(sum, sum));
    return _mm_cvtsi128_si32(sum) - 128 * Q8_BLOCK;
}

static inline AVX2_TARGET float hmax_avx2(__m256 m) {
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

static inline AVX2_TARGET float hmin_avx2(__m256 m) {
    __m128 h = _mm_min_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_min_ps(h, _mm_movehl_ps(h, h));
    h = _mm_min_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

/* AVX2 quantizer: the arithmetic and the outlier rule of q8_quantize_block (max, min, counts, 127/amax,
 * one multiply, round to nearest even); non-finite and tiny blocks go through the definition itself. */
static AVX2_TARGET void q8_pack_rows_avx2(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                          q8_outlier *outliers, int *n_outliers) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), big = _mm256_set1_ps(Q8_FLT_MAX);
    const __m256 inf = _mm256_set1_ps(INFINITY);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_zero_row(block, mr, r);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            __m256 v[4], a[4], large[4];
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_ps(xb + 8 * i);
                a[i] = _mm256_and_ps(v[i], abs_mask);
            }
            __m256 bad = _mm256_or_ps(_mm256_or_ps(_mm256_cmp_ps(a[0], big, _CMP_NLE_UQ), _mm256_cmp_ps(a[1], big, _CMP_NLE_UQ)),
                                      _mm256_or_ps(_mm256_cmp_ps(a[2], big, _CMP_NLE_UQ), _mm256_cmp_ps(a[3], big, _CMP_NLE_UQ)));
            float amax = hmax_avx2(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
            if (_mm256_movemask_ps(bad) || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            __m256 quarter = _mm256_set1_ps(amax * 0.25f);
            uint32_t large_mask = 0;
            for (int i = 0; i < 4; i++) {
                large[i] = _mm256_cmp_ps(a[i], quarter, _CMP_GT_OQ);
                large_mask |= (uint32_t)_mm256_movemask_ps(large[i]) << (8 * i);
            }
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (__builtin_popcount(large_mask) <= Q8_OUTLIERS_MAX) {
                __m256 rest = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(large[0], a[0]), _mm256_andnot_ps(large[1], a[1])),
                                            _mm256_max_ps(_mm256_andnot_ps(large[2], a[2]), _mm256_andnot_ps(large[3], a[3])));
                __m256 low = _mm256_min_ps(_mm256_min_ps(_mm256_blendv_ps(inf, a[0], large[0]), _mm256_blendv_ps(inf, a[1], large[1])),
                                           _mm256_min_ps(_mm256_blendv_ps(inf, a[2], large[2]), _mm256_blendv_ps(inf, a[3], large[3])));
                float rest_max = hmax_avx2(rest);
                if (q8_outliers_apart(hmin_avx2(low), rest_max)) {
                    outlier_mask = large_mask;
                    qmax = rest_max;
                    for (int i = 0; i < 4; i++) v[i] = _mm256_andnot_ps(large[i], v[i]);
                }
            }
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_zero_row(block, mr, r);
                q8_finish_row_block(block, mr, r, b, xb, outlier_mask, 0, 0.0f, outliers, n_outliers);
                continue;
            }
            __m256 inv = _mm256_set1_ps(127.0f / qmax);
            __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v[0], inv)), q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v[1], inv));
            __m256i q2 = _mm256_cvtps_epi32(_mm256_mul_ps(v[2], inv)), q3 = _mm256_cvtps_epi32(_mm256_mul_ps(v[3], inv));
            __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));
            bytes = _mm256_permutevar8x32_epi32(bytes, order);
            uint32_t quads[Q8_BLOCK / 4];
            _mm256_storeu_si256((__m256i *)quads, bytes);
            q8_scatter_quads(block, mr, r, quads);
            q8_finish_row_block(block, mr, r, b, xb, outlier_mask, q8_quant_sum_avx2(bytes), qmax / 127.0f, outliers,
                                n_outliers);
        }
    }
}

#define Q8_AVX2_MR 4
#define Q8_AVX2_NR 16

/* 4 rows × 16 columns (two vectors of 8 per row: each x quad's |x| serves both). Per four k: |x| as
 * unsigned bytes times w with x's sign (vpsignb) in vpmaddubsw (pairs ≤ 2·127·127, no saturation),
 * vpmaddwd with ones into int32. The 8 int32 sums fill half the registers, so the float tile lives in
 * c (L1) and takes each block's fma there. */
static AVX2_TARGET void q8_micro_avx2(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                                      int64_t ldc, bool accumulate) {
    enum { MR = Q8_AVX2_MR, NR = Q8_AVX2_NR }; /* NR = Q8_STRIP: one whole strip */
    (void)b_hi;
    if (!accumulate)
        for (int r = 0; r < MR; r++) {
            _mm256_storeu_ps(c + r * ldc, _mm256_setzero_ps());
            _mm256_storeu_ps(c + r * ldc + 8, _mm256_setzero_ps());
        }
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        __m256i i00 = _mm256_setzero_si256(), i01 = i00, i10 = i00, i11 = i00, i20 = i00, i21 = i00, i30 = i00, i31 = i00;
        for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++) {
            const __m256i w0 = _mm256_load_si256((const __m256i *)(const void *)(bb + k4 * NR * 4));
            const __m256i w1 = _mm256_load_si256((const __m256i *)(const void *)(bb + k4 * NR * 4 + 32));
            const uint8_t *quads = ab + k4 * MR * 4;
#define Q8_AVX2_ROW(r)                                                                                      \
    {                                                                                                       \
        const __m256i xv = _mm256_broadcastd_epi32(_mm_loadu_si32(quads + 4 * (r))), xa = _mm256_abs_epi8(xv); \
        i##r##0 = _mm256_add_epi32(i##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w0, xv)), ones)); \
        i##r##1 = _mm256_add_epi32(i##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(xa, _mm256_sign_epi8(w1, xv)), ones)); \
    }
            Q8_AVX2_ROW(0) Q8_AVX2_ROW(1) Q8_AVX2_ROW(2) Q8_AVX2_ROW(3)
#undef Q8_AVX2_ROW
        }
        const float *sw = (const float *)(const void *)(bb + NR * Q8_BLOCK);
        const float *sx = (const float *)(const void *)(ab + MR * Q8_BLOCK);
        const __m256 sw0 = _mm256_loadu_ps(sw), sw1 = _mm256_loadu_ps(sw + 8);
#define Q8_AVX2_SCALE(r)                                                                                    \
    {                                                                                                       \
        const __m256 s = _mm256_broadcast_ss(sx + (r));                                                     \
        float *cr = c + (r) * ldc;                                                                          \
        _mm256_storeu_ps(cr, _mm256_fmadd_ps(_mm256_cvtepi32_ps(i##r##0), _mm256_mul_ps(s, sw0), _mm256_loadu_ps(cr))); \
        _mm256_storeu_ps(cr + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(i##r##1), _mm256_mul_ps(s, sw1), _mm256_loadu_ps(cr + 8))); \
    }
        Q8_AVX2_SCALE(0) Q8_AVX2_SCALE(1) Q8_AVX2_SCALE(2) Q8_AVX2_SCALE(3)
#undef Q8_AVX2_SCALE
    }
}

/* q8_strip_outliers_fn: per outlier, byte k % 4 of each column's quad sign-extended by two shifts, then
 * the definition's two products and sum, eight columns at once (a last part under eight through the
 * definition). */
static AVX2_TARGET void q8_strip_outliers_avx2(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                               const q8_outlier *outliers, int n_outliers) {
    const int whole = nj & ~7;
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES, quad = (size_t)(out->k / 4) * Q8_STRIP * 4;
        const __m128i up = _mm_cvtsi32_si128(24 - 8 * (out->k % 4)), down = _mm_cvtsi32_si128(24);
        const __m256 value = _mm256_set1_ps(out->value);
        float *row = c + out->row * ldc;
        for (int j = 0; j < whole; j += 8) {
            const uint8_t *column = q8_strip_column(b + block, b_hi + block, j); /* 8 | 16: never straddles */
            __m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(column + quad));
            __m256 w = _mm256_cvtepi32_ps(_mm256_sra_epi32(_mm256_sll_epi32(q, up), down));
            __m256 term = _mm256_mul_ps(value, _mm256_mul_ps(w, _mm256_loadu_ps((const float *)(const void *)(column + Q8_STRIP * Q8_BLOCK))));
            _mm256_storeu_ps(row + j, _mm256_add_ps(_mm256_loadu_ps(row + j), term));
        }
        for (int j = whole; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

static const q8_kernels q8_kernels_avx2_table = {
    "avx2", Q8_AVX2_MR, Q8_AVX2_NR, 128, q8_micro_avx2, q8_pack_rows_avx2, q8_strip_outliers_avx2,
};

#define VNNI_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* AVX-512 quantizer: as q8_pack_rows_avx2. */
static VNNI_TARGET void q8_pack_rows_vnni(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                          q8_outlier *outliers, int *n_outliers) {
    const __m512 big = _mm512_set1_ps(Q8_FLT_MAX), inf = _mm512_set1_ps(INFINITY);
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r >= rows) {
                q8_store_zero_row(block, mr, r);
                continue;
            }
            const float *xb = x + r * ldx + b * Q8_BLOCK;
            __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
            __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1);
            __mmask16 bad = _mm512_cmp_ps_mask(a0, big, _CMP_NLE_UQ) | _mm512_cmp_ps_mask(a1, big, _CMP_NLE_UQ);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
            if (bad || amax < Q8_TINY) { /* rare: the definition */
                q8_pack_row_block_scalar(block, mr, r, xb, b, outliers, n_outliers);
                continue;
            }
            __m512 quarter = _mm512_set1_ps(amax * 0.25f);
            __mmask16 l0 = _mm512_cmp_ps_mask(a0, quarter, _CMP_GT_OQ), l1 = _mm512_cmp_ps_mask(a1, quarter, _CMP_GT_OQ);
            uint32_t outlier_mask = 0;
            float qmax = amax;
            if (__builtin_popcount((unsigned)l0) + __builtin_popcount((unsigned)l1) <= Q8_OUTLIERS_MAX) {
                float rest = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_maskz_mov_ps((__mmask16)~l0, a0),
                                                                _mm512_maskz_mov_ps((__mmask16)~l1, a1)));
                float low = _mm512_reduce_min_ps(_mm512_min_ps(_mm512_mask_mov_ps(inf, l0, a0), _mm512_mask_mov_ps(inf, l1, a1)));
                if (q8_outliers_apart(low, rest)) {
                    outlier_mask = (uint32_t)l0 | (uint32_t)l1 << 16;
                    qmax = rest;
                    v0 = _mm512_maskz_mov_ps((__mmask16)~l0, v0);
                    v1 = _mm512_maskz_mov_ps((__mmask16)~l1, v1);
                }
            }
            if (qmax < Q8_TINY) { /* only outliers: the rest quantizes to zeros */
                q8_store_zero_row(block, mr, r);
                q8_finish_row_block(block, mr, r, b, xb, outlier_mask, 0, 0.0f, outliers, n_outliers);
                continue;
            }
            __m512 inv = _mm512_set1_ps(127.0f / qmax);
            __m128i b0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
            __m128i b1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
            __m256i bytes = _mm256_inserti128_si256(_mm256_castsi128_si256(b0), b1, 1);
            uint32_t quads[Q8_BLOCK / 4];
            _mm256_storeu_si256((__m256i *)quads, bytes);
            q8_scatter_quads(block, mr, r, quads);
            q8_finish_row_block(block, mr, r, b, xb, outlier_mask, q8_quant_sum_avx2(bytes), qmax / 127.0f, outliers,
                                n_outliers);
        }
    }
}

#define Q8_VNNI_MR 4
#define Q8_VNNI_NR 32
#define Q8_VNNI_ROWS(X) X(0) X(1) X(2) X(3)

/* 4 rows × 32 columns (two strips): 8 int32 block accumulators started at each row's −128·Σqx, 8 float
 * accumulators. vpdpbusd adds (w+128)·qx over four k per lane (weights flipped to unsigned by one xor
 * per vector): the block sum is exact. Four rows, not the six the registers would hold: on Zen 5 the
 * 4-row tile ran 720–734 GOP/s on L1-resident data against 700 for 6 rows (5 rows: 723), and the
 * model's shapes 3 % faster (2026-12-04). */
static VNNI_TARGET void q8_micro_vnni(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                                      int64_t ldc, bool accumulate) {
    enum { MR = Q8_VNNI_MR, NR = Q8_VNNI_NR };
#define VNNI_DECLARE(r)                                                                     \
    __m512 f##r##l = accumulate ? _mm512_loadu_ps(c + (r) * ldc) : _mm512_setzero_ps();     \
    __m512 f##r##h = accumulate ? _mm512_loadu_ps(c + (r) * ldc + 16) : _mm512_setzero_ps(); \
    __m512i s##r##l, s##r##h;
#define VNNI_START(r) s##r##l = s##r##h = _mm512_set1_epi32(comps[r]);
#define VNNI_STEP(r)                                                                        \
    {                                                                                       \
        int32_t q;                                                                          \
        memcpy(&q, ab + (k4 * MR + (r)) * 4, 4);                                            \
        __m512i xv = _mm512_set1_epi32(q);                                                  \
        s##r##l = _mm512_dpbusd_epi32(s##r##l, w0, xv);                                     \
        s##r##h = _mm512_dpbusd_epi32(s##r##h, w1, xv);                                     \
    }
#define VNNI_SCALE(r)                                                                       \
    {                                                                                       \
        __m512 sx = _mm512_set1_ps(sxs[r]);                                                 \
        f##r##l = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##l), _mm512_mul_ps(sx, sw_l), f##r##l);          \
        f##r##h = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s##r##h), _mm512_mul_ps(sx, sw_h), f##r##h);          \
    }
#define VNNI_STORE(r) _mm512_storeu_ps(c + (r) * ldc, f##r##l), _mm512_storeu_ps(c + (r) * ldc + 16, f##r##h);
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    Q8_VNNI_ROWS(VNNI_DECLARE)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR);
        const uint8_t *bl = b + blk * Q8_STRIP_BLOCK_BYTES, *bh = b_hi + blk * Q8_STRIP_BLOCK_BYTES;
        int32_t comps[MR];
        memcpy(comps, ab + MR * (Q8_BLOCK + 4), sizeof comps);
        Q8_VNNI_ROWS(VNNI_START)
        /* written out: with a loop GCC copies every accumulator twice per step */
#define VNNI_K4(step)                                                                       \
    {                                                                                       \
        const int k4 = (step);                                                              \
        const __m512i w0 = _mm512_xor_si512(_mm512_load_si512((const void *)(bl + k4 * Q8_STRIP * 4)), flip); \
        const __m512i w1 = _mm512_xor_si512(_mm512_load_si512((const void *)(bh + k4 * Q8_STRIP * 4)), flip); \
        Q8_VNNI_ROWS(VNNI_STEP)                                                             \
    }
        VNNI_K4(0) VNNI_K4(1) VNNI_K4(2) VNNI_K4(3) VNNI_K4(4) VNNI_K4(5) VNNI_K4(6) VNNI_K4(7)
#undef VNNI_K4
        const __m512 sw_l = _mm512_load_ps((const void *)(bl + Q8_STRIP * Q8_BLOCK));
        const __m512 sw_h = _mm512_load_ps((const void *)(bh + Q8_STRIP * Q8_BLOCK));
        float sxs[MR];
        memcpy(sxs, ab + MR * Q8_BLOCK, sizeof sxs);
        Q8_VNNI_ROWS(VNNI_SCALE)
    }
    Q8_VNNI_ROWS(VNNI_STORE)
#undef VNNI_DECLARE
#undef VNNI_START
#undef VNNI_STEP
#undef VNNI_SCALE
#undef VNNI_STORE
}

static const q8_kernels q8_kernels_vnni_table = {
    /* outliers are ~0.3 % of a q8 embedding: no 512-bit copy */
    "avx512-vnni", Q8_VNNI_MR, Q8_VNNI_NR, 512, q8_micro_vnni, q8_pack_rows_vnni, q8_strip_outliers_avx2,
};

static const q8_kernels *q8_kernels_avx2(void) { return &q8_kernels_avx2_table; }
static const q8_kernels *q8_kernels_avx512vnni(void) { return &q8_kernels_vnni_table; }

#else /* not x86-64, or a scalar-only build */
static const kernel_ops *kernel_ops_avx2(void) { return NULL; }
static const kernel_ops *kernel_ops_avx512(void) { return NULL; }
static const q8_kernels *q8_kernels_avx2(void) { return NULL; }
static const q8_kernels *q8_kernels_avx512vnni(void) { return NULL; }
#endif
