
/* ================================================================================================
 * 7. Kernels: matmul, attention, norms
 *
 * One portable driver per operation, parameterised by a small table of ISA-specific pieces
 * (`kernel_ops`): the GEMM micro-kernel and its packers, dot products, the softmax pieces. The scalar
 * table here is the reference; sections 7b (x86: AVX2+FMA, AVX-512) and 7c (aarch64 NEON) add the SIMD
 * tables. Every function is compiled for the baseline target; SIMD functions carry their own target
 * attribute, so one binary picks the fastest path at run time (pool->kernel_path, which tests force).
 *
 * Determinism: every output element is computed by exactly one task, and its reduction order depends
 * only on the kernel path, the shapes and the fixed blocking constants (GEMM_KC, GEMV_CHUNK, ATTN_BK),
 * never on the thread count or the task partition: results are identical for any number of threads.
 *
 * GEMM (y = x·Wᵀ, W [out][in]): the output is cut into (row block × column block) tasks, columns first.
 * A task walks `in` in GEMM_KC slices; per slice it transposes its W columns into a packed panel
 * [nr-wide strips][kc][nr] (f16/bf16 become f32 here; the panel stays in L2), then for each group of mr
 * rows packs x as [kc][mr] and runs the mr×nr micro-kernel over the strips, adding each slice into y.
 * Up to GEMV_MAX_ROWS rows of x take a dot-product path that streams W once instead.
 * Attention: see its section below. Weights of dtype DT_Q8 take the integer GEMM of the q8 part below.
 * ================================================================================================ */

#define GEMM_KC 256          /* `in` slice per packed panel */
#define GEMM_NC_MAX 768      /* widest column block of any path (packed panel: GEMM_KC × nc floats) */
#define GEMM_MR_MAX 16
#define GEMM_MC_GROUPS 16    /* row groups of mr packed together (see matmul_gemm_task) */
#define GEMM_MC_ROWS (GEMM_MC_GROUPS * GEMM_MR_MAX)
#define GEMM_NR_MAX 64
#define GEMM_MIN_ROWS_PER_TASK 48
#define GEMM_PACK_SLACK 16
#define GEMV_MAX_ROWS 8      /* up to this many rows of x use the dot-product path */
#define GEMV_CHUNK 1024      /* `in` slice of the dot-product path */
#define GEMV_ROWS_PER_TASK 16
#define ATTN_BQ 192          /* query rows per attention task (rounded to the micro-kernel's columns) */
#define ATTN_BQ_CAUSAL 48    /* smaller under a causal mask: less work above the diagonal */
#define ATTN_BK 96           /* keys per online-softmax step (a multiple of every path's mr: no padded keys) */

/* c[mr][nr] (row stride ldc) = (accumulate ? c : 0) + a · b, with a packed [kc][mr] and b [kc][nr]. */
typedef void (*gemm_micro_fn)(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate);
/* dst[0..count) = W's row elements src[0..count) as f32. */
typedef void (*convert_fn)(float *dst, const void *src, int64_t count);
/* a_pack[k][r] = x[r][k] for r < rows, 0 for rows ≤ r < mr (x: row stride ldx); may write up to
 * GEMM_PACK_SLACK floats past a_pack[kc·mr]. */
typedef void (*pack_rows_fn)(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc);
/* strip[k][j] = W[row0 + j][k0 + k] as f32 for j < rows, 0 for rows ≤ j < nr (W: `ld` elements a row). */
typedef void (*pack_strip_fn)(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                              int64_t k0, int64_t kc);

typedef struct {
    int path; /* KERNEL_* */
    int mr, nr;
    int nc; /* widest column block: its GEMM_KC × nc packed panel should stay in L2 */
    gemm_micro_fn micro;
    pack_strip_fn pack_strip;
    pack_rows_fn pack_rows;
    convert_fn from_f16, from_bf16;
    float (*dot)(const float *a, const float *b, int64_t n);
    /* out[i] = dot(w, x[i]) for 4 rows of x, each with exactly dot's arithmetic (the few-rows matmul) */
    void (*dot4)(const float *w, const float *const x[4], int64_t n, float out[4]);
    void (*scale_add)(float *y, float alpha, const float *x, float beta, int64_t n); /* y = α·y + β·x */
    float (*row_max)(const float *x, int64_t n);
    /* s[j] = exp(s[j]·scale − max) for j < n; returns their sum */
    float (*exp_sum)(float *s, int64_t n, float scale, float max);
    /* One online-softmax step for nr queries over `keys` rows of scores s[key][nr] (a lane per query):
     *   m'[j] = max(max[j], scale·max_k s[k][j]),   c[j] = e^(max[j] − m'[j]),
     *   s[k][j] ← e^(s[k][j]·scale − m'[j]),       sum[j] ← sum[j]·c[j] + Σ_k s[k][j] (k in order),
     *   o[d][j] ← o[d][j]·c[j] for d < o_rows,     max ← m'. */
    void (*softmax_step)(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o, int64_t o_rows);
    /* x[i] ← x[i]·σ(α·x[i]) (· up[i] when up is not NULL): QuickGELU (α = 1.702) and SwiGLU (α = 1) */
    void (*sigmoid_gate)(float *x, const float *up, int64_t n, float alpha);
    /* rotate-half rotary embedding of one head: v[i], v[i + half] ← v[i]·cos[i] − v[i + half]·sin[i],
     * v[i + half]·cos[i] + v[i]·sin[i] for i < half (plain products and sums: bit-identical on every path) */
    void (*rotate_half)(float *v, const float *cos_a, const float *sin_a, int64_t half);
    /* Σ (x[i] − shift), or Σ (x[i] − shift)² when `square`, in double as NORM_LANES partial sums
     * (norm_sum_scalar's order: bit-identical on every path) */
    double (*norm_sum)(const float *x, int64_t n, double shift, bool square);
    /* y[i] = (x[i] − shift)·inv·w[i] (+ b[i] when b is not NULL), products and sum in that order; y may be x */
    void (*norm_apply)(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b);
} kernel_ops;

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
static int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

/* ---- element conversions ---- */

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
    uint32_t bits;
    if (exponent == 0) {
        float v = (float)mantissa * 0x1p-24f; /* zero or subnormal: exact in f32 */
        memcpy(&bits, &v, sizeof bits);
        bits |= sign;
    } else if (exponent == 31) {
        bits = sign | 0x7f800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 112) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* Element i of a weight array of dtype f32/f16/bf16. */
static float weight_element(const void *w, uint32_t dtype, int64_t i) {
    switch (dtype) {
    case DT_F32: return ((const float *)w)[i];
    case DT_F16: return f16_to_f32(((const uint16_t *)w)[i]);
    case DT_BF16: return bf16_to_f32(((const uint16_t *)w)[i]);
    default: return 0.0f; /* DT_Q8 never comes here: matmul_q8, tensor_row_f32 */
    }
}

static void convert_f16_scalar(float *dst, const void *src, int64_t count) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < count; i++) dst[i] = f16_to_f32(s[i]);
}

static void convert_bf16_scalar(float *dst, const void *src, int64_t count) {
    const uint16_t *s = src;
    for (int64_t i = 0; i < count; i++) dst[i] = bf16_to_f32(s[i]);
}

/* ---- scalar reference pieces ---- */

#define SCALAR_MR 4
#define SCALAR_NR 8

static void gemm_micro_scalar(int64_t kc, const float *a, const float *b, float *c, int64_t ldc, bool accumulate) {
    float acc[SCALAR_MR][SCALAR_NR];
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + k * SCALAR_NR;
        for (int i = 0; i < SCALAR_MR; i++) {
            float ai = a[k * SCALAR_MR + i];
            for (int j = 0; j < SCALAR_NR; j++) acc[i][j] += ai * bk[j];
        }
    }
    for (int i = 0; i < SCALAR_MR; i++)
        for (int j = 0; j < SCALAR_NR; j++) c[i * ldc + j] = acc[i][j];
}

static void pack_strip_scalar(float *strip, int nr, const void *w, uint32_t dtype, int64_t ld, int64_t row0, int rows,
                              int64_t k0, int64_t kc) {
    for (int j = 0; j < nr; j++) {
        if (j >= rows) {
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = 0.0f;
            continue;
        }
        int64_t at = (row0 + j) * ld + k0;
        if (dtype == DT_F32) {
            const float *row = (const float *)w + at;
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = row[k];
        } else {
            for (int64_t k = 0; k < kc; k++) strip[k * nr + j] = weight_element(w, dtype, at + k);
        }
    }
}

/* a_pack[k][r] = x[r][k] for r < rows, 0 for rows ≤ r < mr: the micro-kernel's broadcasts become one
 * contiguous stream. */
static void pack_rows_scalar(float *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t kc) {
    for (int r = 0; r < mr; r++) {
        if (r >= rows) {
            for (int64_t k = 0; k < kc; k++) a_pack[k * mr + r] = 0.0f;
            continue;
        }
        const float *xr = x + r * ldx;
        for (int64_t k = 0; k < kc; k++) a_pack[k * mr + r] = xr[k];
    }
}

/* Eight interleaved partial sums, as an 8-lane vector unit would keep them. */
static float dot_scalar(const float *a, const float *b, int64_t n) {
    float s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += a[i + l] * b[i + l];
    for (int l = 0; i < n; i++, l++) s[l] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void dot4_scalar(const float *w, const float *const x[4], int64_t n, float out[4]) {
    for (int i = 0; i < 4; i++) out[i] = dot_scalar(x[i], w, n);
}

static void scale_add_scalar(float *y, float alpha, const float *x, float beta, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = alpha * y[i] + beta * x[i];
}

static float row_max_scalar(const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = MAX(m, x[i]);
    return m;
}

static float exp_sum_scalar(float *s, int64_t n, float scale, float max) {
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++) {
        s[j] = expf(s[j] * scale - max);
        sum += s[j];
    }
    return sum;
}

static void softmax_step_scalar(float *s, int64_t keys, int nr, float scale, float *max, float *sum, float *o,
                                int64_t o_rows) {
    for (int j = 0; j < nr; j++) {
        float block_max = -INFINITY;
        for (int64_t k = 0; k < keys; k++) block_max = MAX(block_max, s[k * nr + j]);
        float new_max = MAX(max[j], block_max * scale), correction = expf(max[j] - new_max), block_sum = 0.0f;
        for (int64_t k = 0; k < keys; k++) {
            s[k * nr + j] = expf(s[k * nr + j] * scale - new_max);
            block_sum += s[k * nr + j];
        }
        sum[j] = sum[j] * correction + block_sum;
        max[j] = new_max;
        for (int64_t d = 0; d < o_rows; d++) o[d * nr + j] *= correction;
    }
}

static void sigmoid_gate_scalar(float *x, const float *up, int64_t n, float alpha) {
    for (int64_t i = 0; i < n; i++) {
        float g = x[i] * (1.0f / (1.0f + expf(-alpha * x[i])));
        x[i] = up ? g * up[i] : g;
    }
}

/* The rotation of pairs (v[i], v[i + half]) for i < count (SIMD kernels finish their tails here). */
static void rotate_half_tail(float *v, const float *cos_a, const float *sin_a, int64_t count, int64_t half) {
    for (int64_t i = 0; i < count; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cos_a[i] - b * sin_a[i];
        v[i + half] = b * cos_a[i] + a * sin_a[i];
    }
}

static void rotate_half_scalar(float *v, const float *cos_a, const float *sin_a, int64_t half) {
    rotate_half_tail(v, cos_a, sin_a, half, half);
}

/* ---- norm sums and outputs ----
 * Norms accumulate in double (outlier channels make float sums drift). Element i goes into partial sum
 * i mod NORM_LANES, in order; the partials are then added by halves (p[j] += p[j + 8], then + 4, + 2,
 * + 1). Sixteen independent chains fill the SIMD lanes, and the order never depends on the path. */
#define NORM_LANES 16

/* The last count (< NORM_LANES) elements into partials 0..count−1, then the halving sum. */
static double norm_partials_finish(double p[NORM_LANES], const float *tail, int64_t count, double shift, bool square) {
    for (int64_t j = 0; j < count; j++) {
        double d = (double)tail[j] - shift;
        p[j] += square ? d * d : d;
    }
    for (int half = NORM_LANES / 2; half > 0; half /= 2)
        for (int j = 0; j < half; j++) p[j] += p[j + half];
    return p[0];
}

#define NORM_PARTIALS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)

static double norm_sum_scalar(const float *x, int64_t n, double shift, bool square) {
    /* sixteen named accumulators: an array would live in memory, one store-to-load chain per add */
#define NORM_DECLARE(j) double p##j = 0.0;
#define NORM_ADD(j) p##j += (double)x[i + (j)] - shift;
#define NORM_ADD_SQUARE(j) { double d = (double)x[i + (j)] - shift; p##j += d * d; }
#define NORM_STORE(j) partials[j] = p##j;
    NORM_PARTIALS(NORM_DECLARE)
    int64_t i = 0;
    if (square) {
        for (; i + NORM_LANES <= n; i += NORM_LANES) { NORM_PARTIALS(NORM_ADD_SQUARE) }
    } else {
        for (; i + NORM_LANES <= n; i += NORM_LANES) { NORM_PARTIALS(NORM_ADD) }
    }
    double partials[NORM_LANES];
    NORM_PARTIALS(NORM_STORE)
#undef NORM_DECLARE
#undef NORM_ADD
#undef NORM_ADD_SQUARE
#undef NORM_STORE
    return norm_partials_finish(partials, x + i, n - i, shift, square);
}

static void norm_apply_scalar(float *y, const float *x, int64_t n, float shift, float inv, const float *w, const float *b) {
    /* through a local block: y may be x, and compilers vectorise a loop that cannot alias */
    float v[NORM_LANES];
    int64_t i = 0;
    for (; i + NORM_LANES <= n; i += NORM_LANES) {
        for (int j = 0; j < NORM_LANES; j++) v[j] = (x[i + j] - shift) * inv * w[i + j];
        if (b)
            for (int j = 0; j < NORM_LANES; j++) v[j] = v[j] + b[i + j];
        memcpy(y + i, v, sizeof v);
    }
    for (; i < n; i++) {
        float v = (x[i] - shift) * inv * w[i];
        y[i] = b ? v + b[i] : v;
    }
}

static const kernel_ops kernel_ops_scalar = {
    KERNEL_SCALAR, SCALAR_MR, SCALAR_NR, 192, gemm_micro_scalar, pack_strip_scalar, pack_rows_scalar, convert_f16_scalar, convert_bf16_scalar,
    dot_scalar, dot4_scalar, scale_add_scalar, row_max_scalar, exp_sum_scalar, softmax_step_scalar, sigmoid_gate_scalar,
    rotate_half_scalar, norm_sum_scalar, norm_apply_scalar,
};

/* Sections 7b/7c fill these in when their ISA is compiled in. */
static const kernel_ops *kernel_ops_avx2(void);
static const kernel_ops *kernel_ops_avx512(void);
static const kernel_ops *kernel_ops_neon(void);

/* The table for the pool's path (the scalar one without a pool, or when the path is not built). */
static const kernel_ops *kernel_ops_for(const thread_pool *pool) {
    const kernel_ops *ops = NULL;
    int path = pool ? pool->kernel_path : KERNEL_SCALAR;
    if (path == KERNEL_AVX2) ops = kernel_ops_avx2();
    else if (path == KERNEL_AVX512) ops = kernel_ops_avx512();
    else if (path == KERNEL_NEON) ops = kernel_ops_neon();
    return ops ? ops : &kernel_ops_scalar;
}

/* ---- tensor rows ---- */

/* Converts `count` elements of a weight tensor starting at element `at` to f32. */
static void weights_to_f32(const kernel_ops *ops, const void *data, uint32_t dtype, int64_t at,
                           int64_t count, float *out) {
    switch (dtype) {
    case DT_F32: memcpy(out, (const float *)data + at, (size_t)count * sizeof(float)); break;
    case DT_F16: ops->from_f16(out, (const uint16_t *)data + at, count); break;
    case DT_BF16: ops->from_bf16(out, (const uint16_t *)data + at, count); break;
    default: memset(out, 0, (size_t)count * sizeof(float)); break; /* DT_Q8: see tensor_row_f32 */
    }
}

static void tensor_row_f32(const tensor *t, int64_t row, float *out) {
    int64_t cols = t->ndim >= 2 ? t->shape[1] : t->shape[0];
    if (t->dtype == DT_Q8) { /* q[k] · scale of k's block, from the row's strip (section 3 checked the layout) */
        const uint8_t *column = (const uint8_t *)t->data + (row / Q8_STRIP) * (cols / Q8_BLOCK) * (int64_t)Q8_STRIP_BLOCK_BYTES +
                                (row % Q8_STRIP) * 4;
        for (int64_t b = 0; b < cols / Q8_BLOCK; b++)
            for (int k = 0; k < Q8_BLOCK; k++)
                out[b * Q8_BLOCK + k] = q8_strip_weight_value(column + b * (int64_t)Q8_STRIP_BLOCK_BYTES, k);
        return;
    }
    weights_to_f32(&kernel_ops_scalar, t->data, t->dtype, row * cols, cols, out);
}

/* ---- matmul ---- */

typedef struct {
    const kernel_ops *ops;
    float *y;
    const float *x;
    const void *w;
    uint32_t dtype;
    const float *bias;
    int64_t n, in, out;
    int64_t rows_per_task, cols_per_task;
    int n_row_blocks;
    float *const *scratch; /* per thread, POOL_SCRATCH_FLOATS each */
} matmul_job;

/* Packs W rows [j0, j0 + nc) × columns [k0, k0 + kc) as ceil(nc/nr) strips [kc][nr], zero-padded. */
static void pack_weight_panel(const matmul_job *job, int64_t j0, int64_t nc, int64_t k0, int64_t kc, float *panel) {
    int nr = job->ops->nr;
    for (int64_t jr = 0; jr < nc; jr += nr)
        job->ops->pack_strip(panel + jr * kc, nr, job->w, job->dtype, job->in, j0 + jr, (int)MIN((int64_t)nr, nc - jr),
                             k0, kc);
}

/* The weight slice a task packs next: W rows [j0, j0 + nc) × columns [k0, k0 + kc). */
typedef struct {
    int64_t j0, nc, k0, kc;
} weight_slice;

/* Lines [from, to) of `slice` (64-byte lines numbered row by row) towards the cache. Weight slices are
 * 512-byte to 1-kilobyte pieces of rows far apart, too short for the hardware prefetchers: without this
 * a pass over weights that are not cached waits on memory for every row. */
static void prefetch_weight_lines(const matmul_job *job, const weight_slice *slice, int64_t from, int64_t to) {
#if defined(__GNUC__)
    size_t es = dtype_size(job->dtype);
    int64_t lines_per_row = ceil_div(slice->kc * (int64_t)es, 64);
    for (int64_t line = from; line < to; line++) {
        int64_t row = slice->j0 + line / lines_per_row, part = line % lines_per_row;
        __builtin_prefetch((const char *)job->w + ((size_t)(row * job->in + slice->k0)) * es + (size_t)part * 64, 0, 2);
    }
#else
    (void)job, (void)slice, (void)from, (void)to;
#endif
}

/* y rows += bias over columns [j0, j0 + nc): scale_add(1, 1) is y + bias exactly (no product rounds). */
static void add_bias_block(const kernel_ops *ops, float *y, int64_t ldy, const float *bias, int64_t rows, int64_t j0,
                           int64_t nc) {
    for (int64_t i = 0; i < rows; i++) ops->scale_add(y + i * ldy + j0, 1.0f, bias + j0, 1.0f, nc);
}

/* Edge tiles (mi < mr rows or nj < nr columns of y) go through a full-size mr × nr copy, so that the
 * micro-kernels never touch y outside the product: load it (y's values when accumulating, zeros
 * elsewhere), run the micro-kernel on it, store its mi × nj corner back. */
static void edge_tile_load(float *tile, int mr, int nr, const float *c, int64_t ldc, int64_t mi, int64_t nj,
                           bool accumulate) {
    for (int64_t r = 0; r < mr; r++)
        for (int64_t j = 0; j < nr; j++) tile[r * nr + j] = (accumulate && r < mi && j < nj) ? c[r * ldc + j] : 0.0f;
}

static void edge_tile_store(const float *tile, int nr, float *c, int64_t ldc, int64_t mi, int64_t nj) {
    for (int64_t r = 0; r < mi; r++)
        for (int64_t j = 0; j < nj; j++) c[r * ldc + j] = tile[r * nr + j];
}

static void matmul_gemm_task(void *arg, int task, int thread) {
    const matmul_job *job = arg;
    const kernel_ops *ops = job->ops;
    int mr = ops->mr, nr = ops->nr;
    int64_t i0 = (int64_t)(task % job->n_row_blocks) * job->rows_per_task;
    int64_t j0 = (int64_t)(task / job->n_row_blocks) * job->cols_per_task;
    int64_t rows = MIN(job->rows_per_task, job->n - i0), nc = MIN(job->cols_per_task, job->out - j0);
    if (rows <= 0 || nc <= 0) return;
    float *panel = job->scratch[thread];
    float *a_pack = panel + (size_t)GEMM_KC * GEMM_NC_MAX;
    float *tail_c = a_pack + (size_t)GEMM_MC_ROWS * GEMM_KC + GEMM_PACK_SLACK;
    const int64_t ldy = job->out;
    const int64_t row_groups = ceil_div(rows, mr);
    for (int64_t k0 = 0; k0 < job->in; k0 += GEMM_KC) {
        int64_t kc = MIN((int64_t)GEMM_KC, job->in - k0);
        bool accumulate = k0 > 0;
        pack_weight_panel(job, j0, nc, k0, kc, panel);
        /* fetch the next slice (this block's, or the next block's first) while computing this one */
        weight_slice next = {j0, nc, k0 + GEMM_KC, MIN((int64_t)GEMM_KC, job->in - k0 - GEMM_KC)};
        if (next.kc <= 0) {
            next = (weight_slice){j0 + nc, MIN(nc, job->out - j0 - nc), 0, MIN((int64_t)GEMM_KC, job->in)};
            if (job->n_row_blocks > 1) next.nc = 0; /* this thread's next task is not known */
        }
        int64_t next_lines = next.nc > 0 ? next.nc * ceil_div(next.kc * (int64_t)dtype_size(job->dtype), 64) : 0;
        /* GEMM_MC_GROUPS row groups packed at once: each kc × nr strip of the panel is then used for all of
         * them while it sits in L1, and the packed rows stream from L2 */
        for (int64_t g0 = 0; g0 < row_groups; g0 += GEMM_MC_GROUPS) {
            int64_t groups = MIN((int64_t)GEMM_MC_GROUPS, row_groups - g0);
            prefetch_weight_lines(job, &next, next_lines * g0 / row_groups, next_lines * (g0 + groups) / row_groups);
            for (int64_t g = 0; g < groups; g++) {
                int64_t i = (g0 + g) * mr, mi = MIN((int64_t)mr, rows - i);
                ops->pack_rows(a_pack + g * mr * kc, mr, job->x + (i0 + i) * job->in + k0, job->in, (int)mi, kc);
            }
            for (int64_t jr = 0; jr < nc; jr += nr) {
                int64_t nj = MIN((int64_t)nr, nc - jr);
                for (int64_t g = 0; g < groups; g++) {
                    int64_t i = (g0 + g) * mr, mi = MIN((int64_t)mr, rows - i);
                    const float *a = a_pack + g * mr * kc;
                    float *c = job->y + (i0 + i) * ldy + j0 + jr;
                    if (mi == mr && nj == nr) {
                        ops->micro(kc, a, panel + jr * kc, c, ldy, accumulate);
                        continue;
                    }
                    edge_tile_load(tail_c, mr, nr, c, ldy, mi, nj, accumulate);
                    ops->micro(kc, a, panel + jr * kc, tail_c, nr, accumulate);
                    edge_tile_store(tail_c, nr, c, ldy, mi, nj);
                }
            }
        }
    }
    if (job->bias) add_bias_block(job->ops, job->y + i0 * ldy, ldy, job->bias, rows, j0, nc);
}

/* Dot-product path (few rows, or no scratch): W streamed once, row after row, in GEMV_CHUNK slices
 * (converted to f32 on the way); each slice's dot products with the x rows are added into y. */
static void matmul_gemv_task(void *arg, int task, int thread) {
    (void)thread;
    const matmul_job *job = arg;
    const kernel_ops *ops = job->ops;
    float chunk[GEMV_CHUNK];
    int64_t j_begin = (int64_t)task * job->cols_per_task, j_end = MIN(job->out, j_begin + job->cols_per_task);
    for (int64_t j = j_begin; j < j_end; j++) {
        for (int64_t k0 = 0; k0 < job->in; k0 += GEMV_CHUNK) {
            int64_t kc = MIN((int64_t)GEMV_CHUNK, job->in - k0);
            const float *w;
            if (job->dtype == DT_F32) {
                w = (const float *)job->w + j * job->in + k0;
            } else {
                weights_to_f32(ops, job->w, job->dtype, j * job->in + k0, kc, chunk);
                w = chunk;
            }
            for (int64_t i0 = 0; i0 < job->n; i0 += 4) {
                int64_t rows = MIN((int64_t)4, job->n - i0);
                float d[4];
                if (rows == 1) {
                    d[0] = ops->dot(job->x + i0 * job->in + k0, w, kc);
                } else { /* a short group repeats its last row */
                    const float *x[4];
                    for (int64_t i = 0; i < 4; i++) x[i] = job->x + (i0 + MIN(i, rows - 1)) * job->in + k0;
                    ops->dot4(w, x, kc, d);
                }
                for (int64_t i = 0; i < rows; i++) {
                    float *yij = job->y + (i0 + i) * job->out + j;
                    *yij = k0 == 0 ? d[i] : *yij + d[i];
                }
            }
        }
        if (job->bias)
            for (int64_t i = 0; i < job->n; i++) job->y[i * job->out + j] += job->bias[j];
    }
}

/* Cuts the output into tasks: column blocks first (each packs its panel once for all its rows), then
 * row blocks when there are too few columns to keep the threads busy. The partition never changes
 * the numerics, only the balance. */
/* The partition of an n × out product for a micro-kernel of mr × nr and column blocks of at most nc. */
typedef struct {
    int64_t rows_per_task, cols_per_task;
    int n_row_blocks, n_tasks;
} task_plan;

static task_plan plan_tasks(int64_t n, int64_t out, int mr, int nr, int nc, int threads) {
    int64_t col_blocks = ceil_div(out, nc), row_blocks = 1;
    if (threads > 1) {
        if (col_blocks < 2 * threads)
            row_blocks = MAX((int64_t)1, MIN(ceil_div(2 * threads, col_blocks), n / GEMM_MIN_ROWS_PER_TASK));
        /* balance: a multiple of the thread count when the columns allow it */
        int64_t tasks = col_blocks * row_blocks;
        if (tasks % threads != 0) {
            int64_t want = ceil_div(round_up(tasks, threads), row_blocks);
            if (want <= ceil_div(out, nr)) col_blocks = want;
        }
    }
    task_plan p;
    p.cols_per_task = round_up(ceil_div(out, col_blocks), nr);
    col_blocks = ceil_div(out, p.cols_per_task);
    p.rows_per_task = round_up(ceil_div(n, row_blocks), mr);
    row_blocks = ceil_div(n, p.rows_per_task);
    p.n_row_blocks = (int)row_blocks;
    p.n_tasks = (int)(row_blocks * col_blocks);
    return p;
}

static int matmul_plan(matmul_job *job, int threads) {
    task_plan p = plan_tasks(job->n, job->out, job->ops->mr, job->ops->nr, job->ops->nc, threads);
    job->rows_per_task = p.rows_per_task;
    job->cols_per_task = p.cols_per_task;
    job->n_row_blocks = p.n_row_blocks;
    return p.n_tasks;
}

static void matmul_q8(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, int64_t out_dim,
                      int64_t in_dim, const float *bias);

static void matmul_any(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, uint32_t dtype,
                       int64_t out_dim, int64_t in_dim, const float *bias) {
    if (n <= 0 || out_dim <= 0) return;
    if (dtype == DT_Q8 && in_dim > 0 && in_dim % Q8_BLOCK == 0) {
        matmul_q8(pool, y, x, n, w, out_dim, in_dim, bias);
        return;
    }
    if (in_dim <= 0 || !(dtype == DT_F32 || dtype == DT_F16 || dtype == DT_BF16)) {
        /* empty sum, or a layout section 3 would have refused: never read what we do not know */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < out_dim; j++) y[i * out_dim + j] = bias ? bias[j] : 0.0f;
        return;
    }
    matmul_job job = {
        .ops = kernel_ops_for(pool), .y = y, .x = x, .w = w, .dtype = dtype, .bias = bias,
        .n = n, .in = in_dim, .out = out_dim,
    };
    int threads = thread_pool_size(pool);
    if (n <= GEMV_MAX_ROWS || !pool || pool->scratch_floats < (size_t)GEMM_KC * (GEMM_NC_MAX + GEMM_MC_ROWS) + GEMM_PACK_SLACK +
                                                             (size_t)GEMM_MR_MAX * GEMM_NR_MAX) {
        job.cols_per_task = GEMV_ROWS_PER_TASK;
        thread_pool_run(pool, (int)ceil_div(out_dim, GEMV_ROWS_PER_TASK), matmul_gemv_task, &job);
        return;
    }
    job.scratch = pool->scratch;
    int tasks = matmul_plan(&job, threads);
    thread_pool_run(pool, tasks, matmul_gemm_task, &job);
}

static void matmul(thread_pool *pool, float *y, const float *x, int64_t n, const tensor *W, const tensor *bias) {
    matmul_any(pool, y, x, n, W->data, W->dtype, W->shape[0], W->shape[1], bias ? (const float *)bias->data : NULL);
}

static void matmul_f32(thread_pool *pool, float *y, const float *x, int64_t n, const float *W, int64_t out_dim,
                       int64_t in_dim, const float *bias) {
    matmul_any(pool, y, x, n, W, DT_F32, out_dim, in_dim, bias);
}

/* ---- q8: int8 weights × int8 activations, exact int32 block sums ----
 *
 * Weights are DT_Q8 (section 3): int8 quants with one f32 scale per Q8_BLOCK elements of a row, already
 * in the kernels' layout (strips of Q8_STRIP rows, below), so they are used in place from the mmap.
 * Activations are quantized on the fly the same way, per row and per block of Q8_BLOCK: scale =
 * amax/127, q = round(x·127/amax), ties to even. Outlier channels (a norm weight 25× the others makes
 * a few channels of every row dominate their block, and would leave the rest of the block 4 or 5 bits)
 * are taken out: when at most Q8_OUTLIERS_MAX elements of a block exceed amax/4 and the smallest of them
 * stands more than Q8_OUTLIER_GAP times above every other element, they are set aside in float, the
 * block is quantized without them, and their products are added in float with the dequantized weights.
 * Each block's Σ qx·qw is an exact int32 (|Σ| ≤ 32·127·127), so every path computes the same integers
 * whatever its instructions; the float part is fixed too. Per slice of Q8_KC columns of `in`:
 *
 *     y[i][j] ← fma((float)isum_b, scale_x[i][b] · scale_w[j][b], y[i][j])     for each block b in order
 *     y[i][j] ← y[i][j] + x[i][k] · ((float)qw[j][k] · scale_w[j][k/32])        for each outlier k in order
 *
 * starting from y = 0, then y + bias[j]; the fma is fused (one rounding) on every path, nothing else
 * is. Results are bit-identical across paths, thread counts and partitions.
 *
 * A weight strip block (Q8_STRIP rows × one block, section 3) is [Q8_BLOCK/4][Q8_STRIP][4] int8 (four
 * consecutive k of one row are one 32-bit lane: what VNNI's vpdpbusd, AVX2's vpmaddubsw+vpmaddwd and
 * NEON's sdot consume), then Q8_STRIP f32 scales; a strip's blocks follow each other. Kernels of nr = 8
 * columns read half a strip (the pointer moved by 4·column bytes), of 32 columns two strips (b, b_hi).
 * Activation rows are quantized per group of mr into [Q8_BLOCK/4][mr][4] per block, then mr f32 scales
 * and mr int32 compensations −128·Σq (VNNI feeds the weights as unsigned w + 128 and starts each block
 * sum there). */

#define Q8_KC 512                           /* `in` slice per packed panel (a multiple of Q8_BLOCK) */
#define Q8_KC_BLOCKS (Q8_KC / Q8_BLOCK)
#define Q8_MR_MAX 8
#define Q8_NR_MAX 32
#define Q8_TINY 1e-30f                      /* blocks with amax below this quantize to 0 */
#define Q8_FLT_MAX 0x1.fffffep+127f         /* FLT_MAX (no <float.h> here) */
#define Q8_OUTLIERS_MAX 8                   /* per block of activations */
#define Q8_OUTLIER_GAP 4.0f
#define Q8_ROWS_BLOCK_BYTES(mr) ((size_t)(mr) * (Q8_BLOCK + 8))    /* quads, scales, compensations */

/* An activation set aside from its block (row of the group, block of the slice, column in the block). */
typedef struct {
    uint16_t row, block, k;
    float value;
} q8_outlier;

/* c[mr][nr] (row stride ldc) = (accumulate ? c : 0) + the blocks' terms, in block order. b: the weight
 * strip's first block (columns 0..min(nr, 16)); b_hi: columns 16..31's strip (32-wide kernels only). */
typedef void (*q8_micro_fn)(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                            int64_t ldc, bool accumulate);
/* Quantizes `rows` rows of x (row stride ldx) × blocks·Q8_BLOCK columns into the packed layout; rows
 * rows..mr−1 are zero. Outliers are appended to outliers[*n_outliers] (block by block, row by row). */
typedef void (*q8_pack_rows_fn)(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                q8_outlier *outliers, int *n_outliers);

/* c[row][j] (row stride ldc) += value · ((float)w[j][k] · scale_w[j][block]) for each outlier in list
 * order, j < nj, the weights read from the strips b (columns 0..15) and b_hi (16..31) as the micro-kernel
 * gets them (blocks of the current slice). */
typedef void (*q8_strip_outliers_fn)(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                     const q8_outlier *outliers, int n_outliers);

typedef struct {
    const char *name;
    int mr, nr, nc;
    q8_micro_fn micro;
    q8_pack_rows_fn pack_rows;
    q8_strip_outliers_fn strip_outliers;
} q8_kernels;

/* The outlier rule of a block with `large` elements above amax/4 (at most Q8_OUTLIERS_MAX): they are
 * set aside when the smallest of them stands more than Q8_OUTLIER_GAP times above the largest of the
 * others (`rest`). Max and min are exact, so SIMD quantizers evaluate the same rule bit for bit. */
static bool q8_outliers_apart(float smallest_large, float rest) { return smallest_large > Q8_OUTLIER_GAP * rest; }

/* Quantizes one block of activations into q[0..Q8_BLOCK) and returns its scale; *outliers gets the
 * bit mask of the elements set aside (their q is 0). A block holding a non-finite value gets scale NaN
 * and zeros (its outputs become NaN, as in float math). This is the definition every SIMD quantizer
 * reproduces bit for bit. */
static float q8_quantize_block(const float *x, int8_t *q, uint32_t *outliers) {
    float amax = 0.0f;
    bool finite = true;
    *outliers = 0;
    for (int k = 0; k < Q8_BLOCK; k++) {
        float a = fabsf(x[k]);
        if (!(a <= Q8_FLT_MAX)) finite = false;
        else if (a > amax) amax = a;
    }
    if (!finite || amax < Q8_TINY) {
        memset(q, 0, Q8_BLOCK);
        return finite ? 0.0f : NAN;
    }
    const float quarter = amax * 0.25f;
    uint32_t large = 0;
    int n_large = 0;
    float smallest_large = amax, rest = 0.0f;
    for (int k = 0; k < Q8_BLOCK; k++) {
        float a = fabsf(x[k]);
        if (a > quarter) {
            large |= 1u << k;
            n_large++;
            smallest_large = MIN(smallest_large, a);
        } else {
            rest = MAX(rest, a);
        }
    }
    if (n_large <= Q8_OUTLIERS_MAX && q8_outliers_apart(smallest_large, rest)) {
        *outliers = large;
        amax = rest;
        if (amax < Q8_TINY) {
            memset(q, 0, Q8_BLOCK);
            return 0.0f;
        }
    }
    float inv = 127.0f / amax;
    for (int k = 0; k < Q8_BLOCK; k++) /* |x·inv| ≤ 127.00002 */
        q[k] = *outliers >> k & 1 ? 0 : (int8_t)lrintf(x[k] * inv);
    return amax / 127.0f;
}

/* Appends a block's outliers (mask from q8_quantize_block) to the list. */
static void q8_add_outliers(q8_outlier *list, int *n, int row, int64_t block, const float *x, uint32_t mask) {
    for (; mask; mask &= mask - 1) { /* set bits from the lowest */
#if defined(__GNUC__)
        int k = __builtin_ctz(mask);
#else
        int k = 0;
        while (!(mask >> k & 1)) k++;
#endif
        list[(*n)++] = (q8_outlier){(uint16_t)row, (uint16_t)block, (uint16_t)k, x[k]};
    }
}

/* Stores a block's scale and compensation −128·Σq for row r of an mr-row group. */
static void q8_store_row_scale(uint8_t *block, int mr, int r, int32_t quant_sum, float scale) {
    int32_t comp = -128 * quant_sum;
    memcpy(block + (size_t)mr * Q8_BLOCK + (size_t)r * 4, &scale, sizeof scale);
    memcpy(block + (size_t)mr * (Q8_BLOCK + 4) + (size_t)r * 4, &comp, sizeof comp);
}

/* Stores a block's quads (32-bit lanes of four k) for row r of an mr-row group, its scale and its
 * compensation. */
static void q8_store_row_block(uint8_t *block, int mr, int r, const int8_t *q, float scale) {
    int32_t sum = 0;
    for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++)
        for (int t = 0; t < 4; t++) {
            block[((size_t)k4 * mr + r) * 4 + t] = (uint8_t)q[k4 * 4 + t];
            sum += q[k4 * 4 + t];
        }
    q8_store_row_scale(block, mr, r, sum, scale);
}

/* One row's block through the scalar definition, outliers included. */
static void q8_pack_row_block_scalar(uint8_t *block, int mr, int r, const float *xb, int64_t b, q8_outlier *outliers,
                                     int *n_outliers) {
    int8_t q[Q8_BLOCK];
    uint32_t mask;
    float scale = q8_quantize_block(xb, q, &mask);
    q8_store_row_block(block, mr, r, q, scale);
    q8_add_outliers(outliers, n_outliers, r, b, xb, mask);
}

static void q8_pack_rows_scalar(uint8_t *a_pack, int mr, const float *x, int64_t ldx, int rows, int64_t blocks,
                                q8_outlier *outliers, int *n_outliers) {
    static const int8_t zeros[Q8_BLOCK];
    for (int64_t b = 0; b < blocks; b++) {
        uint8_t *block = a_pack + b * Q8_ROWS_BLOCK_BYTES(mr);
        for (int r = 0; r < mr; r++) {
            if (r < rows) {
                q8_pack_row_block_scalar(block, mr, r, x + r * ldx + b * Q8_BLOCK, b, outliers, n_outliers);
            } else {
                q8_store_row_block(block, mr, r, zeros, 0.0f);
            }
        }
    }
}

#define Q8_SCALAR_MR 4
#define Q8_SCALAR_NR 8

static void q8_micro_scalar(int64_t blocks, const uint8_t *a, const uint8_t *b, const uint8_t *b_hi, float *c,
                            int64_t ldc, bool accumulate) {
    enum { MR = Q8_SCALAR_MR, NR = Q8_SCALAR_NR };
    (void)b_hi;
    float acc[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
    for (int64_t blk = 0; blk < blocks; blk++) {
        const uint8_t *ab = a + blk * Q8_ROWS_BLOCK_BYTES(MR), *bb = b + blk * Q8_STRIP_BLOCK_BYTES;
        float sa[MR], sb[NR];
        memcpy(sa, ab + MR * Q8_BLOCK, sizeof sa);
        memcpy(sb, bb + Q8_STRIP * Q8_BLOCK, sizeof sb);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NR; j++) {
                int32_t sum = 0;
                for (int k4 = 0; k4 < Q8_BLOCK / 4; k4++)
                    for (int t = 0; t < 4; t++)
                        sum += (int8_t)ab[(k4 * MR + i) * 4 + t] * (int8_t)bb[(k4 * Q8_STRIP + j) * 4 + t];
                acc[i][j] = fmaf((float)sum, sa[i] * sb[j], acc[i][j]);
            }
    }
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NR; j++) c[i * ldc + j] = acc[i][j];
}

/* The definition of q8_strip_outliers_fn. */
static void q8_strip_outliers_scalar(float *c, int64_t ldc, const uint8_t *b, const uint8_t *b_hi, int nj,
                                     const q8_outlier *outliers, int n_outliers) {
    for (int o = 0; o < n_outliers; o++) {
        const q8_outlier *out = &outliers[o];
        const size_t block = (size_t)out->block * Q8_STRIP_BLOCK_BYTES;
        float *row = c + out->row * ldc;
        for (int j = 0; j < nj; j++)
            row[j] = row[j] + out->value * q8_strip_weight_value(q8_strip_column(b + block, b_hi + block, j), out->k);
    }
}

static const q8_kernels q8_kernels_scalar = {
    "scalar", Q8_SCALAR_MR, Q8_SCALAR_NR, 128, q8_micro_scalar, q8_pack_rows_scalar, q8_strip_outliers_scalar,
};

/* Sections 7b/7c fill these in when their ISA is compiled in (NULL otherwise). */
static const q8_kernels *q8_kernels_avx2(void);
static const q8_kernels *q8_kernels_avx512vnni(void);
static const q8_kernels *q8_kernels_neon(bool dotprod);

/* The q8 kernels for the pool's path and CPU features (VNNI within AVX-512, dotprod within NEON). */
static const q8_kernels *q8_kernels_for(const thread_pool *pool) {
    const q8_kernels *k = NULL;
    int path = pool ? pool->kernel_path : KERNEL_SCALAR;
    if (path == KERNEL_AVX512 && pool->features.avx512vnni) k = q8_kernels_avx512vnni();
    if (!k && (path == KERNEL_AVX512 || path == KERNEL_AVX2)) k = q8_kernels_avx2();
    if (path == KERNEL_NEON) k = q8_kernels_neon(pool->features.neon_dot);
    return k ? k : &q8_kernels_scalar;
}

typedef struct {
    const q8_kernels *k;
    const kernel_ops *ops; /* the pool's path, for the bias */
    float *y;
    const float *x;
    const uint8_t *w; /* strips (section 3) */
    const float *bias;
    int64_t n, in, out;
    task_plan plan;
    /* When not NULL: x already quantized for every column block (q8_prepack_activations). */
    const uint8_t *x_packed; /* [row group][block] of Q8_ROWS_BLOCK_BYTES(mr) */
    uint32_t *x_outlier_masks; /* [row group][block][mr]: the activations set aside (their values stay in x) */
    uint8_t *x_slice_outliers; /* [row group][slice of Q8_KC]: whether any of the group's masks there is set */
} q8_job;

#define Q8_GROUP_OUTLIERS (Q8_MR_MAX * Q8_KC_BLOCKS * Q8_OUTLIERS_MAX)

/* Slices of Q8_KC columns in a row of `in`. */
static int64_t q8_slices(int64_t in) { return ceil_div(in / Q8_BLOCK, Q8_KC_BLOCKS); }

/* A slice's worth of zero strip blocks: a 32-wide kernel's upper half past the last strip. */
static _Alignas(64) const uint8_t q8_zero_strip[Q8_KC_BLOCKS * Q8_STRIP_BLOCK_BYTES];

/* Block b of the strip that holds weight row `row` (a multiple of Q8_STRIP). */
static const uint8_t *q8_strip_block(const q8_job *job, int64_t row, int64_t b) {
    return job->w + ((row / Q8_STRIP) * (job->in / Q8_BLOCK) + b) * (int64_t)Q8_STRIP_BLOCK_BYTES;
}

/* Lines [from, to) of the weight slice from row j0, blocks [b0, b0 + nb), towards the cache: per strip
 * one contiguous piece of nb strip blocks, numbered strip by strip. */
static void q8_prefetch_slice(const q8_job *job, int64_t j0, int64_t b0, int64_t nb, int64_t from, int64_t to) {
#if defined(__GNUC__)
    const int64_t strip_lines = (int64_t)(nb * Q8_STRIP_BLOCK_BYTES / 64);
    if (from >= to) return;
    int64_t strip = from / strip_lines, part = from % strip_lines; /* then stepped: no division per line */
    const uint8_t *piece = q8_strip_block(job, j0 + strip * Q8_STRIP, b0);
    for (int64_t line = from; line < to; line++, part++) {
        if (part == strip_lines) part = 0, piece = q8_strip_block(job, j0 + ++strip * Q8_STRIP, b0);
        __builtin_prefetch(piece + part * 64, 0, 2);
    }
#else
    (void)job, (void)j0, (void)b0, (void)nb, (void)from, (void)to;
#endif
}

/* Bytes [0, n) from p towards the cache, a line at a time. */
static void prefetch_bytes(const void *p, int64_t n) {
#if defined(__GNUC__)
    for (int64_t at = 0; at < n; at += 64) __builtin_prefetch((const char *)p + at, 0, 3);
#else
    (void)p, (void)n;
#endif
}

/* The outlier list pack_rows would give for rows row0..row0+mi−1, blocks b0..b0+nb−1 (same order:
 * block by block, row by row), rebuilt from the prepacked masks and x. */
static void q8_collect_outliers(const q8_job *job, int64_t row0, int64_t mi, int64_t b0, int64_t nb, q8_outlier *outliers,
                                int *n_outliers) {
    const int64_t total_blocks = job->in / Q8_BLOCK;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t r = 0; r < mi; r++) {
            uint32_t mask = job->x_outlier_masks[((row0 / job->k->mr) * total_blocks + b0 + b) * job->k->mr + r];
            if (mask) q8_add_outliers(outliers, n_outliers, (int)r, b, job->x + (row0 + r) * job->in + (b0 + b) * Q8_BLOCK, mask);
        }
}

/* One row group of x through pack_rows, slice by slice, into the prepacked layout. */
static void q8_prepack_task(void *arg, int task, int thread) {
    (void)thread;
    const q8_job *job = arg;
    const int mr = job->k->mr;
    const int64_t row0 = (int64_t)task * mr, mi = MIN((int64_t)mr, job->n - row0), total_blocks = job->in / Q8_BLOCK;
    q8_outlier outliers[Q8_GROUP_OUTLIERS];
    uint32_t *masks = job->x_outlier_masks + task * total_blocks * mr;
    uint8_t *slice_outliers = job->x_slice_outliers + task * q8_slices(job->in);
    memset(masks, 0, (size_t)(total_blocks * mr) * sizeof *masks);
    for (int64_t b0 = 0; b0 < total_blocks; b0 += Q8_KC_BLOCKS) {
        const int64_t nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - b0);
        int n_outliers = 0;
        uint8_t *dst = (uint8_t *)job->x_packed + (size_t)(task * total_blocks + b0) * Q8_ROWS_BLOCK_BYTES(mr);
        job->k->pack_rows(dst, mr, job->x + row0 * job->in + b0 * Q8_BLOCK, job->in, (int)mi, nb, outliers, &n_outliers);
        for (int o = 0; o < n_outliers; o++)
            masks[(b0 + outliers[o].block) * mr + outliers[o].row] |= 1u << outliers[o].k;
        slice_outliers[b0 / Q8_KC_BLOCKS] = n_outliers > 0;
    }
}

static void matmul_q8_task(void *arg, int task, int thread) {
    (void)thread;
    const q8_job *job = arg;
    const q8_kernels *k = job->k;
    const int mr = k->mr, nr = k->nr;
    const int64_t i0 = (int64_t)(task % job->plan.n_row_blocks) * job->plan.rows_per_task;
    const int64_t j0 = (int64_t)(task / job->plan.n_row_blocks) * job->plan.cols_per_task;
    const int64_t rows = MIN(job->plan.rows_per_task, job->n - i0), nc = MIN(job->plan.cols_per_task, job->out - j0);
    if (rows <= 0 || nc <= 0) return;
    _Alignas(64) uint8_t a_pack[Q8_KC_BLOCKS * Q8_MR_MAX * (Q8_BLOCK + 8)];
    _Alignas(64) float tail_c[Q8_MR_MAX * Q8_NR_MAX];
    q8_outlier outliers[Q8_GROUP_OUTLIERS];
    const int64_t ldy = job->out, total_blocks = job->in / Q8_BLOCK, row_groups = ceil_div(rows, mr);
    for (int64_t b0 = 0; b0 < total_blocks; b0 += Q8_KC_BLOCKS) {
        const int64_t nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - b0);
        const bool accumulate = b0 > 0, last = b0 + nb == total_blocks;
        /* the next slice of this task (or the next task's first, when the tasks are columns only) is
         * fetched meanwhile, spread over the row groups */
        int64_t next_j0 = j0, next_nc = nc, next_b0 = b0 + nb;
        if (last) {
            next_j0 = j0 + nc, next_b0 = 0;
            next_nc = job->plan.n_row_blocks > 1 ? 0 : MIN(nc, job->out - next_j0);
        }
        const int64_t next_nb = MIN((int64_t)Q8_KC_BLOCKS, total_blocks - next_b0);
        const int64_t next_lines = next_nc > 0 ? ceil_div(next_nc, Q8_STRIP) * (int64_t)(next_nb * Q8_STRIP_BLOCK_BYTES / 64) : 0;
        for (int64_t i = 0; i < rows; i += mr) {
            const int64_t mi = MIN((int64_t)mr, rows - i), group = i / mr;
            q8_prefetch_slice(job, next_j0, next_b0, next_nb, next_lines * group / row_groups,
                              next_lines * (group + 1) / row_groups);
            int n_outliers = 0;
            const uint8_t *x_pack = a_pack;
            if (job->x_packed) {
                x_pack = job->x_packed + (size_t)(((i0 + i) / mr) * total_blocks + b0) * Q8_ROWS_BLOCK_BYTES(mr);
                if (job->x_slice_outliers[((i0 + i) / mr) * q8_slices(job->in) + b0 / Q8_KC_BLOCKS])
                    q8_collect_outliers(job, i0 + i, mi, b0, nb, outliers, &n_outliers);
            } else {
                k->pack_rows(a_pack, mr, job->x + (i0 + i) * job->in + b0 * Q8_BLOCK, job->in, (int)mi, nb, outliers,
                             &n_outliers);
            }
            /* the next group's quantized rows, and below the next tile's y rows, are on their way while
             * this tile's integer sums run: both come from beyond L2 when `in` is long */
            if (job->x_packed && i + mr < rows) prefetch_bytes(x_pack + total_blocks * Q8_ROWS_BLOCK_BYTES(mr), nb * (int64_t)Q8_ROWS_BLOCK_BYTES(mr));
            for (int64_t jr = 0; jr < nc; jr += nr) {
                const int64_t nj = MIN((int64_t)nr, nc - jr), col = j0 + jr;
                if (accumulate && jr + nr < nc)
                    for (int64_t r = 0; r < mi; r++) prefetch_bytes(job->y + (i0 + i + r) * ldy + col + nr, nr * (int64_t)sizeof(float));
                /* columns col.. are in strip col / 16, at column col % 16 (8-wide kernels take halves) */
                const uint8_t *b = q8_strip_block(job, col - col % Q8_STRIP, b0) + (col % Q8_STRIP) * 4;
                const uint8_t *b_hi = nj > Q8_STRIP ? q8_strip_block(job, col + Q8_STRIP, b0) : q8_zero_strip;
                float *c = job->y + (i0 + i) * ldy + col;
                if (mi == mr && nj == nr) {
                    k->micro(nb, x_pack, b, b_hi, c, ldy, accumulate);
                } else {
                    edge_tile_load(tail_c, mr, nr, c, ldy, mi, nj, accumulate);
                    k->micro(nb, x_pack, b, b_hi, tail_c, nr, accumulate);
                    edge_tile_store(tail_c, nr, c, ldy, mi, nj);
                }
                /* the outliers' products after the slice's block sums, as in the definition; the
                 * strips and the tile are still cached */
                if (n_outliers) k->strip_outliers(c, ldy, b, b_hi, (int)nj, outliers, n_outliers);
            }
            if (last && job->bias) add_bias_block(job->ops, job->y + (i0 + i) * ldy, ldy, job->bias, mi, j0, nc); /* tile still cached */
        }
    }
}

/* y = x · Wᵀ (+ bias) for a q8 W [out_dim][in_dim] (in_dim a multiple of Q8_BLOCK). */
static void matmul_q8(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, int64_t out_dim,
                      int64_t in_dim, const float *bias) {
    const q8_kernels *k = q8_kernels_for(pool);
    q8_job job = {
        .k = k, .ops = kernel_ops_for(pool), .y = y, .x = x, .w = w, .bias = bias, .n = n, .in = in_dim, .out = out_dim,
    };
    job.plan = plan_tasks(n, out_dim, k->mr, k->nr, k->nc, thread_pool_size(pool));
    /* With several column blocks, quantizing x once instead of once per block saves that many passes over
     * it; without the memory, each task quantizes its rows itself (the same bytes either way). */
    const int64_t col_blocks = job.plan.n_tasks / job.plan.n_row_blocks, groups = ceil_div(n, k->mr);
    if (col_blocks > 1) {
        /* quantized rows, masks and flags, each in floats' worth of room */
        const size_t sizes[3] = {
            (size_t)ceil_div(groups * (in_dim / Q8_BLOCK) * (int64_t)Q8_ROWS_BLOCK_BYTES(k->mr), (int64_t)sizeof(float)),
            (size_t)(groups * (in_dim / Q8_BLOCK) * k->mr),
            (size_t)ceil_div(groups * q8_slices(in_dim), (int64_t)sizeof(float)),
        };
        float *packed, *masks, *flags;
        float **arrays[3] = {&packed, &masks, &flags};
        if (pool && workspace_carve(&pool->shared, 3, sizes, arrays)) {
            job.x_packed = (const uint8_t *)packed;
            job.x_outlier_masks = (uint32_t *)masks;
            job.x_slice_outliers = (uint8_t *)flags;
            thread_pool_run(pool, (int)groups, q8_prepack_task, &job);
        }
    }
    thread_pool_run(pool, job.plan.n_tasks, matmul_q8_task, &job);
}

/* ---- attention (online softmax: at most one ATTN_BQ × ATTN_BK block of scores at a time) ----
 *
 * A task is one head × one block of query rows, worked transposed so that the softmax runs down columns
 * (one SIMD lane per query, no horizontal reductions) and no block is packed twice. Per block of keys:
 * Sᵀ = K·Qᵀ (the GEMM micro-kernel over head_dim: K packed like x's rows, Q like a weight strip, Sᵀ
 * written straight into the strip layout P·V reads), the online-softmax step on each strip of nr
 * queries (running max and sum, Pᵀ = exp(Sᵀ·scale − max), Oᵀ scaled by the correction), then
 * Oᵀ += Vᵀ·Pᵀ (the micro-kernel again, V's rows copied as packed panels). The K and V panels are packed
 * once per kv head before the tasks start (into the thread's scratch per block when that memory cannot
 * be had: the same panels). Oᵀ, the running max and sum live in the thread's scratch. Without scratch
 * (no pool, or a head too wide for it) the row-at-a-time path below does the same with dot/scale_add. */

typedef struct {
    const kernel_ops *ops;
    float *out;
    const float *q, *k, *v;
    int64_t n, q_stride, kv_stride;
    int n_heads, group, head_dim;
    int64_t query_block;
    int query_blocks;
    bool causal;
    float scale;
    float *const *scratch;
    /* NULL, or every kv head's K and Vᵀ panels, block by block (attention_pack_task): packed once
     * instead of once per query block */
    float *panels;
    int64_t key_blocks;
} attention_job;

/* One head × query_block rows, one query row at a time. The output rows double as the running
 * weighted sums of v. */
static void attention_rows_task(void *arg, int task, int thread) {
    (void)thread;
    const attention_job *job = arg;
    const kernel_ops *ops = job->ops;
    int h = task / job->query_blocks, hd = job->head_dim;
    int64_t i0 = (int64_t)(task % job->query_blocks) * job->query_block, bq = MIN(job->query_block, job->n - i0);
    int kvh = h / job->group;
    int64_t out_stride = (int64_t)job->n_heads * hd;
    float scores[ATTN_BK];
    for (int64_t i = 0; i < bq; i++) {
        const float *qi = job->q + (i0 + i) * job->q_stride + (int64_t)h * hd;
        float *oi = job->out + (i0 + i) * out_stride + (int64_t)h * hd;
        memset(oi, 0, (size_t)hd * sizeof(float));
        float row_max = -INFINITY, row_sum = 0.0f;
        int64_t keys_total = job->causal ? i0 + i + 1 : job->n;
        for (int64_t j0 = 0; j0 < keys_total; j0 += ATTN_BK) {
            int64_t keys = MIN((int64_t)ATTN_BK, keys_total - j0);
            for (int64_t j = 0; j < keys; j++)
                scores[j] = ops->dot(qi, job->k + (j0 + j) * job->kv_stride + (int64_t)kvh * hd, hd);
            float new_max = MAX(row_max, ops->row_max(scores, keys) * job->scale);
            float correction = expf(row_max - new_max); /* 0 on the first block */
            row_sum = row_sum * correction + ops->exp_sum(scores, keys, job->scale, new_max);
            for (int64_t j = 0; j < keys; j++)
                ops->scale_add(oi, j == 0 ? correction : 1.0f, job->v + (j0 + j) * job->kv_stride + (int64_t)kvh * hd,
                               scores[j], hd);
            row_max = new_max;
        }
        for (int d = 0; d < hd; d++) oi[d] /= row_sum;
    }
}

/* The packed panels of one block of keys: K [key group][hd][mr] (pack_rows may write GEMM_PACK_SLACK
 * floats past it), then Vᵀ [dim group][ATTN_BK keys][mr]. A task under the causal mask may read only
 * the first keys of a block: the layout does not depend on how many there are. */
static int64_t attention_key_panel_floats(int64_t hd, int mr) { return round_up(round_up(ATTN_BK, mr) * hd + GEMM_PACK_SLACK, 16); }
static int64_t attention_panel_floats(int64_t hd, int mr) {
    return attention_key_panel_floats(hd, mr) + round_up(round_up(ATTN_BK, mr) * round_up(hd, mr), 16);
}

/* Floats of scratch the blocked path needs per thread: bq query lanes (a multiple of nr), micro-kernel mr. */
static size_t attention_scratch_floats(int64_t bq, int64_t hd, int mr) {
    const int64_t key_rows = round_up(ATTN_BK, mr), dim_rows = round_up(hd, mr);
    return (size_t)(round_up(bq * hd, 16)               /* Qᵀ strips */
                    + attention_panel_floats(hd, mr)    /* K and Vᵀ panels of a block */
                    + bq * key_rows                     /* Sᵀ, then Pᵀ */
                    + bq * dim_rows                     /* Oᵀ */
                    + 2 * bq);                          /* running max, sum */
}

/* panel[key][r] = v[key][d0 + r] for d0 + r < hd, else 0 (Vᵀ rows d0.. packed as the micro-kernel's a). */
static void pack_value_panel(float *panel, int mr, const float *v, int64_t ld, int64_t keys, int64_t d0, int64_t hd) {
    const int64_t width = MIN((int64_t)mr, hd - d0);
    for (int64_t key = 0; key < keys; key++) {
        float *dst = panel + key * mr;
        memcpy(dst, v + key * ld + d0, (size_t)width * sizeof(float));
        for (int64_t r = width; r < mr; r++) dst[r] = 0.0f;
    }
}

/* Keys j0.. (a block of at most ATTN_BK) of kv head kvh as the panels described above, at `panels`. */
static void pack_key_value_block(const attention_job *job, float *panels, int kvh, int64_t j0) {
    const kernel_ops *ops = job->ops;
    const int mr = ops->mr;
    const int64_t hd = job->head_dim, bk = MIN((int64_t)ATTN_BK, job->n - j0);
    const float *k_rows = job->k + j0 * job->kv_stride + (int64_t)kvh * hd;
    const float *v_rows = job->v + j0 * job->kv_stride + (int64_t)kvh * hd;
    float *v_panels = panels + attention_key_panel_floats(hd, mr);
    for (int64_t g = 0; g < ceil_div(bk, mr); g++)
        ops->pack_rows(panels + g * mr * hd, mr, k_rows + g * mr * job->kv_stride, job->kv_stride, (int)MIN((int64_t)mr, bk - g * mr), hd);
    for (int64_t d0 = 0; d0 < round_up(hd, mr); d0 += mr)
        pack_value_panel(v_panels + d0 * ATTN_BK, mr, v_rows, job->kv_stride, bk, d0, hd);
}

/* One task per kv head × block of keys. */
static void attention_pack_task(void *arg, int task, int thread) {
    (void)thread;
    const attention_job *job = arg;
    const int kvh = (int)(task / job->key_blocks);
    const int64_t block = task % job->key_blocks;
    pack_key_value_block(job, job->panels + (task * attention_panel_floats(job->head_dim, job->ops->mr)), kvh, block * ATTN_BK);
}

/* Under the causal mask, lanes j (queries q0 + j) of a strip see keys up to their own: the later keys of
 * block j0 get `value` (−∞ before the softmax step, 0 after it). */
static void mask_future_keys(float *strip, int nr, int64_t keys, int64_t j0, int64_t q0, float value) {
    for (int64_t k = MAX((int64_t)0, q0 + 1 - j0); k < keys; k++)
        for (int64_t j = 0; j < nr && q0 + j < j0 + k; j++) strip[k * nr + j] = value;
}

static void attention_block_task(void *arg, int task, int thread) {
    const attention_job *job = arg;
    const kernel_ops *ops = job->ops;
    const int mr = ops->mr, nr = ops->nr;
    const int h = task / job->query_blocks, kvh = h / job->group;
    const int64_t hd = job->head_dim, bq_max = job->query_block; /* a multiple of nr */
    const int64_t i0 = (int64_t)(task % job->query_blocks) * bq_max, bq = MIN(bq_max, job->n - i0);
    const int64_t strips = ceil_div(bq, nr), key_rows = round_up(ATTN_BK, mr), dim_rows = round_up(hd, mr);
    const int64_t panel_floats = attention_panel_floats(hd, mr), key_panel_floats = attention_key_panel_floats(hd, mr);
    float *q_strips = job->scratch[thread];               /* [strip][hd][nr] */
    float *block_panels = q_strips + round_up(bq_max * hd, 16);
    float *p = block_panels + panel_floats;               /* [strip][key][nr]: Sᵀ, then Pᵀ */
    float *o = p + bq_max * key_rows;                     /* [strip][dim][nr]: Oᵀ */
    float *row_max = o + bq_max * dim_rows, *row_sum = row_max + bq_max;

    for (int64_t s = 0; s < strips; s++)
        ops->pack_strip(q_strips + s * hd * nr, nr, job->q, DT_F32, job->q_stride, i0 + s * nr,
                        (int)MIN((int64_t)nr, bq - s * nr), (int64_t)h * hd, hd);
    memset(o, 0, (size_t)(strips * dim_rows * nr) * sizeof(float));
    for (int64_t i = 0; i < strips * nr; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    const int64_t key_end = job->causal ? i0 + bq : job->n;
    for (int64_t j0 = 0; j0 < key_end; j0 += ATTN_BK) {
        const int64_t bk = MIN((int64_t)ATTN_BK, key_end - j0), key_groups = ceil_div(bk, mr);
        const float *k_panels = job->panels ? job->panels + (kvh * job->key_blocks + j0 / ATTN_BK) * panel_floats : block_panels;
        if (!job->panels) pack_key_value_block(job, block_panels, kvh, j0);
        const float *v_panels = k_panels + key_panel_floats;
        for (int64_t s = 0; s < strips; s++) {
            const int64_t q0 = i0 + s * nr; /* query of lane 0 */
            /* a strip whose queries all precede the block: probability 0 throughout, nothing changes */
            if (job->causal && j0 > q0 + nr - 1) continue;
            float *ps = p + s * key_rows * nr, *os = o + s * dim_rows * nr;
            for (int64_t g = 0; g < key_groups; g++) ops->micro(hd, k_panels + g * mr * hd, q_strips + s * hd * nr, ps + g * mr * nr, nr, false);
            const bool masked = job->causal && j0 + bk - 1 > q0;
            if (masked) mask_future_keys(ps, nr, bk, j0, q0, -INFINITY);
            ops->softmax_step(ps, bk, nr, job->scale, row_max + s * nr, row_sum + s * nr, os, dim_rows);
            if (masked) mask_future_keys(ps, nr, bk, j0, q0, 0.0f);
            for (int64_t d0 = 0; d0 < dim_rows; d0 += mr) ops->micro(bk, v_panels + d0 * ATTN_BK, ps, os + d0 * nr, nr, true);
        }
    }
    const int64_t out_stride = (int64_t)job->n_heads * hd;
    for (int64_t i = 0; i < bq; i++) {
        const float *oi = o + (i / nr) * dim_rows * nr + i % nr, inv_sum = 1.0f / row_sum[i];
        float *dst = job->out + (i0 + i) * out_stride + (int64_t)h * hd;
        for (int64_t d = 0; d < hd; d++) dst[d] = oi[d * nr] * inv_sum;
    }
}

static void attention(thread_pool *pool, float *out, const float *q, const float *k, const float *v, int64_t n,
                      int n_heads, int n_kv_heads, int head_dim, int64_t q_stride, int64_t kv_stride, bool causal) {
    if (n <= 0 || n_heads <= 0 || head_dim <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return;
    const kernel_ops *ops = kernel_ops_for(pool);
    attention_job job = {
        .ops = ops, .out = out, .q = q, .k = k, .v = v, .n = n, .q_stride = q_stride, .kv_stride = kv_stride,
        .n_heads = n_heads, .group = n_heads / n_kv_heads, .head_dim = head_dim, .causal = causal,
        .scale = 1.0f / sqrtf((float)head_dim),
    };
    /* query rows per task: whole strips of the micro-kernel's columns, about ATTN_BQ */
    int rows = causal ? ATTN_BQ_CAUSAL : ATTN_BQ;
    job.query_block = (int64_t)ops->nr * MAX(1, rows / ops->nr);
    size_t need = attention_scratch_floats(job.query_block, head_dim, ops->mr);
    bool blocked = pool && need <= pool->scratch_floats;
    if (!blocked) job.query_block = rows;
    job.query_blocks = (int)ceil_div(n, job.query_block);
    job.scratch = pool ? pool->scratch : NULL;
    job.key_blocks = ceil_div(n, ATTN_BK);
    /* K and V packed once for all query blocks; without the memory, each task packs what it reads */
    if (blocked && (job.query_blocks > 1 || job.group > 1)) {
        const size_t size = (size_t)(n_kv_heads * job.key_blocks * attention_panel_floats(head_dim, ops->mr));
        float **arrays[1] = {&job.panels};
        if (workspace_carve(&pool->shared, 1, &size, arrays))
            thread_pool_run(pool, (int)(n_kv_heads * job.key_blocks), attention_pack_task, &job);
    }
    thread_pool_run(pool, n_heads * job.query_blocks, blocked ? attention_block_task : attention_rows_task, &job);
}
