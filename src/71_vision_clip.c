
/* ================================================================================================
 * 8b. Vision encoder for Phi-3.5-V: the CLIP ViT, the HD token layout and the projection (SPEC 11)
 *
 * Each 336×336 slot (slot 0 the global view, then the crops row-major) goes through CLIP: patch
 * embedding + class token + learned positions, pre-LayerNorm, pre-norm encoder layers with quick-GELU;
 * the features are the output of the second-to-last layer (the converter stores only the layers that
 * run), class token dropped. 2×2 patch groups are concatenated into 4·C-wide tokens, laid out as the
 * crops stitched into one grid whose rows each end with sub_GN, then glb_GN, then the global view's
 * rows each ending with sub_GN; Linear–GELU(erf)–Linear projects every token to the decoder's width.
 * ================================================================================================ */

typedef struct {
    int hidden, intermediate, n_heads, head_dim, n_layers;
    int image_size, patch_size;
    int grid;        /* patches per side of a slot: image_size / patch_size (24) */
    int patch_dim;   /* 3 · patch_size² (588), the conv kernel flattened (channel, ky, kx) */
    int out_dim;     /* the decoder's width */
    float norm_eps;
} clip_config;

typedef struct {
    const float *ln1_w, *ln1_b, *ln2_w, *ln2_b;
    linear_layer q, k, v, out, fc1, fc2;
} clip_layer;

typedef struct {
    linear_layer patch_embed;           /* [C][patch_dim], no bias */
    const float *class_embedding;       /* [C] */
    const tensor *position_embedding;   /* [grid² + 1][C], any weight dtype */
    const float *pre_ln_w, *pre_ln_b;
    clip_layer *layers;                 /* n_layers of them */
    const float *glb_gn, *sub_gn;       /* [4C] separators */
    linear_layer proj0, proj2;          /* img_projection.0 [H][4C] and .2 [H][H] */
} clip_weights;

/* Tokens one image takes with an h_crop × w_crop crop grid: every view is (grid/2)² merged tokens, the
 * stitched crop grid has h_crop·grid/2 rows ending in sub_GN, the global view grid/2 rows; + glb_GN. */
static int64_t hd_image_token_count(const clip_config *c, int h_crop, int w_crop) {
    const int64_t side = c->grid / 2;
    return ((int64_t)h_crop * w_crop + 1) * side * side + 1 + ((int64_t)h_crop + 1) * side;
}

/* One slot [3][S][S] → patches [grid²][3·p·p], patches row-major, each in (channel, ky, kx) order. */
static void clip_extract_patches(const clip_config *c, const float *slot, float *patches) {
    const int S = c->image_size, p = c->patch_size, g = c->grid;
    for (int py = 0; py < g; py++)
        for (int px = 0; px < g; px++) {
            float *dst = patches + ((size_t)py * g + px) * c->patch_dim;
            for (int ch = 0; ch < 3; ch++)
                for (int ky = 0; ky < p; ky++) {
                    const float *src = slot + ((size_t)ch * S + (size_t)py * p + ky) * S + (size_t)px * p;
                    memcpy(dst, src, (size_t)p * sizeof *dst);
                    dst += p;
                }
        }
}

typedef struct {
    float *x, *h, *q, *k, *v, *att, *mlp;
} clip_state;

/* One pre-norm encoder layer on x [n_slots·T][C] (T = grid² + 1 tokens per slot, attention within a slot):
 *   x += out(attention(q(n), k(n), v(n))), n = LN1(x);   x += fc2(quick_gelu(fc1(LN2(x)))). */
static void clip_layer_forward(thread_pool *pool, const clip_config *c, const clip_layer *l, clip_state *s,
                               int n_slots) {
    const int64_t T = (int64_t)c->grid * c->grid + 1, n = T * n_slots;
    const int C = c->hidden;
    layer_norm(pool, s->h, s->x, l->ln1_w, l->ln1_b, n, C, c->norm_eps);
    linear_forward(pool, &l->q, s->h, n, s->q, NULL);
    linear_forward(pool, &l->k, s->h, n, s->k, NULL);
    linear_forward(pool, &l->v, s->h, n, s->v, NULL);
    for (int slot = 0; slot < n_slots; slot++) {
        const size_t at = (size_t)slot * T * C;
        attention(pool, s->att + at, s->q + at, s->k + at, s->v + at, T, c->n_heads, c->n_heads, c->head_dim, C, C,
                  false);
    }
    linear_forward(pool, &l->out, s->att, n, s->h, NULL);
    add_in_place(pool, s->x, s->h, (size_t)n * C);

    layer_norm(pool, s->h, s->x, l->ln2_w, l->ln2_b, n, C, c->norm_eps);
    linear_forward(pool, &l->fc1, s->h, n, s->mlp, NULL);
    quick_gelu_in_place(pool, s->mlp, (size_t)n * c->intermediate);
    linear_forward(pool, &l->fc2, s->mlp, n, s->h, NULL);
    add_in_place(pool, s->x, s->h, (size_t)n * C);
}

/* pixels [n_slots][3][S][S] → features [n_slots][grid²][C]: the patch features of every slot. */
static abc_status clip_forward(thread_pool *pool, const clip_config *c, const clip_weights *w, const float *pixels,
                               int n_slots, workspace *ws, float *features, abc_error *err) {
    const int64_t P = (int64_t)c->grid * c->grid, T = P + 1, n = T * n_slots;
    const int C = c->hidden;
    clip_state s;
    float *patches, *embedded;
    const size_t sizes[] = {floats_for(n, C), floats_for(n, C), floats_for(n, C), floats_for(n, C),
                            floats_for(n, C), floats_for(n, C), floats_for(n, c->intermediate),
                            floats_for(P * n_slots, c->patch_dim), floats_for(P * n_slots, C)};
    float **arrays[] = {&s.x, &s.h, &s.q, &s.k, &s.v, &s.att, &s.mlp, &patches, &embedded};
    if (!workspace_carve(ws, (int)(sizeof sizes / sizeof sizes[0]), sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the CLIP encoder (%d image slots)", n_slots);

    const size_t slot_floats = (size_t)3 * c->image_size * c->image_size;
    for (int slot = 0; slot < n_slots; slot++)
        clip_extract_patches(c, pixels + slot * slot_floats, patches + (size_t)slot * P * c->patch_dim);
    linear_forward(pool, &w->patch_embed, patches, P * n_slots, embedded, NULL);
    float *position = s.h; /* one row at a time */
    for (int slot = 0; slot < n_slots; slot++) {
        float *x = s.x + (size_t)slot * T * C;
        for (int64_t t = 0; t < T; t++) {
            const float *token = t == 0 ? w->class_embedding : embedded + ((size_t)slot * P + (size_t)t - 1) * C;
            tensor_row_f32(w->position_embedding, t, position);
            for (int j = 0; j < C; j++) x[t * C + j] = token[j] + position[j];
        }
    }
    layer_norm(pool, s.x, s.x, w->pre_ln_w, w->pre_ln_b, n, C, c->norm_eps);
    for (int i = 0; i < c->n_layers; i++) clip_layer_forward(pool, c, &w->layers[i], &s, n_slots);
    for (int slot = 0; slot < n_slots; slot++) /* drop the class token */
        memcpy(features + (size_t)slot * P * C, s.x + ((size_t)slot * T + 1) * C, (size_t)P * C * sizeof *features);
    return ABC_OK;
}

/* The 4·C-wide token of the 2×2 patch group at merged (row, col) of one slot's features [grid²][C]:
 * patches (dy, dx) = (0,0), (0,1), (1,0), (1,1) side by side. */
static void hd_merged_token(const clip_config *c, const float *slot_features, int row, int col, float *out) {
    const int C = c->hidden;
    for (int dy = 0; dy < 2; dy++)
        for (int dx = 0; dx < 2; dx++) {
            const int64_t patch = (int64_t)(2 * row + dy) * c->grid + 2 * col + dx;
            memcpy(out + (size_t)(2 * dy + dx) * C, slot_features + patch * C, (size_t)C * sizeof *out);
        }
}

/* features [1 + h·w][grid²][C] (slot 0 global) → tokens [hd_image_token_count][4C] in the layout above. */
static void hd_layout(const clip_config *c, const float *features, int h_crop, int w_crop, const float *sub_gn,
                      const float *glb_gn, float *tokens) {
    const int side = c->grid / 2;
    const size_t width = (size_t)4 * c->hidden, slot_floats = (size_t)c->grid * c->grid * c->hidden;
    float *out = tokens;
    for (int row = 0; row < h_crop * side; row++) {
        for (int col = 0; col < w_crop * side; col++, out += width) {
            const int crop = (row / side) * w_crop + col / side;
            hd_merged_token(c, features + (size_t)(1 + crop) * slot_floats, row % side, col % side, out);
        }
        memcpy(out, sub_gn, width * sizeof *out);
        out += width;
    }
    memcpy(out, glb_gn, width * sizeof *out);
    out += width;
    for (int row = 0; row < side; row++) {
        for (int col = 0; col < side; col++, out += width) hd_merged_token(c, features, row, col, out);
        memcpy(out, sub_gn, width * sizeof *out);
        out += width;
    }
}

/* CLIP features of the 1 + h·w slots → image features [hd_image_token_count][out_dim]. */
static abc_status hd_project(thread_pool *pool, const clip_config *c, const clip_weights *w, const float *features,
                             int h_crop, int w_crop, workspace *ws, float *image_features, abc_error *err) {
    const int64_t n = hd_image_token_count(c, h_crop, w_crop);
    float *tokens, *inner;
    const size_t sizes[] = {floats_for(n, 4 * (int64_t)c->hidden), floats_for(n, c->out_dim)};
    float **arrays[] = {&tokens, &inner};
    if (!workspace_carve(ws, 2, sizes, arrays))
        return fail(err, ABC_ERR_NOMEM, "out of memory for the image projection (%lld tokens)", (long long)n);
    hd_layout(c, features, h_crop, w_crop, w->sub_gn, w->glb_gn, tokens);
    linear_forward(pool, &w->proj0, tokens, n, inner, NULL);
    gelu_erf_in_place(pool, inner, (size_t)n * c->out_dim);
    linear_forward(pool, &w->proj2, inner, n, image_features, NULL);
    return ABC_OK;
}
