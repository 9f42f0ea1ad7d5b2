/* Tests of section 6b, Phi-3.5-V's HD transform (docs/image-pipeline.md#phi-35-v-hd-transform): the padded HD image against Pillow
 * (tests/gen_phi35v_hd_fixtures.py), the crops bit for bit and the float bicubic global view against the
 * transformers + torch reference of the phi35v-tiny set, the global view against an independent double
 * implementation, and bad inputs / out-of-memory handling. */
#include "../abc.c"
#include "sha256.h"
#include "test.h"

#define HD_DIR "tests/fixtures/phi35v-hd/"
#define PIX_DIR "tests/fixtures/phi35v-tiny/"

static hd_preprocess_config hd_test_config(int num_crops) {
    hd_preprocess_config cfg = {.num_crops = num_crops,
                                .crop_size = 336,
                                .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                                .std = {0.26862954f, 0.26130258f, 0.27577711f}};
    return cfg;
}

static abc_image decode_file(const char *path) {
    abc_image img = {0};
    size_t size;
    char *data = test_read_file(path, &size);
    CHECK(data != NULL, "cannot read %s", path);
    if (!data) return img;
    abc_error err = {0};
    CHECK(image_decode((const uint8_t *)data, size, 0, &img, &err) == ABC_OK, "%s: %s", path, err.message);
    free(data);
    return img;
}

static float *read_f32(const char *path, size_t count) {
    size_t len;
    char *data = test_read_file(path, &len);
    CHECK(data && len == count * sizeof(float), "%s: %zu bytes, expected %zu", path, data ? len : 0,
          count * sizeof(float));
    if (data && len != count * sizeof(float)) {
        free(data);
        return NULL;
    }
    return (float *)data;
}

/* ---- an independent global view: double arithmetic, written from torch's definition ---------------- */

static double cubic_weight_double(double d) { /* Keys' kernel, a = -0.75, |d| < 2 */
    const double a = -0.75;
    d = fabs(d);
    if (d <= 1.0) return ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    if (d < 2.0) return a * d * d * d - 5.0 * a * d * d + 8.0 * a * d - 4.0 * a;
    return 0.0;
}

static double bicubic_at_double(const float *plane, int w, int h, int out, int oy, int ox) {
    double sy = ((double)oy + 0.5) * h / out - 0.5, sx = ((double)ox + 0.5) * w / out - 0.5;
    int y0 = (int)floor(sy), x0 = (int)floor(sx);
    double acc = 0.0;
    for (int j = -1; j <= 2; j++) {
        int yy = MIN(MAX(y0 + j, 0), h - 1);
        double row = 0.0;
        for (int i = -1; i <= 2; i++) {
            int xx = MIN(MAX(x0 + i, 0), w - 1);
            row += plane[(size_t)yy * w + xx] * cubic_weight_double(sx - (x0 + i));
        }
        acc += row * cubic_weight_double(sy - (y0 + j));
    }
    return acc;
}

/* ---- 1. the padded HD image against Pillow ------------------------------------------------------ */

static uint64_t splitmix64_mix(uint64_t z) {
    z ^= z >> 30;
    z *= 0xBF58476D1CE4E5B9ull;
    z ^= z >> 27;
    z *= 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The synthetic image of tests/gen_resize_cases.py. */
static abc_image synthetic_image(uint64_t seed, int pattern, int w, int h) {
    size_t n = (size_t)w * h * 3;
    abc_image img = {w, h, malloc(n)};
    for (size_t i = 0; i < n; i++) {
        uint64_t z = splitmix64_mix(seed + (i + 1) * 0x9E3779B97F4A7C15ull);
        size_t pix = i / 3, x = pix % (size_t)w, y = pix / (size_t)w, c = i % 3;
        if (pattern == 0) img.rgb[i] = (uint8_t)(z >> 56);
        else if (pattern == 1) img.rgb[i] = (uint8_t)((3 * x + 5 * y + 40 * c + (z >> 62)) % 256);
        else img.rgb[i] = (z >> 63) ? 255 : 0;
    }
    return img;
}

static bool prefix_matches(const uint8_t *data, size_t len, const char *want) {
    char hex[65];
    sha256_hex(data, len, hex);
    hex[16] = 0;
    return strcmp(hex, want) == 0;
}

static void check_bilinear_case(const char *line, int *bad) {
    unsigned long long seed;
    int pattern, w, h, ow, oh;
    char want[17];
    if (sscanf(line, "R %llu %d %d %d %d %d %16s", &seed, &pattern, &w, &h, &ow, &oh, want) != 7) {
        CHECK(0, "bad line: %s", line);
        return;
    }
    abc_image src = synthetic_image(seed, pattern, w, h), dst = {0};
    abc_error err = {0};
    CHECK(resize_rgb8(&src, ow, oh, &RESAMPLE_BILINEAR, &dst, &err) == ABC_OK, "%s", err.message);
    if (dst.rgb && !prefix_matches(dst.rgb, (size_t)ow * oh * 3, want) && (*bad)++ < 10)
        CHECK(0, "bilinear %dx%d -> %dx%d differs from Pillow", w, h, ow, oh);
    free(dst.rgb);
    free(src.rgb);
}

static void check_hd_case(const char *line, int *bad, int *n_fail_cases) {
    unsigned long long seed;
    int pattern, w, h, n, hd_w, hd_h;
    char want[17];
    if (sscanf(line, "%llu %d %d %d %d %d %d %16s", &seed, &pattern, &w, &h, &n, &hd_w, &hd_h, want) != 8) {
        CHECK(0, "bad line: %s", line);
        return;
    }
    abc_image src = synthetic_image(seed, pattern, w, h), hd = {0};
    hd_preprocess_config cfg = hd_test_config(n);
    abc_error err = {0};
    float *pv = NULL;
    int hc = 0, wc = 0;
    abc_status st = preprocess_hd_image(&src, &cfg, &hd, &pv, &hc, &wc, &err);
    if (hd_w == 0) { /* the processor fails: Pillow refuses a 0-pixel side */
        (*n_fail_cases)++;
        CHECK(st == ABC_ERR_UNSUPPORTED && strstr(err.message, "elongated"), "%dx%d, %d crops: status %d (%s)", w,
              h, n, st, err.message);
        CHECK(pv == NULL && hd.rgb == NULL, "outputs must stay empty on failure");
    } else {
        CHECK(st == ABC_OK, "%dx%d, %d crops: %s", w, h, n, err.message);
        if (st == ABC_OK) {
            CHECK(hd.width == hd_w && hd.height == hd_h, "%dx%d, %d crops: HD %dx%d, expected %dx%d", w, h, n,
                  hd.width, hd.height, hd_w, hd_h);
            CHECK(hc == hd_h / 336 && wc == hd_w / 336 && hc * wc <= n, "crop grid %dx%d", hc, wc);
            if (hd.width == hd_w && hd.height == hd_h && !prefix_matches(hd.rgb, (size_t)hd_w * hd_h * 3, want) &&
                (*bad)++ < 10)
                CHECK(0, "%dx%d (seed %llu pattern %d), %d crops: the HD image differs from Pillow's", w, h, seed,
                      pattern, n);
        }
    }
    free(pv);
    free(hd.rgb);
    free(src.rgb);
}

static void test_hd_image_vs_pillow(void) {
    char **lines;
    int n = test_read_lines(HD_DIR "hd_cases.txt", &lines), bad = 0, n_hd = 0, n_fail = 0;
    CHECK(n >= 200, "hd_cases.txt: %d cases", n);
    for (int i = 0; i < n; i++) {
        if (lines[i][0] == 'R') {
            check_bilinear_case(lines[i], &bad);
        } else {
            check_hd_case(lines[i], &bad, &n_fail);
            n_hd++;
        }
    }
    CHECK(n_hd >= 80 && n_fail >= 1, "%d HD cases, %d failing ones", n_hd, n_fail);
    CHECK(bad == 0, "%d of %d cases differ from Pillow", bad, n);
    test_free_lines(lines, n);
}

/* ---- 2. the reference pixel values (transformers + torch) ----------------------------------------- */

#define SLOT ((size_t)3 * 336 * 336)

/* Max |Δ| of the global view against the reference and against the double implementation. */
static void check_global_view(const char *name, const float *got, const float *ref, const abc_image *hd,
                              const hd_preprocess_config *cfg) {
    double max_ref = 0, max_double = 0;
    for (size_t i = 0; i < SLOT; i++) max_ref = test_max(max_ref, fabs((double)got[i] - ref[i]));
    /* The double version works on the same normalised planes. */
    float table[3][256];
    hd_pixel_value_table(cfg, table);
    float *planes = malloc(3 * (size_t)hd->width * hd->height * sizeof *planes);
    hd_normalise(hd, table, planes);
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 336; y += 5) /* every 5th row and column: 4500 points per channel */
            for (int x = 0; x < 336; x += 5) {
                double d = bicubic_at_double(planes + (size_t)c * hd->width * hd->height, hd->width, hd->height,
                                             336, y, x);
                max_double = test_max(max_double, fabs(d - got[(size_t)c * 336 * 336 + (size_t)y * 336 + x]));
            }
    free(planes);
    printf("     %s: global view max |Δ| %.3g vs torch, %.3g vs double\n", name, max_ref, max_double);
    CHECK(max_ref <= 1e-5, "%s: global view max |Δ| %g > 1e-5", name, max_ref);
    CHECK(max_ref <= 2e-6, "%s: global view max |Δ| %g, expected a few ulps", name, max_ref);
    CHECK(max_double <= 1e-5, "%s: global view differs from the double implementation by %g", name, max_double);
}

static void expected_crops(const char *name, int *hc, int *wc, char sha[65]) {
    char **lines;
    int n = test_read_lines(PIX_DIR "pixel_cases.txt", &lines);
    *hc = *wc = 0;
    sha[0] = 0;
    for (int i = 0; i < n; i++) {
        char case_name[64];
        int h, w;
        char hex[65];
        if (sscanf(lines[i], "%63s %d %d %64s", case_name, &h, &w, hex) == 4 && strcmp(case_name, name) == 0) {
            *hc = h, *wc = w;
            memcpy(sha, hex, 65);
        }
    }
    test_free_lines(lines, n);
    CHECK(*hc > 0, "%s missing from pixel_cases.txt", name);
}

/* The rocket: the whole pipeline from the PNG (portrait 427×640 → transposed, 2×2 crops). */
static void test_rocket_reference(void) {
    abc_image img = decode_file(PIX_DIR "rocket_portrait.png"), hd = {0};
    float *ref = read_f32(PIX_DIR "img_rocket_qry__global_view.f32", SLOT);
    int want_h, want_w;
    char want_sha[65], got_sha[65];
    expected_crops("img_rocket_qry", &want_h, &want_w, want_sha);
    if (!img.rgb || !ref) goto done;
    CHECK(img.width == 427 && img.height == 640, "rocket %dx%d", img.width, img.height);
    hd_preprocess_config cfg = hd_test_config(4);
    abc_error err = {0};
    float *pv = NULL;
    int hc = 0, wc = 0;
    CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_OK, "%s", err.message);
    if (!pv) goto done;
    CHECK(hc == want_h && wc == want_w && hd.width == 672 && hd.height == 672, "grid %dx%d, HD %dx%d", hc, wc,
          hd.width, hd.height);
    sha256_hex(pv + SLOT, (size_t)hc * wc * SLOT * sizeof(float), got_sha);
    CHECK(strcmp(got_sha, want_sha) == 0, "rocket crops differ from the reference (SHA-256 %s)", got_sha);
    check_global_view("rocket", pv, ref, &hd, &cfg);
    free(pv);
done:
    free(ref);
    free(hd.rgb);
    free(img.rgb);
}

/* The page: page.png is not in the reference set, so its padded HD image (recovered exactly from the
 * reference crops) is the input; this checks the padding layout, the crops and the global view. */
static void test_page_reference(void) {
    abc_image hd = decode_file(PIX_DIR "page_hd.png");
    float *ref = read_f32(PIX_DIR "img_page_tgt__global_view.f32", SLOT);
    int want_h, want_w;
    char want_sha[65], got_sha[65];
    expected_crops("img_page_tgt", &want_h, &want_w, want_sha);
    if (!hd.rgb || !ref) goto done;
    CHECK(hd.width == 672 && hd.height == 336, "page HD %dx%d", hd.width, hd.height);
    /* 384×191 with 4 crops: scale 2, resized to 672×334, one white row above and one below. */
    hd_preprocess_config cfg = hd_test_config(4);
    hd_geometry g;
    abc_error err = {0};
    CHECK(hd_compute_geometry(384, 191, &cfg, &g, &err) == ABC_OK, "%s", err.message);
    CHECK(!g.transposed && g.new_w == 672 && g.new_h == 334 && g.top == 1 && g.out_w == 672 && g.out_h == 336,
          "page geometry %dx%d top %d", g.new_w, g.new_h, g.top);
    bool white = true, not_white = false;
    for (int x = 0; x < 672 * 3; x++) {
        white &= hd.rgb[x] == 255 && hd.rgb[(size_t)335 * 672 * 3 + x] == 255;
        not_white |= hd.rgb[(size_t)1 * 672 * 3 + x] != 255;
    }
    CHECK(white && not_white, "page padding rows");
    /* An HD image that needs no resize goes through unchanged (2·336 wide, 336/ratio = 336 high). */
    abc_image out = {0};
    float *pv = NULL;
    int hc = 0, wc = 0;
    CHECK(preprocess_hd_image(&hd, &cfg, &out, &pv, &hc, &wc, &err) == ABC_OK, "%s", err.message);
    if (!pv) goto done;
    CHECK(hc == want_h && wc == want_w, "page grid %dx%d", hc, wc);
    CHECK(out.width == 672 && out.height == 336 && memcmp(out.rgb, hd.rgb, (size_t)672 * 336 * 3) == 0,
          "a 672x336 image must pass the HD transform unchanged");
    sha256_hex(pv + SLOT, (size_t)hc * wc * SLOT * sizeof(float), got_sha);
    CHECK(strcmp(got_sha, want_sha) == 0, "page crops differ from the reference (SHA-256 %s)", got_sha);
    check_global_view("page", pv, ref, &hd, &cfg);
    free(pv);
    free(out.rgb);
done:
    free(ref);
    free(hd.rgb);
}

/* ---- 3. geometry, layout and the transpose -------------------------------------------------------- */

static void test_geometry(void) {
    hd_preprocess_config cfg = hd_test_config(4);
    hd_geometry g;
    abc_error err = {0};
    CHECK(hd_compute_geometry(427, 640, &cfg, &g, &err) == ABC_OK, "%s", err.message);
    CHECK(g.transposed && g.new_w == 672 && g.new_h == 448 && g.padded_h == 672 && g.top == 112 &&
              g.out_w == 672 && g.out_h == 672,
          "rocket geometry");
    cfg.num_crops = 16;
    CHECK(hd_compute_geometry(1000, 10, &cfg, &g, &err) == ABC_OK, "%s", err.message);
    CHECK(g.new_w == 16 * 336 && g.new_h == 53 && g.out_h == 336 && g.out_w == 16 * 336, "16 crops of a strip");
    cfg.num_crops = 1;
    CHECK(hd_compute_geometry(1, 1, &cfg, &g, &err) == ABC_OK && g.new_w == 336 && g.new_h == 336, "1x1");
    CHECK(hd_compute_geometry(400, 1, &cfg, &g, &err) == ABC_ERR_UNSUPPORTED, "400x1 with 1 crop");
    CHECK(hd_compute_geometry(336, 1, &cfg, &g, &err) == ABC_OK && g.new_h == 1, "336x1 keeps one row");
    cfg.num_crops = HD_MAX_CROPS;
    CHECK(hd_compute_geometry(1, 1, &cfg, &g, &err) == ABC_OK && g.new_w == 16 * 336, "1x1 with %d crops",
          HD_MAX_CROPS);
    CHECK(hd_compute_geometry(1 << 24, 1, &cfg, &g, &err) == ABC_ERR_UNSUPPORTED, "extreme strip");
}

/* Transposing the input transposes the HD image (Pillow's passes run in the other order, so this is not
 * free) and swaps the crop grid. */
static void test_transpose_symmetry(void) {
    abc_image a = synthetic_image(5, 1, 300, 100), at = {0};
    abc_error err = {0};
    CHECK(transpose_rgb8(&a, &at, &err) == ABC_OK, "%s", err.message);
    hd_preprocess_config cfg = hd_test_config(9);
    abc_image ha = {0}, hb = {0};
    float *pa = NULL, *pb = NULL;
    int ra, ca, rb, cb;
    CHECK(preprocess_hd_image(&a, &cfg, &ha, &pa, &ra, &ca, &err) == ABC_OK, "%s", err.message);
    CHECK(preprocess_hd_image(&at, &cfg, &hb, &pb, &rb, &cb, &err) == ABC_OK, "%s", err.message);
    CHECK(ra == cb && ca == rb && ha.width == hb.height && ha.height == hb.width, "grids %dx%d and %dx%d", ra, ca,
          rb, cb);
    bool same = ha.rgb && hb.rgb;
    for (int y = 0; same && y < ha.height; y++)
        for (int x = 0; x < ha.width; x++)
            same &= memcmp(ha.rgb + ((size_t)y * ha.width + x) * 3, hb.rgb + ((size_t)x * hb.width + y) * 3, 3) == 0;
    CHECK(same, "the HD image of the transposed input is the transposed HD image");
    /* Crop order: slot 1 + r·cols + c is the crop at row r, column c of the normalised HD image. */
    if (pa) {
        float table[3][256];
        hd_pixel_value_table(&cfg, table);
        bool ok = true;
        for (int s = 0; s < ra * ca; s++) {
            int r = s / ca, c = s % ca;
            for (int ch = 0; ch < 3; ch++) {
                const float *slot = pa + (1 + (size_t)s) * SLOT + (size_t)ch * 336 * 336;
                int y = (s * 37) % 336, x = (s * 101) % 336;
                ok &= slot[y * 336 + x] == table[ch][ha.rgb[(((size_t)r * 336 + y) * ha.width + (size_t)c * 336 + x) * 3 + ch]];
            }
        }
        CHECK(ok, "crop order");
    }
    free(pa);
    free(pb);
    free(ha.rgb);
    free(hb.rgb);
    free(a.rgb);
    free(at.rgb);
}

/* ToTensor + Normalize: x / 255 and the mean/std steps are separate float32 roundings. */
static void test_pixel_table(void) {
    hd_preprocess_config cfg = hd_test_config(4);
    float table[3][256];
    hd_pixel_value_table(&cfg, table);
    volatile float v = 128.0f, d = 255.0f;
    float x = v / d;
    CHECK(table[0][128] == (x - 0.48145466f) / 0.26862954f, "table entry");
    CHECK(table[2][255] == (1.0f - 0.40821073f) / 0.27577711f, "white");
    for (int c = 0; c < 3; c++)
        for (int i = 1; i < 256; i++) CHECK(table[c][i] > table[c][i - 1], "table must be increasing");
}

/* ---- 4. bad input and out of memory --------------------------------------------------------------- */

static void test_bad_input(void) {
    abc_image img = synthetic_image(1, 0, 10, 10), hd = {0};
    hd_preprocess_config cfg = hd_test_config(4);
    abc_error err = {0};
    float *pv = (float *)&err;
    int hc, wc;
    CHECK(preprocess_hd_image(NULL, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG && pv == NULL, "NULL src");
    CHECK(preprocess_hd_image(&img, NULL, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "NULL cfg");
    CHECK(preprocess_hd_image(&img, &cfg, &hd, NULL, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "NULL out");
    CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, NULL, &wc, &err) == ABC_ERR_INVALID_ARG, "NULL h_crop");
    int bad_crops[] = {0, -1, HD_MAX_CROPS + 1, INT_MAX};
    for (size_t i = 0; i < sizeof bad_crops / sizeof *bad_crops; i++) {
        cfg.num_crops = bad_crops[i];
        CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG &&
                  strstr(err.message, "num_crops"),
              "num_crops %d: %s", bad_crops[i], err.message);
    }
    cfg = hd_test_config(4);
    cfg.crop_size = 0;
    CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "crop size 0");
    cfg = hd_test_config(4);
    cfg.std[1] = 0.0f;
    CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "std 0");
    cfg = hd_test_config(4);
    cfg.mean[2] = NAN;
    CHECK(preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "mean NaN");
    cfg = hd_test_config(4);
    abc_image empty = {0, 5, img.rgb}, no_data = {5, 5, NULL};
    CHECK(preprocess_hd_image(&empty, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "0 wide");
    CHECK(preprocess_hd_image(&no_data, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_INVALID_ARG, "no pixels");
    abc_image strip = synthetic_image(2, 1, 2000, 1);
    CHECK(preprocess_hd_image(&strip, &cfg, &hd, &pv, &hc, &wc, &err) == ABC_ERR_UNSUPPORTED && pv == NULL &&
              hd.rgb == NULL,
          "2000x1: %s", err.message);
    /* hd_image may be NULL. */
    CHECK(preprocess_hd_image(&img, &cfg, NULL, &pv, &hc, &wc, &err) == ABC_OK && pv, "%s", err.message);
    free(pv);
    free(strip.rgb);
    free(img.rgb);
}

static void test_out_of_memory(void) {
#ifdef ABC_FAULT_INJECTION
    abc_image img = synthetic_image(3, 1, 50, 80);
    hd_preprocess_config cfg = hd_test_config(4);
    int failures = 0;
    for (long k = 0; k < 64; k++) {
        abc_image hd = {0};
        float *pv = NULL;
        int hc, wc;
        abc_error err = {0};
        atomic_store(&abc_test_fail_after, k);
        abc_status st = preprocess_hd_image(&img, &cfg, &hd, &pv, &hc, &wc, &err);
        atomic_store(&abc_test_fail_after, -1);
        if (st == ABC_OK) {
            free(pv);
            free(hd.rgb);
            break;
        }
        failures++;
        CHECK(st == ABC_ERR_NOMEM && pv == NULL && hd.rgb == NULL, "allocation %ld: status %d (%s)", k, st,
              err.message);
    }
    CHECK(failures >= 5, "only %d allocations were failed", failures);
    free(img.rgb);
#else
    printf("     (built without ABC_FAULT_INJECTION: skipped)\n");
#endif
}

int main(void) {
    RUN_TEST(test_pixel_table);
    RUN_TEST(test_geometry);
    RUN_TEST(test_bad_input);
    RUN_TEST(test_out_of_memory);
    RUN_TEST(test_transpose_symmetry);
    RUN_TEST(test_rocket_reference);
    RUN_TEST(test_page_reference);
    RUN_TEST(test_hd_image_vs_pillow);
    return test_summary();
}
