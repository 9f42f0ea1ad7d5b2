
/* ================================================================================================
 * 7d. Elementwise kernels: norms, activations, rotary embeddings
 *
 * Row-wise and elementwise operations between the matrix products, split over the pool; the
 * arithmetic is the kernel tables' (norm_sum, norm_apply, sigmoid_gate, rotate_half, scale_add).
 * ================================================================================================ */

/* ---- splitting rows or elements over the pool ---- */

/* fn(arg, begin, end) over [0, count) in chunks of at least `grain`, about four per thread. Every element
 * is computed the same way whatever the split, so results do not depend on the thread count. */
typedef void (*range_fn)(void *arg, int64_t begin, int64_t end);

typedef struct {
    range_fn fn;
    void *arg;
    int64_t count, chunk;
} range_job;

static void range_task(void *arg, int task, int thread) {
    (void)thread;
    const range_job *job = arg;
    int64_t begin = task * job->chunk;
    job->fn(job->arg, begin, MIN(job->count, begin + job->chunk));
}

static void parallel_for(thread_pool *pool, int64_t count, int64_t grain, range_fn fn, void *arg) {
    if (count <= 0) return;
    int64_t chunk = MAX(grain, ceil_div(count, 4 * (int64_t)thread_pool_size(pool)));
    range_job job = {fn, arg, count, chunk};
    thread_pool_run(pool, (int)ceil_div(count, chunk), range_task, &job);
}

/* ---- norms ---- */

typedef struct {
    const kernel_ops *ops;
    float *out;
    const float *x, *w, *b;
    int64_t dim;
    float eps;
} norm_job;

/* Qwen2 RMSNorm: x · rsqrt(mean(x²) + eps), then · w. */
static void rms_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * j->dim;
        double mean_sq = j->ops->norm_sum(xr, j->dim, 0.0, true) / (double)j->dim;
        float inv = (float)(1.0 / sqrt((double)(float)mean_sq + (double)j->eps));
        j->ops->norm_apply(j->out + r * j->dim, xr, j->dim, 0.0f, inv, j->w, NULL);
    }
}

/* LayerNorm: (x − mean) · rsqrt(var + eps) · w + b, biased variance. */
static void layer_norm_rows(void *arg, int64_t begin, int64_t end) {
    const norm_job *j = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *xr = j->x + r * j->dim;
        double mean = j->ops->norm_sum(xr, j->dim, 0.0, false) / (double)j->dim;
        double var = j->ops->norm_sum(xr, j->dim, mean, true) / (double)j->dim;
        float inv = (float)(1.0 / sqrt(var + (double)j->eps));
        j->ops->norm_apply(j->out + r * j->dim, xr, j->dim, (float)mean, inv, j->w, j->b);
    }
}

#define NORM_ROWS_GRAIN 16

/* out may be x (row by row in place). */
static void rms_norm(thread_pool *pool, float *out, const float *x, const float *w, int64_t n, int64_t dim, float eps) {
    norm_job job = {kernel_ops_for(pool), out, x, w, NULL, dim, eps};
    parallel_for(pool, n, NORM_ROWS_GRAIN, rms_norm_rows, &job);
}

static void layer_norm(thread_pool *pool, float *out, const float *x, const float *w, const float *b, int64_t n,
                       int64_t dim, float eps) {
    norm_job job = {kernel_ops_for(pool), out, x, w, b, dim, eps};
    parallel_for(pool, n, NORM_ROWS_GRAIN, layer_norm_rows, &job);
}

/* ---- elementwise pieces ---- */

#define ELEMENTWISE_GRAIN 16384

typedef struct {
    float *x;
    const float *y;
    const kernel_ops *ops;
    float alpha;
} elementwise_job;

/* x += y through scale_add(1, 1): no product rounds, so it is x + y exactly on every path. */
static void add_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    j->ops->scale_add(j->x + begin, 1.0f, j->y + begin, 1.0f, end - begin);
}

static void add_in_place(thread_pool *pool, float *x, const float *y, size_t count) {
    elementwise_job job = {x, y, kernel_ops_for(pool), 0.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, add_range, &job);
}

static void sigmoid_gate_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    j->ops->sigmoid_gate(j->x + begin, j->y ? j->y + begin : NULL, end - begin, j->alpha);
}

/* QuickGELU (the ViT MLPs): x·σ(1.702·x). */
static void quick_gelu_in_place(thread_pool *pool, float *x, size_t count) {
    elementwise_job job = {x, NULL, kernel_ops_for(pool), 1.702f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, sigmoid_gate_range, &job);
}

/* gate ← silu(gate) · up, silu(x) = x·σ(x). */
static void swiglu_in_place(thread_pool *pool, float *gate, const float *up, size_t count) {
    elementwise_job job = {gate, up, kernel_ops_for(pool), 1.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, sigmoid_gate_range, &job);
}

static void gelu_erf_range(void *arg, int64_t begin, int64_t end) {
    const elementwise_job *j = arg;
    for (int64_t i = begin; i < end; i++) j->x[i] = 0.5f * j->x[i] * (1.0f + erff(j->x[i] * (float)M_SQRT1_2));
}

/* Exact GELU (the merger and the Phi-3.5-V projection): x/2·(1 + erf(x/√2)). */
static void gelu_erf_in_place(thread_pool *pool, float *x, size_t count) {
    elementwise_job job = {x, NULL, NULL, 0.0f};
    parallel_for(pool, (int64_t)count, ELEMENTWISE_GRAIN, gelu_erf_range, &job);
}

/* ---- rotary embeddings (rotate-half layout) ---- */

/* inv_freq[j] = 1 / theta^(2j/dim) for j < dim/2, in float32 as torch computes it. */
static void rope_inverse_frequencies(double theta, int dim, float *inv_freq) {
    for (int j = 0; j < dim / 2; j++) {
        float exponent = (float)(2 * j) / (float)dim;
        inv_freq[j] = 1.0f / powf((float)theta, exponent);
    }
}

/* Rotates, in each of n rows (row stride `stride`), `n_heads` heads of head_dim floats (consecutive from
 * the row's start) by row r's angles, whose cos/sin are cos_t/sin_t + r·head_dim/2 (dims i and
 * i + head_dim/2 share angle i):
 *   out[i] = x[i]·cos − x[i+half]·sin,   out[i+half] = x[i+half]·cos + x[i]·sin.
 * Rows are split over the pool; each element is computed the same way on every path. */
typedef struct {
    const kernel_ops *ops;
    float *x;
    int64_t stride;
    int n_heads, head_dim;
    const float *cos_t, *sin_t;
} rope_job;

static void rope_range(void *arg, int64_t begin, int64_t end) {
    const rope_job *j = arg;
    const int64_t half = j->head_dim / 2;
    for (int64_t r = begin; r < end; r++)
        for (int h = 0; h < j->n_heads; h++)
            j->ops->rotate_half(j->x + r * j->stride + (int64_t)h * j->head_dim, j->cos_t + r * half,
                                j->sin_t + r * half, half);
}

#define ROPE_ROWS_GRAIN 16

static void rope_rows(thread_pool *pool, float *x, int64_t n, int64_t stride, int n_heads, int head_dim,
                      const float *cos_t, const float *sin_t) {
    rope_job job = {kernel_ops_for(pool), x, stride, n_heads, head_dim, cos_t, sin_t};
    parallel_for(pool, n, ROPE_ROWS_GRAIN, rope_range, &job);
}
