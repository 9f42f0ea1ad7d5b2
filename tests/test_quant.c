/* The converter's vectorised q8 and q4 quantizers (model_convert/quant.c) against the scalar
 * definitions (cv_quantize_q8_row, cv_quantize_q4_row in dtype.c): every ISA level this CPU has must
 * give bit-identical scales and quants, on random blocks over many magnitudes and on edge cases (zeros,
 * signed zeros, subnormals, exact rounding ties, a lone outlier, the largest floats); the strip encoder
 * must lay the quants out as FORMAT.md says; and q4's encoder must round-trip what it can represent. */
#define _POSIX_C_SOURCE 200809L
#include "../model_convert/json.c"
#include "../model_convert/util.c"
#include "../model_convert/dtype.c"
#include "../model_convert/quant.c"

#include "test.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
static double uniform(void) { return (double)(rng() >> 11) / 9007199254740992.0; }

/* nblocks blocks: random ones at magnitudes 1e-30..1e30 mixed with hand-made edge cases. */
static void make_blocks(float *w, int64_t nblocks) {
    for (int64_t b = 0; b < nblocks; b++) {
        float *x = w + b * CV_Q8_BLOCK;
        const int kind = (int)(rng() % 12);
        const double mag = pow(10.0, -30.0 + 60.0 * uniform());
        for (int k = 0; k < CV_Q8_BLOCK; k++) {
            double g = (uniform() + uniform() + uniform() - 1.5) * 2.0; /* roughly normal */
            switch (kind) {
            case 0: x[k] = 0.0f; break;
            case 1: x[k] = (k & 1) ? -0.0f : 0.0f; break;
            case 2: x[k] = (float)(g * 1e-42); break;                         /* subnormals */
            case 3: x[k] = k == 5 ? (float)(100.0 * mag) : (float)(g * mag); break; /* an outlier */
            case 4: x[k] = (float)((double)((int)(rng() % 255) - 127) * 0.5 * 0.0078125); break; /* ties at amax/127 */
            case 5: x[k] = (float)((k % 2 ? -1 : 1) * 3.4e38 * uniform()); break;
            case 6: x[k] = (float)(((int)(rng() % 5) - 2) * 0.25); break;      /* few distinct values */
            case 7: x[k] = k == 0 ? 1.0f : 0.0f; break;
            default: x[k] = (float)(g * mag); break;
            }
        }
    }
}

static void check_kernels_match_scalar(uint32_t dtype) {
    const int64_t nblocks = 20011; /* not a multiple of the lane count */
    const char *name = dtype == ABC_FILE_Q4 ? "q4" : "q8";
    float *w = malloc((size_t)nblocks * CV_Q8_BLOCK * sizeof *w);
    int8_t *q_ref = malloc((size_t)nblocks * CV_Q8_BLOCK), *q = malloc((size_t)nblocks * CV_Q8_BLOCK);
    float *s_ref = malloc((size_t)nblocks * sizeof *s_ref), *s = malloc((size_t)nblocks * sizeof *s);
    CHECK(w && q_ref && q && s_ref && s, "out of memory");
    if (w && q_ref && q && s_ref && s) {
        make_blocks(w, nblocks);
        (dtype == ABC_FILE_Q4 ? cv_quantize_q4_row : cv_quantize_q8_row)(w, nblocks * CV_Q8_BLOCK, q_ref, s_ref);
        int nonzero = 0;
        for (int64_t b = 0; b < nblocks; b++) nonzero += s_ref[b] != 0.0f;
        CHECK(nonzero > nblocks / 2, "the sample has real blocks (%d of %lld with a scale)", nonzero, (long long)nblocks);
        int levels = 0;
        for (int level = 0; level <= 3; level++) {
            cv_q8_kernel k = level < 3 ? cv_quant_kernel_for(dtype, level)
                                       : dtype == ABC_FILE_Q4 ? cv_quantize_q4_blocks : cv_quantize_q8_blocks;
            if (!k) continue;
            levels++;
            for (int64_t n = nblocks; n > 0; n = n > 9 ? n / 7 : n - 1) { /* also short runs: the tail lanes */
                memset(q, 0x55, (size_t)n * CV_Q8_BLOCK);
                memset(s, 0x55, (size_t)n * sizeof *s);
                k(w, n, q, s);
                int64_t bad = -1;
                for (int64_t b = 0; b < n && bad < 0; b++)
                    if (memcmp(&s[b], &s_ref[b], 4) != 0 || memcmp(q + b * CV_Q8_BLOCK, q_ref + b * CV_Q8_BLOCK, CV_Q8_BLOCK) != 0) bad = b;
                CHECK(bad < 0, "%s level %d, %lld blocks: block %lld differs (scale %a, want %a)", name, level, (long long)n, (long long)bad,
                      bad >= 0 ? (double)s[bad] : 0.0, bad >= 0 ? (double)s_ref[bad] : 0.0);
            }
        }
        CHECK(levels >= 2, "the baseline kernel and the dispatcher ran (%d)", levels);
        printf("  %s kernels compared: baseline%s%s\n", name, cv_q8_kernel_for(1) ? ", avx2" : "", cv_q8_kernel_for(2) ? ", avx512f" : "");
    }
    free(w);
    free(q_ref);
    free(q);
    free(s_ref);
    free(s);
}

static void test_kernels_match_scalar(void) {
    check_kernels_match_scalar(ABC_FILE_Q8);
    check_kernels_match_scalar(ABC_FILE_Q4);
}

/* Element k of row j of q4 strips (FORMAT.md, read by hand): (nibble - 8) · float16 scale. */
static float q4_value(const unsigned char *strips, int64_t in, int64_t j, int64_t k) {
    const unsigned char *blk = strips + ((j / 16) * (in / 32) + k / 32) * 288;
    const int kk = (int)(k % 32);
    const unsigned char byte = blk[(kk / 8) * 64 + (j % 16) * 4 + kk % 4];
    uint16_t h;
    memcpy(&h, blk + 256 + (j % 16) * 2, 2);
    return (float)((kk % 8 < 4 ? byte & 15 : byte >> 4) - 8) * abc_f16_to_f32(h);
}

/* q4_encode's properties: blocks that are q·d with q in [-8, 7] (the largest magnitude -8·d, or +8·d
 * which the orientation turns) and d a float16 come back exactly; all-zero blocks give zeros; random
 * blocks stay within half a step of their scale where not clipped and within a bounded relative error
 * overall; weights beyond float16's range are refused with a message. */
static void test_q4_round_trip(void) {
    const cv_quant_type *t = cv_quant_find(ABC_FILE_Q4);
    CHECK(t && t->block == 32 && t->strip_rows == 16, "q4 described");
    if (!t) return;
    const int64_t in = 128, rows = 37, strips = 3, blocks = in / 32;
    float *w = malloc((size_t)(rows * in) * sizeof *w);
    size_t bytes = (size_t)strips * t->strip_bytes(in);
    unsigned char *got = malloc(bytes);
    char err[256] = "";
    if (!w || !got) { CHECK(0, "out of memory"); goto done; }
    CHECK(bytes == (size_t)(3 * 4 * 288), "q4 strip bytes %zu", bytes);
    for (int64_t j = 0; j < rows; j++)
        for (int64_t b = 0; b < blocks; b++) {
            float *x = w + j * in + b * 32;
            const int kind = (int)((j + b) % 4);
            const float d = ldexpf(1.0f, (int)(rng() % 20) - 10) * (kind == 1 ? 1.5f : 1.0f);
            for (int k = 0; k < 32; k++) {
                if (kind == 3) { x[k] = 0.0f; continue; }
                int q = (int)(rng() % 15) - 7; /* -7..7, then one extreme */
                x[k] = (float)q * d;
            }
            if (kind != 3) x[rng() % 32] = (kind == 2 ? 8.0f : -8.0f) * d;
        }
    memset(got, 0x55, bytes);
    CHECK(t->encode(w, rows, in, strips, got, err, sizeof err) == 0, "%s", err);
    int64_t bad = 0;
    for (int64_t j = 0; j < rows; j++)
        for (int64_t k = 0; k < in; k++) bad += q4_value(got, in, j, k) != w[j * in + k];
    CHECK(bad == 0, "representable blocks round-trip exactly (%lld values differ)", (long long)bad);
    /* random blocks: roughly normal values at several magnitudes */
    double err2 = 0, ref2 = 0, worst_step = 0;
    for (int64_t i = 0; i < rows * in; i++)
        w[i] = (float)((uniform() + uniform() + uniform() - 1.5) * 2.0 * pow(10.0, (double)(i / 32 % 7) - 3.0));
    CHECK(t->encode(w, rows, in, strips, got, err, sizeof err) == 0, "%s", err);
    for (int64_t j = 0; j < rows; j++)
        for (int64_t b = 0; b < blocks; b++) {
            double amax = 0, e2 = 0, r2 = 0;
            for (int k = 0; k < 32; k++) /* not fmax(): gcc 12 for aarch64 crashes vectorising that reduction */
                if (fabs(w[j * in + b * 32 + k]) > amax) amax = fabs(w[j * in + b * 32 + k]);
            for (int k = 0; k < 32; k++) {
                const double x = w[j * in + b * 32 + k], y = q4_value(got, in, j, b * 32 + k);
                e2 += (x - y) * (x - y), r2 += x * x;
                /* |error| ≤ one step of the plain scale amax/7 (the search only picks smaller errors overall) */
                const double step = fabs(x - y) / (amax / 7.0);
                if (step > worst_step) worst_step = step;
            }
            err2 += e2 / r2, ref2 += 1;
        }
    const double rel_rms = sqrt(err2 / ref2);
    printf("  q4 random blocks: relative rms error %.4f, worst element error %.3f of amax/7\n", rel_rms, worst_step);
    CHECK(rel_rms < 0.12 && rel_rms > 0.01, "q4 relative rms error %.4f (4 bits: about 0.08)", rel_rms);
    CHECK(worst_step <= 1.0, "worst element error %.3f of amax/7", worst_step);
    w[5] = 1e6f; /* amax/8 beyond float16's 65504 */
    err[0] = '\0';
    CHECK(t->encode(w, rows, in, strips, got, err, sizeof err) != 0 && strstr(err, "float16"), "huge weights refused: \"%s\"", err);
done:
    free(w);
    free(got);
}

/* q8_encode vs FORMAT.md written out by hand: strip j/16, block b, quads [k/4][j%16][k%4], scale. */
static void test_q8_strip_layout(void) {
    const cv_quant_type *t = cv_quant_find(ABC_FILE_Q8);
    CHECK(t && t->block == 32 && t->strip_rows == 16 && cv_quant_find(ABC_FILE_F32) == NULL, "q8 described");
    if (!t) return;
    const int64_t in = 96, rows = 21, strips = 2, blocks = in / 32;
    float *w = malloc((size_t)(rows * in) * sizeof *w);
    int8_t *q = malloc((size_t)(rows * in));
    float *sc = malloc((size_t)(rows * blocks) * sizeof *sc);
    size_t bytes = (size_t)strips * t->strip_bytes(in);
    unsigned char *got = malloc(bytes), *want = calloc(1, bytes);
    char err[128] = "";
    if (!w || !q || !sc || !got || !want) { CHECK(0, "out of memory"); goto done; }
    make_blocks(w, rows * blocks);
    memset(got, 0x55, bytes);
    CHECK(bytes == (size_t)(2 * 3 * 16 * 36), "strip bytes %zu", bytes);
    CHECK(t->encode(w, rows, in, strips, got, err, sizeof err) == 0, "%s", err);
    for (int64_t j = 0; j < rows; j++) cv_quantize_q8_row(w + j * in, in, q + j * in, sc + j * blocks);
    for (int64_t j = 0; j < rows; j++)
        for (int64_t b = 0; b < blocks; b++) {
            unsigned char *blk = want + ((j / 16) * blocks + b) * 576;
            for (int k = 0; k < 32; k++) blk[(k / 4) * 64 + (j % 16) * 4 + k % 4] = (unsigned char)q[j * in + b * 32 + k];
            memcpy(blk + 512 + (j % 16) * 4, &sc[j * blocks + b], 4);
        }
    CHECK(memcmp(got, want, bytes) == 0, "strip layout (padding rows 21..31 zero)");
done:
    free(w);
    free(q);
    free(sc);
    free(got);
    free(want);
}

int main(void) {
    RUN_TEST(test_kernels_match_scalar);
    RUN_TEST(test_q8_strip_layout);
    RUN_TEST(test_q4_round_trip);
    return test_summary();
}
