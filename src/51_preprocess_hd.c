
/* ================================================================================================
 * 6b. Preprocessing for Phi-3.5-V: the HD transform (SPEC section 11)
 *
 * Phi3VImageProcessor in C: Pillow's bilinear resize (section 6's resampler, bit-exact) of the image,
 * transposed first when portrait, white padding of the height to whole crops, torchvision's ToTensor
 * and Normalize in float32 (bit-exact, a lookup table), the crops, and a 336×336 global view made
 * with torch's float32 bicubic interpolate (a = −0.75, align_corners=False, clamped borders), whose
 * arithmetic we repeat operation by operation.
 * ================================================================================================ */

/* num_crops beyond this is a configuration error (VLM2Vec uses 4 or 16; 256 crops are 350 MB). */
#define HD_MAX_CROPS 256
#define HD_MAX_CROP_SIZE 4096

typedef struct {
    bool transposed;  /* portrait: the resize works on the transposed image */
    int new_w, new_h; /* the resize target, in the (possibly transposed) working orientation */
    int padded_h;     /* new_h padded up to whole crops, in the working orientation */
    int top;          /* white rows above the resized image, in the working orientation */
    int out_w, out_h; /* the padded HD image in the original orientation */
} hd_geometry;

static abc_status hd_config_check(const hd_preprocess_config *cfg, abc_error *err) {
    if (cfg->num_crops < 1 || cfg->num_crops > HD_MAX_CROPS)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: num_crops %d is outside 1..%d", cfg->num_crops,
                    HD_MAX_CROPS);
    if (cfg->crop_size < 1 || cfg->crop_size > HD_MAX_CROP_SIZE)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: crop size %d is outside 1..%d", cfg->crop_size,
                    HD_MAX_CROP_SIZE);
    for (int c = 0; c < 3; c++)
        if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
            return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: bad mean/std for channel %d", c);
    return ABC_OK;
}

/* HD_transform's sizes with Python's arithmetic: ratio = w / h (double), the scale loop
 * `while scale * np.ceil(scale / ratio) <= num_crops: scale += 1` (it ends because ratio ≥ 1 makes
 * the ceiling at least 1), new_w = scale·crop, new_h = int(new_w / ratio) (truncation). */
static abc_status hd_compute_geometry(int width, int height, const hd_preprocess_config *cfg, hd_geometry *g,
                                      abc_error *err) {
    memset(g, 0, sizeof *g);
    g->transposed = width < height;
    const int w = g->transposed ? height : width, h = g->transposed ? width : height;
    const double ratio = (double)w / (double)h;
    const int crop = cfg->crop_size;
    int scale = 1;
    while ((double)scale * ceil((double)scale / ratio) <= (double)cfg->num_crops) scale++;
    scale--;
    g->new_w = scale * crop;
    const double new_h = floor((double)g->new_w / ratio);
    if (new_h < 1.0)
        return fail(err, ABC_ERR_UNSUPPORTED,
                    "HD preprocessing: a %dx%d image is too elongated (its short side would resize to 0 pixels)",
                    width, height);
    g->new_h = (int)new_h; /* ≤ new_w since ratio ≥ 1 */
    g->padded_h = (g->new_h + crop - 1) / crop * crop;
    g->top = (g->padded_h - g->new_h) / 2;
    g->out_w = g->transposed ? g->padded_h : g->new_w;
    g->out_h = g->transposed ? g->new_w : g->padded_h;
    return ABC_OK;
}

/* PIL's Image.TRANSPOSE: out[x][y] = in[y][x], out is height × width. */
static abc_status transpose_rgb8(const abc_image *src, abc_image *out, abc_error *err) {
    size_t bytes;
    if (!mul_size((size_t)src->width * 3, (size_t)src->height, &bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d image is too large", src->width, src->height);
    out->rgb = xmalloc(bytes);
    if (!out->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory transposing a %dx%d image", src->width, src->height);
    out->width = src->height;
    out->height = src->width;
    /* Blocks keep both the reads and the writes cache-friendly on large images. */
    enum { B = 32 };
    for (int y0 = 0; y0 < src->height; y0 += B)
        for (int x0 = 0; x0 < src->width; x0 += B)
            for (int y = y0; y < MIN(y0 + B, src->height); y++)
                for (int x = x0; x < MIN(x0 + B, src->width); x++) {
                    const uint8_t *p = src->rgb + ((size_t)y * src->width + x) * 3;
                    uint8_t *q = out->rgb + ((size_t)x * out->width + y) * 3;
                    q[0] = p[0], q[1] = p[1], q[2] = p[2];
                }
    return ABC_OK;
}

/* padding_336 then the transpose back, in one step: `resized` (new_w × new_h in the working
 * orientation) lands at row offset `top` of a white padded_h-high canvas, which is written in the
 * original orientation. */
static abc_status hd_pad(const abc_image *resized, const hd_geometry *g, abc_image *out, abc_error *err) {
    size_t bytes;
    if (!mul_size((size_t)g->out_w * 3, (size_t)g->out_h, &bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d HD image is too large", g->out_w, g->out_h);
    out->rgb = xmalloc(bytes);
    if (!out->rgb) return fail(err, ABC_ERR_NOMEM, "out of memory for a %dx%d HD image", g->out_w, g->out_h);
    out->width = g->out_w;
    out->height = g->out_h;
    memset(out->rgb, 255, bytes);
    const size_t row = (size_t)resized->width * 3;
    if (!g->transposed) {
        memcpy(out->rgb + (size_t)g->top * row, resized->rgb, row * (size_t)resized->height);
        return ABC_OK;
    }
    /* resized row r (working orientation) becomes column top + r of the output. */
    for (int r = 0; r < resized->height; r++)
        for (int x = 0; x < resized->width; x++) {
            const uint8_t *p = resized->rgb + (size_t)r * row + (size_t)x * 3;
            uint8_t *q = out->rgb + ((size_t)x * out->width + (size_t)(g->top + r)) * 3;
            q[0] = p[0], q[1] = p[1], q[2] = p[2];
        }
    return ABC_OK;
}

/* The padded HD image (8-bit RGB, original orientation) of `src`. */
static abc_status hd_transform(const abc_image *src, const hd_geometry *g, abc_image *out, abc_error *err) {
    abc_image work = *src, transposed = {0}, resized = {0};
    abc_status st = ABC_OK;
    if (g->transposed) {
        st = transpose_rgb8(src, &transposed, err);
        if (st != ABC_OK) return st;
        work = transposed;
    }
    st = resize_rgb8(&work, g->new_w, g->new_h, &RESAMPLE_BILINEAR, &resized, err);
    free(transposed.rgb);
    if (st != ABC_OK) return st;
    st = hd_pad(&resized, g, out, err);
    free(resized.rgb);
    return st;
}

/* ToTensor then Normalize for every (channel, byte): torch divides the float32 tensor by 255 and then
 * subtracts and divides by float32 mean and std, one rounding each. */
static void hd_pixel_value_table(const hd_preprocess_config *cfg, float table[3][256]) {
    for (int c = 0; c < 3; c++)
        for (int x = 0; x < 256; x++) {
            const float v = (float)x / 255.0f;
            const float centred = v - cfg->mean[c];
            table[c][x] = centred / cfg->std[c];
        }
}

/* The normalised HD image as planes [3][h][w]. */
static void hd_normalise(const abc_image *hd, const float table[3][256], float *planes) {
    const size_t plane = (size_t)hd->width * hd->height;
    for (size_t i = 0; i < plane; i++) {
        const uint8_t *p = hd->rgb + i * 3;
        planes[i] = table[0][p[0]];
        planes[plane + i] = table[1][p[1]];
        planes[2 * plane + i] = table[2][p[2]];
    }
}

/* torch's cubic convolution with A = −0.75 in float: |x| ≤ 1 and 1 < |x| < 2. */
static float torch_cubic1(float x) {
    const float A = -0.75f;
    return ((A + 2) * x - (A + 3)) * x * x + 1;
}
static float torch_cubic2(float x) {
    const float A = -0.75f;
    return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
}

/* One axis of torch's upsample_bicubic2d (align_corners=False): for output i, four clamped input
 * indices and float weights, computed as ATen does (scale = (float)in / out, the source coordinate
 * scale·(i + 0.5) − 0.5 in double rounded to float, floorf, lambda clamped to [0, 1]). */
typedef struct {
    int index[4];
    float weight[4];
} cubic_taps;

static void torch_bicubic_taps(int in_size, int out_size, cubic_taps *taps) {
    const float scale = (float)in_size / (float)out_size;
    for (int i = 0; i < out_size; i++) {
        const float real = (float)((double)scale * ((double)i + 0.5) - 0.5);
        int64_t index = (int64_t)floorf(real);
        if (index > in_size - 1) index = in_size - 1;
        float t = real - (float)index;
        t = t < 0.0f ? 0.0f : t;
        t = t > 1.0f ? 1.0f : t;
        const float t_plus_1 = (float)((double)t + 1.0), one_minus_t = (float)(1.0 - (double)t);
        taps[i].weight[0] = torch_cubic2(t_plus_1);
        taps[i].weight[1] = torch_cubic1(t);
        taps[i].weight[2] = torch_cubic1(one_minus_t);
        taps[i].weight[3] = torch_cubic2((float)((double)one_minus_t + 1.0));
        for (int j = 0; j < 4; j++) {
            int64_t k = index + j - 1;
            k = k < 0 ? 0 : k;
            taps[i].index[j] = (int)(k > in_size - 1 ? in_size - 1 : k);
        }
    }
}

/* The global view: every output is Σ_rows w_row · (Σ_cols w_col · x), each sum left to right in
 * float, as ATen's separable interpolation loop evaluates it. */
static abc_status hd_global_view(const float *planes, int in_w, int in_h, int size, float *out, abc_error *err) {
    cubic_taps *tx = xmalloc((size_t)size * sizeof *tx), *ty = xmalloc((size_t)size * sizeof *ty);
    if (!tx || !ty) {
        free(tx);
        free(ty);
        return fail(err, ABC_ERR_NOMEM, "out of memory for the global view");
    }
    torch_bicubic_taps(in_w, size, tx);
    torch_bicubic_taps(in_h, size, ty);
    const size_t plane = (size_t)in_w * in_h;
    for (int c = 0; c < 3; c++) {
        const float *src = planes + c * plane;
        float *dst = out + (size_t)c * size * size;
        for (int y = 0; y < size; y++) {
            const cubic_taps *vy = &ty[y];
            for (int x = 0; x < size; x++) {
                const cubic_taps *vx = &tx[x];
                float acc = 0.0f;
                for (int j = 0; j < 4; j++) {
                    const float *row = src + (size_t)vy->index[j] * in_w;
                    float t = row[vx->index[0]] * vx->weight[0];
                    t += row[vx->index[1]] * vx->weight[1];
                    t += row[vx->index[2]] * vx->weight[2];
                    t += row[vx->index[3]] * vx->weight[3];
                    acc = j == 0 ? t * vy->weight[0] : acc + t * vy->weight[j];
                }
                dst[(size_t)y * size + x] = acc;
            }
        }
    }
    free(tx);
    free(ty);
    return ABC_OK;
}

/* Crops of crop×crop from the planes, row-major, each [3][crop][crop]. */
static void hd_cut_crops(const float *planes, int w, int h, int crop, float *out) {
    const size_t plane = (size_t)w * h, crop_len = (size_t)crop * crop;
    for (int cy = 0; cy < h / crop; cy++)
        for (int cx = 0; cx < w / crop; cx++)
            for (int c = 0; c < 3; c++) {
                for (int y = 0; y < crop; y++)
                    memcpy(out + (size_t)y * crop, planes + c * plane + (size_t)(cy * crop + y) * w + (size_t)cx * crop,
                           (size_t)crop * sizeof *out);
                out += crop_len;
            }
}

static abc_status preprocess_hd_image(const abc_image *src, const hd_preprocess_config *cfg, abc_image *hd_image,
                                      float **pixel_values, int *h_crop, int *w_crop, abc_error *err) {
    if (pixel_values) *pixel_values = NULL;
    if (hd_image) {
        hd_image->rgb = NULL;
        hd_image->width = hd_image->height = 0;
    }
    if (!src || !cfg || !pixel_values || !h_crop || !w_crop)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: NULL argument");
    if (!src->rgb || src->width <= 0 || src->height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "HD preprocessing: empty image (%dx%d)", src->width, src->height);
    if (src->width > PREPROCESS_MAX_SIDE || src->height > PREPROCESS_MAX_SIDE ||
        (int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d image is too large", src->width,
                    src->height);
    abc_status st = hd_config_check(cfg, err);
    if (st != ABC_OK) return st;
    hd_geometry g;
    st = hd_compute_geometry(src->width, src->height, cfg, &g, err);
    if (st != ABC_OK) return st;

    const int crop = cfg->crop_size, rows = g.out_h / crop, cols = g.out_w / crop;
    const size_t plane = (size_t)g.out_w * g.out_h, slot = 3 * (size_t)crop * crop;
    const size_t n_slots = 1 + (size_t)rows * cols; /* ≤ 1 + num_crops */
    size_t planes_bytes, pv_bytes;
    if (!mul_size(plane, 3 * sizeof(float), &planes_bytes) || !mul_size(n_slots, slot * sizeof(float), &pv_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "HD preprocessing: a %dx%d HD image is too large", g.out_w, g.out_h);
    abc_image hd = {0};
    st = hd_transform(src, &g, &hd, err);
    if (st != ABC_OK) return st;
    float *planes = xmalloc(planes_bytes);
    float *pv = xmalloc_aligned(pv_bytes);
    if (!planes || !pv) {
        free(planes);
        free(pv);
        free(hd.rgb);
        return fail(err, ABC_ERR_NOMEM, "out of memory for %zu image slots", n_slots);
    }
    float table[3][256];
    hd_pixel_value_table(cfg, table);
    hd_normalise(&hd, table, planes);
    st = hd_global_view(planes, g.out_w, g.out_h, crop, pv, err);
    if (st == ABC_OK) hd_cut_crops(planes, g.out_w, g.out_h, crop, pv + slot);
    free(planes);
    if (st != ABC_OK) {
        free(pv);
        free(hd.rgb);
        return st;
    }
    if (hd_image) *hd_image = hd;
    else free(hd.rgb);
    *pixel_values = pv;
    *h_crop = rows;
    *w_crop = cols;
    return ABC_OK;
}
