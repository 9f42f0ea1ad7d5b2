
/* ================================================================================================
 * 10. Pooling and heads: last hidden states [L][H] → one embedding (SPEC section 5)
 * ================================================================================================ */

typedef enum { POOL_MEAN_NONZERO, POOL_LAST } pooling_kind;

/* ABC's mlp_head: y = x + W2·selu(W1·x + b1) + b2. */
typedef struct {
    const tensor *w1, *b1; /* [D][H], [D] */
    const tensor *w2, *b2; /* [H][D], [H] */
    int64_t inner;         /* D */
} mlp_head;

/* ABC's mean: the sum of the rows whose token id is not 0 ("!"; ABC zeroes them) divided by the
 * number of ALL rows, as ABC's own code does. Accumulated in double. */
static void pool_mean_nonzero(const float *hidden, const int32_t *ids, int64_t L, int H, double *acc,
                              float *out) {
    for (int j = 0; j < H; j++) acc[j] = 0.0;
    for (int64_t i = 0; i < L; i++) {
        if (ids[i] == 0) continue;
        const float *row = hidden + i * H;
        for (int j = 0; j < H; j++) acc[j] += row[j];
    }
    for (int j = 0; j < H; j++) out[j] = (float)(acc[j] / (double)L);
}

/* VLM2Vec: the last position's (post-norm) state. */
static void pool_last(const float *hidden, int64_t L, int H, float *out) {
    memcpy(out, hidden + (L - 1) * H, (size_t)H * sizeof *out);
}

/* SELU with PyTorch's constants. */
static float selu(float x) {
    const float alpha = 1.6732632423543772848170429916717f, scale = 1.0507009873554804934193349852946f;
    return x > 0.0f ? scale * x : scale * (alpha * (expf(x) - 1.0f));
}

/* x [H] → out [H] = x + W2·selu(W1·x + b1) + b2; inner holds D floats. */
static void mlp_head_forward(thread_pool *pool, const mlp_head *head, const float *x, int H, float *inner,
                             float *out) {
    matmul(pool, inner, x, 1, head->w1, head->b1);
    for (int64_t j = 0; j < head->inner; j++) inner[j] = selu(inner[j]);
    matmul(pool, out, inner, 1, head->w2, head->b2);
    for (int j = 0; j < H; j++) out[j] = x[j] + out[j];
}

/* x / max(‖x‖₂, 1e-12), as torch.nn.functional.normalize. */
static void l2_normalize(float *x, int n) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * x[i];
    const float norm = (float)MAX(sqrt(sum), 1e-12);
    for (int i = 0; i < n; i++) x[i] = x[i] / norm;
}
