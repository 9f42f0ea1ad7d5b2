/* q8 and q4 (FORMAT.md): int8 / 4-bit blocks of 32 with one scale each. (The 16-bit float conversions are
 * abc.h's, shared with the runtime.) */
#include "convert.h"

#include <math.h>
#include <string.h>

/* Quantizes one block with scale d: q = w · (1/d) rounded (ties to even), clamped to [qmin, qmax];
 * returns Σ (w - q·d)². */
static double block_error(const float *w, float d, int8_t *q, double qmin, double qmax) {
    double err = 0, inv = d > 0 ? 1.0 / d : 0.0;
    for (int k = 0; k < CV_Q8_BLOCK; k++) {
        double v = nearbyint((double)w[k] * inv);
        v = v > qmax ? qmax : v < qmin ? qmin : v;
        q[k] = (int8_t)v;
        double e = (double)w[k] - v * d;
        err += e * e;
    }
    return err;
}

/* The scale search of q8 and q4 for one row: per block, the scale (float32) that minimises the
 * squared error among max|w| / (base + t/8), t = -8, -6, ..., 24, each refitted by least squares for
 * its quants, against the plain max|w| / base. An all-zero block has scale 0. */
static void quantize_row(const float *src, int64_t in, int8_t *q, float *scales, double qmin, double qmax, double base) {
    for (int64_t b = 0; b < in / CV_Q8_BLOCK; b++) {
        const float *w = src + b * CV_Q8_BLOCK;
        int8_t *qb = q + b * CV_Q8_BLOCK, trial[CV_Q8_BLOCK];
        double amax = 0;
        for (int k = 0; k < CV_Q8_BLOCK; k++) { /* not fmax(): gcc 12 for aarch64 crashes vectorising that reduction */
            double a = fabs((double)w[k]);
            if (a > amax) amax = a;
        }
        float best = (float)(amax / base);
        double best_err = block_error(w, best, qb, qmin, qmax);
        for (int t = -8; t <= 24 && amax > 0; t += 2) {
            float d = (float)(amax / (base + t / 8.0));
            block_error(w, d, trial, qmin, qmax);
            double wq = 0, qq = 0; /* least-squares scale for these quants */
            for (int k = 0; k < CV_Q8_BLOCK; k++) {
                wq += (double)w[k] * trial[k];
                qq += (double)trial[k] * trial[k];
            }
            if (qq > 0) d = (float)(wq / qq);
            double err = block_error(w, d, trial, qmin, qmax);
            if (err < best_err) {
                best_err = err;
                best = d;
                memcpy(qb, trial, sizeof trial);
            }
        }
        scales[b] = best;
    }
}

/* One row of `in` finite values (in a multiple of CV_Q8_BLOCK) -> int8 q[in] and scales[in / 32], base
 * 127 and quants in [-127, 127] (a slightly smaller step than 1/127 of max|w| clips the largest value a
 * little and rounds the others better; measured: the fixture's worst embedding cosine goes from
 * 0.99886 to 0.99920). */
void cv_quantize_q8_row(const float *src, int64_t in, int8_t *q, float *scales) {
    quantize_row(src, in, q, scales, -127.0, 127.0, 127.0);
}

/* q4's search: quants in [-8, 7], base 8 (the encoder first turns each block so that its largest
 * magnitude is negative, where -8 reaches it). */
void cv_quantize_q4_row(const float *src, int64_t in, int8_t *q, float *scales) {
    quantize_row(src, in, q, scales, -8.0, 7.0, 8.0);
}
