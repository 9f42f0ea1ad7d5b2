
/* ================================================================================================
 * 9. Language model: multimodal position ids and the Qwen2 decoder (SPEC section 5)
 * ================================================================================================ */

typedef struct {
    int hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim;
    int64_t vocab;
    float rms_eps;
    double rope_theta;
    int mrope_section[3]; /* rotary frequencies per position component (t, h, w); sum = head_dim/2 */
    bool causal;          /* vlm2vec: causal; abc: bidirectional */
    bool mrope_token_type; /* transformers ≥ 5: every image run gets 3-D ids (else only announced ones) */
    int32_t image_token, vision_start_token;
    int merge_size;        /* the vision tower's: merged grid = patch grid / merge_size */
    /* Phi-3 "su" (longrope) scaling: inv_freq[j] / factor[j] with the short factors while the sequence
     * fits original_max_positions, the long ones beyond; cos/sin scaled by attention_factor. NULL
     * factors: plain RoPE (Qwen2-VL, whose mrope_section then spreads the frequencies over t, h, w). */
    const float *rope_short_factor, *rope_long_factor; /* head_dim/2 each */
    int64_t rope_original_max_positions, rope_max_positions;
} text_config;

typedef struct {
    const float *input_norm, *post_attn_norm;
    linear_layer q, k, v, o, gate, up, down;
} text_layer;

typedef struct {
    const tensor *embed_tokens; /* [vocab][hidden] */
    text_layer *layers;         /* n_layers of them */
    const float *final_norm;
    int adapter_rank, adapter_width; /* largest query-adapter rank and output (0: none) */
} text_weights;

/* ---- multimodal RoPE position ids ---- */

/* Number of image tokens one image occupies: t · (h/merge) · (w/merge). */
static int64_t image_token_count(const int grid[3], int merge) {
    return (int64_t)grid[0] * (grid[1] / merge) * (grid[2] / merge);
}

/* How many image-token runs get 3-D ids. transformers ≤ 4.5x (ABC, VLM2Vec) counts the images
 * announced by <|vision_start|> directly before an image token, then gives 3-D ids to that many runs
 * in order; transformers 5 gives them to every run. */
static int64_t mrope_3d_runs(const text_config *c, const int32_t *ids, int64_t L, int64_t total_runs) {
    if (c->mrope_token_type) return total_runs;
    int64_t announced = 0;
    for (int64_t i = 0; i + 1 < L; i++)
        if (ids[i] == c->vision_start_token && ids[i + 1] == c->image_token) announced++;
    return MIN(announced, total_runs);
}

/* pos [3][L] (t, h, w) for every token. Text: all three = a running index. An image run of 3-D ids
 * (each run is one image: t·(h/m)·(w/m) tokens) at merged-grid (tt, row, col) gets (s+tt, s+row, s+col)
 * with s = the running index, which then continues at the largest id so far + 1. `grid` is NULL when
 * there is no image; image tokens must then be absent. */
static abc_status mrope_position_ids(const text_config *c, const int32_t *ids, int64_t L,
                                     const int grid[3], int32_t *pos, abc_error *err) {
    int64_t per_image = grid ? image_token_count(grid, c->merge_size) : 0, n_image_tokens = 0;
    for (int64_t i = 0; i < L; i++) n_image_tokens += ids[i] == c->image_token;
    if (n_image_tokens && !per_image)
        return fail(err, ABC_ERR_PROMPT, "the tokens contain %lld image tokens but there is no image",
                    (long long)n_image_tokens);
    if (per_image && (n_image_tokens == 0 || n_image_tokens % per_image != 0))
        return fail(err, ABC_ERR_PROMPT,
                    "the image needs %lld image tokens (a run per placeholder) but the tokens contain %lld",
                    (long long)per_image, (long long)n_image_tokens);
    const int64_t runs_3d = per_image ? mrope_3d_runs(c, ids, L, n_image_tokens / per_image) : 0;
    const int64_t mh = grid ? grid[1] / c->merge_size : 0, mw = grid ? grid[2] / c->merge_size : 0;
    int32_t *pt = pos, *ph = pos + L, *pw = pos + 2 * L;
    int64_t next = 0, done_3d = 0, i = 0;
    while (i < L) {
        if (ids[i] == c->image_token && done_3d < runs_3d) {
            if (i + per_image > L)
                return fail(err, ABC_ERR_PROMPT, "an image-token run at %lld is shorter than the image's %lld tokens",
                            (long long)i, (long long)per_image);
            for (int64_t k = 0; k < per_image; k++) {
                if (ids[i + k] != c->image_token)
                    return fail(err, ABC_ERR_PROMPT,
                                "an image-token run at %lld is shorter than the image's %lld tokens",
                                (long long)i, (long long)per_image);
                pt[i + k] = (int32_t)(next + k / (mh * mw));
                ph[i + k] = (int32_t)(next + (k / mw) % mh);
                pw[i + k] = (int32_t)(next + k % mw);
            }
            next += MAX((int64_t)grid[0], MAX(mh, mw));
            i += per_image;
            done_3d++;
        } else {
            pt[i] = ph[i] = pw[i] = (int32_t)next++;
            i++;
        }
    }
    return ABC_OK;
}

/* ---- the decoder ---- */

/* su/longrope: the factor set a sequence of L tokens uses (NULL without su scaling). */
static const float *rope_su_factors(const text_config *c, int64_t L) {
    if (!c->rope_short_factor) return NULL;
    return L > c->rope_original_max_positions ? c->rope_long_factor : c->rope_short_factor;
}

/* su/longrope scales cos and sin by sqrt(1 + ln(max/orig)/ln(orig)) when the context was extended
 * (computed in double as Python does, applied in float32); 1 otherwise. */
static float rope_su_attention_factor(const text_config *c) {
    if (!c->rope_short_factor || c->rope_max_positions <= c->rope_original_max_positions) return 1.0f;
    const double scale = (double)c->rope_max_positions / (double)c->rope_original_max_positions;
    return (float)sqrt(1.0 + log(scale) / log((double)c->rope_original_max_positions));
}

/* cos/sin [L][head_dim/2]: frequency j = theta^(−2j/head_dim) (divided by the su factor j when the
 * model has su scaling) uses position component k for the j in the k-th block of mrope_section
 * (contiguous blocks t, h, w); 1-D positions (Phi-3) have mrope_section {head_dim/2, 0, 0}. */
static void text_rotary_tables(const text_config *c, const int32_t *pos, int64_t L, float *cos_t,
                               float *sin_t) {
    const int half = c->head_dim / 2;
    float inv_freq[1024]; /* head_dim ≤ 2048 is checked at load */
    int component[1024] = {0}; /* every frequency has a component even if mrope_section falls short */
    const float *factors = rope_su_factors(c, L);
    if (factors) /* torch: 1 / (factor · theta^e), every step in float32 */
        for (int j = 0; j < half; j++)
            inv_freq[j] = 1.0f / (factors[j] * powf((float)c->rope_theta, (float)(2 * j) / (float)c->head_dim));
    else
        rope_inverse_frequencies(c->rope_theta, c->head_dim, inv_freq);
    const float scale = rope_su_attention_factor(c);
    for (int k = 0, j = 0; k < 3; k++)
        for (int r = 0; r < c->mrope_section[k]; r++) component[j++] = k;
    for (int64_t i = 0; i < L; i++) {
        for (int j = 0; j < half; j++) {
            float angle = (float)pos[component[j] * L + i] * inv_freq[j];
            cos_t[i * half + j] = cosf(angle) * scale;
            sin_t[i * half + j] = sinf(angle) * scale;
        }
    }
}

typedef struct {
    float *h, *q, *k, *v, *att, *gate, *up, *cos_t, *sin_t;
    adapter_scratch adapter;
} text_state;

/* One decoder layer on the residual stream x [L][H]:
 *   x += o(attention(rope(q(n)), rope(k(n)), v(n))),  n = RMSNorm(x)
 *   x += down(silu(gate(n)) · up(n)),                  n = RMSNorm(x)                                */
static void text_layer_forward(thread_pool *pool, const text_config *c, const text_layer *l, float *x,
                               text_state *s, int64_t L, const adapter_scratch *adapter) {
    const int H = c->hidden, hd = c->head_dim;
    const int64_t q_width = (int64_t)c->n_heads * hd, kv_width = (int64_t)c->n_kv_heads * hd;

    rms_norm(pool, s->h, x, l->input_norm, L, H, c->rms_eps);
    linear_forward(pool, &l->q, s->h, L, s->q, adapter);
    linear_forward(pool, &l->k, s->h, L, s->k, adapter);
    linear_forward(pool, &l->v, s->h, L, s->v, adapter);
    rope_rows(pool, s->q, L, q_width, c->n_heads, hd, s->cos_t, s->sin_t);
    rope_rows(pool, s->k, L, kv_width, c->n_kv_heads, hd, s->cos_t, s->sin_t);
    attention(pool, s->att, s->q, s->k, s->v, L, c->n_heads, c->n_kv_heads, hd, q_width, kv_width,
              c->causal);
    linear_forward(pool, &l->o, s->att, L, s->h, adapter);
    add_in_place(pool, x, s->h, (size_t)L * H);

    rms_norm(pool, s->h, x, l->post_attn_norm, L, H, c->rms_eps);
    linear_forward(pool, &l->gate, s->h, L, s->gate, adapter);
    linear_forward(pool, &l->up, s->h, L, s->up, adapter);
    swiglu_in_place(pool, s->gate, s->up, (size_t)L * c->intermediate);
    linear_forward(pool, &l->down, s->gate, L, s->h, adapter);
    add_in_place(pool, x, s->h, (size_t)L * H);
}

/* The decoder's input x [L][H]: token embeddings, image tokens (id c->image_token) taking the rows of
 * image_embeds in order, repeating for every run. The caller has validated ids (< vocab, and image
 * tokens only with image_embeds). */
static void language_embed_inputs(const text_config *c, const text_weights *w, const int32_t *ids, int64_t L,
                                  const float *image_embeds, int64_t n_image_rows, float *x) {
    const int H = c->hidden;
    int64_t image_row = 0;
    for (int64_t i = 0; i < L; i++) {
        if (ids[i] == c->image_token && image_embeds) {
            memcpy(x + i * H, image_embeds + (image_row % n_image_rows) * H, (size_t)H * sizeof *x);
            image_row++;
        } else {
            tensor_row_f32(w->embed_tokens, ids[i], x + i * H);
        }
    }
}

/* Decoder layers → final RMSNorm on x [L][H] in place (the inputs embeddings in, the last hidden
 * states out). */
static abc_status language_decode(thread_pool *pool, const text_config *c, const text_weights *w, int64_t L,
                                  const int32_t *pos, bool adapter_on, workspace *ws, float *x, abc_error *err) {
    const int H = c->hidden, half = c->head_dim / 2;
    const int64_t q_width = (int64_t)c->n_heads * c->head_dim,
                  kv_width = (int64_t)c->n_kv_heads * c->head_dim;
    const bool use_adapter = adapter_on && w->adapter_rank > 0;
    text_state s;
    const size_t sizes[] = {floats_for(L, H),
                            floats_for(L, q_width),
                            floats_for(L, kv_width),
                            floats_for(L, kv_width),
                            floats_for(L, q_width),
                            floats_for(L, c->intermediate),
                            floats_for(L, c->intermediate),
                            floats_for(L, half),
                            floats_for(L, half),
                            use_adapter ? floats_for(L, w->adapter_rank) : 0,
                            use_adapter ? floats_for(L, w->adapter_width) : 0};
    float **arrays[] = {&s.h,   &s.q,     &s.k,     &s.v, &s.att, &s.gate, &s.up, &s.cos_t, &s.sin_t,
                        &s.adapter.low_rank, &s.adapter.delta};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the language model (%lld tokens)", (long long)L);
    const adapter_scratch *adapter = use_adapter ? &s.adapter : NULL;

    text_rotary_tables(c, pos, L, s.cos_t, s.sin_t);
    for (int i = 0; i < c->n_layers; i++) text_layer_forward(pool, c, &w->layers[i], x, &s, L, adapter);
    rms_norm(pool, x, x, w->final_norm, L, H, c->rms_eps);
    return ABC_OK;
}
