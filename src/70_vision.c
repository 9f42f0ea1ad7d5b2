
/* ================================================================================================
 * 8. Vision encoder: the Qwen2-VL ViT and its 2×2 patch merger (SPEC section 5)
 *
 * Shared by sections 8–10: the sizes a forward pass carves from its workspace (section 1), the linear
 * layer (with the optional unmerged LoRA of the ABC query adapter) and the rotary helpers.
 * ================================================================================================ */

/* rows·cols with overflow folded into SIZE_MAX, which workspace_carve then refuses. */
static size_t floats_for(int64_t rows, int64_t cols) {
    size_t n;
    if (rows < 0 || cols < 0 || !mul_size((size_t)rows, (size_t)cols, &n)) return SIZE_MAX;
    return n;
}

/* ---- linear layers ---- */

/* y = W·x + b, and for the ABC query adapter (kept apart from the weights) y += B·(A·x), the LoRA
 * scale already folded into B by the converter. */
typedef struct {
    const tensor *weight; /* [out][in], any stored dtype */
    const tensor *bias;   /* [out] f32, or NULL */
    const float *lora_a;  /* [rank][in] f32, or NULL when the adapter does not touch this layer */
    const float *lora_b;  /* [out][rank] f32 */
    int64_t in, out;
    int rank;
} linear_layer;

/* Room for the adapter path of one linear layer: rows·max_rank and rows·max_out floats. NULL (or
 * NULL members) means the adapter is off. */
typedef struct {
    float *low_rank; /* A·x */
    float *delta;    /* B·(A·x) */
} adapter_scratch;

static void linear_forward(thread_pool *pool, const linear_layer *l, const float *x, int64_t n,
                           float *y, const adapter_scratch *adapter) {
    matmul(pool, y, x, n, l->weight, l->bias);
    if (!adapter || !adapter->low_rank || !l->lora_a) return;
    matmul_f32(pool, adapter->low_rank, x, n, l->lora_a, l->rank, l->in, NULL);
    matmul_f32(pool, adapter->delta, adapter->low_rank, n, l->lora_b, l->out, l->rank, NULL);
    size_t count = (size_t)n * (size_t)l->out;
    for (size_t i = 0; i < count; i++) y[i] += adapter->delta[i];
}

/* ---- the vision tower ---- */

typedef struct {
    int depth, embed_dim, n_heads, head_dim, mlp_dim;
    int patch_dim;  /* in_channels · temporal_patch · patch² (1176) */
    int merge_size; /* 2: each merged token is a 2×2 group of patches */
    int out_dim;    /* the language model's width */
    float norm_eps;
    double rope_theta;
} vision_config;

typedef struct {
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    linear_layer qkv, proj, fc1, fc2;
} vision_block;

typedef struct {
    linear_layer patch_embed; /* [embed_dim][patch_dim], no bias */
    vision_block *blocks;     /* depth of them */
    const float *ln_q_w, *ln_q_b;
    linear_layer merger_fc1, merger_fc2; /* merger.mlp.0 and merger.mlp.2 */
    int adapter_rank, adapter_width;     /* largest query-adapter rank and output (0: none) */
} vision_weights;

/* The (row, column) in the patch grid of each patch of one frame, in the order of SPEC 4.5
 * (2×2 groups row-major, then row and column inside the group). */
static void vision_patch_coordinates(int grid_w, int merge, int64_t k, int *row, int *col) {
    const int64_t group = k / ((int64_t)merge * merge), inside = k % ((int64_t)merge * merge);
    const int groups_per_row = grid_w / merge;
    *row = (int)(group / groups_per_row) * merge + (int)(inside / merge);
    *col = (int)(group % groups_per_row) * merge + (int)(inside % merge);
}

/* cos/sin [n][head_dim/2] of the 2-D rotary embedding: head_dim/4 row frequencies then head_dim/4
 * column frequencies, theta^(2j/(head_dim/2)). Frames repeat the same coordinates. */
static void vision_rotary_tables(const vision_config *c, const int grid[3], float *cos_t, float *sin_t) {
    const int half = c->head_dim / 2, quarter = half / 2;
    float inv_freq[512]; /* head_dim ≤ 2048 is checked at load */
    rope_inverse_frequencies(c->rope_theta, half, inv_freq);
    const int64_t per_frame = (int64_t)grid[1] * grid[2];
    for (int64_t p = 0; p < per_frame * grid[0]; p++) {
        int row, col;
        vision_patch_coordinates(grid[2], c->merge_size, p % per_frame, &row, &col);
        float *cs = cos_t + p * half, *sn = sin_t + p * half;
        for (int j = 0; j < quarter; j++) {
            float a_row = (float)row * inv_freq[j], a_col = (float)col * inv_freq[j];
            cs[j] = cosf(a_row);
            sn[j] = sinf(a_row);
            cs[quarter + j] = cosf(a_col);
            sn[quarter + j] = sinf(a_col);
        }
    }
}

/* One pre-norm ViT block on x [n][E]: x += proj(attention(rope(qkv(LN1 x)))), x += fc2(qgelu(fc1(LN2 x))).
 * Attention is full (bidirectional) within each frame of grid_h·grid_w patches. */
typedef struct {
    float *x, *h, *qkv, *att, *mlp, *cos_t, *sin_t;
    adapter_scratch adapter;
} vision_state;

static void vision_block_forward(thread_pool *pool, const vision_config *c, const vision_block *b,
                                 vision_state *s, const int grid[3], const adapter_scratch *adapter) {
    const int64_t n = (int64_t)grid[0] * grid[1] * grid[2], per_frame = (int64_t)grid[1] * grid[2];
    const int E = c->embed_dim, hd = c->head_dim;

    layer_norm(pool, s->h, s->x, b->norm1_w, b->norm1_b, n, E, c->norm_eps);
    linear_forward(pool, &b->qkv, s->h, n, s->qkv, adapter);
    /* each row is [q | k | v], each [heads][head_dim] */
    rope_rows(pool, s->qkv, n, 3 * (int64_t)E, c->n_heads, hd, s->cos_t, s->sin_t);
    rope_rows(pool, s->qkv + E, n, 3 * (int64_t)E, c->n_heads, hd, s->cos_t, s->sin_t);
    for (int t = 0; t < grid[0]; t++) {
        const float *q = s->qkv + (size_t)t * per_frame * 3 * E;
        attention(pool, s->att + (size_t)t * per_frame * E, q, q + E, q + 2 * E, per_frame, c->n_heads,
                  c->n_heads, hd, 3 * (int64_t)E, 3 * (int64_t)E, false);
    }
    linear_forward(pool, &b->proj, s->att, n, s->h, adapter);
    add_in_place(pool, s->x, s->h, (size_t)n * E);

    layer_norm(pool, s->h, s->x, b->norm2_w, b->norm2_b, n, E, c->norm_eps);
    linear_forward(pool, &b->fc1, s->h, n, s->mlp, adapter);
    quick_gelu_in_place(pool, s->mlp, (size_t)n * c->mlp_dim);
    linear_forward(pool, &b->fc2, s->mlp, n, s->h, adapter);
    add_in_place(pool, s->x, s->h, (size_t)n * E);
}

/* pixels [n][patch_dim] in the patch order of SPEC 4.5 → out [n/merge²][out_dim], the embeddings that
 * replace the image tokens. The caller has checked the grid (t·h·w = n, h and w multiples of merge). */
static abc_status vision_forward(thread_pool *pool, const vision_config *c, const vision_weights *w,
                                 const float *pixels, const int grid[3], bool adapter_on, workspace *ws,
                                 float *out, abc_error *err) {
    const int64_t n = (int64_t)grid[0] * grid[1] * grid[2];
    const int E = c->embed_dim, group = c->merge_size * c->merge_size;
    const int64_t n_merged = n / group;
    const bool use_adapter = adapter_on && w->adapter_rank > 0;
    vision_state s;
    const size_t sizes[] = {floats_for(n, E),          floats_for(n, E),
                            floats_for(n, 3 * (int64_t)E), floats_for(n, E),
                            floats_for(n, c->mlp_dim),  floats_for(n, c->head_dim / 2),
                            floats_for(n, c->head_dim / 2),
                            use_adapter ? floats_for(n, w->adapter_rank) : 0,
                            use_adapter ? floats_for(n, w->adapter_width) : 0};
    float **arrays[] = {&s.x, &s.h, &s.qkv, &s.att, &s.mlp, &s.cos_t, &s.sin_t, &s.adapter.low_rank,
                        &s.adapter.delta};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the vision tower (%lld patches)", (long long)n);
    if (!use_adapter) s.adapter.low_rank = s.adapter.delta = NULL;
    const adapter_scratch *adapter = use_adapter ? &s.adapter : NULL;

    linear_forward(pool, &w->patch_embed, pixels, n, s.x, adapter);
    vision_rotary_tables(c, grid, s.cos_t, s.sin_t);
    for (int i = 0; i < c->depth; i++) vision_block_forward(pool, c, &w->blocks[i], &s, grid, adapter);

    /* Merger: LayerNorm per patch; the `group` consecutive patches of a 2×2 group, side by side, are
     * one row of [n_merged][group·E] — the same memory, so no copy. */
    layer_norm(pool, s.h, s.x, w->ln_q_w, w->ln_q_b, n, E, c->norm_eps);
    linear_forward(pool, &w->merger_fc1, s.h, n_merged, s.att, adapter);
    gelu_erf_in_place(pool, s.att, (size_t)n_merged * group * E);
    linear_forward(pool, &w->merger_fc2, s.att, n_merged, out, adapter);
    return ABC_OK;
}
