
/* ================================================================================================
 * 11a. The model (configuration, weights, tokenizer, prompts) and the context
 *
 * Loading reads every metadata value the forward pass uses, checks it (positive, in range,
 * consistent with the others), then binds every tensor by name with its expected shape and dtype,
 * so the forward pass never meets a surprise. Any mismatch is ABC_ERR_FORMAT naming the key or
 * tensor.
 * ================================================================================================ */

#define MODEL_MAX_DIM (1 << 20)     /* no width or count in a sane model comes near this */
#define MODEL_MAX_LAYERS 1024
#define MODEL_MAX_HEAD_DIM 2048     /* the rotary tables' local arrays depend on it */
#define MODEL_MAX_VOCAB (1 << 24)

typedef enum { ARCH_QWEN2_VL, ARCH_PHI3_V } model_arch;

struct abc_model {
    weight_file wf;
    abc_model_params params;
    model_arch arch;
    vision_config vision;     /* qwen2_vl */
    vision_weights vision_w;
    clip_config clip;         /* phi3_v */
    clip_weights clip_w;
    hd_preprocess_config hd;
    int32_t bos_token;        /* phi3_v: <s> before every text chunk */
    float *rope_factors;      /* phi3_v su scaling: short then long factors, head_dim/2 each */
    text_config text;
    text_weights text_w;
    pooling_kind pooling;
    bool has_head, normalize;
    mlp_head head;
    int embedding_dim;
    int adapter_modules; /* layers the query adapter touches (0: no adapter) */
    tokenizer *tok;
    preprocess_config preprocess;
    int32_t vision_end_token;
    /* NUL-terminated copies of metadata strings */
    char *preset, *dtype, *prompt_image_text, *prompt_image, *prompt_text, *placeholder;
    char *description;
};

struct abc_context {
    const abc_model *model;
    thread_pool *pool;
    int n_threads;
    abc_stage_callback on_stage;
    void *on_stage_user;
    workspace ws;
    abc_error err; /* the last call's outcome */
};

static const tokenizer *model_tokenizer(const abc_model *m) { return m->tok; }

/* ---- metadata ---- */

/* An integer metadata value that must lie in [lo, hi]. */
static bool meta_int_in(const weight_file *wf, const char *key, int64_t lo, int64_t hi, int64_t *out,
                        abc_error *err) {
    int64_t v;
    if (!wf_int(wf, key, &v, err)) return false;
    if (v < lo || v > hi) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' = %lld is out of range [%lld, %lld]", key, (long long)v,
             (long long)lo, (long long)hi);
        return false;
    }
    *out = v;
    return true;
}

static bool meta_dim(const weight_file *wf, const char *key, int64_t hi, int *out, abc_error *err) {
    int64_t v;
    if (!meta_int_in(wf, key, 1, hi, &v, err)) return false;
    *out = (int)v;
    return true;
}

/* A float metadata value that must be finite and in (0, hi). */
static bool meta_positive(const weight_file *wf, const char *key, double hi, double *out, abc_error *err) {
    if (!wf_f64(wf, key, out, err)) return false;
    if (!(*out > 0.0 && *out < hi)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' = %g is out of range (0, %g)", key, *out, hi);
        return false;
    }
    return true;
}

/* A NUL-terminated copy of a string value (which must not contain NUL bytes). */
static bool meta_string_copy(const weight_file *wf, const char *key, char **out, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return false;
    if (memchr(s, 0, len)) {
        fail(err, ABC_ERR_FORMAT, "metadata '%s' contains a NUL byte", key);
        return false;
    }
    char *copy = xmalloc(len + 1);
    if (!copy) {
        fail(err, ABC_ERR_NOMEM, "out of memory reading metadata '%s'", key);
        return false;
    }
    memcpy(copy, s, len);
    copy[len] = 0;
    *out = copy;
    return true;
}

/* A string value that must be one of `choices`; *out receives its index. */
static bool meta_choice(const weight_file *wf, const char *key, const char *const *choices, int n_choices,
                        int *out, abc_error *err) {
    const char *s;
    size_t len;
    if (!wf_str(wf, key, &s, &len, err)) return false;
    for (int i = 0; i < n_choices; i++) {
        if (strlen(choices[i]) == len && memcmp(s, choices[i], len) == 0) {
            *out = i;
            return true;
        }
    }
    fail(err, ABC_ERR_FORMAT, "metadata '%s' = '%.*s' is not supported", key, (int)MIN(len, 64), s);
    return false;
}

static bool meta_token_id(const weight_file *wf, const char *key, int64_t vocab, int32_t *out, abc_error *err) {
    int64_t v;
    if (!meta_int_in(wf, key, 0, vocab - 1, &v, err)) return false;
    *out = (int32_t)v;
    return true;
}

/* Phi-3's RoPE: 1-D positions (all frequencies on component 0) and optional su/longrope factors,
 * stored in *factors (allocated here, short then long). */
static abc_status read_phi3_rope(const weight_file *wf, text_config *c, float **factors, abc_error *err) {
    static const char *const kinds[] = {"none", "su", "longrope"}; /* longrope: the same scheme renamed */
    const int half = c->head_dim / 2;
    int kind = 0;
    c->mrope_section[0] = half;
    c->mrope_section[1] = c->mrope_section[2] = 0;
    if (wf_meta(wf, "text.rope_scaling") && !meta_choice(wf, "text.rope_scaling", kinds, 3, &kind, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (kind == 0) return ABC_OK;
    int64_t original, longest;
    if (!meta_int_in(wf, "text.original_max_position_embeddings", 1, INT64_C(1) << 40, &original, err) ||
        !meta_int_in(wf, "text.max_position_embeddings", 1, INT64_C(1) << 40, &longest, err))
        return err ? err->code : ABC_ERR_FORMAT;
    double *values = xmalloc(2 * (size_t)half * sizeof *values);
    *factors = xmalloc(2 * (size_t)half * sizeof **factors);
    if (!values || !*factors) {
        free(values);
        return fail(err, ABC_ERR_NOMEM, "out of memory reading the rope factors");
    }
    abc_status st = ABC_OK;
    if (!wf_f64_array(wf, "text.rope_short_factor", values, (size_t)half, err) ||
        !wf_f64_array(wf, "text.rope_long_factor", values + half, (size_t)half, err))
        st = err ? err->code : ABC_ERR_FORMAT;
    for (int j = 0; j < 2 * half && st == ABC_OK; j++) {
        if (!(values[j] > 0.0 && values[j] < 1e30))
            st = fail(err, ABC_ERR_FORMAT, "metadata 'text.rope_%s_factor' entry %d = %g is not a positive number",
                      j < half ? "short" : "long", j % half, values[j]);
        (*factors)[j] = (float)values[j];
    }
    free(values);
    if (st != ABC_OK) return st;
    c->rope_short_factor = *factors;
    c->rope_long_factor = *factors + half;
    c->rope_original_max_positions = original;
    c->rope_max_positions = longest;
    return ABC_OK;
}

static abc_status read_text_config(const weight_file *wf, model_arch arch, text_config *c, float **rope_factors,
                                   abc_error *err) {
    int64_t vocab;
    double eps;
    if (!meta_dim(wf, "text.hidden_size", MODEL_MAX_DIM, &c->hidden, err) ||
        !meta_dim(wf, "text.intermediate_size", MODEL_MAX_DIM, &c->intermediate, err) ||
        !meta_dim(wf, "text.num_layers", MODEL_MAX_LAYERS, &c->n_layers, err) ||
        !meta_dim(wf, "text.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_dim(wf, "text.num_kv_heads", MODEL_MAX_DIM, &c->n_kv_heads, err) ||
        !meta_dim(wf, "text.head_dim", MODEL_MAX_HEAD_DIM, &c->head_dim, err) ||
        !meta_int_in(wf, "text.vocab_size", 1, MODEL_MAX_VOCAB, &vocab, err) ||
        !meta_positive(wf, "text.rms_norm_eps", 1.0, &eps, err) ||
        !meta_positive(wf, "text.rope_theta", 1e30, &c->rope_theta, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->vocab = vocab;
    c->rms_eps = (float)eps;
    if ((int64_t)c->n_heads * c->head_dim != c->hidden)
        return fail(err, ABC_ERR_FORMAT, "text.num_heads %d × text.head_dim %d != text.hidden_size %d",
                    c->n_heads, c->head_dim, c->hidden);
    if (c->n_heads % c->n_kv_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "text.num_heads %d is not a multiple of text.num_kv_heads %d",
                    c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2 != 0)
        return fail(err, ABC_ERR_FORMAT, "text.head_dim %d is odd", c->head_dim);
    if (arch == ARCH_PHI3_V) return read_phi3_rope(wf, c, rope_factors, err);
    int64_t section[3];
    if (!wf_int_array(wf, "text.mrope_section", section, 3, err)) return err ? err->code : ABC_ERR_FORMAT;
    int64_t sum = 0;
    for (int k = 0; k < 3; k++) {
        if (section[k] < 0 || section[k] > c->head_dim)
            return fail(err, ABC_ERR_FORMAT, "metadata 'text.mrope_section' has a bad entry %lld",
                        (long long)section[k]);
        c->mrope_section[k] = (int)section[k];
        sum += section[k];
    }
    if (sum != c->head_dim / 2)
        return fail(err, ABC_ERR_FORMAT, "text.mrope_section sums to %lld, not head_dim/2 = %d", (long long)sum,
                    c->head_dim / 2);
    return ABC_OK;
}

static abc_status read_vision_config(const weight_file *wf, vision_config *c, int text_hidden,
                                     abc_error *err) {
    int patch, temporal, channels;
    double eps;
    if (!meta_dim(wf, "vision.depth", MODEL_MAX_LAYERS, &c->depth, err) ||
        !meta_dim(wf, "vision.embed_dim", MODEL_MAX_DIM, &c->embed_dim, err) ||
        !meta_dim(wf, "vision.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_dim(wf, "vision.mlp_dim", MODEL_MAX_DIM, &c->mlp_dim, err) ||
        !meta_dim(wf, "vision.patch_size", 1024, &patch, err) ||
        !meta_dim(wf, "vision.temporal_patch_size", 64, &temporal, err) ||
        !meta_dim(wf, "vision.spatial_merge_size", 64, &c->merge_size, err) ||
        !meta_dim(wf, "vision.in_channels", 64, &channels, err) ||
        !meta_dim(wf, "vision.out_dim", MODEL_MAX_DIM, &c->out_dim, err) ||
        !meta_positive(wf, "vision.layer_norm_eps", 1.0, &eps, err) ||
        !meta_positive(wf, "vision.rope_theta", 1e30, &c->rope_theta, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->norm_eps = (float)eps;
    if (channels != 3)
        return fail(err, ABC_ERR_FORMAT, "vision.in_channels is %d; images are RGB (3)", channels);
    if ((int64_t)patch * patch * temporal * channels > MODEL_MAX_DIM)
        return fail(err, ABC_ERR_FORMAT, "vision patch %d×%d×%d is too large", patch, patch, temporal);
    c->patch_dim = channels * temporal * patch * patch;
    if (c->embed_dim % c->n_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "vision.embed_dim %d is not a multiple of vision.num_heads %d",
                    c->embed_dim, c->n_heads);
    c->head_dim = c->embed_dim / c->n_heads;
    if (c->head_dim % 4 != 0 || c->head_dim > MODEL_MAX_HEAD_DIM)
        return fail(err, ABC_ERR_FORMAT, "vision head_dim %d must be a multiple of 4 up to %d (2-D rotary)",
                    c->head_dim, MODEL_MAX_HEAD_DIM);
    if (c->out_dim != text_hidden)
        return fail(err, ABC_ERR_FORMAT, "vision.out_dim %d != text.hidden_size %d", c->out_dim, text_hidden);
    return ABC_OK;
}

/* Phi-3.5-V's CLIP tower and HD transform. */
static abc_status read_clip_config(const weight_file *wf, clip_config *c, hd_preprocess_config *hd, int text_hidden,
                                   int num_crops_override, abc_error *err) {
    int64_t layers, crops, view_tokens;
    double eps, mean[3], std[3];
    if (!meta_dim(wf, "clip.hidden_size", MODEL_MAX_DIM, &c->hidden, err) ||
        !meta_dim(wf, "clip.intermediate_size", MODEL_MAX_DIM, &c->intermediate, err) ||
        !meta_dim(wf, "clip.num_heads", MODEL_MAX_DIM, &c->n_heads, err) ||
        !meta_int_in(wf, "clip.num_layers", 0, MODEL_MAX_LAYERS, &layers, err) ||
        !meta_dim(wf, "clip.image_size", 4096, &c->image_size, err) ||
        !meta_dim(wf, "clip.patch_size", 256, &c->patch_size, err) ||
        !meta_positive(wf, "clip.layer_norm_eps", 1.0, &eps, err) ||
        !meta_int_in(wf, "hd.num_crops", 1, 4096, &crops, err) ||
        !meta_int_in(wf, "hd.num_img_tokens", 1, MODEL_MAX_DIM, &view_tokens, err) ||
        !wf_f64_array(wf, "image.mean", mean, 3, err) || !wf_f64_array(wf, "image.std", std, 3, err))
        return err ? err->code : ABC_ERR_FORMAT;
    c->n_layers = (int)layers;
    c->norm_eps = (float)eps;
    c->out_dim = text_hidden;
    if (c->hidden % c->n_heads != 0)
        return fail(err, ABC_ERR_FORMAT, "clip.hidden_size %d is not a multiple of clip.num_heads %d", c->hidden,
                    c->n_heads);
    c->head_dim = c->hidden / c->n_heads;
    if (c->image_size % c->patch_size != 0 || (c->image_size / c->patch_size) % 2 != 0)
        return fail(err, ABC_ERR_FORMAT, "clip.image_size %d is not an even number of clip.patch_size %d patches",
                    c->image_size, c->patch_size);
    c->grid = c->image_size / c->patch_size;
    c->patch_dim = 3 * c->patch_size * c->patch_size;
    if ((int64_t)(c->grid / 2) * (c->grid / 2) != view_tokens)
        return fail(err, ABC_ERR_FORMAT, "hd.num_img_tokens %lld != (clip.image_size / clip.patch_size / 2)² = %d",
                    (long long)view_tokens, (c->grid / 2) * (c->grid / 2));
    memset(hd, 0, sizeof *hd);
    hd->num_crops = num_crops_override > 0 ? num_crops_override : (int)crops;
    hd->crop_size = c->image_size;
    for (int ch = 0; ch < 3; ch++) {
        if (!isfinite(mean[ch]) || !isfinite(std[ch]) || !(fabs(std[ch]) > 1e-12))
            return fail(err, ABC_ERR_FORMAT, "image.mean/image.std channel %d is not usable", ch);
        hd->mean[ch] = (float)mean[ch];
        hd->std[ch] = (float)std[ch];
    }
    return ABC_OK;
}

static abc_status read_preprocess_config(const weight_file *wf, const vision_config *v, int patch,
                                         int temporal, preprocess_config *p, abc_error *err) {
    int64_t factor, lo, hi;
    double mean[3], std[3];
    if (!meta_int_in(wf, "image.factor", 1, 1 << 16, &factor, err) ||
        !meta_int_in(wf, "image.min_pixels", 1, INT64_C(1) << 40, &lo, err) ||
        !meta_int_in(wf, "image.max_pixels", 1, INT64_C(1) << 40, &hi, err) ||
        !wf_f64_array(wf, "image.mean", mean, 3, err) || !wf_f64_array(wf, "image.std", std, 3, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (factor != (int64_t)patch * v->merge_size)
        return fail(err, ABC_ERR_FORMAT, "image.factor %lld != patch size × merge size %d", (long long)factor,
                    patch * v->merge_size);
    if (lo > hi)
        return fail(err, ABC_ERR_FORMAT, "image.min_pixels %lld > image.max_pixels %lld", (long long)lo,
                    (long long)hi);
    memset(p, 0, sizeof *p);
    p->factor = (int)factor;
    p->min_pixels = lo;
    p->max_pixels = hi;
    for (int c = 0; c < 3; c++) {
        if (!isfinite(mean[c]) || !isfinite(std[c]) || !(fabs(std[c]) > 1e-12))
            return fail(err, ABC_ERR_FORMAT, "image.mean/image.std channel %d is not usable", c);
        p->mean[c] = (float)mean[c];
        p->std[c] = (float)std[c];
    }
    p->patch_size = patch;
    p->temporal_patch_size = temporal;
    p->merge_size = v->merge_size;
    const bool has_lo1 = wf_meta(wf, "image.stage1_min_pixels") != NULL;
    const bool has_hi1 = wf_meta(wf, "image.stage1_max_pixels") != NULL;
    if (has_lo1 != has_hi1)
        return fail(err, ABC_ERR_FORMAT, "image.stage1_min_pixels and image.stage1_max_pixels come together");
    if (has_lo1) {
        if (!meta_int_in(wf, "image.stage1_min_pixels", 1, INT64_C(1) << 40, &lo, err) ||
            !meta_int_in(wf, "image.stage1_max_pixels", 1, INT64_C(1) << 40, &hi, err))
            return err ? err->code : ABC_ERR_FORMAT;
        if (lo > hi)
            return fail(err, ABC_ERR_FORMAT, "image.stage1_min_pixels %lld > image.stage1_max_pixels %lld",
                        (long long)lo, (long long)hi);
        p->two_stage = true;
        p->stage1_min_pixels = lo;
        p->stage1_max_pixels = hi;
    }
    return ABC_OK;
}

/* Prompt templates: the image ones must hold the placeholder, the text one must not. */
static abc_status read_prompts(const weight_file *wf, abc_model *m, abc_error *err) {
    if (!meta_string_copy(wf, "prompt.image_text", &m->prompt_image_text, err) ||
        !meta_string_copy(wf, "prompt.image", &m->prompt_image, err) ||
        !meta_string_copy(wf, "prompt.text", &m->prompt_text, err) ||
        !meta_string_copy(wf, "prompt.image_placeholder", &m->placeholder, err))
        return err ? err->code : ABC_ERR_FORMAT;
    if (!m->placeholder[0]) return fail(err, ABC_ERR_FORMAT, "metadata 'prompt.image_placeholder' is empty");
    if (!strstr(m->prompt_image_text, m->placeholder) || !strstr(m->prompt_image, m->placeholder))
        return fail(err, ABC_ERR_FORMAT, "an image prompt template lacks the placeholder '%s'", m->placeholder);
    if (strstr(m->prompt_text, m->placeholder))
        return fail(err, ABC_ERR_FORMAT, "the text prompt template contains the image placeholder");
    return ABC_OK;
}

static abc_status read_config(abc_model *m, abc_error *err) {
    const weight_file *wf = &m->wf;
    static const char *const attentions[] = {"bidirectional", "causal"};
    static const char *const poolings[] = {"mean_nonzero", "last"};
    static const char *const heads[] = {"none", "mlp"};
    static const char *const rules[] = {"vision_start", "token_type"};
    int attn, pooling, head, rule = 0;
    const char *arch;
    size_t arch_len;
    if (!wf_str(wf, "general.architecture", &arch, &arch_len, err)) return err ? err->code : ABC_ERR_FORMAT;
    if (arch_len == 8 && memcmp(arch, "qwen2_vl", 8) == 0) m->arch = ARCH_QWEN2_VL;
    else if (arch_len == 6 && memcmp(arch, "phi3_v", 6) == 0) m->arch = ARCH_PHI3_V;
    else
        return fail(err, ABC_ERR_UNSUPPORTED, "architecture '%.*s' is not supported (qwen2_vl or phi3_v)",
                    (int)MIN(arch_len, 64), arch);
    if (!meta_string_copy(wf, "general.preset", &m->preset, err)) return err ? err->code : ABC_ERR_FORMAT;
    if (wf_meta(wf, "general.dtype") && !meta_string_copy(wf, "general.dtype", &m->dtype, err))
        return err ? err->code : ABC_ERR_FORMAT;
    abc_status st = read_text_config(wf, m->arch, &m->text, &m->rope_factors, err);
    if (st != ABC_OK) return st;
    int64_t patch, temporal, normalize, dim;
    if (m->arch == ARCH_QWEN2_VL) {
        st = read_vision_config(wf, &m->vision, m->text.hidden, err);
        if (st != ABC_OK) return st;
        wf_int(wf, "vision.patch_size", &patch, NULL);
        wf_int(wf, "vision.temporal_patch_size", &temporal, NULL);
        st = read_preprocess_config(wf, &m->vision, (int)patch, (int)temporal, &m->preprocess, err);
    } else {
        st = read_clip_config(wf, &m->clip, &m->hd, m->text.hidden, m->params.num_crops, err);
    }
    if (st != ABC_OK) return st;

    if (!meta_choice(wf, "model.attention", attentions, 2, &attn, err) ||
        !meta_choice(wf, "model.pooling", poolings, 2, &pooling, err) ||
        !meta_choice(wf, "model.head", heads, 2, &head, err) ||
        !meta_int_in(wf, "model.normalize", 0, 1, &normalize, err) ||
        !meta_int_in(wf, "model.embedding_dim", 1, MODEL_MAX_DIM, &dim, err))
        return err ? err->code : ABC_ERR_FORMAT;
    /* Absent in early files: the transformers ≤ 4.5x rule both presets were trained with. */
    if (wf_meta(wf, "model.mrope_rule") && !meta_choice(wf, "model.mrope_rule", rules, 2, &rule, err))
        return err ? err->code : ABC_ERR_FORMAT;
    m->text.causal = attn == 1;
    m->text.mrope_token_type = rule == 1;
    m->text.merge_size = m->vision.merge_size;
    m->pooling = pooling == 0 ? POOL_MEAN_NONZERO : POOL_LAST;
    m->has_head = head == 1;
    m->normalize = normalize == 1;
    m->embedding_dim = (int)dim;
    if (dim != m->text.hidden)
        return fail(err, ABC_ERR_FORMAT, "model.embedding_dim %lld != text.hidden_size %d", (long long)dim,
                    m->text.hidden);

    if (m->arch == ARCH_PHI3_V) {
        /* image tokens are the processor's -1 marker; every text chunk starts with <s> */
        m->text.image_token = m->text.vision_start_token = m->vision_end_token = -1;
        m->text.merge_size = 1;
        if (!meta_token_id(wf, "tokens.bos", m->text.vocab, &m->bos_token, err)) return err ? err->code : ABC_ERR_FORMAT;
        return read_prompts(wf, m, err);
    }
    if (!meta_token_id(wf, "tokens.image_pad", m->text.vocab, &m->text.image_token, err) ||
        !meta_token_id(wf, "tokens.vision_start", m->text.vocab, &m->text.vision_start_token, err) ||
        !meta_token_id(wf, "tokens.vision_end", m->text.vocab, &m->vision_end_token, err))
        return err ? err->code : ABC_ERR_FORMAT;
    return read_prompts(wf, m, err);
}

/* ---- binding tensors ---- */

typedef struct {
    const weight_file *wf;
    abc_error *err;
    abc_status status;      /* the first failure; binding stops there */
    bool *claimed;          /* per tensor of the file: bound as a query-adapter factor */
    int adapter_modules;
} binder;

/* Looks a tensor up by a printf-formatted name and checks it: `matrix` = 2-D [d0][d1] of a weight
 * dtype (f32, f16, bf16, q8); otherwise 1-D [d0] f32. NULL after the first failure. */
#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static const tensor *bind_tensor(binder *b, bool matrix, int64_t d0, int64_t d1, const char *fmt, ...) {
    if (b->status != ABC_OK) return NULL;
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const tensor *t = wf_tensor(b->wf, name);
    if (!t) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' is missing", name);
        return NULL;
    }
    const bool shape_ok = matrix ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1)
                                 : (t->ndim == 1 && t->shape[0] == d0);
    if (!shape_ok) {
        char want[64];
        if (matrix) snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "[%lld]", (long long)d0);
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' has %d dims [%lld, %lld, ...], expected %s", name,
                         t->ndim, (long long)t->shape[0], (long long)t->shape[1], want);
        return NULL;
    }
    const bool dtype_ok = matrix ? (t->dtype == DT_F32 || t->dtype == DT_F16 || t->dtype == DT_BF16 ||
                                    t->dtype == DT_Q8)
                                 : t->dtype == DT_F32;
    if (!dtype_ok) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "tensor '%s' has dtype %s, expected %s", name,
                         dtype_name(t->dtype), matrix ? "f32, f16, bf16 or q8" : "f32");
        return NULL;
    }
    return t;
}

static const float *bind_vector(binder *b, int64_t n, const char *name) {
    const tensor *t = bind_tensor(b, false, n, 1, "%s", name);
    return t ? (const float *)t->data : NULL;
}

/* An f32 LoRA factor of the query adapter, [rows][cols]; rows < 0 means "any" (the rank). */
static const tensor *bind_lora_factor(binder *b, const char *name, int64_t rows, int64_t cols) {
    const tensor *t = wf_tensor(b->wf, name);
    if (!t) return NULL;
    if (t->dtype != DT_F32 || t->ndim != 2 || (rows >= 0 && t->shape[0] != rows) || t->shape[1] != cols ||
        t->shape[0] < 1 || t->shape[0] > MODEL_MAX_DIM) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "query adapter tensor '%s' (%s, %d dims [%lld, %lld]) does not fit "
                         "its layer (expected f32 [%lld, %lld])", name, dtype_name(t->dtype), t->ndim,
                         (long long)t->shape[0], (long long)t->shape[1], (long long)(rows >= 0 ? rows : t->shape[0]),
                         (long long)cols);
        return NULL;
    }
    return t;
}

/* Binds `prefix`.weight [out][in] (+ .bias [out]) and, when the file has them, the query adapter's
 * query_adapter.`prefix`.lora_A [r][in] and .lora_B [out][r]. */
static void bind_linear(binder *b, linear_layer *l, const char *prefix, int64_t out, int64_t in, bool has_bias,
                        int *max_rank, int *max_width) {
    memset(l, 0, sizeof *l);
    l->in = in;
    l->out = out;
    l->weight = bind_tensor(b, true, out, in, "%s.weight", prefix);
    if (has_bias) l->bias = bind_tensor(b, false, out, 1, "%s.bias", prefix);
    if (b->status != ABC_OK) return;
    char name_a[256], name_b[256];
    snprintf(name_a, sizeof name_a, "query_adapter.%s.lora_A", prefix);
    snprintf(name_b, sizeof name_b, "query_adapter.%s.lora_B", prefix);
    const tensor *a = bind_lora_factor(b, name_a, -1, in);
    if (b->status != ABC_OK) return;
    const tensor *bt = a ? bind_lora_factor(b, name_b, out, a->shape[0]) : NULL;
    if (b->status != ABC_OK) return;
    if (!a != !bt || (!a && wf_tensor(b->wf, name_b))) {
        b->status = fail(b->err, ABC_ERR_FORMAT, "query adapter of '%s' needs both lora_A and lora_B", prefix);
        return;
    }
    if (!a) return;
    l->lora_a = a->data;
    l->lora_b = bt->data;
    l->rank = (int)a->shape[0];
    *max_rank = MAX(*max_rank, l->rank);
    *max_width = (int)MAX(*max_width, out);
    b->claimed[a - b->wf->tensors] = b->claimed[bt - b->wf->tensors] = true;
    b->adapter_modules++;
}

static abc_status bind_vision(binder *b, const vision_config *c, vision_weights *w) {
    const int64_t E = c->embed_dim, M = c->mlp_dim, group_dim = E * c->merge_size * c->merge_size;
    char p[128];
    w->blocks = xcalloc((size_t)c->depth, sizeof *w->blocks);
    if (!w->blocks) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the vision tower");
    bind_linear(b, &w->patch_embed, "visual.patch_embed.proj", E, c->patch_dim, false, &w->adapter_rank,
                &w->adapter_width);
    for (int i = 0; i < c->depth && b->status == ABC_OK; i++) {
        vision_block *blk = &w->blocks[i];
#define VNAME(s) (snprintf(p, sizeof p, "visual.blocks.%d.%s", i, s), p)
        blk->norm1_w = bind_vector(b, E, VNAME("norm1.weight"));
        blk->norm1_b = bind_vector(b, E, VNAME("norm1.bias"));
        blk->norm2_w = bind_vector(b, E, VNAME("norm2.weight"));
        blk->norm2_b = bind_vector(b, E, VNAME("norm2.bias"));
        bind_linear(b, &blk->qkv, VNAME("attn.qkv"), 3 * E, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->proj, VNAME("attn.proj"), E, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->fc1, VNAME("mlp.fc1"), M, E, true, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &blk->fc2, VNAME("mlp.fc2"), E, M, true, &w->adapter_rank, &w->adapter_width);
#undef VNAME
    }
    w->ln_q_w = bind_vector(b, E, "visual.merger.ln_q.weight");
    w->ln_q_b = bind_vector(b, E, "visual.merger.ln_q.bias");
    bind_linear(b, &w->merger_fc1, "visual.merger.mlp.0", group_dim, group_dim, true, &w->adapter_rank,
                &w->adapter_width);
    bind_linear(b, &w->merger_fc2, "visual.merger.mlp.2", c->out_dim, group_dim, true, &w->adapter_rank,
                &w->adapter_width);
    return b->status;
}

static abc_status bind_text(binder *b, const text_config *c, bool qkv_bias, text_weights *w) {
    const int64_t H = c->hidden, I = c->intermediate, Q = (int64_t)c->n_heads * c->head_dim,
                  KV = (int64_t)c->n_kv_heads * c->head_dim;
    char p[128];
    w->layers = xcalloc((size_t)c->n_layers, sizeof *w->layers);
    if (!w->layers) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the language model");
    w->embed_tokens = bind_tensor(b, true, c->vocab, H, "model.embed_tokens.weight");
    for (int i = 0; i < c->n_layers && b->status == ABC_OK; i++) {
        text_layer *l = &w->layers[i];
#define TNAME(s) (snprintf(p, sizeof p, "model.layers.%d.%s", i, s), p)
        l->input_norm = bind_vector(b, H, TNAME("input_layernorm.weight"));
        l->post_attn_norm = bind_vector(b, H, TNAME("post_attention_layernorm.weight"));
        bind_linear(b, &l->q, TNAME("self_attn.q_proj"), Q, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->k, TNAME("self_attn.k_proj"), KV, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->v, TNAME("self_attn.v_proj"), KV, H, qkv_bias, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->o, TNAME("self_attn.o_proj"), H, Q, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->gate, TNAME("mlp.gate_proj"), I, H, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->up, TNAME("mlp.up_proj"), I, H, false, &w->adapter_rank, &w->adapter_width);
        bind_linear(b, &l->down, TNAME("mlp.down_proj"), H, I, false, &w->adapter_rank, &w->adapter_width);
#undef TNAME
    }
    w->final_norm = bind_vector(b, H, "model.norm.weight");
    return b->status;
}

static abc_status bind_clip(binder *b, const clip_config *c, clip_weights *w) {
    const int64_t C = c->hidden, I = c->intermediate, wide = 4 * C, H = c->out_dim;
    char p[128];
    int rank = 0, width = 0; /* phi3_v has no query adapter; bind_linear still checks there is none */
    w->layers = xcalloc((size_t)MAX(c->n_layers, 1), sizeof *w->layers);
    if (!w->layers) return fail(b->err, ABC_ERR_NOMEM, "out of memory binding the CLIP encoder");
    bind_linear(b, &w->patch_embed, "clip.embeddings.patch_embedding", C, c->patch_dim, false, &rank, &width);
    w->class_embedding = bind_vector(b, C, "clip.embeddings.class_embedding");
    w->position_embedding = bind_tensor(b, true, (int64_t)c->grid * c->grid + 1, C,
                                        "clip.embeddings.position_embedding.weight");
    w->pre_ln_w = bind_vector(b, C, "clip.pre_layrnorm.weight");
    w->pre_ln_b = bind_vector(b, C, "clip.pre_layrnorm.bias");
    for (int i = 0; i < c->n_layers && b->status == ABC_OK; i++) {
        clip_layer *l = &w->layers[i];
#define CNAME(s) (snprintf(p, sizeof p, "clip.layers.%d.%s", i, s), p)
        l->ln1_w = bind_vector(b, C, CNAME("layer_norm1.weight"));
        l->ln1_b = bind_vector(b, C, CNAME("layer_norm1.bias"));
        l->ln2_w = bind_vector(b, C, CNAME("layer_norm2.weight"));
        l->ln2_b = bind_vector(b, C, CNAME("layer_norm2.bias"));
        bind_linear(b, &l->q, CNAME("self_attn.q_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->k, CNAME("self_attn.k_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->v, CNAME("self_attn.v_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->out, CNAME("self_attn.out_proj"), C, C, true, &rank, &width);
        bind_linear(b, &l->fc1, CNAME("mlp.fc1"), I, C, true, &rank, &width);
        bind_linear(b, &l->fc2, CNAME("mlp.fc2"), C, I, true, &rank, &width);
#undef CNAME
    }
    w->glb_gn = bind_vector(b, wide, "hd.glb_GN");
    w->sub_gn = bind_vector(b, wide, "hd.sub_GN");
    bind_linear(b, &w->proj0, "hd.img_projection.0", H, wide, true, &rank, &width);
    bind_linear(b, &w->proj2, "hd.img_projection.2", H, H, true, &rank, &width);
    if (b->status == ABC_OK && rank > 0)
        return fail(b->err, ABC_ERR_FORMAT, "phi3_v files carry no query adapter on the vision side");
    return b->status;
}

static abc_status bind_head(binder *b, int64_t H, mlp_head *head) {
    const tensor *w1 = wf_tensor(b->wf, "mlp_head.linear_layer1.weight");
    const int64_t D = w1 && w1->ndim == 2 ? w1->shape[0] : 0;
    if (w1 && (D < 1 || D > MODEL_MAX_DIM))
        return fail(b->err, ABC_ERR_FORMAT, "tensor 'mlp_head.linear_layer1.weight' has a bad shape");
    head->inner = D;
    head->w1 = bind_tensor(b, true, D, H, "mlp_head.linear_layer1.weight");
    head->b1 = bind_tensor(b, false, D, 1, "mlp_head.linear_layer1.bias");
    head->w2 = bind_tensor(b, true, H, D, "mlp_head.linear_layer2.weight");
    head->b2 = bind_tensor(b, false, H, 1, "mlp_head.linear_layer2.bias");
    return b->status;
}

/* Every query_adapter.* tensor must belong to a layer, and the metadata must agree. */
static abc_status check_adapter_complete(binder *b, abc_model *m) {
    static const char prefix[] = "query_adapter.";
    const weight_file *wf = &m->wf;
    uint32_t total = 0;
    for (uint32_t i = 0; i < wf->n_tensors; i++) {
        const tensor *t = &wf->tensors[i];
        if (t->name_len < sizeof prefix - 1 || memcmp(t->name, prefix, sizeof prefix - 1) != 0) continue;
        total++;
        if (!b->claimed[i])
            return fail(b->err, ABC_ERR_FORMAT, "query adapter tensor '%.*s' belongs to no layer of the model",
                        (int)MIN(t->name_len, 200), t->name);
    }
    int64_t rank = 0;
    if (wf_meta(wf, "query_adapter.rank") &&
        !meta_int_in(wf, "query_adapter.rank", 0, MODEL_MAX_DIM, &rank, b->err))
        return b->err ? b->err->code : ABC_ERR_FORMAT;
    if ((rank > 0) != (total > 0))
        return fail(b->err, ABC_ERR_FORMAT, "metadata 'query_adapter.rank' = %lld but the file has %u adapter tensors",
                    (long long)rank, total);
    const int largest = MAX(m->text_w.adapter_rank, m->vision_w.adapter_rank);
    if (total > 0 && rank != largest)
        return fail(b->err, ABC_ERR_FORMAT, "metadata 'query_adapter.rank' = %lld but the largest adapter rank is %d",
                    (long long)rank, largest);
    return ABC_OK;
}

static abc_status bind_weights(abc_model *m, abc_error *err) {
    binder b = {&m->wf, err, ABC_OK, NULL, 0};
    b.claimed = xcalloc(m->wf.n_tensors, sizeof *b.claimed);
    if (!b.claimed) return fail(err, ABC_ERR_NOMEM, "out of memory binding tensors");
    const bool phi3 = m->arch == ARCH_PHI3_V;
    abc_status st = phi3 ? bind_clip(&b, &m->clip, &m->clip_w) : bind_vision(&b, &m->vision, &m->vision_w);
    if (st == ABC_OK) st = bind_text(&b, &m->text, !phi3, &m->text_w);
    if (st == ABC_OK && m->has_head) st = bind_head(&b, m->text.hidden, &m->head);
    if (st == ABC_OK) st = check_adapter_complete(&b, m);
    m->adapter_modules = b.adapter_modules;
    free(b.claimed);
    return st;
}

/* ---- description ---- */

static abc_status build_description(abc_model *m, abc_error *err) {
    const vision_config *v = &m->vision;
    const text_config *t = &m->text;
    const size_t cap = 1024;
    m->description = xmalloc(cap);
    if (!m->description) return fail(err, ABC_ERR_NOMEM, "out of memory");
    if (m->arch == ARCH_PHI3_V) {
        const clip_config *c = &m->clip;
        char rope[160] = "rope plain";
        if (t->rope_short_factor)
            snprintf(rope, sizeof rope, "rope su (long factors beyond %lld of %lld positions)",
                     (long long)t->rope_original_max_positions, (long long)t->rope_max_positions);
        snprintf(m->description, cap,
                 "architecture: phi3_v (preset %s), weights %s\n"
                 "vision: CLIP, %d layers run, width %d, %d heads, mlp %d, patch %d, image %d; HD transform with "
                 "%d crops, 2x2 merge + separators, projection %d -> %d\n"
                 "language: %d layers, hidden %d, %d heads (%d kv), head_dim %d, intermediate %d, vocab %lld, %s\n"
                 "attention %s, pooling %s, head %s%s, embedding dim %d\n",
                 m->preset, m->dtype ? m->dtype : "?", c->n_layers, c->hidden, c->n_heads, c->intermediate,
                 c->patch_size, c->image_size, m->hd.num_crops, 4 * c->hidden, c->out_dim, t->n_layers, t->hidden,
                 t->n_heads, t->n_kv_heads, t->head_dim, t->intermediate, (long long)t->vocab, rope,
                 t->causal ? "causal" : "bidirectional", m->pooling == POOL_LAST ? "last token" : "mean (ids != 0)",
                 m->has_head ? "mlp" : "none", m->normalize ? ", L2-normalized" : "", m->embedding_dim);
        return ABC_OK;
    }
    snprintf(m->description, cap,
             "architecture: qwen2_vl (preset %s), weights %s\n"
             "vision: %d blocks, width %d, %d heads, mlp %d, patch %d, merge %dx%d\n"
             "language: %d layers, hidden %d, %d heads (%d kv), head_dim %d, intermediate %d, vocab %lld\n"
             "attention %s, pooling %s, head %s%s, embedding dim %d\n"
             "query adapter (role=query): %d layers, rank up to %d\n",
             m->preset, m->dtype ? m->dtype : "?", v->depth, v->embed_dim, v->n_heads, v->mlp_dim,
             m->preprocess.patch_size, v->merge_size, v->merge_size, t->n_layers, t->hidden, t->n_heads,
             t->n_kv_heads, t->head_dim, t->intermediate, (long long)t->vocab,
             t->causal ? "causal" : "bidirectional", m->pooling == POOL_LAST ? "last token" : "mean (ids != 0)",
             m->has_head ? "mlp" : "none", m->normalize ? ", L2-normalized" : "", m->embedding_dim,
             m->adapter_modules, MAX(m->text_w.adapter_rank, m->vision_w.adapter_rank));
    return ABC_OK;
}

/* ---- load / free ---- */

static void model_free(abc_model *m) {
    if (!m) return;
    tokenizer_free(m->tok);
    free(m->vision_w.blocks);
    free(m->clip_w.layers);
    free(m->rope_factors);
    free(m->text_w.layers);
    free(m->preset);
    free(m->dtype);
    free(m->prompt_image_text);
    free(m->prompt_image);
    free(m->prompt_text);
    free(m->placeholder);
    free(m->description);
    weight_file_close(&m->wf);
    free(m);
}

static abc_status model_load(const char *path, const abc_model_params *params, abc_model **out, abc_error *err) {
    abc_model *m = xcalloc(1, sizeof *m);
    if (!m) return fail(err, ABC_ERR_NOMEM, "out of memory loading '%s'", path);
    m->params = *params;
    abc_status st = weight_file_open(path, &m->wf, err);
    if (st == ABC_OK) st = read_config(m, err);
    if (st == ABC_OK) st = bind_weights(m, err);
    if (st == ABC_OK) st = tokenizer_load(&m->wf, &m->tok, err);
    if (st == ABC_OK && m->text.vocab < 1) st = fail(err, ABC_ERR_FORMAT, "empty vocabulary");
    if (st == ABC_OK) st = build_description(m, err);
    if (st != ABC_OK) {
        model_free(m);
        return st;
    }
    *out = m;
    return ABC_OK;
}
