/* The scale search of cv_quantize_q8_row / cv_quantize_q4_row (dtype.c) for QK_LANES blocks at a time,
 * one block per double lane; included by quant.c once per instruction set and type, after it defines
 *   QK_QMIN, QK_QMAX, QK_BASE (the type's quant range and plain divisor: -127, 127, 127 or -8, 7, 8),
 *   QK_SYMMETRIC (1 when QK_QMIN is -QK_QMAX),
 *   QK_NAME, QK_TARGET (function attributes), QK_V (vector of QK_LANES doubles), QK_LANES,
 *   QK_SPLAT(x), QK_LOAD(p), QK_ADD/SUB/MUL/DIV(a, b), QK_ABS(a), QK_MIN/MAX(a, b),
 *   QK_ROUND(a) (to nearest, ties to even), QK_TO_FLOAT(a) (rounded to float, widened back),
 *   QK_SEL_LT(a, b, x, y) (a < b ? x : y per lane), QK_SEL_GT(a, b, x, y).
 * Every lane performs the scalar code's operations in the scalar code's order (no reassociation,
 * no fused multiply-add), so the results are bit-identical. */

/* q = clamp(nearbyint(w·inv), QK_QMIN, QK_QMAX): clamping first gives the same integer (the bounds are
 * integers, rounding is monotonic). An ISA may give the clamp for symmetric ranges in one instruction
 * (QK_CLAMP_SYMMETRIC(x, m): sign(x)·min(|x|, m), the same value as the min/max pair). */
#if defined(QK_CLAMP_SYMMETRIC) && QK_SYMMETRIC
#define QK_CLAMP(x) QK_CLAMP_SYMMETRIC((x), QK_QMAX)
#else
#define QK_CLAMP(x) QK_MAX(QK_MIN((x), QK_SPLAT(QK_QMAX)), QK_SPLAT(QK_QMIN))
#endif
#define QK_QUANT(wk, inv) QK_ROUND(QK_CLAMP(QK_MUL((wk), (inv))))
/* 1/d, or 0 where d is 0 (q8_block_error's `d > 0 ? 1.0 / d : 0.0`; d is never negative) */
#define QK_INV(d) QK_SEL_GT((d), QK_SPLAT(0.0), QK_DIV(QK_SPLAT(1.0), (d)), QK_SPLAT(0.0))
#define QK_TRIALS 17 /* t = -8, -6, ..., 24 */
#ifndef QK_GROUP
#define QK_GROUP 6
#endif

static QK_TARGET void QK_NAME(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    QK_V w[CV_Q8_BLOCK];
    double lane[QK_LANES], out[QK_LANES];
    for (int64_t b0 = 0; b0 < nblocks; b0 += QK_LANES) {
        const int lanes = nblocks - b0 < QK_LANES ? (int)(nblocks - b0) : QK_LANES;
        for (int k = 0; k < CV_Q8_BLOCK; k++) { /* missing lanes of the last step: zero blocks, discarded */
            for (int l = 0; l < QK_LANES; l++) lane[l] = l < lanes ? (double)src[(b0 + l) * CV_Q8_BLOCK + k] : 0.0;
            w[k] = QK_LOAD(lane);
        }
        QK_V amax = QK_SPLAT(0.0);
        for (int k = 0; k < CV_Q8_BLOCK; k++) amax = QK_MAX(amax, QK_ABS(w[k]));
        /* candidate 0 is the plain max/127 scale, candidates 1..17 the trials t = -8, -6, ..., 24 refitted
         * by least squares; they are independent, so they are computed QK_GROUP at a time (separate
         * dependency chains), then compared in the scalar code's order */
        QK_V cand[1 + QK_TRIALS], err[1 + QK_TRIALS];
        cand[0] = QK_TO_FLOAT(QK_DIV(amax, QK_SPLAT(QK_BASE)));
        for (int j = 1; j <= QK_TRIALS; j++) cand[j] = QK_TO_FLOAT(QK_DIV(amax, QK_SPLAT(QK_BASE + (2 * (j - 1) - 8) / 8.0)));
        for (int j0 = 1; j0 <= QK_TRIALS; j0 += QK_GROUP) {
            const int g = QK_TRIALS + 1 - j0 < QK_GROUP ? QK_TRIALS + 1 - j0 : QK_GROUP;
            QK_V inv[QK_GROUP], wq[QK_GROUP], qq[QK_GROUP];
            for (int j = 0; j < g; j++) {
                inv[j] = QK_INV(cand[j0 + j]);
                wq[j] = qq[j] = QK_SPLAT(0.0);
            }
            for (int k = 0; k < CV_Q8_BLOCK; k++)
                for (int j = 0; j < g; j++) {
                    const QK_V v = QK_QUANT(w[k], inv[j]);
                    wq[j] = QK_ADD(wq[j], QK_MUL(w[k], v));
                    qq[j] = QK_ADD(qq[j], QK_MUL(v, v));
                }
            for (int j = 0; j < g; j++) cand[j0 + j] = QK_SEL_GT(qq[j], QK_SPLAT(0.0), QK_TO_FLOAT(QK_DIV(wq[j], qq[j])), cand[j0 + j]);
        }
        for (int j0 = 0; j0 <= QK_TRIALS; j0 += QK_GROUP) {
            const int g = QK_TRIALS + 1 - j0 < QK_GROUP ? QK_TRIALS + 1 - j0 : QK_GROUP;
            QK_V inv[QK_GROUP];
            for (int j = 0; j < g; j++) {
                inv[j] = QK_INV(cand[j0 + j]);
                err[j0 + j] = QK_SPLAT(0.0);
            }
            for (int k = 0; k < CV_Q8_BLOCK; k++)
                for (int j = 0; j < g; j++) {
                    const QK_V e = QK_SUB(w[k], QK_MUL(QK_QUANT(w[k], inv[j]), cand[j0 + j]));
                    err[j0 + j] = QK_ADD(err[j0 + j], QK_MUL(e, e));
                }
        }
        /* lanes whose amax is 0 run the trials too: each gives error 0, which does not beat their
         * error 0, so they keep scale 0 as the scalar code (which skips the trials) does */
        QK_V best = cand[0], best_err = err[0];
        for (int j = 1; j <= QK_TRIALS; j++) {
            best = QK_SEL_LT(err[j], best_err, cand[j], best);
            best_err = QK_SEL_LT(err[j], best_err, err[j], best_err);
        }
        /* the quants kept by the scalar code are q8_block_error's for the winning scale: recomputed */
        const QK_V inv = QK_INV(best);
        QK_STORE(out, best);
        for (int l = 0; l < lanes; l++) scales[b0 + l] = (float)out[l];
        for (int k = 0; k < CV_Q8_BLOCK; k++) {
            QK_STORE(out, QK_QUANT(w[k], inv));
            for (int l = 0; l < lanes; l++) q[(b0 + l) * CV_Q8_BLOCK + k] = (int8_t)out[l];
        }
    }
}

#undef QK_QUANT
#undef QK_CLAMP
#undef QK_INV
#undef QK_TRIALS
