/* Times section 6 (preprocessing) on a synthetic image for both Qwen2-VL presets and Phi-3.5-V's HD
 * transform (section 6b) with 4 and 16 crops, on the image and on its portrait transpose.
 * Build and run from the repository root:
 *   make abc.c && cc -std=c11 -O2 -ffp-contract=off -I. -o build/bench_preprocess bench/bench_preprocess.c -lm -lpthread
 *   build/bench_preprocess [width height]        (default 4000 3000, 12 megapixels) */
#include "../abc.c"
#include <time.h>

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

static preprocess_config bench_config(bool abc) {
    preprocess_config cfg = {.factor = 28,
                             .min_pixels = abc ? 200704 : 3136,
                             .max_pixels = abc ? 802816 : 12845056,
                             .two_stage = abc,
                             .stage1_min_pixels = 3136,
                             .stage1_max_pixels = 12845056,
                             .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                             .std = {0.26862954f, 0.26130258f, 0.27577711f},
                             .patch_size = 14,
                             .temporal_patch_size = 2,
                             .merge_size = 2};
    return cfg;
}

int main(int argc, char **argv) {
    int w = argc > 2 ? atoi(argv[1]) : 4000, h = argc > 2 ? atoi(argv[2]) : 3000;
    if (w <= 0 || h <= 0) return 1;
    abc_image img = {w, h, malloc((size_t)w * h * 3)};
    if (!img.rgb) return 1;
    uint64_t z = 1; /* a gradient with noise, so the resampler sees realistic data */
    for (size_t i = 0; i < (size_t)w * h * 3; i++) {
        z = z * 6364136223846793005ull + 1442695040888963407ull;
        img.rgb[i] = (uint8_t)((i / 3 % (size_t)w + i / 3 / (size_t)w + (z >> 61)) & 255);
    }
    for (int abc = 1; abc >= 0; abc--) {
        preprocess_config cfg = bench_config(abc);
        int stage1[2], final_size[2];
        abc_error err;
        if (preprocess_target_size(&cfg, w, h, stage1, final_size, &err) != ABC_OK) {
            fprintf(stderr, "%s\n", err.message);
            return 1;
        }
        double best = 1e30;
        for (int rep = 0; rep < 5; rep++) {
            abc_image resized = {0};
            float *pv = NULL;
            int64_t n;
            int grid[3];
            double t0 = seconds_now();
            if (preprocess_image(&img, &cfg, &resized, &pv, &n, grid, &err) != ABC_OK) {
                fprintf(stderr, "%s\n", err.message);
                return 1;
            }
            double t = seconds_now() - t0;
            best = t < best ? t : best;
            free(resized.rgb);
            free(pv);
        }
        printf("%-7s %dx%d -> stage 1 %dx%d -> %dx%d: %.1f ms (best of 5)\n", abc ? "abc" : "vlm2vec", w, h,
               stage1[0], stage1[1], final_size[0], final_size[1], best * 1e3);
    }
    /* Phi-3.5-V: the portrait case also transposes the image twice. */
    abc_image portrait = {h, w, malloc((size_t)w * h * 3)};
    if (!portrait.rgb) return 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) memcpy(portrait.rgb + ((size_t)x * h + y) * 3, img.rgb + ((size_t)y * w + x) * 3, 3);
    for (int crops = 4; crops <= 16; crops += 12) {
        for (int p = 0; p < 2; p++) {
            const abc_image *src = p ? &portrait : &img;
            hd_preprocess_config hd_cfg = {.num_crops = crops,
                                           .crop_size = 336,
                                           .mean = {0.48145466f, 0.4578275f, 0.40821073f},
                                           .std = {0.26862954f, 0.26130258f, 0.27577711f}};
            double best = 1e30;
            int hc = 0, wc = 0, hd_w = 0, hd_h = 0;
            for (int rep = 0; rep < 5; rep++) {
                abc_image hd = {0};
                float *pv = NULL;
                abc_error err;
                double t0 = seconds_now();
                if (preprocess_hd_image(src, &hd_cfg, &hd, &pv, &hc, &wc, &err) != ABC_OK) {
                    fprintf(stderr, "%s\n", err.message);
                    return 1;
                }
                double t = seconds_now() - t0;
                best = t < best ? t : best;
                hd_w = hd.width, hd_h = hd.height;
                free(hd.rgb);
                free(pv);
            }
            printf("phi3v   %dx%d, %2d crops -> HD %dx%d (%dx%d crops): %.1f ms (best of 5)\n", src->width,
                   src->height, crops, hd_w, hd_h, hc, wc, best * 1e3);
        }
    }
    free(portrait.rgb);
    free(img.rgb);
    return 0;
}
