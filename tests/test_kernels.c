/* Kernels (section 7) and the thread pool (section 2): every kernel path this machine can run,
 * against double-precision naive references, with identical results for any thread count. */
#include "../abc.c"
#include "test.h"

#include <float.h>

/* ---- helpers ---- */

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static float rand_uniform(void) { /* [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}
static void fill_random(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = rand_uniform() * scale;
}

static uint16_t f32_to_bf16_bits(float f) { /* round to nearest even; inputs are finite */
    uint32_t b;
    memcpy(&b, &f, 4);
    return (uint16_t)((b + 0x7fff + ((b >> 16) & 1)) >> 16);
}
static uint16_t f32_to_f16_bits(float f) { /* normal range only (test data is), round to nearest even */
    uint32_t b;
    memcpy(&b, &f, 4);
    uint32_t sign = (b >> 16) & 0x8000;
    int32_t e = (int32_t)((b >> 23) & 0xff) - 127 + 15;
    uint32_t m = b & 0x7fffff;
    if (e <= 0) return (uint16_t)sign; /* flush tiny values */
    uint32_t h = ((uint32_t)e << 10) | (m >> 13);
    uint32_t rest = m & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

/* Kernel paths this machine runs (the scalar one always). */
static int available_paths(int paths[KERNEL_PATH_COUNT]) {
    cpu_features f = cpu_features_detect();
    int count = 0;
    for (int p = 0; p < KERNEL_PATH_COUNT; p++) {
        if (!kernel_path_supported(&f, p)) continue;
        thread_pool probe = {.kernel_path = p};
        if (p != KERNEL_SCALAR && kernel_ops_for(&probe)->path != p) continue; /* not compiled in */
        paths[count++] = p;
    }
    return count;
}

static thread_pool *make_pool(int threads, int path) {
    thread_pool *pool = NULL;
    abc_status st = thread_pool_new(threads, &pool);
    CHECK(st == ABC_OK && pool, "thread_pool_new(%d) failed", threads);
    if (pool) pool->kernel_path = path;
    return pool;
}

/* A weight matrix stored as `dtype`, with the f32 values it stands for. */
typedef struct {
    tensor t;
    void *storage;
    float *values; /* [out][in] as the kernels must see them */
} test_weights;

static test_weights make_weights(int64_t out, int64_t in, uint32_t dtype, float scale) {
    test_weights w;
    memset(&w, 0, sizeof w);
    size_t count = (size_t)(out * in);
    w.values = malloc((count ? count : 1) * sizeof(float));
    fill_random(w.values, count, scale);
    if (dtype == DT_F32) {
        w.storage = malloc((count ? count : 1) * sizeof(float));
        memcpy(w.storage, w.values, count * sizeof(float));
    } else {
        uint16_t *s = malloc((count ? count : 1) * sizeof(uint16_t));
        for (size_t i = 0; i < count; i++) {
            s[i] = dtype == DT_BF16 ? f32_to_bf16_bits(w.values[i]) : f32_to_f16_bits(w.values[i]);
            w.values[i] = dtype == DT_BF16 ? bf16_to_f32(s[i]) : f16_to_f32(s[i]);
        }
        w.storage = s;
    }
    w.t.dtype = dtype;
    w.t.ndim = 2;
    w.t.shape[0] = out;
    w.t.shape[1] = in;
    w.t.shape[2] = w.t.shape[3] = 1;
    w.t.data = w.storage;
    w.t.nbytes = count * dtype_size(dtype);
    return w;
}
static void free_weights(test_weights *w) {
    free(w->storage);
    free(w->values);
}

/* max over outputs of |y − ref| / (Σ|x·w| + |b|): error relative to the terms' magnitude. */
static double matmul_error(const float *y, const float *x, const float *w, const float *bias, int64_t n,
                           int64_t in, int64_t out) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < out; j++) {
            double s = bias ? bias[j] : 0, mag = bias ? fabs(bias[j]) : 0;
            for (int64_t k = 0; k < in; k++) {
                double p = (double)x[i * in + k] * w[j * in + k];
                s += p;
                mag += fabs(p);
            }
            double e = fabs(y[i * out + j] - s) / (mag > 0 ? mag : 1);
            if (!(e <= worst)) worst = e; /* NaN sticks */
        }
    return worst;
}

static double matmul_tolerance(int64_t in) { return 4.0 * FLT_EPSILON * (sqrt((double)in) + 2.0); }

static const char *dtype_label(uint32_t d) { return d == DT_F32 ? "f32" : d == DT_F16 ? "f16" : "bf16"; }

/* ---- thread pool ---- */

typedef struct {
    _Atomic int *hits;
    _Atomic int bad_thread;
    int threads;
} pool_probe;

static void pool_probe_task(void *arg, int task, int thread) {
    pool_probe *p = arg;
    atomic_fetch_add(&p->hits[task], 1);
    if (thread < 0 || thread >= p->threads) atomic_store(&p->bad_thread, 1);
}

static void test_pool_runs_every_task_once(void) {
    for (int threads = 1; threads <= 4; threads++) {
        thread_pool *pool = make_pool(threads, KERNEL_SCALAR);
        if (!pool) return;
        CHECK(thread_pool_size(pool) == threads, "size %d", thread_pool_size(pool));
        for (int round = 0; round < 200; round++) {
            int n_tasks = (round * 7) % 37 + 1;
            _Atomic int hits[64];
            for (int i = 0; i < 64; i++) atomic_store(&hits[i], 0);
            pool_probe p = {.hits = hits, .threads = threads};
            atomic_store(&p.bad_thread, 0);
            thread_pool_run(pool, n_tasks, pool_probe_task, &p);
            for (int i = 0; i < 64; i++)
                CHECK(atomic_load(&hits[i]) == (i < n_tasks), "threads %d round %d task %d ran %d times", threads,
                      round, i, atomic_load(&hits[i]));
            CHECK(!atomic_load(&p.bad_thread), "thread index out of range");
        }
        thread_pool_run(pool, 0, pool_probe_task, NULL); /* nothing to do: returns at once */
        thread_pool_free(pool);
    }
    thread_pool *pool = NULL;
    CHECK(thread_pool_new(0, &pool) == ABC_OK && pool, "default thread count");
    if (pool) CHECK(thread_pool_size(pool) >= 1, "size %d", thread_pool_size(pool));
    thread_pool_free(pool);
    thread_pool_free(NULL);
}

#ifdef ABC_FAULT_INJECTION
static void test_pool_out_of_memory(void) {
    for (long fail_at = 0; fail_at < 12; fail_at++) {
        atomic_store(&abc_test_fail_after, fail_at);
        thread_pool *pool = NULL;
        abc_status st = thread_pool_new(3, &pool);
        atomic_store(&abc_test_fail_after, -1);
        CHECK((st == ABC_OK) == (pool != NULL), "status %d with pool %p", st, (void *)pool);
        CHECK(st == ABC_OK || st == ABC_ERR_NOMEM, "status %d", st);
        thread_pool_free(pool);
    }
}
#endif

static void test_cpu_features(void) {
    cpu_features f = cpu_features_detect();
    int best = kernel_path_best(&f);
    CHECK(kernel_path_supported(&f, best), "best path %s unsupported", kernel_path_name(best));
    CHECK(!f.avx512 || f.avx2_fma, "AVX-512 implies AVX2 here");
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    printf("     kernel paths on this machine:");
    for (int i = 0; i < count; i++) printf(" %s", kernel_path_name(paths[i]));
    printf("\n");
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        CHECK(f.avx2_fma, "cpuid says AVX2+FMA but detection missed it");
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        CHECK(f.avx512, "cpuid says AVX-512 but detection missed it");
#endif
}

/* ---- conversions ---- */

static void test_half_conversions(void) {
    CHECK(f16_to_f32(0x3c00) == 1.0f, "1");
    CHECK(f16_to_f32(0xc000) == -2.0f, "-2");
    CHECK(f16_to_f32(0x0001) == 0x1p-24f, "smallest subnormal");
    CHECK(f16_to_f32(0x03ff) == 0x3ffp-24f, "largest subnormal");
    CHECK(f16_to_f32(0x7bff) == 65504.0f, "max");
    CHECK(isinf(f16_to_f32(0x7c00)) && f16_to_f32(0xfc00) < 0, "inf");
    CHECK(isnan(f16_to_f32(0x7e00)), "nan");
    CHECK(signbit(f16_to_f32(0x8000)) && f16_to_f32(0x8000) == 0.0f, "-0");
    CHECK(bf16_to_f32(0x3f80) == 1.0f && bf16_to_f32(0xc0a0) == -5.0f, "bf16");
    /* every path's converters agree with the scalar ones on all 65536 inputs */
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    uint16_t *all = malloc(65536 * sizeof *all);
    float *ref = malloc(65536 * sizeof *ref), *got = malloc(65536 * sizeof *got);
    for (int i = 0; i < 65536; i++) all[i] = (uint16_t)i;
    for (int p = 0; p < count; p++) {
        thread_pool probe = {.kernel_path = paths[p]};
        const kernel_ops *ops = kernel_ops_for(&probe);
        for (int which = 0; which < 2; which++) {
            convert_fn scalar = which ? convert_bf16_scalar : convert_f16_scalar;
            convert_fn simd = which ? ops->from_bf16 : ops->from_f16;
            scalar(ref, all, 65536);
            /* odd offsets and lengths reach the tails */
            simd(got, all, 65536 - 3);
            simd(got + 65533, all + 65533, 3);
            int bad = 0;
            for (int i = 0; i < 65536; i++) {
                bool same = isnan(ref[i]) ? isnan(got[i]) : memcmp(&ref[i], &got[i], 4) == 0;
                if (!same && bad++ < 3)
                    CHECK(same, "%s %s of 0x%04x: %g vs %g", kernel_path_name(paths[p]), which ? "bf16" : "f16", i,
                          got[i], ref[i]);
            }
            CHECK(bad == 0, "%d mismatches", bad);
        }
    }
    free(all);
    free(ref);
    free(got);
}

static void test_tensor_row(void) {
    for (uint32_t dtype = DT_F32; dtype <= DT_BF16; dtype++) {
        test_weights w = make_weights(5, 7, dtype, 1.0f);
        float row[7];
        tensor_row_f32(&w.t, 3, row);
        CHECK(memcmp(row, w.values + 21, sizeof row) == 0, "%s row 3", dtype_label(dtype));
        free_weights(&w);
    }
}

/* ---- matmul ---- */

/* One shape on one path, every dtype, with and without bias, threads 1..4 bit-identical. */
static void check_matmul_shape(int path, int64_t n, int64_t in, int64_t out, thread_pool *pools[4]) {
    float *x = malloc((size_t)(n * in + 1) * sizeof(float));
    float *bias = malloc((size_t)(out + 1) * sizeof(float));
    float *y[4];
    for (int t = 0; t < 4; t++) y[t] = malloc((size_t)(n * out + 1) * sizeof(float));
    fill_random(x, (size_t)(n * in), 1.0f);
    fill_random(bias, (size_t)out, 0.5f);
    for (uint32_t dtype = DT_F32; dtype <= DT_BF16; dtype++) {
        test_weights w = make_weights(out, in, dtype, 1.0f);
        for (int with_bias = 0; with_bias < 2; with_bias++) {
            tensor b = {.dtype = DT_F32, .ndim = 1, .shape = {out, 1, 1, 1}, .data = bias};
            for (int t = 0; t < 4; t++) {
                for (int64_t i = 0; i < n * out; i++) y[t][i] = NAN; /* every output must be written */
                matmul(pools[t], y[t], x, n, &w.t, with_bias ? &b : NULL);
            }
            double e = matmul_error(y[0], x, w.values, with_bias ? bias : NULL, n, in, out);
            CHECK(e <= matmul_tolerance(in), "%s %s n=%lld in=%lld out=%lld bias=%d: error %.3g", kernel_path_name(path),
                  dtype_label(dtype), (long long)n, (long long)in, (long long)out, with_bias, e);
            for (int t = 1; t < 4; t++)
                CHECK(memcmp(y[0], y[t], (size_t)(n * out) * sizeof(float)) == 0,
                      "%s %s n=%lld in=%lld out=%lld: %d threads differ from 1", kernel_path_name(path),
                      dtype_label(dtype), (long long)n, (long long)in, (long long)out, t + 1);
        }
        if (dtype == DT_F32) { /* matmul_f32 is the same product */
            matmul_f32(pools[1], y[1], x, n, w.values, out, in, bias);
            double e = matmul_error(y[1], x, w.values, bias, n, in, out);
            CHECK(e <= matmul_tolerance(in), "matmul_f32 error %.3g", e);
        }
        free_weights(&w);
    }
    free(x);
    free(bias);
    for (int t = 0; t < 4; t++) free(y[t]);
}

static void test_matmul_all_paths(void) {
    static const int64_t shapes[][3] = {
        {1, 1, 1},     {1, 17, 33},   {2, 33, 17},  {3, 127, 5},   {4, 3, 1},     {5, 1, 7},
        {6, 16, 16},   {7, 255, 31},  {13, 257, 49}, {17, 33, 127}, {31, 300, 65}, {33, 17, 3},
        {64, 512, 96}, {97, 129, 200}, {127, 64, 385}, {12, 600, 24}, {50, 1030, 40}, {3, 2100, 9},
    };
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    for (int p = 0; p < count; p++) {
        thread_pool *pools[4];
        for (int t = 0; t < 4; t++) pools[t] = make_pool(t + 1, paths[p]);
        if (!pools[0] || !pools[1] || !pools[2] || !pools[3]) return;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_matmul_shape(paths[p], shapes[s][0], shapes[s][1], shapes[s][2], pools);
        for (int t = 0; t < 4; t++) thread_pool_free(pools[t]);
    }
}

/* The no-pool call (single thread, dot-product path) gives the reference result too. */
static void test_matmul_without_pool(void) {
    int64_t n = 9, in = 70, out = 11;
    float x[9 * 70], y[9 * 11];
    fill_random(x, sizeof x / sizeof x[0], 1.0f);
    test_weights w = make_weights(out, in, DT_BF16, 1.0f);
    matmul(NULL, y, x, n, &w.t, NULL);
    CHECK(matmul_error(y, x, w.values, NULL, n, in, out) <= matmul_tolerance(in), "no pool");
    free_weights(&w);
}

/* ---- softmax pieces ---- */

static void test_exp_sum_and_row_max(void) {
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    for (int p = 0; p < count; p++) {
        thread_pool probe = {.kernel_path = paths[p]};
        const kernel_ops *ops = kernel_ops_for(&probe);
        for (int64_t n = 1; n <= 70; n += (n < 20 ? 1 : 7)) {
            float s[80], orig[80];
            for (int64_t j = 0; j < n; j++) orig[j] = s[j] = rand_uniform() * 60.0f - 30.0f;
            float scale = 1.7f, mx = ops->row_max(s, n) * scale;
            float want_max = -INFINITY;
            for (int64_t j = 0; j < n; j++) want_max = MAX(want_max, orig[j]);
            CHECK(ops->row_max(s, n) == want_max, "%s row_max n=%lld", kernel_path_name(paths[p]), (long long)n);
            s[n] = 12345.0f; /* must not be touched */
            float sum = ops->exp_sum(s, n, scale, mx);
            double want_sum = 0, allowed_sum = 0, worst = 0;
            for (int64_t j = 0; j < n; j++) {
                double product = (double)orig[j] * scale, e = exp(product - mx);
                want_sum += e;
                /* a few ulp of e, plus the rounding of s·scale in float (FMA or not), plus the clamp
                 * below e^-87 */
                double allowed = e * (4e-7 + (fabs(product) + fabs(product - mx)) * 1.2e-7) + 2e-38;
                allowed_sum += allowed;
                worst = MAX(worst, fabs(s[j] - e) / allowed);
            }
            CHECK(worst <= 1.0, "%s exp n=%lld: error %.3g of allowed", kernel_path_name(paths[p]), (long long)n, worst);
            CHECK(fabs(sum - want_sum) <= allowed_sum + 1e-6 * want_sum, "%s exp sum n=%lld: %g vs %g", kernel_path_name(paths[p]),
                  (long long)n, sum, want_sum);
            CHECK(s[n] == 12345.0f, "exp_sum wrote past n");
        }
        /* with scale 1 and max 0 the argument is exact: the exponential itself within 2 ulp */
        float exact[37];
        double worst = 0;
        for (int round = 0; round < 200; round++) {
            for (int j = 0; j < 37; j++) exact[j] = (rand_uniform() - 1.0f) * 43.0f; /* [-86, 0] */
            float copy[37];
            memcpy(copy, exact, sizeof copy);
            ops->exp_sum(copy, 37, 1.0f, 0.0f);
            for (int j = 0; j < 37; j++) {
                double e = exp((double)exact[j]);
                worst = MAX(worst, fabs(copy[j] - e) / e);
            }
        }
        CHECK(worst <= 2.4e-7, "%s exp relative error %.3g", kernel_path_name(paths[p]), worst);
        /* the deep tail underflows towards 0 without NaN or garbage */
        float deep[9] = {-100, -200, -1000, -88, -87, -3.4e38f, 0, -50, -1e-30f};
        ops->exp_sum(deep, 9, 1.0f, 0.0f);
        for (int j = 0; j < 9; j++)
            CHECK(deep[j] >= 0 && deep[j] <= 1.0f && !isnan(deep[j]), "%s deep exp[%d] = %g", kernel_path_name(paths[p]),
                  j, deep[j]);
        CHECK(deep[6] == 1.0f && fabs(deep[7] - exp(-50.0)) <= 1e-6 * exp(-50.0), "exp(0), exp(-50)");
    }
}

/* DT_Q8's layout is not defined yet: matmul must not read it (ASan would see a 1-byte buffer overrun). */
static void test_matmul_q8_slot_reads_nothing(void) {
    uint8_t tiny[1] = {0};
    tensor w = {.dtype = DT_Q8, .ndim = 2, .shape = {5, 300, 1, 1}, .data = tiny, .nbytes = 1};
    float bias[5] = {1, 2, 3, 4, 5}, x[2 * 300] = {0}, y[2 * 5];
    tensor b = {.dtype = DT_F32, .ndim = 1, .shape = {5, 1, 1, 1}, .data = bias};
    thread_pool *pool = make_pool(2, KERNEL_SCALAR);
    matmul(pool, y, x, 2, &w, &b);
    for (int i = 0; i < 10; i++) CHECK(y[i] == bias[i % 5], "y[%d] = %g", i, y[i]);
    thread_pool_free(pool);
}

/* ---- attention ---- */

static void attention_reference(double *out, const float *q, const float *k, const float *v, int64_t n, int n_heads,
                                int n_kv, int hd, int64_t q_stride, int64_t kv_stride, bool causal) {
    double *s = malloc((size_t)n * sizeof(double));
    for (int h = 0; h < n_heads; h++) {
        int kvh = h / (n_heads / n_kv);
        for (int64_t i = 0; i < n; i++) {
            int64_t keys = causal ? i + 1 : n;
            double mx = -INFINITY, sum = 0;
            for (int64_t j = 0; j < keys; j++) {
                double d = 0;
                for (int c = 0; c < hd; c++) d += (double)q[i * q_stride + h * hd + c] * k[j * kv_stride + kvh * hd + c];
                s[j] = d / sqrt((double)hd);
                if (s[j] > mx) mx = s[j];
            }
            for (int64_t j = 0; j < keys; j++) sum += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < hd; c++) {
                double o = 0;
                for (int64_t j = 0; j < keys; j++) o += s[j] * v[j * kv_stride + kvh * hd + c];
                out[i * n_heads * hd + h * hd + c] = o / sum;
            }
        }
    }
    free(s);
}

static void check_attention_case(int path, thread_pool *pools[4], int64_t n, int n_heads, int n_kv, int hd,
                                 bool causal, bool packed_qkv) {
    /* packed_qkv: q, k, v interleaved in one row of 3·E as the ViT's fused projection leaves them */
    int64_t q_width = (int64_t)n_heads * hd, kv_width = (int64_t)n_kv * hd;
    int64_t q_stride = packed_qkv ? q_width + 2 * kv_width : q_width, kv_stride = packed_qkv ? q_stride : kv_width;
    float *buf = malloc((size_t)(n * (q_width + 2 * kv_width) + 1) * sizeof(float));
    fill_random(buf, (size_t)(n * (q_width + 2 * kv_width)), 2.0f);
    const float *q = buf, *k, *v;
    if (packed_qkv) {
        k = buf + q_width;
        v = buf + q_width + kv_width;
    } else {
        k = buf + n * q_width;
        v = k + n * kv_width;
    }
    double *ref = malloc((size_t)(n * q_width) * sizeof(double));
    attention_reference(ref, q, k, v, n, n_heads, n_kv, hd, q_stride, kv_stride, causal);
    float *out[4];
    for (int t = 0; t < 4; t++) {
        out[t] = malloc((size_t)(n * q_width) * sizeof(float));
        attention(pools[t], out[t], q, k, v, n, n_heads, n_kv, hd, q_stride, kv_stride, causal);
    }
    double worst = 0;
    for (int64_t i = 0; i < n * q_width; i++) {
        double e = fabs(out[0][i] - ref[i]);
        if (!(e <= worst)) worst = e;
    }
    /* |v| ≤ 2, so the outputs are ≤ 2 */
    CHECK(worst <= 2e-5 * (1 + sqrt((double)hd) / 4), "%s n=%lld heads=%d/%d hd=%d causal=%d packed=%d: error %.3g",
          kernel_path_name(path), (long long)n, n_heads, n_kv, hd, causal, packed_qkv, worst);
    for (int t = 1; t < 4; t++)
        CHECK(memcmp(out[0], out[t], (size_t)(n * q_width) * sizeof(float)) == 0,
              "%s attention n=%lld hd=%d: %d threads differ", kernel_path_name(path), (long long)n, hd, t + 1);
    for (int t = 0; t < 4; t++) free(out[t]);
    free(ref);
    free(buf);
}

static void test_attention_all_paths(void) {
    static const struct {
        int64_t n;
        int heads, kv, hd;
    } cases[] = {
        {1, 1, 1, 8}, {3, 2, 1, 16}, {17, 4, 2, 80}, {33, 3, 3, 5}, {127, 2, 2, 64}, {130, 6, 2, 128},
        {70, 2, 1, 33}, {200, 1, 1, 80},
    };
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    for (int p = 0; p < count; p++) {
        thread_pool *pools[4];
        for (int t = 0; t < 4; t++) pools[t] = make_pool(t + 1, paths[p]);
        if (!pools[0] || !pools[1] || !pools[2] || !pools[3]) return;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (int causal = 0; causal < 2; causal++)
                check_attention_case(paths[p], pools, cases[c].n, cases[c].heads, cases[c].kv, cases[c].hd, causal,
                                     c % 2 == 1);
        for (int t = 0; t < 4; t++) thread_pool_free(pools[t]);
    }
}

/* The row-at-a-time path: no pool, or heads too wide for the blocked path's scratch. */
static void test_attention_row_path(void) {
    thread_pool *none[4] = {NULL, NULL, NULL, NULL};
    check_attention_case(KERNEL_SCALAR, none, 37, 2, 1, 24, true, false);
    check_attention_case(KERNEL_SCALAR, none, 70, 3, 3, 16, false, true);
    int paths[KERNEL_PATH_COUNT];
    int count = available_paths(paths);
    for (int p = 0; p < count; p++) {
        thread_pool *pools[4];
        for (int t = 0; t < 4; t++) pools[t] = make_pool(t + 1, paths[p]);
        if (!pools[0] || !pools[1] || !pools[2] || !pools[3]) return;
        const kernel_ops *ops = kernel_ops_for(pools[0]);
        int wide = 1200;
        CHECK(attention_scratch_floats(ATTN_BQ, wide, wide + ops->nr, ops->mr) > pools[0]->scratch_floats,
              "head_dim %d should not fit the blocked path", wide);
        check_attention_case(paths[p], pools, 9, 2, 1, wide, true, true);
        check_attention_case(paths[p], pools, 70, 1, 1, wide, false, false);
        for (int t = 0; t < 4; t++) thread_pool_free(pools[t]);
    }
}

/* ---- norms ---- */

static void test_norms(void) {
    static const int64_t dims[] = {1, 3, 17, 64, 1280, 1537};
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        int64_t n = 5, dim = dims[d];
        float *x = malloc((size_t)(n * dim) * sizeof(float)), *w = malloc((size_t)dim * sizeof(float));
        float *b = malloc((size_t)dim * sizeof(float)), *y = malloc((size_t)(n * dim) * sizeof(float));
        fill_random(x, (size_t)(n * dim), 3.0f);
        fill_random(w, (size_t)dim, 1.0f);
        fill_random(b, (size_t)dim, 1.0f);
        x[dim / 2] = 300.0f; /* an outlier channel */
        x[dim + dim - 1] = -250.0f;
        double worst_rms = 0, worst_ln = 0;
        rms_norm(y, x, w, n, dim, 1e-6f);
        for (int64_t r = 0; r < n; r++) {
            double ss = 0;
            for (int64_t i = 0; i < dim; i++) ss += (double)x[r * dim + i] * x[r * dim + i];
            double inv = 1 / sqrt(ss / dim + 1e-6);
            for (int64_t i = 0; i < dim; i++) {
                double ref = w[i] * x[r * dim + i] * inv;
                worst_rms = MAX(worst_rms, fabs(y[r * dim + i] - ref));
            }
        }
        layer_norm(y, x, w, b, n, dim, 1e-6f);
        for (int64_t r = 0; r < n; r++) {
            double mean = 0, var = 0;
            for (int64_t i = 0; i < dim; i++) mean += x[r * dim + i];
            mean /= dim;
            for (int64_t i = 0; i < dim; i++) var += (x[r * dim + i] - mean) * (x[r * dim + i] - mean);
            double inv = 1 / sqrt(var / dim + 1e-6);
            for (int64_t i = 0; i < dim; i++) {
                double ref = (x[r * dim + i] - mean) * inv * w[i] + b[i];
                worst_ln = MAX(worst_ln, fabs(y[r * dim + i] - ref));
            }
        }
        /* outputs are O(√dim) at the outlier; 1e-6 relative to that */
        double scale = sqrt((double)dim);
        CHECK(worst_rms <= 1e-6 * scale, "rms_norm dim %lld: error %.3g", (long long)dim, worst_rms);
        CHECK(worst_ln <= 1e-6 * scale, "layer_norm dim %lld: error %.3g", (long long)dim, worst_ln);
        /* in place */
        float *copy = malloc((size_t)(n * dim) * sizeof(float));
        memcpy(copy, x, (size_t)(n * dim) * sizeof(float));
        rms_norm(y, x, w, n, dim, 1e-6f);
        rms_norm(copy, copy, w, n, dim, 1e-6f);
        CHECK(memcmp(copy, y, (size_t)(n * dim) * sizeof(float)) == 0, "rms_norm in place");
        free(copy);
        free(x);
        free(w);
        free(b);
        free(y);
    }
}

int main(void) {
    RUN_TEST(test_cpu_features);
    RUN_TEST(test_pool_runs_every_task_once);
#ifdef ABC_FAULT_INJECTION
    RUN_TEST(test_pool_out_of_memory);
#endif
    RUN_TEST(test_half_conversions);
    RUN_TEST(test_tensor_row);
    RUN_TEST(test_matmul_all_paths);
    RUN_TEST(test_matmul_without_pool);
    RUN_TEST(test_matmul_q8_slot_reads_nothing);
    RUN_TEST(test_attention_row_path);
    RUN_TEST(test_exp_sum_and_row_max);
    RUN_TEST(test_attention_all_paths);
    RUN_TEST(test_norms);
    return test_summary();
}
