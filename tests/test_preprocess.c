/* Tests for section 6 (preprocessing): smart_resize, Pillow bicubic resampling, pixel values and patch
 * order, against tables generated from the Python reference (see tests/gen_*.py):
 *   tests/fixtures/preprocess/image_cases.txt        every image_cases.json entry × preset
 *   tests/fixtures/preprocess/resize_cases.txt       Pillow's resize of regenerable synthetic images
 *   tests/fixtures/preprocess/smart_resize_cases.txt both smart_resize variants, edge cases
 * Inputs are the decoded PNGs in tests/fixtures/images/. */
#include "../abc.c"
#include "test.h"
#include "sha256.h"


#define FIXTURE_DIR "tests/fixtures/preprocess/"
#define IMAGE_DIR "tests/fixtures/images/"

static const float CLIP_MEAN[3] = {0.48145466f, 0.4578275f, 0.40821073f};
static const float CLIP_STD[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static preprocess_config preset_config(bool abc) {
    preprocess_config cfg = {0};
    cfg.factor = 28;
    cfg.two_stage = abc;
    cfg.min_pixels = abc ? 200704 : 3136;
    cfg.max_pixels = abc ? 802816 : 12845056;
    cfg.stage1_min_pixels = 3136;
    cfg.stage1_max_pixels = 12845056;
    memcpy(cfg.mean, CLIP_MEAN, sizeof cfg.mean);
    memcpy(cfg.std, CLIP_STD, sizeof cfg.std);
    cfg.patch_size = 14;
    cfg.temporal_patch_size = 2;
    cfg.merge_size = 2;
    return cfg;
}

/* ---- 1. every image_cases.json entry ------------------------------------------------------------- */

static void check_image_case(const char *line) {
    char name[256], preset[64], rsha[65], psha[65];
    int two_stage, in_w, in_h, s1w, s1h, gt, gh, gw, rw, rh;
    long long min_px, max_px;
    if (sscanf(line, "%255s %63s %d %lld %lld %d %d %d %d %d %d %d %d %d %64s %64s", name, preset, &two_stage,
               &min_px, &max_px, &in_w, &in_h, &s1w, &s1h, &gt, &gh, &gw, &rw, &rh, rsha, psha) != 16) {
        CHECK(0, "bad line in image_cases.txt: %s", line);
        return;
    }
    bool abc = strcmp(preset, "abc") == 0;
    preprocess_config cfg = preset_config(abc);
    CHECK(cfg.two_stage == (bool)two_stage && cfg.min_pixels == min_px && cfg.max_pixels == max_px,
          "%s %s: preset bounds differ from the fixture's", name, preset);

    char path[512];
    snprintf(path, sizeof path, IMAGE_DIR "%s", name);
    size_t size;
    uint8_t *png = (uint8_t *)test_read_file(path, &size);
    CHECK(png != NULL, "cannot read %s", path);
    if (!png) return;
    abc_error err = {0};
    abc_image img = {0};
    abc_status st = image_decode(png, size, 0, &img, &err);
    free(png);
    CHECK(st == ABC_OK, "%s: decode failed: %s", name, err.message);
    if (st != ABC_OK) return;
    CHECK(img.width == in_w && img.height == in_h, "%s: decoded %dx%d, expected %dx%d", name, img.width,
          img.height, in_w, in_h);

    int stage1[2], final_size[2];
    st = preprocess_target_size(&cfg, img.width, img.height, stage1, final_size, &err);
    CHECK(st == ABC_OK, "%s %s: %s", name, preset, err.message);
    CHECK(stage1[0] == s1w && stage1[1] == s1h, "%s %s: stage 1 %dx%d, expected %dx%d", name, preset,
          stage1[0], stage1[1], s1w, s1h);
    CHECK(final_size[0] == rw && final_size[1] == rh, "%s %s: final %dx%d, expected %dx%d", name, preset,
          final_size[0], final_size[1], rw, rh);

    abc_image resized = {0};
    float *pv = NULL;
    int64_t n_patches = 0;
    int grid[3] = {0};
    st = preprocess_image(&img, &cfg, &resized, &pv, &n_patches, grid, &err);
    CHECK(st == ABC_OK, "%s %s: preprocess failed: %s", name, preset, err.message);
    if (st == ABC_OK) {
        char hex[65];
        CHECK(resized.width == rw && resized.height == rh, "%s %s: resized %dx%d", name, preset,
              resized.width, resized.height);
        sha256_hex(resized.rgb, (size_t)resized.width * resized.height * 3, hex);
        CHECK(strcmp(hex, rsha) == 0, "%s %s: resized image differs from the reference", name, preset);
        CHECK(grid[0] == gt && grid[1] == gh && grid[2] == gw, "%s %s: grid %d,%d,%d", name, preset,
              grid[0], grid[1], grid[2]);
        CHECK(n_patches == (int64_t)gt * gh * gw, "%s %s: %lld patches", name, preset, (long long)n_patches);
        size_t n_floats = (size_t)n_patches * 1176;
        sha256_hex(pv, n_floats * sizeof(float), hex);
        /* The SHA-256 pins every byte of the reference array, so the full arrays need not be stored here
         * (the one full reference array the generator had, coffee.png under abc, hashes to its line's value). */
        CHECK(strcmp(hex, psha) == 0, "%s %s: pixel_values SHA-256 %s, expected %s", name, preset, hex, psha);
    }
    free(resized.rgb);
    free(pv);
    free(img.rgb);
}

static void test_image_cases(void) {
    char **lines;
    int n = test_read_lines(FIXTURE_DIR "image_cases.txt", &lines);
    CHECK(n >= 16, "image_cases.txt: %d cases", n);
    for (int i = 0; i < n; i++) check_image_case(lines[i]);
    test_free_lines(lines, n);
}

/* ---- 2. the resampler against Pillow ------------------------------------------------------------- */

static uint64_t splitmix64_mix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The synthetic image of tests/gen_resize_cases.py. */
static uint8_t *synthetic_image(uint64_t seed, int pattern, int w, int h) {
    size_t n = (size_t)w * h * 3;
    uint8_t *b = malloc(n);
    for (size_t i = 0; i < n; i++) {
        uint64_t z = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15ull);
        size_t pix = i / 3, x = pix % (size_t)w, y = pix / (size_t)w, c = i % 3;
        if (pattern == 0) b[i] = (uint8_t)(z >> 56);
        else if (pattern == 1) b[i] = (uint8_t)((3 * x + 5 * y + 40 * c + (z >> 62)) % 256);
        else b[i] = (z >> 63) ? 255 : 0;
    }
    return b;
}

static void test_resize_vs_pillow(void) {
    char **lines;
    int n = test_read_lines(FIXTURE_DIR "resize_cases.txt", &lines), bad = 0;
    CHECK(n >= 500, "resize_cases.txt: %d cases", n);
    for (int i = 0; i < n; i++) {
        unsigned long long seed;
        int pattern, in_w, in_h, out_w, out_h;
        char want[17];
        if (sscanf(lines[i], "%llu %d %d %d %d %d %16s", &seed, &pattern, &in_w, &in_h, &out_w, &out_h,
                   want) != 7) {
            CHECK(0, "bad line: %s", lines[i]);
            continue;
        }
        abc_image src = {in_w, in_h, synthetic_image(seed, pattern, in_w, in_h)}, dst = {0};
        abc_error err = {0};
        abc_status st = resize_bicubic_rgb8(&src, out_w, out_h, &dst, &err);
        CHECK(st == ABC_OK, "%dx%d -> %dx%d: %s", in_w, in_h, out_w, out_h, err.message);
        if (st == ABC_OK) {
            char hex[65];
            sha256_hex(dst.rgb, (size_t)out_w * out_h * 3, hex);
            hex[16] = 0;
            if (strcmp(hex, want) != 0 && bad++ < 10)
                CHECK(0, "case %d (seed %llu pattern %d) %dx%d -> %dx%d differs from Pillow", i, seed,
                      pattern, in_w, in_h, out_w, out_h);
            CHECK(dst.width == out_w && dst.height == out_h, "output size");
        }
        free(dst.rgb);
        free(src.rgb);
    }
    CHECK(bad == 0, "%d of %d resizes differ from Pillow", bad, n);
    test_free_lines(lines, n);
}

/* ---- 3. smart_resize against the Python formulas ------------------------------------------------- */

static void test_smart_resize_table(void) {
    char **lines;
    int n = test_read_lines(FIXTURE_DIR "smart_resize_cases.txt", &lines), bad = 0, errors = 0;
    CHECK(n >= 5000, "smart_resize_cases.txt: %d cases", n);
    for (int i = 0; i < n; i++) {
        char variant[8], r1[32], r2[32] = "";
        long long h, w, f, mn, mx;
        int got = sscanf(lines[i], "%7s %lld %lld %lld %lld %lld %31s %31s", variant, &h, &w, &f, &mn, &mx, r1, r2);
        if (got < 7) {
            CHECK(0, "bad line: %s", lines[i]);
            continue;
        }
        int64_t oh = -1, ow = -1;
        abc_error err = {0};
        abc_status st = strcmp(variant, "tf") == 0
                            ? smart_resize_transformers(h, w, f, mn, mx, &oh, &ow, &err)
                            : smart_resize_qwen_vl_utils(h, w, f, mn, mx, &oh, &ow, &err);
        bool ok;
        if (strcmp(r1, "ratio") == 0 || strcmp(r1, "empty") == 0) {
            ok = st == ABC_ERR_UNSUPPORTED && err.message[0];
            errors++;
        } else {
            ok = st == ABC_OK && oh == atoll(r1) && ow == atoll(r2);
        }
        if (!ok && bad++ < 10)
            CHECK(0, "%s: got status %d (%s) %lldx%lld", lines[i], st, err.message, (long long)oh, (long long)ow);
    }
    CHECK(bad == 0, "%d of %d smart_resize cases differ", bad, n);
    CHECK(errors > 100 && errors < n / 2, "%d error cases", errors);
    test_free_lines(lines, n);
}

/* Round-half-even on the exact .5 cases Python's round() meets. */
static void test_round_half_even(void) {
    CHECK(round_half_even(0.5) == 0.0, "0.5");
    CHECK(round_half_even(1.5) == 2.0, "1.5");
    CHECK(round_half_even(2.5) == 2.0, "2.5");
    CHECK(round_half_even(3.5) == 4.0, "3.5");
    CHECK(round_half_even(2.4999999999999996) == 2.0, "below 2.5");
    CHECK(round_half_even(2.5000000000000004) == 3.0, "above 2.5");
    CHECK(round_half_even(1e15 + 0.5) == 1e15, "large even");
    CHECK(round_half_even(0.0) == 0.0 && round_half_even(7.0) == 7.0, "integers");
}

/* ---- patch layout against a direct transcription of docs/image-pipeline.md#patches ------------------- */

static void test_patch_layout(void) {
    const int w = 84, h = 56; /* multiples of 28 within vlm2vec's bounds: no resize */
    abc_image img = {w, h, synthetic_image(7, 0, w, h)}, resized = {0};
    preprocess_config cfg = preset_config(false);
    float *pv = NULL;
    int64_t n = 0;
    int grid[3];
    abc_error err;
    abc_status st = preprocess_image(&img, &cfg, &resized, &pv, &n, grid, &err);
    CHECK(st == ABC_OK, "%s", err.message);
    if (st == ABC_OK) {
        CHECK(resized.width == w && resized.height == h && memcmp(resized.rgb, img.rgb, (size_t)w * h * 3) == 0,
              "a 28-multiple image within bounds must not be resampled");
        CHECK(n == 24 && grid[0] == 1 && grid[1] == 4 && grid[2] == 6, "grid %d %d %d", grid[0], grid[1], grid[2]);
        int mismatches = 0;
        for (int Y = 0; Y < 2; Y++)
            for (int X = 0; X < 3; X++)
                for (int my = 0; my < 2; my++)
                    for (int mx = 0; mx < 2; mx++) {
                        int patch = ((Y * 3 + X) * 2 + my) * 2 + mx;
                        for (int c = 0; c < 3; c++)
                            for (int t = 0; t < 2; t++)
                                for (int py = 0; py < 14; py++)
                                    for (int px = 0; px < 14; px++) {
                                        int y = (Y * 2 + my) * 14 + py, x = (X * 2 + mx) * 14 + px;
                                        uint8_t byte = img.rgb[((size_t)y * w + x) * 3 + c];
                                        float v = (float)((double)byte * (1.0 / 255.0));
                                        float want = (v - CLIP_MEAN[c]) / CLIP_STD[c];
                                        float got = pv[(size_t)patch * 1176 + ((c * 2 + t) * 14 + py) * 14 + px];
                                        if (memcmp(&got, &want, sizeof got) != 0) mismatches++;
                                    }
                    }
        CHECK(mismatches == 0, "%d values out of place", mismatches);
    }
    free(pv);
    free(resized.rgb);
    free(img.rgb);
}

/* Resizes that Pillow skips: same size copies; resized == NULL is allowed. */
static void test_resize_identity_and_null_resized(void) {
    abc_image img = {30, 20, synthetic_image(3, 1, 30, 20)}, out = {0};
    abc_error err;
    CHECK(resize_bicubic_rgb8(&img, 30, 20, &out, &err) == ABC_OK, "%s", err.message);
    CHECK(out.rgb && out.rgb != img.rgb && memcmp(out.rgb, img.rgb, 30 * 20 * 3) == 0, "copy");
    free(out.rgb);
    preprocess_config cfg = preset_config(true);
    float *pv = NULL;
    int64_t n = 0;
    int grid[3];
    CHECK(preprocess_image(&img, &cfg, NULL, &pv, &n, grid, &err) == ABC_OK, "%s", err.message);
    CHECK(pv && n == (int64_t)grid[1] * grid[2] && n > 0, "patches without a resized image");
    free(pv);
    free(img.rgb);
}

/* ---- 4. bad inputs ---------------------------------------------------------------------------------- */

static void expect_error(abc_status st, abc_status want, const abc_error *err, const char *what) {
    CHECK(st == want, "%s: status %d, expected %d (%s)", what, st, want, err->message);
    CHECK(st == ABC_OK || err->message[0] != 0, "%s: no message", what);
}

static void test_bad_inputs(void) {
    uint8_t pixels[3 * 300] = {0};
    abc_image img = {10, 10, pixels}, resized = {0};
    preprocess_config cfg = preset_config(false);
    float *pv = (float *)1;
    int64_t n = 0;
    int grid[3];
    abc_error err;

    expect_error(preprocess_image(NULL, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "NULL src");
    CHECK(pv == NULL && resized.rgb == NULL, "outputs cleared on failure");
    expect_error(preprocess_image(&img, NULL, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "NULL cfg");
    expect_error(preprocess_image(&img, &cfg, &resized, NULL, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "NULL pv");
    expect_error(preprocess_image(&img, &cfg, &resized, &pv, NULL, grid, &err), ABC_ERR_INVALID_ARG, &err, "NULL n");
    expect_error(preprocess_image(&img, &cfg, &resized, &pv, &n, NULL, &err), ABC_ERR_INVALID_ARG, &err, "NULL grid");
    CHECK(preprocess_image(NULL, &cfg, &resized, &pv, &n, grid, NULL) == ABC_ERR_INVALID_ARG, "NULL err is fine");

    abc_image bad = {0, 10, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "zero width");
    bad = (abc_image){10, 0, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "zero height");
    bad = (abc_image){-3, 10, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "negative");
    bad = (abc_image){10, 10, NULL};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "NULL rgb");
    /* Absurd sizes are refused before any pixel is read (the buffer here is tiny). */
    bad = (abc_image){INT_MAX, 1, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_TOO_LARGE, &err, "INT_MAX wide");
    bad = (abc_image){(1 << 24) + 1, (1 << 24) + 1, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_TOO_LARGE, &err, "2^24+1 square");
    bad = (abc_image){1 << 20, 1 << 20, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_TOO_LARGE, &err, "2^40 pixels");
    /* Aspect ratio above 200 (real pixels: 201 × 1). */
    bad = (abc_image){201, 1, pixels};
    expect_error(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err), ABC_ERR_UNSUPPORTED, &err, "ratio 201");
    CHECK(strstr(err.message, "aspect ratio") != NULL, "message names the problem: %s", err.message);
    bad = (abc_image){200, 1, pixels};
    CHECK(preprocess_image(&bad, &cfg, &resized, &pv, &n, grid, &err) == ABC_OK, "ratio 200 is fine: %s", err.message);
    free(pv);
    free(resized.rgb);

    /* Bad configurations. */
    preprocess_config c2 = cfg;
    c2.factor = 0;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "factor 0");
    c2 = cfg;
    c2.factor = 30;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "factor 30");
    c2 = cfg;
    c2.patch_size = 0;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "patch 0");
    c2 = cfg;
    c2.std[1] = 0.0f;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "std 0");
    c2 = cfg;
    c2.mean[2] = NAN;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "mean NaN");
    c2 = cfg;
    c2.min_pixels = c2.max_pixels + 1;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "min > max");
    c2 = cfg;
    c2.max_pixels = (int64_t)1 << 50;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "max huge");
    c2 = preset_config(true);
    c2.stage1_max_pixels = -1;
    expect_error(preprocess_image(&img, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_INVALID_ARG, &err, "stage1 bounds");
    /* Stage 1 shrinking a side to zero (qwen_vl_utils has no max(28, ·) there). */
    c2 = preset_config(true);
    c2.stage1_min_pixels = 0;
    c2.stage1_max_pixels = 784;
    bad = (abc_image){100, 1, pixels};
    expect_error(preprocess_image(&bad, &c2, &resized, &pv, &n, grid, &err), ABC_ERR_UNSUPPORTED, &err, "shrinks to 0");

    /* The resampler's own guards. */
    abc_image out = {0};
    expect_error(resize_bicubic_rgb8(NULL, 5, 5, &out, &err), ABC_ERR_INVALID_ARG, &err, "resize NULL");
    expect_error(resize_bicubic_rgb8(&img, 0, 5, &out, &err), ABC_ERR_INVALID_ARG, &err, "resize to 0");
    expect_error(resize_bicubic_rgb8(&img, 5, -1, &out, &err), ABC_ERR_INVALID_ARG, &err, "resize to -1");
    expect_error(resize_bicubic_rgb8(&img, INT_MAX, 5, &out, &err), ABC_ERR_TOO_LARGE, &err, "resize to INT_MAX");
    CHECK(out.rgb == NULL, "no output on failure");
    int64_t oh, ow;
    expect_error(smart_resize_transformers(0, 5, 28, 0, 100, &oh, &ow, &err), ABC_ERR_INVALID_ARG, &err, "sr 0");
    expect_error(smart_resize_qwen_vl_utils(5, -5, 28, 0, 100, &oh, &ow, &err), ABC_ERR_INVALID_ARG, &err, "sr -5");
    expect_error(smart_resize_transformers(INT64_MAX, 5, 28, 0, 100, &oh, &ow, &err), ABC_ERR_TOO_LARGE, &err, "sr huge");
    expect_error(smart_resize_transformers(5, 5, 0, 0, 100, &oh, &ow, &err), ABC_ERR_INVALID_ARG, &err, "sr factor 0");
}

/* Every allocation failing in turn: an error (never a crash or a leak), then success. */
#ifdef ABC_FAULT_INJECTION
static void test_out_of_memory(void) {
    abc_image img = {37, 23, synthetic_image(11, 0, 37, 23)};
    for (int abc = 0; abc < 2; abc++) {
        preprocess_config cfg = preset_config(abc);
        int failures = 0;
        for (long k = 0; k < 100; k++) {
            abc_image resized = {0};
            float *pv = NULL;
            int64_t n = 0;
            int grid[3];
            abc_error err = {0};
            atomic_store(&abc_test_fail_after, k);
            abc_status st = preprocess_image(&img, &cfg, &resized, &pv, &n, grid, &err);
            atomic_store(&abc_test_fail_after, -1);
            free(resized.rgb);
            free(pv);
            if (st == ABC_OK) break;
            CHECK(st == ABC_ERR_NOMEM && pv == NULL && resized.rgb == NULL, "k=%ld: status %d (%s)", k, st,
                  err.message);
            failures++;
        }
        CHECK(failures >= 4, "only %d allocation points seen", failures);
    }
    free(img.rgb);
}
#endif

int main(void) {
    RUN_TEST(test_round_half_even);
    RUN_TEST(test_smart_resize_table);
    RUN_TEST(test_resize_vs_pillow);
    RUN_TEST(test_resize_identity_and_null_resized);
    RUN_TEST(test_patch_layout);
    RUN_TEST(test_image_cases);
    RUN_TEST(test_bad_inputs);
#ifdef ABC_FAULT_INJECTION
    RUN_TEST(test_out_of_memory);
#endif
    return test_summary();
}
