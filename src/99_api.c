
/* ================================================================================================
 * 11b. Public API (abc.h): model and context lifetime, prompts, the embedding pipeline
 * ================================================================================================ */

#define ABC_MAX_THREADS 1024

const char *abc_status_string(abc_status status) {
    switch (status) {
    case ABC_OK: return "ok";
    case ABC_ERR_INVALID_ARG: return "invalid argument";
    case ABC_ERR_IO: return "input/output error";
    case ABC_ERR_FORMAT: return "malformed model file";
    case ABC_ERR_VERSION: return "unsupported model file version";
    case ABC_ERR_NOMEM: return "out of memory";
    case ABC_ERR_IMAGE: return "bad image";
    case ABC_ERR_UNSUPPORTED: return "unsupported feature";
    case ABC_ERR_TOO_LARGE: return "input too large";
    case ABC_ERR_UTF8: return "invalid UTF-8";
    case ABC_ERR_PROMPT: return "prompt and inputs disagree";
    case ABC_ERR_STOPPED: return "stopped by the stage callback";
    case ABC_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

/* ---- model ---- */

abc_model_params abc_model_default_params(void) {
    abc_model_params p;
    p.max_image_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    p.max_tokens = ABC_DEFAULT_MAX_TOKENS;
    p.num_crops = 0;
    return p;
}

abc_status abc_model_load(const char *path, const abc_model_params *params, abc_model **out, abc_error *err) {
    clear_error(err);
    if (!out) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load: out is NULL");
    *out = NULL;
    if (!path) return fail(err, ABC_ERR_INVALID_ARG, "abc_model_load: path is NULL");
    abc_model_params p = params ? *params : abc_model_default_params();
    if (p.max_tokens < 0) return fail(err, ABC_ERR_INVALID_ARG, "max_tokens %d is negative", p.max_tokens);
    if (p.num_crops < 0 || p.num_crops > 4096)
        return fail(err, ABC_ERR_INVALID_ARG, "num_crops %d is outside 0..4096", p.num_crops);
    if (p.max_image_pixels == 0) p.max_image_pixels = ABC_DEFAULT_MAX_IMAGE_PIXELS;
    if (p.max_tokens == 0) p.max_tokens = ABC_DEFAULT_MAX_TOKENS;
    return model_load(path, &p, out, err);
}

void abc_model_free(abc_model *model) { model_free(model); }

int abc_model_embedding_dim(const abc_model *model) { return model ? model->embedding_dim : 0; }

const char *abc_model_preset(const abc_model *model) { return model ? model->preset : ""; }

const char *abc_model_description(const abc_model *model) { return model ? model->description : ""; }

/* ---- context ---- */

abc_context_params abc_context_default_params(void) {
    abc_context_params p;
    memset(&p, 0, sizeof p);
    return p;
}

abc_status abc_context_new(const abc_model *model, const abc_context_params *params, abc_context **out,
                           abc_error *err) {
    clear_error(err);
    if (!out) return fail(err, ABC_ERR_INVALID_ARG, "abc_context_new: out is NULL");
    *out = NULL;
    if (!model) return fail(err, ABC_ERR_INVALID_ARG, "abc_context_new: model is NULL");
    abc_context_params p = params ? *params : abc_context_default_params();
    if (p.n_threads < 0 || p.n_threads > ABC_MAX_THREADS)
        return fail(err, ABC_ERR_INVALID_ARG, "n_threads %d is outside 0..%d", p.n_threads, ABC_MAX_THREADS);
    abc_context *ctx = xcalloc(1, sizeof *ctx);
    if (!ctx) return fail(err, ABC_ERR_NOMEM, "out of memory creating a context");
    ctx->model = model;
    ctx->on_stage = p.on_stage;
    ctx->on_stage_user = p.on_stage_user;
    abc_status st = thread_pool_new(p.n_threads, &ctx->pool); /* 0: one per online CPU */
    if (st != ABC_OK) {
        free(ctx);
        return fail(err, st, "cannot start %d worker threads", p.n_threads);
    }
    ctx->n_threads = thread_pool_size(ctx->pool);
    *out = ctx;
    return ABC_OK;
}

void abc_context_free(abc_context *ctx) {
    if (!ctx) return;
    thread_pool_free(ctx->pool);
    workspace_free(&ctx->ws);
    free(ctx);
}

const char *abc_context_errmsg(const abc_context *ctx) { return ctx ? ctx->err.message : "no context"; }

abc_input abc_input_default(void) {
    abc_input in;
    memset(&in, 0, sizeof in);
    in.role = ABC_ROLE_AUTO;
    return in;
}

/* ---- the pipeline after tokenization ---- */

/* Hands a stage's array to the callback; a non-zero answer stops the pipeline. */
static abc_status emit_stage(abc_context *ctx, const char *name, abc_array_dtype dtype, int ndim,
                             const int64_t *shape, const void *data) {
    if (!ctx->on_stage) return ABC_OK;
    if (ctx->on_stage(ctx->on_stage_user, name, dtype, ndim, shape, data) != 0)
        return fail(&ctx->err, ABC_ERR_STOPPED, "stopped by the stage callback after '%s'", name);
    return ABC_OK;
}

/* phi3_v: `n_slots` views of 3×S×S (slot 0 global, then the crops), grid = (1, h_crop, w_crop) with
 * 1 + h·w = n_slots; the -1 image tokens must be whole images' worth, and only with an image. */
static abc_status check_phi3_image(abc_context *ctx, size_t n_image_tokens, const float *pixels, size_t n_slots,
                                   const int grid[3]) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (!pixels) {
        if (n_image_tokens)
            return fail(err, ABC_ERR_PROMPT, "the tokens contain %zu image tokens (-1) but there is no image",
                        n_image_tokens);
        return ABC_OK;
    }
    if (grid[0] != 1 || grid[1] < 1 || grid[2] < 1 || (int64_t)grid[1] * grid[2] > 4096)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) is not (1, h_crop, w_crop) with 1 to 4096 crops",
                    grid[0], grid[1], grid[2]);
    if ((uint64_t)grid[1] * (uint64_t)grid[2] + 1 != (uint64_t)n_slots)
        return fail(err, ABC_ERR_INVALID_ARG, "a %dx%d crop grid needs %lld image slots (global view + crops), not %zu",
                    grid[1], grid[2], (long long)grid[1] * grid[2] + 1, n_slots);
    const int64_t per_image = hd_image_token_count(&m->clip, grid[1], grid[2]);
    if (n_image_tokens == 0 || n_image_tokens % (uint64_t)per_image != 0)
        return fail(err, ABC_ERR_PROMPT, "the image needs %lld image tokens (-1) per placeholder but the tokens contain %zu",
                    (long long)per_image, n_image_tokens);
    return ABC_OK;
}

/* Checks ids, image and grid against the model before any work. */
static abc_status check_tokens_and_image(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixels,
                                         size_t n_patches, const int grid[3]) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (n_ids == 0) return fail(err, ABC_ERR_INVALID_ARG, "the prompt has no tokens");
    if (n_ids > (size_t)m->params.max_tokens)
        return fail(err, ABC_ERR_TOO_LARGE, "the sequence has %zu tokens, more than the limit of %d", n_ids,
                    m->params.max_tokens);
    size_t n_image_tokens = 0;
    for (size_t i = 0; i < n_ids; i++) {
        if (m->arch == ARCH_PHI3_V && ids[i] == m->text.image_token) {
            n_image_tokens++;
            continue;
        }
        if (ids[i] < 0 || ids[i] >= m->text.vocab)
            return fail(err, ABC_ERR_INVALID_ARG, "token id %d at position %zu is outside the vocabulary (0..%lld)",
                        (int)ids[i], i, (long long)m->text.vocab - 1);
    }
    if (m->arch == ARCH_PHI3_V) return check_phi3_image(ctx, n_image_tokens, pixels, n_patches, grid);
    if (!pixels) return ABC_OK;
    const int merge = m->vision.merge_size;
    if (grid[0] < 1 || grid[1] < 1 || grid[2] < 1 || grid[1] % merge || grid[2] % merge)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) is not positive multiples of the merge size %d",
                    grid[0], grid[1], grid[2], merge);
    if ((uint64_t)grid[0] * (uint64_t)grid[1] * (uint64_t)grid[2] != (uint64_t)n_patches)
        return fail(err, ABC_ERR_INVALID_ARG, "image grid (%d, %d, %d) does not hold %zu patches", grid[0], grid[1],
                    grid[2], n_patches);
    return ABC_OK;
}

/* Pooling, head and normalisation of last_hidden [L][H] into out [D]. */
static abc_status pool_and_head(abc_context *ctx, const int32_t *ids, int64_t L, const float *hidden, float *out) {
    const abc_model *m = ctx->model;
    const int H = m->text.hidden;
    float *pooled = xmalloc((size_t)H * sizeof *pooled);
    double *acc = xmalloc((size_t)H * sizeof *acc);
    float *inner = xmalloc((size_t)(m->has_head ? m->head.inner : 1) * sizeof *inner);
    if (!pooled || !acc || !inner) {
        free(pooled);
        free(acc);
        free(inner);
        return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for pooling");
    }
    if (m->pooling == POOL_LAST) pool_last(hidden, L, H, pooled);
    else pool_mean_nonzero(hidden, ids, L, H, acc, pooled);
    if (m->has_head) mlp_head_forward(ctx->pool, &m->head, pooled, H, inner, out);
    else memcpy(out, pooled, (size_t)H * sizeof *out);
    if (m->normalize) l2_normalize(out, m->embedding_dim);
    free(pooled);
    free(acc);
    free(inner);
    return ABC_OK;
}

/* Position ids: qwen2_vl's multimodal [3][L] (emitted as "position_ids" [3, L]); phi3_v's plain
 * 0..L-1 ([L]), which the rotary tables read as component 0. */
static abc_status position_ids(abc_context *ctx, const int32_t *ids, int64_t L, const float *pixels,
                               const int grid[3], int32_t **pos) {
    const abc_model *m = ctx->model;
    *pos = xmalloc(3 * (size_t)L * sizeof **pos);
    if (!*pos) return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for position ids");
    int64_t shape[2] = {3, L};
    if (m->arch == ARCH_PHI3_V) {
        for (int64_t i = 0; i < L; i++) (*pos)[i] = (int32_t)i;
        shape[0] = L;
        return emit_stage(ctx, "position_ids", ABC_DTYPE_I32, 1, shape, *pos);
    }
    abc_status st = mrope_position_ids(&m->text, ids, L, pixels ? grid : NULL, *pos, &ctx->err);
    if (st != ABC_OK) return st;
    return emit_stage(ctx, "position_ids", ABC_DTYPE_I32, 2, shape, *pos);
}

/* phi3_v: CLIP on the 1 + h·w slots ("clip_patch_features" [slots, grid², C]), then the HD layout and
 * projection into *image [n][H] ("image_features"). */
static abc_status run_clip(abc_context *ctx, const float *pixels, size_t n_slots, const int grid[3], float **image,
                           int64_t *n_rows) {
    const abc_model *m = ctx->model;
    const clip_config *c = &m->clip;
    abc_error *err = &ctx->err;
    const int64_t P = (int64_t)c->grid * c->grid, n = hd_image_token_count(c, grid[1], grid[2]);
    size_t feature_bytes, image_bytes;
    float *features = NULL;
    *image = NULL;
    if (mul_size(floats_for((int64_t)n_slots * P, c->hidden), sizeof(float), &feature_bytes) &&
        mul_size(floats_for(n, m->text.hidden), sizeof(float), &image_bytes)) {
        features = xmalloc_aligned(feature_bytes);
        *image = xmalloc_aligned(image_bytes);
    }
    abc_status st = ABC_OK;
    if (!features || !*image) st = fail(err, ABC_ERR_NOMEM, "out of memory for the image features");
    if (st == ABC_OK) st = clip_forward(ctx->pool, c, &m->clip_w, pixels, (int)n_slots, &ctx->ws, features, err);
    int64_t shape[3] = {(int64_t)n_slots, P, c->hidden};
    if (st == ABC_OK) st = emit_stage(ctx, "clip_patch_features", ABC_DTYPE_F32, 3, shape, features);
    if (st == ABC_OK) st = hd_project(ctx->pool, c, &m->clip_w, features, grid[1], grid[2], &ctx->ws, *image, err);
    shape[0] = n;
    shape[1] = m->text.hidden;
    if (st == ABC_OK) st = emit_stage(ctx, "image_features", ABC_DTYPE_F32, 2, shape, *image);
    free(features);
    *n_rows = n;
    return st;
}

/* The image part: qwen2_vl's ViT + merger ("vision_embeds"), or phi3_v's CLIP + HD layout. */
static abc_status run_vision(abc_context *ctx, const float *pixels, size_t n_patches, const int grid[3], bool query,
                             float **image, int64_t *n_rows) {
    const abc_model *m = ctx->model;
    if (m->arch == ARCH_PHI3_V) return run_clip(ctx, pixels, n_patches, grid, image, n_rows);
    const int64_t n_merged = (int64_t)n_patches / (m->vision.merge_size * m->vision.merge_size), H = m->text.hidden;
    size_t n_bytes;
    *n_rows = n_merged;
    if (!mul_size((size_t)n_merged, (size_t)H * sizeof(float), &n_bytes) || !(*image = xmalloc_aligned(n_bytes)))
        return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the image embeddings");
    abc_status st = vision_forward(ctx->pool, &m->vision, &m->vision_w, pixels, grid, query, &ctx->ws, *image, &ctx->err);
    int64_t shape[2] = {n_merged, H};
    if (st == ABC_OK) st = emit_stage(ctx, "vision_embeds", ABC_DTYPE_F32, 2, shape, *image);
    return st;
}

/* ids (image tokens already expanded) + pixel values → embedding, emitting every model stage. */
static abc_status run_model(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixels,
                            size_t n_patches, const int grid[3], bool query, float *out) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    abc_status st = check_tokens_and_image(ctx, ids, n_ids, pixels, n_patches, grid);
    if (st != ABC_OK) return st;
    const bool phi3 = m->arch == ARCH_PHI3_V;
    const int64_t L = (int64_t)n_ids, H = m->text.hidden, D = m->embedding_dim;
    int64_t n_image_rows = 0;
    int32_t *pos = NULL;
    float *image = NULL, *hidden = NULL, *embedding = NULL;
    size_t n_hidden;

    int64_t shape[2] = {L, H};
    st = emit_stage(ctx, "input_ids", ABC_DTYPE_I32, 1, shape, ids);
    if (st == ABC_OK) st = position_ids(ctx, ids, L, pixels, grid, &pos);
    if (st == ABC_OK && pixels) st = run_vision(ctx, pixels, n_patches, grid, query, &image, &n_image_rows);
    if (st != ABC_OK) goto done;

    if (!mul_size((size_t)L, (size_t)H * sizeof(float), &n_hidden) || !(hidden = xmalloc_aligned(n_hidden))) {
        st = fail(err, ABC_ERR_NOMEM, "out of memory for the hidden states of %lld tokens", (long long)L);
        goto done;
    }
    language_embed_inputs(&m->text, &m->text_w, ids, L, image, n_image_rows, hidden);
    if (phi3) st = emit_stage(ctx, "inputs_embeds", ABC_DTYPE_F32, 2, shape, hidden);
    if (st == ABC_OK) st = language_decode(ctx->pool, &m->text, &m->text_w, L, pos, query, &ctx->ws, hidden, err);
    if (st == ABC_OK) st = emit_stage(ctx, phi3 ? "last_hidden_state" : "last_hidden", ABC_DTYPE_F32, 2, shape, hidden);
    if (st != ABC_OK) goto done;

    embedding = xmalloc((size_t)D * sizeof *embedding);
    if (!embedding) {
        st = fail(err, ABC_ERR_NOMEM, "out of memory for the embedding");
        goto done;
    }
    st = pool_and_head(ctx, ids, L, hidden, embedding);
    if (st != ABC_OK) goto done;
    shape[0] = D;
    st = emit_stage(ctx, "embedding", ABC_DTYPE_F32, 1, shape, embedding);
    if (st != ABC_OK) goto done;
    memcpy(out, embedding, (size_t)D * sizeof *out);
done:
    free(pos);
    free(image);
    free(hidden);
    free(embedding);
    return st;
}

/* ---- prompts ---- */

/* A copy of `template` with every "{text}" replaced by `text`. */
static char *fill_template(const char *template, const char *text) {
    static const char key[] = "{text}";
    const size_t key_len = sizeof key - 1, text_len = strlen(text);
    size_t n_keys = 0;
    for (const char *p = strstr(template, key); p; p = strstr(p + key_len, key)) n_keys++;
    const size_t base = strlen(template);
    if (n_keys && text_len > (SIZE_MAX - base - 1) / n_keys) return NULL;
    char *out = xmalloc(base - n_keys * key_len + n_keys * text_len + 1), *w = out;
    if (!out) return NULL;
    for (const char *p = template;;) {
        const char *k = strstr(p, key);
        size_t n = k ? (size_t)(k - p) : strlen(p);
        memcpy(w, p, n);
        w += n;
        if (!k) break;
        memcpy(w, text, text_len);
        w += text_len;
        p = k + key_len;
    }
    *w = 0;
    return out;
}

/* The prompt for an input: the raw prompt; or the text itself when it already holds the image
 * placeholder (VLM2Vec users write "<|image_pad|> ..." themselves); or the model's template for the
 * inputs present. */
static char *build_prompt(const abc_model *m, const abc_input *in, bool has_image) {
    const char *src = NULL;
    if (in->prompt) src = in->prompt;
    else if (in->text && strstr(in->text, m->placeholder)) src = in->text;
    if (src) {
        size_t n = strlen(src);
        char *copy = xmalloc(n + 1);
        if (copy) memcpy(copy, src, n + 1);
        return copy;
    }
    const char *template = has_image ? (in->text ? m->prompt_image_text : m->prompt_image) : m->prompt_text;
    return fill_template(template, in->text ? in->text : "");
}

/* Tokenizes the prompt and checks that it has an image placeholder exactly when there is an image. */
static abc_status tokenize_prompt(abc_context *ctx, const char *prompt, bool has_image, int_vec *ids) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    abc_status st = tokenizer_encode(m->tok, prompt, strlen(prompt), ids, err);
    if (st != ABC_OK) return st;
    size_t n_placeholders = 0;
    for (size_t i = 0; i < ids->len; i++) n_placeholders += ids->data[i] == m->text.image_token;
    if (has_image && n_placeholders == 0)
        return fail(err, ABC_ERR_PROMPT, "an image was given but the prompt has no %s for it", m->placeholder);
    if (!has_image && n_placeholders > 0)
        return fail(err, ABC_ERR_PROMPT, "the prompt has %s but no image was given", m->placeholder);
    return ABC_OK;
}

/* Replaces every image placeholder token by `per_image` image tokens. */
static abc_status expand_image_tokens(abc_context *ctx, const int_vec *raw, int64_t per_image, int_vec *out) {
    const abc_model *m = ctx->model;
    size_t n_placeholders = 0;
    for (size_t i = 0; i < raw->len; i++) n_placeholders += raw->data[i] == m->text.image_token;
    const uint64_t total = (uint64_t)(raw->len - n_placeholders) + (uint64_t)n_placeholders * (uint64_t)per_image;
    if (total > (uint64_t)m->params.max_tokens)
        return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence would have %llu tokens, more than the limit of %d",
                    (unsigned long long)total, m->params.max_tokens);
    for (size_t i = 0; i < raw->len; i++) {
        int64_t copies = raw->data[i] == m->text.image_token ? per_image : 1;
        for (int64_t k = 0; k < copies; k++)
            if (!int_vec_push(out, raw->data[i]))
                return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
    }
    return ABC_OK;
}

/* ---- images ---- */

static abc_status load_input_image(abc_context *ctx, const abc_input *in, abc_image *img) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    const size_t max_pixels = m->params.max_image_pixels;
    if (in->image_path) return abc_image_load(in->image_path, max_pixels, img, err);
    if (in->image_data) return image_decode(in->image_data, in->image_size, max_pixels, img, err);
    /* a caller's RGB buffer, possibly with padded rows: copy it packed */
    if (in->rgb_width <= 0 || in->rgb_height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "RGB image size %dx%d is not positive", in->rgb_width, in->rgb_height);
    const size_t row = (size_t)in->rgb_width * 3, stride = in->rgb_stride ? in->rgb_stride : row;
    if (stride < row)
        return fail(err, ABC_ERR_INVALID_ARG, "RGB row stride %zu is less than width·3 = %zu", stride, row);
    if ((uint64_t)in->rgb_width * (uint64_t)in->rgb_height > (uint64_t)max_pixels)
        return fail(err, ABC_ERR_TOO_LARGE, "a %dx%d image exceeds the limit of %zu pixels", in->rgb_width,
                    in->rgb_height, max_pixels);
    size_t n;
    if (!mul_size(row, (size_t)in->rgb_height, &n) || !(img->rgb = xmalloc(n)))
        return fail(err, ABC_ERR_NOMEM, "out of memory copying a %dx%d image", in->rgb_width, in->rgb_height);
    for (int y = 0; y < in->rgb_height; y++) memcpy(img->rgb + (size_t)y * row, in->rgb + (size_t)y * stride, row);
    img->width = in->rgb_width;
    img->height = in->rgb_height;
    return ABC_OK;
}

/* Decodes (emitting "decoded"), resizes ("resized") and patches ("pixel_values") the input image. */
static abc_status prepare_image(abc_context *ctx, const abc_input *in, float **pixels, int64_t *n_patches,
                                int grid[3]) {
    abc_image decoded = {0}, resized = {0};
    abc_status st = load_input_image(ctx, in, &decoded);
    if (st != ABC_OK) return st;
    int64_t shape[3] = {decoded.height, decoded.width, 3};
    st = emit_stage(ctx, "decoded", ABC_DTYPE_U8, 3, shape, decoded.rgb);
    if (st == ABC_OK)
        st = preprocess_image(&decoded, &ctx->model->preprocess, &resized, pixels, n_patches, grid, &ctx->err);
    free(decoded.rgb);
    if (st != ABC_OK) return st;
    shape[0] = resized.height;
    shape[1] = resized.width;
    st = emit_stage(ctx, "resized", ABC_DTYPE_U8, 3, shape, resized.rgb);
    free(resized.rgb);
    if (st == ABC_OK) {
        shape[0] = *n_patches;
        shape[1] = ctx->model->vision.patch_dim;
        st = emit_stage(ctx, "pixel_values", ABC_DTYPE_F32, 2, shape, *pixels);
    }
    if (st != ABC_OK) {
        free(*pixels);
        *pixels = NULL;
    }
    return st;
}

/* ---- embedding ---- */

static bool role_valid(abc_role role) {
    return role == ABC_ROLE_AUTO || role == ABC_ROLE_QUERY || role == ABC_ROLE_CANDIDATE;
}

static abc_status check_output(abc_context *ctx, const float *out, size_t out_len) {
    if (!out) return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer is NULL");
    if (out_len < (size_t)ctx->model->embedding_dim)
        return fail(&ctx->err, ABC_ERR_INVALID_ARG, "the output buffer holds %zu floats, the embedding has %d", out_len,
                    ctx->model->embedding_dim);
    return ABC_OK;
}

/* ---- phi3_v: prompt assembly and the HD image ---- */

/* The placeholders in a phi3_v prompt. The processor treats every <|image_N|> as image N; inputs carry
 * one image, so any other N is an error rather than text. */
static abc_status count_phi3_placeholders(abc_context *ctx, const char *prompt, size_t *n) {
    static const char tag[] = "<|image_";
    const char *placeholder = ctx->model->placeholder;
    *n = 0;
    for (const char *p = strstr(prompt, tag); p; p = strstr(p + 1, tag)) {
        const char *q = p + sizeof tag - 1;
        if (*q < '0' || *q > '9') continue;
        while (*q >= '0' && *q <= '9') q++;
        if (q[0] != '|' || q[1] != '>') continue;
        if (strncmp(p, placeholder, strlen(placeholder)) != 0 || (size_t)(q + 2 - p) != strlen(placeholder))
            return fail(&ctx->err, ABC_ERR_PROMPT, "the prompt refers to '%.*s' but an input has one image, %s",
                        (int)MIN(q + 2 - p, 32), p, placeholder);
        (*n)++;
    }
    return ABC_OK;
}

/* Phi-3-V's processor: the prompt split on the placeholder; every chunk (empty ones too) becomes
 * [<s>] + its tokens, and each placeholder `per_image` image tokens (-1). */
static abc_status phi3_prompt_ids(abc_context *ctx, const char *prompt, int64_t per_image, int_vec *ids) {
    const abc_model *m = ctx->model;
    const char *placeholder = m->placeholder;
    const size_t placeholder_len = strlen(placeholder);
    const int32_t bos = tokenizer_bos_id(m->tok) >= 0 ? tokenizer_bos_id(m->tok) : m->bos_token;
    for (const char *chunk = prompt;;) {
        const char *end = strstr(chunk, placeholder);
        const size_t len = end ? (size_t)(end - chunk) : strlen(chunk);
        if (!int_vec_push(ids, bos)) return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
        abc_status st = tokenizer_encode(m->tok, chunk, len, ids, &ctx->err);
        if (st != ABC_OK) return st;
        if (!end) break;
        if ((uint64_t)ids->len + (uint64_t)per_image > (uint64_t)m->params.max_tokens)
            return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence would have more than %d tokens",
                        m->params.max_tokens);
        for (int64_t k = 0; k < per_image; k++)
            if (!int_vec_push(ids, m->text.image_token))
                return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory for the token ids");
        chunk = end + placeholder_len;
    }
    if (ids->len > (size_t)m->params.max_tokens)
        return fail(&ctx->err, ABC_ERR_TOO_LARGE, "the sequence has %zu tokens, more than the limit of %d", ids->len,
                    m->params.max_tokens);
    return ABC_OK;
}

/* Decodes ("decoded"), applies the HD transform ("hd_image", "image_sizes" = the padded image's
 * (height, width), "pixel_values" [slots, 3, S, S]); grid = (1, h_crop, w_crop). */
static abc_status prepare_hd_image(abc_context *ctx, const abc_input *in, float **pixels, size_t *n_slots,
                                   int grid[3]) {
    const abc_model *m = ctx->model;
    abc_image decoded = {0}, hd = {0};
    int h_crop = 0, w_crop = 0;
    abc_status st = load_input_image(ctx, in, &decoded);
    if (st != ABC_OK) return st;
    int64_t shape[4] = {decoded.height, decoded.width, 3, 0};
    st = emit_stage(ctx, "decoded", ABC_DTYPE_U8, 3, shape, decoded.rgb);
    if (st == ABC_OK) st = preprocess_hd_image(&decoded, &m->hd, &hd, pixels, &h_crop, &w_crop, &ctx->err);
    free(decoded.rgb);
    if (st == ABC_OK) {
        shape[0] = hd.height;
        shape[1] = hd.width;
        st = emit_stage(ctx, "hd_image", ABC_DTYPE_U8, 3, shape, hd.rgb);
    }
    if (st == ABC_OK) {
        const int32_t sizes[2] = {hd.height, hd.width};
        shape[0] = 2;
        st = emit_stage(ctx, "image_sizes", ABC_DTYPE_I32, 1, shape, sizes);
    }
    if (st == ABC_OK) {
        *n_slots = 1 + (size_t)h_crop * (size_t)w_crop;
        shape[0] = (int64_t)*n_slots;
        shape[1] = 3;
        shape[2] = shape[3] = m->hd.crop_size;
        st = emit_stage(ctx, "pixel_values", ABC_DTYPE_F32, 4, shape, *pixels);
    }
    free(hd.rgb);
    grid[0] = 1;
    grid[1] = h_crop;
    grid[2] = w_crop;
    if (st != ABC_OK) {
        free(*pixels);
        *pixels = NULL;
    }
    return st;
}

static abc_status embed_phi3(abc_context *ctx, const abc_input *in, const char *prompt, bool has_image, float *out) {
    const abc_model *m = ctx->model;
    size_t n_placeholders;
    abc_status st = count_phi3_placeholders(ctx, prompt, &n_placeholders);
    if (st != ABC_OK) return st;
    if (has_image && n_placeholders == 0)
        return fail(&ctx->err, ABC_ERR_PROMPT, "an image was given but the prompt has no %s for it", m->placeholder);
    if (!has_image && n_placeholders > 0)
        return fail(&ctx->err, ABC_ERR_PROMPT, "the prompt has %s but no image was given", m->placeholder);
    float *pixels = NULL;
    size_t n_slots = 0;
    int grid[3] = {0, 0, 0};
    int_vec raw = {0}, ids = {0};
    st = phi3_prompt_ids(ctx, prompt, 1, &raw); /* one -1 per placeholder: prompt errors before image work */
    if (st == ABC_OK && has_image) st = prepare_hd_image(ctx, in, &pixels, &n_slots, grid);
    if (st == ABC_OK)
        st = expand_image_tokens(ctx, &raw, has_image ? hd_image_token_count(&m->clip, grid[1], grid[2]) : 1, &ids);
    if (st == ABC_OK) st = run_model(ctx, ids.data, ids.len, pixels, n_slots, grid, false, out);
    free(pixels);
    int_vec_free(&raw);
    int_vec_free(&ids);
    return st;
}

static abc_status embed_input(abc_context *ctx, const abc_input *in, float *out, size_t out_len) {
    const abc_model *m = ctx->model;
    abc_error *err = &ctx->err;
    if (!in) return fail(err, ABC_ERR_INVALID_ARG, "the input is NULL");
    abc_status st = check_output(ctx, out, out_len);
    if (st != ABC_OK) return st;
    if (!role_valid(in->role)) return fail(err, ABC_ERR_INVALID_ARG, "role %d is not a valid abc_role", (int)in->role);
    const int sources = (in->image_path != NULL) + (in->image_data != NULL) + (in->rgb != NULL);
    if (sources > 1) return fail(err, ABC_ERR_INVALID_ARG, "give one image source, not %d", sources);
    if (in->image_data && in->image_size == 0) return fail(err, ABC_ERR_INVALID_ARG, "the image data is empty");
    const bool has_image = sources == 1, has_text = in->text != NULL;
    if (!has_image && !has_text && !in->prompt)
        return fail(err, ABC_ERR_INVALID_ARG, "nothing to embed: give an image, a text or a prompt");
    const bool query = in->role == ABC_ROLE_QUERY || (in->role == ABC_ROLE_AUTO && has_image && has_text);

    char *prompt = build_prompt(m, in, has_image);
    if (!prompt) return fail(err, ABC_ERR_NOMEM, "out of memory building the prompt");
    if (m->arch == ARCH_PHI3_V) {
        st = embed_phi3(ctx, in, prompt, has_image, out);
        free(prompt);
        return st;
    }
    int_vec raw = {0}, ids = {0};
    st = tokenize_prompt(ctx, prompt, has_image, &raw); /* prompt errors come before any image work */
    free(prompt);
    float *pixels = NULL;
    int64_t n_patches = 0;
    int grid[3] = {0, 0, 0};
    if (st == ABC_OK && has_image) st = prepare_image(ctx, in, &pixels, &n_patches, grid);
    if (st == ABC_OK) {
        const int group = m->vision.merge_size * m->vision.merge_size;
        st = expand_image_tokens(ctx, &raw, has_image ? n_patches / group : 1, &ids);
    }
    if (st == ABC_OK) st = run_model(ctx, ids.data, ids.len, pixels, (size_t)n_patches, grid, query, out);
    free(pixels);
    int_vec_free(&raw);
    int_vec_free(&ids);
    return st;
}

abc_status abc_embed(abc_context *ctx, const abc_input *input, float *out, size_t out_len) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    return embed_input(ctx, input, out, out_len);
}

/* AUTO for prepared tokens: a query when the sequence has an image and is not exactly the model's
 * image-only prompt (i.e. it carries text with the image), as abc_embed decides from its inputs. */
static abc_status tokens_are_query(abc_context *ctx, const int32_t *ids, size_t n_ids, bool has_image, bool *query) {
    *query = false;
    if (!has_image) return ABC_OK;
    const abc_model *m = ctx->model;
    int_vec image_only = {0};
    char *prompt = fill_template(m->prompt_image, "");
    if (!prompt) return fail(&ctx->err, ABC_ERR_NOMEM, "out of memory");
    abc_status st = tokenizer_encode(m->tok, prompt, strlen(prompt), &image_only, &ctx->err);
    free(prompt);
    if (st == ABC_OK) {
        /* compare with runs of image tokens collapsed to one placeholder */
        size_t j = 0;
        bool same = true;
        for (size_t i = 0; i < n_ids && same; i++) {
            if (i > 0 && ids[i] == m->text.image_token && ids[i - 1] == m->text.image_token) continue;
            same = j < image_only.len && image_only.data[j++] == ids[i];
        }
        *query = !(same && j == image_only.len);
    }
    int_vec_free(&image_only);
    return st;
}

abc_status abc_embed_tokens(abc_context *ctx, const int32_t *ids, size_t n_ids, const float *pixel_values,
                            size_t n_patches, const int grid_thw[3], abc_role role, float *out, size_t out_len) {
    if (!ctx) return ABC_ERR_INVALID_ARG;
    clear_error(&ctx->err);
    abc_error *err = &ctx->err;
    if (!ids && n_ids) return fail(err, ABC_ERR_INVALID_ARG, "ids is NULL");
    abc_status st = check_output(ctx, out, out_len);
    if (st != ABC_OK) return st;
    if (!role_valid(role)) return fail(err, ABC_ERR_INVALID_ARG, "role %d is not a valid abc_role", (int)role);
    if (!pixel_values != (n_patches == 0))
        return fail(err, ABC_ERR_INVALID_ARG, "pixel_values and n_patches (%zu) disagree", n_patches);
    if (pixel_values && !grid_thw) return fail(err, ABC_ERR_INVALID_ARG, "pixel values need grid_thw");
    bool query = role == ABC_ROLE_QUERY;
    if (role == ABC_ROLE_AUTO && n_ids && ctx->model->arch != ARCH_PHI3_V) { /* phi3_v has no query adapter */
        st = tokens_are_query(ctx, ids, n_ids, pixel_values != NULL, &query);
        if (st != ABC_OK) return st;
    }
    return run_model(ctx, ids, n_ids, pixel_values, n_patches, grid_thw, query, out);
}
