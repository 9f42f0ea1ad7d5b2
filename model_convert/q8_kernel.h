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
#define QK_GROUP 6 /* candidates per pass: 3 vectors each stay in registers (32 zmm; AVX2 sets 4 for 16 ymm) */
#endif
#define QK_ALWAYS_INLINE __attribute__((always_inline)) inline

/* The clamp is the identity, for every element, when the largest magnitude lands below the rounding
 * bound of the tighter side (w·inv is monotonic in |w|, so amax·inv is the largest |w·inv|). */
#define QK_NOCLAMP_BELOW ((QK_QMAX < -QK_QMIN ? QK_QMAX : -QK_QMIN) + 0.5)
static QK_ALWAYS_INLINE QK_TARGET int QK_CAT(QK_NAME, _clamp_needed)(QK_V amax, const QK_V *inv, const int g) {
    int needed = 0;
    for (int j = 0; j < g; j++) needed |= !QK_ALL_LT(QK_MUL(amax, inv[j]), QK_SPLAT(QK_NOCLAMP_BELOW));
    return needed;
}
#define QK_QUANT_MAYBE(wk, inv, clamp) ((clamp) ? QK_QUANT((wk), (inv)) : QK_ROUND(QK_MUL((wk), (inv))))

/* The least-squares refit of g trial scales (g and clamp are constants after inlining, so the loops
 * unroll and the sums stay in registers): the quants for each trial's scale, then Σ w·q / Σ q². Both
 * sums are exact in double (a float times an integer up to 127, and only the elements with q != 0,
 * within 2^9 of max|w|, add to Σ w·q: under 2^47 units of the smallest one's last place), so fusing
 * each multiply-add changes no bit. */
static QK_ALWAYS_INLINE QK_TARGET void QK_CAT(QK_NAME, _refit)(const QK_V *w, const QK_V *inv, const QK_V *trial, QK_V *refit, const int g, const int clamp) {
    QK_V wq[QK_GROUP], qq[QK_GROUP];
#pragma GCC unroll 8
    for (int j = 0; j < g; j++) wq[j] = qq[j] = QK_SPLAT(0.0);
    for (int k = 0; k < CV_Q8_BLOCK; k++)
#pragma GCC unroll 8
        for (int j = 0; j < g; j++) {
            const QK_V v = QK_QUANT_MAYBE(w[k], inv[j], clamp);
            wq[j] = QK_FMA(w[k], v, wq[j]);
            qq[j] = QK_FMA(v, v, qq[j]);
        }
#pragma GCC unroll 8
    for (int j = 0; j < g; j++) refit[j] = QK_SEL_GT(qq[j], QK_SPLAT(0.0), QK_TO_FLOAT(QK_DIV(wq[j], qq[j])), trial[j]);
}

/* Σ (w - q·d)² for g candidate scales d, as block_error sums it. w - q·d is exact, so it may be fused:
 * q·d is a float times an integer, every candidate is at least max|w| / 4096 (q8: a refit's Σ w·q is
 * at least max|w|·126, its Σ q² at most 32·127²; q4's bound is higher), and where q != 0, |w| >= d/2,
 * so the difference spans
 * under 2^40 units of the smaller operand's last place. The square and the sum are rounded as the
 * scalar code rounds them. */
static QK_ALWAYS_INLINE QK_TARGET void QK_CAT(QK_NAME, _errors)(const QK_V *w, const QK_V *inv, const QK_V *cand, QK_V *err, const int g, const int clamp) {
    QK_V d[QK_GROUP], acc[QK_GROUP];
#pragma GCC unroll 8
    for (int j = 0; j < g; j++) {
        d[j] = cand[j];
        acc[j] = QK_SPLAT(0.0);
    }
    for (int k = 0; k < CV_Q8_BLOCK; k++)
#pragma GCC unroll 8
        for (int j = 0; j < g; j++) {
            const QK_V e = QK_FNMA(QK_QUANT_MAYBE(w[k], inv[j], clamp), d[j], w[k]);
            acc[j] = QK_ADD(acc[j], QK_MUL(e, e));
        }
#pragma GCC unroll 8
    for (int j = 0; j < g; j++) err[j] = acc[j];
}

/* One pass (refit or errors) over the candidates cand[0..n), QK_GROUP at a time, each group without
 * the clamp where it cannot change a quant. */
#define QK_PASS(fn, amax, cand, out, n)                                                              \
    for (int j0 = 0; j0 < (n); j0 += QK_GROUP) {                                                     \
        QK_V inv_[QK_GROUP];                                                                         \
        const int g_ = (n) - j0 < QK_GROUP ? (n) - j0 : QK_GROUP;                                    \
        for (int j = 0; j < g_; j++) inv_[j] = QK_INV((cand)[j0 + j]);                               \
        const int clamp_ = QK_CAT(QK_NAME, _clamp_needed)((amax), inv_, g_);                         \
        if (g_ == QK_GROUP && clamp_) fn(w, inv_, (cand) + j0, (out) + j0, QK_GROUP, 1);             \
        else if (g_ == QK_GROUP) fn(w, inv_, (cand) + j0, (out) + j0, QK_GROUP, 0);                  \
        else if (clamp_) fn(w, inv_, (cand) + j0, (out) + j0, (n) % QK_GROUP, 1);                     \
        else fn(w, inv_, (cand) + j0, (out) + j0, (n) % QK_GROUP, 0);                                \
    }

static QK_TARGET void QK_NAME(const float *src, int64_t nblocks, int8_t *q, float *scales) {
    QK_V w[CV_Q8_BLOCK];
    double wide[CV_Q8_BLOCK * QK_LANES], out[QK_LANES];
    for (int64_t b0 = 0; b0 < nblocks; b0 += QK_LANES) {
        const int lanes = nblocks - b0 < QK_LANES ? (int)(nblocks - b0) : QK_LANES;
        /* the blocks side by side, one per lane (missing lanes of the last step: zero blocks, discarded) */
#ifdef QK_LOAD_BLOCKS
        if (lanes == QK_LANES)
            QK_LOAD_BLOCKS(src + b0 * CV_Q8_BLOCK, w);
        else
#endif
        {   /* all stored before any is loaded, so no vector load waits on the scalar stores it covers */
            for (int l = 0; l < QK_LANES; l++)
                for (int k = 0; k < CV_Q8_BLOCK; k++) wide[k * QK_LANES + l] = l < lanes ? (double)src[(b0 + l) * CV_Q8_BLOCK + k] : 0.0;
            for (int k = 0; k < CV_Q8_BLOCK; k++) w[k] = QK_LOAD(wide + k * QK_LANES);
        }
        QK_V amax = QK_SPLAT(0.0);
        for (int k = 0; k < CV_Q8_BLOCK; k++) amax = QK_MAX(amax, QK_ABS(w[k]));
        /* candidate 0 is the plain max/base scale, candidates 1..17 the trials t = -8, -6, ..., 24 refitted
         * by least squares; they are independent, so they are computed QK_GROUP at a time (separate
         * dependency chains), then compared in the scalar code's order */
        QK_V cand[1 + QK_TRIALS], err[1 + QK_TRIALS];
        cand[0] = QK_TO_FLOAT(QK_DIV(amax, QK_SPLAT(QK_BASE)));
        for (int j = 1; j <= QK_TRIALS; j++) cand[j] = QK_TO_FLOAT(QK_DIV(amax, QK_SPLAT(QK_BASE + (2 * (j - 1) - 8) / 8.0)));
        QK_PASS(QK_CAT(QK_NAME, _refit), amax, cand + 1, cand + 1, QK_TRIALS)
        QK_PASS(QK_CAT(QK_NAME, _errors), amax, cand, err, 1 + QK_TRIALS)
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
#ifdef QK_STORE_QUANTS
        int8_t across[CV_Q8_BLOCK * QK_LANES]; /* [k][lane] */
        for (int k = 0; k < CV_Q8_BLOCK; k++) QK_STORE_QUANTS(across + k * QK_LANES, QK_QUANT(w[k], inv));
        for (int l = 0; l < lanes; l++)
            for (int k = 0; k < CV_Q8_BLOCK; k++) q[(b0 + l) * CV_Q8_BLOCK + k] = across[k * QK_LANES + l];
#else
        for (int k = 0; k < CV_Q8_BLOCK; k++) {
            QK_STORE(out, QK_QUANT(w[k], inv));
            for (int l = 0; l < lanes; l++) q[(b0 + l) * CV_Q8_BLOCK + k] = (int8_t)out[l];
        }
#endif
    }
}

#undef QK_QUANT
#undef QK_CLAMP
#undef QK_INV
#undef QK_TRIALS
#undef QK_ALWAYS_INLINE
#undef QK_NOCLAMP_BELOW
#undef QK_QUANT_MAYBE
#undef QK_PASS
