
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
 * Attention: see its section below. Weights of dtype DT_Q8 have no kernels yet (the quantization work
 * plugs them into matmul_any and weights_to_f32).
 * ================================================================================================ */

#define GEMM_KC 256          /* `in` slice per packed panel */
#define GEMM_NC_MAX 384      /* widest column block of any path (packed panel: GEMM_KC × nc floats) */
#define GEMM_MR_MAX 16
#define GEMM_NR_MAX 64
#define GEMM_MIN_ROWS_PER_TASK 48
#define GEMM_PACK_SLACK 16
#define GEMV_MAX_ROWS 8      /* up to this many rows of x use the dot-product path */
#define GEMV_CHUNK 1024      /* `in` slice of the dot-product path */
#define GEMV_ROWS_PER_TASK 16
#define ATTN_BQ 96           /* query rows per attention task (rounded to the micro-kernel's rows) */
#define ATTN_BQ_CAUSAL 48    /* smaller under a causal mask: less work above the diagonal */
#define ATTN_BK 64           /* keys per online-softmax step */

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
    default: return 0.0f; /* DT_Q8: see weights_to_f32 */
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

static const kernel_ops kernel_ops_scalar = {
    KERNEL_SCALAR, SCALAR_MR, SCALAR_NR, 192, gemm_micro_scalar, pack_strip_scalar, pack_rows_scalar, convert_f16_scalar, convert_bf16_scalar,
    dot_scalar, dot4_scalar, scale_add_scalar, row_max_scalar, exp_sum_scalar,
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
    /* DT_Q8: int8 blocks, defined by the quantization work; section 3 refuses them until then. */
    default: memset(out, 0, (size_t)count * sizeof(float)); break;
    }
}

static void tensor_row_f32(const tensor *t, int64_t row, float *out) {
    int64_t cols = t->ndim >= 2 ? t->shape[1] : t->shape[0];
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

static void add_bias_block(float *y, int64_t ldy, const float *bias, int64_t rows, int64_t j0, int64_t nc) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < nc; j++) y[i * ldy + j0 + j] += bias[j0 + j];
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
    float *tail_c = a_pack + (size_t)GEMM_MR_MAX * GEMM_KC + GEMM_PACK_SLACK;
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
        for (int64_t i = 0; i < rows; i += mr) {
            int64_t mi = MIN((int64_t)mr, rows - i), group = i / mr;
            prefetch_weight_lines(job, &next, next_lines * group / row_groups, next_lines * (group + 1) / row_groups);
            ops->pack_rows(a_pack, mr, job->x + (i0 + i) * job->in + k0, job->in, (int)mi, kc);
            for (int64_t jr = 0; jr < nc; jr += nr) {
                int64_t nj = MIN((int64_t)nr, nc - jr);
                float *c = job->y + (i0 + i) * ldy + j0 + jr;
                if (mi == mr && nj == nr) {
                    ops->micro(kc, a_pack, panel + jr * kc, c, ldy, accumulate);
                    continue;
                }
                /* edge tile: through a full-size copy so the micro-kernel never touches outside y */
                for (int64_t r = 0; r < mr; r++)
                    for (int64_t j = 0; j < nr; j++)
                        tail_c[r * nr + j] = (accumulate && r < mi && j < nj) ? c[r * ldy + j] : 0.0f;
                ops->micro(kc, a_pack, panel + jr * kc, tail_c, nr, accumulate);
                for (int64_t r = 0; r < mi; r++)
                    for (int64_t j = 0; j < nj; j++) c[r * ldy + j] = tail_c[r * nr + j];
            }
        }
    }
    if (job->bias) add_bias_block(job->y + i0 * ldy, ldy, job->bias, rows, j0, nc);
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
static int matmul_plan(matmul_job *job, int threads) {
    int mr = job->ops->mr, nr = job->ops->nr;
    int64_t col_blocks = ceil_div(job->out, job->ops->nc), row_blocks = 1;
    if (threads > 1) {
        if (col_blocks < 2 * threads)
            row_blocks = MAX((int64_t)1, MIN(ceil_div(2 * threads, col_blocks), job->n / GEMM_MIN_ROWS_PER_TASK));
        /* balance: a multiple of the thread count when the columns allow it */
        int64_t tasks = col_blocks * row_blocks;
        if (tasks % threads != 0) {
            int64_t want = ceil_div(round_up(tasks, threads), row_blocks);
            if (want <= ceil_div(job->out, nr)) col_blocks = want;
        }
    }
    job->cols_per_task = round_up(ceil_div(job->out, col_blocks), nr);
    col_blocks = ceil_div(job->out, job->cols_per_task);
    job->rows_per_task = round_up(ceil_div(job->n, row_blocks), mr);
    row_blocks = ceil_div(job->n, job->rows_per_task);
    job->n_row_blocks = (int)row_blocks;
    return (int)(row_blocks * col_blocks);
}

static void matmul_any(thread_pool *pool, float *y, const float *x, int64_t n, const void *w, uint32_t dtype,
                       int64_t out_dim, int64_t in_dim, const float *bias) {
    if (n <= 0 || out_dim <= 0) return;
    if (in_dim <= 0 || !(dtype == DT_F32 || dtype == DT_F16 || dtype == DT_BF16)) {
        /* empty sum; or DT_Q8, whose block layout the quantization work defines (its kernels plug in
         * here): never read a layout we do not know */
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < out_dim; j++) y[i * out_dim + j] = bias ? bias[j] : 0.0f;
        return;
    }
    matmul_job job = {
        .ops = kernel_ops_for(pool), .y = y, .x = x, .w = w, .dtype = dtype, .bias = bias,
        .n = n, .in = in_dim, .out = out_dim,
    };
    int threads = thread_pool_size(pool);
    if (n <= GEMV_MAX_ROWS || !pool || pool->scratch_floats < (size_t)GEMM_KC * (GEMM_NC_MAX + GEMM_MR_MAX) + GEMM_PACK_SLACK +
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

/* ---- attention (online softmax: at most one ATTN_BQ × ATTN_BK block of scores at a time) ----
 *
 * A task is one head × one block of query rows. Per block of keys: S = Q·Kᵀ (the GEMM micro-kernel
 * over head_dim, K packed like a weight panel), the running max/sum update and P = exp(S·scale − max),
 * then O = O·correction + P·V (the micro-kernel again, V packed in head_dim strips). O, the running
 * max and sum live in the thread's scratch. Without scratch (no pool, or a head too wide for it) the
 * row-at-a-time path below does the same with dot/scale_add. */

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

/* Floats of scratch the blocked path needs per thread. */
static size_t attention_scratch_floats(int64_t bq, int64_t hd, int64_t hd_padded, int mr) {
    return (size_t)(bq * hd + GEMM_PACK_SLACK      /* packed Q */
                    + ATTN_BK * hd                 /* packed K */
                    + ATTN_BK * hd_padded          /* packed V */
                    + bq * ATTN_BK                 /* scores / probabilities */
                    + ATTN_BK * mr + GEMM_PACK_SLACK /* packed P rows */
                    + bq * hd_padded               /* O */
                    + 2 * bq);                     /* running max, sum */
}

/* strip[key][j] = v[key][d0 + j] for key < keys and d0 + j < hd, else 0. */
static void pack_value_strip(float *strip, int nr, const float *v, int64_t ld, int64_t keys, int64_t keys_padded,
                             int64_t d0, int64_t hd) {
    int64_t width = MIN((int64_t)nr, hd - d0);
    for (int64_t key = 0; key < keys_padded; key++) {
        float *dst = strip + key * nr;
        if (key < keys) {
            memcpy(dst, v + key * ld + d0, (size_t)width * sizeof(float));
            if (width < nr) memset(dst + width, 0, (size_t)(nr - width) * sizeof(float));
        } else {
            memset(dst, 0, (size_t)nr * sizeof(float));
        }
    }
}

static void attention_block_task(void *arg, int task, int thread) {
    const attention_job *job = arg;
    const kernel_ops *ops = job->ops;
    const int mr = ops->mr, nr = ops->nr;
    const int h = task / job->query_blocks, kvh = h / job->group;
    const int64_t hd = job->head_dim, hdp = round_up(hd, nr), bq_max = job->query_block;
    const int64_t i0 = (int64_t)(task % job->query_blocks) * bq_max, bq = MIN(bq_max, job->n - i0);
    const int64_t groups = ceil_div(bq, mr);
    float *q_pack = job->scratch[thread];
    float *k_pack = q_pack + bq_max * hd + GEMM_PACK_SLACK;
    float *v_pack = k_pack + ATTN_BK * hd;
    float *scores = v_pack + ATTN_BK * hdp;
    float *p_pack = scores + bq_max * ATTN_BK;
    float *o = p_pack + ATTN_BK * mr + GEMM_PACK_SLACK;
    float *row_max = o + bq_max * hdp, *row_sum = row_max + bq_max;

    for (int64_t g = 0; g < groups; g++)
        ops->pack_rows(q_pack + g * mr * hd, mr, job->q + (i0 + g * mr) * job->q_stride + (int64_t)h * hd,
                       job->q_stride, (int)MIN((int64_t)mr, bq - g * mr), hd);
    memset(o, 0, (size_t)(groups * mr * hdp) * sizeof(float));
    for (int64_t i = 0; i < bq; i++) {
        row_max[i] = -INFINITY;
        row_sum[i] = 0.0f;
    }
    const int64_t key_end = job->causal ? i0 + bq : job->n;
    for (int64_t j0 = 0; j0 < key_end; j0 += ATTN_BK) {
        const int64_t bk = MIN((int64_t)ATTN_BK, key_end - j0), bkp = round_up(bk, nr);
        /* S = Q·Kᵀ */
        for (int64_t jr = 0; jr < bk; jr += nr)
            ops->pack_strip(k_pack + jr * hd, nr, job->k, DT_F32, job->kv_stride, j0 + jr, (int)MIN((int64_t)nr, bk - jr),
                            (int64_t)kvh * hd, hd);
        for (int64_t g = 0; g < groups; g++)
            for (int64_t jr = 0; jr < bkp; jr += nr)
                ops->micro(hd, q_pack + g * mr * hd, k_pack + jr * hd, scores + g * mr * ATTN_BK + jr, ATTN_BK, false);
        /* online softmax, row by row; masked and padding columns get probability 0 */
        for (int64_t i = 0; i < bq; i++) {
            float *s = scores + i * ATTN_BK;
            int64_t keys = job->causal ? MIN(bk, i0 + i - j0 + 1) : bk;
            float correction = 1.0f;
            if (keys > 0) {
                float new_max = MAX(row_max[i], ops->row_max(s, keys) * job->scale);
                correction = expf(row_max[i] - new_max);
                row_sum[i] = row_sum[i] * correction + ops->exp_sum(s, keys, job->scale, new_max);
                row_max[i] = new_max;
            } else {
                keys = 0;
            }
            for (int64_t j = keys; j < bkp; j++) s[j] = 0.0f;
            if (correction != 1.0f) ops->scale_add(o + i * hdp, correction, o + i * hdp, 0.0f, hdp);
        }
        /* O += P·V */
        for (int64_t d0 = 0; d0 < hdp; d0 += nr)
            pack_value_strip(v_pack + d0 * bkp, nr, job->v + j0 * job->kv_stride + (int64_t)kvh * hd, job->kv_stride, bk,
                             bkp, d0, hd);
        for (int64_t g = 0; g < groups; g++) {
            ops->pack_rows(p_pack, mr, scores + g * mr * ATTN_BK, ATTN_BK, (int)MIN((int64_t)mr, bq - g * mr), bkp);
            for (int64_t d0 = 0; d0 < hdp; d0 += nr)
                ops->micro(bkp, p_pack, v_pack + d0 * bkp, o + g * mr * hdp + d0, hdp, true);
        }
    }
    const int64_t out_stride = (int64_t)job->n_heads * hd;
    for (int64_t i = 0; i < bq; i++) {
        float *dst = job->out + (i0 + i) * out_stride + (int64_t)h * hd;
        for (int64_t d = 0; d < hd; d++) dst[d] = o[i * hdp + d] / row_sum[i];
    }
}

static void attention(thread_pool *pool, float *out, const float *q, const float *k, const float *v, int64_t n,
                      int n_heads, int n_kv_heads, int head_dim, int64_t q_stride, int64_t kv_stride, bool causal) {
    if (n <= 0 || n_heads <= 0 || head_dim <= 0 || n_kv_heads <= 0 || n_heads % n_kv_heads != 0) return;
    const kernel_ops *ops = kernel_ops_for(pool);
    /* A head_dim that is not a multiple of the AVX-512 kernel's 32 columns (the ViT's 80) would pad
     * O·V by up to 31 columns; the 16-wide AVX2 kernel pads less. */
    if (ops->path == KERNEL_AVX512 && head_dim % ops->nr != 0 && kernel_ops_avx2()) ops = kernel_ops_avx2();
    attention_job job = {
        .ops = ops, .out = out, .q = q, .k = k, .v = v, .n = n, .q_stride = q_stride, .kv_stride = kv_stride,
        .n_heads = n_heads, .group = n_heads / n_kv_heads, .head_dim = head_dim, .causal = causal,
        .scale = 1.0f / sqrtf((float)head_dim),
    };
    /* query rows per task: a multiple of the micro-kernel's rows, about ATTN_BQ */
    int rows = causal ? ATTN_BQ_CAUSAL : ATTN_BQ;
    job.query_block = (int64_t)ops->mr * MAX(1, rows / ops->mr);
    size_t need = attention_scratch_floats(job.query_block, head_dim, round_up(head_dim, ops->nr), ops->mr);
    bool blocked = pool && need <= pool->scratch_floats;
    if (!blocked) job.query_block = rows;
    job.query_blocks = (int)ceil_div(n, job.query_block);
    job.scratch = pool ? pool->scratch : NULL;
    thread_pool_run(pool, n_heads * job.query_blocks, blocked ? attention_block_task : attention_rows_task, &job);
}

/* ---- norms (double accumulation: outlier channels make float sums drift) ---- */

/* Σ x[i] and Σ (x[i] − shift)² in double, four interleaved partial sums each (independent add chains
 * run four times faster than one; the order is fixed, so results are too). */
static double sum_f64(const float *x, int64_t n) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += x[i];
        s1 += x[i + 1];
        s2 += x[i + 2];
        s3 += x[i + 3];
    }
    for (; i < n; i++) s0 += x[i];
    return (s0 + s1) + (s2 + s3);
}

static double sum_sq_f64(const float *x, int64_t n, double shift) {
    double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        double d0 = x[i] - shift, d1 = x[i + 1] - shift, d2 = x[i + 2] - shift, d3 = x[i + 3] - shift;
        s0 += d0 * d0;
        s1 += d1 * d1;
        s2 += d2 * d2;
        s3 += d3 * d3;
    }
    for (; i < n; i++) s0 += (x[i] - shift) * (x[i] - shift);
    return (s0 + s1) + (s2 + s3);
}

/* Qwen2 RMSNorm: x · rsqrt(mean(x²) + eps), then · w. */
static void rms_norm(float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double mean_sq = sum_sq_f64(xr, dim, 0.0) / (double)dim;
        float inv = (float)(1.0 / sqrt((double)(float)mean_sq + (double)eps));
        for (int64_t i = 0; i < dim; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

/* LayerNorm: (x − mean) · rsqrt(var + eps) · w + b, biased variance. */
static void layer_norm(float *out, const float *x, const float *w, const float *b, int64_t n, int64_t dim,
                       float eps) {
    for (int64_t r = 0; r < n; r++) {
        const float *xr = x + r * dim;
        float *yr = out + r * dim;
        double mean = sum_f64(xr, dim) / (double)dim;
        double var = sum_sq_f64(xr, dim, mean) / (double)dim;
        float inv = (float)(1.0 / sqrt(var + (double)eps));
        float mean_f = (float)mean;
        for (int64_t i = 0; i < dim; i++) yr[i] = (xr[i] - mean_f) * inv * w[i] + b[i];
    }
}
