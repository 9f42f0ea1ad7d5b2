
/* ================================================================================================
 * 6. Preprocessing: smart_resize, Pillow's bicubic resize, pixel values, patches (SPEC 4.2–4.5)
 *
 * Everything here is bit-exact with the Python reference: smart_resize repeats Python's double
 * operations in the same order, the resampler reproduces Pillow's 8-bit fixed-point bicubic
 * (libImaging/Resample.c semantics), and pixel values use the same float32 operations as numpy.
 * ================================================================================================ */

/* Largest image side we accept anywhere in this section: Pillow converts sizes to float, which is
 * exact only up to 2^24, and keeping sides this small makes every int computation below safe. */
#define PREPROCESS_MAX_SIDE (1 << 24)
/* Largest source image we resize (12 GB of RGB); the decoder's own limit is normally far lower. */
#define PREPROCESS_MAX_SOURCE_PIXELS ((int64_t)1 << 32)
/* Upper bound for configured pixel bounds (keeps int64/double arithmetic exact). */
#define PREPROCESS_MAX_CONFIG_PIXELS ((int64_t)1 << 40)
/* qwen_vl_utils' and transformers' MAX_RATIO. */
#define PREPROCESS_MAX_ASPECT_RATIO 200
/* Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the value - 2 for overshoot. */
#define RESAMPLE_PRECISION_BITS 22

/* ---- smart_resize ------------------------------------------------------------------------------ */

/* Python's round() on a float: round half to even, independent of the caller's fenv rounding mode.
 * x - floor(x) is exact for doubles, so the comparison with 0.5 is exact too. */
static double round_half_even(double x) {
    double fl = floor(x);
    double frac = x - fl;
    if (frac > 0.5) return fl + 1.0;
    if (frac < 0.5) return fl;
    return fmod(fl, 2.0) == 0.0 ? fl : fl + 1.0;
}

/* Converts an integral double (a result of floor/ceil/round) to int64 when it is in a sane range. */
static bool integral_to_i64(double x, int64_t *out) {
    if (!(x >= -9.0e15 && x <= 9.0e15)) return false; /* also rejects NaN */
    *out = (int64_t)x;
    return true;
}

static abc_status smart_resize_check_input(int64_t height, int64_t width, int64_t factor,
                                           int64_t min_pixels, int64_t max_pixels, abc_error *err) {
    if (height <= 0 || width <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: image size %lldx%lld is empty",
                    (long long)width, (long long)height);
    if (height > PREPROCESS_MAX_SIDE || width > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_TOO_LARGE, "smart_resize: image size %lldx%lld exceeds %d per side",
                    (long long)width, (long long)height, PREPROCESS_MAX_SIDE);
    if (factor <= 0 || factor > 65536)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: bad factor %lld", (long long)factor);
    if (min_pixels < 0 || max_pixels <= 0 || min_pixels > max_pixels ||
        max_pixels > PREPROCESS_MAX_CONFIG_PIXELS)
        return fail(err, ABC_ERR_INVALID_ARG, "smart_resize: bad pixel bounds [%lld, %lld]",
                    (long long)min_pixels, (long long)max_pixels);
    /* Python: max(h, w) / min(h, w) > MAX_RATIO, a true (double) division of ints. */
    double ratio = (double)MAX(height, width) / (double)MIN(height, width);
    if (ratio > PREPROCESS_MAX_ASPECT_RATIO)
        return fail(err, ABC_ERR_UNSUPPORTED,
                    "image aspect ratio of %lldx%lld is %.1f, more than the %d the model accepts",
                    (long long)width, (long long)height, ratio, PREPROCESS_MAX_ASPECT_RATIO);
    return ABC_OK;
}

/* The result must be a usable image size: positive and within the side limit. */
static abc_status smart_resize_check_output(int64_t height, int64_t width, int64_t out_h,
                                            int64_t out_w, abc_error *err) {
    if (out_h <= 0 || out_w <= 0)
        return fail(err, ABC_ERR_UNSUPPORTED, "smart_resize: image %lldx%lld would shrink to %lldx%lld",
                    (long long)width, (long long)height, (long long)out_w, (long long)out_h);
    if (out_h > PREPROCESS_MAX_SIDE || out_w > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_TOO_LARGE, "smart_resize: image %lldx%lld would grow to %lldx%lld",
                    (long long)width, (long long)height, (long long)out_w, (long long)out_h);
    return ABC_OK;
}

/* transformers' Qwen2-VL smart_resize (vlm2vec, and stage 2 of abc). Same double operations in the
 * same order as the Python source; ints stay ints where Python's do. */
static abc_status smart_resize_transformers(int64_t height, int64_t width, int64_t factor,
                                            int64_t min_pixels, int64_t max_pixels, int64_t *out_h,
                                            int64_t *out_w, abc_error *err) {
    abc_status st = smart_resize_check_input(height, width, factor, min_pixels, max_pixels, err);
    if (st != ABC_OK) return st;
    const double h = (double)height, w = (double)width, f = (double)factor;
    int64_t h_bar = 0, w_bar = 0;
    bool ok = integral_to_i64(round_half_even(h / f), &h_bar) &&
              integral_to_i64(round_half_even(w / f), &w_bar);
    h_bar *= factor;
    w_bar *= factor;
    if (ok && h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)(height * width) / (double)max_pixels);
        ok = integral_to_i64(floor(h / beta / f), &h_bar) && integral_to_i64(floor(w / beta / f), &w_bar);
        h_bar = MAX(factor, h_bar * factor);
        w_bar = MAX(factor, w_bar * factor);
    } else if (ok && h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)(height * width));
        ok = integral_to_i64(ceil(h * beta / f), &h_bar) && integral_to_i64(ceil(w * beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    }
    if (!ok) return fail(err, ABC_ERR_INTERNAL, "smart_resize: arithmetic out of range");
    st = smart_resize_check_output(height, width, h_bar, w_bar, err);
    if (st != ABC_OK) return st;
    *out_h = h_bar;
    *out_w = w_bar;
    return ABC_OK;
}

/* qwen_vl_utils' smart_resize (stage 1 of abc): max(factor, ·) on the rounded size, none when
 * shrinking. */
static abc_status smart_resize_qwen_vl_utils(int64_t height, int64_t width, int64_t factor,
                                             int64_t min_pixels, int64_t max_pixels, int64_t *out_h,
                                             int64_t *out_w, abc_error *err) {
    abc_status st = smart_resize_check_input(height, width, factor, min_pixels, max_pixels, err);
    if (st != ABC_OK) return st;
    const double h = (double)height, w = (double)width, f = (double)factor;
    int64_t h_bar = 0, w_bar = 0;
    bool ok = integral_to_i64(round_half_even(h / f), &h_bar) &&
              integral_to_i64(round_half_even(w / f), &w_bar);
    h_bar = MAX(factor, h_bar * factor);
    w_bar = MAX(factor, w_bar * factor);
    if (ok && h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)(height * width) / (double)max_pixels);
        ok = integral_to_i64(floor(h / beta / f), &h_bar) && integral_to_i64(floor(w / beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    } else if (ok && h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)(height * width));
        ok = integral_to_i64(ceil(h * beta / f), &h_bar) && integral_to_i64(ceil(w * beta / f), &w_bar);
        h_bar *= factor;
        w_bar *= factor;
    }
    if (!ok) return fail(err, ABC_ERR_INTERNAL, "smart_resize: arithmetic out of range");
    st = smart_resize_check_output(height, width, h_bar, w_bar, err);
    if (st != ABC_OK) return st;
    *out_h = h_bar;
    *out_w = w_bar;
    return ABC_OK;
}

/* ---- Pillow resampling on 8-bit RGB (bicubic for Qwen2-VL, bilinear for Phi-3.5-V) ------------- */

/* Keys' cubic convolution kernel with a = -0.5 (Pillow's BICUBIC, support 2), written with the same
 * operations as Pillow so the doubles agree bit for bit. */
static double bicubic_kernel(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* The triangle kernel (Pillow's BILINEAR, support 1). */
static double bilinear_kernel(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* A Pillow resampling filter: the kernel and its support at scale 1 (Pillow's struct filter). */
typedef struct {
    double (*kernel)(double x);
    double support;
} resample_filter;

static const resample_filter RESAMPLE_BICUBIC = {bicubic_kernel, 2.0};
static const resample_filter RESAMPLE_BILINEAR = {bilinear_kernel, 1.0};

/* The taps of a 1-D resampling from in_size to out_size: output i reads inputs
 * first[i] .. first[i] + count[i] - 1 with fixed-point weights coeffs[i·ksize ..]. */
typedef struct {
    int out_size, ksize;
    int *first, *count;
    int32_t *coeffs;
} resample_taps;

static void resample_taps_free(resample_taps *t) {
    free(t->first);
    free(t->count);
    free(t->coeffs);
    memset(t, 0, sizeof *t);
}

/* Pillow's rounding of a normalised weight to 22-bit fixed point: half away from zero. */
static int32_t weight_to_fixed(double w) {
    double scaled = w * (double)(1 << RESAMPLE_PRECISION_BITS);
    return (int32_t)(w < 0 ? scaled - 0.5 : scaled + 0.5);
}

/* Pillow's precompute_coeffs + normalize_coeffs_8bpc for the full-image box (0, in_size). */
static abc_status resample_taps_init(resample_taps *t, int in_size, int out_size,
                                     const resample_filter *filter, abc_error *err) {
    memset(t, 0, sizeof *t);
    if (in_size <= 0 || out_size <= 0 || in_size > PREPROCESS_MAX_SIDE || out_size > PREPROCESS_MAX_SIDE)
        return fail(err, ABC_ERR_INTERNAL, "resample: bad sizes %d -> %d", in_size, out_size);
    /* Pillow takes the box edges as float: (double)(in1 - in0), exact below 2^24. */
    const double scale = (double)(float)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = filter->support * filterscale;
    const double inv_filterscale = 1.0 / filterscale;
    const double ksize_d = ceil(support) * 2 + 1;
    if (ksize_d > 4.0 * in_size + 5.0 || ksize_d > INT_MAX / 2) /* support <= 2·in_size */
        return fail(err, ABC_ERR_INTERNAL, "resample: kernel too wide");
    const int ksize = (int)ksize_d;
    size_t n_coeffs;
    if (!mul_size((size_t)out_size, (size_t)ksize, &n_coeffs) || n_coeffs > SIZE_MAX / sizeof(int32_t))
        return fail(err, ABC_ERR_TOO_LARGE, "resample: %d -> %d needs too many coefficients", in_size,
                    out_size);
    t->out_size = out_size;
    t->ksize = ksize;
    t->first = xmalloc((size_t)out_size * sizeof *t->first);
    t->count = xmalloc((size_t)out_size * sizeof *t->count);
    t->coeffs = xmalloc(n_coeffs * sizeof *t->coeffs);
    double *w = xmalloc((size_t)ksize * sizeof *w);
    if (!t->first || !t->count || !t->coeffs || !w) {
        free(w);
        resample_taps_free(t);
        return fail(err, ABC_ERR_NOMEM, "out of memory for resampling coefficients (%d -> %d)",
                    in_size, out_size);
    }
    for (int i = 0; i < out_size; i++) {
        const double center = (i + 0.5) * scale;
        int lo = (int)(center - support + 0.5); /* truncation, as Pillow's (int) cast */
        int hi = (int)(center + support + 0.5);
        if (lo < 0) lo = 0;
        if (hi > in_size) hi = in_size;
        const int n = hi - lo;
        if (n < 1 || n > ksize) { /* cannot happen (n <= 2·support + 1); keeps writes in bounds */
            free(w);
            resample_taps_free(t);
            return fail(err, ABC_ERR_INTERNAL, "resample: bad tap range at %d", i);
        }
        double sum = 0.0;
        for (int j = 0; j < n; j++) {
            w[j] = filter->kernel(((double)(j + lo) - center + 0.5) * inv_filterscale);
            sum += w[j];
        }
        int32_t *k = t->coeffs + (size_t)i * ksize;
        for (int j = 0; j < n; j++) k[j] = weight_to_fixed(sum != 0.0 ? w[j] / sum : w[j]);
        for (int j = n; j < ksize; j++) k[j] = 0;
        t->first[i] = lo;
        t->count[i] = n;
    }
    free(w);
    return ABC_OK;
}

/* Fixed-point accumulator -> 8 bits: Pillow's clip8 (floor division by 2^22, clamped to 0..255),
 * branch-free so that loops over it vectorise. */
static inline uint8_t fixed_to_u8(int32_t acc) {
    int32_t v = MAX(acc, 0) >> RESAMPLE_PRECISION_BITS;
    return (uint8_t)MIN(v, 255);
}

/* Horizontal pass: rows [row0, row0 + n_rows) of `src` (src_w wide) into `dst` (taps.out_size wide,
 * n_rows high), 8-bit clipped as Pillow's intermediate image is. */
static void resample_rows_horizontal(const uint8_t *src, int src_w, int row0, int n_rows,
                                     const resample_taps *taps, uint8_t *dst) {
    const int out_w = taps->out_size, ksize = taps->ksize;
    const int32_t half = 1 << (RESAMPLE_PRECISION_BITS - 1);
    for (int y = 0; y < n_rows; y++) {
        const uint8_t *in = src + (size_t)(row0 + y) * src_w * 3;
        uint8_t *out = dst + (size_t)y * out_w * 3;
        const int32_t *k = taps->coeffs;
        for (int x = 0; x < out_w; x++, k += ksize, out += 3) {
            const uint8_t *p = in + (size_t)taps->first[x] * 3;
            const int n = taps->count[x];
            int32_t r = half, g = half, b = half;
            for (int j = 0; j < n; j++, p += 3) {
                const int32_t kj = k[j];
                r += p[0] * kj;
                g += p[1] * kj;
                b += p[2] * kj;
            }
            out[0] = fixed_to_u8(r);
            out[1] = fixed_to_u8(g);
            out[2] = fixed_to_u8(b);
        }
    }
}

/* Vertical pass: each output row is a weighted sum of whole input rows. Accumulating tap by tap over
 * fixed-size column blocks keeps the accumulators in L1 and gives the compiler constant-trip loops it
 * vectorises even at -O2. `row_shift` maps tap rows into `src`. */
#define RESAMPLE_BLOCK 64
static void resample_rows_vertical(const uint8_t *src, int width, int row_shift,
                                   const resample_taps *taps, uint8_t *dst) {
    const size_t row_bytes = (size_t)width * 3;
    const int32_t half = 1 << (RESAMPLE_PRECISION_BITS - 1);
    for (int y = 0; y < taps->out_size; y++) {
        const int32_t *k = taps->coeffs + (size_t)y * taps->ksize;
        const uint8_t *in = src + (size_t)(taps->first[y] - row_shift) * row_bytes;
        const int n = taps->count[y];
        uint8_t *out = dst + (size_t)y * row_bytes;
        size_t i0 = 0;
        for (; i0 + RESAMPLE_BLOCK <= row_bytes; i0 += RESAMPLE_BLOCK) {
            int32_t acc[RESAMPLE_BLOCK];
            for (int i = 0; i < RESAMPLE_BLOCK; i++) acc[i] = half;
            for (int j = 0; j < n; j++) {
                const uint8_t *row = in + (size_t)j * row_bytes + i0;
                const int32_t kj = k[j];
                for (int i = 0; i < RESAMPLE_BLOCK; i++) acc[i] += row[i] * kj;
            }
            for (int i = 0; i < RESAMPLE_BLOCK; i++) out[i0 + i] = fixed_to_u8(acc[i]);
        }
        for (size_t i = i0; i < row_bytes; i++) { /* the last partial block */
            int32_t acc = half;
            for (int j = 0; j < n; j++) acc += in[(size_t)j * row_bytes + i] * k[j];
            out[i] = fixed_to_u8(acc);
        }
    }
}

/* Resizes 8-bit RGB `src` to out_w × out_h exactly as Pillow's Image.resize(size, filter) with the
 * default box: a plain copy when the size is unchanged; otherwise a horizontal pass (only when the
 * width changes, over only the rows the vertical pass reads) into an 8-bit intermediate, then a
 * vertical pass (only when the height changes). out->rgb is allocated; the caller frees it. */
static abc_status resize_rgb8(const abc_image *src, int out_w, int out_h, const resample_filter *filter,
                              abc_image *out, abc_error *err) {
    if (!src || !out || !src->rgb)
        return fail(err, ABC_ERR_INVALID_ARG, "resize: NULL image");
    out->rgb = NULL;
    out->width = out->height = 0;
    if (src->width <= 0 || src->height <= 0 || out_w <= 0 || out_h <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "resize: empty size (%dx%d -> %dx%d)", src->width,
                    src->height, out_w, out_h);
    if (src->width > PREPROCESS_MAX_SIDE || src->height > PREPROCESS_MAX_SIDE ||
        out_w > PREPROCESS_MAX_SIDE || out_h > PREPROCESS_MAX_SIDE ||
        (int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS ||
        (int64_t)out_w * out_h > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "resize: %dx%d -> %dx%d is too large", src->width,
                    src->height, out_w, out_h);
    size_t out_bytes, src_bytes;
    if (!mul_size((size_t)out_w * 3, (size_t)out_h, &out_bytes) ||
        !mul_size((size_t)src->width * 3, (size_t)src->height, &src_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "resize: %dx%d -> %dx%d is too large", src->width,
                    src->height, out_w, out_h);
    uint8_t *dst = xmalloc(out_bytes);
    if (!dst) return fail(err, ABC_ERR_NOMEM, "out of memory for a %dx%d image", out_w, out_h);

    const bool need_horizontal = out_w != src->width;
    const bool need_vertical = out_h != src->height;
    if (!need_horizontal && !need_vertical) {
        memcpy(dst, src->rgb, out_bytes);
        out->rgb = dst;
        out->width = out_w;
        out->height = out_h;
        return ABC_OK;
    }

    abc_status st = ABC_OK;
    resample_taps htaps = {0}, vtaps = {0};
    uint8_t *tmp = NULL;
    const uint8_t *vsrc = src->rgb; /* what the vertical pass reads */
    int row0 = 0;                   /* first source row the vertical pass reads */
    if (need_vertical) {
        st = resample_taps_init(&vtaps, src->height, out_h, filter, err);
        if (st != ABC_OK) goto done;
        row0 = vtaps.first[0];
    }
    if (need_horizontal) {
        int row_end = src->height;
        if (need_vertical) row_end = vtaps.first[out_h - 1] + vtaps.count[out_h - 1];
        st = resample_taps_init(&htaps, src->width, out_w, filter, err);
        if (st != ABC_OK) goto done;
        if (need_vertical) {
            tmp = xmalloc((size_t)out_w * 3 * (size_t)(row_end - row0));
            if (!tmp) {
                st = fail(err, ABC_ERR_NOMEM, "out of memory for resampling %dx%d", out_w, row_end - row0);
                goto done;
            }
            resample_rows_horizontal(src->rgb, src->width, row0, row_end - row0, &htaps, tmp);
            vsrc = tmp;
        } else {
            resample_rows_horizontal(src->rgb, src->width, 0, out_h, &htaps, dst);
        }
    }
    if (need_vertical) resample_rows_vertical(vsrc, out_w, need_horizontal ? row0 : 0, &vtaps, dst);
done:
    resample_taps_free(&htaps);
    resample_taps_free(&vtaps);
    free(tmp);
    if (st != ABC_OK) {
        free(dst);
        return st;
    }
    out->rgb = dst;
    out->width = out_w;
    out->height = out_h;
    return ABC_OK;
}

/* Pillow's Image.resize(size, BICUBIC), the Qwen2-VL presets' resampler. */
static abc_status resize_bicubic_rgb8(const abc_image *src, int out_w, int out_h, abc_image *out,
                                      abc_error *err) {
    return resize_rgb8(src, out_w, out_h, &RESAMPLE_BICUBIC, out, err);
}

/* ---- the preset pipeline -------------------------------------------------------------------------- */

static abc_status preprocess_config_check(const preprocess_config *cfg, abc_error *err) {
    if (cfg->patch_size < 1 || cfg->patch_size > 1024 || cfg->merge_size < 1 || cfg->merge_size > 64 ||
        cfg->temporal_patch_size < 1 || cfg->temporal_patch_size > 64)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: bad patch geometry (patch %d, merge %d, temporal %d)",
                    cfg->patch_size, cfg->merge_size, cfg->temporal_patch_size);
    if (cfg->factor < 1 || cfg->factor % (cfg->patch_size * cfg->merge_size) != 0)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: factor %d is not a multiple of patch·merge %d",
                    cfg->factor, cfg->patch_size * cfg->merge_size);
    for (int c = 0; c < 3; c++)
        if (!isfinite(cfg->mean[c]) || !isfinite(cfg->std[c]) || cfg->std[c] == 0.0f)
            return fail(err, ABC_ERR_INVALID_ARG, "preprocess: bad mean/std for channel %d", c);
    return ABC_OK;
}

/* The size entering the final resize (stage 1's result for abc, the input itself for vlm2vec) and
 * the final size, as width and height. */
static abc_status preprocess_target_size(const preprocess_config *cfg, int width, int height,
                                         int stage1[2], int final_size[2], abc_error *err) {
    int64_t h1 = height, w1 = width, h2 = 0, w2 = 0;
    abc_status st;
    if (cfg->two_stage) {
        st = smart_resize_qwen_vl_utils(height, width, cfg->factor, cfg->stage1_min_pixels,
                                        cfg->stage1_max_pixels, &h1, &w1, err);
        if (st != ABC_OK) return st;
    }
    st = smart_resize_transformers(h1, w1, cfg->factor, cfg->min_pixels, cfg->max_pixels, &h2, &w2, err);
    if (st != ABC_OK) return st;
    stage1[0] = (int)w1;
    stage1[1] = (int)h1;
    final_size[0] = (int)w2;
    final_size[1] = (int)h2;
    return ABC_OK;
}

/* Normalised value of every (channel, byte): (float)((double)x · (1/255)), then (v − mean) / std in
 * float32 — the same roundings as the numpy reference, so a lookup replaces the arithmetic. */
static void pixel_value_table(const preprocess_config *cfg, float table[3][256]) {
    for (int c = 0; c < 3; c++) {
        for (int x = 0; x < 256; x++) {
            float v = (float)((double)x * (1.0 / 255.0));
            float centred = v - cfg->mean[c];
            table[c][x] = centred / cfg->std[c];
        }
    }
}

/* Patch matrix of SPEC 4.5: patches ordered by merge group (group row, group column, row and column
 * inside the group), each a [channel][frame][y][x] vector; the frames repeat the image. */
static void build_patches(const abc_image *img, const preprocess_config *cfg, float *pv) {
    float table[3][256];
    pixel_value_table(cfg, table);
    const int P = cfg->patch_size, M = cfg->merge_size, T = cfg->temporal_patch_size;
    const int grid_h = img->height / P, grid_w = img->width / P;
    const size_t frame_len = (size_t)P * P, patch_len = 3 * (size_t)T * frame_len;
    float *out = pv;
    for (int gy = 0; gy < grid_h / M; gy++) {
        for (int gx = 0; gx < grid_w / M; gx++) {
            for (int my = 0; my < M; my++) {
                for (int mx = 0; mx < M; mx++) {
                    const int y0 = (gy * M + my) * P, x0 = (gx * M + mx) * P;
                    for (int c = 0; c < 3; c++) {
                        float *frame0 = out + (size_t)c * T * frame_len;
                        for (int py = 0; py < P; py++) {
                            const uint8_t *row = img->rgb + ((size_t)(y0 + py) * img->width + x0) * 3 + c;
                            for (int px = 0; px < P; px++) frame0[py * P + px] = table[c][row[3 * px]];
                        }
                        for (int t = 1; t < T; t++)
                            memcpy(frame0 + t * frame_len, frame0, frame_len * sizeof *frame0);
                    }
                    out += patch_len;
                }
            }
        }
    }
}

static abc_status preprocess_image(const abc_image *src, const preprocess_config *cfg,
                                   abc_image *resized, float **pixel_values, int64_t *n_patches,
                                   int grid_thw[3], abc_error *err) {
    if (pixel_values) *pixel_values = NULL;
    if (resized) {
        resized->rgb = NULL;
        resized->width = resized->height = 0;
    }
    if (!src || !cfg || !pixel_values || !n_patches || !grid_thw)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: NULL argument");
    if (!src->rgb || src->width <= 0 || src->height <= 0)
        return fail(err, ABC_ERR_INVALID_ARG, "preprocess: empty image (%dx%d)", src->width, src->height);
    if ((int64_t)src->width * src->height > PREPROCESS_MAX_SOURCE_PIXELS)
        return fail(err, ABC_ERR_TOO_LARGE, "preprocess: a %dx%d image is too large", src->width,
                    src->height);
    abc_status st = preprocess_config_check(cfg, err);
    if (st != ABC_OK) return st;
    int stage1[2], final_size[2];
    st = preprocess_target_size(cfg, src->width, src->height, stage1, final_size, err);
    if (st != ABC_OK) return st;

    const int unit = cfg->patch_size * cfg->merge_size;
    if (final_size[0] % unit != 0 || final_size[1] % unit != 0)
        return fail(err, ABC_ERR_INTERNAL, "preprocess: %dx%d is not a multiple of %d", final_size[0],
                    final_size[1], unit);
    const int64_t grid_h = final_size[1] / cfg->patch_size, grid_w = final_size[0] / cfg->patch_size;
    const int64_t patches = grid_h * grid_w;
    size_t patch_len = 3 * (size_t)cfg->temporal_patch_size * (size_t)cfg->patch_size * cfg->patch_size;
    size_t n_floats, n_bytes;
    if (!mul_size((size_t)patches, patch_len, &n_floats) || !mul_size(n_floats, sizeof(float), &n_bytes))
        return fail(err, ABC_ERR_TOO_LARGE, "preprocess: %lld patches are too many", (long long)patches);

    /* Resize: stage 1 (abc only) then the final stage; each skips when the size is unchanged. */
    abc_image stage1_img = {0}, final_img = {0};
    const abc_image *cur = src;
    if (cfg->two_stage && (stage1[0] != src->width || stage1[1] != src->height)) {
        st = resize_bicubic_rgb8(src, stage1[0], stage1[1], &stage1_img, err);
        if (st != ABC_OK) return st;
        cur = &stage1_img;
    }
    st = resize_bicubic_rgb8(cur, final_size[0], final_size[1], &final_img, err);
    free(stage1_img.rgb);
    if (st != ABC_OK) return st;

    float *pv = xmalloc_aligned(n_bytes);
    if (!pv) {
        free(final_img.rgb);
        return fail(err, ABC_ERR_NOMEM, "out of memory for %lld image patches", (long long)patches);
    }
    build_patches(&final_img, cfg, pv);

    if (resized) *resized = final_img;
    else free(final_img.rgb);
    *pixel_values = pv;
    *n_patches = patches;
    grid_thw[0] = 1;
    grid_thw[1] = (int)grid_h;
    grid_thw[2] = (int)grid_w;
    return ABC_OK;
}
