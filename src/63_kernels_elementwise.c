
/* ================================================================================================
 * 7d. Elementwise kernels: norms, activations, rotary embeddings
 *
 * Row-wise and elementwise operations between the matrix products. Norms accumulate in double
 * (outlier channels make float sums drift).
 * ================================================================================================ */

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

/* ---- elementwise pieces ---- */

static void add_in_place(float *x, const float *y, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] += y[i];
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* QuickGELU (the ViT MLP): x·σ(1.702·x). */
static void quick_gelu_in_place(float *x, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] = x[i] * sigmoidf(1.702f * x[i]);
}

/* Exact GELU (the merger): x/2·(1 + erf(x/√2)). */
static void gelu_erf_in_place(float *x, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * (float)M_SQRT1_2));
}

/* gate ← silu(gate) · up, silu(x) = x·σ(x). */
static void swiglu_in_place(float *gate, const float *up, size_t count) {
    for (size_t i = 0; i < count; i++) gate[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

/* ---- rotary embeddings (rotate-half layout) ---- */

/* inv_freq[j] = 1 / theta^(2j/dim) for j < dim/2, in float32 as torch computes it. */
static void rope_inverse_frequencies(double theta, int dim, float *inv_freq) {
    for (int j = 0; j < dim / 2; j++) {
        float exponent = (float)(2 * j) / (float)dim;
        inv_freq[j] = 1.0f / powf((float)theta, exponent);
    }
}

/* Rotates each of `n_heads` heads (head_dim floats, consecutive from x) by the angles whose cos/sin
 * are given (head_dim/2 values; dims i and i + head_dim/2 share angle i):
 *   out[i] = x[i]·cos − x[i+half]·sin,   out[i+half] = x[i+half]·cos + x[i]·sin. */
static void rope_rotate_heads(float *x, int n_heads, int head_dim, const float *cos_a,
                              const float *sin_a) {
    const int half = head_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos_a[i] - b * sin_a[i];
            v[i + half] = b * cos_a[i] + a * sin_a[i];
        }
    }
}
